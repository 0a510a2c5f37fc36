//! Pushed authorization requests (RFC 9126; FAPI 2.0 §5.3.2.2): client-authenticated, validated in
//! full here so the authorization endpoint only ever sees checked requests, stored under a
//! single-use `request_uri` for under 600 s. Signed request objects (JAR, RFC 9101) are accepted and,
//! for clients registered so (and the FAPI 2.0 Message Signing / FAPI 1 Advanced profiles), required.

use crate::app::Shared;
use crate::client_auth::{authenticate, client_keys, refusal};
use crate::error::{OAuthError, Result};
use crate::model::{ParRequest, PAR};
use crate::store::ClientMetadata;
use crate::tls::PeerCertificate;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use fapi_core::decision::{Denial, DpopDefect};
use fapi_core::dpop::{check_proof, DpopRules, ProofContext};
use fapi_core::verify::Validation;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// The prefix of our request URIs (RFC 9126 §2.2).
pub const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";
/// FAPI 2.0 §5.3.2.2: `expires_in` shall be under 600 s.
pub const MAX_PAR_LIFETIME: u64 = 599;

/// Parameters of one request, each at most once (RFC 6749 §3.1: "Request and response parameters
/// MUST NOT be included more than once").
pub type Params = BTreeMap<String, String>;

/// Collects form or query pairs, refusing repeated parameters.
pub fn collect(pairs: Vec<(String, String)>) -> Result<Params> {
    if pairs.len() > 64 {
        return Err(OAuthError::invalid_request("too many parameters"));
    }
    let mut out = Params::new();
    for (k, v) in pairs {
        if out.contains_key(&k) {
            return Err(OAuthError::invalid_request(format!("parameter {k} repeated")));
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn bounded<'a>(p: &'a Params, name: &str, max: usize) -> Result<Option<&'a str>> {
    match p.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) if v.len() > max => Err(OAuthError::invalid_request(format!(
            "{name} is too long (at most {max})"
        ))),
        Some(v) if v.chars().any(char::is_control) => Err(OAuthError::invalid_request(format!(
            "{name} has control characters"
        ))),
        Some(v) => Ok(Some(v)),
    }
}

fn is_b64url_43(v: &str) -> bool {
    v.len() == 43 && fapi_core::b64::is_alphabet(v)
}

