//! The UserInfo endpoint (OIDC Core §5.3), for the sender-constrained access tokens this server
//! issues. Every token check is fapi-core's, through [`crate::resource`]: the token in the header
//! only (RFC 6750 §2.1, RFC 9449 §7.1; FAPI 2.0 §5.3.4), our signature and claims (RFC 9068), the
//! holder's binding — the TLS client certificate of `cnf.x5t#S256` (RFC 8705 §3) or a DPoP proof by
//! the key of `cnf.jkt` with `ath` (RFC 9449 §4.3, §7.1), its `jti` recorded in the database — and
//! scope `openid`. Nonces are not required here (RFC 9449 §9 leaves it to the resource server), but
//! a nonce that is sent must be valid. Then revocation (FAPI 2.0 §5.3.2.2) is looked up by `jti`.

use crate::app::Shared;
use crate::error::OAuthError;
use crate::resource::{decide, deny_response, request_facts};
use crate::tls::PeerCertificate;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fapi_core::decision::{Decision, Denial};
use serde_json::{json, Value};

/// `GET` or `POST /userinfo`.
pub async fn userinfo(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    peer: PeerCertificate,
    headers: HeaderMap,
) -> Response {
    let facts = request_facts(&state, &method, &uri, &headers, &peer);
    let allow = match decide(&state, &facts, state.clock.now()).await {
        Ok(Decision::Allow(a)) => a,
        Ok(Decision::Deny(d)) => {
            state.metrics.count("userinfo", d.reason());
            return deny_response(&d);
        }
        Err(e) => return e.into_response(),
    };
    let claims = allow.claims;
    let refuse = |denial: Denial| {
        state.metrics.count("userinfo", denial.reason());
        state.resource.refuse(denial, &facts, claims.client_id.clone())
    };
    // Revocation (RFC 7009) and tokens this server has no record of.
    let Some(jti) = claims.jti.as_deref() else {
        return refuse(Denial::MissingClaim("jti"));
    };
    match state.store.access_token::<Value>(jti).await {
        Ok(Some((_, _, _, false))) => {}
        Ok(Some(_)) => return refuse(Denial::Revoked),
        Ok(None) => return refuse(Denial::Inactive),
        Err(e) => return OAuthError::from(e).into_response(),
    }
    let Some(sub) = claims.sub.as_deref() else {
        return refuse(Denial::MissingClaim("sub"));
    };
    let user = match state.store.user(sub).await {
        Ok(Some(u)) => u,
        Ok(None) => return refuse(Denial::Inactive),
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
