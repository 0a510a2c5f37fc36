//! The authorization server as a resource server of its own access tokens (the UserInfo endpoint,
//! OIDC Core §5.3). Every check is fapi-core's [`Guard::decide`], the code the Envoy plugin runs:
//! token in the Authorization header only (RFC 6750 §2.1, RFC 9449 §7.1, FAPI 2.0 §5.3.4), RFC 9068
//! signature and claims, sender binding (RFC 8705 §3 `cnf.x5t#S256`, RFC 9449 §6.1 `cnf.jkt`), the
//! DPoP proof (RFC 9449 §4.3, with `ath`, §7.1) and required scopes with RFC 6750 §3.1 challenges.
//! This module only supplies what the plugin's host code supplies: the policy, the request facts,
//! a replay store (the database, so a proof is refused on every instance: RFC 9449 §11.1) and the
//! rendering of a refusal.

use crate::app::{AppState, Shared};
use crate::config::Config;
use crate::error::OAuthError;
use crate::store::Store;
use crate::tls::PeerCertificate;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fapi_core::cache::{NoRevocations, TokenCache};
use fapi_core::decision::{Decision, Denial, Deny};
use fapi_core::dpop::{Recorded, ReplayStore};
use fapi_core::extract::{credentials, is_uuid, ClientCert, RequestFacts};
use fapi_core::guard::{Context, Guard, KeySource};
use fapi_core::jwks::Jwks;
use fapi_core::policy::Policy;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, PoisonError};

/// The rule of the UserInfo endpoint.
pub const USERINFO_RULE: &str = "userinfo";
/// Lifetime of server-issued DPoP nonces (RFC 9449 §8), seconds: the token endpoint's issuer and the
/// guard's use the same secret and lifetime, so a nonce from either is good at both.
pub const DPOP_NONCE_LIFETIME: u64 = 300;
/// Verified tokens remembered.
const TOKEN_CACHE: usize = 1000;
/// The replay-store namespace of DPoP proofs (shared with the token endpoint: keys are per proof key
/// and `jti`, RFC 9449 §11.1).
const REPLAY_KIND: &str = "dpop";

/// The guard for this server's own access tokens.
pub struct ResourceGuard {
    guard: Guard,
    /// Verified tokens (signature checked once per token).
    cache: Mutex<TokenCache>,
}

/// The policy for this server's own access tokens: one issuer (our `issuer`, the audiences our access
/// tokens carry, FAPI 2.0 §5.4.1 algorithms, `typ` `at+jwt` per RFC 9068 §4, no leeway past `exp`
/// since we issued them on this clock, no lifetime longer than the one we issue), and the UserInfo rule: scope `openid` (OIDC Core §5.3),
/// sender-constrained by mTLS or DPoP (FAPI 2.0 §5.3.2.2). The keys are named by our `/jwks` URL but
/// never fetched: the decision takes them from the prepared set in the server state
/// ([`crate::keys::VerifyingKeys`]: current, next and retired keys).
pub fn policy_document(config: &Config) -> Value {
    json!({
        "version": 1,
        "name": "fapi-as own access tokens",
        "settings": {
            "forward": {},
            "token_cache_size": TOKEN_CACHE,
            "dpop_nonce_lifetime": DPOP_NONCE_LIFETIME,
        },
        "issuers": [{
            "issuer": config.issuer,
            "audiences": config.tokens.audience,
            "algorithms": ["PS256", "ES256", "EdDSA"],
            "require_typ": true,
            "leeway_past": 0,
            // No token of ours lives longer than we issue them.
            "max_lifetime": config.tokens.access_token_lifetime,
            "jwks": {
                "uri": format!("{}/jwks", config.issuer.trim_end_matches('/')),
                "cluster": "fapi-as server state",
            },
        }],
        "rules": [{
            "name": USERINFO_RULE,
            "match": { "prefix": "/userinfo" },
            "require": { "scopes": ["openid"], "sender_constraint": "either" },
        }],
    })
}

