//! The web console over real HTTPS with `curl` as the client: login, roles, CSRF, the login rate
//! limit, TOTP (codes from `oathtool`), search, playback, live view and terminate; and the pages
//! in headless Chromium driven by Playwright.

use crate::harness::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One browser-like client: its own cookie jar and CSRF token.
pub struct Web {
    pub(crate) base: String,
    pub(crate) jar: tempfile::NamedTempFile,
    pub(crate) csrf: Option<String>,
    /// Source address (a loopback address of its own is another client to the rate limit).
    source: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Web {
    pub fn new(b: &Box) -> Self {
        Self {
            base: format!("https://127.0.0.1:{}", b.web_port),
            jar: tempfile::NamedTempFile::new().unwrap(),
            csrf: None,
            source: None,
        }
    }

    pub fn from(b: &Box, source: &str) -> Self {
        Self { source: Some(source.to_owned()), ..Self::new(b) }
    }

    /// A request; `extra` are raw header lines. The CSRF token is sent when logged in unless a
    /// header line overrides it.
    pub fn req(&self, method: &str, path: &str, body: Option<&str>, extra: &[&str]) -> Reply {
        let headers = tempfile::NamedTempFile::new().unwrap();
        let mut c = Command::new("curl");
        c.args(["-sk", "-X", method, "-b"]).arg(self.jar.path()).arg("-c").arg(self.jar.path());
        c.arg("-D").arg(headers.path()).args(["-w", "\n%{http_code}", "--max-time", "20"]);
        if let Some(source) = &self.source {
            c.args(["--interface", source]);
        }
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data-binary", b]);
        }
        if let Some(t) = &self.csrf
            && !extra.iter().any(|h| h.to_lowercase().starts_with("x-csrf-token"))
        {
            c.args(["-H", &format!("x-csrf-token: {t}")]);
        }
        for h in extra {
            c.args(["-H", h]);
        }
        let out = c.arg(format!("{}{path}", self.base)).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Reply {
            status: code.trim().parse().unwrap_or(0),
            headers: std::fs::read_to_string(headers.path()).unwrap_or_default(),
            body: body.to_owned(),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.req("GET", path, None, &[])
    }

    pub fn login(&mut self, user: &str, password: &str) -> Reply {
        let r = self.req(
            "POST",
            "/api/v1/login",
            Some(&serde_json::json!({ "user": user, "password": password }).to_string()),
            &[],
        );
        if r.status == 200 {
            self.csrf = Some(r.json()["csrf"].as_str().unwrap().to_owned());
        }
        r
    }
}

/// A box serving, with alice's recorded session that printed `word`, and users of every role.
pub(crate) fn box_with_a_session(word: &str) -> (Sshd, Box, String) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    for (name, role) in [("audrey", "auditor"), ("adam", "admin"), ("bob", "user")] {
        b.ok(&["user", "add", name, "--password-stdin", "--role", role], Some(&format!("{name}-passwd\n")));
    }
    b.serve();
    // The word is put together by the shell, so only the output holds it whole (the command line
    // is metadata the index keeps).
    let (head, tail) = word.split_at(word.len() / 2);
    let out = b
        .ssh("alice@web01")
        .arg(format!("echo first line; sleep 0.3; printf 'the %s%s is here\\n' {head} {tail}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = finished_recording(&b);
    let session = rec["session_id"].as_str().unwrap().to_owned();
    (sshd, b, session)
}

#[test]
fn api_needs_login_and_keeps_each_role_to_its_part() {
    let (_sshd, b, session) = box_with_a_session("zebracorn");
    let anon = Web::new(&b);
    assert_eq!(anon.get("/healthz").status, 200, "health needs no login");
    assert_eq!(anon.get("/healthz").body, "ok\n");
    for path in ["/api/v1/sessions", &format!("/api/v1/sessions/{session}"), "/api/v1/live", "/api/v1/store"] {
        assert_eq!(anon.get(path).status, 401, "{path} without a login");
    }

    // A user sees only their own sessions; someone else's is "not found", not "forbidden".
    let mut alice = Web::new(&b);
    assert_eq!(alice.login("alice", "alice-pw").status, 200);
    assert_eq!(alice.get("/api/v1/sessions").json().as_array().unwrap().len(), 1);
    let mut bob = Web::new(&b);
    assert_eq!(bob.login("bob", "bob-passwd").status, 200);
    assert_eq!(bob.get("/api/v1/sessions").json(), serde_json::json!([]));
    assert_eq!(bob.get(&format!("/api/v1/sessions/{session}")).status, 404);

    // An auditor views, plays and downloads, but cannot terminate.
    let mut audrey = Web::new(&b);
    let login = audrey.login("audrey", "audrey-passwd");
    let cookie = login.headers.lines().find(|l| l.to_lowercase().starts_with("set-cookie:")).unwrap().to_owned();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let detail = audrey.get(&format!("/api/v1/sessions/{session}"));
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["session"]["user"], "alice");
    let rec = detail["recordings"][0]["id"].as_str().unwrap().to_owned();
    let steps: Vec<&str> =
        detail["recordings"][0]["timeline"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap()).collect();
    assert_eq!(steps, ["recording", "processing", "completed", "uploaded"]);
    let played = audrey.get(&format!("/api/v1/recordings/{rec}/content?download=1"));
    assert_eq!(played.status, 200);
    assert!(played.body.contains("zebracorn"), "the download is the playable cast: {}", played.body);
    assert!(played.headers.to_lowercase().contains("content-disposition: attachment"));
    let ranged = audrey.req("GET", &format!("/api/v1/recordings/{rec}/content"), None, &["Range: bytes=0-9"]);
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body.len(), 10);
    let refused = audrey.req("POST", &format!("/api/v1/sessions/{session}/terminate"), Some("{}"), &[]);
    assert_eq!(refused.status, 403, "{}", refused.body);

