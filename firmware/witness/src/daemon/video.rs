//! Encoder choice for session video: each candidate is probed in a child process (a wedged
//! hardware driver must not hang the daemon), the first that proves itself is used, and the
//! result is kept in `run/encoders.json` for `witness encoders`, the console and `/metrics`.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
pub const ENCODERS_FILE: &str = "run/encoders.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    /// The encoder in use; `None`: no usable encoder (RDP sessions are then refused).
    pub chosen: Option<String>,
    pub pinned: Option<String>,
    pub probes: Vec<ProbeRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRow {
    pub element: String,
    pub platform: String,
    pub hardware: bool,
    pub usable: bool,
    /// Why: "usable", "no device", "permission denied", "device present, encoder failed",
    /// "not installed" or "encoder failed" (`witness_video::Reason`).
    #[serde(default)]
    pub reason: String,
    pub detail: String,
    /// The hardware encoder's device nodes found, each with how opening it went.
    #[serde(default)]
    pub devices: Vec<DeviceRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRow {
    pub path: String,
    /// "opened", "permission denied" or the error.
    pub access: String,
}

/// The device nodes under each of `prefixes` (`/dev/video` finds `/dev/video11`), each opened
/// for reading and writing as the encoder would, then closed.
fn device_nodes(prefixes: &[&str]) -> Vec<(witness_video::DeviceNode, String)> {
    let mut found = Vec::new();
    for prefix in prefixes {
        let prefix = Path::new(prefix);
        let (Some(dir), Some(stem)) = (prefix.parent(), prefix.file_name().and_then(|n| n.to_str())) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut paths: Vec<_> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(stem)))
            .map(|e| e.path())
            .collect();
        paths.sort();
        for path in paths {
            let (access, text) = match std::fs::OpenOptions::new().read(true).write(true).open(&path) {
                Ok(_) => (witness_video::NodeAccess::Opened, "opened".to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    (witness_video::NodeAccess::Denied, "permission denied".to_owned())
                }
                Err(e) => (witness_video::NodeAccess::Failed, e.to_string()),
            };
            found.push((witness_video::DeviceNode { path: path.display().to_string(), access }, text));
        }
    }
    found
}

fn probe_in_child(element: &'static str) -> witness_video::Probe {
    let fail = |detail: String| witness_video::Probe { element, usable: false, detail };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find the witness binary: {e}")),
    };
    let mut child = match Command::new(exe)
        .args(["encoders", "--probe-one", element])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start the probe: {e}")),
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() > PROBE_TIMEOUT + Duration::from_secs(5) => {
                let _ = child.kill();
                let _ = child.wait();
                return fail(format!("the probe hung for {} s (driver wedged?)", PROBE_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return fail(e.to_string()),
        }
    }
    let mut out = String::new();
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    match serde_json::from_str::<serde_json::Value>(out.trim()) {
        Ok(v) => witness_video::Probe {
            element,
            usable: v["usable"].as_bool().unwrap_or(false),
            detail: v["detail"].as_str().unwrap_or("").to_owned(),
        },
        Err(_) => fail("the probe crashed (a driver fault?)".into()),
    }
}

/// Probes in order (or only the pinned encoder) and records the result.
pub fn choose(dir: &DataDir) -> Result<Choice> {
    let pinned = dir.config.video_encoder.clone();
    let order = witness_video::order(pinned.as_deref())?;
    let (chosen, probes) = witness_video::choose(&order, |c| probe_in_child(c.element));
    let choice = Choice {
        chosen: chosen.map(|c| c.element.to_owned()),
        pinned,
        probes: probes
            .into_iter()
            .map(|p| {
                let c = witness_video::candidate(p.element);
                let nodes = c.map(|c| device_nodes(c.devices)).unwrap_or_default();
                let plain: Vec<witness_video::DeviceNode> = nodes.iter().map(|(n, _)| n.clone()).collect();
                ProbeRow {
                    element: p.element.to_owned(),
                    platform: c.map(|c| c.platform).unwrap_or("").to_owned(),
                    hardware: c.is_some_and(|c| c.hardware),
                    usable: p.usable,
                    reason: c.map(|c| witness_video::classify(c, &plain, &p).as_str()).unwrap_or("unknown").to_owned(),
                    devices: nodes.into_iter().map(|(n, access)| DeviceRow { path: n.path, access }).collect(),
                    detail: p.detail,
                }
            })
            .collect(),
    };
    let path = dir.root.join(ENCODERS_FILE);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&choice)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(choice)
}

