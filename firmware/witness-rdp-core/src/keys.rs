//! Typed keys: the client's keyboard input (fast-path and slow-path, scancodes and Unicode events)
//! as text, for the opt-in key track of an RDP recording. Sans-IO: fed the client's PDUs as the
//! relay passed them, it yields what was typed. Scancodes are read through the keyboard layout the
//! client announced in its core data (US, UK and German are known; any other is read as US, which
//! the key track's header states). Shift, Caps Lock (also from the client's toggle sync), Num Lock
//! and AltGr are followed; a key pressed with Ctrl or Alt is a shortcut, not text, and is left out.
//!
//! Keystrokes include whatever the user types into the target, passwords too: the box records them
//! only when `[recording] rdp_keystrokes = true`.

use ironrdp_core::decode;
use ironrdp_pdu::input::InputEvent;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags as FpFlags, SynchronizeFlags};
use ironrdp_pdu::input::sync::SyncToggleFlags;
use ironrdp_pdu::mcs::{McsMessage, SendDataIndicationCtx};
use ironrdp_pdu::rdp::headers::{ShareControlPdu, ShareDataPdu, decode_share_control};
use ironrdp_pdu::x224::X224;

/// Text held between two [`KeyTrack::take`] calls at most: a client flooding key events cannot
/// grow it without bound.
pub const MAX_PENDING: usize = 64 << 10;

/// The keyboard layouts the box reads scancodes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Us,
    Uk,
    German,
}

impl Layout {
    /// The layout for a Windows keyboard layout id (`KLID`, as in the client core data); unknown
    /// ones are read as US (`false`: not known).
    pub fn from_id(id: u32) -> (Self, bool) {
        match id {
            0x0409 => (Self::Us, true),
            0x0809 => (Self::Uk, true),
            0x0407 => (Self::German, true),
            _ => (Self::Us, false),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Us => "us",
            Self::Uk => "uk",
            Self::German => "de",
        }
    }

    /// The character a key makes: plain, with Shift, with AltGr.
    fn char(self, code: u8, shift: bool, altgr: bool) -> Option<char> {
        let (plain, shifted) = US.iter().find(|(c, _, _)| *c == code).map(|&(_, p, s)| (p, s))?;
        let (plain, shifted, alt) = match self {
            Self::Us => (plain, shifted, None),
            Self::Uk => match code {
                0x03 => ('2', '"', None),
                0x04 => ('3', '£', None),
                0x28 => ('\'', '@', None),
                0x2B => ('#', '~', None),
                0x29 => ('`', '¬', None),
                0x56 => ('\\', '|', None),
                _ => (plain, shifted, None),
            },
            Self::German => match code {
                0x02 => ('1', '!', None),
                0x03 => ('2', '"', Some('²')),
                0x04 => ('3', '§', Some('³')),
                0x07 => ('6', '&', None),
                0x08 => ('7', '/', Some('{')),
                0x09 => ('8', '(', Some('[')),
                0x0A => ('9', ')', Some(']')),
                0x0B => ('0', '=', Some('}')),
                0x0C => ('ß', '?', Some('\\')),
                0x0D => ('´', '`', None),
                0x10 => ('q', 'Q', Some('@')),
                0x12 => ('e', 'E', Some('€')),
                0x15 => ('z', 'Z', None),
                0x1A => ('ü', 'Ü', None),
                0x1B => ('+', '*', Some('~')),
                0x27 => ('ö', 'Ö', None),
                0x28 => ('ä', 'Ä', None),
                0x29 => ('^', '°', None),
                0x2B => ('#', '\'', None),
                0x2C => ('y', 'Y', None),
                0x33 => (',', ';', None),
                0x34 => ('.', ':', None),
                0x35 => ('-', '_', None),
                0x56 => ('<', '>', Some('|')),
                _ => (plain, shifted, None),
            },
        };
        if altgr {
            return alt;
        }
        Some(if shift { shifted } else { plain })
    }
}

