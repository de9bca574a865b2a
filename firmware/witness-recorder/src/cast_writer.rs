//! The asciicast writer task and the handle sessions feed it through.

use crate::RecordError;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use witness_core::cast::{self, EventKind, Header, Utf8Carry};

/// How often the writer makes data durable.
#[derive(Debug, Clone, Copy)]
pub struct RecorderSettings {
    /// Longest time an event may sit in memory before it is written to the file.
    pub flush_interval: Duration,
    /// Longest time written data may stay only in the page cache before fsync.
    pub fsync_interval: Duration,
}

/// Written-out buffer size: large enough to batch bulk output, small enough to stay in cache.
const WRITE_BATCH: usize = 64 * 1024;
/// Events queued between the session and the writer before the session waits.
const QUEUE: usize = 256;

enum Cmd {
    Output(Bytes),
    Input(Bytes),
    Resize(u32, u32),
    Finish(oneshot::Sender<Result<Summary, RecordError>>),
}

/// What a finished recording is.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub bytes: u64,
    pub sha256: String,
    /// Seconds from the header to the last event.
    pub duration: f64,
}

/// A handle on a running cast recording. Clones feed the same file.
#[derive(Clone)]
pub struct CastRecorder {
    tx: mpsc::Sender<Cmd>,
    failure: Arc<Mutex<Option<RecordError>>>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for CastRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CastRecorder").field("path", &self.path).finish()
    }
}

impl CastRecorder {
    async fn send(&self, cmd: Cmd) -> Result<(), RecordError> {
        if self.tx.send(cmd).await.is_err() {
            return Err(self.failure());
        }
        Ok(())
    }

    fn failure(&self) -> RecordError {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| RecordError::Write("recorder stopped".into()))
    }

    /// Records output. Call it before forwarding the bytes to the user: what the user sees
    /// has been handed to the recorder first.
    pub async fn output(&self, data: Bytes) -> Result<(), RecordError> {
        self.send(Cmd::Output(data)).await
    }

    pub async fn input(&self, data: Bytes) -> Result<(), RecordError> {
        self.send(Cmd::Input(data)).await
    }

    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), RecordError> {
        self.send(Cmd::Resize(cols, rows)).await
    }

    /// Writes everything out, fsyncs, and returns the file's size and hash.
    pub async fn finish(&self) -> Result<Summary, RecordError> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Finish(tx)).await?;
        rx.await.map_err(|_| self.failure())?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates the cast file (refusing to overwrite one), writes and fsyncs its header, and spawns
/// the writer task on the current tokio runtime.
pub fn start_cast(
    path: &Path,
    header: &Header,
    settings: RecorderSettings,
) -> Result<(CastRecorder, tokio::task::JoinHandle<()>), RecordError> {
    let create = || -> std::io::Result<File> {
        let mut file = File::options().create_new(true).append(true).open(path)?;
        file.write_all(&header.to_line())?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?; // the new directory entry must survive a power cut too
        }
        Ok(file)
    };
    let file = create().map_err(|e| RecordError::Create(e.to_string()))?;
    let mut hash = Sha256::new();
    let header_line = header.to_line();
    hash.update(&header_line);
    let (tx, rx) = mpsc::channel(QUEUE);
    let failure = Arc::new(Mutex::new(None));
    let writer = Writer {
        file,
        hash,
        written: header_line.len() as u64,
        buf: Vec::with_capacity(WRITE_BATCH),
        out_carry: Utf8Carry::default(),
        in_carry: Utf8Carry::default(),
        start: Instant::now(),
        last_time: 0.0,
        settings,
    };
    let task = tokio::spawn(writer.run(rx, failure.clone()));
    Ok((CastRecorder { tx, failure, path: Arc::new(path.to_owned()) }, task))
}

