//! The one way to the user. A [`UserSink`] owns the write half of a client's session channel, so
//! it is the only code that can put bytes on the user's screen: target output goes through
//! [`UserSink::forward`], which hands it to the channel's recording (and a copy to any file
//! transfer observer) before it forwards it, and refuses to forward what nothing records.

use crate::server::Conn;
use bytes::Bytes;
use russh::ChannelId;
use russh::server::Msg;
use std::ops::Range;
use std::sync::Mutex;
use witness_core::echo::{EchoGate, Verdict};
use witness_core::rawrec::Stream;
use witness_core::scp::{Mode, ScpObserver};
use witness_core::sftp::{FileOp, SftpObserver};
use witness_recorder::{CastRecorder, RecordError};

/// What sees the bytes of a channel besides the user.
#[derive(Default)]
struct Taps {
    recording: Option<(String, CastRecorder)>,
    sftp: Option<SftpObserver>,
    scp: Option<ScpTap>,
    /// `transfers hashes`: file content the observers hashed is left out of the recording.
    hashes_only: bool,
    /// Typed input waits here until the target's output shows it was echoed.
    echo: EchoGate,
    /// The clock the echo gate runs on.
    started: Option<std::time::Instant>,
}

/// Legacy `scp -t/-f` over exec: the command, bytes up and down, and the files that crossed.
struct ScpTap {
    command: String,
    up: u64,
    down: u64,
    observer: Option<ScpObserver>,
}

/// A file operation an observer saw, by the protocol that carried it.
#[derive(Debug)]
pub(crate) enum Seen {
    Sftp(FileOp),
    Scp { command: String, op: FileOp },
}

impl Seen {
    fn marker(&self) -> String {
        match self {
            Seen::Sftp(op) => format!("sftp {}", op.to_json()),
            Seen::Scp { op, .. } => format!("scp {}", op.to_json()),
        }
    }
}

fn scp_op(mode: Mode, t: witness_core::scp::Transfer) -> FileOp {
    match mode {
        Mode::Sink => FileOp::Upload { path: t.path, bytes: t.bytes, sha256: t.sha256 },
        Mode::Source => FileOp::Download { path: t.path, bytes: t.bytes, sha256: t.sha256 },
    }
}

/// Records what the echo gate let through: echoed input as typed, the rest as a marker.
fn record_typed(rec: &CastRecorder, verdicts: Vec<Verdict>) -> Result<(), RecordError> {
    for v in verdicts {
        match v {
            Verdict::Echoed(bytes) => rec.write(Stream::Input, &bytes)?,
            Verdict::NotEchoed(n) => rec.marker(&Verdict::marker(n))?,
        }
    }
    Ok(())
}

/// Records `data` as `stream`, leaving out the `masked` ranges (in order) when asked to.
fn record(rec: &CastRecorder, stream: Stream, data: &[u8], masked: &[Range<usize>]) -> Result<(), RecordError> {
    let mut at = 0;
    for m in masked {
        if m.start > at {
            rec.write(stream, &data[at..m.start])?;
        }
        at = m.end;
    }
    if at < data.len() || data.is_empty() {
        rec.write(stream, &data[at..])?;
    }
    Ok(())
}

/// The recording could not take the bytes: the session has to end.
#[derive(Debug)]
pub(crate) struct Unrecorded(pub String);

pub(crate) struct UserSink {
    id: ChannelId,
    to_client: russh::ChannelWriteHalf<Msg>,
    taps: Mutex<Taps>,
}

impl UserSink {
    pub(crate) fn new(id: ChannelId, to_client: russh::ChannelWriteHalf<Msg>) -> Self {
        Self { id, to_client, taps: Mutex::default() }
    }

    pub(crate) fn id(&self) -> ChannelId {
        self.id
    }

    fn taps(&self) -> std::sync::MutexGuard<'_, Taps> {
        self.taps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn has_recording(&self) -> bool {
        self.taps().recording.is_some()
    }

    pub(crate) fn set_recording(&self, id: String, rec: CastRecorder) {
        self.taps().recording.get_or_insert((id, rec));
    }

    /// Observes an SFTP channel; `hashes_only`: leave hashed file content out of the recording.
    pub(crate) fn observe_sftp(&self, hashes_only: bool) {
        let mut taps = self.taps();
        taps.sftp.get_or_insert_with(SftpObserver::default);
        taps.hashes_only = hashes_only;
    }

