//! Finishing what a crash left: a recording is cut to its authentic prefix (whole records that
//! authenticate, in their place; for a cast, whole events), so it stays playable, and its size
//! and hash are taken from what is kept. Nothing is destroyed: whatever follows the prefix (a
//! torn last record, or the first record that fails and every record after it) is moved aside
//! to `NAME.quarantine` beside the recording before the file is cut, and sealing states it.

use crate::RecordError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct RecoveredCast {
    pub bytes: u64,
    pub sha256: String,
    pub duration: f64,
    pub events: usize,
    /// Bytes cut from the end (a half-written event, zeros after a power cut, or records that
    /// do not authenticate in their place), moved to `quarantine`.
    pub trimmed: u64,
    /// Where the trimmed bytes are kept.
    pub quarantine: Option<PathBuf>,
}

/// The `n`th file recovery may move the rest of `recording` to: `NAME.quarantine`, then
/// `NAME.1.quarantine`, … (a later recovery never overwrites what an earlier one kept).
fn quarantine_path(recording: &Path, n: usize) -> PathBuf {
    match n {
        0 => recording.with_extension("quarantine"),
        n => recording.with_extension(format!("{n}.quarantine")),
    }
}

/// The quarantine files beside `recording` and their sizes: what recovery moved aside.
pub fn quarantined(recording: &Path) -> Vec<(PathBuf, u64)> {
    (0..)
        .map(|n| quarantine_path(recording, n))
        .map_while(|q| std::fs::metadata(&q).ok().map(|m| (q, m.len())))
        .collect()
}

