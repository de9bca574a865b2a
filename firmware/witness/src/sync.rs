//! Store-and-forward: turns finished recordings into upload rows, uploads them (resuming
//! multipart progress), has the store check each on arrival and stores its signed manifest
//! before marking it `uploaded`, and writes each session's manifest. These are the pipeline's upload and verify steps
//! ([`Uploader::upload_step`], [`Uploader::verify_step`], run by the daemon's pool and by `sync
//! now`, see `pipeline.rs`). Failures back off (with jitter, capped) and are retried forever.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};
use witness_archive::jobs::Outcome;
use witness_archive::{Format, keys};
use witness_core::JobStep;
use witness_index::{PartRecord, UploadJob};
use witness_store::{Destination, Part, Progress, Resume, Store, StoreError, Tuning};

pub const STORE_FILE: &str = "store.toml";
/// Credentials for reading recordings back (playback), when set apart from the upload ones.
pub const READ_STORE_FILE: &str = "store-read.toml";
/// How long a claimed job is ours before another uploader may take it (renewed per part).
const LEASE_MS: i64 = 10 * 60 * 1000;

/// The configured destination, or the embedded default: a folder in the data dir.
pub fn destination(root: &Path) -> Result<Destination> {
    let path = root.join(STORE_FILE);
    if !path.exists() {
        return Ok(Destination::Dir { path: root.join("store") });
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid store configuration", path.display()))
}

/// The destination read from: `store-read.toml` when set apart (`store set-read`), else the
/// configured one.
pub fn read_destination(root: &Path) -> Result<Destination> {
    let path = root.join(READ_STORE_FILE);
    if !path.exists() {
        return destination(root);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid store configuration", path.display()))
}

/// The store with the read credentials, for fetching recordings back (playback, export).
pub fn open_read_store(dir: &DataDir) -> Result<Store> {
    if !dir.root.join(READ_STORE_FILE).exists() {
        return open_store(dir);
    }
    let dest = read_destination(&dir.root)?;
    Ok(Store::open(&dest, Tuning { part_size: dir.config.part_size, bandwidth: 0 })?)
}

pub fn open_store(dir: &DataDir) -> Result<Store> {
    let dest = destination(&dir.root)?;
    Ok(Store::open(&dest, Tuning { part_size: dir.config.part_size, bandwidth: dir.config.bandwidth_bytes_per_sec })?)
}

pub use witness_core::clock::unix_ms;

/// Object key of a recording (see [`witness_archive::keys`]).
pub fn object_key(box_id: &str, rec: &witness_index::RecordingRow) -> String {
    keys::object_key(box_id, &rec.started_at, &rec.session_id, &rec.id, Format::of_path(&rec.path))
}

pub use witness_archive::keys::key_base;

/// The extension of a recording file (`cast` or `mp4`).
pub fn extension(path: &str) -> &'static str {
    Format::of_path(path).extension()
}

/// Queues one finished recording, if it is sealed: its signed manifest goes wherever it goes. One
/// without a manifest is held back as unsealed (shown in `sync status`) until it is sealed.
pub fn enqueue(dir: &DataDir, recording_id: &str) {
    let Ok(Some(rec)) = dir.index.recording(recording_id) else { return };
    if rec.bytes == 0 {
        return;
    }
    let key = object_key(&dir.config.box_id, &rec);
    let queued = if crate::evidence::is_sealed(&dir.root.join(&rec.path)) {
        dir.index.enqueue_upload(recording_id, &key)
    } else {
        dir.index.upload_unsealed(recording_id, &key, "no signed manifest")
    };
    if let Err(e) = queued {
        warn!(recording_id, error = %e, "could not queue the recording for upload; it is queued at next start");
    }
}

/// Holds a recording that could not be sealed back from the upload queue, with the reason.
pub fn hold_unsealed(dir: &DataDir, recording_id: &str, reason: &str) {
    let Ok(Some(rec)) = dir.index.recording(recording_id) else { return };
    let key = object_key(&dir.config.box_id, &rec);
    if let Err(e) = dir.index.upload_unsealed(recording_id, &key, reason) {
        warn!(recording_id, error = %e, "could not note why the recording is not sealed");
    }
}

struct IndexProgress<'a> {
    dir: &'a DataDir,
    recording_id: String,
    sent: u64,
    say: Option<Say>,
}

