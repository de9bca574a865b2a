//! What the stage would drop without a word: each target screen PDU is walked (fast-path
//! fragments reassembled) before IronRDP's session stage sees it, to find what the stage ignores
//! or misreads while a real client (FreeRDP, mstsc) draws it. Anything found is a gap the
//! decoder states ([`super::DecodeError::Unrecorded`]), never a silent drop.

use ironrdp_pdu::bitmap::{BitmapUpdateData, Compression};
use ironrdp_pdu::fast_path::{FastPathUpdate, UpdateCode};
use ironrdp_pdu::geometry::Rectangle as _;

/// The most a fragmented fast-path update is reassembled to (FreeRDP's default
/// MultifragMaxRequestSize is far below; a longer one is a gap, not memory).
const MAX_FRAGMENTED: usize = 16 << 20;

const UPDATETYPE_ORDERS: u16 = 0x0;
const UPDATETYPE_BITMAP: u16 = 0x1;
const UPDATETYPE_PALETTE: u16 = 0x2;
const UPDATETYPE_SYNCHRONIZE: u16 = 0x3;

const FRAGMENT_SINGLE: u8 = 0;
const FRAGMENT_LAST: u8 = 1;
const FRAGMENT_FIRST: u8 = 2;

/// Codecs of surface bits the stage draws: none (raw pixels) and RemoteFX.
const CODEC_NONE: u8 = 0;
const CODEC_REMOTEFX: u8 = 3;

/// A fragmented fast-path update being reassembled.
#[derive(Debug)]
struct Pending {
    code: u8,
    data: Vec<u8>,
}

/// Walks the target's fast-path PDUs in session order.
#[derive(Debug, Default)]
pub(crate) struct FastPathAudit {
    pending: Option<Pending>,
    /// The desktop the stage draws on (width, height), once known: bitmap rectangles are
    /// judged against it.
    pub(crate) desktop: Option<(u16, u16)>,
}

impl FastPathAudit {
    /// What of this fast-path output PDU the stage cannot draw, if anything. Every update is
    /// walked even after a finding, so the reassembly stays in step with the stage's.
    pub(crate) fn check(&mut self, frame: &[u8]) -> Result<(), &'static str> {
        const ENCRYPTED: u8 = 0x80;
        const COMPRESSION_USED: u8 = 0x2;
        const PACKET_COMPRESSED: u8 = 0x20;
        let Some((length, mut at)) = super::fast_path_length(frame) else { return Err(TRUNCATED) };
        if frame.first().is_some_and(|h| h & ENCRYPTED != 0) {
            // No RDP encryption under TLS: the stage cannot read it, the client might.
            self.pending = None;
            return Err("an encrypted fast-path pdu");
        }
        if length != frame.len() {
            self.pending = None;
            return Err(TRUNCATED);
        }
        let mut found = Ok(());
        while at < length {
            let header = frame[at];
            let (code, fragment) = (header & 0x0F, (header >> 4) & 0x03);
            let mut compressed = false;
            at += 1;
            if header >> 6 == COMPRESSION_USED {
                compressed = frame.get(at).is_some_and(|f| f & PACKET_COMPRESSED != 0);
                at += 1;
            }
            let Some(size) = frame.get(at..at + 2).map(|s| usize::from(u16::from_le_bytes([s[0], s[1]]))) else {
                self.pending = None;
                return found.and(Err(TRUNCATED));
            };
            at += 2;
            let Some(data) = frame.get(at..at + size) else {
                self.pending = None;
                return found.and(Err(TRUNCATED));
            };
            at += size;
            let result = if compressed {
                // The box switches bulk compression off; a compressed body cannot be read.
                self.pending = None;
                Err("a bulk-compressed update")
            } else {
                self.fragment(code, fragment, data, self.desktop)
            };
            found = found.and(result);
        }
        found
    }

    fn fragment(
        &mut self,
        code: u8,
        fragment: u8,
        data: &[u8],
        desktop: Option<(u16, u16)>,
    ) -> Result<(), &'static str> {
        match fragment {
            FRAGMENT_SINGLE | FRAGMENT_FIRST => {
                let unfinished = self.pending.take().is_some();
                let found = if fragment == FRAGMENT_SINGLE {
                    fast_path_update(code, data, desktop)
                } else {
                    self.pending = Some(Pending { code, data: data.to_vec() });
                    Ok(())
                };
                if unfinished { Err("a fragmented update left unfinished") } else { found }
            }
            _ => {
                let Some(pending) = self.pending.as_mut().filter(|p| p.code == code) else {
                    self.pending = None;
                    return Err("an update fragment without its first");
                };
                if pending.data.len() + data.len() > MAX_FRAGMENTED {
                    self.pending = None;
                    return Err("a fragmented update too large to reassemble");
                }
                pending.data.extend_from_slice(data);
                if fragment != FRAGMENT_LAST {
                    return Ok(());
                }
                let whole = self.pending.take().map(|p| p.data).unwrap_or_default();
                fast_path_update(code, &whole, desktop)
            }
        }
    }
}

