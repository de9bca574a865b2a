//! What the relay changes in the PDUs it passes, without I/O: the server-selected protocol in the
//! MCS Connect Initial (the two legs may have negotiated different protocols), the Client Info
//! PDU (the target's credentials replace the box user's), virtual channels the grant does not
//! allow, and everything that would take the session around the box (Server Redirection,
//! multitransport/UDP).
//!
//! Every frame is one whole PDU as [`ironrdp_pdu::find_size`] cuts it. Fast-path frames (the bulk
//! of a session: screen updates and input) pass untouched without being decoded.

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::gcc::{ClientGccBlocks, ConferenceCreateRequest, RedirectionFlags};
use ironrdp_pdu::mcs::{ConnectInitial, ConnectResponse, McsMessage, SendDataIndication, SendDataRequest};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::client_info::{ClientInfoFlags, Credentials};
use ironrdp_pdu::rdp::headers::BasicSecurityHeaderFlags;
use ironrdp_pdu::rdp::{ClientInfoPdu, server_redirection};
use ironrdp_pdu::x224::{X224, X224Data};
use std::borrow::Cow;

/// Which redirections a grant allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirection {
    /// `cliprdr`: clipboard both ways.
    pub clipboard: bool,
    /// `rdpdr`: drives, and with them printers, ports and smart cards (one channel carries all).
    pub drives: bool,
}

impl Default for Redirection {
    fn default() -> Self {
        Self { clipboard: true, drives: false }
    }
}

/// The credential written into the Client Info PDU the target receives.
#[derive(Clone)]
pub struct Injection {
    pub username: String,
    pub domain: Option<String>,
    pub password: String,
}

impl std::fmt::Debug for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injection")
            .field("username", &self.username)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// What to do with one PDU.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    Replace(Vec<u8>),
    Drop,
    /// End the session: the PDU would take it around the box.
    Refuse(&'static str),
}

/// A virtual channel and whether the grant lets it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDecision {
    pub name: String,
    pub id: u16,
    pub allowed: bool,
}

/// A PDU the filter must understand but could not decode.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct FilterError {
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn err(what: &'static str) -> impl FnOnce(ironrdp_core::DecodeError) -> FilterError {
    move |e| FilterError { what, source: Box::new(e) }
}

fn enc_err(what: &'static str) -> impl FnOnce(ironrdp_core::EncodeError) -> FilterError {
    move |e| FilterError { what, source: Box::new(e) }
}

/// Per-session filter state; one instance sees both directions.
#[derive(Debug)]
pub struct Filter {
    target_protocol: SecurityProtocol,
    redirection: Redirection,
    injection: Injection,
    client_channels: Vec<String>,
    io_channel: Option<u16>,
    decisions: Vec<ChannelDecision>,
    connect_initial_seen: bool,
    client_info_seen: bool,
}

/// Whether a frame is an X.224 (slow-path) PDU; everything else is fast-path.
fn is_x224(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x03 == 0x03)
}

impl Filter {
    /// `target_protocol` is what the target selected in its Connection Confirm.
    pub fn new(target_protocol: SecurityProtocol, redirection: Redirection, injection: Injection) -> Self {
        Self {
            target_protocol,
            redirection,
            injection,
            client_channels: Vec::new(),
            io_channel: None,
            decisions: Vec::new(),
            connect_initial_seen: false,
            client_info_seen: false,
        }
    }

    /// The channel decisions, known once the target's Connect Response has passed.
    pub fn decisions(&self) -> &[ChannelDecision] {
        &self.decisions
    }

    /// Whether the target's Connect Response has passed (and with it the channel decisions).
    pub fn channels_known(&self) -> bool {
        self.io_channel.is_some()
    }

    fn blocked(&self, channel_id: u16) -> bool {
        self.decisions.iter().any(|d| d.id == channel_id && !d.allowed)
    }

    fn is_drdynvc(&self, channel_id: u16) -> bool {
        self.decisions.iter().any(|d| d.id == channel_id && d.name == "drdynvc")
    }

    fn allowed_name(&self, name: &str) -> bool {
        match name {
            "cliprdr" => self.redirection.clipboard,
            "rdpdr" => self.redirection.drives,
            _ => true,
        }
    }

