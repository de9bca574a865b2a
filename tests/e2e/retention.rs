//! Retention, legal hold and S3 Object Lock with real stores: s3s-fs for deletion (local and
//! remote, by the daemon's sweep and by `witness retention run`), and moto's S3 server, which
//! implements Object Lock, for locked uploads, legal holds and a bucket without object lock.

use crate::harness::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// The object key of a recording row, as the box names it.
fn key_of(b: &Box, r: &serde_json::Value) -> String {
    format!(
        "{}/{}/{}/{}.cast",
        box_id(b),
        &r["started_at"].as_str().unwrap()[..10],
        r["session_id"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    )
}

fn recording_of<'a>(recs: &'a [serde_json::Value], session: &str) -> &'a serde_json::Value {
    recs.iter().find(|r| r["session_id"] == session).unwrap_or_else(|| panic!("a recording of {session}"))
}

/// Runs `echo WORD` through the box; returns the session id.
fn session(b: &Box, word: &str) -> String {
    let before: Vec<String> = b.sessions().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    let out = b.ssh("alice@web01").arg(format!("echo {word}")).output().unwrap();
    assert_eq!(stdout(&out), format!("{word}\n"));
    eventually(10, "the session recorded", || {
        b.sessions().iter().map(|s| s["id"].as_str().unwrap().to_owned()).find(|id| !before.contains(id))
    })
}

fn audit_of(b: &Box, kind: &str) -> Vec<serde_json::Value> {
    b.audit().into_iter().filter(|e| e["kind"] == kind).collect()
}

