//! Signed checkpoints of the audit log: every minute while serving (when events were added) and
//! at stop, the newest event's id and chained hash are signed with the box's evidence key and
//! appended to `DATA/audit.checkpoints`, each naming its place and the checkpoint before it. The
//! hash chain names a changed or removed event in the middle; a removed tail leaves the chain
//! intact, and only a checkpoint shows it. A rollback of the whole disk (the index and this file
//! put back from an earlier copy) leaves both consistent, so every checkpoint is also sent to the
//! store ([`send`]: store-and-forward, the file being the queue and `audit.checkpoints.sent` the
//! note of how far it went), and [`compare`] sets the local chain against what the store holds
//! (`witness_core::audit_anchor`): at `audit --verify` and at every start. Each checkpoint signs
//! the store it goes to, and a comparison with any other store (a `store-read.toml` written on a
//! rolled-back disk) is not a verification. A torn last line (a crash mid-append) is set aside
//! (kept beside the file, an audit event) and the chain goes on; a line in the middle that is no
//! checkpoint is named by `audit --verify` and stops nothing.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::time::Duration;
use witness_core::audit_anchor::{self, Comparison, Verdict};
use witness_core::evidence::{self, AuditCheckpoint, SignedCheckpoint};

pub const FILE: &str = "audit.checkpoints";
/// The hash of the newest checkpoint the store took. A note only: put back with an earlier copy,
/// what the store already holds is sent again under the same name.
pub const SENT_FILE: &str = "audit.checkpoints.sent";
/// Where a torn last line is kept when it is set aside: `audit.checkpoints.torn-UNIXMS`.
pub const TORN_PREFIX: &str = "audit.checkpoints.torn-";
/// How many of the store's checkpoints that differ from the local chain are read at most.
const FETCH_LIMIT: usize = 64;
/// The most an object under a checkpoint's name is read: a checkpoint is well under 1 KiB, and
/// anything larger is not one (never read whole).
const CHECKPOINT_MAX_BYTES: u64 = 64 * 1024;
/// How long the comparison may take before it is given up as not done.
const COMPARE_TIMEOUT: Duration = Duration::from_secs(20);
/// The audit event that records, in the hash chain itself, each checkpoint as it is signed (its
/// place, the checkpoint before it, its store, and how far the store had taken them): written
/// before the checkpoint signs the log's head, so each checkpoint covers its own record, and a
/// removed or cut-back checkpoint file no longer leaves a log that "never had checkpoints"
/// (red team h-red18d).
pub const SIGNED_EVENT: &str = "audit_checkpoint_signed";

/// The audit event saying a checkpoint could not be written (the key unreadable, the file or the
/// disk not writable): the first time of each error, not every minute; shown by `sync status`
/// until a checkpoint is signed again (red team h-red18d: it was said in the box's log only).
pub const FAILED_EVENT: &str = "audit_checkpoint_failed";

/// The audit event `witness store set` writes (its `destination`): the store the box is set to.
pub const CONFIGURED_EVENT: &str = "store_configured";

/// The audit event saying the configured store is not the one the audit log last recorded as
/// this box's (`from`, `to`, and when it was `found`): `store.toml` was changed outside
/// `witness store set` (issue 18, `h-arc18j`: on a rolled-back disk, to compare with a store that
/// holds none of the box's checkpoints).
pub const CHANGED_EVENT: &str = "store_changed";

/// How the audit log came to record a store as this box's.
#[derive(Debug, Clone, PartialEq)]
enum How {
    /// A checkpoint signed as sent to it (its place).
    Checkpoint(u64),
    /// `witness store set`.
    Configured,
    /// Found configured, changed from the store before it outside `witness store set`.
    Found { from: Option<String> },
}

/// A store the audit log records as this box's, at an event.
#[derive(Debug, Clone, PartialEq)]
struct StoreRecord {
    event: i64,
    store: String,
    how: How,
}

impl StoreRecord {
    /// How it was recorded, for a sentence.
    fn said(&self) -> String {
        match &self.how {
            How::Checkpoint(seq) => format!("this box's signed checkpoint {seq} was sent to"),
            How::Configured => format!("the audit log records as set by `witness store set` (event {})", self.event),
            How::Found { .. } => format!("the audit log records as found configured (event {})", self.event),
        }
    }
}

/// Every store the audit log records as this box's, in the log's order: the checkpoints'
/// records, `witness store set`, and changes found.
fn store_history(dir: &DataDir) -> Result<Vec<StoreRecord>> {
    let mut out: Vec<StoreRecord> = recorded(dir)?
        .into_iter()
        .filter_map(|r| Some(StoreRecord { event: r.event, store: r.store?, how: How::Checkpoint(r.seq) }))
        .collect();
    for (event, _, d) in dir.index.audit_details(CONFIGURED_EVENT)? {
        if let Some(store) = d["destination"].as_str() {
            out.push(StoreRecord { event, store: store.to_owned(), how: How::Configured });
        }
    }
    for (event, _, d) in dir.index.audit_details(CHANGED_EVENT)? {
        if let Some(store) = d["to"].as_str() {
            let from = d["from"].as_str().map(str::to_owned);
            out.push(StoreRecord { event, store: store.to_owned(), how: How::Found { from } });
        }
    }
    out.sort_by_key(|r| r.event);
    Ok(out)
}

