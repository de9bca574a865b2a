//! What a terminal session printed, as searchable text: escape sequences and control bytes
//! stripped, backspaces applied, lines grouped into timed chunks. Runs when a recording is
//! sealed, never on the relay's path (a terminal emulator fed every byte live is what makes some
//! bastions slow).
//!
//! Session text is what recordings are encrypted to protect, so the index never holds it in
//! clear: it holds a *blind index* — each word as a keyed hash (HMAC-SHA256 under the box's
//! search key) for FTS5 to match — and the chunk text sealed (XChaCha20-Poly1305) for snippets
//! and hit times, opened only when a search shows results.

/// Output time covered by one chunk at most: a hit jumps to within this of the match.
pub const CHUNK_SECONDS: f64 = 1.0;
/// Characters in one chunk at most.
pub const CHUNK_CHARS: usize = 2000;
/// Text indexed per recording at most: a bulk dump is not something anyone searches through,
/// and it must not grow the index without bound.
pub const MAX_TEXT: usize = 8 << 20;

/// A piece of the session's text and when (seconds into the recording) each of its lines
/// started, so a search hit can point at the line, not just the chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub at: f64,
    pub text: String,
    pub line_times: Vec<f64>,
    /// Per line, where later output events went on printing it: (character in the line, time).
    /// A hit then points at the event that printed the match, not where its line began.
    pub line_steps: Vec<Vec<(u32, f64)>>,
}

impl Chunk {
    fn new(at: f64) -> Self {
        Self { at, text: String::new(), line_times: Vec::new(), line_steps: Vec::new() }
    }
}

/// The shortest prefix a `word*` search takes, and the longest kept as a token (a longer one is
/// matched on its first [`PREFIX_MAX`] characters, then checked in the opened text).
pub const PREFIX_MIN: usize = 3;
pub const PREFIX_MAX: usize = 12;

/// One part of a search: all of a query's terms must be in the same chunk of output.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// A whole word, any case.
    Word(String),
    /// `abc*`: any word starting with it.
    Prefix(String),
    /// `"two words"`: the words next to each other, in order, on one line.
    Phrase(Vec<String>),
}

/// The terms of a search box's text: words, `prefix*` (at least [`PREFIX_MIN`] letters) and
/// `"quoted phrases"`; an unclosed quote runs to the end.
pub fn parse_query(query: &str) -> Vec<Term> {
    let mut terms = Vec::new();
    for (i, part) in query.split('"').enumerate() {
        if i % 2 == 1 {
            let w = words(part);
            match w.len() {
                0 => {}
                1 => terms.push(Term::Word(w[0].clone())),
                _ => terms.push(Term::Phrase(w)),
            }
            continue;
        }
        for piece in part.split_whitespace() {
            let w = words(piece);
            match (piece.strip_suffix('*'), w.as_slice()) {
                (Some(_), [one]) if one.chars().count() >= PREFIX_MIN => terms.push(Term::Prefix(one.clone())),
                _ => terms.extend(w.into_iter().map(Term::Word)),
            }
        }
    }
    terms
}

