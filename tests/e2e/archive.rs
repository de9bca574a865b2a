//! The after-life of a recording as durable jobs (seal → extract, upload → verify → prune):
//! attacks on the pipeline. The box is killed with SIGKILL between two steps, the store is
//! away, the local copy is changed before it goes up: after each, nothing is lost or deleted
//! before the remote copy is verified, a step already done is not done again, and `sync
//! status` shows where every recording stands.

use crate::harness::*;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Where the default store (a folder in the data dir) keeps a recording's object.
fn stored(b: &Box, rec: &serde_json::Value, suffix: &str) -> PathBuf {
    b.data().join("store").join(format!(
        "{}/{}/{}/{}{suffix}",
        box_id(b),
        &rec["started_at"].as_str().unwrap()[..10],
        rec["session_id"].as_str().unwrap(),
        rec["id"].as_str().unwrap()
    ))
}

fn key_of(b: &Box, rec: &serde_json::Value) -> String {
    format!(
        "{}/{}/{}/{}.cast",
        box_id(b),
        &rec["started_at"].as_str().unwrap()[..10],
        rec["session_id"].as_str().unwrap(),
        rec["id"].as_str().unwrap()
    )
}

fn status(b: &Box) -> serde_json::Value {
    b.json(&["sync", "status", "--json"])
}

