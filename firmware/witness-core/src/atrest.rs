//! Recordings encrypted from the first byte. A recording file is one plaintext JSON line naming
//! the format, the cipher, the key-encryption key and the wrapped data key, then records
//! `[u32 length][24-byte nonce][ciphertext + tag]`, each sealing whole lines of the cast (or
//! whole fragments of a video) under the recording's own data key. A crash leaves every whole
//! record readable; what follows the last whole record is cut. Old recordings keep the key id
//! they were written under, so rotating the key-encryption key re-encrypts nothing.
//!
//! Two ciphers, chosen per recording when it starts ([`Cipher::preferred`]): AES-256-GCM where
//! the CPU has AES instructions (x86-64 AES-NI + PCLMULQDQ, ARMv8 AES + PMULL), otherwise
//! XChaCha20-Poly1305, which is fast everywhere in software (a Raspberry Pi 4 has no AES
//! instructions). Both are nonce-prefix constructions over the same record layout: the nonce is
//! `prefix16 ‖ counter8`, the prefix fixed per writer, and the record key is derived once per
//! prefix. XChaCha20-Poly1305 (format `witness-enc/1`): the key is HChaCha20(data key, prefix16)
//! and the record is ChaCha20-Poly1305 (RFC 8439) with nonce `0u32 ‖ counter8`, byte for byte the
//! XChaCha20-Poly1305 construction (tested against RustCrypto's). AES-256-GCM (format
//! `witness-enc/2`, the header names the cipher): the key is HMAC-SHA256(data key, label ‖
//! prefix16) and the nonce `0u32 ‖ counter8`, so a 96-bit GCM nonce never repeats under one key.
//!
//! Records bound to their place (format `witness-enc/3`, written from this release on, either
//! cipher, named in the header): each record's associated data is `witness-enc/3 ‖
//! u32be(len(recording id)) ‖ recording id ‖ counter8`, and [`open`] requires the counters to run
//! 0, 1, 2… in file order. Without the keys, removing, repeating or reordering whole records (or
//! moving them to another recording, or relabelling the header's format or id) fails, naming the
//! record. Files in the first two formats keep opening byte for byte as before (empty associated
//! data, no order check).

use base64::Engine;
use chacha20::cipher::consts::U10;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// XChaCha20-Poly1305 records; the header has no `cipher` field.
pub const FORMAT: &str = "witness-enc/1";
/// The header names its cipher.
pub const FORMAT_2: &str = "witness-enc/2";
/// The header names its cipher; records are bound to the recording and their place.
pub const FORMAT_3: &str = "witness-enc/3";
/// Domain separation of the AES-256-GCM record key.
const AES_LABEL: &[u8] = b"witness-enc/2 aes-256-gcm record key";
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
    #[error(
        "record {index} at byte {offset} is out of place (it was sealed as record {counter}): records were removed, repeated or reordered"
    )]
    OutOfPlace { index: u64, offset: u64, counter: u64 },
}

/// The AEAD that seals a recording's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cipher {
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

impl Cipher {
    /// AES-256-GCM where this CPU has AES instructions (several GiB/s), XChaCha20-Poly1305
    /// elsewhere (AES in software is slow and not constant-time).
    pub fn preferred() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq") {
            return Self::Aes256Gcm;
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("aes") {
            return Self::Aes256Gcm;
        }
        Self::XChaCha20Poly1305
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::XChaCha20Poly1305 => "xchacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// The plaintext first line of an encrypted recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub recording_id: String,
    pub key_id: String,
    /// Nonce ‖ XChaCha20-Poly1305(KEK, data key), base64.
    pub wrapped_key: String,
    /// Present from `witness-enc/2` on; absent means XChaCha20-Poly1305.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<Cipher>,
}

