//! Typed input kept only where the target echoed it. With input recording on, keystrokes go
//! into the recording — but a password typed at a prompt that does not echo (`sudo`, `passwd`,
//! `read -s`) must not. The box cannot see the target's terminal modes, so it judges by what
//! comes back: typed bytes wait here until the target's next output; those the output starts
//! with, in order, were echoed and are kept; the rest (the output began with something else, or
//! nothing came back in time) become a marker `[input not echoed: N bytes]`. A terminal that
//! draws more than the bare echo (colour, completion) only costs input that is then marked, never
//! a secret that is kept.

/// Typed bytes not answered within this long count as not echoed.
pub const ECHO_WAIT_SECS: f64 = 2.0;
/// At most this many typed bytes wait; more (a paste nothing echoes) are judged at once.
pub const MAX_PENDING: usize = 4096;

/// What the gate lets into the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Echoed input, to record as it was typed.
    Echoed(Vec<u8>),
    /// Input that was not echoed: `[input not echoed: N bytes]`.
    NotEchoed(usize),
}

impl Verdict {
    pub fn marker(n: usize) -> String {
        format!("[input not echoed: {n} bytes]")
    }
}

/// Holds typed bytes until the target's output says whether they were echoed.
#[derive(Debug, Default)]
pub struct EchoGate {
    pending: Vec<u8>,
    /// When the oldest pending byte was typed (seconds, the caller's clock).
    since: Option<f64>,
}

impl EchoGate {
    /// Bytes the user typed at `now`. Returns what is judged already (the oldest input waited
    /// too long, or too much is waiting).
    pub fn typed(&mut self, data: &[u8], now: f64) -> Vec<Verdict> {
        let mut out = self.tick(now);
        if self.pending.is_empty() {
            self.since = Some(now);
        }
        self.pending.extend_from_slice(data);
        if self.pending.len() > MAX_PENDING {
            out.extend(self.judge_all());
        }
        out
    }

    /// Output from the target at `now`: the pending bytes it starts with were echoed.
    pub fn output(&mut self, data: &[u8], now: f64) -> Vec<Verdict> {
        let mut out = self.tick(now);
        if self.pending.is_empty() || data.is_empty() {
            return out;
        }
        let echoed = self.pending.iter().zip(data).take_while(|(a, b)| a == b).count();
        if echoed > 0 {
            out.push(Verdict::Echoed(self.pending.drain(..echoed).collect()));
        }
        // The target answered with something else: what is left was typed and not shown.
        if !self.pending.is_empty() && echoed < data.len() {
            out.extend(self.judge_all());
        }
        self.since = (!self.pending.is_empty()).then_some(now);
        out
    }

    /// Judges input that waited longer than [`ECHO_WAIT_SECS`].
    pub fn tick(&mut self, now: f64) -> Vec<Verdict> {
        match self.since {
            Some(t) if now - t >= ECHO_WAIT_SECS && !self.pending.is_empty() => self.judge_all(),
            _ => Vec::new(),
        }
    }

    /// At the end of the channel: whatever waits was not echoed.
    pub fn finish(&mut self) -> Vec<Verdict> {
        self.judge_all()
    }

    fn judge_all(&mut self) -> Vec<Verdict> {
        self.since = None;
        match std::mem::take(&mut self.pending).len() {
            0 => Vec::new(),
            n => vec![Verdict::NotEchoed(n)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(vs: &[Verdict]) -> String {
        vs.iter()
            .map(|v| match v {
                Verdict::Echoed(b) => String::from_utf8_lossy(b).into_owned(),
                Verdict::NotEchoed(n) => Verdict::marker(*n),
            })
            .collect()
    }

    #[test]
    fn echoed_typing_is_kept_a_silent_password_is_not() {
        let mut g = EchoGate::default();
        let mut all = Vec::new();
        for (i, c) in "ls\r".bytes().enumerate() {
            all.extend(g.typed(&[c], i as f64 * 0.1));
            let echo: &[u8] = if c == b'\r' { b"\r\n" } else { std::slice::from_ref(&c) };
            all.extend(g.output(echo, i as f64 * 0.1 + 0.01));
        }
        all.extend(g.output(b"file\r\n$ ", 0.5));
        // The password prompt: nothing comes back until Enter, then a new line.
        all.extend(g.output(b"[sudo] password for root: ", 1.0));
        all.extend(g.typed(b"hunter2-secret", 1.5));
        all.extend(g.typed(b"\r", 1.8));
        all.extend(g.output(b"\r\nok\r\n", 1.9));
        let text = kept(&all);
        assert!(text.starts_with("ls\r"), "{text}");
        assert!(!text.contains("hunter2"), "a password typed at a silent prompt is not kept: {text}");
        assert!(text.contains("[input not echoed: 15 bytes]"), "{text}");
    }

    #[test]
    fn fast_typing_paste_and_silence() {
        let mut g = EchoGate::default();
        // Typed faster than the echo comes back: one output carries several echoes.
        let mut v = g.typed(b"ab", 0.0);
        v.extend(g.typed(b"c", 0.01));
        v.extend(g.output(b"abc", 0.05));
        assert_eq!(v, vec![Verdict::Echoed(b"abc".to_vec())]);
        // Nothing comes back at all: judged after the wait, not before.
        assert!(g.typed(b"quiet", 1.0).is_empty());
        assert!(g.tick(2.9).is_empty());
        assert_eq!(g.tick(3.0), vec![Verdict::NotEchoed(5)]);
        // A huge paste nothing echoes is judged without holding it all.
        let v = g.typed(&vec![b'x'; MAX_PENDING + 1], 5.0);
        assert_eq!(v, vec![Verdict::NotEchoed(MAX_PENDING + 1)]);
        assert!(g.finish().is_empty());
        g.typed(b"tail", 6.0);
        assert_eq!(g.finish(), vec![Verdict::NotEchoed(4)]);
    }

    #[test]
    fn partial_echo_keeps_the_echoed_part_only() {
        let mut g = EchoGate::default();
        g.typed(b"echo secret", 0.0);
        // A shell that echoes "echo " and then redraws in colour: the rest is marked.
        let v = g.output(b"echo \x1b[31ms", 0.1);
        assert_eq!(v, vec![Verdict::Echoed(b"echo ".to_vec()), Verdict::NotEchoed(6)]);
    }
}
