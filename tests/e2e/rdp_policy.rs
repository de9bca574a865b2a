//! RDP policy end to end, through the box to xrdp with stock `xfreerdp`: the clipboard crosses
//! only on a grant that allows it (read back with `xclip` on both X displays, the client's Xvfb
//! and the target's session, whose clipboard xrdp's `chansrv` bridges), and an input flood
//! (`xdotool` typing at full speed) during full-screen redraws leaves a recording whose stated
//! gaps agree between the index, the audit log and the signed manifest.

use crate::harness::{assert_completed, eventually};
use crate::rdp::{BLUE, DISPLAY_FILE, RED, RdpBox, STAYED_UP, XRDP_USER, Xrdp, Xvfb, audit_of, screen_shows};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MAGENTA: (u8, u8, u8) = (255, 0, 255);

/// An X display to act on: `DISPLAY`, and the authority file when it needs one.
struct Display {
    display: String,
    xauthority: Option<PathBuf>,
}

impl Display {
    fn client(screen: &Xvfb) -> Self {
        Self { display: screen.display.clone(), xauthority: None }
    }

    /// The xrdp session's own display, as its `.xsession` wrote it once it started.
    fn target() -> Self {
        let file = PathBuf::from(format!("/home/{XRDP_USER}/{DISPLAY_FILE}"));
        let text = eventually(20, "the xrdp session to say where it runs", || std::fs::read_to_string(&file).ok());
        let mut lines = text.lines();
        let display = lines.next().unwrap().to_owned();
        assert!(display.starts_with(':'), "{text:?}");
        Self { display, xauthority: lines.next().map(PathBuf::from) }
    }

