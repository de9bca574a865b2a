//! Index behaviour on a real SQLite file.

use super::*;

fn index() -> (tempdir::Dir, Index) {
    let dir = tempdir::Dir::new();
    let idx = Index::open(&dir.0.join("index.sqlite")).unwrap();
    (dir, idx)
}

mod tempdir {
    /// A throwaway directory removed on drop (no extra dependency for one use).
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "witness-index-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn alice() -> UserRecord {
    UserRecord {
        name: "alice".into(),
        role: Role::User,
        password_hash: Some("h".into()),
        ssh_keys: vec!["ssh-ed25519 AAAA x".into()],
    }
}

fn web01() -> TargetRecord {
    TargetRecord {
        name: "web01".into(),
        protocol: Protocol::Ssh,
        host: "127.0.0.1".into(),
        port: 22,
        login: "root".into(),
        secret: Secret::Password("s3cret".into()),
        host_key: None,
    }
}

#[test]
fn users_targets_grants() {
    let (_d, idx) = index();
    idx.add_user(&alice()).unwrap();
    assert!(matches!(idx.add_user(&alice()), Err(IndexError::Exists { .. })));
    assert_eq!(idx.user("alice").unwrap().unwrap().ssh_keys.len(), 1);
    idx.add_target(&web01()).unwrap();
    assert_eq!(format!("{:?}", idx.target("web01").unwrap().unwrap().secret), "Password(<redacted>)");
    assert!(idx.grant_of("alice", "web01").unwrap().is_none());
    idx.grant("alice", "web01", GrantFacts { expires_at: Some(5), allow_forwarding: false }).unwrap();
    idx.grant("alice", "web01", GrantFacts { expires_at: None, allow_forwarding: true }).unwrap();
    assert_eq!(idx.grant_of("alice", "web01").unwrap(), Some(GrantFacts { expires_at: None, allow_forwarding: true }));
    assert!(matches!(
        idx.grant("bob", "web01", GrantFacts { expires_at: None, allow_forwarding: false }),
        Err(IndexError::NotFound { what: "user", .. })
    ));
    assert!(idx.revoke("alice", "web01").unwrap());
    assert!(!idx.revoke("alice", "web01").unwrap());
    assert!(idx.pin_host_key("web01", "k1").unwrap());
    assert!(idx.pin_host_key("web01", "k1").unwrap(), "a racing first connection with the same key is fine");
    assert!(!idx.pin_host_key("web01", "k2").unwrap());
    assert_eq!(idx.target("web01").unwrap().unwrap().host_key.as_deref(), Some("k1"));
}

#[test]
fn session_status_follows_recordings() {
    let (_d, idx) = index();
    idx.create_session("s1", "alice", "web01", Protocol::Ssh, Some("127.0.0.1:5000")).unwrap();
    idx.create_recording("r1", "s1", "shell", "recordings/r1.cast").unwrap();
    assert_eq!(idx.sessions().unwrap()[0].status, "recording");
    assert_eq!(idx.unfinished_recordings().unwrap().len(), 1);
    assert_eq!(idx.open_sessions().unwrap(), vec!["s1".to_string()]);
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 42,
        sha256: Some("ab".into()),
        duration: Some(1.0),
        recovered: false,
    };
    idx.finish_recording("r1", &end).unwrap();
    idx.end_session("s1", "client closed", false).unwrap();
    idx.end_session("s1", "late", true).unwrap();
    let s = &idx.sessions().unwrap()[0];
    assert_eq!(
        (s.status.as_str(), s.bytes, s.end_reason.as_deref(), s.recovered),
        ("completed", 42, Some("client closed"), false)
    );
    let r = idx.recording("r1").unwrap().unwrap();
    assert_eq!((r.user.as_str(), r.bytes, r.status.as_str()), ("alice", 42, "completed"));
    assert!(idx.unfinished_recordings().unwrap().is_empty());
}

#[test]
fn audit_round_trip_and_reopen() {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("index.sqlite");
    {
        let idx = Index::open(&path).unwrap();
        idx.audit("login_failed", Some("alice"), None, None, &serde_json::json!({"method": "password"})).unwrap();
    }
    let idx = Index::open(&path).unwrap();
    let ev = idx.audit_events(10).unwrap();
    assert_eq!((ev.len(), ev[0].kind.as_str()), (1, "login_failed"));
    assert_eq!(ev[0].detail["method"], "password");
}

