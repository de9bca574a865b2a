//! Channel relays. A session channel runs as two tasks, one per direction, so a full window one
//! way never stalls the other; target output is handed to the recorder before it is forwarded.
//! The client's channel requests are answered by the server handler when they arrive (russh
//! tracks only the latest request's want-reply flag), so requests go on to the target without
//! asking for a reply; a target that refuses a shell or exec closes the channel, which is relayed.

use crate::RecordingMeta;
use crate::server::{Admission, Conn};
use bytes::Bytes;
use russh::server::Msg;
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing::{debug, warn};
use witness_core::policy::Denial;
use witness_core::sftp::{FileOp, SftpObserver};
use witness_recorder::CastRecorder;

/// What one session channel is doing, shared by its two directions.
#[derive(Default)]
struct ChannelState {
    recording: OnceLock<(String, CastRecorder)>,
    sftp: Mutex<Option<SftpObserver>>,
    /// Legacy `scp -t/-f` over exec: bytes up and down, for the audit log.
    scp: Mutex<Option<(String, u64, u64)>>,
}

impl ChannelState {
    fn observe_sftp(&self, conn: &Conn, from_client: bool, data: &[u8]) -> bool {
        let mut sftp = self.sftp.lock().unwrap_or_else(|p| p.into_inner());
        let Some(observer) = sftp.as_mut() else { return false };
        let ops = if from_client { observer.client(data) } else { observer.server(data) };
        drop(sftp);
        for op in ops {
            audit_file_op(conn, &op);
        }
        true
    }

    fn count_scp(&self, up: bool, n: usize) -> bool {
        let mut scp = self.scp.lock().unwrap_or_else(|p| p.into_inner());
        let Some((_, u, d)) = scp.as_mut() else { return false };
        if up {
            *u += n as u64
        } else {
            *d += n as u64
        }
        true
    }
}

fn audit_file_op(conn: &Conn, op: &FileOp) {
    let detail = match op {
        FileOp::Upload { path, bytes } => serde_json::json!({ "op": "upload", "path": path, "bytes": bytes }),
        FileOp::Download { path, bytes } => serde_json::json!({ "op": "download", "path": path, "bytes": bytes }),
        FileOp::Remove { path, ok } => serde_json::json!({ "op": "remove", "path": path, "ok": ok }),
        FileOp::Mkdir { path, ok } => serde_json::json!({ "op": "mkdir", "path": path, "ok": ok }),
        FileOp::Rmdir { path, ok } => serde_json::json!({ "op": "rmdir", "path": path, "ok": ok }),
        FileOp::Rename { from, to, ok } => serde_json::json!({ "op": "rename", "from": from, "to": to, "ok": ok }),
    };
    conn.audit("sftp", detail);
}

/// Legacy scp runs `scp -t PATH` (upload) or `scp -f PATH` (download) on the target.
fn is_scp(command: &str) -> bool {
    let mut words = command.split_whitespace();
    words.next() == Some("scp") && words.any(|w| w == "-t" || w == "-f")
}

/// Relays one client session channel (shell, exec, sftp) to a channel on the target.
pub(crate) async fn session_channel(conn: Arc<Conn>, channel: Channel<Msg>) {
    let id = channel.id();
    let (from_client, to_client) = channel.split();
    let target = conn.target().await;
    match target {
        Err(message) => refuse(&conn, id, from_client, &to_client, &message).await,
        Ok(target) => match target.channel_open_session().await {
            Ok(target_channel) => relay_session(&conn, id, from_client, to_client, target_channel).await,
            Err(e) => {
                let message = format!("the target refused a session channel: {e}");
                refuse(&conn, id, from_client, &to_client, &message).await;
            }
        },
    }
    conn.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
}

