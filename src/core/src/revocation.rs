//! Revocation status from the authorization server (FAPI 2.0 §5.3.4: the resource server checks that
//! the token is not revoked): the revocation feed fapi-guard polls, and RFC 7662 introspection answers.
//!
//! The feed (served by fapi-as, documented in docs/revocation-feed.md):
//! `GET {path}?since={cursor}` answers `200 {"cursor": "...", "revoked": [{"iss", "jti", "exp"}]}`:
//! every access-token revocation after `cursor` (all unexpired ones without `since`). `exp` is the
//! revoked token's own expiry, after which the entry can be forgotten.

use crate::cache::RevocationList;
use serde::Deserialize;

/// Largest feed page accepted, in bytes.
pub const MAX_FEED_PAGE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RevokedToken {
    pub iss: String,
    pub jti: String,
    pub exp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeedPage {
    pub cursor: String,
    pub revoked: Vec<RevokedToken>,
}

impl FeedPage {
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_FEED_PAGE {
            return Err(format!(
                "revocation feed page of {} bytes is too large",
                body.len()
            ));
        }
        serde_json::from_slice(body).map_err(|e| format!("revocation feed page is not valid: {e}"))
    }

    /// Adds the page's revocations to `list`.
    pub fn apply(&self, list: &mut RevocationList) {
        for r in &self.revoked {
            list.revoke(&r.iss, &r.jti, r.exp);
        }
    }
}

/// The `active` member of an RFC 7662 §2.2 introspection response; anything unreadable is an error
/// (the caller fails closed).
pub fn introspection_active(body: &[u8]) -> Result<bool, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "introspection response is not JSON".to_string())?;
    v.get("active")
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| "introspection response has no boolean active".into())
}

/// The RFC 7662 §2.1 request body for `token`.
pub fn introspection_request_body(token: &str) -> String {
    let mut out = String::from("token=");
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str("&token_type_hint=access_token");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::RevocationCheck;

    #[test]
    fn feed_page_applies() {
        let page = FeedPage::parse(br#"{"cursor":"7","revoked":[{"iss":"https://as","jti":"a","exp":100}]}"#);
        let mut list = RevocationList::new();
        if let Ok(p) = &page {
            p.apply(&mut list);
            assert_eq!(p.cursor, "7");
        }
        assert!(list.is_revoked("https://as", "a"));
        assert!(FeedPage::parse(b"{}").is_err());
    }

    #[test]
    fn introspection() {
        assert_eq!(introspection_active(br#"{"active":false}"#), Ok(false));
        assert_eq!(introspection_active(br#"{"active":true,"scope":"x"}"#), Ok(true));
        assert!(introspection_active(br#"{"active":"yes"}"#).is_err());
        assert_eq!(
            introspection_request_body("a.b+c"),
            "token=a.b%2Bc&token_type_hint=access_token"
        );
    }
}
