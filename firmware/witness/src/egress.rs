//! The box's egress allow-list: the hosts and ports it may connect to (targets, the store, the
//! journal collector), published as `run/egress.json` for the firewall, and the strict reading
//! of that file into nft set elements (`witness egress load`, run as root by
//! `witness-egress.service`). The daemon and the CLI publish; they never touch the firewall.
//! The loader never opens the index: it reads this one plain file, which holds no secret.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;
use tracing::warn;
use witness_index::Index;
use witness_store::Destination;

/// The published allow-list, relative to the data dir.
pub const EGRESS_FILE: &str = "run/egress.json";
/// Where `witness-journal-upload.service` takes its collector from (`URL=…`).
pub const JOURNAL_UPLOAD_FILE: &str = "journal-upload.env";
/// systemd-journal-upload's port when the URL names none.
const JOURNAL_UPLOAD_PORT: u16 = 19532;
const FORMAT_VERSION: u32 = 1;
const MAX_FILE_BYTES: u64 = 256 * 1024;
const MAX_ENTRIES: usize = 4096;
const MAX_WHY_CHARS: usize = 200;
/// How long the loader waits for names to resolve before it loads without the slow ones.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(10);
/// The nft table and sets `rootfs/overlay/etc/nftables.conf` defines.
const NFT_TABLE: &str = "inet witness";
const NFT_SET4: &str = "egress4";
const NFT_SET6: &str = "egress6";

/// One destination the box may open TCP connections to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowed {
    /// An IP address or a DNS name.
    pub host: String,
    pub port: u16,
    /// Who needs it ("target web01 (ssh)", "store"): for people, never rendered into rules.
    pub why: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EgressFile {
    version: u32,
    allow: Vec<Allowed>,
}

/// A destination's host after validation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, lowercase, without a trailing dot.
    Name(String),
}

/// A unicast address the box may connect to: IPv4-mapped IPv6 addresses become IPv4 (that is
/// how they leave the box).
fn unicast(ip: IpAddr) -> Result<IpAddr> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let bad = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if bad {
        bail!("{ip} is not a unicast address");
    }
    Ok(ip)
}

/// Validates a host: an IP address (IPv6 with or without brackets) or a DNS name of
/// letters, digits, `-` and `_` in labels of at most 63 characters.
pub fn parse_host(text: &str) -> Result<Host> {
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Host::Ip(unicast(ip)?));
    }
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let last_numeric = name.rsplit('.').next().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) || last_numeric {
        bail!("{text:?} is not an IP address or a host name");
    }
    Ok(Host::Name(name))
}

/// Reads an egress file's text strictly: the version, at most 4096 entries, each with a valid
/// host, a port above 0 and a short printable reason; no other fields. One bad entry rejects
/// the whole file (the box wrote it, so a bad entry means it was changed behind the box's back).
pub fn parse(text: &str) -> Result<Vec<(Host, u16, String)>> {
    let file: EgressFile = serde_json::from_str(text).context("the egress file is not valid")?;
    if file.version != FORMAT_VERSION {
        bail!("egress file version {} is not {FORMAT_VERSION}", file.version);
    }
    if file.allow.len() > MAX_ENTRIES {
        bail!("the egress file has {} entries, more than {MAX_ENTRIES}", file.allow.len());
    }
    file.allow
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let n = i + 1;
            let host = parse_host(&a.host).with_context(|| format!("egress entry {n}"))?;
            if a.port == 0 {
                bail!("egress entry {n} ({}): port 0 is not a port", a.host);
            }
            if a.why.chars().count() > MAX_WHY_CHARS || a.why.chars().any(char::is_control) {
                bail!(
                    "egress entry {n} ({}): the reason is longer than {MAX_WHY_CHARS} characters or not printable",
                    a.host
                );
            }
            Ok((host, a.port, a.why))
        })
        .collect()
}

/// What the loader puts into the firewall.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub v4: BTreeSet<(Ipv4Addr, u16)>,
    pub v6: BTreeSet<(Ipv6Addr, u16)>,
    /// Names that did not resolve, and addresses left out, one line each.
    pub notes: Vec<String>,
}

