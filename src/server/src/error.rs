//! OAuth error responses, produced in one place: RFC 6749 §5.2 JSON bodies (`error`,
//! `error_description`), 401 with `WWW-Authenticate` for failed client authentication, RFC 9449 §8
//! `use_dpop_nonce` with a fresh `DPoP-Nonce`. Internal errors are logged and answered as
//! `server_error` without details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

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
