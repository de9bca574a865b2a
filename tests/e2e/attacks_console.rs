//! Attacks on the console's promises about watching: every play, download and live view is one
//! audit event attributed to the session and the person, whatever ranges or query strings the
//! requests carry; a live view ends with its viewer's login; a `user` sees no more of their own
//! sessions than their own doing; a termination names the admin who did it.

use crate::harness::*;
use crate::web::{Web, box_with_a_session};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The audit events of `kind` about recording `rec`.
fn events(b: &Box, kind: &str, rec: &str) -> Vec<Value> {
    b.audit().into_iter().filter(|e| e["kind"] == kind && e["detail"]["recording_id"] == rec).collect()
}

/// A viewing event names the person, the recorded session and the console login it came from.
fn assert_attributed(e: &Value, user: &str, session: &str) {
    assert_eq!(e["user"], user, "{e}");
    assert_eq!(e["session_id"], session, "{e}");
    assert!(e["detail"]["web_session"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
}

#[test]
fn a_viewing_is_audited_once_whatever_ranges_it_asks_for() {
    let (_sshd, b, session) = box_with_a_session("wombatword");
    let rec = b.recordings()[0]["id"].as_str().unwrap().to_owned();
    let content = format!("/api/v1/recordings/{rec}/content");
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);

    // The attack: everything but the first byte, which the old code took for "the rest of a
    // video already audited" and left out of the audit log.
    let r = audrey.req("GET", &content, None, &["Range: bytes=1-"]);
    assert_eq!(r.status, 206, "{}", r.body);
    assert!(r.body.contains("wombatword"), "{}", r.body);
    let played = events(&b, "web_recording_played", &rec);
    assert_eq!(played.len(), 1, "a play in ranges is a play: {played:?}");
    assert_attributed(&played[0], "audrey", &session);

    // The rest of the same viewing (a player seeking, a plain fetch) is not another event.
    for range in ["bytes=0-9", "bytes=-5", "bytes=3-", "bytes=2-4"] {
        assert_eq!(audrey.req("GET", &content, None, &[&format!("Range: {range}")]).status, 206, "{range}");
    }
    assert_eq!(audrey.get(&format!("{content}?again=1")).status, 200);
    assert_eq!(events(&b, "web_recording_played", &rec).len(), 1, "one viewing, one event");

    // A download is its own viewing, in ranges or not.
    let d = audrey.req("GET", &format!("{content}?download=1"), None, &["Range: bytes=1-"]);
    assert_eq!(d.status, 206);
    assert_eq!(audrey.get(&format!("{content}?download=1")).status, 200);
    let downloaded = events(&b, "web_recording_downloaded", &rec);
    assert_eq!(downloaded.len(), 1, "{downloaded:?}");
    assert_attributed(&downloaded[0], "audrey", &session);

    // Another login is another viewing, told apart by its console session.
    let mut again = Web::new(&b);
    assert_eq!(again.login("audrey", "audrey-passwd").status, 200);
    assert_eq!(again.req("GET", &content, None, &["Range: bytes=5-"]).status, 206);
    let played = events(&b, "web_recording_played", &rec);
    assert_eq!(played.len(), 2, "{played:?}");
    assert_attributed(&played[1], "audrey", &session);
    assert_ne!(played[0]["detail"]["web_session"], played[1]["detail"]["web_session"]);
}

#[test]
fn a_user_sees_their_own_doing_on_their_session_not_holds_nor_who_watched() {
    let (_sshd, b, session) = box_with_a_session("tapirword");
    let rec = b.recordings()[0]["id"].as_str().unwrap().to_owned();
    let content = format!("/api/v1/recordings/{rec}/content");
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    assert_eq!(audrey.get(&content).status, 200);
    assert_eq!(audrey.get(&format!("{content}?download=1")).status, 200);
    assert_eq!(audrey.get(&format!("/api/v1/sessions/{session}")).status, 200);

    // A `user` looking at their own session sees what they did, not the legal hold (a case
    // being built against them) nor which auditor watched and downloaded it.
    b.ok(&["hold", "set", &session, "--reason", "case 4711 fraud inquiry"], None);
    let seen_by_auditor = audrey.get(&format!("/api/v1/sessions/{session}")).json();
    assert_eq!(seen_by_auditor["hold"]["reason"], "case 4711 fraud inquiry", "{seen_by_auditor}");
    assert!(seen_by_auditor["audit"].to_string().contains("audrey"), "auditors see who watched");
    let mut alice = Web::new(&b);
    assert_eq!(alice.login("alice", "alice-pw").status, 200);
    assert_eq!(alice.get(&format!("{content}?download=1")).status, 200);
    let own = alice.get(&format!("/api/v1/sessions/{session}"));
    assert_eq!(own.status, 200, "{}", own.body);
    for secret in ["4711", "fraud", "audrey", "hold_set", "web_recording_played"] {
        assert!(!own.body.contains(secret), "the user sees {secret:?}: {}", own.body);
    }
    let own = own.json();
    assert!(own.get("hold").is_none_or(Value::is_null), "{own}");
    let audit = own["audit"].as_array().unwrap();
    assert!(
        audit.iter().any(|e| e["kind"] == "web_recording_downloaded"),
        "the user still sees their own doing: {audit:?}"
    );
    assert!(audit.iter().all(|e| e["actor"] == "alice"), "{audit:?}");
}

/// `curl -N` on a session's live stream; its output goes to a file to watch.
fn watch(w: &Web, session: &str) -> (Child, tempfile::NamedTempFile) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new("curl")
        .args(["-skN", "--max-time", "90", "-b"])
        .arg(w.jar.path())
        .arg(format!("{}/api/v1/sessions/{session}/live", w.base))
        .stdout(out.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, out)
}

