//! The two kinds of error answer, one type each, both produced in one place:
//!
//! - [`OAuthError`], for the OAuth endpoints: RFC 6749 §5.2 JSON bodies (`error`,
//!   `error_description`), 401 with `WWW-Authenticate` for failed client authentication, RFC 9449
//!   §8 `use_dpop_nonce` with a fresh `DPoP-Nonce`. Internal errors are logged and answered as
//!   `server_error` without details.
//! - [`PageError`], for the pages a person sees (the front channel's `/authorize`, `/login`,
//!   `/consent`, `/apps`, ...): the status and the rendered error page, in the person's language.
//!   Used where no redirect URI is verified, so nothing can go back to the app (RFC 6749 §4.1.2.1:
//!   "MUST NOT automatically redirect the user-agent to the invalid redirection URI"). Internal
//!   errors (an [`OAuthError`] or a database error raised on the way) become a 500 page without
//!   details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::frontchannel::pages::{self, Lang, Msg};

#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            dpop_nonce: None,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_dpop_proof(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", d)
    }
    pub fn use_dpop_nonce(nonce: String) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "use_dpop_nonce",
            "a DPoP nonce is required",
        );
        e.dpop_nonce = Some(nonce);
        e
    }
    pub fn invalid_token(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d)
    }
    pub fn access_denied(d: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "access_denied", d)
    }
    pub fn too_many_requests(d: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "slow_down", d)
    }
    /// An internal failure: logged with its cause, answered without it.
    pub fn server(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }
}

/// A form body that could not be read: 413 `invalid_request` when it is over the body limit
/// (RFC 9110 §15.5.14), else 400 `invalid_request`.
pub fn form_rejected(e: axum::extract::rejection::FormRejection) -> OAuthError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        OAuthError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        )
    } else {
        OAuthError::invalid_request("the body must be application/x-www-form-urlencoded")
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::server(format!("database: {e}"))
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.error, "error_description": self.description }));
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED && self.error == "invalid_client" {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(n) = self.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            headers.insert("dpop-nonce", n);
        }
        resp
    }
}

pub type Result<T> = std::result::Result<T, OAuthError>;

/// An error page of the front channel: status, language and message.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub lang: Lang,
    pub msg: Msg,
}

impl PageError {
    pub fn new(status: StatusCode, lang: Lang, msg: Msg) -> Self {
        PageError { status, lang, msg }
    }
}

/// An error raised on the way (already logged by [`OAuthError::server`]): a 500 page without
/// details, or the status of a client error with a generic message. The language is not known
/// here: the pages' default, Japanese.
impl From<OAuthError> for PageError {
    fn from(e: OAuthError) -> Self {
        if e.status.is_server_error() {
            PageError::new(StatusCode::INTERNAL_SERVER_ERROR, Lang::Ja, Msg::Internal)
        } else {
            PageError::new(e.status, Lang::Ja, Msg::BadRequest)
        }
    }
}

impl From<crate::random::RandomError> for PageError {
    fn from(e: crate::random::RandomError) -> Self {
        OAuthError::from(e).into()
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        OAuthError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        crate::frontchannel::html(
            self.status,
            pages::error(self.lang, &self.msg.text(self.lang)),
            &[],
        )
    }
}

/// What the page handlers return: a response, or an error page.
pub type PageResult<T> = std::result::Result<T, PageError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn page(e: PageError) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = e.into_response();
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_page_error_is_the_rendered_error_page_with_the_page_headers() {
        let (status, headers, body) = page(PageError::new(StatusCode::FORBIDDEN, Lang::En, Msg::Csrf)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], crate::frontchannel::CSP);
        assert!(body.contains("<h1>Cannot continue</h1>"), "{body}");
        assert!(body.contains(&Msg::Csrf.text(Lang::En)), "{body}");
        let (_, _, body) = page(PageError::new(StatusCode::BAD_REQUEST, Lang::Ja, Msg::BadRequest)).await;
        assert!(body.contains("<html lang=\"ja\">") && body.contains(&Msg::BadRequest.text(Lang::Ja)));
    }

    #[tokio::test]
    async fn an_internal_error_on_a_page_is_a_500_page_without_its_cause() {
        let (status, _, body) = page(OAuthError::server("database: secret detail").into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains(&Msg::Internal.text(Lang::Ja)), "{body}");
        assert!(!body.contains("secret detail"), "{body}");
        let (status, _, body) = page(OAuthError::invalid_request("details").into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains(&Msg::BadRequest.text(Lang::Ja)) && !body.contains("details"));
    }
}
