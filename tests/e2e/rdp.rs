//! The RDP jump path end to end with real, independent peers: FreeRDP's `xfreerdp` under Xvfb as
//! the user's client, `witness serve --rdp-listen` as the box, and two kinds of target —
//! `freerdp-shadow-cli` with NLA (a SAM file) sharing an Xvfb display, and xrdp + xorgxrdp, which
//! offers TLS only and logs in with the credential the box writes into the Client Info PDU.
//! What the client shows is read back with `xwd -root` snapshots of its display.

use crate::harness::{Box, free_port, kill_tree, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// FreeRDP 2.11's exit codes (`xfreerdp`): `timeout` ends a session that stayed up with 124.
pub(crate) const STAYED_UP: i32 = 124;
/// ERRCONNECT_LOGON_FAILURE (CredSSP STATUS_LOGON_FAILURE: wrong user or password).
const LOGON_FAILURE: i32 = 134;
/// ERRCONNECT_ACCESS_DENIED (CredSSP STATUS_ACCESS_DENIED: no grant, certificate changed).
const ACCESS_DENIED: i32 = 155;
/// ERRCONNECT_CONNECT_TRANSPORT_FAILED (any other CredSSP status: the target is unreachable).
const TRANSPORT_FAILED: i32 = 132;

/// A private X server on a free display number well away from :0 (which desktops and other
/// suites use), tried again on another number if the one picked is taken meanwhile. `-noreset`:
/// without it the server resets whenever its last client leaves (an `xsetroot`), and whoever
/// connects during the reset is refused.
pub(crate) struct Xvfb {
    child: Child,
    pub(crate) display: String,
}

impl Xvfb {
    pub(crate) fn start() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..20 {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let number = 300 + (std::process::id() * 13 + n * 7) % 600;
            if Path::new(&format!("/tmp/.X{number}-lock")).exists() {
                continue;
            }
            let mut child = Command::new("Xvfb")
                .arg(format!(":{number}"))
                .args(["-screen", "0", "1024x768x24", "-nolisten", "tcp", "-noreset"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting Xvfb (is xvfb installed?)");
            let display = format!(":{number}");
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(10) {
                let ready = Command::new("xsetroot")
                    .args(["-display", &display, "-solid", "black"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                // Another process may have started a server on the same number at the same time:
                // the display is ours only if the lock file names our server.
                let owner = std::fs::read_to_string(format!("/tmp/.X{number}-lock")).unwrap_or_default();
                if ready && owner.trim().parse::<u32>().ok() == Some(child.id()) {
                    return Self { child, display };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("no Xvfb display could be started");
    }

    /// The display name (`:N`).
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// The whole screen as `xwd` writes it.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let out = Command::new("xwd").args(["-root", "-silent", "-display", &self.display]).output().unwrap();
        assert!(out.status.success(), "xwd failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub(crate) fn set_color(&self, color: &str) {
        let st = Command::new("xsetroot").args(["-display", &self.display, "-solid", color]).status().unwrap();
        assert!(st.success(), "xsetroot failed");
    }

    /// Resizes the windows of X class `class` (no window manager: the server applies it).
    pub(crate) fn resize_windows(&self, class: &str, width: u32, height: u32) {
        let st = Command::new("xdotool")
            .args(["search", "--sync", "--class", class, "windowsize", "%@"])
            .args([width.to_string(), height.to_string()])
            .env("DISPLAY", &self.display)
            .status()
            .expect("xdotool (apt install xdotool)");
        assert!(st.success(), "xdotool windowsize failed");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM, so the server removes its lock file.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(5) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The colour covering most of an `xwd` image (32 bits per pixel, as Xvfb's depth 24 gives), and
/// the share of sampled pixels it covers.
pub(crate) fn dominant_color(xwd: &[u8]) -> ((u8, u8, u8), f64) {
    let field = |i: usize| u32::from_be_bytes(xwd[i * 4..i * 4 + 4].try_into().unwrap()) as usize;
    let (header, width, height, lsb_first, bpp, bpl, ncolors) =
        (field(0), field(4), field(5), field(7) == 0, field(11), field(12), field(19));
    assert_eq!(bpp, 32, "expected a 32-bit xwd image");
    let data = &xwd[header + ncolors * 12..];
    let mut counts = std::collections::HashMap::<(u8, u8, u8), usize>::new();
    let mut total = 0;
    for y in (0..height).step_by(8) {
        for x in (0..width).step_by(8) {
            let p = &data[y * bpl + x * 4..y * bpl + x * 4 + 4];
            let rgb = if lsb_first { (p[2], p[1], p[0]) } else { (p[1], p[2], p[3]) };
            *counts.entry(rgb).or_default() += 1;
            total += 1;
        }
    }
    let (rgb, n) = counts.into_iter().max_by_key(|(_, n)| *n).unwrap();
    (rgb, n as f64 / total as f64)
}

pub(crate) const RED: (u8, u8, u8) = (255, 0, 0);
pub(crate) const BLUE: (u8, u8, u8) = (0, 0, 255);

/// The box serving SSH, the web console and RDP, each on its own loopback port.
pub(crate) struct RdpBox {
    pub(crate) b: Box,
    pub(crate) rdp_port: u16,
    pub(crate) child: Child,
}

impl RdpBox {
    pub(crate) fn serve(b: Box) -> Self {
        Self::serve_logging(b, "info,witness_rdp=debug,sspi=warn,ironrdp=warn")
    }

    /// Serves with `WITNESS_LOG` set to `log`.
    pub(crate) fn serve_logging(b: Box, log: &str) -> Self {
        let rdp_port = free_port();
        let child = Self::spawn_logging(&b, rdp_port, log);
        Self { b, rdp_port, child }
    }

    fn spawn(b: &Box, rdp_port: u16) -> Child {
        Self::spawn_logging(b, rdp_port, "info,witness_rdp=debug,sspi=warn,ironrdp=warn")
    }

    fn spawn_logging(b: &Box, rdp_port: u16, level: &str) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(b.dir.path().join("witness.log")).unwrap();
        let child = Command::new(crate::harness::witness_bin())
            .arg("--data")
            .arg(b.data())
            .args(["serve", "--ssh-listen", &format!("127.0.0.1:{}", b.port)])
            .args(["--web-listen", &format!("127.0.0.1:{}", b.web_port)])
            .args(["--rdp-listen", &format!("127.0.0.1:{rdp_port}")])
            .env("WITNESS_LOG", level)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_for_port(rdp_port, "witness rdp listener");
        child
    }

    /// `kill -9` (a crash or a power cut, as far as the data dir goes), then a new start.
    pub(crate) fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(&self.b, self.rdp_port);
    }

    /// `xfreerdp` on `display` through the box, ended by `timeout` after `secs`.
    pub(crate) fn client(&self, display: &Xvfb, user: &str, password: &str, secs: u32, extra: &[&str]) -> Client {
        self.client_at(self.rdp_port, display, user, password, secs, extra)
    }

    /// `xfreerdp` to another of the box's RDP ports (a target's own).
    pub(crate) fn client_at(
        &self,
        port: u16,
        display: &Xvfb,
        user: &str,
        password: &str,
        secs: u32,
        extra: &[&str],
    ) -> Client {
        let log = self.b.dir.path().join(format!("xfreerdp-{}.log", free_port()));
        let child = Command::new("timeout")
            .arg(secs.to_string())
            .arg("xfreerdp")
            .arg(format!("/v:127.0.0.1:{port}"))
            .arg(format!("/u:{user}"))
            .arg(format!("/p:{password}"))
            .args(["/cert:ignore", "/bpp:32", "-grab-keyboard"])
            .args(extra)
            .env("DISPLAY", &display.display)
            .env("HOME", self.b.dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting xfreerdp (is freerdp2-x11 installed?)");
        Client { child, log }
    }
}

impl RdpBox {
    /// SIGTERM and wait: the box's clean shutdown.
    pub(crate) fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "witness did not stop within 30s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RdpBox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) struct Client {
    child: Child,
    log: PathBuf,
}

impl Client {
    pub(crate) fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub(crate) fn wait(mut self, within: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, std::fs::read_to_string(&self.log).unwrap_or_default());
            }
            assert!(start.elapsed() < within, "xfreerdp still running after {within:?}: the box left it hanging");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ends a client that has shown what the test needed, now rather than at its `secs`: `timeout`
    /// takes SIGALRM as its own deadline, so a client still up exits [`STAYED_UP`] as if its time
    /// had run out (one the box already ended keeps its own status).
    pub(crate) fn end_now(self) -> (ExitStatus, String) {
        let _ = Command::new("kill").arg("-ALRM").arg(self.child.id().to_string()).status();
        self.wait(Duration::from_secs(30))
    }
}

/// An NLA target: `freerdp-shadow-cli` sharing its own Xvfb, users from a SAM file. Its TLS
/// certificate is made on first start under its HOME, so a new HOME means a new certificate.
pub(crate) struct Shadow {
    pub(crate) screen: Xvfb,
    home: tempfile::TempDir,
    pub(crate) port: u16,
    child: Option<Child>,
}

pub(crate) const SHADOW_USER: &str = "shadowuser";
pub(crate) const SHADOW_PASS: &str = "shadow-pw-1";

impl Shadow {
    pub(crate) fn start() -> Self {
        let mut s = Self { screen: Xvfb::start(), home: tempfile::tempdir().unwrap(), port: free_port(), child: None };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let sam = self.home.path().join("sam");
        let out =
            Command::new("winpr-hash").args(["-u", SHADOW_USER, "-p", SHADOW_PASS, "-f", "sam"]).output().unwrap();
        assert!(out.status.success(), "winpr-hash failed");
        std::fs::write(&sam, &out.stdout).unwrap();
        let child = Command::new("freerdp-shadow-cli")
            .arg(format!("/port:{}", self.port))
            .args(["/bind-address:127.0.0.1", "/sec:nla", "+auth"])
            .arg(format!("/sam-file:{}", sam.display()))
            .env("DISPLAY", &self.screen.display)
            .env("HOME", self.home.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.home.path().join("shadow.log")).unwrap())
            .spawn()
            .expect("starting freerdp-shadow-cli (is freerdp2-shadow-x11 installed?)");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || start.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(self.home.path().join("shadow.log")).unwrap_or_default();
                panic!("freerdp-shadow-cli did not listen on port {} ({exited:?}): {log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }

    /// Same port, new HOME: the target now shows another certificate.
    fn restart_with_new_certificate(&mut self) {
        self.stop();
        self.home = tempfile::tempdir().unwrap();
        self.spawn();
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A box with user alice, `bob` (no grants), and target `nla01` on a shadow server granted to
/// alice, serving RDP.
pub(crate) fn box_with_shadow(shadow: &Shadow) -> RdpBox {
    let b = Box::new();
    add_shadow_target(&b, shadow, &[]);
    b.ok(&["grant", "alice", "nla01"], None);
    b.ok(&["user", "add", "bob", "--password-stdin"], Some("bob-passwd\n"));
    RdpBox::serve(b)
}

/// Adds target `nla01` (the shadow server, its SAM user's credential) with `extra` options.
pub(crate) fn add_shadow_target(b: &Box, shadow: &Shadow, extra: &[&str]) {
    let address = format!("127.0.0.1:{}", shadow.port);
    let mut args = vec!["target", "add", "nla01", "--rdp", &address, "--login", SHADOW_USER, "--password-stdin"];
    args.extend_from_slice(extra);
    b.ok(&args, Some(&format!("{SHADOW_PASS}\n")));
}

/// Snapshots the client's screen until `colors` have all been the dominant colour (each over
/// 90% of the screen), or fails after `secs`. Between snapshots `tick` may change the target.
pub(crate) fn screen_shows(client: &Xvfb, colors: &[(u8, u8, u8)], secs: u64, mut tick: impl FnMut(usize)) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut n = 0;
    while !colors.iter().all(|c| seen.contains(c)) {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "the client's screen showed {seen:?}, not all of {colors:?}, within {secs}s"
        );
        tick(n);
        n += 1;
        std::thread::sleep(Duration::from_millis(400));
        let (rgb, share) = dominant_color(&client.snapshot());
        if share > 0.9 && !seen.contains(&rgb) {
            seen.push(rgb);
        }
    }
}

pub(crate) fn audit_of<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn nla_target_session_through_the_box() {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 12, &[]);
    // Screen updates flow through the box: the target's colour changes and the client follows.
    screen_shows(&screen, &[RED, BLUE], 10, |n| shadow.screen.set_color(if n % 6 < 3 { "red" } else { "blue" }));
    let (st, log) = client.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(STAYED_UP), "the session did not stay up: {log}\nbox: {}", rb.b.log());

    let sessions = crate::harness::eventually(10, "the session ended in the index", || {
        let s = rb.b.sessions();
        s.iter().any(|r| !r["ended_at"].is_null()).then_some(s)
    });
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let s = &sessions[0];
    assert_eq!(
        (s["user"].as_str(), s["target"].as_str(), s["protocol"].as_str()),
        (Some("alice"), Some("nla01"), Some("rdp"))
    );
    // A client killed with bytes in flight resets the connection; either way the client left.
    assert!(s["end_reason"].as_str().unwrap().starts_with("client disconnected"), "{s}");
    let events = rb.b.audit();
    assert_eq!(audit_of(&events, "certificate_pinned").len(), 1, "{events:?}");
    let started = audit_of(&events, "rdp_session_started");
    assert_eq!(started.len(), 1);
    assert!(started[0]["detail"]["target_protocol"].as_str().unwrap().contains("HYBRID"), "{started:?}");
    // The default grant: clipboard on, drives (rdpdr) off.
    let channels: Vec<_> =
        audit_of(&events, "rdp_channels").into_iter().filter(|c| c["detail"]["kind"] == "static").collect();
    assert_eq!(channels.len(), 1, "{events:?}");
    let blocked = channels[0]["detail"]["blocked"].as_array().unwrap();
    let allowed = channels[0]["detail"]["allowed"].as_array().unwrap();
    assert!(blocked.iter().any(|c| c == "rdpdr"), "{channels:?}");
    assert!(allowed.iter().any(|c| c == "cliprdr"), "{channels:?}");
    // The box user's password never reaches the box's log or the audit log, in any encoding.
    let (log, audit) = (rb.b.log(), events.iter().map(|e| e.to_string()).collect::<String>());
    for secret in ["alice-pw", SHADOW_PASS] {
        assert!(!holds_secret(&log, secret) && !holds_secret(&audit, secret), "{secret:?} was written down");
    }
}

/// Whether `text` holds `secret` as RDP carries it or a log could show it: ASCII, UTF-16LE (a
/// Unicode Client Info, NTLM), or either as hex. A search for the ASCII bytes alone never finds
/// a password a Unicode PDU carries.
pub(crate) fn holds_secret(text: &str, secret: &str) -> bool {
    let utf16: Vec<u8> = secret.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let lower = text.to_lowercase();
    text.contains(secret)
        || text.as_bytes().windows(utf16.len()).any(|w| w == utf16.as_slice())
        || lower.contains(&hex(secret.as_bytes()))
        || lower.contains(&hex(&utf16))
}

/// The secret search can fail: it finds a password planted in each encoding.
#[test]
fn rdp_secret_search_finds_every_encoding() {
    // UTF-16LE of an ASCII password: each byte followed by a NUL.
    let utf16: String = "alice-pw".chars().flat_map(|c| [c, '\0']).collect();
    assert!(!format!("x{utf16}y").contains("alice-pw"), "an ascii search misses it");
    for planted in [
        "x alice-pw y".to_owned(),
        format!("x{utf16}y"),
        "frame=00616c6963652d70770a".to_owned(),
        "frame=61006C00690063006500 2D00700077000000".replace(' ', ""),
    ] {
        assert!(holds_secret(&planted, "alice-pw"), "{planted:?}");
        assert!(!holds_secret(&planted, "alice-px"), "{planted:?}");
    }
}

#[test]
fn refusals_reach_the_client_as_rdp_failures() {
    let mut shadow = Shadow::start();
    let rb = box_with_shadow(&shadow);
    let down = free_port();
    rb.b.ok(
        &["target", "add", "down01", "--rdp", &format!("127.0.0.1:{down}"), "--login", "x", "--password-stdin"],
        Some("x\n"),
    );
    rb.b.ok(&["grant", "alice", "down01"], None);
    let screen = Xvfb::start();
    let within = Duration::from_secs(20);
    let attempt = |user: &str, password: &str, extra: &[&str]| {
        let (st, log) = rb.client(&screen, user, password, 25, extra).wait(within);
        assert_ne!(st.code(), Some(STAYED_UP), "{user} got a session: {log}");
        st.code()
    };
    assert_eq!(attempt("alice@nla01", "wrong", &[]), Some(LOGON_FAILURE), "wrong password");
    assert_eq!(attempt("nobody@nla01", "x", &[]), Some(LOGON_FAILURE), "unknown user");
    assert_eq!(attempt("bob@nla01", "bob-passwd", &[]), Some(ACCESS_DENIED), "no grant");
    assert_eq!(attempt("alice@nosuch", "alice-pw", &[]), Some(ACCESS_DENIED), "unknown target");
    assert_eq!(attempt("alice@down01", "alice-pw", &[]), Some(TRANSPORT_FAILED), "target down");
    // A client that will not do NLA is refused at negotiation.
    let no_nla = attempt("alice@nla01", "alice-pw", &["/sec:tls"]);
    assert!(no_nla.is_some_and(|c| c != 0), "a client without NLA was not refused: {no_nla:?}");

    // The first connection pins the target's certificate; another one is refused.
    let (st, log) = rb.client(&screen, "alice@nla01", "alice-pw", 4, &[]).wait(within);
    assert_eq!(st.code(), Some(STAYED_UP), "{log}");
    shadow.restart_with_new_certificate();
    assert_eq!(attempt("alice@nla01", "alice-pw", &[]), Some(ACCESS_DENIED), "changed certificate");

    let events = rb.b.audit();
    let reasons = |kind: &str| -> Vec<String> {
        audit_of(&events, kind).iter().map(|e| e["detail"]["reason"].as_str().unwrap_or("").to_owned()).collect()
    };
    assert_eq!(reasons("login_failed").len(), 2, "{events:?}");
    let denied = reasons("access_denied");
    assert!(denied.iter().any(|r| r == "bob has no grant for target nla01"), "{denied:?}");
    assert!(denied.iter().any(|r| r == "unknown target \"nosuch\""), "{denied:?}");
    let unreachable = reasons("target_unreachable");
    assert!(unreachable.len() == 1 && unreachable[0].contains(&format!("127.0.0.1:{down}")), "{unreachable:?}");
    assert_eq!(reasons("rdp_nla_required").len(), 1, "{events:?}");
    let changed = reasons("certificate_changed");
    assert!(changed.len() == 1 && changed[0].contains("has changed"), "{changed:?}");
    // Only the one good connection became a session.
    assert_eq!(rb.b.sessions().len(), 1);
}

#[test]
fn revoke_console_terminate_and_shutdown_end_the_session() {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let mut rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 40, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    rb.b.ok(&["revoke", "alice", "nla01"], None);
    // The box re-checks grants every few seconds and ends the session itself.
    let (st, log) = client.wait(Duration::from_secs(15));
    assert_ne!(st.code(), Some(STAYED_UP), "the session outlived its grant: {log}");
    let ended = crate::harness::eventually(10, "the session ended", || {
        rb.b.sessions().into_iter().find(|r| !r["ended_at"].is_null())
    });
    let reason = ended["end_reason"].as_str().unwrap();
    assert!(reason.contains("alice has no grant for target nla01"), "{reason}");
    assert!(audit_of(&rb.b.audit(), "session_terminated").len() == 1);

    // An administrator ends an RDP session from the web console.
    rb.b.ok(&["grant", "alice", "nla01"], None);
    rb.b.ok(&["user", "add", "adam", "--password-stdin", "--role", "admin"], Some("adam-passwd\n"));
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 40, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    let mut web = crate::web::Web::new(&rb.b);
    assert_eq!(web.login("adam", "adam-passwd").status, 200);
    let live = crate::harness::eventually(10, "the rdp session is listed as live", || {
        let l = web.get("/api/v1/live").json();
        (l.as_array().unwrap().len() == 1).then_some(l)
    });
    let id = live[0]["id"].as_str().unwrap().to_owned();
    let ended = web.req("POST", &format!("/api/v1/sessions/{id}/terminate"), Some("{}"), &[]);
    assert_eq!(ended.status, 200, "{}", ended.body);
    let (st, log) = client.wait(Duration::from_secs(15));
    assert_ne!(st.code(), Some(STAYED_UP), "the session outlived its termination: {log}");
    let row = crate::harness::eventually(10, "the terminated session ended", || {
        rb.b.sessions().into_iter().find(|r| r["id"] == id.as_str() && !r["ended_at"].is_null())
    });
    assert_eq!(row["end_reason"], "an administrator ended the session from the console");

    let client = rb.client(&screen, "alice@nla01", "alice-pw", 40, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    assert!(rb.stop().success(), "witness serve did not stop cleanly: {}", rb.b.log());
    let (st, log) = client.wait(Duration::from_secs(15));
    assert_ne!(st.code(), Some(STAYED_UP), "the session outlived the box: {log}");
    let sessions = rb.b.sessions();
    assert_eq!(sessions.len(), 3);
    assert!(sessions.iter().any(|s| s["end_reason"] == "the box is shutting down"), "{sessions:?}");
}

#[test]
fn web01_backslash_alice_names_the_target_too() {
    let shadow = Shadow::start();
    shadow.screen.set_color("blue");
    let rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "nla01\\alice", "alice-pw", 8, &["+sec-ext"]);
    screen_shows(&screen, &[BLUE], 6, |_| {});
    let (st, log) = client.wait(Duration::from_secs(15));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}");
    let sessions = rb.b.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0]["user"].as_str(), sessions[0]["target"].as_str()), (Some("alice"), Some("nla01")));
}

#[test]
fn a_targets_own_port_needs_no_target_in_the_login() {
    let shadow = Shadow::start();
    shadow.screen.set_color("blue");
    let b = Box::new();
    let port = free_port();
    add_shadow_target(&b, &shadow, &["--listen-port", &port.to_string()]);
    b.ok(&["grant", "alice", "nla01"], None);
    let other = free_port();
    b.ok(
        &["target", "add", "win02", "--rdp", &format!("127.0.0.1:{other}"), "--login", "x", "--password-stdin"],
        Some("x\n"),
    );
    b.ok(&["grant", "alice", "win02"], None);
    // One target per port.
    let taken = b.cli(&["target", "listen-port", "win02", &port.to_string()], None);
    assert!(!taken.status.success());
    assert!(
        crate::harness::stderr(&taken).contains(&format!("port {port} already leads to target nla01")),
        "{}",
        crate::harness::stderr(&taken)
    );
    let rb = RdpBox::serve(b);
    wait_for_port(port, "nla01's own rdp port");

    // The port names the target: the login is the box user alone.
    let screen = Xvfb::start();
    let client = rb.client_at(port, &screen, "alice", "alice-pw", 8, &[]);
    screen_shows(&screen, &[BLUE], 6, |_| {});
    let (st, log) = client.wait(Duration::from_secs(15));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let sessions = rb.b.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!((sessions[0]["user"].as_str(), sessions[0]["target"].as_str()), (Some("alice"), Some("nla01")));

    // Naming another target there is refused, with the reason in the audit log.
    let (st, log) = rb.client_at(port, &screen, "alice@win02", "alice-pw", 20, &[]).wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(ACCESS_DENIED), "{log}");
    let denied =
        audit_of(&rb.b.audit(), "access_denied").iter().map(|e| e["detail"]["reason"].to_string()).collect::<Vec<_>>();
    assert!(denied.iter().any(|r| r.contains("this port leads to target nla01; the login names win02")), "{denied:?}");

    // Ports follow the index in a running box: the old one closes, a new one opens.
    let moved = free_port();
    rb.b.ok(&["target", "listen-port", "nla01", &moved.to_string()], None);
    assert_eq!(rb.b.ok(&["target", "listen-port", "nla01"], None).trim(), moved.to_string());
    crate::harness::eventually(10, "the old port closed", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err().then_some(())
    });
    wait_for_port(moved, "nla01's new rdp port");
    let client = rb.client_at(moved, &screen, "alice", "alice-pw", 6, &[]);
    let (st, log) = client.wait(Duration::from_secs(15));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}");
    assert_eq!(rb.b.sessions().len(), 2);
    let set = audit_of(&rb.b.audit(), "target_listen_port_set").len();
    assert_eq!(set, 1);
}

