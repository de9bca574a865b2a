//! Red team `h-red17k`'s attacks on the channels read message by message (`messages.rs`): each
//! test passes while its hole is open (or, once fixed, shows the attack refused).

use super::*;
use crate::messages::AUDIO_REFUSED;

/// A filter past activation with `drdynvc` on MCS channel 1004 and a grant of `redirection`.
fn grant(redirection: Redirection) -> Filter {
    let mut f = red17i::grant_without_anything();
    f.redirection = redirection;
    f
}

fn client_send(dvc: &[u8]) -> Vec<u8> {
    red17i::client_send(red17i::svc(dvc))
}

fn target_send(dvc: &[u8]) -> Vec<u8> {
    red17i::target_send(red17i::svc(dvc))
}

/// A DVC Data PDU on channel 5 holding one whole message.
fn data(message: &[u8]) -> Vec<u8> {
    let mut pdu = vec![0x30, 5];
    pdu.extend(message);
    pdu
}

/// The channel `name` opened on id 5 by the target and accepted by the client.
fn opened(redirection: Redirection, name: &str) -> Filter {
    let mut f = grant(redirection);
    let mut create = vec![0x10, 5];
    create.extend(name.as_bytes());
    create.push(0);
    assert_eq!(f.from_target(&target_send(&create)).unwrap(), Verdict::Forward, "{name}");
    assert_eq!(f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    f
}

/// A "file" a client brings in: bytes no protocol field would hold by chance.
fn file(len: usize) -> Vec<u8> {
    let mut file = b"\x7fELF\x02\x01\x01\0".to_vec();
    file.extend((0..len as u32 - 8).map(|i| (i * 7 + 3) as u8));
    file
}

fn input_pdu(event: u16, body: &[u8]) -> Vec<u8> {
    let mut m = event.to_le_bytes().to_vec();
    m.extend(u32::try_from(6 + body.len()).unwrap().to_le_bytes());
    m.extend(body);
    m
}

/// Hole 1 (fixed): touch input (MS-RDPEI), which every grant opened without a class, was read
/// strictly, but its fields leave kilobytes a message free, client to target: 256 frames with
/// no contacts, each frameOffset an EIGHT_BYTE_UNSIGNED_INTEGER (7 free bytes after 0xE0), or
/// contacts whose x and y are 3 free bytes each and whose contactId is a free byte. A custom
/// client moved a file to a program on the target (which opened
/// `Microsoft::Windows::RDS::Input` through xrdpapi) at ~1.8 KiB a message, and nothing of it
/// showed in the recording. Now touch input is not opened at all: the client never hears of
/// the channel, and a client that opens it anyway gets nothing across.
#[test]
fn red17k_a_touch_event_carries_kilobytes_from_the_client() {
    let mut f = grant(Redirection::NONE);
    let mut create = vec![0x10, 5];
    create.extend(b"Microsoft::Windows::RDS::Input");
    create.push(0);
    let verdict = f.from_target(&target_send(&create)).unwrap();
    match &verdict {
        Verdict::Drop => {}
        Verdict::Replace(out) => assert!(!out.windows(5).any(|w| w.eq_ignore_ascii_case(b"input")), "{out:?}"),
        other => panic!("touch input opened: {other:?}"),
    }
    // A client that opens it anyway: its ready and then its "touches" cross nowhere.
    let _ = f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap();
    let mut ready = 0u32.to_le_bytes().to_vec();
    ready.extend(0x0002_0000u32.to_le_bytes());
    ready.extend(10u16.to_le_bytes());
    assert_eq!(f.from_client(&client_send(&data(&input_pdu(2, &ready)))).unwrap(), Verdict::Drop);
    let payload = file(256 * 7);
    let mut body = vec![0x00, 0x81, 0x00]; // encodeTime 0, frameCount 256
    for piece in payload.chunks(7) {
        body.push(0x00); // contactCount 0
        body.push(0xE0);
        body.extend(piece);
    }
    let event = input_pdu(3, &body);
    assert_eq!(f.from_client(&client_send(&data(&event))).unwrap(), Verdict::Drop, "the file crossed");
    let refused: Vec<_> = f.take_dynamic_decisions().into_iter().filter(|d| !d.allowed).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
}

/// Hole 2 (fixed): on a grant with audio, the client's Client Audio Formats could come again
/// and again, each with up to 256 formats whose codec extra data (up to 1024 bytes each) was
/// not the target's: arbitrary bytes client to target, where the architecture admits free-form
/// bytes only from the target (the sound itself). Now, as MS-RDPEA 3.2.5.1.2 has it, the client
/// answers the target's formats once, with some of them exactly as the target sent them.
#[test]
fn red17k_the_clients_sound_formats_carry_a_file_to_the_target() {
    let mut f = opened(Redirection::NONE.with(Class::Audio), "AUDIO_PLAYBACK_DVC");
    let formats = |flags: u32, extras: &[&[u8]]| {
        let mut b = flags.to_le_bytes().to_vec();
        b.extend([0; 10]);
        b.extend(u16::try_from(extras.len()).unwrap().to_le_bytes());
        b.push(0);
        b.extend(6u16.to_le_bytes());
        b.push(0);
        for extra in extras {
            b.extend([1, 0, 2, 0, 0x44, 0xAC, 0, 0, 0x10, 0xB1, 2, 0, 4, 0, 16, 0]);
            b.extend(u16::try_from(extra.len()).unwrap().to_le_bytes());
            b.extend(*extra);
        }
        let mut m = vec![7, 0];
        m.extend(u16::try_from(b.len()).unwrap().to_le_bytes());
        m.extend(b);
        m
    };
    // The target offers one PCM format, no extra data.
    assert_eq!(f.from_target(&target_send(&data(&formats(0, &[&[]])))).unwrap(), Verdict::Forward);
    // The client answers with formats the target never offered, their extra data a file.
    let payload = file(8 * 1024);
    let pieces: Vec<&[u8]> = payload.chunks(1024).collect();
    let message = formats(1, &pieces);
    assert!(message.windows(1024).any(|w| w == &payload[..1024]));
    let mut refused = opened(Redirection::NONE.with(Class::Audio), "AUDIO_PLAYBACK_DVC");
    refused.from_target(&target_send(&data(&formats(0, &[&[]])))).unwrap();
    assert_eq!(refused.from_client(&client_send(&data(&message))).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
    // The target's own format back passes, once; a second answer (even the same) ends the session.
    assert_eq!(f.from_client(&client_send(&data(&formats(1, &[&[]])))).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&data(&formats(1, &[&[]])))).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
    // One byte of extra data the target did not send is refused too.
    let mut f = opened(Redirection::NONE.with(Class::Audio), "AUDIO_PLAYBACK_DVC");
    f.from_target(&target_send(&data(&formats(0, &[&[]])))).unwrap();
    assert_eq!(f.from_client(&client_send(&data(&formats(1, &[&[0x42]])))).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
}

/// Hole 3 (fixed): on a grant with audio, the client's Wave Confirm, Training Confirm and
/// Quality Mode PDUs could come at any time and as often as the client liked, and every field of
/// them was free: 4 bytes a message client to target (a Wave Confirm's wTimeStamp,
/// cConfirmedBlockNo and bPad; a Training Confirm's wTimeStamp and wPackSize; a Quality Mode's
/// reserved field), with no Wave or Training from the target to confirm. Now a client confirms
/// only what the target sent (a Wave Confirm per block sent, its pad zero; a Training Confirm
/// echoing a Training), and sends one Quality Mode after its formats, reserved zero: what is
/// left is a Wave Confirm's own time stamp, 16 bits per block the target sends.
#[test]
fn red17k_sound_confirms_nobody_asked_for_carry_a_file_to_the_target() {
    let payload = file(4 * 64);
    for (at, piece) in payload.chunks(4).take(2).enumerate() {
        let mut f = opened(Redirection::NONE.with(Class::Audio), "AUDIO_PLAYBACK_DVC");
        let kind = [5, 6][at % 2];
        let mut confirm = vec![kind, 0, 4, 0];
        confirm.extend(piece);
        assert_eq!(f.from_client(&client_send(&data(&confirm))).unwrap(), Verdict::Refuse(AUDIO_REFUSED), "{kind}");
    }
    // The Quality Mode's reserved field: refused.
    let mut f = opened(Redirection::NONE.with(Class::Audio), "AUDIO_PLAYBACK_DVC");
    let mut mode = vec![0x0C, 0, 4, 0, 2, 0];
    mode.extend(&payload[..2]);
    assert_eq!(f.from_client(&client_send(&data(&mode))).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
    // Controls: a Training the target sent, confirmed as sent; a Wave2 of block 3, confirmed once.
    let mut f = opened(Redirection::NONE.with(Class::Audio), "AUDIO_PLAYBACK_DVC");
    assert_eq!(f.from_target(&target_send(&data(&[6, 0, 4, 0, 0x10, 0x20, 0, 0]))).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&data(&[6, 0, 4, 0, 0x10, 0x20, 0, 0]))).unwrap(), Verdict::Forward);
    let mut wave2 = vec![0x0D, 0, 16, 0, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    wave2.extend([0x11; 4]);
    assert_eq!(f.from_target(&target_send(&data(&wave2))).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&data(&[5, 0, 4, 0, 0x34, 0x12, 3, 0]))).unwrap(), Verdict::Forward);
    assert_eq!(
        f.from_client(&client_send(&data(&[5, 0, 4, 0, 0x34, 0x12, 3, 0]))).unwrap(),
        Verdict::Refuse(AUDIO_REFUSED)
    );
}

