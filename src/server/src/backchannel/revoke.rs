//! Token revocation (RFC 7009) and introspection (RFC 7662, with the signed JWT answer of RFC 9701).
//!
//! Both endpoints authenticate the client as the token endpoint does. Revocation:
//! - an access token (a JWT this server signed) is revoked by its `jti`; it then appears on the
//!   revocation feed the Envoy plugin polls;
//! - a refresh token revokes its grant: the refresh token and every access token issued under the
//!   grant (RFC 7009 §2.1 allows it; the grant is the client's consent, which ends with it);
//! - unknown, expired or malformed tokens are answered 200 as well (RFC 7009 §2.2); a token issued to
//!   another client is refused with `unauthorized_client` (RFC 7009 §2.1: "the request is refused").
//!
//! Introspection answers `active: false` for anything unknown, expired, revoked, or issued to another
//! client. Resource servers that are not OAuth clients (the Envoy plugin in introspection mode) may
//! call it with `Authorization: Bearer <feed token>`, the credential of the revocation feed; they
//! see every token of this issuer.

use super::support::{bearer, credential_eq, hashed, no_store, params, verify_own, FormBody, MAX_TOKEN};
use super::token::RefreshData;
use crate::app::{AppState, Shared};
use crate::client_auth;
use crate::error::{OAuthError, Result};
use crate::tls::PeerCertificate;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// `POST /revoke`.
pub async fn revoke(State(state): State<Shared>, peer: PeerCertificate, form: FormBody) -> Response {
    let result: Result<()> = async {
        let p = params(form)?;
        revoke_token(&state, &p, &peer, state.clock.now()).await
    }
    .await;
    match result {
        Ok(()) => {
            state.metrics.count("revoke", "ok");
            no_store(StatusCode::OK, json!({}), None)
        }
        Err(e) => {
            state.metrics.count("revoke", e.error);
            e.into_response()
        }
    }
}

/// RFC 7009 §2.1, for a request already read.
pub async fn revoke_token(
    state: &AppState,
    p: &HashMap<String, String>,
    peer: &PeerCertificate,
    now: i64,
) -> Result<()> {
    let auth = client_auth::authenticate(state, p, peer).await?;
    let client_id = auth.client.client_id.as_str();
    let token = p
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    if token.len() > MAX_TOKEN {
        return Ok(());
    }
    let not_yours = || OAuthError::unauthorized_client("the token was not issued to this client");
    // token_type_hint only orders the look-ups (RFC 7009 §2.1); both kinds are tried.
    if let Some(verified) = verify_own(state, token, "at+jwt", now) {
        let Some(jti) = verified.claim_str("jti") else {
            return Ok(());
        };
        if let Some((owner, _, _, _)) = state.store.access_token::<Value>(jti).await? {
            if owner != client_id {
                return Err(not_yours());
            }
            state.store.revoke_access_token(jti, state.clock.now_ms()).await?;
        }
        return Ok(());
    }
    if let Some((grant_id, owner, _)) = state.store.refresh::<RefreshData>(&hashed(token), now).await? {
        if owner != client_id {
            return Err(not_yours());
        }
        state.store.revoke_grant(&grant_id, state.clock.now_ms()).await?;
    }
    Ok(())
}

/// Who asks for an introspection.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspector {
    /// An authenticated client: it sees only its own tokens.
    Client(String),
    /// A resource server holding the feed credential: it sees every token.
    ResourceServer,
}

/// `POST /introspect`.
pub async fn introspect(
    State(state): State<Shared>,
    peer: PeerCertificate,
    headers: HeaderMap,
    form: FormBody,
) -> Response {
    let result: Result<Response> = async {
        let p = params(form)?;
        let who = match (bearer(&headers), state.config.feed.token.as_deref()) {
            (Some(presented), Some(expected)) if credential_eq(presented, expected) => {
                Introspector::ResourceServer
            }
            (Some(_), _) => return Err(OAuthError::invalid_client("unknown resource server credential")),
            (None, _) => Introspector::Client(
                client_auth::authenticate(&state, &p, &peer)
                    .await?
                    .client
                    .client_id,
            ),
        };
        let token = p
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
        let t = state.clock.now();
        let answer = introspection(&state, token, &who, t).await?;
        let wants_jwt = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|m| m.trim().split(';').next() == Some("application/token-introspection+jwt"))
            });
        if !wants_jwt {
            return Ok(no_store(StatusCode::OK, answer, None));
        }
        let jwt = signed_introspection(&state, &who, answer, t)?;
        let mut r = (StatusCode::OK, jwt).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/token-introspection+jwt"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    }
    .await;
    match result {
        Ok(r) => {
            state.metrics.count("introspect", "ok");
            r
        }
        Err(e) => {
            state.metrics.count("introspect", e.error);
            e.into_response()
        }
    }
}