/// Records a change of store the box finds (the configured store is not the one the audit log
/// last records as this box's): a [`CHANGED_EVENT`], once. Returns the change, if any. A log
/// that records no store yet records none (the box's first checkpoint names it).
pub fn note_store_change(dir: &DataDir, when: &str) -> Result<Option<(String, String)>> {
    let configured = crate::sync::destination(&dir.root)?.describe();
    let Some(last) = store_history(dir)?.pop() else { return Ok(None) };
    if last.store == configured {
        return Ok(None);
    }
    tracing::warn!(
        from = %last.store,
        to = %configured,
        when,
        "the configured store is not the one the audit log records as this box's: changed outside `witness store set`; recorded, and the audit log is not verified against the store from now on"
    );
    dir.index.audit(
        CHANGED_EVENT,
        None,
        None,
        None,
        &serde_json::json!({ "from": last.store, "to": configured, "found": when }),
    )?;
    Ok(Some((last.store, configured)))
}

/// The text for a store changed outside `witness store set`.
pub fn changed_outside_text(event: i64, from: &str, to: &str) -> String {
    format!(
        "the store was changed outside `witness store set` from {from} to {to} (found at event {event}): what went to {from} is compared only there, and a rollback from before the change is not ruled out"
    )
}

/// Signs a checkpoint if the log grew ([`write`]); a failure is logged and, the first time it
/// is found so, made an audit event.
pub fn write_logged(dir: &DataDir, when: &str) {
    let Err(e) = write(dir) else { return };
    let error = format!("{e:#}");
    tracing::warn!(error = %error, when, "the audit log could not be checkpointed");
    let said_so = match (dir.index.audit_newest(FAILED_EVENT), dir.index.audit_newest(SIGNED_EVENT)) {
        (Ok(Some((failed, _, d))), Ok(signed)) => {
            d["error"].as_str() == Some(error.as_str()) && signed.is_none_or(|(s, _, _)| s < failed)
        }
        _ => false,
    };
    if !said_so && let Err(e) = dir.index.audit(FAILED_EVENT, None, None, None, &serde_json::json!({ "error": error }))
    {
        tracing::warn!(error = %e, "the failed checkpoint could not be written to the audit log");
    }
}

/// Whether checkpoints are being written: the error and since when, when the newest attempt
/// failed (an [`FAILED_EVENT`] after the newest checkpoint signed).
pub fn failing(dir: &DataDir) -> Result<Option<(String, String)>> {
    let Some((failed, at, d)) = dir.index.audit_newest(FAILED_EVENT)? else { return Ok(None) };
    if dir.index.audit_newest(SIGNED_EVENT)?.is_some_and(|(s, _, _)| s > failed) {
        return Ok(None);
    }
    Ok(Some((d["error"].as_str().unwrap_or("").to_owned(), at)))
}

/// A checkpoint the log records as signed.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    /// The audit event recording it.
    event: i64,
    seq: u64,
    prev: Option<String>,
    store: Option<String>,
    /// The newest checkpoint the store had taken when this one was signed.
    sent: Option<u64>,
}

/// The checkpoints the audit log records as signed, in the log's order.
fn recorded(dir: &DataDir) -> Result<Vec<Recorded>> {
    let mut out = Vec::new();
    for (event, _, d) in dir.index.audit_details(SIGNED_EVENT)? {
        let Some(seq) = d["seq"].as_u64() else { continue };
        let text = |k: &str| d[k].as_str().map(str::to_owned);
        out.push(Recorded { event, seq, prev: text("prev"), store: text("store"), sent: d["sent"].as_u64() });
    }
    Ok(out)
}

/// Whether the checkpoint file holds every checkpoint the audit log records as signed, as
/// recorded (its place, the one before it, its store): `Err(why)` names the first it does not.
fn holds_recorded(all: &[SignedCheckpoint], records: &[Recorded]) -> std::result::Result<(), String> {
    for r in records {
        let here = all.iter().enumerate().find(|(i, c)| place_of(c, *i) == r.seq).map(|(_, c)| c);
        let Some(c) = here else {
            return Err(format!(
                "the audit log records checkpoint {} as signed (event {}), but {FILE} does not have it ({} checkpoints there): the file was removed or cut back (or the box stopped while writing it: signed again at its next checkpoint)",
                r.seq,
                r.event,
                all.len()
            ));
        };
        let prev = c.checkpoint.prev.clone();
        if prev != r.prev || c.checkpoint.store != r.store {
            return Err(format!(
                "checkpoint {} is not the one the audit log records as signed at that place (event {}): replaced",
                r.seq, r.event
            ));
        }
    }
    Ok(())
}

/// The checkpoint file as read.
#[derive(Default)]
struct Lines {
    /// The checkpoints, oldest first.
    all: Vec<SignedCheckpoint>,
    /// Lines (1-based) before the last checkpoint that are not checkpoints.
    bad: Vec<usize>,
    /// What follows the last checkpoint and is none (a torn append): its first line, where it
    /// starts in the file, and its bytes.
    tail: Option<(usize, u64, Vec<u8>)>,
    /// Whether the file ends without a newline after its last checkpoint.
    unterminated: bool,
}

/// Reads the checkpoint file, telling checkpoints from lines that are none.
fn read(dir: &DataDir) -> Result<Lines> {
    let data = match std::fs::read(dir.root.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lines::default()),
        Err(e) => return Err(e).context("reading the audit checkpoints"),
    };
    let mut out = Lines::default();
    let mut after_last: Vec<(usize, u64)> = Vec::new();
    let mut offset = 0u64;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let start = offset;
        offset += line.len() as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<SignedCheckpoint>(line) {
            Ok(c) => {
                out.all.push(c);
                out.bad.extend(after_last.drain(..).map(|(n, _)| n));
            }
            Err(_) => after_last.push((i + 1, start)),
        }
    }
    if let Some(&(line, start)) = after_last.first() {
        out.tail = Some((line, start, data[start as usize..].to_vec()));
    } else {
        out.unterminated = data.last().is_some_and(|b| *b != b'\n');
    }
    Ok(out)
}

