//! The front channel: pushed authorization requests, the authorization endpoint, and the pages a
//! person uses (sign-in, TOTP, passkeys, consent, connected apps).
//!
//! - [`par`]: `POST /par` (RFC 9126), request objects (RFC 9101), DPoP key binding (RFC 9449 §10).
//! - [`authorize`]: `GET /authorize` (request_uri only), `GET /login` (the next step of the flow),
//!   `POST /login` (password), `POST /login/totp` (RFC 6238), `POST /consent`; the authorization
//!   response with `iss` (RFC 9207), plain or as a JARM JWT.
//! - [`passkey`]: passkeys (WebAuthn): `POST /login/passkey/options`, `POST /login/passkey`,
//!   `POST /passkey/register/options`, `POST /passkey/register`, and `GET /assets/passkey.js`.
//! - [`apps`]: `GET /apps`, `POST /apps/revoke`, `POST /logout` (FISC item 38).
//! - [`limits`]: sign-in abuse limits per account and per source address (FISC item 41).
//! - [`pages`]: the pages, Japanese and English, rendered from the templates in
//!   `src/server/templates` (every value HTML-escaped by the template engine).
//!
//! The page handlers answer a refusal with [`crate::error::PageError`] (the status and the rendered
//! error page); `/par` and the passkey options endpoints answer JSON.
//!
//! Browser state lives in a [`LoginSession`] item keyed by SHA-256 of the random value of the
//! `__Host-fapi-session` cookie (Secure, HttpOnly, SameSite=Lax, Path=/); every POST carries the
//! session's anti-CSRF token.

pub mod apps;
pub mod authorize;
pub mod consent;
pub mod limits;
pub mod pages;
pub mod par;
pub mod passkey;
pub mod posted;
pub mod signin;

use crate::app::Shared;
use crate::error::Result;
use crate::model::{LoginSession, SESSION};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use pages::Lang;

pub fn routes() -> Router<Shared> {
    // The pages a person sees: an internal failure answers the HTML error page.
    let pages = Router::new()
        .route("/authorize", get(authorize::authorize))
        .route("/login", get(signin::login_page).post(signin::password))
        .route("/login/totp", post(signin::totp))
        .route("/consent", post(consent::consent))
        .route("/apps", get(apps::apps_page))
        .route("/apps/revoke", post(apps::revoke))
        .route("/apps/passkeys/remove", post(apps::remove_passkey))
        .route("/logout", post(apps::logout))
        .layer(axum::middleware::from_fn(server_error_page));
    Router::new()
        .merge(pages)
        .route("/par", post(par::par))
        .route("/login/passkey/options", post(passkey::sign_in_options))
        .route("/login/passkey", post(passkey::sign_in))
        .route("/passkey/register/options", post(passkey::register_options))
        .route("/passkey/register", post(passkey::register))
        .route("/assets/passkey.js", get(passkey::script))
}

/// On the pages a person sees, an internal failure (the database, or the random generator:
/// src/random.rs) answers 500 with the HTML error page instead of the back channel's JSON
/// `server_error`; the cause is logged where it happened, never shown.
async fn server_error_page(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let lang = choose_lang(None, req.headers(), None);
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status() != StatusCode::INTERNAL_SERVER_ERROR || !json {
        return resp;
    }
    let text = match lang {
        Lang::Ja => "サーバーで問題が発生しました。しばらくしてからもう一度お試しください。",
        Lang::En => "Something went wrong on our side. Please try again later.",
    };
    html(StatusCode::INTERNAL_SERVER_ERROR, pages::error(lang, text), &[])
}

/// The session cookie (`__Host-` prefix: Secure, Path=/, no Domain; RFC 6265bis §4.1.3.2).
pub const SESSION_COOKIE: &str = "__Host-fapi-session";
/// The language chosen with the switch link.
pub const LANG_COOKIE: &str = "__Host-fapi-lang";
/// How long a browser session lives (sign-in, then consent or the apps page), seconds.
pub const SESSION_LIFETIME: i64 = 1800;
/// How long a person has, from `GET /authorize`, to sign in, step up and answer the consent page,
/// seconds (the request_uri itself is used up at `/authorize`).
pub const FLOW_LIFETIME: i64 = 600;

/// A cookie value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn session_key(sid: &str) -> String {
    fapi_core::b64::sha256_b64(sid)
}

/// The browser's session: (store key, session).
pub async fn load_session(s: &Shared, headers: &HeaderMap) -> Result<Option<(String, LoginSession)>> {
    let Some(sid) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let key = session_key(&sid);
    Ok(s.store
        .item::<LoginSession>(SESSION, &key, s.clock.now())
        .await?
        .map(|sess| (key, sess)))
}

