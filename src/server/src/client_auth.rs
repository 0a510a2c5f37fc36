//! Client authentication at PAR, token, revocation and introspection (FAPI 2.0 §5.3.2.1: MTLS or
//! private_key_jwt only; no client secrets):
//! - `private_key_jwt` (RFC 7523 §3, OIDC Core §9): a JWS signed with PS256/ES256/EdDSA by a key of
//!   the client's registered JWKS; `iss` = `sub` = client_id; `aud` the issuer (FAPI 2.0 §5.3.2.1
//!   "shall accept its issuer identifier") or one of this server's endpoint URLs; `exp` required and
//!   at most 10 minutes after `iat`; `jti` required and never accepted twice. Every JWS, header and
//!   time rule is fapi-core's validator ([`Validation::client_assertion`]); this module finds the
//!   client's keys and remembers the `jti` in the store.
//! - `tls_client_auth` (RFC 8705 §2.1): the TLS client certificate's subject DN equals the registered
//!   `tls_client_auth_subject_dn`.
//! - `self_signed_tls_client_auth` (RFC 8705 §2.2): the TLS client certificate is one the client
//!   registered in its JWKS (`x5c` first element, or `x5t#S256`).

use crate::app::AppState;
use crate::error::{OAuthError, Result};
use crate::store::ClientMetadata;
use crate::tls::PeerCertificate;
use axum::http::StatusCode;
use fapi_core::alg::Algorithm;
use fapi_core::binding::CertThumbprint;
use fapi_core::decision::Denial;
use fapi_core::jwks::Jwks;
use fapi_core::verify::Validation;
use serde_json::Value;
use std::collections::HashMap;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An authenticated client, and the certificate of the connection (for RFC 8705 token binding).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: ClientMetadata,
    pub method: &'static str,
    /// `x5t#S256` of the TLS client certificate, when there was one.
    pub cert_thumbprint: Option<String>,
}

/// Authenticates the client of a back-channel request. `form` is the request body.
pub async fn authenticate(
    state: &AppState,
    form: &HashMap<String, String>,
    peer: &PeerCertificate,
) -> Result<Authenticated> {
    let cert_thumbprint = peer
        .0
        .as_ref()
        .map(|der| CertThumbprint::from_der(der).to_b64url());
    if form.contains_key("client_secret") {
        return Err(OAuthError::invalid_client(
            "client secrets are not accepted (FAPI): use private_key_jwt or mTLS",
        ));
    }
    let assertion = match (form.get("client_assertion_type"), form.get("client_assertion")) {
        (Some(t), Some(a)) if t == JWT_BEARER => Some(a.as_str()),
        (Some(_), Some(_)) => return Err(OAuthError::invalid_client("unsupported client_assertion_type")),
        (None, Some(_)) | (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type go together",
            ))
        }
        (None, None) => None,
    };
    if let Some(assertion) = assertion {
        let client = private_key_jwt(state, assertion, form.get("client_id")).await?;
        return Ok(Authenticated {
            client,
            method: "private_key_jwt",
            cert_thumbprint,
        });
    }
    let client_id = form
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_client("no client authentication"))?;
    let mut client = state
        .store
        .client(client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    // Keys by reference (jwks_uri): the registered certificates of self_signed_tls_client_auth, or
    // encryption keys later. Only self_signed_tls_client_auth cannot do without them (below).
    let resolved = state.client_jwks.resolve(&mut client, false).await;
    let der = peer.0.as_ref().ok_or_else(|| {
        OAuthError::invalid_client(format!(
            "{} needs the client certificate: use the mtls_endpoint_aliases",
            client.token_endpoint_auth_method
        ))
    })?;
    let method = match client.token_endpoint_auth_method.as_str() {
        "tls_client_auth" => {
            let expected = client
                .tls_client_auth_subject_dn
                .as_deref()
                .ok_or_else(|| OAuthError::invalid_client("client has no registered subject DN"))?;
            let subject =
                subject_dn(der).ok_or_else(|| OAuthError::invalid_client("unreadable client certificate"))?;
            if normalize_dn(&subject) != normalize_dn(expected) {
                return Err(OAuthError::invalid_client(
                    "the client certificate subject does not match the registration",
                ));
            }
            "tls_client_auth"
        }
        "self_signed_tls_client_auth" => {
            resolved.map_err(|e| OAuthError::invalid_client(format!("the client's keys: {e}")))?;
            let thumbprint = CertThumbprint::from_der(der).to_b64url();
            let mut registered = registered_certificate(&client, der, &thumbprint);
            if !registered && client.jwks_uri.is_some() {
                // A new certificate published at the client's jwks_uri: fetch again (rate-limited).
                state
                    .client_jwks
                    .resolve(&mut client, true)
                    .await
                    .map_err(|e| OAuthError::invalid_client(format!("the client's keys: {e}")))?;
                registered = registered_certificate(&client, der, &thumbprint);
            }
            if !registered {
                return Err(OAuthError::invalid_client(
                    "the client certificate is not one the client registered",
                ));
            }
            "self_signed_tls_client_auth"
        }
        _ => {
            return Err(OAuthError::invalid_client(
                "this client authenticates with private_key_jwt",
            ))
        }
    };
    Ok(Authenticated {
        client,
        method,
        cert_thumbprint,
    })
}

