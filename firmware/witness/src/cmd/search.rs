//! `witness search`: what sessions hold some words, from the command line.

use anyhow::Result;
use std::path::Path;

/// `witness search WORDS [--json]`: sessions of every protocol whose text holds all the words.
pub fn search(root: &Path, query: &str, json: bool) -> Result<()> {
    let hits = crate::search::find(root, query)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no session holds all of these words");
    }
    for h in hits {
        println!(
            "{}  {:<4} {}@{}  {}  recording {} at {:.1}s ({})  {}",
            h.session_id, h.protocol, h.user, h.target, h.started_at, h.recording_id, h.at, h.source, h.snippet
        );
    }
    Ok(())
}
