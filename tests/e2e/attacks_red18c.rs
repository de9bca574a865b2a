//! Red team `h-red18c`, end to end: the audit rollback anchor and streamed uploads. Each passed
//! while the hole it names was open; each now asserts the refusal or the detection.

use crate::harness::*;

/// The store the checkpoints were compared with was whatever `store-read.toml` on the box's disk
/// named, a plain file: an insider who rolls the disk back (no keys needed) also writes that
/// file, naming an empty folder. Old code: `audit --verify` exited 0, "verified against the
/// store dir:…", with no "on this box's disk" note (that note looked at `store.toml`, not the
/// store compared with). Now each checkpoint signs the store it was sent to, and a comparison
/// with another is `NOT COMPARED` (exit 3), naming both.
#[test]
fn red18c_a_read_store_file_naming_an_empty_folder_verifies_a_rolled_back_log() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    // A rolled-back disk, the rollback named as built.
    let b = crate::attacks_red18d::rolled_back_box(&sshd, &s3);
    // The attack: one more plain file on the same disk.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(b.data().join("store-read.toml"), format!("kind = \"dir\"\npath = {:?}\n", empty.path())).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    let said = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{said} {}", stderr(&out));
    assert!(!said.contains("verified against"), "{said}");
    assert!(said.contains("NOT COMPARED"), "{said}");
    assert!(
        said.contains(&format!("dir:{}, from store-read.toml", empty.path().display()))
            && said.contains("is not the one this box's signed checkpoint")
            && said.contains("was sent to (s3:"),
        "{said}"
    );
    // The file taken away, the store the checkpoints name still says what happened.
    std::fs::remove_file(b.data().join("store-read.toml")).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "{} {}", stdout(&out), stderr(&out));
}

/// One line of `audit.checkpoints` that does not parse (a torn append at a power cut, or a few
/// bytes an insider adds) stopped every later checkpoint: `write` and `send` read the whole file
/// first and gave up on it, so the box kept serving, warned once a minute, and sent the store
/// nothing more (old code: nothing after the torn line reached the store). Now a torn tail is
/// set aside (kept as `audit.checkpoints.torn-…`, an `audit_checkpoint_torn` event) and the
/// chain goes on; a bad line in the middle is named by `audit --verify` and stops nothing.
#[test]
fn red18c_a_torn_checkpoint_line_stops_every_later_checkpoint_reaching_the_store() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo before").output().unwrap().status.success());
    assert!(b.stop().success());
    let prefix = s3.dir.path().join(S3_BUCKET).join(box_id(&b)).join("audit-checkpoints");
    let count = || std::fs::read_dir(&prefix).map(|d| d.count()).unwrap_or(0);
    let sent = count();
    assert!(sent >= 1, "the stop's checkpoint reached the store");
    // A torn append: part of a line, no newline.
    let mut f = std::fs::OpenOptions::new().append(true).open(b.data().join("audit.checkpoints")).unwrap();
    std::io::Write::write_all(&mut f, b"{\"checkpoint\":{\"format\":\"witn").unwrap();
    drop(f);
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo later").output().unwrap().status.success());
    assert!(b.stop().success());
    assert!(count() > sent, "later checkpoints reached the store ({} then {})", sent, count());
    assert!(!b.log().contains("could not be checkpointed"), "{}", b.log());
    let kept: Vec<_> = std::fs::read_dir(b.data())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit.checkpoints.torn-"))
        .collect();
    assert_eq!(kept.len(), 1, "the torn end is kept beside the file");
    assert_eq!(std::fs::read(kept[0].path()).unwrap(), b"{\"checkpoint\":{\"format\":\"witn");
    assert!(b.audit_kinds().iter().any(|k| k == "audit_checkpoint_torn"), "{:?}", b.audit_kinds());
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(0), "the chain goes on and verifies: {} {}", stdout(&out), stderr(&out));
    // A line that is no checkpoint in the middle: named by verify, and checkpoints go on.
    let file = b.data().join("audit.checkpoints");
    let text = std::fs::read_to_string(&file).unwrap();
    let first_end = text.find('\n').unwrap() + 1;
    std::fs::write(&file, format!("{}not a checkpoint\n{}", &text[..first_end], &text[first_end..])).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("line 2 is not a checkpoint"), "{}", stderr(&out));
    let before = count();
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo after-a-bad-line").output().unwrap().status.success());
    assert!(b.stop().success());
    assert!(count() > before, "checkpoints go on past a bad line in the middle");
}

