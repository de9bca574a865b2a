//! The job graph of a recording's after-life: Seal → Extract, Seal → Upload → Verify → Prune.
//! Prune does not wait for Extract: a local copy held until its text is read would keep the disk
//! full behind the slowest consumer (a large recording's text takes the debug box minutes), so
//! extraction reads the recording wherever it is — the store, once pruned. Each step is a durable job
//! (kept by a [`JobQueue`]: the index's `jobs` table), claimed under a lease and run by a
//! [`Steps`] implementation; success enqueues, with it, every step whose requirements are then
//! all done ([`ready`]), so nothing downstream runs before what it depends on; a failure waits
//! with [`crate::backoff`] and keeps its reason for `sync status`; a step that may not run yet
//! without having failed (a local copy kept until its time) is put off ([`Outcome::Later`]).
//! [`work`] runs a bounded pool of workers under one cancellation token; a step whose process
//! was killed is taken over at once, and one that panicked is released at once as a failure
//! (with the panic's message as its reason and a backoff), the worker living on; the step runs
//! again (steps are idempotent).

use crate::ArchiveError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use witness_core::JobStep;

/// The steps `step` waits for.
pub fn requires(step: JobStep) -> &'static [JobStep] {
    match step {
        JobStep::Seal => &[],
        JobStep::Extract | JobStep::Upload => &[JobStep::Seal],
        JobStep::Verify => &[JobStep::Upload],
        JobStep::Prune => &[JobStep::Verify],
    }
}

/// The steps that become ready when `done` are done: those not done yet whose every requirement
/// is (the first step is never "ready": it is enqueued when the recording ends).
pub fn ready(done: &[JobStep]) -> Vec<JobStep> {
    JobStep::ALL
        .iter()
        .copied()
        .filter(|s| !done.contains(s) && !requires(*s).is_empty() && requires(*s).iter().all(|r| done.contains(r)))
        .collect()
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub recording_id: String,
    pub step: JobStep,
    /// Failed attempts before this one.
    pub attempts: u32,
}

/// Where jobs are kept (the index).
pub trait JobQueue: Send + Sync {
    /// The longest-due waiting job of one of the steps `among`, leased for `lease_ms`.
    fn claim_among(&self, among: &[JobStep], now_ms: i64, lease_ms: i64) -> Result<Option<Job>, ArchiveError>;
    /// The longest-due waiting job, leased for `lease_ms`.
    fn claim(&self, now_ms: i64, lease_ms: i64) -> Result<Option<Job>, ArchiveError> {
        self.claim_among(JobStep::ALL, now_ms, lease_ms)
    }
    /// The job ran: done, and what [`ready`] says enqueued with it. Returns what was enqueued.
    fn complete(&self, job: &Job, now_ms: i64) -> Result<Vec<JobStep>, ArchiveError>;
    /// The job failed: due again at `next_attempt_ms`, with `error` kept.
    fn fail(&self, job: &Job, error: &str, next_attempt_ms: i64) -> Result<(), ArchiveError>;
    /// The job may not run yet (not a failure): due again at `at_ms`, with `why` kept.
    fn defer(&self, job: &Job, why: &str, at_ms: i64) -> Result<(), ArchiveError>;
}

/// Whether the process `pid` is running (a lease held by a dead process is taken over).
fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl JobQueue for witness_index::Index {
    fn claim_among(&self, among: &[JobStep], now_ms: i64, lease_ms: i64) -> Result<Option<Job>, ArchiveError> {
        let row = self.claim_job_among(among, now_ms, lease_ms, std::process::id(), &alive)?;
        Ok(row.map(|r| Job { recording_id: r.recording_id, step: r.step, attempts: r.attempts }))
    }

    fn complete(&self, job: &Job, now_ms: i64) -> Result<Vec<JobStep>, ArchiveError> {
        Ok(self.complete_job(&job.recording_id, job.step, now_ms, &ready)?)
    }

    fn fail(&self, job: &Job, error: &str, next_attempt_ms: i64) -> Result<(), ArchiveError> {
        Ok(self.fail_job(&job.recording_id, job.step, error, next_attempt_ms)?)
    }

    fn defer(&self, job: &Job, why: &str, at_ms: i64) -> Result<(), ArchiveError> {
        Ok(self.defer_job(&job.recording_id, job.step, why, at_ms)?)
    }
}

