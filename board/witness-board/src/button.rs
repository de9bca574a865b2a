//! Turning raw button samples into presses: debounced, a short press on release, a long press
//! once the button has been held long enough (without waiting for the release).

/// What a press means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonEvent {
    /// Held less than the long-press time: show status.
    Short,
    /// Held at least the long-press time (factory reset when held at boot).
    Long,
}

#[derive(Debug, Clone)]
pub struct ButtonTracker {
    debounce_ms: u64,
    long_ms: u64,
    /// The debounced level.
    stable: bool,
    /// A raw level that differs from `stable`, and since when.
    candidate: Option<(bool, u64)>,
    pressed_since: Option<u64>,
    long_sent: bool,
}

impl ButtonTracker {
    pub fn new(debounce_ms: u64, long_ms: u64) -> Self {
        Self { debounce_ms, long_ms, stable: false, candidate: None, pressed_since: None, long_sent: false }
    }

    /// Feeds one raw sample taken at `now_ms`.
    pub fn sample(&mut self, raw: bool, now_ms: u64) -> Option<ButtonEvent> {
        if raw == self.stable {
            self.candidate = None;
        } else {
            match self.candidate {
                Some((level, since)) if level == raw => {
                    if now_ms.saturating_sub(since) >= self.debounce_ms {
                        self.candidate = None;
                        return self.changed(raw, since);
                    }
                }
                _ => self.candidate = Some((raw, now_ms)),
            }
        }
        if let Some(since) = self.pressed_since
            && !self.long_sent
            && now_ms.saturating_sub(since) >= self.long_ms
        {
            self.long_sent = true;
            return Some(ButtonEvent::Long);
        }
        None
    }

    fn changed(&mut self, level: bool, at_ms: u64) -> Option<ButtonEvent> {
        self.stable = level;
        if level {
            self.pressed_since = Some(at_ms);
            self.long_sent = false;
            None
        } else {
            let was_long = self.long_sent;
            self.pressed_since = None;
            self.long_sent = false;
            (!was_long).then_some(ButtonEvent::Short)
        }
    }

    pub fn is_held(&self) -> bool {
        self.stable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(level, for_ms)` segments sampled every 10 ms.
    fn run(t: &mut ButtonTracker, segments: &[(bool, u64)]) -> Vec<(u64, ButtonEvent)> {
        let mut now = 0;
        let mut out = Vec::new();
        for &(level, dur) in segments {
            let end = now + dur;
            while now < end {
                if let Some(e) = t.sample(level, now) {
                    out.push((now, e));
                }
                now += 10;
            }
        }
        out
    }

    #[test]
    fn bounces_are_ignored_and_presses_classified() {
        let mut t = ButtonTracker::new(50, 10_000);
        // Contact bounce: 20 ms blips never count.
        let e = run(&mut t, &[(false, 100), (true, 20), (false, 30), (true, 20), (false, 200)]);
        assert!(e.is_empty(), "{e:?}");
        // A 300 ms press is short, reported on release.
        let e = run(&mut ButtonTracker::new(50, 10_000), &[(false, 100), (true, 300), (false, 200)]);
        assert_eq!(e.iter().map(|x| x.1).collect::<Vec<_>>(), vec![ButtonEvent::Short]);
        // Held 10 s: one long press while still held, none on release.
        let e = run(&mut ButtonTracker::new(50, 10_000), &[(false, 100), (true, 12_000), (false, 200)]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].1, ButtonEvent::Long);
        assert!((10_100..=10_200).contains(&e[0].0), "at {} ms", e[0].0);
    }
}