/// The last recorded choice, if the daemon (or `witness encoders`) made one.
pub fn last_choice(root: &Path) -> Option<Choice> {
    serde_json::from_slice(&std::fs::read(root.join(ENCODERS_FILE)).ok()?).ok()
}

/// A session's video being recorded: frames in, sealed fragmented MP4 on disk, a row in the
/// index. The RDP relay feeds it from its passive decoder through [`BoxScreen`].
pub struct SessionVideo {
    pub id: String,
    recorder: witness_video::VideoRecorder,
    file: std::sync::Arc<std::sync::Mutex<Option<witness_recorder::SealedFile>>>,
    started: Instant,
}

impl std::fmt::Debug for SessionVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionVideo").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Starts the video of `session_id` at the desktop's size, with the encoder chosen at start-up.
/// Its timeline starts at `origin` (the session's start), so it lasts as long as the session.
pub fn start_session_video(
    dir: &std::sync::Arc<DataDir>,
    session_id: &str,
    width: u32,
    height: u32,
    origin: Instant,
) -> Result<SessionVideo> {
    let encoder = last_choice(&dir.root)
        .and_then(|c| c.chosen)
        .or_else(|| choose(dir).ok().and_then(|c| c.chosen))
        .context("no H.264 encoder works on this box (see witness encoders)")?;
    let encoder = witness_video::candidate(&encoder).context("the chosen encoder is unknown")?;
    let id = crate::daemon::broker::new_id();
    let rel =
        std::path::PathBuf::from(crate::datadir::RECORDINGS).join(crate::datadir::today()).join(format!("{id}.mp4"));
    let path = dir.root.join(&rel);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    dir.index.create_recording(
        &id,
        session_id,
        &witness_core::rdp_desktop_channel(width, height),
        &rel.to_string_lossy(),
    )?;
    let encryption = witness_keys::new_encryption(&dir.root, &id)?;
    // What each fsync made durable goes to the index, as for an SSH recording: recovery names a
    // video found shorter than that, or changed below it (issue 18, `h-fix18g`).
    let file = witness_recorder::SealedFile::create(&path, encryption, dir.config.fsync_interval)?
        .on_durable(crate::daemon::broker::note_durable(dir, &id));
    let file = std::sync::Arc::new(std::sync::Mutex::new(Some(file)));
    let sink_file = file.clone();
    let sink: witness_video::ByteSink = Box::new(move |chunk| {
        let mut f = sink_file.lock().unwrap_or_else(|p| p.into_inner());
        match f.as_mut() {
            Some(f) => f.append(chunk).map_err(|e| std::io::Error::other(e.to_string())),
            None => Err(std::io::Error::other("the video file is closed")),
        }
    });
    let settings = witness_video::VideoSettings { width, height, ..Default::default() };
    let recorder = witness_video::VideoRecorder::start(encoder, settings, sink)?;
    Ok(SessionVideo { id, recorder, file, started: origin })
}

impl SessionVideo {
    /// The screen changed (BGRx, `stride` bytes per row); `false` when the rate cap dropped it.
    #[cfg(test)]
    pub fn frame(&self, bgrx: &[u8], stride: usize) -> Result<bool, witness_video::VideoError> {
        self.recorder.frame(bgrx, stride, self.started.elapsed())
    }

    /// [`Self::frame`] for a screen of another size than the video's (it is scaled to fit), of
    /// which only `rows` changed since the last frame taken (`None`: anything may have).
    /// The first frame goes at the start of the timeline: until then the session was connecting.
    pub fn frame_changed(
        &self,
        bgrx: &[u8],
        stride: usize,
        width: u32,
        height: u32,
        rows: Option<witness_video::Rows>,
        pointer: Option<witness_video::Pointer<'_>>,
    ) -> Result<bool, witness_video::VideoError> {
        let at = if self.recorder.frames() == 0 { Duration::ZERO } else { self.started.elapsed() };
        self.recorder.frame_changed(bgrx, stride, width, height, rows, pointer, at)
    }

