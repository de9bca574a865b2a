//! Search inside SSH output: a sealed recording's text is extracted (off the relay's path, on the
//! sealing thread) into a blind index — keyed word hashes for FTS5, the chunk text sealed — so
//! the index never holds session text in clear; a restart indexes what a crash or an older
//! version left out. Hits are opened here, for the console.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use tracing::{info, warn};
use witness_core::text::TextExtractor;
use witness_index::{Hit, SearchChunk};

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
    // Read as a stream (raw frames or an older cast): memory does not grow with the recording.
    let path = dir.root.join(&row.path);
    let mut reader = witness_recorder::open_plain(&path, &crate::keys::key_for(&dir.root))?;
    let mut decoder = witness_core::rawrec::Decoder::default();
    let mut carry = witness_core::cast::Utf8Carry::default();
    let mut text = TextExtractor::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use std::io::Read;
        let n = reader.read(&mut buf).with_context(|| format!("reading {}", row.path))?;
        decoder.push(&buf[..n]);
        while let Some(ev) = decoder.next_event()? {
            if ev.stream.to_user() {
                let at = ev.time;
                text.output(at, &carry.push(&ev.data));
            }
        }
        if n == 0 {
            break;
        }
    }
    let key = crate::keys::search_key(&dir.root)?;
    let chunks: Vec<SearchChunk> = text
        .finish()
        .into_iter()
        .map(|c| SearchChunk {
            at: c.at,
            tokens: witness_core::text::blind_tokens(&key, &c.text),
            line_times: c.line_times,
            sealed: witness_core::text::seal_text(&key, crate::keys::nonce(), &c.text),
        })
        .collect();
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

/// The blind tokens of what someone searched for (`None`: no words in it).
pub fn query_tokens(dir: &DataDir, query: &str) -> Result<Vec<String>> {
    let key = crate::keys::search_key(&dir.root)?;
    Ok(witness_core::text::words(query).iter().map(|w| witness_core::text::blind(&key, w)).collect())
}

/// Opens a hit: the moment the first matching line was printed, and that line.
pub fn open_hit(dir: &DataDir, query: &str, hit: &Hit) -> Option<(f64, String)> {
    let key = crate::keys::search_key(&dir.root).ok()?;
    let text = witness_core::text::open_text(&key, &hit.sealed)?;
    let words = witness_core::text::words(query);
    let at = witness_core::text::first_match(&text, &hit.line_times, &words).unwrap_or(hit.at);
    let line = text
        .lines()
        .find(|l| {
            let l = l.to_lowercase();
            words.iter().any(|w| l.contains(w.as_str()))
        })
        .unwrap_or_else(|| text.lines().next().unwrap_or(""));
    let snippet: String = line.chars().take(160).collect();
    Some((at, snippet))
}
