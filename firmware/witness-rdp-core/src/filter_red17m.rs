//! Red team `h-red17m`'s attacks on the filter's judging of every PDU: each test passes while its
//! hole is open (asserting the attacker's success), or, once fixed, shows the attack refused.
//!
//! The parties are those of red teams `h-red17i` and `h-red17k`: an insider's client (a custom or
//! patched FreeRDP) and, on the target, a program of the session. On xrdp everything on the
//! static channels (`drdynvc` and the dynamic channels in it, `rdpsnd`) is spoken for the target by
//! chansrv, which runs as the session's user; a program of the session opens dynamic channels by
//! name through xrdpapi and speaks their messages itself.

use super::*;
use crate::messages::AUDIO_REFUSED;

/// A "file" to move: bytes no protocol field would hold by chance.
pub(super) fn file(len: usize) -> Vec<u8> {
    let mut file = b"\x7fELF\x02\x01\x01\0".to_vec();
    file.extend((0..len as u32 - 8).map(|i| (i.wrapping_mul(31) ^ (i >> 3)) as u8));
    file
}

fn grant(redirection: Redirection) -> Filter {
    let mut f = red17i::grant_without_anything();
    f.redirection = redirection;
    // As after a Demand Active: one Confirm Active is due.
    f.confirm_due = true;
    f
}

fn client_dvc(dvc: &[u8]) -> Vec<u8> {
    red17i::client_send(red17i::svc(dvc))
}

fn target_dvc(dvc: &[u8]) -> Vec<u8> {
    red17i::target_send(red17i::svc(dvc))
}

/// A static channel chunk on `drdynvc` of a message `total` bytes long.
fn chunk(total: usize, flags: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(total).unwrap().to_le_bytes().to_vec();
    out.extend(flags.to_le_bytes());
    out.extend(bytes);
    out
}

fn create(id: u8, name: &str) -> Vec<u8> {
    let mut create = vec![0x10, id];
    create.extend(name.as_bytes());
    create.push(0);
    create
}

/// Whether `frame`, as the filter lets it through, still holds `payload`.
pub(super) fn carries(verdict: &Verdict, frame: &[u8], payload: &[u8]) -> bool {
    let out = match verdict {
        Verdict::Forward => frame,
        Verdict::Replace(out) => out,
        Verdict::Drop | Verdict::Refuse(_) => return false,
    };
    out.windows(payload.len()).any(|w| w == payload)
}

/// Hole 1 (closed): the dynamic channel layer's own PDUs that carry no channel data — the
/// Capabilities Request and Response, the Soft-Sync Request and Response — passed whole and
/// unread both ways, whatever followed their fixed part and however long they were, as often as
/// either side liked. Now a Capabilities PDU must read exactly (header, pad 0, version 1–3, the
/// target's four priority charges with version 2 or 3, nothing more), in one chunk, and a repeat
/// must be the same bytes; the client answers only a request. Soft-Sync serves the UDP side
/// transport the box does not offer: it ends the session. No grant opens anything here.
#[test]
fn red17m_dvc_capability_and_soft_sync_pdus_carry_a_file_both_ways() {
    let payload = file(60_000);
    // Client to target: a Capabilities Response with the file behind it, in 1600-byte chunks.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&target_dvc(&[0x50, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    let mut caps = vec![0x50, 0x00, 0x03, 0x00];
    caps.extend(&payload);
    let frame = red17i::client_send(chunk(caps.len(), 1, &caps[..1600]));
    assert_eq!(f.from_client(&frame).unwrap(), Verdict::Refuse(DVC_CONTROL), "a long capabilities response");
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&target_dvc(&[0x50, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    let frame = client_dvc(&caps[..1600]);
    assert_eq!(f.from_client(&frame).unwrap(), Verdict::Refuse(DVC_CONTROL), "bytes after a response");
    // The exact answer passes, once; a different one after it does not.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_client(&client_dvc(&[0x50, 0, 3, 0])).unwrap(), Verdict::Refuse(DVC_CONTROL), "unasked");
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&target_dvc(&[0x50, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_dvc(&[0x50, 0, 3, 0])).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_dvc(&[0x50, 0, 3, 0])).unwrap(), Verdict::Forward, "the same again");
    assert_eq!(f.from_client(&client_dvc(&[0x50, 0, 2, 0])).unwrap(), Verdict::Refuse(DVC_CONTROL), "changed");
    assert_eq!(f.from_client(&client_dvc(&[0x50, 1, 3, 0])).unwrap(), Verdict::Refuse(DVC_CONTROL), "pad");
    // Soft-Sync either way ends the session.
    let mut sync = vec![0x90, 0x00];
    sync.extend(&payload[..1600]);
    assert_eq!(f.from_client(&client_dvc(&sync)).unwrap(), Verdict::Refuse(DVC_SOFT_SYNC));

    // Target to client: a Capabilities Request with the file behind it, a version 1 request with
    // priority charges, a changed repeat, and a Soft-Sync Request.
    let mut f = grant(Redirection::NONE);
    let mut caps = vec![0x50, 0x00, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];
    caps.extend(&payload[..1600]);
    assert_eq!(f.from_target(&target_dvc(&caps)).unwrap(), Verdict::Refuse(DVC_CONTROL), "a long request");
    let mut f = grant(Redirection::NONE);
    assert_eq!(
        f.from_target(&target_dvc(&[0x50, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8])).unwrap(),
        Verdict::Refuse(DVC_CONTROL)
    );
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&target_dvc(&[0x50, 0, 1, 0])).unwrap(), Verdict::Forward, "version 1");
    assert_eq!(f.from_target(&target_dvc(&[0x50, 0, 1, 0])).unwrap(), Verdict::Forward, "the same again");
    assert_eq!(
        f.from_target(&target_dvc(&[0x50, 0, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8])).unwrap(),
        Verdict::Refuse(DVC_CONTROL),
        "a changed request carries its charges"
    );
    let mut f = grant(Redirection::NONE);
    let mut sync = vec![0x80, 0x00];
    sync.extend(&payload[1600..3200]);
    assert_eq!(f.from_target(&target_dvc(&sync)).unwrap(), Verdict::Refuse(DVC_SOFT_SYNC));
    assert!(f.take_dynamic_decisions().is_empty(), "no channel was even opened");
}

