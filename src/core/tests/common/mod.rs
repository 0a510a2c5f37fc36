//! Shared fixtures for the decision tests: real generated keys (once per test binary), a bank policy
//! built in code, a fixed clock, and helpers that build tokens, DPoP proofs and request facts.
//!
//! Nothing here reads the wall clock: every time is relative to [`NOW`].

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::cache::{RevocationList, TokenCache};
use fapi_core::decision::{Allow, Decision, Deny};
use fapi_core::dpop::MemoryReplayStore;
use fapi_core::extract::{ClientCert, RequestFacts};
use fapi_core::guard::{Context, Guard, KeySource};
use fapi_core::policy::Policy;
use fapi_core::sign::{random_id, SigningKey};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The fixed clock of every decision (2025-06-15T15:06:40Z).
pub const NOW: i64 = 1_750_000_000;
pub const ISS: &str = "https://as.bank.example";
pub const AUD: &str = "https://api.bank.example";
pub const HOST: &str = "api.bank.example";
/// The DER of the client certificate tokens are bound to (only its SHA-256 matters to RFC 8705).
pub const CERT_A: &[u8] = b"0\x82\x01\x0a client certificate A (DER stand-in)";
pub const CERT_B: &[u8] = b"0\x82\x01\x0a client certificate B (DER stand-in)";
pub const STRONG_ACR: &str = "urn:bank:acr:strong";

/// Every key the tests use. RSA generation is slow in debug builds, so one RSA key is generated per
/// test binary and its RS256 twin shares the same material.
pub struct Keys {
    /// Issuer keys, published inline in the policy.
    pub es: SigningKey,
    pub ps: SigningKey,
    pub ed: SigningKey,
    /// The PS256 key's material loaded for RS256 (kid `rs-1`).
    pub rs: SigningKey,
    /// An attacker's ES256 key that claims the issuer key's kid `es-1`.
    pub es_impostor: SigningKey,
    /// Client DPoP keys.
    pub dpop: SigningKey,
    pub dpop_other: SigningKey,
    pub dpop_ed: SigningKey,
}

static KEYS: OnceLock<Keys> = OnceLock::new();

pub fn keys() -> &'static Keys {
    KEYS.get_or_init(|| {
        let make = |alg, kid: &str| SigningKey::generate(alg, Some(kid.to_string())).expect("key generation");
        let ps = make(Algorithm::PS256, "ps-1");
        let mut rs_jwk = ps.private_jwk().clone();
        rs_jwk["alg"] = json!("RS256");
        rs_jwk["kid"] = json!("rs-1");
        let rs = SigningKey::from_jwk(&rs_jwk).expect("RS256 twin of the PS256 key");
        Keys {
            es: make(Algorithm::ES256, "es-1"),
            ps,
            ed: make(Algorithm::EdDSA, "ed-1"),
            rs,
            es_impostor: make(Algorithm::ES256, "es-1"),
            dpop: SigningKey::generate(Algorithm::ES256, None).expect("key generation"),
            dpop_other: SigningKey::generate(Algorithm::ES256, None).expect("key generation"),
            dpop_ed: SigningKey::generate(Algorithm::EdDSA, None).expect("key generation"),
        }
    })
}

/// The bank policy. Rule order matters: the weak `/accounts` fallback comes after the strict rules.
pub fn policy_value() -> Value {
    let k = keys();
    json!({
        "version": 1,
        "name": "decision tests",
        "settings": {
            "revocation_feed": {"cluster": "as_cluster", "path": "/revocations"}
        },
        "issuers": [{
            "issuer": ISS,
            "audiences": [AUD],
            "max_lifetime": 3600,
            "jwks": {"keys": [k.es.public_jwk(), k.ps.public_jwk(), k.ed.public_jwk(), k.rs.public_jwk()]}
        }],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "anonymous": true},
            {"name": "balances", "match": {"methods": ["GET"], "template": "/accounts/{id}/balances"},
             "require": {"scopes": ["accounts"], "sender_constraint": "either"}},
            {"name": "transfers", "match": {"methods": ["POST"], "path": "/transfers"},
             "require": {"scopes": ["payments"], "sender_constraint": "mtls",
                         "acr": [STRONG_ACR], "max_auth_age": 300}},
            {"name": "payment-consents", "match": {"prefix": "/payment-consents"},
             "require": {"scopes": ["payments"], "sender_constraint": "dpop"}},
            {"name": "fx-quotes", "match": {"prefix": "/fx-quotes"},
             "require": {"sender_constraint": "dpop", "dpop": {"require_nonce": true}}},
            {"name": "products", "match": {"prefix": "/products"},
             "require": {"scopes": {"any_of": ["products", "accounts"]}, "sender_constraint": "bearer-allowed"}},
            {"name": "statements", "match": {"prefix": "/statements"},
             "require": {"scopes": ["accounts"], "revocation": "feed"}},
            {"name": "partner", "match": {"prefix": "/partner"},
             "require": {"client_ids": ["partner-app"]}},
            {"name": "business", "match": {"prefix": "/business"},
             "require": {"claims": [{"claim": "customer_type", "equals": "business"}]}},
            {"name": "accounts-fallback", "match": {"prefix": "/accounts"},
             "require": {"sender_constraint": "bearer-allowed"}}
        ]
    })
}

