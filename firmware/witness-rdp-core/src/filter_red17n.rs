//! Red team `h-red17n`'s attacks on the graphics pipeline reader (issue 17: `Protocol::Graphics`
//! in `messages.rs`, the ZGFX transport in `gfx.rs`): each test passed while its hole was open
//! (asserting the attacker's success); all seven are closed and flipped, each showing the
//! attack refused (or its bytes replaced) beside a control that passes.
//!
//! The parties are those of red teams `h-red17i` to `h-red17m`: an insider's client (a custom or
//! patched FreeRDP) and, on the target, a program of the session that holds the graphics pipeline
//! (opened by name through xrdpapi where the target never opens its own: xrdp 0.9 does no
//! graphics). That is the precondition of ARCHITECTURE's known open hole (off-screen surfaces);
//! the holes here are beside it, and drawing only to mapped surfaces closes none of them.

use super::red17m::{carries, file};
use super::*;

/// The DVC channel id of the graphics pipeline in these tests.
const GFX: u8 = 3;

/// RDPGFX PDU: cmdId, flags 0, pduLength, body.
fn gfx(cmd: u16, body: &[u8]) -> Vec<u8> {
    let mut pdu = cmd.to_le_bytes().to_vec();
    pdu.extend(0u16.to_le_bytes());
    pdu.extend(u32::try_from(8 + body.len()).unwrap().to_le_bytes());
    pdu.extend(body);
    pdu
}

/// The client's RDPGFX PDUs in one DVC Data PDU.
pub(super) fn from_client(pdus: &[u8]) -> Vec<u8> {
    red17i::client_send(red17i::svc(&[&[0x30, GFX][..], pdus].concat()))
}

/// The target's RDPGFX PDUs in one DVC Data PDU, as one uncompressed ZGFX segment.
pub(super) fn from_target(pdus: &[u8]) -> Vec<u8> {
    red17i::target_send(red17i::svc(&[&[0x30, GFX, 0xE0, 0x04][..], pdus].concat()))
}

/// A session whose graphics pipeline is open: the client advertised version 10 (no flags) and
/// the target has not confirmed yet.
pub(super) fn opened() -> Filter {
    let mut f = red17i::grant_without_anything();
    let mut create = vec![0x10, GFX];
    create.extend(b"Microsoft::Windows::RDS::Graphics\0");
    assert_eq!(f.from_target(&red17i::target_send(red17i::svc(&create))).unwrap(), Verdict::Forward);
    let answer = red17i::client_send(red17i::svc(&[0x10, GFX, 0, 0, 0, 0]));
    assert_eq!(f.from_client(&answer).unwrap(), Verdict::Forward);
    let mut caps = 1u16.to_le_bytes().to_vec();
    caps.extend(0x000A_0002u32.to_le_bytes());
    caps.extend(4u32.to_le_bytes());
    caps.extend(0u32.to_le_bytes());
    assert!(passes(&f.from_client(&from_client(&gfx(0x12, &caps))).unwrap()));
    f
}

/// The Caps Confirm of version 10, no flags, that the target answers with.
pub(super) fn confirm() -> Vec<u8> {
    gfx(0x13, &[0x02, 0, 0x0A, 0, 4, 0, 0, 0, 0, 0, 0, 0])
}

fn passes(v: &Verdict) -> bool {
    matches!(v, Verdict::Forward | Verdict::Replace(_))
}