/// Answers a channel that cannot reach a target: the first shell/exec/subsystem request gets the
/// reason on stderr and exit status 1, so the user reads one clear line instead of a hang.
async fn refuse(
    conn: &Conn,
    id: ChannelId,
    mut from_client: russh::ChannelReadHalf,
    to_client: &russh::ChannelWriteHalf<Msg>,
    message: &str,
) {
    while let Some(msg) = from_client.wait().await {
        match msg {
            ChannelMsg::RequestShell { .. } | ChannelMsg::Exec { .. } | ChannelMsg::RequestSubsystem { .. } => {}
            ChannelMsg::Close => return,
            _ => continue,
        }
        let _ = to_client.extended_data_bytes(1, format!("witness: {message}\r\n").into_bytes()).await;
        if let Some(server) = conn.server.get() {
            let _ = server.exit_status_request(id, 1).await;
        }
        let _ = to_client.eof().await;
        let _ = to_client.close().await;
        return;
    }
}

async fn relay_session(
    conn: &Arc<Conn>,
    id: ChannelId,
    mut from_client: russh::ChannelReadHalf,
    to_client: russh::ChannelWriteHalf<Msg>,
    target_channel: Channel<russh::client::Msg>,
) {
    let (from_target, to_target) = target_channel.split();
    let state = Arc::new(ChannelState::default());
    let down = tokio::spawn(target_to_client(conn.clone(), id, state.clone(), from_target, to_client));
    let mut pty: Option<(String, u32, u32)> = None;

    while let Some(msg) = from_client.wait().await {
        let sent = match msg {
            ChannelMsg::RequestPty { term, col_width, row_height, pix_width, pix_height, terminal_modes, .. } => {
                pty = Some((term.clone(), col_width, row_height));
                to_target.request_pty(false, &term, col_width, row_height, pix_width, pix_height, &terminal_modes).await
            }
            ChannelMsg::SetEnv { variable_name, variable_value, .. } => {
                if conn.settings.env_allowed(&variable_name) {
                    to_target.set_env(false, variable_name, variable_value).await
                } else {
                    debug!(name = %variable_name, "environment variable not in the allow-list");
                    Ok(())
                }
            }
            ChannelMsg::RequestShell { .. } => {
                if let Err(e) = start_recording(conn, &state, "shell", None, pty.as_ref()) {
                    fail_channel(conn, &e).await;
                    break;
                }
                to_target.request_shell(false).await
            }
            ChannelMsg::Exec { command, .. } => {
                let text = String::from_utf8_lossy(&command).into_owned();
                if is_scp(&text) {
                    conn.audit("scp_started", serde_json::json!({ "command": text }));
                    *state.scp.lock().unwrap_or_else(|p| p.into_inner()) = Some((text, 0, 0));
                } else if let Err(e) = start_recording(conn, &state, "exec", Some(text), pty.as_ref()) {
                    fail_channel(conn, &e).await;
                    break;
                }
                to_target.exec(false, command).await
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                if name == "sftp" {
                    conn.audit("sftp_started", serde_json::json!({}));
                    *state.sftp.lock().unwrap_or_else(|p| p.into_inner()) = Some(SftpObserver::default());
                    to_target.request_subsystem(false, name).await
                } else {
                    conn.audit("subsystem_refused", serde_json::json!({ "subsystem": name }));
                    Ok(())
                }
            }
            ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height } => {
                if let Some((_, rec)) = state.recording.get()
                    && let Err(e) = rec.resize(col_width, row_height)
                {
                    recording_failed(conn, id, &e.to_string()).await;
                    break;
                }
                to_target.window_change(col_width, row_height, pix_width, pix_height).await
            }
            ChannelMsg::Signal { signal } => to_target.signal(signal).await,
            ChannelMsg::AgentForward { .. } => {
                conn.audit("agent_forwarding_refused", serde_json::json!({}));
                Ok(())
            }
            ChannelMsg::RequestX11 { .. } => {
                conn.audit("x11_forwarding_refused", serde_json::json!({}));
                Ok(())
            }
            ChannelMsg::Data { data } => {
                let observed = state.observe_sftp(conn, true, &data) || state.count_scp(true, data.len());
                if !observed
                    && conn.settings.record_input
                    && let Some((_, rec)) = state.recording.get()
                    && let Err(e) = rec.input(&data)
                {
                    recording_failed(conn, id, &e.to_string()).await;
                    break;
                }
                to_target.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => to_target.extended_data_bytes(ext, data).await,
            ChannelMsg::Eof => to_target.eof().await,
            ChannelMsg::Close => break,
            _ => Ok(()),
        };
        if let Err(e) = sent {
            debug!(error = %e, "target channel gone");
            break;
        }
    }
    let _ = to_target.close().await;
    // The target answers our close with its own; if it is gone, don't wait for it forever.
    let mut down = down;
    if tokio::time::timeout(Duration::from_secs(5), &mut down).await.is_err() {
        down.abort();
    }
    finish_channel(conn, &state).await;
}