    /// Observes a legacy scp exec, as [`UserSink::observe_sftp`].
    pub(crate) fn observe_scp(&self, command: String, hashes_only: bool) {
        let mut taps = self.taps();
        let observer = witness_core::scp::mode_of(&command).map(ScpObserver::new);
        // Shell syntax around scp can dress any output as a file: then every byte is kept.
        taps.hashes_only = hashes_only && witness_core::scp::is_plain(&command);
        taps.scp.get_or_insert(ScpTap { command, up: 0, down: 0, observer });
    }

    /// A terminal resize, recorded (the caller clamped it).
    pub(crate) fn resize(&self, cols: u32, rows: u32) -> Result<(), Unrecorded> {
        match &self.taps().recording {
            Some((_, rec)) => rec.resize(cols, rows).map_err(unrecorded),
            None => Ok(()),
        }
    }

    /// Bytes the user typed or uploaded: to the observers and, when the box records input, to
    /// the recording. Returns the file operations they completed.
    pub(crate) fn client_bytes(&self, data: &Bytes, record_input: bool) -> Result<Vec<Seen>, Unrecorded> {
        let mut taps = self.taps();
        let (seen, masked) = taps.observe(data, true);
        // File transfers are recorded both ways (an upload's bytes come from the user); typed
        // input only when the box records input.
        let transfer = taps.sftp.is_some() || taps.scp.is_some();
        // Typed input is kept only where the target echoed it (never a password typed at a
        // silent prompt): it waits in the echo gate for the target's answer.
        let typed = if record_input && !transfer {
            let now = taps.now();
            taps.echo.typed(data, now)
        } else {
            Vec::new()
        };
        if let Some((_, rec)) = &taps.recording {
            if transfer {
                record(rec, Stream::Input, data, &masked).map_err(unrecorded)?;
            }
            record_typed(rec, typed).map_err(unrecorded)?;
            for s in &seen {
                rec.marker(&s.marker()).map_err(unrecorded)?;
            }
        }
        Ok(seen)
    }

    /// Target output (`ext`: stderr and the like) to the user, recorded first. Bytes nothing
    /// records (a target talking before the channel started) are not forwarded.
    pub(crate) async fn forward(&self, conn: &Conn, ext: Option<u32>, data: Bytes) -> Result<(), SinkError> {
        let seen = {
            let mut taps = self.taps();
            if taps.recording.is_none() {
                tracing::warn!(bytes = data.len(), "target output on a channel that runs nothing; not forwarded");
                return Ok(());
            }
            // stderr is never a transfer's content.
            let (seen, masked) = if ext.is_none() { taps.observe(&data, false) } else { Default::default() };
            let now = taps.now();
            let typed = taps.echo.output(&data, now);
            if let Some((_, rec)) = &taps.recording {
                record_typed(rec, typed).map_err(|e| SinkError::Unrecorded(unrecorded(e)))?;
                let stream = if ext.is_none() { Stream::Output } else { Stream::Stderr };
                record(rec, stream, &data, &masked).map_err(|e| SinkError::Unrecorded(unrecorded(e)))?;
                for s in &seen {
                    rec.marker(&s.marker()).map_err(|e| SinkError::Unrecorded(unrecorded(e)))?;
                }
            }
            seen
        };
        for s in &seen {
            audit_seen(conn, s);
        }
        let sent = match ext {
            None => self.to_client.data_bytes(data).await,
            Some(ext) => self.to_client.extended_data_bytes(ext, data).await,
        };
        sent.map_err(|_| SinkError::ClientGone)
    }

    /// A line from the box itself (why a session ends, why a channel is refused), on stderr.
    /// It is recorded too when the channel has a recording, so the player shows what the user
    /// read; a recording that fails here changes nothing, the session is ending anyway.
    pub(crate) async fn notice(&self, message: &str) {
        let line = Bytes::from(format!("\r\nwitness: {message}\r\n"));
        if let Some((_, rec)) = &self.taps().recording {
            let _ = rec.stderr(&line);
        }
        let _ = self.to_client.extended_data_bytes(1, line).await;
    }

    /// The command's exit status, recorded as a marker (it is something the user learns).
    pub(crate) async fn exit_status(&self, code: u32) {
        if let Some((_, rec)) = &self.taps().recording {
            let _ = rec.marker(&format!("exit status {code}"));
        }
        let _ = self.to_client.exit_status(code).await;
    }

