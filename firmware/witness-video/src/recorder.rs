//! A session's video as it happens: frames in (only when the screen changed), fragmented MP4
//! out through a byte sink the caller owns (it encrypts and fsyncs). The stream is append-only
//! (no seeking back), so what reached the sink before a crash plays up to its last fragment.

use crate::VideoError;
use crate::canvas::{COLORIMETRY, Canvas, Pointer, Rows};
use crate::encoders::{Candidate, encode_chain};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the encoded bytes go; called on GStreamer's streaming thread, in order.
pub type ByteSink = Box<dyn FnMut(&[u8]) -> std::io::Result<()> + Send>;

#[derive(Debug, Clone)]
pub struct VideoSettings {
    pub width: u32,
    pub height: u32,
    /// Busy screens are capped at this rate; frames in between are dropped.
    pub max_fps: u32,
    /// An unchanged screen repeats its last frame this often, so fragments keep flowing (a crash
    /// loses at most about this much) and the timeline reaches the end.
    pub idle_repeat: Duration,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self { width: 1024, height: 768, max_fps: 10, idle_repeat: Duration::from_secs(1) }
    }
}

/// What a finished video holds.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSummary {
    pub frames: u64,
    pub duration: Duration,
    pub bytes: u64,
    /// When the screen changed, as merged spans on the video's timeline (each change counts for
    /// [`ACTIVE_SPAN`]): the player's activity timeline and its skip-idle.
    pub active: Vec<(Duration, Duration)>,
}

/// How long one change counts as activity.
pub const ACTIVE_SPAN: Duration = Duration::from_secs(1);

/// Adds a change at `at` to merged activity spans (changes come in time order).
fn mark_active(spans: &mut Vec<(Duration, Duration)>, at: Duration) {
    match spans.last_mut() {
        Some((_, end)) if at <= *end => *end = (*end).max(at + ACTIVE_SPAN),
        _ => spans.push((at, at + ACTIVE_SPAN)),
    }
}

struct Counters {
    frames: u64,
    last_pts: Option<Duration>,
    last_frame: Option<gst::Buffer>,
    /// Repeats pushed since the screen last changed (see [`FLUSH_FRAMES`]).
    flushed: u32,
    bytes: u64,
    sink_error: Option<String>,
    active: Vec<(Duration, Duration)>,
}

/// The encoder holds one frame and mp4mux two (a sample's duration is known at the next one, a
/// fragment is written at the sample after that): a change reaches the file only after this many
/// more frames. Once the screen has settled the recorder pushes them rather than leaving the
/// change in memory until the idle repeats come — so a crash loses no change older than about a
/// second, while an idle screen still costs one frame per `idle_repeat`.
const FLUSH_FRAMES: u32 = 3;
/// How long the screen must stay still before the first flush frame goes. Longer than the gap
/// between keystrokes: while someone types, the next keystroke's frame pushes the last one out,
/// and flush frames (each a whole encode) would double the frames of a typing session.
const SETTLED: Duration = Duration::from_millis(350);
/// Between flush frames: one fragment each.
const FLUSH_GAP: Duration = Duration::from_millis(150);

/// A running video recording.
pub struct VideoRecorder {
    pipeline: gst::Pipeline,
    src: AppSrc,
    settings: VideoSettings,
    counters: Arc<Mutex<Counters>>,
    /// The picture going in now, at the screen's size; the video keeps its first size (a resized
    /// desktop is scaled into it, letterboxed), so the recording stays one playable file.
    canvas: Mutex<Canvas>,
    encoder: &'static str,
}

impl std::fmt::Debug for VideoRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoRecorder").field("encoder", &self.encoder).field("settings", &self.settings).finish()
    }
}

