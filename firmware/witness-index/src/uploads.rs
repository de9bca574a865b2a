//! The durable upload queue: one job per recording, claimed under a lease so the daemon and a
//! `witness sync now` never upload the same recording at once, retried with backoff forever
//! (a recording stays queued until it is delivered), and the multipart progress that lets a
//! restart resume without re-sending finished parts.

use crate::{Index, IndexError, Result, now_text};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// One finished part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub etag: String,
    pub size: u64,
}

/// A claimed upload job with what the uploader needs to know about its recording.
#[derive(Debug, Clone)]
pub struct UploadJob {
    pub recording_id: String,
    pub session_id: String,
    pub object_key: String,
    /// Recording file, relative to the data directory.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub attempts: u32,
    pub upload_id: Option<String>,
    pub parts: Vec<PartRecord>,
    /// The stored file's per-part MD5s as sealing computed them (`SIZE:HEX…`), if it did.
    pub part_digests: Option<String>,
}

/// What is waiting to be uploaded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backlog {
    pub pending: u64,
    pub pending_bytes: u64,
    pub oldest_pending_since: Option<String>,
    pub uploaded: u64,
}

/// The store's last known health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreHealth {
    pub destination: Option<String>,
    pub last_error: Option<String>,
    pub last_error_kind: Option<String>,
    pub last_error_at: Option<String>,
    pub last_success_at: Option<String>,
    /// What the store key was found able to do, when it was last checked (`read-write`,
    /// `write-only`).
    pub key_access: Option<String>,
}

impl Index {
    /// Queues a sealed recording for upload (once; a second call changes nothing). One held back
    /// as not sealed ([`Index::upload_unsealed`]) becomes due now.
    pub fn enqueue_upload(&self, recording_id: &str, object_key: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO uploads(recording_id, object_key, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(recording_id) DO UPDATE SET state = 'pending', last_error = NULL, next_attempt_at = 0
               WHERE uploads.state = 'unsealed'",
            params![recording_id, object_key, now_text()],
        )?;
        Ok(())
    }