/// Hole 1 (closed): the client's QoE Frame Acknowledge (RDPGFX_CMDID_QOEFRAMEACKNOWLEDGE, 0x16)
/// was read for its frame id alone: its timestamp, timeDiffSE and timeDiffEDR (8 bytes) passed
/// unread. The target's program ended frames that drew nothing (up to 1024 owed at once), and
/// the client answered each with a QoE acknowledgement carrying 8 bytes of a file: client to
/// target, 8 bytes per frame, nothing on screen. Now the three fields the target gets are the
/// box's (when the frame's Start Frame passed the box, how long until its End Frame, how long
/// until the acknowledgement), written in place; and a frame must draw (hole 3). Here the
/// target draws 1024 frames and the client's 8 KiB reach it not at all.
#[test]
fn red17n_qoe_frame_acknowledgements_carry_a_file_to_the_target() {
    let mut f = opened();
    assert_eq!(f.from_target(&from_target(&confirm())).unwrap(), Verdict::Forward);
    let payload = file(8 * 1024);
    let frames = u32::try_from(payload.len() / 8).unwrap();
    // The target draws 1024 frames, 100 a message.
    for first in (0..frames).step_by(100) {
        let pdus = crate::gfx::drawn_frames(first, 100.min(frames - first), first == 0);
        assert_eq!(f.from_target(&from_target(&pdus)).unwrap(), Verdict::Forward);
    }
    // The client answers each: frameId, then 8 bytes of the file; 64 acknowledgements a message.
    let mut moved = 0;
    for (n, part) in payload.chunks(8 * 64).enumerate() {
        let acks: Vec<u8> = part
            .chunks(8)
            .enumerate()
            .flat_map(|(i, bytes)| gfx(0x16, &[&((n * 64 + i) as u32).to_le_bytes()[..], bytes].concat()))
            .collect();
        let frame = from_client(&acks);
        let verdict = f.from_client(&frame).unwrap();
        let Verdict::Replace(out) = &verdict else { panic!("the acknowledgements passed as sent: {verdict:?}") };
        assert_eq!(out.len(), frame.len(), "rewritten in place");
        moved += part.chunks(8).filter(|bytes| carries(&verdict, &frame, bytes)).count() * 8;
        // What the target reads in each: the box's clock, a few ms at most in this test.
        let at = out.len() - acks.len();
        for pdu in out[at..].chunks(20) {
            let took = u16::from_le_bytes([pdu[16], pdu[17]]);
            let rendered = u16::from_le_bytes([pdu[18], pdu[19]]);
            assert!(took < 10_000 && rendered < 10_000, "{pdu:?}");
        }
    }
    assert_eq!(moved, 0, "bytes of the file reached the target");
}

/// Sends the target's DVC PDU `dvc` in static chunks of 1600 bytes: the filter's last verdict
/// (it holds the chunks back until the message is whole), or the first refusal.
fn send_whole(f: &mut Filter, dvc: &[u8]) -> Verdict {
    let pieces: Vec<&[u8]> = dvc.chunks(1600).collect();
    let mut last = Verdict::Drop;
    for (i, piece) in pieces.iter().enumerate() {
        let flags = u32::from(i == 0) | if i + 1 == pieces.len() { 2 } else { 0 };
        let mut chunk = u32::try_from(dvc.len()).unwrap().to_le_bytes().to_vec();
        chunk.extend(flags.to_le_bytes());
        chunk.extend(*piece);
        last = f.from_target(&red17i::target_send(chunk)).unwrap();
        if matches!(last, Verdict::Refuse(_)) {
            break;
        }
    }
    last
}

/// Whether the filter passed every byte of the target's DVC PDU `dvc` ([`send_whole`]).
fn passes_whole(f: &mut Filter, dvc: &[u8]) -> bool {
    let pieces: Vec<&[u8]> = dvc.chunks(1600).collect();
    match send_whole(f, dvc) {
        Verdict::Replace(out) => pieces.iter().all(|p| out.windows(p.len()).any(|w| w == *p)),
        Verdict::Forward => pieces.len() == 1,
        _ => false,
    }
}

/// The graphics pipeline's refusal.
fn refused(v: &Verdict) -> bool {
    *v == Verdict::Refuse(crate::messages::GRAPHICS_REFUSED)
}

