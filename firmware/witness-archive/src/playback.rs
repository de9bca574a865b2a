//! Playing and exporting a recording without holding it, wherever its stored bytes are (a file
//! on the box, an object in the store): one walk over the records' length fields (bodies skipped
//! or only hashed; no key needed) finds the playable length and a mark every [`EVERY`] records
//! or [`MARK_BYTES`] stored bytes; then any part is served by reading from the mark before it and
//! opening only the records that cover it, one at a time, as the reader asks. A ranged request
//! costs its range plus what lies between it and the mark before it, never the recording; memory
//! is one record.
//!
//! What is checked when: every record served is authenticated and checked to be in its place;
//! the walk must end exactly at the end of the stored bytes (a cut or extended file is refused)
//! and, when asked, their SHA-256 must be the recorded one. A video cut by a crash or still
//! being written plays to its last whole fragment: the walk opens only the records that hold
//! box headers to find it ([`WholeScan`]).

use crate::ArchiveError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use witness_core::atrest::{self, Header, RecordOpener, read_full};
use witness_core::fmp4::WholeScan;

/// A mark in the walk every this many records, to start a part near where it begins.
pub const EVERY: u64 = 256;
/// ... or every this many stored bytes (a part fetched from the store reads from its mark on).
pub const MARK_BYTES: u64 = 1 << 20;
const BUFFER: usize = 64 * 1024;

/// The data key of a recording's header, when the box has it.
pub type KeyFor<'a> = &'a dyn Fn(&Header) -> Option<[u8; 32]>;

/// Stored bytes read forward, with a way to pass over bytes without reading them when the
/// source can (a file seeks; a stream reads and drops).
pub trait Forward: Read + Send {
    fn skip(&mut self, n: u64) -> std::io::Result<()>;
}

impl Forward for BufReader<std::fs::File> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        self.seek_relative(i64::try_from(n).map_err(std::io::Error::other)?)
    }
}

/// Any reader, passed over by reading.
pub struct Sequential<R>(pub R);

impl<R: Read + Send> Read for Sequential<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Send> Forward for Sequential<R> {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let got = std::io::copy(&mut (&mut self.0).take(n), &mut std::io::sink())?;
        if got != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Where a recording's stored bytes are. The binary implements it for the store; [`OnDisk`] is
/// a file on the box.
pub trait Stored: Send + Sync {
    /// The stored bytes from offset `at` to the end.
    fn read_from(&self, at: u64) -> std::io::Result<Box<dyn Forward>>;
    /// How many stored bytes there are.
    fn stored_len(&self) -> u64;
}

/// A recording file on the box, as long as it was when opened.
#[derive(Debug, Clone)]
pub struct OnDisk {
    pub path: PathBuf,
    pub len: u64,
}

impl Stored for OnDisk {
    fn read_from(&self, at: u64) -> std::io::Result<Box<dyn Forward>> {
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(SeekFrom::Start(at))?;
        Ok(Box::new(BufReader::with_capacity(BUFFER, file)))
    }

    fn stored_len(&self) -> u64 {
        self.len
    }
}

/// How a walk reads the stored bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Walk<'a> {
    /// The recorded SHA-256 of the stored bytes: every byte is hashed and must match.
    pub sha256: Option<&'a str>,
    /// A recording being written: end quietly at a record that is not whole (or not authentic)
    /// yet instead of failing.
    pub lenient: bool,
    /// A video cut by a crash or being written: playable up to its last whole fragment.
    pub whole_fragments: bool,
}

/// Where a record starts in the stored bytes and in the plaintext, and its place.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: u64,
    plain: u64,
    index: u64,
}

/// Where a recording's plaintext is in its stored bytes: found once by [`walk`], kept to serve
/// any part of it.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `None`: a plain (unencrypted) file from an early release, played as it is.
    header: Option<Header>,
    start: u64,
    marks: Vec<Mark>,
    len: u64,
}

