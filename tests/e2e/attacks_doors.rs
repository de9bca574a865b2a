//! The standing attack suite for the front door: an attacker on the network tries to log in as
//! someone else, to exhaust the box before logging in, or to fill its audit log; each attempt
//! must be refused while a granted user still gets a recorded session.

use crate::harness::*;
use crate::rdp::{Shadow, Xvfb, box_with_shadow};
use crate::web::Web;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// FreeRDP's exit code for a logon failure (`STATUS_LOGON_FAILURE` through CredSSP).
const LOGON_FAILURE: i32 = 134;

fn python(script: &str) -> std::process::Child {
    Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with paramiko")
}

/// Every audit row is bounded, whatever names the attackers sent.
fn audit_rows_are_bounded(b: &Box) {
    for e in b.audit() {
        let user = e["user"].as_str().unwrap_or("");
        assert!(user.chars().count() <= 70, "an unbounded name reached the audit log: {} chars", user.len());
        assert!(e.to_string().len() < 4096, "an audit row of {} bytes", e.to_string().len());
    }
}

#[test]
fn pass_the_hash_for_a_user_without_an_nt_hash_is_refused() {
    let shadow = Shadow::start();
    let rb = box_with_shadow(&shadow);
    let key = format!("{}.pub", rb.b.user_key.display());
    rb.b.ok(&["user", "add", "kim", "--ssh-key", &key], None);
    rb.b.ok(&["grant", "kim", "nla01"], None);
    let screen = Xvfb::start();
    for hash in
        ["00000000000000000000000000000000", "31d6cfe0d16ae931b73c59d7e0c089c0", "ffffffffffffffffffffffffffffffff"]
    {
        let (st, log) =
            rb.client(&screen, "kim@nla01", "x", 20, &[&format!("/pth:{hash}")]).wait(Duration::from_secs(25));
        assert_eq!(st.code(), Some(LOGON_FAILURE), "pass-the-hash {hash} for a key-only user: {log}");
    }
    let failed: Vec<_> = rb.b.audit().into_iter().filter(|e| e["kind"] == "login_failed").collect();
    assert!(failed.len() >= 3, "{failed:#?}");
    assert!(
        failed.iter().all(|e| e["detail"]["reason"].as_str().unwrap_or("").contains("no password usable for RDP")),
        "the audit log says why: {failed:#?}"
    );
    assert!(!rb.b.sessions().iter().any(|s| s["user"] == "kim"), "no session was opened for kim");
}

#[test]
fn a_password_storm_costs_little_memory_and_a_granted_user_still_gets_in() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    // 150 guesses at once, each from its own loopback address and name, so neither the
    // per-source nor the per-name throttle stops them: only the hashing bound does.
    let storm = python(&format!(
        "import paramiko, socket, threading, time\n\
         results = []\n\
         def guess(i):\n\
         \x20   try:\n\
         \x20       s = socket.socket(); s.settimeout(60)\n\
         \x20       s.bind(('127.0.{{}}.{{}}'.format(1 + i // 200, 2 + i % 200), 0)); s.connect(('127.0.0.1', {port}))\n\
         \x20       t = paramiko.Transport(s); t.start_client(timeout=30)\n\
         \x20       try: t.auth_password('guess{{}}'.format(i), 'wrong-password')\n\
         \x20       except paramiko.AuthenticationException: results.append('refused')\n\
         \x20       else: results.append('ACCEPTED')\n\
         \x20       t.close()\n\
         \x20   except Exception as e: results.append('error ' + type(e).__name__)\n\
         threads = [threading.Thread(target=guess, args=(i,)) for i in range(150)]\n\
         [t.start() for t in threads]; [t.join() for t in threads]\n\
         print(len(results), results.count('refused'), results.count('ACCEPTED'))\n",
        port = b.port
    ));
    std::thread::sleep(Duration::from_millis(1500));
    let start = Instant::now();
    let out = b.ssh("alice@web01").arg("echo storm-$((6*7))-ok").stdin(Stdio::null()).output().unwrap();
    let took = start.elapsed();
    assert!(stdout(&out).contains("storm-42-ok"), "the granted user got no session: {}", stderr(&out));
    assert!(took < Duration::from_secs(10), "the granted user waited {took:?}");
    let storm = storm.wait_with_output().unwrap();
    let said = stdout(&storm);
    let counts: Vec<u64> = said.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(counts.len(), 3, "storm output: {said} {}", stderr(&storm));
    assert_eq!(counts[2], 0, "no guess may succeed");
    assert!(counts[1] >= 140, "the guesses were answered (refused), not dropped: {said}");
    let peak = peak_rss_mib(b.pid());
    assert!(peak < 400, "the box's peak RSS was {peak} MiB during 150 concurrent password checks");
    let rec = finished_recording(&b);
    assert!(b.export(rec["id"].as_str().unwrap()).contains("storm-42-ok"));
    eprintln!("password storm: box peak RSS {peak} MiB, granted user in {took:?}, storm {said}");
}

