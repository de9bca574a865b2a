//! The web console's view of the box: implements `witness_web::Console` over the index, the
//! recordings on disk (decrypted only to serve them), the store and the running sessions.

use crate::daemon::broker::BoxBroker;
use crate::datadir::DataDir;
use std::sync::Arc;
use tracing::{error, info, warn};
use witness_core::RecordingStatus;
use witness_index::RecordingRow;
use witness_web::{
    Account, AuditEntry, ConsoleError, Content, HoldView, LoginRefusal, Metrics, RecordingDetail, SessionDetail,
    SessionHit, SessionQuery, StoreView, Tail, TextHit, TimelineStep, UploadView,
};

pub struct BoxConsole {
    pub dir: Arc<DataDir>,
    pub broker: Arc<BoxBroker>,
}

impl BoxConsole {
    pub fn new(dir: Arc<DataDir>, broker: Arc<BoxBroker>) -> anyhow::Result<Self> {
        Ok(Self { dir, broker })
    }
}

fn internal(e: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::Internal(e.to_string())
}

/// Console filter times come as RFC 3339; the index stores `YYYY-MM-DDTHH:MM:SS.mmmZ`.
/// A recording the store cannot give now is unavailable, anything else an internal error.
fn unavailable_or_internal(e: &anyhow::Error) -> ConsoleError {
    let msg = format!("{e:#}");
    if msg.contains("fetching recording") || msg.contains("not yet in the store") {
        ConsoleError::Unavailable(format!("the recording is not on the box and the store cannot give it now: {msg}"))
    } else {
        ConsoleError::Internal(msg)
    }
}

fn index_time(t: &Option<String>) -> Option<String> {
    let t = t.as_deref()?.trim();
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
    Some(witness_index::format_time(parsed.to_offset(time::UtcOffset::UTC)))
}

fn text_hit(o: crate::search::Opened) -> TextHit {
    TextHit {
        recording_id: o.recording_id,
        at: o.at,
        snippet: o.snippet,
        mark: Some(o.mark),
        matched: Some(o.matched),
        rect: o.rect,
    }
}

/// The panel's state as its thread last published it (`run/panel.json`).
fn panel_view(root: &std::path::Path) -> Option<witness_web::PanelView> {
    let text = std::fs::read_to_string(root.join(crate::daemon::panel::PANEL_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let problems = v["health"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, e)| e.as_str().map(|e| format!("{k}: {e}"))).collect())
        .unwrap_or_default();
    Some(witness_web::PanelView {
        state: v["state"].as_str()?.to_owned(),
        healthy: v["healthy"].as_bool().unwrap_or(false),
        problems,
        watchdog_present: v["watchdog"]["present"].as_bool().unwrap_or(false),
        watchdog_petting: v["watchdog"]["petting"].as_bool().unwrap_or(false),
        updated_at: v["updated_at"].as_str().map(str::to_owned),
    })
}

fn format_of(r: &RecordingRow) -> &'static str {
    if r.path.ends_with(".mp4") { "mp4" } else { "cast" }
}