#[test]
fn upload_queue_claims_retries_and_verifies() {
    let (_d, idx) = index();
    idx.create_session("s1", "alice", "web01", Protocol::Ssh, None).unwrap();
    idx.create_recording("r1", "s1", "shell", "recordings/r1.cast").unwrap();
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration: None,
        recovered: false,
    };
    idx.finish_recording("r1", &end).unwrap();
    idx.enqueue_upload("r1", "box/s1/r1.cast").unwrap();
    idx.enqueue_upload("r1", "other").unwrap();
    assert_eq!(idx.backlog().unwrap().pending, 1);
    assert_eq!(idx.backlog().unwrap().pending_bytes, 10);
    let job = idx.claim_upload(1000, 60_000, 7, &|_| true).unwrap().unwrap();
    assert_eq!((job.object_key.as_str(), job.sha256.as_str(), job.bytes), ("box/s1/r1.cast", "ab", 10));
    assert!(idx.claim_upload(2000, 60_000, 8, &|_| true).unwrap().is_none(), "a leased job is not handed out twice");
    assert!(
        idx.claim_upload(2000, 60_000, 7, &|_| true).unwrap().is_none(),
        "not even to another worker of the holder"
    );
    assert!(idx.claim_upload(2000, 60_000, 8, &|pid| pid != 7).unwrap().is_some(), "unless its holder died");
    let parts = vec![PartRecord { number: 1, etag: "e1".into(), size: 5 }];
    idx.save_multipart("r1", Some("up-1"), &parts).unwrap();
    idx.upload_failed("r1", "connection refused", 5000).unwrap();
    assert!(idx.claim_upload(4000, 60_000, 7, &|_| true).unwrap().is_none(), "backoff holds the job until its time");
    let job = idx.claim_upload(5000, 60_000, 8, &|_| true).unwrap().unwrap();
    assert_eq!((job.attempts, job.upload_id.as_deref(), job.parts), (1, Some("up-1"), parts));
    assert_eq!(idx.upload_errors(10).unwrap()[0].2, "connection refused");
    assert!(idx.sessions_needing_manifest().unwrap().is_empty(), "session still open");
    idx.upload_verified("r1").unwrap();
    idx.end_session("s1", "done", false).unwrap();
    assert_eq!(idx.recording("r1").unwrap().unwrap().status, RecordingStatus::Uploaded);
    assert_eq!(idx.sessions().unwrap()[0].status, "uploaded");
    assert_eq!((idx.backlog().unwrap().pending, idx.backlog().unwrap().uploaded), (0, 1));
    assert_eq!(idx.sessions_needing_manifest().unwrap(), vec!["s1".to_string()]);
    idx.manifest_uploaded("s1", "box/s1/manifest.json").unwrap();
    assert!(idx.sessions_needing_manifest().unwrap().is_empty());
    assert_eq!(idx.prunable("9999").unwrap().len(), 1);
    idx.mark_pruned("r1").unwrap();
    assert!(idx.prunable("9999").unwrap().is_empty());
    idx.store_contact("dir:/x", Some(("offline", "connection refused"))).unwrap();
    idx.store_contact("dir:/x", None).unwrap();
    let h = idx.store_health().unwrap();
    assert_eq!((h.last_error_kind.as_deref(), h.last_success_at.is_some()), (Some("offline"), true));
}

#[test]
fn an_unsealed_recording_is_held_back_until_it_is_queued() {
    let (_d, idx) = index();
    idx.create_session("s1", "alice", "web01", Protocol::Ssh, None).unwrap();
    idx.create_recording("r1", "s1", "shell", "recordings/r1.cast").unwrap();
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration: None,
        recovered: false,
    };
    idx.finish_recording("r1", &end).unwrap();
    idx.upload_unsealed("r1", "box/s1/r1.cast", "no signing key").unwrap();
    idx.upload_unsealed("r1", "box/s1/r1.cast", "still no signing key").unwrap();
    assert!(
        idx.claim_upload(i64::MAX, 60_000, 7, &|_| true).unwrap().is_none(),
        "an unsealed recording is not uploaded"
    );
    assert_eq!(idx.backlog().unwrap().pending, 0);
    assert!(idx.recordings_without_upload().unwrap().is_empty(), "held back, not forgotten");
    assert_eq!(idx.unsealed_uploads().unwrap(), vec![("r1".to_string(), "still no signing key".to_string())]);
    assert_eq!(idx.recording("r1").unwrap().unwrap().seal_error.as_deref(), Some("still no signing key"));
    idx.enqueue_upload("r1", "box/s1/r1.cast").unwrap();
    assert!(idx.unsealed_uploads().unwrap().is_empty());
    assert_eq!(idx.recording("r1").unwrap().unwrap().seal_error, None);
    assert_eq!(idx.claim_upload(1, 60_000, 7, &|_| true).unwrap().unwrap().recording_id, "r1");
    // A queued job never goes back to unsealed.
    idx.upload_unsealed("r1", "box/s1/r1.cast", "late").unwrap();
    assert!(idx.unsealed_uploads().unwrap().is_empty());
}

