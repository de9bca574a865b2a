//! Red team `h-red18d`, end to end: the audit rollback anchor as built for issue 18 (each
//! checkpoint signs its store; only a store the newest checkpoint names is compared with). Each
//! test asserted the attacker's success while the hole it names was open; the closed ones are
//! flipped to assert the refusal.

use crate::attacks_red18c::{sealed_while_the_store_is_away, upload_of};
use crate::harness::*;

/// A box on S3 that served twice: the index and checkpoints of the first stop are put back after
/// the second (a failed login and a session in between): a rolled-back disk, no keys used.
/// `audit --verify` names it (exit 1) before the attack.
pub(crate) fn rolled_back_box(sshd: &Sshd, s3: &S3) -> Box {
    let mut b = Box::with_target(sshd);
    b.use_s3(s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo before").output().unwrap().status.success());
    assert!(b.stop().success());
    let keep = tempfile::tempdir().unwrap();
    for f in ROLLED_BACK {
        let _ = std::fs::copy(b.data().join(f), keep.path().join(f));
    }
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo hidden-later").output().unwrap().status.success());
    assert!(b.stop().success());
    for f in ROLLED_BACK {
        let _ = std::fs::remove_file(b.data().join(f));
        if keep.path().join(f).exists() {
            std::fs::copy(keep.path().join(f), b.data().join(f)).unwrap();
        }
    }
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "as built, the rollback is named: {} {}", stdout(&out), stderr(&out));
    b
}

/// The store keeps a box's checkpoints under its box id, a plain line of `witness.toml` on the
/// disk the insider rolled back. One edited line made `audit --verify` list an empty prefix of
/// the same store and say the log was intact and verified (exit 0) on a rolled-back log. Closed:
/// a checkpoint signed for another box id breaks the checkpoints (exit 1, naming both ids).
#[test]
fn red18d_an_edited_box_id_verifies_a_rolled_back_log() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let b = rolled_back_box(&sshd, &s3);
    let cfg = b.data().join("witness.toml");
    let id = box_id(&b);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace(&format!("box_id = \"{id}\""), &format!("box_id = \"{id}-x\""))).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("signed for box {id}, but this box is configured as {id}-x")), "{said}");
}

/// Each checkpoint signs the store it goes to. An insider who rolled the disk back pointed
/// `store.toml` at an empty folder and let the box start once: the box signed its next
/// checkpoint naming the folder, and `audit --verify` compared with the folder alone and exited
/// 0. Closed: checkpoints sent to another store than the one compared are NOT COMPARED (exit 3,
/// naming that store), and the start says so in an `audit_not_compared` event.
#[test]
fn red18d_a_store_switched_before_a_start_verifies_a_rolled_back_log() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = rolled_back_box(&sshd, &s3);
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(b.data().join("store.toml"), format!("kind = \"dir\"\npath = {:?}\n", empty.path())).unwrap();
    b.serve();
    assert!(b.stop().success());
    let out = b.cli(&["audit", "--verify"], None);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{said} {}", stderr(&out));
    assert!(
        said.contains("NOT COMPARED with the store checkpoint ")
            && said.contains("and those before it were sent to (s3:"),
        "{said}"
    );
    // The start's comparison runs beside serving: waited for, not raced by the stop.
    b.serve();
    eventually(30, "an audit_not_compared event at start", || {
        b.audit()
            .iter()
            .any(|e| {
                e["kind"] == "audit_not_compared"
                    && e["detail"]["reason"].as_str().is_some_and(|r| r.contains("sent to another store"))
            })
            .then_some(())
    });
    assert!(b.stop().success());
}

