//! Sign-in: `GET /login` shows the session's next step, `POST /login` checks a username and password,
//! `POST /login/totp` the TOTP step (RFC 6238) when the request's `acr_values` ask for more than a
//! password. Every attempt is counted before it is checked ([`super::limits`]); a password is hashed
//! and verified off the executor ([`crate::password::Hasher`]). Passkeys: [`super::passkey`].

use super::authorize::{
    achieved_level, finish_flow, flow_of, redirect_error, request_level, too_old, ui_locales, Flow,
};
use super::limits::{self, Locked};
use super::pages::{self, Lang, Msg};
use super::passkey;
use super::posted::Posted;
use super::{choose_lang, html, lang_cookie, load_session, see_other};
use crate::app::{Shared, ACR_PASSWORD};
use crate::error::{OAuthError, PageError, PageResult};
use crate::model::{LoginSession, SESSION};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use limits::SourceAddr;
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
    /// `passkey_registered` or `passkey_failed`: the outcome of a passkey registration.
    pub done: Option<String>,
}

/// `GET /login`: the next step of the session's flow.
pub async fn login_page(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> PageResult<Response> {
    let Some((key, mut sess)) = load_session(&s, &headers).await? else {
        let lang = choose_lang(q.lang.as_deref(), &headers, None);
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::SessionExpired));
    };
    let flow = flow_of(&s, &sess).await?;
    let lang = choose_lang(q.lang.as_deref(), &headers, ui_locales(&flow));
    let cookies: Vec<String> = q
        .lang
        .as_deref()
        .and_then(Lang::parse)
        .map(lang_cookie)
        .into_iter()
        .collect();
    let passkeys = passkey::enabled(&s);
    let (p, client) = match flow {
        Flow::Gone => return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::RequestExpired)),
        Flow::Apps if sess.user_id.is_some() => return Ok(see_other("/apps", &cookies)),
        Flow::Apps => {
            return Ok(html(
                StatusCode::OK,
                pages::sign_in(lang, &sess.csrf, None, None, "", passkeys),
                &cookies,
            ))
        }
        Flow::Authorize(p, c) => (p, c),
    };
    let t = s.clock.now();
    if sess.user_id.is_some() && too_old(sess.auth_time, p.max_age, t) {
        // max_age passed while the page was open: sign in again.
        sess = LoginSession {
            user_id: None,
            amr: Vec::new(),
            acr: None,
            auth_time: None,
            webauthn_challenge: None,
            ..sess
        };
        s.store.update_item(SESSION, &key, &sess).await?;
    }
    let Some(user_id) = sess.user_id.clone() else {
        return Ok(html(
            StatusCode::OK,
            pages::sign_in(lang, &sess.csrf, Some(&client.client_name), None, "", passkeys),
            &cookies,
        ));
    };
    let Some(user) = s.store.user(&user_id).await? else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::SessionExpired));
    };
    if achieved_level(&sess.amr) < Some(request_level(&p)) {
        let passkey_step = passkeys && !s.store.passkeys_of_user(&user_id).await?.is_empty();
        if user.totp_secret.is_none() && !passkey_step {
            // The requested level cannot be reached by this user: the request ends here.
            return match finish_flow(&s, &key, &mut sess).await? {
                Some(p) => redirect_error(
                    &s,
                    &client,
                    &p,
                    "access_denied",
                    "the requested authentication level is not available for this user",
                ),
                None => Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::RequestExpired)),
            };
        }
        return Ok(html(
            StatusCode::OK,
            pages::totp(lang, &sess.csrf, None, user.totp_secret.is_some(), passkey_step),
            &cookies,
        ));
    }
    let (notice, error) = match q.done.as_deref() {
        Some("passkey_registered") => (Some(Msg::PasskeyRegistered.text(lang)), None),
        Some("passkey_failed") => (None, Some(Msg::PasskeyRegisterFailed.text(lang))),
        _ => (None, None),
    };
    let page = consent_page(
        &s,
        lang,
        &ConsentView {
            csrf: &sess.csrf,
            client: &client,
            request: &p,
            user: &user,
            notice: notice.as_deref(),
            error: error.as_deref(),
            chosen: None,
        },
    )
    .await?;
    Ok(html(StatusCode::OK, page, &cookies))
}