/// Set-1 scancodes of the keys that type a character on a US keyboard: plain, with Shift.
const US: &[(u8, char, char)] = &[
    (0x02, '1', '!'),
    (0x03, '2', '@'),
    (0x04, '3', '#'),
    (0x05, '4', '$'),
    (0x06, '5', '%'),
    (0x07, '6', '^'),
    (0x08, '7', '&'),
    (0x09, '8', '*'),
    (0x0A, '9', '('),
    (0x0B, '0', ')'),
    (0x0C, '-', '_'),
    (0x0D, '=', '+'),
    (0x10, 'q', 'Q'),
    (0x11, 'w', 'W'),
    (0x12, 'e', 'E'),
    (0x13, 'r', 'R'),
    (0x14, 't', 'T'),
    (0x15, 'y', 'Y'),
    (0x16, 'u', 'U'),
    (0x17, 'i', 'I'),
    (0x18, 'o', 'O'),
    (0x19, 'p', 'P'),
    (0x1A, '[', '{'),
    (0x1B, ']', '}'),
    (0x1E, 'a', 'A'),
    (0x1F, 's', 'S'),
    (0x20, 'd', 'D'),
    (0x21, 'f', 'F'),
    (0x22, 'g', 'G'),
    (0x23, 'h', 'H'),
    (0x24, 'j', 'J'),
    (0x25, 'k', 'K'),
    (0x26, 'l', 'L'),
    (0x27, ';', ':'),
    (0x28, '\'', '"'),
    (0x29, '`', '~'),
    (0x2B, '\\', '|'),
    (0x2C, 'z', 'Z'),
    (0x2D, 'x', 'X'),
    (0x2E, 'c', 'C'),
    (0x2F, 'v', 'V'),
    (0x30, 'b', 'B'),
    (0x31, 'n', 'N'),
    (0x32, 'm', 'M'),
    (0x33, ',', '<'),
    (0x34, '.', '>'),
    (0x35, '/', '?'),
    (0x39, ' ', ' '),
    (0x56, '\\', '|'),
];

/// Num Lock's keypad: scancode → character.
const KEYPAD: &[(u8, char)] = &[
    (0x47, '7'),
    (0x48, '8'),
    (0x49, '9'),
    (0x4B, '4'),
    (0x4C, '5'),
    (0x4D, '6'),
    (0x4F, '1'),
    (0x50, '2'),
    (0x51, '3'),
    (0x52, '0'),
    (0x53, '.'),
];

/// Backspace in the key track: the text extractor applies it, a player shows it.
pub const BACKSPACE: char = '\u{8}';

/// One session's typed keys.
#[derive(Debug)]
pub struct KeyTrack {
    layout: Layout,
    known_layout: bool,
    io_channel: Option<u16>,
    shift_left: bool,
    shift_right: bool,
    ctrl: bool,
    alt: bool,
    altgr: bool,
    caps: bool,
    num: bool,
    high_surrogate: Option<u16>,
    text: String,
}

impl Default for KeyTrack {
    fn default() -> Self {
        Self::new(0x0409)
    }
}

impl KeyTrack {
    pub fn new(layout_id: u32) -> Self {
        let (layout, known_layout) = Layout::from_id(layout_id);
        Self {
            layout,
            known_layout,
            io_channel: None,
            shift_left: false,
            shift_right: false,
            ctrl: false,
            alt: false,
            altgr: false,
            caps: false,
            num: true,
            high_surrogate: None,
            text: String::new(),
        }
    }

    /// The layout the client announced (its Connect Initial's core data).
    pub fn set_layout(&mut self, layout_id: u32) {
        (self.layout, self.known_layout) = Layout::from_id(layout_id);
    }

    /// The layout scancodes are read with, and whether it is the one the client announced.
    pub fn layout(&self) -> (Layout, bool) {
        (self.layout, self.known_layout)
    }

    /// The I/O channel (from the target's Connect Response): slow-path input comes on it.
    pub fn set_io_channel(&mut self, id: u16) {
        self.io_channel = Some(id);
    }

