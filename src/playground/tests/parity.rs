//! The studio answers what Envoy's plugin answers. Every test case of every `policies/*.yaml`, and
//! variations of each (scheme, client certificate, DPoP proof key, revocation), goes through:
//!
//! 1. the studio's exported functions — `evaluate`, `tests`, `lint`, `compile` — the very functions
//!    the page calls in WebAssembly, here in the native build of the same crate;
//! 2. `Policy::decide_test`, the policy-test path (`guard::decide_with_claims`);
//! 3. the plugin's full decision, `Guard::decide` on real `RequestFacts`: a real access token signed
//!    (ES256) for a test-only copy of the policy whose issuers carry an inline key, a real client
//!    certificate digest for mTLS-bound tokens, and a real signed DPoP proof (RFC 9449) for
//!    DPoP-bound ones — signatures, `ath`, `htu`, `htm`, `iat`, replay and all.
//!
//! Status, error, reason and rule must agree everywhere.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::cache::{RevocationList, TokenCache};
use fapi_core::decision::Decision;
use fapi_core::dpop::MemoryReplayStore;
use fapi_core::extract::{ClientCert, RequestFacts};
use fapi_core::policy::{Policy, TestCase, TestToken};
use fapi_core::policy_tests::{test_claims_json, TEST_NOW};
use fapi_core::sign::{random_id, SigningKey};
use fapi_core::{Context, Guard};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn policy_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no policies in {}", dir.display());
    files
}

/// The policy as fapictl loads it (key files inlined; they do not take part in test decisions).
fn load(path: &Path) -> (String, Value, Policy) {
    let text = std::fs::read_to_string(path).unwrap();
    let (mut value, _) = fapi_core::yaml::load(&text).unwrap();
    if let Some(issuers) = value.get_mut("issuers").and_then(Value::as_array_mut) {
        for issuer in issuers {
            let jwks = issuer.get_mut("jwks").and_then(Value::as_object_mut).unwrap();
            if let Some(file) = jwks.remove("file").and_then(|f| f.as_str().map(str::to_string)) {
                let set: Value = serde_json::from_str(
                    &std::fs::read_to_string(path.parent().unwrap().join(file)).unwrap(),
                )
                .unwrap();
                let keys = set.get("keys").cloned().unwrap_or_else(|| json!([set]));
                jwks.insert("keys".into(), keys);
            }
        }
    }
    let (policy, _) =
        Policy::from_value(value.clone()).unwrap_or_else(|p| panic!("{}: {p:?}", path.display()));
    (text, value, policy)
}

/// The test case and the same request presented differently: the other scheme, another or no client
/// certificate, another or no DPoP proof key, the token revoked. With `full`, every combination of
/// scheme, certificate, proof key and revocation (96 per case).
fn variants(case: &TestCase, full: bool) -> Vec<TestCase> {
    let some = |s: &str| Some(s.to_string());
    let mut combos = Vec::new();
    if full {
        for scheme in [None, some("Bearer"), some("DPoP")] {
            for cert in [None, some("bound"), some("other"), some("none")] {
                for key in [None, some("bound"), some("other"), some("none")] {
                    for revoked in [false, true] {
                        combos.push((scheme.clone(), cert.clone(), key.clone(), revoked));
                    }
                }
            }
        }
    } else {
        let r = &case.request;
        let (scheme, cert, key) = (r.scheme.clone(), r.client_cert.clone(), r.dpop_key.clone());
        combos.push((scheme.clone(), cert.clone(), key.clone(), !r.revoked));
        combos.push((some("Bearer"), cert.clone(), key.clone(), r.revoked));
        combos.push((some("DPoP"), cert.clone(), key.clone(), r.revoked));
        for c in ["bound", "other", "none"] {
            combos.push((scheme.clone(), some(c), key.clone(), r.revoked));
            combos.push((some("DPoP"), some(c), some("none"), r.revoked));
        }
        for k in ["bound", "other", "none"] {
            combos.push((some("DPoP"), cert.clone(), some(k), r.revoked));
            combos.push((some("DPoP"), cert.clone(), some(k), !r.revoked));
        }
    }
    let mut out = vec![case.clone()];
    for (scheme, cert, key, revoked) in combos {
        let mut v = case.clone();
        v.name = format!(
            "{} [scheme {scheme:?}, cert {cert:?}, key {key:?}, revoked {revoked}]",
            case.name
        );
        v.request.scheme = scheme;
        v.request.client_cert = cert;
        v.request.dpop_key = key;
        v.request.revoked = revoked;
        if !out.iter().any(|o: &TestCase| o.request == v.request) {
            out.push(v);
        }
    }
    out
}

