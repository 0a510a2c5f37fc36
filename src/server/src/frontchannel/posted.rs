//! The preamble every POST of the browser flow shares, as an axum extractor: the body size (413), the
//! session cookie, the form, the CSRF token (compared in constant time, [`super::csrf_ok`]), the
//! flow the session is in and the page language. A handler that takes [`Posted`] has passed all of
//! them; a refusal is the error page ([`PageError`]), so no handler repeats these steps.

use super::authorize::{flow_of, ui_locales, Flow};
use super::pages::{Lang, Msg};
use super::par::collect;
use super::{choose_lang, csrf_ok, load_session};
use crate::app::Shared;
use crate::error::{PageError, PageResult};
use crate::model::LoginSession;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::Form;
use std::collections::BTreeMap;

type FormPairs = std::result::Result<Form<Vec<(String, String)>>, FormRejection>;

/// The parts every POST of the flow starts with: the session, the CSRF check, the language.
pub struct Posted {
    pub key: String,
    pub sess: LoginSession,
    pub flow: Flow,
    pub lang: Lang,
    pub form: BTreeMap<String, String>,
}

async fn posted(s: &Shared, headers: &HeaderMap, form: FormPairs) -> PageResult<Posted> {
    let fallback = choose_lang(None, headers, None);
    if form
        .as_ref()
        .is_err_and(|e| e.status() == StatusCode::PAYLOAD_TOO_LARGE)
    {
        return Err(PageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            fallback,
            Msg::BadRequest,
        ));
    }
    let Some((key, sess)) = load_session(s, headers).await? else {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            fallback,
            Msg::SessionExpired,
        ));
    };
    let form = match form.ok().map(|Form(p)| collect(p)) {
        Some(Ok(f)) => f,
        _ => return Err(PageError::new(StatusCode::BAD_REQUEST, fallback, Msg::BadRequest)),
    };
    let flow = flow_of(s, &sess).await?;
    let lang = choose_lang(None, headers, ui_locales(&flow));
    if !csrf_ok(&sess, form.get("csrf").map(String::as_str)) {
        s.metrics.count("login", "csrf");
        return Err(PageError::new(StatusCode::FORBIDDEN, lang, Msg::Csrf));
    }
    if matches!(flow, Flow::Gone) {
        return Err(PageError::new(StatusCode::BAD_REQUEST, lang, Msg::RequestExpired));
    }
    Ok(Posted {
        key,
        sess,
        flow,
        lang,
        form,
    })
}

impl FromRequest<Shared> for Posted {
    type Rejection = PageError;

    async fn from_request(req: Request, s: &Shared) -> PageResult<Posted> {
        let headers = req.headers().clone();
        let form: FormPairs = Form::from_request(req, s).await;
        posted(s, &headers, form).await
    }
}
