//! The passive decoder against real sessions: PDUs captured from `freerdp-shadow-cli` sharing a
//! 320x240 Xvfb that is red, then blue, then a plaid with a terminal (`cargo run -p witness-rdp --example capture`): RDP6
//! planar at 32 bpp (`shadow_bitmap`), interleaved RLE at 16 bpp (`shadow_bitmap16`), RemoteFX
//! surface commands (`shadow_remotefx`), and RemoteFX with the graphics pipeline channel open
//! (`shadow_gfx`: freerdp-shadow 2 negotiates EGFX but keeps sending surface commands).

use super::*;

const BITMAP: &[u8] = include_bytes!("../testdata/shadow_bitmap.cap");
const BITMAP16: &[u8] = include_bytes!("../testdata/shadow_bitmap16.cap");
const REMOTEFX: &[u8] = include_bytes!("../testdata/shadow_remotefx.cap");
const GFX: &[u8] = include_bytes!("../testdata/shadow_gfx.cap");

const RED: [u8; 3] = [0, 0, 255];
const BLUE: [u8; 3] = [255, 0, 0];

pub(crate) use super::capture_records as records;

fn center(d: &PassiveDecoder) -> [u8; 3] {
    let s = d.screen().expect("no screen");
    let at = usize::from(s.height / 2) * s.stride + usize::from(s.width / 2) * 4;
    [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
}

/// Whether two colours match within what a lossy codec (RemoteFX) changes.
fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 8)
}

/// Share of pixels of about `color` (B, G, R) on the screen.
fn share(d: &PassiveDecoder, color: [u8; 3]) -> f64 {
    let s = d.screen().unwrap();
    let mut hits = 0usize;
    for y in 0..usize::from(s.height) {
        for x in 0..usize::from(s.width) {
            let at = y * s.stride + x * 4;
            hits += usize::from(close([s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]], color));
        }
    }
    hits as f64 / (f64::from(s.width) * f64::from(s.height))
}

struct Replay {
    decoder: PassiveDecoder,
    updates: Vec<Update>,
    /// The red share and centre pixel when the screen turned blue, then the same for blue when
    /// the pattern came.
    red: Option<(f64, [u8; 3])>,
    blue: Option<(f64, [u8; 3])>,
    /// The share of the X server's samples the decoded image matched within each tolerance.
    matched: Vec<(u8, f64)>,
}

fn replay(capture: &[u8]) -> Replay {
    let mut r =
        Replay { decoder: PassiveDecoder::new(), updates: Vec::new(), red: None, blue: None, matched: Vec::new() };
    for (tag, frame) in records(capture) {
        match tag {
            b'C' => r.decoder.observe_client(frame).unwrap(),
            b'T' => r.updates.extend(r.decoder.observe_target(frame).unwrap()),
            b'M' if frame == b"blue" => r.red = Some((share(&r.decoder, RED), center(&r.decoder))),
            b'M' => r.blue = Some((share(&r.decoder, BLUE), center(&r.decoder))),
            b'P' => r.matched = [8, 48].iter().map(|&t| (t, matching(&r.decoder, frame, t))).collect(),
            _ => panic!("unknown record"),
        }
    }
    r
}

/// The share of `samples` (x, y as u16 LE, then B, G, R) the screen shows within `tolerance`.
fn matching(d: &PassiveDecoder, samples: &[u8], tolerance: u8) -> f64 {
    let s = d.screen().unwrap();
    let hits = samples
        .chunks_exact(7)
        .filter(|c| {
            let (x, y) = (usize::from(u16::from_le_bytes([c[0], c[1]])), usize::from(u16::from_le_bytes([c[2], c[3]])));
            let at = y * s.stride + x * 4;
            s.bgrx[at..at + 3].iter().zip(&c[4..7]).all(|(a, b)| a.abs_diff(*b) <= tolerance)
        })
        .count();
    hits as f64 / (samples.len() / 7) as f64
}

/// The screen was red, then blue, then showed the plaid and the terminal: the decoded image
/// matches the X server's own pixels for at least `exact` of the samples within 8 levels and
/// `near` of them within 48 (RemoteFX is lossy at edges).
fn assert_decodes(capture: &[u8], exact: f64, near: f64) -> Replay {
    let r = replay(capture);
    assert_eq!(r.updates.first(), Some(&Update::Resized { width: 320, height: 240 }), "{:?}", r.updates.first());
    assert!(r.updates.iter().any(|u| matches!(u, Update::Frame { .. })), "no frames");
    let (red_share, red_center) = r.red.expect("no blue marker in the capture");
    assert!(close(red_center, RED), "the screen was red: {red_center:?}");
    assert!(red_share > 0.95, "red covers {red_share}");
    let (blue_share, blue_center) = r.blue.expect("no pattern marker in the capture");
    assert!(close(blue_center, BLUE), "then blue: {blue_center:?}");
    assert!(blue_share > 0.95, "blue covers {blue_share}");
    eprintln!("samples matched: {:?}", r.matched);
    assert!(r.matched[0].1 >= exact && r.matched[1].1 >= near, "samples matched: {:?}", r.matched);
    assert!(!r.decoder.is_stopped());
    let ids = r.decoder.session_ids().unwrap();
    assert!(ids.io_channel_id != ids.user_channel_id);
    r
}

#[test]
fn planar_bitmaps_decode_what_the_target_shows() {
    assert_decodes(BITMAP, 0.99, 0.99);
}

