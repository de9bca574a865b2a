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
}
