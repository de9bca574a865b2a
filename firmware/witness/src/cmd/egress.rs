//! `witness egress show|render|load`: what the box may connect to, and the firewall's list.

use crate::egress::{EGRESS_FILE, report};
use anyhow::Result;
use std::path::Path;

/// `witness egress show [--json]`.
pub fn show(root: &Path, json: bool) -> Result<()> {
    let r = report(root)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "allowed": r.rows, "left_out": r.left_out, "published": r.published, "file": EGRESS_FILE,
            }))?
        );
        return Ok(());
    }
    println!("the box may connect to (besides DNS through systemd-resolved, NTP and DHCP):");
    if r.rows.is_empty() {
        println!("  nothing: no targets and no network store");
    }
    for row in &r.rows {
        let at = match (&row.note, row.addresses.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, true) => "no address".to_owned(),
            (None, false) => row.addresses.join(", "),
        };
        let host = if row.host.contains(':') { format!("[{}]", row.host) } else { row.host.clone() };
        println!("  {host}:{}\t{}\t{at}", row.port, row.why);
    }
    for s in &r.left_out {
        println!("left out: {s}");
    }
    if r.published {
        println!(
            "{EGRESS_FILE} is current; witness-egress.service loads it into the firewall (nft list set inet witness egress4)"
        );
    } else {
        println!(
            "{EGRESS_FILE} is not current: the daemon writes it at its start, admin commands when they change targets or the store"
        );
    }
    Ok(())
}