    /// A PDU from the client on its way to the target.
    pub fn from_client(&mut self, frame: &[u8]) -> Result<Verdict, FilterError> {
        if !is_x224(frame) {
            return Ok(Verdict::Forward);
        }
        if !self.connect_initial_seen {
            self.connect_initial_seen = true;
            return self.connect_initial(frame).map(Verdict::Replace);
        }
        let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(frame) else {
            return Ok(Verdict::Forward);
        };
        if self.blocked(req.channel_id) {
            return Ok(Verdict::Drop);
        }
        if !self.client_info_seen && Some(req.channel_id) == self.io_channel && is_info_packet(&req.user_data) {
            self.client_info_seen = true;
            let mut pdu = decode::<ClientInfoPdu>(&req.user_data).map_err(err("client info pdu"))?;
            self.inject(&mut pdu);
            let user_data = encode_vec(&pdu).map_err(enc_err("client info pdu"))?;
            let out = SendDataRequest { user_data: Cow::Owned(user_data), ..req };
            return encode_vec(&X224(out)).map(Verdict::Replace).map_err(enc_err("send data request"));
        }
        // The user data runs to the end of the frame: patch it there, lengths unchanged.
        let at = frame.len() - req.user_data.len();
        if self.is_drdynvc(req.channel_id) {
            let mut out = frame.to_vec();
            if let Some(trimmed) = trim_gfx_caps(&mut out[at..]) {
                tracing::debug!(?trimmed, "graphics pipeline capabilities trimmed to what the box decodes");
                return Ok(Verdict::Replace(out));
            }
        }
        if self.client_info_seen && Some(req.channel_id) == self.io_channel {
            match client_share_pdu(&req.user_data) {
                Some(ClientShare::ConfirmActive) => {
                    let mut out = frame.to_vec();
                    let trimmed = trim_capabilities(&mut out[at..]);
                    tracing::debug!(?trimmed, "rdp capabilities trimmed to what the box decodes");
                    return Ok(Verdict::Replace(out));
                }
                // A minimised client stops the target's updates; the recording must not stop.
                Some(ClientShare::SuppressOutput) => return Ok(Verdict::Drop),
                None => {}
            }
        }
        Ok(Verdict::Forward)
    }

    /// A PDU from the target on its way to the client.
    pub fn from_target(&mut self, frame: &[u8]) -> Result<Verdict, FilterError> {
        if !is_x224(frame) {
            return Ok(Verdict::Forward);
        }
        if self.io_channel.is_none() {
            self.connect_response(frame)?;
            return Ok(Verdict::Forward);
        }
        let Ok(X224(McsMessage::SendDataIndication(ind))) = decode::<X224<McsMessage<'_>>>(frame) else {
            return Ok(Verdict::Forward);
        };
        if self.blocked(ind.channel_id) {
            return Ok(Verdict::Drop);
        }
        if Some(ind.channel_id) == self.io_channel {
            return Ok(io_channel_verdict(&ind));
        }
        Ok(Verdict::Forward)
    }

    fn connect_initial(&mut self, frame: &[u8]) -> Result<Vec<u8>, FilterError> {
        tracing::trace!(frame = %hex::encode(frame), "mcs connect initial from the client");
        let x224 = decode::<X224<X224Data<'_>>>(frame).map_err(err("mcs connect initial"))?;
        let mut initial = decode::<ConnectInitial>(&x224.0.data).map_err(err("mcs connect initial"))?;
        let mut blocks: ClientGccBlocks = initial.conference_create_request.into_gcc_blocks();
        // The client was told the protocol the box chose on its leg; the target must read its own.
        blocks.core.optional_data.server_selected_protocol = Some(self.target_protocol);
        // No redirection to another server and no UDP side transport: both would bypass the box.
        if let Some(cluster) = blocks.cluster.as_mut() {
            cluster.flags.remove(RedirectionFlags::REDIRECTION_SUPPORTED);
        }
        blocks.multi_transport_channel = None;
        self.client_channels = blocks
            .network
            .as_ref()
            .map(|n| n.channels.iter().map(|c| c.name.as_str().unwrap_or("").to_owned()).collect())
            .unwrap_or_default();
        initial.conference_create_request = ConferenceCreateRequest::new(blocks).map_err(err("gcc blocks"))?;
        let data = encode_vec(&initial).map_err(enc_err("mcs connect initial"))?;
        encode_vec(&X224(X224Data { data: Cow::Owned(data) })).map_err(enc_err("mcs connect initial"))
    }

    /// Learns the channel ids. The response passes unchanged: without the client's multitransport
    /// block (removed from the Connect Initial) the target offers no side transport.
    fn connect_response(&mut self, frame: &[u8]) -> Result<(), FilterError> {
        tracing::trace!(frame = %hex::encode(frame), "mcs connect response from the target");
        let x224 = decode::<X224<X224Data<'_>>>(frame).map_err(err("mcs connect response"))?;
        let response = decode::<ConnectResponse>(&x224.0.data).map_err(err("mcs connect response"))?;
        let blocks = response.conference_create_response.gcc_blocks();
        self.io_channel = Some(blocks.network.io_channel);
        self.decisions = self
            .client_channels
            .iter()
            .zip(&blocks.network.channel_ids)
            .map(|(name, &id)| ChannelDecision { name: name.clone(), id, allowed: self.allowed_name(name) })
            .collect();
        Ok(())
    }

    fn inject(&self, pdu: &mut ClientInfoPdu) {
        let info = &mut pdu.client_info;
        info.credentials = Credentials {
            username: self.injection.username.clone(),
            password: self.injection.password.clone(),
            domain: self.injection.domain.clone(),
        };
        info.password_cookie = None;
        // Auto-logon makes TLS-only targets (xrdp) log in with these credentials instead of
        // showing their own login screen; NLA targets already know the user from CredSSP.
        info.flags.insert(ClientInfoFlags::AUTOLOGON);
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ClientShare {
    ConfirmActive,
    SuppressOutput,
}

/// The client Share Control PDUs the filter changes, read from their headers.
fn client_share_pdu(data: &[u8]) -> Option<ClientShare> {
    const PDUTYPE_CONFIRMACTIVEPDU: u16 = 0x3;
    const PDUTYPE_DATAPDU: u16 = 0x7;
    const PDUTYPE2_SUPPRESS_OUTPUT: u8 = 35;
    // totalLength, pduType, pduSource; a licensing PDU has a security header here, whose
    // flagsHi (in pduType's place) is 0.
    let pdu_type = u16::from_le_bytes(data.get(2..4)?.try_into().ok()?) & 0x0F;
    match pdu_type {
        PDUTYPE_CONFIRMACTIVEPDU => Some(ClientShare::ConfirmActive),
        // Share Data Header: shareId, pad1, streamId, uncompressedLength, then pduType2.
        PDUTYPE_DATAPDU if *data.get(14)? == PDUTYPE2_SUPPRESS_OUTPUT => Some(ClientShare::SuppressOutput),
        _ => None,
    }
}

/// What [`trim_capabilities`] switched off in a Confirm Active.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Every drawing order (GDI orders, glyphs, cached bitmaps): the target sends bitmaps instead.
    pub orders: bool,
    /// Bitmap codecs the decoder lacks, by name (their GUID replaced with CODEC_GUID_IGNORE).
    pub codecs: Vec<&'static str>,
}