    /// A whole PDU from the client. Anything that is not keyboard input, or cannot be read, is
    /// passed over: the target judges the client's input, this only reads it.
    pub fn observe_client(&mut self, frame: &[u8]) {
        if frame.first().is_some_and(|b| b & 0x03 == 0x03) {
            self.slow_path(frame);
        } else if crate::decode::fast_path_input_fits(frame)
            && let Ok(input) = decode::<FastPathInput>(frame)
        {
            for event in input.input_events() {
                match *event {
                    FastPathInputEvent::KeyboardEvent(flags, code) => {
                        self.scancode(code, flags.contains(FpFlags::EXTENDED), flags.contains(FpFlags::RELEASE))
                    }
                    FastPathInputEvent::UnicodeKeyboardEvent(flags, unit) if !flags.contains(FpFlags::RELEASE) => {
                        self.unicode(unit)
                    }
                    FastPathInputEvent::SyncEvent(flags) => self
                        .sync(flags.contains(SynchronizeFlags::CAPS_LOCK), flags.contains(SynchronizeFlags::NUM_LOCK)),
                    _ => {}
                }
            }
        }
    }

    fn slow_path(&mut self, frame: &[u8]) {
        let Some(io) = self.io_channel else { return };
        let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(frame) else { return };
        if req.channel_id != io {
            return;
        }
        let ctx = SendDataIndicationCtx {
            initiator_id: req.initiator_id,
            channel_id: req.channel_id,
            user_data: &req.user_data,
        };
        let Ok(share) = decode_share_control(ctx) else { return };
        let ShareControlPdu::Data(header) = share.pdu else { return };
        let ShareDataPdu::Input(input) = header.share_data_pdu else { return };
        use ironrdp_pdu::input::scan_code::KeyboardFlags as ScFlags;
        use ironrdp_pdu::input::unicode::KeyboardFlags as UniFlags;
        for event in input.0 {
            match event {
                InputEvent::ScanCode(s) => {
                    // The scancode is the low byte; a larger value is not a set-1 key.
                    if let Ok(code) = u8::try_from(s.key_code) {
                        self.scancode(code, s.flags.contains(ScFlags::EXTENDED), s.flags.contains(ScFlags::RELEASE))
                    }
                }
                InputEvent::Unicode(u) if !u.flags.contains(UniFlags::RELEASE) => self.unicode(u.unicode_code),
                InputEvent::Sync(s) => {
                    self.sync(s.flags.contains(SyncToggleFlags::CAPS_LOCK), s.flags.contains(SyncToggleFlags::NUM_LOCK))
                }
                _ => {}
            }
        }
    }

    fn sync(&mut self, caps: bool, num: bool) {
        self.caps = caps;
        self.num = num;
        // A sync follows a focus change: keys held before are released.
        (self.shift_left, self.shift_right, self.ctrl, self.alt, self.altgr) = (false, false, false, false, false);
    }

    /// A key went down or up (set-1 scancode, extended flag).
    pub fn scancode(&mut self, code: u8, extended: bool, released: bool) {
        let down = !released;
        match (code, extended) {
            (0x2A, _) => return self.shift_left = down,
            (0x36, _) => return self.shift_right = down,
            (0x1D, _) => return self.ctrl = down,
            (0x38, false) => return self.alt = down,
            (0x38, true) => return self.altgr = down,
            _ => {}
        }
        if released {
            return;
        }
        match (code, extended) {
            (0x3A, false) => return self.caps = !self.caps,
            (0x45, false) => return self.num = !self.num,
            _ => {}
        }
        // AltGr arrives from Windows clients as Ctrl + right Alt: that is not a shortcut.
        let altgr = self.altgr && self.layout != Layout::Us;
        if (self.ctrl || self.alt || self.altgr) && !altgr {
            return;
        }
        let c = match (code, extended) {
            (0x1C, _) => Some('\n'),
            (0x0E, false) => Some(BACKSPACE),
            (0x0F, false) => Some('\t'),
            (0x37, false) => Some('*'),
            (0x4A, false) => Some('-'),
            (0x4E, false) => Some('+'),
            (0x35, true) => Some('/'),
            (_, true) => None,
            (c, false) if (0x47..=0x53).contains(&c) => {
                if self.num {
                    KEYPAD.iter().find(|(k, _)| *k == c).map(|&(_, ch)| ch)
                } else {
                    None
                }
            }
            (c, false) => {
                let shift = self.shift_left || self.shift_right;
                let ch = self.layout.char(c, shift, altgr);
                // Caps Lock shifts letters only.
                match ch {
                    Some(ch) if self.caps && ch.is_alphabetic() && !altgr => {
                        self.layout.char(c, !shift, false).or(Some(ch))
                    }
                    other => other,
                }
            }
        };
        if let Some(c) = c {
            self.push(c);
        }
    }