    // Unknown ids and path tricks are 404 alike.
    for path in [
        "/api/v1/sessions/01a20786-0a2a-77e9-9527-0aea372f480f".to_owned(),
        "/api/v1/recordings/..%2F..%2Findex.sqlite/content".to_owned(),
        "/api/v1/recordings/%2e%2e/content".to_owned(),
        "/assets/..%2Findex.sqlite".to_owned(),
        "/assets/app.js.map".to_owned(),
    ] {
        assert_eq!(audrey.get(&path).status, 404, "{path}");
    }

    // CSRF: a state-changing request without the token, or from another origin, is refused.
    let mut adam = Web::new(&b);
    adam.login("adam", "adam-passwd");
    let no_token =
        adam.req("POST", &format!("/api/v1/sessions/{session}/terminate"), Some("{}"), &["x-csrf-token: wrong"]);
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    assert!(no_token.body.contains("CSRF"));
    let foreign = adam.req(
        "POST",
        &format!("/api/v1/sessions/{session}/terminate"),
        Some("{}"),
        &["Origin: https://evil.example"],
    );
    assert_eq!(foreign.status, 403);
    let form_login = anon.req("POST", "/api/v1/login", None, &["content-type: application/x-www-form-urlencoded"]);
    assert_eq!(form_login.status, 415, "a login form posted from elsewhere is refused");
    // With the token, an admin's terminate of an ended session says so.
    assert_eq!(adam.req("POST", &format!("/api/v1/sessions/{session}/terminate"), Some("{}"), &[]).status, 409);

