//! RDP session video end to end: real `xfreerdp` through the box to real targets
//! (`freerdp-shadow-cli` with NLA, with and without the graphics pipeline; xrdp), the target
//! drawing known colours with `xsetroot`; the exported MP4 is read back with `ffprobe`/`ffmpeg`
//! (independent readers): it plays, lasts as long as the session, its frames differ, and the
//! colours the target showed are in it, in order — also when the target dies mid-session and
//! when the box itself is killed with SIGKILL.

use crate::harness::{Box, assert_completed, eventually};
use crate::rdp::{BLUE, RED, RdpBox, STAYED_UP, Shadow, Xrdp, Xvfb, audit_of, box_with_shadow, screen_shows};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Seconds since the epoch of an index time (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
pub(crate) fn unix_of(t: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs: f64 = t[17..23].parse().unwrap();
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60) as f64 + secs
}

pub(crate) fn now_unix() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The session's video once it is finished, exported (decrypted) by the box.
pub(crate) fn video_of(b: &Box, session_id: &str) -> (serde_json::Value, PathBuf) {
    let row = eventually(30, "the session's video to finish", || {
        b.recordings()
            .into_iter()
            .find(|r| r["session_id"] == session_id && r["status"] != "recording" && r["status"] != "processing")
    });
    assert!(row["path"].as_str().unwrap().ends_with(".mp4"), "{row}");
    let out = b.dir.path().join(format!("{}.mp4", row["id"].as_str().unwrap()));
    b.ok(&["recordings", "export", row["id"].as_str().unwrap(), "--out", out.to_str().unwrap()], None);
    (row, out)
}

fn ffprobe(path: &Path, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries, "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe refused the video: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn duration(path: &Path) -> f64 {
    ffprobe(path, "format=duration").parse().unwrap()
}

/// How many different frames the video holds (`ffmpeg -f framemd5`).
fn distinct_frames(path: &Path) -> usize {
    let out =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "framemd5", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let hashes: std::collections::HashSet<&str> =
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit(',').next()).map(str::trim).collect();
    hashes.len()
}

/// The colour (R, G, B) at a quarter of the width and height (away from the pointer, which
/// Xvfb parks in the middle), four times a second of video.
fn colours(path: &Path) -> Vec<(u8, u8, u8)> {
    colours_at(path, "iw/4", "ih/4")
}

/// The colour at (`x`, `y`) (ffmpeg crop expressions), four times a second of video.
pub(crate) fn colours_at(path: &Path, x: &str, y: &str) -> Vec<(u8, u8, u8)> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vf", &format!("fps=4,crop=2:2:{x}:{y}"), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(12).map(|c| (c[0], c[1], c[2])).collect()
}

pub(crate) fn near(a: (u8, u8, u8), b: (u8, u8, u8)) -> bool {
    a.0.abs_diff(b.0) < 40 && a.1.abs_diff(b.1) < 40 && a.2.abs_diff(b.2) < 40
}

/// Where in the video `colour` first shows, in seconds.
fn first(seen: &[(u8, u8, u8)], colour: (u8, u8, u8)) -> Option<f64> {
    seen.iter().position(|c| near(*c, colour)).map(|i| i as f64 / 4.0)
}

