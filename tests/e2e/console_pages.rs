//! The console's evidence and admin pages: a recording's download is stated (length and SHA-256
//! of exactly the bytes downloaded) and refused while it runs; the box-wide audit log is filtered,
//! paged and chain-checked for auditors and admins only; the box's health (disk, store backlog,
//! encoder, keys) is for admins only and agrees with the CLI. Each is checked over the API with
//! `curl` and in headless Chromium.

use crate::attacks_console::box_with_a_live_session;
use crate::harness::*;
use crate::web::{Web, box_with_a_session, browser};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};

/// `curl -o` of `path` with `w`'s login: the HTTP status and the file.
fn download(w: &Web, path: &str, to: &std::path::Path) -> String {
    let got = Command::new("curl")
        .args(["-sk", "-o"])
        .arg(to)
        .args(["-w", "%{http_code}", "-b"])
        .arg(w.jar.path())
        .arg(format!("{}{path}", w.base))
        .output()
        .unwrap();
    String::from_utf8_lossy(&got.stdout).into_owned()
}

/// The attack: the page showed the encrypted object's size and SHA-256, which no downloaded file
/// ever has. What the console states now is what `sha256sum` prints of the download, to the
/// owner and to auditors alike; no one else learns it.
#[test]
fn a_downloads_size_and_sha256_are_those_of_the_downloaded_bytes() {
    let (_sshd, b, _session) = box_with_a_session("quokkaword");
    let row = b.recordings()[0].clone();
    let rec = row["id"].as_str().unwrap().to_owned();
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let facts = audrey.get(&format!("/api/v1/recordings/{rec}/download"));
    assert_eq!(facts.status, 200, "{}", facts.body);
    let facts = facts.json();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("download.cast");
    assert_eq!(download(&audrey, &format!("/api/v1/recordings/{rec}/content?download=1"), &file), "200");
    assert!(std::fs::read_to_string(&file).unwrap().contains("quokkaword"), "the download is the playable cast");
    assert_eq!(facts["sha256"], sha256_file(&file).as_str(), "the stated SHA-256 is the downloaded file's");
    assert_eq!(facts["bytes"], std::fs::metadata(&file).unwrap().len(), "the stated size is the downloaded file's");
    assert_ne!(facts["sha256"], row["sha256"], "not the encrypted object's hash");
    assert_ne!(facts["bytes"], row["bytes"], "not the encrypted object's size");
    assert!(facts["file_name"].as_str().unwrap().ends_with(&format!("{rec}.cast")), "{facts}");
    // Asked again (the answer is kept), the same.
    assert_eq!(audrey.get(&format!("/api/v1/recordings/{rec}/download")).json(), facts);

    // The owner gets the same facts; another user is told nothing, not even that it exists.
    let mut alice = Web::new(&b);
    assert_eq!(alice.login("alice", "alice-pw").status, 200);
    assert_eq!(alice.get(&format!("/api/v1/recordings/{rec}/download")).json(), facts);
    let mut bob = Web::new(&b);
    assert_eq!(bob.login("bob", "bob-passwd").status, 200);
    assert_eq!(bob.get(&format!("/api/v1/recordings/{rec}/download")).status, 404);
    assert_eq!(Web::new(&b).get(&format!("/api/v1/recordings/{rec}/download")).status, 401);
}

/// The attack: a download's figures were kept in memory only, so every restart read each
/// recording whole again to state them. They are kept in the index for the sealed file they were
/// worked out from: after a restart the same figures come without reading the recording, and
/// they are still those of the downloaded bytes.
#[test]
fn a_downloads_figures_survive_a_restart_without_reading_the_recording_again() {
    let (_sshd, mut b, _session) = box_with_a_session("numbatword");
    let rec = b.recordings()[0]["id"].as_str().unwrap().to_owned();
    let worked_out = |b: &Box| b.log().matches("download figures worked out").count();
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let facts = audrey.get(&format!("/api/v1/recordings/{rec}/download"));
    assert_eq!(facts.status, 200, "{}", facts.body);
    let facts = facts.json();
    assert_eq!(worked_out(&b), 1, "worked out by reading the recording once");

    b.stop();
    b.serve();
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let again = audrey.get(&format!("/api/v1/recordings/{rec}/download"));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json(), facts, "the same figures after a restart");
    assert_eq!(worked_out(&b), 1, "the restarted box did not read the recording again");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("download.cast");
    assert_eq!(download(&audrey, &format!("/api/v1/recordings/{rec}/content?download=1"), &file), "200");
    assert!(std::fs::read_to_string(&file).unwrap().contains("numbatword"));
    assert_eq!(facts["sha256"], sha256_file(&file).as_str(), "the kept SHA-256 is the downloaded file's");
    assert_eq!(facts["bytes"], std::fs::metadata(&file).unwrap().len(), "the kept size is the downloaded file's");
}

