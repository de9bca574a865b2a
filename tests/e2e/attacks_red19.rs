//! Red team h-red19 on the auditor's console (issue 19): what a `user` learns of the case being
//! built against them, and what an auditor's exports cost the box.

use crate::harness::*;
use crate::web::{Web, box_with_a_session};
use serde_json::Value;

/// The box's operator exports a session's evidence (`witness evidence export`, as an
/// investigation does). The audit row names the session's user, and the console took a row's
/// user for who acted: the held-for-investigation user saw `evidence_exported` on their own
/// session page as their own doing, and the box-wide audit page named them as the one who
/// exported it.
#[test]
fn red19_a_cli_evidence_export_shows_to_the_user_as_their_own_doing() {
    let (_sshd, b, session) = box_with_a_session("marmotword");
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("case");
    b.ok(&["evidence", "export", &session, "--out", bundle.to_str().unwrap()], None);

    let mut alice = Web::new(&b);
    assert_eq!(alice.login("alice", "alice-pw").status, 200);
    let own = alice.get(&format!("/api/v1/sessions/{session}"));
    assert_eq!(own.status, 200, "{}", own.body);
    let own = own.json();
    let shown: Vec<&Value> =
        own["audit"].as_array().unwrap().iter().filter(|e| e["kind"] == "evidence_exported").collect();
    assert!(shown.is_empty(), "the user is told their session's evidence was exported: {shown:?}");
    assert!(!own.to_string().contains("evidence"), "{own}");

    // Auditors see it, named as the operator's doing, not the user's.
    let mut audrey = Web::new(&b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let seen = audrey.get(&format!("/api/v1/sessions/{session}")).json();
    let exported = seen["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "evidence_exported")
        .cloned()
        .unwrap_or_else(|| panic!("auditors see the export: {seen}"));
    assert_eq!(exported["user"], "alice", "the row stays about alice's session: {exported}");
    assert_ne!(exported["actor"], "alice", "alice did not export it: {exported}");
    let page = audrey.get("/api/v1/audit?kind=evidence_exported").json();
    let row = &page["events"][0];
    assert_eq!(row["kind"], "evidence_exported", "{page}");
    assert_ne!(row["actor"], "alice", "the audit page names alice as the exporter: {row}");
}
