//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592), behind the
//! initial access token of `registration.initial_access_token` (RFC 7591 §3; none configured: the
//! endpoint does not exist, 404).
//!
//! What a FAPI client may register (anything else is `invalid_client_metadata` or
//! `invalid_redirect_uri`, RFC 7591 §3.2.2):
//! - `token_endpoint_auth_method`: private_key_jwt, tls_client_auth or self_signed_tls_client_auth
//!   (FAPI 2.0 §5.3.2.1; required, since RFC 7591's default is a client secret);
//! - the client's keys (required for private_key_jwt and self_signed_tls_client_auth): `jwks` inline,
//!   public keys only, or `jwks_uri` on a host listed in `registration.jwks_uri_hosts`
//!   ([`crate::client_jwks`]), not both (RFC 7591 §2);
//! - `tls_client_auth_subject_dn` for tls_client_auth (RFC 8705 §2.1.2);
//! - `redirect_uris`: absolute https URLs without fragment (required with authorization_code);
//! - `grant_types` among authorization_code, refresh_token, client_credentials; `response_types` code;
//! - the token binding: `dpop_bound_access_tokens: true` (RFC 9449 §5.2) or
//!   `tls_client_certificate_bound_access_tokens: true` (RFC 8705 §3.4, the default); not both, not
//!   neither when one is explicitly false;
//! - `scope` among the scopes this server supports;
//! - `authorization_details_types` (RFC 9396 §10) among the types this server supports
//!   ([`crate::authorization_details::SUPPORTED_TYPES`]); a client without it may not send
//!   `authorization_details`;
//! - `authorization_signed_response_alg` (JARM §3): only the algorithm of the server's current
//!   signing key, since that key signs JARM responses;
//! - `id_token_encrypted_response_alg`/`_enc` (OIDC Registration §2) and
//!   `authorization_encrypted_response_alg`/`_enc` (JARM §3): ECDH-ES with A256GCM or A128GCM
//!   ([`crate::jwe`]), enc named explicitly, and a P-256 key marked for encryption in `jwks`.
//!
//! Unknown metadata is ignored (RFC 7591 §2). The registration access token is returned once and
//! stored hashed, as a store item of kind [`REGISTRATION`] under the client_id that never expires
//! (kept out of ClientMetadata so that every struct literal of it elsewhere stays valid); `GET`,
//! `PUT` and `DELETE /register/{client_id}` need it (RFC 7592 §2).

use super::support::{bearer, credential_eq, hashed, no_store, scopes};
use crate::app::{AppState, Shared};
use crate::error::{OAuthError, Result};
use crate::store::ClientMetadata;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Store item kind: base64url(SHA-256) of a client's registration access token.
pub const REGISTRATION: &str = "client_registration";
const AUTH_METHODS: [&str; 3] = [
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
];
const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];
const SCOPES: [&str; 4] = ["openid", "accounts", "payments", "offline_access"];
const PROFILES: [&str; 3] = ["fapi2", "fapi2-message-signing", "fapi1-advanced"];
/// Largest registration request.
const MAX_BODY: usize = 64 * 1024;

fn bad_metadata(d: impl Into<String>) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_client_metadata", d)
}

fn unauthorized(d: &str) -> Response {
    let mut r = OAuthError::invalid_token(d).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    r
}

fn string_list(v: &Value, name: &str) -> Result<Option<Vec<String>>> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) if items.len() <= 32 => items
            .iter()
            .map(|i| i.as_str().filter(|s| s.len() <= 2048).map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| bad_metadata(format!("{name} must be an array of strings"))),
        Some(_) => Err(bad_metadata(format!("{name} must be an array of strings"))),
    }
}

fn opt_str<'a>(v: &'a Value, name: &str) -> Result<Option<&'a str>> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 2048 => Ok(Some(s)),
        Some(_) => Err(bad_metadata(format!("{name} must be a string"))),
    }
}

fn opt_bool(v: &Value, name: &str) -> Result<Option<bool>> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad_metadata(format!("{name} must be a boolean"))),
    }
}

