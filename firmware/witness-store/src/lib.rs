//! Where recordings go after the box. One [`Store`] over a destination — a local or NFS folder,
//! S3/MinIO, or an Azure Blob container through a SAS URL — with the few operations the
//! uploader needs: put a file (multipart/blocks for large ones, resumable from recorded
//! progress), verify the remote copy against the recording's SHA-256, put and get small
//! objects (manifests), list keys. This crate owns every store client; nothing else speaks
//! S3 or Azure. Secrets never appear in [`Store::describe`], errors or logs.

mod azure;
mod digests;
mod dir;
mod s3;
mod sigv4;

pub use digests::{PartDigests, PartTee};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A destination as configured (`store.toml`, 0600 in the data dir).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Destination {
    Dir {
        path: PathBuf,
    },
    S3 {
        endpoint: String,
        bucket: String,
        region: Option<String>,
        #[serde(default)]
        prefix: String,
        access_key_id: String,
        secret_key: String,
        /// S3 Object Lock: every object is written with this retention (the bucket must have
        /// been created with object lock enabled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object_lock: Option<ObjectLock>,
    },
    Azure {
        sas_url: String,
    },
}

/// S3 Object Lock retention mode: GOVERNANCE can be lifted by a privileged user, COMPLIANCE by
/// no one until it ends.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }
}

impl std::str::FromStr for LockMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Ok(LockMode::Governance),
            "COMPLIANCE" => Ok(LockMode::Compliance),
            _ => Err(StoreError::Config(format!("object lock mode {s:?} is not GOVERNANCE or COMPLIANCE"))),
        }
    }
}

/// The retention every uploaded object gets: `mode` until `days` after its upload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

impl ObjectLock {
    /// The `x-amz-object-lock-retain-until-date` for an object written at `now` (ISO 8601, UTC).
    pub fn retain_until(&self, now: std::time::SystemTime) -> String {
        let secs = now.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let until = secs + u64::from(self.days) * 86_400;
        let (days, rem) = (until / 86_400, until % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Destination {
    /// A name for logs and status: never a secret.
    pub fn describe(&self) -> String {
        match self {
            Destination::Dir { path } => format!("dir:{}", path.display()),
            Destination::S3 { endpoint, bucket, prefix, .. } => {
                format!("s3:{}/{bucket}/{prefix}", endpoint.trim_end_matches('/'))
            }
            Destination::Azure { sas_url } => format!("azure:{}", redact_url(sas_url)),
        }
    }

    /// The network endpoints (host name or address, port) the store's client connects to, for
    /// the box's egress firewall: never a secret. A folder has none.
    pub fn endpoints(&self) -> Result<Vec<(String, u16)>> {
        match self {
            Destination::Dir { .. } => Ok(Vec::new()),
            Destination::S3 { endpoint, bucket, region, .. } => s3::endpoints(endpoint, bucket, region.as_deref()),
            Destination::Azure { sas_url } => Ok(vec![azure::endpoint(sas_url)?]),
        }
    }
}

/// Drops the query string (a SAS token's `sig=` lives there) from a URL.
pub fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?<redacted>"),
        None => url.to_owned(),
    }
}

/// What a store key may do, as [`Store::check`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// Writes, and reads back (playback, `index rebuild`, verification after a lost receipt).
    ReadWrite,
    /// Writes only: uploads are verified by the server's answers; reading back needs the
    /// separate read credentials.
    WriteOnly,
}

impl KeyAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "read-write",
            Self::WriteOnly => "write-only",
        }
    }

    /// What it means for the operator, one line.
    pub fn explain(self) -> &'static str {
        match self {
            Self::ReadWrite => "writes recordings and can read them back",
            Self::WriteOnly => {
                "writes recordings (verified by the store on arrival) but cannot read, list or look at them: \
                 playback of pruned recordings and `index rebuild` need `store set-read`"
            }
        }
    }
}

