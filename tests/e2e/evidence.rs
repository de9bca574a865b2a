//! Recordings as evidence: a bundle exported from the box verifies offline with nothing but
//! `witness verify`, and every kind of tampering fails naming the place.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn verify(bundle: &Path) -> Output {
    // No data dir, no network: only the folder.
    Command::new(witness_bin())
        .arg("--data")
        .arg("/nonexistent")
        .arg("verify")
        .arg(bundle)
        .env_remove("WITNESS_DATA")
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The signed SSH recording in a bundle (`witness-raw/1`; the `.cast` beside it is made from it).
fn cast_in(bundle: &Path) -> PathBuf {
    std::fs::read_dir(bundle)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wsr"))
        .unwrap()
}

fn expect_failure(bundle: &Path, what: &str) {
    let out = verify(bundle);
    assert_eq!(out.status.code(), Some(1), "tampering must fail: {}", stdout(&out));
    assert!(stdout(&out).contains(what), "expected {what:?} in:\n{}", stdout(&out));
    assert!(stderr(&out).contains("NOT VERIFIED"));
}

#[test]
fn exported_bundles_verify_offline_and_tampering_fails_naming_the_place() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    // About 3 MB of output: several 1 MiB chunks.
    let out = b
        .ssh("alice@web01")
        .arg("for i in $(seq 1 40000); do echo \"evidence line $i of the session\"; done")
        .output()
        .unwrap();
    assert!(out.status.success());
    let rec = finished_recording(&b);
    let sid = rec["session_id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    eventually(30, "the recording sealed", || {
        let out = b.cli(&["evidence", "export", &sid, "--out", bundle.to_str().unwrap()], None);
        out.status.success().then_some(())
    });
    for f in ["box.pub", "README.txt", "session.json"] {
        assert!(bundle.join(f).exists(), "{f} in the bundle");
    }
    assert_eq!(
        std::fs::read_to_string(bundle.join("box.pub")).unwrap().trim(),
        b.ok(&["evidence", "key"], None).trim()
    );
    let ok = verify(&bundle);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains("VERIFIED: 1 recordings"), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("✓ signature"));

    let variant = |name: &str, f: &dyn Fn(&Path)| {
        let v = dir.path().join(name);
        copy_dir(&bundle, &v);
        f(&v);
        v
    };
    let flipped = variant("flip", &|v| {
        let cast = cast_in(v);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cast.with_extension("manifest.json")).unwrap()).unwrap();
        let middle =
            manifest["chunks"][1]["offset"].as_u64().unwrap() + manifest["chunks"][1]["len"].as_u64().unwrap() / 2;
        let mut data = std::fs::read(&cast).unwrap();
        data[middle as usize] ^= 0x01;
        std::fs::write(&cast, data).unwrap();
    });
    expect_failure(&flipped, "chunk 1 (bytes");
    let truncated = variant("cut", &|v| {
        let cast = cast_in(v);
        let data = std::fs::read(&cast).unwrap();
        std::fs::write(&cast, &data[..data.len() - 100]).unwrap();
    });
    expect_failure(&truncated, "is missing");
    let swapped = variant("swap", &|v| {
        let cast = cast_in(v);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(cast.with_extension("manifest.json")).unwrap()).unwrap();
        let c = &manifest["chunks"];
        let (a0, a1) = (c[0]["offset"].as_u64().unwrap() as usize, c[0]["len"].as_u64().unwrap() as usize);
        let (b0, b1) = (c[1]["offset"].as_u64().unwrap() as usize, c[1]["len"].as_u64().unwrap() as usize);
        let data = std::fs::read(&cast).unwrap();
        let mut out = data[b0..b0 + b1].to_vec();
        out.extend_from_slice(&data[a0..a0 + a1]);
        out.extend_from_slice(&data[b0 + b1..]);
        std::fs::write(&cast, out).unwrap();
    });
    expect_failure(&swapped, "chunk 0");
    let edited = variant("edit", &|v| {
        let m = cast_in(v).with_extension("manifest.json");
        let text = std::fs::read_to_string(&m).unwrap().replace("\"alice\"", "\"mallory\"");
        std::fs::write(&m, text).unwrap();
    });
    expect_failure(&edited, "signature does not verify");
    let foreign = variant("foreign", &|v| {
        std::fs::write(v.join("box.pub"), "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c\n")
            .unwrap();
    });
    expect_failure(&foreign, "foreign key");
    // The copy people play is checked against the signed bytes too.
    let played = variant("played", &|v| {
        let cast = cast_in(v).with_extension("cast");
        let text = std::fs::read_to_string(&cast).unwrap().replace("evidence line 7 ", "evidence line 8 ");
        std::fs::write(&cast, text).unwrap();
    });
    expect_failure(&played, "player copy");
}

