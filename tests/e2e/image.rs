//! The firmware image: `rootfs/build.sh` builds it with the debug `witness`, QEMU boots it, and
//! the box answers on its forwarded ports (SSH banner, `/healthz` over HTTPS). A signed update
//! bundle on a stick installs into the other slot and the box comes up from it; a bundle signed
//! by another key is refused; a signed bundle whose daemon fails is left after its trial boot
//! and the box runs the previous slot again; outbound connections go only to what the index names
//! (checked from a root shell on a second serial port in the last boot). A flipped byte in the root slot makes dm-verity
//! stop the boot. The image is built once per set of inputs (binary + recipe) and shared
//! between the tests (each runs in its own process) under a file lock in
//! `target/tmp/image-<key>/`. Every boot is a real TCG boot (minutes), so the update test runs
//! its whole story on one disk: four boots.

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Hashes every file under `dir` (path and content), in a stable order.
fn hash_tree(h: &mut Sha256, dir: &Path) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        h.update(p.strip_prefix(workspace()).unwrap_or(&p).to_string_lossy().as_bytes());
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.is_dir() {
            hash_tree(h, &p);
        } else if meta.is_file() {
            h.update(std::fs::read(&p).unwrap());
        } else if meta.file_type().is_symlink() {
            h.update(std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes());
        }
    }
}

