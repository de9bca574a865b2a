//! Search inside SSH output: a sealed recording's text is extracted (off the relay's path, on the
//! sealing thread) into a blind index — keyed word hashes for FTS5, the chunk text sealed — so
//! the index never holds session text in clear; a restart indexes what a crash or an older
//! version left out. Hits are opened here, for the console and `witness search`.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use tracing::{info, warn};
use witness_core::text::Term;
use witness_core::text::TextExtractor;
use witness_index::{Hit, SearchChunk};

/// Makes a finished recording searchable; failures are logged (search is a convenience, the
/// recording itself is untouched).
pub fn index_text(dir: &DataDir, recording_id: &str) {
    match try_index(dir, recording_id, &|| false) {
        Ok(Indexed::Stored(chunks)) => info!(recording_id, chunks, "recording text indexed for search"),
        Ok(Indexed::Stopped) => {}
        Ok(Indexed::TakenOver) => {
            info!(recording_id, "recording text is being indexed by an extraction that started later; left to it")
        }
        Err(e) => warn!(recording_id, error = format!("{e:#}"), "recording text not indexed for search"),
    }
}

/// What [`try_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    /// Stored this many chunks of text and marked the recording indexed.
    Stored(usize),
    /// `stop` said to stop first (the box is stopping): not indexed, read again later.
    Stopped,
    /// Another extraction of the same recording started later and holds the claim on its text
    /// (`witness_index::TextClaim`): nothing this one stored counts; the other finishes it, or
    /// the start sweep reads it again.
    TakenOver,
}

/// Makes a finished recording searchable.
pub fn try_index(dir: &DataDir, recording_id: &str, stop: &dyn Fn() -> bool) -> Result<Indexed> {
    match index_with_claim(dir, recording_id, stop) {
        Err(e) if matches!(e.downcast_ref(), Some(witness_index::IndexError::TextTakenOver { .. })) => {
            Ok(Indexed::TakenOver)
        }
        r => r,
    }
}

fn index_with_claim(dir: &DataDir, recording_id: &str, stop: &dyn Fn() -> bool) -> Result<Indexed> {
    let row = dir.index.recording(recording_id)?.context("no such recording")?;
    // Casts: SSH output, and an RDP session's typed keys (its key track).
    if !row.path.ends_with(".cast") {
        return Ok(Indexed::Stored(0));
    }
    // Read as a stream (raw frames or an older cast): memory does not grow with the recording.
    // From the local copy while there is one; pruning does not wait for the text (the pipeline's
    // prune step needs only the remote copy verified), so one pruned first is read back from the
    // store (the read credentials), part by part.
    let path = dir.root.join(&row.path);
    let mut reader: Box<dyn std::io::Read> = if path.exists() && !dir.index.is_pruned(recording_id)? {
        Box::new(witness_recorder::open_plain(&path, &witness_keys::key_for(&dir.root))?)
    } else {
        Box::new(crate::playback::playable(dir, recording_id)?.reader()?)
    };
    let mut decoder = witness_core::rawrec::Decoder::default();
    let mut carry = witness_core::cast::Utf8Carry::default();
    let mut text = TextExtractor::default();
    let key = witness_keys::search_key(&dir.root)?;
    // Stored in batches as the text is read: neither the blind tokens of a large recording's
    // text (ten times the text) nor one transaction over all of it (the index's write lock,
    // which sessions starting and the audit log wait for) grows with the recording.
    let claim = dir.index.start_text(recording_id)?;
    let mut stored = 0;
    let mut store = |chunks: Vec<witness_core::text::Chunk>| -> Result<()> {
        for batch in chunks.chunks(TEXT_BATCH) {
            let batch: Vec<SearchChunk> = batch
                .iter()
                .map(|c| SearchChunk {
                    at: c.at,
                    tokens: witness_core::text::blind_tokens(&key, &c.text),
                    line_times: c.line_times.clone(),
                    line_steps: c.line_steps.clone(),
                    line_rects: Vec::new(),
                    sealed: witness_core::text::seal_text(&key, witness_keys::nonce(), &c.text),
                })
                .collect();
            dir.index.add_text(&claim, &row.session_id, &batch)?;
            stored += batch.len();
        }
        Ok(())
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use std::io::Read;
        if stop() {
            return Ok(Indexed::Stopped);
        }
        let n = reader.read(&mut buf).with_context(|| format!("reading {}", row.path))?;
        decoder.push(&buf[..n]);
        while let Some(ev) = decoder.next_event()? {
            if ev.stream.to_user() {
                let at = ev.time;
                text.output(at, &carry.push(&ev.data));
            }
        }
        if text.ready() >= TEXT_BATCH {
            store(text.take_ready())?;
        }
        if n == 0 {
            break;
        }
    }
    store(text.finish())?;
    dir.index.text_done(&claim)?;
    Ok(Indexed::Stored(stored))
}

/// Chunks of text (2,000 characters at most each) blinded, sealed and stored at a time.
const TEXT_BATCH: usize = 64;

/// Indexes every finished SSH recording on the box that is not searchable yet.
pub fn index_missing(dir: &DataDir, cancel: &tokio_util::sync::CancellationToken) -> Result<usize> {
    let missing = dir.index.recordings_without_text()?;
    let mut done = 0;
    for r in missing.iter().take_while(|_| !cancel.is_cancelled()) {
        index_text(dir, &r.id);
        done += 1;
    }
    Ok(done)
}

