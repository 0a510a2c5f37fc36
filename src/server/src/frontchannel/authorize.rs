//! The authorization endpoint and the flow behind it: the session's [`Flow`], the authentication
//! levels, and the answer to the client (code, `iss`, JARM). The steps a person takes are their own
//! modules: sign-in ([`super::signin`], [`super::passkey`]) and consent ([`super::consent`]); every
//! POST of the flow starts with the [`super::posted::Posted`] extractor.
//!
//! `GET /authorize` takes only `client_id` and a `request_uri` from PAR (FAPI 2.0 §5.3.2.2-2, RFC 9126
//! §4); anything else gets an error page, never a redirect, since no redirect URI is verified then. It
//! starts a browser session and sends the browser to `GET /login`, which shows the next step:
//! sign-in (password), the TOTP step when the request's `acr_values` accept only stronger methods,
//! then consent. Approve creates a grant and a single-use code (at most 60 s, FAPI 2.0 §5.3.2.1) and
//! redirects (303) to the registered `redirect_uri` with `code`, `state` and `iss` (RFC 9207), or a
//! JARM response JWT (`response_mode=jwt`).
//!
//! The `request_uri` is used up at `GET /authorize` (RFC 9126 §4: single use; a second
//! `/authorize` with it, or one after its 60 s, gets an error page): the pushed request then lives in
//! the browser's [`LoginSession`], which the person has [`FLOW_LIFETIME`] to finish (sign-in, TOTP or
//! passkey, consent). The flow is answered once ([`finish_flow`], atomic across instances).
//!
//! Authentication levels (`acr`, with RFC 8176 `amr`): password alone `urn:bank:acr:password`
//! (`pwd`); password then TOTP `urn:bank:acr:totp` (`pwd otp`); passkeys `urn:bank:acr:passkey`
//! (`hwk user`, [`super::passkey`]). A signed-in session is reused by a later authorization
//! request unless `prompt=login` or `max_age` (OIDC Core §3.1.2.1) asks for a fresh sign-in.

use super::pages::Msg;
use super::par::collect;
use super::{choose_lang, form_encode, load_session, new_session, see_other, FLOW_LIFETIME};
use crate::app::{Shared, ACR_PASSKEY, ACR_PASSWORD, ACR_TOTP};
use crate::error::{OAuthError, PageError, PageResult, Result};
use crate::model::{LoginSession, ParRequest, PAR, SESSION};
use crate::store::{ClientMetadata, Taken};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

type QueryPairs = std::result::Result<Query<Vec<(String, String)>>, QueryRejection>;

/// How strong a sign-in is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Password,
    Totp,
    Passkey,
}

impl Level {
    pub fn acr(self) -> &'static str {
        match self {
            Level::Password => ACR_PASSWORD,
            Level::Totp => ACR_TOTP,
            Level::Passkey => ACR_PASSKEY,
        }
    }
}

/// The level the request's `acr_values` (space-separated, in order of preference) asks for: when
/// only TOTP or passkey values are acceptable, a TOTP step at least; otherwise the password. Unknown
/// values are ignored (OIDC Core §3.1.2.1: `acr_values` is a voluntary request).
pub fn required_level(acr_values: Option<&str>) -> Level {
    let known: Vec<&str> = acr_values
        .unwrap_or("")
        .split_whitespace()
        .filter(|v| [ACR_PASSWORD, ACR_TOTP, ACR_PASSKEY].contains(v))
        .collect();
    if known.is_empty() || known.contains(&ACR_PASSWORD) {
        Level::Password
    } else {
        Level::Totp
    }
}

/// The level a pushed request needs: what its `acr_values` ask for ([`required_level`]) and, when
/// it carries a transfer (RFC 9396 `payment_initiation`), at least [`Level::Totp`] (TOTP or a
/// passkey) whatever `acr_values` says: the shipped policy's transfer rule accepts only
/// `urn:bank:acr:totp` and `urn:bank:acr:passkey`, and a payment-bound grant is never made on a
/// password alone (FAPI 2.0 §5.3.2.2 leaves the level to the AS; FISC: strong authentication for
/// 更新系 APIs).
pub fn request_level(p: &ParRequest) -> Level {
    let asked = required_level(p.acr_values.as_deref());
    let transfers = p
        .authorization_details
        .as_deref()
        .is_some_and(crate::authorization_details::needs_debtor);
    if transfers {
        asked.max(Level::Totp)
    } else {
        asked
    }
}

