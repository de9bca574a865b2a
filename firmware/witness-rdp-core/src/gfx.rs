//! The graphics pipeline's ZGFX transport (MS-RDPEGFX 2.2.5, 3.1.9.1) as the filter reads the
//! target's messages: each whole DVC message is ZGFX segmented data, compressed or not, its
//! history spanning messages. Before a byte of it is decompressed, the segments are walked token
//! by token ([`scan`]) for what they will decompress to, so the bound holds on what a few bytes
//! expand to and not only on what was sent (red team `h-red17n`: under 100 bytes made 32 MiB).
//! What the segments' framing leaves free, or what the client (FreeRDP) and the recorder
//! (IronRDP) would read differently, is refused: bytes after the last segment of a multipart
//! message, unknown compression types or flags, a compressed segment's last byte with its five
//! reserved high bits set (FreeRDP subtracts the whole byte from the bit count, IronRDP masks
//! them off), a segment that decompresses to more than 65,535 bytes (MS-RDPEGFX 3.1.9.1.2: no
//! compressor produces one; FreeRDP's output buffer holds no more), a multipart message whose
//! segments do not add up to its uncompressedSize exactly. Then IronRDP's decompressor (the
//! recorder's) produces the bytes, which must be exactly as many as the walk counted.
//!
//! What stays free: ZGFX lets a sender choose among encodings of the same bytes (a literal
//! token or a null literal, a match or the bytes again) and leaves up to 7 padding bits before
//! an unencoded run and after the last token; nothing in the decompressed bytes shows which.

use std::sync::LazyLock;

/// The longest a ZGFX segment decompresses to (MS-RDPEGFX 3.1.9.1.2).
pub const MAX_SEGMENT: usize = 65_535;

/// ZGFX history size (MS-RDPEGFX 3.1.9.1.1): no match reaches further back.
const HISTORY: u32 = 2_500_000;

/// RDP8_BULK_ENCODED_DATA header: compression type RDP8, uncompressed or PACKET_COMPRESSED.
const SEGMENT_PLAIN: u8 = 0x04;
const SEGMENT_COMPRESSED: u8 = 0x24;

/// A ZGFX decompressor (its 2.5 MB history), shown by name only.
pub struct Zgfx(ironrdp_graphics::zgfx::Decompressor);

impl std::fmt::Debug for Zgfx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Zgfx")
    }
}

impl Default for Zgfx {
    fn default() -> Self {
        Self(ironrdp_graphics::zgfx::Decompressor::new())
    }
}

impl Zgfx {
    /// One message's bytes, decompressed, when [`scan`] takes it and it decompresses to at most
    /// `max` bytes; `None` otherwise (nothing of it is decompressed unless the walk took it
    /// whole, and then the history takes it as the client's does).
    pub fn decompress(&mut self, message: &[u8], max: usize) -> Option<Vec<u8>> {
        let size = scan(message, max)?;
        let mut out = Vec::with_capacity(size);
        if let Err(error) = self.0.decompress(message, &mut out) {
            tracing::debug!(error = %error, "graphics pipeline data that does not decompress");
            return None;
        }
        (out.len() == size).then_some(out)
    }
}

/// Walks ZGFX segmented data (descriptor 0xE0, one segment, or 0xE1, multipart) without
/// decompressing it: the number of bytes it decompresses to, or `None` when it is not exactly
/// well-formed (see the module's text) or would decompress to more than `max` bytes.
pub fn scan(message: &[u8], max: usize) -> Option<usize> {
    let (&descriptor, rest) = message.split_first()?;
    match descriptor {
        0xE0 => segment(rest, max),
        0xE1 => {
            let count = u16::from_le_bytes(rest.get(..2)?.try_into().ok()?);
            let size = usize::try_from(u32::from_le_bytes(rest.get(2..6)?.try_into().ok()?)).ok()?;
            if size > max {
                return None;
            }
            let mut rest = &rest[6..];
            let mut total = 0usize;
            for _ in 0..count {
                let length = usize::try_from(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
                let data = rest.get(4..4usize.checked_add(length)?)?;
                rest = &rest[4 + length..];
                total = total.checked_add(segment(data, size - total)?)?;
            }
            // Nobody reads bytes after the last segment: refused, not passed unread.
            (rest.is_empty() && total == size).then_some(total)
        }
        _ => None,
    }
}

/// One RDP8_BULK_ENCODED_DATA: header byte and data; what it decompresses to, at most `max`.
fn segment(s: &[u8], max: usize) -> Option<usize> {
    let (&header, data) = s.split_first()?;
    let max = max.min(MAX_SEGMENT);
    match header {
        SEGMENT_PLAIN => (data.len() <= max).then_some(data.len()),
        SEGMENT_COMPRESSED => compressed(data, max),
        _ => None,
    }
}

/// What a ZGFX token's prefix (up to 9 bits) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// Not a prefix of the table.
    None,
    /// `0` and 8 bits of the byte.
    NullLiteral,
    /// A byte of the table's own, its prefix so many bits long.
    Literal(u8),
    /// A match: prefix length, distance value bits, distance base.
    Match(u8, u8, u32),
}

