//! The key hierarchy for recordings at rest: key-encryption keys in the data dir (0600, one
//! file per key id, the active id in `keys/kek.active`), and a fresh data key per recording,
//! wrapped under the active KEK. Rotation adds a KEK; old ones stay to read old recordings.
//! Beside the KEKs live the index's SQLCipher key, the search key and the evidence signing key.
//!
//! Every one of these keys is either a plain file (hex, 0600) or, once `witness keys seal --tpm`
//! has run, sealed to the box's TPM (`NAME.tpm`; `keys/tpm` names the TPM): then nothing on the
//! disk opens a recording, the index or a signature without this box's TPM. Each process asks
//! the TPM once per key.
//!
//! Sealed keys are bound to the verified boot state as well: a policy over the SHA-256 PCRs
//! [`BOOT_PCRS`] — the firmware's boot-chain PCRs 0, 2, 4, 7 and PCR [`SLOT_PCR`], which the box
//! extends once per boot, before the data partition is mounted, with the slot and its dm-verity
//! root hash ([`measure_boot`]). `keys/tpm.policy` lists the states the keys are sealed to (one
//! per slot); an update seals every key for the new slot's predicted state before the box
//! switches ([`reseal_for_slot`]). A key that will not open says so on the console, in the
//! journal and (once the index opens again) in the audit log.

use crate::admin::write_private;
use anyhow::{Context, Result, bail};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use witness_core::atrest;
use witness_recorder::Encryption;
use witness_tpm::{PcrPolicy, Tpm};

/// Names the TPM the keys are sealed to (its TCTI); absent: the keys are plain files.
const TPM_MARK: &str = "keys/tpm";
/// The boot states (PCR values, by label) every sealed key is sealed to.
const TPM_POLICY: &str = "keys/tpm.policy";
/// Audit events that happened while the index could not be opened (its key would not unseal):
/// moved into the audit log the next time it opens.
const PENDING_AUDIT: &str = "audit-pending.jsonl";
/// The PCRs (SHA-256 bank) a sealed key is bound to: the boot chain as the firmware measured it
/// — its code (0), drivers and option ROMs (2), the boot loader and kernel it started (4), the
/// Secure Boot policy (7) — and the slot measured by the box. Not 1 (hardware configuration and
/// boot order, which firmware rewrites), 3/6, nor 5: it holds the GPT, which the first boot
/// changes when it creates the data partition. (A policy takes at most 8 PCRs in tpm2-tools.)
pub const BOOT_PCRS: [u8; 5] = [0, 2, 4, 7, SLOT_PCR];
/// The PCR the box extends with its slot and root hash, once per boot. 8-15 are for the OS
/// and cannot be reset without a reboot; nothing else on the box measures into 15.
pub const SLOT_PCR: u8 = 15;
/// What the initrd learned about this boot: `WITNESS_SLOT`, `WITNESS_ROOTHASH`.
const BOOT_ENV: &str = "/run/witness/boot.env";

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
        let key = match tpm.unseal(&blob) {
            Ok(key) => key,
            Err(error) => {
                unseal_failed(root, &name, &error);
                return Err(error).with_context(|| {
                    format!(
                        "the box's TPM will not open {name}: recordings, index and signatures stay closed \
                         (README: \"Keys sealed to the TPM\", recovery)"
                    )
                });
            }
        };
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

/// The file a new key at `path` goes to and what it holds: sealed to the TPM (for every boot
/// state the keys are sealed to) when the box's keys are, else hex.
fn key_file(root: &Path, path: &Path, key: &[u8; 32]) -> Result<(PathBuf, Vec<u8>)> {
    match tpm(root)? {
        Some(tpm) => {
            let blob = seal_all(&tpm, key, &policies(root)?)
                .with_context(|| format!("sealing {} to the box's TPM", key_name(path)))?;
            Ok((sealed_path(path), blob))
        }
        None => Ok((path.to_owned(), hex::encode(key).into_bytes())),
    }
}

/// `key` sealed for each of `policies` (without a policy if there is none: keys sealed before
/// boot-state binding).
fn seal_all(tpm: &Tpm, key: &[u8], policies: &[PcrPolicy]) -> Result<Vec<u8>> {
    let mut file: Option<Vec<u8>> = None;
    for policy in policies {
        let one = tpm.seal_to(key, policy)?;
        file = Some(match file {
            Some(f) => witness_tpm::with_sealing(&f, &one)?,
            None => one,
        });
    }
    match file {
        Some(f) => Ok(f),
        None => Ok(tpm.seal(key)?),
    }
}

