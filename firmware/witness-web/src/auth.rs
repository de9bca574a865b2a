//! Console logins: session tokens behind `Secure`/`HttpOnly`/`SameSite=Strict` cookies and a CSRF
//! token per session for state-changing requests (the login throttle is the box's one gate,
//! behind [`crate::Console::authenticate`]). Pure logic over an injected clock, so it is
//! unit-tested without a server.

use crate::Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

pub const COOKIE: &str = "witness_session";
/// A session idle this long is gone.
pub const IDLE: u64 = 30 * 60;
/// And none lives longer than this, active or not.
pub const ABSOLUTE: u64 = 12 * 60 * 60;

/// Requests of one viewing closer than this apart are the same viewing (one audit event).
pub const VIEWING_GAP: u64 = IDLE;

#[derive(Debug, Clone)]
pub struct WebSession {
    /// Names the login in audit events (random, not the token: it opens nothing).
    pub id: String,
    pub user: String,
    pub role: Role,
    /// The account's access epoch at login.
    pub epoch: i64,
    pub csrf: String,
    created: u64,
    seen: u64,
}

/// Open console sessions, keyed by the SHA-256 of their token (a leaked memory dump or log of
/// keys does not give a usable cookie).
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], WebSession>>,
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut b);
    hex::encode(b)
}

impl Sessions {
    /// Opens a session; returns its token (for the cookie) and the session.
    pub fn open(&self, user: &str, role: Role, epoch: i64, now: u64) -> (String, WebSession) {
        let token = random_token();
        let id = random_token()[..16].to_owned();
        let s = WebSession { id, user: user.to_owned(), role, epoch, csrf: random_token(), created: now, seen: now };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, s| live(s, now));
        open.insert(key(&token), s.clone());
        (token, s)
    }

    /// The session behind a cookie token, if it is still alive; touching it keeps it alive.
    pub fn get(&self, token: &str, now: u64) -> Option<WebSession> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(token);
        match open.get_mut(&k) {
            Some(s) if live(s, now) => {
                s.seen = now;
                Some(s.clone())
            }
            Some(_) => {
                open.remove(&k);
                None
            }
            None => None,
        }
    }

    /// The session with this id if it is still alive, without touching it (a live view asks
    /// while it streams; streaming alone does not keep a login alive).
    pub fn alive(&self, id: &str, now: u64) -> Option<WebSession> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.values().find(|s| s.id == id && live(s, now)).cloned()
    }

    pub fn close(&self, token: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(&key(token));
    }
}

/// Which viewings were audited. A viewing is one person (one login), one recording and one way of
/// looking at it (play, download, live view); it lasts while its requests come less than
/// [`VIEWING_GAP`] apart, whatever ranges or query strings they carry, and is audited once, at
/// its first request.
#[derive(Debug, Default)]
pub struct Viewings {
    seen: Mutex<HashMap<(String, String, &'static str), u64>>,
}

impl Viewings {
    /// Whether this request starts a viewing (then it is audited); it is noted either way.
    pub fn starts(&self, web_session: &str, recording: &str, kind: &'static str, now: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, last| now.saturating_sub(*last) < VIEWING_GAP);
        seen.insert((web_session.to_owned(), recording.to_owned(), kind), now).is_none()
    }
}

/// Content streams (recordings, evidence bundles) open at once, for the whole box.
pub const STREAMS_TOTAL: usize = 48;
/// And for one person (every login of one account): more than a player's parallel ranges.
pub const STREAMS_PER_PERSON: usize = 24;
/// Live views open at once for the whole box, and for one person: each holds its catch-up (up
/// to a few MiB of what the session printed) while its reader lingers.
pub const LIVE_TOTAL: usize = 16;
pub const LIVE_PER_PERSON: usize = 4;

/// The content streams open now. Each holds what is made ahead of its reader and the threads
/// making it for as long as its reader lingers, so their number is bounded: the box's memory
/// does not grow with readers that never read.
#[derive(Debug)]
pub struct Streams {
    open: std::sync::Arc<Mutex<HashMap<String, usize>>>,
    per_person: usize,
    total: usize,
}

impl Default for Streams {
    /// Content streams' limits.
    fn default() -> Self {
        Self::new(STREAMS_PER_PERSON, STREAMS_TOTAL)
    }
}

/// One open content stream; the place is given back when it is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    open: std::sync::Arc<Mutex<HashMap<String, usize>>>,
    person: String,
}

impl Streams {
    pub fn new(per_person: usize, total: usize) -> Self {
        Self { open: Default::default(), per_person, total }
    }