#[test]
fn interleaved_rle_at_16_bpp_decodes_what_the_target_shows() {
    assert_decodes(BITMAP16, 0.99, 0.99);
}

#[test]
fn remotefx_decodes_what_the_target_shows() {
    assert_decodes(REMOTEFX, 0.85, 0.99);
}

#[test]
fn with_the_graphics_pipeline_open_decodes_what_the_target_shows() {
    let r = assert_decodes(GFX, 0.85, 0.99);
    assert!(r.decoder.discarded_responses() > 0, "egfx frame acknowledgements were dropped");
}

#[test]
fn nothing_is_decoded_without_the_connection_sequence() {
    let mut d = PassiveDecoder::new();
    for (tag, frame) in records(REMOTEFX) {
        // Skip the handshake: graphics alone cannot be placed, and each is a gap, not a stop.
        if tag == b'T' && !is_x224(frame) {
            assert!(matches!(d.observe_target(frame), Err(DecodeError::Unrecorded(_))));
            assert!(!d.is_stopped());
        }
    }
    assert!(d.screen().is_none());
}

#[test]
fn garbage_and_truncated_pdus_are_errors_not_panics() {
    let all = records(REMOTEFX);
    // The handshake, then each later target PDU cut short or with flipped bytes.
    let handshake_end = all.iter().position(|(t, f)| *t == b'T' && !is_x224(f)).unwrap();
    let prime = || {
        let mut d = PassiveDecoder::new();
        for (tag, frame) in &all[..handshake_end] {
            match tag {
                b'C' => d.observe_client(frame).unwrap(),
                b'T' => drop(d.observe_target(frame).unwrap()),
                _ => {}
            }
        }
        d
    };
    let mut d = prime();
    for (_, frame) in all.iter().skip(handshake_end).filter(|(t, _)| *t == b'T') {
        for cut in [1, 2, 3, 7, frame.len() / 2, frame.len().saturating_sub(1)] {
            let r = d.observe_target(&frame[..cut.min(frame.len())]);
            assert!(!matches!(r, Err(DecodeError::Panicked)), "panic on a {cut}-byte prefix");
            if d.is_stopped() {
                d = prime();
            }
        }
        let mut flipped = frame.to_vec();
        for i in (4..flipped.len()).step_by(5) {
            flipped[i] ^= 0xA5;
        }
        let r = d.observe_target(&flipped);
        assert!(!matches!(r, Err(DecodeError::Panicked)), "panic on a flipped pdu");
        if d.is_stopped() {
            d = prime();
        }
    }
    // Random garbage from the start.
    let mut fresh = PassiveDecoder::new();
    let mut x = 0x1234_5678u32;
    for len in 0..300usize {
        let frame: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let _ = fresh.observe_client(&frame);
        assert!(!matches!(fresh.observe_target(&frame), Err(DecodeError::Panicked)));
    }
}

#[test]
fn client_info_compression_is_read_from_the_header() {
    // INFO_PKT security header, code page, then flags with COMPRESSION and type RDP6 (2 << 9).
    let mut pdu = vec![0x40, 0x00, 0x00, 0x00, 0, 0, 0, 0];
    pdu.extend_from_slice(&(0x80u32 | (2 << 9)).to_le_bytes());
    assert_eq!(client_info_compression(&pdu), Some(Some(CompressionType::Rdp6)));
    pdu[8] = 0;
    assert_eq!(client_info_compression(&pdu), Some(None));
    assert_eq!(client_info_compression(&[0x00, 0x00, 0, 0]), None);
    assert_eq!(client_info_compression(&[0x40]), None);
}

#[test]
fn rect_union_covers_both() {
    let a = Rect { x: 10, y: 10, width: 5, height: 5 };
    let b = Rect { x: 0, y: 12, width: 3, height: 10 };
    assert_eq!(a.union(b), Rect { x: 0, y: 10, width: 15, height: 12 });
}

/// What decoding costs: each capture replayed from a fresh decoder, timed per graphics PDU
/// (printed; `cargo test --release -p witness-rdp decode_cost -- --nocapture` for real figures;
/// `WITNESS_RDP_CAPTURES=a.cap:b.cap` adds captures made with a larger size).
#[test]
fn decode_cost() {
    let extra: Vec<(String, Vec<u8>)> = std::env::var("WITNESS_RDP_CAPTURES")
        .map(|v| v.split(':').map(|p| (p.to_owned(), std::fs::read(p).unwrap())).collect())
        .unwrap_or_default();
    let builtin = [("planar", BITMAP), ("interleaved16", BITMAP16), ("remotefx", REMOTEFX)];
    let all_captures = builtin.into_iter().chain(extra.iter().map(|(n, c)| (n.as_str(), c.as_slice())));
    for (name, capture) in all_captures {
        let all = records(capture);
        let graphics = all.iter().filter(|(t, f)| *t == b'T' && !is_x224(f)).count();
        let rounds = 20;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            let mut d = PassiveDecoder::new();
            for (tag, frame) in &all {
                match tag {
                    b'C' => d.observe_client(frame).unwrap(),
                    b'T' => drop(d.observe_target(frame).unwrap()),
                    _ => {}
                }
            }
        }
        let per = started.elapsed() / u32::try_from(rounds * graphics).unwrap();
        let size = replay_size(&all);
        eprintln!("{name}: {graphics} graphics pdus at {size:?}, {per:?} each (connection sequence included)");
    }
}