/// The measurement of a slot: what [`SLOT_PCR`] is extended with when the box boots `slot`
/// with dm-verity root hash `root_hash`.
pub fn boot_event(slot: &str, root_hash: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"witness-slot\0");
    h.update(slot.as_bytes());
    h.update(b"\0");
    h.update(root_hash.as_bytes());
    h.finalize().into()
}

/// The slot and root hash this boot runs (from the initrd's boot.env; `WITNESS_BOOT_ENV` names
/// another file for tests); `None` off the appliance.
fn booted_slot() -> Result<Option<(String, String)>> {
    let path = std::env::var_os("WITNESS_BOOT_ENV").map(PathBuf::from).unwrap_or_else(|| BOOT_ENV.into());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(|v| v.trim().to_owned());
    match (get("WITNESS_SLOT"), get("WITNESS_ROOTHASH")) {
        (Some(slot), Some(hash)) => Ok(Some((checked_slot(&slot)?, checked_hash(&hash)?))),
        _ => bail!("{} names no slot and root hash", path.display()),
    }
}

fn checked_slot(slot: &str) -> Result<String> {
    if slot.is_empty() || slot.len() > 16 || !slot.bytes().all(|b| b.is_ascii_alphanumeric()) {
        bail!("not a slot name: {slot:?}");
    }
    Ok(slot.to_owned())
}

fn checked_hash(hash: &str) -> Result<String> {
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not a root hash (64 hex digits): {hash:?}");
    }
    Ok(hash.to_ascii_lowercase())
}

/// Extends [`SLOT_PCR`] with this boot's slot and root hash (run once per boot, before the data
/// partition is mounted). Refuses when it already holds a measurement.
pub fn measure_boot(tcti: &str) -> Result<String> {
    let (slot, hash) = booted_slot()?.context("no boot state to measure (not booted by the witness initrd)")?;
    let tpm = Tpm::new(tcti);
    let now = tpm.pcrs(&[SLOT_PCR]).context("reading the slot PCR")?;
    if now[0].1 != [0; 32] {
        bail!("PCR {SLOT_PCR} already holds a measurement this boot; measuring again would lock the keys");
    }
    tpm.extend(SLOT_PCR, &boot_event(&slot, &hash)).context("measuring the slot")?;
    Ok(slot)
}

/// The boot state now, under this boot's slot as label (`host` off the appliance).
fn current_policy(tpm: &Tpm) -> Result<PcrPolicy> {
    let label = booted_slot()?.map(|(s, _)| s).unwrap_or_else(|| "host".to_owned());
    Ok(PcrPolicy { label, values: tpm.pcrs(&BOOT_PCRS).context("reading the TPM's PCRs")? })
}

/// The boot state the box will be in once it boots `slot` with `root_hash`: the same boot chain
/// as now, and the slot PCR extended from zero with that slot's measurement.
fn slot_policy(tpm: &Tpm, slot: &str, root_hash: &str) -> Result<PcrPolicy> {
    let mut values = tpm.pcrs(&BOOT_PCRS).context("reading the TPM's PCRs")?;
    for (pcr, value) in &mut values {
        if *pcr == SLOT_PCR {
            *value = witness_tpm::extended(&[0; 32], &boot_event(slot, root_hash));
        }
    }
    Ok(PcrPolicy { label: slot.to_owned(), values })
}

/// The boot states the keys are sealed to (`keys/tpm.policy`: `LABEL PCR=HEX …` per line).
fn policies(root: &Path) -> Result<Vec<PcrPolicy>> {
    let text = match std::fs::read_to_string(root.join(TPM_POLICY)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).context("reading keys/tpm.policy"),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let label = checked_slot(words.next().unwrap_or_default())?;
            let values = words
                .map(|w| {
                    let (pcr, value) = w.split_once('=')?;
                    Some((pcr.parse().ok()?, hex::decode(value).ok()?.try_into().ok()?))
                })
                .collect::<Option<Vec<(u8, [u8; 32])>>>()
                .context("keys/tpm.policy is damaged")?;
            Ok(PcrPolicy { label, values })
        })
        .collect()
}

