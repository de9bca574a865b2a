//! Red team `h-red17i`'s attacks on the filter: each test passes while its hole is open (or, once
//! fixed, shows the attack refused), and each shows the peer that acts on what the filter and the
//! recorder read differently.

use super::*;
use crate::decode::{PassiveDecoder, capture_records};
use ironrdp_egfx::pdu::{
    CacheImportReplyPdu, Color, CreateSurfacePdu, EndFramePdu, GfxPdu, MapSurfaceToOutputPdu, PixelFormat,
    ResetGraphicsPdu, SolidFillPdu, StartFramePdu, Timestamp,
};
use ironrdp_pdu::geometry::ExclusiveRectangle;

const GFX: &[u8] = include_bytes!("testdata/shadow_gfx.cap");

fn injection() -> Injection {
    Injection { username: "root".into(), domain: Some("TGT".into()), password: "target-secret".into() }
}

/// A session through the filter, with the recorder's decoder shown what the filter passes: the
/// captured freerdp-shadow session with the graphics pipeline open.
struct Session {
    filter: Filter,
    decoder: PassiveDecoder,
    /// The `drdynvc` MCS channel and the graphics pipeline's dynamic channel id.
    drdynvc: u16,
    gfx: u32,
}

/// What the filter lets through of `frame`, or `None` (dropped or refused).
fn passed(verdict: Verdict, frame: &[u8]) -> Option<Vec<u8>> {
    match verdict {
        Verdict::Forward => Some(frame.to_vec()),
        Verdict::Replace(out) => Some(out),
        Verdict::Drop => None,
        Verdict::Refuse(why) => panic!("the capture was refused: {why}"),
    }
}

fn session() -> Session {
    let mut filter = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    let mut decoder = PassiveDecoder::new();
    for (tag, frame) in capture_records(GFX) {
        match tag {
            b'C' => {
                if let Some(out) = passed(filter.from_client(frame).unwrap(), frame) {
                    decoder.observe_client(&out).unwrap();
                }
            }
            b'T' => {
                if let Some(out) = passed(filter.from_target(frame).unwrap(), frame) {
                    decoder.observe_target(&out).unwrap();
                }
            }
            _ => {}
        }
    }
    let drdynvc = filter.decisions().iter().find(|d| d.name == "drdynvc").expect("drdynvc").id;
    let gfx = *filter.dynamic.open.iter().find(|(_, c)| c.graphics).expect("the graphics pipeline is open").0;
    assert!(!decoder.is_stopped());
    Session { filter, decoder, drdynvc, gfx }
}

/// A static channel chunk from the target on `channel`.
fn target_chunk(channel: u16, total: usize, flags: u32, bytes: &[u8]) -> Vec<u8> {
    let mut user_data = u32::try_from(total).unwrap().to_le_bytes().to_vec();
    user_data.extend(flags.to_le_bytes());
    user_data.extend(bytes);
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// FreeRDP 2.11.7's client reassembly of one static channel's chunks
/// (`drdynvc_virtual_channel_event_data_received`): a chunk flagged suspend or resume is
/// skipped whole; a first chunk starts a message, whatever was in progress; every other chunk is
/// appended; a last one completes the message, whatever its length says.
fn freerdp_messages(chunks: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for frame in chunks {
        let X224(McsMessage::SendDataIndication(ind)) = decode::<X224<McsMessage<'_>>>(frame).unwrap() else {
            panic!("not a send data indication")
        };
        let flags = uint_at(&ind.user_data, 4, 4).unwrap();
        if flags & (CHANNEL_FLAG_SUSPEND | CHANNEL_FLAG_RESUME) != 0 {
            continue;
        }
        if flags & CHANNEL_FLAG_FIRST != 0 {
            current = Some(Vec::new());
        }
        let Some(message) = current.as_mut() else { continue };
        message.extend_from_slice(&ind.user_data[8..]);
        if flags & CHANNEL_FLAG_LAST != 0 {
            messages.extend(current.take());
        }
    }
    messages
}

/// Graphics pipeline PDUs painting the whole 320x240 desktop red on a new surface (after a Reset
/// Graphics, as a target starts drawing).
fn red_screen() -> Vec<u8> {
    let surface = 9;
    let rect = ExclusiveRectangle { left: 0, top: 0, right: 320, bottom: 240 };
    let red = Color { b: 0, g: 0, r: 255, xa: 0xFF };
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    [
        GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: Vec::new() }),
        GfxPdu::CreateSurface(CreateSurfacePdu {
            surface_id: surface,
            width: 320,
            height: 240,
            pixel_format: PixelFormat::XRgb,
        }),
        GfxPdu::MapSurfaceToOutput(MapSurfaceToOutputPdu {
            surface_id: surface,
            output_origin_x: 0,
            output_origin_y: 0,
        }),
        GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 77 }),
        GfxPdu::SolidFill(SolidFillPdu { surface_id: surface, fill_pixel: red, rectangles: vec![rect] }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: 77 }),
    ]
    .iter()
    .flat_map(|p| encode_vec(p).unwrap())
    .collect()
}

