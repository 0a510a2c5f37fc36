//! Application state and the router: every endpoint is mounted here, served on both TLS listeners
//! (the mTLS listener adds the client certificate to each request as [`crate::tls::PeerCertificate`]).

use crate::config::Config;
use crate::keys::Keys;
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use fapi_core::dpop::NonceIssuer;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct AppState {
    pub config: Config,
    pub store: Store,
    /// The signing keys; swapped with `verifying_keys` by [`AppState::reload_keys`].
    pub keys: crate::keys::SigningKeys,
    /// The public side of `keys`, prepared for verifying our own tokens; swapped when keys are loaded.
    pub verifying_keys: crate::keys::VerifyingKeys,
    /// DPoP nonces (RFC 9449 §8): stateless, so any instance sharing the key folder validates them.
    pub nonces: NonceIssuer,
    /// fapi-core's guard for our own access tokens at UserInfo (same nonce key as `nonces`).
    pub resource: crate::resource::ResourceGuard,
    /// Keys of clients registered with a `jwks_uri` (fetched and cached).
    pub client_jwks: crate::client_jwks::ClientJwks,
    pub metrics: Metrics,
    /// The one clock every expiry reads (src/clock.rs); tests move a manual one.
    pub clock: crate::clock::Clock,
    /// The one random source (src/random.rs): every draw can fail, and then nothing is issued.
    pub random: crate::random::Random,
    /// Password hashing off the executor, bounded (`login.password_hash_concurrency`).
    pub passwords: crate::password::Hasher,
}

impl AppState {
    /// The state of one server: what is derived from the configuration and keys (the verifying key
    /// set, the UserInfo guard, DPoP nonces from `nonce_secret`, the client key cache, the password
    /// hasher) is built here, once, for `serve` and the tests alike.
    pub fn new(
        config: Config,
        store: Store,
        keys: Keys,
        nonce_secret: &[u8],
        clock: crate::clock::Clock,
        random: crate::random::Random,
    ) -> anyhow::Result<Self> {
        Ok(AppState {
            verifying_keys: crate::keys::VerifyingKeys::new(&keys)?,
            nonces: NonceIssuer::new(nonce_secret, crate::resource::DPOP_NONCE_LIFETIME),
            resource: crate::resource::ResourceGuard::new(&config, nonce_secret)?,
            client_jwks: crate::client_jwks::ClientJwks::new(&config.registration, clock.clone())?,
            passwords: crate::password::Hasher::new(config.login.password_hash_concurrency),
            metrics: Metrics::default(),
            config,
            store,
            keys: crate::keys::SigningKeys::new(keys),
            clock,
            random,
        })
    }

    /// Loads the key folder again (after `fapi-as rotate-keys`) and swaps in its keys: the verifying
    /// set first, then the signing keys, so a token signed by the new current key always verifies and
    /// tokens of the retired key keep verifying until they expire. On an error nothing changes.
    pub fn reload_keys(&self) -> anyhow::Result<()> {
        let keys = Keys::load_or_create(&self.config.keys.dir, &self.config.keys.alg)?;
        self.verifying_keys.replace(&keys)?;
        self.keys.replace(keys);
        Ok(())
    }
}

pub type Shared = Arc<AppState>;

/// Prometheus counters: requests by endpoint and outcome.
#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(String, String), u64>>,
    pub started: AtomicU64,
    /// Connection figures of the listeners (src/serve.rs): browser-facing TLS, mTLS, health.
    pub https: Arc<crate::serve::ConnStats>,
    pub mtls: Arc<crate::serve::ConnStats>,
    pub health: Arc<crate::serve::ConnStats>,
}

