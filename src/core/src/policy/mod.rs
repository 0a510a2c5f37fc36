//! Scope policies: the document ([`model`]), its validation and compilation into the form decisions use,
//! the route [`matcher`], the requirement checks, and the shape of the policy's own tests
//! (`test_cases`; they run in [`crate::policy_tests`], which needs the guard: policy does not).

pub mod matcher;
pub mod model;
mod test_cases;
pub mod whole_number;

use crate::alg::{Algorithm, AlgorithmName};
use crate::authorization_details::DetailsRequirement;
use crate::binding::SenderConstraint;
use crate::denial::Denial;
use crate::dpop::DpopRules;
use crate::jwks::Jwks;
use crate::token::{AccessClaims, TokenRules};
use matcher::{HostPattern, PathPattern};
pub use model::*;
use serde_json::Value;

/// How bad a finding is: errors stop compilation, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// A finding about a policy, located by its path in the document (`rules[2].match.template`, the
/// form serde_path_to_error prints; [`crate::yaml::SourceMap`] turns it into a line and column).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

impl Problem {
    fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        }
    }
    fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}: {}: {}",
            if self.path.is_empty() { "." } else { &self.path },
            self.message
        )
    }
}

/// An issuer ready for decisions.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub rules: TokenRules,
    /// Keys given inline (after `fapictl policy compile`, also those from a file).
    pub inline_keys: Option<Jwks>,
    /// Keys to fetch: URI, Envoy cluster, refresh interval and maximum staleness (seconds).
    pub remote: Option<RemoteJwks>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub uri: String,
    pub cluster: String,
    pub refresh: u64,
    pub max_stale: u64,
}

/// What a rule requires, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub scopes_all: Vec<String>,
    pub scopes_any: Vec<String>,
    pub sender_constraint: SenderConstraint,
    pub acr: Option<Vec<String>>,
    pub max_auth_age: Option<u64>,
    pub client_ids: Option<Vec<String>>,
    pub claims: Vec<ClaimCondition>,
    pub revocation: RevocationMode,
    pub dpop: DpopRules,
    /// RFC 9396: the body must be what the token's `authorization_details` grant.
    pub authorization_details: Option<DetailsRequirement>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub hosts: Option<Vec<HostPattern>>,
    pub methods: Option<Vec<String>>,
    pub path: PathPattern,
    pub anonymous: bool,
    pub require: Effective,
}

impl Rule {
    /// The body this rule must read before deciding, as its byte limit; `None` for rules that never
    /// read the body (no cost on their requests).
    pub fn body_limit(&self) -> Option<usize> {
        self.require
            .authorization_details
            .as_ref()
            .filter(|d| d.needs_body())
            .map(|d| d.max_body)
    }

    fn matches(&self, method: &str, host: &str, path: &str) -> bool {
        self.hosts
            .as_ref()
            .is_none_or(|hs| hs.iter().any(|h| h.matches(host)))
            && self
                .methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| m == method))
            && self.path.matches(path)
    }
}

/// A validated policy, ready for decisions.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The document as validated (tests included when it came from YAML).
    pub doc: PolicyDoc,
    pub issuers: Vec<Issuer>,
    pub rules: Vec<Rule>,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

