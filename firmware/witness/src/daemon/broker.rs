//! The box's answer to what the SSH proxy asks ([`witness_ssh::Broker`]): users, grants and
//! targets from the index, recordings from the recorder, audit events into the index.

use crate::datadir::DataDir;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::{error, info, warn};
use witness_core::cast::{Header, Provenance};
use witness_core::policy::{self, Access, Denial};
use witness_core::{Protocol, RecordingStatus};
use witness_gate::{AuditEvent, Gate, Unavailable};
use witness_index::{RecordingEnd, Secret};
use witness_recorder::{CastRecorder, RecordError, RecorderSettings, Summary};
use witness_ssh::{Credential, RecordingMeta, Refusal, TargetPlan, TargetSecret};

pub struct BoxBroker {
    pub dir: Arc<DataDir>,
    /// Wakes the uploader when a recording is ready.
    pub wake: Arc<tokio::sync::Notify>,
    /// Sessions open now (for the front panel).
    pub live: Arc<std::sync::atomic::AtomicU32>,
    /// Takes finished recordings to sealing and upload.
    pub finisher: Finisher,
    /// Sessions open now, with the token that ends them (terminate from the console, access
    /// taken away).
    pub running: std::sync::Mutex<std::collections::HashMap<String, Running>>,
    /// A valid hash to verify against when the user does not exist, so timing does not tell.
    dummy_hash: String,
    /// The front door's throttle and hashing bound, shared by SSH and the console.
    pub gate: witness_gate::password::Gate,
}

impl BoxBroker {
    pub fn new(dir: Arc<DataDir>, wake: Arc<tokio::sync::Notify>) -> anyhow::Result<Self> {
        Ok(Self {
            dir: dir.clone(),
            wake: wake.clone(),
            live: Default::default(),
            finisher: Finisher { dir: dir.clone(), wake: wake.clone() },
            running: Default::default(),
            dummy_hash: witness_gate::password::hash_password("not a real password")?,
            gate: Default::default(),
        })
    }

    fn index(&self) -> &witness_index::Index {
        &self.dir.index
    }

    /// Compares a password with a stored Argon2 hash; without one, against a dummy hash, so an
    /// unknown user costs the same time as a wrong password. Call it only through the gate.
    pub fn check_password(&self, stored: Option<&str>, password: &str, memory: &mut Vec<argon2::Block>) -> bool {
        let hash = stored.unwrap_or(&self.dummy_hash);
        witness_gate::password::verify_password(hash, password, memory) && stored.is_some()
    }

    /// Checks a one-time code of `user` and takes its time step: each code works once, on
    /// every door.
    pub fn take_totp(&self, user: &str, code: &str) -> bool {
        let Some(secret) = self.index().totp_secret(user).ok().flatten() else { return false };
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        match witness_web::totp::verify_step(&secret, code, now) {
            Some(step) => self.index().take_totp_step(user, step).unwrap_or(false),
            None => false,
        }
    }

    /// Writes what the gate reported (a lockout, throttled attempts).
    pub fn audit_gate(&self, event: witness_gate::password::GateEvent) {
        warn!(kind = event.kind, detail = %event.detail, "login throttle");
        Gate::audit(
            self,
            AuditEvent { kind: event.kind, user: None, target: None, session_id: None, detail: event.detail },
        );
    }

