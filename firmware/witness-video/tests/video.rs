//! The recorder against the real GStreamer and x264 of this machine, checked with `ffprobe` and
//! `ffmpeg` (independent readers): content, duration, variable frame rate, a cut stream.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use witness_video::{VideoRecorder, VideoSettings, candidate};

fn frame(w: usize, h: usize, bgrx: [u8; 4]) -> Vec<u8> {
    bgrx.iter().copied().cycle().take(w * h * 4).collect()
}

/// An x264 recorder at 320x240 writing into the returned buffer.
fn recorder_320x240() -> (VideoRecorder, Arc<Mutex<Vec<u8>>>) {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let b = bytes.clone();
    let rec = VideoRecorder::start(
        candidate("x264enc").unwrap(),
        VideoSettings { width: 320, height: 240, ..Default::default() },
        Box::new(move |chunk| {
            b.lock().unwrap().extend_from_slice(chunk);
            Ok(())
        }),
    )
    .unwrap();
    (rec, bytes)
}

fn record(frames: &[(u64, [u8; 4])], end_ms: u64) -> (Vec<u8>, witness_video::VideoSummary) {
    let (rec, bytes) = recorder_320x240();
    let mut ms = 0;
    let mut i = 0;
    while ms <= end_ms {
        if i < frames.len() && frames[i].0 <= ms {
            rec.frame(&frame(320, 240, frames[i].1), 320 * 4, Duration::from_millis(frames[i].0)).unwrap();
            i += 1;
        }
        rec.tick(Duration::from_millis(ms)).unwrap();
        ms += 100;
    }
    let summary = rec.finish(Duration::from_millis(end_ms)).unwrap();
    let out = bytes.lock().unwrap().clone();
    (out, summary)
}

fn probe_duration(path: &std::path::Path) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The colour (B, G, R) of the centre pixel at `t` seconds.
fn pixel_at(path: &std::path::Path, t: f64) -> [u8; 3] {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{t}"), "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf", "crop=2:2:160:120", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), 12, "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    [out.stdout[0], out.stdout[1], out.stdout[2]]
}

/// The centre pixel (B, G, R) of every frame, in order.
fn frame_colours(path: &std::path::Path) -> Vec<[u8; 3]> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vf", "crop=2:2:160:120", "-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
        .output()
        .unwrap();
    out.stdout.chunks_exact(12).map(|c| [c[0], c[1], c[2]]).collect()
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) < 24)
}

#[test]
fn what_the_screen_showed_is_in_the_video_at_its_moment() {
    let red = [0, 0, 255, 0];
    let blue = [255, 0, 0, 0];
    // Red for 2 s, then blue; nothing changes after 2 s: the idle repeat carries it to 5 s.
    let (bytes, summary) = record(&[(0, red), (2000, blue)], 5000);
    let dir = tempfile::tempdir().unwrap();
    let finished = dir.path().join("v.mp4");
    std::fs::write(&finished, &bytes).unwrap();
    let d = probe_duration(&finished);
    assert!((d - 5.0).abs() < 1.0, "duration {d}");
    assert!(close(pixel_at(&finished, 1.0), [0, 0, 255]), "red at 1 s");
    assert!(close(pixel_at(&finished, 4.0), [255, 0, 0]), "blue at 4 s");
    // Damage-driven: two changes, each with its flush frames, and idle repeats at 1 fps — not
    // 10 fps for 5 s.
    assert!(summary.frames <= 13, "{summary:?}");
    assert_eq!(summary.bytes, bytes.len() as u64);
}

