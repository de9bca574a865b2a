//! Red team `h-red22`, end to end: attacks on the daemon's one supervisor and its stop (issue
//! 22). Each passed while the hole it names was open; the fixes flipped their assertions.

use crate::harness::{Box, IndexWriteLock, Sshd, eventually, witness_bin};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A session whose client stopped reading (a suspended `ssh`, a full terminal, a hostile client:
/// the SSH channel window stays shut) held its task for ever in `end_with`: the shutdown notice
/// was a channel write waiting for window, with no deadline; `witness_ssh::serve` gave up on it
/// after its grace, and the stop ended "cleanly" — exit 0, "stopped; every recording is closed"
/// — while the recording was still open in the index. Now the end waits 3 s for the client,
/// then cuts the connection, and the recording is closed by the stop.
#[test]
fn red22_stop_a_client_that_stopped_reading_is_cut_and_its_recording_closed() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    // The target writes without end; the client's output goes to a pipe nobody reads, so the
    // client stops adjusting its window once the pipe and its buffers are full.
    let mut client =
        b.ssh("alice@web01").arg("yes witness-red22").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    eventually(20, "the recording started", || {
        b.recordings().into_iter().find(|r| r["status"] == "recording").map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(4));

    let (st, took) = b.stop_within(Duration::from_secs(30));
    let log = b.log();
    let st = st.unwrap_or_else(|| panic!("witness still running {took:?} after SIGTERM:\n{log}"));
    assert!(st.success(), "{st:?}\n{log}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(log.contains("the client did not take the session's end; connection cut"), "{log}");
    assert!(log.contains("stopped; every recording is closed"), "{log}");
    let rows = b.recordings();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_ne!(rows[0]["status"], "recording", "{}", rows[0]);
    let open: Vec<serde_json::Value> =
        b.sessions().into_iter().filter(|s| s.get("ended_at").is_some_and(|v| v.is_null())).collect();
    assert!(open.is_empty(), "sessions still open in the index: {open:?}");
    let _ = client.kill();
    let mut out = String::new();
    let _ = client.stderr.take().unwrap().read_to_string(&mut out);
    let _ = client.wait();
}

/// SIGTERM kept its default action (end the process at once) until the "signals" task first
/// ran, after recovery, key creation, the archive pool, the listeners and even `READY=1`: a stop
/// asked for while the box started killed it mid-step with no log line. Now the handlers are
/// the first thing `serve` installs, and such a stop is carried out once the start is done.
#[test]
fn red22_sigterm_while_starting_is_a_stop_like_any_other() {
    let sshd = Sshd::start();
    let b = Box::with_target(&sshd);
    let log_path = b.dir.path().join("witness-start.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(witness_bin())
        .arg("--data")
        .arg(b.data())
        .args(["serve", "--ssh-listen", &format!("127.0.0.1:{}", b.port)])
        .args(["--web-listen", &format!("127.0.0.1:{}", b.web_port)])
        .env("WITNESS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // The daemon is running its own code: `serve` has logged its first line.
    let start = Instant::now();
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("board profile") {
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let st = child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(st.signal(), None, "killed by the signal itself, not a stop: {st:?}\n{text}");
    assert!(st.success(), "{st:?}\n{text}");
    assert!(text.contains("SIGTERM: ending sessions"), "{text}");
    assert!(text.contains("stopped; every recording is closed"), "{text}");
}

/// The stop's deadline covers the stages, not what `serve` does after them, and not the index
/// writes the ending sessions make on the runtime's worker threads: when the index is slow to
/// write (here another process holds SQLite's WAL write lock, as a `witness` command suspended
/// in a transaction does; a stalling disk does the same), every session's end waits the 10 s
/// busy timeout holding the index's one mutex, and the audit checkpoint at stop (on the main
/// thread, after the deadline, without a limit) queues behind them all: the process outlives
/// systemd's 30 s and is SIGKILLed in the middle of its writes. Worse, those writes run
/// synchronously on the runtime's worker threads (`broker.session_ended`,
/// `recording_finished` from async code), so with every worker parked in SQLite no thread drives
/// tokio's timers: the supervisor's late-grace sleep never returns and the line naming what
/// still runs is never written. Seen: SIGTERM at t, web console stopped at t+20.7 s, then
/// nothing until SIGKILL at t+90 s. Now a thread off the runtime keeps the deadline: the
/// process names what still runs and ends before systemd's 30 s.
#[test]
fn red22_stop_a_slow_index_still_ends_within_systemds_30s_naming_what_ran() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients
            .push(b.ssh("alice@web01").arg("sleep 600").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    }
    eventually(30, "four recordings", || {
        (b.recordings().into_iter().filter(|r| r["status"] == "recording").count() == 4).then_some(())
    });
    // Another process takes SQLite's WAL write lock and keeps it.
    let mut holder = IndexWriteLock::take(&b);
    // The lock holds: a CLI write now waits its busy timeout and fails.
    let t = Instant::now();
    let add = b.cli(&["user", "add", "bob", "--password-stdin"], Some("bob-password-1\n"));
    assert!(!add.status.success() && t.elapsed() >= Duration::from_secs(9), "the lock did not hold: {add:?}");

    let (st, took) = b.stop_within(Duration::from_secs(90));
    let log = b.log();
    assert!(holder.alive(), "the lock holder died");
    drop(holder);
    for mut c in clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    let tail: Vec<&str> = log.lines().rev().take(25).collect::<Vec<_>>().into_iter().rev().collect();
    eprintln!("stop took {took:?} (exit {st:?}); the log ends:\n{}", tail.join("\n"));
    assert!(took < Duration::from_secs(30), "the stop broke its deadline ({took:?}, {st:?}):\n{log}");
    assert!(st.is_some_and(|s| !s.success()), "a stop cut at the deadline is not a clean exit: {st:?}");
    assert!(log.contains("still running at the stop deadline"), "{log}");
}