#[test]
fn retention_deletes_expired_recordings_locally_and_in_the_store_but_never_held_ones() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    // Local copies go as soon as they are verified, and the sweep runs every second: anything
    // not held is deleted as early as the box ever would.
    b.configure("store", "keep_local_days = 0\nretention_sweep_seconds = 1");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    assert!(b.ok(&["target", "retention", "web01"], None).contains("kept for ever"));
    b.serve();
    // The store is away: both recordings wait on the box.
    let held = session(&b, "held-session");
    let expiring = session(&b, "expiring-session");
    let out = b.ok(&["hold", "set", &held, "--reason", "case 42: incident review"], None);
    assert!(out.contains(&format!("session {held} is held")), "{out}");
    let holds = b.json(&["hold", "list", "--json"]);
    assert_eq!(
        (holds[0]["session_id"].as_str(), holds[0]["reason"].as_str()),
        (Some(held.as_str()), Some("case 42: incident review"))
    );
    assert!(b.ok(&["target", "retention", "web01", "0"], None).contains("deleted 0 days after they end"));
    s3.run();
    // The uploads retry with backoff (2, 4, 8, 16 s …) while the store is away; on a loaded
    // machine the away time reaches the 16 s step (CI of 2026-12-07 timed out at 30 s).
    let recs = eventually(120, "both uploaded", || {
        let recs = b.recordings();
        (recs.len() == 2 && recs.iter().all(|r| r["status"] == "uploaded")).then_some(recs)
    });
    let (h, e) = (recording_of(&recs, &held).clone(), recording_of(&recs, &expiring).clone());
    let (h_key, e_key) = (key_of(&b, &h), key_of(&b, &e));
    let data = b.data();
    let local = |r: &serde_json::Value| data.join(r["path"].as_str().unwrap());
    // The daemon's sweep deletes the unheld one in the store and on the box, manifests too.
    eventually(20, "the expired recording deleted in the store", || s3.object(&e_key).is_none().then_some(()));
    eventually(10, "its session manifest deleted", || {
        let manifest = format!("{}/manifest.json", e_key.rsplit_once('/').unwrap().0);
        s3.object(&manifest).is_none().then_some(())
    });
    assert!(!local(&e).exists(), "deleted on the box");
    assert!(s3.object(&e_key.replace(".cast", ".manifest.json")).is_none());
    let deleted = audit_of(&b, "recording_deleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert_eq!(
        (deleted[0]["detail"]["recording"].as_str(), deleted[0]["detail"]["reason"].as_str()),
        (e["id"].as_str(), Some("retention"))
    );
    let out = b.cli(&["recordings", "export", e["id"].as_str().unwrap(), "--out", "/tmp/never.cast"], None);
    assert!(!out.status.success() && stderr(&out).contains("was deleted"), "{}", stderr(&out));
    // The held one outlives both the sweep and local pruning (keep_local_days = 0).
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(s3.object(&h_key).is_some(), "a held recording stays in the store");
    assert!(local(&h).exists(), "a held recording is not pruned from the box");
    assert!(b.ok(&["retention", "run", "--dry-run"], None).trim().is_empty(), "nothing else is due");
    // The console's session detail shows the hold.
    let jar = b.dir.path().join("cookies");
    let base = format!("https://127.0.0.1:{}/api/v1", b.web_port);
    let curl = |args: &[&str]| {
        stdout(&Command::new("curl").args(["-sk", "-c"]).arg(&jar).arg("-b").arg(&jar).args(args).output().unwrap())
    };
    // An auditor sees the hold; alice, whose session it is, does not (roles decide on the server).
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    let login = |body: &str| curl(&["-H", "Content-Type: application/json", "-d", body, &format!("{base}/login")]);
    login(r#"{"user":"audrey","password":"audrey-passwd"}"#);
    let detail: serde_json::Value = serde_json::from_str(&curl(&[&format!("{base}/sessions/{held}")])).unwrap();
    assert_eq!(detail["hold"]["reason"], "case 42: incident review", "{detail}");
    let _ = std::fs::remove_file(&jar);
    login(r#"{"user":"alice","password":"alice-pw"}"#);
    let own: serde_json::Value = serde_json::from_str(&curl(&[&format!("{base}/sessions/{held}")])).unwrap();
    assert!(own["hold"].is_null(), "a user does not see the hold on her own session: {own}");
    // Lifting the hold lets retention take it: on demand this time (the daemon is stopped).
    b.stop();
    b.ok(&["hold", "clear", &held], None);
    let dry = b.ok(&["retention", "run", "--dry-run"], None);
    assert!(dry.contains(&format!("would delete {}", h["id"].as_str().unwrap())), "{dry}");
    assert!(s3.object(&h_key).is_some() && local(&h).exists(), "a dry run deletes nothing");
    let out = b.ok(&["retention", "run"], None);
    assert!(out.contains("deleted 1 recordings past their retention"), "{out}");
    assert!(s3.object(&h_key).is_none() && !local(&h).exists());
    let kinds = b.audit_kinds();
    for k in ["hold_set", "retention_set", "hold_cleared", "local_copy_pruned"] {
        assert!(kinds.contains(&k.to_string()), "audit has {k}: {kinds:?}");
    }
    assert_eq!(audit_of(&b, "recording_deleted").len(), 2);
    assert!(b.ok(&["audit", "--verify"], None).contains("hash chain unbroken"));
    // Holding a session whose recordings are gone says so.
    let out = b.ok(&["hold", "set", &expiring, "--reason", "too late"], None);
    assert!(out.contains("was deleted (or being deleted) by retention before the hold"), "{out}");
}

/// moto's S3 server (PyPI `moto[server]`): it implements Object Lock (bucket configuration,
/// retention and legal hold headers, refusing to delete a locked version).
struct Moto {
    port: u16,
    child: Child,
}

fn moto_bin() -> PathBuf {
    for p in ["/opt/witness-moto/bin/moto_server"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    let found = sh("command -v moto_server");
    assert!(found.status.success(), "moto_server is not installed: run `cargo xtask setup`");
    PathBuf::from(stdout(&found).trim())
}

impl Moto {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "moto_server");
        Self { port, child }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A signed S3 request with curl's own SigV4 (independent of the box's client).
    fn curl(&self, args: &[&str], path: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", &format!("{S3_ACCESS}:{S3_SECRET}")])
            .args(args)
            .arg(format!("{}/{path}", self.endpoint()))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {args:?} {path}");
        stdout(&out)
    }

    fn create_bucket(&self, name: &str, object_lock: bool) {
        let lock = if object_lock { "true" } else { "false" };
        self.curl(&["-X", "PUT", "-H", &format!("x-amz-bucket-object-lock-enabled: {lock}")], name);
    }

    /// The object-lock response headers of an object, lower-cased names.
    fn lock_headers(&self, bucket: &str, key: &str) -> Vec<(String, String)> {
        let head = self.curl(&["-I"], &format!("{bucket}/{key}"));
        assert!(head.starts_with("HTTP/1.1 200"), "HEAD {key}: {head}");
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .filter(|(k, _)| k.starts_with("x-amz-object-lock"))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn use_moto(b: &Box, moto: &Moto, bucket: &str, mode: &str) -> std::process::Output {
    b.cli(
        &[
            "store",
            "set",
            "s3",
            "--endpoint",
            &moto.endpoint(),
            "--bucket",
            bucket,
            "--access-key-id",
            S3_ACCESS,
            "--secret-key-stdin",
            "--object-lock-mode",
            mode,
            "--object-lock-days",
            "30",
        ],
        Some(&format!("{S3_SECRET}\n")),
    )
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn object_lock_locks_every_upload_and_mirrors_legal_holds_and_a_bucket_without_it_is_refused() {
    let sshd = Sshd::start();
    let moto = Moto::start();
    moto.create_bucket("plain", false);
    moto.create_bucket("locked", true);
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    // A bucket without object lock: said at `store set`, and at every upload; nothing is lost.
    let out = use_moto(&b, &moto, "plain", "COMPLIANCE");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("has no object lock configuration"), "{}", stderr(&out));
    b.ok(&["target", "retention", "web01", "0"], None);
    b.serve();
    let held = session(&b, "held-before-upload");
    let out = b.cli(&["sync", "now"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bucket \"plain\" has no object lock configuration"), "{}", stderr(&out));
    let st = b.json(&["sync", "status", "--json"]);
    assert!(st["last_error"].as_str().unwrap_or("").contains("no object lock configuration"), "{st}");
    let rec = b.recordings().pop().unwrap();
    assert_eq!(rec["status"], "completed", "not uploaded");
    assert!(b.data().join(rec["path"].as_str().unwrap()).exists(), "and not deleted");
    assert!(b.ok(&["retention", "run"], None).contains("deleted 0 recordings"));
    assert!(moto.curl(&[], "plain?list-type=2").contains("<KeyCount>0</KeyCount>"), "nothing reached the bucket");
    // A bucket with object lock: every object locked for 30 days; a held session also carries
    // the legal hold.
    b.ok(&["hold", "set", &held, "--reason", "litigation"], None);
    b.stop();
    let out = use_moto(&b, &moto, "locked", "GOVERNANCE");
    assert!(out.status.success() && stdout(&out).contains("S3 Object Lock GOVERNANCE for 30 days"), "{}", stdout(&out));
    assert!(stdout(&out).contains("the store answers"), "{}{}", stdout(&out), stderr(&out));
    b.serve();
    let free = session(&b, "not-held");
    let out = b.cli(&["sync", "now", "--wait"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let recs = eventually(20, "both uploaded", || {
        let recs = b.recordings();
        recs.iter().all(|r| r["status"] == "uploaded").then_some(recs)
    });
    let until = {
        let d = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 86_400);
        let out = Command::new("date")
            .args([
                "-u",
                "-d",
                &format!("@{}", d.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()),
                "+%Y-%m-%d",
            ])
            .output()
            .unwrap();
        stdout(&out).trim().to_owned()
    };
    let (h, f) = (recording_of(&recs, &held), recording_of(&recs, &free));
    let (h_key, f_key) = (key_of(&b, h), key_of(&b, f));
    for key in [&h_key, &f_key, &h_key.replace(".cast", ".manifest.json")] {
        let lock = moto.lock_headers("locked", key);
        assert_eq!(header(&lock, "x-amz-object-lock-mode"), Some("GOVERNANCE"), "{key}: {lock:?}");
        assert!(
            header(&lock, "x-amz-object-lock-retain-until-date").unwrap_or("").starts_with(&until),
            "{key}: {lock:?}"
        );
    }
    assert_eq!(header(&moto.lock_headers("locked", &h_key), "x-amz-object-lock-legal-hold"), Some("ON"));
    assert_ne!(header(&moto.lock_headers("locked", &f_key), "x-amz-object-lock-legal-hold"), Some("ON"));
    // A hold set after the upload puts the legal hold on the stored objects; clearing lifts it.
    let out = b.ok(&["hold", "set", &free, "--reason", "audit request 7"], None);
    assert!(out.contains("legal hold changed on 3 objects"), "{out}");
    assert_eq!(header(&moto.lock_headers("locked", &f_key), "x-amz-object-lock-legal-hold"), Some("ON"));
    b.ok(&["hold", "clear", &free], None);
    assert_eq!(header(&moto.lock_headers("locked", &f_key), "x-amz-object-lock-legal-hold"), Some("OFF"));
    // Retention deletes the unheld one: on a locked bucket that is a delete marker, and the
    // locked version stays until its retention ends.
    let out = b.ok(&["retention", "run"], None);
    assert!(out.contains("deleted 1 recordings"), "{out}");
    assert!(b.data().join(h["path"].as_str().unwrap()).exists(), "the held one stays on the box");
    let versions = moto.curl(&[], &format!("locked?versions&prefix={f_key}"));
    assert!(versions.contains("<DeleteMarker>") && versions.contains("<Version>"), "{versions}");
    let held_events = audit_of(&b, "hold_set");
    assert_eq!(held_events[1]["detail"]["store_legal_hold"]["objects"], 3, "{held_events:?}");
}
