//! Red team `h-red18e`: issue 18's evidence pipeline as built on main, attacked by an insider
//! with root on the box's disk but none of its keys. Each test passes while the hole it names
//! is open (it asserts the attack works); a fix flips it to assert the refusal or the detection.
//! All but `red18e_a_copy_from_before_the_first_start_verifies_against_any_store` (hole 5, left to
//! h-arc18j) are flipped.

use crate::harness::*;

/// The at-rest header line and the whole records after it: (header length, each record's end).
/// Read from the length fields alone, as anyone with the disk can.
fn record_ends(file: &[u8]) -> (usize, Vec<usize>) {
    let header = file.iter().position(|b| *b == b'\n').expect("an at-rest header line") + 1;
    let mut at = header;
    let mut ends = Vec::new();
    while let Some(len) = file.get(at..at + 4) {
        let n = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        if at + 4 + n > file.len() {
            break;
        }
        at += 4 + n;
        ends.push(at);
    }
    (header, ends)
}

/// A box killed (SIGKILL) in the middle of an SSH session printing `TAG-line-N` lines, once the
/// box shows line 30 and `settle` more has passed (a writer's fsync cadence): the stopped box,
/// the recording's row and path, and what the box showed of it.
pub(crate) fn killed_mid_session(
    sshd: &Sshd,
    tag: &str,
    settle: std::time::Duration,
) -> (Box, serde_json::Value, std::path::PathBuf, String) {
    let mut b = Box::with_target(sshd);
    b.serve();
    let mut client = b
        .ssh("alice@web01")
        .arg(format!("for i in $(seq 1 600); do echo {tag}-line-$i; sleep 0.1; done"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rec = b.live_recording(&mut client);
    let id = rec["id"].as_str().unwrap().to_owned();
    let seen = eventually(30, "30 lines recorded", || {
        let text = b.export(&id);
        text.contains(&format!("{tag}-line-30")).then_some(text)
    });
    std::thread::sleep(settle);
    b.kill9();
    let _ = client.kill();
    let _ = client.wait();
    let path = b.data().join(rec["path"].as_str().unwrap());
    (b, rec, path, seen)
}

/// Invariant broken: "records are bound to their place … removing, repeating or reordering
/// records without the keys fails by name", and "crash recovery never destroys authentic data".
/// The counters bind each record's place from the start, but nothing binds where a recording
/// ENDS: the box never notes how many records it made durable. An insider kills the box
/// mid-session (or a power cut does it for them) and, before it starts again, cuts the file at
/// any record boundary, the last minutes of the session with it (length fields are in clear; no
/// key needed). Recovery finds nothing out of place, moves nothing aside, and the recording is
/// sealed with only "the box stopped uncleanly; recorded up to here": the bundle VERIFIES, no
/// quarantined bytes, no `recording_quarantined` event, and the removed commands are gone.
/// Fix shape: the writer notes its durable record count (and the running SHA-256) in the index
/// at each fsync cadence; recovery compares, and a file shorter than what was made durable is
/// named (audit event, a gap in the signed manifest saying records were removed after they were
/// written), never sealed as a plain crash.
/// Flipped (h-red18e): closed as in the fix shape; the test asserts the signed gap and the event.
#[test]
fn red18e_records_cut_off_the_end_after_a_crash_are_sealed_as_a_plain_crash() {
    let sshd = Sshd::start();
    // Some seconds of the session are on disk, whole and fsync'd: the box shows them.
    let (mut b, rec, path, seen) = killed_mid_session(&sshd, "red18e", std::time::Duration::ZERO);
    let id = rec["id"].as_str().unwrap().to_owned();
    let bytes = std::fs::read(&path).unwrap();
    let (header, ends) = record_ends(&bytes);
    assert!(ends.len() >= 20, "one record an event: {} records", ends.len());
    // The attack: the file cut at a record boundary, a third of the records kept.
    let keep = ends[ends.len() / 3];
    assert!(keep > header);
    std::fs::write(&path, &bytes[..keep]).unwrap();
    b.serve();
    let sealed = eventually(60, "recovered and sealed", || {
        let r = b.recordings().into_iter().find(|r| r["id"] == id.as_str())?;
        (r["status"] != "recording" && path.with_extension("manifest.sig").exists()).then_some(r)
    });
    assert_eq!(sealed["bytes"].as_u64(), Some(keep as u64), "the cut file is taken as the recording");
    let bundle = tempfile::tempdir().unwrap();
    let sid = rec["session_id"].as_str().unwrap();
    b.ok(&["evidence", "export", sid, "--out", bundle.path().to_str().unwrap()], None);
    let out = crate::evidence::verify(bundle.path());
    assert!(out.status.success(), "the cut recording's bundle VERIFIES: {}{}", stdout(&out), stderr(&out));
    let cast = std::fs::read_to_string(bundle.path().join(format!("{id}.cast"))).unwrap();
    assert!(seen.contains("red18e-line-30"), "the box had recorded line 30");
    assert!(!cast.contains("red18e-line-30"), "line 30 is gone from the verified evidence");
    // Closed: the box had noted what it made durable, and recovery finds the file shorter:
    // the signed manifest says records were removed after they were written, and an audit
    // event names it.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join(format!("{id}.manifest.json"))).unwrap()).unwrap();
    let gaps = manifest["gaps"].as_array().unwrap();
    assert!(gaps.iter().any(|g| g["reason"].as_str().unwrap().contains("stopped uncleanly")), "{gaps:?}");
    let cut = gaps
        .iter()
        .find(|g| g["reason"].as_str().unwrap().contains("removed after they were written"))
        .unwrap_or_else(|| panic!("the cut is stated: {gaps:?}"));
    assert!(cut["reason"].as_str().unwrap().contains(&format!("held {keep} stored bytes")), "{cut}");
    let said = stdout(&out);
    assert!(said.contains("removed after they were written"), "the verifier shows it: {said}");
    let ev = b.audit().into_iter().find(|e| e["kind"] == "recording_cut_after_durable").expect("an audit event");
    assert_eq!(ev["detail"]["recording"], id.as_str(), "{ev}");
    assert_eq!(ev["detail"]["stored_bytes"].as_u64(), Some(keep as u64), "{ev}");
    assert!(ev["detail"]["durable_bytes"].as_u64().unwrap() > keep as u64, "{ev}");
}

/// Invariant broken: "a rollback of the box's disk is named by the store … what the store does
/// not have yet (since the last checkpoint sent, at most a minute while online) is not covered",
/// and red team h-red18d's fix "a box that cannot write its checkpoints says so" (in the audit
/// log and `sync status`, not only its own log). `audit.checkpoints.sent`, the note of how far
/// the store took the checkpoints, is a plain file: made a folder (no key), every send puts the
/// first checkpoint again and then fails to note it, so no later checkpoint ever reaches the
/// store — while the store is online and recordings upload fine. The box says so only in its
/// log ("not sent to the store yet; sent later"): no audit event, `sync status` says checkpoints
/// are fine. Weeks later the insider rolls the index and checkpoints back over whatever they
/// did, and `audit --verify` exits 0, "verified against the store". Fix shape: a send that fails
/// (or a note that cannot be written) is an audit event and a `sync status` state like a failed
/// signing; the note is written through `witness-keys`' private-file writer (a folder or link in
/// its place replaced, or named); and checkpoints older than a few minutes not in the store make
/// `audit --verify` NOT COMPARED (exit 3), not verified.
/// Flipped (h-red18e): an empty folder is replaced by the note, every checkpoint reaches the
/// store and the rollback is named (exit 1); a folder that cannot be replaced is an event and a
/// `sync status` state. (Checkpoints unsent past 5 min: NOT COMPARED, a unit test.)
#[test]
fn red18e_a_sent_note_made_a_folder_keeps_checkpoints_from_the_store_and_a_rollback_verifies() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo before").output().unwrap().status.success());
    assert!(b.stop().success());
    let prefix = s3.dir.path().join(S3_BUCKET).join(box_id(&b)).join("audit-checkpoints");
    let count = || std::fs::read_dir(&prefix).map(|d| d.count()).unwrap_or(0);
    let in_store = count();
    assert!(in_store >= 1, "the stop's checkpoint reached the store");
    // The attack, once: the note a folder.
    let note = b.data().join("audit.checkpoints.sent");
    let _ = std::fs::remove_file(&note);
    std::fs::create_dir(&note).unwrap();
    // The disk as it is now, to be put back later.
    let keep = tempfile::tempdir().unwrap();
    for f in ROLLED_BACK {
        let _ = std::fs::copy(b.data().join(f), keep.path().join(f));
    }
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo hidden-later").output().unwrap().status.success());
    assert!(b.stop().success());
    let local = std::fs::read_to_string(b.data().join("audit.checkpoints")).unwrap();
    assert!(local.lines().count() > in_store, "checkpoints signed on the box: {local}");
    // Closed: the empty folder is replaced by the note (a private file), and the later
    // checkpoints reach the store.
    let meta = std::fs::symlink_metadata(&note).unwrap();
    assert!(meta.is_file(), "the note is a file again");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o600);
    assert_eq!(count(), local.lines().count(), "every checkpoint reached the store");
    let st = b.json(&["sync", "status", "--json"]);
    assert_eq!(st["audit_checkpoints"]["state"], "ok", "{st}");
    // The rollback over the failed login and the session is named by the store.
    let later = b.audit().len();
    for f in ROLLED_BACK {
        let _ = std::fs::remove_file(b.data().join(f));
        if keep.path().join(f).exists() {
            std::fs::copy(keep.path().join(f), b.data().join(f)).unwrap();
        }
    }
    assert!(b.audit().len() < later, "the tail is gone");
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "the rollback is named: {} {}", stdout(&out), stderr(&out));
    // A note that cannot be replaced (a folder with something in it): the checkpoints are sent
    // anyway, and the failure is an audit event and a `sync status` state, not only a log line.
    std::fs::remove_file(&note).unwrap();
    std::fs::create_dir(&note).unwrap();
    std::fs::write(note.join("red18e"), b"x").unwrap();
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo after-the-folder").output().unwrap().status.success());
    assert!(b.stop().success());
    let failed = b.audit().into_iter().find(|e| e["kind"] == "audit_checkpoint_send_failed").expect("an event");
    assert!(failed["detail"]["error"].as_str().unwrap().contains("not empty"), "{failed}");
    let st = b.json(&["sync", "status", "--json"]);
    assert_eq!(st["audit_checkpoints"]["state"], "not_sent", "{st}");
    assert!(st["audit_checkpoints"]["error"].as_str().unwrap().contains("not empty"), "{st}");
    let local = std::fs::read_to_string(b.data().join("audit.checkpoints")).unwrap();
    let newest: serde_json::Value = serde_json::from_str(local.lines().last().unwrap()).unwrap();
    let seq = newest["checkpoint"]["seq"].as_u64().unwrap();
    let sent = std::fs::read_dir(&prefix)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(&format!("{seq:012}-")));
    assert!(sent, "the newest checkpoint {seq} reached the store anyway");
}

