//! The session's screen recording on the relay's side: a copy of every PDU the relay passes goes
//! through a bounded queue to a thread that runs the [`PassiveDecoder`] and hands the screen to a
//! [`ScreenRecorder`] (the box's video encoder). Until the target has activated the session the
//! relay waits for room in the queue (the decoder needs every PDU of the connection sequence, in
//! order); afterwards it waits only for a target PDU whose loss a redraw would not repair
//! ([`crate::decode::repairable`]: pointer shapes and positions, palettes, reactivation, the
//! graphics pipeline, RemoteFX — one PDU's room, not the queue's): a PDU of bitmaps or raw
//! surface bits that finds the queue full is skipped, and the thread asks the target for a full redraw
//! (Refresh Rect, at most one a second) once it has caught up. Client input after activation
//! (it only moves the pointer drawn into the video) has its own small queue, so a flood of input
//! never takes room from the screen; the pointer's latest position is kept aside by the relay, so
//! the pointer drawn never lags behind skipped or queued input. What the decoder missed is
//! counted ([`Gaps`]) and handed to the recorder at the end.

use crate::decode::{PassiveDecoder, Rect, Screen, Update, last_pointer, repairable};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// PDUs waiting for the decoder; at 16 KiB a PDU at most this is a few MiB per session.
const QUEUE: usize = 256;
/// Client input waiting for the decoder after activation.
const INPUT_QUEUE: usize = 64;
/// The least time between two Refresh Rect PDUs the recording sends the target.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
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
    /// Whether the session's typed keys are recorded too (asked once, at the start). Off unless
    /// the box is configured for it: keys include passwords.
    fn records_keys(&self) -> bool {
        false
    }
    /// The client typed `text` (see [`crate::keys`]); only called when [`Self::records_keys`].
    fn typed(&mut self, _text: &str) -> Result<(), String> {
        Ok(())
    }
    /// The session is over. `failure` says why the recording stopped early, when it did; `gaps`
    /// what the video may lack.
    fn finish(self: Box<Self>, failure: Option<String>, gaps: Gaps);
}

/// What a session's recording missed, counted over the whole session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gaps {
    /// Screen PDUs from the target the decoder could not take: its queue was full. Each is a
    /// stretch of the session the video may show wrong until the next full redraw.
    pub skipped_screen_pdus: u64,
    /// Screen PDUs from the target the decoder could not decode or draw in full (what IronRDP's
    /// stage would have skipped in silence included).
    pub undecodable_screen_pdus: u64,
    /// Client input PDUs not shown to the decoder (only the pointer drawn into the video lags).
    pub skipped_input_pdus: u64,
    /// Full redraws (Refresh Rect) asked of the target to repair the image.
    pub refreshes: u64,
    /// After the last skipped or undecodable screen PDU, no redraw asked of the target was seen
    /// to cover the whole screen before the session ended: the picture from there on is not
    /// verified (it may still be right).
    pub unverified: bool,
}

/// One observed PDU.
enum Observed {
    Client(Bytes),
    Target(Bytes),
}

/// The relay's end: hands PDUs to the decoding thread.
pub(crate) struct Tap {
    tx: mpsc::Sender<Observed>,
    input: mpsc::Sender<Bytes>,
    active: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    skipped_input: Arc<AtomicU64>,
    /// The client's latest pointer position (see [`pack_pointer`]); 0: none yet.
    pointer: Arc<AtomicU64>,
    /// The session's I/O channel once active (a set bit, then the id); 0: not yet.
    io: Arc<AtomicU32>,
    /// Target PDUs queued (counted before they are queued; the worker tells a redraw's answer
    /// from what was queued before it asked).
    queued: Arc<AtomicU64>,
}

/// A pointer position as one word: a set bit, then x and y.
fn pack_pointer((x, y): (u16, u16)) -> u64 {
    1 << 32 | u64::from(x) << 16 | u64::from(y)
}

fn unpack_pointer(p: u64) -> Option<(u16, u16)> {
    (p >> 32 != 0).then_some(((p >> 16) as u16, p as u16))
}

impl Tap {
    fn io_channel(&self) -> Option<u16> {
        let io = self.io.load(Ordering::Acquire);
        (io >> 16 != 0).then_some(io as u16)
    }