/// The place of the checkpoint at `index` of the list read: its `seq`, or its line for one
/// signed before checkpoints were numbered.
fn place_of(c: &SignedCheckpoint, index: usize) -> u64 {
    c.checkpoint.seq.unwrap_or(index as u64 + 1)
}

/// Sets a torn last line aside: its bytes kept as `audit.checkpoints.torn-UNIXMS`, the file cut
/// back to its last checkpoint, an audit event. Returns the name it is kept under, if any.
fn set_aside_torn_tail(dir: &DataDir, lines: &Lines) -> Result<Option<String>> {
    let Some((line, start, bytes)) = &lines.tail else { return Ok(None) };
    let name = format!("{TORN_PREFIX}{}", crate::sync::unix_ms());
    let mut kept = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.root.join(&name))
        .with_context(|| format!("keeping the torn end of the audit checkpoints as {name}"))?;
    kept.write_all(bytes)?;
    kept.sync_all()?;
    let f =
        std::fs::OpenOptions::new().write(true).open(dir.root.join(FILE)).context("opening the audit checkpoints")?;
    f.set_len(*start).context("cutting the torn end off the audit checkpoints")?;
    f.sync_all()?;
    tracing::warn!(
        line,
        bytes = bytes.len(),
        kept_as = %name,
        "the audit checkpoints ended in a torn line (a crash while one was written?): set aside, the chain goes on"
    );
    dir.index.audit(
        "audit_checkpoint_torn",
        None,
        None,
        None,
        &serde_json::json!({ "line": line, "bytes": bytes.len(), "kept_as": name }),
    )?;
    Ok(Some(name))
}

/// Signs and appends a checkpoint when the log grew since the last one. Returns whether it did.
/// A torn last line is set aside first; lines in the middle that are no checkpoint stop
/// nothing (`audit --verify` names them).
pub fn write(dir: &DataDir) -> Result<bool> {
    let mut lines = read(dir)?;
    if set_aside_torn_tail(dir, &lines)?.is_some() {
        lines = read(dir)?;
    }
    // After the event of a torn line set aside, so this checkpoint covers it.
    let Some((head, _)) = dir.index.audit_head()? else { return Ok(false) };
    let all = &lines.all;
    if all.last().is_some_and(|c| c.checkpoint.last_id == head) {
        return Ok(false);
    }
    let key = crate::evidence::signing_key(&dir.root)?;
    let seq = all.last().map_or(0, |c| place_of(c, all.len() - 1)) + 1;
    let prev = all.last().map(SignedCheckpoint::hash);
    let store = crate::sync::destination(&dir.root)?.describe();
    // A store changed outside `witness store set` is recorded before a checkpoint names it.
    note_store_change(dir, "at a checkpoint")?;
    // Recorded in the chain first, so the checkpoint signs its own record; a record left by a
    // stop between the two (the same place, the same checkpoint before it) is not repeated.
    let records = recorded(dir)?;
    let again = records.iter().rev().find(|r| r.seq == seq).is_some_and(|r| {
        r.prev == prev && r.store.as_deref() == Some(store.as_str()) && records.last().is_some_and(|l| l.seq == seq)
    });
    if !again {
        let sent_note = std::fs::read_to_string(dir.root.join(SENT_FILE)).unwrap_or_default();
        let sent = all.iter().enumerate().find(|(_, c)| c.hash() == sent_note.trim()).map(|(i, c)| place_of(c, i));
        dir.index.audit(
            SIGNED_EVENT,
            None,
            None,
            None,
            &serde_json::json!({ "seq": seq, "prev": prev, "store": store, "sent": sent }),
        )?;
    }
    let Some((last_id, hash)) = dir.index.audit_head()? else { return Ok(false) };
    let signed = AuditCheckpoint {
        format: evidence::CHECKPOINT_FORMAT.into(),
        box_id: dir.config.box_id.clone(),
        last_id,
        hash,
        at: witness_index::format_time(time::OffsetDateTime::now_utc()),
        key_fingerprint: evidence::fingerprint(&key.verifying_key()),
        seq: Some(seq),
        prev,
        store: Some(store),
    }
    .sign(&key);
    let mut line = if lines.unterminated { b"\n".to_vec() } else { Vec::new() };
    line.extend(serde_json::to_vec(&signed)?);
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.root.join(FILE))
        .context("opening the audit checkpoints")?;
    f.write_all(&line)?;
    f.sync_data()?;
    Ok(true)
}

/// What the checkpoints on this disk say.
pub struct LocalCheckpoints {
    /// How many there are.
    pub count: usize,
    /// The newest event they cover.
    pub newest: Option<i64>,
    /// A torn last line not set aside yet (its line): set aside at the box's next checkpoint.
    pub torn_tail: Option<usize>,
}

