//! `witness-raw/1`, the lossless format of SSH recordings: the asciicast header line (with
//! `witness_format`), then binary frames holding the bytes exactly as they crossed the box —
//! `tag` (1 byte: `o` output, `e` stderr, `i` input, `r` resize, `m` marker), time since the
//! header (µs, u64 LE), length (u32 LE), bytes. Nothing is escaped or replaced, so binary costs
//! what text costs and `export --raw` rebuilds a download bit for bit. asciicast v2 is made from
//! it for players ([`CastView`]); [`Decoder`] reads recordings of either format, so ones written
//! as asciicast lines before this format stay readable.

use crate::cast::{self, CastError, EventKind, Header, Scan, Utf8Carry};

/// The `witness_format` of a header whose events are raw frames.
pub const FORMAT: &str = "witness-raw/1";
/// Bytes before a frame's data.
pub const FRAME_HEAD: usize = 13;
/// The largest frame data; longer writes are split (a reader refuses more, so a corrupt length
/// cannot make it buffer gigabytes).
pub const MAX_FRAME: usize = 1 << 20;

/// What a frame's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The target's output to the user (for a file transfer channel: target → user).
    Output,
    /// The target's stderr (extended data) to the user.
    Stderr,
    /// The user's bytes to the target (typed input when recorded; a transfer's upload).
    Input,
    /// A terminal size, `COLSxROWS`.
    Resize,
    /// Something the user learned that is not output (exit status, a transfer's hash), text.
    Marker,
}

impl Stream {
    pub fn tag(self) -> u8 {
        match self {
            Stream::Output => b'o',
            Stream::Stderr => b'e',
            Stream::Input => b'i',
            Stream::Resize => b'r',
            Stream::Marker => b'm',
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'o' => Stream::Output,
            b'e' => Stream::Stderr,
            b'i' => Stream::Input,
            b'r' => Stream::Resize,
            b'm' => Stream::Marker,
            _ => return None,
        })
    }

    /// Whether these bytes reached the user's screen (what `export --raw` writes).
    pub fn to_user(self) -> bool {
        matches!(self, Stream::Output | Stream::Stderr)
    }
}

/// A header for a new recording in this format.
pub fn header(mut h: Header) -> Header {
    h.witness_format = Some(FORMAT.to_owned());
    h
}

/// Whether a recording with this header holds raw frames.
pub fn is_raw(h: &Header) -> bool {
    h.witness_format.as_deref() == Some(FORMAT)
}

/// Appends `data` as frames of `stream` at `micros` (split at [`MAX_FRAME`]).
pub fn encode(out: &mut Vec<u8>, stream: Stream, micros: u64, data: &[u8]) {
    let mut parts = data.chunks(MAX_FRAME).peekable();
    if parts.peek().is_none() {
        push_frame(out, stream, micros, &[]);
    }
    for part in parts {
        push_frame(out, stream, micros, part);
    }
}

fn push_frame(out: &mut Vec<u8>, stream: Stream, micros: u64, data: &[u8]) {
    out.reserve(FRAME_HEAD + data.len());
    out.push(stream.tag());
    out.extend_from_slice(&micros.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
}

/// One frame, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub stream: Stream,
    pub micros: u64,
    pub data: &'a [u8],
}

/// The frame at the start of `buf` and its length; `Ok(None)` when `buf` holds only part of one.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, CastError> {
    let Some(&tag) = buf.first() else { return Ok(None) };
    let bad = CastError::BadFrame;
    let stream = Stream::from_tag(tag).ok_or(bad.clone())?;
    let Some(head) = buf.get(..FRAME_HEAD) else { return Ok(None) };
    let micros = u64::from_le_bytes(head[1..9].try_into().expect("eight bytes"));
    let len = u32::from_le_bytes(head[9..13].try_into().expect("four bytes")) as usize;
    if len > MAX_FRAME {
        return Err(bad);
    }
    Ok(buf.get(FRAME_HEAD..FRAME_HEAD + len).map(|data| (Frame { stream, micros, data }, FRAME_HEAD + len)))
}

/// The header line at the start of `buf` (newline included) and its length.
fn header_line(buf: &[u8]) -> Result<Option<(Header, usize)>, CastError> {
    let Some(end) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > 64 * 1024 { Err(CastError::NoHeader) } else { Ok(None) };
    };
    match serde_json::from_slice::<Header>(&buf[..end]) {
        Ok(h) if h.version == 2 => Ok(Some((h, end + 1))),
        _ => Err(CastError::NoHeader),
    }
}

