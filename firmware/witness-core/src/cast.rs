//! asciicast v2, the format of SSH recordings: the header line, one JSON array per event
//! (`[t, "o", "text"]`), the UTF-8 carry that keeps a character split across two packets whole,
//! and the scan that finds where a file cut by a crash stops being valid.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The first line of a cast. Fields past asciicast's own are ignored by players; `witness` keeps
/// the session's identity beside the recording so a file on its own says what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub width: u32,
    pub height: u32,
    /// Unix time (seconds) of the first event's zero.
    pub timestamp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<Provenance>,
    /// `witness-raw/1` when the events that follow are raw frames ([`crate::rawrec`]); absent
    /// in asciicast files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_format: Option<String>,
}

/// Who and what a recording is of, written into the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub session_id: String,
    pub recording_id: String,
    pub user: String,
    pub target: String,
    pub box_id: String,
}

impl Header {
    /// The header as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a header always serializes");
        line.push(b'\n');
        line
    }
}

/// Event codes of asciicast v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Output,
    Input,
    Resize,
    Marker,
}

impl EventKind {
    fn code(self) -> &'static str {
        match self {
            EventKind::Output => "o",
            EventKind::Input => "i",
            EventKind::Resize => "r",
            EventKind::Marker => "m",
        }
    }
}

/// Holds back the bytes of a UTF-8 character that a packet boundary cut in two, so the next
/// event gets the whole character instead of two replacement characters.
#[derive(Debug, Default, Clone)]
pub struct Utf8Carry {
    pending: Vec<u8>,
}