/// An RDPGFX PDU: cmdId, flags 0, pduLength, then `body`.
fn gfx_pdu(cmd: u16, body: &[u8]) -> Vec<u8> {
    let mut pdu = cmd.to_le_bytes().to_vec();
    pdu.extend(0u16.to_le_bytes());
    pdu.extend(u32::try_from(8 + body.len()).unwrap().to_le_bytes());
    pdu.extend(body);
    pdu
}

/// The target's RDPGFX PDUs on channel `id` as a DVC Data PDU: ZGFX segmented data,
/// compressed (as Windows sends them) or not (xrdp, FreeRDP).
fn gfx_down(id: u8, pdus: &[u8], compressed: bool) -> Vec<u8> {
    use ironrdp_graphics::zgfx::{CompressionMode, Compressor, compress_and_wrap_egfx};
    let mode = if compressed { CompressionMode::Always } else { CompressionMode::Never };
    let mut pdu = vec![0x30, id];
    pdu.extend(compress_and_wrap_egfx(pdus, &mut Compressor::new(), mode).unwrap());
    pdu
}

/// A Create Request for `name` on `id`, from the target.
fn create(id: u8, name: &str) -> Vec<u8> {
    let mut create = vec![0x10, id];
    create.extend(name.as_bytes());
    create.push(0);
    target_send(&create)
}