/// (status, error, reason, rule) of a decision.
type Answer = (u16, Option<String>, String, Option<String>);

fn answer_of(d: &Decision) -> Answer {
    match d {
        Decision::Allow(a) => (200, None, "allowed".into(), Some(a.rule.clone())),
        Decision::Deny(d) => (
            d.status,
            d.error.map(str::to_string),
            d.reason().to_string(),
            d.rule.clone(),
        ),
    }
}

fn studio_answer(text: &str, case: &TestCase) -> (Answer, Value) {
    let out = fapi_playground::evaluate(
        text,
        &serde_json::to_string(&case.request).unwrap(),
        &serde_json::to_string(&case.token).unwrap(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v.get("errors").is_none(),
        "{}: the studio refused: {v}",
        case.name
    );
    let answer = (
        v["status"].as_u64().unwrap() as u16,
        v["error"].as_str().map(str::to_string),
        v["reason"].as_str().unwrap().to_string(),
        v["rule"].as_str().map(str::to_string),
    );
    (answer, v)
}

#[test]
fn the_studio_decides_every_policy_test_as_the_policy_test_path() {
    for path in policy_files() {
        let (text, _, policy) = load(&path);
        assert!(!policy.doc.tests.is_empty(), "{}: no tests", path.display());
        let mut checked = 0;
        for case in &policy.doc.tests {
            for v in variants(case, false) {
                let (studio, out) = studio_answer(&text, &v);
                let core = answer_of(&policy.decide_test(&v));
                assert_eq!(studio, core, "{}: {}", path.display(), v.name);
                // Allowed, or refused with the requirement named; never a silent gap.
                if studio.0 != 200 && studio.2 != "missing_token" {
                    assert!(
                        out["failed_requirement"].is_object(),
                        "{}: no failed requirement for {}: {out}",
                        path.display(),
                        v.name
                    );
                }
                checked += 1;
            }
            // The case itself: the studio reaches what the test expects.
            let (studio, _) = studio_answer(&text, case);
            assert_eq!(studio.0, case.expect.status, "{}", case.name);
            if let Some(reason) = &case.expect.reason {
                assert_eq!(&studio.2, reason, "{}", case.name);
            }
            if let Some(rule) = &case.expect.rule {
                assert_eq!(studio.3.as_ref(), Some(rule), "{}", case.name);
            }
        }
        assert!(checked > policy.doc.tests.len() * 8, "{checked} decisions");

        // `tests` is `Policy::run_tests`, and the shipped tests pass.
        let studio: Value = serde_json::from_str(&fapi_playground::tests(&text)).unwrap();
        let core = serde_json::to_value(policy.run_tests()).unwrap();
        assert_eq!(studio, core);
        let outcomes = studio.as_array().unwrap();
        assert_eq!(outcomes.len(), policy.doc.tests.len());
        assert!(outcomes.iter().all(|o| o["passed"] == json!(true)), "{studio}");

        // No lint error, and the compiled configuration is fapictl's (the policy's own `compiled_json`).
        let lint: Value = serde_json::from_str(&fapi_playground::lint(&text)).unwrap();
        assert!(
            lint.as_array().unwrap().iter().all(|d| d["severity"] != "error"),
            "{lint}"
        );
        let compiled: Value = serde_json::from_str(&fapi_playground::compile(&text)).unwrap();
        assert_eq!(compiled["ok"], json!(true), "{compiled}");
        assert_eq!(compiled["json"].as_str().unwrap(), policy.compiled_json());
    }
}

/// What the client holds for the real decision: the issuers' keys, its DPoP keys, its certificate.
struct Holder {
    issuer_keys: Vec<(String, SigningKey)>,
    dpop_bound: SigningKey,
    dpop_other: SigningKey,
    /// `x5t#S256` of the certificate policy tests bind tokens to.
    bound_cert: String,
    other_cert: String,
}

/// A copy of the policy whose issuers verify with inline keys only this test holds.
fn test_copy(value: &Value, policy: &Policy) -> (Policy, Holder) {
    let mut value = value.clone();
    let mut issuer_keys = Vec::new();
    for (i, issuer) in value["issuers"].as_array_mut().unwrap().iter_mut().enumerate() {
        let key = SigningKey::generate(Algorithm::ES256, Some(format!("parity-{i}"))).unwrap();
        issuer["jwks"] = json!({ "keys": [key.public_jwk()] });
        issuer_keys.push((issuer["issuer"].as_str().unwrap().to_string(), key));
    }
    let (copy, _) = Policy::from_value(value).unwrap();
    let mtls = TestToken {
        binding: Some("mtls".into()),
        ..Default::default()
    };
    let bound_cert = test_claims_json(policy, &mtls)["cnf"]["x5t#S256"]
        .as_str()
        .unwrap()
        .to_string();
    let holder = Holder {
        issuer_keys,
        dpop_bound: SigningKey::generate(Algorithm::ES256, None).unwrap(),
        dpop_other: SigningKey::generate(Algorithm::ES256, None).unwrap(),
        bound_cert,
        other_cert: b64::encode(b64::sha256("another client certificate")),
    };
    (copy, holder)
}

/// `Guard::decide` on the request a real client would send for this case.
fn real_decision(guard: &Guard, policy: &Policy, holder: &Holder, case: &TestCase) -> Option<Answer> {
    let r = &case.request;
    let binding = case
        .token
        .as_ref()
        .map(|t| t.binding.clone().unwrap_or_else(|| "mtls".into()));
    let scheme = r.scheme.clone().unwrap_or_else(|| {
        if binding.as_deref() == Some("dpop") {
            "DPoP".into()
        } else {
            "Bearer".into()
        }
    });
    let is_dpop = scheme.eq_ignore_ascii_case("dpop");
    let cert = r.client_cert.clone().unwrap_or_else(|| {
        if binding.as_deref() == Some("mtls") {
            "bound"
        } else {
            "none"
        }
        .into()
    });
    let key = r
        .dpop_key
        .clone()
        .unwrap_or_else(|| if is_dpop { "bound" } else { "none" }.into());

    let (url_scheme, rest) = r.url.split_once("://").unwrap();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut facts = RequestFacts {
        method: r.method.clone(),
        scheme: url_scheme.into(),
        authority: authority.into(),
        path: path.into(),
        ..Default::default()
    };
    facts.client_cert = match cert.as_str() {
        "bound" => Some(ClientCert::Digest(holder.bound_cert.clone())),
        "other" => Some(ClientCert::Digest(holder.other_cert.clone())),
        _ => None,
    };
    let mut revoked = RevocationList::new();
    let mut token = None;
    if let Some(t) = &case.token {
        // The claims the policy test fabricates, with the DPoP binding to a key this client holds.
        let mut claims = test_claims_json(policy, t);
        if claims.get("error").is_some() && claims.get("iss").is_none() {
            return None; // claims the test path refuses before any token exists (malformed types)
        }
        if claims["cnf"].get("jkt").is_some() {
            claims["cnf"]["jkt"] = json!(holder.dpop_bound.thumbprint());
        }
        let iss = claims["iss"].as_str().unwrap_or_default();
        let signer = holder
            .issuer_keys
            .iter()
            .find(|(i, _)| i == iss)
            .unwrap_or(&holder.issuer_keys[0]);
        let jwt = signer.1.sign_jwt(Some("at+jwt"), &claims).unwrap();
        if r.revoked {
            if let Some(jti) = claims["jti"].as_str() {
                revoked.revoke(iss, jti, claims["exp"].as_i64().unwrap_or(TEST_NOW + 300));
            }
        }
        facts.authorization = vec![format!("{} {jwt}", if is_dpop { "DPoP" } else { "Bearer" })];
        token = Some(jwt);
    }
    let htu = r.url.split(['?', '#']).next().unwrap().to_string();
    let proof = |nonce: Option<&str>| -> Vec<String> {
        let signer = match key.as_str() {
            "bound" => &holder.dpop_bound,
            "other" => &holder.dpop_other,
            _ => return Vec::new(),
        };
        vec![signer
            .dpop_proof(&r.method, &htu, token.as_deref(), TEST_NOW, &random_id(), nonce)
            .unwrap()]
    };
    facts.dpop = proof(None);
    let body = r.body_bytes();
    // One store for the request's attempts: DPoP proofs and `once` authorization details.
    let mut replay = MemoryReplayStore::new(1024);
    let mut decide = |facts: &RequestFacts| {
        let mut cache = TokenCache::new(16);
        let mut ctx = Context {
            keys: &guard.policy,
            cache: &mut cache,
            replay: &mut replay,
            revocations: &revoked,
            revocation_feed_current: true,
            now: TEST_NOW,
        };
        guard.decide_with_body(facts, body.as_deref(), &mut ctx)
    };
    if r.repeated {
        // The same request sent before, with its own fresh DPoP proof (a client never reuses one).
        let _ = decide(&facts);
        facts.dpop = proof(None);
    }
    let mut decision = decide(&facts);
    // A route that requires a server nonce (RFC 9449 §9): the client retries with the one it got.
    if let Decision::Deny(d) = &decision {
        if let Some(nonce) = d.dpop_nonce.clone() {
            facts.dpop = proof(Some(&nonce));
            decision = decide(&facts);
        }
    }
    Some(answer_of(&decision))
}

#[test]
fn the_studio_decides_as_the_plugin_does_on_real_signed_requests() {
    for path in policy_files() {
        let (text, value, policy) = load(&path);
        let (copy, holder) = test_copy(&value, &policy);
        let guard = Guard::new(copy.clone(), Some(&[7u8; 32]));
        let (mut compared, mut allowed, mut dpop_proofs) = (0, 0, 0);
        for case in &policy.doc.tests {
            for v in variants(case, false) {
                let (studio, _) = studio_answer(&text, &v);
                let Some(real) = real_decision(&guard, &copy, &holder, &v) else {
                    continue;
                };
                assert_eq!(studio, real, "{}: {}", path.display(), v.name);
                compared += 1;
                allowed += usize::from(real.0 == 200);
                dpop_proofs += usize::from(
                    v.token.as_ref().and_then(|t| t.binding.as_deref()) == Some("dpop") && real.0 == 200,
                );
            }
        }
        // Meaningful: most cases compared, some admitted, DPoP-bound admissions among them.
        assert!(compared > policy.doc.tests.len() * 8, "{compared} compared");
        assert!(
            allowed > 10 && dpop_proofs > 0,
            "{allowed} allowed, {dpop_proofs} with DPoP"
        );
        eprintln!(
            "{}: {compared} decisions compared with Guard::decide ({allowed} allowed)",
            path.display()
        );
    }
}

#[test]
fn errors_are_reported_at_their_line() {
    let text = fapi_playground::initial_policy();
    // An unknown field (`scope` for `scopes`) in the accounts-list rule.
    let line = text
        .lines()
        .position(|l| l.contains("scopes: [accounts]"))
        .unwrap()
        + 1;
    let broken = text.replacen("scopes: [accounts]", "scope: [accounts]", 1);
    let lint: Value = serde_json::from_str(&fapi_playground::lint(&broken)).unwrap();
    let errors: Vec<&Value> = lint
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{lint}");
    assert_eq!(errors[0]["line"], json!(line));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `scope`"),
        "{lint}"
    );
    // No decision, no tests, no compilation on a policy with errors.
    let req = r#"{"url": "https://api.bank.example/accounts"}"#;
    let out: Value = serde_json::from_str(&fapi_playground::evaluate(&broken, req, "null")).unwrap();
    assert!(out["errors"].is_array(), "{out}");
    let out: Value = serde_json::from_str(&fapi_playground::tests(&broken)).unwrap();
    assert!(out["errors"].is_array(), "{out}");
    let out: Value = serde_json::from_str(&fapi_playground::compile(&broken)).unwrap();
    assert_eq!(out["ok"], json!(false));
    // YAML syntax errors too.
    let out: Value = serde_json::from_str(&fapi_playground::lint("version: 1\nissuers: [\n")).unwrap();
    assert_eq!(out[0]["severity"], json!("error"));
    assert!(out[0]["line"].as_u64().is_some(), "{out}");
}

