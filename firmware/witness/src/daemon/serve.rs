//! `witness serve`: recovery of what a crash left, then the listeners, until SIGTERM/SIGINT.

use crate::daemon::broker::BoxBroker;
use crate::daemon::supervisor::{Stage, Supervisor};
use crate::datadir::{self, DataDir};
use anyhow::{Context, Result};
use clap::Args;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use witness_core::RecordingStatus;
use witness_index::RecordingEnd;

/// `witness serve`'s flags (the command line parses them; the daemon reads them).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the SSH jump path (default from witness.toml, else 0.0.0.0:2222).
    #[arg(long, value_name = "ADDR")]
    pub ssh_listen: Option<String>,
    /// Address of the web console, HTTPS (default from witness.toml, 0.0.0.0:8443).
    #[arg(long, value_name = "ADDR")]
    pub web_listen: Option<String>,
    /// Address of the RDP jump path, e.g. 0.0.0.0:3389 (RDP is served only when given).
    #[arg(long, value_name = "ADDR")]
    pub rdp_listen: Option<String>,
}

/// How long shutdown waits for sessions to close their recordings.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The whole stop, every stage: under the unit's `TimeoutStopSec=30`, so systemd never has to
/// kill the box mid-write.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

pub fn run(root: &Path, args: ServeArgs) -> Result<()> {
    // The signal handlers come first, on a thread of their own: a stop asked for while the box
    // starts (recovery, keys, a slow disk) is kept and carried out once the start is done, and
    // the stop's deadline runs from the signal whatever the runtime's workers are doing.
    let stop = CancellationToken::new();
    let supervised = Arc::new(std::sync::OnceLock::new());
    watch_signals(stop.clone(), supervised.clone()).context("installing the signal handlers")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut dir = Arc::new(DataDir::open(root)?);
    let (profile, reason) = crate::daemon::panel::choose_profile(&dir)?;
    info!(profile = %profile.name, reason, "board profile");
    let (mut board, board_fault) = crate::daemon::panel::open_board(profile);
    if crate::daemon::panel::held_at_boot(&mut board) {
        // The button held through the long-press time at boot: factory reset, keeping every
        // recording that is not in the store yet but none of the keys that open past ones. The
        // new password goes to the local console only; with none, nothing is reset.
        match crate::local_console::LocalConsole::open() {
            Ok(console) => {
                let opts = crate::provision::ResetOptions::default();
                let consequences = crate::provision::factory_reset_consequences(root, &opts)?;
                let password = crate::provision::factory_reset(root, &opts)?;
                warn!(
                    "factory reset requested with the front-panel button: keys, credentials and configuration wiped; the new admin password is shown on the console"
                );
                if let Err(e) =
                    console.show("factory-reset", &crate::provision::reset_console_message(&password, &consequences))
                {
                    error!(
                        error = format!("{e:#}"),
                        "showing the new admin password on the console failed: hold the button at boot again"
                    );
                }
                dir = Arc::new(DataDir::open(root)?);
            }
            Err(e) => error!(
                error = format!("{e:#}"),
                "factory reset requested with the front-panel button, but there is no console to show the new admin password on: nothing reset"
            ),
        }
    }
    recover(&dir)?;
    // What the box may connect to, for the firewall (witness-egress.service loads it as root).
    match crate::egress::publish(&dir) {
        Ok(true) => info!(file = crate::egress::EGRESS_FILE, "published the egress allow-list"),
        Ok(false) => {}
        Err(e) => warn!(error = format!("{e:#}"), "publishing the egress allow-list failed"),
    }
    let web_addr: std::net::SocketAddr = match &args.web_listen {
        Some(a) => a.parse().with_context(|| format!("--web-listen {a:?} is not an address like 0.0.0.0:8443"))?,
        None => dir.config.web_listen,
    };
    if crate::identity::ensure_certificate(root)? {
        info!("made a self-signed certificate for the web console");
    }
    let web_tls = witness_web::tls::server_config(&root.join(datadir::WEB_CERT), &root.join(datadir::WEB_KEY))
        .context("loading the web console's certificate")?;
    let rdp = crate::daemon::rdp::listener_settings(root, args.rdp_listen.as_deref(), SHUTDOWN_GRACE)?;
    let ssh_addr = match &args.ssh_listen {
        Some(a) => a.parse().with_context(|| format!("--ssh-listen {a:?} is not an address like 0.0.0.0:2222"))?,
        None => dir.config.ssh_listen,
    };
    let key_path = root.join(datadir::HOST_KEY);
    let key_text = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let host_key = witness_ssh::HostKey::from_openssh(&key_text)?;
    // One runtime, one supervisor: every task and thread below is started under it, in the
    // stage of the stop it belongs to.
    let sup = Arc::new(Supervisor::with_stop(runtime.handle().clone(), stop));
    let _ = supervised.set(sup.clone());
    let wake = Arc::new(tokio::sync::Notify::new());
    let broker = Arc::new(BoxBroker::new(dir.clone(), wake.clone())?);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener_alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    {
        let inputs = crate::daemon::panel::Inputs {
            dir: dir.clone(),
            live: broker.live.clone(),
            ready: ready.clone(),
            listener_alive: listener_alive.clone(),
            stop: sup.token(Stage::Console),
        };
        sup.thread(Stage::Console, "panel", move || crate::daemon::panel::run(board, reason, board_fault, inputs))?;
    }
    crate::evidence::signing_key(&dir.root)?;
    witness_keys::active(&dir.root)?;
    // A recording's after-life (seal, search text, upload, verify, prune) as durable jobs:
    // what a stop left waiting resumes at its step; recordings without any are enqueued.
    let queued = crate::pipeline::enqueue_missing(&dir)?;
    if queued > 0 {
        info!(queued, "finished recordings enqueued for sealing and upload");
    }
    info!(store = %crate::sync::destination(&dir.root)?.describe(), "recordings are forwarded to the store");
    // The archive pool (seal, text, upload, verify, prune) and its housekeeping (session
    // manifests, the watermark, retention) on a thread and runtime of their own: a slow store
    // never takes time from the relays. Told to stop only once the recordings are sealed.
    sup.adopt(Stage::Archive, "archive", crate::pipeline::spawn(dir.clone(), wake.clone(), sup.token(Stage::Archive))?);
    // The recordings the ending sessions close are sealed before the archive is told to stop
    // (within the sessions' grace); what waits longer stays for the next start.
    {
        let (dir, wake, told) = (dir.clone(), wake.clone(), sup.token(Stage::Recordings));
        sup.task(Stage::Recordings, "sealing at stop", async move {
            told.cancelled().await;
            let _ = tokio::task::spawn_blocking(move || crate::pipeline::seal_before_stop(&dir, &wake, SHUTDOWN_GRACE))
                .await;
        });
    }
    // On-screen text of sealed RDP videos, read at the lowest priority, one video at a time.
    if dir.config.screen_text {
        sup.adopt(Stage::Archive, "ocr", crate::ocr::spawn(dir.clone(), sup.token(Stage::Archive))?);
    }
    // Which H.264 encoder RDP video uses: probed in child processes, off the start path.
    {
        let dir = dir.clone();
        sup.thread(Stage::Archive, "encoder-probe", move || match crate::daemon::video::choose(&dir) {
            Ok(c) => match c.chosen {
                Some(e) => info!(encoder = %e, "video encoder chosen"),
                None => warn!("no H.264 encoder works on this box; RDP sessions cannot be recorded"),
            },
            Err(e) => warn!(error = format!("{e:#}"), "probing video encoders failed"),
        })?;
    }
    // Search covers recordings a crash or an older version left unindexed; off the start path.
    // What a stop cuts short is indexed at the next start.
    {
        let (dir, cancel) = (dir.clone(), sup.token(Stage::Archive));
        sup.thread(Stage::Archive, "search-index", move || match crate::search::index_missing(&dir, &cancel) {
            Ok(0) => {}
            Ok(n) => info!(recordings = n, "indexed recordings for search"),
            Err(e) => warn!(error = format!("{e:#}"), "search indexing at start failed"),
        })?;
    }
    let console: Arc<dyn witness_web::Console> =
        Arc::new(crate::daemon::console::BoxConsole::new(dir.clone(), broker.clone())?);
    let box_name = dir.config.box_id.clone();
    let started = runtime.block_on({
        let (sup, dir, broker) = (sup.clone(), dir.clone(), broker.clone());
        async move {
            let web_listener = tokio::net::TcpListener::bind(web_addr)
                .await
                .with_context(|| format!("listening for the web console on {web_addr}"))?;
            info!(addr = %web_listener.local_addr()?, "web console listening (https)");
            let settings = witness_web::WebSettings { tls: web_tls, box_name };
            let web = witness_web::serve(web_listener, settings, console, sup.token(Stage::Console));
            sup.task(Stage::Console, "web console", web);
            let listener = tokio::net::TcpListener::bind(ssh_addr)
                .await
                .with_context(|| format!("listening for ssh on {ssh_addr}"))?;
            info!(addr = %listener.local_addr()?, fingerprint = %host_key.fingerprint(), "ssh jump path listening");
            let sessions = sup.token(Stage::Sessions);
            if let Some(rdp) = crate::daemon::rdp::start(rdp, broker.clone(), sessions.clone()).await? {
                sup.task(Stage::Sessions, "rdp listeners", async move {
                    let _ = rdp.await;
                });
            }
            let settings = witness_ssh::SshSettings {
                host_key,
                env_allow: dir.config.env_allow.clone(),
                record_input: dir.config.record_input,
                shutdown_grace: SHUTDOWN_GRACE,
            };
            {
                let (broker, stop, alive) = (broker.clone(), sup.stop_token(), listener_alive.clone());
                sup.task(Stage::Sessions, "ssh listener", async move {
                    let served = witness_ssh::serve(listener, settings, broker, sessions).await;
                    alive.store(false, std::sync::atomic::Ordering::Release);
                    if let Err(e) = served {
                        error!(error = %e, "the ssh listener failed; stopping the box");
                        stop.cancel();
                    }
                });
            }
            ready.store(true, std::sync::atomic::Ordering::Release);
            crate::daemon::systemd::notify("READY=1");
            // The audit log's reach, signed every minute it grew (and at stop, below), and sent
            // to the store, where a rollback of this disk does not reach; compared with the
            // store's copy first (said in the log and the audit log, never stopping the box).
            let (d, cancel) = (dir.clone(), sup.token(Stage::Sessions));
            sup.task(Stage::Sessions, "audit checkpoint", async move {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = crate::audit_checkpoint::check_at_start(d.clone()) => {}
                }
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    let d2 = d.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || crate::audit_checkpoint::write_logged(&d2, "every minute"))
                            .await;
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = crate::audit_checkpoint::send_logged(&d, Duration::from_secs(30), "every minute") => {}
                    }
                }
            });
            // Access taken away by the admin commands (which only change the index) ends the
            // sessions it covered within seconds.
            let (b, cancel) = (broker.clone(), sup.token(Stage::Sessions));
            sup.task(Stage::Sessions, "access re-check", async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    let b = b.clone();
                    let _ = tokio::task::spawn_blocking(move || b.end_sessions_of_changed_users()).await;
                }
            });
            anyhow::Ok(())
        }
    });
    if let Err(e) = started {
        // Nothing was served: stop what was started, then say why.
        runtime.block_on(sup.shutdown(STOP_DEADLINE));
        runtime.shutdown_timeout(Duration::from_secs(1));
        return Err(e);
    }
    runtime.block_on(sup.stopped());
    // The deadline is kept by a thread of its own, off the runtime it guards: if the runtime's
    // workers are all held (an index that does not take writes), the stop still ends on time,
    // naming what was running.
    let _watchdog = sup.watchdog(STOP_DEADLINE + STOP_AFTER_STAGES);
    let mut stopped = runtime.block_on(sup.shutdown(STOP_DEADLINE));
    crate::audit_checkpoint::write_logged(&dir, "at stop");
    // Sent now, within the stop's time: one left for the next start could be lost to a rollback
    // of the disk in between. An offline site keeps it queued.
    runtime.block_on(crate::audit_checkpoint::send_logged(&dir, AUDIT_SEND_AT_STOP, "at stop"));
    // Whether every recording is closed is the index's word, not the tasks': a session a
    // listener gave up on holds no task of the supervisor's and may still hold its recording.
    match dir.index.unfinished_recordings() {
        Ok(open) if !open.is_empty() => {
            stopped.recordings_closed = false;
            let ids: Vec<String> =
                open.iter().map(|r| format!("recording {} of session {}", r.id, r.session_id)).collect();
            error!(still_open = %ids.join(", "), "still open at the stop; the next start recovers them");
            stopped.unfinished.extend(ids);
        }
        Ok(_) => {}
        Err(e) => {
            stopped.recordings_closed = false;
            error!(error = format!("{e:#}"), "the index could not say whether every recording is closed");
        }
    }
    // Work past the deadline is left behind: the process ends without waiting for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    if !stopped.recordings_closed {
        anyhow::bail!(
            "stopped at the deadline with recordings still closing ({}); the next start recovers them",
            stopped.unfinished.join(", ")
        );
    }
    info!("stopped; every recording is closed");
    Ok(())
}

