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

/// Hole 4 (open, see the report): the graphics pipeline is the one channel the box opens
/// without a class and without a reader: the client's messages are walked only to trim a Caps
/// Advertise, the target's pass unread (the recorder decodes what it knows and skips the
/// rest). "One channel per name" keeps a program from opening a second graphics channel beside
/// the session's, but a session has none when the client does not do the graphics pipeline (or
/// says no to the target's): then a program on the target opens
/// `Microsoft::Windows::RDS::Graphics` by name through xrdpapi, the insider's client says yes,
/// and any bytes cross both ways in RDPGFX PDUs of a command id no peer knows (0x7777 here),
/// which the recorder has nothing to draw from.
#[test]
fn red17k_a_program_opens_the_graphics_pipeline_as_a_pipe() {
    let payload = file(4000);
    // The client said no to the session's own graphics channel (id 3): the name is free.
    let mut f = grant(Redirection::NONE);
    let mut create = vec![0x10, 3];
    create.extend(b"Microsoft::Windows::RDS::Graphics\0");
    assert_eq!(f.from_target(&target_send(&create)).unwrap(), Verdict::Forward);
    let no = [0x10, 3, 0x01, 0x00, 0x00, 0xC0];
    assert_eq!(f.from_client(&client_send(&no)).unwrap(), Verdict::Forward);
    // The program's channel, id 5.
    let mut create = vec![0x10, 5];
    create.extend(b"Microsoft::Windows::RDS::Graphics\0");
    assert_eq!(f.from_target(&target_send(&create)).unwrap(), Verdict::Forward, "the program's graphics channel");
    assert_eq!(f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    // Out: the file in one RDPGFX PDU of an unknown command, whole to the client.
    let out = data(&gfx_pdu(0x7777, &payload));
    let frame = target_send(&out);
    assert_eq!(f.from_target(&frame).unwrap(), Verdict::Forward, "the file out");
    assert!(frame.windows(payload.len()).any(|w| w == payload));
    // In: the same, to the program.
    let frame = client_send(&out);
    assert_eq!(f.from_client(&frame).unwrap(), Verdict::Forward, "the file in");
}

/// Hole 5 (open, see the report): a display control Monitor Layout is read field by field, but
/// its 16 monitors leave ~140 bytes a message free, client to target: a monitor that is not
/// the primary has its left and top anywhere within 16 x 8192 pixels (2 free bytes each here),
/// its width and height any even or whole value from 200 (a byte each), its physical size any
/// from 10 mm (a byte each) and its desktop scale any from 100 (a byte). The layouts come as
/// often as the client likes. A program on the target reads them when it holds the channel:
/// the insider's client says no to the target's own display control channel, which frees the
/// name for the program's, and no display change shows in the recording since the program, not
/// the desktop, takes the layouts.
#[test]
fn red17k_monitor_layouts_carry_a_file_to_a_program_that_holds_display_control() {
    let mut f = grant(Redirection::NONE);
    let mut create = vec![0x10, 3];
    create.extend(b"Microsoft::Windows::RDS::DisplayControl\0");
    assert_eq!(f.from_target(&target_send(&create)).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_send(&[0x10, 3, 0x01, 0x00, 0x00, 0xC0])).unwrap(), Verdict::Forward, "no");
    // The program's, on id 5: the name is free again.
    let mut create = vec![0x10, 5];
    create.extend(b"Microsoft::Windows::RDS::DisplayControl\0");
    assert_eq!(f.from_target(&target_send(&create)).unwrap(), Verdict::Forward, "the program's channel");
    assert_eq!(f.from_client(&client_send(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    let caps: Vec<u8> = [5u32, 20, 16, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(f.from_target(&target_send(&data(&caps))).unwrap(), Verdict::Forward);

    let payload = file(15 * 9 * 4);
    let mut read_back = Vec::new();
    for block in payload.chunks(15 * 9) {
        let mut m: Vec<u8> = [2u32, 16 + 40 * 16, 40, 16].iter().flat_map(|v| v.to_le_bytes()).collect();
        m.extend([1u32, 0, 0, 1024, 768, 300, 200, 0, 100, 100].iter().flat_map(|v| v.to_le_bytes()));
        for b in block.chunks(9) {
            let left = i32::from(i16::from_le_bytes([b[0], b[1]]));
            let top = i32::from(i16::from_le_bytes([b[2], b[3]]));
            let (width, height) = (200 + 2 * u32::from(b[4]), 200 + u32::from(b[5]));
            let (pw, ph, scale) = (10 + u32::from(b[6]), 10 + u32::from(b[7]), 100 + u32::from(b[8]));
            m.extend(0u32.to_le_bytes());
            m.extend(left.to_le_bytes());
            m.extend(top.to_le_bytes());
            for v in [width, height, pw, ph, 0, scale, 100] {
                m.extend(v.to_le_bytes());
            }
        }
        assert_eq!(f.from_client(&client_send(&data(&m))).unwrap(), Verdict::Forward, "a layout of 16 monitors");
        // What the program reads back.
        for mon in m[16 + 40..].chunks(40) {
            let u = |at: usize| u32::from_le_bytes(mon[at..at + 4].try_into().unwrap());
            read_back.extend((u(4) as i16).to_le_bytes());
            read_back.extend((u(8) as i16).to_le_bytes());
            read_back.extend([((u(12) - 200) / 2) as u8, (u(16) - 200) as u8, (u(20) - 10) as u8, (u(24) - 10) as u8]);
            read_back.push((u(32) - 100) as u8);
        }
    }
    assert_eq!(read_back, payload, "{} bytes in {} layouts", payload.len(), 4);
}
