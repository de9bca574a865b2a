//! The SSH recording writer (`witness-raw/1` frames: the bytes as they crossed the box, nothing
//! escaped or replaced). Every event is encoded and written to the file by the caller, before the
//! caller forwards the bytes to the user: the recording is never behind the user's screen, and a
//! failed write stops the session at the event that failed. fsync runs off the async threads on a
//! cadence, so a crash loses at most one fsync interval of what the page cache held.

use crate::RecordError;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use witness_core::atrest::{self, Encryption};
use witness_core::cast::Header;
use witness_core::rawrec::{self, Stream};

/// How often written data is made durable.
#[derive(Debug, Clone, Copy)]
pub struct RecorderSettings {
    /// Longest time written data may stay only in the page cache before fsync.
    pub fsync_interval: Duration,
}

/// What a finished recording is.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub bytes: u64,
    pub sha256: String,
    /// Seconds from the header to the last event.
    pub duration: f64,
}

struct State {
    file: File,
    sealer: Option<atrest::Sealer>,
    hash: Sha256,
    written: u64,
    /// The next write: with a sealer, room for the record's head ([`atrest::RECORD_HEAD`] bytes)
    /// and then the encoded events, sealed in place.
    buf: Vec<u8>,
    head: usize,
    start: Instant,
    /// Microseconds since the header of the last event.
    last_micros: u64,
    failure: Option<RecordError>,
    finished: bool,
}

/// Told, after each fsync of the cadence, the stored length and SHA-256 (hex) of what that
/// fsync made durable: noted outside the file (the index), so a file later found shorter than
/// what was durable is known to have lost records after they were written.
pub type OnDurable = Arc<dyn Fn(u64, &str) + Send + Sync>;

struct Shared {
    on_durable: Mutex<Option<OnDurable>>,
    state: Mutex<State>,
    sync_pending: AtomicBool,
    settings: RecorderSettings,
    path: PathBuf,
}

/// A handle on a running cast recording. Clones feed the same file.
#[derive(Clone)]
pub struct CastRecorder {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CastRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CastRecorder").field("path", &self.shared.path).finish()
    }
}

/// Creates the recording file (refusing to overwrite one) and writes and fsyncs its header,
/// marked as `witness-raw/1`. With `encryption`, nothing but the at-rest header is ever written
/// in clear.
pub fn start_cast(
    path: &Path,
    header: &Header,
    settings: RecorderSettings,
    encryption: Option<Encryption>,
) -> Result<CastRecorder, RecordError> {
    let header = &rawrec::header(header.clone());
    let mut sealer = encryption.as_ref().map(|e| atrest::Sealer::new(&e.header, &e.dek, e.nonce_prefix));
    let mut line = encryption.as_ref().map(|e| e.header.line()).unwrap_or_default();
    match sealer.as_mut() {
        Some(s) => line.extend(s.seal(&header.to_line())),
        None => line.extend(header.to_line()),
    }
    let file = crate::sealed_file::create_durable(path, &line)?;
    Ok(CastRecorder::from_file(file, &line, settings, path, sealer))
}

