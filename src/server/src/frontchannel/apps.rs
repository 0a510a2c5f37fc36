//! The connected-apps page (FISC item 38: an account is never used by an API connection its owner
//! does not know about): every client holding a live grant on the signed-in user's accounts, with
//! its scopes in plain words, when it was granted and last used, and a Revoke button. Revoking marks
//! the grant, its refresh tokens and its access tokens revoked; the access tokens then appear on the
//! revocation feed the Envoy plugin polls, so the app's next calls fail within seconds.
//!
//! Without a signed-in session the page is the sign-in form of the authorization flow; after
//! sign-in `GET /login` sends the browser back here (a session with no `request_uri` is an apps
//! session: that is the page's "next").

use super::pages::{self, AppsExtras, ConnectedApp, Lang, Msg};
use super::par::collect;
use super::{
    choose_lang, clear_session_cookie, csrf_ok, html, lang_cookie, load_session, new_session, see_other,
};
use crate::app::Shared;
use crate::error::{PageError, PageResult};
use crate::model::{LoginSession, SESSION};
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;

#[derive(serde::Deserialize)]
pub struct AppsQuery {
    pub lang: Option<String>,
    pub done: Option<String>,
}

/// `GET /apps`.
pub async fn apps_page(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<AppsQuery>,
) -> PageResult<Response> {
    let lang = choose_lang(q.lang.as_deref(), &headers, None);
    let mut cookies: Vec<String> = q
        .lang
        .as_deref()
        .and_then(Lang::parse)
        .map(lang_cookie)
        .into_iter()
        .collect();
    let notice = match q.done.as_deref() {
        Some("revoked") => Some(Msg::Revoked.text(lang)),
        Some("signed_out") => Some(Msg::SignedOut.text(lang)),
        Some("passkey_registered") => Some(Msg::PasskeyRegistered.text(lang)),
        Some("passkey_removed") => Some(Msg::PasskeyRemoved.text(lang)),
        _ => None,
    };
    let error = (q.done.as_deref() == Some("passkey_failed")).then(|| Msg::PasskeyRegisterFailed.text(lang));
    let passkeys = super::passkey::enabled(&s);
    let session = load_session(&s, &headers).await?;
    let signed_in = session
        .as_ref()
        .and_then(|(_, sess)| sess.user_id.clone().map(|u| (u, sess.csrf.clone())));
    let Some((user_id, csrf)) = signed_in else {
        // Not signed in: a fresh apps session (an unfinished authorization flow is abandoned).
        let (csrf, sid) = (s.random.token(32)?, s.random.token(32)?);
        if let Some((key, _)) = session {
            s.store.delete_item(SESSION, &key).await?;
        }
        let sess = LoginSession {
            csrf,
            ..Default::default()
        };
        cookies.push(new_session(&s, sid, &sess).await?);
        let body = pages::apps_sign_in(lang, &sess.csrf, notice.as_deref(), passkeys);
        return Ok(html(StatusCode::OK, body, &cookies));
    };
    let Some(user) = s.store.user(&user_id).await? else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::SessionExpired));
    };
    let grants = s.store.grants_of_user(&user_id).await?;
    let mut apps = Vec::with_capacity(grants.len());
    for g in &grants {
        let client_name = match s.store.client(&g.client_id).await? {
            Some(c) if !c.client_name.is_empty() => c.client_name,
            _ => g.client_id.clone(),
        };
        // RFC 9396: the transfers the grant allows, as consented (with the account paid from).
        let transfers = crate::authorization_details::summaries(
            &s.store.grant_details(&g.grant_id).await?.unwrap_or_default(),
        );
        apps.push(ConnectedApp {
            grant: g,
            client_name,
            transfers,
        });
    }
    let registered: Vec<String> = s
        .store
        .passkeys_of_user(&user_id)
        .await?
        .into_iter()
        .map(|c| c.credential_id)
        .collect();
    Ok(html(
        StatusCode::OK,
        pages::apps(
            lang,
            &csrf,
            &user.display_name,
            &apps,
            &AppsExtras {
                notice: notice.as_deref(),
                error: error.as_deref(),
                passkey_register: passkeys,
                passkeys: &registered,
            },
        ),
        &cookies,
    ))
}

