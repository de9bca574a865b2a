//! `cargo xtask bench`: the box measured side by side with direct OpenSSH in one run, on this
//! machine: bulk throughput (with recording on), keystroke round-trip latency, and how many idle
//! recorded sessions the box holds with its memory. Prints a table; nothing here asserts.

use anyhow::{Context, Result, bail};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{client, server};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Opts {
    bulk_mib: u64,
    /// Direct/box pairs per bulk workload; the table shows their medians.
    reps: usize,
    keystrokes: usize,
    idle: usize,
    store_mib: u64,
    /// The box's `[store] part_size_mb` for the store section (the box's default when absent).
    part_mib: Option<u64>,
    only: Option<String>,
    /// Seconds each RDP video workload runs.
    secs: u64,
    /// Only the RDP video workloads whose name contains this.
    workload: Option<String>,
    /// Store section: the server on core 1 and every client on core 0 (`taskset`), a model of a
    /// store on hardware of its own.
    pin: bool,
}

fn parse(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        bulk_mib: 512,
        reps: 3,
        keystrokes: 300,
        idle: 1000,
        store_mib: 1024,
        part_mib: None,
        only: None,
        secs: 60,
        workload: None,
        pin: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--pin" {
            o.pin = true;
            continue;
        }
        let text = || it.clone().next().cloned().context("missing value");
        let v = || -> Result<u64> { text()?.parse().context("not a number") };
        match a.as_str() {
            "--bulk-mib" => o.bulk_mib = v()?,
            "--reps" => o.reps = (v()? as usize).max(1),
            "--keystrokes" => o.keystrokes = v()? as usize,
            "--idle" => o.idle = v()? as usize,
            "--store-mib" => o.store_mib = v()?,
            "--part-mib" => o.part_mib = Some(v()?),
            "--secs" => o.secs = v()?,
            "--only" => o.only = Some(text()?),
            "--workload" => o.workload = Some(text()?),
            other => bail!(
                "unknown bench option {other} (known: --bulk-mib N --reps N --keystrokes N --idle N --store-mib N --part-mib N --secs N --workload idle|typing|scrolling|video --pin --only ssh|store|rdp|video|idle|recorder|index)"
            ),
        }
        it.next();
    }
    Ok(o)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) -> Result<()> {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn keygen(path: &Path) -> Result<()> {
    let st = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).status()?;
    if !st.success() {
        bail!("ssh-keygen failed");
    }
    Ok(())
}