/// The attack: an auditor was offered Download on a running recording and got a JSON file
/// saying "this needs the admin role"; an admin got a partial file no hash could describe. Now
/// neither is offered it and the API refuses it, to every role, saying why.
#[test]
fn a_running_recording_is_neither_offered_nor_given_for_download() {
    let (_sshd, b, mut ssh, rec, session) = box_with_a_live_session();
    for (name, password) in [("audrey", "audrey-passwd"), ("adam", "adam-passwd")] {
        let mut w = Web::new(&b);
        assert_eq!(w.login(name, password).status, 200);
        for path in
            [format!("/api/v1/recordings/{rec}/content?download=1"), format!("/api/v1/recordings/{rec}/download")]
        {
            let r = w.get(&path);
            assert_eq!(r.status, 409, "{name} {path}: {}", r.body);
            assert!(r.json()["error"].as_str().unwrap().contains("still running"), "{name}: {}", r.body);
        }
        let detail = w.get(&format!("/api/v1/sessions/{session}")).json();
        assert_eq!(detail["recordings"][0]["status"], "recording", "{detail}");
    }
    assert!(b.audit().iter().all(|e| e["kind"] != "web_recording_downloaded"), "a refused download is not a download");
    // The page says so instead of offering the link.
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts-running");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "session": session,
        "artifacts": artifacts,
    });
    browser("no-download-while-running", &config);
    let _ = ssh.kill();
}

