//! The life of one SSH session channel as the box allows it: set-up requests (a pty, allowed
//! environment variables) first, then exactly one of `shell`, `exec` or `subsystem sftp`, and
//! after that nothing that would change what runs on it. The server handler (which answers the
//! client) and the relay (which forwards to the target) both feed every request through one
//! [`ChannelPhase`] each; the machine is deterministic, so they agree without sharing state.

/// What runs on a channel once it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Shell,
    Exec,
    Sftp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Exec => "exec",
            Kind::Sftp => "sftp",
        }
    }
}

/// A channel request as the client sent it (only what the decision needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Pty,
    /// `allowed`: the variable is in the box's allow-list.
    Env {
        allowed: bool,
    },
    Shell,
    Exec,
    Subsystem(&'a str),
    WindowChange,
    Signal,
    X11,
    AgentForward,
}

impl Request<'_> {
    /// The request's name as the SSH protocol spells it, for audit events.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Pty => "pty-req",
            Request::Env { .. } => "env",
            Request::Shell => "shell",
            Request::Exec => "exec",
            Request::Subsystem(_) => "subsystem",
            Request::WindowChange => "window-change",
            Request::Signal => "signal",
            Request::X11 => "x11-req",
            Request::AgentForward => "auth-agent-req",
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on (answered with success).
    Allow,
    /// The channel starts running this; the recording starts before the request goes on.
    Start(Kind),
    /// Answered with failure, never forwarded; the reason goes to the audit log.
    Refuse(&'static str),
}

/// One channel's phase. Feed it every request in arrival order.
#[derive(Debug, Default, Clone)]
pub struct ChannelPhase {
    started: Option<Kind>,
    pty: bool,
}

impl ChannelPhase {
    pub fn started(&self) -> Option<Kind> {
        self.started
    }

    pub fn on_request(&mut self, request: Request<'_>) -> Verdict {
        use Request::*;
        match (request, self.started) {
            (X11, _) => Verdict::Refuse("x11 forwarding would be a path around the recording"),
            (AgentForward, _) => Verdict::Refuse("agent forwarding would hand the target the user's keys"),
            (Pty | Env { .. }, Some(_)) => Verdict::Refuse("the channel already started"),
            (Pty, None) if self.pty => Verdict::Refuse("the channel already has a terminal"),
            (Pty, None) => {
                self.pty = true;
                Verdict::Allow
            }
            (Env { allowed: false }, None) => Verdict::Refuse("environment variable not in the allow-list"),
            (Env { allowed: true }, None) => Verdict::Allow,
            (Shell | Exec | Subsystem(_), Some(_)) => Verdict::Refuse("the channel already runs a shell, exec or sftp"),
            (Subsystem(name), None) if name != "sftp" => Verdict::Refuse("only the sftp subsystem is allowed"),
            (Shell, None) => self.start(Kind::Shell),
            (Exec, None) => self.start(Kind::Exec),
            (Subsystem(_), None) => self.start(Kind::Sftp),
            (WindowChange, _) => Verdict::Allow,
            (Signal, Some(_)) => Verdict::Allow,
            (Signal, None) => Verdict::Refuse("nothing runs on the channel yet"),
        }
    }

    fn start(&mut self, kind: Kind) -> Verdict {
        self.started = Some(kind);
        Verdict::Start(kind)
    }
}

/// Largest terminal the box records and passes on; a client asking for more gets this (players
/// and the target's terminal would otherwise allocate `cols × rows` cells).
pub const MAX_COLS: u32 = 1000;
pub const MAX_ROWS: u32 = 500;

/// A terminal size as recorded and forwarded: 0 (no size, e.g. `ssh -tt` without a terminal)
/// becomes the classic 80×24; anything above the maximum is clamped.
pub fn terminal_size(cols: u32, rows: u32) -> (u32, u32) {
    let c = if cols == 0 { 80 } else { cols.min(MAX_COLS) };
    let r = if rows == 0 { 24 } else { rows.min(MAX_ROWS) };
    (c, r)
}

/// Legacy scp runs `scp -t PATH` (upload) or `scp -f PATH` (download) on the target. Only for
/// auditing the transfer: such an exec is recorded like any other.
pub fn is_scp(command: &str) -> bool {
    let mut words = command.split_whitespace();
    words.next() == Some("scp") && words.any(|w| w == "-t" || w == "-f")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_start_per_channel() {
        for first in [Request::Shell, Request::Exec, Request::Subsystem("sftp")] {
            let mut p = ChannelPhase::default();
            assert!(matches!(p.on_request(first), Verdict::Start(_)));
            for late in [Request::Shell, Request::Exec, Request::Subsystem("sftp"), Request::Subsystem("x")] {
                assert!(matches!(p.on_request(late), Verdict::Refuse(_)), "{late:?} after {first:?}");
            }
            assert!(matches!(p.on_request(Request::Pty), Verdict::Refuse(_)), "no pty after start");
            assert!(matches!(p.on_request(Request::Env { allowed: true }), Verdict::Refuse(_)));
            assert_eq!(p.on_request(Request::WindowChange), Verdict::Allow);
            assert_eq!(p.on_request(Request::Signal), Verdict::Allow);
        }
    }

    #[test]
    fn set_up_then_start() {
        let mut p = ChannelPhase::default();
        assert_eq!(p.on_request(Request::Pty), Verdict::Allow);
        assert!(matches!(p.on_request(Request::Pty), Verdict::Refuse(_)));
        assert_eq!(p.on_request(Request::Env { allowed: true }), Verdict::Allow);
        assert!(matches!(p.on_request(Request::Env { allowed: false }), Verdict::Refuse(_)));
        assert!(matches!(p.on_request(Request::Subsystem("netconf")), Verdict::Refuse(_)));
        assert_eq!(p.started(), None, "a refused subsystem starts nothing");
        assert!(matches!(p.on_request(Request::X11), Verdict::Refuse(_)));
        assert_eq!(p.on_request(Request::Exec), Verdict::Start(Kind::Exec));
    }

    #[test]
    fn sizes_are_clamped() {
        assert_eq!(terminal_size(65535, 65535), (MAX_COLS, MAX_ROWS));
        assert_eq!(terminal_size(0, 0), (80, 24));
        assert_eq!(terminal_size(120, 40), (120, 40));
    }

    #[test]
    fn scp_commands() {
        assert!(is_scp("scp -t /tmp"));
        assert!(is_scp("scp -f /x; id"));
        assert!(!is_scp("scpx -t /tmp"));
        assert!(!is_scp("ls -t"));
    }
}
