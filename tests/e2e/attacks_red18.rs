//! Red team 18: the evidence pipeline's promises, attacked by someone with write access to the
//! bucket but not the box's keys. `index rebuild --from-store` restores a recording only as its
//! signed manifest shows it, but the session around it comes from the unsigned session manifest.

use crate::harness::*;
use crate::store::pruned_sessions;

fn lose_index(b: &Box) {
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(b.data().join(f));
    }
}

/// The session manifest in the bucket is not signed; the rebuild checks each recording against
/// its signed manifest, but copies the session's client address, protocol, start, end and end
/// reason, and each recording's channel (which the signed manifest does state), from the
/// unsigned one. An intruder's address is swapped for a colleague's, a kill made to look like a
/// clean logout, and the restored session looks genuine. Fixed: the channel comes from the
/// signed recording manifest, and the session manifest is signed too (one that does not verify
/// gives no client, no end reason and no times of its own).
#[test]
fn red18_rebuild_takes_session_fields_from_the_unsigned_manifest() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let (mut b, recs) = pruned_sessions(&sshd, &s3, &["red18-one"]);
    let before = b.sessions();
    b.stop();
    let r = &recs[0];
    let dir = s3
        .dir
        .path()
        .join(S3_BUCKET)
        .join(box_id(&b))
        .join(&r["started_at"].as_str().unwrap()[..10])
        .join(r["session_id"].as_str().unwrap());
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["session"]["client"] = "198.51.100.77:4242".into();
    m["session"]["end_reason"] = "forged-clean-logout".into();
    m["session"]["started_at"] = "2001-01-01T00:00:00Z".into();
    m["recordings"][0]["channel"] = "forged-channel".into();
    m["session"]["protocol"] = "rdp".into();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();

    lose_index(&b);
    let out = b.ok(&["index", "rebuild", "--from-store"], None);
    assert!(out.contains("restored 1 sessions"), "{out}");
    // Fixed: the box signs the session manifest it stores; one that does not verify gives
    // nothing of its own: no client, an end reason saying so, times from the signed recordings.
    assert!(out.contains("its manifest is not signed by key"), "{out}");
    let s = &b.sessions()[0];
    assert!(before[0]["client"].is_string(), "{:?}", before[0]);
    assert!(s["client"].is_null(), "the forged client address is not restored: {s}");
    assert!(s["end_reason"].as_str().unwrap().contains("not signed"), "{s}");
    assert_eq!(s["started_at"], r["started_at"], "{s}");
    // Fixed: the protocol is the signed recordings' (a shell), not the forged `rdp`.
    assert_eq!(before[0]["protocol"], "ssh", "{:?}", before[0]);
    assert_eq!(s["protocol"], "ssh", "the forged protocol is not restored: {s}");
    assert!(out.contains("the unsigned manifest says protocol \"rdp\""), "{out}");
    // Fixed: the channel is the signed manifest's.
    let rec = &b.recordings()[0];
    assert_eq!(rec["channel"], r["channel"], "the signed manifest's channel: {rec}");
}

/// One object written to the bucket under the box's prefix stopped the whole rebuild: a garbage
/// `manifest.json` (or a session manifest listing a genuine recording twice) made `index
/// rebuild --from-store` fail, restoring nothing after it. Now each is named and passed over.
#[test]
fn red18_one_bad_object_in_the_bucket_stops_the_whole_rebuild() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let (mut b, recs) = pruned_sessions(&sshd, &s3, &["red18-genuine", "red18-doubled"]);
    // Every session manifest stored, with its signature.
    eventually(30, "session manifests stored and signed", || {
        let sigs = walk_count(s3.dir.path(), "manifest.sig");
        (sigs >= 2).then_some(())
    });
    let before = b.sessions();
    b.stop();
    let bucket = s3.dir.path().join(S3_BUCKET).join(box_id(&b));
    let dir = |r: &serde_json::Value| {
        bucket.join(&r["started_at"].as_str().unwrap()[..10]).join(r["session_id"].as_str().unwrap())
    };
    // A session manifest listing its genuine recording twice.
    let path = dir(&recs[1]).join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let first = m["recordings"][0].clone();
    m["recordings"].as_array_mut().unwrap().push(first);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    // And a garbage manifest.json under the box's prefix, listed before every genuine one.
    let junk = bucket.join("0000-junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("manifest.json"), b"not json").unwrap();
    lose_index(&b);
    let out = b.cli(&["index", "rebuild", "--from-store"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("restored 2 sessions"), "{said}");
    assert!(said.contains("0000-junk/manifest.json: not a session manifest"), "{said}");
    let doubled = recs[1]["id"].as_str().unwrap();
    assert!(said.contains(&format!("refused recording {doubled} of session")), "{said}");
    assert!(said.contains("listed twice"), "{said}");
    let restored = b.recordings();
    assert_eq!(restored.len(), 2, "each genuine recording once: {restored:?}");
    assert_eq!(restored.iter().filter(|r| r["id"] == recs[1]["id"]).count(), 1);
    // The untouched session's manifest is signed: its own fields come back as they were.
    let after = b.sessions();
    let genuine = |v: &[serde_json::Value]| v.iter().find(|s| s["id"] == recs[0]["session_id"]).cloned().unwrap();
    for k in ["client", "end_reason", "started_at", "ended_at", "protocol"] {
        assert_eq!(genuine(&after)[k], genuine(&before)[k], "{k}");
    }
}

/// How many files below `dir` are named `name` exactly.
fn walk_count(dir: &std::path::Path, name: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += walk_count(&p, name);
        } else if p.file_name().is_some_and(|f| f == name) {
            n += 1;
        }
    }
    n
}

