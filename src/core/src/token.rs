//! JWT access tokens (RFC 9068) checked the FAPI way: header rules of RFC 8725 and FAPI 2.0 §5.4,
//! signature through the issuer's key set, and the claims of RFC 7519 §4.1 with FAPI 2.0 §5.3.2.1 clock
//! tolerances.
//!
//! What this module does not check: sender constraint ([`crate::binding`], [`crate::dpop`]), revocation
//! ([`crate::cache`]) and route policy ([`crate::policy`]).

use crate::alg::{Algorithm, AlgorithmName};
use crate::denial::Denial;
use crate::jwks::{Jwks, KeySelection};
use crate::jws::CompactJws;
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

    /// The time-dependent checks, repeated on every use of a cached token.
    pub fn check_time(&self, rules: &TokenRules, now: i64) -> Result<(), Denial> {
        let past = rules.leeway_past as i64;
        let future = rules.leeway_future as i64;
        // RFC 7519 §4.1.4: the token MUST NOT be accepted on or after exp.
        if now >= self.exp.saturating_add(past) {
            return Err(Denial::Expired);
        }
        if let Some(nbf) = self.nbf {
            if now.saturating_add(future) < nbf {
                return Err(Denial::NotYetValid);
            }
        }
        // FAPI 2.0 §5.3.2.1: iat up to 10 s in the future is tolerated, beyond is refused.
        if let Some(iat) = self.iat {
            if iat > now.saturating_add(future) {
                return Err(Denial::IssuedInFuture);
            }
        }
        Ok(())
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
        if let Some(max) = rules.max_lifetime {
            let start = self.iat.or(self.nbf).ok_or(Denial::MissingClaim("iat"))?;
            if self.exp.saturating_sub(start) > max as i64 {
                return Err(Denial::LifetimeTooLong);
            }
        }
        Ok(())
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

/// NumericDate (RFC 7519 §2): integer or fractional seconds. Fractions are truncated.
fn opt_time(map: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Denial> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f as i64)),
                    _ => Err(Denial::MalformedClaim(name)),
                }
            }
        }
        Some(_) => Err(Denial::MalformedClaim(name)),
    }
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

/// The header checks that need no key, for any JWS that is not a DPoP proof:
/// `alg` named and allowed (RFC 8725 §3.1: never `none` or HMAC), no embedded key or key URL
/// (RFC 8725 §3.10; FAPI 2.0 §5.4 "should not use jku/x5u"), no `crit` (RFC 7515 §4.1.11: this
/// verifier understands no extension, so any listed one is refused), `typ` (RFC 9068 §4, RFC 8725
/// §3.11: a DPoP proof or an ID token cannot pass as an access token).
pub fn check_header(
    jws: &CompactJws<'_>,
    allowed: &[Algorithm],
    require_typ: bool,
) -> Result<(Algorithm, Option<String>), Denial> {
    let alg_name = jws
        .header_str("alg")
        .map_err(|_| Denial::MalformedToken("the JWT alg is not a string"))?;
    let alg_name = alg_name.ok_or(Denial::MalformedToken("the JWT header has no alg"))?;
    let alg = match AlgorithmName::parse(alg_name) {
        AlgorithmName::Supported(a) if allowed.contains(&a) => a,
        AlgorithmName::Supported(a) => return Err(Denial::AlgorithmNotAllowed(a.as_str().to_string())),
        AlgorithmName::Forbidden(n) | AlgorithmName::Unknown(n) => {
            return Err(Denial::AlgorithmNotAllowed(n))
        }
    };
    for header in ["jwk", "jku", "x5u", "x5c"] {
        if jws.header.contains_key(header) {
            return Err(Denial::KeyInHeader(match header {
                "jwk" => "jwk",
                "jku" => "jku",
                "x5u" => "x5u",
                _ => "x5c",
            }));
        }
    }
    if jws.header.contains_key("crit") {
        return Err(Denial::UnknownCritical);
    }
    let typ = jws.header_str("typ").map_err(|_| Denial::TypNotAllowed)?;
    let typ_ok = match typ.map(|t| t.to_ascii_lowercase()) {
        Some(t) if t == "at+jwt" || t == "application/at+jwt" => true,
        Some(t) if t == "jwt" => !require_typ,
        Some(_) => false,
        None => !require_typ,
    };
    if !typ_ok {
        return Err(Denial::TypNotAllowed);
    }
    let kid = jws
        .header_str("kid")
        .map_err(|_| Denial::MalformedToken("the JWT kid is not a string"))?
        .map(str::to_string);
    Ok((alg, kid))
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