impl Rendered {
    /// The nft script that replaces the sets' contents in one transaction.
    pub fn script(&self) -> String {
        let mut s = format!(
            "# witness egress allow-list: {} IPv4 and {} IPv6 address/port pairs\n",
            self.v4.len(),
            self.v6.len()
        );
        s.push_str(&format!("flush set {NFT_TABLE} {NFT_SET4}\nflush set {NFT_TABLE} {NFT_SET6}\n"));
        let elements = |items: Vec<String>| items.join(", ");
        if !self.v4.is_empty() {
            let items = self.v4.iter().map(|(ip, port)| format!("{ip} . {port}")).collect();
            s.push_str(&format!("add element {NFT_TABLE} {NFT_SET4} {{ {} }}\n", elements(items)));
        }
        if !self.v6.is_empty() {
            let items = self.v6.iter().map(|(ip, port)| format!("{ip} . {port}")).collect();
            s.push_str(&format!("add element {NFT_TABLE} {NFT_SET6} {{ {} }}\n", elements(items)));
        }
        s
    }
}

/// How a name resolved: its addresses, or why not.
pub type Resolved = BTreeMap<String, std::result::Result<Vec<IpAddr>, String>>;

/// Turns validated entries into set elements; names take their addresses from `resolved` (a
/// name missing there or without addresses is left out with a note). Duplicates collapse.
pub fn render(entries: &[(Host, u16, String)], resolved: &Resolved) -> Rendered {
    fn add(ip: IpAddr, port: u16, out: &mut Rendered) {
        match ip {
            IpAddr::V4(v4) => out.v4.insert((v4, port)),
            IpAddr::V6(v6) => out.v6.insert((v6, port)),
        };
    }
    let mut out = Rendered::default();
    for (host, port, why) in entries {
        match host {
            Host::Ip(ip) => add(*ip, *port, &mut out),
            Host::Name(name) => match resolved.get(name) {
                Some(Ok(ips)) if !ips.is_empty() => {
                    for ip in ips {
                        match unicast(*ip) {
                            Ok(ip) => add(ip, *port, &mut out),
                            Err(e) => out.notes.push(format!("{name} ({why}): {e:#}: left out")),
                        }
                    }
                }
                Some(Ok(_)) => out.notes.push(format!("{name} ({why}): resolves to no address: left out")),
                Some(Err(e)) => out.notes.push(format!("{name} ({why}): not resolved ({e}): left out")),
                None => out.notes.push(format!("{name} ({why}): not resolved: left out")),
            },
        }
    }
    out.notes.dedup();
    out
}

/// Resolves every name among `entries` through the system resolver, in parallel; names still
/// unanswered after the deadline count as not resolved.
pub fn resolve(entries: &[(Host, u16, String)], deadline: Duration) -> Resolved {
    let names: BTreeSet<&str> = entries
        .iter()
        .filter_map(|(h, _, _)| match h {
            Host::Name(n) => Some(n.as_str()),
            Host::Ip(_) => None,
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    for name in &names {
        let (tx, name) = (tx.clone(), (*name).to_owned());
        // A thread per name: getaddrinfo has no timeout of its own. Threads still waiting when
        // the deadline passes end with the process.
        std::thread::spawn(move || {
            let got = (name.as_str(), 0)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).collect::<BTreeSet<_>>().into_iter().collect())
                .map_err(|e| e.to_string());
            let _ = tx.send((name, got));
        });
    }
    drop(tx);
    let mut out = Resolved::new();
    let end = std::time::Instant::now() + deadline;
    while out.len() < names.len() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, got)) => {
                out.insert(name, got);
            }
            Err(_) => break,
        }
    }
    for name in names {
        out.entry(name.to_owned()).or_insert_with(|| Err(format!("no answer within {}s", deadline.as_secs())));
    }
    out
}

/// The authority of an `http(s)://HOST[:PORT]/…` URL; `default_port` when it names none.
fn url_host_port(url: &str, default_port: u16) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .with_context(|| format!("{url:?} is not an http(s) URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').with_context(|| format!("{url:?}: unclosed '['"))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().with_context(|| format!("{url:?}: {p:?} is not a port"))?,
        None => default_port,
    };
    Ok((host.to_owned(), port))
}

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
                    Err(e) => skipped.push(format!("journal collector: {e:#}")),
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
                skipped.push(format!("{named}: {e:#}"));
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

