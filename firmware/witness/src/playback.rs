//! Serving part of a finished recording on the box without reading or decrypting all of it: the
//! records' length fields are walked (no key needed) to find the playable length and where each
//! part of the plaintext is, then only the records that cover the asked range are read and
//! opened, one at a time, while the client reads. Memory per request is one buffer and one
//! record, whatever the recording's size.
//!
//! What is checked when: every record served is authenticated and checked to be in its place
//! (`witness-enc/3`) at every request, and the walk must end exactly at the end of the file (a cut
//! or extended file is refused). The whole file's sha256 against the index is checked, streamed,
//! the first time the file is served and again whenever it changed on disk (size, inode, mtime
//! or ctime, which no one can set back), not at every range request.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use witness_core::atrest::{self, RecordOpener};
use witness_index::RecordingRow;
use witness_web::{Chunks, ConsoleError, Part};

/// A place in the walk every this many records, to start a part near where it begins.
const EVERY: u64 = 256;
const BUFFER: usize = 64 * 1024;

/// What identifies a file's contents on disk without reading it.
type Identity = (u64, u64, i64, i64, i64, i64);

fn identity(m: &std::fs::Metadata) -> Identity {
    (m.len(), m.ino(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
}

/// Recordings whose file matched its sha256, as the file was then. One lock per recording:
/// requests arriving together wait for one check instead of each hashing the file.
#[derive(Debug, Default)]
pub struct Verified(Mutex<HashMap<String, Arc<Mutex<Option<Identity>>>>>);

/// Where a record starts in the file and in the plaintext, and its place.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: u64,
    plain: u64,
    index: u64,
}

/// The asked part of `row`'s recording at `path`, or `None` when it is not an encrypted file
/// (the caller then reads it whole).
pub fn part(
    dir: &DataDir,
    row: &RecordingRow,
    path: &Path,
    verified: &Verified,
    range: Option<&str>,
) -> Result<Option<(Part, u64, Chunks)>> {
    let mut file = File::open(path).with_context(|| format!("reading recording {} at {}", row.id, path.display()))?;
    let meta = file.metadata()?;
    let size = meta.len();
    if let Some(expected) = &row.sha256 {
        let id = identity(&meta);
        let entry = verified.0.lock().unwrap_or_else(|p| p.into_inner()).entry(row.id.clone()).or_default().clone();
        let mut checked = entry.lock().unwrap_or_else(|p| p.into_inner());
        if *checked != Some(id) {
            let got = sha256(&mut file)?;
            if &got != expected {
                bail!(
                    "recording {} does not match its recorded sha256 (index {expected}, file {got}); refusing to play or export a changed recording",
                    row.id
                );
            }
            *checked = Some(id);
        }
        file.seek(SeekFrom::Start(0))?;
    }
    let mut reader = BufReader::with_capacity(BUFFER, file);
    let mut line = Vec::new();
    (&mut reader).take(BUFFER as u64).read_until(b'\n', &mut line)?;
    let Some((header, start)) = atrest::Header::parse(&line) else { return Ok(None) };
    let dek = crate::keys::key_for(&dir.root)(&header)
        .with_context(|| format!("no key {} to decrypt the recording", header.key_id))?;
    // The walk: lengths only, skipping every record's body.
    let (mut at, mut plain, mut index) = (start as u64, 0u64, 0u64);
    let mut marks = Vec::new();
    while at < size {
        if index % EVERY == 0 {
            marks.push(Mark { at, plain, index });
        }
        let mut field = [0u8; 4];
        reader.read_exact(&mut field).with_context(|| format!("recording {} is cut at byte {at}", row.id))?;
        let n = atrest::record_len(field).filter(|n| at + 4 + *n as u64 <= size).with_context(|| {
            format!("recording {}: {}", row.id, atrest::AtRestError::Tampered { index, offset: at })
        })?;
        reader.seek_relative(n as i64)?;
        at += 4 + n as u64;
        plain += atrest::record_plain_len(n) as u64;
        index += 1;
    }
    let part = Part::of(range, plain);
    let (first, end) = part.bounds(plain);
    let from =
        marks.iter().rev().find(|m| m.plain <= first).copied().unwrap_or(Mark { at: start as u64, plain: 0, index: 0 });
    reader.seek(SeekFrom::Start(from.at))?;
    let opener = RecordOpener::new(&header, &dek);
    let records = Records { reader, opener, mark: from, first, end, id: row.id.clone() };
    Ok(Some((part, plain, Box::new(records))))
}

fn sha256(file: &mut File) -> Result<String> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hex::encode(hash.finalize()))
}

/// The plaintext from `first` to `end` (exclusive), one opened record at a time.
struct Records {
    reader: BufReader<File>,
    opener: RecordOpener,
    /// The next record.
    mark: Mark,
    first: u64,
    end: u64,
    id: String,
}

impl Records {
    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        while self.mark.plain < self.end {
            let Mark { at, plain, index } = self.mark;
            let mut field = [0u8; 4];
            self.reader.read_exact(&mut field)?;
            let n = atrest::record_len(field).context("a record's length changed while serving")?;
            let len = atrest::record_plain_len(n) as u64;
            self.mark = Mark { at: at + 4 + n as u64, plain: plain + len, index: index + 1 };
            if plain + len <= self.first {
                self.reader.seek_relative(n as i64)?;
                continue;
            }
            let mut record = vec![0u8; n];
            self.reader.read_exact(&mut record)?;
            let opened = self.opener.open(index, at, &record)?;
            let (a, b) = (self.first.max(plain) - plain, self.end.min(plain + len) - plain);
            return Ok(Some(opened[a as usize..b as usize].to_vec()));
        }
        Ok(None)
    }
}

impl Iterator for Records {
    type Item = Result<Vec<u8>, ConsoleError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_chunk() {
            Ok(chunk) => chunk.map(Ok),
            Err(e) => {
                // Nothing more after a failure.
                self.end = 0;
                Some(Err(ConsoleError::Internal(format!("recording {}: {e:#}", self.id))))
            }
        }
    }
}
