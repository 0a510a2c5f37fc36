//! Memory of whole allow decisions, so a worker that admitted a request admits the same request again
//! without deciding (issue 11 item 4: the cached path of the native module).
//!
//! What may be served from here, and for how long, is decided in this one place:
//! - a hit needs the same `Authorization` header (so the same token, byte for byte), no `DPoP` header
//!   (RFC 9449 §11.1: proofs are single-use, a DPoP request is decided every time), the same client
//!   certificate (RFC 8705 §3: the thumbprint, compared as 32 bytes), the same method, authority and
//!   path (query included);
//! - only allows of rules for which [`Rule::decision_cacheable`] holds are kept (never introspection:
//!   the authorization server's `active` answer has its own lifetime), and never a DPoP-bound one;
//! - an entry ends at the token's `exp`, at the end of any time window the decision relied on
//!   (`max_age` of the issuer's rules, the rule's `max_auth_age`), and, for `revocation: feed` rules, at
//!   the revocation feed's freshness limit ([`allow_valid_until`]);
//! - the host drops the whole cache when a key set or the revocation list changes
//!   ([`DecisionCache::clear`]).
//!
//! Entries are bounded (`token_cache_size` of the settings) and leave in insertion order. Only
//! decisions that admitted a verified token are inserted, and the table's hash is keyed with a random
//! seed, so a client cannot choose which entries its requests evict.

use crate::binding::CertThumbprint;
use crate::cache::TokenHasher;
use crate::decision::{Allow, BindingKind};
use crate::extract::RequestFacts;
use crate::policy::{Policy, RevocationMode, Rule};
use crate::verify::LifetimeStart;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

impl Rule {
    /// Whether an allow of this rule may be served again from a [`DecisionCache`]. Not for rules that
    /// introspect (RFC 7662: each answer is reused only for `introspection.cache_seconds`, by the
    /// host), nor for anonymous rules (nothing to remember).
    pub fn decision_cacheable(&self) -> bool {
        !self.anonymous
            && self.require.revocation != RevocationMode::Introspection
            && !self.requires_request_body()
    }

    /// Rules whose decision depends on the request body (`require.authorization_details`, RFC 9396:
    /// every body differs, and with `once` each detail admits one request only) are never served
    /// from the cache.
    fn requires_request_body(&self) -> bool {
        self.require.authorization_details.is_some()
    }
}

/// Until when (exclusive, seconds since the epoch) `allow`, admitted for `facts`, may be served again
/// without deciding; `None` when it must not be served at all (see the module comment).
/// `feed_current_until`: the first second at which the revocation feed stops being current (`None`:
/// no feed).
pub fn allow_valid_until(
    policy: &Policy,
    facts: &RequestFacts,
    allow: &Allow,
    feed_current_until: Option<i64>,
) -> Option<i64> {
    request_key(facts)?;
    if allow.introspect || allow.binding == BindingKind::Dpop || allow.awaiting_body.is_some() {
        return None;
    }
    let rule = policy.rules.iter().find(|r| r.name == allow.rule)?;
    if !rule.decision_cacheable() {
        return None;
    }
    let claims = &allow.claims;
    // RFC 7519 §4.1.4: not on or after `exp` (the leeway is for a fresh decision to grant).
    let mut until = claims.exp;
    let rules = policy.issuer(&claims.iss)?.rules.time_rules();
    if let Some(max_age) = rules.max_age {
        let start = match rules.start {
            LifetimeStart::IatOrNbf | LifetimeStart::IatOrNbfOrNow => claims.iat.or(claims.nbf),
            LifetimeStart::Nbf => claims.nbf,
        };
        if let Some(start) = start {
            until = until.min(start.saturating_add(max_age as i64).saturating_add(1));
        } else if rules.start != LifetimeStart::IatOrNbfOrNow {
            return None;
        }
    }
    // RFC 9470 §3: `auth_time` no older than `max_age` when the request is made.
    if let Some(max) = rule.require.max_auth_age {
        let t = claims.auth_time?;
        until = until.min(t.saturating_add(max as i64).saturating_add(1));
    }
    if rule.require.revocation == RevocationMode::Feed {
        until = until.min(feed_current_until?);
    }
    Some(until)
}

