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

//!
//! This crate is the bottom of the binary's key handling: it owns the key files and the TPM
//! (through `witness-tpm`) and reaches no session machinery, no index and no async runtime.
//! Private files (0600, written whole) are written here, once, for every part of the box.

use rand::RngCore;
use rand::rngs::OsRng;
use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use witness_core::atrest::{self, Encryption};
use witness_tpm::{PcrPolicy, Tpm, TpmError};

/// Why a key could not be read, made or sealed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file (or the keys directory) could not be read or written.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The TPM refused or failed.
    #[error("{what}")]
    Tpm {
        what: String,
        #[source]
        source: TpmError,
    },
    /// A key file, the list of boot states or the boot state itself is not what it must be.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = KeyError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KeyError {
    let what = what.into();
    move |source| KeyError::Io { what, source }
}

fn tpm_failed(what: impl Into<String>) -> impl FnOnce(TpmError) -> KeyError {
    let what = what.into();
    move |source| KeyError::Tpm { what, source }
}

fn invalid(what: impl Into<String>) -> KeyError {
    KeyError::Invalid(what.into())
}

/// Names the TPM the keys are sealed to (its TCTI); absent: the keys are plain files.
const TPM_MARK: &str = "keys/tpm";
/// The boot states (PCR values, by label) every sealed key is sealed to.
const TPM_POLICY: &str = "keys/tpm.policy";
/// Audit events that happened while the index could not be opened (its key would not unseal):
/// moved into the audit log the next time it opens ([`pending_audit`]).
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

/// Writes `data` to a new file at `path`, readable by its owner only (0600), and syncs it.
/// Refuses to replace an existing file: a private file never takes over another's name.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let what = || format!("creating {}", path.display());
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(what()))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(io(what()))?;
    sync_dir(path)
}

/// Syncs the directory holding `path`, so a new name in it (a key just made, renamed or linked
/// into place) survives a power cut: recordings encrypted under a key whose name was lost could
/// never be opened.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("syncing {}", dir.display())))
}

/// Writes `data` (0600) to `path` whole or not at all: under a name private to this call (two
/// replacements at once never write through each other's file), then renamed over. Of two at
/// once, the later rename wins, whole.
pub fn replace_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".new{}-{}", std::process::id(), hex::encode(random::<6>())));
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, data)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(format!("placing {}", key_name(path)))(e)
    })?;
    sync_dir(path)
}

/// Reads a private file of the box (a key, the active key id, the TPM's name): never through a
/// link, only a regular file. One that others may read (restored from a backup, copied by hand)
/// is made owner-only at once, and that is written to the journal and the pending audit log:
/// the key may have been read, and the box says so instead of using it silently.
fn read_private(root: &Path, path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // The keys directory first: never a link (its repair and every key would go elsewhere),
    // and owner-only.
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::symlink_metadata(dir)
    {
        if d.file_type().is_symlink() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is a link; the keys directory must be a directory of its own", dir.display()),
            ));
        }
        if d.permissions().mode() & 0o077 != 0 {
            let dir_mode = d.permissions().mode() & 0o777;
            exposed(root, "keys/", dir_mode);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("the keys directory is open to others (mode {dir_mode:o}) and could not be closed: {e}"),
                )
            })?;
        }
    }
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        // Said before the repair is tried: an exposure is audited even if it cannot be undone.
        exposed(root, &key_name(path), mode);
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("it is readable by others (mode {mode:o}) and could not be made private: {e}"),
            )
        })?;
    }
    // A key another user wrote (planted, or restored by hand) than the data directory's owner
    // (the box's user) is used, and its owner audited.
    if meta.uid() != box_user(root) {
        foreign(root, &key_name(path), meta.uid());
    }
    let mut data = Vec::with_capacity(meta.len().min(1 << 20) as usize);
    f.read_to_end(&mut data)?;
    Ok(data)
}

/// The box's user: the data directory's owner.
fn box_user(root: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(root).map(|m| m.uid()).unwrap_or(u32::MAX)
}

/// Records that a key file belongs to another user than the box's.
fn foreign(root: &Path, name: &str, uid: u32) {
    // Once per file and process: keys are read for every recording, the audit needs it once.
    static REPORTED: Mutex<BTreeMap<String, u32>> = Mutex::new(BTreeMap::new());
    if REPORTED.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_owned(), uid) == Some(uid) {
        return;
    }
    tracing::warn!(
        audit = true,
        kind = "key_file_foreign_owner",
        key = name,
        uid,
        "a key file of the box belongs to another user"
    );
    pend(
        root,
        serde_json::json!({
            "at": time::OffsetDateTime::now_utc().unix_timestamp(),
            "kind": "key_file_foreign_owner",
            "key": name,
            "uid": uid,
        }),
    );
}

/// Records that a private file (or the keys directory) was open to others and was made
/// owner-only: the journal and the pending audit log, like a key that will not unseal.
fn exposed(root: &Path, name: &str, mode: u32) {
    tracing::warn!(
        audit = true,
        kind = "key_file_exposed",
        key = name,
        mode = format!("{mode:o}"),
        "a private file of the box was readable by others; made owner-only"
    );
    pend(
        root,
        serde_json::json!({
            "at": time::OffsetDateTime::now_utc().unix_timestamp(),
            "kind": "key_file_exposed",
            "key": name,
            "mode": format!("{mode:o}"),
        }),
    );
}

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
        Err(e) => Err(io("reading keys/tpm")(e)),
    }
}

fn sealed_path(plain: &Path) -> PathBuf {
    let mut p = plain.as_os_str().to_owned();
    p.push(".tpm");
    PathBuf::from(p)
}

/// A plain key file's text: 32 bytes in hex.
fn parse_hex_key(name: &str, text: &str) -> Result<[u8; 32]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid(format!("{name} is damaged (not a 32-byte hex key)")))
}

