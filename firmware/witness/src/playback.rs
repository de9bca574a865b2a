//! Where a recording is played and exported from: its file on the box or, once pruned, its
//! object in the store (through the read credentials), read part by part by
//! [`witness_archive::playback`], never whole. The first request walks the stored bytes once
//! (hashing them against the index) and keeps the layout while they stay as they were (a file:
//! size, inode, mtime and ctime, which no one can set back; an object: its key and hash), so a
//! ranged request after it costs its range: the records that cover it are read (from the store,
//! fetched by range) and opened one at a time as the client reads.

use crate::datadir::DataDir;
use anyhow::{Context, Result, bail};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, LazyLock};
use witness_archive::Format;
use witness_archive::playback::{Forward, Layout, Layouts, OnDisk, Part, Stored, Walk, walk};
use witness_index::RecordingRow;

/// The layouts walked by this process.
static LAYOUTS: LazyLock<Layouts> = LazyLock::new(Layouts::default);

/// A recording ready to be read, part by part.
pub struct Playable {
    pub row: RecordingRow,
    src: Box<dyn Stored>,
    layout: Arc<Layout>,
    root: std::path::PathBuf,
    /// Where the bytes come from, for errors.
    from: String,
    in_store: bool,
}

impl std::fmt::Debug for Playable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playable").field("id", &self.row.id).field("len", &self.layout.len()).finish_non_exhaustive()
    }
}

impl Playable {
    /// How many playable bytes there are.
    pub fn len(&self) -> u64 {
        self.layout.len()
    }

    /// The playable bytes from `first` to `end` (exclusive), decrypted as they are read. The
    /// first piece is read now: a store that cannot give it fails here, not mid-answer.
    pub fn part(&self, first: u64, end: u64) -> Result<Part> {
        let what = if self.in_store { "fetching" } else { "reading" };
        let context = || format!("{what} recording {} from {}", self.row.id, self.from);
        let mut part =
            self.layout.part(&*self.src, &witness_keys::key_for(&self.root), first, end).with_context(context)?;
        part.prime().with_context(context)?;
        Ok(part)
    }

    /// All the playable bytes, decrypted as they are read.
    pub fn reader(&self) -> Result<Part> {
        self.part(0, self.len())
    }
}

/// Recording `id`, from the box or, once pruned, from the store. A finished recording must
/// match its recorded sha256; one being written is read up to its last whole record; a video
/// cut by a crash or being written plays to its last whole fragment.
pub fn playable(dir: &DataDir, id: &str) -> Result<Playable> {
    let row = dir.index.recording(id)?.with_context(|| format!("no recording with id {id:?}"))?;
    if let Some(at) = dir.index.deleted_at(id)? {
        bail!("recording {id} was deleted at {at}: it was past its target's retention");
    }
    let path = dir.root.join(&row.path);
    let video = Format::of_path(&row.path) == Format::Mp4;
    let key_for = witness_keys::key_for(&dir.root);
    if dir.index.is_pruned(id)? || !path.exists() {
        let (key, state) = dir
            .index
            .upload_key(id)?
            .with_context(|| format!("recording {id} is neither on the box nor queued for the store"))?;
        if state != "verified" {
            bail!("recording {id} is missing from the box and not yet in the store");
        }
        let store = Arc::new(crate::sync::open_read_store(dir)?);
        let from = store.describe().to_owned();
        let src = InStore { store, key: key.clone(), size: row.bytes };
        // A stored object does not change under its key and hash; without a hash it is walked
        // (and fetched) again at every request.
        let identity = row.sha256.as_ref().map(|s| format!("store {key} {s}"));
        let how = Walk { sha256: row.sha256.as_deref(), lenient: false, whole_fragments: video && row.recovered };
        let layout = LAYOUTS
            .get(id, identity, || walk(&src, &key_for, how))
            .with_context(|| format!("fetching recording {id} from {from}"))?;
        return Ok(Playable { row, src: Box::new(src), layout, root: dir.root.clone(), from, in_store: true });
    }
    let meta = std::fs::metadata(&path).with_context(|| format!("reading recording {id} at {}", path.display()))?;
    let writing = row.status == witness_core::RecordingStatus::Recording;
    // Being written: no hash to check yet, and the file grows, so its layout is not kept.
    let identity = (!writing).then(|| {
        format!(
            "{} {} {}.{} {}.{}",
            meta.len(),
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec()
        )
    });
    let src = OnDisk { path: path.clone(), len: meta.len() };
    let how = Walk {
        sha256: if writing { None } else { row.sha256.as_deref() },
        lenient: writing,
        whole_fragments: video && (writing || row.recovered),
    };
    let layout = LAYOUTS
        .get(id, identity, || walk(&src, &key_for, how))
        .with_context(|| format!("reading recording {id} at {}", path.display()))?;
    Ok(Playable {
        row,
        src: Box::new(src),
        layout,
        root: dir.root.clone(),
        from: path.display().to_string(),
        in_store: false,
    })
}