pub fn policy(value: Value) -> Policy {
    match Policy::from_value(value) {
        Ok((p, _warnings)) => p,
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            panic!("test policy does not compile: {list:?}")
        }
    }
}

/// A guard and the mutable state of a worker, with a fixed clock.
pub struct Harness {
    pub guard: Guard,
    pub cache: TokenCache,
    pub replay: MemoryReplayStore,
    pub revocations: RevocationList,
    pub feed_current: bool,
    pub now: i64,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_policy(policy_value(), None)
    }

    pub fn with_policy(value: Value, nonce_secret: Option<&[u8]>) -> Self {
        Harness {
            guard: Guard::new(policy(value), nonce_secret),
            cache: TokenCache::new(100),
            replay: MemoryReplayStore::new(1000),
            revocations: RevocationList::new(),
            feed_current: true,
            now: NOW,
        }
    }

    /// A decision with the policy's inline keys.
    pub fn decide(&mut self, facts: &RequestFacts) -> Decision {
        let Harness {
            guard,
            cache,
            replay,
            revocations,
            feed_current,
            now,
        } = self;
        let mut ctx = Context {
            keys: &guard.policy,
            cache,
            replay,
            revocations,
            revocation_feed_current: *feed_current,
            now: *now,
        };
        guard.decide(facts, &mut ctx)
    }

    /// A decision with another key source.
    pub fn decide_with_keys(&mut self, facts: &RequestFacts, keys: &dyn KeySource) -> Decision {
        let mut ctx = Context {
            keys,
            cache: &mut self.cache,
            replay: &mut self.replay,
            revocations: &self.revocations,
            revocation_feed_current: self.feed_current,
            now: self.now,
        };
        self.guard.decide(facts, &mut ctx)
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

// ---- tokens ----

/// RFC 9068 claims of a token valid at [`NOW`], bound to [`CERT_A`] (RFC 8705 `cnf.x5t#S256`).
pub fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "alice",
        "client_id": "tpp-1",
        "iat": NOW - 10,
        "exp": NOW + 290,
        "jti": random_id(),
        "scope": "accounts payments",
        "cnf": {"x5t#S256": b64::sha256_b64(CERT_A)}
    })
}

/// Claims without any `cnf` (an unbound bearer token).
pub fn bearer_claims() -> Value {
    without(claims(), &["cnf"])
}

/// Claims bound to a DPoP key (RFC 9449 §6.1 `cnf.jkt`).
pub fn dpop_claims(key: &SigningKey) -> Value {
    with(claims(), json!({"cnf": {"jkt": key.thumbprint()}}))
}

/// `base` with the members of `extra` set (a `null` member removes it).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
    base
}

pub fn without(mut base: Value, names: &[&str]) -> Value {
    if let Some(b) = base.as_object_mut() {
        for n in names {
            b.remove(*n);
        }
    }
    base
}

/// A token signed by `key` with `typ: at+jwt` and the key's kid.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    key.sign_jwt(Some("at+jwt"), claims).expect("signing")
}

/// A token signed by `key` with exactly this header.
pub fn sign_header(key: &SigningKey, header: Value, claims: &Value) -> String {
    key.sign_with_header(&header, claims).expect("signing")
}

/// `BASE64URL(header).BASE64URL(payload)` without a signature.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64::encode(header.to_string()),
        b64::encode(claims.to_string())
    )
}

// ---- DPoP ----

pub fn htu(path: &str) -> String {
    format!("https://{HOST}{path}")
}

/// A valid RFC 9449 proof for `method` and `path` at [`NOW`], bound to `token` through `ath`.
pub fn proof(key: &SigningKey, method: &str, path: &str, token: &str) -> String {
    key.dpop_proof(method, &htu(path), Some(token), NOW, &random_id(), None)
        .expect("proof")
}

