//! The box's egress allow-list, the daemon's half: what the box connects to (targets, the
//! store, the journal collector), published as `run/egress.json` for the firewall, and
//! `witness egress show`. The format, its strict reading and the nft rendering are sans-IO in
//! `witness_core::egress`; loading them into the firewall as root is `witness-egress`'s job.
//! The daemon and the CLI publish; they never touch the firewall.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use tracing::warn;
use witness_core::egress::{
    Allowed, Host, JOURNAL_UPLOAD_PORT, MAX_ENTRIES, MAX_WHY_CHARS, file_text, parse_host, url_host_port,
};
pub use witness_core::egress::{EGRESS_FILE, JOURNAL_UPLOAD_FILE};
use witness_egress::{RESOLVE_DEADLINE, read_file, resolve};
pub use witness_egress::{load, render_cmd};
use witness_index::Index;
use witness_store::Destination;

/// Everything the box connects to, from the index (targets), the store settings and the
/// journal collector (`URL=` in `journal_env`), sorted and without duplicates; plus one line for
/// each destination left out because its host is not an address or a host name. Reasons name
/// the target only with `names` (the published file does not: the index keeps target names
/// encrypted at rest).
pub fn collect(
    index: &Index,
    stores: &[(&str, Destination)],
    journal_env: Option<&str>,
    names: bool,
) -> Result<(Vec<Allowed>, Vec<String>)> {
    // (host, port, reason with the target's name, reason without it)
    let mut wanted: Vec<(String, u16, String, String)> = Vec::new();
    for (name, protocol, host, port) in index.target_endpoints()? {
        wanted.push((host, port, format!("target {name} ({protocol})"), format!("target ({protocol})")));
    }
    let mut skipped = Vec::new();
    for (what, dest) in stores {
        match dest.endpoints() {
            Ok(eps) => wanted.extend(eps.into_iter().map(|(h, p)| (h, p, (*what).to_owned(), (*what).to_owned()))),
            Err(e) => skipped.push(format!("{what}: {e}")),
        }
    }
    if let Some(env) = journal_env {
        for line in env.lines() {
            if let Some(url) = line.trim().strip_prefix("URL=") {
                match url_host_port(url.trim().trim_matches('"'), JOURNAL_UPLOAD_PORT) {
                    Ok((h, p)) => wanted.push((h, p, "journal collector".to_owned(), "journal collector".to_owned())),
                    Err(e) => skipped.push(format!("journal collector: {e}")),
                }
            }
        }
    }
    let mut merged: BTreeMap<(String, u16), String> = BTreeMap::new();
    for (host, port, named, plain) in wanted {
        let host = match parse_host(&host) {
            Ok(Host::Ip(ip)) => ip.to_string(),
            Ok(Host::Name(n)) => n,
            Err(e) => {
                skipped.push(format!("{named}: {e}"));
                continue;
            }
        };
        let why = if names { named } else { plain };
        merged
            .entry((host, port))
            .and_modify(|w| {
                if !w.split("; ").any(|x| x == why) {
                    w.push_str("; ");
                    w.push_str(&why);
                }
            })
            .or_insert(why);
    }
    let mut allow: Vec<Allowed> = merged
        .into_iter()
        .map(|((host, port), mut why)| {
            if why.chars().count() > MAX_WHY_CHARS {
                why = why.chars().take(MAX_WHY_CHARS - 1).collect::<String>() + "…";
            }
            Allowed { host, port, why }
        })
        .collect();
    allow.truncate(MAX_ENTRIES);
    Ok((allow, skipped))
}

/// What the data dir says the box connects to: targets, both store settings, the collector.
fn collect_for(dir: &DataDir, names: bool) -> Result<(Vec<Allowed>, Vec<String>)> {
    let mut stores = vec![("store", crate::sync::destination(&dir.root)?)];
    let read = dir.root.join(crate::sync::READ_STORE_FILE);
    if read.exists() {
        let text = std::fs::read_to_string(&read).with_context(|| format!("reading {}", read.display()))?;
        let dest: Destination =
            toml::from_str(&text).with_context(|| format!("{} is not a valid store configuration", read.display()))?;
        stores.push(("store (playback)", dest));
    }
    let journal = std::fs::read_to_string(dir.root.join(JOURNAL_UPLOAD_FILE)).ok();
    collect(&dir.index, &stores, journal.as_deref(), names)
}

