//! Issue 18, `h-fix18g`: evidence never altered unnoticed. Each test first asserted the
//! attacker's success on the code before its fix (seen passing there); each now asserts the
//! refusal or the detection.

use crate::harness::*;

/// Invariant broken: "a rollback of the box's disk is named by the store … only with the store
/// the audit log last records as this box's". A copy of the data dir taken when the box was
/// provisioned (`store set` to the real bucket, an audited `store_configured`, never started) is
/// put back after a year of sessions, and `witness store set` itself (not `set-read`, not an
/// edit of `store.toml`) names a bucket of one's own: `store set` records the new store in the
/// chain before it changes the file, so the store the log last records is the attacker's, and
/// the earlier `store_configured` naming the real bucket was not counted as an earlier store
/// (only checkpoints were): `audit --verify` exited 0, "verified against the store". Now every
/// store the log records before the one compared with (`store_configured`, `store_changed`, a
/// checkpoint's record) is an earlier store where checkpoints may have gone: NOT COMPARED (exit
/// 3), naming both.
#[test]
fn red18k_a_provisioning_copy_and_store_set_to_ones_own_bucket_verifies() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    // Provisioned, never started: the copy.
    let keep = tempfile::tempdir().unwrap();
    for f in ROLLED_BACK.iter().chain(&["store.toml"]) {
        let _ = std::fs::copy(b.data().join(f), keep.path().join(f));
    }
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo a-year-of-sessions").output().unwrap().status.success());
    assert!(b.stop().success());
    let prefix = s3.dir.path().join(S3_BUCKET).join(box_id(&b)).join("audit-checkpoints");
    assert!(std::fs::read_dir(&prefix).map(|d| d.count()).unwrap_or(0) >= 1, "the real store holds checkpoints");
    let later = b.audit().len();
    for f in ROLLED_BACK.iter().chain(&["store.toml", "audit.checkpoints.sent"]) {
        let _ = std::fs::remove_file(b.data().join(f));
        if keep.path().join(f).exists() {
            std::fs::copy(keep.path().join(f), b.data().join(f)).unwrap();
        }
    }
    assert!(b.audit().len() < later, "the year is gone");
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "the real store names it: {} {}", stdout(&out), stderr(&out));
    // The attack: `witness store set` (the binary is on the box) to a bucket of one's own.
    let theirs = S3::start();
    b.store_s3("set", &theirs.endpoint());
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    // Closed: the real bucket's `store_configured` is an earlier store; NOT COMPARED, naming both.
    assert_eq!(out.status.code(), Some(3), "the rolled-back log is not verified: {said}");
    assert!(!said.contains("verified against"), "{said}");
    assert!(said.contains("NOT COMPARED"), "{said}");
    assert!(
        said.contains(&format!("s3:{}/{S3_BUCKET}/", theirs.endpoint()))
            && said.contains(&format!("s3:{}/{S3_BUCKET}/", s3.endpoint())),
        "names both stores: {said}"
    );
    assert!(said.contains("as set by `witness store set`"), "{said}");
    // Started on it: never verified, an `audit_not_compared` event at start.
    b.serve();
    eventually(30, "an audit_not_compared event at start", || {
        b.audit().into_iter().find(|e| {
            e["kind"] == "audit_not_compared"
                && e["detail"]["reason"].as_str().is_some_and(|r| r.contains(&s3.endpoint()))
        })
    });
    assert!(b.stop().success());
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(3), "after checkpoints signed for theirs: {said}");
    assert!(!said.contains("verified against"), "{said}");
}

