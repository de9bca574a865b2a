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
