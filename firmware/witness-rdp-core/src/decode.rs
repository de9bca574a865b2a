//! A passive decoder of one RDP session: it is shown the PDUs the relay passes both ways and turns
//! the target's graphics into a screen image for the session video. It never produces anything for
//! the wire — the real client answers the target — so it can lag, fail or stop without touching
//! the session.
//!
//! It learns what IronRDP's `ActiveStage` needs from the observed connection sequence (client MCS
//! Connect Initial and Client Info; the target's Connect Response, Attach User Confirm and Demand
//! Active), builds the stage once the target finishes activation (Font Map) and then feeds it every
//! target-to-client fast-path PDU and every slow-path PDU on the I/O, message and `drdynvc`
//! channels. Every response the stage would send is dropped. Decoded: raw bitmaps, interleaved RLE,
//! RDP6 planar, RemoteFX surface commands and, through `drdynvc`, the graphics pipeline (EGFX
//! planar, ClearCodec, progressive, RemoteFX; an AVC420/444 frame stops the decoder: no H.264 decoder).
//! Not decoded: GDI drawing orders, NSCodec, compressed DVC data.

use ironrdp_core::decode;
use ironrdp_dvc::DrdynvcClient;
use ironrdp_egfx::client::{GraphicsPipelineClient, GraphicsPipelineHandler};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_pdu::Action;
use ironrdp_pdu::gcc::ChannelName;
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent};
use ironrdp_pdu::mcs::{ConnectInitial, ConnectResponse, McsMessage, SendDataIndicationCtx};
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{ShareControlPdu, ShareDataHeader, ShareDataPdu, decode_share_control};
use ironrdp_pdu::x224::{X224, X224Data};
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput};
use ironrdp_svc::StaticChannelSet;
use std::any::TypeId;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The largest desktop the decoder allocates an image for (a target chooses the size; 8K UHD
/// keeps one session's image near 130 MB).
const MAX_PIXELS: u32 = 7680 * 4320;
const MAX_SIDE: u16 = 8192;

/// Whether a desktop (or a graphics pipeline output or surface) of `width` × `height` is within
/// what the decoder holds: the filter refuses what the recorder would not draw.
pub fn desktop_fits(width: u16, height: u16) -> bool {
    width != 0
        && height != 0
        && width <= MAX_SIDE
        && height <= MAX_SIDE
        && u32::from(width) * u32::from(height) <= MAX_PIXELS
}

/// Why a PDU could not be decoded. After an error the image may be stale until the target redraws
/// (a refresh helps); once [`PassiveDecoder::is_stopped`] says so, nothing more will be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: {source}")]
    Pdu {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the connection sequence lacks {0}")]
    Sequence(&'static str),
    #[error("unusable desktop size {width}x{height}")]
    DesktopSize { width: u16, height: u16 },
    #[error("the decoder failed on an earlier pdu and stopped")]
    Stopped,
    #[error("the rdp decoder panicked on a pdu")]
    Panicked,
    #[error("the graphics pipeline sent a surface update the decoder could not draw")]
    GraphicsPipeline,
    /// What a real client draws and the stage would skip without an error: a gap in the video.
    #[error("the target sent {0}, which the decoder cannot draw")]
    Unrecorded(&'static str),
}

impl DecodeError {
    fn pdu(what: &'static str) -> impl FnOnce(ironrdp_core::DecodeError) -> Self {
        move |e| Self::Pdu { what, source: Box::new(e) }
    }
}

/// A rectangle of the screen: `x`, `y` of its top left corner, then its size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
}

impl Rect {
    fn from_inclusive(r: &InclusiveRectangle) -> Self {
        Self {
            x: r.left,
            y: r.top,
            width: r.right.saturating_sub(r.left).saturating_add(1),
            height: r.bottom.saturating_sub(r.top).saturating_add(1),
        }
    }

    pub fn union(self, other: Self) -> Self {
        let right = (u32::from(self.x) + u32::from(self.width)).max(u32::from(other.x) + u32::from(other.width));
        let bottom = (u32::from(self.y) + u32::from(self.height)).max(u32::from(other.y) + u32::from(other.height));
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        Self { x, y, width: clamp(right - u32::from(x)), height: clamp(bottom - u32::from(y)) }
    }
}

/// What one observed target PDU changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The desktop (re)started at this size, black until the target draws: a new video segment.
    Resized { width: u16, height: u16 },
    /// The image changed inside `dirty` (the union of the PDU's updates); read it with
    /// [`PassiveDecoder::screen`].
    Frame { dirty: Rect },
    /// The decoder dropped a malformed bitmap: the image is stale until the target redraws, so
    /// ask it for a refresh when the session allows.
    RefreshWanted,
    /// The target ended the session (Disconnect Provider Ultimatum) or announced it would (a
    /// graceful shutdown; what it draws after that is still decoded).
    Ended,
}

/// The current screen: `height` rows of `stride` bytes, 4 bytes a pixel in B, G, R, X order.
#[derive(Debug, Clone, Copy)]
pub struct Screen<'a> {
    pub width: u16,
    pub height: u16,
    pub stride: usize,
    pub bgrx: &'a [u8],
    /// What changed since the recorder last took a frame; `None`: anything may have.
    pub dirty: Option<Rect>,
    /// The target's pointer, drawn over `bgrx` by the recorder (not part of it).
    pub pointer: Option<Overlay<'a>>,
}

/// The target's pointer as the video shows it: drawn over the screen by the recorder at a quarter
/// of its opacity at most, so a pointer of the target's choosing can never hide what is beneath it —
/// a program of the session could set an opaque cursor where the client points, which a client
/// not drawing pointers never shows (red team `h-red17m`, hole 8). RGBA, not premultiplied,
/// `width × height` pixels, its top left corner at `x`, `y` (it may reach off the screen).
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    pub x: i32,
    pub y: i32,
    pub width: u16,
    pub height: u16,
    pub rgba: &'a [u8],
}

