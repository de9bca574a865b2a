//! Strict readers of the messages on the channels the box opens for what they are, not for a
//! redirection class: the graphics pipeline ([MS-RDPEGFX]), display control ([MS-RDPEDISP]),
//! touch and pen input ([MS-RDPEI]), and sound out ([MS-RDPEA], on a grant with audio).
//!
//! The target names its dynamic channels, and any program in the target session may pick the
//! name (xrdpapi, the WTS API), so a channel opened by name alone is a pipe for whatever that
//! program and a willing client send. Here every whole message (a DVC message after its Data
//! First and Data fragments are put together, or a static channel message after its chunks) is
//! read as its protocol defines it, in the direction it may travel: header type and length
//! exact, counts bounded, every field in its range, flags known, no byte left over. Anything
//! else is refused and ends the session. What a protocol leaves free (the sound a target plays,
//! codec extra data, the encoding width RDPEI's variable integers allow) is stated where it is
//! read.

/// Which protocol a channel speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `Microsoft::Windows::RDS::Graphics` (MS-RDPEGFX). The target's messages reach the reader
    /// decompressed (ZGFX, by the filter): RDPGFX PDUs back to back; the client's are RDPGFX
    /// PDUs as sent.
    Graphics,
    /// `Microsoft::Windows::RDS::DisplayControl` (MS-RDPEDISP).
    DisplayControl,
    /// `Microsoft::Windows::RDS::Input` (MS-RDPEI).
    Input,
    /// `AUDIO_PLAYBACK_DVC`, `AUDIO_PLAYBACK_LOSSY_DVC` and the static `rdpsnd` (MS-RDPEA).
    Audio,
}

/// Why a message was refused, for each protocol (the reason the admin reads).
pub const GRAPHICS_REFUSED: &str = "the graphics pipeline (Microsoft::Windows::RDS::Graphics) carried a message that is not exactly a graphics pipeline pdu (a program on the target could use it as a pipe)";
pub const DISPLAY_CONTROL_REFUSED: &str = "the display control channel (Microsoft::Windows::RDS::DisplayControl) carried a message that is not exactly a display control pdu (a program on the target could use it as a pipe)";
pub const INPUT_REFUSED: &str = "the touch and pen input channel (Microsoft::Windows::RDS::Input) carried a message that is not exactly an input pdu (a program on the target could use it as a pipe)";
pub const AUDIO_REFUSED: &str = "the sound channel (rdpsnd or AUDIO_PLAYBACK_DVC) carried a message that is not exactly a sound pdu (a program on the target could use it as a pipe)";

impl Protocol {
    /// The longest whole message the protocol needs: a message that says it is longer ends
    /// the session before it is gathered.
    pub fn max_message(self) -> usize {
        match self {
            // The target's graphics arrive as one DVC message per ZGFX segmented data: a frame
            // of a large desktop, uncompressed (8192 x 8192 at 4 bytes is 256 MiB; real targets
            // split their updates: FreeRDP's and Windows' stay well below this).
            Self::Graphics => 16 * 1024 * 1024,
            // Header, monitor layout size, count and 16 monitors of 40 bytes.
            Self::DisplayControl => 16 + 40 * MAX_MONITORS,
            Self::Input => 64 * 1024,
            // A wave block: a few tens of milliseconds of sound.
            Self::Audio => 256 * 1024,
        }
    }

    pub fn refusal(self) -> &'static str {
        match self {
            Self::Graphics => GRAPHICS_REFUSED,
            Self::DisplayControl => DISPLAY_CONTROL_REFUSED,
            Self::Input => INPUT_REFUSED,
            Self::Audio => AUDIO_REFUSED,
        }
    }
}

/// What one channel's messages have said so far: some messages come once, or only after
/// another (a Wave PDU right after its Wave Info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    protocol: Protocol,
    /// DisplayControl: the target's Caps came. Input: the target's SC_READY came.
    target_ready: bool,
    /// Input: the client's CS_READY came.
    client_ready: bool,
    /// Audio: the length of the Wave PDU the last Wave Info announced (the next target message).
    wave_left: Option<usize>,
    /// Audio: the formats the target's last Server Audio Formats offered, each as sent; `Some`
    /// until the client has answered them (once: its formats are some of these).
    offered: Option<Vec<Vec<u8>>>,
    /// Audio: after the client's formats, its one Quality Mode may come.
    quality_due: bool,
    /// Audio: how many Wave Confirms each block number is owed (a Wave Info or Wave2 sent it).
    waves_due: Vec<u32>,
    /// Audio: the Training PDUs' wTimeStamp and wPackSize the client has yet to confirm.
    trainings_due: Vec<[u8; 4]>,
    /// Audio: the wVersion of the target's last Server Audio Formats.
    offered_version: u16,
    /// Audio: the client's first answer to the target's formats, its dwFlags and wVersion as
    /// the target got them: later answers must say the same (red team h-red17m, hole 3).
    answered: Option<(u32, u16)>,
    /// Audio: every format the target has offered on the channel and whether the client listed
    /// it: a format offered again gets the same answer, so a target offering the same formats
    /// again and again learns nothing new.
    chosen: Vec<(Vec<u8>, bool)>,
    /// The message as the other side gets it, when it is not the one sent: the same length,
    /// what the reader read re-encoded (the client's sound messages).
    rewrite: Option<Vec<u8>>,
    display: Display,
    gfx: Gfx,
}

/// Display control: what the target's Caps and the client's connection data allow, and the
/// layouts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Display {
    /// The monitors the client's core data announced (its Client Monitor Data, or one).
    client_monitors: usize,
    /// The target's Caps: MaxNumMonitors, MaxMonitorAreaFactorA and B.
    caps: Option<(u32, u32, u32)>,
    /// The last layout passed: one that repeats it is dropped.
    last: Vec<u8>,
    /// When the layouts of the last [`LAYOUT_WINDOW`] passed: at most [`LAYOUT_BURST`].
    passed: std::collections::VecDeque<std::time::Instant>,
}

/// The graphics pipeline: what each side may still send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Gfx {
    /// The client's Caps Advertise came (once); the target's Caps Confirm answered it (once).
    advertised: bool,
    confirmed: bool,
    /// The capability sets the target was sent (the client's, as the filter trimmed them):
    /// version and data. The target's Caps Confirm is one of them.
    sets: Vec<(u32, Vec<u8>)>,
    /// The client's Cache Import Offer came (once, empty).
    offered: bool,
    /// Frames the target ended (End Frame) that the client has not acknowledged, and not
    /// acknowledged with a QoE Frame Acknowledge (each at most once, and only those): for the
    /// latter, the QoE fields the box writes for it (when the frame started, ms since the
    /// channel's first target message; how long it took; when it ended, at the box).
    acks_due: std::collections::VecDeque<(u32, std::time::Instant)>,
    /// The client's last Frame Acknowledge suspended acknowledgements (the target waits for none).
    suspended: bool,
    qoe_due: std::collections::VecDeque<(u32, u32, u16, std::time::Instant)>,
    /// Frames the target ended on the channel: a client decodes no more.
    ended: u64,
    /// The frame in progress: its id, when its Start Frame passed, whether it drew.
    frame: Option<(u32, std::time::Instant, bool)>,
    /// The id the next Start Frame carries (the last frame's, plus one).
    next_frame: Option<u32>,
    /// The frames' clock: the last Start Frame's time of day (ms), how far the time stamps have
    /// moved since the first (ms), and when the first passed.
    clock: Option<(u32, u64, std::time::Instant)>,
    /// When the channel's first target message was judged.
    epoch: Option<std::time::Instant>,
    /// Surfaces created and not deleted (width, height); cache slots filled and not evicted
    /// (the cached rectangle's width and height).
    surfaces: std::collections::BTreeMap<u16, (u16, u16)>,
    slots: std::collections::BTreeMap<u16, (u16, u16)>,
    /// The pixel bytes the surfaces and slots hold in the recorder's compositor (4 a pixel):
    /// never past [`GFX_MAX_BYTES`], where the compositor would skip a surface or tile in
    /// silence that the client draws (red team `h-red17r`, hole 7).
    held: usize,
    /// The QoE fields the client's QoE Frame Acknowledge just judged gets (its own are replaced).
    qoe_fields: Option<[u8; 8]>,
}

impl Reader {
    pub fn new(protocol: Protocol) -> Self {
        Self {
            protocol,
            target_ready: false,
            client_ready: false,
            wave_left: None,
            offered: None,
            quality_due: false,
            waves_due: Vec::new(),
            trainings_due: Vec::new(),
            offered_version: 0,
            answered: None,
            chosen: Vec::new(),
            rewrite: None,
            display: Display {
                client_monitors: MAX_MONITORS,
                caps: None,
                last: Vec::new(),
                passed: Default::default(),
            },
            gfx: Gfx::default(),
        }
    }

    /// Display control for a client whose core data announced `monitors` monitors: no layout
    /// holds more.
    pub fn display_control(monitors: usize) -> Self {
        let mut r = Self::new(Protocol::DisplayControl);
        r.display.client_monitors = monitors.clamp(1, MAX_MONITORS);
        r
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The last message judged, as the other side gets it, when that is not the message sent:
    /// the same length, what was read re-encoded.
    pub fn take_rewrite(&mut self) -> Option<Vec<u8>> {
        self.rewrite.take()
    }

    /// Judges one whole message: `Ok(true)` passes it, `Ok(false)` drops it (a display layout
    /// that changes nothing or comes too soon), `Err` with the reason the session ends.
    pub fn judge(&mut self, from_client: bool, message: &[u8]) -> Result<bool, &'static str> {
        self.judge_at(from_client, message, std::time::Instant::now())
    }

