//! The stats both shells publish, by name (`fapi_guard.<name>`): decisions by outcome and reason,
//! token cache hits and misses, key-set fetches and revocation-feed polls. The per-request counters
//! are batched and handed to the host on the one-second tick ([`Metrics::flush`]); refusals and
//! background events go out at once (they are rare and operators watch them).

use crate::host::Host;

#[derive(Default)]
pub struct Metrics {
    /// `allowed`, `token_cache.hit`, `token_cache.miss`, counted since the last flush.
    pending: [u64; 3],
    flushed_once: bool,
}

const BATCHED: [&str; 3] = ["allowed", "token_cache.hit", "token_cache.miss"];

impl Metrics {
    /// Adds what was counted since the last flush (and, the first time, defines the batched counters
    /// so they show as 0 before the first request).
    pub fn flush<H: Host + ?Sized>(&mut self, host: &mut H) {
        for (i, name) in BATCHED.iter().enumerate() {
            let n = std::mem::take(&mut self.pending[i]);
            if n > 0 || !self.flushed_once {
                host.counter(name, n);
            }
        }
        self.flushed_once = true;
    }

    /// `allowed` (batched), or `denied.<reason>` plus `denied` (at once).
    pub fn decision<H: Host + ?Sized>(&mut self, host: &mut H, reason: &str) {
        if reason == "allowed" {
            self.pending[0] += 1;
        } else {
            host.counter("denied", 1);
            host.counter(&format!("denied.{reason}"), 1);
        }
    }

    /// Batched: a cache hit or miss per token request.
    pub fn cache(&mut self, hit: bool) {
        self.pending[if hit { 1 } else { 2 }] += 1;
    }

    /// Counted since the last flush (tests).
    pub fn pending(&self, name: &str) -> u64 {
        BATCHED
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| self.pending[i])
    }
}
