//! The daemon's one supervisor: one root cancellation token (the stop), one list of every task
//! and thread `serve` starts, each under the stage of the shutdown it belongs to, and one
//! deadline for the whole stop, below systemd's `TimeoutStopSec`.
//!
//! A stop goes stage by stage: the listeners stop accepting and end their sessions with a
//! message, then the recordings those sessions leave are closed and sealed, then the archive
//! finishes its current step, then the console and the panel go. Each stage is told (its
//! token) only when the one before it is done, so the console can show the stop to the end and
//! nothing is uploaded from a half-closed recording. Whatever is still running when the deadline
//! passes is named in the log, and the process stops without it: what it left is on disk and
//! picked up by the next start's recovery.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The stages of a stop, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The listeners and their sessions: stop accepting, end each session with a message.
    Sessions,
    /// What closes and seals the recordings the sessions leave.
    Recordings,
    /// Uploads, retention, text reading, search: each finishes its current step.
    Archive,
    /// The web console and the front panel: last, so an admin can watch the stop.
    Console,
}

/// What stages cut off by the deadline get to end once told.
const LATE_GRACE: Duration = Duration::from_millis(500);

const STAGES: [Stage; 4] = [Stage::Sessions, Stage::Recordings, Stage::Archive, Stage::Console];

enum Handle {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl Handle {
    fn is_finished(&self) -> bool {
        match self {
            Handle::Thread(h) => h.is_finished(),
            Handle::Task(h) => h.is_finished(),
        }
    }
}

struct Work {
    name: String,
    stage: Stage,
    handle: Handle,
}

/// What a stop left running when its deadline passed (empty: everything finished).
#[derive(Debug, Default)]
pub struct Stopped {
    pub unfinished: Vec<String>,
    /// Whether every recording was closed (the sessions and recordings stages finished).
    pub recordings_closed: bool,
}

/// The stop's deadline passed: names what still runs and ends the process (the next start
/// recovers what it left).
pub fn end_at_deadline(deadline: Duration, running: &[String]) -> ! {
    error!(
        deadline_s = deadline.as_secs(),
        still_running = %running.join(", "),
        "still running at the stop deadline; the process ends now (the next start recovers what they left)"
    );
    std::process::exit(1);
}

/// Keeps the stop's watchdog waiting; dropped, it lets the process end on its own.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Supervisor {
    stop: CancellationToken,
    stages: [CancellationToken; 4],
    work: Mutex<Vec<Work>>,
    runtime: tokio::runtime::Handle,
}

impl Supervisor {
    /// A supervisor whose tasks run on `runtime`.
    #[cfg(test)]
    pub fn new(runtime: tokio::runtime::Handle) -> Self {
        Self::with_stop(runtime, CancellationToken::new())
    }

    /// A supervisor whose tasks run on `runtime`, stopped by `stop` (a token made before the
    /// runtime, so a signal can be heard from the first moment).
    pub fn with_stop(runtime: tokio::runtime::Handle, stop: CancellationToken) -> Self {
        Self { stop, stages: std::array::from_fn(|_| CancellationToken::new()), work: Mutex::new(Vec::new()), runtime }
    }

    /// The root token: cancelled once, by a signal or by work that cannot go on, to stop the box.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The token a stage's work watches: cancelled when the stop reaches that stage.
    pub fn token(&self, stage: Stage) -> CancellationToken {
        self.stages[stage as usize].clone()
    }

    fn add(&self, stage: Stage, name: String, handle: Handle) {
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        work.retain(|w| !w.handle.is_finished());
        work.push(Work { name, stage, handle });
    }

    /// Starts a named thread under `stage`.
    pub fn thread(&self, stage: Stage, name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let handle = std::thread::Builder::new().name(name.chars().take(15).collect()).spawn(f)?;
        self.add(stage, name.to_owned(), Handle::Thread(handle));
        Ok(())
    }

    /// Takes a thread a foundation started into the list.
    pub fn adopt(&self, stage: Stage, name: &str, handle: std::thread::JoinHandle<()>) {
        self.add(stage, name.to_owned(), Handle::Thread(handle));
    }

    /// Starts a named task under `stage` on the daemon's runtime.
    pub fn task(&self, stage: Stage, name: &str, f: impl Future<Output = ()> + Send + 'static) {
        let handle = self.runtime.spawn(f);
        self.add(stage, name.to_owned(), Handle::Task(handle));
    }

