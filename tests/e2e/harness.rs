//! Test fixtures: a private OpenSSH server, a box (data dir + `witness serve`), a user's SSH
//! client. Each fixture owns its processes and temp dir and cleans up on drop.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port, bound then released, picked below the kernel's ephemeral range
/// (32768–60999): a port the kernel picked could be handed to another test's outgoing
/// connection before the fixture binds it, and the fixture would then fail to listen (seen in
/// CI: `witness serve` exited at bind and the test waited 90 s). Below the range only another
/// fixture's pick can collide, and the picks are spread at random over 12,000 ports.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    for _ in 0..1000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
}

/// Waits for `what` to listen on `port`. Generous: the debug box starts in well under a second
/// on an idle machine, but the suite runs beside the QEMU image tests (two TCG vCPUs on two
/// cores), where a start took over 20 s; what the tests check is behaviour, not start time.
pub fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(90), "{what} did not listen on port {port} within 90s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns `Some`, or fails the test after `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out after {secs}s waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn witness_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WITNESS_BIN") {
        return p.into();
    }
    // target/<profile>/deps/e2e-<hash> → target/<profile>/witness
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("witness");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p witness), or run `cargo xtask test`",
        bin.display()
    );
    bin
}

pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().unwrap()
}

/// Kills a process and every descendant (sshd's per-connection children call setsid, so a
/// process group kill would miss them).
pub fn kill_tree(pid: u32) {
    let mut victims = vec![pid];
    let mut i = 0;
    while i < victims.len() {
        let parent = victims[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
                // pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !victims.contains(&child) {
                    victims.push(child);
                }
            }
        }
        i += 1;
    }
    for v in victims {
        let _ = Command::new("kill").arg("-9").arg(v.to_string()).status();
    }
}

/// A private OpenSSH server as the target. Logs in as root with a key the box holds; the
/// sessions' HOME is the server's own folder, so the machine's root shell start-up files (a
/// `.bashrc` that ran `pyenv init` hung every command, CI of 2026-12-07) are never read.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Sshd {
    pub fn start() -> Self {
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("box_identity"));
        std::fs::copy(d.join("box_identity.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             StrictModes no\nUsePAM no\nPermitRootLogin yes\nAcceptEnv LANG LC_*\nAllowTcpForwarding yes\n\
             Subsystem sftp internal-sftp\nLogLevel ERROR\nSetEnv HOME={d}\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let mut s = Self { dir, port, child: None };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("starting /usr/sbin/sshd (is openssh-server installed?)");
        self.child = Some(child);
        wait_for_port(self.port, "sshd");
    }

    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("box_identity")
    }

    pub fn host_key_pub(&self) -> PathBuf {
        self.dir.path().join("host_key.pub")
    }

    /// The target dies with everything it runs, as in a reboot or power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_tree(c.id());
            let _ = c.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The box: a data dir and, when serving, the `witness serve` process.
pub struct Box {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The web console's HTTPS port.
    pub web_port: u16,
    child: Option<Child>,
    pub user_key: PathBuf,
}

