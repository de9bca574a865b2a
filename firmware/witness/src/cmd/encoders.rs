//! `witness encoders`: which H.264 encoders work on this box, and the probe's child side.

use crate::datadir::DataDir;
use anyhow::Result;
use std::path::Path;

/// `witness encoders --probe-one ELEMENT`: the child side; prints one JSON line.
pub fn probe_one_child(element: &str) -> Result<()> {
    let p = witness_video::probe_one(element, crate::daemon::video::PROBE_TIMEOUT);
    println!("{}", serde_json::json!({ "usable": p.usable, "detail": p.detail }));
    Ok(())
}

/// `witness encoders [--json]`.
pub fn encoders(root: &Path, json: bool) -> Result<()> {
    let dir = DataDir::open(root)?;
    let choice = crate::daemon::video::choose(&dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&choice)?);
        return Ok(());
    }
    for p in &choice.probes {
        let kind = if p.hardware { "hardware" } else { "software" };
        let verdict = if p.usable { "usable" } else { "skipped" };
        let devices: Vec<String> = p.devices.iter().map(|d| format!("{} {}", d.path, d.access)).collect();
        let devices = if devices.is_empty() { String::new() } else { format!(" [{}]", devices.join(", ")) };
        println!("{:<14} {kind:<9} {verdict:<8} {}: {}{devices} — {}", p.element, p.reason, p.detail, p.platform);
    }
    let untried: Vec<&str> = witness_video::CANDIDATES
        .iter()
        .map(|c| c.element)
        .filter(|e| !choice.probes.iter().any(|p| p.element == *e))
        .collect();
    if !untried.is_empty() && choice.chosen.is_some() {
        println!("not tried (a better one works): {}", untried.join(", "));
    }
    match (&choice.chosen, &choice.pinned) {
        (Some(c), Some(_)) => println!("using {c} (pinned by [recording] video_encoder)"),
        (Some(c), None) => println!("using {c} (the first in order that encodes)"),
        (None, Some(p)) => anyhow::bail!("the pinned encoder {p} does not work here; RDP sessions cannot be recorded"),
        (None, None) => anyhow::bail!("no H.264 encoder works on this box; RDP sessions cannot be recorded"),
    }
    Ok(())
}
