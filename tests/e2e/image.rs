//! The firmware image: `rootfs/build.sh` builds it with the debug `witness`, QEMU boots it, and
//! the box answers on its forwarded ports (SSH banner, `/healthz` over HTTPS). A flipped byte in
//! the root slot makes dm-verity stop the boot. The image is built once per set of inputs
//! (binary + recipe) and shared between the tests (each runs in its own process) under a file
//! lock in `target/tmp/image-<key>/`.

use crate::harness::*;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
            .stdin(Stdio::null())
            .output()
            .unwrap();
        println!("{}", stdout(&out));
        assert!(out.status.success(), "rootfs/build.sh failed ({}): {}", out.status, stderr(&out));
        println!("image built in {:.0}s", started.elapsed().as_secs_f64());
        std::fs::write(dir.join("done"), b"").unwrap();
    }
    drop(lock);
    dir
}

/// A QEMU guest booted from a disk image, killed on drop.
struct Vm {
    child: Child,
    serial: PathBuf,
    started: Instant,
}

impl Vm {
    fn boot(image: &Path, disk: &Path, serial: &Path, forwards: &[(u16, u16)]) -> Self {
        let cmdline = std::fs::read_to_string(image.join("cmdline")).unwrap();
        let mut nic = String::from("user");
        for (host, guest) in forwards {
            nic.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "1024", "-smp", "2", "-no-reboot"])
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initrd.img"))
            .arg("-append")
            .arg(cmdline.trim())
            .arg("-drive")
            .arg(format!("file={},format=raw,if=virtio,snapshot=on", disk.display()))
            .args(["-device", "i6300esb", "-display", "none", "-nic", &nic])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qemu-system-x86_64 (cargo xtask setup installs it)");
        Vm { child, serial: serial.to_owned(), started: Instant::now() }
    }

    /// The serial log with the first-boot admin password blanked (it goes into test output).
    fn serial(&self) -> String {
        let text = strip_ansi(&String::from_utf8_lossy(&std::fs::read(&self.serial).unwrap_or_default()));
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

    /// Waits for a serial console line holding every one of `parts`; fails early if QEMU exits.
    fn wait_serial(&mut self, parts: &[&str], secs: u64) {
        eventually(secs, &format!("a line with {parts:?} on the serial console"), || {
            if let Some(st) = self.exited() {
                panic!("qemu exited ({st}) before a line with {parts:?}; serial log:\n{}", self.serial());
            }
            self.serial().lines().any(|l| parts.iter().all(|p| l.contains(p))).then_some(())
        });
    }
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

#[test]
fn boots_to_the_daemon_on_a_verity_root() {
    let image = built_image();
    let tmp = tempfile::tempdir().unwrap();
    let (ssh, web) = (free_port(), free_port());
    let mut vm = Vm::boot(&image, &image.join("disk.raw"), &tmp.path().join("serial.log"), &[(ssh, 2222), (web, 8443)]);

    // The initrd maps the root through dm-verity before it is mounted (systemd shortens the
    // unit's name on an 80-column console, the description's end stays).
    vm.wait_serial(&["Finished", "Protection Setup for root"], 300);
    vm.wait_serial(&["Started witness.service"], 600);
    let banner = eventually(120, "an SSH banner on the forwarded jump-path port", || ssh_banner(ssh));
    assert!(banner.starts_with("SSH-2.0-"), "{banner}");
    let body = eventually(120, "/healthz over HTTPS on the forwarded console port", || healthz(web));
    assert_eq!(body, "ok");
    println!("booted to /healthz in {:.0}s (TCG)", vm.started.elapsed().as_secs_f64());

    let serial = vm.serial();
    // First boot: the data partition was made and the admin password shown on the console.
    assert!(serial.contains("witness-data: created"), "no data partition created:\n{serial}");
    assert!(serial.contains("WITNESS FIRST BOOT"), "no first-boot banner:\n{serial}");
    assert!(serial.contains("admin user: admin  password: <redacted>"), "no admin password on the console:\n{serial}");
    // Every unit came up (systemd prints [FAILED] on the console for one that did not).
    assert!(!serial.contains("FAILED"), "a unit failed during boot:\n{serial}");
    // Nobody can log in on the console: no getty prompt.
    assert!(!serial.contains("login:"), "a login prompt on the console:\n{serial}");
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
