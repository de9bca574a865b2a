//! `witness store …` and `witness sync …`.

use crate::cmd::admin::read_secret_stdin;
use crate::cmd::cli::{StoreCmd, StoreSetCmd, SyncCmd};
use crate::datadir::DataDir;
use crate::sync::{self, STORE_FILE, Uploader};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::sync::Arc;
use witness_core::JobStep;
use witness_keys::write_private;
use witness_store::{Destination, ObjectLock, Store, Tuning};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn store(root: &Path, cmd: StoreCmd) -> Result<()> {
    let dir = DataDir::open(root)?;
    match cmd {
        StoreCmd::Show => {
            let dest = sync::destination(root)?;
            println!("{}", dest.describe());
            if let Destination::S3 { object_lock: Some(lock), .. } = &dest {
                println!("S3 Object Lock: {} for {} days after each upload", lock.mode.as_str(), lock.days);
            }
            if let Ok(read) = sync::open_read_store(&dir)
                && root.join(sync::READ_STORE_FILE).exists()
            {
                println!("playback reads with separate credentials: {}", read.describe());
            }
            Ok(())
        }
        StoreCmd::Set(set) => save_store(&dir, set, STORE_FILE),
        StoreCmd::SetRead(set) => save_store(&dir, set, sync::READ_STORE_FILE),
    }
}

