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
}

impl Chunk {
    fn new(at: f64) -> Self {
        Self { at, text: String::new(), line_times: Vec::new() }
    }
}

/// When the first line of `text` holding any of `words` (case-insensitive) was printed.
pub fn first_match(text: &str, line_times: &[f64], words: &[String]) -> Option<f64> {
    let words: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    text.lines()
        .zip(line_times)
        .find(|(line, _)| {
            let line = line.to_lowercase();
            words.iter().any(|w| line.contains(w.as_str()))
        })
        .map(|(_, &t)| t)
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
                let run = rest.bytes().position(|b| !(0x20..0x7f).contains(&b)).unwrap_or(rest.len());
                if run > 0 {
                    let take = run.min(CHUNK_CHARS.saturating_sub(self.line.len()).max(1));
                    self.push_str(at, &rest[..take]);
                    rest = &rest[take..];
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
        if self.line_at.is_none() {
            self.line_at = Some(at);
        }
        self.line.push_str(run);
        if self.line.len() >= CHUNK_CHARS {
            self.end_line();
        }
    }

    fn push(&mut self, at: f64, c: char) {
        if self.line_at.is_none() {
            self.line_at = Some(at);
        }
        self.line.push(c);
        // Output without line breaks (a base64 dump) must not grow one line without bound.
        if self.line.len() >= CHUNK_CHARS {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        let at = self.line_at.take();
        let line = std::mem::take(&mut self.line);
        let trimmed = line.trim();
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
        self.total += trimmed.len() + 1;
        self.last_line = trimmed.to_owned();
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

/// The blind tokens of a text, each word once, space-separated (what the FTS5 column holds).
pub fn blind_tokens(key: &[u8; 32], text: &str) -> String {
    let mut seen = std::collections::BTreeSet::new();
    words(text).into_iter().filter(|w| seen.insert(w.clone())).map(|w| blind(key, &w)).collect::<Vec<_>>().join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blind_index_matches_words_and_hides_them() {
        let key = [7u8; 32];
        let tokens = blind_tokens(&key, "Deploy the Zebracorn, deploy!");
        assert_eq!(tokens.split(' ').count(), 3, "each word once: {tokens}");
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
            vec![Chunk { at: 0.5, text: "user@web01:~$ ls -l\ntotal 0".into(), line_times: vec![0.5, 0.7] }]
        );
        let words = ["TOTAL".to_owned()];
        assert_eq!(first_match(&chunks[0].text, &chunks[0].line_times, &words), Some(0.7));
        assert_eq!(first_match(&chunks[0].text, &chunks[0].line_times, &["nowhere".to_owned()]), None);
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
        assert_eq!(chunks[0], Chunk { at: 0.0, text: "first\ny".into(), line_times: vec![0.0, 0.1] });
        assert_eq!(chunks[1], Chunk { at: 5.0, text: "later words\npartial".into(), line_times: vec![5.0, 5.2] });
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
