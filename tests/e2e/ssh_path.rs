//! The recorded SSH jump path, end to end: real `ssh`/`scp`/`sftp` → `witness serve` → real
//! `sshd`, with the recordings and the index checked afterwards.

use crate::harness::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn cast_text(b: &Box, rec: &serde_json::Value) -> String {
    b.export(rec["id"].as_str().unwrap())
}

#[test]
fn interactive_pty_session_is_recorded_with_resize() {
    let (b, _sshd) = box_with_target();
    let tmux = tmux_ssh(&b, "pty", "alice@web01");
    let pane = || stdout(&Command::new("tmux").args(["capture-pane", "-p", "-t", &tmux]).output().unwrap());
    eventually(15, "a shell prompt through the box", || pane().contains('#').then_some(()));
    Command::new("tmux").args(["send-keys", "-t", &tmux, "echo typed-$((6*7))", "Enter"]).status().unwrap();
    eventually(10, "the command's output on the user's screen", || pane().contains("typed-42").then_some(()));
    Command::new("tmux").args(["resize-window", "-t", &tmux, "-x", "120", "-y", "40"]).status().unwrap();
    eventually(10, "the resize reaching the target", || {
        Command::new("tmux").args(["send-keys", "-t", &tmux, "stty size", "Enter"]).status().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        pane().contains("40 120").then_some(())
    });
    Command::new("tmux").args(["send-keys", "-t", &tmux, "exit", "Enter"]).status().unwrap();
    let rec = finished_recording(&b);
    let _ = Command::new("tmux").args(["kill-session", "-t", &tmux]).status();
    assert_completed(&rec);
    assert_eq!(rec["recovered"], false);
    let cast = cast_text(&b, &rec);
    let (header, events) = witness_core::cast::parse(cast.as_bytes()).expect("a valid asciicast v2 file");
    assert_eq!((header.width, header.height), (100, 30));
    assert_eq!(
        header.env.get("TERM").map(String::as_str),
        Some("tmux-256color").or(header.env.get("TERM").map(String::as_str))
    );
    assert!(events.iter().any(|e| e.code == "r" && e.data == "120x40"), "a resize event 120x40");
    assert!(!events.iter().any(|e| e.code == "i"), "input is not recorded by default");
    let path = b.dir.path().join("exported.cast");
    std::fs::write(&path, &cast).unwrap();
    let played = asciinema_cat(&path);
    assert!(played.contains("echo typed-$((6*7))"), "what was typed is in the recording (as echoed)");
    assert!(played.contains("typed-42"), "what was printed is in the recording");
    let session = &b.sessions()[0];
    assert_eq!((session["user"].as_str(), session["target"].as_str()), (Some("alice"), Some("web01")));
    assert_completed(session);
    assert!(session["ended_at"].is_string());
}

