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
    assert_eq!(idx.recording("r1").unwrap().unwrap().status, "uploaded");
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