/// Invariant broken: "a rebuilt index holds only what the box signed … a session with no such
/// recording is not restored; each refusal is printed and counted", and the write-only recorder
/// key ("a stolen recorder key reads no recording"). The rebuild finds sessions only through
/// their session manifests and never checks that a manifest is the one for the place it is
/// stored under. A PutObject alone (the recorder's write-only key, in clear in `store.toml` on
/// the box) copies another session's genuine signed manifest and signature over a session's
/// own: the rebuild restores the other session "again" (already in the index), refuses nothing,
/// names nothing, and the overwritten session is gone from the rebuilt box while its signed
/// recording sits untouched in the bucket. Fix shape: a session manifest counts only under its
/// own key (its signed session id, user and start are the key's); the rebuild also walks the
/// recordings' own signed manifests under the box's prefix, so a signed recording no session
/// manifest leads to is restored (or at least named and counted).
/// Flipped (h-red18e): the copy is refused and the hidden signed recording named and counted
/// (not restored); since issue 18's `h-fix18g` its session is restored too, made from its signed
/// recordings and marked as reconstructed (this test asserted one session restored before).
#[test]
fn red18e_a_session_manifest_copied_over_another_hides_that_session_from_the_rebuild() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let (mut b, recs) = crate::store::pruned_sessions(&sshd, &s3, &["red18e-innocent", "red18e-hidden"]);
    eventually(30, "both session manifests stored and signed", || {
        let sigs = crate::store::walk(s3.dir.path()).iter().filter(|p| p.ends_with("/manifest.sig")).count();
        (sigs >= 2).then_some(())
    });
    let before = b.sessions();
    assert_eq!(before.len(), 2);
    b.stop();
    let bucket = s3.dir.path().join(S3_BUCKET).join(box_id(&b));
    let dir = |r: &serde_json::Value| {
        bucket.join(&r["started_at"].as_str().unwrap()[..10]).join(r["session_id"].as_str().unwrap())
    };
    let (innocent, hidden) = (&recs[0], &recs[1]);
    assert_ne!(innocent["session_id"], hidden["session_id"]);
    // The attack: two PUTs, of bytes the bucket already holds.
    for f in ["manifest.json", "manifest.sig"] {
        std::fs::copy(dir(innocent).join(f), dir(hidden).join(f)).unwrap();
    }
    // The hidden session's signed recording is still in the bucket, untouched.
    let object = crate::store::walk(&dir(hidden))
        .into_iter()
        .find(|p| p.ends_with(&format!("{}.manifest.sig", hidden["id"].as_str().unwrap())));
    assert!(object.is_some(), "its signed recording stays in the bucket");
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(b.data().join(f));
    }
    let out = b.ok(&["index", "rebuild", "--from-store"], None);
    // Closed: the copy is refused (not the manifest of the session stored there), and the
    // hidden session's signed recording, which no session manifest now leads to, is named and
    // restored in a session made from it, marked as reconstructed.
    let hsid = hidden["session_id"].as_str().unwrap();
    let isid = innocent["session_id"].as_str().unwrap();
    assert!(out.contains("restored 2 sessions (0 were already in the index)"), "{out}");
    assert!(
        out.contains(&format!("{hsid}/manifest.json: it is the manifest of session {isid}")),
        "the copy refused: {out}"
    );
    assert!(
        out.contains(&format!("recording {} of session {hsid}", hidden["id"].as_str().unwrap()))
            && out.contains("no session manifest leads to it"),
        "the hidden recording named: {out}"
    );
    let after = b.sessions();
    assert_eq!(after.len(), 2, "{after:?}");
    let restored = after.iter().find(|s| s["id"] == hidden["session_id"]).expect("the hidden session restored");
    assert!(
        restored["end_reason"].as_str().unwrap().contains("reconstructed from its signed recordings"),
        "{restored}"
    );
    assert_eq!(restored["user"], before.iter().find(|s| s["id"] == hidden["session_id"]).unwrap()["user"]);
    let recs = b.recordings();
    let back = recs.iter().find(|r| r["id"] == hidden["id"]).expect("its recording restored");
    assert_eq!(back["sha256"], hidden["sha256"], "{back}");
    // It plays back from the store as it was recorded.
    assert!(b.export(hidden["id"].as_str().unwrap()).contains("red18e-hidden"), "plays back");
    let rebuilt = b.audit().into_iter().find(|e| e["kind"] == "index_rebuilt").unwrap();
    assert_eq!(rebuilt["detail"]["session_manifests_not_under_their_own_key"], 1, "{rebuilt}");
    assert_eq!(rebuilt["detail"]["signed_recordings_not_reached"], 1, "{rebuilt}");
    assert_eq!(rebuilt["detail"]["sessions_reconstructed"], 1, "{rebuilt}");
}

