//! The front panel and the watchdog, daemon-level, on the simulated board: the panel follows
//! the box's state, an unreachable store with a backlog shows as offline, a recorder that can
//! no longer write stops the watchdog being petted, and a factory reset keeps recordings that
//! are not uploaded yet, shows the new password on the console only, and leaves the new admin no
//! way into past recordings unless told to keep it.

use crate::harness::*;
use std::process::{Command, Output};
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
    let (out, console) = reset(&b, &["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let password = console_password(&console);
    assert!(!stdout(&out).contains(&password) && !stderr(&out).contains(&password), "the password left the console");
    assert!(!b.data().join("store.toml").exists(), "store credentials wiped");
    assert_eq!(b.ok(&["user", "list"], None).trim(), "admin\tadmin", "only the new admin is left");
    assert_eq!(b.ok(&["target", "list"], None).trim(), "", "targets and their credentials are gone");
    let kept = b.recordings();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["id"], rec["id"]);
    assert!(b.data().join(kept[0]["path"].as_str().unwrap()).exists(), "the recording file is kept");
    // Deleting it takes both confirmations.
    let (out, _) = reset(&b, &["--yes", "--delete-unuploaded-recordings", "--confirm-delete-unuploaded-recordings"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(b.recordings().is_empty());
    assert!(!b.data().join(kept[0]["path"].as_str().unwrap()).exists());
    assert!(b.audit_kinds().iter().filter(|k| *k == "factory_reset").count() == 2);
}

/// `witness factory-reset ARGS` with the box's console as the image gives it to the daemon (a
/// folder its root oneshot copies to /dev/console); returns the output and what the console got.
fn reset(b: &Box, args: &[&str]) -> (Output, String) {
    let console = b.dir.path().join("console");
    std::fs::create_dir_all(&console).unwrap();
    let _ = std::fs::remove_file(console.join("factory-reset.msg"));
    let mut all = vec!["factory-reset"];
    all.extend_from_slice(args);
    let out = b.cli_env(&all, None, &[("WITNESS_CONSOLE_DIR", &console)]);
    let shown = std::fs::read_to_string(console.join("factory-reset.msg")).unwrap_or_default();
    (out, shown)
}

fn console_password(console: &str) -> String {
    let line = console.lines().find(|l| l.starts_with("admin user: admin  password: ")).unwrap_or_else(|| {
        panic!("no admin password on the console: {console}");
    });
    line["admin user: admin  password: ".len()..].split(' ').next().unwrap().to_owned()
}

/// Whoever resets the box must not become admin over what was recorded before: without
/// `--keep-recording-access` the keys of past recordings, the store's read settings and the
/// journal collector are gone, and the new admin cannot play a past recording; with it, they
/// can. Either way the new password is only on the console: not in the command's output, not in
/// the daemon's log.
fn reset_then_play(keep: bool) {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    // Put together by the shell: only the output holds the word whole.
    let out = b.ssh("alice@web01").arg("printf 'past-%s\\n' narwhal").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    b.stop();
    b.ok(
        &[
            "store",
            "set-read",
            "s3",
            "--endpoint",
            "http://127.0.0.1:9",
            "--bucket",
            "past-bucket",
            "--access-key-id",
            "reader",
            "--secret-key-stdin",
        ],
        Some("read-secret\n"),
    );
    std::fs::write(b.data().join("journal-upload.env"), "URL=https://collector.example:19532\n").unwrap();
    assert!(b.data().join("store-read.toml").exists());

    // No confirmation, no reset: the consequences are printed first all the same.
    let (out, console) = reset(&b, if keep { &["--keep-recording-access"] } else { &[] });
    assert!(!out.status.success() && console.is_empty(), "reset without a confirmation");
    assert!(stderr(&out).contains("add --yes"), "{}", stderr(&out));
    let told = if keep { "KEPT (--keep-recording-access)" } else { "can never again be played" };
    assert!(stderr(&out).contains(told), "the consequences come before the confirmation: {}", stderr(&out));

    let (out, console) = reset(&b, if keep { &["--yes", "--keep-recording-access"] } else { &["--yes"] });
    assert!(out.status.success(), "{}", stderr(&out));
    let password = console_password(&console);
    assert!(console.contains(told), "the console tells what was done: {console}");
    assert!(!stdout(&out).contains(&password) && !stderr(&out).contains(&password), "the password left the console");
    assert!(!b.data().join("journal-upload.env").exists(), "the journal collector is wiped");
    assert_eq!(b.data().join("store-read.toml").exists(), keep, "store-read.toml kept only with the flag");
    let keks: Vec<String> = std::fs::read_dir(b.data().join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kek") || n.starts_with("search.key"))
        .collect();
    assert_eq!(!keks.is_empty(), keep, "recording keys left: {keks:?}");

    b.serve();
    let mut admin = crate::web::Web::new(&b);
    assert_eq!(admin.login("admin", &password).status, 200, "the new admin logs in with the console's password");
    let content = admin.get(&format!("/api/v1/recordings/{id}/content"));
    if keep {
        assert_eq!(content.status, 200, "{}", content.body);
        assert!(content.body.contains("past-narwhal"), "{}", content.body);
    } else {
        assert_ne!(content.status, 200, "a past recording played after the keys were destroyed");
        assert!(!content.body.contains("past-narwhal"));
        let export =
            b.cli(&["recordings", "export", &id, "--out", b.dir.path().join("x.cast").to_str().unwrap()], None);
        assert!(!export.status.success(), "exported a past recording after the keys were destroyed");
    }
    let out = b.ssh("alice@web01").arg("true").output().unwrap();
    assert!(!out.status.success(), "alice is gone with every other user");
    b.stop();
    assert!(!b.log().contains(&password), "the daemon's log (the journal) holds the password");
    let audit = b.audit();
    let event = audit.iter().rev().find(|e| e["kind"] == "factory_reset").expect("factory_reset audited");
    assert!(!event.to_string().contains(&password));
}

#[test]
fn factory_reset_destroys_access_to_past_recordings() {
    reset_then_play(false);
}

#[test]
fn factory_reset_keeps_access_to_past_recordings_only_when_told() {
    reset_then_play(true);
}
