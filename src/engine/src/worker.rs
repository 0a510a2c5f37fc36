//! What one engine instance keeps: the compiled policy (as a [`Guard`]), its copies of the fetched key
//! sets and of the revocation list, the verified-token cache and introspection answers; and the rules
//! for their freshness: a fetched key set is used while it is younger than `max_stale`, the feed is
//! current while it answered within three intervals.
//!
//! The proxy-wasm plugin has one per worker VM (synchronised through shared storage). The native
//! module has one per request in flight on a worker thread (taken from a pool, never held by two
//! threads at once), all made with [`Worker::sibling`]: they share one parsed key set ([`KeySets`])
//! and one verified-token cache, and the DPoP replay store lives in the host's shared storage, so
//! each is bounded once by the policy's settings; locks are held only to copy a pointer or for one
//! table operation, never during a signature or proof check.
//!
//! Each worker also keeps its own [`DecisionCache`] of whole allows (fapi-core says which and for
//! how long), dropped whenever a key set or the revocation list changes.

use crate::host::{Host, Level};
use crate::ids::IdGenerator;
use crate::metrics::Metrics;
use crate::shared::{self, SharedReplayStore};
use fapi_core::cache::{RevocationList, TokenCache};
use fapi_core::decision::Allow;
use fapi_core::decision_cache::DecisionCache;
use fapi_core::guard::{Context, KeySource};
use fapi_core::jwks::Jwks;
use fapi_core::policy::{Policy, Severity};
use fapi_core::{Decision, Guard, RequestFacts};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Shared-storage key of the revocation list (JSON, see [`RevokedState`]).
pub const REVOKED_KEY: &str = "revoked";
/// A counter bumped with every publication of the revocation list (cheap to read per request).
pub const REVOKED_SEQ_KEY: &str = "revoked-seq";
pub const NONCE_SECRET_KEY: &str = "nonce-secret";
pub const REPLAY_SECRET_KEY: &str = "replay-secret";

pub fn jwks_key(issuer: &str) -> String {
    format!("jwks/{issuer}")
}

/// A key set fetched from the issuer's jwks_uri.
pub struct FetchedKeys {
    pub jwks: Jwks,
    pub fetched_at: i64,
    pub version: Option<u32>,
}

/// Fetched key sets by issuer, parsed once for every worker that shares this object. Readers copy
/// the current map's pointer when the generation moved (one atomic load per request otherwise).
#[derive(Default)]
pub struct KeySets {
    current: Mutex<Arc<KeyMap>>,
    generation: AtomicU64,
}

pub type KeyMap = HashMap<String, Arc<FetchedKeys>>;

impl KeySets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<KeyMap>> {
        // Each update is one pointer assignment: a poisoned lock still holds a consistent map.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current map and its generation.
    pub fn snapshot(&self) -> (u64, Arc<KeyMap>) {
        let current = self.lock();
        (self.generation.load(Ordering::Acquire), current.clone())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the issuer's key set (a new map: readers keep the one they copied).
    pub fn insert(&self, issuer: &str, keys: FetchedKeys) {
        let mut current = self.lock();
        let mut next = KeyMap::clone(&current);
        next.insert(issuer.to_string(), Arc::new(keys));
        *current = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

pub struct Worker {
    pub guard: Guard,
    /// The key sets, shared with this worker's siblings.
    pub keys: Arc<KeySets>,
    /// This worker's copy of the current key map, and the generation it was taken at.
    key_view: Arc<KeyMap>,
    key_generation: u64,
    /// Verified tokens, shared with this worker's siblings.
    pub cache: TokenCache,
    /// Whole allow decisions of this worker.
    pub decisions: DecisionCache,
    pub revocations: RevocationList,
    pub revocations_version: Option<u32>,
    /// When the revocation feed last answered (from shared storage), for `revocation: feed` routes.
    pub feed_ok_at: i64,
    pub feed_cursor: Option<String>,
    /// Introspection answers: token hash -> (active, until).
    pub introspected: HashMap<[u8; 32], (bool, i64)>,
    pub metrics: Metrics,
    pub nonce_version: Option<u32>,
    /// Keys bucket choice and client tags in the DPoP replay store.
    pub replay_secret: Option<Vec<u8>>,
    pub last_sweep: i64,
    pub ids: IdGenerator,
}

/// Compiles the plugin configuration (the compiled policy JSON). A bad one is refused with every
/// error logged, each naming its field: the shell then refuses to start (fail closed).
pub fn load<H: Host + ?Sized>(host: &mut H, config: Option<&[u8]>) -> Option<Worker> {
    let Some(bytes) = config.filter(|b| !b.is_empty()) else {
        host.log(
            Level::Error,
            "fapi-guard: no configuration: give the compiled policy (fapictl policy compile) as a StringValue",
        );
        return None;
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        host.log(Level::Error, "fapi-guard: the configuration is not UTF-8");
        return None;
    };
    let mut policy = match Policy::from_json(text) {
        Ok((policy, warnings)) => {
            for w in warnings {
                host.log(Level::Warn, &format!("fapi-guard: configuration {w}"));
            }
            policy
        }
        Err(problems) => {
            for p in problems.iter().filter(|p| p.severity == Severity::Error) {
                host.log(Level::Error, &format!("fapi-guard: configuration {p}"));
            }
            host.log(
                Level::Error,
                "fapi-guard: refusing to start: the policy is invalid (no traffic passes this filter)",
            );
            return None;
        }
    };
    host.log(
        Level::Info,
        &format!(
            "fapi-guard: policy {} loaded: {} issuer(s), {} rule(s)",
            policy.doc.name.as_deref().unwrap_or("(unnamed)"),
            policy.issuers.len(),
            policy.rules.len()
        ),
    );
    // Inline key sets get their ES256 tables once, here, like fetched ones.
    for issuer in &mut policy.issuers {
        issuer.inline_keys = issuer.inline_keys.take().map(Jwks::prepared);
    }
    // The ES256 generator table is built once, here, not by a request.
    #[cfg(feature = "p256-tables")]
    let _ = fapi_core::p256_tables::generator_table();
    Some(Worker::new(host, Guard::new(policy, None)))
}

/// Inline keys from the policy, else the fetched set while it is younger than `max_stale`.
struct KeyView<'a> {
    fetched: &'a KeyMap,
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
        let fetched = self.fetched.get(issuer)?;
        (self.now.saturating_sub(fetched.fetched_at) <= remote.max_stale as i64).then_some(&fetched.jwks)
    }
}

impl Worker {
    pub fn new<H: Host + ?Sized>(host: &mut H, guard: Guard) -> Self {
        let settings = &guard.policy.doc.settings;
        let cache = TokenCache::new(settings.token_cache_size);
        Self::with_shared(host, guard, Arc::new(KeySets::default()), cache)
    }