/// Invariant broken: "the audit log is append-only, provably: each event is hash-chained … and
/// the daemon signs the chain's head". `DATA/audit-pending.jsonl` (where `witness-keys` leaves
/// the events of a key that would not unseal) is a plain file, and every opening of the data dir
/// — the daemon's start, or any `witness` command — moves each of its lines into the keyed hash
/// chain with the kind and detail the line gives. Root, with no key, writes lines of any kind:
/// here a retention deletion of a recording that never happened, a signed checkpoint record the
/// box never made, and a failure of the checkpoints' signing that never happened (so `sync
/// status` says so). They go into the chain as the box's own, `audit --verify` finds it intact,
/// and the next signed checkpoint covers them. Fix shape: the pending file carries only the kinds
/// `witness-keys` writes (`tpm_unseal_failed`, `key_file_exposed`, `key_file_foreign_owner`) and
/// each is moved in under one kind of its own marked as read from an unauthenticated file;
/// anything else in it is named as planted, never taken as an event.
/// Flipped (h-red18e): each forged line is named as planted; a kind witness-keys writes is taken,
/// marked as read from an unauthenticated file.
#[test]
fn red18e_lines_planted_in_the_pending_audit_file_become_the_boxs_own_events() {
    let mut b = Box::new();
    b.serve();
    assert!(b.stop().success());
    let forged = [
        serde_json::json!({ "kind": "recording_deleted", "recording": "0190aaaa-red18e-forged", "reason": "retention", "retention_days": 1 }),
        serde_json::json!({ "kind": "audit_checkpoint_failed", "error": "red18e: made up by root, no key" }),
        serde_json::json!({ "kind": "hold_removed", "session": "0190bbbb-red18e-forged", "by": "auditor" }),
    ];
    let lines: String = forged.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(b.data().join("audit-pending.jsonl"), lines).unwrap();
    // Any command that opens the data dir reads them: closed, none is taken as the event it
    // claims to be; each is named as a planted line, with what it said.
    let events = b.audit();
    for f in &forged {
        let kind = f["kind"].as_str().unwrap();
        assert!(!events.iter().any(|e| e["kind"] == kind), "{kind} not taken in: {events:?}");
    }
    let planted: Vec<_> = events.iter().filter(|e| e["kind"] == "audit_pending_line_planted").collect();
    assert_eq!(planted.len(), forged.len(), "{planted:?}");
    for (e, f) in planted.iter().zip(&forged) {
        assert!(e["detail"]["line"].as_str().unwrap().contains(f["kind"].as_str().unwrap()), "{e}");
        assert!(e["detail"]["read_from"].as_str().unwrap().contains("not authenticated"), "{e}");
    }
    assert!(!b.data().join("audit-pending.jsonl").exists(), "moved in and cleared");
    // A kind witness-keys does write there is taken, marked as read from an unauthenticated file.
    std::fs::write(
        b.data().join("audit-pending.jsonl"),
        format!("{}\n", serde_json::json!({ "kind": "tpm_unseal_failed", "key": "red18e-index.key" })),
    )
    .unwrap();
    let events = b.audit();
    let e = events.iter().find(|e| e["kind"] == "tpm_unseal_failed").expect("taken in");
    assert_eq!(e["detail"]["key"], "red18e-index.key", "{e}");
    assert!(e["detail"]["read_from"].as_str().unwrap().contains("audit-pending.jsonl"), "{e}");
    // The box's own status does not repeat the forged failure.
    let st = b.json(&["sync", "status", "--json"]);
    assert_ne!(st["audit_checkpoints"]["state"], "failing", "{st}");
    assert!(!st.to_string().contains("made up by root"), "{st}");
}

