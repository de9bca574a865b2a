//! Schema migrations, one step per `user_version`. Steps are append-only: a shipped step is never
//! edited, a change is a new step.

use crate::{IndexError, Result};
use rusqlite::Connection;

const STEPS: &[&str] = &[
    // 1: the SSH jump path.
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        password_hash TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE user_keys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        public_key TEXT NOT NULL
    );
    CREATE TABLE targets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        protocol TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        login TEXT NOT NULL,
        secret_kind TEXT NOT NULL,
        secret TEXT NOT NULL,
        host_key TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE grants (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        target_id INTEGER NOT NULL REFERENCES targets(id) ON DELETE CASCADE,
        expires_at INTEGER,
        allow_forwarding INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, target_id)
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        target TEXT NOT NULL,
        protocol TEXT NOT NULL,
        client TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        end_reason TEXT,
        recovered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_started ON sessions(started_at);
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        channel TEXT NOT NULL,
        path TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT,
        duration REAL,
        recovered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX recordings_session ON recordings(session_id);
    CREATE INDEX recordings_status ON recordings(status);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        user TEXT,
        target TEXT,
        session_id TEXT,
        detail TEXT NOT NULL
    );",
    // 2: store-and-forward of recordings.
    "CREATE TABLE uploads (
        recording_id TEXT PRIMARY KEY REFERENCES recordings(id),
        object_key TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        lease_until INTEGER NOT NULL DEFAULT 0,
        lease_owner INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        upload_id TEXT,
        parts TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        uploaded_at TEXT
    );
    CREATE INDEX uploads_due ON uploads(state, next_attempt_at);
    CREATE TABLE store_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        destination TEXT,
        last_error TEXT,
        last_error_kind TEXT,
        last_error_at TEXT,
        last_success_at TEXT
    );
    ALTER TABLE sessions ADD COLUMN manifest_key TEXT;
    ALTER TABLE sessions ADD COLUMN manifest_uploaded INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE recordings ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;",
    // 3: the audit log, hash-chained.
    "ALTER TABLE audit ADD COLUMN hash TEXT;",
    // 4: the web console: TOTP second factor, search inside SSH output (a blind index: keyed word
    // hashes and sealed text, never the text itself).
    "ALTER TABLE users ADD COLUMN totp_secret TEXT;
    ALTER TABLE recordings ADD COLUMN text_indexed INTEGER NOT NULL DEFAULT 0;
    CREATE VIRTUAL TABLE cast_text USING fts5(
        tokens, recording_id UNINDEXED, session_id UNINDEXED, at UNINDEXED, line_times UNINDEXED,
        sealed UNINDEXED, tokenize = 'unicode61'
    );",
    // 5: the RDP jump path. NTLM checks passwords against the NT hash, so users with a password
    // get one; targets may name a Windows domain; grants say which RDP redirections they allow.
    "ALTER TABLE users ADD COLUMN nt_hash TEXT;
    ALTER TABLE targets ADD COLUMN domain TEXT;
    ALTER TABLE grants ADD COLUMN rdp_clipboard INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE grants ADD COLUMN rdp_drives INTEGER NOT NULL DEFAULT 0;",
    // 6: retention per target and legal holds per session. A deletion (retention, or pruning a
    // local copy) is claimed first (`deleting_since`) in the same kind of transaction that sets a
    // hold, so a hold and a deletion never both win.
    "ALTER TABLE targets ADD COLUMN retention_days INTEGER;
    CREATE TABLE holds (
        session_id TEXT PRIMARY KEY REFERENCES sessions(id),
        reason TEXT NOT NULL,
        set_by TEXT,
        set_at TEXT NOT NULL
    );
    ALTER TABLE recordings ADD COLUMN deleting_since TEXT;
    ALTER TABLE recordings ADD COLUMN deleted_at TEXT;",
    // 7: an RDP target's own listener port (one target per port); a video's frame count and
    // activity spans (JSON `[[start, end], ...]` in seconds).
    "ALTER TABLE targets ADD COLUMN rdp_port INTEGER;
    CREATE UNIQUE INDEX targets_rdp_port ON targets(rdp_port);
    ALTER TABLE recordings ADD COLUMN frames INTEGER;
    ALTER TABLE recordings ADD COLUMN activity TEXT;",
    // 8: where a grant's SSH forwards may go (JSON array of `HOST:PORT`; empty: the target only).
    // The last TOTP time step a user logged in with: each code is used once. A user's access
    // epoch: bumped whenever their access shrinks (a key removed, the password or role changed),
    // which ends the sessions they opened before. Whether a user may use RDP (NULL: unless they
    // have a one-time code, which NLA cannot ask for). Screen updates a video's recorder missed.
    "ALTER TABLE grants ADD COLUMN forward_to TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE users ADD COLUMN totp_last_step INTEGER;
    ALTER TABLE users ADD COLUMN access_epoch INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN rdp_policy TEXT;
    ALTER TABLE recordings ADD COLUMN missed_screen_updates INTEGER;",
    // 9: what an SSH target's file transfers leave in the recording (`content` or `hashes`).
    "ALTER TABLE targets ADD COLUMN transfers TEXT NOT NULL DEFAULT 'content';",
    // 10: RDP grants open USB, camera and audio input redirection each with its own switch (off
    // for every grant made before).
    "ALTER TABLE grants ADD COLUMN rdp_usb INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE grants ADD COLUMN rdp_camera INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE grants ADD COLUMN rdp_audio_input INTEGER NOT NULL DEFAULT 0;",
    // 11: text read from session video (OCR), after sealing, into the same blind index as SSH
    // text: each video's extraction state (NULL: not started), how far it got (seconds of video
    // whose text is stored: a restart resumes there, replacing anything stored beyond) and why
    // it failed.
    "ALTER TABLE recordings ADD COLUMN text_state TEXT;
    ALTER TABLE recordings ADD COLUMN text_read_until REAL NOT NULL DEFAULT 0;
    ALTER TABLE recordings ADD COLUMN text_error TEXT;",
    // 12: whether a video's picture after its last missed screen update is unverified (no full
    // redraw was seen before the session ended); NULL or 0: verified, or nothing missed.
    "ALTER TABLE recordings ADD COLUMN screen_unverified INTEGER;",
    // 13: the MD5 of each upload part of the stored file, computed while sealing (`SIZE:HEX…`),
    // so an upload sends precomputed checksums instead of hashing the file again.
    // What the store key was found able to do (`read-write`, `write-only`), for `sync status`.
    "ALTER TABLE recordings ADD COLUMN part_digests TEXT;
    ALTER TABLE store_state ADD COLUMN key_access TEXT;",
    // 14: terminal text indexed again for prefix search (prefix tokens) and for hits at the
    // event that printed them (per-line steps); a pruned recording keeps its older text.
    "UPDATE recordings SET text_indexed = 0 WHERE path LIKE '%.cast' AND text_indexed = 1 AND pruned = 0;",
    // 15: a session's audit events found without reading the whole log (its detail page, what
    // the history says each session was).
    "CREATE INDEX audit_session ON audit(session_id, kind);",
    // 16: a recording's after-life as durable jobs, one row per step (`JobStep`), each claimed
    // under a lease, retried at `next_attempt_at` after a failure (`last_error` says why), `done`
    // once it ran; a step is enqueued only when every step it waits for is done.
    "CREATE TABLE jobs (
        recording_id TEXT NOT NULL REFERENCES recordings(id),
        step TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'waiting',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL DEFAULT 0,
        lease_until INTEGER NOT NULL DEFAULT 0,
        lease_owner INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        done_at INTEGER,
        PRIMARY KEY (recording_id, step)
    );
    CREATE INDEX jobs_due ON jobs(state, next_attempt_at);",
    // 17: an RDP video's timeline: a small thumbnail of each settled picture its text was read
    // from, at the moment it appeared, sealed with the search key (bound to the recording and
    // the moment), stored with that picture's text.
    "CREATE TABLE thumbnails (
        recording_id TEXT NOT NULL REFERENCES recordings(id),
        at REAL NOT NULL,
        sealed BLOB NOT NULL,
        PRIMARY KEY (recording_id, at)
    );",
    // 18: what a done step confirmed, for the steps after it (the upload: which store, key and
    // checksum the store checked on arrival); verify trusts nothing it does not find here.
    "ALTER TABLE jobs ADD COLUMN result TEXT;",
    // 19: what a finished recording's download is (length, SHA-256 and file name of exactly the
    // bytes served), worked out once by reading it whole and kept for the sealed file it was
    // worked out from (`download_of`: its size, digest and recovery): a restart does not read
    // every recording again, and a file sealed anew is worked out anew.
    "ALTER TABLE recordings ADD COLUMN download_of TEXT;
    ALTER TABLE recordings ADD COLUMN download_bytes INTEGER;
    ALTER TABLE recordings ADD COLUMN download_sha256 TEXT;
    ALTER TABLE recordings ADD COLUMN download_name TEXT;",
    // 20: RDP sound out (rdpsnd, AUDIO_PLAYBACK_DVC) is a redirection class a grant opens with
    // its own switch: off for every grant, those made before included (sound was a pipe a
    // program on the target could use).
    "ALTER TABLE grants ADD COLUMN rdp_audio INTEGER NOT NULL DEFAULT 0;",
    // 21: who is storing a recording's text in batches: each `start_text` takes the next claim,
    // and only the holder's batches and its "done" count (two extractors of one recording after
    // a crash, the start sweep and the Extract job, never mix their batches).
    "ALTER TABLE recordings ADD COLUMN text_claim INTEGER NOT NULL DEFAULT 0;",
    // 22: what the writer made durable (stored length and SHA-256 at each fsync), and what crash
    // recovery found and did (JSON: the gaps to sign, each with what it moved aside), so sealing
    // states only what recovery did and a file cut below what was durable is named (red team
    // h-red18e).
    "ALTER TABLE recordings ADD COLUMN durable_bytes INTEGER;
    ALTER TABLE recordings ADD COLUMN durable_sha256 TEXT;
    ALTER TABLE recordings ADD COLUMN recovery_gaps TEXT;",
];

/// The schema version this build brings an index to.
#[cfg(test)]
pub(crate) fn known() -> i64 {
    STEPS.len() as i64
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let known = STEPS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(IndexError::TooNew { found, known });
    }
    for (i, step) in STEPS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