    /// [`Reader::judge`] at `now` (display layouts are rate-limited).
    pub fn judge_at(
        &mut self,
        from_client: bool,
        message: &[u8],
        now: std::time::Instant,
    ) -> Result<bool, &'static str> {
        let ok = match self.protocol {
            Protocol::Graphics => self.graphics(from_client, message, now).map(|()| true),
            Protocol::DisplayControl => self.display_control_pdu(from_client, message, now),
            Protocol::Input => self.input(from_client, message).map(|()| true),
            Protocol::Audio => self.audio(from_client, message).map(|()| true),
        };
        if ok.is_none() {
            self.rewrite = None;
        }
        ok.ok_or(self.protocol.refusal())
    }

    /// MS-RDPEGFX 2.2: RDPGFX PDUs back to back, each of a command its sender may send (2.2.1.1),
    /// flags zero, pduLength exact. The client's: one Caps Advertise of known capability sets
    /// (the filter trims it), at most one Cache Import Offer and it empty (a client's cache
    /// holds tiles the recording never saw), and a Frame Acknowledge and a QoE Frame
    /// Acknowledge for each frame the target ended, no other (the QoE one's fields the box's
    /// own, [`Reader::take_qoe_fields`]). The target's: every PDU as IronRDP (the recorder's
    /// reader) reads it and writes it back byte for byte, no window mapping (RemoteApp is
    /// refused), a Cache Import Reply that imports nothing, one Caps Confirm after the client's
    /// Caps Advertise and one of its sets; frames one at a time, their ids in sequence, their
    /// time stamps times of day that, since the first frame, run no further ahead of the box's
    /// clock than [`FRAME_CLOCK_SLACK_MS`], each drawing; and
    /// nothing FreeRDP fails on, which would end its reading of the message where the recorder
    /// goes on ([`gfx_draws`]). What the target draws is free (it is drawn, and
    /// recorded).
    fn graphics(&mut self, from_client: bool, m: &[u8], now: std::time::Instant) -> Option<()> {
        let mut at = 0;
        while at < m.len() {
            let mut c = Cursor::new(&m[at..]);
            let (command, flags, length) = (c.u16()?, c.u16()?, usize::try_from(c.u32()?).ok()?);
            if flags != 0 || length < 8 || length > m.len() - at {
                return None;
            }
            let pdu = &m[at..at + length];
            if from_client {
                self.gfx_client(command, pdu, now)?;
            } else {
                self.gfx_target(command, pdu, now)?;
            }
            at += length;
        }
        (!m.is_empty()).then_some(())
    }

    fn gfx_client(&mut self, command: u16, pdu: &[u8], now: std::time::Instant) -> Option<()> {
        let mut c = Cursor::new(pdu);
        c.take(8)?;
        let g = &mut self.gfx;
        match command {
            RDPGFX_CMDID_CAPSADVERTISE if !g.advertised => {
                g.advertised = true;
                let count = c.u16()?;
                if !(1..=GFX_CAPS.len() as u16).contains(&count) {
                    return None;
                }
                let mut seen = Vec::new();
                for _ in 0..count {
                    let (version, length) = (c.u32()?, usize::try_from(c.u32()?).ok()?);
                    let data = c.take(length)?;
                    let known = GFX_CAPS.iter().find(|(v, _)| *v == version)?;
                    if seen.contains(&version) || length != known.1 {
                        return None;
                    }
                    seen.push(version);
                    g.sets.push((version, data.to_vec()));
                    // 10.1's 16 bytes are reserved (zero); the others are flags, known ones only.
                    let fits = if version == GFX_V10_1 {
                        data.iter().all(|&b| b == 0)
                    } else {
                        u32::from_le_bytes(data.try_into().ok()?) & !GFX_CAPS_FLAGS == 0
                    };
                    if !fits {
                        return None;
                    }
                }
            }
            RDPGFX_CMDID_CACHEIMPORTOFFER if !g.offered => {
                g.offered = true;
                if c.u16()? != 0 {
                    return None;
                }
            }
            RDPGFX_CMDID_FRAMEACKNOWLEDGE => {
                let (depth, frame, total) = (c.u32()?, c.u32()?, c.u32()?);
                let due = g.acks_due.iter().position(|&(f, _)| f == frame)?;
                if !(depth <= MAX_QUEUE_DEPTH || depth == SUSPEND_FRAME_ACKNOWLEDGEMENT) || u64::from(total) > g.ended {
                    return None;
                }
                g.acks_due.remove(due);
                g.suspended = depth == SUSPEND_FRAME_ACKNOWLEDGEMENT;
            }
            RDPGFX_CMDID_QOEFRAMEACKNOWLEDGE => {
                let frame = c.u32()?;
                c.take(8)?; // timestamp, timeDiffSE, timeDiffEDR: replaced
                let due = g.qoe_due.iter().position(|&(f, ..)| f == frame)?;
                let (_, started, took, ended) = g.qoe_due.remove(due)?;
                let rendered = u16::try_from(now.saturating_duration_since(ended).as_millis()).unwrap_or(u16::MAX);
                let mut fields = [0; 8];
                fields[..4].copy_from_slice(&started.to_le_bytes());
                fields[4..6].copy_from_slice(&took.to_le_bytes());
                fields[6..].copy_from_slice(&rendered.to_le_bytes());
                g.qoe_fields = Some(fields);
            }
            _ => return None,
        }
        c.done().then_some(())
    }

    /// The QoE Frame Acknowledge's timestamp, timeDiffSE and timeDiffEDR the client's last
    /// judged one gets, from the box's clock (when the frame's Start Frame passed, in ms since
    /// the channel's first target message; the ms between its Start and End Frame passing; the
    /// ms between its End Frame passing and the acknowledgement), not the client's: the
    /// client's 8 bytes a frame would reach the target as sent (red team `h-red17n`).
    pub fn take_qoe_fields(&mut self) -> Option<[u8; 8]> {
        self.gfx.qoe_fields.take()
    }

    /// Whether the client owes an acknowledgement of a frame the target ended more than
    /// [`ACK_DEADLINE`] before `now`, not having suspended them: the target (Windows, xrdp 0.10)
    /// stops drawing while its frames go unacknowledged, so a client that withholds them and
    /// types would type on a screen the recording no longer follows (red team `h-red17m`,
    /// hole 7). The filter ends the session when such a client sends input.
    pub fn gfx_acks_overdue(&self, now: std::time::Instant) -> bool {
        !self.gfx.suspended
            && self.gfx.acks_due.front().is_some_and(|&(_, ended)| now.saturating_duration_since(ended) > ACK_DEADLINE)
    }

    /// Test support: the frames the client owes acknowledgements for ended `by` earlier.
    #[cfg(test)]
    pub(crate) fn age_gfx_acks(&mut self, by: std::time::Duration) {
        for (_, ended) in &mut self.gfx.acks_due {
            *ended = ended.checked_sub(by).expect("an instant that far back");
        }
    }

    /// The capability sets the client's Caps Advertise `pdu` holds as the target gets it
    /// (after the filter's trim): the target's Caps Confirm must be one of them.
    pub fn gfx_caps_sent(&mut self, pdu: &[u8]) {
        let mut c = Cursor::new(pdu);
        let mut sets = Vec::new();
        let read = c.take(8).and_then(|_| c.u16()).and_then(|count| {
            for _ in 0..count {
                let (version, length) = (c.u32()?, usize::try_from(c.u32()?).ok()?);
                sets.push((version, c.take(length)?.to_vec()));
            }
            Some(())
        });
        self.gfx.sets = if read.is_some() { sets } else { Vec::new() };
    }

    fn gfx_target(&mut self, command: u16, pdu: &[u8], now: std::time::Instant) -> Option<()> {
        use ironrdp_core::{Decode as _, ReadCursor};
        use ironrdp_egfx::pdu::GfxPdu;
        if GFX_CLIENT_COMMANDS.contains(&command) || GFX_WINDOW_COMMANDS.contains(&command) {
            return None;
        }
        let mut cursor = ReadCursor::new(pdu);
        let read = GfxPdu::decode(&mut cursor).ok()?;
        // Read to its end, and written back as it came: no padding, reserved field or trailing
        // byte of its own.
        if !cursor.is_empty() || ironrdp_core::encode_vec(&read).ok()? != pdu {
            return None;
        }
        let g = &mut self.gfx;
        let epoch = *g.epoch.get_or_insert(now);
        match read {
            GfxPdu::CapabilitiesConfirm(_) if g.advertised && !g.confirmed => {
                g.confirmed = true;
                // One of the sets the target was sent: its version, its length, its data (the
                // flags the client offered, or fewer).
                let mut c = Cursor::new(&pdu[8..]);
                let (version, length) = (c.u32()?, usize::try_from(c.u32()?).ok()?);
                let data = c.take(length)?;
                let (_, sent) = g.sets.iter().find(|(v, d)| *v == version && d.len() == length)?;
                let fits = match (<[u8; 4]>::try_from(data), <[u8; 4]>::try_from(sent.as_slice())) {
                    (Ok(flags), Ok(offered)) => {
                        let (flags, offered) = (u32::from_le_bytes(flags), u32::from_le_bytes(offered));
                        flags & !offered == 0
                    }
                    _ => data == sent.as_slice(),
                };
                if !fits || !c.done() {
                    return None;
                }
            }
            GfxPdu::CapabilitiesConfirm(_) => return None,
            GfxPdu::CacheImportReply(reply) if !reply.cache_slots.is_empty() => return None,
            GfxPdu::StartFrame(start) => {
                // One frame at a time, ids in sequence; time stamps times of day that, since
                // the first, move forward no further than the box's clock (with slack for the
                // first frame's wait in queues the later ones did not have).
                let t = start.timestamp;
                let in_day = t.milliseconds < 1000 && t.seconds < 60 && t.minutes < 60 && t.hours < 24;
                let ms = ((u32::from(t.hours) * 60 + u32::from(t.minutes)) * 60 + u32::from(t.seconds)) * 1000
                    + u32::from(t.milliseconds);
                let (last, moved, first) = g.clock.unwrap_or((ms, 0, now));
                let moved = moved + u64::from((ms + DAY_MS - last) % DAY_MS);
                let paced = u128::from(moved)
                    <= now.saturating_duration_since(first).as_millis() + u128::from(FRAME_CLOCK_SLACK_MS);
                if g.frame.is_some() || g.next_frame.is_some_and(|n| n != start.frame_id) || !in_day || !paced {
                    return None;
                }
                g.frame = Some((start.frame_id, now, false));
                g.clock = Some((ms, moved, first));
            }
            GfxPdu::EndFrame(end) => {
                // The frame in progress, and it drew: frames of nothing carry only their ids
                // and time stamps (and earn the client's acknowledgements).
                let Some((id, started, true)) = g.frame.take() else { return None };
                if id != end.frame_id {
                    return None;
                }
                g.next_frame = Some(id.wrapping_add(1));
                g.ended += 1;
                if g.acks_due.len() == MAX_FRAMES_DUE {
                    g.acks_due.pop_front();
                }
                g.acks_due.push_back((id, now));
                if g.qoe_due.len() == MAX_FRAMES_DUE {
                    g.qoe_due.pop_front();
                }
                let since = u32::try_from(started.saturating_duration_since(epoch).as_millis() % (1 << 32)).ok()?;
                let took = u16::try_from(now.saturating_duration_since(started).as_millis()).unwrap_or(u16::MAX);
                g.qoe_due.push_back((id, since, took, now));
            }
            other => {
                if !gfx_draws(g, &other)? {
                    return Some(());
                }
                if let Some((_, _, drew)) = g.frame.as_mut() {
                    *drew = true;
                }
            }
        }
        Some(())
    }

    /// MS-RDPEDISP 2.2: the server's Caps PDU once, then the client's Monitor Layout PDUs: no
    /// more monitors than the Caps and the client's core data allow, one primary at 0,0, none
    /// overlapping, all joined edge to edge, their area within the Caps' bound. A layout that
    /// repeats the last one, or comes when [`LAYOUT_BURST`] passed in the last [`LAYOUT_WINDOW`]
    /// (FreeRDP sends one at most every 200 ms), is dropped.
    fn display_control_pdu(&mut self, from_client: bool, m: &[u8], now: std::time::Instant) -> Option<bool> {
        let mut c = Cursor::new(m);
        let (kind, length) = (c.u32()?, c.u32()?);
        if usize::try_from(length).ok()? != m.len() {
            return None;
        }
        if !from_client {
            if kind != DISPLAYCONTROL_PDU_TYPE_CAPS || self.target_ready {
                return None;
            }
            self.target_ready = true;
            let (monitors, area_a, area_b) = (c.u32()?, c.u32()?, c.u32()?);
            let factor = 1..=MAX_AREA_FACTOR;
            let fits =
                (1..=MAX_MONITORS as u32).contains(&monitors) && factor.contains(&area_a) && factor.contains(&area_b);
            self.display.caps = Some((monitors, area_a, area_b));
            return (fits && c.done()).then_some(true);
        }
        let (max_monitors, area_a, area_b) = self.display.caps?;
        if kind != DISPLAYCONTROL_PDU_TYPE_MONITOR_LAYOUT || c.u32()? != MONITOR_LAYOUT_SIZE {
            return None;
        }
        let count = usize::try_from(c.u32()?).ok()?;
        if !(1..=self.display.client_monitors.min(max_monitors as usize)).contains(&count) {
            return None;
        }
        let mut primaries = 0;
        let mut rects: Vec<(i64, i64, i64, i64)> = Vec::with_capacity(count);
        for _ in 0..count {
            let flags = c.u32()?;
            let (left, top) = (c.i32()?, c.i32()?);
            let (width, height) = (c.u32()?, c.u32()?);
            let (physical_width, physical_height) = (c.u32()?, c.u32()?);
            let (orientation, desktop_scale, device_scale) = (c.u32()?, c.u32()?, c.u32()?);
            let primary = flags == DISPLAYCONTROL_MONITOR_PRIMARY;
            primaries += usize::from(primary);
            // Sizes in millimetres and scale factors: 0 when the client gives none (FreeRDP
            // 2.11's scale factors), else in the spec's range; both of a pair or neither.
            let physical = |v: u32| v == 0 || (10..=10_000).contains(&v);
            let position = |v: i32| v.unsigned_abs() <= MAX_POSITION;
            let fits = (flags & !DISPLAYCONTROL_MONITOR_PRIMARY) == 0
                && (!primary || (left == 0 && top == 0))
                && position(left)
                && position(top)
                && (200..=8192).contains(&width)
                && width % 2 == 0
                && (200..=8192).contains(&height)
                && physical(physical_width)
                && physical(physical_height)
                && (physical_width == 0) == (physical_height == 0)
                && [0, 90, 180, 270].contains(&orientation)
                && (desktop_scale == 0 || (100..=500).contains(&desktop_scale))
                && [0, 100, 140, 180].contains(&device_scale)
                && (desktop_scale == 0) == (device_scale == 0);
            if !fits {
                return None;
            }
            rects.push((
                left.into(),
                top.into(),
                i64::from(left) + i64::from(width),
                i64::from(top) + i64::from(height),
            ));
        }
        // The total area within MaxNumMonitors x MaxMonitorAreaFactorA x B (MS-RDPEDISP 2.2.2.1).
        let area: i64 = rects.iter().map(|r| (r.2 - r.0) * (r.3 - r.1)).sum();
        let bound = i64::from(max_monitors) * i64::from(area_a) * i64::from(area_b);
        if primaries != 1 || !c.done() || area > bound || !one_desktop(&rects) {
            return None;
        }
        // A real change, and not too often.
        let d = &mut self.display;
        if d.last == m {
            return Some(false);
        }
        while d.passed.front().is_some_and(|&t| now.saturating_duration_since(t) >= LAYOUT_WINDOW) {
            d.passed.pop_front();
        }
        if d.passed.len() >= LAYOUT_BURST {
            return Some(false);
        }
        d.passed.push_back(now);
        d.last = m.to_vec();
        Some(true)
    }
    /// MS-RDPEI 2.2.3: SC_READY once, then suspend and resume from the target; CS_READY once
    /// after SC_READY, then touch, pen and dismiss-hovering events from the client.
    fn input(&mut self, from_client: bool, m: &[u8]) -> Option<()> {
        let mut c = Cursor::new(m);
        let (event, length) = (c.u16()?, c.u32()?);
        if usize::try_from(length).ok()? != m.len() {
            return None;
        }
        match (from_client, event) {
            (false, EVENTID_SC_READY) if !self.target_ready => {
                self.target_ready = true;
                let version = c.u32()?;
                if !RDPINPUT_VERSIONS.contains(&version) {
                    return None;
                }
                // supportedFeatures came with version 3.0.
                if version >= RDPINPUT_PROTOCOL_V300
                    && !c.done()
                    && c.u32()? & !SC_READY_MULTIPEN_INJECTION_SUPPORTED != 0
                {
                    return None;
                }
            }
            (false, EVENTID_SUSPEND_TOUCH | EVENTID_RESUME_TOUCH) if self.target_ready => {}
            (true, EVENTID_CS_READY) if self.target_ready && !self.client_ready => {
                self.client_ready = true;
                let (flags, version, contacts) = (c.u32()?, c.u32()?, c.u16()?);
                if flags & !CS_READY_FLAGS != 0 || !RDPINPUT_VERSIONS.contains(&version) || contacts > MAX_CONTACTS {
                    return None;
                }
            }
            (true, EVENTID_DISMISS_HOVERING_CONTACT) if self.client_ready => {
                c.u8()?;
            }
            (true, EVENTID_TOUCH) if self.client_ready => {
                c.four_unsigned()?; // encodeTime
                for _ in 0..frame_count(&mut c)? {
                    let contacts = c.two_unsigned()?;
                    c.eight_unsigned()?; // frameOffset
                    if contacts > MAX_CONTACTS {
                        return None;
                    }
                    for _ in 0..contacts {
                        touch_contact(&mut c)?;
                    }
                }
            }
            (true, EVENTID_PEN) if self.client_ready => {
                c.four_unsigned()?; // encodeTime
                for _ in 0..frame_count(&mut c)? {
                    let contacts = c.two_unsigned()?;
                    c.eight_unsigned()?; // frameOffset
                    if !(1..=MAX_PENS).contains(&contacts) {
                        return None;
                    }
                    for _ in 0..contacts {
                        pen_contact(&mut c)?;
                    }
                }
            }
            _ => return None,
        }
        c.done().then_some(())
    }

    /// MS-RDPEA 2.2: the client sends formats, quality mode, training and wave confirms; the
    /// target formats, training, wave info and its wave, wave2, volume, pitch and close. The
    /// sound itself (a Wave PDU, a Wave2's data, training data) is free-form by nature: an
    /// audio grant admits arbitrary bytes from the target to the client in it.
    fn audio(&mut self, from_client: bool, m: &[u8]) -> Option<()> {
        self.rewrite = None;
        if !from_client && let Some(wave) = self.wave_left.take() {
            // The Wave PDU: four zero bytes in place of the data its Wave Info carried, then
            // the rest of the data, as long as the Wave Info said.
            return (m.len() == wave && m.get(..4)? == [0, 0, 0, 0]).then_some(());
        }
        let mut c = Cursor::new(m);
        let (kind, pad, body) = (c.u8()?, c.u8()?, usize::from(c.u16()?));
        if kind != SNDC_WAVE && body != m.len() - 4 {
            return None;
        }
        // The header's bPad is arbitrary (MS-RDPEA 2.2.1): the target gets the client's as 0.
        if from_client && pad != 0 {
            let mut out = m.to_vec();
            out[1] = 0;
            self.rewrite = Some(out);
        }
        match (from_client, kind) {
            (_, SNDC_FORMATS) => {
                // dwFlags, dwVolume, dwPitch, wDGramPort, wNumberOfFormats, cLastBlockConfirmed,
                // wVersion, bPad.
                let flags = c.u32()?;
                c.take(10)?;
                let formats = c.u16()?;
                c.u8()?;
                let version = c.u16()?;
                c.u8()?;
                if (from_client && flags & !TSSNDCAPS != 0) || formats > MAX_FORMATS || version == 0 {
                    return None;
                }
                // The client answers the target's formats once, with some of them as the target
                // sent them (MS-RDPEA 3.2.5.1.2), in the target's order, each once (as FreeRDP
                // lists them): its formats carry no bytes of its own (red team h-red17m, hole 3).
                let offered = if from_client { Some(self.offered.take()?) } else { None };
                let mut listed: Vec<Vec<u8>> = Vec::new();
                let mut next = 0;
                for _ in 0..formats {
                    // wFormatTag, nChannels, nSamplesPerSec, nAvgBytesPerSec, nBlockAlign,
                    // wBitsPerSample, cbSize and its extra data (the codec's own).
                    let at = c.at;
                    c.u16()?;
                    let channels = c.u16()?;
                    c.take(12)?;
                    let extra = c.u16()?;
                    if !(1..=8).contains(&channels) || extra > MAX_FORMAT_EXTRA {
                        return None;
                    }
                    c.take(usize::from(extra))?;
                    let format = m.get(at..c.at)?;
                    if let Some(o) = &offered {
                        next += o.get(next..)?.iter().position(|f| f == format)? + 1;
                    }
                    listed.push(format.to_vec());
                }
                if let Some(offered) = offered {
                    self.answer_formats(m, flags, version, &offered, &listed)?;
                    self.quality_due = true;
                } else {
                    self.offered_version = version;
                    self.offered = Some(listed);
                }
            }
            // Once after the client's formats; the reserved field zero.
            (true, SNDC_QUALITYMODE) => {
                let (mode, reserved) = (c.u16()?, c.u16()?);
                if mode > 2 || reserved != 0 || !std::mem::take(&mut self.quality_due) {
                    return None;
                }
            }
            // Wave Confirm: wTimeStamp, cConfirmedBlockNo, bPad (zero); one per block the
            // target sent. What a client may answer is what it was asked, no more: only the
            // time stamp is its own.
            (true, SNDC_WAVECONFIRM) => {
                c.u16()?;
                let (block, pad) = (c.u8()?, c.u8()?);
                let due = self.waves_due.get_mut(usize::from(block))?;
                if pad != 0 || *due == 0 {
                    return None;
                }
                *due -= 1;
            }
            // Training Confirm: the wTimeStamp and wPackSize of a Training PDU, as it sent them.
            (true, SNDC_TRAINING) => {
                let confirmed = c.take(4)?;
                let at = self.trainings_due.iter().position(|t| t == confirmed)?;
                self.trainings_due.remove(at);
            }
            (false, SNDC_TRAINING) => {
                let asked: [u8; 4] = m.get(4..8)?.try_into().ok()?;
                if self.trainings_due.len() >= MAX_TRAININGS_DUE {
                    return None;
                }
                self.trainings_due.push(asked);
                c.u16()?;
                let pack = usize::from(c.u16()?);
                // wPackSize: 0 and no data, or the size of what follows the header (xrdp's
                // `sound_send_training`: 1024, then 1020 bytes), or of the whole PDU.
                if !((pack == 0 && m.len() == 8) || (pack > 4 && (pack == m.len() - 4 || pack == m.len()))) {
                    return None;
                }
                c.take(m.len() - 8)?;
            }
            (false, SNDC_WAVE) => {
                // wTimeStamp, wFormatNo, cBlockNo, bPad[3], the data's first 4 bytes; BodySize
                // counts the whole sound: the Wave PDU that follows is BodySize - 8 long.
                if m.len() != 16 || body < 12 {
                    return None;
                }
                c.take(12)?;
                self.wave_left = Some(body - 8);
                self.owe_confirm(m[8]);
            }
            (false, SNDC_WAVE2) => {
                // wTimeStamp, wFormatNo, cBlockNo, bPad[3], dwAudioTimeStamp, then the sound.
                c.take(12)?;
                c.take(m.len() - 16)?;
                self.owe_confirm(m[8]);
            }
            (false, SNDC_SETVOLUME | SNDC_SETPITCH) => {
                c.u32()?;
            }
            (false, SNDC_CLOSE) => {}
            // Crypt keys and UDP waves (no UDP here), xrdp's microphone types, anything else.
            _ => return None,
        }
        c.done().then_some(())
    }
}

