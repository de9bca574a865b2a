//! The crash-safe prefix of a fragmented MP4: the header boxes and every whole `moof`+`mdat`
//! pair. A video cut by a crash is trimmed to this length and plays to its last whole fragment.

/// Length of the longest prefix of `file` that ends at a whole fragment (or after the header
/// when no fragment is whole). `None` when the file does not start like an MP4.
pub fn whole_len(file: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    let (mut valid, mut header_done, mut in_fragment) = (None, false, false);
    while let Some((kind, len)) = next_box(&file[pos..]) {
        let end = pos + len;
        match &kind {
            b"ftyp" | b"free" | b"skip" if !header_done => {}
            b"moov" => {
                header_done = true;
                valid = Some(end);
            }
            b"moof" if header_done => in_fragment = true,
            b"mdat" if in_fragment => {
                in_fragment = false;
                valid = Some(end);
            }
            b"mfra" | b"free" | b"skip" | b"sidx" if header_done && !in_fragment => valid = Some(end),
            _ if pos == 0 => return None,
            _ => {}
        }
        pos = end;
    }
    if pos == 0 && file.len() >= 8 && &file[4..8] != b"ftyp" {
        return None;
    }
    Some(valid.unwrap_or(0))
}

/// [`whole_len`] from the box headers alone, fed as the bytes go by: memory is one box header,
/// whatever the file's size. Feed it the bytes it [`WholeScan::wants`] (everything else may be
/// skipped, e.g. whole `mdat` bodies left encrypted), then [`WholeScan::finish`] with the file's
/// length gives what `whole_len` of the whole file gives.
#[derive(Debug, Clone, Default)]
pub struct WholeScan {
    /// Where the box whose header is being read starts, and its header bytes so far.
    pos: u64,
    head: Vec<u8>,
    state: ScanState,
    /// The last box read: whole only if the file reaches its end (known once a byte past it is
    /// fed, or at `finish`).
    pending: Option<([u8; 4], u64, u64)>,
    /// The first box's type, once eight bytes were seen.
    first_kind: Option<[u8; 4]>,
    /// Whole boxes taken so far.
    taken: u64,
    stopped: bool,
    not_mp4: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct ScanState {
    valid: Option<u64>,
    header_done: bool,
    in_fragment: bool,
}

impl WholeScan {
    /// The offset and count of the header bytes needed next; `None` once nothing more matters.
    pub fn wants(&self) -> Option<(u64, usize)> {
        if self.stopped || self.not_mp4 {
            return None;
        }
        Some((self.pos + self.head.len() as u64, self.need() - self.head.len()))
    }

    /// A header's length: sixteen bytes when a 64-bit size follows the type.
    fn need(&self) -> usize {
        if self.head.len() >= 4 && self.head[..4] == 1u32.to_be_bytes() { 16 } else { 8 }
    }

    /// Bytes of the file starting at offset `at`; what is not wanted is ignored.
    pub fn feed(&mut self, at: u64, data: &[u8]) {
        while let Some((off, n)) = self.wants() {
            let Some(skip) = off.checked_sub(at).filter(|s| *s < data.len() as u64) else { return };
            if self.head.is_empty() {
                // A byte past the last box: the file reaches its end, so that box is whole.
                self.take_pending();
                if self.not_mp4 {
                    return;
                }
            }
            let skip = skip as usize;
            let take = n.min(data.len() - skip);
            self.head.extend_from_slice(&data[skip..skip + take]);
            if self.head.len() >= 8 && self.pos == 0 && self.first_kind.is_none() {
                self.first_kind = Some(self.head[4..8].try_into().expect("four bytes"));
            }
            if self.head.len() == self.need() {
                self.header();
            }
        }
    }

    /// A header is complete: the box it starts, or the end of the walk.
    fn header(&mut self) {
        let size = u32::from_be_bytes(self.head[0..4].try_into().expect("four bytes")) as u64;
        let kind: [u8; 4] = self.head[4..8].try_into().expect("four bytes");
        let len = match size {
            1 => u64::from_be_bytes(self.head[8..16].try_into().expect("eight bytes")),
            0 => 0,
            n => n,
        };
        match self.pos.checked_add(len).filter(|_| len >= 8) {
            Some(end) => {
                self.pending = Some((kind, self.pos, end));
                self.pos = end;
                self.head.clear();
            }
            None => self.stopped = true,
        }
    }

    /// Takes the last box read as whole.
    fn take_pending(&mut self) {
        let Some((kind, pos, end)) = self.pending.take() else { return };
        let s = &mut self.state;
        match &kind {
            b"ftyp" | b"free" | b"skip" if !s.header_done => {}
            b"moov" => {
                s.header_done = true;
                s.valid = Some(end);
            }
            b"moof" if s.header_done => s.in_fragment = true,
            b"mdat" if s.in_fragment => {
                s.in_fragment = false;
                s.valid = Some(end);
            }
            b"mfra" | b"free" | b"skip" | b"sidx" if s.header_done && !s.in_fragment => s.valid = Some(end),
            _ if pos == 0 => self.not_mp4 = true,
            _ => {}
        }
        self.taken += 1;
    }

