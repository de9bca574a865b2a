//! Which virtual channels a grant opens, without I/O: redirection classes, the static and dynamic
//! channel names that carry each, channel names read as RDP servers read them, and the dynamic
//! channel (MS-RDPEDYC) headers the filter judges on `drdynvc`.
//!
//! A grant opens a class, never a name: `cliprdr` carries the clipboard, `rdpdr` drives, printers,
//! ports and smart cards together, `URBDRC` USB devices, `AUDIO_INPUT` the microphone, and so on.
//! A name the box does not know carries nothing: unknown static and dynamic channels are refused.

use crate::messages::Protocol;

/// A kind of redirection a grant can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Clipboard,
    Drives,
    Printers,
    SmartCards,
    Usb,
    Camera,
    AudioInput,
    /// Sound from the target (MS-RDPEA): its messages are read strictly, the sound itself is
    /// free-form by nature.
    Audio,
}

impl Class {
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A grant's RDP switches, as `witness grant` sets them: `--no-clipboard` turns the first off,
/// `--drives`, `--usb`, `--camera`, `--audio-input` and `--audio` turn theirs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    pub clipboard: bool,
    pub drives: bool,
    pub usb: bool,
    pub camera: bool,
    pub audio_input: bool,
    pub audio: bool,
}

impl Default for Switches {
    /// Clipboard on, everything else off.
    fn default() -> Self {
        Self { clipboard: true, drives: false, usb: false, camera: false, audio_input: false, audio: false }
    }
}

/// Which redirection classes a grant opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirection {
    open: u8,
}

impl Redirection {
    /// Nothing redirected.
    pub const NONE: Self = Self { open: 0 };

    /// What a grant's switches open. Drives open printers, ports and smart cards with them: one
    /// static channel, `rdpdr`, carries them all.
    pub fn from_grant(s: Switches) -> Self {
        let mut r = Self::NONE;
        for (on, classes) in [
            (s.clipboard, &[Class::Clipboard][..]),
            (s.drives, &[Class::Drives, Class::Printers, Class::SmartCards]),
            (s.usb, &[Class::Usb]),
            (s.camera, &[Class::Camera]),
            (s.audio_input, &[Class::AudioInput]),
            (s.audio, &[Class::Audio]),
        ] {
            if on {
                r = classes.iter().fold(r, |r, c| r.with(*c));
            }
        }
        r
    }

    /// The same, with `class` open too.
    pub fn with(self, class: Class) -> Self {
        Self { open: self.open | class.bit() }
    }

    pub fn allows(self, class: Class) -> bool {
        self.open & class.bit() != 0
    }

    /// Whether a channel carrying `classes` may open: only when every one of them is granted
    /// (a channel cannot be opened for part of what it carries).
    fn allows_all(self, classes: &[Class]) -> bool {
        classes.iter().all(|c| self.allows(*c))
    }
}

impl Default for Redirection {
    /// Clipboard on, everything else off.
    fn default() -> Self {
        Self::from_grant(Switches::default())
    }
}

/// A channel name as RDP servers read it (Windows and xrdp compare names without case): the bytes
/// up to the first NUL, lowercased. `None` for a name that is empty, has no NUL, or holds a
/// byte that is not ASCII: such a channel is refused.
pub fn channel_name(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0)?;
    let name = &bytes[..end];
    if name.is_empty() || !name.is_ascii() {
        return None;
    }
    Some(name.iter().map(|b| char::from(b.to_ascii_lowercase())).collect())
}

/// A name for logs and audit events, whatever its bytes.
pub(crate) fn shown_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes[..end.min(64)].escape_ascii().to_string()
}

/// The static channels the box knows (lowercase), with what each carries; `drdynvc` carries
/// dynamic channels, each judged on its own. RemoteApp (`rail`) is not supported: refused.
/// `rdpsnd` is sound out (and, on xrdp, the microphone too).
const STATIC: &[(&str, &[Class])] = &[
    ("cliprdr", &[Class::Clipboard]),
    ("rdpdr", &[Class::Drives, Class::Printers, Class::SmartCards]),
    ("rdpsnd", &[Class::Audio]),
    ("drdynvc", &[]),
];