    /// Records a new session of either protocol: index row, live count, terminate token.
    pub fn open_session(
        &self,
        user: &str,
        target: &str,
        protocol: Protocol,
        peer: Option<SocketAddr>,
    ) -> Result<String, Unavailable> {
        let id = new_id();
        let client = peer.map(|p| p.to_string());
        self.index()
            .create_session(&id, user, target, protocol, client.as_deref())
            .map_err(|e| Unavailable::Index(e.to_string()))?;
        info!(session_id = %id, user, target, protocol = protocol.as_str(), "session started");
        self.live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let epoch = self.index().access_epoch(user).ok().flatten().unwrap_or(0);
        let running = Running { user: user.to_owned(), epoch, ..Default::default() };
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), running);
        Ok(id)
    }

    pub fn close_session(&self, session_id: &str, reason: &str) {
        self.live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(session_id);
        if let Err(e) = self.index().end_session(session_id, reason, false) {
            error!(session_id, error = %e, "could not mark the session ended");
        }
    }

    pub fn is_running(&self, session_id: &str) -> bool {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).contains_key(session_id)
    }

    /// Why the box ended a running session itself (not the console), if it did.
    pub fn ended_why(&self, session_id: &str) -> Option<String> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).get(session_id).and_then(|r| r.reason.clone())
    }

    /// Ends the sessions whose user's access shrank since they started (removed, a key taken
    /// away, password or role changed). Called every few seconds by the daemon: the admin
    /// commands only change the index.
    pub fn end_sessions_of_changed_users(&self) {
        let running: Vec<(String, Running)> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, r)| r.reason.is_none())
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        for (id, r) in running {
            let now = match self.index().access_epoch(&r.user) {
                Ok(e) => e,
                Err(e) => {
                    error!(error = %e, "index read failed");
                    continue;
                }
            };
            let why = match now {
                None => format!("user {} was removed", r.user),
                Some(e) if e != r.epoch => format!("{}'s access changed (a key, the password or the role)", r.user),
                Some(_) => continue,
            };
            let message = format!("{why}; session ended");
            if let Some(entry) = self.running.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
                entry.reason = Some(message.clone());
            }
            let target = self.index().session(&id).ok().flatten().map(|s| s.target);
            Gate::audit(
                self,
                AuditEvent {
                    kind: "session_terminated",
                    user: Some(r.user.clone()),
                    target,
                    session_id: Some(id.clone()),
                    detail: serde_json::json!({ "reason": "access_changed", "message": message }),
                },
            );
            r.token.cancel();
        }
    }

    /// Ends a running session (the console's terminate); `false` when it is not running.
    pub fn terminate(&self, session_id: &str, by: &str) -> bool {
        let token = self.running.lock().unwrap_or_else(|p| p.into_inner()).get(session_id).map(|r| r.token.clone());
        let Some(token) = token else { return false };
        let session = self.index().session(session_id).ok().flatten();
        let (user, target) = session.map(|s| (Some(s.user), Some(s.target))).unwrap_or_default();
        Gate::audit(
            self,
            AuditEvent {
                kind: "session_terminated",
                user,
                target,
                session_id: Some(session_id.to_owned()),
                detail: serde_json::json!({ "reason": "terminated", "by": by }),
            },
        );
        token.cancel();
        true
    }

    /// The one access decision of SSH and RDP: looks the target and grant up once and decides,
    /// protocol checked; the target comes back with the access.
    pub fn decide(
        &self,
        user: &str,
        target: Option<&str>,
        wanted: Protocol,
    ) -> Result<(witness_index::TargetRecord, Access), Denial> {
        let record = match target {
            Some(t) => self.index().target(t).unwrap_or_else(|e| {
                error!(error = %e, "index read failed");
                None
            }),
            None => None,
        };
        let grant = match (target, &record) {
            (Some(t), Some(_)) => self.index().grant_of(user, t).unwrap_or_else(|e| {
                error!(error = %e, "index read failed");
                None
            }),
            _ => None,
        };
        let access = policy::decide(user, target, wanted, record.as_ref().map(|r| r.protocol), grant, unix_now())?;
        // `decide` refuses an unknown target, so a record is there when it allows.
        let record = record.ok_or_else(|| Denial::UnknownTarget { target: target.unwrap_or("").into() })?;
        Ok((record, access))
    }
}

