//! What a recording is shown as: the stored plaintext (what the signed manifest covers), the
//! asciicast v2 players read (made from raw SSH frames as it is read), or the raw bytes the user
//! received (`export --raw`: stdout and stderr in arrival order, bit for bit). A finished
//! recording on the box is streamed record by record, so memory does not grow with its size.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::path::Path;
use tracing::info;
use witness_core::rawrec::{CastView, Decoder, ViewMark};
use witness_index::RecordingRow;
use witness_web::TailCursor;

/// How a recording is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The decrypted recording as stored and signed (evidence bundles).
    Stored,
    /// What a player plays: asciicast v2 for SSH, the MP4 for RDP.
    Player,
    /// The bytes the user received on the channel (SSH only).
    Raw,
}

/// Whether the recording can be streamed from its file on the box: a finished one that is whole
/// (one cut by a crash was trimmed to its authentic prefix, but a video then plays only to its
/// last whole fragment), or an SSH recording being written (read up to its last whole record).
/// The others (only in the store, a cut video) are read part by part by [`crate::playback`].
pub fn streamable(dir: &DataDir, row: &RecordingRow) -> Result<bool> {
    let local =
        !dir.index.is_pruned(&row.id)? && dir.index.deleted_at(&row.id)?.is_none() && dir.root.join(&row.path).exists();
    let finished = row.status != witness_core::RecordingStatus::Recording
        && row.sha256.is_some()
        && (!row.recovered || is_ssh(row));
    Ok(local && (finished || (row.status == witness_core::RecordingStatus::Recording && is_ssh(row))))
}

fn is_ssh(row: &RecordingRow) -> bool {
    !row.path.ends_with(".mp4")
}

/// The player's view is marked about this often (view bytes), so a range starts near itself.
const VIEW_MARK_EVERY: u64 = 1 << 20;

/// Where the player's view of a finished raw SSH recording can be taken up again, counted with
/// its length: a ranged request reads from the mark before it, not from the recording's start.
#[derive(Debug, Default)]
pub struct ViewMarks {
    header: Option<witness_core::cast::Header>,
    marks: Vec<ViewMark>,
}

impl ViewMarks {
    /// The last mark at or before view byte `at`, with the recording's header.
    fn before(&self, at: u64) -> Option<(&witness_core::cast::Header, &ViewMark)> {
        let i = self.marks.partition_point(|m| m.view_at <= at);
        Some((self.header.as_ref()?, self.marks.get(i.checked_sub(1)?)?))
    }
}

/// Where a view starts: at the recording's start, or (the player's view of a raw recording) at
/// a mark, with the plaintext from the mark's place on.
enum From<'a> {
    Start,
    Mark(&'a witness_core::cast::Header, &'a ViewMark),
}

/// Reads `plain` (a recording's decrypted bytes) and writes `view` of it to `out`; returns bytes
/// written.
fn write_view(row: &RecordingRow, plain: &mut dyn Read, out: &mut dyn Write, view: View) -> Result<u64> {
    write_view_from(row, plain, out, view, From::Start, None)
}