/// The blind tokens a query's chunks must all hold.
pub fn query_tokens(key: &[u8; 32], terms: &[Term]) -> Vec<String> {
    let mut out = Vec::new();
    for t in terms {
        match t {
            Term::Word(w) => out.push(blind(key, w)),
            Term::Prefix(p) => out.push(blind_prefix(key, p)),
            Term::Phrase(ws) => out.extend(ws.iter().map(|w| blind(key, w))),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Where a query matched in a chunk's text: the line, the characters `[start, end)` in it, and
/// when the output event that printed the match's last character came.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub line: usize,
    pub start: usize,
    pub end: usize,
    pub at: f64,
}

/// The words of a line with where they are: (first character, past the last, lowercase word).
fn word_spans(line: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    let mut n = 0;
    for (i, c) in line.chars().enumerate() {
        n = i + 1;
        if c.is_alphanumeric() || c == '_' {
            cur.get_or_insert_with(|| (i, String::new())).1.extend(c.to_lowercase());
        } else if let Some((start, w)) = cur.take() {
            out.push((start, i, w));
        }
    }
    if let Some((start, w)) = cur {
        out.push((start, n, w));
    }
    out
}

/// Every place in a chunk where one of the terms matched, in order, when the chunk holds all of
/// them (the index matched the words; a phrase's order and a long prefix are checked here);
/// empty otherwise.
pub fn find_matches(text: &str, line_times: &[f64], line_steps: &[Vec<(u32, f64)>], terms: &[Term]) -> Vec<Match> {
    let mut found = Vec::new();
    let mut seen = vec![false; terms.len()];
    for (line_no, line) in text.lines().enumerate() {
        let spans = word_spans(line);
        for (k, term) in terms.iter().enumerate() {
            let places: Vec<(usize, usize)> = match term {
                Term::Word(w) => spans.iter().filter(|s| &s.2 == w).map(|s| (s.0, s.1)).collect(),
                Term::Prefix(p) => spans.iter().filter(|s| s.2.starts_with(p.as_str())).map(|s| (s.0, s.1)).collect(),
                Term::Phrase(ws) => spans
                    .windows(ws.len())
                    .filter(|win| win.iter().zip(ws).all(|(s, w)| &s.2 == w))
                    .map(|win| (win[0].0, win[win.len() - 1].1))
                    .collect(),
            };
            seen[k] |= !places.is_empty();
            for (start, end) in places {
                let first = line_times.get(line_no).copied().unwrap_or(0.0);
                let at = line_steps
                    .get(line_no)
                    .and_then(|steps| steps.iter().take_while(|&&(c, _)| (c as usize) < end).last())
                    .map_or(first, |&(_, t)| t);
                found.push(Match { line: line_no, start, end, at });
            }
        }
    }
    if terms.is_empty() || !seen.iter().all(|&s| s) {
        return Vec::new();
    }
    found.sort_by_key(|m| (m.line, m.start));
    found.dedup_by_key(|m| (m.line, m.start));
    found
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// CSI: until a final byte 0x40..=0x7e.
    Csi,
    /// OSC/DCS/APC/PM/SOS: until BEL or ESC \.
    String,
    /// ESC inside a string: a backslash next ends the string.
    StringEnd,
}

/// Turns output events (time, text) into chunks of plain text.
#[derive(Debug)]
pub struct TextExtractor {
    esc: Esc,
    line: String,
    line_at: Option<f64>,
    /// Where later events went on printing the line being read: (character, time).
    line_steps: Vec<(u32, f64)>,
    last_line: String,
    chunk: Chunk,
    out: Vec<Chunk>,
    total: usize,
}

impl Default for TextExtractor {
    fn default() -> Self {
        Self {
            esc: Esc::None,
            line: String::new(),
            line_at: None,
            line_steps: Vec::new(),
            last_line: String::new(),
            chunk: Chunk::new(0.0),
            out: Vec::new(),
            total: 0,
        }
    }
}

impl TextExtractor {
    pub fn output(&mut self, at: f64, data: &str) {
        let mut rest = data;
        while let Some(c) = rest.chars().next() {
            if self.total >= MAX_TEXT {
                return;
            }
            if self.esc == Esc::None {
                // Runs of printable ASCII (most output) go in whole: char by char, this loop
                // cost more than decrypting and decoding the recording together.
                // Scanned only as far as the line has room: a long run (a bulk dump without
                // line breaks) was scanned to its end again for each line cut from it.
                let room = CHUNK_CHARS.saturating_sub(self.line.len()).clamp(1, rest.len());
                let run = rest.as_bytes()[..room].iter().position(|b| !(0x20..0x7f).contains(b)).unwrap_or(room);
                if run > 0 {
                    self.push_str(at, &rest[..run]);
                    rest = &rest[run..];
                    continue;
                }
                // Likewise runs of controls that change nothing (binary output: NULs).
                let inert = |b: u8| (b < 0x20 && !b"\n\r\x08\t\x1b".contains(&b)) || b == 0x7f;
                let run = rest.bytes().position(|b| !inert(b)).unwrap_or(rest.len());
                if run > 0 {
                    rest = &rest[run..];
                    continue;
                }
            }
            rest = &rest[c.len_utf8()..];
            self.esc = match (self.esc, c) {
                (Esc::None, '\u{1b}') => Esc::Start,
                (Esc::None, '\n' | '\r') => {
                    self.end_line();
                    Esc::None
                }
                (Esc::None, '\u{8}') => {
                    self.line.pop();
                    let len = self.line.chars().count() as u32;
                    self.line_steps.retain(|&(c, _)| c < len);
                    Esc::None
                }
                (Esc::None, '\t') => {
                    self.push(at, ' ');
                    Esc::None
                }
                (Esc::None, c) if c.is_control() => Esc::None,
                (Esc::None, c) => {
                    self.push(at, c);
                    Esc::None
                }
                (Esc::Start, '[') => Esc::Csi,
                (Esc::Start, ']' | 'P' | '_' | '^' | 'X') => Esc::String,
                (Esc::Start, _) => Esc::None,
                (Esc::Csi, c) if ('\u{40}'..='\u{7e}').contains(&c) => Esc::None,
                (Esc::Csi, _) => Esc::Csi,
                (Esc::String, '\u{7}') => Esc::None,
                (Esc::String, '\u{1b}') => Esc::StringEnd,
                (Esc::String, _) => Esc::String,
                (Esc::StringEnd, '\\') => Esc::None,
                (Esc::StringEnd, _) => Esc::String,
            };
        }
    }

    /// [`Self::push`] for a run of printable ASCII that fits the line.
    fn push_str(&mut self, at: f64, run: &str) {
        self.step(at);
        self.line.push_str(run);
        // Output without line breaks (a base64 dump) must not grow one line without bound.
        if self.line.len() >= CHUNK_CHARS {
            self.end_line();
        }
    }

    fn push(&mut self, at: f64, c: char) {
        self.step(at);
        self.line.push(c);
        if self.line.len() >= CHUNK_CHARS {
            self.end_line();
        }
    }

    /// Notes when the line began, and where output of a later event starts in it (hits land on
    /// the event that printed them).
    fn step(&mut self, at: f64) {
        match self.line_at {
            None => self.line_at = Some(at),
            Some(first) if at > self.line_steps.last().map_or(first, |s| s.1) => {
                self.line_steps.push((self.line.chars().count() as u32, at));
            }
            Some(_) => {}
        }
    }

    fn end_line(&mut self) {
        let at = self.line_at.take();
        let line = std::mem::take(&mut self.line);
        let steps = std::mem::take(&mut self.line_steps);
        let trimmed = line.trim();
        let lead = (line.chars().count() - line.trim_start().chars().count()) as u32;
        let kept = trimmed.chars().count() as u32;
        let steps: Vec<(u32, f64)> =
            steps.into_iter().filter(|&(c, _)| c >= lead && c - lead < kept).map(|(c, t)| (c - lead, t)).collect();
        // Repeated lines (a `yes`, a progress bar redrawn with \r) add nothing to search.
        if trimmed.is_empty() || trimmed == self.last_line {
            return;
        }
        let at = at.unwrap_or(self.chunk.at);
        if !self.chunk.text.is_empty()
            && (at - self.chunk.at > CHUNK_SECONDS || self.chunk.text.len() + trimmed.len() > CHUNK_CHARS)
        {
            self.out.push(std::mem::replace(&mut self.chunk, Chunk::new(at)));
        }
        if self.chunk.text.is_empty() {
            self.chunk.at = at;
        } else {
            self.chunk.text.push('\n');
        }
        self.chunk.text.push_str(trimmed);
        self.chunk.line_times.push(at);
        self.chunk.line_steps.push(steps);
        self.total += trimmed.len() + 1;
        self.last_line = trimmed.to_owned();
    }

    /// The chunks finished so far, taken out (those to come are returned by later calls and by
    /// [`Self::finish`]): a caller storing them as it goes holds at most a batch.
    pub fn take_ready(&mut self) -> Vec<Chunk> {
        std::mem::take(&mut self.out)
    }

    /// How many finished chunks wait to be taken.
    pub fn ready(&self) -> usize {
        self.out.len()
    }

    /// The chunks, the last partial line included.
    pub fn finish(mut self) -> Vec<Chunk> {
        self.end_line();
        if !self.chunk.text.is_empty() {
            self.out.push(self.chunk);
        }
        self.out
    }
}

/// The words of a text as search matches them: lowercase runs of letters, digits and `_`.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '_').filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// A word's keyed hash, as stored and searched (80 bits: collisions are negligible for search,
/// and the word cannot be recovered without the key).
pub fn blind(key: &[u8; 32], word: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(word.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..10])
}

/// A prefix's keyed hash: a word never holds `*`, so it is never a word's.
pub fn blind_prefix(key: &[u8; 32], prefix: &str) -> String {
    let p: String = prefix.chars().take(PREFIX_MAX).collect();
    blind(key, &format!("{p}*"))
}

/// The blind tokens of a text, space-separated (what the FTS5 column holds): each word once, and
/// each of its prefixes from [`PREFIX_MIN`] to [`PREFIX_MAX`] characters for `word*` searches.
pub fn blind_tokens(key: &[u8; 32], text: &str) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for w in words(text) {
        if seen.insert(w.clone()) {
            out.push(blind(key, &w));
        }
        let chars: Vec<char> = w.chars().collect();
        for n in PREFIX_MIN..=chars.len().min(PREFIX_MAX) {
            let p: String = chars[..n].iter().collect();
            if seen.insert(format!("{p}*")) {
                out.push(blind_prefix(key, &p));
            }
        }
    }
    out.join(" ")
}