async fn private_key_jwt(
    state: &AppState,
    assertion: &str,
    form_client_id: Option<&String>,
) -> Result<ClientMetadata> {
    // Every JWS, header and time rule is fapi-core's (RFC 7523 §3 with FAPI 2.0 §5.3.2.1).
    let validation = Validation::client_assertion(assertion_audiences(state));
    let bad = |v: &Validation, d: Denial| refusal(v, &d);
    let parsed = validation.parse(assertion).map_err(|d| bad(&validation, d))?;
    // The issuer names the client whose keys verify the assertion (read unverified only for that).
    let client_id = parsed
        .unverified_str("iss")
        .ok_or_else(|| bad(&validation, Denial::MissingClaim("iss")))?
        .to_string();
    if form_client_id.is_some_and(|c| *c != client_id) {
        return Err(OAuthError::invalid_client(
            "client assertion: client_id differs from the assertion",
        ));
    }
    let validation = validation.for_client(&client_id);
    let mut client = state
        .store
        .client(&client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    if client.token_endpoint_auth_method != "private_key_jwt" {
        return Err(OAuthError::invalid_client(
            "this client is registered for mTLS authentication",
        ));
    }
    let keys_error =
        |e: String| OAuthError::invalid_client(format!("client assertion: the client's keys: {e}"));
    state
        .client_jwks
        .resolve(&mut client, false)
        .await
        .map_err(|e| keys_error(e.to_string()))?;
    if !client_keys(&client).is_some_and(|k| parsed.key_found(&k)) && client.jwks_uri.is_some() {
        // The client may have rotated its keys at its jwks_uri: fetch again (rate-limited).
        state
            .client_jwks
            .resolve(&mut client, true)
            .await
            .map_err(|e| keys_error(e.to_string()))?;
    }
    let keys = client_keys(&client)
        .ok_or_else(|| OAuthError::invalid_client("client assertion: the client has no registered keys"))?;
    let t = state.clock.now();
    let verified = validation
        .finish(parsed, &keys, t)
        .map_err(|d| bad(&validation, d))?;
    // RFC 7523 §3: the jti is never accepted twice; remembered as long as the assertion could pass.
    let jti = verified
        .claim_str("jti")
        .ok_or_else(|| bad(&validation, Denial::MalformedClaim("jti")))?;
    if !state
        .store
        .remember_jti(
            "client_assertion",
            &format!("{client_id}:{jti}"),
            verified.remember_until(&validation, t),
        )
        .await?
    {
        return Err(OAuthError::invalid_client("client assertion: jti already used"));
    }
    Ok(client)
}

/// A refusal of a JWT by fapi-core's validator, answered with that use's status and OAuth error
/// (`invalid_client` for a client assertion, `invalid_request_object` for a request object).
pub fn refusal(validation: &Validation, denial: &Denial) -> OAuthError {
    let status = StatusCode::from_u16(validation.status).unwrap_or(StatusCode::BAD_REQUEST);
    OAuthError::new(status, validation.error, validation.describe(denial))
}

/// The `aud` values a client assertion may name: the issuer identifier (FAPI 2.0 §5.3.2.1 "shall
/// accept its issuer identifier"), with or without a trailing slash, and, as RFC 7523 §3 allows,
/// the URLs of the endpoints that take client authentication on either listener.
fn assertion_audiences(state: &AppState) -> Vec<String> {
    let c = &state.config;
    let i = c.issuer.trim_end_matches('/');
    let m = c.mtls_base.trim_end_matches('/');
    let mut out = vec![c.issuer.clone(), i.to_string()];
    for p in ["/token", "/par", "/revoke", "/introspect"] {
        out.push(format!("{i}{p}"));
        out.push(format!("{m}{p}"));
    }
    out
}

/// The client's registered public keys: inline `jwks`, or those of its `jwks_uri` once
/// [`crate::client_jwks::ClientJwks::resolve`] has fetched them.
pub fn client_keys(client: &ClientMetadata) -> Option<Jwks> {
    client
        .jwks
        .as_ref()
        .and_then(|j| Jwks::from_value(j).ok())
        .filter(|k| !k.keys.is_empty())
}

fn registered_certificate(client: &ClientMetadata, der: &[u8], thumbprint: &str) -> bool {
    let Some(keys) = client
        .jwks
        .as_ref()
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
    else {
        return false;
    };
    keys.iter().any(|k| {
        let x5c = k
            .get("x5c")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok());
        x5c.as_deref() == Some(der) || k.get("x5t#S256").and_then(Value::as_str) == Some(thumbprint)
    })
}

fn subject_dn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// DN comparison insensitive to spacing after separators and to case of attribute names.
fn normalize_dn(dn: &str) -> String {
    dn.split([',', '+'])
        .map(|rdn| {
            let (k, v) = rdn.split_once('=').unwrap_or((rdn, ""));
            format!("{}={}", k.trim().to_ascii_uppercase(), v.trim())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The algorithms accepted for client assertions and request objects.
pub fn fapi_algorithms() -> [Algorithm; 3] {
    Algorithm::FAPI
}

#[cfg(test)]
mod tests {
    #[test]
    fn dn_normalization() {
        assert_eq!(
            super::normalize_dn("CN=fintech, O=Example"),
            super::normalize_dn("cn=fintech,o=Example")
        );
        assert_ne!(super::normalize_dn("CN=a"), super::normalize_dn("CN=b"));
    }
}