fn replay_size(all: &[(u8, &[u8])]) -> Option<(u16, u16)> {
    let mut d = PassiveDecoder::new();
    for (tag, frame) in all {
        match tag {
            b'C' => d.observe_client(frame).unwrap(),
            b'T' => drop(d.observe_target(frame).unwrap()),
            _ => {}
        }
    }
    d.screen().map(|s| (s.width, s.height))
}

#[test]
fn a_refresh_request_is_a_refresh_rect_for_the_whole_desktop_on_the_io_channel() {
    let r = replay(BITMAP);
    let ids = r.decoder.session_ids().unwrap();
    let pdu = r.decoder.refresh_request().expect("freerdp-shadow accepts refresh rect");
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&pdu).unwrap() else {
        panic!("not a send data request");
    };
    assert_eq!((req.initiator_id, req.channel_id), (ids.user_channel_id, ids.io_channel_id));
    let header = decode::<ironrdp_pdu::rdp::headers::ShareControlHeader>(&req.user_data).unwrap();
    assert_eq!(header.share_id, ids.share_id);
    let ShareControlPdu::Data(ShareDataHeader { share_data_pdu: ShareDataPdu::RefreshRectangle(refresh), .. }) =
        header.share_control_pdu
    else {
        panic!("not a refresh rect: {:?}", header.share_control_pdu);
    };
    assert_eq!(refresh.areas_to_refresh, vec![InclusiveRectangle { left: 0, top: 0, right: 319, bottom: 239 }]);
    // Before the session is active there is nothing to refresh.
    assert!(PassiveDecoder::new().refresh_request().is_none());
}

/// Found by fuzzing (rdp_decoder): a client fast-path input PDU whose stated length is shorter
/// than its own header overflowed in IronRDP's header decoding; a client could stop the
/// recording (and with it the session) that way.
#[test]
fn a_client_input_shorter_than_its_header_is_ignored() {
    let mut decoder = PassiveDecoder::new();
    for frame in [&[0x26, 0x00][..], &[0x00, 0x01, 0x00], &[0x04, 0x80, 0x01]] {
        decoder.observe_client(frame).unwrap();
    }
    assert!(!decoder.is_stopped());
}

