//! The server's one source of randomness (FISC item 41: codes, tokens, sessions, CSRF tokens,
//! `request_uri` values, client credentials and salts are unguessable). Every draw returns a
//! `Result`: when the system's generator fails nothing is issued, the request answers 500
//! `server_error` ([`RandomError`] converts to the channel's error), and no value made of zeros
//! goes out. Tests inject a failing source ([`Random::from_source`]).

use std::sync::Arc;

/// The system's generator failed (or, in tests, was made to fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomError;

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the system random number generator failed")
    }
}

impl std::error::Error for RandomError {}

impl From<RandomError> for crate::error::OAuthError {
    fn from(e: RandomError) -> Self {
        crate::error::OAuthError::server(e)
    }
}

/// Where random bytes come from.
pub trait RandomSource: Send + Sync {
    /// Fills `buf` entirely, or fails.
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's generator (ring's `SystemRandom`: getrandom(2) on Linux).
#[derive(Debug)]
pub struct SystemSource(ring::rand::SystemRandom);

impl Default for SystemSource {
    fn default() -> Self {
        SystemSource(ring::rand::SystemRandom::new())
    }
}

impl RandomSource for SystemSource {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        ring::rand::SecureRandom::fill(&self.0, buf).map_err(|_| RandomError)
    }
}

/// The server's random source; the system's unless a test gives another. Cheap to clone.
#[derive(Clone)]
pub struct Random {
    source: Arc<dyn RandomSource>,
}

impl Default for Random {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Random")
    }
}

impl Random {
    /// The operating system's generator.
    pub fn system() -> Self {
        Random {
            source: Arc::new(SystemSource::default()),
        }
    }

    /// Another source (tests: one that fails).
    pub fn from_source(source: Arc<dyn RandomSource>) -> Self {
        Random { source }
    }

    /// Fills `buf`, or fails; `buf` is zeroed again on failure so no partial value is used.
    pub fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        let r = self.source.fill(buf);
        if r.is_err() {
            buf.fill(0);
        }
        r
    }

    /// `bytes` (at least 16: 128 bits) random bytes, base64url: codes, tokens, `request_uri`
    /// values, identifiers.
    pub fn token(&self, bytes: usize) -> Result<String, RandomError> {
        let mut buf = vec![0u8; bytes.max(16)];
        self.fill(&mut buf)?;
        Ok(fapi_core::b64::encode(buf))
    }
}

/// A source that always fails (tests of the fail-closed paths).
#[derive(Debug, Default)]
pub struct FailingSource;

impl RandomSource for FailingSource {
    fn fill(&self, _buf: &mut [u8]) -> Result<(), RandomError> {
        Err(RandomError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_differ() {
        let r = Random::system();
        let (a, b) = (r.token(32), r.token(32));
        assert_ne!(a, b);
        assert_eq!(a.map(|t| t.len()), Ok(43));
        assert_eq!(r.token(4).map(|t| t.len()), Ok(22), "at least 128 bits");
    }

    #[test]
    fn a_failing_source_issues_nothing() {
        let r = Random::from_source(Arc::new(FailingSource));
        assert_eq!(r.token(32), Err(RandomError));
        let mut buf = [7u8; 8];
        assert_eq!(r.fill(&mut buf), Err(RandomError));
    }
}
