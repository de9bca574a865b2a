//! Red team h-red20 (issue 20: the shipped image's devices, TPM sealing, flash.sh, downgrades).
//! Each test was written passing while its hole was open. Flipped (h-red20 fixes), each keeps its
//! attack and asserts the refusal — except the slot PCR's forgery, a design residue kept as
//! written (ARCHITECTURE.md, "Absent on purpose"): it still passes, and says what an attacker
//! gets.
//!
//! - flash.sh writes a disk whose file system is mounted, when the use is one its sysfs walk does
//!   not see: through a loop device over the disk, as the second device of a mounted btrfs, as
//!   the backing file of a mounted loop device, mounted in another mount namespace; and it checks
//!   one target and writes another (the path is resolved again at write time).
//! - Every build carries one version (the workspace's 0.1.0, never changed), and an equal version
//!   is installed: any older signed bundle goes in without `--allow-downgrade`.
//! - The slot measurement in PCR 15 is a public value anyone who runs code before the box's own
//!   measurement can extend, and the policy leaves out the PCRs where the kernel command line and
//!   the initrd are measured: a boot with another command line opens the keys.
//! - `keys/tpm.policy` is taken as written: a planted line (PCR 16 at zero) unbinds every key
//!   made afterwards. First boot leaves the keys in clear for good if it stops before sealing.
//! - RAUC's D-Bus API is open to every local user, the daemon's too: it switches to the older
//!   slot with no version check and no console.
//! - The sandbox opens every I2C bus and GPIO chip, not the ones the board profile names.

use crate::flash::{Loop, flash, image};
use crate::harness::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// SHA-256 (hex) of the first `n` bytes of a file or device.
fn head_sha256(path: &str, n: usize) -> String {
    let out = sh(&format!("head -c {n} {path} | sha256sum"));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).split_whitespace().next().unwrap().to_owned()
}

/// The first bytes of a disk (or file) whose file system stays mounted were not overwritten by
/// the image: it differs from the (random) image almost everywhere. (A before/after hash would
/// see the mounted file system's own writes, e.g. ext4's lazy inode table init.)
fn not_the_image(path: &str, img: &Path) {
    let cmp = sh(&format!("cmp -n 3000000 -l {} {} | wc -l", img.display(), path));
    let differing: usize = stdout(&cmp).trim().parse().unwrap();
    assert!(differing > 2_000_000, "{path} holds the image ({differing} of 3000000 bytes differ)");
}