fn key_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn key_of_size(name: &str, key: Vec<u8>) -> Result<[u8; 32]> {
    key.try_into().map_err(|_| invalid(format!("{name} unsealed to a key of the wrong size")))
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
        let tpm = tpm(root)?.ok_or_else(|| invalid(format!("{name} is sealed to a TPM but keys/tpm names none")))?;
        let blob = read_private(root, &sealed).map_err(io(format!("reading {name}.tpm")))?;
        let key = match tpm.unseal(&blob) {
            Ok(key) => key,
            Err(error) => {
                unseal_failed(root, &name, &error);
                return Err(tpm_failed(format!(
                    "the box's TPM will not open {name}: recordings, index and signatures stay closed \
                     (README: \"Keys sealed to the TPM\", recovery)"
                ))(error));
            }
        };
        let key = key_of_size(&name, key)?;
        cache.insert(sealed, key);
        return Ok(Some(key));
    }
    match read_private(root, path) {
        Ok(text) => parse_hex_key(&name, &String::from_utf8_lossy(&text)).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {name}"))(e)),
    }
}

/// The file a new key at `path` goes to and what it holds: sealed to the TPM (for every boot
/// state the keys are sealed to) when the box's keys are, else hex.
fn key_file(root: &Path, path: &Path, key: &[u8; 32]) -> Result<(PathBuf, Vec<u8>)> {
    match tpm(root)? {
        Some(tpm) => {
            let blob = seal_all(&tpm, key, &policies(root)?)
                .map_err(tpm_failed(format!("sealing {} to the box's TPM", key_name(path))))?;
            Ok((sealed_path(path), blob))
        }
        None => Ok((path.to_owned(), hex::encode(key).into_bytes())),
    }
}

/// `key` sealed for each of `policies` (without a policy if there is none: keys sealed before
/// boot-state binding).
fn seal_all(tpm: &Tpm, key: &[u8], policies: &[PcrPolicy]) -> Result<Vec<u8>, TpmError> {
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
        None => tpm.seal(key),
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
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).map(|v| v.trim().to_owned());
    match (get("WITNESS_SLOT"), get("WITNESS_ROOTHASH")) {
        (Some(slot), Some(hash)) => Ok(Some((checked_slot(&slot)?, checked_hash(&hash)?))),
        _ => Err(invalid(format!("{} names no slot and root hash", path.display()))),
    }
}

fn checked_slot(slot: &str) -> Result<String> {
    if slot.is_empty() || slot.len() > 16 || !slot.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(format!("not a slot name: {slot:?}")));
    }
    Ok(slot.to_owned())
}

fn checked_hash(hash: &str) -> Result<String> {
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!("not a root hash (64 hex digits): {hash:?}")));
    }
    Ok(hash.to_ascii_lowercase())
}

/// Extends [`SLOT_PCR`] with this boot's slot and root hash (run once per boot, before the data
/// partition is mounted). Refuses when it already holds a measurement.
pub fn measure_boot(tcti: &str) -> Result<String> {
    let (slot, hash) =
        booted_slot()?.ok_or_else(|| invalid("no boot state to measure (not booted by the witness initrd)"))?;
    let tpm = Tpm::new(tcti);
    let now = tpm.pcrs(&[SLOT_PCR]).map_err(tpm_failed("reading the slot PCR"))?;
    if now[0].1 != [0; 32] {
        return Err(invalid(format!(
            "PCR {SLOT_PCR} already holds a measurement this boot; measuring again would lock the keys"
        )));
    }
    tpm.extend(SLOT_PCR, &boot_event(&slot, &hash)).map_err(tpm_failed("measuring the slot"))?;
    Ok(slot)
}

/// The boot state now, under this boot's slot as label (`host` off the appliance).
fn current_policy(tpm: &Tpm) -> Result<PcrPolicy> {
    let label = booted_slot()?.map(|(s, _)| s).unwrap_or_else(|| "host".to_owned());
    Ok(PcrPolicy { label, values: tpm.pcrs(&BOOT_PCRS).map_err(tpm_failed("reading the TPM's PCRs"))? })
}

/// The boot state the box will be in once it boots `slot` with `root_hash`: the same boot chain
/// as now, and the slot PCR extended from zero with that slot's measurement.
fn slot_policy(tpm: &Tpm, slot: &str, root_hash: &str) -> Result<PcrPolicy> {
    let mut values = tpm.pcrs(&BOOT_PCRS).map_err(tpm_failed("reading the TPM's PCRs"))?;
    for (pcr, value) in &mut values {
        if *pcr == SLOT_PCR {
            *value = witness_tpm::extended(&[0; 32], &boot_event(slot, root_hash));
        }
    }
    Ok(PcrPolicy { label: slot.to_owned(), values })
}

