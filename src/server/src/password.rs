//! Password storage: Argon2id (RFC 9106) with the OWASP Password Storage Cheat Sheet's parameters
//! (m = 19 MiB, t = 2, p = 1), stored as a PHC string `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`
//! (16-byte random salt, 32-byte tag); verification in constant time.
//!
//! Why Argon2id and not PBKDF2 at 600 000 iterations: OWASP lists Argon2id first; it is memory-hard,
//! so a guessing rig pays 19 MiB of memory traffic per guess where PBKDF2-HMAC-SHA256 costs a GPU
//! almost nothing but cycles; and it costs the server less: about 45 ms of one core per sign-in
//! (release build, docs/performance.md "Sign-in load"), where PBKDF2 took about 20 ms at 100 000
//! iterations and so would take about 6 times that at 600 000. The RustCrypto `argon2` crate is pure
//! Rust (no C toolchain needed).
//!
//! Older hashes, `pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>` (PBKDF2-HMAC-SHA256, NIST
//! SP 800-132, 100 000 iterations), still verify; [`needs_rehash`] says so, and the sign-in handler
//! stores a fresh Argon2id hash after the next successful sign-in.
//!
//! A hash costs tens of milliseconds of CPU and 19 MiB: [`Hasher`] runs it off the async executor
//! (`tokio::task::spawn_blocking`) and lets at most `login.password_hash_concurrency` run at once (a
//! semaphore; the default is the number of cores), so a burst of sign-ins queues for the hashing
//! permits instead of stalling every other request. Callers must not hold a database connection
//! across it (the store's methods release theirs before they return).

use crate::random::Random;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use fapi_core::b64;
use ring::pbkdf2;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet, Argon2id: "m=19456 (19 MiB), t=2, p=1" (its minimum
/// configuration; the equally strong alternatives trade memory for iterations).
pub const ARGON2_M_KIB: u32 = 19_456;
pub const ARGON2_T: u32 = 2;
pub const ARGON2_P: u32 = 1;

/// Largest legacy PBKDF2 iteration count accepted from the store (a bound, not a setting).
const PBKDF2_MAX_ITERATIONS: u32 = 10_000_000;

#[derive(Debug)]
pub enum Error {
    /// The system random generator failed: no salt, so no hash (fail closed).
    Random,
    /// Argon2 refused its input (a password beyond its length limit) or its parameters.
    Hash(String),
    /// The blocking task panicked or was cancelled, or the permits were closed.
    Task(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Random => f.write_str("password hashing: the random generator failed"),
            Error::Hash(e) => write!(f, "password hashing: {e}"),
            Error::Task(e) => write!(f, "password hashing task: {e}"),
        }
    }
}

impl std::error::Error for Error {}