/// What the store answered when an upload arrived: the checksum it computed and checked (one
/// PUT) or the ETag of the completed object (multipart). Verification needs nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    /// `x-amz-checksum-sha256` of a single PUT, base64.
    pub sha256_b64: Option<String>,
    /// The object's ETag, without quotes.
    pub etag: Option<String>,
}

/// What went wrong, sorted by what the operator should do about it.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store did not answer: the site is offline; keep recording, retry later.
    #[error("store unreachable: {0}")]
    Unreachable(String),
    /// Credentials refused or expired.
    #[error("store refused the credentials: {0}")]
    Denied(String),
    #[error("bucket or container not found: {0}")]
    NoBucket(String),
    /// Object lock is configured but the bucket cannot lock objects.
    #[error(
        "bucket {bucket:?} has no object lock configuration ({detail}); create the bucket with object lock enabled, or set the store again without --object-lock-mode"
    )]
    NoObjectLock { bucket: String, detail: String },
    #[error("object not found: {0}")]
    NotFound(String),
    /// The remote copy is not the recording.
    #[error("remote copy of {key} does not match: {detail}")]
    Mismatch { key: String, detail: String },
    #[error("reading the local recording: {0}")]
    Local(#[source] std::io::Error),
    /// The local file's length is not the one sealed: not uploaded, the local copy kept.
    #[error("the local copy {path} is {now} bytes but was sealed at {sealed}: {CHANGED_SINCE_SEALING}; not uploaded")]
    ChangedSinceSealing { path: String, now: u64, sealed: u64 },
    /// The local file's bytes, hashed before they are sent (sealing's part digests did not fit,
    /// or the file was found changed before) or after the store refused a part of them, are not
    /// the sealed SHA-256: not uploaded (nothing sent, or the upload not completed), the local
    /// copy kept.
    #[error(
        "the local copy {path} hashes to sha256 {now}, but was sealed as {sealed}: {CHANGED_SINCE_SEALING}; not uploaded"
    )]
    ContentChangedSinceSealing { path: String, now: String, sealed: String },
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("store error: {0}")]
    Other(String),
}

/// What every refusal of a local copy that is not the sealed recording says.
pub const CHANGED_SINCE_SEALING: &str = "changed since it was sealed";

/// Whether an upload's last error (as kept) said its local copy is not the sealed recording:
/// the next attempt then hashes the file before sending anything ([`Checksums::check_first`]).
pub fn said_changed_since_sealing(error: &str) -> bool {
    error.contains(CHANGED_SINCE_SEALING)
}

impl StoreError {
    /// Whether the local copy is not the sealed recording (its length or its bytes).
    pub fn changed_since_sealing(&self) -> bool {
        matches!(self, StoreError::ChangedSinceSealing { .. } | StoreError::ContentChangedSinceSealing { .. })
    }

    /// `offline` when the store could not be reached, `failing` when it answered with an error.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unreachable(_) => "offline",
            _ => "failing",
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One finished part of a multipart upload (S3 part / Azure block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: u32,
    pub etag: String,
    pub size: u64,
}

/// Where a resumable upload stands; the uploader persists it after every part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub upload_id: Option<String>,
    pub parts: Vec<Part>,
}

/// Receives progress so it can be made durable (and counted) as the upload goes.
pub trait Progress: Send {
    /// A part finished; `resume` is the whole state to persist.
    fn part_done(&mut self, resume: &Resume);
    /// Bytes sent (for progress output and the bench).
    fn sent(&mut self, bytes: u64);
}

/// What sealing computed of a stored recording, sent along with it so nothing is hashed again.
#[derive(Debug, Clone, Copy)]
pub struct Checksums<'a> {
    /// The file's length when it was sealed: a file of another length is refused, never sent.
    pub size: u64,
    /// The file's SHA-256, hex.
    pub sha256: &'a str,
    /// Its parts' MD5s, when sealing computed them.
    pub parts: Option<&'a PartDigests>,
    /// Hash the file against `sha256` before anything is sent, even where `parts` fit: the last
    /// attempt found it changed since sealing (it is refused again at once, not sent again).
    pub check_first: bool,
}

