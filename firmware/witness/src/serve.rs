//! `witness serve`: recovery of what a crash left, then the listeners, until SIGTERM/SIGINT.

use crate::broker::BoxBroker;
use crate::cli::ServeArgs;
use crate::datadir::{self, DataDir};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use witness_core::RecordingStatus;
use witness_index::RecordingEnd;

/// How long shutdown waits for sessions to close their recordings.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub fn run(root: &Path, args: ServeArgs) -> Result<()> {
    let mut dir = Arc::new(DataDir::open(root)?);
    let (profile, reason) = crate::panel::choose_profile(&dir)?;
    info!(profile = %profile.name, reason, "board profile");
    let (mut board, board_fault) = crate::panel::open_board(profile);
    if crate::panel::held_at_boot(&mut board) {
        // The button held through the long-press time at boot: factory reset, keeping every
        // recording that is not in the store yet but none of the keys that open past ones. The
        // new password goes to the local console only; with none, nothing is reset.
        match crate::local_console::LocalConsole::open() {
            Ok(console) => {
                let opts = crate::admin::ResetOptions::default();
                let consequences = crate::admin::factory_reset_consequences(root, &opts)?;
                let password = crate::admin::factory_reset(root, &opts)?;
                warn!(
                    "factory reset requested with the front-panel button: keys, credentials and configuration wiped; the new admin password is shown on the console"
                );
                if let Err(e) =
                    console.show("factory-reset", &crate::admin::reset_console_message(&password, &consequences))
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
    if crate::console::ensure_certificate(root)? {
        info!("made a self-signed certificate for the web console");
    }
    let web_tls = witness_web::tls::server_config(&root.join(datadir::WEB_CERT), &root.join(datadir::WEB_KEY))
        .context("loading the web console's certificate")?;
    let rdp = crate::rdp_broker::listener_settings(root, args.rdp_listen.as_deref(), SHUTDOWN_GRACE)?;
    let ssh_addr = match &args.ssh_listen {
        Some(a) => a.parse().with_context(|| format!("--ssh-listen {a:?} is not an address like 0.0.0.0:2222"))?,
        None => dir.config.ssh_listen,
    };
    let key_path = root.join(datadir::HOST_KEY);
    let key_text = std::fs::read_to_string(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let host_key = witness_ssh::HostKey::from_openssh(&key_text)?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let broker = Arc::new(BoxBroker::new(dir.clone(), wake.clone())?);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener_alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let panel_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let panel = {
        let inputs = crate::panel::Inputs {
            dir: dir.clone(),
            live: broker.live.clone(),
            ready: ready.clone(),
            listener_alive: listener_alive.clone(),
            stop: panel_stop.clone(),
        };
        std::thread::Builder::new()
            .name("panel".into())
            .spawn(move || crate::panel::run(board, reason, board_fault, inputs))?
    };
    crate::evidence::signing_key(&dir.root)?;
    crate::keys::active(&dir.root)?;
    // A recording's after-life (seal, search text, upload, verify, prune) as durable jobs:
    // what a stop left waiting resumes at its step; recordings without any are enqueued.
    let queued = crate::pipeline::enqueue_missing(&dir)?;
    if queued > 0 {
        info!(queued, "finished recordings enqueued for sealing and upload");
    }
    info!(store = %crate::sync::destination(&dir.root)?.describe(), "recordings are forwarded to the store");
    let upload_cancel = CancellationToken::new();
    let archive = crate::pipeline::spawn(dir.clone(), wake.clone(), upload_cancel.clone())?;
    // On-screen text of sealed RDP videos, read at the lowest priority, one video at a time.
    let ocr = dir.config.screen_text.then(|| crate::ocr::spawn(dir.clone(), upload_cancel.clone())).transpose()?;
    // Which H.264 encoder RDP video uses: probed in child processes, off the start path.
    {
        let dir = dir.clone();
        std::thread::Builder::new().name("encoder-probe".into()).spawn(move || match crate::video::choose(&dir) {
            Ok(c) => match c.chosen {
                Some(e) => info!(encoder = %e, "video encoder chosen"),
                None => warn!("no H.264 encoder works on this box; RDP sessions cannot be recorded"),
            },
            Err(e) => warn!(error = format!("{e:#}"), "probing video encoders failed"),
        })?;
    }
    // Search covers recordings a crash or an older version left unindexed; off the start path.
    let search_backfill = {
        let dir = dir.clone();
        std::thread::Builder::new().name("search-index".into()).spawn(move || {
            match crate::search::index_missing(&dir) {
                Ok(0) => {}
                Ok(n) => info!(recordings = n, "indexed recordings for search"),
                Err(e) => warn!(error = format!("{e:#}"), "search indexing at start failed"),
            }
        })?
    };
    let console: Arc<dyn witness_web::Console> =
        Arc::new(crate::console::BoxConsole::new(dir.clone(), broker.clone())?);
    let box_name = dir.config.box_id.clone();
    let dir_at_stop = dir.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = runtime.block_on(async move {
        let web_listener = tokio::net::TcpListener::bind(web_addr)
            .await
            .with_context(|| format!("listening for the web console on {web_addr}"))?;
        info!(addr = %web_listener.local_addr()?, "web console listening (https)");
        let web_cancel = CancellationToken::new();
        let web = tokio::spawn(witness_web::serve(
            web_listener,
            witness_web::WebSettings { tls: web_tls, box_name },
            console,
            web_cancel.clone(),
        ));
        let listener = tokio::net::TcpListener::bind(ssh_addr)
            .await
            .with_context(|| format!("listening for ssh on {ssh_addr}"))?;
        info!(addr = %listener.local_addr()?, fingerprint = %host_key.fingerprint(), "ssh jump path listening");
        ready.store(true, std::sync::atomic::Ordering::Release);
        crate::systemd::notify("READY=1");
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        let rdp = crate::rdp_broker::start(rdp, broker.clone(), cancel.clone()).await?;
        // The audit log's reach, signed every minute it grew (and at stop, below).
        tokio::spawn({
            let (dir, cancel) = (dir.clone(), cancel.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    let d = dir.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || crate::audit_checkpoint::write(&d)).await {
                        warn!(error = format!("{e:#}"), "the audit log could not be checkpointed");
                    }
                }
            }
        });
        // Access taken away by the admin commands (which only change the index) ends the
        // sessions it covered within seconds.
        tokio::spawn({
            let (broker, cancel) = (broker.clone(), cancel.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                    let b = broker.clone();
                    let _ = tokio::task::spawn_blocking(move || b.end_sessions_of_changed_users()).await;
                }
            }
        });
        let settings = witness_ssh::SshSettings {
            host_key,
            env_allow: dir.config.env_allow.clone(),
            record_input: dir.config.record_input,
            shutdown_grace: SHUTDOWN_GRACE,
        };
        let served = witness_ssh::serve(listener, settings, broker, cancel).await;
        crate::rdp_broker::stop(rdp).await;
        listener_alive.store(false, std::sync::atomic::Ordering::Release);
        // The console goes after the sessions: an admin can watch the shutdown to the end.
        web_cancel.cancel();
        let _ = web.await;
        served?;
        if let Err(e) = crate::audit_checkpoint::write(&dir) {
            warn!(error = format!("{e:#}"), "the audit log could not be checkpointed at stop");
        }
        info!("stopped; every recording is closed");
        anyhow::Ok(())
    });
    // The recordings the sessions just closed are sealed before the box stops (as long as
    // the grace allows); the steps under way finish; what waits stays for the next start.
    crate::pipeline::seal_before_stop(&dir_at_stop, &wake, SHUTDOWN_GRACE);
    upload_cancel.cancel();
    let _ = archive.join();
    // Stops after its current Tesseract run; what it had not stored is read at the next start.
    if let Some(ocr) = ocr {
        let _ = ocr.join();
    }
    // The search backfill is not waited for: what it did not finish is done at the next start.
    drop(search_backfill);
    panel_stop.store(true, std::sync::atomic::Ordering::Release);
    let _ = panel.join();
    served
}

async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        warn!("cannot install signal handlers; stop with SIGKILL only");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: ending sessions, closing recordings"),
        _ = int.recv() => info!("SIGINT: ending sessions, closing recordings"),
    }
    crate::systemd::notify("STOPPING=1");
    cancel.cancel();
}

/// Finishes what an unclean stop left: recordings still `recording`/`processing` are trimmed to
/// their last whole event and marked `completed` (recovered); open sessions are ended.
pub fn recover(dir: &DataDir) -> Result<()> {
    let unfinished = dir.index.unfinished_recordings()?;
    for rec in &unfinished {
        let path = dir.root.join(&rec.path);
        let end = match witness_recorder::recover_cast(&path, &crate::keys::key_for(&dir.root)) {
            Ok(r) => {
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