impl Progress for IndexProgress<'_> {
    fn part_done(&mut self, resume: &Resume) {
        let parts: Vec<PartRecord> =
            resume.parts.iter().map(|p| PartRecord { number: p.number, etag: p.etag.clone(), size: p.size }).collect();
        if let Err(e) = self.dir.index.save_multipart(&self.recording_id, resume.upload_id.as_deref(), &parts) {
            warn!(error = %e, "could not save multipart progress; a restart re-sends this part");
        }
        let _ = self.dir.index.renew_lease(&self.recording_id, unix_ms() + LEASE_MS);
    }

    fn sent(&mut self, bytes: u64) {
        self.sent += bytes;
        if let Some(say) = &self.say {
            say(format!("  {} : {} bytes sent", self.recording_id, self.sent));
        }
    }
}

/// A line for the person running a command, handed to the command layer, which prints it.
pub type Say = Arc<dyn Fn(String) + Send + Sync>;

pub struct Uploader {
    pub dir: Arc<DataDir>,
    /// The store as `store.toml` last said, re-opened when the file changes, so `store set`
    /// takes effect on a running box.
    store: std::sync::Mutex<(Option<std::time::SystemTime>, Arc<Store>)>,
    /// Whether the current store passed [`Store::check`] (bucket there, credentials taken);
    /// some S3 servers would otherwise create a mistyped bucket on the first PUT.
    checked: std::sync::atomic::AtomicBool,
    /// Where a command wants each upload's progress told (`sync now`); the daemon has none.
    pub say: Option<Say>,
    /// Bytes of recordings sent by the steps, and recordings verified (for `sync now`).
    pub sent: std::sync::atomic::AtomicU64,
    pub verified: std::sync::atomic::AtomicU64,
}

fn store_stamp(root: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(root.join(STORE_FILE)).and_then(|m| m.modified()).ok()
}

impl Uploader {
    pub fn new(dir: Arc<DataDir>, say: Option<Say>) -> Result<Self> {
        let stamp = store_stamp(&dir.root);
        let store = Arc::new(open_store(&dir)?);
        Ok(Self {
            dir,
            store: std::sync::Mutex::new((stamp, store)),
            checked: Default::default(),
            say,
            sent: Default::default(),
            verified: Default::default(),
        })
    }

    /// The current store, re-opened if `store.toml` changed since it was opened.
    fn store(&self) -> Arc<Store> {
        let mut cur = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = store_stamp(&self.dir.root);
        if stamp != cur.0 {
            match open_store(&self.dir) {
                Ok(store) => {
                    info!(store = store.describe(), "store configuration changed");
                    // One changed outside `witness store set` is an audit event (`store set` wrote
                    // its own before the file changed).
                    if let Err(e) = crate::audit_checkpoint::note_store_change(&self.dir, "while serving") {
                        warn!(error = format!("{e:#}"), "a change of store could not be written to the audit log");
                    }
                    *cur = (stamp, Arc::new(store));
                    self.checked.store(false, std::sync::atomic::Ordering::Release);
                    let _ = self.dir.index.make_uploads_due();
                    let _ = self.dir.index.make_jobs_due(Some(JobStep::Upload));
                }
                Err(e) => warn!(error = %e, "the new store configuration cannot be used; keeping the previous one"),
            }
        }
        cur.1.clone()
    }