impl witness_web::Console for BoxConsole {
    fn authenticate(
        &self,
        user: &str,
        password: &str,
        totp: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Account, LoginRefusal> {
        if user.len() > witness_core::gate::MAX_LOGIN_LEN {
            return Err(LoginRefusal::BadName);
        }
        // Password and code are one check for the gate: a missing or reused code counts as a
        // failure like a wrong password.
        let needs_code = std::cell::Cell::new(false);
        let (outcome, event) = self.broker.gate.password(peer, user, |memory| {
            let record = self.dir.index.user(user).ok().flatten();
            let stored = record.as_ref().and_then(|r| r.password_hash.clone());
            let ok = self.broker.check_password(stored.as_deref(), password, memory);
            if !ok {
                return false;
            }
            if self.dir.index.totp_secret(user).ok().flatten().is_none() {
                return true;
            }
            let Some(code) = totp else {
                needs_code.set(true);
                return false;
            };
            self.broker.take_totp(user, code)
        });
        if let Some(e) = event {
            self.broker.audit_gate(e);
        }
        match outcome {
            Ok(()) => self.account(user).ok_or(LoginRefusal::Wrong),
            Err(_) if needs_code.get() => Err(LoginRefusal::NeedsCode),
            Err(witness_core::gate::Refusal::Throttled { retry_after }) => Err(LoginRefusal::Throttled { retry_after }),
            Err(witness_core::gate::Refusal::BadName) => Err(LoginRefusal::BadName),
            Err(witness_core::gate::Refusal::Wrong) => Err(LoginRefusal::Wrong),
        }
    }

    fn account(&self, user: &str) -> Option<Account> {
        let record = self.dir.index.user(user).ok().flatten()?;
        let totp_secret = self.dir.index.totp_secret(user).ok().flatten();
        let epoch = self.dir.index.access_epoch(user).ok().flatten()?;
        Some(Account { name: record.name, role: record.role, totp_secret, epoch })
    }

    fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionHit>, ConsoleError> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let filter = SessionQuery {
            user: nonempty(&q.user),
            target: nonempty(&q.target),
            protocol: nonempty(&q.protocol),
            status: nonempty(&q.status),
            kind: nonempty(&q.kind),
            from: index_time(&q.from),
            to: index_time(&q.to),
            q: None,
            limit: Some(q.limit.unwrap_or(500).min(5000)),
        };
        let search = match &q.q {
            Some(text) => Some(crate::search::query_tokens(&self.dir, text).map_err(internal)?),
            None => None,
        };
        let rows =
            self.dir.index.find_sessions(&filter, search.as_ref().map(|(_, t)| t.as_slice())).map_err(internal)?;
        let mut out = Vec::new();
        for (session, chunks) in rows {
            let hit = match &search {
                // The index matched the words; whether the chunk holds the query (a phrase's
                // order, a long prefix) is known once opened.
                Some((terms, _)) => match crate::search::first_match(&self.dir, terms, &chunks) {
                    Some(o) => Some(text_hit(o)),
                    None => continue,
                },
                None => None,
            };
            out.push(SessionHit { live: self.broker.is_running(&session.id), hit, session });
        }
        Ok(out)
    }

    fn hits(&self, session_id: &str, query: &str) -> Result<Vec<TextHit>, ConsoleError> {
        Ok(crate::search::session_matches(&self.dir, session_id, query)
            .map_err(internal)?
            .into_iter()
            .map(text_hit)
            .collect())
    }

    fn thumbnail_times(&self, recording_id: &str) -> Result<Vec<f64>, ConsoleError> {
        self.dir.index.thumbnail_times(recording_id).map_err(internal)
    }

    fn thumbnail(&self, recording_id: &str, n: usize) -> Result<Vec<u8>, ConsoleError> {
        let (at, sealed) =
            self.dir.index.thumbnail(recording_id, n).map_err(internal)?.ok_or(ConsoleError::NotFound)?;
        let key = witness_keys::search_key(&self.dir.root).map_err(internal)?;
        let context = witness_core::text::thumbnail_context(recording_id, at);
        // Sealed to another recording or moment (a row moved in the index): not shown.
        witness_core::text::open_bytes(&key, &context, &sealed)
            .ok_or_else(|| internal(anyhow::anyhow!("a thumbnail of {recording_id} does not open")))
    }

