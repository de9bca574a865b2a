//! The index at rest: SQLCipher keying, telling a plain index from an encrypted one, and the
//! one-time migration of a plain index (`sqlcipher_export` into an encrypted copy, fsync'd, then
//! renamed over the original, so a crash leaves either the old plain file or the new one).

use crate::{IndexError, IndexKey, Result};
use rusqlite::Connection;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What every plain SQLite file starts with; an SQLCipher file starts with random salt.
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// `PRAGMA key` as a raw key (hex: nothing to quote or inject). SQLCipher's own log to stderr
/// is off: a wrong key is reported once, as [`IndexError::WrongKey`].
pub(crate) fn key_pragma(key: &IndexKey) -> String {
    format!("PRAGMA cipher_log_level = NONE; PRAGMA key = \"x'{}'\";", hex::encode(key.0))
}

/// SQLCipher reports a wrong key as "file is not a database".
pub(crate) fn wrong_key(e: rusqlite::Error) -> IndexError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => IndexError::WrongKey,
        _ => IndexError::Sqlite(e),
    }
}

/// Whether `path` holds a plain (unencrypted) SQLite database. A missing or empty file is not.
pub(crate) fn is_plain(path: &Path) -> Result<bool> {
    let mut head = [0u8; 16];
    match std::fs::File::open(path) {
        Ok(mut f) => Ok(f.read_exact(&mut head).is_ok() && &head == PLAIN_HEADER),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(IndexError::Encrypt(format!("reading {}: {e}", path.display()))),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Encrypts the plain index at `path` under `key`. Processes opening the index at once (the
/// daemon and an admin command after an upgrade) take turns on a lock file; whoever comes second
/// finds the work done.
pub(crate) fn encrypt_in_place(path: &Path, key: &IndexKey) -> Result<()> {
    let io = |what: &str, e: std::io::Error| IndexError::Encrypt(format!("{what}: {e}"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(sibling(path, ".lock"))
        .map_err(|e| io("the migration lock", e))?;
    lock.lock().map_err(|e| io("the migration lock", e))?;
    if !is_plain(path)? {
        return Ok(());
    }
    let tmp = sibling(path, ".encrypting");
    // Left by a crash before the rename: the plain original is still whole.
    let _ = std::fs::remove_file(&tmp);
    {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tmp_text = tmp.to_str().ok_or_else(|| IndexError::Encrypt("the data path is not UTF-8".into()))?;
        conn.execute("ATTACH DATABASE ?1 AS enc KEY ?2", [tmp_text, &format!("x'{}'", hex::encode(key.0))])?;
        conn.query_row("SELECT sqlcipher_export('enc')", [], |_| Ok(()))?;
        // sqlcipher_export copies schema and rows, not the schema version migrations go by.
        conn.execute_batch(&format!("PRAGMA enc.user_version = {version}; DETACH DATABASE enc;"))?;
    }
    let f = std::fs::File::open(&tmp).map_err(|e| io("the encrypted copy", e))?;
    f.sync_all().map_err(|e| io("the encrypted copy", e))?;
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| io("the encrypted copy", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("replacing the plain index", e))?;
    // The plain index's WAL and shared memory belong to the file just replaced.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sibling(path, suffix));
    }
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    tracing::info!(path = %path.display(), "encrypted the plain index");
    Ok(())
}