    /// Queues a copy of a PDU the relay is about to pass on (`Bytes`: no copy of the data).
    pub(crate) async fn observe(&self, from_client: bool, frame: Bytes) {
        if !from_client {
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
        if !self.active.load(Ordering::Acquire) {
            let item = if from_client { Observed::Client(frame) } else { Observed::Target(frame) };
            // A closed queue means the thread ended; the session ends through its result.
            let _ = self.tx.send(item).await;
            return;
        }
        if from_client {
            if let Some(p) = last_pointer(&frame) {
                self.pointer.store(pack_pointer(p), Ordering::Release);
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = self.input.try_send(frame) {
                self.skipped_input.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        match self.tx.try_send(Observed::Target(frame)) {
            Err(mpsc::error::TrySendError::Full(Observed::Target(frame))) if !repairable(&frame, self.io_channel()) => {
                // State a redraw does not restore: wait for room rather than lose it.
                let _ = self.tx.send(Observed::Target(frame)).await;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// How the recording thread ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Why the session had to end (the recorder failed, or the decoder gave up); `None`: the relay
    /// ended first.
    pub(crate) fatal: Option<String>,
    /// What the recording missed.
    pub(crate) gaps: Gaps,
}

impl Outcome {
    pub(crate) fn panicked(e: &tokio::task::JoinError) -> Self {
        Self { fatal: Some(format!("the recording thread failed ({e})")), gaps: Gaps::default() }
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
    let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
    let active = Arc::new(AtomicBool::new(false));
    let skipped = Arc::new(AtomicU64::new(0));
    let skipped_input = Arc::new(AtomicU64::new(0));
    let pointer = Arc::new(AtomicU64::new(0));
    let io = Arc::new(AtomicU32::new(0));
    let queued = Arc::new(AtomicU64::new(0));
    let tap = Tap {
        tx,
        input,
        active: active.clone(),
        skipped: skipped.clone(),
        skipped_input: skipped_input.clone(),
        pointer: pointer.clone(),
        io: io.clone(),
        queued: queued.clone(),
    };
    let handle = tokio::runtime::Handle::current();
    let worker = tokio::task::spawn_blocking(move || {
        let span = tracing::info_span!("rdp_recording", session_id);
        let _enter = span.enter();
        let mut decoder = PassiveDecoder::new();
        if recorder.records_keys() {
            decoder.record_keys();
        }
        let mut w = Worker {
            decoder,
            recorder,
            inject,
            active,
            skipped,
            pointer,
            io,
            queued,
            taken: 0,
            answer_from: 0,
            seen_skipped: 0,
            undecodable: 0,
            refresh: RefreshLimit::default(),
            pending: false,
            dirty: None,
            stale: false,
            redrawn: None,
        };
        let fatal = w.run(rx, input_rx, &handle).err();
        // The relay has stopped (or the thread failed): the counters are final.
        let gaps = Gaps {
            skipped_screen_pdus: w.skipped.load(Ordering::Relaxed),
            undecodable_screen_pdus: w.undecodable,
            skipped_input_pdus: skipped_input.load(Ordering::Relaxed),
            refreshes: w.refresh.sent,
            unverified: w.stale,
        };
        w.recorder.finish(fatal.clone(), gaps);
        Outcome { fatal, gaps }
    });
    (tap, worker)
}

struct Worker {
    decoder: PassiveDecoder,
    recorder: Box<dyn ScreenRecorder>,
    inject: mpsc::Sender<Vec<u8>>,
    active: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    /// The client's latest pointer position, as the relay saw it.
    pointer: Arc<AtomicU64>,
    /// Tells the relay the session's I/O channel (see [`Tap`]).
    io: Arc<AtomicU32>,
    /// Target PDUs the relay queued, and how many of them the worker took.
    queued: Arc<AtomicU64>,
    taken: u64,
    /// The first queued target PDU that can answer the last Refresh Rect sent.
    answer_from: u64,
    seen_skipped: u64,
    undecodable: u64,
    refresh: RefreshLimit,
    /// A change the rate cap did not take yet.
    pending: bool,
    /// Where the screen changed since the recorder last took a frame.
    dirty: Option<Rect>,
    /// The picture may be wrong: a screen PDU was skipped or undecodable, and no redraw asked
    /// since has been seen to cover the whole screen.
    stale: bool,
    /// Where the decoder drew since a Refresh Rect went out while the picture was stale (`None`:
    /// none went out since it became stale).
    redrawn: Option<Option<Rect>>,
}

impl Worker {
    fn run(
        &mut self,
        mut rx: mpsc::Receiver<Observed>,
        mut input: mpsc::Receiver<Bytes>,
        handle: &tokio::runtime::Handle,
    ) -> Result<(), String> {
        let mut next_tick = Instant::now() + TICK;
        let mut input_open = true;
        loop {
            let mut wait = if self.pending { RETRY } else { next_tick.saturating_duration_since(Instant::now()) };
            if let Some(due) = self.refresh.due_in(Instant::now()) {
                wait = wait.min(due);
            }
            let next = handle.block_on(async {
                tokio::time::timeout(wait, async {
                    tokio::select! {
                        // The screen first: input only moves the pointer.
                        biased;
                        pdu = rx.recv() => Some(pdu),
                        pdu = input.recv(), if input_open => pdu.map(|frame| Some(Observed::Client(frame))),
                    }
                })
                .await
            });
            match next {
                Ok(Some(Some(Observed::Client(frame)))) => self.client(&frame)?,
                Ok(Some(Some(Observed::Target(frame)))) => self.target(&frame)?,
                Ok(Some(None)) => return self.flush(),
                Ok(None) => input_open = false,
                Err(_) => {}
            }
            self.follow_pointer()?;
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
                self.went_stale();
            }
            self.send_refresh();
        }
    }

    fn client(&mut self, frame: &[u8]) -> Result<(), String> {
        // Client PDUs only teach the decoder (connection sequence, pointer); a failure here is
        // the target's business, and the target PDUs that follow tell whether decoding works.
        if let Err(e) = self.decoder.observe_client(frame) {
            tracing::debug!(error = %e, "rdp decoder could not read a client pdu");
        }
        if let Some(text) = self.decoder.take_typed()
            && !text.is_empty()
        {
            self.recorder.typed(&text)?;
        }
        self.check_stopped()
    }

    fn target(&mut self, frame: &[u8]) -> Result<(), String> {
        self.taken += 1;
        let updates = match self.decoder.observe_target(frame) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "rdp decoder could not decode a target pdu");
                self.undecodable += 1;
                self.check_stopped()?;
                // The image may be stale where that PDU drew: have the target draw it again.
                self.went_stale();
                self.send_refresh();
                return Ok(());
            }
        };
        if let Some(ids) = self.decoder.session_ids() {
            self.io.store(1 << 16 | u32::from(ids.io_channel_id), Ordering::Release);
            self.active.store(true, Ordering::Release);
        }
        self.apply(updates)
    }

    /// Moves the pointer drawn over the image to where the client's pointer is now (the decoder
    /// may know the place from input already: it still says whether the video was told).
    fn follow_pointer(&mut self) -> Result<(), String> {
        let Some((x, y)) = unpack_pointer(self.pointer.load(Ordering::Acquire)) else { return Ok(()) };
        match self.decoder.set_pointer(x, y) {
            Ok(updates) => self.apply(updates),
            Err(e) => {
                tracing::debug!(error = %e, "rdp decoder could not move the pointer");
                self.check_stopped()
            }
        }
    }

    /// The session is over: a change the rate cap held back still goes into the video.
    fn flush(&mut self) -> Result<(), String> {
        for _ in 0..10 {
            if !self.pending {
                break;
            }
            std::thread::sleep(RETRY);
            self.offer()?;
        }
        Ok(())
    }

    /// A screen PDU was lost: the picture may be wrong until a redraw covers the whole screen.
    fn went_stale(&mut self) {
        self.stale = true;
        self.redrawn = None;
        self.refresh.wanted = true;
    }

    /// The decoder drew `dirty`: once what it drew since the last redraw asked while stale
    /// covers the whole screen, the picture is in step again.
    fn redrew(&mut self, dirty: Rect) {
        // What was queued before the redraw was asked is no answer to it.
        if self.taken <= self.answer_from {
            return;
        }
        let Some(redrawn) = self.redrawn.as_mut() else { return };
        let area = (*redrawn).map_or(dirty, |r| r.union(dirty));
        *redrawn = Some(area);
        if let Some(screen) = self.decoder.screen()
            && area.x == 0
            && area.y == 0
            && area.width >= screen.width
            && area.height >= screen.height
        {
            self.stale = false;
            self.redrawn = None;
        }
    }

    fn apply(&mut self, updates: Vec<Update>) -> Result<(), String> {
        for update in updates {
            match update {
                Update::Resized { .. } => {
                    let Some(screen) = self.decoder.screen() else { continue };
                    self.recorder.resized(screen)?;
                    self.pending = false;
                    self.dirty = None;
                }
                Update::Frame { dirty } => {
                    self.redrew(dirty);
                    self.dirty = Some(self.dirty.map_or(dirty, |d| d.union(dirty)));
                    self.pending = true;
                }
                // The stage dropped a malformed bitmap: pixels the client may show are missing.
                Update::RefreshWanted => {
                    self.undecodable += 1;
                    self.went_stale();
                }
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

    /// Sends the Refresh Rect wanted, unless one went out less than [`REFRESH_EVERY`] ago (it
    /// is sent later then: a flood of skipped PDUs costs the target one redraw a second).
    fn send_refresh(&mut self) {
        let now = Instant::now();
        if self.refresh.due_in(now) != Some(Duration::ZERO) {
            return;
        }
        let Some(pdu) = self.decoder.refresh_request() else { return };
        // Read before the send: the answer can be queued before this thread runs again. PDUs
        // queued in between came after the gap was seen, so a whole-screen one repairs it too.
        let answer_from = self.queued.load(Ordering::Acquire);
        // A full queue already holds a refresh; one is enough.
        if self.inject.try_send(pdu).is_ok() {
            self.refresh.sent(now);
            self.answer_from = answer_from;
            if self.stale {
                self.redrawn = Some(None);
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

/// When the recording may next ask the target for a full redraw.
#[derive(Debug, Default)]
struct RefreshLimit {
    /// A redraw is wanted.
    wanted: bool,
    last: Option<Instant>,
    /// Redraws asked for so far.
    sent: u64,
}

impl RefreshLimit {
    /// How long until a wanted redraw may go out (`ZERO`: now); `None`: none is wanted.
    fn due_in(&self, now: Instant) -> Option<Duration> {
        if !self.wanted {
            return None;
        }
        Some(self.last.map_or(Duration::ZERO, |last| (last + REFRESH_EVERY).saturating_duration_since(now)))
    }

    fn sent(&mut self, now: Instant) {
        self.wanted = false;
        self.last = Some(now);
        self.sent += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(queue: usize, input: usize) -> (Tap, mpsc::Receiver<Observed>, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(queue);
        let (input, input_rx) = mpsc::channel(input);
        let active = Arc::new(AtomicBool::new(true));
        let (skipped, skipped_input) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let pointer = Arc::new(AtomicU64::new(0));
        let io = Arc::new(AtomicU32::new(1 << 16 | 1003));
        let queued = Arc::new(AtomicU64::new(0));
        (Tap { tx, input, active, skipped, skipped_input, pointer, io, queued }, rx, input_rx)
    }

    #[tokio::test]
    async fn a_flood_of_input_takes_no_room_from_the_screen() {
        let (tap, mut rx, _input) = tap(QUEUE, INPUT_QUEUE);
        for _ in 0..10_000 {
            tap.observe(true, Bytes::from_static(&[0x04, 0x06, 0x01, 0x08, 0x00, 0x00])).await;
        }
        assert_eq!(tap.tx.capacity(), QUEUE, "input took screen room");
        assert_eq!(tap.skipped.load(Ordering::Relaxed), 0, "no screen pdu lost");
        assert_eq!(tap.skipped_input.load(Ordering::Relaxed), 10_000 - INPUT_QUEUE as u64);
        for _ in 0..QUEUE + 5 {
            tap.observe(false, Bytes::from_static(BITMAP_PDU)).await;
        }
        assert_eq!(tap.skipped.load(Ordering::Relaxed), 5, "every screen pdu that found no room is counted");
        let mut screen = 0;
        while let Ok(Observed::Target(_)) = rx.try_recv() {
            screen += 1;
        }
        assert_eq!(screen, QUEUE);
    }

    /// A fast-path PDU with one empty bitmap update: pixels only.
    const BITMAP_PDU: &[u8] = &[0x00, 0x05, 0x01, 0x00, 0x00];
    /// A fast-path PDU with a cached-pointer update (index 1): pointer state.
    const POINTER_PDU: &[u8] = &[0x00, 0x07, 0x0A, 0x02, 0x00, 0x01, 0x00];

    #[tokio::test]
    async fn state_a_redraw_cannot_restore_waits_for_room_and_is_never_skipped() {
        let (tap, mut rx, _input) = tap(4, 1);
        for _ in 0..4 {
            tap.observe(false, Bytes::from_static(BITMAP_PDU)).await;
        }
        tap.observe(false, Bytes::from_static(BITMAP_PDU)).await;
        assert_eq!(tap.skipped.load(Ordering::Relaxed), 1, "pixels a redraw repaints are skipped");
        // A pointer update (and any slow-path PDU: reactivation, the graphics pipeline) waits for
        // the decoder to take one PDU, and comes after what was queued before it.
        let slow_path = Bytes::from_static(&[0x03, 0x00, 0x00, 0x07, 0x02, 0xF0, 0x80]);
        let waiting = async {
            tap.observe(false, Bytes::from_static(POINTER_PDU)).await;
            tap.observe(false, slow_path.clone()).await;
        };
        let taking = async {
            let mut got = Vec::new();
            while got.len() < 6 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(Observed::Target(b)) = rx.recv().await {
                    got.push(b);
                }
            }
            got
        };
        let ((), got) = tokio::join!(waiting, taking);
        assert_eq!(tap.skipped.load(Ordering::Relaxed), 1, "no state was skipped");
        assert_eq!(&got[4][..], POINTER_PDU);
        assert_eq!(got[5], slow_path);
    }

    #[tokio::test]
    async fn the_pointer_position_is_kept_even_when_the_input_queue_is_full() {
        let (tap, _rx, _input) = tap(4, 1);
        // A key, then mouse moves to (5, 6) and (30, 40): the queue holds only the key.
        tap.observe(true, Bytes::from_static(&[0x04, 0x04, 0x00, 0x1E])).await;
        tap.observe(true, Bytes::from_static(&[0x04, 0x09, 0x20, 0x00, 0x08, 0x05, 0x00, 0x06, 0x00])).await;
        tap.observe(true, Bytes::from_static(&[0x04, 0x09, 0x20, 0x00, 0x08, 0x1E, 0x00, 0x28, 0x00])).await;
        assert_eq!(tap.skipped_input.load(Ordering::Relaxed), 2);
        assert_eq!(unpack_pointer(tap.pointer.load(Ordering::Acquire)), Some((30, 40)));
    }

    #[tokio::test]
    async fn before_activation_everything_waits_its_turn_in_order() {
        let (tap, mut rx, _input) = tap(4, 1);
        tap.active.store(false, Ordering::Release);
        tap.observe(true, Bytes::from_static(b"c")).await;
        tap.observe(false, Bytes::from_static(b"t")).await;
        assert!(matches!(rx.try_recv(), Ok(Observed::Client(b)) if &b[..] == b"c"));
        assert!(matches!(rx.try_recv(), Ok(Observed::Target(b)) if &b[..] == b"t"));
    }

    #[test]
    fn refreshes_are_rate_limited() {
        let mut r = RefreshLimit::default();
        let t0 = Instant::now();
        assert_eq!(r.due_in(t0), None, "none wanted");
        r.wanted = true;
        assert_eq!(r.due_in(t0), Some(Duration::ZERO));
        r.sent(t0);
        r.wanted = true;
        assert_eq!(r.due_in(t0 + Duration::from_millis(400)), Some(Duration::from_millis(600)));
        assert_eq!(r.due_in(t0 + REFRESH_EVERY), Some(Duration::ZERO));
        assert_eq!(r.sent, 1);
    }

    /// A recorder that keeps only the gaps it is finished with.
    pub(super) struct Recorded(pub(super) Arc<std::sync::Mutex<Option<Gaps>>>);

    impl ScreenRecorder for Recorded {
        fn resized(&mut self, _: Screen<'_>) -> Result<(), String> {
            Ok(())
        }
        fn frame(&mut self, _: Screen<'_>) -> Result<bool, String> {
            Ok(true)
        }
        fn tick(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn finish(self: Box<Self>, _: Option<String>, gaps: Gaps) {
            *self.0.lock().unwrap() = Some(gaps);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_recorder_learns_what_the_decoder_missed() {
        let got = Arc::new(std::sync::Mutex::new(None));
        let (inject, _refreshes) = mpsc::channel(4);
        let (tap, worker) = start(Box::new(Recorded(got.clone())), inject, "s1".into());
        tap.skipped.store(7, Ordering::Relaxed);
        tap.skipped_input.store(3, Ordering::Relaxed);
        drop(tap);
        let outcome = worker.await.unwrap();
        let gaps = got.lock().unwrap().expect("finish called");
        assert_eq!((gaps.skipped_screen_pdus, gaps.skipped_input_pdus), (7, 3));
        assert_eq!(outcome.gaps, gaps);
    }
}

#[cfg(test)]
mod resync_tests {
    use super::tests::Recorded as Nothing;
    use super::*;
    use witness_rdp_core::decode::capture_records as records;

    const BITMAP: &[u8] = include_bytes!("../../witness-rdp-core/src/testdata/shadow_bitmap.cap");

    /// A real session up to its first graphics, a skipped screen PDU, then (`redraw`) the rest
    /// of the session — the target drawing its whole screen again — or nothing: the picture
    /// after the gap is verified only when a redraw asked after it covered the screen.
    async fn session(redraw: bool) -> Gaps {
        let got = Arc::new(std::sync::Mutex::new(None));
        let (inject, mut refreshes) = mpsc::channel(4);
        let (tap, worker) = start(Box::new(Nothing(got.clone())), inject, "s1".into());
        let all = records(BITMAP);
        let first_graphics = all.iter().position(|(t, f)| *t == b'T' && f.first().is_some_and(|b| b & 3 != 3)).unwrap();
        for (tag, frame) in &all[..=first_graphics] {
            match tag {
                b'C' => tap.observe(true, Bytes::copy_from_slice(frame)).await,
                b'T' => tap.observe(false, Bytes::copy_from_slice(frame)).await,
                _ => {}
            }
        }
        tap.skipped.fetch_add(1, Ordering::Relaxed);
        let refresh = tokio::time::timeout(Duration::from_secs(10), refreshes.recv()).await;
        assert!(matches!(refresh, Ok(Some(_))), "no redraw asked after the gap");
        if redraw {
            for (tag, frame) in &all[first_graphics + 1..] {
                if *tag == b'T' {
                    tap.observe(false, Bytes::copy_from_slice(frame)).await;
                }
            }
        }
        drop(tap);
        worker.await.unwrap();
        got.lock().unwrap().expect("finish called")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_picture_after_a_gap_is_verified_only_by_a_whole_redraw() {
        let gaps = session(true).await;
        assert_eq!((gaps.skipped_screen_pdus, gaps.refreshes), (1, 1));
        assert!(!gaps.unverified, "the target redrew the whole screen after the gap");
        let gaps = session(false).await;
        assert!(gaps.unverified, "nothing was drawn after the gap, yet it is called verified");
    }

    /// What the stage skips is a gap like a PDU it cannot decode: an update of a code it does
    /// not know (which it skipped in silence) and a bitmap it drops for a destination outside
    /// the desktop (it only asked for a redraw) are each counted, and the picture after them is
    /// not called verified.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_the_stage_skips_is_counted_as_a_gap() {
        let got = Arc::new(std::sync::Mutex::new(None));
        let (inject, _refreshes) = mpsc::channel(4);
        let (tap, worker) = start(Box::new(Nothing(got.clone())), inject, "s1".into());
        let all = records(BITMAP);
        let first_graphics = all.iter().position(|(t, f)| *t == b'T' && f.first().is_some_and(|b| b & 3 != 3)).unwrap();
        for (tag, frame) in &all[..=first_graphics] {
            match tag {
                b'C' => tap.observe(true, Bytes::copy_from_slice(frame)).await,
                b'T' => tap.observe(false, Bytes::copy_from_slice(frame)).await,
                _ => {}
            }
        }
        let unknown = vec![0x00, 0x05, 0x07, 0x00, 0x00];
        let mut body = vec![0x01, 0x00, 0x01, 0x00];
        for v in [1000u16, 1000, 1000, 1000, 1, 1, 32, 0, 4] {
            body.extend(v.to_le_bytes());
        }
        body.extend([1, 2, 3, 0]);
        let mut outside = vec![0x00, 0x00, 0x01];
        outside.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
        outside.extend(&body);
        outside[1] = u8::try_from(outside.len()).unwrap();
        tap.observe(false, Bytes::from(unknown)).await;
        tap.observe(false, Bytes::from(outside)).await;
        drop(tap);
        worker.await.unwrap();
        let gaps = got.lock().unwrap().expect("finish called");
        assert_eq!(gaps.undecodable_screen_pdus, 2, "{gaps:?}");
        assert!(gaps.unverified, "{gaps:?}");
    }
}
