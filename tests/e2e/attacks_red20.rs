//! Red team h-red20 (issue 20: the shipped image's devices, TPM sealing, flash.sh, downgrades).
//! Each test passes while its hole is open: it asserts what the attacker gets.
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
    assert!(String::from_utf8_lossy(&seen).contains("(device)"), "checked as a device: {}", String::from_utf8_lossy(&seen));
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
    assert!(build.contains("version=$version.$(date -u -d \"@${SOURCE_DATE_EPOCH:-$(date +%s)}\" +%Y%m%d%H%M%S)"), "build.sh appends the build time");
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
#[test]
fn red20_sandbox_opens_every_i2c_bus_and_gpio_chip_not_the_profiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let unit = std::fs::read_to_string(root.join("rootfs/overlay/etc/systemd/system/witness.service")).unwrap();
    let allowed: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("DeviceAllow=")).collect();
    assert!(allowed.contains(&"char-i2c rw"), "{allowed:?}");
    assert!(allowed.contains(&"char-gpiochip rw"), "{allowed:?}");
    assert!(!allowed.iter().any(|a| a.starts_with("/dev/i2c-") || a.starts_with("/dev/gpiochip")), "{allowed:?}");
    let rules = std::fs::read_to_string(root.join("rootfs/overlay/etc/udev/rules.d/70-witness-devices.rules")).unwrap();
    assert!(rules.contains("SUBSYSTEM==\"i2c-dev\", GROUP=\"i2c\""), "every i2c-dev node to group i2c");
    // What the profiles need: at most one bus and one chip each.
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
#[test]
fn red20_rauc_the_daemon_can_switch_to_the_older_slot_over_dbus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let packages = read("rootfs/packages.txt");
    assert!(packages.lines().any(|l| l.trim() == "rauc-service"), "RAUC's D-Bus service is in the image");
    // The image's own policy: root only; Debian's open one removed.
    let policy = read("rootfs/overlay/etc/dbus-1/system.d/de.pengutronix.rauc.conf");
    let root_part = policy.split("<policy user=\"root\">").nth(1).expect("a root policy").split("</policy>").next().unwrap();
    assert!(root_part.contains("<allow send_destination=\"de.pengutronix.rauc\"/>"), "{policy}");
    let default = policy.split("<policy context=\"default\">").nth(1).expect("a default policy").split("</policy>").next().unwrap();
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
#[test]
fn red20_tpm_keys_stay_in_clear_for_good_when_first_boot_stops_before_sealing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let overlay = root.join("rootfs/overlay");
    let unit = std::fs::read_to_string(overlay.join("etc/systemd/system/witness-firstboot.service")).unwrap();
    assert!(unit.contains("ConditionPathExists=!/var/lib/witness/witness.toml"), "{unit}");
    let script = std::fs::read_to_string(overlay.join("usr/libexec/witness/firstboot")).unwrap();
    let init = script.find("/usr/bin/witness init").expect("firstboot runs witness init");
    let seal = script.find("keys seal --tpm").expect("firstboot seals");
    assert!(init < seal, "the keys are made (in clear) before they are sealed");
    let provision = std::fs::read_to_string(root.join("firmware/witness/src/provision.rs")).unwrap();
    assert!(
        provision.contains("the config\n/// last (its presence marks a complete data directory)"),
        "init writes witness.toml last, before the sealing step runs"
    );
    // Every other place of the image that could seal them: none.
    let others =
        sh(&format!("grep -rl 'keys seal' {} | grep -v '/usr/libexec/witness/firstboot$' || true", overlay.display()));
    assert!(stdout(&others).trim().is_empty(), "something else seals the keys: {}", stdout(&others));
    let daemon = sh(&format!("grep -rl 'seal_to_tpm' {} || true", root.join("firmware/witness/src/daemon").display()));
    assert!(stdout(&daemon).trim().is_empty(), "the daemon seals left-over clear keys at start: {}", stdout(&daemon));
}

/// Red team h-red20: `keys/tpm.policy` (the boot states every new key is sealed to) is a plain
/// file on the data partition that nothing authenticates, and its PCR list is taken as written.
/// Someone with the disk for a minute (an evil maid, or the daemon's own user) adds a line bound
/// to PCR 16 (the debug PCR, which every boot holds at zero and anyone may reset): every key made
/// from then on (each KEK rotation, a new search key) is also sealed to "PCR 16 is zero" and
/// opens on this TPM in any boot state — no measurement, any root, any command line.
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

    // Weeks later the box rotates its key; recordings are encrypted under the new one.
    let id = witness_keys::rotate(root).unwrap();
    let sealed = std::fs::read(root.join(format!("keys/kek-{id}.tpm"))).unwrap();
    let mut labels = witness_tpm::labels(&sealed).unwrap();
    labels.sort();
    assert_eq!(labels, ["a", "x"], "sealed to the planted state too");
    // The attacker's boot: nothing measured (PCR 15 is zero), any root. The new KEK opens.
    sim.restart();
    let tpm = witness_tpm::Tpm::new(&sim.tcti());
    assert_eq!(tpm.pcrs(&[witness_keys::SLOT_PCR]).unwrap()[0].1, [0u8; 32], "no slot measured");
    let opened = tpm.unseal(&sealed).expect("the new KEK opened in an unmeasured boot (the hole is closed?)");
    assert_eq!(opened.len(), 32);
}

/// Red team h-red20: the size budget never measures the root that ships. Its fail line is "the
/// root without the binary plus the release binary's *line*" (36 MiB), not the root as built; the
/// shipped binary has a line of its own that the environment raises
/// (`WITNESS_BINARY_BUDGET_MB`, as the image test does for its debug build). So a root with any
/// binary — 93 MiB of debug tables, or 500 — passes `cargo xtask image --binary …` with that
/// variable set, and the image the QEMU test boots (and asserts "the budget" on) is well over
/// 200 MB: its size table's "root, unpacked" row is compared with nothing.
#[test]
fn red20_image_budget_counts_a_binary_line_not_the_binary_shipped() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let build = std::fs::read_to_string(root.join("rootfs/build.sh")).unwrap();
    assert!(
        build.contains("binary_budget_mb=${WITNESS_BINARY_BUDGET_MB:-"),
        "the shipped binary's line comes from the environment"
    );
    let checks: Vec<&str> =
        build.lines().filter(|l| l.trim_start().starts_with("[ ") && l.contains("|| die")).collect();
    let root_check = checks.iter().find(|l| l.contains("root_budget_mb")).expect("a root budget check");
    assert!(
        root_check.contains("root_mb - witness_mb + release_binary_budget_mb"),
        "the root check swaps the shipped binary for the release line: {root_check}"
    );
    assert!(
        !checks.iter().any(|l| l.contains("\"$root_mb\" -le") || l.contains("$root_mb -le")),
        "nothing compares the root as built with a budget: {checks:?}"
    );
    let test = std::fs::read_to_string(root.join("tests/e2e/image.rs")).unwrap();
    assert!(!test.contains("row(\"root, unpacked\")"), "the image test never reads the built root's size");
}