/// One file upload as the backends see it.
pub(crate) struct FileUpload<'a> {
    pub key: &'a str,
    pub path: &'a Path,
    pub sha256: &'a str,
    /// The file's sealed length, checked against the file before anything is sent.
    pub size: u64,
    /// The parts' MD5s at `part_size`: sealing's, or taken from the file just now by
    /// [`sealed_digests`] (which found it to be the sealed SHA-256).
    pub digests: &'a PartDigests,
    pub part_size: u64,
    pub throttle: &'a Throttle,
    pub legal_hold: bool,
}

/// Tuning shared by every backend.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Files at or above this size go up in parts of this size.
    pub part_size: u64,
    /// Upload cap in bytes per second for all uploads of this store together (0: none).
    pub bandwidth: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self { part_size: 16 * 1024 * 1024, bandwidth: 0 }
    }
}

/// Keeps the average upload rate of a store under its cap, across concurrent uploads.
#[derive(Debug)]
pub(crate) struct Throttle {
    rate: u64,
    state: std::sync::Mutex<(std::time::Instant, u64)>,
}

impl Throttle {
    fn new(rate: u64) -> Self {
        Self { rate, state: std::sync::Mutex::new((std::time::Instant::now(), 0)) }
    }

    /// Accounts for `bytes` just sent and sleeps off any lead over the allowed rate.
    pub(crate) async fn sent(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            // An idle link does not bank credit for a later burst.
            let allowed = st.0.elapsed().as_secs_f64() * self.rate as f64;
            if (st.1 as f64) < allowed - self.rate as f64 {
                *st = (std::time::Instant::now(), 0);
            }
            st.1 += bytes;
            let allowed = st.0.elapsed().as_secs_f64() * self.rate as f64;
            (st.1 as f64 - allowed) / self.rate as f64
        };
        if wait > 0.0 {
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
        }
    }
}

enum Backend {
    Dir(dir::DirStore),
    S3(s3::S3Store),
    Azure(azure::AzureStore),
}