/// Invariant broken: "a rollback of the box's disk is named by the store … with the file gone
/// the store the log records is the one insisted on" (red team h-red18d's fix). The store a
/// comparison must be made with is pinned only by a signed checkpoint or by an
/// `audit_checkpoint_signed` record in the log, and a box has neither before its first start. A
/// copy of the data dir taken when the box was provisioned (`init`, users, targets, the store
/// set: all before the service first ran, as an image or a backup of a new box is) is put back a
/// year later with `store-read.toml` naming a bucket of one's own: `audit --verify` exits 0,
/// "verified against the store", while the real store holds checkpoints of everything since.
/// Fix shape: the store is pinned from the start (`store set`/`init` record it in the chain, or
/// the box id's first checkpoint is signed at `init`), and a comparison that has nothing signed
/// to pin the store to, or finds none of this box's checkpoints in it while the log is not new,
/// is NOT COMPARED (exit 3), never verified. Flipped: `store set` now records the store in the
/// chain before the file changes, and only that store is compared with.
#[test]
fn red18e_a_copy_from_before_the_first_start_verifies_against_any_store() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    // Provisioned, never started: the copy.
    let keep = tempfile::tempdir().unwrap();
    for f in ROLLED_BACK {
        let _ = std::fs::copy(b.data().join(f), keep.path().join(f));
    }
    assert!(!b.data().join("audit.checkpoints").exists());
    b.serve();
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("echo a-year-of-sessions").output().unwrap().status.success());
    assert!(b.stop().success());
    let prefix = s3.dir.path().join(S3_BUCKET).join(box_id(&b)).join("audit-checkpoints");
    assert!(std::fs::read_dir(&prefix).map(|d| d.count()).unwrap_or(0) >= 1, "the real store holds checkpoints");
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(0), "{} {}", stdout(&out), stderr(&out));
    let later = b.audit().len();
    // Put back: the provisioning copy; no checkpoint file was in it.
    for f in ROLLED_BACK.iter().chain(&["audit.checkpoints.sent"]) {
        let _ = std::fs::remove_file(b.data().join(f));
        if keep.path().join(f).exists() {
            std::fs::copy(keep.path().join(f), b.data().join(f)).unwrap();
        }
    }
    assert!(b.audit().len() < later, "the year is gone");
    // As built, the real store names it.
    let out = b.cli(&["audit", "--verify"], None);
    assert_eq!(out.status.code(), Some(1), "{} {}", stdout(&out), stderr(&out));
    // The attack: a read store of one's own.
    let theirs = S3::start();
    b.store_s3("set-read", &theirs.endpoint());
    let out = b.cli(&["audit", "--verify"], None);
    let said = stdout(&out);
    // Closed by h-arc18j's rule (the store compared with is the one the log last records:
    // `store set` records it before the file changes): a bucket of one's own is not it.
    assert_eq!(out.status.code(), Some(3), "the rolled-back log is not compared: {said} {}", stderr(&out));
    assert!(!said.contains("verified against the store"), "{said}");
    assert!(said.contains("is not the one the audit log records as set by `witness store set`"), "{said}");
}