/// Writes `run/egress.json` from the data dir when it differs from what is there (atomically:
/// a new file renamed over the old one, which is what the firewall's path unit watches).
/// Returns whether it changed.
pub fn publish(dir: &DataDir) -> Result<bool> {
    let (allow, skipped) = collect_for(dir, false)?;
    for s in &skipped {
        warn!("egress allow-list: {s}; the firewall does not let the box reach it");
    }
    let text = file_text(allow);
    let path = dir.root.join(EGRESS_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let run = path.parent().context("the egress file has no folder")?;
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let tmp = run.join(format!("egress.json.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    witness_keys::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(true)
}

/// [`publish`] after an admin change: a failure is reported, never undoes the change.
pub fn refresh(dir: &DataDir) {
    if let Err(e) = publish(dir) {
        warn!(
            "the egress allow-list ({EGRESS_FILE}) was not updated: {e:#}; the daemon writes it again at its next start"
        );
    }
}

/// One destination the box may connect to, as `egress show` lists it.
#[derive(Serialize)]
pub struct ShowRow {
    pub host: String,
    pub port: u16,
    pub why: String,
    pub addresses: Vec<String>,
    pub note: Option<String>,
}

/// What the box may connect to now, as the index and the store settings say, with the addresses
/// names resolve to; what was left out; and whether the published file is current.
pub struct Report {
    pub rows: Vec<ShowRow>,
    pub left_out: Vec<String>,
    pub published: bool,
}

/// `witness egress show`'s facts (the command prints them).
pub fn report(root: &Path) -> Result<Report> {
    let dir = DataDir::open(root)?;
    let (allow, skipped) = collect_for(&dir, true)?;
    let entries: Vec<(Host, u16, String)> =
        allow.iter().filter_map(|a| Some((parse_host(&a.host).ok()?, a.port, a.why.clone()))).collect();
    let resolved = resolve(&entries, RESOLVE_DEADLINE);
    let rows: Vec<ShowRow> = allow
        .iter()
        .map(|a| {
            let (addresses, note) = match parse_host(&a.host) {
                Ok(Host::Ip(ip)) => (vec![ip.to_string()], None),
                Ok(Host::Name(n)) => match resolved.get(&n) {
                    Some(Ok(ips)) => (ips.iter().map(ToString::to_string).collect(), None),
                    Some(Err(e)) => (vec![], Some(format!("not resolved: {e}"))),
                    None => (vec![], Some("not resolved".to_owned())),
                },
                Err(e) => (vec![], Some(e.to_string())),
            };
            ShowRow { host: a.host.clone(), port: a.port, why: a.why.clone(), addresses, note }
        })
        .collect();
    let published = file_text(collect_for(&dir, false)?.0);
    let current = read_file(&root.join(EGRESS_FILE)).ok().flatten() == Some(published);
    Ok(Report { rows, left_out: skipped, published: current })
}

#[cfg(test)]
mod tests {
    use super::*;
    use witness_core::egress::parse;

    #[test]
    fn collects_targets_stores_and_the_collector() {
        let tmp = tempfile::tempdir().unwrap();
        let index = Index::open(&tmp.path().join("index.sqlite")).unwrap();
        for (name, protocol, host, port) in [
            ("web01", witness_core::Protocol::Ssh, "10.0.2.2", 22),
            ("web02", witness_core::Protocol::Ssh, "Web02.LAN", 22),
            ("win01", witness_core::Protocol::Rdp, "fd00::9", 3389),
            ("twin", witness_core::Protocol::Ssh, "10.0.2.2", 22),
            ("odd", witness_core::Protocol::Ssh, "not a host", 22),
        ] {
            index
                .add_target(&witness_index::TargetRecord {
                    name: name.into(),
                    protocol,
                    host: host.into(),
                    port,
                    login: "root".into(),
                    secret: witness_index::Secret::Password("TARGET-SECRET".into()),
                    host_key: None,
                })
                .unwrap();
        }
        let stores = [
            (
                "store",
                Destination::S3 {
                    endpoint: "http://minio.lan:9000".into(),
                    bucket: "rec".into(),
                    region: None,
                    prefix: String::new(),
                    access_key_id: "AKID".into(),
                    secret_key: "S3-SECRET".into(),
                    object_lock: None,
                },
            ),
            (
                "store (playback)",
                Destination::Azure { sas_url: "https://acct.blob.core.windows.net/rec?sv=1&sig=SAS-SECRET".into() },
            ),
        ];
        let collector = Some("# forwarding\nURL=https://logs.lan\n");
        let (allow, skipped) = collect(&index, &stores, collector, true).unwrap();
        let got: Vec<_> = allow.iter().map(|a| format!("{} {} {}", a.host, a.port, a.why)).collect();
        assert_eq!(
            got,
            [
                "10.0.2.2 22 target twin (ssh); target web01 (ssh)",
                "acct.blob.core.windows.net 443 store (playback)",
                "fd00::9 3389 target win01 (rdp)",
                "logs.lan 19532 journal collector",
                "minio.lan 9000 store",
                "web02.lan 22 target web02 (ssh)",
            ]
        );
        assert_eq!(skipped, [r#"target odd (ssh): "not a host" is not an IP address or a host name"#]);
        // What is published names no target, holds no secret, and reads back as written.
        let (allow, skipped_too) = collect(&index, &stores, collector, false).unwrap();
        assert_eq!(skipped_too, skipped);
        let whys: Vec<_> = allow.iter().map(|a| a.why.as_str()).collect();
        assert_eq!(
            whys,
            ["target (ssh)", "store (playback)", "target (rdp)", "journal collector", "store", "target (ssh)"]
        );
        let text = file_text(allow);
        for secret in ["TARGET-SECRET", "S3-SECRET", "AKID", "SAS-SECRET", "sig=", "web01", "win01", "twin"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(parse(&text).unwrap().len(), 6);
    }
}
