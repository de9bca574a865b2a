//! The egress allow-list, sans-IO: the published file's format and its strict reading, the
//! validation of hosts, and the nft script rendered from validated entries and resolved names.
//! The daemon writes the file (`witness`), the root loader reads it (`witness-egress`); both
//! meet only here, and this part is fuzzed (`egress_parse`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an egress file, a host or a URL was refused: one line, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EgressError(String);

type Result<T> = std::result::Result<T, EgressError>;

macro_rules! refuse {
    ($($t:tt)*) => { return Err(EgressError(format!($($t)*))) };
}

/// The published allow-list, relative to the data dir.
pub const EGRESS_FILE: &str = "run/egress.json";
/// Where `witness-journal-upload.service` takes its collector from (`URL=…`).
pub const JOURNAL_UPLOAD_FILE: &str = "journal-upload.env";
/// systemd-journal-upload's port when the URL names none.
pub const JOURNAL_UPLOAD_PORT: u16 = 19532;
const FORMAT_VERSION: u32 = 1;
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
pub const MAX_ENTRIES: usize = 4096;
pub const MAX_WHY_CHARS: usize = 200;
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
        refuse!("{ip} is not a unicast address");
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
        refuse!("{text:?} is not an IP address or a host name");
    }
    Ok(Host::Name(name))
}

/// Reads an egress file's text strictly: the version, at most 4096 entries, each with a valid
/// host, a port above 0 and a short printable reason; no other fields. One bad entry rejects
/// the whole file (the box wrote it, so a bad entry means it was changed behind the box's back).
pub fn parse(text: &str) -> Result<Vec<(Host, u16, String)>> {
    let file: EgressFile =
        serde_json::from_str(text).map_err(|e| EgressError(format!("the egress file is not valid: {e}")))?;
    if file.version != FORMAT_VERSION {
        refuse!("egress file version {} is not {FORMAT_VERSION}", file.version);
    }
    if file.allow.len() > MAX_ENTRIES {
        refuse!("the egress file has {} entries, more than {MAX_ENTRIES}", file.allow.len());
    }
    file.allow
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let n = i + 1;
            let host = parse_host(&a.host).map_err(|e| EgressError(format!("egress entry {n}: {e}")))?;
            if a.port == 0 {
                refuse!("egress entry {n} ({}): port 0 is not a port", a.host);
            }
            if a.why.chars().count() > MAX_WHY_CHARS || a.why.chars().any(char::is_control) {
                refuse!(
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
                            Err(e) => out.notes.push(format!("{name} ({why}): {e}: left out")),
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

/// The authority of an `http(s)://HOST[:PORT]/…` URL; `default_port` when it names none.
pub fn url_host_port(url: &str, default_port: u16) -> Result<(String, u16)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| EgressError(format!("{url:?} is not an http(s) URL")))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(|| EgressError(format!("{url:?}: unclosed '['")))?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| EgressError(format!("{url:?}: {p:?} is not a port")))?,
        None => default_port,
    };
    Ok((host.to_owned(), port))
}

/// The text of the egress file for `allow` (stable: the same list gives the same bytes).
pub fn file_text(allow: Vec<Allowed>) -> String {
    serde_json::to_string_pretty(&EgressFile { version: FORMAT_VERSION, allow }).expect("plain data serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(Host, u16, String)> {
        parse(text).unwrap()
    }

    fn file(allow: &[(&str, u16)]) -> String {
        let allow = allow.iter().map(|(h, p)| Allowed { host: (*h).into(), port: *p, why: "t".into() }).collect();
        file_text(allow)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
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
            let e = parse_host(bad).unwrap_err().to_string();
            assert!(e.contains("is not an IP address or a host name"), "{bad}: {e}");
        }
        assert!(parse_host(&"a".repeat(64)).is_err());
        assert!(parse_host(&["a"; 130].join(".")).is_err());
        for bad in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            let e = parse_host(bad).unwrap_err().to_string();
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
    fn collector_urls() {
        assert_eq!(url_host_port("https://logs.lan", 19532).unwrap(), ("logs.lan".into(), 19532));
        assert_eq!(url_host_port("http://10.0.0.3:8080/upload", 1).unwrap(), ("10.0.0.3".into(), 8080));
        assert_eq!(url_host_port("https://[fd00::3]:19532", 1).unwrap(), ("fd00::3".into(), 19532));
        assert_eq!(url_host_port("https://[fd00::3]", 7).unwrap(), ("fd00::3".into(), 7));
        assert!(url_host_port("ftp://x", 1).unwrap_err().to_string().contains("is not an http(s) URL"));
    }
}
