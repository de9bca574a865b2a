//! On-screen text of RDP sessions: after a video is sealed, a thread of its own (at the lowest CPU
//! priority, one video at a time, never on a session's or the sealer's path) decodes it, picks
//! the pictures that settled (`witness_video::settle`: only the parts that changed, a scroll only
//! for the rows it brought in, nothing already read), lays those parts on a sheet and
//! has Tesseract read each sheet through stdin (`nice -n 19 tesseract stdin stdout … tsv`: nothing
//! in clear on disk, nothing in its arguments but options). Each line read becomes a fragment of
//! the blind index with its time and rectangle; each settled picture read also leaves a small
//! sealed thumbnail for the player's timeline, stored with its text. The index is the queue: a video's state and how
//! far it was read are stored with its text in one transaction, so a restart resumes where the
//! last stored batch ended and never stores a fragment twice.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use witness_core::ocr::Sheet;
use witness_core::ocr_lines::{self, LineCache};
use witness_index::SearchChunk;

/// A picture is read once the screen stayed still this long.
pub const SETTLE: Duration = Duration::from_millis(500);
/// Regions enlarged this many times before reading (terminal fonts are small).
const SCALE: u32 = 2;
/// Pixels on one sheet at most (before enlarging): one Tesseract run each.
const SHEET_PIXELS: u64 = 2_000_000;
/// Settled pictures in a video's first batch: a short video is stored in several batches, so a
/// restart resumes within it.
const FIRST_BATCH_PICTURES: usize = 8;
/// Settled pictures in one batch at most: each batch doubles the one before up to this (each
/// Tesseract run first loads its language model, 0.12–0.16 CPU s: an hour of the bench's typing,
/// some 600 settled pictures, took 75 runs in batches of 8 and takes about 32 so, the
/// [`SHEET_PIXELS`] bound ending most batches first), and what a restart reads again stays bounded.
const BATCH_PICTURES: usize = 32;
/// How often the reader looks for videos to read when it found none.
const IDLE: Duration = Duration::from_secs(3);

/// What reading one video did.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub frames: u64,
    /// Settled pictures read (each for the parts that changed).
    pub pictures: u64,
    /// Parts read, and their pixels (before enlarging).
    pub reads: u64,
    pub pixels: u64,
    pub fragments: u64,
    /// Lines of the parts read: given to Tesseract (each new line once), and taken from the
    /// lines already read (the same pixels: the text read then, at the new time and place).
    pub lines_read: u64,
    pub lines_cached: u64,
    pub sheets: u64,
    /// Batches stored (each its pictures' text and how far the video is read, one transaction).
    pub batches: u64,
    /// Seconds of video.
    pub video_seconds: f64,
    /// CPU seconds Tesseract used (its children's user + system time).
    pub ocr_cpu_seconds: f64,
    /// Wall-clock seconds the whole reading took.
    pub wall_seconds: f64,
}

/// Whether Tesseract can be run here.
pub fn available() -> bool {
    Command::new("tesseract")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The daemon's reader thread: reads every video waiting, then looks again every few seconds,
/// until `cancel`. Whether Tesseract is installed is checked only when a video waits.
pub fn spawn(dir: Arc<DataDir>, cancel: CancellationToken) -> Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new().name("ocr".into()).spawn(move || {
        lower_priority();
        let mut told = false;
        while !cancel.is_cancelled() {
            let rows = match dir.index.videos_to_read() {
                Ok(rows) => rows,
                Err(e) => {
                    warn!(error = %e, "listing videos to read failed");
                    sleep(&cancel, IDLE);
                    continue;
                }
            };
            if !ready(!rows.is_empty(), available) {
                if rows.is_empty() {
                    sleep(&cancel, IDLE);
                    continue;
                }
                if !told {
                    warn!("tesseract is not installed; text on RDP screens is not searchable until it is");
                    told = true;
                }
                sleep(&cancel, Duration::from_secs(60));
                continue;
            }
            for row in rows {
                if cancel.is_cancelled() {
                    return;
                }
                read_logged(&dir, &row.id, &cancel);
            }
        }
    })?)
}

