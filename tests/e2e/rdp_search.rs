//! Finding RDP sessions by what happened in them, end to end: a real `xfreerdp` through the box
//! to `freerdp-shadow-cli`. Typed keys: the test types into the client's window with `xdotool`
//! at a known moment (the keys travel as RDP input through the box to the target, whose screen
//! stays blank); with `[recording] rdp_keystrokes = true` the typed phrase is in the session's
//! key track and `witness search` finds the session at that moment, with it off (the default)
//! the phrase is recorded nowhere. On-screen text: the target shows an xterm in which the test
//! types a word on the target's own display at a known moment; after the session the box reads
//! the video (Tesseract) and `witness search` finds the session within 2 s of that moment, with
//! the word's place on the screen. The words are never in the index (or its WAL) in clear.

use crate::harness::{Box, assert_completed, eventually};
use crate::rdp::{RdpBox, STAYED_UP, Shadow, Xvfb, add_shadow_target};
use crate::rdp_video::{now_unix, unix_of};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An xterm filling the target's screen, in a font large enough to read.
fn xterm_on(screen: &Xvfb) -> Child {
    Command::new("xterm")
        .args(["-geometry", "100x30+0+0", "-fa", "DejaVu Sans Mono", "-fs", "14", "-bg", "white", "-fg", "black"])
        .env("DISPLAY", screen.display())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting xterm (apt install xterm)")
}

/// Types `text` (then Enter) into whatever has the focus on `screen` (the xfreerdp window, or
/// the xterm).
fn type_into(screen: &Xvfb, text: &str) {
    for args in [&["type", "--delay", "40", text][..], &["key", "Return"]] {
        let st = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", screen.display())
            .status()
            .expect("xdotool (apt install xdotool)");
        assert!(st.success(), "xdotool {args:?} failed");
    }
}

/// Every file under `dir` holding `needle`, as bytes (the index, its WAL, recordings, logs...).
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// One RDP session in which the user types `phrase` a few seconds in; returns the box (stopped,
/// so the index and its WAL are as the daemon left them), the session, and when the typing
/// started, in seconds from the session's start.
fn session_typing(phrase: &str, keystrokes: bool) -> (RdpBox, serde_json::Value, f64) {
    let shadow = Shadow::start();
    let b = Box::new();
    if keystrokes {
        // The default witness.toml ends in its [recording] section.
        let path = b.data().join("witness.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}rdp_keystrokes = true\n")).unwrap();
    }
    add_shadow_target(&b, &shadow, &[]);
    b.ok(&["grant", "alice", "nla01"], None);
    let rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 16, &[]);
    // The session is up once the box has its video.
    eventually(15, "the session's video to start", || {
        rb.b.recordings().into_iter().find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(".mp4")))
    });
    std::thread::sleep(Duration::from_secs(3));
    let typed_at = now_unix();
    type_into(&screen, phrase);
    let (st, log) = client.wait(Duration::from_secs(40));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    // Sealing and indexing run after the session; wait until every recording is settled.
    eventually(30, "the session's recordings to finish", || {
        let rows = rb.b.recordings();
        rows.iter().all(|r| r["status"] != "recording" && r["status"] != "processing").then_some(())
    });
    let started = unix_of(session["started_at"].as_str().unwrap());
    (rb, session, typed_at - started)
}

fn search(b: &Box, words: &str) -> Vec<serde_json::Value> {
    b.json(&["search", words, "--json"]).as_array().unwrap().clone()
}