#[test]
fn the_audit_log_is_hash_chained() {
    let (_d, idx) = index();
    for i in 0..5 {
        idx.audit("login_failed", Some("alice"), None, None, &serde_json::json!({ "n": i })).unwrap();
    }
    assert_eq!(idx.verify_audit().unwrap(), Ok(5));
    idx.conn().execute("UPDATE audit SET user = 'mallory' WHERE id = 3", []).unwrap();
    assert_eq!(idx.verify_audit().unwrap().unwrap_err().0, 3, "the changed event is named");
    idx.conn().execute("UPDATE audit SET user = 'alice' WHERE id = 3", []).unwrap();
    assert_eq!(idx.verify_audit().unwrap(), Ok(5));
    idx.conn().execute("DELETE FROM audit WHERE id = 2", []).unwrap();
    let (id, why) = idx.verify_audit().unwrap().unwrap_err();
    assert_eq!((id, why.as_str()), (2, "events 2 to 2 are missing"));
}

/// A removed tail leaves an intact chain: only a signed checkpoint of how far it reached shows it.
#[test]
fn a_removed_tail_is_named_against_a_checkpoint() {
    let (_d, idx) = index();
    for i in 0..6 {
        idx.audit("login_failed", Some("alice"), None, None, &serde_json::json!({ "n": i })).unwrap();
    }
    let (last, hash) = idx.audit_head().unwrap().unwrap();
    assert_eq!(idx.audit_reaches(last, &hash).unwrap(), Ok(()));
    idx.conn().execute("DELETE FROM audit WHERE id > 3", []).unwrap();
    assert_eq!(idx.verify_audit().unwrap(), Ok(3), "the chain alone cannot tell");
    let why = idx.audit_reaches(last, &hash).unwrap().unwrap_err();
    assert!(why.contains("signed but the log ends at 3: its tail was removed"), "{why}");
    let (id3, _) = idx.audit_head().unwrap().unwrap();
    assert!(idx.audit_reaches(id3, "not-the-hash").unwrap().unwrap_err().contains("changed"));
}

/// A session of alice on web01 with one uploaded, verified recording that ended now.
fn uploaded_recording(idx: &Index, session: &str, recording: &str) {
    idx.create_session(session, "alice", "web01", Protocol::Ssh, None).unwrap();
    idx.create_recording(recording, session, "shell", &format!("recordings/{recording}.cast")).unwrap();
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration: None,
        recovered: false,
    };
    idx.finish_recording(recording, &end).unwrap();
    idx.end_session(session, "done", false).unwrap();
    idx.enqueue_upload(recording, &format!("box/{session}/{recording}.cast")).unwrap();
    idx.upload_verified(recording).unwrap();
    idx.manifest_uploaded(session, &format!("box/{session}/manifest.json")).unwrap();
}

#[test]
fn retention_expires_only_uploaded_unheld_recordings_past_their_days() {
    let (_d, idx) = index();
    idx.add_target(&web01()).unwrap();
    uploaded_recording(&idx, "s1", "r1");
    uploaded_recording(&idx, "s2", "r2");
    let now = time::OffsetDateTime::now_utc();
    let later = now + time::Duration::days(8);
    assert!(idx.expired(later).unwrap().is_empty(), "no retention: kept for ever");
    assert!(matches!(idx.set_retention("web9", Some(7)), Err(IndexError::NotFound { .. })));
    idx.set_retention("web01", Some(7)).unwrap();
    assert_eq!(idx.retentions().unwrap(), vec![("web01".to_string(), Some(7))]);
    assert!(idx.expired(now).unwrap().is_empty(), "not yet seven days old");
    let ids = |v: Vec<ExpiredRecording>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(idx.expired(later).unwrap()), ["r1", "r2"]);
    // A held session is neither expired nor prunable, and cannot be claimed.
    let set = idx.set_hold("s1", "case 42", Some("admin")).unwrap();
    assert_eq!(set, HoldSet { was_held: false, already_deleted: vec![] });
    assert!(idx.set_hold("s1", "case 43", None).unwrap().was_held);
    assert_eq!(idx.hold_of("s1").unwrap().unwrap().reason, "case 43");
    assert!(matches!(idx.set_hold("nope", "x", None), Err(IndexError::NotFound { what: "session", .. })));
    assert_eq!(ids(idx.expired(later).unwrap()), ["r2"]);
    assert!(!idx.claim_deletion("r1").unwrap(), "a held recording is never claimed");
    assert_eq!(idx.prunable("9999").unwrap(), vec![("r2".to_string(), "recordings/r2.cast".to_string())]);
    // A claimed deletion is reported by a hold set after it, and is not handed out twice.
    assert!(idx.claim_deletion("r2").unwrap());
    assert!(!idx.claim_deletion("r2").unwrap());
    assert!(idx.expired(later).unwrap().is_empty());
    assert!(idx.prunable("9999").unwrap().is_empty());
    idx.release_deletion("r2").unwrap();
    assert!(idx.claim_deletion("r2").unwrap());
    idx.conn()
        .execute("INSERT INTO cast_text(tokens, recording_id, session_id, at, line_times, sealed) VALUES ('t', 'r2', 's2', 0, '[]', x'00')", [])
        .unwrap();
    idx.deletion_done("r2").unwrap();
    assert!(idx.deleted_at("r2").unwrap().is_some());
    assert!(idx.is_pruned("r2").unwrap());
    assert_eq!(idx.manifest_if_all_deleted("s2").unwrap().as_deref(), Some("box/s2/manifest.json"));
    let left: i64 =
        idx.conn().query_row("SELECT COUNT(*) FROM cast_text WHERE recording_id = 'r2'", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "a deleted recording's search text goes with it");
    assert_eq!(idx.set_hold("s2", "too late", None).unwrap().already_deleted, ["r2"]);
    // Lifting the hold makes s1 expire again.
    assert!(idx.clear_hold("s1").unwrap());
    assert!(!idx.clear_hold("s1").unwrap());
    assert_eq!(ids(idx.expired(later).unwrap()), ["r1"]);
    assert_eq!(idx.holds().unwrap().len(), 1);
}