impl Layout {
    /// How many playable bytes there are.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The playable bytes from `first` to `end` (exclusive, cut to the playable length), opened
    /// a record at a time as they are read.
    pub fn part(&self, src: &dyn Stored, key_for: KeyFor<'_>, first: u64, end: u64) -> Result<Part, ArchiveError> {
        let end = end.min(self.len);
        let first = first.min(end);
        let Some(header) = &self.header else {
            let reader = src.read_from(first)?;
            return Ok(Part {
                reader,
                opener: None,
                mark: Mark { at: first, plain: first, index: 0 },
                first,
                end,
                pending: Vec::new(),
                pos: 0,
                opened: 0,
            });
        };
        let dek = key_for(header).ok_or_else(|| ArchiveError::NoKey(header.key_id.clone()))?;
        let from = self.marks.iter().rev().find(|m| m.plain <= first).copied().unwrap_or(Mark {
            at: self.start,
            plain: 0,
            index: 0,
        });
        let reader = src.read_from(from.at)?;
        let opener = RecordOpener::new(header, &dek);
        Ok(Part { reader, opener: Some(opener), mark: from, first, end, pending: Vec::new(), pos: 0, opened: 0 })
    }
}

/// Walks the stored bytes of `src` once (see the module's comment).
pub fn walk(src: &dyn Stored, key_for: KeyFor<'_>, how: Walk<'_>) -> Result<Layout, ArchiveError> {
    let size = src.stored_len();
    let mut r = BufReader::with_capacity(BUFFER, src.read_from(0)?);
    let mut hash = how.sha256.map(|_| Sha256::new());
    let mut first = Vec::new();
    (&mut r).take(BUFFER as u64).read_until(b'\n', &mut first)?;
    if let Some(h) = hash.as_mut() {
        h.update(&first);
    }
    let mut scan = how.whole_fragments.then(WholeScan::default);
    let parsed = atrest::Header::parse(&first).filter(|(_, n)| *n == first.len());
    let Some((header, start)) = parsed else {
        // A plain file: its bytes are its plaintext. Read through (it is small and old).
        let mut at = 0u64;
        let mut buf = first;
        loop {
            if let Some(s) = scan.as_mut() {
                s.feed(at, &buf);
            }
            at += buf.len() as u64;
            buf.resize(BUFFER, 0);
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if let Some(h) = hash.as_mut() {
                h.update(&buf);
            }
        }
        check(how.sha256, hash)?;
        let len = scan.and_then(|s| s.finish(at)).unwrap_or(at);
        return Ok(Layout { header: None, start: 0, marks: Vec::new(), len });
    };
    let mut opener = match scan {
        Some(_) => Some(RecordOpener::new(
            &header,
            &key_for(&header).ok_or_else(|| ArchiveError::NoKey(header.key_id.clone()))?,
        )),
        None => None,
    };
    let (mut at, mut plain, mut index) = (start as u64, 0u64, 0u64);
    let mut marks = Vec::new();
    let mut body = Vec::new();
    while at < size {
        let mut field = [0u8; 4];
        let got = read_full(&mut r, &mut field)?;
        let n = match atrest::record_len(field).filter(|n| got == 4 && at + 4 + *n as u64 <= size) {
            Some(n) => n,
            None if how.lenient => break,
            None => return Err(atrest::AtRestError::Tampered { index, offset: at }.into()),
        };
        let plen = atrest::record_plain_len(n) as u64;
        let wanted =
            scan.as_ref().and_then(WholeScan::wants).is_some_and(|(o, k)| o < plain + plen && o + k as u64 > plain);
        if hash.is_some() || wanted {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
            if let Some(h) = hash.as_mut() {
                h.update(field);
                h.update(&body);
            }
        } else {
            r.seek_relative_or_skip(n as u64)?;
        }
        if wanted && let (Some(o), Some(s)) = (opener.as_mut(), scan.as_mut()) {
            match o.open(index, at, &body) {
                Ok(p) => s.feed(plain, &p),
                Err(_) if how.lenient => break,
                Err(e) => return Err(e.into()),
            }
        }
        if index % EVERY == 0 || marks.last().is_some_and(|m: &Mark| at - m.at >= MARK_BYTES) {
            marks.push(Mark { at, plain, index });
        }
        at += 4 + n as u64;
        plain += plen;
        index += 1;
    }
    check(how.sha256, hash)?;
    let len = scan.and_then(|s| s.finish(plain)).unwrap_or(plain);
    Ok(Layout { header: Some(header), start: start as u64, marks, len })
}

