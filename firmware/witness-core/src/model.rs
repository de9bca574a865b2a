//! Small domain enums shared by every crate, with their stable text forms (stored in the index
//! and printed in JSON, so renaming one is a format change).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}, expected one of: {}",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum!(
    /// What a box user may do. `user` connects to granted targets; `auditor` views recordings;
    /// `admin` manages the box.
    Role { User = "user", Auditor = "auditor", Admin = "admin" }
);

text_enum!(
    /// The protocol of a session.
    Protocol { Ssh = "ssh", Rdp = "rdp" }
);

/// The channel name of an RDP session's key track.
pub const RDP_KEYS_CHANNEL: &str = "keys";

/// The channel name of an RDP session's desktop video at its size.
pub fn rdp_desktop_channel(width: u32, height: u32) -> String {
    format!("desktop {width}x{height}")
}

impl Protocol {
    /// The protocol a recording's channel belongs to, as the box names channels: SSH's `shell`,
    /// `sftp` and `exec: COMMAND`, RDP's `desktop WIDTHxHEIGHT` and `keys`; `None` for a name the
    /// box does not make. A recording's channel is signed in its manifest, a session's protocol
    /// only in the session manifest, so this is what a rebuild goes by when that is unsigned.
    pub fn of_channel(channel: &str) -> Option<Protocol> {
        let ssh = [crate::channel::Kind::Shell, crate::channel::Kind::Sftp].iter().any(|k| channel == k.as_str())
            || channel == crate::channel::Kind::Exec.as_str()
            || channel.starts_with("exec: ");
        let rdp = channel == RDP_KEYS_CHANNEL
            || channel.strip_prefix("desktop ").and_then(|size| size.split_once('x')).is_some_and(|(w, h)| {
                !w.is_empty() && !h.is_empty() && (w.bytes().chain(h.bytes())).all(|b| b.is_ascii_digit())
            });
        match (ssh, rdp) {
            (true, false) => Some(Protocol::Ssh),
            (false, true) => Some(Protocol::Rdp),
            _ => None,
        }
    }

    /// The one protocol all of a session's channels belong to, or `None` when one is unknown or
    /// they disagree (or there is none).
    pub fn of_channels<'a>(channels: impl IntoIterator<Item = &'a str>) -> Option<Protocol> {
        let mut found = None;
        for c in channels {
            let p = Protocol::of_channel(c)?;
            if found.is_some_and(|f| f != p) {
                return None;
            }
            found = Some(p);
        }
        found
    }
}

text_enum!(
    /// Life cycle of a recording: `recording → processing → completed`, or `failed` with a reason.
    /// `uploaded` is set by the store once the remote copy is verified.
    RecordingStatus {
        Recording = "recording",
        Processing = "processing",
        Completed = "completed",
        Failed = "failed",
        Uploaded = "uploaded",
    }
);

text_enum!(
    /// A step of a recording's after-life, each a durable job in the index: `seal` (hash and
    /// sign), `extract` (search text), `upload` (with its manifest), `verify` (the store's own
    /// check on arrival), `prune` (the local copy goes). What each waits for is
    /// `witness-archive::jobs`.
    JobStep { Seal = "seal", Extract = "extract", Upload = "upload", Verify = "verify", Prune = "prune" }
);

text_enum!(
    /// Where a job stands: `waiting` (due, or after a failure at its next attempt) or `done`.
    JobState { Waiting = "waiting", Done = "done" }
);

text_enum!(
    /// What an SSH target's file transfers (SFTP, scp) leave in the recording: `content`, every
    /// byte; `hashes`, the operations and each file's SHA-256 but not the files' bytes (the
    /// interactive part of a session is always recorded whole).
    Transfers { Content = "content", Hashes = "hashes" }
);

impl Default for Transfers {
    /// Every byte, unless a target says otherwise.
    fn default() -> Self {
        Transfers::Content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_protocol_follows_from_the_channels_the_box_names() {
        assert_eq!(Protocol::of_channels(["shell", "exec: ls -l", "sftp"]), Some(Protocol::Ssh));
        assert_eq!(Protocol::of_channels(["desktop 1024x768", "keys"]), Some(Protocol::Rdp));
        // Mixed, unknown, malformed or none: not known, never guessed.
        assert_eq!(Protocol::of_channels(["shell", "desktop 1024x768"]), None);
        assert_eq!(Protocol::of_channels(["desktop 1024x768", "tunnel"]), None);
        for odd in ["desktop", "desktop x768", "desktop 10a4x768", "desktop 1024x", "execs", "Shell", ""] {
            assert_eq!(Protocol::of_channel(odd), None, "{odd:?}");
        }
        assert_eq!(Protocol::of_channels(std::iter::empty::<&str>()), None);
    }

    #[test]
    fn round_trip() {
        for s in RecordingStatus::ALL {
            assert_eq!(s.as_str().parse::<RecordingStatus>(), Ok(*s));
        }
        assert!("Admin".parse::<Role>().unwrap_err().contains("expected one of: user, auditor, admin"));
    }
}
