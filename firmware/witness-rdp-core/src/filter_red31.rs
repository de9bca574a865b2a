//! Red team `h-red31`'s attacks on the fixes to the dynamic channel layer's own PDUs and to the
//! Client Info rewrite, each flipped once its hole closed: the tests now assert the filter's
//! refusal or its canonical output. The parties are red team `h-red17m`'s: an insider's patched
//! client, and on the target a program of the session (on xrdp chansrv, which runs as the
//! session's user).

use super::red17m::{carries, file};
use super::*;

fn client_dvc(dvc: &[u8]) -> Vec<u8> {
    red17i::client_send(red17i::svc(dvc))
}

fn target_dvc(dvc: &[u8]) -> Vec<u8> {
    red17i::target_send(red17i::svc(dvc))
}

/// The dynamic channel PDU a frame carries to the other side.
fn dvc_out(verdict: &Verdict, frame: &[u8]) -> Vec<u8> {
    let out = match verdict {
        Verdict::Forward => frame,
        Verdict::Replace(out) => out,
        other => panic!("not passed: {other:?}"),
    };
    let X224(mcs) = whole_mcs(out).expect("one mcs pdu");
    let data = match mcs {
        McsMessage::SendDataRequest(r) => r.user_data.into_owned(),
        McsMessage::SendDataIndication(i) => i.user_data.into_owned(),
        other => panic!("{other:?}"),
    };
    let (length, flags, dvc) = channel_pdu(&data).expect("a channel pdu");
    assert_eq!((length as usize, flags), (dvc.len(), CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST));
    dvc.to_vec()
}

/// Hole 1 (closed): a Create Response was judged by its length only, and one for a channel that
/// is open passed every time the client sent it: 31 free bits of status a PDU (any non-negative
/// one kept the channel open), client to target, without end, plus its header's Sp bits and its
/// id's width. Now each request gets one answer, re-encoded (the target hears 0 or
/// STATUS_UNSUCCESSFUL, the id in as few bytes as hold it, no Sp bits); a second answer ends the
/// session.
#[test]
fn red31_repeated_create_responses_carry_their_status_to_the_target() {
    let open = || {
        let mut f = red17i::grant_without_anything();
        let mut open = vec![0x10, 5];
        open.extend(b"Microsoft::Windows::RDS::DisplayControl\0");
        assert_eq!(f.from_target(&target_dvc(&open)).unwrap(), Verdict::Forward);
        f
    };
    let payload = file(4096);
    for word in payload.chunks(4).take(64) {
        let status = u32::from_le_bytes(word.try_into().unwrap()) & 0x7FFF_FFFF;
        let mut f = open();
        let mut response = vec![0x10, 5];
        response.extend(status.to_le_bytes());
        let frame = client_dvc(&response);
        let verdict = f.from_client(&frame).unwrap();
        assert!(!carries(&verdict, &frame, &status.to_le_bytes()) || status == 0, "status {status:#x} crossed");
        assert_eq!(dvc_out(&verdict, &frame), [0x10, 5, 0, 0, 0, 0], "the target hears yes");
        // The same answer again, or another: the session ends.
        assert_eq!(f.from_client(&frame).unwrap(), Verdict::Refuse(DVC_ANSWERED_TWICE));
        assert_eq!(f.from_client(&client_dvc(&[0x10, 5, 0, 0, 0, 0])).unwrap(), Verdict::Refuse(DVC_ANSWERED_TWICE));
        // The channel is open: its data passes.
        assert!(f.dynamic.open.contains_key(&5));
    }
    // A no (negative status) is heard as STATUS_UNSUCCESSFUL whatever the client's code.
    let mut f = open();
    let frame = client_dvc(&[0x10, 5, 0x77, 0x66, 0x55, 0x80]);
    let verdict = f.from_client(&frame).unwrap();
    assert_eq!(dvc_out(&verdict, &frame), [0x10, 5, 1, 0, 0, 0xC0]);
    assert!(f.dynamic.open.is_empty());
    // The header's Sp bits and the id's width are not the client's either.
    for header in [0x14, 0x18, 0x1C, 0x1D, 0x1E] {
        let mut f = open();
        let mut response = vec![header, 5];
        response.extend(std::iter::repeat_n(0, [0, 1, 3][usize::from(header & 3)]));
        response.extend(7u32.to_le_bytes());
        let frame = client_dvc(&response);
        let verdict = f.from_client(&frame).unwrap();
        assert_eq!(dvc_out(&verdict, &frame), [0x10, 5, 0, 0, 0, 0], "header {header:#x}");
    }
}