    /// Sends a claimed job's recording and has the store check it on arrival (the receipt):
    /// nothing goes up without its signed manifest beside it on the box.
    /// Returns how the store confirmed it.
    async fn send(
        &self,
        store: &Store,
        job: &UploadJob,
        progress: &mut IndexProgress<'_>,
    ) -> Result<String, StoreError> {
        let dir = &self.dir;
        let path: PathBuf = dir.root.join(&job.path);
        let resume = Resume {
            upload_id: job.upload_id.clone(),
            parts: job.parts.iter().map(|p| Part { number: p.number, etag: p.etag.clone(), size: p.size }).collect(),
        };
        if let Some(say) = &self.say {
            let done: u64 = resume.parts.iter().map(|p| p.size).sum();
            if done > 0 {
                say(format!(
                    "  {} : resuming, {} parts ({done} bytes) already stored",
                    job.recording_id,
                    resume.parts.len()
                ));
            }
        }
        // A session held before its upload is written with the S3 Object Lock legal hold on.
        let held = dir.index.hold_of(&job.session_id).map(|h| h.is_some()).unwrap_or(false);
        if !self.checked.load(std::sync::atomic::Ordering::Acquire) {
            let access = store.check().await?;
            let _ = dir.index.store_key_access(access.as_str());
            self.checked.store(true, std::sync::atomic::Ordering::Release);
        }
        if !path.exists() {
            return Err(StoreError::Local(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is missing", path.display()),
            )));
        }
        // No recording goes up without its signed manifest.
        crate::evidence::evidence_files(dir, &job.recording_id)
            .map_err(|e| StoreError::Local(std::io::Error::other(format!("{e:#}"))))?;
        // Checksums from sealing go with the bytes; nothing is hashed again here.
        let digests = job.part_digests.as_deref().and_then(witness_store::PartDigests::parse);
        // A copy found changed at the last attempt is hashed before anything is sent again.
        let check_first = dir
            .index
            .upload_last_error(&job.recording_id)
            .ok()
            .flatten()
            .is_some_and(|e| witness_store::said_changed_since_sealing(&e));
        let sums =
            witness_store::Checksums { size: job.bytes, sha256: &job.sha256, parts: digests.as_ref(), check_first };
        let receipt = store.put_file(&job.object_key, &path, sums, resume, held, progress).await?;
        // The part list to verify against is what the index now holds.
        let parts = match dir.index.claim_state(&job.recording_id) {
            Ok(p) => p.into_iter().map(|p| Part { number: p.number, etag: p.etag, size: p.size }).collect(),
            Err(_) => Vec::new(),
        };
        match store.verify(&job.object_key, job.bytes, &job.sha256, &parts, receipt.as_ref()).await {
            // What arrived is not the sealed recording: the file says whether it changed on the
            // box (then named as such, and not sent again) or on the way.
            Err(e @ StoreError::Mismatch { .. }) => {
                let part_size = self.dir.config.part_size;
                return Err(match witness_store::sealed_digests(&path, job.bytes, &job.sha256, part_size).await {
                    Err(changed) if changed.changed_since_sealing() => changed,
                    _ => e,
                });
            }
            other => other?,
        }
        Ok(match receipt {
            Some(witness_store::Receipt { sha256_b64: Some(sum), .. }) if parts.is_empty() => {
                format!("sha256 {sum} on arrival")
            }
            Some(witness_store::Receipt { etag: Some(etag), .. }) => format!("etag {etag} on arrival"),
            _ => "read back".to_owned(),
        })
    }

    /// Keeps the store's confirmation of `job`'s recording with its upload job, for verify.
    fn keep_confirmation(&self, store: &Store, job: &UploadJob, check: String) -> Result<(), String> {
        let confirmed = witness_archive::receipt::Confirmed {
            store: store.describe().to_owned(),
            key: job.object_key.clone(),
            sha256: job.sha256.clone(),
            check,
        };
        self.dir
            .index
            .save_job_result(&job.recording_id, JobStep::Upload, &confirmed.to_text())
            .map_err(|e| format!("keeping the store's confirmation: the index: {e}"))
    }

    /// Stores a job's signed manifest and signature beside its recording, for verification from
    /// the bucket; the recording counts as uploaded only once both are stored.
    async fn store_evidence(&self, store: &Store, job: &UploadJob) -> Result<(), StoreError> {
        let held = self.dir.index.hold_of(&job.session_id).map(|h| h.is_some()).unwrap_or(false);
        let (manifest, sig) = crate::evidence::own_evidence(&self.dir, &job.recording_id)
            .map_err(|e| StoreError::Other(format!("{NOT_ITS_OWN}{e:#}")))?;
        let base = key_base(&job.object_key);
        let stored = async {
            store.put_bytes(&format!("{base}.manifest.json"), manifest, held).await?;
            store.put_bytes(&format!("{base}.manifest.sig"), sig.into_bytes(), held).await
        };
        stored.await.map_err(|e| match e {
            StoreError::Unreachable(m) => StoreError::Unreachable(format!("storing the manifest: {m}")),
            e => StoreError::Other(format!("storing the manifest: {e}")),
        })
    }

    /// The recording's evidence on the box is refused as not its own: named once (an audit
    /// event), the recording kept on the box and not marked uploaded.
    fn evidence_refused(&self, job: &UploadJob, message: &str) {
        if self.dir.index.upload_last_error(&job.recording_id).ok().flatten().as_deref() != Some(message) {
            let _ = self.dir.index.audit(
                "recording_evidence_refused",
                None,
                None,
                Some(&job.session_id),
                &serde_json::json!({ "recording": job.recording_id, "error": message }),
            );
            warn!(recording_id = %job.recording_id, error = %message, "the recording's manifest is not its own; not stored, the recording kept");
        }
    }

    /// The recording and its evidence are stored: the job is done, the recording `uploaded`.
    fn succeeded(&self, job: &UploadJob, desc: &str) {
        let dir = &self.dir;
        let _ = dir.index.upload_verified(&job.recording_id);
        self.verified.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The store is back: what waited in backoff need not wait any longer.
        let _ = dir.index.make_uploads_due();
        let _ = dir.index.make_jobs_due(Some(JobStep::Upload));
        let _ = dir.index.store_contact(desc, None);
        let _ = dir.index.audit(
            "recording_uploaded",
            None,
            None,
            Some(&job.session_id),
            &serde_json::json!({ "recording": job.recording_id, "key": job.object_key, "bytes": job.bytes, "sha256": job.sha256 }),
        );
        info!(recording_id = %job.recording_id, key = %job.object_key, "recording uploaded and verified");
        if let Some(say) = &self.say {
            say(format!("uploaded {} ({} bytes) as {} — verified", job.recording_id, job.bytes, job.object_key));
        }
    }

    /// A failed attempt, kept on the upload row and the store's health; returns the reason.
    fn failed(&self, job: &UploadJob, e: StoreError, desc: &str) -> String {
        let dir = &self.dir;
        let message = e.to_string();
        // A multipart upload the store no longer knows, or a part that did not match, starts
        // over rather than failing forever.
        if matches!(
            e,
            StoreError::Mismatch { .. } | StoreError::NotFound(_) | StoreError::ContentChangedSinceSealing { .. }
        ) {
            let _ = dir.index.save_multipart(&job.recording_id, None, &[]);
        }
        // A local copy that is not what was sealed is evidence of a change on the box: an audit
        // event the first time it is found so (not at every retry), the copy kept as it is.
        if e.changed_since_sealing()
            && dir.index.upload_last_error(&job.recording_id).ok().flatten().as_deref() != Some(message.as_str())
        {
            let _ = dir.index.audit(
                "recording_changed_after_sealing",
                None,
                None,
                Some(&job.session_id),
                &serde_json::json!({ "recording": job.recording_id, "error": message }),
            );
            warn!(recording_id = %job.recording_id, error = %message, "a recording changed since it was sealed; not uploaded, kept");
        }
        let next = unix_ms() + witness_archive::backoff::backoff_ms(job.attempts, unix_ms());
        let _ = dir.index.upload_failed(&job.recording_id, &message, next);
        let _ = dir.index.store_contact(desc, Some((e.kind(), &message)));
        warn!(recording_id = %job.recording_id, error = %message, attempts = job.attempts + 1, "upload failed; will retry");
        if let Some(say) = &self.say {
            say(format!("upload of {} failed: {message}", job.recording_id));
        }
        message
    }

    /// Claims a recording's upload row for a pipeline step: `Err` with the outcome to return
    /// when there is nothing to claim (done already, nothing to upload, another process on it).
    fn claim_for_step(
        &self,
        recording_id: &str,
    ) -> std::result::Result<UploadJob, std::result::Result<Outcome, String>> {
        let dir = &self.dir;
        let index = |e: witness_index::IndexError| Err(format!("the index: {e}"));
        match dir.index.upload_key(recording_id).map_err(index)? {
            // `sync now` (or an earlier run) got there first.
            Some((_, state)) if state == "verified" => return Err(Ok(Outcome::Done)),
            Some(_) => {}
            None => {
                let rec = dir.index.recording(recording_id).map_err(index)?;
                if rec.is_none_or(|r| r.bytes == 0) {
                    return Err(Ok(Outcome::Done)); // nothing to upload
                }
                enqueue(dir, recording_id);
            }
        }
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        match dir.index.claim_upload_of(recording_id, unix_ms(), LEASE_MS, std::process::id(), &alive) {
            Ok(Some(job)) => Ok(job),
            Ok(None) => match dir.index.upload_key(recording_id) {
                Ok(Some((_, state))) if state == "unsealed" => Err(Err("not sealed: no signed manifest".into())),
                _ => Err(Ok(Outcome::Later {
                    at_ms: unix_ms() + 5_000,
                    why: "being uploaded by another process".into(),
                })),
            },
            Err(e) => Err(Err(format!("the index: {e}"))),
        }
    }

    /// The pipeline's upload step: the recording sent (resuming multipart progress) and checked
    /// by the store on arrival. Its evidence goes up in the verify step.
    pub async fn upload_step(&self, recording_id: &str) -> std::result::Result<Outcome, String> {
        let job = match self.claim_for_step(recording_id) {
            Ok(job) => job,
            Err(outcome) => return outcome,
        };
        let store = self.store();
        let desc = store.describe().to_owned();
        let mut progress =
            IndexProgress { dir: &self.dir, recording_id: job.recording_id.clone(), sent: 0, say: self.say.clone() };
        match self.send(&store, &job, &mut progress).await {
            Ok(check) => {
                self.sent.fetch_add(progress.sent, std::sync::atomic::Ordering::Relaxed);
                let kept = self.keep_confirmation(&store, &job, check);
                let _ = self.dir.index.release_upload(recording_id);
                kept?;
                let _ = self.dir.index.store_contact(&desc, None);
                info!(recording_id, key = %job.object_key, "recording stored; the store checked it on arrival");
                Ok(Outcome::Done)
            }
            Err(e) => {
                self.sent.fetch_add(progress.sent, std::sync::atomic::Ordering::Relaxed);
                Err(self.failed(&job, e, &desc))
            }
        }
    }

    /// The pipeline's verify step: the store's confirmation of the recording that the upload
    /// step kept (without one covering this store, object and checksum — a step done by an
    /// older version, a store changed since — the recording is uploaded again and checked on
    /// arrival again: nothing is taken on trust), then the signed manifest and signature stored
    /// beside it; only then is it `uploaded` (and may its local copy go). Then the session's
    /// manifest, once every recording of the session is there.
    pub async fn verify_step(&self, recording_id: &str) -> std::result::Result<Outcome, String> {
        let mut job = match self.claim_for_step(recording_id) {
            Ok(job) => job,
            Err(outcome) => return outcome,
        };
        let store = self.store();
        let desc = store.describe().to_owned();
        let saved = match self.dir.index.job_result(recording_id, JobStep::Upload) {
            Ok(saved) => saved,
            Err(e) => {
                let _ = self.dir.index.release_upload(recording_id);
                return Err(format!("the index: {e}"));
            }
        };
        if !witness_archive::receipt::Confirmed::covers(saved.as_deref(), &desc, &job.object_key, &job.sha256) {
            warn!(recording_id, store = %desc, "no confirmation from this store kept for the recording; uploading it again");
            // From the start: a multipart upload left behind may be complete already, and only a
            // new one is checked on arrival.
            let _ = self.dir.index.save_multipart(recording_id, None, &[]);
            (job.upload_id, job.parts) = (None, Vec::new());
            let mut progress = IndexProgress {
                dir: &self.dir,
                recording_id: job.recording_id.clone(),
                sent: 0,
                say: self.say.clone(),
            };
            let sent = self.send(&store, &job, &mut progress).await;
            self.sent.fetch_add(progress.sent, std::sync::atomic::Ordering::Relaxed);
            match sent {
                Ok(check) => {
                    if let Err(e) = self.keep_confirmation(&store, &job, check) {
                        let _ = self.dir.index.release_upload(recording_id);
                        return Err(e);
                    }
                }
                Err(e) => return Err(self.failed(&job, e, &desc)),
            }
        }
        match self.store_evidence(&store, &job).await {
            Ok(()) => {
                self.succeeded(&job, &desc);
                self.manifests().await;
                Ok(Outcome::Done)
            }
            Err(e) => {
                if let StoreError::Other(m) = &e
                    && m.starts_with(NOT_ITS_OWN)
                {
                    self.evidence_refused(&job, &e.to_string());
                }
                Err(self.failed(&job, e, &desc))
            }
        }
    }

    /// Stores the manifest of every ended session whose recordings are all uploaded (one that
    /// fails is tried again at the next verify or housekeeping tick).
    pub async fn manifests(&self) {
        let Ok(sessions) = self.dir.index.sessions_needing_manifest() else { return };
        for id in sessions {
            match self.manifest(&id).await {
                Ok(key) => {
                    let _ = self.dir.index.manifest_uploaded(&id, &key);
                }
                Err(e) => {
                    warn!(session_id = %id, error = %e, "manifest upload failed; will retry");
                    return;
                }
            }
        }
    }

    async fn manifest(&self, session_id: &str) -> Result<String> {
        let index = &self.dir.index;
        let session = index.session(session_id)?.context("session vanished")?;
        let recordings = index.session_recordings(session_id)?;
        let mut entries = Vec::new();
        for r in &recordings {
            entries.push(witness_archive::manifest::Entry {
                id: r.id.clone(),
                channel: r.channel.clone(),
                key: index.upload_key(&r.id)?.map(|(k, _)| k),
                bytes: r.bytes,
                sha256: r.sha256.clone(),
                started_at: r.started_at.clone(),
                ended_at: r.ended_at.clone(),
                duration: r.duration,
                recovered: r.recovered,
                status: r.status.to_string(),
                status_reason: r.status_reason.clone(),
            });
        }
        let events: Vec<_> = index.session_audit(session_id)?;
        let manifest =
            witness_archive::manifest::session_manifest(&self.dir.config.box_id, &session, &entries, &events)?;
        let key = keys::session_manifest_key(&self.dir.config.box_id, &session.started_at, session_id);
        let held = index.hold_of(session_id)?.is_some();
        // Signed over its exact bytes, so `index rebuild` can take the session's own fields
        // (client address, protocol, times, end reason) from it.
        let sig = witness_core::evidence::sign_bytes(&crate::evidence::signing_key(&self.dir.root)?, &manifest);
        self.store().put_bytes(&key, manifest, held).await?;
        self.store().put_bytes(&session_signature_key(&key), sig.into_bytes(), held).await?;
        Ok(key)
    }
}

/// How a refusal of the evidence beside a recording begins (its manifest not its own).
const NOT_ITS_OWN: &str = "evidence refused: ";

/// Where a session manifest's signature is stored: beside it, `manifest.sig`.
pub fn session_signature_key(manifest_key: &str) -> String {
    format!("{}.sig", manifest_key.strip_suffix(".json").unwrap_or(manifest_key))
}