/// Checks every checkpoint: its signature (the box's key), its place in the chain of
/// checkpoints, and that the event it names is still in the log with that hash; a line in the
/// middle that is no checkpoint is named.
pub fn verify(dir: &DataDir) -> Result<LocalCheckpoints> {
    let public = crate::evidence::public_key_hex(&dir.root)?;
    let lines = read(dir)?;
    if let Some(line) = lines.bad.first() {
        bail!(
            "audit checkpoints broken: line {line} is not a checkpoint ({} such lines before the last checkpoint)",
            lines.bad.len()
        );
    }
    let all = lines.all;
    for (i, c) in all.iter().enumerate() {
        if !c.verifies(&public) {
            bail!("audit checkpoint {} does not verify with the box's key: changed, or not the box's", i + 1);
        }
        if let Some(why) = box_id_changed(dir, c, i) {
            bail!("audit checkpoints broken: {why}");
        }
        if let Err(why) = dir.index.audit_reaches(c.checkpoint.last_id, &c.checkpoint.hash)? {
            bail!("audit log broken: {why} (checkpoint signed at {})", c.checkpoint.at);
        }
    }
    if let Err(why) = audit_anchor::check_chain(&all) {
        bail!("audit checkpoints broken: {why}");
    }
    if let Err(why) = holds_recorded(&all, &recorded(dir)?) {
        bail!("audit checkpoints broken: {why}");
    }
    Ok(LocalCheckpoints {
        count: all.len(),
        newest: all.iter().map(|c| c.checkpoint.last_id).max(),
        torn_tail: lines.tail.map(|(line, _, _)| line),
    })
}

/// The store keeps a box's checkpoints under its box id, which `witness.toml` holds in clear: a
/// checkpoint signed for another id means the id was edited, and the store would be asked under
/// a prefix that holds none of the checkpoints (red team h-red18d).
fn box_id_changed(dir: &DataDir, c: &SignedCheckpoint, index: usize) -> Option<String> {
    (c.checkpoint.box_id != dir.config.box_id).then(|| {
        format!(
            "checkpoint {} was signed for box {}, but this box is configured as {} (its box id was changed; the store keeps the checkpoints under the id they signed)",
            place_of(c, index),
            c.checkpoint.box_id,
            dir.config.box_id
        )
    })
}

/// Sends the checkpoints after the one the store last took, oldest first, each under its own
/// name (`BOX/audit-checkpoints/SEQ-HASH.json`). Returns how many were sent; on a failure what
/// was sent stays noted and the rest waits for the next call.
pub async fn send(dir: &DataDir, store: &witness_store::Store) -> Result<usize> {
    let all = read(dir)?.all;
    let sent = std::fs::read_to_string(dir.root.join(SENT_FILE)).unwrap_or_default();
    let from = all.iter().position(|c| c.hash() == sent.trim()).map_or(0, |i| i + 1);
    let mut n = 0;
    let mut unnoted = None;
    for (i, c) in all.iter().enumerate().skip(from) {
        let seq = place_of(c, i);
        let key = audit_anchor::key(&dir.config.box_id, seq, c);
        store
            .put_bytes(&key, serde_json::to_vec(c)?, false)
            .await
            .with_context(|| format!("sending audit checkpoint {seq} to the store"))?;
        n += 1;
        // A note that cannot be written stops nothing: the rest is sent too (under their own
        // names, so sending again is harmless), and the failure is returned at the end.
        if let Err(e) = note_sent(dir, &c.hash()) {
            unnoted.get_or_insert(e);
        }
    }
    match unnoted {
        Some(e) => Err(e),
        None => Ok(n),
    }
}

/// Notes how far the store took the checkpoints, through the private-file writer (0600, whole
/// or not at all). A link in the note's place is replaced; so is an empty folder (made by hand
/// or by an attack: red team h-red18e); anything else there is named.
fn note_sent(dir: &DataDir, hash: &str) -> Result<()> {
    let path = dir.root.join(SENT_FILE);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir(&path).with_context(|| {
            format!("{} is a folder that is not empty, not the note of the checkpoints sent", path.display())
        })?;
    }
    witness_keys::replace_private(&path, hash.as_bytes()).context("noting the audit checkpoint sent")
}

/// The audit event saying checkpoints could not be sent to the store, or the note of how far
/// they went could not be written: the first time of each error (for the same note), shown by
/// `sync status` while checkpoints wait (red team h-red18e: said in the box's log only).
pub const SEND_FAILED_EVENT: &str = "audit_checkpoint_send_failed";

/// How long a checkpoint may wait for the store before `audit --verify` no longer calls the
/// comparison a verification: what the store does not have is not covered.
pub const UNSENT_MAX: Duration = Duration::from_secs(5 * 60);

/// Sends what is pending ([`send_pending`]); a failure is logged and, the first time it is
/// found so, made an audit event.
pub async fn send_logged(dir: &DataDir, limit: Duration, when: &str) {
    let Err(e) = send_pending(dir, limit).await else { return };
    let error = format!("{e:#}");
    tracing::warn!(error = %error, when, "audit checkpoints not sent to the store yet; sent later");
    let note = sent_note(dir);
    let said_so = matches!(dir.index.audit_newest(SEND_FAILED_EVENT), Ok(Some((_, _, d)))
        if d["error"].as_str() == Some(error.as_str()) && d["sent"].as_str() == Some(note.as_str()));
    if !said_so
        && let Err(e) =
            dir.index.audit(SEND_FAILED_EVENT, None, None, None, &serde_json::json!({ "error": error, "sent": note }))
    {
        tracing::warn!(error = %e, "the failed send of checkpoints could not be written to the audit log");
    }
}

/// The note of the newest checkpoint the store took (its hash), or empty.
fn sent_note(dir: &DataDir) -> String {
    std::fs::read_to_string(dir.root.join(SENT_FILE)).map(|t| t.trim().to_owned()).unwrap_or_default()
}

/// A send failure's error and when it was recorded.
pub type SendFailure = (String, String);