/// Only a PDU of bitmaps, raw surface bits or synchronize may be skipped by a lagging recording
/// (a Refresh Rect repaints its pixels); pointer, palette and order updates, RemoteFX (its codec
/// headers come once), compressed or encrypted PDUs, PDUs on other channels and every other
/// slow-path PDU carry state a redraw does not restore.
#[test]
fn only_pixels_a_redraw_repaints_are_repairable() {
    for (capture, bitmaps) in [(BITMAP, true), (BITMAP16, true), (REMOTEFX, false), (GFX, false)] {
        let io = replay(capture).decoder.session_ids().map(|ids| ids.io_channel_id);
        let targets: Vec<&[u8]> = records(capture).into_iter().filter(|(t, _)| *t == b'T').map(|(_, f)| f).collect();
        // freerdp-shadow sends its bitmaps fast-path: its slow-path PDUs are all state.
        assert!(targets.iter().filter(|f| is_x224(f)).all(|f| !repairable(f, io)), "a slow-path pdu is repairable");
        let pixels = targets.iter().filter(|f| repairable(f, io)).count();
        let surface = targets.iter().filter(|f| surface_commands(f)).count();
        if bitmaps {
            assert!(pixels > 0, "no captured bitmap pdu is repairable");
        } else {
            // Every screen update of a RemoteFX session is RemoteFX: none may be skipped.
            assert!(surface > 0, "no surface commands in the capture");
            assert_eq!(pixels, 0, "a remotefx pdu is repairable");
        }
    }
    let fast = |f: &[u8]| repairable(f, Some(1003));
    // One update each: code, then a 2-byte empty size.
    let one = |update: u8| [0x00, 0x05, update, 0x00, 0x00];
    assert!(fast(&one(0x01)), "bitmap");
    assert!(fast(&one(0x03)), "synchronize");
    assert!(fast(&one(0x04)), "surface commands");
    assert!(fast(&one(0x11)), "a bitmap's first fragment");
    // Surface commands: a frame marker, then Set Surface Bits of 4 bytes in `codec`, with or
    // without the extended header (24 bytes).
    let surface = |codec: u8, extended: bool, update: u8| {
        let mut cmds = vec![0x04, 0, 0, 0, 1, 0, 0, 0];
        cmds.extend([0x01, 0, 0, 0, 0, 0, 1, 0, 1, 0, 32, u8::from(extended), 0, codec, 1, 0, 1, 0, 4, 0, 0, 0]);
        if extended {
            cmds.extend([0u8; 24]);
        }
        cmds.extend([1, 2, 3, 4]);
        let mut pdu = vec![0x00, 0x80, 0, update];
        pdu.extend((cmds.len() as u16).to_le_bytes());
        pdu.extend(cmds);
        let len = pdu.len();
        pdu[1] = 0x80 | (len >> 8) as u8;
        pdu[2] = len as u8;
        pdu
    };
    assert!(fast(&surface(0, false, 0x04)), "raw surface bits");
    assert!(fast(&surface(0, true, 0x04)), "raw surface bits with the extended header");
    assert!(!fast(&surface(3, false, 0x04)), "remotefx surface bits");
    assert!(!fast(&surface(1, true, 0x04)), "nscodec surface bits");
    assert!(!fast(&surface(0, false, 0x14)), "a first fragment of surface commands");
    assert!(!fast(&surface(0, false, 0x34)), "a middle fragment of surface commands");
    let mut short = surface(0, false, 0x04);
    short[4] -= 1; // the update's size cuts the last command short (and leaves a byte over)
    assert!(!fast(&short));
    for (code, what) in [
        (0x00, "orders"),
        (0x02, "palette"),
        (0x05, "pointer hidden"),
        (0x06, "pointer default"),
        (0x08, "pointer position"),
        (0x09, "colour pointer"),
        (0x0A, "cached pointer"),
        (0x0B, "new pointer"),
        (0x0C, "large pointer"),
        (0x81, "compressed bitmap"),
    ] {
        assert!(!fast(&one(code)), "{what}");
    }
    // A bitmap, then a cached pointer in the same PDU.
    assert!(!fast(&[0x00, 0x0A, 0x01, 0x00, 0x00, 0x0A, 0x02, 0x00, 0x01, 0x00]));
    assert!(!fast(&[0x80, 0x05, 0x01, 0x00, 0x00]), "encrypted");
    assert!(!fast(&[0x00, 0x06, 0x01, 0x00, 0x00, 0x00]), "trailing byte");
    assert!(!fast(&[0x00, 0x05, 0x01, 0x05, 0x00]), "an update longer than the pdu");
    assert!(!fast(&[0x00, 0x02]), "no update");
    assert!(!fast(&[]));

    // Slow path (as xrdp sends its bitmaps): Share Data PDUs of type 2 `kind2` on `channel`,
    // compression flags `compression`, update type `update`, each with 4 bytes of body.
    let slow = |channel: u16, parts: &[(u8, u8, u16)]| {
        let mut user_data = Vec::new();
        for &(kind2, compression, update) in parts {
            user_data.extend(24u16.to_le_bytes()); // total length
            user_data.extend(0x17u16.to_le_bytes()); // data pdu, version 1
            user_data.extend(1002u16.to_le_bytes());
            user_data.extend(0x0001_03EAu32.to_le_bytes()); // share id
            user_data.extend([0, 1]);
            user_data.extend(6u16.to_le_bytes());
            user_data.extend([kind2, compression]);
            user_data.extend(0u16.to_le_bytes());
            user_data.extend(update.to_le_bytes());
            user_data.extend([0, 0, 0, 0]);
        }
        let sdi = ironrdp_pdu::mcs::SendDataIndication {
            initiator_id: 1002,
            channel_id: channel,
            user_data: std::borrow::Cow::Owned(user_data),
        };
        ironrdp_core::encode_vec(&X224(McsMessage::SendDataIndication(sdi))).unwrap()
    };
    assert!(repairable(&slow(1003, &[(0x02, 0, 1)]), Some(1003)), "a slow-path bitmap update");
    assert!(repairable(&slow(1003, &[(0x02, 0, 1), (0x02, 0, 3)]), Some(1003)), "bitmap, then synchronize");
    assert!(!repairable(&slow(1003, &[(0x02, 0, 1)]), None), "before the session is active");
    assert!(!repairable(&slow(1004, &[(0x02, 0, 1)]), Some(1003)), "another channel");
    assert!(!repairable(&slow(1003, &[(0x02, 0, 2)]), Some(1003)), "a palette");
    assert!(!repairable(&slow(1003, &[(0x02, 0, 0)]), Some(1003)), "orders");
    assert!(!repairable(&slow(1003, &[(0x02, 0x21, 1)]), Some(1003)), "compressed");
    assert!(!repairable(&slow(1003, &[(0x1B, 0, 1)]), Some(1003)), "a pointer pdu");
    assert!(!repairable(&slow(1003, &[(0x02, 0, 1), (0x1B, 0, 1)]), Some(1003)), "a bitmap, then a pointer");
}

/// The pointer drawn over the image moves when the client's pointer moves, on a still screen too
/// (the stage alone draws a move only with the target's next update, so a pointer moved before a
/// quiet stretch stayed where it was in the video): where it was and where it is are dirty.
#[test]
fn a_pointer_move_is_drawn_at_once_on_a_still_screen() {
    let mut r = replay(BITMAP);
    // The target's pointer: a white 2x2 colour pointer (cache 0, hot spot 0,0; 24-bpp XOR rows
    // of 6 bytes, 1-bpp AND rows padded to 2 bytes, all opaque).
    let mut pointer = vec![0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 4, 0, 12, 0];
    pointer.extend([0xFF; 12]);
    pointer.extend([0x00; 4]);
    let mut pdu = vec![0x00, 5 + pointer.len() as u8, 0x09, pointer.len() as u8, 0];
    pdu.extend(&pointer);
    r.decoder.set_pointer(10, 20).unwrap();
    r.decoder.observe_target(&pdu).unwrap();
    let before = r.decoder.screen().unwrap().bgrx.to_vec();
    let updates = r.decoder.set_pointer(200, 150).unwrap();
    assert_eq!(r.decoder.pointer(), Some((200, 150)));
    let Some(Update::Frame { dirty }) = updates.last() else { panic!("nothing drawn: {updates:?}") };
    let after = r.decoder.screen().unwrap();
    assert_eq!(before, after.bgrx, "the pointer is not part of the image");
    let p = after.pointer.expect("a pointer shown");
    assert_eq!((p.x, p.y, p.width, p.height), (200, 150, 2, 2));
    assert!(p.rgba.chunks(4).all(|px| px == [0xFF, 0xFF, 0xFF, crate::decode::POINTER_MAX_ALPHA]), "{:?}", p.rgba);
    assert_eq!(*dirty, Rect { x: 10, y: 20, width: 192, height: 132 }, "where it was and where it is");
    // The same position again draws nothing.
    assert_eq!(r.decoder.set_pointer(200, 150).unwrap(), Vec::new());
}