#[test]
fn silent_connections_are_capped_and_dropped_and_a_granted_user_still_gets_in() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    // 1500 connections that never say a word, from another address than the user's.
    let silent = python(&format!(
        "import socket, time, resource, select\n\
         resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))\n\
         socks = []\n\
         for i in range(1500):\n\
         \x20   s = socket.socket(); s.bind(('127.0.0.2', 0)); s.connect(('127.0.0.1', {port})); socks.append(s)\n\
         print('open', len(socks), flush=True)\n\
         start = time.time(); closed = set(); poller = select.poll()\n\
         by_fd = {{s.fileno(): s for s in socks}}\n\
         for fd in by_fd: poller.register(fd, select.POLLIN | select.POLLHUP)\n\
         while len(closed) < len(socks) and time.time() - start < 60:\n\
         \x20   for fd, ev in poller.poll(1000):\n\
         \x20       try: d = by_fd[fd].recv(4096)\n\
         \x20       except OSError: d = b''\n\
         \x20       if not d: closed.add(fd); poller.unregister(fd)\n\
         print('closed', len(closed), 'after', int(time.time() - start), flush=True)\n",
        port = b.port
    ));
    std::thread::sleep(Duration::from_secs(2));
    let start = Instant::now();
    let out = b.ssh("alice@web01").arg("echo flood-$((6*7))-ok").stdin(Stdio::null()).output().unwrap();
    assert!(stdout(&out).contains("flood-42-ok"), "the granted user got no session: {}", stderr(&out));
    assert!(start.elapsed() < Duration::from_secs(10), "the granted user waited {:?}", start.elapsed());
    let silent = silent.wait_with_output().unwrap();
    let said = stdout(&silent);
    assert!(said.contains("open 1500"), "{said} {}", stderr(&silent));
    let closed = said.split_whitespace().skip_while(|w| *w != "closed").nth(1).and_then(|n| n.parse::<u32>().ok());
    assert_eq!(closed, Some(1500), "every silent connection is dropped within 60 s: {said}");
    assert!(b.log().contains("ssh connection refused: too many"), "the cap says so in the log");
    assert!(b.log().contains("no version line within the login grace time"), "the grace time says so too");
}

#[test]
fn parallel_wrong_console_logins_are_cut_at_five() {
    let mut b = Box::new();
    b.ok(&["user", "add", "adam", "--password-stdin", "--role", "admin"], Some("adam-passwd-long\n"));
    b.serve();
    let port = b.web_port;
    let threads: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                let out = Command::new("curl")
                    .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60"])
                    .args(["-H", "content-type: application/json"])
                    .args(["--data-binary", r#"{"user":"adam","password":"wrong"}"#])
                    .arg(format!("https://127.0.0.1:{port}/api/v1/login"))
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
        })
        .collect();
    let codes: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let checked = codes.iter().filter(|c| *c == "401").count();
    let limited = codes.iter().filter(|c| *c == "429").count();
    assert!(checked <= 5, "{checked} wrong passwords were checked: {codes:?}");
    assert_eq!(checked + limited, 40, "{codes:?}");
    let kinds = b.audit_kinds();
    assert!(kinds.iter().any(|k| k == "login_locked_out"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "login_throttled"), "{kinds:?}");
    // The attack locks out that source and name, not the admin: from elsewhere, adam gets in.
    assert_eq!(Web::from(&b, "127.0.0.5").login("adam", "adam-passwd-long").status, 200);
    b.kill9();
}

