//! The token endpoint (RFC 6749 §3.2) the FAPI 2.0 way (Security Profile §5.3.2.1):
//! - grant types authorization_code (PKCE S256, RFC 7636 §4.6; single-use codes whose reuse revokes
//!   the grant, RFC 6749 §4.1.2), refresh_token (opaque, stored hashed, bound to the client and to
//!   its certificate or DPoP key; not rotated) and client_credentials (RFC 6749 §4.4); anything else
//!   (password included) is `unsupported_grant_type`;
//! - client authentication by [`crate::client_auth`] (private_key_jwt, tls_client_auth,
//!   self_signed_tls_client_auth);
//! - sender-constrained access tokens only: `cnf.x5t#S256` of the TLS client certificate (RFC 8705
//!   §3) or `cnf.jkt` of the DPoP proof key (RFC 9449 §5, §6), as the client's `token_binding` says;
//!   DPoP proofs need a server nonce (RFC 9449 §8), and a code bound through `dpop_jkt` is redeemed
//!   only with that key (RFC 9449 §10);
//! - JWT access tokens (RFC 9068) signed with the current key, recorded for revocation,
//!   introspection and the revocation feed; an OpenID Connect id_token (Core §3.1.3.6) when the
//!   scope has `openid`, with `s_hash` and `c_hash` for FAPI 1 Advanced clients (FAPI 1 Part 2 §5.1),
//!   encrypted (JWE, [`crate::jwe`]) for clients that registered id_token encryption.
//!
//! RFC 9396: the authorization details granted at consent (stored with the grant) are returned in
//! the token response (§7) and carried by the access token as `authorization_details` (§9.1), from
//! the authorization_code grant and, unchanged, from each refresh. An `authorization_details`
//! parameter in a token request (§6.2, narrowing) is not supported and ignored: the response says
//! what the token carries.
//!
//! Refresh tokens: issued with an authorization_code grant when the client is registered for the
//! `refresh_token` grant type (the default for FAPI clients; `offline_access` is not required, since
//! the refresh token is useless without the client's own credentials and certificate or DPoP key).
//! Never for client_credentials (RFC 6749 §4.4.3).

use super::support::{
    check_dpop, dpop_headers, endpoint_url, hashed, no_store, params, record_proof, scopes, FormBody,
};
use crate::app::{AppState, Shared};
use crate::client_auth;
use crate::error::{OAuthError, Result};
use crate::model::{CodeRecord, CODE};
use crate::store::{ClientMetadata, Taken};
use crate::tls::PeerCertificate;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fapi_core::alg::Algorithm;
use fapi_core::binding::constant_time_eq;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Longest authorization code or refresh token accepted.
const MAX_CODE: usize = 512;

/// How the tokens of this request are bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// RFC 8705 §3.1: `x5t#S256` of the TLS client certificate.
    Mtls(String),
    /// RFC 9449 §6.1: `jkt` of the DPoP proof key.
    Dpop(String),
}

impl Binding {
    fn cnf(&self) -> Value {
        match self {
            Binding::Mtls(x5t) => json!({ "x5t#S256": x5t }),
            Binding::Dpop(jkt) => json!({ "jkt": jkt }),
        }
    }
    fn token_type(&self) -> &'static str {
        match self {
            Binding::Mtls(_) => "Bearer",
            Binding::Dpop(_) => "DPoP",
        }
    }
}

/// What a user's authentication left on the grant (OIDC Core §2: acr, amr, auth_time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAuth {
    pub user_id: String,
    pub acr: String,
    pub amr: Vec<String>,
    pub auth_time: i64,
}

/// What a refresh token stands for (stored as the refresh token's data, under its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshData {
    pub user: UserAuth,
    pub scope: String,
    /// The certificate thumbprint or DPoP key the refresh token is bound to (one of them).
    #[serde(default)]
    pub x5t_s256: Option<String>,
    #[serde(default)]
    pub jkt: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

/// A token request, as the handler received it.
#[derive(Debug, Clone)]
pub struct TokenCall<'a> {
    pub params: HashMap<String, String>,
    /// The DPoP header values (normally none or one).
    pub dpop: Vec<&'a str>,
    pub peer: PeerCertificate,
    /// The token endpoint URL as the client called it (normalized), for DPoP `htu`.
    pub htu: String,
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct Issued {
    pub body: Value,
    /// A fresh nonce for DPoP clients' next proof (RFC 9449 §8.2).
    pub dpop_nonce: Option<String>,
}