fn run_ok(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// The device is in use as far as the kernel is concerned: an exclusive open (O_EXCL on a block
/// device, what mkfs and the kernel's own claimers use) is refused with EBUSY.
fn kernel_says_busy(dev: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    const O_EXCL: i32 = 0o200; // Linux
    match std::fs::OpenOptions::new().read(true).custom_flags(O_EXCL).open(dev) {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(16),
    }
}

/// A mount point that is unmounted on drop (before the loop devices under it are detached).
struct Mounted(PathBuf);

impl Mounted {
    fn new(dev: &str, at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        run_ok(&["mount", dev, at.to_str().unwrap()]);
        std::fs::write(at.join("precious"), b"a recording nobody may lose\n").unwrap();
        run_ok(&["sync"]);
        Mounted(at.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Red team h-red20: a loop device over a disk whose file system is mounted (`losetup /dev/sdb`,
/// `mount -o loop,offset=…`, a partitioned image's `losetup -P`) is no holder in sysfs, so the
/// mounted, holders and system rules never look below it: flash.sh writes the image through it
/// onto the mounted disk and calls it verified. (The same with the running system's disk under
/// the loop device overwrites `/`.)
/// Flipped: flash.sh holds the target's disk open with O_EXCL and, for a loop device, the device
/// under it: the kernel refuses (EBUSY), rule "loop-backing"; nothing written.
#[test]
fn red20_flash_writes_through_a_loop_device_onto_a_mounted_disk() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let disk = Loop::new(&dir.path().join("disk"), 16 * 1024 * 1024);
    run_ok(&["mkfs.ext4", "-q", "-F", &disk.0]);
    let _mounted = Mounted::new(&disk.0, &dir.path().join("mnt"));
    let over = stdout(&Command::new("losetup").args(["-f", "--show", &disk.0]).output().unwrap()).trim().to_owned();
    assert!(over.starts_with("/dev/loop"), "losetup over {}: {over:?}", disk.0);
    let over = Loop(over);
    assert!(kernel_says_busy(&disk.0), "{} is mounted: the kernel holds it", disk.0);

    let out = flash(&["--yes", img.to_str().unwrap(), &over.0]);
    assert_eq!(out.status.code(), Some(1), "flash.sh wrote through {}: {}", over.0, stderr(&out));
    assert!(stderr(&out).contains(&format!("refused (loop-backing): {}", over.0)), "{}", stderr(&out));
    not_the_image(&disk.0, &img);
    not_the_image(&over.0, &img);
}

/// Red team h-red20: the second device of a mounted multi-device btrfs (RAID1 root across two
/// disks, as Fedora, Synology-style NAS and many servers have it) is in no holders/ and in no
/// mount table line (which names one device), and blkid calls it just "btrfs": flash.sh writes it.
/// The kernel knows it is in use (btrfs claims every member exclusively).
/// Flipped: the exclusive open of the disk is refused (rule "busy"); the btrfs scrubs clean.
#[test]
fn red20_flash_writes_the_second_device_of_a_mounted_btrfs() {
    assert!(
        Command::new("mkfs.btrfs").arg("--version").output().is_ok_and(|o| o.status.success()),
        "mkfs.btrfs (cargo xtask setup installs btrfs-progs)"
    );
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let first = Loop::new(&dir.path().join("btrfs1"), 160 * 1024 * 1024);
    let second = Loop::new(&dir.path().join("btrfs2"), 160 * 1024 * 1024);
    run_ok(&["mkfs.btrfs", "-q", "-f", "-d", "raid1", "-m", "raid1", &first.0, &second.0]);
    let mounted = Mounted::new(&first.0, &dir.path().join("mnt"));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&format!("{} ", second.0)), "only {} is named as mounted", first.0);
    assert!(kernel_says_busy(&second.0), "btrfs holds {} exclusively", second.0);

    let before = head_sha256(&second.0, 3_000_000);
    let out = flash(&["--yes", img.to_str().unwrap(), &second.0]);
    assert_eq!(out.status.code(), Some(1), "flash.sh wrote {}: {}", second.0, stderr(&out));
    assert!(stderr(&out).contains(&format!("refused (busy): {}", second.0)), "{}", stderr(&out));
    assert_eq!(head_sha256(&second.0, 3_000_000), before, "{} untouched", second.0);
    // The file system lost nothing.
    let scrub = Command::new("btrfs").args(["scrub", "start", "-B"]).arg(&mounted.0).output().unwrap();
    let report = format!("{}{}", stdout(&scrub), stderr(&scrub));
    assert!(report.contains("no errors found"), "the mounted btrfs was damaged: {report}");
}

/// Red team h-red20: a regular-file target is written with no check at all, even when it is the
/// backing file of a loop device whose file system is mounted (a VM's disk image, a live
/// system's filesystem.squashfs, `/var/lib/machines.raw`): flash.sh truncates it and writes the
/// image into it under the mounted file system.
/// Flipped: a file that backs a loop device (by device and inode, `losetup -l`) is refused
/// (rule "loop-backing"), not truncated.
#[test]
fn red20_flash_overwrites_the_backing_file_of_a_mounted_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let backing = dir.path().join("vm-disk.raw");
    let dev = Loop::new(&backing, 16 * 1024 * 1024);
    run_ok(&["mkfs.ext4", "-q", "-F", &dev.0]);
    let _mounted = Mounted::new(&dev.0, &dir.path().join("mnt"));
    let listed = stdout(&Command::new("losetup").arg("-j").arg(&backing).output().unwrap());
    assert!(listed.contains(&dev.0), "losetup -j names the loop device using the file: {listed}");

    let out = flash(&["--yes", img.to_str().unwrap(), backing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "flash.sh wrote the file: {}", stderr(&out));
    assert!(stderr(&out).contains("refused (loop-backing)") && stderr(&out).contains(&dev.0), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&backing).unwrap().len(), 16 * 1024 * 1024, "not truncated");
    not_the_image(backing.to_str().unwrap(), &img);
}

/// Red team h-red20: the mounted rule reads /proc/self/mountinfo and /proc/mounts, which list
/// this mount namespace only: a disk mounted in another one (a container, a service with
/// PrivateMounts=, an `unshare -m` shell, udisks in a sandboxed session) passes every check and
/// is written, though the kernel refuses an exclusive open of it.
/// Flipped: the kernel's exclusive-open refusal sees every namespace (rule "busy").
#[test]
fn red20_flash_writes_a_disk_mounted_in_another_mount_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let dev = Loop::new(&dir.path().join("disk"), 16 * 1024 * 1024);
    run_ok(&["mkfs.ext4", "-q", "-F", &dev.0]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut holder = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount {} {} && echo mounted && exec sleep 120", dev.0, mnt.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 8];
    holder.stdout.take().unwrap().read_exact(&mut line).expect("the other namespace mounted the disk");
    assert_eq!(&line[..7], b"mounted");
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(mnt.to_str().unwrap()));
    assert!(kernel_says_busy(&dev.0), "the kernel holds {} for the other namespace's mount", dev.0);

    let out = flash(&["--yes", img.to_str().unwrap(), &dev.0]);
    let _ = holder.kill();
    let _ = holder.wait();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "flash.sh wrote the disk: {err}");
    assert!(err.contains(&format!("refused (busy): {}", dev.0)), "{err}");
    assert!(!err.contains("writing with dd"), "{err}");
    not_the_image(&dev.0, &img);
}