/// RFC 7591 §2: redirect URIs of a confidential web client, https and exact (no fragment).
fn redirect_ok(uri: &str) -> bool {
    uri.strip_prefix("https://").is_some_and(|rest| {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@')
    }) && !uri.contains('#')
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Validates registration metadata (RFC 7591 §2 names) into a client record for `client_id`.
/// `signing_alg` is the algorithm of the server's current signing key (the only JARM alg it honours).
/// [`validate_with`] for a server that fetches no `jwks_uri` (keys inline only).
pub fn validate(v: &Value, client_id: &str, signing_alg: &str) -> Result<ClientMetadata> {
    validate_with(v, client_id, signing_alg, &|_| {
        Err("jwks_uri is not supported: register the keys inline (jwks)".into())
    })
}

/// The registration `v` as a client, or the RFC 7591 §3.2.2 error; `jwks_uri_ok` says whether a
/// `jwks_uri` may be registered.
pub fn validate_with(
    v: &Value,
    client_id: &str,
    signing_alg: &str,
    jwks_uri_ok: &dyn Fn(&str) -> std::result::Result<(), String>,
) -> Result<ClientMetadata> {
    if !v.is_object() {
        return Err(bad_metadata("the registration request must be a JSON object"));
    }
    let method = opt_str(v, "token_endpoint_auth_method")?
        .ok_or_else(|| bad_metadata("token_endpoint_auth_method is required (private_key_jwt, tls_client_auth or self_signed_tls_client_auth)"))?;
    if !AUTH_METHODS.contains(&method) {
        return Err(bad_metadata("token_endpoint_auth_method must be private_key_jwt, tls_client_auth or self_signed_tls_client_auth (FAPI 2.0 §5.3.2.1)"));
    }
    let grant_types = string_list(v, "grant_types")?
        .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if grant_types.is_empty() || grant_types.iter().any(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(bad_metadata(
            "grant_types may be authorization_code, refresh_token and client_credentials",
        ));
    }
    if let Some(rt) = string_list(v, "response_types")? {
        if rt.iter().any(|r| r != "code") {
            return Err(bad_metadata("response_types may only be code"));
        }
    }
    let redirect_uris = string_list(v, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.iter().any(|u| !redirect_ok(u)) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "redirect_uris must be https URLs without fragment",
        ));
    }
    if grant_types.iter().any(|g| g == "authorization_code") && redirect_uris.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "authorization_code clients need redirect_uris",
        ));
    }
    let jwks_uri = opt_str(v, "jwks_uri")?.map(str::to_string);
    if let Some(u) = &jwks_uri {
        jwks_uri_ok(u).map_err(bad_metadata)?;
    }
    let jwks = match v.get("jwks") {
        None | Some(Value::Null) => None,
        Some(j) => Some(j.clone()),
    };
    if jwks.is_some() && jwks_uri.is_some() {
        return Err(bad_metadata("register jwks or jwks_uri, not both (RFC 7591 §2)"));
    }
    let remote = jwks_uri.is_some();
    if let Some(j) = &jwks {
        let parsed =
            fapi_core::jwks::Jwks::from_value(j).map_err(|_| bad_metadata("jwks is not a JWK Set"))?;
        if !parsed.skipped.is_empty() {
            return Err(bad_metadata(
                "jwks holds a key that is not an acceptable public key",
            ));
        }
    }
    let subject_dn = opt_str(v, "tls_client_auth_subject_dn")?.map(str::to_string);
    match method {
        "private_key_jwt" if !remote && !has_keys(&jwks) => {
            return Err(bad_metadata(
                "private_key_jwt needs jwks with at least one public key, or a jwks_uri",
            ));
        }
        "self_signed_tls_client_auth" if !remote && !has_certificates(&jwks) => {
            return Err(bad_metadata(
                "self_signed_tls_client_auth needs jwks whose keys carry x5c or x5t#S256, or a jwks_uri",
            ));
        }
        "tls_client_auth" if subject_dn.as_deref().is_none_or(str::is_empty) => {
            return Err(bad_metadata("tls_client_auth needs tls_client_auth_subject_dn"));
        }
        _ => {}
    }
    let dpop = opt_bool(v, "dpop_bound_access_tokens")?;
    let mtls = opt_bool(v, "tls_client_certificate_bound_access_tokens")?;
    let token_binding = match (dpop, mtls) {
        (Some(true), Some(true)) => return Err(bad_metadata("choose one token binding: DPoP or mTLS")),
        (Some(true), _) => "dpop",
        (_, Some(false)) if dpop != Some(true) => {
            return Err(bad_metadata("access tokens must be sender-constrained (FAPI 2.0 §5.3.2.1): set dpop_bound_access_tokens or tls_client_certificate_bound_access_tokens"))
        }
        _ => "mtls",
    };
    let scope = match opt_str(v, "scope")? {
        Some(s) => {
            if let Some(bad) = scopes(s).into_iter().find(|x| !SCOPES.contains(x)) {
                return Err(bad_metadata(format!(
                    "scope {} is not supported",
                    super::support::sanitize(bad)
                )));
            }
            scopes(s).join(" ")
        }
        None => "openid accounts".into(),
    };
    let profile = opt_str(v, "fapi_profile")?.unwrap_or("fapi2");
    if !PROFILES.contains(&profile) {
        return Err(bad_metadata(
            "fapi_profile must be fapi2, fapi2-message-signing or fapi1-advanced",
        ));
    }
    let (id_alg, id_enc) = encryption(v, jwks.as_ref(), remote, "id_token")?;
    let (jarm_alg, jarm_enc) = encryption(v, jwks.as_ref(), remote, "authorization")?;
    // JARM §3: the client's alg is honoured, and this server signs with its current key only.
    let jarm = opt_str(v, "authorization_signed_response_alg")?;
    if jarm.is_some_and(|a| a != signing_alg) {
        return Err(bad_metadata(format!(
            "authorization_signed_response_alg must be {signing_alg}, the algorithm of this server's signing key"
        )));
    }
    // RFC 9396 §10: the types the client may ask for, among the ones this server supports.
    let authorization_details_types = string_list(v, "authorization_details_types")?.unwrap_or_default();
    if let Some(bad) = authorization_details_types
        .iter()
        .find(|t| !crate::authorization_details::SUPPORTED_TYPES.contains(&t.as_str()))
    {
        return Err(bad_metadata(format!(
            "authorization_details_types: {} is not supported (supported: {})",
            super::support::sanitize(bad),
            crate::authorization_details::SUPPORTED_TYPES.join(", ")
        )));
    }
    Ok(ClientMetadata {
        client_id: client_id.to_string(),
        client_name: opt_str(v, "client_name")?.unwrap_or(client_id).to_string(),
        redirect_uris,
        token_endpoint_auth_method: method.to_string(),
        jwks,
        jwks_uri,
        tls_client_auth_subject_dn: subject_dn,
        token_binding: token_binding.to_string(),
        scope,
        grant_types,
        require_signed_request_object: opt_bool(v, "require_signed_request_object")?.unwrap_or(false),
        profile: profile.to_string(),
        authorization_signed_response_alg: jarm.map(str::to_string),
        id_token_encrypted_response_alg: id_alg,
        id_token_encrypted_response_enc: id_enc,
        authorization_encrypted_response_alg: jarm_alg,
        authorization_encrypted_response_enc: jarm_enc,
        authorization_details_types,
    })
}

