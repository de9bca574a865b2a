//! Pointer updates from the target read exactly and made canonical in place: every byte of a
//! pointer the client gets either changes what it draws the way the recorder draws it, or is
//! zero. A pointer's free bytes — colours under fully transparent pixels, AND-mask bits that
//! change nothing, row padding, the optional pad byte, TS_POINTER_PDU's pad2Octets — were a
//! pipe from any program of the session to the client that the video never shows (red team
//! `h-red17m`, hole 5).
//!
//! What is drawn follows IronRDP's reading (`ironrdp_graphics::pointer`, the recorder's): rows
//! padded to 2 bytes, a pixel's AND bit matters only over opaque black (transparent) or opaque
//! white (inverted), a 32 bpp pixel's colour only as finely as its alpha shows it. Depths the
//! peers read differently (indexed, 16 bpp) are refused.

/// Fast-path pointer update codes (MS-RDPBCGR 2.2.9.1.2.1).
pub(crate) mod code {
    pub const NULL: u8 = 0x5;
    pub const DEFAULT: u8 = 0x6;
    pub const POSITION: u8 = 0x8;
    pub const COLOR: u8 = 0x9;
    pub const CACHED: u8 = 0xA;
    pub const NEW: u8 = 0xB;
    pub const LARGE: u8 = 0xC;
}

/// Slow-path TS_POINTER_PDU message types.
const SYSTEM: u16 = 0x0001;
const POSITION: u16 = 0x0003;
const COLOR: u16 = 0x0006;
const CACHED: u16 = 0x0007;
const NEW: u16 = 0x0008;
const LARGE: u16 = 0x0009;
/// SYSPTR_NULL and SYSPTR_DEFAULT.
const SYSTEM_POINTERS: [u32; 2] = [0, 0x7F00];

/// The largest pointer a color or new pointer update may hold, and a large pointer update.
const MAX_SIDE: u16 = 96;
const MAX_LARGE_SIDE: u16 = 384;
/// The xorBpp values both peers read alike. Not 4 and 8 (indices into palettes the peers hold
/// differently: IronRDP's default one draws most of them black, FreeRDP's starts zeroed, so an
/// index carried 7 free bits), nor 16 (FreeRDP reads RGB555, IronRDP RGB565): red team
/// `h-red17p`. Targets send 1, 24 and 32 bpp pointers (xrdp 24 or 32, Windows 1 or 32).
const BPP: [u16; 3] = [1, 24, 32];

/// Why a pointer update ends the session.
pub const POINTER_UNREADABLE: &str =
    "the target sent a pointer update that is not exactly one pointer as clients and the recorder read it";

/// Whether a fast-path update of this code is a pointer update.
pub(crate) fn is_fast_path_pointer(update_code: u8) -> bool {
    matches!(update_code, code::NULL | code::DEFAULT | 0x8..=0xC)
}

/// Canonicalises one fast-path pointer update's data (all its fragments joined) in place.
pub(crate) fn fast_path(update_code: u8, data: &mut [u8]) -> Result<(), &'static str> {
    match update_code {
        code::NULL | code::DEFAULT => exact(data, 0),
        code::POSITION => exact(data, 4),
        code::CACHED => exact(data, 2),
        code::COLOR => color(data, 24, MAX_SIDE, true),
        code::NEW => new_pointer(data),
        code::LARGE => large(data),
        _ => Err(POINTER_UNREADABLE),
    }
}

/// Canonicalises a slow-path TS_POINTER_PDU (what follows the Share Data header) in place.
pub(crate) fn slow_path(body: &mut [u8]) -> Result<(), &'static str> {
    let kind = u16_at(body, 0).ok_or(POINTER_UNREADABLE)?;
    let pad = body.get_mut(2..4).ok_or(POINTER_UNREADABLE)?;
    pad.fill(0);
    let message = &mut body[4..];
    match kind {
        SYSTEM => {
            exact(message, 4)?;
            let which = u32::from_le_bytes([message[0], message[1], message[2], message[3]]);
            if SYSTEM_POINTERS.contains(&which) { Ok(()) } else { Err(POINTER_UNREADABLE) }
        }
        POSITION => exact(message, 4),
        CACHED => exact(message, 2),
        COLOR => color(message, 24, MAX_SIDE, true),
        NEW => new_pointer(message),
        LARGE => large(message),
        _ => Err(POINTER_UNREADABLE),
    }
}

