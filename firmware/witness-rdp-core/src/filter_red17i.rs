//! Red team `h-red17i`'s attacks on the filter: each test passes while its hole is open (or, once
//! fixed, shows the attack refused), and each shows the peer that acts on what the filter and the
//! recorder read differently.

use super::*;
use crate::decode::{DecodeError, PassiveDecoder, Update, capture_records};
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
pub(super) struct Session {
    pub(super) filter: Filter,
    pub(super) decoder: PassiveDecoder,
    /// The `drdynvc` MCS channel and the graphics pipeline's dynamic channel id.
    pub(super) drdynvc: u16,
    pub(super) gfx: u32,
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

/// A captured session replayed through the filter, the decoder shown what the filter passes.
fn replayed(capture: &[u8]) -> (Filter, PassiveDecoder) {
    let mut filter = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    let mut decoder = PassiveDecoder::new();
    for (tag, frame) in capture_records(capture) {
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
    (filter, decoder)
}

pub(super) fn session() -> Session {
    let (filter, decoder) = replayed(GFX);
    let drdynvc = filter.decisions().iter().find(|d| d.name == "drdynvc").expect("drdynvc").id;
    let gfx = *filter.dynamic.open.iter().find(|(_, c)| c.graphics).expect("the graphics pipeline is open").0;
    assert!(!decoder.is_stopped());
    Session { filter, decoder, drdynvc, gfx }
}

/// A static channel chunk from the target on `channel`.
pub(super) fn target_chunk(channel: u16, total: usize, flags: u32, bytes: &[u8]) -> Vec<u8> {
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
pub(super) fn red_screen() -> Vec<u8> {
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
pub(super) fn red_share(d: &PassiveDecoder) -> f64 {
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
    // The filter: the first is held back (the graphics pipeline passes whole messages), the
    // flagged ones are dropped, and the last no longer adds up.
    let verdicts: Vec<Verdict> = chunks.iter().map(|c| s.filter.from_target(c).unwrap()).collect();
    assert_eq!(verdicts, [Verdict::Drop, Verdict::Drop, Verdict::Drop, Verdict::Refuse(DVC_UNREADABLE)]);
    // Where the splice adds up, the recorder is shown what FreeRDP reads, and records it.
    let mut s = session();
    let chunks = [
        target_chunk(s.drdynvc, a.len() + d.len(), CHANNEL_FLAG_FIRST, &a),
        target_chunk(s.drdynvc, a.len() + d.len(), CHANNEL_FLAG_LAST | CHANNEL_FLAG_SUSPEND, &b),
        target_chunk(s.drdynvc, a.len() + d.len(), CHANNEL_FLAG_LAST, &d),
    ];
    let mut sent = Vec::new();
    for chunk in &chunks {
        if let Some(mut out) = passed(s.filter.from_target(chunk).unwrap(), chunk) {
            // A message held back passes with every frame that carried it: the recorder gets
            // them one by one, as the relay hands them over.
            while !out.is_empty() {
                let n = ironrdp_pdu::find_size(&out).unwrap().unwrap().length;
                let rest = out.split_off(n);
                s.decoder.observe_target(&out).expect("the recorder could not decode a chunk");
                sent.push(std::mem::replace(&mut out, rest));
            }
        }
    }
    assert_eq!(freerdp_messages(&sent), vec![whole]);
    assert!(red_share(&s.decoder) > 0.95, "the recording missed what the client draws");
}

/// A filter past activation with `drdynvc` on MCS channel 1004 and a grant that opens nothing:
/// no clipboard, no drives, no devices.
pub(super) fn grant_without_anything() -> Filter {
    let mut f = Filter::new(SecurityProtocol::SSL, Redirection::NONE, injection());
    (f.connect_initial_seen, f.client_info_seen, f.active, f.io_channel) = (true, true, true, Some(1003));
    f.client_gfx = true;
    f.decisions = vec![ChannelDecision { name: "drdynvc".into(), id: 1004, allowed: true }];
    f
}

/// A static channel PDU on `drdynvc` holding one whole dynamic channel PDU.
pub(super) fn svc(dvc: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(dvc.len()).unwrap().to_le_bytes().to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(dvc);
    out
}

pub(super) fn client_send(user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: 1004, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

pub(super) fn target_send(user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1004, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// Hole 2 (fixed): a dynamic channel the grant opened because it "carried no redirection" was a
/// raw pipe for any program in the target session. The target names its dynamic channels, and on
/// xrdp any program of the session picks the name: xrdpapi's `WTSVirtualChannelOpenEx(...,
/// WTS_CHANNEL_OPTION_DYNAMIC)` reaches chansrv's `my_api_trans_data_in`, which opens a DVC under
/// whatever name the program sent (`chansrv_drdynvc_open(chan_name, ...)`, xrdp 0.9.21) and
/// hands it every byte the client sends there (`my_api_data`); Windows' WTS API does the same.
/// So on a grant with no clipboard and no drives, a program on the target that opened
/// `AUDIO_PLAYBACK_DVC` or `Microsoft::Windows::RDS::DisplayControl`, and a client that accepted
/// it, moved files both ways: the filter judged dynamic channels by name only, and their data
/// passed unread. (The static `rdpsnd`, which xrdpapi also opens for a program by name, carried
/// the program's bytes to the client the same way.)
///
/// Now sound is a class the grant opens (`--audio`), and every channel opened without one, and
/// sound on a grant with it, is read message by message as its protocol defines it: a message
/// is gathered whole (its frames held back) and judged before any byte of it passes, and one
/// that is not exactly its protocol's ends the session, naming the channel.
#[test]
fn red17i_an_allowed_dynamic_channel_is_a_raw_pipe_for_a_program_on_the_target() {
    use crate::messages::{AUDIO_REFUSED, DISPLAY_CONTROL_REFUSED};
    // A "file": an ELF header and its bytes, as the grant's missing drives would have carried.
    let mut file = b"\x7fELF\x02\x01\x01\0".to_vec();
    file.extend((0..2000u32).map(|i| (i * 7 + 3) as u8));
    let carries_file = |bytes: &[u8]| bytes.windows(8).any(|w| w == &file[..8]);
    let create = |name: &str| {
        let mut create = vec![0x10, 5];
        create.extend(name.as_bytes());
        create.push(0);
        target_send(svc(&create))
    };
    let created = || client_send(svc(&[0x10, 5, 0, 0, 0, 0]));
    // A refused channel reaches the client under the box's id (red team h-red31, hole 2): its
    // yes answers that id.
    let created_refused = || client_send(svc(&[0x12, 0x00, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]));
    // The file as a DVC Data First (a 4-byte total length) and a Data PDU for the rest.
    let (head, tail) = file.split_at(1000);
    let mut first = vec![0x28, 5];
    first.extend(u32::try_from(file.len()).unwrap().to_le_bytes());
    first.extend(head);
    let mut rest = vec![0x30, 5];
    rest.extend(tail);

    // On a grant without audio, sound's channel does not open: the client hears of a channel no
    // client has, its yes becomes a no, and nothing crosses either way.
    let mut f = grant_without_anything();
    let Verdict::Replace(renamed) = f.from_target(&create("AUDIO_PLAYBACK_DVC")).unwrap() else {
        panic!("AUDIO_PLAYBACK_DVC opened on a grant without audio")
    };
    assert!(!renamed.windows(5).any(|w| w == b"AUDIO"));
    assert!(matches!(f.from_client(&created_refused()).unwrap(), Verdict::Replace(_)));
    for pdu in [&first, &rest] {
        assert_eq!(f.from_client(&client_send(svc(pdu))).unwrap(), Verdict::Drop);
        assert_eq!(f.from_target(&target_send(svc(pdu))).unwrap(), Verdict::Drop);
    }
    assert!(!channels::static_allowed(f.redirection, b"rdpsnd\0\0"), "nor does rdpsnd");
    // Touch input opens on no grant (its fields leave kilobytes a message free: red17k).
    let mut f = grant_without_anything();
    assert!(matches!(f.from_target(&create("Microsoft::Windows::RDS::Input")).unwrap(), Verdict::Replace(_)));
    assert!(matches!(f.from_client(&created_refused()).unwrap(), Verdict::Replace(_)));
    for pdu in [&first, &rest] {
        assert_eq!(f.from_client(&client_send(svc(pdu))).unwrap(), Verdict::Drop);
        assert_eq!(f.from_target(&target_send(svc(pdu))).unwrap(), Verdict::Drop);
    }

    // The channels that open (display control on every grant, sound on a grant with audio): the
    // file ends the session either way, and no byte of it passes.
    for (name, grant, refusal) in [
        ("Microsoft::Windows::RDS::DisplayControl", Redirection::NONE, DISPLAY_CONTROL_REFUSED),
        ("AUDIO_PLAYBACK_DVC", Redirection::NONE.with(Class::Audio), AUDIO_REFUSED),
    ] {
        for from_client in [true, false] {
            let mut f = grant_without_anything();
            f.redirection = grant;
            assert_eq!(f.from_target(&create(name)).unwrap(), Verdict::Forward, "{name} was not opened");
            assert_eq!(f.from_client(&created()).unwrap(), Verdict::Forward);
            let send = |f: &mut Filter, pdu: &[u8]| {
                if from_client { f.from_client(&client_send(svc(pdu))) } else { f.from_target(&target_send(svc(pdu))) }
                    .unwrap()
            };
            if refusal == DISPLAY_CONTROL_REFUSED {
                // Longer than any display control message: refused before it is gathered.
                assert_eq!(send(&mut f, &first), Verdict::Refuse(refusal), "{name}");
            } else {
                assert_eq!(send(&mut f, &first), Verdict::Drop, "{name}: the first fragment is held back");
                assert_eq!(send(&mut f, &rest), Verdict::Refuse(refusal), "{name}: the file crossed");
            }
            // Whole in one Data PDU: refused at once.
            let mut f = grant_without_anything();
            f.redirection = grant;
            f.from_target(&create(name)).unwrap();
            f.from_client(&created()).unwrap();
            let mut whole = vec![0x30, 5];
            whole.extend(&file);
            assert_eq!(send(&mut f, &whole), Verdict::Refuse(refusal), "{name}");
            // Compressed data cannot be read: refused.
            let mut f = grant_without_anything();
            f.redirection = grant;
            f.from_target(&create(name)).unwrap();
            f.from_client(&created()).unwrap();
            let mut compressed = vec![0x70, 5];
            compressed.extend(&file[..64]);
            assert_eq!(send(&mut f, &compressed), Verdict::Refuse(refusal), "{name}: compressed");
        }
        // A second channel of the same name beside the session's is refused.
        let mut f = grant_without_anything();
        f.redirection = grant;
        f.from_target(&create(name)).unwrap();
        let mut second = vec![0x10, 6];
        second.extend(name.as_bytes());
        second.push(0);
        assert!(matches!(f.from_target(&target_send(svc(&second))).unwrap(), Verdict::Replace(_)), "{name}");
    }

    // The file hidden after a real message (the target's display control Caps, with its length
    // saying so), or in a message that claims more than the protocol needs: refused.
    let mut f = grant_without_anything();
    f.from_target(&create("Microsoft::Windows::RDS::DisplayControl")).unwrap();
    f.from_client(&created()).unwrap();
    let mut caps = vec![0x30, 5];
    caps.extend([5u32, u32::try_from(20 + file.len()).unwrap(), 16, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()));
    caps.extend(&file);
    assert_eq!(f.from_target(&target_send(svc(&caps))).unwrap(), Verdict::Refuse(DISPLAY_CONTROL_REFUSED));
    let mut f = grant_without_anything();
    f.from_target(&create("Microsoft::Windows::RDS::DisplayControl")).unwrap();
    let mut huge = vec![0x28, 5];
    huge.extend(1_000_000u32.to_le_bytes());
    huge.extend(&file[..100]);
    assert_eq!(f.from_target(&target_send(svc(&huge))).unwrap(), Verdict::Refuse(DISPLAY_CONTROL_REFUSED));

    // The static `rdpsnd` on a grant with audio: a program's bytes to the client end the session.
    let mut f = grant_without_anything();
    f.redirection = Redirection::NONE.with(Class::Audio);
    f.decisions.push(ChannelDecision { name: "rdpsnd".into(), id: 1005, allowed: true });
    let mut chunk = u32::try_from(file.len()).unwrap().to_le_bytes().to_vec();
    chunk.extend(3u32.to_le_bytes());
    chunk.extend(&file);
    let down =
        encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1005, user_data: Cow::Owned(chunk) }))
            .unwrap();
    assert_eq!(f.from_target(&down).unwrap(), Verdict::Refuse(AUDIO_REFUSED));

    // Controls: the protocols' own messages pass, gathered across fragments and static chunks,
    // and nothing passes before its message is whole.
    let mut f = grant_without_anything();
    f.from_target(&create("Microsoft::Windows::RDS::DisplayControl")).unwrap();
    f.from_client(&created()).unwrap();
    let mut caps = vec![0x30, 5];
    caps.extend([5u32, 20, 16, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()));
    assert_eq!(f.from_target(&target_send(svc(&caps))).unwrap(), Verdict::Forward);
    let layout: Vec<u8> =
        [2u32, 56, 40, 1, 1, 0, 0, 1280, 720, 1280, 720, 0, 100, 100].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut first = vec![0x20, 5, 56];
    first.extend(&layout[..30]);
    let mut second = vec![0x30, 5];
    second.extend(&layout[30..]);
    assert_eq!(f.from_client(&client_send(svc(&first))).unwrap(), Verdict::Drop);
    // The Data PDU in two static chunks.
    let dvc = svc(&second);
    let total = u32::try_from(second.len()).unwrap();
    let mut a = total.to_le_bytes().to_vec();
    a.extend(1u32.to_le_bytes());
    a.extend(&dvc[8..20]);
    let mut b = total.to_le_bytes().to_vec();
    b.extend(2u32.to_le_bytes());
    b.extend(&dvc[20..]);
    assert_eq!(f.from_client(&client_send(a.clone())).unwrap(), Verdict::Drop);
    let Verdict::Replace(out) = f.from_client(&client_send(b.clone())).unwrap() else {
        panic!("the layout did not pass")
    };
    let mut expect = client_send(svc(&first));
    expect.extend(client_send(a));
    expect.extend(client_send(b));
    assert_eq!(out, expect, "every frame of the message, in order");
    assert!(!carries_file(&out));
}

const BITMAP: &[u8] = include_bytes!("testdata/shadow_bitmap.cap");

/// A fast-path output PDU holding one bitmap update of one uncompressed 32 bpp rectangle of
/// `width` x `height` pixels of colour `bgrx`, its destination rectangle at `left`, `top`.
fn fast_path_bitmap(left: u16, top: u16, width: u16, height: u16, bgrx: [u8; 4]) -> Vec<u8> {
    let pixels = usize::from(width) * usize::from(height);
    let mut update = vec![0x01, 0x00, 0x01, 0x00];
    for v in [left, top, left + width - 1, top + height - 1, width, height, 32, 0] {
        update.extend(v.to_le_bytes());
    }
    update.extend(u16::try_from(pixels * 4).unwrap().to_le_bytes());
    update.extend(bgrx.repeat(pixels));
    let mut body = vec![0x01];
    body.extend(u16::try_from(update.len()).unwrap().to_le_bytes());
    body.extend(update);
    let mut frame = vec![0x00, 0x80, 0x00];
    frame.extend(body);
    let len = u16::try_from(frame.len()).unwrap() | 0x8000;
    frame[1..3].copy_from_slice(&len.to_be_bytes());
    frame
}

/// The colour at `x`, `y` of the decoder's screen (B, G, R).
pub(super) fn pixel(d: &PassiveDecoder, x: usize, y: usize) -> [u8; 3] {
    let s = d.screen().expect("a screen");
    let at = y * s.stride + x * 4;
    [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
}

/// Hole 3 (fixed): IronRDP's stage asks for a redraw only for the first bitmap rectangle it
/// drops in a session (`fast_path::Processor::request_bitmap_recovery` sets
/// `bitmap_recovery_requested` and nothing clears it), and the decoder stated a gap only through
/// that request (`Update::RefreshWanted`). A target sent one rectangle whose destination reaches
/// past the desktop's edge: FreeRDP draws what falls on the desktop (`gdi_Bitmap_Paint` →
/// `gdi_BitBlt` clips), the stage dropped it and the recording counted one gap. After a
/// whole-screen redraw (the picture verified again), every later such rectangle was drawn by
/// the client and dropped by the recorder in silence. Now the decoder's audit judges every
/// rectangle as the stage would draw it: each such drop is a gap, every time.
#[test]
fn red17i_bitmaps_past_the_desktop_edge_are_unrecorded_after_the_first_gap() {
    let (mut filter, mut decoder) = replayed(BITMAP);
    let screen = decoder.screen().expect("a screen");
    assert_eq!((screen.width, screen.height), (320, 240));
    const RED: [u8; 4] = [0, 0, 255, 0];
    const GREEN: [u8; 4] = [0, 255, 0, 0];
    const BLUE: [u8; 4] = [255, 0, 0, 0];
    let mut target = |frame: Vec<u8>| {
        assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Forward, "the filter refused the bitmap");
        decoder.observe_target(&frame)
    };
    // A 32x32 red square at (300, 220): 20x20 of it is on the desktop, which FreeRDP draws. The
    // stage drops it: a gap.
    let gap = |r: Result<Vec<Update>, DecodeError>| match r {
        Err(DecodeError::Unrecorded(what)) => what,
        other => panic!("a dropped bitmap was not stated as a gap: {other:?}"),
    };
    let what = gap(target(fast_path_bitmap(300, 220, 32, 32, RED)));
    assert!(what.contains("off the desktop"), "{what}");
    // The target redraws the corner in bounds (blue): recorded.
    let updates = target(fast_path_bitmap(288, 208, 32, 32, BLUE)).expect("an in-bounds bitmap");
    assert!(updates.iter().any(|u| matches!(u, Update::Frame { .. })), "{updates:?}");
    // The same square, green, past the edge again: FreeRDP shows green at (305, 225); the
    // recorder states the gap again (it was silent: the stage asks for a redraw once).
    gap(target(fast_path_bitmap(300, 220, 32, 32, GREEN)));
    assert_eq!(pixel(&decoder, 305, 225), [255, 0, 0], "the recording shows blue where the client shows green");
    // A destination that is not the bitmap's size (destBottom, at 16, one row only), and raw
    // data longer than its rows, are gaps too: the stage drops both and FreeRDP draws them.
    let mut one_row = fast_path_bitmap(0, 0, 16, 16, GREEN);
    one_row[16..18].copy_from_slice(&0u16.to_le_bytes());
    gap(decoder.observe_target(&one_row));
    let mut longer = fast_path_bitmap(0, 0, 16, 16, GREEN);
    longer.extend([0; 4]);
    let n = longer.len();
    longer[1..3].copy_from_slice(&(u16::try_from(n).unwrap() | 0x8000).to_be_bytes());
    let size = u16::from_le_bytes([longer[4], longer[5]]) + 4;
    longer[4..6].copy_from_slice(&size.to_le_bytes());
    let length = u16::from_le_bytes([longer[26], longer[27]]) + 4;
    longer[26..28].copy_from_slice(&length.to_le_bytes());
    // (The filter now ends the session over it: bytes past the rows would cross undrawn, red
    // team `h-red17r`'s hole 3; the decoder alone still states it.)
    assert_eq!(filter.from_target(&longer).unwrap(), Verdict::Refuse(BITMAP_AMBIGUOUS));
    gap(decoder.observe_target(&longer));
}

/// A fast-path output PDU of surface commands: one Set Surface Bits of raw (codec 0) 32 bpp
/// pixels of colour `bgrx`, its destination `left`, `top` (exclusive `right`, `bottom`), the
/// bitmap `width` x `height` pixels, with `extra` bytes after them.
fn raw_surface_bits(dest: [u16; 4], width: u16, height: u16, extra: usize, bgrx: [u8; 4]) -> Vec<u8> {
    let mut data = bgrx.repeat(usize::from(width) * usize::from(height));
    data.extend(std::iter::repeat_n(0, extra));
    let mut cmd = 0x0001u16.to_le_bytes().to_vec();
    for v in dest {
        cmd.extend(v.to_le_bytes());
    }
    cmd.extend([32, 0, 0, 0]); // bpp, flags, reserved, codecID 0
    cmd.extend(width.to_le_bytes());
    cmd.extend(height.to_le_bytes());
    cmd.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
    cmd.extend(data);
    let mut frame = vec![0x00, 0x80, 0x00, 0x04];
    frame.extend(u16::try_from(cmd.len()).unwrap().to_le_bytes());
    frame.extend(cmd);
    let len = u16::try_from(frame.len()).unwrap() | 0x8000;
    frame[1..3].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Hole 4 (fixed): raw surface bits (codec 0) are drawn by FreeRDP from a bitmap of at least its
/// width x height pixels (`gdi_surface_bits`: `if (size > cmd->bmp.bitmapDataLength)` fails only
/// a short one), while IronRDP's stage wants exactly the destination's pixels
/// (`require_bitmap_data_size`) and drops any other under its once-only redraw request. After
/// the first (a stated gap), a target drew with 4 bytes more per command and the recording
/// never changed, stating nothing. Now every such command is a gap.
#[test]
fn red17i_surface_bits_longer_than_their_rectangle_are_unrecorded_after_the_first_gap() {
    let (mut filter, mut decoder) = replayed(BITMAP);
    const GREEN: [u8; 4] = [0, 255, 0, 0];
    const BLUE: [u8; 4] = [255, 0, 0, 0];
    let mut target = |frame: Vec<u8>| {
        assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Forward, "the filter refused the surface bits");
        decoder.observe_target(&frame)
    };
    let gap = |r: Result<Vec<Update>, DecodeError>| match r {
        Err(DecodeError::Unrecorded(what)) => assert!(what.contains("raw surface bits"), "{what}"),
        other => panic!("dropped surface bits were not stated as a gap: {other:?}"),
    };
    // 16x16 green at (0, 0), 4 bytes too many: FreeRDP draws it; the stage drops it: a gap.
    gap(target(raw_surface_bits([0, 0, 16, 16], 16, 16, 4, GREEN)));
    // In bounds and exact: drawn (blue).
    let drawn = target(raw_surface_bits([0, 0, 16, 16], 16, 16, 0, BLUE)).unwrap();
    assert!(drawn.iter().any(|u| matches!(u, Update::Frame { .. })), "{drawn:?}");
    // The same green square again: a gap again (it was silent).
    gap(target(raw_surface_bits([0, 0, 16, 16], 16, 16, 4, GREEN)));
    // A bitmap narrower than its destination: FreeRDP draws the narrower one, the stage the
    // destination's width from the same bytes.
    gap(target(raw_surface_bits([0, 0, 16, 8], 8, 16, 0, GREEN)));
    assert_eq!(pixel(&decoder, 8, 8), [255, 0, 0]);
}

/// Hole 5 (fixed in the decoder): the graphics pipeline's persistent cache. A client with a persistent bitmap cache
/// (mstsc by default, FreeRDP 3 with `/cache:persist`) offers the keys of tiles it kept on its
/// own disk (RDPGFX Cache Import Offer); the target's Cache Import Reply gives them slots, and
/// Cache To Surface then draws those tiles. The offer crosses the filter as it is, and the
/// recorder, which has no such tiles, draws nothing for a Cache To Surface from an imported
/// slot and said nothing (IronRDP's compositor returns on an empty slot): the client showed
/// what the recording never had, and no gap was stated. Now a Cache Import Reply that imports
/// anything stops the decoder, which ends the session with its reason (the recording fails
/// closed), and the filter refuses an offer of anything (red team h-red17k's hole 4: a Cache
/// Import Offer's keys are 12 free bytes an entry, 5462 entries, from the client to whoever
/// holds the graphics pipeline; a client without persistent caching, FreeRDP 2 and IronRDP,
/// never sends one, and an empty one is no loss).
#[test]
fn red17i_tiles_from_the_clients_persistent_cache_are_drawn_unrecorded() {
    use ironrdp_egfx::pdu::{CacheEntryMetadata, CacheImportOfferPdu, CacheToSurfacePdu, Point};
    let mut s = session();
    let gfx = u8::try_from(s.gfx).unwrap();
    // The client offers one tile of its persistent cache.
    let offer = encode_vec(&GfxPdu::CacheImportOffer(CacheImportOfferPdu {
        cache_entries: vec![CacheEntryMetadata { cache_key: 0x5EED_0000_0000_0001, bitmap_len: 64 * 64 * 4 }],
    }))
    .unwrap();
    let dvc = [vec![0x30, gfx], offer.clone()].concat();
    let up = encode_vec(&X224(SendDataRequest {
        initiator_id: 1007,
        channel_id: s.drdynvc,
        user_data: Cow::Owned(svc(&dvc)),
    }))
    .unwrap();
    assert_eq!(s.filter.from_client(&up).unwrap(), Verdict::Refuse(crate::messages::GRAPHICS_REFUSED));
    // Were it to cross (the recorder's own defence, as before the filter read the pipeline):
    s.decoder.observe_client(&up).unwrap();
    // The target imports it into slot 1 and draws it at the top left of a new surface.
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let pdus: Vec<u8> = [
        GfxPdu::CacheImportReply(CacheImportReplyPdu { cache_slots: vec![1] }),
        GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: Vec::new() }),
        GfxPdu::CreateSurface(CreateSurfacePdu {
            surface_id: 3,
            width: 320,
            height: 240,
            pixel_format: PixelFormat::XRgb,
        }),
        GfxPdu::MapSurfaceToOutput(MapSurfaceToOutputPdu { surface_id: 3, output_origin_x: 0, output_origin_y: 0 }),
        GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 5 }),
        GfxPdu::CacheToSurface(CacheToSurfacePdu {
            cache_slot: 1,
            surface_id: 3,
            destination_points: vec![Point { x: 0, y: 0 }],
        }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: 5 }),
    ]
    .iter()
    .flat_map(|p| encode_vec(p).unwrap())
    .collect();
    let message = [vec![0x30, gfx, 0xE0, 0x04], pdus].concat();
    let down = target_chunk(s.drdynvc, message.len(), 3, &message);
    // The filter refuses a reply that imports anything too.
    assert_eq!(s.filter.from_target(&down).unwrap(), Verdict::Refuse(crate::messages::GRAPHICS_REFUSED));
    // The client drew its 64x64 tile at (0, 0); the recorder cannot, and stops (the session
    // ends with its reason) instead of recording a picture without it.
    let e = s.decoder.observe_target(&down).expect_err("the import went unstated");
    assert!(matches!(e, DecodeError::GraphicsPipeline), "{e}");
    assert!(s.decoder.is_stopped());
    // A reply that imports nothing is no loss.
    let mut s = session();
    let empty = [
        vec![0x30, gfx, 0xE0, 0x04],
        encode_vec(&GfxPdu::CacheImportReply(CacheImportReplyPdu { cache_slots: Vec::new() })).unwrap(),
    ]
    .concat();
    s.decoder.observe_target(&target_chunk(s.drdynvc, empty.len(), 3, &empty)).unwrap();
    assert!(!s.decoder.is_stopped());
}

