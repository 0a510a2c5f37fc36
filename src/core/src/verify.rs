//! JWT verification, one validator for every signed JWT fapi-guard accepts: JWS Compact Serialization
//! (RFC 7515 §3.1, §5.2), the JWT validation steps of RFC 7519 §7.2 and the JWT best current practices
//! of RFC 8725, configured per use by a [`Validation`]:
//! - access tokens (RFC 9068; [`crate::token`] applies these rules with an issuer's [`TokenRules`]),
//! - client assertions (RFC 7523 §3, FAPI 2.0 Security Profile §5.3.2.1: `aud` the issuer),
//! - request objects (RFC 9101 §6, FAPI 2.0 Message Signing §5.3.1: `nbf` no older than 60 minutes,
//!   `exp - nbf` at most 60 minutes),
//! - the authorization server's own tokens (introspection, revocation),
//! - and the header and time rules of DPoP proofs ([`crate::dpop`], RFC 9449 §4.3).
//!
//! Every rule refuses with a [`Denial`] naming it; each use maps that to its own OAuth error.
//! `now` is always a parameter. What this module does not check: sender constraint
//! ([`crate::binding`], [`crate::dpop`]), replay of a `jti` (the caller's store: the verified
//! [`Times`] say until when to remember it), revocation, and any claim beyond those named here.
//!
//! [`TokenRules`]: crate::token::TokenRules

use crate::alg::{Algorithm, AlgorithmName};
use crate::denial::Denial;
use crate::jwks::{Jwks, KeySelection};
use crate::jws::CompactJws;
use serde_json::{Map, Value};

/// Header parameters that bring their own key or a key reference, refused by default:
/// RFC 8725 §3.10 (never trust a key the token names itself), FAPI 2.0 §5.4 (no `jku`/`x5u`).
pub const KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// Which `typ` header values are accepted (RFC 8725 §3.11 explicit typing). Media types compare
/// case-insensitively (RFC 7515 §4.1.9, RFC 2045); the values listed here are in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypRule<'a> {
    /// Accepted values, lower case.
    pub accepted: &'a [&'a str],
    /// Whether a token without `typ` is accepted.
    pub optional: bool,
}

/// The header rules of one use: everything that needs no key.
#[derive(Debug, Clone, Copy)]
pub struct HeaderRules<'a> {
    /// Allowed signature algorithms. `none` and HMAC can never be named (RFC 8725 §3.1, §3.2: see
    /// [`AlgorithmName`]), so the HS256-with-the-public-key confusion cannot happen.
    pub algorithms: &'a [Algorithm],
    pub typ: TypRule<'a>,
    /// Header parameters that must be absent (default [`KEY_HEADERS`]).
    pub forbidden: &'a [&'a str],
    /// Extension header parameters this use understands: `crit` may list only these (RFC 7515
    /// §4.1.11). Empty: any `crit` is refused.
    pub understood_crit: &'a [&'a str],
}

/// The checked header: algorithm and key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

/// Applies the header rules to a parsed JWS, in this order: `alg` (RFC 8725 §3.1), forbidden
/// parameters (RFC 8725 §3.10), `crit` (RFC 7515 §4.1.11), `typ` (RFC 8725 §3.11), `kid` a string.
pub fn check_header(jws: &CompactJws<'_>, rules: &HeaderRules<'_>) -> Result<Header, Denial> {
    let alg_name = jws
        .header_str("alg")
        .map_err(|_| Denial::MalformedToken("the JWT alg is not a string"))?
        .ok_or(Denial::MalformedToken("the JWT header has no alg"))?;
    let alg = match AlgorithmName::parse(alg_name) {
        AlgorithmName::Supported(a) if rules.algorithms.contains(&a) => a,
        AlgorithmName::Supported(a) => return Err(Denial::AlgorithmNotAllowed(a.as_str().to_string())),
        AlgorithmName::Forbidden(n) | AlgorithmName::Unknown(n) => {
            return Err(Denial::AlgorithmNotAllowed(n))
        }
    };
    for header in rules.forbidden {
        if jws.header.contains_key(*header) {
            return Err(Denial::KeyInHeader(static_header_name(header)));
        }
    }
    if let Some(crit) = jws.header.get("crit") {
        check_crit(crit, &jws.header, rules.understood_crit)?;
    }
    let typ = jws.header_str("typ").map_err(|_| Denial::TypNotAllowed)?;
    let typ_ok = match typ {
        Some(t) => rules.typ.accepted.iter().any(|a| t.eq_ignore_ascii_case(a)),
        None => rules.typ.optional,
    };
    if !typ_ok {
        return Err(Denial::TypNotAllowed);
    }
    let kid = jws
        .header_str("kid")
        .map_err(|_| Denial::MalformedToken("the JWT kid is not a string"))?
        .map(str::to_string);
    Ok(Header { alg, kid })
}

