//! The MCS layer around the Share Control PDUs, written by the box (red team `h-red17s`): the
//! domain PDUs in their connection phase only, once each, with the box's values; the target's
//! Connect Response re-encoded with the blocks a client reads; the client's self-description in
//! the Connect Initial replaced; the Monitor Layout the target sends rebuilt from the client's
//! monitors. (The client's Frame Acknowledges, only for frames the box numbered and the target
//! ended, are [`super::Frames`]'s; QoE timestamps are dropped with the fast-path input.)

use super::*;
use ironrdp_pdu::gcc::{
    ClientCoreData, ConferenceCreateResponse, EncryptionLevel, EncryptionMethod, ServerCoreData,
    ServerCoreOptionalData, ServerEarlyCapabilityFlags, ServerGccBlocks, ServerSecurityData,
};
use ironrdp_pdu::mcs::{
    AttachUserConfirm, AttachUserRequest, ChannelJoinConfirm, ChannelJoinRequest, DomainParameters, ErectDomainPdu,
};

pub const MCS_OUT_OF_PHASE: &str =
    "an mcs domain pdu out of its connection phase, repeated, or for a channel the connect response did not give";

/// Where the MCS connection sequence stands (MS-RDPBCGR 1.3.1.1: Erect Domain, Attach User,
/// Channel Joins): each PDU once, in order, before the Client Info.
#[derive(Debug, Default)]
pub(super) struct McsDomain {
    erected: bool,
    attach_requested: bool,
    /// The user id the target's Attach User Confirm gave.
    pub(super) user_id: Option<u16>,
    /// Channels the client asked to join and the target has not confirmed.
    pending: HashSet<u16>,
    /// Channels the client asked to join, ever.
    joined: HashSet<u16>,
}

fn mcs_out<T>(frame: &[u8], pdu: T) -> Verdict
where
    X224<T>: ironrdp_core::Encode,
{
    match encode_vec(&X224(pdu)) {
        Ok(bytes) if bytes == frame => Verdict::Forward,
        Ok(bytes) => Verdict::Replace(bytes),
        Err(_) => Verdict::Refuse(MCS_OUT_OF_PHASE),
    }
}

impl Filter {
    /// The MCS phase is open: the Connect Response passed, no Client Info and no activation yet.
    fn mcs_phase(&self) -> bool {
        self.io_channel.is_some() && !self.client_info_seen && !self.active
    }

    /// The channel ids a client may join: the I/O, static and message channels the Connect
    /// Response gave, and its user channel.
    fn joinable(&self, id: u16) -> bool {
        Some(id) == self.io_channel
            || Some(id) == self.message_channel
            || Some(id) == self.mcs.user_id
            || self.decisions.iter().any(|d| d.id == id)
    }

    /// A client's MCS domain PDU (not a Send Data Request).
    pub(super) fn mcs_from_client(&mut self, frame: &[u8], mcs: &McsMessage<'_>) -> Verdict {
        if let McsMessage::DisconnectProviderUltimatum(_) = mcs {
            return Verdict::Forward;
        }
        if !self.mcs_phase() {
            return Verdict::Refuse(MCS_OUT_OF_PHASE);
        }
        match mcs {
            McsMessage::ErectDomainRequest(_) if !self.mcs.erected && !self.mcs.attach_requested => {
                self.mcs.erected = true;
                // subHeight and subInterval: MS-RDPBCGR has them 0.
                mcs_out(frame, ErectDomainPdu { sub_height: 0, sub_interval: 0 })
            }
            McsMessage::AttachUserRequest(_) if !self.mcs.attach_requested => {
                self.mcs.attach_requested = true;
                mcs_out(frame, AttachUserRequest)
            }
            McsMessage::ChannelJoinRequest(join)
                if self.mcs.user_id == Some(join.initiator_id)
                    && self.joinable(join.channel_id)
                    && self.mcs.joined.insert(join.channel_id) =>
            {
                self.mcs.pending.insert(join.channel_id);
                mcs_out(frame, ChannelJoinRequest { initiator_id: join.initiator_id, channel_id: join.channel_id })
            }
            _ => Verdict::Refuse(MCS_OUT_OF_PHASE),
        }
    }