#[test]
fn huge_user_names_are_refused_on_every_door_and_the_audit_log_stays_bounded() {
    let shadow = Shadow::start();
    let rb = box_with_shadow(&shadow);
    let b = &rb.b;
    // SSH: a 2 MB name from a scripted client.
    let ssh = python(&format!(
        "import paramiko, socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         t = paramiko.Transport(s); t.start_client(timeout=20)\n\
         try: t.auth_password('a' * 2000000 + '@web01', 'x'); print('ACCEPTED')\n\
         except Exception as e: print('refused', type(e).__name__)\n",
        port = b.port
    ))
    .wait_with_output()
    .unwrap();
    assert!(stdout(&ssh).contains("refused"), "{} {}", stdout(&ssh), stderr(&ssh));
    // SSH with a real user and a 250 KB target part full of terminal escapes (red team H1).
    let escapes = python(&format!(
        "import paramiko, socket\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         t = paramiko.Transport(s); t.start_client(timeout=20)\n\
         k = paramiko.Ed25519Key.from_private_key_file('{key}')\n\
         try: t.auth_publickey('alice@' + '\\x1b]0;pwned\\x07\\x1b[2J' * 20000, k); print('done')\n\
         except Exception as e: print('refused', type(e).__name__)\n",
        port = b.port,
        key = b.user_key.display(),
    ))
    .wait_with_output()
    .unwrap();
    assert!(escapes.status.success(), "{}", stderr(&escapes));
    let listing = b.ok(&["audit"], None);
    assert!(!listing.contains('\u{1b}'), "no raw escape reaches the admin's terminal");
    // The console: a 2 MB name in JSON.
    let body = format!(r#"{{"user":"{}","password":"x"}}"#, "a".repeat(2_000_000));
    let file = b.dir.path().join("huge-login.json");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "-H", "Expect:"])
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .arg(format!("https://127.0.0.1:{}/api/v1/login", b.web_port))
        .output()
        .unwrap();
    let code = stdout(&out);
    // 413 (the body is over the API's limit), or the connection cut while curl still sends it.
    assert!(code != "200", "the console refused it: {code}");
    // RDP: as long a name as a command line can carry.
    let screen = Xvfb::start();
    let (st, log) = rb.client(&screen, &"a".repeat(120_000), "x", 20, &[]).wait(Duration::from_secs(25));
    assert_ne!(st.code(), Some(124), "no session for a huge name: {log}");
    audit_rows_are_bounded(b);
}

