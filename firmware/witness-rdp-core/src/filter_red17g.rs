//! Red team `h-red17g`'s attacks on the filter, flipped into refusal tests as their holes close
//! (the attacks for the holes still open are on branch `h-red17g`).

use super::*;
use crate::keys::KeyTrack;

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

/// A slow-path Input PDU (Share Control + Share Data header, pduType2 28) typing `h` then `i`
/// (scancodes 0x23 and 0x17, each pressed and released), with the Share Data header's streamId
/// and compressedType as given, and `extra` events (12 bytes each) after the keys.
fn slow_path_input(stream_id: u8, compressed_type: u8, extra: &[[u8; 12]]) -> Vec<u8> {
    let mut events: Vec<[u8; 12]> = Vec::new();
    for code in [0x23u16, 0x17] {
        for flags in [0u16, 0x8000] {
            let mut e = [0u8; 12];
            e[4..6].copy_from_slice(&4u16.to_le_bytes()); // INPUT_EVENT_SCANCODE
            e[6..8].copy_from_slice(&flags.to_le_bytes());
            e[8..10].copy_from_slice(&code.to_le_bytes());
            events.push(e);
        }
    }
    events.extend_from_slice(extra);
    let mut body = u16::try_from(events.len()).unwrap().to_le_bytes().to_vec();
    body.extend([0, 0]);
    for e in &events {
        body.extend(e);
    }
    let total = 18 + body.len();
    let mut pdu = u16::try_from(total).unwrap().to_le_bytes().to_vec();
    pdu.extend(0x17u16.to_le_bytes()); // PDUTYPE_DATAPDU | TS_PROTOCOL_VERSION
    pdu.extend(1007u16.to_le_bytes());
    pdu.extend(0x0001_03EAu32.to_le_bytes()); // shareId
    pdu.push(0); // pad1
    pdu.push(stream_id);
    pdu.extend(u16::try_from(body.len() + 4).unwrap().to_le_bytes()); // uncompressedLength
    pdu.push(28); // PDUTYPE2_INPUT
    pdu.push(compressed_type);
    pdu.extend(0u16.to_le_bytes()); // compressedLength
    pdu.extend(body);
    pdu
}

/// xrdp 0.9.21's reading of a client Share Data PDU (`xrdp_rdp_process_data`, libxrdp/xrdp_rdp.c):
/// `in_uint8s(s, 6)` skips shareId, pad1 and streamId unread; `in_uint8(s, ctype)` reads the
/// compressedType and never looks at it again (xrdp has no client-to-server decompressor); a
/// PDUTYPE2_INPUT goes to `xrdp_rdp_process_data_input`, which reads numEvents and then every
/// 12-byte event, whatever its messageType, passing each to the session callback (the window
/// manager types the scancodes and ignores types it does not know). Returns the scancodes pressed.
#[test]
fn an_unversioned_demand_active_ends_the_session() {
    use crate::decode::{PassiveDecoder, Update, capture_records};
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
    const BITMAP: &[u8] = include_bytes!("testdata/shadow_bitmap.cap");
    let records = capture_records(BITMAP);
    let demand_active = records
        .iter()
        .filter(|(tag, f)| *tag == b'T' && is_x224(f))
        .map(|(_, f)| *f)
        .find(|f| {
            ironrdp_pdu::mcs::decode_send_data_indication(f).is_ok_and(|ctx| {
                decode::<ShareControlHeader>(ctx.user_data)
                    .is_ok_and(|h| matches!(h.share_control_pdu, ShareControlPdu::ServerDemandActive(_)))
            })
        })
        .expect("the capture's demand active");
    let user_data_len = ironrdp_pdu::mcs::decode_send_data_indication(demand_active).unwrap().user_data.len();
    let at = demand_active.len() - user_data_len;
    assert_eq!(u16_at(demand_active, at + 2), Some(0x0011));
    let mut patched = demand_active.to_vec();
    patched[at + 2..at + 4].copy_from_slice(&0x0001u16.to_le_bytes());
    // FreeRDP would read it as a Demand Active and activate; the filter refuses it.
    let io = ironrdp_pdu::mcs::decode_send_data_indication(demand_active).unwrap().channel_id;
    let mut f = filter(false);
    f.io_channel = Some(io);
    assert_eq!(f.from_target(&patched).unwrap(), Verdict::Refuse(UNVERSIONED_PDU));
    assert!(!f.active, "the filter never counts the session active");
    let mut f = filter(false);
    f.io_channel = Some(io);
    assert_eq!(f.from_target(demand_active).unwrap(), Verdict::Forward, "control: the true one passes");
    // The recorder, fed the same session: frames with the true Demand Active; with the patch no
    // frame at all, and no stop (on a stopped decoder the relay ends the session: `check_stopped`
    // in witness-rdp's record.rs).
    let replay = |patch: bool| {
        let mut d = PassiveDecoder::new();
        let (mut frames, mut errors) = (0, 0);
        for (tag, frame) in &records {
            match tag {
                b'C' => {
                    let _ = d.observe_client(frame);
                }
                b'T' => {
                    let frame: &[u8] = if patch && *frame == demand_active { &patched } else { frame };
                    match d.observe_target(frame) {
                        Ok(updates) => frames += updates.iter().filter(|u| matches!(u, Update::Frame { .. })).count(),
                        Err(_) => errors += 1,
                    }
                }
                _ => {}
            }
        }
        (frames, errors, d.is_stopped())
    };
    let (frames, _, stopped) = replay(false);
    assert!(frames > 0 && !stopped, "control: the capture is recorded");
    let (frames, errors, stopped) = replay(true);
    assert_eq!(frames, 0, "nothing of the session is recorded");
    assert!(!stopped, "the decoder does not stop: the relay does not end the session");
    // Why it is refused: the recorder could only count each screen PDU as undecodable while the
    // session went on with an empty video.
    assert!(errors > 0);
}

#[test]
fn an_unversioned_pdu_from_the_client_ends_the_session() {
    // xrdp reads a Data PDU typed 0x0007 (no version) and types its keys; the key track, reading
    // with IronRDP, recorded nothing.
    let plain = slow_path_input(2, 0, &[]);
    let typed = |pdu: &[u8]| {
        let mut t = KeyTrack::new(0x0409);
        t.set_io_channel(1003);
        t.observe_client(&send_data(1003, pdu.to_vec()));
        t.take()
    };
    assert_eq!(typed(&plain), "hi", "control");
    assert_eq!(filter(true).from_client(&send_data(1003, plain.clone())).unwrap(), Verdict::Forward);
    let mut pdu = plain;
    pdu[2..4].copy_from_slice(&0x0007u16.to_le_bytes());
    assert_eq!(typed(&pdu), "", "the key track cannot read it");
    assert_eq!(filter(true).from_client(&send_data(1003, pdu)).unwrap(), Verdict::Refuse(UNVERSIONED_PDU));
}