/// What the stop may take after its stages (the audit checkpoint, the runtime's end) before the
/// watchdog ends the process: the whole stays under systemd's 30 s.
const STOP_AFTER_STAGES: Duration = Duration::from_secs(4);
/// What sending the stop's audit checkpoint may take of [`STOP_AFTER_STAGES`].
const AUDIT_SEND_AT_STOP: Duration = Duration::from_secs(2);

/// Waits for SIGTERM or SIGINT on a thread and runtime of its own, so the signal is read at
/// once even when every worker of the daemon's runtime is held (a blocking index write), then
/// starts the stop and keeps its deadline from that moment: past it, what still runs is named
/// and the process ends (the next start recovers what it left).
fn watch_signals(stop: CancellationToken, supervised: Arc<std::sync::OnceLock<Arc<Supervisor>>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (mut term, mut int) = {
        let _entered = rt.enter();
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
    };
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: ending sessions, closing recordings"),
                _ = int.recv() => info!("SIGINT: ending sessions, closing recordings"),
                // Stopped for another reason (a listener failed): the daemon keeps that deadline.
                _ = stop.cancelled() => std::future::pending::<()>().await,
            }
        });
        crate::daemon::systemd::notify("STOPPING=1");
        stop.cancel();
        std::thread::sleep(STOP_DEADLINE + STOP_AFTER_STAGES);
        let running = supervised.get().map(|s| s.still_running()).unwrap_or_default();
        crate::daemon::supervisor::end_at_deadline(STOP_DEADLINE + STOP_AFTER_STAGES, &running);
    })?;
    Ok(())
}