/// What someone searched for: its terms and the blind tokens its chunks must hold (empty: no
/// words in it).
pub fn query_tokens(dir: &DataDir, query: &str) -> Result<(Vec<Term>, Vec<String>)> {
    let key = witness_keys::search_key(&dir.root)?;
    let terms = witness_core::text::parse_query(query);
    let tokens = witness_core::text::query_tokens(&key, &terms);
    Ok((terms, tokens))
}

/// One place a search matched, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub recording_id: String,
    /// When the output event that printed the match came (or the screen showed it).
    pub at: f64,
    /// The line, cut around the match.
    pub snippet: String,
    /// Where the match is in the snippet (characters, end excluded).
    pub mark: [usize; 2],
    /// The matched text as printed.
    pub matched: String,
    /// Text read from a video: where the line was on the screen.
    pub rect: Option<[u32; 4]>,
}

/// Characters of a line shown around a match.
const SNIPPET: usize = 160;

/// Every match in a chunk, opened: empty when the chunk does not hold the query after all (a
/// phrase's words apart, a long prefix) or cannot be opened.
pub fn open_matches(key: &[u8; 32], terms: &[Term], hit: &Hit) -> Vec<Opened> {
    let Some(text) = witness_core::text::open_text(key, &hit.sealed) else {
        warn!(recording_id = hit.recording_id, "a search chunk could not be opened");
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    witness_core::text::find_matches(&text, &hit.line_times, &hit.line_steps, terms)
        .into_iter()
        .map(|m| {
            let chars: Vec<char> = lines.get(m.line).copied().unwrap_or("").chars().collect();
            let from = m.start.saturating_sub(SNIPPET / 3).min(chars.len());
            let to = (from + SNIPPET).max(m.end).min(chars.len());
            let start = m.start.min(chars.len());
            let end = m.end.min(chars.len());
            Opened {
                recording_id: hit.recording_id.clone(),
                at: m.at,
                snippet: chars[from..to].iter().collect(),
                mark: [start - from, end - from],
                matched: chars[start..end].iter().collect(),
                rect: hit.line_rects.get(m.line).copied().flatten(),
            }
        })
        .collect()
}

/// The first match among a session's matching chunks (in time order), opening no more than it
/// must.
pub fn first_match(dir: &DataDir, terms: &[Term], chunks: &[Hit]) -> Option<Opened> {
    let key = witness_keys::search_key(&dir.root).ok()?;
    chunks.iter().find_map(|h| open_matches(&key, terms, h).into_iter().next())
}

/// Every match in one session, in time order per recording.
pub fn session_matches(dir: &DataDir, session_id: &str, query: &str) -> Result<Vec<Opened>> {
    let (terms, tokens) = query_tokens(dir, query)?;
    let key = witness_keys::search_key(&dir.root)?;
    let chunks = dir.index.session_hits(session_id, &tokens)?;
    let mut all: Vec<Opened> = chunks.iter().flat_map(|h| open_matches(&key, &terms, h)).collect();
    all.sort_by(|a, b| a.recording_id.cmp(&b.recording_id).then(a.at.total_cmp(&b.at)));
    Ok(all)
}

/// One session `witness search` found.
#[derive(Debug, serde::Serialize)]
pub struct CliHit {
    pub session_id: String,
    pub recording_id: String,
    pub protocol: String,
    pub user: String,
    pub target: String,
    pub started_at: String,
    /// Seconds into the recording where the words appear.
    pub at: f64,
    /// Which track matched: `output` (SSH), `keys` (RDP typed keys), `screen` (RDP video, read
    /// by OCR).
    pub source: String,
    pub snippet: String,
    /// Screen text: where the line was, `[x, y, width, height]` in the video's pixels.
    pub rect: Option<[u32; 4]>,
}

/// `witness search WORDS`: the sessions of every protocol whose text holds all the words, the
/// first place in each; audited (that a search was made and what it found, not the words).
pub fn find(root: &std::path::Path, query: &str) -> Result<Vec<CliHit>> {
    let dir = DataDir::open(root)?;
    let (terms, tokens) = query_tokens(&dir, query)?;
    if tokens.is_empty() {
        anyhow::bail!("no words to search for in {query:?}: give letters or digits");
    }
    let rows = dir.index.find_sessions(&Default::default(), Some(&tokens))?;
    let mut hits = Vec::new();
    for (session, chunks) in rows {
        let Some(Opened { recording_id, at, snippet, rect, .. }) = first_match(&dir, &terms, &chunks) else { continue };
        let row = dir.index.recording(&recording_id)?;
        let source = match row.as_ref().map(|r| (r.channel.as_str(), r.path.ends_with(".mp4"))) {
            Some((_, true)) => "screen",
            Some(("keys", _)) => "keys",
            _ => "output",
        };
        hits.push(CliHit {
            session_id: session.id,
            recording_id,
            protocol: session.protocol,
            user: session.user,
            target: session.target,
            started_at: session.started_at,
            at: (at * 1000.0).round() / 1000.0,
            source: source.into(),
            snippet,
            rect,
        });
    }
    // The words are session content: the audit log keeps only that a search was made and what
    // it found, as the console's does.
    let words = query.split_whitespace().count();
    dir.index.audit("cli_search", None, None, None, &serde_json::json!({ "words": words, "hits": hits.len() }))?;
    Ok(hits)
}