#[test]
fn typed_keys_are_found_by_search_when_the_box_records_them() {
    let (mut rb, session, typed_at) = session_typing("echo zanzibar quokkafish", true);
    let keys: Vec<_> = rb.b.recordings().into_iter().filter(|r| r["channel"] == "keys").collect();
    assert_eq!(keys.len(), 1, "one key track: {:?}", rb.b.recordings());
    assert_completed(&keys[0]);
    // The key track is a cast the box exports like any other: what was typed, in order.
    let exported = rb.b.export(keys[0]["id"].as_str().unwrap());
    let typed: String = exported
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<(f64, String, String)>(l).unwrap())
        .filter(|(_, kind, _)| kind == "o")
        .map(|(_, _, text)| text)
        .collect();
    assert!(typed.contains("echo zanzibar quokkafish\r\n"), "{typed:?}");
    let hits = eventually(20, "the key track to be indexed", || {
        let hits = search(&rb.b, "quokkafish zanzibar");
        (!hits.is_empty()).then_some(hits)
    });
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(hit["session_id"], session["id"], "{hit}");
    assert_eq!(hit["protocol"], "rdp", "{hit}");
    assert_eq!(hit["source"], "keys", "{hit}");
    assert_eq!(hit["recording_id"], keys[0]["id"], "{hit}");
    assert!(hit["snippet"].as_str().unwrap().contains("echo zanzibar quokkafish"), "{hit}");
    let at = hit["at"].as_f64().unwrap();
    eprintln!("typed at {typed_at:.2} s into the session, found at {at:.2} s");
    assert!((at - typed_at).abs() < 2.0, "hit at {at} s, typed at {typed_at} s");
    // Words that were not typed find nothing; all words are required.
    assert!(search(&rb.b, "zanzibar notypedword").is_empty());
    // Searching is audited without the words.
    let audit = rb.b.audit();
    let event = audit.iter().find(|e| e["kind"] == "cli_search").expect("cli_search audited");
    assert!(!event.to_string().contains("zanzibar"), "{event}");
    // Nothing under the data dir holds the words in clear: not the index, its WAL, the
    // recordings or the log.
    rb.stop();
    assert_eq!(files_holding(&rb.b.dir.path().join("data"), b"quokkafish"), Vec::<String>::new());
    assert!(!rb.b.log().contains("quokkafish"));
}

#[test]
fn typed_keys_are_recorded_nowhere_by_default() {
    let (mut rb, _session, _) = session_typing("echo marmalade wombatcrane", false);
    let rows = rb.b.recordings();
    assert_eq!(rows.len(), 1, "the video only: {rows:?}");
    assert!(rows[0]["path"].as_str().unwrap().ends_with(".mp4"), "{rows:?}");
    assert!(search(&rb.b, "wombatcrane").is_empty());
    rb.stop();
    assert_eq!(files_holding(&rb.b.dir.path().join("data"), b"wombatcrane"), Vec::<String>::new());
    assert!(!rb.b.log().contains("wombatcrane"));
}

