//! Retention and legal hold: per-target retention, holds on sessions (mirrored as S3 Object Lock
//! legal holds on what is already in the store), and the sweep that deletes recordings past
//! their retention, locally and in the store — on demand (`witness retention run`) and
//! periodically in the daemon (its archive housekeeping, `pipeline.rs`). Nothing held and nothing not verified in the store is deleted.

use crate::datadir::DataDir;
use anyhow::{Context, Result};
use serde_json::json;
use tracing::{info, warn};
use witness_index::ExpiredRecording;
use witness_store::Store;

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    pub deleted: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

/// Deletes every recording past its target's retention that is verified in the store and not
/// held: the store's object and signed manifest, then the local copy, then it is marked deleted.
/// Each deletion is claimed first, so a hold set meanwhile wins. What it would delete (a dry run),
/// deleted or could not delete is a line given to `say` as it happens.
pub async fn sweep(dir: &DataDir, dry_run: bool, say: &mut (dyn FnMut(String) + Send)) -> Result<Sweep> {
    let mut done = Sweep::default();
    let expired = dir.index.expired(time::OffsetDateTime::now_utc())?;
    if expired.is_empty() {
        return Ok(done);
    }
    let store = crate::sync::open_store(dir)?;
    for e in expired {
        if dry_run {
            say(format!(
                "would delete {} (session {}, target {}, ended {}, retention {} days)",
                e.id, e.session_id, e.target, e.ended_at, e.retention_days
            ));
            continue;
        }
        if !dir.index.claim_deletion(&e.id)? {
            continue; // held, or another sweep is on it
        }
        match delete_one(dir, &store, &e).await {
            Ok(()) => {
                dir.index.deletion_done(&e.id)?;
                let manifest = match dir.index.manifest_if_all_deleted(&e.session_id)? {
                    Some(key) => match store.delete(&key).await {
                        Ok(()) => Some(key),
                        Err(err) => {
                            warn!(session_id = %e.session_id, error = %err, "could not delete the session manifest");
                            None
                        }
                    },
                    None => None,
                };
                dir.index.audit(
                    "recording_deleted",
                    None,
                    Some(&e.target),
                    Some(&e.session_id),
                    &json!({ "recording": e.id, "reason": "retention", "retention_days": e.retention_days,
                             "ended_at": e.ended_at, "key": e.object_key, "session_manifest": manifest }),
                )?;
                info!(recording_id = %e.id, key = %e.object_key, retention_days = e.retention_days, "recording deleted: past its retention");
                say(format!(
                    "deleted {} (session {}, target {}, ended {}): on the box and {}",
                    e.id, e.session_id, e.target, e.ended_at, e.object_key
                ));
                done.deleted += 1;
            }
            Err(err) => {
                // Nothing is marked deleted: the next sweep tries again (a hold set meanwhile wins).
                let _ = dir.index.release_deletion(&e.id);
                let message = format!("{err:#}");
                warn!(recording_id = %e.id, error = %message, "retention could not delete the recording; will retry");
                say(format!("could not delete {}: {message}", e.id));
                done.failed += 1;
                done.last_error = Some(message);
            }
        }
    }
    Ok(done)
}

async fn delete_one(dir: &DataDir, store: &Store, e: &ExpiredRecording) -> Result<()> {
    let base = crate::sync::key_base(&e.object_key);
    for key in [e.object_key.clone(), format!("{base}.manifest.json"), format!("{base}.manifest.sig")] {
        store.delete(&key).await.with_context(|| format!("deleting {key} from {}", store.describe()))?;
    }
    if !e.path.starts_with("store:") {
        let cast = dir.root.join(&e.path);
        for f in [crate::evidence::manifest_path(&cast), crate::evidence::signature_path(&cast), cast] {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("deleting {}", f.display())),
            }
        }
    }
    Ok(())
}