/// The boot states the keys are sealed to (`keys/tpm.policy`: `LABEL PCR=HEX …` per line). The
/// file is on the data partition and nothing authenticates it, so only what the box itself writes
/// is taken: a slot label (`a`, `b`, or `host` off the appliance), exactly [`BOOT_PCRS`] in that
/// order, and for `a` and `b` a slot PCR that holds a measurement (never the zero of a boot that
/// measured nothing). Anything else is refused as damaged: a planted line would seal every new key to a
/// state of the planter's choosing.
fn policies(root: &Path) -> Result<Vec<PcrPolicy>> {
    let text = match std::fs::read_to_string(root.join(TPM_POLICY)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io("reading keys/tpm.policy")(e)),
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
                .ok_or_else(|| invalid("keys/tpm.policy is damaged"))?;
            if !["a", "b", "host"].contains(&label.as_str()) {
                return Err(invalid(format!("keys/tpm.policy is damaged: {label:?} is not a slot (a, b or host)")));
            }
            if values.iter().map(|(p, _)| *p).ne(BOOT_PCRS) {
                return Err(invalid(format!(
                    "keys/tpm.policy is damaged: slot {label} is bound to PCRs other than the boot's {BOOT_PCRS:?}"
                )));
            }
            if label != "host" && values.iter().any(|(p, v)| *p == SLOT_PCR && *v == [0; 32]) {
                return Err(invalid(format!(
                    "keys/tpm.policy is damaged: slot {label} is bound to an unmeasured boot (PCR {SLOT_PCR} zero)"
                )));
            }
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

/// What the process does besides the journal and the pending audit log when a key will not
/// unseal (the binary shows it on the box's console): the key's name and the TPM's error.
static ALARM: OnceLock<fn(&str, &str)> = OnceLock::new();

/// Sets what else is done when a sealed key will not open (once per process; later calls are
/// ignored). The journal and the pending audit log always get it.
pub fn on_unseal_failure(alarm: fn(key: &str, error: &str)) {
    let _ = ALARM.set(alarm);
}

/// Records that a key would not unseal: the journal (an error event marked `audit`), the alarm
/// (see [`on_unseal_failure`]) and the pending audit log, moved into the index's audit log the
/// next time it opens. Bounded: a box restarting in a loop does not fill its disk.
fn unseal_failed(root: &Path, name: &str, error: &TpmError) {
    tracing::error!(audit = true, kind = "tpm_unseal_failed", key = name, error = %error, "a sealed key would not open");
    pend(
        root,
        serde_json::json!({
            "at": time::OffsetDateTime::now_utc().unix_timestamp(),
            "kind": "tpm_unseal_failed",
            "key": name,
            "error": error.to_string(),
        }),
    );
    if let Some(alarm) = ALARM.get() {
        alarm(name, &error.to_string());
    }
}

/// Appends an event to the pending audit log. Bounded: a box restarting in a loop does not fill
/// its disk.
fn pend(root: &Path, line: serde_json::Value) {
    let path = root.join(PENDING_AUDIT);
    if std::fs::metadata(&path).map(|m| m.len() < 64 * 1024).unwrap_or(true) {
        use std::io::Write;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
    }
}

/// The kinds of event this crate writes to the pending audit log, and the image's
/// `seal-keys` (`tpm_keys_left_in_clear`: a boot with a TPM could not seal keys left in clear);
/// nothing else belongs there.
pub const PENDING_KINDS: [&str; 4] =
    ["tpm_unseal_failed", "key_file_exposed", "key_file_foreign_owner", "tpm_keys_left_in_clear"];
/// The kind under which a line of the pending audit log that this crate never writes is named.
pub const PLANTED_KIND: &str = "audit_pending_line_planted";
/// The kind under which the lines of one intake past what is taken are counted (one event).
pub const OVERFLOW_KIND: &str = "audit_pending_overflow";
/// How much of each pending file is read: it is written bounded (64 KiB); more is not ours.
const PENDING_READ_MAX: u64 = 256 * 1024;
/// Lines read at one intake: `pend` writes at most 64 KiB of lines well over 64 bytes each.
const PENDING_LINES_MAX: usize = 2048;
/// Events one intake makes at most (repeats of one event are one, with a count); the lines of
/// further events are counted in one [`OVERFLOW_KIND`] event (red team `h-fix18g`: 256 KiB of
/// junk lines were ~130k audit events at one open).
const PENDING_EVENTS_MAX: usize = 64;
/// An intake moves the pending file to a name of its own before it reads it (`PENDING_AUDIT`
/// then this, the time in ms, the process and a random part), so a line appended meanwhile goes
/// to a new pending file and is never removed unread.
const PENDING_TAKEN: &str = "audit-pending.jsonl.taken-";
/// A moved file older than this is an intake that stopped before it finished: taken up again.
const PENDING_TAKEN_STALE_MS: u128 = 60_000;
/// Leftover moved files taken up at one intake.
const PENDING_TAKEN_MAX: usize = 8;

/// The audit events recorded while the index was closed, to be moved into the audit log, and
/// the files they were read from, to remove once they are in ([`clear_pending_audit`]).
#[derive(Debug, Default)]
pub struct PendingAudit {
    /// Each event's kind and detail, oldest first.
    pub events: Vec<(String, serde_json::Value)>,
    files: Vec<PathBuf>,
}

/// A fresh name to move the pending file to.
fn taken_name(root: &Path) -> PathBuf {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    root.join(format!("{PENDING_TAKEN}{ms}-{}-{:016x}", std::process::id(), OsRng.next_u64()))
}

/// Takes the pending audit events: the pending file is first moved to a name of this intake's
/// own, then read (so a line appended meanwhile is left for the next intake, never removed
/// unread), and a moved file an earlier intake left (it stopped before removing it, over a
/// minute ago) is taken up too. The file is not authenticated (anyone with the disk writes
/// it), so each event is marked as read from it (`read_from`), and only the kinds this crate
/// writes there ([`PENDING_KINDS`]) are taken as such (a damaged line as a `tpm_unseal_failed`
/// marked `damaged_record`); any other line is named as planted ([`PLANTED_KIND`], its first
/// 256 characters), never taken as the event it claims to be. Bounded: repeats of one event
/// (its time aside) are one event with a `count`, at most [`PENDING_EVENTS_MAX`] events and
/// [`PENDING_LINES_MAX`] lines are taken, and what is left over is counted in one
/// [`OVERFLOW_KIND`] event. Remove the files with [`clear_pending_audit`] once the events are
/// in the audit log.
pub fn pending_audit(root: &Path) -> Result<PendingAudit> {
    let mut files = Vec::new();
    // Leftovers of an intake that stopped (claimed by a rename, so two intakes never both take one).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let mut leftovers: Vec<(u128, PathBuf)> = std::fs::read_dir(root)
        .map_err(io("listing the data directory for pending audit events"))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let ms: u128 = name.strip_prefix(PENDING_TAKEN)?.split('-').next()?.parse().ok()?;
            (now.saturating_sub(ms) > PENDING_TAKEN_STALE_MS).then(|| (ms, e.path()))
        })
        .collect();
    leftovers.sort();
    for (_, path) in leftovers.into_iter().take(PENDING_TAKEN_MAX) {
        let mine = taken_name(root);
        match std::fs::rename(&path, &mine) {
            Ok(()) => files.push(mine),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("taking up a pending audit file left over")(e)),
        }
    }
    let mine = taken_name(root);
    match std::fs::rename(root.join(PENDING_AUDIT), &mine) {
        Ok(()) => files.push(mine),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("taking the pending audit events")(e)),
    }
    let mut text = String::new();
    for path in &files {
        use std::io::Read;
        match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take(PENDING_READ_MAX).read_to_end(&mut bytes).map_err(io("reading the pending audit events"))?;
                text.push_str(&String::from_utf8_lossy(&bytes));
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("reading the pending audit events")(e)),
        }
    }
    Ok(PendingAudit { events: events_of(&text), files })
}