/// The token table of MS-RDPEGFX 3.1.9.1.3 (as IronRDP's decompressor reads it): prefix bits,
/// then for a literal `None`, for a match its distance value bits and base.
const TOKENS: [(&str, Option<(u8, u32)>); 39] = [
    ("11000", None),
    ("11001", None),
    ("110100", None),
    ("110101", None),
    ("110110", None),
    ("1101110", None),
    ("1101111", None),
    ("1110000", None),
    ("1110001", None),
    ("1110010", None),
    ("1110011", None),
    ("1110100", None),
    ("1110101", None),
    ("1110110", None),
    ("1110111", None),
    ("1111000", None),
    ("1111001", None),
    ("1111010", None),
    ("1111011", None),
    ("1111100", None),
    ("1111101", None),
    ("11111100", None),
    ("11111101", None),
    ("11111110", None),
    ("11111111", None),
    ("10001", Some((5, 0))),
    ("10010", Some((7, 32))),
    ("10011", Some((9, 160))),
    ("10100", Some((10, 672))),
    ("10101", Some((12, 1_696))),
    ("101100", Some((14, 5_792))),
    ("101101", Some((15, 22_176))),
    ("1011100", Some((18, 54_944))),
    ("1011101", Some((20, 317_088))),
    ("10111100", Some((20, 1_365_664))),
    ("10111101", Some((21, 2_414_240))),
    ("101111100", Some((22, 4_511_392))),
    ("101111101", Some((23, 8_705_696))),
    ("101111110", Some((24, 17_094_304))),
];

/// The token each 9-bit window starts with (the code is prefix-free, no prefix longer than 9).
static TABLE: LazyLock<[Token; 512]> = LazyLock::new(|| {
    let mut table = [Token::None; 512];
    for (window, token) in table.iter_mut().enumerate() {
        if window >> 8 == 0 {
            *token = Token::NullLiteral;
            continue;
        }
        for (prefix, kind) in TOKENS {
            let bits = u32::from_str_radix(prefix, 2).expect("a binary prefix");
            if window >> (9 - prefix.len()) == bits as usize {
                let n = u8::try_from(prefix.len()).expect("a short prefix");
                *token = match kind {
                    None => Token::Literal(n),
                    Some((size, base)) => Token::Match(n, size, base),
                };
            }
        }
    }
    table
});

/// Bits of a compressed segment, most significant first, up to `end`.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
    end: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        if self.at >= self.end {
            return None;
        }
        let b = self.data[self.at / 8] >> (7 - self.at % 8) & 1;
        self.at += 1;
        Some(u32::from(b))
    }

    /// `n` bits (at most 32) as a number.
    fn read(&mut self, n: usize) -> Option<u32> {
        (0..n).try_fold(0u32, |v, _| Some(v << 1 | self.bit()?))
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let to = self.at.checked_add(n)?;
        (to <= self.end).then(|| self.at = to)
    }

    /// The next 9 bits without taking them, zeros past the end.
    fn peek9(&self) -> usize {
        (0..9).fold(0usize, |v, i| {
            let at = self.at + i;
            let b = if at < self.end { self.data[at / 8] >> (7 - at % 8) & 1 } else { 0 };
            v << 1 | usize::from(b)
        })
    }
}