/// Red team h-red20: flash.sh resolves TARGET for its checks and writes to TARGET again, by name,
/// after the confirmation: whoever controls the path meanwhile (a link in a shared folder, a
/// by-path name that moves as sticks are swapped at the prompt) gets the write elsewhere. Here a
/// link that names an empty file at the check (a file: no device rule runs) and a mounted disk at
/// "yes".
/// Flipped: a link as a file target is refused (rule "symlink"); a link to a device is resolved
/// once and held open, and the write goes through that descriptor: the checked disk gets it.
#[test]
fn red20_flash_checks_one_target_and_writes_another() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let dev = Loop::new(&dir.path().join("disk"), 16 * 1024 * 1024);
    run_ok(&["mkfs.ext4", "-q", "-F", &dev.0]);
    let _mounted = Mounted::new(&dev.0, &dir.path().join("mnt"));
    let decoy = dir.path().join("decoy.img");
    std::fs::write(&decoy, b"").unwrap();
    let link = dir.path().join("target");
    std::os::unix::fs::symlink(&decoy, &link).unwrap();

    // A link as a file target is refused outright: nothing to swap.
    let out = flash(&["--yes", img.to_str().unwrap(), link.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "flash.sh wrote through a link: {}", stderr(&out));
    assert!(stderr(&out).contains("refused (symlink)"), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&decoy).unwrap().len(), 0, "the link's file got nothing");

    // A link to a device (as /dev/disk/by-* are) is resolved once and held: here it names an
    // unused disk at the check and the mounted one at "yes"; the write goes to the checked disk.
    let spare = Loop::new(&dir.path().join("spare"), 16 * 1024 * 1024);
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&spare.0, &link).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("flash.sh");
    // A terminal for the prompt (script(1) gives the child one).
    let mut child = Command::new("script")
        .args(["-qec", &format!("sh {} {} {}", script.display(), img.display(), link.display()), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Type yes:") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "flash.sh ended before asking: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("(device)"),
        "checked as a device: {}",
        String::from_utf8_lossy(&seen)
    );
    // While the technician reads the prompt, the name moves to the mounted disk.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&dev.0, &link).unwrap();
    child.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    out.read_to_end(&mut seen).unwrap();
    let _ = child.wait();
    let said = String::from_utf8_lossy(&seen);
    assert!(said.contains("verified: sha256"), "{said}");
    assert_eq!(head_sha256(&spare.0, 3_000_000), sha256_file(&img), "the checked disk got the image");
    not_the_image(&dev.0, &img);
}