    fn session(&self, id: &str) -> Result<SessionDetail, ConsoleError> {
        let session = self.dir.index.session(id).map_err(internal)?.ok_or(ConsoleError::NotFound)?;
        let recordings = self.dir.index.session_recordings(id).map_err(internal)?;
        let mut details = Vec::new();
        for r in recordings {
            let upload = self.dir.index.upload_of(&r.id).map_err(internal)?;
            let pruned = self.dir.index.is_pruned(&r.id).map_err(internal)?;
            let uploaded = upload.as_ref().is_some_and(|u| u.state == "verified");
            let level = |s: &str| match s {
                "recording" => 0,
                "processing" | "failed" => 1,
                "completed" => 2,
                _ => 3,
            };
            let now = level(r.status.as_str()).max(if uploaded { 3 } else { 0 });
            let step = |status: RecordingStatus, at: Option<String>| {
                let reached = now >= level(status.as_str());
                TimelineStep { status: status.as_str().to_owned(), at: if reached { at } else { None }, reached }
            };
            let mut timeline = vec![
                step(RecordingStatus::Recording, Some(r.started_at.clone())),
                step(RecordingStatus::Processing, r.ended_at.clone()),
                step(RecordingStatus::Completed, r.ended_at.clone()),
                step(RecordingStatus::Uploaded, upload.as_ref().and_then(|u| u.uploaded_at.clone())),
            ];
            if r.status == witness_core::RecordingStatus::Failed {
                timeline.insert(2, TimelineStep { status: "failed".into(), at: r.ended_at.clone(), reached: true });
            }
            details.push(RecordingDetail {
                format: format_of(&r).to_owned(),
                on_box: !pruned,
                upload: upload.map(|u| UploadView {
                    state: if u.state == "verified" { "uploaded".into() } else { u.state },
                    attempts: u.attempts,
                    last_error: u.last_error,
                    object_key: u.object_key,
                    uploaded_at: u.uploaded_at,
                }),
                timeline,
                recording: r,
            });
        }
        let audit = self.dir.index.session_audit(id).map_err(internal)?.into_iter().map(AuditEntry::from).collect();
        let hold =
            self.dir.index.hold_of(id).map_err(internal)?.map(|h| HoldView { reason: h.reason, set_at: h.set_at });
        Ok(SessionDetail { live: self.broker.is_running(id), session, recordings: details, audit, hold })
    }

    fn recording(&self, id: &str) -> Result<RecordingRow, ConsoleError> {
        self.dir.index.recording(id).map_err(internal)?.ok_or(ConsoleError::NotFound)
    }

    fn download_figures(&self, recording_id: &str, of: &str) -> Result<Option<witness_web::Download>, ConsoleError> {
        let kept = self.dir.index.download_figures(recording_id, of).map_err(internal)?;
        Ok(kept.map(|f| witness_web::Download { bytes: f.bytes, sha256: f.sha256, file_name: f.file_name }))
    }

    fn keep_download_figures(
        &self,
        recording_id: &str,
        of: &str,
        figures: &witness_web::Download,
    ) -> Result<(), ConsoleError> {
        let figures = witness_index::DownloadFigures {
            bytes: figures.bytes,
            sha256: figures.sha256.clone(),
            file_name: figures.file_name.clone(),
        };
        self.dir.index.keep_download_figures(recording_id, of, &figures).map_err(internal)?;
        Ok(())
    }

    fn recording_content(&self, id: &str, range: Option<&str>) -> Result<Content, ConsoleError> {
        let row = self.recording(id)?;
        let (content_type, ext) = match format_of(&row) {
            "mp4" => ("video/mp4", "mp4"),
            _ => ("application/x-asciicast", "cast"),
        };
        let file_name = format!("{}-{}-{}.{ext}", row.user, row.target, row.id);
        // Served in parts, never read whole: from the file on the box (one being written up to
        // its last whole record, a video cut by a crash to its last whole fragment) or from the
        // store, a part fetched by range.
        if ext == "cast" {
            // SSH: made into asciicast as the browser reads, from raw frames or an older cast.
            let (part, len, chunks) =
                crate::views::player_content(self.dir.clone(), row, range).map_err(|e| unavailable_or_internal(&e))?;
            return Ok(Content { chunks, len, part, content_type, file_name });
        }
        let playable = crate::playback::playable(&self.dir, id).map_err(|e| unavailable_or_internal(&e))?;
        let len = playable.len();
        let part = witness_web::Part::of(range, len);
        let (first, end) = part.bounds(len);
        let reader = playable.part(first, end).map_err(|e| unavailable_or_internal(&e))?;
        let rid = id.to_owned();
        let chunks = Box::new(reader.map(move |c| c.map_err(|e| internal(format!("recording {rid}: {e}")))));
        Ok(Content { chunks, len, part, content_type, file_name })
    }

