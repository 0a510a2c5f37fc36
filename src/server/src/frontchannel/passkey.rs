//! Passkeys (WebAuthn Level 2) on the pages: the ceremonies of [`crate::webauthn`] wired to the login
//! session.
//!
//! - Sign-in: the sign-in page's "Sign in with a passkey" (and the step-up page's "Use a passkey
//!   instead") runs `/assets/passkey.js`, which POSTs `csrf` to `/login/passkey/options` (a fresh
//!   challenge, kept in the session, single use, 5 minutes), calls `navigator.credentials.get` and
//!   POSTs `csrf` + `credential` (the JSON of [`crate::webauthn`]'s module documentation) to
//!   `/login/passkey`. The assertion is verified (§7.2), its credential must belong to a user (and,
//!   when stepping up, to the signed-in one), and the signature counter is stored with
//!   `Store::update_sign_count` (refused if another sign-in got there first). Success gives
//!   `acr` `urn:bank:acr:passkey` and `amr` `hwk user` (RFC 8176 §2), the strongest level: it
//!   satisfies `acr_values` asking for TOTP or passkey. Every refusal counts as a failed sign-in for
//!   the source address, and for the credential's account when it has one ([`super::limits`]).
//! - Registration, once signed in: "Register a passkey" on the consent page and on `/apps` POSTs
//!   to `/passkey/register/options` (creation options, §5.4; the user's passkeys excluded), then the
//!   result to `/passkey/register` (§7.1), and comes back to the page with
//!   `?done=passkey_registered` or `?done=passkey_failed`.
//!
//! The RP ID is the issuer's host ([`RelyingParty::from_issuer`]); with an issuer that cannot be one
//! (an IP address) no passkey button is shown and these endpoints refuse.

use super::authorize::Flow;
use super::limits::{self, SourceAddr};
use super::pages::{self, Msg};
use super::posted::Posted;
use super::signin::{field, lock_message};
use super::{html, see_other};
use crate::app::{Shared, ACR_PASSKEY};
use crate::error::{PageError, PageResult, Result};
use crate::model::{LoginSession, SESSION};
use crate::store::User;
use crate::webauthn::{self, AuthenticationResponse, RegistrationResponse, RelyingParty};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The script of the passkey buttons, served as `/assets/passkey.js`.
pub const SCRIPT: &str = include_str!("passkey.js");
/// How long a challenge may be answered, seconds (the options' `timeout` is 300 000 ms).
pub const CHALLENGE_LIFETIME: i64 = 300;
/// The relying party's name shown by the browser at registration.
pub const RP_NAME: &str = "fapi-guard Demo Bank";

/// The relying party, when the issuer can be one.
pub fn relying_party(s: &Shared) -> Option<RelyingParty> {
    RelyingParty::from_issuer(&s.config.issuer).ok()
}

/// Whether the pages offer passkeys.
pub fn enabled(s: &Shared) -> bool {
    relying_party(s).is_some()
}

/// `GET /assets/passkey.js`.
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
        .into_response()
}