/// Red team h-red20: the downgrade check orders bundles by the version in /etc/witness/version,
/// which build.sh takes from `witness --version` (the workspace's version) unless --version is
/// given — and `cargo xtask image` cannot pass one. The workspace's version has been 0.1.0 since
/// the first commit, and an equal version is installed ("a rebuild"): every older signed bundle
/// ever built goes in with no --allow-downgrade, and the e2e test refuses only a bundle re-labelled
/// 0.0.1 by hand.
/// Flipped: every build has its own rising version (the binary's plus the build time; `cargo
/// xtask image --version`), and another build of the running version is refused like an older
/// one (the console's --allow-downgrade for exactly it lets it in).
#[test]
fn red20_rauc_every_build_has_one_version_so_any_older_signed_bundle_goes_in() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let cargo = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let workspace_version = cargo
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.strip_prefix("version = \""))
        .map(|v| v.trim_end_matches('"').to_owned())
        .expect("[workspace.package] version");
    // Every build its own version: the binary's plus the build time, or --version (which
    // `cargo xtask image` passes on).
    let build = std::fs::read_to_string(root.join("rootfs/build.sh")).unwrap();
    assert!(
        build.contains("version=$version.$(date -u -d \"@${SOURCE_DATE_EPOCH:-$(date +%s)}\" +%Y%m%d%H%M%S)"),
        "build.sh appends the build time"
    );
    let xtask = std::fs::read_to_string(root.join("xtask/src/image.rs")).unwrap();
    assert!(xtask.contains("\"--version\""), "cargo xtask image passes --version to build.sh");

    // Last week's build and today's: 0.1.0.<last week> goes not in over 0.1.0.<today>, nor does
    // another build carrying today's very version; today's next build does.
    let check = root.join("rootfs/overlay/usr/libexec/witness/update-version-check");
    let run = |running: &str, bundle: &str| {
        let out = Command::new("sh").arg(&check).args([running, bundle, ""]).output().unwrap();
        (out.status.success(), stderr(&out))
    };
    let today = format!("{workspace_version}.20261207195800");
    let last_week = format!("{workspace_version}.20261130120000");
    let (ok, why) = run(&today, &last_week);
    assert!(!ok && why.contains("refusing a downgrade"), "{why}");
    let (ok, why) = run(&today, &today);
    assert!(!ok && why.contains("refusing another build of the same version"), "{why}");
    assert!(run(&today, &format!("{workspace_version}.20261207195801")).0, "a later build goes in");
    assert!(!run(&workspace_version, &workspace_version).0, "equal versions are refused, whatever they are");
    // The version is recorded with the slot's hash, for set-primary to compare again.
    let pre = std::fs::read_to_string(root.join("rootfs/overlay/usr/libexec/witness/rauc-pre-install")).unwrap();
    assert!(pre.contains("bs_set \"${target}_version\" \"$version\""), "rauc-pre-install records the version");
}

/// Red team h-red20: the keys' policy is PCRs 0, 2, 4, 7 and 15. The box's own measurement in 15
/// is SHA-256 of "witness-slot", the slot and the root hash — public (the boot state partition
/// holds the hash in clear, the bundle's description names it) — extended by a service of the
/// root; and the PCRs where a boot measures its kernel command line and initrd (8 and 9 for GRUB,
/// 9 and 12 for the EFI stub, 11 and 12 for systemd-boot and UKIs) are not in the policy. So a
/// boot of the same kernel with `systemd.debug_shell` or `init=/bin/sh` on its command line, or
/// any initrd, is in the sealed state as far as the policy can tell: it extends 15 itself with
/// the public value (`tpm2_pcrextend`, shipped in the image) and unseals every key. The image test
/// does exactly that as its way in (boot 4: `systemd.debug_shell=ttyS1` on the box's TPM, keys
/// open, recordings played from the root shell). Nor is a command line needed: the initrd takes
/// the root hash from the witness-boot partition, which nothing authenticates, and the root it
/// maps measures itself (witness-measure.service runs from it). A root of the attacker's own in
/// slot b, its hash written into the boot state, extends 15 with slot a's genuine value and
/// unseals. Here on a software TPM: sealed as the box seals, opened in a "boot" that never ran the
/// box's measurement.
/// Still open (h-red20): a design residue — the measurement runs from the root it measures and
/// nothing before it (no measured bootloader, UKI or initrd in this boot chain) measures the
/// command line; see ARCHITECTURE.md, "Absent on purpose".
#[test]
fn red20_tpm_the_slot_measurement_is_public_and_the_command_line_is_not_bound() {
    for pcr in [8u8, 9, 11, 12] {
        assert!(
            !witness_keys::BOOT_PCRS.contains(&pcr),
            "PCR {pcr} (kernel command line / initrd) is in the policy (the hole is closed?)"
        );
    }
    let mut sim = witness_tpm::simulator::Simulator::start();
    let tpm = witness_tpm::Tpm::new(&sim.tcti());
    let (slot, root_hash) = ("a", "5e".repeat(32));
    let event = witness_keys::boot_event(slot, &root_hash);
    // The genuine boot: the box measures its slot, then seals a key to that state.
    tpm.extend(witness_keys::SLOT_PCR, &event).unwrap();
    let policy = witness_tpm::PcrPolicy { label: slot.to_owned(), values: tpm.pcrs(&witness_keys::BOOT_PCRS).unwrap() };
    let kek = [0x4bu8; 32];
    let sealed = tpm.seal_to(&kek, &policy).unwrap();

    // Another boot (PCRs reset): same firmware and kernel, the attacker's command line. It
    // computes the measurement from the slot and the public root hash, without the box's code.
    sim.restart();
    let tpm = witness_tpm::Tpm::new(&sim.tcti());
    assert!(tpm.unseal(&sealed).is_err(), "before any measurement nothing opens");
    let mut forged = b"witness-slot\0".to_vec();
    forged.extend_from_slice(slot.as_bytes());
    forged.push(0);
    forged.extend_from_slice(root_hash.as_bytes());
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&forged).into()
    };
    let extend = Command::new("tpm2_pcrextend")
        .arg(format!("{}:sha256={}", witness_keys::SLOT_PCR, hex::encode(digest)))
        .env("TPM2TOOLS_TCTI", sim.tcti())
        .output()
        .unwrap();
    assert!(extend.status.success(), "{}", stderr(&extend));
    assert_eq!(tpm.unseal(&sealed).unwrap(), kek, "the attacker's boot opened the sealed key");
}

