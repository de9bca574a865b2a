//! A stop under load: `SIGTERM` while 20 recorded SSH sessions and an RDP session run. Every
//! user is told, every recording is completed and sealed by the stop itself (not by the next
//! start's recovery), and the process is gone before systemd's `TimeoutStopSec` (30 s).

use crate::harness::{Box, S3, S3_BUCKET, S3_SECRET, Sshd, eventually};
use crate::rdp::{RED, RdpBox, STAYED_UP, Shadow, Xvfb, add_shadow_target, screen_shows};
use crate::ssh_path::start_ticker;
use std::io::Read;
use std::time::{Duration, Instant};

#[test]
fn a_stop_under_load_tells_every_user_and_seals_every_recording_before_the_deadline() {
    let sshd = Sshd::start();
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let b = Box::new();
    b.add_target("web01", &sshd);
    b.ok(&["grant", "alice", "web01"], None);
    add_shadow_target(&b, &shadow, &[]);
    b.ok(&["grant", "alice", "nla01"], None);
    let mut rb = RdpBox::serve(b);

    let screen = Xvfb::start();
    let rdp = rb.client(&screen, "alice@nla01", "alice-pw", 120, &[]);
    screen_shows(&screen, &[RED], 20, |_| {});
    let ssh: Vec<_> = (0..20).map(|_| start_ticker(&rb.b, "alice@web01", 600)).collect();
    let recording = eventually(30, "21 recordings running", || {
        let rows = rb.b.recordings();
        (rows.iter().filter(|r| r["status"] == "recording").count() == 21).then_some(rows)
    });
    assert_eq!(recording.len(), 21, "{recording:?}");

    let start = Instant::now();
    let st = rb.stop();
    let took = start.elapsed();
    let log = rb.b.log();
    assert!(st.success(), "witness exits 0 on SIGTERM: {st:?}\n{log}");
    assert!(took < Duration::from_secs(25), "the stop took {took:?}, past its deadline under systemd's 30 s");

    // Every user was told why the session ended.
    for (i, mut client) in ssh.into_iter().enumerate() {
        let mut err = String::new();
        client.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let _ = client.wait();
        assert!(err.contains("the box is shutting down"), "ssh session {i} was not told: {err:?}");
    }
    let (st, client_log) = rdp.wait(Duration::from_secs(15));
    assert_ne!(st.code(), Some(STAYED_UP), "the RDP session outlived the box: {client_log}");
    let sessions = rb.b.sessions();
    assert_eq!(sessions.len(), 21);
    for s in &sessions {
        assert!(s["end_reason"].as_str().is_some_and(|r| r.starts_with("the box is shutting down")), "{s}");
    }

    // Every recording completed and sealed by the stop, before any restart's recovery.
    let rows = rb.b.recordings();
    assert_eq!(rows.len(), 21);
    for r in &rows {
        crate::harness::assert_completed(r);
        assert_eq!(r["recovered"], false, "finished by the stop, not by recovery: {r}");
        assert!(r["seal_error"].is_null(), "{r}");
        let path = rb.b.data().join(r["path"].as_str().unwrap());
        assert!(
            path.with_extension("manifest.json").is_file() && path.with_extension("manifest.sig").is_file(),
            "recording {} was not sealed by the stop",
            r["id"]
        );
    }
    assert!(rows.iter().any(|r| r["protocol"] == "rdp"), "{rows:?}");
    assert!(log.contains("stopped; every recording is closed"), "{log}");
}

#[test]
fn a_store_that_hangs_at_the_stop_is_named_and_the_stop_keeps_its_deadline() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    // The store becomes a black hole: it takes connections and never answers.
    let port = s3.port;
    drop(s3);
    let hole = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in hole.incoming().flatten() {
            held.push(c);
        }
    });
    // A session ends; the archive pool seals its recording, takes it to the black hole and waits
    // there.
    let out = b.ssh("alice@web01").arg("echo into-the-hole").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(20, "the recording completed", || {
        b.recordings().into_iter().find(|r| r["status"] == "completed").map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(3));

    let (st, took) = b.stop_within(Duration::from_secs(30));
    let log = b.log();
    assert!(st.is_some(), "witness was still running {took:?} after SIGTERM (systemd would SIGKILL it):\n{log}");
    assert!(took < Duration::from_secs(25), "the stop took {took:?}, past its deadline");
    let named = log.lines().find(|l| l.contains("still running at the stop deadline")).unwrap_or_default();
    assert!(named.contains("archive"), "the hung work is not named: {named:?}\n{log}");
    // Nothing is lost: the recording is on the box, sealed, and still to be uploaded.
    let rows = b.recordings();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "completed", "{}", rows[0]);
    let path = b.data().join(rows[0]["path"].as_str().unwrap());
    assert!(path.is_file() && path.with_extension("manifest.sig").is_file(), "{}", rows[0]);
}