/// A TLS-only target: xrdp + xorgxrdp with its own config, certificate and logs in a temp dir.
/// xrdp finds the session manager through the system's `sesman.ini` (port 3350), so a private
/// `xrdp-sesman` runs on that port unless one is already there.
pub(crate) struct Xrdp {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    children: Vec<Child>,
    /// One xrdp target at a time on the machine: they share the session manager (port 3350), the
    /// desktop user and its home. A lock on a file, since nextest runs each test in a process.
    _turn: std::fs::File,
}

pub(crate) const XRDP_USER: &str = "witness-xrdp";
pub(crate) const XRDP_PASS: &str = "xrdp-pw-1";
/// Where the desktop session writes its `DISPLAY` and X authority file, one per line, in its home.
pub(crate) const DISPLAY_FILE: &str = ".witness-display";

impl Xrdp {
    pub(crate) fn start() -> Self {
        let turn = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("witness-e2e-xrdp.lock"))
            .unwrap();
        turn.lock().expect("locking the xrdp turn");
        clear_dead_xrdp_displays();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        if !Command::new("id").arg(XRDP_USER).output().unwrap().status.success() {
            let st = Command::new("useradd").args(["-m", "-s", "/bin/sh", XRDP_USER]).status().unwrap();
            assert!(st.success(), "useradd failed (the tests run as root)");
        }
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(chpasswd.stdin.as_mut().unwrap(), format!("{XRDP_USER}:{XRDP_PASS}\n").as_bytes())
            .unwrap();
        assert!(chpasswd.wait().unwrap().success());
        // The desktop alternates its colour, so a client that keeps showing it sees updates. It
        // says where it runs (display, X authority), for tests that act on the target's screen.
        let home = PathBuf::from(format!("/home/{XRDP_USER}"));
        let xsession = home.join(".xsession");
        let _ = std::fs::remove_file(home.join(DISPLAY_FILE));
        let script = r#"printf '%s\n%s\n' "$DISPLAY" "${XAUTHORITY:-$HOME/.Xauthority}" > "$HOME/FILE.new"
mv "$HOME/FILE.new" "$HOME/FILE"
while :; do xsetroot -solid red; sleep 1; xsetroot -solid blue; sleep 1; done
"#;
        std::fs::write(&xsession, script.replace("FILE", DISPLAY_FILE)).unwrap();
        let st = Command::new("chown").arg(XRDP_USER).arg(&xsession).status().unwrap();
        assert!(st.success());
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=xrdp-test"])
            .arg("-keyout")
            .arg(d.join("key.pem"))
            .arg("-out")
            .arg(d.join("cert.pem"))
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl req failed");
        let port = free_port();
        let xrdp_ini = std::fs::read_to_string("/etc/xrdp/xrdp.ini").expect("/etc/xrdp/xrdp.ini (is xrdp installed?)");
        let xrdp_ini = rewrite_ini(
            &xrdp_ini,
            &[
                ("Globals", "port", format!("tcp://127.0.0.1:{port}")),
                ("Globals", "certificate", d.join("cert.pem").display().to_string()),
                ("Globals", "key_file", d.join("key.pem").display().to_string()),
                ("Globals", "autorun", "Xorg".into()),
                ("Logging", "LogFile", d.join("xrdp.log").display().to_string()),
                ("Logging", "EnableSyslog", "false".into()),
            ],
        );
        std::fs::write(d.join("xrdp.ini"), xrdp_ini).unwrap();
        let sesman_ini = std::fs::read_to_string("/etc/xrdp/sesman.ini").unwrap();
        let sesman_ini = rewrite_ini(
            &sesman_ini,
            &[
                ("Sessions", "KillDisconnected", "true".into()),
                ("Logging", "LogFile", d.join("sesman.log").display().to_string()),
                ("Logging", "EnableSyslog", "false".into()),
            ],
        );
        std::fs::write(d.join("sesman.ini"), sesman_ini).unwrap();
        // Where xrdp and the session's Xorg (running as the user) meet: world-writable and sticky,
        // as the package's tmpfiles.d makes it — a machine that never booted with systemd (CI)
        // has no such directory.
        std::fs::create_dir_all("/run/xrdp/sockdir").unwrap();
        std::fs::set_permissions("/run/xrdp/sockdir", std::os::unix::fs::PermissionsExt::from_mode(0o3777)).unwrap();
        let mut children = Vec::new();
        if std::net::TcpStream::connect(("localhost", 3350)).is_err() {
            children.push(spawn_logged("xrdp-sesman", &["--nodaemon", "--config"], &d.join("sesman.ini"), d));
        }
        children.push(spawn_logged("xrdp", &["--nodaemon", "--config"], &d.join("xrdp.ini"), d));
        wait_for_port(port, "xrdp");
        Self { dir, port, children, _turn: turn }
    }
}