    /// The signal that ended the command, recorded as a marker (with the target's message, which
    /// the user reads too), then passed on.
    pub(crate) async fn exit_signal(
        &self,
        conn: &Conn,
        signal: russh::Sig,
        core_dumped: bool,
        message: String,
        lang_tag: String,
    ) {
        if let Some((_, rec)) = &self.taps().recording {
            let dumped = if core_dumped { " (core dumped)" } else { "" };
            let _ = rec.marker(&format!("exit signal {signal:?}{dumped}: {message}"));
        }
        if let Some(server) = conn.server.get() {
            let _ = server.exit_signal_request(self.id, signal, core_dumped, message, lang_tag).await;
        }
    }

    pub(crate) async fn eof(&self) -> Result<(), russh::Error> {
        self.to_client.eof().await
    }

    pub(crate) async fn close(&self) {
        let _ = self.to_client.close().await;
    }

    /// Tells the user why, then closes the channel.
    pub(crate) async fn end(&self, message: &str, status: u32) {
        self.notice(message).await;
        self.exit_status(status).await;
        let _ = self.eof().await;
        self.close().await;
    }

    /// Closes the recording and audits what the observers saw.
    pub(crate) async fn finish(&self, conn: &Conn) {
        let (recording, sftp, scp) = {
            let mut taps = self.taps();
            (taps.recording.take(), taps.sftp.take(), taps.scp.take())
        };
        // Files still open or crossing when the channel ended.
        let mut seen: Vec<Seen> =
            sftp.map(|mut o| o.finish()).unwrap_or_default().into_iter().map(Seen::Sftp).collect();
        let mut scp = scp;
        if let Some(tap) = scp.as_mut()
            && let Some(o) = tap.observer.as_mut()
            && let Some(cut) = o.finish()
        {
            seen.push(Seen::Scp { command: tap.command.clone(), op: scp_op(o.mode(), cut) });
        }
        let typed = self.taps().echo.finish();
        if let Some((rec_id, rec)) = recording {
            let _ = record_typed(&rec, typed);
            for s in &seen {
                let _ = rec.marker(&s.marker());
            }
            let outcome = rec.finish().await;
            conn.broker.recording_finished(&rec_id, outcome);
        }
        for s in &seen {
            audit_seen(conn, s);
        }
        if let Some(tap) = scp {
            conn.audit(
                "scp",
                serde_json::json!({ "command": tap.command, "bytes_up": tap.up, "bytes_down": tap.down }),
            );
        }
    }
}

fn unrecorded(e: RecordError) -> Unrecorded {
    Unrecorded(e.to_string())
}

#[derive(Debug)]
pub(crate) enum SinkError {
    Unrecorded(Unrecorded),
    ClientGone,
}

/// The audit event of a file operation: `sftp`, or `scp_file` with the command that carried it.
pub(crate) fn audit_seen(conn: &Conn, seen: &Seen) {
    match seen {
        Seen::Sftp(op) => conn.audit("sftp", op.to_json()),
        Seen::Scp { command, op } => {
            let mut detail = op.to_json();
            detail["command"] = command.clone().into();
            conn.audit("scp_file", detail);
        }
    }
}

impl Taps {
    /// Seconds since the channel's first byte, for the echo gate.
    fn now(&mut self) -> f64 {
        self.started.get_or_insert_with(std::time::Instant::now).elapsed().as_secs_f64()
    }

    /// Feeds the observers one direction's bytes (`from_client`); returns what they completed
    /// and, under `transfers hashes`, the ranges of `data` that are hashed file content.
    fn observe(&mut self, data: &[u8], from_client: bool) -> (Vec<Seen>, Vec<Range<usize>>) {
        let mut seen = Vec::new();
        let mut masked = Vec::new();
        if let Some(o) = self.sftp.as_mut() {
            let (ops, m) = if from_client { o.client_masked(data) } else { o.server_masked(data) };
            seen.extend(ops.into_iter().map(Seen::Sftp));
            masked = m;
        }
        if let Some(tap) = self.scp.as_mut() {
            if from_client {
                tap.up += data.len() as u64;
            } else {
                tap.down += data.len() as u64;
            }
            // The sending side carries the files: the user for `scp -t`, the target for `-f`.
            if let Some(o) = tap.observer.as_mut()
                && (o.mode() == Mode::Sink) == from_client
            {
                let mode = o.mode();
                let (files, m) = o.sent(data);
                seen.extend(files.into_iter().map(|t| Seen::Scp { command: tap.command.clone(), op: scp_op(mode, t) }));
                masked = m;
            }
        }
        if !self.hashes_only {
            masked.clear();
        }
        (seen, masked)
    }
}
