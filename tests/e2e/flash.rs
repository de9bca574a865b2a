//! `flash.sh` against a file and real loop devices, including every refusal: mounted, the
//! running system's disk, an LVM physical volume and an md member with nothing mounted.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub(crate) fn flash(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("flash.sh");
    Command::new("sh").arg(script).args(args).stdin(Stdio::null()).output().unwrap()
}

pub(crate) fn image(dir: &Path, bytes: usize) -> PathBuf {
    let p = dir.join("witness.img");
    let out = sh(&format!("head -c {bytes} /dev/urandom > {}", p.display()));
    assert!(out.status.success());
    p
}

/// A loop device over a sparse file, detached on drop.
pub(crate) struct Loop(pub(crate) String);

impl Loop {
    pub(crate) fn new(backing: &Path, bytes: u64) -> Self {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(backing).unwrap();
        f.set_len(bytes).unwrap();
        let out = Command::new("losetup").args(["-f", "--show"]).arg(backing).output().unwrap();
        assert!(out.status.success(), "losetup needs root: {}", stderr(&out));
        Loop(stdout(&out).trim().to_owned())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn writes_and_verifies_a_file_and_a_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let out_file = dir.path().join("out.img");
    let out = flash(&["--yes", img.to_str().unwrap(), out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("verified: sha256"));
    assert_eq!(sha256_file(&out_file), sha256_file(&img));

    let dev = Loop::new(&dir.path().join("disk"), 8 * 1024 * 1024);
    let out = flash(&["--yes", img.to_str().unwrap(), &dev.0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let readback = sh(&format!("head -c 3000000 {} | sha256sum", dev.0));
    assert!(stdout(&readback).starts_with(&sha256_file(&img)));
}

#[test]
fn refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let i = img.to_str().unwrap();
    let refused = |args: &[&str], why: &str| {
        let out = flash(args);
        assert_eq!(out.status.code(), Some(1), "{args:?} must fail");
        assert!(stderr(&out).contains(why), "{args:?}: expected {why:?} in {}", stderr(&out));
    };
    refused(&["--yes", i, "/dev/null"], "is neither a block device nor a regular file");
    refused(&["--yes", i, dir.path().to_str().unwrap()], "is neither a block device nor a regular file");
    refused(&["--yes", "/nonexistent.img", "/tmp/x"], "does not exist");
    refused(&[i, dir.path().join("o.img").to_str().unwrap()], "not asking without a terminal: add --yes");
    assert!(!dir.path().join("o.img").exists(), "nothing written without confirmation");
    // The disk the running system is on (checked without writing, whatever happens).
    let root = stdout(&Command::new("findmnt").args(["-no", "SOURCE", "/"]).output().unwrap()).trim().to_owned();
    if root.starts_with("/dev/") {
        let out = flash(&["--check-only", "--yes", i, &root]);
        assert_eq!(out.status.code(), Some(1), "the root disk is refused: {}", stderr(&out));
        assert!(stderr(&out).contains("refused (system)"), "{}", stderr(&out));
    }
    // Too small.
    let small = Loop::new(&dir.path().join("small"), 1024 * 1024);
    refused(&["--yes", i, &small.0], "the image needs 3000000");
    // Mounted.
    let dev = Loop::new(&dir.path().join("disk"), 8 * 1024 * 1024);
    assert!(Command::new("mkfs.ext4").args(["-q", "-F", &dev.0]).status().unwrap().success());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    assert!(Command::new("mount").arg(&dev.0).arg(&mnt).status().unwrap().success());
    refused(&["--yes", i, &dev.0], "refused (mounted)");
    refused(&["--yes", i, &dev.0], "is mounted on");
    let _ = Command::new("umount").arg(&mnt).status();
}

/// Nothing mounted directly, yet the disk is part of a storage stack: refused by the rule that
/// names the stack, and not one byte written.
fn refused_untouched(dev: &Loop, backing: &Path, rule: &str) {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), 3_000_000);
    let before = sha256_file(backing);
    let out = flash(&["--yes", img.to_str().unwrap(), &dev.0]);
    assert_eq!(out.status.code(), Some(1), "{} must be refused: {}", dev.0, stderr(&out));
    let want = format!("refused ({rule}): {}", dev.0);
    assert!(stderr(&out).contains(&want), "expected {want:?} in {}", stderr(&out));
    assert_eq!(sha256_file(backing), before, "nothing written to {}", dev.0);
}

#[test]
fn refuses_an_lvm_physical_volume_with_nothing_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("pv");
    let dev = Loop::new(&backing, 16 * 1024 * 1024);
    let vg = format!("witnessflash{}", std::process::id());
    let lvm = |args: &[&str]| {
        let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {} (cargo xtask setup installs lvm2)", stderr(&out));
    };
    lvm(&["pvcreate", "-y", &dev.0]);
    lvm(&["vgcreate", &vg, &dev.0]);
    struct Vg(String, String);
    impl Drop for Vg {
        fn drop(&mut self) {
            let _ = Command::new("vgchange").args(["-an", &self.0]).output();
            let _ = Command::new("vgremove").args(["-f", &self.0]).output();
            let _ = Command::new("pvremove").args(["-ff", "-y", &self.1]).output();
        }
    }
    let _vg = Vg(vg.clone(), dev.0.clone());
    refused_untouched(&dev, &backing, "lvm-pv");
    // With device-mapper in the kernel, an active logical volume makes the disk a holder's
    // slave: the holders rule names it first. (Kernels without device-mapper stop above.)
    if Path::new("/dev/mapper/control").exists() {
        lvm(&["lvcreate", "-y", "-n", "lv", "-L", "8M", &vg]);
        let img = image(dir.path(), 3_000_000);
        let out = flash(&["--yes", img.to_str().unwrap(), &dev.0]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("refused (holders)") && stderr(&out).contains(&format!("{vg}-lv")),
            "{}",
            stderr(&out)
        );
    }
}

