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

fn records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push((tag, &rest[4..4 + len]));
        data = &rest[4 + len..];
    }
    out
}

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
        // Skip the handshake: graphics alone cannot be placed.
        if tag == b'T' && !is_x224(frame) {
            assert_eq!(d.observe_target(frame).unwrap(), Vec::new());
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
