//! Per-part MD5s of a stored recording, computed once while it is sealed (the file is read
//! then anyway) and kept with its upload job, so an upload in parts sends each part's
//! `Content-MD5` and checks each part's ETag and the completed object's ETag against them
//! without hashing the file again.

use md5::Digest as _;
use std::io::Read;

/// The MD5 of each `part_size` slice of a file, in order (the last may be shorter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartDigests {
    pub part_size: u64,
    pub len: u64,
    pub md5: Vec<[u8; 16]>,
}

impl PartDigests {
    /// `SIZE:LEN:HEX…` (32 hex digits a part), as the index keeps it.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}:{}:", self.part_size, self.len);
        for d in &self.md5 {
            s.push_str(&hex::encode(d));
        }
        s
    }

    /// The inverse of [`PartDigests::to_text`]; `None` for anything that does not add up (the
    /// upload then falls back to hashing as it sends).
    pub fn parse(text: &str) -> Option<Self> {
        let mut it = text.splitn(3, ':');
        let part_size: u64 = it.next()?.parse().ok()?;
        let len: u64 = it.next()?.parse().ok()?;
        let hexes = it.next()?;
        if part_size == 0 || hexes.len() % 32 != 0 {
            return None;
        }
        let md5 = hexes
            .as_bytes()
            .chunks(32)
            .map(|c| {
                let mut d = [0u8; 16];
                hex::decode_to_slice(c, &mut d).ok().map(|_| d)
            })
            .collect::<Option<Vec<_>>>()?;
        let parts = Self { part_size, len, md5 };
        (parts.md5.len() as u64 == parts.expected_count()).then_some(parts)
    }

    fn expected_count(&self) -> u64 {
        self.len.div_ceil(self.part_size).max(1)
    }

    /// The digests, if they describe a file of `len` bytes cut at `part_size`.
    pub fn fits(&self, part_size: u64, len: u64) -> bool {
        self.part_size == part_size && self.len == len
    }

    /// What S3 answers as the ETag of the object completed from these parts: the MD5 of the
    /// parts' MD5s, a dash, their count.
    pub fn multipart_etag(&self) -> String {
        let mut all = Vec::with_capacity(self.md5.len() * 16);
        for d in &self.md5 {
            all.extend_from_slice(d);
        }
        format!("{}-{}", hex::encode(md5::Md5::digest(&all)), self.md5.len())
    }
}

/// A reader that passes bytes through and computes [`PartDigests`] of what went by.
#[derive(Debug)]
pub struct PartTee<R> {
    inner: R,
    part_size: u64,
    len: u64,
    in_part: u64,
    current: md5::Md5,
    done: Vec<[u8; 16]>,
}

impl<R: Read> PartTee<R> {
    pub fn new(inner: R, part_size: u64) -> Self {
        Self { inner, part_size: part_size.max(1), len: 0, in_part: 0, current: md5::Md5::new(), done: Vec::new() }
    }

    /// The digests of everything read so far (of the whole file once it was read to its end).
    pub fn digests(&self) -> PartDigests {
        let mut md5 = self.done.clone();
        if self.in_part > 0 || md5.is_empty() {
            md5.push(self.current.clone().finalize().into());
        }
        PartDigests { part_size: self.part_size, len: self.len, md5 }
    }
}

impl<R: Read> Read for PartTee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let room = (self.part_size - self.in_part).min(rest.len() as u64) as usize;
            self.current.update(&rest[..room]);
            self.in_part += room as u64;
            rest = &rest[room..];
            if self.in_part == self.part_size {
                let full = std::mem::replace(&mut self.current, md5::Md5::new());
                self.done.push(full.finalize().into());
                self.in_part = 0;
            }
        }
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(data: &[u8], part: u64, chunk: usize) -> PartDigests {
        let mut tee = PartTee::new(data, part);
        let mut buf = vec![0u8; chunk];
        while tee.read(&mut buf).unwrap() > 0 {}
        tee.digests()
    }

    #[test]
    fn digests_are_the_md5_of_each_part_whatever_the_read_sizes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for (part, chunk) in [(1000, 7), (1000, 4096), (4096, 1000), (10_000, 3), (3333, 3333)] {
            let d = through(&data, part, chunk);
            let want: Vec<[u8; 16]> = data.chunks(part as usize).map(|c| md5::Md5::digest(c).into()).collect();
            assert_eq!(d.md5, want, "part {part} chunk {chunk}");
            assert_eq!(d.len, data.len() as u64);
            assert_eq!(PartDigests::parse(&d.to_text()), Some(d.clone()));
        }
    }

    #[test]
    fn an_empty_file_has_one_empty_part() {
        let d = through(&[], 10, 10);
        assert_eq!(d.md5, vec![<[u8; 16]>::from(md5::Md5::digest(b""))]);
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        let d = through(&[1u8; 25], 10, 4);
        let mut cat = Vec::new();
        for c in [&[1u8; 10][..], &[1u8; 10], &[1u8; 5]] {
            cat.extend_from_slice(&md5::Md5::digest(c));
        }
        assert_eq!(d.multipart_etag(), format!("{}-3", hex::encode(md5::Md5::digest(&cat))));
    }

    #[test]
    fn text_that_does_not_add_up_is_refused() {
        let d = through(&[1u8; 25], 10, 4).to_text();
        for bad in [
            "",
            "10:25",
            "0:25:",
            &d[..d.len() - 1],
            &d[..d.len() - 32],
            &d.replacen("10:25", "10:35", 1),
            &d.replacen("10:25", "x:25", 1),
        ] {
            assert_eq!(PartDigests::parse(bad), None, "{bad:?}");
        }
        assert!(PartDigests::parse(&d).unwrap().fits(10, 25));
        assert!(!PartDigests::parse(&d).unwrap().fits(16, 25));
    }
}