impl Box {
    /// `witness init` plus user `alice` (password `alice-pw`, and a key).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let user_key = dir.path().join("alice_key");
        keygen(&user_key);
        let b = Self { port: free_port(), web_port: free_port(), dir, child: None, user_key };
        let out = b.cli(&["init"], None);
        assert!(String::from_utf8_lossy(&out.stdout).contains("admin user: admin"), "init prints the admin login");
        let key = format!("{}.pub", b.user_key.display());
        b.ok(&["user", "add", "alice", "--password-stdin", "--ssh-key", &key], Some("alice-pw\n"));
        b
    }

    /// A box with target `web01` on `sshd` granted to alice (not serving yet).
    pub fn with_target(sshd: &Sshd) -> Self {
        let b = Self::new();
        b.add_target("web01", sshd);
        b.ok(&["grant", "alice", "web01"], None);
        b
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a CLI command; returns its output whatever the exit status.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.cli_env(args, stdin, &[])
    }

    /// Runs a CLI command with more environment; returns its output whatever the exit status.
    pub fn cli_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &Path)]) -> Output {
        let mut cmd = Command::new(witness_bin());
        cmd.arg("--data").arg(self.data()).args(args);
        cmd.envs(env.iter().copied());
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            let mut sin = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                sin.write_all(text.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.cli(args, stdin);
        assert!(out.status.success(), "witness {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Adds target `name` pointing at `sshd`, logging in with the sshd's box identity.
    pub fn add_target(&self, name: &str, sshd: &Sshd) {
        let addr = format!("127.0.0.1:{}", sshd.port);
        self.ok(
            &[
                "target",
                "add",
                name,
                "--ssh",
                &addr,
                "--login",
                "root",
                "--identity",
                sshd.identity().to_str().unwrap(),
            ],
            None,
        );
    }

    pub fn serve(&mut self) {
        assert!(self.child.is_none());
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("witness.log")).unwrap();
        let child = Command::new(witness_bin())
            .arg("--data")
            .arg(self.data())
            .args(["serve", "--ssh-listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--web-listen", &format!("127.0.0.1:{}", self.web_port)])
            .env("WITNESS_LOG", "info,witness_ssh=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_listening(self.port, "witness serve");
        self.wait_listening(self.web_port, "witness web console");
    }

    /// Waits for the serving box to listen on `port`; a box that exited instead fails the test
    /// at once with the end of its log, not after the 90 s wait.
    fn wait_listening(&mut self, port: u16, what: &str) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
                panic!("{what} exited ({status}) before listening on port {port}; its log ends:\n{}", tail.join("\n"));
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{what} did not listen on port {port} within 90s; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the running session of `client` to have a recording being written, and returns
    /// that recording's row. A client that exits first fails the test at once with its stderr
    /// and the end of the box's log, and so does the wait's end (a loaded CI machine ran the
    /// QEMU image tests beside this; the wait is generous, the failure says why).
    pub fn live_recording(&self, client: &mut Child) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(r) = self.recordings().into_iter().find(|r| r["status"] == "recording") {
                return r;
            }
            let exited = client.try_wait().unwrap();
            if exited.is_some() || start.elapsed() > Duration::from_secs(120) {
                let mut err = String::new();
                if let (Some(_), Some(mut e)) = (exited, client.stderr.take()) {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
                panic!(
                    "no recording was being written after {:?}; the client: {exited:?} {err}\nthe box's log ends:\n{}",
                    start.elapsed(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The serving process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("serving").id()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the box's clean shutdown.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let (st, _) = self.stop_within(Duration::from_secs(30));
        st.expect("witness did not stop within 30s of SIGTERM")
    }

    /// SIGTERM, then wait at most `limit` (as systemd does, then SIGKILL): the exit status if it
    /// stopped by itself, and how long it took.
    pub fn stop_within(&mut self, limit: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        let mut c = self.child.take().expect("serving");
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let start = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return (Some(st), start.elapsed());
            }
            if start.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                return (None, start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("witness.log")).unwrap_or_default()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("witness {args:?} printed no JSON ({e}): {out}"))
    }

    pub fn sessions(&self) -> Vec<serde_json::Value> {
        self.json(&["sessions", "--json"]).as_array().unwrap().clone()
    }

    pub fn recordings(&self) -> Vec<serde_json::Value> {
        self.json(&["recordings", "--json"]).as_array().unwrap().clone()
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.json(&["audit", "--json", "--limit", "1000"]).as_array().unwrap().clone()
    }

    pub fn audit_kinds(&self) -> Vec<String> {
        self.audit().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
    }

    /// Exports a recording and returns its text.
    pub fn export(&self, id: &str) -> String {
        let out = self.dir.path().join(format!("{id}.cast"));
        self.ok(&["recordings", "export", id, "--out", out.to_str().unwrap()], None);
        std::fs::read_to_string(out).unwrap()
    }

    /// Runs `sftp -b BATCH` as `login` through the box with alice's key.
    pub fn sftp_batch(&self, login: &str, batch: &Path) -> Output {
        Command::new("sftp")
            .args(client_options())
            .arg("-i")
            .arg(&self.user_key)
            .arg("-P")
            .arg(self.port.to_string())
            .arg("-b")
            .arg(batch)
            .arg(format!("{login}@127.0.0.1"))
            .output()
            .unwrap()
    }

    /// An `ssh` command line for a user of this box (key auth unless told otherwise).
    pub fn ssh(&self, login: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(client_options()).arg("-i").arg(&self.user_key).arg("-p").arg(self.port.to_string());
        c.arg(format!("{login}@127.0.0.1"));
        c
    }

    /// `ssh` logging in with a password, given through SSH_ASKPASS as a person would type it.
    pub fn ssh_password(&self, login: &str, password: &str) -> Command {
        let askpass = self.dir.path().join(format!("askpass-{}", free_port()));
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let mut c = Command::new("ssh");
        c.args([
            "-o",
            "BatchMode=no",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(client_options())
        .arg("-p")
        .arg(self.port.to_string())
        .arg(format!("{login}@127.0.0.1"))
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null());
        c
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Options every test client uses: no user config, no known_hosts, no prompts. OpenSSH keeps
/// the first value it sees for an option, so callers that need another add theirs before these.
pub fn client_options() -> Vec<&'static str> {
    vec![
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "BatchMode=yes",
    ]
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The highest resident set size a process has had (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024
}

/// A box serving with one SSH target (`web01`, alice granted).
pub fn box_with_target() -> (Box, Sshd) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    (b, sshd)
}

/// Waits until at least `at_least` recordings exist and none is still being written.
pub fn settled(b: &Box, at_least: usize) {
    eventually(20, "every recording closed", || {
        let rows = b.recordings();
        (rows.len() >= at_least && rows.iter().all(|r| r["status"] != "recording" && r["status"] != "processing"))
            .then_some(())
    });
}

/// An interactive `ssh -t` to `login` through the box inside a detached tmux session of 100×30,
/// as a person at a terminal would run it; returns the tmux session's name.
pub fn tmux_ssh(b: &Box, name: &str, login: &str) -> String {
    let tmux = format!("witness-{name}-{}", b.port);
    let ssh_cmd =
        format!("ssh {} -i {} -p {} -t {login}@127.0.0.1", client_options().join(" "), b.user_key.display(), b.port);
    let st = std::process::Command::new("tmux")
        .args(["new-session", "-d", "-s", &tmux, "-x", "100", "-y", "30", &ssh_cmd])
        .status()
        .unwrap();
    assert!(st.success());
    tmux
}

/// What `asciinema cat` prints of a cast (it must accept the file).
pub fn asciinema_cat(path: &std::path::Path) -> String {
    // asciinema 2.2 opens /dev/tty even for `cat`: give it a pseudo-terminal through script(1).
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &format!("asciinema cat {}", path.display()), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("asciinema and script are installed");
    assert!(out.status.success(), "asciinema cat refused {}: {}", path.display(), stderr(&out));
    stdout(&out)
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// The single recording of the only session, once it is no longer `recording`.
pub fn finished_recording(b: &Box) -> serde_json::Value {
    eventually(15, "the recording to finish", || {
        let recs = b.recordings();
        let r = recs.last()?.clone();
        (r["status"] != "recording" && r["status"] != "processing").then_some(r)
    })
}

/// A recording (or session) that ended well: `completed`, or already `uploaded` after that
/// (the default store is a folder in the data dir, so uploads follow within moments).
pub fn assert_completed(row: &serde_json::Value) {
    let status = row["status"].as_str().unwrap_or("");
    assert!(status == "completed" || status == "uploaded", "expected completed/uploaded, got {row}");
}

/// A real S3-compatible server (s3s-fs) over a temp folder, on a loopback port.
pub struct S3 {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

pub const S3_ACCESS: &str = "witness-test";
pub const S3_SECRET: &str = "witness-test-secret";
pub const S3_BUCKET: &str = "recordings";
/// What a rollback of the box's disk puts back in the red teams' attacks: the index (with its
/// audit log) and the signed checkpoints.
pub const ROLLED_BACK: [&str; 4] = ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "audit.checkpoints"];

fn s3s_fs_bin() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    for p in [home.join(".cargo/bin/s3s-fs"), PathBuf::from("/usr/local/bin/s3s-fs")] {
        if p.exists() {
            return p;
        }
    }
    panic!("s3s-fs is not installed: run `cargo xtask setup` (cargo install s3s-fs@0.14.1 --features binary)");
}

impl S3 {
    /// A server that is not started yet (an offline site), with its bucket in place.
    pub fn stopped() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(S3_BUCKET)).unwrap();
        Self { dir, port: free_port(), child: None }
    }

    pub fn start() -> Self {
        let mut s = Self::stopped();
        s.run();
        s
    }

    pub fn run(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(s3s_fs_bin())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--access-key",
                S3_ACCESS,
                "--secret-key",
                S3_SECRET,
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_for_port(self.port, "s3s-fs");
    }

    /// Stops the server (the store goes away; `run` brings it back).
    pub fn halt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The stored object's bytes (s3s-fs keeps objects as files under bucket/key).
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join(S3_BUCKET).join(key)).ok()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Box {
    /// Points the box at an S3 server (`secret` overrides the right one, to test refusals).
    pub fn use_s3(&self, s3: &S3, bucket: &str, secret: &str) {
        self.store_s3_with("set", &s3.endpoint(), bucket, secret);
    }

    /// `witness store set` or `set-read` (`verb`) naming the S3 at `endpoint` with the tests'
    /// bucket and key; it must succeed.
    pub fn store_s3(&self, verb: &str, endpoint: &str) {
        self.store_s3_with(verb, endpoint, S3_BUCKET, S3_SECRET);
    }

    fn store_s3_with(&self, verb: &str, endpoint: &str, bucket: &str, secret: &str) {
        let args = [
            "store",
            verb,
            "s3",
            "--endpoint",
            endpoint,
            "--bucket",
            bucket,
            "--access-key-id",
            S3_ACCESS,
            "--secret-key-stdin",
        ];
        let out = self.cli(&args, Some(&format!("{secret}\n")));
        assert!(out.status.success(), "store {verb}: {}", stderr(&out));
    }

    /// Adds lines to witness.toml (before `serve`).
    pub fn configure(&self, section: &str, lines: &str) {
        let path = self.data().join("witness.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!("\n[{section}]\n{lines}\n"));
        std::fs::write(path, text).unwrap();
    }
}

/// Azurite (Microsoft's Azure Storage emulator) serving blobs on a loopback port.
pub struct Azurite {
    _dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

/// The emulator's well-known development account (public, documented by Microsoft).
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    /// Starts the emulator and creates container `recordings`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("azurite-blob")
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--silent",
                "--skipApiVersionCheck",
                "--location",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("azurite-blob is installed (cargo xtask setup: npm install -g azurite)");
        let a = Self { _dir: dir, port, child: Some(child) };
        wait_for_port(port, "azurite");
        let url = format!(
            "http://127.0.0.1:{port}/{AZ_ACCOUNT}/recordings?restype=container&{}",
            a.sas("2030-01-01T00:00:00Z")
        );
        let out = Command::new("curl")
            .args(["-sS", "-f", "-X", "PUT", "-H", "x-ms-version: 2021-08-06", "-H", "Content-Length: 0", &url])
            .output()
            .unwrap();
        assert!(out.status.success(), "creating the container: {}", stderr(&out));
        a
    }

    /// An account SAS (blob service, all resource types) expiring at `expiry`.
    pub fn sas(&self, expiry: &str) -> String {
        self.sas_with(expiry, "rwdlac")
    }

    /// An account SAS with the permissions `sp` (e.g. `cw`: create and write only).
    pub fn sas_with(&self, expiry: &str, sp: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let (ss, srt, sv) = ("b", "sco", "2019-12-12");
        let to_sign = format!("{AZ_ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{expiry}\n\n\n{sv}\n");
        let key = base64::engine::general_purpose::STANDARD.decode(AZ_KEY).unwrap();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let sig: String = sig
            .bytes()
            .map(|b| match b {
                b'+' => "%2B".to_string(),
                b'/' => "%2F".to_string(),
                b'=' => "%3D".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        format!("sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={}&sig={sig}", expiry.replace(':', "%3A"))
    }

    pub fn container_url(&self, expiry: &str) -> String {
        format!("http://127.0.0.1:{}/{AZ_ACCOUNT}/recordings?{}", self.port, self.sas(expiry))
    }

    /// Downloads a blob with curl.
    pub fn blob(&self, key: &str) -> Option<Vec<u8>> {
        let url = format!(
            "http://127.0.0.1:{}/{AZ_ACCOUNT}/recordings/{key}?{}",
            self.port,
            self.sas("2030-01-01T00:00:00Z")
        );
        let out = Command::new("curl").args(["-sS", "-f", "-H", "x-ms-version: 2021-08-06", &url]).output().unwrap();
        out.status.success().then_some(out.stdout)
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Another process holding the box's index's SQLite WAL write lock (byte 120 of the `-shm`
/// file), as a `witness` command suspended in a transaction or a stalling disk would: every
/// index write waits its busy timeout. Released on drop.
pub struct IndexWriteLock {
    holder: Child,
}

impl IndexWriteLock {
    pub fn take(b: &Box) -> Self {
        use std::io::Read;
        let shm = b.data().join("index.sqlite-shm");
        assert!(shm.is_file(), "no {}", shm.display());
        let mut holder = Command::new("python3")
            .arg("-c")
            .arg("import fcntl,sys,time\nf=open(sys.argv[1],'r+b')\nfcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB,1,120)\nsys.stdout.write('held\\n')\nsys.stdout.flush()\ntime.sleep(600)\n")
            .arg(&shm)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut held = [0u8; 5];
        holder.stdout.take().unwrap().read_exact(&mut held).unwrap();
        assert_eq!(&held, b"held\n");
        Self { holder }
    }

    /// Whether the holder still runs (and so still holds the lock).
    pub fn alive(&mut self) -> bool {
        self.holder.try_wait().unwrap().is_none()
    }
}

impl Drop for IndexWriteLock {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The box id in a box's `witness.toml` (the first part of its object keys).
pub fn box_id(b: &Box) -> String {
    let text = std::fs::read_to_string(b.data().join("witness.toml")).unwrap();
    text.lines().find_map(|l| l.strip_prefix("box_id = ")).unwrap().trim_matches('"').to_owned()
}
