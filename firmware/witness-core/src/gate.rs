//! The front door's arithmetic, without I/O: how many password checks a source and a name may
//! have in flight or have failed before the box stops checking, and for how long. SSH, RDP and
//! the console share one [`Throttle`]. An attempt *reserves* its place before the (slow)
//! password check runs and settles after, so a burst of parallel guesses is cut at the limit
//! instead of all being checked.

use std::collections::HashMap;
use std::net::IpAddr;

/// Limits of the throttle; [`Limits::default`] is what the box uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failures (and checks in flight) one source may have against one name per window.
    pub per_source_name: u32,
    /// Failures one source may have against all names per window.
    pub per_source: u32,
    /// Failures against one name from all sources per window (a slow, distributed guess).
    pub per_name: u32,
    /// The window failures are counted in, and the first lockout's length, in seconds.
    pub window: u64,
    /// The longest lockout: each lockout of the same key doubles the last one, up to this.
    pub max_lockout: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { per_source_name: 5, per_source: 20, per_name: 50, window: 300, max_lockout: 3600 }
    }
}

/// Longest user name any door accepts; longer ones are refused before they are looked up or
/// written to the audit log.
pub const MAX_LOGIN_LEN: usize = 256;

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong name or credential (the same answer for both).
    Wrong,
    /// Too many failures; try again after this many seconds. The credential was not checked.
    Throttled { retry_after: u64 },
    /// The login name is longer than [`MAX_LOGIN_LEN`] or not printable.
    BadName,
}

/// A reserved attempt; hand it back with the outcome.
#[derive(Debug)]
#[must_use = "settle the attempt with its outcome"]
pub struct Ticket {
    keys: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    SourceName(IpAddr, String),
    Source(IpAddr),
    Name(String),
}

#[derive(Debug, Default, Clone)]
struct Count {
    /// Failure times (unix seconds) inside the window.
    failures: Vec<u64>,
    in_flight: u32,
    locked_until: u64,
    /// The last lockout's length, to double the next.
    last_lockout: u64,
}

/// What a settled attempt did to the throttle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Ok,
    /// This failure locked a key: an audit event says so (`what`: "source and name", ...).
    LockedOut {
        what: &'static str,
        seconds: u64,
    },
}

/// The shared login throttle.
#[derive(Debug, Default)]
pub struct Throttle {
    limits: Limits,
    counts: HashMap<Key, Count>,
}