/// Whether the reader reads now: a video waits and Tesseract is there. `available` (a Tesseract
/// run) is called only when a video waits, never on an idle box's every look.
fn ready(waiting: bool, available: impl FnOnce() -> bool) -> bool {
    waiting && available()
}

fn sleep(cancel: &CancellationToken, d: Duration) {
    let until = Instant::now() + d;
    while !cancel.is_cancelled() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Nice 19 for this thread and, inherited, the Tesseract runs it starts: reading yields to
/// sessions, sealing and uploads.
fn lower_priority() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        warn!(error = %e, "could not lower the text reader's priority");
    }
}

/// Reads one video, logging the outcome and storing a failure.
pub fn read_logged(dir: &DataDir, recording_id: &str, cancel: &CancellationToken) -> Option<Stats> {
    match read_video(dir, recording_id, cancel) {
        Ok(Some(s)) => {
            info!(
                recording_id,
                frames = s.frames,
                pictures = s.pictures,
                reads = s.reads,
                pixels = s.pixels,
                fragments = s.fragments,
                lines_read = s.lines_read,
                lines_cached = s.lines_cached,
                video_seconds = s.video_seconds,
                ocr_cpu_seconds = s.ocr_cpu_seconds,
                wall_seconds = s.wall_seconds,
                "screen text read"
            );
            Some(s)
        }
        Ok(None) => {
            info!(recording_id, "screen text reading paused; it resumes at the next start");
            None
        }
        Err(e) => {
            let reason = format!("{e:#}");
            warn!(recording_id, error = %reason, "screen text could not be read");
            if e.downcast_ref::<witness_index::IndexError>()
                .is_some_and(|e| matches!(e, witness_index::IndexError::TextTakenOver { .. }))
            {
                // Another reader of the same video took it over: its reading counts, not this one's.
                info!(recording_id, "screen text reading taken over by another reader");
                return None;
            }
            if let Err(e) = dir.index.read_text_failed(recording_id, &reason) {
                warn!(recording_id, error = %e, "could not store why the screen text could not be read");
            }
            None
        }
    }
}

