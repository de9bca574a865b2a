//! `witness panel`: the front panel's last state, as the daemon published it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `witness board-devices`: the device nodes of the board profile the daemon will choose (GPIO
/// chips holding its lines, I2C buses of its sensors), one per line. Reads the configuration
/// only (no keys, no index): witness-devices.service runs it as root before the daemon starts
/// and opens the sandbox to these nodes alone.
pub fn board_devices(root: &Path) -> Result<()> {
    let configured = match std::fs::read_to_string(root.join(crate::datadir::CONFIG)) {
        Ok(text) => witness_core::config::ConfigFile::parse(&text)?.validate()?.board_profile,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.join(crate::datadir::CONFIG).display())),
    };
    let (profile, _why) = crate::daemon::panel::choose_profile_named(configured.as_deref())?;
    for node in witness_board_linux::device_nodes(&profile) {
        println!("{node}");
    }
    Ok(())
}

/// `witness panel [--json]`.
pub fn show(root: &Path, json: bool) -> Result<()> {
    let path: PathBuf = root.join(crate::daemon::panel::PANEL_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no panel state at {} (is `witness serve` running?)", path.display()))?;
    if json {
        println!("{text}");
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let led = |b: &serde_json::Value| if b.as_bool() == Some(true) { "on " } else { "off" };
    println!("board:    {} ({})", v["profile"].as_str().unwrap_or("?"), v["profile_reason"].as_str().unwrap_or(""));
    println!("panel:    {}  [green {}] [red {}]", v["state"].as_str().unwrap_or("?"), led(&v["green"]), led(&v["red"]));
    println!("sessions: {} live", v["live_sessions"]);
    println!("health:   {}", if v["healthy"] == true { "ok".to_owned() } else { v["health"].to_string() });
    println!(
        "watchdog: {}",
        if v["watchdog"]["present"] != true {
            "none".to_owned()
        } else if v["watchdog"]["petting"] == true {
            format!(
                "petted ({} times, last {})",
                v["watchdog"]["pets"],
                v["watchdog"]["last_pet_at"].as_str().unwrap_or("-")
            )
        } else {
            "NOT petted: the box will reset".to_owned()
        }
    );
    println!("updated:  {}", v["updated_at"].as_str().unwrap_or("?"));
    Ok(())
}