/// Hole 2 (closed): the target's Caps Confirm (RDPGFX_CMDID_CAPSCONFIRM, 0x13) had to decode
/// and re-encode with IronRDP, but IronRDP keeps a capability set's version and data verbatim
/// (`RawCapabilitySet`: any version, any capsDataLength, the data as bytes), and the reader
/// checked neither against the client's Caps Advertise: a Caps Confirm whose one capability set
/// was a file (up to the 16 MiB of a message) reached the client, which skips what it does not
/// read. Now the confirmed set must be one of the sets the target was sent (the client's, as the
/// filter trimmed them): its version and length, its flags those offered or fewer.
#[test]
fn red17n_the_targets_caps_confirm_carries_a_file_to_the_client() {
    let payload = file(60_000);
    for version in [0xDEAD_BEEFu32, 0x000A_0002] {
        let mut f = opened();
        let mut set = version.to_le_bytes().to_vec();
        set.extend(u32::try_from(payload.len()).unwrap().to_le_bytes());
        set.extend(&payload);
        let dvc = [&[0x30, GFX, 0xE0, 0x04][..], &gfx(0x13, &set)].concat();
        assert!(refused(&send_whole(&mut f, &dvc)), "version {version:#x}");
    }
    // The advertised set's version with flags it did not offer, or another version it did not
    // advertise; controls: the set as trimmed (AVC off), or fewer flags.
    let set = |version: u32, flags: u32| {
        let mut b = 1u16.to_le_bytes().to_vec();
        b.extend(version.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend(flags.to_le_bytes());
        from_target(&gfx(0x13, &b[2..]))
    };
    assert!(refused(&opened().from_target(&set(0x000A_0002, 0x0000_8000)).unwrap()));
    assert!(refused(&opened().from_target(&set(0x000A_0200, 0x20)).unwrap()));
    assert_eq!(opened().from_target(&set(0x000A_0002, 0x20)).unwrap(), Verdict::Forward);
    assert_eq!(opened().from_target(&set(0x000A_0002, 0)).unwrap(), Verdict::Forward);
}

/// Hole 3 (closed): the target's Start Frame and End Frame PDUs re-encoded byte for byte with
/// IronRDP whatever their timestamp (all 32 bits kept) and frame ids (never matched to each
/// other, nor to a frame in progress); a frame with no command in it draws nothing. The target's
/// program sent frames of nothing: 12 bytes of a file in each 28 (Start Frame timestamp and
/// frameId, End Frame frameId), unrecorded. Now frames come one at a time, each End Frame the
/// id of the frame in progress and each Start Frame the last one's plus one; a time stamp is a
/// time of day, and since the first frame they move forward no further than the box's clock
/// and 10 s; and a frame draws (a fill, a copy, a cache or wire-to-surface command) before it
/// ends. What stays: the first frame's id (once a channel), and the time stamps' pace within
/// that bound.
#[test]
fn red17n_empty_frames_carry_a_file_to_the_client_in_their_ids_and_timestamps() {
    use ironrdp_egfx::pdu::{EndFramePdu, GfxPdu, StartFramePdu, Timestamp};
    let ready = || {
        let mut f = opened();
        assert_eq!(f.from_target(&from_target(&confirm())).unwrap(), Verdict::Forward);
        assert_eq!(f.from_target(&from_target(&crate::gfx::drawn_frames(40, 1, true))).unwrap(), Verdict::Forward);
        f
    };
    let payload = file(12 * 50);
    let pdus: Vec<u8> = payload.chunks(12).flat_map(|p| [gfx(0x0B, &p[..8]), gfx(0x0C, &p[8..])].concat()).collect();
    assert!(refused(&ready().from_target(&from_target(&pdus)).unwrap()), "the file's frames");
    let timestamp = |ms: u16, seconds: u8| Timestamp { milliseconds: ms, seconds, minutes: 0, hours: 0 };
    let frame = |t: Timestamp, start: u32, end: Option<u32>| -> Vec<u8> {
        let mut p = vec![GfxPdu::StartFrame(StartFramePdu { timestamp: t, frame_id: start })];
        p.extend(end.map(|frame_id| GfxPdu::EndFrame(EndFramePdu { frame_id })));
        p.iter().flat_map(|p| encode_vec(p).unwrap()).collect()
    };
    let fill = || crate::gfx::drawn_frames(0, 1, false)[16..][..24].to_vec(); // its Solid Fill
    // Well-formed frames of nothing; an id out of sequence, an end of another frame, a start
    // inside a frame; a time stamp out of a day's range, or far ahead of the box's clock.
    assert!(refused(&ready().from_target(&from_target(&frame(timestamp(0, 0), 41, Some(41)))).unwrap()));
    let cases = [
        [frame(timestamp(0, 0), 42, None), fill(), gfx(0x0C, &42u32.to_le_bytes())].concat(),
        [frame(timestamp(0, 0), 41, None), fill(), gfx(0x0C, &40u32.to_le_bytes())].concat(),
        [frame(timestamp(0, 0), 41, None), fill(), frame(timestamp(0, 0), 42, None)].concat(),
        [frame(timestamp(1000, 0), 41, None), fill(), gfx(0x0C, &41u32.to_le_bytes())].concat(),
        [frame(timestamp(0, 30), 41, None), fill(), gfx(0x0C, &41u32.to_le_bytes())].concat(),
        [frame(timestamp(999, 59), 41, None), fill(), gfx(0x0C, &41u32.to_le_bytes())].concat(),
        // A fill of no rectangle draws nothing: its colour would be 4 more free bytes.
        [frame(timestamp(0, 1), 41, None), gfx(0x04, &[1, 0, 1, 2, 3, 0xFF, 0, 0]), gfx(0x0C, &41u32.to_le_bytes())]
            .concat(),
    ];
    for (i, case) in cases.iter().enumerate() {
        assert!(refused(&ready().from_target(&from_target(case)).unwrap()), "case {i}");
    }
    // Controls: the empty fill is read, beside a fill that draws.
    let both = [
        frame(timestamp(0, 1), 41, None),
        gfx(0x04, &[1, 0, 1, 2, 3, 0xFF, 0, 0]),
        fill(),
        gfx(0x0C, &41u32.to_le_bytes()),
    ]
    .concat();
    assert_eq!(ready().from_target(&from_target(&both)).unwrap(), Verdict::Forward);
    // The next frame, drawing, its time stamp 5 s on; then the one after, 4 s on;
    // but not a third 2 s on (11 s ahead of the box's clock).
    let mut f = ready();
    let next = [frame(timestamp(0, 5), 41, None), fill(), gfx(0x0C, &41u32.to_le_bytes())].concat();
    assert_eq!(f.from_target(&from_target(&next)).unwrap(), Verdict::Forward);
    let after = [frame(timestamp(0, 9), 42, None), fill(), gfx(0x0C, &42u32.to_le_bytes())].concat();
    assert_eq!(f.from_target(&from_target(&after)).unwrap(), Verdict::Forward);
    let ahead = [frame(timestamp(0, 11), 43, None), fill(), gfx(0x0C, &43u32.to_le_bytes())].concat();
    assert!(refused(&f.from_target(&from_target(&ahead)).unwrap()), "ahead of the box's clock");
}

/// Hole 4 (closed): the longest graphics message the box takes is 16 MiB, but it was bounded
/// compressed: the filter's ZGFX decompressor (IronRDP's) lets one segment grow to 64 MiB and a
/// multipart message to 256 MiB, where MS-RDPEGFX 3.1.9.1 has each segment decompress to at most
/// 65,535 bytes. A literal and one match (distance 1, length 2^25 - 1: 64 bits) are 32 MiB of
/// zeros; behind a Wire To Surface 1 header (uncompressed pixels, 4096 x 2048, to a surface of
/// that size the target never maps) in a first segment, a message of about 60 bytes becomes one
/// PDU of 32 MiB that the filter's reader decodes and re-encodes whole (two more copies) and
/// passes, and the recorder decompresses and draws again, and goes on. Four such segments make
/// 256 MiB. Each message made the box allocate over a million times its size, as often as the
/// target sent it (the session did not end). Now the segments are walked token by token before
/// any byte is decompressed (`gfx::scan`): a segment decompresses to at most 65,535 bytes, a
/// message to its uncompressedSize and at most 16 MiB, or the session ends.
#[test]
fn red17n_a_few_bytes_of_zgfx_make_the_box_hold_a_message_far_beyond_its_bound() {
    use ironrdp_egfx::pdu::{Codec1Type, CreateSurfacePdu, GfxPdu, PixelFormat, WireToSurface1Pdu};
    use ironrdp_graphics::zgfx::{wrap_compressed, wrap_uncompressed};
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let (width, height) = (4096u16, 2048u16);
    let bitmap = usize::from(width) * usize::from(height) * 4;
    let create = encode_vec(&GfxPdu::CreateSurface(CreateSurfacePdu {
        surface_id: 5,
        width,
        height,
        pixel_format: PixelFormat::XRgb,
    }))
    .unwrap();
    let whole = encode_vec(&GfxPdu::WireToSurface1(WireToSurface1Pdu {
        surface_id: 5,
        codec_id: Codec1Type::Uncompressed,
        pixel_format: PixelFormat::XRgb,
        destination_rectangle: ExclusiveRectangle { left: 0, top: 0, right: width, bottom: height },
        bitmap_data: vec![0; bitmap],
    }))
    .unwrap();
    let header = &whole[..whole.len() - bitmap];
    // ZGFX bits, most significant first: literal 0x00 (11000); match of distance 1 (10001 and
    // 5 bits 00001); length 2^24 + (2^24 - 1) (23 ones, a zero, 24 value bits of one).
    let mut bits: Vec<bool> = [1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1].iter().map(|&b| b == 1).collect();
    bits.extend(std::iter::repeat_n(true, 23));
    bits.push(false);
    bits.extend(std::iter::repeat_n(true, 24));
    let zeros = wrap_compressed(&zgfx_segment(&bits, 0));
    // Multipart segmented data: descriptor, segmentCount, uncompressedSize, then each segment's
    // size and its bulk data (a single segment's bytes after its descriptor).
    let message = |first: &[u8]| {
        let first = wrap_uncompressed(first);
        let mut message = vec![0xE1];
        message.extend(2u16.to_le_bytes());
        message.extend(u32::try_from(first.len() - 2 + bitmap).unwrap().to_le_bytes());
        for s in [&first[1..], &zeros[1..]] {
            message.extend(u32::try_from(s.len()).unwrap().to_le_bytes());
            message.extend(s);
        }
        message
    };
    let (created, again) = (message(&[create.clone(), header.to_vec()].concat()), message(header));
    assert!(again.len() < 100 && whole.len() > 2 * Protocol::Graphics.max_message(), "{}", again.len());
    for m in [&created, &again] {
        let mut f = opened();
        assert_eq!(f.from_target(&from_target(&confirm())).unwrap(), Verdict::Forward);
        let frame = red17i::target_send(red17i::svc(&[&[0x30, GFX][..], m].concat()));
        assert!(refused(&f.from_target(&frame).unwrap()));
    }
    // Control: the surface created, in a compressed message that decompresses within bounds.
    let mut f = opened();
    assert_eq!(f.from_target(&from_target(&confirm())).unwrap(), Verdict::Forward);
    let mut compressor = ironrdp_graphics::zgfx::Compressor::new();
    let small = wrap_compressed(&compressor.compress(&create).unwrap());
    let frame = red17i::target_send(red17i::svc(&[&[0x30, GFX][..], &small].concat()));
    assert_eq!(f.from_target(&frame).unwrap(), Verdict::Forward);
}

/// ZGFX bits, most significant first, into a compressed segment's data: the bytes, then the
/// byte whose low three bits count the unused bits of the last (MS-RDPEGFX 3.1.9.1.2.4), its
/// five high bits `high`.
fn zgfx_segment(bits: &[bool], high: u8) -> Vec<u8> {
    let unused = (8 - bits.len() % 8) % 8;
    let mut padded = bits.to_vec();
    padded.extend(std::iter::repeat_n(false, unused));
    let mut data: Vec<u8> = padded.chunks(8).map(|b| b.iter().fold(0u8, |a, &bit| a << 1 | u8::from(bit))).collect();
    data.push(high << 3 | u8::try_from(unused).unwrap());
    data
}

/// A byte as a ZGFX literal token: the null literal (`0` and the byte, 9 bits), or, when `short`,
/// the token table's own code for 0x00 (`11000`) or 0x01 (`11001`).
fn literal(bits: &mut Vec<bool>, byte: u8, short: bool) {
    match (short, byte) {
        (true, 0 | 1) => bits.extend([true, true, false, false, byte == 1]),
        _ => {
            bits.push(false);
            bits.extend((0..8).rev().map(|i| byte >> i & 1 == 1));
        }
    }
}

/// FreeRDP's reading of a compressed segment's data (`zgfx_decompress_segment`, 2.11 and 3.x):
/// `cBitsRemaining = 8 * (cbSegment - 1) - *pbInputEnd`, the whole last byte, where IronRDP
/// (the box's filter and recorder) masks its five reserved high bits off. Returned as the data
/// IronRDP would read the same bits from.
fn freerdp_reads(data: &[u8]) -> Vec<u8> {
    let bits = 8 * (data.len() - 1) - usize::from(data[data.len() - 1]);
    let mut out = data[..bits.div_ceil(8)].to_vec();
    out.push(u8::try_from((8 - bits % 8) % 8).unwrap());
    out
}

/// Hole 5 (closed): the last byte of a compressed ZGFX segment counts the unused bits of the one
/// before it in its low three bits; IronRDP (the filter's reader and the recorder) masks the
/// five high bits off as reserved, FreeRDP's client subtracts the whole byte. A target that sets
/// them (0xF8) has FreeRDP stop 248 bits early. The target's program painted the screen red and
/// started the next frame, then, in exactly the last 248 bits, a black fill and that frame's
/// end: the client showed red, the recording black. Now a segment with reserved bits set ends
/// the session before any of it passes; the same message with them clear passes (both read it
/// whole).
#[test]
fn red17n_zgfx_reserved_bits_hide_the_screen_the_client_shows_from_the_recording() {
    use ironrdp_egfx::pdu::{Color, EndFramePdu, GfxPdu, SolidFillPdu, StartFramePdu, Timestamp};
    use ironrdp_graphics::zgfx::wrap_compressed;
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    // What the client draws: the red screen, and the start of frame 78.
    let shown =
        [red17i::red_screen(), encode_vec(&GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 78 })).unwrap()]
            .concat();
    // What only the box reads: frame 78 paints it black.
    let black = Color { b: 0, g: 0, r: 0, xa: 0xFF };
    let rect = ExclusiveRectangle { left: 0, top: 0, right: 320, bottom: 240 };
    let hidden: Vec<u8> = [
        GfxPdu::SolidFill(SolidFillPdu { surface_id: 9, fill_pixel: black, rectangles: vec![rect] }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: 78 }),
    ]
    .iter()
    .flat_map(|p| encode_vec(p).unwrap())
    .collect();
    let mut bits = Vec::new();
    for &b in &shown {
        literal(&mut bits, b, false);
    }
    let at = bits.len();
    // The hidden bytes in exactly 248 bits: null literals, and short codes for enough of its
    // zeros and ones.
    let mut spare = hidden.len() * 9 - 248;
    for &b in &hidden {
        let short = spare >= 4 && b <= 1;
        spare -= if short { 4 } else { 0 };
        literal(&mut bits, b, short);
    }
    assert_eq!((spare, bits.len() - at), (0, 248));
    let data = zgfx_segment(&bits, 0x1F);
    // The capture's graphics pipeline.
    let mut client = red17i::session();
    let (drdynvc, gfx) = (client.drdynvc, u8::try_from(client.gfx).unwrap());
    let message = |data: &[u8]| [&[0x30, gfx][..], &wrap_compressed(data)].concat();
    // FreeRDP reads the red screen only.
    let seen = message(&freerdp_reads(&data));
    client.decoder.observe_target(&red17i::target_chunk(drdynvc, seen.len(), 3, &seen)).unwrap();
    assert!(red17i::red_share(&client.decoder) > 0.95, "the client does not show red");
    // The box refuses the message.
    let mut s = red17i::session();
    let sent = message(&data);
    let frame = red17i::target_chunk(s.drdynvc, sent.len(), 3, &sent);
    assert!(refused(&s.filter.from_target(&frame).unwrap()));
    // Control: the reserved bits clear, FreeRDP reads what the box reads, and it passes.
    let clear = zgfx_segment(&bits, 0);
    assert_eq!(freerdp_reads(&clear), clear);
    let mut s = red17i::session();
    let sent = message(&clear);
    let frame = red17i::target_chunk(s.drdynvc, sent.len(), 3, &sent);
    assert_eq!(s.filter.from_target(&frame).unwrap(), Verdict::Forward);
}