/// The target's Create Request reached the client under a name no client offers.
fn shut(verdict: Verdict, name: &str) {
    match verdict {
        Verdict::Replace(out) => {
            let word = name.rsplit("::").next().unwrap().as_bytes();
            assert!(!out.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word)), "{name} opened: {out:?}");
        }
        other => panic!("{name} opened: {other:?}"),
    }
}

const GRAPHICS: &str = "Microsoft::Windows::RDS::Graphics";
const DISPLAY_CONTROL: &str = "Microsoft::Windows::RDS::DisplayControl";
const NO: [u8; 6] = [0x10, 3, 0x01, 0x00, 0x00, 0xC0];

/// Hole 4 (fixed): the graphics pipeline was the one channel the box opened without a class
/// and without a reader: the client's messages were walked only to trim a Caps Advertise, the
/// target's passed unread (the recorder decodes what it knows and skips the rest). "One
/// channel per name" kept a program from opening a second graphics channel beside the
/// session's, but a session has none when the client does not do the graphics pipeline (or
/// says no to the target's): then a program on the target opened
/// `Microsoft::Windows::RDS::Graphics` by name through xrdpapi, the insider's client said yes,
/// and any bytes crossed both ways in RDPGFX PDUs of a command id no peer knows (0x7777 here),
/// which the recorder had nothing to draw from. Now the graphics pipeline opens only for a
/// client whose core data announced it, and once a session (a name the client said no to stays
/// shut); and every RDPGFX PDU is read both ways (the target's decompressed from ZGFX), only
/// the commands its sender may send, exact: anything else ends the session.
#[test]
fn red17k_a_program_opens_the_graphics_pipeline_as_a_pipe() {
    let payload = file(4000);
    let unknown = gfx_pdu(0x7777, &payload);
    // The client said no to the session's own graphics channel (id 3): the name stays shut.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&create(3, GRAPHICS)).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&NO)).unwrap(), Verdict::Forward);
    shut(f.from_target(&create(5, GRAPHICS)).unwrap(), GRAPHICS);
    // The insider's client says yes anyway: the target hears no, and nothing crosses either way.
    // (It answers by the box's id, the one it was shown: red team h-red31, hole 2.)
    let Verdict::Replace(answer) = f.from_client(&client_send(&[0x12, 0x00, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])).unwrap()
    else {
        panic!("the client's yes reached the target")
    };
    assert!(answer.ends_with(&[0x10, 5, 0x01, 0x00, 0x00, 0xC0]), "{answer:?}");
    assert_eq!(f.from_client(&client_send(&data(&unknown))).unwrap(), Verdict::Drop, "the file in");
    assert_eq!(f.from_target(&target_send(&gfx_down(5, &unknown, false))).unwrap(), Verdict::Drop, "the file out");
    // A client that did not announce the graphics pipeline: none opens, not even the session's.
    let mut f = grant(Redirection::NONE);
    f.client_gfx = false;
    shut(f.from_target(&create(3, GRAPHICS)).unwrap(), GRAPHICS);
    // Once open (the session's own, or a program's where the target never opened one), it
    // opens no second time, even after it closed.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&create(5, GRAPHICS)).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    assert_eq!(f.from_target(&target_send(&[0x40, 5])).unwrap(), Verdict::Forward);
    shut(f.from_target(&create(6, GRAPHICS)).unwrap(), GRAPHICS);
    // On an open graphics channel the file's PDU ends the session, either way, compressed or
    // not, alone or behind a PDU that reads; so does a known command from the wrong side.
    let opened = || {
        let mut f = grant(Redirection::NONE);
        assert_eq!(f.from_target(&create(5, GRAPHICS)).unwrap(), Verdict::Forward);
        assert_eq!(f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
        f
    };
    let refused = Verdict::Refuse(crate::messages::GRAPHICS_REFUSED);
    let end_frame = gfx_pdu(0x000C, &7u32.to_le_bytes());
    let ack = gfx_pdu(0x000D, &[0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(opened().from_client(&client_send(&data(&unknown))).unwrap(), refused, "the file in");
    for compressed in [false, true] {
        let out = gfx_down(5, &unknown, compressed);
        assert_eq!(opened().from_target(&target_send(&out)).unwrap(), refused, "the file out");
        let behind = gfx_down(5, &[end_frame.clone(), unknown.clone()].concat(), compressed);
        assert_eq!(opened().from_target(&target_send(&behind)).unwrap(), refused, "behind an end frame");
    }
    assert_eq!(
        opened().from_target(&target_send(&gfx_down(5, &ack, false))).unwrap(),
        refused,
        "an ack from the target"
    );
    assert_eq!(opened().from_client(&client_send(&data(&end_frame))).unwrap(), refused, "a frame from the client");
    // Controls: the target draws frame 7 (compressed), the client acknowledges it, once.
    let mut f = opened();
    let frame = crate::gfx::drawn_frames(7, 1, true);
    assert_eq!(f.from_target(&target_send(&gfx_down(5, &frame, true))).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&data(&ack))).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&data(&ack))).unwrap(), refused, "a frame acknowledged twice");
}