impl Reader {
    /// The client's answer to the target's formats, read (its `listed` formats some of the
    /// target's `offered`, in order): re-encoded as FreeRDP writes it, with nothing of the
    /// client's but its dwFlags (3 bits) and its wVersion (at most the target's), both the same
    /// as its first answer's, and which formats it lists, the same for a format offered again.
    /// `None` when it says anything else, or the channel has seen too many formats.
    fn answer_formats(
        &mut self,
        m: &[u8],
        flags: u32,
        version: u16,
        offered: &[Vec<u8>],
        listed: &[Vec<u8>],
    ) -> Option<()> {
        let version = version.min(self.offered_version);
        if *self.answered.get_or_insert((flags, version)) != (flags, version) {
            return None;
        }
        for format in offered {
            let taken = listed.contains(format);
            match self.chosen.iter().find(|(f, _)| f == format) {
                Some((_, before)) if *before != taken => return None,
                Some(_) => {}
                None if self.chosen.len() >= MAX_FORMATS_SEEN => return None,
                None => self.chosen.push((format.clone(), taken)),
            }
        }
        let mut out = Vec::with_capacity(m.len());
        out.extend([SNDC_FORMATS, 0]);
        out.extend(m.get(2..4)?);
        out.extend(flags.to_le_bytes());
        // dwVolume, dwPitch, wDGramPort: FreeRDP's when its device says no volume.
        out.extend([0; 10]);
        out.extend(u16::try_from(listed.len()).ok()?.to_le_bytes());
        out.push(0); // cLastBlockConfirmed
        out.extend(version.to_le_bytes());
        out.push(0); // bPad
        listed.iter().for_each(|f| out.extend(f));
        (out.len() == m.len()).then_some(())?;
        self.rewrite = (out != m).then_some(out);
        Some(())
    }

