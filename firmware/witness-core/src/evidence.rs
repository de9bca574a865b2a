//! Recordings as evidence, without I/O: a recording is cut into chunks of whole lines, the
//! chunks are hash-chained, and a manifest (who, what, when, every chunk's place and hash, the
//! final hash, gaps such as an unclean stop) is signed with the box's Ed25519 key. Anyone with
//! the recording, the manifest, its signature and the box's public key can verify it offline.
//! A session manifest, signed too, lists the session's recordings (ids and hashes), so a bundle
//! missing one of them, or holding one that is not the session's, fails.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Chunks close at the first line end at or past this many bytes.
pub const CHUNK_TARGET: usize = 1024 * 1024;
pub const FORMAT: &str = "witness-evidence/1";
pub const SESSION_FORMAT: &str = "witness-session/1";
pub const CHECKPOINT_FORMAT: &str = "witness-audit-checkpoint/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub offset: u64,
    pub len: u64,
    /// Chained hash: SHA-256(previous hash ‖ index ‖ offset ‖ len ‖ bytes), hex.
    pub hash: String,
}

/// Where a recording has a hole, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Number of chunks before the gap.
    pub after_chunk: u64,
    pub reason: String,
    /// Bytes of the stored file that recovery moved aside (torn, or not authentic in their
    /// place) rather than destroying them. Absent from older manifests, whose signed bytes stay
    /// as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_bytes: Option<u64>,
}

/// What the box signs about one recording. Field order is the signed byte order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub box_id: String,
    pub session_id: String,
    pub recording_id: String,
    pub user: String,
    pub target: String,
    pub channel: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: String,
    pub bytes: u64,
    pub sha256: String,
    pub chunks: Vec<ChunkRef>,
    pub final_hash: String,
    pub gaps: Vec<Gap>,
    /// SHA-256 fingerprint of the signing key, hex.
    pub key_fingerprint: String,
}

impl Manifest {
    /// The exact bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest serializes")
    }
}

/// One recording as the session manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecording {
    pub id: String,
    /// The SHA-256 its own manifest states (of the recording as played), hex.
    pub sha256: String,
}

/// What the box signs about one session: every recording it had. Field order is the signed
/// byte order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionManifest {
    pub format: String,
    pub box_id: String,
    pub session_id: String,
    pub user: String,
    pub target: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub recordings: Vec<SessionRecording>,
    /// SHA-256 fingerprint of the signing key, hex.
    pub key_fingerprint: String,
    /// Where the client connected from, how and why the session ended. Absent from bundles made
    /// before they were signed (and then left out of the signed bytes, which stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
}

impl SessionManifest {
    /// The exact bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a session manifest serializes")
    }
}

/// A signed statement of how far the audit log's hash chain reached: a removed tail (which a
/// chain alone cannot show) is named against the newest checkpoint. Field order is the signed
/// byte order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    pub format: String,
    pub box_id: String,
    /// The newest event's id and chained hash when the checkpoint was signed.
    pub last_id: i64,
    pub hash: String,
    pub at: String,
    pub key_fingerprint: String,
    /// The checkpoint's place in the box's chain of checkpoints (1 for the first). Absent from
    /// checkpoints signed before it existed (their place is their line in the file), whose
    /// signed bytes stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// SHA-256 (hex) of the checkpoint before it, signed and all ([`SignedCheckpoint::hash`]);
    /// absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// The store it is sent to, as the box names it (`dir:…`, `s3:ENDPOINT/BUCKET/PREFIX`,
    /// `azure:URL` without its query: no secret): the only store a comparison may call its
    /// verification, whatever a file on the disk names. Absent from checkpoints signed before it
    /// existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// One line of the checkpoint file: the checkpoint and its signature (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub checkpoint: AuditCheckpoint,
    pub signature: String,
}

impl AuditCheckpoint {
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a checkpoint serializes")
    }

    pub fn sign(self, key: &SigningKey) -> SignedCheckpoint {
        let signature = sign_bytes(key, &self.signed_bytes());
        SignedCheckpoint { checkpoint: self, signature }
    }
}

