//! Retention and legal hold: how long a target's recordings are kept, which sessions are held,
//! and the claim every deletion takes first. A claim and a hold are both written in IMMEDIATE
//! transactions, so either the hold came first (nothing is claimed, nothing deleted) or the
//! deletion did (and setting the hold reports it).

use crate::{Index, IndexError, Result, id_of, now_text};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A claim older than this belongs to a process that died mid-deletion; it may be taken again.
const STALE_CLAIM: time::Duration = time::Duration::hours(1);

/// A legal hold on a session (and so on every recording of it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldRow {
    pub session_id: String,
    pub reason: String,
    pub set_by: Option<String>,
    pub set_at: String,
    pub user: String,
    pub target: String,
}

/// What setting a hold found.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldSet {
    /// The session was held already (the reason is replaced).
    pub was_held: bool,
    /// Recordings deleted, or being deleted, before the hold: the hold cannot bring them back.
    pub already_deleted: Vec<String>,
}

/// A recording past its target's retention: uploaded, verified, not held, not deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiredRecording {
    pub id: String,
    pub session_id: String,
    pub target: String,
    pub path: String,
    pub object_key: String,
    pub ended_at: String,
    pub retention_days: u32,
    pub pruned: bool,
}

impl Index {
    /// Sets (`Some(days)`) or removes (`None`: kept for ever) a target's retention.
    pub fn set_retention(&self, target: &str, days: Option<u32>) -> Result<()> {
        let conn = self.conn();
        let id = id_of(&conn, "targets", "target", target)?;
        conn.execute("UPDATE targets SET retention_days = ?2 WHERE id = ?1", params![id, days])?;
        Ok(())
    }

    /// Sets what a target's file transfers leave in the recording.
    pub fn set_transfers(&self, target: &str, transfers: witness_core::Transfers) -> Result<()> {
        let conn = self.conn();
        let id = id_of(&conn, "targets", "target", target)?;
        conn.execute("UPDATE targets SET transfers = ?2 WHERE id = ?1", params![id, transfers.as_str()])?;
        Ok(())
    }

    /// What a target's file transfers leave in the recording.
    pub fn transfers(&self, target: &str) -> Result<witness_core::Transfers> {
        let conn = self.conn();
        let id = id_of(&conn, "targets", "target", target)?;
        let text: String = conn.query_row("SELECT transfers FROM targets WHERE id = ?1", [id], |r| r.get(0))?;
        text.parse().map_err(|_| IndexError::Corrupt { column: "targets.transfers", value: text })
    }