impl Metrics {
    pub fn count(&self, endpoint: &str, outcome: &str) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry((endpoint.to_string(), outcome.to_string())).or_insert(0) += 1;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# HELP fapi_as_requests_total Requests by endpoint and outcome.\n# TYPE fapi_as_requests_total counter\n");
        if let Ok(c) = self.counters.lock() {
            for ((endpoint, outcome), n) in c.iter() {
                out.push_str(&format!(
                    "fapi_as_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} {n}\n"
                ));
            }
        }
        out.push_str(&format!(
            "# TYPE fapi_as_start_time_seconds gauge\nfapi_as_start_time_seconds {}\n",
            self.started.load(Ordering::Relaxed)
        ));
        let listeners = [
            ("https", &self.https),
            ("mtls", &self.mtls),
            ("http", &self.health),
        ];
        out.push_str("# HELP fapi_as_connections_open Connections open now, by listener.\n# TYPE fapi_as_connections_open gauge\n");
        for (l, s) in listeners {
            out.push_str(&format!(
                "fapi_as_connections_open{{listener=\"{l}\"}} {}\n",
                s.open()
            ));
        }
        out.push_str("# HELP fapi_as_connections_refused_total Connections closed at accept: listener at its cap.\n# TYPE fapi_as_connections_refused_total counter\n");
        for (l, s) in listeners {
            out.push_str(&format!(
                "fapi_as_connections_refused_total{{listener=\"{l}\"}} {}\n",
                s.refused()
            ));
        }
        out.push_str("# HELP fapi_as_accept_errors_total Failed accept calls (e.g. out of file descriptors).\n# TYPE fapi_as_accept_errors_total counter\n");
        for (l, s) in listeners {
            out.push_str(&format!(
                "fapi_as_accept_errors_total{{listener=\"{l}\"}} {}\n",
                s.accept_errors()
            ));
        }
        out
    }
}

/// The TLS router (both listeners).
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(crate::frontchannel::routes())
        .merge(crate::backchannel::routes())
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/oauth-authorization-server", get(discovery))
        .route("/jwks", get(jwks))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
}

/// The plain-HTTP router: health only.
pub fn health_router() -> Router {
    Router::new().route("/health", get(health))
}

async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn jwks(State(s): State<Shared>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "max-age=300")],
        Json(s.keys.get().jwks()),
    )
}

pub const ACR_PASSWORD: &str = "urn:bank:acr:password";
pub const ACR_TOTP: &str = "urn:bank:acr:totp";
pub const ACR_PASSKEY: &str = "urn:bank:acr:passkey";

/// RFC 8414 / OpenID Connect Discovery metadata, with RFC 8705 §5 mtls_endpoint_aliases and RFC 9449
/// §5.1 dpop_signing_alg_values_supported.
pub fn metadata(c: &Config) -> serde_json::Value {
    let i = c.issuer.trim_end_matches('/');
    let m = c.mtls_base.trim_end_matches('/');
    let algs = json!(["PS256", "ES256", "EdDSA"]);
    json!({
        "issuer": c.issuer,
        "authorization_endpoint": format!("{i}/authorize"),
        "pushed_authorization_request_endpoint": format!("{i}/par"),
        "require_pushed_authorization_requests": true,
        "token_endpoint": format!("{i}/token"),
        "revocation_endpoint": format!("{i}/revoke"),
        "introspection_endpoint": format!("{i}/introspect"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "registration_endpoint": format!("{i}/register"),
        // fapi-guard's revocation feed (src/backchannel/feed.rs), polled by the Envoy plugin.
        "revocation_feed_endpoint": format!("{i}/revocations"),
        "jwks_uri": format!("{i}/jwks"),
        "mtls_endpoint_aliases": {
            "pushed_authorization_request_endpoint": format!("{m}/par"),
            "token_endpoint": format!("{m}/token"),
            "revocation_endpoint": format!("{m}/revoke"),
            "introspection_endpoint": format!("{m}/introspect"),
            "userinfo_endpoint": format!("{m}/userinfo"),
        },
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "jwt"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth"],
        "introspection_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "dpop_signing_alg_values_supported": algs,
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
        "request_object_signing_alg_values_supported": algs,
        // JARM responses are signed by the current key only (registration refuses another alg).
        "authorization_signing_alg_values_supported": [c.keys.alg],
        "authorization_encryption_alg_values_supported": crate::jwe::ALG_VALUES,
        "authorization_encryption_enc_values_supported": crate::jwe::ENC_VALUES,
        "id_token_signing_alg_values_supported": algs,
        "introspection_signing_alg_values_supported": algs,
        "id_token_encryption_alg_values_supported": ["ECDH-ES"],
        "id_token_encryption_enc_values_supported": ["A256GCM"],
        "userinfo_signing_alg_values_supported": algs,
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "accounts", "payments", "offline_access"],
        "claims_supported": ["sub", "acr", "amr", "auth_time", "name", "iss", "aud", "exp", "iat", "nonce"],
        "acr_values_supported": [ACR_PASSWORD, ACR_TOTP, ACR_PASSKEY],
        "claims_parameter_supported": false,
        "ui_locales_supported": ["ja", "en"],
        // RFC 9396 §10.
        "authorization_details_types_supported": crate::authorization_details::SUPPORTED_TYPES,
    })
}

async fn discovery(State(s): State<Shared>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "max-age=300")],
        Json(metadata(&s.config)),
    )
}