/// Raises this process's open-file limit (1000 sessions need thousands of sockets).
fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum;
    let _ = setrlimit(Resource::Nofile, l);
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds of a process's children that have exited and been waited for (`cutime + cstime`):
/// for `self`, the ssh clients; for sshd's master, its sessions.
fn children_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(13).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(14).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Setup {
    dir: tempfile::TempDir,
    sshd: Child,
    sshd_port: u16,
    witness: Child,
    box_port: u16,
    bin: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Wait for them, so they are gone before the temp dir is.
        let _ = self.witness.kill();
        let _ = self.witness.wait();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// Waits until the box has uploaded everything it recorded (its default store is a folder in
/// its data dir) and the page cache is written back, so one run's aftermath does not load the
/// next run.
/// The stored size of the newest recording (encrypted, as it sits on the box).
fn last_recording_bytes(s: &Setup) -> Result<u64> {
    for _ in 0..100 {
        let out = Command::new(&s.bin).arg("--data").arg(s.data()).args(["recordings", "--json"]).output()?;
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if let Some(last) = rows.as_array().and_then(|r| r.last())
            && last["status"] != "recording"
            && last["status"] != "processing"
        {
            return Ok(last["bytes"].as_u64().unwrap_or(0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the recording did not finish")
}

/// Waits until the box spends under 20 ms of CPU in each of two half-second windows (nothing
/// left to seal or index); returns its CPU seconds then.
fn until_idle(s: &Setup) -> Result<f64> {
    let start = Instant::now();
    let (mut last, mut quiet) = (cpu_seconds(s.witness.id()), 0);
    while quiet < 2 {
        if start.elapsed() > Duration::from_secs(300) {
            bail!("the box did not become idle");
        }
        std::thread::sleep(Duration::from_millis(500));
        let now = cpu_seconds(s.witness.id());
        quiet = if now - last < 0.02 { quiet + 1 } else { 0 };
        last = now;
    }
    Ok(last)
}

fn settle(s: &Setup) -> Result<()> {
    let start = Instant::now();
    loop {
        let out = Command::new(&s.bin).arg("--data").arg(s.data()).args(["sync", "status", "--json"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("\"pending\": 0") {
            break;
        }
        if start.elapsed() > Duration::from_secs(300) {
            bail!("the upload backlog did not drain");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(1));
    Ok(())
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn witness(&self, args: &[&str], stdin: Option<&str>) -> Result<()> {
        witness_cli(&self.bin, &self.data(), args, stdin)
    }

    fn ssh(&self, direct: bool) -> Command {
        let mut c = Command::new("ssh");
        let d = self.dir.path();
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
        ]);
        if direct {
            c.arg("-i").arg(d.join("box_identity")).args(["-p", &self.sshd_port.to_string(), "root@127.0.0.1"]);
        } else {
            c.arg("-i").arg(d.join("alice")).args(["-p", &self.box_port.to_string(), "alice@web01@127.0.0.1"]);
        }
        c
    }
}

/// Runs `witness --data DATA ARGS` with `stdin` fed in, failing unless it succeeds.
pub(crate) fn witness_cli(bin: &Path, data: &Path, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut c = Command::new(bin);
    c.arg("--data").arg(data).args(args).stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = c.spawn()?;
    if let Some(s) = stdin {
        child.stdin.take().context("stdin")?.write_all(s.as_bytes())?;
    }
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("witness {args:?} failed");
    }
    Ok(())
}

fn setup() -> Result<Setup> {
    let bin = crate::release_witness()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_owned();
    for k in ["host_key", "box_identity", "alice"] {
        keygen(&d.join(k))?;
    }
    std::fs::copy(d.join("box_identity.pub"), d.join("authorized_keys"))?;
    std::fs::create_dir_all("/run/sshd")?;
    let sshd_port = free_port();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nStrictModes no\nUsePAM no\nPermitRootLogin yes\nLogLevel ERROR\n\
             SetEnv HOME={d}\n",
            d = d.display()
        ),
    )?;
    let sshd = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stderr(Stdio::null())
        .spawn()?;
    wait_port(sshd_port)?;
    let box_port = free_port();
    let data = d.join("data");
    let st = Command::new(&bin).arg("init").arg("--data").arg(&data).stdout(Stdio::null()).status()?;
    if !st.success() {
        bail!("witness init failed");
    }
    let witness = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n $(ulimit -Hn); exec {} --data {} serve --ssh-listen 127.0.0.1:{box_port}",
            bin.display(),
            data.display()
        ))
        .env("WITNESS_LOG", "warn")
        .spawn()?;
    let s = Setup { dir, sshd, sshd_port, witness, box_port, bin };
    let key = format!("{}/alice.pub", d.display());
    s.witness(&["user", "add", "alice", "--ssh-key", &key], None)?;
    let idf = format!("{}/box_identity", d.display());
    s.witness(
        &["target", "add", "web01", "--ssh", &format!("127.0.0.1:{sshd_port}"), "--login", "root", "--identity", &idf],
        None,
    )?;
    s.witness(&["grant", "alice", "web01"], None)?;
    wait_port(box_port)?;
    Ok(s)
}

/// Runs a bulk command, counting bytes read; returns (MiB/s, seconds, box CPU seconds, CPU
/// seconds of the OpenSSH client and sshd's session).
fn bulk(s: &Setup, direct: bool, command: &str, expect: u64) -> Result<(f64, f64, f64, f64)> {
    let sshd = s.sshd.id().to_string();
    let pair0 = children_cpu_seconds("self") + children_cpu_seconds(&sshd);
    let cpu0 = cpu_seconds(s.witness.id());
    let start = Instant::now();
    let mut child = s.ssh(direct).arg(command).stdout(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    child.wait()?;
    let secs = start.elapsed().as_secs_f64();
    if total != expect {
        bail!("bulk transfer delivered {total} bytes, expected {expect}");
    }
    // The box may still be closing the recording; its CPU is measured including that.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = cpu_seconds(s.witness.id()) - cpu0;
    let pair = children_cpu_seconds("self") + children_cpu_seconds(&sshd) - pair0;
    Ok((total as f64 / 1048576.0 / secs, secs, cpu, pair))
}

/// Keystroke round trips through a pty: write one byte, wait for its echo.
fn latency(s: &Setup, direct: bool, n: usize) -> Result<(f64, f64)> {
    let mut child =
        s.ssh(direct).args(["-tt", "stty -icanon; exec cat"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut inp = child.stdin.take().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    let mut samples = Vec::with_capacity(n);
    // Wait until the remote side echoes at all (login done), then measure.
    inp.write_all(b"w")?;
    inp.flush()?;
    loop {
        out.read_exact(&mut one)?;
        if one[0] == b'w' {
            break;
        }
    }
    for i in 0..n + 20 {
        let t = Instant::now();
        inp.write_all(b"k")?;
        inp.flush()?;
        loop {
            out.read_exact(&mut one)?;
            if one[0] == b'k' {
                break;
            }
        }
        if i >= 20 {
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    samples.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    Ok((pct(0.5), pct(0.99)))
}

// ----- idle sessions: an in-process SSH target that keeps shells open and silent -----

#[derive(Clone)]
struct IdleTarget;

struct IdleHandler {
    channels: Vec<russh::Channel<server::Msg>>,
}

impl server::Handler for IdleHandler {
    type Error = russh::Error;
    async fn auth_password(&mut self, _: &str, _: &str) -> Result<server::Auth, Self::Error> {
        Ok(server::Auth::Accept)
    }
    async fn channel_open_session(
        &mut self,
        channel: russh::Channel<server::Msg>,
        reply: server::ChannelOpenHandle,
        _: &mut server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        self.channels.push(channel);
        Ok(())
    }
    async fn pty_request(
        &mut self,
        c: russh::ChannelId,
        _: &str,
        _: u32,
        _: u32,
        _: u32,
        _: u32,
        _: &[(russh::Pty, u32)],
        s: &mut server::Session,
    ) -> Result<(), Self::Error> {
        s.channel_success(c)
    }
    async fn shell_request(&mut self, c: russh::ChannelId, s: &mut server::Session) -> Result<(), Self::Error> {
        s.channel_success(c)
    }
}

impl server::Server for IdleTarget {
    type Handler = IdleHandler;
    fn new_client(&mut self, _: Option<std::net::SocketAddr>) -> IdleHandler {
        IdleHandler { channels: Vec::new() }
    }
}

struct AcceptAny;

impl client::Handler for AcceptAny {
    type Error = russh::Error;
    async fn check_server_key(&mut self, _: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn idle_sessions(s: &Setup, n: usize) -> Result<(usize, f64, f64)> {
    use server::Server as _;
    let target_port = free_port();
    let key_path = s.dir.path().join("idle_host_key");
    keygen(&key_path)?;
    let key = russh::keys::load_secret_key(&key_path, None)?;
    let config = Arc::new(server::Config { keys: vec![key], inactivity_timeout: None, ..Default::default() });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", target_port)).await?;
    tokio::spawn(async move {
        let _ = IdleTarget.run_on_socket(config, &listener).await;
    });
    s.witness(
        &["target", "add", "idle", "--ssh", &format!("127.0.0.1:{target_port}"), "--login", "x", "--password-stdin"],
        Some("x\n"),
    )?;
    s.witness(&["grant", "alice", "idle"], None)?;
    let key = Arc::new(russh::keys::load_secret_key(s.dir.path().join("alice"), None)?);
    let rss0 = rss_mib(s.witness.id());
    let cfg = Arc::new(client::Config { inactivity_timeout: None, ..Default::default() });
    // Under the box's own cap of 10 connections before login per source address.
    let sem = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (cfg, key, sem, port) = (cfg.clone(), key.clone(), sem.clone(), s.box_port);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.map_err(|e| e.to_string())?;
            let mut h =
                client::connect(cfg, ("127.0.0.1", port), AcceptAny).await.map_err(|e| format!("connect: {e}"))?;
            let ok = h
                .authenticate_publickey("alice@idle", PrivateKeyWithHashAlg::new(key, None))
                .await
                .map_err(|e| format!("auth: {e}"))?;
            if !ok.success() {
                return Err("auth refused".to_string());
            }
            let ch = h.channel_open_session().await.map_err(|e| format!("channel: {e}"))?;
            ch.request_pty(false, "xterm", 80, 24, 0, 0, &[]).await.map_err(|e| format!("pty: {e}"))?;
            ch.request_shell(false).await.map_err(|e| format!("shell: {e}"))?;
            Ok((h, ch))
        }));
    }
    let mut held = Vec::new();
    let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => *errors.entry(e).or_default() += 1,
            Err(e) => *errors.entry(e.to_string()).or_default() += 1,
        }
    }
    for (e, n) in &errors {
        println!("(idle sessions: {n} failed to open: {e})");
    }
    // Let every recording start before measuring (the last ones lag behind the opens).
    let mut recording = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let out = Command::new(&s.bin).arg("--data").arg(s.data()).args(["recordings", "--json"]).output()?;
        recording = String::from_utf8_lossy(&out.stdout).matches("\"status\": \"recording\"").count();
        if recording >= held.len() {
            break;
        }
    }
    let rss = rss_mib(s.witness.id());
    if recording < held.len() {
        // Say why some sessions have no recording (from the box's own audit log).
        let out = Command::new(&s.bin).arg("--data").arg(s.data()).args(["audit", "--limit", "100000"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        for kind in ["recording_refused", "recording_failed", "target_failed", "access_denied", "login_failed"] {
            let n = text.lines().filter(|l| l.contains(&format!(" {kind} "))).count();
            if n > 0 {
                let example = text.lines().find(|l| l.contains(&format!(" {kind} "))).unwrap_or("");
                println!("(idle sessions: {n} × {kind}, e.g. {example})");
            }
        }
    }
    drop(held);
    Ok((recording, rss0, rss))
}

pub fn run(args: &[String]) -> Result<()> {
    let o = parse(args)?;
    crate::setup::install()?;
    raise_nofile();
    println!(
        "\nWitness bench — {} cores, loopback",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    if o.only.as_deref() == Some("rdp") {
        return crate::bench_rdp::run();
    }
    if o.only.as_deref() == Some("video") {
        return crate::bench_video::run(Duration::from_secs(o.secs), o.workload.as_deref());
    }
    if o.only.as_deref() == Some("recorder") {
        return recorder_section(o.bulk_mib);
    }
    if o.only.as_deref() == Some("index") {
        return index_section();
    }
    if o.only.as_deref() == Some("idle") {
        let s = setup()?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let (held, rss0, rss) = rt.block_on(idle_sessions(&s, o.idle))?;
        println!("| {} asked | {held} recording | {rss0:.1} → {rss:.1} MiB |", o.idle);
        rt.shutdown_timeout(Duration::from_secs(2));
        return Ok(());
    }
    if o.only.as_deref() != Some("store") {
        ssh_section(&o)?;
    }
    if o.only.as_deref() != Some("ssh") {
        store_section(&o)?;
    }
    if o.only.is_none() {
        recorder_section(o.bulk_mib)?;
        index_section()?;
        crate::bench_rdp::run()?;
        crate::bench_video::run(Duration::from_secs(o.secs), o.workload.as_deref())?;
    }
    Ok(())
}

fn ssh_section(o: &Opts) -> Result<()> {
    let s = setup()?;
    let bytes = o.bulk_mib * 1024 * 1024;
    println!(
        "\n## Bulk download ({} MiB), direct to sshd vs through the box (recording on); median of {} alternating pairs",
        o.bulk_mib, o.reps
    );
    println!(
        "Box CPU *during* runs until the client has everything; *after* is what the session costs the box later \
         (closing, sealing, search index), measured until the box is idle again."
    );
    println!(
        "| workload | direct MiB/s | box MiB/s | ratio | ssh+sshd CPU s/GiB (direct) | box CPU s/GiB during | during ÷ pair | box CPU s/GiB after | (during + after) ÷ pair | recording ÷ payload |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let line = "x".repeat(79);
    let gib = bytes as f64 / 1073741824.0;
    for (name, cmd) in [
        ("80-column text lines", format!("yes '{line}' | head -c {bytes}")),
        ("head -c N /dev/zero (binary)", format!("head -c {bytes} /dev/zero")),
    ] {
        // [direct MiB/s, box MiB/s, pair CPU, box CPU during, box CPU after, recording bytes]
        let mut runs: Vec<[f64; 6]> = Vec::new();
        for _ in 0..o.reps {
            let (d, _, _, pair) = bulk(&s, true, &cmd, bytes)?;
            let (b, _, during, _) = bulk(&s, false, &cmd, bytes)?;
            let end = cpu_seconds(s.witness.id());
            let recorded = last_recording_bytes(&s)?;
            settle(&s)?;
            let after = until_idle(&s)? - end;
            runs.push([d, b, pair, during, after, recorded as f64]);
        }
        let med = |f: &dyn Fn(&[f64; 6]) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}× | {:.1} | {:.1} | {:.2}× | {:.1} | {:.2}× | {:.3} |",
            med(&|r| r[0]),
            med(&|r| r[1]),
            med(&|r| r[1] / r[0]),
            med(&|r| r[2]) / gib,
            med(&|r| r[3]) / gib,
            med(&|r| r[3] / r[2].max(0.01)),
            med(&|r| r[4]) / gib,
            med(&|r| (r[3] + r[4]) / r[2].max(0.01)),
            med(&|r| r[5]) / bytes as f64
        );
    }
    println!("\n## Keystroke round trip ({} keystrokes through a pty, echo)", o.keystrokes);
    let (dp50, dp99) = latency(&s, true, o.keystrokes)?;
    let (bp50, bp99) = latency(&s, false, o.keystrokes)?;
    println!("| path | p50 ms | p99 ms |\n|---|---|---|");
    println!("| direct | {dp50:.3} | {dp99:.3} |\n| box | {bp50:.3} | {bp99:.3} |");
    println!("| added by the box | {:.3} | {:.3} |", bp50 - dp50, bp99 - dp99);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (held, rss0, rss) = rt.block_on(idle_sessions(&s, o.idle))?;
    println!("\n## Idle recorded sessions");
    println!("| asked | recording | box RSS before | box RSS with them | per session |\n|---|---|---|---|---|");
    println!(
        "| {} | {held} | {rss0:.1} MiB | {rss:.1} MiB | {:.1} KiB |",
        o.idle,
        (rss - rss0) * 1024.0 / held.max(1) as f64
    );
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// `program`, on core `core` when the store section is pinned.
fn on_core(core: Option<u8>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn s3s_fs(dir: &Path, port: u16, core: Option<u8>) -> Result<Child> {
    let home = std::env::var("HOME").unwrap_or_default();
    let child = on_core(core, format!("{home}/.cargo/bin/s3s-fs"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "bench",
            "--secret-key",
            "bench-secret",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting s3s-fs")?;
    wait_port(port)?;
    Ok(child)
}

/// Upload throughput of `witness sync now` vs plain PUTs of the same files, and the time from
/// the end of a session to its verified upload.
fn store_section(o: &Opts) -> Result<()> {
    let mut s = setup()?;
    let store_dir = tempfile::tempdir()?;
    // The daemon picks the new store up by itself; it is not running yet, so the recordings
    // below queue up.
    std::fs::create_dir_all(store_dir.path().join("rec"))?;
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    s.witness(
        &[
            "store",
            "set",
            "s3",
            "--endpoint",
            &endpoint,
            "--bucket",
            "rec",
            "--access-key-id",
            "bench",
            "--secret-key-stdin",
        ],
        Some("bench-secret\n"),
    )?;
    if let Some(mib) = o.part_mib {
        // Sealing records each part's MD5 at this size, so it is set before anything is recorded.
        let config = s.data().join("witness.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(&format!("\n[store]\npart_size_mb = {mib}\n"));
        std::fs::write(&config, text)?;
        // The running box read its config at start: start it again on the new one.
        let _ = Command::new("kill").arg("-TERM").arg(s.witness.id().to_string()).status();
        let _ = s.witness.wait();
        let box_port = s.box_port;
        s.witness = Command::new(&s.bin)
            .arg("--data")
            .arg(s.data())
            .args(["serve", "--ssh-listen", &format!("127.0.0.1:{box_port}")])
            .env("WITNESS_LOG", "warn")
            .spawn()?;
        wait_port(box_port)?;
    }
    // Record while the store is away, so the backlog is there to be measured.
    let sessions = 4u64;
    let per = o.store_mib * 1024 * 1024 / sessions * 3 / 4; // base64 makes 4/3 of it
    for _ in 0..sessions {
        let st = s.ssh(false).arg(format!("head -c {per} /dev/urandom | base64 -w0")).stdout(Stdio::null()).status()?;
        if !st.success() {
            bail!("recording session failed");
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let _ = Command::new("kill").arg("-TERM").arg(s.witness.id().to_string()).status();
    let _ = s.witness.wait();
    let files: Vec<PathBuf> = walk(&s.data().join("recordings"));
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    // Pinned: the server on core 1, every client (curl, `sync now`) on core 0.
    let (server_core, client_core) = if o.pin { (Some(1), Some(0)) } else { (None, None) };
    let mut server = s3s_fs(store_dir.path(), port, server_core)?;
    let server_pid = server.id();
    // Seconds, the client's CPU seconds (curl or `sync now`, children of this process) and the
    // server's, of one upload of every file.
    // WITNESS_BENCH_PERF=DIR: the server profiled (`perf record`) during each upload, one file
    // a round.
    let perf_dir = std::env::var_os("WITNESS_BENCH_PERF").map(PathBuf::from);
    let measured = |name: &str, run: &mut dyn FnMut() -> Result<()>| -> Result<(f64, f64, f64)> {
        let perf = match &perf_dir {
            Some(d) => Some(
                Command::new("perf")
                    .args(["record", "-q", "-F", "499", "-p", &server_pid.to_string(), "-o"])
                    .arg(d.join(format!("{name}.data")))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting perf")?,
            ),
            None => None,
        };
        let (client, srv) = (children_cpu_seconds("self"), cpu_seconds(server_pid));
        let t = Instant::now();
        run()?;
        let secs = t.elapsed().as_secs_f64();
        let figures = (secs, children_cpu_seconds("self") - client, cpu_seconds(server_pid) - srv);
        if let Some(mut p) = perf {
            let _ = Command::new("kill").arg("-INT").arg(p.id().to_string()).status();
            let _ = p.wait();
        }
        Ok(figures)
    };
    let curl = || {
        let mut c = on_core(client_core, "curl");
        c.args(["-sS", "-f", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "bench:bench-secret"])
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
        c
    };
    // The same files PUT plainly, one after another, under `round`.
    let plain = |round: &str| -> Result<(f64, f64, f64)> {
        measured(&format!("plain-{round}"), &mut || {
            for (i, f) in files.iter().enumerate() {
                let st = curl()
                    .args(["-o", "/dev/null", "-T"])
                    .arg(f)
                    .arg(format!("{endpoint}/rec/plain-{round}/{i}.cast"))
                    .status()?;
                if !st.success() {
                    bail!("plain PUT failed");
                }
            }
            Ok(())
        })
    };
    // The requests `sync now` makes, sent by curl: the checksums the box took at sealing are
    // taken here before the clock starts (`sha256sum`, `md5sum`), and a file of a part or more
    // is cut into part files beforehand. A file under the part size is one PUT carrying
    // `x-amz-checksum-sha256`; a larger one a multipart upload, its parts two at a time, each
    // with its `Content-MD5`. What the server does for them is what it does for the box.
    let part_size = o.part_mib.unwrap_or(16) * 1024 * 1024;
    let parts_dir = tempfile::tempdir()?;
    let mut prepared = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let sha = hex_of(&Command::new("sha256sum").arg(f).output()?.stdout)?;
        let len = std::fs::metadata(f)?.len();
        let mut parts = Vec::new();
        if len >= part_size {
            let mut src = std::fs::File::open(f)?;
            for n in 0..len.div_ceil(part_size) {
                let path = parts_dir.path().join(format!("{i}-{}", n + 1));
                let mut dst = std::fs::File::create(&path)?;
                std::io::copy(&mut (&mut src).take(part_size), &mut dst)?;
                let md5 = hex_of(&Command::new("md5sum").arg(&path).output()?.stdout)?;
                parts.push((path, md5));
            }
        }
        prepared.push((sha, parts));
    }
    let _ = Command::new("sync").status();
    let same = |round: &str| -> Result<(f64, f64, f64)> {
        measured(&format!("same-{round}"), &mut || {
            for (i, (f, (sha, parts))) in files.iter().zip(&prepared).enumerate() {
                let url = format!("{endpoint}/rec/same-{round}/{i}.cast");
                let meta = format!("x-amz-meta-sha256: {sha}");
                if parts.is_empty() {
                    let st = curl()
                        .args(["-o", "/dev/null", "-H", &meta, "-H", "x-amz-sdk-checksum-algorithm: SHA256"])
                        .args(["-H", &format!("x-amz-checksum-sha256: {}", base64(&unhex(sha)?)), "-T"])
                        .arg(f)
                        .arg(&url)
                        .status()?;
                    if !st.success() {
                        bail!("PUT with x-amz-checksum-sha256 failed");
                    }
                    continue;
                }
                let out = curl().args(["-X", "POST", "-H", &meta]).arg(format!("{url}?uploads=")).output()?;
                let answer = String::from_utf8_lossy(&out.stdout).into_owned();
                let id = between(&answer, "<UploadId>", "</UploadId>").context("no UploadId")?.to_owned();
                for pair in parts.iter().enumerate().collect::<Vec<_>>().chunks(2) {
                    let mut running = Vec::new();
                    for (n, (path, md5)) in pair {
                        running.push(
                            curl()
                                .args([
                                    "-o",
                                    "/dev/null",
                                    "-H",
                                    &format!("Content-MD5: {}", base64(&unhex(md5)?)),
                                    "-T",
                                ])
                                .arg(path)
                                .arg(format!("{url}?partNumber={}&uploadId={id}", n + 1))
                                .spawn()?,
                        );
                    }
                    for mut c in running {
                        if !c.wait()?.success() {
                            bail!("part PUT failed");
                        }
                    }
                }
                let mut body = String::from("<CompleteMultipartUpload>");
                for (n, (_, md5)) in parts.iter().enumerate() {
                    body.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>\"{md5}\"</ETag></Part>", n + 1));
                }
                body.push_str("</CompleteMultipartUpload>");
                let out =
                    curl().args(["-X", "POST", "--data-binary", &body]).arg(format!("{url}?uploadId={id}")).output()?;
                if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("<ETag>") {
                    bail!("CompleteMultipartUpload failed");
                }
            }
            Ok(())
        })
    };
    // Plain PUTs and the same requests before and after `sync now`, so load that comes and goes
    // on a shared machine falls on both sides: the ratios are against their means.
    let before = plain("before")?;
    let same_before = same("before")?;
    let sync = measured("sync", &mut || {
        let out = on_core(client_core, &s.bin).arg("--data").arg(s.data()).args(["sync", "now"]).output()?;
        if !out.status.success() {
            bail!("sync now failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    })?;
    let same_after = same("after")?;
    let after = plain("after")?;
    drop(parts_dir);
    let put_secs = (before.0 + after.0) / 2.0;
    let same_secs = (same_before.0 + same_after.0) / 2.0;
    let mib = total as f64 / 1048576.0;
    let gib = mib / 1024.0;
    println!(
        "\n## Upload of {:.0} MiB of recordings ({} files) to s3s-fs on loopback{}",
        mib,
        files.len(),
        if o.pin { ", server on core 1 and clients on core 0 (taskset)" } else { "" }
    );
    println!("| path | seconds | MiB/s | client CPU s/GiB | server CPU s/GiB |\n|---|---|---|---|---|");
    for (name, (secs, client, srv)) in [
        ("plain HTTP PUT (curl, unsigned payload), before", before),
        ("the same requests as `sync now` (curl: checksum headers, multipart), before", same_before),
        ("witness sync now (unsigned payload with the sealing checksums, multipart, verified)", sync),
        ("the same requests as `sync now`, after", same_after),
        ("plain HTTP PUT, after", after),
    ] {
        println!("| {name} | {secs:.2} | {:.0} | {:.2} | {:.2} |", mib / secs, client / gib, srv / gib);
    }
    let sync_secs = sync.0;
    println!("| ratio (sync now ÷ mean of the plain PUTs) | | {:.2}× | | |", put_secs / sync_secs);
    println!("| ratio (sync now ÷ mean of the same requests by curl) | | {:.2}× | | |", same_secs / sync_secs);
    // Session end → verified upload, with the daemon running and the store reachable.
    let box_port = s.box_port;
    s.witness = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {} --data {} serve --ssh-listen 127.0.0.1:{box_port}", s.bin.display(), s.data().display()))
        .env("WITNESS_LOG", "warn")
        .spawn()?;
    wait_port(box_port)?;
    let mut delays = Vec::new();
    // Verified uploads counted by their status: the session's own is there when one more is.
    let uploaded = || -> Result<usize> {
        let out = Command::new(&s.bin).arg("--data").arg(s.data()).args(["recordings", "--json"]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout).matches("\"status\": \"uploaded\"").count())
    };
    for i in 0..5 {
        let before = uploaded()?;
        let st = s.ssh(false).arg(format!("echo latency-{i}")).stdout(Stdio::null()).status()?;
        let ended = Instant::now();
        if !st.success() {
            bail!("session failed");
        }
        loop {
            if uploaded()? > before {
                break;
            }
            if ended.elapsed() > Duration::from_secs(60) {
                bail!("upload did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        delays.push(ended.elapsed().as_secs_f64());
    }
    delays.sort_by(|a, b| a.total_cmp(b));
    println!("\n## Session end → verified upload (5 sessions, store reachable)");
    println!("| median s | max s |\n|---|---|\n| {:.2} | {:.2} |", delays[2], delays[4]);
    let _ = server.kill();
    Ok(())
}

/// The hex digest at the start of `sha256sum`/`md5sum` output.
fn hex_of(out: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(out);
    let hex = text.split_whitespace().next().unwrap_or_default();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("no digest in {text:?}");
    }
    Ok(hex.to_owned())
}

fn unhex(hex: &str) -> Result<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("x"), 16).context("not hex"))
        .collect()
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let byte = |i: usize| u32::from(c.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for k in 0..4 {
            if k <= c.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    Some(&text[start..start + text[start..].find(close)?])
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Recording throughput of the recorder alone, plain vs encrypted at rest, on the same output
/// (32 KiB packets of 80-column text, as a bulk session delivers them), alternating runs.
fn recorder_section(mib: u64) -> Result<()> {
    use witness_core::{atrest, cast};
    use witness_recorder::{Encryption, RecorderSettings, start_cast};
    let line = format!("{}\r\n", "y".repeat(78));
    let packet = bytes::Bytes::from(line.repeat(32 * 1024 / line.len()));
    let packets = (mib * 1024 * 1024) / packet.len() as u64;
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let header = cast::Header {
        version: 2,
        width: 80,
        height: 24,
        timestamp: 0,
        title: None,
        command: None,
        env: Default::default(),
        witness: None,
        witness_format: None,
    };
    let settings = RecorderSettings { fsync_interval: Duration::from_secs(1) };
    let variants = [None, Some(atrest::Cipher::XChaCha20Poly1305), Some(atrest::Cipher::Aes256Gcm)];
    // best [wall, CPU] seconds per variant
    let mut best = [[f64::MAX; 2]; 3];
    let me = std::process::id();
    for round in 0..3 {
        for (i, cipher) in variants.into_iter().enumerate() {
            let path = dir.path().join(format!("r{round}-{i}.cast"));
            let enc = cipher.map(|c| Encryption {
                header: atrest::Header::new(c, "bench", "bench", atrest::wrap(&[1; 32], &[2; 32], [3; 24])),
                dek: [2; 32],
                nonce_prefix: [4; 16],
            });
            let (t, cpu) = (Instant::now(), crate::bench_rdp::cpu_seconds(me));
            rt.block_on(async {
                let rec = start_cast(&path, &header, settings, enc)?;
                for _ in 0..packets {
                    rec.output(&packet)?;
                }
                rec.finish().await
            })?;
            best[i][0] = best[i][0].min(t.elapsed().as_secs_f64());
            best[i][1] = best[i][1].min(crate::bench_rdp::cpu_seconds(me) - cpu);
            std::fs::remove_file(&path)?;
        }
    }
    let rate = |s: f64| (packets * packet.len() as u64) as f64 / 1048576.0 / s;
    let preferred = atrest::Cipher::preferred();
    println!("\n## Recorder throughput, {mib} MiB of 80-column text in 32 KiB packets (best of 3, alternating)");
    println!("| at rest | MiB/s | CPU s | throughput vs plain | CPU vs plain |\n|---|---|---|---|---|");
    for (i, cipher) in variants.into_iter().enumerate() {
        let name = match cipher {
            None => "plain asciicast".to_owned(),
            Some(c) if c == preferred => format!("{} records (what this box uses)", c.name()),
            Some(c) => format!("{} records", c.name()),
        };
        println!(
            "| {name} | {:.0} | {:.2} | {:.2}× | {:.2}× |",
            rate(best[i][0]),
            best[i][1],
            best[0][0] / best[i][0],
            best[0][1] / best[i][1].max(1e-9)
        );
    }
    Ok(())
}

/// The index plain vs encrypted at rest (SQLCipher): what a session writes (session, recording,
/// its end, three audit events, the upload job and its verification, each its own transaction
/// as the box does them), opening the index (every CLI command does), and listing sessions.
fn index_section() -> Result<()> {
    use witness_index::{Index, IndexKey, RecordingEnd};
    const SESSIONS: u32 = 1000;
    let dir = tempfile::tempdir()?;
    let key = IndexKey([7; 32]);
    let open = |path: &std::path::Path, encrypted: bool| -> Result<Index> {
        Ok(if encrypted { Index::open_encrypted(path, &key)? } else { Index::open(path)? })
    };
    // best seconds: [writes, open, list] × [plain, encrypted]
    let mut best = [[f64::MAX; 2]; 3];
    for round in 0..3 {
        for (i, encrypted) in [false, true].into_iter().enumerate() {
            let path = dir.path().join(format!("index-{round}-{i}.sqlite"));
            let idx = open(&path, encrypted)?;
            let t = Instant::now();
            for n in 0..SESSIONS {
                let (s, r) = (format!("s{n}"), format!("r{n}"));
                idx.create_session(&s, "alice", "web01", witness_core::Protocol::Ssh, Some("127.0.0.1:5000"))?;
                idx.audit("session_started", Some("alice"), Some("web01"), Some(&s), &serde_json::json!({}))?;
                idx.create_recording(&r, &s, "shell", &format!("recordings/{r}.cast"))?;
                let end = RecordingEnd {
                    status: witness_core::RecordingStatus::Completed,
                    reason: None,
                    bytes: 4096,
                    sha256: Some("ab".repeat(32)),
                    duration: Some(12.5),
                    recovered: false,
                };
                idx.finish_recording(&r, &end)?;
                idx.end_session(&s, "client disconnected", false)?;
                idx.audit("session_ended", Some("alice"), Some("web01"), Some(&s), &serde_json::json!({}))?;
                idx.enqueue_upload(&r, &format!("box/day/{s}/{r}.cast"))?;
                idx.upload_verified(&r)?;
                idx.audit("recording_uploaded", None, None, Some(&s), &serde_json::json!({ "recording": r }))?;
            }
            best[0][i] = best[0][i].min(t.elapsed().as_secs_f64());
            drop(idx);
            let t = Instant::now();
            let idx = open(&path, encrypted)?;
            best[1][i] = best[1][i].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            assert_eq!(idx.sessions()?.len(), SESSIONS as usize);
            best[2][i] = best[2][i].min(t.elapsed().as_secs_f64());
        }
    }
    println!("\n## Index, plain vs encrypted at rest (SQLCipher, raw 256-bit key), best of 3, alternating");
    println!("| | plain | encrypted | ratio |\n|---|---|---|---|");
    let tx = f64::from(SESSIONS * 9);
    println!(
        "| session writes ({SESSIONS} sessions × 9 transactions) | {:.0} tx/s | {:.0} tx/s | {:.2}× |",
        tx / best[0][0],
        tx / best[0][1],
        best[0][0] / best[0][1]
    );
    println!(
        "| open (schema check, every CLI command) | {:.2} ms | {:.2} ms | {:.2}× |",
        best[1][0] * 1e3,
        best[1][1] * 1e3,
        best[1][0] / best[1][1]
    );
    println!(
        "| list {SESSIONS} sessions | {:.1} ms | {:.1} ms | {:.2}× |",
        best[2][0] * 1e3,
        best[2][1] * 1e3,
        best[2][0] / best[2][1]
    );
    Ok(())
}
