//! Recordings encrypted from the first byte. A recording file is one plaintext JSON line naming
//! the format, the key-encryption key and the wrapped data key, then records
//! `[u32 length][24-byte nonce][ciphertext + tag]`, each sealing whole lines of the cast with
//! XChaCha20-Poly1305 under the recording's own data key. A crash leaves every whole record
//! readable; what follows the last whole record is cut. Old recordings keep the key id they
//! were written under, so rotating the key-encryption key re-encrypts nothing.

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const FORMAT: &str = "witness-enc/1";
const NONCE: usize = 24;
/// Largest record accepted when reading (a write is at most a few hundred KiB).
const MAX_RECORD: usize = 64 * 1024 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AtRestError {
    #[error("not an encrypted recording (no witness-enc header)")]
    NotEncrypted,
    #[error("the data key cannot be unwrapped with key {key_id}: wrong key or damaged header")]
    Unwrap { key_id: String },
    #[error("record {index} at byte {offset} fails authentication: the file was changed")]
    Tampered { index: u64, offset: u64 },
}

/// The plaintext first line of an encrypted recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub recording_id: String,
    pub key_id: String,
    /// Nonce ‖ XChaCha20-Poly1305(KEK, data key), base64.
    pub wrapped_key: String,
}

impl Header {
    pub fn line(&self) -> Vec<u8> {
        let mut l = serde_json::to_vec(self).expect("a header serializes");
        l.push(b'\n');
        l
    }

    /// Reads the header line; returns it and where the records start.
    pub fn parse(file: &[u8]) -> Option<(Header, usize)> {
        let end = file.iter().position(|b| *b == b'\n')?;
        let h: Header = serde_json::from_slice(&file[..end]).ok()?;
        (h.format == FORMAT).then_some((h, end + 1))
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Wraps a data key under a key-encryption key. `nonce` must be fresh (random).
pub fn wrap(kek: &[u8; 32], dek: &[u8; 32], nonce: [u8; NONCE]) -> String {
    let c = XChaCha20Poly1305::new(kek.into());
    let mut out = nonce.to_vec();
    out.extend(c.encrypt(XNonce::from_slice(&nonce), dek.as_slice()).expect("encryption of 32 bytes cannot fail"));
    b64().encode(out)
}

pub fn unwrap(kek: &[u8; 32], header: &Header) -> Result<[u8; 32], AtRestError> {
    let err = || AtRestError::Unwrap { key_id: header.key_id.clone() };
    let raw = b64().decode(&header.wrapped_key).map_err(|_| err())?;
    if raw.len() < NONCE {
        return Err(err());
    }
    let c = XChaCha20Poly1305::new(kek.into());
    let dek = c.decrypt(XNonce::from_slice(&raw[..NONCE]), &raw[NONCE..]).map_err(|_| err())?;
    dek.try_into().map_err(|_| err())
}

/// Seals records for one recording: nonces are a random prefix and a counter, never reused.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    prefix: [u8; 16],
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    pub fn new(dek: &[u8; 32], prefix: [u8; 16]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(dek.into()), prefix, counter: 0 }
    }

    /// One record sealing `plaintext`, framing included.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        nonce[..16].copy_from_slice(&self.prefix);
        nonce[16..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        // One buffer, encrypted in place: this runs on every write of a recording.
        let mut out = Vec::with_capacity(4 + NONCE + plaintext.len() + 16);
        out.extend_from_slice(&((NONCE + plaintext.len() + 16) as u32).to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(XNonce::from_slice(&nonce), b"", &mut out[4 + NONCE..])
            .expect("encryption cannot fail");
        out.extend_from_slice(&tag);
        out
    }
}

/// Length of the longest prefix of `file` made of the header and whole records (no key needed).
pub fn whole_len(file: &[u8]) -> Option<usize> {
    let (_, mut at) = Header::parse(file)?;
    while let Some(len) = file.get(at..at + 4) {
        let n = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        if !(NONCE + 16..=MAX_RECORD).contains(&n) || at + 4 + n > file.len() {
            break;
        }
        at += 4 + n;
    }
    Some(at)
}

/// Decrypts every whole record. `strict`: a record that fails authentication is an error
/// (tampering); otherwise it ends the readable part, as garbage after a power cut does.
pub fn open(file: &[u8], dek: &[u8; 32], strict: bool) -> Result<(Vec<u8>, usize), AtRestError> {
    let (_, mut at) = Header::parse(file).ok_or(AtRestError::NotEncrypted)?;
    let end = whole_len(file).unwrap_or(at);
    let c = XChaCha20Poly1305::new(dek.into());
    let mut plain = Vec::new();
    let mut index = 0u64;
    while at < end {
        let n = u32::from_be_bytes(file[at..at + 4].try_into().expect("four bytes")) as usize;
        let rec = &file[at + 4..at + 4 + n];
        match c.decrypt(XNonce::from_slice(&rec[..NONCE]), &rec[NONCE..]) {
            Ok(p) => plain.extend_from_slice(&p),
            Err(_) if strict => return Err(AtRestError::Tampered { index, offset: at as u64 }),
            Err(_) => return Ok((plain, at)),
        }
        at += 4 + n;
        index += 1;
    }
    if strict && end < file.len() {
        return Err(AtRestError::Tampered { index, offset: end as u64 });
    }
    Ok((plain, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dek: &[u8; 32], kek: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
        let h = Header {
            format: FORMAT.into(),
            recording_id: "r".into(),
            key_id: "k1".into(),
            wrapped_key: wrap(kek, dek, [3; 24]),
        };
        let mut f = h.line();
        let mut s = Sealer::new(dek, [9; 16]);
        for p in parts {
            f.extend(s.seal(p));
        }
        f
    }

    #[test]
    fn round_trip_crash_cut_and_tampering() {
        let (dek, kek) = ([1u8; 32], [2u8; 32]);
        let f = file(&dek, &kek, &[b"{\"version\":2}\n", b"[0.1, \"o\", \"secret-word\"]\n"]);
        assert!(!f.windows(11).any(|w| w == b"secret-word"), "no plaintext at rest");
        let (h, _) = Header::parse(&f).unwrap();
        assert_eq!(unwrap(&kek, &h).unwrap(), dek);
        assert_eq!(unwrap(&[5u8; 32], &h), Err(AtRestError::Unwrap { key_id: "k1".into() }));
        let (plain, n) = open(&f, &dek, true).unwrap();
        assert_eq!((plain.as_slice(), n), (b"{\"version\":2}\n[0.1, \"o\", \"secret-word\"]\n".as_slice(), f.len()));
        // A crash mid-record: the whole records stay readable.
        let cut = &f[..f.len() - 5];
        assert!(whole_len(cut).unwrap() < cut.len());
        let (plain, n) = open(cut, &dek, false).unwrap();
        assert_eq!(plain, b"{\"version\":2}\n");
        assert!(n < cut.len());
        // A flipped byte inside a record is tampering.
        let mut bad = f.clone();
        let last = bad.len() - 3;
        bad[last] ^= 1;
        assert!(matches!(open(&bad, &dek, true), Err(AtRestError::Tampered { index: 1, .. })));
        assert_eq!(open(b"plain text\n", &dek, true), Err(AtRestError::NotEncrypted));
    }
}