/// An opened destination.
pub struct Store {
    backend: Backend,
    describe: String,
    tuning: Tuning,
    throttle: Throttle,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl Store {
    pub fn open(dest: &Destination, tuning: Tuning) -> Result<Self> {
        let backend = match dest {
            Destination::Dir { path } => Backend::Dir(dir::DirStore::new(path.clone())),
            Destination::S3 { endpoint, bucket, region, prefix, access_key_id, secret_key, object_lock } => {
                Backend::S3(s3::S3Store::new(
                    endpoint,
                    bucket,
                    region.as_deref(),
                    prefix,
                    (access_key_id, secret_key),
                    *object_lock,
                )?)
            }
            Destination::Azure { sas_url } => Backend::Azure(azure::AzureStore::new(sas_url)?),
        };
        Ok(Self { backend, describe: dest.describe(), tuning, throttle: Throttle::new(tuning.bandwidth) })
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Checks that the destination answers and accepts our credentials, and says what they may
    /// do: a write-only key (the recorder's least privilege) passes as [`KeyAccess::WriteOnly`].
    pub async fn check(&self) -> Result<KeyAccess> {
        match &self.backend {
            Backend::Dir(d) => d.check().await.map(|()| KeyAccess::ReadWrite),
            Backend::S3(s) => s.check().await,
            Backend::Azure(a) => a.check().await,
        }
    }

    /// Uploads `path` (with its checksums from sealing) as `key`, resuming from `resume`.
    /// Nothing is hashed again where those checksums fit: they go to the server, which checks
    /// them on arrival. Does not verify: call [`Store::verify`] with the final part list and the receipt this returns.
    /// `legal_hold` puts an S3 Object Lock legal hold on the object where object lock is
    /// configured.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        sums: Checksums<'_>,
        resume: Resume,
        legal_hold: bool,
        progress: &mut dyn Progress,
    ) -> Result<Option<Receipt>> {
        let Checksums { size, sha256, parts: digests, check_first } = sums;
        // A file whose length changed since it was sealed is not the sealed recording: the
        // fallback path (no digests fit it) would hash and send what is there now, and the
        // store's answer would match what the box itself just hashed.
        let now = tokio::fs::metadata(path).await.map_err(StoreError::Local)?.len();
        if now != size {
            return Err(StoreError::ChangedSinceSealing { path: path.display().to_string(), now, sealed: size });
        }
        let part_size = self.tuning.part_size;
        let fitting = digests.filter(|d| d.fits(part_size, size));
        // Without sealing's part digests (sealed before them, or `part_size` changed since), or
        // with a file found changed at the last attempt, the file is hashed first, streamed: one
        // that is not the sealed SHA-256 is refused before a byte is sent (it used to be sent
        // whole at every retry, then refused), and one that is gives the part digests to send.
        let computed = match (&self.backend, fitting) {
            (Backend::Dir(_), _) if !check_first => None,
            (_, Some(_)) if !check_first => None,
            _ => Some(sealed_digests(path, size, sha256, part_size).await?),
        };
        let result = match &self.backend {
            Backend::Dir(d) => d.put_file(key, path, (size, sha256), progress, &self.throttle).await.map(|()| None),
            Backend::S3(_) | Backend::Azure(_) => {
                let Some(digests) = computed.as_ref().or(fitting) else {
                    unreachable!("the digests are taken above where sealing's do not fit")
                };
                let up =
                    FileUpload { key, path, sha256, size, digests, part_size, throttle: &self.throttle, legal_hold };
                match &self.backend {
                    Backend::S3(s) => s.put_file(&up, resume, progress).await.map(Some),
                    Backend::Azure(a) => a.put_file(&up, resume, progress).await.map(Some),
                    Backend::Dir(_) => unreachable!("a folder is written above"),
                }
            }
        };
        match result {
            // Refused on arrival: the bytes were not the sealed ones on the way, or not on the
            // disk. The file says which (hashed, streamed): a change on the box is named as one.
            Err(e @ StoreError::Mismatch { .. }) => match sealed_digests(path, size, sha256, part_size).await {
                Err(changed) if changed.changed_since_sealing() => Err(changed),
                _ => Err(e),
            },
            other => other,
        }
    }

    /// The object lock every write gets, when configured (S3 only).
    pub fn object_lock(&self) -> Option<ObjectLock> {
        match &self.backend {
            Backend::S3(s) => s.lock,
            _ => None,
        }
    }

    /// Deletes `key`; an object already gone is not an error. With S3 Object Lock on a
    /// versioned bucket this adds a delete marker: the locked version stays until its
    /// retention ends.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let done = match &self.backend {
            Backend::Dir(d) => d.delete(key).await,
            Backend::S3(s) => s.delete(key).await,
            Backend::Azure(a) => a.delete(key).await,
        };
        match done {
            Err(StoreError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Sets or lifts the S3 Object Lock legal hold of `key`. `Ok(false)`: this store has no
    /// object lock, nothing to do remotely (the box's own hold still keeps the recording).
    pub async fn set_legal_hold(&self, key: &str, on: bool) -> Result<bool> {
        match &self.backend {
            Backend::S3(s) if s.lock.is_some() => s.set_legal_hold(key, on).await.map(|()| true),
            _ => Ok(false),
        }
    }

    /// Checks that `key` holds exactly `size` bytes with SHA-256 `sha256`; `parts` is the part
    /// list of a multipart upload (empty for a single PUT). With the upload's `receipt` (what the
    /// server answered on arrival, S3) nothing is read back, so a write-only key suffices.
    pub async fn verify(
        &self,
        key: &str,
        size: u64,
        sha256: &str,
        parts: &[Part],
        receipt: Option<&Receipt>,
    ) -> Result<()> {
        match &self.backend {
            Backend::Dir(d) => d.verify(key, size, sha256).await,
            Backend::S3(s) => s.verify(key, size, sha256, parts, receipt).await,
            Backend::Azure(a) => a.verify(key, size, sha256, parts, receipt).await,
        }
    }

    /// Writes a small object (a manifest); `legal_hold` as for [`Store::put_file`].
    pub async fn put_bytes(&self, key: &str, data: Vec<u8>, legal_hold: bool) -> Result<()> {
        match &self.backend {
            Backend::Dir(d) => d.put_bytes(key, data).await,
            Backend::S3(s) => s.put_bytes(key, data, legal_hold).await,
            Backend::Azure(a) => a.put_bytes(key, data).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::Dir(d) => d.get(key).await,
            Backend::S3(s) => s.get(key).await,
            Backend::Azure(a) => a.get(key).await,
        }
    }

    /// A small object whole, or `None` when it holds more than `max` bytes (read no further than
    /// that): for objects that are small when genuine (audit checkpoints) under names others
    /// may write to.
    pub async fn get_small(&self, key: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Dir(d) => d.get_small(key, max).await,
            Backend::S3(s) => s.get_small(key, max).await,
            Backend::Azure(a) => a.get_small(key, max).await,
        }
    }

    /// `len` bytes of `key` from `offset` (fewer at its end): for reading a large object a
    /// window at a time instead of whole.
    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        match &self.backend {
            Backend::Dir(d) => d.get_range(key, offset, len).await,
            Backend::S3(s) => s.get_range(key, offset, len).await,
            Backend::Azure(a) => a.get_range(key, offset, len).await,
        }
    }