/// `{what}_encrypted_response_alg` / `_enc` (OIDC Registration §2 for id_token, JARM §3 for
/// authorization): both or neither, a pair [`crate::jwe`] implements, and a key of `jwks` to encrypt to.
/// The registration default enc, A128CBC-HS256, is not implemented, so enc must be named.
/// `remote`: the keys are at a jwks_uri, fetched when needed, so only the algorithms are checked now.
fn encryption(
    v: &Value,
    jwks: Option<&Value>,
    remote: bool,
    what: &str,
) -> Result<(Option<String>, Option<String>)> {
    let alg = opt_str(v, &format!("{what}_encrypted_response_alg"))?;
    let enc = opt_str(v, &format!("{what}_encrypted_response_enc"))?;
    match (alg, enc) {
        (Some(a), Some(e)) if remote && crate::jwe::supported(a, e) => {}
        _ => check_encryption(what, alg, enc, jwks).map_err(bad_metadata)?,
    }
    Ok((alg.map(str::to_string), enc.map(str::to_string)))
}

/// The rule of [`encryption`], also for `fapi-as client add`: `Err` says what is wrong.
pub fn check_encryption(
    what: &str,
    alg: Option<&str>,
    enc: Option<&str>,
    jwks: Option<&Value>,
) -> std::result::Result<(), String> {
    match (alg, enc) {
        (None, None) => Ok(()),
        (Some(a), Some(e)) if crate::jwe::supported(a, e) => {
            match crate::jwe::select_key(jwks.unwrap_or(&Value::Null), a) {
                Ok(_) => Ok(()),
                Err(_) => Err(format!(
                    "{what} encryption needs a P-256 key marked for encryption (use \"enc\") in jwks"
                )),
            }
        }
        (None, Some(_)) => Err(format!(
            "{what}_encrypted_response_enc needs {what}_encrypted_response_alg"
        )),
        _ => Err(format!(
            "{what} encryption supports ECDH-ES with A256GCM or A128GCM, both named (the default enc, A128CBC-HS256, is not supported)"
        )),
    }
}