/// Keeps `rest` (durably) in a quarantine file beside `recording`; a file already holding
/// exactly `rest` (a recovery cut short before it trimmed) is reused.
fn move_aside(recording: &Path, rest: &[u8]) -> std::io::Result<PathBuf> {
    for n in 0.. {
        let q = quarantine_path(recording, n);
        match std::fs::read(&q) {
            Ok(held) if held == rest => return Ok(q),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Err(e) = crate::sealed_file::create_durable(&q, rest) {
                    let _ = std::fs::remove_file(&q); // a partial copy is no copy
                    return Err(std::io::Error::other(e));
                }
                return Ok(q);
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("an unbounded range")
}

/// Finds the data key of an encrypted recording from its header (the caller holds the keys).
pub type KeyFor<'a> = &'a dyn Fn(&witness_core::atrest::Header) -> Option<[u8; 32]>;

/// The cast a recording file holds: decrypted (and authenticated) if it is encrypted.
pub fn plaintext(file: &[u8], key_for: KeyFor<'_>) -> Result<Vec<u8>, RecordError> {
    use witness_core::atrest;
    let Some((header, _)) = atrest::Header::parse(file) else { return Ok(file.to_vec()) };
    let dek = key_for(&header)
        .ok_or_else(|| RecordError::Unusable(format!("no key {} to decrypt the recording", header.key_id)))?;
    atrest::open(file, &dek, true).map(|(p, _)| p).map_err(|e| RecordError::Unusable(e.to_string()))
}

/// What a recording being written holds so far: like [`plaintext`], but a torn last record
/// (the writer is mid-append) is left out instead of failing.
pub fn readable(file: &[u8], key_for: KeyFor<'_>) -> Result<Vec<u8>, RecordError> {
    use witness_core::atrest;
    let Some((header, _)) = atrest::Header::parse(file) else { return Ok(file.to_vec()) };
    let dek = key_for(&header)
        .ok_or_else(|| RecordError::Unusable(format!("no key {} to decrypt the recording", header.key_id)))?;
    atrest::open(file, &dek, false).map(|(p, _)| p).map_err(|e| RecordError::Unusable(e.to_string()))
}

/// Whether `rest`, after a plain recording's whole events, is one event cut short.
fn plain_torn(file: &[u8], rest: &[u8]) -> bool {
    let mut d = witness_core::rawrec::Decoder::default();
    d.push(&file[..file.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)]);
    let raw = matches!(d.header(), Ok(Some(_))) && d.is_raw();
    if raw { matches!(witness_core::rawrec::parse_frame(rest), Ok(None)) } else { !rest.contains(&b'\n') }
}

/// Trims `path` to its valid prefix (fsync'd), after moving the rest aside, and describes what
/// is left. An encrypted file is cut before its first record that is torn, fails authentication
/// or is out of place (for a cast, after its last whole event; a video keeps its whole records
/// and plays to its last whole fragment); a plain cast after its last whole event. An encrypted
/// file is read a record at a time: recovering a large recording costs what a small one does.
pub fn recover_cast(path: &Path, key_for: KeyFor<'_>) -> Result<RecoveredCast, RecordError> {
    use std::io::{BufRead, Read, Seek, SeekFrom};
    use witness_core::atrest;
    let unusable = |e: &dyn std::fmt::Display| RecordError::Unusable(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(|e| unusable(&e))?;
    let size = file.metadata().map_err(|e| unusable(&e))?.len();
    let mut reader = std::io::BufReader::with_capacity(256 * 1024, file);
    let mut first = Vec::new();
    (&mut reader).take(64 * 1024).read_until(b'\n', &mut first).map_err(|e| unusable(&e))?;
    let Some((header, start)) = atrest::Header::parse(&first).filter(|(_, n)| *n == first.len()) else {
        return recover_plain(path, unusable);
    };
    let dek = key_for(&header).ok_or_else(|| unusable(&format!("no key {}", header.key_id)))?;
    let mut opener = atrest::RecordOpener::new(&header, &dek);
    let video = path.extension().is_some_and(|e| e == "mp4");
    let mut hash = Sha256::new();
    hash.update(&first);
    let (mut valid_len, mut index) = (start as u64, 0u64);
    let mut decoder = witness_core::rawrec::Decoder::default();
    let (mut events, mut last_time) = (0usize, 0.0f64);
    // What stopped the walk: nothing left (`None`), a part of a length field (`Some(None)`), or
    // a record that is not whole or not authentic in its place (`Some(Some(its length field))`).
    let rest_field: Option<Option<[u8; 4]>> = loop {
        let mut field = [0u8; 4];
        let got = witness_core::atrest::read_full(&mut reader, &mut field).map_err(|e| unusable(&e))?;
        if got < 4 {
            break (got > 0).then_some(None);
        }
        let Some(len) = atrest::record_len(field) else { break Some(Some(field)) };
        let mut record = vec![0u8; len];
        if witness_core::atrest::read_full(&mut reader, &mut record).map_err(|e| unusable(&e))? < len {
            break Some(Some(field));
        }
        let Ok(plain) = opener.open(index, valid_len, &record) else { break Some(Some(field)) };
        if video {
            if index == 0 {
                // Session video: whole records are kept; players stop at the last whole
                // fragment (playback trims the plaintext with `fmp4::whole_len`).
                witness_core::fmp4::whole_len(&plain).ok_or_else(|| unusable(&"not an MP4 stream"))?;
            }
        } else {
            decoder.push(&plain);
            while let Ok(Some(ev)) = decoder.next_event() {
                events += 1;
                last_time = last_time.max(ev.time);
            }
        }
        hash.update(field);
        hash.update(&record);
        valid_len += 4 + len as u64;
        index += 1;
    };
    if !video && !matches!(decoder.header(), Ok(Some(_))) {
        return Err(unusable(&witness_core::cast::CastError::NoHeader));
    }
    let trimmed = size - valid_len;
    let mut quarantine = None;
    if trimmed > 0 {
        // Torn: the rest is one record cut short (or a part of its length field), which holds
        // nothing that could authenticate.
        let torn = match rest_field {
            Some(None) => true,
            Some(Some(field)) => atrest::record_len(field).is_some_and(|n| 4 + n as u64 > trimmed),
            None => false,
        };
        let mut file = reader.into_inner();
        file.seek(SeekFrom::Start(valid_len)).map_err(|e| unusable(&e))?;
        quarantine = set_aside_and_cut(path, move_aside_from(path, &mut file, trimmed), torn, valid_len, &unusable)?;
    }
    Ok(RecoveredCast {
        bytes: valid_len,
        sha256: hex::encode(hash.finalize()),
        duration: last_time,
        events,
        trimmed,
        quarantine,
    })
}

/// After the rest was copied aside (`aside`), cuts `path` to `valid_len`, fsync'd. The copy is
/// made before the cut, so a crash in between leaves both copies, never neither. A copy that
/// failed (a full disk, the usual reason for a torn write) cuts only a `torn` end, which holds
/// nothing that could authenticate; anything else is left as it is, with the reason.
fn set_aside_and_cut(
    path: &Path,
    aside: std::io::Result<PathBuf>,
    torn: bool,
    valid_len: u64,
    unusable: &dyn Fn(&dyn std::fmt::Display) -> RecordError,
) -> Result<Option<PathBuf>, RecordError> {
    let trimmed = std::fs::metadata(path).map_err(|e| unusable(&e))?.len().saturating_sub(valid_len);
    let quarantine = match aside {
        Ok(q) => Some(q),
        Err(e) if torn => {
            tracing::warn!(path = %path.display(), bytes = trimmed, error = %e, "a torn end cannot be moved aside; cut");
            None
        }
        Err(e) => {
            return Err(unusable(&format!(
                "the {trimmed} bytes after its authentic part cannot be moved aside, so nothing is cut: {e}"
            )));
        }
    };
    let file = File::options().write(true).open(path).map_err(|e| unusable(&e))?;
    file.set_len(valid_len).map_err(|e| unusable(&e))?;
    file.sync_all().map_err(|e| unusable(&e))?;
    Ok(quarantine)
}

/// [`move_aside`] for the `len` bytes `file` holds from where it stands, copied as a stream.
fn move_aside_from(recording: &Path, file: &mut File, len: u64) -> std::io::Result<PathBuf> {
    use std::io::Read;
    // The rest of a damaged recording is bounded by the recording itself; a copy already made
    // by a recovery cut short is found by comparing, as a stream too.
    let start = std::io::Seek::stream_position(file)?;
    let mut rest = Vec::new();
    if len <= 64 * 1024 * 1024 {
        file.take(len).read_to_end(&mut rest)?;
        return move_aside(recording, &rest);
    }
    for n in 0.. {
        let q = quarantine_path(recording, n);
        match std::fs::metadata(&q) {
            Ok(m) if m.len() == len && same_bytes(&q, file, start, len)? => return Ok(q),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::io::Seek::seek(file, std::io::SeekFrom::Start(start))?;
                let copied = (|| {
                    let mut out = File::create_new(&q)?;
                    std::io::copy(&mut file.take(len), &mut out)?;
                    out.sync_all()?;
                    if let Some(parent) = q.parent() {
                        File::open(parent)?.sync_all()?;
                    }
                    Ok(())
                })();
                if let Err(e) = copied {
                    let _ = std::fs::remove_file(&q); // a partial copy is no copy
                    return Err(e);
                }
                return Ok(q);
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("an unbounded range")
}

fn same_bytes(q: &Path, file: &mut File, start: u64, len: u64) -> std::io::Result<bool> {
    use std::io::Read;
    std::io::Seek::seek(file, std::io::SeekFrom::Start(start))?;
    let (mut a, mut b) = (File::open(q)?.take(len), file.take(len));
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = witness_core::atrest::read_full(&mut a, &mut x)?;
        if n != witness_core::atrest::read_full(&mut b, &mut y[..n])? || x[..n] != y[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// A plain (unencrypted, from before encryption at rest) recording: read whole, cut after its
/// last whole event.
fn recover_plain(
    path: &Path,
    unusable: impl Fn(&dyn std::fmt::Display) -> RecordError,
) -> Result<RecoveredCast, RecordError> {
    let data = std::fs::read(path).map_err(|e| unusable(&e))?;
    let scan = witness_core::rawrec::scan(&data).map_err(|e| unusable(&e))?;
    let valid_len = scan.valid_len;
    let trimmed = (data.len() - valid_len) as u64;
    let mut quarantine = None;
    if trimmed > 0 {
        let rest = &data[valid_len..];
        let torn = plain_torn(&data, rest);
        quarantine = set_aside_and_cut(path, move_aside(path, rest), torn, valid_len as u64, &unusable)?;
    }
    let kept = &data[..valid_len];
    Ok(RecoveredCast {
        bytes: kept.len() as u64,
        sha256: hex::encode(Sha256::digest(kept)),
        duration: scan.last_time,
        events: scan.events,
        trimmed,
        quarantine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_to_last_whole_event() {
        let path = std::env::temp_dir().join(format!("witness-recover-{}.cast", std::process::id()));
        let whole = b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":0}\n[0.5, \"o\", \"hi\"]\n";
        let mut data = whole.to_vec();
        data.extend_from_slice(b"[0.9, \"o\", \"cu");
        std::fs::write(&path, &data).unwrap();
        let r = recover_cast(&path, &|_| None).unwrap();
        assert_eq!((r.bytes, r.events, r.duration, r.trimmed), (whole.len() as u64, 1, 0.5, 14));
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        let aside = r.quarantine.expect("the cut event is moved aside");
        assert_eq!(std::fs::read(&aside).unwrap(), b"[0.9, \"o\", \"cu");
        std::fs::remove_file(aside).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert!(recover_cast(&path, &|_| None).unwrap_err().to_string().contains("no valid asciicast v2 header"));
        std::fs::remove_file(&path).unwrap();
    }

    /// Whatever was done to the file without the keys (a record removed, one changed, two
    /// swapped), recovery keeps only the authentic prefix as the recording and destroys
    /// nothing: the rest is moved aside whole.
    #[test]
    fn recovery_keeps_the_authentic_prefix_and_moves_the_rest_aside() {
        use crate::{Encryption, SealedFile};
        use witness_core::atrest;
        let dir = tempfile::tempdir().unwrap();
        let (dek, kek) = ([3u8; 32], [9u8; 32]);
        let key_for = |h: &atrest::Header| atrest::unwrap(&kek, h).ok();
        let lines: [&[u8]; 4] = [
            b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":0}\n",
            b"[0.1, \"o\", \"one\"]\n",
            b"[0.2, \"o\", \"two\"]\n",
            b"[0.3, \"o\", \"three\"]\n",
        ];
        let original = {
            let path = dir.path().join("original.cast");
            let header =
                atrest::Header::new(atrest::Cipher::preferred(), "r1", "k1", atrest::wrap(&kek, &dek, [1u8; 24]));
            let enc = Encryption { header, dek, nonce_prefix: [2u8; 16] };
            let mut f = SealedFile::create(&path, enc, std::time::Duration::ZERO).unwrap();
            for l in lines {
                f.append(l).unwrap();
            }
            f.finish().unwrap();
            std::fs::read(&path).unwrap()
        };
        // Where each record starts (after the header line), and the end.
        let mut bounds = vec![original.iter().position(|b| *b == b'\n').unwrap() + 1];
        while *bounds.last().unwrap() < original.len() {
            let at = *bounds.last().unwrap();
            bounds.push(at + 4 + u32::from_be_bytes(original[at..at + 4].try_into().unwrap()) as usize);
        }
        let record = |i: usize| &original[bounds[i]..bounds[i + 1]];
        let removed = [&original[..bounds[2]], record(3)].concat();
        let mut flipped = original.clone();
        flipped[bounds[2] + 30] ^= 1;
        let swapped = [&original[..bounds[1]], record(2), record(1), record(3)].concat();
        for (name, file, kept_records) in [("removed", removed, 2), ("flipped", flipped, 2), ("swapped", swapped, 1)] {
            let path = dir.path().join(format!("{name}.cast"));
            std::fs::write(&path, &file).unwrap();
            let r = recover_cast(&path, &key_for).unwrap();
            let kept = std::fs::read(&path).unwrap();
            assert!(
                kept == original[..bounds[kept_records]],
                "{name}: the recording is more than its authentic prefix"
            );
            assert_eq!(plaintext(&kept, &key_for).unwrap(), lines[..kept_records].concat(), "{name}");
            assert_eq!((r.events, r.bytes), (kept_records - 1, kept.len() as u64), "{name}");
            let aside = std::fs::read(path.with_extension("quarantine"))
                .unwrap_or_else(|e| panic!("{name}: nothing moved aside ({e})"));
            assert!(aside == file[bounds[kept_records]..], "{name}: the rest is not moved aside whole");
            assert_eq!(r.trimmed, aside.len() as u64);
            // Recovering again changes nothing and loses nothing.
            let again = recover_cast(&path, &key_for).unwrap();
            assert_eq!((again.bytes, again.trimmed), (r.bytes, 0));
            assert!(std::fs::read(path.with_extension("quarantine")).unwrap() == aside);
        }
        // No room for the copy (here: its place taken): records that could be authentic are
        // not cut; a torn last record, which cannot be, is.
        let mut flipped = original.clone();
        flipped[bounds[2] + 30] ^= 1;
        let mut torn = original.clone();
        torn.truncate(original.len() - 5);
        for (name, file, cut) in [("blocked-flipped", flipped, false), ("blocked-torn", torn, true)] {
            let path = dir.path().join(format!("{name}.cast"));
            std::fs::write(&path, &file).unwrap();
            std::fs::create_dir(path.with_extension("quarantine")).unwrap();
            let r = recover_cast(&path, &key_for);
            let now = std::fs::read(&path).unwrap();
            if cut {
                let r = r.unwrap();
                assert_eq!((r.quarantine, r.bytes), (None, bounds[3] as u64), "{name}");
                assert!(now == original[..bounds[3]], "{name}");
            } else {
                let e = r.unwrap_err().to_string();
                assert!(e.contains("cannot be moved aside, so nothing is cut"), "{name}: {e}");
                assert!(now == file, "{name}: the file was changed");
            }
        }
    }
}