    fn evidence(&self, session_id: &str) -> Result<witness_web::EvidenceBundle, ConsoleError> {
        self.dir.index.session(session_id).map_err(internal)?.ok_or(ConsoleError::NotFound)?;
        let (id, bytes, sha256) = crate::evidence::console_bundle(&self.dir, session_id)
            .map_err(|e| unavailable_or_internal(&e.context("making the evidence bundle")))?;
        Ok(witness_web::EvidenceBundle { id, bytes, sha256, file_name: format!("evidence-{session_id}") })
    }

    fn evidence_file(&self, bundle_id: &str) -> Result<(std::fs::File, u64), ConsoleError> {
        if !witness_web::valid_bundle_id(bundle_id) {
            return Err(ConsoleError::NotFound);
        }
        let path = self.dir.root.join(crate::evidence::CONSOLE_BUNDLES).join(format!("{bundle_id}.tar"));
        let file = std::fs::File::open(&path).map_err(|_| ConsoleError::NotFound)?;
        let len = file.metadata().map_err(internal)?.len();
        Ok((file, len))
    }

    fn drop_evidence(&self, bundle_id: &str) {
        if !witness_web::valid_bundle_id(bundle_id) {
            return;
        }
        let path = self.dir.root.join(crate::evidence::CONSOLE_BUNDLES).join(format!("{bundle_id}.tar"));
        match std::fs::remove_file(&path) {
            Ok(()) => info!(bundle = bundle_id, "an older evidence bundle dropped for a newer one of its maker"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(bundle = bundle_id, error = %e, "an older evidence bundle could not be removed"),
        }
    }

    fn tail(&self, recording_id: &str, from: &witness_web::TailCursor) -> Result<Tail, ConsoleError> {
        let row = self.recording(recording_id)?;
        let path = self.dir.root.join(&row.path);
        let (lines, next) = crate::views::tail(&path, &witness_keys::key_for(&self.dir.root), from)
            .map_err(|e| internal(format!("{e:#}")))?;
        // Finished only once everything written was read.
        let finished = row.status != witness_core::RecordingStatus::Recording && lines.is_empty();
        Ok(Tail { lines, next, finished })
    }

    fn terminate(&self, session_id: &str, by: &str) -> Result<bool, ConsoleError> {
        let ended = self.broker.terminate(session_id, by);
        if ended {
            info!(session_id, by, "session terminated from the console");
        }
        Ok(ended)
    }

    fn store(&self) -> Result<StoreView, ConsoleError> {
        let backlog = self.dir.index.backlog().map_err(internal)?;
        let health = self.dir.index.store_health().map_err(internal)?;
        Ok(StoreView {
            destination: health.destination,
            pending: backlog.pending,
            pending_bytes: backlog.pending_bytes,
            last_error: health.last_error,
            last_success_at: health.last_success_at,
        })
    }

    fn audit_log(&self, q: &witness_web::AuditQuery) -> Result<Vec<AuditEntry>, ConsoleError> {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let query = witness_web::AuditQuery {
            kind: nonempty(&q.kind),
            user: nonempty(&q.user),
            from: index_time(&q.from),
            to: index_time(&q.to),
            before: q.before,
            limit: q.limit,
        };
        Ok(self.dir.index.audit_page(&query).map_err(internal)?.into_iter().map(AuditEntry::from).collect())
    }

    fn audit_chain(&self) -> Result<witness_web::ChainCheck, ConsoleError> {
        Ok(match self.dir.index.verify_audit().map_err(internal)? {
            Ok(events) => witness_web::ChainCheck { intact: true, events, broken_at: None, why: None },
            Err((id, why)) => witness_web::ChainCheck { intact: false, events: 0, broken_at: Some(id), why: Some(why) },
        })
    }

    fn health(&self) -> Result<witness_web::HealthView, ConsoleError> {
        let backlog = self.dir.index.backlog().map_err(internal)?;
        let store = self.dir.index.store_health().map_err(internal)?;
        // As `witness sync status` says it.
        let state = match (&store.last_error_at, &store.last_success_at) {
            (Some(err), Some(ok)) if ok >= err => "online",
            (Some(_), _) if store.last_error_kind.as_deref() == Some("offline") => "offline",
            (Some(_), _) => "failing",
            _ => "online",
        };
        let rec = self.dir.recordings_dir();
        let used = witness_recorder::used_percent(&rec).unwrap_or(100);
        let free = witness_recorder::free_space(&rec).unwrap_or(0);
        let (active_key, sealed_to_tpm, key_error) = witness_keys::state(&self.dir.root);
        let config = &self.dir.config;
        Ok(witness_web::HealthView {
            disk: witness_web::DiskHealth {
                used_percent: used,
                free_bytes: free,
                high_watermark_percent: config.high_watermark_percent,
                min_free_bytes: config.min_free_bytes,
                refusing_sessions: used > config.high_watermark_percent || free < config.min_free_bytes,
            },
            store: witness_web::StoreHealthView {
                destination: crate::sync::destination(&self.dir.root).ok().map(|d| d.describe()),
                state: state.to_owned(),
                pending: backlog.pending,
                pending_bytes: backlog.pending_bytes,
                oldest_pending_since: backlog.oldest_pending_since,
                uploaded: backlog.uploaded,
                last_error: if state == "online" { None } else { store.last_error },
                last_error_at: store.last_error_at,
                last_success_at: store.last_success_at,
                key_access: store.key_access,
                jobs: self
                    .dir
                    .index
                    .unfinished_pipelines()
                    .map_err(internal)?
                    .iter()
                    .map(|j| witness_web::JobView {
                        recording: j.recording_id.clone(),
                        step: j.step.as_str().to_owned(),
                        state: j.state.as_str().to_owned(),
                        attempts: j.attempts,
                        next_attempt_at: crate::pipeline::next_attempt_at(j),
                        reason: j.last_error.clone(),
                    })
                    .collect(),
            },
            encoder: crate::daemon::video::last_choice(&self.dir.root)
                .and_then(|c| c.chosen)
                .unwrap_or_else(|| "none".into()),
            keys: witness_web::KeyHealth { active_key, sealed_to_tpm, error: key_error },
            sessions_active: self.broker.live.load(std::sync::atomic::Ordering::Relaxed) as u64,
            recordings_by_status: self.dir.index.recordings_by_status().map_err(internal)?,
            panel: panel_view(&self.dir.root),
        })
    }

    fn metrics_token_ok(&self, bearer: &str) -> bool {
        match witness_keys::metrics_token(&self.dir.root) {
            Ok(Some(token)) => {
                // Compare digests: same length, constant time.
                use sha2::Digest;
                let (a, b) = (sha2::Sha256::digest(token.as_bytes()), sha2::Sha256::digest(bearer.as_bytes()));
                a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
            }
            Ok(None) => false,
            Err(e) => {
                error!(error = %format!("{:#}", anyhow::Error::from(e)), "the metrics token cannot be read");
                false
            }
        }
    }

    fn metrics(&self) -> Result<Metrics, ConsoleError> {
        let backlog = self.dir.index.backlog().map_err(internal)?;
        Ok(Metrics {
            sessions_active: self.broker.live.load(std::sync::atomic::Ordering::Relaxed) as u64,
            recordings_by_status: self.dir.index.recordings_by_status().map_err(internal)?,
            upload_backlog_bytes: backlog.pending_bytes,
            upload_backlog_recordings: backlog.pending,
            encoder: crate::daemon::video::last_choice(&self.dir.root)
                .and_then(|c| c.chosen)
                .unwrap_or_else(|| "none".into()),
            disk_used_percent: witness_recorder::used_percent(&self.dir.recordings_dir()).unwrap_or(0),
        })
    }

    fn audit(&self, kind: &str, user: &str, session_id: Option<&str>, detail: serde_json::Value) {
        info!(kind, user, session_id, %detail, "audit");
        if let Err(e) = self.dir.index.audit(kind, Some(user), None, session_id, &detail) {
            error!(error = %e, kind, "audit event could not be written");
        }
    }
}