fn json_response(status: StatusCode, value: Value) -> Response {
    let mut resp = (status, Json(value)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json_error(status: StatusCode, error: &str) -> Response {
    json_response(status, json!({ "error": error }))
}

/// A new challenge for `kind` ("get" or "create"), kept in the session (replacing any other).
async fn issue_challenge(s: &Shared, key: &str, sess: &mut LoginSession, kind: &str) -> Result<String> {
    let challenge = webauthn::new_challenge(&s.random)?;
    sess.webauthn_challenge = Some(format!("{kind}:{}:{challenge}", s.clock.now()));
    s.store.update_item(SESSION, key, sess).await?;
    Ok(challenge)
}

/// The session's challenge for `kind`, used up: removed from the session and remembered in the
/// store (atomic, so two concurrent POSTs cannot both use it), and only within
/// [`CHALLENGE_LIFETIME`].
async fn take_challenge(
    s: &Shared,
    key: &str,
    sess: &mut LoginSession,
    kind: &str,
    t: i64,
) -> Result<Option<String>> {
    let Some(stored) = sess.webauthn_challenge.take() else {
        return Ok(None);
    };
    s.store.update_item(SESSION, key, sess).await?;
    let mut parts = stored.splitn(3, ':');
    let (Some(k), Some(issued), Some(challenge)) = (
        parts.next(),
        parts.next().and_then(|v| v.parse::<i64>().ok()),
        parts.next(),
    ) else {
        return Ok(None);
    };
    if k != kind || t - issued > CHALLENGE_LIFETIME || issued > t + 5 {
        return Ok(None);
    }
    if !s
        .store
        .remember_jti("webauthn", challenge, issued + CHALLENGE_LIFETIME + 60)
        .await?
    {
        return Ok(None);
    }
    Ok(Some(challenge.to_string()))
}

/// `POST /login/passkey/options` (`csrf`): `PublicKeyCredentialRequestOptionsJSON`. Signed out,
/// any of the user's discoverable passkeys may answer; stepping up, only the signed-in user's.
pub async fn sign_in_options(State(s): State<Shared>, posted: Posted) -> Result<Response> {
    let Posted { key, mut sess, .. } = posted;
    let Some(rp) = relying_party(&s) else {
        return Ok(json_error(StatusCode::NOT_FOUND, "passkeys_unavailable"));
    };
    let allow: Vec<String> = match &sess.user_id {
        Some(user_id) => s
            .store
            .passkeys_of_user(user_id)
            .await?
            .into_iter()
            .map(|c| c.credential_id)
            .collect(),
        None => Vec::new(),
    };
    let challenge = issue_challenge(&s, &key, &mut sess, "get").await?;
    s.metrics.count("passkey_options", "get");
    Ok(json_response(
        StatusCode::OK,
        webauthn::request_options(&rp, &challenge, &allow),
    ))
}

/// Why a passkey sign-in was refused.
enum Refused {
    /// A failed attempt: `reason` for logs and metrics; `username` the account it counts against.
    Failed {
        reason: &'static str,
        username: Option<String>,
    },
}

fn failed(reason: &'static str, username: Option<&str>) -> std::result::Result<User, Refused> {
    Err(Refused::Failed {
        reason,
        username: username.map(str::to_string),
    })
}

/// WebAuthn §7.2 for the posted credential, plus what the module documentation lists.
async fn check_assertion(
    s: &Shared,
    rp: &RelyingParty,
    challenge: Option<&str>,
    credential: Option<&str>,
    stepping_up: Option<&User>,
) -> Result<std::result::Result<User, Refused>> {
    let step_name = stepping_up.map(|u| u.username.as_str());
    let Some(challenge) = challenge else {
        return Ok(failed("no_challenge", step_name));
    };
    let Some(body) = credential else {
        return Ok(failed("no_credential", step_name));
    };
    let response = match AuthenticationResponse::from_json(body) {
        Ok(r) => r,
        Err(e) => return Ok(failed(e.code(), step_name)),
    };
    let id = response.id.trim_end_matches('=');
    if id.is_empty() || id.len() > 2 * webauthn::MAX_CREDENTIAL_ID_LEN {
        return Ok(failed("malformed", step_name));
    }
    let Some(stored) = s.store.passkey(id).await? else {
        return Ok(failed("unknown_credential", step_name));
    };
    let Some(user) = s.store.user(&stored.user_id).await? else {
        return Ok(failed("no_such_user", step_name));
    };
    if let Some(signed_in) = stepping_up {
        if signed_in.user_id != user.user_id {
            return Ok(failed("another_users_credential", step_name));
        }
    }
    // Not held back by the account's password throttle (limits.rs): an assertion cannot be guessed,
    // and a passkey is how the owner of an account under a password attack still signs in.
    let verified = match webauthn::verify_authentication(rp, challenge, &stored, &response) {
        Ok(v) => v,
        Err(e) => return Ok(failed(e.code(), Some(&user.username))),
    };
    if !s
        .store
        .update_sign_count(&stored.credential_id, stored.sign_count, verified.sign_count)
        .await?
    {
        return Ok(failed("sign_count_race", Some(&user.username)));
    }
    Ok(Ok(user))
}

/// `POST /login/passkey` (`csrf`, `credential`): signs in (or steps up) with a passkey.
pub async fn sign_in(State(s): State<Shared>, addr: SourceAddr, posted: Posted) -> PageResult<Response> {
    let Posted {
        key,
        mut sess,
        flow,
        lang,
        form,
    } = posted;
    let Some(rp) = relying_party(&s) else {
        return Err(PageError::new(StatusCode::NOT_FOUND, lang, Msg::BadRequest));
    };
    let client_name = match &flow {
        Flow::Authorize(_, c) => Some(c.client_name.clone()),
        _ => None,
    };
    let stepping_up = match &sess.user_id {
        Some(user_id) => s.store.user(user_id).await?,
        None => None,
    };
    let csrf = sess.csrf.clone();
    let has_totp = stepping_up.as_ref().is_some_and(|u| u.totp_secret.is_some());
    let step = stepping_up.is_some();
    // The page the attempt came from, again, with the message.
    let page = |status: StatusCode, msg: Msg| {
        let text = msg.text(lang);
        let body = if step {
            pages::totp(lang, &csrf, Some(&text), has_totp, true)
        } else {
            pages::sign_in(lang, &csrf, client_name.as_deref(), Some(&text), "", true)
        };
        html(status, body, &[])
    };
    let t = s.clock.now();
    // Counted (per source address) before it is checked.
    let adm = match limits::admit(&s.store, limits::Rules::of(&s.config.login), None, addr, t).await? {
        Ok(adm) => adm,
        Err(l) => {
            s.metrics.count("passkey", "locked");
            return Ok(page(StatusCode::TOO_MANY_REQUESTS, lock_message(l, t)));
        }
    };
    let challenge = take_challenge(&s, &key, &mut sess, "get", t).await?;
    let credential = field(&form, "credential", webauthn::MAX_RESPONSE_JSON_LEN);
    let outcome = check_assertion(&s, &rp, challenge.as_deref(), credential, stepping_up.as_ref()).await?;
    let user = match outcome {
        Ok(user) => user,
        Err(Refused::Failed { reason, username }) => {
            s.metrics.count("passkey", "failed");
            tracing::info!(
                reason,
                username = username.as_deref().unwrap_or("-"),
                "passkey sign-in refused"
            );
            return Ok(match limits::after_failure(&adm, t) {
                Some(l) => page(StatusCode::TOO_MANY_REQUESTS, lock_message(l, t)),
                None => page(StatusCode::OK, Msg::PasskeyFailed),
            });
        }
    };
    limits::succeeded(&s.store, &adm, &user.username, t).await?;
    s.metrics.count("passkey", "ok");
    tracing::info!(user_id = %user.user_id, step_up = step, "passkey sign-in");
    // RFC 8176: hwk (proof of possession of a hardware-secured key), user (user presence and
    // verification); a step-up keeps what the same user proved before.
    let mut amr = if sess.user_id.as_deref() == Some(user.user_id.as_str()) {
        sess.amr.clone()
    } else {
        Vec::new()
    };
    for m in ["hwk", "user"] {
        if !amr.iter().any(|a| a == m) {
            amr.push(m.to_string());
        }
    }
    super::signed_in(&s, &key, sess, user.user_id, amr, ACR_PASSKEY).await
}

/// `POST /passkey/register/options` (`csrf`), signed in: `PublicKeyCredentialCreationOptionsJSON`.
pub async fn register_options(State(s): State<Shared>, posted: Posted) -> Result<Response> {
    let Posted { key, mut sess, .. } = posted;
    let Some(rp) = relying_party(&s) else {
        return Ok(json_error(StatusCode::NOT_FOUND, "passkeys_unavailable"));
    };
    let user = match &sess.user_id {
        Some(user_id) => s.store.user(user_id).await?,
        None => None,
    };
    let Some(user) = user else {
        return Ok(json_error(StatusCode::FORBIDDEN, "sign_in_first"));
    };
    let exclude: Vec<String> = s
        .store
        .passkeys_of_user(&user.user_id)
        .await?
        .into_iter()
        .map(|c| c.credential_id)
        .collect();
    let challenge = issue_challenge(&s, &key, &mut sess, "create").await?;
    s.metrics.count("passkey_options", "create");
    Ok(json_response(
        StatusCode::OK,
        webauthn::creation_options(
            &rp,
            RP_NAME,
            &user.user_id,
            &user.username,
            &user.display_name,
            &challenge,
            &exclude,
        ),
    ))
}

/// `POST /passkey/register` (`csrf`, `credential`), signed in: WebAuthn §7.1, then stores the
/// passkey (refused if its credential ID is registered already, §7.1 step 22).
pub async fn register(State(s): State<Shared>, posted: Posted) -> PageResult<Response> {
    let Posted {
        key,
        mut sess,
        flow,
        lang,
        form,
    } = posted;
    let Some(rp) = relying_party(&s) else {
        return Err(PageError::new(StatusCode::NOT_FOUND, lang, Msg::BadRequest));
    };
    let back = match flow {
        Flow::Authorize(..) => "/login",
        _ => "/apps",
    };
    let Some(user_id) = sess.user_id.clone() else {
        return Ok(see_other(back, &[]));
    };
    let t = s.clock.now();
    let challenge = take_challenge(&s, &key, &mut sess, "create", t).await?;
    let credential = field(&form, "credential", webauthn::MAX_RESPONSE_JSON_LEN);
    let verified = match (challenge, credential) {
        (Some(challenge), Some(body)) => RegistrationResponse::from_json(body)
            .and_then(|r| webauthn::verify_registration(&rp, &challenge, &r))
            .map_err(|e| e.code()),
        (None, _) => Err("no_challenge"),
        (_, None) => Err("no_credential"),
    };
    let outcome = match verified {
        Ok(c) => {
            if s.store.put_passkey(&c.into_stored(&user_id)).await? {
                Ok(())
            } else {
                Err("already_registered")
            }
        }
        Err(reason) => Err(reason),
    };
    match outcome {
        Ok(()) => {
            s.metrics.count("passkey_register", "ok");
            tracing::info!(user_id = %user_id, "passkey registered");
            Ok(see_other(&format!("{back}?done=passkey_registered"), &[]))
        }
        Err(reason) => {
            s.metrics.count("passkey_register", "failed");
            tracing::info!(reason, "passkey registration refused");
            Ok(see_other(&format!("{back}?done=passkey_failed"), &[]))
        }
    }
}
