//! A recording's after-life as durable jobs (`jobs`, schema steps 16 and 18): one row per step, claimed
//! under a lease so two workers (or two processes) never run the same step at once, retried at
//! its next attempt after a failure with the reason kept, and `done` once it ran. Completing a
//! step enqueues, in the same transaction, the steps the caller says are ready once it is done
//! (the graph itself is `witness-archive::jobs`): a crash between the two leaves neither. A step
//! may keep what it confirmed (`result`) for the steps after it.

use crate::{Index, IndexError, Result};
use rusqlite::{OptionalExtension, params};
use witness_core::{JobState, JobStep};

/// A job as claimed or listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub recording_id: String,
    pub step: JobStep,
    pub state: JobState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When a waiting job is due (unix ms; 0: now).
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    /// Until when a worker holds it (unix ms; 0 or past: nobody).
    pub lease_until_ms: i64,
    /// The process holding (or last holding) the lease.
    pub lease_owner: u32,
}

fn typed<T: std::str::FromStr>(column: &'static str, value: String) -> Result<T> {
    value.parse().map_err(|_| IndexError::Corrupt { column, value })
}

/// A job row's columns ([`COLUMNS`]) as read.
type Columns = (String, String, String, u32, i64, Option<String>, i64, u32);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Columns> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
}

fn job(
    (recording_id, step, state, attempts, next_attempt_ms, last_error, lease_until_ms, lease_owner): Columns,
) -> Result<JobRow> {
    Ok(JobRow {
        recording_id,
        step: typed("jobs.step", step)?,
        state: typed("jobs.state", state)?,
        attempts,
        next_attempt_ms,
        last_error,
        lease_until_ms,
        lease_owner,
    })
}

const COLUMNS: &str = "recording_id, step, state, attempts, next_attempt_at, last_error, lease_until, lease_owner";

