//! Reading a finished recording as a stream: the plaintext of an encrypted file one record at a
//! time (each authenticated and in its place, the file ending exactly after its last record),
//! with the stored file's SHA-256 computed on the way. Memory is one record, whatever the
//! recording's size: sealing, search extraction and exports of a multi-gigabyte recording cost
//! what a small one costs.

use crate::{KeyFor, RecordError};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read};
use witness_core::atrest::{self, RecordOpener, read_full};

const BUFFER: usize = 256 * 1024;

/// The plaintext of a recording file, read as it is needed. A plain (unencrypted) file is passed
/// through as it is.
pub struct PlainReader<R: Read> {
    inner: BufReader<R>,
    opener: Option<RecordOpener>,
    /// The recording id in the at-rest header.
    written_for: Option<String>,
    index: u64,
    offset: u64,
    /// Plaintext not yet handed out.
    pending: Vec<u8>,
    pos: usize,
    hash: Sha256,
    done: bool,
    /// A recording being written: stop quietly at a record not whole yet (or not authentic),
    /// as [`crate::readable`] does, instead of failing.
    lenient: bool,
}

impl<R: Read> std::fmt::Debug for PlainReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainReader").field("index", &self.index).field("offset", &self.offset).finish()
    }
}

fn unusable(e: impl std::fmt::Display) -> RecordError {
    RecordError::Unusable(e.to_string())
}

impl<R: Read> PlainReader<R> {
    /// Reads the at-rest header (if any) and finds the data key.
    pub fn new(source: R, key_for: KeyFor<'_>) -> Result<Self, RecordError> {
        let mut inner = BufReader::with_capacity(BUFFER, source);
        let mut hash = Sha256::new();
        let mut first = Vec::new();
        (&mut inner).take(64 * 1024).read_until(b'\n', &mut first).map_err(unusable)?;
        let mut written_for = None;
        let (opener, pending) = match atrest::Header::parse(&first) {
            Some((header, n)) if n == first.len() => {
                let dek = key_for(&header)
                    .ok_or_else(|| unusable(format!("no key {} to decrypt the recording", header.key_id)))?;
                written_for = Some(header.recording_id.clone());
                (Some(RecordOpener::new(&header, &dek)), Vec::new())
            }
            Some(_) => return Err(unusable("the at-rest header is not a line of its own")),
            None => (None, first.clone()),
        };
        hash.update(&first);
        let offset = first.len() as u64;
        Ok(Self { inner, opener, written_for, index: 0, offset, pending, pos: 0, hash, done: false, lenient: false })
    }

    /// Whether the file starts with the at-rest header (every recording the box writes does):
    /// one without it is read as plaintext, which anyone with the disk could have put there.
    pub fn is_encrypted(&self) -> bool {
        self.opener.is_some()
    }

    /// The recording the at-rest header says the file was written for (its records are bound
    /// to it); none for a plaintext file.
    pub fn written_for(&self) -> Option<&str> {
        self.written_for.as_deref()
    }

    /// For a recording still being written: what is whole so far, ending quietly at a record
    /// the writer has not finished.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// The SHA-256 (hex) of the stored bytes read so far: of the whole file once the reader
    /// returned end of file.
    pub fn stored_sha256(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }

    /// The source the stored bytes come from (e.g. to ask a digesting reader what it saw).
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Bytes of the stored file read so far.
    pub fn stored_len(&self) -> u64 {
        self.offset
    }

    /// Fills `pending` with the next record's plaintext (or the next block of a plain file);
    /// false at the end of the file.
    fn refill(&mut self) -> std::io::Result<bool> {
        self.pending.clear();
        self.pos = 0;
        if self.done {
            return Ok(false);
        }
        match self.next_record() {
            Err(_) if self.lenient => {
                self.done = true;
                Ok(false)
            }
            other => other,
        }
    }

    fn next_record(&mut self) -> std::io::Result<bool> {
        let Some(opener) = self.opener.as_mut() else {
            self.pending.resize(BUFFER, 0);
            let n = self.inner.read(&mut self.pending)?;
            self.pending.truncate(n);
            self.hash.update(&self.pending);
            self.offset += n as u64;
            self.done = n == 0;
            return Ok(n > 0);
        };
        let mut field = [0u8; 4];
        match read_full(&mut self.inner, &mut field)? {
            0 => {
                self.done = true;
                return Ok(false);
            }
            4 => {}
            _ => return Err(std::io::Error::other(format!("a record cut short at byte {}", self.offset))),
        }
        let len = atrest::record_len(field).ok_or_else(|| {
            std::io::Error::other(format!("record {} at byte {} has no valid length", self.index, self.offset))
        })?;
        let mut record = vec![0u8; len];
        if read_full(&mut self.inner, &mut record)? != len {
            return Err(std::io::Error::other(format!("record {} at byte {} is cut short", self.index, self.offset)));
        }
        let plain = opener.open(self.index, self.offset, &record).map_err(std::io::Error::other)?;
        self.hash.update(field);
        self.hash.update(&record);
        self.offset += 4 + len as u64;
        self.index += 1;
        self.pending = plain;
        Ok(true)
    }
}

impl<R: Read> Read for PlainReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.pending.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens a recording file for streamed reading.
pub fn open_plain(path: &std::path::Path, key_for: KeyFor<'_>) -> Result<PlainReader<std::fs::File>, RecordError> {
    let file = std::fs::File::open(path).map_err(|e| unusable(format!("{}: {e}", path.display())))?;
    PlainReader::new(file, key_for)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_what_plaintext_gives_and_refuses_what_it_refuses() {
        let (dek, kek) = ([4u8; 32], [5u8; 32]);
        let header = atrest::Header::new(atrest::Cipher::preferred(), "r", "k", atrest::wrap(&kek, &dek, [6; 24]));
        let mut sealer = atrest::Sealer::new(&header, &dek, [7; 16]);
        let mut file = header.line();
        for i in 0..50u32 {
            file.extend(sealer.seal(&vec![i as u8; 1000 + i as usize * 37]));
        }
        let key_for = |h: &atrest::Header| atrest::unwrap(&kek, h).ok();
        let whole = crate::plaintext(&file, &key_for).unwrap();
        let mut r = PlainReader::new(file.as_slice(), &key_for).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 333];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, whole);
        assert_eq!(r.stored_sha256(), hex::encode(Sha256::digest(&file)));
        // Cut, flipped, or with a record left out: an error, never a silent end.
        let mut cut = file.clone();
        cut.truncate(file.len() - 5);
        let mut flipped = file.clone();
        let at = file.len() - 40;
        flipped[at] ^= 1;
        for bad in [cut, flipped] {
            let mut r = PlainReader::new(bad.as_slice(), &key_for).unwrap();
            assert!(std::io::copy(&mut r, &mut std::io::sink()).is_err());
        }
        let plain = b"{\"version\":2}\nabc".to_vec();
        let mut r = PlainReader::new(plain.as_slice(), &key_for).unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        assert_eq!(got, plain, "a plain file passes through");
    }
}