/// The target shows red, then blue; the video shows red, then blue, to its end, and is as long
/// as the session.
fn red_then_blue_session(extra: &[&str]) {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 14, extra);
    screen_shows(&screen, &[RED], 10, |_| {});
    std::thread::sleep(Duration::from_secs(3));
    shadow.screen.set_color("blue");
    screen_shows(&screen, &[BLUE], 10, |_| {});
    let (st, log) = client.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    let (row, mp4) = video_of(&rb.b, session["id"].as_str().unwrap());
    assert_completed(&row);
    assert_eq!(row["channel"], "desktop 1024x768", "{row}");
    assert_eq!(ffprobe(&mp4, "stream=codec_name,width,height"), "h264,1024,768");
    let d = duration(&mp4);
    let session_secs =
        unix_of(session["ended_at"].as_str().unwrap()) - unix_of(session["started_at"].as_str().unwrap());
    eprintln!("video {d:.2} s, session {session_secs:.2} s, box {:.2} s", row["duration"].as_f64().unwrap());
    assert!((d - session_secs).abs() < 1.0, "video {d} s for a session of {session_secs} s");
    assert!((d - row["duration"].as_f64().unwrap()).abs() < 1.0, "{row}");
    assert!(distinct_frames(&mp4) >= 3, "the frames differ");
    let seen = colours(&mp4);
    let (red, blue) = (first(&seen, RED), first(&seen, BLUE));
    assert!(red.is_some() && blue.is_some() && red < blue, "red then blue: {seen:?}");
    assert!(near(*seen.last().unwrap(), BLUE), "blue to the end: {seen:?}");
    // Red held for 3 s on the target before it turned blue; the video agrees within a second.
    let held = blue.unwrap() - red.unwrap();
    assert!(held > 2.0 && held < 5.5, "red for {held} s: {seen:?}");
    if extra.contains(&"/gfx") {
        // xfreerdp's own Caps Advertise was found on drdynvc and H.264 switched off in it.
        let log = rb.b.log();
        let line = log.lines().find(|l| l.contains("graphics pipeline capabilities trimmed"));
        assert!(line.is_some_and(|l| l.contains("avc_off: [") && !l.contains("avc_off: []")), "{log}");
        // The graphics pipeline is a dynamic channel every grant opens; the box audits each
        // dynamic channel the target asked for.
        let events = rb.b.audit();
        let dynamic: Vec<_> =
            audit_of(&events, "rdp_channels").into_iter().filter(|c| c["detail"]["kind"] == "dynamic").collect();
        let listed = |list: &str| -> Vec<serde_json::Value> {
            dynamic.iter().flat_map(|c| c["detail"][list].as_array().unwrap().clone()).collect()
        };
        assert!(listed("allowed").iter().any(|n| n == "Microsoft::Windows::RDS::Graphics"), "{events:?}");
        // It opens once a session, and FreeRDP's own was the one: never refused.
        assert!(!listed("blocked").iter().any(|n| n == "Microsoft::Windows::RDS::Graphics"), "{events:?}");
        // freerdp-shadow asks for the client's microphone: no grant opens audio input.
        assert!(listed("blocked").iter().any(|n| n == "AUDIO_INPUT"), "{events:?}");
    }
}

#[test]
fn nla_session_video_shows_what_the_target_showed() {
    red_then_blue_session(&[]);
}

#[test]
fn nla_session_video_with_the_graphics_pipeline() {
    red_then_blue_session(&["/gfx"]);
}

#[test]
fn a_target_that_dies_mid_session_leaves_a_whole_video() {
    let mut shadow = Shadow::start();
    shadow.screen.set_color("red");
    let rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 40, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    std::thread::sleep(Duration::from_secs(3));
    shadow.stop();
    let (st, _) = client.wait(Duration::from_secs(20));
    assert_ne!(st.code(), Some(STAYED_UP), "the client outlived its target");
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    assert_eq!(session["end_reason"], "target disconnected", "{session}");
    let (row, mp4) = video_of(&rb.b, session["id"].as_str().unwrap());
    assert_completed(&row);
    let d = duration(&mp4);
    let session_secs =
        unix_of(session["ended_at"].as_str().unwrap()) - unix_of(session["started_at"].as_str().unwrap());
    assert!((d - session_secs).abs() < 1.0, "video {d} s for a session of {session_secs} s");
    let seen = colours(&mp4);
    assert!(near(*seen.last().unwrap(), RED), "the last frame is the target's last screen: {seen:?}");
}