/// Reads the text of a sealed video into the blind index, from where an earlier reading stopped.
/// `Ok(None)`: stopped by `cancel` (the state says how far it got).
pub fn read_video(dir: &DataDir, recording_id: &str, cancel: &CancellationToken) -> Result<Option<Stats>> {
    let started = Instant::now();
    let row = dir.index.recording(recording_id)?.context("no such recording")?;
    if !row.path.ends_with(".mp4") {
        bail!("not a video");
    }
    // The claim on the video's text (a later reader's takes it over) and where this reading resumes.
    let (claim, from) = dir.index.start_read_text(recording_id)?;
    // Decrypted record by record as the decoder asks: memory is bounded, whatever the video's size.
    let plain = witness_recorder::open_plain(&dir.root.join(&row.path), &witness_keys::key_for(&dir.root))
        .with_context(|| format!("opening {}", row.path))?;
    let key = witness_keys::search_key(&dir.root)?;
    let languages = dir.config.ocr_languages.clone();
    let mut stats = Stats::default();
    let mut settler: Option<witness_video::settle::Settler> = None;
    let mut batch = Batch::default();
    let mut stored_from = from;
    let mut failure: Option<anyhow::Error> = None;
    let mut cache = LineCache::default();
    let mut flush = |batch: &mut Batch, stats: &mut Stats, stored_from: &mut f64| -> Result<()> {
        let Some(last) = batch.reads.last() else { return Ok(()) };
        // Every later picture appeared after this one: the video is read up to just past it.
        let until = last.at.as_secs_f64() + 0.001;
        let chunks = read_batch(&batch.reads, &key, &languages, stats, &mut cache)?;
        dir.index.store_read_text(&claim, &row.session_id, *stored_from, until, &chunks, &batch.thumbnails)?;
        stats.batches += 1;
        *stored_from = until;
        *batch = Batch::default();
        Ok(())
    };
    // The parts of one settled picture (all with its time): a batch ends between pictures only,
    // so where a restart resumes, no part of a picture was stored without the others.
    let mut take = |reads: Vec<witness_video::settle::Read>,
                    thumbnail: Option<Vec<u8>>,
                    batch: &mut Batch,
                    stats: &mut Stats,
                    stored_from: &mut f64|
     -> Result<()> {
        // Read before (an earlier run stored it): only the settling had to be followed again.
        let reads: Vec<_> = reads.into_iter().filter(|r| r.at.as_secs_f64() >= from).collect();
        if reads.is_empty() {
            return Ok(());
        }
        stats.pictures += 1;
        if let Some(png) = thumbnail {
            let at = reads[0].at.as_secs_f64();
            let context = witness_core::text::thumbnail_context(recording_id, at);
            batch.thumbnails.push((at, witness_core::text::seal_bytes(&key, witness_keys::nonce(), &context, &png)));
        }
        for read in reads {
            stats.reads += 1;
            stats.pixels += u64::from(read.region.width) * u64::from(read.region.height);
            batch.pixels += u64::from(read.region.width) * u64::from(read.region.height);
            batch.reads.push(read);
        }
        batch.pictures += 1;
        if batch.pixels >= SHEET_PIXELS || batch.pictures >= batch_pictures(stats.batches) {
            flush(batch, stats, stored_from)?;
        }
        Ok(())
    };
    let frames = witness_video::decode_gray(plain, |f| {
        if cancel.is_cancelled() {
            return false;
        }
        stats.video_seconds = f.at.as_secs_f64();
        let s = settler.get_or_insert_with(|| witness_video::settle::Settler::new(f.width, f.height, SETTLE));
        let reads = s.frame(f.at, f.gray);
        // The timeline's thumbnail of the picture just read, from the frame already decoded.
        let thumbnail = || s.picture().and_then(|p| witness_video::thumb::png(f.width, f.height, p));
        if !reads.is_empty()
            && let Err(e) = take(reads, thumbnail(), &mut batch, &mut stats, &mut stored_from)
        {
            failure = Some(e);
            return false;
        }
        true
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let frames = frames?;
    if cancel.is_cancelled() {
        // What is batched but not stored is read again next time.
        return Ok(None);
    }
    stats.frames = frames;
    if let Some(s) = settler.as_mut() {
        let reads = s.finish();
        let (w, h) = s.size();
        let thumbnail = s.picture().and_then(|p| witness_video::thumb::png(w, h, p));
        take(reads, thumbnail, &mut batch, &mut stats, &mut stored_from)?;
    }
    flush(&mut batch, &mut stats, &mut stored_from)?;
    dir.index.finish_read_text(&claim).map_err(anyhow::Error::from)?;
    stats.wall_seconds = started.elapsed().as_secs_f64();
    Ok(Some(stats))
}

/// Settled pictures the next batch takes at most, after `stored` batches of this reading:
/// [`FIRST_BATCH_PICTURES`], doubled each batch up to [`BATCH_PICTURES`].
pub fn batch_pictures(stored: u64) -> usize {
    FIRST_BATCH_PICTURES.saturating_mul(1 << stored.min(8)).min(BATCH_PICTURES)
}

/// Parts of settled pictures waiting for one Tesseract run.
#[derive(Default)]
struct Batch {
    reads: Vec<witness_video::settle::Read>,
    /// `(at, sealed PNG)`: one per settled picture, stored with its text.
    thumbnails: Vec<(f64, Vec<u8>)>,
    pixels: u64,
    pictures: usize,
}

/// Reads a batch of regions: each is cut into its lines (`witness_core::ocr_lines`), a line whose
/// pixels were read before (surely) takes its text from `cache`, the others are read by
/// Tesseract (each once, one run per sheet) and stored in it; a chunk of the blind index per
/// region that held text, every line at the region's time and its own place.
fn read_batch(
    batch: &[witness_video::settle::Read],
    key: &[u8; 32],
    languages: &str,
    stats: &mut Stats,
    cache: &mut LineCache,
) -> Result<Vec<SearchChunk>> {
    let parts: Vec<Vec<ocr_lines::LinePart>> = batch.iter().map(|r| ocr_lines::split(&r.sheet_region())).collect();
    let mut counts = ocr_lines::Counts::default();
    let mut tesseract_cpu = 0.0;
    let lines = ocr_lines::read(cache, &parts, SCALE, &mut counts, |sheet: &Sheet| {
        tesseract(&sheet.pgm(), languages, &mut tesseract_cpu)
    });
    stats.ocr_cpu_seconds += tesseract_cpu;
    stats.sheets += counts.sheets;
    stats.lines_read += counts.read;
    stats.lines_cached += counts.cached;
    let mut chunks = Vec::new();
    for (read, mine) in batch.iter().zip(lines?) {
        if mine.is_empty() {
            continue;
        }
        let text = mine.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join("\n");
        let at = read.at.as_secs_f64();
        stats.fragments += mine.len() as u64;
        chunks.push(SearchChunk {
            at,
            tokens: witness_core::text::blind_tokens(key, &text),
            line_times: vec![at; mine.len()],
            line_steps: Vec::new(),
            line_rects: mine.iter().map(|(_, r)| Some(*r)).collect(),
            sealed: witness_core::text::seal_text(key, witness_keys::nonce(), &text),
        });
    }
    Ok(chunks)
}

/// One Tesseract run: the picture through stdin, TSV on stdout. Its CPU time is added to
/// `cpu` (from the child's rusage, through `/proc` of this process's children).
fn tesseract(pgm: &[u8], languages: &str, cpu: &mut f64) -> Result<String> {
    let before = children_cpu();
    let mut child = Command::new("nice")
        .args(["-n", "19", "tesseract", "stdin", "stdout", "-l", languages, "--psm", "6", "tsv"])
        // One thread: the box's other work keeps its cores.
        .env("OMP_THREAD_LIMIT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting tesseract")?;
    let mut stdin = child.stdin.take().context("tesseract's stdin")?;
    let mut stdout = child.stdout.take().context("tesseract's stdout")?;
    let mut stderr = child.stderr.take().context("tesseract's stderr")?;
    let (out, err) = std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(pgm);
        });
        let err = s.spawn(move || {
            let mut e = String::new();
            let _ = stderr.read_to_string(&mut e);
            e
        });
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        (out, err.join().unwrap_or_default())
    });
    let status = child.wait().context("waiting for tesseract")?;
    *cpu += children_cpu() - before;
    if !status.success() {
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no message");
        bail!("tesseract failed ({status}): {first}");
    }
    Ok(out)
}