#[test]
fn a_recording_cut_by_kill9_verifies_up_to_the_stated_gap() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let mut client = b
        .ssh("alice@web01")
        .arg("for i in $(seq 1 600); do echo tick-$i; sleep 0.1; done")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    b.kill9();
    let _ = client.kill();
    let _ = client.wait();
    b.serve();
    let rec = b.recordings()[0].clone();
    let bundle = tempfile::tempdir().unwrap();
    b.ok(&["evidence", "export", rec["session_id"].as_str().unwrap(), "--out", bundle.path().to_str().unwrap()], None);
    let out = verify(bundle.path());
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("✓ gap: recorded up to chunk") && stdout(&out).contains("stopped uncleanly"),
        "{}",
        stdout(&out)
    );
}

/// Every file below `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p).is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle)) {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn what_a_session_printed_is_encrypted_on_the_box_and_in_the_store_and_readable_in_the_bundle() {
    let sshd = Sshd::start();
    let s3 = S3::start();
    let mut b = Box::with_target(&sshd);
    b.use_s3(&s3, S3_BUCKET, S3_SECRET);
    b.serve();
    // Typed in an interactive shell (not an exec command, which the index names), so the word
    // exists only in what the session printed.
    let word = "zanzibar-7q1x";
    let mut child = b
        .ssh("alice@web01")
        .arg("-tt")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(format!("echo {}-{}\nexit\n", &word[..8], &word[9..]).as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(stdout(&out).contains(word), "{}", stdout(&out));
    let rec = eventually(30, "the recording uploaded", || {
        let r = b.recordings().into_iter().next()?;
        (r["status"] == "uploaded").then_some(r)
    });
    b.stop();
    let at_rest = files_containing(&b.data(), word.as_bytes());
    assert!(at_rest.is_empty(), "plaintext under the data dir: {at_rest:?}");
    // The index itself is encrypted (SQLCipher): no SQLite header, and nothing it holds in its
    // columns is readable — not the word, not a target's vaulted private key, not a target name.
    let index = std::fs::read(b.data().join("index.sqlite")).unwrap();
    assert!(index.len() > 4096 && !index.starts_with(b"SQLite format 3"), "index.sqlite is a plain SQLite file");
    for f in ["index.sqlite", "index.sqlite-wal"] {
        let bytes = std::fs::read(b.data().join(f)).unwrap_or_default();
        for needle in [word.as_bytes(), b"OPENSSH PRIVATE KEY", b"web01", b"recording_uploaded"] {
            let needle: &[u8] = needle;
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{f} holds {:?} in clear",
                String::from_utf8_lossy(needle)
            );
        }
    }
    let key = std::fs::metadata(b.data().join("keys/index.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);
    let in_store = files_containing(s3.dir.path(), word.as_bytes());
    assert!(in_store.is_empty(), "plaintext in the store: {in_store:?}");
    let bundle = tempfile::tempdir().unwrap();
    b.ok(&["evidence", "export", rec["session_id"].as_str().unwrap(), "--out", bundle.path().to_str().unwrap()], None);
    assert!(!files_containing(bundle.path(), word.as_bytes()).is_empty(), "the bundle holds the decrypted recording");
    assert!(verify(bundle.path()).status.success());
}

#[test]
fn recordings_from_before_and_after_a_key_rotation_both_export_and_verify() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo before-rotation").output().unwrap().status.success());
    let first = finished_recording(&b);
    let out = b.ok(&["keys", "rotate"], None);
    assert!(out.contains("new recordings are encrypted under key"), "{out}");
    assert!(b.ssh("alice@web01").arg("echo after-rotation").output().unwrap().status.success());
    let recs = eventually(30, "two finished recordings", || {
        let r = b.recordings();
        (r.len() == 2 && r.iter().all(|x| x["status"] != "recording")).then_some(r)
    });
    let header = |r: &serde_json::Value| {
        let data = std::fs::read(b.data().join(r["path"].as_str().unwrap())).unwrap();
        let line = data.split(|c| *c == b'\n').next().unwrap().to_vec();
        serde_json::from_slice::<serde_json::Value>(&line).unwrap()["key_id"].as_str().unwrap().to_owned()
    };
    assert_ne!(header(&recs[0]), header(&recs[1]), "the second recording uses the new key");
    assert!(b.export(first["id"].as_str().unwrap()).contains("before-rotation"));
    assert!(b.export(recs[1]["id"].as_str().unwrap()).contains("after-rotation"));
    for r in &recs {
        exported_bundle_verifies(&b, r["session_id"].as_str().unwrap());
    }
}