/// Target → client: record, then forward.
async fn target_to_client(
    conn: Arc<Conn>,
    id: ChannelId,
    state: Arc<ChannelState>,
    mut from_target: russh::ChannelReadHalf,
    to_client: russh::ChannelWriteHalf<Msg>,
) {
    let server = conn.server.get().cloned();
    loop {
        let Some(msg) = from_target.wait().await else {
            // No close from the target: its connection is gone (reboot, crash, network).
            let target = conn.granted().map(|(p, _)| p.name.clone()).unwrap_or_default();
            let message = format!("connection to target {target} was lost");
            conn.set_end_reason(&message);
            conn.audit("target_lost", serde_json::json!({}));
            let _ = to_client.extended_data_bytes(1, format!("\r\nwitness: {message}\r\n").into_bytes()).await;
            if let Some(server) = &server {
                let _ = server.exit_status_request(id, 255).await;
            }
            let _ = to_client.eof().await;
            let _ = to_client.close().await;
            return;
        };
        let result = match msg {
            ChannelMsg::Data { data } => {
                if !record_output(&conn, id, &state, &data).await {
                    return;
                }
                to_client.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if !record_output(&conn, id, &state, &data).await {
                    return;
                }
                to_client.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => to_client.eof().await,
            ChannelMsg::ExitStatus { exit_status } => {
                if let Some(server) = &server {
                    let _ = server.exit_status_request(id, exit_status).await;
                }
                Ok(())
            }
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                if let Some(server) = &server {
                    let _ = server.exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag).await;
                }
                Ok(())
            }
            ChannelMsg::Close => {
                let _ = to_client.close().await;
                return;
            }
            _ => Ok(()),
        };
        if result.is_err() {
            return; // the client's channel is gone
        }
    }
}

/// Hands output to the recorder (or the file-transfer observers). `false`: recording failed and
/// the session has been ended.
async fn record_output(conn: &Conn, id: ChannelId, state: &ChannelState, data: &Bytes) -> bool {
    if state.observe_sftp(conn, false, data) || state.count_scp(false, data.len()) {
        return true;
    }
    if let Some((_, rec)) = state.recording.get()
        && let Err(e) = rec.output(data)
    {
        recording_failed(conn, id, &e.to_string()).await;
        return false;
    }
    true
}

fn start_recording(
    conn: &Conn,
    state: &ChannelState,
    kind: &'static str,
    command: Option<String>,
    pty: Option<&(String, u32, u32)>,
) -> Result<(), String> {
    let Some((_, session_id)) = conn.granted() else { return Err("no session".into()) };
    if state.recording.get().is_some() {
        return Ok(()); // a second shell/exec on one channel is refused by the target itself
    }
    let meta = RecordingMeta {
        kind,
        command,
        term: pty.map(|p| p.0.clone()),
        cols: pty.map(|p| p.1).unwrap_or(80),
        rows: pty.map(|p| p.2).unwrap_or(24),
    };
    let (rec_id, rec) = conn.broker.start_recording(session_id, &meta).map_err(|e| e.to_string())?;
    let _ = state.recording.set((rec_id, rec));
    Ok(())
}

/// A channel whose recording could not start: refuse it with the reason.
async fn fail_channel(conn: &Conn, error: &str) {
    let message = format!("{error}; the session is refused because it cannot be recorded");
    conn.audit("recording_refused", serde_json::json!({ "error": error }));
    conn.end_with(&message).await;
}

/// A recording that fails mid-session ends the session: no unrecorded session, ever.
async fn recording_failed(conn: &Conn, _id: ChannelId, error: &str) {
    warn!(error, "recording failed; ending the session");
    conn.audit("recording_failed", serde_json::json!({ "error": error }));
    conn.end_with(&format!("{error}; the session is ended because it can no longer be recorded")).await;
}

