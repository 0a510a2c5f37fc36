//! Password storage: PBKDF2-HMAC-SHA256 (NIST SP 800-132) with a random salt, as
//! `pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>`; verification in constant time.

use fapi_core::b64;
use ring::pbkdf2;
use std::num::NonZeroU32;

const ITERATIONS: u32 = 100_000;

pub fn hash(random: &crate::random::Random, password: &str) -> Result<String, crate::random::RandomError> {
    let mut salt = [0u8; 16];
    random.fill(&mut salt)?;
    let mut out = [0u8; 32];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    Ok(format!(
        "pbkdf2-sha256${ITERATIONS}${}${}",
        b64::encode(salt),
        b64::encode(out)
    ))
}

pub fn verify(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iter), Some(salt), Some(hash)) = (
        iter.parse::<u32>().ok().and_then(NonZeroU32::new),
        b64::decode(salt),
        b64::decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iter,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use crate::random::{FailingSource, Random, RandomError};

    #[test]
    fn round_trip() -> Result<(), RandomError> {
        let h = super::hash(&Random::system(), "correct horse")?;
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong", &h));
        assert!(!super::verify("correct horse", "plain"));
        Ok(())
    }

    #[test]
    fn no_hash_with_a_failed_salt() {
        let failing = Random::from_source(std::sync::Arc::new(FailingSource));
        assert_eq!(super::hash(&failing, "correct horse"), Err(RandomError));
    }
}