/// A box on S3 (5 MiB parts, nothing kept after upload) whose ~12 MB recording was sealed while
/// the store was away, its upload waiting: the box, the store (stopped), the recording's id,
/// its sealed length and its file.
pub(crate) fn sealed_while_the_store_is_away(sshd: &Sshd) -> (Box, S3, String, u64, std::path::PathBuf) {
    let s3 = S3::stopped();
    let mut b = Box::with_target(sshd);
    b.configure("store", "keep_local_days = 0\npart_size_mb = 5");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    let big = b.ssh("alice@web01").arg("head -c 9000000 /dev/zero | base64 -w0").output().unwrap();
    assert!(big.status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let sealed_bytes = rec["bytes"].as_u64().unwrap();
    let local = b.data().join(rec["path"].as_str().unwrap());
    eventually(60, "sealed, the upload waiting on the store", || upload_of(&b, &id).filter(|u| u.1 >= 1).map(|_| ()));
    (b, s3, id, sealed_bytes, local)
}

/// The upload job's rows in `sync status` for a recording: (state, attempts, reason).
pub(crate) fn upload_of(b: &Box, id: &str) -> Option<(String, u64, String)> {
    let st = b.json(&["sync", "status", "--json"]);
    st["jobs"].as_array()?.iter().find(|j| j["recording"] == id && j["step"] == "upload").map(|j| {
        (
            j["state"].as_str().unwrap_or("").to_owned(),
            j["attempts"].as_u64().unwrap_or(0),
            j["reason"].as_str().unwrap_or("").to_owned(),
        )
    })
}

/// A recording of several upload parts whose file grew after sealing (bytes appended while the
/// store was away): its sealed part digests no longer fit. Old code: the fallback path read and
/// sent each part as it now was, the store's answer matched what the box itself had just
/// hashed, and the recording was marked uploaded and verified (then pruned) though the store
/// held bytes that were not the sealed recording. Now a file whose length is not the sealed
/// one is refused before anything is sent: the upload waits with the reason, an audit event
/// names it once, and the local copy is kept as it is.
#[test]
fn red18c_a_recording_grown_after_sealing_is_uploaded_as_verified() {
    let sshd = Sshd::start();
    let (b, mut s3, id, sealed_bytes, local) = sealed_while_the_store_is_away(&sshd);
    assert!(sealed_bytes > 5 * 1024 * 1024, "several parts: {sealed_bytes}");
    let mut f = std::fs::OpenOptions::new().append(true).open(&local).unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 4096]).unwrap();
    drop(f);
    let grown = std::fs::read(&local).unwrap();
    s3.run();
    let attempts_before = upload_of(&b, &id).unwrap().1;
    let upload = eventually(90, "the grown copy refused", || {
        upload_of(&b, &id).filter(|u| u.1 > attempts_before && !u.2.contains("unreachable"))
    });
    assert_eq!(upload.0, "waiting", "{upload:?}");
    assert!(upload.2.contains("changed since it was sealed"), "{upload:?}");
    assert!(upload.2.contains(&format!("sealed at {sealed_bytes}")), "{upload:?}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = b.recordings().into_iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(r["status"], "completed", "not marked uploaded");
    assert_eq!(std::fs::read(&local).unwrap(), grown, "the local copy is kept as it is");
    let kinds = b.audit_kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "recording_changed_after_sealing").count(), 1, "{kinds:?}");
    assert!(!kinds.contains(&"local_copy_pruned".to_string()), "{kinds:?}");
    // Nothing of it went up as the recording.
    let stored = crate::store::walk(s3.dir.path());
    assert!(!stored.iter().any(|p| p.ends_with(".cast") || p.ends_with(".mp4")), "{stored:?}");
}

/// Objects under checkpoints' names were read whole (up to 64 of them, any size): a bucket
/// writer made every `audit --verify` and every start fetch gigabytes. Now such an object is read
/// no further than 64 KiB: one larger is not a checkpoint, said as too large, and (beyond the
/// local head) makes the verdict unconfirmed, never agreement.
#[test]
fn red18c_an_object_too_large_for_a_checkpoint_is_not_read_whole_nor_agreed_to() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo before").output().unwrap().status.success());
    assert!(b.stop().success());
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(0), "{} {}", stdout(&out), stderr(&out));
    let prefix = s3.dir.path().join(S3_BUCKET).join(box_id(&b)).join("audit-checkpoints");
    std::fs::write(prefix.join(format!("{:012}-{}.json", 99, "ab".repeat(32))), vec![b'{'; 8 << 20]).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{} {said}", stdout(&out));
    assert!(said.contains("does not confirm") && said.contains("up to checkpoint 99"), "{said}");
    assert!(said.contains("1 objects under checkpoints' names too large to be one"), "{said}");
}