/// The claims of a valid proof, for tests that forge the header or drop a claim.
pub fn proof_claims(method: &str, path: &str, token: &str) -> Value {
    json!({
        "jti": random_id(),
        "htm": method,
        "htu": htu(path),
        "iat": NOW,
        "ath": b64::sha256_b64(token),
    })
}

/// The header of a valid proof made with `key`.
pub fn proof_header(key: &SigningKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg().as_str(), "jwk": key.public_jwk_bare()})
}

// ---- requests ----

pub fn request(method: &str, path: &str) -> RequestFacts {
    RequestFacts {
        method: method.to_string(),
        scheme: "https".to_string(),
        authority: HOST.to_string(),
        path: path.to_string(),
        ..Default::default()
    }
}

pub fn get(path: &str) -> RequestFacts {
    request("GET", path)
}

pub fn post(path: &str) -> RequestFacts {
    request("POST", path)
}

pub fn bearer(mut facts: RequestFacts, token: &str) -> RequestFacts {
    facts.authorization = vec![format!("Bearer {token}")];
    facts
}

pub fn dpop(mut facts: RequestFacts, token: &str, proofs: &[&str]) -> RequestFacts {
    facts.authorization = vec![format!("DPoP {token}")];
    facts.dpop = proofs.iter().map(|p| p.to_string()).collect();
    facts
}

pub fn cert(mut facts: RequestFacts, der: &[u8]) -> RequestFacts {
    facts.client_cert = Some(ClientCert::Der(der.to_vec()));
    facts
}

/// Envoy's `connection.sha256_peer_certificate_digest`: lowercase hex of SHA-256(DER).
pub fn envoy_digest(der: &[u8]) -> String {
    b64::sha256(der).iter().map(|b| format!("{b:02x}")).collect()
}

/// The FAPI-typical request: GET balances with an mTLS-bound token and certificate A.
pub fn balances_mtls(token: &str) -> RequestFacts {
    cert(bearer(get("/accounts/1/balances"), token), CERT_A)
}

// ---- assertions ----

pub fn allowed(d: Decision) -> Allow {
    match d {
        Decision::Allow(a) => a,
        Decision::Deny(d) => panic!(
            "expected an admission, got {} {:?} {} ({})",
            d.status,
            d.error,
            d.reason(),
            d.denial
        ),
    }
}

pub fn denied(d: Decision) -> Box<Deny> {
    match d {
        Decision::Deny(d) => d,
        Decision::Allow(a) => panic!("expected a denial, got admitted by rule {}", a.rule),
    }
}

/// Asserts status, OAuth error and reason code, and that the one challenge carries the error code
/// (or, without an error, that no challenge does: RFC 6750 §3.1).
pub fn assert_deny(d: Decision, status: u16, error: Option<&str>, reason: &str) -> Box<Deny> {
    let d = denied(d);
    assert_eq!(
        (d.status, d.error, d.reason()),
        (status, error, reason),
        "denial was: {}",
        d.denial
    );
    match error {
        Some(code) => {
            assert_eq!(d.www_authenticate.len(), 1, "{:?}", d.www_authenticate);
            assert!(
                d.www_authenticate[0].contains(&format!("error=\"{code}\"")),
                "{:?}",
                d.www_authenticate
            );
        }
        None => assert!(
            d.www_authenticate.iter().all(|c| !c.contains("error=")),
            "{:?}",
            d.www_authenticate
        ),
    }
    d
}

/// Asserts a 401 `invalid_token` with this reason under a Bearer challenge.
pub fn assert_invalid_token(d: Decision, reason: &str) -> Box<Deny> {
    let d = assert_deny(d, 401, Some("invalid_token"), reason);
    assert!(
        d.www_authenticate[0].starts_with("Bearer error=\"invalid_token\""),
        "{:?}",
        d.www_authenticate
    );
    d
}

/// Asserts a 401 `invalid_dpop_proof` with this reason under a DPoP challenge advertising `algs`.
pub fn assert_bad_proof(d: Decision, reason: &str) -> Box<Deny> {
    let d = assert_deny(d, 401, Some("invalid_dpop_proof"), reason);
    let c = &d.www_authenticate[0];
    assert!(c.starts_with("DPoP error=\"invalid_dpop_proof\""), "{c}");
    assert!(c.contains("algs=\"ES256 PS256 EdDSA\""), "{c}");
    d
}

/// The value of a forwarded header.
pub fn forwarded<'a>(a: &'a Allow, header: &str) -> Option<&'a str> {
    a.forward
        .iter()
        .find(|(h, _)| h == header)
        .map(|(_, v)| v.as_str())
}