    // Metrics need the box's bearer token: none, a wrong one and a session cookie are refused.
    assert_eq!(anon.get("/metrics").status, 401, "no token yet, no metrics");
    let token = b.ok(&["metrics", "token"], None).trim().to_owned();
    assert_eq!(b.ok(&["metrics", "token"], None).trim(), token, "the token stays until rotated");
    assert_eq!(anon.get("/metrics").status, 401);
    assert_eq!(adam.get("/metrics").status, 401, "a console login is not the metrics token");
    assert_eq!(anon.req("GET", "/metrics", None, &["authorization: Bearer 0000"]).status, 401);
    let metrics = anon.req("GET", "/metrics", None, &[&format!("authorization: Bearer {token}")]).body;
    assert!(metrics.contains("witness_sessions_active 0"), "{metrics}");
    let rotated = b.ok(&["metrics", "token", "--rotate"], None).trim().to_owned();
    assert_ne!(rotated, token);
    assert_eq!(anon.req("GET", "/metrics", None, &[&format!("authorization: Bearer {token}")]).status, 401);
    let metrics = anon.req("GET", "/metrics", None, &[&format!("authorization: Bearer {rotated}")]).body;
    assert!(metrics.contains("witness_recordings{status=\""), "{metrics}");

    let kinds = b.audit_kinds();
    for k in ["web_login", "web_session_viewed", "web_recording_downloaded", "web_terminate_refused"] {
        assert!(kinds.iter().any(|x| x == k), "audit has {k}: {kinds:?}");
    }
}

/// A box serving, with alice's recorded terminal session that printed `zebrafish42` late on a
/// line, a screenful of other output, `disk is full`, and `zebrafish42` again: the session id.
pub(crate) fn box_with_hits() -> (Sshd, Box, String) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    for (name, role) in [("audrey", "auditor"), ("adam", "admin"), ("bob", "user")] {
        b.ok(&["user", "add", name, "--password-stdin", "--role", role], Some(&format!("{name}-passwd\n")));
    }
    b.serve();
    let out = b
        .ssh("alice@web01")
        .args(["-tt"])
        .arg(
            "printf 'waiting '; sleep 1.5; printf '%s%s printed late\\n' zebra fish42; sleep 0.3; seq 1 300; \
             sleep 0.3; printf 'disk is %s\\n' full; sleep 0.3; printf 'again %s%s\\n' zebra fish42; sleep 0.3",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = finished_recording(&b);
    (sshd, b, rec["session_id"].as_str().unwrap().to_owned())
}

/// The output events of a cast: (time, text).
pub(crate) fn output_events(cast: &str) -> Vec<(f64, String)> {
    cast.lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e[1] == "o")
        .map(|e| (e[0].as_f64().unwrap(), e[2].as_str().unwrap().to_owned()))
        .collect()
}