impl Policy {
    /// Reads a policy from JSON (the compiled plugin configuration). Every problem is returned, with
    /// the path of the field at fault.
    pub fn from_json(json: &str) -> Result<(Policy, Vec<Problem>), Vec<Problem>> {
        let value: Value = serde_json::from_str(json).map_err(|e| {
            vec![Problem::error(
                "",
                format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()),
            )]
        })?;
        Self::from_value(value)
    }

    /// Reads a policy from a JSON value (what the YAML loader produces).
    pub fn from_value(value: Value) -> Result<(Policy, Vec<Problem>), Vec<Problem>> {
        let doc: PolicyDoc = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            vec![Problem::error(path, e.into_inner().to_string())]
        })?;
        Self::from_doc(doc)
    }

    /// Validates a document: errors fail, warnings come back with the policy.
    pub fn from_doc(doc: PolicyDoc) -> Result<(Policy, Vec<Problem>), Vec<Problem>> {
        let mut problems = Vec::new();
        let policy = build(doc, &mut problems);
        if problems.iter().any(|p| p.severity == Severity::Error) {
            return Err(problems);
        }
        match policy {
            Some(p) => Ok((p, problems)),
            None => Err(problems),
        }
    }

    /// The first rule that matches, or `None` (deny). `path` is the raw request path.
    pub fn match_rule(&self, method: &str, authority: &str, path: &str) -> Option<&Rule> {
        let host = matcher::host_cow(authority);
        let path = matcher::normalized_path(path)?;
        self.rules.iter().find(|r| r.matches(method, &host, &path))
    }

    pub fn issuer(&self, iss: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| i.rules.issuer == iss)
    }

    /// The compiled plugin configuration: the validated document without its tests, tagged with the
    /// compiled format. Files must have been inlined (see `fapictl policy compile`).
    pub fn compiled_json(&self) -> String {
        let mut doc = self.doc.clone();
        doc.tests.clear();
        doc.format = Some(COMPILED_FORMAT.to_string());
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

impl Effective {
    /// The policy requirements on a token whose signature, claims and binding are already checked:
    /// client, scopes (RFC 6750 §3.1), claim conditions, then RFC 9470 step-up (acr, auth_time).
    pub fn check(&self, claims: &AccessClaims, now: i64) -> Result<(), Denial> {
        if let Some(allowed) = &self.client_ids {
            if !claims.client_id.as_ref().is_some_and(|c| allowed.contains(c)) {
                return Err(Denial::ClientNotAllowed);
            }
        }
        let has = |s: &String| claims.scope.contains(s);
        let missing: Vec<String> = self.scopes_all.iter().filter(|s| !has(s)).cloned().collect();
        if !missing.is_empty() {
            return Err(Denial::InsufficientScope {
                required: self.scopes_all.clone(),
            });
        }
        if !self.scopes_any.is_empty() && !self.scopes_any.iter().any(has) {
            return Err(Denial::InsufficientScope {
                required: self.scopes_any.clone(),
            });
        }
        for cond in &self.claims {
            if !cond.holds(&claims.all) {
                return Err(Denial::ClaimConditionFailed(cond.claim.clone()));
            }
        }
        if let Some(acr_values) = &self.acr {
            if !claims.acr.as_ref().is_some_and(|a| acr_values.contains(a)) {
                return Err(Denial::AcrNotAccepted {
                    acr_values: acr_values.clone(),
                });
            }
        }
        if let Some(max_age) = self.max_auth_age {
            match claims.auth_time {
                Some(t) if now.saturating_sub(t) <= max_age as i64 => {}
                _ => return Err(Denial::AuthenticationTooOld { max_age }),
            }
        }
        Ok(())
    }
}

impl ClaimCondition {
    fn holds(&self, claims: &serde_json::Map<String, Value>) -> bool {
        let mut parts = self.claim.split('.');
        let mut value = parts.next().and_then(|first| claims.get(first));
        for part in parts {
            value = value.and_then(|v| v.get(part));
        }
        if let Some(present) = self.present {
            return value.is_some() == present;
        }
        let Some(value) = value else { return false };
        if let Some(expected) = &self.equals {
            return value == expected;
        }
        if let Some(options) = &self.one_of {
            return options.contains(value);
        }
        if let Some(needle) = &self.contains {
            return match value {
                Value::Array(items) => items.contains(needle),
                Value::String(s) => needle.as_str().is_some_and(|n| s.split(' ').any(|p| p == n)),
                _ => false,
            };
        }
        false
    }

    fn operator_count(&self) -> usize {
        [
            self.equals.is_some(),
            self.one_of.is_some(),
            self.contains.is_some(),
            self.present.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count()
    }
}

fn build(doc: PolicyDoc, problems: &mut Vec<Problem>) -> Option<Policy> {
    if doc.version != 1 {
        problems.push(Problem::error(
            "version",
            format!("version {} is not supported (use 1)", doc.version),
        ));
    }
    if let Some(format) = &doc.format {
        if format != COMPILED_FORMAT {
            problems.push(Problem::error(
                "format",
                format!("format \"{format}\" is not {COMPILED_FORMAT}"),
            ));
        }
    }
    check_settings(&doc.settings, problems);
    let issuers = build_issuers(&doc, problems);
    let rules = build_rules(&doc, problems);
    check_shadowing(&rules, problems);
    test_cases::check_tests(&doc, problems);
    Some(Policy { doc, issuers, rules })
}

fn check_settings(s: &Settings, problems: &mut Vec<Problem>) {
    if let Some(origin) = &s.external_origin {
        let ok = crate::uri::normalize(origin)
            .is_some_and(|n| n.trim_end_matches('/') == origin.trim_end_matches('/'));
        if !ok || origin.matches('/').count() > 3 {
            problems.push(Problem::error(
                "settings.external_origin",
                "must be an origin like https://api.bank.example (lowercase, no path, query or default port)",
            ));
        }
    }
    for (claim, header) in &s.forward {
        let valid = !header.is_empty()
            && header
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            problems.push(Problem::error(
                format!("settings.forward.{claim}"),
                format!("\"{header}\" is not a lowercase HTTP header name"),
            ));
        }
        if matches!(
            header.as_str(),
            "authorization" | "dpop" | "host" | "x-forwarded-client-cert"
        ) {
            problems.push(Problem::error(
                format!("settings.forward.{claim}"),
                format!("\"{header}\" cannot carry a claim"),
            ));
        }
    }
    if s.token_cache_size > 1_000_000 {
        problems.push(Problem::error("settings.token_cache_size", "at most 1000000"));
    }
    if s.replay_store_size == 0 || s.replay_store_size > 10_000_000 {
        problems.push(Problem::error(
            "settings.replay_store_size",
            "between 1 and 10000000",
        ));
    }
    if let Some(feed) = &s.revocation_feed {
        if feed.interval == 0 || feed.interval > 300 {
            problems.push(Problem::error(
                "settings.revocation_feed.interval",
                "between 1 and 300 seconds",
            ));
        }
        if !feed.path.starts_with('/') {
            problems.push(Problem::error(
                "settings.revocation_feed.path",
                "must start with /",
            ));
        }
    }
    if let Some(i) = &s.introspection {
        if !i.path.starts_with('/') {
            problems.push(Problem::error("settings.introspection.path", "must start with /"));
        }
    }
}

fn build_issuers(doc: &PolicyDoc, problems: &mut Vec<Problem>) -> Vec<Issuer> {
    if doc.issuers.is_empty() {
        problems.push(Problem::error("issuers", "at least one issuer is required"));
    }
    let mut out = Vec::new();
    for (i, spec) in doc.issuers.iter().enumerate() {
        let at = |field: &str| format!("issuers[{i}].{field}");
        if doc.issuers[..i].iter().any(|o| o.issuer == spec.issuer) {
            problems.push(Problem::error(
                at("issuer"),
                format!("issuer {} is listed twice", spec.issuer),
            ));
        }
        if !spec.issuer.starts_with("https://") {
            problems.push(Problem::warning(at("issuer"), "FAPI issuers are https URLs"));
        }
        if spec.audiences.is_empty() {
            problems.push(Problem::error(
                at("audiences"),
                "at least one audience is required",
            ));
        }
        let mut algorithms = Vec::new();
        match &spec.algorithms {
            None => algorithms = Algorithm::FAPI.to_vec(),
            Some(names) => {
                if names.is_empty() {
                    problems.push(Problem::error(
                        at("algorithms"),
                        "no algorithm listed: no token could ever verify",
                    ));
                }
                for (j, name) in names.iter().enumerate() {
                    let path = format!("issuers[{i}].algorithms[{j}]");
                    match AlgorithmName::parse(name) {
                        AlgorithmName::Supported(a) => {
                            if !a.is_fapi() {
                                problems.push(Problem::warning(
                                    path,
                                    format!("{a} is outside FAPI 2.0 §5.4.1 (PS256, ES256, EdDSA); enable it only for a legacy issuer"),
                                ));
                            }
                            algorithms.push(a);
                        }
                        AlgorithmName::Forbidden(n) => problems.push(Problem::error(
                            path,
                            format!(
                                "{n} is forbidden: FAPI and RFC 8725 allow no 'none' or symmetric algorithms"
                            ),
                        )),
                        AlgorithmName::Unknown(n) => problems.push(Problem::error(
                            path,
                            format!(
                                "{n} is not supported (PS256, ES256, EdDSA, or RS256 for legacy issuers)"
                            ),
                        )),
                    }
                }
            }
        }
        let mut rules = TokenRules::new(spec.issuer.clone(), spec.audiences.clone());
        rules.algorithms = algorithms;
        rules.require_typ = spec.require_typ;
        if let Some(v) = spec.leeway_past {
            rules.leeway_past = v;
        }
        if let Some(v) = spec.leeway_future {
            if v > 60 {
                problems.push(Problem::error(
                    at("leeway_future"),
                    "FAPI 2.0 §5.3.2.1 refuses iat more than 60 s ahead",
                ));
            }
            rules.leeway_future = v;
        }
        if rules.leeway_past > 300 {
            problems.push(Problem::warning(
                at("leeway_past"),
                "more than 300 s of leeway keeps expired tokens alive",
            ));
        }
        rules.max_lifetime = spec.max_lifetime;
        if spec.max_lifetime == Some(0) {
            problems.push(Problem::error(
                at("max_lifetime"),
                "0 s: no token could ever be accepted",
            ));
        }
        if let Some(req) = &spec.required_claims {
            rules.required_claims = req.clone();
        }
        let (inline_keys, remote) = build_jwks(&spec.jwks, &format!("issuers[{i}].jwks"), problems);
        out.push(Issuer {
            rules,
            inline_keys,
            remote,
        });
    }
    out
}

fn build_jwks(src: &JwksSource, at: &str, problems: &mut Vec<Problem>) -> (Option<Jwks>, Option<RemoteJwks>) {
    let given = [src.keys.is_some(), src.file.is_some(), src.uri.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given != 1 {
        problems.push(Problem::error(at, "give exactly one of keys, file or uri"));
        return (None, None);
    }
    if let Some(file) = &src.file {
        problems.push(Problem::error(
            format!("{at}.file"),
            format!(
                "{file}: key files are read by fapictl (lint, test, compile); the plugin needs them inlined"
            ),
        ));
        return (None, None);
    }
    if let Some(keys) = &src.keys {
        let set = match Jwks::from_value(&serde_json::json!({ "keys": keys })) {
            Ok(s) => s,
            Err(e) => {
                problems.push(Problem::error(format!("{at}.keys"), e.to_string()));
                return (None, None);
            }
        };
        for skipped in &set.skipped {
            problems.push(Problem::error(
                format!("{at}.keys[{}]", skipped.index),
                skipped.error.to_string(),
            ));
        }
        if set.keys.is_empty() {
            problems.push(Problem::error(format!("{at}.keys"), "no usable key"));
        }
        return (Some(set), None);
    }
    let uri = src.uri.clone().unwrap_or_default();
    if !uri.starts_with("https://") && !uri.starts_with("http://") {
        problems.push(Problem::error(format!("{at}.uri"), "must be an http(s) URL"));
    }
    let Some(cluster) = src.cluster.clone() else {
        problems.push(Problem::error(
            at,
            "uri needs the Envoy cluster to fetch it through (cluster)",
        ));
        return (None, None);
    };
    let refresh = src.refresh.unwrap_or(300);
    let max_stale = src.max_stale.unwrap_or(3600);
    if refresh == 0 {
        problems.push(Problem::error(
            format!("{at}.refresh"),
            "must be at least 1 second",
        ));
    }
    if max_stale < refresh {
        problems.push(Problem::warning(
            format!("{at}.max_stale"),
            "shorter than refresh: one failed fetch fails closed",
        ));
    }
    (
        None,
        Some(RemoteJwks {
            uri,
            cluster,
            refresh,
            max_stale,
        }),
    )
}

fn build_rules(doc: &PolicyDoc, problems: &mut Vec<Problem>) -> Vec<Rule> {
    if doc.rules.is_empty() {
        problems.push(Problem::error("rules", "no rules: every request would be denied"));
    }
    check_requirements(&doc.defaults, "defaults", doc, problems);
    let mut out = Vec::new();
    for (i, spec) in doc.rules.iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        if spec.name.is_empty() {
            problems.push(Problem::error(at("name"), "a rule needs a name"));
        }
        if doc.rules[..i].iter().any(|o| o.name == spec.name) {
            problems.push(Problem::error(
                at("name"),
                format!("rule name \"{}\" is used twice", spec.name),
            ));
        }
        let m = &spec.matches;
        let hosts = m.hosts.as_ref().map(|hs| {
            hs.iter()
                .enumerate()
                .filter_map(|(j, h)| match HostPattern::parse(h) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        problems.push(Problem::error(format!("rules[{i}].match.hosts[{j}]"), e));
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        if let Some(methods) = &m.methods {
            if methods.is_empty() {
                problems.push(Problem::error(
                    at("match.methods"),
                    "an empty list matches nothing; leave it out to match any method",
                ));
            }
            for (j, method) in methods.iter().enumerate() {
                if !METHODS.contains(&method.as_str()) {
                    problems.push(Problem::error(
                        format!("rules[{i}].match.methods[{j}]"),
                        format!("\"{method}\" is not an HTTP method (upper case: GET, POST, ...)"),
                    ));
                }
            }
        }
        let given = [m.path.is_some(), m.prefix.is_some(), m.template.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let path = if given != 1 {
            problems.push(Problem::error(
                at("match"),
                "give exactly one of path, prefix or template",
            ));
            None
        } else if let Some(p) = &m.path {
            match matcher::normalize_path(p) {
                Some(n) if n == *p => Some(PathPattern::Exact(n)),
                _ => {
                    problems.push(Problem::error(
                        at("match.path"),
                        format!("\"{p}\" is not a normalized absolute path"),
                    ));
                    None
                }
            }
        } else if let Some(p) = &m.prefix {
            match matcher::normalize_path(p) {
                Some(n) if n == *p => Some(PathPattern::Prefix(n.trim_end_matches('/').to_string())),
                _ => {
                    problems.push(Problem::error(
                        at("match.prefix"),
                        format!("\"{p}\" is not a normalized absolute path"),
                    ));
                    None
                }
            }
        } else {
            let t = m.template.as_deref().unwrap_or_default();
            match matcher::parse_template(t) {
                Ok(segs) => Some(PathPattern::Template(segs)),
                Err(e) => {
                    problems.push(Problem::error(
                        at("match.template"),
                        format!("bad path template \"{t}\": {e}"),
                    ));
                    None
                }
            }
        };
        if spec.anonymous && spec.require != Requirements::default() {
            problems.push(Problem::error(
                at("require"),
                "an anonymous rule cannot have requirements",
            ));
        }
        check_requirements(&spec.require, &format!("rules[{i}].require"), doc, problems);
        let require = effective(&doc.defaults, &spec.require);
        if let Some(path) = path {
            out.push(Rule {
                name: spec.name.clone(),
                hosts,
                methods: m.methods.clone(),
                path,
                anonymous: spec.anonymous,
                require,
            });
        }
    }
    out
}

fn check_requirements(r: &Requirements, at: &str, doc: &PolicyDoc, problems: &mut Vec<Problem>) {
    if let Some(ScopeRequirement::Detailed(sets)) = &r.scopes {
        if sets.all_of.is_empty() && sets.any_of.is_empty() {
            problems.push(Problem::warning(
                format!("{at}.scopes"),
                "no scope listed: any token passes the scope check",
            ));
        }
    }
    let scope_lists: Vec<&String> = match &r.scopes {
        Some(ScopeRequirement::AllOf(a)) => a.iter().collect(),
        Some(ScopeRequirement::Detailed(s)) => s.all_of.iter().chain(&s.any_of).collect(),
        None => Vec::new(),
    };
    for s in scope_lists {
        if s.is_empty() || s.contains(' ') {
            problems.push(Problem::error(
                format!("{at}.scopes"),
                format!("\"{s}\" is not a single scope token"),
            ));
        }
    }
    if r.acr.as_ref().is_some_and(Vec::is_empty) {
        problems.push(Problem::error(
            format!("{at}.acr"),
            "an empty acr list can never hold",
        ));
    }
    if r.max_auth_age == Some(0) {
        problems.push(Problem::error(format!("{at}.max_auth_age"), "0 s can never hold"));
    }
    if r.client_ids.as_ref().is_some_and(Vec::is_empty) {
        problems.push(Problem::error(
            format!("{at}.client_ids"),
            "an empty client list can never hold",
        ));
    }
    for (j, cond) in r.claims.iter().flatten().enumerate() {
        let path = format!("{at}.claims[{j}]");
        match cond.operator_count() {
            1 => {}
            0 => problems.push(Problem::error(
                path.clone(),
                "give one of equals, one_of, contains or present",
            )),
            _ => problems.push(Problem::error(
                path.clone(),
                "give only one of equals, one_of, contains or present",
            )),
        }
        if cond.one_of.as_ref().is_some_and(Vec::is_empty) {
            problems.push(Problem::error(
                format!("{path}.one_of"),
                "an empty list can never hold",
            ));
        }
        if cond.claim.is_empty() {
            problems.push(Problem::error(format!("{path}.claim"), "name the claim"));
        }
    }
    match r.revocation {
        Some(RevocationMode::Feed) if doc.settings.revocation_feed.is_none() => {
            problems.push(Problem::error(
                format!("{at}.revocation"),
                "revocation: feed needs settings.revocation_feed",
            ))
        }
        Some(RevocationMode::Introspection) if doc.settings.introspection.is_none() => {
            problems.push(Problem::error(
                format!("{at}.revocation"),
                "revocation: introspection needs settings.introspection",
            ))
        }
        _ => {}
    }
    if let Some(details) = &r.authorization_details {
        if at == "defaults" {
            problems.push(Problem::error(
                format!("{at}.authorization_details"),
                "authorization_details belongs on the rules that need it (it makes the plugin read the body)",
            ));
        }
        for (field, message) in details.problems() {
            problems.push(Problem::error(
                format!("{at}.authorization_details.{field}"),
                message,
            ));
        }
        if details.once {
            let horizon = crate::authorization_details::ONCE_HORIZON;
            for spec in &doc.issuers {
                let leeway = spec.leeway_past.unwrap_or(60);
                if spec
                    .max_lifetime
                    .is_none_or(|m| m.saturating_add(leeway) > horizon)
                {
                    problems.push(Problem::warning(
                        format!("{at}.authorization_details.once"),
                        format!(
                            "tokens of {} may live longer than {horizon} s (max_lifetime plus leeway_past): `once` then refuses them (authorization_details_store_full) rather than remember their use too briefly",
                            spec.issuer
                        ),
                    ));
                }
            }
        }
    }
    if let Some(d) = &r.dpop {
        if d.algorithms.is_empty() {
            problems.push(Problem::error(
                format!("{at}.dpop.algorithms"),
                "no algorithm: no proof could verify",
            ));
        }
        if d.algorithms.contains(&Algorithm::RS256) {
            problems.push(Problem::warning(
                format!("{at}.dpop.algorithms"),
                "RS256 is outside FAPI 2.0 §5.4.1",
            ));
        }
        if r.sender_constraint == Some(SenderConstraint::Mtls) {
            problems.push(Problem::warning(
                format!("{at}.dpop"),
                "DPoP settings on an mTLS-only rule are never used",
            ));
        }
    }
}

fn effective(defaults: &Requirements, r: &Requirements) -> Effective {
    let scopes = r
        .scopes
        .as_ref()
        .or(defaults.scopes.as_ref())
        .map(ScopeRequirement::sets)
        .unwrap_or_default();
    Effective {
        scopes_all: scopes.all_of,
        scopes_any: scopes.any_of,
        sender_constraint: r
            .sender_constraint
            .or(defaults.sender_constraint)
            .unwrap_or(SenderConstraint::Either),
        acr: r.acr.clone().or_else(|| defaults.acr.clone()),
        max_auth_age: r.max_auth_age.or(defaults.max_auth_age),
        client_ids: r.client_ids.clone().or_else(|| defaults.client_ids.clone()),
        claims: r
            .claims
            .clone()
            .or_else(|| defaults.claims.clone())
            .unwrap_or_default(),
        revocation: r.revocation.or(defaults.revocation).unwrap_or_default(),
        dpop: r
            .dpop
            .clone()
            .or_else(|| defaults.dpop.clone())
            .unwrap_or_default(),
        // Never from `defaults` (refused there by the linter): only the rule that names it reads bodies.
        authorization_details: r.authorization_details.clone(),
    }
}

fn check_shadowing(rules: &[Rule], problems: &mut Vec<Problem>) {
    for (j, later) in rules.iter().enumerate() {
        for earlier in &rules[..j] {
            let hosts = match (&earlier.hosts, &later.hosts) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.iter().all(|h| a.iter().any(|g| g.covers(h))),
            };
            let methods = match (&earlier.methods, &later.methods) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
            };
            if hosts && methods && earlier.path.covers(&later.path) {
                problems.push(Problem::error(
                    format!("rules[{}].match", rules_index(rules, later)),
                    format!(
                        "rule \"{}\" can never match: rule \"{}\" before it matches every request it would",
                        later.name, earlier.name
                    ),
                ));
                break;
            }
        }
    }
}

fn rules_index(rules: &[Rule], rule: &Rule) -> usize {
    rules.iter().position(|r| std::ptr::eq(r, rule)).unwrap_or(0)
}