    /// Holds a finished recording back from the upload queue because it could not be sealed
    /// (state `unsealed`, never claimed), with the reason; a later seal queues it.
    pub fn upload_unsealed(&self, recording_id: &str, object_key: &str, error: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO uploads(recording_id, object_key, state, last_error, created_at)
             VALUES (?1, ?2, 'unsealed', ?3, ?4)
             ON CONFLICT(recording_id) DO UPDATE SET last_error = excluded.last_error WHERE uploads.state = 'unsealed'",
            params![recording_id, object_key, error, now_text()],
        )?;
        Ok(())
    }

    /// Recordings held back because they could not be sealed, with the reason.
    pub fn unsealed_uploads(&self) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT recording_id, COALESCE(last_error, '') FROM uploads WHERE state = 'unsealed' ORDER BY created_at",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Claims the oldest due job for `lease_ms` on behalf of process `owner`. A lease held by
    /// another process that `alive` says is gone (killed mid-upload) is taken over at once.
    pub fn claim_upload(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Option<UploadJob>> {
        self.claim_upload_where(None, now_ms, lease_ms, owner, alive)
    }

    /// Claims one recording's upload as [`Index::claim_upload`] does, whenever it is due by the
    /// upload table (the pipeline's upload job keeps its own backoff): `None` while another
    /// live process holds it, or when it is not pending (verified, unsealed or not queued).
    pub fn claim_upload_of(
        &self,
        recording_id: &str,
        now_ms: i64,
        lease_ms: i64,
        owner: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Option<UploadJob>> {
        self.claim_upload_where(Some(recording_id), now_ms, lease_ms, owner, alive)
    }

    fn claim_upload_where(
        &self,
        only: Option<&str>,
        now_ms: i64,
        lease_ms: i64,
        owner: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Option<UploadJob>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let candidates = {
            let mut stmt = tx.prepare(
                "SELECT u.recording_id, r.session_id, u.object_key, r.path, r.bytes, COALESCE(r.sha256, ''),
                        u.attempts, u.upload_id, u.parts, u.lease_until, u.lease_owner, r.part_digests
                 FROM uploads u JOIN recordings r ON r.id = u.recording_id
                 WHERE u.state = 'pending' AND (u.next_attempt_at <= ?1 OR u.recording_id = ?2)
                   AND (?2 IS NULL OR u.recording_id = ?2)
                 ORDER BY u.next_attempt_at, u.created_at",
            )?;
            let rows = stmt.query_map(params![now_ms, only], |r| {
                Ok((
                    UploadJob {
                        recording_id: r.get(0)?,
                        session_id: r.get(1)?,
                        object_key: r.get(2)?,
                        path: r.get(3)?,
                        bytes: r.get::<_, i64>(4)? as u64,
                        sha256: r.get(5)?,
                        attempts: r.get(6)?,
                        upload_id: r.get(7)?,
                        parts: Vec::new(),
                        part_digests: r.get(11)?,
                    },
                    r.get::<_, String>(8)?,
                    r.get::<_, i64>(9)?,
                    r.get::<_, u32>(10)?,
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        let free = candidates
            .into_iter()
            // A lease held by this very process is taken too: another worker is on it.
            .find(|(_, _, until, holder)| *until <= now_ms || (*holder != owner && !alive(*holder)));
        let Some((mut job, parts, _, _)) = free else { return Ok(None) };
        job.parts = serde_json::from_str(&parts)
            .map_err(|_| IndexError::Corrupt { column: "uploads.parts", value: parts.clone() })?;
        tx.execute(
            "UPDATE uploads SET lease_until = ?2, lease_owner = ?3 WHERE recording_id = ?1",
            params![job.recording_id, now_ms + lease_ms, owner],
        )?;
        tx.commit()?;
        Ok(Some(job))
    }

    /// Extends a lease while a long upload runs.
    pub fn renew_lease(&self, recording_id: &str, until_ms: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE uploads SET lease_until = ?2 WHERE recording_id = ?1", params![recording_id, until_ms])?;
        Ok(())
    }

    /// Gives a claimed upload back without a failure (the pipeline's upload step is done; its
    /// verify step claims it again).
    pub fn release_upload(&self, recording_id: &str) -> Result<()> {
        self.conn().execute("UPDATE uploads SET lease_until = 0 WHERE recording_id = ?1", [recording_id])?;
        Ok(())
    }

    /// Notes what the writer made durable of a recording still being written: its stored length
    /// and SHA-256 (never going back: a late note of a shorter length is dropped).
    pub fn note_durable(&self, recording_id: &str, bytes: u64, sha256: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE recordings SET durable_bytes = ?2, durable_sha256 = ?3
             WHERE id = ?1 AND status = 'recording' AND (durable_bytes IS NULL OR durable_bytes < ?2)",
            params![recording_id, bytes as i64, sha256],
        )?;
        Ok(())
    }

    /// What the writer noted as durable: stored length and SHA-256.
    pub fn durable_of(&self, recording_id: &str) -> Result<Option<(u64, String)>> {
        Ok(self
            .conn()
            .query_row("SELECT durable_bytes, durable_sha256 FROM recordings WHERE id = ?1", [recording_id], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<String>>(1)?))
            })
            .optional()?
            .flatten()
            .map(|(b, s)| (b as u64, s)))
    }

    /// Keeps what crash recovery found and did to a recording (JSON, the gaps to sign).
    pub fn set_recovery_gaps(&self, recording_id: &str, gaps: &str) -> Result<()> {
        self.conn().execute("UPDATE recordings SET recovery_gaps = ?2 WHERE id = ?1", (recording_id, gaps))?;
        Ok(())
    }

    /// What crash recovery kept for a recording ([`Self::set_recovery_gaps`]); `None` when no
    /// recovery of this version ran on it.
    pub fn recovery_gaps(&self, recording_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT recovery_gaps FROM recordings WHERE id = ?1", [recording_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Keeps the stored file's per-part digests that sealing computed (see [`UploadJob::part_digests`]).
    pub fn set_part_digests(&self, recording_id: &str, digests: &str) -> Result<()> {
        self.conn().execute("UPDATE recordings SET part_digests = ?2 WHERE id = ?1", (recording_id, digests))?;
        Ok(())
    }

    /// Records multipart progress (called after every finished part, so a crash resumes there).
    pub fn save_multipart(&self, recording_id: &str, upload_id: Option<&str>, parts: &[PartRecord]) -> Result<()> {
        let parts = serde_json::to_string(parts).expect("parts serialize");
        self.conn().execute(
            "UPDATE uploads SET upload_id = ?2, parts = ?3 WHERE recording_id = ?1",
            params![recording_id, upload_id, parts],
        )?;
        Ok(())
    }

    /// A failed attempt: counted, retried at `next_attempt_ms`, never given up.
    /// The reason the recording's last upload attempt failed, if it did.
    pub fn upload_last_error(&self, recording_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT last_error FROM uploads WHERE recording_id = ?1", [recording_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    pub fn upload_failed(&self, recording_id: &str, error: &str, next_attempt_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE uploads SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3, lease_until = 0
             WHERE recording_id = ?1",
            params![recording_id, error, next_attempt_ms],
        )?;
        Ok(())
    }

    /// The remote copy matched: the job is done and the recording is `uploaded`.
    pub fn upload_verified(&self, recording_id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE uploads SET state = 'verified', uploaded_at = ?2, lease_until = 0, last_error = NULL, upload_id = NULL
             WHERE recording_id = ?1",
            params![recording_id, now_text()],
        )?;
        // A failed recording is uploaded too (it holds evidence) but keeps its status and reason.
        tx.execute("UPDATE recordings SET status = 'uploaded' WHERE id = ?1 AND status = 'completed'", [recording_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Makes every pending job due now (`sync now`).
    pub fn make_uploads_due(&self) -> Result<u64> {
        let n = self.conn().execute("UPDATE uploads SET next_attempt_at = 0 WHERE state = 'pending'", [])?;
        Ok(n as u64)
    }

    pub fn backlog(&self) -> Result<Backlog> {
        let conn = self.conn();
        let (pending, pending_bytes, oldest) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(r.bytes), 0), MIN(u.created_at)
             FROM uploads u JOIN recordings r ON r.id = u.recording_id WHERE u.state = 'pending'",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?)),
        )?;
        let uploaded: i64 =
            conn.query_row("SELECT COUNT(*) FROM uploads WHERE state = 'verified'", [], |r| r.get(0))?;
        Ok(Backlog {
            pending: pending as u64,
            pending_bytes: pending_bytes as u64,
            oldest_pending_since: oldest,
            uploaded: uploaded as u64,
        })
    }

    /// The last error of each pending job, newest first (for `sync status`).
    pub fn upload_errors(&self, limit: u32) -> Result<Vec<(String, u32, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT recording_id, attempts, last_error FROM uploads
             WHERE state = 'pending' AND last_error IS NOT NULL ORDER BY next_attempt_at DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every upload waiting to be tried again after a failure, soonest first: recording, attempts
    /// so far, why it waits, when it is tried next (ms since the epoch).
    pub fn waiting_uploads(&self) -> Result<Vec<(String, u32, String, i64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT recording_id, attempts, last_error, next_attempt_at FROM uploads
             WHERE state = 'pending' AND last_error IS NOT NULL ORDER BY next_attempt_at, recording_id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Records the outcome of talking to the store.
    pub fn store_contact(&self, destination: &str, error: Option<(&str, &str)>) -> Result<()> {
        let conn = self.conn();
        conn.execute("INSERT INTO store_state(id) VALUES (1) ON CONFLICT(id) DO NOTHING", [])?;
        match error {
            None => conn.execute(
                "UPDATE store_state SET destination = ?1, last_success_at = ?2 WHERE id = 1",
                params![destination, now_text()],
            )?,
            Some((kind, message)) => conn.execute(
                "UPDATE store_state SET destination = ?1, last_error = ?2, last_error_kind = ?3, last_error_at = ?4
                 WHERE id = 1",
                params![destination, message, kind, now_text()],
            )?,
        };
        Ok(())
    }

    /// Notes what the store key was found able to do (see [`StoreHealth::key_access`]).
    pub fn store_key_access(&self, access: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute("INSERT INTO store_state(id) VALUES (1) ON CONFLICT(id) DO NOTHING", [])?;
        conn.execute("UPDATE store_state SET key_access = ?1 WHERE id = 1", [access])?;
        Ok(())
    }

    pub fn store_health(&self) -> Result<StoreHealth> {
        Ok(self
            .conn()
            .query_row(
                "SELECT destination, last_error, last_error_kind, last_error_at, last_success_at, key_access
                 FROM store_state WHERE id = 1",
                [],
                |r| {
                    Ok(StoreHealth {
                        destination: r.get(0)?,
                        last_error: r.get(1)?,
                        last_error_kind: r.get(2)?,
                        last_error_at: r.get(3)?,
                        last_success_at: r.get(4)?,
                        key_access: r.get(5)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Ended sessions whose recordings are all uploaded and whose manifest is not yet stored.
    pub fn sessions_needing_manifest(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT s.id FROM sessions s WHERE s.ended_at IS NOT NULL AND s.manifest_uploaded = 0
               AND NOT EXISTS (SELECT 1 FROM recordings r LEFT JOIN uploads u ON u.recording_id = r.id
                               WHERE r.session_id = s.id AND r.bytes > 0 AND COALESCE(u.state, '') != 'verified')
             ORDER BY s.started_at",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    pub fn manifest_uploaded(&self, session_id: &str, key: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE sessions SET manifest_uploaded = 1, manifest_key = ?2 WHERE id = ?1",
            params![session_id, key],
        )?;
        Ok(())
    }

    /// Uploaded recordings still on local disk, oldest first: what pruning may delete (each
    /// after [`Index::claim_deletion`]). Held sessions are never pruned.
    pub fn prunable(&self, ended_before: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT r.id, r.path FROM recordings r JOIN uploads u ON u.recording_id = r.id
             WHERE u.state = 'verified' AND r.pruned = 0 AND r.ended_at < ?1 AND r.deleting_since IS NULL
               AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = r.session_id)
             ORDER BY r.ended_at",
        )?;
        let rows = stmt.query_map([ended_before], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn mark_pruned(&self, recording_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE recordings SET pruned = 1 WHERE id = ?1
               AND EXISTS (SELECT 1 FROM uploads u WHERE u.recording_id = ?1 AND u.state = 'verified')",
            [recording_id],
        )?;
        Ok(())
    }

    /// Object key of a recording's upload, if queued.
    pub fn upload_key(&self, recording_id: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .conn()
            .query_row("SELECT object_key, state FROM uploads WHERE recording_id = ?1", [recording_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }
}

impl Index {
    /// Finished recordings with content that have no upload job yet (e.g. a crash between the
    /// end of a recording and its queueing).
    pub fn recordings_without_upload(&self) -> Result<Vec<(String, String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT r.id, r.session_id, s.started_at FROM recordings r JOIN sessions s ON s.id = r.session_id
             WHERE r.status IN ('completed', 'failed') AND r.bytes > 0
               AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.recording_id = r.id)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Multipart progress of jobs under way (for `sync status`).
    pub fn uploads_in_progress(&self) -> Result<Vec<(String, u64)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT recording_id, parts FROM uploads WHERE state = 'pending' AND upload_id IS NOT NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (id, parts) = r?;
            let parts: Vec<PartRecord> = serde_json::from_str(&parts).unwrap_or_default();
            Ok((id, parts.len() as u64))
        })
        .collect()
    }
}

impl Index {
    /// The multipart parts recorded for a job.
    pub fn claim_state(&self, recording_id: &str) -> Result<Vec<PartRecord>> {
        let parts: String =
            self.conn().query_row("SELECT parts FROM uploads WHERE recording_id = ?1", [recording_id], |r| r.get(0))?;
        serde_json::from_str(&parts).map_err(|_| IndexError::Corrupt { column: "uploads.parts", value: parts })
    }
}

/// A recording known only from the store (index rebuilt from manifests).
#[derive(Debug, Clone)]
pub struct RestoredRecording {
    pub id: String,
    pub channel: String,
    pub object_key: String,
    pub bytes: u64,
    pub sha256: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub duration: Option<f64>,
    pub recovered: bool,
    pub status: String,
    pub status_reason: Option<String>,
}

impl Index {
    /// Re-creates a session and its recordings from a stored manifest. The recordings are in
    /// the store only (`pruned`), uploaded and verified. Returns `false` if the session exists.
    pub fn restore_session(
        &self,
        session: &crate::SessionRow,
        manifest_key: &str,
        recordings: &[RestoredRecording],
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT INTO sessions(id, user, target, protocol, client, started_at, ended_at, end_reason, recovered,
                                  manifest_key, manifest_uploaded)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1) ON CONFLICT(id) DO NOTHING",
            params![
                session.id,
                session.user,
                session.target,
                session.protocol,
                session.client,
                session.started_at,
                session.ended_at,
                session.end_reason,
                session.recovered,
                manifest_key
            ],
        )?;
        if n == 0 {
            return Ok(false);
        }
        for r in recordings {
            tx.execute(
                "INSERT INTO recordings(id, session_id, channel, path, status, status_reason, started_at, ended_at,
                                        bytes, sha256, duration, recovered, pruned)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1)",
                params![
                    r.id,
                    session.id,
                    r.channel,
                    format!("store:{}", r.object_key),
                    r.status,
                    r.status_reason,
                    r.started_at,
                    r.ended_at,
                    r.bytes as i64,
                    r.sha256,
                    r.duration,
                    r.recovered
                ],
            )?;
            tx.execute(
                "INSERT INTO uploads(recording_id, object_key, state, created_at, uploaded_at)
                 VALUES (?1, ?2, 'verified', ?3, ?3)",
                params![r.id, r.object_key, now_text()],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Whether a recording's local copy was pruned (it is then only in the store).
    pub fn is_pruned(&self, recording_id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT pruned FROM recordings WHERE id = ?1", [recording_id], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }
}