/// [`write_view`] from `from`, keeping marks of the player's view in `marks` when asked. What
/// is returned counts the bytes written from `from` on.
fn write_view_from(
    row: &RecordingRow,
    plain: &mut dyn Read,
    out: &mut dyn Write,
    view: View,
    from: From<'_>,
    mut marks: Option<&mut ViewMarks>,
) -> Result<u64> {
    let mut counted = Counted { inner: out, n: 0 };
    if view == View::Stored || !is_ssh(row) {
        std::io::copy(plain, &mut counted)?;
        return Ok(counted.n);
    }
    let (mut d, mut cast, mut started) = match from {
        From::Start => (Decoder::default(), CastView::default(), false),
        From::Mark(h, m) => {
            let (d, cast) = Decoder::resume(h.clone(), m);
            (d, cast, true)
        }
    };
    let mut next_mark = VIEW_MARK_EVERY;
    let mut buf = vec![0u8; 256 * 1024];
    let mut line = Vec::new();
    loop {
        let n = plain.read(&mut buf)?;
        if n > 0 {
            d.push(&buf[..n]);
        }
        if !started && let Some(h) = d.header().map_err(|e| anyhow::anyhow!("recording {}: {e}", row.id))?.cloned() {
            started = true;
            match view {
                View::Raw if !d.is_raw() => bail!(
                    "recording {} was made before the box kept raw bytes (its output was stored as text); export it without --raw",
                    row.id
                ),
                View::Player if !d.is_raw() => {
                    // An asciicast recording already is what players read.
                    counted.write_all(&h.to_line())?;
                }
                View::Player => {
                    counted.write_all(&CastView::header_line(&h))?;
                    if let Some(m) = marks.as_deref_mut() {
                        m.header = Some(h);
                    }
                }
                _ => {}
            }
        }
        while let Some(ev) = d.next_event().map_err(|e| anyhow::anyhow!("recording {}: {e}", row.id))? {
            match view {
                View::Raw if ev.stream.to_user() => counted.write_all(&ev.data)?,
                View::Raw => {}
                _ if !d.is_raw() => {
                    line.clear();
                    let code = match ev.stream {
                        witness_core::rawrec::Stream::Input => witness_core::cast::EventKind::Input,
                        witness_core::rawrec::Stream::Resize => witness_core::cast::EventKind::Resize,
                        witness_core::rawrec::Stream::Marker => witness_core::cast::EventKind::Marker,
                        _ => witness_core::cast::EventKind::Output,
                    };
                    witness_core::cast::encode_event(&mut line, ev.time, code, &String::from_utf8_lossy(&ev.data));
                    counted.write_all(&line)?;
                }
                _ => {
                    line.clear();
                    cast.event(&ev, &mut line);
                    counted.write_all(&line)?;
                    if let Some(m) = marks.as_deref_mut()
                        && counted.n >= next_mark
                        && let Some(mark) = d.mark(&cast, counted.n)
                    {
                        m.marks.push(mark);
                        next_mark = counted.n + VIEW_MARK_EVERY;
                    }
                }
            }
        }
        if n == 0 {
            break;
        }
    }
    // A recording still being written (or cut) may end inside an event: what is whole is shown.
    if row.status != witness_core::RecordingStatus::Recording {
        d.finish().map_err(|e| anyhow::anyhow!("recording {}: {e}", row.id))?;
    }
    if view == View::Player {
        line.clear();
        cast.finish(&mut line);
        counted.write_all(&line)?;
    }
    Ok(counted.n)
}

struct Counted<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counted<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `view` of recording `row` to `out`. A file on the box is streamed and its sha256 checked
/// against the index on the way; the caller must discard what was written if this fails.
pub fn write(dir: &DataDir, row: &RecordingRow, out: &mut dyn Write, view: View) -> Result<u64> {
    write_marked(dir, row, out, view, None)
}

/// [`write`], keeping marks of the player's view in `marks` when asked.
fn write_marked(
    dir: &DataDir,
    row: &RecordingRow,
    out: &mut dyn Write,
    view: View,
    marks: Option<&mut ViewMarks>,
) -> Result<u64> {
    if view == View::Raw && !is_ssh(row) {
        bail!("--raw is for SSH recordings; recording {} is a video", row.id);
    }
    if streamable(dir, row)? {
        let path = dir.root.join(&row.path);
        let mut r = witness_recorder::open_plain(&path, &witness_keys::key_for(&dir.root))?;
        if row.status == witness_core::RecordingStatus::Recording {
            // Being written: whatever is whole so far, and no hash to check yet.
            return write_view(row, &mut r.lenient(), out, view);
        }
        let n = write_view_from(row, &mut r, out, view, From::Start, marks)?;
        // Everything was read: the stored file's hash is known.
        let mut rest = Vec::new();
        r.read_to_end(&mut rest)?;
        let got = r.stored_sha256();
        if row.sha256.as_deref() != Some(got.as_str()) {
            bail!(
                "recording {} does not match its recorded sha256 (index {}, file {got}); refusing to play or export a changed recording",
                row.id,
                row.sha256.as_deref().unwrap_or("none")
            );
        }
        return Ok(n);
    }
    // In the store, or a video cut by a crash or being written: read part by part.
    let mut reader = crate::playback::playable(dir, &row.id)?.reader()?;
    write_view_from(row, &mut reader, out, view, From::Start, marks)
}

