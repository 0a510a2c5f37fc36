//! Decisions and the rules they name: every refusal is a [`Denial`] variant, mapped in this one place to
//! the HTTP status, the OAuth error code (RFC 6750 §3.1, RFC 9449 §7.1 and §9, RFC 9470 §3), the
//! `WWW-Authenticate` challenge and the JSON body, and to a stable reason code for metrics and logs.
//! Nothing here ever holds the access token.

use crate::alg::Algorithm;
use crate::token::AccessClaims;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// The authorization scheme the token came with (RFC 6750 §2.1, RFC 9449 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Scheme {
    Bearer,
    DPoP,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::DPoP => "DPoP",
        }
    }
}

/// A defect in a DPoP proof (RFC 9449 §4.3 checks, numbered as there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopDefect {
    /// More than one DPoP header (§4.3 step 1).
    MultipleHeaders,
    /// The DPoP scheme was used without a proof.
    Missing,
    /// Not a well-formed JWT (§4.3 step 2).
    Malformed,
    /// A required claim or header is missing or of the wrong type (§4.3 step 3).
    MissingClaim(&'static str),
    /// `typ` is not `dpop+jwt` (step 4).
    Typ,
    /// `alg` is not an allowed asymmetric algorithm (step 5).
    Algorithm,
    /// The `jwk` header is not a usable public key (step 7).
    Jwk,
    /// The `jwk` header holds a private key (step 7).
    PrivateJwk,
    /// The signature does not verify with the embedded key (step 6).
    Signature,
    /// `htm` differs from the request method (step 8).
    Htm,
    /// `htu` differs from the request URI (step 9).
    Htu,
    /// `iat` is outside the accepted window (step 11).
    Iat,
    /// `ath` differs from the hash of the access token (step 12).
    Ath,
    /// The proof carries a nonce that this server did not issue or that expired (step 10).
    Nonce,
}