/// Whether checkpoints wait for the store: how many, the oldest one's time, and the newest
/// send failure's error and time (when it came after the note was last written).
pub fn unsent(dir: &DataDir) -> Result<Option<(usize, String, Option<SendFailure>)>> {
    let all = read(dir)?.all;
    let note = sent_note(dir);
    let from = all.iter().position(|c| c.hash() == note).map_or(0, |i| i + 1);
    let Some(oldest) = all.get(from) else { return Ok(None) };
    let failed = dir
        .index
        .audit_newest(SEND_FAILED_EVENT)?
        .filter(|(_, _, d)| d["sent"].as_str() == Some(note.as_str()))
        .map(|(_, at, d)| (d["error"].as_str().unwrap_or("").to_owned(), at));
    Ok(Some((all.len() - from, oldest.checkpoint.at.clone(), failed)))
}

/// Whether a checkpoint signed at `at` (RFC 3339) and not in the store has waited longer than
/// [`UNSENT_MAX`] at `now`. A time that does not read is taken as long ago.
pub fn unsent_too_long(at: &str, now: time::OffsetDateTime) -> bool {
    match time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
        Ok(t) => now - t > UNSENT_MAX,
        Err(_) => true,
    }
}

/// Sends what is pending to the configured store, within `limit`.
pub async fn send_pending(dir: &DataDir, limit: Duration) -> Result<usize> {
    let store = crate::sync::open_store(dir)?;
    tokio::time::timeout(limit, send(dir, &store))
        .await
        .map_err(|_| anyhow::anyhow!("the store did not answer within {} s", limit.as_secs()))?
}

/// What the store said about the local chain, or why it could not be asked.
pub enum Remote {
    /// The comparison, and the store it was made with.
    Compared(Box<Compared>),
    /// The store could not be reached or read, or is not the one the checkpoints were sent to:
    /// nothing was compared.
    NotCompared(String),
}

/// A comparison made, and with what.
pub struct Compared {
    pub comparison: Comparison,
    /// The store compared with (no secret).
    pub store: String,
    /// Whether that store is a folder on the box (a rollback of the disk takes it back too).
    pub on_this_box: bool,
    /// Objects under checkpoints' names too large to be one (not read past the limit).
    pub oversized: usize,
    /// An earlier store the audit log or a local checkpoint records as this box's, other than
    /// the one compared with, said (naming both): what went there is compared only there.
    pub earlier_store: Option<EarlierStore>,
    /// The newest checkpoint the audit log records this store as having taken, when the store
    /// does not hold it (and the newest it holds): not agreement.
    pub sent_missing: Option<(u64, Option<u64>)>,
    /// The place of the newest local checkpoint when it names no store (signed before
    /// checkpoints named theirs): nothing on the disk says which store to insist on.
    pub unnamed_store: Option<u64>,
    /// A store change the box found (`store.toml` changed outside `witness store set`), said:
    /// never a verification afterwards.
    pub changed_outside: Option<String>,
    /// The place and signing time of the oldest local checkpoint the store does not hold.
    pub oldest_unsent: Option<(u64, String)>,
}

/// The newest checkpoint's place when it was signed before checkpoints named their store: its
/// comparison is with whatever store the files on the disk name, so it is never a verification
/// (a rollback to a copy made before this version could be pointed at any store). The box's
/// next checkpoint (within a minute while serving, and at stop) names its store.
fn unnamed_store(local: &[SignedCheckpoint]) -> Option<u64> {
    let last = local.last()?;
    last.checkpoint.store.is_none().then(|| place_of(last, local.len() - 1))
}

/// What a comparison of checkpoints that name no store says, in one line.
pub fn unnamed_store_text(seq: u64) -> String {
    format!(
        "this box's newest checkpoint ({seq}) was signed before checkpoints named their store, so the store compared with is only the one a file on this disk names (a rollback to a copy made before this version could name any); verified once the box signs a checkpoint that names it (within a minute while serving, and at stop)"
    )
}

/// An earlier store than the one compared with: what went there is compared only there.
#[derive(Debug, Clone, PartialEq)]
pub enum EarlierStore {
    /// The newest checkpoint signed as sent to another store (its place, that store).
    Checkpoint(u64, String),
    /// Another store the audit log records before (`witness store set`, a change found), said.
    Recorded(String),
}

impl EarlierStore {
    /// As `audit --verify` says it, after "NOT COMPARED with the store ".
    pub fn cli(&self) -> String {
        match self {
            Self::Checkpoint(seq, other) => format!(
                "checkpoint {seq} and those before it were sent to ({other}): a rollback from before the store changed is not ruled out"
            ),
            Self::Recorded(why) => why.clone(),
        }
    }

    /// As the start's `audit_not_compared` event says it.
    pub fn event(&self) -> String {
        match self {
            Self::Checkpoint(seq, other) => format!(
                "checkpoint {seq} and those before it were sent to another store ({other}), not compared: a rollback from before the store changed is not ruled out"
            ),
            Self::Recorded(why) => format!("the store {why}"),
        }
    }
}

/// What a store that lacks checkpoints the audit log records it took says, in one line.
pub fn sent_missing_text(sent: u64, held: Option<u64>) -> String {
    let held = match held {
        Some(seq) => format!("it holds this box's checkpoints only up to {seq}"),
        None => "it holds none of this box's checkpoints".to_owned(),
    };
    format!(
        "the store does not confirm the audit log: the log records that the store had taken this box's checkpoint {sent}, but {held}: either checkpoints were removed from the store, or another store answers at its address; {REBUILD_HINT}"
    )
}