/// An md v1.2 member superblock (4 KiB into the device) of a two-disk RAID1, as mdadm writes it:
/// this machine's kernel may have no md driver, so mdadm cannot create an array here.
fn md_member_superblock(device_bytes: u64) -> Vec<u8> {
    let mut sb = vec![0u8; 256 + 2 * 2];
    let put32 = |sb: &mut Vec<u8>, at: usize, v: u32| sb[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 = |sb: &mut Vec<u8>, at: usize, v: u64| sb[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put32(&mut sb, 0, 0xa92b_4efc); // magic
    put32(&mut sb, 4, 1); // major version
    sb[16..32].copy_from_slice(&[0x57; 16]); // set uuid
    sb[32..32 + 14].copy_from_slice(b"witness-test:0");
    put64(&mut sb, 64, 1_700_000_000); // ctime
    put32(&mut sb, 72, 1); // level: RAID1
    let data_offset = 2048u64; // sectors
    let data_size = device_bytes / 512 - data_offset;
    put64(&mut sb, 80, data_size); // size
    put32(&mut sb, 92, 2); // raid disks
    put64(&mut sb, 128, data_offset);
    put64(&mut sb, 136, data_size);
    put64(&mut sb, 144, 8); // super offset: 4 KiB
    put64(&mut sb, 152, u64::MAX); // recovery offset: fully in sync
    sb[168..184].copy_from_slice(&[0x17; 16]); // device uuid
    put64(&mut sb, 192, 1_700_000_000); // utime
    put64(&mut sb, 200, 1); // events
    put64(&mut sb, 208, u64::MAX); // resync offset: clean
    put32(&mut sb, 220, 2); // max dev
    sb[256..260].copy_from_slice(&[0, 0, 1, 0]); // dev roles 0, 1
    let sum: u64 = sb.chunks(4).map(|w| u64::from(u32::from_le_bytes(w.try_into().unwrap()))).sum();
    let csum = ((sum & 0xffff_ffff) + (sum >> 32)) as u32;
    put32(&mut sb, 216, csum);
    sb
}

#[test]
fn refuses_an_md_member_with_nothing_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("md");
    let bytes = 16 * 1024 * 1024;
    std::fs::File::create(&backing).unwrap().set_len(bytes).unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&backing).unwrap();
        f.write_all_at(&md_member_superblock(bytes), 4096).unwrap();
    }
    let dev = Loop::new(&backing, bytes);
    // mdadm itself reads it as a member of a two-disk RAID1.
    let out = Command::new("mdadm").args(["--examine", &dev.0]).output().unwrap();
    assert!(out.status.success(), "mdadm --examine: {} (cargo xtask setup installs mdadm)", stderr(&out));
    assert!(stdout(&out).contains("Raid Level : raid1"), "{}", stdout(&out));
    refused_untouched(&dev, &backing, "md-member");
}
