//! Attacks on the console's promises about watching: every play, download and live view is one
//! audit event attributed to the session and the person, whatever ranges or query strings the
//! requests carry; a live view ends with its viewer's login; a `user` sees no more of their own
//! sessions than their own doing; a termination names the admin who did it.

use crate::harness::*;
use crate::web::{Web, box_with_a_session};
use serde_json::Value;
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
fn box_with_a_live_session() -> (Sshd, Box, Child, String, String) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    for (name, role) in [("adam", "admin"), ("ada", "admin"), ("audrey", "auditor")] {
        b.ok(&["user", "add", name, "--password-stdin", "--role", role], Some(&format!("{name}-passwd\n")));
    }
    b.serve();
    let ssh = b
        .ssh("alice@web01")
        .args(["-tt"])
        .arg("echo live-capybara; sleep 120")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rec = eventually(60, "the session's recording is being written", || {
        b.recordings().into_iter().find(|r| r["status"] == "recording")
    });
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
}
