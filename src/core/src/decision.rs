//! Decisions: an admission with the claims to forward, or a refusal rendered in this one place as the
//! HTTP status, the `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9449 §7.1 and §9, RFC 9470 §3) and
//! the JSON body. The refusals themselves, [`Denial`] and its codes, are in the leaf module
//! [`crate::denial`] (re-exported here). Nothing here ever holds the access token.

use crate::alg::Algorithm;
use crate::token::AccessClaims;
use serde::Serialize;
use std::sync::Arc;

pub use crate::denial::{sanitize, Denial, DpopDefect, ErrorCode, Scheme};

/// What the route accepts, for challenges when the request had no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedSchemes {
    pub bearer: bool,
    pub dpop: bool,
}

/// The challenge scheme for this denial: the scheme the token came with, except that a DPoP
/// proof problem, or a route that accepts only DPoP, answers with a DPoP challenge.
fn challenge_scheme(denial: &Denial, presented: Option<Scheme>, accepted: AcceptedSchemes) -> Scheme {
    match denial {
        Denial::DpopProof(_)
        | Denial::DpopProofReplayed
        | Denial::UseDpopNonce
        | Denial::DpopBoundTokenAsBearer => Scheme::DPoP,
        _ if accepted.dpop && !accepted.bearer => Scheme::DPoP,
        _ => presented.unwrap_or(Scheme::Bearer),
    }
}

/// A refusal, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub denial: Denial,
    pub status: u16,
    pub error: Option<&'static str>,
    pub www_authenticate: Vec<String>,
    /// `{"error": ..., "error_description": ...}`
    pub body: String,
    /// A fresh `DPoP-Nonce` header value (RFC 9449 §8, §9).
    pub dpop_nonce: Option<String>,
    /// The rule that matched, if any.
    pub rule: Option<String>,
    pub client_id: Option<String>,
    /// Set when an unknown `kid` suggests the issuer rotated keys, or when no keys are loaded: the host
    /// may fetch this issuer's set and decide again.
    pub refetch_issuer: Option<String>,
}

impl Deny {
    pub fn reason(&self) -> &'static str {
        self.denial.reason()
    }
}

/// Builds the response for a denial.
///
/// `presented` is the scheme the token came with, `accepted` what the route accepts (used for the
/// challenges of a request without a token), `dpop_algs` the proof algorithms for the DPoP challenge.
pub fn render(
    denial: Denial,
    presented: Option<Scheme>,
    accepted: AcceptedSchemes,
    dpop_algs: &[Algorithm],
) -> Deny {
    let (status, error) = denial.status_and_error();
    let description = denial.description();
    let algs = dpop_algs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" ");
    let mut www_authenticate = Vec::new();
    match error {
        None => {
            // RFC 6750 §3.1: no error code when the request lacks authentication information.
            if accepted.bearer || !accepted.dpop {
                www_authenticate.push("Bearer".to_string());
            }
            if accepted.dpop {
                www_authenticate.push(format!("DPoP algs=\"{algs}\""));
            }
        }
        Some(code) => {
            let scheme = challenge_scheme(&denial, presented, accepted);
            let mut challenge = format!(
                "{} error=\"{}\", error_description=\"{}\"",
                scheme.as_str(),
                code.as_str(),
                sanitize(&description, 200)
            );
            match &denial {
                Denial::InsufficientScope { required } => {
                    challenge.push_str(&format!(", scope=\"{}\"", sanitize(&required.join(" "), 200)));
                }
                Denial::AcrNotAccepted { acr_values } => {
                    challenge.push_str(&format!(
                        ", acr_values=\"{}\"",
                        sanitize(&acr_values.join(" "), 200)
                    ));
                }
                Denial::AuthenticationTooOld { max_age } => {
                    challenge.push_str(&format!(", max_age={max_age}"));
                }
                _ => {}
            }
            if scheme == Scheme::DPoP {
                challenge.push_str(&format!(", algs=\"{algs}\""));
            }
            www_authenticate.push(challenge);
        }
    }
    // RFC 6750 §3.1: a request without credentials gets no error code, in the body either.
    let body = match error {
        Some(code) => serde_json::json!({ "error": code.as_str(), "error_description": description }),
        None => serde_json::json!({ "error_description": description }),
    }
    .to_string();
    Deny {
        denial,
        status,
        error: error.map(ErrorCode::as_str),
        www_authenticate,
        body,
        dpop_nonce: None,
        rule: None,
        client_id: None,
        refetch_issuer: None,
    }
}

/// How the token was bound to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    Mtls,
    Dpop,
    /// An unbound bearer token, admitted only where the route allows it.
    Bearer,
}

impl BindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Mtls => "mtls",
            BindingKind::Dpop => "dpop",
            BindingKind::Bearer => "bearer",
        }
    }
}

/// An admitted request.
#[derive(Debug, Clone)]
pub struct Allow {
    pub rule: String,
    pub claims: Arc<AccessClaims>,
    pub binding: BindingKind,
    /// Headers to set on the upstream request (claim name mapping from the policy).
    pub forward: Vec<(String, String)>,
    /// The signature check was skipped because this token was verified before.
    pub cache_hit: bool,
    /// The rule asks for the token's status by RFC 7662 introspection (`revocation: introspection`):
    /// the host must ask the authorization server, and get `active`, before it forwards the request.
    pub introspect: bool,
    /// The rule binds the request body to the token's `authorization_details` (RFC 9396) and the
    /// body was not read yet ([`crate::Guard::decide_before_body`]): the request is admitted only
    /// once [`crate::Guard::check_body`] accepts its body, read up to this many bytes (more: 413).
    pub awaiting_body: Option<usize>,
}

