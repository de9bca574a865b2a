//! Signed checkpoints of the audit log: every minute while serving (when events were added) and
//! at stop, the newest event's id and chained hash are signed with the box's evidence key and
//! appended to `DATA/audit.checkpoints`. The hash chain names a changed or removed event in the
//! middle; a removed tail leaves the chain intact, and only a checkpoint shows it.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use std::io::Write;
use witness_core::evidence::{self, AuditCheckpoint, SignedCheckpoint};

pub const FILE: &str = "audit.checkpoints";

/// The checkpoints written so far, oldest first.
fn read_all(dir: &DataDir) -> Result<Vec<SignedCheckpoint>> {
    let text = match std::fs::read_to_string(dir.root.join(FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).context("reading the audit checkpoints"),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("audit checkpoint line {} is not a checkpoint", i + 1))
        })
        .collect()
}

/// Signs and appends a checkpoint when the log grew since the last one. Returns whether it did.
pub fn write(dir: &DataDir) -> Result<bool> {
    let Some((last_id, hash)) = dir.index.audit_head()? else { return Ok(false) };
    if read_all(dir).unwrap_or_default().last().is_some_and(|c| c.checkpoint.last_id == last_id) {
        return Ok(false);
    }
    let key = crate::evidence::signing_key(&dir.root)?;
    let signed = AuditCheckpoint {
        format: evidence::CHECKPOINT_FORMAT.into(),
        box_id: dir.config.box_id.clone(),
        last_id,
        hash,
        at: witness_index::format_time(time::OffsetDateTime::now_utc()),
        key_fingerprint: evidence::fingerprint(&key.verifying_key()),
    }
    .sign(&key);
    let mut line = serde_json::to_vec(&signed)?;
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

/// Checks every checkpoint: its signature (the box's key) and that the event it names is still
/// in the log with that hash. Returns how many there are and the newest event they cover.
pub fn verify(dir: &DataDir) -> Result<(usize, Option<i64>)> {
    let public = crate::evidence::public_key_hex(&dir.root)?;
    let all = read_all(dir)?;
    for (i, c) in all.iter().enumerate() {
        if !c.verifies(&public) {
            bail!("audit checkpoint {} does not verify with the box's key: changed, or not the box's", i + 1);
        }
        if let Err(why) = dir.index.audit_reaches(c.checkpoint.last_id, &c.checkpoint.hash)? {
            bail!("audit log broken: {why} (checkpoint signed at {})", c.checkpoint.at);
        }
    }
    Ok((all.len(), all.iter().map(|c| c.checkpoint.last_id).max()))
}
