//! JWT access tokens (RFC 9068) checked the FAPI way: header rules of RFC 8725 and FAPI 2.0 §5.4,
//! signature through the issuer's key set, and the claims of RFC 7519 §4.1 with FAPI 2.0 §5.3.2.1 clock
//! tolerances. The header and time rules are [`crate::verify`]'s, configured by an issuer's
//! [`TokenRules`]; this module adds what is particular to access tokens (picking the issuer by its
//! `iss`, the claims RFC 9068 §2.2 names) and keeps them apart for the cache of verified tokens.
//!
//! What this module does not check: sender constraint ([`crate::binding`], [`crate::dpop`]), revocation
//! ([`crate::cache`]) and route policy ([`crate::policy`]).

use crate::alg::Algorithm;
use crate::denial::Denial;
use crate::jwks::{Jwks, KeySelection};
use crate::jws::CompactJws;
use crate::verify::{self, HeaderRules, LifetimeStart, TimeRules, Times, TypRule, KEY_HEADERS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How an issuer's tokens are checked. Built from the policy; defaults follow FAPI 2.0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRules {
    /// The exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values; the token must name at least one.
    pub audiences: Vec<String>,
    /// Allowed signature algorithms (default PS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Require `typ: at+jwt` (RFC 9068 §4). When false, an absent `typ` or `JWT` is accepted too.
    #[serde(default)]
    pub require_typ: bool,
    /// Seconds an expired token is still accepted (clock skew), default 60.
    #[serde(default = "default_leeway_past")]
    pub leeway_past: u64,
    /// Seconds `iat`/`nbf` may lie in the future, default 10 (FAPI 2.0 §5.3.2.1).
    #[serde(default = "default_leeway_future")]
    pub leeway_future: u64,
    /// Longest accepted `exp - iat`, in seconds.
    #[serde(default)]
    pub max_lifetime: Option<u64>,
    /// Claims that must be present besides iss, aud and exp (RFC 9068 §2.2 lists sub, client_id, iat, jti).
    #[serde(default = "default_required_claims")]
    pub required_claims: Vec<String>,
}

fn default_algorithms() -> Vec<Algorithm> {
    Algorithm::FAPI.to_vec()
}
fn default_leeway_past() -> u64 {
    60
}
fn default_leeway_future() -> u64 {
    10
}
fn default_required_claims() -> Vec<String> {
    ["sub", "client_id", "iat", "jti"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl TokenRules {
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        TokenRules {
            issuer: issuer.into(),
            audiences,
            algorithms: default_algorithms(),
            require_typ: false,
            leeway_past: default_leeway_past(),
            leeway_future: default_leeway_future(),
            max_lifetime: None,
            required_claims: default_required_claims(),
        }
    }
}

impl TokenRules {
    /// The time rules of [`crate::verify`] these rules stand for: `exp` required, the leeways, the
    /// maximum lifetime counted from `iat` (else `nbf`).
    pub fn time_rules(&self) -> TimeRules {
        TimeRules {
            exp_required: true,
            leeway_past: self.leeway_past,
            leeway_future: self.leeway_future,
            max_lifetime: self.max_lifetime,
            max_age: None,
            start: LifetimeStart::IatOrNbf,
        }
    }
}

/// The `cnf` claim (RFC 7800) members fapi-guard understands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Confirmation {
    /// RFC 8705 §3.1 `x5t#S256`.
    pub x5t_s256: Option<String>,
    /// RFC 9449 §6.1 `jkt`.
    pub jkt: Option<String>,
}

/// The claims of a verified access token.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub client_id: Option<String>,
    pub scope: Vec<String>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
    pub auth_time: Option<i64>,
    pub jti: Option<String>,
    pub cnf: Confirmation,
    /// Every claim as sent, for the policy's claim conditions.
    #[serde(skip)]
    pub all: Map<String, Value>,
}

impl AccessClaims {
    /// Reads the claims from a JWT payload. Missing optional claims are `None`; a claim of the wrong type
    /// is [`Denial::MalformedClaim`]; `iss`, `aud` and `exp` are always required.
    pub fn from_payload(payload: Map<String, Value>) -> Result<Self, Denial> {
        let iss = opt_string(&payload, "iss")?.ok_or(Denial::MissingClaim("iss"))?;
        let aud = match payload.get("aud") {
            None => return Err(Denial::MissingClaim("aud")),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Denial::MalformedClaim("aud"))?,
            Some(_) => return Err(Denial::MalformedClaim("aud")),
        };
        let exp = opt_time(&payload, "exp")?.ok_or(Denial::MissingClaim("exp"))?;
        let scope = match payload.get("scope") {
            None => Vec::new(),
            // RFC 9068 §2.2.3: a space-delimited string; some issuers send an array.
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Denial::MalformedClaim("scope"))?,
            Some(_) => return Err(Denial::MalformedClaim("scope")),
        };
        let amr = match payload.get("amr") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(Denial::MalformedClaim("amr"))?,
            Some(_) => return Err(Denial::MalformedClaim("amr")),
        };
        let cnf = match payload.get("cnf") {
            None => Confirmation::default(),
            Some(Value::Object(c)) => Confirmation {
                x5t_s256: opt_string(c, "x5t#S256").map_err(|_| Denial::MalformedClaim("cnf"))?,
                jkt: opt_string(c, "jkt").map_err(|_| Denial::MalformedClaim("cnf"))?,
            },
            Some(_) => return Err(Denial::MalformedClaim("cnf")),
        };
        Ok(AccessClaims {
            iss,
            sub: opt_string(&payload, "sub")?,
            aud,
            exp,
            nbf: opt_time(&payload, "nbf")?,
            iat: opt_time(&payload, "iat")?,
            client_id: opt_string(&payload, "client_id")?,
            scope,
            acr: opt_string(&payload, "acr")?,
            amr,
            auth_time: opt_time(&payload, "auth_time")?,
            jti: opt_string(&payload, "jti")?,
            cnf,
            all: payload,
        })
    }

    /// The time-dependent checks, repeated on every use of a cached token ([`verify::check_window`]).
    pub fn check_time(&self, rules: &TokenRules, now: i64) -> Result<(), Denial> {
        verify::check_window(&self.times(), &rules.time_rules(), now)
    }

    /// `exp`, `nbf` and `iat`.
    pub fn times(&self) -> Times {
        Times {
            exp: Some(self.exp),
            nbf: self.nbf,
            iat: self.iat,
        }
    }

    /// The time-independent claim checks: required claims, audience, lifetime.
    pub fn check_static(&self, rules: &TokenRules) -> Result<(), Denial> {
        if self.iss != rules.issuer {
            return Err(Denial::UnknownIssuer);
        }
        for claim in &rules.required_claims {
            let present = match claim.as_str() {
                "sub" => self.sub.is_some(),
                "client_id" => self.client_id.is_some(),
                "iat" => self.iat.is_some(),
                "jti" => self.jti.is_some(),
                "nbf" => self.nbf.is_some(),
                "scope" => self.all.contains_key("scope"),
                other => self.all.contains_key(other),
            };
            if !present {
                return Err(Denial::MissingClaim(static_claim_name(claim)));
            }
        }
        if !self.aud.iter().any(|a| rules.audiences.contains(a)) {
            return Err(Denial::AudienceMismatch);
        }
        // The lifetime starts at iat (else nbf), so this check does not depend on the clock.
        verify::check_lifetime(&self.times(), &rules.time_rules(), 0)
    }
}