fn has_keys(jwks: &Option<Value>) -> bool {
    jwks.as_ref()
        .and_then(|j| fapi_core::jwks::Jwks::from_value(j).ok())
        .is_some_and(|k| !k.keys.is_empty())
}

fn has_certificates(jwks: &Option<Value>) -> bool {
    jwks.as_ref()
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
        .is_some_and(|keys| {
            keys.iter()
                .any(|k| k.get("x5c").is_some() || k.get("x5t#S256").is_some())
        })
}

/// The client's metadata as RFC 7591 §3.2.1 / RFC 7592 §3 return it (never the token hash).
fn describe(state: &AppState, c: &ClientMetadata) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.remove("token_binding");
        o.insert(
            "dpop_bound_access_tokens".into(),
            json!(c.token_binding == "dpop"),
        );
        o.insert(
            "tls_client_certificate_bound_access_tokens".into(),
            json!(c.token_binding == "mtls"),
        );
        o.insert("response_types".into(), json!(["code"]));
        o.insert("fapi_profile".into(), json!(c.profile));
        o.remove("profile");
        o.insert(
            "registration_client_uri".into(),
            json!(format!(
                "{}/register/{}",
                state.config.issuer.trim_end_matches('/'),
                c.client_id
            )),
        );
    }
    v
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value> {
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_ct {
        return Err(OAuthError::invalid_request("the body must be application/json"));
    }
    if body.len() > MAX_BODY {
        return Err(bad_metadata("the registration request is too large"));
    }
    serde_json::from_slice(body).map_err(|_| bad_metadata("the body is not JSON"))
}

/// `POST /register` (RFC 7591 §3.1).
pub async fn create(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(initial) = state.config.registration.initial_access_token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !bearer(&headers).is_some_and(|p| credential_eq(p, initial)) {
        state.metrics.count("register", "unauthorized");
        return unauthorized("registration needs the initial access token");
    }
    let result: Result<Value> = async {
        let v = parse_body(&headers, &body)?;
        let client_id = state.random.token(16)?;
        let client = validate_with(&v, &client_id, state.keys.get().current.alg().as_str(), &|u| {
            state.client_jwks.check(u)
        })?;
        let token = state.random.token(32)?;
        let t = state.clock.now();
        state.store.put_client(&client, t).await?;
        state.store.put_item(REGISTRATION, &client.client_id, &hashed(&token), i64::MAX).await?;
        let mut out = describe(&state, &client);
        out["registration_access_token"] = json!(token);
        out["client_id_issued_at"] = json!(t);
        tracing::info!(client_id = %client.client_id, method = %client.token_endpoint_auth_method, "client registered");
        Ok(out)
    }
    .await;
    match result {
        Ok(out) => {
            state.metrics.count("register", "ok");
            no_store(StatusCode::CREATED, out, None)
        }
        Err(e) => {
            state.metrics.count("register", e.error);
            e.into_response()
        }
    }
}

/// The client, when `headers` carry its registration access token (RFC 7592 §2: otherwise 401,
/// also for an unknown client, so client ids cannot be probed).
async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    client_id: &str,
) -> std::result::Result<ClientMetadata, Response> {
    if state.config.registration.initial_access_token.is_none() {
        return Err(StatusCode::NOT_FOUND.into_response());
    }
    let presented =
        bearer(headers).ok_or_else(|| unauthorized("the registration access token is required"))?;
    let found = async {
        let hash: Option<String> = state
            .store
            .item(REGISTRATION, client_id, state.clock.now())
            .await?;
        let client = state.store.client(client_id).await?;
        Ok::<_, sqlx::Error>(hash.zip(client))
    }
    .await;
    match found {
        Ok(Some((hash, c))) if credential_eq(&hashed(presented), &hash) => Ok(c),
        Ok(_) => Err(unauthorized("invalid registration access token")),
        Err(e) => Err(OAuthError::from(e).into_response()),
    }
}

/// `GET /register/{client_id}` (RFC 7592 §2.1).
pub async fn read(
    State(state): State<Shared>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match authorized(&state, &headers, &client_id).await {
        Ok(c) => no_store(StatusCode::OK, describe(&state, &c), None),
        Err(r) => r,
    }
}

