//! A recording's after-life in the daemon: the steps of `witness_archive::jobs` (seal, extract,
//! upload, verify, prune) run against the box's files, index and store, by the job pool on a
//! thread and runtime of their own (a slow store never takes time from the relays), beside the
//! housekeeping that is not per recording (session manifests, the watermark, the retention
//! sweep), all under one cancellation token.

use crate::datadir::DataDir;
use crate::sync::{Uploader, unix_ms};
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use witness_archive::jobs::{self, Job, JobQueue, Outcome, Steps};
use witness_archive::prune::{self, Decision};
use witness_core::JobStep;

/// How long a step is held by its worker. A process killed mid-step is taken over at once (its
/// pid is gone) and a step that panicked is released at once as a failure; this bounds only a
/// worker thread lost some other way inside a running daemon.
const LEASE_MS: i64 = 60 * 60 * 1000;
/// Failed extraction attempts after which the text is given up (search is a convenience: a
/// recording that cannot be read for it must not sit in `sync status` as waiting for ever).
const EXTRACT_ATTEMPTS: u32 = 3;
/// How often housekeeping looks at the disk and the sessions' manifests.
const TICK: Duration = Duration::from_secs(2);

/// Enqueues the first step of every finished recording whose after-life has no job yet (it
/// finished before a crash could enqueue it, or under an older version). Returns how many.
pub fn enqueue_missing(dir: &DataDir) -> Result<usize> {
    let missing = dir.index.recordings_without_jobs()?;
    for id in &missing {
        dir.index.enqueue_job(id, JobStep::Seal, unix_ms())?;
    }
    Ok(missing.len())
}

/// A finished recording enters the pipeline (the finisher, as a recording ends).
pub fn recording_finished(dir: &DataDir, wake: &Notify, recording_id: &str) {
    match dir.index.enqueue_job(recording_id, JobStep::Seal, unix_ms()) {
        Ok(()) => wake.notify_one(),
        Err(e) => {
            warn!(recording_id, error = %e, "could not enqueue the recording's sealing; it is enqueued at next start")
        }
    }
}