async fn finish_channel(conn: &Conn, state: &ChannelState) {
    if let Some((rec_id, rec)) = state.recording.get() {
        let outcome = rec.finish().await;
        conn.broker.recording_finished(rec_id, outcome);
    }
    if let Some(mut observer) = state.sftp.lock().unwrap_or_else(|p| p.into_inner()).take() {
        for op in observer.finish() {
            audit_file_op(conn, &op);
        }
    }
    if let Some((command, up, down)) = state.scp.lock().unwrap_or_else(|p| p.into_inner()).take() {
        conn.audit("scp", serde_json::json!({ "command": command, "bytes_up": up, "bytes_down": down }));
    }
}

/// A `-L` forward (direct-tcpip), opened from the target when the grant allows forwarding.
#[derive(Debug)]
pub(crate) struct ForwardRequest {
    pub host: String,
    pub port: u32,
    pub originator: String,
}

pub(crate) async fn direct_tcpip(
    conn: Arc<Conn>,
    channel: Channel<Msg>,
    reply: russh::server::ChannelOpenHandle,
    req: ForwardRequest,
) {
    let refuse = |message: String| ChannelOpenFailure::Other { code: 1, reason: format!("witness: {message}") };
    let user = conn.user().unwrap_or_default();
    let plan = match conn.login.get().map(|l| &l.admission) {
        Some(Admission::Granted { plan, .. }) => plan,
        Some(Admission::Refused { denial: Some(Denial::NoTarget { .. }), .. }) | None => {
            // A login without a target that opens a tunnel is `ssh -J`.
            let denial = Denial::Tunnel { user: user.clone() };
            conn.broker.audit(crate::AuditEvent {
                kind: "tunnel_refused",
                user: Some(user),
                target: None,
                session_id: None,
                detail: serde_json::json!({ "host": req.host, "port": req.port }),
            });
            reply.reject(refuse(denial.to_string())).await;
            return;
        }
        Some(Admission::Refused { message, .. }) => {
            reply.reject(refuse(message.clone())).await;
            return;
        }
    };
    let detail = serde_json::json!({ "host": req.host, "port": req.port, "originator": req.originator });
    if !plan.access.allow_forwarding {
        conn.audit("forward_refused", detail);
        let denial = Denial::NoForwarding { user, target: plan.name.clone() };
        reply.reject(refuse(denial.to_string())).await;
        return;
    }
    let target = match conn.target().await {
        Ok(t) => t,
        Err(e) => {
            reply.reject(ChannelOpenFailure::Other { code: 2, reason: format!("witness: {e}") }).await;
            return;
        }
    };
    let opened = target.channel_open_direct_tcpip(req.host.clone(), req.port, "127.0.0.1", 0).await;
    let target_channel = match opened {
        Ok(c) => c,
        Err(e) => {
            conn.audit(
                "forward_failed",
                serde_json::json!({ "host": req.host, "port": req.port, "error": e.to_string() }),
            );
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 2,
                    reason: format!("witness: the target could not connect to {}:{}", req.host, req.port),
                })
                .await;
            return;
        }
    };
    reply.accept().await;
    conn.audit("forward_opened", detail);
    let (client_r, client_w) = tokio::io::split(channel.into_stream());
    let (remote_r, remote_w) = tokio::io::split(target_channel.into_stream());
    // Each direction counts what it moved even when the other side vanishes mid-copy.
    let (up, down) = tokio::join!(pump(client_r, remote_w), pump(remote_r, client_w));
    conn.audit(
        "forward_closed",
        serde_json::json!({ "host": req.host, "port": req.port, "bytes_up": up, "bytes_down": down }),
    );
}

/// Copies until end of stream or error; returns the bytes delivered.
async fn pump(mut from: impl tokio::io::AsyncRead + Unpin, mut to: impl tokio::io::AsyncWrite + Unpin) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 32 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        total += n as u64;
    }
    let _ = to.shutdown().await;
    total
}