/// Removes what killed xrdp desktops left behind (displays 10–99, the session manager's range:
/// the X lock file and socket, the session's sockets in xrdp's socket directory): the session
/// manager counts such a display as taken, and refuses every login once 50 are. A display whose
/// X server still runs is left alone.
fn clear_dead_xrdp_displays() {
    let sockdir = Path::new("/run/xrdp/sockdir");
    for n in 10..100 {
        let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
        let alive = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if alive {
            continue;
        }
        let _ = std::fs::remove_file(&lock);
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
        for name in ["xrdp_chansrv_socket_", "xrdp_disconnect_display_", "xrdp_display_", "xrdpapi_"] {
            let path = sockdir.join(format!("{name}{n}"));
            let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
        }
    }
}

fn spawn_logged(program: &str, args: &[&str], config: &Path, dir: &Path) -> Child {
    Command::new(program)
        .args(args)
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{program}.out"))).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e} (is xrdp installed?)"))
}

/// Sets `key=value` in `[section]` where the file sets `key` there, keeping every other line.
fn rewrite_ini(text: &str, values: &[(&str, &str, String)]) -> String {
    let mut section = String::new();
    text.lines()
        .map(|line| {
            if let Some(name) = line.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_owned();
            }
            let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|_| !line.starts_with([';', '#']));
            match values.iter().find(|(s, k, _)| *s == section && Some(*k) == key) {
                Some((_, k, v)) => format!("{k}={v}"),
                None => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        for c in &mut self.children {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }
}

/// A box (not serving yet) with target `xrdp01` on `xrdp`.
pub(crate) fn box_with_xrdp(xrdp: &Xrdp) -> Box {
    let b = Box::new();
    b.ok(
        &[
            "target",
            "add",
            "xrdp01",
            "--rdp",
            &format!("127.0.0.1:{}", xrdp.port),
            "--login",
            XRDP_USER,
            "--password-stdin",
        ],
        Some(&format!("{XRDP_PASS}\n")),
    );
    b
}

#[test]
fn tls_only_target_logs_in_with_the_injected_credential() {
    let xrdp = Xrdp::start();
    let b = box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01", "--no-clipboard"], None);
    let rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@xrdp01", "alice-pw", 20, &[]);
    // Only a logged-in desktop shows the session's alternating colours: xrdp's own login screen
    // would be shown had the credential not been injected.
    screen_shows(&screen, &[RED, BLUE], 18, |_| {});
    let (st, log) = client.wait(Duration::from_secs(30));
    let xrdp_log = std::fs::read_to_string(xrdp.dir.path().join("xrdp.log")).unwrap_or_default();
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nxrdp: {xrdp_log}");
    assert!(xrdp_log.contains(&format!("login successful for user {XRDP_USER}")), "{xrdp_log}");
    let events = rb.b.audit();
    let started = audit_of(&events, "rdp_session_started");
    assert!(started.len() == 1 && started[0]["detail"]["target_protocol"].as_str().unwrap().contains("SSL"));
    // This grant strips the clipboard.
    let channels: Vec<_> =
        audit_of(&events, "rdp_channels").into_iter().filter(|c| c["detail"]["kind"] == "static").collect();
    assert!(channels[0]["detail"]["blocked"].as_array().unwrap().iter().any(|c| c == "cliprdr"), "{channels:?}");
    let s = crate::harness::eventually(10, "the session ended", || {
        rb.b.sessions().into_iter().find(|r| !r["ended_at"].is_null())
    });
    assert_eq!((s["user"].as_str(), s["target"].as_str()), (Some("alice"), Some("xrdp01")));
    assert!(s["end_reason"].as_str().unwrap().starts_with("client disconnected"), "{s}");
}