/// The walk's reader passes over record bodies it does not need.
trait SkipBody {
    fn seek_relative_or_skip(&mut self, n: u64) -> std::io::Result<()>;
}

impl SkipBody for BufReader<Box<dyn Forward>> {
    fn seek_relative_or_skip(&mut self, n: u64) -> std::io::Result<()> {
        // What is buffered is dropped first; the rest is passed over by the source.
        let buffered = self.buffer().len() as u64;
        if n <= buffered {
            self.consume(n as usize);
            return Ok(());
        }
        self.consume(buffered as usize);
        self.get_mut().skip(n - buffered)
    }
}

fn check(expected: Option<&str>, hash: Option<Sha256>) -> Result<(), ArchiveError> {
    if let (Some(expected), Some(hash)) = (expected, hash) {
        let got = hex::encode(hash.finalize());
        if got != expected {
            return Err(ArchiveError::Changed { expected: expected.to_owned(), got });
        }
    }
    Ok(())
}

/// Part of a recording's plaintext, opened a record at a time as it is read. Usable as a
/// reader, or as an iterator of pieces (one per record).
pub struct Part {
    reader: Box<dyn Forward>,
    /// `None`: a plain file, read as it is.
    opener: Option<RecordOpener>,
    /// The next record (for a plain file: the next byte).
    mark: Mark,
    first: u64,
    end: u64,
    pending: Vec<u8>,
    pos: usize,
    /// Plaintext bytes decrypted so far.
    opened: u64,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part").field("first", &self.first).field("end", &self.end).finish_non_exhaustive()
    }
}

impl Part {
    /// Plaintext bytes decrypted so far: what the part cost.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Reads ahead to the first piece, so that a source that cannot give the part (a store gone
    /// away, credentials refused) fails now rather than after an answer has begun.
    pub fn prime(&mut self) -> std::io::Result<()> {
        if self.pos == self.pending.len()
            && let Some(piece) = self.next_piece()?
        {
            self.pending = piece;
            self.pos = 0;
        }
        Ok(())
    }

    /// The next piece of the part, `None` at its end.
    fn next_piece(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(opener) = self.opener.as_mut() else {
            let left = self.end - self.mark.plain;
            if left == 0 {
                return Ok(None);
            }
            let mut buf = vec![0u8; (BUFFER as u64).min(left) as usize];
            let n = read_full(&mut self.reader, &mut buf)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.truncate(n);
            self.mark.plain += n as u64;
            return Ok(Some(buf));
        };
        while self.mark.plain < self.end {
            let Mark { at, plain, index } = self.mark;
            let mut field = [0u8; 4];
            self.reader.read_exact(&mut field)?;
            let n = atrest::record_len(field)
                .ok_or_else(|| std::io::Error::other(atrest::AtRestError::Tampered { index, offset: at }))?;
            let len = atrest::record_plain_len(n) as u64;
            self.mark = Mark { at: at + 4 + n as u64, plain: plain + len, index: index + 1 };
            if plain + len <= self.first {
                self.reader.skip(n as u64)?;
                continue;
            }
            let mut record = vec![0u8; n];
            self.reader.read_exact(&mut record)?;
            let opened = opener.open(index, at, &record).map_err(std::io::Error::other)?;
            self.opened += opened.len() as u64;
            let (a, b) = (self.first.max(plain) - plain, self.end.min(plain + len) - plain);
            return Ok(Some(opened[a as usize..b as usize].to_vec()));
        }
        Ok(None)
    }
}