/// A bundle of one SSH session, exported and verified as the box made it; the box stays serving.
fn ssh_bundle(sshd: &Sshd) -> (Box, tempfile::TempDir, serde_json::Value) {
    let mut b = Box::with_target(sshd);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo red18-bundle").output().unwrap().status.success());
    let rec = eventually(30, "the recording sealed", || {
        b.recordings().into_iter().find(|r| r["status"] == "completed" || r["status"] == "uploaded")
    });
    let bundle = tempfile::tempdir().unwrap();
    b.ok(&["evidence", "export", rec["session_id"].as_str().unwrap(), "--out", bundle.path().to_str().unwrap()], None);
    let out = crate::evidence::verify(bundle.path());
    assert!(out.status.success(), "the genuine bundle verifies: {}", stdout(&out));
    (b, bundle, rec)
}

/// `session.json` is what an auditor reads for who, from where and how it ended, and nothing
/// checks it: the user, the client address and the end reason rewritten, the bundle VERIFIED.
#[test]
fn red18_verify_ignores_the_session_json_beside_the_signed_session_manifest() {
    let sshd = Sshd::start();
    let (_b, bundle, _rec) = ssh_bundle(&sshd);
    let path = bundle.path().join("session.json");
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    s["user"] = "bob".into();
    s["client"] = "198.51.100.77:4242".into();
    s["end_reason"] = "forged-clean-logout".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&s).unwrap()).unwrap();
    // Fixed: session.json is checked against the signed session manifest, which now signs the
    // protocol, the client address and the end reason too.
    let out = crate::evidence::verify(bundle.path());
    let said = stdout(&out);
    assert!(!out.status.success(), "the changed session.json fails: {said}");
    assert!(stderr(&out).contains("NOT VERIFIED"), "{}", stderr(&out));
    for k in ["user", "client", "end_reason"] {
        assert!(said.contains(&format!("✗ session.json: {k} is")), "{k} named: {said}");
    }
    assert!(!said.contains("not signed in this bundle"), "{said}");
}

/// The verifier checks the first of `ID.wsr`, `ID.cast`, `ID.mp4` it finds and ignores every
/// other file: a forged `ID.mp4` (what a viewer opens for a video) laid beside the genuine
/// recording, or any other file, and the bundle is VERIFIED. For an RDP recording the same move
/// is a swap: the signed `.mp4` renamed `.cast` is what gets checked, a forged `.mp4` is played.
#[test]
fn red18_verify_passes_a_forged_file_beside_the_signed_recording() {
    let sshd = Sshd::start();
    let (_b, bundle, rec) = ssh_bundle(&sshd);
    let id = rec["id"].as_str().unwrap();
    std::fs::write(bundle.path().join(format!("{id}.mp4")), b"forged video").unwrap();
    // Fixed: every file in the bundle is one the verifier checked, or it is named.
    let out = crate::evidence::verify(bundle.path());
    let said = stdout(&out);
    assert!(!out.status.success(), "the forged file fails: {said}");
    assert!(said.contains(&format!("✗ {id}.mp4: not part of the signed bundle")), "{said}");
    std::fs::remove_file(bundle.path().join(format!("{id}.mp4"))).unwrap();
    std::fs::write(bundle.path().join("notes.txt"), b"anything").unwrap();
    let out = crate::evidence::verify(bundle.path());
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("✗ notes.txt: not part of the signed bundle"), "{}", stdout(&out));
    std::fs::remove_file(bundle.path().join("notes.txt")).unwrap();
    let out = crate::evidence::verify(bundle.path());
    assert!(out.status.success(), "the genuine bundle still verifies: {}", stdout(&out));
}

