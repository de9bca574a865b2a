//! The front panel and the watchdog, daemon-level, on the simulated board: the panel follows
//! the box's state, an unreachable store with a backlog shows as offline, a recorder that can
//! no longer write stops the watchdog being petted, and a factory reset keeps recordings that
//! are not uploaded yet.

use crate::harness::*;
use std::process::Command;
use std::time::Duration;

fn panel(b: &Box) -> Option<serde_json::Value> {
    let out = b.cli(&["panel", "--json"], None);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

fn wait_panel(b: &Box, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    eventually(30, what, || panel(b).filter(|p| f(p)))
}

#[test]
fn panel_follows_sessions_and_the_watchdog_is_petted() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let p = wait_panel(&b, "ready", |p| p["state"] == "ready");
    assert_eq!(p["profile"], "sim");
    assert!(p["profile_reason"].as_str().unwrap().contains("simulated"), "{p}");
    assert_eq!((p["green"].as_bool(), p["red"].as_bool()), (Some(true), Some(false)), "ready: green on");
    let pets = wait_panel(&b, "the watchdog petted", |p| p["watchdog"]["pets"].as_u64().unwrap_or(0) >= 2)["watchdog"]
        ["pets"]
        .as_u64()
        .unwrap();
    let mut client = b
        .ssh("alice@web01")
        .arg("sleep 30")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let p = wait_panel(&b, "recording", |p| p["state"] == "recording");
    assert_eq!(p["live_sessions"], 1);
    assert_eq!(p["red"], false);
    let _ = client.kill();
    let _ = client.wait();
    wait_panel(&b, "ready again", |p| p["state"] == "ready" && p["live_sessions"] == 0);
    let later = panel(&b).unwrap()["watchdog"]["pets"].as_u64().unwrap();
    assert!(later > pets, "still petted while healthy");
    let text = b.ok(&["panel"], None);
    assert!(text.contains("panel:    ready") && text.contains("watchdog: petted"), "{text}");
}

#[test]
fn unreachable_store_with_a_backlog_shows_offline() {
    let sshd = Sshd::start();
    let s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo waiting-for-the-store").output().unwrap().status.success());
    let p = wait_panel(&b, "offline", |p| p["state"] == "offline");
    assert_eq!(p["pattern"]["green"], "On");
    assert!(p["pattern"]["red"].get("Every").is_some(), "offline blinks red: {p}");
    assert_eq!(p["healthy"], true, "offline is not a fault: the watchdog keeps being petted");
}

#[test]
fn a_recorder_that_cannot_write_stops_the_watchdog() {
    let mut b = Box::new();
    let recordings = b.data().join("recordings");
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&recordings)
            .status()
            .unwrap()
            .success()
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(recordings.clone());
    let cfg = b.data().join("witness.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("# min_free_mb = 256", "min_free_mb = 1")).unwrap();
    b.serve();
    wait_panel(&b, "healthy and petted", |p| p["healthy"] == true && p["watchdog"]["pets"].as_u64().unwrap_or(0) >= 1);
    // The recordings' file system stops taking writes, as a failing disk would.
    assert!(Command::new("mount").args(["-o", "remount,ro"]).arg(&recordings).status().unwrap().success());
    let p = wait_panel(&b, "fault", |p| p["state"] == "fault");
    assert_eq!(p["watchdog"]["petting"], false);
    assert!(p["health"]["recorder"].as_str().unwrap().contains("cannot be written"), "{p}");
    let pets = p["watchdog"]["pets"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        panel(&b).unwrap()["watchdog"]["pets"].as_u64().unwrap(),
        pets,
        "no more pets: the hardware resets the box"
    );
    assert!(b.ok(&["panel"], None).contains("NOT petted"));
}

#[test]
fn factory_reset_keeps_recordings_not_yet_uploaded() {
    let sshd = Sshd::start();
    let s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo evidence").output().unwrap().status.success());
    let rec = finished_recording(&b);
    b.stop();
    let out = b.cli(&["factory-reset", "--yes", "--delete-unuploaded-recordings"], None);
    assert!(!out.status.success(), "one confirmation is not enough");
    assert!(stderr(&out).contains("--confirm-delete-unuploaded-recordings"), "{}", stderr(&out));
    let out = b.ok(&["factory-reset", "--yes"], None);
    assert!(out.contains("admin user: admin  password: "), "{out}");
    assert!(!b.data().join("store.toml").exists(), "store credentials wiped");
    assert_eq!(b.ok(&["user", "list"], None).trim(), "admin\tadmin", "only the new admin is left");
    assert_eq!(b.ok(&["target", "list"], None).trim(), "", "targets and their credentials are gone");
    let kept = b.recordings();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["id"], rec["id"]);
    assert!(b.data().join(kept[0]["path"].as_str().unwrap()).exists(), "the recording file is kept");
    // Deleting it takes both confirmations.
    b.ok(&["factory-reset", "--yes", "--delete-unuploaded-recordings", "--confirm-delete-unuploaded-recordings"], None);
    assert!(b.recordings().is_empty());
    assert!(!b.data().join(kept[0]["path"].as_str().unwrap()).exists());
    assert!(b.audit_kinds().iter().filter(|k| *k == "factory_reset").count() == 2);
}