/// Compares the local chain of checkpoints with the store's copy (read credentials). The store
/// must be the one the newest checkpoint signed as where it went: any other (a `store-read.toml`
/// naming an empty folder, written on a rolled-back disk) is not compared with.
pub async fn compare(dir: &DataDir) -> Result<Remote> {
    let local = read(dir)?.all;
    let records = recorded(dir)?;
    if let Some(why) = local.iter().enumerate().find_map(|(i, c)| box_id_changed(dir, c, i)) {
        return Ok(Remote::NotCompared(why));
    }
    let public = crate::evidence::public_key_hex(&dir.root)?;
    let dest = match crate::sync::read_destination(&dir.root) {
        Ok(d) => d,
        Err(e) => return Ok(Remote::NotCompared(format!("{e:#}"))),
    };
    let described = dest.describe();
    let history = store_history(dir)?;
    // The store the audit log last records as this box's (a checkpoint's record, `store set`, a
    // change found): the chain, not a file on the disk, says where to look (issue 18,
    // `h-arc18j`: a `store.toml` edited on a disk rolled back before its first checkpoint was
    // compared with and verified). A log that records none: the newest checkpoint's store.
    let pinned = history.last().cloned().or_else(|| {
        local.iter().enumerate().rev().find_map(|(i, c)| {
            Some(StoreRecord { event: 0, store: c.checkpoint.store.clone()?, how: How::Checkpoint(place_of(c, i)) })
        })
    });
    if let Some(pinned) = &pinned
        && pinned.store != described
    {
        let file = if dir.root.join(crate::sync::READ_STORE_FILE).exists() {
            crate::sync::READ_STORE_FILE
        } else {
            crate::sync::STORE_FILE
        };
        return Ok(Remote::NotCompared(format!(
            "the store to compare with ({described}, from {file}) is not the one {} ({}); a store a file on this disk names is not taken for it",
            pinned.said(),
            pinned.store
        )));
    }
    // Every earlier store the log records (a checkpoint's record, `witness store set`, a change
    // found) or a local checkpoint names, other than the one compared with, is where checkpoints
    // may have gone: compared only there (issue 18, `h-fix18g`: a provisioning copy put back
    // and `store set` to a bucket of one's own recorded that bucket last, and the earlier
    // `store_configured` naming the real one was not counted).
    let earlier_store = local
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.checkpoint.store.as_ref().map(|s| (place_of(c, i), s)))
        .chain(history.iter().filter_map(|r| match r.how {
            How::Checkpoint(seq) => Some((seq, &r.store)),
            _ => None,
        }))
        .filter(|(_, s)| **s != described)
        .max_by_key(|(seq, _)| *seq)
        .map(|(seq, other)| EarlierStore::Checkpoint(seq, other.clone()))
        .or_else(|| {
            history.iter().rev().find(|r| r.store != described).map(|r| {
                EarlierStore::Recorded(format!(
                    "{described}: an earlier store is one {} ({}); checkpoints the box sent there are compared only there, and a rollback from before the store changed is not ruled out",
                    r.said(),
                    r.store
                ))
            })
        });
    // A store changed outside `witness store set` is never a verification afterwards: the box
    // cannot tell an operator's edit from one made on a rolled-back disk.
    let changed_outside = history.iter().rev().find_map(|r| match &r.how {
        How::Found { from: Some(from) } => Some(changed_outside_text(r.event, from, &r.store)),
        _ => None,
    });
    let store = match crate::sync::open_read_store(dir) {
        Ok(s) => s,
        Err(e) => return Ok(Remote::NotCompared(format!("{e:#}"))),
    };
    let box_id = &dir.config.box_id;
    let set_apart = dir.root.join(crate::sync::READ_STORE_FILE).exists();
    let asked = async {
        // The recorder's key may be write-only: it is not probed with reads it cannot make
        // (only the look at the bucket every upload starts with); reading needs `store set-read`.
        if !set_apart && store.check().await? == witness_store::KeyAccess::WriteOnly {
            return Ok(None);
        }
        let listed = store.list(&audit_anchor::prefix(box_id)).await?;
        let mut fetched = Vec::new();
        let mut oversized = 0;
        for k in audit_anchor::to_fetch(box_id, &local, &listed, FETCH_LIMIT) {
            // Never read whole: anything larger than a checkpoint can be is given as no bytes
            // (not the box's checkpoint, so never agreement).
            let bytes = match store.get_small(&k, CHECKPOINT_MAX_BYTES).await? {
                Some(b) => b,
                None => {
                    oversized += 1;
                    Vec::new()
                }
            };
            fetched.push((k, bytes));
        }
        anyhow::Ok(Some((listed, fetched, oversized)))
    };
    Ok(match tokio::time::timeout(COMPARE_TIMEOUT, asked).await {
        Err(_) => Remote::NotCompared(format!("the store did not answer within {} s", COMPARE_TIMEOUT.as_secs())),
        Ok(Err(e)) => Remote::NotCompared(format!("{e:#}")),
        Ok(Ok(None)) => Remote::NotCompared(
            "the store key may only write, and no read credentials are set (`witness store set-read`)".to_owned(),
        ),
        Ok(Ok(Some((listed, fetched, oversized)))) => {
            let comparison = audit_anchor::compare(box_id, &public, &local, &listed, &fetched);
            // What the log records the store as having taken (a checkpoint signed for this
            // store), the store must still hold.
            let sent = records
                .iter()
                .filter_map(|r| r.sent)
                .filter(|seq| {
                    local.iter().enumerate().any(|(i, c)| {
                        place_of(c, i) == *seq && c.checkpoint.store.as_deref() == Some(described.as_str())
                    })
                })
                .max();
            let sent_missing = match (&comparison.verdict, sent) {
                (Verdict::Agrees { store_newest, .. }, Some(s)) if store_newest.unwrap_or(0) < s => {
                    Some((s, *store_newest))
                }
                _ => None,
            };
            Remote::Compared(Box::new(Compared {
                store: store.describe().to_owned(),
                on_this_box: matches!(dest, witness_store::Destination::Dir { .. }),
                oversized,
                earlier_store,
                sent_missing,
                unnamed_store: unnamed_store(&local),
                changed_outside,
                oldest_unsent: match comparison.verdict {
                    Verdict::Agrees { store_newest, not_sent } if not_sent > 0 => {
                        let i = store_newest.unwrap_or(0) as usize;
                        local.get(i).map(|c| (place_of(c, i), c.checkpoint.at.clone()))
                    }
                    _ => None,
                },
                comparison,
            }))
        }
    })
}

