//! Red team `h-red31`'s attacks on today's fixes to the dynamic channel layer's own PDUs and to
//! the Client Info rewrite: each test passes while its hole is open (asserting the attacker's
//! success). The parties are red team `h-red17m`'s: an insider's patched client, and on the
//! target a program of the session (on xrdp chansrv, which runs as the session's user).

use super::red17m::{carries, file};
use super::*;

fn client_dvc(dvc: &[u8]) -> Vec<u8> {
    red17i::client_send(red17i::svc(dvc))
}

fn target_dvc(dvc: &[u8]) -> Vec<u8> {
    red17i::target_send(red17i::svc(dvc))
}

/// Hole 1: a Create Response is judged by its length only, and one for a channel that is open
/// passes every time the client sends it. Display control opens on every grant; once it is open
/// the client sends Create Response after Create Response for it, each with a status of its
/// choosing (any non-negative one keeps the channel open): 31 free bits a PDU, client to target,
/// without end and without the target asking.
#[test]
fn red31_repeated_create_responses_carry_their_status_to_the_target() {
    let mut f = red17i::grant_without_anything();
    let mut open = vec![0x10, 5];
    open.extend(b"Microsoft::Windows::RDS::DisplayControl\0");
    assert_eq!(f.from_target(&target_dvc(&open)).unwrap(), Verdict::Forward);
    let payload = file(4096);
    let mut moved = 0;
    for word in payload.chunks(4) {
        // The sign bit would close the channel: 31 bits a response.
        let status = u32::from_le_bytes(word.try_into().unwrap()) & 0x7FFF_FFFF;
        let mut response = vec![0x10, 5];
        response.extend(status.to_le_bytes());
        let frame = client_dvc(&response);
        let verdict = f.from_client(&frame).unwrap();
        assert!(carries(&verdict, &frame, &status.to_le_bytes()), "status {status:#x} stopped");
        moved += 31;
    }
    assert_eq!(moved / 8, 3968, "bytes in 1024 pdus");
    // The header's Sp bits (unused in a Create Response) and the id's width are not read either:
    // about 3 bits more a response.
    for header in [0x14, 0x18, 0x1C, 0x1D, 0x1E] {
        let mut response = vec![header, 5];
        response.extend(std::iter::repeat_n(0, [0, 1, 3][usize::from(header & 3)]));
        response.extend(7u32.to_le_bytes());
        let frame = client_dvc(&response);
        assert_eq!(f.from_client(&frame).unwrap(), Verdict::Forward, "header {header:#x}");
    }
}

/// Hole 2: a Create Request for a name the grant does not open passes with its name blanked to
/// `!`, but with its channel id (four bytes with cbChId 2), its priority bits and its name's
/// length as the target sent them. The client refuses the channel, the id is free again, and the
/// target asks again: about 4 bytes and 10 bits a request, target to client, without end (the
/// 64-channel limit counts channels at once).
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
        let Verdict::Replace(out) = &verdict else { panic!("request {n} not passed blanked: {verdict:?}") };
        // What the client reads: header (with the priority), the id, `length` bytes of name.
        let mut seen = vec![0x10 | priority << 2 | 2];
        seen.extend(word);
        seen.extend(std::iter::repeat_n(b'!', length));
        seen.push(0);
        assert!(carries(&verdict, out, &seen), "request {n}: id, priority or length changed");
        // The client says no; the target hears no; the id is free again.
        let mut no = vec![0x12];
        no.extend(word);
        no.extend(CREATION_FAILED.to_le_bytes());
        assert!(matches!(f.from_client(&client_dvc(&no)).unwrap(), Verdict::Replace(_)));
    }
    assert!(f.dynamic.refused.is_empty() && f.dynamic.open.is_empty());
}

/// Hole 3: a Capabilities Request of version 2 or 3 is read exactly, but its four priority
/// charges are any numbers: 8 bytes a session, target to client.
#[test]
fn red31_the_capabilities_requests_priority_charges_carry_eight_bytes_to_the_client() {
    let mut f = red17i::grant_without_anything();
    let payload = file(8);
    let mut caps = vec![0x50, 0, 3, 0];
    caps.extend(&payload);
    let frame = target_dvc(&caps);
    let verdict = f.from_target(&frame).unwrap();
    assert!(carries(&verdict, &frame, &payload));
    // A client answers with its own version (FreeRDP answers what the target asked): it passes.
    let answer = client_dvc(&[0x50, 0, 3, 0]);
    assert_eq!(f.from_client(&answer).unwrap(), Verdict::Forward);
}

/// Hole 4: the Client Info rewrite replaces the address and directory but keeps the rest of what
/// the client says of itself: the code page, the time zone (its two 32-character names, three
/// biases, two dates) and the client session id, which Windows and xrdp keep for the session
/// (the time zone becomes the session's: any program reads it back). With a 1-byte-a-character
/// encoding as below: 62 bytes of names, 12 of biases, 16 of the dates' times, 4 of session id,
/// 4 of code page, and the Client Info's undefined flag bits (0x4 and the top six, plus the two
/// reserved ones). Names could hold 2 bytes a character (any UTF-16 unit but NUL and surrogates):
/// about 124 bytes.
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
    assert_eq!(optional.timezone(), Some(&timezone), "the time zone crossed whole");
    assert_eq!(optional.session_id(), Some(word(74)), "the session id crossed");
    assert_eq!(info.code_page, word(78), "the code page crossed");
    // Flags no version of the protocol defines are kept as sent (read with `from_bits_retain`).
    assert_eq!(info.flags.bits() & FREE_FLAGS, FREE_FLAGS, "the undefined flags crossed");
}