/// Hole 2 (closed): a Create Response and a Close were read only as far as their header (and
/// the response's status): bytes after them passed, both ways, a file a round trip each way with
/// no display control message ever sent; and what followed a refused channel's name after its
/// NUL reached the client. Now each is exactly its fields: anything more ends the session.
#[test]
fn red17m_create_responses_and_closes_carry_a_file_both_ways() {
    let payload = file(1500);
    let display = || target_dvc(&create(5, "Microsoft::Windows::RDS::DisplayControl"));
    // Client to target: yes, and the file.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&display()).unwrap(), Verdict::Forward);
    let mut yes = vec![0x10, 5, 0, 0, 0, 0];
    yes.extend(&payload);
    assert_eq!(f.from_client(&client_dvc(&yes)).unwrap(), Verdict::Refuse(DVC_UNREADABLE), "create response");
    // The exact answer passes; a close with the file behind it does not, either way.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&display()).unwrap(), Verdict::Forward);
    assert_eq!(f.from_client(&client_dvc(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
    let mut close = vec![0x40, 5];
    close.extend(&payload);
    assert_eq!(f.from_client(&client_dvc(&close)).unwrap(), Verdict::Refuse(DVC_CONTROL), "client's close");
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&display()).unwrap(), Verdict::Forward);
    assert_eq!(f.from_target(&target_dvc(&close)).unwrap(), Verdict::Refuse(DVC_CONTROL), "target's close");
    assert_eq!(f.from_target(&target_dvc(&[0x40, 5])).unwrap(), Verdict::Forward, "an exact close");
    // A refused channel's Create Request with the file after its NUL.
    let mut request = create(6, "x");
    request.extend(&payload);
    assert_eq!(f.from_target(&target_dvc(&request)).unwrap(), Verdict::Refuse(DVC_CONTROL));
    // A name without its NUL, or longer than any channel's.
    let mut f = grant(Redirection::NONE);
    assert_eq!(f.from_target(&target_dvc(&[0x10, 6, b'x'])).unwrap(), Verdict::Refuse(DVC_CONTROL));
    let long = create(6, &"x".repeat(300));
    assert_eq!(f.from_target(&target_dvc(&long)).unwrap(), Verdict::Refuse(DVC_CONTROL));
}

/// Server Audio Formats (`formats` format bodies, each 18 bytes with no extra data) or the
/// client's answer (`header` its dwFlags .. bPad fields as sent).
fn sound_formats(header: [u8; 20], formats: &[[u8; 18]]) -> Vec<u8> {
    let mut b = header.to_vec();
    b[14..16].copy_from_slice(&u16::try_from(formats.len()).unwrap().to_le_bytes());
    for format in formats {
        b.extend(format);
    }
    let mut m = vec![7, 0];
    m.extend(u16::try_from(b.len()).unwrap().to_le_bytes());
    m.extend(b);
    m
}

/// PCM, 2 channels, 16 bits, at `rate` samples a second.
fn pcm(rate: u32) -> [u8; 18] {
    let mut f = [0u8; 18];
    f[0..2].copy_from_slice(&1u16.to_le_bytes());
    f[2..4].copy_from_slice(&2u16.to_le_bytes());
    f[4..8].copy_from_slice(&rate.to_le_bytes());
    f[8..12].copy_from_slice(&(rate * 4).to_le_bytes());
    f[12..14].copy_from_slice(&4u16.to_le_bytes());
    f[14..16].copy_from_slice(&16u16.to_le_bytes());
    f
}

/// Hole 3 (closed): red team `h-red17k` closed the client's Client Audio Formats to formats of
/// the target's own, once per target's formats. But the target may send its formats as often as
/// it likes, and the client's answer still carried bytes of its own: (a) its header, of which
/// only dwFlags' high bits and a non-zero wVersion were checked — dwVolume, dwPitch, wDGramPort,
/// cLastBlockConfirmed, wVersion's value and bPad were free (14 bytes), and (b) which of the
/// target's formats it listed, in which order, repeats allowed: with 256 formats offered, each of
/// up to 256 listed was a free byte. A program on the target that opened `AUDIO_PLAYBACK_DVC`
/// through xrdpapi (on an audio grant) offered 256 formats, read the answer and offered them
/// again: ~270 bytes a round trip, client to target. Now the answer lists the target's formats in
/// its order, each once, and reaches the target re-encoded as FreeRDP writes it (header bPad,
/// dwVolume, dwPitch, wDGramPort, cLastBlockConfirmed and bPad zero, wVersion at most the
/// target's); dwFlags and wVersion must say what the first answer said, and a format offered
/// again gets the answer it got before. What is left: which formats the client lists, one bit
/// for each new format the channel's target offers, at most 512 a channel (64 bytes), plus the
/// first answer's 3 flag bits and its version below the target's.
#[test]
fn red17m_the_clients_answer_to_sound_formats_carries_a_file_to_the_target() {
    let opened = || {
        let mut f = grant(Redirection::NONE.with(Class::Audio));
        assert_eq!(f.from_target(&target_dvc(&create(5, "AUDIO_PLAYBACK_DVC"))).unwrap(), Verdict::Forward);
        assert_eq!(f.from_client(&client_dvc(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
        f
    };
    let data = |m: &[u8]| {
        let mut pdu = vec![0x30, 5];
        pdu.extend(m);
        pdu
    };
    let offered: Vec<[u8; 18]> = (0..256u32).map(|i| pcm(8000 + i)).collect();
    let mut target_header = [0u8; 20];
    target_header[17..19].copy_from_slice(&6u16.to_le_bytes()); // wVersion 6
    let offer = sound_formats(target_header, &offered);
    let payload = file(14 + 256);
    let (h, choice) = payload.split_at(14);
    let mut header = [0u8; 20];
    header[0] = 1;
    header[4..14].copy_from_slice(&h[..10]);
    header[16] = h[10];
    header[17..19].copy_from_slice(&u16::from_le_bytes([h[11], h[12]]).max(1).to_le_bytes());
    header[19] = h[13];

    // (b) A choice in an order of the client's, or with repeats: refused.
    let mut f = opened();
    f.from_target(&target_dvc(&data(&offer))).unwrap();
    let listed: Vec<[u8; 18]> = choice.iter().map(|&b| offered[usize::from(b)]).collect();
    let answer = sound_formats(header, &listed);
    assert_eq!(f.from_client(&client_dvc(&data(&answer))).unwrap(), Verdict::Refuse(AUDIO_REFUSED), "any order");
    let mut f = opened();
    f.from_target(&target_dvc(&data(&offer))).unwrap();
    let answer = sound_formats(header, &[offered[3], offered[3]]);
    assert_eq!(f.from_client(&client_dvc(&data(&answer))).unwrap(), Verdict::Refuse(AUDIO_REFUSED), "repeats");

    // (a) The header's free fields: the target reads FreeRDP's, whole or in fragments.
    let subset: Vec<[u8; 18]> = offered.iter().step_by(3).copied().collect();
    let answer = sound_formats(header, &subset);
    let mut expected = sound_formats([0; 20], &subset);
    expected[4] = 1; // dwFlags: TSSNDCAPS_ALIVE
    expected[21..23].copy_from_slice(&u16::from_le_bytes([h[11], h[12]]).clamp(1, 6).to_le_bytes());
    let mut f = opened();
    f.from_target(&target_dvc(&data(&offer))).unwrap();
    let frame = client_dvc(&data(&answer));
    let verdict = f.from_client(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &h[..10]), "the header's free fields crossed");
    assert!(carries(&verdict, &frame, &expected), "the target reads FreeRDP's header");
    // The same in a Data First and a Data: written back across both.
    let mut f = opened();
    f.from_target(&target_dvc(&data(&offer))).unwrap();
    let mut first = vec![0x28, 5];
    first.extend(u32::try_from(answer.len()).unwrap().to_le_bytes());
    first.extend(&answer[..100]);
    let mut rest = vec![0x30, 5];
    rest.extend(&answer[100..]);
    assert_eq!(f.from_client(&client_dvc(&first)).unwrap(), Verdict::Drop, "held until whole");
    let verdict = f.from_client(&client_dvc(&rest)).unwrap();
    let Verdict::Replace(out) = verdict else { panic!("not re-encoded: {verdict:?}") };
    let mut read: Vec<u8> = Vec::new();
    let (mut at, mut skip) = (0, 6);
    for sent in [client_dvc(&first), client_dvc(&rest)] {
        let X224(McsMessage::SendDataRequest(r)) = whole_mcs(&out[at..at + sent.len()]).unwrap() else { panic!() };
        let (_, _, dvc) = channel_pdu(&r.user_data).unwrap();
        read.extend(&dvc[skip..]);
        (at, skip) = (at + sent.len(), 2);
    }
    assert_eq!(read, expected, "the target reads FreeRDP's header from the fragments");

    // Rounds: the same offer again gets the same answer, or the session ends.
    let round = |f: &mut Filter, listed: &[[u8; 18]], flags: u8| {
        f.from_target(&target_dvc(&data(&offer))).unwrap();
        let mut header = [0u8; 20];
        header[0] = flags;
        header[17] = 6;
        f.from_client(&client_dvc(&data(&sound_formats(header, listed)))).unwrap()
    };
    let mut f = opened();
    assert!(matches!(round(&mut f, &subset, 1), Verdict::Forward | Verdict::Replace(_)));
    assert!(matches!(round(&mut f, &subset, 1), Verdict::Forward | Verdict::Replace(_)), "the same answer");
    assert_eq!(round(&mut f, &offered[..2], 1), Verdict::Refuse(AUDIO_REFUSED), "another choice");
    let mut f = opened();
    assert!(matches!(round(&mut f, &subset, 1), Verdict::Forward | Verdict::Replace(_)));
    assert_eq!(round(&mut f, &subset, 3), Verdict::Refuse(AUDIO_REFUSED), "other flags");
    // New formats are the client's to choose, up to 512 a channel.
    let mut f = opened();
    for n in 0..2u32 {
        let fresh: Vec<[u8; 18]> = (0..256u32).map(|i| pcm(20_000 + 256 * n + i)).collect();
        let offer = sound_formats(target_header, &fresh);
        f.from_target(&target_dvc(&data(&offer))).unwrap();
        let answer = sound_formats([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0], &fresh[..1]);
        assert!(matches!(f.from_client(&client_dvc(&data(&answer))).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    }
    let fresh: Vec<[u8; 18]> = (0..4u32).map(|i| pcm(40_000 + i)).collect();
    f.from_target(&target_dvc(&data(&sound_formats(target_header, &fresh)))).unwrap();
    let answer = sound_formats([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0], &fresh[..1]);
    assert_eq!(f.from_client(&client_dvc(&data(&answer))).unwrap(), Verdict::Refuse(AUDIO_REFUSED), "a 513th format");
    // Control: a format the target did not offer is still refused.
    let mut f = opened();
    f.from_target(&target_dvc(&data(&offer))).unwrap();
    let answer = sound_formats([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0], &[pcm(44_100)]);
    assert_eq!(f.from_client(&client_dvc(&data(&answer))).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
}

/// A Share Data PDU of `pdu_type2` from `source` (stream 1, uncompressed) around `body`.
pub(super) fn share_data(source: u16, pdu_type2: u8, body: &[u8]) -> Vec<u8> {
    let total = u16::try_from(18 + body.len()).unwrap();
    let mut pdu = total.to_le_bytes().to_vec();
    pdu.extend(0x0017u16.to_le_bytes());
    pdu.extend(source.to_le_bytes());
    pdu.extend(0x0001_03EAu32.to_le_bytes());
    pdu.extend([0, 1]);
    pdu.extend(u16::try_from(4 + body.len()).unwrap().to_le_bytes());
    pdu.extend([pdu_type2, 0, 0, 0]);
    pdu.extend(body);
    pdu
}

fn client_io(user_data: Vec<u8>, channel: u16) -> Vec<u8> {
    encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

fn target_io(user_data: Vec<u8>, channel: u16) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// Hole 4 (closed for these): "every PDU judged" stopped at the fields the filter acts on. Past
/// activation, on the I/O channel and the message channel, these passed with whatever body they
/// carried, up to a TPKT's length (~64 KiB) a PDU, as often as the sender liked, on any grant:
/// - client to target: a fast-path input PDU's bytes after its last event (IronRDP's
///   `FastPathInput` reads numEvents events and stops; so does xrdp), a slow-path Input PDU's
///   bytes after its events (IronRDP reads them as "padding"), and the whole body of every Share
///   Data PDU the filter did not read (Synchronize, Refresh Rect, Persistent Key List, Shutdown
///   Request, Frame Acknowledge, ... and the server's own types, which no client sends), and an
///   auto-detect response's body on the message channel;
/// - target to client: the body of every Share Data PDU but updates and pointers (Save Session
///   Info, Monitor Layout, Play Sound, Set Keyboard Indicators, ...), and auto-detect requests' and
///   heartbeats' bodies.
///
/// The reader is the target's RDP server (Windows' `rdpwd`/`termsrv`, xrdp's `xrdp` process): a
/// pipe for an insider who controls the target (its administrator). Now fast-path input and every
/// Share Data PDU pass as IronRDP read them, re-encoded (no bytes after the last event or field,
/// the header's source, share id and stream the box's); Refresh Rect asks for the whole desktop;
/// Persistent Key Lists, cache errors, Play Sound, IME and status PDUs are dropped; the Save
/// Session Info becomes a plain logon notice; the other side's types end the session; and the
/// message channel carries nothing (the target is told the client does no auto-detect and no
/// heartbeats, and what comes anyway is dropped).
#[test]
fn red17m_pdu_bodies_the_filter_does_not_read_carry_a_file_to_and_from_the_targets_rdp_server() {
    let filter = || {
        let mut f = grant(Redirection::NONE);
        f.message_channel = Some(1005);
        f.desktop = (1024, 768);
        f
    };
    let mut f = filter();
    let payload = file(30_000);
    let piece = &payload[64..96];
    // Fast-path: one key event (scan code 0x1E down), then the file, in one PDU: the key alone.
    let length = 3 + 2 + payload.len();
    let mut fast = vec![0x04, 0x80 | (length >> 8) as u8, length as u8, 0x00, 0x1E];
    fast.extend(&payload);
    let verdict = f.from_client(&fast).unwrap();
    assert_eq!(verdict, Verdict::Replace(vec![0x04, 0x04, 0x00, 0x1E]), "fast-path input");
    // Slow-path Input PDU: one event (a sync), then the file: the event alone.
    let mut input = vec![1, 0, 0, 0];
    input.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // eventTime, messageType sync, pad, toggles
    input.extend(&payload[..20_000]);
    let frame = client_io(share_data(1007, 0x1C, &input), 1003);
    let verdict = f.from_client(&frame).unwrap();
    let Verdict::Replace(out) = &verdict else { panic!("slow-path input: {verdict:?}") };
    assert!(!carries(&verdict, &frame, piece), "slow-path input");
    assert!(out.len() < 100, "the event alone: {} bytes", out.len());
    // Share Data PDUs with the file as their body: none reaches the target with it, whether
    // re-encoded, dropped or refused.
    for kind in [0x1F, 0x21, 0x2B, 0x24, 0x38, 0x26, 0x37] {
        let frame = client_io(share_data(1007, kind, &payload[..20_000]), 1003);
        let verdict = filter().from_client(&frame).unwrap();
        assert!(!carries(&verdict, &frame, piece), "client pduType2 {kind:#x}: {verdict:?}");
    }
    // Each readable one with a body of its own: re-encoded without what followed.
    for (kind, body) in
        [(0x1F, [1u8, 0, 0xEA, 3].as_slice()), (0x24, &[]), (0x21, &[1, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 0])]
    {
        let mut sent = body.to_vec();
        sent.extend(piece);
        let frame = client_io(share_data(1007, kind, &sent), 1003);
        let verdict = filter().from_client(&frame).unwrap();
        assert!(matches!(verdict, Verdict::Replace(_)), "client pduType2 {kind:#x}: {verdict:?}");
        assert!(!carries(&verdict, &frame, piece), "client pduType2 {kind:#x}");
    }
    // A Frame Acknowledge of a frame the target ended (its id 7, the box's 0; red team
    // `h-red17r`, hole 8): re-encoded without what followed, with the target's id.
    let mut f = filter();
    let ended = [0x00, 13, 0x04, 8, 0, 0x04, 0, 1, 0, 7, 0, 0, 0];
    assert!(matches!(f.from_target(&ended).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    let mut sent = 0u32.to_le_bytes().to_vec();
    sent.extend(piece);
    let frame = client_io(share_data(1007, 0x38, &sent), 1003);
    let verdict = f.from_client(&frame).unwrap();
    assert!(matches!(verdict, Verdict::Replace(_)), "frame acknowledge: {verdict:?}");
    assert!(!carries(&verdict, &frame, piece), "frame acknowledge");
    assert!(carries(&verdict, &frame, &[0x38, 0, 0, 0, 7, 0, 0, 0]), "the target's id: {verdict:?}");
    // The server's types from the client: refused.
    for kind in [0x26, 0x37, 0x22] {
        let frame = client_io(share_data(1007, kind, &[0; 8]), 1003);
        assert_eq!(filter().from_client(&frame).unwrap(), Verdict::Refuse(CLIENT_UNREADABLE), "{kind:#x}");
    }
    // The message channel: an auto-detect response (SEC_AUTODETECT_RSP) and the file: dropped.
    let mut rsp = vec![0x00, 0x20, 0x00, 0x00];
    rsp.extend(&payload[..20_000]);
    assert_eq!(f.from_client(&client_io(rsp, 1005)).unwrap(), Verdict::Drop, "auto-detect response");

    // Target to client.
    for kind in [0x26, 0x37, 0x22, 0x29, 0x36] {
        let frame = target_io(share_data(1002, kind, &payload[..20_000]), 1003);
        let verdict = filter().from_target(&frame).unwrap();
        assert!(!carries(&verdict, &frame, piece), "target pduType2 {kind:#x}: {verdict:?}");
    }
    // A logon notice naming a user (Save Session Info, INFOTYPE_LOGON_LONG) reaches the client
    // as a plain one; keyboard lights keep only their four bits.
    let mut logon = 1u32.to_le_bytes().to_vec();
    logon.extend(piece);
    let frame = target_io(share_data(1002, 0x26, &logon), 1003);
    let verdict = filter().from_target(&frame).unwrap();
    assert!(!carries(&verdict, &frame, piece) && matches!(verdict, Verdict::Replace(_) | Verdict::Refuse(_)));
    let mut logon = 2u32.to_le_bytes().to_vec();
    logon.extend([0; 576]);
    let frame = target_io(share_data(1002, 0x26, &logon), 1003);
    let verdict = filter().from_target(&frame).unwrap();
    assert!(carries(&verdict, &frame, &[0x26, 0, 0, 0, 2, 0, 0, 0]), "a plain notice passes: {verdict:?}");
    let frame = target_io(share_data(1002, 0x29, &[9, 9, 0xFF, 0xFF]), 1003);
    let verdict = filter().from_target(&frame).unwrap();
    assert!(carries(&verdict, &frame, &[0x29, 0, 0, 0, 0, 0, 0x0F, 0]), "keyboard lights: {verdict:?}");
    for flags in [0x1000u16, 0x4000] {
        let mut req = flags.to_le_bytes().to_vec();
        req.extend([0, 0]);
        req.extend(&payload[..20_000]);
        assert_eq!(f.from_target(&target_io(req, 1005)).unwrap(), Verdict::Drop, "message channel {flags:#x}");
    }
}

/// Hole 5 (closed): a pointer shape was a pipe from the target to the client that the recording
/// cannot show. A 32 bpp pointer's pixels whose alpha is 0 are drawn by no one — FreeRDP blends
/// them away, and the recorder's stage (IronRDP's software pointer, "colors with alpha 0x00 are
/// always invisible no matter their color") skips them — yet each carried three free colour
/// bytes, and its AND mask bit was free too. Any program of the session sets such a cursor (an X
/// ARGB cursor through XFixes or Xcursor, which xorgxrdp sends as a 32 bpp pointer; Windows'
/// `CreateIconIndirect`), on any grant, as often as it likes. A 64x64 New Pointer in one
/// fast-path PDU carried 12.7 KB of a file. Now pointer updates are read exactly and made
/// canonical in place ([`crate::pointer`]): invisible pixels and AND bits that change nothing
/// reach the client as zeros, so the client reads none of the file.
#[test]
fn red17m_an_invisible_pointer_carries_a_file_from_the_target_unrecorded() {
    use ironrdp_graphics::pointer::{DecodedPointer, PointerBitmapTarget};
    use ironrdp_pdu::pointer::PointerAttribute;
    let mut f = grant(Redirection::NONE);
    let (w, h) = (64usize, 64usize);
    let payload = file(w * h * 3 + w * h / 8);
    let (colours, and_mask) = payload.split_at(w * h * 3);
    // TS_FP_POINTERATTRIBUTE: xorBpp 32, then TS_COLORPOINTERATTRIBUTE.
    let mut body = 32u16.to_le_bytes().to_vec();
    body.extend(0u16.to_le_bytes()); // cacheIndex
    body.extend([0, 0, 0, 0]); // hotSpot
    body.extend(u16::try_from(w).unwrap().to_le_bytes());
    body.extend(u16::try_from(h).unwrap().to_le_bytes());
    body.extend(u16::try_from(and_mask.len()).unwrap().to_le_bytes());
    body.extend(u16::try_from(w * h * 4).unwrap().to_le_bytes());
    for rgb in colours.chunks(3) {
        body.extend(rgb);
        body.push(0); // alpha 0: drawn by no one
    }
    body.extend(and_mask);
    // fpOutputHeader, length (2 bytes), then the update: code 0xB (New Pointer), size, body.
    let length = 3 + 3 + body.len();
    let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, 0x0B];
    pdu.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
    pdu.extend(&body);
    let Verdict::Replace(sent) = f.from_target(&pdu).unwrap() else {
        panic!("the pointer passed as the target sent it")
    };
    assert_eq!(sent.len(), pdu.len(), "made canonical in place");
    // What the insider's client reads off the wire: zeros where the file was.
    let attribute: PointerAttribute<'_> = decode(&sent[6..]).unwrap();
    assert!(attribute.color_pointer.xor_mask.iter().all(|&b| b == 0), "colour bytes crossed");
    assert!(attribute.color_pointer.and_mask.iter().all(|&b| b == 0), "AND bits crossed");
    // What the recorder draws of it is unchanged: nothing (every pixel fully transparent).
    let drawn = DecodedPointer::decode_pointer_attribute(&attribute, PointerBitmapTarget::Software).unwrap();
    assert!(drawn.bitmap_data.chunks(4).all(|p| p[3] == 0 && p[..3] != [0xFF, 0xFF, 0xFF]));
}

/// The pointer's fragments are held until it is whole, made canonical across them and passed
/// on cut the box's way, and a pointer update with a byte beyond its fields ends the session.
#[test]
fn red17m_a_fragmented_pointer_is_made_canonical_across_its_fragments() {
    let mut f = grant(Redirection::NONE);
    let body = square_pointer(32, [7, 7, 7, 0], 0xFF);
    let (a, rest) = body.split_at(1000);
    let (b, c) = rest.split_at(2000);
    assert_eq!(f.from_target(&fragment(2, a)).unwrap(), Verdict::Drop, "the first fragment is held");
    assert_eq!(f.from_target(&fragment(3, b)).unwrap(), Verdict::Drop);
    let Verdict::Replace(out) = f.from_target(&fragment(1, c)).unwrap() else { panic!("not released") };
    // Released whole, cut the box's way: one update in one PDU (it fits).
    assert_eq!(out.len(), 3 + 3 + body.len());
    assert_eq!(out[3], 0x0B, "a single New Pointer update");
    let data = &out[6..];
    assert_eq!(data[..16], body[..16], "the fields pass as sent");
    assert!(data[16..].iter().all(|&b| b == 0), "free bytes crossed");
    let mut long = body.clone();
    long.extend([1, 2]);
    assert_eq!(f.from_target(&fragment(0, &long)).unwrap(), Verdict::Refuse(crate::pointer::POINTER_UNREADABLE));
}

/// Hole 6 (closed): the Client Info rewrite kept the client's own strings whole: clientAddress
/// and clientDir (unbounded in IronRDP), which Windows hands to any program of the session
/// (`WTSQuerySessionInformation`): ~440 bytes a connection, client to target. Now the address is
/// the one the box saw and the directory mstsc's.
#[test]
fn red17m_the_client_infos_own_address_and_directory_carry_bytes_to_the_target() {
    use ironrdp_pdu::rdp::client_info::{AddressFamily, ClientInfo, ExtendedClientInfo, ExtendedClientOptionalInfo};
    use ironrdp_pdu::rdp::headers::BasicSecurityHeader;
    let payload = file(39 + 255);
    let text =
        |bytes: &[u8]| -> String { bytes.iter().map(|&b| char::from_u32(0x4E00 + u32::from(b)).unwrap()).collect() };
    let pdu = ClientInfoPdu {
        security_header: BasicSecurityHeader { flags: BasicSecurityHeaderFlags::INFO_PKT },
        client_info: ClientInfo {
            credentials: Credentials { username: "alice".into(), password: "box-password".into(), domain: None },
            password_cookie: None,
            code_page: 0,
            flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE,
            compression_type: CompressionType::K8,
            alternate_shell: String::new(),
            work_dir: String::new(),
            extra_info: ExtendedClientInfo {
                address_family: AddressFamily::INET,
                address: text(&payload[..39]),
                dir: text(&payload[39..]),
                optional_data: ExtendedClientOptionalInfo::default(),
            },
        },
    };
    let mut f = Filter::new(SecurityProtocol::SSL, Redirection::NONE, red17i_injection());
    (f.connect_initial_seen, f.io_channel) = (true, Some(1003));
    let frame = client_io(encode_vec(&pdu).unwrap(), 1003);
    let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("client info not rewritten") };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    let info = decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info;
    assert_eq!(info.credentials.username, "root", "rewritten");
    // What a program on the target reads back: the address the box saw, mstsc's directory.
    assert_eq!(info.extra_info.address, "", "no address known to this filter");
    assert_eq!(info.extra_info.dir, "C:\\Windows\\System32\\mstscax.dll");
    let mut f = Filter::new(SecurityProtocol::SSL, Redirection::NONE, red17i_injection())
        .with_client_address("2001:db8::7".parse().unwrap());
    (f.connect_initial_seen, f.io_channel) = (true, Some(1003));
    let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("client info not rewritten") };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    let info = decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info;
    assert_eq!(
        (info.extra_info.address.as_str(), info.extra_info.address_family),
        ("2001:db8::7", AddressFamily::INET_6)
    );
}

fn red17i_injection() -> Injection {
    Injection { username: "root".into(), domain: Some("TGT".into()), password: "target-secret".into() }
}

/// A client Confirm Active (source descriptor "MSTSC") holding `sets` (each type, then body).
pub(super) fn confirm_active(sets: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut caps = u16::try_from(sets.len()).unwrap().to_le_bytes().to_vec();
    caps.extend([0, 0]);
    for (kind, body) in sets {
        caps.extend(kind.to_le_bytes());
        caps.extend(u16::try_from(4 + body.len()).unwrap().to_le_bytes());
        caps.extend(body);
    }
    let source = b"MSTSC\0";
    let mut pdu = u16::try_from(6 + 4 + 2 + 2 + 2 + source.len() + caps.len()).unwrap().to_le_bytes().to_vec();
    pdu.extend(0x0013u16.to_le_bytes());
    pdu.extend(1007u16.to_le_bytes());
    pdu.extend(0x0001_03EAu32.to_le_bytes());
    pdu.extend(1002u16.to_le_bytes());
    pdu.extend(u16::try_from(source.len()).unwrap().to_le_bytes());
    pdu.extend(u16::try_from(caps.len()).unwrap().to_le_bytes());
    pdu.extend(source);
    pdu.extend(caps);
    pdu
}

/// Hole 4, continued (closed): a Confirm Active's capability sets of a type the filter does not
/// trim passed whole (an unknown type, 0x7F7F here, with the file as its body: servers skip it
/// by its length), and so did repeats of a known type and bytes after the sets. Now the target
/// gets the Confirm Active re-encoded: the first set of each type MS-RDPBCGR defines, the box's
/// header fields and source descriptor. What is left: a known set's own fields, and bytes past
/// its fields within its length.
#[test]
fn red17m_capability_sets_carry_a_file_to_the_targets_rdp_server() {
    let payload = file(20_000);
    let mut f = grant(Redirection::NONE);
    let frame = client_io(confirm_active(&[(0x7F7F, payload.clone())]), 1003);
    let verdict = f.from_client(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &payload[64..96]), "confirm active: {verdict:?}");
    // A known set passes; a repeat of it, an unknown set and the file behind the sets do not.
    let input = (0x0D, vec![0x15, 0, 0, 0, 0x09, 0x04, 0, 0]);
    let mut repeat = input.clone();
    repeat.1[4..8].copy_from_slice(&payload[64..68]);
    let mut pdu = confirm_active(&[input.clone(), (0x7F7F, payload[..1000].to_vec()), repeat]);
    pdu.extend(&payload[100..200]);
    let total = u16::try_from(pdu.len()).unwrap();
    pdu[..2].copy_from_slice(&total.to_le_bytes());
    let frame = client_io(pdu, 1003);
    let verdict = grant(Redirection::NONE).from_client(&frame).unwrap();
    let Verdict::Replace(out) = &verdict else { panic!("{verdict:?}") };
    assert!(out.windows(12).any(|w| w == [0x0D, 0, 12, 0, 0x15, 0, 0, 0, 0x09, 0x04, 0, 0]), "the input set");
    for piece in [&payload[64..68], &payload[100..132], &payload[..32]] {
        assert!(!carries(&verdict, &frame, piece), "{piece:?}");
    }
}

/// Hole 4, the other way: the target's Demand Active reaches the client re-encoded too — the
/// first set of each defined type, the box's header fields, nothing after the session id (here
/// a captured freerdp-shadow Demand Active with the file behind it, which IronRDP reads as
/// padding).
#[test]
fn red17m_the_demand_actives_trailing_bytes_stay_on_the_box() {
    use crate::decode::capture_records;
    let payload = file(4_000);
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::default(), red17i_injection());
    for (tag, frame) in capture_records(include_bytes!("testdata/shadow_bitmap.cap")) {
        if tag == b'C' {
            f.from_client(frame).unwrap();
            continue;
        }
        let Some(X224(McsMessage::SendDataIndication(ind))) = whole_mcs(frame) else {
            f.from_target(frame).unwrap();
            continue;
        };
        if f.io_channel != Some(ind.channel_id) || ind.user_data.get(2) != Some(&0x11) {
            f.from_target(frame).unwrap();
            continue;
        }
        // The Demand Active: the file after it, inside its totalLength.
        let mut pdu = ind.user_data.to_vec();
        pdu.extend(&payload[..1000]);
        let total = u16::try_from(pdu.len()).unwrap();
        pdu[..2].copy_from_slice(&total.to_le_bytes());
        let sent = target_io(pdu, ind.channel_id);
        let verdict = f.from_target(&sent).unwrap();
        let Verdict::Replace(out) = &verdict else { panic!("{verdict:?}") };
        assert!(!carries(&verdict, &sent, &payload[64..96]), "the file crossed");
        // Every capability set the target sent reaches the client as sent.
        let data = &ind.user_data;
        let source = usize::from(u16::from_le_bytes([data[10], data[11]]));
        let combined = usize::from(u16::from_le_bytes([data[12], data[13]]));
        let sets = &data[14 + source + 4..14 + source + combined];
        assert!(out.windows(sets.len()).any(|w| w == sets), "the sets");
        assert!(f.active);
        return;
    }
    panic!("no demand active in the capture");
}

/// Hole 4, continued (bounded, open): before activation a licence PDU whose header and wMsgSize
/// fit passes with any body (a New License Request's client user and machine name blobs are
/// free-form, its randoms random). Now at most 4 licence PDUs of at most 8 KiB pass a
/// connection; within that, the body still crosses as sent (the attack below, 6 KiB, passes).
#[test]
fn red17m_licence_pdus_carry_a_file_to_the_targets_rdp_server() {
    let payload = file(6_000);
    let licence = |payload: &[u8]| {
        // SEC_LICENSE_PKT, then a preamble (NEW_LICENSE_REQUEST, version 3) whose wMsgSize
        // covers the file.
        let mut licence = 0x0080u32.to_le_bytes().to_vec();
        licence.extend([0x13, 0x03]);
        licence.extend(u16::try_from(4 + payload.len()).unwrap().to_le_bytes());
        licence.extend(payload);
        client_io(licence, 1003)
    };
    let mut f = grant(Redirection::NONE);
    f.active = false;
    for n in 0..4 {
        let frame = licence(&payload);
        let verdict = f.from_client(&frame).unwrap();
        assert!(carries(&verdict, &frame, &payload), "licence pdu {n}: {verdict:?}");
    }
    // The bounds: a fifth, or a longer one.
    assert_eq!(f.from_client(&licence(&payload)).unwrap(), Verdict::Refuse(LICENCE_TOO_MUCH));
    let mut f = grant(Redirection::NONE);
    f.active = false;
    assert_eq!(f.from_client(&licence(&file(9_000))).unwrap(), Verdict::Refuse(LICENCE_TOO_MUCH));
}

/// Hole 7 (closed): the
/// filter drops the client's Suppress Output ("a minimised client stops the target's updates;
/// the recording must not stop"), but a client has another way to stop them: frame
/// acknowledgement. Its Confirm Active may carry the Frame Acknowledge capability set
/// (MS-RDPBCGR 2.2.7.2.10: maxUnacknowledgedFrameCount, how many frames the server may send
/// unacknowledged), which passed untrimmed; the client then never sends a Frame Acknowledge PDU,
/// and the target stops drawing after that many frames (xrdp holds its updates until the
/// client's frame ack catches up). A scripted client types blind while the video stands still,
/// then acknowledges and the screen resumes — what Suppress Output did. Now the set reaches the
/// target with `FRAMES_UNACKNOWLEDGED` (2^20, hours of frames), whatever the client wrote. On the
/// graphics pipeline (Windows, xrdp 0.10) the target waits for RDPGFX_FRAME_ACKNOWLEDGE whatever
/// the client offered: there, input from a client that owes an acknowledgement of a frame ended
/// more than `ACK_DEADLINE` (10 s) before, without having suspended acknowledgements, ends the
/// session. What stays: a client may freeze the screen for up to 10 s at a time (its keys are in
/// the key track). (The target's stall itself needs a live xrdp; this unit test shows the set as
/// it crosses, and the input refused.)
#[test]
fn red17m_a_client_that_withholds_frame_acknowledgements_stops_the_recording_like_suppress_output() {
    let mut f = grant(Redirection::NONE);
    // Control: Suppress Output (allowDisplayUpdates 0) is dropped.
    let suppress = client_io(share_data(1007, 35, &[0, 0, 0, 0]), 1003);
    assert_eq!(f.from_client(&suppress).unwrap(), Verdict::Drop, "suppress output");
    // CAPSETTYPE_FRAME_ACKNOWLEDGE (0x1E), maxUnacknowledgedFrameCount 1.
    let frame = client_io(confirm_active(&[(0x1E, 1u32.to_le_bytes().to_vec())]), 1003);
    let verdict = f.from_client(&frame).unwrap();
    let out = match &verdict {
        Verdict::Forward => frame.clone(),
        Verdict::Replace(out) => out.clone(),
        other => panic!("{other:?}"),
    };
    assert!(!out.windows(8).any(|w| w == [0x1E, 0, 8, 0, 1, 0, 0, 0]), "the frame acknowledge set crossed intact");
    let set = [&[0x1E, 0, 8, 0][..], &FRAMES_UNACKNOWLEDGED.to_le_bytes()].concat();
    assert!(out.windows(8).any(|w| w == set), "the frame acknowledge set's count is the box's");
    // A Frame Acknowledge PDU (0x38) for a frame the box never numbered stays on the box (red
    // teams `h-red17r`, hole 8: the box numbers surface frames; `h-red17s`, hole 4).
    let ack = client_io(share_data(1007, 0x38, &0u32.to_le_bytes()), 1003);
    assert_eq!(f.from_client(&ack).unwrap(), Verdict::Drop);
    // The graphics pipeline: the target draws frame 0; the client types (fast-path `h`, and a
    // slow-path Input PDU) and does not acknowledge it.
    use super::red17n::{confirm, from_client, from_target, opened};
    use crate::messages::ACK_DEADLINE;
    let key = [1 << 2, 4, 0x00, 0x23];
    let slow_key = client_io(share_data(1007, 28, &[1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0x23, 0, 0, 0]), 1003);
    let drawn = || {
        let mut f = opened();
        assert_eq!(f.from_target(&from_target(&confirm())).unwrap(), Verdict::Forward);
        assert_eq!(f.from_target(&from_target(&crate::gfx::drawn_frames(0, 1, true))).unwrap(), Verdict::Forward);
        f
    };
    let age = |f: &mut Filter| {
        for c in f.dynamic.open.values_mut() {
            if let Some(p) = c.parsed.as_mut() {
                p.reader.age_gfx_acks(ACK_DEADLINE + std::time::Duration::from_secs(1));
            }
        }
    };
    let mut f = drawn();
    assert_eq!(f.from_client(&key).unwrap(), Verdict::Forward, "within the deadline");
    age(&mut f);
    assert_eq!(f.from_client(&key).unwrap(), Verdict::Refuse(GFX_ACKS_WITHHELD));
    assert_eq!(f.from_client(&slow_key).unwrap(), Verdict::Refuse(GFX_ACKS_WITHHELD));
    // Controls: a client that acknowledged the frame, or suspended acknowledgements (the target
    // then waits for none), types on.
    let ack = |depth: u32| {
        let mut b = depth.to_le_bytes().to_vec();
        b.extend(0u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        let mut pdu = vec![0x0D, 0, 0, 0, 20, 0, 0, 0];
        pdu.extend(b);
        from_client(&pdu)
    };
    for depth in [0, 0xFFFF_FFFF] {
        let mut f = drawn();
        assert!(matches!(f.from_client(&ack(depth)).unwrap(), Verdict::Forward | Verdict::Replace(_)));
        if depth != 0 {
            assert_eq!(f.from_target(&from_target(&crate::gfx::drawn_frames(1, 1, false))).unwrap(), Verdict::Forward);
        }
        age(&mut f);
        assert_eq!(f.from_client(&key).unwrap(), Verdict::Forward, "queue depth {depth:#x}");
        let passed = f.from_client(&slow_key).unwrap();
        assert!(matches!(passed, Verdict::Forward | Verdict::Replace(_)), "queue depth {depth:#x}: {passed:?}");
    }
}

/// The captured freerdp-shadow session without the graphics pipeline (320x240), replayed
/// through the filter, the recorder's decoder shown what passes.
fn replayed_bitmap_session() -> (Filter, crate::decode::PassiveDecoder) {
    let (filter, decoder, _) = replayed_with_demand_active();
    (filter, decoder)
}

/// [`replayed_bitmap_session`], and the target's Demand Active of that session as it passed
/// (to replay a reactivation).
pub(super) fn replayed_with_demand_active() -> (Filter, crate::decode::PassiveDecoder, Vec<u8>) {
    use crate::decode::{PassiveDecoder, capture_records};
    let mut filter = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, red17i_injection());
    let mut decoder = PassiveDecoder::new();
    let mut demand_active = None;
    for (tag, frame) in capture_records(include_bytes!("testdata/shadow_bitmap.cap")) {
        if tag != b'C' && tag != b'T' {
            continue;
        }
        let verdict = if tag == b'C' { filter.from_client(frame) } else { filter.from_target(frame) }.unwrap();
        let out = match verdict {
            Verdict::Forward => frame.to_vec(),
            Verdict::Replace(out) => out,
            Verdict::Drop => continue,
            Verdict::Refuse(why) => panic!("the capture was refused: {why}"),
        };
        if tag == b'C' {
            decoder.observe_client(&out).unwrap();
            continue;
        }
        let is_demand = ironrdp_pdu::mcs::decode_send_data_indication(&out).is_ok_and(|ctx| {
            matches!(
                decode::<ShareControlHeader>(ctx.user_data).map(|h| h.share_control_pdu),
                Ok(ShareControlPdu::ServerDemandActive(_))
            )
        });
        if is_demand {
            demand_active = Some(out.clone());
        }
        decoder.observe_target(&out).unwrap();
    }
    (filter, decoder, demand_active.expect("the capture holds a demand active"))
}

/// A fast-path bitmap update: one raw 32 bpp `size` x `size` square of `bgrx` at `left`, `top`.
fn square(left: u16, top: u16, size: u16, bgrx: [u8; 4]) -> Vec<u8> {
    let pixels = usize::from(size) * usize::from(size);
    let mut update = vec![0x01, 0x00, 0x01, 0x00];
    for v in [left, top, left + size - 1, top + size - 1, size, size, 32, 0] {
        update.extend(v.to_le_bytes());
    }
    update.extend(u16::try_from(pixels * 4).unwrap().to_le_bytes());
    update.extend(bgrx.repeat(pixels));
    fast_path_update(0x01, &update)
}

/// A fast-path output PDU of one update of `code`.
fn fast_path_update(code: u8, body: &[u8]) -> Vec<u8> {
    let length = 3 + 3 + body.len();
    let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, code];
    pdu.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
    pdu.extend(body);
    pdu
}

/// A 32 bpp New Pointer (fast-path 0xB) of `size` x `size` opaque pixels of `bgr`, hot spot 0,0.
fn opaque_pointer(size: u16, bgr: [u8; 3]) -> Vec<u8> {
    let pixels = usize::from(size) * usize::from(size);
    let and_mask = (usize::from(size).div_ceil(16) * 2) * usize::from(size);
    let mut body = 32u16.to_le_bytes().to_vec();
    body.extend(0u16.to_le_bytes());
    body.extend([0, 0, 0, 0]);
    body.extend(size.to_le_bytes());
    body.extend(size.to_le_bytes());
    body.extend(u16::try_from(and_mask).unwrap().to_le_bytes());
    body.extend(u16::try_from(pixels * 4).unwrap().to_le_bytes());
    body.extend([bgr[0], bgr[1], bgr[2], 0xFF].repeat(pixels));
    body.extend(vec![0; and_mask]);
    fast_path_update(0x0B, &body)
}

/// Hole 8 (closed): the recorder drew the pointer into the video (software rendering, at the
/// client's last mouse position), so the pointer was a patch of the recorded screen that the
/// target's program paints and the client places. A program of the session sets an opaque
/// cursor as big as the client takes (64x64 here; 96x96, or 384x384 with the large pointer
/// capability) showing harmless pixels; the insider's client does not draw pointers (it is its
/// own) and keeps its mouse over what it works on: the recording showed the program's picture
/// there, the client the real screen. Now the pointer is not part of the decoded screen: the
/// recorder draws it over the screen at half its opacity at most ([`crate::decode::Overlay`]),
/// so what is beneath always shows.
#[test]
fn red17m_a_big_opaque_pointer_masks_the_recorded_screen_where_the_client_points() {
    let (mut filter, mut decoder) = replayed_bitmap_session();
    let target = |filter: &mut Filter, decoder: &mut crate::decode::PassiveDecoder, frame: Vec<u8>| {
        assert_eq!(filter.from_target(&frame).unwrap(), Verdict::Forward, "the filter refused it");
        decoder.observe_target(&frame).expect("decoded")
    };
    const RED: [u8; 4] = [0, 0, 255, 0];
    // What the admin works on: a red square at (100, 100), 64x64, drawn by the target.
    target(&mut filter, &mut decoder, square(100, 100, 64, RED));
    let screen_at = |d: &crate::decode::PassiveDecoder, x: usize, y: usize| {
        let s = d.screen().expect("a screen");
        let at = y * s.stride + x * 4;
        [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
    };
    assert_eq!(screen_at(&decoder, 130, 130), [0, 0, 255], "recorded before the mask");
    // The client's mouse rests on it (fast-path mouse move to 100, 100).
    let mut mouse = vec![0x04, 9, 0x20];
    mouse.extend(0x0800u16.to_le_bytes());
    mouse.extend(100u16.to_le_bytes());
    mouse.extend(100u16.to_le_bytes());
    assert_eq!(filter.from_client(&mouse).unwrap(), Verdict::Forward);
    decoder.observe_client(&mouse).unwrap();
    // The program's cursor: 64x64 opaque green (its "harmless" picture).
    target(&mut filter, &mut decoder, opaque_pointer(64, [0, 255, 0]));
    target(&mut filter, &mut decoder, square(100, 100, 64, RED));
    // The screen the recorder encodes is the target's square, the pointer drawn over it.
    for y in 100..164 {
        for x in 100..164 {
            assert_eq!(screen_at(&decoder, x, y), [0, 0, 255], "the screen at {x},{y}");
        }
    }
    let screen = decoder.screen().unwrap();
    let pointer = screen.pointer.expect("the pointer is shown");
    assert_eq!((pointer.x, pointer.y, pointer.width, pointer.height), (100, 100, 64, 64));
    assert!(
        pointer.rgba.chunks(4).all(|p| p[3] <= crate::decode::POINTER_MAX_ALPHA),
        "a pointer pixel more than half opaque"
    );
}

/// Hole 9 (closed): the filter kept every dynamic channel the grant opens until it closed, with
/// its whole name, and a target could open as many as it liked (a camera grant held 256 names of
/// 16 KiB; a USB grant 100,000 entries). Now a name is at most 256 bytes and a session keeps at
/// most 64 channels (open or refused) at once: the next Create Request ends the session.
#[test]
fn red17m_a_target_opening_channels_without_end_makes_the_box_hold_them_all() {
    let mut f = grant(Redirection::NONE.with(Class::Camera));
    let mut create = vec![0x12];
    create.extend(7u32.to_le_bytes());
    create.extend(format!("RDCamera_Device_7{}", "X".repeat(16 * 1024)).as_bytes());
    create.push(0);
    assert_eq!(f.from_target(&target_dvc(&create)).unwrap(), Verdict::Refuse(DVC_CONTROL), "a 16 KiB name");

    let mut f = grant(Redirection::NONE.with(Class::Usb));
    for id in 0..=64u32 {
        let mut create = vec![0x12];
        create.extend(id.to_le_bytes());
        create.extend(b"URBDRC\0");
        let verdict = f.from_target(&target_dvc(&create)).unwrap();
        if id < 64 {
            assert_eq!(verdict, Verdict::Forward, "channel {id}");
        } else {
            assert_eq!(verdict, Verdict::Refuse(DVC_TOO_MANY), "channel {id}");
        }
    }
    assert_eq!(f.dynamic.open.len(), 64, "no more kept");
    // Refused channels count too.
    let mut f = grant(Redirection::NONE);
    for id in 0..=64u32 {
        let mut create = vec![0x12];
        create.extend(id.to_le_bytes());
        create.extend(b"URBDRC\0");
        let verdict = f.from_target(&target_dvc(&create)).unwrap();
        assert_eq!(matches!(verdict, Verdict::Replace(_)), id < 64, "channel {id}: {verdict:?}");
    }
}

/// Hole 10 (closed): on the session's own graphics pipeline the client's RDPGFX PDUs were
/// walked only to find a Caps Advertise and the target's passed unread: an unknown command, or a
/// Cache Import Offer (~65 KB of free cache keys), carried a file either way. The graphics
/// reader (red17k hole 4's fix) reads every RDPGFX message by its command, exactly: an unknown
/// command or a non-empty offer ends the session.
#[test]
fn red17m_the_sessions_own_graphics_pipeline_carries_unknown_commands_both_ways() {
    let opened = || {
        let mut f = grant(Redirection::NONE);
        assert_eq!(
            f.from_target(&target_dvc(&create(3, "Microsoft::Windows::RDS::Graphics"))).unwrap(),
            Verdict::Forward
        );
        assert_eq!(f.from_client(&client_dvc(&[0x10, 3, 0, 0, 0, 0])).unwrap(), Verdict::Forward);
        f
    };
    let payload = file(1500);
    let gfx = |cmd: u16, body: &[u8]| {
        let mut pdu = vec![0x30, 3];
        pdu.extend(cmd.to_le_bytes());
        pdu.extend(0u16.to_le_bytes());
        pdu.extend(u32::try_from(8 + body.len()).unwrap().to_le_bytes());
        pdu.extend(body);
        pdu
    };
    let refused = |v: Verdict| matches!(v, Verdict::Refuse(_));
    let frame = client_dvc(&gfx(0x7777, &payload));
    assert!(refused(opened().from_client(&frame).unwrap()), "client to target, unknown command");
    // RDPGFX_CMDID_CACHEIMPORTOFFER (0x10): cacheEntriesCount, then cacheKey (8) and bitmapLength (4).
    let mut offer = u16::try_from(payload.len() / 12).unwrap().to_le_bytes().to_vec();
    offer.extend(&payload[..payload.len() / 12 * 12]);
    let frame = client_dvc(&gfx(0x10, &offer));
    assert!(refused(opened().from_client(&frame).unwrap()), "a cache import offer that is not empty");
    let frame = target_dvc(&gfx(0x7777, &payload));
    assert!(refused(opened().from_target(&frame).unwrap()), "target to client, unknown command");
}

/// A held pointer too big for one PDU is released in the largest fragments, in order, and the
/// recorder reads the same picture from them.
#[test]
fn a_held_pointer_too_big_for_one_pdu_is_released_in_the_largest_fragments() {
    let mut f = grant(Redirection::NONE);
    let body = square_pointer(96, [0x10, 0x20, 0x30, 0xFF], 0);
    let (a, rest) = body.split_at(15_000);
    let (b, c) = rest.split_at(15_000);
    assert_eq!(f.from_target(&fragment(2, a)).unwrap(), Verdict::Drop);
    assert_eq!(f.from_target(&fragment(3, b)).unwrap(), Verdict::Drop);
    let Verdict::Replace(out) = f.from_target(&fragment(1, c)).unwrap() else { panic!("not released") };
    // PDUs of the largest size, fragments first then last, the data the pointer's.
    let mut rest = &out[..];
    let (mut flags, mut data): (Vec<u8>, Vec<u8>) = (Vec::new(), Vec::new());
    while !rest.is_empty() {
        let (length, at) = crate::decode::fast_path_length(rest).unwrap();
        let pdu = &rest[..length];
        flags.push(pdu[at] >> 4);
        let size = usize::from(u16::from_le_bytes([pdu[at + 1], pdu[at + 2]]));
        assert_eq!(at + 3 + size, length, "one update a pdu");
        data.extend(&pdu[at + 3..]);
        rest = &rest[length..];
    }
    assert_eq!(flags, vec![2, 1], "first, last");
    assert_eq!(data, body);
}

/// A 32 bpp New Pointer's data (TS_POINTERATTRIBUTE), `side` pixels square of `pixel`, its AND
/// mask bytes all `and`.
fn square_pointer(side: usize, pixel: [u8; 4], and: u8) -> Vec<u8> {
    let mut body = 32u16.to_le_bytes().to_vec();
    body.extend([0, 0, 0, 0, 0, 0]);
    body.extend(u16::try_from(side).unwrap().to_le_bytes());
    body.extend(u16::try_from(side).unwrap().to_le_bytes());
    body.extend(u16::try_from(side * side / 8).unwrap().to_le_bytes());
    body.extend(u16::try_from(side * side * 4).unwrap().to_le_bytes());
    body.extend(pixel.repeat(side * side));
    body.extend(vec![and; side * side / 8]);
    body
}

/// One fast-path PDU holding a fragment (`flags`: 2 first, 3 next, 1 last, 0 whole) of a New
/// Pointer update.
fn fragment(flags: u8, data: &[u8]) -> Vec<u8> {
    let length = 3 + 3 + data.len();
    let mut pdu = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, 0x0B | flags << 4];
    pdu.extend(u16::try_from(data.len()).unwrap().to_le_bytes());
    pdu.extend(data);
    pdu
}