/// RFC 7662 §2.2 for an access token of ours (signature valid, recorded, not expired, not revoked)
/// or a live refresh token; `{"active": false}` otherwise.
pub async fn introspection(state: &AppState, token: &str, who: &Introspector, now: i64) -> Result<Value> {
    let inactive = json!({ "active": false });
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Ok(inactive);
    }
    let may_see = |owner: &str| match who {
        Introspector::ResourceServer => true,
        Introspector::Client(c) => c == owner,
    };
    // The token's own exp is checked by the validator (no leeway: we issued it on this clock).
    if let Some(verified) = verify_own(state, token, "at+jwt", now) {
        let claims = &verified.claims;
        let Some(jti) = verified.claim_str("jti") else {
            return Ok(inactive);
        };
        let Some((owner, _, _, revoked)) = state.store.access_token::<Value>(jti).await? else {
            return Ok(inactive);
        };
        if revoked || !may_see(&owner) {
            return Ok(inactive);
        }
        let mut out = Map::new();
        out.insert("active".into(), json!(true));
        for name in [
            "scope",
            "client_id",
            "sub",
            "exp",
            "iat",
            "nbf",
            "iss",
            "aud",
            "jti",
            "cnf",
            "acr",
            "amr",
            "auth_time",
            // RFC 9396 §9.2.
            "authorization_details",
        ] {
            if let Some(v) = claims.get(name) {
                out.insert(name.into(), v.clone());
            }
        }
        let dpop = claims.get("cnf").and_then(|c| c.get("jkt")).is_some();
        out.insert("token_type".into(), json!(if dpop { "DPoP" } else { "Bearer" }));
        return Ok(Value::Object(out));
    }
    if let Some((grant_id, owner, data)) = state
        .store
        .refresh::<RefreshData>(&super::support::hashed(token), now)
        .await?
    {
        let live = state.store.grant(&grant_id).await?.is_some_and(|g| !g.revoked);
        if !live || !may_see(&owner) {
            return Ok(inactive);
        }
        let details = state.store.grant_details(&grant_id).await?;
        let mut out = json!({
            "active": true,
            "token_type": "refresh_token",
            "scope": data.scope,
            "client_id": owner,
            "sub": data.user.user_id,
            "iss": state.config.issuer,
            "exp": data.exp,
            "iat": data.iat,
            "acr": data.user.acr,
            "auth_time": data.user.auth_time,
        });
        if let Some(d) = details {
            // RFC 9396 §9.2: what the refresh token's access tokens will carry.
            out["authorization_details"] = json!(d);
        }
        if let Some(x) = data.x5t_s256 {
            out["cnf"] = json!({ "x5t#S256": x });
        } else if let Some(j) = data.jkt {
            out["cnf"] = json!({ "jkt": j });
        }
        return Ok(out);
    }
    Ok(inactive)
}

/// RFC 9701 §5: `{iss, aud, iat, token_introspection}` signed, `typ: token-introspection+jwt`.
fn signed_introspection(state: &AppState, who: &Introspector, answer: Value, now: i64) -> Result<String> {
    let aud = match who {
        Introspector::Client(c) => json!(c),
        Introspector::ResourceServer => json!(state.config.tokens.audience),
    };
    let claims = json!({
        "iss": state.config.issuer,
        "aud": aud,
        "iat": now,
        "token_introspection": answer,
    });
    state
        .keys
        .get()
        .current
        .sign_jwt(Some("token-introspection+jwt"), &claims)
        .map_err(OAuthError::server)
}
