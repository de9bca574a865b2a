//! Durable recording files on the box. Events are appended as whole frames and written to the
//! file before the session forwards them (a slow disk slows the session; it never leaves the
//! recording behind), then fsync'd on a cadence. A write error fails the recorder at that
//! event, so the session ends instead of running unrecorded.

mod cast_writer;
mod reader;
mod recover;
mod sealed_file;

pub use cast_writer::{CastRecorder, OnDurable, RecorderSettings, Summary, start_cast};
pub use reader::{PlainReader, open_plain};
pub use recover::{KeyFor, RecoveredCast, plaintext, quarantined, readable, recover_cast};
pub use sealed_file::SealedFile;
pub use witness_core::atrest::Encryption;

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

/// Percent of the file system holding `dir` that is in use, as `df` reports it.
pub fn used_percent(dir: &Path) -> std::io::Result<u8> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(used_percent_of(st.f_blocks, st.f_bfree, st.f_bavail))
}

/// `df`'s figure: used ÷ (used + available to writers), rounded up. Blocks reserved for root
/// (or held back by the volume, as on thin-provisioned disks) count as neither, so a disk with a
/// large reserve is not taken for a full one.
fn used_percent_of(blocks: u64, free: u64, avail: u64) -> u8 {
    let used = blocks.saturating_sub(free) as u128;
    let size = used + avail as u128;
    if size == 0 {
        return 100;
    }
    (used * 100).div_ceil(size).min(100) as u8
}

#[cfg(test)]
mod tests {
    use super::used_percent_of;

    #[test]
    fn used_percent_is_dfs_figure() {
        // ext4 with 5 % reserved for root: 80 used, 15 available to writers → 85 % (df rounds up).
        assert_eq!(used_percent_of(100, 20, 15), 85);
        // A volume holding most of its free blocks back: 66 used, 26 available → 72 %, not 90 %.
        assert_eq!(used_percent_of(252, 186, 26), 72);
        assert_eq!(used_percent_of(100, 0, 0), 100);
        assert_eq!(used_percent_of(0, 0, 0), 100);
        assert_eq!(used_percent_of(100, 100, 100), 0);
    }
}
