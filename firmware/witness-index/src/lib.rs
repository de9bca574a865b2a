//! The box's SQLite index (the only crate that speaks SQL): users, targets and their vaulted
//! credentials, grants, sessions, recordings and the audit log. WAL mode, schema migrations by
//! `user_version`, one connection behind a mutex (calls are short; the daemon's hot paths never
//! touch the index). Encrypted at rest with SQLCipher under a key the box keeps apart
//! ([`Index::open_encrypted`]); a plain index from before is encrypted on its first open.

mod cipher;
mod console;
mod jobs;
mod rdp;
mod retention;
mod schema;
mod uploads;

pub use console::{DownloadFigures, Hit, SearchChunk, TextClaim, UploadRow};
pub use jobs::JobRow;
pub use rdp::RdpRedirection;
pub use retention::{ExpiredRecording, HoldRow, HoldSet};
pub use uploads::{Backlog, PartRecord, RestoredRecording, StoreHealth, UploadJob};
pub use witness_core::rows::{AuditRow, RecordingRow, SessionRow};

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use thiserror::Error;
use witness_core::history;
use witness_core::policy::GrantFacts;
use witness_core::{Protocol, RecordingStatus, Role};

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("index: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{what} {name:?} already exists")]
    Exists { what: &'static str, name: String },
    #[error("no {what} named {name:?}")]
    NotFound { what: &'static str, name: String },
    #[error("index schema version {found} is newer than this build knows ({known}); upgrade witness")]
    TooNew { found: i64, known: i64 },
    #[error("index holds an invalid value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    #[error("the index cannot be decrypted with the box's index key (another key, or a damaged file)")]
    WrongKey,
    #[error("port {port} already leads to target {target}")]
    PortTaken { port: u16, target: String },
    #[error("encrypting the plain index: {0}")]
    Encrypt(String),
    #[error("the index is busy: {0}")]
    Busy(&'static str),
    #[error("the text of recording {recording_id} is being stored by another extraction that started later")]
    TextTakenOver { recording_id: String },
}

/// The 256-bit SQLCipher key of the index (used raw: no passphrase stretching, it is random).
#[derive(Clone)]
pub struct IndexKey(pub [u8; 32]);

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// Current UTC time as stored in the index: RFC 3339 with milliseconds, so text order is time order.
pub fn now_text() -> String {
    let now = time::OffsetDateTime::now_utc();
    format_time(now)
}

pub fn format_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A user and what authenticates them.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub name: String,
    pub role: Role,
    /// PHC string (argon2id); `None` when the user logs in by key only.
    pub password_hash: Option<String>,
    /// OpenSSH public keys (`ssh-ed25519 AAAA… comment`).
    pub ssh_keys: Vec<String>,
}

/// The credential the box injects on the target. Lives only here and in memory while connecting.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    /// An OpenSSH private key file's text.
    PrivateKey(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(<redacted>)",
            Secret::PrivateKey(_) => "PrivateKey(<redacted>)",
        })
    }
}

#[derive(Debug, Clone)]
pub struct TargetRecord {
    pub name: String,
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub login: String,
    pub secret: Secret,
    /// Pinned host key (OpenSSH public key text); `None` until first use.
    pub host_key: Option<String>,
}

/// A grant as `witness grant list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub user: String,
    pub target: String,
    /// The target's protocol, as stored (`ssh`, `rdp`).
    pub protocol: String,
    /// Unix seconds; `None` for a grant without an end.
    pub expires_at: Option<i64>,
    pub allow_forwarding: bool,
    /// Where forwards may go (`HOST:PORT`); empty: the target itself.
    pub forward: Vec<String>,
    /// What the grant opens over RDP (stored for SSH targets too, where it means nothing).
    pub rdp: RdpRedirection,
}

/// How a recording ended, for [`Index::finish_recording`].
#[derive(Debug, Clone)]
pub struct RecordingEnd {
    pub status: RecordingStatus,
    pub reason: Option<String>,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub duration: Option<f64>,
    pub recovered: bool,
}

pub struct Index {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Index")
    }
}

