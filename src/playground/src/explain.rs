//! A decision as the page shows it: the answer Envoy would send, the rule that matched, and the
//! requirement (with its place in the YAML) that refused the request.

use fapi_core::authorization_details;
use fapi_core::binding::SenderConstraint;
use fapi_core::decision::{Decision, Denial};
use fapi_core::policy::{matcher, Policy, TestCase};
use fapi_core::yaml::SourceMap;
use serde_json::{json, Map, Value};

pub(crate) fn decision_json(policy: &Policy, map: &SourceMap, case: &TestCase, decision: &Decision) -> Value {
    let claims = case
        .token
        .as_ref()
        .map(|t| crate::claims_of(policy, t))
        .unwrap_or(Value::Null);
    let (_, rest) = case
        .request
        .url
        .split_once("://")
        .unwrap_or(("", &case.request.url));
    let raw_path = rest.find('/').map_or("/", |i| &rest[i..]);
    let normalized_path = matcher::normalize_path(raw_path);
    let rule_name = match decision {
        Decision::Allow(a) => Some(a.rule.clone()),
        Decision::Deny(d) => d.rule.clone(),
    };
    let rule_index = rule_name
        .as_ref()
        .and_then(|n| policy.doc.rules.iter().position(|r| &r.name == n));
    let rule_pos = rule_index.and_then(|i| map.position(&format!("rules[{i}]")));
    let mut out = json!({
        "status": decision.status(),
        "allowed": decision.is_allow(),
        "reason": crate::reason_of(decision),
        "rule": rule_name,
        "rule_index": rule_index,
        "rule_line": rule_pos.map(|p| p.line),
        "claims": claims,
        "normalized_path": normalized_path,
        "now": fapi_core::policy_tests::TEST_NOW,
    });
    out["authorization_details"] = details_view(policy, rule_index, case, &claims);
    match decision {
        Decision::Allow(a) => {
            out["error"] = Value::Null;
            out["www_authenticate"] = json!([]);
            out["description"] = json!(format!("allowed by rule {}", a.rule));
            out["binding"] = json!(a.binding.as_str());
            out["forward"] = json!(a.forward);
            out["failed_requirement"] = Value::Null;
        }
        Decision::Deny(d) => {
            out["error"] = json!(d.error);
            out["www_authenticate"] = json!(d.www_authenticate);
            out["description"] = json!(d.denial.description());
            out["body"] = json!(d.body);
            out["failed_requirement"] =
                failed_requirement(policy, map, case, rule_index, &d.denial, &claims).unwrap_or(Value::Null);
        }
    }
    out
}

/// For a rule with `authorization_details` (RFC 9396): field by field, what the body holds and what
/// the user consented to in each detail of the type (`null` for other rules).
fn details_view(policy: &Policy, rule_index: Option<usize>, case: &TestCase, claims: &Value) -> Value {
    let Some(required) =
        compiled_rule(policy, rule_index).and_then(|r| r.require.authorization_details.as_ref())
    else {
        return Value::Null;
    };
    let body = case.request.body_bytes().unwrap_or_default();
    let details = claims.get("authorization_details");
    let mut view = json!({
        "type": required.detail_type,
        "once": required.once,
        "max_body": required.max_body,
        "body_bytes": body.len(),
    });
    match authorization_details::compare(required, details, &body) {
        Ok(compared) => {
            view["matches"] = json!(compared.iter().any(|c| c.matches()));
            view["details"] = json!(compared);
        }
        Err(refusal) => {
            view["matches"] = json!(false);
            view["details"] = json!([]);
            view["refusal"] = json!(Denial::from(refusal).reason());
        }
    }
    view
}

fn compiled_rule(policy: &Policy, rule_index: Option<usize>) -> Option<&fapi_core::policy::Rule> {
    let name = &policy.doc.rules.get(rule_index?)?.name;
    policy.rules.iter().find(|r| &r.name == name)
}

/// Where a requirement field of rule `i` comes from: the rule, `defaults`, or the built-in default.
fn requirement_source(policy: &Policy, i: usize, field: &str) -> (String, &'static str) {
    let has = |v: serde_json::Result<Value>| v.ok().is_some_and(|v| v.get(field).is_some());
    if policy
        .doc
        .rules
        .get(i)
        .is_some_and(|r| has(serde_json::to_value(&r.require)))
    {
        (format!("rules[{i}].require.{field}"), "rule")
    } else if has(serde_json::to_value(&policy.doc.defaults)) {
        (format!("defaults.{field}"), "defaults")
    } else {
        (format!("rules[{i}]"), "built-in default")
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(" ")
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(absent)".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn binding_of(claims: &Value) -> &'static str {
    let cnf = claims.get("cnf");
    if cnf.and_then(|c| c.get("x5t#S256")).is_some() {
        "mTLS (cnf.x5t#S256)"
    } else if cnf.and_then(|c| c.get("jkt")).is_some() {
        "DPoP (cnf.jkt)"
    } else {
        "unbound (no cnf)"
    }
}

fn constraint_name(c: SenderConstraint) -> &'static str {
    match c {
        SenderConstraint::Mtls => "mtls",
        SenderConstraint::Dpop => "dpop",
        SenderConstraint::Either => "either",
        SenderConstraint::BearerAllowed => "bearer-allowed",
    }
}

