//! What the web console asks of the index: filtered session history, search inside SSH output
//! (FTS5 over a blind index: keyed word hashes and sealed chunk text, made and opened by the
//! caller, so no session text is stored in clear), upload state per recording, TOTP secrets and
//! status counts.

use crate::{Index, IndexError, RecordingRow, Result, SessionRow};
use rusqlite::{OptionalExtension, params, params_from_iter};
use std::collections::HashMap;
use witness_core::rows::SessionQuery;

/// Where a search matched: a matching chunk, still sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub recording_id: String,
    /// When the chunk started.
    pub at: f64,
    pub line_times: Vec<f64>,
    /// Per line, where later output events went on printing it (character, time).
    pub line_steps: Vec<Vec<(u32, f64)>>,
    /// Text read from a video: where on the screen each line was (x, y, width, height).
    pub line_rects: Vec<Option<[u32; 4]>>,
    pub sealed: Vec<u8>,
}

/// What a recording's download is, byte for byte: its length and SHA-256 as `sha256sum` prints
/// them, and the file's name.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadFigures {
    pub bytes: u64,
    pub sha256: String,
    pub file_name: String,
}

/// The claim on storing one recording's text in batches ([`Index::start_text`] for a terminal
/// recording, [`Index::start_read_text`] for a video's screen text): only the newest claim's
/// batches and "done" count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextClaim {
    pub recording_id: String,
    pub generation: i64,
}

