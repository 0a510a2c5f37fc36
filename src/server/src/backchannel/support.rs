//! Helpers shared by the back-channel endpoints: form parameters (RFC 6749 §3.1), the URL a request
//! was sent to (for DPoP `htu`, RFC 9449 §4.3), DPoP proof checks with server nonces and replay
//! detection, verification of the JWTs this server signed, constant-time credential comparison.

use crate::app::AppState;
use crate::error::{OAuthError, Result};
use crate::tls::PeerCertificate;
use axum::extract::rejection::FormRejection;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use fapi_core::decision::Denial;
use fapi_core::dpop::{check_proof, DpopRules, ProofContext, ValidProof};
use fapi_core::verify::{Validation, Verified};
use serde_json::Value;
use std::collections::HashMap;

/// Most parameters accepted in one form body.
const MAX_PARAMS: usize = 32;
/// Longest parameter value (a client assertion with an RSA key fits easily).
const MAX_VALUE: usize = 16 * 1024;
/// Longest token accepted for verification, revocation or introspection.
pub const MAX_TOKEN: usize = 16 * 1024;

/// The body of a form-encoded request.
pub type FormBody = std::result::Result<Form<Vec<(String, String)>>, FormRejection>;

/// Form parameters, each at most once (RFC 6749 §3.1: "parameters MUST NOT be included more than
/// once"), bounded in number and length.
pub fn params(form: FormBody) -> Result<HashMap<String, String>> {
    let Form(pairs) = form.map_err(crate::error::form_rejected)?;
    if pairs.len() > MAX_PARAMS {
        return Err(OAuthError::invalid_request("too many parameters"));
    }
    let mut out = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if v.len() > MAX_VALUE || k.len() > 64 {
            return Err(OAuthError::invalid_request("parameter too long"));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {} given more than once",
                sanitize(&k)
            )));
        }
    }
    Ok(out)
}

/// A parameter name safe to echo in an error description.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

/// `scheme://authority` of a base URL, normalized (for comparison with a Host header).
fn origin(base: &str) -> Option<String> {
    let (scheme, rest) = base.split_once("://")?;
    let authority = rest.split('/').next()?;
    fapi_core::uri::normalize(&format!("{scheme}://{authority}/"))
}

/// The URL of `path` on the listener the request came to, as the client called it: the `Host`
/// header tells the browser-facing listener (`issuer`) from the mTLS one (`mtls_base`); when it
/// matches neither, or both, the presence of a client certificate decides (only the mTLS listener
/// asks for one). Normalized per RFC 3986 §6 (fapi_core::uri) for DPoP `htu` comparison.
pub fn endpoint_url(state: &AppState, headers: &HeaderMap, peer: &PeerCertificate, path: &str) -> String {
    let c = &state.config;
    let issuer = c.issuer.trim_end_matches('/');
    let mtls = c.mtls_base.trim_end_matches('/');
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| fapi_core::uri::normalize(&format!("https://{h}/")));
    let is_issuer = host.is_some() && host == origin(issuer);
    let is_mtls = host.is_some() && host == origin(mtls);
    let base = match (is_issuer, is_mtls) {
        (true, false) => issuer,
        (false, true) => mtls,
        _ if peer.0.is_some() => mtls,
        _ => issuer,
    };
    let url = format!("{base}{path}");
    fapi_core::uri::normalize(&url).unwrap_or(url)
}

/// The values of every `DPoP` header (RFC 9449 §4.3 step 1 wants exactly one; check_proof counts).
pub fn dpop_headers(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all("dpop")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect()
}