/// What the session's `amr` proves.
pub fn achieved_level(amr: &[String]) -> Option<Level> {
    let has = |m: &str| amr.iter().any(|a| a == m);
    if has("hwk") {
        Some(Level::Passkey)
    } else if has("pwd") && has("otp") {
        Some(Level::Totp)
    } else if has("pwd") {
        Some(Level::Password)
    } else {
        None
    }
}

/// OIDC `max_age`: the sign-in is too old for this request.
pub fn too_old(auth_time: Option<i64>, max_age: Option<u64>, now: i64) -> bool {
    match (auth_time, max_age) {
        (None, _) => true,
        (Some(t), Some(m)) => now - t > m as i64,
        (Some(_), None) => false,
    }
}

fn prompt_has(p: &ParRequest, value: &str) -> bool {
    p.prompt
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .any(|v| v == value)
}

/// Where the session's flow stands.
pub enum Flow {
    /// Signing in for the connected-apps page.
    Apps,
    Authorize(Box<ParRequest>, Box<ClientMetadata>),
    /// The request expired, was used, or its client is gone.
    Gone,
}

pub(super) async fn flow_of(s: &Shared, sess: &LoginSession) -> Result<Flow> {
    if sess.request_uri.is_empty() {
        return Ok(Flow::Apps);
    }
    let Some(p) = sess.par.clone() else {
        return Ok(Flow::Gone);
    };
    if sess.flow_expires_at.is_none_or(|until| until <= s.clock.now()) {
        return Ok(Flow::Gone);
    }
    let Some(mut client) = s.store.client(&p.client_id).await? else {
        return Ok(Flow::Gone);
    };
    // Keys by reference (jwks_uri) for JARM encryption; without them encryption fails with its error.
    if let Err(e) = s.client_jwks.resolve(&mut client, false).await {
        tracing::warn!(client_id = %client.client_id, error = %e, "client keys unavailable");
    }
    Ok(Flow::Authorize(Box::new(p), Box::new(client)))
}

pub(super) fn ui_locales(flow: &Flow) -> Option<&str> {
    match flow {
        Flow::Authorize(p, _) => p.ui_locales.as_deref(),
        _ => None,
    }
}

/// The authorization response (RFC 6749 §4.1.2 / §4.1.2.1) with `iss` (RFC 9207 §2), or with
/// `response_mode=jwt` a JARM response JWT signed by the current key (`iss`, `aud` = client_id,
/// `exp` in 60 s, and the response parameters), encrypted to the client (JARM §2.3, a nested JWT with
/// `cty` JWT) when it registered `authorization_encrypted_response_alg`/`_enc`. Returns the redirect
/// location.
pub fn response_location(
    issuer: &str,
    key: &fapi_core::sign::SigningKey,
    client: &ClientMetadata,
    p: &ParRequest,
    fields: &[(&str, &str)],
    now: i64,
) -> Result<String> {
    let mut pairs: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(state) = &p.state {
        pairs.push(("state".into(), state.clone()));
    }
    let pairs = if p.response_mode.as_deref() == Some("jwt") {
        let mut claims = json!({"iss": issuer, "aud": p.client_id, "exp": now + 60, "iat": now});
        for (k, v) in &pairs {
            claims[k.as_str()] = json!(v);
        }
        vec![("response".to_string(), jarm_response(key, client, &claims)?)]
    } else {
        pairs.push(("iss".into(), issuer.to_string()));
        pairs
    };
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    let sep = if p.redirect_uri.contains('?') { '&' } else { '?' };
    Ok(format!("{}{sep}{}", p.redirect_uri, query.join("&")))
}

