//! The policy studio's engine: fapi-core's policy loader, validation, compilation and decisions,
//! exported to JavaScript with wasm-bindgen (target wasm32-unknown-unknown, `scripts/build-studio`).
//!
//! Every export takes and returns strings (JSON), so the very functions the page calls also run
//! natively: `tests/parity.rs` feeds every policy test through them and through the plugin's decision
//! path. Nothing here does I/O: the page sends nothing anywhere.
//!
//! - [`lint`]: `[{severity, line, column, path, message}]`, positions from [`fapi_core::yaml::SourceMap`]
//!   as `fapictl policy lint` prints them.
//! - [`compile`]: `{ok: true, json, warnings}` (the plugin configuration `fapictl policy compile` writes)
//!   or `{ok: false, errors}`.
//! - [`evaluate`]: one request and token, decided by [`Policy::decide_test`] — the path of the policy's
//!   own tests, i.e. [`fapi_core::guard::decide_with_claims`], the stages the plugin's
//!   [`fapi_core::Guard::decide`] runs after the signature checks — with the matched rule and the
//!   requirement that failed.
//! - [`tests`]: the policy's tests ([`Policy::run_tests`]).

mod explain;

use fapi_core::decision::Decision;
use fapi_core::policy::{Policy, Severity, TestCase, TestExpect, TestRequest, TestToken};
use fapi_core::policy_tests::{self, TEST_NOW};
use fapi_core::yaml::{self, SourceMap};
use serde::Serialize;
use serde_json::{json, Value};
use wasm_bindgen::prelude::wasm_bindgen;

/// The policy the page opens with (embedded at build time).
pub const INITIAL_POLICY: &str = include_str!("../../../policies/open-banking-jp.yaml");

/// Stands in for the keys of `jwks.file`, which only fapictl reads: signatures are not checked here,
/// so the keys never decide anything in the studio; the lint says so at the `file` line.
const PLACEHOLDER_KEY: &str = r#"{"kty":"EC","crv":"P-256","kid":"studio-placeholder","alg":"ES256","use":"sig","x":"STmmVgfjE8e0xdvLx-7tPOZ9-fe44aTZX6cxeWVESF8","y":"O3sn24mMkM-628A2A07qn1ycrzx2wGlRmrXrUK5I9O4"}"#;

/// One finding, located in the YAML text (1-based line and column) when it has a place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diag {
    pub severity: Severity,
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// The field at fault, as `rules[2].match.template`.
    pub path: String,
    pub message: String,
}

/// A loaded policy: the policy when it has no error, every finding, and the source map.
pub(crate) struct Loaded {
    pub policy: Option<Policy>,
    pub diags: Vec<Diag>,
    pub map: SourceMap,
    /// Issuers whose keys come from a `jwks.file` (not read in the browser).
    pub key_files: Vec<usize>,
}

impl Loaded {
    fn errors(&self) -> Vec<Diag> {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .cloned()
            .collect()
    }
}

/// What `fapictl policy lint` does, without the file system: YAML with positions, then validation.
pub(crate) fn load(text: &str) -> Loaded {
    let (mut value, map) = match yaml::load(text) {
        Ok(v) => v,
        Err(e) => {
            return Loaded {
                policy: None,
                diags: vec![Diag {
                    severity: Severity::Error,
                    line: e.position.map(|p| p.line),
                    column: e.position.map(|p| p.column),
                    path: String::new(),
                    message: e.message,
                }],
                map: SourceMap::default(),
                key_files: Vec::new(),
            }
        }
    };
    let key_files = placeholder_key_files(&mut value);
    let at = |path: &str, severity: Severity, message: String| {
        let pos = map.position(path);
        Diag {
            severity,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: path.to_string(),
            message,
        }
    };
    let mut diags: Vec<Diag> = key_files
        .iter()
        .map(|i| {
            at(
                &format!("issuers[{i}].jwks.file"),
                Severity::Warning,
                "key files are read by fapictl (lint, test, compile), not in the browser: these keys are not checked here, and the studio cannot compile this policy".to_string(),
            )
        })
        .collect();
    let (policy, problems) = match Policy::from_value(value) {
        Ok((p, problems)) => (Some(p), problems),
        Err(problems) => (None, problems),
    };
    for p in problems {
        diags.push(at(&p.path, p.severity, p.message));
    }
    diags.sort_by_key(|d| (d.line, d.column));
    let policy = if diags.iter().any(|d| d.severity == Severity::Error) {
        None
    } else {
        policy
    };
    Loaded {
        policy,
        diags,
        map,
        key_files,
    }
}