    /// Another worker on the same policy that shares this one's key sets and verified-token cache
    /// (its own decision cache, revocation copy, counters and ids).
    pub fn sibling<H: Host + ?Sized>(&self, host: &mut H) -> Self {
        let guard = Guard::new(self.guard.policy.clone(), None);
        Self::with_shared(host, guard, self.keys.clone(), self.cache.share())
    }

    fn with_shared<H: Host + ?Sized>(
        host: &mut H,
        guard: Guard,
        keys: Arc<KeySets>,
        cache: TokenCache,
    ) -> Self {
        let settings = &guard.policy.doc.settings;
        let mut seed = [0x5a; 32];
        let _ = host.random(&mut seed);
        let mut table_seed = [0u8; 8];
        let _ = host.random(&mut table_seed);
        let (key_generation, key_view) = keys.snapshot();
        let mut w = Worker {
            decisions: DecisionCache::new(settings.token_cache_size, u64::from_le_bytes(table_seed)),
            cache,
            guard,
            keys,
            key_view,
            key_generation,
            revocations: RevocationList::new(),
            revocations_version: None,
            feed_ok_at: i64::MIN,
            feed_cursor: None,
            introspected: HashMap::new(),
            metrics: Metrics::default(),
            nonce_version: None,
            replay_secret: shared::secret(host, REPLAY_SECRET_KEY),
            last_sweep: 0,
            ids: IdGenerator::new(seed),
        };
        w.sync_nonce_secret(host);
        w
    }

    /// Takes the DPoP nonce key all workers share (created by the first).
    pub fn sync_nonce_secret<H: Host + ?Sized>(&mut self, host: &mut H) {
        let version = shared::version(host, NONCE_SECRET_KEY);
        if version.is_some() && version == self.nonce_version {
            return;
        }
        if let Some(secret) = shared::secret(host, NONCE_SECRET_KEY) {
            self.guard.set_nonce_secret(&secret);
            self.nonce_version = shared::version(host, NONCE_SECRET_KEY);
        }
        if self.replay_secret.is_none() {
            self.replay_secret = shared::secret(host, REPLAY_SECRET_KEY);
        }
    }

    /// Whether `revocation: feed` routes may rely on the list: the feed answered within three
    /// intervals (stale after three missed polls: those routes then fail closed).
    pub fn feed_current(&self, now: i64) -> bool {
        self.feed_current_until().is_some_and(|until| now < until)
    }

    /// The first second at which the feed is no longer current (`None`: no feed configured).
    pub fn feed_current_until(&self) -> Option<i64> {
        let feed = self.guard.policy.doc.settings.revocation_feed.as_ref()?;
        Some(
            self.feed_ok_at
                .saturating_add(3 * feed.interval as i64)
                .saturating_add(2),
        )
    }