    /// A block the target sent: the client owes it one Wave Confirm.
    fn owe_confirm(&mut self, block: u8) {
        if self.waves_due.is_empty() {
            self.waves_due = vec![0; 256];
        }
        let due = &mut self.waves_due[usize::from(block)];
        *due = due.saturating_add(1);
    }
}

const DISPLAYCONTROL_PDU_TYPE_CAPS: u32 = 0x0000_0005;
const DISPLAYCONTROL_PDU_TYPE_MONITOR_LAYOUT: u32 = 0x0000_0002;
const DISPLAYCONTROL_MONITOR_PRIMARY: u32 = 0x0000_0001;
const MONITOR_LAYOUT_SIZE: u32 = 40;
/// At most this many layouts pass in any [`LAYOUT_WINDOW`]: 6 a second, FreeRDP's 5 with room.
const LAYOUT_BURST: usize = 12;
const LAYOUT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

const RDPGFX_CMDID_FRAMEACKNOWLEDGE: u16 = 0x000D;
const RDPGFX_CMDID_CACHEIMPORTOFFER: u16 = 0x0010;
const RDPGFX_CMDID_CAPSADVERTISE: u16 = 0x0012;
const RDPGFX_CMDID_QOEFRAMEACKNOWLEDGE: u16 = 0x0016;
/// What only a client sends (MS-RDPEGFX 2.2.1.1): the target may not.
const GFX_CLIENT_COMMANDS: [u16; 4] = [
    RDPGFX_CMDID_FRAMEACKNOWLEDGE,
    RDPGFX_CMDID_CACHEIMPORTOFFER,
    RDPGFX_CMDID_CAPSADVERTISE,
    RDPGFX_CMDID_QOEFRAMEACKNOWLEDGE,
];
/// Map Surface to Window and to Scaled Window: RemoteApp's, which the box refuses.
const GFX_WINDOW_COMMANDS: [u16; 2] = [0x0015, 0x0018];
const GFX_V10_1: u32 = 0x000A_0100;
/// The capability sets a client may advertise, with their capsDataLength (MS-RDPEGFX
/// 2.2.3): 8.0, 8.1, 10.0, 10.1 (16 reserved bytes), 10.2 to 10.7.
const GFX_CAPS: [(u32, usize); 11] = [
    (0x0008_0004, 4),
    (0x0008_0105, 4),
    (0x000A_0002, 4),
    (GFX_V10_1, 16),
    (0x000A_0200, 4),
    (0x000A_0301, 4),
    (0x000A_0400, 4),
    (0x000A_0502, 4),
    (0x000A_0600, 4),
    (0x000A_0601, 4),
    (0x000A_0701, 4),
];
/// Every capability flag a version defines: THINCLIENT, SMALL_CACHE, AVC420_ENABLED,
/// AVC_DISABLED, AVC_THINCLIENT and SCALEDMAP_DISABLE.
const GFX_CAPS_FLAGS: u32 = 0xF3;
/// SUSPEND_FRAME_ACKNOWLEDGEMENT, and the deepest queue a client reports otherwise.
const SUSPEND_FRAME_ACKNOWLEDGEMENT: u32 = 0xFFFF_FFFF;
const MAX_QUEUE_DEPTH: u32 = 1024;