/// `issuers[i].jwks.file` (when it is the only key source) becomes the placeholder key.
fn placeholder_key_files(value: &mut Value) -> Vec<usize> {
    let mut out = Vec::new();
    let Some(issuers) = value.get_mut("issuers").and_then(Value::as_array_mut) else {
        return out;
    };
    let placeholder: Value = serde_json::from_str(PLACEHOLDER_KEY).unwrap_or(Value::Null);
    for (i, issuer) in issuers.iter_mut().enumerate() {
        let Some(jwks) = issuer.get_mut("jwks").and_then(Value::as_object_mut) else {
            continue;
        };
        if jwks.contains_key("keys") || jwks.contains_key("uri") || !jwks.contains_key("file") {
            continue;
        }
        jwks.remove("file");
        jwks.insert("keys".into(), Value::Array(vec![placeholder.clone()]));
        out.push(i);
    }
    out
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| json!({ "errors": [{"severity": "error", "line": null, "column": null, "path": "", "message": e.to_string()}] }).to_string())
}

fn errors_json(errors: Vec<Diag>) -> String {
    to_json(&json!({ "errors": errors }))
}

fn input_error(path: &str, message: impl Into<String>) -> Diag {
    Diag {
        severity: Severity::Error,
        line: None,
        column: None,
        path: path.to_string(),
        message: message.into(),
    }
}

/// The policy the page opens with: policies/open-banking-jp.yaml.
#[wasm_bindgen]
pub fn initial_policy() -> String {
    INITIAL_POLICY.to_string()
}

/// The fixed clock of policy tests and of the studio's decisions (Unix seconds).
#[wasm_bindgen]
pub fn test_now() -> f64 {
    TEST_NOW as f64
}

/// Every problem of the policy: JSON `[{severity, line, column, path, message}]`, sorted by position.
#[wasm_bindgen]
pub fn lint(yaml: &str) -> String {
    to_json(&load(yaml).diags)
}

/// The compiled plugin configuration: JSON `{ok: true, json, warnings}`, or `{ok: false, errors}`.
#[wasm_bindgen]
pub fn compile(yaml: &str) -> String {
    let loaded = load(yaml);
    let Some(policy) = &loaded.policy else {
        return to_json(&json!({"ok": false, "errors": loaded.errors()}));
    };
    if let Some(i) = loaded.key_files.first() {
        let pos = loaded.map.position(&format!("issuers[{i}].jwks.file"));
        let e = Diag {
            severity: Severity::Error,
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: format!("issuers[{i}].jwks.file"),
            message: "the browser cannot read key files: compile with fapictl policy compile, or give the keys inline".into(),
        };
        return to_json(&json!({"ok": false, "errors": [e]}));
    }
    let out = policy.compiled_json();
    // As fapictl: the configuration must load back into the same policy without tests.
    match Policy::from_json(&out) {
        Ok((back, _)) if back.doc.tests.is_empty() => {
            to_json(&json!({"ok": true, "json": out, "warnings": loaded.diags}))
        }
        Ok(_) => {
            to_json(&json!({"ok": false, "errors": [input_error("", "the compiled policy still has tests")]}))
        }
        Err(problems) => {
            let errors: Vec<Diag> = problems
                .into_iter()
                .map(|p| {
                    input_error(
                        &p.path,
                        format!("the compiled policy does not load back: {}", p.message),
                    )
                })
                .collect();
            to_json(&json!({"ok": false, "errors": errors}))
        }
    }
}

