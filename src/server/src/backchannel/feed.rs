//! The revocation feed the Envoy plugin polls (fapi_core::revocation; FAPI 2.0 §5.3.4: resource
//! servers learn of revoked tokens):
//! `GET /revocations?since=CURSOR` with `Authorization: Bearer <feed.token>` answers
//! `{"cursor": "<revoked_at_ms>:<jti>", "revoked": [{"iss", "jti", "exp"}]}`: the revocations of
//! still-unexpired access tokens after the cursor, oldest first, at most [`PAGE`] per answer; without
//! `since`, all of them from the start. One indexed query per poll (access_tokens_revoked).
//!
//! Cursor safety: `(revoked_at_ms, jti)` orders revocations totally, so the cursor only moves forward
//! and a page never repeats or skips within the order. A revocation's timestamp is taken before its
//! write commits, so a write can become visible after a later one; revocations younger than
//! [`SETTLE_MS`] are therefore held back for the next poll instead of being jumped over by the cursor.
//!
//! Without a configured feed token the feed does not exist (404); a wrong credential is 401.

use super::support::{bearer, credential_eq};
use crate::app::{AppState, Shared};
use crate::error::{OAuthError, Result};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest page.
pub const PAGE: i64 = 1000;
/// Revocations younger than this (ms) wait for the next poll (see the module documentation).
pub const SETTLE_MS: i64 = 2000;

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    pub since: Option<String>,
}

/// A position in the feed: after `(revoked_at_ms, jti)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ms: i64,
    pub jti: String,
}

impl Cursor {
    /// Before every revocation.
    pub fn start() -> Self {
        Cursor {
            ms: -1,
            jti: String::new(),
        }
    }

    /// `"<ms>:<jti>"`; `None` for anything else (a jti is base64url, so it holds no `:`).
    pub fn parse(s: &str) -> Option<Self> {
        let (ms, jti) = s.split_once(':')?;
        let ms: i64 = ms.parse().ok()?;
        let jti_ok = jti.len() <= 256
            && jti
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (ms >= -1 && jti_ok).then(|| Cursor {
            ms,
            jti: jti.to_string(),
        })
    }

    pub fn render(&self) -> String {
        format!("{}:{}", self.ms, self.jti)
    }
}

/// `GET /revocations`.
pub async fn feed(
    State(state): State<Shared>,
    headers: HeaderMap,
    query: std::result::Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(expected) = state.config.feed.token.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !bearer(&headers).is_some_and(|p| credential_eq(p, expected)) {
        state.metrics.count("revocations", "unauthorized");
        let mut r =
            OAuthError::invalid_token("the revocation feed needs its bearer credential").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return r;
    }
    let Ok(Query(q)) = query else {
        return OAuthError::invalid_request("since is not a cursor of this feed").into_response();
    };
    let since = q.since;
    match page(&state, since.as_deref(), state.clock.now(), state.clock.now_ms()).await {
        Ok(body) => {
            state.metrics.count("revocations", "ok");
            let mut r = Json(body).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            state.metrics.count("revocations", e.error);
            e.into_response()
        }
    }
}

/// One feed page after `since` (all unexpired revocations when `None`).
pub async fn page(state: &AppState, since: Option<&str>, now: i64, now_ms: i64) -> Result<Value> {
    let cursor = match since.filter(|s| !s.is_empty()) {
        None => Cursor::start(),
        Some(s) => Cursor::parse(s)
            .ok_or_else(|| OAuthError::invalid_request("since is not a cursor of this feed"))?,
    };
    let rows = state
        .store
        .revocations_since(cursor.ms, &cursor.jti, now, PAGE)
        .await?;
    let settled = now_ms - SETTLE_MS;
    let mut next = cursor;
    let mut revoked = Vec::with_capacity(rows.len());
    for r in rows.into_iter().take_while(|r| r.revoked_at_ms <= settled) {
        revoked.push(json!({ "iss": state.config.issuer, "jti": r.jti, "exp": r.exp }));
        next = Cursor {
            ms: r.revoked_at_ms,
            jti: r.jti,
        };
    }
    Ok(json!({ "cursor": next.render(), "revoked": revoked }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects() {
        let c = Cursor {
            ms: 1_700_000_000_123,
            jti: "abc-_9".into(),
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        assert_eq!(Cursor::parse(&Cursor::start().render()), Some(Cursor::start()));
        assert_eq!(Cursor::parse("12"), None);
        assert_eq!(Cursor::parse("x:abc"), None);
        assert_eq!(Cursor::parse("-5:abc"), None);
        assert_eq!(Cursor::parse("5:a'b"), None);
        assert_eq!(Cursor::parse(&format!("5:{}", "a".repeat(257))), None);
    }
}