#[test]
fn a_one_time_code_works_once() {
    let mut b = Box::new();
    b.ok(&["user", "add", "tess", "--password-stdin", "--role", "auditor"], Some("tess-passwd-long\n"));
    let enrolled = b.ok(&["user", "totp", "tess"], None);
    let secret = enrolled.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().trim().to_owned();
    b.serve();
    let code = String::from_utf8(Command::new("oathtool").args(["--totp", "-b", &secret]).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    let body = serde_json::json!({ "user": "tess", "password": "tess-passwd-long", "totp": code }).to_string();
    let first = Web::from(&b, "127.0.0.3").req("POST", "/api/v1/login", Some(&body), &[]);
    assert_eq!(first.status, 200, "{}", first.body);
    let replay = Web::from(&b, "127.0.0.4").req("POST", "/api/v1/login", Some(&body), &[]);
    assert_eq!(replay.status, 401, "a code is used once: {}", replay.body);
}

#[test]
fn taking_access_away_ends_live_sessions_within_seconds() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let key = format!("{}.pub", b.user_key.display());
    let live = |b: &Box| {
        let child = b
            .ssh("alice@web01")
            .args(["-tt"])
            .arg("echo up-$((6*7)); sleep 120")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        eventually(20, "the session is live", || {
            b.sessions().iter().any(|s| s["user"] == "alice" && s["ended_at"].is_null()).then_some(())
        });
        child
    };
    let ended_within = |mut child: std::process::Child, what: &str| {
        let start = Instant::now();
        eventually(15, &format!("the session ends after {what}"), || child.try_wait().unwrap());
        let out = child.wait_with_output().unwrap();
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("session ended"), "the user is told why after {what}: {said}");
        start.elapsed()
    };
    let s = live(&b);
    b.ok(&["user", "key", "remove", "alice", &key], None);
    let t1 = ended_within(s, "user key remove");
    b.ok(&["user", "key", "add", "alice", &key], None);
    let s = live(&b);
    b.ok(&["user", "role", "alice", "auditor"], None);
    let t2 = ended_within(s, "user role");
    let s = live(&b);
    let weak = b.cli(&["user", "passwd", "alice", "--password-stdin"], Some("x\n"));
    assert!(!weak.status.success() && stderr(&weak).contains("at least 8"), "{}", stderr(&weak));
    b.ok(&["user", "passwd", "alice", "--password-stdin"], Some("a much better one\n"));
    let t3 = ended_within(s, "user passwd");
    let s = live(&b);
    b.ok(&["user", "remove", "alice"], None);
    // Removed and added again at once (red team C1): the old session must not live on. A name
    // with history is only given again on purpose (red team C3: the new person would see it).
    let again = b.cli(&["user", "add", "alice", "--ssh-key", &key], None);
    assert!(!again.status.success() && stderr(&again).contains("--reuse-name"), "{}", stderr(&again));
    b.ok(&["user", "add", "alice", "--ssh-key", &key, "--reuse-name"], None);
    b.ok(&["grant", "alice", "web01"], None);
    let t4 = ended_within(s, "user remove");
    b.ok(&["user", "remove", "alice"], None);
    for t in [t1, t2, t3, t4] {
        assert!(t < Duration::from_secs(10), "ended after {t:?}");
    }
    let ended: Vec<_> = b
        .audit()
        .into_iter()
        .filter(|e| e["kind"] == "session_terminated" && e["detail"]["reason"] == "access_changed")
        .collect();
    assert_eq!(ended.len(), 4, "{ended:#?}");
    // Removed means gone: the key no longer opens anything, and the name can be used again.
    let out = b.ssh("alice@web01").arg("true").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    b.ok(&["user", "add", "alice", "--ssh-key", &key, "--reuse-name"], None);
    let kinds = b.audit_kinds();
    for k in ["user_key_removed", "user_key_added", "user_role_changed", "user_password_changed", "user_removed"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

#[test]
fn no_secret_reaches_the_log_at_any_level() {
    let shadow = Shadow::start();
    let b = Box::new();
    crate::rdp::add_shadow_target(&b, &shadow, &[]);
    b.ok(&["grant", "alice", "nla01"], None);
    let sshd = Sshd::start();
    // An SSH target with a vaulted password too (the sshd takes keys only; the attempt is enough).
    b.ok(
        &["target", "add", "pw01", "--ssh", &format!("127.0.0.1:{}", sshd.port), "--login", "root", "--password-stdin"],
        Some("vaulted-ssh-secret-77\n"),
    );
    b.ok(&["grant", "alice", "pw01"], None);
    let rb = crate::rdp::RdpBox::serve_logging(b, "trace");
    let screen = Xvfb::start();
    let (st, log) = rb.client(&screen, "alice@nla01", "alice-pw", 6, &[]).wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(124), "the RDP session stayed up: {log}");
    let _ = rb.b.ssh_password("alice@pw01", "alice-pw").arg("true").output().unwrap();
    let _ = rb.b.ssh_password("alice@pw01", "a-wrong-password").arg("true").output().unwrap();
    let logged = rb.b.log();
    assert!(logged.len() > 10_000, "trace logging was on: {} bytes", logged.len());
    let lower = logged.to_lowercase();
    for secret in [crate::rdp::SHADOW_PASS, "alice-pw", "vaulted-ssh-secret-77", "a-wrong-password"] {
        assert!(!logged.contains(secret), "{secret:?} is in the box's trace log");
        // As the credential code holds it too: UTF-16LE and UTF-8 bytes, in hex.
        let utf16: String = secret.encode_utf16().flat_map(u16::to_le_bytes).map(|b| format!("{b:02x}")).collect();
        let utf8: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!lower.contains(&utf16), "{secret:?} is in the box's trace log as UTF-16LE hex");
        assert!(!lower.contains(&utf8), "{secret:?} is in the box's trace log as hex");
        let decimal: String = secret.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(", ");
        assert!(!logged.contains(&decimal), "{secret:?} is in the box's trace log as a byte list");
    }
}

