//! The key hierarchy for recordings at rest: key-encryption keys in the data dir (0600, one
//! file per key id, the active id in `keys/kek.active`), and a fresh data key per recording,
//! wrapped under the active KEK. Rotation adds a KEK; old ones stay to read old recordings.
//! Beside the KEKs live the index's SQLCipher key, the search key and the evidence signing key.
//!
//! Every one of these keys is either a plain file (hex, 0600) or, once `witness keys seal --tpm`
//! has run, sealed to the box's TPM (`NAME.tpm`; `keys/tpm` names the TPM): then nothing on the
//! disk opens a recording, the index or a signature without this box's TPM. Each process asks
//! the TPM once per key.

use crate::admin::write_private;
use anyhow::{Context, Result, bail};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use witness_core::atrest;
use witness_recorder::Encryption;
use witness_tpm::Tpm;

/// Names the TPM the keys are sealed to (its TCTI); absent: the keys are plain files.
const TPM_MARK: &str = "keys/tpm";

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

/// The TPM the box's keys are sealed to, if they are.
fn tpm(root: &Path) -> Result<Option<Tpm>> {
    match std::fs::read_to_string(root.join(TPM_MARK)) {
        Ok(tcti) => Ok(Some(Tpm::new(tcti.trim()).with_lock(&root.join("keys/tpm.lock")))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("reading keys/tpm"),
    }
}

fn sealed_path(plain: &Path) -> PathBuf {
    let mut p = plain.as_os_str().to_owned();
    p.push(".tpm");
    PathBuf::from(p)
}

/// Writes `data` (0600) to `path` whole or not at all: under a private name, then renamed over.
fn replace_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, data)?;
    std::fs::rename(&tmp, path).with_context(|| format!("placing {}", key_name(path)))
}

/// A plain key file's text: 32 bytes in hex.
fn parse_hex_key(name: &str, text: &str) -> Result<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{name} is damaged (not a 32-byte hex key)"))
}

fn key_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Keys this process has unsealed, by file: the TPM is asked once per key.
static UNSEALED: Mutex<BTreeMap<PathBuf, [u8; 32]>> = Mutex::new(BTreeMap::new());

/// The 32-byte key kept at `path` (hex) or sealed beside it (`path.tpm`); `None` if neither is
/// there.
fn read_key(root: &Path, path: &Path) -> Result<Option<[u8; 32]>> {
    let name = key_name(path);
    let sealed = sealed_path(path);
    if sealed.exists() {
        let mut cache = UNSEALED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = cache.get(&sealed) {
            return Ok(Some(*key));
        }
        let tpm = tpm(root)?.with_context(|| format!("{name} is sealed to a TPM but keys/tpm names none"))?;
        let blob = std::fs::read(&sealed).with_context(|| format!("reading {name}.tpm"))?;
        let key = tpm.unseal(&blob).with_context(|| format!("unsealing {name} with the box's TPM"))?;
        let key: [u8; 32] =
            key.try_into().ok().with_context(|| format!("{name} unsealed to a key of the wrong size"))?;
        cache.insert(sealed, key);
        return Ok(Some(key));
    }
    match std::fs::read_to_string(path) {
        Ok(text) => parse_hex_key(&name, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {name}")),
    }
}

/// The file a new key at `path` goes to and what it holds: sealed to the TPM when the box's keys
/// are, else hex.
fn key_file(root: &Path, path: &Path, key: &[u8; 32]) -> Result<(PathBuf, Vec<u8>)> {
    match tpm(root)? {
        Some(tpm) => {
            let blob = tpm.seal(key).with_context(|| format!("sealing {} to the box's TPM", key_name(path)))?;
            Ok((sealed_path(path), blob))
        }
        None => Ok((path.to_owned(), hex::encode(key).into_bytes())),
    }
}

/// A key kept at `path`, created (random) if there is none. Two processes creating it at once end
/// up with one key: it is written whole under a private name, then linked into place (a link
/// never replaces).
pub fn key_at(root: &Path, path: &Path) -> Result<[u8; 32]> {
    if let Some(key) = read_key(root, path)? {
        return Ok(key);
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root.join("keys"))?;
    let (target, data) = key_file(root, path, &random::<32>())?;
    // Private to this call: threads of one process may create the same key at once.
    let tmp = target.with_extension(format!("new{}-{}", std::process::id(), hex::encode(random::<4>())));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &data)?;
    let linked = std::fs::hard_link(&tmp, &target);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", key_name(path))),
    }
    read_key(root, path)?.with_context(|| format!("{} vanished as it was created", key_name(path)))
}