impl ResourceGuard {
    /// `nonce_secret`: the DPoP nonce key of `AppState::nonces`.
    pub fn new(config: &Config, nonce_secret: &[u8]) -> anyhow::Result<Self> {
        let (policy, warnings) = Policy::from_value(policy_document(config)).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("userinfo token policy: {}", list.join("; "))
        })?;
        for w in warnings {
            tracing::warn!(problem = %w, "userinfo token policy");
        }
        Ok(ResourceGuard {
            guard: Guard::new(policy, Some(nonce_secret)),
            cache: Mutex::new(TokenCache::new(TOKEN_CACHE)),
        })
    }

    /// The decision, on this thread: blocks on the database when a DPoP proof must be recorded, so
    /// it runs on a blocking thread (see [`decide`]).
    fn decide_blocking(&self, state: &AppState, facts: &RequestFacts, now: i64) -> Decision {
        let store = &state.store;
        let keys = OwnKeys {
            issuer: &state.config.issuer,
            keys: state.verifying_keys.current(),
        };
        let mut replay = StoreReplay {
            store,
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ctx = Context {
            keys: &keys,
            cache: &mut cache,
            replay: &mut replay,
            // Revocation is looked up in the database after the decision (asynchronously).
            revocations: &NoRevocations,
            revocation_feed_current: true,
            now,
        };
        self.guard.decide(facts, &mut ctx)
    }

    /// A refusal of an otherwise admitted request, rendered as the guard renders its own (the
    /// scheme the token came with decides the challenge).
    pub fn refuse(&self, denial: Denial, facts: &RequestFacts, client_id: Option<String>) -> Response {
        let scheme = credentials(facts).ok().flatten().map(|(s, _)| s);
        match self.guard.refuse(USERINFO_RULE, denial, scheme, client_id) {
            Decision::Deny(d) => deny_response(&d),
            Decision::Allow(_) => OAuthError::server("refusal rendered as an admission").into_response(),
        }
    }
}

/// Decides on a request with the state's guard. The guard is synchronous and its replay store
/// writes to the database, so the decision runs on a blocking thread, where waiting on the
/// runtime is allowed whatever its flavor.
pub async fn decide(state: &Shared, facts: &RequestFacts, now: i64) -> Result<Decision, OAuthError> {
    let (s, facts) = (state.clone(), facts.clone());
    tokio::task::spawn_blocking(move || s.resource.decide_blocking(&s, &facts, now))
        .await
        .map_err(OAuthError::server)
}

/// Our issuer's keys: the prepared set of the server state, as it was when the decision began.
struct OwnKeys<'a> {
    issuer: &'a str,
    keys: Arc<Jwks>,
}

impl KeySource for OwnKeys<'_> {
    fn keys(&self, issuer: &str) -> Option<&Jwks> {
        (issuer == self.issuer).then_some(&*self.keys)
    }
}

/// RFC 9449 §11.1 replay detection in the shared database.
struct StoreReplay<'a> {
    store: &'a Store,
    runtime: Option<tokio::runtime::Handle>,
}

impl ReplayStore for StoreReplay<'_> {
    fn record(&mut self, key: &[u8; 32], remember_until: i64, _now: i64) -> Recorded {
        // No runtime, or a database failure: the proof cannot be checked, so it is refused.
        let Some(rt) = &self.runtime else {
            return Recorded::Full;
        };
        let key = fapi_core::b64::encode(key);
        match rt.block_on(self.store.remember_jti(REPLAY_KIND, &key, remember_until)) {
            Ok(true) => Recorded::Fresh,
            Ok(false) => Recorded::Replayed,
            Err(e) => {
                tracing::warn!(error = %e, "DPoP replay store");
                Recorded::Full
            }
        }
    }
}

/// The facts of a request for the guard. The scheme and authority are those of the listener the
/// client called as configured (`issuer` or `mtls_base`, told apart as for the token endpoint), so a
/// DPoP `htu` is compared with our own URL, never with a `Host` header alone; the path and query are
/// the request's.
pub fn request_facts(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: &PeerCertificate,
) -> RequestFacts {
    let url = crate::backchannel::support::endpoint_url(state, headers, peer, "/");
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url.as_str()));
    let authority = rest.split('/').next().unwrap_or_default();
    let all = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    RequestFacts {
        method: method.as_str().to_string(),
        scheme: scheme.to_string(),
        authority: authority.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| uri.path().to_string()),
        authorization: all(header::AUTHORIZATION.as_str()),
        dpop: all("dpop"),
        client_cert: peer.0.as_ref().map(|der| ClientCert::Der(der.to_vec())),
        interaction_id: headers
            .get("x-fapi-interaction-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_uuid(v))
            .map(str::to_string),
    }
}

/// A refusal as the Envoy plugin sends it: the status, every `WWW-Authenticate` challenge (RFC 6750
/// §3, RFC 9449 §7.1), the JSON body, `DPoP-Nonce` when one is issued (RFC 9449 §9), and
/// `Cache-Control: no-store`.
pub fn deny_response(deny: &Deny) -> Response {
    let status = StatusCode::from_u16(deny.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut r = (status, deny.body.clone()).into_response();
    let h = r.headers_mut();
    for c in &deny.www_authenticate {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::WWW_AUTHENTICATE, v);
        }
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(n) = deny
        .dpop_nonce
        .as_deref()
        .and_then(|n| HeaderValue::from_str(n).ok())
    {
        h.insert(HeaderName::from_static("dpop-nonce"), n);
    }
    r
}
