//! The UserInfo endpoint (OIDC Core §5.3), for the sender-constrained access tokens this server
//! issues: the token (RFC 6750 §2.1 header, or RFC 9449 §7.1 `DPoP` scheme; never in the query or
//! body, FAPI 2.0 §5.3.3) must carry our signature, be unexpired, unrevoked, hold scope `openid`,
//! and be presented by its holder: the TLS client certificate of `cnf.x5t#S256` (RFC 8705 §3) or a
//! DPoP proof by the key of `cnf.jkt` with `ath` (RFC 9449 §4.3, §7.1). Nonces are not required
//! here (RFC 9449 §9 leaves it to the resource server), but a nonce that is sent must be valid.

use super::support::{check_dpop, dpop_headers, endpoint_url, record_proof, scopes, verify_own};
use crate::app::{now, Shared};
use crate::error::OAuthError;
use crate::tls::PeerCertificate;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use fapi_core::binding::{constant_time_eq, CertThumbprint};
use serde_json::{json, Value};

/// RFC 6750 §3 / RFC 9449 §7.1 challenge.
fn challenge(scheme: &str, status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    let value = if scheme == "DPoP" {
        format!("DPoP error=\"{error}\", algs=\"ES256 PS256 EdDSA\"")
    } else {
        format!("Bearer error=\"{error}\"")
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `GET` or `POST /userinfo`.
pub async fn userinfo(
    State(state): State<Shared>,
    method: Method,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|Extension(p)| p).unwrap_or_default();
    let t = now();
    let mut auth = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (auth.next(), auth.next()) else {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("DPoP algs=\"ES256 PS256 EdDSA\", Bearer"),
        );
        return r;
    };
    let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return challenge(
            "Bearer",
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed Authorization header",
        );
    };
    let scheme = if scheme.eq_ignore_ascii_case("dpop") {
        "DPoP"
    } else if scheme.eq_ignore_ascii_case("bearer") {
        "Bearer"
    } else {
        return challenge(
            "Bearer",
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unsupported authorization scheme",
        );
    };
    let token = token.trim();
    let invalid = |d: &str| challenge(scheme, StatusCode::UNAUTHORIZED, "invalid_token", d);
    let Some(claims) = verify_own(&state, token, "at+jwt") else {
        return invalid("not an access token of this issuer");
    };
    if claims.get("exp").and_then(Value::as_i64).is_none_or(|e| e <= t) {
        return invalid("the access token has expired");
    }
    let Some(jti) = claims.get("jti").and_then(Value::as_str) else {
        return invalid("no jti");
    };
    match state.store.access_token::<Value>(jti).await {
        Ok(Some((_, _, _, false))) => {}
        Ok(_) => return invalid("the access token has been revoked"),
        Err(e) => return OAuthError::from(e).into_response(),
    }
    // Sender constraint.
    let cnf = claims.get("cnf");
    if let Some(jkt) = cnf.and_then(|c| c.get("jkt")).and_then(Value::as_str) {
        if scheme != "DPoP" {
            return invalid("a DPoP-bound token must be sent with the DPoP scheme");
        }
        let htu = endpoint_url(&state, &headers, &peer, "/userinfo");
        let proofs = dpop_headers(&headers);
        let proof = match check_dpop(&state, &proofs, method.as_str(), &htu, Some(token), false, t) {
            Ok(p) => p,
            Err(e) if e.error == "use_dpop_nonce" => {
                let mut r = challenge(
                    "DPoP",
                    StatusCode::UNAUTHORIZED,
                    "use_dpop_nonce",
                    "a DPoP nonce is required",
                );
                if let Some(n) = e.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
                    r.headers_mut().insert("dpop-nonce", n);
                }
                return r;
            }
            Err(e) => {
                return challenge(
                    "DPoP",
                    StatusCode::UNAUTHORIZED,
                    "invalid_dpop_proof",
                    &e.description,
                )
            }
        };
        if !constant_time_eq(proof.jkt.as_bytes(), jkt.as_bytes()) {
            return challenge(
                "DPoP",
                StatusCode::UNAUTHORIZED,
                "invalid_dpop_proof",
                "the DPoP proof key does not match the token binding",
            );
        }
        if let Err(e) = record_proof(&state, &proof).await {
            return challenge(
                "DPoP",
                StatusCode::UNAUTHORIZED,
                "invalid_dpop_proof",
                &e.description,
            );
        }
    } else if let Some(x5t) = cnf.and_then(|c| c.get("x5t#S256")).and_then(Value::as_str) {
        let Some(der) = peer.0.as_ref() else {
            return invalid(
                "the token is certificate-bound: call the mTLS alias with the client certificate",
            );
        };
        if !constant_time_eq(
            CertThumbprint::from_der(der).to_b64url().as_bytes(),
            x5t.as_bytes(),
        ) {
            return invalid("the token is bound to another client certificate");
        }
    } else {
        return invalid("the token is not sender-constrained");
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if !scopes(scope).contains(&"openid") {
        return challenge(
            scheme,
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "userinfo needs scope openid",
        );
    }
    let Some(sub) = claims.get("sub").and_then(Value::as_str) else {
        return invalid("no sub");
    };
    let user = match state.store.user(sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return invalid("the user no longer exists"),
        Err(e) => return OAuthError::from(e).into_response(),
    };
    state.metrics.count("userinfo", "ok");
    let mut r =
        Json(json!({ "sub": user.user_id, "name": user.display_name, "preferred_username": user.username }))
            .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