fn static_header_name(name: &str) -> &'static str {
    match name {
        "jwk" => "jwk",
        "jku" => "jku",
        "x5u" => "x5u",
        "x5c" => "x5c",
        "x5t" => "x5t",
        "x5t#S256" => "x5t#S256",
        _ => "a forbidden parameter",
    }
}

/// RFC 7515 §4.1.11: `crit` is a non-empty array of names of header parameters that are present, not
/// defined by RFC 7515/7518 themselves, and understood by the recipient; otherwise the JWS is invalid.
fn check_crit(crit: &Value, header: &Map<String, Value>, understood: &[&str]) -> Result<(), Denial> {
    const REGISTERED: [&str; 11] = [
        "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit",
    ];
    let Value::Array(names) = crit else {
        return Err(Denial::UnknownCritical);
    };
    if names.is_empty() {
        return Err(Denial::UnknownCritical);
    }
    for name in names {
        let ok = name
            .as_str()
            .is_some_and(|n| !REGISTERED.contains(&n) && understood.contains(&n) && header.contains_key(n));
        if !ok {
            return Err(Denial::UnknownCritical);
        }
    }
    Ok(())
}

/// The time claims of a JWT (RFC 7519 §4.1.4-6), as NumericDate seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Times {
    /// Reads `exp`, `nbf` and `iat`; a present claim that is not a NumericDate is malformed.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Self, Denial> {
        Ok(Times {
            exp: numeric_date(claims, "exp")?,
            nbf: numeric_date(claims, "nbf")?,
            iat: numeric_date(claims, "iat")?,
        })
    }
}

/// NumericDate (RFC 7519 §2): integer or fractional seconds. Fractions are truncated.
pub fn numeric_date(map: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Denial> {
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

/// Where a token's lifetime starts, for [`TimeRules::max_lifetime`] and [`TimeRules::max_age`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeStart {
    /// `iat`, else `nbf`; neither present: refused as [`Denial::MissingClaim`] `iat`.
    IatOrNbf,
    /// `nbf`, which must be present (FAPI 2.0 Message Signing §5.3.1 for request objects).
    Nbf,
    /// `iat`, else `nbf`, else now (RFC 7523 §3: `iat` is optional in a client assertion); a start
    /// in the future counts from now.
    IatOrNbfOrNow,
}

/// The time rules of one use (RFC 7519 §4.1.4-6, FAPI 2.0 §5.3.2.1 clock tolerance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    /// `exp` must be present (otherwise it is checked only when present).
    pub exp_required: bool,
    /// Seconds an expired token is still accepted.
    pub leeway_past: u64,
    /// Seconds `iat` and `nbf` may lie in the future (FAPI 2.0 §5.3.2.1: 10).
    pub leeway_future: u64,
    /// Longest accepted `exp - start`, seconds.
    pub max_lifetime: Option<u64>,
    /// Oldest accepted start, seconds before now.
    pub max_age: Option<u64>,
    pub start: LifetimeStart,
}