/// Hole 6 (closed): ZGFX multipart segmented data (descriptor 0xE1) is read segment by segment,
/// segmentCount of them; bytes after the last segment are read by nobody: not by IronRDP's
/// decompressor (so not by the filter's reader, which judges only what decompresses), not by
/// FreeRDP's (`zgfx_decompress`, which reads segmentCount segments and stops). The target's
/// program sent an ordinary message (here an empty Cache Import Reply) and a file behind its
/// last segment, up to the 16 MiB a message may hold. Now the segments must fill the message
/// exactly (`gfx::scan`): the file ends the session; the message without it passes.
#[test]
fn red17n_bytes_after_the_last_zgfx_segment_carry_a_file_to_the_client() {
    let payload = file(60_000);
    let reply = gfx(0x11, &[0, 0]);
    for tail in [&payload[..], &payload[..1]] {
        let mut f = opened();
        assert_eq!(f.from_target(&from_target(&confirm())).unwrap(), Verdict::Forward);
        let mut dvc = vec![0x30, GFX, 0xE1];
        dvc.extend(1u16.to_le_bytes());
        dvc.extend(u32::try_from(reply.len()).unwrap().to_le_bytes());
        dvc.extend(u32::try_from(1 + reply.len()).unwrap().to_le_bytes());
        dvc.push(0x04);
        dvc.extend(&reply);
        assert!(passes_whole(&mut f, &dvc), "the message alone");
        dvc.extend(tail);
        assert!(refused(&send_whole(&mut f, &dvc)), "{} bytes behind it", tail.len());
    }
}