/// The fast-path code of a (canonical) slow-path TS_POINTER_PDU's message.
pub(crate) fn slow_path_code(body: &[u8]) -> Option<u8> {
    Some(match u16_at(body, 0)? {
        SYSTEM => match u32_at(body, 4)? {
            0 => code::NULL,
            _ => code::DEFAULT,
        },
        POSITION => code::POSITION,
        COLOR => code::COLOR,
        CACHED => code::CACHED,
        NEW => code::NEW,
        LARGE => code::LARGE,
        _ => return None,
    })
}

fn exact(data: &[u8], len: usize) -> Result<(), &'static str> {
    if data.len() == len { Ok(()) } else { Err(POINTER_UNREADABLE) }
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// TS_POINTERATTRIBUTE: xorBpp, then a TS_COLORPOINTERATTRIBUTE of that depth.
fn new_pointer(data: &mut [u8]) -> Result<(), &'static str> {
    let bpp = u16_at(data, 0).ok_or(POINTER_UNREADABLE)?;
    color(&mut data[2..], bpp, MAX_SIDE, true)
}

/// TS_COLORPOINTERATTRIBUTE: cacheIndex, hotSpot, width, height, lengthAndMask,
/// lengthXorMask (2 bytes each), the XOR mask, the AND mask, an optional pad byte (zeroed).
fn color(data: &mut [u8], bpp: u16, max_side: u16, pad: bool) -> Result<(), &'static str> {
    let field = |i: usize| u16_at(data, i).ok_or(POINTER_UNREADABLE);
    let (width, height) = (field(6)?, field(8)?);
    let (and_len, xor_len) = (usize::from(field(10)?), usize::from(field(12)?));
    hot_spot(&mut data[2..6], width, height);
    let shape = Shape { bpp, width, height, max_side };
    masks(&mut data[14..], shape, xor_len, and_len, pad)
}

/// TS_LARGEPOINTERATTRIBUTE: xorBpp, cacheIndex, hotSpot, width, height (2 bytes each),
/// lengthAndMask, lengthXorMask (4 bytes each), the XOR mask, the AND mask.
fn large(data: &mut [u8]) -> Result<(), &'static str> {
    let field = |i: usize| u16_at(data, i).ok_or(POINTER_UNREADABLE);
    let (bpp, width, height) = (field(0)?, field(8)?, field(10)?);
    let and_len = u32_at(data, 12).ok_or(POINTER_UNREADABLE)? as usize;
    let xor_len = u32_at(data, 16).ok_or(POINTER_UNREADABLE)? as usize;
    hot_spot(&mut data[4..8], width, height);
    let shape = Shape { bpp, width, height, max_side: MAX_LARGE_SIDE };
    masks(&mut data[20..], shape, xor_len, and_len, false)
}

/// A hot spot (x, y) FreeRDP would move: one at or past the picture's width or height is 0
/// there (FreeRDP resets it, IronRDP kept it and placed the pointer far off the video: red team
/// `h-red17p`), and an empty pointer's is 0 (drawn by neither).
fn hot_spot(xy: &mut [u8], width: u16, height: u16) {
    let (x, y) = (u16::from_le_bytes([xy[0], xy[1]]), u16::from_le_bytes([xy[2], xy[3]]));
    if x >= width || width == 0 || height == 0 {
        xy[..2].fill(0);
    }
    if y >= height || width == 0 || height == 0 {
        xy[2..].fill(0);
    }
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    bpp: u16,
    width: u16,
    height: u16,
    max_side: u16,
}

/// Bytes of a row of `bits` bits, padded to 2 bytes as both peers read rows.
fn stride(bits: usize) -> usize {
    bits.div_ceil(16) * 2
}