/// Validates the authorization request parameters (from the form, or from the request object) of
/// an authenticated `client`, producing what the authorization endpoint will act on.
///
/// Checks: `response_type=code` (FAPI 2.0 §5.3.2.2-1); `redirect_uri` present and registered exactly
/// (§5.3.2.2-7/8); PKCE with `S256` only (§5.3.2.2-4, RFC 7636 §4.3); `scope` within the client's
/// registration (RFC 6749 §3.3, `invalid_scope`); `nonce` at most 64 characters (§5.3.2.2-11);
/// `response_mode` `query` or `jwt` (JARM); `dpop_jkt` a SHA-256 thumbprint (RFC 9449 §10); `prompt`
/// values of OIDC Core §3.1.2.1 with `none` alone; lengths bounded; `authorization_details` (RFC
/// 9396 §2, JSON text) of the types the client registered (§10), else `invalid_authorization_details`
/// (§5, [`crate::authorization_details`]). Does NOT check the DPoP header
/// (see [`par`]) nor client authentication.
pub fn validate(p: &Params, client: &ClientMetadata) -> Result<ParRequest> {
    if p.contains_key("request_uri") {
        // RFC 9126 §2.1: "request_uri ... MUST NOT be provided in this case".
        return Err(OAuthError::invalid_request(
            "request_uri is not allowed at the PAR endpoint",
        ));
    }
    if let Some(id) = p.get("client_id") {
        if *id != client.client_id {
            return Err(OAuthError::invalid_request(
                "client_id does not match the authenticated client",
            ));
        }
    }
    match bounded(p, "response_type", 64)? {
        Some("code") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                "response_type must be code",
            ))
        }
        None => return Err(OAuthError::invalid_request("response_type is required")),
    }
    let redirect_uri = bounded(p, "redirect_uri", 2048)?
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err(OAuthError::invalid_request(
            "redirect_uri is not registered for this client (exact match)",
        ));
    }
    match bounded(p, "code_challenge_method", 16)? {
        Some("S256") => {}
        Some("plain") => {
            return Err(OAuthError::invalid_request(
                "PKCE method plain is not allowed: use S256",
            ))
        }
        Some(_) => return Err(OAuthError::invalid_request("code_challenge_method must be S256")),
        None => {
            return Err(OAuthError::invalid_request(
                "PKCE is required: code_challenge_method=S256",
            ))
        }
    }
    let code_challenge = bounded(p, "code_challenge", 128)?
        .ok_or_else(|| OAuthError::invalid_request("PKCE is required: code_challenge"))?;
    if !is_b64url_43(code_challenge) {
        return Err(OAuthError::invalid_request(
            "code_challenge must be base64url(SHA-256(verifier)), 43 characters",
        ));
    }
    let scope = bounded(p, "scope", 1024)?.ok_or_else(|| OAuthError::invalid_scope("scope is required"))?;
    let allowed: Vec<&str> = client.scope.split_whitespace().collect();
    let mut scopes: Vec<&str> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.contains(&s) {
            return Err(OAuthError::invalid_scope(format!(
                "scope {s} is not allowed for this client"
            )));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("scope is required"));
    }
    let nonce = bounded(p, "nonce", 64)?;
    let state = bounded(p, "state", 1024)?;
    let response_mode = match bounded(p, "response_mode", 32)? {
        None | Some("query") => None,
        Some("jwt") | Some("query.jwt") => Some("jwt".to_string()),
        Some(_) => return Err(OAuthError::invalid_request("response_mode must be query or jwt")),
    };
    let acr_values = bounded(p, "acr_values", 512)?;
    let max_age = match bounded(p, "max_age", 12)? {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| OAuthError::invalid_request("max_age must be a number of seconds"))?,
        ),
    };
    let dpop_jkt = bounded(p, "dpop_jkt", 64)?;
    if dpop_jkt.is_some_and(|j| !is_b64url_43(j)) {
        return Err(OAuthError::invalid_request(
            "dpop_jkt must be a base64url SHA-256 JWK thumbprint",
        ));
    }
    let prompt = bounded(p, "prompt", 64)?;
    if let Some(prompt) = prompt {
        let values: Vec<&str> = prompt.split_whitespace().collect();
        if values
            .iter()
            .any(|v| !["none", "login", "consent", "select_account"].contains(v))
        {
            return Err(OAuthError::invalid_request("prompt has an unknown value"));
        }
        if values.contains(&"none") && values.len() > 1 {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
    }
    let ui_locales = bounded(p, "ui_locales", 64)?;
    let authorization_details = match p.get("authorization_details").map(String::as_str) {
        None | Some("") => None,
        Some(text) => Some(
            crate::authorization_details::parse_request(text, &client.authorization_details_types)
                .map_err(invalid_authorization_details)?,
        ),
    };
    let own = |v: Option<&str>| v.map(str::to_string);
    Ok(ParRequest {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope: scopes.join(" "),
        state: own(state),
        nonce: own(nonce),
        code_challenge: code_challenge.to_string(),
        response_mode,
        acr_values: own(acr_values),
        max_age,
        dpop_jkt: own(dpop_jkt),
        prompt: own(prompt),
        ui_locales: own(ui_locales),
        authorization_details,
    })
}

/// RFC 9396 §5: `invalid_authorization_details`, 400, naming the detail and the field.
pub fn invalid_authorization_details(e: crate::authorization_details::InvalidDetails) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_authorization_details", e.0)
}

/// A verified request object: its parameters, its `jti`, and until when to remember that `jti`.
#[derive(Debug)]
pub struct RequestObject {
    pub params: Params,
    pub jti: Option<String>,
    /// Until when the `jti` must be remembered (fapi-core: after `exp`).
    pub remember_until: i64,
}