/// The JARM response (JARM §2.3): signed with the current key, in the client's
/// `authorization_signed_response_alg` (registration only accepts the current key's algorithm; after a
/// change of algorithm the response is refused rather than signed with one the client does not
/// expect), then encrypted when the client registered it (sign then encrypt, `cty` JWT, RFC 7519 §5.2).
fn jarm_response(
    key: &fapi_core::sign::SigningKey,
    client: &ClientMetadata,
    claims: &serde_json::Value,
) -> Result<String> {
    if let Some(alg) = &client.authorization_signed_response_alg {
        if alg != key.alg().as_str() {
            return Err(OAuthError::server(format!(
                "JARM: the client registered authorization_signed_response_alg {}, the signing key is {}",
                crate::backchannel::support::sanitize(alg),
                key.alg()
            )));
        }
    }
    let jwt = key
        .sign_jwt(None, claims)
        .map_err(|e| OAuthError::server(format!("JARM signing: {e:?}")))?;
    match (
        &client.authorization_encrypted_response_alg,
        &client.authorization_encrypted_response_enc,
    ) {
        (Some(alg), Some(enc)) => {
            let jwks = client
                .jwks
                .as_ref()
                .ok_or_else(|| OAuthError::server("JARM encryption without client keys"))?;
            crate::jwe::encrypt_to_client(jwks, alg, enc, jwt.as_bytes(), Some("JWT"))
                .map_err(|e| OAuthError::server(format!("JARM encryption: {e}")))
        }
        (Some(_), None) => Err(OAuthError::server(
            "JARM: authorization_encrypted_response_enc is not registered",
        )),
        _ => Ok(jwt),
    }
}

/// Answers the session's authorization request: returns the request the first time only (a single
/// answer per `request_uri`, atomic across instances and concurrent POSTs), and clears the flow from
/// the session (which stays signed in).
pub(super) async fn finish_flow(
    s: &Shared,
    key: &str,
    sess: &mut LoginSession,
) -> Result<Option<ParRequest>> {
    let par = sess.par.take();
    let until = sess.flow_expires_at.take().unwrap_or(0).max(s.clock.now()) + 60;
    let request_uri = std::mem::take(&mut sess.request_uri);
    s.store.update_item(SESSION, key, sess).await?;
    let Some(p) = par else { return Ok(None) };
    let first = s.store.remember_jti("authz_answer", &request_uri, until).await?;
    Ok(first.then_some(p))
}

pub(super) fn redirect_error(
    s: &Shared,
    client: &ClientMetadata,
    p: &ParRequest,
    error: &str,
    description: &str,
) -> PageResult<Response> {
    let loc = response_location(
        &s.config.issuer,
        &s.keys.get().current,
        client,
        p,
        &[("error", error), ("error_description", description)],
        s.clock.now(),
    )?;
    Ok(see_other(&loc, &[]))
}