/// The highest alpha the video draws a pointer's pixel with (of 255): a quarter. At half, a
/// pointer that is the negative of the screen beneath blended it to flat grey (red team
/// `h-red17p`); at a quarter the screen keeps at least half its contrast whatever the picture.
pub const POINTER_MAX_ALPHA: u8 = 64;

/// The target's current pointer picture, alpha already capped ([`POINTER_MAX_ALPHA`]).
#[derive(Debug)]
struct Cursor {
    width: u16,
    height: u16,
    hot_x: u16,
    hot_y: u16,
    rgba: Vec<u8>,
    /// Which picture this is: a new one is drawn even at the same place.
    generation: u64,
}

impl Cursor {
    fn new(p: &ironrdp_graphics::pointer::DecodedPointer, generation: u64) -> Self {
        let mut rgba = p.bitmap_data.clone();
        for px in rgba.chunks_exact_mut(4) {
            px[3] = px[3].min(POINTER_MAX_ALPHA);
        }
        Self { width: p.width, height: p.height, hot_x: p.hotspot_x, hot_y: p.hotspot_y, rgba, generation }
    }
}

/// The MCS channels and share the session runs on, as the target assigned them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionIds {
    pub user_channel_id: u16,
    pub io_channel_id: u16,
    pub share_id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the target's first Demand Active.
    Connecting,
    /// Between a Demand Active and the target's Font Map, which ends (re)activation.
    Activating,
    Active,
    /// After Deactivate All, until the next Demand Active.
    Deactivated,
    Ended,
    Stopped,
}

