//! Store-and-forward against a real S3-compatible server (s3s-fs): verified uploads, multipart
//! resume after `kill -9`, an offline site catching up, refusals shown in `sync status`, and the
//! high-watermark refusal.

use crate::harness::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn status(b: &Box) -> serde_json::Value {
    b.json(&["sync", "status", "--json"])
}

/// Every recording's object in the store has the index's sha256, and the local file too.
fn assert_stored_intact(b: &Box, s3: &S3) {
    let recs = b.recordings();
    assert!(!recs.is_empty());
    for r in recs {
        assert_eq!(r["status"], "uploaded", "{r}");
        let key = format!(
            "{}/{}/{}/{}.cast",
            box_id(b),
            &r["started_at"].as_str().unwrap()[..10],
            r["session_id"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let data = s3.object(&key).unwrap_or_else(|| panic!("object {key} is in the store"));
        use sha2::Digest;
        assert_eq!(hex::encode(sha2::Sha256::digest(&data)), r["sha256"].as_str().unwrap(), "{key}");
        let local = b.data().join(r["path"].as_str().unwrap());
        assert_eq!(sha256_file(&local), r["sha256"].as_str().unwrap());
    }
}

#[test]
fn small_and_multipart_uploads_are_verified_with_a_manifest() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "part_size_mb = 5");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    let out = b.ssh("alice@web01").arg("echo small-one").output().unwrap();
    assert!(out.status.success());
    // About 13 MB of output: three 5 MiB parts.
    let out = b.ssh("alice@web01").arg("head -c 10000000 /dev/urandom | base64 -w0").output().unwrap();
    assert!(out.status.success());
    eventually(30, "both recordings uploaded", || {
        b.recordings().iter().all(|r| r["status"] == "uploaded").then_some(())
    });
    assert_stored_intact(&b, &s3);
    let big = b.recordings().into_iter().max_by_key(|r| r["bytes"].as_u64().unwrap()).unwrap();
    assert!(big["bytes"].as_u64().unwrap() > 10 * 1024 * 1024, "the big one went up in parts");
    // The session manifest sits next to its recordings and names them with their hashes.
    let sid = big["session_id"].as_str().unwrap();
    let key = format!("{}/{}/{sid}/manifest.json", box_id(&b), &big["started_at"].as_str().unwrap()[..10]);
    let manifest: serde_json::Value = eventually(15, "the manifest", || s3.object(&key))
        .as_slice()
        .to_owned()
        .pipe(|m| serde_json::from_slice(&m).unwrap());
    assert_eq!(manifest["recordings"][0]["sha256"], big["sha256"]);
    assert_eq!(manifest["session"]["user"], "alice");
    let st = status(&b);
    assert_eq!((st["state"].as_str(), st["pending"].as_u64()), (Some("online"), Some(0)));
    assert_eq!(st["key_access"], "read-write", "a key that may look at the bucket");
    assert!(b.audit_kinds().contains(&"recording_uploaded".to_string()));
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn kill9_mid_multipart_resumes_without_resending_finished_parts() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    // Slow the link so the upload can be cut in the middle.
    b.configure("store", "part_size_mb = 5\nbandwidth_kbps = 15000");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    let out = b.ssh("alice@web01").arg("head -c 22000000 /dev/urandom | base64 -w0").output().unwrap();
    assert!(out.status.success());
    let rec = finished_recording(&b);
    let total = rec["bytes"].as_u64().unwrap();
    b.stop();
    s3.run();
    let mut sync = Command::new(witness_bin())
        .arg("--data")
        .arg(b.data())
        .args(["sync", "now"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(30, "two parts stored", || {
        let st = status(&b);
        let done = st["in_progress"].get(0).map(|p| p["parts_done"].as_u64().unwrap()).unwrap_or(0);
        (done >= 2).then_some(())
    });
    sync.kill().unwrap(); // SIGKILL
    let _ = sync.wait();
    let parts_done = status(&b)["in_progress"][0]["parts_done"].as_u64().unwrap();
    assert!(parts_done >= 2 && (parts_done * 5 * 1024 * 1024) < total, "cut in the middle: {parts_done} parts");
    let out = b.cli(&["sync", "now"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("resuming, {parts_done} parts")), "{text}");
    let sent: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("uploaded 1 recordings, ").and_then(|r| r.strip_suffix(" bytes sent")))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert_eq!(sent, total - parts_done * 5 * 1024 * 1024, "finished parts were not sent again");
    assert_stored_intact(&b, &s3);
}

#[test]
fn offline_site_keeps_recording_and_catches_up() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    for i in 0..3 {
        let out = b.ssh("alice@web01").arg(format!("echo offline-{i}")).output().unwrap();
        assert_eq!(stdout(&out), format!("offline-{i}\n"), "sessions go on while the store is away");
    }
    let st = eventually(20, "the store reported offline", || {
        let st = status(&b);
        (st["state"] == "offline" && st["pending"] == 3).then_some(st)
    });
    assert!(st["last_error"].as_str().unwrap().contains("store unreachable"), "{st}");
    assert!(st["oldest_pending_since"].is_string());
    let out = b.cli(&["sync", "now"], None);
    assert!(!out.status.success(), "sync now fails while the store is away");
    assert!(stderr(&out).contains("store unreachable"), "{}", stderr(&out));
    assert!(b.recordings().iter().all(|r| r["status"] == "completed"), "nothing is lost or deleted meanwhile");
    s3.run();
    // The daemon's retries find the store again by themselves.
    eventually(60, "the backlog drained by the daemon", || {
        let st = status(&b);
        (st["pending"] == 0 && st["state"] == "online").then_some(())
    });
    assert_stored_intact(&b, &s3);
}