/// Switches off, in the client's Confirm Active (`data` starts at its Share Control header), what
/// the box's decoder cannot follow, by patching bytes in place: the order support array and
/// extra order flags are zeroed, and NSCodec is turned into the "ignore" codec.
pub fn trim_capabilities(data: &mut [u8]) -> Trimmed {
    const CAPSTYPE_ORDER: u16 = 0x0003;
    const CAPSETTYPE_BITMAP_CODECS: u16 = 0x001D;
    /// orderSupport (32 bytes) follows capability header, terminalDescriptor, pads and flags.
    const ORDER_SUPPORT: std::ops::Range<usize> = 36..68;
    const ORDER_SUPPORT_EX_FLAGS: std::ops::Range<usize> = 70..72;
    const GUID_NSCODEC: [u8; 16] =
        [0xb9, 0x1b, 0x8d, 0xca, 0x0f, 0x00, 0x4f, 0x15, 0x58, 0x9f, 0xae, 0x2d, 0x1a, 0x87, 0xe2, 0xd6];
    const GUID_IGNORE: [u8; 16] =
        [0xa6, 0x51, 0x43, 0x9c, 0x35, 0x35, 0xae, 0x42, 0x91, 0x0c, 0xcd, 0xfc, 0xe5, 0x76, 0x0b, 0x58];
    let mut trimmed = Trimmed::default();
    let u16_at = |d: &[u8], at: usize| d.get(at..at + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    // Share Control header (6), shareId (4), originatorId (2), lengthSourceDescriptor (2),
    // lengthCombinedCapabilities (2), sourceDescriptor, numberCapabilities (2), pad (2).
    let Some(source_len) = u16_at(data, 12) else { return trimmed };
    let Some(count) = u16_at(data, 16 + source_len) else { return trimmed };
    let mut at = 16 + source_len + 4;
    for _ in 0..count {
        let (Some(kind), Some(len)) = (u16_at(data, at), u16_at(data, at + 2)) else { break };
        if len < 4 || at + len > data.len() {
            break;
        }
        let set = &mut data[at..at + len];
        match kind as u16 {
            CAPSTYPE_ORDER if len >= ORDER_SUPPORT_EX_FLAGS.end => {
                set[ORDER_SUPPORT].fill(0);
                set[ORDER_SUPPORT_EX_FLAGS].fill(0);
                trimmed.orders = true;
            }
            CAPSETTYPE_BITMAP_CODECS if len > 4 => {
                let mut codec = 5;
                for _ in 0..set[4] {
                    let Some(props) = u16_at(set, codec + 17) else { break };
                    if set[codec..codec + 16] == GUID_NSCODEC {
                        set[codec..codec + 16].copy_from_slice(&GUID_IGNORE);
                        trimmed.codecs.push("nscodec");
                    }
                    codec += 19 + props;
                }
            }
            _ => {}
        }
        at += len;
    }
    trimmed
}

/// What [`trim_gfx_caps`] changed in a graphics pipeline Caps Advertise.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GfxTrimmed {
    /// Capability sets (by version) told that H.264 (AVC420/AVC444) is off.
    pub avc_off: Vec<u32>,
    /// Capability sets (by version) the target will pass over: version 10.1, which cannot say
    /// "no H.264", and versions newer than the box knows.
    pub hidden: Vec<u32>,
}

/// Graphics pipeline (MS-RDPEGFX) capability versions.
const GFX_V8: u32 = 0x0008_0004;
const GFX_V8_1: u32 = 0x0008_0105;
/// 10, 10.2, 10.3, 10.4, 10.5, 10.6, 10.6 (erratum), 10.7: a flags field with AVC_DISABLED.
const GFX_V10_FLAGS: [u32; 8] =
    [0x000A_0002, 0x000A_0200, 0x000A_0301, 0x000A_0400, 0x000A_0502, 0x000A_0600, 0x000A_0601, 0x000A_0701];