/// Ignores EGFX events (the pipeline client composites into the session image by itself), but
/// counts surface updates it could not draw: a picture that went wrong through the pipeline does
/// not heal (codec contexts, caches and the compression history live on), so the decoder stops.
struct Passive {
    unhandled: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl GraphicsPipelineHandler for Passive {
    fn on_unhandled_pdu(&mut self, pdu: &ironrdp_egfx::pdu::GfxPdu) {
        if matches!(pdu, ironrdp_egfx::pdu::GfxPdu::WireToSurface1(_)) {
            self.unhandled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Slots the target fills from the client's persistent cache hold tiles from the client's
    /// disk, which the decoder never has: every Cache To Surface from one is drawn by the client
    /// alone (red team h-red17i). A reply that imports anything is a surface update the decoder
    /// cannot draw.
    fn on_cache_import_reply(&mut self, pdu: &ironrdp_egfx::pdu::CacheImportReplyPdu) {
        if !pdu.cache_slots.is_empty() {
            self.unhandled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Fails every H.264 frame. The box has no H.264 decoder, and IronRDP's pipeline client without
/// one skips an AVC420 frame with a debug line, while FreeRDP draws it whatever was negotiated
/// (red team h-red17i): with this one, each is a dropped surface update, which stops the decoder
/// (and so ends the session) like any other the pipeline could not draw.
struct NoH264;

impl ironrdp_egfx::decode::H264Decoder for NoH264 {
    fn decode(&mut self, _data: &[u8]) -> ironrdp_egfx::decode::DecoderResult<ironrdp_egfx::decode::DecodedFrame> {
        Err(ironrdp_egfx::decode::DecoderError::msg("the box decodes no h.264"))
    }
}

/// The passive decoder of one session. Feed it every whole PDU (as
/// [`ironrdp_pdu::find_size`] cuts them) in the order the relay passes them, from the first PDU
/// after CredSSP (the client's MCS Connect Initial) on.
pub struct PassiveDecoder {
    phase: Phase,
    client_channels: Vec<ChannelName>,
    client_desktop: Option<(u16, u16)>,
    compression: Option<CompressionType>,
    io_channel_id: Option<u16>,
    message_channel_id: Option<u16>,
    user_channel_id: Option<u16>,
    drdynvc_channel_id: Option<u16>,
    static_channels: Option<StaticChannelSet>,
    share_id: u32,
    stage: Option<ActiveStage>,
    image: Option<DecodedImage>,
    /// The size of the image last announced with [`Update::Resized`].
    announced: Option<(u16, u16)>,
    /// The client's last pointer position, which places the pointer drawn over the image.
    pointer: Option<(u16, u16)>,
    /// The target's pointer picture, when one is shown ([`Overlay`]).
    cursor: Option<Cursor>,
    cursor_visible: bool,
    /// The pointer as the recorder was last told of it (place, size, picture): a change makes
    /// both where it was and where it is dirty.
    overlay_told: Option<(Rect, u64)>,
    /// Whether the target accepts Refresh Rect (its General capability set says so).
    refresh_rect: bool,
    discarded_responses: u64,
    /// The client's typed keys, when the box records them.
    keys: Option<crate::keys::KeyTrack>,
    /// Graphics pipeline surface updates the handler saw and could not draw.
    gfx_unhandled: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The dynamic channel the `drdynvc` message being reassembled carries data for.
    dvc_message: Option<u32>,
    /// What of the target's fast-path PDUs the stage would skip in silence.
    audit: audit::FastPathAudit,
}

impl std::fmt::Debug for PassiveDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassiveDecoder")
            .field("phase", &self.phase)
            .field("io_channel_id", &self.io_channel_id)
            .field("user_channel_id", &self.user_channel_id)
            .field("share_id", &self.share_id)
            .field("announced", &self.announced)
            .finish_non_exhaustive()
    }
}

impl Default for PassiveDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a frame is an X.224 (slow-path) PDU; everything else is fast-path.
fn is_x224(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x03 == 0x03)
}

impl PassiveDecoder {
    pub fn new() -> Self {
        Self {
            phase: Phase::Connecting,
            client_channels: Vec::new(),
            client_desktop: None,
            compression: None,
            io_channel_id: None,
            message_channel_id: None,
            user_channel_id: None,
            drdynvc_channel_id: None,
            static_channels: None,
            share_id: 0,
            stage: None,
            image: None,
            announced: None,
            pointer: None,
            cursor: None,
            cursor_visible: false,
            overlay_told: None,
            refresh_rect: false,
            discarded_responses: 0,
            keys: None,
            gfx_unhandled: Default::default(),
            dvc_message: None,
            audit: audit::FastPathAudit::default(),
        }
    }

    /// Also reads the client's keyboard input as text ([`Self::take_typed`]).
    pub fn record_keys(&mut self) {
        self.keys = Some(crate::keys::KeyTrack::default());
    }

    /// What the client typed since the last call (`None`: keys are not recorded).
    pub fn take_typed(&mut self) -> Option<String> {
        self.keys.as_mut().map(crate::keys::KeyTrack::take)
    }

    /// Whether the decoder gave up for good (a broken connection sequence or a panic in a codec);
    /// every later call returns [`DecodeError::Stopped`].
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The current screen, once the target has activated the session.
    pub fn screen(&self) -> Option<Screen<'_>> {
        let image = self.image.as_ref()?;
        Some(Screen {
            width: image.width(),
            height: image.height(),
            stride: image.stride(),
            bgrx: image.data(),
            dirty: None,
            pointer: self.overlay(),
        })
    }

    /// The channels and share, once the session is active: what a Refresh Rect PDU needs.
    pub fn session_ids(&self) -> Option<SessionIds> {
        Some(SessionIds {
            user_channel_id: self.user_channel_id?,
            io_channel_id: self.io_channel_id?,
            share_id: (self.stage.is_some()).then_some(self.share_id)?,
        })
    }

    /// A Refresh Rect PDU for the whole desktop, as the client would send it, when the session is
    /// active and the target accepts one: what the relay injects when the decoder lost track.
    pub fn refresh_request(&self) -> Option<Vec<u8>> {
        let (stage, image) = (self.stage.as_ref()?, self.image.as_ref()?);
        if self.phase != Phase::Active || !self.refresh_rect {
            return None;
        }
        // Suppress Output is left alone: the client uses it for its own minimise/restore.
        let frames = stage.request_full_redraw(image.width(), image.height(), true, false).ok()?;
        frames.into_iter().next()
    }

    /// A PDU from the client on its way to the target (as the client sent it, or as the filter
    /// rewrote it: either serves).
    pub fn observe_client(&mut self, frame: &[u8]) -> Result<(), DecodeError> {
        match self.phase {
            Phase::Stopped => return Err(DecodeError::Stopped),
            Phase::Ended => return Ok(()),
            _ => {}
        }
        // Client PDUs are only parsed, never decoded into the image; still, no panic gets out.
        catch_unwind(AssertUnwindSafe(|| self.client(frame))).unwrap_or_else(|_| {
            self.stop();
            Err(DecodeError::Panicked)
        })
    }

    fn client(&mut self, frame: &[u8]) -> Result<(), DecodeError> {
        if let Some(keys) = self.keys.as_mut() {
            keys.observe_client(frame);
        }
        if let Some(at) = last_pointer(frame) {
            self.pointer = Some(at);
        }
        if !is_x224(frame) {
            return Ok(());
        }
        if self.io_channel_id.is_none() && self.client_desktop.is_none() {
            // Only the first slow-path client PDU can be the Connect Initial.
            if let Some(initial) = connect_initial(frame) {
                let blocks = initial.conference_create_request.gcc_blocks();
                self.client_desktop = Some((blocks.core.desktop_width, blocks.core.desktop_height));
                if let Some(keys) = self.keys.as_mut() {
                    keys.set_layout(blocks.core.keyboard_layout);
                }
                self.client_channels = blocks
                    .network
                    .as_ref()
                    .map(|n| n.channels.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default();
                tracing::debug!(channels = self.client_channels.len(), "rdp decoder saw the connect initial");
            }
            return Ok(());
        }
        if self.compression.is_none()
            && let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(frame)
            && Some(req.channel_id) == self.io_channel_id
        {
            self.compression = client_info_compression(&req.user_data).unwrap_or(self.compression);
        }
        Ok(())
    }

    /// A PDU from the target on its way to the client. Returns what changed on the screen.
    pub fn observe_target(&mut self, frame: &[u8]) -> Result<Vec<Update>, DecodeError> {
        match self.phase {
            Phase::Stopped => return Err(DecodeError::Stopped),
            Phase::Ended => return Ok(Vec::new()),
            _ => {}
        }
        // IronRDP's codecs are not built for hostile input; a panic there must not take the relay
        // task (or the box) with it. The stage's state is unknown afterwards: stop for good.
        match catch_unwind(AssertUnwindSafe(|| self.target(frame))) {
            Ok(Ok(updates)) => Ok(updates),
            Ok(Err(e)) => {
                if matches!(self.phase, Phase::Connecting | Phase::Activating)
                    && self.stage.is_none()
                    && !matches!(e, DecodeError::Unrecorded(_))
                {
                    // Without the connection sequence nothing later can be decoded.
                    self.stop();
                }
                Err(e)
            }
            Err(_) => {
                self.stop();
                Err(DecodeError::Panicked)
            }
        }
    }

    fn stop(&mut self) {
        self.phase = Phase::Stopped;
        self.stage = None;
    }

    fn target(&mut self, frame: &[u8]) -> Result<Vec<Update>, DecodeError> {
        let x224 = is_x224(frame);
        // A real client draws whatever arrives once it has a desktop, in every state of a
        // (re)activation (FreeRDP reads fast-path, Data PDUs and static channels in its
        // finalization states too): nothing the target draws is left out for the phase it
        // comes in, and what cannot be drawn is a gap, never a silent drop.
        match self.phase {
            Phase::Connecting if x224 && self.is_drdynvc(frame) => {
                Err(DecodeError::Unrecorded("dynamic channel data before the desktop was announced"))
            }
            Phase::Connecting if x224 => self.connecting(frame).map(|()| Vec::new()),
            Phase::Connecting => Err(DecodeError::Unrecorded("screen updates before the desktop was announced")),
            Phase::Activating | Phase::Deactivated | Phase::Active if x224 && self.is_io(frame) => self.io_pdu(frame),
            // Graphics (or the graphics pipeline's channel) before a Font Map: the target is
            // drawing, so the session is active (again).
            Phase::Activating if !x224 || self.is_drdynvc(frame) => {
                self.activate()?;
                let mut updates = self.take_resize();
                if x224 {
                    updates.extend(self.process(Action::X224, frame)?);
                } else {
                    updates.extend(self.fast_path(frame)?);
                }
                Ok(updates)
            }
            // After Deactivate All the client keeps drawing on the desktop it has.
            Phase::Active | Phase::Deactivated if !x224 => self.fast_path(frame),
            Phase::Active if self.stage_channel(frame) => self.process(Action::X224, frame),
            Phase::Deactivated if self.is_drdynvc(frame) => self.process(Action::X224, frame),
            Phase::Activating | Phase::Deactivated | Phase::Active if is_disconnect(frame) => {
                self.phase = Phase::Ended;
                Ok(vec![Update::Ended])
            }
            _ => Ok(Vec::new()),
        }
    }

    /// A fast-path PDU from the target, drawn; what of it the stage skipped is then a gap.
    fn fast_path(&mut self, frame: &[u8]) -> Result<Vec<Update>, DecodeError> {
        self.audit.desktop = self.image.as_ref().map(|i| (i.width(), i.height()));
        let audit = self.audit.check(frame);
        let updates = self.process(Action::FastPath, frame)?;
        audit.map_err(DecodeError::Unrecorded)?;
        Ok(updates)
    }

    /// The connection sequence up to the first Demand Active.
    fn connecting(&mut self, frame: &[u8]) -> Result<(), DecodeError> {
        if self.io_channel_id.is_none() {
            let Some(response) = connect_response(frame) else { return Ok(()) };
            let blocks = response.conference_create_response.gcc_blocks();
            if blocks.network.channel_ids.len() != self.client_channels.len() {
                return Err(DecodeError::Sequence("a channel id for each channel the client asked for"));
            }
            self.io_channel_id = Some(blocks.network.io_channel);
            if let Some(keys) = self.keys.as_mut() {
                keys.set_io_channel(blocks.network.io_channel);
            }
            self.message_channel_id = blocks.message_channel.as_ref().map(|m| m.mcs_message_channel_id);
            self.static_channels = Some(self.channel_set(&blocks.network.channel_ids));
            tracing::debug!(io_channel = blocks.network.io_channel, "rdp decoder saw the connect response");
            return Ok(());
        }
        if self.user_channel_id.is_none() {
            if let Ok(X224(McsMessage::AttachUserConfirm(confirm))) = decode::<X224<McsMessage<'_>>>(frame) {
                self.user_channel_id = Some(confirm.initiator_id);
            }
            return Ok(());
        }
        if self.is_io(frame) {
            self.io_pdu(frame)?;
        }
        Ok(())
    }

    /// The static channels with the ones the stage handles: `drdynvc` carries the graphics
    /// pipeline; the others are never given to the stage.
    fn channel_set(&mut self, ids: &[u16]) -> StaticChannelSet {
        let mut set = StaticChannelSet::new();
        for (name, &id) in self.client_channels.iter().zip(ids) {
            if *name == DrdynvcClient::NAME && self.drdynvc_channel_id.is_none() {
                let gfx = GraphicsPipelineClient::new(
                    Box::new(Passive { unhandled: self.gfx_unhandled.clone() }),
                    Some(Box::new(NoH264)),
                );
                set.insert(DrdynvcClient::new().with_dynamic_channel(gfx));
                set.attach_channel_id(TypeId::of::<DrdynvcClient>(), id);
                self.drdynvc_channel_id = Some(id);
            }
        }
        set
    }

    fn is_io(&self, frame: &[u8]) -> bool {
        ironrdp_pdu::mcs::decode_send_data_indication(frame).is_ok_and(|ctx| Some(ctx.channel_id) == self.io_channel_id)
    }

    fn is_drdynvc(&self, frame: &[u8]) -> bool {
        self.drdynvc_channel_id.is_some()
            && ironrdp_pdu::mcs::decode_send_data_indication(frame)
                .is_ok_and(|ctx| Some(ctx.channel_id) == self.drdynvc_channel_id)
    }

    fn stage_channel(&self, frame: &[u8]) -> bool {
        ironrdp_pdu::mcs::decode_send_data_indication(frame).is_ok_and(|ctx| {
            Some(ctx.channel_id) == self.message_channel_id || Some(ctx.channel_id) == self.drdynvc_channel_id
        })
    }

    /// A PDU on the I/O channel: (re)activation PDUs are ours, everything else goes to the stage.
    fn io_pdu(&mut self, frame: &[u8]) -> Result<Vec<Update>, DecodeError> {
        let ctx =
            ironrdp_pdu::mcs::decode_send_data_indication(frame).map_err(DecodeError::pdu("send data indication"))?;
        let user_data = ctx.user_data;
        let mut activation = false;
        let mut other = false;
        // Bitmaps, palettes, pointers (or a compressed Data PDU that may be one).
        let mut screen = false;
        for part in share_control_parts(ctx) {
            match part.map(|p| (p.share_id, p.pdu)) {
                Ok((share_id, ShareControlPdu::ServerDemandActive(demand))) => {
                    activation = true;
                    self.demand_active(share_id, &demand.pdu.capability_sets)?;
                }
                Ok((_, ShareControlPdu::Data(ShareDataHeader { share_data_pdu, .. }))) => match share_data_pdu {
                    ShareDataPdu::FontMap(_) if self.phase == Phase::Activating => {
                        activation = true;
                        self.activate()?;
                    }
                    ShareDataPdu::Synchronize(_) | ShareDataPdu::Control(_) | ShareDataPdu::FontMap(_) => {
                        activation = true;
                    }
                    ShareDataPdu::Update(_) | ShareDataPdu::Pointer(_) | ShareDataPdu::Compressed { .. } => {
                        other = true;
                        screen = true;
                    }
                    _ => other = true,
                },
                Ok((_, ShareControlPdu::ServerDeactivateAll(_))) => {
                    activation = true;
                    if self.phase == Phase::Active {
                        self.phase = Phase::Deactivated;
                    }
                }
                _ => other = true,
            }
        }
        let mut updates = self.take_resize();
        if !other && activation {
            return Ok(updates);
        }
        match self.phase {
            Phase::Active => {}
            // The client draws these before a Font Map too, and after a Deactivate All.
            Phase::Activating if screen => {
                self.activate()?;
                updates.extend(self.take_resize());
            }
            Phase::Deactivated if screen => {}
            _ => return Ok(updates),
        }
        let audit = audit::slow_path(user_data, self.image.as_ref().map(|i| (i.width(), i.height())));
        updates.extend(self.process(Action::X224, frame)?);
        audit.map_err(DecodeError::Unrecorded)?;
        Ok(updates)
    }

    fn demand_active(&mut self, share_id: u32, caps: &[CapabilitySet]) -> Result<(), DecodeError> {
        let size = caps
            .iter()
            .find_map(|c| match c {
                CapabilitySet::Bitmap(b) => Some((b.desktop_width, b.desktop_height)),
                _ => None,
            })
            .or(self.client_desktop)
            .ok_or(DecodeError::Sequence("a desktop size"))?;
        let (width, height) = size;
        if !desktop_fits(width, height) {
            return Err(DecodeError::DesktopSize { width, height });
        }
        self.refresh_rect = caps.iter().any(|c| matches!(c, CapabilitySet::General(g) if g.refresh_rect_support));
        tracing::debug!(share_id, width, height, refresh_rect = self.refresh_rect, "rdp decoder saw a demand active");
        self.share_id = share_id;
        if self.image.as_ref().is_none_or(|i| (i.width(), i.height()) != size) {
            self.image = Some(DecodedImage::new(PixelFormat::BgrX32, width, height));
        }
        self.phase = Phase::Activating;
        Ok(())
    }

    /// The target finished (re)activation: build the stage on the first, re-key it afterwards.
    fn activate(&mut self) -> Result<(), DecodeError> {
        let user_channel_id = self.user_channel_id.ok_or(DecodeError::Sequence("an attach user confirm"))?;
        let io_channel_id = self.io_channel_id.ok_or(DecodeError::Sequence("a connect response"))?;
        if self.image.is_none() {
            return Err(DecodeError::Sequence("a demand active"));
        }
        match self.stage.as_mut() {
            None => {
                let static_channels = self.static_channels.take().unwrap_or_default();
                self.stage = Some(
                    ActiveStageBuilder {
                        static_channels,
                        user_channel_id,
                        io_channel_id,
                        message_channel_id: self.message_channel_id,
                        share_id: self.share_id,
                        compression_type: self.compression,
                        // The pointer is drawn over the image by the recorder ([`Overlay`]).
                        enable_server_pointer: true,
                        pointer_software_rendering: false,
                    }
                    .build(),
                );
            }
            Some(stage) => {
                let chunk = stage.static_channel_chunk_size();
                // The pointer stays beside the image after a reactivation too (red team
                // `h-red17p`: `true` here drew it into the recorded screen again).
                if !stage.reactivate(io_channel_id, user_channel_id, self.share_id, true, false, chunk) {
                    return Err(DecodeError::Sequence("a usable virtual channel chunk size"));
                }
            }
        }
        self.phase = Phase::Active;
        tracing::debug!(share_id = self.share_id, "rdp decoder active");
        Ok(())
    }

    /// [`Update::Resized`] when the image's size differs from the one last announced.
    fn take_resize(&mut self) -> Vec<Update> {
        let Some(image) = self.image.as_ref() else { return Vec::new() };
        let size = (image.width(), image.height());
        if self.phase == Phase::Active && self.announced != Some(size) {
            self.announced = Some(size);
            return vec![Update::Resized { width: size.0, height: size.1 }];
        }
        Vec::new()
    }

    fn process(&mut self, action: Action, frame: &[u8]) -> Result<Vec<Update>, DecodeError> {
        let gfx_frame = action == Action::X224 && self.carries_gfx(frame);
        let (Some(stage), Some(image)) = (self.stage.as_mut(), self.image.as_mut()) else {
            return Ok(Vec::new());
        };
        let gfx_before = gfx_failures(stage, &self.gfx_unhandled);
        let outputs = match stage.process(image, action, frame, None) {
            Ok(outputs) => outputs,
            // The pipeline's compression history and surfaces are now out of step with the
            // target's: everything it draws later could be wrong without an error.
            Err(_) if gfx_frame => {
                self.stop();
                return Err(DecodeError::GraphicsPipeline);
            }
            Err(e) => return Err(DecodeError::Pdu { what: "rdp session pdu", source: Box::new(e) }),
        };
        if gfx_failures(stage, &self.gfx_unhandled) > gfx_before {
            // A surface update the pipeline could not draw leaves that surface wrong for good (a
            // refresh does not reach codec contexts or caches): the picture cannot be trusted.
            self.stop();
            return Err(DecodeError::GraphicsPipeline);
        }
        let mut dirty: Option<Rect> = None;
        let mut updates = Vec::new();
        for output in outputs {
            match output {
                // The real client answers the target; the decoder never sends.
                ActiveStageOutput::ResponseFrame(bytes) if !bytes.is_empty() => self.discarded_responses += 1,
                ActiveStageOutput::GraphicsUpdate(r) => {
                    let r = Rect::from_inclusive(&r);
                    dirty = Some(dirty.map_or(r, |d| d.union(r)));
                }
                ActiveStageOutput::DeactivateAll => self.phase = Phase::Deactivated,
                ActiveStageOutput::PointerBitmap(p) => {
                    let generation = self.cursor.as_ref().map_or(0, |c| c.generation + 1);
                    self.cursor = Some(Cursor::new(&p, generation));
                    self.cursor_visible = true;
                }
                ActiveStageOutput::PointerHidden | ActiveStageOutput::PointerDefault => self.cursor_visible = false,
                ActiveStageOutput::PointerPosition { x, y } => self.pointer = Some((x, y)),
                // Decoding goes on: a client keeps drawing after Shutdown Denied or Set Error
                // Info (which IronRDP calls an end), until the connection closes; only the
                // Disconnect Provider Ultimatum ends it (`target`).
                ActiveStageOutput::Terminate(reason) => {
                    tracing::debug!(reason = %reason.description(), "rdp decoder saw the target announce the end");
                    updates.push(Update::Ended);
                }
                _ => {}
            }
        }
        if stage.take_bitmap_recovery_request() {
            updates.push(Update::RefreshWanted);
        }
        // EGFX Reset Graphics resizes the image inside the stage.
        let size = (image.width(), image.height());
        if self.announced.is_some_and(|a| a != size) {
            self.announced = Some(size);
            updates.insert(0, Update::Resized { width: size.0, height: size.1 });
        }
        if let Some(moved) = self.overlay_moved() {
            dirty = Some(dirty.map_or(moved, |d| d.union(moved)));
        }
        if let Some(dirty) = dirty {
            updates.push(Update::Frame { dirty });
        }
        Ok(updates)
    }

    /// The pointer the video shows now, when one is.
    fn overlay(&self) -> Option<Overlay<'_>> {
        let (cursor, (x, y)) = (self.cursor.as_ref().filter(|_| self.cursor_visible)?, self.pointer?);
        if cursor.width == 0 || cursor.height == 0 {
            return None;
        }
        Some(Overlay {
            x: i32::from(x) - i32::from(cursor.hot_x),
            y: i32::from(y) - i32::from(cursor.hot_y),
            width: cursor.width,
            height: cursor.height,
            rgba: &cursor.rgba,
        })
    }

    /// The part of the screen the pointer covers, and which picture it is.
    fn overlay_place(&self) -> Option<(Rect, u64)> {
        let image = self.image.as_ref()?;
        let o = self.overlay()?;
        let clip = |from: i32, len: u16, max: u16| {
            let start = from.clamp(0, i32::from(max));
            let end = (from + i32::from(len)).clamp(0, i32::from(max));
            (start as u16, (end - start) as u16)
        };
        let (x, width) = clip(o.x, o.width, image.width());
        let (y, height) = clip(o.y, o.height, image.height());
        let generation = self.cursor.as_ref().map_or(0, |c| c.generation);
        (width > 0 && height > 0).then_some((Rect { x, y, width, height }, generation))
    }

    /// Where the video must be redrawn because the pointer moved, changed or went since the
    /// recorder was last told: both where it was and where it is.
    fn overlay_moved(&mut self) -> Option<Rect> {
        let now = self.overlay_place();
        if now == self.overlay_told {
            return None;
        }
        let before = std::mem::replace(&mut self.overlay_told, now);
        match (before, now) {
            (Some((a, _)), Some((b, _))) => Some(a.union(b)),
            (Some((r, _)), None) | (None, Some((r, _))) => Some(r),
            (None, None) => None,
        }
    }

    /// The client's pointer is at `x`, `y` (the latest position the relay saw, which may be newer
    /// than the input the decoder was shown): the pointer drawn over the image moves there now,
    /// not at the target's next update — a still screen would keep it where it was.
    pub fn set_pointer(&mut self, x: u16, y: u16) -> Result<Vec<Update>, DecodeError> {
        if self.phase == Phase::Stopped {
            return Err(DecodeError::Stopped);
        }
        self.pointer = Some((x, y));
        if self.phase != Phase::Active {
            return Ok(Vec::new());
        }
        Ok(self.overlay_moved().map(|dirty| Update::Frame { dirty }).into_iter().collect())
    }

    /// The client's pointer position as the decoder last learnt it.
    pub fn pointer(&self) -> Option<(u16, u16)> {
        self.pointer
    }

    /// Whether a slow-path PDU carries (a chunk of) the graphics pipeline's data.
    fn carries_gfx(&mut self, frame: &[u8]) -> bool {
        const CHANNEL_FLAG_FIRST: u32 = 0x1;
        const CHANNEL_FLAG_LAST: u32 = 0x2;
        let Ok(ctx) = ironrdp_pdu::mcs::decode_send_data_indication(frame) else { return false };
        if self.drdynvc_channel_id != Some(ctx.channel_id) {
            return false;
        }
        let Some(flags) = ctx.user_data.get(4..8).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) else {
            return false;
        };
        if flags & CHANNEL_FLAG_FIRST != 0 {
            self.dvc_message = dvc_data_channel(ctx.user_data);
        }
        let gfx = self.stage.as_ref().and_then(|s| s.get_dvc::<GraphicsPipelineClient>()).map(|c| c.channel_id());
        let carries = gfx.is_some() && self.dvc_message == gfx;
        if flags & CHANNEL_FLAG_LAST != 0 {
            self.dvc_message = None;
        }
        carries
    }