    /// Every target with its retention in days (`None`: kept for ever).
    pub fn retentions(&self) -> Result<Vec<(String, Option<u32>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, retention_days FROM targets ORDER BY name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Holds a session. Unknown sessions are an error; holding twice replaces the reason.
    pub fn set_hold(&self, session_id: &str, reason: &str, set_by: Option<&str>) -> Result<HoldSet> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let known: Option<i64> =
            tx.query_row("SELECT 1 FROM sessions WHERE id = ?1", [session_id], |r| r.get(0)).optional()?;
        if known.is_none() {
            return Err(IndexError::NotFound { what: "session", name: session_id.to_owned() });
        }
        let was_held: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM holds WHERE session_id = ?1)", [session_id], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO holds(session_id, reason, set_by, set_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(session_id) DO UPDATE SET reason = excluded.reason, set_by = excluded.set_by,
               set_at = excluded.set_at",
            params![session_id, reason, set_by, now_text()],
        )?;
        let already_deleted = {
            let mut stmt = tx.prepare(
                "SELECT id FROM recordings WHERE session_id = ?1
                   AND (deleted_at IS NOT NULL OR deleting_since IS NOT NULL) ORDER BY id",
            )?;
            let rows = stmt.query_map([session_id], |r| r.get(0))?;
            rows.collect::<Result<Vec<String>, _>>()?
        };
        tx.commit()?;
        Ok(HoldSet { was_held, already_deleted })
    }

    /// Lifts a session's hold; `false` if it had none.
    pub fn clear_hold(&self, session_id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute("DELETE FROM holds WHERE session_id = ?1", [session_id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Every hold, oldest first.
    pub fn holds(&self) -> Result<Vec<HoldRow>> {
        self.hold_rows("", [])
    }

    pub fn hold_of(&self, session_id: &str) -> Result<Option<HoldRow>> {
        Ok(self.hold_rows("WHERE h.session_id = ?1", [session_id])?.into_iter().next())
    }

    fn hold_rows(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<HoldRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT h.session_id, h.reason, h.set_by, h.set_at, s.user, s.target
             FROM holds h JOIN sessions s ON s.id = h.session_id {filter} ORDER BY h.set_at, h.session_id"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok(HoldRow {
                session_id: r.get(0)?,
                reason: r.get(1)?,
                set_by: r.get(2)?,
                set_at: r.get(3)?,
                user: r.get(4)?,
                target: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Recordings past their target's retention at `now`: uploaded and verified (with their
    /// session's manifest), not held, not deleted, not claimed by a live deletion. Oldest first.
    pub fn expired(&self, now: time::OffsetDateTime) -> Result<Vec<ExpiredRecording>> {
        let conn = self.conn();
        // Claims are judged by the clock, whatever `now` the cutoff is computed for.
        let stale = crate::format_time(time::OffsetDateTime::now_utc() - STALE_CLAIM);
        let mut stmt = conn.prepare(
            "SELECT r.id, r.session_id, s.target, r.path, u.object_key, r.ended_at, t.retention_days, r.pruned
             FROM recordings r JOIN sessions s ON s.id = r.session_id
               JOIN targets t ON t.name = s.target
               JOIN uploads u ON u.recording_id = r.id
             WHERE u.state = 'verified' AND t.retention_days IS NOT NULL AND r.ended_at IS NOT NULL
               -- the session's manifest is stored first, so the sweep can take it away with the
               -- session's last recording
               AND s.manifest_uploaded = 1
               AND r.deleted_at IS NULL AND (r.deleting_since IS NULL OR r.deleting_since < ?1)
               AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = r.session_id)
             ORDER BY r.ended_at, r.id",
        )?;
        let rows = stmt.query_map([stale], |r| {
            Ok(ExpiredRecording {
                id: r.get(0)?,
                session_id: r.get(1)?,
                target: r.get(2)?,
                path: r.get(3)?,
                object_key: r.get(4)?,
                ended_at: r.get(5)?,
                retention_days: r.get(6)?,
                pruned: r.get(7)?,
            })
        })?;
        let all = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(all
            .into_iter()
            .filter(|e| e.ended_at < crate::format_time(now - time::Duration::days(e.retention_days.into())))
            .collect())
    }

    /// Claims a recording for deletion, unless its session is held or another deletion holds a
    /// fresh claim. Only a `true` here allows deleting anything of it, local or remote.
    pub fn claim_deletion(&self, recording_id: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = time::OffsetDateTime::now_utc();
        let n = tx.execute(
            "UPDATE recordings SET deleting_since = ?2 WHERE id = ?1 AND deleted_at IS NULL
               AND (deleting_since IS NULL OR deleting_since < ?3)
               AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = recordings.session_id)",
            params![recording_id, crate::format_time(now), crate::format_time(now - STALE_CLAIM)],
        )?;
        tx.commit()?;
        Ok(n == 1)
    }

    /// Gives a claim back (the deletion failed, or only the local copy was pruned).
    pub fn release_deletion(&self, recording_id: &str) -> Result<()> {
        self.conn().execute("UPDATE recordings SET deleting_since = NULL WHERE id = ?1", [recording_id])?;
        Ok(())
    }

    /// A claimed recording is gone locally and remotely: it stays in the history as deleted, and
    /// its searchable text and what its download was go with it.
    pub fn deletion_done(&self, recording_id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE recordings SET deleted_at = ?2, deleting_since = NULL, pruned = 1, download_of = NULL,
               download_bytes = NULL, download_sha256 = NULL, download_name = NULL WHERE id = ?1",
            params![recording_id, now_text()],
        )?;
        tx.execute("DELETE FROM cast_text WHERE recording_id = ?1", [recording_id])?;
        tx.execute("DELETE FROM thumbnails WHERE recording_id = ?1", [recording_id])?;
        tx.commit()?;
        Ok(())
    }

    /// When a recording was deleted by retention, if it was.
    pub fn deleted_at(&self, recording_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT deleted_at FROM recordings WHERE id = ?1", [recording_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// The session's manifest key once every recording of it with content is deleted (the
    /// manifest then goes too), else `None`.
    pub fn manifest_if_all_deleted(&self, session_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT manifest_key FROM sessions s WHERE id = ?1 AND manifest_key IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM recordings r WHERE r.session_id = s.id AND r.bytes > 0
                                   AND r.deleted_at IS NULL)",
                [session_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }
}