    /// Call every few hundred milliseconds: keeps a still screen's video flowing.
    pub fn tick(&self) -> Result<(), witness_video::VideoError> {
        self.recorder.tick(self.started.elapsed())
    }

    /// Drains the encoder and closes the file; the summary (or the failure) goes to the broker,
    /// which seals the recording and queues it for upload like any other.
    pub fn finish(
        self,
    ) -> Result<(witness_recorder::Summary, witness_video::VideoSummary), witness_recorder::RecordError> {
        use witness_recorder::RecordError;
        let at = self.started.elapsed();
        let encoded = self.recorder.finish(at);
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner()).take();
        let file = file.ok_or_else(|| RecordError::Write("the video file was already closed".into()))?;
        let mut summary = file.finish()?;
        summary.duration = at.as_secs_f64();
        let video = encoded.map_err(|e| RecordError::Write(e.to_string()))?;
        Ok((summary, video))
    }
}

/// The box's [`witness_rdp::ScreenRecorder`]: the video starts at the first desktop size the
/// decoder reports (a later resize is scaled into it) and is finished like every recording.
pub struct BoxScreen {
    dir: std::sync::Arc<DataDir>,
    finisher: crate::daemon::broker::Finisher,
    session_id: String,
    /// The session's start: the video's time zero.
    origin: Instant,
    video: Option<SessionVideo>,
    /// `[recording] rdp_keystrokes`: typed keys are recorded beside the video.
    record_keys: bool,
    /// The key track, from the first key typed: (recording id, its cast).
    keys: Option<(String, witness_recorder::CastRecorder)>,
}

impl BoxScreen {
    pub fn new(dir: std::sync::Arc<DataDir>, finisher: crate::daemon::broker::Finisher, session_id: &str) -> Self {
        let record_keys = dir.config.rdp_keystrokes;
        Self {
            dir,
            finisher,
            session_id: session_id.to_owned(),
            origin: Instant::now(),
            video: None,
            record_keys,
            keys: None,
        }
    }
}

/// Starts the key track of an RDP session: an encrypted cast (channel `keys`) whose output is what
/// the user typed, on the video's timeline; sealed, uploaded, searchable and played like any cast.
fn start_key_track(
    dir: &std::sync::Arc<DataDir>,
    session_id: &str,
    origin: Instant,
) -> Result<(String, witness_recorder::CastRecorder)> {
    let id = crate::daemon::broker::new_id();
    let rel =
        std::path::PathBuf::from(crate::datadir::RECORDINGS).join(crate::datadir::today()).join(format!("{id}.cast"));
    let path = dir.root.join(&rel);
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let session = dir.index.session(session_id)?.context("no such session")?;
    dir.index.create_recording(&id, session_id, witness_core::RDP_KEYS_CHANNEL, &rel.to_string_lossy())?;
    let header = witness_core::cast::Header {
        version: 2,
        width: 80,
        height: 24,
        timestamp: time::OffsetDateTime::now_utc().unix_timestamp(),
        title: Some(format!("{}@{} typed keys", session.user, session.target)),
        command: None,
        env: Default::default(),
        witness: Some(witness_core::cast::Provenance {
            session_id: session_id.to_owned(),
            recording_id: id.clone(),
            user: session.user,
            target: session.target,
            box_id: dir.config.box_id.clone(),
        }),
        witness_format: None,
    };
    let settings = witness_recorder::RecorderSettings { fsync_interval: dir.config.fsync_interval };
    let encryption = witness_keys::new_encryption(&dir.root, &id)?;
    let rec = witness_recorder::start_cast(&path, &header, settings, Some(encryption))?
        .timed_from(origin)
        .on_durable(crate::daemon::broker::note_durable(dir, &id));
    Ok((id, rec))
}