impl Header {
    /// The header of a new recording sealed with `cipher`: `witness-enc/3`, records bound to
    /// their place.
    pub fn new(cipher: Cipher, recording_id: &str, key_id: &str, wrapped_key: String) -> Self {
        Self {
            format: FORMAT_3.into(),
            recording_id: recording_id.into(),
            key_id: key_id.into(),
            wrapped_key,
            cipher: Some(cipher),
        }
    }

    /// The header earlier releases wrote for `cipher` (`witness-enc/1` for XChaCha20-Poly1305,
    /// `witness-enc/2` for AES-256-GCM), for checking that their recordings still open.
    pub fn legacy(cipher: Cipher, recording_id: &str, key_id: &str, wrapped_key: String) -> Self {
        let (format, cipher) = match cipher {
            Cipher::XChaCha20Poly1305 => (FORMAT, None),
            Cipher::Aes256Gcm => (FORMAT_2, Some(cipher)),
        };
        Self { format: format.into(), recording_id: recording_id.into(), key_id: key_id.into(), wrapped_key, cipher }
    }

    /// The cipher the records are sealed with.
    pub fn cipher(&self) -> Cipher {
        self.cipher.unwrap_or(Cipher::XChaCha20Poly1305)
    }

    /// Whether records carry their recording and counter as associated data (`witness-enc/3`).
    pub fn binds_place(&self) -> bool {
        self.format == FORMAT_3
    }

    /// A `witness-enc/3` record's associated data for counter 0; [`set_counter`] moves it on.
    fn place_aad(&self) -> Vec<u8> {
        let id = self.recording_id.as_bytes();
        let mut aad = Vec::with_capacity(FORMAT_3.len() + 4 + id.len() + 8);
        aad.extend_from_slice(FORMAT_3.as_bytes());
        aad.extend_from_slice(&(id.len() as u32).to_be_bytes());
        aad.extend_from_slice(id);
        aad.extend_from_slice(&0u64.to_le_bytes());
        aad
    }

    pub fn line(&self) -> Vec<u8> {
        let mut l = serde_json::to_vec(self).expect("a header serializes");
        l.push(b'\n');
        l
    }

