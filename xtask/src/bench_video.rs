//! `cargo xtask bench --only video`: what recording an RDP session costs the box at 1080p, for
//! scripted workloads on the target's desktop (idle, typing in a terminal, scrolling a long text,
//! a full-screen video), one session each through the box with `xfreerdp /size:1920x1080`.
//! Prints per workload the box's CPU seconds per minute of session (relay, decoder and encoder
//! together; and the session's share: less what the box spends with no session, measured first),
//! the recording's bytes per hour (its growth in the measured window, and over the whole
//! recording), the frames per second it encoded, and how many such sessions the box's cores
//! could record at once; beside them, in the same run, the CPU of
//! the target's own RDP server for the same screen (the baseline: what producing those updates
//! costs). Then each recording's on-screen text is read as the box does after a session (settled
//! pictures, changed regions, Tesseract), measured on its own: CPU seconds per recorded hour
//! beside the encoder's, and for the typing workload the share of the words the terminal showed
//! that search finds. Nothing here asserts.

use crate::bench_rdp::{BOX_PASS, BOX_USER, Proc, Rig, cpu_seconds, set_color, xvfb_sized};
use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZE: &str = "1920x1080x24";
/// Connect and first full frame, before the measured window starts.
const WARMUP: Duration = Duration::from_secs(6);

/// A workload drawn on the target's display for the measured window.
struct Workload {
    name: &'static str,
    what: &'static str,
    start: fn(&str, &std::path::Path) -> Result<Vec<Proc>>,
}