/// A compressed segment's data: the bytes it decompresses to, at most `max`.
fn compressed(data: &[u8], max: usize) -> Option<usize> {
    let Some((&last, body)) = data.split_last() else { return Some(0) };
    // The low three bits count the unused bits of the byte before; the five high bits are
    // reserved, and FreeRDP and IronRDP read them differently.
    if last & 0xF8 != 0 {
        return None;
    }
    let end = (8 * body.len()).checked_sub(usize::from(last))?;
    let mut bits = Bits { data: body, at: 0, end };
    let mut out = 0usize;
    while bits.at < bits.end {
        let grew = match TABLE[bits.peek9()] {
            Token::None => return None,
            Token::NullLiteral => {
                bits.skip(9)?;
                1
            }
            Token::Literal(n) => {
                bits.skip(usize::from(n))?;
                1
            }
            Token::Match(n, size, base) => {
                bits.skip(usize::from(n))?;
                let distance = base + bits.read(usize::from(size))?;
                if distance == 0 {
                    // An unencoded run: 15 bits of length, then the bytes from the next byte
                    // boundary of the segment's data.
                    let length = bits.read(15)? as usize;
                    bits.skip((8 - bits.at % 8) % 8)?;
                    bits.skip(length.checked_mul(8)?)?;
                    length
                } else if distance > HISTORY {
                    return None;
                } else {
                    let mut ones = 0;
                    while bits.bit()? == 1 {
                        ones += 1;
                        // 2^21 and more is beyond any segment.
                        if ones > 20 {
                            return None;
                        }
                    }
                    if ones == 0 { 3 } else { (1usize << (ones + 1)) + bits.read(ones + 1)? as usize }
                }
            }
        };
        out = out.checked_add(grew)?;
        if out > max {
            return None;
        }
    }
    Some(out)
}