/// Hole 2 (closed): a Create Request for a name the grant does not open passed with its name
/// blanked to `!`, but with its channel id (four bytes with cbChId 2), its priority bits and its
/// name's length as the target sent them, without end (the 64-channel limit counts channels at
/// once): about 4 bytes and 10 bits a request, target to client. Now it reaches the client with
/// nothing of the target's — the box's id (the top of the id space, the lowest free), priority
/// 0, the name `!` — and the client's answer reaches the target under the target's id; a session
/// passes at most [`DVC_REFUSED_MAX`] of them, the next ends it. What is left: that a request
/// came, and when.
#[test]
fn red31_refused_create_requests_carry_their_id_priority_and_name_length_to_the_client() {
    let mut f = red17i::grant_without_anything();
    let payload = file(4 * 200);
    for (n, word) in payload.chunks(4).enumerate() {
        let length = 1 + n % 200;
        let priority = (n % 4) as u8;
        let mut create = vec![0x10 | priority << 2 | 2];
        create.extend(word);
        create.extend(std::iter::repeat_n(b'x', length));
        create.push(0);
        let frame = target_dvc(&create);
        let verdict = f.from_target(&frame).unwrap();
        if n == DVC_REFUSED_MAX {
            assert_eq!(verdict, Verdict::Refuse(DVC_TOO_MANY_REFUSED), "request {n}");
            break;
        }
        let id = u32::from_le_bytes(word.try_into().unwrap());
        let seen = dvc_out(&verdict, &frame);
        assert_eq!(seen, dvc_pdu(cmd::CREATE, 0, REFUSED_IDS, b"!\0"), "request {n}: what the client reads");
        // The client says no by the id it was shown; the target hears no by its own.
        let mut no = vec![0x12];
        no.extend(REFUSED_IDS.to_le_bytes());
        no.extend(0xC000_0225u32.to_le_bytes());
        let no = client_dvc(&no);
        let heard = dvc_out(&f.from_client(&no).unwrap(), &no);
        assert_eq!(heard, dvc_pdu(cmd::CREATE, 0, id, &CREATION_FAILED.to_le_bytes()));
    }
    assert!(f.dynamic.refused.is_empty() && f.dynamic.open.is_empty());
    // Refused channels waiting for the client's answer each get the next box id, and a target
    // that opens a channel on one of them ends the session (the client holds that id).
    let mut f = red17i::grant_without_anything();
    for (n, id) in [7u8, 9].into_iter().enumerate() {
        let frame = target_dvc(&[0x10, id, b'x', 0]);
        let seen = dvc_out(&f.from_target(&frame).unwrap(), &frame);
        assert_eq!(seen, dvc_pdu(cmd::CREATE, 0, REFUSED_IDS + n as u32, b"!\0"));
    }
    let mut taken = vec![0x12];
    taken.extend((REFUSED_IDS + 1).to_le_bytes());
    taken.extend(b"Microsoft::Windows::RDS::DisplayControl\0");
    assert_eq!(f.from_target(&target_dvc(&taken)).unwrap(), Verdict::Refuse(DVC_ID_REUSED));
}