/// Finds the longest valid prefix of a recording of either format (see [`cast::scan`]): the
/// header and every whole event or frame. A torn last frame, or zeros after a power cut, are cut.
pub fn scan(buf: &[u8]) -> Result<Scan, CastError> {
    let (h, mut at) = header_line(buf)?.ok_or(CastError::NoHeader)?;
    if !is_raw(&h) {
        return cast::scan(buf);
    }
    let mut scan = Scan { valid_len: at, last_time: 0.0, events: 0, truncated: false };
    loop {
        match parse_frame(&buf[at..]) {
            Ok(Some((f, n))) => {
                at += n;
                scan.valid_len = at;
                scan.last_time = scan.last_time.max(f.micros as f64 / 1e6);
                scan.events += 1;
            }
            Ok(None) if at == buf.len() => break,
            _ => {
                scan.truncated = true;
                break;
            }
        }
    }
    Ok(scan)
}

/// One event of a recording of either format, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the header.
    pub time: f64,
    pub stream: Stream,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Unknown,
    Cast,
    Raw,
}

/// Reads a recording's plaintext as it arrives, in pieces of any size, in either format: the
/// header, then events. Memory is what one event needs.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes dropped from the front of `buf`: with `pos`, how far into the plaintext it is.
    drained: u64,
    format: Format,
    header: Option<Header>,
    events: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self { buf: Vec::new(), pos: 0, drained: 0, format: Format::Unknown, header: None, events: 0 }
    }
}

/// A place in a raw recording's player view where the conversion can be taken up again without
/// reading what comes before it: after a whole frame, where the view and the plaintext are, and
/// what the view held back (a split character, the last time). A ranged request starts at the
/// mark before it instead of at the recording's start.
#[derive(Debug, Clone)]
pub struct ViewMark {
    /// Bytes of the player's view before this place.
    pub view_at: u64,
    /// Bytes of plaintext before this place (a frame starts here).
    pub plain_at: u64,
    events: usize,
    view: CastView,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.drained += self.pos as u64;
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The header, once its line has arrived.
    pub fn header(&mut self) -> Result<Option<&Header>, CastError> {
        if self.format == Format::Unknown {
            let Some((h, n)) = header_line(&self.buf[self.pos..])? else { return Ok(None) };
            self.format = if is_raw(&h) { Format::Raw } else { Format::Cast };
            self.header = Some(h);
            self.pos += n;
        }
        Ok(self.header.as_ref())
    }

    /// How many bytes of the plaintext the header and the events returned so far took.
    pub fn consumed(&self) -> u64 {
        self.drained + self.pos as u64
    }

    /// A mark at this place of a raw recording, whose player view `view` made `view_at` bytes so
    /// far; `None` for an asciicast recording (read as it is, with no frames to start at).
    pub fn mark(&self, view: &CastView, view_at: u64) -> Option<ViewMark> {
        (self.format == Format::Raw).then(|| ViewMark {
            view_at,
            plain_at: self.consumed(),
            events: self.events,
            view: view.clone(),
        })
    }

    /// A decoder and a view that go on from `mark` of a raw recording with header `header`: the
    /// bytes pushed next are the plaintext from `mark.plain_at` on.
    pub fn resume(header: Header, mark: &ViewMark) -> (Self, CastView) {
        let d = Self {
            buf: Vec::new(),
            pos: 0,
            drained: mark.plain_at,
            format: Format::Raw,
            header: Some(header),
            events: mark.events,
        };
        (d, mark.view.clone())
    }

    /// Whether the recording is in this format (known once the header arrived).
    pub fn is_raw(&self) -> bool {
        self.format == Format::Raw
    }

    /// The next whole event; `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<Event>, CastError> {
        if self.header()?.is_none() {
            return Ok(None);
        }
        let rest = &self.buf[self.pos..];
        let (ev, n) = match self.format {
            Format::Raw => match parse_frame(rest)? {
                Some((f, n)) => (Event { time: f.micros as f64 / 1e6, stream: f.stream, data: f.data.to_vec() }, n),
                None => return Ok(None),
            },
            _ => {
                let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                    if rest.len() > 4 * MAX_FRAME {
                        return Err(CastError::BadEvent { index: self.events });
                    }
                    return Ok(None);
                };
                let line = &rest[..end];
                if line.is_empty() {
                    self.pos += 1;
                    return self.next_event();
                }
                let (time, code, data): (f64, String, String) =
                    serde_json::from_slice(line).map_err(|_| CastError::BadEvent { index: self.events })?;
                let stream = match code.as_str() {
                    "o" => Stream::Output,
                    "i" => Stream::Input,
                    "r" => Stream::Resize,
                    "m" => Stream::Marker,
                    _ => return Err(CastError::BadEvent { index: self.events }),
                };
                (Event { time, stream, data: data.into_bytes() }, end + 1)
            }
        };
        self.pos += n;
        self.events += 1;
        Ok(Some(ev))
    }

    /// After the last piece: an error when bytes of a partial event are left (a cut recording).
    pub fn finish(&mut self) -> Result<(), CastError> {
        if self.header()?.is_none() {
            return Err(CastError::NoHeader);
        }
        match self.buf[self.pos..].iter().all(|&b| b == b'\n') {
            true => Ok(()),
            false => Err(CastError::BadEvent { index: self.events }),
        }
    }
}