    /// Takes the current key map when another worker (or the background) changed it; a change drops
    /// the decision cache.
    pub fn refresh_keys(&mut self) {
        if self.keys.generation() != self.key_generation {
            let (generation, view) = self.keys.snapshot();
            self.key_generation = generation;
            self.key_view = view;
            self.decisions.clear();
        }
    }

    /// The fetched key set of `issuer` as this worker sees it.
    pub fn fetched(&self, issuer: &str) -> Option<&FetchedKeys> {
        self.key_view.get(issuer).map(|k| &**k)
    }

    /// An allow this worker remembers for exactly this request (see fapi-core's `decision_cache`),
    /// after taking the current revocation list and key sets (either changing drops them all).
    pub fn cached_allow<H: Host + ?Sized>(
        &mut self,
        host: &H,
        facts: &RequestFacts,
        now: i64,
    ) -> Option<Arc<Allow>> {
        self.sync_revocations(host);
        self.refresh_keys();
        self.sweep(now);
        let hit = self.decisions.lookup(facts, now);
        if hit.is_some() {
            self.metrics.cache(true);
        }
        hit
    }

    /// Remembers an allow [`Worker::decide`] gave for `facts`, when core says it may be served again.
    pub fn remember(&mut self, facts: &RequestFacts, allow: &Allow, now: i64) {
        let feed_until = self.feed_current_until();
        self.decisions
            .remember(&self.guard.policy, facts, allow, feed_until, now);
    }

    /// The decision for a request without a body, with this worker's stores.
    pub fn decide<H: Host + ?Sized>(&mut self, host: &mut H, facts: &RequestFacts, now: i64) -> Decision {
        self.decide_with_body(host, facts, Some(None), now)
    }

    /// The decision with this worker's stores. `body`: `Some(b)` decides with the body `b`
    /// (`Some(None)`: none); `None` decides on the headers and leaves a body-bound rule's body to
    /// [`Worker::check_body`] ([`Guard::decide_before_body`]). The `once` store of authorization
    /// details is shared by every worker like the DPoP replay store.
    pub fn decide_with_body<H: Host + ?Sized>(
        &mut self,
        host: &mut H,
        facts: &RequestFacts,
        body: Option<Option<&[u8]>>,
        now: i64,
    ) -> Decision {
        self.sync_revocations(host);
        self.refresh_keys();
        let feed_current = self.feed_current(now);
        let keys = KeyView {
            fetched: &self.key_view,
            guard: &self.guard,
            now,
        };
        let mut replay = SharedReplayStore {
            host,
            bucket_capacity: shared::replay_bucket_capacity(self.guard.policy.doc.settings.replay_store_size),
            secret: self.replay_secret.as_deref(),
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
        // `once` authorization details are remembered in the same shared store (RFC 9396 rules only).
        let mut decision = match body {
            Some(body) => self.guard.decide_with_body(facts, body, &mut ctx),
            None => self.guard.decide_before_body(facts, &mut ctx),
        };
        let hit = self.cache.hits > hits_before;
        if let Decision::Allow(a) = &mut decision {
            a.cache_hit = hit;
        }
        if hit || self.cache.misses > misses_before {
            self.metrics.cache(hit);
        }
        decision
    }

    /// RFC 9396: the body of a request admitted with `awaiting_body`, checked against the token's
    /// `authorization_details` ([`Guard::check_body`]), `once` uses in the shared store.
    pub fn check_body<H: Host + ?Sized>(
        &mut self,
        host: &mut H,
        allow: &fapi_core::decision::Allow,
        body: &[u8],
        now: i64,
    ) -> Result<(), fapi_core::Denial> {
        let mut replay = SharedReplayStore {
            host,
            bucket_capacity: shared::replay_bucket_capacity(self.guard.policy.doc.settings.replay_store_size),
            secret: self.replay_secret.as_deref(),
        };
        self.guard.check_body(allow, body, &mut replay, now)
    }

    /// Reloads the revocation list when another worker published a newer one (a cheap version check).
    pub fn sync_revocations<H: Host + ?Sized>(&mut self, host: &H) {
        if self.guard.policy.doc.settings.revocation_feed.is_none() {
            return;
        }
        // Per request: an 8-byte read, not the list itself.
        let version = shared::read_published(host, REVOKED_SEQ_KEY).map(|p| p.at as u32);
        if version.is_none() || version == self.revocations_version {
            return;
        }
        if let Some(p) = shared::read_published(host, REVOKED_KEY) {
            if let Some(state) = RevokedState::parse(&p.body) {
                let list = state.list();
                // A token just revoked may have a remembered allow: forget them all (every poll
                // publishes the list; one that revokes nothing new keeps them).
                if list.revokes_more_than(&self.revocations) {
                    self.decisions.clear();
                }
                self.revocations = list;
                self.feed_cursor = Some(state.cursor);
                self.feed_ok_at = p.at;
                self.revocations_version = version;
            }
        }
    }

    /// Takes a key set another worker published, if newer than ours.
    pub fn sync_keys<H: Host + ?Sized>(&mut self, host: &H, issuer: &str) {
        self.refresh_keys();
        let key = jwks_key(issuer);
        let version = shared::version(host, &key);
        if version.is_none() || self.fetched(issuer).is_some_and(|f| f.version == version) {
            return;
        }
        if let Some(p) = shared::read_published(host, &key) {
            if let Ok(jwks) = Jwks::parse(&p.body).map(Jwks::prepared) {
                self.keys.insert(
                    issuer,
                    FetchedKeys {
                        jwks,
                        fetched_at: p.at,
                        version: p.cas,
                    },
                );
                self.refresh_keys();
            }
        }
    }

    /// Stores a fetched key set (shared and local); keeps the last good one when the answer is not a
    /// usable key set. Used by the background refresh and by requests that met an unknown kid.
    pub fn store_jwks<H: Host + ?Sized>(
        &mut self,
        host: &mut H,
        issuer: &str,
        status: &str,
        body: &[u8],
        now: i64,
    ) -> bool {
        let parsed = if status == "200" {
            // Prepared: ES256 keys get their verification tables now, off the request path.
            Jwks::parse(body).map(Jwks::prepared).map_err(|e| e.to_string())
        } else if status.is_empty() {
            Err("no answer".to_string())
        } else {
            Err(format!("status {status}"))
        };
        match parsed {
            Ok(jwks) if !jwks.keys.is_empty() => {
                for s in &jwks.skipped {
                    host.log(
                        Level::Warn,
                        &format!(
                            "fapi-guard: key {} of {issuer} skipped: {}",
                            s.kid.as_deref().unwrap_or("(no kid)"),
                            s.error
                        ),
                    );
                }
                let _ = shared::publish(host, &jwks_key(issuer), now, body, None);
                let version = shared::version(host, &jwks_key(issuer));
                self.keys.insert(
                    issuer,
                    FetchedKeys {
                        jwks,
                        fetched_at: now,
                        version,
                    },
                );
                self.refresh_keys();
                host.counter("jwks.fetched", 1);
                true
            }
            Ok(_) => {
                host.log(
                    Level::Warn,
                    &format!("fapi-guard: key set of {issuer} has no usable key; keeping the last good one"),
                );
                host.counter("jwks.fetch_failed", 1);
                false
            }
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("fapi-guard: fetching the key set of {issuer} failed ({e}); keeping the last good one"),
                );
                host.counter("jwks.fetch_failed", 1);
                false
            }
        }
    }