    /// Keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Dir(d) => d.list(prefix).await,
            Backend::S3(s) => s.list(prefix).await,
            Backend::Azure(a) => a.list(prefix).await,
        }
    }
}

/// SHA-256 of a file, read off the async threads.
pub async fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(StoreError::Local)?;
        sha256_read(&mut f, |_| Ok(()))
    })
    .await
    .map_err(|e| StoreError::Other(e.to_string()))?
}

/// The length and SHA-256 (hex) of what `r` gives to its end, read 1 MiB at a time; `each`
/// sees every piece as it is hashed (a copy, a tee). Blocking.
pub(crate) fn sha256_read(
    r: &mut impl std::io::Read,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<(u64, String)> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).map_err(StoreError::Local)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        each(&buf[..k])?;
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Pieces a streamed request body is read in.
const BODY_PIECE: usize = 256 * 1024;

/// `len` bytes at `offset` of a file as a request body, read a piece at a time as it is sent:
/// an upload part whose checksum is known already (from sealing) costs a piece of memory, not
/// the part (three uploads with two 16 MiB parts in flight each held 96 MiB).
pub(crate) async fn range_body(path: &Path, offset: u64, len: u64) -> Result<reqwest::Body> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await.map_err(StoreError::Local)?;
    f.seek(std::io::SeekFrom::Start(offset)).await.map_err(StoreError::Local)?;
    let pieces = futures_util::stream::unfold((f, len), |(mut f, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; BODY_PIECE.min(usize::try_from(left).unwrap_or(BODY_PIECE))];
        match f.read_exact(&mut buf).await {
            Ok(_) => {
                let n = buf.len() as u64;
                Some((Ok(bytes::Bytes::from(buf)), (f, left - n)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    Ok(reqwest::Body::wrap_stream(pieces))
}

/// The MD5 of `len` bytes at `offset` of a file, read a piece at a time off the async threads:
/// whether a part the store answered with another ETag is changed on the box or was on the way.
pub(crate) async fn range_md5(path: &Path, offset: u64, len: u64) -> Result<[u8; 16]> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use md5::Digest;
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&path).map_err(StoreError::Local)?;
        f.seek(SeekFrom::Start(offset)).map_err(StoreError::Local)?;
        let mut f = f.take(len);
        let mut h = md5::Md5::new();
        let mut buf = vec![0u8; BODY_PIECE];
        loop {
            let k = f.read(&mut buf).map_err(StoreError::Local)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
        }
        Ok(h.finalize().into())
    })
    .await
    .map_err(|e| StoreError::Other(e.to_string()))?
}