/// Hole 6 (fixed in the decoder): H.264 frames. The filter tells the target, in the client's Caps Advertise, that the
/// client takes no H.264, and the recorder has no H.264 decoder; but FreeRDP's client draws an
/// AVC420 Wire To Surface 1 whatever was negotiated (`gdi_SurfaceCommand_AVC420` builds its
/// H.264 context on the first one), and IronRDP's pipeline client without a decoder skips it
/// with a debug line (`decode_avc420`: "No H.264 decoder configured, skipping AVC420 frame"),
/// neither an error nor an unhandled PDU. A target that sent H.264 anyway showed the client
/// whatever it liked; the recording kept the old picture and stated no gap. Now the decoder's
/// pipeline client has an H.264 decoder that fails every frame: the frame is a dropped update,
/// the decoder stops and the session ends with its reason.
#[test]
fn red17i_h264_frames_the_client_draws_are_skipped_in_silence() {
    use ironrdp_egfx::pdu::{Codec1Type, WireToSurface1Pdu};
    let mut s = session();
    let gfx = u8::try_from(s.gfx).unwrap();
    // RFX_AVC420_METABLOCK: one region (0, 0)-(64, 64) with its quant/quality, then the H.264
    // stream (an IDR slice's bytes, as far as this test is concerned).
    let mut avc = 1u32.to_le_bytes().to_vec();
    for v in [0u16, 0, 64, 64] {
        avc.extend(v.to_le_bytes());
    }
    avc.extend([22, 100]);
    avc.extend([0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x33, 0xFF]);
    let timestamp = Timestamp { milliseconds: 0, seconds: 0, minutes: 0, hours: 0 };
    let pdus: Vec<u8> = [
        GfxPdu::ResetGraphics(ResetGraphicsPdu { width: 320, height: 240, monitors: Vec::new() }),
        GfxPdu::CreateSurface(CreateSurfacePdu {
            surface_id: 4,
            width: 320,
            height: 240,
            pixel_format: PixelFormat::XRgb,
        }),
        GfxPdu::MapSurfaceToOutput(MapSurfaceToOutputPdu { surface_id: 4, output_origin_x: 0, output_origin_y: 0 }),
        GfxPdu::StartFrame(StartFramePdu { timestamp, frame_id: 9 }),
        GfxPdu::WireToSurface1(WireToSurface1Pdu {
            surface_id: 4,
            codec_id: Codec1Type::Avc420,
            pixel_format: PixelFormat::XRgb,
            destination_rectangle: ExclusiveRectangle { left: 0, top: 0, right: 64, bottom: 64 },
            bitmap_data: avc,
        }),
        GfxPdu::EndFrame(EndFramePdu { frame_id: 9 }),
    ]
    .iter()
    .flat_map(|p| encode_vec(p).unwrap())
    .collect();
    let message = [vec![0x30, gfx, 0xE0, 0x04], pdus].concat();
    let down = target_chunk(s.drdynvc, message.len(), 3, &message);
    assert_eq!(s.filter.from_target(&down).unwrap(), Verdict::Forward);
    let e = s.decoder.observe_target(&down).expect_err("the h.264 frame went unstated");
    assert!(matches!(e, DecodeError::GraphicsPipeline), "{e}");
    assert!(s.decoder.is_stopped());
}

