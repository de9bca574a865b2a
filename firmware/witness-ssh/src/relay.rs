//! Channel relays. A session channel runs as two tasks, one per direction, so a full window one
//! way never stalls the other. Target output reaches the user only through the channel's
//! [`UserSink`], which records it first. The client's channel requests are judged by one
//! [`ChannelPhase`] per channel (the server handler runs its own copy to answer them; the
//! machine is deterministic, so both agree): set-up first, then exactly one shell, exec or sftp,
//! and nothing after that reaches the target.

use crate::RecordingMeta;
use crate::server::{Admission, Conn};
use crate::sink::{SinkError, UserSink, audit_seen};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use witness_core::channel::{ChannelPhase, Kind, Request, Verdict, is_scp, terminal_size};
use witness_core::policy::Denial;

/// Relays one client session channel (shell, exec, sftp) to a channel on the target.
pub(crate) async fn session_channel(conn: Arc<Conn>, from_client: russh::ChannelReadHalf, sink: Arc<UserSink>) {
    let target = conn.target().await;
    match target {
        Err(message) => refuse(from_client, &sink, &message).await,
        Ok(target) => match target.channel_open_session().await {
            Ok(target_channel) => relay_session(&conn, from_client, sink.clone(), target_channel).await,
            Err(e) => {
                let message = format!("the target refused a session channel: {e}");
                refuse(from_client, &sink, &message).await;
            }
        },
    }
    conn.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(&sink.id());
}

/// Answers a channel that cannot reach a target: the first shell/exec/subsystem request gets the
/// reason on stderr and exit status 1, so the user reads one clear line instead of a hang.
async fn refuse(mut from_client: russh::ChannelReadHalf, sink: &UserSink, message: &str) {
    while let Some(msg) = from_client.wait().await {
        match msg {
            ChannelMsg::RequestShell { .. } | ChannelMsg::Exec { .. } | ChannelMsg::RequestSubsystem { .. } => {
                sink.end(message, 1).await;
                return;
            }
            ChannelMsg::Close => return,
            _ => continue,
        }
    }
}