#[test]
fn factory_wipe_keeps_held_sessions() {
    let (_d, idx) = index();
    uploaded_recording(&idx, "s1", "r1");
    uploaded_recording(&idx, "s2", "r2");
    idx.set_hold("s1", "case 42", None).unwrap();
    assert_eq!(idx.wipe_recordings().unwrap(), ["recordings/r2.cast"]);
    assert_eq!(idx.recordings().unwrap().len(), 1);
    assert_eq!(idx.sessions().unwrap()[0].id, "s1");
}

fn file_starts_plain(path: &std::path::Path) -> bool {
    std::fs::read(path).unwrap().starts_with(b"SQLite format 3\0")
}

#[test]
fn an_encrypted_index_holds_nothing_in_clear_and_needs_its_key() {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("index.sqlite");
    let key = IndexKey([7; 32]);
    {
        let idx = Index::open_encrypted(&path, &key).unwrap();
        idx.add_target(&web01()).unwrap();
        idx.audit("marker", None, None, None, &serde_json::json!({ "word": "wombatcanary" })).unwrap();
    }
    assert!(!file_starts_plain(&path));
    for suffix in ["", "-wal"] {
        let bytes = std::fs::read(format!("{}{suffix}", path.display())).unwrap_or_default();
        assert!(!bytes.windows(12).any(|w| w == b"wombatcanary"), "index{suffix} holds text in clear");
        assert!(!bytes.windows(6).any(|w| w == b"s3cret"), "index{suffix} holds a credential in clear");
    }
    let idx = Index::open_encrypted(&path, &key).unwrap();
    assert_eq!(idx.audit_events(10).unwrap()[0].detail["word"], "wombatcanary");
    drop(idx);
    assert!(matches!(Index::open_encrypted(&path, &IndexKey([8; 32])), Err(IndexError::WrongKey)));
    assert!(matches!(Index::open(&path), Err(IndexError::WrongKey)), "nor is it readable without a key");
}

#[test]
fn a_plain_index_is_encrypted_on_first_open_with_everything_in_it() {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("index.sqlite");
    {
        let idx = Index::open(&path).unwrap();
        idx.add_target(&web01()).unwrap();
        uploaded_recording(&idx, "s1", "r1");
        idx.set_hold("s1", "case 42", None).unwrap();
        idx.store_text(
            "r1",
            "s1",
            &[SearchChunk {
                at: 1.5,
                tokens: "aa bb".into(),
                line_times: vec![1.5],
                line_steps: vec![vec![(4, 2.25)]],
                line_rects: vec![],
                sealed: vec![1, 2],
            }],
        )
        .unwrap();
        idx.audit("marker", None, None, None, &serde_json::json!({})).unwrap();
    }
    assert!(file_starts_plain(&path));
    let key = IndexKey([9; 32]);
    let idx = Index::open_encrypted(&path, &key).unwrap();
    assert!(!file_starts_plain(&path), "encrypted in place");
    assert!(!std::path::Path::new(&format!("{}.encrypting", path.display())).exists());
    assert_eq!(idx.target("web01").unwrap().unwrap().secret, Secret::Password("s3cret".into()));
    assert_eq!(idx.recordings().unwrap().len(), 1);
    assert_eq!(idx.hold_of("s1").unwrap().unwrap().reason, "case 42");
    assert_eq!(idx.verify_audit().unwrap(), Ok(idx.audit_events(100).unwrap().len() as u64));
    let hits = idx.search("\"bb\"").unwrap();
    assert_eq!(hits.len(), 1, "the FTS5 table came along");
    assert_eq!(hits["s1"][0].line_steps, vec![vec![(4, 2.25)]], "and where later events printed each line");
    let version: i64 = idx.conn().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(version, schema::known(), "no migration step runs twice");
    drop(idx);
    // A second open finds it encrypted and leaves it be.
    Index::open_encrypted(&path, &key).unwrap();
}