/// Player-view lengths of finished recordings, by id and what identified the stored bytes when
/// they were counted (and hashed against the index on the way): the recorded sha256 and, on the
/// box, the file's size, inode and times (which no one can set back), so a changed file is
/// counted, and refused, again. One slot per recording: requests arriving together wait for one
/// count instead of each reading the whole recording.
static PLAYER_LENS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, LenSlot>>> =
    std::sync::LazyLock::new(Default::default);

/// A recording's counted length and the marks of its view, with what identified its stored
/// bytes then.
type LenSlot = std::sync::Arc<std::sync::Mutex<Option<(String, u64, std::sync::Arc<ViewMarks>)>>>;

/// The player's view of an SSH recording for the console: its length and marks (a first pass
/// over the recording, counting, once per finished recording), then the asked part made while
/// the browser reads (a pass on a thread of its own, a few buffers ahead, from the mark before
/// the part to the part's end). Memory does not grow with the recording; a range of a finished
/// recording costs its own length plus at most a mark's spacing ([`VIEW_MARK_EVERY`]).
pub fn player_content(
    dir: std::sync::Arc<DataDir>,
    row: RecordingRow,
    range: Option<&str>,
) -> Result<(witness_web::Part, u64, witness_web::Chunks)> {
    let identity = row.sha256.clone().filter(|_| row.status != witness_core::RecordingStatus::Recording).map(|s| {
        use std::os::unix::fs::MetadataExt;
        let on_box = std::fs::metadata(dir.root.join(&row.path)).ok().map(|m| {
            format!("{} {} {}.{} {}.{}", m.len(), m.ino(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
        });
        format!("{s} {}", on_box.as_deref().unwrap_or("store"))
    });
    let (len, marks) = match identity {
        // Being written: counted at every request (it grows), and read from its start.
        None => (write(&dir, &row, &mut std::io::sink(), View::Player)?, Default::default()),
        Some(identity) => {
            let slot = {
                let mut all = PLAYER_LENS.lock().unwrap_or_else(|p| p.into_inner());
                if all.len() >= 4096 && !all.contains_key(&row.id) {
                    all.clear();
                }
                all.entry(row.id.clone()).or_default().clone()
            };
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some((seen, len, marks)) if *seen == identity => (*len, marks.clone()),
                _ => {
                    let mut marks = ViewMarks::default();
                    let len = write_marked(&dir, &row, &mut std::io::sink(), View::Player, Some(&mut marks))?;
                    let marks = std::sync::Arc::new(marks);
                    info!(
                        recording_id = %row.id,
                        len,
                        marks = marks.marks.len(),
                        "player length counted (the recording read whole)"
                    );
                    *slot = Some((identity, len, marks.clone()));
                    (len, marks)
                }
            }
        }
    };
    let part = witness_web::Part::of(range, len);
    let (start, end) = part.bounds(len);
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    std::thread::Builder::new().name("cast-view".into()).spawn(move || {
        let written = match marks.before(start) {
            Some((header, mark)) => {
                let mut w = Window { tx, at: mark.view_at, start, end, buf: Vec::new(), complete: false };
                info!(recording_id = %row.id, view_at = mark.view_at, plain_at = mark.plain_at, "player part from a mark");
                let from_mark = crate::playback::playable(&dir, &row.id).and_then(|p| {
                    let mut plain = p.part(mark.plain_at, p.len())?;
                    write_view_from(&row, &mut plain, &mut w, View::Player, From::Mark(header, mark), None)
                });
                (w, from_mark)
            }
            None => {
                let mut w = Window { tx, at: 0, start, end, buf: Vec::new(), complete: false };
                let whole = write(&dir, &row, &mut w, View::Player);
                (w, whole)
            }
        };
        let (mut w, written) = written;
        match written {
            Err(_) if w.complete => {}
            Err(e) => {
                let _ = w.tx.send(Err(e));
            }
            Ok(_) => {
                let _ = w.send();
            }
        }
    })?;
    // The first piece is read before the answer starts: a store that refuses (wrong read
    // credentials, gone) is an error the caller answers with its status, not a 200 cut short
    // (the length may come from what an earlier request counted, without reading anything).
    let first = match rx.recv() {
        Ok(Ok(bytes)) => Some(bytes),
        Ok(Err(e)) => return Err(e),
        Err(_) => None,
    };
    let rest = rx.into_iter().map(|c| c.map_err(|e| witness_web::ConsoleError::Internal(format!("{e:#}"))));
    Ok((part, len, Box::new(first.map(Ok).into_iter().chain(rest))))
}

/// Passes on the bytes of `start..end` of what is written, in buffers.
struct Window {
    tx: std::sync::mpsc::SyncSender<Result<Vec<u8>>>,
    at: u64,
    start: u64,
    end: u64,
    buf: Vec<u8>,
    /// Every byte of the part was passed on.
    complete: bool,
}

impl Window {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        self.tx.send(Ok(buf)).map_err(|_| std::io::Error::other("the reader went away"))
    }
}