impl VideoRecorder {
    /// Starts a pipeline `appsrc (I420) → convert → scale → encoder → h264parse → mp4mux` writing
    /// into `sink`. Fragments are short (150 ms): a still screen's flush and idle frames each
    /// close a fragment, so a crash loses about a second at most (see [`FLUSH_FRAMES`]).
    pub fn start(encoder: &'static Candidate, settings: VideoSettings, mut sink: ByteSink) -> Result<Self, VideoError> {
        crate::init()?;
        let (w, h) = (settings.width & !1, settings.height & !1);
        if w < 16 || h < 16 {
            return Err(VideoError::Size(settings.width, settings.height));
        }
        let desc = format!(
            "appsrc name=src format=time is-live=false block=true max-bytes={max} \
               caps=video/x-raw,format=I420,width={w},height={h},framerate=0/1,colorimetry={COLORIMETRY} ! \
             videoconvert ! videoscale add-borders=true ! {chain} ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! \
             mp4mux fragment-duration=150 streamable=true ! appsink name=out sync=false",
            max = (w * h * 3 / 2 * 4) as u64,
            chain = encode_chain(encoder, Some((w, h))),
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| VideoError::Pipeline(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| VideoError::Pipeline("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<AppSrc>().ok())
            .ok_or_else(|| VideoError::Pipeline("no appsrc".into()))?;
        let out = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<AppSink>().ok())
            .ok_or_else(|| VideoError::Pipeline("no appsink".into()))?;
        let counters = Arc::new(Mutex::new(Counters {
            frames: 0,
            last_pts: None,
            last_frame: None,
            flushed: 0,
            bytes: 0,
            sink_error: None,
            active: Vec::new(),
        }));
        let c = counters.clone();
        out.set_callbacks(
            gstreamer_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
                    match sink(map.as_slice()) {
                        Ok(()) => {
                            c.bytes += map.len() as u64;
                            Ok(gst::FlowSuccess::Ok)
                        }
                        Err(e) => {
                            c.sink_error = Some(e.to_string());
                            Err(gst::FlowError::Error)
                        }
                    }
                })
                .build(),
        );
        pipeline.set_state(gst::State::Playing).map_err(|e| VideoError::Pipeline(format!("cannot start: {e}")))?;
        Ok(Self {
            pipeline,
            src,
            settings: VideoSettings { width: w, height: h, ..settings },
            counters,
            canvas: Mutex::new(Canvas::new(w, h)),
            encoder: encoder.element,
        })
    }