/// Hole 7 (closed): FreeRDP's client stops reading a graphics message at the first PDU its
/// handler fails (`rdpgfx_on_data_received`: `if ((error = rdpgfx_recv_pdu(callback, s)))
/// break;`), and an Evict Cache Entry of slot 0 fails there (`rdpgfx_set_cache_slot_data`:
/// "invalid cache slot 0, must be between 1 and MaxCacheSlots"; FreeRDP 3 also fails an empty
/// slot), where IronRDP's pipeline (the recorder) evicts nothing and goes on, and the filter's
/// reader passes it (it re-encodes byte for byte). The target's program paints the screen red,
/// starts the next frame, evicts slot 0, and paints the screen black in that frame: the client
/// showed red, the recording black. Now the filter keeps the surfaces and cache slots as FreeRDP
/// does and refuses a PDU FreeRDP fails (`messages::gfx_draws`): a slot that is not one of
/// 1 to MaxCacheSlots or holds nothing, a surface that does not exist, a rectangle outside it.
#[test]
fn red17n_an_eviction_freerdp_fails_hides_the_rest_of_the_message_from_the_client() {
    use ironrdp_egfx::pdu::{Color, EndFramePdu, EvictCacheEntryPdu, GfxPdu, SolidFillPdu, StartFramePdu, Timestamp};
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let black = Color { b: 0, g: 0, r: 0, xa: 0xFF };
    let rect = ExclusiveRectangle { left: 0, top: 0, right: 320, bottom: 240 };
    let pdus = |p: &[GfxPdu]| -> Vec<u8> { p.iter().flat_map(|p| encode_vec(p).unwrap()).collect() };
    // What FreeRDP draws: the red screen, the start of frame 78; then the eviction it fails.
    let shown = [red17i::red_screen(), pdus(&[GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 78 })])].concat();
    let rest = pdus(&[
        GfxPdu::EvictCacheEntry(EvictCacheEntryPdu { cache_slot: 0 }),
        GfxPdu::SolidFill(SolidFillPdu { surface_id: 9, fill_pixel: black.clone(), rectangles: vec![rect.clone()] }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: 78 }),
    ]);
    let mut client = red17i::session();
    let (drdynvc, gfx) = (client.drdynvc, u8::try_from(client.gfx).unwrap());
    let message = |pdus: &[u8]| [&[0x30, gfx, 0xE0, 0x04][..], pdus].concat();
    let seen = message(&shown);
    client.decoder.observe_target(&red17i::target_chunk(drdynvc, seen.len(), 3, &seen)).unwrap();
    assert!(red17i::red_share(&client.decoder) > 0.95, "the client does not show red");
    // The box refuses the message.
    let mut s = red17i::session();
    let sent = message(&[shown.clone(), rest].concat());
    let frame = red17i::target_chunk(s.drdynvc, sent.len(), 3, &sent);
    assert!(refused(&s.filter.from_target(&frame).unwrap()));
    // So it does other PDUs FreeRDP fails, after the red screen: a fill of a surface that does
    // not exist, a copy out of its surface, a cache entry drawn from an empty slot, a slot
    // beyond 25600.
    use ironrdp_egfx::pdu::{CacheToSurfacePdu, Point, SurfaceToCachePdu, SurfaceToSurfacePdu};
    let to_cache = |slot: u16| {
        GfxPdu::SurfaceToCache(SurfaceToCachePdu {
            surface_id: 9,
            cache_key: 1,
            cache_slot: slot,
            source_rectangle: ExclusiveRectangle { left: 0, top: 0, right: 16, bottom: 16 },
        })
    };
    let end = |id: u32| GfxPdu::EndFrame(EndFramePdu { frame_id: id });
    let start = |id: u32| GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: id });
    let fill = |surface: u16| {
        GfxPdu::SolidFill(SolidFillPdu {
            surface_id: surface,
            fill_pixel: black.clone(),
            rectangles: vec![rect.clone()],
        })
    };
    let cases = [
        pdus(&[start(78), fill(3), end(78)]),
        pdus(&[
            start(78),
            GfxPdu::SurfaceToSurface(SurfaceToSurfacePdu {
                source_surface_id: 9,
                destination_surface_id: 9,
                source_rectangle: ExclusiveRectangle { left: 0, top: 0, right: 16, bottom: 16 },
                destination_points: vec![Point { x: 310, y: 0 }],
            }),
            end(78),
        ]),
        pdus(&[
            start(78),
            GfxPdu::CacheToSurface(CacheToSurfacePdu {
                cache_slot: 5,
                surface_id: 9,
                destination_points: vec![Point { x: 0, y: 0 }],
            }),
            end(78),
        ]),
        pdus(&[to_cache(25601)]),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut s = red17i::session();
        let sent = message(&[red17i::red_screen(), case.clone()].concat());
        let frame = red17i::target_chunk(s.drdynvc, sent.len(), 3, &sent);
        assert!(refused(&s.filter.from_target(&frame).unwrap()), "case {i}");
    }
    // Control: a slot filled, drawn from and evicted, in a frame that fills the screen.
    let mut s = red17i::session();
    let good = pdus(&[
        to_cache(5),
        start(78),
        GfxPdu::CacheToSurface(CacheToSurfacePdu {
            cache_slot: 5,
            surface_id: 9,
            destination_points: vec![Point { x: 0, y: 0 }],
        }),
        GfxPdu::EvictCacheEntry(EvictCacheEntryPdu { cache_slot: 5 }),
        fill(9),
        end(78),
    ]);
    let sent = message(&[red17i::red_screen(), good].concat());
    let frame = red17i::target_chunk(s.drdynvc, sent.len(), 3, &sent);
    assert_eq!(s.filter.from_target(&frame).unwrap(), Verdict::Forward);
}