/// A stored object of `size` bytes, read forward in ranged fetches (never whole).
pub fn store_reader(
    store: Arc<witness_store::Store>,
    key: String,
    size: u64,
) -> std::io::Result<impl std::io::Read + Send> {
    StoreReader::new(store, key, size, 0)
}

/// A stored object of a length not known, read forward in ranged fetches to its end (a fetch
/// answered short is its last): for a recording no session manifest lists (`index rebuild
/// --from-store`), whose bytes are then checked against its signed manifest.
pub fn store_reader_to_end(
    store: Arc<witness_store::Store>,
    key: String,
) -> std::io::Result<impl std::io::Read + Send> {
    let mut r = StoreReader::new(store, key, u64::MAX, 0)?;
    r.open_ended = true;
    Ok(r)
}

/// A recording's object in the store.
struct InStore {
    store: Arc<witness_store::Store>,
    key: String,
    size: u64,
}

impl Stored for InStore {
    fn read_from(&self, at: u64) -> std::io::Result<Box<dyn Forward>> {
        Ok(Box::new(StoreReader::new(self.store.clone(), self.key.clone(), self.size, at)?))
    }

    fn stored_len(&self) -> u64 {
        self.size
    }
}

/// The most of a stored object fetched at a time: what one reader holds (an answer is copied
/// once on its way in, so about twice this), whatever the recording's size.
const STORE_WINDOW: u64 = 512 * 1024;
/// The least fetched at a time: a ranged read starts small (a part of a few records) and grows.
const STORE_FIRST_WINDOW: u64 = 128 * 1024;

/// A stored object read forward in ranged fetches (growing to [`STORE_WINDOW`]), as a blocking
/// reader; skipped bytes beyond the fetched window are never fetched.
struct StoreReader {
    store: Arc<witness_store::Store>,
    key: String,
    size: u64,
    /// Where the next fetch starts.
    offset: u64,
    next_window: u64,
    window: Vec<u8>,
    pos: usize,
    own: Option<tokio::runtime::Runtime>,
    /// The length is not known: a fetch answered short (or empty) ends the object.
    open_ended: bool,
}

impl StoreReader {
    fn new(store: Arc<witness_store::Store>, key: String, size: u64, at: u64) -> std::io::Result<Self> {
        // On a blocking thread of the daemon's runtime (the console) its handle is used;
        // elsewhere (the CLI) a runtime of our own.
        let own = match tokio::runtime::Handle::try_current() {
            Ok(_) => None,
            Err(_) => Some(tokio::runtime::Builder::new_current_thread().enable_all().build()?),
        };
        Ok(Self {
            store,
            key,
            size,
            offset: at.min(size),
            next_window: STORE_FIRST_WINDOW,
            window: Vec::new(),
            pos: 0,
            own,
            open_ended: false,
        })
    }
}

impl std::io::Read for StoreReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.window.len() {
            if self.offset >= self.size {
                return Ok(0);
            }
            let len = self.next_window.min(self.size - self.offset);
            self.next_window = (self.next_window * 2).min(STORE_WINDOW);
            let fetch = self.store.get_range(&self.key, self.offset, len);
            let got = match &self.own {
                Some(rt) => rt.block_on(fetch),
                None => tokio::runtime::Handle::current().block_on(fetch),
            };
            self.window = got.map_err(std::io::Error::other)?;
            self.pos = 0;
            if self.open_ended && (self.window.len() as u64) < len {
                // Its end: what was read is the whole object.
                self.size = self.offset + self.window.len() as u64;
                if self.window.is_empty() {
                    return Ok(0);
                }
            }
            if self.window.is_empty() {
                return Err(std::io::Error::other(format!(
                    "the stored object ends at byte {}, expected {}",
                    self.offset, self.size
                )));
            }
            self.offset += self.window.len() as u64;
        }
        let n = buf.len().min(self.window.len() - self.pos);
        buf[..n].copy_from_slice(&self.window[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Forward for StoreReader {
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let left = (self.window.len() - self.pos) as u64;
        if n <= left {
            self.pos += n as usize;
        } else {
            // Past the window: the next fetch starts after the skipped bytes.
            self.offset = (self.offset + (n - left)).min(self.size);
            self.window.clear();
            self.pos = 0;
        }
        Ok(())
    }
}