/// A session open now: who, the user's access epoch when it started, and how it is ended.
#[derive(Debug, Clone, Default)]
pub struct Running {
    pub token: tokio_util::sync::CancellationToken,
    pub user: String,
    pub epoch: i64,
    /// Why the box ended it, once it did (shown to the user).
    pub reason: Option<String>,
}

/// What happens to every finished recording, of either protocol: its end in the index, then
/// its after-life enqueued as durable jobs (`pipeline.rs`), starting with sealing.
#[derive(Clone)]
pub struct Finisher {
    dir: Arc<DataDir>,
    wake: Arc<tokio::sync::Notify>,
}

impl Finisher {
    pub fn recording_finished(&self, recording_id: &str, outcome: Result<Summary, RecordError>) {
        let _ = self.dir.index.set_recording_status(recording_id, RecordingStatus::Processing);
        let end = match outcome {
            Ok(s) => RecordingEnd {
                status: RecordingStatus::Completed,
                reason: None,
                bytes: s.bytes,
                sha256: Some(s.sha256),
                duration: Some(s.duration),
                recovered: false,
            },
            Err(e) => {
                // Keep what was written: trim a torn last line so the file still plays.
                let path = self.dir.index.recording(recording_id).ok().flatten().map(|r| self.dir.root.join(r.path));
                let key_for = witness_keys::key_for(&self.dir.root);
                let kept = path.as_deref().map(|p| witness_recorder::recover_cast(p, &key_for));
                let (bytes, sha256, duration) = match kept {
                    Some(Ok(r)) => (r.bytes, Some(r.sha256), Some(r.duration)),
                    _ => (0, None, None),
                };
                RecordingEnd {
                    status: RecordingStatus::Failed,
                    reason: Some(e.to_string()),
                    bytes,
                    sha256,
                    duration,
                    recovered: false,
                }
            }
        };
        if let Err(e) = self.dir.index.finish_recording(recording_id, &end) {
            error!(recording_id, error = %e, "could not record the end of a recording; recovery will finish it at next start");
            return;
        }
        // What follows (sealing, search text, upload, verify, prune) are durable jobs the
        // archive pool runs off the session's threads.
        crate::pipeline::recording_finished(&self.dir, &self.wake, recording_id);
    }
}

use witness_core::clock::unix_secs as unix_now;