/// What the consent page is about, for [`consent_page`].
pub(super) struct ConsentView<'a> {
    pub csrf: &'a str,
    pub client: &'a crate::store::ClientMetadata,
    pub request: &'a crate::model::ParRequest,
    pub user: &'a crate::store::User,
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The debtor account chosen before (shown again after a refusal).
    pub chosen: Option<&'a str>,
}

/// The consent page for the signed-in user: the request's scopes, the user's accounts, and the
/// transfers asked for (RFC 9396 `payment_initiation`, [`crate::authorization_details::summaries`]).
pub(super) async fn consent_page(
    s: &Shared,
    lang: Lang,
    v: &ConsentView<'_>,
) -> crate::error::Result<pages::Page> {
    let accounts = s.store.accounts_of(&v.user.user_id).await?;
    let scopes: Vec<&str> = v.request.scope.split_whitespace().collect();
    let transfers =
        crate::authorization_details::summaries(v.request.authorization_details.as_deref().unwrap_or(&[]));
    Ok(pages::consent(
        lang,
        &pages::ConsentPage {
            csrf: v.csrf,
            client_name: &v.client.client_name,
            scopes: &scopes,
            accounts: &accounts,
            transfers: &transfers,
            chosen: v.chosen,
            user_name: &v.user.display_name,
            passkey_register: passkey::enabled(s),
            notice: v.notice,
            error: v.error,
        },
    ))
}

pub(super) fn field<'a>(form: &'a BTreeMap<String, String>, name: &str, max: usize) -> Option<&'a str> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty() && v.len() <= max)
}

pub(super) fn lock_message(l: Locked, t: i64) -> Msg {
    match l {
        Locked::Account { .. } => Msg::Locked {
            minutes: l.minutes(t),
        },
        Locked::Address { .. } => Msg::AddressLocked {
            minutes: l.minutes(t),
        },
        Locked::Delayed { .. } => Msg::Delayed {
            seconds: l.seconds(t),
        },
        Locked::Capped => Msg::Suspended,
    }
}

/// `POST /login`: username and password.
pub async fn password(State(s): State<Shared>, addr: SourceAddr, posted: Posted) -> PageResult<Response> {
    let Posted {
        key,
        sess,
        flow,
        lang,
        form,
    } = posted;
    let client_name = match &flow {
        Flow::Authorize(_, c) => Some(c.client_name.clone()),
        _ => None,
    };
    let username = field(&form, "username", 64).map(str::trim).unwrap_or("");
    let passkeys = passkey::enabled(&s);
    let page = |status: StatusCode, msg: Msg| {
        html(
            status,
            pages::sign_in(
                lang,
                &sess.csrf,
                client_name.as_deref(),
                Some(&msg.text(lang)),
                username,
                passkeys,
            ),
            &[],
        )
    };
    let t = s.clock.now();
    // Counted before it is checked (limits.rs); a refused attempt is not checked at all.
    let adm = match limits::admit(
        &s.store,
        limits::Rules::of(&s.config.login),
        Some(username),
        addr,
        t,
    )
    .await?
    {
        Ok(adm) => adm,
        Err(l) => {
            s.metrics.count("login", "locked");
            return Ok(page(StatusCode::TOO_MANY_REQUESTS, lock_message(l, t)));
        }
    };
    let pw = field(&form, "password", 256).unwrap_or("");
    let user = if username.is_empty() {
        None
    } else {
        s.store.user_by_name(username).await?
    };
    // The row is read and the store's connection released before hashing (which runs on the
    // blocking pool, bounded); an unknown user costs the same (password.rs).
    let ok = s
        .passwords
        .verify(pw, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
        .map_err(OAuthError::server)?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            s.metrics.count("login", "failed");
            return Ok(match limits::after_failure(&adm, t) {
                Some(l) => page(StatusCode::TOO_MANY_REQUESTS, lock_message(l, t)),
                None => page(StatusCode::OK, Msg::BadCredentials),
            });
        }
    };
    limits::succeeded(&s.store, &adm, &user.username, t).await?;
    if crate::password::needs_rehash(&user.password_hash) {
        // An older hash (PBKDF2): replaced by Argon2id now that the password is at hand.
        let fresh = s
            .passwords
            .hash(&s.random, pw)
            .await
            .map_err(OAuthError::server)?;
        if s.store
            .replace_password_hash(&user.user_id, &user.password_hash, &fresh)
            .await?
        {
            tracing::info!(user_id = %user.user_id, "password re-hashed with Argon2id");
        }
    }
    s.metrics.count("login", "ok");
    tracing::info!(user_id = %user.user_id, "password sign-in");
    super::signed_in(&s, &key, sess, user.user_id, vec!["pwd".into()], ACR_PASSWORD).await
}