#[test]
fn a_stream_cut_mid_session_plays_to_its_last_fragment() {
    let colours: Vec<(u64, [u8; 4])> =
        (0..40).map(|i| (i * 100, [(i * 6) as u8, 80, 200 - (i * 5) as u8, 0])).collect();
    let (bytes, _) = record(&colours, 4000);
    // A crash: the file ends mid-fragment.
    let cut = &bytes[..bytes.len() * 3 / 4];
    let keep = witness_core::fmp4::whole_len(cut).unwrap();
    assert!(keep > 0 && keep < cut.len(), "trimmed to whole fragments: {keep} of {}", cut.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mp4");
    std::fs::write(&path, &cut[..keep]).unwrap();
    let d = probe_duration(&path);
    assert!(d > 1.5 && d < 4.0, "the cut video keeps its whole fragments: {d}");
    // Rate cap: 40 changes in 4 s are at most 10 fps.
    let frames = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let n: u32 = String::from_utf8_lossy(&frames.stdout).trim().parse().unwrap();
    assert!(n >= 10, "frames kept: {n}");
}

#[test]
fn a_failing_sink_stops_the_recording_with_its_error() {
    let rec = VideoRecorder::start(
        candidate("x264enc").unwrap(),
        VideoSettings { width: 320, height: 240, ..Default::default() },
        Box::new(|_| Err(std::io::Error::other("disk full"))),
    )
    .unwrap();
    let mut err = None;
    for i in 0..50u64 {
        if let Err(e) = rec.frame(&frame(320, 240, [i as u8, 0, 0, 0]), 320 * 4, Duration::from_millis(i * 100)) {
            err = Some(e.to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = err.or_else(|| rec.finish(Duration::from_secs(5)).err().map(|e| e.to_string())).expect("an error");
    assert!(err.contains("disk full") || err.contains("video"), "{err}");
}

#[test]
fn a_resized_desktop_is_scaled_into_the_same_video() {
    let (rec, bytes) = recorder_320x240();
    let red = [0, 0, 255, 0];
    let green = [0, 255, 0, 0];
    rec.frame(&frame(320, 240, red), 320 * 4, Duration::ZERO).unwrap();
    for ms in (100..=1500).step_by(100) {
        rec.tick(Duration::from_millis(ms)).unwrap();
    }
    // The desktop grows to 640x400 (another aspect ratio: letterboxed) right after a frame.
    assert!(rec.frame_sized(&frame(640, 400, green), 640 * 4, 640, 400, Duration::from_millis(1550)).unwrap());
    for ms in (1600..=3000).step_by(100) {
        rec.tick(Duration::from_millis(ms)).unwrap();
    }
    rec.finish(Duration::from_secs(3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resized.mp4");
    std::fs::write(&path, bytes.lock().unwrap().as_slice()).unwrap();
    let d = probe_duration(&path);
    assert!((d - 3.0).abs() < 0.8, "one video for the whole session: {d}");
    let seen = frame_colours(&path);
    assert!(close(seen[0], [0, 0, 255]), "red before the resize: {seen:?}");
    assert!(close(*seen.last().unwrap(), [0, 255, 0]), "green, scaled, after it: {seen:?}");
    let size = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&size.stdout).trim(), "320,240");
}

#[test]
fn a_change_is_in_the_file_within_a_second_of_the_screen_settling() {
    let (rec, bytes) = recorder_320x240();
    let (red, blue) = ([0, 0, 255, 0], [255, 0, 0, 0]);
    rec.frame(&frame(320, 240, red), 320 * 4, Duration::ZERO).unwrap();
    for ms in (200..=3000).step_by(200) {
        rec.tick(Duration::from_millis(ms)).unwrap();
    }
    rec.frame(&frame(320, 240, blue), 320 * 4, Duration::from_millis(3000)).unwrap();
    // Ticks as the RDP recording thread gives them, in real time (the encoder runs meanwhile):
    // the screen has settled 350 ms after the change, the flush frames go at the next ticks.
    for ms in (3200..=4200).step_by(200) {
        std::thread::sleep(Duration::from_millis(200));
        rec.tick(Duration::from_millis(ms)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    // A crash now: what the file holds plays, and ends blue.
    let cut = bytes.lock().unwrap().clone();
    let keep = witness_core::fmp4::whole_len(&cut).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.mp4");
    std::fs::write(&path, &cut[..keep]).unwrap();
    let d = probe_duration(&path);
    let seen = frame_colours(&path);
    assert!(close(*seen.last().unwrap(), [255, 0, 0]), "the change is in the file a second later ({d} s): {seen:?}");
    drop(rec);
}