fn ids(page: &Value) -> Vec<i64> {
    page["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// The box-wide audit log for auditors and admins: filtered by kind (exact or `prefix*`), user
/// and time, paged newest first without gaps or repeats, each event with its session, and the
/// hash chain walked. A `user` gets none of it.
#[test]
fn the_audit_log_filters_pages_and_verifies_for_auditors_only() {
    let (_sshd, b, session) = box_with_a_session("dugongword");
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    assert_eq!(audrey.get(&format!("/api/v1/sessions/{session}")).status, 200);
    let mut bob = Web::new(&b);
    assert_eq!(bob.login("bob", "bob-passwd").status, 200);

    // A user: refused, with the reason, whatever the filter asks.
    for path in ["/api/v1/audit", "/api/v1/audit?user=bob", "/api/v1/audit/chain"] {
        let r = bob.get(path);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("auditor role"), "{}", r.body);
        assert_eq!(Web::new(&b).get(path).status, 401);
    }

    let all = audrey.get("/api/v1/audit?limit=1000").json();
    let all_ids = ids(&all);
    let cli: Vec<i64> = b.audit().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(all_ids.len() >= 5, "{all}");
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "newest first: {all_ids:?}");
    assert_eq!(all_ids.iter().copied().collect::<BTreeSet<_>>(), cli.iter().copied().collect::<BTreeSet<_>>());
    assert!(all["next_before"].is_null(), "one page holds them all");

    // Paging: pages of 2 cover every event once.
    let (mut seen, mut before) = (Vec::new(), None::<i64>);
    loop {
        let path = match before {
            Some(b) => format!("/api/v1/audit?limit=2&before={b}"),
            None => "/api/v1/audit?limit=2".to_owned(),
        };
        let page = audrey.get(&path).json();
        let got = ids(&page);
        assert!(got.len() <= 2);
        seen.extend(got);
        match page["next_before"].as_i64() {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, all_ids, "pages in order, without gaps or repeats");

    // Filters.
    let viewed = audrey.get("/api/v1/audit?kind=web_session_viewed").json();
    let viewed = viewed["events"].as_array().unwrap();
    assert_eq!(viewed.len(), 1, "{viewed:?}");
    assert_eq!(viewed[0]["session_id"], session.as_str(), "the event names its session");
    assert_eq!(viewed[0]["actor"], "audrey");
    let web = audrey.get("/api/v1/audit?kind=web_*").json();
    let kinds: BTreeSet<&str> = web["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains("web_login") && kinds.contains("web_session_viewed"), "{kinds:?}");
    assert!(kinds.iter().all(|k| k.starts_with("web_")), "{kinds:?}");
    // `_` in a prefix is a character, not a pattern.
    assert_eq!(audrey.get("/api/v1/audit?kind=we_*").json()["events"], serde_json::json!([]));
    let bobs = audrey.get("/api/v1/audit?user=bob").json();
    let bobs = bobs["events"].as_array().unwrap();
    assert!(!bobs.is_empty() && bobs.iter().all(|e| e["user"] == "bob"), "{bobs:?}");
    let newest = all["events"][0]["at"].as_str().unwrap().to_owned();
    assert_eq!(audrey.get("/api/v1/audit?from=2999-01-01T00:00:00Z").json()["events"], serde_json::json!([]));
    assert_eq!(audrey.get("/api/v1/audit?to=2000-01-01T00:00:00Z").json()["events"], serde_json::json!([]));
    let upto = audrey.get(&format!("/api/v1/audit?limit=1000&to={newest}")).json();
    assert_eq!(ids(&upto).len(), all_ids.len() - 1, "`to` leaves out the events at and after it");

    // The chain, as `witness audit verify` walks it.
    let chain = audrey.get("/api/v1/audit/chain").json();
    assert_eq!(chain["intact"], true, "{chain}");
    assert!(chain["events"].as_u64().unwrap() >= all_ids.len() as u64, "{chain}");
}

/// The health page's facts for admins: disk against its watermark, the store's backlog, the
/// encoder and the keys, the same as `witness sync status` says; no key in it; auditors and
/// users are refused.
#[test]
fn the_health_page_tells_admins_what_the_cli_does() {
    let (_sshd, b, _session) = box_with_a_session("narwhalword");
    let mut adam = Web::new(&b);
    assert_eq!(adam.login("adam", "adam-passwd").status, 200);
    // The finished recording is counted once its seal put it in the upload queue (a job of the
    // archive's, which a loaded machine runs a moment later).
    let h = eventually(60, "the recording is in the upload queue", || {
        let r = adam.get("/api/v1/health");
        assert_eq!(r.status, 200, "{}", r.body);
        let h = r.json();
        (h["store"]["pending"].as_u64()? + h["store"]["uploaded"].as_u64()? == 1).then_some(h)
    });
    let st = b.json(&["sync", "status", "--json"]);
    let used = h["disk"]["used_percent"].as_u64().unwrap();
    assert!(used.abs_diff(st["disk_used_percent"].as_u64().unwrap()) <= 1, "{h} vs {st}");
    assert_eq!(h["disk"]["high_watermark_percent"], st["high_watermark_percent"]);
    assert_eq!(h["disk"]["refusing_sessions"], st["refusing_sessions"]);
    assert!(h["disk"]["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(h["store"]["destination"], st["destination"]);
    assert_eq!(h["store"]["state"], st["state"]);
    assert_eq!(h["store"]["pending"].as_u64().unwrap() + h["store"]["uploaded"].as_u64().unwrap(), 1, "{h}");
    assert!(h["encoder"].is_string(), "{h}");
    let kek = std::fs::read_to_string(b.data().join("keys/kek.active")).unwrap();
    assert_eq!(h["keys"]["active_key"], kek.trim(), "{h}");
    assert_eq!(h["keys"]["sealed_to_tpm"], false);
    assert!(h["keys"]["error"].is_null(), "{h}");
    let key = std::fs::read_to_string(b.data().join(format!("keys/kek-{}", kek.trim()))).unwrap();
    assert!(!h.to_string().contains(key.trim()), "the key itself is never shown");
    assert!(h["recordings_by_status"].as_array().is_some_and(|a| !a.is_empty()), "{h}");
    // The panel as `witness panel --json` shows it (it is republished: compare close together).
    eventually(10, "the panel's state as the CLI shows it", || {
        let api = adam.get("/api/v1/health").json()["panel"].clone();
        let cli = b.json(&["panel", "--json"]);
        (api["state"] == cli["state"] && api["healthy"] == cli["healthy"] && api["state"].is_string()).then_some(())
    });

    for (name, password) in [("audrey", "audrey-passwd"), ("bob", "bob-passwd"), ("alice", "alice-pw")] {
        let mut w = Web::new(&b);
        assert_eq!(w.login(name, password).status, 200);
        let r = w.get("/api/v1/health");
        assert_eq!(r.status, 403, "{name}: {}", r.body);
        assert!(r.body.contains("admin role") && !r.body.contains("used_percent"), "{name}: {}", r.body);
    }
    assert_eq!(Web::new(&b).get("/api/v1/health").status, 401);
}

/// The health page lists the steps of every recording not through its after-life, as `witness
/// sync status` does: a recording whose upload waits on an unreachable store shows the step, its
/// attempts, when it is tried next and why.
#[test]
fn the_health_page_shows_where_each_recording_waits_in_the_pipeline() {
    let sshd = Sshd::start();
    let s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.ok(&["user", "add", "adam", "--password-stdin", "--role", "admin"], Some("adam-passwd\n"));
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo waits-for-the-store").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let mut adam = Web::new(&b);
    assert_eq!(adam.login("adam", "adam-passwd").status, 200);
    let jobs = eventually(30, "the upload waiting on the store, on the health page", || {
        let h = adam.get("/api/v1/health").json();
        let jobs = h["store"]["jobs"].as_array()?.clone();
        jobs.iter()
            .any(|j| j["recording"] == id.as_str() && j["step"] == "upload" && j["attempts"].as_u64() >= Some(1))
            .then_some(jobs)
    });
    let of = |step: &str| jobs.iter().find(|j| j["recording"] == id.as_str() && j["step"] == step).cloned();
    let upload = of("upload").unwrap();
    assert_eq!(upload["state"], "waiting", "{upload}");
    assert!(upload["reason"].as_str().unwrap().contains("store unreachable"), "{upload}");
    assert!(upload["next_attempt_at"].as_str().unwrap().starts_with("20"), "{upload}");
    let seal = of("seal").expect("the recording's other steps are listed too");
    assert_eq!((seal["state"].as_str(), seal["next_attempt_at"].as_null()), (Some("done"), Some(())), "{seal}");
    assert!(of("verify").is_none() && of("prune").is_none(), "nothing after the waiting upload: {jobs:?}");
    // The same rows as the CLI's.
    let rows = |all: &[Value]| -> BTreeSet<(String, String, String)> {
        all.iter()
            .map(|j| {
                let s = |k: &str| j[k].as_str().unwrap_or_default().to_owned();
                (s("recording"), s("step"), s("state"))
            })
            .collect()
    };
    // (Asked twice apart, a step may finish in between: asked again then.)
    eventually(10, "the same rows as `sync status`", || {
        let cli = b.json(&["sync", "status", "--json"]);
        let api = adam.get("/api/v1/health").json();
        let (cli, api) = (rows(cli["jobs"].as_array()?), rows(api["store"]["jobs"].as_array()?));
        (cli == api && cli.iter().any(|r| r.0 == id && r.1 == "upload")).then_some(())
    });
}

/// In Chromium: the detail page states the download's SHA-256 and the file the browser saves has
/// it; the audit page filters and its session links open the session; the health page shows the
/// disk; a `user` is offered neither page and is refused both.
#[test]
fn browser_checks_a_download_reads_the_audit_log_and_the_health_page() {
    let (_sshd, b, session) = box_with_a_session("manateeword");
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts-pages");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "admin": ["adam", "adam-passwd"],
        "user": ["bob", "bob-passwd"],
        "session": session,
        "artifacts": artifacts,
    });
    browser("pages", &config);
    for f in ["pages-download.png", "pages-audit.png", "pages-health.png", "pages-user-refused.png"] {
        assert!(artifacts.join(f).exists(), "screenshot {f} kept");
    }
    let downloaded: Vec<Value> = b.audit().into_iter().filter(|e| e["kind"] == "web_recording_downloaded").collect();
    assert_eq!(downloaded.len(), 1, "the browser's download is audited: {downloaded:?}");
}

/// A box serving with four of alice's sessions, one of each SSH kind: a command (`echo`), a
/// command a spreadsheet would take for a formula, an interactive shell and an sftp upload of
/// `bytes` bytes; users of every role. Returns the box and the uploaded file's size.
fn box_with_every_kind() -> (Sshd, Box, u64) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    for (name, role) in [("audrey", "auditor"), ("bob", "user")] {
        b.ok(&["user", "add", name, "--password-stdin", "--role", role], Some(&format!("{name}-passwd\n")));
    }
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo kinds-hello").output().unwrap().status.success());
    // Fails on the target (no such command); the session and its command are recorded all the same.
    let _ = b.ssh("alice@web01").arg("=HYPERLINK(1) 2>/dev/null; true").output().unwrap();
    let mut shell = b
        .ssh("alice@web01")
        .arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(shell.stdin.as_mut().unwrap(), b"echo in-a-shell; exit\n").unwrap();
    let _ = shell.wait_with_output().unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("payload.bin");
    std::fs::write(&src, vec![7u8; 123_456]).unwrap();
    let remote = tempfile::tempdir().unwrap();
    let batch = work.path().join("batch");
    std::fs::write(&batch, format!("put {} {}\n", src.display(), remote.path().join("up.bin").display())).unwrap();
    let out = b.sftp_batch("alice@web01", &batch);
    assert!(out.status.success(), "sftp: {}", stderr(&out));
    eventually(30, "four sessions ended", || {
        let s = b.sessions();
        (s.len() == 4 && s.iter().all(|s| !s["ended_at"].is_null())).then_some(())
    });
    eventually(15, "the upload audited", || b.audit().iter().any(|e| e["kind"] == "sftp").then_some(()));
    (sshd, b, 123_456)
}

fn listed(w: &Web, query: &str) -> Vec<Value> {
    let r = w.get(&format!("/api/v1/sessions{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

/// The attack on the old history: an sftp upload listed as `completed, 0 B` with nothing to say
/// it moved a file. Now each session says what it was (kind, commands, files and bytes), the
/// list filters by kind, and the CSV export is the filtered list, with a formula-like command
/// made inert and a `user` getting only their own rows.
#[test]
fn history_says_what_each_session_was_filters_by_kind_and_exports_csv() {
    let (_sshd, b, sent) = box_with_every_kind();
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let all = listed(&audrey, "");
    assert_eq!(all.len(), 4);
    let transfer = listed(&audrey, "?kind=transfer");
    assert_eq!(transfer.len(), 1, "{transfer:?}");
    assert_eq!(transfer[0]["kinds"], serde_json::json!(["transfer"]));
    assert_eq!(transfer[0]["transfers"], 1);
    assert_eq!(transfer[0]["transfer_bytes"], sent, "the bytes the upload moved");
    let shell = listed(&audrey, "?kind=shell");
    assert_eq!(shell.len(), 1, "{shell:?}");
    assert_eq!(shell[0]["kinds"], serde_json::json!(["shell"]));
    let exec = listed(&audrey, "?kind=exec");
    assert_eq!(exec.len(), 2, "{exec:?}");
    let commands: BTreeSet<String> = exec
        .iter()
        .flat_map(|s| s["commands"].as_array().unwrap().clone())
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert!(
        commands.contains("echo kinds-hello") && commands.iter().any(|c| c.starts_with("=HYPERLINK")),
        "{commands:?}"
    );
    assert!(listed(&audrey, "?kind=rdp").is_empty());
    assert!(listed(&audrey, "?kind=nonsense").is_empty());

    // The CSV is the filtered list, newest first, times in UTC.
    let csv = audrey.get("/api/v1/history.csv?kind=exec");
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.headers.to_lowercase().contains("content-type: text/csv"), "{}", csv.headers);
    assert!(csv.headers.to_lowercase().contains("attachment"), "{}", csv.headers);
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("session_id,started_at_utc,"), "{}", lines[0]);
    assert_eq!(lines.len(), 3, "a header and the two exec sessions: {}", csv.body);
    let mut want: Vec<&str> = exec.iter().map(|s| s["id"].as_str().unwrap()).collect();
    want.reverse();
    let got: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(got, want, "the rows are the filtered list, newest first");
    // The formula-like command is inert text in a spreadsheet; no cell starts a formula.
    assert!(csv.body.contains(",'=HYPERLINK(1) 2>/dev/null; true,"), "{}", csv.body);
    for line in &lines[1..] {
        assert!(!line.split(',').any(|c| c.starts_with('=') || c.starts_with("\"=")), "{line}");
    }
    let whole = audrey.get("/api/v1/history.csv").body;
    assert!(whole.contains(",transfer,"), "{whole}");
    assert!(whole.contains(&format!(",1,{sent},")), "the transfer's files and bytes: {whole}");

    // A user: only their own; none of alice's.
    let mut bob = Web::new(&b);
    assert_eq!(bob.login("bob", "bob-passwd").status, 200);
    let theirs = bob.get("/api/v1/history.csv?user=alice");
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.body.split("\r\n").filter(|l| !l.is_empty()).count(), 1, "{}", theirs.body);
    assert_eq!(Web::new(&b).get("/api/v1/history.csv").status, 401);
    let exported: Vec<Value> = b.audit().into_iter().filter(|e| e["kind"] == "web_history_exported").collect();
    assert_eq!(exported.len(), 3, "{exported:?}");
    assert_eq!(exported[0]["user"], "audrey");
    assert_eq!(exported[0]["detail"]["rows"], 2);
}

/// In Chromium in another time zone: the history's times are in the viewer's zone (stated, UTC
/// on hover), the kind filter shows only transfers, and the CSV the page exports has the rows
/// the page shows.
#[test]
fn browser_history_in_the_viewers_time_zone_filters_by_kind_and_exports() {
    let (_sshd, b, _sent) = box_with_every_kind();
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts-history");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "zone": "Asia/Kolkata",
        "artifacts": artifacts,
    });
    browser("history", &config);
    assert!(artifacts.join("history-kinds.png").exists());
}