/// The audit log is in the encrypted index and its reach is signed into `audit.checkpoints`,
/// both on the same disk: copied away at one stop and put back after a later one (as an insider
/// with root would, or an admin restoring a backup), the log has lost its tail — a failed login
/// and a whole session — and `audit --verify` still said intact: nothing outside the disk
/// remembered the newer checkpoint. Fixed: every signed checkpoint also goes to the store
/// (`BOX/audit-checkpoints/SEQ-HASH.json`, sent at stop too), and `audit --verify` compares the
/// local chain with it: a checkpoint the store holds beyond the local head is named with its
/// sequence and time, and the operator is sent to `index rebuild --from-store`. The box says so
/// at its next start too (log line and audit event) and still records.
#[test]
fn red18_audit_verify_misses_a_rolled_back_index_and_checkpoints() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo before").output().unwrap().status.success());
    assert!(b.stop().success());
    let keep = tempfile::tempdir().unwrap();
    let files = ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "audit.checkpoints"];
    for f in files {
        let _ = std::fs::copy(b.data().join(f), keep.path().join(f));
    }
    let before = b.audit().len();
    let said = b.ok(&["audit", "--verify"], None);
    assert!(said.contains("audit log intact"), "{said}");
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo hidden-later").output().unwrap().status.success());
    assert!(b.stop().success());
    let later = b.audit();
    assert!(later.len() > before);
    let local = std::fs::read_to_string(b.data().join("audit.checkpoints")).unwrap();
    let newest: serde_json::Value = serde_json::from_str(local.lines().last().unwrap()).unwrap();
    // Put back: a consistent earlier copy of the index and its checkpoints.
    for f in files {
        let _ = std::fs::remove_file(b.data().join(f));
        if keep.path().join(f).exists() {
            std::fs::copy(keep.path().join(f), b.data().join(f)).unwrap();
        }
    }
    let now = b.audit();
    assert_eq!(now.len(), before, "the tail is gone");
    let newest_event = later.last().unwrap()["id"].clone();
    assert!(!now.iter().any(|e| e["id"] == newest_event), "the newest event is gone");
    // Fixed: the store remembers the newer checkpoint.
    let out = b.cli(&["audit", "--verify"], None);
    let (said, why) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "a rollback fails verification: {said} {why}");
    assert!(!said.contains("verified against the store"), "{said}");
    let seq = newest["checkpoint"]["seq"].as_u64().expect("a checkpoint names its sequence");
    assert!(seq >= 2, "{newest}");
    let at = newest["checkpoint"]["at"].as_str().unwrap();
    assert!(why.contains("rolled back") && why.contains(&format!("checkpoint {seq}")), "{why}");
    assert!(why.contains(at), "the time of the missing part is named: {why}");
    assert!(why.contains("index rebuild --from-store"), "the operator is sent to the store's sessions: {why}");
    // The box starts, records, and says what it found (log line and audit event).
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo after-rollback").output().unwrap().status.success());
    eventually(30, "the rollback named in the log and the audit log", || {
        (b.log().contains("rolled back") && b.audit_kinds().iter().any(|k| k == "audit_rollback")).then_some(())
    });
    assert!(b.stop().success());
    // Its new checkpoints do not paper over it: the chain it now has forks from the store's.
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "{} {}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("checkpoint"), "{}", stderr(&out));
}

/// The remote comparison needs the store; when it cannot be reached, `audit --verify` says the
/// comparison was not done (exit 3) and never that the log is verified, and the box says so at
/// start. The checkpoints of an offline site wait and are sent once the store is back.
#[test]
fn red18_audit_verify_with_the_store_away_says_not_compared() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo offline").output().unwrap().status.success());
    eventually(30, "the start's comparison said not done", || {
        b.audit_kinds().iter().any(|k| k == "audit_not_compared").then_some(())
    });
    assert!(b.log().contains("could not be compared with the store"), "{}", b.log());
    assert!(b.stop().success(), "the stop does not wait for the store");
    let out = b.cli(&["audit", "--verify"], None);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "not compared is its own exit code: {said} {}", stderr(&out));
    assert!(said.contains("NOT COMPARED with the store"), "{said}");
    assert!(!said.contains("verified against the store"), "{said}");
    // The store back: what the offline stop signed goes up at the next start.
    s3.run();
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(0), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("none of this box's checkpoints yet; 1 not sent yet"), "{}", stdout(&out));
    b.serve();
    let prefix = s3.dir.path().join(S3_BUCKET).join(box_id(&b)).join("audit-checkpoints");
    eventually(30, "the queued checkpoint sent", || {
        std::fs::read_dir(&prefix).ok().map(|d| d.count()).filter(|n| *n == 1)
    });
    assert!(b.ssh("alice@web01").arg("echo online").output().unwrap().status.success());
    assert!(b.stop().success());
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(0), "{} {}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("verified against the store s3:"), "{}", stdout(&out));
    assert!(stdout(&out).contains("checkpoints up to 2, each the one here"), "{}", stdout(&out));
    s3.halt();
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(3), "{} {}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("verified against the store"), "{}", stdout(&out));
}

