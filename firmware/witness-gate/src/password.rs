//! The one gate every password check of the box goes through, SSH and the console alike: the
//! shared throttle (`witness-core::gate`, reserve before check) and a bound on how many Argon2
//! checks run at once, so a storm of guesses costs the box neither memory nor the sessions it
//! serves. Lockouts and throttled attempts are audit events.

use std::net::IpAddr;
use std::sync::{Condvar, Mutex};
use std::time::Duration;
use witness_core::gate::{Refusal, Settled, Throttle, Ticket, loggable_name};

/// Argon2 checks running at once: one per core (each takes about 19 MiB for ~50 ms).
fn hashing_slots() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 8)
}

/// Checks waiting for a slot beyond which new ones are refused at once.
const MAX_WAITING: usize = 64;
/// The longest a check waits for a slot.
const MAX_WAIT: Duration = Duration::from_secs(10);

pub struct Gate {
    throttle: Mutex<Throttle>,
    slots: Mutex<(usize, usize)>,
    /// Argon2's working memory, one buffer per slot, made once and reused: a fresh 19 MiB per
    /// check stays resident in the allocator (measured: 150 checks left 1.5 GiB).
    memory: Mutex<Vec<Vec<argon2::Block>>>,
    freed: Condvar,
    capacity: usize,
    /// Throttled attempts per (source, name) in the current lockout, and when the last one was
    /// audited.
    announced: Mutex<std::collections::HashMap<(Option<IpAddr>, String), Throttled>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            throttle: Mutex::default(),
            slots: Mutex::new((0, 0)),
            memory: Mutex::default(),
            freed: Condvar::new(),
            capacity: hashing_slots(),
            announced: Mutex::default(),
        }
    }
}

/// What the gate wants written to the audit log (the caller owns the log).
#[derive(Debug)]
pub struct GateEvent {
    pub kind: &'static str,
    pub detail: serde_json::Value,
}

impl Gate {
    /// Runs `check` (a password comparison) for `name` from `source`, unless the throttle or
    /// the hashing bound says no. Returns the outcome and any audit event the gate produced.
    pub fn password(
        &self,
        source: Option<IpAddr>,
        name: &str,
        check: impl FnOnce(&mut Vec<argon2::Block>) -> bool,
    ) -> (Result<(), Refusal>, Option<GateEvent>) {
        let now = unix_now();
        let reserved = self.throttle.lock().unwrap_or_else(|p| p.into_inner()).reserve(source, name, now);
        let ticket = match reserved {
            Ok(t) => t,
            Err(Refusal::Throttled { retry_after }) => {
                return (Err(Refusal::Throttled { retry_after }), self.announce(source, name, retry_after, now));
            }
            Err(r) => return (Err(r), None),
        };
        let ok = match self.slot() {
            Some(_slot) => {
                let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default();
                let ok = check(&mut memory);
                self.memory.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
                ok
            }
            None => {
                self.throttle.lock().unwrap_or_else(|p| p.into_inner()).release(ticket);
                return (Err(Refusal::Throttled { retry_after: 1 }), self.announce(source, name, 1, now));
            }
        };
        let settled = self.throttle.lock().unwrap_or_else(|p| p.into_inner()).settle(ticket, ok, unix_now());
        let event = lockout(settled, source, name);
        (if ok { Ok(()) } else { Err(Refusal::Wrong) }, event)
    }

    /// Reserves a check whose comparison runs elsewhere (NTLM inside CredSSP); settle or release
    /// the ticket when it is known.
    pub fn reserve(&self, source: Option<IpAddr>, name: &str) -> Result<Ticket, (Refusal, Option<GateEvent>)> {
        let now = unix_now();
        match self.throttle.lock().unwrap_or_else(|p| p.into_inner()).reserve(source, name, now) {
            Ok(t) => Ok(t),
            Err(Refusal::Throttled { retry_after }) => {
                Err((Refusal::Throttled { retry_after }, self.announce(source, name, retry_after, now)))
            }
            Err(r) => Err((r, None)),
        }
    }

    /// Settles a reserved check; a lockout it caused comes back as an audit event.
    pub fn settle(&self, ticket: Ticket, ok: bool, source: Option<IpAddr>, name: &str) -> Option<GateEvent> {
        lockout(self.throttle.lock().unwrap_or_else(|p| p.into_inner()).settle(ticket, ok, unix_now()), source, name)
    }

    /// Gives a reserved check back unchecked (the client went away before it was decided).
    pub fn release(&self, ticket: Ticket) {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner()).release(ticket);
    }

    /// Every throttled attempt is counted: the first [`AUDIT_EACH`] of a lockout are audit events
    /// of their own, later ones one event a minute with the count so far (a flood cannot fill
    /// the audit log, and no attempt goes uncounted).
    fn announce(&self, source: Option<IpAddr>, name: &str, retry_after: u64, now: u64) -> Option<GateEvent> {
        let mut seen = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, t| t.until > now);
        let key = (source, name.to_ascii_lowercase());
        if seen.len() > 10_000 && !seen.contains_key(&key) {
            return None;
        }
        let t = seen.entry(key).or_insert(Throttled { until: now + retry_after, attempts: 0, audited_at: 0 });
        t.until = t.until.max(now + retry_after);
        t.attempts += 1;
        if t.attempts > AUDIT_EACH && now < t.audited_at + AUDIT_COUNT_EVERY {
            return None;
        }
        t.audited_at = now;
        Some(GateEvent {
            kind: "login_throttled",
            detail: serde_json::json!({
                "peer": source.map(|s| s.to_string()),
                "name": loggable_name(name),
                "retry_after": retry_after,
                "attempts": t.attempts,
            }),
        })
    }

    /// Waits for a hashing slot (bounded queue, bounded wait).
    fn slot(&self) -> Option<SlotGuard<'_>> {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if s.0 >= self.capacity && s.1 >= MAX_WAITING {
            return None;
        }
        s.1 += 1;
        let deadline = std::time::Instant::now() + MAX_WAIT;
        while s.0 >= self.capacity {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                s.1 -= 1;
                return None;
            }
            s = self.freed.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        s.1 -= 1;
        s.0 += 1;
        Some(SlotGuard(self))
    }
}