fn shows(out: &tempfile::NamedTempFile, word: &str) -> bool {
    std::fs::read_to_string(out.path()).unwrap_or_default().contains(word)
}

/// A box serving admins adam and ada and auditor audrey, with alice's SSH session running (it
/// printed `live-capybara`): the ssh client, the recording's id and the session's.
pub(crate) fn box_with_a_live_session() -> (Sshd, Box, Child, String, String) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    for (name, role) in [("adam", "admin"), ("ada", "admin"), ("audrey", "auditor")] {
        b.ok(&["user", "add", name, "--password-stdin", "--role", role], Some(&format!("{name}-passwd\n")));
    }
    b.serve();
    let mut ssh = b
        .ssh("alice@web01")
        .args(["-tt"])
        .arg("echo live-capybara; sleep 120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rec = b.live_recording(&mut ssh);
    let (rec, session) = (rec["id"].as_str().unwrap().to_owned(), rec["session_id"].as_str().unwrap().to_owned());
    (sshd, b, ssh, rec, session)
}

#[test]
fn a_live_view_is_audited_however_it_is_asked_for() {
    let (_sshd, b, _ssh, rec, session) = box_with_a_live_session();
    let mut adam = Web::new(&b);
    assert_eq!(adam.login("adam", "adam-passwd").status, 200);

    // The attack: the query string the page used for its refetches let a whole live view pass
    // unaudited.
    let r = adam.get(&format!("/api/v1/recordings/{rec}/content?again=1"));
    assert_eq!(r.status, 200, "{}", r.body);
    let viewed = events(&b, "web_live_viewed", &rec);
    assert_eq!(viewed.len(), 1, "a live view is audited however it is asked for: {viewed:?}");
    assert_attributed(&viewed[0], "adam", &session);

    // The stream is the same viewing.
    let (mut stream, out) = watch(&adam, &session);
    eventually(20, "the live stream shows the session's output", || shows(&out, "live-capybara").then_some(()));
    assert_eq!(events(&b, "web_live_viewed", &rec).len(), 1, "one viewing, one event");
    let _ = stream.kill();
    let _ = stream.wait();
}

#[test]
fn a_live_view_ends_with_its_viewers_login() {
    let (_sshd, b, _ssh, rec, session) = box_with_a_live_session();
    let mut adam = Web::new(&b);
    assert_eq!(adam.login("adam", "adam-passwd").status, 200);
    let (mut stream, out) = watch(&adam, &session);
    eventually(20, "the live stream shows the session's output", || shows(&out, "live-capybara").then_some(()));
    assert_eq!(adam.req("POST", "/api/v1/logout", Some("{}"), &[]).status, 200);
    eventually(10, "the live stream ends with the login", || stream.try_wait().unwrap());

    // And when the viewer is no longer an admin.
    assert_eq!(adam.login("adam", "adam-passwd").status, 200);
    let (mut stream, out) = watch(&adam, &session);
    eventually(20, "the live stream shows the session's output", || shows(&out, "live-capybara").then_some(()));
    b.ok(&["user", "role", "adam", "auditor"], None);
    eventually(10, "the live stream ends with the admin role", || stream.try_wait().unwrap());
    let viewed = events(&b, "web_live_viewed", &rec);
    assert_eq!(viewed.len(), 2, "one viewing per login: {viewed:?}");
}