/// The XOR and AND masks (and the optional pad byte after them) of a pointer of `shape`.
fn masks(rest: &mut [u8], shape: Shape, xor_len: usize, and_len: usize, pad: bool) -> Result<(), &'static str> {
    let Shape { bpp, width, height, max_side } = shape;
    if !BPP.contains(&bpp) || width > max_side || height > max_side {
        return Err(POINTER_UNREADABLE);
    }
    let (w, h) = (usize::from(width), usize::from(height));
    let (xor_stride, and_stride) = (stride(w * usize::from(bpp)), stride(w));
    // An empty pointer (the peers draw nothing; its hot spot was zeroed) carries nothing either.
    // A hot spot outside the picture is drawn alike by both peers: it stays.
    if xor_len != xor_stride * h || (and_len != 0 && and_len != and_stride * h) {
        return Err(POINTER_UNREADABLE);
    }
    let end = xor_len + and_len;
    match rest.len().checked_sub(end) {
        Some(0) => {}
        Some(1) if pad => rest[end] = 0,
        _ => return Err(POINTER_UNREADABLE),
    }
    if w == 0 || h == 0 {
        return Ok(());
    }
    let (xor, and) = rest[..end].split_at_mut(xor_len);
    for row in 0..h {
        let xor_row = &mut xor[row * xor_stride..(row + 1) * xor_stride];
        let mut and_row = (!and.is_empty()).then(|| &mut and[row * and_stride..(row + 1) * and_stride]);
        clear_bits_from(xor_row, w * usize::from(bpp));
        if let Some(a) = and_row.as_deref_mut() {
            clear_bits_from(a, w);
        }
        for x in 0..w {
            let keeps_and = match bpp {
                32 => {
                    let px = &mut xor_row[x * 4..x * 4 + 4];
                    // Alpha only as finely as the video draws it: at or above
                    // POINTER_MAX_ALPHA the recorder draws every value alike, so the client
                    // gets one, opaque (red team `h-red17r`, hole 9: 192 values a pixel).
                    if px[3] < FAINTEST {
                        px[3] = 0;
                    } else if px[3] >= crate::decode::POINTER_MAX_ALPHA {
                        px[3] = 0xFF;
                    }
                    let alpha = px[3];
                    for c in &mut px[..3] {
                        *c = visible_colour(*c, alpha);
                    }
                    px == [0, 0, 0, 0xFF] || px == [0xFF; 4]
                }
                24 => {
                    let px = &mut xor_row[x * 3..x * 3 + 3];
                    for c in px.iter_mut() {
                        *c = visible_colour(*c, 0xFF);
                    }
                    matches!(px, [0, 0, 0] | [0xFF, 0xFF, 0xFF])
                }
                // Monochrome pixels are black or white.
                _ => true,
            };
            if !keeps_and && let Some(a) = and_row.as_deref_mut() {
                a[x / 8] &= !(0x80 >> (x % 8));
            }
        }
    }
    Ok(())
}

/// Pixels fainter than this (of 255) are fully transparent: under 6 % a pixel moves the
/// client's screen by at most 15 levels, which the video (a quarter of that, then H.264) does
/// not keep.
const FAINTEST: u8 = 16;

/// A colour channel of a pixel of `alpha` kept only as finely as the video shows it: what the
/// recorder blends is `c × min(alpha, POINTER_MAX_ALPHA) / 255`, so colours that blend alike are one (red team `h-red17p`: an alpha-1
/// pixel moved no channel by more than a level, yet carried three free bytes); alpha 0 is 0.
fn visible_colour(c: u8, alpha: u8) -> u8 {
    if alpha < FAINTEST {
        return 0;
    }
    // The video draws the pointer at `POINTER_MAX_ALPHA` at most: finer colours than that shows
    // are lost there (red team `h-red17q`: opaque pixels kept two free bits a channel).
    let (c, a) = (u32::from(c), u32::from(alpha.min(crate::decode::POINTER_MAX_ALPHA)));
    let shown = (c * a + 127) / 255;
    ((shown * 255 + a / 2) / a).min(255) as u8
}