/// The text of the egress file for `allow` (stable: the same list gives the same bytes).
fn file_text(allow: Vec<Allowed>) -> Result<String> {
    Ok(serde_json::to_string_pretty(&EgressFile { version: FORMAT_VERSION, allow })? + "\n")
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
    let text = file_text(allow)?;
    let path = dir.root.join(EGRESS_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    let run = path.parent().context("the egress file has no folder")?;
    std::fs::create_dir_all(run).with_context(|| format!("creating {}", run.display()))?;
    let tmp = run.join(format!("egress.json.{}.new", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    crate::admin::write_private(&tmp, text.as_bytes())?;
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

/// Reads the egress file, or `None` when there is none. Only a regular file is read (a link
/// put in its place is refused), of at most 256 KiB.
fn read_file(path: &Path) -> Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.file_type().is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let opened = f.metadata()?;
    use std::os::unix::fs::MetadataExt;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        bail!("{} was replaced while it was opened", path.display());
    }
    let mut text = String::new();
    f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        bail!("{} is larger than {MAX_FILE_BYTES} bytes", path.display());
    }
    Ok(Some(text))
}

/// The rules for the egress file in `root` (flushed sets when there is none).
fn render_file(root: &Path) -> Result<(Option<String>, Rendered)> {
    let path = root.join(EGRESS_FILE);
    let text = read_file(&path)?;
    let entries = match &text {
        Some(t) => parse(t).with_context(|| format!("{} is refused", path.display()))?,
        None => Vec::new(),
    };
    let resolved = resolve(&entries, RESOLVE_DEADLINE);
    Ok((text, render(&entries, &resolved)))
}

/// `witness egress render`: prints the nft script the loader would load.
pub fn render_cmd(root: &Path) -> Result<()> {
    let (text, rendered) = render_file(root)?;
    if text.is_none() {
        eprintln!("witness: no {EGRESS_FILE} yet: only DNS, NTP and DHCP go out");
    }
    for n in &rendered.notes {
        eprintln!("witness: egress: {n}");
    }
    print!("{}", rendered.script());
    Ok(())
}

/// `witness egress load` (root, from `witness-egress.service`): renders the egress file and
/// loads it into the firewall's sets with `nft -f -`, as one transaction. When the file changed
/// meanwhile, loads again, so the last version is the one in force.
pub fn load(root: &Path) -> Result<()> {
    for _ in 0..3 {
        let (text, rendered) = render_file(root)?;
        for n in &rendered.notes {
            eprintln!("witness-egress: {n}");
        }
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("running nft")?;
        child.stdin.take().context("nft's stdin")?.write_all(rendered.script().as_bytes()).context("writing to nft")?;
        let status = child.wait().context("waiting for nft")?;
        if !status.success() {
            bail!("nft refused the egress rules ({status})");
        }
        println!(
            "witness-egress: allowed out: {} IPv4 and {} IPv6 address/port pairs{}",
            rendered.v4.len(),
            rendered.v6.len(),
            if text.is_none() { format!(" (no {EGRESS_FILE} yet)") } else { String::new() }
        );
        if read_file(&root.join(EGRESS_FILE))? == text {
            return Ok(());
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ShowRow {
    host: String,
    port: u16,
    why: String,
    addresses: Vec<String>,
    note: Option<String>,
}

/// `witness egress show`: what the box may connect to now, as the index and the store settings
/// say, with the addresses names resolve to; and whether the published file is current.
pub fn show(root: &Path, json: bool) -> Result<()> {
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
                Err(e) => (vec![], Some(format!("{e:#}"))),
            };
            ShowRow { host: a.host.clone(), port: a.port, why: a.why.clone(), addresses, note }
        })
        .collect();
    let published = file_text(collect_for(&dir, false)?.0)?;
    let current = read_file(&root.join(EGRESS_FILE)).ok().flatten() == Some(published);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "allowed": rows, "left_out": skipped, "published": current, "file": EGRESS_FILE,
            }))?
        );
        return Ok(());
    }
    println!("the box may connect to (besides DNS through systemd-resolved, NTP and DHCP):");
    if rows.is_empty() {
        println!("  nothing: no targets and no network store");
    }
    for r in &rows {
        let at = match (&r.note, r.addresses.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, true) => "no address".to_owned(),
            (None, false) => r.addresses.join(", "),
        };
        let host = if r.host.contains(':') { format!("[{}]", r.host) } else { r.host.clone() };
        println!("  {host}:{}\t{}\t{at}", r.port, r.why);
    }
    for s in &skipped {
        println!("left out: {s}");
    }
    if current {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(Host, u16, String)> {
        parse(text).unwrap()
    }

    fn file(allow: &[(&str, u16)]) -> String {
        let allow = allow.iter().map(|(h, p)| Allowed { host: (*h).into(), port: *p, why: "t".into() }).collect();
        file_text(allow).unwrap()
    }

    fn err(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn hosts_are_addresses_or_names() {
        assert_eq!(parse_host("10.0.0.5").unwrap(), Host::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(parse_host("[fd00::5]").unwrap(), Host::Ip("fd00::5".parse().unwrap()));
        assert_eq!(parse_host("fd00::5").unwrap(), Host::Ip("fd00::5".parse().unwrap()));
        // An IPv4-mapped IPv6 address leaves the box as IPv4.
        assert_eq!(parse_host("::ffff:10.0.0.5").unwrap(), Host::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(parse_host("Web01.Example.").unwrap(), Host::Name("web01.example".into()));
        assert_eq!(parse_host("_srv.minio-1").unwrap(), Host::Name("_srv.minio-1".into()));
        for bad in ["", "a b", "-a.example", "a-.example", "a..b", "10.0.0.256", "x;flush ruleset", "a}b", "é.example"]
        {
            let e = format!("{:#}", parse_host(bad).unwrap_err());
            assert!(e.contains("is not an IP address or a host name"), "{bad}: {e}");
        }
        assert!(parse_host(&"a".repeat(64)).is_err());
        assert!(parse_host(&["a"; 130].join(".")).is_err());
        for bad in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            let e = format!("{:#}", parse_host(bad).unwrap_err());
            assert!(e.ends_with("is not a unicast address"), "{bad}: {e}");
        }
    }

    #[test]
    fn renders_ipv4_ipv6_and_resolved_names_without_duplicates() {
        let list = entries(&file(&[
            ("10.0.2.2", 2201),
            ("10.0.2.2", 2201),
            ("[fd00::5]", 9000),
            ("minio.lan", 9000),
            ("web01.lan", 22),
            ("gone.lan", 22),
        ]));
        let mut resolved = Resolved::new();
        resolved.insert("minio.lan".into(), Ok(vec!["10.0.0.7".parse().unwrap(), "fd00::7".parse().unwrap()]));
        // The same address as a literal entry: one element.
        resolved.insert("web01.lan".into(), Ok(vec!["10.0.2.2".parse().unwrap(), "::ffff:10.0.2.9".parse().unwrap()]));
        resolved.insert("gone.lan".into(), Err("failed to lookup address information".into()));
        let r = render(&list, &resolved);
        assert_eq!(
            r.v4.iter().map(|(a, p)| format!("{a}:{p}")).collect::<Vec<_>>(),
            ["10.0.0.7:9000", "10.0.2.2:22", "10.0.2.2:2201", "10.0.2.9:22"]
        );
        assert_eq!(
            r.v6.iter().map(|(a, p)| format!("[{a}]:{p}")).collect::<Vec<_>>(),
            ["[fd00::5]:9000", "[fd00::7]:9000"]
        );
        assert_eq!(r.notes, ["gone.lan (t): not resolved (failed to lookup address information): left out"]);
        assert_eq!(
            r.script(),
            "# witness egress allow-list: 4 IPv4 and 2 IPv6 address/port pairs\n\
             flush set inet witness egress4\n\
             flush set inet witness egress6\n\
             add element inet witness egress4 { 10.0.0.7 . 9000, 10.0.2.2 . 22, 10.0.2.2 . 2201, 10.0.2.9 . 22 }\n\
             add element inet witness egress6 { fd00::5 . 9000, fd00::7 . 9000 }\n"
        );
    }

    #[test]
    fn an_empty_list_only_flushes() {
        let r = render(&entries(&file(&[])), &Resolved::new());
        assert_eq!(
            r.script(),
            "# witness egress allow-list: 0 IPv4 and 0 IPv6 address/port pairs\n\
             flush set inet witness egress4\nflush set inet witness egress6\n"
        );
        // A name that resolves to nothing usable is left out with a note.
        let mut resolved = Resolved::new();
        resolved.insert("m.lan".into(), Ok(vec!["0.0.0.0".parse().unwrap()]));
        let r = render(&entries(&file(&[("m.lan", 1)])), &resolved);
        assert!(r.v4.is_empty());
        assert_eq!(r.notes, ["m.lan (t): 0.0.0.0 is not a unicast address: left out"]);
    }

    #[test]
    fn bad_files_are_refused_whole_with_the_reason() {
        assert!(err("").starts_with("the egress file is not valid"));
        assert!(err("[]").starts_with("the egress file is not valid"));
        assert!(err(r#"{"version":1,"allow":[],"extra":1}"#).contains("unknown field `extra`"));
        assert_eq!(err(r#"{"version":2,"allow":[]}"#), "egress file version 2 is not 1");
        let e = err(
            r#"{"version":1,"allow":[{"host":"10.0.0.1","port":22,"why":"a"},{"host":"a b","port":22,"why":"b"}]}"#,
        );
        assert_eq!(e, r#"egress entry 2: "a b" is not an IP address or a host name"#);
        let e = err(r#"{"version":1,"allow":[{"host":"10.0.0.1","port":0,"why":"a"}]}"#);
        assert_eq!(e, "egress entry 1 (10.0.0.1): port 0 is not a port");
        assert!(err(r#"{"version":1,"allow":[{"host":"10.0.0.1","port":65536,"why":"a"}]}"#).contains("not valid"));
        let e = err(r#"{"version":1,"allow":[{"host":"10.0.0.1","port":22,"why":"a\nb"}]}"#);
        assert!(e.ends_with("not printable"), "{e}");
        let e = err(r#"{"version":1,"allow":[{"host":"10.0.0.1","port":22,"why":"a","secret":"x"}]}"#);
        assert!(e.contains("unknown field `secret`"), "{e}");
        let many: Vec<_> = (0..=MAX_ENTRIES).map(|i| ("10.0.0.1", (i + 1) as u16)).collect();
        assert_eq!(err(&file(&many)), "the egress file has 4097 entries, more than 4096");
        for e in [err(""), err(r#"{"version":2,"allow":[]}"#)] {
            assert!(!e.ends_with('.') && e.chars().next().unwrap().is_lowercase(), "{e}");
        }
    }

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
        let text = file_text(allow).unwrap();
        for secret in ["TARGET-SECRET", "S3-SECRET", "AKID", "SAS-SECRET", "sig=", "web01", "win01", "twin"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(parse(&text).unwrap().len(), 6);
    }

    #[test]
    fn collector_urls() {
        assert_eq!(url_host_port("https://logs.lan", 19532).unwrap(), ("logs.lan".into(), 19532));
        assert_eq!(url_host_port("http://10.0.0.3:8080/upload", 1).unwrap(), ("10.0.0.3".into(), 8080));
        assert_eq!(url_host_port("https://[fd00::3]:19532", 1).unwrap(), ("fd00::3".into(), 19532));
        assert_eq!(url_host_port("https://[fd00::3]", 7).unwrap(), ("fd00::3".into(), 7));
        assert!(format!("{:#}", url_host_port("ftp://x", 1).unwrap_err()).contains("is not an http(s) URL"));
    }

    #[test]
    fn the_loader_reads_only_a_regular_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("egress.json");
        assert_eq!(read_file(&path).unwrap(), None);
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        assert!(format!("{:#}", read_file(&path).unwrap_err()).ends_with("is not a regular file"));
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(format!("{:#}", read_file(&path).unwrap_err()).contains("is larger than"));
        std::fs::write(&path, file(&[("10.0.0.1", 22)])).unwrap();
        assert_eq!(parse(&read_file(&path).unwrap().unwrap()).unwrap().len(), 1);
    }

    #[test]
    fn names_resolve_through_the_system_resolver() {
        let list = entries(&file(&[("localhost", 22), ("10.0.0.1", 22)]));
        let resolved = resolve(&list, Duration::from_secs(10));
        assert_eq!(resolved.len(), 1);
        let ips = resolved["localhost"].as_ref().unwrap();
        assert!(ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
    }
}