fn save_policies(root: &Path, policies: &[PcrPolicy]) -> Result<()> {
    let text: String = policies
        .iter()
        .map(|p| {
            let values: Vec<String> = p.values.iter().map(|(pcr, v)| format!("{pcr}={}", hex::encode(v))).collect();
            format!("{} {}\n", p.label, values.join(" "))
        })
        .collect();
    replace_private(&root.join(TPM_POLICY), text.as_bytes())
}

/// Records that a key would not unseal: the journal (an error event marked `audit`), the console
/// (when the daemon has one) and the pending audit log, moved into the index's audit log the
/// next time it opens. Bounded: a box restarting in a loop does not fill its disk.
fn unseal_failed(root: &Path, name: &str, error: &witness_tpm::TpmError) {
    tracing::error!(audit = true, kind = "tpm_unseal_failed", key = name, error = %error, "a sealed key would not open");
    let line = serde_json::json!({
        "at": time::OffsetDateTime::now_utc().unix_timestamp(),
        "kind": "tpm_unseal_failed",
        "key": name,
        "error": error.to_string(),
    });
    let path = root.join(PENDING_AUDIT);
    if std::fs::metadata(&path).map(|m| m.len() < 64 * 1024).unwrap_or(true) {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
    }
    if let Some(dir) = std::env::var_os(crate::local_console::DIR_ENV) {
        let text = format!(
            "\n=================== WITNESS: KEYS WILL NOT OPEN ===================\n\
             The box's TPM will not open {name}: {error}\n\
             Recordings, the index and signatures stay closed until the box boots the state its keys\n\
             were sealed to. Recovery: README, \"Keys sealed to the TPM\".\n\
             ===================================================================\n\n"
        );
        let _ = crate::local_console::LocalConsole::Dir(PathBuf::from(dir)).show("tpm-unseal", &text);
    }
}

/// Moves the audit events recorded while the index was closed into its audit log.
pub fn flush_pending_audit(root: &Path, index: &witness_index::Index) -> Result<()> {
    let path = root.join(PENDING_AUDIT);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context("reading the pending audit events"),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => serde_json::json!({ "kind": "tpm_unseal_failed", "damaged_record": true }),
        };
        let kind = event.get("kind").and_then(|k| k.as_str()).unwrap_or("tpm_unseal_failed").to_owned();
        index.audit(&kind, None, None, None, &event)?;
    }
    std::fs::remove_file(&path).context("removing the pending audit events")
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