#[test]
fn ssh_asks_a_totp_user_for_the_code_and_takes_each_code_once() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    let enrolled = b.ok(&["user", "totp", "alice"], None);
    let secret = enrolled.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().trim().to_owned();
    b.serve();
    let code = || {
        String::from_utf8(Command::new("oathtool").args(["--totp", "-b", &secret]).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned()
    };
    // The key alone is not enough.
    let out = b.ssh("alice@web01").arg("true").stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success(), "a TOTP user got in with the key alone");
    // The stock client, in a terminal: key, then it prompts for the code.
    let tmux = format!("witness-totp-{}", b.port);
    let ssh_cmd = format!(
        "ssh -o BatchMode=no -o KbdInteractiveAuthentication=yes {} -i {} -p {} -t alice@web01@127.0.0.1 'echo totp-$((6*7))-ok; sleep 8'",
        client_options().join(" "),
        b.user_key.display(),
        b.port
    );
    assert!(
        Command::new("tmux")
            .args(["new-session", "-d", "-s", &tmux, "-x", "120", "-y", "30", &ssh_cmd])
            .status()
            .unwrap()
            .success()
    );
    let pane = || stdout(&Command::new("tmux").args(["capture-pane", "-p", "-t", &tmux]).output().unwrap());
    eventually(15, "the client prompts for the one-time code", || pane().contains("One-time code").then_some(()));
    let first = code();
    Command::new("tmux").args(["send-keys", "-t", &tmux, &first, "Enter"]).status().unwrap();
    eventually(15, "the session runs after the code", || pane().contains("totp-42-ok").then_some(()));
    // The same code again (a replay within its 30 s window): refused. The scripted client can
    // log in with a fresh code (tom, the same key, a code of his own), so the refusal is real.
    let replay = paramiko_kbd(&b, "alice@web01", &first);
    assert!(replay.contains("REFUSED"), "a used code works once: {replay}");
    let key = format!("{}.pub", b.user_key.display());
    b.ok(&["user", "add", "tom", "--ssh-key", &key], None);
    b.ok(&["grant", "tom", "web01"], None);
    let tom = b.ok(&["user", "totp", "tom"], None);
    let tom_secret = tom.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().trim().to_owned();
    let tom_code =
        String::from_utf8(Command::new("oathtool").args(["--totp", "-b", &tom_secret]).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
    let fresh = paramiko_kbd(&b, "tom@web01", &tom_code);
    assert!(fresh.contains("ACCEPTED"), "a fresh code logs in: {fresh}");
    let again = paramiko_kbd(&b, "tom@web01", &tom_code);
    assert!(again.contains("REFUSED"), "and only once: {again}");
    let _ = Command::new("tmux").args(["kill-session", "-t", &tmux]).status();
    let sessions = b.sessions();
    assert_eq!(sessions.len(), 2, "only the sessions with a fresh code: {sessions:#?}");
    let started = b.audit().into_iter().find(|e| e["kind"] == "session_started").unwrap();
    assert_eq!(started["detail"]["method"], "publickey+totp");
}

/// Logs in as `login` with alice's key and `code` for keyboard-interactive, with paramiko.
/// Stock paramiko asks for the ssh-userauth service again before each method, which russh
/// ignores: the script goes straight to the method on the same transport instead.
fn paramiko_kbd(b: &Box, login: &str, code: &str) -> String {
    let out = python(&format!(
        "import paramiko, socket\n\
         from paramiko.auth_handler import AuthHandler\n\
         orig = AuthHandler._request_auth\n\
         def request_auth(self):\n\
         \x20   if getattr(self.transport, '_skip_service', False):\n\
         \x20       m = paramiko.Message(); m.add_string('ssh-userauth'); m.rewind()\n\
         \x20       return self._parse_service_accept(m)\n\
         \x20   return orig(self)\n\
         AuthHandler._request_auth = request_auth\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         t = paramiko.Transport(s); t.start_client(timeout=20)\n\
         k = paramiko.Ed25519Key.from_private_key_file('{key}')\n\
         try:\n\
         \x20   rest = t.auth_publickey('{login}', k)\n\
         \x20   t._skip_service = True\n\
         \x20   t.auth_interactive('{login}', lambda title, instr, prompts: ['{code}' for _ in prompts])\n\
         \x20   print('ACCEPTED')\n\
         except paramiko.AuthenticationException as e: print('REFUSED', e)\n",
        port = b.port,
        key = b.user_key.display(),
    ))
    .wait_with_output()
    .unwrap();
    format!("{}{}", stdout(&out), stderr(&out))
}