/// The built image's folder (disk.raw, vmlinuz, initrd.img, cmdline), built on first use.
fn built_image() -> PathBuf {
    let bin = witness_bin();
    let mut h = Sha256::new();
    h.update(std::fs::read(&bin).unwrap());
    h.update(std::fs::read(bin.with_file_name("witness-egress")).expect("witness-egress is built beside witness"));
    hash_tree(&mut h, &workspace().join("rootfs"));
    let key = hex::encode(&h.finalize()[..8]);
    let tmp = workspace().join("target/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let dir = tmp.join(format!("image-{key}"));
    let lock = std::fs::File::create(tmp.join("image.lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join("done").exists() {
        // Older images (other binaries or recipes) go: each is a couple of GiB of sparse file.
        for e in std::fs::read_dir(&tmp).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("image-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(workspace().join("rootfs/build.sh"))
            .arg("--binary")
            .arg(&bin)
            .arg("--out")
            .arg(&dir)
            // One trial boot for a new slot (the default is 3): the fall-back costs one boot less.
            .args(["--boot-tries", "1"])
            // The tests ship the debug build (stripped, about twice the release binary); the
            // rest of the root is held to the recipe's own budget.
            .env("WITNESS_BINARY_BUDGET_MB", "100")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        println!("{}", stdout(&out));
        assert!(out.status.success(), "rootfs/build.sh failed ({}): {}", out.status, stderr(&out));
        println!("image built in {:.0}s", started.elapsed().as_secs_f64());
        std::fs::write(dir.join("done"), b"").unwrap();
    }
    drop(lock);
    assert_size_budget(&dir);
    dir
}

/// The size table the build wrote (`build.txt`) holds the root to the recipe's budget: the root
/// without the binary plus the release binary's line within the x86 root's line, which is at most
/// 200 MB (190 MiB); the base, each board profile's add-on and the shipped binary within theirs.
fn assert_size_budget(dir: &Path) {
    let txt = std::fs::read_to_string(dir.join("build.txt")).unwrap();
    let rows: Vec<(String, u64)> = txt
        .lines()
        .filter_map(|l| {
            let (name, n) = l.trim().rsplit_once(' ')?;
            Some((name.trim().to_owned(), n.parse().ok()?))
        })
        .collect();
    let row = |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no `{name}` in build.txt:\n{txt}"))
    };
    let without_binary = row("root without the witness binary");
    let root_line = row("budget: x86 root (200 MB)");
    let release_line = row("budget: release witness binary");
    assert!(root_line <= 190, "the x86 root's line is {root_line} MiB, over 200 MB (190 MiB)");
    assert!(
        without_binary + release_line <= root_line,
        "root without the binary {without_binary} MiB + release binary line {release_line} MiB > {root_line} MiB:\n{txt}"
    );
    assert!(row("base: without the binary and profiles") <= row("budget: base"), "{txt}");
    let profiles: Vec<&(String, u64)> = rows.iter().filter(|(n, _)| n.starts_with("profile ")).collect();
    assert!(profiles.len() >= 2, "x86-generic and sim are measured apart: {txt}");
    for (name, mb) in profiles {
        assert!(*mb <= row("budget: each profile's add-on"), "{name} {mb} MiB: {txt}");
    }
    assert!(row("witness binary") <= row("budget: shipped witness binary"), "{txt}");
    // The root as built, with the binary it ships: over the line (a debug binary), the build is
    // marked not shippable and makes no update bundle.
    if row("root, unpacked") > root_line {
        assert!(txt.contains("shippable: no: the root as built"), "{txt}");
        assert!(dir.join("NOT-SHIPPABLE").exists() && !dir.join("witness-update.raucb").exists(), "{txt}");
    } else {
        assert!(txt.contains("shippable: yes"), "{txt}");
    }
    assert_eq!(
        without_binary,
        row("base: without the binary and profiles")
            + rows.iter().filter(|(n, _)| n.starts_with("profile ")).map(|(_, v)| v).sum::<u64>(),
        "the base and the profiles' add-ons make up the root without the binary: {txt}"
    );
}

/// A QEMU guest booted from a disk image, killed on drop.
struct Vm {
    child: Child,
    serial: PathBuf,
    /// The socket of the second serial port, where `systemd.debug_shell` runs a root shell.
    shell: Option<PathBuf>,
    started: Instant,
}

impl Vm {
    /// Boots `disk` as a throw-away snapshot.
    fn boot(image: &Path, disk: &Path, serial: &Path, forwards: &[(u16, u16)]) -> Self {
        Self::boot_with(image, disk, true, &[], None, None, serial, forwards)
    }

    /// Boots `disk` (written to unless `snapshot`) with `sticks` as further read-only disks;
    /// with `shell`, a root shell listens on a second serial port behind that socket (systemd's
    /// debug shell, asked for on the kernel command line: the test's way in, not the image's);
    /// with `tpm`, a TPM 2.0 (TIS) backed by that software TPM.
    #[allow(clippy::too_many_arguments)]
    fn boot_with(
        image: &Path,
        disk: &Path,
        snapshot: bool,
        sticks: &[&Path],
        shell: Option<&Path>,
        tpm: Option<&Swtpm>,
        serial: &Path,
        forwards: &[(u16, u16)],
    ) -> Self {
        let mut cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap().trim().to_owned();
        if shell.is_some() {
            cmdline.push_str(" systemd.debug_shell=ttyS1");
        }
        let mut nic = String::from("user");
        for (host, guest) in forwards {
            nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let child =
            Command::new("qemu-system-x86_64")
                .args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-no-reboot"])
                .arg("-kernel")
                .arg(image.join("vmlinuz"))
                .arg("-initrd")
                .arg(image.join("initrd.img"))
                .arg("-append")
                .arg(&cmdline)
                .arg("-drive")
                .arg(format!(
                    "file={},format=raw,if=virtio,snapshot={}",
                    disk.display(),
                    if snapshot { "on" } else { "off" }
                ))
                .args(sticks.iter().flat_map(|s| {
                    ["-drive".to_owned(), format!("file={},format=raw,if=virtio,readonly=on", s.display())]
                }))
                .args(["-device", "i6300esb", "-display", "none", "-nic", &nic])
                // The boot with a shell also checks the sandbox's devices: virtio-gpu gives a
                // DRM render node (VA-API's kind of device).
                .args(if shell.is_some() { &["-device", "virtio-gpu-pci"][..] } else { &[][..] })
                .args(tpm.iter().flat_map(|t| {
                    [
                        "-chardev".to_owned(),
                        format!("socket,id=chrtpm,path={}", t.sock.display()),
                        "-tpmdev".to_owned(),
                        "emulator,id=tpm0,chardev=chrtpm".to_owned(),
                        "-device".to_owned(),
                        "tpm-tis,tpmdev=tpm0".to_owned(),
                    ]
                }))
                .arg("-serial")
                .arg(format!("file:{}", serial.display()))
                .args(shell.iter().flat_map(|p| {
                    [
                        "-chardev".to_owned(),
                        format!("socket,id=shell,path={},server=on,wait=off", p.display()),
                        "-serial".to_owned(),
                        "chardev:shell".to_owned(),
                    ]
                }))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("qemu-system-x86_64 (cargo xtask setup installs it)");
        Vm { child, serial: serial.to_owned(), shell: shell.map(Path::to_owned), started: Instant::now() }
    }

    /// Runs `script` with bash in the guest's root shell (a boot with `shell`) and returns its
    /// output once a line holds `end`. The script must put `end` (and any marker the caller
    /// looks for) together at run time (`P=x; echo "$P: done"`): input reaching the guest's tty
    /// before `stty -echo` ran is echoed, and an echoed marker would end the wait early.
    fn run_in_guest(&mut self, script: &str, end: &str, secs: u64) -> String {
        let path = self.shell.clone().expect("booted without a shell");
        let mut sock = eventually(60, "the guest shell's socket", || UnixStream::connect(&path).ok());
        sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        // No line editing and no echo: the output is the script's own.
        let input = format!(
            "set +o emacs +o vi; stty -echo\ncat > /run/witness-test.sh <<'WITNESS_TEST_EOF'\n{script}\nWITNESS_TEST_EOF\nbash /run/witness-test.sh\n"
        );
        sock.write_all(input.as_bytes()).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => panic!("the guest shell closed; output so far:\n{}", String::from_utf8_lossy(&out)),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading the guest shell: {e}"),
            }
            let text = strip_ansi(&String::from_utf8_lossy(&out)).replace('\r', "");
            if text.lines().any(|l| l.contains(end)) {
                return text;
            }
            if let Some(st) = self.exited() {
                panic!("qemu exited ({st}) while the guest ran a script; its output:\n{text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "no {end:?} from the guest in {secs}s; output:\n{text}"
            );
        }
    }

    /// The serial log with the first-boot admin password blanked (it goes into test output).
    fn serial(&self) -> String {
        let mut raw = std::fs::read(&self.serial).unwrap_or_default();
        // Whole lines only: a line the console is still writing would read cut short.
        raw.truncate(raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
        let text = strip_ansi(&String::from_utf8_lossy(&raw));
        text.lines()
            .map(|l| match l.find("password: ") {
                Some(i) => format!("{}password: <redacted>", &l[..i]),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the guest to reboot: `-no-reboot` turns a reboot into QEMU's exit.
    fn wait_reboot(&mut self, secs: u64) {
        let started = self.started;
        eventually(secs, "the box to reboot (qemu to exit)", || self.exited());
        println!("boot ended in a reboot after {:.0}s", started.elapsed().as_secs_f64());
    }

    /// Waits for a serial console line holding every one of `parts`; fails early if QEMU exits.
    /// Waits for a serial line holding every one of `parts`; a timeout shows the log's tail, so
    /// a failed boot says where it stopped.
    fn wait_serial(&mut self, parts: &[&str], secs: u64) {
        let start = std::time::Instant::now();
        loop {
            if let Some(st) = self.exited() {
                panic!("qemu exited ({st}) before a line with {parts:?}; serial log:\n{}", self.serial());
            }
            let serial = self.serial();
            if serial.lines().any(|l| parts.iter().all(|p| l.contains(p))) {
                return;
            }
            if start.elapsed() > std::time::Duration::from_secs(secs) {
                let lines: Vec<&str> = serial.lines().collect();
                let tail = lines[lines.len().saturating_sub(80)..].join("\n");
                panic!(
                    "timed out after {secs}s waiting for a line with {parts:?} on the serial console; its last lines:\n{tail}"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

/// A software TPM for one boot (`swtpm socket`, control channel on a UNIX socket for QEMU), its
/// state (seeds, NV, dictionary-attack counters) in a folder kept across boots; it ends with the
/// QEMU that used it.
struct Swtpm {
    child: Child,
    sock: PathBuf,
}

impl Swtpm {
    fn start(state: &Path) -> Self {
        std::fs::create_dir_all(state).unwrap();
        let sock = state.join("swtpm.sock");
        let _ = std::fs::remove_file(&sock);
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm (cargo xtask setup installs it)");
        eventually(10, "swtpm's control socket", || sock.exists().then_some(()));
        Swtpm { child, sock }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key files under /var/lib/witness/keys (from the guest's root shell) that hold a key in
/// clear (a key's name without `.tpm`), and the labels of the boot states the keys are sealed to.
fn clear_keys_in_guest(vm: &mut Vm) -> (Vec<String>, Vec<String>, String) {
    let out = vm.run_in_guest(
        // The markers are put together by the shell: an echo of the typed script (the guest's
        // tty may echo input that arrives before `stty -echo` ran) must not count as output.
        "M=KEYS; echo $M-BEGIN; ls -1 /var/lib/witness/keys; echo $M-LABELS; cut -d' ' -f1 /var/lib/witness/keys/tpm.policy; echo $M-LISTED",
        "KEYS-LISTED",
        60,
    );
    // Only what lies between the markers: the shell's prompt and echoes are around them.
    let section = |from: &str, to: &str| -> Vec<String> {
        let lines: Vec<&str> = out.lines().map(str::trim).collect();
        // A marker may follow the prompt on its line (`root@witness:/# KEYS-BEGIN`).
        let start = lines.iter().rposition(|l| l.ends_with(from)).map(|i| i + 1).unwrap_or(lines.len());
        lines[start..].iter().take_while(|l| !l.contains(to)).filter(|l| !l.is_empty()).map(|l| l.to_string()).collect()
    };
    let clear = section("KEYS-BEGIN", "KEYS-LABELS")
        .into_iter()
        .filter(|n| {
            ["index.key", "search.key", "evidence_ed25519"].contains(&n.as_str())
                || n.starts_with("kek-") && !n.contains('.')
        })
        .collect();
    (clear, section("KEYS-LABELS", "KEYS-LISTED"), out)
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// systemd's status lines colour the unit name: `Started \x1b[0;1;39mwitness.service\x1b[0m`.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads an SSH identification line from the forwarded port. QEMU's user network accepts the
/// connection even before the guest listens (and then closes it), so this retries.
fn ssh_banner(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.starts_with("SSH-2.0-").then_some(line)
}

fn healthz(port: u16) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5"])
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .ok()?;
    let body = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !body.is_empty()).then_some(body)
}

/// Runs a command to success and returns its stdout.
fn run(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(out.status.success(), "{shown} failed ({}): {}{}", out.status, stdout(&out), stderr(&out));
    stdout(&out)
}

/// A signed update bundle of `root` (`rootfs/bundle.sh`; the development key unless `signer`
/// names another key and certificate); returns the root hash it carries.
fn bundle(root: &Path, out: &Path, signer: Option<&Path>) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace().join("rootfs/bundle.sh")).arg("--root").arg(root).arg("--out").arg(out);
    if let Some(keys) = signer {
        cmd.arg("--key").arg(keys.join("dev-signing.key.pem")).arg("--cert").arg(keys.join("dev-signing.cert.pem"));
    }
    let said = run(&mut cmd);
    let hash = said.rsplit("root hash ").next().unwrap().trim().to_owned();
    assert_eq!(hash.len(), 64, "no root hash in bundle.sh's output: {said}");
    hash
}

/// An update stick: an ext4 file system labelled WITNESS-UPD holding `bundle` as
/// witness-update.raucb (moved there).
fn stick(dir: &Path, name: &str, bundle: &Path) -> PathBuf {
    let content = dir.join(format!("{name}-stick"));
    std::fs::create_dir_all(&content).unwrap();
    std::fs::rename(bundle, content.join("witness-update.raucb")).unwrap();
    let mb = std::fs::metadata(content.join("witness-update.raucb")).unwrap().len() / (1 << 20) + 64;
    let img = dir.join(format!("{name}.img"));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-L", "WITNESS-UPD", "-d"])
        .arg(&content)
        .arg(&img)
        .arg(format!("{mb}M")));
    std::fs::remove_dir_all(&content).unwrap();
    img
}

/// The image's kernel, from its bzImage header's version string (`6.1.0-50-amd64 (…) #1 SMP
/// PREEMPT_DYNAMIC Debian 6.1.176-1 (…)`): its release (modules' vermagic) and Debian version.
fn image_kernel(image: &Path) -> (String, String) {
    let k = std::fs::read(image.join("vmlinuz")).unwrap();
    let at = usize::from(u16::from_le_bytes([k[0x20e], k[0x20f]])) + 0x200;
    let end = k[at..].iter().position(|b| *b == 0).map(|n| at + n).unwrap_or(at);
    let text = String::from_utf8_lossy(&k[at..end]).into_owned();
    let release = text.split_whitespace().next().unwrap_or_default().to_owned();
    let debian = text.split("Debian ").nth(1).and_then(|v| v.split_whitespace().next()).unwrap_or_default().to_owned();
    assert!(release.starts_with("6.") && !debian.is_empty(), "no kernel version in vmlinuz's header: {text:?}");
    (release, debian)
}

/// The guest's test drivers, vicodec.ko and gpio-sim.ko (`tests/e2e/guest/build-modules.sh`),
/// built once per kernel and script under `target/tmp/guest-modules-<key>/`. Test only: they
/// reach the guest on the test's own disk ([`test_disk`]), never the image.
fn guest_modules(image: &Path) -> PathBuf {
    let (release, debian) = image_kernel(image);
    let script = workspace().join("tests/e2e/guest/build-modules.sh");
    let mut h = Sha256::new();
    h.update(format!("{release} {debian}\n"));
    h.update(std::fs::read(&script).unwrap());
    let tmp = workspace().join("target/tmp");
    let dir = tmp.join(format!("guest-modules-{}", hex::encode(&h.finalize()[..8])));
    let lock = std::fs::File::create(tmp.join("guest-modules.lock")).unwrap();
    lock.lock().unwrap();
    if !dir.join("gpio-sim.ko").exists() {
        for e in std::fs::read_dir(&tmp).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("guest-modules-") && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let started = Instant::now();
        println!("{}", run(Command::new("bash").arg(&script).args([&release, &debian]).arg(&dir)));
        println!("guest modules built in {:.0}s", started.elapsed().as_secs_f64());
    }
    drop(lock);
    dir
}

/// The test's own disk for the guest (ext4 labelled WITNESS-TEST, read-only in QEMU): the test
/// drivers and the board profile naming the simulated GPIO lines (`tests/e2e/guest/`). The
/// root shell of the test's boot mounts it; the image knows nothing of it.
fn test_disk(dir: &Path, image: &Path) -> PathBuf {
    let content = dir.join("test-disk");
    std::fs::create_dir_all(&content).unwrap();
    let modules = guest_modules(image);
    for ko in ["vicodec.ko", "gpio-sim.ko"] {
        std::fs::copy(modules.join(ko), content.join(ko)).unwrap();
    }
    std::fs::copy(workspace().join("tests/e2e/guest/gpio-sim.toml"), content.join("gpio-sim.toml")).unwrap();
    let img = dir.join("test-disk.img");
    run(Command::new("mkfs.ext4").args(["-q", "-L", "WITNESS-TEST", "-d"]).arg(&content).arg(&img).arg("16M"));
    std::fs::remove_dir_all(&content).unwrap();
    img
}

#[test]
fn boots_updates_into_the_other_slot_and_falls_back_from_a_broken_one() {
    let image = built_image();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let started = Instant::now();

    // A good update: the image's root with one more file and a later version (the box refuses
    // another build of its own version), so it has a root hash of its own.
    let running = std::fs::read_to_string(image.join("version")).unwrap().trim().to_owned();
    let tree = dir.join("update-root");
    run(Command::new("unsquashfs").args(["-q", "-n", "-d"]).arg(&tree).arg(image.join("root.squashfs")));
    std::fs::write(tree.join("etc/witness/version"), format!("{running}.1\n")).unwrap();
    std::fs::write(tree.join("witness-update-test"), "good\n").unwrap();
    let good_root = dir.join("good.squashfs");
    run(Command::new("mksquashfs").arg(&tree).arg(&good_root).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-comp",
        "lz4",
    ]));
    std::fs::remove_file(tree.join("witness-update-test")).unwrap();
    let good_hash = bundle(&good_root, &dir.join("good.raucb"), None);
    let good = stick(dir, "good", &dir.join("good.raucb"));
    // The same root signed by a key the box does not trust.
    let other_keys = dir.join("other-keys");
    run(Command::new("bash").arg(workspace().join("rootfs/signing.sh")).arg(&other_keys));
    bundle(&good_root, &dir.join("foreign.raucb"), Some(&other_keys));
    let foreign = stick(dir, "foreign", &dir.join("foreign.raucb"));
    std::fs::remove_file(&good_root).unwrap();
    // A broken update, signed, later still: its daemon exits at once, so it never reports ready.
    std::fs::write(tree.join("etc/witness/version"), format!("{running}.2\n")).unwrap();
    std::fs::write(
        tree.join("usr/bin/witness"),
        "#!/bin/sh\necho 'witness: a broken build (update test)' >&2\nexit 1\n",
    )
    .unwrap();
    let broken_root = dir.join("broken.squashfs");
    run(Command::new("mksquashfs").arg(&tree).arg(&broken_root).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-comp",
        "lz4",
    ]));
    // An older release, validly signed: the same tree saying it is version 0.0.1.
    std::fs::write(tree.join("etc/witness/version"), "0.0.1\n").unwrap();
    let older_root = dir.join("older.squashfs");
    run(Command::new("mksquashfs").arg(&tree).arg(&older_root).args([
        "-noappend",
        "-quiet",
        "-no-progress",
        "-comp",
        "lz4",
    ]));
    std::fs::remove_dir_all(&tree).unwrap();
    let broken_hash = bundle(&broken_root, &dir.join("broken.raucb"), None);
    let broken = stick(dir, "broken", &dir.join("broken.raucb"));
    std::fs::remove_file(&broken_root).unwrap();
    bundle(&older_root, &dir.join("older.raucb"), None);
    let older = stick(dir, "older", &dir.join("older.raucb"));
    std::fs::remove_file(&older_root).unwrap();
    // Boot 4's own disk: the test drivers (vicodec, gpio-sim) and the GPIO board profile.
    let test_drivers = test_disk(dir, &image);
    println!("bundles and sticks made in {:.0}s", started.elapsed().as_secs_f64());

    let disk = dir.join("disk.raw");
    run(Command::new("cp").arg("--sparse=always").arg(image.join("disk.raw")).arg(&disk));
    let a_hash = std::fs::read_to_string(image.join("roothash")).unwrap().trim().to_owned();
    let (ssh, web, rdp) = (free_port(), free_port(), free_port());
    let forwards = [(ssh, 2222), (web, 8443), (rdp, 3389)];
    // The box's TPM: one software TPM state for the box's whole life on this disk.
    let tpm_state = dir.join("tpm");

    // Boot 1: slot A, first boot; the keys are sealed to the TPM and the measured slot A; the
    // stick's bundle goes into slot B (the keys sealed for B's state first), then the box reboots.
    let tpm = Swtpm::start(&tpm_state);
    let mut vm = Vm::boot_with(&image, &disk, false, &[&good], None, Some(&tpm), &dir.join("serial1.log"), &forwards);
    vm.wait_serial(&["witness-boot: booting slot a (root-a, root hash", &a_hash, "state good"], 300);
    vm.wait_serial(&["Started witness.service"], 600);
    let banner = eventually(120, "an SSH banner on the forwarded jump-path port", || ssh_banner(ssh));
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    let body = eventually(120, "/healthz over HTTPS on the forwarded console port", || healthz(web));
    assert_eq!(body, "ok");
    println!("booted to /healthz in {:.0}s (TCG)", vm.started.elapsed().as_secs_f64());
    vm.wait_serial(&["witness-update: installed from /dev/vdb"], 600);
    vm.wait_serial(&["witness-update: slot b is primary now (trial, 1 boots): rebooting"], 60);
    let serial = vm.serial();
    vm.wait_reboot(120);
    // First boot: the data partition was made and the admin password shown on the console.
    assert!(serial.contains("witness-data: created"), "no data partition created:\n{serial}");
    assert!(serial.contains("WITNESS FIRST BOOT"), "no first-boot banner:\n{serial}");
    assert!(serial.contains("admin user: admin  password: <redacted>"), "no admin password on the console:\n{serial}");
    // Every unit came up (systemd prints [FAILED] on the console for one that did not).
    assert!(!serial.contains("FAILED"), "a unit failed during boot:\n{serial}");
    // Nobody can log in on the console: no getty prompt.
    assert!(!serial.contains("login:"), "a login prompt on the console:\n{serial}");
    // The TPM: slot A measured before the data partition, every key sealed at first boot.
    assert!(serial.contains("measured slot a into PCR 15"), "slot a not measured:\n{serial}");
    assert!(
        serial.contains("witness-firstboot: the box's keys are sealed to its TPM"),
        "keys not sealed at first boot:\n{serial}"
    );
    drop(tpm);

    // Boot 2: slot B with the new root, on trial until the daemon is ready, then marked good. A
    // bundle signed by another key is refused, and so is an older release validly signed
    // (nobody types --allow-downgrade on the console); the broken one goes into slot A.
    // The keys open in slot B's measured state: the daemon comes up.
    let tpm = Swtpm::start(&tpm_state);
    let mut vm = Vm::boot_with(
        &image,
        &disk,
        false,
        &[&foreign, &older, &broken],
        None,
        Some(&tpm),
        &dir.join("serial2.log"),
        &forwards,
    );
    vm.wait_serial(&["witness-boot: booting slot b (root-b, root hash", &good_hash, "trial boot: 0 more left"], 300);
    let body = eventually(720, "/healthz from slot b", || healthz(web));
    assert_eq!(body, "ok");
    vm.wait_serial(&["witness-boot: slot b came up healthy", "marked good"], 300);
    vm.wait_serial(&["witness-update: refused the bundle on /dev/vdb"], 600);
    let serial = vm.serial();
    let refusal = serial.lines().find(|l| l.contains("refused the bundle on /dev/vdb")).unwrap();
    assert!(refusal.contains("signature verification failed"), "refused for another reason: {refusal}");
    vm.wait_serial(&["witness-update: refused the bundle on /dev/vdc"], 600);
    let serial = vm.serial();
    let refusal = serial.lines().find(|l| l.contains("refused the bundle on /dev/vdc")).unwrap();
    assert!(
        refusal.contains(&format!("version 0.0.1 is older than the running {running}.1: refusing a downgrade")),
        "the older bundle was refused for another reason: {refusal}"
    );
    vm.wait_serial(&["witness-update: no --allow-downgrade on the console: version 0.0.1 not installed"], 120);
    vm.wait_serial(&["witness-update: installed from /dev/vdd"], 600);
    vm.wait_serial(&["witness-update: slot a is primary now (trial, 1 boots): rebooting"], 60);
    let serial = vm.serial();
    vm.wait_reboot(120);
    assert!(!serial.contains("WITNESS FIRST BOOT"), "slot b did not keep the data partition:\n{serial}");

    // Boot 3: slot A with the broken root, on trial; its daemon fails, so the box reboots.
    drop(tpm);
    let tpm = Swtpm::start(&tpm_state);
    let mut vm = Vm::boot_with(&image, &disk, false, &[], None, Some(&tpm), &dir.join("serial3.log"), &forwards);
    vm.wait_serial(&["witness-boot: booting slot a (root-a, root hash", &broken_hash, "trial boot: 0 more left"], 300);
    vm.wait_serial(&["witness: a broken build (update test)"], 600);
    vm.wait_serial(&["witness-boot: slot a did not come up healthy", "rebooting"], 300);
    vm.wait_reboot(120);

    // Boot 4: slot A used up its trial without being marked good: back to slot B, still good.
    // This boot also checks the egress firewall, from a root shell on a second serial port.
    let shell = dir.join("shell.sock");
    drop(tpm);
    let tpm = Swtpm::start(&tpm_state);
    let mut vm = Vm::boot_with(
        &image,
        &disk,
        false,
        &[&test_drivers],
        Some(&shell),
        Some(&tpm),
        &dir.join("serial4.log"),
        &forwards,
    );
    vm.wait_serial(&["witness-boot: slot a was not marked good within its trial boots: falling back to slot b"], 300);
    vm.wait_serial(&["witness-boot: booting slot b (root-b, root hash", &good_hash, "state good"], 60);
    let body = eventually(720, "/healthz from slot b after the fall-back", || healthz(web));
    assert_eq!(body, "ok");
    let serial = vm.serial();
    assert!(!serial.contains("trial boot:") && !serial.contains("is on trial"), "slot b was on trial again:\n{serial}");
    assert!(!serial.contains("a broken build"), "the broken root ran again:\n{serial}");
    // The fourth boot on the box's TPM: its keys opened again (the daemon is up), none is in
    // clear, and they are sealed for both slots' measured states.
    let (clear, labels, listed) = clear_keys_in_guest(&mut vm);
    assert!(clear.is_empty(), "keys in clear under /var/lib/witness/keys: {clear:?}\n{listed}");
    let mut labels = labels;
    labels.sort();
    assert_eq!(labels, ["a", "b"], "the boot states the keys are sealed to; the guest said:\n{listed}");
    egress_is_only_what_the_index_names(&mut vm);
    encoder_devices_open_inside_the_sandbox(&mut vm);
    panel_drives_simulated_gpio_lines(&mut vm);
    records_and_plays_back_with_sealed_keys(&mut vm, ssh, rdp, web);
    drop(vm);
    drop(tpm);

    // Boot 5: the same disk with a fresh TPM (another machine, or a cleared TPM): nothing opens,
    // the console says so, and the daemon never serves.
    let fresh = Swtpm::start(&dir.join("fresh-tpm"));
    let mut vm = Vm::boot_with(&image, &disk, false, &[], None, Some(&fresh), &dir.join("serial5.log"), &forwards);
    vm.wait_serial(&["witness-boot: booting slot b (root-b, root hash", &good_hash], 300);
    vm.wait_serial(&["The box's TPM will not open "], 600);
    // The console message is several lines; under load its last one reaches the serial log later.
    vm.wait_serial(&["Recovery: README"], 120);
    let serial = vm.serial();
    assert!(serial.contains("WITNESS: KEYS WILL NOT OPEN"), "{serial}");
    assert!(serial.contains("Recovery: README"), "{serial}");
    assert!(healthz(web).is_none(), "the box served without its keys");
    println!(
        "five boots (update, refusals, trial, fall-back, egress, devices, TPM) in {:.0}s",
        started.elapsed().as_secs_f64()
    );
}

/// A TCP listener on the host (the guest reaches it at 10.0.2.2) counting the connections it
/// accepts.
struct Counted {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Counted {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                count.fetch_add(1, Ordering::SeqCst);
                drop(conn);
            }
        });
        Counted { port, accepted }
    }
}

/// Outbound is default-deny: from inside the guest, a SYN to a host port no target names is
/// dropped (the connection gets no answer; counted and logged); once `witness target add` names
/// it, the daemon's published allow-list is loaded by witness-egress.service and the same
/// connection goes through, without a reboot, while the other port stays closed.
fn egress_is_only_what_the_index_names(vm: &mut Vm) {
    let started = Instant::now();
    let (target, other) = (Counted::start(), Counted::start());
    let script = format!(
        r#"A={a}; B={b}; P=egress-test
say() {{ echo "$P: $*"; }}
try() {{
    err=$(timeout 5 bash -c "exec 3<>/dev/tcp/10.0.2.2/$1" 2>&1)
    case $? in 0) echo connected ;; 124) echo "no answer in 5s" ;; *) echo "failed (${{err##*: }})" ;; esac
}}
# The daemon published the allow-list at its start; wait until the loader is done with it.
for i in $(seq 120); do
    [ -s /var/lib/witness/run/egress.json ] && [ "$(systemctl show -P ActiveState witness-egress.service)" != activating ] && break
    sleep 1
done
say "before $A: $(try $A)"
say "before $B: $(try $B)"
t0=$(date +%s)
echo secret | setpriv --reuid=witness --regid=witness --init-groups --no-new-privs     /usr/bin/witness --data /var/lib/witness target add egress-test --ssh 10.0.2.2:$A --login test --password-stdin
for i in $(seq 120); do nft list set inet witness egress4 | grep -q "10.0.2.2 . $A" && break; sleep 0.5; done
say "in the firewall after $(( $(date +%s) - t0 ))s"
say "after $A: $(try $A)"
say "after $B: $(try $B)"
say "dropped: $(nft list counter inet witness egress_dropped | grep -o 'packets [0-9]*')"
say "logged: $(dmesg | grep 'witness egress drop: ' | grep -o 'DPT=[0-9]*' | tr '\n' ' ')"
say "done""#,
        a = target.port,
        b = other.port,
    );
    let out = vm.run_in_guest(&script, "egress-test: done", 300);
    // A line may follow the shell's prompt: take it from the marker on.
    let said: Vec<&str> = out.lines().filter_map(|l| l.find("egress-test: ").map(|i| &l[i..])).collect();
    println!("egress check in {:.0}s:\n{}", started.elapsed().as_secs_f64(), said.join("\n"));
    let line = |what: &str| said.iter().find(|l| l.starts_with(&format!("egress-test: {what}"))).copied().unwrap_or("");
    let (a, b) = (target.port, other.port);
    // Dropped by the output chain: the SYNs never leave (the host's listeners count nothing),
    // so the connection gets no answer at all.
    assert_eq!(line(&format!("before {a}:")), format!("egress-test: before {a}: no answer in 5s"), "{out}");
    assert_eq!(line(&format!("before {b}:")), format!("egress-test: before {b}: no answer in 5s"), "{out}");
    assert_eq!(line(&format!("after {a}:")), format!("egress-test: after {a}: connected"), "{out}");
    assert_eq!(line(&format!("after {b}:")), format!("egress-test: after {b}: no answer in 5s"), "{out}");
    let dropped: u64 = line("dropped:").rsplit(' ').next().unwrap_or("").parse().unwrap_or(0);
    assert!(dropped >= 3, "the drop counter did not count the three refused connections: {out}");
    let logged = line("logged:");
    assert!(logged.contains(&format!("DPT={a}")) && logged.contains(&format!("DPT={b}")), "no drop log lines: {out}");
    assert_eq!(target.accepted.load(Ordering::SeqCst), 1, "the target port saw other than the one allowed connection");
    assert_eq!(other.accepted.load(Ordering::SeqCst), 0, "a connection to a port no target names reached the host");
}

