//! The box's web console: HTTPS with the box's certificate, login with box users (password and
//! optional TOTP), a JSON API under `/api/v1/`, the pages, and the players (SSH casts in an
//! embedded asciinema-player, RDP video with range requests). Recordings are always served
//! through the box, so a viewer never needs a path to the store.
//!
//! This crate owns HTTP and TLS. Everything it shows comes from a [`Console`] the binary
//! implements over the index, the recordings and the store.

mod api;
mod assets;
mod auth;
mod live;
mod server;
pub mod tls;
pub mod totp;

pub use server::{WebSettings, serve};

/// Whether `id` can name a made evidence bundle (the box's own ids: no path in it).
pub fn valid_bundle_id(id: &str) -> bool {
    api::valid_id(id)
}

use serde::{Deserialize, Serialize};
use thiserror::Error;
pub use witness_core::model::Role;
pub use witness_core::rows::{AuditQuery, AuditRow, RecordingRow, SessionQuery, SessionRow};

#[derive(Debug, Error)]
pub enum WebError {
    #[error("reading the web certificate {path}: {source}")]
    Certificate { path: String, source: std::io::Error },
    #[error("the web certificate or key is not usable: {0}")]
    BadCertificate(String),
    #[error("generating the web certificate: {0}")]
    Generate(String),
    #[error("web listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Why the console could not answer; each maps to one HTTP status.
#[derive(Debug, Error)]
pub enum ConsoleError {
    #[error("not found")]
    NotFound,
    /// The recording is neither on the box nor reachable in the store (the message says which).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// A logged-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// The TOTP secret when the user enrolled one: a second factor is then required.
    pub totp_secret: Option<Vec<u8>>,
    /// The user's access epoch: a console login made under another one (password, key, role
    /// changed since, or the name removed and given to someone else) is no longer valid.
    pub epoch: i64,
}

/// A session in the history, with where the search matched when searching.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionHit {
    #[serde(flatten)]
    pub session: SessionRow,
    /// The first match of the search: the recording, the moment (seconds) and the text around it.
    pub hit: Option<TextHit>,
    /// Open now (live view and terminate apply).
    pub live: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TextHit {
    pub recording_id: String,
    /// When the output event that printed the match came (a video: when the screen showed it).
    pub at: f64,
    /// The line, cut around the match.
    pub snippet: String,
    /// Where the match is in the snippet (characters, end excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<[usize; 2]>,
    /// The matched text as printed (the player finds and highlights it on the screen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// Text read off an RDP screen: where the line was, `[x, y, width, height]` in the video's
    /// pixels (the player highlights it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rect: Option<[u32; 4]>,
}

/// One session with everything the detail page shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionDetail {
    pub session: SessionRow,
    pub live: bool,
    pub recordings: Vec<RecordingDetail>,
    pub audit: Vec<AuditEntry>,
    /// The session's legal hold, when it has one: its recordings are never deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<HoldView>,
}

/// Failed logins: their rows name the account that was tried, while whoever tried is unknown.
pub const FAILED_LOGINS: &[&str] = &["web_login_failed", "login_failed"];

/// Audit events about a user's session that the box or its operator did, not the user: their
/// rows name the session's user, but nobody named acted (`witness evidence export` and the
/// archive run on the box). A `user` is never shown them as their own doing.
pub const BOX_DOINGS: &[&str] = &["evidence_exported", "recording_quarantined", "recording_not_sealed"];