    /// A target's MCS domain PDU (not a Send Data Indication).
    pub(super) fn mcs_from_target(&mut self, frame: &[u8], mcs: &McsMessage<'_>) -> Verdict {
        if let McsMessage::DisconnectProviderUltimatum(_) = mcs {
            return Verdict::Forward;
        }
        if !self.mcs_phase() {
            return Verdict::Refuse(MCS_OUT_OF_PHASE);
        }
        match mcs {
            // The user id is the target's to choose (the client writes it in every PDU after), but
            // one, and none of a channel's.
            McsMessage::AttachUserConfirm(c)
                if self.mcs.attach_requested
                    && self.mcs.user_id.is_none()
                    && c.result == 0
                    && !self.joinable(c.initiator_id) =>
            {
                self.mcs.user_id = Some(c.initiator_id);
                mcs_out(frame, AttachUserConfirm { result: 0, initiator_id: c.initiator_id })
            }
            McsMessage::ChannelJoinConfirm(c)
                if c.result == 0
                    && Some(c.initiator_id) == self.mcs.user_id
                    && c.channel_id == c.requested_channel_id
                    && self.mcs.pending.remove(&c.requested_channel_id) =>
            {
                let confirm = ChannelJoinConfirm {
                    result: 0,
                    initiator_id: c.initiator_id,
                    requested_channel_id: c.channel_id,
                    channel_id: c.channel_id,
                };
                mcs_out(frame, confirm)
            }
            _ => Verdict::Refuse(MCS_OUT_OF_PHASE),
        }
    }
}

/// The domain parameters the client gets in the Connect Response: Windows' (MS-RDPBCGR 4.1.4).
fn box_domain_parameters() -> DomainParameters {
    DomainParameters {
        max_channel_ids: 34,
        max_user_ids: 3,
        max_token_ids: 0,
        num_priorities: 1,
        min_throughput: 0,
        max_height: 1,
        max_mcs_pdu_size: 65528,
        protocol_version: 2,
    }
}

/// The ConferenceCreateResponse's nodeID Windows, FreeRDP and xrdp write.
const GCC_NODE_ID: u16 = 0x79F3;

/// The RDP versions MS-RDPBCGR defines (2.2.1.4.2), lowest first.
const RDP_VERSIONS: std::ops::RangeInclusive<u32> = 0x0008_0004..=0x0008_0011;

/// The target's server blocks as the client gets them (red team `h-red17s`, hole 2): core (a
/// defined version, the defined protocol and early capability bits), network (the ids), security
/// saying "none" (the box's legs are TLS: no random, no certificate), the message channel;
/// blocks of other types and the multitransport block (the box removed the client's) stay on the
/// box.
pub(super) fn canonical_server_blocks(blocks: &ServerGccBlocks) -> ServerGccBlocks {
    let version = blocks.core.version.0;
    let version = if RDP_VERSIONS.contains(&version) {
        version
    } else if version > *RDP_VERSIONS.end() && version >> 16 == 0x0008 {
        *RDP_VERSIONS.end()
    } else {
        0x0008_0004
    };
    // The protocols MS-RDPBCGR defines (clients compare the field with what they asked for).
    let known = SecurityProtocol::SSL
        | SecurityProtocol::HYBRID
        | SecurityProtocol::RDSTLS
        | SecurityProtocol::HYBRID_EX
        | SecurityProtocol::RDSAAD;
    let early = ServerEarlyCapabilityFlags::EDGE_ACTIONS_SUPPORTED_V1
        | ServerEarlyCapabilityFlags::DYNAMIC_DST_SUPPORTED
        | ServerEarlyCapabilityFlags::EDGE_ACTIONS_SUPPORTED_V2
        | ServerEarlyCapabilityFlags::SKIP_CHANNELJOIN_SUPPORTED;
    let optional = &blocks.core.optional_data;
    ServerGccBlocks {
        core: ServerCoreData {
            version: ironrdp_pdu::gcc::RdpVersion(version),
            optional_data: ServerCoreOptionalData {
                client_requested_protocols: optional
                    .client_requested_protocols
                    .map(|p| SecurityProtocol::from_bits_retain(p.bits() & known.bits())),
                early_capability_flags: optional
                    .early_capability_flags
                    .map(|f| ServerEarlyCapabilityFlags::from_bits_retain(f.bits() & early.bits())),
            },
        },
        network: blocks.network.clone(),
        security: ServerSecurityData {
            encryption_method: EncryptionMethod::empty(),
            encryption_level: EncryptionLevel::None,
            server_random: None,
            server_cert: Vec::new(),
        },
        message_channel: blocks.message_channel.clone(),
        multi_transport_channel: None,
    }
}

/// The Connect Response the client gets: the box's fields around [`canonical_server_blocks`].
pub(super) fn canonical_connect_response(blocks: &ServerGccBlocks) -> Option<Vec<u8>> {
    let response = ConnectResponse {
        conference_create_response: ConferenceCreateResponse::new(GCC_NODE_ID, canonical_server_blocks(blocks)).ok()?,
        called_connect_id: 0,
        domain_parameters: box_domain_parameters(),
    };
    let data = encode_vec(&response).ok()?;
    encode_vec(&X224(X224Data { data: Cow::Owned(data) })).ok()
}