/// Invariant broken: "nothing is deleted before the remote copy is verified", with "a recording is
/// hashed once on its way out" (the multipart fast path). Sealing takes each upload part's MD5
/// from the file as it reads it, but never compares the stored bytes with the SHA-256 and length
/// the writer recorded in the index; the multipart upload is then verified by the ETag of those
/// same MD5s alone (the writer's SHA-256 goes only into unchecked metadata). The at-rest header
/// is plaintext JSON that no record authenticates byte for byte: its keys put in another order
/// (same length, no key needed) while sealing waits (the signing key unreadable for a while, as
/// root can make it), and the changed file is sealed, sent in parts, "verified" and its local
/// copy pruned; the box then refuses to play or export the only copy left, for good ("does not
/// match its recorded sha256"), and `evidence export` of the session fails. Fix shape: sealing
/// refuses stored bytes whose length or SHA-256 is not the index's (a `recording_changed_…`
/// event, the local copy kept), and a multipart upload is verified against the writer's SHA-256
/// too (the composite `x-amz-checksum-sha256` of the parts, or the sealed whole-file hash).
/// Flipped (h-red18e): sealing refuses (an event), nothing goes up, the local copy is kept.
#[test]
fn red18e_a_header_reordered_before_sealing_goes_up_in_parts_as_verified_and_is_then_refused() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0\npart_size_mb = 5");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    // Sealing held back: the signing key unreadable (a folder where its file was).
    let key = b.data().join("keys/evidence_ed25519");
    let aside = b.data().join("keys/evidence_ed25519.aside");
    std::fs::rename(&key, &aside).unwrap();
    std::fs::create_dir(&key).unwrap();
    let big = b.ssh("alice@web01").arg("head -c 9000000 /dev/zero | base64 -w0").output().unwrap();
    assert!(big.status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let recorded_sha = rec["sha256"].as_str().unwrap().to_owned();
    let local = b.data().join(rec["path"].as_str().unwrap());
    eventually(30, "sealing refused while the key is unreadable", || {
        let r = b.recordings().into_iter().find(|r| r["id"] == id.as_str())?;
        r["seal_error"].is_string().then_some(())
    });
    // The attack: the header line's keys in reverse order, the same length.
    let mut bytes = std::fs::read(&local).unwrap();
    assert!(bytes.len() > 10 * 1024 * 1024, "several parts: {}", bytes.len());
    let end = bytes.iter().position(|b| *b == b'\n').unwrap();
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[..end]).unwrap();
    let mut pairs: Vec<String> =
        header.iter().map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v)).collect();
    pairs.reverse();
    let reordered = format!("{{{}}}", pairs.join(","));
    assert_eq!(reordered.len(), end, "same length");
    assert_ne!(reordered.as_bytes(), &bytes[..end]);
    bytes[..end].copy_from_slice(reordered.as_bytes());
    std::fs::write(&local, &bytes).unwrap();
    assert_ne!(sha256_file(&local), recorded_sha);
    std::fs::remove_dir(&key).unwrap();
    std::fs::rename(&aside, &key).unwrap();
    s3.run();
    // Closed: sealing hashes the stored bytes as it reads them and finds they are not what the
    // writer put in the index; it refuses, names the change once, and nothing goes up.
    let ev = eventually(180, "the change named at sealing", || {
        b.audit().into_iter().find(|e| e["kind"] == "recording_changed_before_sealing")
    });
    assert_eq!(ev["detail"]["recording"], id.as_str(), "{ev}");
    assert!(ev["detail"]["error"].as_str().unwrap().contains("not what the writer recorded"), "{ev}");
    let r = b.recordings().into_iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert!(r["seal_error"].as_str().unwrap().contains("changed on disk"), "{r}");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let r = b.recordings().into_iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_ne!(r["status"], "uploaded", "{r}");
    assert!(local.exists(), "the local copy is kept");
    assert!(!local.with_extension("manifest.sig").exists(), "not signed");
    assert!(!b.audit_kinds().iter().any(|k| k == "local_copy_pruned"));
    let object = crate::store::walk(s3.dir.path()).into_iter().find(|p| p.ends_with(&format!("{id}.cast")));
    assert!(object.is_none(), "nothing sent: {object:?}");
    let named = b.audit().into_iter().filter(|e| e["kind"] == "recording_changed_before_sealing").count();
    assert_eq!(named, 1, "named once, not at every retry");
}