/// The dynamic channels the box knows (lowercase). The graphics pipeline and display control
/// carry no redirection: each is read message by message ([`protocol`]); video redirection,
/// credential and location channels, and FreeRDP's own advanced input (no reader here), are
/// left unknown (refused): the client would show or hand over what the recording never sees, or
/// a program on the target would have a pipe. Touch input (MS-RDPEI) is refused too although
/// it has a reader: its contacts and frame offsets leave kilobytes a message free, so a program
/// on the target that opened it would read a file out of "touches" (red team `h-red17k`, hole
/// 1); without it a client sends touches as mouse input.
const DYNAMIC: &[(&str, &[Class])] = &[
    (GRAPHICS, &[]),
    (DISPLAY_CONTROL, &[]),
    ("audio_playback_dvc", &[Class::Audio]),
    ("audio_playback_lossy_dvc", &[Class::Audio]),
    ("audio_input", &[Class::AudioInput]),
    ("urbdrc", &[Class::Usb]),
    // Plug and Play device redirection (MS-RDPEPNP): devices like USB ones.
    ("pnpdr", &[Class::Usb]),
    ("fileredirectorchannel", &[Class::Usb]),
    ("xpsrd", &[Class::Printers]),
    ("rdcamera_device_enumerator", &[Class::Camera]),
];

/// The graphics pipeline's dynamic channel (lowercase).
pub(crate) const GRAPHICS: &str = "microsoft::windows::rds::graphics";
const DISPLAY_CONTROL: &str = "microsoft::windows::rds::displaycontrol";
const INPUT: &str = "microsoft::windows::rds::input";

/// The protocol whose messages the filter reads on a dynamic channel it opens (lowercase name):
/// every channel opened without a redirection class has one, and so does sound out.
pub fn protocol(name: &str) -> Option<Protocol> {
    match name {
        GRAPHICS => Some(Protocol::Graphics),
        DISPLAY_CONTROL => Some(Protocol::DisplayControl),
        INPUT => Some(Protocol::Input),
        "audio_playback_dvc" | "audio_playback_lossy_dvc" => Some(Protocol::Audio),
        _ => None,
    }
}

/// Camera devices get a channel each, named by the client (MS-RDPECAM).
const CAMERA_DEVICE: &str = "rdcamera_device_";

/// The canonical spelling of a known static channel (`CLIPRDR` → `cliprdr`).
pub(crate) fn canonical_static(name: &str) -> Option<&'static str> {
    STATIC.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

/// Whether the grant opens the static channel with these name bytes.
pub fn static_allowed(redirection: Redirection, bytes: &[u8]) -> bool {
    let Some(name) = channel_name(bytes) else { return false };
    STATIC.iter().find(|(n, _)| *n == name).is_some_and(|(_, c)| redirection.allows_all(c))
}

/// Whether the grant opens the dynamic channel with these name bytes.
pub fn dynamic_allowed(redirection: Redirection, bytes: &[u8]) -> bool {
    let Some(name) = channel_name(bytes) else { return false };
    if name.starts_with(CAMERA_DEVICE) {
        return redirection.allows(Class::Camera);
    }
    DYNAMIC.iter().find(|(n, _)| *n == name).is_some_and(|(_, c)| redirection.allows_all(c))
}

/// Dynamic channel PDU commands (MS-RDPEDYC 2.2).
pub(crate) mod cmd {
    pub const CREATE: u8 = 0x1;
    pub const DATA_FIRST: u8 = 0x2;
    pub const DATA: u8 = 0x3;
    pub const CLOSE: u8 = 0x4;
    pub const CAPABILITY: u8 = 0x5;
    pub const DATA_FIRST_COMPRESSED: u8 = 0x6;
    pub const DATA_COMPRESSED: u8 = 0x7;
    pub const SOFT_SYNC_REQUEST: u8 = 0x8;
    pub const SOFT_SYNC_RESPONSE: u8 = 0x9;
}