/// A full-screen xterm running `script` (Python) on `display`.
fn xterm(display: &str, script: &str) -> Result<Proc> {
    Ok(Proc(
        Command::new("xterm")
            .args(["-geometry", "190x52+0+0", "-fa", "DejaVu Sans Mono", "-fs", "12", "-bg", "black", "-fg", "gray90"])
            .args(["-e", "python3", "-u", "-c", script])
            .env("DISPLAY", display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting xterm (apt install xterm)")?,
    ))
}

/// A shell prompt that stays still.
const IDLE: &str = "import time\nprint('admin@web01:~$ ', end='', flush=True)\ntime.sleep(86400)";

/// An admin typing commands (about 5 keys a second, a pause after each command) and short
/// command output, as in a terminal session.
const TYPING: &str = r#"import time, random
random.seed(7)
cmds = ['systemctl status nginx', 'journalctl -u nginx --since today | tail -n 20', 'df -h',
        'vi /etc/nginx/sites-enabled/default', 'grep -rn proxy_pass /etc/nginx', 'uptime']
while True:
    for c in cmds:
        print('admin@web01:~$ ', end='', flush=True)
        for ch in c:
            print(ch, end='', flush=True)
            time.sleep(random.uniform(0.12, 0.28))
        print(flush=True)
        for i in range(random.randint(2, 8)):
            print(f'  line {i}: ' + 'x' * random.randint(10, 90), flush=True)
        time.sleep(1.5)
"#;

/// Paging through a long text: a line every 40 ms (a held arrow key in `less`).
const SCROLLING: &str = r#"import time, random
random.seed(3)
words = 'the box records every session at the gateway so a recording runs to the last frame'.split()
n = 0
while True:
    n += 1
    print(f'{n:6}  ' + ' '.join(random.choice(words) for _ in range(random.randint(6, 24))), flush=True)
    time.sleep(0.04)
"#;

fn idle(display: &str, _: &std::path::Path) -> Result<Vec<Proc>> {
    Ok(vec![xterm(display, IDLE)?])
}

fn typing(display: &str, _: &std::path::Path) -> Result<Vec<Proc>> {
    Ok(vec![xterm(display, TYPING)?])
}

fn scrolling(display: &str, _: &std::path::Path) -> Result<Vec<Proc>> {
    Ok(vec![xterm(display, SCROLLING)?])
}

/// A full-screen 25 fps clip with motion everywhere (rendered once, then played in a loop).
fn video(display: &str, dir: &std::path::Path) -> Result<Vec<Proc>> {
    let clip = dir.join("clip.mp4");
    if !clip.exists() {
        let st = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25:duration=20"])
            .args(["-vf", "hue=H=2*PI*t/10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
            .arg(&clip)
            .status()?;
        if !st.success() {
            bail!("rendering the video workload's clip failed");
        }
    }
    Ok(vec![Proc(
        Command::new("ffplay")
            .args(["-v", "quiet", "-fs", "-an", "-loop", "0", "-noborder"])
            .arg(&clip)
            .env("DISPLAY", display)
            .env("SDL_AUDIODRIVER", "dummy")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ffplay")?,
    )])
}

const WORKLOADS: &[Workload] = &[
    Workload { name: "idle desktop", what: "a shell prompt, nothing moves", start: idle },
    Workload { name: "typing", what: "~5 keys/s, command output, pauses", start: typing },
    Workload { name: "scrolling", what: "a line every 40 ms, full-screen xterm", start: scrolling },
    Workload { name: "full-screen video", what: "1080p 25 fps clip, motion everywhere", start: video },
];

struct Figures {
    /// Reading the recording's screen text: CPU seconds per recorded minute, lines read, and
    /// (typing) the share of the shown words search finds.
    ocr_cpu_per_min: f64,
    /// Of it, Tesseract's share (the rest is decoding and choosing what to read), per minute.
    ocr_tesseract_per_min: f64,
    /// Settled pictures read, and the megapixels of their parts handed to Tesseract.
    ocr_pictures: u64,
    ocr_mpx: f64,
    ocr_lines: u64,
    ocr_found: Option<(usize, usize)>,
    box_cpu_per_min: f64,
    target_cpu_per_min: f64,
    /// The recording's growth during the measured window, per hour.
    bytes_per_hour: f64,
    /// The whole recording (connect and first full frame included) over its duration.
    whole_bytes_per_hour: f64,
    fps: f64,
}

fn one(rig: &Rig, client_display: &str, w: &Workload, window: Duration, dir: &std::path::Path) -> Result<Figures> {
    set_color(&rig.target_display, "steelblue")?;
    let _drawing = (w.start)(&rig.target_display, dir)?;
    let before_sessions = rig.json(&["recordings"])?.as_array().map(|a| a.len()).unwrap_or(0);
    let client = Proc(
        Command::new("xfreerdp")
            .arg(format!("/v:127.0.0.1:{}", rig.rdp_port))
            .arg(format!("/u:{BOX_USER}"))
            .arg(format!("/p:{BOX_PASS}"))
            .args(["/cert:ignore", "/bpp:32", "/size:1920x1080", "-grab-keyboard"])
            .env("DISPLAY", client_display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting xfreerdp")?,
    );
    std::thread::sleep(WARMUP);
    let recordings = rig.data.join("recordings");
    let (b0, t0, f0) = (cpu_seconds(rig.boxd.0.id()), cpu_seconds(rig.shadow.0.id()), file_sizes(&recordings));
    let start = Instant::now();
    std::thread::sleep(window);
    let secs = start.elapsed().as_secs_f64();
    let (b1, t1, f1) = (cpu_seconds(rig.boxd.0.id()), cpu_seconds(rig.shadow.0.id()), file_sizes(&recordings));
    drop(client);
    // What the recording grew by in the window: the steady rate, without the first full frame.
    let grown: u64 = f1.iter().map(|(p, n)| n.saturating_sub(f0.get(p).copied().unwrap_or(0))).sum();
    // The recording of this session, once finished: its size, duration and frames.
    let deadline = Instant::now() + Duration::from_secs(30);
    let row = loop {
        let rows = rig.json(&["recordings"])?;
        let done = rows.as_array().and_then(|a| {
            a.iter().skip(before_sessions).find(|r| r["frames"].is_u64() && r["status"] != "recording").cloned()
        });
        if let Some(r) = done {
            break r;
        }
        if Instant::now() > deadline {
            bail!("the {} session's recording did not finish", w.name);
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    // WITNESS_BENCH_EXPORT=DIR keeps each workload's video for a look at its frames.
    if let (Some(dir), Some(id)) = (std::env::var_os("WITNESS_BENCH_EXPORT"), row["id"].as_str()) {
        let out = std::path::Path::new(&dir).join(format!("{}.mp4", w.name.replace(' ', "-")));
        let out = out.to_str().context("an export path in UTF-8")?;
        crate::bench::witness_cli(&rig.bin, &rig.data, &["recordings", "export", id, "--out", out], None)?;
    }
    let duration = row["duration"].as_f64().unwrap_or(0.0).max(0.1);
    let bytes = row["bytes"].as_f64().unwrap_or(0.0);
    let frames = row["frames"].as_f64().unwrap_or(0.0);
    let id = row["id"].as_str().context("a recording id")?;
    let read = rig.json(&["index", "read-text", id])?;
    let ocr_found = (w.name == "typing").then(|| found_words(rig, TYPING_WORDS)).transpose()?;
    Ok(Figures {
        ocr_cpu_per_min: read["cpu_seconds_per_recorded_minute"].as_f64().unwrap_or(0.0),
        ocr_tesseract_per_min: read["stats"]["ocr_cpu_seconds"].as_f64().unwrap_or(0.0) * 60.0
            / read["stats"]["video_seconds"].as_f64().unwrap_or(0.0).max(0.1),
        ocr_pictures: read["stats"]["pictures"].as_u64().unwrap_or(0),
        ocr_mpx: read["stats"]["pixels"].as_f64().unwrap_or(0.0) / 1e6,
        ocr_lines: read["stats"]["fragments"].as_u64().unwrap_or(0),
        ocr_found,
        box_cpu_per_min: (b1 - b0) / secs * 60.0,
        target_cpu_per_min: (t1 - t0) / secs * 60.0,
        bytes_per_hour: grown as f64 / secs * 3600.0,
        whole_bytes_per_hour: bytes / duration * 3600.0,
        fps: frames / duration,
    })
}

/// Words the typing workload's terminal shows (its commands and prompt): how many of them
/// search finds in the recording's screen text.
const TYPING_WORDS: &[&str] = &[
    "admin",
    "web01",
    "systemctl",
    "status",
    "nginx",
    "journalctl",
    "since",
    "today",
    "tail",
    "df",
    "vi",
    "etc",
    "sites",
    "enabled",
    "default",
    "grep",
    "rn",
    "proxy_pass",
    "uptime",
    "line",
];

/// How many of `words` `witness search` finds (in the last session: each bench session is new).
fn found_words(rig: &Rig, words: &[&str]) -> Result<(usize, usize)> {
    let mut found = 0;
    for word in words {
        let hits = rig.json(&["search", word])?;
        if hits.as_array().is_some_and(|a| a.iter().any(|h| h["source"] == "screen")) {
            found += 1;
        }
    }
    Ok((found, words.len()))
}

/// Size of every file under `dir` (the recordings being written).
fn file_sizes(dir: &std::path::Path) -> std::collections::HashMap<std::path::PathBuf, u64> {
    let mut out = std::collections::HashMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => {
                    out.insert(e.path(), m.len());
                }
                Err(_) => {}
            }
        }
    }
    out
}

pub fn run(window: Duration, only: Option<&str>) -> Result<()> {
    let rig = Rig::start(SIZE)?;
    let (_client_x, client_display) = xvfb_sized(SIZE)?;
    let dir = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let encoder = rig.json(&["encoders"]).ok().and_then(|v| v["chosen"].as_str().map(str::to_owned));
    // The box's own cost with no session (front panel, health checks): not the recording's.
    let (b0, t0) = (cpu_seconds(rig.boxd.0.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(15));
    let idle_per_min = (cpu_seconds(rig.boxd.0.id()) - b0) / t0.elapsed().as_secs_f64() * 60.0;
    println!(
        "\n## RDP session video at 1920x1080: one session per workload through the box, {} s each ({})",
        window.as_secs(),
        encoder.as_deref().unwrap_or("encoder unknown")
    );
    println!(
        "The box with no session: {idle_per_min:.2} CPU s/min (front panel, health checks); the session's share is the box's CPU less that."
    );
    println!(
        "| workload | box CPU s/min | session's share s/min | % of a core | MB/h (window) | MB/h (whole recording) | fps encoded | sessions at once ({cores:.0} cores) | target's RDP server CPU s/min (baseline) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut ocr = Vec::new();
    for w in WORKLOADS.iter().filter(|w| only.is_none_or(|o| w.name.contains(o))) {
        let f = one(&rig, &client_display, w, window, dir.path())?;
        ocr.push((
            w.name,
            f.box_cpu_per_min - idle_per_min,
            f.ocr_found,
            f.ocr_lines,
            (f.ocr_cpu_per_min, f.ocr_tesseract_per_min, f.ocr_pictures, f.ocr_mpx),
        ));
        let share = (f.box_cpu_per_min - idle_per_min).max(0.0);
        let capacity = if share > 0.0 { cores * 60.0 / share } else { f64::INFINITY };
        println!(
            "| {} ({}) | {:.2} | {:.2} | {:.1} % | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} |",
            w.name,
            w.what,
            f.box_cpu_per_min,
            share,
            share / 60.0 * 100.0,
            f.bytes_per_hour / 1e6,
            f.whole_bytes_per_hour / 1e6,
            f.fps,
            capacity,
            f.target_cpu_per_min
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "\nReading the screen text of each recording after the session (settled pictures, changed regions, Tesseract `eng`, one thread):"
    );
    println!(
        "| workload | OCR CPU s per recorded hour | of which Tesseract | encoding CPU s per hour (session's share) | pictures read | Mpx read | lines read | words of the terminal found (typing) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, share_per_min, found, lines, (ocr_per_min, tesseract_per_min, pictures, mpx)) in ocr {
        let found = found.map(|(f, n)| format!("{f}/{n} ({:.0} %)", f as f64 * 100.0 / n as f64)).unwrap_or_default();
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {pictures} | {mpx:.1} | {lines} | {found} |",
            ocr_per_min * 60.0,
            tesseract_per_min * 60.0,
            share_per_min.max(0.0) * 60.0
        );
    }
    Ok(())
}