/// Where to go for what a rollback took.
const REBUILD_HINT: &str =
    "sessions of that time whose recordings reached the store are restored with `witness index rebuild --from-store`";

/// "checkpoint 3", or "checkpoints 3 to 5".
fn span(first: u64, last: u64) -> String {
    if first == last { format!("checkpoint {first}") } else { format!("checkpoints {first} to {last}") }
}

/// What a verdict that is not agreement says, in one line; `None` for agreement.
pub fn rollback_text(verdict: &Verdict) -> Option<String> {
    Some(match verdict {
        Verdict::Agrees { .. } => return None,
        Verdict::Unconfirmed { not_signed, unread, beyond_head, newest_place } => {
            let what = match (*not_signed, *unread) {
                (n, 0) => format!("{n} that are not this box's signed checkpoint under its own name"),
                (0, u) => format!("{u} left unread (more than are read at once)"),
                (n, u) => format!(
                    "{n} that are not this box's signed checkpoint under its own name and {u} left unread (more than are read at once)"
                ),
            };
            format!(
                "the store does not confirm the audit log: it lists names of this box's checkpoints that the chain here does not have, {what}; {beyond_head} of them after this box's newest checkpoint, up to checkpoint {newest_place}: either the index and its checkpoints were put back from an earlier copy and the store's later checkpoints overwritten, or objects were written into this box's checkpoint folder in the store; look at them there; {REBUILD_HINT}"
            )
        }
        Verdict::RolledBack { first, newest, local_head } => {
            let (here, since) = match local_head {
                Some(h) => (
                    format!(
                        "this box's newest is checkpoint {} (signed at {}, events up to {})",
                        h.seq, h.at, h.last_id
                    ),
                    h.at.clone(),
                ),
                None => ("this box has none".to_owned(), "the log's start".to_owned()),
            };
            format!(
                "the audit log was rolled back: the store holds this box's signed {} (the newest, checkpoint {}, signed at {}, events up to {}), but {here}: the index and its checkpoints were put back from an earlier copy, and what happened between {since} and {} is missing; {REBUILD_HINT}",
                span(first.seq, newest.seq),
                newest.seq,
                newest.at,
                newest.last_id,
                newest.at
            )
        }
        Verdict::Forked { store, local, newest } => format!(
            "the audit log was rolled back and signed again: at checkpoint {} the store holds one signed at {} (events up to {}), this box one signed at {} (events up to {}); the store's newest is checkpoint {} (signed at {}): the index and its checkpoints were put back from an earlier copy, and what the store's {} covered is missing; {REBUILD_HINT}",
            store.seq,
            store.at,
            store.last_id,
            local.at,
            local.last_id,
            newest.seq,
            newest.at,
            span(store.seq, newest.seq)
        ),
    })
}

