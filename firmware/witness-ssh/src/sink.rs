//! The one way to the user. A [`UserSink`] owns the write half of a client's session channel, so
//! it is the only code that can put bytes on the user's screen: target output goes through
//! [`UserSink::forward`], which hands it to the channel's recording (and a copy to any file
//! transfer observer) before it forwards it, and refuses to forward what nothing records.

use crate::server::Conn;
use bytes::Bytes;
use russh::ChannelId;
use russh::server::Msg;
use std::sync::Mutex;
use witness_core::sftp::{FileOp, SftpObserver};
use witness_recorder::{CastRecorder, RecordError};

/// What sees the bytes of a channel besides the user.
#[derive(Default)]
struct Taps {
    recording: Option<(String, CastRecorder)>,
    sftp: Option<SftpObserver>,
    /// Legacy `scp -t/-f` over exec: the command and bytes up and down, for the audit log.
    scp: Option<(String, u64, u64)>,
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

    pub(crate) fn observe_sftp(&self) {
        self.taps().sftp.get_or_insert_with(SftpObserver::default);
    }

    pub(crate) fn observe_scp(&self, command: String) {
        self.taps().scp.get_or_insert((command, 0, 0));
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
    pub(crate) fn client_bytes(&self, data: &Bytes, record_input: bool) -> Result<Vec<FileOp>, Unrecorded> {
        let mut taps = self.taps();
        let mut ops = Vec::new();
        if let Some(o) = taps.sftp.as_mut() {
            ops = o.client(data);
        }
        if let Some((_, up, _)) = taps.scp.as_mut() {
            *up += data.len() as u64;
        }
        // File transfers are recorded both ways (an upload's bytes come from the user); typed
        // input only when the box records input.
        let transfer = taps.sftp.is_some() || taps.scp.is_some();
        if (record_input || transfer)
            && let Some((_, rec)) = &taps.recording
        {
            rec.input(data).map_err(unrecorded)?;
        }
        Ok(ops)
    }

    /// Target output (`ext`: stderr and the like) to the user, recorded first. Bytes nothing
    /// records (a target talking before the channel started) are not forwarded.
    pub(crate) async fn forward(&self, conn: &Conn, ext: Option<u32>, data: Bytes) -> Result<(), SinkError> {
        let ops = {
            let mut taps = self.taps();
            let Taps { recording, sftp, scp } = &mut *taps;
            if recording.is_none() {
                tracing::warn!(bytes = data.len(), "target output on a channel that runs nothing; not forwarded");
                return Ok(());
            }
            if let Some((_, rec)) = recording {
                match ext {
                    None => rec.output(&data),
                    Some(_) => rec.stderr(&data),
                }
                .map_err(|e| SinkError::Unrecorded(unrecorded(e)))?;
            }
            if let Some((_, _, down)) = scp.as_mut() {
                *down += data.len() as u64;
            }
            sftp.as_mut().map(|o| o.server(&data)).unwrap_or_default()
        };
        for op in &ops {
            audit_file_op(conn, op);
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
        if let Some((rec_id, rec)) = recording {
            let outcome = rec.finish().await;
            conn.broker.recording_finished(&rec_id, outcome);
        }
        if let Some(mut observer) = sftp {
            for op in observer.finish() {
                audit_file_op(conn, &op);
            }
        }
        if let Some((command, up, down)) = scp {
            conn.audit("scp", serde_json::json!({ "command": command, "bytes_up": up, "bytes_down": down }));
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

pub(crate) fn audit_file_op(conn: &Conn, op: &FileOp) {
    conn.audit("sftp", op.to_json());
}
