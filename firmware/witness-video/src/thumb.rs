//! Timeline thumbnails: a settled picture made small (each thumbnail pixel the mean of the grey
//! pixels it covers) and written as a greyscale PNG a browser shows as it is. Pure: tested
//! without a video.

use std::io::Write;

/// Width of a thumbnail; its height keeps the picture's proportions.
pub const WIDTH: u32 = 192;

/// `gray` (`width`×`height`, tightly packed) made [`WIDTH`] wide (never wider than it was),
/// as a PNG. `None` for an empty picture or one whose size does not match.
pub fn png(width: u32, height: u32, gray: &[u8]) -> Option<Vec<u8>> {
    if width == 0 || height == 0 || gray.len() != (width as usize) * (height as usize) {
        return None;
    }
    let tw = WIDTH.min(width);
    let th = ((u64::from(height) * u64::from(tw)).div_ceil(u64::from(width)) as u32).max(1);
    let mut small = Vec::with_capacity((tw * th) as usize);
    for ty in 0..th {
        let (y0, y1) = (ty * height / th, ((ty + 1) * height / th).max(ty * height / th + 1));
        for tx in 0..tw {
            let (x0, x1) = (tx * width / tw, ((tx + 1) * width / tw).max(tx * width / tw + 1));
            let mut sum = 0u64;
            for y in y0..y1 {
                let row = (y * width) as usize;
                sum += gray[row + x0 as usize..row + x1 as usize].iter().map(|&p| u64::from(p)).sum::<u64>();
            }
            small.push((sum / u64::from((y1 - y0) * (x1 - x0))) as u8);
        }
    }
    Some(encode(tw, th, &small))
}

/// An 8-bit greyscale PNG of `pixels` (`width`×`height`).
fn encode(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(pixels.len() + height as usize);
    for row in pixels.chunks(width as usize) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).expect("compressing into memory cannot fail");
    let idat = z.finish().expect("compressing into memory cannot fail");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, greyscale, deflate, adaptive, no interlace
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &idat[..]), (b"IEND", &[][..])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The chunks of a PNG, each checked against its CRC.
    fn chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut out = Vec::new();
        let mut rest = &png[8..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let (kind, data) = (&rest[4..8], &rest[8..8 + len]);
            let crc = u32::from_be_bytes(rest[8 + len..12 + len].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&rest[4..8 + len]), "crc of {kind:?}");
            out.push((kind.try_into().unwrap(), data.to_vec()));
            rest = &rest[12 + len..];
        }
        out
    }

    #[test]
    fn a_picture_becomes_a_small_png_that_shows_it() {
        // 1920x1080: the left half black, the right half white.
        let (w, h) = (1920u32, 1080u32);
        let gray: Vec<u8> = (0..w * h).map(|i| if i % w < w / 2 { 0 } else { 255 }).collect();
        let png = png(w, h, &gray).unwrap();
        let c = chunks(&png);
        let kinds: Vec<&[u8; 4]> = c.iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, vec![b"IHDR", b"IDAT", b"IEND"]);
        assert_eq!(&c[0].1[..8], &[0, 0, 0, 192, 0, 0, 0, 108], "192x108");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&c[1].1[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len(), 108 * 193);
        for row in raw.chunks(193) {
            assert_eq!(row[0], 0);
            assert!(row[1..97].iter().all(|&p| p == 0) && row[97..].iter().all(|&p| p == 255), "{row:?}");
        }
        assert!(png.len() < 2000, "{} bytes", png.len());
        // A picture smaller than a thumbnail keeps its size; nonsense is refused, not a panic.
        let c = chunks(&super::png(3, 2, &[1, 2, 3, 4, 5, 6]).unwrap());
        assert_eq!(&c[0].1[..8], &[0, 0, 0, 3, 0, 0, 0, 2]);
        assert_eq!(super::png(3, 2, &[1, 2]), None);
        assert_eq!(super::png(0, 0, &[]), None);
    }
}