async fn relay_session(
    conn: &Arc<Conn>,
    mut from_client: russh::ChannelReadHalf,
    sink: Arc<UserSink>,
    target_channel: Channel<russh::client::Msg>,
) {
    let (from_target, to_target) = target_channel.split();
    let down = tokio::spawn(target_to_client(conn.clone(), sink.clone(), from_target));
    let mut phase = ChannelPhase::default();
    let mut pty: Option<(String, u32, u32)> = None;

    while let Some(msg) = from_client.wait().await {
        let request = match &msg {
            ChannelMsg::RequestPty { .. } => Some(Request::Pty),
            ChannelMsg::SetEnv { variable_name, .. } => {
                Some(Request::Env { allowed: conn.settings.env_allowed(variable_name) })
            }
            ChannelMsg::RequestShell { .. } => Some(Request::Shell),
            ChannelMsg::Exec { .. } => Some(Request::Exec),
            ChannelMsg::RequestSubsystem { name, .. } => Some(Request::Subsystem(name)),
            ChannelMsg::WindowChange { .. } => Some(Request::WindowChange),
            ChannelMsg::Signal { .. } => Some(Request::Signal),
            ChannelMsg::AgentForward { .. } => Some(Request::AgentForward),
            ChannelMsg::RequestX11 { .. } => Some(Request::X11),
            _ => None,
        };
        // The handler answered and audited the refusal; nothing of it goes to the target.
        let verdict = request.map(|r| phase.on_request(r));
        if let Some(Verdict::Refuse(reason)) = verdict {
            debug!(reason, "channel request not forwarded");
            continue;
        }
        let sent = match msg {
            ChannelMsg::RequestPty { term, col_width, row_height, pix_width, pix_height, terminal_modes, .. } => {
                let (cols, rows) = terminal_size(col_width, row_height);
                pty = Some((term.clone(), cols, rows));
                to_target.request_pty(false, &term, cols, rows, pix_width, pix_height, &terminal_modes).await
            }
            ChannelMsg::SetEnv { variable_name, variable_value, .. } => {
                to_target.set_env(false, variable_name, variable_value).await
            }
            ChannelMsg::RequestShell { .. } => {
                if let Err(e) = start_recording(conn, &sink, Kind::Shell, None, pty.as_ref()) {
                    fail_channel(conn, &e).await;
                    break;
                }
                to_target.request_shell(false).await
            }
            ChannelMsg::Exec { command, .. } => {
                let text = String::from_utf8_lossy(&command).into_owned();
                // An scp exec is recorded like any other: the target's shell runs the whole
                // string, whatever its first word. The transfer is audited on top.
                if is_scp(&text) {
                    conn.audit("scp_started", serde_json::json!({ "command": text }));
                    sink.observe_scp(text.clone(), hashes_only(conn));
                }
                if let Err(e) = start_recording(conn, &sink, Kind::Exec, Some(text), pty.as_ref()) {
                    fail_channel(conn, &e).await;
                    break;
                }
                to_target.exec(false, command).await
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                // Recorded like a shell, both ways: whatever runs behind the target's sftp
                // subsystem (a forced command can make it a shell) reaches the user only through
                // the recording. The observer audits the file operations on top.
                conn.audit("sftp_started", serde_json::json!({}));
                sink.observe_sftp(hashes_only(conn));
                if let Err(e) = start_recording(conn, &sink, Kind::Sftp, None, pty.as_ref()) {
                    fail_channel(conn, &e).await;
                    break;
                }
                to_target.request_subsystem(false, name).await
            }
            ChannelMsg::WindowChange { col_width, row_height, pix_width, pix_height } => {
                let (cols, rows) = terminal_size(col_width, row_height);
                if let Err(e) = sink.resize(cols, rows) {
                    recording_failed(conn, &e.0).await;
                    break;
                }
                to_target.window_change(cols, rows, pix_width, pix_height).await
            }
            ChannelMsg::Signal { signal } => to_target.signal(signal).await,
            ChannelMsg::Data { data } => {
                match sink.client_bytes(&data, conn.settings.record_input) {
                    Ok(seen) => seen.iter().for_each(|s| audit_seen(conn, s)),
                    Err(e) => {
                        recording_failed(conn, &e.0).await;
                        break;
                    }
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
    sink.finish(conn).await;
}

/// Target → client, through the sink: recorded, then forwarded.
async fn target_to_client(conn: Arc<Conn>, sink: Arc<UserSink>, mut from_target: russh::ChannelReadHalf) {
    loop {
        let Some(msg) = from_target.wait().await else {
            // No close from the target: its connection is gone (reboot, crash, network) or the
            // box closed it because the session is ending.
            if conn.ending() {
                return;
            }
            let target = conn.granted().map(|(p, _)| p.name.clone()).unwrap_or_default();
            let message = format!("connection to target {target} was lost");
            conn.set_end_reason(&message);
            conn.audit("target_lost", serde_json::json!({}));
            sink.end(&message, 255).await;
            return;
        };
        let result = match msg {
            ChannelMsg::Data { data } => sink.forward(&conn, None, data).await,
            ChannelMsg::ExtendedData { data, ext } => sink.forward(&conn, Some(ext), data).await,
            ChannelMsg::Eof => sink.eof().await.map_err(|_| SinkError::ClientGone),
            ChannelMsg::ExitStatus { exit_status } => {
                sink.exit_status(exit_status).await;
                Ok(())
            }
            ChannelMsg::ExitSignal { signal_name, core_dumped, error_message, lang_tag } => {
                sink.exit_signal(&conn, signal_name, core_dumped, error_message, lang_tag).await;
                Ok(())
            }
            ChannelMsg::Close => {
                sink.close().await;
                return;
            }
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(SinkError::ClientGone) => return,
            Err(SinkError::Unrecorded(e)) => {
                recording_failed(&conn, &e.0).await;
                return;
            }
        }
    }
}

fn start_recording(
    conn: &Conn,
    sink: &UserSink,
    kind: Kind,
    command: Option<String>,
    pty: Option<&(String, u32, u32)>,
) -> Result<(), String> {
    let Some((_, session_id)) = conn.granted() else { return Err("no session".into()) };
    if sink.has_recording() {
        return Ok(()); // the phase machine lets one start through; this is only belt and braces
    }
    let meta = RecordingMeta {
        kind: kind.as_str(),
        command,
        term: pty.map(|p| p.0.clone()),
        cols: pty.map(|p| p.1).unwrap_or(80),
        rows: pty.map(|p| p.2).unwrap_or(24),
    };
    let (rec_id, rec) = conn.broker.start_recording(session_id, &meta).map_err(|e| e.to_string())?;
    sink.set_recording(rec_id, rec);
    Ok(())
}

/// A channel whose recording could not start: refuse it with the reason.
async fn fail_channel(conn: &Conn, error: &str) {
    let message = format!("{error}; the session is refused because it cannot be recorded");
    conn.audit("recording_refused", serde_json::json!({ "error": error }));
    conn.end_with(&message).await;
}

/// A recording that fails mid-session ends the session: no unrecorded session, ever.
async fn recording_failed(conn: &Conn, error: &str) {
    warn!(error, "recording failed; ending the session");
    conn.audit("recording_failed", serde_json::json!({ "error": error }));
    conn.end_with(&format!("{error}; the session is ended because it can no longer be recorded")).await;
}

/// Whether the target's file transfers leave their content out of the recording.
fn hashes_only(conn: &Conn) -> bool {
    matches!(
        conn.login.get().map(|l| &l.admission),
        Some(Admission::Granted { plan, .. }) if plan.transfers == witness_core::Transfers::Hashes
    )
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
    // Only a bounded, escaped host name reaches the audit log or a message.
    let req = ForwardRequest {
        host: if req.host.len() > 255 { witness_core::gate::loggable_name(&req.host) } else { req.host },
        ..req
    };
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
                detail: serde_json::json!({ "host": witness_core::gate::loggable_name(&req.host), "port": req.port }),
            });
            reply.reject(refuse(denial.to_string())).await;
            return;
        }
        Some(Admission::Refused { message, .. }) => {
            reply.reject(refuse(message.clone())).await;
            return;
        }
    };
    let detail = serde_json::json!({
        "host": witness_core::gate::loggable_name(&req.host),
        "port": req.port,
        "originator": witness_core::gate::loggable_name(&req.originator),
    });
    let shown = witness_core::gate::loggable_name(&req.host);
    let decision = witness_core::policy::forward(
        &user,
        &plan.name,
        &plan.access,
        &plan.forward,
        &plan.host,
        plan.port,
        &req.host,
        req.port,
    );
    if let Err(denial) = decision {
        let mut detail = detail;
        detail["reason"] = denial.kind().into();
        conn.audit("forward_refused", detail);
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
                serde_json::json!({ "host": shown, "port": req.port, "error": e.to_string() }),
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
        serde_json::json!({ "host": shown, "port": req.port, "bytes_up": up, "bytes_down": down }),
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