    pub fn encoder(&self) -> &'static str {
        self.encoder
    }

    /// Frames encoded so far (idle repeats included).
    pub fn frames(&self) -> u64 {
        self.lock().frames
    }

    /// The screen changed: a BGRx frame (`stride` bytes per row) at `at` since the session's
    /// start. Returns whether it was encoded (`false`: dropped by the rate cap).
    pub fn frame(&self, bgrx: &[u8], stride: usize, at: Duration) -> Result<bool, VideoError> {
        self.frame_sized(bgrx, stride, self.settings.width, self.settings.height, at)
    }

    /// [`Self::frame`] for a screen of any size: a desktop that changed size is scaled into the
    /// video's size (a size change is never dropped by the rate cap).
    pub fn frame_sized(
        &self,
        bgrx: &[u8],
        stride: usize,
        width: u32,
        height: u32,
        at: Duration,
    ) -> Result<bool, VideoError> {
        self.frame_changed(bgrx, stride, width, height, None, None, at)
    }

    /// [`Self::frame_sized`] when only `rows` changed since the last frame this recorder took
    /// (`None`: anything may have): only those rows are converted, with `pointer` drawn over
    /// them (rows it left or entered count as changed). A frame the rate cap drops converts
    /// nothing, so the caller keeps its changed rows until a frame is taken.
    #[allow(clippy::too_many_arguments)]
    pub fn frame_changed(
        &self,
        bgrx: &[u8],
        stride: usize,
        width: u32,
        height: u32,
        rows: Option<Rows>,
        pointer: Option<Pointer<'_>>,
        at: Duration,
    ) -> Result<bool, VideoError> {
        // Encoders want even sizes: drop an odd last column or row.
        let (w, h) = ((width & !1) as usize, (height & !1) as usize);
        if w < 16 || h < 16 {
            return Err(VideoError::Size(width, height));
        }
        if stride < w * 4 || bgrx.len() < stride * (h - 1) + w * 4 {
            return Err(VideoError::Frame(format!("{} bytes with stride {stride} for {w}x{h}", bgrx.len())));
        }
        let mut canvas = self.canvas.lock().unwrap_or_else(|p| p.into_inner());
        let resized = canvas.size() != (w as u32, h as u32);
        if !resized {
            let c = self.lock();
            let min_gap = Duration::from_secs(1) / self.settings.max_fps.max(1);
            if c.last_pts.is_some_and(|last| at < last + min_gap) {
                return Ok(false);
            }
        }
        if resized {
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", w as i32)
                .field("height", h as i32)
                .field("framerate", gst::Fraction::new(0, 1))
                .field("colorimetry", COLORIMETRY)
                .build();
            self.src.set_caps(Some(&caps));
            *canvas = Canvas::new(w as u32, h as u32);
        }
        canvas.update(bgrx, stride, if resized { None } else { rows }, pointer)?;
        // The frame in flight is the encoder's; the canvas goes on changing.
        let data = canvas.bytes().to_vec();
        drop(canvas);
        // Two frames may not share a timestamp (a resize right after a frame).
        let at = match self.lock().last_pts {
            Some(last) if at <= last => last + Duration::from_millis(1),
            _ => at,
        };
        self.push(gst::Buffer::from_mut_slice(data), at)?;
        let mut c = self.lock();
        c.flushed = 0;
        mark_active(&mut c.active, at);
        Ok(true)
    }

    /// Call regularly (e.g. every 200 ms): flushes a change once the screen has settled, and
    /// repeats the last frame if the screen has been still for `idle_repeat`.
    pub fn tick(&self, now: Duration) -> Result<(), VideoError> {
        let repeat = {
            let mut c = self.lock();
            let flush_after = if c.flushed == 0 { SETTLED } else { FLUSH_GAP };
            match (&c.last_frame, c.last_pts) {
                (Some(f), Some(last)) if c.flushed < FLUSH_FRAMES && now >= last + flush_after => {
                    let f = f.clone();
                    c.flushed += 1;
                    Some(f)
                }
                (Some(f), Some(last)) if now >= last + self.settings.idle_repeat => Some(f.clone()),
                _ => None,
            }
        };
        match repeat {
            Some(frame) => self.push(frame, now),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, mut buffer: gst::Buffer, at: Duration) -> Result<(), VideoError> {
        if let Some(e) = self.lock().sink_error.clone() {
            return Err(VideoError::Sink(e));
        }
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(at.as_nanos() as u64));
        }
        let keep = buffer.clone();
        self.src.push_buffer(buffer).map_err(|e| VideoError::Pipeline(format!("encoder refused a frame: {e:?}")))?;
        let mut c = self.lock();
        c.frames += 1;
        c.last_pts = Some(at);
        c.last_frame = Some(keep);
        Ok(())
    }

    /// Ends the video at `at` (the last frame is held to then), drains the pipeline and returns
    /// what was written. The caller's sink has every byte when this returns.
    pub fn finish(self, at: Duration) -> Result<VideoSummary, VideoError> {
        let hold = {
            let c = self.lock();
            c.last_frame.clone().filter(|_| c.last_pts.is_some_and(|l| at > l))
        };
        if let Some(f) = hold {
            self.push(f, at)?;
        }
        let _ = self.src.end_of_stream();
        let bus = self.pipeline.bus().ok_or_else(|| VideoError::Pipeline("no bus".into()))?;
        let mut failure = None;
        for msg in bus.iter_timed(gst::ClockTime::from_seconds(30)) {
            match msg.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(e) => {
                    failure = Some(format!("{}", e.error()));
                    break;
                }
                _ => {}
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        let c = self.lock();
        if let Some(e) = c.sink_error.clone() {
            return Err(VideoError::Sink(e));
        }
        if let Some(e) = failure {
            return Err(VideoError::Pipeline(e));
        }
        let duration = c.last_pts.unwrap_or_default();
        let active = c.active.iter().map(|&(a, b)| (a.min(duration), b.min(duration))).filter(|(a, b)| b > a).collect();
        Ok(VideoSummary { frames: c.frames, duration, bytes: c.bytes, active })
    }
}

impl Drop for VideoRecorder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_merge_into_activity_spans() {
        let s = |ms: u64| Duration::from_millis(ms);
        let mut spans = Vec::new();
        for at in [0, 300, 900, 1800, 5000, 5100] {
            mark_active(&mut spans, s(at));
        }
        assert_eq!(spans, vec![(s(0), s(2800)), (s(5000), s(6100))]);
    }
}
