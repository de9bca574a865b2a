//! Durable recording files on the box. Events are appended as whole frames and written to the
//! file before the session forwards them (a slow disk slows the session; it never leaves the
//! recording behind), then fsync'd on a cadence. A write error fails the recorder at that
//! event, so the session ends instead of running unrecorded.

mod cast_writer;
mod reader;
mod recover;
mod sealed_file;

pub use cast_writer::{CastRecorder, Encryption, RecorderSettings, Summary, start_cast};
pub use reader::{PlainReader, open_plain};
pub use recover::{KeyFor, RecoveredCast, plaintext, quarantined, readable, recover_cast};
pub use sealed_file::SealedFile;

use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("recording could not be started: {0}")]
    Create(String),
    #[error("recording could not be written: {0}")]
    Write(String),
    #[error("recording file is unusable: {0}")]
    Unusable(String),
}

/// Free bytes for unprivileged writers on the file system holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Percent of the file system holding `dir` that is in use.
pub fn used_percent(dir: &Path) -> std::io::Result<u8> {
    let st = rustix::fs::statvfs(dir)?;
    let total = st.f_blocks.max(1);
    let avail = st.f_bavail.min(total);
    Ok((100 - avail * 100 / total) as u8)
}