/// `POST /token`.
pub async fn token(
    State(state): State<Shared>,
    peer: PeerCertificate,
    headers: HeaderMap,
    form: FormBody,
) -> Response {
    let result: Result<Issued> = async {
        let call = TokenCall {
            params: params(form)?,
            dpop: dpop_headers(&headers),
            htu: endpoint_url(&state, &headers, &peer, "/token"),
            peer: peer.clone(),
        };
        handle(&state, &call, state.clock.now()).await
    }
    .await;
    match result {
        Ok(issued) => {
            state.metrics.count("token", "ok");
            no_store(StatusCode::OK, issued.body, issued.dpop_nonce)
        }
        Err(e) => {
            state.metrics.count("token", e.error);
            e.into_response()
        }
    }
}

/// The token endpoint's logic, for a request already read (public for in-process tests).
pub async fn handle(state: &AppState, call: &TokenCall<'_>, now: i64) -> Result<Issued> {
    // A failing generator is found before the code or assertion is spent (src/random.rs).
    state.random.fill(&mut [0u8; 16])?;
    let p = &call.params;
    // RFC 9449 §8: a proof without a valid nonce is answered first, before anything single-use (the
    // client assertion's jti, the code) is spent, so the client's retry with a nonce can succeed.
    let proof = if call.dpop.is_empty() {
        None
    } else {
        Some(check_dpop(state, &call.dpop, "POST", &call.htu, None, true, now)?)
    };
    let auth = client_auth::authenticate(state, p, &call.peer).await?;
    let client = &auth.client;
    // FAPI 2.0 §5.3.2.1: only sender-constrained access tokens.
    let binding = match client.token_binding.as_str() {
        "dpop" => {
            let proof = proof.ok_or_else(|| {
                OAuthError::invalid_dpop_proof(
                    "this client's tokens are DPoP-bound (RFC 9449): a DPoP proof is required",
                )
            })?;
            record_proof(state, &proof).await?;
            Binding::Dpop(proof.jkt)
        }
        "mtls" => {
            if proof.is_some() {
                return Err(OAuthError::invalid_request(
                    "this client's tokens are certificate-bound (RFC 8705), not DPoP-bound: send no DPoP proof",
                ));
            }
            let x5t = auth.cert_thumbprint.clone().ok_or_else(|| {
                OAuthError::invalid_request(
                    "this client's tokens are bound to its TLS client certificate (RFC 8705 §3): call the token endpoint of mtls_endpoint_aliases with the certificate",
                )
            })?;
            Binding::Mtls(x5t)
        }
        _ => {
            return Err(OAuthError::invalid_client(
                "the client has no usable token binding (mtls or dpop)",
            ))
        }
    };
    let grant_type = p
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    let allowed = |g: &str| client.grant_types.iter().any(|x| x == g);
    let mut issued = match grant_type.as_str() {
        "authorization_code" if allowed("authorization_code") => {
            authorization_code(state, client, p, &binding, now).await?
        }
        "refresh_token" if allowed("refresh_token") => refresh_token(state, client, p, &binding, now).await?,
        "client_credentials" if allowed("client_credentials") => {
            client_credentials(state, client, p, &binding, now).await?
        }
        "authorization_code" | "refresh_token" | "client_credentials" => {
            return Err(OAuthError::unauthorized_client(format!(
                "the client is not registered for the {grant_type} grant"
            )))
        }
        _ => {
            return Err(OAuthError::unsupported_grant_type(
                "supported: authorization_code, refresh_token, client_credentials",
            ))
        }
    };
    if matches!(binding, Binding::Dpop(_)) {
        issued.dpop_nonce = Some(state.nonces.issue(now));
    }
    Ok(issued)
}

/// RFC 7636 §4.1 (43-128 characters of the unreserved set) and §4.6: BASE64URL(SHA256(verifier))
/// equals the S256 challenge (FAPI 2.0 §5.3.2.2: S256 only).
pub fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let syntax = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    syntax && constant_time_eq(hashed(verifier).as_bytes(), challenge.as_bytes())
}

fn param<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    match p.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OAuthError::invalid_request(format!("{name} is required"))),
    }
}

