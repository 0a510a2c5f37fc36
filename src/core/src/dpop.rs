//! DPoP proofs at the resource server (RFC 9449 §4.3 checks, §7 token presentation, §8-9 nonces,
//! §11.1 replay), with a bounded in-memory replay store and a stateless nonce issuer.

use crate::alg::Algorithm;
use crate::b64;
use crate::binding::constant_time_eq;
use crate::denial::{Denial, DpopDefect};
use crate::jwk::{JwkError, PublicJwk};
use crate::jws::CompactJws;
use crate::verify::{self, HeaderRules, LifetimeStart, TimeRules, Times, TypRule};
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// How proofs are checked on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopRules {
    /// Proof algorithms accepted (default ES256, PS256, EdDSA; advertised in the `algs` challenge).
    #[serde(default = "default_dpop_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be, in seconds (default 60). Also how long its `jti` is remembered.
    #[serde(
        default = "default_iat_window",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub iat_window: u64,
    /// How far in the future a proof's `iat` may be, in seconds (default 10).
    #[serde(
        default = "default_iat_future",
        deserialize_with = "crate::policy::whole_number::exact"
    )]
    pub iat_future: u64,
    /// Require a server-provided nonce (RFC 9449 §9): proofs without one get `use_dpop_nonce`.
    #[serde(default)]
    pub require_nonce: bool,
}

fn default_dpop_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA]
}
fn default_iat_window() -> u64 {
    60
}
fn default_iat_future() -> u64 {
    10
}

impl Default for DpopRules {
    fn default() -> Self {
        DpopRules {
            algorithms: default_dpop_algorithms(),
            iat_window: default_iat_window(),
            iat_future: default_iat_future(),
            require_nonce: false,
        }
    }
}

impl DpopRules {
    /// The time rules of a proof (RFC 9449 §4.3 step 11, §11.1): `iat` at most `iat_window` old and
    /// `iat_future` ahead; `exp` optional, but when present not passed and at most `iat_window` after
    /// `iat`.
    pub fn time_rules(&self) -> TimeRules {
        TimeRules {
            exp_required: false,
            leeway_past: 0,
            leeway_future: self.iat_future,
            max_lifetime: Some(self.iat_window),
            max_age: Some(self.iat_window),
            start: LifetimeStart::IatOrNbf,
        }
    }
}