/// The checks that depend on the clock (repeated on every use of a cached token): `exp` passed
/// ([`Denial::Expired`]), `nbf` or `iat` in the future ([`Denial::NotYetValid`],
/// [`Denial::IssuedInFuture`]), start older than `max_age` ([`Denial::TooOld`]).
pub fn check_window(t: &Times, rules: &TimeRules, now: i64) -> Result<(), Denial> {
    let future = rules.leeway_future as i64;
    match t.exp {
        // RFC 7519 §4.1.4: the token MUST NOT be accepted on or after exp.
        Some(exp) if now >= exp.saturating_add(rules.leeway_past as i64) => return Err(Denial::Expired),
        None if rules.exp_required => return Err(Denial::MissingClaim("exp")),
        _ => {}
    }
    if let Some(nbf) = t.nbf {
        if now.saturating_add(future) < nbf {
            return Err(Denial::NotYetValid);
        }
    }
    // FAPI 2.0 §5.3.2.1: iat up to 10 s in the future is tolerated, beyond is refused.
    if let Some(iat) = t.iat {
        if iat > now.saturating_add(future) {
            return Err(Denial::IssuedInFuture);
        }
    }
    if let Some(max_age) = rules.max_age {
        let start = start(t, rules.start, now)?;
        if start < now.saturating_sub(max_age as i64) {
            return Err(Denial::TooOld);
        }
    }
    Ok(())
}

/// The lifetime check: `exp - start` at most `max_lifetime` ([`Denial::LifetimeTooLong`]). Depends on
/// the clock only with [`LifetimeStart::IatOrNbfOrNow`].
pub fn check_lifetime(t: &Times, rules: &TimeRules, now: i64) -> Result<(), Denial> {
    if let (Some(max), Some(exp)) = (rules.max_lifetime, t.exp) {
        let start = start(t, rules.start, now)?;
        if exp.saturating_sub(start) > max as i64 {
            return Err(Denial::LifetimeTooLong);
        }
    }
    Ok(())
}

fn start(t: &Times, from: LifetimeStart, now: i64) -> Result<i64, Denial> {
    match from {
        LifetimeStart::IatOrNbf => t.iat.or(t.nbf).ok_or(Denial::MissingClaim("iat")),
        LifetimeStart::Nbf => t.nbf.ok_or(Denial::MissingClaim("nbf")),
        LifetimeStart::IatOrNbfOrNow => Ok(t.iat.or(t.nbf).map_or(now, |s| s.min(now))),
    }
}

/// `aud` (RFC 7519 §4.1.3): a string or a non-empty array of strings; `true` when one value is
/// accepted.
pub fn audience_matches(aud: Option<&Value>, accepted: impl Fn(&str) -> bool) -> Result<bool, Denial> {
    match aud {
        None => Err(Denial::MissingClaim("aud")),
        Some(Value::String(s)) => Ok(accepted(s)),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut any = false;
            for item in items {
                let s = item.as_str().ok_or(Denial::MalformedClaim("aud"))?;
                any |= accepted(s);
            }
            Ok(any)
        }
        Some(_) => Err(Denial::MalformedClaim("aud")),
    }
}

/// How one use of JWTs is verified. Built by the constructors, one per use, whose documentation says
/// the defaults; every field is public so a use can be tightened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// What the JWT is, for error descriptions ("client assertion").
    pub what: &'static str,
    /// The HTTP status and OAuth error code this use answers a refusal with (RFC 6749 §5.2
    /// `invalid_client` for a client assertion, RFC 9101 §6.3 `invalid_request_object`, RFC 6750 §3.1
    /// `invalid_token`).
    pub status: u16,
    pub error: &'static str,
    /// Allowed algorithms (default FAPI 2.0 §5.4.1: PS256, ES256, EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// Accepted `typ` values, lower case.
    pub typ: Vec<&'static str>,
    /// Whether `typ` may be absent.
    pub typ_optional: bool,
    /// Header parameters that must be absent (default [`KEY_HEADERS`]).
    pub forbidden_headers: Vec<&'static str>,
    /// Extensions `crit` may name (default none: any `crit` is refused).
    pub understood_crit: Vec<&'static str>,
    /// The exact `iss`; `None`: not checked here.
    pub issuer: Option<String>,
    /// The exact `sub`; `None`: not checked here.
    pub subject: Option<String>,
    /// [`Validation::for_client`] sets `subject` too (RFC 7523 §3: a client assertion's `sub` is the
    /// client).
    pub subject_is_client: bool,
    /// Accepted `aud` values (one must be named); `None`: `aud` is not checked.
    pub audiences: Option<Vec<String>>,
    /// Accept an `aud` value equal to one in `audiences` once trailing slashes are removed.
    pub audience_trailing_slash: bool,
    /// Claims that must be present besides those the rules above imply.
    pub required_claims: Vec<&'static str>,
    pub times: TimeRules,
}