/// The grant a code or refresh token belongs to must still be live and the client's.
async fn live_grant(state: &AppState, grant_id: &str, client_id: &str) -> Result<()> {
    match state.store.grant(grant_id).await? {
        Some(g) if !g.revoked && g.client_id == client_id => Ok(()),
        _ => Err(OAuthError::invalid_grant("the grant has been revoked")),
    }
}

async fn authorization_code(
    state: &AppState,
    client: &ClientMetadata,
    p: &HashMap<String, String>,
    binding: &Binding,
    now: i64,
) -> Result<Issued> {
    let code = param(p, "code")?;
    let redirect_uri = param(p, "redirect_uri")?;
    let verifier = p
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE, FAPI 2.0 §5.3.2.2)"))?;
    if code.len() > MAX_CODE {
        return Err(OAuthError::invalid_grant("unknown or expired code"));
    }
    let rec: CodeRecord = match state.store.take_item(CODE, &hashed(code), now).await? {
        Taken::Fresh(r) => r,
        Taken::Reused(r) => {
            // RFC 6749 §4.1.2 / §10.5: a code used twice was stolen or replayed; what the first use
            // issued is revoked (its access tokens reach the plugin through the feed).
            state
                .store
                .revoke_grant(&r.grant_id, state.clock.now_ms())
                .await?;
            tracing::warn!(client_id = %client.client_id, grant_id = %r.grant_id, "authorization code reused: grant revoked");
            return Err(OAuthError::invalid_grant(
                "the code has already been used; the tokens issued for it are revoked",
            ));
        }
        Taken::Missing => return Err(OAuthError::invalid_grant("unknown or expired code")),
    };
    if rec.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("the code was issued to another client"));
    }
    // RFC 6749 §4.1.3: identical to the redirect_uri of the authorization request.
    if rec.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri differs from the authorization request",
        ));
    }
    if !pkce_s256_matches(verifier, &rec.code_challenge) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge (RFC 7636 §4.6)",
        ));
    }
    // RFC 9449 §10: a code bound to a DPoP key through dpop_jkt is redeemed with that key only.
    if let Some(jkt) = &rec.dpop_jkt {
        match binding {
            Binding::Dpop(k) if constant_time_eq(k.as_bytes(), jkt.as_bytes()) => {}
            _ => {
                return Err(OAuthError::invalid_grant(
                    "the code is bound to another DPoP key (dpop_jkt, RFC 9449 §10)",
                ))
            }
        }
    }
    live_grant(state, &rec.grant_id, &client.client_id).await?;
    // RFC 9396 §7: the details granted at consent (enriched with the debtor account).
    let details = state.store.grant_details(&rec.grant_id).await?;
    let user = UserAuth {
        user_id: rec.user_id.clone(),
        acr: rec.acr.clone(),
        amr: rec.amr.clone(),
        auth_time: rec.auth_time,
    };
    let mut body = access_token(
        state,
        client,
        &rec.scope,
        Some(&user),
        Some(&rec.grant_id),
        details.as_deref(),
        binding,
        now,
    )
    .await?;
    if client.grant_types.iter().any(|g| g == "refresh_token") {
        let refresh = state.random.token(32)?;
        let exp = now + state.config.tokens.refresh_lifetime as i64;
        let (x5t_s256, jkt) = match binding {
            Binding::Mtls(x) => (Some(x.clone()), None),
            Binding::Dpop(k) => (None, Some(k.clone())),
        };
        let data = RefreshData {
            user: user.clone(),
            scope: rec.scope.clone(),
            x5t_s256,
            jkt,
            iat: now,
            exp,
        };
        state
            .store
            .put_refresh(&hashed(&refresh), &rec.grant_id, &client.client_id, &data, exp)
            .await?;
        body["refresh_token"] = json!(refresh);
    }
    if scopes(&rec.scope).contains(&"openid") {
        body["id_token"] = json!(id_token(state, client, &rec, code, now)?);
    }
    Ok(Issued {
        body,
        dpop_nonce: None,
    })
}

