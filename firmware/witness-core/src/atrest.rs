//! Recordings encrypted from the first byte. A recording file is one plaintext JSON line naming
//! the format, the key-encryption key and the wrapped data key, then records
//! `[u32 length][24-byte nonce][ciphertext + tag]`, each sealing whole lines of the cast with
//! XChaCha20-Poly1305 under the recording's own data key. A crash leaves every whole record
//! readable; what follows the last whole record is cut. Old recordings keep the key id they
//! were written under, so rotating the key-encryption key re-encrypts nothing.
//!
//! Records are sealed and opened through XChaCha20-Poly1305's definition: with nonce
//! `prefix16 ‖ counter8` it is ChaCha20-Poly1305 (RFC 8439) under the key HChaCha20(data key,
//! prefix16) with the nonce `0u32 ‖ counter8`. The prefix is fixed per recording, so the subkey
//! is derived once and every record goes through ring's assembly ChaCha20-Poly1305; the bytes
//! are exactly those of the XChaCha20-Poly1305 construction (tested against RustCrypto's).

use base64::Engine;
use chacha20::cipher::consts::U10;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
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

/// ChaCha20-Poly1305 under HChaCha20(`key`, `prefix`): the XChaCha20-Poly1305 key for every
/// nonce that starts with `prefix`.
fn subkey(key: &[u8; 32], prefix: &[u8; 16]) -> LessSafeKey {
    // HChaCha20 runs ChaCha20's 20 rounds as 10 double rounds.
    let k = chacha20::hchacha::<U10>(key.into(), prefix.into());
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &k).expect("a 32-byte key"))
}

/// The RFC 8439 nonce for the last 8 bytes of a 24-byte XChaCha20 nonce.
fn inner_nonce(tail: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(tail);
    Nonce::assume_unique_for_key(n)
}

/// Bytes a record has before its ciphertext: the length and the nonce.
pub const RECORD_HEAD: usize = 4 + NONCE;

/// Seals records for one recording: nonces are a random prefix and a counter, never reused.
pub struct Sealer {
    key: LessSafeKey,
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
        Self { key: subkey(dek, &prefix), prefix, counter: 0 }
    }

    /// One record sealing `plaintext`, framing included.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_HEAD + plaintext.len() + 16);
        out.resize(RECORD_HEAD, 0);
        out.extend_from_slice(plaintext);
        self.seal_in_place(&mut out);
        out
    }

    /// Turns `buf`, whose first [`RECORD_HEAD`] bytes are room for the framing and the rest the
    /// plaintext, into one record in place: no copy, no allocation beyond the tag's 16 bytes.
    pub fn seal_in_place(&mut self, buf: &mut Vec<u8>) {
        assert!(buf.len() >= RECORD_HEAD, "a record buffer starts with room for its head");
        let len = (buf.len() - 4 + 16) as u32;
        let counter = self.counter.to_le_bytes();
        self.counter += 1;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf[4..20].copy_from_slice(&self.prefix);
        buf[20..RECORD_HEAD].copy_from_slice(&counter);
        let tag = self
            .key
            .seal_in_place_separate_tag(inner_nonce(&counter), Aad::empty(), &mut buf[RECORD_HEAD..])
            .expect("a record is far below ChaCha20-Poly1305's length limit");
        buf.extend_from_slice(tag.as_ref());
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
    // Every record of a recording shares one nonce prefix: its subkey is derived once.
    let mut key: Option<([u8; 16], LessSafeKey)> = None;
    let mut plain = Vec::with_capacity(end - at);
    let mut index = 0u64;
    while at < end {
        let n = u32::from_be_bytes(file[at..at + 4].try_into().expect("four bytes")) as usize;
        let rec = &file[at + 4..at + 4 + n];
        let prefix: [u8; 16] = rec[..16].try_into().expect("sixteen bytes");
        if key.as_ref().is_none_or(|(p, _)| *p != prefix) {
            key = Some((prefix, subkey(dek, &prefix)));
        }
        let (_, k) = key.as_ref().expect("set above");
        let start = plain.len();
        plain.extend_from_slice(&rec[NONCE..]);
        match k.open_in_place(inner_nonce(&rec[16..NONCE]), Aad::empty(), &mut plain[start..]) {
            Ok(p) => {
                let len = p.len();
                plain.truncate(start + len);
            }
            Err(_) => {
                plain.truncate(start);
                if strict {
                    return Err(AtRestError::Tampered { index, offset: at as u64 });
                }
                return Ok((plain, at));
            }
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

    /// What RustCrypto's XChaCha20-Poly1305 makes of one record: the construction the format
    /// was first written with, so files from before the subkey path still open.
    fn reference_record(dek: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
        let ct = XChaCha20Poly1305::new(dek.into()).encrypt(XNonce::from_slice(nonce), plaintext).unwrap();
        let mut r = ((NONCE + ct.len()) as u32).to_be_bytes().to_vec();
        r.extend_from_slice(nonce);
        r.extend(ct);
        r
    }

    #[test]
    fn records_are_byte_identical_to_xchacha20_poly1305() {
        let dek: [u8; 32] = std::array::from_fn(|i| (i * 7 + 1) as u8);
        let prefix: [u8; 16] = std::array::from_fn(|i| (200 - i * 3) as u8);
        let mut s = Sealer::new(&dek, prefix);
        let mut reference = Vec::new();
        let mut sealed = Vec::new();
        for (counter, size) in
            [0usize, 1, 15, 16, 63, 64, 65, 255, 256, 1000, 4096, 32 * 1024 + 17, 300_000].into_iter().enumerate()
        {
            let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 + counter) as u8).collect();
            let mut nonce = [0u8; 24];
            nonce[..16].copy_from_slice(&prefix);
            nonce[16..].copy_from_slice(&(counter as u64).to_le_bytes());
            let r = reference_record(&dek, &nonce, &plaintext);
            assert_eq!(s.seal(&plaintext), r, "record {counter} of {size} bytes");
            reference.extend(r);
            sealed.extend(plaintext);
        }
        // Far counters (every byte of the counter in use) and the in-place path.
        s.counter = u64::MAX - 1;
        let mut buf = vec![0u8; RECORD_HEAD];
        buf.extend_from_slice(b"[1.0, \"o\", \"late\"]\n");
        s.seal_in_place(&mut buf);
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(&prefix);
        nonce[16..].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        assert_eq!(buf, reference_record(&dek, &nonce, b"[1.0, \"o\", \"late\"]\n"));
        // A file sealed by RustCrypto opens, including records under another prefix.
        let h = Header {
            format: FORMAT.into(),
            recording_id: "r".into(),
            key_id: "k".into(),
            wrapped_key: wrap(&[8; 32], &dek, [1; 24]),
        };
        let mut f = h.line();
        f.extend(&reference);
        f.extend(reference_record(&dek, &[5; 24], b"other prefix"));
        sealed.extend_from_slice(b"other prefix");
        assert_eq!(open(&f, &dek, true).unwrap(), (sealed, f.len()));
    }
}