/// The client name every target is told (WTSClientName, CLIENTNAME, xrdp's client name).
pub const BOX_CLIENT_NAME: &str = "witness";
/// The client build every target is told: FreeRDP 2's.
const BOX_CLIENT_BUILD: u32 = 18363;
/// The keyboard layouts (KLIDs) a client's is kept as; any other is told as US English. A
/// layout is what the target types a scancode as, so it is the client's when it is a common one.
const KEYBOARD_LAYOUTS: [u32; 48] = [
    0x0000_0401,
    0x0000_0402,
    0x0000_0405,
    0x0000_0406,
    0x0000_0407,
    0x0000_0408,
    0x0000_0409,
    0x0000_040A,
    0x0000_040B,
    0x0000_040C,
    0x0000_040E,
    0x0000_040F,
    0x0000_0410,
    0x0000_0411,
    0x0000_0412,
    0x0000_0413,
    0x0000_0414,
    0x0000_0415,
    0x0000_0416,
    0x0000_0418,
    0x0000_0419,
    0x0000_041A,
    0x0000_041B,
    0x0000_041D,
    0x0000_041F,
    0x0000_0422,
    0x0000_0424,
    0x0000_0425,
    0x0000_0426,
    0x0000_0427,
    0x0000_0804,
    0x0000_0807,
    0x0000_0809,
    0x0000_080A,
    0x0000_080C,
    0x0000_0813,
    0x0000_0816,
    0x0000_0C0C,
    0x0000_100C,
    0x0000_1009,
    0x0001_0409,
    0x0002_0409,
    0x0001_0407,
    0x0001_040C,
    0x0001_0419,
    0x0000_0404,
    0x0000_0C04,
    0x0001_0416,
];

/// What the client says of itself in its core and cluster data, as the target gets it (red team
/// `h-red17s`, hole 3): the box's name, build, product ids and serial number, no IME file, a
/// keyboard of the defined types with a common layout (else US), 12 function keys, and no
/// redirected session to pick. Desktop size, colour depth and monitors stay the client's.
pub(super) fn rewrite_client_core(core: &mut ClientCoreData) {
    core.client_name = BOX_CLIENT_NAME.to_owned();
    core.client_build = BOX_CLIENT_BUILD;
    core.ime_file_name = String::new();
    if !KEYBOARD_LAYOUTS.contains(&core.keyboard_layout) {
        core.keyboard_layout = 0x0409;
    }
    // Keyboard types 1 to 7 (MS-RDPBCGR 2.2.1.3.2); subtypes are small OEM numbers (Japanese
    // and Korean keyboards: xrdp picks its keymap by them).
    if !(1..=7).contains(&core.keyboard_type.0) {
        core.keyboard_type = ironrdp_pdu::gcc::KeyboardType(4);
    }
    if core.keyboard_subtype > 0x0F {
        core.keyboard_subtype = 0;
    }
    core.keyboard_functional_keys_count = 12;
    let optional = &mut core.optional_data;
    if optional.client_product_id.is_some() {
        optional.client_product_id = Some(1);
    }
    if optional.serial_number.is_some() {
        optional.serial_number = Some(0);
    }
    if optional.dig_product_id.is_some() {
        optional.dig_product_id = Some(String::new());
    }
}

/// A Monitor Layout PDU body (MS-RDPBCGR 2.2.12.1): the client's monitors as its Client Monitor
/// Data gave them, or one of the desktop's size.
pub(super) fn monitor_layout_body(monitors: &[ironrdp_pdu::gcc::Monitor], desktop: (u16, u16)) -> Vec<u8> {
    let mut body = Vec::new();
    if monitors.is_empty() {
        body.extend(1u32.to_le_bytes());
        for v in [0, 0, i32::from(desktop.0) - 1, i32::from(desktop.1) - 1] {
            body.extend(v.to_le_bytes());
        }
        body.extend(1u32.to_le_bytes());
        return body;
    }
    body.extend(u32::try_from(monitors.len()).unwrap_or(0).to_le_bytes());
    for m in monitors {
        for v in [m.left, m.top, m.right, m.bottom] {
            body.extend(v.to_le_bytes());
        }
        // TS_MONITOR_PRIMARY, the one flag defined.
        body.extend((m.flags.bits() & 1).to_le_bytes());
    }
    body
}

pub const LAYOUT_REPEATED: &str = "the target sent a second monitor layout in one activation";