/// Waits (at most `grace`) until no recording waits for its first sealing attempt: a stop
/// right after the sessions closed still seals their recordings.
pub fn seal_before_stop(dir: &DataDir, wake: &Notify, grace: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < grace {
        let now = unix_ms();
        let due = dir.index.waiting_jobs().map(|w| {
            w.iter().filter(|j| j.step == JobStep::Seal && j.attempts == 0 && j.next_attempt_ms <= now).count()
        });
        match due {
            Ok(0) | Err(_) => return,
            Ok(_) => wake.notify_waiters(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The steps, against this box.
pub struct BoxSteps {
    dir: Arc<DataDir>,
    uploader: Uploader,
    /// The pool's runtime: store calls are async, steps run on blocking threads.
    rt: tokio::runtime::Handle,
    /// The box is stopping: a long text extraction stops and is resumed at the next start
    /// (sealing, uploads and pruning finish what they started).
    cancel: CancellationToken,
}

impl Steps for BoxSteps {
    fn run(&self, job: &Job) -> Result<Outcome, String> {
        match job.step {
            JobStep::Seal => self.seal(job),
            JobStep::Extract => self.extract(job),
            JobStep::Upload => self.rt.block_on(self.uploader.upload_step(&job.recording_id)),
            JobStep::Verify => self.rt.block_on(self.uploader.verify_step(&job.recording_id)),
            JobStep::Prune => self.prune(job),
        }
    }
}

fn index_error(e: witness_index::IndexError) -> String {
    format!("the index: {e}")
}

impl BoxSteps {
    fn recording(&self, id: &str) -> Result<witness_index::RecordingRow, String> {
        self.dir.index.recording(id).map_err(index_error)?.ok_or_else(|| format!("no recording {id} in the index"))
    }

    /// Hash-chains and signs the recording (once: a sealed one is not sealed again, its
    /// manifest may be in the store already) and queues its upload row. One that cannot be
    /// sealed is held back with the reason (`sync status`, `recordings`) and tried again.
    fn seal(&self, job: &Job) -> Result<Outcome, String> {
        let dir = &self.dir;
        let rec = self.recording(&job.recording_id)?;
        if dir.index.is_pruned(&rec.id).map_err(index_error)?
            || dir.index.deleted_at(&rec.id).map_err(index_error)?.is_some()
        {
            return Ok(Outcome::Done);
        }
        let path = dir.root.join(&rec.path);
        if rec.bytes == 0 && !path.exists() {
            return Ok(Outcome::Done); // it failed before writing anything: nothing to seal or upload
        }
        if !crate::evidence::is_sealed(&path) {
            // The gaps the index knows (a failure, screen updates a video missed) go into the
            // signed manifest.
            if let Err(e) = crate::evidence::seal(dir, &rec.id, crate::evidence::gaps_of(&rec)) {
                let reason = format!("{e:#}");
                warn!(recording_id = %rec.id, error = %reason, "could not seal the recording; it is not uploaded until it is sealed");
                crate::sync::hold_unsealed(dir, &rec.id, &reason);
                // Stored bytes changed since the writer closed them: evidence of a change on
                // the box, named once (not at every retry); the local copy is kept as it is.
                if e.downcast_ref::<crate::evidence::ChangedOnDisk>().is_some()
                    && rec.seal_error.as_deref() != Some(reason.as_str())
                {
                    let _ = dir.index.audit(
                        "recording_changed_before_sealing",
                        Some(&rec.user),
                        Some(&rec.target),
                        Some(&rec.session_id),
                        &serde_json::json!({ "recording": rec.id, "error": reason }),
                    );
                } else if job.attempts == 0 {
                    let _ = dir.index.audit(
                        "recording_not_sealed",
                        Some(&rec.user),
                        Some(&rec.target),
                        Some(&rec.session_id),
                        &serde_json::json!({ "recording": rec.id, "error": reason }),
                    );
                }
                return Err(reason);
            }
        }
        crate::sync::enqueue(dir, &rec.id);
        Ok(Outcome::Done)
    }

    /// The recording's text for search, from the local copy or, once pruned, the store. A
    /// failure is tried again a few times, then given up (logged).
    fn extract(&self, job: &Job) -> Result<Outcome, String> {
        if self.recording(&job.recording_id)?.bytes == 0 {
            return Ok(Outcome::Done);
        }
        use crate::search::Indexed;
        match crate::search::try_index(&self.dir, &job.recording_id, &|| self.cancel.is_cancelled()) {
            Ok(Indexed::Stopped) => {
                Ok(Outcome::Later { at_ms: unix_ms(), why: "the box stopped while reading the text".into() })
            }
            Ok(Indexed::Stored(chunks)) => {
                info!(recording_id = %job.recording_id, chunks, "recording text indexed for search");
                Ok(Outcome::Done)
            }
            // The start sweep took the recording's text over; if it does not finish, the next
            // start's sweep reads it again (it stays not indexed).
            Ok(Indexed::TakenOver) => {
                info!(recording_id = %job.recording_id, "recording text is being indexed by the start sweep; left to it");
                Ok(Outcome::Done)
            }
            Err(e) if job.attempts + 1 < EXTRACT_ATTEMPTS => Err(format!("reading the text for search: {e:#}")),
            Err(e) => {
                warn!(recording_id = %job.recording_id, error = format!("{e:#}"), "recording text not indexed for search; given up");
                Ok(Outcome::Done)
            }
        }
    }

    /// Deletes the local copy of a recording verified in the store, once its keep time is past
    /// (or the disk is past its high watermark), never while its session is held.
    fn prune(&self, job: &Job) -> Result<Outcome, String> {
        let dir = &self.dir;
        let rec = self.recording(&job.recording_id)?;
        if dir.index.is_pruned(&rec.id).map_err(index_error)?
            || dir.index.deleted_at(&rec.id).map_err(index_error)?.is_some()
        {
            return Ok(Outcome::Done);
        }
        // Never anything not verified in the store, whatever the jobs say.
        match dir.index.upload_key(&rec.id).map_err(index_error)? {
            Some((_, state)) if state == "verified" => {}
            None if rec.bytes == 0 => return Ok(Outcome::Done),
            _ => return Err("not verified in the store: the local copy is kept".into()),
        }
        let held = dir.index.hold_of(&rec.session_id).map_err(index_error)?.is_some();
        let ended_ms = rec
            .ended_at
            .as_deref()
            .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0);
        let keep_ms = (dir.config.keep_local_days as i64).saturating_mul(86_400_000);
        let now = unix_ms();
        match prune::decide(ended_ms, keep_ms, now, over_watermark(dir), held) {
            Decision::KeepUntil(at_ms) => {
                let why = if held {
                    "its session is held: the local copy is kept".to_owned()
                } else {
                    format!("kept on the box for {} days after it ended (keep_local_days)", dir.config.keep_local_days)
                };
                return Ok(Outcome::Later { at_ms, why });
            }
            Decision::Now => {}
        }
        if !dir.index.claim_deletion(&rec.id).map_err(index_error)? {
            return Ok(Outcome::Later {
                at_ms: now + prune::RECHECK_MS,
                why: "held, or being deleted by retention".into(),
            });
        }
        let removed = match std::fs::remove_file(dir.root.join(&rec.path)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(format!("deleting the local copy: {e}")),
        };
        if let Ok(removed) = removed {
            let _ = dir.index.mark_pruned(&rec.id);
            if removed {
                let _ = dir.index.audit(
                    "local_copy_pruned",
                    None,
                    None,
                    Some(&rec.session_id),
                    &serde_json::json!({ "recording": rec.id, "reason": "verified in the store" }),
                );
                info!(recording_id = %rec.id, "local copy pruned (verified in the store)");
            }
        }
        let _ = dir.index.release_deletion(&rec.id);
        removed.map(|_| Outcome::Done)
    }
}

/// When a waiting job is tried next, as the index writes times (none for a done one): for
/// `sync status` and the console.
pub fn next_attempt_at(j: &witness_index::JobRow) -> Option<String> {
    (j.state == witness_core::JobState::Waiting).then(|| {
        time::OffsetDateTime::from_unix_timestamp_nanos(j.next_attempt_ms as i128 * 1_000_000)
            .map(witness_index::format_time)
            .unwrap_or_default()
    })
}

/// The steps `sync now` runs: those that bring a finished recording to the store and off the
/// box (its text for search is left to the daemon).
pub const TO_THE_STORE: &[JobStep] = &[JobStep::Seal, JobStep::Upload, JobStep::Verify, JobStep::Prune];

/// What `sync now` came to.
#[derive(Debug, Default)]
pub struct SyncNow {
    /// Recordings verified in the store by this run.
    pub verified: u64,
    /// Bytes of recordings this run sent.
    pub sent: u64,
    /// The steps that failed in this run (recording, step, reason): they wait with a backoff.
    pub failed: Vec<(String, JobStep, String)>,
    /// Steps that may run now but another process (the daemon) holds, when it stopped.
    pub elsewhere: Vec<(String, JobStep)>,
}

/// Waiting jobs' attempts so far and last reasons, by recording and step.
type Attempts = std::collections::HashMap<(String, JobStep), (u32, Option<String>)>;

/// Steps that note what failed.
struct Noted<'a> {
    steps: &'a BoxSteps,
    failed: std::sync::Mutex<Vec<(String, JobStep, String)>>,
}

impl Steps for Noted<'_> {
    fn run(&self, job: &Job) -> Result<Outcome, String> {
        let ran = self.steps.run(job);
        if let Err(e) = &ran {
            self.failed.lock().unwrap_or_else(|p| p.into_inner()).push((job.recording_id.clone(), job.step, e.clone()));
        }
        ran
    }
}

/// `sync now`: the job graph, woken and run here. Every waiting job of [`TO_THE_STORE`] is made
/// due (a running daemon's pool takes them within its tick), and this process takes them too,
/// through the same steps — a job is held by one process at a time — until none is left that
/// may run now: a step that fails waits with its backoff and reason (returned), one put off
/// (a copy kept until its time) waits for its time. With `wait`, it also waits until the steps
/// another process holds are done (one that fails there is reported too). `rt` must be a multi-thread runtime (steps block on it from
/// this thread).
pub fn sync_now(dir: Arc<DataDir>, uploader: Uploader, wait: bool, rt: &tokio::runtime::Runtime) -> Result<SyncNow> {
    enqueue_missing(&dir)?;
    for step in TO_THE_STORE {
        dir.index.make_jobs_due(Some(*step))?;
    }
    let steps = BoxSteps { dir: dir.clone(), uploader, rt: rt.handle().clone(), cancel: CancellationToken::new() };
    let noted = Noted { steps: &steps, failed: Default::default() };
    let queue = Queue(dir.clone());
    // Attempts so far: a step that fails while this runs (here, or in the daemon while waiting
    // for it) is reported.
    let attempts = |dir: &DataDir| -> Result<Attempts> {
        Ok(dir
            .index
            .waiting_jobs()?
            .into_iter()
            .filter(|j| TO_THE_STORE.contains(&j.step))
            .map(|j| ((j.recording_id, j.step), (j.attempts, j.last_error)))
            .collect())
    };
    let before = attempts(&dir)?;
    let elsewhere = loop {
        match jobs::run_one_among(&queue, &noted, TO_THE_STORE, unix_ms(), LEASE_MS)? {
            jobs::Ran::Done(..) | jobs::Ran::Later(..) | jobs::Ran::Failed(..) => continue,
            jobs::Ran::Idle => {}
        }
        let now = unix_ms();
        let held: Vec<(String, JobStep)> = dir
            .index
            .waiting_jobs()?
            .into_iter()
            .filter(|j| TO_THE_STORE.contains(&j.step) && j.next_attempt_ms <= now)
            .map(|j| (j.recording_id, j.step))
            .collect();
        if held.is_empty() || !wait {
            break held;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let mut failed = noted.failed.into_inner().unwrap_or_else(|p| p.into_inner());
    // Failures the steps here did not return: a panic here, a failure in the daemon.
    for ((id, step), (now_attempts, reason)) in attempts(&dir)? {
        let was = before.get(&(id.clone(), step)).map(|b| b.0).unwrap_or(0);
        if now_attempts > was && !failed.iter().any(|f| f.0 == id && f.1 == step) {
            failed.push((id, step, reason.unwrap_or_default()));
        }
    }
    let up = &steps.uploader;
    Ok(SyncNow {
        verified: up.verified.load(std::sync::atomic::Ordering::Relaxed),
        sent: up.sent.load(std::sync::atomic::Ordering::Relaxed),
        failed,
        elsewhere,
    })
}

/// The index's jobs, as the pool takes them.
struct Queue(Arc<DataDir>);

impl JobQueue for Queue {
    fn claim_among(
        &self,
        among: &[JobStep],
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Job>, witness_archive::ArchiveError> {
        JobQueue::claim_among(&self.0.index, among, now_ms, lease_ms)
    }
    fn complete(&self, job: &Job, now_ms: i64) -> Result<Vec<JobStep>, witness_archive::ArchiveError> {
        JobQueue::complete(&self.0.index, job, now_ms)
    }
    fn fail(&self, job: &Job, error: &str, next_attempt_ms: i64) -> Result<(), witness_archive::ArchiveError> {
        JobQueue::fail(&self.0.index, job, error, next_attempt_ms)
    }
    fn defer(&self, job: &Job, why: &str, at_ms: i64) -> Result<(), witness_archive::ArchiveError> {
        JobQueue::defer(&self.0.index, job, why, at_ms)
    }
}

fn over_watermark(dir: &DataDir) -> bool {
    witness_recorder::used_percent(&dir.recordings_dir()).is_ok_and(|p| p > dir.config.high_watermark_percent)
}

/// Runs the after-life until `cancel`, on a thread and runtime of its own: the job pool
/// (one worker reading recordings' text for search, one at a time; `[store] concurrency`
/// workers for the store's steps and one more, so sealing never waits behind an upload or a
/// long text) and housekeeping. On `cancel`, a step under way finishes first; what is left
/// waits in the index for the next start.
pub fn spawn(dir: Arc<DataDir>, wake: Arc<Notify>, cancel: CancellationToken) -> Result<std::thread::JoinHandle<()>> {
    let uploader = Uploader::new(dir.clone(), None)?;
    Ok(std::thread::Builder::new().name("archive".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return warn!(error = %e, "the archive runtime; recordings are not sealed or uploaded"),
        };
        let steps = Arc::new(BoxSteps { dir: dir.clone(), uploader, rt: rt.handle().clone(), cancel: cancel.clone() });
        let pool = jobs::Pool {
            workers: dir.config.upload_concurrency as usize + 2,
            lease_ms: LEASE_MS,
            idle: TICK,
            now_ms: unix_ms,
        };
        let queue: Arc<dyn JobQueue> = Arc::new(Queue(dir.clone()));
        rt.block_on(async {
            let work = jobs::work(queue, steps.clone(), pool, wake.clone(), cancel.clone());
            tokio::join!(work, housekeeping(dir, steps, wake, cancel));
        })
    })?)
}

/// What is not one recording's step: the disk past its high watermark makes every waiting
/// prune due; sessions whose recordings are all stored get their manifest; the retention sweep
/// runs at start and every `[store] retention_sweep_seconds`.
async fn housekeeping(dir: Arc<DataDir>, steps: Arc<BoxSteps>, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut swept: Option<tokio::time::Instant> = None;
    loop {
        if over_watermark(&dir) && dir.index.make_jobs_due(Some(JobStep::Prune)).unwrap_or(0) > 0 {
            wake.notify_waiters();
        }
        if dir.index.sessions_needing_manifest().is_ok_and(|s| !s.is_empty()) {
            steps.uploader.manifests().await;
        }
        if swept.is_none_or(|t| t.elapsed() >= dir.config.retention_sweep) {
            swept = Some(tokio::time::Instant::now());
            match crate::retention::sweep(&dir, false, &mut |_| {}).await {
                Ok(s) if s.deleted + s.failed > 0 => info!(deleted = s.deleted, failed = s.failed, "retention sweep"),
                Ok(_) => {}
                Err(e) => warn!(error = format!("{e:#}"), "retention sweep failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}