/// Red team h-red20: the sandbox opens device classes, not the board's devices: `char-i2c` is
/// every I2C bus (on x86 the i801 SMBus with the DIMMs' SPD EEPROMs at 0x50-0x57; on boards the
/// PMIC, the HAT EEPROM, an I2C TPM's bus) and `char-gpiochip` every GPIO chip (reset and power
/// lines of other parts), and udev gives every such node to the groups the daemon has. The board
/// profiles name one bus and one chip at most. A compromised daemon reaches them all.
/// Flipped: witness-devices.service opens the sandbox to the chosen profile's GPIO chips and
/// I2C buses by node (a drop-in), and udev gives only those nodes to the groups.
#[test]
fn red20_sandbox_opens_every_i2c_bus_and_gpio_chip_not_the_profiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let overlay = root.join("rootfs/overlay");
    let unit = std::fs::read_to_string(overlay.join("etc/systemd/system/witness.service")).unwrap();
    let allowed: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("DeviceAllow=")).collect();
    assert!(!allowed.iter().any(|a| a.contains("i2c") || a.contains("gpio")), "no class-wide I2C/GPIO: {allowed:?}");
    assert!(unit.contains("Wants=network-online.target witness-devices.service"), "{unit}");
    // udev: every I2C bus and GPIO chip root's; the profile's nodes by a rule written at boot.
    let rules = std::fs::read_to_string(overlay.join("etc/udev/rules.d/70-witness-devices.rules")).unwrap();
    assert!(!rules.contains("GROUP=\"i2c\"") && !rules.contains("GROUP=\"gpio\""), "{rules}");
    assert!(rules.contains("SUBSYSTEM==\"i2c-dev\", GROUP=\"root\", MODE=\"0600\""), "{rules}");
    let build = std::fs::read_to_string(root.join("rootfs/build.sh")).unwrap();
    assert!(build.contains("witness-devices.service"), "build.sh enables witness-devices.service");
    // The boot script turns `witness board-devices` into per-node lines; run it on a fake list.
    let script = std::fs::read_to_string(overlay.join("usr/libexec/witness/board-devices")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        run_ok(&["chmod", "755", p.to_str().unwrap()]);
    };
    fake("witness", "printf '/dev/gpiochip2\\n/dev/i2c-1\\n/dev/watchdog0\\n'");
    fake("udevadm", "exit 0");
    fake("systemctl", "exit 0");
    let run_dir = dir.path().join("run");
    let patched = script
        .replace("/usr/bin/witness", &bin.join("witness").display().to_string())
        .replace("dropin=/run/", &format!("dropin={}/", run_dir.display()))
        .replace("rules=/run/", &format!("rules={}/", run_dir.display()));
    let out = Command::new("sh")
        .arg("-c")
        .arg(&patched)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let dropin =
        std::fs::read_to_string(run_dir.join("systemd/system/witness.service.d/50-board-devices.conf")).unwrap();
    assert_eq!(dropin, "[Service]\nDeviceAllow=/dev/gpiochip2 rw\nDeviceAllow=/dev/i2c-1 rw\n");
    let udev = std::fs::read_to_string(run_dir.join("udev/rules.d/71-witness-board.rules")).unwrap();
    assert!(udev.contains("SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip2\", GROUP=\"gpio\""), "{udev}");
    assert!(udev.contains("SUBSYSTEM==\"i2c-dev\", KERNEL==\"i2c-1\", GROUP=\"i2c\""), "{udev}");
    assert!(!udev.contains("watchdog"), "{udev}");
    // What the profiles name: at most one bus and one chip each, which is what is opened.
    for entry in std::fs::read_dir(root.join("board/profiles")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let mut buses: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("bus = ")).collect();
        buses.sort();
        buses.dedup();
        let mut chips: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("chip = ")).collect();
        chips.sort();
        chips.dedup();
        assert!(buses.len() <= 1 && chips.len() <= 1, "{}: {buses:?} {chips:?}", entry.path().display());
    }
}