/// Bound on tracked keys, so spraying names from many sources cannot grow the box's memory; at
/// the bound, keys with nothing in flight and no lockout are dropped first.
const MAX_KEYS: usize = 65_536;

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Self { limits, counts: HashMap::new() }
    }

    fn limit(&self, key: &Key) -> u32 {
        match key {
            Key::SourceName(..) => self.limits.per_source_name,
            Key::Source(_) => self.limits.per_source,
            Key::Name(_) => self.limits.per_name,
        }
    }

    fn keys(source: Option<IpAddr>, name: &str) -> Vec<Key> {
        let name = name.to_ascii_lowercase();
        let mut keys = Vec::with_capacity(3);
        if let Some(ip) = source {
            keys.push(Key::SourceName(ip, name.clone()));
            keys.push(Key::Source(ip));
        }
        keys.push(Key::Name(name));
        keys
    }

    /// Reserves a password check for `name` from `source` at `now` (unix seconds), or says how
    /// long to wait. A reserved check counts against the limits until it is settled.
    pub fn reserve(&mut self, source: Option<IpAddr>, name: &str, now: u64) -> Result<Ticket, Refusal> {
        if name.len() > MAX_LOGIN_LEN || name.chars().any(char::is_control) {
            return Err(Refusal::BadName);
        }
        let keys = Self::keys(source, name);
        let window = self.limits.window;
        let mut wait = 0;
        // A source that has not failed for this name is not held back by the name's own limit:
        // strangers guessing from elsewhere cannot lock the name out for everyone. (They get one
        // guess per source before the name's limit applies to them too.)
        let clean_source = match keys.first() {
            Some(k @ Key::SourceName(..)) => {
                self.counts.get(k).is_none_or(|c| c.failures.iter().all(|&t| now.saturating_sub(t) >= window))
            }
            _ => false,
        };
        for key in &keys {
            if clean_source && matches!(key, Key::Name(_)) {
                continue;
            }
            let limit = self.limit(key);
            if let Some(c) = self.counts.get_mut(key) {
                c.failures.retain(|&t| now.saturating_sub(t) < window);
                if c.locked_until > now {
                    wait = wait.max(c.locked_until - now);
                } else if c.failures.len() as u32 + c.in_flight >= limit {
                    // Full with checks still in flight: wait for them, not for a lockout.
                    let oldest = c.failures.first().copied().unwrap_or(now);
                    wait = wait.max((oldest + window).saturating_sub(now).max(1));
                }
            }
        }
        if wait > 0 {
            return Err(Refusal::Throttled { retry_after: wait });
        }
        if self.counts.len() + keys.len() > MAX_KEYS {
            self.counts.retain(|_, c| c.in_flight > 0 || c.locked_until > now || !c.failures.is_empty());
        }
        for key in &keys {
            self.counts.entry(key.clone()).or_default().in_flight += 1;
        }
        Ok(Ticket { keys })
    }

    /// Gives a reserved check back unchecked (the box could not run it): it counts for nothing.
    pub fn release(&mut self, ticket: Ticket) {
        for key in ticket.keys {
            if let Some(c) = self.counts.get_mut(&key) {
                c.in_flight = c.in_flight.saturating_sub(1);
            }
        }
    }

    /// Settles a reserved check. A success clears the name's counts for that source (one good
    /// login does not reopen a source guessing other names); a failure may lock a key out.
    pub fn settle(&mut self, ticket: Ticket, success: bool, now: u64) -> Settled {
        let mut out = Settled::Ok;
        for key in ticket.keys {
            let limit = self.limit(&key);
            let (window, max_lockout) = (self.limits.window, self.limits.max_lockout);
            let Some(c) = self.counts.get_mut(&key) else { continue };
            c.in_flight = c.in_flight.saturating_sub(1);
            if success {
                if matches!(key, Key::SourceName(..)) {
                    c.failures.clear();
                    c.last_lockout = 0;
                }
                continue;
            }
            c.failures.push(now);
            if c.failures.len() as u32 >= limit && c.locked_until <= now {
                let seconds = if c.last_lockout == 0 { window } else { (c.last_lockout * 2).min(max_lockout) };
                c.last_lockout = seconds;
                c.locked_until = now + seconds;
                c.failures.clear();
                let what = match key {
                    Key::SourceName(..) => "source and name",
                    Key::Source(_) => "source",
                    Key::Name(_) => "name",
                };
                if matches!(out, Settled::Ok) {
                    out = Settled::LockedOut { what, seconds };
                }
            }
        }
        out
    }
}

/// Connections a listener holds before login, from one source and from all.
pub const PREAUTH_PER_SOURCE: usize = 10;
pub const PREAUTH_TOTAL: usize = 256;
/// Connections a listener holds in all (sessions included): file descriptors stay for the
/// health checks and the recordings.
pub const CONNECTIONS_TOTAL: usize = 1024;
/// From TCP accept to a finished login (version line, key exchange or TLS, authentication).
pub const LOGIN_GRACE_SECS: u64 = 30;
/// From TCP accept to the client's SSH version line (clients send it at once).
pub const VERSION_LINE_SECS: u64 = 10;

/// The console's pre-TLS limits are wider: one browser opens several connections at once, and
/// an office behind one address has several browsers.
pub const WEB_PREAUTH_PER_SOURCE: usize = 64;
pub const WEB_PREAUTH_TOTAL: usize = 512;

/// Counts a listener's connections that have not logged in yet, per source and in all.
#[derive(Debug, Clone)]
pub struct PreAuth {
    inner: std::sync::Arc<std::sync::Mutex<PreAuthCounts>>,
    per_source: usize,
    total: usize,
}

impl Default for PreAuth {
    fn default() -> Self {
        Self::with_limits(PREAUTH_PER_SOURCE, PREAUTH_TOTAL)
    }
}

#[derive(Debug, Default)]
struct PreAuthCounts {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
    connections: usize,
}

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Source,
    PreAuth,
    Connections,
}

impl Full {
    pub fn as_str(self) -> &'static str {
        match self {
            Full::Source => "pre-login connections from this source",
            Full::PreAuth => "pre-login connections",
            Full::Connections => "connections",
        }
    }
}

