//! Memory of verified tokens and of revocations, so a token's signature is checked once and a revoked
//! token is refused at once (FAPI 2.0 §5.3.4: the resource server checks revocation status).
//!
//! Tokens are looked up by their exact text, as Envoy's jwt_authn cache does: a hit needs the stored
//! token to equal the presented one byte for byte, so no hash collision can admit a token that was not
//! verified. The table's hash is a fast non-cryptographic one; that is safe because only tokens whose
//! signature verified are ever inserted, so an attacker cannot fill a bucket. (The cache used to be keyed
//! by SHA-256 of the token; hashing ~600 bytes was the largest single cost of a cached request in V8.)
//! The tokens kept are sender-constrained (RFC 8705 / RFC 9449): a copy alone does not let anyone use one.

use crate::token::AccessClaims;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// A verified token's claims and the issuer rules they were checked against.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub claims: Arc<AccessClaims>,
}

/// A multiply-rotate hash over 8-byte words, for the table only (see the module comment).
#[derive(Default)]
pub struct TokenHasher(u64);

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for TokenHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            h = (h ^ w).wrapping_mul(MUL).rotate_left(29);
        }
        for &b in words.remainder() {
            h = (h ^ u64::from(b)).wrapping_mul(MUL).rotate_left(29);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        // Final avalanche (MurmurHash3's fmix64), so every input bit reaches the bits the table uses.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A bounded cache of verified tokens. Entries leave at their `exp` (plus leeway, checked by the
/// caller) and in insertion order when full.
///
/// A `TokenCache` is a handle: [`TokenCache::share`] gives another handle on the same entries (the
/// native module's worker threads share one cache, bounded once by `token_cache_size`), each handle
/// with its own `hits` / `misses`. Every operation holds the entries' lock only for the table
/// operation itself, never during a signature check.
#[derive(Debug)]
pub struct TokenCache {
    shared: Arc<Mutex<Entries>>,
    pub hits: u64,
    pub misses: u64,
}

#[derive(Debug)]
struct Entries {
    capacity: usize,
    entries: HashMap<Arc<str>, CachedToken, BuildHasherDefault<TokenHasher>>,
    order: VecDeque<Arc<str>>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            shared: Arc::new(Mutex::new(Entries {
                capacity,
                entries: HashMap::default(),
                order: VecDeque::new(),
            })),
            hits: 0,
            misses: 0,
        }
    }

    /// Another handle on the same entries (its own hit and miss counts).
    pub fn share(&self) -> TokenCache {
        TokenCache {
            shared: self.shared.clone(),
            hits: 0,
            misses: 0,
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // The table is consistent after every operation (each is a single insert or remove), so a
        // lock poisoned by a panic elsewhere is still safe to use.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for exactly this token text.
    pub fn get(&mut self, token: &str) -> Option<CachedToken> {
        let found = self.entries().entries.get(token).cloned();
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    pub fn insert(&mut self, token: &str, entry: CachedToken) {
        let mut t = self.entries();
        if t.capacity == 0 {
            return;
        }
        if let Some(old) = t.entries.get_mut(token) {
            *old = entry;
            return;
        }
        let key: Arc<str> = Arc::from(token);
        t.entries.insert(key.clone(), entry);
        t.order.push_back(key);
        while t.entries.len() > t.capacity {
            match t.order.pop_front() {
                Some(old) => {
                    t.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn remove(&mut self, token: &str) {
        self.entries().entries.remove(token);
    }

    /// Drops tokens whose `exp` is before `horizon`.
    pub fn sweep(&mut self, horizon: i64) {
        let mut t = self.entries();
        t.entries.retain(|_, t| t.claims.exp >= horizon);
        let Entries { entries, order, .. } = &mut *t;
        order.retain(|k| entries.contains_key(k));
    }

    pub fn len(&self) -> usize {
        self.entries().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Whether this list revokes a token `older` does not (what makes remembered admissions stale;
    /// entries that only expired do not).
    pub fn revokes_more_than(&self, older: &RevocationList) -> bool {
        self.revoked
            .iter()
            .any(|(iss, jtis)| jtis.keys().any(|jti| !older.is_revoked(iss, jti)))
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
        c.insert("a.b.one", tok(10));
        c.insert("a.b.two", tok(20));
        c.insert("a.b.three", tok(30));
        assert_eq!(c.len(), 2);
        assert!(c.get("a.b.one").is_none());
        assert!(c.get("a.b.three").is_some());
        c.sweep(25);
        assert_eq!(c.len(), 1);
        assert_eq!((c.hits, c.misses), (1, 1));
    }

    #[test]
    fn a_hit_needs_the_exact_token() {
        let mut c = TokenCache::new(10);
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ0YXJvIn0.c2lnbmF0dXJl";
        c.insert(token, tok(10));
        assert!(c.get(token).is_some());
        // One byte more, less or different anywhere: a miss, never the stored claims.
        assert!(c.get(&token[..token.len() - 1]).is_none());
        assert!(c.get(&format!("{token}A")).is_none());
        let mut other = token.as_bytes().to_vec();
        other[20] ^= 1;
        assert!(c.get(std::str::from_utf8(&other).unwrap_or("")).is_none());
        assert!(c.get("").is_none());
        // Re-inserting the same token keeps one entry (and one place in the eviction order).
        c.insert(token, tok(20));
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(token).map(|t| t.claims.exp), Some(20));
    }

    #[test]
    fn hash_spreads_tokens_that_differ_in_one_place() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let build = BuildHasherDefault::<TokenHasher>::default();
        let base = "x".repeat(600);
        let mut seen = std::collections::HashSet::new();
        for i in 0..600 {
            let mut t = base.clone().into_bytes();
            t[i] = b'y';
            let t = String::from_utf8(t).unwrap_or_default();
            seen.insert(build.hash_one(t.as_str()) & 0xffff);
        }
        // 600 one-byte changes land in (nearly) 600 different low-16-bit buckets.
        assert!(seen.len() > 590, "{} distinct buckets", seen.len());
    }

    #[test]
    fn shared_handles_see_one_bounded_table_and_count_their_own_hits() {
        let mut a = TokenCache::new(2);
        let mut b = a.share();
        a.insert("a.b.one", tok(10));
        assert_eq!(b.get("a.b.one").map(|t| t.claims.exp), Some(10));
        b.insert("a.b.two", tok(20));
        b.insert("a.b.three", tok(30));
        // One bound for both handles: the oldest entry left.
        assert_eq!((a.len(), b.len()), (2, 2));
        assert!(a.get("a.b.one").is_none());
        assert_eq!((a.hits, a.misses), (0, 1));
        assert_eq!((b.hits, b.misses), (1, 0));
        a.remove("a.b.two");
        assert!(b.get("a.b.two").is_none());
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

    #[test]
    fn a_list_revokes_more_only_with_a_new_entry() {
        let mut old = RevocationList::new();
        old.revoke("https://as", "j1", 100);
        old.revoke("https://as", "j2", 100);
        let mut same = old.clone();
        assert!(!same.revokes_more_than(&old));
        // An entry that expired and left: nothing newly revoked.
        same.sweep(101);
        assert!(!same.revokes_more_than(&old));
        let mut more = old.clone();
        more.revoke("https://other", "j1", 100);
        assert!(more.revokes_more_than(&old));
        assert!(!old.revokes_more_than(&more));
    }
}