    /// How many responses the stage produced and the decoder dropped (for tests and logs).
    pub fn discarded_responses(&self) -> u64 {
        self.discarded_responses
    }
}

/// The dynamic channel a `drdynvc` message's first chunk (channel PDU header, then the DVC
/// header) carries data for; `None`: not data.
fn dvc_data_channel(user_data: &[u8]) -> Option<u32> {
    const DATA_FIRST: u8 = 0x2;
    const DATA: u8 = 0x3;
    let header = *user_data.get(8)?;
    if !matches!(header >> 4, DATA_FIRST | DATA) {
        return None;
    }
    let id = user_data.get(9..)?;
    match header & 0x03 {
        0 => id.first().map(|&b| u32::from(b)),
        1 => id.get(..2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))),
        2 => id.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        _ => None,
    }
}

/// Surface updates the graphics pipeline client dropped (undecodable) or handed on undrawn.
fn gfx_failures(stage: &ActiveStage, unhandled: &std::sync::atomic::AtomicU64) -> u64 {
    let dropped = stage.get_dvc::<GraphicsPipelineClient>().map_or(0, |c| c.processor().dropped_updates());
    dropped + unhandled.load(std::sync::atomic::Ordering::Relaxed)
}

/// The last pointer position a client fast-path input PDU carries, if any.
pub fn last_pointer(frame: &[u8]) -> Option<(u16, u16)> {
    use ironrdp_pdu::input::InputEvent;
    use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
    // Every client event that places the mouse: fast-path mouse and extended mouse events, and
    // slow-path Input PDUs' (red team `h-red17p`: a client moving it only so never had its
    // pointer recorded).
    if !is_x224(frame) {
        if !fast_path_input_fits(frame) {
            return None;
        }
        let input = decode::<FastPathInput>(frame).ok()?;
        return input.input_events().iter().rev().find_map(|e| match e {
            FastPathInputEvent::MouseEvent(m) => Some((m.x_position, m.y_position)),
            FastPathInputEvent::MouseEventEx(m) => Some((m.x_position, m.y_position)),
            _ => None,
        });
    }
    let X224(McsMessage::SendDataRequest(req)) = decode::<X224<McsMessage<'_>>>(frame).ok()? else { return None };
    let ShareControlPdu::Data(data) = decode::<ShareControlHeader>(&req.user_data).ok()?.share_control_pdu else {
        return None;
    };
    let ShareDataPdu::Input(input) = data.share_data_pdu else { return None };
    input.0.iter().rev().find_map(|e| match e {
        InputEvent::Mouse(m) => Some((m.x_position, m.y_position)),
        InputEvent::MouseX(m) => Some((m.x_position, m.y_position)),
        _ => None,
    })
}

