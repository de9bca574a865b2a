//! A passive SFTP observer: fed the bytes of an `sftp` subsystem channel in both directions, it
//! reports file operations (which path, which direction, how many bytes) for the audit log. It
//! never changes the stream and never stores file contents: of a WRITE or DATA packet it reads
//! only the header and counts the rest.

use std::collections::HashMap;

const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;

const PFLAG_WRITE: u32 = 0x02;

/// Bytes of a bulk packet (WRITE, DATA) needed to read its header: id, handle (≤ 256), offset.
const BULK_PREFIX: usize = 4 + 4 + 256 + 8 + 4;
/// Other packets are buffered whole up to this size; anything larger is skipped unread.
const MAX_CONTROL_PACKET: usize = 64 * 1024;
/// Bound on tracked handles and outstanding requests, so a client cannot grow the box's memory.
const MAX_TRACKED: usize = 4096;

/// A file operation seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Bytes written to `path` (an upload, direction client → target).
    Upload {
        path: String,
        bytes: u64,
    },
    /// Bytes read from `path` (a download, direction target → client).
    Download {
        path: String,
        bytes: u64,
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
    Rename {
        from: String,
        to: String,
        ok: bool,
    },
}

#[derive(Debug)]
struct OpenFile {
    path: String,
    writable: bool,
    written: u64,
    read: u64,
}

/// One direction's packet framing.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    /// Body bytes of the current packet still to be skipped without buffering.
    skip: usize,
}

/// A packet's type and the part of its body that was kept (all of it, or a bulk packet's prefix).
struct Packet<'a> {
    kind: u8,
    body: &'a [u8],
    /// Full body length (may exceed `body.len()` for bulk packets).
    len: usize,
}

impl Framer {
    /// Feeds bytes, calling `f` for each packet as soon as enough of it is known.
    fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(Packet<'_>)) {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip > 0 {
                    return;
                }
            }
            // Take only what the current packet needs, so bulk payloads are never copied.
            let want = self.wanted();
            if self.buf.len() < want {
                if data.is_empty() {
                    return;
                }
                let take = (want - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                continue;
            }
            let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            let kind = self.buf[4];
            let body_total = len.saturating_sub(1);
            let kept = &self.buf[5..];
            f(Packet { kind, body: kept, len: body_total });
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
            FXP_WRITE | FXP_DATA => body.min(BULK_PREFIX),
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
    /// OPEN requests waiting for their HANDLE reply.
    opening: HashMap<u32, (String, bool)>,
    files: HashMap<Vec<u8>, OpenFile>,
    /// READ requests waiting for DATA: request id → handle.
    reading: HashMap<u32, Vec<u8>>,
    /// Path operations waiting for their STATUS.
    pending: HashMap<u32, FileOp>,
}

impl SftpObserver {
    /// Bytes from the client (requests).
    pub fn client(&mut self, data: &[u8]) -> Vec<FileOp> {
        let mut out = Vec::new();
        let Self { to_server, opening, files, reading, pending, .. } = self;
        to_server.feed(data, |p| {
            let mut r = Reader(p.body);
            let Some(id) = r.u32() else { return };
            match p.kind {
                FXP_OPEN => {
                    if let (Some(path), Some(flags)) = (r.string(), r.u32()) {
                        bounded_insert(opening, id, (path, flags & PFLAG_WRITE != 0));
                    }
                }
                FXP_WRITE => {
                    // id, handle, offset (8), data length (4) then data
                    if let Some(handle) = r.bytes()
                        && let Some(file) = files.get_mut(handle)
                    {
                        let header = 4 + 4 + handle.len() + 8 + 4;
                        file.written += p.len.saturating_sub(header) as u64;
                    }
                }
                FXP_READ => {
                    if let Some(handle) = r.bytes() {
                        bounded_insert(reading, id, handle.to_vec());
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
                        bounded_insert(pending, id, op);
                    }
                }
                FXP_RENAME => {
                    if let (Some(from), Some(to)) = (r.string(), r.string()) {
                        bounded_insert(pending, id, FileOp::Rename { from, to, ok: false });
                    }
                }
                _ => {}
            }
        });
        out
    }

    /// Bytes from the target (responses).
    pub fn server(&mut self, data: &[u8]) -> Vec<FileOp> {
        let mut out = Vec::new();
        let Self { to_client, opening, files, reading, pending, .. } = self;
        to_client.feed(data, |p| {
            let mut r = Reader(p.body);
            let Some(id) = r.u32() else { return };
            match p.kind {
                FXP_HANDLE => {
                    if let (Some((path, writable)), Some(handle)) = (opening.remove(&id), r.bytes()) {
                        let file = OpenFile { path, writable, written: 0, read: 0 };
                        if files.len() < MAX_TRACKED {
                            files.insert(handle.to_vec(), file);
                        }
                    }
                }
                FXP_DATA => {
                    if let Some(handle) = reading.remove(&id)
                        && let Some(file) = files.get_mut(&handle)
                    {
                        file.read += p.len.saturating_sub(4 + 4) as u64;
                    }
                }
                FXP_STATUS => {
                    let ok = r.u32() == Some(0);
                    opening.remove(&id);
                    reading.remove(&id);
                    if let Some(mut op) = pending.remove(&id) {
                        match &mut op {
                            FileOp::Remove { ok: o, .. }
                            | FileOp::Mkdir { ok: o, .. }
                            | FileOp::Rmdir { ok: o, .. }
                            | FileOp::Rename { ok: o, .. } => *o = ok,
                            FileOp::Upload { .. } | FileOp::Download { .. } => {}
                        }
                        out.push(op);
                    }
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
    if file.writable || file.written > 0 {
        ops.push(FileOp::Upload { path: file.path.clone(), bytes: file.written });
    }
    if file.read > 0 || !file.writable {
        ops.push(FileOp::Download { path: file.path, bytes: file.read });
    }
    ops
}

fn bounded_insert<V>(map: &mut HashMap<u32, V>, id: u32, v: V) {
    if map.len() < MAX_TRACKED {
        map.insert(id, v);
    }
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
        assert_eq!(ops, vec![FileOp::Upload { path: "/tmp/up".into(), bytes: 200_000 }]);

        o.client(&packet(FXP_OPEN, &body(&[&4u32.to_be_bytes(), &s(b"/etc/hosts"), &1u32.to_be_bytes(), &[0; 4]])));
        o.server(&packet(FXP_HANDLE, &body(&[&4u32.to_be_bytes(), &s(b"h2")])));
        o.client(&packet(
            FXP_READ,
            &body(&[&5u32.to_be_bytes(), &s(b"h2"), &0u64.to_be_bytes(), &4096u32.to_be_bytes()]),
        ));
        o.server(&packet(FXP_DATA, &body(&[&5u32.to_be_bytes(), &s(&[1; 321])])));
        assert_eq!(o.finish(), vec![FileOp::Download { path: "/etc/hosts".into(), bytes: 321 }]);
    }

    #[test]
    fn path_operations_report_status() {
        let req = packet(FXP_RENAME, &body(&[&9u32.to_be_bytes(), &s(b"a"), &s(b"b")]));
        let mut o = SftpObserver::default();
        assert!(both(&req, |o, d| o.client(d)).is_empty());
        o.client(&req);
        let status = packet(FXP_STATUS, &body(&[&9u32.to_be_bytes(), &0u32.to_be_bytes()]));
        assert_eq!(o.server(&status), vec![FileOp::Rename { from: "a".into(), to: "b".into(), ok: true }]);
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
