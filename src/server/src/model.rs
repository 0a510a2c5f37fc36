//! The records that pass between the front channel (PAR, authorization, login, consent) and the back
//! channel (token endpoint), as stored in [`crate::store::Store`] items.

use serde::{Deserialize, Serialize};

/// Item kinds in the store.
pub const PAR: &str = "par";
pub const CODE: &str = "code";
pub const SESSION: &str = "session";

/// A pushed authorization request (RFC 9126), stored under its `request_uri` until it expires
/// (FAPI 2.0 §5.3.2.2: under 600 s) or is used (single use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParRequest {
    pub client_id: String,
    /// Required in PAR and matched exactly against the registration (FAPI 2.0 §5.3.2.2).
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    /// OIDC nonce, at most 64 characters (FAPI 2.0 §5.3.2.2).
    pub nonce: Option<String>,
    /// PKCE S256 challenge (RFC 7636; FAPI 2.0: S256 required).
    pub code_challenge: String,
    /// `query` (default) or `jwt` (JARM).
    pub response_mode: Option<String>,
    /// Requested `acr` values, space-separated (step-up).
    pub acr_values: Option<String>,
    /// OIDC `max_age`, seconds.
    pub max_age: Option<u64>,
    /// RFC 9449 §10: the DPoP key thumbprint the code is bound to.
    pub dpop_jkt: Option<String>,
    pub prompt: Option<String>,
    /// `ja` or `en`.
    pub ui_locales: Option<String>,
    /// RFC 9396 §2: the authorization details asked for, checked and in canonical form
    /// ([`crate::authorization_details::check_request`]); the debtor account is added at consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Vec<serde_json::Value>>,
}

/// An authorization code, stored under SHA-256(code): single use, at most 60 s (FAPI 2.0 §5.3.2.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodeRecord {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub dpop_jkt: Option<String>,
    pub acr: String,
    pub amr: Vec<String>,
    pub auth_time: i64,
    /// The grant the consent created; a second use of the code revokes it (RFC 6749 §4.1.2).
    pub grant_id: String,
    /// The `state` of the request, for FAPI 1 `s_hash`.
    pub state: Option<String>,
}

/// The browser's sign-in progress for one authorization request (cookie `__Host-fapi-session`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LoginSession {
    /// The authorization request's `request_uri` (empty: a connected-apps session).
    pub request_uri: String,
    /// Anti-CSRF token embedded in the forms.
    pub csrf: String,
    pub user_id: Option<String>,
    /// What the user has proven so far: `pwd`, `otp`, `hwk` (RFC 8176 amr values).
    pub amr: Vec<String>,
    pub acr: Option<String>,
    pub auth_time: Option<i64>,
    /// WebAuthn challenge of a ceremony under way, as `get:<issued at>:<challenge>` (sign-in) or
    /// `create:<issued at>:<challenge>` (registration); single use.
    pub webauthn_challenge: Option<String>,
    /// The pushed request, taken (used up) from the store at `GET /authorize` (RFC 9126 §4: the
    /// `request_uri` is single use), so the person has the flow's lifetime to sign in and consent
    /// rather than the request_uri's 60 s. `None` once the flow is answered (approve, deny, error).
    #[serde(default)]
    pub par: Option<ParRequest>,
    /// Until when (unix seconds) the authorization flow may still be answered.
    #[serde(default)]
    pub flow_expires_at: Option<i64>,
}