/// Whether losing this target PDU costs only pixels that a full redraw (Refresh Rect) paints
/// again: a fast-path PDU, neither encrypted nor bulk-compressed, whose updates are all bitmaps,
/// synchronize, or unfragmented surface commands that carry only frame markers and uncompressed
/// surface bits (codec 0), or a slow-path PDU on the session's I/O channel
/// (`io_channel`) made only of uncompressed bitmap or synchronize Update PDUs (xrdp sends its
/// bitmaps so). Anything else carries state a redraw does not restore — pointer shapes,
/// positions and the pointer cache, palettes, drawing orders and their caches, (re)activation
/// and the desktop's size, the graphics pipeline's surfaces, codec contexts (RemoteFX sends its
/// codec headers once, in its first message: a skipped one leaves every later frame
/// undecodable, so RemoteFX surface bits are never skipped) and compression history.
pub fn repairable(frame: &[u8], io_channel: Option<u16>) -> bool {
    if is_x224(frame) {
        return io_channel.is_some_and(|io| repairable_slow_path(frame, io));
    }
    repairable_fast_path(frame)
}

fn repairable_slow_path(frame: &[u8], io_channel: u16) -> bool {
    const PDUTYPE_DATAPDU: u16 = 0x7;
    const PDUTYPE2_UPDATE: u8 = 0x02;
    const PACKET_COMPRESSED: u8 = 0x20;
    const UPDATETYPE_BITMAP: u16 = 0x1;
    const UPDATETYPE_SYNCHRONIZE: u16 = 0x3;
    let Ok(ctx) = ironrdp_pdu::mcs::decode_send_data_indication(frame) else { return false };
    if ctx.channel_id != io_channel {
        return false;
    }
    let data = ctx.user_data;
    let u16_at = |at: usize| data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let mut at = 0;
    while at < data.len() {
        // Share Control header (length, type, source), Share Data header (share id, pad,
        // stream, uncompressed length, type 2, compression, compressed length), update type.
        let (Some(length), Some(kind), Some(update)) = (u16_at(at), u16_at(at + 2), u16_at(at + 18)) else {
            return false;
        };
        let (Some(&kind2), Some(&compression)) = (data.get(at + 14), data.get(at + 15)) else { return false };
        if kind & 0x0F != PDUTYPE_DATAPDU
            || kind2 != PDUTYPE2_UPDATE
            || compression & PACKET_COMPRESSED != 0
            || !matches!(update, UPDATETYPE_BITMAP | UPDATETYPE_SYNCHRONIZE)
            || usize::from(length) < 20
        {
            return false;
        }
        at += usize::from(length);
    }
    at == data.len() && at > 0
}

