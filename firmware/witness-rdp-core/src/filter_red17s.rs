//! Red team `h-red17s`'s attacks on issue 17's promises as built (every PDU judged, no bytes
//! crossing unrecorded): the MCS layer around the Share Control PDUs (the domain PDUs the filter
//! forwards whole, the Connect Response it forwards unchanged, the Connect Initial's user data
//! blocks it re-encodes as the client wrote them) and the Share Data PDUs whose fields it keeps
//! (the target's Monitor Layout, the client's Frame Acknowledge). Each test passes while its
//! hole is open (asserting the attacker's success), so a fixer flips it.
//!
//! The parties are those of the earlier red teams: an insider's client (a patched FreeRDP) and a
//! hostile target (its RDP server patched by an insider who administers it, or a program of the
//! session where the field reaches one). A field a sender may fill as it likes, as often as it
//! likes, that no one draws and no gap states, is a pipe past the box.

use super::red17m::{carries, file};
use super::*;
use ironrdp_pdu::gcc::{ServerGccBlocks, ServerSecurityData};
use ironrdp_pdu::mcs::{
    AttachUserConfirm, AttachUserRequest, ChannelJoinConfirm, ChannelJoinRequest, ConnectInitial, ErectDomainPdu,
};

fn injection() -> Injection {
    Injection { username: "root".into(), domain: None, password: "target-secret".into() }
}

/// A filter past activation, the I/O channel 1003, no static channel granted.
fn active() -> Filter {
    let mut f = red17i::grant_without_anything();
    f.desktop = (1024, 768);
    f
}

/// Whether the filter ended the session over it.
fn refused(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::Refuse(_))
}

/// The bytes `piece` is cut into, `n` at a time, as little-endian words of `n` bytes.
fn words(piece: &[u8], n: usize) -> Vec<u32> {
    piece
        .chunks(n)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

/// Hole 1: the MCS domain PDUs cross whole, both ways, after activation, as often as either side
/// likes. `from_client` forwards an Erect Domain Request, an Attach User Request and a Channel
/// Join Request without judging a field; `from_target` forwards an Attach User Confirm and a
/// Channel Join Confirm the same way — whatever the phase, for channel ids no one announced. An
/// Erect Domain Request holds two PER integers (subHeight, subInterval: 8 free bytes, MS-RDPBCGR
/// fixes both at 0), a Channel Join Request a user id and a channel id (4 bytes: xrdp's
/// `xrdp_mcs_recv` answers one at any phase, logs both ids, and echoes the channel id in its
/// confirm); a Channel Join Confirm from the target holds a result, user id, requested and
/// channel id (7 bytes), an Attach User Confirm a result and a user id. Here 4 KiB of a file
/// crosses to the target's RDP server in Erect Domain Requests and 4 KiB to the client in
/// Channel Join Confirms, after activation, on a grant with nothing, with no refusal. (A stock
/// FreeRDP ends the session on a Channel Join Confirm after activation; a patched one reads on.
/// The key track, the video and the audit event see none of it.) Fix shape: the domain PDUs in
/// their phase only (Erect Domain and Attach User once, before any Channel Join; a Channel Join
/// for the user channel and the channels the Connect Response listed, each once, before the
/// Client Info), re-encoded with the fields the box knows (subHeight and subInterval 0, the ids
/// the Connect Response gave); after it, a Disconnect Provider Ultimatum alone.
#[test]
fn red17s_mcs_domain_pdus_carry_a_file_both_ways_after_activation() {
    let payload = file(4096);
    let mut f = active();
    let mut to_target = Vec::new();
    for pair in words(&payload, 4).chunks(2) {
        let erect = ErectDomainPdu { sub_height: pair[0], sub_interval: *pair.get(1).unwrap_or(&0) };
        let frame = encode_vec(&X224(erect)).unwrap();
        let verdict = f.from_client(&frame).unwrap();
        assert_eq!(verdict, Verdict::Forward, "an erect domain request after activation");
        // What the target's RDP server reads: the two integers.
        let Ok(X224(McsMessage::ErectDomainRequest(read))) = decode::<X224<McsMessage<'_>>>(&frame) else {
            panic!("not an erect domain request")
        };
        to_target.extend(read.sub_height.to_le_bytes());
        to_target.extend(read.sub_interval.to_le_bytes());
    }
    assert_eq!(&to_target[..payload.len()], &payload[..], "the file reached the target's rdp server");
    // Channel Join and Attach User Requests too: ids of no channel of the session.
    for (i, id) in words(&payload[..64], 2).into_iter().enumerate() {
        let join = ChannelJoinRequest { initiator_id: 1007, channel_id: id as u16 };
        assert_eq!(f.from_client(&encode_vec(&X224(join)).unwrap()).unwrap(), Verdict::Forward, "join {i}");
        assert_eq!(f.from_client(&encode_vec(&X224(AttachUserRequest)).unwrap()).unwrap(), Verdict::Forward);
    }

    // The target's Channel Join Confirms: 3 free u16s each, 6 bytes (the result byte besides).
    let mut to_client = Vec::new();
    for triple in words(&payload, 2).chunks(3) {
        let id = |i: usize| triple.get(i).map_or(0, |w| *w as u16);
        let confirm = ChannelJoinConfirm {
            result: 0,
            initiator_id: id(0).max(1001),
            requested_channel_id: id(1),
            channel_id: id(2),
        };
        let frame = encode_vec(&X224(confirm.clone())).unwrap();
        assert_eq!(f.from_target(&frame).unwrap(), Verdict::Forward, "a channel join confirm after activation");
        to_client.extend(confirm.requested_channel_id.to_le_bytes());
        to_client.extend(confirm.channel_id.to_le_bytes());
    }
    let confirm = AttachUserConfirm { result: 0, initiator_id: 0xBEEF };
    assert_eq!(f.from_target(&encode_vec(&X224(confirm)).unwrap()).unwrap(), Verdict::Forward);
    // Two of each three words reached the client as sent.
    let sent: Vec<u8> =
        payload.chunks(6).flat_map(|c| c.iter().skip(2).copied().chain(std::iter::repeat(0)).take(4)).collect();
    assert_eq!(to_client, sent, "the file (two thirds of it here) reached the client");
    // Control: a Share Control PDU the box cannot read after activation is refused.
    let frame = red17r_target_io(vec![0xFF; 40]);
    assert!(refused(&f.from_target(&frame).unwrap()));
}

fn red17r_target_io(user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1003, user_data: Cow::Owned(user_data) }))
        .unwrap()
}