#[test]
fn rdp_guesses_are_throttled_and_a_totp_user_needs_an_explicit_allow() {
    let shadow = Shadow::start();
    let rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let within = Duration::from_secs(25);
    // Five wrong passwords lock alice out from this address: the right one is then not checked.
    for _ in 0..5 {
        let (st, log) = rb.client(&screen, "alice@nla01", "wrong-password", 20, &[]).wait(within);
        assert_eq!(st.code(), Some(LOGON_FAILURE), "{log}");
    }
    let (st, log) = rb.client(&screen, "alice@nla01", "alice-pw", 20, &[]).wait(within);
    assert_eq!(st.code(), Some(LOGON_FAILURE), "the right password while locked out: {log}");
    let kinds = rb.b.audit_kinds();
    assert!(kinds.iter().any(|k| k == "login_locked_out"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "login_throttled"), "{kinds:?}");
    // bob has a one-time code: RDP cannot ask for it, so he is refused until an admin allows it.
    rb.b.ok(&["grant", "bob", "nla01"], None);
    rb.b.ok(&["user", "totp", "bob"], None);
    let (st, log) = rb.client(&screen, "bob@nla01", "bob-passwd", 20, &[]).wait(within);
    assert_eq!(st.code(), Some(155), "ACCESS_DENIED for a TOTP user: {log}");
    let denied: Vec<_> = rb.b.audit().into_iter().filter(|e| e["kind"] == "access_denied").collect();
    assert!(
        denied
            .iter()
            .any(|e| e["detail"]["reason"].as_str().unwrap_or("").contains("cannot ask for bob's one-time code")),
        "{denied:#?}"
    );
    rb.b.ok(&["user", "rdp", "bob", "allow"], None);
    let (st, log) = rb.client(&screen, "bob@nla01", "bob-passwd", 5, &[]).wait(within);
    assert_eq!(st.code(), Some(124), "allowed explicitly, bob's session stays up: {log}");
    // A guess without NTLM's MIC fails only at pubKeyAuth: it counts like any other (red team R1).
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("attacks/rdp_nomic_guess.py");
    let before = rb.b.audit().into_iter().filter(|e| e["kind"] == "login_locked_out").count();
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .args([&rb.rdp_port.to_string(), "bob@nla01", "6"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = rb.b.audit().into_iter().filter(|e| e["kind"] == "login_locked_out").count();
    assert!(after > before, "MIC-less guesses lock the name out too: {}", stdout(&out));
    let (st, log) = rb.client(&screen, "bob@nla01", "bob-passwd", 5, &[]).wait(within);
    assert_eq!(st.code(), Some(LOGON_FAILURE), "bob's name is locked from this address after the guesses: {log}");
}

#[test]
fn taking_access_away_ends_a_live_rdp_session_too() {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 40, &[]);
    crate::rdp::screen_shows(&screen, &[crate::rdp::RED], 15, |_| {});
    let start = Instant::now();
    rb.b.ok(&["user", "role", "alice", "auditor"], None);
    let (st, log) = client.wait(Duration::from_secs(20));
    assert_ne!(st.code(), Some(124), "the RDP session outlived the change: {log}");
    assert!(start.elapsed() < Duration::from_secs(12), "ended after {:?}", start.elapsed());
    let row = eventually(10, "the session ended in the index", || {
        rb.b.sessions().into_iter().find(|r| !r["ended_at"].is_null())
    });
    assert!(row["end_reason"].as_str().unwrap().contains("access changed"), "{row}");
}

#[test]
fn a_console_login_ends_when_access_changes_and_slow_bodies_are_cut() {
    let mut b = Box::new();
    b.ok(&["user", "add", "bob", "--password-stdin", "--role", "user"], Some("bob-passwd\n"));
    b.serve();
    // Red team C2: a console login outlived a password change, and a name given to someone else.
    let mut web = Web::new(&b);
    assert_eq!(web.login("bob", "bob-passwd").status, 200);
    assert_eq!(web.get("/api/v1/me").status, 200);
    b.ok(&["user", "passwd", "bob", "--password-stdin"], Some("a new long one\n"));
    assert_eq!(web.get("/api/v1/me").status, 401, "the login made with the old password ends");
    let mut web = Web::new(&b);
    assert_eq!(web.login("bob", "a new long one").status, 200);
    b.ok(&["user", "remove", "bob"], None);
    b.ok(&["user", "add", "bob", "--password-stdin", "--role", "admin"], Some("another person\n"));
    assert_eq!(web.get("/api/v1/store").status, 401, "the old bob's cookie is not the new admin bob");
    // Red team G2: a login whose body never ends is cut, so it cannot hold the connection.
    let slow = python(&format!(
        "import socket, ssl, time\n\
         ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
         s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})))\n\
         s.sendall(b'POST /api/v1/login HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n{{\"user\"')\n\
         start = time.time(); s.settimeout(30)\n\
         reply = s.recv(200)\n\
         print('answer after', int(time.time() - start), reply.split(b'\\r\\n')[0].decode())\n",
        port = b.web_port
    ))
    .wait_with_output()
    .unwrap();
    let said = stdout(&slow);
    assert!(said.contains("408"), "a slow body gets 408: {said} {}", stderr(&slow));
    let after: u64 = said.split_whitespace().nth(2).and_then(|n| n.parse().ok()).unwrap_or(99);
    assert!(after <= 12, "within the body time: {said}");
}