/// The session's evidence bundle (once its recording is sealed) passes `witness verify`.
fn exported_bundle_verifies(b: &Box, session_id: &str) {
    let bundle = tempfile::tempdir().unwrap();
    eventually(30, "sealed", || {
        b.cli(&["evidence", "export", session_id, "--out", bundle.path().to_str().unwrap()], None)
            .status
            .success()
            .then_some(())
    });
    assert!(verify(bundle.path()).status.success());
}

/// `witness keys seal --tpm` against a software TPM (swtpm): afterwards no key of the box is in
/// its data dir in any usable form (no plain key file, only TPM-sealed blobs), sessions record,
/// export and verify as before, and without the TPM nothing opens — with a clear error — until
/// it is back.
#[test]
fn keys_sealed_to_a_tpm_open_nothing_without_it() {
    let mut tpm = witness_tpm::simulator::Simulator::start();
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    let out = b.ok(&["keys", "seal", "--tpm", &tpm.tcti()], None);
    for key in ["index.key", "evidence_ed25519", "kek-"] {
        assert!(out.contains(key), "{key} sealed: {out}");
    }
    // The box works as before: a session records, exports and verifies.
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo sealed-box-word").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap();
    assert!(b.export(id).contains("sealed-box-word"));
    exported_bundle_verifies(&b, rec["session_id"].as_str().unwrap());
    // The search key is made when the recording's text is first read (after the seal).
    eventually(120, "the recording's text is indexed", || b.log().contains("recording text indexed").then_some(()));
    b.stop();
    // Only sealed keys under keys/, including the search key the daemon made after the seal.
    let keys = b.data().join("keys");
    let names: Vec<String> =
        std::fs::read_dir(&keys).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for name in &names {
        let data = std::fs::read(keys.join(name)).unwrap();
        let text = String::from_utf8_lossy(&data);
        assert!(
            !(text.trim().len() == 64 && hex::decode(text.trim()).is_ok()),
            "{name} is a plain key next to the sealed ones: {names:?}"
        );
    }
    for sealed in ["index.key.tpm", "search.key.tpm", "evidence_ed25519.tpm"] {
        assert!(names.iter().any(|n| n == sealed), "{sealed}: {names:?}");
    }
    // The TPM gone: the index, the recordings and the signing key stay shut, and the reason says so.
    tpm.stop();
    let out = b.cli(&["recordings", "export", id, "--out", "/dev/null"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("TPM") && err.contains(&tpm.tcti()), "{err}");
    // Back on: everything opens again.
    tpm.restart();
    assert!(b.export(id).contains("sealed-box-word"));
    // Sealing to another TPM is refused: one box, one TPM.
    let other = witness_tpm::simulator::Simulator::start();
    let out = b.cli(&["keys", "seal", "--tpm", &other.tcti()], None);
    assert!(!out.status.success() && stderr(&out).contains("sealed to another TPM"), "{}", stderr(&out));
}

/// The keys are bound to the verified boot state (PCRs 0-7 and the slot PCR, extended with the
/// slot and its root hash): they open only after the boot they were sealed in is measured again;
/// an update seals them for the new slot before it switches; a boot of another root (or a second
/// measurement) opens nothing, says why, and the failure reaches the audit log once the right
/// boot opens the index again.
#[test]
fn keys_sealed_to_the_boot_state_open_in_that_state_only() {
    let mut tpm = witness_tpm::simulator::Simulator::start();
    let b = Box::with_target(&Sshd::start());
    let dir = tempfile::tempdir().unwrap();
    let (hash_a, hash_b, hash_x) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    let boot = |slot: &str, hash: &str| {
        let env = dir.path().join(format!("boot-{slot}-{}.env", &hash[..4]));
        std::fs::write(&env, format!("WITNESS_SLOT={slot}\nWITNESS_TRIAL=0\nWITNESS_ROOTHASH={hash}\n")).unwrap();
        env
    };
    let run = |args: &[&str], env: &Path| b.cli_env(args, None, &[("WITNESS_BOOT_ENV", env)]);
    let tcti = tpm.tcti();
    let measure = |env: &Path| run(&["keys", "measure-boot", "--tpm", &tcti], env);
    let (env_a, env_b, env_x) = (boot("a", &hash_a), boot("b", &hash_b), boot("b", &hash_x));

    // First boot of slot a: measured once (a second measurement is refused), then sealed.
    assert!(measure(&env_a).status.success(), "{}", stderr(&measure(&env_a)));
    let again = measure(&env_a);
    assert!(!again.status.success() && stderr(&again).contains("already holds a measurement"), "{}", stderr(&again));
    let out = run(&["keys", "seal", "--tpm", &tcti], &env_a);
    assert!(out.status.success(), "{}", stderr(&out));
    let keys = b.data().join("keys");
    let policy = std::fs::read_to_string(keys.join("tpm.policy")).unwrap();
    assert!(policy.starts_with("a 0=") && policy.contains(" 15="), "{policy}");
    for name in ["index.key", "evidence_ed25519"] {
        assert!(!keys.join(name).exists(), "{name} left in clear");
        assert_eq!(witness_tpm::labels(&std::fs::read(keys.join(format!("{name}.tpm"))).unwrap()).unwrap(), ["a"]);
    }
    assert!(b.ok(&["user", "list"], None).contains("admin"));

    // An update to slot b seals every key for b's state beside a's.
    let out = run(&["keys", "reseal", "--slot", "b", "--root-hash", &hash_b], &env_a);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(witness_tpm::labels(&std::fs::read(keys.join("index.key.tpm")).unwrap()).unwrap(), ["b", "a"]);
    // A key made now (a rotation) is sealed for both states at once.
    assert!(b.cli(&["keys", "rotate"], None).status.success());
    let kek = std::fs::read_dir(&keys)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kek-") && n.ends_with(".tpm"))
        .map(|n| {
            let mut labels = witness_tpm::labels(&std::fs::read(keys.join(n)).unwrap()).unwrap();
            labels.sort();
            labels
        })
        .collect::<Vec<_>>();
    assert_eq!(kek, [["a", "b"], ["a", "b"]], "the first key and the new one");

    // Reboot into slot b: it opens.
    tpm.restart();
    assert!(measure(&env_b).status.success());
    assert!(b.ok(&["user", "list"], None).contains("admin"));

    // Reboot into another root in slot b (its own hash measured): nothing opens, and it says why.
    tpm.restart();
    assert!(measure(&env_x).status.success());
    let console = dir.path().join("console");
    std::fs::create_dir(&console).unwrap();
    let out = b.cli_env(&["user", "list"], None, &[("WITNESS_CONSOLE_DIR", &console)]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("will not open index.key") && err.contains("boot state") && err.contains("README"), "{err}");
    assert!(b.data().join("audit-pending.jsonl").exists(), "the failure is kept for the audit log");
    // The person at the box is told on its console (the image's oneshot shows this file).
    let shown = std::fs::read_to_string(console.join("tpm-unseal.msg")).unwrap_or_default();
    assert!(shown.contains("KEYS WILL NOT OPEN") && shown.contains("index.key"), "console: {shown:?}");
    // Not booted by the witness initrd (nothing measured): nothing opens either.
    tpm.restart();
    assert!(!b.cli(&["user", "list"], None).status.success());

    // The right boot again: it opens, and the failures are in the audit log now.
    tpm.restart();
    assert!(measure(&env_b).status.success());
    let audit = b.ok(&["audit", "--json"], None);
    assert!(audit.contains("tpm_unseal_failed") && audit.contains("index.key"), "{audit}");
    assert!(!b.data().join("audit-pending.jsonl").exists());
    let chain = b.cli(&["audit", "--verify"], None);
    assert!(chain.status.success(), "the audit chain holds: {}", stderr(&chain));
}

/// The store path of a recording's object (the default store: a folder in the data dir).
fn stored_object(b: &Box, rec: &serde_json::Value, suffix: &str) -> PathBuf {
    let text = std::fs::read_to_string(b.data().join("witness.toml")).unwrap();
    let box_id = text.lines().find_map(|l| l.strip_prefix("box_id = ")).unwrap().trim_matches('"').to_owned();
    b.data().join("store").join(format!(
        "{box_id}/{}/{}/{}{suffix}",
        &rec["started_at"].as_str().unwrap()[..10],
        rec["session_id"].as_str().unwrap(),
        rec["id"].as_str().unwrap()
    ))
}

/// A recording goes to the store only with its signed manifest: while the signing key cannot be
/// read it is not uploaded (so never pruned) and says why; once the key is back it is sealed and
/// uploaded with its manifest; a manifest the store refuses keeps the upload pending with the
/// error, and only a stored manifest lets the local copy go.
#[test]
fn a_recording_is_uploaded_and_pruned_only_with_its_signed_manifest() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    // Keep nothing locally once it is verified in the store.
    b.configure("store", "keep_local_days = 0");
    b.serve();
    // The signing key made unreadable: a directory where its file was (the tests run as root,
    // who reads any file whatever its mode).
    let key = b.data().join("keys/evidence_ed25519");
    let aside = b.data().join("keys/evidence_ed25519.aside");
    std::fs::rename(&key, &aside).unwrap();
    std::fs::create_dir(&key).unwrap();
    assert!(b.ssh("alice@web01").arg("echo unsealed-word").output().unwrap().status.success());
    let rec = finished_recording(&b);
    let id = rec["id"].as_str().unwrap().to_owned();
    let local = b.data().join(rec["path"].as_str().unwrap());
    let this = |b: &Box| b.recordings().into_iter().find(|r| r["id"] == id.as_str()).unwrap();
    // Several upload passes (one every 2 s, or at once when woken) go by.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let r = this(&b);
    assert_ne!(r["status"], "uploaded", "uploaded without a signed manifest: {r}");
    assert!(local.exists(), "the local copy of an unsealed recording was pruned");
    assert!(!stored_object(&b, &rec, ".cast").exists(), "the recording is in the store without its manifest");
    // Why it waits, in `recordings` and in `sync status`.
    let reason = r["seal_error"].as_str().unwrap_or_else(|| panic!("no seal_error in {r}"));
    assert!(reason.contains("evidence_ed25519"), "{reason}");
    let st = b.json(&["sync", "status", "--json"]);
    assert_eq!(st["unsealed"][0]["recording"], id.as_str(), "{st}");
    assert!(b.ok(&["sync", "status"], None).contains("not sealed"), "the text status names it");
    assert!(b.ok(&["recordings"], None).contains("not sealed"), "the listing names it");
    assert!(b.audit_kinds().contains(&"recording_not_sealed".to_string()));

    // The store refuses the manifest (a directory where its object goes); the key is back.
    let manifest_object = stored_object(&b, &rec, ".manifest.json");
    std::fs::create_dir_all(&manifest_object).unwrap();
    std::fs::remove_dir(&key).unwrap();
    std::fs::rename(&aside, &key).unwrap();
    let error = eventually(40, "sealed, then the manifest upload failing", || {
        let st = b.json(&["sync", "status", "--json"]);
        let e = st["recent_errors"].as_array()?.iter().find(|e| e["recording"] == id.as_str())?.clone();
        Some(e["error"].as_str()?.to_owned())
    });
    assert!(error.contains("manifest"), "{error}");
    let r = this(&b);
    assert!(r["seal_error"].is_null(), "sealed now: {r}");
    assert_ne!(r["status"], "uploaded", "marked uploaded although its manifest is not stored: {r}");
    assert!(local.exists(), "pruned although its manifest is not stored");
    assert_eq!(b.json(&["sync", "status", "--json"])["pending"], 1);

    // The store takes the manifest: uploaded, and only now pruned.
    std::fs::remove_dir(&manifest_object).unwrap();
    eventually(40, "uploaded with its manifest and pruned", || {
        (this(&b)["status"] == "uploaded" && !local.exists()).then_some(())
    });
    let stored = std::fs::read(&manifest_object).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(manifest["recording_id"], id.as_str());
    assert!(stored_object(&b, &rec, ".manifest.sig").is_file());
    // The pruned recording's bundle (fetched back from the store) verifies.
    let bundle = tempfile::tempdir().unwrap();
    b.ok(&["evidence", "export", rec["session_id"].as_str().unwrap(), "--out", bundle.path().to_str().unwrap()], None);
    let out = verify(bundle.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(std::fs::read_to_string(cast_in(bundle.path()).with_extension("cast")).unwrap().contains("unsealed-word"));
}

/// `witness verify` shows which key signed a bundle, checks it against the box's key when given
/// one, and checks the folder against the session's signed list of recordings: a recording
/// dropped from the folder, or a bundle signed by another key, fails and says so.
#[test]
fn a_bundle_missing_a_recording_or_signed_by_another_key_fails() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    // Two channels on one connection (OpenSSH multiplexing): one session, two recordings.
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("mux");
    let control = control.to_str().unwrap();
    // Under a loaded full test run one of these ssh invocations has failed fast, not yet
    // explained (the other tests of channels pass); it is retried once, its output printed.
    let quiet = |mut c: Command| {
        c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        let first = c.output().unwrap();
        if first.status.success() {
            return;
        }
        eprintln!("first attempt failed ({}): {}", first.status, stderr(&first));
        std::thread::sleep(std::time::Duration::from_secs(1));
        let out = c.output().unwrap();
        assert!(out.status.success(), "{c:?}: {}", stderr(&out));
    };
    let mut master = b.ssh("alice@web01");
    master.args(["-M", "-S", control, "-f", "-N"]);
    quiet(master);
    // The channels go over the master only once it answers on its control socket.
    eventually(20, "the master connection ready", || {
        let mut check = b.ssh("alice@web01");
        check
            .args(["-S", control, "-O", "check"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        check.status().unwrap().success().then_some(())
    });
    for word in ["first-channel", "second-channel"] {
        let mut c = b.ssh("alice@web01");
        c.args(["-S", control, "echo", word]);
        quiet(c);
    }
    let mut exit = b.ssh("alice@web01");
    exit.args(["-S", control, "-O", "exit"]);
    quiet(exit);
    // Two recordings at least (a channel retried after a failed first attempt adds one), all of
    // one session, all finished.
    let recs = eventually(60, "two or more finished recordings of one session", || {
        let r = b.recordings();
        (r.len() >= 2 && r.iter().all(|x| x["status"] == "completed" || x["status"] == "uploaded")).then_some(r)
    });
    let sid = recs[0]["session_id"].as_str().unwrap().to_owned();
    assert!(recs.iter().all(|r| r["session_id"] == sid.as_str()), "one session: {recs:?}");
    let bundle = dir.path().join("bundle");
    eventually(30, "the bundle exported", || {
        b.cli(&["evidence", "export", &sid, "--out", bundle.to_str().unwrap()], None).status.success().then_some(())
    });
    let box_key = b.ok(&["evidence", "key"], None).trim().to_owned();
    let fingerprint = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(hex::decode(&box_key).unwrap()))
    };
    let verify_with = |bundle: &Path, args: &[&str]| {
        Command::new(witness_bin())
            .arg("--data")
            .arg("/nonexistent")
            .arg("verify")
            .arg(bundle)
            .args(args)
            .env_remove("WITNESS_DATA")
            .output()
            .unwrap()
    };
    let ok = verify_with(&bundle, &["--key", &box_key]);
    assert!(ok.status.success(), "{}{}", stdout(&ok), stderr(&ok));
    assert!(stdout(&ok).contains(&format!("signing key: {fingerprint}")), "{}", stdout(&ok));
    assert!(stdout(&ok).contains(&format!("VERIFIED: {} recordings", recs.len())), "{}", stdout(&ok));
    // Without a key the bundle's own is used, and its fingerprint shown.
    let plain = verify(&bundle);
    assert!(plain.status.success() && stdout(&plain).contains(&fingerprint), "{}", stdout(&plain));
    let key_file = dir.path().join("box-key");
    std::fs::write(&key_file, format!("{box_key}\n")).unwrap();
    assert!(verify_with(&bundle, &["--key-file", key_file.to_str().unwrap()]).status.success());

    // One recording dropped from the folder (file, manifest, signature): named.
    let dropped = recs[1]["id"].as_str().unwrap();
    let removed = dir.path().join("removed");
    copy_dir(&bundle, &removed);
    for suffix in [".cast", ".manifest.json", ".manifest.sig"] {
        std::fs::remove_file(removed.join(format!("{dropped}{suffix}"))).unwrap();
    }
    let out = verify_with(&removed, &["--key", &box_key]);
    assert_eq!(out.status.code(), Some(1), "a bundle missing a recording verified: {}", stdout(&out));
    assert!(stdout(&out).contains(&format!("recording {dropped} is missing from the bundle")), "{}", stdout(&out));
    // The session manifest dropped too: nothing signed lists the recordings, which fails.
    let unlisted = dir.path().join("unlisted");
    copy_dir(&removed, &unlisted);
    std::fs::remove_file(unlisted.join("session-manifest.json")).unwrap();
    let out = verify_with(&unlisted, &["--key", &box_key]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("nothing signed says which recordings the session had"), "{}", stdout(&out));

    // A forged bundle: every manifest edited and re-signed by another key, box.pub replaced to
    // match. On its own it verifies (with the forger's fingerprint shown); against the box's
    // key it fails.
    let forged = dir.path().join("forged");
    copy_dir(&bundle, &forged);
    let forger = witness_core::evidence::signing_key(&[42u8; 32]);
    let other = hex::encode(forger.verifying_key().as_bytes());
    let other_fingerprint = witness_core::evidence::fingerprint(&forger.verifying_key());
    for r in &recs {
        let id = r["id"].as_str().unwrap();
        let path = forged.join(format!("{id}.manifest.json"));
        let mut m: witness_core::evidence::Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        m.user = "mallory".into();
        m.key_fingerprint = other_fingerprint.clone();
        std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        std::fs::write(forged.join(format!("{id}.manifest.sig")), witness_core::evidence::sign(&forger, &m)).unwrap();
    }
    let path = forged.join("session-manifest.json");
    let mut m: witness_core::evidence::SessionManifest =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m.user = "mallory".into();
    m.key_fingerprint = other_fingerprint.clone();
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::write(forged.join("session-manifest.sig"), witness_core::evidence::sign_bytes(&forger, &m.signed_bytes()))
        .unwrap();
    std::fs::write(forged.join("box.pub"), format!("{other}\n")).unwrap();
    let out = verify(&forged);
    assert!(stdout(&out).contains(&format!("signing key: {other_fingerprint}")), "{}", stdout(&out));
    let out = verify_with(&forged, &["--key", &box_key]);
    assert_eq!(out.status.code(), Some(1), "a forged bundle verified against the box's key: {}", stdout(&out));
    assert!(stdout(&out).contains("is not the key given with --key"), "{}", stdout(&out));
    assert!(stdout(&out).contains("foreign key"), "{}", stdout(&out));
    let out = verify_with(&bundle, &["--key", &other]);
    assert_eq!(out.status.code(), Some(1), "another key verified the bundle: {}", stdout(&out));
    assert!(stdout(&out).contains("foreign key"), "{}", stdout(&out));
    let out = verify_with(&bundle, &["--key", "not-a-key"]);
    assert!(!out.status.success() && stderr(&out).contains("--key is not an Ed25519 public key"), "{}", stderr(&out));
}