/// The request a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    pub method: &'a str,
    /// The request URI, already normalized by [`crate::uri`].
    pub htu: &'a str,
    /// The access token presented with the proof (its hash must equal `ath`, RFC 9449 §4.3 step 12);
    /// `None` at the token endpoint, where no access token exists yet and `ath` is not checked.
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check except replay (the caller records its `jti` last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidProof {
    /// RFC 7638 thumbprint of the proof key, for `cnf.jkt`.
    pub jkt: String,
    /// SHA-256 over the key thumbprint and `jti`: the replay-store key (RFC 9449 §11.1).
    pub replay_key: [u8; 32],
    /// Until when the `jti` must be remembered.
    pub remember_until: i64,
}

/// Longest DPoP header accepted (an RSA-4096 JWK plus signature is about 2.5 KiB).
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// Checks the proof in the DPoP header values of a request, RFC 9449 §4.3 steps 1-12.
pub fn check_proof(
    headers: &[&str],
    ctx: &ProofContext<'_>,
    rules: &DpopRules,
    nonces: Option<&NonceIssuer>,
    now: i64,
) -> Result<ValidProof, Denial> {
    check_proof_with(headers, ctx, rules, nonces, now, None)
}

/// [`check_proof`], with a cache that readies the keys of returning clients for fast verification.
pub fn check_proof_with(
    headers: &[&str],
    ctx: &ProofContext<'_>,
    rules: &DpopRules,
    nonces: Option<&NonceIssuer>,
    now: i64,
    keys: Option<&mut ProofKeyCache>,
) -> Result<ValidProof, Denial> {
    use DpopDefect::*;
    let fail = |d: DpopDefect| Denial::DpopProof(d);
    // 1. Exactly one DPoP header.
    let proof = match headers {
        [] => return Err(fail(Missing)),
        [one] => *one,
        _ => return Err(fail(MultipleHeaders)),
    };
    if proof.len() > MAX_PROOF_LEN {
        return Err(fail(Malformed));
    }
    // 2. A well-formed JWT.
    let jws = CompactJws::parse(proof).map_err(|_| fail(Malformed))?;
    // 3-4. typ
    // Media types compare case-insensitively (RFC 7515 §4.1.9, RFC 2045).
    match jws.header_str("typ") {
        Ok(Some(t)) if t.eq_ignore_ascii_case("dpop+jwt") => {}
        Ok(None) => return Err(fail(MissingClaim("typ"))),
        _ => return Err(fail(Typ)),
    }
    // 5. An asymmetric algorithm from the allowed list; and the header rules every JWT here obeys
    // (crate::verify): no key but the jwk (RFC 8725 §3.10: no jku, x5u, x5c), no crit this verifier
    // does not understand (RFC 7515 §4.1.11: the JWS is then invalid).
    if jws.header.get("alg").is_none() {
        return Err(fail(MissingClaim("alg")));
    }
    let header_rules = HeaderRules {
        algorithms: &rules.algorithms,
        typ: TypRule {
            accepted: &["dpop+jwt"],
            optional: false,
        },
        forbidden: &["jku", "x5u", "x5c"],
        understood_crit: &[],
    };
    let alg = match verify::check_header(&jws, &header_rules) {
        Ok(h) => h.alg,
        Err(Denial::TypNotAllowed) => return Err(fail(Typ)),
        Err(Denial::KeyInHeader(_)) => return Err(fail(Jwk)),
        Err(Denial::UnknownCritical) => return Err(fail(Malformed)),
        Err(_) => return Err(fail(Algorithm)),
    };
    // 7. The jwk header: a public key, never a private one.
    let jwk = match jws.header.get("jwk") {
        None => return Err(fail(MissingClaim("jwk"))),
        Some(v) => PublicJwk::from_value(v).map_err(|e| match e {
            JwkError::PrivateMaterial => fail(PrivateJwk),
            _ => fail(Jwk),
        })?,
    };
    if !jwk.suits(alg) {
        return Err(fail(Jwk));
    }
    let jwk = match keys {
        Some(cache) => cache.get_or_prepare(jwk),
        None => jwk,
    };
    // 6. The signature, with that key.
    if !jwk.verify(alg, jws.signing_input.as_bytes(), &jws.signature) {
        return Err(fail(Signature));
    }
    let claims = &jws.payload;
    let jti = match claims.get("jti") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => s,
        _ => return Err(fail(MissingClaim("jti"))),
    };
    // 8. htm
    match claims.get("htm") {
        Some(Value::String(m)) if m == ctx.method => {}
        Some(Value::String(_)) => return Err(fail(Htm)),
        _ => return Err(fail(MissingClaim("htm"))),
    }
    // 9. htu, compared after normalization, without query and fragment.
    match claims.get("htu") {
        Some(Value::String(u)) => match crate::uri::normalize(u) {
            Some(u) if u == ctx.htu => {}
            _ => return Err(fail(Htu)),
        },
        _ => return Err(fail(MissingClaim("htu"))),
    }
    // 11. iat within the window: no older than iat_window, no further ahead than iat_future; an exp,
    // when a proof carries one, not passed and not beyond the window either (crate::verify).
    let times = Times::from_claims(claims).map_err(|d| match d {
        Denial::MalformedClaim(c) => fail(MissingClaim(c)),
        _ => fail(Malformed),
    })?;
    let iat = times.iat.ok_or(fail(MissingClaim("iat")))?;
    let window = rules.time_rules();
    verify::check_window(&times, &window, now)
        .and_then(|_| verify::check_lifetime(&times, &window, now))
        .map_err(|_| fail(Iat))?;
    // 12. ath: base64url(SHA-256(access token)).
    if let Some(token) = ctx.access_token {
        match claims.get("ath") {
            Some(Value::String(ath)) => {
                if !constant_time_eq(ath.as_bytes(), b64::sha256_b64(token).as_bytes()) {
                    return Err(fail(Ath));
                }
            }
            _ => return Err(fail(MissingClaim("ath"))),
        }
    }
    // 10. Nonce: required by the route, or checked whenever one is present and we issue nonces.
    match (claims.get("nonce"), nonces) {
        (None, Some(_)) if rules.require_nonce => return Err(Denial::UseDpopNonce),
        // RFC 9449 §9: an invalid or stale nonce is answered with a fresh one.
        (Some(Value::String(n)), Some(issuer)) if !issuer.is_valid(n, now) => {
            return Err(Denial::UseDpopNonce)
        }
        (Some(Value::String(_)), Some(_)) => {}
        (Some(_), Some(_)) => return Err(fail(Nonce)),
        // No nonce key (none configured, or not yet shared between workers): a route that requires
        // nonces cannot validate one, so it fails closed instead of admitting proofs without any.
        (_, None) if rules.require_nonce => return Err(fail(Nonce)),
        _ => {}
    }
    let mut replay_input = Vec::with_capacity(jwk.thumbprint.len() + 1 + jti.len());
    replay_input.extend_from_slice(jwk.thumbprint.as_bytes());
    replay_input.push(b'.');
    replay_input.extend_from_slice(jti.as_bytes());
    Ok(ValidProof {
        replay_key: b64::sha256(&replay_input),
        remember_until: iat.saturating_add(rules.iat_window as i64).saturating_add(1),
        jkt: jwk.thumbprint,
    })
}