/// The job rows `sync status` shows for a recording: (step, state, attempts, reason).
fn jobs_of(b: &Box, id: &str) -> Vec<(String, String, u64, String)> {
    let st = status(b);
    st["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs in sync status: {st}"))
        .iter()
        .filter(|j| j["recording"] == id)
        .map(|j| {
            (
                j["step"].as_str().unwrap().to_owned(),
                j["state"].as_str().unwrap().to_owned(),
                j["attempts"].as_u64().unwrap(),
                j["reason"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn state_of(jobs: &[(String, String, u64, String)], step: &str) -> Option<String> {
    jobs.iter().find(|j| j.0 == step).map(|j| j.1.clone())
}

fn this(b: &Box, id: &str) -> serde_json::Value {
    b.recordings().into_iter().find(|r| r["id"] == id).unwrap()
}

fn mtime(p: &std::path::Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// A session that prints `word` and stays open a few seconds: the recording's row exists (its
/// id known) before it ends. Returns the running client and the recording.
fn open_session(b: &Box, word: &str) -> (std::process::Child, serde_json::Value) {
    let child = b
        .ssh("alice@web01")
        .arg(format!("echo {word}; sleep 4"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rec = eventually(15, "the recording to start", || b.recordings().into_iter().next());
    (child, rec)
}

/// SIGKILL after the recording is in the store but before its evidence is complete there (its
/// signed manifest refused): after the restart the pipeline resumes at verify — the stored
/// recording is not sent again — and the local copy stays until verify is done.
#[test]
fn archive_kill9_between_upload_and_verify_resumes_at_verify_and_keeps_the_local_copy() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.serve();
    let (mut client, rec) = open_session(&b, "between-upload-and-verify");
    let id = rec["id"].as_str().unwrap().to_owned();
    // The store refuses the manifest (a directory where its object goes).
    let manifest_object = stored(&b, &rec, ".manifest.json");
    std::fs::create_dir_all(&manifest_object).unwrap();
    assert!(client.wait().unwrap().success());
    let rec = finished_recording(&b);
    let local = b.data().join(rec["path"].as_str().unwrap());
    let jobs = eventually(30, "uploaded, verify waiting on the refused manifest", || {
        let jobs = jobs_of(&b, &id);
        (state_of(&jobs, "upload").as_deref() == Some("done") && jobs.iter().any(|j| j.0 == "verify" && j.2 >= 1))
            .then_some(jobs)
    });
    let verify = jobs.iter().find(|j| j.0 == "verify").unwrap();
    assert_eq!(verify.1, "waiting", "{jobs:?}");
    assert!(verify.3.contains("manifest"), "the reason is shown: {jobs:?}");
    assert!(state_of(&jobs, "prune").is_none(), "no prune before verify: {jobs:?}");
    let object = stored(&b, &rec, ".cast");
    assert_eq!(sha256_file(&object), rec["sha256"].as_str().unwrap(), "the recording is in the store");
    let sent_at = mtime(&object);
    assert!(b.ok(&["sync", "status"], None).contains("verify waiting"), "the text status names the step");
    // `sync now --wait` runs the same step (here or in the daemon, whichever takes it): it fails
    // again, and the command says which step of which recording waits, and why.
    let out = b.cli(&["sync", "now", "--wait"], None);
    assert!(!out.status.success(), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(said.contains("manifest") && said.contains(&format!("verify of {id}")), "{said}");

    b.kill9();
    assert!(local.exists(), "the local copy is there after the kill");
    assert_ne!(this(&b, &id)["status"], "uploaded");
    b.serve();
    std::thread::sleep(Duration::from_secs(5));
    let jobs = jobs_of(&b, &id);
    assert_eq!(state_of(&jobs, "verify").as_deref(), Some("waiting"), "{jobs:?}");
    assert!(local.exists(), "pruned although verify is not done");
    std::fs::remove_dir(&manifest_object).unwrap();
    eventually(40, "verified and pruned", || (this(&b, &id)["status"] == "uploaded" && !local.exists()).then_some(()));
    assert_eq!(mtime(&object), sent_at, "the stored recording was not sent again after the restart");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_object).unwrap()).unwrap();
    assert_eq!(manifest["recording_id"], id.as_str());
    let jobs = jobs_of(&b, &id);
    assert!(jobs.is_empty(), "a finished pipeline leaves nothing waiting: {jobs:?}");
    let uploaded = b.audit_kinds().iter().filter(|k| *k == "recording_uploaded").count();
    assert_eq!(uploaded, 1, "uploaded once");
    let chain = b.cli(&["audit", "--verify"], None);
    assert!(chain.status.success(), "the index stays consistent: {}", stderr(&chain));
}

/// SIGKILL between upload and verify, and the store changed while the box was down (`store set`
/// to an S3 bucket): verify finds no confirmation from this store of the recording, so it is
/// uploaded again (the store checks it on arrival) before its evidence goes beside it; it is
/// not marked uploaded, nor pruned, on the word of another store. (The old code stored the
/// manifest in the new bucket, marked the recording uploaded and deleted the only copy the
/// new store's reader could have had.)
#[test]
fn archive_kill9_between_upload_and_verify_then_another_store_uploads_again_before_verifying() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.serve();
    let (mut client, rec) = open_session(&b, "store-changed-between-steps");
    let id = rec["id"].as_str().unwrap().to_owned();
    std::fs::create_dir_all(stored(&b, &rec, ".manifest.json")).unwrap();
    assert!(client.wait().unwrap().success());
    let rec = finished_recording(&b);
    let local = b.data().join(rec["path"].as_str().unwrap());
    eventually(30, "uploaded to the folder, verify waiting on the refused manifest", || {
        let jobs = jobs_of(&b, &id);
        (state_of(&jobs, "upload").as_deref() == Some("done") && jobs.iter().any(|j| j.0 == "verify" && j.2 >= 1))
            .then_some(())
    });
    assert_eq!(sha256_file(&stored(&b, &rec, ".cast")), rec["sha256"].as_str().unwrap());

    b.kill9();
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    eventually(60, "verified in the new store and pruned", || {
        (this(&b, &id)["status"] == "uploaded" && !local.exists()).then_some(())
    });
    let key = key_of(&b, &rec);
    use sha2::Digest;
    let object = s3.object(&key).expect("the recording is in the store it was verified in");
    assert_eq!(hex::encode(sha2::Sha256::digest(&object)), rec["sha256"].as_str().unwrap());
    let base = key.strip_suffix(".cast").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&s3.object(&format!("{base}.manifest.json")).expect("its manifest")).unwrap();
    assert_eq!(manifest["recording_id"], id.as_str());
    assert!(b.log().contains("uploading it again"), "the box says why it sent the recording again");
    assert!(jobs_of(&b, &id).is_empty());
    let uploaded = b.audit_kinds().iter().filter(|k| *k == "recording_uploaded").count();
    assert_eq!(uploaded, 1, "uploaded once");
}

/// SIGKILL between sealing and upload, with the store away: the sealed manifest is kept (not
/// sealed again), nothing is deleted while the store cannot be reached, and once it is back the
/// recording goes up with that manifest and only then leaves the box.
#[test]
fn archive_kill9_between_seal_and_upload_with_the_store_away_loses_nothing() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo between-seal-and-upload").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let local = b.data().join(rec["path"].as_str().unwrap());
    let local_manifest = local.with_extension("manifest.json");
    let jobs = eventually(30, "sealed, the upload waiting on the store", || {
        let jobs = jobs_of(&b, &id);
        jobs.iter().any(|j| j.0 == "upload" && j.2 >= 1).then_some(jobs)
    });
    assert_eq!(state_of(&jobs, "seal").as_deref(), Some("done"), "{jobs:?}");
    let upload = jobs.iter().find(|j| j.0 == "upload").unwrap();
    assert!(upload.3.contains("unreachable"), "why it waits: {jobs:?}");
    let sealed = std::fs::read(&local_manifest).unwrap();
    let sealed_at = mtime(&local_manifest);

    b.kill9();
    b.serve();
    std::thread::sleep(Duration::from_secs(4));
    assert!(local.exists(), "nothing is deleted while the store is away");
    assert_eq!(this(&b, &id)["status"], "completed");
    assert_eq!(mtime(&local_manifest), sealed_at, "sealing is not done again after the restart");
    let jobs = jobs_of(&b, &id);
    assert_eq!(state_of(&jobs, "upload").as_deref(), Some("waiting"), "{jobs:?}");
    assert!(state_of(&jobs, "verify").is_none() && state_of(&jobs, "prune").is_none(), "{jobs:?}");

    s3.run();
    eventually(60, "uploaded and pruned once the store is back", || {
        (this(&b, &id)["status"] == "uploaded" && !local.exists()).then_some(())
    });
    let key = key_of(&b, &rec);
    use sha2::Digest;
    let object = s3.object(&key).expect("the recording is in the store");
    assert_eq!(hex::encode(sha2::Sha256::digest(&object)), rec["sha256"].as_str().unwrap());
    let base = key.strip_suffix(".cast").unwrap();
    assert_eq!(s3.object(&format!("{base}.manifest.json")).unwrap(), sealed, "the manifest sealed before the kill");
    assert!(jobs_of(&b, &id).is_empty());
    let chain = b.cli(&["audit", "--verify"], None);
    assert!(chain.status.success(), "the index stays consistent: {}", stderr(&chain));
}

/// `sync now --wait` with the daemon stopped runs the job graph itself, one path for uploads:
/// the upload the daemon could not do (the store was away) goes up, is verified and pruned
/// through the graph's steps, and `sync status` shows those steps done — none left waiting as
/// if nothing had happened. (The old `sync now` uploaded in passes over the upload rows beside
/// the graph, which still said the upload was waiting, with no verify or prune.)
#[test]
fn archive_sync_now_runs_the_job_graph_to_its_end() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo through-sync-now").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let local = b.data().join(rec["path"].as_str().unwrap());
    eventually(30, "sealed, the upload waiting on the store", || {
        jobs_of(&b, &id).iter().any(|j| j.0 == "upload" && j.2 >= 1).then_some(())
    });
    b.stop();
    s3.run();
    let out = b.cli(&["sync", "now", "--wait"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("uploaded 1 recordings"), "{}", stdout(&out));
    assert_eq!(this(&b, &id)["status"], "uploaded");
    assert!(!local.exists(), "pruned by the graph's prune step");
    // Listed only while some step waits (its text, read by the daemon): then all others done.
    let jobs = jobs_of(&b, &id);
    if !jobs.is_empty() {
        for step in ["seal", "upload", "verify", "prune"] {
            assert_eq!(state_of(&jobs, step).as_deref(), Some("done"), "{step}: {jobs:?}");
        }
    }
    let key = key_of(&b, &rec);
    use sha2::Digest;
    let object = s3.object(&key).expect("the recording is in the store");
    assert_eq!(hex::encode(sha2::Sha256::digest(&object)), rec["sha256"].as_str().unwrap());
    let uploaded = b.audit_kinds().iter().filter(|k| *k == "recording_uploaded").count();
    assert_eq!(uploaded, 1, "uploaded once");
}

/// A byte of the local copy flipped after sealing, before the upload: what reaches the store
/// does not match the sealed checksum and is refused, the upload waits with the reason, and the
/// local copy (the only one) is neither marked uploaded nor deleted.
#[test]
fn archive_a_local_copy_changed_before_upload_is_refused_and_kept() {
    let sshd = Sshd::start();
    let mut s3 = S3::stopped();
    let mut b = Box::with_target(&sshd);
    b.configure("store", "keep_local_days = 0");
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo flipped-before-upload").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let local = b.data().join(rec["path"].as_str().unwrap());
    eventually(30, "sealed, the upload waiting on the store", || {
        jobs_of(&b, &id).iter().any(|j| j.0 == "upload" && j.2 >= 1).then_some(())
    });
    let mut bytes = std::fs::read(&local).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&local, &bytes).unwrap();
    s3.run();
    let attempts_before = jobs_of(&b, &id).iter().find(|j| j.0 == "upload").unwrap().2;
    let jobs = eventually(40, "the changed copy refused", || {
        let jobs = jobs_of(&b, &id);
        let up = jobs.iter().find(|j| j.0 == "upload")?;
        (up.2 > attempts_before && !up.3.contains("unreachable")).then_some(jobs)
    });
    let upload = jobs.iter().find(|j| j.0 == "upload").unwrap();
    assert_eq!(upload.1, "waiting", "{jobs:?}");
    assert!(state_of(&jobs, "verify").is_none() && state_of(&jobs, "prune").is_none(), "{jobs:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(this(&b, &id)["status"], "completed", "not marked uploaded");
    assert_eq!(std::fs::read(&local).unwrap(), bytes, "the local copy is kept as it is");
    // What the store answered is never taken for the recording: refused on arrival (or its
    // reported checksum not the sealed one), the box hashed the file and names the change.
    assert!(upload.3.contains("changed since it was sealed"), "refused as changed: {jobs:?}");
    let pipeline = b.ok(&["sync", "status"], None);
    assert!(pipeline.contains("upload waiting") && pipeline.contains("changed since it was sealed"), "{pipeline}");
    let kinds = b.audit_kinds();
    assert!(!kinds.contains(&"local_copy_pruned".to_string()));
    assert_eq!(kinds.iter().filter(|k| *k == "recording_changed_after_sealing").count(), 1, "{kinds:?}");
}