/// An audit event as the console shows it: the row, whose `user` stays the person the event is
/// about (whose session was terminated), and who did it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(flatten)]
    pub row: AuditRow,
    /// Who acted: the admin in `detail.by` (a termination from the console), "unknown" (and
    /// where from) for a failed login (its row names the account tried), nobody named for
    /// what the box or its operator did about the user's session (a legal hold, an evidence
    /// export from the command line, a recording quarantined or not sealed: see
    /// [`BOX_DOINGS`]), otherwise the row's user.
    pub actor: Option<String>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        let actor = match row.detail.get("by").and_then(serde_json::Value::as_str) {
            Some(by) => Some(by.to_owned()),
            // A failed login names the account someone typed, not who typed it.
            None if FAILED_LOGINS.contains(&row.kind.as_str()) => {
                let from = row.detail.get("from").and_then(serde_json::Value::as_str);
                Some(from.map_or_else(|| "unknown".to_owned(), |f| format!("unknown, from {f}")))
            }
            None if row.kind.starts_with("hold_") || BOX_DOINGS.contains(&row.kind.as_str()) => None,
            None => row.user.clone(),
        };
        Self { row, actor }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldView {
    pub reason: String,
    pub set_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingDetail {
    #[serde(flatten)]
    pub recording: RecordingRow,
    /// recording → processing → completed → uploaded, with when each was reached (if known).
    pub timeline: Vec<TimelineStep>,
    pub upload: Option<UploadView>,
    /// `cast` or `mp4`: which player.
    pub format: String,
    /// Still on the box (otherwise fetched from the store on demand).
    pub on_box: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineStep {
    pub status: String,
    pub at: Option<String>,
    pub reached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadView {
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub object_key: String,
    pub uploaded_at: Option<String>,
}

/// Which bytes of a recording a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    /// First and last byte, inclusive.
    Bytes(u64, u64),
    /// A `Range` this server does not serve (past the end, several ranges, not `bytes=`).
    Unsatisfiable,
}

impl Part {
    /// The part of `len` playable bytes a request's `Range` header (if it has one) asks for.
    pub fn of(range: Option<&str>, len: u64) -> Self {
        match range.map(|r| api::parse_range(r, len)) {
            None => Part::Whole,
            Some(Some((start, end))) => Part::Bytes(start, end),
            Some(None) => Part::Unsatisfiable,
        }
    }

    /// Where the part starts and ends (exclusive) in `len` bytes; empty when unsatisfiable.
    pub fn bounds(self, len: u64) -> (u64, u64) {
        match self {
            Part::Whole => (0, len),
            Part::Bytes(start, end) => (start, end + 1),
            Part::Unsatisfiable => (0, 0),
        }
    }
}

/// A part's bytes as they are made (decrypted record by record, or all at once); an error ends
/// the response early.
pub type Chunks = Box<dyn Iterator<Item = Result<Vec<u8>, ConsoleError>> + Send>;

/// The part of a recording's playable bytes a request asked for.
pub struct Content {
    pub chunks: Chunks,
    /// Length of the whole playable recording.
    pub len: u64,
    pub part: Part,
    pub content_type: &'static str,
    pub file_name: String,
}

impl Content {
    /// The asked part of playable bytes that are all in memory.
    pub fn from_bytes(mut bytes: Vec<u8>, range: Option<&str>, content_type: &'static str, file_name: String) -> Self {
        let len = bytes.len() as u64;
        let part = Part::of(range, len);
        let (start, end) = part.bounds(len);
        bytes.truncate(end as usize);
        bytes.drain(..start as usize);
        Self { chunks: Box::new(std::iter::once(Ok(bytes))), len, part, content_type, file_name }
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content").field("len", &self.len).field("part", &self.part).finish_non_exhaustive()
    }
}

/// Where a live view stands in a recording's file, as the console left it (start from the
/// default). Opaque to the web side.
#[derive(Debug, Default, Clone)]
pub struct TailCursor {
    /// Stored-file offset of the next record, and that record's place.
    pub offset: u64,
    pub index: u64,
    /// Whether the recording holds raw frames (known once its header was read).
    pub raw: Option<bool>,
    /// Bytes of a character a record boundary cut in two, output and input.
    pub carry: [Vec<u8>; 2],
}

/// What a live recording's file held past a cursor.
#[derive(Debug)]
pub struct Tail {
    /// Whole asciicast lines, starting after the cursor (the header line first).
    pub lines: Vec<u8>,
    /// Cursor to ask with next.
    pub next: TailCursor,
    /// The recording is closed: nothing more will come.
    pub finished: bool,
}

/// A session's evidence bundle made for download: one tar archive of what `witness evidence
/// export` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvidenceBundle {
    pub id: String,
    pub bytes: u64,
    pub sha256: String,
    pub file_name: String,
}

/// What a recording's download is, byte for byte: its length and SHA-256 as `sha256sum` prints
/// them for the downloaded file (the plaintext, not the encrypted object the box keeps).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Download {
    pub bytes: u64,
    pub sha256: String,
    pub file_name: String,
}