/// CPU seconds (user + system) of this process's waited-for children so far.
fn children_cpu() -> f64 {
    // /proc/self/stat fields 16 and 17: cutime and cstime, in clock ticks (100 a second on Linux).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name the fields start at 3 (state): cutime is field 16, cstime 17.
    (tick(16 - 3) + tick(17 - 3)) / 100.0
}

/// CPU seconds (user + system) this process has used, all its threads.
pub fn own_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime: fields 14 and 15.
    (tick(14 - 3) + tick(15 - 3)) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_starts_with_small_batches_and_doubles_them_to_the_bound() {
        let sizes: Vec<usize> = (0..5).map(batch_pictures).collect();
        assert_eq!(sizes, [FIRST_BATCH_PICTURES, 16, BATCH_PICTURES, BATCH_PICTURES, BATCH_PICTURES]);
        assert_eq!(batch_pictures(u64::MAX), BATCH_PICTURES);
    }

    #[test]
    fn tesseract_is_looked_for_only_when_a_video_waits() {
        let mut asked = 0;
        assert!(!ready(false, || {
            asked += 1;
            true
        }));
        assert_eq!(asked, 0, "an idle look runs nothing");
        assert!(ready(true, || {
            asked += 1;
            true
        }));
        assert!(!ready(true, || {
            asked += 1;
            false
        }));
        assert_eq!(asked, 2);
    }
}
