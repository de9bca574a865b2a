//! How long a failed step waits before it is tried again: exponential, with jitter so a fleet
//! (or a worker pool) does not retry in step, capped so a store that comes back is used soon.

/// The longest wait.
pub const CAP_MS: i64 = 5 * 60 * 1000;

/// Wait after `attempts` failures: 2 s, 4 s, 8 s … capped at [`CAP_MS`], each ±20 % by
/// `jitter` (any number; its value modulo 1000 picks the point in the band).
pub fn backoff_ms(attempts: u32, jitter: i64) -> i64 {
    let base = (2000i64 << attempts.min(16)).min(CAP_MS);
    let spread = (jitter.rem_euclid(1000) as f64 / 1000.0 - 0.5) * 0.4;
    (base as f64 * (1.0 + spread)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps_within_the_jitter_band() {
        for (attempts, base) in [(0u32, 2000i64), (1, 4000), (2, 8000), (7, 256_000), (8, CAP_MS), (40, CAP_MS)] {
            for jitter in [0, 1, 499, 500, 999, -3, i64::MAX, i64::MIN] {
                let w = backoff_ms(attempts, jitter);
                assert!(w >= base * 8 / 10 && w <= base * 12 / 10, "{attempts} {jitter}: {w}");
            }
        }
        assert_eq!(backoff_ms(3, 500), 16_000, "the middle of the band is the base");
        assert!(backoff_ms(3, 0) < backoff_ms(3, 999), "jitter spreads retries");
    }
}