/// Issue 19's attack: a hit pointed at where its line began (`zebrafish42` 2 s before it was
/// printed), and only the first hit of a session was offered. Every match is a hit now, at the
/// output event that printed it, with the matched text to highlight; prefix and phrase search
/// match what they say.
#[test]
fn every_search_hit_is_at_the_event_that_printed_it() {
    let (_sshd, b, session) = box_with_hits();
    let mut w = Web::new(&b);
    assert_eq!(w.login("audrey", "audrey-passwd").status, 200);
    let list = eventually(60, "the recording is searchable", || {
        let list = w.get("/api/v1/sessions?q=zebrafish42").json();
        (list.as_array().unwrap().len() == 1).then_some(list)
    });
    let rec = list[0]["hit"]["recording_id"].as_str().unwrap().to_owned();
    let events = output_events(&w.get(&format!("/api/v1/recordings/{rec}/content")).body);
    let printed: Vec<f64> = events.iter().filter(|(_, d)| d.contains("zebrafish42")).map(|(t, _)| *t).collect();
    let line_start = events.iter().find(|(_, d)| d.contains("waiting")).unwrap().0;
    assert_eq!(printed.len(), 2, "{events:?}");
    assert!(printed[0] - line_start > 1.0, "the word came late on its line");

    let hits = w.get(&format!("/api/v1/sessions/{session}/hits?q=zebrafish42")).json();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2, "every hit in the session: {hits:?}");
    for (hit, at) in hits.iter().zip(&printed) {
        assert!((hit["at"].as_f64().unwrap() - at).abs() < 0.002, "hit {hit} is not the event at {at} s");
        assert_eq!(hit["matched"], "zebrafish42", "{hit}");
        let snippet: Vec<char> = hit["snippet"].as_str().unwrap().chars().collect();
        let [a, z] = [0, 1].map(|i| hit["mark"][i].as_u64().unwrap() as usize);
        assert_eq!(snippet[a..z].iter().collect::<String>(), "zebrafish42", "{hit}");
    }
    assert!((list[0]["hit"]["at"].as_f64().unwrap() - printed[0]).abs() < 0.002, "the list's hit is the first");

    // A prefix finds the same two; a phrase only where its words stand in order.
    let prefix = w.get(&format!("/api/v1/sessions/{session}/hits?q=zebraf*")).json();
    assert_eq!(prefix.as_array().unwrap().len(), 2, "{prefix}");
    assert_eq!(w.get("/api/v1/sessions?q=zebraf*").json().as_array().unwrap().len(), 1);
    assert_eq!(w.get("/api/v1/sessions?q=zeb").json(), serde_json::json!([]), "a word is whole without its *");
    let phrase = w.get("/api/v1/sessions?q=%22disk%20is%20full%22").json();
    assert_eq!(phrase.as_array().unwrap().len(), 1, "{phrase}");
    assert_eq!(phrase[0]["hit"]["matched"], "disk is full", "{phrase}");
    assert_eq!(w.get("/api/v1/sessions?q=%22full%20is%20disk%22").json(), serde_json::json!([]), "words out of order");

    // Only who may see the session may search in it.
    let mut bob = Web::new(&b);
    assert_eq!(bob.login("bob", "bob-passwd").status, 200);
    assert_eq!(bob.get(&format!("/api/v1/sessions/{session}/hits?q=zebrafish42")).status, 404);
}

/// The Chromium walk of issue 19 at a laptop, a large monitor and a phone: search, each hit shown
/// paused at the event that printed it with the word marked in view, next and previous.
#[test]
fn browser_steps_through_every_hit_at_three_sizes() {
    let (_sshd, b, session) = box_with_hits();
    let mut w = Web::new(&b);
    assert_eq!(w.login("audrey", "audrey-passwd").status, 200);
    let list = eventually(60, "the recording is searchable", || {
        let list = w.get("/api/v1/sessions?q=zebrafish42").json();
        (list.as_array().unwrap().len() == 1).then_some(list)
    });
    let rec = list[0]["hit"]["recording_id"].as_str().unwrap().to_owned();
    let events = output_events(&w.get(&format!("/api/v1/recordings/{rec}/content")).body);
    let printed: Vec<f64> = events.iter().filter(|(_, d)| d.contains("zebrafish42")).map(|(t, _)| *t).collect();
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "word": "zebrafish42",
        "printed": printed,
        "viewports": [[1366, 768], [1920, 1080], [390, 844]],
        "artifacts": artifacts,
        "evidence": artifacts.join("evidence.tar"),
    });
    browser("hits", &config);
    // The bundle downloaded in the browser has the SHA-256 the page showed before, and verifies.
    let tar = artifacts.join("evidence.tar");
    let shown = std::fs::read_to_string(artifacts.join("evidence.tar.sha256")).unwrap();
    let sum = stdout(&Command::new("sha256sum").arg(&tar).output().unwrap());
    assert_eq!(sum.split_whitespace().next(), Some(shown.trim()), "sha256sum of the download");
    let out = tempfile::tempdir().unwrap();
    assert!(Command::new("tar").arg("-xf").arg(&tar).current_dir(out.path()).status().unwrap().success());
    let folder = out.path().join(format!("evidence-{session}"));
    let key = b.ok(&["evidence", "key"], None).trim().to_owned();
    let verified = Command::new(witness_bin())
        .args(["--data", "/nonexistent", "verify"])
        .arg(&folder)
        .args(["--key", &key])
        .env_remove("WITNESS_DATA")
        .output()
        .unwrap();
    assert!(verified.status.success(), "witness verify: {}{}", stdout(&verified), stderr(&verified));
    for size in ["1366x768", "1920x1080", "390x844"] {
        for shot in ["search", "hit-1", "hit-2"] {
            let f = format!("hits-{size}-{shot}.png");
            assert!(artifacts.join(&f).exists(), "screenshot {f} kept");
        }
    }
}

