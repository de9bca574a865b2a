//! The legacy scp protocol (`scp -O`: `scp -t PATH` or `scp -f PATH` run over exec), read
//! passively from the side that sends files: `C<mode> <size> <name>` then the file's bytes and a
//! status byte, `D…`/`E` around a directory, `T…` times. Each file becomes a transfer with its
//! size and the SHA-256 of its bytes, and the ranges of the stream that are file content are
//! reported (what a `transfers hashes` policy leaves out of a recording). Bytes that are not this
//! protocol (the target's shell printing after `scp -f x; id`) stop the observer; the recording
//! of the channel is never the observer's business.

use sha2::{Digest, Sha256};
use std::ops::Range;

/// A protocol line longer than this is not scp.
const MAX_LINE: usize = 8 * 1024;
/// Directory depth kept for names.
const MAX_DEPTH: usize = 64;

/// Which side sends files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `scp -t`: the target receives, the user uploads.
    Sink,
    /// `scp -f`: the target sends, the user downloads.
    Source,
}

/// The mode of an `scp -t`/`scp -f` command (flags may be combined, `-pt`, `-rf`).
pub fn mode_of(command: &str) -> Option<Mode> {
    let mut words = command.split_whitespace();
    if words.next() != Some("scp") {
        return None;
    }
    for w in words {
        let Some(flags) = w.strip_prefix('-') else { break };
        if flags.starts_with('-') {
            break;
        }
        if flags.contains('t') {
            return Some(Mode::Sink);
        }
        if flags.contains('f') {
            return Some(Mode::Source);
        }
    }
    None
}

/// Whether `command` is a bare `scp -t/-f` invocation, one program with plain words: no
/// separators, redirections, substitutions, quotes or globs. Only such a channel's file bytes may
/// be left out of a recording under `transfers hashes`: after shell syntax the target's shell can
/// print scp framing of its own (`scp -f x; printf 'C0644 …'; id`) and pass any output off as a
/// file, so every byte is kept.
pub fn is_plain(command: &str) -> bool {
    mode_of(command).is_some() && command.bytes().all(|b| b.is_ascii_alphanumeric() || b" -_./,:=+@%".contains(&b))
}

/// One file that crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The name as sent, under the directories it was sent in (relative to the command's path).
    pub path: String,
    /// Bytes that crossed, and the size the sender announced.
    pub bytes: u64,
    pub size: u64,
    /// SHA-256 of the bytes that crossed: the file's, when `bytes == size` (a file cut short
    /// keeps the hash of its part, so bytes left out of a recording always have one).
    pub sha256: Option<String>,
}

#[derive(Debug)]
enum State {
    Line(Vec<u8>),
    Data {
        path: String,
        size: u64,
        left: u64,
        hash: Sha256,
    },
    /// The status byte after a file's bytes.
    Status,
    Stopped,
}

/// Reads the sending side of an scp channel.
#[derive(Debug)]
pub struct ScpObserver {
    mode: Mode,
    state: State,
    dirs: Vec<String>,
}

