//! `fapictl token inspect`: decodes an access token, shows its binding and times, and verifies it with
//! a key set (`--jwks`) or a policy's issuer rules (`--policy`). The token itself is never printed.

use crate::{policy, util};
use anyhow::{bail, Context as _, Result};
use fapi_core::alg::Algorithm;
use fapi_core::jwks::{Jwks, KeySelection};
use fapi_core::jws::CompactJws;
use fapi_core::token::{self, AccessClaims, TokenRules, Unverified};
use fapi_core::Denial;
use serde_json::{Map, Value};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

pub struct InspectArgs {
    pub token: String,
    pub jwks: Option<PathBuf>,
    pub policy: Option<PathBuf>,
    pub now: Option<i64>,
}

/// Returns `Ok(false)` when verification was asked for and failed.
pub fn inspect(args: InspectArgs) -> Result<bool> {
    let raw = if args.token == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the token from standard input")?;
        s
    } else {
        args.token
    };
    let token = strip_scheme(raw.trim());
    let shown = util::abbreviate(token);
    let jws = CompactJws::parse(token).map_err(|e| anyhow::anyhow!("token {shown}: {}", e.describe()))?;
    let now = args.now.unwrap_or_else(util::now_unix);
    let mut out = std::io::stdout().lock();
    writeln!(out, "token: {shown} ({} characters)", token.len())?;
    writeln!(out, "header:\n{}", pretty(&jws.header))?;
    writeln!(out, "claims:\n{}", pretty(&jws.payload))?;
    writeln!(out, "binding: {}", binding(&jws.payload))?;
    for (name, line) in times(&jws.payload, now) {
        writeln!(out, "{name}: {line}")?;
    }
    if args.now.is_some() {
        writeln!(out, "now: {} ({now})", util::rfc3339(now).unwrap_or_default())?;
    }

    let jwks = match &args.jwks {
        Some(path) => Some(read_jwks(path)?),
        None => None,
    };
    let result = match (&args.policy, jwks) {
        (None, None) => {
            writeln!(
                out,
                "NOT VERIFIED: no key set given (use --jwks FILE or --policy FILE)"
            )?;
            return Ok(true);
        }
        (None, Some(keys)) => verify_with_keys(&mut out, jws, &keys)?,
        (Some(path), keys) => verify_with_policy(&mut out, token, path, keys, now)?,
    };
    match result {
        Ok(()) => Ok(true),
        Err(denial) => {
            writeln!(out, "NOT VALID: {}: {}", denial.reason(), denial.description())?;
            Ok(false)
        }
    }
}

/// Accepts the value of an Authorization header too (`Bearer ...`, `DPoP ...`).
fn strip_scheme(s: &str) -> &str {
    for scheme in ["Bearer ", "DPoP ", "bearer ", "dpop "] {
        if let Some(rest) = s.strip_prefix(scheme) {
            return rest.trim();
        }
    }
    s
}

fn pretty(map: &Map<String, Value>) -> String {
    serde_json::to_string_pretty(map).unwrap_or_else(|_| "{}".into())
}

/// RFC 8705 §3.1 `cnf.x5t#S256`, RFC 9449 §6.1 `cnf.jkt`, or neither (a bearer token).
fn binding(claims: &Map<String, Value>) -> String {
    let Some(cnf) = claims.get("cnf") else {
        return "none (bearer token: no cnf claim)".into();
    };
    let Some(cnf) = cnf.as_object() else {
        return "malformed (cnf is not an object)".into();
    };
    let x5t = cnf.get("x5t#S256");
    let jkt = cnf.get("jkt");
    let show = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("malformed: {v}"))
    };
    match (x5t, jkt) {
        (Some(x), None) => format!("mtls (x5t#S256 {})", show(x)),
        (None, Some(j)) => format!("dpop (jkt {})", show(j)),
        (Some(x), Some(j)) => format!(
            "ambiguous: both mtls (x5t#S256 {}) and dpop (jkt {})",
            show(x),
            show(j)
        ),
        (None, None) => "none (bearer token: cnf has neither x5t#S256 nor jkt)".into(),
    }
}

/// exp, iat, nbf and auth_time as RFC 3339 UTC and relative to `now`.
fn times(claims: &Map<String, Value>, now: i64) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    for name in ["exp", "iat", "nbf", "auth_time"] {
        let Some(v) = claims.get(name) else { continue };
        let Some(t) = v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        else {
            lines.push((name, format!("not a NumericDate: {v}")));
            continue;
        };
        let Some(at) = util::rfc3339(t) else {
            lines.push((name, format!("{t} (out of range)")));
            continue;
        };
        let ahead = t.saturating_sub(now);
        let span = util::span(ahead.unsigned_abs());
        let relative = match (name, ahead > 0) {
            ("exp", true) => format!("expires in {span}"),
            ("exp", false) => format!("expired {span} ago"),
            ("nbf", true) => format!("not valid for another {span}"),
            ("nbf", false) => format!("valid since {span} ago"),
            (_, true) => format!("in the future: in {span}"),
            (_, false) => format!("{span} ago"),
        };
        lines.push((name, format!("{at} ({relative})")));
    }
    lines
}