    /// A Unicode key event (a UTF-16 code unit) went down.
    pub fn unicode(&mut self, unit: u16) {
        if (0xD800..0xDC00).contains(&unit) {
            self.high_surrogate = Some(unit);
            return;
        }
        let c = match self.high_surrogate.take() {
            Some(high) if (0xDC00..0xE000).contains(&unit) => char::decode_utf16([high, unit]).next(),
            _ => char::decode_utf16([unit]).next(),
        };
        match c {
            Some(Ok('\r' | '\n')) => self.push('\n'),
            Some(Ok('\u{8}')) => self.push(BACKSPACE),
            Some(Ok('\t')) => self.push('\t'),
            Some(Ok(c)) if !c.is_control() => self.push(c),
            _ => {}
        }
    }

    fn push(&mut self, c: char) {
        if self.text.len() < MAX_PENDING {
            self.text.push(c);
        }
    }

    /// What was typed since the last call.
    pub fn take(&mut self) -> String {
        std::mem::take(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironrdp_core::encode_vec;
    use ironrdp_pdu::input::{InputEventPdu, scan_code::ScanCodePdu, unicode::UnicodePdu};

    /// A fast-path input PDU with these events, as a client sends it.
    fn fast_path(events: Vec<FastPathInputEvent>) -> Vec<u8> {
        encode_vec(&FastPathInput::new(events).unwrap()).unwrap()
    }

    fn key(code: u8, release: bool) -> FastPathInputEvent {
        let flags = if release { FpFlags::RELEASE } else { FpFlags::empty() };
        FastPathInputEvent::KeyboardEvent(flags, code)
    }

    /// Presses and releases each key in turn (shift held around upper case and symbols).
    fn typed(track: &mut KeyTrack, codes: &[(u8, bool)]) -> String {
        for &(code, shift) in codes {
            let mut events = Vec::new();
            if shift {
                events.push(key(0x2A, false));
            }
            events.extend([key(code, false), key(code, true)]);
            if shift {
                events.push(key(0x2A, true));
            }
            track.observe_client(&fast_path(events));
        }
        track.take()
    }

    #[test]
    fn fast_path_scancodes_become_text_through_the_us_layout() {
        let mut t = KeyTrack::new(0x0409);
        // "Ls -l<Enter>" with a typo fixed by backspace, then "x!".
        let keys = [
            (0x26, true),
            (0x1F, false),
            (0x39, false),
            (0x0C, false),
            (0x26, false),
            (0x26, false),
            (0x0E, false),
            (0x1C, false),
            (0x2D, false),
            (0x02, true),
        ];
        assert_eq!(typed(&mut t, &keys), "Ls -ll\u{8}\nx!");
        assert_eq!(t.take(), "", "taken once");
    }

    #[test]
    fn the_clients_layout_decides_what_a_scancode_means() {
        // The key US keyboards label Y is Z on a German one, and Shift+2 is '"' there.
        let keys = [(0x15, false), (0x2C, false), (0x03, true)];
        assert_eq!(typed(&mut KeyTrack::new(0x0409), &keys), "yz@");
        let mut de = KeyTrack::new(0x0409);
        de.set_layout(0x0407);
        assert_eq!(de.layout(), (Layout::German, true));
        assert_eq!(typed(&mut de, &keys), "zy\"");
        assert_eq!(typed(&mut KeyTrack::new(0x0809), &keys), "yz\"");
        // Unknown layouts are read as US, and say so.
        assert_eq!(KeyTrack::new(0x0411).layout(), (Layout::Us, false));
    }

    #[test]
    fn shortcuts_are_not_text_but_altgr_is() {
        let mut t = KeyTrack::new(0x0409);
        // Ctrl+C, Alt+F: nothing typed; then a plain c.
        t.observe_client(&fast_path(vec![key(0x1D, false), key(0x2E, false), key(0x2E, true), key(0x1D, true)]));
        t.observe_client(&fast_path(vec![key(0x38, false), key(0x21, false), key(0x21, true), key(0x38, true)]));
        assert_eq!(typed(&mut t, &[(0x2E, false)]), "c");
        // German AltGr+Q is '@', sent by Windows as Ctrl + right Alt.
        let mut de = KeyTrack::new(0x0407);
        let altgr = FastPathInputEvent::KeyboardEvent(FpFlags::EXTENDED, 0x38);
        de.observe_client(&fast_path(vec![key(0x1D, false), altgr, key(0x10, false)]));
        assert_eq!(de.take(), "@");
    }

    #[test]
    fn caps_lock_from_the_key_and_from_the_clients_sync() {
        let mut t = KeyTrack::new(0x0409);
        assert_eq!(typed(&mut t, &[(0x3A, false), (0x1E, false), (0x1E, true), (0x02, false)]), "Aa1");
        t.observe_client(&fast_path(vec![FastPathInputEvent::SyncEvent(SynchronizeFlags::empty())]));
        assert_eq!(typed(&mut t, &[(0x1E, false)]), "a");
        t.observe_client(&fast_path(vec![FastPathInputEvent::SyncEvent(SynchronizeFlags::CAPS_LOCK)]));
        assert_eq!(typed(&mut t, &[(0x1E, false)]), "A");
    }

    #[test]
    fn unicode_events_with_surrogate_pairs() {
        let mut t = KeyTrack::default();
        let mut events = Vec::new();
        for unit in "né 🦀\r".encode_utf16() {
            events.push(FastPathInputEvent::UnicodeKeyboardEvent(FpFlags::empty(), unit));
            events.push(FastPathInputEvent::UnicodeKeyboardEvent(FpFlags::RELEASE, unit));
        }
        t.observe_client(&fast_path(events));
        assert_eq!(t.take(), "né 🦀\n");
    }

    /// A slow-path Input PDU on `channel`, as the client sends it in a Send Data Request.
    fn slow_path(channel: u16, events: Vec<InputEvent>) -> Vec<u8> {
        use ironrdp_pdu::rdp::headers::{CompressionFlags, ShareControlHeader, ShareDataHeader, StreamPriority};
        let share = ShareControlHeader {
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::Input(InputEventPdu(events)),
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: ironrdp_pdu::rdp::client_info::CompressionType::K8,
            }),
            pdu_source: 1007,
            share_id: 0x1_03ea,
        };
        let user_data = encode_vec(&share).unwrap();
        let req = ironrdp_pdu::mcs::SendDataRequest {
            initiator_id: 1007,
            channel_id: channel,
            user_data: std::borrow::Cow::Owned(user_data),
        };
        encode_vec(&X224(McsMessage::SendDataRequest(req))).unwrap()
    }

