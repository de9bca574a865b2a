//! Recordings as evidence: sealing (chunk hash chain + manifest signed with the box's Ed25519
//! key, written next to the recording), the auditor's bundle, and the offline verifier.

use crate::datadir::{self, DataDir};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use witness_core::evidence::{self, Gap, Manifest};

/// The box's signing key, created on first use (a plain key file or sealed to the TPM, as the
/// box's other keys).
pub fn signing_key(root: &Path) -> Result<ed25519_dalek::SigningKey> {
    let seed = crate::keys::key_at(root, &root.join(datadir::SIGNING_KEY)).context("the evidence signing key")?;
    Ok(evidence::signing_key(&seed))
}

pub fn public_key_hex(root: &Path) -> Result<String> {
    Ok(hex::encode(signing_key(root)?.verifying_key().as_bytes()))
}

pub fn manifest_path(cast: &Path) -> PathBuf {
    cast.with_extension("manifest.json")
}

pub fn signature_path(cast: &Path) -> PathBuf {
    cast.with_extension("manifest.sig")
}

/// Seals a finished recording: chains its chunks, signs the manifest, writes both next to it.
/// `gaps` are the reasons the recording ends early (an unclean stop, a failed write); each is
/// placed after the last chunk.
pub fn seal(dir: &DataDir, recording_id: &str, gaps: Vec<String>) -> Result<()> {
    let rec = dir.index.recording(recording_id)?.with_context(|| format!("no recording {recording_id}"))?;
    let path = dir.root.join(&rec.path);
    let stored = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // The evidence is the recording as played: chain and sign the decrypted cast.
    let data = witness_recorder::plaintext(&stored, &crate::keys::key_for(&dir.root))?;
    let (chunks, final_hash) = evidence::chain(&data);
    let gaps = gaps.into_iter().map(|reason| Gap { after_chunk: chunks.len() as u64, reason }).collect();
    let key = signing_key(&dir.root)?;
    let manifest = Manifest {
        format: evidence::FORMAT.into(),
        box_id: dir.config.box_id.clone(),
        session_id: rec.session_id.clone(),
        recording_id: rec.id.clone(),
        user: rec.user.clone(),
        target: rec.target.clone(),
        channel: rec.channel.clone(),
        started_at: rec.started_at.clone(),
        ended_at: rec.ended_at.clone(),
        status: rec.status.clone(),
        bytes: data.len() as u64,
        sha256: {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&data))
        },
        chunks,
        final_hash,
        gaps,
        key_fingerprint: evidence::fingerprint(&key.verifying_key()),
    };
    let sig = evidence::sign(&key, &manifest);
    for (p, bytes) in
        [(manifest_path(&path), serde_json::to_vec_pretty(&manifest)?), (signature_path(&path), sig.into_bytes())]
    {
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &p)?;
    }
    Ok(())
}

/// Seals recordings that finished without a manifest (a stop between the end and the seal).
pub fn seal_missing(dir: &DataDir) -> Result<usize> {
    let mut n = 0;
    for rec in dir.index.recordings()? {
        let path = dir.root.join(&rec.path);
        if matches!(rec.status.as_str(), "completed" | "failed" | "uploaded")
            && path.exists()
            && !manifest_path(&path).exists()
        {
            let mut gaps = Vec::new();
            if rec.recovered {
                gaps.push("the box stopped uncleanly; recorded up to here".to_owned());
            }
            if rec.status == "failed" {
                gaps.push(format!("recording failed: {}", rec.status_reason.as_deref().unwrap_or("unknown")));
            }
            // A full disk must not keep the box from starting: log it, try again next start.
            match seal(dir, &rec.id, gaps) {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(recording_id = %rec.id, error = %e, "could not seal the recording"),
            }
        }
    }
    Ok(n)
}

/// The evidence files of a recording (manifest, signature), from the box.
pub fn evidence_files(dir: &DataDir, recording_id: &str) -> Result<(Vec<u8>, String)> {
    let rec = dir.index.recording(recording_id)?.with_context(|| format!("no recording {recording_id}"))?;
    let path = dir.root.join(&rec.path);
    let m = std::fs::read(manifest_path(&path)).with_context(|| format!("recording {recording_id} has no manifest"))?;
    let s = std::fs::read_to_string(signature_path(&path))
        .with_context(|| format!("recording {recording_id} has no signature"))?;
    Ok((m, s))
}