#[test]
fn a_termination_names_the_admin_who_did_it() {
    let (_sshd, b, mut ssh, _rec, session) = box_with_a_live_session();
    // A termination: the row keeps the user whose session it was, and names the admin as the
    // one who did it.
    let mut ada = Web::new(&b);
    assert_eq!(ada.login("ada", "ada-passwd").status, 200);
    let ended = ada.req("POST", &format!("/api/v1/sessions/{session}/terminate"), Some("{}"), &[]);
    assert_eq!(ended.status, 200, "{}", ended.body);
    eventually(45, "the ssh client exits", || ssh.try_wait().unwrap());
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let detail = audrey.get(&format!("/api/v1/sessions/{session}")).json();
    let terminated = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "session_terminated")
        .cloned()
        .unwrap_or_else(|| panic!("no session_terminated in {detail}"));
    assert_eq!(terminated["actor"], "ada", "{terminated}");
    assert_eq!(terminated["user"], "alice", "{terminated}");
    assert_eq!(terminated["detail"]["by"], "ada", "{terminated}");
    // The box closed the target's side itself: that is not a lost target.
    settled(&b, 1);
    let lost: Vec<_> =
        b.audit().into_iter().filter(|e| e["session_id"] == session.as_str() && e["kind"] == "target_lost").collect();
    assert!(lost.is_empty(), "a terminate is followed by a spurious target_lost: {lost:?}");
}