/// Red team h-red20: the downgrade check lives in rauc-pre-install and update-from-stick, but
/// RAUC's D-Bus API is open to every local process — Debian 12's rauc-service (in packages.txt)
/// ships `de.pengutronix.rauc.conf` with "This config allows anyone to control rauc" (`<policy
/// context="default"><allow send_destination="de.pengutronix.rauc"/>`), and the image neither
/// replaces it nor closes the bus to the daemon (AF_UNIX allowed, /run/dbus reachable). So the
/// sandboxed daemon's user (a remote attacker who took the SSH/RDP/web daemon) runs
/// `busctl call de.pengutronix.rauc / de.pengutronix.rauc.Installer Mark ss active other`:
/// rauc-backend set-primary makes the previous slot (the older release, still sealed for) primary
/// with no version check and no console, and the next boot runs it. (InstallBundle of any signed
/// bundle of an equal version — every build, see above — goes in the same way.)
/// Flipped: RAUC's D-Bus API is root's only (the image's policy, Debian's removed), the daemon
/// cannot reach the system bus (InaccessiblePaths=/run/dbus), and set-primary of another slot
/// compares its recorded version with the running one.
#[test]
fn red20_rauc_the_daemon_can_switch_to_the_older_slot_over_dbus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let packages = read("rootfs/packages.txt");
    assert!(packages.lines().any(|l| l.trim() == "rauc-service"), "RAUC's D-Bus service is in the image");
    // The image's own policy: root only; Debian's open one removed.
    let policy = read("rootfs/overlay/etc/dbus-1/system.d/de.pengutronix.rauc.conf");
    let root_part =
        policy.split("<policy user=\"root\">").nth(1).expect("a root policy").split("</policy>").next().unwrap();
    assert!(root_part.contains("<allow send_destination=\"de.pengutronix.rauc\"/>"), "{policy}");
    let default = policy
        .split("<policy context=\"default\">")
        .nth(1)
        .expect("a default policy")
        .split("</policy>")
        .next()
        .unwrap();
    assert!(default.contains("<deny send_destination=\"de.pengutronix.rauc\"/>"), "{policy}");
    assert!(!default.contains("<allow"), "{policy}");
    let build = read("rootfs/build.sh");
    assert!(
        build.contains("rm -f \"$root/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf\""),
        "build.sh removes RAUC's open policy"
    );
    // The daemon (which uses no D-Bus) cannot reach the bus.
    let unit = read("rootfs/overlay/etc/systemd/system/witness.service");
    assert!(unit.lines().any(|l| l == "InaccessiblePaths=/run/dbus"), "the system bus is out of the daemon's reach");
    let daemon = sh(&format!("grep -rlE 'zbus|dbus' {} || true", root.join("firmware/witness/src").display()));
    assert!(stdout(&daemon).trim().is_empty(), "the daemon uses D-Bus: {}", stdout(&daemon));
    // Mark(active) of another slot reaches set-primary: it compares the slot's recorded version.
    let backend = read("rootfs/overlay/usr/libexec/witness/rauc-backend");
    let set_primary = backend.split("set-primary)").nth(1).unwrap().split(";;").next().unwrap();
    let check = set_primary.find("update-version-check").expect("set-primary compares versions");
    assert!(set_primary.contains("bs_get \"${slot}_version\""), "{set_primary}");
    assert!(check < set_primary.find("bs_set primary").unwrap(), "before switching: {set_primary}");
}