/// A Monitor Layout PDU of `monitors`, each (flags, left, top, width, height, physical width
/// and height, orientation, desktop and device scale).
fn layout(monitors: &[[u32; 10]]) -> Vec<u8> {
    let n = u32::try_from(monitors.len()).unwrap();
    let mut m: Vec<u8> = [2u32, 16 + 40 * n, 40, n].iter().flat_map(|v| v.to_le_bytes()).collect();
    m.extend(monitors.iter().flatten().flat_map(|v| v.to_le_bytes()));
    m
}

/// Hole 5 (fixed): a display control Monitor Layout was read field by field, but its 16
/// monitors left ~140 bytes a message free, client to target: a monitor that is not the
/// primary had its left and top anywhere within 16 x 8192 pixels (2 free bytes each here), its
/// width and height any even or whole value from 200 (a byte each), its physical size any from
/// 10 mm (a byte each) and its desktop scale any from 100 (a byte). The layouts came as often
/// as the client liked. A program on the target read them when it held the channel: the
/// insider's client said no to the target's own display control channel, which freed the name
/// for the program's, and no display change showed in the recording since the program, not the
/// desktop, took the layouts. Now display control opens once a session (a name the client said
/// no to stays shut), a layout holds no more monitors than the target's Caps and the client's
/// core data allow (one, for a client without monitor data), they make one desktop (no
/// overlap, joined edge to edge, within the Caps' area), and layouts pass only when they
/// change something, at most 12 in 2 s (the rest are dropped).
#[test]
fn red17k_monitor_layouts_carry_a_file_to_a_program_that_holds_display_control() {
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&create(3, DISPLAY_CONTROL)).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&NO)).unwrap(), Verdict::Forward, "no");
    // The program's, on id 5: the name stays shut.
    shut(f.from_target(&create(5, DISPLAY_CONTROL)).unwrap(), DISPLAY_CONTROL);
    let _ = f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap();
    let caps: Vec<u8> = [5u32, 20, 16, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(f.from_target(&target_send(&data(&caps))).unwrap(), Verdict::Drop);

    // The attack's layouts, on the session's own channel: 16 monitors from a client whose core
    // data announced one.
    let payload = file(15 * 9 * 4);
    let primary = [1u32, 0, 0, 1024, 768, 300, 200, 0, 100, 100];
    let attack: Vec<Vec<u8>> = payload
        .chunks(15 * 9)
        .map(|block| {
            let mut monitors = vec![primary];
            for b in block.chunks(9) {
                let left = i32::from(i16::from_le_bytes([b[0], b[1]])) as u32;
                let top = i32::from(i16::from_le_bytes([b[2], b[3]])) as u32;
                let (width, height) = (200 + 2 * u32::from(b[4]), 200 + u32::from(b[5]));
                let (pw, ph, scale) = (10 + u32::from(b[6]), 10 + u32::from(b[7]), 100 + u32::from(b[8]));
                monitors.push([0, left, top, width, height, pw, ph, 0, scale, 100]);
            }
            layout(&monitors)
        })
        .collect();
    let opened = |monitors: usize| {
        let mut f = grant(Redirection::NONE);
        f.client_monitors = monitors;
        assert_eq!(f.from_target(&create(5, DISPLAY_CONTROL)).unwrap(), Verdict::Forward);
        assert_eq!(f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
        assert_eq!(f.from_target(&target_send(&data(&caps))).unwrap(), Verdict::Forward);
        f
    };
    let refused = Verdict::Refuse(crate::messages::DISPLAY_CONTROL_REFUSED);
    for m in &attack {
        assert_eq!(opened(1).from_client(&client_send(&data(m))).unwrap(), refused, "more monitors than announced");
        // A client that announced 16: its monitors overlap or float apart.
        assert_eq!(opened(16).from_client(&client_send(&data(m))).unwrap(), refused, "not one desktop");
    }
    // Controls: two monitors side by side, from a client that announced two.
    let mut f = opened(2);
    let right = [0u32, 1024, 0, 800, 600, 0, 0, 0, 0, 0];
    let pair = layout(&[[1, 0, 0, 1024, 768, 0, 0, 0, 0, 0], right]);
    assert_eq!(f.from_client(&client_send(&data(&pair))).unwrap(), Verdict::Forward);
    // The same again changes nothing: dropped. A corner is no join; an overlap is refused.
    assert_eq!(f.from_client(&client_send(&data(&pair))).unwrap(), Verdict::Drop);
    let corner = layout(&[[1, 0, 0, 1024, 768, 0, 0, 0, 0, 0], [0, 1024, 768, 800, 600, 0, 0, 0, 0, 0]]);
    assert_eq!(opened(2).from_client(&client_send(&data(&corner))).unwrap(), refused);
    let overlap = layout(&[[1, 0, 0, 1024, 768, 0, 0, 0, 0, 0], [0, 1000, 0, 800, 600, 0, 0, 0, 0, 0]]);
    assert_eq!(opened(2).from_client(&client_send(&data(&overlap))).unwrap(), refused);
    // A flood of real changes: 12 pass in 2 s, the rest are dropped.
    let mut f = opened(1);
    let verdicts: Vec<Verdict> = (0..40u32)
        .map(|i| {
            let m = layout(&[[1, 0, 0, 1024 + 2 * i, 768, 0, 0, 0, 0, 0]]);
            f.from_client(&client_send(&data(&m))).unwrap()
        })
        .collect();
    assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Forward).count(), 12, "{verdicts:?}");
    assert!(verdicts[12..].iter().all(|v| *v == Verdict::Drop));
}