/// The target's RDPGFX PDU `pdu` on the surfaces and cache slots so far (updated): `Some(true)`
/// when it draws pixels on a surface (a fill, copy, cache or wire-to-surface command that
/// covers some), `None` when FreeRDP's client would fail it (`libfreerdp/gdi/gfx.c`,
/// `rdpgfx_main.c`): a surface that does not exist (and a deletion of one, which FreeRDP passes
/// over and no server sends), a rectangle outside its surface, a cache slot outside 1 to
/// MaxCacheSlots (4096 for a client that asked for a small cache, else 25600) or empty. FreeRDP
/// stops reading a message at the first PDU it fails, where the recorder (IronRDP) goes on: the
/// rest of the message would reach the recording and not the client's screen (red team
/// `h-red17n`).
fn gfx_draws(g: &mut Gfx, pdu: &ironrdp_egfx::pdu::GfxPdu) -> Option<bool> {
    use ironrdp_egfx::pdu::GfxPdu;
    use ironrdp_pdu::geometry::ExclusiveRectangle;
    // FreeRDP's is_rect_valid.
    let valid = |r: &ExclusiveRectangle, (w, h): (u16, u16)| {
        r.left <= r.right && r.right <= w && r.top <= r.bottom && r.bottom <= h
    };
    let small = g
        .sets
        .iter()
        .any(|(_, d)| <[u8; 4]>::try_from(d.as_slice()).is_ok_and(|f| u32::from_le_bytes(f) & GFX_SMALL_CACHE != 0));
    let max_slots = if small { 4096 } else { 25600 };
    // A rectangle of `w` × `h` at a point, as FreeRDP makes it (clamped to 16 bits).
    let at = |x: u16, y: u16, w: u16, h: u16| ExclusiveRectangle {
        left: x,
        top: y,
        right: x.saturating_add(w),
        bottom: y.saturating_add(h),
    };
    Some(match pdu {
        GfxPdu::CreateSurface(p) => {
            // Within the decoder's desktop bound (the compositor skips a side over 16,384 in
            // silence), and within the compositor's budget with the other surfaces and the
            // cache: a surface the recorder would not hold is one the client draws alone
            // (red team `h-red17r`, hole 7). A surface created again replaces the first, as
            // FreeRDP's surface table and the compositor do.
            if !crate::decode::desktop_fits(p.width, p.height) {
                return None;
            }
            let before = g.surfaces.get(&p.surface_id).map_or(0, |&(w, h)| pixel_bytes(w, h));
            let held = g.held - before + pixel_bytes(p.width, p.height);
            if held > GFX_MAX_BYTES {
                return None;
            }
            g.held = held;
            g.surfaces.insert(p.surface_id, (p.width, p.height));
            false
        }
        GfxPdu::DeleteSurface(p) => {
            let (w, h) = g.surfaces.remove(&p.surface_id)?;
            g.held -= pixel_bytes(w, h);
            false
        }
        GfxPdu::ResetGraphics(p) => {
            // Every surface (and its mapping) gone, as IronRDP's pipeline client (the
            // recorder's) drops them: FreeRDP keeps them and would draw on them where the
            // recording does not (red team `h-red17r`, hole 12). The output within the
            // decoder's desktop bound (hole 10); its monitors none, or the one desktop of that
            // size, primary: the target's monitor list is not its own to write.
            let (width, height) = (u16::try_from(p.width).ok()?, u16::try_from(p.height).ok()?);
            let one = ironrdp_pdu::gcc::Monitor {
                left: 0,
                top: 0,
                right: i32::from(width) - 1,
                bottom: i32::from(height) - 1,
                flags: ironrdp_pdu::gcc::MonitorFlags::PRIMARY,
            };
            if !crate::decode::desktop_fits(width, height) || !(p.monitors.is_empty() || p.monitors == [one]) {
                return None;
            }
            g.surfaces.clear();
            // The cache survives a reset within its cap (the compositor's, MS-RDPEGFX 3.3.1.4).
            let cached: usize = g.slots.values().map(|&(w, h)| pixel_bytes(w, h)).sum();
            let cap = if small { GFX_SMALL_CACHE_BYTES } else { GFX_CACHE_BYTES };
            if cached > cap {
                g.slots.clear();
                g.held = 0;
            } else {
                g.held = cached;
            }
            false
        }
        GfxPdu::MapSurfaceToOutput(p) => {
            g.surfaces.get(&p.surface_id)?;
            false
        }
        GfxPdu::MapSurfaceToScaledOutput(p) => {
            g.surfaces.get(&p.surface_id)?;
            false
        }
        GfxPdu::DeleteEncodingContext(p) => {
            g.surfaces.get(&p.surface_id)?;
            false
        }
        GfxPdu::SolidFill(p) => {
            let &(w, h) = g.surfaces.get(&p.surface_id)?;
            // FreeRDP's intersect_rect: the rectangle starts within the surface (and is clipped
            // to it).
            if !p.rectangles.iter().all(|r| r.left <= r.right && r.left <= w && r.top <= r.bottom && r.top <= h) {
                return None;
            }
            p.rectangles.iter().any(|r| r.left < r.right.min(w) && r.top < r.bottom.min(h))
        }
        GfxPdu::SurfaceToSurface(p) => {
            let &source = g.surfaces.get(&p.source_surface_id)?;
            let &destination = g.surfaces.get(&p.destination_surface_id)?;
            let r = &p.source_rectangle;
            if !valid(r, source) {
                return None;
            }
            let (w, h) = (r.right - r.left, r.bottom - r.top);
            if !p.destination_points.iter().all(|d| valid(&at(d.x, d.y, w, h), destination)) {
                return None;
            }
            w > 0 && h > 0 && !p.destination_points.is_empty()
        }
        GfxPdu::SurfaceToCache(p) => {
            let &surface = g.surfaces.get(&p.surface_id)?;
            let r = &p.source_rectangle;
            // Not empty (the compositor keeps the slot's old tile for an empty one, FreeRDP
            // an empty tile), and within the compositor's budget.
            let (w, h) = (r.right.wrapping_sub(r.left), r.bottom.wrapping_sub(r.top));
            if !valid(r, surface) || !(1..=max_slots).contains(&p.cache_slot) || w == 0 || h == 0 {
                return None;
            }
            let before = g.slots.get(&p.cache_slot).map_or(0, |&(w, h)| pixel_bytes(w, h));
            let held = g.held - before + pixel_bytes(w, h);
            if held > GFX_MAX_BYTES {
                return None;
            }
            g.held = held;
            g.slots.insert(p.cache_slot, (w, h));
            false
        }
        GfxPdu::CacheToSurface(p) => {
            let &surface = g.surfaces.get(&p.surface_id)?;
            let &(w, h) = g.slots.get(&p.cache_slot)?;
            let empty = |r: &ExclusiveRectangle| r.left == r.right || r.top == r.bottom;
            let rects: Vec<_> = p.destination_points.iter().map(|d| at(d.x, d.y, w, h)).collect();
            if !rects.iter().all(|r| empty(r) || valid(r, surface)) {
                return None;
            }
            rects.iter().any(|r| !empty(r))
        }
        GfxPdu::EvictCacheEntry(p) => {
            let (w, h) = g.slots.remove(&p.cache_slot)?;
            g.held -= pixel_bytes(w, h);
            false
        }
        GfxPdu::WireToSurface1(p) => {
            let &surface = g.surfaces.get(&p.surface_id)?;
            let r = &p.destination_rectangle;
            if !valid(r, surface) {
                return None;
            }
            // Uncompressed: exactly the rectangle's pixels, 4 bytes each. FreeRDP 3 fails a
            // shorter one (and the rest of the message) where the recorder draws on; bytes past
            // the rectangle are drawn by no one (red team `h-red17r`, hole 15).
            if p.codec_id == ironrdp_egfx::pdu::Codec1Type::Uncompressed
                && p.bitmap_data.len() != pixel_bytes(r.right - r.left, r.bottom - r.top)
            {
                return None;
            }
            r.left < r.right && r.top < r.bottom
        }
        GfxPdu::WireToSurface2(p) => {
            g.surfaces.get(&p.surface_id)?;
            true
        }
        _ => false,
    })
}

/// The pixel bytes of a `w` × `h` surface or tile in the recorder's compositor.
fn pixel_bytes(w: u16, h: u16) -> usize {
    usize::from(w) * usize::from(h) * 4
}

/// The recorder's compositor budget (IronRDP's `MAX_COMPOSITOR_BYTES`) for surfaces and cache.
const GFX_MAX_BYTES: usize = 256 * 1024 * 1024;
/// The cache the compositor keeps over a Reset Graphics (IronRDP's `CACHE_BYTES`,
/// `SMALL_CACHE_BYTES`): past it, the cache goes with the surfaces.
const GFX_CACHE_BYTES: usize = 100 * 1024 * 1024;
const GFX_SMALL_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// How long after a frame ends the client may go on sending input without acknowledging it.
pub const ACK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Frames a client may owe acknowledgements for (beyond, the oldest are forgotten).
const MAX_FRAMES_DUE: usize = 1024;
/// RDPGFX_CAPS_FLAG_SMALL_CACHE.
const GFX_SMALL_CACHE: u32 = 0x02;
/// A day in ms: Start Frame time stamps are times of day.
const DAY_MS: u32 = 24 * 60 * 60 * 1000;
/// How far the frames' time stamps may run ahead of the box's clock since the first frame.
const FRAME_CLOCK_SLACK_MS: u32 = 10_000;
const MAX_MONITORS: usize = 16;
/// MaxMonitorAreaFactorA and B: the server's bound on a monitor's area (xrdp and Windows send
/// 8192 or less).
const MAX_AREA_FACTOR: u32 = 0x1_0000;
/// A monitor's Left and Top: within 16 monitors of 8192 pixels.
const MAX_POSITION: u32 = 16 * 8192;

const EVENTID_SC_READY: u16 = 0x0001;
const EVENTID_CS_READY: u16 = 0x0002;
const EVENTID_TOUCH: u16 = 0x0003;
const EVENTID_SUSPEND_TOUCH: u16 = 0x0004;
const EVENTID_RESUME_TOUCH: u16 = 0x0005;
const EVENTID_DISMISS_HOVERING_CONTACT: u16 = 0x0006;
const EVENTID_PEN: u16 = 0x0008;
const RDPINPUT_PROTOCOL_V300: u32 = 0x0003_0000;
const RDPINPUT_VERSIONS: [u32; 4] = [0x0001_0000, 0x0001_0001, 0x0002_0000, RDPINPUT_PROTOCOL_V300];
const SC_READY_MULTIPEN_INJECTION_SUPPORTED: u32 = 0x1;
/// READY_FLAGS_SHOW_TOUCH_VISUALS, READY_FLAGS_DISABLE_TIMESTAMP_INJECTION,
/// CS_READY_FLAGS_ENABLE_MULTIPEN_INJECTION.
const CS_READY_FLAGS: u32 = 0x7;
const MAX_CONTACTS: u16 = 256;
const MAX_PENS: u16 = 4;
const MAX_FRAMES: u16 = 256;
/// CONTACT_FLAG_DOWN, _UPDATE, _UP, _INRANGE, _INCONTACT, _CANCELED.
const CONTACT_FLAGS: u32 = 0x3F;
/// CONTACT_DATA_CONTACTRECT_PRESENT, _ORIENTATION_PRESENT, _PRESSURE_PRESENT.
const TOUCH_FIELDS: u16 = 0x7;
/// PEN_CONTACT_PENFLAGS_PRESENT, _PRESSURE_PRESENT, _ROTATION_PRESENT, _TILTX_PRESENT, _TILTY_PRESENT.
const PEN_FIELDS: u16 = 0x1F;
/// PEN_FLAG_BARREL_PRESSED, _ERASER_PRESSED, _INVERTED.
const PEN_FLAGS: u32 = 0x7;