/// The common header of a dynamic channel PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DvcHeader {
    pub cmd: u8,
    /// `Sp`: the size code of a Data First's length (a Create Request's priority).
    pub sp: u8,
    pub channel: u32,
    /// Where the PDU's body starts, after the channel id.
    pub body: usize,
}

/// The size of a field (channel id, Data First length) from its 2-bit code: 1, 2 or 4 bytes.
pub(crate) fn field(code: u8) -> Option<usize> {
    [1usize, 2, 4].get(usize::from(code)).copied()
}

/// Reads `len` (1, 2 or 4) little-endian bytes at `at`.
pub(crate) fn uint_at(data: &[u8], at: usize, len: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(len)?)?;
    Some(b.iter().rev().fold(0u32, |v, &x| (v << 8) | u32::from(x)))
}

/// The header of the dynamic channel PDU that starts `data`; `None` when it is cut short.
/// Capability and Soft-Sync PDUs carry no channel id (0).
pub(crate) fn dvc_header(data: &[u8]) -> Option<DvcHeader> {
    let head = *data.first()?;
    let (cmd, sp) = (head >> 4, (head >> 2) & 3);
    if matches!(cmd, cmd::CAPABILITY | cmd::SOFT_SYNC_REQUEST | cmd::SOFT_SYNC_RESPONSE) {
        return Some(DvcHeader { cmd, sp, channel: 0, body: 1 });
    }
    let n = field(head & 3)?;
    Some(DvcHeader { cmd, sp, channel: uint_at(data, 1, n)?, body: 1 + n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_up_to_the_first_nul_without_case() {
        assert_eq!(channel_name(b"CLIPRDR\0").as_deref(), Some("cliprdr"));
        assert_eq!(channel_name(b"rdpdr\0\x80\0").as_deref(), Some("rdpdr"));
        assert_eq!(channel_name(b"rdp\x80dr\0\0"), None, "not ascii");
        assert_eq!(channel_name(b"\0rdpdr\0\0"), None, "empty");
        assert_eq!(channel_name(b"rdpdr"), None, "no terminator");
    }

    #[test]
    fn a_grant_opens_classes() {
        let none = Redirection::NONE;
        let clip = Redirection::default();
        let drives = Redirection::from_grant(Switches { clipboard: false, drives: true, ..Switches::default() });
        for (bytes, expect) in [
            (&b"cliprdr\0"[..], [false, true, false]),
            (b"CliPrdr\0", [false, true, false]),
            (b"RDPDR\0\0\0", [false, false, true]),
            (b"rdpsnd\0\0", [false, false, false]),
            (b"DRDYNVC\0", [true, true, true]),
            (b"rdp2tcp\0", [false, false, false]),
            (b"rail\0\0\0\0", [false, false, false]),
            (b"sshagen\0", [false, false, false]),
            (b"\xe9\0\0\0\0\0\0\0", [false, false, false]),
        ] {
            let got = [none, clip, drives].map(|r| static_allowed(r, bytes));
            assert_eq!(got, expect, "{}", shown_name(bytes));
        }
        for (name, expect) in [
            (&b"Microsoft::Windows::RDS::Graphics\0"[..], [true, true, true]),
            (b"URBDRC\0", [false, false, false]),
            (b"urbdrc\0", [false, false, false]),
            (b"AUDIO_INPUT\0", [false, false, false]),
            (b"RDCamera_Device_Enumerator\0", [false, false, false]),
            (b"RDCamera_Device_0\0", [false, false, false]),
            (b"XPSRD\0", [false, false, true]),
            (b"AUDIO_PLAYBACK_DVC\0", [false, false, false]),
            (b"Microsoft::Windows::RDS::DisplayControl\0", [true, true, true]),
            // Touch input's fields leave kilobytes a message free (red team h-red17k, hole 1).
            (b"Microsoft::Windows::RDS::Input\0", [false, false, false]),
            (b"Microsoft::Windows::RDS::AuthRedirection\0", [false, false, false]),
            (b"TSMF\0", [false, false, false]),
            (b"URBDRC", [false, false, false]),
        ] {
            let got = [none, clip, drives].map(|r| dynamic_allowed(r, name));
            assert_eq!(got, expect, "{}", shown_name(name));
        }
        let usb = Redirection::NONE.with(Class::Usb);
        assert!(dynamic_allowed(usb, b"URBDRC\0"));
        assert!(dynamic_allowed(Redirection::NONE.with(Class::Camera), b"RDCamera_Device_3\0"));
        // rdpdr carries drives, printers and smart cards: printers alone do not open it.
        assert!(!static_allowed(Redirection::NONE.with(Class::Printers), b"rdpdr\0"));
    }

    #[test]
    fn each_device_switch_opens_its_class_and_nothing_else() {
        // (switch on, the dynamic channels it opens); every other device channel stays shut.
        let usb = Switches { usb: true, ..Switches::default() };
        let camera = Switches { camera: true, ..Switches::default() };
        let audio_input = Switches { audio_input: true, ..Switches::default() };
        let audio = Switches { audio: true, ..Switches::default() };
        let channels: [(&[u8], usize); 8] = [
            (b"URBDRC\0", 0),
            (b"PNPDR\0", 0),
            (b"FileRedirectorChannel\0", 0),
            (b"RDCamera_Device_Enumerator\0", 1),
            (b"RDCamera_Device_0\0", 1),
            (b"AUDIO_INPUT\0", 2),
            (b"AUDIO_PLAYBACK_DVC\0", 3),
            (b"AUDIO_PLAYBACK_LOSSY_DVC\0", 3),
        ];
        for (which, switches) in [usb, camera, audio_input, audio].into_iter().enumerate() {
            let on = Redirection::from_grant(switches);
            let off = Redirection::default();
            for (name, class) in channels {
                assert_eq!(dynamic_allowed(on, name), class == which, "{} with {switches:?}", shown_name(name));
                assert!(!dynamic_allowed(off, name), "{} without a switch", shown_name(name));
            }
            // A device switch opens no static channel but sound's (`--audio` opens `rdpsnd`):
            // drives, printers and smart cards stay with `--drives`, and the clipboard stays as
            // the grant has it.
            assert!(!static_allowed(on, b"rdpdr\0"));
            assert_eq!(static_allowed(on, b"rdpsnd\0"), which == 3, "{switches:?}");
            assert!(!static_allowed(off, b"rdpsnd\0"));
            assert!(static_allowed(on, b"cliprdr\0"));
            let no_clipboard = Redirection::from_grant(Switches { clipboard: false, ..switches });
            assert!(!static_allowed(no_clipboard, b"cliprdr\0"));
            assert!(dynamic_allowed(no_clipboard, channels.iter().find(|c| c.1 == which).unwrap().0));
        }
        // Video redirection and unknown channels stay shut with every switch on.
        let all = Redirection::from_grant(Switches {
            clipboard: true,
            drives: true,
            usb: true,
            camera: true,
            audio_input: true,
            audio: true,
        });
        assert!(!dynamic_allowed(all, b"TSMF\0"));
        assert!(!dynamic_allowed(all, b"FreeRDP::Advanced::Input\0"), "no reader for it: a pipe");
        assert!(!dynamic_allowed(all, b"Microsoft::Windows::RDS::AuthRedirection\0"));
        assert!(!static_allowed(all, b"rdp2tcp\0"));
    }

    #[test]
    fn dvc_headers() {
        assert_eq!(dvc_header(&[0x10, 7, b'a', 0]), Some(DvcHeader { cmd: 1, sp: 0, channel: 7, body: 2 }));
        assert_eq!(dvc_header(&[0x31, 7, 1]), Some(DvcHeader { cmd: 3, sp: 0, channel: 0x107, body: 3 }));
        assert_eq!(dvc_header(&[0x26, 1, 0, 0, 0, 9]), Some(DvcHeader { cmd: 2, sp: 1, channel: 1, body: 5 }));
        assert_eq!(dvc_header(&[0x33, 7]), None, "cbChId 3 is not a size");
        assert_eq!(dvc_header(&[0x32, 7, 0, 0]), None, "cut short");
        assert_eq!(dvc_header(&[0x50, 0, 1, 0]).map(|h| h.cmd), Some(cmd::CAPABILITY));
    }
}