/// The share of the decoder's screen that is red.
fn red_share(d: &PassiveDecoder) -> f64 {
    let s = d.screen().expect("a screen");
    let mut red = 0usize;
    for y in 0..usize::from(s.height) {
        for x in 0..usize::from(s.width) {
            let at = y * s.stride + x * 4;
            red += usize::from(s.bgrx[at] < 16 && s.bgrx[at + 1] < 16 && s.bgrx[at + 2] > 240);
        }
    }
    red as f64 / (f64::from(s.width) * f64::from(s.height))
}

/// Hole 1 (fixed): static channel chunks flagged CHANNEL_FLAG_SUSPEND or CHANNEL_FLAG_RESUME.
/// FreeRDP's client channels skip such a chunk whole (`drdynvc_main.c`, `cliprdr_main.c`,
/// `rdpsnd_main.c`, `rdpdr_main.c` in 2.11.7), while the filter and the recorder (IronRDP's
/// `ChunkProcessor`) counted it like any other. A target spliced two messages: the filter and
/// the recorder read `a+b` (a graphics pipeline DVC Data PDU holding an empty Cache Import
/// Reply) and `c+d` (a DVC Capabilities Request with trailing bytes), while FreeRDP, skipping `b`
/// and `c`, read `a+d`: the graphics pipeline painting the screen red. The client showed it; the
/// recording never changed and stated no gap. Now such chunks are dropped: the splice no longer
/// adds up for the filter (the session ends), and where it does, the recorder reads what FreeRDP
/// reads.
#[test]
fn red17i_suspended_chunks_show_the_client_a_screen_the_recording_never_sees() {
    let mut s = session();
    // a: a DVC Data PDU on the graphics pipeline, its first bytes an uncompressed ZGFX segment.
    let a = [vec![0x30, u8::try_from(s.gfx).unwrap()], vec![0xE0, 0x04]].concat();
    let b = encode_vec(&GfxPdu::CacheImportReply(CacheImportReplyPdu { cache_slots: Vec::new() })).unwrap();
    // c: a DVC Capabilities Request (version 1); d: the red screen.
    let c = vec![0x50, 0x00, 0x01, 0x00];
    let d = red_screen();
    let chunks = [
        target_chunk(s.drdynvc, a.len() + b.len(), CHANNEL_FLAG_FIRST, &a),
        target_chunk(s.drdynvc, a.len() + b.len(), CHANNEL_FLAG_LAST | CHANNEL_FLAG_SUSPEND, &b),
        target_chunk(s.drdynvc, c.len() + d.len(), CHANNEL_FLAG_FIRST | CHANNEL_FLAG_RESUME, &c),
        target_chunk(s.drdynvc, c.len() + d.len(), CHANNEL_FLAG_LAST, &d),
    ];
    // FreeRDP reads one message of these chunks: a + d, the red screen on the graphics pipeline,
    // and a decoder shown that message paints the screen red: that is what the client shows.
    assert_eq!(freerdp_messages(&chunks), vec![[a.clone(), d.clone()].concat()]);
    let mut seen = session();
    let whole = [a.clone(), d.clone()].concat();
    seen.decoder.observe_target(&target_chunk(seen.drdynvc, whole.len(), 3, &whole)).unwrap();
    assert!(red_share(&seen.decoder) > 0.95, "the client's message does not paint the screen");
    // The filter: the first passes, the flagged ones are dropped, and the last no longer adds up.
    let verdicts: Vec<Verdict> = chunks.iter().map(|c| s.filter.from_target(c).unwrap()).collect();
    assert_eq!(verdicts, [Verdict::Forward, Verdict::Drop, Verdict::Drop, Verdict::Refuse(DVC_UNREADABLE)]);
    // Where the splice adds up, the recorder is shown what FreeRDP reads, and records it.
    let mut s = session();
    let chunks = [
        target_chunk(s.drdynvc, a.len() + d.len(), CHANNEL_FLAG_FIRST, &a),
        target_chunk(s.drdynvc, a.len() + d.len(), CHANNEL_FLAG_LAST | CHANNEL_FLAG_SUSPEND, &b),
        target_chunk(s.drdynvc, a.len() + d.len(), CHANNEL_FLAG_LAST, &d),
    ];
    let mut sent = Vec::new();
    for chunk in &chunks {
        if let Some(out) = passed(s.filter.from_target(chunk).unwrap(), chunk) {
            s.decoder.observe_target(&out).expect("the recorder could not decode a chunk");
            sent.push(out);
        }
    }
    assert_eq!(freerdp_messages(&sent), vec![whole]);
    assert!(red_share(&s.decoder) > 0.95, "the recording missed what the client draws");
}