/// A target PDU on the graphics pipeline's dynamic channel (`drdynvc` chunk header, DVC data
/// header with a one-byte channel id, then `gfx`), sent on the session's `drdynvc` channel.
fn gfx_pdu(d: &PassiveDecoder, gfx: &[u8]) -> Vec<u8> {
    let stage = d.stage.as_ref().unwrap();
    let channel = stage.get_dvc::<GraphicsPipelineClient>().expect("the pipeline channel is open").channel_id();
    let mut user_data = Vec::new();
    user_data.extend(u32::try_from(gfx.len() + 2).unwrap().to_le_bytes());
    user_data.extend(3u32.to_le_bytes());
    user_data.extend([0x30, u8::try_from(channel).unwrap()]);
    user_data.extend(gfx);
    let sdi = ironrdp_pdu::mcs::SendDataIndication {
        initiator_id: d.user_channel_id.unwrap(),
        channel_id: d.drdynvc_channel_id.unwrap(),
        user_data: std::borrow::Cow::Owned(user_data),
    };
    ironrdp_core::encode_vec(&X224(McsMessage::SendDataIndication(sdi))).unwrap()
}

/// A graphics pipeline PDU the decoder cannot take (here a broken ZGFX segment; a skipped one
/// is the same) leaves its compression history, surfaces and codec contexts out of step with the
/// target's, and a refresh does not bring them back: the decoder stops (and the session ends)
/// rather than go on drawing a picture that may be wrong. A PDU on another dynamic channel that
/// the decoder does not know is only an error.
#[test]
fn a_graphics_pipeline_pdu_the_decoder_cannot_take_stops_it() {
    let mut r = replay(GFX);
    assert!(!r.decoder.is_stopped());
    let mut other = gfx_pdu(&r.decoder, &[0xE0, 0x04, 0x00]);
    // The same bytes for dynamic channel 200, which no one opened.
    let at = other.len() - 4;
    other[at] = 200;
    assert!(r.decoder.observe_target(&other).is_err());
    assert!(!r.decoder.is_stopped(), "another channel's data stopped the decoder");
    // A ZGFX segment with an unknown descriptor.
    let broken = gfx_pdu(&r.decoder, &[0x00, 0x24, 0x01, 0x02, 0x03]);
    let e = r.decoder.observe_target(&broken).unwrap_err();
    assert!(matches!(e, DecodeError::GraphicsPipeline), "{e}");
    assert!(r.decoder.is_stopped());
}

/// Whether a fast-path frame carries surface commands (its first update).
fn surface_commands(frame: &[u8]) -> bool {
    !is_x224(frame) && frame.len() > 3 && frame[if frame[1] & 0x80 != 0 { 3 } else { 2 }] & 0x0F == 4
}

/// Red team 9 (attack first on `h-red17`: `red17_skipping_the_first_remotefx_pdu_is_not_repaired`):
/// a RemoteFX encoder (FreeRDP's `rfx_write_message`) sends the codec's header messages once, in
/// its first PDU, so a skipped one leaves every later frame undecodable and no redraw repairs it.
/// Skipping it really does that (first half); the recording never skips one, since no RemoteFX
/// PDU is called repairable, and the decoder that sees them all shows the screen (second half).
#[test]
fn a_remotefx_pdu_is_never_skipped() {
    // What skipping the first RemoteFX PDU would do to the decoder.
    let mut d = PassiveDecoder::new();
    let (mut skipped, mut errors, mut blue) = (false, 0, None);
    for (tag, frame) in records(REMOTEFX) {
        match tag {
            b'C' => d.observe_client(frame).unwrap(),
            b'T' if !skipped && surface_commands(frame) => skipped = true,
            b'T' => errors += usize::from(d.observe_target(frame).is_err()),
            b'M' if frame == b"blue" => {}
            b'M' => blue = Some(share(&d, BLUE)),
            _ => {}
        }
    }
    let blue = blue.expect("pattern marker");
    assert!(skipped && errors > 0 && blue < 0.5, "the skip was repaired: {errors} errors, blue share {blue}");
    // The recorder's rule: no surface command PDU of the capture is skippable, and the decoder
    // that sees them all turns blue.
    let mut d = PassiveDecoder::new();
    let mut blue = None;
    for (tag, frame) in records(REMOTEFX) {
        match tag {
            b'C' => d.observe_client(frame).unwrap(),
            b'T' => {
                let io = d.session_ids().map(|i| i.io_channel_id);
                assert!(!(surface_commands(frame) && repairable(frame, io)), "a remotefx pdu is repairable");
                d.observe_target(frame).unwrap();
            }
            b'M' if frame == b"blue" => {}
            b'M' => blue = Some(share(&d, BLUE)),
            _ => {}
        }
    }
    let blue = blue.expect("pattern marker");
    assert!(blue > 0.5, "blue share {blue}");
}