#[test]
fn text_shown_on_the_targets_screen_is_found_by_search_at_its_moment() {
    let shadow = Shadow::start();
    let mut xterm = xterm_on(&shadow.screen);
    // The xterm has the target's keyboard focus (no window manager: focus it by hand). Found
    // before it is mapped, focusing it fails (BadMatch): tried again.
    let focused = (0..20).any(|_| {
        let st = Command::new("xdotool")
            .args(["search", "--sync", "--class", "XTerm", "windowfocus", "--sync"])
            .env("DISPLAY", shadow.screen.display())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        st.success() || {
            std::thread::sleep(Duration::from_millis(250));
            false
        }
    });
    assert!(focused, "focusing the xterm failed");
    let b = Box::new();
    add_shadow_target(&b, &shadow, &[]);
    b.ok(&["grant", "alice", "nla01"], None);
    let mut rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 14, &[]);
    eventually(15, "the session's video to start", || {
        rb.b.recordings().into_iter().find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(".mp4")))
    });
    std::thread::sleep(Duration::from_secs(4));
    // Typed on the target itself: these keys never pass the box, only the screen does.
    let typed_at = now_unix();
    type_into(&shadow.screen, "echo pelicanharbor");
    let (st, log) = client.wait(Duration::from_secs(40));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let _ = xterm.kill();
    let _ = xterm.wait();
    let session =
        eventually(10, "the session ended", || rb.b.sessions().into_iter().find(|s| !s["ended_at"].is_null()));
    let video = eventually(120, "the video's screen text to be read", || {
        let v = rb.b.recordings().into_iter().find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(".mp4")))?;
        let state = v["text"]["state"].as_str().unwrap_or("").to_owned();
        assert_ne!(state, "failed", "{v}\n{}", rb.b.log());
        (state == "done").then_some(v)
    });
    let read = rb.b.log().lines().find(|l| l.contains("screen text read")).map(str::to_owned);
    eprintln!("{}", read.unwrap_or_default());
    let typed_at = typed_at - unix_of(session["started_at"].as_str().unwrap());
    let hits = search(&rb.b, "pelicanharbor");
    assert_eq!(hits.len(), 1, "{hits:?}\n{}", rb.b.log());
    let hit = &hits[0];
    assert_eq!((&hit["session_id"], &hit["recording_id"]), (&session["id"], &video["id"]), "{hit}");
    assert_eq!((hit["protocol"].as_str(), hit["source"].as_str()), (Some("rdp"), Some("screen")), "{hit}");
    assert!(hit["snippet"].as_str().unwrap().to_lowercase().contains("pelicanharbor"), "{hit}");
    let at = hit["at"].as_f64().unwrap();
    eprintln!("typed on the target at {typed_at:.2} s into the session, read off the screen at {at:.2} s");
    assert!((at - typed_at).abs() < 2.0, "hit at {at} s, typed at {typed_at} s");
    // Where the line was: inside the 1024x768 desktop, in the xterm's top rows (it starts at the
    // top left and the word was typed on its first lines).
    let rect: Vec<u64> = hit["rect"].as_array().expect("a rectangle").iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(rect[0] + rect[2] <= 1024 && rect[1] + rect[3] <= 768 && rect[2] > 50 && rect[3] > 5, "{rect:?}");
    assert!(rect[1] < 200, "{rect:?}");
    // The console finds it too and opens the video at that moment, the line outlined
    // (Chromium, tests/web/console.mjs step `screen-hit`).
    rb.b.ok(&["user", "add", "audrey", "--password-stdin", "--role", "auditor"], Some("audrey-passwd\n"));
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-artifacts");
    let config = serde_json::json!({
        "base": format!("https://127.0.0.1:{}", rb.b.web_port),
        "auditor": ["audrey", "audrey-passwd"],
        "word": "pelicanharbor",
        "at": at,
        "rect": rect,
        "artifacts": artifacts,
    });
    // The timeline: whoever may play the video sees its thumbnails (one per settled picture,
    // among them the one the word was read from), audited as part of the playing; another
    // `user` sees neither the list nor a picture.
    let thumbs = format!("/api/v1/recordings/{}/thumbnails", video["id"].as_str().unwrap());
    let mut audrey = crate::web::Web::new(&rb.b);
    assert_eq!(audrey.login("audrey", "audrey-passwd").status, 200);
    let list = audrey.get(&thumbs);
    assert_eq!(list.status, 200, "{}", list.body);
    let times: Vec<f64> = serde_json::from_str(&list.body).unwrap();
    assert!(!times.is_empty() && times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times.iter().any(|t| (t - at).abs() < 0.01), "the word's picture has a thumbnail: {times:?}, hit at {at}");
    let png = audrey.get(&format!("{thumbs}/{}", times.len() - 1));
    assert_eq!(png.status, 200);
    assert!(
        png.headers.to_lowercase().contains("content-type: image/png") && png.body.contains("PNG"),
        "{}",
        png.headers
    );
    assert_eq!(audrey.get(&format!("{thumbs}/{}", times.len())).status, 404, "past the last");
    let played: Vec<_> =
        rb.b.audit()
            .into_iter()
            .filter(|e| e["kind"] == "web_recording_played" && e["detail"]["recording_id"] == video["id"])
            .collect();
    assert_eq!(played.len(), 1, "seeing the timeline is playing, audited once: {played:?}");
    assert_eq!(played[0]["user"], "audrey");
    rb.b.ok(&["user", "add", "ursula", "--password-stdin", "--role", "user"], Some("ursula-passwd\n"));
    let mut ursula = crate::web::Web::new(&rb.b);
    assert_eq!(ursula.login("ursula", "ursula-passwd").status, 200);
    assert_eq!(ursula.get(&thumbs).status, 404);
    assert_eq!(ursula.get(&format!("{thumbs}/0")).status, 404);
    crate::web::browser("screen-hit", &config);
    rb.stop();
    assert_eq!(files_holding(&rb.b.dir.path().join("data"), b"pelicanharbor"), Vec::<String>::new());
    assert!(!rb.b.log().contains("pelicanharbor"));
}