/// The events of the pending file's lines, bounded (see [`pending_audit`]).
fn events_of(text: &str) -> Vec<(String, serde_json::Value)> {
    let from =
        serde_json::Value::from(format!("{PENDING_AUDIT} (not authenticated: anyone with the disk can write it)"));
    let event_of = |line: &str| {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            return ("tpm_unseal_failed".to_owned(), serde_json::json!({ "damaged_record": true, "read_from": from }));
        };
        let kind = event.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned();
        match (PENDING_KINDS.contains(&kind.as_str()), event) {
            (true, serde_json::Value::Object(mut fields)) => {
                fields.insert("read_from".into(), from.clone());
                (kind, serde_json::Value::Object(fields))
            }
            _ => (
                PLANTED_KIND.to_owned(),
                serde_json::json!({
                    "line": line.chars().take(256).collect::<String>(),
                    "read_from": from,
                    "why": "a kind of event the box never writes there",
                }),
            ),
        }
    };
    // Repeats of one event (its time aside) are one, counted.
    let mut out: Vec<(String, serde_json::Value, u64)> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let (mut lines, mut not_taken) = (0usize, 0u64);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        if lines > PENDING_LINES_MAX {
            not_taken += 1;
            continue;
        }
        let (kind, mut detail) = event_of(line);
        let at = detail.as_object_mut().and_then(|o| o.remove("at"));
        let same = format!("{kind} {detail}");
        if let Some(&i) = seen.get(&same) {
            out[i].2 += 1;
            if let (Some(at), Some(o)) = (at, out[i].1.as_object_mut()) {
                o.insert("last_at".into(), at);
            }
            continue;
        }
        if out.len() >= PENDING_EVENTS_MAX {
            not_taken += 1;
            continue;
        }
        if let (Some(at), Some(o)) = (at, detail.as_object_mut()) {
            o.insert("at".into(), at);
        }
        seen.insert(same, out.len());
        out.push((kind, detail, 1));
    }
    let mut events: Vec<(String, serde_json::Value)> = out
        .into_iter()
        .map(|(kind, mut detail, n)| {
            if let (true, Some(o)) = (n > 1, detail.as_object_mut()) {
                o.insert("count".into(), n.into());
            }
            (kind, detail)
        })
        .collect();
    if not_taken > 0 {
        events.push((
            OVERFLOW_KIND.to_owned(),
            serde_json::json!({
                "lines_not_taken": not_taken,
                "read_from": from,
                "why": format!("more than the box ever writes there: at most {PENDING_EVENTS_MAX} events and {PENDING_LINES_MAX} lines are taken at once"),
            }),
        ));
    }
    events
}

/// Removes the files the pending audit events were read from (after they were moved into the
/// audit log); a line appended since went to a new pending file and stays.
pub fn clear_pending_audit(taken: &PendingAudit) -> Result<()> {
    for path in &taken.files {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("removing the pending audit events")(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A key kept at `path`, created (random) if there is none. Two processes creating it at once end
/// up with one key: it is written whole under a private name, then linked into place (a link
/// never replaces).
pub fn key_at(root: &Path, path: &Path) -> Result<[u8; 32]> {
    if let Some(key) = read_key(root, path)? {
        return Ok(key);
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root.join("keys"))
        .map_err(io("creating the keys directory"))?;
    let (target, data) = key_file(root, path, &random::<32>())?;
    // Private to this call: threads of one process may create the same key at once.
    let tmp = target.with_extension(format!("new{}-{}", std::process::id(), hex::encode(random::<4>())));
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, &data)?;
    let linked = std::fs::hard_link(&tmp, &target);
    let _ = std::fs::remove_file(&tmp);
    sync_dir(&target)?;
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("creating {}", key_name(path)))(e)),
    }
    read_key(root, path)?.ok_or_else(|| invalid(format!("{} vanished as it was created", key_name(path))))
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
    match read_private(root, &active_path(root)) {
        Ok(id) => Ok(String::from_utf8_lossy(&id).trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => rotate(root),
        Err(e) => Err(io("reading the active key id")(e)),
    }
}

/// What the console's health page shows of the keys: the active key's id (never the key),
/// whether the keys are sealed to a TPM, and why the active key cannot be read, if it cannot.
/// Creates nothing.
pub fn state(root: &Path) -> (Option<String>, bool, Option<String>) {
    let sealed = root.join(TPM_MARK).exists();
    match read_private(root, &active_path(root)) {
        Ok(id) => {
            let id = String::from_utf8_lossy(&id).trim().to_owned();
            let error = kek(root, &id).err().map(|e| with_causes(&e));
            (Some(id), sealed, error)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, sealed, None),
        Err(e) => (None, sealed, Some(format!("reading the active key id: {e}"))),
    }
}