const BUNDLE_README: &str = "Witness evidence bundle

This folder holds the recordings of one session as the Witness box recorded them, each with
a manifest (who, what, when, the recording's chunks and their chained SHA-256 hashes, gaps)
and the manifest's Ed25519 signature, and the box's public key (box.pub, hex).

Verify it anywhere, with no box, data directory or network:

    witness verify THIS_FOLDER

It checks, for every recording: the signature over the manifest with box.pub, that the
manifest names that key, every chunk's hash in order, the final hash, the total length and
the SHA-256 of the file. Any flipped byte, missing, reordered or appended data, edited
manifest or foreign key fails and says where. Compare box.pub with the key the box publishes
(`witness evidence key` on the box) to know which box signed it.

Play a recording: asciinema play RECORDING.cast (SSH); any video player opens RECORDING.mp4 (RDP)
";

/// `witness evidence export SESSION --out DIR`.
pub fn export(root: &Path, session_id: &str, out: &Path) -> Result<()> {
    let dir = DataDir::open(root)?;
    let session = dir.index.session(session_id)?.with_context(|| format!("no session {session_id:?}"))?;
    let recs = dir.index.session_recordings(session_id)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for r in &recs {
        let file = out.join(format!("{}.{}", r.id, crate::sync::extension(&r.path)));
        crate::admin::export_recording(&dir, &r.id, &file)?;
        let (m, s) = evidence_files(&dir, &r.id)?;
        std::fs::write(out.join(format!("{}.manifest.json", r.id)), m)?;
        std::fs::write(out.join(format!("{}.manifest.sig", r.id)), s)?;
    }
    std::fs::write(out.join("box.pub"), public_key_hex(root)? + "\n")?;
    std::fs::write(out.join("session.json"), serde_json::to_vec_pretty(&session)?)?;
    std::fs::write(out.join("README.txt"), BUNDLE_README)?;
    dir.index.audit(
        "evidence_exported",
        Some(&session.user),
        Some(&session.target),
        Some(session_id),
        &serde_json::json!({ "recordings": recs.len() }),
    )?;
    println!(
        "exported {} recordings of session {session_id} with manifests, signatures and the box key to {}",
        recs.len(),
        out.display()
    );
    Ok(())
}

/// `witness verify BUNDLE_DIR`: needs nothing but the folder.
pub fn verify(bundle: &Path) -> Result<()> {
    let key = std::fs::read_to_string(bundle.join("box.pub"))
        .with_context(|| format!("{} has no box.pub", bundle.display()))?;
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(bundle)
        .with_context(|| format!("reading {}", bundle.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .collect();
    manifests.sort();
    if manifests.is_empty() {
        bail!("{} holds no recording manifests", bundle.display());
    }
    let mut all_ok = true;
    for m in &manifests {
        let name = m.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(".manifest.json").to_owned();
        println!("recording {name}");
        let manifest = std::fs::read(m)?;
        let sig = std::fs::read_to_string(bundle.join(format!("{name}.manifest.sig"))).unwrap_or_default();
        let file = ["cast", "mp4"].map(|ext| format!("{name}.{ext}")).into_iter().find(|f| bundle.join(f).exists());
        let file = file.unwrap_or_else(|| format!("{name}.cast"));
        let data = match std::fs::read(bundle.join(&file)) {
            Ok(d) => d,
            Err(e) => {
                println!("  ✗ recording file: {file}: {e}");
                all_ok = false;
                continue;
            }
        };
        for c in evidence::verify(&manifest, &sig, &key, &data) {
            println!("  {} {}: {}", if c.ok { "✓" } else { "✗" }, c.what, c.detail);
            all_ok &= c.ok;
        }
    }
    if all_ok {
        println!("VERIFIED: {} recordings match their signed manifests", manifests.len());
        Ok(())
    } else {
        bail!("NOT VERIFIED: see the ✗ lines above")
    }
}