/// The audit log's hash chain as walked now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainCheck {
    pub intact: bool,
    /// Chained events checked (all of them when intact).
    pub events: u64,
    /// Where the chain breaks, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The box's health for the admin page: what today needs `witness sync status` and the panel.
/// No secret and no session content in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthView {
    pub disk: DiskHealth,
    pub store: StoreHealthView,
    /// The video encoder the box chose, `none` before the first RDP session.
    pub encoder: String,
    pub keys: KeyHealth,
    pub sessions_active: u64,
    pub recordings_by_status: Vec<(String, u64)>,
    /// The front panel as the panel thread last published it (`witness panel`); `None` before it
    /// first did.
    pub panel: Option<PanelView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PanelView {
    /// What the LEDs show: `booting`, `idle`, `recording`, `uploading`, `offline`, `full`, `fault`….
    pub state: String,
    pub healthy: bool,
    /// What is wrong when not healthy (index, recorder, listener, board).
    pub problems: Vec<String>,
    /// A hardware watchdog is there and being petted.
    pub watchdog_present: bool,
    pub watchdog_petting: bool,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DiskHealth {
    pub used_percent: u8,
    pub free_bytes: u64,
    pub high_watermark_percent: u8,
    pub min_free_bytes: u64,
    /// Above the watermark (or below the free minimum): new sessions are refused.
    pub refusing_sessions: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreHealthView {
    pub destination: Option<String>,
    /// `online`, `offline` (the store could not be reached) or `failing` (it answered with an
    /// error), from the last contact.
    pub state: String,
    pub pending: u64,
    pub pending_bytes: u64,
    pub oldest_pending_since: Option<String>,
    pub uploaded: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_success_at: Option<String>,
    /// What the store key was found able to do (`write-only`, `read-write`), once checked.
    pub key_access: Option<String>,
    /// Every job of the recordings whose after-life is not through yet, as `witness sync status`
    /// lists them: where each waits, and why.
    #[serde(default)]
    pub jobs: Vec<JobView>,
}

/// One step of a recording's after-life (seal, extract, upload, verify, prune).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobView {
    pub recording: String,
    pub step: String,
    /// `waiting` or `done`.
    pub state: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When a waiting step is tried next (RFC 3339, UTC).
    pub next_attempt_at: Option<String>,
    /// Why it waits (the last failure, or why it may not run yet).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KeyHealth {
    /// The id of the key new recordings are wrapped under (an id, never the key).
    pub active_key: Option<String>,
    /// The keys are sealed to the box's TPM (otherwise plain files on the data partition).
    pub sealed_to_tpm: bool,
    /// Why the keys cannot be used, when they cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub sessions_active: u64,
    pub recordings_by_status: Vec<(String, u64)>,
    pub upload_backlog_bytes: u64,
    pub upload_backlog_recordings: u64,
    pub encoder: String,
    pub disk_used_percent: u8,
}

/// Upload state of the box, for the overview.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreView {
    pub destination: Option<String>,
    pub pending: u64,
    pub pending_bytes: u64,
    pub last_error: Option<String>,
    pub last_success_at: Option<String>,
}

/// Why a console login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    /// Wrong name, password or one-time code (or a code used before).
    Wrong,
    /// The password was right, but the account needs its one-time code (counted as a failure).
    NeedsCode,
    Throttled {
        retry_after: u64,
    },
    BadName,
}

