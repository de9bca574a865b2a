//! Encoder choice for session video: each candidate is probed in a child process (a wedged
//! hardware driver must not hang the daemon), the first that proves itself is used, and the
//! result is kept in `run/encoders.json` for `witness encoders`, the console and `/metrics`.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
pub const ENCODERS_FILE: &str = "run/encoders.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    /// The encoder in use; `None`: no usable encoder (RDP sessions are then refused).
    pub chosen: Option<String>,
    pub pinned: Option<String>,
    pub probes: Vec<ProbeRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRow {
    pub element: String,
    pub platform: String,
    pub hardware: bool,
    pub usable: bool,
    pub detail: String,
}

/// `witness encoders --probe-one ELEMENT`: the child side; prints one JSON line.
pub fn probe_one_child(element: &str) -> Result<()> {
    let p = witness_video::probe_one(element, PROBE_TIMEOUT);
    println!("{}", serde_json::json!({ "usable": p.usable, "detail": p.detail }));
    Ok(())
}

fn probe_in_child(element: &'static str) -> witness_video::Probe {
    let fail = |detail: String| witness_video::Probe { element, usable: false, detail };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find the witness binary: {e}")),
    };
    let mut child = match Command::new(exe)
        .args(["encoders", "--probe-one", element])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start the probe: {e}")),
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > PROBE_TIMEOUT + Duration::from_secs(5) => {
                let _ = child.kill();
                let _ = child.wait();
                return fail(format!("the probe hung for {} s (driver wedged?)", PROBE_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return fail(e.to_string()),
        }
    }
    let mut out = String::new();
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    match serde_json::from_str::<serde_json::Value>(out.trim()) {
        Ok(v) => witness_video::Probe {
            element,
            usable: v["usable"].as_bool().unwrap_or(false),
            detail: v["detail"].as_str().unwrap_or("").to_owned(),
        },
        Err(_) => fail("the probe crashed (a driver fault?)".into()),
    }
}

/// Probes in order (or only the pinned encoder) and records the result.
pub fn choose(dir: &DataDir) -> Result<Choice> {
    let pinned = dir.config.video_encoder.clone();
    let order = witness_video::order(pinned.as_deref())?;
    let (chosen, probes) = witness_video::choose(&order, |c| probe_in_child(c.element));
    let choice = Choice {
        chosen: chosen.map(|c| c.element.to_owned()),
        pinned,
        probes: probes
            .into_iter()
            .map(|p| {
                let c = witness_video::candidate(p.element);
                ProbeRow {
                    element: p.element.to_owned(),
                    platform: c.map(|c| c.platform).unwrap_or("").to_owned(),
                    hardware: c.is_some_and(|c| c.hardware),
                    usable: p.usable,
                    detail: p.detail,
                }
            })
            .collect(),
    };
    let path = dir.root.join(ENCODERS_FILE);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&choice)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(choice)
}

/// The last recorded choice, if the daemon (or `witness encoders`) made one.
pub fn last_choice(root: &Path) -> Option<Choice> {
    serde_json::from_slice(&std::fs::read(root.join(ENCODERS_FILE)).ok()?).ok()
}

/// `witness encoders [--json]`.
pub fn encoders(root: &Path, json: bool) -> Result<()> {
    let dir = DataDir::open(root)?;
    let choice = choose(&dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&choice)?);
        return Ok(());
    }
    for p in &choice.probes {
        let kind = if p.hardware { "hardware" } else { "software" };
        let verdict = if p.usable { "usable" } else { "skipped" };
        println!("{:<14} {kind:<9} {verdict:<8} {} — {}", p.element, p.detail, p.platform);
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