/// A JWT whose header passed the rules of a [`Validation`]; signature and claims not checked yet.
#[derive(Debug)]
pub struct Parsed<'t> {
    pub jws: CompactJws<'t>,
    pub header: Header,
}

impl Parsed<'_> {
    /// A claim as a string, **unverified**: only to choose the keys (the `iss` of a client assertion).
    pub fn unverified_str(&self, name: &str) -> Option<&str> {
        self.jws.payload.get(name).and_then(Value::as_str)
    }

    /// Whether `keys` has the one key the selection rule ([`crate::jwks`]) picks for this JWT: when it
    /// has not, the caller may refresh the key set (rotation) before [`Validation::finish`].
    pub fn key_found(&self, keys: &Jwks) -> bool {
        matches!(
            keys.select(self.header.kid.as_deref(), self.header.alg),
            KeySelection::Found(_)
        )
    }
}

/// A verified JWT: its header, every claim, and its times (e.g. to remember a `jti` until `exp`).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub header: Header,
    pub claims: Map<String, Value>,
    pub times: Times,
}

impl Verified {
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// Until when a replay store must remember this JWT's `jti`: after its `exp` plus the leeway the
    /// validation grants (or, without `exp`, after the oldest start it accepts), plus one second.
    pub fn remember_until(&self, validation: &Validation, now: i64) -> i64 {
        let t = &validation.times;
        let until = match self.times.exp {
            Some(exp) => exp.saturating_add(t.leeway_past as i64),
            None => now.saturating_add(t.max_age.or(t.max_lifetime).unwrap_or(0) as i64),
        };
        until.saturating_add(1)
    }
}

/// Largest JWT accepted, as for [`crate::jws::MAX_JWS_LEN`].
pub const MAX_JWT_LEN: usize = crate::jws::MAX_JWS_LEN;

impl Validation {
    fn base(what: &'static str, status: u16, error: &'static str) -> Self {
        Validation {
            what,
            status,
            error,
            algorithms: Algorithm::FAPI.to_vec(),
            typ: Vec::new(),
            typ_optional: true,
            forbidden_headers: KEY_HEADERS.to_vec(),
            understood_crit: Vec::new(),
            issuer: None,
            subject: None,
            subject_is_client: false,
            audiences: None,
            audience_trailing_slash: false,
            required_claims: Vec::new(),
            times: TimeRules {
                exp_required: true,
                leeway_past: 0,
                leeway_future: 10,
                max_lifetime: None,
                max_age: None,
                start: LifetimeStart::IatOrNbf,
            },
        }
    }

    /// A client assertion for `private_key_jwt` (RFC 7523 §3, OpenID Connect Core §9): FAPI 2.0
    /// algorithms, `typ` absent, `JWT` or `client-authentication+jwt`, `iss` = `sub` = the client (set with
    /// [`Validation::for_client`]), `aud` one of `audiences` (FAPI 2.0 §5.3.2.1: the issuer
    /// identifier; the endpoint URLs are accepted too), `exp` and `jti` required, 10 s of clock
    /// skew either way, at most 10 minutes from `iat` (or now) to `exp`.
    pub fn client_assertion(audiences: Vec<String>) -> Self {
        let mut v = Validation::base("client assertion", 401, "invalid_client");
        // Untyped, `JWT`, or the explicit type of draft-ietf-oauth-rfc7523bis; never another JWT's
        // type (RFC 8725 §3.11: a DPoP proof or access token cannot pass as an assertion).
        v.typ = vec!["jwt", "client-authentication+jwt"];
        v.audiences = Some(audiences);
        v.subject_is_client = true;
        v.required_claims = vec!["jti"];
        v.times.leeway_past = 10;
        v.times.max_lifetime = Some(600);
        v.times.start = LifetimeStart::IatOrNbfOrNow;
        v
    }