    /// Reads the header line; returns it and where the records start.
    pub fn parse(file: &[u8]) -> Option<(Header, usize)> {
        let end = file.iter().position(|b| *b == b'\n')?;
        let h: Header = serde_json::from_slice(&file[..end]).ok()?;
        let known = match h.cipher {
            None => h.format == FORMAT,
            Some(_) => h.format == FORMAT_2 || h.format == FORMAT_3,
        };
        known.then_some((h, end + 1))
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

/// The record key for every nonce that starts with `prefix`. XChaCha20-Poly1305: ChaCha20-Poly1305
/// under HChaCha20(`key`, `prefix`). AES-256-GCM: under HMAC-SHA256(`key`, label ‖ `prefix`).
fn subkey(cipher: Cipher, key: &[u8; 32], prefix: &[u8; 16]) -> LessSafeKey {
    let (algorithm, k): (_, [u8; 32]) = match cipher {
        // HChaCha20 runs ChaCha20's 20 rounds as 10 double rounds.
        Cipher::XChaCha20Poly1305 => (&CHACHA20_POLY1305, chacha20::hchacha::<U10>(key.into(), prefix.into()).into()),
        Cipher::Aes256Gcm => {
            let mut ctx = ring::hmac::Context::with_key(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key));
            ctx.update(AES_LABEL);
            ctx.update(prefix);
            (&AES_256_GCM, ctx.sign().as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"))
        }
    };
    LessSafeKey::new(UnboundKey::new(algorithm, &k).expect("a 32-byte key"))
}

/// The record key's 96-bit nonce for the counter (the last 8 bytes of a record's nonce).
fn inner_nonce(tail: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(tail);
    Nonce::assume_unique_for_key(n)
}

/// Puts `counter` into the last 8 bytes of a record's associated data (empty: no place bound).
fn set_counter(aad: &mut [u8], counter: &[u8; 8]) {
    if let Some(at) = aad.len().checked_sub(8) {
        aad[at..].copy_from_slice(counter);
    }
}

/// Bytes a record has before its ciphertext: the length and the nonce.
pub const RECORD_HEAD: usize = 4 + NONCE;

/// Seals records for one recording: nonces are a random prefix and a counter, never reused.
pub struct Sealer {
    key: LessSafeKey,
    prefix: [u8; 16],
    counter: u64,
    /// The associated data of the next record (`witness-enc/3`), empty for the older formats.
    aad: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// Seals the records of the recording `header` starts, in its format.
    pub fn new(header: &Header, dek: &[u8; 32], prefix: [u8; 16]) -> Self {
        let aad = if header.binds_place() { header.place_aad() } else { Vec::new() };
        Self { key: subkey(header.cipher(), dek, &prefix), prefix, counter: 0, aad }
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
        set_counter(&mut self.aad, &counter);
        let tag = self
            .key
            .seal_in_place_separate_tag(inner_nonce(&counter), Aad::from(self.aad.as_slice()), &mut buf[RECORD_HEAD..])
            .expect("a record is far below the AEAD's length limit");
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

/// Whether `rest`, what follows a file's whole records, is one record cut short (its length
/// runs past the end, or is itself cut): no whole record, so nothing that could authenticate.
pub fn is_torn(rest: &[u8]) -> bool {
    match rest.get(..4) {
        None => true,
        Some(len) => {
            let n = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
            (NONCE + 16..=MAX_RECORD).contains(&n) && 4 + n > rest.len()
        }
    }
}

/// Decrypts every whole record. `strict`: a record that fails authentication (or, in
/// `witness-enc/3`, is out of place) is an error (tampering); otherwise it ends the readable
/// part, as garbage after a power cut does, and the returned length is where it starts.
pub fn open(file: &[u8], dek: &[u8; 32], strict: bool) -> Result<(Vec<u8>, usize), AtRestError> {
    let (header, mut at) = Header::parse(file).ok_or(AtRestError::NotEncrypted)?;
    let cipher = header.cipher();
    let placed = header.binds_place();
    let mut aad = if placed { header.place_aad() } else { Vec::new() };
    let end = whole_len(file).unwrap_or(at);
    // Every record of a recording shares one nonce prefix: its subkey is derived once.
    let mut key: Option<([u8; 16], LessSafeKey)> = None;
    let mut plain = Vec::with_capacity(end - at);
    let mut index = 0u64;
    while at < end {
        let n = u32::from_be_bytes(file[at..at + 4].try_into().expect("four bytes")) as usize;
        let rec = &file[at + 4..at + 4 + n];
        let prefix: [u8; 16] = rec[..16].try_into().expect("sixteen bytes");
        let counter: [u8; 8] = rec[16..NONCE].try_into().expect("eight bytes");
        if placed && u64::from_le_bytes(counter) != index {
            if strict {
                return Err(AtRestError::OutOfPlace { index, offset: at as u64, counter: u64::from_le_bytes(counter) });
            }
            return Ok((plain, at));
        }
        set_counter(&mut aad, &counter);
        if key.as_ref().is_none_or(|(p, _)| *p != prefix) {
            key = Some((prefix, subkey(cipher, dek, &prefix)));
        }
        let (_, k) = key.as_ref().expect("set above");
        let start = plain.len();
        plain.extend_from_slice(&rec[NONCE..]);
        match k.open_in_place(inner_nonce(&counter), Aad::from(aad.as_slice()), &mut plain[start..]) {
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

/// The length field of a record (its first four bytes): how many bytes follow it, when that is
/// a plausible record.
pub fn record_len(field: [u8; 4]) -> Option<usize> {
    let n = u32::from_be_bytes(field) as usize;
    (NONCE + 16..=MAX_RECORD).contains(&n).then_some(n)
}

/// Plaintext bytes of a record with `len` bytes after its length field.
pub fn record_plain_len(len: usize) -> usize {
    len.saturating_sub(NONCE + 16)
}

/// Opens single records, each as strictly as [`open`] does (it must authenticate and, in
/// `witness-enc/3`, be sealed for the place it is at), so part of a recording can be served
/// without decrypting the rest. What it cannot see is the file around them: that no record is
/// missing at the end is for the caller (the file's sha256, or reading up to its end).
pub struct RecordOpener {
    cipher: Cipher,
    placed: bool,
    aad: Vec<u8>,
    dek: [u8; 32],
    key: Option<([u8; 16], LessSafeKey)>,
}

impl RecordOpener {
    pub fn new(header: &Header, dek: &[u8; 32]) -> Self {
        let placed = header.binds_place();
        Self {
            cipher: header.cipher(),
            placed,
            aad: if placed { header.place_aad() } else { Vec::new() },
            dek: *dek,
            key: None,
        }
    }

    /// The plaintext of the record at `index` (0: the first after the header), which starts at
    /// byte `offset` of the file; `record` is what follows its length field.
    pub fn open(&mut self, index: u64, offset: u64, record: &[u8]) -> Result<Vec<u8>, AtRestError> {
        if record.len() < NONCE + 16 {
            return Err(AtRestError::Tampered { index, offset });
        }
        let prefix: [u8; 16] = record[..16].try_into().expect("sixteen bytes");
        let counter: [u8; 8] = record[16..NONCE].try_into().expect("eight bytes");
        if self.placed && u64::from_le_bytes(counter) != index {
            return Err(AtRestError::OutOfPlace { index, offset, counter: u64::from_le_bytes(counter) });
        }
        set_counter(&mut self.aad, &counter);
        if self.key.as_ref().is_none_or(|(p, _)| *p != prefix) {
            self.key = Some((prefix, subkey(self.cipher, &self.dek, &prefix)));
        }
        let (_, k) = self.key.as_ref().expect("set above");
        let mut plain = record[NONCE..].to_vec();
        let len = k
            .open_in_place(inner_nonce(&counter), Aad::from(self.aad.as_slice()), &mut plain)
            .map_err(|_| AtRestError::Tampered { index, offset })?
            .len();
        plain.truncate(len);
        Ok(plain)
    }
}

impl Drop for RecordOpener {
    fn drop(&mut self) {
        self.dek = [0; 32];
    }
}

/// Reads until `buf` is full or the source ends; how much was read. Record fields are read
/// with it: a short read is a cut recording, not an error of its own.
pub fn read_full<R: std::io::Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// How a recording is encrypted at rest: its header line (with the wrapped data key), the data
/// key itself (kept only in memory while recording) and a fresh nonce prefix.
pub struct Encryption {
    pub header: Header,
    pub dek: [u8; 32],
    pub nonce_prefix: [u8; 16],
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Encryption(key {})", self.header.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record by record, in any order, each opens to what [`open`] gives for it; out of place or
    /// changed, it is refused as [`open`] refuses it.
    #[test]
    fn single_records_open_as_the_whole_file_does() {
        for cipher in CIPHERS {
            let (dek, kek) = ([1u8; 32], [2u8; 32]);
            let parts: [&[u8]; 3] = [b"{\"version\":2}\n", b"[0.1, \"o\", \"a\"]\n", b"[0.2, \"o\", \"bb\"]\n"];
            let f = file(cipher, &dek, &kek, &parts);
            let (h, mut at) = Header::parse(&f).unwrap();
            let mut spans = Vec::new();
            while at < f.len() {
                let n = record_len(f[at..at + 4].try_into().unwrap()).unwrap();
                spans.push((at, &f[at + 4..at + 4 + n]));
                at += 4 + n;
            }
            assert_eq!(spans.len(), 3);
            let mut o = RecordOpener::new(&h, &dek);
            for i in [2, 0, 1] {
                let (offset, rec) = spans[i];
                assert_eq!(record_plain_len(rec.len()), parts[i].len());
                assert_eq!(o.open(i as u64, offset as u64, rec).unwrap(), parts[i], "{cipher:?} {i}");
            }
            assert!(matches!(o.open(1, 0, spans[2].1), Err(AtRestError::OutOfPlace { index: 1, counter: 2, .. })));
            let mut bad = spans[1].1.to_vec();
            *bad.last_mut().unwrap() ^= 1;
            assert!(matches!(o.open(1, 7, &bad), Err(AtRestError::Tampered { index: 1, offset: 7 })));
            assert!(matches!(o.open(0, 0, &[0; 8]), Err(AtRestError::Tampered { .. })));
            assert_eq!(record_len([0, 0, 0, 3]), None);
            assert_eq!(record_len(((NONCE + 16) as u32).to_be_bytes()), Some(NONCE + 16));
        }
    }

    const CIPHERS: [Cipher; 2] = [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm];

    fn file(cipher: Cipher, dek: &[u8; 32], kek: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
        let h = Header::new(cipher, "r", "k1", wrap(kek, dek, [3; 24]));
        let mut f = h.line();
        let mut s = Sealer::new(&h, dek, [9; 16]);
        for p in parts {
            f.extend(s.seal(p));
        }
        f
    }

    #[test]
    fn round_trip_crash_cut_and_tampering() {
        for cipher in CIPHERS {
            let (dek, kek) = ([1u8; 32], [2u8; 32]);
            let f = file(cipher, &dek, &kek, &[b"{\"version\":2}\n", b"[0.1, \"o\", \"secret-word\"]\n"]);
            assert!(!f.windows(11).any(|w| w == b"secret-word"), "no plaintext at rest");
            let (h, _) = Header::parse(&f).unwrap();
            assert_eq!(h.cipher(), cipher);
            assert_eq!(unwrap(&kek, &h).unwrap(), dek);
            assert_eq!(unwrap(&[5u8; 32], &h), Err(AtRestError::Unwrap { key_id: "k1".into() }));
            let (plain, n) = open(&f, &dek, true).unwrap();
            let all = b"{\"version\":2}\n[0.1, \"o\", \"secret-word\"]\n";
            assert_eq!((plain.as_slice(), n), (all.as_slice(), f.len()), "{cipher:?}");
            // A crash mid-record: the whole records stay readable.
            let cut = &f[..f.len() - 5];
            assert!(whole_len(cut).unwrap() < cut.len());
            let (plain, n) = open(cut, &dek, false).unwrap();
            assert_eq!(plain, b"{\"version\":2}\n");
            assert!(n < cut.len());
            assert!(is_torn(&cut[n..]) && is_torn(&cut[cut.len() - 2..]), "a cut last record is torn");
            assert!(!is_torn(&f[n..]), "a whole record is not");
            // A flipped byte inside a record is tampering.
            let mut bad = f.clone();
            let last = bad.len() - 3;
            bad[last] ^= 1;
            assert!(matches!(open(&bad, &dek, true), Err(AtRestError::Tampered { index: 1, .. })));
            assert_eq!(open(b"plain text\n", &dek, true), Err(AtRestError::NotEncrypted));
        }
    }

    #[test]
    fn the_header_names_the_cipher_and_the_first_format_stays_as_it_was() {
        let x = Header::legacy(Cipher::XChaCha20Poly1305, "r", "k", "w".into());
        assert_eq!(
            String::from_utf8(x.line()).unwrap(),
            "{\"format\":\"witness-enc/1\",\"recording_id\":\"r\",\"key_id\":\"k\",\"wrapped_key\":\"w\"}\n"
        );
        let a = Header::legacy(Cipher::Aes256Gcm, "r", "k", "w".into());
        let line = String::from_utf8(a.line()).unwrap();
        assert!(line.contains("\"format\":\"witness-enc/2\"") && line.contains("\"cipher\":\"aes-256-gcm\""), "{line}");
        assert_eq!(Header::parse(line.as_bytes()).unwrap().0.cipher(), Cipher::Aes256Gcm);
        // New recordings: format 3 with the cipher named, for either cipher.
        for cipher in CIPHERS {
            let line = String::from_utf8(Header::new(cipher, "r", "k", "w".into()).line()).unwrap();
            let (h, _) = Header::parse(line.as_bytes()).unwrap();
            assert!(line.contains("\"format\":\"witness-enc/3\"") && h.binds_place(), "{line}");
            assert_eq!(h.cipher(), cipher);
        }
        assert!(
            Header::parse(
                b"{\"format\":\"witness-enc/3\",\"recording_id\":\"r\",\"key_id\":\"k\",\"wrapped_key\":\"w\"}\n"
            )
            .is_none(),
            "format 3 names its cipher"
        );
        // A format that does not match its cipher field is not ours.
        for bad in [
            "{\"format\":\"witness-enc/1\",\"recording_id\":\"r\",\"key_id\":\"k\",\"wrapped_key\":\"w\",\"cipher\":\"aes-256-gcm\"}\n",
            "{\"format\":\"witness-enc/2\",\"recording_id\":\"r\",\"key_id\":\"k\",\"wrapped_key\":\"w\"}\n",
            "{\"format\":\"witness-enc/2\",\"recording_id\":\"r\",\"key_id\":\"k\",\"wrapped_key\":\"w\",\"cipher\":\"rot13\"}\n",
        ] {
            assert!(Header::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    /// One AES-256-GCM record as RustCrypto seals it, with the record key derived by RustCrypto's
    /// HMAC: the construction written down in the module's documentation.
    fn aes_reference_record(dek: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
        use aes_gcm::aead::{Aead as _, KeyInit as _};
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(dek).unwrap();
        mac.update(AES_LABEL);
        mac.update(&nonce[..16]);
        let key = mac.finalize().into_bytes();
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..]);
        framed(nonce, aes_gcm::Aes256Gcm::new(&key).encrypt(aes_gcm::Nonce::from_slice(&n), plaintext).unwrap())
    }

    /// A record as the format frames it: length, nonce, ciphertext and tag.
    fn framed(nonce: &[u8; 24], ciphertext: Vec<u8>) -> Vec<u8> {
        let mut r = ((NONCE + ciphertext.len()) as u32).to_be_bytes().to_vec();
        r.extend_from_slice(nonce);
        r.extend(ciphertext);
        r
    }

    /// The 24-byte nonce of record `counter` under `prefix`.
    fn nonce_of(prefix: &[u8; 16], counter: u64) -> [u8; 24] {
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(prefix);
        nonce[16..].copy_from_slice(&counter.to_le_bytes());
        nonce
    }

    #[test]
    fn aes_records_are_the_documented_construction() {
        let dek: [u8; 32] = std::array::from_fn(|i| (i * 5 + 3) as u8);
        let prefix: [u8; 16] = std::array::from_fn(|i| (90 + i * 7) as u8);
        let h = Header::legacy(Cipher::Aes256Gcm, "r", "k", wrap(&[8; 32], &dek, [1; 24]));
        let mut s = Sealer::new(&h, &dek, prefix);
        let (mut f, mut plain) = (h.line(), Vec::new());
        for (counter, size) in [0usize, 1, 16, 17, 1000, 32 * 1024 + 5, 300_000].into_iter().enumerate() {
            let plaintext: Vec<u8> = (0..size).map(|i| (i * 13 + counter) as u8).collect();
            let r = aes_reference_record(&dek, &nonce_of(&prefix, counter as u64), &plaintext);
            assert_eq!(s.seal(&plaintext), r, "record {counter} of {size} bytes");
            f.extend(r);
            plain.extend(plaintext);
        }
        // Another writer of the same recording (another prefix) opens too.
        f.extend(aes_reference_record(&dek, &[6; 24], b"other prefix"));
        plain.extend_from_slice(b"other prefix");
        assert_eq!(open(&f, &dek, true).unwrap(), (plain, f.len()));
        // The same bytes read as XChaCha20-Poly1305 records fail: the header decides.
        let as_chacha = {
            let mut g = Header::legacy(Cipher::XChaCha20Poly1305, "r", "k", "w".into()).line();
            g.extend_from_slice(&f[h.line().len()..]);
            g
        };
        assert!(matches!(open(&as_chacha, &dek, true), Err(AtRestError::Tampered { index: 0, .. })));
    }

    /// What RustCrypto's XChaCha20-Poly1305 makes of one record: the construction the format
    /// was first written with, so files from before the subkey path still open.
    fn reference_record(dek: &[u8; 32], nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
        framed(nonce, XChaCha20Poly1305::new(dek.into()).encrypt(XNonce::from_slice(nonce), plaintext).unwrap())
    }

    #[test]
    fn records_are_byte_identical_to_xchacha20_poly1305() {
        let dek: [u8; 32] = std::array::from_fn(|i| (i * 7 + 1) as u8);
        let prefix: [u8; 16] = std::array::from_fn(|i| (200 - i * 3) as u8);
        let h = Header::legacy(Cipher::XChaCha20Poly1305, "r", "k", wrap(&[8; 32], &dek, [1; 24]));
        let mut s = Sealer::new(&h, &dek, prefix);
        let mut reference = Vec::new();
        let mut sealed = Vec::new();
        for (counter, size) in
            [0usize, 1, 15, 16, 63, 64, 65, 255, 256, 1000, 4096, 32 * 1024 + 17, 300_000].into_iter().enumerate()
        {
            let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 + counter) as u8).collect();
            let r = reference_record(&dek, &nonce_of(&prefix, counter as u64), &plaintext);
            assert_eq!(s.seal(&plaintext), r, "record {counter} of {size} bytes");
            reference.extend(r);
            sealed.extend(plaintext);
        }
        // Far counters (every byte of the counter in use) and the in-place path.
        s.counter = u64::MAX - 1;
        let mut buf = vec![0u8; RECORD_HEAD];
        buf.extend_from_slice(b"[1.0, \"o\", \"late\"]\n");
        s.seal_in_place(&mut buf);
        assert_eq!(buf, reference_record(&dek, &nonce_of(&prefix, u64::MAX - 1), b"[1.0, \"o\", \"late\"]\n"));
        // A file sealed by RustCrypto opens, including records under another prefix.
        let mut f = h.line();
        f.extend(&reference);
        f.extend(reference_record(&dek, &[5; 24], b"other prefix"));
        sealed.extend_from_slice(b"other prefix");
        assert_eq!(open(&f, &dek, true).unwrap(), (sealed, f.len()));
    }

    /// The byte ranges of a file's records.
    fn records(f: &[u8]) -> Vec<std::ops::Range<usize>> {
        let (_, mut at) = Header::parse(f).unwrap();
        let mut out = Vec::new();
        while at < f.len() {
            let n = u32::from_be_bytes(f[at..at + 4].try_into().unwrap()) as usize;
            out.push(at..at + 4 + n);
            at += 4 + n;
        }
        out
    }

    /// The file `f` with its records in the order `order` names (indexes into its records).
    fn reordered(f: &[u8], order: &[usize]) -> Vec<u8> {
        let r = records(f);
        let mut out = f[..r[0].start].to_vec();
        for i in order {
            out.extend_from_slice(&f[r[*i].clone()]);
        }
        out
    }

    #[test]
    fn records_are_bound_to_their_recording_and_their_place() {
        let parts: [&[u8]; 4] = [
            b"{\"version\":2}\n",
            b"[0.1, \"o\", \"one\"]\n",
            b"[0.2, \"o\", \"two\"]\n",
            b"[0.3, \"o\", \"three\"]\n",
        ];
        for cipher in CIPHERS {
            let (dek, kek) = ([1u8; 32], [2u8; 32]);
            let f = file(cipher, &dek, &kek, &parts);
            let r = records(&f);
            assert_eq!(r.len(), 4);
            assert_eq!(open(&f, &dek, true).unwrap().0, parts.concat());
            let out_of_place = |g: &[u8]| open(g, &dek, true).unwrap_err();
            // A middle record removed: the next one is out of place, and named.
            let removed = reordered(&f, &[0, 2, 3]);
            assert_eq!(
                out_of_place(&removed),
                AtRestError::OutOfPlace { index: 1, offset: r[1].start as u64, counter: 2 }
            );
            assert_eq!(open(&removed, &dek, false).unwrap(), (parts[0].to_vec(), r[1].start), "{cipher:?}");
            // Two swapped.
            let swapped = reordered(&f, &[0, 2, 1, 3]);
            assert_eq!(
                out_of_place(&swapped),
                AtRestError::OutOfPlace { index: 1, offset: r[1].start as u64, counter: 2 }
            );
            // One repeated.
            let repeated = reordered(&f, &[0, 1, 1, 2, 3]);
            assert_eq!(
                out_of_place(&repeated),
                AtRestError::OutOfPlace { index: 2, offset: r[2].start as u64, counter: 1 }
            );
            // The removal hidden by rewriting the next record's counter: it no longer authenticates.
            let mut relabelled = removed.clone();
            relabelled[r[1].start + 20..r[1].start + 28].copy_from_slice(&1u64.to_le_bytes());
            assert_eq!(out_of_place(&relabelled), AtRestError::Tampered { index: 1, offset: r[1].start as u64 });
            // One flipped byte: that record is named, the ones before it stay readable.
            let mut flipped = f.clone();
            flipped[r[2].start + 30] ^= 1;
            assert_eq!(out_of_place(&flipped), AtRestError::Tampered { index: 2, offset: r[2].start as u64 });
            assert_eq!(open(&flipped, &dek, false).unwrap(), (parts[..2].concat(), r[2].start));
            // The header relabelled: another recording id, or an older format without the binding.
            let body = &f[r[0].start..];
            for other in [
                Header::new(cipher, "r2", "k1", wrap(&kek, &dek, [3; 24])),
                Header::legacy(cipher, "r", "k1", wrap(&kek, &dek, [3; 24])),
            ] {
                let mut g = other.line();
                g.extend_from_slice(body);
                assert!(matches!(out_of_place(&g), AtRestError::Tampered { index: 0, .. }), "{other:?}");
            }
            // A record of another recording under the same data key, at the same place.
            let mut spliced = f[..r[1].start].to_vec();
            let h2 = Header::new(cipher, "other", "k1", wrap(&kek, &dek, [3; 24]));
            let mut s2 = Sealer::new(&h2, &dek, [9; 16]);
            s2.seal(parts[0]);
            spliced.extend(s2.seal(b"[0.1, \"o\", \"foreign\"]\n"));
            assert_eq!(out_of_place(&spliced), AtRestError::Tampered { index: 1, offset: r[1].start as u64 });
        }
    }

    #[test]
    fn files_in_the_older_formats_still_open() {
        for cipher in CIPHERS {
            let dek = [4u8; 32];
            let h = Header::legacy(cipher, "r", "k", wrap(&[5; 32], &dek, [6; 24]));
            let mut s = Sealer::new(&h, &dek, [7; 16]);
            let mut f = h.line();
            f.extend(s.seal(b"one\n"));
            f.extend(s.seal(b"two\n"));
            assert!(!Header::parse(&f).unwrap().0.binds_place());
            assert_eq!(open(&f, &dek, true).unwrap(), (b"one\ntwo\n".to_vec(), f.len()), "{cipher:?}");
        }
    }
}
