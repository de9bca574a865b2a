//! Finishing what a crash left: a cast cut mid-line is trimmed to its last whole event, so it
//! stays playable, and its size and hash are taken from what is kept.

use crate::RecordError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredCast {
    pub bytes: u64,
    pub sha256: String,
    pub duration: f64,
    pub events: usize,
    /// Bytes cut from the end (a half-written event, or zeros after a power cut).
    pub trimmed: u64,
}

/// Trims `path` to its valid prefix (fsync'd) and describes what is left.
pub fn recover_cast(path: &Path) -> Result<RecoveredCast, RecordError> {
    let unusable = |e: &dyn std::fmt::Display| RecordError::Unusable(format!("{}: {e}", path.display()));
    let data = std::fs::read(path).map_err(|e| unusable(&e))?;
    let scan = witness_core::cast::scan(&data).map_err(|e| unusable(&e))?;
    let trimmed = (data.len() - scan.valid_len) as u64;
    if trimmed > 0 {
        let file = File::options().write(true).open(path).map_err(|e| unusable(&e))?;
        file.set_len(scan.valid_len as u64).map_err(|e| unusable(&e))?;
        file.sync_all().map_err(|e| unusable(&e))?;
    }
    let kept = &data[..scan.valid_len];
    Ok(RecoveredCast {
        bytes: kept.len() as u64,
        sha256: hex::encode(Sha256::digest(kept)),
        duration: scan.last_time,
        events: scan.events,
        trimmed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_to_last_whole_event() {
        let path = std::env::temp_dir().join(format!("witness-recover-{}.cast", std::process::id()));
        let whole = b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":0}\n[0.5, \"o\", \"hi\"]\n";
        let mut data = whole.to_vec();
        data.extend_from_slice(b"[0.9, \"o\", \"cu");
        std::fs::write(&path, &data).unwrap();
        let r = recover_cast(&path).unwrap();
        assert_eq!((r.bytes, r.events, r.duration, r.trimmed), (whole.len() as u64, 1, 0.5, 14));
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        std::fs::write(&path, b"").unwrap();
        assert!(recover_cast(&path).unwrap_err().to_string().contains("no valid asciicast v2 header"));
        std::fs::remove_file(&path).unwrap();
    }
}