/// A fast-path PDU's length (one byte, or two with the top bit set) and where what follows it
/// starts.
pub(crate) fn fast_path_length(frame: &[u8]) -> Option<(usize, usize)> {
    match *frame.get(1)? {
        b if b & 0x80 != 0 => Some(((usize::from(b & 0x7F) << 8) | usize::from(*frame.get(2)?), 3)),
        b => Some((usize::from(b), 2)),
    }
}

fn repairable_fast_path(frame: &[u8]) -> bool {
    const BITMAP: u8 = 0x1;
    const SYNCHRONIZE: u8 = 0x3;
    const SURFACE_COMMANDS: u8 = 0x4;
    let Some(&header) = frame.first() else { return false };
    // Action fast-path (0), no checksum or encryption flags.
    if header & 0x03 != 0 || header & 0xC0 != 0 {
        return false;
    }
    let Some((length, mut at)) = fast_path_length(frame) else { return false };
    if length != frame.len() || at >= length {
        return false;
    }
    while at < length {
        let update = frame[at];
        // Bulk compression (the top two bits) shares a history with every other update.
        if update >> 6 != 0 || !matches!(update & 0x0F, BITMAP | SYNCHRONIZE | SURFACE_COMMANDS) {
            return false;
        }
        let Some(size) = frame.get(at + 1..at + 3) else { return false };
        let end = at + 3 + usize::from(u16::from_le_bytes([size[0], size[1]]));
        // A fragment's codec cannot be told from its bytes: surface commands must be whole.
        if update & 0x0F == SURFACE_COMMANDS
            && (update & 0x30 != 0 || !frame.get(at + 3..end).is_some_and(raw_surface_commands))
        {
            return false;
        }
        at = end;
    }
    at == length
}

