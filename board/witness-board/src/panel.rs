//! What the front panel says, decided without I/O: the box's state is reduced to one panel state
//! by priority, each state has a documented LED pattern, and the pattern gives the LED levels at
//! any moment. The daemon calls [`levels`] on a timer and writes the result to the LEDs.

use serde::Serialize;

/// What the daemon knows about itself, for the panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoxStatus {
    pub booting: bool,
    pub live_sessions: u32,
    pub uploading: bool,
    /// The store is unreachable and recordings wait to be uploaded.
    pub offline_with_backlog: bool,
    /// Disk near full: new sessions are refused.
    pub refusing_sessions: bool,
    /// A health check failed (recorder, index, listener) or the board reported an error.
    pub fault: bool,
}

/// One state per pattern, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelState {
    Fault,
    Refusing,
    Booting,
    Offline,
    Recording,
    Uploading,
    Ready,
}

impl PanelState {
    pub fn as_str(self) -> &'static str {
        match self {
            PanelState::Fault => "fault",
            PanelState::Refusing => "refusing",
            PanelState::Booting => "booting",
            PanelState::Offline => "offline",
            PanelState::Recording => "recording",
            PanelState::Uploading => "uploading",
            PanelState::Ready => "ready",
        }
    }
}

/// The panel state for a status: the most urgent condition wins.
pub fn panel_state(s: &BoxStatus) -> PanelState {
    if s.fault {
        PanelState::Fault
    } else if s.refusing_sessions {
        PanelState::Refusing
    } else if s.booting {
        PanelState::Booting
    } else if s.offline_with_backlog {
        PanelState::Offline
    } else if s.live_sessions > 0 {
        PanelState::Recording
    } else if s.uploading {
        PanelState::Uploading
    } else {
        PanelState::Ready
    }
}

/// One LED's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Blink {
    Off,
    On,
    /// On for `on_ms`, then off for `off_ms`, from time zero.
    Every {
        on_ms: u32,
        off_ms: u32,
    },
}

impl Blink {
    fn level(self, t_ms: u64) -> bool {
        match self {
            Blink::Off => false,
            Blink::On => true,
            Blink::Every { on_ms, off_ms } => t_ms % u64::from(on_ms + off_ms) < u64::from(on_ms),
        }
    }
}

/// The pattern of both LEDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pattern {
    pub green: Blink,
    pub red: Blink,
}

/// The documented patterns (README, "Front panel"). Red means a person is needed.
pub fn pattern(state: PanelState) -> Pattern {
    use Blink::*;
    match state {
        PanelState::Booting => Pattern { green: Every { on_ms: 250, off_ms: 250 }, red: Off },
        PanelState::Ready => Pattern { green: On, red: Off },
        // A slow "breath" off: steady green with a short dark beat each second.
        PanelState::Recording => Pattern { green: Every { on_ms: 900, off_ms: 100 }, red: Off },
        PanelState::Uploading => Pattern { green: Every { on_ms: 100, off_ms: 100 }, red: Off },
        PanelState::Offline => Pattern { green: On, red: Every { on_ms: 500, off_ms: 1500 } },
        PanelState::Refusing => Pattern { green: Off, red: On },
        PanelState::Fault => Pattern { green: Off, red: Every { on_ms: 100, off_ms: 100 } },
    }
}

/// LED levels `(green, red)` of a pattern at `t_ms`.
pub fn levels(p: Pattern, t_ms: u64) -> (bool, bool) {
    (p.green.level(t_ms), p.red.level(t_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_condition_wins() {
        let mut s = BoxStatus { live_sessions: 2, uploading: true, ..Default::default() };
        assert_eq!(panel_state(&s), PanelState::Recording);
        s.offline_with_backlog = true;
        assert_eq!(panel_state(&s), PanelState::Offline);
        s.refusing_sessions = true;
        assert_eq!(panel_state(&s), PanelState::Refusing);
        s.fault = true;
        assert_eq!(panel_state(&s), PanelState::Fault);
        assert_eq!(panel_state(&BoxStatus::default()), PanelState::Ready);
        assert_eq!(panel_state(&BoxStatus { uploading: true, ..Default::default() }), PanelState::Uploading);
    }

    #[test]
    fn every_state_has_a_distinct_pattern() {
        let all = [
            PanelState::Fault,
            PanelState::Refusing,
            PanelState::Booting,
            PanelState::Offline,
            PanelState::Recording,
            PanelState::Uploading,
            PanelState::Ready,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(pattern(*a), pattern(*b), "{a:?} and {b:?} look the same");
            }
        }
        let rec = pattern(PanelState::Recording);
        assert_eq!(levels(rec, 0), (true, false));
        assert_eq!(levels(rec, 950), (false, false));
        assert_eq!(levels(rec, 1000), (true, false));
        assert_eq!(levels(pattern(PanelState::Fault), 150), (false, false));
        assert_eq!(levels(pattern(PanelState::Fault), 50), (false, true));
    }
}