impl SignedCheckpoint {
    /// SHA-256 (hex) of the checkpoint and its signature as stored (one line of JSON): what the
    /// next checkpoint names as `prev`, and what its key in the store carries.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(serde_json::to_vec(self).expect("a checkpoint serializes")))
    }

    /// Whether the signature verifies with `public_key_hex` and the checkpoint names that key.
    pub fn verifies(&self, public_key_hex: &str) -> bool {
        let signed = self.checkpoint.signed_bytes();
        signature_checks(public_key_hex, &self.signature, &signed, &self.checkpoint.key_fingerprint, "checkpoint")
            .iter()
            .all(|(_, ok, _)| *ok)
            && self.checkpoint.format == CHECKPOINT_FORMAT
    }
}

fn link(prev: &[u8; 32], index: u64, offset: u64, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(index.to_le_bytes());
    h.update(offset.to_le_bytes());
    h.update((data.len() as u64).to_le_bytes());
    h.update(data);
    h.finalize().into()
}

/// Cuts `data` into chunks of whole lines and chains their hashes. Returns the chunks and the
/// final hash (hex; of 32 zero bytes for empty data).
pub fn chain(data: &[u8]) -> (Vec<ChunkRef>, String) {
    let mut c = Chainer::default();
    c.push(data);
    c.finish()
}

/// A chunk that holds no newline ends here, so a chunk (and what [`Chainer`] holds) stays
/// bounded for recordings of binary bytes.
pub const CHUNK_MAX: usize = 4 * CHUNK_TARGET;

/// [`chain`] fed in pieces, holding at most one chunk: a chunk ends at the first newline at or
/// after [`CHUNK_TARGET`] bytes, or at [`CHUNK_MAX`]. Verification reads the boundaries from
/// the manifest, so they are the writer's choice.
#[derive(Debug, Default)]
pub struct Chainer {
    chunks: Vec<ChunkRef>,
    prev: [u8; 32],
    offset: u64,
    buf: Vec<u8>,
}