#[derive(Debug, Clone)]
pub enum Decision {
    Allow(Allow),
    Deny(Box<Deny>),
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
    /// `"allowed"` or the denial's reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow(_) => "allowed",
            Decision::Deny(d) => d.reason(),
        }
    }
    pub fn status(&self) -> u16 {
        match self {
            Decision::Allow(_) => 200,
            Decision::Deny(d) => d.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: AcceptedSchemes = AcceptedSchemes {
        bearer: true,
        dpop: true,
    };

    #[test]
    fn missing_token_challenges_without_error() {
        let d = render(Denial::MissingToken, None, BOTH, &[Algorithm::ES256]);
        assert_eq!(d.status, 401);
        assert_eq!(
            d.www_authenticate,
            vec!["Bearer".to_string(), "DPoP algs=\"ES256\"".to_string()]
        );
    }

    #[test]
    fn scope_and_step_up_parameters() {
        let d = render(
            Denial::InsufficientScope {
                required: vec!["payments".into()],
            },
            Some(Scheme::Bearer),
            BOTH,
            &[],
        );
        assert_eq!(d.status, 403);
        assert!(d.www_authenticate[0].starts_with("Bearer error=\"insufficient_scope\""));
        assert!(d.www_authenticate[0].ends_with("scope=\"payments\""));
        let d = render(
            Denial::AuthenticationTooOld { max_age: 300 },
            Some(Scheme::DPoP),
            BOTH,
            &[Algorithm::ES256],
        );
        assert_eq!(d.error, Some("insufficient_user_authentication"));
        assert!(d.www_authenticate[0].starts_with("DPoP error=\"insufficient_user_authentication\""));
        assert!(d.www_authenticate[0].contains("max_age=300"));
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
        assert_eq!(body["error"], "insufficient_user_authentication");
    }

    #[test]
    fn missing_token_body_has_no_error_code() {
        let d = render(Denial::MissingToken, None, BOTH, &[]);
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
        assert!(
            body.get("error").is_none(),
            "RFC 6750 §3.1: no error code without credentials"
        );
        assert_eq!(body["error_description"], "no access token");
    }

    #[test]
    fn dpop_only_routes_challenge_with_dpop() {
        let dpop_only = AcceptedSchemes {
            bearer: false,
            dpop: true,
        };
        let d = render(
            Denial::BindingNotAllowed,
            Some(Scheme::Bearer),
            dpop_only,
            &[Algorithm::ES256],
        );
        assert!(
            d.www_authenticate[0].starts_with("DPoP error=\"invalid_token\""),
            "{:?}",
            d.www_authenticate
        );
        assert!(d.www_authenticate[0].ends_with("algs=\"ES256\""));
        let d = render(Denial::Expired, Some(Scheme::Bearer), BOTH, &[Algorithm::ES256]);
        assert!(d.www_authenticate[0].starts_with("Bearer error=\"invalid_token\""));
    }

    /// RFC 9396 refusals: 403 insufficient_authorization_details with a challenge in the token's
    /// scheme; the mismatch names the field only; 413 and 503 for the body limit and the store.
    #[test]
    fn authorization_details_refusals() {
        for (denial, reason) in [
            (
                Denial::AuthorizationDetailsMissing,
                "authorization_details_missing",
            ),
            (
                Denial::AuthorizationDetailsMismatch("/amount".into()),
                "authorization_details_mismatch",
            ),
            (Denial::BodyNotJson, "body_not_json"),
            (Denial::AuthorizationDetailsUsed, "authorization_details_used"),
        ] {
            let d = render(denial, Some(Scheme::DPoP), BOTH, &[Algorithm::ES256]);
            assert_eq!((d.status, d.reason()), (403, reason));
            assert!(
                d.www_authenticate[0].starts_with("DPoP error=\"insufficient_authorization_details\""),
                "{:?}",
                d.www_authenticate
            );
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
            assert_eq!(body["error"], "insufficient_authorization_details");
        }
        let d = render(
            Denial::AuthorizationDetailsMismatch("/to_account".into()),
            Some(Scheme::Bearer),
            BOTH,
            &[],
        );
        assert!(d.body.contains("/to_account"));
        assert!(d.www_authenticate[0].starts_with("Bearer error=\"insufficient_authorization_details\""));
        let d = render(Denial::BodyTooLarge, Some(Scheme::Bearer), BOTH, &[]);
        assert_eq!((d.status, d.error), (413, Some("invalid_request")));
        let d = render(Denial::AuthorizationDetailsStoreFull, None, BOTH, &[]);
        assert_eq!((d.status, d.error), (503, Some("temporarily_unavailable")));
    }

    #[test]
    fn descriptions_cannot_break_the_header() {
        let d = render(
            Denial::AlgorithmNotAllowed("x\"y\\z\r\n".into()),
            Some(Scheme::Bearer),
            BOTH,
            &[],
        );
        assert!(d.www_authenticate[0].contains("algorithm xyz is not allowed"));
    }
}