/// Invariant broken: "a bundle is checked against the box, not against itself" and the verify
/// step's rule that the manifest beside a recording is taken only as its own
/// (`evidence::own_evidence`). `witness evidence export` took the manifest and signature beside
/// each file unchecked and signed a session manifest listing the SHA-256 that manifest names:
/// another recording's genuine signed manifest copied over this one's (a file copy, no key) and
/// the box signed a session list it never checked, naming the other recording's hash under this
/// recording's id. Now the export takes each manifest through `own_evidence` and refuses one
/// that is not the recording's own, naming it.
#[test]
fn red18k_evidence_export_signs_a_session_list_from_a_manifest_copied_over_another() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    for line in ["red18k-first", "red18k-second"] {
        assert!(b.ssh("alice@web01").arg(format!("echo {line}")).output().unwrap().status.success());
    }
    let recs = eventually(60, "two recordings sealed", || {
        let recs: Vec<_> = b
            .recordings()
            .into_iter()
            .filter(|r| {
                r["status"] != "recording"
                    && b.data().join(r["path"].as_str().unwrap()).with_extension("manifest.sig").exists()
            })
            .collect();
        (recs.len() == 2).then_some(recs)
    });
    assert!(b.stop().success());
    let path = |r: &serde_json::Value| b.data().join(r["path"].as_str().unwrap());
    let (this, other) = (&recs[0], &recs[1]);
    // The attack: the other recording's signed manifest and signature copied over this one's.
    for ext in ["manifest.json", "manifest.sig"] {
        std::fs::copy(path(other).with_extension(ext), path(this).with_extension(ext)).unwrap();
    }
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path(other).with_extension("manifest.json")).unwrap()).unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let sid = this["session_id"].as_str().unwrap();
    let out = b.cli(&["evidence", "export", sid, "--out", bundle.path().to_str().unwrap()], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    // Closed: refused, naming the recording and whose manifest it is; no list signed.
    assert!(!out.status.success(), "refused: {said}");
    let id = this["id"].as_str().unwrap();
    assert!(
        said.contains(&format!("the manifest beside recording {id} names recording {}", other["id"].as_str().unwrap())),
        "{said}"
    );
    assert!(said.contains("not its own"), "{said}");
    assert!(!bundle.path().join("session-manifest.sig").exists(), "no session list signed");
    assert_ne!(theirs["recording_id"], this["id"]);
    // The other session's own bundle still exports and verifies.
    let fine = tempfile::tempdir().unwrap();
    b.ok(&["evidence", "export", other["session_id"].as_str().unwrap(), "--out", fine.path().to_str().unwrap()], None);
    let out = crate::evidence::verify(fine.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// Invariant broken: "crash recovery never destroys authentic data … a file shorter than what
/// was made durable is named" (red team h-red18e's hole 7): only the LENGTH the writer made
/// durable was compared, never the SHA-256 it noted with it. The at-rest header line is plain
/// JSON no record authenticates byte for byte: after a crash its keys are put in another order
/// (same length, no key), and recovery took the file as it found it, sealed with only "the box
/// stopped uncleanly" and no event: the box signed bytes it never wrote. Now the SHA-256 of the
/// durable part is compared at recovery: a `recording_changed_after_durable` event and a signed
/// gap saying the durable bytes changed on disk.
#[test]
fn red18k_a_header_reordered_after_a_crash_is_sealed_as_a_plain_crash() {
    let sshd = Sshd::start();
    // A second past the next fsync: what is on disk was made durable and noted.
    let (mut b, rec, path, _) =
        crate::attacks_red18e::killed_mid_session(&sshd, "red18k", std::time::Duration::from_millis(2500));
    let id = rec["id"].as_str().unwrap().to_owned();
    let mut bytes = std::fs::read(&path).unwrap();
    // The attack: the header line's keys in reverse order, the same length.
    let end = bytes.iter().position(|b| *b == b'\n').unwrap();
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[..end]).unwrap();
    let mut pairs: Vec<String> =
        header.iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v)).collect();
    pairs.reverse();
    let reordered = format!("{{{}}}", pairs.join(","));
    assert_eq!(reordered.len(), end, "same length");
    assert_ne!(reordered.as_bytes(), &bytes[..end]);
    bytes[..end].copy_from_slice(reordered.as_bytes());
    std::fs::write(&path, &bytes).unwrap();
    b.serve();
    eventually(60, "recovered and sealed", || {
        let r = b.recordings().into_iter().find(|r| r["id"] == id.as_str())?;
        (r["status"] != "recording" && path.with_extension("manifest.sig").exists()).then_some(r)
    });
    let bundle = tempfile::tempdir().unwrap();
    let sid = rec["session_id"].as_str().unwrap();
    b.ok(&["evidence", "export", sid, "--out", bundle.path().to_str().unwrap()], None);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join(format!("{id}.manifest.json"))).unwrap()).unwrap();
    let gaps = manifest["gaps"].as_array().unwrap();
    // Closed: the durable part's SHA-256 is not the one noted: a signed gap and an event.
    let changed = gaps
        .iter()
        .find(|g| g["reason"].as_str().unwrap().contains("changed on disk after they were written"))
        .unwrap_or_else(|| panic!("the change is stated: {gaps:?}"));
    assert!(changed["reason"].as_str().unwrap().contains("which the box had made durable"), "{changed}");
    let ev = b.audit().into_iter().find(|e| e["kind"] == "recording_changed_after_durable").expect("an audit event");
    assert_eq!(ev["detail"]["recording"], id.as_str(), "{ev}");
    assert_ne!(ev["detail"]["durable_sha256"], ev["detail"]["sha256_found"], "{ev}");
}