/// DPoP keys of returning clients, readied for fast verification ([`PublicJwk::prepare`]: ES256 tables
/// with the feature `p256-tables`). Clients keep their DPoP key across requests, so a key seen twice is
/// prepared once and reused. Entries are keyed by the RFC 7638 thumbprint, which fixes the key
/// material. Bounded: when full, the cache starts over.
#[derive(Debug)]
pub struct ProofKeyCache {
    capacity: usize,
    entries: HashMap<String, (u32, Option<PublicJwk>)>,
}

impl ProofKeyCache {
    pub fn new(capacity: usize) -> Self {
        ProofKeyCache {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// The prepared copy of `jwk` if there is one; prepares it on its second sighting.
    pub fn get_or_prepare(&mut self, jwk: PublicJwk) -> PublicJwk {
        if self.capacity == 0 {
            return jwk;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&jwk.thumbprint) {
            self.entries.clear();
        }
        let entry = self.entries.entry(jwk.thumbprint.clone()).or_insert((0, None));
        entry.0 = entry.0.saturating_add(1);
        if let Some(prepared) = &entry.1 {
            return prepared.clone();
        }
        if entry.0 >= 2 {
            let prepared = jwk.prepare();
            entry.1 = Some(prepared.clone());
            return prepared;
        }
        jwk
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The outcome of recording a proof's `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Fresh,
    Replayed,
    /// The store is full of live entries; the proof cannot be checked for replay (fail closed).
    Full,
}

/// Remembers proof `jti` values for their window (RFC 9449 §11.1).
///
/// The Envoy plugin implements it on proxy-wasm shared data (shared by all workers, with
/// compare-and-swap); [`MemoryReplayStore`] is the bounded in-process one.
pub trait ReplayStore {
    fn record(&mut self, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded;

    /// [`ReplayStore::record`] for a proof signed by the key whose RFC 7638 thumbprint is `jkt`, so a
    /// store can bound what one client holds (one client must not fill what others need). The default
    /// ignores the client.
    fn record_for(&mut self, jkt: &str, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        let _ = jkt;
        self.record(key, remember_until, now)
    }

    /// A one-time use that is remembered for a token's lifetime (RFC 9396 `authorization_details`
    /// with `once`), far longer than a proof's window: a store may keep these apart. `client` bounds
    /// what one client holds, as for proofs. The default records it like a proof.
    fn record_use(&mut self, client: &str, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        self.record_for(client, key, remember_until, now)
    }
}

/// A store reached through a mutable reference is that store.
impl<S: ReplayStore + ?Sized> ReplayStore for &mut S {
    fn record(&mut self, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        (**self).record(key, remember_until, now)
    }
    fn record_for(&mut self, jkt: &str, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        (**self).record_for(jkt, key, remember_until, now)
    }
    fn record_use(&mut self, client: &str, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        (**self).record_use(client, key, remember_until, now)
    }
}

/// A bounded in-memory replay store. Entries leave when their window closes; when full of live
/// entries, new proofs are refused rather than old ones forgotten (forgetting would open a replay).
#[derive(Debug)]
pub struct MemoryReplayStore {
    capacity: usize,
    seen: HashMap<[u8; 32], i64>,
    /// Sweeps run at most once a second, so a full store under load costs one pass per second.
    last_sweep: i64,
}

impl MemoryReplayStore {
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            capacity,
            seen: HashMap::new(),
            last_sweep: i64::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

impl ReplayStore for MemoryReplayStore {
    fn record(&mut self, key: &[u8; 32], remember_until: i64, now: i64) -> Recorded {
        if let Some(until) = self.seen.get(key) {
            if *until > now {
                return Recorded::Replayed;
            }
        }
        if self.seen.len() >= self.capacity && now > self.last_sweep {
            self.last_sweep = now;
            self.seen.retain(|_, until| *until > now);
        }
        if self.seen.len() >= self.capacity && !self.seen.contains_key(key) {
            return Recorded::Full;
        }
        self.seen.insert(*key, remember_until);
        Recorded::Fresh
    }
}

/// Stateless server nonces (RFC 9449 §8-9): `base64url(issued_at || HMAC-SHA256(key, issued_at)[..16])`.
/// Any instance holding the key validates any other's nonces; no storage is needed.
pub struct NonceIssuer {
    key: hmac::Key,
    lifetime: u64,
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl NonceIssuer {
    /// `secret` should hold at least 32 random bytes; `lifetime` is in seconds.
    pub fn new(secret: &[u8], lifetime: u64) -> Self {
        NonceIssuer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            lifetime,
        }
    }

    pub fn issue(&self, now: i64) -> String {
        let t = now.to_be_bytes();
        let tag = hmac::sign(&self.key, &t);
        let mut raw = Vec::with_capacity(24);
        raw.extend_from_slice(&t);
        raw.extend_from_slice(&tag.as_ref()[..16]);
        b64::encode(raw)
    }

    pub fn is_valid(&self, nonce: &str, now: i64) -> bool {
        let Some(raw) = b64::decode(nonce) else {
            return false;
        };
        if raw.len() != 24 {
            return false;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&raw[..8]);
        let tag = hmac::sign(&self.key, &t);
        if !constant_time_eq(&tag.as_ref()[..16], &raw[8..]) {
            return false;
        }
        let issued = i64::from_be_bytes(t);
        issued <= now.saturating_add(5) && now.saturating_sub(issued) <= self.lifetime as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_store_remembers_within_window_and_stays_bounded() {
        let mut store = MemoryReplayStore::new(2);
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert_eq!(store.record(&a, 100, 10), Recorded::Fresh);
        assert_eq!(store.record(&a, 100, 20), Recorded::Replayed);
        assert_eq!(store.record(&b, 50, 20), Recorded::Fresh);
        assert_eq!(store.record(&c, 120, 30), Recorded::Full);
        // After b's window closes it is swept and c fits.
        assert_eq!(store.record(&c, 120, 60), Recorded::Fresh);
        assert_eq!(store.len(), 2);
        // a's window is over: it may be recorded again.
        assert_eq!(store.record(&b, 200, 130), Recorded::Fresh);
    }

    #[cfg(feature = "sign")]
    #[test]
    fn proof_key_cache_prepares_returning_keys_and_verifies_the_same() {
        use crate::sign::SigningKey;
        let Ok(key) = SigningKey::generate(Algorithm::ES256, None) else {
            return;
        };
        let mut cache = ProofKeyCache::new(4);
        let ctx = ProofContext {
            method: "GET",
            htu: "https://api.example/x",
            access_token: Some("t"),
        };
        for (i, iat) in [100i64, 101, 102].iter().enumerate() {
            let Ok(proof) = key.dpop_proof(
                "GET",
                "https://api.example/x",
                Some("t"),
                *iat,
                &format!("j{i}"),
                None,
            ) else {
                return;
            };
            let ok = check_proof_with(
                &[&proof],
                &ctx,
                &DpopRules::default(),
                None,
                *iat,
                Some(&mut cache),
            );
            assert_eq!(ok.map(|p| p.jkt), Ok(key.thumbprint().to_string()));
            // A forged signature is refused whether or not the key is prepared.
            let forged = format!("{}AAAA", &proof[..proof.len() - 4]);
            let bad = check_proof_with(
                &[&forged],
                &ctx,
                &DpopRules::default(),
                None,
                *iat,
                Some(&mut cache),
            );
            assert_eq!(bad, Err(Denial::DpopProof(DpopDefect::Signature)));
        }
        assert_eq!(cache.len(), 1);
        #[cfg(feature = "p256-tables")]
        assert!(cache
            .entries
            .values()
            .all(|(_, k)| k.as_ref().is_some_and(|k| k.es256_tables().is_some())));
    }

    #[test]
    fn nonces_are_stateless_and_expire() {
        let issuer = NonceIssuer::new(&[7u8; 32], 300);
        let n = issuer.issue(1_000);
        assert!(issuer.is_valid(&n, 1_000));
        assert!(issuer.is_valid(&n, 1_300));
        assert!(!issuer.is_valid(&n, 1_301));
        assert!(!issuer.is_valid(&n, 990));
        let other = NonceIssuer::new(&[8u8; 32], 300);
        assert!(!other.is_valid(&n, 1_000));
        assert!(!issuer.is_valid("not-a-nonce", 1_000));
    }
}
