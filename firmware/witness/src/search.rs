//! Full-text search inside SSH output: a sealed recording's text is extracted (off the relay's
//! path, on the sealing thread) and stored in the index's FTS5 table; a restart indexes what a
//! crash or an older version left out.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use tracing::{info, warn};
use witness_core::text::TextExtractor;

/// Makes a finished recording searchable; failures are logged (search is a convenience, the
/// recording itself is untouched).
pub fn index_text(dir: &DataDir, recording_id: &str) {
    match try_index(dir, recording_id) {
        Ok(chunks) => info!(recording_id, chunks, "recording text indexed for search"),
        Err(e) => warn!(recording_id, error = format!("{e:#}"), "recording text not indexed for search"),
    }
}

fn try_index(dir: &DataDir, recording_id: &str) -> Result<usize> {
    let row = dir.index.recording(recording_id)?.context("no such recording")?;
    if row.protocol != "ssh" {
        return Ok(0);
    }
    let file = std::fs::read(dir.root.join(&row.path)).with_context(|| format!("reading {}", row.path))?;
    let cast = witness_recorder::plaintext(&file, &crate::keys::key_for(&dir.root))?;
    let mut text = TextExtractor::default();
    for line in cast.split(|&b| b == b'\n').skip(1) {
        if let Ok((at, code, data)) = serde_json::from_slice::<(f64, String, String)>(line)
            && code == "o"
        {
            text.output(at, &data);
        }
    }
    let chunks = text.finish();
    dir.index.store_text(recording_id, &row.session_id, &chunks)?;
    Ok(chunks.len())
}

/// Indexes every finished SSH recording on the box that is not searchable yet.
pub fn index_missing(dir: &DataDir) -> Result<usize> {
    let missing = dir.index.recordings_without_text()?;
    for r in &missing {
        index_text(dir, &r.id);
    }
    Ok(missing.len())
}