/// The shipped image records with its keys sealed to the TPM (a reboot that unsealed them):
/// targets, users and grants made with the CLI inside the guest, an SSH session (stock `ssh`)
/// and an RDP session (`xfreerdp` to an NLA target, video by the software encoder) through the
/// forwarded ports, each recording sealed in the guest's index, and both played back through
/// the box's console by an auditor (the SSH text holds what was printed, the RDP video is an
/// MP4 `ffprobe` reads with frames of the target's colour).
fn records_and_plays_back_with_sealed_keys(vm: &mut Vm, ssh: u16, rdp: u16, web: u16) {
    use crate::rdp::{RED, SHADOW_PASS, SHADOW_USER, STAYED_UP, Shadow, Xvfb, screen_shows};
    let started = Instant::now();
    let sshd = Sshd::start();
    let shadow = Shadow::start();
    shadow.screen.set_color("red");
    let keys = tempfile::tempdir().unwrap();
    let alice_key = keys.path().join("alice");
    keygen(&alice_key);
    let identity = std::fs::read_to_string(sshd.identity()).unwrap();
    let alice_pub = std::fs::read_to_string(alice_key.with_extension("pub")).unwrap();
    let script = format!(
        r#"P=rec-test
W="setpriv --reuid=witness --regid=witness --init-groups --no-new-privs /usr/bin/witness --data /var/lib/witness"
umask 077
cat > /run/witness-id <<'KEY_EOF'
{identity}KEY_EOF
echo '{alice_pub}' > /run/witness-alice.pub
chown witness /run/witness-id /run/witness-alice.pub
$W target add web01 --ssh 10.0.2.2:{sshd_port} --login root --identity /run/witness-id || echo "$P: target add web01 failed"
echo '{shadow_pass}' | $W target add nla01 --rdp 10.0.2.2:{shadow_port} --login {shadow_user} --password-stdin || echo "$P: target add nla01 failed"
echo alice-pw | $W user add alice --password-stdin --ssh-key /run/witness-alice.pub || echo "$P: user add alice failed"
echo audrey-pw | $W user add audrey --password-stdin --role auditor || echo "$P: user add audrey failed"
$W grant alice web01 && $W grant alice nla01 || echo "$P: grant failed"
rm -f /run/witness-id
for i in $(seq 120); do
    nft list set inet witness egress4 | grep -q "10.0.2.2 . {sshd_port}" && nft list set inet witness egress4 | grep -q "10.0.2.2 . {shadow_port}" && break
    sleep 0.5
done
echo "$P: ready""#,
        sshd_port = sshd.port,
        shadow_port = shadow.port,
        shadow_pass = SHADOW_PASS,
        shadow_user = SHADOW_USER,
        alice_pub = alice_pub.trim(),
    );
    let out = vm.run_in_guest(&script, "rec-test: ready", 300);
    assert!(
        !out.lines().any(|l| l.contains("rec-test: ") && l.contains("failed")),
        "setting up the guest's users and targets: {out}"
    );

    // SSH: a command through the jump path, its output read back from the recording.
    let marker = "qemu-sealed-$((6*7))-marker";
    let o = Command::new("ssh")
        .args(["-o", "ConnectTimeout=120"])
        .args(client_options())
        .arg("-i")
        .arg(&alice_key)
        .arg("-p")
        .arg(ssh.to_string())
        .arg("alice@web01@127.0.0.1")
        .arg(format!("echo {marker}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(stdout(&o).contains("qemu-sealed-42-marker"), "the SSH session through the guest: {}", stderr(&o));

    // RDP: the client sees the target's screen through the box, the box encodes it.
    let screen = Xvfb::start();
    let log = keys.path().join("xfreerdp.log");
    let client = Command::new("timeout")
        .args(["45", "xfreerdp", &format!("/v:127.0.0.1:{rdp}"), "/u:alice@nla01", "/p:alice-pw"])
        .args(["/cert:ignore", "/bpp:32", "/timeout:60000"])
        .env("DISPLAY", &screen.display)
        .env("HOME", keys.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("xfreerdp");
    let mut client = client;
    screen_shows(&screen, &[RED], 40, |_| {});
    let st = client.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(STAYED_UP),
        "the RDP session did not stay up: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Both recordings sealed in the guest's index, with the keys the TPM opened.
    let rows = vm.run_in_guest(
        r#"W="setpriv --reuid=witness --regid=witness --init-groups --no-new-privs /usr/bin/witness --data /var/lib/witness"
for i in $(seq 240); do
    $W recordings --json > /run/rec.json && ! grep -Eq '"status": ?"(recording|processing)"' /run/rec.json && [ "$(grep -o "\"session_id\"" /run/rec.json | wc -l)" -ge 2 ] && break
    sleep 1
done
P=rec
echo "$P-rows: $(tr -d '\n' < /run/rec.json)"
echo "$P-sessions: $($W sessions --json | tr -d '\n')"
echo "$P-test: listed""#,
        "rec-test: listed",
        400,
    );
    let field = |name: &str| -> serde_json::Value {
        let line =
            rows.lines().find_map(|l| l.find(name).map(|i| &l[i + name.len()..])).unwrap_or_else(|| panic!("{rows}"));
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let (recs, sessions) = (field("rec-rows: "), field("rec-sessions: "));
    let protocol_of = |rec: &serde_json::Value| {
        sessions.as_array().unwrap().iter().find(|s| s["id"] == rec["session_id"]).map(|s| s["protocol"].clone())
    };
    let recs = recs.as_array().unwrap();
    for r in recs {
        assert!(r["status"] == "completed" || r["status"] == "uploaded", "a recording did not finish: {r}");
    }
    let of = |protocol: &str| {
        recs.iter()
            .find(|r| protocol_of(r).is_some_and(|p| p == protocol))
            .unwrap_or_else(|| panic!("no {protocol} recording: {recs:?} {sessions}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ssh_rec, rdp_rec) = (of("ssh"), of("rdp"));

    // Played back through the box's console, by an auditor.
    let jar = keys.path().join("cookies");
    let base = format!("https://127.0.0.1:{web}");
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-sk", "--max-time", "300", "-b"])
            .arg(&jar)
            .arg("-c")
            .arg(&jar)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "curl {args:?}: {}", stderr(&o));
        o.stdout
    };
    let login = curl(&[
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"user":"audrey","password":"audrey-pw"}"#,
        &format!("{base}/api/v1/login"),
    ]);
    assert!(String::from_utf8_lossy(&login).contains("csrf"), "{}", String::from_utf8_lossy(&login));
    let cast = curl(&[&format!("{base}/api/v1/recordings/{ssh_rec}/content")]);
    assert!(
        String::from_utf8_lossy(&cast).contains("qemu-sealed-42-marker"),
        "the SSH recording played back lacks what was printed: {}",
        String::from_utf8_lossy(&cast)
    );
    let video = keys.path().join("rdp.mp4");
    std::fs::write(&video, curl(&[&format!("{base}/api/v1/recordings/{rdp_rec}/content")])).unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0"])
        .arg(&video)
        .output()
        .unwrap();
    let probed = stdout(&probe);
    assert!(
        probe.status.success() && probed.starts_with("h264,"),
        "the RDP video played back: {probed} {}",
        stderr(&probe)
    );
    let frames: u64 = probed.trim().rsplit(',').next().unwrap().parse().unwrap_or(0);
    assert!(frames >= 1, "no frame in the RDP video: {probed}");
    // The video shows the target's red (sampled away from the pointer), and ends on it.
    let seen = crate::rdp_video::colours_at(&video, "iw/4", "ih/4");
    assert!(
        seen.last().is_some_and(|c| crate::rdp_video::near(*c, RED)),
        "the RDP video played back does not end on the target's red: {seen:?}"
    );
    println!(
        "recorded and played back in the guest in {:.0}s: ssh {ssh_rec}, rdp {rdp_rec} ({frames} frames)",
        started.elapsed().as_secs_f64()
    );
}

/// The daemon's sandbox opens the board's encoder devices: the V4L2 nodes of `vicodec` (a V4L2
/// memory-to-memory codec; Debian's kernel has none, so the test's own build, loaded from the
/// test's disk with `insmod`, its dependencies the image's modules) and a DRM render node
/// (virtio-gpu) are opened by `witness encoders --json` run in a copy of witness.service (same
/// sandbox, same user and groups), never "permission denied". The same boot loads `gpio-sim`
/// (also the test's build) and makes three named lines through configfs for
/// [`panel_drives_simulated_gpio_lines`]; a module the kernel refuses (signature, lockdown, a
/// missing symbol) fails here with the kernel's words.
fn encoder_devices_open_inside_the_sandbox(vm: &mut Vm) {
    let started = Instant::now();
    let script = r#"P=hw-test
say() { echo "$P: $*"; }
udevadm settle
D=/run/witness-test-disk
mkdir -p $D
mount -o ro,noload /dev/disk/by-label/WITNESS-TEST $D || say "failed: mounting the test disk"
# vicodec's dependencies are the image's own modules (rootfs/kernel-modules.txt).
modprobe -a videodev mc videobuf2-common videobuf2-v4l2 videobuf2-vmalloc || say "failed: modprobe of vicodec's dependencies"
insmod $D/vicodec.ko || say "failed: insmod vicodec.ko: $(dmesg | tail -n 3 | tr '\n' ' ')"
modprobe configfs || say "failed: modprobe configfs"
mountpoint -q /sys/kernel/config || mount -t configfs configfs /sys/kernel/config
insmod $D/gpio-sim.ko || say "failed: insmod gpio-sim.ko: $(dmesg | tail -n 3 | tr '\n' ' ')"
say "kernel: tainted $(cat /proc/sys/kernel/tainted), lockdown $(cat /sys/kernel/security/lockdown 2>&1), $(dmesg | grep -m1 -o 'vicodec: module verification failed.*')"
# The front panel's lines, named as tests/e2e/guest/gpio-sim.toml names them.
G=/sys/kernel/config/gpio-sim/witness-test
mkdir -p $G/bank0 && echo 3 > $G/bank0/num_lines || say "failed: making a gpio-sim bank"
i=0
for name in WITNESS_LED_GREEN WITNESS_LED_RED WITNESS_BUTTON; do
    mkdir -p $G/bank0/line$i && echo $name > $G/bank0/line$i/name
    i=$((i + 1))
done
echo 1 > $G/live || say "failed: gpio-sim live"
udevadm settle
S=/sys/devices/platform/$(cat $G/dev_name)/$(cat $G/bank0/chip_name)
[ -e $S/sim_gpio0/value ] || say "failed: no $S/sim_gpio0/value"
echo $S > /run/witness-gpio-sim
say "gpio: $(cat $G/bank0/chip_name) at $S: $(ls -l /dev/gpiochip* | awk '{print $1, $4, $NF}' | tr '\n' ';')"
say "nodes $(ls -l /dev/video* /dev/dri/renderD* 2>&1 | awk '{print $1, $4, $NF}' | tr '\n' ';')"
say "v4l2: $(for v in /sys/class/video4linux/video*; do echo "/dev/${v##*/}=$(cat $v/name)"; done | tr '\n' ' ')"
# witness.service as it is, but a one-shot `witness encoders --json` writing to a file.
sed -e 's/^Type=notify/Type=oneshot/' -e '/^NotifyAccess=/d' -e '/^WatchdogSec=/d' -e '/^Restart/d'     -e '/^RuntimeDirectory/d' -e '/^Environment=WITNESS_CONSOLE_DIR/d' -e '/^\[Install\]/,$d'     -e 's#^ExecStart=.*#ExecStart=/usr/bin/witness --data /var/lib/witness encoders --json#'     /etc/systemd/system/witness.service > /run/systemd/system/witness-probe.service
echo 'StandardOutput=file:/run/witness-probe.json' >> /run/systemd/system/witness-probe.service
systemctl daemon-reload
systemctl start witness-probe.service || say "failed: the probe unit"
say "result $(tr -d '\n' < /run/witness-probe.json)"
say "done""#;
    let out = vm.run_in_guest(script, "hw-test: done", 600);
    let said: Vec<&str> = out.lines().filter_map(|l| l.find("hw-test: ").map(|i| &l[i..])).collect();
    println!("device check in {:.0}s:\n{}", started.elapsed().as_secs_f64(), said.join("\n"));
    let failed: Vec<&&str> = said.iter().filter(|l| l.starts_with("hw-test: failed")).collect();
    assert!(failed.is_empty(), "loading the test drivers in the guest: {failed:?}\n{}", said.join("\n"));
    // vicodec's nodes: an encoder and two decoders, each a /dev/videoN.
    let v4l2 = said.iter().find_map(|l| l.strip_prefix("hw-test: v4l2: ")).unwrap_or_else(|| panic!("{out}"));
    let vicodec: Vec<&str> = v4l2
        .split_whitespace()
        .filter_map(|e| e.split_once('=').filter(|(_, n)| n.starts_with("stateful-encoder")).map(|(p, _)| p))
        .collect();
    assert_eq!(vicodec.len(), 1, "no vicodec encoder node in the guest: {v4l2}");
    let result = said.iter().find_map(|l| l.strip_prefix("hw-test: result ")).unwrap_or_else(|| panic!("{out}"));
    let json: serde_json::Value = serde_json::from_str(result).unwrap_or_else(|e| panic!("{e}: {result}"));
    check_encoder_devices(&json, vicodec[0]);
}

/// An encoder probe's result (`witness encoders --json`, or the daemon's `run/encoders.json`)
/// saw `video` (vicodec's encoder node) and a render node, each opened, never "permission
/// denied"; vicodec codes FWHT, not H.264, so the V4L2 H.264 encoder is "device present, encoder
/// failed", and a software encoder is chosen.
fn check_encoder_devices(json: &serde_json::Value, video: &str) {
    let probes = json["probes"].as_array().unwrap_or_else(|| panic!("{json}"));
    let row = |element: &str| probes.iter().find(|p| p["element"] == element).unwrap_or_else(|| panic!("{json}"));
    for (element, node) in [("v4l2h264enc", video), ("vah264enc", "/dev/dri/renderD")] {
        let p = row(element);
        assert_ne!(p["reason"], "permission denied", "{element}: {p}");
        assert_eq!(p["reason"], "device present, encoder failed", "{element}: {p}");
        let devices = p["devices"].as_array().unwrap();
        assert!(
            devices.iter().all(|d| d["access"] != "permission denied"),
            "{element}: a node denied in the sandbox: {p}"
        );
        assert!(
            devices.iter().any(|d| d["path"].as_str().unwrap().starts_with(node) && d["access"] == "opened"),
            "{element}: {node} not opened in the sandbox: {p}"
        );
    }
    assert!(json["chosen"].is_string(), "a software encoder still works: {json}");
}

/// The front panel on GPIO lines a board profile names: `tests/e2e/guest/gpio-sim.toml` (on the
/// test's disk, named in witness.toml's `[board] profile`) names the three gpio-sim lines
/// [`encoder_devices_open_inside_the_sandbox`] made. witness.service is restarted (the board is
/// opened at the daemon's start): while it comes up the green LED line blinks (booting), once
/// ready it stays on with the red one off; a press of the button (the line's pull set through
/// gpio-sim's sysfs) is logged by the daemon and published in `run/panel.json`. The running
/// daemon's own encoder probe (`run/encoders.json`, made at its start, vicodec loaded) opened
/// the V4L2 and render nodes. witness.toml is put back (the next start runs as before).
fn panel_drives_simulated_gpio_lines(vm: &mut Vm) {
    let started = Instant::now();
    let script = r#"P=panel-test
say() { echo "$P: $*"; }
S=$(cat /run/witness-gpio-sim)
W=/var/lib/witness
cp -p $W/witness.toml /run/witness.toml.saved
grep -q '^\[board\]' $W/witness.toml && say "failed: witness.toml has a [board] section already"
install -o witness -g witness -m 0600 /run/witness-test-disk/gpio-sim.toml $W/gpio-sim.toml
printf '\n[board]\nprofile = "%s"\n' $W/gpio-sim.toml >> $W/witness.toml
# The LED lines' values as the daemon drives them, sampled (bash builtins only: no fork).
(
    end=$((SECONDS + 240))
    while [ $SECONDS -lt $end ] && [ ! -e /run/witness-leds.stop ]; do
        read -r g < $S/sim_gpio0/value; read -r r < $S/sim_gpio1/value
        echo "$EPOCHREALTIME $g $r"
        sleep 0.03
    done > /run/witness-leds.log
) &
sampler=$!
since=$(date +%s)
systemctl restart witness.service || say "failed: restarting witness.service"
log() { journalctl -u witness.service --since "@$since" -o cat --no-pager; }
for i in $(seq 480); do log | grep 'front panel' | grep -q ready && break; sleep 0.5; done
# Steady on for a while once ready.
sleep 4
touch /run/witness-leds.stop
wait $sampler
echo pull-up > $S/sim_gpio2/pull
sleep 1
echo pull-down > $S/sim_gpio2/pull
for i in $(seq 60); do log | grep -q 'button pressed' && break; sleep 0.5; done
# The daemon probes the encoders off its start path (a child process each): wait for its result.
for i in $(seq 360); do log | grep -q 'video encoder chosen\|probing video encoders failed' && break; sleep 0.5; done
sleep 1
cp -p /run/witness.toml.saved $W/witness.toml
rm -f $W/gpio-sim.toml
say "profile: $(log | grep -m1 'board profile')"
say "board: $(log | grep -m1 'board parts cannot be opened')"
say "states: $(log | grep 'front panel' | tr '\n' ' ')"
say "button: $(log | grep 'button pressed' | tr '\n' ' ')"
say "panel $(tr -d '\n' < $W/run/panel.json)"
say "encoders $(tr -d '\n' < $W/run/encoders.json)"
say "v4l2: $(for v in /sys/class/video4linux/video*; do echo "/dev/${v##*/}=$(cat $v/name)"; done | tr '\n' ' ')"
say "samples $(wc -l < /run/witness-leds.log)"
# Only the changes, with the first and the last sample.
say "leds $(awk 'NR == 1 || $2 " " $3 != last { print } { last = $2 " " $3; line = $0 } END { print line }' /run/witness-leds.log | tr '\n' ';')"
say "done""#;
    let out = vm.run_in_guest(script, "panel-test: done", 600);
    let said: Vec<&str> = out.lines().filter_map(|l| l.find("panel-test: ").map(|i| &l[i..])).collect();
    println!("panel check in {:.0}s:\n{}", started.elapsed().as_secs_f64(), said.join("\n"));
    let line = |what: &str| {
        said.iter()
            .find_map(|l| l.strip_prefix(&format!("panel-test: {what}")))
            .unwrap_or_else(|| panic!("no {what:?} from the guest:\n{out}"))
    };
    let failed: Vec<&&str> = said.iter().filter(|l| l.starts_with("panel-test: failed")).collect();
    assert!(failed.is_empty(), "{failed:?}\n{}", said.join("\n"));
    assert!(
        line("profile: ").contains("qemu-gpio-sim"),
        "the daemon did not take the GPIO profile: {}",
        said.join("\n")
    );
    assert_eq!(line("board: ").trim(), "", "the profile's lines did not open: {}", said.join("\n"));
    let states = line("states: ");
    let (booting, ready) = (states.find("booting"), states.rfind("ready"));
    assert!(booting.is_some() && ready > booting, "the panel did not go booting → ready: {states}");
    // The LED lines: (time, green, red) at each change.
    let samples: Vec<(f64, u8, u8)> = line("leds ")
        .split(';')
        .filter_map(|s| {
            let mut f = s.split_whitespace();
            Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect();
    let count: usize = line("samples ").trim().parse().unwrap_or(0);
    assert!(samples.len() >= 2 && count >= 50, "too few LED samples ({count}): {samples:?}");
    let (end, last_green, last_red) = *samples.last().unwrap();
    // The last change: from it on the lines held to the end of sampling (4 s after "ready").
    let steady_since = samples[..samples.len() - 1].last().map(|s| s.0).unwrap_or(samples[0].0);
    assert!(
        last_green == 1 && last_red == 0 && end - steady_since >= 3.0,
        "ready: the green LED line is not steadily on, or the red one not off: {samples:?}"
    );
    // Booting: the green line blinked (on and off again) before it stayed on.
    let green_changes = samples.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(green_changes >= 3, "booting: the green LED line did not blink: {samples:?}");
    assert!(samples.iter().all(|s| s.2 == 0), "the red LED line came on (a fault?): {samples:?}");
    // The button: seen by the daemon (its log and the published panel).
    assert!(line("button: ").contains("button pressed"), "the button press was not seen: {}", said.join("\n"));
    let panel: serde_json::Value = serde_json::from_str(line("panel ")).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(panel["last_button"], "short", "{panel}");
    assert_eq!(panel["profile"], "qemu-gpio-sim", "{panel}");
    // The running service's own probe, made at its start with vicodec loaded.
    let v4l2 = line("v4l2: ");
    let video = v4l2
        .split_whitespace()
        .find_map(|e| e.split_once('=').filter(|(_, n)| n.starts_with("stateful-encoder")).map(|(p, _)| p))
        .unwrap_or_else(|| panic!("{v4l2}"));
    let encoders: serde_json::Value =
        serde_json::from_str(line("encoders ")).unwrap_or_else(|e| panic!("{e}: {}", line("encoders ")));
    check_encoder_devices(&encoders, video);
}

#[test]
fn a_flipped_byte_in_the_root_slot_stops_the_boot() {
    let image = built_image();
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.raw");
    let copy = Command::new("cp").arg("--sparse=always").arg(image.join("disk.raw")).arg(&disk).status().unwrap();
    assert!(copy.success());
    // Root slot A starts at 1 MiB; its first block holds the squashfs superblock, read at mount.
    let at = 1024 * 1024 + 100;
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&disk).unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    drop(f);

    let (ssh, web) = (free_port(), free_port());
    let mut vm = Vm::boot(&image, &disk, &tmp.path().join("serial.log"), &[(ssh, 2222), (web, 8443)]);
    // restart-on-corruption: the kernel restarts, and -no-reboot makes QEMU exit.
    let st = eventually(420, "qemu to exit after dm-verity found the corruption", || vm.exited());
    let serial = vm.serial();
    assert!(
        serial.contains("verity") && serial.contains("is corrupted"),
        "no dm-verity corruption report ({st}):\n{serial}"
    );
    assert!(!serial.contains("Started witness.service"), "the daemon started from a corrupted root:\n{serial}");
    assert!(ssh_banner(ssh).is_none());
}

/// The downgrade rule the update stick and RAUC's pre-install handler share, run as the box runs
/// it: an older release is refused even though validly signed, unless the console allowed
/// exactly that version, and so is another build of the running version; newer go in; anything
/// that is not a dotted number is refused.
#[test]
fn an_older_release_is_refused_unless_the_console_allowed_that_version() {
    let script = workspace().join("rootfs/overlay/usr/libexec/witness/update-version-check");
    let check = |running: &str, bundle: &str, allowed: &str| {
        let out = Command::new("sh").arg(&script).args([running, bundle, allowed]).output().unwrap();
        (out.status.success(), stderr(&out))
    };
    let (ok, why) = check("0.2.0", "0.2.0", "");
    assert!(!ok && why.contains("refusing another build of the same version"), "another build of one version: {why}");
    assert!(check("0.2.0", "0.2.0", "0.2.0").0, "allowed on the console for exactly that version");
    assert!(check("0.2.0.20261207195800", "0.2.0.20261207195801", "").0, "a later build goes in");
    assert!(check("0.2.0", "0.3.0", "").0);
    assert!(check("0.9.0", "0.10.0", "").0, "versions compare by number, not as text");
    let (ok, why) = check("0.10.0", "0.9.0", "");
    assert!(!ok && why.contains("version 0.9.0 is older than the running 0.10.0: refusing a downgrade"), "{why}");
    let (ok, why) = check("0.2.0", "0.1.9", "0.1.8");
    assert!(!ok, "allowing another version allows nothing: {why}");
    let (ok, why) = check("0.2.0", "0.1.9", "0.1.9");
    assert!(ok && why.contains("allowed with --allow-downgrade"), "{why}");
    for bad in ["", "1..2", ".1", "1.", "1.2-rc1", "0.3.0; reboot"] {
        let (ok, why) = check("0.2.0", bad, "");
        assert!(!ok && why.contains("is not a dotted number"), "{bad:?}: {why}");
    }
    let (ok, why) = check("", "0.3.0", "");
    assert!(!ok && why.contains("running root's version"), "a root without a version takes no update: {why}");
}