fn static_claim_name(claim: &str) -> &'static str {
    match claim {
        "sub" => "sub",
        "client_id" => "client_id",
        "iat" => "iat",
        "jti" => "jti",
        "nbf" => "nbf",
        "scope" => "scope",
        "acr" => "acr",
        "auth_time" => "auth_time",
        _ => "required by policy",
    }
}

fn opt_string(map: &Map<String, Value>, name: &'static str) -> Result<Option<String>, Denial> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Denial::MalformedClaim(name)),
    }
}

/// NumericDate (RFC 7519 §2), as [`verify::numeric_date`].
fn opt_time(map: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Denial> {
    verify::numeric_date(map, name)
}

/// A parsed token whose header passed the cheap checks; its signature is not verified yet.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub jws: CompactJws<'a>,
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The `iss` claim, read before verification only to pick the issuer's keys.
    pub iss: String,
}

/// The header checks that need no key, for an access token ([`verify::check_header`]):
/// `alg` named and allowed (RFC 8725 §3.1: never `none` or HMAC), no embedded key or key URL
/// (RFC 8725 §3.10; FAPI 2.0 §5.4 "should not use jku/x5u"), no `crit` (RFC 7515 §4.1.11: this
/// verifier understands no extension, so any listed one is refused), `typ` (RFC 9068 §4, RFC 8725
/// §3.11: a DPoP proof or an ID token cannot pass as an access token).
pub fn check_header(
    jws: &CompactJws<'_>,
    allowed: &[Algorithm],
    require_typ: bool,
) -> Result<(Algorithm, Option<String>), Denial> {
    const TYPED: [&str; 2] = ["at+jwt", "application/at+jwt"];
    const UNTYPED_TOO: [&str; 3] = ["at+jwt", "application/at+jwt", "jwt"];
    let rules = HeaderRules {
        algorithms: allowed,
        typ: TypRule {
            accepted: if require_typ { &TYPED } else { &UNTYPED_TOO },
            optional: !require_typ,
        },
        forbidden: &KEY_HEADERS,
        understood_crit: &[],
    };
    verify::check_header(jws, &rules).map(|h| (h.alg, h.kid))
}

/// Parses an access token and applies every check that needs no key: [`check_header`] with the
/// rules of the issuer its `iss` names (read unverified, only to pick the issuer).
pub fn parse_unverified<'a, 'r>(
    token: &'a str,
    rules_for: impl Fn(&str) -> Option<&'r TokenRules>,
) -> Result<(Unverified<'a>, &'r TokenRules), Denial> {
    let jws = CompactJws::parse(token).map_err(|e| Denial::MalformedToken(e.describe()))?;
    // Algorithms no issuer may use are refused before the issuer is even looked up.
    check_header(
        &jws,
        &[
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
            Algorithm::RS256,
        ],
        false,
    )?;
    let iss = match jws.payload.get("iss") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Denial::MalformedClaim("iss")),
        None => return Err(Denial::MissingClaim("iss")),
    };
    let rules = rules_for(&iss).ok_or(Denial::UnknownIssuer)?;
    let (alg, kid) = check_header(&jws, &rules.algorithms, rules.require_typ)?;
    Ok((Unverified { jws, alg, kid, iss }, rules))
}

impl Unverified<'_> {
    /// Selects the key (see [`crate::jwks`] for the rule) and verifies the signature.
    pub fn verify(self, keys: &Jwks) -> Result<Map<String, Value>, Denial> {
        let key = match keys.select(self.kid.as_deref(), self.alg) {
            KeySelection::Found(k) => k,
            KeySelection::UnknownKid => return Err(Denial::UnknownKid),
            KeySelection::Ambiguous => return Err(Denial::AmbiguousKey),
            KeySelection::NoSuitableKey => return Err(Denial::KeyUnusable),
        };
        if key.verify(self.alg, self.jws.signing_input.as_bytes(), &self.jws.signature) {
            Ok(self.jws.payload)
        } else {
            Err(Denial::SignatureInvalid)
        }
    }
}