const TRUNCATED: &str = "a truncated fast-path pdu";

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// One whole, uncompressed fast-path update. FreeRDP reads the bitmap and palette codes alike,
/// by the body's own updateType, while the stage goes by the code: the two must agree.
fn fast_path_update(code: u8, data: &[u8], desktop: Option<(u16, u16)>) -> Result<(), &'static str> {
    const SYNCHRONIZE: u8 = 0x3;
    if code == SYNCHRONIZE {
        return Ok(());
    }
    let update_code = match code {
        0x0 => UpdateCode::Orders,
        0x1 => UpdateCode::Bitmap,
        0x2 => UpdateCode::Palette,
        0x4 => UpdateCode::SurfaceCommands,
        0x5 => UpdateCode::HiddenPointer,
        0x6 => UpdateCode::DefaultPointer,
        0x8 => UpdateCode::PositionPointer,
        0x9 => UpdateCode::ColorPointer,
        0xA => UpdateCode::CachedPointer,
        0xB => UpdateCode::NewPointer,
        0xC => UpdateCode::LargePointer,
        _ => return Err("an update of an unknown type"),
    };
    match update_code {
        UpdateCode::Orders => return Err("drawing orders"),
        UpdateCode::Bitmap if u16_at(data, 0) != Some(UPDATETYPE_BITMAP) => {
            return Err("a bitmap update whose body is not a bitmap");
        }
        UpdateCode::Palette => return palette(data),
        _ => {}
    }
    // What the stage's decoding rejects, it skips with a warning: the client may draw it.
    match FastPathUpdate::decode_with_code(data, update_code) {
        Ok(FastPathUpdate::SurfaceCommands(commands)) => surface_commands(&commands),
        Ok(FastPathUpdate::Bitmap(bitmap)) => bitmap_rectangles(&bitmap, desktop),
        Ok(_) => Ok(()),
        Err(_) => Err("an update the decoder cannot read"),
    }
}

/// A palette update (`TS_UPDATE_PALETTE_DATA`) the stage applies: it takes only a whole one of
/// 256 colours and ignores any other, which the client would apply.
fn palette(data: &[u8]) -> Result<(), &'static str> {
    match u16_at(data, 0) {
        Some(UPDATETYPE_PALETTE) => {}
        Some(UPDATETYPE_BITMAP) => return Err("a bitmap sent under the palette update code"),
        _ => return Err("a palette update whose body is not a palette"),
    }
    let colors = data.get(4..8).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if colors != Some(256) || data.len() < 8 + 256 * 3 {
        return Err("a palette the decoder does not apply");
    }
    Ok(())
}