/// Invariant broken: "a finished recording is sealed before it is queued for upload: its signed
/// manifest goes wherever the recording goes", and "nothing is deleted before the remote copy is
/// verified". The upload and verify steps ask only that a manifest and a signature are beside
/// the recording, never that they are its own: root (no key) copies another recording's genuine
/// manifest and signature over a sealed recording's while its upload waits (the store away).
/// The recording goes up, the OTHER recording's manifest is stored as its evidence, it is marked
/// uploaded and its local copy pruned: its own signed manifest is gone for good, and `index
/// rebuild --from-store` refuses the recording for ever ("its signed manifest names recording
/// …"). Deleting the manifest instead is caught (the upload waits, unsealed); swapping it is
/// not. Fix shape: before storing the evidence (and before marking uploaded), the verify step
/// checks the manifest it sends: it verifies with the box's key and names this recording, its
/// session and its signed length and hash as sealing computed them (kept with the seal job).
/// Flipped (h-red18e): the verify step refuses the manifest (an event), the victim is kept.
#[test]
fn red18e_another_recordings_manifest_goes_up_as_this_ones_and_the_recording_is_pruned() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    for word in ["red18e-other", "red18e-victim"] {
        assert!(b.ssh("alice@web01").arg(format!("echo {word}")).output().unwrap().status.success());
    }
    let recs = eventually(60, "both sealed, their uploads waiting on the store", || {
        let r = b.recordings();
        let sealed = |x: &serde_json::Value| {
            let p = b.data().join(x["path"].as_str().unwrap());
            p.with_extension("manifest.sig").exists()
        };
        (r.len() == 2 && r.iter().all(sealed)).then_some(r)
    });
    let (other, victim) = (&recs[0], &recs[1]);
    let path = |r: &serde_json::Value| b.data().join(r["path"].as_str().unwrap());
    // The attack: two files copied on the disk.
    for ext in ["manifest.json", "manifest.sig"] {
        std::fs::copy(path(other).with_extension(ext), path(victim).with_extension(ext)).unwrap();
    }
    s3.run();
    let vid = victim["id"].as_str().unwrap();
    // Closed: the manifest beside the victim verifies with the box's key but names another
    // recording, so it is not stored as the victim's, the victim is not marked uploaded and its
    // local copy is kept; the refusal is an audit event naming both.
    let refused = eventually(120, "the victim's manifest refused, the other uploaded and pruned", || {
        let r = b.recordings();
        let o = r.iter().find(|x| x["id"] == other["id"])?;
        let done = o["status"] == "uploaded" && !path(o).exists();
        let e = b.audit().into_iter().find(|e| e["kind"] == "recording_evidence_refused")?;
        done.then_some(e)
    });
    assert_eq!(refused["detail"]["recording"], vid, "{refused}");
    let said = refused["detail"]["error"].as_str().unwrap();
    assert!(said.contains(&format!("names recording {}", other["id"].as_str().unwrap())), "{said}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let v = b.recordings().into_iter().find(|x| x["id"] == vid).unwrap();
    assert_ne!(v["status"], "uploaded", "{v}");
    assert!(path(&v).exists(), "the victim's local copy is kept");
    let stored = crate::store::walk(s3.dir.path()).into_iter().find(|p| p.ends_with(&format!("{vid}.manifest.json")));
    assert!(stored.is_none(), "no manifest stored under the victim's name: {stored:?}");
    let st = b.json(&["sync", "status", "--json"]);
    assert!(st.to_string().contains("evidence refused"), "{st}");
}