/// Stores a new session under `sid` (drawn by the caller before it spends or stores anything, so
/// a failing generator leaves no trace: src/random.rs); returns its `Set-Cookie` value.
pub async fn new_session(s: &Shared, sid: String, session: &LoginSession) -> Result<String> {
    s.store
        .put_item(
            SESSION,
            &session_key(&sid),
            session,
            s.clock.now() + SESSION_LIFETIME,
        )
        .await?;
    Ok(format!(
        "{SESSION_COOKIE}={sid}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={SESSION_LIFETIME}"
    ))
}

/// Completes a sign-in: the session gains the user and what they proved, and moves to a NEW session id
/// (the old one is deleted: no session fixation); answers with the redirect back to `/login`, which
/// continues the flow (step-up, consent).
pub async fn signed_in(
    s: &Shared,
    old_key: &str,
    session: LoginSession,
    user_id: String,
    amr: Vec<String>,
    acr: &str,
) -> crate::error::PageResult<axum::response::Response> {
    let (csrf, sid) = (s.random.token(32)?, s.random.token(32)?);
    let signed_in = LoginSession {
        csrf,
        user_id: Some(user_id),
        amr,
        acr: Some(acr.into()),
        auth_time: Some(s.clock.now()),
        webauthn_challenge: None,
        ..session
    };
    s.store.delete_item(SESSION, old_key).await?;
    let cookie = new_session(s, sid, &signed_in).await?;
    Ok(see_other("/login", &[cookie]))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie() -> String {
    format!("{SESSION_COOKIE}=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}

/// The anti-CSRF check of every POST: the form's token equals the session's, in constant time.
pub fn csrf_ok(session: &LoginSession, form_token: Option<&str>) -> bool {
    match form_token {
        Some(t) if !session.csrf.is_empty() => {
            fapi_core::binding::constant_time_eq(t.as_bytes(), session.csrf.as_bytes())
        }
        _ => false,
    }
}

/// The page language: an explicit `?lang=` (the switch link), then its cookie, then the request's
/// `ui_locales` (OIDC Core §3.1.2.1), then `Accept-Language`, then Japanese.
pub fn choose_lang(query_lang: Option<&str>, headers: &HeaderMap, ui_locales: Option<&str>) -> Lang {
    query_lang
        .and_then(Lang::parse)
        .or_else(|| cookie(headers, LANG_COOKIE).as_deref().and_then(Lang::parse))
        .or_else(|| ui_locales.and_then(Lang::from_ui_locales))
        .or_else(|| {
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::Ja)
}

/// `Set-Cookie` remembering the language chosen with the switch link.
pub fn lang_cookie(lang: Lang) -> String {
    format!(
        "{LANG_COOKIE}={}; Secure; SameSite=Lax; Path=/; Max-Age=31536000",
        lang.code()
    )
}

/// The Content-Security-Policy of every page: nothing but inline styles and same-origin images.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The same for a page with a passkey button: its one script, `/assets/passkey.js` (no inline
/// script), and that script's `fetch` of the ceremony options, both same-origin only.
pub const CSP_PASSKEY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML page with the headers every page carries: no caching, no framing (clickjacking on the
/// consent page), no script (CSP) except `/assets/passkey.js` on the pages that load it, no referrer.
/// A page whose rendering failed (logged) is answered 500 without a body of its own.
pub fn html(status: StatusCode, page: pages::Page, set_cookies: &[String]) -> Response {
    let csp = if page.passkey_script() { CSP_PASSKEY } else { CSP };
    let (status, body) = match page.into_html() {
        Some(body) => (status, body),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "internal error".to_string()),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // No form-action: Chromium applies it to the redirect after the consent POST, which goes to the
    // client's redirect URI. Everything the templates print is escaped, so only the templates
    // themselves can carry the script tag.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// A 303 redirect (FAPI 2.0 §5.3.2.2: never 307, which would repeat a POST body).
pub fn see_other(location: &str, set_cookies: &[String]) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    for c in set_cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 3986 unreserved kept).
pub fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_languages() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-fapi-session=abc; __Host-fapi-lang=en"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(choose_lang(None, &h, Some("ja")), Lang::En);
        assert_eq!(choose_lang(Some("ja"), &h, None), Lang::Ja);
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("en-GB,en;q=0.8"),
        );
        assert_eq!(choose_lang(None, &h, Some("ja-JP")), Lang::Ja);
        assert_eq!(choose_lang(None, &h, None), Lang::En);
        assert_eq!(choose_lang(None, &HeaderMap::new(), None), Lang::Ja);
    }

    #[test]
    fn csrf_needs_the_session_token() {
        let s = LoginSession {
            csrf: "tok".into(),
            ..Default::default()
        };
        assert!(csrf_ok(&s, Some("tok")));
        assert!(!csrf_ok(&s, Some("tok2")));
        assert!(!csrf_ok(&s, None));
        assert!(!csrf_ok(&LoginSession::default(), Some("")));
    }

    #[test]
    fn encoding() {
        assert_eq!(form_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
