//! Red team `h-red17s`'s attacks on issue 17's promises as built (every PDU judged, no bytes
//! crossing unrecorded): the MCS layer around the Share Control PDUs (the domain PDUs the filter
//! forwards whole, the Connect Response it forwards unchanged, the Connect Initial's user data
//! blocks it re-encodes as the client wrote them) and the Share Data PDUs whose fields it keeps
//! (the target's Monitor Layout, the client's Frame Acknowledge), fast-path QoE timestamps, and
//! the I/O channel before activation, where a message the filter cannot read to its end passes
//! whole. Each test was written to pass while its hole was open; all six are flipped now: each
//! asserts the box's refusal or re-encoding, with a control that the legitimate form passes.
//!
//! The parties are those of the earlier red teams: an insider's client (a patched FreeRDP) and a
//! hostile target (its RDP server patched by an insider who administers it, or a program of the
//! session where the field reaches one). A field a sender may fill as it likes, as often as it
//! likes, that no one draws and no gap states, is a pipe past the box.

use super::red17m::{carries, file, share_data};
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
/// likes. `from_client` forwarded an Erect Domain Request, an Attach User Request and a Channel
/// Join Request without judging a field; `from_target` forwarded an Attach User Confirm and a
/// Channel Join Confirm the same way — whatever the phase, for channel ids no one announced. An
/// Erect Domain Request holds two PER integers (subHeight, subInterval: 8 free bytes, MS-RDPBCGR
/// fixes both at 0), a Channel Join Request a user id and a channel id (4 bytes: xrdp's
/// `xrdp_mcs_recv` answers one at any phase, logs both ids, and echoes the channel id in its
/// confirm); a Channel Join Confirm from the target holds a result, user id, requested and
/// channel id (7 bytes), an Attach User Confirm a result and a user id. The attack: 4 KiB of a
/// file to the target's RDP server in Erect Domain Requests and 4 KiB to the client in Channel
/// Join Confirms, after activation, on a grant with nothing. Fixed: the domain PDUs in their
/// phase only (between the Connect Response and the Client Info: Erect Domain and Attach User
/// once, before any Channel Join; a Channel Join for the user channel and the channels the
/// Connect Response listed, each once, confirmed once), re-encoded with the fields the box knows
/// (subHeight and subInterval 0, the ids the Connect Response and Attach User Confirm gave);
/// after it, a Disconnect Provider Ultimatum alone. The control walks a stock connection.
#[test]
fn red17s_mcs_domain_pdus_carry_a_file_both_ways_after_activation() {
    use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason};
    let payload = file(4096);
    let mut f = active();
    for pair in words(&payload, 4).chunks(2) {
        let erect = ErectDomainPdu { sub_height: pair[0], sub_interval: *pair.get(1).unwrap_or(&0) };
        let frame = encode_vec(&X224(erect)).unwrap();
        assert_eq!(
            f.from_client(&frame).unwrap(),
            Verdict::Refuse(MCS_OUT_OF_PHASE),
            "an erect domain request after activation"
        );
    }
    // Channel Join and Attach User Requests too: ids of no channel of the session.
    for id in words(&payload[..64], 2) {
        let join = ChannelJoinRequest { initiator_id: 1007, channel_id: id as u16 };
        assert!(refused(&f.from_client(&encode_vec(&X224(join)).unwrap()).unwrap()));
        assert!(refused(&f.from_client(&encode_vec(&X224(AttachUserRequest)).unwrap()).unwrap()));
    }
    // The target's Channel Join Confirms: 3 free u16s each, 6 bytes (the result byte besides).
    for triple in words(&payload, 2).chunks(3) {
        let id = |i: usize| triple.get(i).map_or(0, |w| *w as u16);
        let confirm = ChannelJoinConfirm {
            result: 0,
            initiator_id: id(0).max(1001),
            requested_channel_id: id(1),
            channel_id: id(2),
        };
        let frame = encode_vec(&X224(confirm)).unwrap();
        assert_eq!(
            f.from_target(&frame).unwrap(),
            Verdict::Refuse(MCS_OUT_OF_PHASE),
            "a channel join confirm after activation"
        );
    }
    let confirm = AttachUserConfirm { result: 0, initiator_id: 0xBEEF };
    assert!(refused(&f.from_target(&encode_vec(&X224(confirm)).unwrap()).unwrap()));
    // A Disconnect Provider Ultimatum still ends the session either way.
    let ultimatum =
        encode_vec(&X224(DisconnectProviderUltimatum::from_reason(DisconnectReason::UserRequested))).unwrap();
    assert_eq!(f.from_client(&ultimatum).unwrap(), Verdict::Forward);
    assert_eq!(f.from_target(&ultimatum).unwrap(), Verdict::Forward);
    // Control: a Share Control PDU the box cannot read after activation is refused.
    let frame = red17r_target_io(vec![0xFF; 40]);
    assert!(refused(&f.from_target(&frame).unwrap()));

    // Control: a stock connection's domain PDUs, in their phase, re-encoded with the box's
    // values; a repeat, or a join for a channel the Connect Response did not give, refused.
    let initial = vector(include_str!("testdata/connect_initial_freerdp2.hex"));
    let response = vector(include_str!("testdata/connect_response_shadow2.hex"));
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    f.from_client(&initial).unwrap();
    assert!(!refused(&f.from_target(&response).unwrap()));
    let io = f.io_channel.unwrap();
    let erect = encode_vec(&X224(ErectDomainPdu { sub_height: 0x0BAD_CAFE, sub_interval: 7 })).unwrap();
    let canonical = encode_vec(&X224(ErectDomainPdu { sub_height: 0, sub_interval: 0 })).unwrap();
    assert_eq!(f.from_client(&erect).unwrap(), Verdict::Replace(canonical.clone()), "erected with the box's values");
    assert!(refused(&f.from_client(&canonical).unwrap()), "once");
    let attach = encode_vec(&X224(AttachUserRequest)).unwrap();
    assert_eq!(f.from_client(&attach).unwrap(), Verdict::Forward);
    assert!(refused(&f.from_client(&attach).unwrap()), "once");
    // The user id may be no channel's (1004 to 1007 are the static channels').
    let clash = encode_vec(&X224(AttachUserConfirm { result: 0, initiator_id: 1007 })).unwrap();
    assert!(refused(&f.from_target(&clash).unwrap()), "a channel's id as the user's");
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    f.from_client(&initial).unwrap();
    f.from_target(&response).unwrap();
    f.from_client(&canonical).unwrap();
    f.from_client(&attach).unwrap();
    let confirm = encode_vec(&X224(AttachUserConfirm { result: 0, initiator_id: 1009 })).unwrap();
    assert_eq!(f.from_target(&confirm).unwrap(), Verdict::Forward);
    assert!(refused(&f.from_target(&confirm).unwrap()), "one user id");
    for channel in [1009, io] {
        let join = encode_vec(&X224(ChannelJoinRequest { initiator_id: 1009, channel_id: channel })).unwrap();
        assert_eq!(f.from_client(&join).unwrap(), Verdict::Forward, "join {channel}");
        assert!(refused(&f.from_client(&join).unwrap()), "join {channel} once");
        let confirm =
            ChannelJoinConfirm { result: 0, initiator_id: 1009, requested_channel_id: channel, channel_id: channel };
        let confirm = encode_vec(&X224(confirm)).unwrap();
        assert_eq!(f.from_target(&confirm).unwrap(), Verdict::Forward, "confirm {channel}");
        assert!(refused(&f.from_target(&confirm).unwrap()), "confirm {channel} once");
    }
    let join = encode_vec(&X224(ChannelJoinRequest { initiator_id: 1009, channel_id: 0x4142 })).unwrap();
    assert_eq!(f.from_client(&join).unwrap(), Verdict::Refuse(MCS_OUT_OF_PHASE), "no such channel");
}

