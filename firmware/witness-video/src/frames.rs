//! Reads a session video back as grey pictures, for text extraction after the recording is
//! sealed: the fragmented MP4, streamed from a reader (the recording decrypted record by record:
//! nothing is written in clear, and memory is the pipeline's bounded queue, not the video), goes
//! through `qtdemux ! h264parse ! openh264dec` (OpenH264 is in the image's plugins) and comes out
//! as grey frames with their times: the decoded I420 picture's luma plane as it is (no conversion,
//! no copy when its rows are unpadded). FFmpeg's decoder (`avdec_h264`, `gstreamer1.0-libav`)
//! costs about 8 CPU s less per recorded hour of typing but brings some 200 MiB of libraries the
//! image has no room for (see README, OCR).

use crate::VideoError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};
use std::time::Duration;

/// One decoded picture: `height` rows of `width` grey bytes (tightly packed).
#[derive(Debug)]
pub struct GrayFrame<'a> {
    /// From the start of the video.
    pub at: Duration,
    pub width: u32,
    pub height: u32,
    pub gray: &'a [u8],
}

/// Bytes read from the source and handed to the demuxer at a time.
const CHUNK: usize = 256 * 1024;
/// Bytes queued before the demuxer at most: with [`CHUNK`], what reading holds of the video.
pub const QUEUED: usize = 1 << 20;

/// Decodes the MP4 read from `mp4` and calls `each` with every frame in order; `each` returns
/// `false` to stop early. The source is read as the decoder needs it (a few MiB ahead at most).
/// Returns how many frames were decoded; a source that fails is an error, even after frames.
pub fn decode_gray(
    mut mp4: impl std::io::Read + Send,
    mut each: impl FnMut(GrayFrame<'_>) -> bool,
) -> Result<u64, VideoError> {
    crate::init()?;
    // OpenH264's I420 goes through `videoconvert` untouched (its luma plane is the grey picture;
    // converting it to GRAY8 was a copy of every frame); any other output is converted to GRAY8.
    let desc = format!(
        "appsrc name=src is-live=false block=true max-bytes={QUEUED} caps=video/quicktime ! \
                qtdemux ! h264parse ! openh264dec ! videoconvert ! video/x-raw,format={{I420,GRAY8}} ! \
                appsink name=out sync=false max-buffers=4"
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| VideoError::Pipeline(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| VideoError::Pipeline("not a pipeline".into()))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<AppSrc>().ok())
        .ok_or_else(|| VideoError::Pipeline("no appsrc".into()))?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<AppSink>().ok())
        .ok_or_else(|| VideoError::Pipeline("no appsink".into()))?;
    pipeline.set_state(gst::State::Playing).map_err(|e| VideoError::Pipeline(format!("cannot start: {e}")))?;
    let outcome = std::thread::scope(|scope| {
        // The source blocks when the pipeline is full: feed it from a thread of its own.
        let feeder = scope.spawn(|| -> Result<(), VideoError> {
            let mut chunk = vec![0u8; CHUNK];
            loop {
                let n = match mp4.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // The decoder ends with what it has; the caller gets the error.
                        let _ = src.end_of_stream();
                        return Err(VideoError::Source(e.to_string()));
                    }
                };
                if src.push_buffer(gst::Buffer::from_slice(chunk[..n].to_vec())).is_err() {
                    return Ok(());
                }
            }
            let _ = src.end_of_stream();
            Ok(())
        });
        let result = pull(&pipeline, &sink, &mut each);
        // Stopping the pipeline unblocks a feeder still waiting for room.
        let _ = pipeline.set_state(gst::State::Null);
        let fed = feeder.join().unwrap_or_else(|_| Err(VideoError::Source("the reader panicked".into())));
        // A source that failed explains a decoding error after it, too.
        match (result, fed) {
            (_, Err(e)) => Err(e),
            (r, Ok(())) => r,
        }
    });
    let _ = pipeline.set_state(gst::State::Null);
    outcome
}

