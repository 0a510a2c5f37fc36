//! Memory of verified tokens and of revocations, so a token's signature is checked once and a revoked
//! token is refused at once (FAPI 2.0 §5.3.4: the resource server checks revocation status).
//!
//! Tokens are keyed by SHA-256 of the token text; the token itself is never stored.

use crate::token::AccessClaims;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A verified token's claims and the issuer rules they were checked against.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub claims: Arc<AccessClaims>,
}

/// A bounded cache of verified tokens. Entries leave at their `exp` (plus leeway, checked by the
/// caller) and in insertion order when full.
#[derive(Debug)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<[u8; 32], CachedToken>,
    order: VecDeque<[u8; 32]>,
    pub hits: u64,
    pub misses: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    pub fn get(&mut self, key: &[u8; 32]) -> Option<&CachedToken> {
        let found = self.entries.get(key);
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    pub fn insert(&mut self, key: [u8; 32], token: CachedToken) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key, token).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn remove(&mut self, key: &[u8; 32]) {
        self.entries.remove(key);
    }

    /// Drops tokens whose `exp` is before `horizon`.
    pub fn sweep(&mut self, horizon: i64) {
        self.entries.retain(|_, t| t.claims.exp >= horizon);
        let entries = &self.entries;
        self.order.retain(|k| entries.contains_key(k));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where revocation status comes from.
pub trait RevocationCheck {
    /// `true` when the token with this `iss` and `jti` has been revoked.
    fn is_revoked(&self, iss: &str, jti: &str) -> bool;
}

/// Revoked `jti` values learnt from the authorization server's revocation feed, each kept until the
/// token would have expired anyway.
#[derive(Debug, Default, Clone)]
pub struct RevocationList {
    /// iss -> jti -> until (nested so that a look-up needs no allocation).
    revoked: HashMap<String, HashMap<String, i64>>,
}

impl RevocationList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a revocation; `until` is the token's `exp` (after it the entry can go).
    pub fn revoke(&mut self, iss: &str, jti: &str, until: i64) {
        self.revoked
            .entry(iss.to_string())
            .or_default()
            .insert(jti.to_string(), until);
    }

    pub fn sweep(&mut self, now: i64) {
        for jtis in self.revoked.values_mut() {
            jtis.retain(|_, until| *until >= now);
        }
        self.revoked.retain(|_, jtis| !jtis.is_empty());
    }

    pub fn len(&self) -> usize {
        self.revoked.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

impl RevocationCheck for RevocationList {
    fn is_revoked(&self, iss: &str, jti: &str) -> bool {
        self.revoked.get(iss).is_some_and(|jtis| jtis.contains_key(jti))
    }
}

/// No revocation source.
pub struct NoRevocations;

impl RevocationCheck for NoRevocations {
    fn is_revoked(&self, _: &str, _: &str) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(exp: i64) -> CachedToken {
        CachedToken {
            claims: Arc::new(AccessClaims {
                exp,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn bounded_and_swept() {
        let mut c = TokenCache::new(2);
        c.insert([1; 32], tok(10));
        c.insert([2; 32], tok(20));
        c.insert([3; 32], tok(30));
        assert_eq!(c.len(), 2);
        assert!(c.get(&[1; 32]).is_none());
        assert!(c.get(&[3; 32]).is_some());
        c.sweep(25);
        assert_eq!(c.len(), 1);
        assert_eq!((c.hits, c.misses), (1, 1));
    }

    #[test]
    fn revocations_expire_with_the_token() {
        let mut r = RevocationList::new();
        r.revoke("https://as", "j1", 100);
        assert!(r.is_revoked("https://as", "j1"));
        assert!(!r.is_revoked("https://other", "j1"));
        r.sweep(101);
        assert!(!r.is_revoked("https://as", "j1"));
    }
}