/// Whether surface commands (`TS_SURFCMD`s back to back) are only frame markers and surface
/// bits in codec 0 (uncompressed pixels), which a redraw paints again.
fn raw_surface_commands(data: &[u8]) -> bool {
    const SET_SURFACE_BITS: u16 = 0x0001;
    const FRAME_MARKER: u16 = 0x0004;
    const STREAM_SURFACE_BITS: u16 = 0x0006;
    const EX_COMPRESSED_BITMAP_HEADER_PRESENT: u8 = 0x01;
    let u16_at = |at: usize| data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let mut at = 0;
    while at < data.len() {
        match u16_at(at) {
            Some(FRAME_MARKER) => at += 8,
            Some(SET_SURFACE_BITS | STREAM_SURFACE_BITS) => {
                // cmdType, destination rectangle (8), then TS_BITMAP_DATA_EX: bpp, flags,
                // reserved, codecID, width, height, bitmapDataLength (4), [extended header], data.
                let (Some(&flags), Some(&codec), Some(len)) =
                    (data.get(at + 11), data.get(at + 13), data.get(at + 18..at + 22))
                else {
                    return false;
                };
                if codec != 0 {
                    return false;
                }
                let extended = if flags & EX_COMPRESSED_BITMAP_HEADER_PRESENT != 0 { 24 } else { 0 };
                let bits = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                at = at.saturating_add(22 + extended).saturating_add(bits);
            }
            _ => return false,
        }
    }
    at == data.len()
}

