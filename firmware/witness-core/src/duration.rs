//! Human durations for the CLI (`90s`, `30m`, `8h`, `7d`, `1h30m`).

use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: use a number with a unit, e.g. 90s, 30m, 8h, 7d or 1h30m")]
pub struct DurationError {
    input: String,
}

/// Parses a sequence of `<number><unit>` parts, units `s`, `m`, `h`, `d`. Zero is refused: a grant
/// that is over before it starts is a typo.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError { input: input.to_owned() };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in input.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err()),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(err)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "10", "m", "5x", "0s", "-5m", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
