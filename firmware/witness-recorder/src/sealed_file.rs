//! An append-only recording file for binary streams (session video): each chunk is sealed as one
//! at-rest record and written at once; fsync runs inline on a cadence (the caller is an encoder
//! thread, never a relay). A crash leaves every whole record readable.

use crate::{Encryption, RecordError, Summary};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use witness_core::atrest;

/// Creates `path` (never overwriting), writes `first` and makes file and directory entry durable.
pub(crate) fn create_durable(path: &Path, first: &[u8]) -> Result<File, RecordError> {
    let create = || -> std::io::Result<File> {
        let mut file = File::options().create_new(true).append(true).open(path)?;
        file.write_all(first)?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?; // the new directory entry must survive a power cut too
        }
        Ok(file)
    };
    create().map_err(|e| RecordError::Create(e.to_string()))
}

pub struct SealedFile {
    file: File,
    sealer: atrest::Sealer,
    hash: Sha256,
    written: u64,
    fsync_interval: Duration,
    last_sync: Instant,
    start: Instant,
    /// Told what each fsync of the cadence made durable (noted outside the file, so recovery
    /// names a file later found shorter, or changed below that length).
    on_durable: Option<crate::OnDurable>,
}

impl std::fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedFile").field("written", &self.written).finish_non_exhaustive()
    }
}

impl SealedFile {
    /// Creates the file with its at-rest header line; nothing after it is ever in clear.
    pub fn create(path: &Path, encryption: Encryption, fsync_interval: Duration) -> Result<Self, RecordError> {
        let header = encryption.header.line();
        let file = create_durable(path, &header)?;
        let mut hash = Sha256::new();
        hash.update(&header);
        Ok(Self {
            file,
            sealer: atrest::Sealer::new(&encryption.header, &encryption.dek, encryption.nonce_prefix),
            hash,
            written: header.len() as u64,
            fsync_interval,
            last_sync: Instant::now(),
            start: Instant::now(),
            on_durable: None,
        })
    }

    /// Tells `f` what each fsync of the cadence made durable: the stored length and the SHA-256
    /// of the stored bytes up to it (see [`crate::OnDurable`]).
    pub fn on_durable(mut self, f: crate::OnDurable) -> Self {
        self.on_durable = Some(f);
        self
    }

    /// Seals and writes one chunk; fsyncs when the cadence is due.
    pub fn append(&mut self, chunk: &[u8]) -> Result<(), RecordError> {
        let record = self.sealer.seal(chunk);
        self.file.write_all(&record).map_err(|e| RecordError::Write(e.to_string()))?;
        self.hash.update(&record);
        self.written += record.len() as u64;
        if self.last_sync.elapsed() >= self.fsync_interval {
            self.file.sync_data().map_err(|e| RecordError::Write(format!("fsync: {e}")))?;
            self.last_sync = Instant::now();
            if let Some(tell) = &self.on_durable {
                tell(self.written, &hex::encode(self.hash.clone().finalize()));
            }
        }
        Ok(())
    }

    /// Makes everything durable and returns the file's size and hash.
    pub fn finish(self) -> Result<Summary, RecordError> {
        self.file.sync_all().map_err(|e| RecordError::Write(format!("fsync: {e}")))?;
        Ok(Summary {
            bytes: self.written,
            sha256: hex::encode(self.hash.finalize()),
            duration: self.start.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_sealed_and_read_back_whole_after_a_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        let dek = [3u8; 32];
        let kek = [9u8; 32];
        let header = atrest::Header::new(atrest::Cipher::preferred(), "r1", "k1", atrest::wrap(&kek, &dek, [1u8; 24]));
        let mut f =
            SealedFile::create(&path, Encryption { header, dek, nonce_prefix: [2u8; 16] }, Duration::ZERO).unwrap();
        f.append(b"ftyp-and-moov").unwrap();
        f.append(b"moof-mdat-one").unwrap();
        let summary = f.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(summary.bytes, bytes.len() as u64);
        assert!(!bytes.windows(8).any(|w| w == b"moof-mda"), "nothing in clear");
        let key_for = |h: &atrest::Header| atrest::unwrap(&kek, h).ok();
        assert_eq!(crate::plaintext(&bytes, &key_for).unwrap(), b"ftyp-and-moovmoof-mdat-one");
        // A cut in the last record: the whole ones stay readable.
        let cut = &bytes[..bytes.len() - 5];
        assert_eq!(crate::readable(cut, &key_for).unwrap(), b"ftyp-and-moov");
    }

    /// Issue 18 (`h-fix18g`, hole 7 of red team h-red18e for video): the video writer noted
    /// nothing of what it made durable, so a video cut at a record boundary after a crash was
    /// sealed as a plain crash. Now each fsync tells what it made durable: the stored length
    /// and the SHA-256 of the file up to it.
    #[test]
    fn each_fsync_tells_what_it_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.mp4");
        let header = atrest::Header::new(
            atrest::Cipher::preferred(),
            "r1",
            "k1",
            atrest::wrap(&[9u8; 32], &[3u8; 32], [1u8; 24]),
        );
        let noted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let n = noted.clone();
        let mut f =
            SealedFile::create(&path, Encryption { header, dek: [3u8; 32], nonce_prefix: [2u8; 16] }, Duration::ZERO)
                .unwrap()
                .on_durable(std::sync::Arc::new(move |bytes: u64, sha: &str| {
                    n.lock().unwrap().push((bytes, sha.to_owned()))
                }));
        f.append(b"ftyp-and-moov").unwrap();
        f.append(b"moof-mdat-one").unwrap();
        let summary = f.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let noted = noted.lock().unwrap().clone();
        assert_eq!(noted.len(), 2, "{noted:?}");
        let (last, sha) = noted.last().unwrap();
        assert_eq!(*last, summary.bytes);
        assert_eq!(*sha, summary.sha256);
        let (first, sha) = &noted[0];
        assert!(*first < *last);
        assert_eq!(*sha, hex::encode(Sha256::digest(&bytes[..*first as usize])));
    }
}