impl Utf8Carry {
    /// Appends `data` to what was held back and returns the longest prefix that is complete
    /// UTF-8 text (invalid sequences become U+FFFD, as terminals show them). Valid input with
    /// nothing held back is borrowed, not copied: this runs on every packet a session prints.
    pub fn push<'a>(&mut self, data: &'a [u8]) -> Cow<'a, str> {
        if self.pending.is_empty() {
            match std::str::from_utf8(data) {
                Ok(text) => return Cow::Borrowed(text),
                Err(e) if e.error_len().is_none() => {
                    let (head, tail) = data.split_at(e.valid_up_to());
                    self.pending.extend_from_slice(tail);
                    return Cow::Borrowed(std::str::from_utf8(head).unwrap_or_default());
                }
                Err(_) => {}
            }
        }
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let keep = incomplete_tail_len(&buf);
        self.pending = buf.split_off(buf.len() - keep);
        Cow::Owned(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A carry holding `pending` (what [`Utf8Carry::into_pending`] gave), at most a character's
    /// first three bytes.
    pub fn holding(mut pending: Vec<u8>) -> Self {
        pending.truncate(3);
        Self { pending }
    }

    /// The bytes held back.
    pub fn into_pending(self) -> Vec<u8> {
        self.pending
    }

    /// Whatever is still held back, for the end of a stream.
    pub fn flush(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// Length of a trailing, possibly valid but incomplete UTF-8 sequence (0 to 3 bytes).
fn incomplete_tail_len(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(3) {
        let b = buf[buf.len() - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

/// Appends one event line `[t, "code", "text"]\n` to `out`.
pub fn encode_event(out: &mut Vec<u8>, t: f64, kind: EventKind, text: &str) {
    use std::io::Write;
    let _ = write!(out, "[{t:.6}, \"{}\", ", kind.code());
    escape_json_str(out, text);
    out.extend_from_slice(b"]\n");
}

/// Appends a resize event (`"COLSxROWS"`).
pub fn encode_resize(out: &mut Vec<u8>, t: f64, cols: u32, rows: u32) {
    encode_event(out, t, EventKind::Resize, &format!("{cols}x{rows}"));
}

/// What each byte becomes inside a JSON string: 0 = itself, `u` = `\u00XX`, else `\` + that byte.
const ESCAPES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x7f] = b'u';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// JSON string escaping, table-driven because it runs on every byte a session prints.
fn escape_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPES[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: f64,
    pub code: String,
    pub data: String,
}

/// What a scan of a (possibly crash-cut) cast found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// Bytes from the start that form a valid cast: the header and every whole event.
    pub valid_len: usize,
    /// Time of the last whole event, 0 when there is none.
    pub last_time: f64,
    pub events: usize,
    /// Whether anything after `valid_len` had to be cut.
    pub truncated: bool,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CastError {
    #[error("recording has no valid asciicast v2 header")]
    NoHeader,
    #[error("event {index} is not a valid asciicast event")]
    BadEvent { index: usize },
    #[error("a frame of the recording is not valid")]
    BadFrame,
}

/// Finds the longest prefix of `buf` that is a valid cast. A crash can leave a half-written last
/// line, or (after a power cut) zeros the file system allocated but never wrote; both are cut.
pub fn scan(buf: &[u8]) -> Result<Scan, CastError> {
    let mut lines = buf.split_inclusive(|&b| b == b'\n');
    let header = lines.next().ok_or(CastError::NoHeader)?;
    if !header.ends_with(b"\n") {
        return Err(CastError::NoHeader);
    }
    match serde_json::from_slice::<Header>(header) {
        Ok(h) if h.version == 2 => {}
        _ => return Err(CastError::NoHeader),
    }
    let mut scan = Scan { valid_len: header.len(), last_time: 0.0, events: 0, truncated: false };
    for line in lines {
        let whole = line.ends_with(b"\n");
        match whole.then(|| parse_event(line)).flatten() {
            Some(ev) => {
                scan.valid_len += line.len();
                scan.last_time = ev.time;
                scan.events += 1;
            }
            None => {
                scan.truncated = true;
                break;
            }
        }
    }
    Ok(scan)
}

fn parse_event(line: &[u8]) -> Option<Event> {
    let (time, code, data): (f64, String, String) = serde_json::from_slice(line).ok()?;
    (time.is_finite() && time >= 0.0).then_some(Event { time, code, data })
}

/// Parses a whole cast (header and events), refusing anything invalid. Used by export checks and
/// tests; a crash-cut file goes through [`scan`] first.
pub fn parse(buf: &[u8]) -> Result<(Header, Vec<Event>), CastError> {
    let mut lines = buf.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let header: Header = lines.next().and_then(|l| serde_json::from_slice(l).ok()).ok_or(CastError::NoHeader)?;
    let events = lines
        .enumerate()
        .map(|(index, l)| parse_event(l).ok_or(CastError::BadEvent { index }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((header, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            version: 2,
            width: 80,
            height: 24,
            timestamp: 1_700_000_000,
            title: Some("alice@web01".into()),
            command: None,
            env: BTreeMap::from([("TERM".into(), "xterm".into())]),
            witness: None,
            witness_format: None,
        }
    }

    #[test]
    fn escapes_round_trip() {
        let text = "a\"b\\c\nd\re\tf\u{1b}[0m\u{7f}ü日本";
        let mut out = Vec::new();
        encode_event(&mut out, 1.5, EventKind::Output, text);
        let ev = parse_event(&out).unwrap();
        assert_eq!(ev, Event { time: 1.5, code: "o".into(), data: text.into() });
    }

    #[test]
    fn carry_keeps_split_characters() {
        let word = "日本語".as_bytes();
        let mut carry = Utf8Carry::default();
        let mut got = String::new();
        for chunk in word.chunks(2) {
            got.push_str(&carry.push(chunk));
        }
        assert!(matches!(carry.push(b"plain"), Cow::Borrowed("plain")), "valid text is not copied");
        got.push_str(&carry.flush());
        assert_eq!(got, "日本語");
        assert_eq!(carry.push(b"\xff ok"), "\u{fffd} ok");
        assert_eq!(carry.push(b"\xe6"), "");
        assert_eq!(carry.flush(), "\u{fffd}");
    }

    #[test]
    fn scan_cuts_partial_tail() {
        let mut file = header().to_line();
        encode_event(&mut file, 0.1, EventKind::Output, "hello");
        encode_resize(&mut file, 0.2, 100, 40);
        let whole = file.len();
        file.extend_from_slice(b"[0.3, \"o\", \"cut he");
        let s = scan(&file).unwrap();
        assert_eq!((s.valid_len, s.events, s.last_time, s.truncated), (whole, 2, 0.2, true));

        file.truncate(whole);
        file.extend_from_slice(&[0; 4096]);
        assert_eq!(scan(&file).unwrap().valid_len, whole);

        file.truncate(whole);
        let s = scan(&file).unwrap();
        assert!(!s.truncated);
        let (h, events) = parse(&file).unwrap();
        assert_eq!(h, header());
        assert_eq!(events[1].data, "100x40");
    }

    #[test]
    fn scan_refuses_garbage() {
        assert_eq!(scan(b""), Err(CastError::NoHeader));
        assert_eq!(scan(b"{\"version\": 2"), Err(CastError::NoHeader));
        assert_eq!(
            scan(b"{\"version\": 1, \"width\": 1, \"height\": 1, \"timestamp\": 0}\n"),
            Err(CastError::NoHeader)
        );
    }
}