struct Writer {
    file: File,
    hash: Sha256,
    written: u64,
    buf: Vec<u8>,
    out_carry: Utf8Carry,
    in_carry: Utf8Carry,
    start: Instant,
    last_time: f64,
    settings: RecorderSettings,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>, failure: Arc<Mutex<Option<RecordError>>>) {
        let mut flush_at: Option<tokio::time::Instant> = None;
        let mut last_sync = tokio::time::Instant::now();
        let mut dirty = false;
        let mut syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
        let result: Result<Option<oneshot::Sender<_>>, RecordError> = async {
            loop {
                let deadline = flush_at;
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        None => return Ok(None),
                        Some(Cmd::Finish(reply)) => return Ok(Some(reply)),
                        Some(cmd) => {
                            self.encode(cmd);
                            if self.buf.len() >= WRITE_BATCH {
                                self.write_out()?;
                                dirty = true;
                            }
                            if !self.buf.is_empty() && flush_at.is_none() {
                                flush_at = Some(tokio::time::Instant::now() + self.settings.flush_interval);
                            }
                        }
                    },
                    _ = sleep_until(deadline) => {
                        self.write_out()?;
                        dirty = true;
                        flush_at = None;
                    }
                }
                // fsync off the async thread, one at a time, on the cadence.
                if dirty && last_sync.elapsed() >= self.settings.fsync_interval {
                    if let Some(done) = syncing.take() {
                        join_sync(done).await?;
                    }
                    let file = self.file.try_clone().map_err(|e| RecordError::Write(e.to_string()))?;
                    syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
                    last_sync = tokio::time::Instant::now();
                    dirty = false;
                }
            }
        }
        .await;
        let finished = match result {
            Ok(reply) => {
                let end = self.finish(syncing.take()).await;
                if let Err(e) = &end {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                }
                reply.map(|r| (r, end))
            }
            Err(e) => {
                tracing::error!(error = %e, "recording writer failed");
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
        };
        if let Some((reply, end)) = finished {
            let _ = reply.send(end);
        }
    }

    fn now(&mut self) -> f64 {
        // Never go backwards: players expect non-decreasing times.
        let t = self.start.elapsed().as_secs_f64().max(self.last_time);
        self.last_time = t;
        t
    }

    fn encode(&mut self, cmd: Cmd) {
        let t = self.now();
        match cmd {
            Cmd::Output(data) => {
                let text = self.out_carry.push(&data);
                if !text.is_empty() {
                    cast::encode_event(&mut self.buf, t, EventKind::Output, &text);
                }
            }
            Cmd::Input(data) => {
                let text = self.in_carry.push(&data);
                if !text.is_empty() {
                    cast::encode_event(&mut self.buf, t, EventKind::Input, &text);
                }
            }
            Cmd::Resize(cols, rows) => cast::encode_resize(&mut self.buf, t, cols, rows),
            Cmd::Finish(_) => unreachable!("finish is handled by the loop"),
        }
    }

    fn write_out(&mut self) -> Result<(), RecordError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(|e| RecordError::Write(e.to_string()))?;
        self.hash.update(&self.buf);
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    async fn finish(mut self, syncing: Option<tokio::task::JoinHandle<std::io::Result<()>>>) -> Result<Summary, RecordError> {
        let t = self.now();
        for (carry, kind) in [(&mut self.out_carry, EventKind::Output), (&mut self.in_carry, EventKind::Input)] {
            let rest = carry.flush();
            if !rest.is_empty() {
                cast::encode_event(&mut self.buf, t, kind, &rest);
            }
        }
        self.write_out()?;
        if let Some(done) = syncing {
            join_sync(done).await?;
        }
        let file = self.file;
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| RecordError::Write(e.to_string()))?
            .map_err(|e| RecordError::Write(e.to_string()))?;
        Ok(Summary { bytes: self.written, sha256: hex::encode(self.hash.finalize()), duration: self.last_time })
    }
}

async fn join_sync(done: tokio::task::JoinHandle<std::io::Result<()>>) -> Result<(), RecordError> {
    done.await
        .map_err(|e| RecordError::Write(e.to_string()))?
        .map_err(|e| RecordError::Write(format!("fsync: {e}")))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn header() -> Header {
        Header { version: 2, width: 80, height: 24, timestamp: 0, title: None, command: None, env: BTreeMap::new(), witness: None }
    }

    fn settings() -> RecorderSettings {
        RecorderSettings { flush_interval: Duration::from_millis(50), fsync_interval: Duration::from_millis(100) }
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("witness-rec-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test]
    async fn writes_flushes_and_hashes() {
        let d = dir();
        let path = d.join("a.cast");
        let (rec, task) = start_cast(&path, &header(), settings()).unwrap();
        rec.output(Bytes::from_static(b"hello \xe6\x97")).await.unwrap();
        rec.output(Bytes::from_static(b"\xa5 world\r\n")).await.unwrap();
        rec.resize(100, 30).await.unwrap();
        // Flushed within the interval without finishing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mid = std::fs::read(&path).unwrap();
        assert_eq!(cast::parse(&mid).unwrap().1.len(), 3);
        let summary = rec.finish().await.unwrap();
        task.await.unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(summary.bytes, file.len() as u64);
        assert_eq!(summary.sha256, hex::encode(Sha256::digest(&file)));
        let (_, events) = cast::parse(&file).unwrap();
        assert_eq!(format!("{}{}", events[0].data, events[1].data), "hello 日 world\r\n");
        assert_eq!((events[2].code.as_str(), events[2].data.as_str()), ("r", "100x30"));
        assert!(start_cast(&path, &header(), settings()).is_err(), "never overwrites a recording");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[tokio::test]
    async fn a_write_error_reaches_the_session() {
        // /dev/full accepts the open and fails every write with ENOSPC, like a full disk.
        let (rec, _task) = match start_cast(Path::new("/dev/full"), &header(), settings()) {
            Err(RecordError::Create(e)) => {
                // create_new refuses an existing path: emulate with a writer on /dev/full.
                assert!(e.contains("exists"), "{e}");
                let file = File::options().append(true).open("/dev/full").unwrap();
                let (tx, rx) = mpsc::channel(QUEUE);
                let failure = Arc::new(Mutex::new(None));
                let w = Writer {
                    file,
                    hash: Sha256::new(),
                    written: 0,
                    buf: Vec::new(),
                    out_carry: Utf8Carry::default(),
                    in_carry: Utf8Carry::default(),
                    start: Instant::now(),
                    last_time: 0.0,
                    settings: settings(),
                };
                let task = tokio::spawn(w.run(rx, failure.clone()));
                (CastRecorder { tx, failure, path: Arc::new("/dev/full".into()) }, task)
            }
            other => panic!("unexpected {other:?}"),
        };
        rec.output(Bytes::from(vec![b'x'; 100])).await.unwrap();
        let mut err = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Err(e) = rec.output(Bytes::from_static(b"more")).await {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("the session learns that recording failed");
        assert!(err.to_string().contains("No space left on device"), "{err}");
    }
}