fn red17r_target_io(user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1003, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

fn vector(text: &str) -> Vec<u8> {
    hex::decode(text.trim()).unwrap()
}

/// FreeRDP's reading of the server's user data blocks (`gcc_read_server_data_blocks`): each
/// block by its length, those of a type it does not know logged and skipped. A patched client
/// keeps their bodies instead.
fn freerdp_unknown_server_blocks(blocks: &[u8]) -> Vec<Vec<u8>> {
    let mut unknown = Vec::new();
    let mut at = 0;
    while at + 4 <= blocks.len() {
        let kind = u16::from_le_bytes([blocks[at], blocks[at + 1]]);
        let len = usize::from(u16::from_le_bytes([blocks[at + 2], blocks[at + 3]]));
        if len < 4 || at + len > blocks.len() {
            break;
        }
        if !matches!(kind, 0x0C01 | 0x0C02 | 0x0C03 | 0x0C04 | 0x0C08) {
            unknown.push(blocks[at + 4..at + len].to_vec());
        }
        at += len;
    }
    unknown
}

/// Hole 2: the target's Connect Response reaches the client unchanged, whatever it holds besides
/// what the filter reads. `connect_response` decodes it to learn the channel ids and returns
/// `Verdict::Forward`; IronRDP's `ServerGccBlocks` skips a user data block of a type it does not
/// know ("forward-compat"), and FreeRDP walks blocks by their length. So a hostile target puts a
/// file in a block of its own (type 0x0CFF here) and the client receives it, before the
/// recording starts, with no refusal and nothing stated. The same holds for the Connect
/// Response's own free fields (calledConnectId, the eight domain parameters, the GCC node id
/// and tag) and a security block's server random and certificate on a leg without RDP
/// security. The attack: ~30 KiB in one response (up to a TPKT's ~64 KiB a connection, and the
/// client reconnects as often as it likes). Fixed: the client gets the Connect Response
/// re-encoded by the box — the blocks it reads (core, network, security with no encryption,
/// message channel), nothing else, the fixed fields the box's. The control: a stock response's
/// channel ids reach the client as the target gave them.
#[test]
fn red17s_the_connect_response_carries_a_file_to_the_client_in_a_block_no_one_reads() {
    use ironrdp_pdu::gcc::{ConferenceCreateResponse, EncryptionLevel, EncryptionMethod};
    let initial = vector(include_str!("testdata/connect_initial_freerdp2.hex"));
    let response = vector(include_str!("testdata/connect_response_shadow2.hex"));
    let x224 = decode::<X224<X224Data<'_>>>(&response).unwrap();
    let mut read = decode::<ConnectResponse>(&x224.0.data).unwrap();
    let payload = file(30_000);
    // A security block long enough to hold the file, written by IronRDP so every outer length
    // is right; then cut in place into a security block saying "no encryption" and a block of
    // an unknown type holding the file.
    let mut blocks: ServerGccBlocks = read.conference_create_response.gcc_blocks().clone();
    blocks.security = ServerSecurityData {
        encryption_method: EncryptionMethod::BIT_128,
        encryption_level: EncryptionLevel::ClientCompatible,
        server_random: Some([0x55; 32]),
        server_cert: vec![0xAA; payload.len() - 36],
    };
    read.conference_create_response = ConferenceCreateResponse::new(0x79F3, blocks).unwrap();
    let data = encode_vec(&read).unwrap();
    let mut frame = encode_vec(&X224(X224Data { data: Cow::Owned(data) })).unwrap();
    let block_len = 4 + 16 + 32 + payload.len() - 36;
    let header =
        [&[0x02, 0x0C][..], &u16::try_from(block_len).unwrap().to_le_bytes(), &[2, 0, 0, 0, 2, 0, 0, 0]].concat();
    let at = frame.windows(header.len()).position(|w| w == header).expect("the security block");
    let mut cut = vec![0x02, 0x0C, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    cut.extend([0xFF, 0x0C]);
    cut.extend(u16::try_from(block_len - 12).unwrap().to_le_bytes());
    cut.extend(&payload);
    assert_eq!(cut.len(), block_len);
    frame[at..at + block_len].copy_from_slice(&cut);

    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    assert!(matches!(f.from_client(&initial).unwrap(), Verdict::Replace(_)));
    let verdict = f.from_target(&frame).unwrap();
    let Verdict::Replace(out) = &verdict else { panic!("the connect response passes unchanged: {verdict:?}") };
    assert!(f.channels_known(), "the filter read it (and learnt the channel ids)");
    // The client walks the blocks: no block of its own, no file.
    let start = out.windows(2).position(|w| w == [0x01, 0x0C]).expect("the server core block");
    assert_eq!(freerdp_unknown_server_blocks(&out[start..]), Vec::<Vec<u8>>::new(), "no unknown block");
    assert!(!carries(&verdict, &frame, &payload[..64]));
    let x224 = decode::<X224<X224Data<'_>>>(out).unwrap();
    let got = decode::<ConnectResponse>(&x224.0.data).unwrap();
    let security = &got.conference_create_response.gcc_blocks().security;
    assert!(
        security.encryption_method.is_empty() && security.server_random.is_none() && security.server_cert.is_empty()
    );
    assert!(got.conference_create_response.gcc_blocks().multi_transport_channel.is_none());

    // The fixed fields too: calledConnectId and the eight domain parameters, 36 free bytes a
    // response, forwarded as the target wrote them.
    let x224 = decode::<X224<X224Data<'_>>>(&response).unwrap();
    let mut read = decode::<ConnectResponse>(&x224.0.data).unwrap();
    let w = words(&payload[..36], 4);
    read.called_connect_id = w[0];
    let p = &mut read.domain_parameters;
    (p.max_channel_ids, p.max_user_ids, p.max_token_ids, p.num_priorities) = (w[1], w[2], w[3], w[4]);
    (p.min_throughput, p.max_height, p.max_mcs_pdu_size, p.protocol_version) = (w[5], w[6], w[7], w[8]);
    let data = encode_vec(&read).unwrap();
    let frame = encode_vec(&X224(X224Data { data: Cow::Owned(data) })).unwrap();
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    f.from_client(&initial).unwrap();
    let Verdict::Replace(out) = f.from_target(&frame).unwrap() else { panic!("free fields pass as written") };
    let x224 = decode::<X224<X224Data<'_>>>(&out).unwrap();
    let got = decode::<ConnectResponse>(&x224.0.data).unwrap();
    assert_eq!(got.called_connect_id, 0);
    let p = &got.domain_parameters;
    assert_eq!(
        (p.max_channel_ids, p.max_user_ids, p.max_token_ids, p.num_priorities),
        (34, 3, 0, 1),
        "the box's domain parameters"
    );
    assert_eq!((p.min_throughput, p.max_height, p.max_mcs_pdu_size, p.protocol_version), (0, 1, 65528, 2));

    // Control: the stock response's ids reach the client.
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    f.from_client(&initial).unwrap();
    let verdict = f.from_target(&response).unwrap();
    let out = match &verdict {
        Verdict::Forward => response.clone(),
        Verdict::Replace(out) => out.clone(),
        _ => panic!("the stock connect response refused: {verdict:?}"),
    };
    let stock = decode::<ConnectResponse>(&decode::<X224<X224Data<'_>>>(&response).unwrap().0.data).unwrap();
    let got = decode::<ConnectResponse>(&decode::<X224<X224Data<'_>>>(&out).unwrap().0.data).unwrap();
    let (stock, got) = (stock.conference_create_response.gcc_blocks(), got.conference_create_response.gcc_blocks());
    assert_eq!(stock.network, got.network);
    assert_eq!(stock.message_channel, got.message_channel);
    assert_eq!(stock.core.version, got.core.version);
}

/// Hole 3: the Connect Initial reaches the target re-encoded but with every field of the
/// client's core, cluster, monitor and extended monitor blocks as the client wrote them, the
/// box changing only the protocol, the redirection flag, the multitransport block and two
/// early capability flags. The box replaced what the client says of itself in the Client Info
/// (red team `h-red31`, hole 4; red team `h-red17m`, hole 6), and the Connect Initial says as
/// much again: clientName (15 characters), imeFileName (31), clientDigProductId (31),
/// keyboardLayout, clientBuild, keyboardSubType, keyboardFunctionKey, serialNumber,
/// clientProductId (~200 bytes), any program on the target reads (WTSQuerySessionInformation:
/// WTSClientName, WTSClientBuildNumber, WTSClientProductId, WTSClientHardwareId; Windows puts
/// CLIENTNAME in every process' environment; xrdp passes the client name and keyboard to the
/// session). The cluster block's redirectedSessionId with REDIRECTED_SESSIONID_FIELD_VALID
/// also passes: the client, not the box, picks which of the target account's sessions it joins
/// (the console with FreeRDP's `/admin`). Once a connection, on any grant, reconnecting at will.
/// Fixed: the box writes these fields itself as it writes the Client Info — its name, build and
/// product fields, an empty IME file and product id, serial number 0, 12 function keys, a
/// keyboard layout from a list of common ones (else US), no cluster session id; the client's
/// desktop size, colour depths and monitors kept (the control).
#[test]
fn red17s_the_connect_initial_carries_what_the_client_says_of_itself_to_the_target() {
    use ironrdp_pdu::gcc::ClientClusterData;
    let initial = vector(include_str!("testdata/connect_initial_freerdp2.hex"));
    let x224 = decode::<X224<X224Data<'_>>>(&initial).unwrap();
    let mut read = decode::<ConnectInitial>(&x224.0.data).unwrap();
    let mut blocks = read.conference_create_request.into_gcc_blocks();
    let secret = "s3cr3t-exfil-0123456789abcdefXYZ";
    blocks.core.client_name = secret[..15].to_owned();
    blocks.core.ime_file_name = secret[..31].to_owned();
    blocks.core.optional_data.dig_product_id = Some(secret[1..32].to_owned());
    (blocks.core.keyboard_layout, blocks.core.client_build) = (0xDEAD_BEEF, 0x0BAD_CAFE);
    (blocks.core.keyboard_subtype, blocks.core.keyboard_functional_keys_count) = (0x1234_5678, 0x9ABC_DEF0);
    blocks.core.optional_data.serial_number = Some(0x0F1E_2D3C);
    blocks.cluster = Some(ClientClusterData {
        flags: RedirectionFlags::REDIRECTED_SESSION_FIELD_VALID,
        redirection_version: blocks
            .cluster
            .as_ref()
            .map_or(ironrdp_pdu::gcc::RedirectionVersion::V4, |c| c.redirection_version),
        redirected_session_id: 0x00C0_FFEE,
    });
    read.conference_create_request = ConferenceCreateRequest::new(blocks.clone()).unwrap();
    let data = encode_vec(&read).unwrap();
    let frame = encode_vec(&X224(X224Data { data: Cow::Owned(data) })).unwrap();

    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("connect initial not rewritten") };
    let x224 = decode::<X224<X224Data<'_>>>(&out).unwrap();
    let got = decode::<ConnectInitial>(&x224.0.data).unwrap().conference_create_request.into_gcc_blocks();
    // What the target (and any program there) reads: the box's words, none of the client's.
    assert_eq!(got.core.client_name, BOX_CLIENT_NAME);
    assert_eq!(got.core.ime_file_name, "");
    assert_eq!(got.core.optional_data.dig_product_id.as_deref(), Some(""));
    assert_eq!(got.core.keyboard_layout, 0x0409);
    assert_ne!(got.core.client_build, 0x0BAD_CAFE);
    assert_eq!((got.core.keyboard_subtype, got.core.keyboard_functional_keys_count), (0, 12));
    assert_eq!(got.core.optional_data.serial_number, Some(0));
    let cluster = got.cluster.expect("the cluster block");
    assert!(!cluster.flags.contains(RedirectionFlags::REDIRECTED_SESSION_FIELD_VALID));
    assert_eq!(cluster.redirected_session_id, 0, "the box picks no session");
    assert!(!cluster.flags.contains(RedirectionFlags::REDIRECTION_SUPPORTED));
    assert!(got.multi_transport_channel.is_none());
    // Control: the desktop, colour depth and monitors stay the client's; a common layout too.
    assert_eq!(
        (got.core.desktop_width, got.core.desktop_height),
        (blocks.core.desktop_width, blocks.core.desktop_height)
    );
    assert_eq!(got.core.optional_data.high_color_depth, blocks.core.optional_data.high_color_depth);
    assert_eq!(got.monitor, blocks.monitor);
    let mut german = blocks.clone();
    german.core.keyboard_layout = 0x0407;
    read.conference_create_request = ConferenceCreateRequest::new(german).unwrap();
    let frame = encode_vec(&X224(X224Data { data: Cow::Owned(encode_vec(&read).unwrap()) })).unwrap();
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("connect initial not rewritten") };
    let x224 = decode::<X224<X224Data<'_>>>(&out).unwrap();
    let got = decode::<ConnectInitial>(&x224.0.data).unwrap().conference_create_request.into_gcc_blocks();
    assert_eq!(got.core.keyboard_layout, 0x0407);
}

fn client_io(user_data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: 1003, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// Hole 4: two Share Data PDUs the filter re-encodes keep every field as the sender wrote it, as
/// often as the sender likes. (a) The target's Monitor Layout (pduType2 0x37) is passed with up
/// to 16 monitors: 4 coordinates and a flags word each (IronRDP keeps unknown flag bits, and no
/// one checks a coordinate), 320 free bytes a PDU. A server sends one, after the Demand Active,
/// describing the monitors the client announced; the filter neither counts them nor compares
/// them with the client's monitor block (it knows `client_monitors`). FreeRDP hands each one
/// to the client's `DisplayControlMonitorLayout` callback. (b) The client's Frame Acknowledge
/// (0x38: frameId, 4 bytes) is passed for any id, with no Frame Marker sent and none
/// negotiated; xrdp reads it (`xrdp_rdp_process_frame_ack`) as Windows does. Here 16 KiB of a
/// file reaches the client in 52 Monitor Layouts and 4 KiB the target in 1,024 Frame
/// Acknowledges, after activation, on a grant with nothing, unstated. Fixed: one Monitor Layout
/// an activation, re-written from the client's monitor block (here none: one monitor of the
/// desktop); a Frame Acknowledge only for a frame the box numbered (its Frame Markers' ids are
/// the box's, red team `h-red17r`, hole 8) and the target ended, in order, once, reaching the
/// target with the target's id; any other stays on the box. The controls: a marked frame's
/// acknowledgement passes, once.
#[test]
fn red17s_monitor_layouts_and_frame_acknowledgements_carry_a_file() {
    let payload = file(16_000);
    let mut f = active();
    // What the client gets: one monitor, the desktop's.
    let mut desktop = 1u32.to_le_bytes().to_vec();
    for v in [0i32, 0, 1023, 767] {
        desktop.extend(v.to_le_bytes());
    }
    desktop.extend(1u32.to_le_bytes());
    for (i, piece) in payload.chunks(320).enumerate() {
        let monitors = piece.len().div_ceil(20);
        let mut body = u32::try_from(monitors).unwrap().to_le_bytes().to_vec();
        body.extend(piece);
        body.resize(4 + 20 * monitors, 0);
        let frame = red17r_target_io(share_data(1002, 0x37, &body));
        let verdict = f.from_target(&frame).unwrap();
        assert!(!carries(&verdict, &frame, piece), "the client gets it as the target wrote it");
        if i == 0 {
            assert!(carries(&verdict, &frame, &desktop), "the first, rebuilt: {verdict:?}");
        } else {
            assert_eq!(verdict, Verdict::Refuse(LAYOUT_REPEATED), "a second in one activation");
        }
    }

    let payload = file(4096);
    for (i, id) in words(&payload, 4).into_iter().enumerate() {
        let frame = client_io(share_data(1007, 0x38, &id.to_le_bytes()));
        let verdict = f.from_client(&frame).unwrap();
        assert_eq!(verdict, Verdict::Drop, "frame acknowledge {i}");
    }
    // Control: the target ends frames 7, 8 and 9 (surface command Frame Markers), the box's 0, 1
    // and 2; the client acknowledges 0 and 2 once, in order, and the target hears of 7 and 9.
    for id in [7u32, 8, 9] {
        let mut marker = vec![0x00, 13, 0x04, 8, 0, 0x04, 0, 1, 0];
        marker.extend(id.to_le_bytes());
        assert!(!refused(&f.from_target(&marker).unwrap()));
    }
    let ack = |id: u32| client_io(share_data(1007, 0x38, &id.to_le_bytes()));
    let target = |id: u32| [&[0x38, 0, 0, 0][..], &id.to_le_bytes()].concat();
    let verdict = f.from_client(&ack(0)).unwrap();
    assert!(carries(&verdict, &ack(0), &target(7)), "{verdict:?}");
    assert_eq!(f.from_client(&ack(0)).unwrap(), Verdict::Drop, "once");
    let verdict = f.from_client(&ack(2)).unwrap();
    assert!(carries(&verdict, &ack(2), &target(9)), "{verdict:?}");
    assert_eq!(f.from_client(&ack(1)).unwrap(), Verdict::Drop, "in order");
    // Control: a Monitor Layout of 17 monitors is refused.
    let mut body = 17u32.to_le_bytes().to_vec();
    body.resize(4 + 20 * 17, 0);
    assert!(refused(&active().from_target(&red17r_target_io(share_data(1002, 0x37, &body))).unwrap()));
}

/// Hole 5: a QoE timestamp input event (fast-path eventCode 6, MS-RDPBCGR 2.2.8.1.2.2.6) carries
/// 4 free bytes to the target's RDP server, up to 255 events a PDU, as often as the client
/// likes, once the target offers INPUT_FLAG_QOE_TIMESTAMPS (Windows does; `input_offered`
/// gates only whether it was offered). The box re-encodes the event as IronRDP read it, the
/// client's timestamp kept: 1,020 bytes of a file a fast-path PDU, unstated (the key track and
/// the video see nothing of a QoE event). The graphics pipeline's QoE Frame Acknowledge had the
/// same pipe and now carries the box's time (red team `h-red17n`, hole 1); the input event's
/// timestamp does not. Fix shape: the box writes the timestamp (its own clock, monotonic, at
/// most one event a PDU), or drops QoE events (no session needs them: they feed the target's
/// latency estimate only). Fixed: QoE events are dropped (a PDU of them alone is dropped whole,
/// the other events of a PDU pass re-encoded).
#[test]
fn red17s_qoe_timestamp_input_events_carry_a_file_to_the_target() {
    let payload = file(1020);
    let mut f = active();
    // The target's Demand Active offered QoE timestamps (as Windows' does).
    f.input_offered = InputFlags::TS_QOE_TIMESTAMPS | InputFlags::SCANCODES | InputFlags::UNICODE;
    let mut events = Vec::new();
    for ts in payload.chunks(4) {
        events.push(0xC0);
        events.extend(ts);
    }
    let length = 4 + events.len();
    let mut frame = vec![0x00, 0x80 | (length >> 8) as u8, length as u8, 255];
    frame.extend(&events);
    let verdict = f.from_client(&frame).unwrap();
    assert_eq!(verdict, Verdict::Drop, "the 255 timestamps stay on the box");
    // Beside a key, the key alone passes.
    let mut mixed = vec![0x00, 10, 2, 0x00, 0x1E];
    mixed.push(0xC0);
    mixed.extend(&payload[..4]);
    let verdict = f.from_client(&mixed).unwrap();
    assert!(!carries(&verdict, &mixed, &payload[..4]), "{verdict:?}");
    assert_eq!(verdict, Verdict::Replace(vec![0x04, 4, 0x00, 0x1E]), "the key passes");
    // Control: not offered, refused.
    let mut f = active();
    f.input_offered = InputFlags::SCANCODES;
    assert_eq!(f.from_client(&frame).unwrap(), Verdict::Refuse(INPUT_NOT_OFFERED));
}

/// Hole 6: before activation, a target message the filter cannot read to its end passes whole.
/// `target_io`, past the licence branch (a message whose bytes 2..4 are not 0 is read as Share
/// Control PDUs), ends with `if stop != data.len() || pdus.is_empty() { return ... if was_active
/// { Refuse } else { Forward } }` — the original message, not the PDUs it re-encoded. So until
/// the first Demand Active: (a) a message that is no Share Control PDU at all (here a header
/// of the undefined type 5 and a file) is forwarded whole, as many as the target likes — the
/// licence PDUs were bounded for this reason (red team `h-red17r`, hole 11), these are not
/// counted; (b) a Demand Active with anything after it is forwarded as the target wrote it: the
/// re-encoding red team `h-red17m` hole 4 added (defined sets only, the box's header fields,
/// nothing after the session id) is skipped, so a file inside the Demand Active's length and
/// after it reaches the client, and the filter activates on it. FreeRDP reads the first PDU of
/// such a message and skips the rest (and, waiting for a Demand Active, hands other PDUs to
/// `rdp_recv_out_of_sequence_pdu`); a patched client reads it all. Unbounded before the
/// recording starts (a target need never activate), on any grant, unstated. Fixed: before
/// activation, too, a message must be whole PDUs the filter read, or the session ends; what
/// leaves is their re-encoding. The controls: a Demand Active alone goes out re-encoded; one
/// with a Server Redirection right behind it ends the session as redirected.
#[test]
fn red17s_before_activation_a_message_the_filter_cannot_read_passes_whole() {
    use crate::decode::capture_records;
    let payload = file(20_000);
    let mut junk = vec![0xFF, 0xFF, 0x05, 0x00];
    junk.extend(&payload);
    let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
    for (tag, frame) in capture_records(include_bytes!("testdata/shadow_bitmap.cap")) {
        if tag == b'C' {
            f.from_client(frame).unwrap();
            continue;
        }
        if tag != b'T' {
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
        assert!(!f.active);
        // (a) Before the Demand Active: a message of no PDU the filter knows ends the session.
        let sent = target_io_on(junk.clone(), ind.channel_id);
        assert_eq!(f.from_target(&sent).unwrap(), Verdict::Refuse(TARGET_UNREADABLE), "before activation");
        // (b) The Demand Active, a file inside its length (which the re-encoding drops) and one
        // after it.
        let mut pdu = ind.user_data.to_vec();
        pdu.extend(&payload[..1000]);
        let total = u16::try_from(pdu.len()).unwrap();
        pdu[..2].copy_from_slice(&total.to_le_bytes());
        let alone = target_io_on(pdu.clone(), ind.channel_id);
        let mut fresh = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
        (fresh.connect_initial_seen, fresh.client_info_seen, fresh.io_channel) = (true, true, f.io_channel);
        let control = fresh.from_target(&alone).unwrap();
        assert!(!carries(&control, &alone, &payload[..1000]), "control: alone, it is re-encoded");
        pdu.extend(&junk[..2000]);
        let sent = target_io_on(pdu, ind.channel_id);
        let verdict = f.from_target(&sent).unwrap();
        assert_eq!(verdict, Verdict::Refuse(TARGET_UNREADABLE), "the demand active and what follows");
        // (c) "Server Redirection anywhere in a message ends the session": one behind the
        // Demand Active and four bytes the filter cannot read crosses to the client.
        let mut pdu = ind.user_data.to_vec();
        pdu.extend([0xFF, 0xFF, 0x05, 0x00]);
        let redirection = server_redirection("10.6.6.6");
        pdu.extend(&redirection);
        let sent = target_io_on(pdu, ind.channel_id);
        let mut fresh = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
        (fresh.connect_initial_seen, fresh.client_info_seen, fresh.io_channel) = (true, true, f.io_channel);
        let verdict = fresh.from_target(&sent).unwrap();
        assert!(refused(&verdict), "a server redirection pdu reached the client: {verdict:?}");
        // Control: right behind the Demand Active, it ends the session.
        let mut pdu = ind.user_data.to_vec();
        pdu.extend(&redirection);
        let mut fresh = Filter::new(SecurityProtocol::HYBRID, Redirection::NONE, injection());
        (fresh.connect_initial_seen, fresh.client_info_seen, fresh.io_channel) = (true, true, f.io_channel);
        assert_eq!(fresh.from_target(&target_io_on(pdu, ind.channel_id)).unwrap(), Verdict::Refuse(REDIRECTED));
        return;
    }
    panic!("no demand active in the capture");
}

fn target_io_on(user_data: Vec<u8>, channel: u16) -> Vec<u8> {
    encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: channel, user_data: Cow::Owned(user_data) }))
        .unwrap()
}

/// An Enhanced Security Server Redirection PDU (MS-RDPBCGR 2.2.13.3.1) sending the client to
/// `address` (LB_TARGET_NET_ADDRESS).
fn server_redirection(address: &str) -> Vec<u8> {
    let mut target: Vec<u8> = address.encode_utf16().chain([0]).flat_map(u16::to_le_bytes).collect();
    let mut packet = 0x0400u16.to_le_bytes().to_vec();
    let length = 2 + 2 + 4 + 4 + 4 + target.len();
    packet.extend(u16::try_from(length).unwrap().to_le_bytes());
    packet.extend(0u32.to_le_bytes()); // sessionId
    packet.extend(0x0000_0001u32.to_le_bytes()); // LB_TARGET_NET_ADDRESS
    packet.extend(u32::try_from(target.len()).unwrap().to_le_bytes());
    packet.append(&mut target);
    let total = 6 + 2 + packet.len() + 1;
    let mut pdu = u16::try_from(total).unwrap().to_le_bytes().to_vec();
    pdu.extend(0x001Au16.to_le_bytes());
    pdu.extend(1002u16.to_le_bytes());
    pdu.extend([0, 0]);
    pdu.extend(packet);
    pdu.push(0);
    pdu
}