/// Red team h-red17d's hole 5, flipped: a fast-path update whose updateCode says Palette (0x2)
/// but whose body is a bitmap update. FreeRDP sends both codes to `fastpath_recv_update_common`,
/// which reads the body's own updateType (UPDATE_TYPE_BITMAP) and draws the bitmaps; IronRDP
/// hands the body to its palette processor, which ignores it. It was taken in silence; now it
/// is a gap (and the filter ends the session on it: `an_update_under_another_updates_code_ends_the_session`).
#[test]
fn a_bitmap_sent_under_the_palette_code_is_a_gap() {
    let single_bitmap = |frame: &[u8]| {
        if is_x224(frame) || frame[0] & 0x03 != 0 || frame.len() < 6 {
            return None;
        }
        let at = if frame[1] & 0x80 != 0 { 3 } else { 2 };
        let update = *frame.get(at)?;
        let size = usize::from(u16::from_le_bytes([*frame.get(at + 1)?, *frame.get(at + 2)?]));
        (update == 0x01 && at + 3 + size == frame.len() && frame.get(at + 3..at + 5) == Some(&[1, 0][..])).then_some(at)
    };
    let (at, bitmap) = records(BITMAP)
        .into_iter()
        .filter(|(tag, _)| *tag == b'T')
        .filter_map(|(_, f)| single_bitmap(f).map(|at| (at, f.to_vec())))
        .next_back()
        .expect("a single unfragmented fast-path bitmap update in the capture");
    let mut r = replay(BITMAP);
    // The control: the bitmap update as it came is drawn.
    let drawn = r.decoder.observe_target(&bitmap).unwrap();
    assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "{drawn:?}");
    // The same bytes under the palette code: what FreeRDP draws, the decoder takes in silence.
    let mut disguised = bitmap.clone();
    disguised[at] = 0x02;
    let gap = r.decoder.observe_target(&disguised);
    assert!(matches!(gap, Err(DecodeError::Unrecorded("a bitmap sent under the palette update code"))), "{gap:?}");
    assert!(!r.decoder.is_stopped());
    // A bitmap code over a palette body (FreeRDP applies the palette, IronRDP skips it): a gap.
    let mut palette = vec![0x00, 0x00, 0x00, 0x01];
    let mut body = vec![0x02, 0x00, 0x00, 0x00];
    body.extend(256u32.to_le_bytes());
    body.extend([0x80; 768]);
    palette.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
    palette.extend(&body);
    let len = u16::try_from(palette.len()).unwrap() | 0x8000;
    palette[1..3].copy_from_slice(&len.to_be_bytes());
    assert!(r.decoder.observe_target(&palette).is_err());
    // The same body under its own code is applied without a gap.
    palette[3] = 0x02;
    assert_eq!(r.decoder.observe_target(&palette).unwrap(), Vec::new());
    assert!(!r.decoder.is_stopped());
    assert!(!repairable(&disguised, r.decoder.session_ids().map(|i| i.io_channel_id)), "never skipped: decoded");
}

/// Red team h-red17d's hole 6, flipped: surface commands whose last command is a Frame Marker
/// with an unknown frameAction. FreeRDP 3 reads the frame marker without checking the action
/// (`update_recv_surfcmd_frame_marker`; its GDI ignores unknown actions) and has already drawn
/// the Set Surface Bits before it; IronRDP decodes the update whole, fails on the action
/// (InvalidField) and drops every command of it ("Ignoring invalid Fast-Path update"). That was
/// no error, no frame, no gap; now it is a gap.
#[test]
fn surface_bits_behind_an_odd_frame_marker_are_a_gap() {
    const GREEN: [u8; 3] = [0, 255, 0];
    let (w, h) = (64u16, 64u16);
    let mut commands = 0x0001u16.to_le_bytes().to_vec(); // CMDTYPE_SET_SURFACE_BITS
    for v in [128u16, 88, 128 + w, 88 + h] {
        commands.extend(v.to_le_bytes()); // destLeft, destTop, destRight, destBottom
    }
    commands.extend([32, 0, 0, 0]); // bpp, flags, reserved, codecID 0 (raw)
    commands.extend(w.to_le_bytes());
    commands.extend(h.to_le_bytes());
    let pixels: Vec<u8> = std::iter::repeat_n([0u8, 255, 0, 0], usize::from(w) * usize::from(h)).flatten().collect();
    commands.extend(u32::try_from(pixels.len()).unwrap().to_le_bytes());
    commands.extend(&pixels);
    let fast_path = |commands: &[u8]| {
        let mut frame = vec![0x00, 0x00, 0x00, 0x04]; // header, 2-byte length, FASTPATH_UPDATETYPE_SURFCMDS
        frame.extend(u16::try_from(commands.len()).unwrap().to_le_bytes());
        frame.extend(commands);
        let len = u16::try_from(frame.len()).unwrap() | 0x8000;
        frame[1..3].copy_from_slice(&len.to_be_bytes());
        frame
    };
    let marker = |action: u16| [&0x0004u16.to_le_bytes()[..], &action.to_le_bytes(), &7u32.to_le_bytes()].concat();
    // The control: with an End marker the decoder draws the green square.
    let mut r = replay(BITMAP);
    assert!(!close(center(&r.decoder), GREEN));
    let updates = r.decoder.observe_target(&fast_path(&[commands.clone(), marker(1)].concat())).unwrap();
    assert!(updates.iter().any(|u| matches!(u, Update::Frame { .. })), "{updates:?}");
    assert!(close(center(&r.decoder), GREEN), "the control draws: {:?}", center(&r.decoder));
    // The attack: frameAction 2.
    let mut r = replay(BITMAP);
    let before = center(&r.decoder);
    let gap = r.decoder.observe_target(&fast_path(&[commands.clone(), marker(2)].concat()));
    assert!(matches!(gap, Err(DecodeError::Unrecorded(_))), "{gap:?}");
    assert_eq!(center(&r.decoder), before, "the stage drew nothing of it");
    assert!(!r.decoder.is_stopped());
    // Surface bits in a codec the stage knows but does not draw (QOI, 0x0A: not built in) or at
    // a depth it skips: gaps too. (NSCodec's id the stage does not know: an error already.)
    let mut qoi = commands.clone();
    qoi[13] = 0x0A;
    assert!(matches!(r.decoder.observe_target(&fast_path(&qoi)), Err(DecodeError::Unrecorded(_))));
    let mut nscodec = commands.clone();
    nscodec[13] = 1;
    assert!(r.decoder.observe_target(&fast_path(&nscodec)).is_err());
    let mut depth = commands;
    depth[10] = 12;
    assert!(matches!(r.decoder.observe_target(&fast_path(&depth)), Err(DecodeError::Unrecorded(_))));
    assert!(!r.decoder.is_stopped());
}