const SNDC_CLOSE: u8 = 0x01;
const SNDC_WAVE: u8 = 0x02;
const SNDC_SETVOLUME: u8 = 0x03;
const SNDC_SETPITCH: u8 = 0x04;
const SNDC_WAVECONFIRM: u8 = 0x05;
const SNDC_TRAINING: u8 = 0x06;
const SNDC_FORMATS: u8 = 0x07;
const SNDC_QUALITYMODE: u8 = 0x0C;
const SNDC_WAVE2: u8 = 0x0D;
/// TSSNDCAPS_ALIVE, TSSNDCAPS_VOLUME, TSSNDCAPS_PITCH.
const TSSNDCAPS: u32 = 0x7;
/// How many distinct formats a sound channel's target may offer in all (Windows offers a few
/// dozen): each the client answers is a bit of its choosing.
const MAX_FORMATS_SEEN: usize = 512;
const MAX_FORMATS: u16 = 256;
const MAX_FORMAT_EXTRA: u16 = 1024;
/// Training PDUs the client has not confirmed yet (xrdp sends one).
const MAX_TRAININGS_DUE: usize = 16;

/// Whether monitors (left, top, right, bottom; right and bottom exclusive) make one desktop:
/// none overlapping, and each joined to the others through shared edges (a layout Windows and
/// xrdp accept; FreeRDP and mstsc send no other).
fn one_desktop(rects: &[(i64, i64, i64, i64)]) -> bool {
    let overlap = |a: &(i64, i64, i64, i64), b: &(i64, i64, i64, i64)| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    // Touching along an edge with some length in common (a corner is no join).
    let joined = |a: &(i64, i64, i64, i64), b: &(i64, i64, i64, i64)| {
        let vertical = (a.2 == b.0 || b.2 == a.0) && a.1 < b.3 && b.1 < a.3;
        let horizontal = (a.3 == b.1 || b.3 == a.1) && a.0 < b.2 && b.0 < a.2;
        vertical || horizontal
    };
    for (i, a) in rects.iter().enumerate() {
        if rects[i + 1..].iter().any(|b| overlap(a, b)) {
            return false;
        }
    }
    let mut reached = vec![false; rects.len()];
    let mut todo = vec![0];
    reached[0] = true;
    while let Some(i) = todo.pop() {
        for (j, b) in rects.iter().enumerate() {
            if !reached[j] && joined(&rects[i], b) {
                reached[j] = true;
                todo.push(j);
            }
        }
    }
    reached.iter().all(|&r| r)
}

fn frame_count(c: &mut Cursor<'_>) -> Option<u16> {
    let n = c.two_unsigned()?;
    (1..=MAX_FRAMES).contains(&n).then_some(n)
}

/// RDPINPUT_CONTACT_DATA (MS-RDPEI 2.2.3.3.1.2).
fn touch_contact(c: &mut Cursor<'_>) -> Option<()> {
    c.u8()?; // contactId
    let fields = c.two_unsigned()?;
    c.four_signed()?; // x
    c.four_signed()?; // y
    let flags = c.four_unsigned()?;
    if fields & !TOUCH_FIELDS != 0 || flags & !CONTACT_FLAGS != 0 || flags == 0 {
        return None;
    }
    if fields & 0x1 != 0 {
        // contactRectLeft, Top, Right, Bottom.
        for _ in 0..4 {
            c.two_signed()?;
        }
    }
    if fields & 0x2 != 0 && c.four_unsigned()? > 359 {
        return None;
    }
    if fields & 0x4 != 0 && c.four_unsigned()? > 1024 {
        return None;
    }
    Some(())
}

/// RDPINPUT_PEN_CONTACT (MS-RDPEI 2.2.3.7.1.2).
fn pen_contact(c: &mut Cursor<'_>) -> Option<()> {
    c.u8()?; // deviceId
    let fields = c.two_unsigned()?;
    c.four_signed()?; // x
    c.four_signed()?; // y
    let flags = c.four_unsigned()?;
    if fields & !PEN_FIELDS != 0 || flags & !CONTACT_FLAGS != 0 || flags == 0 {
        return None;
    }
    if fields & 0x01 != 0 && c.four_unsigned()? & !PEN_FLAGS != 0 {
        return None;
    }
    if fields & 0x02 != 0 && c.four_unsigned()? > 1024 {
        return None;
    }
    if fields & 0x04 != 0 && c.two_unsigned()? > 359 {
        return None;
    }
    for tilt in [0x08, 0x10] {
        if fields & tilt != 0 && c.two_signed()?.unsigned_abs() > 90 {
            return None;
        }
    }
    Some(())
}