/// A byte flipped on the box's disk (by someone without the keys) in a recording a crash left
/// open: recovery keeps the authentic prefix as the recording, moves the rest aside whole
/// (nothing authentic is destroyed), and the signed manifest states the gap.
#[test]
fn a_changed_record_is_moved_aside_at_recovery_and_the_gap_is_signed() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    let mut client = b
        .ssh("alice@web01")
        .arg("for i in $(seq 1 600); do echo tick-$i; sleep 0.05; done")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Where each at-rest record starts (after the header line).
    let bounds_of = |data: &[u8]| {
        let Some(first) = data.iter().position(|c| *c == b'\n') else { return vec![] };
        let mut bounds = vec![first + 1];
        while *bounds.last().unwrap() + 4 <= data.len() {
            let at = *bounds.last().unwrap();
            let next = at + 4 + u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            if next > data.len() {
                break;
            }
            bounds.push(next);
        }
        bounds
    };
    // Several records on disk before the crash (a loaded machine is slow to start the session).
    let path = eventually(60, "several records written", || {
        let rec = b.recordings().into_iter().next()?;
        let path = b.data().join(rec["path"].as_str()?);
        (bounds_of(&std::fs::read(&path).ok()?).len() > 12).then_some(path)
    });
    b.kill9();
    let _ = client.kill();
    let _ = client.wait();
    let mut data = std::fs::read(&path).unwrap();
    let bounds = bounds_of(&data);
    assert!(bounds.len() > 8, "several records written: {}", bounds.len());
    let k = bounds.len() / 2;
    data[bounds[k] + 40] ^= 0x01;
    std::fs::write(&path, &data).unwrap();
    b.serve();
    let rec = eventually(30, "recovered and sealed", || {
        let r = b.recordings().into_iter().next()?;
        (r["status"] != "recording" && r["status"] != "processing").then_some(r)
    });
    let kept = std::fs::read(&path).unwrap();
    assert!(
        kept == data[..bounds[k]],
        "the recording is not its authentic prefix ({} of {} bytes)",
        kept.len(),
        data.len()
    );
    let aside = std::fs::read(path.with_extension("quarantine")).expect("the rest moved aside");
    assert!(aside == data[bounds[k]..], "the rest is not moved aside whole");
    let event = b.audit().into_iter().find(|e| e["kind"] == "recording_quarantined").expect("an audit event");
    assert_eq!(event["detail"]["quarantined_bytes"], aside.len() as u64, "{event}");
    let bundle = tempfile::tempdir().unwrap();
    eventually(30, "sealed", || {
        b.cli(
            &["evidence", "export", rec["session_id"].as_str().unwrap(), "--out", bundle.path().to_str().unwrap()],
            None,
        )
        .status
        .success()
        .then_some(())
    });
    let out = verify(bundle.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("({} bytes quarantined on the box)", aside.len())) && text.contains("moved aside to"),
        "{text}"
    );
    let cast = std::fs::read_to_string(cast_in(bundle.path()).with_extension("cast")).unwrap();
    assert!(cast.contains("\"tick-1\\n\""), "{cast}");
}