/// Typed text as the key track shows it: Enter starts a line, Backspace erases on screen (the
/// search text applies it the same way).
fn key_track_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\r\n"),
            witness_rdp::keys::BACKSPACE => out.push_str("\u{8} \u{8}"),
            c => out.push(c),
        }
    }
    out
}

impl witness_rdp::ScreenRecorder for BoxScreen {
    fn resized(&mut self, screen: witness_rdp::Screen<'_>) -> Result<(), String> {
        if self.video.is_none() {
            let (w, h) = (u32::from(screen.width), u32::from(screen.height));
            let video =
                start_session_video(&self.dir, &self.session_id, w, h, self.origin).map_err(|e| format!("{e:#}"))?;
            tracing::info!(session_id = %self.session_id, recording_id = %video.id, width = w, height = h, "rdp video started");
            self.video = Some(video);
        }
        // The new desktop goes in at once, whatever the rate cap says.
        self.frame(screen).map(|_| ())
    }

    fn frame(&mut self, screen: witness_rdp::Screen<'_>) -> Result<bool, String> {
        let Some(video) = &self.video else { return Ok(true) };
        let rows = screen.dirty.map(|r| witness_video::Rows { top: u32::from(r.y), height: u32::from(r.height) });
        let pointer = screen.pointer.map(|p| witness_video::Pointer {
            x: p.x,
            y: p.y,
            width: u32::from(p.width),
            height: u32::from(p.height),
            rgba: p.rgba,
        });
        video
            .frame_changed(screen.bgrx, screen.stride, u32::from(screen.width), u32::from(screen.height), rows, pointer)
            .map_err(|e| format!("the session video failed: {e}"))
    }

    fn tick(&mut self) -> Result<(), String> {
        match &self.video {
            Some(v) => v.tick().map_err(|e| format!("the session video failed: {e}")),
            None => Ok(()),
        }
    }

    fn records_keys(&self) -> bool {
        self.record_keys
    }

    fn typed(&mut self, text: &str) -> Result<(), String> {
        if !self.record_keys {
            return Ok(());
        }
        if self.keys.is_none() {
            let (id, rec) = start_key_track(&self.dir, &self.session_id, self.origin)
                .map_err(|e| format!("the key track could not start: {e:#}"))?;
            tracing::info!(session_id = %self.session_id, recording_id = %id, "rdp key track started");
            self.keys = Some((id, rec));
        }
        let (_, rec) = self.keys.as_ref().expect("started above");
        rec.output(&bytes::Bytes::from(key_track_text(text))).map_err(|e| format!("the key track failed: {e}"))
    }