/// Verifies a signed request object (RFC 9101 §6) with fapi-core's validator
/// ([`Validation::request_object`]): a JWS (not encrypted, not `none`) with PS256/ES256/EdDSA by a key
/// of the client's registered JWKS; `iss` = client_id and `aud` = the issuer (RFC 9101 §4, FAPI 2.0
/// Message Signing §5.3.1); `exp` in the future, `nbf` not in the future, no older than 60 minutes and
/// at most 60 minutes before `exp` (FAPI 2.0 Message Signing §5.3.1, FAPI 1 Advanced §5.2.2-13, -17).
/// Returns its parameters only: the caller uses nothing from outside it (RFC 9101 §6.3, FAPI 1
/// Advanced §5.2.2-10).
pub fn verify_request_object(
    jwt: &str,
    client: &ClientMetadata,
    issuer: &str,
    now: i64,
) -> Result<RequestObject> {
    let validation = Validation::request_object(issuer).for_client(&client.client_id);
    let bad = |d: String| OAuthError::new(StatusCode::BAD_REQUEST, validation.error, d);
    let parsed = validation.parse(jwt).map_err(|d| refusal(&validation, &d))?;
    let keys = client_keys(client).ok_or_else(|| bad("the client has no registered keys".to_string()))?;
    let verified = validation
        .finish(parsed, &keys, now)
        .map_err(|d| refusal(&validation, &d))?;
    let c = &verified.claims;
    if c.get("client_id")
        .is_some_and(|v| v.as_str() != Some(client.client_id.as_str()))
    {
        return Err(bad("request object client_id differs from the client".to_string()));
    }
    let mut params = Params::new();
    for (k, v) in c {
        if ["iss", "aud", "exp", "nbf", "iat", "jti", "sub"].contains(&k.as_str()) {
            continue;
        }
        if k == "request" || k == "request_uri" {
            return Err(bad(
                "request objects cannot nest request or request_uri".to_string()
            ));
        }
        if k == "authorization_details" {
            // RFC 9396 §3: in a request object the claim is the JSON array itself, not its text.
            if !v.is_array() {
                return Err(invalid_authorization_details(
                    crate::authorization_details::InvalidDetails(
                        "in a request object, authorization_details must be a JSON array (RFC 9396 §3)"
                            .into(),
                    ),
                ));
            }
            params.insert(k.clone(), v.to_string());
            continue;
        }
        match v {
            Value::String(s) => {
                params.insert(k.clone(), s.clone());
            }
            Value::Number(n) => {
                params.insert(k.clone(), n.to_string());
            }
            // Objects and arrays (e.g. `claims`, unsupported) are ignored like unknown parameters.
            _ => {}
        }
    }
    let jti = verified.claim_str("jti").map(str::to_string);
    Ok(RequestObject {
        params,
        jti,
        remember_until: verified.remember_until(&validation, now),
    })
}

/// Whether the client must send a signed request object.
pub fn requires_request_object(client: &ClientMetadata) -> bool {
    client.require_signed_request_object
        || client.profile == "fapi2-message-signing"
        || client.profile == "fapi1-advanced"
}

/// Checks a DPoP header on the PAR request (RFC 9449 §10.1): its key binds the code (`dpop_jkt`).
/// The proof's `htu` may be the PAR endpoint of either listener.
async fn check_dpop(s: &Shared, headers: &HeaderMap, now: i64) -> Result<Option<String>> {
    let values: Vec<&str> = headers
        .get_all("dpop")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        if headers.contains_key("dpop") {
            return Err(OAuthError::invalid_dpop_proof("DPoP header is not readable"));
        }
        return Ok(None);
    }
    let rules = DpopRules::default();
    let mut last = Denial::DpopProof(DpopDefect::Htu);
    for base in [&s.config.issuer, &s.config.mtls_base] {
        let Some(htu) = fapi_core::uri::normalize(&format!("{}/par", base.trim_end_matches('/'))) else {
            continue;
        };
        let ctx = ProofContext {
            method: "POST",
            htu: &htu,
            access_token: None,
        };
        match check_proof(&values, &ctx, &rules, Some(&s.nonces), now) {
            Ok(proof) => {
                let key = fapi_core::b64::encode(proof.replay_key);
                if !s.store.remember_jti("dpop", &key, proof.remember_until).await? {
                    return Err(OAuthError::invalid_dpop_proof("DPoP proof replayed"));
                }
                return Ok(Some(proof.jkt));
            }
            Err(Denial::DpopProof(DpopDefect::Htu)) => continue,
            Err(e) => {
                last = e;
                break;
            }
        }
    }
    Err(match last {
        Denial::UseDpopNonce => OAuthError::use_dpop_nonce(s.nonces.issue(now)),
        other => OAuthError::invalid_dpop_proof(other.description()),
    })
}