#[test]
fn refused_credentials_and_missing_bucket_show_in_sync_status() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, "wrong-secret");
    b.serve();
    let out = b.ssh("alice@web01").arg("echo kept").output().unwrap();
    assert!(out.status.success());
    let st = eventually(20, "the refusal in sync status", || {
        let st = status(&b);
        (st["state"] == "failing").then_some(st)
    });
    assert!(st["last_error"].as_str().unwrap().contains("refused the credentials"), "{st}");
    // Retries go on (backoff, no give-up).
    eventually(20, "a second attempt", || {
        let st = status(&b);
        (st["recent_errors"][0]["attempts"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    // Each waiting upload is listed with why it waits and when it is tried next.
    let st = status(&b);
    let waiting = st["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "{st}");
    assert!(waiting[0]["reason"].as_str().unwrap().contains("refused the credentials"), "{st}");
    assert!(waiting[0]["next_attempt_at"].as_str().unwrap().starts_with("20"), "{st}");
    let shown = b.cli(&["sync", "status"], None);
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    assert!(shown.contains("waiting:") && shown.contains("refused the credentials"), "{shown}");
    let text = format!("{}{}{shown}", b.log(), serde_json::to_string(&st).unwrap());
    assert!(!text.contains("wrong-secret"), "the secret never reaches logs or status");
    let out = b.cli(&["sync", "now"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused the credentials"));
    // The right secret but a bucket that does not exist.
    b.use_s3(&s3, "no-such-bucket", S3_SECRET);
    let out = b.cli(&["sync", "now"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bucket or container not found"), "{}", stderr(&out));
    // Fixed: everything goes up.
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    let out = b.cli(&["sync", "now", "--wait"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_stored_intact(&b, &s3);
}

#[test]
fn past_the_high_watermark_with_nothing_to_evict_sessions_are_refused() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "high_watermark_percent = 1");
    b.serve();
    let out = b.ssh("alice@web01").arg("echo should-not-run").output().unwrap();
    assert!(!stdout(&out).contains("should-not-run"));
    assert!(stderr(&out).contains("high watermark 1%"), "{}", stderr(&out));
    let st = status(&b);
    assert_eq!(st["refusing_sessions"], true);
    std::thread::sleep(Duration::from_millis(100));
}

/// Every recording's blob holds the index's sha256.
fn assert_blobs_intact(b: &Box, az: &Azurite) {
    use sha2::Digest;
    for r in b.recordings() {
        let key = format!(
            "{}/{}/{}/{}.cast",
            box_id(b),
            &r["started_at"].as_str().unwrap()[..10],
            r["session_id"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let blob = az.blob(&key).unwrap_or_else(|| panic!("blob {key}"));
        assert_eq!(hex::encode(sha2::Sha256::digest(&blob)), r["sha256"].as_str().unwrap());
    }
}

fn use_azure(b: &Box, sas_url: &str) {
    let out = b.cli(&["store", "set", "azure", "--sas-url-stdin"], Some(&format!("{sas_url}\n")));
    assert!(out.status.success(), "store set azure: {}", stderr(&out));
    let out = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.contains("sig="), "the SAS signature is never printed: {out}");
}

#[test]
fn azure_blob_small_and_block_uploads_are_verified() {
    let sshd = Sshd::start();
    let az = Azurite::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "part_size_mb = 5");
    use_azure(&b, &az.container_url("2030-01-01T00:00:00Z"));
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo small-blob").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("head -c 10000000 /dev/urandom | base64 -w0").output().unwrap().status.success());
    eventually(40, "both recordings uploaded to Azure", || {
        b.recordings().iter().all(|r| r["status"] == "uploaded").then_some(())
    });
    assert_blobs_intact(&b, &az);
    // The SAS token lives only in the 0600 store.toml: never in logs, status or the index.
    let secret_places = format!("{}{}{}", b.log(), status(&b), serde_json::to_string(&b.audit()).unwrap());
    assert!(!secret_places.contains("sig="), "SAS signature leaked");
    let mode = std::fs::metadata(b.data().join("store.toml")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    assert!(status(&b)["destination"].as_str().unwrap().ends_with("?<redacted>"));
}

#[test]
fn expired_sas_is_reported_and_retried() {
    let sshd = Sshd::start();
    let az = Azurite::start();
    let mut b = Box::with_target(&sshd);
    use_azure(&b, &az.container_url("2020-01-01T00:00:00Z"));
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo kept-locally").output().unwrap().status.success());
    let st = eventually(20, "the refusal in sync status", || {
        let st = status(&b);
        (st["state"] == "failing").then_some(st)
    });
    assert!(st["last_error"].as_str().unwrap().contains("refused the credentials"), "{st}");
    assert!(!st.to_string().contains("sig="));
    assert!(b.recordings().iter().all(|r| r["status"] == "completed"), "kept locally");
    // A fresh SAS: the backlog goes up.
    use_azure(&b, &az.container_url("2030-01-01T00:00:00Z"));
    let out = b.cli(&["sync", "now", "--wait"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.recordings().iter().all(|r| r["status"] == "uploaded"));
}

/// A serving box keeping nothing locally once it is verified in the store, after one session
/// per word (each echoing it): the box and the recordings, uploaded, their manifests stored and
/// their local copies pruned.
pub(crate) fn pruned_sessions(sshd: &Sshd, s3: &S3, words: &[&str]) -> (Box, Vec<serde_json::Value>) {
    let mut b = Box::with_target(sshd);
    b.configure("store", "keep_local_days = 0");
    b.use_s3(s3, S3_BUCKET, S3_SECRET);
    b.serve();
    for word in words {
        let out = b.ssh("alice@web01").arg(format!("echo {word}")).output().unwrap();
        assert!(out.status.success(), "the session failed: {}\nbox: {}", stderr(&out), b.log());
    }
    let recs = eventually(60, "uploaded, manifests stored and local copies pruned", || {
        let recs = b.recordings();
        let all_gone =
            recs.iter().all(|r| r["status"] == "uploaded" && !b.data().join(r["path"].as_str().unwrap()).exists());
        let manifests = walk(s3.dir.path()).iter().filter(|p| p.ends_with("/manifest.json")).count();
        (recs.len() == words.len() && all_gone && manifests == words.len()).then_some(recs)
    });
    (b, recs)
}

#[test]
fn lost_index_is_rebuilt_from_the_store_and_pruned_recordings_export_through_the_box() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let (mut b, before) = pruned_sessions(&sshd, &s3, &["first-session", "second-session"]);
    // A pruned recording still exports, fetched from the store through the box.
    let cast = b.export(before[0]["id"].as_str().unwrap());
    assert!(cast.contains("first-session"), "{cast}");
    // Lose the index.
    b.stop();
    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(b.data().join(f));
    }
    assert!(b.recordings().is_empty());
    let out = b.ok(&["index", "rebuild", "--from-store"], None);
    assert!(out.contains("restored 2 sessions"), "{out}");
    let after = b.recordings();
    assert_eq!(after.len(), 2);
    for (x, y) in before.iter().zip(&after) {
        for k in ["id", "session_id", "user", "target", "sha256", "bytes", "status"] {
            assert_eq!(x[k], y[k], "{k} survives the rebuild");
        }
    }
    let cast = b.export(after[1]["id"].as_str().unwrap());
    assert!(cast.contains("second-session"));
    let again = b.ok(&["index", "rebuild", "--from-store"], None);
    assert!(again.contains("restored 0 sessions (2 were already in the index)"), "{again}");
}

/// The attack: someone with write access to the bucket (but not the box's keys) edits what
/// `index rebuild --from-store` reads. The session manifests are not signed, and the old
/// rebuild took ids, users and hashes from them: a session re-attributed to another user, a
/// recording's object swapped for another session's, and a session made up from another's
/// recordings were all restored as genuine. Now a recording is restored only as its own signed
/// manifest and its decrypted object show it: the re-attributed session's signed recording
/// comes back in a session made from it alone, as its signed manifest names it (issue 18,
/// `h-fix18g`), marked as reconstructed.
#[test]
fn a_rebuild_from_the_store_takes_only_what_the_box_signed() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let (mut b, recs) = pruned_sessions(&sshd, &s3, &["session-one", "session-two", "session-three"]);
    b.stop();
    let bucket = s3.dir.path().join(S3_BUCKET);
    let day = |r: &serde_json::Value| r["started_at"].as_str().unwrap()[..10].to_owned();
    let session_dir =
        |r: &serde_json::Value| bucket.join(box_id(&b)).join(day(r)).join(r["session_id"].as_str().unwrap());
    let object = |r: &serde_json::Value| session_dir(r).join(format!("{}.cast", r["id"].as_str().unwrap()));
    let (forged, swapped, genuine) = (&recs[0], &recs[1], &recs[2]);
    let genuine_said = b.export(genuine["id"].as_str().unwrap());
    // 1. Another user named in the session manifest.
    let m = session_dir(forged).join("manifest.json");
    let text = std::fs::read_to_string(&m).unwrap().replace("\"alice\"", "\"mallory\"");
    std::fs::write(&m, text).unwrap();
    // 2. The recording's object replaced by another session's, and its listed size and hash with it.
    std::fs::copy(object(genuine), object(swapped)).unwrap();
    let m = session_dir(swapped).join("manifest.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace(swapped["sha256"].as_str().unwrap(), genuine["sha256"].as_str().unwrap())
        .replace(&format!("\"bytes\": {}", swapped["bytes"]), &format!("\"bytes\": {}", genuine["bytes"]));
    std::fs::write(&m, text).unwrap();
    // 3. A session made up from the genuine one's recording.
    let made_up = session_dir(genuine).with_file_name("01900000-0000-7000-8000-000000000000");
    std::fs::create_dir_all(&made_up).unwrap();
    // Its recordings' keys still point at the genuine objects and their signed manifests.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(session_dir(genuine).join("manifest.json")).unwrap()).unwrap();
    m["session"]["id"] = "01900000-0000-7000-8000-000000000000".into();
    std::fs::write(made_up.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();

    for f in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(b.data().join(f));
    }
    // Another box's key: nothing is restored.
    let other = "11".repeat(32);
    let out = b.cli(&["index", "rebuild", "--from-store", "--key", &other], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("restored 0 sessions"), "{}", stdout(&out));
    assert!(b.recordings().is_empty());
    // The box's own key: the genuine session, and the re-attributed one as its signed recording
    // says (alice's, reconstructed), each refusal named.
    let out = b.ok(&["index", "rebuild", "--from-store"], None);
    assert!(out.contains("restored 2 sessions"), "{out}");
    assert!(out.contains("names user alice, the session manifest mallory"), "{out}");
    assert!(out.contains(&format!("refused recording {}", swapped["id"].as_str().unwrap())), "{out}");
    assert!(out.contains("names session"), "the made-up session is refused: {out}");
    let after = b.recordings();
    assert_eq!(after.len(), 2, "{after:?}");
    let back = |r: &serde_json::Value| after.iter().find(|a| a["id"] == r["id"]).unwrap().clone();
    for k in ["id", "session_id", "user", "target", "sha256", "bytes"] {
        assert_eq!(back(genuine)[k], genuine[k], "{k}");
        assert_eq!(back(forged)[k], forged[k], "{k}");
    }
    assert!(!after.iter().any(|a| a["id"] == swapped["id"]), "the swapped object is refused: {after:?}");
    let sessions = b.sessions();
    let remade = sessions.iter().find(|s| s["id"] == forged["session_id"]).unwrap();
    assert_eq!(remade["user"], "alice", "{remade}");
    assert!(remade["end_reason"].as_str().unwrap().contains("reconstructed"), "{remade}");
    assert_eq!(b.export(genuine["id"].as_str().unwrap()), genuine_said);
    let rebuilt = b.audit().into_iter().rfind(|e| e["kind"] == "index_rebuilt").unwrap();
    assert_eq!(rebuilt["detail"]["refused_recordings"], 3, "{rebuilt}");
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// A proxy in front of s3s-fs that refuses every read (GET and HEAD get 403 AccessDenied),
/// like a bucket policy granting a recorder key `s3:PutObject` alone, and logs each request's
/// method, path and answer.
fn write_only_proxy(s3: &S3, log: &std::path::Path) -> (std::process::Child, u16) {
    proxy(s3, log, false, false)
}

/// The write-only proxy; with `corrupt`, the first time each large body (a recording or one of
/// its parts) passes, one byte of it is flipped on the way, as a bad link or a meddler would.
/// Forwarded requests are logged with their body's length (`len=N`) and their
/// `x-amz-content-sha256`.
/// With `reads`, GET and HEAD are forwarded too and logged with their `Range`.
pub(crate) fn proxy(s3: &S3, log: &std::path::Path, corrupt: bool, reads: bool) -> (std::process::Child, u16) {
    let port = free_port();
    let script = format!(
        r#"
import http.server, http.client, re, socketserver, sys
UP = ("127.0.0.1", {up})
LOG = open({log:?}, "a", buffering=1)
CORRUPT = {corrupt}
READS = {reads}
SEEN = set()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def refuse(self):
        body = b"" if self.command == "HEAD" else b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body: self.wfile.write(body)
        LOG.write(f"{{self.command}} {{self.path}} 403\n")
    def forward(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        # Once per object or part number, whatever the upload id of the attempt.
        part = re.search(r"partNumber=([0-9]+)", self.path)
        seen = (self.path.split("?")[0], part.group(1) if part else None)
        if CORRUPT and body and len(body) > 100000 and seen not in SEEN:
            SEEN.add(seen)
            body = body[:1000] + bytes([body[1000] ^ 1]) + body[1001:]
            LOG.write(f"CORRUPTED {{self.path}}\n")
        c = http.client.HTTPConnection(*UP, timeout=120)
        c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items(): c.putheader(k, v)
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"): self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        LOG.write(f"{{self.command}} {{self.path}} {{r.status}} len={{n}} {{self.headers.get('x-amz-content-sha256')}}\n")
    def do_GET(self): self.forward_read() if READS else self.refuse()
    def do_HEAD(self): self.forward_read() if READS else self.refuse()
    def forward_read(self):
        c = http.client.HTTPConnection(*UP, timeout=120)
        c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items(): c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"): self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(data)
        LOG.write(f"{{self.command}} {{self.path}} {{r.status}} range={{self.headers.get('Range')}} {{len(data)}}\n")
    def do_PUT(self): self.forward()
    def do_POST(self): self.forward()
    def do_DELETE(self): self.forward()
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(("127.0.0.1", {port}), H).serve_forever()
"#,
        up = s3.port,
        log = log.display().to_string(),
        corrupt = if corrupt { "True" } else { "False" },
        reads = if reads { "True" } else { "False" },
    );
    let child = Command::new("/usr/bin/python3").arg("-c").arg(script).stdout(Stdio::null()).spawn().unwrap();
    wait_for_port(port, "the write-only proxy");
    (child, port)
}

/// Write-only by default: with a key that may not read anything back (every GET and HEAD
/// refused), small and multipart recordings are still uploaded and verified — by what the
/// server answered on arrival (the checked SHA-256 of a PUT, the ETag of the completed parts) —
/// with their manifests, and the bucket is never read.
#[test]
fn a_write_only_key_uploads_and_verifies_without_reading_back() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let (mut proxy, port) = write_only_proxy(&s3, &log);
    let mut b = Box::with_target(&sshd);
    b.configure("store", "part_size_mb = 5");
    b.store_s3("set", &format!("http://127.0.0.1:{port}"));
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo small-write-only").output().unwrap().status.success());
    let out = b.ssh("alice@web01").arg("head -c 10000000 /dev/urandom | base64 -w0").output().unwrap();
    assert!(out.status.success());
    let recs = eventually(60, "both recordings uploaded and verified", || {
        let r = b.recordings();
        (r.len() == 2 && r.iter().all(|r| r["status"] == "uploaded")).then_some(r)
    });
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_stored_intact(&b, &s3);
    assert!(recs.iter().any(|r| r["bytes"].as_u64().unwrap() > 10 * 1024 * 1024), "one went up in parts");
    let requests = std::fs::read_to_string(&log).unwrap();
    eprintln!("requests through the write-only proxy:\n{requests}");
    let reads: Vec<&str> = requests.lines().filter(|l| l.starts_with("GET ") || l.starts_with("HEAD ")).collect();
    // Only a look at the bucket (refused, and taken as a write-only key), never an object.
    let bucket_look = format!("HEAD /{S3_BUCKET} 403");
    assert!(reads.iter().all(|l| *l == bucket_look), "nothing was read back: {reads:?}");
    assert!(
        requests.lines().any(|l| l.starts_with("POST ") && l.contains("uploadId=")),
        "a multipart upload completed"
    );
    assert!(requests.lines().any(|l| l.starts_with("PUT ") && l.contains("manifest.json")), "manifests were written");
    // `sync status` says what the key can and cannot do.
    assert_eq!(status(&b)["key_access"], "write-only");
    let text = b.cli(&["sync", "status"], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("store key:   write-only") && text.contains("store set-read"), "{text}");
}

/// Uploads hash once: a recording's bytes go up signed with `UNSIGNED-PAYLOAD` (the SHA-256 and
/// per-part MD5s from sealing ride along as checksums), and that is not a hole: a byte flipped on
/// the way in a single PUT or in any part is caught (the server checks the PUT's SHA-256; each
/// part's ETag must be its MD5 from sealing; such a part is sent again in place), the recording
/// is not marked uploaded on it, and what is stored is intact.
#[test]
fn uploads_send_sealing_checksums_unsigned_and_a_corrupted_body_is_caught() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let (mut proxy, port) = proxy(&s3, &log, true, false);
    let mut b = Box::with_target(&sshd);
    b.configure("store", "part_size_mb = 5");
    b.store_s3("set", &format!("http://127.0.0.1:{port}"));
    b.serve();
    // About 1.3 MB (one PUT) and 13 MB (three parts).
    assert!(b.ssh("alice@web01").arg("head -c 1000000 /dev/urandom | base64 -w0").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("head -c 10000000 /dev/urandom | base64 -w0").output().unwrap().status.success());
    eventually(90, "both recordings uploaded after the corrupted sends", || {
        let r = b.recordings();
        (r.len() == 2 && r.iter().all(|r| r["status"] == "uploaded")).then_some(())
    });
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_stored_intact(&b, &s3);
    let requests = std::fs::read_to_string(&log).unwrap();
    eprintln!("requests:\n{requests}");
    let corrupted: Vec<&str> = requests.lines().filter(|l| l.starts_with("CORRUPTED ")).collect();
    assert!(corrupted.len() >= 4, "the single PUT and the three parts were each corrupted once: {corrupted:?}");
    // Every corrupted object or part was sent again (a part perhaps in a new multipart upload),
    // and that is what is stored.
    let what = |path: &str| {
        let (object, query) = path.split_once('?').unwrap_or((path, ""));
        let part = query.split('&').find(|p| p.starts_with("partNumber=")).unwrap_or("").to_owned();
        (object.to_owned(), part)
    };
    for c in &corrupted {
        let target = what(c.trim_start_matches("CORRUPTED "));
        let sent = requests
            .lines()
            .filter_map(|l| l.strip_prefix("PUT "))
            .filter(|l| what(l.split(' ').next().unwrap()) == target)
            .count();
        assert!(sent >= 2, "{target:?} was sent again after its corruption ({sent} sends)");
    }
    // The recordings' bytes (not the small manifests and audit checkpoints) went up unsigned:
    // nothing hashed them.
    let bodies: Vec<&str> = requests
        .lines()
        .filter(|l| {
            l.starts_with("PUT ")
                && !l.contains("manifest")
                && !l.contains("?uploads")
                && !l.contains("/audit-checkpoints/")
        })
        .collect();
    assert!(!bodies.is_empty());
    assert!(bodies.iter().all(|l| l.ends_with(" UNSIGNED-PAYLOAD")), "recording bodies are sent unsigned: {bodies:?}");
}

/// Write-only on Azure too: a SAS with create and write alone (no read, no list) uploads and
/// verifies small and block blobs by the service's own checks on arrival.
#[test]
fn a_create_and_write_sas_uploads_and_verifies_without_reading_back() {
    let sshd = Sshd::start();
    let az = Azurite::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "part_size_mb = 5");
    let url =
        format!("http://127.0.0.1:{}/{AZ_ACCOUNT}/recordings?{}", az.port, az.sas_with("2030-01-01T00:00:00Z", "cw"));
    use_azure(&b, &url);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo small-cw").output().unwrap().status.success());
    assert!(b.ssh("alice@web01").arg("head -c 10000000 /dev/urandom | base64 -w0").output().unwrap().status.success());
    eventually(40, "both recordings uploaded with a create+write SAS", || {
        b.recordings().iter().all(|r| r["status"] == "uploaded").then_some(())
    });
    // The SAS really cannot read: a GET with it is refused.
    let blob =
        format!("http://127.0.0.1:{}/{AZ_ACCOUNT}/recordings/x?{}", az.port, az.sas_with("2030-01-01T00:00:00Z", "cw"));
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "x-ms-version: 2021-08-06", &blob])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "403", "a create+write SAS may not read");
    assert_blobs_intact(&b, &az);
}

/// Playback of a pruned recording streams: the box fetches the stored object in ranges
/// (a window at a time, decrypted and hashed as it arrives), never with one whole GET.
#[test]
fn a_pruned_recording_is_fetched_in_ranges_for_export() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    // About 13 MB: two 8 MiB windows.
    let out =
        b.ssh("alice@web01").arg("head -c 10000000 /dev/urandom | base64 -w0; echo; echo last-line").output().unwrap();
    assert!(out.status.success());
    let rec = eventually(60, "uploaded and pruned", || {
        let r = b.recordings();
        (r.len() == 1 && r[0]["status"] == "uploaded" && !b.data().join(r[0]["path"].as_str().unwrap()).exists())
            .then(|| r[0].clone())
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("requests.log");
    let (mut proxy, port) = proxy(&s3, &log, false, true);
    b.store_s3("set-read", &format!("http://127.0.0.1:{port}"));
    let cast = b.export(rec["id"].as_str().unwrap());
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(
        cast.contains("last-line") && cast.len() > 10_000_000,
        "the whole recording exported ({} bytes)",
        cast.len()
    );
    let requests = std::fs::read_to_string(&log).unwrap();
    eprintln!("reads:\n{requests}");
    let id = rec["id"].as_str().unwrap();
    let gets: Vec<&str> =
        requests.lines().filter(|l| l.starts_with("GET ") && l.contains(&format!("{id}.cast"))).collect();
    assert!(gets.len() >= 2, "fetched in more than one range: {gets:?}");
    assert!(gets.iter().all(|l| l.contains("range=bytes=")), "every fetch of the recording is a range: {gets:?}");
    let most = gets.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).max().unwrap();
    assert!(most <= 8 * 1024 * 1024, "no answer bigger than one window ({most} bytes)");
}

/// Twelve range requests at once on a recording only in the store: the old playback fetched
/// and decrypted the whole object into memory for each (twice for a cast: its length, then its
/// part), so the box's memory grew by the recording's size per request (123 to 888 MiB here).
/// The object is now read part by part as the browser reads: each request holds a fetch window,
/// a few buffers and its threads (under 8 MiB), not the recording, and the bytes are the
/// recording's.
#[test]
fn ranged_playback_of_a_pruned_recording_keeps_the_box_small() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    let out = b
        .ssh("alice@web01")
        .arg("head -c 18000000 /dev/urandom | base64 -w 120; echo pruned-ends-here")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = eventually(300, "uploaded and pruned", || {
        let r = b.recordings();
        (r.len() == 1 && r[0]["status"] == "uploaded" && !b.data().join(r[0]["path"].as_str().unwrap()).exists())
            .then(|| r[0].clone())
    });
    let id = rec["id"].as_str().unwrap().to_owned();
    let plain = b.export(&id).into_bytes();
    let len = plain.len() as u64;
    assert!(len > 24_000_000, "{len}");
    let mut w = crate::web::Web::new(&b);
    assert_eq!(w.login("audrey", "audrey-passwd").status, 200);

    std::fs::write(format!("/proc/{}/clear_refs", b.pid()), "5").unwrap();
    let before = peak_rss_mib(b.pid());
    let path = format!("/api/v1/recordings/{id}/content");
    let dir = tempfile::tempdir().unwrap();
    let mut ranges: Vec<(u64, u64)> = (0..10).map(|k| (k * (len / 10) + 11, k * (len / 10) + 11 + 65_535)).collect();
    ranges.extend([(len - 1, len - 1), (0, 9)]);
    let fetches: Vec<_> = ranges
        .iter()
        .enumerate()
        .map(|(k, (a, z))| {
            Command::new("curl")
                .args(["-sk", "--max-time", "300", "-o"])
                .arg(dir.path().join(k.to_string()))
                .args(["-w", "%{http_code}", "-b"])
                .arg(w.jar.path())
                .args(["-H", &format!("Range: bytes={a}-{z}")])
                .arg(format!("{}{path}", w.base))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (k, f) in fetches.into_iter().enumerate() {
        let out = f.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "206", "range {:?}", ranges[k]);
    }
    let after = peak_rss_mib(b.pid());
    eprintln!(
        "12 parallel range requests on a pruned {len}-byte recording: box peak RSS {before} MiB before, {after} MiB during"
    );
    for (k, (a, z)) in ranges.iter().enumerate() {
        let got = std::fs::read(dir.path().join(k.to_string())).unwrap();
        assert!(got == plain[*a as usize..=*z as usize], "range {a}-{z} is the recording's bytes");
    }
    assert!(after < before + 12 * 8, "peak RSS went from {before} to {after} MiB");
}

/// The bytes of the request bodies a [`proxy`] log shows PUT to paths holding `name`.
pub(crate) fn put_bytes_to(requests: &str, name: &str) -> u64 {
    requests
        .lines()
        .filter(|l| l.starts_with("PUT ") && l.split(' ').nth(1).is_some_and(|p| p.contains(name)))
        .filter_map(|l| l.split(' ').find_map(|w| w.strip_prefix("len=")))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}
