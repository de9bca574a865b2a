//! Recordings as evidence: sealing (chunk hash chain + manifest signed with the box's Ed25519
//! key, written next to the recording), the auditor's bundle, and the offline verifier.

use crate::datadir::{self, DataDir};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use witness_core::evidence::{self, Gap, Manifest};

/// The box's signing key, created on first use (a plain key file or sealed to the TPM, as the
/// box's other keys).
pub fn signing_key(root: &Path) -> Result<ed25519_dalek::SigningKey> {
    let seed = witness_keys::key_at(root, &root.join(datadir::SIGNING_KEY)).context("the evidence signing key")?;
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
    // The evidence is the decrypted recording: chained and hashed as it is read, a record at a
    // time, so sealing a large recording costs no more memory than a small one.
    // The stored bytes' MD5 per upload part is taken on the way, so the upload sends
    // checksums instead of hashing the file again.
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let tee = witness_store::PartTee::new(file, dir.config.part_size);
    let mut reader = witness_recorder::PlainReader::new(tee, &witness_keys::key_for(&dir.root))?;
    // The box writes every recording encrypted and bound to its place; a file without the
    // at-rest header is not one it wrote (another session's plaintext put there, say), and
    // signing it would make it evidence.
    if !reader.is_encrypted() {
        bail!(
            "{} is not encrypted at rest as the box writes every recording: replaced on disk, not sealed",
            path.display()
        );
    }
    // Its records are bound to the recording its header names: another recording's file put
    // in its place reads well, and must not be signed as this one.
    if let Some(other) = reader.written_for().filter(|id| *id != rec.id) {
        bail!("{} was written for recording {other}, not {}: replaced on disk, not sealed", path.display(), rec.id);
    }
    let mut chainer = evidence::Chainer::default();
    let mut hash = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use std::io::Read;
        let n = reader.read(&mut buf).with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hash, &buf[..n]);
        chainer.push(&buf[..n]);
    }
    // The stored bytes are the ones the writer made: their length and SHA-256 (taken as they
    // were read, not by reading the file again) are what it put in the index. Anything else was
    // changed on the disk after the writer closed it (a header reordered, records cut), and
    // signing it would make the change evidence and send it up as verified.
    if let Some(written) = rec.sha256.as_deref() {
        let (len, sha) = (reader.stored_len(), reader.stored_sha256());
        if len != rec.bytes || sha != written {
            return Err(ChangedOnDisk(format!(
                "{} is not what the writer recorded ({} bytes, sha256 {written}): {len} bytes, sha256 {sha} stored; changed on disk, not sealed",
                path.display(),
                rec.bytes
            ))
            .into());
        }
    }
    let parts = reader.get_ref().digests();
    let bytes = chainer.len();
    let (chunks, final_hash) = chainer.finish();
    let after_chunk = chunks.len() as u64;
    let mut gaps: Vec<Gap> =
        gaps.into_iter().map(|reason| Gap { after_chunk, reason, quarantined_bytes: None }).collect();
    // What recovery found and did (a torn end, records that do not authenticate in their place,
    // a file cut below what was made durable), as it noted it in the index: only that is
    // signed. A quarantine file recovery did not note is not the recording's damage: named.
    let noted = dir.index.recovery_gaps(recording_id)?;
    let quarantined = witness_recorder::quarantined(&path);
    match noted.as_deref().map(serde_json::from_str::<Vec<serde_json::Value>>) {
        Some(Ok(noted)) => {
            for g in &noted {
                gaps.push(Gap {
                    after_chunk,
                    reason: g["reason"].as_str().unwrap_or("recovered").to_owned(),
                    quarantined_bytes: g["quarantined_bytes"].as_u64(),
                });
            }
            let known: Vec<&str> = noted.iter().filter_map(|g| g["file"].as_str()).collect();
            for (file, bytes) in &quarantined {
                let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
                if !known.contains(&name.as_str()) {
                    unknown_quarantine(dir, &rec, &name, *bytes);
                }
            }
        }
        Some(Err(e)) => bail!("what recovery noted for recording {recording_id} does not read: {e}"),
        // Recovered before recovery noted what it did (schema step 22): the files beside it are
        // what that recovery left.
        None if rec.recovered => {
            for (file, bytes) in quarantined {
                let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
                gaps.push(Gap {
                    after_chunk,
                    reason: format!(
                        "{bytes} stored bytes after the last authentic record (torn, or changed on disk) were moved aside to {name}"
                    ),
                    quarantined_bytes: Some(bytes),
                });
            }
        }
        None => {
            for (file, bytes) in &quarantined {
                let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
                unknown_quarantine(dir, &rec, &name, *bytes);
            }
        }
    }
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
        status: rec.status.to_string(),
        bytes,
        sha256: hex::encode(sha2::Digest::finalize(hash)),
        chunks,
        final_hash,
        gaps,
        key_fingerprint: evidence::fingerprint(&key.verifying_key()),
    };
    let sig = evidence::sign(&key, &manifest);
    for (p, bytes) in
        [(manifest_path(&path), serde_json::to_vec_pretty(&manifest)?), (signature_path(&path), sig.into_bytes())]
    {
        // A name of this call's own: the daemon and `sync now` may seal the same recording at once.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tmp = p.clone().into_os_string();
        tmp.push(format!(".{}-{n}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, &bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &p)?;
    }
    // What sealing computed goes with the seal job: the verify step stores a manifest only when
    // it signs these (a manifest copied over from another recording is not this one's).
    if let Err(e) =
        dir.index.save_job_result(recording_id, witness_core::JobStep::Seal, &sealed_as(bytes, &manifest.sha256))
    {
        tracing::warn!(recording_id, error = %e, "could not keep what sealing computed");
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == parts.len) {
        // Without them the upload hashes as it sends: slower, not wrong.
        if let Err(e) = dir.index.set_part_digests(recording_id, &parts.to_text()) {
            tracing::warn!(recording_id, error = %e, "could not keep the recording's part digests");
        }
    }
    Ok(())
}

/// A quarantine file beside a recording that no recovery of it made: named (an audit event),
/// never signed as the recording's damage.
fn unknown_quarantine(dir: &DataDir, rec: &witness_index::RecordingRow, file: &str, bytes: u64) {
    tracing::warn!(recording_id = %rec.id, file, bytes, "a quarantine file no recovery made lies beside the recording; not signed as its damage");
    let _ = dir.index.audit(
        "quarantine_file_unknown",
        Some(&rec.user),
        Some(&rec.target),
        Some(&rec.session_id),
        &serde_json::json!({ "recording": rec.id, "file": file, "bytes": bytes }),
    );
}

/// A recording's stored bytes are not what its writer recorded in the index: changed on disk.
#[derive(Debug)]
pub struct ChangedOnDisk(pub String);

impl std::fmt::Display for ChangedOnDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChangedOnDisk {}

/// What sealing computed, as kept with the seal job: the signed length and SHA-256.
pub fn sealed_as(bytes: u64, sha256: &str) -> String {
    format!("{bytes} {sha256}")
}

/// A recording's manifest and signature beside it, only when they are its own: the signature
/// verifies with the box's key, the manifest names this box, recording and session, and signs
/// the length and SHA-256 sealing computed (kept with the seal job; a recording sealed before
/// that was kept has its plaintext read and compared instead). Why not otherwise.
pub fn own_evidence(dir: &DataDir, recording_id: &str) -> Result<(Vec<u8>, String)> {
    own_evidence_with(dir, recording_id, None)
}

/// [`own_evidence`], where a recording sealed before its seal result was kept and whose local
/// file is gone (pruned) is compared with `plain`, a copy of its bytes as played (the one an
/// evidence bundle holds, fetched from the store).
pub fn own_evidence_with(dir: &DataDir, recording_id: &str, plain: Option<&Path>) -> Result<(Vec<u8>, String)> {
    let rec = dir.index.recording(recording_id)?.with_context(|| format!("no recording {recording_id}"))?;
    let (m, s) = evidence_files(dir, recording_id)?;
    let key = public_key_hex(&dir.root)?;
    let manifest = evidence::signed_manifest(&m, &s, &key)
        .map_err(|why| anyhow::anyhow!("the manifest beside recording {recording_id} is not the box's: {why}"))?;
    if manifest.recording_id != rec.id || manifest.session_id != rec.session_id || manifest.box_id != dir.config.box_id
    {
        bail!(
            "the manifest beside recording {recording_id} names recording {} of session {} (box {}): not its own",
            manifest.recording_id,
            manifest.session_id,
            manifest.box_id
        );
    }
    let sealed = match dir.index.job_result(recording_id, witness_core::JobStep::Seal)? {
        Some(kept) => kept,
        None if !dir.root.join(&rec.path).exists() && plain.is_some() => {
            let copy = plain.unwrap_or(Path::new(""));
            let file = std::fs::File::open(copy).with_context(|| format!("opening {}", copy.display()))?;
            let (len, sha) = length_and_sha256(file).with_context(|| format!("reading {}", copy.display()))?;
            sealed_as(len, &sha)
        }
        None => {
            let path = dir.root.join(&rec.path);
            let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let reader = witness_recorder::PlainReader::new(file, &witness_keys::key_for(&dir.root))?;
            let (len, sha) = length_and_sha256(reader).with_context(|| format!("reading {}", path.display()))?;
            sealed_as(len, &sha)
        }
    };
    if sealed_as(manifest.bytes, &manifest.sha256) != sealed {
        bail!(
            "the manifest beside recording {recording_id} signs {} bytes, sha256 {}; sealing computed {sealed}: not its own",
            manifest.bytes,
            manifest.sha256
        );
    }
    Ok((m, s))
}

/// The length and SHA-256 (hex) of what `r` reads.
fn length_and_sha256(mut r: impl std::io::Read) -> std::io::Result<(u64, String)> {
    let mut hash = <sha2::Sha256 as sha2::Digest>::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        sha2::Digest::update(&mut hash, &buf[..n]);
    }
    Ok((len, hex::encode(sha2::Digest::finalize(hash))))
}