/// Creates and activates a new KEK; returns its id.
pub fn rotate(root: &Path) -> Result<String> {
    let id = format!("{}-{}", time::OffsetDateTime::now_utc().unix_timestamp(), hex::encode(random::<4>()));
    let (path, data) = key_file(root, &kek_path(root, &id), &random::<32>())?;
    write_private(&path, &data)?;
    replace_private(&active_path(root), id.as_bytes())?;
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
    read_key(root, &kek_path(root, id))?.with_context(|| format!("key {id} is not on this box"))
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

/// The key of the search index (`keys/search.key`): word hashes and sealed chunk text in the
/// index are made with it. Created on first use; rotation of KEKs does not touch it.
pub fn search_key(root: &Path) -> Result<[u8; 32]> {
    key_at(root, &root.join("keys/search.key"))
}

/// Where the bearer token for `/metrics` lives (0600, like the keys).
const METRICS_TOKEN: &str = "keys/metrics.token";

/// The token Prometheus presents for `/metrics`; `None` until `witness metrics token` made one.
pub fn metrics_token(root: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(root.join(METRICS_TOKEN)) {
        Ok(t) => Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context("reading keys/metrics.token"),
    }
}

/// Makes a new metrics token (the old one stops working at once) and returns it.
pub fn new_metrics_token(root: &Path) -> Result<String> {
    let token = hex::encode(random::<32>());
    replace_private(&root.join(METRICS_TOKEN), token.as_bytes())?;
    Ok(token)
}

/// A fresh nonce for sealing search text.
pub fn nonce() -> [u8; 24] {
    random::<24>()
}

/// The SQLCipher key of the index (`keys/index.key`). Created on first use.
pub fn index_key(root: &Path) -> Result<witness_index::IndexKey> {
    key_at(root, &root.join("keys/index.key")).map(witness_index::IndexKey)
}

/// Overwrites a key file with zeros, syncs and removes it: the key should not linger in the
/// file's old blocks.
fn shred(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)?.len() as usize;
    std::fs::write(path, vec![0u8; len]).and_then(|_| std::fs::File::open(path)?.sync_all())?;
    std::fs::remove_file(path).with_context(|| format!("removing {}", key_name(path)))
}

/// Destroys every key that opens a past recording or its text: the key-encryption keys (plain
/// or sealed), the active key id and the search key (factory reset). Recordings made so far,
/// on the box and in the store, can then be opened by nobody. The next recording makes a new
/// key. Returns the files destroyed.
pub fn destroy_recording_keys(root: &Path) -> Result<Vec<String>> {
    let keys = root.join("keys");
    let mut doomed: Vec<PathBuf> = match std::fs::read_dir(&keys) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = key_name(p);
                n.starts_with("kek-") || n == "kek.active" || n == "search.key" || n == "search.key.tpm"
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).context("reading the keys directory"),
    };
    doomed.sort();
    for path in &doomed {
        shred(path)?;
    }
    // Nothing this process unsealed before outlives the files.
    UNSEALED.lock().unwrap_or_else(|p| p.into_inner()).clear();
    Ok(doomed.iter().map(|p| key_name(p)).collect())
}

/// Seals every plain key of the box to the TPM at `tcti` and removes the plain files. The TPM
/// is proven first (a key sealed and unsealed); each key is unsealed again and compared before
/// its plain file goes. Run again, it finishes what an interrupted run left. Returns the keys
/// sealed now.
pub fn seal_to_tpm(root: &Path, tcti: &str) -> Result<Vec<String>> {
    if let Some(t) = tpm(root)?
        && t.tcti() != tcti
    {
        bail!("the keys are sealed to another TPM ({}); this box keeps one", t.tcti());
    }
    let tpm = Tpm::new(tcti).with_lock(&root.join("keys/tpm.lock"));
    let probe = random::<32>();
    let opened = tpm.seal(&probe).and_then(|b| tpm.unseal(&b)).context("the TPM cannot seal and unseal a key")?;
    if opened != probe {
        bail!("the TPM at {tcti} unsealed something other than what it sealed");
    }
    let keys = root.join("keys");
    let mut plain: Vec<PathBuf> = std::fs::read_dir(&keys)
        .context("reading the keys directory")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = key_name(p);
            n.starts_with("kek-") && !n.contains('.')
                || ["index.key", "search.key", "evidence_ed25519"].contains(&n.as_str())
        })
        .collect();
    plain.sort();
    let mut sealed = Vec::new();
    for path in &plain {
        let name = key_name(path);
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
        let key = parse_hex_key(&name, &text)?;
        let target = sealed_path(path);
        if !target.exists() {
            let blob = tpm.seal(&key).with_context(|| format!("sealing {name}"))?;
            replace_private(&target, &blob)?;
        }
        let blob = std::fs::read(&target)?;
        if tpm.unseal(&blob).with_context(|| format!("unsealing {name} to check it"))? != key {
            bail!("{name}.tpm does not hold {name}; nothing removed");
        }
        sealed.push(name);
    }
    replace_private(&root.join(TPM_MARK), tcti.as_bytes())?;
    for path in &plain {
        shred(path).with_context(|| format!("removing the plain {}", key_name(path)))?;
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_creating_one_key_at_once_all_get_the_same_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().to_owned();
            let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
                let handles: Vec<_> =
                    (0..8).map(|_| s.spawn(|| key_at(&root, &root.join("keys/search.key")).unwrap())).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]), "one key for all: {keys:?}");
            let left: Vec<_> = std::fs::read_dir(root.join("keys")).unwrap().flatten().map(|e| e.file_name()).collect();
            assert_eq!(left, vec![std::ffi::OsString::from("search.key")], "no temporary file left");
        }
    }
}