/// The history marks a session under a legal hold for auditors (list, live list, CSV); the
/// `user` whose session it is learns it from none of them (a case may be being built against
/// them): the attack is alice reading her own history, JSON and CSV, after the hold is set.
#[test]
fn the_history_marks_holds_for_auditors_and_never_for_the_held_user() {
    let (_sshd, b, session) = box_with_a_session("caracalword");
    b.ok(&["hold", "set", &session, "--reason", "case okapi-hold"], None);
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let list = listed(&audrey, "");
    assert_eq!(list[0]["held"], true, "{list:?}");
    let csv = audrey.get("/api/v1/history.csv").body;
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].ends_with(",held") && lines[1].ends_with(",true"), "{csv}");

    let mut alice = Web::new(&b);
    assert_eq!(alice.login("alice", "alice-pw").status, 200);
    let own = alice.get("/api/v1/sessions");
    assert_eq!(own.json().as_array().unwrap().len(), 1);
    assert_eq!(own.json()[0]["held"], false, "{}", own.body);
    let own_csv = alice.get("/api/v1/history.csv").body;
    let lines: Vec<&str> = own_csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{own_csv}");
    assert!(lines[1].ends_with(",false") && !own_csv.contains("okapi-hold"), "{own_csv}");
    let detail = alice.get(&format!("/api/v1/sessions/{session}"));
    assert_eq!(detail.json()["session"]["held"], false, "{}", detail.body);
    // (The reason is words, not digits: a hash or id in the page can hold any four digits.)
    assert!(!detail.body.contains("okapi-hold"), "{}", detail.body);
}
