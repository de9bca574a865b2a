//! Red team `h-red22b`, end to end: the stop's watchdog after the fixes of h-red22 (issue 22).
//! Each passed while the hole it names was open; the fix flipped its assertions.

use crate::harness::{Box, IndexWriteLock, Sshd, eventually};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The stop's watchdog (`Supervisor::watchdog`) is armed only once the runtime has seen the
/// stop: SIGTERM is read by a task on the runtime (`stop_on_signal`), so it needs a free worker
/// to poll tokio's signal driver. When the index is slow to write (another process holds
/// SQLite's WAL write lock, as a suspended `witness` command in a transaction does) *before*
/// the SIGTERM, sessions that end on their own (here six clients killed) make their index
/// writes (`recording_finished`, `session_ended`) synchronously on the worker threads, each
/// waiting the 10 s busy timeout behind the index's one mutex: both workers are held for a
/// busy timeout. The SIGTERM then sits unread (first run: 8 s) and the watchdog, armed only
/// when it is read, adds its full 24 s after that: the process outlives systemd's 30 s and is
/// SIGKILLed there — the h-red22 hole with the sessions ending before the signal instead of
/// after it. Now the signal is read on a thread and runtime of its own, and the deadline runs
/// from the signal.
#[test]
fn red22b_stop_a_slow_index_with_sessions_ending_before_sigterm_still_ends_within_30s() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients
            .push(b.ssh("alice@web01").arg("sleep 600").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    }
    eventually(30, "six recordings", || {
        (b.recordings().into_iter().filter(|r| r["status"] == "recording").count() == 6).then_some(())
    });
    let holder = IndexWriteLock::take(&b);
    // The sessions end on their own (their clients are gone): their index writes take the workers.
    for c in clients.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let (st, took) = b.stop_within(Duration::from_secs(45));
    let log = b.log();
    drop(holder);
    let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
    eprintln!("stop took {took:?} (exit {st:?}, {:?} in all); the log ends:\n{}", t.elapsed(), tail.join("\n"));
    assert!(took < Duration::from_secs(30), "the stop broke systemd's 30 s ({took:?}, {st:?}):\n{log}");
    assert!(log.contains("SIGTERM: ending sessions"), "{log}");
}