    /// Once a minute: drops expired cache entries, revocations and introspection answers.
    pub fn sweep(&mut self, now: i64) {
        if now.saturating_sub(self.last_sweep) >= 60 {
            self.last_sweep = now;
            self.cache.sweep(now - 300);
            self.decisions.sweep(now);
            self.revocations.sweep(now);
            self.introspected.retain(|_, (_, until)| *until > now);
        }
    }
}

/// The revocation list as all workers share it: the feed's cursor and `(iss, jti, exp)` entries.
pub struct RevokedState {
    pub cursor: String,
    pub entries: Vec<(String, String, i64)>,
}

impl RevokedState {
    pub fn parse(body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let cursor = v
            .get("cursor")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string();
        let entries = v
            .get("entries")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((
                            e.get(0)?.as_str()?.to_string(),
                            e.get(1)?.as_str()?.to_string(),
                            e.get(2)?.as_i64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(RevokedState { cursor, entries })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({"cursor": self.cursor, "entries": self.entries})
            .to_string()
            .into_bytes()
    }

    pub fn list(&self) -> RevocationList {
        let mut list = RevocationList::new();
        for (iss, jti, exp) in &self.entries {
            list.revoke(iss, jti, *exp);
        }
        list
    }

    /// Adds a feed page's revocations (once each), forgets expired ones, moves the cursor.
    pub fn merge(&mut self, page: &fapi_core::revocation::FeedPage, now: i64) {
        self.entries.retain(|(_, _, exp)| *exp >= now);
        let mut known: HashSet<(String, String)> = self
            .entries
            .iter()
            .map(|(i, j, _)| (i.clone(), j.clone()))
            .collect();
        for r in &page.revoked {
            if known.insert((r.iss.clone(), r.jti.clone())) {
                self.entries.push((r.iss.clone(), r.jti.clone(), r.exp));
            }
        }
        self.cursor = page.cursor.clone();
    }
}
