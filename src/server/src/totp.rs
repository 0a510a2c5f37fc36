//! Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP): HMAC-SHA-1, 30-second steps, 6
//! digits, the current step and one step either side accepted (RFC 6238 §5.2 "at most one time step"
//! of network delay). Secrets are stored base32-encoded (RFC 4648 §6), as authenticator apps take them.
//!
//! What this module does NOT do: refuse a second use of the same step. The caller does that with
//! [`crate::store::Store::remember_jti`] keyed by user and step (RFC 6238 §5.2: "the verifier MUST
//! NOT accept the second attempt of the OTP after the successful validation has been issued").

use ring::hmac;

/// Seconds per step (RFC 6238 §4.1 X, the recommended default).
pub const STEP: i64 = 30;
/// Digits of our codes.
pub const DIGITS: u32 = 6;

/// RFC 4648 §6 base32 (upper or lower case, `=` padding and spaces ignored); `None` if not base32.
pub fn base32_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 5 / 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            b'=' | b' ' => continue,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1u64 << bits) - 1;
        }
    }
    Some(out)
}

/// RFC 4226 §5.3 HOTP with HMAC-SHA-1, `digits` decimal digits (zero-padded).
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation (RFC 4226 §5.4).
    let offset = usize::from(mac.get(19).copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .map(|b| [b[0] & 0x7f, b[1], b[2], b[3]])
        .unwrap_or([0; 4]);
    let value = u32::from_be_bytes(word) as u64;
    let modulus = 10u64.pow(digits.min(10));
    format!("{:0width$}", value % modulus, width = digits as usize)
}

/// The time step of `unix_time` (RFC 6238 §4.2, T0 = 0).
pub fn step_of(unix_time: i64) -> i64 {
    unix_time.div_euclid(STEP)
}

/// The code for the step containing `unix_time`.
pub fn code_at(secret: &[u8], unix_time: i64, digits: u32) -> String {
    hotp(secret, step_of(unix_time).max(0) as u64, digits)
}

/// Checks a 6-digit `code` against the steps around `now`; returns the matching step (for the
/// caller's replay check) or `None`. Compared in constant time per step.
pub fn verify(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(now);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        if step < 0 {
            continue;
        }
        let expected = hotp(secret, step as u64, DIGITS);
        if fapi_core::binding::constant_time_eq(expected.as_bytes(), code.as_bytes()) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &[u8] = b"12345678901234567890";

    /// RFC 6238 Appendix B, SHA-1 rows: (T, 8-digit TOTP).
    const VECTORS: &[(i64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_appendix_b_sha1() {
        for (t, expected) in VECTORS {
            assert_eq!(code_at(SEED, *t, 8), *expected, "T = {t}");
            // Our 6-digit codes are the last six digits (value mod 10^6).
            assert_eq!(code_at(SEED, *t, 6), expected[2..], "T = {t}");
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
            "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(SEED, counter as u64, 6), *code);
        }
    }

    #[test]
    fn accepts_one_step_either_side_only() {
        let now = 1_234_567_890;
        let step = step_of(now);
        let at = |s: i64| hotp(SEED, s as u64, 6);
        assert_eq!(verify(SEED, &at(step), now), Some(step));
        assert_eq!(verify(SEED, &at(step - 1), now), Some(step - 1));
        assert_eq!(verify(SEED, &at(step + 1), now), Some(step + 1));
        assert_eq!(verify(SEED, &at(step - 2), now), None);
        assert_eq!(verify(SEED, &at(step + 2), now), None);
    }

    #[test]
    fn refuses_malformed_codes() {
        let now = 59;
        assert_eq!(verify(SEED, "287082", now), Some(1));
        assert_eq!(verify(SEED, "28708", now), None);
        assert_eq!(verify(SEED, "2870822", now), None);
        assert_eq!(verify(SEED, "28708a", now), None);
        assert_eq!(verify(SEED, "", now), None);
    }

    #[test]
    fn base32() {
        // RFC 4648 §10 test vectors.
        assert_eq!(base32_decode("MZXW6YTBOI======").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(base32_decode("mzxw6ytb").as_deref(), Some(&b"fooba"[..]));
        assert_eq!(
            base32_decode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").as_deref(),
            Some(SEED)
        );
        assert_eq!(base32_decode("MZ1W"), None);
    }
}