#[test]
fn text_read_from_a_video_resumes_without_duplicates_and_keeps_its_places() {
    let (_d, idx) = index();
    idx.create_session("s1", "alice", "win01", Protocol::Rdp, None).unwrap();
    idx.create_recording("v1", "s1", "desktop 1024x768", "recordings/v1.mp4").unwrap();
    assert!(idx.videos_to_read().unwrap().is_empty(), "still recording");
    assert_eq!(idx.recording("v1").unwrap().unwrap().text.unwrap().state, "waiting");
    let end = RecordingEnd {
        status: RecordingStatus::Completed,
        reason: None,
        bytes: 10,
        sha256: Some("ab".into()),
        duration: Some(30.0),
        recovered: false,
    };
    idx.finish_recording("v1", &end).unwrap();
    assert_eq!(idx.videos_to_read().unwrap().len(), 1);
    let chunk = |at: f64, token: &str| SearchChunk {
        at,
        tokens: token.into(),
        line_times: vec![at, at],
        line_steps: vec![],
        line_rects: vec![Some([10, 20, 300, 16]), None],
        sealed: vec![1],
    };
    let (claim, from) = idx.start_read_text("v1").unwrap();
    assert_eq!(from, 0.0);
    idx.store_read_text(
        &claim,
        "s1",
        0.0,
        10.0,
        &[chunk(2.0, "aa"), chunk(8.0, "bb")],
        &[(2.0, vec![2]), (8.0, vec![8])],
    )
    .unwrap();
    // The box stopped after storing the next batch's text but, say, before it said how far it
    // got: the resumed run starts again from 10 s and stores the same batch again.
    let thumbs = [(12.0, vec![12]), (15.0, vec![15])];
    idx.store_read_text(&claim, "s1", 10.0, 20.0, &[chunk(12.0, "cc"), chunk(15.0, "dd")], &thumbs).unwrap();
    assert_eq!(idx.text_read_until("v1").unwrap(), 20.0);
    idx.store_read_text(&claim, "s1", 10.0, 20.0, &[chunk(12.0, "cc"), chunk(15.0, "dd")], &thumbs).unwrap();
    assert_eq!(idx.text_chunks("v1").unwrap(), 4, "no duplicate fragments");
    let stored: Vec<(f64, Vec<u8>)> = idx.thumbnails("v1").unwrap();
    assert_eq!(
        stored,
        vec![(2.0, vec![2]), (8.0, vec![8]), (12.0, vec![12]), (15.0, vec![15])],
        "one thumbnail per picture, none twice, in time order"
    );
    assert_eq!(idx.thumbnail_times("v1").unwrap(), vec![2.0, 8.0, 12.0, 15.0]);
    assert_eq!(idx.thumbnail("v1", 2).unwrap(), Some((12.0, vec![12])));
    assert_eq!(idx.thumbnail("v1", 4).unwrap(), None);
    assert_eq!(idx.thumbnail("v1", usize::MAX).unwrap(), None, "not the first one");
    let row = idx.recording("v1").unwrap().unwrap().text.unwrap();
    assert_eq!((row.state.as_str(), row.read_until), ("reading", Some(20.0)));
    assert_eq!(idx.videos_to_read().unwrap().len(), 1, "a reading interrupted is taken up again");
    let hits = idx.search("\"dd\"").unwrap();
    let hit = &hits["s1"][0];
    assert_eq!(
        (hit.at, &hit.line_times, &hit.line_rects),
        (15.0, &vec![15.0, 15.0], &vec![Some([10, 20, 300, 16]), None])
    );
    idx.finish_read_text(&claim).unwrap();
    assert!(idx.videos_to_read().unwrap().is_empty());
    assert_eq!(idx.recording("v1").unwrap().unwrap().text.unwrap().state, "done");
    assert!(idx.recordings_without_text().unwrap().is_empty(), "a video is not a cast");
}