/// A GET of `path` with a `Range` into `out`; the status.
fn fetch_range(w: &Web, path: &str, range: &str, out: &Path) -> std::process::Child {
    Command::new("curl")
        .args(["-sk", "--max-time", "600", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", "-b"])
        .arg(w.jar.path())
        .args(["-H", &format!("Range: bytes={range}")])
        .arg(format!("{}{path}", w.base))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Twenty range requests at once on a recording of more than 256 MiB: the old console read and
/// decrypted the whole recording for each (eight one-byte ranges on a 32 MB one took the box
/// from 96 to 509 MB). Parts are now served record by record: the box stays under 200 MiB
/// resident through all twenty (one of them the whole recording), its length is counted once for
/// all twenty (each counted it anew before), the bytes are the recording's, and a file changed on
/// disk is still refused.
#[test]
fn range_requests_on_a_large_recording_do_not_read_it_whole() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    b.serve();
    let t = std::time::Instant::now();
    // Random bytes as base64: 267 MB of output that nothing on the way can make smaller.
    let out = b
        .ssh("alice@web01")
        .arg("head -c 200000000 /dev/urandom | base64 -w 120; echo bigfile-ends-here")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let recorded = t.elapsed();
    // Sealing hashes it all: longer than `finished_recording` waits.
    let rec = eventually(300, "the recording to finish", || {
        let r = b.recordings().last()?.clone();
        (r["status"] != "recording" && r["status"] != "processing").then_some(r)
    });
    let id = rec["id"].as_str().unwrap().to_owned();
    let mut w = Web::new(&b);
    assert_eq!(w.login("audrey", "audrey-passwd").status, 200);
    // The box reads the recording once more to make it searchable: wait for that to be done.
    eventually(900, "the recording's text is indexed", || b.log().contains("recording text").then_some(()));
    let indexed = t.elapsed();
    let exported = b.data().join("big.cast");
    b.ok(&["recordings", "export", &id, "--out", exported.to_str().unwrap()], None);
    let plain = std::fs::read(&exported).unwrap();
    std::fs::remove_file(&exported).unwrap();
    let len = plain.len() as u64;
    assert!(len >= 256 << 20, "{len}");
    assert!(rec["bytes"].as_u64().unwrap() >= 256 << 20, "the file the box keeps is as large: {rec}");
    let ready = t.elapsed();

    // Peak memory from now on (`5` resets VmHWM to the current size).
    std::fs::write(format!("/proc/{}/clear_refs", b.pid()), "5").unwrap();
    let before = peak_rss_mib(b.pid());
    let path = format!("/api/v1/recordings/{id}/content");
    let dir = tempfile::tempdir().unwrap();
    let mut ranges: Vec<(u64, u64)> = (0..16).map(|k| (k * (len / 16) + 7, k * (len / 16) + 7 + 65_535)).collect();
    ranges.extend([(0, len - 1), (len / 3, len / 3 + (32 << 20)), (len - 1, len - 1), (1, 1)]);
    let started = std::time::Instant::now();
    let fetches: Vec<_> = ranges
        .iter()
        .enumerate()
        .map(|(k, (a, z))| fetch_range(&w, &path, &format!("{a}-{z}"), &dir.path().join(k.to_string())))
        .collect();
    for (k, f) in fetches.into_iter().enumerate() {
        let out = f.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "206", "range {:?}", ranges[k]);
    }
    let took = started.elapsed();
    let after = peak_rss_mib(b.pid());
    eprintln!(
        "20 parallel range requests on a {len}-byte recording ({} bytes at rest): box peak RSS {before} MiB \
         before, {after} MiB during, {took:?}; recorded in {recorded:?}, indexed by {indexed:?}, exported by \
         {ready:?}",
        rec["bytes"]
    );
    for (k, (a, z)) in ranges.iter().enumerate() {
        let got = std::fs::read(dir.path().join(k.to_string())).unwrap();
        assert!(got == plain[*a as usize..=*z as usize], "range {a}-{z} is the recording's bytes");
    }
    assert!(after < 200, "the box's peak RSS was {after} MiB serving 20 ranges (from {before} MiB)");
    // Twenty requests arriving together wait for one count of the player's length, not twenty.
    let counted = b.log().matches("player length counted").count();
    assert_eq!(counted, 1, "the recording was read whole {counted} times to count its length");
    assert_eq!(events(&b, "web_recording_played", &id).len(), 1, "one viewing");
    // A range starts at the view's mark before it, not at the recording's start: every range
    // past the first marks began within two marks' spacing (1 MiB each) of its first byte.
    let log = b.log();
    let marks: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("player part from a mark"))
        .filter_map(|l| l.split("view_at=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    for (a, _) in ranges.iter().filter(|(a, _)| *a >= 2 << 20) {
        assert!(
            marks.iter().any(|m| m <= a && a - m <= 2 << 20),
            "the range from {a} was read from a mark near it (marks used: {marks:?}); the box said: {:?}",
            log.lines().filter(|l| l.contains("player")).collect::<Vec<_>>()
        );
    }
    drop(plain);
    drop(dir);

    // A byte changed on disk: the whole file's sha256 no longer matches, and nothing is served.
    let file = b.data().join(rec["path"].as_str().unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let refused = w.req("GET", &path, None, &["Range: bytes=0-9"]);
    assert_eq!(refused.status, 500, "{}", refused.body);
    // It says why: the file's hash, or (a cast made as it is read) the record that was changed.
    let log = b.log();
    assert!(
        log.contains("does not match its recorded sha256")
            || log.contains("fails authentication: the file was changed"),
        "the box says why"
    );
}

/// The evidence bundle from the console: the archive's SHA-256 is known (and audited, with the
/// session and the person) before the download, the downloaded bytes have it, and the folder in
/// it verifies offline with the box's key like `witness evidence export`'s. Only the login that
/// made it gets it; a `user` cannot make one.
#[test]
fn the_consoles_evidence_bundle_is_the_one_that_verifies() {
    let (_sshd, b, session) = box_with_a_session("ocelotword");
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let made = audrey.req("POST", &format!("/api/v1/sessions/{session}/evidence"), Some("{}"), &[]);
    assert_eq!(made.status, 200, "{}", made.body);
    let made = made.json();
    let sha = made["sha256"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("bundle.tar");
    let got = Command::new("curl")
        .args(["-sk", "-o"])
        .arg(&tar)
        .args(["-w", "%{http_code}", "-b"])
        .arg(audrey.jar.path())
        .arg(format!("{}{}", audrey.base, made["url"].as_str().unwrap()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout), "200");
    assert_eq!(sha256_file(&tar), sha, "the downloaded archive has the SHA-256 the page showed");
    assert_eq!(std::fs::metadata(&tar).unwrap().len(), made["bytes"].as_u64().unwrap());
    assert!(Command::new("tar").arg("-xf").arg(&tar).current_dir(dir.path()).status().unwrap().success());
    let folder = dir.path().join(format!("evidence-{session}"));
    let key = b.ok(&["evidence", "key"], None).trim().to_owned();
    let verified = Command::new(witness_bin())
        .args(["--data", "/nonexistent", "verify"])
        .arg(&folder)
        .args(["--key", &key])
        .env_remove("WITNESS_DATA")
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}{}", stdout(&verified), stderr(&verified));
    let exported: Vec<Value> = b.audit().into_iter().filter(|e| e["kind"] == "web_evidence_exported").collect();
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_attributed(&exported[0], "audrey", &session);
    assert_eq!(exported[0]["detail"]["sha256"], sha.as_str());
    let downloaded: Vec<Value> = b.audit().into_iter().filter(|e| e["kind"] == "web_evidence_downloaded").collect();
    assert_eq!(downloaded.len(), 1, "{downloaded:?}");
    assert_attributed(&downloaded[0], "audrey", &session);

    // Another login does not get it; a `user` cannot make one.
    let mut other = Web::new(&b);
    assert_eq!(other.login("adam", "adam-passwd").status, 200);
    assert_eq!(other.get(made["url"].as_str().unwrap()).status, 404);
    let mut bob = Web::new(&b);
    assert_eq!(bob.login("bob", "bob-passwd").status, 200);
    assert_eq!(bob.req("POST", &format!("/api/v1/sessions/{session}/evidence"), Some("{}"), &[]).status, 403);
}