/// The session index of issue 19 in Chromium: typed commands, a resize and the marker of input a
/// silent prompt took (the password nowhere), a timeline with a time axis and the playhead, a
/// click to stop there; an upload's SHA-256 equal to `sha256sum` of the file sent.
#[test]
fn browser_shows_a_session_index_and_seeks_from_it() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    let config = b.data().join("witness.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("# record_input = false", "record_input = true")).unwrap();
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    b.serve();
    let tmux = tmux_ssh(&b, "index", "alice@web01");
    let pane = || stdout(&Command::new("tmux").args(["capture-pane", "-p", "-t", &tmux]).output().unwrap());
    let keys =
        |k: &[&str]| assert!(Command::new("tmux").args(["send-keys", "-t", &tmux]).args(k).status().unwrap().success());
    let started = std::time::Instant::now();
    while !pane().contains('#') {
        assert!(started.elapsed() < Duration::from_secs(30), "no shell prompt through the box: {}", pane());
        std::thread::sleep(Duration::from_millis(100));
    }
    keys(&["echo index-one", "Enter"]);
    eventually(10, "the first command ran", || pane().contains("index-one\n").then_some(()));
    let st = Command::new("tmux").args(["resize-window", "-t", &tmux, "-x", "120", "-y", "35"]).status().unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(500));
    keys(&["read -s -p 'Password: ' PW; echo; echo got-${#PW}", "Enter"]);
    eventually(10, "the silent prompt", || pane().contains("Password:").then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    keys(&["-l", "Sup3r-Secret-Pw"]);
    std::thread::sleep(Duration::from_millis(300));
    keys(&["Enter"]);
    eventually(10, "the password was read", || pane().contains("got-15").then_some(()));
    std::thread::sleep(Duration::from_millis(1500));
    keys(&["echo after-the-secret", "Enter"]);
    eventually(10, "the next command ran", || pane().contains("after-the-secret\n").then_some(()));
    keys(&["exit", "Enter"]);
    let rec = finished_recording(&b);
    let _ = Command::new("tmux").args(["kill-session", "-t", &tmux]).status();
    let interactive = rec["session_id"].as_str().unwrap().to_owned();

    let src = b.dir.path().join("upload.bin");
    assert!(sh(&format!("head -c 300000 /dev/urandom > {}", src.display())).status.success());
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path().join("up.bin");
    let out = Command::new("scp")
        .args(client_options())
        .arg("-i")
        .arg(&b.user_key)
        .arg("-P")
        .arg(b.port.to_string())
        .arg(&src)
        .arg(format!("alice@web01@127.0.0.1:{}", remote.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let sha =
        stdout(&Command::new("sha256sum").arg(&src).output().unwrap()).split_whitespace().next().unwrap().to_owned();
    let upload = eventually(20, "the upload is audited", || {
        b.audit().into_iter().find(|e| e["kind"] == "sftp" && e["detail"]["direction"] == "upload")
    });
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "interactive": interactive,
        "command": "echo index-one",
        "next_command": "echo after-the-secret",
        "resize": "120x35",
        "secret": "Sup3r-Secret-Pw",
        "transfer": upload["session_id"],
        "sha256": sha,
        "path": remote.to_str().unwrap(),
        "viewports": [[1366, 768], [1920, 1080], [390, 844]],
        "artifacts": artifacts,
    });
    browser("index", &config);
}