/// What a read channel holds back is bounded: static chunks of no bytes, each a frame the filter
/// must keep until the message is whole, end the session once they outgrow twice the longest
/// message; and one channel per name is read at a time, while USB (a channel per device, all
/// named URBDRC) still opens as many as the target asks for.
#[test]
fn a_read_channel_holds_back_a_bounded_amount_and_opens_once() {
    let create = |id: u8, name: &str| {
        let mut create = vec![0x10, id];
        create.extend(name.as_bytes());
        create.push(0);
        target_send(svc(&create))
    };
    let mut f = grant_without_anything();
    f.redirection = Redirection::NONE.with(Class::Audio);
    f.from_target(&create(5, "AUDIO_PLAYBACK_DVC")).unwrap();
    // A Data PDU of 100 bytes whose static message is announced whole but sent as a first chunk
    // and then chunks of nothing.
    let mut first = 102u32.to_le_bytes().to_vec();
    first.extend(1u32.to_le_bytes());
    first.extend([0x30, 5]);
    assert_eq!(f.from_client(&client_send(first)).unwrap(), Verdict::Drop);
    let mut empty = 102u32.to_le_bytes().to_vec();
    empty.extend(0u32.to_le_bytes());
    let mut verdict = Verdict::Drop;
    let mut sent = 0;
    while verdict == Verdict::Drop && sent < 1_000_000 {
        verdict = f.from_client(&client_send(empty.clone())).unwrap();
        sent += 1;
    }
    assert_eq!(verdict, Verdict::Refuse(crate::messages::AUDIO_REFUSED), "after {sent} empty chunks");
    assert!(sent * 20 < 4 * crate::messages::Protocol::Audio.max_message(), "{sent} frames held");

    let mut f = grant_without_anything();
    f.redirection = Redirection::NONE.with(Class::Usb);
    for id in [5, 6, 7] {
        assert_eq!(f.from_target(&create(id, "URBDRC")).unwrap(), Verdict::Forward, "USB device channel {id}");
    }
    assert_eq!(f.from_target(&create(8, "Microsoft::Windows::RDS::DisplayControl")).unwrap(), Verdict::Forward);
    assert!(matches!(
        f.from_target(&create(9, "microsoft::windows::rds::displaycontrol")).unwrap(),
        Verdict::Replace(_)
    ));
    // Not again once closed: display control opens once a session (red team h-red17k, hole 5).
    assert_eq!(f.from_target(&target_send(svc(&[0x40, 8]))).unwrap(), Verdict::Forward);
    assert!(matches!(
        f.from_target(&create(10, "Microsoft::Windows::RDS::DisplayControl")).unwrap(),
        Verdict::Replace(_)
    ));
}