async fn refresh_token(
    state: &AppState,
    client: &ClientMetadata,
    p: &HashMap<String, String>,
    binding: &Binding,
    now: i64,
) -> Result<Issued> {
    let token = param(p, "refresh_token")?;
    let unknown = || OAuthError::invalid_grant("unknown, expired or revoked refresh token");
    if token.len() > MAX_CODE {
        return Err(unknown());
    }
    let Some((grant_id, client_id, data)) = state.store.refresh::<RefreshData>(&hashed(token), now).await?
    else {
        return Err(unknown());
    };
    if client_id != client.client_id {
        return Err(unknown());
    }
    // The refresh token is bound to the certificate or DPoP key it was issued to.
    let bound = match (binding, &data.x5t_s256, &data.jkt) {
        (Binding::Mtls(x), Some(y), _) => constant_time_eq(x.as_bytes(), y.as_bytes()),
        (Binding::Dpop(k), _, Some(j)) => constant_time_eq(k.as_bytes(), j.as_bytes()),
        _ => false,
    };
    if !bound {
        return Err(OAuthError::invalid_grant(
            "the refresh token is bound to another client certificate or DPoP key",
        ));
    }
    live_grant(state, &grant_id, &client.client_id).await?;
    // RFC 9396 §7: a refreshed access token carries the details of the grant, unchanged.
    let details = state.store.grant_details(&grant_id).await?;
    // RFC 6749 §6: the scope may shrink, never grow.
    let granted = scopes(&data.scope);
    let scope = match p.get("scope") {
        Some(s) => {
            let requested = scopes(s);
            if requested.iter().any(|r| !granted.contains(r)) {
                return Err(OAuthError::invalid_scope("the scope exceeds what was granted"));
            }
            requested.join(" ")
        }
        None => data.scope.clone(),
    };
    // FAPI 2.0 §5.3.2.1: no refresh token rotation; the client keeps the one it has.
    let body = access_token(
        state,
        client,
        &scope,
        Some(&data.user),
        Some(&grant_id),
        details.as_deref(),
        binding,
        now,
    )
    .await?;
    Ok(Issued {
        body,
        dpop_nonce: None,
    })
}

async fn client_credentials(
    state: &AppState,
    client: &ClientMetadata,
    p: &HashMap<String, String>,
    binding: &Binding,
    now: i64,
) -> Result<Issued> {
    // No user: user-related scopes make no sense here.
    let allowed: Vec<&str> = scopes(&client.scope)
        .into_iter()
        .filter(|s| *s != "openid" && *s != "offline_access")
        .collect();
    let scope = match p.get("scope") {
        Some(s) => {
            let requested = scopes(s);
            if let Some(bad) = requested.iter().find(|r| !allowed.contains(r)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {} is not allowed for this client",
                    super::support::sanitize(bad)
                )));
            }
            requested.join(" ")
        }
        None => allowed.join(" "),
    };
    let body = access_token(state, client, &scope, None, None, None, binding, now).await?;
    Ok(Issued {
        body,
        dpop_nonce: None,
    })
}

fn audience(state: &AppState) -> Value {
    match state.config.tokens.audience.as_slice() {
        [one] => json!(one),
        many => json!(many),
    }
}

/// Signs and records an RFC 9068 access token; returns the token response body without refresh or
/// id token. Granted RFC 9396 `details` go into the token as the `authorization_details` claim
/// (§9.1) and into the response (§7); the token's `jti` is what a resource server remembers a
/// detail's use by.
#[allow(clippy::too_many_arguments)]
async fn access_token(
    state: &AppState,
    client: &ClientMetadata,
    scope: &str,
    user: Option<&UserAuth>,
    grant_id: Option<&str>,
    details: Option<&[Value]>,
    binding: &Binding,
    now: i64,
) -> Result<Value> {
    let lifetime = state.config.tokens.access_token_lifetime as i64;
    let exp = now + lifetime;
    let jti = state.random.token(16)?;
    let mut claims = json!({
        "iss": state.config.issuer,
        "sub": user.map(|u| u.user_id.as_str()).unwrap_or(client.client_id.as_str()),
        "aud": audience(state),
        "exp": exp,
        "iat": now,
        "nbf": now,
        "jti": jti,
        "client_id": client.client_id,
        "scope": scope,
        "cnf": binding.cnf(),
    });
    if let Some(u) = user {
        claims["acr"] = json!(u.acr);
        claims["amr"] = json!(u.amr);
        claims["auth_time"] = json!(u.auth_time);
    }
    if let Some(d) = details {
        claims["authorization_details"] = json!(d);
    }
    let token = state
        .keys
        .get()
        .current
        .sign_jwt(Some("at+jwt"), &claims)
        .map_err(OAuthError::server)?;
    state
        .store
        .record_access_token(&jti, grant_id, &client.client_id, &claims, exp)
        .await?;
    if let Some(g) = grant_id {
        state.store.touch_grant(g, now).await?;
    }
    let mut body = json!({
        "access_token": token,
        "token_type": binding.token_type(),
        "expires_in": lifetime,
        "scope": scope,
    });
    if let Some(d) = details {
        body["authorization_details"] = json!(d);
    }
    Ok(body)
}

