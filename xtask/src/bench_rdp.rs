//! `cargo xtask bench --only rdp`: what the RDP jump path adds, measured in one run against the
//! same NLA target (`freerdp-shadow-cli` on its own Xvfb) reached directly and through the box:
//! the connect time (client start to the target's screen on the client's display) and the
//! relay's cost at a steady screen-update rate (the box's CPU and bytes written per session).
//! Prints a table; nothing here asserts.

use anyhow::{Context, Result, bail};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "benchuser";
const PASS: &str = "bench-pw-1";
const RUNS: usize = 5;
/// How long the steady-update window lasts, and how often the target's screen changes in it.
const STEADY: Duration = Duration::from_secs(20);
const FRAME: Duration = Duration::from_millis(100);

/// A child that is killed when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn xvfb() -> Result<(Proc, String)> {
    xvfb_sized("1024x768x24")
}

/// An X server of the given size (`WxHxDEPTH`); returns it and its display name.
pub(crate) fn xvfb_sized(size: &str) -> Result<(Proc, String)> {
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-screen", "0", size, "-nolisten", "tcp", "-noreset"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting Xvfb")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("xvfb stdout")?).read_line(&mut line)?;
    Ok((Proc(child), format!(":{}", line.trim())))
}

pub(crate) fn set_color(display: &str, color: &str) -> Result<()> {
    let st = Command::new("xsetroot").args(["-display", display, "-solid", color]).status()?;
    if !st.success() {
        bail!("xsetroot failed");
    }
    Ok(())
}

/// Whether most of the screen is pure red (xwd, 32 bits per pixel, LSB first).
fn screen_is_red(display: &str) -> bool {
    let Ok(out) = Command::new("xwd").args(["-root", "-silent", "-display", display]).output() else { return false };
    let d = out.stdout;
    if d.len() < 100 {
        return false;
    }
    let field = |i: usize| u32::from_be_bytes([d[i * 4], d[i * 4 + 1], d[i * 4 + 2], d[i * 4 + 3]]) as usize;
    let (header, width, height, bpl, ncolors) = (field(0), field(4), field(5), field(12), field(19));
    let data = &d[(header + ncolors * 12).min(d.len())..];
    let (mut red, mut total) = (0, 0);
    for y in (0..height).step_by(16) {
        for x in (0..width).step_by(16) {
            let i = y * bpl + x * 4;
            if let Some(p) = data.get(i..i + 3) {
                total += 1;
                red += usize::from(p == [0, 0, 255]);
            }
        }
    }
    total > 0 && red * 10 > total * 9
}

pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn written_bytes(pid: u32) -> f64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
}