/// The key-encryption key `id`.
pub fn kek(root: &Path, id: &str) -> Result<[u8; 32]> {
    read_key(root, &kek_path(root, id))?.ok_or_else(|| invalid(format!("key {id} is not on this box")))
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

/// The SQLCipher key of the index (`keys/index.key`). Created on first use.
pub fn index_key(root: &Path) -> Result<[u8; 32]> {
    key_at(root, &root.join("keys/index.key"))
}

/// Where the bearer token for `/metrics` lives (0600, like the keys).
const METRICS_TOKEN: &str = "keys/metrics.token";

/// The token Prometheus presents for `/metrics`; `None` until `witness metrics token` made one.
pub fn metrics_token(root: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(root.join(METRICS_TOKEN)) {
        Ok(t) => Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading keys/metrics.token")(e)),
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

/// Overwrites a key file with zeros, syncs and removes it: the key should not linger in the
/// file's old blocks.
/// Anything else found under a key's name (a link, planted by whoever could write `keys/`) is
/// removed without being followed: a reset run as root never writes where a link points.
fn shred(root: &Path, path: &Path) -> Result<()> {
    use std::io::Write;
    let what = || format!("removing {}", key_name(path));
    let meta = std::fs::symlink_metadata(path).map_err(io(what()))?;
    if meta.is_file() {
        use std::os::unix::fs::MetadataExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(io(what()))?;
        let opened = f.metadata().map_err(io(what()))?;
        // Only a file that is this name alone and the box's own is overwritten: a hard link
        // planted under a key's name is another file, which a reset run as root must not touch.
        if opened.nlink() == 1 && opened.uid() == box_user(root) {
            f.write_all(&vec![0u8; opened.len() as usize]).and_then(|()| f.sync_all()).map_err(io(what()))?;
        }
    }
    std::fs::remove_file(path).map_err(io(what()))
}

/// An error and its causes on one line (`a: b: c`), as the console shows it.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The keys directory's entries (none if it does not exist yet when `missing_ok`).
fn key_files(root: &Path, missing_ok: bool) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(root.join("keys")) {
        Ok(entries) => Ok(entries.flatten().map(|e| e.path()).collect()),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(io("reading the keys directory")(e)),
    }
}

/// Destroys every key that opens a past recording or its text: the key-encryption keys (plain
/// or sealed), the active key id and the search key (factory reset). Recordings made so far,
/// on the box and in the store, can then be opened by nobody. The next recording makes a new
/// key. Returns the files destroyed.
pub fn destroy_recording_keys(root: &Path) -> Result<Vec<String>> {
    let mut doomed: Vec<PathBuf> = key_files(root, true)?
        .into_iter()
        .filter(|p| {
            // Every name under a key's stem: a copy a crash left under a private name
            // (`search.new…`, `search.key.new…`, `kek.active.new…`) holds the key too.
            let n = key_name(p);
            n.starts_with("kek") || n.starts_with("search.")
        })
        .collect();
    doomed.sort();
    for path in &doomed {
        shred(root, path)?;
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
        return Err(invalid(format!("the keys are sealed to another TPM ({}); this box keeps one", t.tcti())));
    }
    let tpm = Tpm::new(tcti).with_lock(&root.join("keys/tpm.lock"));
    let policy = current_policy(&tpm)?;
    let probe = random::<32>();
    let opened = tpm
        .seal_to(&probe, &policy)
        .and_then(|b| tpm.unseal(&b))
        .map_err(tpm_failed("the TPM cannot seal and unseal a key"))?;
    if opened != probe {
        return Err(invalid(format!("the TPM at {tcti} unsealed something other than what it sealed")));
    }
    let keys = root.join("keys");
    let mut names: Vec<PathBuf> = key_files(root, false)?
        .into_iter()
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
            let text = std::fs::read_to_string(path).map_err(io(format!("reading {name}")))?;
            parse_hex_key(&name, &text)?
        } else {
            let data = existing.as_deref().ok_or_else(|| invalid(format!("{name} is gone")))?;
            let key = tpm.unseal(data).map_err(tpm_failed(format!("unsealing {name} to bind it to the boot state")))?;
            key_of_size(&name, key)?
        };
        let blob = tpm.seal_to(&key, &policy).map_err(tpm_failed(format!("sealing {name}")))?;
        let data = match &existing {
            Some(data) if witness_tpm::labels(data).is_ok_and(|l| !l.is_empty()) => {
                witness_tpm::with_sealing(data, &blob).map_err(tpm_failed(format!("sealing {name}")))?
            }
            _ => blob,
        };
        if tpm.unseal(&data).map_err(tpm_failed(format!("unsealing {name} to check it")))? != key {
            return Err(invalid(format!("{name}.tpm would not hold {name}; nothing removed")));
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
            shred(root, path)?;
        }
    }
    Ok(sealed)
}