/// Words a script in the target's xterm prints, one a second.
const WORDS: &[&str] = &[
    "granite", "meadow", "lantern", "orchid", "copper", "willow", "falcon", "harvest", "glacier", "thimble", "saffron",
    "juniper", "marble", "cobalt", "lilac", "quartz", "walnut", "ember", "velvet", "tundra", "pebble", "canyon",
    "meteor", "bramble",
];

#[test]
fn a_box_killed_while_reading_screen_text_resumes_where_it_stopped() {
    let shadow = Shadow::start();
    let script = format!(
        "import time\ntime.sleep(4)\nfor i, w in enumerate({WORDS:?}):\n    print(f'step {{i:02d}} {{w}}', flush=True)\n    time.sleep(1)\ntime.sleep(600)"
    );
    let mut xterm = Command::new("xterm")
        .args(["-geometry", "100x40+0+0", "-fa", "DejaVu Sans Mono", "-fs", "13", "-bg", "white", "-fg", "black"])
        .args(["-e", "python3", "-u", "-c", &script])
        .env("DISPLAY", shadow.screen.display())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let b = Box::new();
    add_shadow_target(&b, &shadow, &[]);
    b.ok(&["grant", "alice", "nla01"], None);
    let mut rb = RdpBox::serve(b);
    let screen = Xvfb::start();
    let client = rb.client(&screen, "alice@nla01", "alice-pw", 34, &[]);
    let (st, log) = client.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(STAYED_UP), "{log}\nbox: {}", rb.b.log());
    let _ = xterm.kill();
    let _ = xterm.wait();
    let video = |b: &Box| b.recordings().into_iter().find(|r| r["path"].as_str().is_some_and(|p| p.ends_with(".mp4")));
    // Kill the box as soon as a first batch of the video's text is stored, before the rest is.
    let until = eventually(120, "the first batch of screen text stored", || {
        let v = video(&rb.b)?;
        assert_ne!(v["text"]["state"], "done", "read whole before the box could be killed: {v}");
        let until = v["text"]["read_until"].as_f64().unwrap_or(0.0);
        (v["text"]["state"] == "reading" && until > 0.0).then_some(until)
    });
    rb.crash_and_restart();
    let v = video(&rb.b).unwrap();
    assert_eq!(v["text"]["state"], "reading", "{v}");
    assert!(v["text"]["read_until"].as_f64().unwrap() < 25.0, "killed mid-way: {v}");
    let v = eventually(120, "the screen text read after the restart", || {
        let v = video(&rb.b)?;
        assert_ne!(v["text"]["state"], "failed", "{v}");
        (v["text"]["state"] == "done").then_some(v)
    });
    let log = rb.b.log();
    let resumed = log.lines().filter(|l| l.contains("screen text read")).collect::<Vec<_>>();
    assert_eq!(resumed.len(), 1, "read to the end once, after the restart: {resumed:?}");
    eprintln!("killed at {until:.2} s of video read; after the restart: {}", resumed[0]);
    // Words shown before and after the kill are found, each in one session at its moment.
    let mut found = Vec::new();
    let mut missed = Vec::new();
    for w in WORDS {
        let hits = search(&rb.b, w);
        assert!(hits.len() <= 1, "{hits:?}");
        match hits.first() {
            Some(h) => {
                assert_eq!((&h["recording_id"], h["source"].as_str()), (&v["id"], Some("screen")), "{h}");
                found.push((*w, h["at"].as_f64().unwrap()));
            }
            None => missed.push(*w),
        }
    }
    eprintln!("found {}/{} words; missed {missed:?}", found.len(), WORDS.len());
    assert!(found.len() * 10 >= WORDS.len() * 9, "at least 90 % found: missed {missed:?}");
    assert!(found.iter().any(|(_, at)| *at < until) && found.iter().any(|(_, at)| *at > until), "{found:?}");
    // One a second, in order: each word found no earlier than the one before (two words that
    // appeared before the screen settled are read from the same picture, at the same time).
    assert!(found.windows(2).all(|p| p[1].1 >= p[0].1), "{found:?}");
}