/// An upload was refused only when the file's LENGTH was not the sealed one. A recording changed
/// after sealing with its length kept (bytes overwritten in place while the store was away),
/// and `part_size_mb` edited in `witness.toml` (a plain file) so the sealed part digests no
/// longer fit: the fallback path hashed and sent each part as it now was, the store's answer
/// matched what the box itself had just hashed, and the recording was marked uploaded and
/// verified (then pruned), the store holding bytes that are not the sealed recording. Closed:
/// the job waits with the reason, a `recording_changed_after_sealing` event names it once, and
/// the local copy is kept. Since `h-arc18j` nothing of it is sent either (it was sent whole at
/// every retry, then refused): the file is hashed against the sealed SHA-256 first, streamed,
/// and refused at once; the bytes PUT are counted at a proxy in front of the store.
#[test]
fn red18d_a_recording_changed_in_place_after_sealing_is_uploaded_as_verified() {
    let sshd = Sshd::start();
    let (mut b, mut s3, id, sealed_bytes, local) = sealed_while_the_store_is_away(&sshd);
    assert!(sealed_bytes > 6 * 1024 * 1024, "several parts at either part size: {sealed_bytes}");
    let sealed_sha =
        b.recordings().into_iter().find(|r| r["id"] == id).unwrap()["sha256"].as_str().expect("sealed").to_owned();
    assert!(b.stop().success());
    // Same length: 64 bytes in the middle rewritten in place.
    let bytes = crate::attacks_red18j::changed_in_place(&local, sealed_bytes);
    let cfg = b.data().join("witness.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("part_size_mb = 5", "part_size_mb = 6");
    std::fs::write(&cfg, text).unwrap();
    s3.run();
    let (mut proxy, log) = crate::attacks_red18j::through_a_proxy(&b, &s3);
    b.serve();
    let upload = eventually(120, "the changed copy refused", || {
        upload_of(&b, &id).filter(|u| u.2.contains("changed since it was sealed"))
    });
    assert_eq!(upload.0, "waiting", "{upload:?}");
    assert!(upload.2.contains("hashes to sha256") && upload.2.contains("not uploaded"), "{upload:?}");
    assert!(upload.2.contains(&format!("sealed as {sealed_sha}")), "{upload:?}");
    // Tried again: refused again, at once.
    let attempts = upload.1;
    eventually(60, "two more attempts", || upload_of(&b, &id).filter(|u| u.1 >= attempts + 2).map(|_| ()));
    let r = b.recordings().into_iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(r["status"], "completed", "not marked uploaded");
    assert_eq!(std::fs::read(&local).unwrap(), bytes, "the local copy is kept as it is");
    let kinds = b.audit_kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "recording_changed_after_sealing").count(), 1, "{kinds:?}");
    assert!(!kinds.contains(&"local_copy_pruned".to_string()), "{kinds:?}");
    let stored = crate::store::walk(s3.dir.path());
    assert!(!stored.iter().any(|p| p.ends_with(".cast")), "nothing of it went up as the recording: {stored:?}");
    let _ = proxy.kill();
    let _ = proxy.wait();
    let requests = std::fs::read_to_string(&log).unwrap();
    assert_eq!(crate::store::put_bytes_to(&requests, &id), 0, "not a byte of it was sent: {requests}");
}

/// Only a store the newest LOCAL checkpoint names was insisted on: with no checkpoint on the
/// disk there was none, and any read store a file on the disk names was taken. An insider who
/// rolled the disk back also removed `audit.checkpoints` (the index's audit chain did not know
/// checkpoints were ever signed) and, with the `witness` binary on the box, ran `store set-read`
/// naming a store of their own: `audit --verify` exited 0, "verified against the store", on a
/// rolled-back log whose real store holds checkpoints beyond it. Closed: the chain records each
/// checkpoint as it is signed (`audit_checkpoint_signed`), so a missing or cut-back file breaks
/// the checkpoints (exit 1, at start an `audit_checkpoints_broken` event); signed again after a
/// start, the store the log records is the only one compared with (exit 3 with theirs).
#[test]
fn red18d_checkpoints_removed_and_a_read_store_of_ones_own_verify_a_rolled_back_log() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = rolled_back_box(&sshd, &s3);
    let theirs = S3::start();
    for f in ["audit.checkpoints", "audit.checkpoints.sent"] {
        let _ = std::fs::remove_file(b.data().join(f));
    }
    b.store_s3("set-read", &theirs.endpoint());
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("the audit log records checkpoint 1 as signed")
            && said.contains("audit.checkpoints does not have it"),
        "{said}"
    );
    assert!(!said.contains("verified against"), "{said}");
    // The box started on it says so, and signs again: still never verified against theirs.
    b.serve();
    eventually(30, "an audit_checkpoints_broken event at start", || {
        b.audit_kinds().iter().any(|k| k == "audit_checkpoints_broken").then_some(())
    });
    assert!(b.stop().success());
    let out = b.cli(&["audit", "--verify"], None);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("verified against"), "{said}");
    assert!(said.contains(&format!("s3:{}", s3.endpoint())), "names the store the log records: {said}");
}

/// A box that could not write its checkpoints (the key unreadable, the file or the disk not
/// writable) said so only in its own log, every minute: nothing in the audit log, nothing in
/// `sync status`, and the log went unsigned. Now the first failure of each error is an
/// `audit_checkpoint_failed` event and `sync status` says checkpoints are failing, with the
/// error, until one is signed again.
#[test]
fn red18d_a_box_that_cannot_write_checkpoints_says_so_only_in_its_log() {
    let mut b = Box::new();
    let file = b.data().join("audit.checkpoints");
    std::fs::create_dir(&file).unwrap();
    b.serve();
    assert!(b.stop().success());
    b.serve();
    assert!(b.stop().success());
    let kinds = b.audit_kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "audit_checkpoint_failed").count(), 1, "once per error: {kinds:?}");
    let st = b.json(&["sync", "status", "--json"]);
    assert_eq!(st["audit_checkpoints"]["state"], "failing", "{st}");
    assert!(st["audit_checkpoints"]["error"].as_str().is_some_and(|e| e.contains("audit checkpoints")), "{st}");
    assert!(b.ok(&["sync", "status"], None).contains("checkpoints of the audit log are not being written"));
    // Writable again: the next checkpoint is signed, and the status clears.
    std::fs::remove_dir(&file).unwrap();
    b.serve();
    assert!(b.stop().success());
    let st = b.json(&["sync", "status", "--json"]);
    assert_eq!(st["audit_checkpoints"]["state"], "ok", "{st}");
    assert!(b.audit_kinds().iter().any(|k| k == "audit_checkpoint_signed"));
}