/// Throttled attempts of one source and name in one lockout.
#[derive(Debug, Clone, Copy)]
struct Throttled {
    until: u64,
    attempts: u64,
    audited_at: u64,
}

/// Throttled attempts of one lockout audited one by one; past that, one event a minute carries
/// the count so far, so a flood is counted without filling the audit log.
const AUDIT_EACH: u64 = 10;
const AUDIT_COUNT_EVERY: u64 = 60;

struct SlotGuard<'a>(&'a Gate);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.slots.lock().unwrap_or_else(|p| p.into_inner()).0 -= 1;
        self.0.freed.notify_one();
    }
}

/// The audit event of a lockout that a settled check caused, if it caused one.
fn lockout(settled: Settled, source: Option<IpAddr>, name: &str) -> Option<GateEvent> {
    match settled {
        Settled::LockedOut { what, seconds } => Some(GateEvent {
            kind: "login_locked_out",
            detail: serde_json::json!({
                "locked": what,
                "seconds": seconds,
                "peer": source.map(|s| s.to_string()),
                "name": loggable_name(name),
            }),
        }),
        Settled::Ok => None,
    }
}

/// A new password's PHC string (Argon2id, the crate's defaults, a fresh salt).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    use argon2::password_hash::rand_core::OsRng;
    let salt = argon2::password_hash::SaltString::generate(&mut OsRng);
    Ok(argon2::Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Checks `password` against an Argon2 PHC string, in `memory` (grown to the hash's memory cost
/// once, then reused). Constant-time comparison of the result.
pub fn verify_password(phc: &str, password: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::PasswordHash;
    let Ok(h) = PasswordHash::new(phc) else { return false };
    let Ok(algorithm) = argon2::Algorithm::try_from(h.algorithm) else { return false };
    let version = match h.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&h) else { return false };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let argon = argon2::Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks]).is_err() {
        return false;
    }
    let diff = out.iter().zip(expected.as_bytes()).fold(0u8, |d, (a, b)| d | (a ^ b));
    diff == 0 && out.len() == expected.len()
}

fn unix_now() -> u64 {
    witness_core::clock::unix_secs() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_more_checks_run_at_once_than_there_are_slots() {
        let gate = Arc::new(Gate::default());
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
                std::thread::spawn(move || {
                    let ip = Some(IpAddr::from([10, 1, 0, i as u8]));
                    gate.password(ip, "alice", |_| {
                        let n = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                        false
                    })
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap().0).collect();
        assert!(peak.load(Ordering::SeqCst) <= gate.capacity, "peak {peak:?}");
        assert!(results.iter().all(|r| *r == Err(Refusal::Wrong)));
    }

    #[test]
    fn reused_memory_verifies_like_the_library() {
        let phc = hash_password("correct horse").unwrap();
        let mut memory = Vec::new();
        assert!(verify_password(&phc, "correct horse", &mut memory));
        let size = memory.len();
        assert!(size > 0);
        assert!(!verify_password(&phc, "wrong horse", &mut memory));
        assert!(verify_password(&phc, "correct horse", &mut memory), "the buffer is reused as it is");
        assert_eq!(memory.len(), size, "and never grows again");
        assert!(!verify_password("not a phc string", "x", &mut memory));
    }

    #[test]
    fn a_lockout_and_every_throttled_attempt_are_counted_in_the_audit_log() {
        let gate = Gate::default();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let events: Vec<_> = (0..5).filter_map(|_| gate.password(ip, "admin", |_| false).1).collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, "login_locked_out");
        let throttled: Vec<_> = (0..30)
            .map(|_| {
                let (r, e) = gate.password(ip, "admin", |_| panic!("a throttled attempt is never checked"));
                assert!(matches!(r, Err(Refusal::Throttled { .. })));
                e
            })
            .collect();
        let counted: Vec<u64> = throttled.iter().flatten().map(|e| e.detail["attempts"].as_u64().unwrap()).collect();
        assert_eq!(counted, (1..=AUDIT_EACH).collect::<Vec<_>>(), "each of the first attempts is an event");
        assert!(throttled.iter().flatten().all(|e| e.kind == "login_throttled"));
        // A minute on, the next throttled attempt carries the count of all of them.
        let now = unix_now() + AUDIT_COUNT_EVERY;
        let e = gate.announce(ip, "admin", 300, now).expect("the count is audited every minute");
        assert_eq!(e.detail["attempts"], 31);
        assert!(gate.announce(ip, "admin", 300, now + 1).is_none());
    }
}
