//! A minimal POSIX ustar writer: one header per file, the content padded to 512-byte blocks,
//! two zero blocks at the end. Enough for the console's evidence archive (names up to 100
//! bytes, regular files and folders); any `tar` reads it.

pub const BLOCK: usize = 512;
/// The end of an archive: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// Zero bytes after `len` bytes of content up to the next block.
pub fn padding(len: u64) -> usize {
    (BLOCK - (len % BLOCK as u64) as usize) % BLOCK
}

/// The header of a file (or, `dir`, a folder, whose name ends in `/`) of `len` bytes; `None`
/// when the name is longer than ustar's 100 bytes or `len` does not fit its 11 octal digits.
pub fn header(name: &str, len: u64, mtime: u64, dir: bool) -> Option<[u8; BLOCK]> {
    if name.is_empty() || name.len() > 100 || len >= 1 << 33 {
        return None;
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; BLOCK], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, if dir { 0o755 } else { 0o644 });
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, len);
    octal(&mut h, 136, 12, mtime.min(0o77777777777));
    h[156] = if dir { b'5' } else { b'0' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_carries_name_size_kind_and_a_checksum_over_itself() {
        let h = header("bundle/a.json", 1000, 1_700_000_000, false).unwrap();
        assert_eq!(&h[..13], b"bundle/a.json");
        assert_eq!(&h[124..136], b"00000001750\0");
        assert_eq!(h[156], b'0');
        assert_eq!(&h[257..263], b"ustar\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut blank = h;
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|&b| b as u32).sum::<u32>());
        assert_eq!(header("bundle/", 0, 0, true).unwrap()[156], b'5');
        assert!(header(&"x".repeat(101), 0, 0, false).is_none());
        assert_eq!((padding(0), padding(1), padding(512), padding(1000)), (0, 511, 0, 24));
    }

    /// What this writes, the system's `tar` reads back byte for byte.
    #[test]
    fn tar_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("witness-tar-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let content: Vec<u8> = (0..1300u32).map(|i| (i % 251) as u8).collect();
        let mut archive = header("b/", 0, 0, true).unwrap().to_vec();
        archive.extend(header("b/data.bin", content.len() as u64, 1_700_000_000, false).unwrap());
        archive.extend(&content);
        archive.extend(vec![0; padding(content.len() as u64)]);
        archive.extend(END);
        std::fs::write(dir.join("a.tar"), &archive).unwrap();
        let st = std::process::Command::new("tar").arg("-xf").arg("a.tar").current_dir(&dir).status().unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(dir.join("b/data.bin")).unwrap(), content);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