    #[test]
    fn slow_path_input_on_the_io_channel_only() {
        use ironrdp_pdu::input::scan_code::KeyboardFlags as ScFlags;
        use ironrdp_pdu::input::unicode::KeyboardFlags as UniFlags;
        let events = || {
            vec![
                InputEvent::ScanCode(ScanCodePdu { flags: ScFlags::DOWN, key_code: 0x23 }),
                InputEvent::ScanCode(ScanCodePdu { flags: ScFlags::RELEASE, key_code: 0x23 }),
                InputEvent::Unicode(UnicodePdu { flags: UniFlags::empty(), unicode_code: u16::from(b'i') }),
            ]
        };
        let mut t = KeyTrack::default();
        t.observe_client(&slow_path(1003, events()));
        assert_eq!(t.take(), "", "the i/o channel is not known yet");
        t.set_io_channel(1003);
        t.observe_client(&slow_path(1004, events()));
        assert_eq!(t.take(), "", "input on another channel is not the session's keyboard");
        t.observe_client(&slow_path(1003, events()));
        assert_eq!(t.take(), "hi");
    }

    #[test]
    fn pending_text_is_bounded_and_garbage_is_passed_over() {
        let mut t = KeyTrack::default();
        for _ in 0..(MAX_PENDING / 51 + 10) {
            let events = (0..50).flat_map(|_| [key(0x1E, false), key(0x1E, true)]).collect();
            t.observe_client(&fast_path(events));
            t.observe_client(&fast_path(vec![key(0x1E, false), key(0x1E, true)]));
        }
        assert_eq!(t.take().len(), MAX_PENDING);
        for frame in [&[][..], &[0x00], &[0x03, 0x00, 0x00, 0x07, 0x02, 0xf0], &[0x04, 0xff, 0xff, 0x00]] {
            t.observe_client(frame);
        }
        assert_eq!(t.take(), "");
    }
}