fn surface_commands(commands: &[ironrdp_pdu::surface_commands::SurfaceCommand<'_>]) -> Result<(), &'static str> {
    use ironrdp_pdu::surface_commands::SurfaceCommand;
    for command in commands {
        if let SurfaceCommand::SetSurfaceBits(bits) | SurfaceCommand::StreamSurfaceBits(bits) = command {
            let ext = &bits.extended_bitmap_data;
            match ext.codec_id {
                // Raw pixels: FreeRDP draws a bitmap of at least width x height pixels, clipped
                // to the destination; the stage wants exactly the destination's pixels and drops
                // any other under its once-only redraw request (red team h-red17i). Both draw the
                // same only when the bitmap is the destination's size and its data its pixels.
                CODEC_NONE if matches!(ext.bpp, 8 | 15 | 16 | 24 | 32) => {
                    let d = &bits.destination;
                    let (width, height) = (d.right.saturating_sub(d.left), d.bottom.saturating_sub(d.top));
                    let pixels = usize::from(width) * usize::from(height);
                    if (ext.width, ext.height) != (width, height)
                        || ext.data.len() != pixels * usize::from(ext.bpp).div_ceil(8)
                    {
                        return Err("raw surface bits that are not their destination's pixels");
                    }
                }
                CODEC_REMOTEFX => {}
                _ => return Err("surface bits in a codec the decoder does not draw"),
            }
        }
    }
    Ok(())
}

/// Whether the stage draws every rectangle of a bitmap update on `desktop`. IronRDP 0.13's stage
/// drops a rectangle whose destination does not lie on the desktop or does not match its size
/// (`DecodedImage::bitmap_destination`), an uncompressed one at a depth it does not draw or whose
/// data is not exactly its rows (`require_bitmap_data_size`), and a compressed one at a depth its
/// RLE decoder does not read, and asks for a redraw only for the first such drop of a session
/// (`request_bitmap_recovery` is once-only): later drops were silent, while FreeRDP draws what of
/// the rectangle falls on its desktop (red team h-red17i). Each is a gap here, every time. (A
/// compressed stream that does not decode is still found only by the stage.)
fn bitmap_rectangles(bitmap: &BitmapUpdateData<'_>, desktop: Option<(u16, u16)>) -> Result<(), &'static str> {
    let Some((width, height)) = desktop else { return Ok(()) };
    for r in &bitmap.rectangles {
        let d = &r.rectangle;
        let on_desktop = d.left <= d.right && d.top <= d.bottom && d.right < width && d.bottom < height;
        if !on_desktop || r.width < d.width() || d.height() != r.height {
            return Err("a bitmap rectangle off the desktop or not the size of its destination");
        }
        let bpp = usize::from(r.bits_per_pixel);
        if r.compression_flags.contains(Compression::BITMAP_COMPRESSION) {
            if !matches!(bpp, 8 | 15 | 16 | 24 | 32) {
                return Err("a compressed bitmap at a depth the decoder does not read");
            }
            continue;
        }
        if !matches!(bpp, 8 | 15 | 16 | 24 | 32) {
            return Err("an uncompressed bitmap at a depth the decoder does not draw");
        }
        let row = usize::from(r.width) * bpp.div_ceil(8);
        let padded = (row + 3) & !3;
        let rows = usize::from(r.height);
        let whole =
            if padded == row { r.bitmap_data.len() == row * rows } else { r.bitmap_data.len() >= padded * rows };
        if !whole {
            return Err("an uncompressed bitmap whose data is not its rows");
        }
    }
    Ok(())
}

/// What of a slow-path message on the I/O channel (Share Control PDUs back to back) the stage
/// would skip: drawing orders (it reads only windowing orders) and palettes it does not apply.
pub(crate) fn slow_path(data: &[u8], desktop: Option<(u16, u16)>) -> Result<(), &'static str> {
    const PDUTYPE_DATAPDU: u16 = 0x7;
    const PDUTYPE2_UPDATE: u8 = 0x02;
    const PACKET_COMPRESSED: u8 = 0x20;
    let mut at = 0;
    while at < data.len() {
        let (Some(length), Some(kind)) = (u16_at(data, at), u16_at(data, at + 2)) else { return Ok(()) };
        let length = usize::from(length);
        let Some(pdu) = data.get(at..at + length).filter(|_| length >= 6) else { return Ok(()) };
        at += length;
        // Share Data header: pduType2 at 14, compressedType at 15, then the update at 18.
        if kind & 0x0F != PDUTYPE_DATAPDU
            || pdu.get(14) != Some(&PDUTYPE2_UPDATE)
            || pdu.get(15).is_some_and(|c| c & PACKET_COMPRESSED != 0)
        {
            continue;
        }
        let update = pdu.get(18..).unwrap_or_default();
        match u16_at(update, 0) {
            Some(UPDATETYPE_ORDERS) => return Err("drawing orders"),
            Some(UPDATETYPE_PALETTE) => palette(update)?,
            // One the stage cannot decode fails it: an error, already a gap.
            Some(UPDATETYPE_BITMAP) => {
                if let Ok(bitmap) = ironrdp_core::decode::<BitmapUpdateData<'_>>(update) {
                    bitmap_rectangles(&bitmap, desktop)?;
                }
            }
            Some(UPDATETYPE_SYNCHRONIZE) => {}
            // The stage fails on anything else: an error, already a gap.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fast-path output PDU of `(updateHeader, body)` updates; a compressed header gets a
    /// compressionFlags byte saying compressed.
    fn fast(updates: &[(u8, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (header, data) in updates {
            body.push(*header);
            if header >> 6 == 2 {
                body.push(0x20);
            }
            body.extend(u16::try_from(data.len()).unwrap().to_le_bytes());
            body.extend(*data);
        }
        let mut frame = vec![0x00, 0x80, 0x00];
        frame.extend(body);
        let len = u16::try_from(frame.len()).unwrap() | 0x8000;
        frame[1..3].copy_from_slice(&len.to_be_bytes());
        frame
    }

    fn palette(colors: u32) -> Vec<u8> {
        let mut p = vec![0x02, 0x00, 0x00, 0x00];
        p.extend(colors.to_le_bytes());
        p.extend(std::iter::repeat_n(0x40, 3 * colors as usize));
        p
    }

    /// A bitmap update of one 1x1 raw rectangle at 32 bpp.
    fn bitmap() -> Vec<u8> {
        let mut b = vec![0x01, 0x00, 0x01, 0x00];
        for v in [0u16, 0, 0, 0, 1, 1, 32, 0, 4] {
            b.extend(v.to_le_bytes());
        }
        b.extend([1, 2, 3, 0]);
        b
    }

    fn check(frame: &[u8]) -> Result<(), &'static str> {
        FastPathAudit::default().check(frame)
    }

    /// What the stage draws in full passes: bitmaps, a whole palette, synchronize, pointers,
    /// raw surface bits at a depth it draws, frame markers it knows, fragments in order.
    #[test]
    fn what_the_stage_draws_passes() {
        let pal = palette(256);
        assert_eq!(check(&fast(&[(0x01, &bitmap()), (0x02, &pal), (0x03, &[]), (0x05, &[]), (0x06, &[])])), Ok(()));
        let mut audit = FastPathAudit::default();
        let b = bitmap();
        assert_eq!(audit.check(&fast(&[(0x21, &b[..3])])), Ok(()));
        assert_eq!(audit.check(&fast(&[(0x31, &b[3..7])])), Ok(()));
        assert_eq!(audit.check(&fast(&[(0x11, &b[7..])])), Ok(()));
        assert!(audit.pending.is_none());
    }

    /// Every shape of update the stage skips in silence (or cannot read) while a client may
    /// draw it is a finding: orders, an unknown code, a code over another update's body, a
    /// palette the stage ignores, an update its decoding rejects, surface bits in a codec it
    /// skips, compressed or encrypted bodies, and fragments out of order.
    #[test]
    fn what_the_stage_would_skip_is_found() {
        let b = bitmap();
        let short_palette = palette(16);
        let mut marker = 0x0004u16.to_le_bytes().to_vec();
        marker.extend(7u16.to_le_bytes()); // frameAction 7: unknown
        marker.extend(1u32.to_le_bytes());
        let mut nscodec = 0x0001u16.to_le_bytes().to_vec();
        nscodec.extend([0; 8]);
        nscodec.extend([32, 0, 0, 1, 1, 0, 1, 0]);
        nscodec.extend(4u32.to_le_bytes());
        nscodec.extend([0; 4]);
        let mut raw = nscodec.clone();
        raw[13] = 0;
        // Raw pixels are drawn alike only into a destination of the bitmap's size: 1x1 at (0, 0).
        raw[6..10].copy_from_slice(&[1, 0, 1, 0]);
        for (frame, what) in [
            (fast(&[(0x00, &[1, 0])]), "drawing orders"),
            (fast(&[(0x07, &[])]), "an update of an unknown type"),
            (fast(&[(0x0D, &[])]), "an update of an unknown type"),
            (fast(&[(0x02, &b)]), "a bitmap sent under the palette update code"),
            (fast(&[(0x01, &palette(256))]), "a bitmap update whose body is not a bitmap"),
            (fast(&[(0x02, &short_palette)]), "a palette the decoder does not apply"),
            (fast(&[(0x02, &[3, 0, 0, 0])]), "a palette update whose body is not a palette"),
            (fast(&[(0x01, &b[..10])]), "an update the decoder cannot read"),
            (fast(&[(0x08, &[1])]), "an update the decoder cannot read"),
            (fast(&[(0x04, &[&raw[..], &marker].concat())]), "an update the decoder cannot read"),
            (fast(&[(0x04, &nscodec)]), "surface bits in a codec the decoder does not draw"),
            (fast(&[(0x81, &[9, 9])]), "a bulk-compressed update"),
            (fast(&[(0x11, &b)]), "an update fragment without its first"),
            (fast(&[(0x03, &[]), (0x31, &b)]), "an update fragment without its first"),
        ] {
            assert_eq!(check(&frame), Err(what), "{frame:?}");
        }
        assert_eq!(check(&fast(&[(0x04, &raw)])), Ok(()), "the raw control passes");
        let mut encrypted = fast(&[(0x01, &b)]);
        encrypted[0] |= 0x80;
        assert_eq!(check(&encrypted), Err("an encrypted fast-path pdu"));
        let mut truncated = fast(&[(0x01, &b)]);
        truncated.pop();
        assert_eq!(check(&truncated), Err(TRUNCATED));
        // A first fragment the target never finishes, then a whole update: the fragment is lost.
        let mut audit = FastPathAudit::default();
        assert_eq!(audit.check(&fast(&[(0x21, &b[..3])])), Ok(()));
        assert_eq!(audit.check(&fast(&[(0x01, &b)])), Err("a fragmented update left unfinished"));
        // Fragments reassembled before they are judged: a bitmap under the palette code, split.
        let mut audit = FastPathAudit::default();
        assert_eq!(audit.check(&fast(&[(0x22, &b[..1])])), Ok(()));
        assert_eq!(audit.check(&fast(&[(0x12, &b[1..])])), Err("a bitmap sent under the palette update code"));
        // One finding does not end the walk: the fragment behind it is still followed.
        let mut audit = FastPathAudit::default();
        assert_eq!(audit.check(&fast(&[(0x07, &[]), (0x21, &b[..3])])), Err("an update of an unknown type"));
        assert_eq!(audit.check(&fast(&[(0x11, &b[3..])])), Ok(()));
    }

    /// The slow path's share: drawing orders and palettes the stage ignores; bitmaps,
    /// synchronize and whole palettes pass.
    fn slow_path_any(data: &[u8]) -> Result<(), &'static str> {
        slow_path(data, None)
    }

    #[test]
    fn slow_path_updates_the_stage_skips_are_found() {
        let share = |update: &[u8]| {
            let mut pdu = u16::try_from(18 + update.len()).unwrap().to_le_bytes().to_vec();
            pdu.extend(0x0017u16.to_le_bytes());
            pdu.extend(1002u16.to_le_bytes());
            pdu.extend(0x0001_03EAu32.to_le_bytes());
            pdu.extend([0, 1, 0, 0, 0x02, 0, 0, 0]);
            pdu.extend(update);
            pdu
        };
        assert_eq!(slow_path_any(&share(&[0, 0, 0, 0, 1, 0])), Err("drawing orders"));
        assert_eq!(slow_path_any(&share(&palette(16))), Err("a palette the decoder does not apply"));
        assert_eq!(slow_path_any(&[share(&[3, 0]), share(&[0, 0, 0, 0])].concat()), Err("drawing orders"));
        assert_eq!(slow_path_any(&[share(&bitmap()), share(&palette(256)), share(&[3, 0])].concat()), Ok(()));
        // On a known desktop every rectangle is judged as the stage draws it (red team
        // h-red17i): one past the desktop's edge is found, one on it passes.
        let mut off = bitmap();
        off[4..6].copy_from_slice(&400u16.to_le_bytes());
        off[8..10].copy_from_slice(&400u16.to_le_bytes());
        assert_eq!(slow_path(&share(&bitmap()), Some((320, 240))), Ok(()));
        assert_eq!(
            slow_path(&share(&off), Some((320, 240))),
            Err("a bitmap rectangle off the desktop or not the size of its destination")
        );
        assert_eq!(check(&fast(&[(0x01, &off)])), Ok(()), "without a desktop nothing is judged");
        let mut audit = FastPathAudit { desktop: Some((320, 240)), ..FastPathAudit::default() };
        assert_eq!(
            audit.check(&fast(&[(0x01, &off)])),
            Err("a bitmap rectangle off the desktop or not the size of its destination")
        );
        // Compressed: the stage fails on it (no decompressor), which is a gap already.
        let mut compressed = share(&[0, 0]);
        compressed[15] = 0x20;
        assert_eq!(slow_path_any(&compressed), Ok(()));
    }
}