/// The policy's tests as written (name, request, token, expect), for the page's test picker: JSON
/// array, `[]` when the YAML does not parse.
#[wasm_bindgen]
pub fn test_cases(yaml: &str) -> String {
    let Ok((value, _)) = yaml::load(yaml) else {
        return "[]".into();
    };
    match value.get("tests") {
        Some(Value::Array(items)) => to_json(items),
        _ => "[]".into(),
    }
}

/// Runs the policy's tests: JSON `[{name, passed, expected, got}]`, or `{errors}` when the policy has
/// errors (then no test runs, as with `fapictl policy test`).
#[wasm_bindgen]
pub fn tests(yaml: &str) -> String {
    let loaded = load(yaml);
    match &loaded.policy {
        Some(policy) => to_json(&policy.run_tests()),
        None => errors_json(loaded.errors()),
    }
}

/// Decides one request. `request_json` is a policy test's `request` (`{method, url, scheme,
/// client_cert, dpop_key, revoked, body, repeated}`), `token_json` its `token` (`{binding, scope, acr,
/// auth_age, expires_in, authorization_details, claims}`) or `null` for a request without a token.
/// The answer is JSON: `{status, allowed, error, reason, rule, rule_line, www_authenticate,
/// description, body, failed_requirement, binding, forward, claims, normalized_path, now,
/// authorization_details}`, or `{errors}` when the policy or the input is invalid.
/// `authorization_details` is `null` unless the matched rule requires them; then `{type, once,
/// max_body, body_bytes, matches, details: [{index, fields: [{body_field, body_value,
/// detail_field, detail_value, matches}]}], refusal?}`: field by field, what the body holds and what
/// the user consented to.
#[wasm_bindgen]
pub fn evaluate(yaml: &str, request_json: &str, token_json: &str) -> String {
    let loaded = load(yaml);
    let Some(policy) = &loaded.policy else {
        return errors_json(loaded.errors());
    };
    let case = match test_case(request_json, token_json) {
        Ok(c) => c,
        Err(e) => return errors_json(vec![e]),
    };
    let decision = policy.decide_test(&case);
    to_json(&explain::decision_json(policy, &loaded.map, &case, &decision))
}

/// The input as a policy test case (its `expect` is not used), checked as the policy's tests are.
fn test_case(request_json: &str, token_json: &str) -> Result<TestCase, Diag> {
    let request: TestRequest = serde_json::from_str(request_json)
        .map_err(|e| input_error("request", format!("the request is not valid: {e}")))?;
    let token: Option<TestToken> = serde_json::from_str(token_json)
        .map_err(|e| input_error("token", format!("the token is not valid: {e}")))?;
    if fapi_core::uri::normalize(&request.url).is_none() {
        return Err(input_error("request.url", "must be an absolute http(s) URL"));
    }
    if let Some(s) = &request.scheme {
        if !s.eq_ignore_ascii_case("bearer") && !s.eq_ignore_ascii_case("dpop") {
            return Err(input_error("request.scheme", "Bearer or DPoP"));
        }
    }
    for (field, v) in [
        ("request.client_cert", &request.client_cert),
        ("request.dpop_key", &request.dpop_key),
    ] {
        if let Some(v) = v {
            if !matches!(v.as_str(), "bound" | "other" | "none") {
                return Err(input_error(field, "bound, other or none"));
            }
        }
    }
    if let Some(b) = token.as_ref().and_then(|t| t.binding.as_ref()) {
        if !matches!(b.as_str(), "mtls" | "dpop" | "none") {
            return Err(input_error("token.binding", "mtls, dpop or none"));
        }
    }
    Ok(TestCase {
        name: "studio".into(),
        request,
        token,
        expect: TestExpect {
            status: 200,
            error: None,
            reason: None,
            rule: None,
        },
    })
}

/// The token claims a request of the studio presents (what [`evaluate`] decides on), for display.
pub(crate) fn claims_of(policy: &Policy, token: &TestToken) -> Value {
    policy_tests::test_claims_json(policy, token)
}

/// `"allowed"` or the reason code; exported for the page's summaries.
pub(crate) fn reason_of(d: &Decision) -> &'static str {
    d.reason()
}