/// What each fsync of a recording's writer made durable, noted in the index (schema step 22):
/// recovery names a file found shorter than that, or changed below it (red team h-red18e; the
/// video and the RDP key track too since `h-fix18g`).
pub fn note_durable(dir: &Arc<DataDir>, id: &str) -> witness_recorder::OnDurable {
    let (dir, rid) = (dir.clone(), id.to_owned());
    Arc::new(move |bytes, sha| {
        if let Err(e) = dir.index.note_durable(&rid, bytes, sha) {
            tracing::warn!(recording_id = %rid, error = %e, "could not note what the recording made durable");
        }
    })
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn same_key(a: &str, b: &str) -> bool {
    match (witness_ssh::parse_public_key(a), witness_ssh::parse_public_key(b)) {
        (Ok((a, _)), Ok((b, _))) => a == b,
        _ => false,
    }
}

impl witness_ssh::Broker for BoxBroker {
    fn authenticate(&self, user: &str, credential: Credential<'_>, peer: Option<SocketAddr>) -> Result<(), Refusal> {
        if user.len() > witness_core::gate::MAX_LOGIN_LEN {
            return Err(Refusal::BadName);
        }
        let record = || {
            self.index().user(user).unwrap_or_else(|e| {
                error!(error = %e, "index read failed");
                None
            })
        };
        match credential {
            Credential::Password(password) => {
                let (outcome, event) = self.gate.password(peer.map(|p| p.ip()), user, |memory| {
                    self.check_password(record().and_then(|r| r.password_hash).as_deref(), password, memory)
                });
                if let Some(e) = event {
                    self.audit_gate(e);
                }
                outcome
            }
            // A key cannot be guessed: no throttle, and a key login always gets past a lockout
            // a stranger caused.
            Credential::PublicKey(line) => {
                if record().is_some_and(|r| r.ssh_keys.iter().any(|k| same_key(k, line))) {
                    Ok(())
                } else {
                    Err(Refusal::Wrong)
                }
            }
        }
    }

    fn access_epoch(&self, user: &str) -> Option<i64> {
        self.index().access_epoch(user).unwrap_or_else(|e| {
            error!(error = %e, "index read failed");
            None
        })
    }

    fn needs_second_factor(&self, user: &str) -> bool {
        // An index that cannot be read asks for the code: never a way around it.
        self.index().totp_secret(user).map(|s| s.is_some()).unwrap_or(true)
    }

    fn second_factor(&self, user: &str, code: &str, peer: Option<SocketAddr>) -> Result<(), Refusal> {
        let (outcome, event) = self.gate.password(peer.map(|p| p.ip()), user, |_| self.take_totp(user, code));
        if let Some(e) = event {
            self.audit_gate(e);
        }
        outcome
    }

    fn plan(&self, user: &str, target: Option<&str>) -> Result<TargetPlan, Denial> {
        let (record, access) = self.decide(user, target, Protocol::Ssh)?;
        let forward = self.index().grant_forwards(user, &record.name).unwrap_or_else(|e| {
            error!(error = %e, "index read failed");
            Vec::new()
        });
        let transfers = self.index().transfers(&record.name).unwrap_or_default();
        Ok(TargetPlan {
            forward,
            transfers,
            name: record.name,
            host: record.host,
            port: record.port,
            login: record.login,
            secret: match record.secret {
                Secret::Password(p) => TargetSecret::Password(p),
                Secret::PrivateKey(k) => TargetSecret::PrivateKey(k),
            },
            host_key: record.host_key,
            access,
        })
    }

    fn pin_host_key(&self, target: &str, key: &str) -> Result<bool, String> {
        self.index().pin_host_key(target, key).map_err(|e| e.to_string())
    }

    fn start_recording(&self, session_id: &str, meta: &RecordingMeta) -> Result<(String, CastRecorder), RecordError> {
        let id = new_id();
        let day = &crate::datadir::today();
        let rel = PathBuf::from(crate::datadir::RECORDINGS).join(day).join(format!("{id}.cast"));
        let path = self.dir.root.join(&rel);
        let session = self.index().session(session_id).ok().flatten();
        let (user, target) = session.map(|s| (s.user, s.target)).unwrap_or_default();
        let channel = match &meta.command {
            Some(c) => format!("{}: {c}", meta.kind),
            None => meta.kind.to_owned(),
        };
        self.index()
            .create_recording(&id, session_id, &channel, &rel.to_string_lossy())
            .map_err(|e| RecordError::Create(format!("index: {e}")))?;
        let started = (|| {
            std::fs::create_dir_all(path.parent().expect("a recording path has a parent"))
                .map_err(|e| RecordError::Create(e.to_string()))?;
            let header = Header {
                version: 2,
                // No pty, or a client that sent 0x0 (`ssh -tt` without a terminal): players
                // need a real size, so take the classic one.
                width: if meta.cols == 0 { 80 } else { meta.cols },
                height: if meta.rows == 0 { 24 } else { meta.rows },
                timestamp: unix_now(),
                title: Some(format!("{user}@{target}")),
                command: meta.command.clone(),
                env: meta.term.iter().map(|t| ("TERM".to_owned(), t.clone())).collect(),
                witness: Some(Provenance {
                    session_id: session_id.to_owned(),
                    recording_id: id.clone(),
                    user: user.clone(),
                    target: target.clone(),
                    box_id: self.dir.config.box_id.clone(),
                }),
                witness_format: None,
            };
            let settings = RecorderSettings { fsync_interval: self.dir.config.fsync_interval };
            let encryption = witness_keys::new_encryption(&self.dir.root, &id)
                .map_err(|e| RecordError::Create(format!("{:#}", anyhow::Error::from(e))))?;
            // What each fsync made durable goes to the index: recovery names a file found
            // shorter than that (records cut off its end after the fact).
            let noted = note_durable(&self.dir, &id);
            witness_recorder::start_cast(&path, &header, settings, Some(encryption)).map(|r| r.on_durable(noted))
        })();
        match started {
            Ok(rec) => Ok((id, rec)),
            Err(e) => {
                let end = RecordingEnd {
                    status: RecordingStatus::Failed,
                    reason: Some(e.to_string()),
                    bytes: 0,
                    sha256: None,
                    duration: None,
                    recovered: false,
                };
                let _ = self.index().finish_recording(&id, &end);
                Err(e)
            }
        }
    }

    fn recording_finished(&self, recording_id: &str, outcome: Result<Summary, RecordError>) {
        self.finisher.recording_finished(recording_id, outcome)
    }
}

/// The one implementation of what every door shares.
impl witness_gate::Gate for BoxBroker {
    fn admit(&self) -> Result<(), Unavailable> {
        let dir = self.dir.recordings_dir();
        let min = self.dir.config.min_free_bytes;
        let watermark = self.dir.config.high_watermark_percent;
        if let Ok(used) = witness_recorder::used_percent(&dir)
            && used > watermark
        {
            // The uploader evicts uploaded recordings as soon as the disk passes the watermark,
            // so still being above it means nothing can be evicted: fail closed.
            self.wake.notify_one();
            warn!(used, watermark, "recording storage above its high watermark; refusing new sessions");
            return Err(Unavailable::Storage(format!(
                "the box's recording storage is {used}% full (high watermark {watermark}%) and holds no uploaded recordings to evict; new sessions are refused until the store catches up"
            )));
        }
        match witness_recorder::free_space(&dir) {
            Ok(free) if free >= min => Ok(()),
            Ok(free) => {
                warn!(free, min, "recording storage full; refusing new sessions");
                Err(Unavailable::Storage(format!(
                    "the box's recording storage is full ({} MiB free, {} MiB required); new sessions are refused until space is freed",
                    free / (1024 * 1024),
                    min / (1024 * 1024)
                )))
            }
            Err(e) => Err(Unavailable::Storage(format!(
                "the box cannot check its recording storage ({e}); new sessions are refused"
            ))),
        }
    }

    fn session_started(
        &self,
        user: &str,
        target: &str,
        protocol: Protocol,
        peer: Option<SocketAddr>,
    ) -> Result<String, Unavailable> {
        self.open_session(user, target, protocol, peer)
    }

    fn session_ended(&self, session_id: &str, reason: &str) {
        self.close_session(session_id, reason)
    }

    fn recheck(&self, user: &str, target: &str, protocol: Protocol) -> Result<Access, Denial> {
        match protocol {
            Protocol::Ssh => self.decide(user, Some(target), Protocol::Ssh).map(|(_, a)| a),
            Protocol::Rdp => self.rdp_decide(user, target).map(|(_, a)| a),
        }
    }

    fn termination(&self, session_id: &str) -> Option<tokio_util::sync::CancellationToken> {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).get(session_id).map(|r| r.token.clone())
    }

    fn termination_reason(&self, session_id: &str) -> Option<String> {
        self.ended_why(session_id)
    }

    fn audit(&self, event: AuditEvent) {
        info!(
            kind = event.kind,
            user = event.user.as_deref(),
            target = event.target.as_deref(),
            session_id = event.session_id.as_deref(),
            detail = %event.detail,
            "audit"
        );
        if let Err(e) = self.index().audit(
            event.kind,
            event.user.as_deref(),
            event.target.as_deref(),
            event.session_id.as_deref(),
            &event.detail,
        ) {
            error!(error = %e, kind = event.kind, "audit event could not be written");
        }
    }
}