fn xfreerdp(display: &str, port: u16, user: &str, password: &str) -> Result<Proc> {
    Ok(Proc(
        Command::new("xfreerdp")
            .arg(format!("/v:127.0.0.1:{port}"))
            .arg(format!("/u:{user}"))
            .arg(format!("/p:{password}"))
            .args(["/cert:ignore", "/bpp:32", "-grab-keyboard"])
            .env("DISPLAY", display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting xfreerdp")?,
    ))
}

/// Seconds from starting the client to the target's (red) screen on the client's display.
fn connect_time(client_display: &str, port: u16, user: &str, password: &str) -> Result<f64> {
    set_color(client_display, "black")?;
    let start = Instant::now();
    let _client = xfreerdp(client_display, port, user, password)?;
    while !screen_is_red(client_display) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{user} saw no target screen within 30s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Changes the target's screen every `FRAME` for `STEADY`; returns the CPU seconds and bytes
/// written by `pids` in that window.
fn steady(target_display: &str, pids: &[u32]) -> Result<Vec<(f64, f64)>> {
    let before: Vec<_> = pids.iter().map(|&p| (cpu_seconds(p), written_bytes(p))).collect();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < STEADY {
        set_color(target_display, if n.is_multiple_of(2) { "red" } else { "blue" })?;
        n += 1;
        std::thread::sleep(FRAME);
    }
    Ok(pids.iter().zip(before).map(|(&p, (c, w))| (cpu_seconds(p) - c, written_bytes(p) - w)).collect())
}

/// A target (`freerdp-shadow-cli` with NLA on its own Xvfb of `size`) and a box (release build)
/// serving RDP with `alice` granted `nla01` = that target.
pub(crate) struct Rig {
    pub(crate) boxd: Proc,
    pub(crate) shadow: Proc,
    _target_x: Proc,
    pub(crate) target_display: String,
    pub(crate) shadow_port: u16,
    pub(crate) rdp_port: u16,
    pub(crate) data: PathBuf,
    pub(crate) bin: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) const BOX_USER: &str = "alice@nla01";
pub(crate) const BOX_PASS: &str = "alice-pw";

impl Rig {
    pub(crate) fn start(size: &str) -> Result<Self> {
        let bin = crate::release_witness()?;
        let dir = tempfile::tempdir()?;
        let d = dir.path();

        let (target_x, target_display) = xvfb_sized(size)?;
        set_color(&target_display, "red")?;
        let sam = Command::new("winpr-hash").args(["-u", USER, "-p", PASS, "-f", "sam"]).output()?;
        std::fs::write(d.join("sam"), sam.stdout)?;
        let shadow_port = free_port();
        let shadow = Proc(
            Command::new("freerdp-shadow-cli")
                .arg(format!("/port:{shadow_port}"))
                .args(["/bind-address:127.0.0.1", "/sec:nla", "+auth"])
                .arg(format!("/sam-file:{}", d.join("sam").display()))
                .env("DISPLAY", &target_display)
                .env("HOME", d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting freerdp-shadow-cli")?,
        );
        wait_port(shadow_port)?;

        let data = d.join("data");
        let witness = |args: &[&str], stdin: Option<&str>| crate::bench::witness_cli(&bin, &data, args, stdin);
        witness(&["init"], None)?;
        witness(&["user", "add", "alice", "--password-stdin"], Some("alice-pw\n"))?;
        let addr = format!("127.0.0.1:{shadow_port}");
        witness(
            &["target", "add", "nla01", "--rdp", &addr, "--login", USER, "--password-stdin"],
            Some(&format!("{PASS}\n")),
        )?;
        witness(&["grant", "alice", "nla01"], None)?;
        // The daemon would read each video's screen text in the background, into the next
        // measurement: the video bench reads it itself, measured on its own.
        let toml = data.join("witness.toml");
        let text = std::fs::read_to_string(&toml)?;
        std::fs::write(&toml, format!("{text}screen_text = false\n"))?;
        let (rdp_port, ssh_port, web_port) = (free_port(), free_port(), free_port());
        let boxd = Proc(
            Command::new(&bin)
                .arg("--data")
                .arg(&data)
                .args(["serve", "--ssh-listen", &format!("127.0.0.1:{ssh_port}")])
                .args(["--web-listen", &format!("127.0.0.1:{web_port}")])
                .args(["--rdp-listen", &format!("127.0.0.1:{rdp_port}")])
                .env("WITNESS_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()?,
        );
        wait_port(rdp_port)?;
        Ok(Self { boxd, shadow, _target_x: target_x, target_display, shadow_port, rdp_port, data, bin, _dir: dir })
    }

    /// `witness ARGS --json` against the rig's data dir.
    pub(crate) fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let out = Command::new(&self.bin).arg("--data").arg(&self.data).args(args).arg("--json").output()?;
        if !out.status.success() {
            bail!("witness {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

pub fn run() -> Result<()> {
    let rig = Rig::start("1024x768x24")?;
    let (target_display, shadow_port, rdp_port) = (rig.target_display.clone(), rig.shadow_port, rig.rdp_port);
    let (shadow, boxd) = (&rig.shadow, &rig.boxd);
    let (_client_x, client_display) = xvfb()?;
    println!("\n## RDP: xfreerdp → freerdp-shadow-cli (NLA), direct vs through the box");
    let mut direct = Vec::new();
    let mut boxed = Vec::new();
    for _ in 0..RUNS {
        direct.push(connect_time(&client_display, shadow_port, USER, PASS)?);
        boxed.push(connect_time(&client_display, rdp_port, BOX_USER, BOX_PASS)?);
    }
    let (dm, bm) = (median(direct), median(boxed));
    println!(
        "| connect to first frame (median of {RUNS}) | direct {:.0} ms | box {:.0} ms | added {:.0} ms |",
        dm * 1e3,
        bm * 1e3,
        (bm - dm) * 1e3
    );

    let secs = STEADY.as_secs_f64();
    println!(
        "\n## Steady updates: the target's screen changes every {} ms for {secs:.0} s (one session)",
        FRAME.as_millis()
    );
    println!("| path | client CPU % | target CPU % | box CPU % | box MiB/s relayed |\n|---|---|---|---|---|");
    for (name, port, user, password) in [("direct", shadow_port, USER, PASS), ("box", rdp_port, BOX_USER, BOX_PASS)] {
        let client = xfreerdp(&client_display, port, user, password)?;
        std::thread::sleep(Duration::from_secs(3));
        let r = steady(&target_display, &[client.0.id(), shadow.0.id(), boxd.0.id()])?;
        drop(client);
        let box_cell = if name == "box" {
            (format!("{:.1}", r[2].0 / secs * 100.0), format!("{:.2}", r[2].1 / secs / 1048576.0))
        } else {
            ("–".into(), "–".into())
        };
        println!(
            "| {name} | {:.1} | {:.1} | {} | {} |",
            r[0].0 / secs * 100.0,
            r[1].0 / secs * 100.0,
            box_cell.0,
            box_cell.1
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0)).unwrap_or(0)
}

pub(crate) fn wait_port(port: u16) -> Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