/// What the console's health page shows of the keys: the active key's id (never the key),
/// whether the keys are sealed to a TPM, and why the active key cannot be read, if it cannot.
/// Creates nothing.
pub fn state(root: &Path) -> (Option<String>, bool, Option<String>) {
    let sealed = root.join(TPM_MARK).exists();
    match std::fs::read_to_string(active_path(root)) {
        Ok(id) => {
            let id = id.trim().to_owned();
            let error = kek(root, &id).err().map(|e| format!("{e:#}"));
            (Some(id), sealed, error)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, sealed, None),
        Err(e) => (None, sealed, Some(format!("reading the active key id: {e}"))),
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

/// Seals every key of the box to the TPM at `tcti`, bound to the boot state now (see the module
/// notes), and removes the plain files; keys sealed before without a policy are sealed again
/// with one. The TPM is proven first (a key sealed and unsealed); each key is unsealed again and
/// compared before its plain file goes. Run again, it finishes what an interrupted run left.
/// Returns the keys sealed now.
pub fn seal_to_tpm(root: &Path, tcti: &str) -> Result<Vec<String>> {
    if let Some(t) = tpm(root)?
        && t.tcti() != tcti
    {
        bail!("the keys are sealed to another TPM ({}); this box keeps one", t.tcti());
    }
    let tpm = Tpm::new(tcti).with_lock(&root.join("keys/tpm.lock"));
    let policy = current_policy(&tpm)?;
    let probe = random::<32>();
    let opened =
        tpm.seal_to(&probe, &policy).and_then(|b| tpm.unseal(&b)).context("the TPM cannot seal and unseal a key")?;
    if opened != probe {
        bail!("the TPM at {tcti} unsealed something other than what it sealed");
    }
    let keys = root.join("keys");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&keys)
        .context("reading the keys directory")?
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            let n = key_name(&p);
            let plain = n.strip_suffix(".tpm").unwrap_or(&n).to_owned();
            (plain.starts_with("kek-") && !plain.contains('.')
                || ["index.key", "search.key", "evidence_ed25519"].contains(&plain.as_str()))
            .then(|| keys.join(plain))
        })
        .collect();
    names.sort();
    names.dedup();
    let mut sealed = Vec::new();
    for path in &names {
        let name = key_name(path);
        let target = sealed_path(path);
        let existing = std::fs::read(&target).ok();
        // Sealed earlier to this state (an interrupted run): nothing to do for this key.
        if let Some(data) = &existing
            && witness_tpm::labels(data).is_ok_and(|l| l.contains(&policy.label))
            && !path.exists()
        {
            continue;
        }
        let key: [u8; 32] = if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {name}"))?;
            parse_hex_key(&name, &text)?
        } else {
            let data = existing.as_deref().context("no key")?;
            let key = tpm.unseal(data).with_context(|| format!("unsealing {name} to bind it to the boot state"))?;
            key.try_into().ok().with_context(|| format!("{name} unsealed to a key of the wrong size"))?
        };
        let blob = tpm.seal_to(&key, &policy).with_context(|| format!("sealing {name}"))?;
        let data = match &existing {
            Some(data) if witness_tpm::labels(data).is_ok_and(|l| !l.is_empty()) => {
                witness_tpm::with_sealing(data, &blob)?
            }
            _ => blob,
        };
        if tpm.unseal(&data).with_context(|| format!("unsealing {name} to check it"))? != key {
            bail!("{name}.tpm would not hold {name}; nothing removed");
        }
        replace_private(&target, &data)?;
        sealed.push(name);
    }
    let mut all = policies(root)?;
    all.retain(|p| p.label != policy.label);
    all.insert(0, policy);
    save_policies(root, &all)?;
    replace_private(&root.join(TPM_MARK), tcti.as_bytes())?;
    for path in &names {
        if path.exists() {
            shred(path).with_context(|| format!("removing the plain {}", key_name(path)))?;
        }
    }
    Ok(sealed)
}

/// Seals every key for the boot state of `slot` with `root_hash` (what the box will measure when
/// it boots that slot), beside the sealings it has: run before an update makes the slot
/// primary. Fails (and the update must not switch) if a key cannot be sealed. Returns the keys.
pub fn reseal_for_slot(root: &Path, slot: &str, root_hash: &str) -> Result<Vec<String>> {
    let (slot, root_hash) = (checked_slot(slot)?, checked_hash(root_hash)?);
    let tpm = tpm(root)?.context("the keys are not sealed to a TPM: nothing to seal for the new slot")?;
    let policy = slot_policy(&tpm, &slot, &root_hash)?;
    // Listed first: a key made while this runs is sealed for the new slot as well.
    let mut all = policies(root)?;
    all.retain(|p| p.label != policy.label);
    all.push(policy.clone());
    save_policies(root, &all)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("keys"))
        .context("reading the keys directory")?
        .flatten()
        .map(|e| e.path())
        .filter(|p| key_name(p).ends_with(".tpm"))
        .collect();
    files.sort();
    let mut done = Vec::new();
    for file in &files {
        let name = key_name(file);
        let data = std::fs::read(file).with_context(|| format!("reading {name}"))?;
        let key = match tpm.unseal(&data) {
            Ok(key) => key,
            Err(error) => {
                unseal_failed(root, &name, &error);
                return Err(error).with_context(|| format!("opening {name} to seal it for slot {slot}"));
            }
        };
        let blob = tpm.seal_to(&key, &policy).with_context(|| format!("sealing {name} for slot {slot}"))?;
        // A key sealed without a policy gets one for this boot too, so it still opens here.
        let base = if witness_tpm::labels(&data).is_ok_and(|l| !l.is_empty()) {
            data
        } else {
            tpm.seal_to(&key, &current_policy(&tpm)?).with_context(|| format!("sealing {name} for this boot"))?
        };
        replace_private(file, &witness_tpm::with_sealing(&base, &blob)?)?;
        done.push(name.trim_end_matches(".tpm").to_owned());
    }
    Ok(done)
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