/// Zeroes every bit of `row` from bit `from` on (MSB first, as masks are read).
fn clear_bits_from(row: &mut [u8], from: usize) {
    let (byte, bit) = (from / 8, from % 8);
    if byte >= row.len() {
        return;
    }
    if bit != 0 {
        row[byte] &= !(0xFFu8 >> bit);
        row[byte + 1..].fill(0);
    } else {
        row[byte..].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS_COLORPOINTERATTRIBUTE of `bpp` (a New Pointer when `bpp` is given first).
    pub(crate) fn attribute(w: u16, h: u16, bpp: u16, xor: &[u8], and: &[u8]) -> Vec<u8> {
        let mut d = bpp.to_le_bytes().to_vec();
        d.extend(0u16.to_le_bytes());
        d.extend([0, 0, 0, 0]);
        d.extend(w.to_le_bytes());
        d.extend(h.to_le_bytes());
        d.extend(u16::try_from(and.len()).unwrap().to_le_bytes());
        d.extend(u16::try_from(xor.len()).unwrap().to_le_bytes());
        d.extend(xor);
        d.extend(and);
        d
    }

    #[test]
    fn invisible_pixels_and_idle_and_bits_are_zeroed_visible_ones_kept() {
        // 2x1, 32 bpp: an invisible pixel with colour, an opaque red one; row padded to 8 bytes
        // already (2 pixels × 4). AND row: 2 bytes, both pixel bits set, padding bits set.
        let xor = [1, 2, 3, 0, 0, 0, 0xFF, 0xFF];
        let mut d = attribute(2, 1, 32, &xor, &[0xFF, 0xFF]);
        fast_path(code::NEW, &mut d).unwrap();
        assert_eq!(&d[16..24], &[0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
        assert_eq!(&d[24..26], &[0, 0], "neither AND bit changes what is drawn");
        // Opaque black and white keep their AND bits: they draw transparent and inverted.
        let xor = [0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        let mut d = attribute(2, 1, 32, &xor, &[0xC0, 0]);
        fast_path(code::NEW, &mut d).unwrap();
        assert_eq!(&d[24..26], &[0xC0, 0]);
    }

    #[test]
    fn row_padding_and_the_pad_byte_are_zeroed() {
        // 3x1 at 24 bpp: 9 bytes of colour, 1 of padding; AND row 2 bytes, 3 bits used.
        let mut xor = vec![0x10; 9];
        xor.push(0xAB);
        let mut d = attribute(3, 1, 24, &xor, &[0xFF, 0xFF]);
        d.push(0x77);
        fast_path(code::NEW, &mut d).unwrap();
        assert_eq!(d[16 + 9], 0);
        assert_eq!(&d[26..28], &[0, 0]);
        assert_eq!(d[28], 0, "the pad byte");
    }

    #[test]
    fn a_pointer_not_exactly_its_fields_is_refused() {
        let xor = vec![0; 8];
        let mut long = attribute(2, 1, 32, &xor, &[0, 0]);
        long.extend([0, 0]);
        assert_eq!(fast_path(code::NEW, &mut long), Err(POINTER_UNREADABLE));
        let mut short_xor = attribute(2, 1, 32, &xor[..4], &[0, 0]);
        assert_eq!(fast_path(code::NEW, &mut short_xor), Err(POINTER_UNREADABLE));
        let mut bpp15 = attribute(1, 1, 15, &[0, 0], &[0, 0]);
        assert_eq!(fast_path(code::NEW, &mut bpp15), Err(POINTER_UNREADABLE));
        let mut big = attribute(97, 1, 1, &vec![0; stride(97)], &vec![0; stride(97)]);
        assert_eq!(fast_path(code::NEW, &mut big), Err(POINTER_UNREADABLE));
        assert_eq!(fast_path(code::NULL, &mut [0]), Err(POINTER_UNREADABLE));
        assert_eq!(fast_path(code::POSITION, &mut [0; 5]), Err(POINTER_UNREADABLE));
        let mut empty = attribute(0, 0, 32, &[], &[]);
        empty[4] = 9;
        fast_path(code::NEW, &mut empty).unwrap();
        assert_eq!(empty[4], 0, "an empty pointer's hot spot");
    }

    #[test]
    fn slow_path_pads_are_zeroed_and_system_pointers_exact() {
        let mut pdu = vec![0x01, 0x00, 0xAA, 0xBB, 0x00, 0x7F, 0x00, 0x00];
        slow_path(&mut pdu).unwrap();
        assert_eq!(&pdu[2..4], &[0, 0]);
        let mut other = vec![0x01, 0x00, 0, 0, 0x01, 0x7F, 0x00, 0x00];
        assert_eq!(slow_path(&mut other), Err(POINTER_UNREADABLE));
    }
}