/// What a step that did not fail came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran (or had nothing to do): done.
    Done,
    /// It may not run yet: tried again at `at_ms` (unix ms), `why` shown meanwhile.
    Later { at_ms: i64, why: String },
}

/// What runs a step (the binary: sealing, extraction, the store). Blocking; idempotent (a step
/// cut by a crash runs again whole or resumes from what it saved).
pub trait Steps: Send + Sync {
    /// Runs `job`; an error is a one-line reason (never a secret), shown while the job waits.
    fn run(&self, job: &Job) -> Result<Outcome, String>;
}

/// What one turn of a worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// Nothing was due.
    Idle,
    /// The step ran; these were enqueued after it.
    Done(JobStep, Vec<JobStep>),
    /// The step failed and waits this long.
    Failed(JobStep, i64),
    /// The step may not run yet; tried again at this time.
    Later(JobStep, i64),
}

/// Claims and runs one due job.
pub fn run_one(queue: &dyn JobQueue, steps: &dyn Steps, now_ms: i64, lease_ms: i64) -> Result<Ran, ArchiveError> {
    run_one_among(queue, steps, JobStep::ALL, now_ms, lease_ms)
}

/// Claims and runs one due job of the steps `among` (`sync now`: those that bring recordings
/// to the store).
pub fn run_one_among(
    queue: &dyn JobQueue,
    steps: &dyn Steps,
    among: &[JobStep],
    now_ms: i64,
    lease_ms: i64,
) -> Result<Ran, ArchiveError> {
    let Some(job) = queue.claim_among(among, now_ms, lease_ms)? else { return Ok(Ran::Idle) };
    // A panic is a failure like any other: the job is released at once with the message (held
    // for its lease, it would wait an hour with no reason shown), and the worker goes on.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| steps.run(&job)))
        .unwrap_or_else(|panic| Err(format!("the {} step panicked: {}", job.step, panic_message(&*panic))));
    match ran {
        Ok(Outcome::Later { at_ms, why }) => {
            queue.defer(&job, &why, at_ms)?;
            tracing::debug!(recording_id = %job.recording_id, step = %job.step, why, "job put off");
            Ok(Ran::Later(job.step, at_ms))
        }
        Ok(Outcome::Done) => {
            let next = queue.complete(&job, now_ms)?;
            tracing::info!(recording_id = %job.recording_id, step = %job.step, ?next, "job done");
            Ok(Ran::Done(job.step, next))
        }
        Err(error) => {
            let wait = crate::backoff::backoff_ms(job.attempts, now_ms);
            queue.fail(&job, &error, now_ms + wait)?;
            tracing::warn!(recording_id = %job.recording_id, step = %job.step, %error, wait_ms = wait, "job failed; it waits");
            Ok(Ran::Failed(job.step, wait))
        }
    }
}

/// What a panic said (its payload is a `&str` or a `String` unless it was raised with another type).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

/// How the pool runs.
#[derive(Debug, Clone, Copy)]
pub struct Pool {
    /// How many steps run at once (each on a blocking thread of its own).
    pub workers: usize,
    /// How long a claimed step is held before another worker may take it over.
    pub lease_ms: i64,
    /// How long an idle worker sleeps when not woken.
    pub idle: Duration,
    /// The clock (unix ms).
    pub now_ms: fn() -> i64,
}

/// The steps that read a recording's text for search: a lane of their own.
const EXTRACT_LANE: &[JobStep] = &[JobStep::Extract];
/// The steps that bring a recording to the store and free its disk.
const STORE_LANE: &[JobStep] = &[JobStep::Seal, JobStep::Upload, JobStep::Verify, JobStep::Prune];

/// The steps worker `worker` of `workers` takes. With two or more, the first only reads text
/// (one recording at a time) and the others never do: reading the text of a large recording
/// (a bulk SSH session: minutes) never holds sealing, an upload or a prune back, and several
/// large ones ending together do not take every worker.
fn lane(worker: usize, workers: usize) -> &'static [JobStep] {
    match (workers, worker) {
        (0 | 1, _) => JobStep::ALL,
        (_, 0) => EXTRACT_LANE,
        _ => STORE_LANE,
    }
}