impl Chainer {
    pub fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = CHUNK_MAX - self.buf.len();
            let scan_from = CHUNK_TARGET.saturating_sub(self.buf.len()).min(data.len());
            let window = &data[..room.min(data.len())];
            let end = match window.get(scan_from..).and_then(|w| w.iter().position(|&b| b == b'\n')) {
                Some(i) => Some(scan_from + i + 1),
                None if window.len() == room => Some(room),
                None => None,
            };
            match end {
                Some(end) => {
                    self.buf.extend_from_slice(&data[..end]);
                    self.close();
                    data = &data[end..];
                }
                None => {
                    self.buf.extend_from_slice(window);
                    data = &data[window.len()..];
                }
            }
        }
    }

    fn close(&mut self) {
        self.prev = link(&self.prev, self.chunks.len() as u64, self.offset, &self.buf);
        self.chunks.push(ChunkRef { offset: self.offset, len: self.buf.len() as u64, hash: hex::encode(self.prev) });
        self.offset += self.buf.len() as u64;
        self.buf.clear();
    }

    /// The chunks and the final hash.
    pub fn finish(mut self) -> (Vec<ChunkRef>, String) {
        if !self.buf.is_empty() {
            self.close();
        }
        (self.chunks, hex::encode(self.prev))
    }

    /// Bytes chained so far.
    pub fn len(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The box's signing key from its 32-byte seed.
pub fn signing_key(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

pub fn sign(key: &SigningKey, m: &Manifest) -> String {
    sign_bytes(key, &m.signed_bytes())
}

/// A hex Ed25519 signature over `bytes`.
pub fn sign_bytes(key: &SigningKey, bytes: &[u8]) -> String {
    hex::encode(key.sign(bytes).to_bytes())
}

/// A public key from its hex text (32 bytes, a valid Ed25519 point).
pub fn public_key(hex_text: &str) -> Option<VerifyingKey> {
    hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
}

/// The fingerprint of a hex public key, if it is one.
pub fn fingerprint_hex(public_key_hex: &str) -> Option<String> {
    public_key(public_key_hex).map(|k| fingerprint(&k))
}

/// One check and its outcome, for the verifier's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Verifies a recording against its signed manifest with the given public key (32 bytes, hex).
/// Every check is reported; the recording verifies when all pass.
pub fn verify(manifest_json: &[u8], signature_hex: &str, public_key_hex: &str, data: &[u8]) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |what: &str, ok: bool, detail: String| out.push(Check { what: what.into(), ok, detail });
    let manifest: Manifest = match serde_json::from_slice(manifest_json) {
        Ok(m) => m,
        Err(e) => {
            check("manifest", false, format!("not a manifest: {e}"));
            return out;
        }
    };
    check("format", manifest.format == FORMAT, manifest.format.clone());
    let (what, signed) = ("the manifest", manifest.signed_bytes());
    for (what, ok, detail) in signature_checks(public_key_hex, signature_hex, &signed, &manifest.key_fingerprint, what)
    {
        check(what, ok, detail);
    }
    // Chunks, in order, where the manifest says they are. Offsets and lengths come from outside:
    // every sum is checked.
    let mut prev = [0u8; 32];
    let mut chunks_ok = true;
    let mut covered = 0u64;
    for (i, c) in manifest.chunks.iter().enumerate() {
        if c.offset != covered {
            check(
                "chunks",
                false,
                format!("chunk {i} does not follow chunk {} (manifest reordered)", i.saturating_sub(1)),
            );
            chunks_ok = false;
            break;
        }
        let end = match c.offset.checked_add(c.len) {
            Some(end) if end <= data.len() as u64 => end,
            end => {
                let end = end.map(|e| e.to_string()).unwrap_or_else(|| "beyond 2^64".into());
                check(
                    "chunks",
                    false,
                    format!(
                        "chunk {i} (bytes {}..{end}) is missing: the recording ends at byte {} (truncated)",
                        c.offset,
                        data.len()
                    ),
                );
                chunks_ok = false;
                break;
            }
        };
        // Both are at most `data.len()`.
        let (start, end) = (c.offset as usize, end as usize);
        covered = end as u64;
        prev = link(&prev, i as u64, c.offset, &data[start..end]);
        if hex::encode(prev) != c.hash {
            check(
                "chunks",
                false,
                format!("chunk {i} (bytes {start}..{end}) does not match its hash: changed, swapped or replaced"),
            );
            chunks_ok = false;
            break;
        }
    }
    if chunks_ok {
        check("chunks", true, format!("{} chunks match their chained hashes", manifest.chunks.len()));
        let whole = covered == data.len() as u64;
        check(
            "length",
            whole,
            if whole {
                format!("{covered} bytes")
            } else {
                format!("{} bytes after the last chunk (appended)", data.len() as u64 - covered)
            },
        );
        check("final hash", hex::encode(prev) == manifest.final_hash, manifest.final_hash.clone());
        let sha = hex::encode(Sha256::digest(data));
        check("sha256", sha == manifest.sha256, sha);
    }
    for g in &manifest.gaps {
        let aside = g.quarantined_bytes.map(|n| format!(" ({n} bytes quarantined on the box)")).unwrap_or_default();
        check("gap", true, format!("recorded up to chunk {}: {}{aside}", g.after_chunk, g.reason));
    }
    out
}

/// A recording's manifest, when `signature_hex` over it verifies with `public_key_hex` and it
/// names that key; why not otherwise (one line).
pub fn signed_manifest(manifest_json: &[u8], signature_hex: &str, public_key_hex: &str) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(manifest_json).map_err(|e| format!("not a manifest: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!("not a manifest of this format: {}", manifest.format));
    }
    let signed = manifest.signed_bytes();
    match signature_checks(public_key_hex, signature_hex, &signed, &manifest.key_fingerprint, "the manifest")
        .into_iter()
        .find(|(_, ok, _)| !ok)
    {
        Some((_, _, why)) => Err(why),
        None => Ok(manifest),
    }
}

/// Whether a recording's plaintext, read as a stream into `chainer` and `sha256`, is what
/// `manifest` signs (its length, chained chunks and hash); why not otherwise.
pub fn matches_manifest(manifest: &Manifest, chainer: Chainer, sha256: Sha256) -> Result<(), String> {
    let bytes = chainer.len();
    let (chunks, final_hash) = chainer.finish();
    if bytes != manifest.bytes {
        return Err(format!("it holds {bytes} bytes, its signed manifest {}", manifest.bytes));
    }
    if chunks != manifest.chunks || final_hash != manifest.final_hash {
        return Err("its chunks do not match their signed hashes: changed, swapped or replaced".into());
    }
    let sha = hex::encode(sha256.finalize());
    if sha != manifest.sha256 {
        return Err(format!("its sha256 {sha} is not the signed {}", manifest.sha256));
    }
    Ok(())
}

/// The checks of one Ed25519 signature over `signed`: the key is the one the signed text names
/// (by `fingerprint`), and the signature verifies. `what` names the signed text.
/// Whether `signature_hex` is the Ed25519 signature of `public_key_hex` over exactly `signed`.
pub fn verify_bytes(public_key_hex: &str, signature_hex: &str, signed: &[u8]) -> bool {
    let sig = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    public_key(public_key_hex).zip(sig).is_some_and(|(key, sig)| key.verify(signed, &sig).is_ok())
}

fn signature_checks(
    public_key_hex: &str,
    signature_hex: &str,
    signed: &[u8],
    fingerprint_named: &str,
    what: &str,
) -> Vec<(&'static str, bool, String)> {
    let sig = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    let Some((key, sig)) = public_key(public_key_hex).zip(sig) else {
        return vec![("signature", false, "unreadable public key or signature".into())];
    };
    let same_key = fingerprint(&key) == fingerprint_named;
    let ok = key.verify(signed, &sig).is_ok();
    vec![
        (
            "signing key",
            same_key,
            if same_key {
                format!("{what} names this key")
            } else {
                format!("{what} was signed by another key (foreign key)")
            },
        ),
        (
            "signature",
            ok,
            if ok {
                format!("Ed25519 signature over {what} verifies")
            } else {
                format!("signature does not verify: {what} was edited or signed by another key")
            },
        ),
    ]
}

/// Verifies a session manifest and that a bundle holds exactly the recordings it lists:
/// `recordings` are the bundle's recording manifests by the name their files carry. A
/// recording removed from the bundle, added to it, or swapped for another fails, named.
pub fn verify_session(
    session_json: &[u8],
    signature_hex: &str,
    public_key_hex: &str,
    recordings: &[(String, Vec<u8>)],
) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |what: &str, ok: bool, detail: String| out.push(Check { what: what.into(), ok, detail });
    let session: SessionManifest = match serde_json::from_slice(session_json) {
        Ok(m) => m,
        Err(e) => {
            check("session manifest", false, format!("not a session manifest: {e}"));
            return out;
        }
    };
    check("session format", session.format == SESSION_FORMAT, session.format.clone());
    let signed = session.signed_bytes();
    for (what, ok, detail) in
        signature_checks(public_key_hex, signature_hex, &signed, &session.key_fingerprint, "the session manifest")
    {
        check(&format!("session {what}"), ok, detail);
    }
    let mut problems = Vec::new();
    for listed in &session.recordings {
        let Some((_, manifest)) = recordings.iter().find(|(name, _)| *name == listed.id) else {
            problems.push(format!(
                "recording {} is missing from the bundle: the signed session manifest lists it (removed)",
                listed.id
            ));
            continue;
        };
        match serde_json::from_slice::<Manifest>(manifest) {
            Ok(m) if m.recording_id != listed.id || m.session_id != session.session_id => problems.push(format!(
                "recording {}: its manifest is of recording {} in session {} (swapped)",
                listed.id, m.recording_id, m.session_id
            )),
            Ok(m) if m.sha256 != listed.sha256 => problems.push(format!(
                "recording {}: sha256 {} is not the {} the signed session manifest lists (replaced)",
                listed.id, m.sha256, listed.sha256
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!("recording {}: not a manifest: {e}", listed.id)),
        }
    }
    for (name, _) in recordings {
        if !session.recordings.iter().any(|r| r.id == *name) {
            problems.push(format!("recording {name} is not in the signed session manifest (added)"));
        }
    }
    if problems.is_empty() {
        check(
            "session recordings",
            true,
            format!(
                "session {}: the bundle holds the {} recordings its signed manifest lists",
                session.session_id,
                session.recordings.len()
            ),
        );
    }
    for p in problems {
        check("session recordings", false, p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recording() -> Vec<u8> {
        let mut v = b"{\"version\":2}\n".to_vec();
        for i in 0..60_000 {
            v.extend_from_slice(format!("[{i}.0, \"o\", \"line {i} of the session\"]\n").as_bytes());
        }
        v
    }

    fn signed(data: &[u8]) -> (Vec<u8>, String, String) {
        let key = signing_key(&[7u8; 32]);
        let (chunks, final_hash) = chain(data);
        let m = Manifest {
            format: FORMAT.into(),
            box_id: "b".into(),
            session_id: "s".into(),
            recording_id: "r".into(),
            user: "alice".into(),
            target: "web01".into(),
            channel: "shell".into(),
            started_at: "t0".into(),
            ended_at: Some("t1".into()),
            status: "completed".into(),
            bytes: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
            chunks,
            final_hash,
            gaps: vec![],
            key_fingerprint: fingerprint(&key.verifying_key()),
        };
        let sig = sign(&key, &m);
        (serde_json::to_vec(&m).unwrap(), sig, hex::encode(key.verifying_key().as_bytes()))
    }

    fn failed(checks: &[Check]) -> Vec<String> {
        checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.what, c.detail)).collect()
    }

    #[test]
    fn a_manifest_is_taken_only_as_signed_and_its_recording_only_as_it_signs() {
        let data = recording();
        let (json, sig, public) = signed(&data);
        let m = signed_manifest(&json, &sig, &public).unwrap();
        let stream = |d: &[u8]| {
            let mut c = Chainer::default();
            let mut h = Sha256::new();
            for piece in d.chunks(4093) {
                c.push(piece);
                h.update(piece);
            }
            (c, h)
        };
        let (c, h) = stream(&data);
        assert_eq!(matches_manifest(&m, c, h), Ok(()));
        // Another key, a changed manifest, another format: refused, saying why.
        let other = hex::encode(signing_key(&[8u8; 32]).verifying_key().as_bytes());
        assert!(signed_manifest(&json, &sig, &other).unwrap_err().contains("another key"));
        let forged = String::from_utf8(json.clone()).unwrap().replace("\"alice\"", "\"mallory\"");
        assert!(signed_manifest(forged.as_bytes(), &sig, &public).is_err());
        // A changed, cut or extended recording does not match what is signed.
        let mut changed = data.clone();
        changed[data.len() / 2] ^= 1;
        for d in [changed, data[..data.len() - 1].to_vec(), [data.as_slice(), b"x"].concat()] {
            let (c, h) = stream(&d);
            assert!(matches_manifest(&m, c, h).is_err());
        }
    }

    #[test]
    fn chunks_are_whole_lines_and_deterministic() {
        let data = recording();
        let (chunks, h) = chain(&data);
        assert!(chunks.len() >= 2);
        for c in &chunks {
            assert_eq!(data[(c.offset + c.len - 1) as usize], b'\n');
        }
        assert_eq!(chain(&data).1, h);
    }

    #[test]
    fn audit_checkpoints_verify_only_as_signed() {
        let key = signing_key(&[9u8; 32]);
        let public = hex::encode(key.verifying_key().as_bytes());
        let cp = AuditCheckpoint {
            format: CHECKPOINT_FORMAT.into(),
            box_id: "b".into(),
            last_id: 42,
            hash: "ab".repeat(32),
            at: "t".into(),
            key_fingerprint: fingerprint(&key.verifying_key()),
            seq: Some(3),
            prev: Some("cd".repeat(32)),
            store: Some("s3:http://minio:9000/rec/".into()),
        }
        .sign(&key);
        assert!(cp.verifies(&public));
        let mut moved = cp.clone();
        moved.checkpoint.last_id = 40;
        assert!(!moved.verifies(&public), "a checkpoint moved back to hide a removed tail");
        let mut renumbered = cp.clone();
        renumbered.checkpoint.seq = Some(2);
        assert!(!renumbered.verifies(&public), "its place in the chain is signed");
        let mut elsewhere = cp.clone();
        elsewhere.checkpoint.store = Some("dir:/tmp/empty".into());
        assert!(!elsewhere.verifies(&public), "the store it was sent to is signed");
        let other = hex::encode(signing_key(&[8u8; 32]).verifying_key().as_bytes());
        assert!(!cp.verifies(&other));
    }

    #[test]
    fn chaining_in_pieces_gives_the_same_chunks_and_binary_chunks_are_bounded() {
        let data = recording();
        for piece in [1000, 65536, CHUNK_TARGET + 3] {
            let mut c = Chainer::default();
            data.chunks(piece).for_each(|p| c.push(p));
            assert_eq!(c.finish(), chain(&data), "pieces of {piece}");
        }
        // No newline at all (a binary download): chunks end at the bound, and still verify.
        let binary: Vec<u8> = (0..CHUNK_MAX * 2 + 10).map(|i| (i % 10) as u8).collect();
        let (chunks, _) = chain(&binary);
        assert_eq!(chunks.iter().map(|c| c.len as usize).collect::<Vec<_>>(), [CHUNK_MAX, CHUNK_MAX, 10]);
        let (m, sig, public) = signed(&binary);
        assert!(failed(&verify(&m, &sig, &public, &binary)).is_empty());
    }

    #[test]
    fn verifies_and_names_each_kind_of_tampering() {
        let data = recording();
        let (m, sig, key) = signed(&data);
        assert!(failed(&verify(&m, &sig, &key, &data)).is_empty());
        let mut flipped = data.clone();
        flipped[CHUNK_TARGET + 100] ^= 1;
        assert!(failed(&verify(&m, &sig, &key, &flipped))[0].contains("chunk 1 (bytes"));
        let cut = &data[..data.len() - 10];
        assert!(failed(&verify(&m, &sig, &key, cut))[0].contains("is missing"));
        let (chunks, _) = chain(&data);
        let (a, b) = (&chunks[0], &chunks[1]);
        let mut swapped = data[b.offset as usize..(b.offset + b.len) as usize].to_vec();
        swapped.extend_from_slice(&data[a.offset as usize..(a.offset + a.len) as usize]);
        swapped.extend_from_slice(&data[(b.offset + b.len) as usize..]);
        assert!(failed(&verify(&m, &sig, &key, &swapped))[0].contains("chunk 0"));
        let edited = String::from_utf8(m.clone()).unwrap().replace("alice", "mallory").into_bytes();
        assert!(failed(&verify(&edited, &sig, &key, &data)).iter().any(|f| f.contains("signature does not verify")));
        let other = hex::encode(signing_key(&[9u8; 32]).verifying_key().as_bytes());
        let f = failed(&verify(&m, &sig, &other, &data));
        assert!(f.iter().any(|x| x.contains("foreign key")), "{f:?}");
        let mut longer = data.clone();
        longer.extend_from_slice(b"[9.0, \"o\", \"added\"]\n");
        assert!(failed(&verify(&m, &sig, &key, &longer)).iter().any(|x| x.contains("appended")));
    }

    #[test]
    fn offsets_and_lengths_from_outside_never_panic() {
        let data = recording();
        let (m, sig, key) = signed(&data);
        let mut manifest: Manifest = serde_json::from_slice(&m).unwrap();
        for (offset, len) in [(0, u64::MAX), (u64::MAX, 1), (u64::MAX - 1, 5), (0, data.len() as u64 + 1)] {
            manifest.chunks = vec![ChunkRef { offset, len, hash: "00".into() }];
            let f = failed(&verify(&serde_json::to_vec(&manifest).unwrap(), &sig, &key, &data));
            assert!(f.iter().any(|x| x.starts_with("chunks:")), "{offset} {len}: {f:?}");
        }
        manifest.chunks = vec![
            ChunkRef { offset: 0, len: 5, hash: "00".into() },
            ChunkRef { offset: 5, len: u64::MAX, hash: "00".into() },
        ];
        assert!(!failed(&verify(&serde_json::to_vec(&manifest).unwrap(), &sig, &key, &data)).is_empty());
    }

    /// Recording manifests by the name their files carry.
    type Named = Vec<(String, Vec<u8>)>;

    /// A session manifest over recordings `r1` and `r2`, signed by `seed`'s key, and the
    /// recordings' own manifests.
    fn session(seed: u8) -> (Vec<u8>, String, String, Named) {
        let key = signing_key(&[seed; 32]);
        let mut recordings = Vec::new();
        let mut listed = Vec::new();
        for id in ["r1", "r2"] {
            let data = format!("{{\"version\":2}}\n[0.1, \"o\", \"{id}\"]\n").into_bytes();
            let (m, _, _) = signed(&data);
            let mut m: Manifest = serde_json::from_slice(&m).unwrap();
            m.recording_id = id.into();
            listed.push(SessionRecording { id: id.into(), sha256: m.sha256.clone() });
            recordings.push((id.to_owned(), serde_json::to_vec(&m).unwrap()));
        }
        let s = SessionManifest {
            format: SESSION_FORMAT.into(),
            box_id: "b".into(),
            session_id: "s".into(),
            user: "alice".into(),
            target: "web01".into(),
            started_at: "t0".into(),
            ended_at: Some("t1".into()),
            recordings: listed,
            key_fingerprint: fingerprint(&key.verifying_key()),
            protocol: None,
            client: None,
            end_reason: None,
        };
        let sig = sign_bytes(&key, &s.signed_bytes());
        (serde_json::to_vec(&s).unwrap(), sig, hex::encode(key.verifying_key().as_bytes()), recordings)
    }

    #[test]
    fn bytes_verify_only_as_signed_by_that_key() {
        let key = signing_key(&[5; 32]);
        let public = hex::encode(key.verifying_key().as_bytes());
        let sig = sign_bytes(&key, b"session manifest");
        assert!(verify_bytes(&public, &sig, b"session manifest"));
        assert!(!verify_bytes(&public, &sig, b"session manifesT"), "changed bytes");
        let other = hex::encode(signing_key(&[6; 32]).verifying_key().as_bytes());
        assert!(!verify_bytes(&other, &sig, b"session manifest"), "another key");
        assert!(!verify_bytes(&public, "00", b"session manifest"), "no signature");
    }

    #[test]
    fn a_session_manifest_names_a_recording_removed_added_or_replaced() {
        let (s, sig, key, recs) = session(7);
        assert!(failed(&verify_session(&s, &sig, &key, &recs)).is_empty());
        let f = failed(&verify_session(&s, &sig, &key, &recs[..1]));
        assert_eq!(
            f,
            vec![
                "session recordings: recording r2 is missing from the bundle: the signed session manifest lists it (removed)"
            ]
        );
        let mut more = recs.clone();
        more.push(("r3".into(), recs[0].1.clone()));
        let f = failed(&verify_session(&s, &sig, &key, &more));
        assert!(f.iter().any(|x| x.contains("recording r3 is not in the signed session manifest")), "{f:?}");
        let swapped = vec![(recs[0].0.clone(), recs[1].1.clone()), (recs[1].0.clone(), recs[0].1.clone())];
        let f = failed(&verify_session(&s, &sig, &key, &swapped));
        assert!(f.iter().any(|x| x.contains("recording r1: its manifest is of recording r2")), "{f:?}");
        let mut replaced = recs.clone();
        let mut m: Manifest = serde_json::from_slice(&recs[1].1).unwrap();
        m.sha256 = "ff".into();
        replaced[1].1 = serde_json::to_vec(&m).unwrap();
        assert!(failed(&verify_session(&s, &sig, &key, &replaced)).iter().any(|x| x.contains("(replaced)")));
        // The list itself edited (r2 dropped from it too) breaks the signature.
        let mut edited: SessionManifest = serde_json::from_slice(&s).unwrap();
        edited.recordings.pop();
        let f = failed(&verify_session(&serde_json::to_vec(&edited).unwrap(), &sig, &key, &recs[..1]));
        assert!(f.iter().any(|x| x.contains("signature does not verify")), "{f:?}");
        let (_, _, other, _) = session(9);
        let f = failed(&verify_session(&s, &sig, &other, &recs));
        assert!(f.iter().any(|x| x.contains("foreign key")), "{f:?}");
        assert!(!failed(&verify_session(b"{", &sig, &key, &recs)).is_empty());
    }
}
