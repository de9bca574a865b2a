//! What the index lists: sessions, recordings and audit events as the CLI's `--json` and the web
//! console's API show them. Plain data, shared by the index (which fills them) and the console.

use serde::{Deserialize, Serialize};

/// One session as listed by `witness sessions --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRow {
    pub id: String,
    pub session_id: String,
    pub user: String,
    pub target: String,
    pub protocol: String,
    pub client: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    /// `recording` while open; afterwards the least advanced status of its recordings.
    pub status: String,
    pub recovered: bool,
    pub recordings: u64,
    pub bytes: u64,
    /// What the session was, from its channels and transfer events: `shell`, `exec`, `transfer`
    /// (sftp or scp), `rdp`; several when it opened several kinds of channel, none when it opened
    /// none.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// The commands it ran (`exec` channels; an scp's command too).
    #[serde(default)]
    pub commands: Vec<String>,
    /// Files uploaded or downloaded (sftp, scp) and their bytes.
    #[serde(default)]
    pub transfers: u64,
    #[serde(default)]
    pub transfer_bytes: u64,
    /// Under a legal hold (never shown to a `user`: the console clears it for them).
    #[serde(default)]
    pub held: bool,
}

/// One recording as listed by `witness recordings --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingRow {
    pub id: String,
    pub session_id: String,
    pub user: String,
    pub target: String,
    pub protocol: String,
    pub channel: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: crate::RecordingStatus,
    pub status_reason: Option<String>,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub duration: Option<f64>,
    pub recovered: bool,
    /// Path of the file, relative to the data directory.
    pub path: String,
    /// Video: frames encoded (idle repeats included).
    #[serde(default)]
    pub frames: Option<u64>,
    /// Video: when the screen changed, `[start, end]` seconds on its timeline (merged spans).
    #[serde(default)]
    pub activity: Option<Vec<(f64, f64)>>,
    /// Why a finished recording could not be sealed: it is not uploaded until it is.
    #[serde(default)]
    pub seal_error: Option<String>,
    /// Video: screen updates the recorder missed (skipped when it fell behind, or undecodable);
    /// a gap stated in the signed manifest. `None`: none, or not a video.
    #[serde(default)]
    pub missed_screen_updates: Option<u64>,
    /// Video: after the last missed screen update no full redraw was seen before the session
    /// ended, so the picture from there on is not verified.
    #[serde(default)]
    pub screen_unverified: bool,
    /// How far the recording's text is in the search index.
    #[serde(default)]
    pub text: Option<TextExtraction>,
}

/// A recording's text extraction: SSH output and RDP key tracks when sealed, session video by
/// OCR in the background.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextExtraction {
    /// `waiting` (still recording), `pending`, `reading`, `done` or `failed`.
    pub state: String,
    /// Video: seconds from the start whose text is stored.
    #[serde(default)]
    pub read_until: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub user: Option<String>,
    pub target: Option<String>,
    pub session_id: Option<String>,
    pub detail: serde_json::Value,
}

/// Box-wide audit log filters, as the console's API takes them; `None` matches everything.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditQuery {
    /// Event kind, exactly (`web_login`), or a prefix ending in `*` (`web_*`).
    pub kind: Option<String>,
    pub user: Option<String>,
    /// Events at or after (RFC 3339 from clients; index time text for the index).
    pub from: Option<String>,
    /// Events before.
    pub to: Option<String>,
    /// Events older than this id (the next page).
    pub before: Option<i64>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

/// Session history filters, as the console's API takes them; `None` matches everything.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SessionQuery {
    pub user: Option<String>,
    pub target: Option<String>,
    pub protocol: Option<String>,
    pub status: Option<String>,
    /// Sessions started at or after (RFC 3339 from clients; index time text for the index).
    pub from: Option<String>,
    /// Sessions started before.
    pub to: Option<String>,
    /// Sessions of this kind (see [`session_kinds`]).
    pub kind: Option<String>,
    /// Words that must all appear in the session's output.
    pub q: Option<String>,
    /// The newest this many.
    pub limit: Option<u32>,
}