impl ScpObserver {
    pub fn new(mode: Mode) -> Self {
        Self { mode, state: State::Line(Vec::new()), dirs: Vec::new() }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Bytes from the sending side. Returns the files completed and which bytes of `data` were
    /// file content.
    pub fn sent(&mut self, mut data: &[u8]) -> (Vec<Transfer>, Vec<Range<usize>>) {
        let (mut done, mut content) = (Vec::new(), Vec::new());
        let total = data.len();
        while !data.is_empty() {
            let at = total - data.len();
            match &mut self.state {
                State::Stopped => break,
                State::Status => {
                    data = &data[1..];
                    self.state = State::Line(Vec::new());
                }
                State::Data { path, size, left, hash } => {
                    let n = (*left).min(data.len() as u64) as usize;
                    hash.update(&data[..n]);
                    *left -= n as u64;
                    content.push(at..at + n);
                    data = &data[n..];
                    if *left == 0 {
                        let sha256 = Some(hex::encode(std::mem::take(hash).finalize()));
                        done.push(Transfer { path: std::mem::take(path), bytes: *size, size: *size, sha256 });
                        self.state = State::Status;
                    }
                }
                State::Line(line) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |i| i + 1);
                    line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if line.len() > MAX_LINE {
                        self.state = State::Stopped;
                    } else if end.is_some() {
                        let line = std::mem::take(line);
                        self.line(&line[..line.len() - 1], &mut done);
                    }
                }
            }
        }
        (done, content)
    }

    fn line(&mut self, line: &[u8], done: &mut Vec<Transfer>) {
        let text = String::from_utf8_lossy(line);
        let mut parts = text.get(1..).unwrap_or("").splitn(3, ' ');
        match line.first() {
            Some(b'C') => {
                let (_, size, name) = (parts.next(), parts.next(), parts.next());
                match (size.and_then(|s| s.parse::<u64>().ok()), name) {
                    (Some(size), Some(name)) => {
                        let path = self.dirs.iter().map(String::as_str).chain([name]).collect::<Vec<_>>().join("/");
                        if size == 0 {
                            let sha256 = Some(hex::encode(Sha256::digest([])));
                            done.push(Transfer { path, bytes: 0, size, sha256 });
                            self.state = State::Status;
                        } else {
                            self.state = State::Data { path, size, left: size, hash: Sha256::new() };
                        }
                    }
                    _ => self.state = State::Stopped,
                }
            }
            Some(b'D') => match parts.nth(2) {
                Some(name) if self.dirs.len() < MAX_DEPTH => self.dirs.push(name.to_owned()),
                _ => self.state = State::Stopped,
            },
            Some(b'E') => {
                self.dirs.pop();
            }
            // Times for the next file or directory; warnings and errors (the text is the user's).
            Some(b'T' | 1 | 2) => {}
            _ => self.state = State::Stopped,
        }
    }

    /// A file still crossing when the channel ended: what crossed of it, with that part's hash.
    pub fn finish(&mut self) -> Option<Transfer> {
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Data { path, size, left, hash } => {
                Some(Transfer { path, bytes: size - left, size, sha256: Some(hex::encode(hash.finalize())) })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_from_commands() {
        assert_eq!(mode_of("scp -t /tmp/x"), Some(Mode::Sink));
        assert_eq!(mode_of("scp -v -pf /etc/passwd"), Some(Mode::Source));
        assert_eq!(mode_of("scp -r -t -- /tmp"), Some(Mode::Sink));
        assert_eq!(mode_of("scp -f x; id"), Some(Mode::Source));
        assert_eq!(mode_of("scp /a /b"), None);
        assert_eq!(mode_of("ls -t"), None);
        assert!(is_plain("scp -t /tmp/x") && is_plain("scp -r -d -t -- /srv/img-1.2_x"));
        for shell in ["scp -f x; id", "scp -f x\nid", "scp -f x|sh", "scp -f $(id)", "scp -f 'a b'", "scp -f x>y"] {
            assert!(!is_plain(shell), "{shell}");
        }
    }

    fn stream() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let a: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let b = b"second file\n".to_vec();
        let mut s = b"T1700000000 0 1700000000 0\nD0755 0 dir\n".to_vec();
        s.extend_from_slice(format!("C0644 {} a.bin\n", a.len()).as_bytes());
        s.extend_from_slice(&a);
        s.push(0);
        s.extend_from_slice(b"E\n");
        s.extend_from_slice(format!("C0600 {} b.txt\n", b.len()).as_bytes());
        s.extend_from_slice(&b);
        s.push(0);
        (s, a, b)
    }

    #[test]
    fn files_hashed_and_content_found_whatever_the_split() {
        let (s, a, b) = stream();
        for split in [1, 3, 4096, s.len()] {
            let mut o = ScpObserver::new(Mode::Sink);
            let (mut files, mut content) = (Vec::new(), Vec::new());
            for c in s.chunks(split) {
                let (f, ranges) = o.sent(c);
                files.extend(f);
                for r in ranges {
                    content.extend_from_slice(&c[r]);
                }
            }
            let digest = |d: &[u8]| Some(hex::encode(Sha256::digest(d)));
            assert_eq!(
                files,
                vec![
                    Transfer { path: "dir/a.bin".into(), bytes: 70_000, size: 70_000, sha256: digest(&a) },
                    Transfer { path: "b.txt".into(), bytes: 12, size: 12, sha256: digest(&b) },
                ],
                "split {split}"
            );
            assert!(content == [a.clone(), b.clone()].concat(), "split {split}: content is exactly the files");
            assert_eq!(o.finish(), None);
        }
    }

    #[test]
    fn a_shell_after_scp_stops_the_observer_and_a_cut_file_keeps_its_parts_hash() {
        let mut o = ScpObserver::new(Mode::Source);
        let (files, content) = o.sent(b"uid=0(root) gid=0(root)\nC0644 5 x\nhello");
        assert!(files.is_empty() && content.is_empty(), "not scp: nothing is content");
        let mut o = ScpObserver::new(Mode::Source);
        o.sent(b"C0644 100 big\nonly some");
        let part = Some(hex::encode(Sha256::digest(b"only some")));
        assert_eq!(o.finish(), Some(Transfer { path: "big".into(), bytes: 9, size: 100, sha256: part }));
        let mut o = ScpObserver::new(Mode::Sink);
        assert!(o.sent(&vec![b'C'; MAX_LINE + 10]).1.is_empty());
    }
}
