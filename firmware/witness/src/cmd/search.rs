//! `witness search` (what sessions hold some words) and `witness index read-text` (read a
//! video's screen text now), from the command line.

use anyhow::{Context, Result, bail};
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

/// `witness index read-text [ID] [--json]`: reads now what the daemon reads in the background
/// (one video, or every video waiting), printing what it cost: Tesseract's CPU and this process's
/// own (decoding, choosing what to read), per recorded minute.
pub fn read_text(root: &Path, id: Option<String>, json: bool) -> Result<()> {
    let dir = crate::datadir::DataDir::open(root)?;
    if !crate::ocr::available() {
        bail!("tesseract is not installed (apt install tesseract-ocr tesseract-ocr-eng)");
    }
    let ids: Vec<String> = match id {
        Some(id) => vec![id],
        None => dir.index.videos_to_read()?.into_iter().map(|r| r.id).collect(),
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    for id in ids {
        let own = crate::ocr::own_cpu();
        let s = crate::ocr::read_video(&dir, &id, &cancel)?.context("stopped")?;
        let own = crate::ocr::own_cpu() - own;
        let per_min = |v: f64| if s.video_seconds > 0.0 { v * 60.0 / s.video_seconds } else { 0.0 };
        let total = own + s.ocr_cpu_seconds;
        if json {
            let line = serde_json::json!({
                "recording_id": id,
                "stats": s,
                "decode_cpu_seconds": own,
                "cpu_seconds": total,
                "cpu_seconds_per_recorded_minute": per_min(total),
            });
            println!("{line}");
            continue;
        }
        println!(
            "{id}: {:.1} s of video, {} frames, {} pictures read ({} parts, {:.1} Mpx), {} lines, {} tesseract runs; \
             CPU {:.2} s ({:.2} tesseract, {:.2} decoding and choosing), {:.2} per recorded minute; {:.2} s wall",
            s.video_seconds,
            s.frames,
            s.pictures,
            s.reads,
            s.pixels as f64 / 1e6,
            s.fragments,
            s.sheets,
            total,
            s.ocr_cpu_seconds,
            own,
            per_min(total),
            s.wall_seconds,
        );
    }
    Ok(())
}