/// Invariant broken: "recovery moves everything from the first bad record on to
/// `NAME.quarantine` … the manifest states the gap with `quarantined_bytes`": sealing takes that
/// gap from whatever files named `NAME.quarantine`, `NAME.1.quarantine`, … lie beside the
/// recording, not from what recovery did. Root (no key) lays one beside a recording that ended
/// cleanly while its sealing waits (the signing key unreadable for a while): the box signs that
/// stored bytes of it were "torn, or changed on disk" and moved aside, the bundle VERIFIES with
/// that gap, and the genuine evidence reads as damaged (an insider discrediting the recording of
/// their own session). Fix shape: recovery records what it moved aside (file, bytes) in the
/// index, and sealing states only those gaps; a quarantine file the index does not know is named
/// (audit event), never signed as the recording's.
/// Flipped (h-red18e): no gap is signed; the planted file is named by an event.
#[test]
fn red18e_a_planted_quarantine_file_is_signed_as_the_recordings_damage() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let key = b.data().join("keys/evidence_ed25519");
    let aside = b.data().join("keys/evidence_ed25519.aside");
    std::fs::rename(&key, &aside).unwrap();
    std::fs::create_dir(&key).unwrap();
    assert!(b.ssh("alice@web01").arg("echo red18e-clean-session").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(rec["status"], "completed");
    let path = b.data().join(rec["path"].as_str().unwrap());
    eventually(30, "sealing refused while the key is unreadable", || {
        let r = b.recordings().into_iter().find(|r| r["id"] == id.as_str())?;
        r["seal_error"].is_string().then_some(())
    });
    // The attack: a file of any bytes under the quarantine's name.
    std::fs::write(path.with_extension("quarantine"), vec![0x42u8; 4096]).unwrap();
    std::fs::remove_dir(&key).unwrap();
    std::fs::rename(&aside, &key).unwrap();
    eventually(40, "sealed", || path.with_extension("manifest.sig").exists().then_some(()));
    let bundle = tempfile::tempdir().unwrap();
    b.ok(&["evidence", "export", rec["session_id"].as_str().unwrap(), "--out", bundle.path().to_str().unwrap()], None);
    // Closed: recovery never ran, so no gap is signed; the file is named, not signed.
    let out = crate::evidence::verify(bundle.path());
    let said = stdout(&out);
    assert!(out.status.success(), "{said}{}", stderr(&out));
    assert!(!said.contains("quarantined") && !said.contains("changed on disk"), "{said}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join(format!("{id}.manifest.json"))).unwrap()).unwrap();
    assert!(m["gaps"].as_array().unwrap().is_empty(), "{m}");
    let ev = b.audit().into_iter().find(|e| e["kind"] == "quarantine_file_unknown").expect("the planted file named");
    assert_eq!(ev["detail"]["recording"], id.as_str(), "{ev}");
    assert_eq!(ev["detail"]["bytes"], 4096, "{ev}");
    assert!(!b.audit_kinds().iter().any(|k| k == "recording_quarantined" || k == "recovered"), "no recovery ran");
}