/// Makes asciicast v2 lines from events, for players: output and stderr become `o` (text as a
/// terminal shows it, a character split across frames kept whole), input `i`.
#[derive(Debug, Default, Clone)]
pub struct CastView {
    out: Utf8Carry,
    input: Utf8Carry,
    last: f64,
}

impl CastView {
    /// The header line players read (without `witness_format`: a cast holds no frames).
    pub fn header_line(h: &Header) -> Vec<u8> {
        let mut h = h.clone();
        h.witness_format = None;
        h.to_line()
    }

    pub fn event(&mut self, ev: &Event, out: &mut Vec<u8>) {
        self.last = self.last.max(ev.time);
        let t = self.last;
        match ev.stream {
            Stream::Output | Stream::Stderr => {
                let text = self.out.push(&ev.data);
                if !text.is_empty() {
                    cast::encode_event(out, t, EventKind::Output, &text);
                }
            }
            Stream::Input => {
                let text = self.input.push(&ev.data);
                if !text.is_empty() {
                    cast::encode_event(out, t, EventKind::Input, &text);
                }
            }
            Stream::Resize => cast::encode_event(out, t, EventKind::Resize, &String::from_utf8_lossy(&ev.data)),
            Stream::Marker => cast::encode_event(out, t, EventKind::Marker, &String::from_utf8_lossy(&ev.data)),
        }
    }

    /// A view that goes on from where one that gave [`CastView::into_carry`] stopped.
    pub fn with_carry(carry: [Vec<u8>; 2]) -> Self {
        let [out, input] = carry;
        Self { out: Utf8Carry::holding(out), input: Utf8Carry::holding(input), last: 0.0 }
    }

    /// The bytes of split characters held back (output, input), to go on later.
    pub fn into_carry(self) -> [Vec<u8>; 2] {
        [self.out.into_pending(), self.input.into_pending()]
    }

    /// What a split character held back, at the end.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let t = self.last;
        let rest = self.out.flush();
        if !rest.is_empty() {
            cast::encode_event(out, t, EventKind::Output, &rest);
        }
        let rest = self.input.flush();
        if !rest.is_empty() {
            cast::encode_event(out, t, EventKind::Input, &rest);
        }
    }
}