#[test]
fn a_box_killed_mid_session_keeps_every_change_of_the_screen() {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let mut rb = box_with_shadow(&shadow);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 60, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    std::thread::sleep(Duration::from_secs(2));
    shadow.screen.set_color("blue");
    screen_shows(&screen, &[BLUE], 10, |_| {});
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = now_unix();
    rb.crash_and_restart();
    let _ = client.wait(Duration::from_secs(20));
    let session =
        eventually(10, "the session recovered", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    assert_eq!(session["recovered"], true, "{session}");
    let (row, mp4) = video_of(&rb.b, session["id"].as_str().unwrap());
    assert_completed(&row);
    assert_eq!(row["recovered"], true, "{row}");
    let d = duration(&mp4);
    let lived = killed_at - unix_of(session["started_at"].as_str().unwrap());
    eprintln!("recovered video {d:.2} s of a session killed after {lived:.2} s");
    // Every change is in the file within about a second of the screen settling; after that a still
    // screen is written once a second, three frames behind the encoder and muxer, so the tail of
    // an unchanged screen may come up to ~3 s short.
    assert!(d > lived - 3.5 && d < lived + 0.5, "recovered video {d} s of a session killed after {lived} s");
    let seen = colours(&mp4);
    assert!(first(&seen, RED) < first(&seen, BLUE) && first(&seen, RED).is_some(), "{seen:?}");
    assert!(near(*seen.last().unwrap(), BLUE), "{seen:?}");
}

/// A session through the box to xrdp, whose desktop alternates red and blue every second: the
/// client runs `secs` with `extra`; `during` acts on the client's screen once the desktop shows.
/// Returns the finished video (and the box that holds it).
fn xrdp_video(secs: u32, extra: &[&str], during: impl FnOnce(&Xvfb)) -> (serde_json::Value, PathBuf, RdpBox) {
    let xrdp = Xrdp::start();
    let b = crate::rdp::box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01"], None);
    let rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@xrdp01", "alice-pw", secs, extra);
    screen_shows(&screen, &[RED, BLUE], 14, |_| {});
    during(&screen);
    let (st, log) = client.wait(Duration::from_secs(40));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    let (row, mp4) = video_of(&rb.b, session["id"].as_str().unwrap());
    assert_completed(&row);
    (row, mp4, rb)
}

#[test]
fn xrdp_session_video() {
    let (_, mp4, _box) = xrdp_video(16, &[], |_| {});
    let seen = colours(&mp4);
    let flips = seen.windows(2).filter(|w| near(w[0], RED) && near(w[1], BLUE)).count();
    assert!(flips >= 2, "the video follows the desktop's colour changes: {seen:?}");
    assert!(distinct_frames(&mp4) >= 4);
}

/// The client's window shrinks mid-session (`/dynamic-resolution`): xrdp resizes its desktop to
/// 1024x576 and reactivates the session at that size. The recording stays one video at the
/// first size (1024x768) with the new desktop letterboxed into it (a black band above and
/// below), and follows the desktop before and after.
#[test]
fn a_resized_xrdp_desktop_stays_one_video() {
    const BLACK: (u8, u8, u8) = (0, 0, 0);
    let (_, mp4, rb) = xrdp_video(30, &["/dynamic-resolution", "/size:1024x768"], |screen| {
        std::thread::sleep(Duration::from_secs(3));
        screen.resize_windows("xfreerdp", 1024, 576);
    });
    // Display control opens once a session: xrdp's own, before the resize, and never again
    // (a reactivation does not reopen it), so no Create Request for it was refused.
    let events = rb.b.audit();
    let dynamic: Vec<_> =
        audit_of(&events, "rdp_channels").into_iter().filter(|c| c["detail"]["kind"] == "dynamic").collect();
    let listed = |list: &str| -> Vec<serde_json::Value> {
        dynamic.iter().flat_map(|c| c["detail"][list].as_array().unwrap().clone()).collect()
    };
    let display = "Microsoft::Windows::RDS::DisplayControl";
    assert!(listed("allowed").iter().any(|n| n == display), "{events:?}");
    assert!(!listed("blocked").iter().any(|n| n == display), "{events:?}");
    assert_eq!(ffprobe(&mp4, "stream=codec_name,width,height"), "h264,1024,768", "one video at the first size");
    let top = colours_at(&mp4, "iw/4", "20");
    let middle = colours_at(&mp4, "iw/4", "ih/2+60");
    let desktop = |c: &(u8, u8, u8)| near(*c, RED) || near(*c, BLUE);
    let shown = top.iter().position(desktop).unwrap_or_else(|| panic!("the desktop at the top first: {top:?}"));
    let band = shown
        + top[shown..].iter().position(|c| near(*c, BLACK)).unwrap_or_else(|| panic!("a black band after: {top:?}"));
    assert!(top[band..].iter().all(|c| near(*c, BLACK)), "the band stays to the end: {top:?}");
    let after = &middle[band..];
    let flips = after.windows(2).filter(|w| desktop(&w[0]) && desktop(&w[1]) && !near(w[0], w[1])).count();
    assert!(after.len() >= 20 && flips >= 2, "the resized desktop goes on changing in the video: {after:?}");
}

/// The console plays the video through the box in Chromium: its activity bar, a click on a span,
/// skip idle over the session's idle gap and 32× (`tests/web/console.mjs`, step `video`).
#[test]
fn an_rdp_recording_plays_in_the_browser_through_the_box() {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let rb = box_with_shadow(&shadow);
    rb.b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    let screen = Xvfb::start();
    // The screen changes at the start, a second later, and six seconds after that; then it
    // stays still to the end: idle gaps for the player's skip idle.
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 14, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    std::thread::sleep(Duration::from_secs(1));
    shadow.screen.set_color("blue");
    screen_shows(&screen, &[BLUE], 10, |_| {});
    std::thread::sleep(Duration::from_secs(6));
    shadow.screen.set_color("red");
    let (st, log) = client.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}");
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    let id = session["id"].as_str().unwrap();
    let (row, mp4) = video_of(&rb.b, id);
    assert_completed(&row);
    // Whether the video itself opens black (the target had drawn nothing yet): the page must
    // then show it from its first picture.
    let seen = colours(&mp4);
    let black = seen.iter().take_while(|c| near(**c, (0, 0, 0))).count() as f64 / 4.0;
    eprintln!("the video opens with {black:.2} s of black; first colours {:?}", &seen[..seen.len().min(12)]);
    // The console's API hands the page the video's activity: spans in order, with the idle gap.
    let mut web = crate::web::Web::new(&rb.b);
    assert_eq!(web.login("audrey", "audrey-passwd").status, 200);
    let detail = web.get(&format!("/api/v1/sessions/{id}")).json();
    let recording = &detail["recordings"][0];
    eprintln!("frames {}, activity {}, duration {}", recording["frames"], recording["activity"], recording["duration"]);
    assert!(recording["frames"].as_u64().is_some_and(|f| f > 0), "{recording}");
    let spans: Vec<(f64, f64)> = serde_json::from_value(recording["activity"].clone()).expect("activity spans");
    assert!(spans.len() >= 2 && spans.iter().all(|(a, b)| a < b), "{spans:?}");
    let widest = spans.windows(2).map(|w| w[1].0 - w[0].1).fold(0.0, f64::max);
    assert!(widest > 4.0, "an idle gap of ~6 s between changes: {spans:?}");
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", rb.b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "session": id,
        "width": 1024,
        "height": 768,
        "artifacts": artifacts,
    });
    crate::web::browser("video", &config);
    assert!(artifacts.join("video-rdp-video.png").exists(), "screenshot kept");
    let kinds = rb.b.audit_kinds();
    assert!(kinds.iter().any(|k| k == "web_recording_played"), "{kinds:?}");
    // In the store as a video, and exported as evidence that verifies offline.
    let uploaded = eventually(30, "the video is uploaded", || {
        rb.b.audit().into_iter().find(|e| e["kind"] == "recording_uploaded" && e["detail"]["recording"] == row["id"])
    });
    assert!(uploaded["detail"]["key"].as_str().unwrap().ends_with(".mp4"), "{uploaded}");
    let bundle = rb.b.dir.path().join("bundle");
    rb.b.ok(&["evidence", "export", id, "--out", bundle.to_str().unwrap()], None);
    let video = bundle.join(format!("{}.mp4", row["id"].as_str().unwrap()));
    assert_eq!(ffprobe(&video, "stream=codec_name"), "h264");
    let out = crate::evidence::verify(&bundle);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn an_admin_watches_a_running_rdp_session_and_ends_it() {
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let rb = box_with_shadow(&shadow);
    rb.b.ok(&["user", "add", "adam", "--password-stdin", "--role", "admin"], Some("adam-passwd\n"));
    rb.b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 90, &[]);
    screen_shows(&screen, &[RED], 10, |_| {});
    let session =
        eventually(10, "the session is running", || rb.b.sessions().into_iter().find(|s| s["ended_at"].is_null()));
    let id = session["id"].as_str().unwrap().to_owned();
    let recording = eventually(10, "its video is being written", || {
        rb.b.recordings().into_iter().find(|r| r["session_id"] == id.as_str() && r["status"] == "recording")
    });
    // Watching a running session is the admins' live view, not an auditor's playback.
    let mut auditor = crate::web::Web::new(&rb.b);
    assert_eq!(auditor.login("audrey", "audrey-passwd").status, 200);
    let refused = auditor.get(&format!("/api/v1/recordings/{}/content", recording["id"].as_str().unwrap()));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", rb.b.web_port),
        "admin": ["adam", "adam-passwd"],
        "session": id,
        "artifacts": artifacts,
    });
    crate::web::browser("rdp-live", &config);
    let (st, log) = client.wait(Duration::from_secs(20));
    assert_ne!(st.code(), Some(STAYED_UP), "the session outlived its termination: {log}");
    let ended = eventually(20, "the session ended", || {
        rb.b.sessions().into_iter().find(|s| s["id"] == id.as_str() && !s["ended_at"].is_null())
    });
    assert_eq!(ended["end_reason"], "an administrator ended the session from the console");
    let (row, mp4) = video_of(&rb.b, &id);
    assert_completed(&row);
    assert!(duration(&mp4) > 3.0);
    let kinds = rb.b.audit_kinds();
    assert_eq!(kinds.iter().filter(|k| *k == "web_live_viewed").count(), 1, "one audit event per viewing: {kinds:?}");
}