/// What the console reads and does; the binary implements it. Calls are short and synchronous
/// except [`Console::authenticate`] and [`Console::recording_content`], which the console runs
/// off the async threads.
pub trait Console: Send + Sync + 'static {
    /// Checks a box user's password and, when the account has one, its one-time code (single
    /// use), through the box's gate (throttled per source and name, audited). Deliberately slow.
    fn authenticate(
        &self,
        user: &str,
        password: &str,
        totp: Option<&str>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Account, LoginRefusal>;
    /// The account as it is now (role changes and deletions apply to open web sessions).
    fn account(&self, user: &str) -> Option<Account>;
    fn sessions(&self, query: &SessionQuery) -> Result<Vec<SessionHit>, ConsoleError>;
    /// Every place in one session where a search matched, in time order per recording.
    fn hits(&self, session_id: &str, query: &str) -> Result<Vec<TextHit>, ConsoleError>;
    fn session(&self, id: &str) -> Result<SessionDetail, ConsoleError>;
    fn recording(&self, id: &str) -> Result<RecordingRow, ConsoleError>;
    /// The part of the playable recording (decrypted) a request's `Range` header asks for (see
    /// [`Part::of`]), from the box or fetched from the store.
    fn recording_content(&self, id: &str, range: Option<&str>) -> Result<Content, ConsoleError>;
    /// What a recording's download was found to be (see `/recordings/{id}/download`) when it was
    /// worked out for the sealed file `of` names (its size, digest and recovery); `None` when it
    /// was not, or for another file. Kept across restarts.
    fn download_figures(&self, recording_id: &str, of: &str) -> Result<Option<Download>, ConsoleError>;
    /// Keeps what a recording's download was found to be for the sealed file `of` names.
    fn keep_download_figures(&self, recording_id: &str, of: &str, figures: &Download) -> Result<(), ConsoleError>;
    /// The moments of a video's timeline thumbnails (one per settled picture read), in order.
    fn thumbnail_times(&self, recording_id: &str) -> Result<Vec<f64>, ConsoleError>;
    /// The `n`th of them, opened: a PNG.
    fn thumbnail(&self, recording_id: &str, n: usize) -> Result<Vec<u8>, ConsoleError>;
    /// Makes a session's evidence bundle as one archive (file and disk work: run off the async
    /// threads).
    fn evidence(&self, session_id: &str) -> Result<EvidenceBundle, ConsoleError>;
    /// Removes a bundle made by [`Console::evidence`] before its time (its maker made newer
    /// ones); a bundle already gone is no error.
    fn drop_evidence(&self, bundle_id: &str);
    /// A bundle made by [`Console::evidence`], to stream, and its length.
    fn evidence_file(&self, bundle_id: &str) -> Result<(std::fs::File, u64), ConsoleError>;
    /// Whole lines of a recording's plaintext past `from`, for the live view.
    fn tail(&self, recording_id: &str, from: &TailCursor) -> Result<Tail, ConsoleError>;
    /// Ends a live session; `false` when it is not live.
    fn terminate(&self, session_id: &str, by: &str) -> Result<bool, ConsoleError>;
    fn store(&self) -> Result<StoreView, ConsoleError>;
    /// A page of the box-wide audit log, newest first.
    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, ConsoleError>;
    /// Walks the audit log's hash chain (file work: run off the async threads).
    fn audit_chain(&self) -> Result<ChainCheck, ConsoleError>;
    fn health(&self) -> Result<HealthView, ConsoleError>;
    fn metrics(&self) -> Result<Metrics, ConsoleError>;
    /// Whether `bearer` is the box's metrics token (`witness metrics token`); `false` when no
    /// token was made yet.
    fn metrics_token_ok(&self, bearer: &str) -> bool;
    /// Appends an audit event; `detail` never holds a secret.
    fn audit(&self, kind: &str, user: &str, session_id: Option<&str>, detail: serde_json::Value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(activity: Option<Vec<(f64, f64)>>) -> RecordingDetail {
        RecordingDetail {
            recording: RecordingRow {
                id: "r1".into(),
                session_id: "s1".into(),
                user: "alice".into(),
                target: "win01".into(),
                protocol: "rdp".into(),
                channel: "desktop 1024x768".into(),
                started_at: "2025-01-01T00:00:00.000Z".into(),
                ended_at: Some("2025-01-01T00:00:14.000Z".into()),
                status: witness_core::RecordingStatus::Completed,
                status_reason: None,
                bytes: 1000,
                sha256: None,
                duration: Some(14.0),
                recovered: activity.is_none(),
                path: "recordings/r1.mp4".into(),
                frames: activity.as_ref().map(|_| 42),
                activity,
                seal_error: None,
                missed_screen_updates: None,
                screen_unverified: false,
                text: None,
            },
            timeline: Vec::new(),
            upload: None,
            format: "mp4".into(),
            on_box: true,
        }
    }

    fn row(kind: &str, user: Option<&str>, detail: serde_json::Value) -> AuditRow {
        AuditRow {
            id: 1,
            at: "2025-01-01T00:00:00.000Z".into(),
            kind: kind.into(),
            user: user.map(Into::into),
            target: None,
            session_id: Some("s1".into()),
            detail,
        }
    }

    /// The row's user is whom an event is about; the actor is who did it.
    #[test]
    fn an_audit_entry_names_who_acted() {
        let terminated = AuditEntry::from(row(
            "session_terminated",
            Some("alice"),
            serde_json::json!({ "reason": "terminated", "by": "adam" }),
        ));
        let json = serde_json::to_value(&terminated).unwrap();
        assert_eq!((json["actor"].as_str(), json["user"].as_str()), (Some("adam"), Some("alice")), "{json}");
        assert_eq!(AuditEntry::from(row("hold_set", Some("alice"), serde_json::json!({}))).actor, None);
        // The operator's evidence export names the session's user, who did not do it.
        assert_eq!(AuditEntry::from(row("evidence_exported", Some("alice"), serde_json::json!({}))).actor, None);
        // Whoever typed a name at the login is not that name's owner.
        let failed =
            AuditEntry::from(row("web_login_failed", Some("adam"), serde_json::json!({ "from": "10.0.0.9:5" })));
        assert_eq!(failed.actor.as_deref(), Some("unknown, from 10.0.0.9:5"));
        let own = AuditEntry::from(row("target_connected", Some("alice"), serde_json::json!({})));
        assert_eq!(own.actor.as_deref(), Some("alice"));
        assert_eq!(AuditEntry::from(row("recording_uploaded", None, serde_json::json!({}))).actor, None);
    }

    #[test]
    fn content_in_memory_gives_the_asked_part() {
        let all = |c: Content| c.chunks.map(Result::unwrap).collect::<Vec<_>>().concat();
        let c = Content::from_bytes(b"0123456789".to_vec(), Some("bytes=2-4"), "x", "f".into());
        assert_eq!((c.len, c.part), (10, Part::Bytes(2, 4)));
        assert_eq!(all(c), b"234");
        let c = Content::from_bytes(b"0123456789".to_vec(), None, "x", "f".into());
        assert_eq!(c.part, Part::Whole);
        assert_eq!(all(c), b"0123456789");
        let c = Content::from_bytes(b"0123456789".to_vec(), Some("bytes=10-"), "x", "f".into());
        assert_eq!(c.part, Part::Unsatisfiable);
        assert_eq!(all(c), b"");
        assert_eq!(Part::of(Some("bytes=-3"), 10).bounds(10), (7, 10));
    }

    /// The player reads a video's activity from the recording as the API sends it: beside the
    /// row's other fields, spans as `[start, end]` pairs, `null` when the box has none.
    #[test]
    fn a_recording_carries_its_activity_to_the_page() {
        let json = serde_json::to_value(detail(Some(vec![(0.0, 2.8), (5.0, 6.1)]))).unwrap();
        assert_eq!(json["activity"], serde_json::json!([[0.0, 2.8], [5.0, 6.1]]));
        assert_eq!(json["frames"], 42);
        assert_eq!(json["format"], "mp4");
        let json = serde_json::to_value(detail(None)).unwrap();
        assert!(json["activity"].is_null() && json.as_object().unwrap().contains_key("activity"), "{json}");
        assert_eq!(json["recovered"], true);
    }
}