/// The signed-in session of a POST whose CSRF token checks out; signed out, the redirect to the
/// apps page (its sign-in form).
async fn signed_in_post(
    s: &Shared,
    headers: &HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult<
    std::result::Result<
        (
            String,
            LoginSession,
            String,
            std::collections::BTreeMap<String, String>,
        ),
        Response,
    >,
> {
    let lang = choose_lang(None, headers, None);
    let Some((key, sess)) = load_session(s, headers).await? else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::SessionExpired));
    };
    let form = match form.ok().map(|Form(p)| collect(p)) {
        Some(Ok(f)) => f,
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::BadRequest)),
    };
    if !csrf_ok(&sess, form.get("csrf").map(String::as_str)) {
        s.metrics.count("apps", "csrf");
        return Err(PageError::new(StatusCode::FORBIDDEN, lang, Msg::Csrf));
    }
    let Some(user_id) = sess.user_id.clone() else {
        return Ok(Err(see_other("/apps", &[])));
    };
    Ok(Ok((key, sess, user_id, form)))
}

/// `POST /apps/revoke` (`grant_id`, `csrf`): revokes one of the signed-in user's grants.
pub async fn revoke(
    State(s): State<Shared>,
    headers: HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult<Response> {
    let (_, _, user_id, form) = match signed_in_post(&s, &headers, form).await? {
        Ok(v) => v,
        Err(page) => return Ok(page),
    };
    let lang = choose_lang(None, &headers, None);
    let grant = match form.get("grant_id").filter(|g| g.len() <= 128) {
        Some(id) => s.store.grant(id).await?,
        None => None,
    };
    // Only the user's own live grants: another user's grant id is refused like an unknown one.
    let Some(grant) = grant.filter(|g| g.user_id == user_id && !g.revoked) else {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::BadRequest));
    };
    s.store.revoke_grant(&grant.grant_id, s.clock.now_ms()).await?;
    s.metrics.count("apps", "revoked");
    tracing::info!(grant_id = %grant.grant_id, client_id = %grant.client_id, "grant revoked by its user");
    Ok(see_other("/apps?done=revoked", &[]))
}

/// `POST /apps/passkeys/remove` (`credential_id`, `csrf`): removes one of the signed-in user's
/// passkeys.
pub async fn remove_passkey(
    State(s): State<Shared>,
    headers: HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult<Response> {
    let (_, _, user_id, form) = match signed_in_post(&s, &headers, form).await? {
        Ok(v) => v,
        Err(page) => return Ok(page),
    };
    let lang = choose_lang(None, &headers, None);
    let id = form.get("credential_id").filter(|id| id.len() <= 1400);
    // Only the user's own: another user's credential ID is refused like an unknown one.
    let removed = match id {
        Some(id) => s.store.delete_passkey(&user_id, id).await?,
        None => false,
    };
    if !removed {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::BadRequest));
    }
    s.metrics.count("apps", "passkey_removed");
    tracing::info!(user_id = %user_id, "passkey removed by its user");
    Ok(see_other("/apps?done=passkey_removed", &[]))
}

/// `POST /logout` (`csrf`): ends the browser session.
pub async fn logout(
    State(s): State<Shared>,
    headers: HeaderMap,
    form: std::result::Result<Form<Vec<(String, String)>>, FormRejection>,
) -> PageResult<Response> {
    let (key, _, _, _) = match signed_in_post(&s, &headers, form).await? {
        Ok(v) => v,
        Err(page) => return Ok(page),
    };
    s.store.delete_item(SESSION, &key).await?;
    Ok(see_other("/apps?done=signed_out", &[clear_session_cookie()]))
}