/// Recordings are encrypted at rest, but the reader takes a file without the at-rest header as
/// plaintext. With the disk and no keys: the box killed mid-session, its recording replaced by
/// another session's plaintext (taken from that session's own evidence bundle), and at restart
/// crash recovery and sealing sign it as the cut session's recording: its bundle VERIFIED, and
/// it plays what was never said in it. Fixed: sealing refuses a file without the header.
#[test]
fn red18_a_plaintext_file_in_place_of_an_encrypted_recording_is_sealed_as_genuine() {
    let sshd = Sshd::start();
    let (mut b, innocent, first) = ssh_bundle(&sshd);
    let plain = std::fs::read_dir(innocent.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wsr"))
        .unwrap();
    let plain = std::fs::read(plain).unwrap();
    let mut client = b
        .ssh("alice@web01")
        .arg("for i in $(seq 1 600); do echo secret-$i; sleep 0.1; done")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rec = eventually(30, "the second recording", || b.recordings().into_iter().find(|r| r["id"] != first["id"]));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    b.kill9();
    let _ = client.kill();
    let _ = client.wait();
    let path = b.data().join(rec["path"].as_str().unwrap());
    assert!(std::fs::read(&path).unwrap().windows(9).all(|w| w != b"secret-1\\"), "encrypted at rest");
    std::fs::write(&path, &plain).unwrap();
    b.serve();
    // Fixed: sealing refuses a file without the at-rest header, naming why; nothing is signed,
    // so no bundle of the session verifies.
    let bundle = tempfile::tempdir().unwrap();
    let sid = rec["session_id"].as_str().unwrap();
    let out = b.cli(&["evidence", "export", sid, "--out", bundle.path().to_str().unwrap()], None);
    assert!(!out.status.success(), "no bundle of the planted file: {}", stdout(&out));
    assert!(stderr(&out).contains("not encrypted at rest"), "{}", stderr(&out));
    let out = crate::evidence::verify(bundle.path());
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(!path.with_extension("manifest.sig").exists(), "never signed");
}

/// The at-rest header names the recording it was written for, and its records are bound to
/// that id, but nothing compares it with the recording being read: with the disk and no keys,
/// the box killed mid-session and the cut recording's file replaced by another session's
/// encrypted file, restart seals that as the cut session's recording. Fixed: sealing compares
/// the header's recording id.
#[test]
fn red18_another_recordings_encrypted_file_is_sealed_as_this_one() {
    let sshd = Sshd::start();
    let (mut b, _innocent, first) = ssh_bundle(&sshd);
    let other = std::fs::read(b.data().join(first["path"].as_str().unwrap())).unwrap();
    let mut client = b
        .ssh("alice@web01")
        .arg("for i in $(seq 1 600); do echo secret-$i; sleep 0.1; done")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rec = eventually(30, "the second recording", || b.recordings().into_iter().find(|r| r["id"] != first["id"]));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    b.kill9();
    let _ = client.kill();
    let _ = client.wait();
    let path = b.data().join(rec["path"].as_str().unwrap());
    std::fs::write(&path, &other).unwrap();
    b.serve();
    // Fixed: sealing compares the header's recording id, and refuses, naming both.
    let bundle = tempfile::tempdir().unwrap();
    let sid = rec["session_id"].as_str().unwrap();
    let out = b.cli(&["evidence", "export", sid, "--out", bundle.path().to_str().unwrap()], None);
    assert!(!out.status.success(), "no bundle of the swapped file: {}", stdout(&out));
    let why = stderr(&out);
    assert!(
        why.contains(&format!(
            "was written for recording {}, not {}",
            first["id"].as_str().unwrap(),
            rec["id"].as_str().unwrap()
        )),
        "{why}"
    );
    assert!(!path.with_extension("manifest.sig").exists(), "never signed");
}