#[test]
fn search_finds_the_moment_a_word_was_printed() {
    let (_sshd, b, session) = box_with_a_session("quokkafish");
    let mut w = Web::new(&b);
    assert_eq!(w.login("audrey", "audrey-passwd").status, 200);
    let hits = eventually(60, "the recording is searchable", || {
        let list = w.get("/api/v1/sessions?q=quokkafish").json();
        (list.as_array().unwrap().len() == 1).then_some(list)
    });
    assert_eq!(hits[0]["id"], session.as_str());
    let hit = &hits[0]["hit"];
    assert!(hit["snippet"].as_str().unwrap().contains("quokkafish"), "{hit}");
    // The word was printed after the first line and a pause: the hit points past the start.
    assert!(hit["at"].as_f64().unwrap() >= 0.2, "{hit}");
    assert_eq!(w.get("/api/v1/sessions?q=notprintedanywhere").json(), serde_json::json!([]));
    assert_eq!(w.get("/api/v1/sessions?q=%22%20OR%20NEAR(").status, 200, "search syntax in the input is just words");
    let by_user = w.get("/api/v1/sessions?user=bob").json();
    assert_eq!(by_user, serde_json::json!([]));
    assert_eq!(w.get("/api/v1/sessions?protocol=ssh&status=uploaded").json().as_array().unwrap().len(), 1);
    assert_eq!(w.get("/api/v1/sessions?from=2999-01-01T00:00:00Z").json(), serde_json::json!([]));
    // Searchable, yet the word is nowhere on the box in clear: the index holds keyed hashes and
    // sealed text, the audit log only that a search was made.
    for path in ["index.sqlite", "index.sqlite-wal"] {
        let bytes = std::fs::read(b.data().join(path)).unwrap_or_default();
        assert!(!bytes.windows(10).any(|x| x == b"quokkafish"), "{path} holds the searched word in clear");
    }
}

