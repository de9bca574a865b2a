//! The key hierarchy for recordings at rest: key-encryption keys in the data dir (0600, one
//! file per key id, the active id in `keys/kek.active`), and a fresh data key per recording,
//! wrapped under the active KEK. Rotation adds a KEK; old ones stay to read old recordings.

use crate::admin::write_private;
use anyhow::{Context, Result};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use witness_core::atrest;
use witness_recorder::Encryption;

fn kek_path(root: &Path, id: &str) -> PathBuf {
    root.join("keys").join(format!("kek-{id}"))
}

fn active_path(root: &Path) -> PathBuf {
    root.join("keys/kek.active")
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// Creates and activates a new KEK; returns its id.
pub fn rotate(root: &Path) -> Result<String> {
    let id = format!("{}-{}", time::OffsetDateTime::now_utc().unix_timestamp(), hex::encode(random::<4>()));
    write_private(&kek_path(root, &id), hex::encode(random::<32>()).as_bytes())?;
    let tmp = active_path(root).with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, id.as_bytes())?;
    std::fs::rename(&tmp, active_path(root))?;
    Ok(id)
}

/// The active KEK id, creating the first key if there is none.
pub fn active(root: &Path) -> Result<String> {
    match std::fs::read_to_string(active_path(root)) {
        Ok(id) => Ok(id.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => rotate(root),
        Err(e) => Err(e).context("reading the active key id"),
    }
}

pub fn kek(root: &Path, id: &str) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(kek_path(root, id)).with_context(|| format!("key {id} is not on this box"))?;
    hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).with_context(|| format!("key {id} is damaged"))
}

/// Encryption for a new recording: a fresh data key wrapped under the active KEK.
pub fn new_encryption(root: &Path, recording_id: &str) -> Result<Encryption> {
    let id = active(root)?;
    let dek = random::<32>();
    let header = atrest::Header::new(
        atrest::Cipher::preferred(),
        recording_id,
        &id,
        atrest::wrap(&kek(root, &id)?, &dek, random::<24>()),
    );
    Ok(Encryption { header, dek, nonce_prefix: random::<16>() })
}

/// Finds a recording's data key from its header.
pub fn key_for(root: &Path) -> impl Fn(&atrest::Header) -> Option<[u8; 32]> + '_ {
    move |h| kek(root, &h.key_id).ok().and_then(|k| atrest::unwrap(&k, h).ok())
}

/// The key of the search index (`keys/search.key`, 0600): word hashes and sealed chunk text in
/// the index are made with it. Created on first use; rotation of KEKs does not touch it.
pub fn search_key(root: &Path) -> Result<[u8; 32]> {
    let path = root.join("keys/search.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).context("the search key is damaged"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random::<32>();
            write_private(&path, hex::encode(key).as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e).context("reading the search key"),
    }
}

/// A fresh nonce for sealing search text.
pub fn nonce() -> [u8; 24] {
    random::<24>()
}

/// The SQLCipher key of the index (`keys/index.key`, 0600). Created on first use, by whichever
/// process comes first: written whole under a private name, then linked into place (a link
/// never replaces), so two processes opening the data dir at once end up with one key.
pub fn index_key(root: &Path) -> Result<witness_index::IndexKey> {
    let path = root.join("keys/index.key");
    let read = |path: &Path| -> Result<witness_index::IndexKey> {
        let text = std::fs::read_to_string(path).context("reading the index key")?;
        let key = hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).context("the index key is damaged")?;
        Ok(witness_index::IndexKey(key))
    };
    if path.exists() {
        return read(&path);
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root.join("keys"))?;
    let tmp = root.join(format!("keys/index.key.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, hex::encode(random::<32>()).as_bytes())?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).context("creating the index key"),
    }
    read(&path)
}