/// `PUT /register/{client_id}` (RFC 7592 §2.2): the request replaces the metadata; omitted fields
/// take their defaults. The registration access token stays the same.
pub async fn update(
    State(state): State<Shared>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let current = match authorized(&state, &headers, &client_id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let result: Result<Value> = async {
        let v = parse_body(&headers, &body)?;
        if v.get("client_id").and_then(Value::as_str) != Some(client_id.as_str()) {
            return Err(OAuthError::invalid_request(
                "the body must carry the client_id (RFC 7592 §2.2)",
            ));
        }
        for forbidden in [
            "registration_access_token",
            "registration_client_uri",
            "client_secret",
            "client_id_issued_at",
        ] {
            if let Some(given) = v.get(forbidden) {
                let same = forbidden == "registration_client_uri"
                    && given.as_str() == describe(&state, &current)["registration_client_uri"].as_str();
                if !same && forbidden != "client_id_issued_at" {
                    return Err(OAuthError::invalid_request(format!("{forbidden} cannot be set")));
                }
            }
        }
        let client = validate_with(&v, &client_id, state.keys.get().current.alg().as_str(), &|u| {
            state.client_jwks.check(u)
        })?;
        state.store.put_client(&client, state.clock.now()).await?;
        Ok(describe(&state, &client))
    }
    .await;
    match result {
        Ok(out) => no_store(StatusCode::OK, out, None),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /register/{client_id}` (RFC 7592 §2.3): 204.
pub async fn delete(
    State(state): State<Shared>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&state, &headers, &client_id).await {
        return r;
    }
    let deleted = async {
        state
            .store
            .delete_client(&client_id, state.clock.now_ms())
            .await?;
        state.store.delete_item(REGISTRATION, &client_id).await
    }
    .await;
    match deleted {
        Ok(()) => {
            tracing::info!(client_id = %client_id, "client deregistered");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => OAuthError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_reference() {
        let m = json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://keys.example/t/jwks",
            "redirect_uris": ["https://app.example/cb"],
            "id_token_encrypted_response_alg": "ECDH-ES", "id_token_encrypted_response_enc": "A256GCM"});
        let allow = |u: &str| {
            if u.starts_with("https://keys.example/") {
                Ok(())
            } else {
                Err("not allowed".into())
            }
        };
        let c = validate_with(&m, "c1", "ES256", &allow);
        assert!(
            c.as_ref().is_ok_and(
                |c| c.jwks_uri.as_deref() == Some("https://keys.example/t/jwks") && c.jwks.is_none()
            ),
            "{:?}",
            c.err().map(|e| e.description)
        );
        // A server that fetches no jwks_uri, another host, unsupported encryption, or both kinds of keys.
        assert!(matches!(validate(&m, "c1", "ES256"), Err(e) if e.error == "invalid_client_metadata"));
        let mut other = m.clone();
        other["jwks_uri"] = json!("https://elsewhere.example/jwks");
        assert!(validate_with(&other, "c1", "ES256", &allow).is_err());
        let mut enc = m.clone();
        enc["id_token_encrypted_response_enc"] = json!("A128CBC-HS256");
        assert!(validate_with(&enc, "c1", "ES256", &allow).is_err());
        let mut both = m.clone();
        both["jwks"] = json!({"keys": []});
        assert!(validate_with(&both, "c1", "ES256", &allow).is_err());
    }

    #[test]
    fn authorization_details_types_rfc9396_section_10() {
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}]});
        let mut m = json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": jwks, "redirect_uris": ["https://app.example/cb"]});
        assert!(matches!(validate(&m, "c1", "ES256"), Ok(c) if c.authorization_details_types.is_empty()));
        m["authorization_details_types"] = json!(["payment_initiation"]);
        let c = validate(&m, "c1", "ES256");
        assert!(matches!(&c, Ok(c) if c.authorization_details_types == ["payment_initiation"]));
        // Stored and returned under the RFC 9396 name.
        let stored = c
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            stored["authorization_details_types"],
            json!(["payment_initiation"])
        );
        for bad in [
            json!(["account_information"]),
            json!("payment_initiation"),
            json!([1]),
        ] {
            m["authorization_details_types"] = bad.clone();
            assert!(
                matches!(validate(&m, "c1", "ES256"), Err(e) if e.error == "invalid_client_metadata"),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation() {
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}]});
        let ok = json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": jwks, "redirect_uris": ["https://app.example/cb"], "dpop_bound_access_tokens": true});
        let c = validate(&ok, "c1", "ES256");
        assert!(matches!(&c, Ok(c) if c.token_binding == "dpop" && c.scope == "openid accounts"));
        let mut bad = ok.clone();
        bad["redirect_uris"] = json!(["http://app.example/cb"]);
        assert!(matches!(validate(&bad, "c1", "ES256"), Err(e) if e.error == "invalid_redirect_uri"));
        let mut bad = ok.clone();
        bad["token_endpoint_auth_method"] = json!("client_secret_basic");
        assert!(matches!(validate(&bad, "c1", "ES256"), Err(e) if e.error == "invalid_client_metadata"));
        let mut bad = ok.clone();
        bad["jwks"] = Value::Null;
        assert!(validate(&bad, "c1", "ES256").is_err());
        let mut bad = ok.clone();
        bad["dpop_bound_access_tokens"] = json!(false);
        bad["tls_client_certificate_bound_access_tokens"] = json!(false);
        assert!(validate(&bad, "c1", "ES256").is_err());
        let mut bad = ok.clone();
        bad["grant_types"] = json!(["password"]);
        assert!(validate(&bad, "c1", "ES256").is_err());
        let mut enc = ok.clone();
        enc["id_token_encrypted_response_alg"] = json!("ECDH-ES");
        assert!(
            validate(&enc, "c1", "ES256").is_err(),
            "enc is required, and a key marked for encryption"
        );
        enc["id_token_encrypted_response_enc"] = json!("A256GCM");
        assert!(
            validate(&enc, "c1", "ES256").is_err(),
            "the only key is not marked for encryption"
        );
        let mut enc_key = jwks["keys"][0].clone();
        enc_key["use"] = json!("enc");
        enc_key["kid"] = json!("e1");
        enc["jwks"]["keys"] = json!([jwks["keys"][0], enc_key]);
        assert!(
            matches!(validate(&enc, "c1", "ES256"), Ok(c) if c.id_token_encrypted_response_enc.as_deref() == Some("A256GCM"))
        );
        // JARM encryption: the same rule as id_token's; JARM signing only with the server's alg.
        let mut jarm = enc.clone();
        jarm["authorization_encrypted_response_alg"] = json!("ECDH-ES");
        assert!(
            matches!(validate(&jarm, "c1", "ES256"), Err(e) if e.description.contains("authorization")),
            "enc is required (its default, A128CBC-HS256, is not implemented)"
        );
        jarm["authorization_encrypted_response_enc"] = json!("A128CBC-HS256");
        assert!(validate(&jarm, "c1", "ES256").is_err());
        jarm["authorization_encrypted_response_enc"] = json!("A128GCM");
        let c = validate(&jarm, "c1", "ES256");
        assert!(
            matches!(&c, Ok(c) if c.authorization_encrypted_response_alg.as_deref() == Some("ECDH-ES")
                && c.authorization_encrypted_response_enc.as_deref() == Some("A128GCM")),
            "{c:?}"
        );
        let mut no_alg = ok.clone();
        no_alg["authorization_encrypted_response_enc"] = json!("A256GCM");
        assert!(validate(&no_alg, "c1", "ES256").is_err(), "enc without alg");
        let mut no_key = ok.clone();
        no_key["authorization_encrypted_response_alg"] = json!("ECDH-ES");
        no_key["authorization_encrypted_response_enc"] = json!("A256GCM");
        assert!(validate(&no_key, "c1", "ES256").is_err(), "no encryption key");
        jarm["authorization_signed_response_alg"] = json!("ES256");
        assert!(
            matches!(validate(&jarm, "c1", "ES256"), Ok(c) if c.authorization_signed_response_alg.as_deref() == Some("ES256"))
        );
        assert!(
            matches!(validate(&jarm, "c1", "PS256"), Err(e) if e.error == "invalid_client_metadata"),
            "an alg the current key does not have"
        );
        jarm["authorization_signed_response_alg"] = json!("RS256");
        assert!(validate(&jarm, "c1", "ES256").is_err());
        let tls = json!({"token_endpoint_auth_method": "tls_client_auth", "grant_types": ["client_credentials"], "scope": "accounts"});
        assert!(validate(&tls, "c2", "ES256").is_err());
        let tls = json!({"token_endpoint_auth_method": "tls_client_auth", "grant_types": ["client_credentials"], "scope": "accounts", "tls_client_auth_subject_dn": "CN=x"});
        assert!(matches!(validate(&tls, "c2", "ES256"), Ok(c) if c.token_binding == "mtls"));
    }
}