impl Index {
    /// Opens (creating if needed) a plain, unencrypted index at `path` and brings its schema up
    /// to date. The box uses [`Index::open_encrypted`]; this is for tests and the bench.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, None)
    }

    /// Opens (creating if needed) the index at `path` encrypted with `key`. A plain index (from
    /// before encryption) is first encrypted into a copy that atomically replaces it.
    pub fn open_encrypted(path: &Path, key: &IndexKey) -> Result<Self> {
        if cipher::is_plain(path)? {
            cipher::encrypt_in_place(path, key)?;
        }
        Self::open_with(path, Some(key))
    }

    fn open_with(path: &Path, key: Option<&IndexKey>) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        if let Some(key) = key {
            // Must come before anything reads the file.
            conn.execute_batch(&cipher::key_pragma(key))?;
        }
        // The box and the admin CLI share the file: wait for the other's lock instead of failing,
        // and set this first because switching to WAL itself takes a lock.
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // The first read: with a wrong key SQLCipher sees no database at all.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(cipher::wrong_key)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Deleted rows are overwritten, not left in freed space: a removed user's password and
        // NT hash, a target's old secret are gone from the file, not just unlinked.
        conn.pragma_update(None, "secure_delete", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (it rolls back), so a
        // poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- users -----

    pub fn add_user(&self, user: &UserRecord) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let inserted = tx.execute(
            "INSERT INTO users(name, role, password_hash, created_at, access_epoch) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO NOTHING",
            params![user.name, user.role.as_str(), user.password_hash, now_text(), epoch_now()],
        )?;
        if inserted == 0 {
            return Err(IndexError::Exists { what: "user", name: user.name.clone() });
        }
        let id = tx.last_insert_rowid();
        for key in &user.ssh_keys {
            tx.execute("INSERT INTO user_keys(user_id, public_key) VALUES (?1, ?2)", params![id, key])?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        let conn = self.conn();
        let row = conn
            .query_row("SELECT id, role, password_hash FROM users WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
            })
            .optional()?;
        let Some((id, role, password_hash)) = row else { return Ok(None) };
        let mut stmt = conn.prepare("SELECT public_key FROM user_keys WHERE user_id = ?1 ORDER BY id")?;
        let ssh_keys = stmt.query_map([id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(Some(UserRecord {
            name: name.to_owned(),
            role: role.parse().map_err(|_| IndexError::Corrupt { column: "users.role", value: role })?,
            password_hash,
            ssh_keys,
        }))
    }

    /// How many sessions the index holds under a user name (the history is kept by name).
    pub fn session_count_of(&self, user: &str) -> Result<u64> {
        let n: i64 = self.conn().query_row("SELECT COUNT(*) FROM sessions WHERE user = ?1", [user], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Removes a user, their keys and grants; `false` if there was none. Their past sessions
    /// and recordings stay (they are evidence).
    pub fn remove_user(&self, name: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM users WHERE name = ?1", [name])? > 0)
    }

    /// The user's access epoch; `None` when the user is gone. Epochs come from the clock
    /// (microseconds) and only grow, so a user removed and added again under the same name never
    /// gets back an epoch a session of the old one holds.
    pub fn access_epoch(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.conn().query_row("SELECT access_epoch FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    }

    /// Runs `change` on a user's row and bumps their access epoch in the same transaction, so
    /// the sessions they opened before end. `NotFound` when there is no such user.
    fn shrink_access(
        &self,
        name: &str,
        change: impl FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<()>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id: Option<i64> = tx.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        let id = id.ok_or_else(|| IndexError::NotFound { what: "user", name: name.to_owned() })?;
        change(&tx, id)?;
        tx.execute(
            "UPDATE users SET access_epoch = MAX(access_epoch + 1, ?2) WHERE id = ?1",
            params![id, epoch_now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Ends the user's earlier sessions (their access shrank in a way the row does not show).
    pub fn bump_access_epoch(&self, name: &str) -> Result<()> {
        self.shrink_access(name, |_, _| Ok(()))
    }

    /// Replaces a user's password hash and NT hash (RDP), ending their earlier sessions.
    pub fn set_password(&self, name: &str, password_hash: &str, nt_hash: &str) -> Result<()> {
        self.shrink_access(name, |tx, id| {
            tx.execute(
                "UPDATE users SET password_hash = ?2, nt_hash = ?3 WHERE id = ?1",
                params![id, password_hash, nt_hash],
            )?;
            Ok(())
        })
    }

    /// Changes a user's role; ends their earlier sessions (the console re-reads roles itself).
    pub fn set_role(&self, name: &str, role: Role) -> Result<()> {
        self.shrink_access(name, |tx, id| {
            tx.execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id, role.as_str()])?;
            Ok(())
        })
    }

    /// Adds an SSH key to a user (access grows: nothing ends).
    pub fn add_user_key(&self, name: &str, key: &str) -> Result<()> {
        let conn = self.conn();
        let id: Option<i64> =
            conn.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        let id = id.ok_or_else(|| IndexError::NotFound { what: "user", name: name.to_owned() })?;
        conn.execute("INSERT INTO user_keys(user_id, public_key) VALUES (?1, ?2)", params![id, key])?;
        Ok(())
    }

    /// Removes the user's keys for which `matches` holds; how many went. Ends their earlier
    /// sessions when one did.
    pub fn remove_user_keys(&self, name: &str, matches: impl Fn(&str) -> bool) -> Result<usize> {
        let mut removed = 0;
        let outcome = self.shrink_access(name, |tx, id| {
            let mut stmt = tx.prepare("SELECT id, public_key FROM user_keys WHERE user_id = ?1")?;
            let keys = stmt
                .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            for (key_id, key) in keys {
                if matches(&key) {
                    tx.execute("DELETE FROM user_keys WHERE id = ?1", [key_id])?;
                    removed += 1;
                }
            }
            if removed == 0 {
                // Nothing shrank: roll back (no epoch bump).
                return Err(IndexError::NotFound { what: "key of user", name: name.to_owned() });
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(removed),
            Err(IndexError::NotFound { what: "key of user", .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    pub fn user_names(&self) -> Result<Vec<(String, Role)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, role FROM users ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (name, role) = r?;
            let role = role.parse().map_err(|_| IndexError::Corrupt { column: "users.role", value: role })?;
            Ok((name, role))
        })
        .collect()
    }

    // ----- targets -----

    pub fn add_target(&self, t: &TargetRecord) -> Result<()> {
        let (kind, secret) = match &t.secret {
            Secret::Password(p) => ("password", p),
            Secret::PrivateKey(k) => ("private_key", k),
        };
        let inserted = self.conn().execute(
            "INSERT INTO targets(name, protocol, host, port, login, secret_kind, secret, host_key, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(name) DO NOTHING",
            params![t.name, t.protocol.as_str(), t.host, t.port, t.login, kind, secret, t.host_key, now_text()],
        )?;
        if inserted == 0 {
            return Err(IndexError::Exists { what: "target", name: t.name.clone() });
        }
        Ok(())
    }

    pub fn target(&self, name: &str) -> Result<Option<TargetRecord>> {
        self.conn()
            .query_row(
                "SELECT protocol, host, port, login, secret_kind, secret, host_key FROM targets WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u16>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                    ))
                },
            )
            .optional()?
            .map(|(protocol, host, port, login, kind, secret, host_key)| {
                let secret = match kind.as_str() {
                    "password" => Secret::Password(secret),
                    "private_key" => Secret::PrivateKey(secret),
                    _ => return Err(IndexError::Corrupt { column: "targets.secret_kind", value: kind }),
                };
                let protocol = protocol
                    .parse()
                    .map_err(|_| IndexError::Corrupt { column: "targets.protocol", value: protocol })?;
                Ok(TargetRecord { name: name.to_owned(), protocol, host, port, login, secret, host_key })
            })
            .transpose()
    }

    pub fn target_names(&self) -> Result<Vec<(String, Protocol, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, protocol, host || ':' || port FROM targets ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)))?;
        rows.map(|r| {
            let (n, p, a) = r?;
            let p = p.parse().map_err(|_| IndexError::Corrupt { column: "targets.protocol", value: p })?;
            Ok((n, p, a))
        })
        .collect()
    }

    /// Every target's name, protocol, host and port (never its credential): what the box
    /// connects to, for its egress firewall.
    pub fn target_endpoints(&self) -> Result<Vec<(String, Protocol, String, u16)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, protocol, host, port FROM targets ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, u16>(3)?))
        })?;
        rows.map(|r| {
            let (n, p, h, port) = r?;
            let p = p.parse().map_err(|_| IndexError::Corrupt { column: "targets.protocol", value: p })?;
            Ok((n, p, h, port))
        })
        .collect()
    }

    /// Pins a host key on first use. Returns `true` if `key` is now the pinned key (pinned by
    /// this call, or already pinned to the same key by a concurrent first connection), `false`
    /// if a different key is pinned.
    pub fn pin_host_key(&self, target: &str, key: &str) -> Result<bool> {
        let conn = self.conn();
        let n = conn
            .execute("UPDATE targets SET host_key = ?2 WHERE name = ?1 AND host_key IS NULL", params![target, key])?;
        if n == 1 {
            return Ok(true);
        }
        let pinned: Option<String> = conn
            .query_row("SELECT host_key FROM targets WHERE name = ?1", [target], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(pinned.as_deref() == Some(key))
    }

    // ----- grants -----

    /// Creates or replaces the grant of `user` on `target`.
    pub fn grant(&self, user: &str, target: &str, facts: GrantFacts) -> Result<()> {
        let conn = self.conn();
        let uid = id_of(&conn, "users", "user", user)?;
        let tid = id_of(&conn, "targets", "target", target)?;
        conn.execute(
            "INSERT INTO grants(user_id, target_id, expires_at, allow_forwarding, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(user_id, target_id) DO UPDATE SET expires_at = excluded.expires_at,
               allow_forwarding = excluded.allow_forwarding, created_at = excluded.created_at",
            params![uid, tid, facts.expires_at, facts.allow_forwarding, now_text()],
        )?;
        Ok(())
    }

    /// Removes a grant; `false` if there was none.
    pub fn revoke(&self, user: &str, target: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM grants WHERE user_id = (SELECT id FROM users WHERE name = ?1)
               AND target_id = (SELECT id FROM targets WHERE name = ?2)",
            params![user, target],
        )?;
        Ok(n > 0)
    }

    /// Sets where the grant's forwards may go (`HOST:PORT` entries, checked by the caller).
    pub fn set_grant_forwards(&self, user: &str, target: &str, destinations: &[String]) -> Result<()> {
        let list = serde_json::to_string(destinations).expect("strings serialise");
        self.conn().execute(
            "UPDATE grants SET forward_to = ?3 WHERE user_id = (SELECT id FROM users WHERE name = ?1)
               AND target_id = (SELECT id FROM targets WHERE name = ?2)",
            params![user, target, list],
        )?;
        Ok(())
    }

    /// Where the grant's forwards may go; empty when it names no destination (or there is none).
    pub fn grant_forwards(&self, user: &str, target: &str) -> Result<Vec<String>> {
        let list: Option<String> = self
            .conn()
            .query_row(
                "SELECT g.forward_to FROM grants g
                 JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
                 WHERE u.name = ?1 AND t.name = ?2",
                params![user, target],
                |r| r.get(0),
            )
            .optional()?;
        Ok(list.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default())
    }

    /// Every grant, by user and target, with what it allows.
    pub fn grants(&self) -> Result<Vec<GrantRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT u.name, t.name, t.protocol, g.expires_at, g.allow_forwarding, g.forward_to,
                    g.rdp_clipboard, g.rdp_drives, g.rdp_usb, g.rdp_camera, g.rdp_audio_input, g.rdp_audio
             FROM grants g JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
             ORDER BY u.name, t.name",
        )?;
        let rows = stmt.query_map([], |r| {
            let forward: String = r.get(5)?;
            Ok(GrantRow {
                user: r.get(0)?,
                target: r.get(1)?,
                protocol: r.get(2)?,
                expires_at: r.get(3)?,
                allow_forwarding: r.get(4)?,
                forward: serde_json::from_str(&forward).unwrap_or_default(),
                rdp: RdpRedirection::from_row(r, 6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn grant_of(&self, user: &str, target: &str) -> Result<Option<GrantFacts>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT g.expires_at, g.allow_forwarding FROM grants g
                 JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id
                 WHERE u.name = ?1 AND t.name = ?2",
                params![user, target],
                |r| Ok(GrantFacts { expires_at: r.get(0)?, allow_forwarding: r.get(1)? }),
            )
            .optional()?)
    }

    // ----- sessions and recordings -----

    pub fn create_session(
        &self,
        id: &str,
        user: &str,
        target: &str,
        protocol: Protocol,
        client: Option<&str>,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sessions(id, user, target, protocol, client, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, user, target, protocol.as_str(), client, now_text()],
        )?;
        Ok(())
    }

    /// Ends a session once; a second call (e.g. recovery racing a late end) keeps the first reason.
    pub fn end_session(&self, id: &str, reason: &str, recovered: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE sessions SET ended_at = ?2, end_reason = ?3, recovered = ?4 WHERE id = ?1 AND ended_at IS NULL",
            params![id, now_text(), reason, recovered],
        )?;
        Ok(())
    }

    /// Sessions with no end: after a crash, these are what recovery finishes.
    pub fn open_sessions(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM sessions WHERE ended_at IS NULL ORDER BY started_at")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    pub fn create_recording(&self, id: &str, session_id: &str, channel: &str, path: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO recordings(id, session_id, channel, path, status, started_at) VALUES (?1, ?2, ?3, ?4, 'recording', ?5)",
            params![id, session_id, channel, path, now_text()],
        )?;
        Ok(())
    }

    pub fn set_recording_status(&self, id: &str, status: RecordingStatus) -> Result<()> {
        self.conn().execute("UPDATE recordings SET status = ?2 WHERE id = ?1", params![id, status.as_str()])?;
        Ok(())
    }

    pub fn finish_recording(&self, id: &str, end: &RecordingEnd) -> Result<()> {
        self.conn().execute(
            "UPDATE recordings SET status = ?2, status_reason = ?3, bytes = ?4, sha256 = ?5, duration = ?6,
               recovered = ?7, ended_at = ?8 WHERE id = ?1",
            params![
                id,
                end.status.as_str(),
                end.reason,
                end.bytes as i64,
                end.sha256,
                end.duration,
                end.recovered,
                now_text()
            ],
        )?;
        Ok(())
    }

    /// A finished video's frame count and activity spans (seconds on its timeline).
    /// Screen updates a video's recorder missed: stated as a gap in the signed manifest.
    /// `unverified`: the picture after the last one is not verified (no full redraw was seen).
    pub fn set_missed_screen_updates(&self, recording_id: &str, missed: u64, unverified: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE recordings SET missed_screen_updates = ?2, screen_unverified = ?3 WHERE id = ?1",
            params![recording_id, missed as i64, unverified],
        )?;
        Ok(())
    }

    pub fn set_recording_video(&self, recording_id: &str, frames: u64, activity: &[(f64, f64)]) -> Result<()> {
        let json = serde_json::to_string(activity)
            .map_err(|e| IndexError::Corrupt { column: "recordings.activity", value: e.to_string() })?;
        let n = self.conn().execute(
            "UPDATE recordings SET frames = ?2, activity = ?3 WHERE id = ?1",
            params![recording_id, frames as i64, json],
        )?;
        if n == 0 {
            return Err(IndexError::NotFound { what: "recording", name: recording_id.to_owned() });
        }
        Ok(())
    }

    const RECORDING_SELECT: &str = "SELECT r.id, r.session_id, s.user, s.target, s.protocol, r.channel, r.started_at,
        r.ended_at, r.status, r.status_reason, r.bytes, r.sha256, r.duration, r.recovered, r.path,
        r.frames, r.activity, CASE WHEN u.state = 'unsealed' THEN u.last_error END, r.missed_screen_updates,
        r.text_indexed, r.text_state, r.text_read_until, r.text_error, r.screen_unverified
        FROM recordings r JOIN sessions s ON s.id = r.session_id LEFT JOIN uploads u ON u.recording_id = r.id";

    fn recording_rows(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<RecordingRow>> {
        let conn = self.conn();
        let sql = format!("{} {filter} ORDER BY r.started_at, r.id", Self::RECORDING_SELECT);
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(args, |r| {
            Ok(RecordingRow {
                id: r.get(0)?,
                session_id: r.get(1)?,
                user: r.get(2)?,
                target: r.get(3)?,
                protocol: r.get(4)?,
                channel: r.get(5)?,
                started_at: r.get(6)?,
                ended_at: r.get(7)?,
                status: r.get::<_, String>(8)?.parse().map_err(|e: String| {
                    rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, e.into())
                })?,
                status_reason: r.get(9)?,
                bytes: r.get::<_, i64>(10)? as u64,
                sha256: r.get(11)?,
                duration: r.get(12)?,
                recovered: r.get(13)?,
                path: r.get(14)?,
                frames: r.get::<_, Option<i64>>(15)?.map(|f| f as u64),
                // Written by the box as JSON; unreadable text is shown as no activity rather than
                // failing the listing.
                activity: r.get::<_, Option<String>>(16)?.and_then(|t| serde_json::from_str(&t).ok()),
                seal_error: r.get(17)?,
                missed_screen_updates: r.get::<_, Option<i64>>(18)?.filter(|n| *n > 0).map(|n| n as u64),
                screen_unverified: r.get::<_, Option<bool>>(23)?.unwrap_or(false),
                text: Some(text_extraction(
                    &r.get::<_, String>(8)?,
                    &r.get::<_, String>(14)?,
                    r.get(19)?,
                    r.get(20)?,
                    r.get(21)?,
                    r.get(22)?,
                )),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn recordings(&self) -> Result<Vec<RecordingRow>> {
        self.recording_rows("", [])
    }

    pub fn recording(&self, id: &str) -> Result<Option<RecordingRow>> {
        Ok(self.recording_rows("WHERE r.id = ?1", [id])?.into_iter().next())
    }

    /// Recordings a crash left unfinished.
    pub fn unfinished_recordings(&self) -> Result<Vec<RecordingRow>> {
        self.recording_rows("WHERE r.status IN ('recording', 'processing')", [])
    }

    pub fn sessions(&self) -> Result<Vec<SessionRow>> {
        self.session_rows("", [])
    }

    pub fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        Ok(self.session_rows("WHERE s.id = ?1", [id])?.into_iter().next())
    }

    /// The recordings of one session.
    pub fn session_recordings(&self, session_id: &str) -> Result<Vec<RecordingRow>> {
        self.recording_rows("WHERE r.session_id = ?1", [session_id])
    }

    fn session_rows(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<SessionRow>> {
        let conn = self.conn();
        // Status order: the least advanced recording decides what the session shows.
        let sql = format!(
            "SELECT s.id, s.user, s.target, s.protocol, s.client, s.started_at, s.ended_at, s.end_reason,
               s.recovered, COUNT(r.id), COALESCE(SUM(r.bytes), 0),
               MIN(CASE r.status WHEN 'failed' THEN 0 WHEN 'recording' THEN 1 WHEN 'processing' THEN 2
                   WHEN 'completed' THEN 3 WHEN 'uploaded' THEN 4 END),
               json_group_array(r.channel),
               EXISTS(SELECT 1 FROM holds h WHERE h.session_id = s.id)
             FROM sessions s LEFT JOIN recordings r ON r.session_id = s.id
             {filter} GROUP BY s.id ORDER BY s.started_at, s.id"
        );
        let mut stmt = conn.prepare(&sql)?;
        // Files moved: the transfer events (sftp and scp) of the session.
        let mut moved =
            conn.prepare("SELECT detail FROM audit WHERE session_id = ?1 AND kind IN ('sftp', 'scp_file')")?;
        let rows = stmt.query_map(args, |r| {
            let id: String = r.get(0)?;
            let ended_at: Option<String> = r.get(6)?;
            let rank: Option<i64> = r.get(11)?;
            let status = match (ended_at.is_some(), rank) {
                (false, _) => "recording",
                (true, Some(0)) => "failed",
                (true, Some(1)) => "recording",
                (true, Some(2)) => "processing",
                (true, Some(4)) => "uploaded",
                (true, _) => "completed",
            };
            Ok(SessionRow {
                session_id: id.clone(),
                id,
                user: r.get(1)?,
                target: r.get(2)?,
                protocol: r.get(3)?,
                client: r.get(4)?,
                started_at: r.get(5)?,
                ended_at,
                end_reason: r.get(7)?,
                status: status.to_owned(),
                recovered: r.get(8)?,
                recordings: r.get::<_, i64>(9)? as u64,
                bytes: r.get::<_, i64>(10)? as u64,
                kinds: Vec::new(),
                commands: r.get::<_, Option<String>>(12)?.into_iter().collect(),
                transfers: 0,
                transfer_bytes: 0,
                held: r.get(13)?,
            })
        })?;
        let mut rows = rows.collect::<Result<Vec<_>, _>>()?;
        for row in &mut rows {
            let details = moved.query_map([&row.id], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
            (row.transfers, row.transfer_bytes) = history::transfer_tally(details.iter().map(String::as_str));
            // The channels as a JSON array: each whole, whatever bytes an exec command holds.
            let channels = history::channels_of(std::mem::take(&mut row.commands).first().map(String::as_str));
            (row.kinds, row.commands) =
                history::session_kinds(&row.protocol, channels.iter().map(String::as_str), row.transfers);
        }
        Ok(rows)
    }

    /// Forgets every user, key, target (with its credential) and grant: the factory reset.
    /// Sessions, recordings, uploads and the audit log stay. Nothing of what goes is left in the
    /// file: deleted rows are overwritten (`secure_delete`), and the write-ahead log, which still
    /// holds the pages as they were, is copied back and emptied.
    pub fn wipe_identities(&self) -> Result<()> {
        let conn = self.conn();
        conn.execute_batch("DELETE FROM grants; DELETE FROM user_keys; DELETE FROM users; DELETE FROM targets;")?;
        // A reader of the old pages (another process) holds the log for a moment: wait for it.
        let started = std::time::Instant::now();
        loop {
            let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
            if busy == 0 {
                return Ok(());
            }
            if started.elapsed() > std::time::Duration::from_secs(30) {
                return Err(IndexError::Busy("the write-ahead log (a reader kept it for 30 s)"));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Deletes every recording row, its upload and its pipeline's jobs (the reset confirmed twice), except those
    /// of held sessions: a legal hold outlives a factory reset. Returns the deleted files' paths.
    pub fn wipe_recordings(&self) -> Result<Vec<String>> {
        const FREE: &str = "NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = recordings.session_id)";
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let paths = {
            let mut stmt = tx.prepare(&format!("SELECT path FROM recordings WHERE {FREE}"))?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        tx.execute_batch(&format!(
            "DELETE FROM uploads WHERE recording_id IN (SELECT id FROM recordings WHERE {FREE});
             DELETE FROM jobs WHERE recording_id IN (SELECT id FROM recordings WHERE {FREE});
             DELETE FROM cast_text WHERE recording_id IN (SELECT id FROM recordings WHERE {FREE});
             DELETE FROM thumbnails WHERE recording_id IN (SELECT id FROM recordings WHERE {FREE});
             DELETE FROM recordings WHERE {FREE};
             DELETE FROM sessions WHERE NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = sessions.id);"
        ))?;
        tx.commit()?;
        Ok(paths)
    }

    // ----- audit -----

    /// Appends an audit event, chained to the one before it: each row's hash covers the
    /// previous row's hash and this row's fields, so a changed or removed event breaks the
    /// chain from there on. `detail` must never hold a secret.
    pub fn audit(
        &self,
        kind: &str,
        user: Option<&str>,
        target: Option<&str>,
        session_id: Option<&str>,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let prev: Option<String> =
            tx.query_row("SELECT hash FROM audit ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).optional()?.flatten();
        let (at, detail) = (now_text(), detail.to_string());
        let hash = audit_hash(prev.as_deref(), &at, kind, user, target, session_id, &detail);
        tx.execute(
            "INSERT INTO audit(at, kind, user, target, session_id, detail, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![at, kind, user, target, session_id, detail, hash],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The newest audit event's id and chained hash (what a checkpoint signs).
    pub fn audit_head(&self) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn()
            .query_row("SELECT id, hash FROM audit WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// The id, time and detail of every audit event of `kind`, oldest first (what the log
    /// itself records, e.g. the checkpoints it was signed into).
    pub fn audit_details(&self, kind: &str) -> Result<Vec<(i64, String, serde_json::Value)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, at, detail FROM audit WHERE kind = ?1 ORDER BY id")?;
        let rows =
            stmt.query_map([kind], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, at, detail) = row?;
            out.push((id, at, serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null)));
        }
        Ok(out)
    }

    /// The newest audit event of `kind`: its id, time and detail.
    pub fn audit_newest(&self, kind: &str) -> Result<Option<(i64, String, serde_json::Value)>> {
        Ok(self
            .conn()
            .query_row("SELECT id, at, detail FROM audit WHERE kind = ?1 ORDER BY id DESC LIMIT 1", [kind], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .optional()?
            .map(|(id, at, d)| (id, at, serde_json::from_str(&d).unwrap_or(serde_json::Value::Null))))
    }

    /// Checks the chain against a signed checkpoint `(last_id, hash)`: the event must still be
    /// there with that hash. `Err(why)` names a removed tail or a changed event.
    pub fn audit_reaches(&self, last_id: i64, hash: &str) -> Result<std::result::Result<(), String>> {
        let conn = self.conn();
        let at: Option<Option<String>> =
            conn.query_row("SELECT hash FROM audit WHERE id = ?1", [last_id], |r| r.get(0)).optional()?;
        let newest: Option<i64> = conn.query_row("SELECT MAX(id) FROM audit", [], |r| r.get(0))?;
        Ok(match at {
            Some(Some(h)) if h == hash => Ok(()),
            Some(_) => Err(format!("event {last_id} is not the one a signed checkpoint names: changed")),
            None => Err(format!(
                "events up to {last_id} were signed but the log ends at {}: its tail was removed",
                newest.map(|n| n.to_string()).unwrap_or_else(|| "nothing".into())
            )),
        })
    }

    /// Walks the audit chain. `Ok(n)`: n chained events intact; `Err((id, why))`: the first
    /// event where the chain breaks.
    pub fn verify_audit(&self) -> Result<std::result::Result<u64, (i64, String)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, at, kind, user, target, session_id, detail, hash FROM audit ORDER BY id")?;
        let mut rows = stmt.query([])?;
        let (mut prev, mut last_id, mut n): (Option<String>, Option<i64>, u64) = (None, None, 0);
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let hash: Option<String> = r.get(7)?;
            let Some(hash) = hash else {
                prev = None; // written before the chain existed
                last_id = Some(id);
                continue;
            };
            if let Some(l) = last_id
                && id != l + 1
            {
                return Ok(Err((l + 1, format!("events {} to {} are missing", l + 1, id - 1))));
            }
            let user: Option<String> = r.get(3)?;
            let target: Option<String> = r.get(4)?;
            let session: Option<String> = r.get(5)?;
            let expected = audit_hash(
                prev.as_deref(),
                &r.get::<_, String>(1)?,
                &r.get::<_, String>(2)?,
                user.as_deref(),
                target.as_deref(),
                session.as_deref(),
                &r.get::<_, String>(6)?,
            );
            if expected != hash {
                return Ok(Err((id, "changed, or an event before it was removed".into())));
            }
            prev = Some(hash);
            last_id = Some(id);
            n += 1;
        }
        Ok(Ok(n))
    }

    /// The newest `limit` audit events, oldest first.
    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditRow>> {
        self.audit_rows("ORDER BY id DESC LIMIT ?1", [limit], true)
    }

    /// A page of the box-wide audit log matching `q` (times in index text), newest first.
    pub fn audit_page(&self, q: &witness_core::rows::AuditQuery) -> Result<Vec<AuditRow>> {
        use rusqlite::types::Value;
        let (mut clauses, mut args) = (Vec::new(), Vec::<Value>::new());
        if let Some(kind) = &q.kind {
            match kind.strip_suffix('*') {
                // A prefix: compared as text, so `_` and `%` in it are not patterns.
                Some(prefix) => {
                    args.push(Value::Text(prefix.to_owned()));
                    clauses.push(format!("substr(kind, 1, length(?{n})) = ?{n}", n = args.len()));
                }
                None => {
                    args.push(Value::Text(kind.clone()));
                    clauses.push(format!("kind = ?{}", args.len()));
                }
            }
        }
        for (col, op, v) in [("user", "=", &q.user), ("at", ">=", &q.from), ("at", "<", &q.to)] {
            if let Some(v) = v {
                args.push(Value::Text(v.clone()));
                clauses.push(format!("{col} {op} ?{}", args.len()));
            }
        }
        if let Some(before) = q.before {
            args.push(Value::Integer(before));
            clauses.push(format!("id < ?{}", args.len()));
        }
        args.push(Value::Integer(q.limit.unwrap_or(100).clamp(1, 1000) as i64));
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        self.audit_rows(
            &format!("{filter} ORDER BY id DESC LIMIT ?{}", args.len()),
            rusqlite::params_from_iter(args.iter()),
            false,
        )
    }

    /// Every audit event of one session, oldest first.
    pub fn session_audit(&self, session_id: &str) -> Result<Vec<AuditRow>> {
        self.audit_rows("WHERE session_id = ?1 ORDER BY id", [session_id], false)
    }

    fn audit_rows(&self, tail: &str, args: impl rusqlite::Params, reverse: bool) -> Result<Vec<AuditRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT id, at, kind, user, target, session_id, detail FROM audit {tail}"))?;
        let rows = stmt.query_map(args, |r| {
            let detail: String = r.get(6)?;
            Ok(AuditRow {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                user: r.get(3)?,
                target: r.get(4)?,
                session_id: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
            })
        })?;
        let mut v = rows.collect::<Result<Vec<_>, _>>()?;
        if reverse {
            v.reverse();
        }
        Ok(v)
    }
}

fn audit_hash(
    prev: Option<&str>,
    at: &str,
    kind: &str,
    user: Option<&str>,
    target: Option<&str>,
    session_id: Option<&str>,
    detail: &str,
) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // Length-prefixed fields: no two different rows hash the same bytes.
    for field in
        [prev.unwrap_or(""), at, kind, user.unwrap_or("\0"), target.unwrap_or("\0"), session_id.unwrap_or("\0"), detail]
    {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

fn id_of(conn: &Connection, table: &str, what: &'static str, name: &str) -> Result<i64> {
    conn.query_row(&format!("SELECT id FROM {table} WHERE name = ?1"), [name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| IndexError::NotFound { what, name: name.to_owned() })
}

#[cfg(test)]
mod tests;

/// A fresh access epoch: the time in microseconds.
fn epoch_now() -> i64 {
    witness_core::clock::unix_micros()
}

/// A recording's text extraction as `recordings` shows it.
fn text_extraction(
    status: &str,
    path: &str,
    indexed: bool,
    state: Option<String>,
    read_until: f64,
    error: Option<String>,
) -> witness_core::rows::TextExtraction {
    let video = path.ends_with(".mp4");
    let state = match (status, indexed, state) {
        (_, true, _) => "done".to_owned(),
        (_, _, Some(s)) => s,
        ("recording" | "processing", _, None) => "waiting".to_owned(),
        _ => "pending".to_owned(),
    };
    witness_core::rows::TextExtraction { state, read_until: video.then_some(read_until), error }
}
#[cfg(test)]
mod attacks_red18c;
#[cfg(test)]
mod attacks_red18d;