fn pull(
    pipeline: &gst::Pipeline,
    sink: &AppSink,
    each: &mut impl FnMut(GrayFrame<'_>) -> bool,
) -> Result<u64, VideoError> {
    let mut frames = 0u64;
    let mut packed = Vec::new();
    loop {
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
            if sink.is_eos() {
                return Ok(frames);
            }
            if let Some(msg) = pipeline.bus().and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                && let gst::MessageView::Error(e) = msg.view()
            {
                return Err(VideoError::Pipeline(format!("decoding the video: {}", e.error())));
            }
            continue;
        };
        let caps = sample.caps().ok_or_else(|| VideoError::Pipeline("a decoded frame without caps".into()))?;
        let s = caps.structure(0).ok_or_else(|| VideoError::Pipeline("empty caps".into()))?;
        let (w, h) = (s.get::<i32>("width"), s.get::<i32>("height"));
        let (Ok(w), Ok(h)) = (w, h) else { return Err(VideoError::Pipeline("a decoded frame without a size".into())) };
        let (w, h) = (w.max(0) as u32, h.max(0) as u32);
        let buffer = sample.buffer().ok_or_else(|| VideoError::Pipeline("a sample without a buffer".into()))?;
        let at = Duration::from_nanos(buffer.pts().map(|t| t.nseconds()).unwrap_or(0));
        let map = buffer.map_readable().map_err(|_| VideoError::Pipeline("unreadable frame".into()))?;
        let data = map.as_slice();
        // GRAY8 and I420 alike begin with the grey plane, its rows padded to 4 bytes.
        let stride = w.next_multiple_of(4) as usize;
        if h == 0 || w == 0 || data.len() < stride * h as usize {
            return Err(VideoError::Frame(format!("{} bytes for a {w}x{h} frame", data.len())));
        }
        let gray = if stride == w as usize {
            &data[..stride * h as usize]
        } else {
            packed.clear();
            for row in data.chunks(stride).take(h as usize) {
                packed.extend_from_slice(&row[..w as usize]);
            }
            &packed[..]
        };
        frames += 1;
        if !each(GrayFrame { at, width: w, height: h, gray }) {
            return Ok(frames);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settle::Settler;
    use std::sync::{Arc, Mutex};

    /// A white 320x240 BGRx screen with a black bar at (100..228, 116..132) when `bar`, cut
    /// every 8 columns like letters (a solid bar is a straight line, no text, and not read).
    fn screen(bar: bool) -> Vec<u8> {
        let mut p = vec![255u8; 320 * 240 * 4];
        if bar {
            for y in 116..132 {
                for x in (100..228).filter(|x| (x - 100) % 8 < 5) {
                    p[(y * 320 + x) * 4..(y * 320 + x) * 4 + 3].fill(0);
                }
            }
        }
        p
    }

    /// A 320x240 x264 recorder writing its MP4 into memory.
    fn recorder_into_memory() -> (crate::VideoRecorder, Arc<Mutex<Vec<u8>>>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        let sink: crate::ByteSink = Box::new(move |b| {
            o.lock().unwrap().extend_from_slice(b);
            Ok(())
        });
        let encoder = crate::candidate("x264enc").unwrap();
        let settings = crate::VideoSettings { width: 320, height: 240, ..Default::default() };
        (crate::VideoRecorder::start(encoder, settings, sink).unwrap(), out)
    }

    #[test]
    fn a_recorded_video_reads_back_as_the_pictures_it_showed_at_their_times() {
        let (rec, out) = recorder_into_memory();
        let ms = Duration::from_millis;
        assert!(rec.frame(&screen(false), 320 * 4, ms(0)).unwrap());
        for t in (200..1500).step_by(200) {
            rec.tick(ms(t)).unwrap();
        }
        assert!(rec.frame(&screen(true), 320 * 4, ms(1500)).unwrap());
        for t in (1700..3000).step_by(200) {
            rec.tick(ms(t)).unwrap();
        }
        rec.finish(ms(3000)).unwrap();
        let mp4 = out.lock().unwrap().clone();
        let mut settler = Settler::new(320, 240, ms(500));
        let mut reads = Vec::new();
        let mut sizes = Vec::new();
        let frames = decode_gray(&mp4[..], |f| {
            sizes.push((f.width, f.height));
            reads.extend(settler.frame(f.at, f.gray));
            true
        })
        .unwrap();
        reads.extend(settler.finish());
        assert!(frames >= 3, "{frames} frames");
        assert!(sizes.iter().all(|&s| s == (320, 240)), "{sizes:?}");
        // Not the white screen (nothing on it to read), but the bar where it appeared, at the
        // moment it appeared.
        assert_eq!(reads.len(), 1, "{:?}", reads.iter().map(|r| (r.at, r.region)).collect::<Vec<_>>());
        let bar = &reads[0];
        assert!(bar.at.abs_diff(ms(1500)) < ms(100), "{:?}", bar.at);
        assert_eq!(
            (bar.region.x, bar.region.y, bar.region.width, bar.region.height),
            (80, 115, 176, 18),
            "around the bar only"
        );
        let dark = bar.crop.iter().filter(|&&p| p < 64).count();
        assert!((1100..=1450).contains(&dark), "{dark} dark pixels: the 128x16 bar's 1280");
        // Garbage is an error, not a hang or a panic.
        assert!(decode_gray(&b"not a video at all, just bytes"[..], |_| true).is_err());
    }

    /// A reader over a video that counts the bytes it handed out and fails at `fail_at` (a
    /// record of the recording that does not authenticate).
    struct Source {
        video: Vec<u8>,
        read: Arc<std::sync::atomic::AtomicUsize>,
        fail_at: usize,
    }

    impl std::io::Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let at = self.read.load(std::sync::atomic::Ordering::SeqCst);
            if at >= self.fail_at && at < self.video.len() {
                return Err(std::io::Error::other("record 9 does not authenticate"));
            }
            let n = buf.len().min(self.video.len().min(self.fail_at) - at);
            buf[..n].copy_from_slice(&self.video[at..at + n]);
            self.read.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            Ok(n)
        }
    }

    /// 20 s of a 320x240 screen of noise (nothing compresses it): several MiB.
    fn noisy_video() -> Vec<u8> {
        let (rec, out) = recorder_into_memory();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut screen = vec![0u8; 320 * 240 * 4];
        for i in 0..200u64 {
            for px in screen.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                px.copy_from_slice(&seed.to_le_bytes());
            }
            rec.frame(&screen, 320 * 4, Duration::from_millis(i * 100)).unwrap();
        }
        rec.finish(Duration::from_millis(20_000)).unwrap();
        out.lock().unwrap().clone()
    }

    #[test]
    fn a_video_is_decoded_as_it_is_read_and_a_failing_source_is_an_error() {
        let video = noisy_video();
        let total = video.len();
        assert!(total > 4 * QUEUED, "{total} bytes: too small to show streaming");
        // The first frame comes out long before the source is read to its end: reading holds a
        // bounded part of the video, whatever its size.
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let source = Source { video: video.clone(), read: read.clone(), fail_at: usize::MAX };
        let mut read_at_first = None;
        let mut most_ahead = 0usize;
        let mut last_at = Duration::ZERO;
        let frames = decode_gray(source, |f| {
            let now = read.load(std::sync::atomic::Ordering::SeqCst);
            read_at_first.get_or_insert(now);
            // How far reading is ahead of this frame's share of the file.
            let share = (f.at.as_secs_f64() / 20.0 * total as f64) as usize;
            most_ahead = most_ahead.max(now.saturating_sub(share));
            last_at = f.at;
            true
        })
        .unwrap();
        assert!(frames >= 150, "{frames} frames");
        assert!(last_at >= Duration::from_millis(19_000), "decoded to the end: {last_at:?}");
        let first = read_at_first.unwrap();
        assert!(first <= 2 * QUEUED, "{first} of {total} bytes read before the first frame");
        assert!(most_ahead <= 2 * QUEUED, "reading ran {most_ahead} bytes ahead of decoding");
        // A source that fails half-way: the frames before are decoded, then the error, not an end.
        let read = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let source = Source { video, read, fail_at: total / 2 };
        let mut seen = 0;
        let err = decode_gray(source, |_| {
            seen += 1;
            true
        })
        .unwrap_err();
        assert!(matches!(&err, VideoError::Source(m) if m.contains("does not authenticate")), "{err}");
        assert!(seen > 0, "frames before the failure were decoded");
    }
}