impl Write for Window {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let from = self.at;
        self.at += data.len() as u64;
        if self.at <= self.start || from >= self.end {
            if from >= self.end {
                // Past the part: nothing more is needed.
                self.send()?;
                self.complete = true;
                return Err(std::io::Error::other("part complete"));
            }
            return Ok(data.len());
        }
        let lo = self.start.saturating_sub(from) as usize;
        let hi = (self.end.min(self.at) - from) as usize;
        self.buf.extend_from_slice(&data[lo..hi]);
        if self.buf.len() >= 64 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// At most this much of a live recording is read per call; the next call goes on from there.
const TAIL_BUDGET: u64 = 4 << 20;

/// A live recording's whole records past `from`, as asciicast lines (the header line first),
/// and where to go on. Only the new records are read and opened (each in its place): a live
/// view of a long session costs what the session adds, not its whole file, per poll. The
/// recorder writes whole events per record, so no event spans two calls (a character may: its
/// bytes wait in the cursor).
pub fn tail(
    path: &std::path::Path,
    key_for: witness_recorder::KeyFor<'_>,
    from: &TailCursor,
) -> Result<(Vec<u8>, TailCursor)> {
    use std::io::{BufRead, Seek, SeekFrom};
    use witness_core::atrest;
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut first = Vec::new();
    (&mut file).take(64 * 1024).read_until(b'\n', &mut first)?;
    let Some((header, start)) = atrest::Header::parse(&first) else {
        bail!("a live view needs an encrypted recording");
    };
    let dek = key_for(&header).ok_or_else(|| anyhow::anyhow!("no key {} for the recording", header.key_id))?;
    let mut opener = atrest::RecordOpener::new(&header, &dek);
    let mut cur = from.clone();
    if cur.offset < start as u64 {
        cur = TailCursor { offset: start as u64, ..TailCursor::default() };
    }
    file.seek(SeekFrom::Start(cur.offset))?;
    let mut out = Vec::new();
    let mut read = 0u64;
    while read < TAIL_BUDGET {
        let mut field = [0u8; 4];
        if file.read_exact(&mut field).is_err() {
            break;
        }
        let Some(len) = atrest::record_len(field) else { break };
        let mut record = vec![0u8; len];
        if file.read_exact(&mut record).is_err() {
            break; // the writer is mid-append: the rest comes next time
        }
        let plain = opener.open(cur.index, cur.offset, &record)?;
        cur.offset += 4 + len as u64;
        cur.index += 1;
        read += 4 + len as u64;
        match cur.raw {
            None => {
                let h: witness_core::cast::Header =
                    serde_json::from_slice(plain.strip_suffix(b"\n").unwrap_or(&plain))?;
                let raw = witness_core::rawrec::is_raw(&h);
                out.extend(if raw { CastView::header_line(&h) } else { plain });
                cur.raw = Some(raw);
            }
            Some(false) => out.extend(plain),
            Some(true) => {
                let mut view = CastView::with_carry(std::mem::take(&mut cur.carry));
                let mut at = 0;
                while let Some((frame, n)) = witness_core::rawrec::parse_frame(&plain[at..])? {
                    let ev = witness_core::rawrec::Event {
                        time: frame.micros as f64 / 1e6,
                        stream: frame.stream,
                        data: frame.data.to_vec(),
                    };
                    view.event(&ev, &mut out);
                    at += n;
                }
                cur.carry = view.into_carry();
            }
        }
    }
    Ok((out, cur))
}

/// Whether an SSH recording holds raw frames (`witness-raw/1`) rather than asciicast lines.
pub fn is_raw(dir: &DataDir, row: &RecordingRow) -> Result<bool> {
    if !is_ssh(row) {
        return Ok(false);
    }
    let path = dir.root.join(&row.path);
    let mut first = Vec::new();
    if path.exists() {
        use std::io::BufRead;
        let r = witness_recorder::open_plain(&path, &witness_keys::key_for(&dir.root))?;
        std::io::BufReader::new(r.take(64 * 1024)).read_until(b'\n', &mut first)?;
    } else {
        use std::io::BufRead;
        let part = crate::playback::playable(dir, &row.id)?.part(0, 64 * 1024)?;
        std::io::BufReader::new(part).read_until(b'\n', &mut first)?;
    }
    let mut d = Decoder::default();
    d.push(&first);
    Ok(matches!(d.header(), Ok(Some(_))) && d.is_raw())
}

/// What an export wrote, for the command to tell.
pub struct Exported {
    pub bytes: u64,
    /// The recording was still being written (its status): the export holds what was written.
    pub unfinished: Option<String>,
}

impl Exported {
    /// The lines a command shows: a note for an unfinished recording (stderr), then the summary.
    pub fn told(&self, id: &str, out: &Path) -> (Option<String>, String) {
        let note = self
            .unfinished
            .as_ref()
            .map(|status| format!("note: recording {id} is still {status}: exported what was written so far"));
        (note, format!("exported recording {id} ({} bytes) to {}", self.bytes, out.display()))
    }
}

/// Writes recording `id` to `out` as `view` (whole or not at all) and audits it.
pub fn export_recording(dir: &DataDir, id: &str, out: &Path, view: crate::views::View) -> Result<Exported> {
    let row = dir.index.recording(id)?.with_context(|| format!("no recording with id {id:?}"))?;
    let unfinished = row.sha256.is_none().then(|| row.status.to_string());
    let tmp = out.with_extension("part");
    let written = (|| {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?);
        let n = crate::views::write(dir, &row, &mut file, view)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        anyhow::Ok(n)
    })();
    let n = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp); // a partial export is no export
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    let how = match view {
        crate::views::View::Stored => "stored",
        crate::views::View::Player => "player",
        crate::views::View::Raw => "raw",
    };
    dir.index.audit(
        "recording_exported",
        None,
        None,
        Some(&row.session_id),
        &serde_json::json!({ "recording": id, "view": how }),
    )?;
    Ok(Exported { bytes: n as u64, unfinished })
}