/// Whether a fast-path input PDU's stated length covers its own header: IronRDP subtracts the
/// header's size from it unchecked (found by fuzzing: a short one overflowed there).
pub(crate) fn fast_path_input_fits(frame: &[u8]) -> bool {
    let (Some(&header), Some(&first)) = (frame.first(), frame.get(1)) else { return false };
    let (length, per) = if first & 0x80 != 0 {
        let Some(&second) = frame.get(2) else { return false };
        ((usize::from(first & 0x7F) << 8) | usize::from(second), 2)
    } else {
        (usize::from(first), 1)
    };
    let events = usize::from((header >> 2) & 0x0F == 0);
    length >= 1 + per + events
}

fn connect_initial(frame: &[u8]) -> Option<ConnectInitial> {
    let x224 = decode::<X224<X224Data<'_>>>(frame).ok()?;
    decode::<ConnectInitial>(&x224.0.data).ok()
}

fn connect_response(frame: &[u8]) -> Option<ConnectResponse> {
    let x224 = decode::<X224<X224Data<'_>>>(frame).ok()?;
    decode::<ConnectResponse>(&x224.0.data).ok()
}

fn is_disconnect(frame: &[u8]) -> bool {
    matches!(decode::<X224<McsMessage<'_>>>(frame), Ok(X224(McsMessage::DisconnectProviderUltimatum(_))))
}

/// The bulk compression the client asked for in its Client Info PDU, read from the fixed header
/// alone (the rest holds credentials the decoder has no business reading). `None`: not a Client
/// Info PDU; `Some(None)`: no compression.
fn client_info_compression(user_data: &[u8]) -> Option<Option<CompressionType>> {
    const SEC_INFO_PKT: u16 = 0x0040;
    const INFO_COMPRESSION: u32 = 0x0000_0080;
    let flags = u16::from_le_bytes([*user_data.first()?, *user_data.get(1)?]);
    if flags & SEC_INFO_PKT == 0 {
        return None;
    }
    // Security header (4 bytes), then CodePage (4) and the info flags (4).
    let info: [u8; 4] = user_data.get(8..12)?.try_into().ok()?;
    let info = u32::from_le_bytes(info);
    if info & INFO_COMPRESSION == 0 {
        return Some(None);
    }
    Some(match (info >> 9) & 0x0F {
        0 => Some(CompressionType::K8),
        1 => Some(CompressionType::K64),
        2 => Some(CompressionType::Rdp6),
        _ => Some(CompressionType::Rdp61),
    })
}

/// The Share Control PDUs one Send Data Indication carries (servers concatenate activation
/// PDUs), each decoded on its own.
fn share_control_parts(
    ctx: SendDataIndicationCtx<'_>,
) -> impl Iterator<Item = Result<ironrdp_pdu::rdp::headers::ShareControlCtx, DecodeError>> + '_ {
    let data = ctx.user_data;
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        if offset >= data.len() {
            return None;
        }
        let len = data
            .get(offset..offset + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .filter(|&l| l >= 2 && offset + l <= data.len());
        // A length that does not fit: decode the rest as one PDU and stop.
        let end = len.map_or(data.len(), |l| offset + l);
        let part = SendDataIndicationCtx {
            initiator_id: ctx.initiator_id,
            channel_id: ctx.channel_id,
            user_data: &data[offset..end],
        };
        offset = end;
        Some(decode_share_control(part).map_err(DecodeError::pdu("share control pdu")))
    })
}

/// A capture's records (the files `examples/capture.rs` writes and the tests replay): tag
/// byte, little-endian u32 length, bytes. A truncated last record is left out.
pub fn capture_records(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = data.split_first() {
        let Some(len) = rest.get(..4).map(|l| u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize) else { break };
        let Some(body) = rest.get(4..4 + len) else { break };
        out.push((tag, body));
        data = &rest[4 + len..];
    }
    out
}

mod audit;
#[cfg(test)]
pub(crate) mod tests;
