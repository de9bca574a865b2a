//! The session's screen recording on the relay's side: a copy of every PDU the relay passes goes
//! through a bounded queue to a thread that runs the [`PassiveDecoder`] and hands the screen to a
//! [`ScreenRecorder`] (the box's video encoder). Until the target has activated the session the
//! relay waits for room in the queue (the decoder needs every PDU of the connection sequence);
//! afterwards it never waits: a PDU that finds the queue full is skipped, and the thread asks the
//! target for a full redraw (Refresh Rect) once it has caught up.

use crate::decode::{PassiveDecoder, Rect, Screen, Update};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// PDUs waiting for the decoder; at 16 KiB a PDU at most this is a few MiB per session.
const QUEUE: usize = 256;
/// How often a still screen is offered to the recorder (it repeats its last frame as needed).
const TICK: Duration = Duration::from_millis(200);
/// How soon a frame the rate cap dropped is offered again.
const RETRY: Duration = Duration::from_millis(50);

/// Where the decoded screen goes: the box records it as video. Calls come from one thread, in
/// session order. An `Err` ends the session: what cannot be recorded must not go on.
pub trait ScreenRecorder: Send + 'static {
    /// The desktop (re)started at this size; it is black until the target draws.
    fn resized(&mut self, screen: Screen<'_>) -> Result<(), String>;
    /// The screen changed. `Ok(false)`: not taken now (rate cap); offer it again later.
    fn frame(&mut self, screen: Screen<'_>) -> Result<bool, String>;
    /// Called every [`TICK`] or so, whether or not anything changed.
    fn tick(&mut self) -> Result<(), String>;
    /// The session is over. `failure` says why the recording stopped early, when it did.
    fn finish(self: Box<Self>, failure: Option<String>);
}

/// One observed PDU.
enum Observed {
    Client(Bytes),
    Target(Bytes),
}

/// The relay's end: hands PDUs to the decoding thread.
pub(crate) struct Tap {
    tx: mpsc::Sender<Observed>,
    active: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
}

impl Tap {
    /// Queues a copy of a PDU the relay is about to pass on (`Bytes`: no copy of the data).
    pub(crate) async fn observe(&self, from_client: bool, frame: Bytes) {
        let item = if from_client { Observed::Client(frame) } else { Observed::Target(frame) };
        if !self.active.load(Ordering::Acquire) {
            // A closed queue means the thread ended; the session ends through its result.
            let _ = self.tx.send(item).await;
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(item) {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How the recording thread ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Why the session had to end (the recorder failed, or the decoder gave up); `None`: the relay
    /// ended first.
    pub(crate) fatal: Option<String>,
    /// PDUs skipped because the decoder was behind.
    pub(crate) skipped: u64,
    /// Refresh requests sent to the target.
    pub(crate) refreshes: u64,
}

impl Outcome {
    pub(crate) fn panicked(e: &tokio::task::JoinError) -> Self {
        Self { fatal: Some(format!("the recording thread failed ({e})")), skipped: 0, refreshes: 0 }
    }
}

/// Starts the recording thread. Refresh Rect PDUs it wants sent to the target come out of
/// `inject`; it ends when every [`Tap`] is dropped or the recorder fails.
pub(crate) fn start(
    recorder: Box<dyn ScreenRecorder>,
    inject: mpsc::Sender<Vec<u8>>,
    session_id: String,
) -> (Tap, tokio::task::JoinHandle<Outcome>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let active = Arc::new(AtomicBool::new(false));
    let skipped = Arc::new(AtomicU64::new(0));
    let tap = Tap { tx, active: active.clone(), skipped: skipped.clone() };
    let handle = tokio::runtime::Handle::current();
    let worker = tokio::task::spawn_blocking(move || {
        let span = tracing::info_span!("rdp_recording", session_id);
        let _enter = span.enter();
        let mut w = Worker {
            decoder: PassiveDecoder::new(),
            recorder,
            inject,
            active,
            skipped,
            seen_skipped: 0,
            refreshes: 0,
            pending: false,
            dirty: None,
        };
        let fatal = w.run(rx, &handle).err();
        let outcome = Outcome { fatal: fatal.clone(), skipped: w.seen_skipped, refreshes: w.refreshes };
        w.recorder.finish(fatal);
        outcome
    });
    (tap, worker)
}

struct Worker {
    decoder: PassiveDecoder,
    recorder: Box<dyn ScreenRecorder>,
    inject: mpsc::Sender<Vec<u8>>,
    active: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    seen_skipped: u64,
    refreshes: u64,
    /// A change the rate cap did not take yet.
    pending: bool,
    /// Where the screen changed since the recorder last took a frame.
    dirty: Option<Rect>,
}

impl Worker {
    fn run(&mut self, mut rx: mpsc::Receiver<Observed>, handle: &tokio::runtime::Handle) -> Result<(), String> {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = if self.pending { RETRY } else { next_tick.saturating_duration_since(Instant::now()) };
            match handle.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                Ok(Some(Observed::Client(frame))) => self.client(&frame)?,
                Ok(Some(Observed::Target(frame))) => self.target(&frame)?,
                Ok(None) => return Ok(()),
                Err(_) => {}
            }
            if self.pending {
                self.offer()?;
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                if self.decoder.screen().is_some() {
                    self.recorder.tick()?;
                }
            }
            let skipped = self.skipped.load(Ordering::Relaxed);
            if skipped > self.seen_skipped {
                tracing::debug!(skipped, "rdp decoder fell behind; asking the target for a full redraw");
                self.seen_skipped = skipped;
                self.refresh();
            }
        }
    }

    fn client(&mut self, frame: &[u8]) -> Result<(), String> {
        // Client PDUs only teach the decoder (connection sequence, pointer); a failure here is
        // the target's business, and the target PDUs that follow tell whether decoding works.
        if let Err(e) = self.decoder.observe_client(frame) {
            tracing::debug!(error = %e, "rdp decoder could not read a client pdu");
        }
        self.check_stopped()
    }

    fn target(&mut self, frame: &[u8]) -> Result<(), String> {
        let updates = match self.decoder.observe_target(frame) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "rdp decoder could not decode a target pdu");
                self.check_stopped()?;
                // The image may be stale where that PDU drew: have the target draw it again.
                self.refresh();
                return Ok(());
            }
        };
        if self.decoder.session_ids().is_some() {
            self.active.store(true, Ordering::Release);
        }
        for update in updates {
            match update {
                Update::Resized { .. } => {
                    let Some(screen) = self.decoder.screen() else { continue };
                    self.recorder.resized(screen)?;
                    self.pending = false;
                    self.dirty = None;
                }
                Update::Frame { dirty } => {
                    self.dirty = Some(self.dirty.map_or(dirty, |d| d.union(dirty)));
                    self.pending = true;
                }
                Update::RefreshWanted => self.refresh(),
                Update::Ended => tracing::debug!("the target ended the session"),
            }
        }
        if self.pending {
            self.offer()?;
        }
        Ok(())
    }

    /// Offers the current screen to the recorder.
    fn offer(&mut self) -> Result<(), String> {
        let Some(mut screen) = self.decoder.screen() else { return Ok(()) };
        screen.dirty = self.dirty;
        self.pending = !self.recorder.frame(screen)?;
        if !self.pending {
            self.dirty = None;
        }
        Ok(())
    }

    fn refresh(&mut self) {
        if let Some(pdu) = self.decoder.refresh_request() {
            // A full queue already holds a refresh; one is enough.
            if self.inject.try_send(pdu).is_ok() {
                self.refreshes += 1;
            }
        }
    }

    /// A decoder that gave up for good would leave the video frozen: the session must end.
    fn check_stopped(&mut self) -> Result<(), String> {
        if self.decoder.is_stopped() {
            return Err("the box could not decode the session's screen, so it cannot record it".into());
        }
        Ok(())
    }
}
