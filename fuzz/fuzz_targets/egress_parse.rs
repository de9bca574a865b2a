//! The egress file is read by a process that runs as root and writes firewall rules: whatever
//! the file holds, parsing never panics, every accepted host is an address or a plain name, the
//! rendered nft script holds nothing but the expected statements (no injected rule), and what
//! is accepted reads back the same after writing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use witness_core::egress::{Allowed, Host, Resolved, file_text, parse, parse_host, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Host::Name(n)) = parse_host(text) {
        assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)), "{n:?}");
    }
    let Ok(entries) = parse(text) else { return };
    // Every name resolves to a fixed address, so names reach the script too.
    let mut resolved = Resolved::new();
    for (h, _, _) in &entries {
        if let Host::Name(n) = h {
            resolved.insert(n.clone(), Ok(vec!["10.9.8.7".parse().unwrap(), "fd00::7".parse().unwrap()]));
        }
    }
    let script = render(&entries, &resolved).script();
    for line in script.lines().skip(1) {
        let ok = line.starts_with("flush set inet witness egress")
            || (line.starts_with("add element inet witness egress")
                && line.bytes().all(|b| b.is_ascii_alphanumeric() || b" .:,{}".contains(&b)));
        assert!(ok, "unexpected nft line {line:?}");
    }
    let allow: Vec<Allowed> = entries
        .iter()
        .map(|(h, port, why)| Allowed {
            host: match h {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(n) => n.clone(),
            },
            port: *port,
            why: why.clone(),
        })
        .collect();
    assert_eq!(parse(&file_text(allow)).unwrap(), entries);
});