/// `GET /authorize?client_id=..&request_uri=..`.
pub async fn authorize(
    State(s): State<Shared>,
    headers: HeaderMap,
    query: QueryPairs,
) -> PageResult<Response> {
    let lang = choose_lang(None, &headers, None);
    let refuse = |status: StatusCode, msg: Msg, outcome: &str| {
        s.metrics.count("authorize", outcome);
        Err(PageError::new(status, lang, msg))
    };
    let Ok(Query(pairs)) = query else {
        return refuse(StatusCode::BAD_REQUEST, Msg::RequestMissing, "invalid_request");
    };
    let Ok(q) = collect(pairs) else {
        return refuse(StatusCode::BAD_REQUEST, Msg::RequestMissing, "invalid_request");
    };
    // FAPI 2.0 §5.3.2.2-2: only requests pushed with PAR; other parameters are not used.
    let (Some(request_uri), Some(client_id)) = (q.get("request_uri"), q.get("client_id")) else {
        return refuse(StatusCode::BAD_REQUEST, Msg::RequestMissing, "invalid_request");
    };
    if request_uri.len() > 256 || client_id.len() > 256 {
        return refuse(StatusCode::BAD_REQUEST, Msg::RequestMissing, "invalid_request");
    }
    let t = s.clock.now();
    // Drawn before the request_uri is spent: a failing generator leaves it unused (src/random.rs).
    let (csrf, sid) = (s.random.token(32)?, s.random.token(32)?);
    // Looked at first, so that a wrong client_id does not use it up.
    let Some(peeked) = s.store.item::<ParRequest>(PAR, request_uri, t).await? else {
        let outcome = match s.store.take_item::<ParRequest>(PAR, request_uri, t).await? {
            Taken::Reused(_) => "reused_request_uri",
            _ => "invalid_request_uri",
        };
        return refuse(StatusCode::BAD_REQUEST, Msg::RequestExpired, outcome);
    };
    if peeked.client_id != *client_id {
        return refuse(StatusCode::BAD_REQUEST, Msg::ClientMismatch, "invalid_request");
    }
    let Some(mut client) = s.store.client(client_id).await? else {
        return refuse(StatusCode::BAD_REQUEST, Msg::UnknownClient, "invalid_client");
    };
    if let Err(e) = s.client_jwks.resolve(&mut client, false).await {
        tracing::warn!(client_id = %client.client_id, error = %e, "client keys unavailable");
    }
    // RFC 9126 §4: single use, atomically (a concurrent second /authorize sees it used).
    let Taken::Fresh(p) = s.store.take_item::<ParRequest>(PAR, request_uri, t).await? else {
        return refuse(StatusCode::BAD_REQUEST, Msg::RequestExpired, "reused_request_uri");
    };
    // A live signed-in session carries over, unless the request wants a fresh sign-in.
    let old = load_session(&s, &headers).await?;
    let mut session = LoginSession {
        request_uri: request_uri.clone(),
        csrf,
        par: Some(p.clone()),
        flow_expires_at: Some(t + FLOW_LIFETIME),
        ..Default::default()
    };
    if let Some((old_key, old)) = old {
        s.store.delete_item(SESSION, &old_key).await?;
        if old.user_id.is_some() && !prompt_has(&p, "login") && !too_old(old.auth_time, p.max_age, t) {
            session.user_id = old.user_id;
            session.amr = old.amr;
            session.acr = old.acr;
            session.auth_time = old.auth_time;
        }
    }
    // OIDC Core §3.1.2.1 prompt=none: no page may be shown, and consent always needs one here.
    if prompt_has(&p, "none") {
        s.metrics.count("authorize", "prompt_none");
        let error = if session.user_id.is_some() {
            "consent_required"
        } else {
            "login_required"
        };
        return redirect_error(&s, &client, &p, error, "prompt=none, but the user must interact");
    }
    let cookie = new_session(&s, sid, &session).await?;
    s.metrics.count("authorize", "ok");
    Ok(see_other("/login", &[cookie]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fapi_core::alg::Algorithm;
    use fapi_core::sign::SigningKey;

    #[test]
    fn levels_from_acr_values() {
        assert_eq!(required_level(None), Level::Password);
        assert_eq!(required_level(Some("urn:unknown")), Level::Password);
        assert_eq!(
            required_level(Some(&format!("{ACR_TOTP} {ACR_PASSWORD}"))),
            Level::Password
        );
        assert_eq!(required_level(Some(ACR_TOTP)), Level::Totp);
        assert_eq!(
            required_level(Some(&format!("{ACR_PASSKEY} {ACR_TOTP}"))),
            Level::Totp
        );
        assert_eq!(required_level(Some(ACR_PASSKEY)), Level::Totp);
        let amr = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(achieved_level(&amr(&[])), None);
        assert_eq!(achieved_level(&amr(&["pwd"])), Some(Level::Password));
        assert_eq!(achieved_level(&amr(&["pwd", "otp"])), Some(Level::Totp));
        assert_eq!(achieved_level(&amr(&["otp"])), None);
        assert_eq!(achieved_level(&amr(&["hwk"])), Some(Level::Passkey));
        assert!(achieved_level(&amr(&["pwd"])) < Some(Level::Totp));
    }

    #[test]
    fn a_transfer_needs_totp_or_passkey_whatever_acr_values_says() {
        let transfer = json!({"type": "payment_initiation",
            "instructedAmount": {"currency": "JPY", "amount": "5000"},
            "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"}});
        let mut p = request(None, "https://app.example/cb");
        assert_eq!(request_level(&p), Level::Password);
        p.authorization_details = Some(vec![transfer]);
        assert_eq!(request_level(&p), Level::Totp);
        p.acr_values = Some(ACR_PASSWORD.into());
        assert_eq!(request_level(&p), Level::Totp);
        p.acr_values = Some(ACR_PASSKEY.into());
        assert_eq!(request_level(&p), Level::Totp);
        // A password-only sign-in does not reach it; TOTP and passkeys do.
        let amr = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(achieved_level(&amr(&["pwd"])) < Some(request_level(&p)));
        assert!(achieved_level(&amr(&["pwd", "otp"])) >= Some(request_level(&p)));
        assert!(achieved_level(&amr(&["hwk", "user"])) >= Some(request_level(&p)));
    }

    #[test]
    fn max_age() {
        assert!(!too_old(Some(100), None, 10_000));
        assert!(!too_old(Some(100), Some(60), 160));
        assert!(too_old(Some(100), Some(60), 161));
        assert!(too_old(Some(100), Some(0), 101));
        assert!(too_old(None, None, 0));
    }

    fn request(mode: Option<&str>, redirect: &str) -> ParRequest {
        ParRequest {
            client_id: "fintech".into(),
            redirect_uri: redirect.into(),
            scope: "openid".into(),
            state: Some("st ate".into()),
            nonce: None,
            code_challenge: "x".into(),
            response_mode: mode.map(str::to_string),
            acr_values: None,
            max_age: None,
            dpop_jkt: None,
            prompt: None,
            ui_locales: None,
            authorization_details: None,
        }
    }

    /// The client `fintech` with `extra` metadata.
    fn client(extra: serde_json::Value) -> ClientMetadata {
        let mut v = json!({"client_id": "fintech", "token_endpoint_auth_method": "private_key_jwt"});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        serde_json::from_value(v).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn plain_response_carries_code_state_iss() -> std::result::Result<(), String> {
        let key = SigningKey::generate(Algorithm::ES256, None).map_err(|e| e.0)?;
        let loc = response_location(
            "https://as.example",
            &key,
            &client(json!({})),
            &request(None, "https://app.example/cb"),
            &[("code", "c1")],
            1000,
        )
        .map_err(|e| e.description)?;
        assert_eq!(
            loc,
            "https://app.example/cb?code=c1&state=st%20ate&iss=https%3A%2F%2Fas.example"
        );
        let loc = response_location(
            "https://as.example",
            &key,
            &client(json!({})),
            &request(None, "https://app.example/cb?x=1"),
            &[("error", "access_denied")],
            1000,
        )
        .map_err(|e| e.description)?;
        assert!(loc.starts_with("https://app.example/cb?x=1&error=access_denied&state="));
        Ok(())
    }

    #[test]
    fn jarm_response_is_a_signed_jwt() -> std::result::Result<(), String> {
        let key = SigningKey::generate(Algorithm::ES256, None).map_err(|e| e.0)?;
        let loc = response_location(
            "https://as.example",
            &key,
            &client(json!({})),
            &request(Some("jwt"), "https://app.example/cb"),
            &[("code", "c1")],
            1000,
        )
        .map_err(|e| e.description)?;
        let jwt = loc
            .strip_prefix("https://app.example/cb?response=")
            .ok_or("no response parameter")?;
        let jws = fapi_core::jws::CompactJws::parse(jwt).map_err(|e| e.describe())?;
        let jwk = fapi_core::jwk::PublicJwk::from_value(key.public_jwk()).map_err(|e| format!("{e:?}"))?;
        assert!(jwk.verify(Algorithm::ES256, jws.signing_input.as_bytes(), &jws.signature));
        assert_eq!(jws.payload.get("iss"), Some(&json!("https://as.example")));
        assert_eq!(jws.payload.get("aud"), Some(&json!("fintech")));
        assert_eq!(jws.payload.get("exp"), Some(&json!(1060)));
        assert_eq!(jws.payload.get("code"), Some(&json!("c1")));
        assert_eq!(jws.payload.get("state"), Some(&json!("st ate")));
        Ok(())
    }

    /// Static-key ECDH on P-256, the client's side (ring has only ephemeral agreement).
    fn ecdh(d: &[u8], point: &[u8]) -> Option<Vec<u8>> {
        use p256::elliptic_curve::point::AffineCoordinates;
        use p256::elliptic_curve::sec1::FromSec1Point;
        use p256::elliptic_curve::PrimeField;
        let repr: [u8; 32] = d.try_into().ok()?;
        let scalar: Option<p256::Scalar> = p256::Scalar::from_repr(repr.into()).into();
        let peer = p256::AffinePoint::from_sec1_bytes(point).ok()?;
        Some(
            (p256::ProjectivePoint::from(peer) * scalar?)
                .to_affine()
                .x()
                .to_vec(),
        )
    }

    #[test]
    fn jarm_response_is_encrypted_to_the_client_when_registered() -> std::result::Result<(), String> {
        let key = SigningKey::generate(Algorithm::ES256, None).map_err(|e| e.0)?;
        let enc_key = SigningKey::generate(Algorithm::ES256, None).map_err(|e| e.0)?;
        let private = enc_key.private_jwk();
        let d = private["d"]
            .as_str()
            .and_then(fapi_core::b64::decode)
            .ok_or("no d")?;
        let jwks = json!({"keys": [
            key.public_jwk(),
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "fintech-enc", "x": private["x"], "y": private["y"]},
        ]});
        let c = client(json!({
            "jwks": jwks,
            "authorization_signed_response_alg": "ES256",
            "authorization_encrypted_response_alg": "ECDH-ES",
            "authorization_encrypted_response_enc": "A128GCM",
        }));
        let p = request(Some("jwt"), "https://app.example/cb");
        let loc = response_location("https://as.example", &key, &c, &p, &[("code", "c1")], 1000)
            .map_err(|e| e.description)?;
        let jwe = loc
            .strip_prefix("https://app.example/cb?response=")
            .ok_or("no response parameter")?;
        assert_eq!(jwe.split('.').count(), 5, "a compact JWE");
        let opened = crate::jwe::decrypt_with(jwe, |pt| ecdh(&d, pt)).map_err(|e| e.to_string())?;
        assert_eq!(opened.header.get("cty"), Some(&json!("JWT")));
        assert_eq!(opened.header.get("enc"), Some(&json!("A128GCM")));
        assert_eq!(opened.header.get("kid"), Some(&json!("fintech-enc")));
        let inner = String::from_utf8(opened.plaintext).map_err(|e| e.to_string())?;
        let jws = fapi_core::jws::CompactJws::parse(&inner).map_err(|e| e.describe())?;
        let jwk = fapi_core::jwk::PublicJwk::from_value(key.public_jwk()).map_err(|e| format!("{e:?}"))?;
        assert!(jwk.verify(Algorithm::ES256, jws.signing_input.as_bytes(), &jws.signature));
        assert_eq!(jws.payload.get("code"), Some(&json!("c1")));
        assert_eq!(jws.payload.get("aud"), Some(&json!("fintech")));

        // Error responses go the same way; the plain mode is not affected.
        let loc = response_location(
            "https://as.example",
            &key,
            &c,
            &p,
            &[("error", "access_denied")],
            1000,
        )
        .map_err(|e| e.description)?;
        let jwe = loc.split_once("response=").ok_or("no response")?.1;
        assert!(crate::jwe::decrypt_with(jwe, |pt| ecdh(&d, pt)).is_ok());
        let loc = response_location(
            "https://as.example",
            &key,
            &c,
            &request(None, "https://app.example/cb"),
            &[("code", "c1")],
            1000,
        )
        .map_err(|e| e.description)?;
        assert!(loc.contains("code=c1&"), "{loc}");

        // An alg the key does not have, or alg without enc: refused, never a response the client
        // would not expect.
        let mut other = c.clone();
        other.authorization_signed_response_alg = Some("PS256".into());
        assert!(response_location("https://as.example", &key, &other, &p, &[("code", "c1")], 1000).is_err());
        let mut half = c.clone();
        half.authorization_encrypted_response_enc = None;
        assert!(response_location("https://as.example", &key, &half, &p, &[("code", "c1")], 1000).is_err());
        Ok(())
    }
}
