//! Recordings as evidence, without I/O: a recording is cut into chunks of whole lines, the
//! chunks are hash-chained, and a manifest (who, what, when, every chunk's place and hash, the
//! final hash, gaps such as an unclean stop) is signed with the box's Ed25519 key. Anyone with
//! the recording, the manifest, its signature and the box's public key can verify it offline.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Chunks close at the first line end at or past this many bytes.
pub const CHUNK_TARGET: usize = 1024 * 1024;
pub const FORMAT: &str = "witness-evidence/1";

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
    let mut chunks = Vec::new();
    let mut prev = [0u8; 32];
    let mut start = 0usize;
    while start < data.len() {
        let mut end = (start + CHUNK_TARGET).min(data.len());
        if end < data.len() {
            end = match data[end..].iter().position(|b| *b == b'\n') {
                Some(i) => end + i + 1,
                None => data.len(),
            };
        }
        prev = link(&prev, chunks.len() as u64, start as u64, &data[start..end]);
        chunks.push(ChunkRef { offset: start as u64, len: (end - start) as u64, hash: hex::encode(prev) });
        start = end;
    }
    (chunks, hex::encode(prev))
}

pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The box's signing key from its 32-byte seed.
pub fn signing_key(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

pub fn sign(key: &SigningKey, m: &Manifest) -> String {
    hex::encode(key.sign(&m.signed_bytes()).to_bytes())
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
    let key = hex::decode(public_key_hex.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let sig = hex::decode(signature_hex.trim())
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    match (key, sig) {
        (Some(key), Some(sig)) => {
            let same_key = fingerprint(&key) == manifest.key_fingerprint;
            check(
                "signing key",
                same_key,
                if same_key {
                    "manifest names this key".into()
                } else {
                    "the manifest was signed by another key (foreign key)".into()
                },
            );
            let ok = key.verify(&manifest.signed_bytes(), &sig).is_ok();
            check(
                "signature",
                ok,
                if ok {
                    "Ed25519 signature over the manifest verifies".into()
                } else {
                    "signature does not verify: the manifest was edited or signed by another key".into()
                },
            );
        }
        _ => check("signature", false, "unreadable public key or signature".into()),
    }
    // Chunks, in order, where the manifest says they are.
    let mut prev = [0u8; 32];
    let mut chunks_ok = true;
    for (i, c) in manifest.chunks.iter().enumerate() {
        let (start, end) = (c.offset as usize, (c.offset + c.len) as usize);
        let expected_start =
            if i == 0 { 0 } else { (manifest.chunks[i - 1].offset + manifest.chunks[i - 1].len) as usize };
        if start != expected_start {
            check(
                "chunks",
                false,
                format!("chunk {i} does not follow chunk {} (manifest reordered)", i.saturating_sub(1)),
            );
            chunks_ok = false;
            break;
        }
        if end > data.len() {
            check(
                "chunks",
                false,
                format!(
                    "chunk {i} (bytes {start}..{end}) is missing: the recording ends at byte {} (truncated)",
                    data.len()
                ),
            );
            chunks_ok = false;
            break;
        }
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
        let covered = manifest.chunks.last().map(|c| c.offset + c.len).unwrap_or(0);
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
        check("gap", true, format!("recorded up to chunk {}: {}", g.after_chunk, g.reason));
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
}
