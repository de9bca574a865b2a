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
    fn round_trip() {
        for s in RecordingStatus::ALL {
            assert_eq!(s.as_str().parse::<RecordingStatus>(), Ok(*s));
        }
        assert!("Admin".parse::<Role>().unwrap_err().contains("expected one of: user, auditor, admin"));
    }
}