    /// Sets the client a client assertion or request object must come from: `iss` (and, for a
    /// client assertion, `sub`) must be `client_id`.
    #[must_use]
    pub fn for_client(mut self, client_id: &str) -> Self {
        self.issuer = Some(client_id.to_string());
        if self.subject_is_client {
            self.subject = Some(client_id.to_string());
        }
        self
    }

    /// A request object (RFC 9101 §6, FAPI 2.0 Message Signing §5.3.1): FAPI 2.0 algorithms, `typ`
    /// `oauth-authz-req+jwt` or `JWT` or none (RFC 9101 §10.8), `iss` the client (set with
    /// [`Validation::for_client`]), `aud` the issuer identifier, `exp` and `nbf` required, `nbf` no
    /// older than 60 minutes and `exp - nbf` at most 60 minutes, 10 s of skew for `nbf`/`iat` in the
    /// future, none past `exp`.
    pub fn request_object(issuer: &str) -> Self {
        let mut v = Validation::base("request object", 400, "invalid_request_object");
        v.typ = vec!["oauth-authz-req+jwt", "jwt"];
        v.audiences = Some(vec![issuer.to_string()]);
        v.audience_trailing_slash = true;
        v.required_claims = vec!["nbf"];
        v.times.max_lifetime = Some(3600);
        v.times.max_age = Some(3600);
        v.times.start = LifetimeStart::Nbf;
        v
    }

    /// A JWT the authorization server signed itself, presented back to it (introspection,
    /// revocation): `typ` exactly `typ` (RFC 9068 §4 `at+jwt` for access tokens), `iss` the issuer,
    /// `aud` one of `audiences` (those it puts in its tokens), FAPI 2.0 algorithms, `exp` required and
    /// no leeway (it was issued on this clock), at most `max_lifetime` seconds from `iat` (else
    /// `nbf`) to `exp`, the lifetime it issues.
    pub fn own_token(issuer: &str, typ: &'static str, audiences: Vec<String>, max_lifetime: u64) -> Self {
        let mut v = Validation::base("token", 401, "invalid_token");
        v.typ = vec![typ];
        v.typ_optional = false;
        v.issuer = Some(issuer.to_string());
        v.audiences = Some(audiences);
        v.times.max_lifetime = Some(max_lifetime);
        v
    }