/// Red team h-red20: first boot runs `witness init` (keys made in clear, witness.toml written
/// last) and only then `witness keys seal --tpm`; witness-firstboot.service runs only while
/// witness.toml is missing. A power cut or crash between the two (installers power-cycle new
/// boxes), or a sealing that failed once (a TPM busy or in lockout at that moment), leaves every
/// key in clear under /var/lib/witness/keys for good: no later boot seals them, and nothing says
/// so after that first console line. Nothing else on the image runs `keys seal`.
/// Flipped: witness-seal.service seals keys left in clear every boot with a TPM, and alarms
/// (journal, console, a pending audit event) while it cannot.
#[test]
fn red20_tpm_keys_stay_in_clear_for_good_when_first_boot_stops_before_sealing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let overlay = root.join("rootfs/overlay");
    // A unit of its own, every boot with a TPM and a data directory, before the daemon.
    let unit = std::fs::read_to_string(overlay.join("etc/systemd/system/witness-seal.service")).unwrap();
    assert!(!unit.contains("ConditionPathExists=!"), "runs every boot, not only the first: {unit}");
    for line in [
        "ConditionPathExists=/dev/tpmrm0",
        "ConditionPathExists=/var/lib/witness/witness.toml",
        "After=witness-measure.service witness-firstboot.service",
        "Before=witness.service",
        "ExecStart=/usr/libexec/witness/seal-keys",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line:?} in {unit}");
    }
    let build = std::fs::read_to_string(root.join("rootfs/build.sh")).unwrap();
    assert!(build.contains("witness-measure.service witness-seal.service"), "build.sh enables it");
    // It seals whatever key is still a file, and alarms if it cannot: journal, console, audit.
    let script = std::fs::read_to_string(overlay.join("usr/libexec/witness/seal-keys")).unwrap();
    assert!(script.contains("keys seal --tpm device:/dev/tpmrm0"), "{script}");
    for key in ["kek-*", "index.key", "search.key", "evidence_ed25519"] {
        assert!(script.contains(&format!("\"$keys\"/{key}")), "{key} looked for");
    }
    assert!(script.contains("ALARM") && script.contains("/dev/console"), "{script}");
    assert!(script.contains("tpm_keys_left_in_clear") && script.contains("audit-pending.jsonl"), "{script}");
    assert!(witness_keys::PENDING_KINDS.contains(&"tpm_keys_left_in_clear"), "the audit log takes the event");
    let out = Command::new("sh").arg("-n").arg(overlay.join("usr/libexec/witness/seal-keys")).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Red team h-red20: `keys/tpm.policy` (the boot states every new key is sealed to) is a plain