/// Seals chunk text under the search key: the 24-byte nonce (fresh from the caller), then the
/// ciphertext.
pub fn seal_text(key: &[u8; 32], nonce: [u8; 24], text: &str) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    let mut out = nonce.to_vec();
    out.extend(cipher.encrypt(&nonce.into(), text.as_bytes()).expect("encryption of a chunk cannot fail"));
    out
}

pub fn open_text(key: &[u8; 32], sealed: &[u8]) -> Option<String> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    if sealed.len() < 24 {
        return None;
    }
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    let plain = cipher.decrypt(sealed[..24].into(), &sealed[24..]).ok()?;
    String::from_utf8(plain).ok()
}

/// What a timeline thumbnail is sealed to: its recording and its moment (exactly, as stored).
pub fn thumbnail_context(recording_id: &str, at: f64) -> Vec<u8> {
    let mut c = b"thumbnail ".to_vec();
    c.extend_from_slice(recording_id.as_bytes());
    c.push(b'@');
    c.extend_from_slice(&at.to_bits().to_be_bytes());
    c
}

/// Seals bytes that are not text (a timeline's thumbnails) with the search key, bound to
/// `context` (what they are of: another recording's or moment's thumbnail does not open here).
pub fn seal_bytes(key: &[u8; 32], nonce: [u8; 24], context: &[u8], plain: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(&nonce.into(), Payload { msg: plain, aad: context })
            .expect("encryption of a thumbnail cannot fail"),
    );
    out
}