    /// The header rules of this validation, borrowed.
    pub fn header_rules(&self) -> HeaderRules<'_> {
        HeaderRules {
            algorithms: &self.algorithms,
            typ: TypRule {
                accepted: &self.typ,
                optional: self.typ_optional,
            },
            forbidden: &self.forbidden_headers,
            understood_crit: &self.understood_crit,
        }
    }

    /// Parses the JWT and applies every rule that needs no key. A JWE (five segments, RFC 7516) is
    /// refused: only signed JWTs are accepted.
    pub fn parse<'t>(&self, token: &'t str) -> Result<Parsed<'t>, Denial> {
        if token.len() <= MAX_JWT_LEN && token.bytes().filter(|b| *b == b'.').count() == 4 {
            return Err(Denial::MalformedToken("encrypted JWTs (JWE) are not accepted"));
        }
        let jws = CompactJws::parse(token).map_err(|e| Denial::MalformedToken(e.describe()))?;
        let header = check_header(&jws, &self.header_rules())?;
        Ok(Parsed { jws, header })
    }

    /// Verifies the signature with the key `keys` selects, then the claims: `iss`, `sub`, `aud`,
    /// required claims, the time window and the lifetime.
    pub fn finish(&self, parsed: Parsed<'_>, keys: &Jwks, now: i64) -> Result<Verified, Denial> {
        let Parsed { jws, header } = parsed;
        let key = match keys.select(header.kid.as_deref(), header.alg) {
            KeySelection::Found(k) => k,
            KeySelection::UnknownKid => return Err(Denial::UnknownKid),
            KeySelection::Ambiguous => return Err(Denial::AmbiguousKey),
            KeySelection::NoSuitableKey => return Err(Denial::KeyUnusable),
        };
        if !key.verify(header.alg, jws.signing_input.as_bytes(), &jws.signature) {
            return Err(Denial::SignatureInvalid);
        }
        let claims = jws.payload;
        let times = self.check_claims(&claims, now)?;
        Ok(Verified {
            header,
            claims,
            times,
        })
    }

    /// [`Validation::parse`] then [`Validation::finish`].
    pub fn verify(&self, token: &str, keys: &Jwks, now: i64) -> Result<Verified, Denial> {
        self.finish(self.parse(token)?, keys, now)
    }

    /// The claim rules on a payload whose signature is verified.
    pub fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<Times, Denial> {
        let string = |name: &'static str| match claims.get(name) {
            None => Err(Denial::MissingClaim(name)),
            Some(Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(Denial::MalformedClaim(name)),
        };
        if let Some(issuer) = &self.issuer {
            if string("iss")? != issuer {
                return Err(Denial::UnknownIssuer);
            }
        }
        if let Some(subject) = &self.subject {
            if string("sub")? != subject {
                return Err(Denial::SubjectMismatch);
            }
        }
        if let Some(audiences) = &self.audiences {
            let slash = self.audience_trailing_slash;
            let ok = audience_matches(claims.get("aud"), |a| {
                audiences
                    .iter()
                    .any(|x| x == a || (slash && x.trim_end_matches('/') == a.trim_end_matches('/')))
            })?;
            if !ok {
                return Err(Denial::AudienceMismatch);
            }
        }
        for claim in &self.required_claims {
            if !claims.contains_key(*claim) {
                return Err(Denial::MissingClaim(claim));
            }
        }
        let times = Times::from_claims(claims)?;
        check_window(&times, &self.times, now)?;
        check_lifetime(&times, &self.times, now)?;
        Ok(times)
    }

    /// A description of a refusal of this use, for `error_description`: names the JWT and the rule,
    /// never echoes the token (an algorithm name is sanitized and bounded).
    pub fn describe(&self, denial: &Denial) -> String {
        let what = self.what;
        let minutes = |s: u64| {
            if s.is_multiple_of(60) {
                format!("{} minutes", s / 60)
            } else {
                format!("{s} seconds")
            }
        };
        match denial {
            Denial::MalformedToken(why) => format!("{what}: {why}"),
            Denial::AlgorithmNotAllowed(a) => format!(
                "{what} algorithm {} not allowed ({})",
                crate::denial::sanitize(a, 16),
                self.algorithms
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Denial::TypNotAllowed => format!("{what} typ must be {}", self.typ.join(" or ")),
            Denial::KeyInHeader(h) => format!("{what} header {h} is not accepted"),
            Denial::UnknownCritical => format!("{what} header crit names extensions not understood"),
            Denial::UnknownIssuer => format!("{what} iss is not the expected issuer"),
            Denial::SubjectMismatch => format!("{what} iss and sub must both be the client_id"),
            Denial::UnknownKid | Denial::AmbiguousKey | Denial::KeyUnusable => {
                format!("no registered key matches the {what}")
            }
            Denial::SignatureInvalid => format!("{what} signature invalid"),
            Denial::MissingClaim(c) => format!("{what} has no {c}"),
            Denial::MalformedClaim(c) => format!("{what} claim {c} is malformed"),
            Denial::Expired => format!("{what} expired"),
            Denial::NotYetValid => format!("{what} not valid yet (nbf)"),
            Denial::IssuedInFuture => format!("{what} not valid yet (iat in the future)"),
            Denial::TooOld => format!(
                "{what} is too old: its start is more than {} in the past",
                minutes(self.times.max_age.unwrap_or(0))
            ),
            Denial::LifetimeTooLong => format!(
                "{what} lifetime exceeds {}",
                minutes(self.times.max_lifetime.unwrap_or(0))
            ),
            Denial::AudienceMismatch => format!("{what} aud must be the issuer"),
            other => format!("{what}: {}", other.description()),
        }
    }
}