#[test]
fn a_refusal_names_the_requirement_and_its_line() {
    let text = fapi_playground::initial_policy();
    let req = r#"{"method": "POST", "url": "https://api.bank.example/transfers"}"#;
    let token = r#"{"scope": "payments", "acr": "urn:bank:acr:password", "auth_age": 60}"#;
    let out: Value = serde_json::from_str(&fapi_playground::evaluate(&text, req, token)).unwrap();
    assert_eq!(out["status"], json!(401));
    assert_eq!(out["reason"], json!("acr_not_accepted"));
    assert_eq!(out["rule"], json!("transfer-create"));
    let f = &out["failed_requirement"];
    assert_eq!(f["field"], json!("acr"));
    assert_eq!(f["from"], json!("rule"));
    let acr_line = text
        .lines()
        .position(|l| l.contains("acr: [urn:bank:acr:totp, urn:bank:acr:passkey]"))
        .unwrap()
        + 1;
    assert_eq!(f["line"], json!(acr_line));
    assert_eq!(f["presented"], json!("urn:bank:acr:password"));
    assert!(
        out["www_authenticate"][0]
            .as_str()
            .unwrap()
            .contains("acr_values="),
        "{out}"
    );
    // A requirement inherited from `defaults` is found there.
    let req = r#"{"url": "https://api.bank.example/accounts"}"#;
    let token = r#"{"binding": "none", "scope": "accounts"}"#;
    let out: Value = serde_json::from_str(&fapi_playground::evaluate(&text, req, token)).unwrap();
    assert_eq!(out["reason"], json!("bearer_not_allowed"));
    assert_eq!(
        out["failed_requirement"]["path"],
        json!("defaults.sender_constraint")
    );
    // Bad input is refused, not guessed.
    let out: Value =
        serde_json::from_str(&fapi_playground::evaluate(&text, r#"{"url": "/x"}"#, "null")).unwrap();
    assert_eq!(out["errors"][0]["path"], json!("request.url"));
    let out: Value = serde_json::from_str(&fapi_playground::evaluate(
        &text,
        r#"{"url": "https://a.example/", "sheme": "DPoP"}"#,
        "null",
    ))
    .unwrap();
    assert!(
        out["errors"][0]["message"].as_str().unwrap().contains("sheme"),
        "{out}"
    );
}

/// The policy-test path (what the studio runs) and the plugin's `Guard::decide` on real signed requests
/// agree on every combination of scheme, client certificate, DPoP proof key and revocation.
#[test]
fn the_policy_test_path_is_the_plugin_path_for_every_presentation() {
    for path in policy_files() {
        let (_, value, policy) = load(&path);
        let (copy, holder) = test_copy(&value, &policy);
        let guard = Guard::new(copy.clone(), Some(&[7u8; 32]));
        let mut compared = 0;
        for case in &policy.doc.tests {
            for v in variants(case, true) {
                let Some(real) = real_decision(&guard, &copy, &holder, &v) else {
                    continue;
                };
                assert_eq!(
                    answer_of(&policy.decide_test(&v)),
                    real,
                    "{}: {}",
                    path.display(),
                    v.name
                );
                compared += 1;
            }
        }
        assert!(compared > policy.doc.tests.len() * 80, "{compared} compared");
    }
}