/// Little-endian reads over a message; every read fails past its end.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn done(&self) -> bool {
        self.at == self.data.len()
    }

    /// `extra` more bytes after `first`'s low `bits`, big-endian (MS-RDPEI 2.2.2).
    fn more(&mut self, first: u8, bits: u32, extra: usize) -> Option<u64> {
        let mut v = u64::from(first) & ((1 << bits) - 1);
        for _ in 0..extra {
            v = (v << 8) | u64::from(self.u8()?);
        }
        Some(v)
    }

    /// A signed value: a sign bit and a magnitude; a negative zero is no value.
    fn signed(negative: bool, v: u64) -> Option<i64> {
        let v = i64::try_from(v).ok()?;
        match (negative, v) {
            (true, 0) => None,
            (true, v) => Some(-v),
            (false, v) => Some(v),
        }
    }

    /// TWO_BYTE_UNSIGNED_INTEGER: c (1 bit) says whether a second byte follows.
    fn two_unsigned(&mut self) -> Option<u16> {
        let b = self.u8()?;
        u16::try_from(self.more(b, 7, usize::from(b >> 7))?).ok()
    }

    /// TWO_BYTE_SIGNED_INTEGER: c (1 bit), s (1 bit), 6 bits.
    fn two_signed(&mut self) -> Option<i16> {
        let b = self.u8()?;
        let v = self.more(b, 6, usize::from(b >> 7))?;
        i16::try_from(Self::signed(b & 0x40 != 0, v)?).ok()
    }

    /// FOUR_BYTE_UNSIGNED_INTEGER: c (2 bits) counts the bytes that follow.
    fn four_unsigned(&mut self) -> Option<u32> {
        let b = self.u8()?;
        u32::try_from(self.more(b, 6, usize::from(b >> 6))?).ok()
    }

    /// FOUR_BYTE_SIGNED_INTEGER: c (2 bits), s (1 bit), 5 bits.
    fn four_signed(&mut self) -> Option<i32> {
        let b = self.u8()?;
        let v = self.more(b, 5, usize::from(b >> 6))?;
        i32::try_from(Self::signed(b & 0x20 != 0, v)?).ok()
    }

    /// EIGHT_BYTE_UNSIGNED_INTEGER: c (3 bits) counts the bytes that follow.
    fn eight_unsigned(&mut self) -> Option<u64> {
        let b = self.u8()?;
        self.more(b, 5, usize::from(b >> 5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn display_caps() -> Vec<u8> {
        [5u32, 20, 16, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A Monitor Layout PDU of one primary monitor as FreeRDP's `/dynamic-resolution` sends it.
    fn layout(width: u32, height: u32) -> Vec<u8> {
        let monitor = [1u32, 0, 0, width, height, width, height, 0, 100, 100];
        let mut m: Vec<u8> = [2u32, 56, 40, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
        m.extend(monitor.iter().flat_map(|v| v.to_le_bytes()));
        m
    }

    fn display() -> Reader {
        let mut r = Reader::new(Protocol::DisplayControl);
        r.judge(false, &display_caps()).unwrap();
        r
    }

    #[test]
    fn display_control_reads_caps_and_layouts_exactly() {
        let mut r = display();
        r.judge(true, &layout(1024, 768)).unwrap();
        r.judge(true, &layout(8192, 200)).unwrap();
        // FreeRDP 2.11's `/dynamic-resolution` layout, as captured through the box: 1024x576,
        // 330x177 mm, no scale factors.
        let freerdp = "0200000038000000280000000100000001000000000000000000000000040000\
                       400200004a010000b1000000000000000000000000000000";
        r.judge(true, &hex::decode(freerdp.replace(' ', "")).unwrap()).unwrap();
        let refused = |m: &[u8], from_client: bool| display().judge(from_client, m).is_err();
        // The wrong direction, either way.
        assert!(refused(&layout(1024, 768), false));
        assert!(refused(&display_caps(), true));
        // A second Caps.
        assert!(display().judge(false, &display_caps()).is_err());
        // A trailing byte, with the length saying so or not.
        let mut m = layout(1024, 768);
        m.push(0);
        assert!(refused(&m, true));
        m[4] = 57;
        assert!(refused(&m, true));
        // A wrong length.
        let mut m = layout(1024, 768);
        m[4] = 60;
        assert!(refused(&m, true));
        // MonitorLayoutSize other than 40.
        let mut m = layout(1024, 768);
        m[8] = 44;
        assert!(refused(&m, true));
        // Out of range: odd or small width, unknown orientation, scale, flags, no primary.
        for (at, v) in
            [(28, 1023), (28, 198), (32, 8194), (44, 45), (48, 99), (48, 501), (52, 120), (16, 3), (16, 0), (36, 9)]
        {
            let mut m = layout(1024, 768);
            m[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes());
            assert!(refused(&m, true), "{at}: {v}");
        }
        // Seventeen monitors, or none.
        let mut m = layout(1024, 768);
        m[12] = 17;
        assert!(refused(&m, true));
        let m: Vec<u8> = [2u32, 16, 40, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(refused(&m, true));
        // Caps out of range.
        let mut caps = display_caps();
        caps[8] = 0;
        assert!(Reader::new(Protocol::DisplayControl).judge(false, &caps).is_err());
    }

    #[test]
    fn display_layouts_fit_the_caps_the_client_and_a_rate() {
        use std::time::{Duration, Instant};
        // Before the target's Caps: refused.
        assert!(Reader::new(Protocol::DisplayControl).judge(true, &layout(1024, 768)).is_err());
        // No more monitors than the client's core data announced (and the Caps allow).
        let two = |second_left: u32| {
            let mut m: Vec<u8> = [2u32, 96, 40, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
            for monitor in [[1u32, 0, 0, 1024, 768, 0, 0, 0, 0, 0], [0, second_left, 0, 1024, 768, 0, 0, 0, 0, 0]] {
                m.extend(monitor.iter().flat_map(|v| v.to_le_bytes()));
            }
            m
        };
        let with = |client: usize, caps_monitors: u32| {
            let mut r = Reader::display_control(client);
            let caps: Vec<u8> = [5u32, 20, caps_monitors, 8192, 8192].iter().flat_map(|v| v.to_le_bytes()).collect();
            r.judge(false, &caps).unwrap();
            r
        };
        assert_eq!(with(2, 2).judge(true, &two(1024)), Ok(true));
        assert!(with(1, 2).judge(true, &two(1024)).is_err(), "the client announced one");
        assert!(with(2, 1).judge(true, &two(1024)).is_err(), "the target takes one");
        assert!(with(2, 2).judge(true, &two(1000)).is_err(), "overlapping");
        assert!(with(2, 2).judge(true, &two(1030)).is_err(), "apart");
        // The total area within the Caps' bound: two 1024x768 monitors on 1 x 1000 x 1000.
        let mut r = Reader::display_control(2);
        let caps: Vec<u8> = [5u32, 20, 1, 1000, 1000].iter().flat_map(|v| v.to_le_bytes()).collect();
        r.judge(false, &caps).unwrap();
        assert!(r.judge(true, &layout(1024, 768)).unwrap());
        assert!(r.judge(true, &two(1024)).is_err(), "larger than the caps allow");
        // Physical size and scale factors: both of a pair or neither.
        let mut m = layout(1024, 768);
        m[40..44].copy_from_slice(&0u32.to_le_bytes());
        assert!(display().judge(true, &m).is_err());
        let mut m = layout(1024, 768);
        m[52..56].copy_from_slice(&0u32.to_le_bytes());
        assert!(display().judge(true, &m).is_err());
        // A repeat is dropped; 12 real changes pass in any 2 s, then one more each time one of
        // them is 2 s old.
        let mut r = display();
        let start = Instant::now();
        assert_eq!(r.judge_at(true, &layout(1024, 768), start), Ok(true));
        assert_eq!(r.judge_at(true, &layout(1024, 768), start + Duration::from_secs(60)), Ok(false));
        let mut r = display();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let passed: Vec<bool> =
            (0..20u32).map(|i| r.judge_at(true, &layout(1024 + 2 * i, 768), at(u64::from(i) * 50)).unwrap()).collect();
        assert_eq!(passed.iter().filter(|p| **p).count(), 12);
        assert!(!r.judge_at(true, &layout(2000, 768), at(1999)).unwrap());
        assert!(r.judge_at(true, &layout(2002, 768), at(2000)).unwrap());
        // FreeRDP's pace (one every 200 ms) always passes.
        let mut r = display();
        assert!(
            (0..100u32)
                .all(|i| r.judge_at(true, &layout(1024 + 2 * (i % 50), 768 + i % 2), at(u64::from(i) * 200)).unwrap())
        );
    }

    /// RDPGFX PDU: cmdId, flags 0, pduLength, body.
    fn gfx(cmd: u16, body: &[u8]) -> Vec<u8> {
        let mut m = cmd.to_le_bytes().to_vec();
        m.extend(0u16.to_le_bytes());
        m.extend(u32::try_from(8 + body.len()).unwrap().to_le_bytes());
        m.extend(body);
        m
    }

    #[test]
    fn graphics_reads_each_pdu_by_its_command_and_side() {
        let caps = |sets: &[(u32, &[u8])]| {
            let mut b = u16::try_from(sets.len()).unwrap().to_le_bytes().to_vec();
            for (version, data) in sets {
                b.extend(version.to_le_bytes());
                b.extend(u32::try_from(data.len()).unwrap().to_le_bytes());
                b.extend(*data);
            }
            gfx(0x12, &b)
        };
        let good_caps = caps(&[(0x0008_0004, &[0, 0, 0, 0]), (0x000A_0100, &[0; 16]), (0x000A_0002, &[0x22, 0, 0, 0])]);
        let end = |frame: u32| gfx(0x0C, &frame.to_le_bytes());
        let ack = |frame: u32, total: u32| {
            let mut b = 0u32.to_le_bytes().to_vec();
            b.extend(frame.to_le_bytes());
            b.extend(total.to_le_bytes());
            gfx(0x0D, &b)
        };
        let confirm = gfx(0x13, &[0x02, 0, 0x0A, 0, 4, 0, 0, 0, 0x20, 0, 0, 0]);
        let mut r = Reader::new(Protocol::Graphics);
        r.judge(true, &good_caps).unwrap();
        r.judge(false, &confirm).unwrap();
        r.judge(true, &gfx(0x10, &[0, 0])).unwrap();
        r.judge(false, &crate::gfx::drawn_frames(1, 2, true)).unwrap();
        r.judge(true, &ack(2, 2)).unwrap();
        r.judge(true, &[ack(1, 2), gfx(0x16, &[1, 0, 0, 0, 9, 9, 9, 9, 1, 0, 1, 0])].concat()).unwrap();
        let refused = |m: &[u8], from_client: bool| {
            let mut r = Reader::new(Protocol::Graphics);
            r.judge(false, &crate::gfx::drawn_frames(1, 2, true)).unwrap();
            r.judge(from_client, m).is_err()
        };
        // Controls.
        assert!(!refused(&good_caps, true) && !refused(&ack(1, 2), true));
        // Unknown commands, the other side's, flags, lengths, trailing bytes.
        assert!(refused(&gfx(0x7777, &[1, 2, 3]), true) && refused(&gfx(0x7777, &[1, 2, 3]), false));
        assert!(refused(&end(3), true) && refused(&ack(1, 2), false) && refused(&good_caps, false));
        let mut flagged = ack(1, 2);
        flagged[2] = 1;
        assert!(refused(&flagged, true));
        let mut long = ack(1, 2);
        long[4] = 21;
        long.push(0);
        assert!(refused(&long, true));
        let mut trailing = end(1);
        trailing[4] = 13;
        trailing.push(0);
        assert!(refused(&trailing, false));
        assert!(refused(&[ack(1, 2), vec![0x0D]].concat(), true), "a cut header");
        // Acknowledgements of frames not ended, or counting more frames than ended; a QoE twice.
        assert!(refused(&ack(3, 2), true) && refused(&ack(1, 3), true));
        let qoe = gfx(0x16, &[1, 0, 0, 0, 9, 9, 9, 9, 1, 0, 1, 0]);
        assert!(refused(&[qoe.clone(), qoe].concat(), true));
        // Caps: twice, unknown versions, wrong lengths, unknown flags, 10.1's reserved bytes.
        assert!(refused(&[good_caps.clone(), good_caps.clone()].concat(), true));
        assert!(refused(&caps(&[(0x000A_0800, &[0; 4])]), true));
        assert!(refused(&caps(&[(0x000A_0002, &[0; 8])]), true));
        assert!(refused(&caps(&[(0x000A_0002, &[0, 1, 0, 0])]), true));
        assert!(refused(&caps(&[(0x000A_0100, &[1; 16])]), true));
        assert!(refused(&caps(&[(0x000A_0002, &[0; 4]), (0x000A_0002, &[0; 4])]), true));
        // A cache import offer that is not empty, or twice; a reply that imports; a confirm
        // nobody asked for; RemoteApp's window mapping.
        assert!(refused(&gfx(0x10, &[1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 0]), true));
        assert!(refused(&[gfx(0x10, &[0, 0]), gfx(0x10, &[0, 0])].concat(), true));
        assert!(refused(&gfx(0x11, &[1, 0, 1, 0]), false));
        assert!(!refused(&gfx(0x11, &[0, 0]), false));
        assert!(refused(&confirm, false));
        assert!(refused(&gfx(0x15, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), false));
        // Reset Graphics: its padding zero (340 bytes whole).
        let mut reset = gfx(0x0E, &[0; 332]);
        reset[8..12].copy_from_slice(&1024u32.to_le_bytes());
        reset[12..16].copy_from_slice(&768u32.to_le_bytes());
        assert!(!refused(&reset, false));
        reset[300] = 0x41;
        assert!(refused(&reset, false), "bytes in the padding");
    }

    fn input_pdu(event: u16, body: &[u8]) -> Vec<u8> {
        let mut m = event.to_le_bytes().to_vec();
        m.extend(u32::try_from(6 + body.len()).unwrap().to_le_bytes());
        m.extend(body);
        m
    }

    fn input_ready() -> Reader {
        let mut r = Reader::new(Protocol::Input);
        r.judge(false, &input_pdu(1, &0x0002_0000u32.to_le_bytes())).unwrap();
        let mut ready = 0u32.to_le_bytes().to_vec();
        ready.extend(0x0002_0000u32.to_le_bytes());
        ready.extend(10u16.to_le_bytes());
        r.judge(true, &input_pdu(2, &ready)).unwrap();
        r
    }

    /// A touch event: encodeTime 0x1234 (4-byte, 1 extra), one frame of one contact at
    /// (-300, 200), down, in range and in contact, with pressure 512.
    fn touch() -> Vec<u8> {
        let body = [
            0x52, 0x34, // encodeTime
            0x01, // frameCount
            0x01, // contactCount
            0x00, // frameOffset
            0x00, // contactId
            0x04, // fieldsPresent: pressure
            0x61, 0x2C, // x = -300: c=1, s=1, 0x12C
            0x40, 0xC8, // y = 200: c=1, s=0
            0x19, // contactFlags: DOWN | INRANGE | INCONTACT
            0x42, 0x00, // pressure 512
        ];
        input_pdu(3, &body)
    }

    #[test]
    fn input_reads_each_event_exactly() {
        let mut r = input_ready();
        r.judge(true, &touch()).unwrap();
        r.judge(true, &input_pdu(6, &[3])).unwrap();
        r.judge(false, &input_pdu(4, &[])).unwrap();
        r.judge(false, &input_pdu(5, &[])).unwrap();
        // A pen: one frame, one pen, pen flags (eraser) and tilt X -45.
        let pen = [0x00, 0x01, 0x01, 0x00, 0x00, 0x09, 0x10, 0x10, 0x19, 0x02, 0x6D];
        r.judge(true, &input_pdu(8, &pen)).unwrap();
        let refused = |m: &[u8], from_client: bool| input_ready().judge(from_client, m).is_err();
        // Wrong direction.
        assert!(refused(&touch(), false));
        assert!(refused(&input_pdu(4, &[]), true));
        // A trailing byte (with the length covering it), a wrong length.
        let mut m = touch();
        m.push(0);
        m[2] += 1;
        assert!(refused(&m, true));
        let mut m = touch();
        m[2] += 1;
        assert!(refused(&m, true));
        // Out of range: pressure 1025, unknown contact flags, unknown fields, tilt 91, no frames.
        let mut m = touch();
        m[18..20].copy_from_slice(&[0x44, 0x01]);
        assert!(refused(&m, true));
        let mut m = touch();
        m[17] = 0x40;
        assert!(refused(&m, true));
        let mut m = touch();
        m[12] = 0x0C;
        assert!(refused(&m, true));
        let mut pen91 = pen[..10].to_vec();
        pen91.extend([0x80, 0x5B]);
        assert!(refused(&input_pdu(8, &pen91), true));
        assert!(refused(&input_pdu(3, &[0x00, 0x00]), true));
        // A negative zero.
        let mut m = touch();
        m[13..15].copy_from_slice(&[0x60, 0x00]);
        assert!(refused(&m, true));
        // Events before the handshake, a second SC_READY, an unknown version or event.
        assert!(Reader::new(Protocol::Input).judge(true, &touch()).is_err());
        assert!(input_ready().judge(false, &input_pdu(1, &0x0002_0000u32.to_le_bytes())).is_err());
        assert!(Reader::new(Protocol::Input).judge(false, &input_pdu(1, &0x0002_0001u32.to_le_bytes())).is_err());
        assert!(refused(&input_pdu(7, &[]), true));
        assert!(refused(&input_pdu(9, &[]), false));
    }

    #[test]
    fn the_variable_integers_read_as_the_spec_writes_them() {
        let read = |bytes: &[u8]| {
            let mut c = Cursor::new(bytes);
            (c.two_unsigned(), Cursor::new(bytes).four_signed(), Cursor::new(bytes).eight_unsigned())
        };
        assert_eq!(read(&[0x7F]).0, Some(0x7F));
        assert_eq!(read(&[0x80, 0x7F]).0, Some(0x7F), "FreeRDP writes 0x7F in two bytes");
        assert_eq!(read(&[0xFF, 0xFF]).0, Some(0x7FFF));
        assert_eq!(read(&[0xFF, 0xFF, 0xFF, 0xFF]).1, Some(-0x1FFF_FFFF));
        assert_eq!(read(&[0xE0, 1, 2, 3, 4, 5, 6, 7]).2, Some(0x01_0203_0405_0607));
        assert_eq!(read(&[0xE0, 1]).2, None, "cut short");
    }

    fn sound(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, 0];
        m.extend(u16::try_from(body.len()).unwrap().to_le_bytes());
        m.extend(body);
        m
    }

    /// Formats and version with one PCM format (no extra data).
    fn formats(flags: u32) -> Vec<u8> {
        let mut b = flags.to_le_bytes().to_vec();
        b.extend([0; 10]);
        b.extend(1u16.to_le_bytes());
        b.push(0);
        b.extend(6u16.to_le_bytes());
        b.push(0);
        b.extend([1, 0, 2, 0, 0x44, 0xAC, 0, 0, 0x10, 0xB1, 2, 0, 4, 0, 16, 0, 0, 0]);
        sound(7, &b)
    }

    #[test]
    fn sound_reads_each_message_exactly() {
        let mut r = Reader::new(Protocol::Audio);
        assert!(r.judge(true, &formats(1)).is_err(), "client formats before the target's");
        let mut r = Reader::new(Protocol::Audio);
        r.judge(false, &formats(0)).unwrap();
        r.judge(true, &formats(1)).unwrap();
        assert!(r.judge(true, &formats(1)).is_err(), "client formats twice");
        r.judge(true, &sound(0x0C, &[2, 0, 0, 0])).unwrap();
        r.judge(false, &sound(6, &[1, 0, 0, 0])).unwrap();
        r.judge(true, &sound(6, &[1, 0, 0, 0])).unwrap();
        // xrdp's Training PDU (`sound_send_training`): wPackSize 1024, the body's size.
        let mut training = vec![1, 0, 0, 4];
        training.extend([0; 1020]);
        r.judge(false, &sound(6, &training)).unwrap();
        r.judge(true, &sound(6, &[1, 0, 0, 4])).unwrap();
        training[3] = 5;
        assert!(r.judge(false, &sound(6, &training)).is_err(), "wPackSize is neither size");
        // Wave Info (the sound is 4 + 100 bytes) and its Wave PDU; then a Wave2.
        let mut info = sound(2, &[1, 0, 0, 0, 7, 0, 0, 0, 9, 9, 9, 9]);
        info[2..4].copy_from_slice(&112u16.to_le_bytes());
        r.judge(false, &info).unwrap();
        let mut wave = vec![0; 4];
        wave.extend([0x5A; 100]);
        r.judge(false, &wave).unwrap();
        r.judge(true, &sound(5, &[1, 0, 7, 0])).unwrap();
        let mut wave2 = vec![0; 12];
        wave2.extend([0xA5; 300]);
        r.judge(false, &sound(0x0D, &wave2)).unwrap();
        r.judge(false, &sound(1, &[])).unwrap();
        let refused = |m: &[u8], from_client: bool| Reader::new(Protocol::Audio).judge(from_client, m).is_err();
        // The client may send no sound, close or wave; the target no quality mode or confirm.
        assert!(refused(&sound(0x0D, &wave2), true));
        assert!(refused(&sound(2, &[0; 12]), true));
        assert!(refused(&sound(0x0C, &[2, 0, 0, 0]), false));
        assert!(refused(&sound(5, &[1, 0, 7, 0]), false));
        // xrdp's microphone types, crypt keys and UDP waves.
        for kind in [8, 9, 10, 11, 39, 40, 41, 42] {
            assert!(refused(&sound(kind, &[0; 4]), true), "{kind}");
            assert!(refused(&sound(kind, &[0; 4]), false), "{kind}");
        }
        // A reader that has seen the target's formats and a wave of block 7 (its Wave PDU
        // too): the client may answer either.
        let primed = || {
            let mut r = Reader::new(Protocol::Audio);
            r.judge(false, &formats(0)).unwrap();
            r.judge(false, &info).unwrap();
            r.judge(false, &wave).unwrap();
            r
        };
        let refused_after = |m: &[u8]| primed().judge(true, m).is_err();
        assert!(!refused_after(&formats(1)) && !refused_after(&sound(5, &[1, 0, 7, 0])), "controls");
        // A trailing byte, a wrong BodySize, unknown caps flags.
        let mut m = formats(1);
        m.push(0);
        assert!(refused_after(&m));
        let mut m = sound(5, &[1, 0, 7, 0]);
        m[2] = 5;
        assert!(refused_after(&m));
        assert!(refused_after(&formats(8)));
        // Quality mode: out of range, reserved bits, before the client's formats, twice.
        let mut r = primed();
        r.judge(true, &formats(1)).unwrap();
        assert!(r.clone().judge(true, &sound(0x0C, &[3, 0, 0, 0])).is_err());
        assert!(r.clone().judge(true, &sound(0x0C, &[2, 0, 1, 0])).is_err());
        assert!(refused_after(&sound(0x0C, &[2, 0, 0, 0])));
        r.judge(true, &sound(0x0C, &[2, 0, 0, 0])).unwrap();
        assert!(r.judge(true, &sound(0x0C, &[2, 0, 0, 0])).is_err());
        // Confirms: of a block not sent, twice, with a pad; of a training not sent or changed.
        assert!(refused_after(&sound(5, &[1, 0, 8, 0])));
        assert!(refused_after(&sound(5, &[1, 0, 7, 1])));
        let mut r = primed();
        r.judge(true, &sound(5, &[0xAA, 0xBB, 7, 0])).unwrap();
        assert!(r.judge(true, &sound(5, &[1, 0, 7, 0])).is_err(), "block 7 confirmed twice");
        assert!(refused_after(&sound(6, &[1, 0, 0, 0])));
        let mut r = primed();
        r.judge(false, &sound(6, &[1, 0, 0, 0])).unwrap();
        assert!(r.clone().judge(true, &sound(6, &[2, 0, 0, 0])).is_err());
        r.judge(true, &sound(6, &[1, 0, 0, 0])).unwrap();
        assert!(r.judge(true, &sound(6, &[1, 0, 0, 0])).is_err(), "training confirmed twice");
        // A Wave PDU of another length than announced, or without its zero pad.
        let mut r = Reader::new(Protocol::Audio);
        r.judge(false, &info).unwrap();
        assert!(r.judge(false, &wave[..103]).is_err());
        let mut r = Reader::new(Protocol::Audio);
        r.judge(false, &info).unwrap();
        let mut padded = wave.clone();
        padded[0] = 1;
        assert!(r.judge(false, &padded).is_err());
    }
}