/// The part digests of a file at `part_size`, taken from the file (read a piece at a time, its
/// sealed length and no further) together with its SHA-256, which must be the sealed one:
/// otherwise [`StoreError::ContentChangedSinceSealing`] (or [`StoreError::ChangedSinceSealing`]
/// when it is shorter now), before anything is sent.
pub async fn sealed_digests(path: &Path, size: u64, sha256: &str, part_size: u64) -> Result<PartDigests> {
    let (path, sealed) = (path.to_owned(), sha256.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let f = std::fs::File::open(&path).map_err(StoreError::Local)?;
        let mut tee = PartTee::new(f.take(size), part_size);
        let (n, now) = sha256_read(&mut tee, |_| Ok(()))?;
        if n != size {
            return Err(StoreError::ChangedSinceSealing { path: path.display().to_string(), now: n, sealed: size });
        }
        if !now.eq_ignore_ascii_case(&sealed) {
            return Err(StoreError::ContentChangedSinceSealing { path: path.display().to_string(), now, sealed });
        }
        Ok(tee.digests())
    })
    .await
    .map_err(|e| StoreError::Other(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_hashed_against_its_sealed_sha256_before_anything_is_sent() {
        use sha2::Digest;
        let tmp = tempfile_dir("sealed-digests");
        let file: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let src = tmp.join("rec.cast");
        std::fs::write(&src, &file).unwrap();
        let sealed = hex::encode(sha2::Sha256::digest(&file));
        let d = sealed_digests(&src, 10_000, &sealed, 3000).await.unwrap();
        let want: Vec<[u8; 16]> = file.chunks(3000).map(|c| md5::Md5::digest(c).into()).collect();
        assert_eq!(d.md5, want);
        assert!(d.fits(3000, 10_000));
        // One byte changed in place, the length kept: refused, naming both hashes.
        let mut changed = file.clone();
        changed[7000] ^= 1;
        std::fs::write(&src, &changed).unwrap();
        let e = sealed_digests(&src, 10_000, &sealed, 3000).await.unwrap_err();
        assert!(matches!(&e, StoreError::ContentChangedSinceSealing { sealed: s, .. } if *s == sealed), "{e}");
        assert!(e.changed_since_sealing() && said_changed_since_sealing(&e.to_string()), "{e}");
        // Read to its sealed length and no further; shorter is a change of length.
        std::fs::write(&src, [&file[..], b"more"].concat()).unwrap();
        assert!(sealed_digests(&src, 10_000, &sealed, 3000).await.is_ok());
        std::fs::write(&src, &file[..9000]).unwrap();
        let e = sealed_digests(&src, 10_000, &sealed, 3000).await.unwrap_err();
        assert!(matches!(e, StoreError::ChangedSinceSealing { now: 9000, sealed: 10_000, .. }), "{e}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    fn tempfile_dir(what: &str) -> PathBuf {
        let tmp = std::env::temp_dir().join(format!("witness-store-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        tmp
    }

    /// Counts what a folder store was sent.
    #[derive(Default)]
    struct Counted(u64);
    impl Progress for Counted {
        fn part_done(&mut self, _: &Resume) {}
        fn sent(&mut self, n: u64) {
            self.0 += n;
        }
    }

    #[tokio::test]
    async fn a_folder_store_takes_no_changed_copy_and_one_found_changed_is_refused_before_it_is_read_out() {
        use sha2::Digest;
        let tmp = tempfile_dir("dir-changed");
        let store = Store::open(&Destination::Dir { path: tmp.join("store") }, Tuning::default()).unwrap();
        let file = vec![9u8; 100_000];
        let sealed = hex::encode(sha2::Sha256::digest(&file));
        let src = tmp.join("rec.cast");
        let mut changed = file.clone();
        changed[500] = 1;
        std::fs::write(&src, &changed).unwrap();
        for check_first in [false, true] {
            let sums = Checksums { size: 100_000, sha256: &sealed, parts: None, check_first };
            let mut sent = Counted::default();
            let e = store.put_file("box/rec.cast", &src, sums, Resume::default(), false, &mut sent).await.unwrap_err();
            assert!(matches!(e, StoreError::ContentChangedSinceSealing { .. }), "{e}");
            assert_eq!(sent.0, 0, "nothing counted as sent");
            assert!(store.list("box/").await.unwrap().is_empty(), "nothing stored, not even a temporary name");
        }
        std::fs::write(&src, &file).unwrap();
        let sums = Checksums { size: 100_000, sha256: &sealed, parts: None, check_first: true };
        store.put_file("box/rec.cast", &src, sums, Resume::default(), false, &mut Counted::default()).await.unwrap();
        store.verify("box/rec.cast", 100_000, &sealed, &[], None).await.unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn descriptions_hide_secrets() {
        let az = Destination::Azure { sas_url: "https://a.blob.core.windows.net/rec?sv=2022&sig=SECRET".into() };
        assert_eq!(az.describe(), "azure:https://a.blob.core.windows.net/rec?<redacted>");
        let s3 = Destination::S3 {
            endpoint: "http://minio:9000/".into(),
            bucket: "rec".into(),
            region: None,
            prefix: "site1/".into(),
            access_key_id: "AK".into(),
            secret_key: "SECRET".into(),
            object_lock: None,
        };
        assert!(!format!("{s3:?}").contains("SECRET"));
        assert_eq!(s3.describe(), "s3:http://minio:9000/rec/site1/");
    }

    fn s3(endpoint: &str, bucket: &str, region: Option<&str>) -> Destination {
        Destination::S3 {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: region.map(Into::into),
            prefix: String::new(),
            access_key_id: "AK".into(),
            secret_key: "SECRET".into(),
            object_lock: None,
        }
    }

    #[test]
    fn endpoints_are_where_the_clients_connect() {
        let ep = |d: Destination| d.endpoints().unwrap();
        assert_eq!(ep(s3("http://minio:9000/", "rec", None)), [("minio".to_owned(), 9000)]);
        assert_eq!(ep(s3("https://10.0.0.5", "rec", None)), [("10.0.0.5".to_owned(), 443)]);
        assert_eq!(ep(s3("http://[fd00::5]", "rec", None)), [("fd00::5".to_owned(), 80)]);
        // AWS: the bucket goes into the host name; GetBucketLocation uses the regional host.
        assert_eq!(
            ep(s3("https://s3.amazonaws.com", "rec", Some("eu-west-1"))),
            [("rec.s3.eu-west-1.amazonaws.com".to_owned(), 443), ("s3.eu-west-1.amazonaws.com".to_owned(), 443)]
        );
        let az = Destination::Azure { sas_url: "https://acct.blob.core.windows.net/rec?sv=2022&sig=SECRET".into() };
        assert_eq!(ep(az), [("acct.blob.core.windows.net".to_owned(), 443)]);
        let azurite = Destination::Azure { sas_url: "http://127.0.0.1:10000/devstoreaccount1/rec?sig=S".into() };
        assert_eq!(ep(azurite), [("127.0.0.1".to_owned(), 10000)]);
        assert!(ep(Destination::Dir { path: "/srv/rec".into() }).is_empty());
        assert!(s3("ftp://minio", "rec", None).endpoints().is_err());
    }

    #[test]
    fn retain_until_is_days_after_the_upload_in_utc() {
        let lock = ObjectLock { mode: LockMode::Compliance, days: 30 };
        // 2026-11-23T12:34:56Z
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_437_296);
        assert_eq!(lock.retain_until(at), "2026-12-23T12:34:56.000Z");
        let leap = ObjectLock { mode: LockMode::Governance, days: 1 };
        // 2028-02-28T00:00:00Z: the next day is the 29th.
        assert_eq!(
            leap.retain_until(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_835_308_800)),
            "2028-02-29T00:00:00.000Z"
        );
        assert_eq!("governance".parse::<LockMode>().unwrap(), LockMode::Governance);
        assert!("strict".parse::<LockMode>().is_err());
    }

    #[test]
    fn object_lock_round_trips_through_store_toml() {
        let text = "kind = \"s3\"\nendpoint = \"http://s3:9000\"\nbucket = \"rec\"\naccess_key_id = \"AK\"\nsecret_key = \"SK\"\n[object_lock]\nmode = \"COMPLIANCE\"\ndays = 90\n";
        let d: Destination = toml::from_str(text).unwrap();
        let Destination::S3 { object_lock, .. } = &d else { panic!("{d:?}") };
        assert_eq!(*object_lock, Some(ObjectLock { mode: LockMode::Compliance, days: 90 }));
        assert_eq!(toml::from_str::<Destination>(&toml::to_string(&d).unwrap()).unwrap(), d);
    }

    struct Quiet;
    impl Progress for Quiet {
        fn part_done(&mut self, _: &Resume) {}
        fn sent(&mut self, _: u64) {}
    }

    #[tokio::test]
    async fn a_small_read_stops_past_its_limit_and_a_file_not_its_sealed_length_is_not_sent() {
        let tmp = std::env::temp_dir().join(format!("witness-store-small-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let store =
            Store::open(&Destination::Dir { path: tmp.join("store") }, Tuning { part_size: 1 << 20, bandwidth: 0 })
                .unwrap();
        store.put_bytes("box/audit-checkpoints/small.json", vec![7; 100], false).await.unwrap();
        store.put_bytes("box/audit-checkpoints/big.json", vec![7; 200_000], false).await.unwrap();
        assert_eq!(store.get_small("box/audit-checkpoints/small.json", 100).await.unwrap(), Some(vec![7; 100]));
        assert_eq!(store.get_small("box/audit-checkpoints/small.json", 99).await.unwrap(), None);
        assert_eq!(store.get_small("box/audit-checkpoints/big.json", 64 * 1024).await.unwrap(), None);
        assert!(matches!(store.get_small("box/nope", 10).await, Err(StoreError::NotFound(_))));
        // A recording sealed at 5 bytes that is 9 now: refused, nothing stored.
        let src = tmp.join("r1.cast");
        std::fs::write(&src, b"hello, more").unwrap();
        let sha = sha256_file(&src).await.unwrap().1;
        let sums = Checksums { size: 5, sha256: &sha, parts: None, check_first: false };
        let sent = store.put_file("box/r1.cast", &src, sums, Resume::default(), false, &mut Quiet).await;
        assert!(matches!(sent, Err(StoreError::ChangedSinceSealing { now: 11, sealed: 5, .. })), "{sent:?}");
        assert!(sent.unwrap_err().to_string().contains("changed since it was sealed"));
        assert!(!store.list("box/").await.unwrap().contains(&"box/r1.cast".to_owned()));
        let sums = Checksums { size: 11, sha256: &sha, parts: None, check_first: false };
        store.put_file("box/r1.cast", &src, sums, Resume::default(), false, &mut Quiet).await.unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