/// RDPGFX PDUs of `count` frames from frame id `first`, each filling a 64 × 64 surface 1 (which
/// `create` creates first): frames as a target sends them (ids in sequence, each drawing).
#[cfg(test)]
pub(crate) fn drawn_frames(first: u32, count: u32, create: bool) -> Vec<u8> {
    use ironrdp_egfx::pdu::{
        Color, CreateSurfacePdu, EndFramePdu, GfxPdu, PixelFormat, SolidFillPdu, StartFramePdu, Timestamp,
    };
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let rect = ExclusiveRectangle { left: 0, top: 0, right: 64, bottom: 64 };
    let fill_pixel = Color { b: 0, g: 0, r: 0, xa: 0xFF };
    let mut pdus = Vec::new();
    if create {
        pdus.push(GfxPdu::CreateSurface(CreateSurfacePdu {
            surface_id: 1,
            width: 64,
            height: 64,
            pixel_format: PixelFormat::XRgb,
        }));
    }
    for frame_id in first..first + count {
        pdus.push(GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id }));
        pdus.push(GfxPdu::SolidFill(SolidFillPdu {
            surface_id: 1,
            fill_pixel: fill_pixel.clone(),
            rectangles: vec![rect.clone()],
        }));
        pdus.push(GfxPdu::EndFrame(EndFramePdu { frame_id }));
    }
    pdus.iter().flat_map(|p| ironrdp_core::encode_vec(p).unwrap()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_graphics::zgfx::{Compressor, wrap_compressed, wrap_uncompressed};

    /// Bits into a compressed segment's data (the last byte counting the unused bits).
    fn segment_data(bits: &str) -> Vec<u8> {
        let bits: Vec<u8> = bits.bytes().filter(|b| *b != b' ').map(|b| b - b'0').collect();
        let unused = (8 - bits.len() % 8) % 8;
        let mut data: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().chain(std::iter::repeat(&0)).take(8).fold(0u8, |a, &b| a << 1 | b))
            .collect();
        data.push(u8::try_from(unused).unwrap());
        data
    }

    #[test]
    fn the_walk_counts_what_ironrdp_decompresses() {
        let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog, the quick brown fox again and again"
            .iter()
            .cycle()
            .take(20_000)
            .copied()
            .collect();
        let mut compressor = Compressor::new();
        let compressed = compressor.compress(&text).unwrap();
        let message = wrap_compressed(&compressed);
        assert!(message.len() < text.len() / 4, "it compressed");
        assert_eq!(scan(&message, 1 << 24), Some(text.len()));
        let mut z = Zgfx::default();
        assert_eq!(z.decompress(&message, 1 << 24), Some(text.clone()));
        // The history spans messages: the same text again matches it.
        let again = wrap_compressed(&compressor.compress(&text).unwrap());
        assert_eq!(z.decompress(&again, 1 << 24), Some(text.clone()));
        assert_eq!(z.decompress(&wrap_uncompressed(b"plain"), 1 << 24), Some(b"plain".to_vec()));
        // An unencoded run (distance 0): 10001 00000, 15 bits of 2, 7 padding bits, two bytes.
        let run = segment_data("10001 00000 000000000000010 0000000 0100000101000010");
        assert_eq!(Zgfx::default().decompress(&wrap_compressed(&run), 100), Some(b"AB".to_vec()));
    }

    /// IronRDP's compressor on data of every kind (runs, repeats near and far, noise), message
    /// after message on one history: the walk counts exactly what the decompressor produces, so
    /// nothing a compressor writes is refused.
    #[test]
    fn the_walk_agrees_with_ironrdps_compressor_on_mixed_data() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut compressor, mut z) = (Compressor::new(), Zgfx::default());
        let mut earlier: Vec<u8> = Vec::new();
        for round in 0..12 {
            let len = 1 + (next() % 30_000) as usize;
            let mut data = Vec::with_capacity(len);
            while data.len() < len {
                match next() % 4 {
                    0 => data.extend(std::iter::repeat_n((next() % 256) as u8, (next() % 300) as usize)),
                    1 if !earlier.is_empty() => {
                        let at = (next() as usize) % earlier.len();
                        data.extend(&earlier[at..(at + (next() % 500) as usize).min(earlier.len())]);
                    }
                    _ => data.extend((0..(next() % 200)).map(|_| (next() % 256) as u8)),
                }
            }
            data.truncate(len);
            let message = wrap_compressed(&compressor.compress(&data).unwrap());
            assert_eq!(scan(&message, 1 << 24), Some(len), "round {round}");
            assert_eq!(z.decompress(&message, 1 << 24).as_deref(), Some(&data[..]), "round {round}");
            earlier = data;
        }
    }

    #[test]
    fn bounds_hold_before_anything_is_decompressed() {
        // A literal, then a match of distance 1 and length 2^16 + 1: over a segment's bound.
        let long = segment_data("11000 10001 00001 111111111111111 0 0000000000000001");
        assert_eq!(scan(&wrap_compressed(&long), 1 << 24), None);
        let mut z = Zgfx::default();
        assert_eq!(z.decompress(&wrap_compressed(&long), 1 << 24), None);
        // Length 2^15 + 1 fits a segment, not a bound of 1000.
        let fits = segment_data("11000 10001 00001 11111111111111 0 000000000000001");
        assert_eq!(scan(&wrap_compressed(&fits), 1 << 24), Some(1 + (1 << 15) + 1));
        assert_eq!(scan(&wrap_compressed(&fits), 1000), None);
        // Reserved bits in the last byte; an unknown header; a prefix not in the table.
        let mut reserved = segment_data("11000");
        *reserved.last_mut().unwrap() |= 0x08;
        assert_eq!(scan(&wrap_compressed(&segment_data("11000")), 10), Some(1));
        assert_eq!(scan(&wrap_compressed(&reserved), 10), None);
        assert_eq!(scan(&[0xE0, 0x34, 0x00], 10), None);
        assert_eq!(scan(&[0xE0, 0x05, 0x00], 10), None);
        assert_eq!(scan(&wrap_compressed(&segment_data("10000 00000")), 10), None);
        // Multipart: exact sizes, nothing after the last segment.
        let multipart = |size: u32, tail: &[u8]| {
            let mut m = vec![0xE1, 2, 0];
            m.extend(size.to_le_bytes());
            for s in [&b"ab"[..], b"cde"] {
                m.extend(u32::try_from(s.len() + 1).unwrap().to_le_bytes());
                m.push(SEGMENT_PLAIN);
                m.extend(s);
            }
            m.extend(tail);
            m
        };
        assert_eq!(Zgfx::default().decompress(&multipart(5, &[]), 10), Some(b"abcde".to_vec()));
        assert_eq!(scan(&multipart(5, &[0]), 10), None);
        assert_eq!(scan(&multipart(6, &[]), 10), None);
        assert_eq!(scan(&multipart(4, &[]), 10), None);
        assert_eq!(scan(&multipart(5, &[]), 4), None);
    }
}