/// Checks a DPoP proof (RFC 9449 §4.3) for `method` `htu`: signature, typ, alg, jwk, htm, htu, iat,
/// `ath` when `access_token` is given, and the server nonce (§8: `require_nonce` makes a proof
/// without a valid nonce answer `use_dpop_nonce` with a fresh one). The `jti` is not recorded here:
/// call [`record_proof`] once the request is otherwise acceptable.
pub fn check_dpop(
    state: &AppState,
    proofs: &[&str],
    method: &str,
    htu: &str,
    access_token: Option<&str>,
    require_nonce: bool,
    now: i64,
) -> Result<ValidProof> {
    let rules = DpopRules {
        require_nonce,
        ..DpopRules::default()
    };
    let ctx = ProofContext {
        method,
        htu,
        access_token,
    };
    check_proof(proofs, &ctx, &rules, Some(&state.nonces), now).map_err(|d| match d {
        Denial::UseDpopNonce => OAuthError::use_dpop_nonce(state.nonces.issue(now)),
        other => OAuthError::invalid_dpop_proof(other.description()),
    })
}

/// Records the proof's `jti` (per key: RFC 9449 §11.1) in the shared store, so a replay is refused
/// on every instance.
pub async fn record_proof(state: &AppState, proof: &ValidProof) -> Result<()> {
    let key = fapi_core::b64::encode(proof.replay_key);
    if !state
        .store
        .remember_jti("dpop", &key, proof.remember_until)
        .await?
    {
        return Err(OAuthError::invalid_dpop_proof(
            "the DPoP proof has been used before",
        ));
    }
    Ok(())
}

/// Verifies a JWT this server signed (current, next or retired key) with fapi-core's validator
/// ([`Validation::own_token`]: FAPI algorithms, RFC 8725 header rules, `typ` equal to `typ` — RFC 9068
/// §4 for access tokens —, `iss` our issuer, `aud` our audiences, `exp` not passed, no longer-lived
/// than the tokens we issue) and the prepared key set of the server
/// state. Revocation is the caller's business. `None` for anything else: callers treat unknown tokens
/// alike (RFC 7009 §2.2, RFC 7662 §2.2).
pub fn verify_own(state: &AppState, token: &str, typ: &'static str, now: i64) -> Option<Verified> {
    let tokens = &state.config.tokens;
    let validation = Validation::own_token(
        &state.config.issuer,
        typ,
        tokens.audience.clone(),
        tokens.access_token_lifetime,
    );
    validation
        .verify(token, &state.verifying_keys.current(), now)
        .map_err(|d| tracing::debug!(reason = d.reason(), "not one of our valid tokens"))
        .ok()
}

/// Compares a presented credential with the expected one in constant time (over their SHA-256, so
/// lengths leak nothing either).
pub fn credential_eq(presented: &str, expected: &str) -> bool {
    fapi_core::binding::constant_time_eq(
        &fapi_core::b64::sha256(presented),
        &fapi_core::b64::sha256(expected),
    )
}

/// The credential of `Authorization: Bearer <credential>` (one header only).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let value = all.next()?.to_str().ok()?;
    if all.next().is_some() {
        return None;
    }
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// A JSON answer that must not be cached (RFC 6749 §5.1: token responses; the same for
/// introspection and registration answers that carry credentials).
pub fn no_store(status: axum::http::StatusCode, body: Value, dpop_nonce: Option<String>) -> Response {
    let mut resp = (status, Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(n) = dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        h.insert("dpop-nonce", n);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("DPoP-Nonce"),
        );
    }
    resp
}

/// base64url(SHA-256(value)): how codes and refresh tokens are stored (never in the clear).
pub fn hashed(value: &str) -> String {
    fapi_core::b64::sha256_b64(value)
}

/// Space-separated scope values.
pub fn scopes(s: &str) -> Vec<&str> {
    s.split(' ').filter(|x| !x.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_and_bearer() {
        assert_eq!(
            origin("https://AS.example:443/x").as_deref(),
            Some("https://as.example/")
        );
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer def"));
        assert_eq!(bearer(&h), None);
        assert!(credential_eq("a", "a"));
        assert!(!credential_eq("a", "ab"));
    }
}
