//! What one worker's VM keeps: the compiled policy (as a [`Guard`]), its copies of the fetched key sets
//! and of the revocation list, the verified-token cache, and introspection answers.

use crate::metrics::Metrics;
use crate::shared::{self, SharedReplayStore};
use fapi_core::cache::{RevocationList, TokenCache};
use fapi_core::guard::{Context, KeySource};
use fapi_core::jwks::Jwks;
use fapi_core::{Decision, Guard, RequestFacts};
use std::collections::HashMap;

/// A key set fetched from the issuer's jwks_uri.
pub struct FetchedKeys {
    pub jwks: Jwks,
    pub fetched_at: i64,
    pub version: Option<u32>,
}

pub struct Worker {
    pub guard: Guard,
    pub fetched: HashMap<String, FetchedKeys>,
    pub cache: TokenCache,
    pub revocations: RevocationList,
    pub revocations_version: Option<u32>,
    /// When the revocation feed last answered (from shared data), for `revocation: feed` routes.
    pub feed_ok_at: i64,
    pub feed_cursor: Option<String>,
    /// Introspection answers: token hash -> (active, until).
    pub introspected: HashMap<[u8; 32], (bool, i64)>,
    pub metrics: Metrics,
    pub nonce_version: Option<u32>,
    pub last_sweep: i64,
    pub ids: IdGenerator,
}

/// Interaction ids without a host call per request: SplitMix64 (Steele et al., 2014) over a counter
/// started at a per-VM random seed. They correlate requests; they are not secrets, so a fast mixer is
/// enough (it was SHA-256, a measurable part of a cached request in V8).
pub struct IdGenerator {
    state: u64,
    salt: u64,
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl IdGenerator {
    pub fn new(seed: [u8; 32]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&seed[i..i + 8]);
            u64::from_le_bytes(w)
        };
        IdGenerator {
            state: word(0) ^ splitmix(word(16)),
            salt: word(8) ^ splitmix(word(24)),
        }
    }

    pub fn next_id(&mut self) -> [u8; 16] {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&splitmix(self.state).to_le_bytes());
        out[8..].copy_from_slice(&splitmix(self.state ^ self.salt).to_le_bytes());
        out
    }
}

/// Inline keys from the policy, else the fetched set while it is younger than `max_stale`.
struct KeyView<'a> {
    worker_fetched: &'a HashMap<String, FetchedKeys>,
    guard: &'a Guard,
    now: i64,
}

impl KeySource for KeyView<'_> {
    fn keys(&self, issuer: &str) -> Option<&Jwks> {
        let spec = self.guard.policy.issuer(issuer)?;
        if let Some(inline) = &spec.inline_keys {
            return Some(inline);
        }
        let remote = spec.remote.as_ref()?;
        let fetched = self.worker_fetched.get(issuer)?;
        (self.now.saturating_sub(fetched.fetched_at) <= remote.max_stale as i64).then_some(&fetched.jwks)
    }
}

impl Worker {
    pub fn new(guard: Guard, metrics: Metrics) -> Self {
        let settings = &guard.policy.doc.settings;
        Worker {
            cache: TokenCache::new(settings.token_cache_size),
            guard,
            fetched: HashMap::new(),
            revocations: RevocationList::new(),
            revocations_version: None,
            feed_ok_at: i64::MIN,
            feed_cursor: None,
            introspected: HashMap::new(),
            metrics,
            nonce_version: None,
            last_sweep: 0,
            ids: IdGenerator::new(crate::root::random32().unwrap_or([0x5a; 32])),
        }
    }

    /// The decision for a request, with this worker's stores.
    pub fn decide(&mut self, facts: &RequestFacts, now: i64) -> Decision {
        self.sync_revocations();
        let feed_current = match &self.guard.policy.doc.settings.revocation_feed {
            // Stale after three missed polls: `revocation: feed` routes then fail closed.
            Some(feed) => now.saturating_sub(self.feed_ok_at) <= 3 * feed.interval as i64 + 1,
            None => false,
        };
        let keys = KeyView {
            worker_fetched: &self.fetched,
            guard: &self.guard,
            now,
        };
        let mut replay = SharedReplayStore {
            bucket_capacity: shared::replay_bucket_capacity(self.guard.policy.doc.settings.replay_store_size),
        };
        let (hits_before, misses_before) = (self.cache.hits, self.cache.misses);
        let mut ctx = Context {
            keys: &keys,
            cache: &mut self.cache,
            replay: &mut replay,
            revocations: &self.revocations,
            revocation_feed_current: feed_current,
            now,
        };
        let mut decision = self.guard.decide(facts, &mut ctx);
        let hit = self.cache.hits > hits_before;
        if let Decision::Allow(a) = &mut decision {
            a.cache_hit = hit;
        }
        if hit || self.cache.misses > misses_before {
            self.metrics.cache(hit);
        }
        decision
    }

    /// Reloads the revocation list when another worker published a newer one (a cheap version check).
    pub fn sync_revocations(&mut self) {
        if self.guard.policy.doc.settings.revocation_feed.is_none() {
            return;
        }
        // Per request: an 8-byte read, not the list itself.
        let version = shared::read_published(crate::root::REVOKED_SEQ_KEY).map(|p| p.at as u32);
        if version.is_none() || version == self.revocations_version {
            return;
        }
        if let Some(p) = shared::read_published(crate::root::REVOKED_KEY) {
            if let Some(state) = crate::root::RevokedState::parse(&p.body) {
                self.revocations = state.list();
                self.feed_cursor = Some(state.cursor);
                self.feed_ok_at = p.at;
                self.revocations_version = version;
            }
        }
    }

    /// Takes a key set another worker published, if newer than ours.
    pub fn sync_keys(&mut self, issuer: &str) {
        let key = crate::root::jwks_key(issuer);
        let version = shared::version(&key);
        if version.is_none() || self.fetched.get(issuer).is_some_and(|f| f.version == version) {
            return;
        }
        if let Some(p) = shared::read_published(&key) {
            if let Ok(jwks) = Jwks::parse(&p.body).map(Jwks::prepared) {
                self.fetched.insert(
                    issuer.to_string(),
                    FetchedKeys {
                        jwks,
                        fetched_at: p.at,
                        version: p.cas,
                    },
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IdGenerator;

    #[test]
    fn ids_differ_per_request_and_per_seed() {
        let mut a = IdGenerator::new([7; 32]);
        let mut b = IdGenerator::new([8; 32]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(a.next_id()));
            assert!(seen.insert(b.next_id()));
        }
    }
}
