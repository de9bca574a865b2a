//! `witness target retention`, `witness hold` (mirrored as S3 Object Lock legal holds on what
//! is already in the store) and `witness retention run`.

use crate::cmd::cli::HoldCmd;
use crate::datadir::DataDir;
use crate::retention::{runtime, sweep};
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::Path;

/// `witness target retention NAME [DAYS|--none]`.
pub fn target_retention(dir: &DataDir, name: &str, days: Option<u32>, none: bool) -> Result<()> {
    if days.is_none() && !none {
        let (_, days) = dir
            .index
            .retentions()?
            .into_iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("no target named {name:?}"))?;
        match days {
            Some(d) => println!("{name}: recordings are deleted {d} days after they end (held sessions are kept)"),
            None => println!("{name}: recordings are kept for ever"),
        }
        return Ok(());
    }
    dir.index.set_retention(name, days)?;
    dir.index.audit("retention_set", None, Some(name), None, &json!({ "days": days }))?;
    match days {
        Some(d) => println!(
            "recordings of {name} are deleted {d} days after they end, once verified in the store (held sessions are kept)"
        ),
        None => println!("recordings of {name} are kept for ever"),
    }
    Ok(())
}

/// `witness hold set|clear|list`.
pub fn hold(root: &Path, cmd: HoldCmd) -> Result<()> {
    let dir = DataDir::open(root)?;
    match cmd {
        HoldCmd::Set { session_id, reason } => {
            if reason.trim().is_empty() {
                bail!("give the hold a reason: --reason TEXT");
            }
            let set = dir.index.set_hold(&session_id, &reason, None)?;
            let session = dir.index.session(&session_id)?.context("session vanished")?;
            let remote = remote_legal_hold(&dir, &session_id, true);
            dir.index.audit(
                "hold_set",
                Some(&session.user),
                Some(&session.target),
                Some(&session_id),
                &json!({ "reason": reason, "replaced": set.was_held, "already_deleted": set.already_deleted,
                         "store_legal_hold": remote }),
            )?;
            println!("session {session_id} is held: none of its recordings is deleted until `witness hold clear`");
            for id in &set.already_deleted {
                println!("note: recording {id} was deleted (or being deleted) by retention before the hold");
            }
            report_remote(&remote);
        }
        HoldCmd::Clear { session_id } => {
            if !dir.index.clear_hold(&session_id)? {
                bail!("session {session_id} is not held");
            }
            let session = dir.index.session(&session_id)?.context("session vanished")?;
            let remote = remote_legal_hold(&dir, &session_id, false);
            dir.index.audit(
                "hold_cleared",
                Some(&session.user),
                Some(&session.target),
                Some(&session_id),
                &json!({ "store_legal_hold": remote }),
            )?;
            println!("session {session_id} is no longer held; its target's retention applies again");
            report_remote(&remote);
        }
        HoldCmd::List { json } => {
            let holds = dir.index.holds()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&holds)?);
                return Ok(());
            }
            if holds.is_empty() {
                println!("no sessions are held");
            }
            for h in holds {
                println!("{}  {}@{}  since {}  {}", h.session_id, h.user, h.target, h.set_at, h.reason);
            }
        }
    }
    Ok(())
}

fn report_remote(remote: &serde_json::Value) {
    if let Some(e) = remote["error"].as_str() {
        eprintln!("warning: the store's legal hold could not be changed ({e}); the box's own hold applies");
    } else if let Some(n) = remote["objects"].as_u64() {
        println!("S3 Object Lock legal hold changed on {n} objects in the store");
    }
}

/// Sets or lifts the S3 Object Lock legal hold on a session's uploaded objects. Returns what
/// happened, for the audit event: `null` when the store has no object lock.
fn remote_legal_hold(dir: &DataDir, session_id: &str, on: bool) -> serde_json::Value {
    let result = (|| -> Result<Option<u64>> {
        let store = crate::sync::open_store(dir)?;
        if store.object_lock().is_none() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for r in dir.index.session_recordings(session_id)? {
            if let Some((key, state)) = dir.index.upload_key(&r.id)?
                && state == "verified"
                && dir.index.deleted_at(&r.id)?.is_none()
            {
                let base = crate::sync::key_base(&key).to_owned();
                keys.extend([key, format!("{base}.manifest.json"), format!("{base}.manifest.sig")]);
            }
        }
        let rt = runtime()?;
        for key in &keys {
            rt.block_on(store.set_legal_hold(key, on)).with_context(|| format!("legal hold on {key}"))?;
        }
        Ok(Some(keys.len() as u64))
    })();
    match result {
        Ok(None) => serde_json::Value::Null,
        Ok(Some(n)) => json!({ "objects": n, "on": on }),
        Err(e) => json!({ "error": format!("{e:#}") }),
    }
}

/// `witness retention run [--dry-run]`.
pub fn run_now(root: &Path, dry_run: bool) -> Result<()> {
    let dir = DataDir::open(root)?;
    let done = runtime()?.block_on(sweep(&dir, dry_run, &mut |line| println!("{line}")))?;
    if !dry_run {
        println!("deleted {} recordings past their retention", done.deleted);
    }
    if let Some(e) = done.last_error {
        bail!("{} recordings could not be deleted and are kept; last error: {e}", done.failed);
    }
    Ok(())
}