    fn finish(self: Box<Self>, failure: Option<String>, gaps: witness_rdp::Gaps) {
        if let Some((id, rec)) = &self.keys {
            let outcome = match tokio::runtime::Handle::try_current() {
                Ok(h) => h.block_on(rec.finish()),
                Err(_) => Err(witness_recorder::RecordError::Write("no runtime to finish the key track".into())),
            };
            self.finisher.recording_finished(id, outcome);
        }
        // What the decoder missed is a gap in the recording: stated in the audit log, next to
        // the recording it concerns.
        // Skipped client input is a gap only when keys are recorded: the key track lacks them.
        let keys_missed = self.record_keys && gaps.skipped_input_pdus > 0;
        if gaps.skipped_screen_pdus > 0 || gaps.undecodable_screen_pdus > 0 || keys_missed {
            let detail = serde_json::json!({
                "protocol": "rdp",
                "recording_id": self.video.as_ref().map(|v| v.id.clone()),
                "key_track_id": self.keys.as_ref().map(|(id, _)| id.clone()),
                "skipped_screen_pdus": gaps.skipped_screen_pdus,
                "undecodable_screen_pdus": gaps.undecodable_screen_pdus,
                "skipped_input_pdus": gaps.skipped_input_pdus,
                "refreshes": gaps.refreshes,
                "unverified": gaps.unverified,
            });
            tracing::warn!(session_id = %self.session_id, ?gaps, "the rdp recording missed screen updates");
            if let Err(e) = self.dir.index.audit("recording_gaps", None, None, Some(&self.session_id), &detail) {
                tracing::warn!(session_id = %self.session_id, error = %e, "could not record the recording's gaps");
            }
        }
        let Some(video) = self.video else {
            tracing::info!(session_id = %self.session_id, "the rdp session ended before the target showed a desktop; no video");
            return;
        };
        let id = video.id.clone();
        let missed = gaps.skipped_screen_pdus + gaps.undecodable_screen_pdus;
        if missed > 0
            && let Err(e) = self.dir.index.set_missed_screen_updates(&id, missed, gaps.unverified)
        {
            tracing::warn!(recording_id = %id, error = %e, "could not store the screen updates the recording missed");
        }
        let outcome = match (video.finish(), failure) {
            (Ok((summary, v)), None) => {
                let spans: Vec<(f64, f64)> = v
                    .active
                    .iter()
                    .map(|(a, b)| ((a.as_secs_f64() * 10.0).round() / 10.0, (b.as_secs_f64() * 10.0).round() / 10.0))
                    .collect();
                if let Err(e) = self.dir.index.set_recording_video(&id, v.frames, &spans) {
                    tracing::warn!(recording_id = %id, error = %e, "could not store the video's frame count and activity");
                }
                Ok(summary)
            }
            (Ok(_), Some(why)) => Err(witness_recorder::RecordError::Write(why)),
            (Err(e), _) => Err(e),
        };
        self.finisher.recording_finished(&id, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_video_is_sealed_on_disk_and_plays_back_through_the_box() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        crate::provision::create(&root).unwrap();
        let dir = std::sync::Arc::new(DataDir::open(&root).unwrap());
        dir.index.create_session("s1", "admin", "win01", witness_core::Protocol::Rdp, None).unwrap();
        // The daemon probes in child processes of its own binary; a test binary is not one, so
        // probe in-process and record the choice as the daemon would.
        assert!(witness_video::probe_one("x264enc", PROBE_TIMEOUT).usable);
        std::fs::create_dir_all(root.join("run")).unwrap();
        let choice = Choice { chosen: Some("x264enc".into()), pinned: None, probes: vec![] };
        std::fs::write(root.join(ENCODERS_FILE), serde_json::to_vec(&choice).unwrap()).unwrap();
        let video = start_session_video(&dir, "s1", 320, 240, Instant::now()).unwrap();
        let green: Vec<u8> = [0u8, 255, 0, 0].iter().copied().cycle().take(320 * 240 * 4).collect();
        assert!(video.frame(&green, 320 * 4).unwrap());
        for _ in 0..12 {
            std::thread::sleep(Duration::from_millis(100));
            video.tick().unwrap();
        }
        let id = video.id.clone();
        let (summary, v) = video.finish().unwrap();
        assert!(v.frames >= 2, "{v:?}");
        assert_eq!(v.active.len(), 1, "one change, one span: {v:?}");
        let row = dir.index.recording(&id).unwrap().unwrap();
        let on_disk = std::fs::read(root.join(&row.path)).unwrap();
        assert_eq!(summary.bytes, on_disk.len() as u64);
        assert!(!on_disk.windows(4).any(|w| w == b"moof"), "the video is encrypted on disk");
        dir.index
            .finish_recording(
                &id,
                &witness_index::RecordingEnd {
                    status: witness_core::RecordingStatus::Completed,
                    reason: None,
                    bytes: summary.bytes,
                    sha256: Some(summary.sha256),
                    duration: Some(summary.duration),
                    recovered: false,
                },
            )
            .unwrap();
        let mut mp4 = Vec::new();
        std::io::Read::read_to_end(&mut crate::playback::playable(&dir, &id).unwrap().reader().unwrap(), &mut mp4)
            .unwrap();
        let out = tmp.path().join("v.mp4");
        std::fs::write(&out, mp4).unwrap();
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
            .arg(&out)
            .output()
            .unwrap();
        let d: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap();
        assert!((d - summary.duration).abs() < 0.6, "video {d} s, session {} s", summary.duration);
    }
}
