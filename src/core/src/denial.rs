//! The refusal vocabulary of fapi-core: every rule a token, proof or request can break is a [`Denial`]
//! variant with its HTTP status, OAuth error code (RFC 6750 §3.1, RFC 9449 §7.1 and §9, RFC 9470 §3),
//! stable reason code and description. A leaf module: the checks ([`crate::token`], [`crate::jwt`],
//! [`crate::dpop`]) and the answer ([`crate::decision`]) import it; it imports none of them.
//! Nothing here ever holds a token.

use serde::Serialize;
use std::fmt;

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
    /// The token's start (`iat` or `nbf`) is older than the use accepts (FAPI 2.0 Message Signing
    /// §5.3.1: a request object's `nbf` no older than 60 minutes).
    TooOld,
    AudienceMismatch,
    /// `sub` is not the expected subject (RFC 7523 §3: a client assertion's `sub` is the client).
    SubjectMismatch,
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
    // Payment-bound tokens (RFC 9396 §9.1: the resource server enforces what the details grant)
    /// The token carries no `authorization_details` detail of the type the rule requires.
    AuthorizationDetailsMissing,
    /// No detail of the type matches the request body; names the first body field (a JSON pointer)
    /// that differed, never a value.
    AuthorizationDetailsMismatch(String),
    /// The rule binds body fields and the body is not a JSON object.
    BodyNotJson,
    /// The detail already admitted its one request (`once`).
    AuthorizationDetailsUsed,
    /// The body is larger than the rule's `max_body`: refused, never passed on unchecked.
    BodyTooLarge,
    /// The store of used details is full of live entries (or `once` cannot be recorded): refused
    /// rather than admitted twice.
    AuthorizationDetailsStoreFull,
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
    /// The request is not what the token's `authorization_details` grant (RFC 9396 §9.1; the code
    /// is the one RFC 9396 §5 gives the authorization server, used here in the challenge).
    InsufficientAuthorizationDetails,
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
            ErrorCode::InsufficientAuthorizationDetails => "insufficient_authorization_details",
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
            | TooOld
            | AudienceMismatch
            | SubjectMismatch
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
            KeysUnavailable | RevocationStatusUnknown | ReplayStoreFull | AuthorizationDetailsStoreFull => {
                (503, Some(TemporarilyUnavailable))
            }
            AuthorizationDetailsMissing
            | AuthorizationDetailsMismatch(_)
            | BodyNotJson
            | AuthorizationDetailsUsed => (403, Some(ErrorCode::InsufficientAuthorizationDetails)),
            BodyTooLarge => (413, Some(InvalidRequest)),
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
            TooOld => "token_too_old",
            SubjectMismatch => "subject_mismatch",
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
            AuthorizationDetailsMissing => "authorization_details_missing",
            AuthorizationDetailsMismatch(_) => "authorization_details_mismatch",
            BodyNotJson => "body_not_json",
            AuthorizationDetailsUsed => "authorization_details_used",
            BodyTooLarge => "body_too_large",
            AuthorizationDetailsStoreFull => "authorization_details_store_full",
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
            TooOld => "the token was issued too long ago".into(),
            SubjectMismatch => "the token subject is not the expected one".into(),
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
            AuthorizationDetailsMissing => {
                "the token carries no authorization_details of the type this resource requires".into()
            }
            AuthorizationDetailsMismatch(field) => format!(
                "the request field {} is not what the user consented to",
                sanitize(field, 64)
            ),
            BodyNotJson => "the request body is not the JSON object this resource expects".into(),
            AuthorizationDetailsUsed => "the consented authorization_details have been used".into(),
            BodyTooLarge => "the request body is too large".into(),
            AuthorizationDetailsStoreFull => {
                "authorization_details cannot be checked for reuse right now".into()
            }
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