/// What a video's recorder missed is kept with it: the count, and whether the picture after the
/// last gap is unverified (the signed manifest says which).
#[test]
fn missed_screen_updates_keep_whether_the_picture_after_them_is_verified() {
    let (_d, idx) = index();
    idx.create_session("s1", "alice", "win01", Protocol::Rdp, None).unwrap();
    idx.create_recording("v1", "s1", "desktop 1024x768", "recordings/v1.mp4").unwrap();
    let row = idx.recording("v1").unwrap().unwrap();
    assert_eq!((row.missed_screen_updates, row.screen_unverified), (None, false));
    idx.set_missed_screen_updates("v1", 7, true).unwrap();
    let row = idx.recording("v1").unwrap().unwrap();
    assert_eq!((row.missed_screen_updates, row.screen_unverified), (Some(7), true));
    idx.set_missed_screen_updates("v1", 9, false).unwrap();
    let row = idx.recording("v1").unwrap().unwrap();
    assert_eq!((row.missed_screen_updates, row.screen_unverified), (Some(9), false));
}

/// The factory reset forgets credentials for good: the index file (and its write-ahead log)
/// keeps no trace of a target's secret, a user's password or NT hash, or an SSH key, in freed
/// pages or old page images. Otherwise whoever holds the index key after the reset (the box
/// itself, or anyone who lifts the data partition of a box whose keys are not sealed) reads the
/// old credentials back out of the file.
#[test]
fn a_factory_wipe_leaves_no_credential_in_the_file() {
    let (d, idx) = index();
    let mut user = alice();
    user.password_hash = Some("$argon2id$v=19$PASSWORD-HASH-CANARY".into());
    user.ssh_keys = vec!["ssh-ed25519 AAAASSHKEYCANARY alice".into()];
    idx.add_user(&user).unwrap();
    idx.set_nt_hash("alice", "0123456789abcdefNTHASHCANARY").unwrap();
    let mut target = web01();
    target.secret = Secret::Password("TARGET-SECRET-CANARY".into());
    idx.add_target(&target).unwrap();
    // Sessions happen: the file grows past its first pages.
    for i in 0..50 {
        uploaded_recording(&idx, &format!("s{i}"), &format!("r{i}"));
    }
    idx.wipe_identities().unwrap();
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(&d.0).unwrap().flatten() {
        bytes.extend(std::fs::read(e.path()).unwrap());
    }
    for canary in ["PASSWORD-HASH-CANARY", "SSHKEYCANARY", "NTHASHCANARY", "TARGET-SECRET-CANARY"] {
        assert!(!bytes.windows(canary.len()).any(|w| w == canary.as_bytes()), "{canary} is still in the index files");
    }
    // What a reset keeps stays.
    assert_eq!(idx.recordings().unwrap().len(), 50);
    assert!(idx.user("alice").unwrap().is_none() && idx.target("web01").unwrap().is_none());
}

/// Jobs survive a reopen (a restart), one worker holds a step at a time, a failure waits with its
/// reason, and completing a step enqueues what its graph says is ready, in one go.
#[test]
fn jobs_are_durable_leased_retried_and_chained() {
    use witness_core::{JobState, JobStep};
    let (d, idx) = index();
    idx.add_target(&web01()).unwrap();
    uploaded_recording(&idx, "s1", "r1");
    idx.enqueue_job("r1", JobStep::Seal, 1_000).unwrap();
    idx.enqueue_job("r1", JobStep::Seal, 1_001).unwrap(); // already there: nothing new
    let seal = idx.claim_job(2_000, 60_000, 7, &|_| true).unwrap().expect("the seal job");
    assert_eq!((seal.step, seal.state, seal.attempts), (JobStep::Seal, JobState::Waiting, 0));
    assert!(idx.claim_job(2_001, 60_000, 8, &|_| true).unwrap().is_none(), "leased to worker 7");
    idx.fail_job("r1", JobStep::Seal, "the signing key cannot be read", 10_000).unwrap();
    assert!(idx.claim_job(9_999, 60_000, 8, &|_| true).unwrap().is_none(), "waits for its next attempt");
    let waiting = idx.waiting_jobs().unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].last_error.as_deref(), Some("the signing key cannot be read"));
    assert_eq!((waiting[0].attempts, waiting[0].next_attempt_ms), (1, 10_000));
    drop(idx);
    // A restart: the job is still there, and its lease (left by a killed worker) runs out.
    let idx = Index::open(&d.0.join("index.sqlite")).unwrap();
    let again = idx.claim_job(10_000, 60_000, 9, &|_| true).unwrap().expect("due again after a restart");
    assert_eq!((again.step, again.attempts), (JobStep::Seal, 1));
    assert!(idx.claim_job(10_001, 60_000, 9, &|_| true).unwrap().is_none());
    assert!(idx.claim_job(70_001, 60_000, 9, &|_| true).unwrap().is_some(), "a lease that ran out is taken over");
    let seen = std::cell::RefCell::new(Vec::new());
    let next = idx
        .complete_job("r1", JobStep::Seal, 70_002, &|done| {
            seen.borrow_mut().extend_from_slice(done);
            vec![JobStep::Extract, JobStep::Upload]
        })
        .unwrap();
    assert_eq!(*seen.borrow(), vec![JobStep::Seal], "the graph is asked with what is done");
    assert_eq!(next, vec![JobStep::Extract, JobStep::Upload]);
    let jobs = idx.recording_jobs("r1").unwrap();
    let states: Vec<_> = jobs.iter().map(|j| (j.step, j.state, j.last_error.clone())).collect();
    assert_eq!(
        states,
        vec![
            (JobStep::Seal, JobState::Done, None),
            (JobStep::Extract, JobState::Waiting, None),
            (JobStep::Upload, JobState::Waiting, None)
        ]
    );
    // A step's text that is not a step is refused by name, not taken for another.
    idx.conn().execute("UPDATE jobs SET step = 'sael' WHERE step = 'extract'", []).unwrap();
    assert!(matches!(idx.waiting_jobs(), Err(IndexError::Corrupt { column: "jobs.step", .. })));
}