    /// A place for one more stream of `person`'s, or `None` when the person or the box is at its
    /// limit.
    pub fn enter(&self, person: &str) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(person).copied().unwrap_or(0);
        if total >= self.total || mine >= self.per_person {
            return None;
        }
        *open.entry(person.to_owned()).or_default() += 1;
        Some(StreamSlot { open: self.open.clone(), person: person.to_owned() })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.person) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.person);
            }
        }
    }
}

fn live(s: &WebSession, now: u64) -> bool {
    now.saturating_sub(s.seen) < IDLE && now.saturating_sub(s.created) < ABSOLUTE
}

/// The `Set-Cookie` value for a token (`None`: clear the cookie).
pub fn cookie(token: Option<&str>) -> String {
    match token {
        Some(t) => format!("{COOKIE}={t}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={ABSOLUTE}"),
        None => format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"),
    }
}

/// The session token from a `Cookie` header.
pub fn token_from_cookies(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|c| c.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Compares without leaking where the strings differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_at_the_absolute_limit() {
        let s = Sessions::default();
        let (t, _) = s.open("ann", Role::Auditor, 0, 1000);
        assert_eq!(s.get(&t, 1000 + IDLE - 1).unwrap().user, "ann");
        assert!(s.get(&t, 1000 + 2 * IDLE).is_none(), "idle too long");
        let (t, _) = s.open("ann", Role::Auditor, 0, 1000);
        let mut now = 1000;
        while now < 1000 + ABSOLUTE - 60 {
            now += IDLE / 2;
            if now >= 1000 + ABSOLUTE {
                break;
            }
            assert!(s.get(&t, now).is_some());
        }
        assert!(s.get(&t, 1000 + ABSOLUTE).is_none(), "past the absolute limit");
        assert!(s.get("made-up", 1000).is_none());
        let (t, _) = s.open("ann", Role::Auditor, 0, 1000);
        s.close(&t);
        assert!(s.get(&t, 1001).is_none());
    }

    #[test]
    fn a_viewing_is_one_login_one_recording_one_way_of_looking() {
        let v = Viewings::default();
        assert!(v.starts("w1", "r1", "play", 1000));
        for t in [1001, 1500, 1500 + VIEWING_GAP - 1] {
            assert!(!v.starts("w1", "r1", "play", t), "more of the same viewing at {t}");
        }
        assert!(v.starts("w1", "r1", "download", 2000), "a download is its own viewing");
        assert!(v.starts("w2", "r1", "play", 2000), "another login is another viewing");
        assert!(v.starts("w1", "r2", "play", 2000), "another recording is another viewing");
        let later = 1500 + 2 * VIEWING_GAP;
        assert!(v.starts("w1", "r1", "play", later), "after a long pause it is a new viewing");
    }

    #[test]
    fn a_session_is_alive_by_id_until_it_ends_and_asking_does_not_keep_it() {
        let s = Sessions::default();
        let (t, w) = s.open("ann", Role::Admin, 0, 1000);
        assert_eq!(w.id.len(), 16);
        assert_eq!(s.alive(&w.id, 1000 + IDLE - 1).unwrap().user, "ann");
        assert!(s.alive(&w.id, 1000 + IDLE).is_none(), "asking did not touch it: idle ends it");
        let (t2, w2) = s.open("ann", Role::Admin, 0, 5000);
        assert_ne!(w2.id, w.id);
        assert!(s.alive(&w2.id, 5001).is_some());
        s.close(&t2);
        assert!(s.alive(&w2.id, 5002).is_none(), "logged out");
        assert!(s.alive("", 5002).is_none());
        let _ = t;
    }

    #[test]
    fn cookies_are_locked_down_and_parsed_back() {
        let c = cookie(Some("abc"));
        for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
        assert_eq!(token_from_cookies("a=1; witness_session=abc; b=2"), Some("abc"));
        assert_eq!(token_from_cookies("witness_session_x=abc"), None);
        assert!(cookie(None).contains("Max-Age=0"));
    }

    #[test]
    fn streams_are_bounded_per_person_and_for_the_box() {
        let s = Streams::default();
        let mine: Vec<_> = (0..STREAMS_PER_PERSON).map(|_| s.enter("ann").expect("a place")).collect();
        assert!(s.enter("ann").is_none(), "ann is at her limit");
        let others: Vec<_> =
            (0..STREAMS_TOTAL - STREAMS_PER_PERSON).map(|k| s.enter(&format!("p{k}")).expect("a place")).collect();
        assert!(s.enter("bob").is_none(), "the box is at its limit");
        drop(mine);
        assert!(s.enter("bob").is_some(), "places are given back");
        drop(others);
        assert!(s.open.lock().unwrap().is_empty());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