impl CastRecorder {
    fn from_file(
        file: File,
        header_line: &[u8],
        settings: RecorderSettings,
        path: &Path,
        sealer: Option<atrest::Sealer>,
    ) -> Self {
        let mut hash = Sha256::new();
        hash.update(header_line);
        let head = if sealer.is_some() { atrest::RECORD_HEAD } else { 0 };
        let mut buf = Vec::with_capacity(4096);
        buf.resize(head, 0);
        let state = State {
            file,
            sealer,
            hash,
            written: header_line.len() as u64,
            buf,
            head,
            start: Instant::now(),
            last_micros: 0,
            failure: None,
            finished: false,
        };
        let shared = Shared {
            on_durable: Mutex::new(None),
            state: Mutex::new(state),
            sync_pending: AtomicBool::new(false),
            settings,
            path: path.to_owned(),
        };
        Self { shared: Arc::new(shared) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encodes one event and writes it out; schedules an fsync if none is pending.
    fn event(&self, stream: Stream, data: &[u8]) -> Result<(), RecordError> {
        {
            let mut st = self.state();
            if let Some(e) = &st.failure {
                return Err(e.clone());
            }
            if st.finished {
                return Err(RecordError::Write("recording already finished".into()));
            }
            // Never go backwards: players expect non-decreasing times.
            let t = (st.start.elapsed().as_micros() as u64).max(st.last_micros);
            st.last_micros = t;
            rawrec::encode(&mut st.buf, stream, t, data);
            st.write_out()?;
        }
        self.schedule_sync();
        Ok(())
    }

    fn schedule_sync(&self) {
        if self.shared.sync_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.shared.sync_pending.store(false, Ordering::Release);
            return;
        };
        let shared = self.shared.clone();
        handle.spawn(async move {
            tokio::time::sleep(shared.settings.fsync_interval).await;
            shared.sync_pending.store(false, Ordering::Release);
            // What was written before the fsync is what it makes durable.
            let (file, written, sha) = {
                let st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                if st.finished {
                    return;
                }
                (st.file.try_clone(), st.written, hex::encode(st.hash.clone().finalize()))
            };
            let tell = shared.on_durable.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let result = match file {
                Ok(file) => tokio::task::spawn_blocking(move || {
                    file.sync_data()?;
                    if let Some(tell) = tell {
                        tell(written, &sha);
                    }
                    Ok(())
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e))),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, path = %shared.path.display(), "fsync of a recording failed");
                let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                st.failure.get_or_insert(RecordError::Write(format!("fsync: {e}")));
            }
        });
    }

    /// Records `data` as `stream`; call it before forwarding the bytes.
    pub fn write(&self, stream: Stream, data: &[u8]) -> Result<(), RecordError> {
        self.event(stream, data)
    }

    /// Records output. Call it before forwarding the bytes to the user.
    pub fn output(&self, data: &Bytes) -> Result<(), RecordError> {
        self.event(Stream::Output, data)
    }

    /// Records stderr (extended data) output, before it is forwarded.
    pub fn stderr(&self, data: &Bytes) -> Result<(), RecordError> {
        self.event(Stream::Stderr, data)
    }

    pub fn input(&self, data: &Bytes) -> Result<(), RecordError> {
        self.event(Stream::Input, data)
    }

    /// A marker (asciicast `m`): something the user learned that is not output, such as the
    /// command's exit status.
    pub fn marker(&self, text: &str) -> Result<(), RecordError> {
        self.event(Stream::Marker, text.as_bytes())
    }

    pub fn resize(&self, cols: u32, rows: u32) -> Result<(), RecordError> {
        self.event(Stream::Resize, format!("{cols}x{rows}").as_bytes())
    }

    /// fsyncs (off the async threads) and returns the file's size and hash. A recording that
    /// failed returns its failure.
    pub async fn finish(&self) -> Result<Summary, RecordError> {
        let (file, summary) = {
            let mut st = self.state();
            if let Some(e) = &st.failure {
                return Err(e.clone());
            }
            st.write_out()?;
            st.finished = true;
            let summary = Summary {
                bytes: st.written,
                sha256: hex::encode(st.hash.clone().finalize()),
                duration: st.last_micros as f64 / 1e6,
            };
            (st.file.try_clone().map_err(|e| RecordError::Write(e.to_string()))?, summary)
        };
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| RecordError::Write(e.to_string()))?
            .map_err(|e| RecordError::Write(format!("fsync: {e}")))?;
        Ok(summary)
    }

    /// Tells `f` what each fsync of the cadence made durable (see [`OnDurable`]).
    pub fn on_durable(self, f: OnDurable) -> Self {
        *self.shared.on_durable.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
        self
    }

    /// Times events from `start` instead of the moment the file was created: a track that
    /// belongs beside another recording (an RDP session's typed keys beside its video) shares
    /// its timeline.
    pub fn timed_from(self, start: Instant) -> Self {
        self.state().start = start;
        self
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl State {
    fn write_out(&mut self) -> Result<(), RecordError> {
        if self.buf.len() == self.head {
            return Ok(());
        }
        if let Some(s) = self.sealer.as_mut() {
            s.seal_in_place(&mut self.buf);
        }
        let result = self.file.write_all(&self.buf);
        if result.is_ok() {
            self.hash.update(&self.buf);
            self.written += self.buf.len() as u64;
        }
        self.buf.clear();
        self.buf.resize(self.head, 0);
        if let Err(e) = result {
            let err = RecordError::Write(e.to_string());
            self.failure = Some(err.clone());
            return Err(err);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn header() -> Header {
        Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 0,
            title: None,
            command: None,
            env: BTreeMap::new(),
            witness: None,
            witness_format: None,
        }
    }

    fn settings() -> RecorderSettings {
        RecorderSettings { fsync_interval: Duration::from_millis(50) }
    }

    fn dir() -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("witness-rec-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn every_event_is_in_the_file_before_the_call_returns() {
        let d = dir();
        let path = d.join("a.cast");
        let rec = start_cast(&path, &header(), settings(), None).unwrap();
        rec.output(&Bytes::from_static(b"hello \xe6\x97")).unwrap();
        rec.output(&Bytes::from_static(b"\xa5 world\r\n")).unwrap();
        rec.resize(100, 30).unwrap();
        let now = std::fs::read(&path).unwrap();
        assert_eq!(rawrec::scan(&now).unwrap().events, 3, "written at once, not batched");
        tokio::time::sleep(Duration::from_millis(120)).await; // an fsync ran in between
        let summary = rec.finish().await.unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(summary.bytes, file.len() as u64);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&file)));
        let (_, events) = witness_core::cast::parse(&rawrec::to_cast(&file).unwrap()).unwrap();
        assert_eq!(format!("{}{}", events[0].data, events[1].data), "hello 日 world\r\n");
        assert_eq!((events[2].code.as_str(), events[2].data.as_str()), ("r", "100x30"));
        assert!(rec.output(&Bytes::from_static(b"late")).is_err(), "nothing is added after finish");
        assert!(start_cast(&path, &header(), settings(), None).is_err(), "never overwrites a recording");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn encrypted_recordings_hold_no_plaintext_and_recover_after_a_cut() {
        let d = dir();
        let path = d.join("e.cast");
        let (dek, kek) = ([4u8; 32], [5u8; 32]);
        let header = atrest::Header::new(atrest::Cipher::preferred(), "r", "k", atrest::wrap(&kek, &dek, [6; 24]));
        let enc = Encryption { header, dek, nonce_prefix: [7; 16] };
        let rec = start_cast(&path, &self::tests::header(), settings(), Some(enc)).unwrap();
        rec.output(&Bytes::from_static(b"top-secret-output\r\n")).unwrap();
        rec.output(&Bytes::from_static(b"more\r\n")).unwrap();
        let summary = rec.finish().await.unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&file)), "the hash is of what is stored");
        assert!(!file.windows(10).any(|w| w == b"top-secret"), "no plaintext at rest");
        let key_for = |h: &atrest::Header| atrest::unwrap(&kek, h).ok();
        let plain = crate::plaintext(&file, &key_for).unwrap();
        let (_, events) = witness_core::cast::parse(&rawrec::to_cast(&plain).unwrap()).unwrap();
        assert_eq!(events[0].data, "top-secret-output\r\n");
        // Cut mid-record: recovery keeps the whole records.
        std::fs::write(&path, &file[..file.len() - 3]).unwrap();
        let r = crate::recover_cast(&path, &key_for).unwrap();
        assert_eq!(r.events, 1);
        assert!(r.trimmed > 0);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn a_write_error_reaches_the_session_at_once() {
        // /dev/full fails every write with ENOSPC, like a full disk.
        let file = File::options().append(true).open("/dev/full").unwrap();
        let rec = CastRecorder::from_file(file, b"", settings(), Path::new("/dev/full"), None);
        let err = rec.output(&Bytes::from(vec![b'x'; 100])).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert_eq!(rec.resize(1, 1).unwrap_err(), err, "and stays failed");
        assert_eq!(rec.finish().await.unwrap_err(), err);
    }
}