fn failed_requirement(
    policy: &Policy,
    map: &SourceMap,
    case: &TestCase,
    rule_index: Option<usize>,
    denial: &Denial,
    claims: &Value,
) -> Option<Value> {
    let rule = rule_index.and_then(|i| {
        policy
            .rules
            .iter()
            .find(|r| Some(&r.name) == policy.doc.rules.get(i).map(|s| &s.name))
    });
    let issuer_index = claims
        .get("iss")
        .and_then(Value::as_str)
        .and_then(|iss| policy.doc.issuers.iter().position(|i| i.issuer == iss));
    let entry = |path: String, from: &str, field: &str, required: String, presented: String| {
        let pos = map.position(&path);
        let mut m = Map::new();
        m.insert("field".into(), json!(field));
        m.insert("path".into(), json!(path));
        m.insert("from".into(), json!(from));
        m.insert("line".into(), json!(pos.map(|p| p.line)));
        m.insert("column".into(), json!(pos.map(|p| p.column)));
        m.insert("required".into(), json!(required));
        m.insert("presented".into(), json!(presented));
        m.insert("why".into(), json!(denial.description()));
        Value::Object(m)
    };
    let on_rule = |field: &str, required: String, presented: String| {
        let i = rule_index?;
        let (path, from) = requirement_source(policy, i, field);
        Some(entry(path, from, field, required, presented))
    };
    let on_issuer = |field: &str, required: String, presented: String| {
        let (path, from) = match issuer_index {
            Some(k) => (format!("issuers[{k}].{field}"), "issuer"),
            None => ("issuers".to_string(), "issuers"),
        };
        Some(entry(path, from, field, required, presented))
    };
    let req = rule.map(|r| &r.require);
    use Denial::*;
    match denial {
        NoMatchingRule => Some(entry(
            "rules".into(),
            "rules",
            "match",
            "a rule whose match fits the request (first match wins; no match is a denial)".into(),
            format!(
                "{} {} (path after normalization: {})",
                case.request.method,
                case.request.url,
                matcher::normalize_path(
                    case.request
                        .url
                        .split_once("://")
                        .and_then(|(_, r)| r.find('/').map(|i| &r[i..]))
                        .unwrap_or("/")
                )
                .unwrap_or_else(|| "not a valid path".into())
            ),
        )),
        MissingToken => {
            let i = rule_index?;
            Some(entry(
                format!("rules[{i}]"),
                "rule",
                "token",
                "an access token (the rule is not anonymous)".into(),
                "no Authorization header".into(),
            ))
        }
        InsufficientScope { .. } => {
            let r = req?;
            let mut required = Vec::new();
            if !r.scopes_all.is_empty() {
                required.push(format!("all of: {}", list(&r.scopes_all)));
            }
            if !r.scopes_any.is_empty() {
                required.push(format!("any of: {}", list(&r.scopes_any)));
            }
            on_rule("scopes", required.join("; "), text(claims.get("scope")))
        }
        AcrNotAccepted { acr_values } => on_rule(
            "acr",
            format!("one of: {}", list(acr_values)),
            text(claims.get("acr")),
        ),
        AuthenticationTooOld { max_age } => {
            let presented = match claims.get("auth_time").and_then(Value::as_i64) {
                Some(t) => format!(
                    "authenticated {} s ago (auth_time)",
                    fapi_core::policy_tests::TEST_NOW.saturating_sub(t)
                ),
                None => "no auth_time claim".into(),
            };
            on_rule(
                "max_auth_age",
                format!("at most {max_age} s since auth_time"),
                presented,
            )
        }
        ClientNotAllowed => {
            let r = req?;
            on_rule(
                "client_ids",
                format!("one of: {}", list(r.client_ids.as_deref().unwrap_or_default())),
                text(claims.get("client_id")),
            )
        }
        ClaimConditionFailed(claim) => {
            let i = rule_index?;
            let (base, from) = requirement_source(policy, i, "claims");
            let r = req?;
            let j = r.claims.iter().position(|c| &c.claim == claim);
            let path = match j {
                Some(j) if from != "built-in default" => format!("{base}[{j}]"),
                _ => base,
            };
            let cond = j
                .and_then(|j| r.claims.get(j))
                .and_then(|c| serde_json::to_value(c).ok())
                .map(|v| v.to_string())
                .unwrap_or_default();
            let mut value = Some(claims);
            for part in claim.split('.') {
                value = value.and_then(|v| v.get(part));
            }
            Some(entry(
                path,
                from,
                "claims",
                cond,
                format!("{claim} = {}", text(value)),
            ))
        }
        BearerTokenNotAllowed
        | BindingNotAllowed
        | CertificateMissing
        | CertificateThumbprintMismatch
        | DpopBoundTokenAsBearer
        | DpopKeyMismatch
        | DpopProof(_)
        | DpopProofReplayed
        | UseDpopNonce => {
            let r = req?;
            let scheme = case.request.scheme.clone().unwrap_or_else(|| {
                if case.token.as_ref().and_then(|t| t.binding.as_deref()) == Some("dpop") {
                    "DPoP".into()
                } else {
                    "Bearer".into()
                }
            });
            let presented = format!(
                "token {}, Authorization scheme {scheme}, client certificate {}, DPoP proof key {}",
                binding_of(claims),
                case.request.client_cert.as_deref().unwrap_or("(default)"),
                case.request.dpop_key.as_deref().unwrap_or("(default)")
            );
            on_rule(
                "sender_constraint",
                constraint_name(r.sender_constraint).into(),
                presented,
            )
        }
        Revoked => on_rule(
            "revocation",
            "a token that is not revoked".into(),
            "the token's jti is on the revocation list".into(),
        ),
        RevocationStatusUnknown => on_rule(
            "revocation",
            "a current revocation feed".into(),
            "the feed is stale".into(),
        ),
        UnknownIssuer => Some(entry(
            "issuers".into(),
            "issuers",
            "issuer",
            policy
                .doc
                .issuers
                .iter()
                .map(|i| i.issuer.clone())
                .collect::<Vec<_>>()
                .join(" "),
            text(claims.get("iss")),
        )),
        AudienceMismatch => {
            let required = issuer_index
                .and_then(|k| policy.doc.issuers.get(k))
                .map(|i| list(&i.audiences))
                .unwrap_or_default();
            on_issuer(
                "audiences",
                format!("one of: {required}"),
                text(claims.get("aud")),
            )
        }
        LifetimeTooLong => {
            let max = issuer_index
                .and_then(|k| policy.doc.issuers.get(k))
                .and_then(|i| i.max_lifetime)
                .map(|m| format!("at most {m} s from iat to exp"))
                .unwrap_or_default();
            let life = match (
                claims.get("exp").and_then(Value::as_i64),
                claims.get("iat").and_then(Value::as_i64),
            ) {
                (Some(e), Some(i)) => format!("{} s", e.saturating_sub(i)),
                _ => "(unknown)".into(),
            };
            on_issuer("max_lifetime", max, life)
        }
        Expired | NotYetValid | IssuedInFuture => {
            let (field, required) = match denial {
                Expired => ("leeway_past", "exp after now (within leeway_past)"),
                _ => (
                    "leeway_future",
                    "iat and nbf not after now (within leeway_future)",
                ),
            };
            let presented = format!(
                "exp {}, iat {}, now {}",
                text(claims.get("exp")),
                text(claims.get("iat")),
                fapi_core::policy_tests::TEST_NOW
            );
            on_issuer(field, required.into(), presented)
        }
        AuthorizationDetailsMissing
        | AuthorizationDetailsMismatch(_)
        | BodyNotJson
        | AuthorizationDetailsUsed
        | BodyTooLarge
        | AuthorizationDetailsStoreFull => {
            let d = req?.authorization_details.as_ref()?;
            let binds: Vec<String> = d
                .bind
                .iter()
                .map(|(b, t)| format!("body {b} = detail {t}"))
                .collect();
            let required = format!(
                "a detail of type {} in authorization_details{}{}; body at most {} bytes",
                d.detail_type,
                if binds.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", binds.join(", "))
                },
                if d.once { ", used once" } else { "" },
                d.max_body
            );
            let body = case.request.body_bytes().unwrap_or_default();
            let presented = match denial {
                AuthorizationDetailsMissing => format!(
                    "no detail of type {} (authorization_details: {})",
                    d.detail_type,
                    text(claims.get("authorization_details"))
                ),
                AuthorizationDetailsMismatch(field) => {
                    let body_value = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|b| b.pointer(field).cloned());
                    let consented = d.bind.get(field).and_then(|t| {
                        claims
                            .get("authorization_details")?
                            .as_array()?
                            .iter()
                            .filter(|x| x.get("type").and_then(Value::as_str) == Some(&d.detail_type))
                            .find_map(|x| x.pointer(t).cloned())
                    });
                    format!(
                        "body {field} = {}, consented {}",
                        text(body_value.as_ref()),
                        text(consented.as_ref())
                    )
                }
                BodyNotJson => format!("a body of {} bytes that is not a JSON object", body.len()),
                AuthorizationDetailsUsed => "the detail already admitted this request once".into(),
                BodyTooLarge => format!("{} bytes", body.len()),
                _ => "the store of used details is full".into(),
            };
            on_rule("authorization_details", required, presented)
        }
        MissingClaim(c) | MalformedClaim(c) => on_issuer(
            "required_claims",
            format!("a well-formed {c} claim"),
            text(claims.get(*c)),
        ),
        _ => None,
    }
}