/// The request facts a hit depends on besides method, authority and path: exactly one
/// `Authorization` header and no `DPoP` header; `None` when the request may not be served from the
/// cache.
fn request_key(facts: &RequestFacts) -> Option<(&str, Option<CertThumbprint>)> {
    if !facts.dpop.is_empty() {
        return None;
    }
    let [authorization] = facts.authorization.as_slice() else {
        return None;
    };
    let cert = match &facts.client_cert {
        // A certificate whose digest cannot be read is never a hit (nor a miss that gets stored).
        Some(c) => Some(c.thumbprint()?),
        None => None,
    };
    Some((authorization.as_str(), cert))
}

struct Entry {
    authorization: Box<str>,
    cert: Option<CertThumbprint>,
    method: Box<str>,
    authority: Box<str>,
    path: Box<str>,
    until: i64,
    allow: Arc<Allow>,
}

impl Entry {
    fn matches(&self, facts: &RequestFacts, authorization: &str, cert: Option<CertThumbprint>) -> bool {
        *self.authorization == *authorization
            && self.cert == cert
            && *self.method == *facts.method
            && *self.authority == *facts.authority
            && *self.path == *facts.path
    }
}

/// The table's keys are already hashes: passed through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A worker's bounded memory of allow decisions (see the module comment).
pub struct DecisionCache {
    capacity: usize,
    seed: u64,
    entries: HashMap<u64, Entry, BuildHasherDefault<PassThrough>>,
    order: VecDeque<u64>,
    pub hits: u64,
    pub misses: u64,
}

impl DecisionCache {
    /// `seed`: random, so nobody outside can tell which requests share a slot.
    pub fn new(capacity: usize, seed: u64) -> Self {
        DecisionCache {
            capacity,
            seed,
            entries: HashMap::default(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    fn slot(&self, facts: &RequestFacts, authorization: &str, cert: Option<CertThumbprint>) -> u64 {
        let mut h = TokenHasher::default();
        h.write_u64(self.seed);
        authorization.hash(&mut h);
        cert.map(|c| c.0).hash(&mut h);
        facts.method.hash(&mut h);
        facts.authority.hash(&mut h);
        facts.path.hash(&mut h);
        h.finish()
    }

    /// The allow remembered for exactly this request, while it is valid at `now`.
    pub fn lookup(&mut self, facts: &RequestFacts, now: i64) -> Option<Arc<Allow>> {
        if self.capacity == 0 {
            return None;
        }
        let (authorization, cert) = request_key(facts)?;
        let slot = self.slot(facts, authorization, cert);
        let found = match self.entries.get(&slot) {
            Some(e) if e.matches(facts, authorization, cert) => (now < e.until).then(|| e.allow.clone()),
            _ => None,
        };
        if found.is_some() {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
        found
    }

    /// Remembers `allow` for `facts` when [`allow_valid_until`] says it may be served again, and it
    /// is still valid at `now`.
    pub fn remember(
        &mut self,
        policy: &Policy,
        facts: &RequestFacts,
        allow: &Allow,
        feed_current_until: Option<i64>,
        now: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let Some(until) = allow_valid_until(policy, facts, allow, feed_current_until) else {
            return;
        };
        let Some((authorization, cert)) = request_key(facts) else {
            return;
        };
        if until <= now {
            return;
        }
        let slot = self.slot(facts, authorization, cert);
        let entry = Entry {
            authorization: authorization.into(),
            cert,
            method: facts.method.as_str().into(),
            authority: facts.authority.as_str().into(),
            path: facts.path.as_str().into(),
            until,
            allow: Arc::new(allow.clone()),
        };
        // A slot taken by another request (a 64-bit collision) is simply overwritten.
        if self.entries.insert(slot, entry).is_none() {
            self.order.push_back(slot);
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

    /// Forgets everything (a key set or the revocation list changed).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Drops entries no longer valid at `now`.
    pub fn sweep(&mut self, now: i64) {
        self.entries.retain(|_, e| now < e.until);
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