/// Takes the next claim on a recording's text: its stored text forgotten and it marked not
/// indexed, in the caller's transaction. Returns the claim's generation.
fn take_text_claim(tx: &rusqlite::Transaction<'_>, recording_id: &str) -> Result<i64> {
    tx.execute("DELETE FROM cast_text WHERE recording_id = ?1", [recording_id])?;
    tx.execute("UPDATE recordings SET text_indexed = 0, text_claim = text_claim + 1 WHERE id = ?1", [recording_id])?;
    Ok(tx
        .query_row("SELECT text_claim FROM recordings WHERE id = ?1", [recording_id], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Whether `claim` is still the recording's, in the caller's transaction.
fn check_text_claim(tx: &rusqlite::Transaction<'_>, claim: &TextClaim) -> Result<()> {
    let now: Option<i64> = tx
        .query_row("SELECT text_claim FROM recordings WHERE id = ?1", [&claim.recording_id], |r| r.get(0))
        .optional()?;
    if now != Some(claim.generation) {
        return Err(IndexError::TextTakenOver { recording_id: claim.recording_id.clone() });
    }
    Ok(())
}

/// One chunk of a recording's searchable text as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchChunk {
    pub at: f64,
    pub tokens: String,
    pub line_times: Vec<f64>,
    /// Terminal text: per line, where later output events went on printing it (character,
    /// time); empty for text read from a video.
    pub line_steps: Vec<Vec<(u32, f64)>>,
    /// Text read from a video: each line's place on the screen; empty for terminal text.
    pub line_rects: Vec<Option<[u32; 4]>>,
    pub sealed: Vec<u8>,
}

/// A line's time as the `line_times` column holds it: `T`, `T@X,Y,W,H` for a line read from the
/// screen (a place on the screen is not session text), or `T+C=T+C=T` for a terminal line later
/// events went on printing (at character C, time T).
fn line_mark(at: f64, rect: Option<&[u32; 4]>, steps: &[(u32, f64)]) -> String {
    let mut mark = match rect {
        Some([x, y, w, h]) => format!("{at:.3}@{x},{y},{w},{h}"),
        None => format!("{at:.3}"),
    };
    for (c, t) in steps {
        mark.push_str(&format!("+{c}={t:.3}"));
    }
    mark
}

type LineMarks = (Vec<f64>, Vec<Option<[u32; 4]>>, Vec<Vec<(u32, f64)>>);

fn parse_line_marks(text: &str) -> LineMarks {
    let mut times = Vec::new();
    let mut rects = Vec::new();
    let mut all_steps = Vec::new();
    for mark in text.split(' ').filter(|m| !m.is_empty()) {
        let mut parts = mark.split('+');
        let head = parts.next().unwrap_or("");
        let (t, rect) = head.split_once('@').map_or((head, None), |(t, r)| (t, Some(r)));
        let Ok(t) = t.parse() else { continue };
        let rect = rect.and_then(|r| {
            let n: Vec<u32> = r.split(',').filter_map(|v| v.parse().ok()).collect();
            <[u32; 4]>::try_from(n).ok()
        });
        let steps = parts
            .filter_map(|p| {
                let (c, t) = p.split_once('=')?;
                Some((c.parse().ok()?, t.parse().ok()?))
            })
            .collect();
        times.push(t);
        rects.push(rect);
        all_steps.push(steps);
    }
    (times, rects, all_steps)
}

/// A recording's place in the upload queue.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub object_key: String,
    pub uploaded_at: Option<String>,
}

/// The `line_times` column of a chunk.
fn marks(c: &SearchChunk) -> String {
    c.line_times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            line_mark(
                *t,
                c.line_rects.get(i).and_then(Option::as_ref),
                c.line_steps.get(i).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Index {
    /// Sessions matching `f` (times in index text; its words given as blind `tokens`), oldest
    /// first, each with its matching chunks in time order when searching.
    pub fn find_sessions(&self, f: &SessionQuery, tokens: Option<&[String]>) -> Result<Vec<(SessionRow, Vec<Hit>)>> {
        let hits = match tokens {
            // Tokens are hex; quoting each makes them plain terms, all required.
            Some(t) if !t.is_empty() => {
                Some(self.search(&t.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" "))?)
            }
            Some(_) => Some(HashMap::new()),
            None => None,
        };
        let (mut clauses, mut args) = (Vec::new(), Vec::<String>::new());
        for (col, op, v) in [
            ("s.user", "=", &f.user),
            ("s.target", "=", &f.target),
            ("s.protocol", "=", &f.protocol),
            ("s.started_at", ">=", &f.from),
            ("s.started_at", "<", &f.to),
        ] {
            if let Some(v) = v {
                args.push(v.clone());
                clauses.push(format!("{col} {op} ?{}", args.len()));
            }
        }
        if let Some(h) = &hits {
            if h.is_empty() {
                return Ok(Vec::new());
            }
            let marks: Vec<String> = h
                .keys()
                .map(|id| {
                    args.push(id.clone());
                    format!("?{}", args.len())
                })
                .collect();
            clauses.push(format!("s.id IN ({})", marks.join(",")));
        }
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let mut rows = self.session_rows(&filter, params_from_iter(args.iter()))?;
        if let Some(status) = &f.status {
            rows.retain(|r| &r.status == status);
        }
        if let Some(kind) = &f.kind {
            rows.retain(|r| r.kinds.contains(kind));
        }
        if let Some(limit) = f.limit {
            let drop = rows.len().saturating_sub(limit as usize);
            rows.drain(..drop);
        }
        let mut hits = hits.unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|r| {
                let hit = hits.remove(&r.id).unwrap_or_default();
                (r, hit)
            })
            .collect())
    }

    /// One session's chunks holding all the blind `tokens`, in time order.
    pub fn session_hits(&self, session_id: &str, tokens: &[String]) -> Result<Vec<Hit>> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let query = tokens.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" ");
        Ok(self.search_in(&query, Some(session_id))?.remove(session_id).unwrap_or_default())
    }

    /// The matching chunks per session for an FTS5 query of blind tokens, in time order.
    pub(crate) fn search(&self, query: &str) -> Result<HashMap<String, Vec<Hit>>> {
        self.search_in(query, None)
    }

    fn search_in(&self, query: &str, session: Option<&str>) -> Result<HashMap<String, Vec<Hit>>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT session_id, recording_id, at, line_times, sealed
             FROM cast_text WHERE cast_text MATCH ?1 AND (?2 IS NULL OR session_id = ?2)
             ORDER BY session_id, at LIMIT 10000",
        )?;
        let mut out: HashMap<String, Vec<Hit>> = HashMap::new();
        let rows = stmt.query_map(params![query, session], |r| {
            let (line_times, line_rects, line_steps) = parse_line_marks(&r.get::<_, String>(3)?);
            Ok((
                r.get::<_, String>(0)?,
                Hit { recording_id: r.get(1)?, at: r.get(2)?, line_times, line_steps, line_rects, sealed: r.get(4)? },
            ))
        })?;
        for row in rows {
            let (session, hit) = row?;
            out.entry(session).or_default().push(hit);
        }
        Ok(out)
    }

    /// Forgets a recording's searchable text, marks it not indexed and takes the claim on
    /// storing it anew in batches ([`Self::add_text`], then [`Self::text_done`]), so no
    /// transaction holds the index's write lock for the whole of a large recording's text. A
    /// later `start_text` (or [`Self::store_text`]) takes the claim over: this one's batches and
    /// its "done" are refused from then on ([`IndexError::TextTakenOver`]), so two extractors
    /// of one recording never leave a chunk twice or a recording marked indexed with text missing.
    pub fn start_text(&self, recording_id: &str) -> Result<TextClaim> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let generation = take_text_claim(&tx, recording_id)?;
        tx.commit()?;
        Ok(TextClaim { recording_id: recording_id.to_owned(), generation })
    }

    /// Adds a batch of a recording's searchable text, in one short transaction, if `claim` is
    /// still the recording's.
    pub fn add_text(&self, claim: &TextClaim, session_id: &str, chunks: &[SearchChunk]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        check_text_claim(&tx, claim)?;
        insert_text(&tx, &claim.recording_id, session_id, chunks)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a recording's text, stored in batches since [`Self::start_text`], as indexed, if
    /// `claim` is still the recording's.
    pub fn text_done(&self, claim: &TextClaim) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE recordings SET text_indexed = 1 WHERE id = ?1 AND text_claim = ?2",
            params![claim.recording_id, claim.generation],
        )?;
        if n == 0 {
            return Err(IndexError::TextTakenOver { recording_id: claim.recording_id.clone() });
        }
        Ok(())
    }

    /// Stores a recording's searchable text (replacing any earlier) and marks it indexed.
    pub fn store_text(&self, recording_id: &str, session_id: &str, chunks: &[SearchChunk]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        take_text_claim(&tx, recording_id)?;
        insert_text(&tx, recording_id, session_id, chunks)?;
        tx.execute("UPDATE recordings SET text_indexed = 1 WHERE id = ?1", [recording_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Session videos on the box whose text is not read yet (or was being read when the box
    /// stopped), oldest first.
    pub fn videos_to_read(&self) -> Result<Vec<RecordingRow>> {
        self.recording_rows(
            "WHERE r.path LIKE '%.mp4' AND r.pruned = 0 AND r.deleted_at IS NULL AND r.text_indexed = 0
             AND r.status IN ('completed', 'uploaded')
             AND (r.text_state IS NULL OR r.text_state IN ('pending', 'reading'))",
            [],
        )
    }

    /// How far a video's text is stored (seconds from its start).
    pub fn text_read_until(&self, recording_id: &str) -> Result<f64> {
        Ok(self
            .conn()
            .query_row("SELECT text_read_until FROM recordings WHERE id = ?1", [recording_id], |r| r.get(0))
            .optional()?
            .unwrap_or(0.0))
    }

    /// Takes the claim on reading a video's screen text (the same `text_claim` as a terminal
    /// recording's, step 21) and says where the reading resumes (seconds from its start). The
    /// stored text is kept (a reading resumes); a later claim, by another reader of the same
    /// video (the daemon's, `witness index read-text`), takes it over: this one's batches and
    /// its end are refused from then on ([`IndexError::TextTakenOver`]), so two readers never
    /// leave a video marked read with text missing (red team h-red18d).
    pub fn start_read_text(&self, recording_id: &str) -> Result<(TextClaim, f64)> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute("UPDATE recordings SET text_claim = text_claim + 1 WHERE id = ?1", [recording_id])?;
        let (generation, from): (i64, f64) = tx
            .query_row("SELECT text_claim, text_read_until FROM recordings WHERE id = ?1", [recording_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
            .unwrap_or((0, 0.0));
        tx.commit()?;
        Ok((TextClaim { recording_id: recording_id.to_owned(), generation }, from))
    }

    /// Stores text read from a video from `from` seconds on, with the timeline's thumbnails of
    /// the same pictures (`(at, sealed PNG)`), replacing anything stored there before (a resumed
    /// reading never duplicates), and that it is read up to `until`, in one transaction, if
    /// `claim` ([`Self::start_read_text`]) is still the video's.
    pub fn store_read_text(
        &self,
        claim: &TextClaim,
        session_id: &str,
        from: f64,
        until: f64,
        chunks: &[SearchChunk],
        thumbnails: &[(f64, Vec<u8>)],
    ) -> Result<()> {
        let recording_id = claim.recording_id.as_str();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        check_text_claim(&tx, claim)?;
        tx.execute("DELETE FROM cast_text WHERE recording_id = ?1 AND at >= ?2", params![recording_id, from])?;
        tx.execute("DELETE FROM thumbnails WHERE recording_id = ?1 AND at >= ?2", params![recording_id, from])?;
        {
            let mut insert = tx.prepare("INSERT INTO thumbnails(recording_id, at, sealed) VALUES (?1, ?2, ?3)")?;
            for (at, sealed) in thumbnails {
                insert.execute(params![recording_id, at, sealed])?;
            }
        }
        {
            let mut insert = tx.prepare(
                "INSERT INTO cast_text(tokens, recording_id, session_id, at, line_times, sealed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for c in chunks {
                insert.execute(params![c.tokens, recording_id, session_id, c.at, marks(c), c.sealed])?;
            }
        }
        tx.execute(
            "UPDATE recordings SET text_state = 'reading', text_read_until = ?2, text_error = NULL WHERE id = ?1",
            params![recording_id, until],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The moments of a video's timeline thumbnails, in time order.
    pub fn thumbnail_times(&self, recording_id: &str) -> Result<Vec<f64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT at FROM thumbnails WHERE recording_id = ?1 ORDER BY at")?;
        let rows = stmt.query_map([recording_id], |r| r.get(0))?;
        Ok(rows.collect::<std::result::Result<Vec<f64>, _>>()?)
    }

    /// A video's `n`th thumbnail in time order, `(at, sealed PNG)`.
    pub fn thumbnail(&self, recording_id: &str, n: usize) -> Result<Option<(f64, Vec<u8>)>> {
        // SQLite reads a negative OFFSET as none: a number past i64 would be the first one.
        let Ok(n) = i64::try_from(n) else { return Ok(None) };
        Ok(self
            .conn()
            .query_row(
                "SELECT at, sealed FROM thumbnails WHERE recording_id = ?1 ORDER BY at LIMIT 1 OFFSET ?2",
                params![recording_id, n],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// A video's timeline thumbnails, `(at, sealed PNG)` in time order.
    pub fn thumbnails(&self, recording_id: &str) -> Result<Vec<(f64, Vec<u8>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT at, sealed FROM thumbnails WHERE recording_id = ?1 ORDER BY at")?;
        let rows = stmt.query_map([recording_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// A video's text extraction ended, all read, if `claim` is still the video's: marked read.
    pub fn finish_read_text(&self, claim: &TextClaim) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE recordings SET text_state = 'done', text_indexed = 1, text_error = NULL
             WHERE id = ?1 AND text_claim = ?2",
            params![claim.recording_id, claim.generation],
        )?;
        if n == 0 {
            return Err(IndexError::TextTakenOver { recording_id: claim.recording_id.clone() });
        }
        Ok(())
    }

    /// A video's text could not be read, with the reason. A video another reader has read to
    /// its end stays read.
    pub fn read_text_failed(&self, recording_id: &str, reason: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE recordings SET text_state = 'failed', text_error = ?2 WHERE id = ?1 AND text_indexed = 0",
            params![recording_id, reason],
        )?;
        Ok(())
    }

    /// How many text chunks a recording has in the search index (tests, `recordings`).
    pub fn text_chunks(&self, recording_id: &str) -> Result<u64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM cast_text WHERE recording_id = ?1", [recording_id], |r| {
            r.get::<_, i64>(0)
        })? as u64)
    }

    /// Finished casts (SSH output, RDP key tracks) still on the box whose text is not searchable
    /// yet.
    pub fn recordings_without_text(&self) -> Result<Vec<RecordingRow>> {
        self.recording_rows(
            "WHERE r.text_indexed = 0 AND r.pruned = 0 AND r.path LIKE '%.cast'
             AND r.status IN ('completed', 'uploaded')",
            [],
        )
    }

    pub fn upload_of(&self, recording_id: &str) -> Result<Option<UploadRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT state, attempts, last_error, object_key, uploaded_at FROM uploads WHERE recording_id = ?1",
                [recording_id],
                |r| {
                    Ok(UploadRow {
                        state: r.get(0)?,
                        attempts: r.get(1)?,
                        last_error: r.get(2)?,
                        object_key: r.get(3)?,
                        uploaded_at: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// What a recording's download was found to be, when it was worked out for the sealed file
    /// `of` names (see [`Index::keep_download_figures`]); `None` when never, for another file, or
    /// once retention deleted it.
    pub fn download_figures(&self, recording_id: &str, of: &str) -> Result<Option<DownloadFigures>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT download_bytes, download_sha256, download_name FROM recordings
                 WHERE id = ?1 AND download_of = ?2 AND deleted_at IS NULL AND download_bytes IS NOT NULL
                   AND download_sha256 IS NOT NULL AND download_name IS NOT NULL",
                params![recording_id, of],
                |r| Ok(DownloadFigures { bytes: r.get::<_, i64>(0)? as u64, sha256: r.get(1)?, file_name: r.get(2)? }),
            )
            .optional()?)
    }

    /// Keeps what a recording's download is, worked out from the sealed file `of` names (its
    /// size, digest and recovery, as the caller states them); replaces what was kept for an
    /// earlier one. `false` when there is no such recording.
    pub fn keep_download_figures(&self, recording_id: &str, of: &str, figures: &DownloadFigures) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE recordings SET download_of = ?2, download_bytes = ?3, download_sha256 = ?4, download_name = ?5
             WHERE id = ?1",
            params![recording_id, of, figures.bytes as i64, figures.sha256, figures.file_name],
        )?;
        Ok(n == 1)
    }

    pub fn recordings_by_status(&self) -> Result<Vec<(String, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM recordings GROUP BY status ORDER BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Enrolls (`Some`) or removes (`None`) a user's TOTP secret; `false` when there is no such user.
    pub fn set_totp(&self, user: &str, secret: Option<&[u8]>) -> Result<bool> {
        let n = self
            .conn()
            .execute("UPDATE users SET totp_secret = ?2 WHERE name = ?1", params![user, secret.map(hex::encode)])?;
        Ok(n > 0)
    }

    /// Takes a TOTP time step for `user` if it is later than the last one taken: `false` when
    /// that code (or a later one) was used already.
    pub fn take_totp_step(&self, user: &str, step: u64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE users SET totp_last_step = ?2
             WHERE name = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
            params![user, step as i64],
        )?;
        Ok(n == 1)
    }

    pub fn totp_secret(&self, user: &str) -> Result<Option<Vec<u8>>> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT totp_secret FROM users WHERE name = ?1", [user], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(text.and_then(|t| hex::decode(t).ok()))
    }
}

/// Inserts a recording's search chunks inside the caller's transaction.
fn insert_text(
    tx: &rusqlite::Transaction<'_>,
    recording_id: &str,
    session_id: &str,
    chunks: &[SearchChunk],
) -> Result<()> {
    let mut insert = tx.prepare(
        "INSERT INTO cast_text(tokens, recording_id, session_id, at, line_times, sealed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for c in chunks {
        insert.execute(params![c.tokens, recording_id, session_id, c.at, marks(c), c.sealed])?;
    }
    Ok(())
}