    /// Returns once the stop is asked for.
    pub async fn stopped(&self) {
        self.stop.cancelled().await
    }

    /// The names of what still runs, in every stage.
    pub fn still_running(&self) -> Vec<String> {
        self.running(&STAGES)
    }

    fn running(&self, stages: &[Stage]) -> Vec<String> {
        let mut work = self.work.lock().unwrap_or_else(|p| p.into_inner());
        work.retain(|w| !w.handle.is_finished());
        work.iter().filter(|w| stages.contains(&w.stage)).map(|w| w.name.clone()).collect()
    }

    /// A thread that ends the process `after` from now unless the returned guard is dropped
    /// first: it names what still runs and exits, whatever the runtime's threads are doing
    /// (all of them held in a blocking write stops the runtime's own timers).
    pub fn watchdog(self: &std::sync::Arc<Self>, after: Duration) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let sup = self.clone();
        let spawned = std::thread::Builder::new().name("stop-deadline".into()).spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                end_at_deadline(after, &sup.still_running());
            }
        });
        if let Err(e) = &spawned {
            error!(error = %e, "cannot start the stop's watchdog; the stop relies on systemd's timeout");
        }
        Watchdog(Some(tx))
    }

    /// Stops every stage in order, each once the one before it finished, within `deadline` in
    /// all; logs what was still running when it passed.
    pub async fn shutdown(&self, deadline: Duration) -> Stopped {
        self.stop.cancel();
        let end = Instant::now() + deadline;
        for (i, stage) in STAGES.iter().enumerate() {
            self.stages[*stage as usize].cancel();
            // A stage is done when nothing of it, or of the stages before it, still runs: work
            // an earlier stage starts as it ends (a recording's sealing) is waited for too.
            while !self.running(&STAGES[..=i]).is_empty() && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if Instant::now() >= end {
                break;
            }
            info!(stage = ?stage, "stop: stage finished");
        }
        // Stages the deadline cut off are told now and get a moment to end (the console and
        // panel end at once); anything still running after that is named.
        for token in &self.stages {
            token.cancel();
        }
        let late = Instant::now() + LATE_GRACE;
        while !self.running(&STAGES).is_empty() && Instant::now() < late {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let unfinished = self.running(&STAGES);
        let recordings_closed = self.running(&[Stage::Sessions, Stage::Recordings]).is_empty();
        if !unfinished.is_empty() {
            error!(
                deadline_s = deadline.as_secs(),
                still_running = %unfinished.join(", "),
                "still running at the stop deadline; the box stops without them (the next start recovers what they left)"
            );
        }
        Stopped { unfinished, recordings_closed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_stop_in_order_and_hung_work_is_named_at_the_deadline() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let sup = Supervisor::new(rt.handle().clone());
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        for (stage, name) in [(Stage::Console, "console"), (Stage::Archive, "uploads"), (Stage::Sessions, "ssh")] {
            let (token, order) = (sup.token(stage), order.clone());
            sup.task(stage, name, async move {
                token.cancelled().await;
                order.lock().unwrap().push(name);
            });
        }
        // A session's end starts the sealing of its recording, as the finisher does.
        let sealing = sup.token(Stage::Sessions);
        let order2 = order.clone();
        let sup = std::sync::Arc::new(sup);
        let sup2 = sup.clone();
        sup.task(Stage::Sessions, "session", async move {
            sealing.cancelled().await;
            let order = order2.clone();
            sup2.thread(Stage::Recordings, "sealing r1", move || {
                std::thread::sleep(Duration::from_millis(100));
                order.lock().unwrap().push("sealed");
            })
            .unwrap();
        });
        // A thread that never looks at its token.
        sup.thread(Stage::Archive, "hung upload", || std::thread::sleep(Duration::from_secs(3600))).unwrap();
        let started = Instant::now();
        let stopped = rt.block_on(sup.shutdown(Duration::from_millis(800)));
        assert!(started.elapsed() < Duration::from_secs(2), "the deadline holds: {:?}", started.elapsed());
        assert_eq!(stopped.unfinished, ["hung upload"]);
        assert!(stopped.recordings_closed);
        let order = order.lock().unwrap().clone();
        // The archive waits for the recordings to be sealed; the console is told at the
        // deadline, after everything before it.
        assert_eq!(&order[..3], ["ssh", "sealed", "uploads"], "{order:?}");
        assert!(sup.stop_token().is_cancelled());
        rt.shutdown_background();
    }
}
