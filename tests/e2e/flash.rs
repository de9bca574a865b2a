//! `flash.sh` against a file and a real loop device, including every refusal.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn flash(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("flash.sh");
    Command::new("sh").arg(script).args(args).stdin(Stdio::null()).output().unwrap()
}

fn image(dir: &Path, bytes: usize) -> PathBuf {
    let p = dir.join("witness.img");
    let out = sh(&format!("head -c {bytes} /dev/urandom > {}", p.display()));
    assert!(out.status.success());
    p
}

/// A loop device over a sparse file, detached on drop.
struct Loop(String);

impl Loop {
    fn new(backing: &Path, bytes: u64) -> Self {
        std::fs::File::create(backing).unwrap().set_len(bytes).unwrap();
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
    refused(&["--yes", i, &dev.0], "is mounted; unmount it first");
    let _ = Command::new("umount").arg(&mnt).status();
}