/// At start: compares with the store and says what it found (a log line, and an audit event
/// when the comparison failed or could not be done); never stops the box from recording. Then
/// sends what is pending.
pub async fn check_at_start(dir: std::sync::Arc<DataDir>) {
    // A store changed outside `witness store set` since the log last recorded one: recorded.
    let d = dir.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || note_store_change(&d, "at start")).await {
        tracing::warn!(error = format!("{e:#}"), "a change of store could not be written to the audit log");
    }
    // The checkpoints the log records, which the file must hold (removed or cut back: said at
    // every start, not only by `audit --verify`).
    let missing = match (read(&dir), recorded(&dir)) {
        (Ok(lines), Ok(records)) => holds_recorded(&lines.all, &records).err(),
        _ => None,
    };
    if let Some(why) = missing {
        tracing::error!("audit checkpoints broken: {why}");
        let d = dir.clone();
        let detail = serde_json::json!({ "found": why });
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || d.index.audit("audit_checkpoints_broken", None, None, None, &detail))
                .await
        {
            tracing::warn!(error = %e, "the broken checkpoints could not be written to the audit log");
        }
    }
    let found = match compare(&dir).await {
        Ok(Remote::Compared(compared)) => {
            let Compared { comparison: c, store, earlier_store, sent_missing, unnamed_store, changed_outside, .. } =
                *compared;
            match rollback_text(&c.verdict) {
                None if sent_missing.is_some() => {
                    let (sent, held) = sent_missing.unwrap_or_default();
                    let text = sent_missing_text(sent, held);
                    tracing::error!(store = %store, "{text}");
                    Some(("audit_unconfirmed", serde_json::json!({ "checkpoint": sent, "found": text })))
                }
                None => {
                    if let Verdict::Agrees { store_newest, not_sent } = c.verdict {
                        tracing::info!(
                            store = %store,
                            store_newest = store_newest.unwrap_or(0),
                            not_sent,
                            passed_over = c.passed_over.len(),
                            "the audit checkpoints agree with the store's"
                        );
                    }
                    let why = match (earlier_store, unnamed_store) {
                        (_, Some(seq)) => Some(unnamed_store_text(seq)),
                        (Some(earlier), None) => Some(earlier.event()),
                        (None, None) => None,
                    };
                    let why = match (why, changed_outside) {
                        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                        (a, b) => a.or(b),
                    };
                    why.map(|why| {
                        tracing::warn!(reason = %why, "the audit checkpoints could not all be compared with the store");
                        ("audit_not_compared", serde_json::json!({ "reason": why }))
                    })
                }
                Some(text) => {
                    tracing::error!(store = %store, "{text}");
                    let (kind, seq) = match &c.verdict {
                        Verdict::RolledBack { newest, .. } => ("audit_rollback", newest.seq),
                        Verdict::Forked { store, .. } => ("audit_rollback", store.seq),
                        Verdict::Unconfirmed { newest_place, .. } => ("audit_unconfirmed", *newest_place),
                        Verdict::Agrees { .. } => ("audit_rollback", 0),
                    };
                    Some((kind, serde_json::json!({ "checkpoint": seq, "found": text })))
                }
            }
        }
        Ok(Remote::NotCompared(why)) => {
            tracing::warn!(
                reason = %why,
                "the audit checkpoints could not be compared with the store: a rollback of this disk is not ruled out"
            );
            Some(("audit_not_compared", serde_json::json!({ "reason": why })))
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "the audit checkpoints could not be compared with the store");
            Some(("audit_not_compared", serde_json::json!({ "reason": format!("{e:#}") })))
        }
    };
    if let Some((kind, detail)) = found {
        let d = dir.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || d.index.audit(kind, None, None, None, &detail)).await {
            tracing::warn!(error = %e, "the comparison with the store could not be written to the audit log");
        }
    }
    send_logged(&dir, COMPARE_TIMEOUT, "at start").await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use witness_core::audit_anchor::Named;

    #[test]
    fn checkpoints_unsent_past_a_few_minutes_are_not_covered() {
        let now = time::OffsetDateTime::parse("2026-12-07T17:00:00Z", &time::format_description::well_known::Rfc3339)
            .unwrap();
        assert!(!unsent_too_long("2026-12-07T16:56:00Z", now), "4 min: a send may still be on its way");
        assert!(unsent_too_long("2026-12-07T16:54:59Z", now), "over 5 min");
        assert!(unsent_too_long("not a time", now), "unreadable: taken as long ago");
    }

    fn named(seq: u64, at: &str, last_id: i64) -> Named {
        Named { seq, at: at.into(), last_id }
    }

    #[test]
    fn a_newest_checkpoint_naming_no_store_is_never_a_verification() {
        let key = witness_core::evidence::signing_key(&[7; 32]);
        let cp = |seq: u64, store: Option<&str>| {
            AuditCheckpoint {
                format: evidence::CHECKPOINT_FORMAT.into(),
                box_id: "box".into(),
                last_id: seq as i64,
                hash: "h".into(),
                at: "T".into(),
                key_fingerprint: "f".into(),
                seq: Some(seq),
                prev: None,
                store: store.map(str::to_owned),
            }
            .sign(&key)
        };
        assert_eq!(unnamed_store(&[]), None, "no checkpoint: the chain's records say where");
        assert_eq!(unnamed_store(&[cp(1, None), cp(2, None)]), Some(2), "a copy made before this version");
        assert_eq!(unnamed_store(&[cp(1, None), cp(2, Some("s3:x/b/"))]), None, "signed since: pinned");
        let said = unnamed_store_text(2);
        assert!(said.contains("(2) was signed before checkpoints named their store") && said.contains("verified once"));
    }

    #[test]
    fn a_rollback_or_fork_is_said_with_its_sequence_time_and_where_to_go() {
        assert_eq!(rollback_text(&Verdict::Agrees { store_newest: Some(3), not_sent: 0 }), None);
        let doubt =
            rollback_text(&Verdict::Unconfirmed { not_signed: 3, unread: 2, beyond_head: 4, newest_place: 9 }).unwrap();
        for said in [
            "does not confirm",
            "3 that are not this box's signed checkpoint under its own name and 2 left unread",
            "4 of them after this box's newest checkpoint, up to checkpoint 9",
            "put back from an earlier copy",
            "written into this box's checkpoint folder",
            "index rebuild --from-store",
        ] {
            assert!(doubt.contains(said), "{said:?} in {doubt}");
        }
        let back = rollback_text(&Verdict::RolledBack {
            first: named(3, "T3", 30),
            newest: named(5, "T5", 50),
            local_head: Some(named(2, "T2", 20)),
        })
        .unwrap();
        for said in [
            "rolled back",
            "checkpoints 3 to 5",
            "checkpoint 5, signed at T5, events up to 50",
            "checkpoint 2 (signed at T2",
            "between T2 and T5",
            "index rebuild --from-store",
        ] {
            assert!(back.contains(said), "{said:?} in {back}");
        }
        let none = rollback_text(&Verdict::RolledBack {
            first: named(1, "T1", 9),
            newest: named(1, "T1", 9),
            local_head: None,
        })
        .unwrap();
        assert!(none.contains("signed checkpoint 1 (") && none.contains("this box has none"), "{none}");
        let fork = rollback_text(&Verdict::Forked {
            store: named(3, "T3", 30),
            local: named(3, "T3b", 31),
            newest: named(4, "T4", 40),
        })
        .unwrap();
        for said in [
            "signed again",
            "at checkpoint 3 the store holds one signed at T3",
            "this box one signed at T3b",
            "newest is checkpoint 4 (signed at T4)",
            "checkpoints 3 to 4 covered",
            "index rebuild --from-store",
        ] {
            assert!(fork.contains(said), "{said:?} in {fork}");
        }
    }
}
