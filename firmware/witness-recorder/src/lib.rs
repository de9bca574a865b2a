//! Durable recording files on the box. A recording is written by its own task while the session
//! runs: events arrive through a bounded channel (so a slow disk slows the session instead of
//! growing memory), are appended as whole lines, written out at least every flush interval and
//! fsync'd on a cadence. A write error fails the recorder, and the next event the session hands
//! it returns that error, so the session ends instead of running unrecorded.

mod cast_writer;
mod recover;

pub use cast_writer::{CastRecorder, RecorderSettings, Summary, start_cast};
pub use recover::{RecoveredCast, recover_cast};

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
