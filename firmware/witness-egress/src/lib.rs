//! The root half of the egress allow-list: reads the file the daemon publishes
//! (`run/egress.json`, strictly, never the index), resolves names with a deadline, and loads the
//! result into the firewall's sets with one `nft` transaction. It links none of the session
//! machinery (no SQLite, no SSH or RDP, no GStreamer), so the one process that runs as root with
//! `CAP_NET_ADMIN` is small; `xtask`'s dependency check keeps it so.

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;
pub use witness_core::egress::*;

/// How long the loader waits for names to resolve before it loads without the slow ones.
pub const RESOLVE_DEADLINE: Duration = Duration::from_secs(10);

/// Resolver threads to start with: getaddrinfo has no timeout of its own, so each waits on a
/// thread; a file naming thousands of hosts gets a few threads, not one per name.
const RESOLVERS: usize = 4;
/// At most this many resolver threads: when every thread has waited longer than a name's share
/// of the deadline (a zone whose server never answers), another is started, so slow names
/// cannot starve the rest; the cap keeps the loader small where threads or memory are limited.
const MAX_RESOLVERS: usize = 16;

/// Resolves every name among `entries` through the system resolver, on a few threads that
/// grow (to [`MAX_RESOLVERS`]) while names are stuck; names still unanswered after the deadline
/// count as not resolved (and names never asked, for want of a thread, say so), and the rest
/// still load.
pub fn resolve(entries: &[(Host, u16, String)], deadline: Duration) -> Resolved {
    use std::sync::{Arc, Mutex};
    let names: BTreeSet<&str> = entries
        .iter()
        .filter_map(|(h, _, _)| match h {
            Host::Name(n) => Some(n.as_str()),
            Host::Ip(_) => None,
        })
        .collect();
    let queue = Arc::new(Mutex::new(names.iter().rev().map(|n| (*n).to_owned()).collect::<Vec<_>>()));
    // When each thread took its current name (None: idle or gone).
    let busy: Arc<Mutex<Vec<Option<std::time::Instant>>>> = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let start = |slot: usize| {
        let (tx, queue, busy) = (tx.clone(), queue.clone(), busy.clone());
        // Threads still waiting when the deadline passes end with the process.
        std::thread::Builder::new().name("resolve".into()).stack_size(256 * 1024).spawn(move || {
            loop {
                let Some(name) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else { break };
                busy.lock().unwrap_or_else(|p| p.into_inner())[slot] = Some(std::time::Instant::now());
                let got = (name.as_str(), 0)
                    .to_socket_addrs()
                    .map(|addrs| addrs.map(|a| a.ip()).collect::<BTreeSet<_>>().into_iter().collect())
                    .map_err(|e| e.to_string());
                busy.lock().unwrap_or_else(|p| p.into_inner())[slot] = None;
                if tx.send((name, got)).is_err() {
                    break;
                }
            }
        })
    };
    let mut threads = 0;
    while threads < RESOLVERS.min(names.len()) {
        busy.lock().unwrap_or_else(|p| p.into_inner()).push(None);
        if start(threads).is_err() {
            break; // the threads there are go on with the queue
        }
        threads += 1;
    }
    let mut out = Resolved::new();
    let end = std::time::Instant::now() + deadline;
    // A name's share of the deadline: a thread on one name longer than this counts as stuck.
    let stuck_after = (deadline / 4).max(Duration::from_millis(200));
    while out.len() < names.len() {
        let now = std::time::Instant::now();
        if now >= end {
            break;
        }
        match rx.recv_timeout((end - now).min(stuck_after / 2)) {
            Ok((name, got)) => {
                out.insert(name, got);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let all_stuck = busy
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .all(|b| b.is_some_and(|t| t.elapsed() >= stuck_after));
                let waiting = !queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
                if all_stuck && waiting && threads < MAX_RESOLVERS {
                    busy.lock().unwrap_or_else(|p| p.into_inner()).push(None);
                    if start(threads).is_ok() {
                        threads += 1;
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Nothing more is taken from the queue: the loader goes on without what is left.
    let never_asked: BTreeSet<String> =
        std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
    for name in names {
        out.entry(name.to_owned()).or_insert_with(|| {
            if never_asked.contains(name) {
                Err(format!("not asked within {}s: every resolver was waiting on slower names", deadline.as_secs()))
            } else {
                Err(format!("no answer within {}s", deadline.as_secs()))
            }
        });
    }
    out
}

/// Opens for reading without following a link and without waiting: a FIFO put in the file's
/// place after it was looked at would otherwise block the root loader in `open` for good (the
/// identity check after the open then refuses it).
fn open_no_wait(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path)
}

/// Reads the egress file, or `None` when there is none. Only a regular file is read (a link
/// put in its place is refused), of at most 256 KiB.
pub fn read_file(path: &Path) -> Result<Option<String>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !meta.file_type().is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let f = open_no_wait(path).with_context(|| format!("opening {}", path.display()))?;
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
pub fn render_file(root: &Path) -> Result<(Option<String>, Rendered)> {
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
        eprintln!("witness-egress: no {EGRESS_FILE} yet: only DNS, NTP and DHCP go out");
    }
    for n in &rendered.notes {
        eprintln!("witness-egress: {n}");
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

    #[test]
    fn opening_a_fifo_does_not_wait_for_a_writer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("egress.json");
        assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
        // Returns at once (a plain open would block here until a writer came).
        let f = open_no_wait(&path).unwrap();
        assert!(!f.metadata().unwrap().file_type().is_file());
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

    /// A DNS server on 127.0.0.1:53 (in the test's own network namespace) that answers `fast*`
    /// names with 10.9.9.9 at once and never answers `slow*` names (a zone whose server is
    /// down, or hostile: it chooses to be slow).
    const SILENT_DNS: &str = r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    q, a = s.recvfrom(512)
    i, labels = 12, []
    while q[i]:
        labels.append(q[i+1:i+1+q[i]].decode()); i += 1 + q[i]
    qtype = struct.unpack(">H", q[i+1:i+3])[0]
    if labels[0].startswith("slow"):
        continue
    question = q[12:i+5]
    ans = b""
    if qtype == 1:
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 9, 9, 9])
    hdr = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1 if ans else 0, 0, 0)
    s.sendto(hdr + question + ans, a)
"#;

    /// Red team h-red22b: four resolver threads take names from one queue (the sorted names,
    /// from the end), and a name whose DNS server does not answer holds its thread for the whole
    /// deadline. Four such names (one dead or hostile zone: whoever runs a target's DNS) take
    /// every thread, and every other name in the file — the store, every other target — is never
    /// asked: "no answer within 10s", left out of the firewall's sets until the next run, where
    /// the same happens again. With a thread per name (before the fix) only the slow names were
    /// left out. Now a thread stuck on one name longer than its share of the deadline gets
    /// company (up to 16 threads), and the 24 names resolve. Runs in a network and mount namespace of
    /// its own (root: `unshare`), with a resolver of its own on 127.0.0.1.
    #[test]
    fn red22b_egress_four_names_that_never_answer_do_not_starve_the_others() {
        if std::env::var_os("RED22B_NS").is_none() {
            let tmp = tempfile::tempdir().unwrap();
            let conf = tmp.path().join("resolv.conf");
            std::fs::write(&conf, "nameserver 127.0.0.1\noptions timeout:5 attempts:1\n").unwrap();
            let exe = std::env::current_exe().unwrap();
            let script = format!(
                "ip link set lo up && mount --bind {} /etc/resolv.conf && exec {} --exact \
                 tests::red22b_egress_four_names_that_never_answer_do_not_starve_the_others --nocapture",
                conf.display(),
                exe.display()
            );
            let out = std::process::Command::new("unshare")
                .args(["-m", "-n", "sh", "-c", &script])
                .env("RED22B_NS", "1")
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success() && text.contains("1 passed"), "in the namespace:\n{text}");
            return;
        }
        let mut dns = std::process::Command::new("python3")
            .arg("-c")
            .arg(SILENT_DNS)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 6];
        dns.stdout.take().unwrap().read_exact(&mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        // The resolver works: a fast name alone comes back at once.
        let t = std::time::Instant::now();
        let name = |n: String| (Host::Name(n), 22u16, "t".to_owned());
        let one = resolve(&[name("fast00.red22b.test".into())], Duration::from_secs(3));
        assert_eq!(one["fast00.red22b.test"], Ok(vec!["10.9.9.9".parse::<std::net::IpAddr>().unwrap()]), "{one:?}");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // 24 such names and 4 that never answer (they sort last, so they are taken first).
        let list: Vec<_> = (0..24)
            .map(|i| name(format!("fast{i:02}.red22b.test")))
            .chain((0..4).map(|i| name(format!("slow{i}.red22b.test"))))
            .collect();
        let got = resolve(&list, Duration::from_secs(3));
        let _ = dns.kill();
        let _ = dns.wait();
        let starved: Vec<&String> =
            got.iter().filter(|(n, r)| n.starts_with("fast") && r.is_err()).map(|(n, _)| n).collect();
        eprintln!("{} of 24 answerable names left out: {:?}", starved.len(), got.get("fast00.red22b.test"));
        assert!(starved.is_empty(), "names a healthy server answers were left out: {got:?}");
        for i in 0..4 {
            assert!(got[&format!("slow{i}.red22b.test")].is_err(), "{got:?}");
        }
    }
}