fn argon2() -> Result<Argon2<'static>, Error> {
    let params =
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(32)).map_err(|e| Error::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A fresh salt from the server's random source (src/random.rs); a failed draw is an error, never
/// a zero salt.
fn salt(random: &Random) -> Result<[u8; 16], Error> {
    let mut salt = [0u8; 16];
    random.fill(&mut salt).map_err(|_| Error::Random)?;
    Ok(salt)
}

fn hash_with_salt(password: &str, salt: &[u8]) -> Result<String, Error> {
    let salt = SaltString::encode_b64(salt).map_err(|e| Error::Hash(e.to_string()))?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// A new Argon2id hash of `password` with a fresh random salt. Blocking (tens of ms): in async code
/// use [`Hasher::hash`].
pub fn hash(random: &Random, password: &str) -> Result<String, Error> {
    hash_with_salt(password, &salt(random)?)
}

/// Whether `password` matches `stored` (Argon2id PHC string, or a legacy PBKDF2 hash). Anything
/// else, including an Argon2 hash with other parameters than a sane bound allows, does not match.
/// Blocking: in async code use [`Hasher::verify`].
pub fn verify(password: &str, stored: &str) -> bool {
    if stored.starts_with("$argon2") {
        return verify_argon2(password, stored);
    }
    verify_pbkdf2(password, stored)
}

fn verify_argon2(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    // The parameters come from the stored string: bounded, so a tampered row cannot make one
    // verification take gigabytes or minutes.
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > 256 * 1024 || params.t_cost() > 16 || params.p_cost() > 8 {
        return false;
    }
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

fn verify_pbkdf2(password: &str, stored: &str) -> bool {
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
        iter.parse::<u32>()
            .ok()
            .filter(|i| *i <= PBKDF2_MAX_ITERATIONS)
            .and_then(NonZeroU32::new),
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

/// Whether a stored hash should be replaced after a successful sign-in: anything but Argon2id at
/// exactly the current parameters (legacy PBKDF2, or older Argon2 parameters).
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != Algorithm::Argon2id.ident()
        || parsed.version != Some(Version::V0x13.into())
        || params.m_cost() != ARGON2_M_KIB
        || params.t_cost() != ARGON2_T
        || params.p_cost() != ARGON2_P
}

/// A hash to verify against when the username is unknown, so that both cases cost the same: the
/// same algorithm and parameters, computed once (a fixed salt: it protects no password).
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| {
        hash_with_salt("no such user: timing equalizer", b"fapi-as dummy salt").unwrap_or_default()
    })
}

/// Runs hashing and verification on the blocking pool, at most `permits` at once.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    /// `max_concurrent` hashes at once (0 is taken as 1).
    pub fn new(max_concurrent: usize) -> Hasher {
        Hasher {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let out = tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        Ok(out)
    }

    /// [`verify`] against the user's stored hash, or, for an unknown user (`None`), against the
    /// dummy hash (always `false`, at the same cost).
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, Error> {
        let password = password.to_string();
        let stored = stored.map(str::to_string);
        self.run(move || match stored {
            Some(stored) => verify(&password, &stored),
            None => {
                let _ = verify(&password, dummy_hash());
                false
            }
        })
        .await
    }

    /// [`hash`] off the executor (the salt is drawn here, before the blocking task).
    pub async fn hash(&self, random: &Random, password: &str) -> Result<String, Error> {
        let password = password.to_string();
        let salt = salt(random)?;
        self.run(move || hash_with_salt(&password, &salt)).await?
    }

    /// Hashes running or waiting could start now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// The default of `login.password_hash_concurrency`: the number of cores.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PBKDF2 hash in the format stored before Argon2id (made here with ring, as the old code did).
    fn legacy(password: &str, iterations: u32) -> String {
        let salt = [7u8; 16];
        let mut out = [0u8; 32];
        let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            n,
            &salt,
            password.as_bytes(),
            &mut out,
        );
        format!(
            "pbkdf2-sha256${iterations}${}${}",
            b64::encode(salt),
            b64::encode(out)
        )
    }

    #[test]
    fn argon2id_round_trip_with_owasp_parameters() -> Result<(), Error> {
        let h = hash(&Random::system(), "correct horse")?;
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong", &h));
        assert!(!verify("correct horse", "plain"));
        assert!(!needs_rehash(&h));
        assert_ne!(
            hash(&Random::system(), "correct horse")?,
            h,
            "a fresh salt each time"
        );
        Ok(())
    }

    #[test]
    fn no_hash_with_a_failed_salt() {
        let failing = Random::from_source(Arc::new(crate::random::FailingSource));
        assert!(matches!(hash(&failing, "correct horse"), Err(Error::Random)));
    }

    #[test]
    fn legacy_pbkdf2_still_verifies_and_needs_rehash() {
        let old = legacy("correct horse", 1000);
        assert!(verify("correct horse", &old));
        assert!(!verify("wrong", &old));
        assert!(needs_rehash(&old));
        // Bounds: an absurd iteration count in the store is refused, not computed.
        assert!(!verify(
            "correct horse",
            &legacy("x", 1).replace("$1$", "$4000000000$")
        ));
    }

    #[test]
    fn weaker_or_other_argon2_is_rehashed_or_refused() -> Result<(), Error> {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, Some(32)).map_err(|e| Error::Hash(e.to_string()))?,
        );
        let salt = SaltString::encode_b64(&[1u8; 16]).map_err(|e| Error::Hash(e.to_string()))?;
        let h = weak
            .hash_password(b"pw", &salt)
            .map_err(|e| Error::Hash(e.to_string()))?
            .to_string();
        assert!(verify("pw", &h));
        assert!(needs_rehash(&h));
        // Argon2i / Argon2d strings are not accepted as Argon2id.
        assert!(!verify("pw", &h.replacen("argon2id", "argon2i", 1)));
        // A tampered row asking for 4 GiB is refused without computing it.
        assert!(!verify("pw", &h.replacen("m=8192", "m=4194304", 1)));
        Ok(())
    }

    #[test]
    fn dummy_hash_has_the_same_parameters() {
        let d = dummy_hash();
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
        assert!(!needs_rehash(d));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hasher_verifies_off_the_executor() -> Result<(), Error> {
        let hasher = Hasher::new(1);
        let h = hasher.hash(&Random::system(), "pw").await?;
        let (a, b) = tokio::join!(hasher.verify("pw", Some(&h)), hasher.verify("pw", None));
        assert!(a?);
        assert!(!b?, "an unknown user never verifies");
        assert_eq!(hasher.available(), 1, "permits returned");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hasher_bounds_how_many_run_at_once() -> Result<(), Error> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hasher = Hasher::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (hasher, running, most) = (hasher.clone(), running.clone(), most.clone());
            tasks.spawn(async move {
                hasher
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Real work, long enough for the other tasks to pile up at the permits.
                        let _ = verify("pw", dummy_hash());
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| Error::Task(e.to_string()))??;
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&most),
            "{most} hashes ran at once, the bound is 2"
        );
        assert_eq!(hasher.available(), 2);
        Ok(())
    }
}