/// A connection's place: pre-login until [`Slot::logged_in`], then only counted in all; freed
/// when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: std::sync::Arc<std::sync::Mutex<PreAuthCounts>>,
    source: IpAddr,
    pre_auth: bool,
}

impl PreAuth {
    pub fn with_limits(per_source: usize, total: usize) -> Self {
        Self { inner: Default::default(), per_source, total }
    }

    /// Takes a place for a new connection from `source`, or says which limit is full.
    pub fn enter(&self, source: IpAddr) -> Result<Slot, Full> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.connections >= CONNECTIONS_TOTAL {
            return Err(Full::Connections);
        }
        if c.total >= self.total {
            return Err(Full::PreAuth);
        }
        let n = c.per_source.entry(source).or_default();
        if *n >= self.per_source {
            return Err(Full::Source);
        }
        *n += 1;
        c.total += 1;
        c.connections += 1;
        Ok(Slot { counts: self.inner.clone(), source, pre_auth: true })
    }

    /// Connections before login, and in all.
    pub fn counts(&self) -> (usize, usize) {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (c.total, c.connections)
    }
}

impl PreAuthCounts {
    fn leave_pre_auth(&mut self, source: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

impl Slot {
    /// The connection logged in: it no longer counts against the pre-login limits.
    pub fn logged_in(&mut self) {
        if std::mem::replace(&mut self.pre_auth, false) {
            self.counts.lock().unwrap_or_else(|p| p.into_inner()).leave_pre_auth(self.source);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if self.pre_auth {
            c.leave_pre_auth(self.source);
        }
        c.connections = c.connections.saturating_sub(1);
    }
}

/// Shortest password the box accepts for a user.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Passwords every guessing list starts with (lower case); refused whatever their length.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "123456789",
    "1234567890",
    "12345678",
    "qwertyuiop",
    "qwerty123",
    "qwerty1234",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "iloveyou",
    "letmein123",
    "welcome123",
    "welcome1",
    "admin12345",
    "administrator",
    "changeme123",
    "changeme",
    "default123",
    "abc1234567",
    "abcdefghij",
    "trustno1",
    "sunshine123",
    "football123",
    "monkey1234",
    "dragon1234",
    "master1234",
    "superman123",
    "starwars123",
    "princess123",
    "baseball123",
    "letmeinnow",
    "secret1234",
    "root123456",
    "toor123456",
    "witness123",
    "witness1234",
    "0987654321",
    "1111111111",
    "0000000000",
    "aaaaaaaaaa",
];

/// Checks a new password for `user`: at least [`MIN_PASSWORD_LEN`] characters, not the user
/// name (nor the name backwards), not one of the most common passwords. `Err` is the one line to show.
pub fn check_new_password(user: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!("the password is {n} characters long; it needs at least {MIN_PASSWORD_LEN}"));
    }
    let lower = password.to_lowercase();
    let name = user.to_lowercase();
    if lower == name || lower.chars().rev().collect::<String>() == name {
        return Err("the password is the user name; choose another".into());
    }
    let distinct: std::collections::HashSet<char> = lower.chars().collect();
    if COMMON.contains(&lower.as_str()) || distinct.len() < 3 {
        return Err("the password is one of the most common ones; choose another".into());
    }
    Ok(())
}