/// Red team h-red17d's hole 7 (graphics pipeline), flipped: graphics pipeline PDUs sent during a
/// reactivation, after the target's new Demand Active and before its Font Map. FreeRDP 3 reads
/// every PDU in its finalization states through `rdp_recv_pdu` → `rdp_recv_tpkt_pdu`, static
/// channels included (`freerdp_channel_process`, so `drdynvc` and the graphics pipeline draw).
/// The decoder dropped them there; now the target drawing ends the reactivation for the decoder
/// too, and the broken ZGFX segment stops it as it does when active.
#[test]
fn graphics_pipeline_pdus_during_reactivation_are_decoded() {
    use ironrdp_pdu::rdp::headers::ShareControlHeader;
    let demand_active = records(GFX)
        .into_iter()
        .filter(|(tag, f)| *tag == b'T' && is_x224(f))
        .find(|(_, f)| {
            ironrdp_pdu::mcs::decode_send_data_indication(f).is_ok_and(|ctx| {
                decode::<ShareControlHeader>(ctx.user_data)
                    .is_ok_and(|h| matches!(h.share_control_pdu, ShareControlPdu::ServerDemandActive(_)))
            })
        })
        .map(|(_, f)| f.to_vec())
        .expect("the capture's demand active");
    let broken = [0x00, 0x24, 0x01, 0x02, 0x03];
    // The control: when active, the broken segment stops the decoder.
    let mut r = replay(GFX);
    let pdu = gfx_pdu(&r.decoder, &broken);
    assert!(r.decoder.observe_target(&pdu).is_err() && r.decoder.is_stopped());
    // During a reactivation, and after a Deactivate All, it stops the decoder just the same.
    let mut r = replay(GFX);
    let pdu = gfx_pdu(&r.decoder, &broken);
    r.decoder.observe_target(&demand_active).unwrap();
    assert!(matches!(r.decoder.observe_target(&pdu), Err(DecodeError::GraphicsPipeline)));
    assert!(r.decoder.is_stopped());
    let mut r = replay(GFX);
    let pdu = gfx_pdu(&r.decoder, &broken);
    r.decoder.phase = Phase::Deactivated;
    assert!(matches!(r.decoder.observe_target(&pdu), Err(DecodeError::GraphicsPipeline)));
    assert!(r.decoder.is_stopped());
}

/// Red team h-red17d's hole 7 (slow path), flipped: a bitmap Update PDU on the I/O channel
/// between a Demand Active and the Font Map is drawn by FreeRDP 3 (its finalization states read
/// Data PDUs through `rdp_recv_data_pdu` → `update_recv`); the decoder passed I/O PDUs to its
/// stage only when `Active` (`io_pdu`) and dropped it. Now it is drawn, as it is when active,
/// and so are a fast-path bitmap and the slow-path one after a Deactivate All.
#[test]
fn slow_path_bitmaps_during_reactivation_are_drawn() {
    let single_bitmap = |frame: &[u8]| {
        if is_x224(frame) || frame[0] & 0x03 != 0 || frame.len() < 6 {
            return None;
        }
        let at = if frame[1] & 0x80 != 0 { 3 } else { 2 };
        let size = usize::from(u16::from_le_bytes([*frame.get(at + 1)?, *frame.get(at + 2)?]));
        (frame[at] == 0x01 && at + 3 + size == frame.len()).then(|| frame[at + 3..].to_vec())
    };
    let bitmap_data = records(BITMAP)
        .into_iter()
        .filter(|(tag, _)| *tag == b'T')
        .filter_map(|(_, f)| single_bitmap(f))
        .next_back()
        .expect("a fast-path bitmap update in the capture");
    let demand_active = records(BITMAP)
        .into_iter()
        .filter(|(tag, f)| *tag == b'T' && is_x224(f))
        .find(|(_, f)| {
            ironrdp_pdu::mcs::decode_send_data_indication(f).is_ok_and(|ctx| {
                decode::<ironrdp_pdu::rdp::headers::ShareControlHeader>(ctx.user_data)
                    .is_ok_and(|h| matches!(h.share_control_pdu, ShareControlPdu::ServerDemandActive(_)))
            })
        })
        .map(|(_, f)| f.to_vec())
        .expect("the capture's demand active");
    let slow_path = |d: &PassiveDecoder| {
        let ids = d.session_ids().unwrap();
        let mut pdu = Vec::new();
        pdu.extend(u16::try_from(18 + bitmap_data.len()).unwrap().to_le_bytes());
        pdu.extend(0x0017u16.to_le_bytes()); // PDUTYPE_DATAPDU
        pdu.extend(1002u16.to_le_bytes());
        pdu.extend(ids.share_id.to_le_bytes());
        pdu.extend([0, 1]); // pad, streamId
        pdu.extend(u16::try_from(bitmap_data.len()).unwrap().to_le_bytes());
        pdu.extend([0x02, 0]); // PDUTYPE2_UPDATE, not compressed
        pdu.extend(0u16.to_le_bytes());
        pdu.extend(&bitmap_data); // updateType UPDATETYPE_BITMAP, then the bitmaps
        let sdi = ironrdp_pdu::mcs::SendDataIndication {
            initiator_id: ids.user_channel_id,
            channel_id: ids.io_channel_id,
            user_data: pdu.into(),
        };
        ironrdp_core::encode_vec(&X224(McsMessage::SendDataIndication(sdi))).unwrap()
    };
    let mut r = replay(BITMAP);
    let update = slow_path(&r.decoder);
    let drawn = r.decoder.observe_target(&update).unwrap();
    assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "the control is drawn: {drawn:?}");
    r.decoder.observe_target(&demand_active).unwrap();
    let drawn = r.decoder.observe_target(&update).unwrap();
    assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "drawn while reactivating: {drawn:?}");
    assert_eq!(r.decoder.phase, Phase::Active);
    r.decoder.phase = Phase::Deactivated;
    let drawn = r.decoder.observe_target(&update).unwrap();
    assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "drawn after deactivate all: {drawn:?}");
    let fast = {
        let mut f = vec![0x00, 0x00, 0x00, 0x01];
        f.extend(u16::try_from(bitmap_data.len()).unwrap().to_le_bytes());
        f.extend(&bitmap_data);
        let len = u16::try_from(f.len()).unwrap() | 0x8000;
        f[1..3].copy_from_slice(&len.to_be_bytes());
        f
    };
    let drawn = r.decoder.observe_target(&fast).unwrap();
    assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "fast path after deactivate all: {drawn:?}");
    assert!(!r.decoder.is_stopped());
}