fn save_store(dir: &DataDir, set: StoreSetCmd, file: &str) -> Result<()> {
    let root = &dir.root;
    let reading = file == sync::READ_STORE_FILE;
    let dest = match set {
        StoreSetCmd::S3 {
            endpoint,
            bucket,
            region,
            prefix,
            access_key_id,
            secret_key_stdin: _,
            object_lock_mode,
            object_lock_days,
        } => {
            let object_lock = match (object_lock_mode, object_lock_days) {
                (Some(mode), Some(days)) => {
                    if days == 0 {
                        bail!("--object-lock-days must be at least 1");
                    }
                    Some(ObjectLock { mode: mode.parse()?, days })
                }
                _ => None,
            };
            let secret_key = read_secret_stdin("secret key")?;
            Destination::S3 { endpoint, bucket, region, prefix, access_key_id, secret_key, object_lock }
        }
        StoreSetCmd::Azure { sas_url_stdin: _ } => {
            let sas_url = read_secret_stdin("SAS URL")?;
            if !sas_url.starts_with("http") || !sas_url.contains('?') {
                bail!("the SAS URL must look like https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=…&sig=…");
            }
            Destination::Azure { sas_url }
        }
        StoreSetCmd::Dir { path } => {
            let path = std::path::absolute(&path).with_context(|| format!("{}", path.display()))?;
            Destination::Dir { path }
        }
    };
    // Validates the destination before saving it.
    let store = Store::open(&dest, Tuning { part_size: dir.config.part_size, bandwidth: 0 })?;
    let text = toml::to_string(&dest)?;
    let path = root.join(file);
    let tmp = root.join(format!("{file}.new"));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, text.as_bytes())?;
    // Audited before the file changes: a running box that sees the new file finds the store the
    // audit log records, not a change made outside `store set` (`audit_checkpoint::CHANGED_EVENT`).
    dir.index.audit(
        if reading { "store_read_configured" } else { crate::audit_checkpoint::CONFIGURED_EVENT },
        None,
        None,
        None,
        &serde_json::json!({ "destination": dest.describe() }),
    )?;
    std::fs::rename(&tmp, &path)?;
    // The store's endpoint goes into the firewall's egress allow-list before the check below.
    crate::egress::refresh(dir);
    if reading {
        println!("playback fetches recordings from {} with these credentials", dest.describe());
    } else {
        println!("recordings go to {}", dest.describe());
        if let Some(lock) = store.object_lock() {
            println!("every object is written with S3 Object Lock {} for {} days", lock.mode.as_str(), lock.days);
        }
    }
    // A site may be configured before its uplink works: say so, keep the setting.
    match runtime()?.block_on(store.check()) {
        Ok(access) => {
            println!("the store answers and accepts the credentials: {} ({})", access.as_str(), access.explain());
            if !reading {
                let _ = dir.index.store_key_access(access.as_str());
            }
        }
        Err(e) => eprintln!("warning: the store cannot be used yet ({e}); recordings stay queued until it can"),
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Status {
    destination: String,
    state: &'static str,
    pending: u64,
    pending_bytes: u64,
    oldest_pending_since: Option<String>,
    uploaded: u64,
    in_progress: Vec<serde_json::Value>,
    last_error: Option<String>,
    last_error_at: Option<String>,
    last_success_at: Option<String>,
    recent_errors: Vec<serde_json::Value>,
    /// Finished recordings not queued because they could not be sealed (no signed manifest yet).
    unsealed: Vec<serde_json::Value>,
    disk_used_percent: Option<u8>,
    high_watermark_percent: u8,
    refusing_sessions: bool,
    /// Every upload waiting after a failure: why, how often tried, when it is tried next.
    waiting: Vec<serde_json::Value>,
    /// What the store key was found able to do (`read-write`, `write-only`), once checked.
    key_access: Option<String>,
    /// The after-life of every recording not through it yet: each of its jobs (seal, extract,
    /// upload, verify, prune), done or waiting, with why it waits and when it is tried next.
    jobs: Vec<serde_json::Value>,
    /// Whether the audit log's signed checkpoints are being written: `failing` with the error
    /// and since when, when the newest attempt failed.
    audit_checkpoints: serde_json::Value,
}

/// A job row for `sync status`.
fn job_json(j: &witness_index::JobRow) -> serde_json::Value {
    let next = crate::pipeline::next_attempt_at(j);
    serde_json::json!({
        "recording": j.recording_id, "step": j.step.as_str(), "state": j.state.as_str(),
        "attempts": j.attempts, "reason": j.last_error, "next_attempt_at": next,
    })
}

fn status(dir: &DataDir) -> Result<Status> {
    let backlog = dir.index.backlog()?;
    let health = dir.index.store_health()?;
    let state = match (&health.last_error_at, &health.last_success_at) {
        (Some(err), Some(ok)) if ok >= err => "online",
        (Some(_), _) if health.last_error_kind.as_deref() == Some("offline") => "offline",
        (Some(_), _) => "failing",
        _ => "online",
    };
    let used = witness_recorder::used_percent(&dir.recordings_dir()).ok();
    Ok(Status {
        destination: sync::destination(&dir.root)?.describe(),
        state,
        pending: backlog.pending,
        pending_bytes: backlog.pending_bytes,
        oldest_pending_since: backlog.oldest_pending_since,
        uploaded: backlog.uploaded,
        in_progress: dir
            .index
            .uploads_in_progress()?
            .into_iter()
            .map(|(id, parts)| serde_json::json!({ "recording": id, "parts_done": parts }))
            .collect(),
        last_error: if state == "online" { None } else { health.last_error },
        last_error_at: health.last_error_at,
        last_success_at: health.last_success_at,
        recent_errors: dir
            .index
            .upload_errors(5)?
            .into_iter()
            .map(|(id, attempts, error)| serde_json::json!({ "recording": id, "attempts": attempts, "error": error }))
            .collect(),
        unsealed: dir
            .index
            .unsealed_uploads()?
            .into_iter()
            .map(|(id, error)| serde_json::json!({ "recording": id, "error": error }))
            .collect(),
        disk_used_percent: used,
        high_watermark_percent: dir.config.high_watermark_percent,
        refusing_sessions: used.is_some_and(|u| u > dir.config.high_watermark_percent),
        key_access: health.key_access,
        jobs: dir.index.unfinished_pipelines()?.iter().map(job_json).collect(),
        // The checkpoint file unreadable (a folder in its place) is the signing's failure, shown
        // as such; what waits for the store is then not known.
        audit_checkpoints: match (
            crate::audit_checkpoint::failing(dir)?,
            crate::audit_checkpoint::unsent(dir).ok().flatten(),
        ) {
            (Some((error, since)), _) => serde_json::json!({ "state": "failing", "error": error, "since": since }),
            // Checkpoints that wait for the store after a failed send (or an unwritable note).
            (None, Some((waiting, oldest, Some((error, since))))) => serde_json::json!({
                "state": "not_sent", "error": error, "since": since, "waiting": waiting, "oldest_signed_at": oldest,
            }),
            (None, Some((waiting, oldest, None))) => {
                serde_json::json!({ "state": "ok", "waiting": waiting, "oldest_signed_at": oldest })
            }
            (None, None) => serde_json::json!({ "state": "ok" }),
        },
        waiting: dir
            .index
            .waiting_uploads()?
            .into_iter()
            .map(|(id, attempts, reason, next)| {
                let next = time::OffsetDateTime::from_unix_timestamp_nanos(next as i128 * 1_000_000)
                    .map(witness_index::format_time)
                    .unwrap_or_default();
                serde_json::json!({ "recording": id, "attempts": attempts, "reason": reason, "next_attempt_at": next })
            })
            .collect(),
    })
}

pub fn sync(root: &Path, cmd: SyncCmd) -> Result<()> {
    let dir = Arc::new(DataDir::open(root)?);
    match cmd {
        SyncCmd::Status { json } => {
            let s = status(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            println!("destination: {}", s.destination);
            println!("state:       {}", s.state);
            println!(
                "backlog:     {} recordings, {} bytes{}",
                s.pending,
                s.pending_bytes,
                s.oldest_pending_since.map(|t| format!(", oldest since {t}")).unwrap_or_default()
            );
            println!("uploaded:    {}", s.uploaded);
            match s.key_access.as_deref() {
                Some("write-only") => {
                    println!("store key:   write-only ({})", witness_store::KeyAccess::WriteOnly.explain())
                }
                Some("read-write") => {
                    println!("store key:   read-write ({})", witness_store::KeyAccess::ReadWrite.explain())
                }
                _ => println!("store key:   not checked yet"),
            }
            if let Some(e) = &s.last_error {
                println!("last error:  {e} (at {})", s.last_error_at.as_deref().unwrap_or("?"));
            }
            for w in &s.waiting {
                println!(
                    "waiting:     {} (tried {} times, next at {}): {}",
                    w["recording"].as_str().unwrap_or(""),
                    w["attempts"],
                    w["next_attempt_at"].as_str().unwrap_or("?"),
                    w["reason"].as_str().unwrap_or("")
                );
            }
            // One line per recording still in the pipeline: where each of its steps stands.
            let mut at = 0;
            while at < s.jobs.len() {
                let id = s.jobs[at]["recording"].as_str().unwrap_or("");
                let mut steps = Vec::new();
                let mut why = Vec::new();
                while at < s.jobs.len() && s.jobs[at]["recording"] == id {
                    let j = &s.jobs[at];
                    steps.push(format!("{} {}", j["step"].as_str().unwrap_or(""), j["state"].as_str().unwrap_or("")));
                    if let Some(reason) = j["reason"].as_str() {
                        why.push(format!(
                            "{} (tried {} times, next at {}): {reason}",
                            j["step"].as_str().unwrap_or(""),
                            j["attempts"],
                            j["next_attempt_at"].as_str().unwrap_or("?")
                        ));
                    }
                    at += 1;
                }
                let why = if why.is_empty() { String::new() } else { format!("; {}", why.join("; ")) };
                println!("pipeline:    {id}: {}{why}", steps.join(", "));
            }
            for u in &s.unsealed {
                println!(
                    "not sealed:  {} (not uploaded until it is sealed): {}",
                    u["recording"].as_str().unwrap_or(""),
                    u["error"].as_str().unwrap_or("")
                );
            }
            if s.audit_checkpoints["state"] == "failing" {
                println!(
                    "audit:       checkpoints of the audit log are not being written (since {}): {}",
                    s.audit_checkpoints["since"].as_str().unwrap_or("?"),
                    s.audit_checkpoints["error"].as_str().unwrap_or("")
                );
            }
            if s.audit_checkpoints["state"] == "not_sent" {
                println!(
                    "audit:       {} checkpoints of the audit log are not in the store (since {}): {}",
                    s.audit_checkpoints["waiting"].as_u64().unwrap_or(0),
                    s.audit_checkpoints["since"].as_str().unwrap_or("?"),
                    s.audit_checkpoints["error"].as_str().unwrap_or("")
                );
            }
            if s.refusing_sessions {
                println!(
                    "disk:        {}% used, above the {}% high watermark: new sessions are refused",
                    s.disk_used_percent.unwrap_or(0),
                    s.high_watermark_percent
                );
            }
            Ok(())
        }
        SyncCmd::Now { wait } => {
            // Uploads go one way, the job graph's: woken (made due) and run here as well.
            let store = sync::open_store(&dir)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
            let queued = || {
                dir.index.waiting_jobs().map(|w| {
                    let mut ids: Vec<&str> = w
                        .iter()
                        .filter(|j| matches!(j.step, JobStep::Seal | JobStep::Upload | JobStep::Verify))
                        .map(|j| j.recording_id.as_str())
                        .collect();
                    ids.sort_unstable();
                    ids.dedup();
                    ids.len()
                })
            };
            crate::pipeline::enqueue_missing(&dir)?;
            match rt.block_on(store.check()) {
                Ok(access) => {
                    let _ = dir.index.store_key_access(access.as_str());
                }
                Err(e) => {
                    let _ = dir.index.store_contact(store.describe(), Some((e.kind(), &e.to_string())));
                    bail!("{} recordings stay queued: {e}", queued()?);
                }
            }
            println!("uploading {} pending recordings to {}", queued()?, store.describe());
            let up = Uploader::new(dir.clone(), Some(std::sync::Arc::new(|line| println!("{line}"))))?;
            let done = crate::pipeline::sync_now(dir.clone(), up, wait, &rt)?;
            println!("uploaded {} recordings, {} bytes sent", done.verified, done.sent);
            if let Some((id, step, e)) = done.failed.last() {
                bail!(
                    "{} uploads failed; last error: {e} ({step} of {id}; it waits and is tried again)",
                    done.failed.len()
                );
            }
            if !done.elsewhere.is_empty() {
                let mut ids: Vec<&str> = done.elsewhere.iter().map(|(id, _)| id.as_str()).collect();
                ids.dedup();
                println!(
                    "{} recordings are being uploaded by another process (use --wait to wait for them)",
                    ids.len()
                );
            }
            Ok(())
        }
    }
}

/// How a session made from its signed recordings alone ends (`index rebuild --from-store`): no
/// session manifest of its own was found, so what only that signs is not known.
pub const RECONSTRUCTED: &str =
    "unknown: reconstructed from its signed recordings; no session manifest of its own was found in the store";

/// Reads every manifest of a box from the store and re-creates what the index lacks.
/// Rebuilds the index from the store. A session manifest there is only a list of where to
/// look, and its session's own fields (client, end reason, times) are taken only when its
/// signature (`manifest.sig`, over its exact bytes) verifies: a recording is restored only when its own manifest is signed
/// by the box's key (or `key`, another box's) and names this session, user and target, and its
/// object, read back and decrypted, is what that manifest signs. A session is restored with its
/// verified recordings, and not at all when none verifies.
pub fn rebuild(root: &Path, box_id: Option<String>, key: Option<String>) -> Result<()> {
    let dir = DataDir::open(root)?;
    let box_id = box_id.unwrap_or_else(|| dir.config.box_id.clone());
    let public = match key {
        Some(k) => k.trim().to_owned(),
        None => crate::evidence::public_key_hex(&dir.root)?,
    };
    let fingerprint = witness_core::evidence::fingerprint_hex(&public)
        .context("--key is not an Ed25519 public key (64 hex digits)")?;
    let store = sync::open_store(&dir)?;
    let read = Arc::new(sync::open_read_store(&dir)?);
    let rt = runtime()?;
    let keys = rt.block_on(store.list(&format!("{box_id}/"))).context("listing the store")?;
    let manifests: Vec<&String> = keys.iter().filter(|k| k.ends_with("/manifest.json")).collect();
    println!(
        "{} manifests of box {box_id} in {}; recordings are taken only as signed by key {fingerprint}",
        manifests.len(),
        store.describe()
    );
    let (mut restored, mut present, mut refused, mut empty, mut unsigned_sessions) = (0, 0, 0, 0, 0);
    let (mut misplaced, mut reached) = (0, std::collections::HashSet::new());
    // Recordings refused as a session manifest listed them: tried again below as their own
    // signed manifests show them (a session manifest naming another user hides nothing), and
    // counted once.
    let mut refused_ids = std::collections::HashSet::new();
    for key in manifests {
        // Anyone who can write to the bucket can put an object here: one that is not a session
        // manifest is named and passed over, never a reason to restore nothing else.
        let parsed = rt
            .block_on(store.get(key))
            .map_err(|e| format!("reading it: {e}"))
            .and_then(|bytes| {
                let m = serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| e.to_string())?;
                Ok((bytes, m))
            })
            .and_then(|(bytes, m)| {
                let s = serde_json::from_value::<witness_index::SessionRow>(m["session"].clone())
                    .map_err(|e| format!("session: {e}"))?;
                Ok((bytes, m, s))
            });
        let (bytes, m, session) = match parsed {
            Ok(v) => v,
            Err(why) => {
                println!("refused {key}: not a session manifest ({why})");
                tracing::warn!(manifest = %key, reason = %why, "session manifest not read");
                empty += 1;
                continue;
            }
        };
        // A session manifest counts only under its own key (its box, day and session id): one
        // copied over another session's (a PutObject, no key needed) would hide that session.
        // (The day in the key is the session's start: taken as the place only when the manifest
        // is signed; an unsigned one's start is not its word, its session id must still match.)
        let own = witness_archive::keys::session_manifest_key(&box_id, &session.started_at, &session.id);
        let sig = rt.block_on(store.get(&sync::session_signature_key(key))).ok();
        let signed = sig
            .is_some_and(|sig| witness_core::evidence::verify_bytes(&public, &String::from_utf8_lossy(&sig), &bytes));
        let id_in_key = key.strip_suffix("/manifest.json").and_then(|k| k.rsplit('/').next());
        if (signed && own != **key) || id_in_key != Some(session.id.as_str()) || !key.starts_with(&format!("{box_id}/"))
        {
            println!(
                "refused {key}: it is the manifest of session {} (its own place is {own}), not of the session stored here",
                session.id
            );
            tracing::warn!(manifest = %key, session_id = %session.id, "a session manifest not under its own key");
            misplaced += 1;
            continue;
        }
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let mut recordings: Vec<witness_index::RestoredRecording> = Vec::new();
        for r in m["recordings"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let (Some(id), Some(object_key)) = (text(&r["id"]), text(&r["key"])) else {
                println!("refused a recording of session {} in {key}: it has no id or no object key", session.id);
                refused += 1;
                continue;
            };
            if recordings.iter().any(|x| x.id == id) {
                println!("refused recording {id} of session {}: listed twice in {key}", session.id);
                refused += 1;
                continue;
            }
            let listed = Listed { id, object_key, bytes: Some(r["bytes"].as_u64().unwrap_or(0)) };
            match verified_recording(&dir, &rt, &store, &read, &public, &box_id, &session, &listed) {
                Ok(mut rec) => {
                    reached.insert(rec.id.clone());
                    rec.duration = r["duration"].as_f64();
                    rec.status_reason = text(&r["status_reason"]);
                    // Cut by a crash: a video then plays to its last whole fragment.
                    rec.recovered |= r["recovered"].as_bool().unwrap_or(false);
                    recordings.push(rec);
                }
                Err(why) => {
                    refused_ids.insert(listed.id.clone());
                    println!("refused recording {} of session {}: {why}", listed.id, session.id);
                    tracing::warn!(recording_id = %listed.id, session_id = %session.id, reason = %why, "recording not restored");
                    refused += 1;
                }
            }
        }
        if recordings.is_empty() {
            empty += 1;
            continue;
        }
        // The session's own fields are taken as the bucket says only when the box signed the
        // session manifest; otherwise its times and protocol come from its signed recordings and
        // where the client came from and how it ended are not known.
        let mut session = session;
        if !signed {
            println!(
                "session {}: its manifest is not signed by key {fingerprint}: client, end reason and times are not taken from it",
                session.id
            );
            unsigned_sessions += 1;
            session.client = None;
            session.end_reason = Some("unknown: the session manifest in the store is not signed".into());
            if let Some(start) = recordings.iter().map(|r| r.started_at.clone()).min() {
                session.started_at = start;
            }
            session.ended_at = recordings.iter().filter_map(|r| r.ended_at.clone()).max();
            // The protocol too: from the recordings' signed channels, never the bucket's word.
            match witness_core::Protocol::of_channels(recordings.iter().map(|r| r.channel.as_str())) {
                Some(p) => {
                    if session.protocol != p.as_str() {
                        println!(
                            "session {}: the unsigned manifest says protocol {:?}, its signed recordings are {p}: taken as {p}",
                            session.id, session.protocol
                        );
                    }
                    session.protocol = p.as_str().to_owned();
                }
                None => {
                    println!(
                        "refused session {}: its manifest is not signed and its signed recordings do not name one protocol",
                        session.id
                    );
                    empty += 1;
                    continue;
                }
            }
        }
        if dir.index.restore_session(&session, key, &recordings)? {
            restored += 1;
        } else {
            present += 1;
        }
    }
    // The recordings' own signed manifests under the box's prefix: a signed recording that no
    // session manifest led to (its session manifest overwritten, removed, or never stored) is
    // restored in a session made from its signed recordings, marked as reconstructed (issue 18,
    // `h-fix18g`), never passed over in silence.
    let mut not_reached = 0;
    let mut orphans: std::collections::BTreeMap<String, Vec<(Listed, witness_core::evidence::Manifest)>> =
        std::collections::BTreeMap::new();
    for key in keys.iter().filter(|k| k.ends_with(".manifest.json") && !k.ends_with("/manifest.json")) {
        let base = key.trim_end_matches(".manifest.json");
        let id = base.rsplit('/').next().unwrap_or_default();
        if reached.contains(id) || dir.index.recording(id).ok().flatten().is_some() {
            continue;
        }
        let signed = rt
            .block_on(store.get(key))
            .and_then(|json| Ok((json, rt.block_on(store.get(&format!("{base}.manifest.sig")))?)))
            .map_err(|e| e.to_string())
            .and_then(|(json, sig)| {
                witness_core::evidence::signed_manifest(&json, &String::from_utf8_lossy(&sig), &public)
            });
        match signed {
            Ok(m) if m.recording_id == id && m.box_id == box_id => {
                println!(
                    "recording {id} of session {} ({} on {}, started {}) is signed in the store but no session manifest leads to it: its session is made from its signed recordings",
                    m.session_id, m.user, m.target, m.started_at
                );
                tracing::warn!(recording_id = %id, session_id = %m.session_id, "a signed recording no session manifest leads to");
                not_reached += 1;
                let object = keys.iter().find(|k| {
                    k.strip_prefix(base)
                        .and_then(|rest| rest.strip_prefix('.'))
                        .is_some_and(|ext| !ext.is_empty() && !ext.contains('/') && !ext.starts_with("manifest."))
                });
                let Some(object_key) = object else {
                    println!("refused recording {id} of session {}: its object is not in the store", m.session_id);
                    refused += 1;
                    continue;
                };
                let listed = Listed { id: id.to_owned(), object_key: object_key.clone(), bytes: None };
                orphans.entry(m.session_id.clone()).or_default().push((listed, m));
            }
            Ok(m) => {
                println!("refused {key}: its signed manifest names recording {} of box {}", m.recording_id, m.box_id);
                refused += 1;
            }
            Err(why) => {
                println!("refused {key}: not a recording manifest signed by key {fingerprint} ({why})");
                refused += 1;
            }
        }
    }
    let mut reconstructed = 0;
    for (session_id, found) in orphans {
        let Some((_, first)) = found.first() else { continue };
        // Who, where and when from the signed recordings; what no recording signs (where the
        // client came from, how it ended) is not known, and the session says it was rebuilt so.
        let mut session = witness_index::SessionRow {
            id: session_id.clone(),
            session_id: session_id.clone(),
            user: first.user.clone(),
            target: first.target.clone(),
            protocol: String::new(),
            client: None,
            started_at: found.iter().map(|(_, m)| m.started_at.clone()).min().unwrap_or_default(),
            ended_at: found.iter().filter_map(|(_, m)| m.ended_at.clone()).max(),
            end_reason: Some(RECONSTRUCTED.to_owned()),
            status: String::new(),
            recovered: false,
            recordings: 0,
            bytes: 0,
            kinds: Vec::new(),
            commands: Vec::new(),
            transfers: 0,
            transfer_bytes: 0,
            held: false,
        };
        let mut recordings = Vec::new();
        for (listed, _) in &found {
            match verified_recording(&dir, &rt, &store, &read, &public, &box_id, &session, listed) {
                Ok(rec) => recordings.push(rec),
                Err(why) => {
                    println!("refused recording {} of session {session_id}: {why}", listed.id);
                    if !refused_ids.contains(&listed.id) {
                        refused += 1;
                    }
                }
            }
        }
        let Some(protocol) = witness_core::Protocol::of_channels(recordings.iter().map(|r| r.channel.as_str())) else {
            println!(
                "refused session {session_id}: none of its signed recordings verifies, or they name no one protocol"
            );
            empty += 1;
            continue;
        };
        session.protocol = protocol.as_str().to_owned();
        let own = witness_archive::keys::session_manifest_key(&box_id, &session.started_at, &session.id);
        if dir.index.restore_session(&session, &own, &recordings)? {
            println!(
                "session {session_id}: restored from {} signed recordings alone, marked as reconstructed",
                recordings.len()
            );
            restored += 1;
            reconstructed += 1;
        } else {
            present += 1;
        }
    }
    dir.index.audit(
        "index_rebuilt",
        None,
        None,
        None,
        &serde_json::json!({
            "box_id": box_id, "restored": restored, "refused_recordings": refused,
            "sessions_without_a_verified_recording": empty, "key_fingerprint": fingerprint,
            "sessions_with_an_unsigned_manifest": unsigned_sessions,
            "session_manifests_not_under_their_own_key": misplaced,
            "signed_recordings_not_reached": not_reached,
            "sessions_reconstructed": reconstructed,
        }),
    )?;
    println!("restored {restored} sessions ({present} were already in the index)");
    if misplaced > 0 || not_reached > 0 {
        println!(
            "refused {misplaced} session manifests not under their own key; {not_reached} signed recordings no session manifest leads to; {reconstructed} sessions made from signed recordings alone (marked as reconstructed)"
        );
    }
    if refused > 0 || empty > 0 {
        println!(
            "refused {refused} recordings that do not verify; {empty} sessions had no recording that verifies and were not restored"
        );
    }
    Ok(())
}

/// A recording as an unsigned session manifest lists it: where to look, nothing more.
struct Listed {
    id: String,
    object_key: String,
    /// The object's length as the session manifest lists it (none listed: read to its end).
    bytes: Option<u64>,
}

/// The recording `listed` as its signed manifest and its object in the store show it, or why it
/// is refused.
#[allow(clippy::too_many_arguments)]
fn verified_recording(
    dir: &DataDir,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    read: &Arc<Store>,
    public: &str,
    box_id: &str,
    session: &witness_index::SessionRow,
    listed: &Listed,
) -> Result<witness_index::RestoredRecording, String> {
    let base = witness_archive::keys::key_base(&listed.object_key);
    let fetch = |k: String| rt.block_on(store.get(&k)).map_err(|e| format!("its signed manifest {k}: {e}"));
    let json = fetch(format!("{base}.manifest.json"))?;
    let sig = fetch(format!("{base}.manifest.sig"))?;
    let signed = witness_core::evidence::signed_manifest(&json, &String::from_utf8_lossy(&sig), public)?;
    let names = [
        ("recording", &signed.recording_id, &listed.id),
        ("session", &signed.session_id, &session.id),
        ("box", &signed.box_id, &box_id.to_owned()),
        ("user", &signed.user, &session.user),
        ("target", &signed.target, &session.target),
    ];
    if let Some((what, is, listed_as)) = names.iter().find(|(_, a, b)| a != b) {
        return Err(format!("its signed manifest names {what} {is}, the session manifest {listed_as}"));
    }
    // Read back, decrypted as the box plays it, and compared with what is signed.
    // (Its length as the session manifest lists it; a recording no session manifest lists is
    // read to its end.)
    let object: Box<dyn std::io::Read + Send> = match listed.bytes {
        Some(bytes) => crate::playback::store_reader(read.clone(), listed.object_key.clone(), bytes)
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        None => crate::playback::store_reader_to_end(read.clone(), listed.object_key.clone())
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    }
    .map_err(|e| format!("reading {}: {e}", listed.object_key))?;
    let mut plain = witness_recorder::PlainReader::new(object, &witness_keys::key_for(&dir.root))
        .map_err(|e| format!("reading {}: {e}", listed.object_key))?;
    let mut chainer = witness_core::evidence::Chainer::default();
    let mut sha = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = std::io::Read::read(&mut plain, &mut buf).map_err(|e| format!("reading {}: {e}", listed.object_key))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut sha, &buf[..n]);
        chainer.push(&buf[..n]);
    }
    witness_core::evidence::matches_manifest(&signed, chainer, sha)?;
    Ok(witness_index::RestoredRecording {
        id: signed.recording_id,
        channel: signed.channel,
        object_key: listed.object_key.clone(),
        bytes: plain.stored_len(),
        sha256: plain.stored_sha256(),
        started_at: signed.started_at,
        ended_at: signed.ended_at,
        duration: None,
        recovered: !signed.gaps.is_empty(),
        status: if signed.status == "failed" { "failed".into() } else { "uploaded".into() },
        status_reason: None,
    })
}