/// Whether the recording at `path` is sealed: its manifest and signature are beside it.
pub fn is_sealed(path: &Path) -> bool {
    manifest_path(path).is_file() && signature_path(path).is_file()
}

/// Why a finished recording ends where it does, for its manifest.
pub fn gaps_of(rec: &witness_index::RecordingRow) -> Vec<String> {
    let mut gaps = Vec::new();
    if rec.recovered {
        gaps.push("the box stopped uncleanly; recorded up to here".to_owned());
    }
    if rec.status == witness_core::RecordingStatus::Failed {
        gaps.push(format!("recording failed: {}", rec.status_reason.as_deref().unwrap_or("unknown")));
    }
    if let Some(n) = rec.missed_screen_updates {
        let after = if rec.screen_unverified {
            "the screen after the last is not verified (no full redraw was seen before the session ended)"
        } else {
            "the target redrew the whole screen after each"
        };
        gaps.push(format!(
            "the recorder missed {n} screen updates (it fell behind, or could not decode them); {after}"
        ));
    }
    gaps
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

/// The bundle's signed list of the session's recordings.
const SESSION_MANIFEST: &str = "session-manifest.json";
const SESSION_SIGNATURE: &str = "session-manifest.sig";

const BUNDLE_README: &str = "Witness evidence bundle

This folder holds the recordings of one session as the Witness box recorded them, each with
a manifest (who, what, when, the recording's chunks and their chained SHA-256 hashes, gaps)
and the manifest's Ed25519 signature, the session manifest (session-manifest.json: every
recording of the session with its SHA-256) and its signature, and the box's public key
(box.pub, hex).

Verify it anywhere, with no box, data directory or network:

    witness verify THIS_FOLDER --key-file BOX_KEY

where BOX_KEY holds the key the box publishes (`witness evidence key` on the box), obtained
from the box, not from this folder. It checks the session manifest's signature and that the
folder holds exactly the recordings it lists, and for every recording: the signature over the
manifest, that the manifest names that key, every chunk's hash in order, the final hash, the
total length and the SHA-256 of the file. Any flipped byte, missing, reordered or appended
data, a removed recording, an edited manifest or a foreign key fails and says where. It checks
session.json (who, from where, how it ended) against the signed session manifest, and names
any file in the folder that is not one it checked (a copy laid beside a recording). Without
--key/--key-file the key in box.pub is used: the fingerprint it prints (SHA-256 of the key)
then says which key signed the folder, not that the key is the box's.

An SSH recording is RECORDING.wsr (witness-raw/1: the bytes as they crossed the box, what the
manifest signs) with RECORDING.cast made from it; older SSH recordings are RECORDING.cast alone.
Play a recording: asciinema play RECORDING.cast (SSH); any video player opens RECORDING.mp4 (RDP)
";

/// `witness evidence export SESSION --out DIR`: how many recordings were exported.
pub fn export(root: &Path, session_id: &str, out: &Path) -> Result<usize> {
    let dir = DataDir::open(root)?;
    let (session, recordings) = write_bundle(&dir, session_id, out)?;
    dir.index.audit(
        "evidence_exported",
        Some(&session.user),
        Some(&session.target),
        Some(session_id),
        &serde_json::json!({ "recordings": recordings }),
    )?;
    Ok(recordings)
}

/// Writes a session's evidence bundle into the folder `out`: the session and how many
/// recordings it holds. The caller audits.
pub fn write_bundle(dir: &DataDir, session_id: &str, out: &Path) -> Result<(witness_index::SessionRow, usize)> {
    let root = dir.root.as_path();
    let session = dir.index.session(session_id)?.with_context(|| format!("no session {session_id:?}"))?;
    let recs = dir.index.session_recordings(session_id)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // A recording that has just ended may still wait for its seal job on the archive pool: it is
    // sealed here as the pool would seal it (the same signed manifest; the pool then finds it
    // sealed), so a bundle asked for at once never lacks a manifest.
    for r in &recs {
        use witness_core::RecordingStatus::{Completed, Failed, Uploaded};
        let path = root.join(&r.path);
        if matches!(r.status, Completed | Failed | Uploaded) && path.exists() && !is_sealed(&path) {
            seal(dir, &r.id, gaps_of(r))?;
        }
    }
    let mut listed = Vec::new();
    for r in &recs {
        // The signed bytes as stored; for a raw SSH recording (`.wsr`) also a `.cast` to play.
        let stored = if crate::views::is_raw(dir, r)? {
            let stored = out.join(format!("{}.wsr", r.id));
            crate::views::export_recording(dir, &r.id, &stored, crate::views::View::Stored)?;
            crate::views::export_recording(
                dir,
                &r.id,
                &out.join(format!("{}.cast", r.id)),
                crate::views::View::Player,
            )?;
            stored
        } else {
            let file = out.join(format!("{}.{}", r.id, crate::sync::extension(&r.path)));
            crate::views::export_recording(dir, &r.id, &file, crate::views::View::Stored)?;
            file
        };
        // Only the recording's own manifest: the box signs the session's list from it (issue 18,
        // `h-fix18g`: another recording's manifest copied beside this one was listed unchecked).
        let (m, s) = own_evidence_with(dir, &r.id, Some(&stored))?;
        // The signed list of the session's recordings: a recording dropped from the folder fails.
        let parsed: Manifest =
            serde_json::from_slice(&m).with_context(|| format!("the manifest of recording {}", r.id))?;
        listed.push(evidence::SessionRecording { id: r.id.clone(), sha256: parsed.sha256 });
        std::fs::write(out.join(format!("{}.manifest.json", r.id)), m)?;
        std::fs::write(out.join(format!("{}.manifest.sig", r.id)), s)?;
    }
    let key = signing_key(root)?;
    let manifest = evidence::SessionManifest {
        format: evidence::SESSION_FORMAT.into(),
        box_id: dir.config.box_id.clone(),
        session_id: session.id.clone(),
        user: session.user.clone(),
        target: session.target.clone(),
        started_at: session.started_at.clone(),
        ended_at: session.ended_at.clone(),
        recordings: listed,
        key_fingerprint: evidence::fingerprint(&key.verifying_key()),
        protocol: Some(session.protocol.clone()),
        client: Some(session.client.clone().unwrap_or_default()),
        end_reason: Some(session.end_reason.clone().unwrap_or_default()),
    };
    std::fs::write(out.join(SESSION_MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    std::fs::write(out.join(SESSION_SIGNATURE), evidence::sign_bytes(&key, &manifest.signed_bytes()))?;
    std::fs::write(out.join("box.pub"), hex::encode(key.verifying_key().as_bytes()) + "\n")?;
    std::fs::write(out.join("session.json"), serde_json::to_vec_pretty(&session)?)?;
    std::fs::write(out.join("README.txt"), BUNDLE_README)?;
    Ok((session, recs.len()))
}

/// Evidence bundles made for the console wait here to be downloaded, an hour at most.
pub const CONSOLE_BUNDLES: &str = "evidence-downloads";
const BUNDLE_KEEP: std::time::Duration = std::time::Duration::from_secs(3600);

/// A session's evidence bundle as one tar archive for the console: its id (the file's name
/// without `.tar`), length and SHA-256. Bundles older than an hour are removed first.
pub fn console_bundle(dir: &DataDir, session_id: &str) -> Result<(String, u64, String)> {
    use sha2::Digest;
    use std::io::Write;
    let place = dir.root.join(CONSOLE_BUNDLES);
    std::fs::create_dir_all(&place).with_context(|| format!("creating {}", place.display()))?;
    for entry in std::fs::read_dir(&place)?.flatten() {
        let old = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        if old.is_none_or(|age| age > BUNDLE_KEEP) {
            let p = entry.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let folder = place.join(&id);
    let name = format!("evidence-{session_id}");
    let made = (|| -> Result<(u64, String)> {
        write_bundle(dir, session_id, &folder)?;
        let mut files: Vec<_> = std::fs::read_dir(&folder)?.flatten().map(|e| e.path()).collect();
        files.sort();
        let file = std::fs::File::create(place.join(format!("{id}.tar")))?;
        let mut out = Hashing { inner: std::io::BufWriter::new(file), hash: sha2::Sha256::new(), len: 0 };
        let mtime = witness_core::clock::unix_secs() as u64;
        out.write_all(
            &witness_core::tar::header(&format!("{name}/"), 0, mtime, true).context("a bundle name too long")?,
        )?;
        for f in &files {
            let file_name = f.file_name().and_then(|n| n.to_str()).context("a bundle file name")?;
            let len = std::fs::metadata(f)?.len();
            out.write_all(
                &witness_core::tar::header(&format!("{name}/{file_name}"), len, mtime, false)
                    .context("a bundle file name too long")?,
            )?;
            std::io::copy(&mut std::fs::File::open(f)?, &mut out)?;
            out.write_all(&vec![0u8; witness_core::tar::padding(len)])?;
        }
        out.write_all(&witness_core::tar::END)?;
        out.inner.flush()?;
        out.inner.get_ref().sync_all()?;
        Ok((out.len, hex::encode(out.hash.finalize())))
    })();
    let _ = std::fs::remove_dir_all(&folder);
    let (len, sha) = made.inspect_err(|_| {
        let _ = std::fs::remove_file(place.join(format!("{id}.tar")));
    })?;
    Ok((id, len, sha))
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
    len: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `witness verify BUNDLE_DIR [--key HEX | --key-file F]`: needs nothing but the folder (and
/// the box's key, to know the folder was signed by that box). Each check is a line given to
/// `say` as it is made; an error when anything failed.
pub fn verify(bundle: &Path, key: Option<String>, key_file: Option<&Path>, say: &mut dyn FnMut(String)) -> Result<()> {
    let given = match (key, key_file) {
        (Some(k), _) => Some(("--key", k)),
        (None, Some(f)) => {
            Some(("--key-file", std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?))
        }
        (None, None) => None,
    };
    let in_bundle = std::fs::read_to_string(bundle.join("box.pub"));
    let mut all_ok = true;
    let key = match given {
        Some((flag, given)) => {
            let fp = evidence::fingerprint_hex(&given)
                .with_context(|| format!("{flag} is not an Ed25519 public key in hex (64 hex digits)"))?;
            say(format!("signing key: {fp} (SHA-256 fingerprint of the key given with {flag})"));
            match in_bundle.as_deref().ok().map(|k| (k, evidence::fingerprint_hex(k))) {
                Some((_, Some(theirs))) if theirs == fp => say("  ✓ box.pub: the same key".into()),
                Some((_, theirs)) => {
                    say(format!(
                        "  ✗ box.pub: the bundle's key ({}) is not the key given with {flag}",
                        theirs.as_deref().unwrap_or("unreadable")
                    ));
                    all_ok = false;
                }
                None => say(format!("  box.pub: absent; the key given with {flag} is used")),
            }
            given
        }
        None => {
            let k = in_bundle.with_context(|| {
                format!("{} has no box.pub (or give the box's key with --key-file)", bundle.display())
            })?;
            let fp = evidence::fingerprint_hex(&k).unwrap_or_else(|| "unreadable".into());
            say(format!(
                "signing key: {fp} (SHA-256 fingerprint of the bundle's box.pub; pass --key-file with the box's key to check it is the box's)"
            ));
            k
        }
    };
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(bundle)
        .with_context(|| format!("reading {}", bundle.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .collect();
    manifests.sort();
    if manifests.is_empty() && !bundle.join(SESSION_MANIFEST).exists() {
        bail!("{} holds no recording manifests", bundle.display());
    }
    let name_of =
        |m: &Path| m.file_name().unwrap_or_default().to_string_lossy().trim_end_matches(".manifest.json").to_owned();
    // The session first: does the folder hold exactly the recordings the box signed for it?
    say("session".into());
    match std::fs::read(bundle.join(SESSION_MANIFEST)) {
        Ok(session) => {
            let sig = std::fs::read_to_string(bundle.join(SESSION_SIGNATURE)).unwrap_or_default();
            let recordings: Vec<(String, Vec<u8>)> =
                manifests.iter().map(|m| (name_of(m), std::fs::read(m).unwrap_or_default())).collect();
            for c in evidence::verify_session(&session, &sig, &key, &recordings) {
                say(format!("  {} {}: {}", if c.ok { "✓" } else { "✗" }, c.what, c.detail));
                all_ok &= c.ok;
            }
            if let Ok(signed) = serde_json::from_slice::<evidence::SessionManifest>(&session) {
                all_ok &= session_json_matches(bundle, &signed, say);
            }
        }
        Err(e) => {
            say(format!(
                "  ✗ session manifest: {SESSION_MANIFEST}: {e}: nothing signed says which recordings the session had"
            ));
            all_ok = false;
        }
    }
    // Every file is part of what was checked: a forged copy laid beside a signed recording
    // (a `.mp4` a viewer would open, say) is not passed over in silence.
    let names: Vec<String> = manifests.iter().map(|m| name_of(m)).collect();
    for stray in stray_files(bundle, &names)? {
        say(format!("  ✗ {stray}: not part of the signed bundle (added or renamed)"));
        all_ok = false;
    }
    for m in &manifests {
        let name = name_of(m);
        say(format!("recording {name}"));
        let manifest = std::fs::read(m)?;
        let sig = std::fs::read_to_string(bundle.join(format!("{name}.manifest.sig"))).unwrap_or_default();
        let file =
            ["wsr", "cast", "mp4"].map(|ext| format!("{name}.{ext}")).into_iter().find(|f| bundle.join(f).exists());
        let file = file.unwrap_or_else(|| format!("{name}.cast"));
        let data = match std::fs::read(bundle.join(&file)) {
            Ok(d) => d,
            Err(e) => {
                say(format!("  ✗ recording file: {file}: {e}"));
                all_ok = false;
                continue;
            }
        };
        for c in evidence::verify(&manifest, &sig, &key, &data) {
            say(format!("  {} {}: {}", if c.ok { "✓" } else { "✗" }, c.what, c.detail));
            all_ok &= c.ok;
        }
        // The `.cast` beside a raw recording is what people play: it must be made from the
        // signed bytes, or a changed copy would play while the bundle verifies.
        if file.ends_with(".wsr") {
            let cast = bundle.join(format!("{name}.cast"));
            let made = witness_core::rawrec::to_cast(&data).ok();
            match std::fs::read(&cast) {
                Ok(c) if Some(&c) == made.as_ref() => {
                    say(format!("  ✓ player copy: {name}.cast is made from the signed recording"))
                }
                Ok(_) => {
                    say(format!(
                        "  ✗ player copy: {name}.cast is not what the signed {file} makes: changed or replaced"
                    ));
                    all_ok = false;
                }
                Err(_) => say(format!("  - player copy: no {name}.cast (make one with witness recordings export)")),
            }
        }
    }
    if all_ok {
        say(format!("VERIFIED: {} recordings match their signed manifests", manifests.len()));
        Ok(())
    } else {
        bail!("NOT VERIFIED: see the ✗ lines above")
    }
}

/// The files in `bundle` that are none of what the box puts there for the recordings `names`:
/// per recording its manifest, signature and one recording file (a raw one with its `.cast`).
fn stray_files(bundle: &Path, names: &[String]) -> Result<Vec<String>> {
    let fixed = [SESSION_MANIFEST, SESSION_SIGNATURE, "box.pub", "session.json", "README.txt"];
    let mut stray = Vec::new();
    for e in std::fs::read_dir(bundle).with_context(|| format!("reading {}", bundle.display()))?.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        if fixed.contains(&file.as_str()) {
            continue;
        }
        let known = names.iter().any(|n| {
            let has = |ext: &str| bundle.join(format!("{n}.{ext}")).exists();
            let ok = |ext: &str| file == format!("{n}.{ext}");
            ok("manifest.json")
                || ok("manifest.sig")
                // The one recording file the verifier checks, and the player copy of a raw one.
                || (ok("wsr") && !has("mp4"))
                || (ok("cast") && !has("mp4"))
                || (ok("mp4") && !has("wsr") && !has("cast"))
        });
        if !known {
            stray.push(file);
        }
    }
    stray.sort();
    Ok(stray)
}

/// Whether the bundle's `session.json` (what people read for who, from where and how it ended)
/// states what the box signed in its session manifest; each difference is named.
fn session_json_matches(bundle: &Path, signed: &evidence::SessionManifest, say: &mut dyn FnMut(String)) -> bool {
    let row: serde_json::Value = match std::fs::read(bundle.join("session.json")).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            say(format!("  ✗ session.json: not JSON: {e}"));
            return false;
        }
        Err(_) => {
            say("  - session.json: absent".into());
            return true;
        }
    };
    let text = |k: &str| row[k].as_str().unwrap_or_default().to_owned();
    let mut fields = vec![
        ("id", signed.session_id.clone()),
        ("user", signed.user.clone()),
        ("target", signed.target.clone()),
        ("started_at", signed.started_at.clone()),
        ("ended_at", signed.ended_at.clone().unwrap_or_default()),
    ];
    let mut unsigned = Vec::new();
    for (k, v) in [("protocol", &signed.protocol), ("client", &signed.client), ("end_reason", &signed.end_reason)] {
        match v {
            Some(v) => fields.push((k, v.clone())),
            None => unsigned.push(k),
        }
    }
    let mut ok = true;
    for (k, v) in fields {
        if text(k) != v {
            say(format!("  ✗ session.json: {k} is {:?}, the signed session manifest says {v:?} (changed)", text(k)));
            ok = false;
        }
    }
    if ok {
        say("  ✓ session.json: states what the signed session manifest does".into());
    }
    if !unsigned.is_empty() {
        say(format!("  - session.json: {} not signed in this bundle", unsigned.join(", ")));
    }
    ok
}