/// A target that says it is shutting down (Shutdown Denied, or a Set Error Info with a code)
/// and goes on drawing: FreeRDP notes the error or ignores the denial and keeps drawing, while
/// IronRDP's stage calls both a graceful end. The decoder stopped decoding there and dropped
/// every later screen PDU without a gap; now only the MCS Disconnect Provider Ultimatum (on which
/// clients close) ends its decoding.
#[test]
fn a_target_that_says_it_ends_and_goes_on_drawing_is_still_recorded() {
    let single_bitmap = |frame: &[u8]| {
        if is_x224(frame) || frame[0] & 0x03 != 0 || frame.len() < 6 {
            return None;
        }
        let at = if frame[1] & 0x80 != 0 { 3 } else { 2 };
        let size = usize::from(u16::from_le_bytes([*frame.get(at + 1)?, *frame.get(at + 2)?]));
        (frame[at] == 0x01 && at + 3 + size == frame.len()).then(|| frame.to_vec())
    };
    let bitmap = records(BITMAP)
        .into_iter()
        .filter(|(tag, _)| *tag == b'T')
        .filter_map(|(_, f)| single_bitmap(f))
        .next_back()
        .expect("a fast-path bitmap update in the capture");
    let data_pdu = |d: &PassiveDecoder, kind2: u8, body: &[u8]| {
        let ids = d.session_ids().unwrap();
        let mut pdu = u16::try_from(18 + body.len()).unwrap().to_le_bytes().to_vec();
        pdu.extend(0x0017u16.to_le_bytes()); // PDUTYPE_DATAPDU
        pdu.extend(1002u16.to_le_bytes());
        pdu.extend(ids.share_id.to_le_bytes());
        pdu.extend([0, 1]);
        pdu.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
        pdu.extend([kind2, 0]);
        pdu.extend(0u16.to_le_bytes());
        pdu.extend(body);
        let sdi = ironrdp_pdu::mcs::SendDataIndication {
            initiator_id: ids.user_channel_id,
            channel_id: ids.io_channel_id,
            user_data: pdu.into(),
        };
        ironrdp_core::encode_vec(&X224(McsMessage::SendDataIndication(sdi))).unwrap()
    };
    // PDUTYPE2_SHUTDOWN_DENIED; PDUTYPE2_SET_ERROR_INFO_PDU with ERRINFO_LOGOFF_BY_USER.
    for (kind2, body) in [(0x25u8, &[][..]), (0x2F, &0x0000_000Cu32.to_le_bytes()[..])] {
        let mut r = replay(BITMAP);
        let said = data_pdu(&r.decoder, kind2, body);
        let updates = r.decoder.observe_target(&said).unwrap();
        assert!(updates.contains(&Update::Ended), "{kind2:#x}: {updates:?}");
        let drawn = r.decoder.observe_target(&bitmap).unwrap();
        assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "{kind2:#x}: drawn after it: {drawn:?}");
    }
    // The Disconnect Provider Ultimatum ends decoding: the client closes on it.
    let mut r = replay(BITMAP);
    let ultimatum = ironrdp_core::encode_vec(&X224(McsMessage::DisconnectProviderUltimatum(
        ironrdp_pdu::mcs::DisconnectProviderUltimatum::from_reason(
            ironrdp_pdu::mcs::DisconnectReason::ProviderInitiated,
        ),
    )))
    .unwrap();
    assert_eq!(r.decoder.observe_target(&ultimatum).unwrap(), vec![Update::Ended]);
    assert_eq!(r.decoder.observe_target(&bitmap).unwrap(), Vec::new());
}