/// Text from a client (a refusal naming what they typed) as it may appear in the audit log: at
/// most `max` characters, control characters escaped.
pub fn bounded_text(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).flat_map(char::escape_debug).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// A login name as it may appear in logs and the audit log: at most 64 characters, control
/// characters escaped.
pub fn loggable_name(name: &str) -> String {
    let mut out: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().count() > 64 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn parallel_guesses_are_cut_at_the_limit_before_any_check() {
        let mut t = Throttle::default();
        let tickets: Vec<_> = (0..40).map(|_| t.reserve(ip(1), "admin", 1000)).collect();
        assert_eq!(tickets.iter().filter(|r| r.is_ok()).count(), 5, "only five checks may be in flight");
        assert!(matches!(tickets[39], Err(Refusal::Throttled { .. })));
        let mut locked = None;
        for ticket in tickets.into_iter().flatten() {
            if let Settled::LockedOut { what, seconds } = t.settle(ticket, false, 1001) {
                locked = Some((what, seconds));
            }
        }
        assert_eq!(locked, Some(("source and name", 300)), "the fifth failure locks, once");
        assert_eq!(t.reserve(ip(1), "admin", 1200).unwrap_err(), Refusal::Throttled { retry_after: 101 });
        assert!(t.reserve(ip(2), "admin", 1200).is_ok(), "another source is not locked out by a stranger");
    }

    #[test]
    fn lockouts_back_off_and_success_clears() {
        let mut t = Throttle::default();
        let fail = |t: &mut Throttle, now| {
            let k = t.reserve(ip(1), "bob", now).unwrap();
            t.settle(k, false, now)
        };
        for i in 0..4 {
            assert_eq!(fail(&mut t, 10 + i), Settled::Ok);
        }
        assert_eq!(fail(&mut t, 14), Settled::LockedOut { what: "source and name", seconds: 300 });
        for i in 0..4 {
            assert_eq!(fail(&mut t, 400 + i), Settled::Ok);
        }
        assert_eq!(fail(&mut t, 404), Settled::LockedOut { what: "source and name", seconds: 600 }, "doubles");
        let k = t.reserve(ip(1), "bob", 2000).unwrap();
        t.settle(k, true, 2000);
        for i in 0..4 {
            assert_eq!(fail(&mut t, 2001 + i), Settled::Ok);
        }
        assert_eq!(fail(&mut t, 2010), Settled::LockedOut { what: "source and name", seconds: 300 }, "reset");
    }

    #[test]
    fn strangers_from_many_sources_cannot_lock_a_name_out_for_a_clean_source() {
        let mut t = Throttle::default();
        for i in 0..60u8 {
            if let Ok(k) = t.reserve(Some(IpAddr::from([10, 9, 0, i])), "admin", 100) {
                t.settle(k, false, 100);
            }
        }
        assert!(t.reserve(Some(IpAddr::from([10, 9, 0, 1])), "admin", 101).is_err(), "a guessing source is held back");
        assert!(
            t.reserve(Some(IpAddr::from([192, 168, 1, 1])), "admin", 101).is_ok(),
            "the admin's clean source is not"
        );
    }

    #[test]
    fn a_source_guessing_many_names_is_stopped() {
        let mut t = Throttle::default();
        let mut refused = 0;
        for i in 0..30 {
            match t.reserve(ip(9), &format!("user{i}"), 50) {
                Ok(k) => {
                    t.settle(k, false, 50);
                }
                Err(_) => refused += 1,
            }
        }
        assert_eq!(refused, 10, "twenty failures per source");
    }

    #[test]
    fn pre_login_places_are_bounded_per_source_and_freed() {
        let p = PreAuth::default();
        let a = IpAddr::from([10, 0, 0, 1]);
        let mut slots: Vec<Slot> = (0..PREAUTH_PER_SOURCE).map(|_| p.enter(a).unwrap()).collect();
        assert_eq!(p.enter(a).unwrap_err(), Full::Source);
        assert!(p.enter(IpAddr::from([10, 0, 0, 2])).is_ok(), "others still get in");
        slots[0].logged_in();
        let _next = p.enter(a).unwrap();
        assert_eq!(p.counts(), (PREAUTH_PER_SOURCE, PREAUTH_PER_SOURCE + 1));
        slots.clear();
        assert_eq!(p.counts(), (1, 1));
    }

    #[test]
    fn new_passwords_follow_the_policy() {
        assert!(check_new_password("alice", "x").unwrap_err().contains("at least 8"));
        assert!(check_new_password("margaret", "Margaret").unwrap_err().contains("user name"));
        assert!(check_new_password("margaret", "teragram").unwrap_err().contains("user name"));
        assert!(check_new_password("alice", "Password123").unwrap_err().contains("common"));
        assert!(check_new_password("alice", "zzzzzzzzzzzz").unwrap_err().contains("common"));
        assert!(check_new_password("alice", "correct horse battery").is_ok());
    }

    #[test]
    fn names_are_bounded_and_escaped() {
        let mut t = Throttle::default();
        assert_eq!(t.reserve(ip(1), &"a".repeat(2_000_000), 0).unwrap_err(), Refusal::BadName);
        assert_eq!(t.reserve(ip(1), "a\nb", 0).unwrap_err(), Refusal::BadName);
        let shown = loggable_name(&"é".repeat(100));
        assert!(shown.chars().count() <= 65);
        assert_eq!(loggable_name("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    }
}