/// Runs `pool.workers` workers until `cancel`: each takes due jobs one after another, and
/// sleeps when none is due until `wake` (a recording ended, `sync now`) or `pool.idle` has
/// passed. A step in progress finishes (it is blocking work on its own thread) before its worker
/// sees `cancel`.
pub async fn work(
    queue: Arc<dyn JobQueue>,
    steps: Arc<dyn Steps>,
    pool: Pool,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let Pool { workers, lease_ms, idle, now_ms } = pool;
    let all = (0..workers.max(1)).map(|worker| {
        let (queue, steps, wake, cancel) = (queue.clone(), steps.clone(), wake.clone(), cancel.clone());
        let among = lane(worker, workers);
        async move {
            while !cancel.is_cancelled() {
                let (q, s) = (queue.clone(), steps.clone());
                let ran = tokio::task::spawn_blocking(move || run_one_among(&*q, &*s, among, now_ms(), lease_ms)).await;
                match ran {
                    // What it enqueued may be another lane's: its worker is woken, not left to
                    // its idle sleep.
                    Ok(Ok(Ran::Done(_, next))) => {
                        if !next.is_empty() {
                            wake.notify_waiters();
                        }
                        continue;
                    }
                    Ok(Ok(Ran::Failed(..) | Ran::Later(..))) => continue,
                    Ok(Ok(Ran::Idle)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "the job queue cannot be read"),
                    // `run_one_among` catches a step's panic; this is the queue itself panicking.
                    Err(e) => tracing::error!(error = %e, "a job's worker panicked"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                }
            }
        }
    });
    futures_join(all).await;
}

/// Awaits every future (without another dependency).
async fn futures_join<F: std::future::Future<Output = ()> + Send + 'static>(all: impl Iterator<Item = F>) {
    let handles: Vec<_> = all.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use witness_core::JobState;

    #[test]
    fn nothing_downstream_is_ready_before_what_it_waits_for() {
        use JobStep::*;
        assert_eq!(ready(&[]), Vec::<JobStep>::new(), "seal is enqueued when the recording ends");
        assert_eq!(ready(&[Seal]), vec![Extract, Upload]);
        assert_eq!(ready(&[Seal, Upload]), vec![Extract, Verify]);
        assert_eq!(ready(&[Seal, Extract, Upload]), vec![Verify], "no prune before verify");
        assert_eq!(ready(&[Seal, Upload, Verify]), vec![Extract, Prune], "prune does not wait for the text");
        assert_eq!(ready(&[Seal, Extract, Upload, Verify]), vec![Prune]);
        assert_eq!(ready(JobStep::ALL), Vec::<JobStep>::new());
        for s in JobStep::ALL {
            for r in requires(*s) {
                assert!(JobStep::ALL.iter().position(|x| x == r) < JobStep::ALL.iter().position(|x| x == s));
            }
        }
    }

    /// A job's state, attempts, next attempt, last error and lease, as the index keeps them.
    type Kept = (JobState, u32, i64, Option<String>, i64);

    /// Jobs by recording and step.
    type Jobs = HashMap<(String, JobStep), Kept>;

    /// Jobs in memory.
    #[derive(Default)]
    struct Memory(Mutex<Jobs>);

    impl JobQueue for Memory {
        fn claim_among(&self, among: &[JobStep], now_ms: i64, lease_ms: i64) -> Result<Option<Job>, ArchiveError> {
            let mut all = self.0.lock().unwrap();
            let due = all
                .iter_mut()
                .filter(|((_, step), (state, _, at, _, lease))| {
                    among.contains(step) && *state == JobState::Waiting && *at <= now_ms && *lease <= now_ms
                })
                .min_by_key(|((_, step), (_, _, at, _, _))| (*at, JobStep::ALL.iter().position(|s| s == step)));
            Ok(due.map(|((id, step), (_, attempts, _, _, lease))| {
                *lease = now_ms + lease_ms;
                Job { recording_id: id.clone(), step: *step, attempts: *attempts }
            }))
        }

        fn complete(&self, job: &Job, _now_ms: i64) -> Result<Vec<JobStep>, ArchiveError> {
            let mut all = self.0.lock().unwrap();
            all.get_mut(&(job.recording_id.clone(), job.step)).unwrap().0 = JobState::Done;
            let done: Vec<JobStep> = all
                .iter()
                .filter(|((id, _), (state, ..))| *id == job.recording_id && *state == JobState::Done)
                .map(|((_, s), _)| *s)
                .collect();
            let next = ready(&done);
            for s in &next {
                all.entry((job.recording_id.clone(), *s)).or_insert((JobState::Waiting, 0, 0, None, 0));
            }
            Ok(next)
        }

        fn fail(&self, job: &Job, error: &str, next_attempt_ms: i64) -> Result<(), ArchiveError> {
            let mut all = self.0.lock().unwrap();
            let j = all.get_mut(&(job.recording_id.clone(), job.step)).unwrap();
            *j = (JobState::Waiting, j.1 + 1, next_attempt_ms, Some(error.to_owned()), 0);
            Ok(())
        }

        fn defer(&self, job: &Job, why: &str, at_ms: i64) -> Result<(), ArchiveError> {
            let mut all = self.0.lock().unwrap();
            let j = all.get_mut(&(job.recording_id.clone(), job.step)).unwrap();
            *j = (JobState::Waiting, j.1, at_ms, Some(why.to_owned()), 0);
            Ok(())
        }
    }

    /// Steps that fail while `broken` names them, put off while `later` names them (until the
    /// time given), and log what ran.
    #[derive(Default)]
    struct Log {
        ran: Mutex<Vec<JobStep>>,
        broken: Mutex<Vec<JobStep>>,
        later: Mutex<Vec<(JobStep, i64)>>,
    }

    impl Steps for Log {
        fn run(&self, job: &Job) -> Result<Outcome, String> {
            if self.broken.lock().unwrap().contains(&job.step) {
                return Err(format!("{} cannot run now", job.step));
            }
            if let Some((_, at_ms)) = self.later.lock().unwrap().iter().find(|(s, _)| *s == job.step) {
                return Ok(Outcome::Later { at_ms: *at_ms, why: format!("{} not yet", job.step) });
            }
            self.ran.lock().unwrap().push(job.step);
            Ok(Outcome::Done)
        }
    }

    /// A step put off is not a failure: it keeps its attempts, waits until its time without a
    /// backoff of its own, and nothing after it is enqueued meanwhile.
    #[test]
    fn a_step_put_off_waits_for_its_time_without_counting_as_a_failure() {
        let q = Memory::default();
        q.0.lock().unwrap().insert(("r1".into(), JobStep::Seal), (JobState::Waiting, 0, 0, None, 0));
        let steps = Log::default();
        steps.later.lock().unwrap().push((JobStep::Upload, 50_000));
        let mut now = 0;
        let mut put_off = 0;
        loop {
            match run_one(&q, &steps, now, 60_000).unwrap() {
                Ran::Idle => break,
                Ran::Later(JobStep::Upload, 50_000) => put_off += 1,
                Ran::Done(..) => {}
                other => panic!("{other:?}"),
            }
            now += 1;
        }
        assert_eq!(put_off, 1, "put off once, then waits");
        let upload = q.0.lock().unwrap()[&("r1".to_owned(), JobStep::Upload)].clone();
        assert_eq!(
            (upload.0, upload.1, upload.2, upload.3.as_deref()),
            (JobState::Waiting, 0, 50_000, Some("upload not yet"))
        );
        assert!(!q.0.lock().unwrap().contains_key(&("r1".to_owned(), JobStep::Verify)), "nothing after it");
        steps.later.lock().unwrap().clear();
        assert_eq!(run_one(&q, &steps, 49_999, 60_000).unwrap(), Ran::Idle);
        assert!(matches!(run_one(&q, &steps, 50_000, 60_000).unwrap(), Ran::Done(JobStep::Upload, _)));
    }

    /// A run limited to some steps (`sync now`) takes only those, oldest first, and leaves the
    /// others waiting for the daemon.
    #[test]
    fn a_run_among_some_steps_leaves_the_others_waiting() {
        use JobStep::*;
        let q = Memory::default();
        q.0.lock().unwrap().insert(("r1".into(), Extract), (JobState::Waiting, 0, 0, None, 0));
        q.0.lock().unwrap().insert(("r1".into(), Upload), (JobState::Waiting, 0, 5, None, 0));
        let steps = Log::default();
        let among = [Upload, Verify];
        assert!(matches!(run_one_among(&q, &steps, &among, 10, 60_000).unwrap(), Ran::Done(Upload, _)));
        assert!(matches!(run_one_among(&q, &steps, &among, 10, 60_000).unwrap(), Ran::Done(Verify, _)));
        assert_eq!(
            run_one_among(&q, &steps, &among, 10, 60_000).unwrap(),
            Ran::Idle,
            "prune and extract are not asked for"
        );
        assert_eq!(*steps.ran.lock().unwrap(), vec![Upload, Verify]);
        let all = q.0.lock().unwrap();
        assert_eq!(
            (all[&("r1".to_owned(), Extract)].0, all[&("r1".to_owned(), Prune)].0),
            (JobState::Waiting, JobState::Waiting)
        );
    }

    /// Sealing made to fail: nothing is uploaded or pruned, the job waits with its reason and a
    /// growing backoff; once sealing works the chain runs to the end, each step after what it
    /// waits for.
    #[test]
    fn a_failing_step_holds_back_everything_after_it_and_the_chain_resumes() {
        let q = Memory::default();
        q.0.lock().unwrap().insert(("r1".into(), JobStep::Seal), (JobState::Waiting, 0, 0, None, 0));
        let steps = Log::default();
        steps.broken.lock().unwrap().push(JobStep::Seal);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..3 {
            match run_one(&q, &steps, now, 60_000).unwrap() {
                Ran::Failed(JobStep::Seal, wait) => {
                    waits.push(wait);
                    assert_eq!(run_one(&q, &steps, now + 1, 60_000).unwrap(), Ran::Idle, "waits its backoff");
                    now += wait;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(waits[0] < waits[1] && waits[1] < waits[2], "backoff grows: {waits:?}");
        assert!(steps.ran.lock().unwrap().is_empty(), "nothing ran after a failed seal");
        let held = q.0.lock().unwrap()[&("r1".to_owned(), JobStep::Seal)].clone();
        assert_eq!((held.1, held.3.as_deref()), (3, Some("seal cannot run now")));
        steps.broken.lock().unwrap().clear();
        while run_one(&q, &steps, now, 60_000).unwrap() != Ran::Idle {}
        let ran = steps.ran.lock().unwrap().clone();
        assert_eq!(ran.len(), 5, "{ran:?}");
        let at = |s| ran.iter().position(|x| *x == s).unwrap();
        for s in JobStep::ALL {
            for r in requires(*s) {
                assert!(at(*r) < at(*s), "{s} ran before {r}: {ran:?}");
            }
        }
    }

    /// Steps that panic while `panics` names them (a bug, not a failure the step reports).
    #[derive(Default)]
    struct Panicky {
        log: Log,
        panics: Mutex<Vec<JobStep>>,
    }

    impl Steps for Panicky {
        fn run(&self, job: &Job) -> Result<Outcome, String> {
            if self.panics.lock().unwrap().contains(&job.step) {
                panic!("index out of bounds: the len is 0 but the index is 7");
            }
            self.log.run(job)
        }
    }

    /// A step whose worker panics is a failure like any other: released at once (not held for
    /// the lease), waiting with a backoff and the panic's message as its reason, and run again
    /// once due; the worker lives on.
    #[test]
    fn a_panicking_step_is_released_as_a_failure_with_its_message() {
        let q = Memory::default();
        q.0.lock().unwrap().insert(("r1".into(), JobStep::Upload), (JobState::Waiting, 0, 0, None, 0));
        let steps = Panicky::default();
        steps.panics.lock().unwrap().push(JobStep::Upload);
        let hour = 60 * 60 * 1000;
        let wait = match run_one(&q, &steps, 0, hour).unwrap() {
            Ran::Failed(JobStep::Upload, wait) => wait,
            other => panic!("{other:?}"),
        };
        assert!(wait < hour / 10, "a backoff, not the lease: {wait}");
        let kept = q.0.lock().unwrap()[&("r1".to_owned(), JobStep::Upload)].clone();
        assert_eq!((kept.0, kept.1, kept.2, kept.4), (JobState::Waiting, 1, wait, 0), "released, counted, due later");
        let reason = kept.3.unwrap();
        assert!(reason.contains("panicked") && reason.contains("the index is 7"), "{reason}");
        assert_eq!(run_one(&q, &steps, wait - 1, hour).unwrap(), Ran::Idle, "waits its backoff");
        steps.panics.lock().unwrap().clear();
        assert!(matches!(run_one(&q, &steps, wait, hour).unwrap(), Ran::Done(JobStep::Upload, _)));
    }

    /// Waits (at most 5 s) until `f` holds of the jobs.
    async fn until(q: &Memory, what: &str, f: &dyn Fn(&Jobs) -> bool) {
        for _ in 0..500 {
            if f(&q.0.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: {:?}", q.0.lock().unwrap());
    }

    /// In the pool: a panicking step does not keep its job for the lease (an hour in the
    /// daemon), and the pool goes on with the rest.
    #[tokio::test]
    async fn a_panicking_step_does_not_hold_its_job_or_stop_the_pool() {
        static NOW: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);
        fn now() -> i64 {
            NOW.load(std::sync::atomic::Ordering::Relaxed)
        }
        let q = Arc::new(Memory::default());
        for r in ["r1", "r2"] {
            q.0.lock().unwrap().insert((r.into(), JobStep::Seal), (JobState::Waiting, 0, 0, None, 0));
        }
        let steps = Arc::new(Panicky::default());
        steps.panics.lock().unwrap().push(JobStep::Verify);
        let (wake, cancel) = (Arc::new(Notify::new()), CancellationToken::new());
        let how = Pool { workers: 1, lease_ms: 60 * 60 * 1000, idle: Duration::from_millis(10), now_ms: now };
        let pool = tokio::spawn(work(q.clone(), steps.clone(), how, wake.clone(), cancel.clone()));
        until(&q, "both verifies failed once", &|all| {
            ["r1", "r2"].iter().all(|r| all.get(&(r.to_string(), JobStep::Verify)).is_some_and(|j| j.1 == 1))
        })
        .await;
        steps.panics.lock().unwrap().clear();
        NOW.store(1_000 + crate::backoff::backoff_ms(0, 0) * 2, std::sync::atomic::Ordering::Relaxed);
        wake.notify_waiters();
        until(&q, "every step of both ran after the backoff, long before the lease", &|all| {
            all.values().filter(|j| j.0 == JobState::Done).count() == 10
        })
        .await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops on cancel").unwrap();
    }

    /// Extraction that takes long, as the search text of a bulk session does.
    #[derive(Default)]
    struct SlowText {
        released: std::sync::atomic::AtomicBool,
        reading: std::sync::atomic::AtomicUsize,
    }

    impl Steps for SlowText {
        fn run(&self, job: &Job) -> Result<Outcome, String> {
            if job.step == JobStep::Extract {
                self.reading.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                // Released by the test, or after 10 s so a failing test ends.
                let start = std::time::Instant::now();
                while !self.released.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed().as_secs() < 10 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                self.reading.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(Outcome::Done)
        }
    }

    /// The attack: three large recordings end together and their text takes minutes to read;
    /// every worker took an extraction (they were due first) and a new recording was neither
    /// sealed nor uploaded until they were done. Now extraction has a lane of its own, one at a
    /// time, and the rest go on beside it.
    #[tokio::test]
    async fn reading_text_never_holds_sealing_or_uploads_back() {
        fn now() -> i64 {
            1_000
        }
        let q = Arc::new(Memory::default());
        for r in ["big1", "big2", "big3"] {
            q.0.lock().unwrap().insert((r.into(), JobStep::Extract), (JobState::Waiting, 0, 0, None, 0));
        }
        q.0.lock().unwrap().insert(("new".into(), JobStep::Seal), (JobState::Waiting, 0, 10, None, 0));
        let steps = Arc::new(SlowText::default());
        let (wake, cancel) = (Arc::new(Notify::new()), CancellationToken::new());
        let how = Pool { workers: 3, lease_ms: 60_000, idle: Duration::from_millis(10), now_ms: now };
        let pool = tokio::spawn(work(q.clone(), steps.clone(), how, wake.clone(), cancel.clone()));
        until(&q, "the new recording sealed, uploaded, verified and pruned while text is read", &|all| {
            [JobStep::Seal, JobStep::Upload, JobStep::Verify, JobStep::Prune]
                .iter()
                .all(|s| all.get(&("new".to_owned(), *s)).is_some_and(|j| j.0 == JobState::Done))
        })
        .await;
        assert_eq!(steps.reading.load(std::sync::atomic::Ordering::SeqCst), 1, "one text is read at a time");
        steps.released.store(true, std::sync::atomic::Ordering::SeqCst);
        until(&q, "every text read", &|all| {
            ["big1", "big2", "big3"]
                .iter()
                .all(|r| all.get(&(r.to_string(), JobStep::Extract)).is_some_and(|j| j.0 == JobState::Done))
        })
        .await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops on cancel").unwrap();
    }

    /// A step one lane enqueues for another runs at once: the other lane's worker, asleep for
    /// its idle time, is woken (the lanes made the text of a recording wait for that sleep).
    #[tokio::test]
    async fn a_step_enqueued_for_another_lane_runs_at_once() {
        fn now() -> i64 {
            1_000
        }
        let q = Arc::new(Memory::default());
        let steps = Arc::new(Log::default());
        let (wake, cancel) = (Arc::new(Notify::new()), CancellationToken::new());
        let how = Pool { workers: 2, lease_ms: 60_000, idle: Duration::from_secs(60), now_ms: now };
        let pool = tokio::spawn(work(q.clone(), steps.clone(), how, wake.clone(), cancel.clone()));
        // Both workers find nothing and sleep; then a recording ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.0.lock().unwrap().insert(("r1".into(), JobStep::Seal), (JobState::Waiting, 0, 0, None, 0));
        wake.notify_waiters();
        until(&q, "the text read right after the seal, not after the idle minute", &|all| {
            all.get(&("r1".to_owned(), JobStep::Extract)).is_some_and(|j| j.0 == JobState::Done)
        })
        .await;
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops on cancel").unwrap();
    }

    /// The pool stops on its token, and a worker killed mid-step (a lease never released) does
    /// not stop the step: it runs again once the lease is out.
    #[tokio::test]
    async fn the_pool_runs_to_the_end_and_stops_on_cancel() {
        static NOW: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1_000);
        fn now() -> i64 {
            NOW.load(std::sync::atomic::Ordering::Relaxed)
        }
        let q = Arc::new(Memory::default());
        for r in ["r1", "r2", "r3"] {
            q.0.lock().unwrap().insert((r.into(), JobStep::Seal), (JobState::Waiting, 0, 0, None, 0));
        }
        // r3's seal was claimed by a worker that died: its lease runs to 5000.
        q.0.lock().unwrap().get_mut(&("r3".to_owned(), JobStep::Seal)).unwrap().4 = 5_000;
        let steps = Arc::new(Log::default());
        let (wake, cancel) = (Arc::new(Notify::new()), CancellationToken::new());
        let how = Pool { workers: 2, lease_ms: 60_000, idle: Duration::from_millis(10), now_ms: now };
        let pool = tokio::spawn(work(q.clone(), steps.clone(), how, wake.clone(), cancel.clone()));
        let all_done = |n: usize| {
            let q = q.clone();
            async move {
                for _ in 0..500 {
                    if q.0.lock().unwrap().values().filter(|j| j.0 == JobState::Done).count() == n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        assert!(all_done(10).await, "r1 and r2 run every step");
        assert!(q.0.lock().unwrap()[&("r3".to_owned(), JobStep::Seal)].0 == JobState::Waiting, "r3 is leased");
        NOW.store(5_000, std::sync::atomic::Ordering::Relaxed);
        wake.notify_waiters();
        assert!(all_done(15).await, "r3 runs once its dead worker's lease is out");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), pool).await.expect("the pool stops on cancel").unwrap();
    }
}
