//! The server's one clock. Every expiry and every issued-at reads it: codes (FAPI 2.0 §5.3.2.1),
//! PAR `request_uri` values (RFC 9126 §2.2), sessions, sign-in limits, client-assertion and
//! request-object times, token lifetimes and the cache of clients' `jwks_uri` key sets.
//!
//! In production it is the system clock; tests hold a manual clock and move it
//! ([`Clock::advance`]) instead of sleeping. fapi-core takes `now` as a parameter everywhere; this
//! is where the server's `now` comes from.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The wall clock, or a manual one that only moves when told (tests). Cheap to clone: clones of a
/// manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds since the Unix epoch of a manual clock; `None`: the system clock.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A manual clock standing at `unix_ms` (milliseconds since the Unix epoch).
    pub fn manual(unix_ms: i64) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(unix_ms))),
        }
    }

    /// A manual clock standing at the system clock's time now (so that tokens it stamps also
    /// look current to a peer using the real time).
    pub fn manual_from_now() -> Self {
        Self::manual(system_ms())
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(t) => t.load(Ordering::SeqCst),
            None => system_ms(),
        }
    }

    /// Moves a manual clock forward by `by`; returns false (and changes nothing) on the system
    /// clock, which no one moves.
    pub fn advance(&self, by: Duration) -> bool {
        match &self.manual {
            Some(t) => {
                let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
                t.fetch_add(ms, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let c = Clock::manual(1_700_000_000_500);
        let other = c.clone();
        assert_eq!(c.now(), 1_700_000_000);
        assert_eq!(c.now_ms(), 1_700_000_000_500);
        assert!(c.advance(Duration::from_millis(600)));
        assert_eq!(other.now(), 1_700_000_001, "a clone sees the move");
        assert_eq!(other.now_ms(), 1_700_000_001_100);
    }

    #[test]
    fn the_system_clock_is_not_moved() {
        let c = Clock::system();
        let before = c.now();
        assert!(!c.advance(Duration::from_secs(3600)));
        assert!(c.now() - before < 60, "advance did not move the system clock");
        assert!(before > 1_600_000_000);
    }
}