/// A whole recording's plaintext (either format) as asciicast v2: a cast is returned as it is, a
/// raw recording converted.
pub fn to_cast(plain: &[u8]) -> Result<Vec<u8>, CastError> {
    let mut d = Decoder::default();
    d.push(plain);
    let h = d.header()?.ok_or(CastError::NoHeader)?.clone();
    if !d.is_raw() {
        return Ok(plain.to_vec());
    }
    let mut out = CastView::header_line(&h);
    let mut view = CastView::default();
    while let Some(ev) = d.next_event()? {
        view.event(&ev, &mut out);
    }
    d.finish()?;
    view.finish(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn h() -> Header {
        header(Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 1_700_000_000,
            title: None,
            command: None,
            env: BTreeMap::new(),
            witness: None,
            witness_format: None,
        })
    }

    fn sample() -> (Vec<u8>, Vec<u8>) {
        let mut file = h().to_line();
        let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        encode(&mut file, Stream::Output, 10, b"hello \xe6\x97");
        encode(&mut file, Stream::Output, 20, b"\xa5\r\n");
        encode(&mut file, Stream::Stderr, 30, &binary);
        encode(&mut file, Stream::Input, 40, b"ls\r");
        encode(&mut file, Stream::Resize, 50, b"100x30");
        encode(&mut file, Stream::Marker, 60, b"exit status 0");
        let mut to_user = b"hello \xe6\x97\xa5\r\n".to_vec();
        to_user.extend_from_slice(&binary);
        (file, to_user)
    }

    #[test]
    fn frames_keep_every_byte_and_decode_in_any_pieces() {
        let (file, to_user) = sample();
        for piece in [1, 7, 13, 4096] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut events = 0;
            for p in file.chunks(piece) {
                d.push(p);
                while let Some(ev) = d.next_event().unwrap() {
                    events += 1;
                    if ev.stream.to_user() {
                        got.extend_from_slice(&ev.data);
                    }
                }
            }
            d.finish().unwrap();
            assert!(d.is_raw());
            assert_eq!((events, &got), (6, &to_user), "pieces of {piece}");
        }
    }

    /// The view made from a mark on is the whole view's bytes from the mark's place on, for a
    /// mark after every frame, with characters split across frames and the file fed in pieces.
    #[test]
    fn a_view_taken_up_at_any_mark_goes_on_as_the_whole_view() {
        let mut file = h().to_line();
        let header_len = file.len() as u64;
        for i in 0..40u64 {
            encode(&mut file, Stream::Output, i * 10, "é€😀 x".as_bytes().split_at((i % 7) as usize).0);
            encode(&mut file, Stream::Output, i * 10 + 1, "é€😀 x".as_bytes().split_at((i % 7) as usize).1);
            encode(&mut file, Stream::Input, i * 10 + 2, b"\xe2");
            encode(&mut file, Stream::Input, i * 10 + 3, b"\x82\xac");
            encode(&mut file, Stream::Resize, i * 10 + 4, b"80x24");
        }
        let whole = to_cast(&file).unwrap();
        let (header, _) = header_line(&file).unwrap().unwrap();
        for piece in [1, 5, 64, 4096] {
            let mut d = Decoder::default();
            let mut view = CastView::default();
            let mut made = Vec::new();
            let mut marks = Vec::new();
            for p in file.chunks(piece) {
                d.push(p);
                if made.is_empty() && d.header().unwrap().is_some() {
                    made = CastView::header_line(d.header().unwrap().unwrap());
                }
                while let Some(ev) = d.next_event().unwrap() {
                    view.event(&ev, &mut made);
                    marks.push(d.mark(&view, made.len() as u64).unwrap());
                }
            }
            view.finish(&mut made);
            assert_eq!(made, whole, "pieces of {piece}");
            assert_eq!(marks.len(), 200);
            assert!(marks[0].plain_at > header_len);
            for m in marks.iter().step_by(7) {
                let (mut d, mut view) = Decoder::resume(header.clone(), m);
                let mut rest = Vec::new();
                for p in file[m.plain_at as usize..].chunks(piece) {
                    d.push(p);
                    while let Some(ev) = d.next_event().unwrap() {
                        view.event(&ev, &mut rest);
                    }
                }
                d.finish().unwrap();
                view.finish(&mut rest);
                assert_eq!(rest, &whole[m.view_at as usize..], "from {} in pieces of {piece}", m.plain_at);
            }
        }
    }

    #[test]
    fn casts_are_made_for_players_and_old_casts_read_as_they_are() {
        let (file, _) = sample();
        let cast = to_cast(&file).unwrap();
        let (header, events) = cast::parse(&cast).unwrap();
        assert_eq!(header.witness_format, None, "a player reads a plain asciicast header");
        assert_eq!(events[0].data, "hello ");
        assert_eq!(events[1].data, "日\r\n", "a character split across frames is whole");
        assert_eq!((events.last().unwrap().code.as_str(), events.last().unwrap().time), ("m", 60e-6));
        // An asciicast recording (the format before this one) decodes to the same events.
        let mut old = h();
        old.witness_format = None;
        let mut old = old.to_line();
        cast::encode_event(&mut old, 0.5, EventKind::Output, "hi");
        cast::encode_resize(&mut old, 0.6, 90, 20);
        assert_eq!(to_cast(&old).unwrap(), old);
        let mut d = Decoder::default();
        d.push(&old);
        let first = d.next_event().unwrap().unwrap();
        assert_eq!((first.stream, first.data.as_slice()), (Stream::Output, b"hi".as_slice()));
        assert_eq!(d.next_event().unwrap().unwrap().data, b"90x20");
        assert!(d.next_event().unwrap().is_none());
        d.finish().unwrap();
    }

    #[test]
    fn scan_cuts_a_torn_frame_and_zeros() {
        let (mut file, _) = sample();
        let whole = file.len();
        let s = scan(&file).unwrap();
        assert_eq!((s.valid_len, s.events, s.truncated), (whole, 6, false));
        file.extend_from_slice(&[b'o', 1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, b'x']);
        let s = scan(&file).unwrap();
        assert_eq!((s.valid_len, s.events, s.truncated), (whole, 6, true));
        file.truncate(whole);
        file.extend_from_slice(&[0; 512]);
        assert_eq!(scan(&file).unwrap().valid_len, whole);
        let mut d = Decoder::default();
        d.push(&file);
        while let Ok(Some(_)) = d.next_event() {}
        assert!(d.finish().is_err(), "a cut recording is not whole");
    }

    #[test]
    fn lengths_from_outside_are_bounded() {
        let mut file = h().to_line();
        file.extend_from_slice(&[b'o', 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]);
        let mut d = Decoder::default();
        d.push(&file);
        assert_eq!(d.next_event(), Err(CastError::BadFrame));
        assert!(scan(&file).unwrap().truncated);
        let mut big = Vec::new();
        encode(&mut big, Stream::Output, 0, &vec![7u8; MAX_FRAME + 5]);
        assert_eq!(big.len(), 2 * FRAME_HEAD + MAX_FRAME + 5, "split, not refused");
    }
}