/// What a step confirmed (the upload's on-arrival check) is kept with its job, across a
/// completion and a restart; a step done without saving one (by a version before schema step
/// 18) has none, so the step after it does not take it on trust. `sync now` claims among the
/// steps it asks for only.
#[test]
fn a_steps_result_is_kept_for_the_steps_after_it_and_claims_can_be_limited_to_steps() {
    use witness_core::JobStep;
    let (d, idx) = index();
    idx.add_target(&web01()).unwrap();
    uploaded_recording(&idx, "s1", "r1");
    idx.enqueue_job("r1", JobStep::Extract, 1_000).unwrap();
    idx.enqueue_job("r1", JobStep::Upload, 1_001).unwrap();
    let none = idx.claim_job_among(&[JobStep::Seal, JobStep::Verify], 2_000, 60_000, 7, &|_| true).unwrap();
    assert!(none.is_none(), "neither step asked for is waiting");
    let up = idx.claim_job_among(&[JobStep::Upload], 2_000, 60_000, 7, &|_| true).unwrap().unwrap();
    assert_eq!(up.step, JobStep::Upload, "the older extract is passed over");
    assert_eq!((up.lease_until_ms, up.lease_owner), (0, 0), "as it was before the claim");
    let listed = idx.recording_jobs("r1").unwrap();
    let leased = listed.iter().find(|j| j.step == JobStep::Upload).unwrap();
    assert_eq!((leased.lease_until_ms, leased.lease_owner), (62_000, 7), "the lease is listed");
    assert_eq!(idx.job_result("r1", JobStep::Upload).unwrap(), None, "nothing confirmed yet");
    idx.fail_job("r1", JobStep::Upload, "store unreachable", 3_000).unwrap();
    idx.save_job_result("r1", JobStep::Upload, "confirmed").unwrap();
    idx.complete_job("r1", JobStep::Upload, 4_000, &|_| vec![JobStep::Verify]).unwrap();
    drop(idx);
    let idx = Index::open(&d.0.join("index.sqlite")).unwrap();
    assert_eq!(idx.job_result("r1", JobStep::Upload).unwrap().as_deref(), Some("confirmed"));
    assert_eq!(idx.job_result("r1", JobStep::Verify).unwrap(), None, "verify confirmed nothing");
    assert_eq!(idx.job_result("r9", JobStep::Upload).unwrap(), None, "no such job");
}