/// Opens what [`seal_bytes`] sealed for the same `context`; `None` when the key or the context
/// differ or the bytes were changed.
pub fn open_bytes(key: &[u8; 32], context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    if sealed.len() < 24 {
        return None;
    }
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    cipher.decrypt(sealed[..24].into(), Payload { msg: &sealed[24..], aad: context }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_with_their_key_and_context() {
        let key = [7u8; 32];
        let sealed = seal_bytes(&key, [2u8; 24], b"rec1@1.5", b"\x89PNG picture");
        assert!(!sealed.windows(7).any(|w| w == b"picture"));
        assert_eq!(open_bytes(&key, b"rec1@1.5", &sealed).as_deref(), Some(&b"\x89PNG picture"[..]));
        assert_eq!(open_bytes(&key, b"rec2@1.5", &sealed), None, "another recording's");
        assert_eq!(open_bytes(&[8u8; 32], b"rec1@1.5", &sealed), None, "another key");
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert_eq!(open_bytes(&key, b"rec1@1.5", &changed), None, "changed");
        assert_eq!(open_bytes(&key, b"rec1@1.5", &sealed[..10]), None, "cut");
    }

    #[test]
    fn the_blind_index_matches_words_and_hides_them() {
        let key = [7u8; 32];
        let tokens = blind_tokens(&key, "Deploy the Zebracorn, deploy!");
        // deploy, the, zebracorn; prefixes dep..deploy (4), the (1), zeb..zebracorn (7).
        assert_eq!(tokens.split(' ').count(), 3 + 4 + 1 + 7, "each word and prefix once: {tokens}");
        assert!(tokens.contains(&blind_prefix(&key, "zebr")));
        assert!(!tokens.contains(&blind_prefix(&key, "ze")), "too short a prefix");
        assert!(tokens.contains(&blind(&key, "zebracorn")));
        assert!(!tokens.to_lowercase().contains("zebracorn"));
        assert_ne!(blind(&key, "zebracorn"), blind(&[8u8; 32], "zebracorn"), "keyed");
        let sealed = seal_text(&key, [1u8; 24], "the zebracorn line");
        assert!(!sealed.windows(9).any(|w| w == b"zebracorn"));
        assert_eq!(open_text(&key, &sealed).as_deref(), Some("the zebracorn line"));
        assert_eq!(open_text(&[8u8; 32], &sealed), None);
    }

    #[test]
    fn escapes_and_controls_are_stripped_and_backspace_applied() {
        let mut x = TextExtractor::default();
        x.output(0.5, "\u{1b}[1;32muser@web01\u{1b}[0m:~$ ");
        x.output(0.6, "\u{1b}]0;title\u{7}lsx\u{8} -l\r\n");
        x.output(0.7, "total 0\r\n");
        let chunks = x.finish();
        assert_eq!(
            chunks,
            vec![Chunk {
                at: 0.5,
                text: "user@web01:~$ ls -l\ntotal 0".into(),
                line_times: vec![0.5, 0.7],
                line_steps: vec![vec![(14, 0.6)], vec![]],
            }]
        );
        let c = &chunks[0];
        let m = find_matches(&c.text, &c.line_times, &c.line_steps, &parse_query("TOTAL"));
        assert_eq!(m, vec![Match { line: 1, start: 0, end: 5, at: 0.7 }]);
        assert!(find_matches(&c.text, &c.line_times, &c.line_steps, &parse_query("nowhere")).is_empty());
    }

    /// A bulk dump without line breaks is cut into lines of [`CHUNK_CHARS`] as before the scan
    /// was bounded by the line's room, and chunks taken as they are ready, then the rest from
    /// `finish`, are the chunks `finish` alone gives.
    #[test]
    fn chunks_taken_as_they_come_are_the_whole_text() {
        let feed = |x: &mut TextExtractor| {
            x.output(0.0, "begin\n");
            for k in 0..40 {
                let mut bulk = "y".repeat(4999);
                bulk.push_str(&format!("\nword{k} "));
                x.output(k as f64 * 0.7, &bulk);
            }
            x.output(30.0, "\nlast-word\n");
        };
        let mut whole = TextExtractor::default();
        feed(&mut whole);
        let whole = whole.finish();
        let mut taken = TextExtractor::default();
        let mut got = Vec::new();
        feed(&mut taken);
        assert!(taken.ready() > 0, "chunks were ready before the end");
        got.extend(taken.take_ready());
        assert_eq!(taken.ready(), 0);
        got.extend(taken.finish());
        assert_eq!(got, whole);
        let text: Vec<&str> = whole.iter().flat_map(|c| c.text.lines()).collect();
        // Each dump: its word and the first y's make one full line, then one line of y's alone,
        // then the rest.
        assert_eq!(text.iter().filter(|l| **l == "y".repeat(CHUNK_CHARS)).count(), 40);
        assert!(text.contains(&"last-word") && text.contains(&"word39"), "{text:?}");
        assert!(text.iter().all(|l| l.len() <= CHUNK_CHARS));
    }

    #[test]
    fn chunks_split_by_time_and_repeats_collapse() {
        let mut x = TextExtractor::default();
        x.output(0.0, "first\n");
        for i in 0..100 {
            x.output(0.1 + i as f64 * 0.001, "y\n");
        }
        x.output(5.0, "later words\n");
        x.output(5.2, "partial");
        let chunks = x.finish();
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].at, chunks[0].text.as_str(), &chunks[0].line_times), (0.0, "first\ny", &vec![0.0, 0.1]));
        assert_eq!(
            (chunks[1].at, chunks[1].text.as_str(), &chunks[1].line_times),
            (5.0, "later words\npartial", &vec![5.0, 5.2])
        );
    }

    /// The attack of issue 19: a word printed at the end of a long line (a slow command, a
    /// prompt redrawn) was found at the line's start, seconds before it was on the screen.
    #[test]
    fn a_hit_is_the_event_that_printed_the_match_not_the_lines_start() {
        let mut x = TextExtractor::default();
        x.output(1.0, "$ ");
        x.output(1.5, "sleep 2; echo ");
        x.output(3.6, "  zebrafish42 done\r\n");
        x.output(4.0, "zebrafish42\r\n");
        let chunks = x.finish();
        let all: Vec<Match> = chunks
            .iter()
            .flat_map(|c| find_matches(&c.text, &c.line_times, &c.line_steps, &parse_query("zebrafish42")))
            .collect();
        assert_eq!(all.len(), 2, "every hit: {all:?}");
        assert_eq!((all[0].at, all[0].start, all[0].end), (3.6, 18, 29), "{all:?}");
        assert_eq!(all[1].at, 4.0);
    }

    #[test]
    fn queries_take_words_prefixes_and_phrases() {
        assert_eq!(
            parse_query(r#"Zebra* "disk  FULL" x* at"#),
            vec![
                Term::Prefix("zebra".into()),
                Term::Phrase(vec!["disk".into(), "full".into()]),
                Term::Word("x".into()),
                Term::Word("at".into()),
            ]
        );
        let key = [3u8; 32];
        let text = "the disk is full\ndisk full on /var\nzebrafish here";
        let tokens = blind_tokens(&key, text);
        let q = parse_query(r#""disk full" zebr*"#);
        assert!(query_tokens(&key, &q).iter().all(|t| tokens.contains(t.as_str())));
        let m = find_matches(text, &[1.0, 2.0, 3.0], &[vec![], vec![], vec![]], &q);
        assert_eq!(
            m.iter().map(|m| (m.line, m.start, m.end)).collect::<Vec<_>>(),
            [(1, 0, 9), (2, 0, 9)],
            "the phrase only where its words are next to each other"
        );
        assert!(find_matches(text, &[1.0, 2.0, 3.0], &[], &parse_query(r#""full disk""#)).is_empty());
        assert!(find_matches(text, &[1.0, 2.0, 3.0], &[], &parse_query("disk nowhere")).is_empty(), "all terms");
        // A prefix longer than the token keeps is checked in the text.
        let long = parse_query("zebrafishes*");
        assert_eq!(query_tokens(&key, &long), vec![blind_prefix(&key, "zebrafishes")]);
        assert!(find_matches(text, &[1.0, 2.0, 3.0], &[], &long).is_empty());
    }

    #[test]
    fn a_line_without_breaks_is_cut_into_chunks() {
        let mut x = TextExtractor::default();
        x.output(0.0, &"a".repeat(CHUNK_CHARS * 3 + 10));
        let chunks = x.finish();
        assert!(
            chunks.iter().all(|c| c.text.len() <= CHUNK_CHARS),
            "{:?}",
            chunks.iter().map(|c| c.text.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn runs_and_single_characters_make_the_same_chunks() {
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!("line {i} \x1b[1mbold\x1b[0m tab\there é\u{8}\0\0\x7f\x01z\r\n"));
            if i % 50 == 0 {
                text.push_str(&"x".repeat(CHUNK_CHARS * 2 + 7));
                text.push_str("\x1b]0;title\x07ü");
            }
        }
        let mut whole = TextExtractor::default();
        whole.output(1.0, &text);
        let mut single = TextExtractor::default();
        let mut b = [0u8; 4];
        for c in text.chars() {
            single.output(1.0, c.encode_utf8(&mut b));
        }
        let (a, b) = (whole.finish(), single.finish());
        assert!(a.len() > 3);
        assert_eq!(a.iter().map(|c| &c.text).collect::<Vec<_>>(), b.iter().map(|c| &c.text).collect::<Vec<_>>());
        assert!(a.iter().all(|c| c.text.lines().all(|l| l.len() <= CHUNK_CHARS)));
    }

    #[test]
    fn text_is_capped() {
        let mut x = TextExtractor::default();
        let line: String = "abcdefghij".repeat(100);
        for i in 0..20_000 {
            x.output(i as f64, &format!("{i} {line}\n"));
        }
        let total: usize = x.finish().iter().map(|c| c.text.len()).sum();
        assert!(total <= MAX_TEXT + CHUNK_CHARS, "{total}");
    }
}