    /// Whether an X server answers on this display.
    fn alive(&self) -> bool {
        self.command("xdotool")
            .arg("getdisplaygeometry")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display);
        match &self.xauthority {
            Some(a) => c.env("XAUTHORITY", a),
            None => c.env_remove("XAUTHORITY"),
        };
        c
    }

    /// Owns the CLIPBOARD selection with `text` (xclip serves it from the background until
    /// another client takes the selection or the display goes away).
    fn copy(&self, text: &str) {
        let mut c = self
            .command("xclip")
            .args(["-selection", "clipboard", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("xclip (apt install xclip)");
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "xclip -i failed on {}", self.display);
    }

    /// What pasting the CLIPBOARD selection gives (empty when no one owns it or it has no text).
    fn paste(&self) -> String {
        let out = self
            .command("timeout")
            .args(["5", "xclip", "-selection", "clipboard", "-o"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Polls `to`'s clipboard for `secs`: whether `text` arrived there.
fn arrives(to: &Display, text: &str, secs: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if to.paste().contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// One session through the box to xrdp on the grant `alice` has now: copies a distinctive
/// string on the client and pastes on the target, then the other way; returns what crossed
/// (client → target, target → client) and the box's audit events.
fn clipboard_session(rb: &RdpBox, tag: &str, wait: u64) -> ((bool, bool), Vec<serde_json::Value>) {
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@xrdp01", "alice-pw", 40, &["+clipboard"]);
    screen_shows(&screen, &[RED, BLUE], 20, |_| {});
    let (local, target) = (Display::client(&screen), Display::target());
    // The session's clipboard bridge (chansrv) starts beside the desktop: let it settle.
    std::thread::sleep(Duration::from_secs(2));
    let up = format!("witness-clip-{tag}-up-{}", std::process::id());
    let down = format!("witness-clip-{tag}-down-{}", std::process::id());
    local.copy(&up);
    assert!(local.paste().contains(&up), "the client's own clipboard holds the string");
    let crossed_up = arrives(&target, &up, wait);
    target.copy(&down);
    assert!(target.paste().contains(&down), "the target's own clipboard holds the string");
    let crossed_down = arrives(&local, &down, wait);
    // A clipboard that stays shut must not be the client's doing: it is still up and announcing.
    let box_log = rb.b.log();
    let (st, log) = client.end_now();
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {box_log}");
    // The desktop ends with the client's disconnection (xrdp's `KillDisconnected`), and the
    // next session starts a new one that says where it runs; one that lingers (a session
    // manager set up otherwise) is reconnected to as it is.
    let start = Instant::now();
    while target.alive() && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    if !target.alive() {
        let _ = std::fs::remove_file(format!("/home/{XRDP_USER}/{DISPLAY_FILE}"));
    }
    ((crossed_up, crossed_down), rb.b.audit())
}

/// The static-channel decision of the session `n` (0-based) in the audit log.
fn static_channels(events: &[serde_json::Value], n: usize) -> (Vec<String>, Vec<String>) {
    let decisions: Vec<_> =
        audit_of(events, "rdp_channels").into_iter().filter(|c| c["detail"]["kind"] == "static").collect();
    let d = decisions.get(n).unwrap_or_else(|| panic!("no static channel decision {n}: {decisions:?}"));
    let names = |k: &str| d["detail"][k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    (names("allowed"), names("blocked"))
}

/// With the clipboard granted a string crosses both ways (the control: the test can see a
/// clipboard that works); with `--no-clipboard` nothing crosses either way, although the client
/// announces its `cliprdr` channel and offers its clipboard all the same.
#[test]
fn the_clipboard_crosses_only_on_a_grant_that_allows_it() {
    let xrdp = Xrdp::start();
    let b = crate::rdp::box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01"], None);
    let rb = RdpBox::serve(b);

    let (crossed, events) = clipboard_session(&rb, "granted", 15);
    assert_eq!(crossed, (true, true), "the clipboard grant's control: both ways cross\nbox: {}", rb.b.log());
    let (allowed, _) = static_channels(&events, 0);
    assert!(allowed.iter().any(|c| c == "cliprdr"), "{allowed:?}");

    rb.b.ok(&["grant", "alice", "xrdp01", "--no-clipboard"], None);
    let (crossed, events) = clipboard_session(&rb, "refused", 8);
    assert_eq!(crossed, (false, false), "nothing crosses on a grant without the clipboard");
    let (_, blocked) = static_channels(&events, 1);
    assert!(blocked.iter().any(|c| c == "cliprdr"), "the client announced it and was refused: {blocked:?}");

    // What the grant opens is listed with it; the device switches are kept one by one.
    let rdp_of = |b: &crate::harness::Box| {
        let list = b.json(&["grant", "list", "--json"]);
        let g = list.as_array().unwrap().iter().find(|g| g["user"] == "alice" && g["target"] == "xrdp01").cloned();
        g.unwrap_or_else(|| panic!("{list}"))["rdp"].clone()
    };
    let off = serde_json::json!({"clipboard": false, "drives": false, "usb": false, "camera": false, "audio_input": false, "audio": false});
    assert_eq!(rdp_of(&rb.b), off);
    rb.b.ok(&["grant", "alice", "xrdp01", "--usb", "--audio-input"], None);
    let on = serde_json::json!({"clipboard": true, "drives": false, "usb": true, "camera": false, "audio_input": true, "audio": false});
    assert_eq!(rdp_of(&rb.b), on);
    let text = rb.b.ok(&["grant", "list"], None);
    assert!(
        text.lines().any(|l| l.starts_with("alice  xrdp01  rdp") && l.ends_with("clipboard usb audio-input")),
        "{text}"
    );
}

/// One session through the box to xrdp with FreeRDP's sound on (`/sound:sys:fake`: its `rdpsnd`
/// channel, played to nowhere); returns the client's exit status and the box's audit events.
fn sound_session(rb: &RdpBox) -> (Option<i32>, String, Vec<serde_json::Value>) {
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@xrdp01", "alice-pw", 25, &["/sound:sys:fake"]);
    screen_shows(&screen, &[RED, BLUE], 20, |_| {});
    // The sound channel's formats, quality mode and training go both ways as the desktop's
    // session starts (chansrv); a few seconds past the first picture cover them.
    std::thread::sleep(Duration::from_secs(8));
    let (st, log) = client.end_now();
    // Let the desktop go (xrdp's `KillDisconnected`), as the clipboard sessions do.
    let target = Display::target();
    let start = Instant::now();
    while target.alive() && start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(200));
    }
    if !target.alive() {
        let _ = std::fs::remove_file(format!("/home/{XRDP_USER}/{DISPLAY_FILE}"));
    }
    (st.code(), log, rb.b.audit())
}

/// Sound is a redirection class the grant opens (`--audio`): on a grant without it the client's
/// `rdpsnd` is refused (sound out was a pipe a program on the target could open by name); on a
/// grant with it, xrdp's and FreeRDP's sound messages (formats, quality mode, training and
/// their answers) pass the box's strict reader and the session stays up. (It caught the reader
/// refusing xrdp's Training PDU, whose wPackSize counts the body, not the whole PDU.)
#[test]
fn sound_opens_only_with_the_grants_audio() {
    let xrdp = Xrdp::start();
    let b = crate::rdp::box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01"], None);
    let rb = RdpBox::serve(b);

    let (code, log, events) = sound_session(&rb);
    assert_eq!(code, Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let (allowed, blocked) = static_channels(&events, 0);
    assert!(blocked.iter().any(|c| c == "rdpsnd"), "the client announced rdpsnd: {allowed:?} {blocked:?}");
    assert!(!allowed.iter().any(|c| c == "rdpsnd"), "{allowed:?}");

    rb.b.ok(&["grant", "alice", "xrdp01", "--audio"], None);
    let list = rb.b.json(&["grant", "list", "--json"]);
    let g = list.as_array().unwrap().iter().find(|g| g["user"] == "alice").cloned().unwrap();
    assert_eq!(g["rdp"]["audio"], true, "{list}");
    let (code, log, events) = sound_session(&rb);
    let refused = audit_of(&events, "rdp_policy_refused");
    assert!(refused.is_empty(), "the sound session was refused: {refused:?}\nbox: {}", rb.b.log());
    assert_eq!(code, Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let (allowed, _) = static_channels(&events, 1);
    assert!(allowed.iter().any(|c| c == "rdpsnd"), "{allowed:?}");
}

/// A program in the target session opens a sound channel by name through xrdpapi
/// (`WTSVirtualChannelOpenEx(WTS_CURRENT_SESSION, "AUDIO_PLAYBACK_DVC",
/// WTS_CHANNEL_OPTION_DYNAMIC)`, from Python's ctypes), stock FreeRDP with sound on accepts it,
/// and the program writes a file into it: the box reads the channel as MS-RDPEA, the file is no
/// sound message, and the session ends with the reason naming the channel, in the audit log,
/// with its recording complete (red team h-red17i's raw pipe, end to end).
#[test]
fn a_program_on_the_target_cannot_pipe_a_file_through_a_sound_channel() {
    let xrdp = Xrdp::start();
    let b = crate::rdp::box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01", "--audio"], None);
    let rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@xrdp01", "alice-pw", 40, &["/sound:sys:fake"]);
    screen_shows(&screen, &[RED, BLUE], 20, |_| {});
    let target = Display::target();
    std::thread::sleep(Duration::from_secs(2));
    let program = r#"
import ctypes, sys, time
api = ctypes.CDLL("/usr/lib/x86_64-linux-gnu/xrdp/libxrdpapi.so.0")
api.WTSVirtualChannelOpenEx.restype = ctypes.c_void_p
api.WTSVirtualChannelOpenEx.argtypes = [ctypes.c_uint, ctypes.c_char_p, ctypes.c_uint]
api.WTSVirtualChannelWrite.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)]
channel = api.WTSVirtualChannelOpenEx(0xFFFFFFFF, b"AUDIO_PLAYBACK_DVC", 1)
if not channel:
    print("not opened")
    sys.exit(2)
data = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 16
written = ctypes.c_uint(0)
print("write", api.WTSVirtualChannelWrite(channel, data, len(data), ctypes.byref(written)), written.value)
sys.stdout.flush()
time.sleep(5)
"#;
    let out = target.command("python3").args(["-c", program]).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(said.starts_with("write"), "the program did not get its channel: {said}\nbox: {}", rb.b.log());
    let (st, log) = client.wait(Duration::from_secs(60));
    assert_ne!(st.code(), Some(STAYED_UP), "the session stayed up: {log}\nbox: {}", rb.b.log());
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    let events = rb.b.audit();
    let refused = audit_of(&events, "rdp_policy_refused");
    // The reason names the channel (`witness_rdp_core::messages::AUDIO_REFUSED`).
    let names = |e: &&serde_json::Value| {
        e["detail"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the sound channel (rdpsnd or AUDIO_PLAYBACK_DVC)"))
    };
    assert!(refused.iter().any(|e| names(e) && e["detail"]["from"] == "target"), "{refused:?}\nbox: {}", rb.b.log());
    let dynamic: Vec<_> =
        audit_of(&events, "rdp_channels").into_iter().filter(|c| c["detail"]["kind"] == "dynamic").collect();
    assert!(dynamic.iter().any(|c| c["detail"]["allowed"].to_string().contains("AUDIO_PLAYBACK_DVC")), "{dynamic:?}");
    let (row, _) = crate::rdp_video::video_of(&rb.b, session["id"].as_str().unwrap());
    assert_completed(&row);
}

/// Keys typed at full speed on the client (`xdotool type --delay 0`) while the target redraws its
/// whole screen as fast as `xsetroot` can: every key reaches the target, in order (a small
/// `xterm` in the corner of the target's desktop writes them to a file), and whatever the
/// recording missed is stated the same way in the index (`missed_screen_updates`), the audit
/// log (`recording_gaps`) and the signed manifest (a gap), or nowhere when it missed nothing.
#[test]
fn an_input_flood_during_full_screen_redraws_is_recorded_or_stated() {
    const KEYS: usize = 6000;
    let xrdp = Xrdp::start();
    let b = crate::rdp::box_with_xrdp(&xrdp);
    b.ok(&["grant", "alice", "xrdp01"], None);
    let rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client_started = Instant::now();
    let mut client = rb.client(&screen, "alice@xrdp01", "alice-pw", 50, &[]);
    screen_shows(&screen, &[RED, BLUE], 20, |_| {});
    let (local, target) = (Display::client(&screen), Display::target());

    let typed = rb.b.dir.path().join("typed");
    let mut term = target
        .command("xterm")
        .args(["-geometry", "60x5+0+0", "-e", "sh", "-c"])
        .arg(format!("stty -icanon -echo; exec cat > {}", typed.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xterm (apt install xterm)");
    eventually(10, "the target's xterm to start", || typed.exists().then_some(()));
    let mut redraw = target
        .command("sh")
        .args(["-c", "while :; do xsetroot -solid red; xsetroot -solid blue; xsetroot -solid green; done"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // No window manager on either side: the keyboard goes to the window under the pointer, the
    // client's window on its display and, once the client sent the move, the xterm on the target.
    let st = local.command("xdotool").args(["mousemove", "30", "30"]).status().expect("xdotool");
    assert!(st.success());
    std::thread::sleep(Duration::from_secs(2));
    let text: String = (0..KEYS).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let started = Instant::now();
    let st = local.command("xdotool").args(["type", "--delay", "0", &text]).status().unwrap();
    assert!(st.success(), "xdotool type failed");
    let typing = started.elapsed();
    let got = eventually(30, "every key to reach the target", || {
        let got = std::fs::read_to_string(&typed).unwrap_or_default();
        (got.len() >= KEYS).then_some(got)
    });
    eprintln!("{KEYS} keys typed in {typing:?} during full-screen redraws");
    assert_eq!(got, text, "keys lost, added or reordered on the way");
    crate::harness::kill_tree(redraw.id());
    let _ = redraw.wait();
    crate::harness::kill_tree(term.id());
    let _ = term.wait();
    // Then a still screen (a window over the whole desktop, magenta).
    let mut still = target
        .command("xterm")
        .args(["-geometry", "400x200+0+0", "-bg", "magenta", "-fg", "magenta", "-e", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    screen_shows(&screen, &[MAGENTA], 15, |_| {});
    // What the client shows from then on until its session ends (the target may still redraw),
    // up to two seconds before `timeout` ends it: a client being stopped takes its window away
    // and the display's black root shows for a moment.
    let mut shown = vec![MAGENTA];
    while client.running() && client_started.elapsed() < Duration::from_secs(48) {
        let (rgb, share) = crate::rdp::dominant_color(&screen.snapshot());
        if share > 0.9 && shown.last() != Some(&rgb) {
            shown.push(rgb);
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    let (st, log) = client.wait(Duration::from_secs(70));
    crate::harness::kill_tree(still.id());
    let _ = still.wait();
    assert_eq!(st.code(), Some(STAYED_UP), "{log}");
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    let session_id = session["id"].as_str().unwrap();
    let row = eventually(30, "the session's video to be sealed", || {
        rb.b.recordings().into_iter().find(|r| {
            r["session_id"] == session_id
                && r["status"] != "recording"
                && r["status"] != "processing"
                && r["seal_error"].is_null()
        })
    });
    assert_completed(&row);
    let id = row["id"].as_str().unwrap();
    let bundle = rb.b.dir.path().join("bundle");
    eventually(30, "the evidence bundle", || {
        let _ = std::fs::remove_dir_all(&bundle);
        rb.b.cli(&["evidence", "export", session_id, "--out", bundle.to_str().unwrap()], None)
            .status
            .success()
            .then_some(())
    });
    let verified = crate::evidence::verify(&bundle);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join(format!("{id}.manifest.json"))).unwrap()).unwrap();

    // The three places agree on what the recording missed.
    let missed = row["missed_screen_updates"].as_u64().unwrap_or(0);
    let stated: Vec<&str> = manifest["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["reason"].as_str())
        .filter(|r| r.contains("screen updates"))
        .collect();
    let events = rb.b.audit();
    let audited: Vec<_> =
        audit_of(&events, "recording_gaps").into_iter().filter(|e| e["session_id"] == session_id).collect();
    eprintln!("missed_screen_updates {missed}; manifest gaps {stated:?}; audit {audited:?}");
    if missed == 0 {
        assert!(stated.is_empty(), "the manifest states a gap the index does not know: {stated:?}");
        assert!(audited.is_empty(), "the audit log states a gap the index does not know: {audited:?}");
    } else {
        assert_eq!(stated.len(), 1, "{manifest}");
        assert!(stated[0].contains(&format!("missed {missed} screen updates")), "{stated:?} vs {missed}");
        // The storm ends long before the session: a redraw after the last gap was seen whole.
        assert!(stated[0].contains("the target redrew the whole screen after each"), "{stated:?}");
        assert_eq!(audited.len(), 1, "{audited:?}");
        let d = &audited[0]["detail"];
        assert_eq!(d["recording_id"], id);
        let sum = d["skipped_screen_pdus"].as_u64().unwrap() + d["undecodable_screen_pdus"].as_u64().unwrap();
        assert_eq!(sum, missed, "{d}");
        assert_eq!(d["unverified"], false, "{d}");
    }
    let client_end = *shown.last().unwrap();
    let log = rb.b.log();
    // The video ends on what the client showed last (its last second, sampled four times), at
    // the screen's centre: the pointer drawn into the video is at (30, 30), where the client put
    // it. (Before issue 17's fix the decoder lost pointer updates and moves during the storm, and
    // drew a stale pointer at the centre: that read as "the video ends on grey".)
    let mp4 = rb.b.dir.path().join(format!("{id}.mp4"));
    rb.b.ok(&["recordings", "export", id, "--out", mp4.to_str().unwrap()], None);
    let seen = crate::rdp_video::colours_at(&mp4, "iw/2", "ih/2");
    assert!(seen.len() >= 8, "{seen:?}");
    let end = &seen[seen.len() - 4..];
    let tail = &seen[seen.len().saturating_sub(24)..];
    let decoding: Vec<&str> = log.lines().filter(|l| l.contains("rdp_recording") || l.contains("video")).collect();
    let decoding = decoding[decoding.len().saturating_sub(40)..].join("\n");
    eprintln!("the client showed {shown:?} after the storm; the video ends on {end:?}");
    assert!(
        end.iter().all(|c| crate::rdp_video::near(*c, client_end)),
        "the video ends on {tail:?}, the client on {client_end:?} (after the storm it showed {shown:?}); \
         gaps {audited:?}\nthe box's recording:\n{decoding}"
    );
}