/// `POST /par`.
pub async fn par(
    State(s): State<Shared>,
    peer: PeerCertificate,
    headers: HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response> {
    let result = par_inner(&s, peer, &headers, form).await;
    s.metrics
        .count("par", result.as_ref().map(|_| "ok").unwrap_or_else(|e| e.error));
    result
}

async fn par_inner(
    s: &Shared,
    peer: PeerCertificate,
    headers: &HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<Response> {
    let Form(pairs) = form.map_err(crate::error::form_rejected)?;
    // A failing generator is found before the assertion's jti is spent (src/random.rs).
    s.random.fill(&mut [0u8; 16])?;
    let outer = collect(pairs)?;
    let auth_form: HashMap<String, String> = outer.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let auth = authenticate(s, &auth_form, &peer).await?;
    let mut client = auth.client;
    if outer.get("client_id").is_some_and(|c| *c != client.client_id) {
        return Err(OAuthError::invalid_client(
            "client_id does not match the authenticated client",
        ));
    }
    if !client.grant_types.iter().any(|g| g == "authorization_code") {
        return Err(OAuthError::unauthorized_client(
            "this client may not use the authorization code grant",
        ));
    }
    let t = s.clock.now();
    let params = match outer.get("request") {
        Some(jwt) => {
            let mut ro = verify_request_object(jwt, &client, &s.config.issuer, t);
            if ro.is_err() && client.jwks_uri.is_some() {
                // Perhaps signed with a key the client has just published: fetch again (rate-limited).
                if s.client_jwks.resolve(&mut client, true).await.is_ok() {
                    ro = verify_request_object(jwt, &client, &s.config.issuer, t);
                }
            }
            let ro = ro?;
            if let Some(jti) = &ro.jti {
                if !s
                    .store
                    .remember_jti(
                        "request_object",
                        &format!("{}:{jti}", client.client_id),
                        ro.remember_until,
                    )
                    .await?
                {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_object",
                        "request object jti already used",
                    ));
                }
            }
            ro.params
        }
        None if requires_request_object(&client) => {
            return Err(OAuthError::invalid_request(
                "this client must send a signed request object (request)",
            ))
        }
        None => outer,
    };
    let mut request = validate(&params, &client)?;
    if let Some(jkt) = check_dpop(s, headers, t).await? {
        match &request.dpop_jkt {
            Some(given) if *given != jkt => {
                return Err(OAuthError::invalid_request(
                    "dpop_jkt does not match the key of the DPoP proof",
                ));
            }
            _ => request.dpop_jkt = Some(jkt),
        }
    }
    let lifetime = s.config.tokens.par_lifetime.clamp(1, MAX_PAR_LIFETIME);
    let request_uri = format!("{REQUEST_URI_PREFIX}{}", s.random.token(32)?);
    s.store
        .put_item(PAR, &request_uri, &request, t + lifetime as i64)
        .await?;
    tracing::info!(client_id = %client.client_id, method = auth.method, "pushed authorization request");
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"request_uri": request_uri, "expires_in": lifetime})),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fapi_core::alg::Algorithm;
    use fapi_core::sign::SigningKey;

    const ISSUER: &str = "https://as.example";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(key: Option<&SigningKey>) -> ClientMetadata {
        ClientMetadata {
            client_id: "fintech".into(),
            client_name: "Fintech".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            token_endpoint_auth_method: "private_key_jwt".into(),
            jwks: key.map(|k| json!({"keys": [k.public_jwk()]})),
            jwks_uri: None,
            tls_client_auth_subject_dn: None,
            token_binding: "mtls".into(),
            scope: "openid accounts payments".into(),
            grant_types: vec!["authorization_code".into()],
            require_signed_request_object: false,
            profile: "fapi2".into(),
            authorization_signed_response_alg: None,
            id_token_encrypted_response_alg: None,
            id_token_encrypted_response_enc: None,
            authorization_encrypted_response_alg: None,
            authorization_encrypted_response_enc: None,
            authorization_details_types: vec!["payment_initiation".into()],
        }
    }

    fn params(extra: &[(&str, &str)], without: &[&str]) -> Params {
        let mut p: Params = [
            ("response_type", "code"),
            ("client_id", "fintech"),
            ("redirect_uri", "https://app.example/cb"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("scope", "openid accounts"),
            ("state", "s1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            p.insert(k.to_string(), v.to_string());
        }
        for k in without {
            p.remove(*k);
        }
        p
    }

    fn error_of(r: Result<ParRequest>) -> (&'static str, String) {
        match r {
            Ok(_) => ("ok", String::new()),
            Err(e) => (e.error, e.description),
        }
    }

    #[test]
    fn accepts_a_complete_request() {
        let r = validate(
            &params(
                &[
                    ("nonce", "n"),
                    ("response_mode", "jwt"),
                    ("max_age", "300"),
                    ("acr_values", "urn:bank:acr:totp"),
                ],
                &[],
            ),
            &client(None),
        );
        assert!(
            matches!(&r, Ok(p) if p.scope == "openid accounts" && p.response_mode.as_deref() == Some("jwt") && p.max_age == Some(300) && p.state.as_deref() == Some("s1"))
        );
    }

    #[test]
    fn pkce_s256_is_required() {
        let c = client(None);
        assert_eq!(
            error_of(validate(
                &params(&[], &["code_challenge", "code_challenge_method"]),
                &c
            ))
            .0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[], &["code_challenge_method"]), &c)).0,
            "invalid_request"
        );
        let (e, d) = error_of(validate(&params(&[("code_challenge_method", "plain")], &[]), &c));
        assert_eq!(e, "invalid_request");
        assert!(d.contains("plain"));
        assert_eq!(
            error_of(validate(&params(&[("code_challenge", "short")], &[]), &c)).0,
            "invalid_request"
        );
    }

    #[test]
    fn redirect_uri_required_and_exact() {
        let c = client(None);
        assert_eq!(
            error_of(validate(&params(&[], &["redirect_uri"]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(
                &params(&[("redirect_uri", "https://app.example/cb/")], &[]),
                &c
            ))
            .0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(
                &params(&[("redirect_uri", "https://app.example/cb?x=1")], &[]),
                &c
            ))
            .0,
            "invalid_request"
        );
    }

    #[test]
    fn response_type_code_only() {
        let c = client(None);
        assert_eq!(
            error_of(validate(&params(&[("response_type", "code id_token")], &[]), &c)).0,
            "unsupported_response_type"
        );
        assert_eq!(
            error_of(validate(&params(&[("response_type", "token")], &[]), &c)).0,
            "unsupported_response_type"
        );
        assert_eq!(
            error_of(validate(&params(&[], &["response_type"]), &c)).0,
            "invalid_request"
        );
    }

    #[test]
    fn scope_within_registration() {
        let c = client(None);
        assert_eq!(
            error_of(validate(&params(&[("scope", "openid admin")], &[]), &c)).0,
            "invalid_scope"
        );
        assert_eq!(
            error_of(validate(&params(&[("scope", " ")], &[]), &c)).0,
            "invalid_scope"
        );
        assert!(
            matches!(validate(&params(&[("scope", "accounts  accounts payments")], &[]), &c), Ok(p) if p.scope == "accounts payments")
        );
    }

    #[test]
    fn other_parameter_checks() {
        let c = client(None);
        let long_nonce = "n".repeat(65);
        assert_eq!(
            error_of(validate(&params(&[("nonce", &long_nonce)], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("nonce", &"n".repeat(64))], &[]), &c)).0,
            "ok"
        );
        assert_eq!(
            error_of(validate(&params(&[("response_mode", "fragment")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("response_mode", "form_post")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("max_age", "-1")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("dpop_jkt", "abc")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("prompt", "none login")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("prompt", "whatever")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("client_id", "other")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("request_uri", "urn:x")], &[]), &c)).0,
            "invalid_request"
        );
        assert_eq!(
            error_of(validate(&params(&[("state", "a\nb")], &[]), &c)).0,
            "invalid_request"
        );
    }

    fn transfer() -> Value {
        json!({"type": "payment_initiation",
               "instructedAmount": {"currency": "JPY", "amount": 5000},
               "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"},
               "remittanceInformationUnstructured": "dinner"})
    }

    #[test]
    fn authorization_details_checked_for_the_client_rfc9396_section_5() {
        let c = client(None);
        let text = json!([transfer()]).to_string();
        let p = validate(&params(&[("authorization_details", &text)], &[]), &c);
        let details = p.map(|p| p.authorization_details).unwrap_or_default();
        let mut canonical = transfer();
        canonical["instructedAmount"]["amount"] = json!("5000");
        assert_eq!(details, Some(vec![canonical]));
        assert!(matches!(validate(&params(&[], &[]), &c), Ok(p) if p.authorization_details.is_none()));
        // Each defect is invalid_authorization_details (400) naming the field.
        let with = |f: &dyn Fn(&mut Value)| {
            let mut t = transfer();
            f(&mut t);
            error_of(validate(
                &params(&[("authorization_details", &json!([t]).to_string())], &[]),
                &c,
            ))
        };
        for (got, want) in [
            (
                with(&|t| t["type"] = json!("account_information")),
                "unknown type",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!("0")),
                "positive whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["amount"] = json!(12.5)),
                "whole number",
            ),
            (
                with(&|t| t["instructedAmount"]["currency"] = json!("USD")),
                "JPY only",
            ),
            (
                with(&|t| t["debtorAccount"] = json!({"accountId": "taro-1"})),
                "debtorAccount",
            ),
            (with(&|t| t["extra"] = json!(1)), "unknown field"),
            (
                with(&|t| {
                    t.as_object_mut().map(|o| o.remove("creditorAccount"));
                }),
                "creditorAccount is missing",
            ),
        ] {
            assert_eq!(got.0, "invalid_authorization_details", "{}", got.1);
            assert!(got.1.contains(want), "{} should say {want}", got.1);
        }
        for bad in ["not json", "{}", "[]", "\"text\""] {
            let (e, _) = error_of(validate(&params(&[("authorization_details", bad)], &[]), &c));
            assert_eq!(e, "invalid_authorization_details", "{bad}");
        }
        // A client registered without the type (RFC 9396 §10) may not ask for it.
        let mut plain = client(None);
        plain.authorization_details_types.clear();
        let (e, d) = error_of(validate(
            &params(&[("authorization_details", &text)], &[]),
            &plain,
        ));
        assert_eq!(e, "invalid_authorization_details");
        assert!(d.contains("not allowed for this client"), "{d}");
    }

    #[test]
    fn authorization_details_in_a_request_object_is_an_array_rfc9396_section_3(
    ) -> std::result::Result<(), String> {
        let now = 1_700_000_000;
        let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).map_err(|e| e.0)?;
        let c = client(Some(&key));
        let mut claims = ro_claims(now);
        claims["authorization_details"] = json!([transfer()]);
        let jwt = key.sign_jwt(None, &claims).map_err(|e| e.0)?;
        let ro = verify_request_object(&jwt, &c, ISSUER, now).map_err(|e| e.description)?;
        let p = validate(&ro.params, &c).map_err(|e| e.description)?;
        assert_eq!(
            p.authorization_details.map(|d| d.len()),
            Some(1),
            "the array claim is taken"
        );
        // The claim as text (form encoding inside a JWT) is refused.
        claims["authorization_details"] = json!(json!([transfer()]).to_string());
        claims["jti"] = json!("j2");
        let jwt = key.sign_jwt(None, &claims).map_err(|e| e.0)?;
        let err = ro_error(verify_request_object(&jwt, &c, ISSUER, now));
        assert!(err.starts_with("invalid_authorization_details: "), "{err}");
        // An invalid detail inside the array: the same error as in a form.
        claims["authorization_details"] = json!([{"type": "payment_initiation"}]);
        let jwt = key.sign_jwt(None, &claims).map_err(|e| e.0)?;
        let ro = verify_request_object(&jwt, &c, ISSUER, now).map_err(|e| e.description)?;
        assert_eq!(
            error_of(validate(&ro.params, &c)).0,
            "invalid_authorization_details"
        );
        Ok(())
    }

    #[test]
    fn repeated_parameters_refused() {
        let pairs = vec![
            ("scope".to_string(), "a".to_string()),
            ("scope".to_string(), "b".to_string()),
        ];
        assert!(matches!(collect(pairs), Err(e) if e.error == "invalid_request"));
    }

    fn ro_claims(now: i64) -> Value {
        json!({
            "iss": "fintech", "aud": ISSUER, "exp": now + 300, "nbf": now - 5, "jti": "j1",
            "client_id": "fintech", "response_type": "code", "redirect_uri": "https://app.example/cb",
            "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": "openid accounts",
            "state": "from-ro", "max_age": 600,
        })
    }

    fn ro_error(r: Result<RequestObject>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => format!("{}: {}", e.error, e.description),
        }
    }

    #[test]
    fn request_object_verified_and_used_alone() -> std::result::Result<(), String> {
        let now = 1_700_000_000;
        let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).map_err(|e| e.0)?;
        let c = client(Some(&key));
        let jwt = key
            .sign_jwt(Some("oauth-authz-req+jwt"), &ro_claims(now))
            .map_err(|e| e.0)?;
        let ro = verify_request_object(&jwt, &c, ISSUER, now).map_err(|e| e.description)?;
        assert_eq!(ro.params.get("state").map(String::as_str), Some("from-ro"));
        assert_eq!(ro.params.get("max_age").map(String::as_str), Some("600"));
        assert!(!ro.params.contains_key("iss"));
        assert_eq!(ro.jti.as_deref(), Some("j1"));
        let p = validate(&ro.params, &c).map_err(|e| e.description)?;
        assert_eq!(p.max_age, Some(600));
        Ok(())
    }

    #[test]
    fn request_object_defects() -> std::result::Result<(), String> {
        let now = 1_700_000_000;
        let key = SigningKey::generate(Algorithm::ES256, Some("k1".into())).map_err(|e| e.0)?;
        let other = SigningKey::generate(Algorithm::ES256, Some("k1".into())).map_err(|e| e.0)?;
        let c = client(Some(&key));
        let sign = |k: &SigningKey, f: &dyn Fn(&mut Value)| -> std::result::Result<String, String> {
            let mut claims = ro_claims(now);
            f(&mut claims);
            k.sign_jwt(None, &claims).map_err(|e| e.0)
        };
        let check = |jwt: &str| ro_error(verify_request_object(jwt, &c, ISSUER, now));
        assert!(check(&sign(&other, &|_| {})?).contains("signature invalid"));
        assert!(check(&sign(&key, &|c| c["iss"] = json!("someone"))?).contains("iss"));
        assert!(check(&sign(&key, &|c| c["aud"] = json!("https://evil.example"))?).contains("aud"));
        assert!(check(&sign(&key, &|c| c["aud"] = json!(["https://x", ISSUER]))?) == "ok");
        assert!(check(&sign(&key, &|c| c["exp"] = json!(now - 1))?).contains("expired"));
        assert!(check(&sign(&key, &|c| {
            c.as_object_mut().map(|o| o.remove("nbf"));
        })?)
        .contains("nbf"));
        assert!(check(&sign(&key, &|c| c["nbf"] = json!(now + 60))?).contains("not valid yet"));
        assert!(check(&sign(&key, &|c| {
            c["nbf"] = json!(now - 10);
            c["exp"] = json!(now + 3591);
        })?)
        .contains("60 minutes"));
        assert!(check(&sign(&key, &|c| c["client_id"] = json!("other"))?).contains("client_id"));
        assert!(check(&sign(&key, &|c| c["request_uri"] = json!("urn:x"))?).contains("nest"));
        // alg none and RS256 are refused.
        let none = format!(
            "{}.{}.",
            fapi_core::b64::encode(br#"{"alg":"none"}"#),
            fapi_core::b64::encode(ro_claims(now).to_string())
        );
        assert!(check(&none).contains("invalid_request_object"));
        let rs = key
            .sign_with_header(&json!({"alg": "RS256", "kid": "k1"}), &ro_claims(now))
            .map_err(|e| e.0)?;
        assert!(check(&rs).contains("algorithm"));
        let dpop_typed = key
            .sign_with_header(
                &json!({"alg": "ES256", "kid": "k1", "typ": "dpop+jwt"}),
                &ro_claims(now),
            )
            .map_err(|e| e.0)?;
        assert!(check(&dpop_typed).contains("typ"));
        assert!(check("a.b.c.d.e").contains("encrypted"));
        Ok(())
    }

    #[test]
    fn profiles_that_require_request_objects() {
        let mut c = client(None);
        assert!(!requires_request_object(&c));
        c.profile = "fapi2-message-signing".into();
        assert!(requires_request_object(&c));
        c.profile = "fapi2".into();
        c.require_signed_request_object = true;
        assert!(requires_request_object(&c));
    }
}