/// Hole 3 (closed): a Capabilities Request of version 2 or 3 was read exactly, but its four
/// priority charges were any numbers: 8 bytes a session, target to client. Now the client gets
/// the box's charges (xrdp's: zero) whatever the target sent; the version (1 to 3) crosses.
#[test]
fn red31_the_capabilities_requests_priority_charges_carry_eight_bytes_to_the_client() {
    let mut f = red17i::grant_without_anything();
    let payload = file(8);
    let mut caps = vec![0x50, 0, 3, 0];
    caps.extend(&payload);
    let frame = target_dvc(&caps);
    let verdict = f.from_target(&frame).unwrap();
    assert!(!carries(&verdict, &frame, &payload));
    assert_eq!(dvc_out(&verdict, &frame), [0x50, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // The same request again passes the same; another one ends the session.
    assert_eq!(dvc_out(&f.from_target(&frame).unwrap(), &frame), [0x50, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        f.from_target(&target_dvc(&[0x50, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0])).unwrap(),
        Verdict::Refuse(DVC_CONTROL)
    );
    // A client answers with its own version (FreeRDP answers what the target asked): it passes.
    let answer = client_dvc(&[0x50, 0, 3, 0]);
    assert_eq!(f.from_client(&answer).unwrap(), Verdict::Forward);
}

/// Hole 4 (closed): the Client Info rewrite replaced the address and directory but kept the rest
/// of what the client says of itself: the code page, the time zone (its two 32-character names, three
/// biases, two dates) and the client session id, which Windows and xrdp keep for the session
/// (the time zone becomes the session's: any program reads it back). With a 1-byte-a-character
/// encoding as below: 62 bytes of names, 12 of biases, 16 of the dates' times, 4 of session id,
/// 4 of code page, and the Client Info's undefined flag bits (0x4 and the top six, plus the two
/// reserved ones). Names could hold 2 bytes a character (any UTF-16 unit but NUL and surrogates):
/// about 124 bytes. Now the target is told the box's: UTC, session id 0, code page 0, the flags
/// mstsc and FreeRDP set (audio from the grant); the client's performance flags cross, those the
/// protocol defines only (8 bits a connection).
const FREE_FLAGS: u32 = 0xFD80_0004;
#[test]
fn red31_the_client_infos_time_zone_session_id_and_code_page_carry_bytes_to_the_target() {
    use ironrdp_pdu::rdp::client_info::{
        AddressFamily, ClientInfo, DayOfWeek, DayOfWeekOccurrence, ExtendedClientInfo, ExtendedClientOptionalInfo,
        Month, OptionalSystemTime, PerformanceFlags, SystemTime, TimezoneInfo,
    };
    use ironrdp_pdu::rdp::headers::BasicSecurityHeader;
    let payload = file(31 + 31 + 12 + 4 + 4 + 16);
    let text =
        |bytes: &[u8]| -> String { bytes.iter().map(|&b| char::from_u32(0x4E00 + u32::from(b)).unwrap()).collect() };
    let word = |at: usize| u32::from_le_bytes(payload[at..at + 4].try_into().unwrap());
    let half = |at: usize| u16::from_le_bytes(payload[at..at + 2].try_into().unwrap());
    let date = |at: usize| {
        OptionalSystemTime(Some(SystemTime {
            month: Month::January,
            day_of_week: DayOfWeek::Sunday,
            day: DayOfWeekOccurrence::First,
            hour: half(at),
            minute: half(at + 2),
            second: half(at + 4),
            milliseconds: half(at + 6),
        }))
    };
    let timezone = TimezoneInfo {
        bias: word(62) as i32,
        standard_name: text(&payload[..31]),
        standard_date: date(82),
        standard_bias: word(66) as i32,
        daylight_name: text(&payload[31..62]),
        daylight_date: date(90),
        daylight_bias: word(70) as i32,
    };
    let optional = ExtendedClientOptionalInfo::builder()
        .timezone(timezone.clone())
        .session_id(word(74))
        .performance_flags(PerformanceFlags::DISABLE_WALLPAPER)
        .build();
    let pdu = ClientInfoPdu {
        security_header: BasicSecurityHeader { flags: BasicSecurityHeaderFlags::INFO_PKT },
        client_info: ClientInfo {
            credentials: Credentials { username: "alice".into(), password: "box-password".into(), domain: None },
            password_cookie: None,
            code_page: word(78),
            flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE | ClientInfoFlags::from_bits_retain(FREE_FLAGS),
            compression_type: CompressionType::K8,
            alternate_shell: String::new(),
            work_dir: String::new(),
            extra_info: ExtendedClientInfo {
                address_family: AddressFamily::INET,
                address: "10.0.0.9".into(),
                dir: "C:\\".into(),
                optional_data: optional,
            },
        },
    };
    let injection = Injection { username: "root".into(), domain: None, password: "target-secret".into() };
    let mut f = Filter::new(SecurityProtocol::SSL, Redirection::NONE, injection)
        .with_client_address("192.0.2.7".parse().unwrap());
    (f.connect_initial_seen, f.io_channel) = (true, Some(1003));
    let user_data = Cow::Owned(encode_vec(&pdu).unwrap());
    let frame = encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: 1003, user_data })).unwrap();
    let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("client info not rewritten") };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    let info = decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info;
    assert_eq!(info.credentials.username, "root", "rewritten");
    assert_eq!(info.extra_info.address, "192.0.2.7", "the address was replaced");
    let optional = &info.extra_info.optional_data;
    assert_eq!(optional.timezone(), Some(&box_timezone()), "the time zone is the box's");
    assert_ne!(optional.timezone(), Some(&timezone));
    assert_eq!(optional.session_id(), Some(0), "the session id is 0");
    assert_eq!(info.code_page, 0, "the code page is 0");
    assert_eq!(info.flags.bits() & FREE_FLAGS, 0, "no undefined flag crossed");
    assert_eq!(info.flags, BOX_INFO_FLAGS | ClientInfoFlags::NO_AUDIO_PLAYBACK, "the flags are the box's");
    assert_eq!(optional.performance_flags(), Some(PerformanceFlags::DISABLE_WALLPAPER));
    for (at, _) in payload.windows(4).enumerate().filter(|(_, w)| w.iter().any(|&b| b != 0)) {
        assert!(!req.user_data.windows(4).any(|w| w == &payload[at..at + 4]), "payload bytes {at}.. crossed");
    }
}
