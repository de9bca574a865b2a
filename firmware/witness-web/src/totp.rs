//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits), the second factor
//! of console logins, and the base32 secret text authenticator apps take.

use hmac::{Hmac, Mac};
use sha1::Sha1;

const STEP: u64 = 30;
const DIGITS: u32 = 6;

/// The code for `secret` at Unix time `now`.
pub fn code(secret: &[u8], now: u64) -> u32 {
    hotp(secret, now / STEP, DIGITS)
}

/// Checks a typed code, allowing one step of clock drift either way.
pub fn verify(secret: &[u8], typed: &str, now: u64) -> bool {
    verify_step(secret, typed, now).is_some()
}

/// Like [`verify`], returning the time step the code belongs to, so the caller can refuse a
/// code used before (codes are single use: a step is taken once).
pub fn verify_step(secret: &[u8], typed: &str, now: u64) -> Option<u64> {
    let typed = typed.trim();
    if typed.len() != DIGITS as usize || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let typed = typed.parse::<u32>().ok()?;
    let step = now / STEP;
    let mut found = None;
    // Constant work whatever matches, so timing tells nothing.
    for s in [step.saturating_sub(1), step, step + 1] {
        if hotp(secret, s, DIGITS) == typed {
            found = Some(s);
        }
    }
    found
}

fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    bin % 10u32.pow(digits)
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what `otpauth://` URIs carry).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let v = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            out.push(ALPHABET[((v >> (35 - i * 5)) & 31) as usize] as char);
        }
    }
    out
}

pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    let (mut bits, mut acc, mut out) = (0u32, 0u64, Vec::new());
    for c in text.trim().trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c.to_ascii_uppercase())? as u64;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The provisioning URI authenticator apps scan.
pub fn uri(user: &str, secret: &[u8]) -> String {
    format!("otpauth://totp/Witness:{user}?secret={}&issuer=Witness&algorithm=SHA1&digits=6&period=30", base32(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, SHA-1, 8 digits; the 6-digit code is its last six.
        let secret = b"12345678901234567890";
        for (t, expect) in [(59, 94287082), (1111111109, 7081804), (1234567890, 89005924), (2000000000, 69279037)] {
            assert_eq!(hotp(secret, t / STEP, 8), expect);
            assert_eq!(code(secret, t), expect % 1_000_000);
        }
    }

    #[test]
    fn verify_allows_one_step_of_drift_and_nothing_else() {
        let s = b"12345678901234567890";
        let now = 1_700_000_000;
        let c = format!("{:06}", code(s, now));
        assert!(verify(s, &c, now));
        assert!(verify(s, &c, now + 30));
        assert!(!verify(s, &c, now + 90));
        assert!(!verify(s, "12345", now));
        assert!(!verify(s, "abcdef", now));
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(from_base32(&base32(&v)).unwrap(), v);
        }
        assert!(from_base32("not base32!").is_none());
    }
}