    /// What [`whole_len`] says of the file, which is `len` bytes long.
    pub fn finish(mut self, len: u64) -> Option<u64> {
        if self.pending.is_some_and(|(_, _, end)| end <= len) {
            self.take_pending();
        }
        if self.not_mp4 || (self.taken == 0 && len >= 8 && self.first_kind.is_some_and(|k| &k != b"ftyp")) {
            return None;
        }
        Some(self.state.valid.unwrap_or(0))
    }
}

/// The next box's type and whole length, if it is entirely in `rest`.
fn next_box(rest: &[u8]) -> Option<([u8; 4], usize)> {
    if rest.len() < 8 {
        return None;
    }
    let size = u32::from_be_bytes(rest[0..4].try_into().ok()?) as u64;
    let kind: [u8; 4] = rest[4..8].try_into().ok()?;
    let len = match size {
        // A 64-bit size follows the type.
        1 => u64::from_be_bytes(rest.get(8..16)?.try_into().ok()?),
        // "To the end of the file": not something a fragment writer produces.
        0 => return None,
        n => n,
    };
    let len = usize::try_from(len).ok()?;
    (len >= 8 && len <= rest.len()).then_some((kind, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: usize) -> Vec<u8> {
        let mut v = ((8 + body) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend(std::iter::repeat_n(0u8, body));
        v
    }

    #[test]
    fn keeps_whole_fragments_only() {
        let mut f = [bx(b"ftyp", 8), bx(b"moov", 40)].concat();
        let header = f.len();
        assert_eq!(whole_len(&f), Some(header));
        f.extend(bx(b"moof", 20));
        assert_eq!(whole_len(&f), Some(header), "a fragment without its data is not whole");
        f.extend(bx(b"mdat", 100));
        let one = f.len();
        assert_eq!(whole_len(&f), Some(one));
        f.extend(bx(b"moof", 20));
        f.extend(&bx(b"mdat", 100)[..50]);
        assert_eq!(whole_len(&f), Some(one), "a torn fragment is cut");
        assert_eq!(whole_len(&f[..5]), Some(0));
        assert_eq!(whole_len(b"not an mp4 at all"), None);
    }

    #[test]
    fn large_sizes_and_garbage_do_not_panic() {
        let mut f = [bx(b"ftyp", 8), bx(b"moov", 8)].concat();
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(b"mdat");
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(whole_len(&f), Some(32));
        for n in 0..f.len() {
            let _ = whole_len(&f[..n]);
        }
    }

    /// Fed every byte in pieces, or only the bytes it asks for: the same as `whole_len`.
    #[test]
    fn the_scan_says_what_whole_len_says() {
        let mut big = [bx(b"ftyp", 8), bx(b"moov", 8)].concat();
        big.extend_from_slice(&1u32.to_be_bytes());
        big.extend_from_slice(b"mdat");
        big.extend_from_slice(&40u64.to_be_bytes());
        big.extend(std::iter::repeat_n(0u8, 24));
        let files = [
            [bx(b"ftyp", 8), bx(b"moov", 40), bx(b"moof", 20), bx(b"mdat", 100), bx(b"moof", 20), bx(b"mdat", 300)]
                .concat(),
            [bx(b"free", 3), bx(b"moov", 4), bx(b"sidx", 9), bx(b"moof", 1), bx(b"free", 2), bx(b"mdat", 7)].concat(),
            [bx(b"ftyp", 8), bx(b"moof", 4), bx(b"mdat", 4)].concat(),
            [bx(b"abcd", 8), bx(b"moov", 4)].concat(),
            [bx(b"moov", 8), bx(b"mfra", 4), b"\0\0\0\0mdat".to_vec()].concat(),
            [bx(b"ftyp", 8), b"\0\0\0\x03moov".to_vec()].concat(),
            big,
            b"not an mp4 at all".to_vec(),
        ];
        for file in &files {
            for n in 0..=file.len() {
                let f = &file[..n];
                let want = whole_len(f).map(|l| l as u64);
                for piece in [1, 3, 7, 1000] {
                    let mut scan = WholeScan::default();
                    for (k, chunk) in f.chunks(piece).enumerate() {
                        scan.feed((k * piece) as u64, chunk);
                    }
                    assert_eq!(scan.finish(n as u64), want, "{n} bytes in pieces of {piece}: {f:?}");
                }
                let mut scan = WholeScan::default();
                let mut asked = 0;
                while let Some((at, k)) = scan.wants() {
                    let Some(bytes) = f.get(at as usize..(at as usize + k).min(n)).filter(|b| !b.is_empty()) else {
                        break;
                    };
                    asked += bytes.len();
                    scan.feed(at, bytes);
                }
                assert_eq!(scan.finish(n as u64), want, "{n} bytes, only the asked ones: {f:?}");
                assert!(asked <= 16 * 8, "headers only: {asked} bytes asked");
            }
        }
    }
}
