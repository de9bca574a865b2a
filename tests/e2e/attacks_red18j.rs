//! Issue 18, `h-arc18j`: the audit rollback anchor against a store changed on a rolled-back
//! disk. Each test asserted the attacker's success on the code before the fix; each now asserts
//! the refusal.

use crate::attacks_red18c::{sealed_while_the_store_is_away, upload_of};
use crate::harness::*;

const KEPT: [&str; 4] = ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "store.toml"];

/// The store a rolled-back log compared with was whatever `store.toml` named when no checkpoint
/// on the disk named one. A box set up on S3 (`store set`, an audited `store_configured`) had its
/// disk copied before its first checkpoint; it then served (a failed login, a session; its
/// checkpoints went to S3) and the copy was put back: `audit --verify` names the rollback (exit
/// 1). One edit of `store.toml` naming another, empty store, and old code compared with that
/// one, said "verified" and exited 0, and so did every start and every `audit --verify` after
/// the box signed its next checkpoints for it. Now the store the audit log last records as this
/// box's (a `store_configured` event or a checkpoint's record) is the only one compared with:
/// another is NOT COMPARED (exit 3, naming both), the start finds the change and records it (a
/// `store_changed` event) with an `audit_not_compared` event, and a store changed outside
/// `witness store set` is never a verification afterwards.
#[test]
fn red18j_store_toml_edited_on_a_disk_rolled_back_before_its_first_checkpoint_verifies() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    let keep = tempfile::tempdir().unwrap();
    for f in KEPT {
        let _ = std::fs::copy(b.data().join(f), keep.path().join(f));
    }
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo hidden-later").output().unwrap().status.success());
    assert!(b.stop().success());
    for f in KEPT.iter().chain(&["audit.checkpoints", "audit.checkpoints.sent"]) {
        let _ = std::fs::remove_file(b.data().join(f));
        if keep.path().join(f).exists() {
            std::fs::copy(keep.path().join(f), b.data().join(f)).unwrap();
        }
    }
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "the rollback is named: {} {}", stdout(&out), stderr(&out));
    // The attack: `store.toml` names another store, which holds none of this box's checkpoints.
    let theirs = S3::start();
    let text = std::fs::read_to_string(b.data().join("store.toml")).unwrap();
    std::fs::write(b.data().join("store.toml"), text.replace(&s3.endpoint(), &theirs.endpoint())).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(!said.contains("verified against"), "{said}");
    assert!(
        said.contains(&format!("s3:{}/{S3_BUCKET}/", theirs.endpoint()))
            && said.contains(&format!("s3:{}/{S3_BUCKET}/", s3.endpoint())),
        "names both stores: {said}"
    );
    // Started on it: the change is found and recorded, and the comparison not made.
    b.serve();
    eventually(30, "a store_changed and an audit_not_compared event at start", || {
        let events = b.audit();
        let changed = events.iter().any(|e| {
            e["kind"] == "store_changed"
                && e["detail"]["to"].as_str().is_some_and(|t| t.contains(&theirs.endpoint()))
                && e["detail"]["from"].as_str().is_some_and(|f| f.contains(&s3.endpoint()))
        });
        (changed && events.iter().any(|e| e["kind"] == "audit_not_compared")).then_some(())
    });
    assert!(b.stop().success());
    // Its next checkpoints signed for the other store: still never verified there.
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("outside `witness store set`"), "{said}");
}

/// 64 bytes in the middle of a sealed file rewritten in place, its length kept: the new bytes.
pub(crate) fn changed_in_place(local: &std::path::Path, sealed_bytes: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(local).unwrap();
    let sealed = bytes.clone();
    let at = bytes.len() / 2;
    for c in &mut bytes[at..at + 64] {
        *c ^= 0x5a;
    }
    std::fs::write(local, &bytes).unwrap();
    assert_eq!(bytes.len() as u64, sealed_bytes);
    assert_ne!(bytes, sealed);
    bytes
}

/// Points a stopped box at `s3` through a logging proxy (`store::proxy`, reads forwarded): the
/// proxy and its log of requests, each with its body's length.
pub(crate) fn through_a_proxy(b: &Box, s3: &S3) -> (std::process::Child, std::path::PathBuf) {
    let log = b.dir.path().join("proxy-requests.log");
    let (proxy, port) = crate::store::proxy(s3, &log, false, true);
    b.store_s3("set", &format!("http://127.0.0.1:{port}"));
    (proxy, log)
}

/// A recording changed in place after sealing, its sealed part digests still fitting, was sent
/// again at every retry (up to the part the store refused, that part three times) and refused
/// every time, for ever: an insider with write access to the disk makes the box upload the same
/// gigabytes again and again. Now the first refusal has the file hashed, names the change
/// (`recording_changed_after_sealing`, once), and every later attempt hashes the file first and
/// sends nothing; the bytes PUT are counted at a proxy in front of the store.
#[test]
fn red18j_a_recording_changed_in_place_is_sent_again_at_every_retry() {
    let sshd = Sshd::start();
    let (mut b, mut s3, id, sealed_bytes, local) = sealed_while_the_store_is_away(&sshd);
    assert!(b.stop().success());
    let bytes = changed_in_place(&local, sealed_bytes);
    s3.run();
    let (mut proxy, log) = through_a_proxy(&b, &s3);
    b.serve();
    let first = eventually(120, "the changed copy refused", || {
        upload_of(&b, &id).filter(|u| u.2.contains("changed since it was sealed"))
    });
    assert!(first.2.contains("hashes to sha256") && first.2.contains("not uploaded"), "{first:?}");
    let sent_first = crate::store::put_bytes_to(&std::fs::read_to_string(&log).unwrap(), &id);
    eprintln!("the first attempt sent {sent_first} of the recording's {sealed_bytes} bytes before the refusal");
    assert!(sent_first <= sealed_bytes, "the first attempt sends no part twice: {sent_first} of {sealed_bytes}");
    eventually(60, "two more attempts", || upload_of(&b, &id).filter(|u| u.1 >= first.1 + 2).map(|_| ()));
    assert!(b.stop().success());
    let _ = proxy.kill();
    let _ = proxy.wait();
    let requests = std::fs::read_to_string(&log).unwrap();
    assert_eq!(crate::store::put_bytes_to(&requests, &id), sent_first, "nothing sent again after: {requests}");
    let r = b.recordings().into_iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(r["status"], "completed", "not marked uploaded");
    assert_eq!(std::fs::read(&local).unwrap(), bytes, "the local copy is kept as it is");
    let kinds = b.audit_kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "recording_changed_after_sealing").count(), 1, "{kinds:?}");
}