/// file on the data partition that nothing authenticates, and its PCR list is taken as written.
/// Someone with the disk for a minute (an evil maid, or the daemon's own user) adds a line bound
/// to PCR 16 (the debug PCR, which every boot holds at zero and anyone may reset): every key made
/// from then on (each KEK rotation, a new search key) is also sealed to "PCR 16 is zero" and
/// opens on this TPM in any boot state — no measurement, any root, any command line.
/// Flipped: keys/tpm.policy lines are taken only with a slot label (a, b; host off the box),
/// exactly the boot PCRs, and a measured slot PCR; anything else is refused as damaged.
#[test]
fn red20_tpm_a_planted_policy_line_unbinds_every_new_key() {
    let mut sim = witness_tpm::simulator::Simulator::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("keys")).unwrap();
    std::fs::write(root.join("keys/tpm"), sim.tcti()).unwrap();
    // The box's own state (slot a, measured) and the planted line.
    let tpm = witness_tpm::Tpm::new(&sim.tcti());
    tpm.extend(witness_keys::SLOT_PCR, &witness_keys::boot_event("a", &"5e".repeat(32))).unwrap();
    let genuine: Vec<String> =
        tpm.pcrs(&witness_keys::BOOT_PCRS).unwrap().iter().map(|(p, v)| format!("{p}={}", hex::encode(v))).collect();
    let planted = format!("a {}\nx 16={}\n", genuine.join(" "), "00".repeat(32));
    std::fs::write(root.join("keys/tpm.policy"), planted).unwrap();

    // Weeks later the box rotates its key: the planted line is refused, nothing is sealed to it.
    let err = witness_keys::rotate(root).expect_err("a key was sealed to the planted state").to_string();
    assert!(err.contains("keys/tpm.policy is damaged") && err.contains("\"x\""), "{err}");
    let sealed_to_planted = std::fs::read_dir(root.join("keys"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tpm"))
        .any(|e| witness_tpm::labels(&std::fs::read(e.path()).unwrap()).is_ok_and(|l| l.iter().any(|x| x == "x")));
    assert!(!sealed_to_planted, "a key is sealed to the planted state");
    // Nor a genuine label with another PCR set, or bound to an unmeasured boot.
    let extra: Vec<String> = genuine.iter().cloned().chain([format!("16={}", "00".repeat(32))]).collect();
    std::fs::write(root.join("keys/tpm.policy"), format!("a {}\n", extra.join(" "))).unwrap();
    let err = witness_keys::rotate(root).expect_err("sealed to PCR 16 as well").to_string();
    assert!(err.contains("PCRs other than the boot's"), "{err}");
    let unmeasured: Vec<String> = genuine
        .iter()
        .map(|w| if w.starts_with("15=") { format!("15={}", "00".repeat(32)) } else { w.clone() })
        .collect();
    std::fs::write(root.join("keys/tpm.policy"), format!("b {}\n", unmeasured.join(" "))).unwrap();
    let err = witness_keys::rotate(root).expect_err("sealed to an unmeasured boot").to_string();
    assert!(err.contains("unmeasured boot"), "{err}");
    // The box's own line alone is taken.
    std::fs::write(root.join("keys/tpm.policy"), format!("a {}\n", genuine.join(" "))).unwrap();
    let id = witness_keys::rotate(root).unwrap();
    let sealed = std::fs::read(root.join(format!("keys/kek-{id}.tpm"))).unwrap();
    assert_eq!(witness_tpm::labels(&sealed).unwrap(), ["a"]);
    sim.restart();
    let tpm = witness_tpm::Tpm::new(&sim.tcti());
    assert!(tpm.unseal(&sealed).is_err(), "the new KEK does not open in an unmeasured boot");
}

/// Red team h-red20: the size budget never measures the root that ships. Its fail line is "the
/// root without the binary plus the release binary's *line*" (36 MiB), not the root as built; the
/// shipped binary has a line of its own that the environment raises
/// (`WITNESS_BINARY_BUDGET_MB`, as the image test does for its debug build). So a root with any
/// binary — 93 MiB of debug tables, or 500 — passes `cargo xtask image --binary …` with that
/// variable set, and the image the QEMU test boots (and asserts "the budget" on) is well over
/// 200 MB: its size table's "root, unpacked" row is compared with nothing.
/// Flipped: the root as built is compared with the 190 MiB line; over it only a test build goes
/// on, marked NOT-SHIPPABLE and without an update bundle; the image test checks the verdict.
#[test]
fn red20_image_budget_counts_a_binary_line_not_the_binary_shipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let build = std::fs::read_to_string(root.join("rootfs/build.sh")).unwrap();
    // The root as built is compared with the root's line; over it, only a test build (the
    // environment's binary line) goes on, marked not shippable and with no update bundle.
    let over = build.find("if [ \"$root_mb\" -gt \"$root_budget_mb\" ]; then").expect("the root as built is measured");
    let branch = &build[over..over + build[over..].find("\nfi\n").unwrap()];
    assert!(branch.contains("[ -n \"${WITNESS_BINARY_BUDGET_MB:-}\" ] || die"), "{branch}");
    assert!(branch.contains("shippable=\"no: the root as built is $root_mb MiB"), "{branch}");
    let bundle_step = &build[build.find("step \"bundle:").unwrap()..];
    let no_bundle = bundle_step.find("if [ \"$shippable\" != yes ]; then").expect("no bundle unless shippable");
    assert!(no_bundle < bundle_step.find("bundle.sh\" --root").unwrap(), "{bundle_step}");
    assert!(bundle_step.contains("rm -f \"$out/witness-update.raucb\" \"$out/NOT-SHIPPABLE\""), "no stale bundle left");
    assert!(build.contains("shippable: $shippable"), "build.txt says so");
    // The image test reads the built root's size and checks the verdict.
    let test = std::fs::read_to_string(root.join("tests/e2e/image.rs")).unwrap();
    assert!(test.contains("row(\"root, unpacked\") > root_line"), "the image test reads the built root's size");
    assert!(test.contains("NOT-SHIPPABLE"), "and checks a build over the line is not shippable");
}