/// A JWKS file or a single public JWK; skipped keys are reported.
fn read_jwks(path: &Path) -> Result<Jwks> {
    let keys = policy::read_key_file(path)?;
    let set = Jwks::from_value(&serde_json::json!({ "keys": keys }))
        .map_err(|e| anyhow::anyhow!("key file {}: {e}", path.display()))?;
    for s in &set.skipped {
        eprintln!(
            "{}: key {}{} skipped: {}",
            path.display(),
            s.index,
            s.kid.as_ref().map(|k| format!(" (kid {k})")).unwrap_or_default(),
            s.error
        );
    }
    if set.keys.is_empty() {
        bail!("key file {}: no usable public key", path.display());
    }
    Ok(set)
}

/// The header checks of RFC 8725 / FAPI 2.0 §5.4 and the signature, without issuer rules.
fn verify_with_keys(
    out: &mut impl std::io::Write,
    jws: CompactJws<'_>,
    keys: &Jwks,
) -> Result<Result<(), Denial>> {
    let all = [
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::RS256,
    ];
    let (alg, kid) = match token::check_header(&jws, &all, false) {
        Ok(v) => v,
        Err(d) => return Ok(Err(d)),
    };
    if !alg.is_fapi() {
        writeln!(
            out,
            "note: {alg} is outside FAPI 2.0 §5.4.1 (PS256, ES256, EdDSA)"
        )?;
    }
    let iss = jws
        .payload
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let unverified = Unverified { jws, alg, kid, iss };
    signature(out, unverified, keys).map(|r| r.map(|_| ()))
}

/// Key selection (see `fapi_core::jwks`) and the signature; prints the key that verified.
fn signature(
    out: &mut impl std::io::Write,
    unverified: Unverified<'_>,
    keys: &Jwks,
) -> Result<Result<Map<String, Value>, Denial>> {
    let alg = unverified.alg;
    let chosen = match keys.select(unverified.kid.as_deref(), alg) {
        KeySelection::Found(k) => k.kid.clone().unwrap_or_else(|| "(none)".into()),
        _ => String::new(),
    };
    Ok(match unverified.verify(keys) {
        Ok(payload) => {
            writeln!(out, "signature: valid (kid {chosen}, alg {alg})")?;
            Ok(payload)
        }
        Err(d) => Err(d),
    })
}

/// The issuer rules of a policy: header, key, signature, then the claims (RFC 7519 §4.1, RFC 9068).
fn verify_with_policy(
    out: &mut impl std::io::Write,
    token: &str,
    path: &Path,
    jwks: Option<Jwks>,
    now: i64,
) -> Result<Result<(), Denial>> {
    let loaded = policy::load(path);
    for d in &loaded.diags {
        eprintln!("{d}");
    }
    let Some(policy) = loaded.policy else {
        bail!(
            "{}: the policy has {} error(s)",
            path.display(),
            loaded.error_count()
        );
    };
    let rules_for = |iss: &str| policy.issuer(iss).map(|i| &i.rules);
    let (unverified, rules): (Unverified<'_>, &TokenRules) = match token::parse_unverified(token, rules_for) {
        Ok(v) => v,
        Err(d) => return Ok(Err(d)),
    };
    let issuer = policy.issuer(&unverified.iss);
    let keys = match (jwks, issuer.and_then(|i| i.inline_keys.clone())) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            let uri = issuer
                .and_then(|i| i.remote.as_ref())
                .map(|r| r.uri.clone())
                .unwrap_or_default();
            bail!(
                "{}: issuer {} has no inline or file keys (they are fetched from {uri}): pass a copy with --jwks FILE",
                path.display(),
                unverified.iss
            );
        }
    };
    let payload = match signature(out, unverified, &keys)? {
        Ok(p) => p,
        Err(d) => return Ok(Err(d)),
    };
    let checked = AccessClaims::from_payload(payload).and_then(|claims| {
        claims.check_static(rules)?;
        claims.check_time(rules, now)
    });
    if checked.is_ok() {
        writeln!(
            out,
            "claims: valid for issuer {} (audience, required claims, lifetime, exp/nbf/iat at {})",
            rules.issuer,
            util::rfc3339(now).unwrap_or_default()
        )?;
    }
    Ok(checked)
}