/// Switches H.264 off in the client's graphics pipeline Caps Advertise, which reaches the target
/// through `drdynvc` (`data` starts at the static channel PDU header), by patching bytes in place:
/// the box's decoder has no H.264, and a session coded in AVC would leave the video blank. In
/// 8.1 the AVC420 flag is cleared; in 10.x AVC_DISABLED is set and AVC thin client (a wish for
/// AVC) cleared; 10.1 (reserved bytes, no flags) and unknown versions get version 0, which the
/// target does not recognise and passes over. Returns `None` when `data` is not a whole, well-formed
/// Caps Advertise in one unfragmented, uncompressed channel PDU (then nothing is changed).
pub fn trim_gfx_caps(data: &mut [u8]) -> Option<GfxTrimmed> {
    const CHANNEL_FLAG_FIRST: u32 = 0x1;
    const CHANNEL_FLAG_LAST: u32 = 0x2;
    const CHANNEL_PACKET_COMPRESSED: u32 = 0x0020_0000;
    const DVC_DATA_FIRST: u8 = 0x2;
    const DVC_DATA: u8 = 0x3;
    const RDPGFX_CMDID_CAPSADVERTISE: u16 = 0x0012;
    const AVC420_ENABLED: u32 = 0x10;
    const AVC_DISABLED: u32 = 0x20;
    const AVC_THINCLIENT: u32 = 0x40;
    let u16_at = |d: &[u8], at: usize| d.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |d: &[u8], at: usize| d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    // CHANNEL_PDU_HEADER: length of the whole channel data, flags.
    let (length, flags) = (u32_at(data, 0)?, u32_at(data, 4)?);
    let whole = flags & (CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST) == CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST;
    if !whole || flags & CHANNEL_PACKET_COMPRESSED != 0 || length as usize != data.len() - 8 {
        return None;
    }
    // DVC header: cbChId (bits 0-1), Sp (bits 2-3), Cmd (bits 4-7); then the channel id and, in
    // a Data First PDU, the total length.
    let head = *data.get(8)?;
    let field = |code: u8| [1usize, 2, 4].get(code as usize).copied();
    let mut at = 9 + field(head & 3)?;
    match head >> 4 {
        DVC_DATA => {}
        DVC_DATA_FIRST => {
            let n = field((head >> 2) & 3)?;
            let total = match n {
                1 => u32::from(*data.get(at)?),
                2 => u32::from(u16_at(data, at)?),
                _ => u32_at(data, at)?,
            };
            at += n;
            if total as usize != data.len().checked_sub(at)? {
                return None;
            }
        }
        _ => return None,
    }
    // RDPGFX_HEADER (cmdId, flags, pduLength), capsSetCount, then the capability sets, which
    // must fill the PDU exactly.
    let pdu = &mut data[at..];
    if u16_at(pdu, 0)? != RDPGFX_CMDID_CAPSADVERTISE || u16_at(pdu, 2)? != 0 || u32_at(pdu, 4)? as usize != pdu.len() {
        return None;
    }
    let count = u16_at(pdu, 8)?;
    let mut sets = Vec::with_capacity(usize::from(count));
    let mut at = 10;
    for _ in 0..count {
        let (version, len) = (u32_at(pdu, at)?, u32_at(pdu, at + 4)? as usize);
        if at + 8 + len > pdu.len() {
            return None;
        }
        sets.push((at, version, len));
        at += 8 + len;
    }
    if at != pdu.len() {
        return None;
    }
    let mut trimmed = GfxTrimmed::default();
    for (at, version, len) in sets {
        let flags_at = at + 8;
        let flags = if len >= 4 { u32_at(pdu, flags_at) } else { None };
        let new = match (version, flags) {
            (GFX_V8, _) => continue,
            (GFX_V8_1, Some(f)) => f & !AVC420_ENABLED,
            (v, Some(f)) if GFX_V10_FLAGS.contains(&v) => (f | AVC_DISABLED) & !AVC_THINCLIENT,
            _ => {
                pdu[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
                trimmed.hidden.push(version);
                continue;
            }
        };
        pdu[flags_at..flags_at + 4].copy_from_slice(&new.to_le_bytes());
        trimmed.avc_off.push(version);
    }
    Some(trimmed)
}

fn is_info_packet(user_data: &[u8]) -> bool {
    user_data.len() >= 4
        && BasicSecurityHeaderFlags::from_bits_truncate(u16::from_le_bytes([user_data[0], user_data[1]]))
            .contains(BasicSecurityHeaderFlags::INFO_PKT)
}

/// Server Redirection (standard or enhanced security) and multitransport requests on the I/O
/// channel; everything else there passes.
fn io_channel_verdict(ind: &SendDataIndication<'_>) -> Verdict {
    let data = &ind.user_data;
    if data.len() >= 4 {
        let flags = u16::from_le_bytes([data[0], data[1]]);
        let flags_hi = u16::from_le_bytes([data[2], data[3]]);
        // A basic security header has flagsHi 0; a share control header has a PDU type there.
        if flags_hi == 0 && flags & BasicSecurityHeaderFlags::TRANSPORT_REQ.bits() != 0 {
            return Verdict::Drop;
        }
    }
    if matches!(server_redirection::decode_server_redirection(data), Ok(Some(_))) {
        return Verdict::Refuse("the target tried to redirect the client to another server");
    }
    // Enhanced security redirection: a share control header of type ServerRedirect (0xA).
    if data.len() >= 4 && u16::from_le_bytes([data[2], data[3]]) & 0x0F == 0x0A {
        return Verdict::Refuse("the target tried to redirect the client to another server");
    }
    Verdict::Forward
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injection() -> Injection {
        Injection { username: "root".into(), domain: Some("TGT".into()), password: "target-secret".into() }
    }

    #[test]
    fn fast_path_passes_without_decoding() {
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        // Fast-path output header (action 0) with a garbage body.
        assert_eq!(f.from_target(&[0x00, 0x05, 1, 2, 3]).unwrap(), Verdict::Forward);
        assert_eq!(f.from_client(&[0x04, 0x05, 1, 2, 3]).unwrap(), Verdict::Forward);
    }

    #[test]
    fn channel_names_decide() {
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        assert!(f.allowed_name("cliprdr"));
        assert!(!f.allowed_name("rdpdr"));
        assert!(f.allowed_name("rdpsnd"));
        f.redirection = Redirection { clipboard: false, drives: true };
        assert!(!f.allowed_name("cliprdr"));
        assert!(f.allowed_name("rdpdr"));
    }

    #[test]
    fn blocked_channel_data_is_dropped_both_ways() {
        let mut f = connected(&[("cliprdr", 1004, true), ("rdpdr", 1005, false)]);
        let req = |ch| send_data(ch, vec![1; 8]);
        let ind = |ch| {
            encode_vec(&X224(SendDataIndication {
                initiator_id: 1002,
                channel_id: ch,
                user_data: Cow::Owned(vec![1; 8]),
            }))
            .unwrap()
        };
        assert_eq!(f.from_client(&req(1005)).unwrap(), Verdict::Drop);
        assert_eq!(f.from_client(&req(1004)).unwrap(), Verdict::Forward);
        assert_eq!(f.from_target(&ind(1005)).unwrap(), Verdict::Drop);
        assert_eq!(f.from_target(&ind(1004)).unwrap(), Verdict::Forward);
    }

    /// A filter past the connection sequence: I/O channel 1003, these channels decided.
    fn connected(channels: &[(&str, u16, bool)]) -> Filter {
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        f.connect_initial_seen = true;
        f.io_channel = Some(1003);
        f.decisions = channels
            .iter()
            .map(|(name, id, allowed)| ChannelDecision { name: (*name).into(), id: *id, allowed: *allowed })
            .collect();
        f
    }

    /// The client's MCS Send Data Request carrying `user_data` on `channel`.
    fn send_data(channel: u16, user_data: Vec<u8>) -> Vec<u8> {
        encode_vec(&X224(SendDataRequest { initiator_id: 1007, channel_id: channel, user_data: Cow::Owned(user_data) }))
            .unwrap()
    }

    /// A client Share Control PDU on the I/O channel, as `encode_vec` of IronRDP lays it out.
    fn client_share(pdu: ironrdp_pdu::rdp::headers::ShareControlPdu) -> Vec<u8> {
        use ironrdp_pdu::rdp::headers::ShareControlHeader;
        let header = ShareControlHeader { share_control_pdu: pdu, pdu_source: 1007, share_id: 0x1_0000 };
        let user_data = encode_vec(&header).unwrap();
        send_data(1003, user_data)
    }

    #[test]
    fn confirm_active_loses_drawing_orders_and_nscodec_in_place() {
        use ironrdp_pdu::rdp::capability_sets::{
            BitmapCodecs, CapabilitySet, ClientConfirmActive, Codec, CodecProperty, DemandActive, NsCodec, Order,
            OrderFlags, OrderSupportExFlags, OrderSupportIndex,
        };
        use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
        let mut order = Order::new(
            OrderFlags::NEGOTIATE_ORDER_SUPPORT,
            OrderSupportExFlags::CACHE_BITMAP_REV3_SUPPORT,
            480 * 480,
            0,
        );
        for i in [OrderSupportIndex::DstBlt, OrderSupportIndex::MemBlt, OrderSupportIndex::Mem3Blt] {
            order.set_support_flag(i, true);
        }
        let nscodec = NsCodec { is_dynamic_fidelity_allowed: true, is_subsampling_allowed: true, color_loss_level: 3 };
        let confirm = ClientConfirmActive {
            originator_id: 1002,
            pdu: DemandActive {
                source_descriptor: "MSTSC".into(),
                capability_sets: vec![
                    CapabilitySet::Order(order),
                    CapabilitySet::BitmapCodecs(BitmapCodecs(vec![
                        Codec { id: 1, property: CodecProperty::NsCodec(nscodec) },
                        Codec { id: 0, property: CodecProperty::Ignore },
                    ])),
                ],
            },
        };
        let frame = client_share(ShareControlPdu::ClientConfirmActive(confirm));
        let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::default(), injection());
        (f.connect_initial_seen, f.client_info_seen, f.io_channel) = (true, true, Some(1003));
        let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("confirm active not patched") };
        assert_eq!(out.len(), frame.len(), "patched in place");
        let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else { panic!() };
        let header = decode::<ShareControlHeader>(&req.user_data).unwrap();
        let ShareControlPdu::ClientConfirmActive(confirm) = header.share_control_pdu else { panic!() };
        let mut sets = confirm.pdu.capability_sets.into_iter();
        let Some(CapabilitySet::Order(mut order)) = sets.next() else { panic!("order set lost") };
        for i in [OrderSupportIndex::DstBlt, OrderSupportIndex::MemBlt, OrderSupportIndex::Mem3Blt] {
            assert!(!order.get_support_flag(i), "an order is still offered");
        }
        let Some(CapabilitySet::BitmapCodecs(codecs)) = sets.next() else { panic!("codecs lost") };
        assert!(codecs.0.iter().all(|c| !matches!(c.property, CodecProperty::NsCodec(_))), "{codecs:?}");
        assert_eq!(codecs.0.len(), 2);
    }

    #[test]
    fn suppress_output_from_the_client_is_dropped_and_other_data_passes() {
        use ironrdp_pdu::rdp::headers::{
            CompressionFlags, ShareControlPdu, ShareDataHeader, ShareDataPdu, StreamPriority,
        };
        use ironrdp_pdu::rdp::suppress_output::SuppressOutputPdu;
        let data = |pdu| {
            client_share(ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: pdu,
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: ironrdp_pdu::rdp::client_info::CompressionType::K8,
            }))
        };
        let mut f = Filter::new(SecurityProtocol::HYBRID, Redirection::default(), injection());
        (f.connect_initial_seen, f.client_info_seen, f.io_channel) = (true, true, Some(1003));
        let minimised = data(ShareDataPdu::SuppressOutput(SuppressOutputPdu { desktop_rect: None }));
        assert_eq!(f.from_client(&minimised).unwrap(), Verdict::Drop);
        let refresh = data(ShareDataPdu::RefreshRectangle(ironrdp_pdu::rdp::refresh_rectangle::RefreshRectanglePdu {
            areas_to_refresh: vec![],
        }));
        assert_eq!(f.from_client(&refresh).unwrap(), Verdict::Forward);
    }

    #[test]
    fn multitransport_request_is_dropped() {
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        f.connect_initial_seen = true;
        f.io_channel = Some(1003);
        // Basic security header: flags TRANSPORT_REQ, flagsHi 0, then a request body.
        let mut body = vec![0x02, 0x00, 0x00, 0x00];
        body.extend_from_slice(&[0u8; 24]);
        let frame =
            encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1003, user_data: Cow::Owned(body) }))
                .unwrap();
        assert_eq!(f.from_target(&frame).unwrap(), Verdict::Drop);
    }

    #[test]
    fn enhanced_redirection_is_refused() {
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        f.connect_initial_seen = true;
        f.io_channel = Some(1003);
        // Share control header: totalLength, pduType 0x000A | version, then a redirection body.
        let body = vec![0x20, 0x00, 0x0A, 0x00, 0, 0, 0, 0];
        let frame =
            encode_vec(&X224(SendDataIndication { initiator_id: 1002, channel_id: 1003, user_data: Cow::Owned(body) }))
                .unwrap();
        assert!(matches!(f.from_target(&frame).unwrap(), Verdict::Refuse(_)));
    }

    #[test]
    fn client_info_gets_the_target_credential_and_autologon() {
        use ironrdp_pdu::rdp::client_info::{
            AddressFamily, ClientInfo, CompressionType, ExtendedClientInfo, ExtendedClientOptionalInfo,
        };
        use ironrdp_pdu::rdp::headers::BasicSecurityHeader;
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        f.connect_initial_seen = true;
        f.io_channel = Some(1003);
        let pdu = ClientInfoPdu {
            security_header: BasicSecurityHeader { flags: BasicSecurityHeaderFlags::INFO_PKT },
            client_info: ClientInfo {
                credentials: Credentials {
                    username: "alice@web01".into(),
                    password: "box-password".into(),
                    domain: None,
                },
                password_cookie: None,
                code_page: 0,
                flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE,
                compression_type: CompressionType::K8,
                alternate_shell: String::new(),
                work_dir: String::new(),
                extra_info: ExtendedClientInfo {
                    address_family: AddressFamily::INET,
                    address: "127.0.0.1".into(),
                    dir: "C:\\".into(),
                    optional_data: ExtendedClientOptionalInfo::default(),
                },
            },
        };
        let frame = encode_vec(&X224(SendDataRequest {
            initiator_id: 1007,
            channel_id: 1003,
            user_data: Cow::Owned(encode_vec(&pdu).unwrap()),
        }))
        .unwrap();
        let Verdict::Replace(out) = f.from_client(&frame).unwrap() else { panic!("client info not rewritten") };
        let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(&out).unwrap() else {
            panic!("not a send data request")
        };
        let info = decode::<ClientInfoPdu>(&req.user_data).unwrap().client_info;
        assert_eq!(info.credentials.username, "root");
        assert_eq!(info.credentials.password, "target-secret");
        assert_eq!(info.credentials.domain.as_deref(), Some("TGT"));
        assert!(info.flags.contains(ClientInfoFlags::AUTOLOGON | ClientInfoFlags::MOUSE));
        // The box user's password never reaches the target.
        assert!(!out.windows(b"box-password".len()).any(|w| w == b"box-password"));
        // Only the first Client Info is rewritten; later I/O traffic passes.
        assert_eq!(f.from_client(&frame).unwrap(), Verdict::Forward);
    }

    fn vector(text: &str) -> Vec<u8> {
        hex::decode(text.trim()).unwrap()
    }

    /// A real exchange: FreeRDP 2.11's Connect Initial and freerdp-shadow's Connect Response.
    #[test]
    fn connect_sequence_is_rewritten_and_channels_decided() {
        let initial = vector(include_str!("testdata/connect_initial_freerdp2.hex"));
        let response = vector(include_str!("testdata/connect_response_shadow2.hex"));
        let original = {
            let x224 = decode::<X224<X224Data<'_>>>(&initial).unwrap();
            decode::<ConnectInitial>(&x224.0.data).unwrap().conference_create_request.into_gcc_blocks()
        };
        assert_eq!(original.core.optional_data.server_selected_protocol, Some(SecurityProtocol::HYBRID));
        assert!(original.cluster.as_ref().unwrap().flags.contains(RedirectionFlags::REDIRECTION_SUPPORTED));
        let mut f = Filter::new(SecurityProtocol::SSL, Redirection::default(), injection());
        let Verdict::Replace(out) = f.from_client(&initial).unwrap() else { panic!("connect initial not rewritten") };
        let x224 = decode::<X224<X224Data<'_>>>(&out).unwrap();
        let blocks = decode::<ConnectInitial>(&x224.0.data).unwrap().conference_create_request.into_gcc_blocks();
        // The target reads the protocol it selected itself, not the one the box chose with the client.
        assert_eq!(blocks.core.optional_data.server_selected_protocol, Some(SecurityProtocol::SSL));
        assert!(!blocks.cluster.unwrap().flags.contains(RedirectionFlags::REDIRECTION_SUPPORTED));
        assert!(blocks.multi_transport_channel.is_none());
        // Everything else is as the client sent it.
        assert_eq!(blocks.network, original.network);
        assert_eq!(blocks.core.desktop_width, original.core.desktop_width);
        assert_eq!(blocks.core.client_name, original.core.client_name);

        assert!(!f.channels_known());
        assert_eq!(f.from_target(&response).unwrap(), Verdict::Forward);
        assert!(f.channels_known());
        let d = f.decisions();
        let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            original.network.unwrap().channels.iter().map(|c| c.name.as_str().unwrap()).collect::<Vec<_>>()
        );
        assert!(d.iter().all(|d| d.allowed == (d.name != "rdpdr")), "{d:?}");
        let ids: Vec<u16> = d.iter().map(|d| d.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "each channel gets its own id: {ids:?}");
    }

    /// A Caps Advertise as IronRDP's encoder writes it, in a DVC Data (or Data First) PDU on
    /// channel 7, in one static channel PDU.
    fn gfx_caps(caps: &[ironrdp_egfx::pdu::CapabilitySet], data_first: bool) -> Vec<u8> {
        use ironrdp_egfx::pdu::{CapabilitiesAdvertisePdu, GfxPdu};
        let pdu = encode_vec(&GfxPdu::CapabilitiesAdvertise(CapabilitiesAdvertisePdu::from_typed(caps))).unwrap();
        let mut dvc = if data_first {
            // Cmd 2, Sp 1 (a 2-byte length), cbChId 0 (a 1-byte id).
            let mut d = vec![0x24, 7];
            d.extend((pdu.len() as u16).to_le_bytes());
            d
        } else {
            vec![0x30, 7]
        };
        dvc.extend(pdu);
        let mut out = (dvc.len() as u32).to_le_bytes().to_vec();
        out.extend(3u32.to_le_bytes()); // CHANNEL_FLAG_FIRST | CHANNEL_FLAG_LAST
        out.extend(dvc);
        out
    }

    /// The capability sets IronRDP reads back from a patched channel PDU.
    fn read_caps(data: &[u8], data_first: bool) -> Vec<ironrdp_egfx::pdu::RawCapabilitySet> {
        use ironrdp_egfx::pdu::GfxPdu;
        let at = if data_first { 12 } else { 10 };
        match decode::<GfxPdu>(&data[at..]).unwrap() {
            GfxPdu::CapabilitiesAdvertise(pdu) => pdu.0,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn graphics_pipeline_caps_lose_h264_in_place() {
        use ironrdp_egfx::pdu::{
            CapabilitiesV8Flags, CapabilitiesV10Flags, CapabilitiesV81Flags, CapabilitiesV103Flags,
            CapabilitiesV104Flags, CapabilitiesV107Flags, CapabilitySet as C, CapabilityVersion,
        };
        // What FreeRDP's client offers with /gfx: every version, H.264 on where it can say so.
        let offered = [
            C::V8 { flags: CapabilitiesV8Flags::SMALL_CACHE },
            C::V8_1 { flags: CapabilitiesV81Flags::AVC420_ENABLED | CapabilitiesV81Flags::SMALL_CACHE },
            C::V10 { flags: CapabilitiesV10Flags::SMALL_CACHE },
            C::V10_1,
            C::V10_2 { flags: CapabilitiesV10Flags::SMALL_CACHE },
            C::V10_3 { flags: CapabilitiesV103Flags::AVC_THIN_CLIENT },
            C::V10_4 { flags: CapabilitiesV104Flags::SMALL_CACHE },
            C::V10_5 { flags: CapabilitiesV104Flags::SMALL_CACHE },
            C::V10_6 { flags: CapabilitiesV104Flags::SMALL_CACHE | CapabilitiesV104Flags::AVC_THIN_CLIENT },
            C::V10_6Err { flags: CapabilitiesV104Flags::SMALL_CACHE },
            C::V10_7 { flags: CapabilitiesV107Flags::SMALL_CACHE | CapabilitiesV107Flags::SCALEDMAP_DISABLE },
        ];
        for data_first in [false, true] {
            let original = gfx_caps(&offered, data_first);
            let mut data = original.clone();
            let trimmed = trim_gfx_caps(&mut data).expect("a caps advertise");
            assert_eq!(data.len(), original.len(), "lengths unchanged");
            assert_eq!(trimmed.hidden, vec![0x000A_0100]);
            assert_eq!(trimmed.avc_off.len(), 9, "{trimmed:?}");
            let caps = read_caps(&data, data_first);
            assert_eq!(caps.len(), offered.len());
            for (raw, before) in caps.iter().zip(&offered) {
                match (raw.parsed().unwrap(), before) {
                    (Some(C::V8 { flags }), C::V8 { flags: was }) => assert_eq!(flags, *was),
                    (Some(C::V8_1 { flags }), _) => {
                        assert_eq!(flags, CapabilitiesV81Flags::SMALL_CACHE, "AVC420 off, the rest kept")
                    }
                    (Some(C::V10 { flags } | C::V10_2 { flags }), _) => {
                        assert_eq!(flags, CapabilitiesV10Flags::SMALL_CACHE | CapabilitiesV10Flags::AVC_DISABLED)
                    }
                    (Some(C::V10_3 { flags }), _) => assert_eq!(flags, CapabilitiesV103Flags::AVC_DISABLED),
                    (Some(C::V10_4 { flags } | C::V10_5 { flags } | C::V10_6 { flags } | C::V10_6Err { flags }), _) => {
                        assert_eq!(flags, CapabilitiesV104Flags::SMALL_CACHE | CapabilitiesV104Flags::AVC_DISABLED)
                    }
                    (Some(C::V10_7 { flags }), _) => assert_eq!(
                        flags,
                        CapabilitiesV107Flags::SMALL_CACHE
                            | CapabilitiesV107Flags::SCALEDMAP_DISABLE
                            | CapabilitiesV107Flags::AVC_DISABLED
                    ),
                    (None, C::V10_1) => assert_eq!(raw.version, CapabilityVersion(0), "10.1 hidden"),
                    (after, before) => panic!("{before:?} became {after:?}"),
                }
            }
        }
    }

    #[test]
    fn anything_but_a_whole_caps_advertise_is_left_alone() {
        use ironrdp_egfx::pdu::{CapabilitiesV10Flags, CapabilitySet as C};
        let good = gfx_caps(&[C::V10 { flags: CapabilitiesV10Flags::empty() }], false);
        let unchanged = |mut d: Vec<u8>, why: &str| {
            let before = d.clone();
            assert_eq!(trim_gfx_caps(&mut d), None, "{why}");
            assert_eq!(d, before, "{why}");
        };
        let mut first_chunk_only = good.clone();
        first_chunk_only[4] = 1;
        unchanged(first_chunk_only, "a first chunk of a longer channel message");
        let mut compressed = good.clone();
        compressed[6] = 0x20;
        unchanged(compressed, "compressed channel data");
        let mut other_cmd = good.clone();
        other_cmd[10] = 0x0d; // RDPGFX_CMDID_FRAMEACKNOWLEDGE
        unchanged(other_cmd, "another graphics pipeline PDU");
        let mut create = good.clone();
        create[8] = 0x10; // DVC Create Request
        unchanged(create, "not a DVC data PDU");
        let mut more_sets = good.clone();
        more_sets[18] = 2; // capsSetCount says two; one follows
        unchanged(more_sets, "a set count the PDU does not hold");
        let mut short = good.clone();
        short.truncate(good.len() - 2);
        let length = (short.len() - 8) as u32;
        short[..4].copy_from_slice(&length.to_le_bytes());
        unchanged(short, "cut short");
        unchanged(good[..9].to_vec(), "headers only");
    }

    #[test]
    fn the_filter_patches_caps_on_drdynvc_only() {
        use ironrdp_egfx::pdu::{CapabilitiesV10Flags, CapabilitySet as C};
        let mut f = connected(&[("drdynvc", 1004, true), ("rdpsnd", 1005, true)]);
        let caps = gfx_caps(&[C::V10 { flags: CapabilitiesV10Flags::empty() }], false);
        let req = |ch| send_data(ch, caps.clone());
        let Verdict::Replace(out) = f.from_client(&req(1004)).unwrap() else { panic!("drdynvc caps not patched") };
        assert_eq!(out.len(), req(1004).len());
        let Ok(X224(McsMessage::SendDataRequest(r))) = decode::<X224<McsMessage<'_>>>(&out) else { panic!() };
        assert_eq!(read_caps(&r.user_data, false)[0].data, CapabilitiesV10Flags::AVC_DISABLED.bits().to_le_bytes());
        assert_eq!(f.from_client(&req(1005)).unwrap(), Verdict::Forward, "another channel passes as it is");
    }
}