/// The audit log's reach is signed at stop (and every minute it grows): a checkpoint file that
/// was edited, or signed by someone else, fails `audit --verify`; an intact one is reported.
#[test]
fn audit_checkpoints_are_signed_at_stop_and_checked() {
    let sshd = Sshd::start();
    let mut b = Box::with_target(&sshd);
    b.serve();
    assert!(b.ssh("alice@web01").arg("echo audited").output().unwrap().status.success());
    assert!(!b.ssh("mallory@web01").arg("true").output().unwrap().status.success());
    assert!(b.stop().success());
    let file = b.data().join("audit.checkpoints");
    let text = std::fs::read_to_string(&file).expect("a checkpoint written at stop");
    let said = b.ok(&["audit", "--verify"], None);
    assert!(said.contains("hash chain unbroken; 1 signed checkpoints hold"), "{said}");
    // Moved back, as someone hiding a removed tail would: the signature no longer holds.
    let mut cp: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let last = cp["checkpoint"]["last_id"].as_i64().unwrap();
    cp["checkpoint"]["last_id"] = (last - 1).into();
    std::fs::write(&file, format!("{cp}\n")).unwrap();
    let out = b.cli(&["audit", "--verify"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not verify with the box's key"), "{}", stderr(&out));
    // A checkpoint naming events the log does not have (its tail removed) is named as such.
    cp["checkpoint"]["last_id"] = (last + 5).into();
    std::fs::write(&file, format!("{cp}\n")).unwrap();
    assert!(!b.cli(&["audit", "--verify"], None).status.success());
}