/// OIDC Core §3.1.3.3 hash claims (`c_hash`, `s_hash`, `at_hash`): the left half of the hash the
/// signing algorithm uses (SHA-256 for ES256/PS256; SHA-512 for EdDSA with Ed25519).
pub fn half_hash(alg: Algorithm, value: &str) -> String {
    let digest = match alg {
        Algorithm::EdDSA => ring::digest::digest(&ring::digest::SHA512, value.as_bytes()),
        _ => ring::digest::digest(&ring::digest::SHA256, value.as_bytes()),
    };
    let d = digest.as_ref();
    fapi_core::b64::encode(&d[..d.len() / 2])
}

/// The id_token of OIDC Core §3.1.3.6 (§2 claims), with `s_hash` and `c_hash` for FAPI 1 Advanced
/// clients (FAPI 1 Part 2 §5.2.2.1 and §5.2.2.2: the id_token as detached signature).
fn id_token(
    state: &AppState,
    client: &ClientMetadata,
    rec: &CodeRecord,
    code: &str,
    now: i64,
) -> Result<String> {
    let keys = state.keys.get();
    let key = &keys.current;
    let mut claims = json!({
        "iss": state.config.issuer,
        "sub": rec.user_id,
        "aud": client.client_id,
        "exp": now + state.config.tokens.access_token_lifetime as i64,
        "iat": now,
        "auth_time": rec.auth_time,
        "acr": rec.acr,
        "amr": rec.amr,
    });
    if let Some(n) = &rec.nonce {
        claims["nonce"] = json!(n);
    }
    if client.profile == "fapi1-advanced" {
        claims["c_hash"] = json!(half_hash(key.alg(), code));
        if let Some(s) = &rec.state {
            claims["s_hash"] = json!(half_hash(key.alg(), s));
        }
    }
    let signed = key.sign_jwt(Some("JWT"), &claims).map_err(OAuthError::server)?;
    // OIDC Core §10.2: sign, then encrypt to the client's key (a nested JWT, cty "JWT").
    match (
        &client.id_token_encrypted_response_alg,
        &client.id_token_encrypted_response_enc,
    ) {
        (Some(alg), Some(enc)) => {
            let jwks = client
                .jwks
                .as_ref()
                .ok_or_else(|| OAuthError::server("id_token encryption without client keys"))?;
            crate::jwe::encrypt_to_client(jwks, alg, enc, signed.as_bytes(), Some("JWT"))
                .map_err(|e| OAuthError::invalid_client(format!("id_token encryption: {e}")))
        }
        (Some(_), None) => Err(OAuthError::invalid_client(
            "id_token_encrypted_response_enc is not registered",
        )),
        _ => Ok(signed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_s256_matches(verifier, challenge));
        assert!(!pkce_s256_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        // Too short, too long, outside the unreserved set.
        assert!(!pkce_s256_matches("abc", &hashed("abc")));
        let long = "a".repeat(129);
        assert!(!pkce_s256_matches(&long, &hashed(&long)));
        let ok128 = "a".repeat(128);
        assert!(pkce_s256_matches(&ok128, &hashed(&ok128)));
        let bad = format!("{}+", "a".repeat(43));
        assert!(!pkce_s256_matches(&bad, &hashed(&bad)));
        // plain is not S256: the verifier itself as challenge fails.
        assert!(!pkce_s256_matches(verifier, verifier));
    }

    #[test]
    fn half_hashes() {
        // OIDC Core §3.1.3.6 example uses the left 128 bits of SHA-256 for RS256/ES256/PS256.
        let h = half_hash(Algorithm::ES256, "x");
        assert_eq!(fapi_core::b64::decode(&h).map(|b| b.len()), Some(16));
        assert_eq!(
            fapi_core::b64::decode(&half_hash(Algorithm::EdDSA, "x")).map(|b| b.len()),
            Some(32)
        );
    }
}