#[test]
fn failed_logins_are_rate_limited_and_totp_is_enforced() {
    let mut b = Box::new();
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    b.ok(&["user", "add", "tess", "--password-stdin", "--role", "auditor"], Some("tess-passwd\n"));
    let enrolled = b.ok(&["user", "totp", "tess"], None);
    let secret = enrolled.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().trim().to_owned();
    b.serve();

    let mut w = Web::new(&b);
    for _ in 0..5 {
        assert_eq!(w.login("audrey", "wrong").status, 401);
    }
    let limited = w.login("audrey", "audrey-passwd");
    assert_eq!(limited.status, 429, "the right password is refused while limited: {}", limited.body);
    assert!(limited.headers.to_lowercase().contains("retry-after"));
    assert!(b.audit_kinds().iter().filter(|k| *k == "web_login_failed").count() >= 5);
    // Every throttled attempt is in the audit log, not only the first of the lockout (the old
    // gate wrote one event for nine failures).
    for _ in 0..3 {
        assert_eq!(w.login("audrey", "wrong").status, 429);
    }
    let throttled: Vec<_> = b.audit().into_iter().filter(|e| e["kind"] == "login_throttled").collect();
    let counted: Vec<_> = throttled.iter().map(|e| e["detail"]["attempts"].as_u64()).collect();
    assert_eq!(counted, [Some(1), Some(2), Some(3), Some(4)], "{throttled:?}");
    assert!(throttled.iter().all(|e| e["detail"]["name"] == "audrey"), "{throttled:?}");

    // Another source is not held back for someone else's guessing.
    let mut other = Web::from(&b, "127.0.0.2");
    assert_eq!(other.login("tess", "tess-passwd").status, 401, "tess needs her code, but is not rate limited");

    // TOTP: the password alone is not enough; a code from an independent implementation is.
    let t = Web::from(&b, "127.0.0.3");
    let r = t.req("POST", "/api/v1/login", Some(r#"{"user":"tess","password":"tess-passwd"}"#), &[]);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("one-time code"), "{}", r.body);
    let code =
        String::from_utf8(Command::new("oathtool").args(["--totp", "-b", &secret]).output().unwrap().stdout).unwrap();
    let wrong =
        t.req("POST", "/api/v1/login", Some(r#"{"user":"tess","password":"tess-passwd","totp":"000000"}"#), &[]);
    let code = code.trim();
    if code != "000000" {
        assert_eq!(wrong.status, 401);
    }
    let body = serde_json::json!({ "user": "tess", "password": "tess-passwd", "totp": code }).to_string();
    assert_eq!(t.req("POST", "/api/v1/login", Some(&body), &[]).status, 200);
}

#[test]
fn live_view_streams_a_running_session_and_an_admin_ends_it() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.ok(&["user", "add", "adam", "--password-stdin", "--role", "admin"], Some("adam-passwd\n"));
    b.serve();
    // A session that prints a word, then keeps running.
    let mut ssh = b
        .ssh("alice@web01")
        .args(["-tt"])
        .arg("echo live-marmoset; sleep 120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = Web::new(&b);
    assert_eq!(w.login("adam", "adam-passwd").status, 200);
    let live = eventually(60, "the session is listed as live", || {
        let l = w.get("/api/v1/live").json();
        (l.as_array().unwrap().len() == 1).then_some(l)
    });
    let session = live[0]["id"].as_str().unwrap().to_owned();
    // The live stream carries what the session printed so far (once its recording started: the
    // session is live from login, its exec's recording a moment later).
    eventually(20, "the live stream shows the session's output", || {
        let stream = Command::new("curl")
            .args(["-skN", "--max-time", "3", "-b"])
            .arg(w.jar.path())
            .arg(format!("https://127.0.0.1:{}/api/v1/sessions/{session}/live", b.web_port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&stream.stdout).contains("live-marmoset").then_some(())
    });
    let ended = w.req("POST", &format!("/api/v1/sessions/{session}/terminate"), Some("{}"), &[]);
    assert_eq!(ended.status, 200, "{}", ended.body);
    let status = eventually(45, "the ssh client exits", || ssh.try_wait().unwrap());
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(ssh.stderr.as_mut().unwrap(), &mut err).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(ssh.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(format!("{out}{err}").contains("administrator ended the session"), "the user is told: {out} {err}");
    let row = eventually(30, "the session is ended in the index", || {
        b.sessions().into_iter().find(|s| s["id"] == session.as_str() && !s["ended_at"].is_null())
    });
    assert!(row["end_reason"].as_str().unwrap().contains("administrator"), "{row}");
    let terminated = b.audit().into_iter().find(|e| e["kind"] == "session_terminated").expect("audit event");
    assert_eq!(terminated["detail"]["by"], "adam");
    assert_eq!(w.get("/api/v1/live").json(), serde_json::json!([]));
    std::thread::sleep(Duration::from_millis(100));
}

/// Runs a step of `tests/web/console.mjs` (Playwright in Debian's Chromium).
pub(crate) fn browser(step: &str, config: &Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed in {}: run `cargo xtask setup`",
        dir.display()
    );
    let out = Command::new("node")
        .arg(dir.join("console.mjs"))
        .arg(step)
        .env("WITNESS_WEB_TEST", config.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success() && stdout(&out).contains("\"ok\":true"),
        "browser step {step} failed (screenshots in {}): {}{}",
        config["artifacts"].as_str().unwrap(),
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn browser_finds_plays_watches_live_and_terminates() {
    let (_sshd, b, _session) = box_with_a_session("axolotlword");
    eventually(60, "the recording is searchable", || {
        let mut w = Web::new(&b);
        w.login("audrey", "audrey-passwd");
        let l = w.get("/api/v1/sessions?q=axolotlword").json();
        (l.as_array().unwrap().len() == 1).then_some(())
    });
    let mut ssh = b
        .ssh("alice@web01")
        .args(["-tt"])
        .arg("echo running-pangolin; sleep 120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let live = eventually(60, "the live session is in the index", || {
        b.sessions().into_iter().find(|s| s["ended_at"].is_null()).map(|s| s["id"].as_str().unwrap().to_owned())
    });
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "admin": ["adam", "adam-passwd"],
        "word": "axolotlword",
        "live": live,
        "live_word": "running-pangolin",
        "artifacts": artifacts,
    });
    // Unknown routes answer the console's page (404), the API its JSON.
    let w = Web::new(&b);
    let page = w.get("/no/such/page");
    assert_eq!(page.status, 404);
    assert!(page.body.contains("<title>Witness</title>") && page.headers.contains("text/html"), "{}", page.body);
    let api = w.get("/api/v1/no-such-endpoint");
    assert_eq!(api.status, 404);
    assert!(api.body.contains("\"error\""), "{}", api.body);
    browser("replay", &config);
    assert!(ssh.try_wait().unwrap().is_none(), "the auditor's visit left the session running");
    browser("live", &config);
    let status = eventually(45, "the ssh client exits after terminate", || ssh.try_wait().unwrap());
    assert!(!status.success());
    let ended = eventually(30, "the session is ended in the index", || {
        b.sessions().into_iter().find(|s| s["id"] == live.as_str() && !s["ended_at"].is_null())
    });
    assert!(ended["end_reason"].as_str().unwrap().contains("administrator"), "{ended}");
    for f in ["replay-search.png", "replay-player.png", "live-live-view.png", "live-terminated.png"] {
        assert!(artifacts.join(f).exists(), "screenshot {f} kept");
    }
    let kinds = b.audit_kinds();
    for k in ["web_search", "web_recording_played", "web_live_viewed", "session_terminated"] {
        assert!(kinds.iter().any(|x| x == k), "audit has {k}: {kinds:?}");
    }
}

#[test]
fn a_recording_pruned_from_the_box_plays_through_it_from_the_store() {
    let sshd = Sshd::start();
    let mut s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo pruned-narwhal").output().unwrap().status.success());
    let rec = eventually(30, "uploaded and pruned from the box", || {
        let r = b.recordings().into_iter().next()?;
        (r["status"] == "uploaded" && !b.data().join(r["path"].as_str().unwrap()).exists()).then_some(r)
    });
    let (rec, session) = (rec["id"].as_str().unwrap().to_owned(), rec["session_id"].as_str().unwrap().to_owned());
    let mut w = Web::new(&b);
    assert_eq!(w.login("audrey", "audrey-passwd").status, 200);
    assert_eq!(w.get(&format!("/api/v1/sessions/{session}")).json()["recordings"][0]["on_box"], false);
    let content = w.get(&format!("/api/v1/recordings/{rec}/content"));
    assert_eq!(content.status, 200, "{}", content.body);
    assert!(content.body.contains("pruned-narwhal"));

    // Playback reads with its own credentials when they are set apart: wrong ones say so.
    let set_read = |secret: &str| {
        b.ok(
            &[
                "store",
                "set-read",
                "s3",
                "--endpoint",
                &s3.endpoint(),
                "--bucket",
                S3_BUCKET,
                "--access-key-id",
                S3_ACCESS,
                "--secret-key-stdin",
            ],
            Some(&format!("{secret}\n")),
        )
    };
    set_read("not-the-read-secret");
    let refused = w.get(&format!("/api/v1/recordings/{rec}/content"));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("store"), "{}", refused.body);
    assert!(!refused.body.contains("not-the-read-secret"), "no secret in the message");
    set_read(S3_SECRET);
    assert_eq!(w.get(&format!("/api/v1/recordings/{rec}/content")).status, 200);

    // The store goes away: a clear message, and the box keeps serving.
    drop(std::mem::replace(&mut s3, S3::stopped()));
    let gone = w.get(&format!("/api/v1/recordings/{rec}/content"));
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert!(gone.body.contains("cannot give it now"), "{}", gone.body);
    assert_eq!(w.get("/healthz").status, 200);
}