#[test]
fn exec_is_recorded_and_exit_status_relayed() {
    let (b, _sshd) = box_with_target();
    let out = b.ssh("alice@web01").arg("echo out-$((2+3)); echo err-line >&2; exit 7").output().unwrap();
    assert_eq!(out.status.code(), Some(7), "exit status relayed: {}", stderr(&out));
    assert_eq!(stdout(&out), "out-5\n");
    assert!(stderr(&out).contains("err-line"));
    let rec = finished_recording(&b);
    assert_completed(&rec);
    let cast = cast_text(&b, &rec);
    assert!(cast.contains("out-5") && cast.contains("err-line"), "{cast}");
    assert!(cast.contains(r#""m", "exit status 7""#), "the exit status the user learned is recorded: {cast}");
    assert!(rec["channel"].as_str().unwrap().starts_with("exec: echo out-"));
    // The password path works as well as keys (USER:TARGET form).
    let out = b.ssh_password("alice:web01", "alice-pw").arg("echo via-password").output().unwrap();
    assert!(stdout(&out).contains("via-password"), "{}", stderr(&out));
    // The host key was pinned on first use, with an audit event.
    assert!(b.audit_kinds().contains(&"host_key_pinned".to_string()));
    let row = &b.recordings()[0];
    for key in ["id", "session_id", "user", "target", "protocol", "started_at", "ended_at", "status", "bytes"] {
        assert!(row.get(key).is_some(), "recordings --json rows carry {key}");
    }
}

#[test]
fn scp_and_sftp_transfer_20mb_intact_and_audited() {
    let (b, _sshd) = box_with_target();
    let work = b.dir.path().join("xfer");
    std::fs::create_dir_all(&work).unwrap();
    let src = work.join("payload.bin");
    let out = sh(&format!("head -c 20000000 /dev/urandom > {}", src.display()));
    assert!(out.status.success());
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = remote_dir.path().join("up.bin");
    let scp = |args: &[&str]| {
        let mut c = Command::new("scp");
        c.args(client_options()).arg("-i").arg(&b.user_key).arg("-P").arg(b.port.to_string()).args(args);
        let out = c.output().unwrap();
        assert!(out.status.success(), "scp {args:?}: {}", stderr(&out));
    };
    // scp (SFTP protocol, the default since OpenSSH 9) up and down.
    scp(&[src.to_str().unwrap(), &format!("alice@web01@127.0.0.1:{}", remote.display())]);
    assert_eq!(sha256_file(&remote), sha256_file(&src));
    let back = work.join("back.bin");
    scp(&[&format!("alice@web01@127.0.0.1:{}", remote.display()), back.to_str().unwrap()]);
    assert_eq!(sha256_file(&back), sha256_file(&src));
    // Legacy scp protocol (-O) runs `scp -t` over exec.
    let legacy = remote_dir.path().join("legacy.bin");
    scp(&["-O", src.to_str().unwrap(), &format!("alice@web01@127.0.0.1:{}", legacy.display())]);
    assert_eq!(sha256_file(&legacy), sha256_file(&src));
    // sftp batch put/get.
    let batch = work.join("batch");
    let got = work.join("got.bin");
    let sftp_remote = remote_dir.path().join("sftp.bin");
    std::fs::write(
        &batch,
        format!("put {} {}\nget {} {}\n", src.display(), sftp_remote.display(), sftp_remote.display(), got.display()),
    )
    .unwrap();
    let out = b.sftp_batch("alice@web01", &batch);
    assert!(out.status.success(), "sftp: {}", stderr(&out));
    assert_eq!(sha256_file(&got), sha256_file(&src));
    // The audit log says what moved where, with sizes.
    let audit = eventually(10, "transfer audit events", || {
        let a = b.audit();
        let sftp: Vec<_> = a.iter().filter(|e| e["kind"] == "sftp").cloned().collect();
        (sftp.len() >= 4 && a.iter().any(|e| e["kind"] == "scp")).then_some(a)
    });
    let has = |op: &str, path: &std::path::Path| {
        audit.iter().any(|e| {
            e["kind"] == "sftp"
                && e["detail"]["op"] == op
                && e["detail"]["path"] == path.to_str().unwrap()
                && e["detail"]["bytes"] == 20_000_000
        })
    };
    assert!(has("upload", &remote), "scp upload audited with size: {audit:#?}");
    assert!(has("download", &remote), "scp download audited with size");
    assert!(has("upload", &sftp_remote) && has("download", &sftp_remote), "sftp put/get audited");
    let legacy_ev = audit.iter().find(|e| e["kind"] == "scp").unwrap();
    assert!(legacy_ev["detail"]["command"].as_str().unwrap().contains("-t"));
    assert!(legacy_ev["detail"]["bytes_up"].as_u64().unwrap() >= 20_000_000);
    // The legacy protocol's file is an event of its own, with the content's SHA-256.
    let file = audit.iter().find(|e| e["kind"] == "scp_file").expect("scp_file audited");
    assert_eq!(file["detail"]["op"], "upload");
    assert_eq!(file["detail"]["bytes"], 20_000_000);
    assert_eq!(file["detail"]["sha256"].as_str().unwrap(), sha256_file(&src));
}

#[test]
fn errors_give_one_clear_line_and_an_audit_event() {
    let sshd = Sshd::start();
    let other = Sshd::start();
    let mut b = Box::new();
    b.add_target("web01", &sshd);
    b.ok(
        &[
            "target",
            "add",
            "db01",
            "--ssh",
            "127.0.0.1:1",
            "--login",
            "root",
            "--identity",
            sshd.identity().to_str().unwrap(),
        ],
        None,
    );
    // A pinned key that is not the server's: a man in the middle, as far as the box knows.
    let addr = format!("127.0.0.1:{}", sshd.port);
    b.ok(
        &[
            "target",
            "add",
            "mitm",
            "--ssh",
            &addr,
            "--login",
            "root",
            "--identity",
            sshd.identity().to_str().unwrap(),
            "--host-key",
            other.host_key_pub().to_str().unwrap(),
        ],
        None,
    );
    b.ok(
        &[
            "target",
            "add",
            "nogrant",
            "--ssh",
            &addr,
            "--login",
            "root",
            "--identity",
            sshd.identity().to_str().unwrap(),
        ],
        None,
    );
    for t in ["web01", "db01", "mitm"] {
        b.ok(&["grant", "alice", t], None);
    }
    b.serve();

    let wrong = b.ssh_password("alice@web01", "not-the-password").arg("true").output().unwrap();
    assert_eq!(wrong.status.code(), Some(255));
    assert!(stderr(&wrong).contains("Permission denied"), "{}", stderr(&wrong));

    let check = |login: &str, expect: &str| {
        let out = b.ssh(login).arg("echo should-not-run").output().unwrap();
        assert_ne!(out.status.code(), Some(0), "{login}");
        assert!(!stdout(&out).contains("should-not-run"));
        let err = stderr(&out);
        assert!(err.contains(expect), "{login}: expected {expect:?} in {err:?}");
        assert!(err.lines().filter(|l| l.starts_with("witness:")).count() == 1, "one line: {err:?}");
    };
    check("alice@nosuch", "witness: unknown target \"nosuch\"");
    check("alice@nogrant", "witness: alice has no grant for target nogrant");
    check("alice@db01", "witness: target db01 (127.0.0.1:1) is unreachable: connection refused");
    check("alice@mitm", "witness: host key of target mitm");
    check("alice", "witness: no target named; log in as alice@TARGET");

    // ssh -J would tunnel end to end, past the recorder: refused with the way to do it right.
    let cfg = b.dir.path().join("jump_config");
    std::fs::write(
        &cfg,
        format!(
            "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n  IdentityFile {}\n",
            b.user_key.display()
        ),
    )
    .unwrap();
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&cfg)
        .args(["-J", &format!("alice@127.0.0.1:{}", b.port), "-p", &sshd.port.to_string(), "root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("log in as alice@TARGET"), "{}", stderr(&out));

    let kinds = b.audit_kinds();
    for k in ["login_failed", "access_denied", "target_failed", "tunnel_refused"] {
        assert!(kinds.iter().any(|x| x == k), "audit event {k} in {kinds:?}");
    }
    let audit = b.audit();
    let mitm = audit
        .iter()
        .find(|e| e["kind"] == "target_failed" && e["target"] == "mitm")
        .expect("host key mismatch audited");
    assert!(mitm["detail"]["error"].as_str().unwrap().contains("has changed"));
    // Secrets never reach the log or the audit trail.
    let everything = format!("{}{}", b.log(), serde_json::to_string(&audit).unwrap());
    assert!(!everything.contains("alice-pw") && !everything.contains("not-the-password"));
    assert!(!everything.contains("PRIVATE KEY"));
    // Refused logins leave no session rows; the ones that got through are ended with the reason.
    let sessions = b.sessions();
    let db = sessions.iter().find(|s| s["target"] == "db01").expect("a session for the unreachable target");
    assert!(db["end_reason"].as_str().unwrap().contains("unreachable"), "{db}");
    assert!(sessions.iter().all(|s| s["target"] != "nosuch" && s["target"] != "nogrant"));
    // Every one of those events is on the audit log's hash chain.
    assert!(b.ok(&["audit", "--verify"], None).contains("audit log intact"));
}

/// Starts a recorded `ssh` session printing a tick every 0.1 s, `ticks` times, and waits until
/// the first ticks came through: at most 60 s, then the test fails naming what it saw (a target
/// whose commands hung once kept a test waiting for 20 minutes).
pub(crate) fn start_ticker(b: &Box, login: &str, ticks: u32) -> std::process::Child {
    let mut child = b
        .ssh(login)
        .arg(format!("for i in $(seq 1 {ticks}); do echo tick-$i; sleep 0.1; done"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    // The reader keeps draining after the first ticks, so the session never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("tick-5\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(e) => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "ticker {}: {:?} came through; ssh said: {err}",
                    if matches!(e, std::sync::mpsc::RecvTimeoutError::Timeout) {
                        "printed no tick-5 within 60 s"
                    } else {
                        "ended early"
                    },
                    String::from_utf8_lossy(&seen)
                );
            }
        }
    }
    child
}

#[test]
fn target_killed_mid_session_recording_completes() {
    let (b, mut sshd) = box_with_target();
    let client = start_ticker(&b, "alice@web01", 600);
    std::thread::sleep(Duration::from_millis(500));
    sshd.kill();
    let out = client.wait_with_output_stderr();
    assert!(out.contains("witness: connection to target web01 was lost"), "{out}");
    let rec = finished_recording(&b);
    assert_completed(&rec);
    let cast = cast_text(&b, &rec);
    let (_, events) = witness_core::cast::parse(cast.as_bytes()).unwrap();
    let text: String = events.iter().map(|e| e.data.as_str()).collect();
    assert!(text.contains("tick-5\n") && text.contains("tick-8\n"), "output up to the kill is recorded: {text}");
    let s = eventually(10, "the session to end", || b.sessions().into_iter().find(|s| s["ended_at"].is_string()));
    assert!(s["end_reason"].as_str().unwrap().contains("lost"), "{s}");
}

trait WaitStderr {
    fn wait_with_output_stderr(self) -> String;
}

impl WaitStderr for std::process::Child {
    fn wait_with_output_stderr(mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.wait();
        err
    }
}

#[test]
fn expired_grant_ends_the_session_with_a_message() {
    let sshd = Sshd::start();
    let mut b = Box::new();
    b.add_target("web01", &sshd);
    b.ok(&["grant", "alice", "web01", "--for", "4s"], None);
    b.serve();
    let started = std::time::Instant::now();
    let client = start_ticker(&b, "alice@web01", 600);
    let err = client.wait_with_output_stderr();
    assert!(started.elapsed() < Duration::from_secs(20), "the session ended at expiry, not at its own end");
    assert!(err.contains("grant for target web01 has expired; session ended"), "{err}");
    let rec = finished_recording(&b);
    assert_completed(&rec);
    let s = &b.sessions()[0];
    assert!(s["end_reason"].as_str().unwrap().contains("expired"), "{s}");
    // And no new session after expiry.
    let out = b.ssh("alice@web01").arg("true").output().unwrap();
    assert!(stderr(&out).contains("has expired"), "{}", stderr(&out));
    assert!(b.audit_kinds().contains(&"session_terminated".to_string()));
}

#[test]
fn kill9_of_the_box_mid_session_then_restart_recovers() {
    let (mut b, _sshd) = box_with_target();
    let client = start_ticker(&b, "alice@web01", 600);
    std::thread::sleep(Duration::from_millis(1500)); // past one flush interval
    b.kill9();
    let _ = client.wait_with_output_stderr();
    assert_eq!(b.recordings()[0]["status"], "recording", "the crash left the recording open");
    b.serve();
    let rec = b.recordings()[0].clone();
    assert_completed(&rec);
    assert_eq!(rec["recovered"], true);
    let cast = cast_text(&b, &rec);
    let path = b.dir.path().join("recovered.cast");
    std::fs::write(&path, &cast).unwrap();
    let played = asciinema_cat(&path);
    assert!(played.contains("tick-5"), "playable up to the crash: {played}");
    let sessions = b.sessions();
    assert!(sessions.iter().all(|s| s["status"] != "recording"), "no row left in recording: {sessions:?}");
    assert_eq!(sessions[0]["recovered"], true);
    assert!(b.audit_kinds().contains(&"recovered".to_string()));
}

#[test]
fn full_disk_refuses_new_sessions_and_ends_running_ones() {
    let (mut b, _sshd) = box_with_target();
    // Fail closed: below the free-space floor no session starts.
    b.stop();
    let cfg = b.data().join("witness.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("# min_free_mb = 256", "min_free_mb = 100000000")).unwrap();
    b.serve();
    let out = b.ssh("alice@web01").arg("echo should-not-run").output().unwrap();
    assert!(!stdout(&out).contains("should-not-run"));
    assert!(stderr(&out).contains("witness: the box's recording storage is full"), "{}", stderr(&out));
    // A disk that fills during a session ends it: nothing unrecorded gets through.
    b.stop();
    std::fs::write(&cfg, text.replace("# min_free_mb = 256", "min_free_mb = 1")).unwrap();
    let recordings = b.data().join("recordings");
    let mount =
        Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"]).arg(&recordings).status().unwrap();
    assert!(mount.success(), "mounting a small tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(recordings);
    b.serve();
    let out = b.ssh("alice@web01").arg("head -c 20000000 /dev/zero | tr '\\0' 'x'").output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(stdout(&out).len() < 20_000_000, "the session stopped before all output reached the user");
    assert!(stderr(&out).contains("No space left on device"), "{}", stderr(&out));
    let rec = finished_recording(&b);
    assert_eq!(rec["status"], "failed");
    assert!(rec["status_reason"].as_str().unwrap().contains("No space left on device"));
    // What reached the user is in the recording: the recording is never behind the screen.
    let cast = cast_text(&b, &rec);
    let (_, events) = witness_core::cast::parse(cast.as_bytes()).expect("the failed recording is still a valid cast");
    let recorded: usize = events.iter().map(|e| e.data.len()).sum();
    assert!(recorded >= stdout(&out).len(), "recorded {recorded} bytes, user saw {}", stdout(&out).len());
    assert!(b.audit_kinds().contains(&"recording_failed".to_string()));
}

#[test]
fn port_forward_follows_the_grant() {
    let (b, _sshd) = box_with_target();
    // An echo service on the target side.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in echo.incoming().flatten() {
            let mut s2 = s.try_clone().unwrap();
            let mut s = s;
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s, &mut s2);
            });
        }
    });
    let forward = |allowed: bool| {
        let local = free_port();
        let mut tunnel = b
            .ssh("alice@web01")
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L", &format!("{local}:127.0.0.1:{echo_port}")])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_port(local, "ssh -L");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping through the box\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        drop(s);
        std::thread::sleep(Duration::from_millis(300));
        let _ = tunnel.kill();
        let err = tunnel.wait_with_output_stderr();
        (String::from_utf8_lossy(&buf[..n]).into_owned(), err, allowed)
    };
    let (echoed, err, _) = forward(false);
    assert_eq!(echoed, "");
    assert!(err.contains("port forwarding to web01 is not allowed"), "{err}");
    b.ok(&["grant", "alice", "web01", "--forwarding"], None);
    let (echoed, _, _) = forward(true);
    assert_eq!(echoed, "ping through the box\n");
    // (wait_for_port's probe opens and closes a forward of its own, with 0 bytes.)
    let audit = eventually(10, "the forwarded bytes in the audit log", || {
        let a = b.audit();
        a.iter()
            .any(|e| e["kind"] == "forward_closed" && e["detail"]["bytes_up"] == 21 && e["detail"]["bytes_down"] == 21)
            .then_some(a)
    });
    assert!(audit.iter().any(|e| e["kind"] == "forward_refused"));
}

#[test]
fn clean_shutdown_finishes_recordings() {
    let (mut b, _sshd) = box_with_target();
    let client = start_ticker(&b, "alice@web01", 600);
    let st = b.stop();
    assert!(st.success(), "witness exits 0 on SIGTERM");
    let err = client.wait_with_output_stderr();
    assert!(err.contains("the box is shutting down"), "{err}");
    let rec = b.recordings()[0].clone();
    assert_completed(&rec);
    assert_eq!(rec["recovered"], false, "finished by the shutdown, not by recovery");
}

#[test]
fn concurrent_first_connections_share_the_pinned_host_key() {
    // No --host-key: the first connection pins what it sees; the others, racing it, must
    // accept the same key rather than fail.
    let (b, _sshd) = box_with_target();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            b.ssh("alice@web01")
                .arg(format!("echo racer-{i}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert_eq!(stdout(&out), format!("racer-{i}\n"), "client {i}: {}", stderr(&out));
    }
    assert!(!b.audit_kinds().contains(&"target_failed".to_string()));
}