impl Read for Part {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.pending.len() {
            match self.next_piece()? {
                Some(piece) => {
                    self.pending = piece;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Iterator for Part {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos < self.pending.len() {
            let rest = self.pending.split_off(self.pos);
            self.pending.clear();
            self.pos = 0;
            return Some(Ok(rest));
        }
        let piece = self.next_piece().transpose();
        if matches!(piece, Some(Err(_))) {
            // Nothing more after a failure.
            self.end = self.mark.plain;
        }
        piece
    }
}

/// Layouts walked, per recording, with what identified its stored bytes then (for a file on the
/// box: size, inode and times; for a stored object: its key and hash). One lock per recording:
/// requests arriving together wait for one walk. Bounded: the oldest half is dropped when full.
#[derive(Debug, Default)]
pub struct Layouts(Mutex<HashMap<String, Slot>>);

type Slot = Arc<Mutex<Option<(String, Arc<Layout>)>>>;

/// How many recordings' layouts are kept.
const KEPT: usize = 1024;

impl Layouts {
    /// The layout of recording `id` whose stored bytes are as `identity` says, walked now if
    /// they changed (or were never walked). `identity` `None`: never kept (being written).
    pub fn get(
        &self,
        id: &str,
        identity: Option<String>,
        walk: impl FnOnce() -> Result<Layout, ArchiveError>,
    ) -> Result<Arc<Layout>, ArchiveError> {
        let Some(identity) = identity else { return walk().map(Arc::new) };
        let slot = {
            let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if all.len() >= KEPT && !all.contains_key(id) {
                let drop: Vec<String> = all.keys().take(KEPT / 2).cloned().collect();
                for k in drop {
                    all.remove(&k);
                }
            }
            all.entry(id.to_owned()).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, layout)) = slot.as_ref()
            && *seen == identity
        {
            return Ok(layout.clone());
        }
        let layout = Arc::new(walk()?);
        *slot = Some((identity, layout.clone()));
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Stored bytes in memory that count what is read of them.
    struct Counted {
        bytes: Arc<Vec<u8>>,
        read: Arc<AtomicU64>,
    }

    struct Reader {
        bytes: Arc<Vec<u8>>,
        at: usize,
        read: Arc<AtomicU64>,
    }

    impl Read for Reader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.bytes.len() - self.at);
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    impl Forward for Reader {
        fn skip(&mut self, n: u64) -> std::io::Result<()> {
            self.at = (self.at + n as usize).min(self.bytes.len());
            Ok(())
        }
    }

    impl Stored for Counted {
        fn read_from(&self, at: u64) -> std::io::Result<Box<dyn Forward>> {
            Ok(Box::new(Reader { bytes: self.bytes.clone(), at: at as usize, read: self.read.clone() }))
        }

        fn stored_len(&self) -> u64 {
            self.bytes.len() as u64
        }
    }

    const KEK: [u8; 32] = [5; 32];

    fn key_for(h: &Header) -> Option<[u8; 32]> {
        atrest::unwrap(&KEK, h).ok()
    }

    /// An encrypted recording of `records` records of 4000 bytes and the plaintext.
    fn recording(pieces: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let dek = [4u8; 32];
        let header = Header::new(atrest::Cipher::preferred(), "r", "k", atrest::wrap(&KEK, &dek, [6; 24]));
        let mut sealer = atrest::Sealer::new(&header, &dek, [7; 16]);
        let mut file = header.line();
        let mut plain = Vec::new();
        for p in pieces {
            file.extend(sealer.seal(p));
            plain.extend_from_slice(p);
        }
        (file, plain)
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    /// The attack: a small range of a large recording must cost the range, not the recording.
    /// Before, `playable` decrypted (and for a stored object, fetched) all of it for every
    /// request.
    #[test]
    fn a_small_range_of_a_large_recording_opens_a_few_records() {
        let pieces: Vec<Vec<u8>> = (0..5000u32).map(|i| vec![(i % 251) as u8; 4000]).collect();
        let (file, plain) = recording(&pieces);
        let read = Arc::new(AtomicU64::new(0));
        let src = Counted { bytes: Arc::new(file.clone()), read: read.clone() };
        let layout = walk(&src, &key_for, Walk { sha256: Some(&sha(&file)), ..Walk::default() }).unwrap();
        assert_eq!(layout.len(), plain.len() as u64);
        for (first, end) in
            [(0, 10), (12_345_678, 12_345_678 + 100), (plain.len() as u64 - 1, plain.len() as u64), (3999, 4001)]
        {
            read.store(0, Ordering::Relaxed);
            let mut part = layout.part(&src, &key_for, first, end).unwrap();
            let mut got = Vec::new();
            part.read_to_end(&mut got).unwrap();
            assert_eq!(got, plain[first as usize..end as usize], "{first}..{end}");
            assert!(part.opened() <= 2 * 4000, "{first}..{end}: {} bytes decrypted", part.opened());
            let fetched = read.load(Ordering::Relaxed);
            assert!(fetched <= 2 * 4100 + 4 * EVERY, "{first}..{end}: {fetched} stored bytes read");
        }
        // The whole, as pieces, read ahead first.
        let mut part = layout.part(&src, &key_for, 0, u64::MAX).unwrap();
        part.prime().unwrap();
        let whole: Vec<u8> = part.map(Result::unwrap).collect::<Vec<_>>().concat();
        assert!(whole == plain);
    }

    #[test]
    fn a_changed_cut_or_reordered_recording_is_refused() {
        let pieces: Vec<Vec<u8>> = (0..600u32).map(|i| vec![i as u8; 100 + i as usize]).collect();
        let (file, _) = recording(&pieces);
        let mem = |b: Vec<u8>| Counted { bytes: Arc::new(b), read: Arc::default() };
        let recorded = sha(&file);
        let strict = Walk { sha256: Some(&recorded), ..Walk::default() };
        let mut flipped = file.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 1;
        assert!(matches!(walk(&mem(flipped.clone()), &key_for, strict), Err(ArchiveError::Changed { .. })));
        // Without the hash, the flipped record still fails as it is served.
        let layout = walk(&mem(flipped.clone()), &key_for, Walk::default()).unwrap();
        let mut part = layout.part(&mem(flipped), &key_for, 0, u64::MAX).unwrap();
        assert!(std::io::copy(&mut part, &mut std::io::sink()).is_err());
        let mut cut = file.clone();
        cut.truncate(file.len() - 3);
        assert!(walk(&mem(cut.clone()), &key_for, Walk::default()).is_err(), "a cut file is refused");
        let lenient = walk(&mem(cut), &key_for, Walk { lenient: true, ..Walk::default() }).unwrap();
        let whole_but_last: u64 = pieces[..599].iter().map(|p| p.len() as u64).sum();
        assert_eq!(lenient.len(), whole_but_last, "being written: up to the last whole record");
    }

    fn bx(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut v = ((8 + body) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend(std::iter::repeat_n(7u8, body));
        v
    }

    #[test]
    fn a_cut_video_plays_to_its_last_whole_fragment() {
        let mut pieces = vec![[bx(b"ftyp", 8), bx(b"moov", 40)].concat()];
        for _ in 0..300 {
            pieces.push(bx(b"moof", 20));
            // A fragment's data over several records.
            let mdat = bx(b"mdat", 30_000);
            pieces.extend(mdat.chunks(10_000).map(<[u8]>::to_vec));
        }
        let torn = bx(b"moof", 20);
        pieces.push(torn);
        pieces.push(bx(b"mdat", 30_000)[..5000].to_vec());
        let (file, plain) = recording(&pieces);
        let src = Counted { bytes: Arc::new(file), read: Arc::default() };
        let layout = walk(&src, &key_for, Walk { whole_fragments: true, ..Walk::default() }).unwrap();
        let whole = witness_core::fmp4::whole_len(&plain).unwrap() as u64;
        assert_eq!(layout.len(), whole);
        assert!(whole < plain.len() as u64 - 5000);
    }
}