/// Seals every key for the boot state of `slot` with `root_hash` (what the box will measure when
/// it boots that slot), beside the sealings it has: run before an update makes the slot
/// primary. Fails (and the update must not switch) if a key cannot be sealed. Returns the keys.
pub fn reseal_for_slot(root: &Path, slot: &str, root_hash: &str) -> Result<Vec<String>> {
    let (slot, root_hash) = (checked_slot(slot)?, checked_hash(root_hash)?);
    let tpm =
        tpm(root)?.ok_or_else(|| invalid("the keys are not sealed to a TPM: nothing to seal for the new slot"))?;
    let policy = slot_policy(&tpm, &slot, &root_hash)?;
    // Listed first: a key made while this runs is sealed for the new slot as well.
    let mut all = policies(root)?;
    all.retain(|p| p.label != policy.label);
    all.push(policy.clone());
    save_policies(root, &all)?;
    let mut files: Vec<PathBuf> =
        key_files(root, false)?.into_iter().filter(|p| key_name(p).ends_with(".tpm")).collect();
    files.sort();
    let mut done = Vec::new();
    for file in &files {
        let name = key_name(file);
        let data = std::fs::read(file).map_err(io(format!("reading {name}")))?;
        let key = match tpm.unseal(&data) {
            Ok(key) => key,
            Err(error) => {
                unseal_failed(root, &name, &error);
                return Err(tpm_failed(format!("opening {name} to seal it for slot {slot}"))(error));
            }
        };
        let sealing = |what: String| tpm_failed(what);
        let blob = tpm.seal_to(&key, &policy).map_err(sealing(format!("sealing {name} for slot {slot}")))?;
        // A key sealed without a policy gets one for this boot too, so it still opens here.
        let base = if witness_tpm::labels(&data).is_ok_and(|l| !l.is_empty()) {
            data
        } else {
            tpm.seal_to(&key, &current_policy(&tpm)?).map_err(sealing(format!("sealing {name} for this boot")))?
        };
        let both =
            witness_tpm::with_sealing(&base, &blob).map_err(sealing(format!("sealing {name} for slot {slot}")))?;
        replace_private(file, &both)?;
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

    #[test]
    fn a_private_file_is_owner_only_and_never_replaces_another() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let err = write_private(&path, b"two").unwrap_err();
        assert!(err.to_string().starts_with("creating "), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one", "the first file is kept");
        replace_private(&path, b"three").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"three");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_file_is_named_and_no_new_key_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("keys")).unwrap();
        std::fs::write(root.join("keys/search.key"), "not hex").unwrap();
        let err = search_key(root).unwrap_err();
        assert_eq!(err.to_string(), "search.key is damaged (not a 32-byte hex key)");
        assert_eq!(std::fs::read_to_string(root.join("keys/search.key")).unwrap(), "not hex");
    }

    #[test]
    fn a_missing_kek_is_named_with_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let err = kek(dir.path(), "123-abcd").unwrap_err();
        assert_eq!(err.to_string(), "key 123-abcd is not on this box");
        let (active, sealed, error) = state(dir.path());
        assert_eq!((active, sealed, error), (None, false, None), "state creates nothing");
        assert!(!dir.path().join("keys").exists());
    }

    #[test]
    fn the_pending_audit_keeps_damaged_lines_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert!(pending_audit(root).unwrap().events.is_empty());
        std::fs::write(root.join(PENDING_AUDIT), "{\"kind\":\"tpm_unseal_failed\",\"key\":\"index.key\"}\n{broken\n")
            .unwrap();
        let taken = pending_audit(root).unwrap();
        let events = &taken.events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].1["key"], "index.key");
        assert_eq!(events[1].0, "tpm_unseal_failed");
        assert_eq!(events[1].1["damaged_record"], true);
        assert!(events.iter().all(|(_, e)| e["read_from"].as_str().unwrap().contains("not authenticated")));
        // A line of a kind this crate never writes there is named as planted, not taken.
        std::fs::write(
            root.join(PENDING_AUDIT),
            "{\"kind\":\"recording_deleted\",\"recording\":\"x\"}\n[1]\n{\"kind\":\"key_file_exposed\",\"key\":\"k\"}\n",
        )
        .unwrap();
        let taken = pending_audit(root).unwrap();
        let events = &taken.events;
        let kinds: Vec<_> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, [PLANTED_KIND, PLANTED_KIND, "key_file_exposed"]);
        assert!(events[0].1["line"].as_str().unwrap().contains("recording_deleted"));
        assert_eq!(events[2].1["key"], "k");
        clear_pending_audit(&taken).unwrap();
        clear_pending_audit(&taken).unwrap();
        assert!(pending_audit(root).unwrap().events.is_empty());
    }

    /// Red team (issue 22): a key file that is already readable by everyone (restored from a
    /// backup, copied by hand, a `keys/` made by `mkdir` with the default umask) was used as it
    /// was: no repair, no word. Now it is made owner-only at once and the exposure is audited.
    #[test]
    fn red22_keys_a_world_readable_key_file_is_made_private_and_audited() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("keys")).unwrap();
        std::fs::set_permissions(root.join("keys"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = root.join("keys/search.key");
        std::fs::write(&path, hex::encode([7u8; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(key_at(root, &path).unwrap(), [7u8; 32], "the key is still the box's key");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "made private");
        assert_eq!(std::fs::metadata(root.join("keys")).unwrap().permissions().mode() & 0o777, 0o700);
        let audit = pending_audit(root).unwrap().events;
        assert!(audit.iter().any(|(k, e)| k == "key_file_exposed" && e["key"] == "search.key" && e["mode"] == "644"));
        assert!(audit.iter().any(|(k, e)| k == "key_file_exposed" && e["key"] == "keys/"));
        // The same for the KEKs: `active` reads a world-readable kek.active and kek file.
        std::fs::write(root.join("keys/kek-1"), hex::encode([9u8; 32])).unwrap();
        std::fs::set_permissions(root.join("keys/kek-1"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(root.join("keys/kek.active"), "1").unwrap();
        assert_eq!(active(root).unwrap(), "1");
        assert_eq!(kek(root, "1").unwrap(), [9u8; 32]);
        for f in ["keys/kek-1", "keys/kek.active"] {
            assert_eq!(std::fs::metadata(root.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
        }
        // A link under a key's name is never read through.
        std::fs::remove_file(root.join("keys/kek-1")).unwrap();
        std::os::unix::fs::symlink(&path, root.join("keys/kek-1")).unwrap();
        assert!(kek(root, "1").is_err(), "a key read through a link");
    }

    /// Red team (issue 22): `replace_private` wrote through one fixed temporary name
    /// (`PATH.new`), so two replacements at once (the CLI's `keys rotate` while the daemon makes
    /// its first key, two admins) took each other's file: one renamed the other's content into
    /// place and reported success for its own, the other failed. Now both succeed and the file
    /// is one of the two, whole.
    #[test]
    fn red22_keys_two_replacements_at_once_both_succeed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.active");
        for _ in 0..2_000 {
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| replace_private(&path, b"id-a"));
                let b = s.spawn(|| replace_private(&path, b"id-b"));
                (a.join().unwrap(), b.join().unwrap())
            });
            assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
            let now = std::fs::read(&path).unwrap();
            assert!(now == b"id-a" || now == b"id-b", "{now:?}");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, ["kek.active"], "no temporary file left behind");
    }

    /// Red team (issue 22): `shred` opened the key file by name with `std::fs::write`, which
    /// follows a link: a `keys/kek-*` planted as a symlink (by whoever can write `keys/`: the
    /// daemon's user) made a factory reset overwrite the link's target with zeros, with the
    /// privileges of whoever runs the reset (root at the console). Now the link is removed and
    /// its target left alone.
    #[test]
    fn red22_keys_factory_reset_removes_a_planted_link_without_following_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("keys")).unwrap();
        let victim = dir.path().join("not-a-key.conf");
        std::fs::write(&victim, b"important=1\n").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("keys/kek-planted")).unwrap();
        let destroyed = destroy_recording_keys(&root).unwrap();
        assert_eq!(destroyed, ["kek-planted"]);
        assert_eq!(std::fs::read(&victim).unwrap(), b"important=1\n", "the link's target is untouched");
        assert!(std::fs::symlink_metadata(root.join("keys/kek-planted")).is_err(), "the link is gone");
    }

    /// Red team h-red22b: `shred` refuses to follow a symbolic link but not a hard one. A file
    /// hard-linked under a key's name (by whoever can write `keys/`, where hard links to others'
    /// files are allowed: `fs.protected_hardlinks=0`, or a file that user owns elsewhere) is a
    /// regular file to `symlink_metadata` and to `O_NOFOLLOW`, so a factory reset (root) fills
    /// the *other* file with zeros before it unlinks the key's name. Now only a file that is the
    /// name alone and the box's own is overwritten; the link is just removed.
    #[test]
    fn red22b_keys_factory_reset_leaves_a_file_hard_linked_under_a_key_name_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("keys")).unwrap();
        let victim = dir.path().join("not-a-key.conf");
        std::fs::write(&victim, b"important=1\n").unwrap();
        std::fs::hard_link(&victim, root.join("keys/kek-planted")).unwrap();
        assert_eq!(destroy_recording_keys(&root).unwrap(), ["kek-planted"]);
        assert_eq!(std::fs::read(&victim).unwrap(), b"important=1\n", "the other name's file is untouched");
        assert!(!root.join("keys/kek-planted").exists(), "the key's name is gone");
    }

    /// Red team h-red22b: whose key file it is is never asked, and a `keys/` that is a
    /// symbolic link is neither refused nor repaired. (1) A key directory others can write (made
    /// by hand, restored) holding a `kek.active` and a KEK *owned by another user* (mode 0600,
    /// so nothing looks exposed): the box takes that user's key as its active KEK and encrypts
    /// new recordings under a key the other user knows; the directory is made 0700 only after
    /// the planted files were read, and the planted key stays in use. (2) `keys` a link to a
    /// directory open to everyone: the 0700 repair and its audit are skipped (the check reads
    /// `symlink_metadata` of the link), the open directory stays open and nothing is said. Now
    /// (1) the open directory is closed and audited before anything in it is read, and the
    /// foreign owner is audited; (2) a linked `keys` is refused.
    #[test]
    fn red22b_keys_a_planted_key_is_audited_and_a_linked_keys_dir_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let nobody = 65534;
        // (1) keys/ open to others; a planted KEK owned by another user, mode 0600.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("keys")).unwrap();
        std::fs::set_permissions(root.join("keys"), std::fs::Permissions::from_mode(0o777)).unwrap();
        for (name, text) in [("keys/kek-evil", hex::encode([0x66u8; 32])), ("keys/kek.active", "evil".to_owned())] {
            let p = root.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&p, Some(nobody), Some(nobody)).unwrap();
        }
        assert_eq!(active(root).unwrap(), "evil");
        assert_eq!(kek(root, "evil").unwrap(), [0x66u8; 32]);
        assert_eq!(std::fs::metadata(root.join("keys/kek-evil")).unwrap().uid(), nobody);
        assert_eq!(std::fs::metadata(root.join("keys")).unwrap().permissions().mode() & 0o777, 0o700);
        let audit = pending_audit(root).unwrap().events;
        for key in ["kek-evil", "kek.active"] {
            assert!(
                audit.iter().any(|(k, e)| k == "key_file_foreign_owner" && e["key"] == key && e["uid"] == nobody),
                "the foreign owner of {key} is audited: {audit:?}"
            );
        }
        assert!(audit.iter().any(|(k, e)| k == "key_file_exposed" && e["key"] == "keys/"), "{audit:?}");

        // (2) keys is a link to a directory open to everyone.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink(&open, root.join("keys")).unwrap();
        let err = with_causes(&search_key(&root).expect_err("a key kept through a linked keys directory"));
        assert!(err.contains("is a link"), "{err}");
        assert!(!open.join("search.key").exists(), "nothing written there");
    }

    /// Red team h-red22b: when the repair of an exposed key file cannot be made (the file is on
    /// a read-only mount, immutable, or owned by another user while the box is not root — here
    /// `chattr +i`, which makes `chmod` fail as a read-only filesystem does), `read_private`
    /// returns the `chmod` error before it audits: the box refuses to start with "reading
    /// search.key: Operation not permitted", which names neither the exposure nor the repair
    /// that failed, and the exposure (the key was readable by everyone) is written nowhere. Now
    /// the exposure is audited first and the error says what could not be done.
    #[test]
    fn red22b_keys_an_exposed_key_that_cannot_be_made_private_is_audited_and_explained() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("keys")).unwrap();
        std::fs::set_permissions(root.join("keys"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = root.join("keys/search.key");
        std::fs::write(&path, hex::encode([7u8; 32])).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let chattr = |flag: &str| std::process::Command::new("chattr").arg(flag).arg(&path).status().unwrap().success();
        assert!(chattr("+i"), "chattr +i (root on ext4 needed for this attack test)");
        let got = search_key(root);
        assert!(chattr("-i"), "chattr -i");
        let err = with_causes(&got.expect_err("the box would start"));
        assert!(err.contains("Operation not permitted"), "{err}");
        assert!(err.contains("readable by others (mode 644) and could not be made private"), "{err}");
        let audit = pending_audit(root).unwrap().events;
        assert!(audit.iter().any(|(k, e)| k == "key_file_exposed" && e["key"] == "search.key"), "{audit:?}");
    }

    /// Red team h-red22b: `key_at` writes a new key under a name private to the call
    /// (`target.with_extension("new{pid}-{hex}")`), links it into place, then removes it. A
    /// process that ends in between (a crash, a power cut, the stop's watchdog `process::exit`)
    /// leaves that file, holding the key, for good: nothing removes stale ones at start, and the
    /// factory reset destroys only `kek-*`, `kek.active`, `search.key` and `search.key.tpm` by
    /// exact name, so the search key's leftover (`search.new…`, or `search.key.new…` when sealed
    /// to the TPM, which still unseals it) outlives the reset that promises nobody can open the
    /// past search text again. Now the reset destroys every name under a key's stem.
    #[test]
    fn red22b_keys_a_search_key_left_under_its_private_name_is_destroyed_by_the_factory_reset() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let key = search_key(root).unwrap();
        // What `key_at` leaves when the process ends between `write_private(tmp)` and removing it.
        let target = root.join("keys/search.key");
        let left = target.with_extension(format!("new{}-{}", 4242, "0a0b0c0d"));
        write_private(&left, hex::encode(key).as_bytes()).unwrap();
        let sealed_left = root.join("keys/search.key.new4242-0a0b0c0d");
        write_private(&sealed_left, b"tpm blob").unwrap();
        let destroyed = destroy_recording_keys(root).unwrap();
        assert!(destroyed.contains(&"search.key".to_owned()), "{destroyed:?}");
        assert!(!target.exists(), "the search key itself is gone");
        assert!(!left.exists() && !sealed_left.exists(), "and its copies: {destroyed:?}");
        let _ = key;
    }

    /// Red team `h-fix18g` (issue 18): the pending audit file was read up to 256 KiB and every
    /// line became its own audit event at one open: 256 KiB of short junk lines, written by
    /// anyone with the disk, were ~130k events in the keyed chain at once (seen on the old code:
    /// 131072 events). Now repeats are one event with a count, and past 64 events and 2048
    /// lines the rest is counted in one event.
    #[test]
    fn red18k_keys_a_pending_file_of_junk_lines_becomes_a_hundred_thousand_events() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut junk = String::new();
        let mut i = 0u64;
        while junk.len() < 256 * 1024 {
            junk.push_str(&format!("{}\n", i % 10));
            i += 1;
        }
        std::fs::write(root.join(PENDING_AUDIT), &junk).unwrap();
        let events = pending_audit(root).unwrap().events;
        assert_eq!(events.len(), 11, "ten distinct lines and the overflow: {events:?}");
        let counted: u64 = events[..10].iter().map(|(_, e)| e["count"].as_u64().unwrap()).sum();
        assert_eq!(counted, PENDING_LINES_MAX as u64, "{events:?}");
        assert!(events[..10].iter().all(|(k, _)| k == PLANTED_KIND));
        assert_eq!(events[10].0, OVERFLOW_KIND);
        assert_eq!(events[10].1["lines_not_taken"].as_u64(), Some(i - PENDING_LINES_MAX as u64));
        // Distinct lines: at most PENDING_EVENTS_MAX events, the rest counted.
        let many: String = (0..500).map(|i| format!("{{\"kind\":\"junk\",\"n\":{i}}}\n")).collect();
        std::fs::write(root.join(PENDING_AUDIT), many).unwrap();
        let events = pending_audit(root).unwrap().events;
        assert_eq!(events.len(), PENDING_EVENTS_MAX + 1);
        assert_eq!(events[PENDING_EVENTS_MAX].1["lines_not_taken"].as_u64(), Some(500 - PENDING_EVENTS_MAX as u64));
        // Genuine repeats (their times aside) are one event with a count and the last time.
        let repeats: String = (0..5)
            .map(|t| format!("{}\n", serde_json::json!({ "at": t, "kind": "tpm_unseal_failed", "key": "index.key" })))
            .collect();
        std::fs::write(root.join(PENDING_AUDIT), repeats).unwrap();
        let events = pending_audit(root).unwrap().events;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].1["count"], 5);
        assert_eq!(events[0].1["at"], 0);
        assert_eq!(events[0].1["last_at"], 4);
    }

    /// Red team `h-fix18g` (issue 18): the pending file was read, its events moved in, then the
    /// file removed: a genuine event `witness-keys` appended between the read and the removal
    /// (another process's key that would not unseal) was removed unread (seen on the old code).
    /// Now the file is moved aside first and only that is removed; a moved file an intake left
    /// (it stopped before removing it) is taken up by a later one.
    #[test]
    fn red18k_keys_an_event_appended_during_intake_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        pend(root, serde_json::json!({ "kind": "key_file_exposed", "key": "first" }));
        let taken = pending_audit(root).unwrap();
        assert_eq!(taken.events.len(), 1);
        // Appended by another process while this one moves the first into the audit log.
        pend(root, serde_json::json!({ "kind": "key_file_exposed", "key": "during" }));
        clear_pending_audit(&taken).unwrap();
        let next = pending_audit(root).unwrap();
        assert_eq!(next.events.len(), 1, "{:?}", next.events);
        assert_eq!(next.events[0].1["key"], "during");
        // An intake that stops before it removes what it moved: a fresh one is left to it, one
        // over a minute old is taken up (once) by the next.
        pend(root, serde_json::json!({ "kind": "key_file_exposed", "key": "left" }));
        let _ = pending_audit(root).unwrap();
        assert!(pending_audit(root).unwrap().events.is_empty(), "a fresh move is its intake's");
        let moved: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(PENDING_TAKEN))
            .map(|e| e.path())
            .collect();
        assert_eq!(moved.len(), 2, "{moved:?}");
        for (i, m) in moved.iter().enumerate() {
            std::fs::rename(m, root.join(format!("{PENDING_TAKEN}1000-1-{i}"))).unwrap();
        }
        let recovered = pending_audit(root).unwrap();
        let mut keys: Vec<_> = recovered.events.iter().map(|(_, e)| e["key"].as_str().unwrap().to_owned()).collect();
        keys.sort();
        assert_eq!(keys, ["during", "left"]);
        clear_pending_audit(&recovered).unwrap();
        assert!(pending_audit(root).unwrap().events.is_empty());
        assert!(std::fs::read_dir(root).unwrap().next().is_none(), "nothing left");
    }
}