impl Index {
    /// Enqueues `step` for a recording, due now; nothing if it is already there (waiting or done).
    pub fn enqueue_job(&self, recording_id: &str, step: JobStep, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO jobs (recording_id, step, created_at) VALUES (?1, ?2, ?3)",
            params![recording_id, step.as_str(), now_ms],
        )?;
        Ok(())
    }

    /// Claims the longest-due waiting job for `lease_ms` on behalf of process `owner`: one whose
    /// lease ran out, or is held by another process that `alive` says is gone (killed mid-step:
    /// taken over at once, so a restart resumes at the step).
    pub fn claim_job(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Option<JobRow>> {
        self.claim_job_among(JobStep::ALL, now_ms, lease_ms, owner, alive)
    }

    /// [`Index::claim_job`] among `steps` only (`sync now`: the steps that bring a recording
    /// to the store, not the text extraction).
    pub fn claim_job_among(
        &self,
        steps: &[JobStep],
        now_ms: i64,
        lease_ms: i64,
        owner: u32,
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Option<JobRow>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let candidates = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM jobs WHERE state = 'waiting' AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, created_at"
            ))?;
            let rows = stmt.query_map([now_ms], row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let free = candidates.into_iter().find(|c| {
            let (until, holder) = (c.6, c.7);
            steps.iter().any(|s| s.as_str() == c.1) && (until <= now_ms || (holder != owner && !alive(holder)))
        });
        let Some(found) = free else { return Ok(None) };
        let found = job(found)?;
        tx.execute(
            "UPDATE jobs SET lease_until = ?3, lease_owner = ?4 WHERE recording_id = ?1 AND step = ?2",
            params![found.recording_id, found.step.as_str(), now_ms + lease_ms, owner],
        )?;
        tx.commit()?;
        Ok(Some(found))
    }

    /// `step` ran: it is done, and the steps `ready` picks from the recording's done steps (this
    /// one included) are enqueued, in one transaction. Returns what was enqueued.
    pub fn complete_job(
        &self,
        recording_id: &str,
        step: JobStep,
        now_ms: i64,
        ready: &dyn Fn(&[JobStep]) -> Vec<JobStep>,
    ) -> Result<Vec<JobStep>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE jobs SET state = 'done', done_at = ?3, lease_until = 0, last_error = NULL
             WHERE recording_id = ?1 AND step = ?2",
            params![recording_id, step.as_str(), now_ms],
        )?;
        let done = {
            let mut stmt = tx.prepare("SELECT step FROM jobs WHERE recording_id = ?1 AND state = 'done'")?;
            let steps = stmt.query_map([recording_id], |r| r.get::<_, String>(0))?;
            steps.map(|s| typed::<JobStep>("jobs.step", s?)).collect::<Result<Vec<_>>>()?
        };
        let next = ready(&done);
        for s in &next {
            tx.execute(
                "INSERT OR IGNORE INTO jobs (recording_id, step, created_at) VALUES (?1, ?2, ?3)",
                params![recording_id, s.as_str(), now_ms],
            )?;
        }
        tx.commit()?;
        Ok(next)
    }

    /// Keeps what `step` confirmed (before it is completed: a crash in between runs the step
    /// again, which saves it again), for the steps after it.
    pub fn save_job_result(&self, recording_id: &str, step: JobStep, result: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET result = ?3 WHERE recording_id = ?1 AND step = ?2",
            params![recording_id, step.as_str(), result],
        )?;
        Ok(())
    }

    /// What `step` confirmed, if it saved anything (never, for a step done by a version before
    /// schema step 18).
    pub fn job_result(&self, recording_id: &str, step: JobStep) -> Result<Option<String>> {
        let conn = self.conn();
        let found = conn
            .query_row(
                "SELECT result FROM jobs WHERE recording_id = ?1 AND step = ?2",
                params![recording_id, step.as_str()],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?;
        Ok(found.flatten())
    }

    /// A failed attempt: counted, the reason kept, due again at `next_attempt_ms`, never given up.
    pub fn fail_job(&self, recording_id: &str, step: JobStep, error: &str, next_attempt_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET attempts = attempts + 1, last_error = ?3, next_attempt_at = ?4, lease_until = 0
             WHERE recording_id = ?1 AND step = ?2",
            params![recording_id, step.as_str(), error, next_attempt_ms],
        )?;
        Ok(())
    }

    /// A step that cannot run yet but has not failed (a local copy kept until its time): due
    /// again at `at_ms`, with why it waits; its attempts are not counted.
    pub fn defer_job(&self, recording_id: &str, step: JobStep, why: &str, at_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET last_error = ?3, next_attempt_at = ?4, lease_until = 0
             WHERE recording_id = ?1 AND step = ?2",
            params![recording_id, step.as_str(), why, at_ms],
        )?;
        Ok(())
    }

    /// Makes waiting jobs due now (`step`'s only, or all): `sync now`, a store that came back,
    /// a disk past its high watermark (prune). Returns how many.
    pub fn make_jobs_due(&self, step: Option<JobStep>) -> Result<u64> {
        let n = self.conn().execute(
            "UPDATE jobs SET next_attempt_at = 0 WHERE state = 'waiting' AND (?1 IS NULL OR step = ?1)",
            [step.map(|s| s.as_str())],
        )?;
        Ok(n as u64)
    }

    /// Finished recordings whose after-life has no job yet (finished before the pipeline was
    /// wired, or by an older version): not pruned, not deleted, not being written.
    pub fn recordings_without_jobs(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT r.id FROM recordings r
             WHERE r.status IN ('completed', 'failed', 'uploaded') AND r.pruned = 0 AND r.deleted_at IS NULL
               AND r.path NOT LIKE 'store:%'
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.recording_id = r.id)
             ORDER BY r.ended_at",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Every job of the recordings whose pipeline is not finished (some job waits), by recording
    /// then in the order enqueued: what `sync status` and the console show.
    pub fn unfinished_pipelines(&self) -> Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE recording_id IN (SELECT recording_id FROM jobs WHERE state = 'waiting')
             ORDER BY recording_id, created_at, rowid"
        ))?;
        let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(job).collect()
    }

    /// Every waiting job, soonest due first (for `sync status`: what waits, and why).
    pub fn waiting_jobs(&self) -> Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE state = 'waiting' ORDER BY next_attempt_at, created_at"
        ))?;
        let rows = stmt.query_map([], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(job).collect()
    }

    /// A recording's jobs, in the order they were enqueued.
    pub fn recording_jobs(&self, recording_id: &str) -> Result<Vec<JobRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {COLUMNS} FROM jobs WHERE recording_id = ?1 ORDER BY created_at, rowid"))?;
        let rows = stmt.query_map([recording_id], row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(job).collect()
    }
}
