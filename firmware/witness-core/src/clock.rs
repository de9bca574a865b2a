//! The wall clock, read in one place: seconds, milliseconds and microseconds since the Unix
//! epoch. A clock set before 1970 reads as 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn unix_secs() -> i64 {
    since_epoch().as_secs() as i64
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    since_epoch().as_millis() as i64
}

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> i64 {
    since_epoch().as_micros() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_units_agree() {
        let (s, ms, us) = (unix_secs(), unix_ms(), unix_micros());
        assert!(s > 1_700_000_000, "a clock after 2023");
        assert!((ms / 1000 - s).abs() <= 1 && (us / 1_000_000 - s).abs() <= 1);
    }
}