/// The SHA-256 (hex) of the first `len` bytes of the file at `path`.
fn prefix_sha256(path: &std::path::Path, len: u64) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut hash = sha2::Sha256::new();
    let mut file = std::fs::File::open(path)?.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        hash.update(&buf[..n]);
    }
    if read < len {
        return Err(std::io::Error::other(format!("the file ends at byte {read}, before {len}")));
    }
    Ok(hex::encode(hash.finalize()))
}

/// Finishes what an unclean stop left: recordings still `recording`/`processing` are trimmed to
/// their last whole event and marked `completed` (recovered); open sessions are ended.
pub fn recover(dir: &DataDir) -> Result<()> {
    let unfinished = dir.index.unfinished_recordings()?;
    for rec in &unfinished {
        let path = dir.root.join(&rec.path);
        let stored_before = std::fs::metadata(&path).map(|m| m.len()).ok();
        // What the writer noted as durable, and the SHA-256 of as many stored bytes now (read
        // before recovery moves anything aside): a file whose durable part changed on disk is
        // named, not only one cut below it (issue 18, `h-fix18g`).
        let durable = dir.index.durable_of(&rec.id)?;
        let durable_now = match (&durable, stored_before) {
            (Some((len, _)), Some(stored)) if stored >= *len => prefix_sha256(&path, *len).ok(),
            _ => None,
        };
        let end = match witness_recorder::recover_cast(&path, &witness_keys::key_for(&dir.root)) {
            Ok(r) => {
                // What recovery found and did, kept in the index: sealing states these gaps and
                // only these (a quarantine file it did not make is not the recording's damage).
                let mut gaps = Vec::new();
                if let Some(q) = &r.quarantine {
                    let file = q.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    gaps.push(serde_json::json!({
                        "reason": format!("{} stored bytes after the last authentic record (torn, or changed on disk) were moved aside to {file}", r.trimmed),
                        "quarantined_bytes": r.trimmed,
                        "file": file,
                    }));
                }
                // The file is shorter than what the writer had made durable: records were
                // removed after they were written (a crash loses only what was not durable).
                if let (Some((len, noted)), Some(now)) = (&durable, &durable_now)
                    && noted != now
                {
                    warn!(recording_id = %rec.id, durable = len, "the part of a recording made durable changed on disk");
                    dir.index.audit(
                        "recording_changed_after_durable",
                        Some(&rec.user),
                        Some(&rec.target),
                        Some(&rec.session_id),
                        &serde_json::json!({ "recording": rec.id, "durable_bytes": len, "durable_sha256": noted, "sha256_found": now }),
                    )?;
                    gaps.push(serde_json::json!({
                        "reason": format!("the first {len} stored bytes, which the box had made durable with SHA-256 {noted}, hash to {now}: changed on disk after they were written"),
                        "changed_bytes_within": len,
                    }));
                }
                if let (Some((durable, _)), Some(stored)) = (durable.clone(), stored_before)
                    && stored < durable
                {
                    warn!(recording_id = %rec.id, stored, durable, "a recording is shorter than what was made durable; records were removed after they were written");
                    dir.index.audit(
                        "recording_cut_after_durable",
                        Some(&rec.user),
                        Some(&rec.target),
                        Some(&rec.session_id),
                        &serde_json::json!({ "recording": rec.id, "stored_bytes": stored, "durable_bytes": durable }),
                    )?;
                    gaps.push(serde_json::json!({
                        "reason": format!("the file held {stored} stored bytes where the box had made {durable} durable: records were removed after they were written (changed on disk), {} bytes missing", durable - stored),
                        "missing_bytes": durable - stored,
                    }));
                }
                dir.index.set_recovery_gaps(&rec.id, &serde_json::Value::from(gaps).to_string())?;
                match &r.quarantine {
                    Some(q) => {
                        warn!(recording_id = %rec.id, bytes = r.bytes, trimmed = r.trimmed, quarantine = %q.display(),
                        "recovered recording; what followed its last authentic record is moved aside");
                        let file = q.file_name().unwrap_or_default().to_string_lossy();
                        dir.index.audit(
                            "recording_quarantined",
                            Some(&rec.user),
                            Some(&rec.target),
                            Some(&rec.session_id),
                            &serde_json::json!({ "recording": rec.id, "kept_bytes": r.bytes, "quarantined_bytes": r.trimmed, "file": file }),
                        )?;
                    }
                    None => info!(recording_id = %rec.id, bytes = r.bytes, "recovered recording"),
                }
                RecordingEnd {
                    status: RecordingStatus::Completed,
                    reason: Some("recovered after an unclean stop".into()),
                    bytes: r.bytes,
                    sha256: Some(r.sha256),
                    duration: Some(r.duration),
                    recovered: true,
                }
            }
            Err(e) => {
                warn!(recording_id = %rec.id, error = %e, "recording could not be recovered");
                RecordingEnd {
                    status: RecordingStatus::Failed,
                    reason: Some(e.to_string()),
                    bytes: 0,
                    sha256: None,
                    duration: None,
                    recovered: true,
                }
            }
        };
        dir.index.finish_recording(&rec.id, &end)?;
    }
    let open = dir.index.open_sessions()?;
    for id in &open {
        dir.index.end_session(id, "box stopped uncleanly; recovered at restart", true)?;
    }
    if !unfinished.is_empty() || !open.is_empty() {
        dir.index.audit(
            "recovered",
            None,
            None,
            None,
            &serde_json::json!({ "recordings": unfinished.len(), "sessions": open.len() }),
        )?;
        info!(recordings = unfinished.len(), sessions = open.len(), "recovery finished");
    }
    Ok(())
}