/// Why a request is refused. Variants name the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    // Request shape (RFC 6750 §2, §3.1 invalid_request)
    /// No credentials at all: RFC 6750 §3.1 says the challenge carries no error code.
    MissingToken,
    /// The access token was sent in the query string (FAPI 2.0 §5.3.4: header only).
    TokenInQuery,
    MultipleAuthorizationHeaders,
    MalformedAuthorization,
    // The token itself (invalid_token)
    MalformedToken(&'static str),
    AlgorithmNotAllowed(String),
    TypNotAllowed,
    /// The header brings its own key or key reference (`jwk`, `jku`, `x5u`, `x5c`): RFC 8725 §3.10.
    KeyInHeader(&'static str),
    /// `crit` names extensions this verifier does not implement (RFC 7515 §4.1.11).
    UnknownCritical,
    UnknownIssuer,
    UnknownKid,
    AmbiguousKey,
    /// The issuer's key set has no key that may verify this algorithm (wrong type, `alg`, `use` or
    /// `key_ops`), though it may know the `kid`: not a rotation, so no refetch.
    KeyUnusable,
    SignatureInvalid,
    MissingClaim(&'static str),
    MalformedClaim(&'static str),
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    AudienceMismatch,
    Revoked,
    /// Introspection said `active: false`.
    Inactive,
    // Sender constraint (RFC 8705 §3, RFC 9449 §7)
    CertificateMissing,
    CertificateThumbprintMismatch,
    DpopBoundTokenAsBearer,
    DpopKeyMismatch,
    BearerTokenNotAllowed,
    BindingNotAllowed,
    DpopProof(DpopDefect),
    DpopProofReplayed,
    /// The route requires a server-provided nonce and the proof has none (RFC 9449 §9).
    UseDpopNonce,
    // Policy
    NoMatchingRule,
    InsufficientScope {
        required: Vec<String>,
    },
    /// RFC 9470: the authentication context is too weak.
    AcrNotAccepted {
        acr_values: Vec<String>,
    },
    /// RFC 9470: the authentication is too old (or its time is unknown).
    AuthenticationTooOld {
        max_age: u64,
    },
    ClientNotAllowed,
    ClaimConditionFailed(String),
    // Fail closed
    /// No usable keys for the issuer (never fetched, or the last good set is too old).
    KeysUnavailable,
    /// A revocation or introspection source needed by the route cannot answer.
    RevocationStatusUnknown,
    /// The DPoP replay store is full of live entries: the proof cannot be checked for replay.
    ReplayStoreFull,
}

/// An OAuth error code, as it appears in `error=` and in the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidToken,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidDpopProof,
    UseDpopNonce,
    AccessDenied,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InsufficientUserAuthentication => "insufficient_user_authentication",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl Denial {
    /// HTTP status and OAuth error code. `None` only for [`Denial::MissingToken`].
    pub fn status_and_error(&self) -> (u16, Option<ErrorCode>) {
        use Denial::*;
        use ErrorCode::{
            AccessDenied, InsufficientUserAuthentication, InvalidDpopProof, InvalidRequest, InvalidToken,
            TemporarilyUnavailable,
        };
        match self {
            MissingToken => (401, None),
            TokenInQuery | MultipleAuthorizationHeaders | MalformedAuthorization => {
                (400, Some(InvalidRequest))
            }
            MalformedToken(_)
            | AlgorithmNotAllowed(_)
            | TypNotAllowed
            | KeyInHeader(_)
            | UnknownCritical
            | UnknownIssuer
            | UnknownKid
            | AmbiguousKey
            | KeyUnusable
            | SignatureInvalid
            | MissingClaim(_)
            | MalformedClaim(_)
            | Expired
            | NotYetValid
            | IssuedInFuture
            | LifetimeTooLong
            | AudienceMismatch
            | Revoked
            | Inactive
            | CertificateMissing
            | CertificateThumbprintMismatch
            | DpopBoundTokenAsBearer
            | DpopKeyMismatch
            | BearerTokenNotAllowed
            | BindingNotAllowed => (401, Some(InvalidToken)),
            DpopProof(_) | DpopProofReplayed => (401, Some(InvalidDpopProof)),
            Denial::UseDpopNonce => (401, Some(ErrorCode::UseDpopNonce)),
            Denial::InsufficientScope { .. } => (403, Some(ErrorCode::InsufficientScope)),
            AcrNotAccepted { .. } | AuthenticationTooOld { .. } => {
                (401, Some(InsufficientUserAuthentication))
            }
            NoMatchingRule | ClientNotAllowed | ClaimConditionFailed(_) => (403, Some(AccessDenied)),
            KeysUnavailable | RevocationStatusUnknown | ReplayStoreFull => {
                (503, Some(TemporarilyUnavailable))
            }
        }
    }

    /// Stable reason code for metrics, logs, the CLI and the studio.
    pub fn reason(&self) -> &'static str {
        use Denial::*;
        match self {
            MissingToken => "missing_token",
            TokenInQuery => "token_in_query",
            MultipleAuthorizationHeaders => "multiple_authorization_headers",
            MalformedAuthorization => "malformed_authorization",
            MalformedToken(_) => "malformed_token",
            AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            TypNotAllowed => "typ_not_allowed",
            KeyInHeader(_) => "key_in_header",
            UnknownCritical => "unknown_critical_header",
            UnknownIssuer => "unknown_issuer",
            UnknownKid => "unknown_kid",
            AmbiguousKey => "ambiguous_key",
            KeyUnusable => "key_unusable",
            SignatureInvalid => "signature_invalid",
            MissingClaim(_) => "claim_missing",
            MalformedClaim(_) => "claim_malformed",
            Expired => "token_expired",
            NotYetValid => "token_not_yet_valid",
            IssuedInFuture => "token_issued_in_future",
            LifetimeTooLong => "token_lifetime_too_long",
            AudienceMismatch => "audience_mismatch",
            Revoked => "token_revoked",
            Inactive => "token_inactive",
            CertificateMissing => "certificate_missing",
            CertificateThumbprintMismatch => "binding_mismatch",
            DpopBoundTokenAsBearer => "dpop_token_as_bearer",
            DpopKeyMismatch => "dpop_key_mismatch",
            BearerTokenNotAllowed => "bearer_not_allowed",
            BindingNotAllowed => "binding_not_allowed",
            DpopProof(d) => match d {
                DpopDefect::MultipleHeaders => "dpop_multiple_headers",
                DpopDefect::Missing => "dpop_proof_missing",
                DpopDefect::Malformed => "dpop_malformed",
                DpopDefect::MissingClaim(_) => "dpop_claim_missing",
                DpopDefect::Typ => "dpop_typ",
                DpopDefect::Algorithm => "dpop_alg",
                DpopDefect::Jwk => "dpop_jwk",
                DpopDefect::PrivateJwk => "dpop_private_jwk",
                DpopDefect::Signature => "dpop_signature",
                DpopDefect::Htm => "dpop_htm",
                DpopDefect::Htu => "dpop_htu",
                DpopDefect::Iat => "dpop_iat",
                DpopDefect::Ath => "dpop_ath",
                DpopDefect::Nonce => "dpop_nonce_invalid",
            },
            DpopProofReplayed => "dpop_replay",
            UseDpopNonce => "dpop_nonce_required",
            NoMatchingRule => "no_matching_rule",
            InsufficientScope { .. } => "insufficient_scope",
            AcrNotAccepted { .. } => "acr_not_accepted",
            AuthenticationTooOld { .. } => "auth_time_too_old",
            ClientNotAllowed => "client_not_allowed",
            ClaimConditionFailed(_) => "claim_condition_failed",
            KeysUnavailable => "jwks_unavailable",
            RevocationStatusUnknown => "revocation_status_unknown",
            ReplayStoreFull => "dpop_replay_store_full",
        }
    }

    /// A human-readable description, safe for `error_description` (no token, no quotes).
    pub fn description(&self) -> String {
        use Denial::*;
        match self {
            MissingToken => "no access token".into(),
            TokenInQuery => "access tokens are accepted in the Authorization header only".into(),
            MultipleAuthorizationHeaders => "more than one Authorization header".into(),
            MalformedAuthorization => "the Authorization header is malformed".into(),
            MalformedToken(why) => (*why).into(),
            AlgorithmNotAllowed(alg) => format!("algorithm {} is not allowed", sanitize(alg, 16)),
            TypNotAllowed => "the token typ is not at+jwt".into(),
            KeyInHeader(h) => format!("the token header must not carry {h}"),
            UnknownCritical => "the token header has critical extensions that are not understood".into(),
            UnknownIssuer => "the token issuer is not trusted".into(),
            UnknownKid => "the token was signed with an unknown key".into(),
            AmbiguousKey => "the issuer key set has no single key for this token".into(),
            KeyUnusable => "the issuer has no key that may verify this token".into(),
            SignatureInvalid => "the token signature is invalid".into(),
            MissingClaim(c) => format!("the token has no {c} claim"),
            MalformedClaim(c) => format!("the token claim {c} is malformed"),
            Expired => "the token has expired".into(),
            NotYetValid => "the token is not valid yet".into(),
            IssuedInFuture => "the token was issued in the future".into(),
            LifetimeTooLong => "the token lifetime exceeds the maximum".into(),
            AudienceMismatch => "the token is not meant for this audience".into(),
            Revoked => "the token has been revoked".into(),
            Inactive => "the token is not active".into(),
            CertificateMissing => {
                "the token is certificate-bound and no client certificate was presented".into()
            }
            CertificateThumbprintMismatch => "the token is bound to another client certificate".into(),
            DpopBoundTokenAsBearer => "a DPoP-bound token must be sent with the DPoP scheme".into(),
            DpopKeyMismatch => "the DPoP proof key does not match the token binding".into(),
            BearerTokenNotAllowed => "this resource requires a sender-constrained token".into(),
            BindingNotAllowed => "the token binding kind is not accepted for this resource".into(),
            DpopProof(d) => match d {
                DpopDefect::MultipleHeaders => "more than one DPoP header".into(),
                DpopDefect::Missing => "the DPoP scheme requires a DPoP proof".into(),
                DpopDefect::Malformed => "the DPoP proof is not a valid JWT".into(),
                DpopDefect::MissingClaim(c) => format!("the DPoP proof has no valid {c}"),
                DpopDefect::Typ => "the DPoP proof typ is not dpop+jwt".into(),
                DpopDefect::Algorithm => "the DPoP proof algorithm is not allowed".into(),
                DpopDefect::Jwk => "the DPoP proof jwk is not an acceptable public key".into(),
                DpopDefect::PrivateJwk => "the DPoP proof jwk contains a private key".into(),
                DpopDefect::Signature => "the DPoP proof signature is invalid".into(),
                DpopDefect::Htm => "the DPoP proof htm does not match the request method".into(),
                DpopDefect::Htu => "the DPoP proof htu does not match the request URI".into(),
                DpopDefect::Iat => "the DPoP proof iat is outside the accepted window".into(),
                DpopDefect::Ath => "the DPoP proof ath does not match the access token".into(),
                DpopDefect::Nonce => "the DPoP proof nonce is invalid or expired".into(),
            },
            DpopProofReplayed => "the DPoP proof has been used before".into(),
            UseDpopNonce => "a DPoP nonce is required".into(),
            NoMatchingRule => "no policy rule allows this request".into(),
            InsufficientScope { required } => {
                format!("the token lacks scope {}", required.join(" "))
            }
            AcrNotAccepted { .. } => "a stronger authentication is required".into(),
            AuthenticationTooOld { .. } => "a more recent authentication is required".into(),
            ClientNotAllowed => "this client may not use this resource".into(),
            ClaimConditionFailed(claim) => format!(
                "the token claim {} does not satisfy the policy",
                sanitize(claim, 64)
            ),
            KeysUnavailable => "the issuer keys are unavailable".into(),
            RevocationStatusUnknown => "the token revocation status cannot be determined".into(),
            ReplayStoreFull => "DPoP proofs cannot be checked for replay right now".into(),
        }
    }

    /// The challenge scheme for this denial: the scheme the token came with, except that a DPoP
    /// proof problem, or a route that accepts only DPoP, answers with a DPoP challenge.
    fn challenge_scheme(&self, presented: Option<Scheme>, accepted: AcceptedSchemes) -> Scheme {
        match self {
            Denial::DpopProof(_)
            | Denial::DpopProofReplayed
            | Denial::UseDpopNonce
            | Denial::DpopBoundTokenAsBearer => Scheme::DPoP,
            _ if accepted.dpop && !accepted.bearer => Scheme::DPoP,
            _ => presented.unwrap_or(Scheme::Bearer),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason(), self.description())
    }
}

/// Keeps only characters RFC 6750 §3 allows in a quoted `error_description` and bounds the length.
pub fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| matches!(*c as u32, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
        .take(max)
        .collect()
}

/// What the route accepts, for challenges when the request had no token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedSchemes {
    pub bearer: bool,
    pub dpop: bool,
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
            let scheme = denial.challenge_scheme(presented, accepted);
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