/// A job leased by a process that is gone (the box killed mid-step) is taken over at once, not
/// after its lease; one that waits without failing keeps its attempts; the pipelines not
/// finished are listed whole; recordings finished without jobs are found.
#[test]
fn a_dead_workers_job_is_taken_over_and_deferred_jobs_are_not_failures() {
    use witness_core::{JobState, JobStep};
    let (_d, idx) = index();
    idx.add_target(&web01()).unwrap();
    uploaded_recording(&idx, "s1", "r1");
    assert_eq!(idx.recordings_without_jobs().unwrap(), vec!["r1".to_owned()]);
    idx.enqueue_job("r1", JobStep::Seal, 1_000).unwrap();
    assert!(idx.recordings_without_jobs().unwrap().is_empty());
    assert!(idx.claim_job(2_000, 3_600_000, 41, &|_| true).unwrap().is_some());
    assert!(idx.claim_job(2_001, 3_600_000, 42, &|pid| pid == 41).unwrap().is_none(), "41 is alive");
    let taken = idx.claim_job(2_002, 3_600_000, 42, &|pid| pid != 41).unwrap();
    assert_eq!(taken.map(|j| j.step), Some(JobStep::Seal), "41 died: taken over before its lease ends");
    assert!(idx.claim_job(2_003, 3_600_000, 42, &|_| false).unwrap().is_none(), "its own lease is not taken");
    idx.complete_job("r1", JobStep::Seal, 2_004, &|_| vec![JobStep::Upload]).unwrap();
    idx.defer_job("r1", JobStep::Upload, "kept until later", 50_000).unwrap();
    assert!(idx.claim_job(3_000, 60_000, 42, &|_| true).unwrap().is_none());
    let pipeline = idx.unfinished_pipelines().unwrap();
    let rows: Vec<_> = pipeline.iter().map(|j| (j.step, j.state, j.attempts, j.last_error.as_deref())).collect();
    assert_eq!(
        rows,
        vec![
            (JobStep::Seal, JobState::Done, 0, None),
            (JobStep::Upload, JobState::Waiting, 0, Some("kept until later"))
        ]
    );
    assert_eq!(idx.make_jobs_due(Some(JobStep::Prune)).unwrap(), 0);
    assert_eq!(idx.make_jobs_due(Some(JobStep::Upload)).unwrap(), 1);
    assert!(idx.claim_job(3_001, 60_000, 42, &|_| true).unwrap().is_some(), "due now");
    idx.complete_job("r1", JobStep::Upload, 3_002, &|_| vec![]).unwrap();
    assert!(idx.unfinished_pipelines().unwrap().is_empty(), "nothing waits: nothing listed");
}

#[test]
fn download_figures_are_kept_for_the_sealed_file_they_were_worked_out_from() {
    let (dir, idx) = index();
    uploaded_recording(&idx, "s1", "r1");
    let figures = DownloadFigures { bytes: 6750, sha256: "cd".repeat(32), file_name: "alice-web01-r1.cast".into() };
    assert_eq!(idx.download_figures("r1", "10|ab|false").unwrap(), None, "none before they are worked out");
    assert!(idx.keep_download_figures("r1", "10|ab|false", &figures).unwrap());
    assert!(!idx.keep_download_figures("nope", "10|ab|false", &figures).unwrap(), "no such recording");
    drop(idx);
    // Reopened (a restart): still there, for the same file only.
    let idx = Index::open(&dir.0.join("index.sqlite")).unwrap();
    assert_eq!(idx.download_figures("r1", "10|ab|false").unwrap(), Some(figures.clone()));
    assert_eq!(idx.download_figures("r1", "10|ef|false").unwrap(), None, "another digest: worked out anew");
    assert_eq!(idx.download_figures("r1", "10|ab|true").unwrap(), None, "recovered since: worked out anew");
    // Worked out anew, the new figures replace the old.
    let anew = DownloadFigures { bytes: 7, ..figures };
    assert!(idx.keep_download_figures("r1", "10|ef|false", &anew).unwrap());
    assert_eq!(idx.download_figures("r1", "10|ef|false").unwrap(), Some(anew));
    assert_eq!(idx.download_figures("r1", "10|ab|false").unwrap(), None);
    // Deleted by retention: nothing is said of a download there is no more.
    assert!(idx.claim_deletion("r1").unwrap());
    idx.deletion_done("r1").unwrap();
    assert_eq!(idx.download_figures("r1", "10|ef|false").unwrap(), None);
}

/// The attack: the channels of a session's recordings were joined with a separator byte and split
/// again, and an exec command may hold that byte: `ssh box $'true\x1fshell'` was listed as a
/// shell session that ran `true`. Each channel is now read back whole.
#[test]
fn an_exec_command_cannot_forge_what_the_history_says_a_session_was() {
    let (_d, idx) = index();
    idx.create_session("s1", "alice", "web01", Protocol::Ssh, None).unwrap();
    idx.create_recording("r1", "s1", "exec: true\u{1f}shell\u{1f}sftp", "recordings/r1.cast").unwrap();
    idx.create_recording("r2", "s1", "exec: uptime", "recordings/r2.cast").unwrap();
    idx.create_session("s2", "alice", "web01", Protocol::Ssh, None).unwrap();
    let rows = idx.sessions().unwrap();
    let s = rows.iter().find(|s| s.id == "s1").unwrap();
    assert_eq!(s.kinds, ["exec"], "{s:?}");
    let mut commands = s.commands.clone();
    commands.sort();
    assert_eq!(commands, ["true\u{1f}shell\u{1f}sftp", "uptime"], "{s:?}");
    let s = rows.iter().find(|s| s.id == "s2").unwrap();
    assert!(s.kinds.is_empty() && s.commands.is_empty(), "no recording, no kind: {s:?}");
}