/// `POST /login/totp`: the 6-digit code (RFC 6238), after the password.
pub async fn totp(State(s): State<Shared>, addr: SourceAddr, posted: Posted) -> PageResult<Response> {
    let Posted {
        key,
        mut sess,
        lang,
        form,
        ..
    } = posted;
    let Some(user_id) = sess.user_id.clone() else {
        return Ok(see_other("/login", &[]));
    };
    let Some(user) = s.store.user(&user_id).await? else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::SessionExpired));
    };
    let Some(secret) = user.totp_secret.as_deref().and_then(crate::totp::base32_decode) else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::NoTotp));
    };
    let passkey_step = passkey::enabled(&s) && !s.store.passkeys_of_user(&user_id).await?.is_empty();
    let page = |status: StatusCode, msg: Msg| {
        html(
            status,
            pages::totp(lang, &sess.csrf, Some(&msg.text(lang)), true, passkey_step),
            &[],
        )
    };
    let t = s.clock.now();
    let adm = match limits::admit(
        &s.store,
        limits::Rules::of(&s.config.login),
        Some(&user.username),
        addr,
        t,
    )
    .await?
    {
        Ok(adm) => adm,
        Err(l) => {
            s.metrics.count("totp", "locked");
            return Ok(page(StatusCode::TOO_MANY_REQUESTS, lock_message(l, t)));
        }
    };
    let code = field(&form, "code", 16).unwrap_or("");
    let failure = match crate::totp::verify(&secret, code, t) {
        // RFC 6238 §5.2: a code (a step) is accepted once per user.
        Some(step) => {
            let until = (step + 2) * crate::totp::STEP + 60;
            if s.store
                .remember_jti("totp", &format!("{user_id}:{step}"), until)
                .await?
            {
                None
            } else {
                Some(Msg::CodeUsed)
            }
        }
        None => Some(Msg::BadCode),
    };
    if let Some(msg) = failure {
        s.metrics.count("totp", "failed");
        return Ok(match limits::after_failure(&adm, t) {
            Some(l) => page(StatusCode::TOO_MANY_REQUESTS, lock_message(l, t)),
            None => page(StatusCode::OK, msg),
        });
    }
    limits::succeeded(&s.store, &adm, &user.username, t).await?;
    s.metrics.count("totp", "ok");
    if !sess.amr.iter().any(|a| a == "otp") {
        sess.amr.push("otp".into());
    }
    sess.acr = achieved_level(&sess.amr).map(|l| l.acr().to_string());
    sess.auth_time = Some(t);
    s.store.update_item(SESSION, &key, &sess).await?;
    Ok(see_other("/login", &[]))
}
