//! Property tests: whatever an attacker or a policy author sends, fapi-core never panics, and hostile
//! input is refused with a well-formed denial (RFC 6750 §3 / RFC 9449 §7.1 status, error code and
//! challenge). Every test uses the fixed clock [`NOW`].
//!
//! Case counts are sized for CI (the whole file runs in about ten seconds in debug on two cores);
//! multiply them locally with `PROPS_SCALE=50 cargo test -p fapi-core --release --test props`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::binding::CertThumbprint;
use fapi_core::cache::{NoRevocations, TokenCache};
use fapi_core::decision::Decision;
use fapi_core::dpop::MemoryReplayStore;
use fapi_core::extract::ClientCert;
use fapi_core::policy::{Policy, Severity};
use fapi_core::sign::SigningKey;
use fapi_core::uri;
use fapi_core::{Context, Guard, RequestFacts};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// 2024-01-01T00:00:00Z.
const NOW: i64 = 1_704_067_200;
const ISSUER: &str = "https://as.bank.example";
const AUDIENCE: &str = "https://api.bank.example";
const HOST: &str = "api.bank.example";
const CLIENT_CERT: &[u8] = b"props client certificate (DER stand-in)";

/// `cases` times `PROPS_SCALE` (default 1); failures are reported, not persisted to files.
fn config(cases: u32) -> ProptestConfig {
    let scale = std::env::var("PROPS_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale.max(1)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

struct Fixture {
    es256: SigningKey,
    eddsa: SigningKey,
    /// The client's DPoP key.
    dpop: SigningKey,
    policy_json: String,
    guard: Guard,
    /// A valid mTLS-bound ES256 token for GET /accounts/1.
    mtls_token: String,
    /// A valid DPoP-bound ES256 token for GET /accounts/1.
    dpop_token: String,
}

fn policy_value(keys: &[&SigningKey]) -> Value {
    json!({
        "version": 1,
        "name": "props",
        "issuers": [{
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "max_lifetime": 3600,
            "jwks": {"keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>()}
        }],
        "defaults": {"sender_constraint": "either"},
        "rules": [
            {"name": "health", "match": {"methods": ["GET"], "path": "/health"}, "anonymous": true},
            {"name": "accounts", "match": {"hosts": [HOST], "methods": ["GET"], "template": "/accounts/{id}"},
             "require": {"scopes": ["accounts"]}},
            {"name": "payments", "match": {"methods": ["POST"], "prefix": "/payments"},
             "require": {"scopes": {"all_of": ["payments"]}, "sender_constraint": "dpop"}},
            {"name": "strong", "match": {"prefix": "/strong"},
             "require": {"scopes": ["accounts"], "acr": ["urn:bank:strong"], "max_auth_age": 300}}
        ]
    })
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let es256 = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let eddsa = SigningKey::generate(Algorithm::EdDSA, None).unwrap();
        let dpop = SigningKey::generate(Algorithm::ES256, None).unwrap();
        let policy_json = serde_json::to_string_pretty(&policy_value(&[&es256, &eddsa])).unwrap();
        let (policy, problems) = Policy::from_json(&policy_json).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let guard = Guard::new(policy, None);
        let cert = CertThumbprint::from_der(CLIENT_CERT).to_b64url();
        let mtls_token = es256
            .sign_jwt(
                Some("at+jwt"),
                &claims("accounts", json!({"x5t#S256": cert}), "t-mtls"),
            )
            .unwrap();
        let dpop_token = es256
            .sign_jwt(
                Some("at+jwt"),
                &claims("accounts", json!({"jkt": dpop.thumbprint()}), "t-dpop"),
            )
            .unwrap();
        Fixture {
            es256,
            eddsa,
            dpop,
            policy_json,
            guard,
            mtls_token,
            dpop_token,
        }
    })
}

fn claims(scope: &str, cnf: Value, jti: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "client_id": "tpp-1",
        "iat": NOW - 10, "exp": NOW + 290, "jti": jti, "scope": scope, "cnf": cnf
    })
}

fn facts(method: &str, path: &str, authorization: Option<String>) -> RequestFacts {
    RequestFacts {
        method: method.into(),
        scheme: "https".into(),
        authority: HOST.into(),
        path: path.into(),
        authorization: authorization.into_iter().collect(),
        dpop: Vec::new(),
        client_cert: Some(ClientCert::Der(CLIENT_CERT.to_vec())),
        interaction_id: None,
    }
}

/// One decision with fresh state; `cache_capacity` 0 forces signature verification.
fn decide_fresh(facts: &RequestFacts, cache_capacity: usize) -> Decision {
    let mut cache = TokenCache::new(cache_capacity);
    decide_with(facts, &mut cache)
}

fn decide_with(facts: &RequestFacts, cache: &mut TokenCache) -> Decision {
    let f = fixture();
    let mut replay = MemoryReplayStore::new(16);
    let mut ctx = Context {
        keys: &f.guard.policy,
        cache,
        replay: &mut replay,
        revocations: &NoRevocations,
        revocation_feed_current: true,
        now: NOW,
    };
    f.guard.decide(facts, &mut ctx)
}

/// A refusal a client can act on: a 400 or 401 with an OAuth error code, a challenge that is a single
/// printable header line (RFC 6750 §3: no CR/LF, so no header injection), a JSON body with `error`,
/// a reason in `reasons` (when given), and never the presented credential echoed back.
fn check_refused(d: &Decision, reasons: &[&str], secret: &str) -> Result<(), TestCaseError> {
    let Decision::Deny(deny) = d else {
        return Err(TestCaseError::fail("hostile input was allowed"));
    };
    prop_assert!(
        deny.status == 400 || deny.status == 401,
        "status {} for {}",
        deny.status,
        deny.reason()
    );
    prop_assert!(deny.error.is_some(), "no error code for {}", deny.reason());
    if !reasons.is_empty() {
        prop_assert!(
            reasons.contains(&deny.reason()),
            "unexpected reason {}",
            deny.reason()
        );
    }
    prop_assert!(!deny.www_authenticate.is_empty());
    for challenge in &deny.www_authenticate {
        prop_assert!(
            challenge.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "challenge not a printable line: {challenge:?}"
        );
    }
    let body: Value = serde_json::from_str(&deny.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(body["error"].as_str(), deny.error);
    // Short strings can occur in any text by chance; a credential of 24+ bytes cannot.
    if secret.trim().len() >= 24 {
        let s = secret.trim();
        prop_assert!(!deny.body.contains(s), "body echoes the credential");
        prop_assert!(!deny.www_authenticate.iter().any(|c| c.contains(s)));
    }
    Ok(())
}

/// Reasons for a credential that is not a JWT at all.
const SHAPE_REASONS: &[&str] = &["malformed_authorization", "malformed_token"];

/// Reasons for a JWT that does not verify (never a policy, binding or availability reason).
const TOKEN_REASONS: &[&str] = &[
    "malformed_authorization",
    "malformed_token",
    "algorithm_not_allowed",
    "typ_not_allowed",
    "key_in_header",
    "unknown_critical_header",
    "unknown_issuer",
    "unknown_kid",
    "signature_invalid",
    "claim_missing",
    "claim_malformed",
    "token_expired",
    "token_not_yet_valid",
    "token_issued_in_future",
];

const DPOP_REASONS: &[&str] = &[
    "dpop_multiple_headers",
    "dpop_proof_missing",
    "dpop_malformed",
    "dpop_claim_missing",
    "dpop_typ",
    "dpop_alg",
    "dpop_jwk",
    "dpop_private_jwk",
    "dpop_signature",
    "dpop_htm",
    "dpop_htu",
    "dpop_iat",
    "dpop_ath",
    "dpop_nonce_invalid",
];

// ---------------------------------------------------------------------------------------------
// Strategies

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "",
            "ES256",
            "PS256",
            "EdDSA",
            "RS256",
            "none",
            "HS256",
            "at+jwt",
            "dpop+jwt",
            ISSUER,
            AUDIENCE,
            "GET",
            "/accounts/1",
            "https://api.bank.example/accounts/1",
            "mtls",
            "dpop",
            "either",
            "bearer-allowed",
            "feed",
            "1",
            "accounts",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_#]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object built from the members a JOSE header or a JWT payload is made of, with hostile values.
fn jose_object(names: &'static [&'static str], valid: Value) -> impl Strategy<Value = Value> {
    let member = (prop::sample::select(names.to_vec()), any::<bool>(), any_json());
    prop::collection::vec(member, 0..8).prop_map(move |members| {
        let mut obj = valid.as_object().cloned().unwrap_or_default();
        for (name, keep_valid, v) in members {
            if !keep_valid || !obj.contains_key(name) {
                obj.insert(name.to_string(), v);
            }
        }
        Value::Object(obj)
    })
}

fn b64_bytes(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(b64::encode)
}

// ---------------------------------------------------------------------------------------------
// The access token

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_bearer_text_is_refused(token in "\\PC{0,300}") {
        let d = decide_fresh(&facts("GET", "/accounts/1", Some(format!("Bearer {token}"))), 0);
        check_refused(&d, SHAPE_REASONS, &token)?;
    }

    #[test]
    fn random_bytes_after_bearer_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let token = String::from_utf8_lossy(&bytes).into_owned();
        let d = decide_fresh(&facts("GET", "/accounts/1", Some(format!("Bearer {token}"))), 0);
        check_refused(&d, SHAPE_REASONS, &token)?;
    }

    /// token68 text (RFC 7235) passes the header check and reaches the JWS parser.
    #[test]
    fn random_token68_is_refused(token in "[A-Za-z0-9._~+/-]{1,300}={0,2}", scheme in "(Bearer|DPoP|bearer|DPOP)") {
        let d = decide_fresh(&facts("GET", "/accounts/1", Some(format!("{scheme} {token}"))), 0);
        let reasons = if scheme.eq_ignore_ascii_case("dpop") { &[][..] } else { SHAPE_REASONS };
        check_refused(&d, reasons, &token)?;
    }

    #[test]
    fn random_base64url_segments_are_refused(h in b64_bytes(200), p in b64_bytes(400), s in b64_bytes(300)) {
        let token = format!("{h}.{p}.{s}");
        let d = decide_fresh(&facts("GET", "/accounts/1", Some(format!("Bearer {token}"))), 0);
        check_refused(&d, TOKEN_REASONS, &token)?;
    }
}

proptest! {
    #![proptest_config(config(800))]

    /// Headers and payloads made of the right member names with hostile values, and a random
    /// signature: refused at the header, the claims or the signature, never admitted.
    #[test]
    fn jws_with_hostile_header_and_claims_is_refused(
        header in jose_object(
            &["alg", "typ", "kid", "jwk", "jku", "x5u", "x5c", "crit", "b64", "cty", "zip", "x"],
            json!({"alg": "ES256", "typ": "at+jwt"}),
        ),
        payload in jose_object(
            &["iss", "aud", "exp", "iat", "nbf", "sub", "client_id", "scope", "jti", "cnf", "acr", "auth_time"],
            claims("accounts", json!({"x5t#S256": CertThumbprint::from_der(CLIENT_CERT).to_b64url()}), "j"),
        ),
        sig in prop::collection::vec(any::<u8>(), 0..96),
        use_kid in any::<bool>(),
    ) {
        let mut header = header;
        if use_kid {
            header["kid"] = json!(fixture().es256.kid());
        }
        let token = format!(
            "{}.{}.{}",
            b64::encode(header.to_string()),
            b64::encode(payload.to_string()),
            b64::encode(&sig)
        );
        let d = decide_fresh(&facts("GET", "/accounts/1", Some(format!("Bearer {token}"))), 0);
        check_refused(&d, TOKEN_REASONS, &token)?;
    }
}

// ---------------------------------------------------------------------------------------------
// DPoP proofs and client certificates, with an otherwise valid token

fn dpop_facts(proofs: Vec<String>) -> RequestFacts {
    let f = fixture();
    let mut facts = facts("GET", "/accounts/1", Some(format!("DPoP {}", f.dpop_token)));
    facts.client_cert = None;
    facts.dpop = proofs;
    facts
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_dpop_header_is_refused(proof in "\\PC{0,400}") {
        let d = decide_fresh(&dpop_facts(vec![proof.clone()]), 16);
        check_refused(&d, DPOP_REASONS, &proof)?;
    }

    #[test]
    fn random_dpop_segments_are_refused(h in b64_bytes(200), p in b64_bytes(300), s in b64_bytes(100)) {
        let proof = format!("{h}.{p}.{s}");
        let d = decide_fresh(&dpop_facts(vec![proof.clone()]), 16);
        check_refused(&d, DPOP_REASONS, &proof)?;
    }

    #[test]
    fn several_dpop_headers_are_refused(proofs in prop::collection::vec("\\PC{0,40}", 2..4)) {
        let d = decide_fresh(&dpop_facts(proofs), 16);
        check_refused(&d, &["dpop_multiple_headers"], "")?;
    }
}

proptest! {
    #![proptest_config(config(500))]

    /// Proof headers and claims with hostile values around a valid proof, signed by the bound key:
    /// the signature holds, so every other RFC 9449 §4.3 check is exercised.
    #[test]
    fn signed_dpop_proof_with_hostile_members_is_refused(
        header in jose_object(&["typ", "alg", "jwk", "kid", "crit", "x"], json!({"typ": "dpop+jwt", "alg": "ES256"})),
        claims in jose_object(&["jti", "htm", "htu", "iat", "ath", "nonce", "x"], json!({})),
        break_one in 0usize..5,
    ) {
        let f = fixture();
        let mut header = header;
        header["jwk"] = f.dpop.public_jwk_bare();
        header["alg"] = json!("ES256");
        // Start from a valid proof, overlay the hostile members, then break one required check for sure.
        let mut c = json!({
            "jti": "p-1", "htm": "GET", "htu": "https://api.bank.example/accounts/1", "iat": NOW,
            "ath": b64::sha256_b64(&f.dpop_token),
        });
        for (k, v) in claims.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        match break_one {
            0 => c["htm"] = json!("DELETE"),
            1 => c["htu"] = json!("https://api.bank.example/payments"),
            2 => c["iat"] = json!(NOW - 3600),
            3 => c["ath"] = json!(b64::sha256_b64("another token")),
            _ => header["typ"] = json!("jwt"),
        }
        let proof = f.dpop.sign_with_header(&header, &c).unwrap();
        let d = decide_fresh(&dpop_facts(vec![proof.clone()]), 16);
        check_refused(&d, DPOP_REASONS, &proof)?;
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_certificate_digest_is_refused(digest in prop_oneof!["\\PC{0,100}", "[0-9a-fA-F:]{0,100}", "[A-Za-z0-9_-]{43}"]) {
        let f = fixture();
        let mut facts = facts("GET", "/accounts/1", Some(format!("Bearer {}", f.mtls_token)));
        facts.client_cert = Some(ClientCert::Digest(digest.clone()));
        let d = decide_fresh(&facts, 16);
        check_refused(&d, &["certificate_missing", "binding_mismatch"], "")?;
    }

    /// Any accepted digest form names exactly one thumbprint, reachable again from its x5t#S256 form
    /// and from lowercase hex (RFC 8705 §3.1).
    #[test]
    fn digest_parsing_is_consistent(digest in prop_oneof!["\\PC{0,100}", "[0-9a-fA-F:]{60,70}", "[A-Za-z0-9_=-]{42,44}"]) {
        if let Some(t) = CertThumbprint::parse_digest(&digest) {
            prop_assert_eq!(CertThumbprint::parse_digest(&t.to_b64url()), Some(t));
            let hex: String = t.0.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(CertThumbprint::parse_digest(&hex), Some(t));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies

/// Either a policy, with warnings only, or at least one error; every problem prints.
fn check_policy_outcome(
    outcome: Result<(Policy, Vec<fapi_core::policy::Problem>), Vec<fapi_core::policy::Problem>>,
) -> Result<Option<Policy>, TestCaseError> {
    match outcome {
        Ok((policy, warnings)) => {
            prop_assert!(warnings.iter().all(|p| p.severity == Severity::Warning));
            let _ = warnings.iter().map(ToString::to_string).count();
            // What the plugin loads must load again.
            let again = Policy::from_json(&policy.compiled_json());
            prop_assert!(
                again.is_ok(),
                "compiled policy does not reload: {:?}",
                again.err()
            );
            Ok(Some(policy))
        }
        Err(problems) => {
            prop_assert!(problems.iter().any(|p| p.severity == Severity::Error));
            let _ = problems.iter().map(ToString::to_string).count();
            Ok(None)
        }
    }
}

/// Every path (as JSON pointers) in a JSON value.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[derive(Debug, Clone)]
enum TextEdit {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, String),
}

fn text_edits() -> impl Strategy<Value = Vec<TextEdit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(at, n)| TextEdit::Delete(at, n)),
        (any::<usize>(), "\\PC{1,6}|[\\[\\]{}:,\"\\n -]{1,3}").prop_map(|(at, s)| TextEdit::Insert(at, s)),
        (any::<usize>(), "\\PC|[\\[\\]{}:,\"\\n -]").prop_map(|(at, s)| TextEdit::Replace(at, s)),
    ];
    prop::collection::vec(edit, 1..5)
}

fn apply_edits(text: &str, edits: &[TextEdit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            TextEdit::Delete(at, n) => {
                let start = at % len;
                let end = (start + n).min(chars.len());
                if start < end {
                    chars.drain(start..end);
                }
            }
            TextEdit::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            TextEdit::Replace(at, s) => {
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars.splice(at..=at, s.chars());
                }
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_text_is_not_a_policy(text in "\\PC{0,200}") {
        let outcome = Policy::from_json(&text);
        prop_assert!(check_policy_outcome(outcome)?.is_none());
    }

    #[test]
    fn random_json_is_not_a_policy(v in any_json()) {
        let outcome = Policy::from_json(&v.to_string());
        prop_assert!(check_policy_outcome(outcome)?.is_none());
    }

    #[test]
    fn edited_policy_json_never_panics(edits in text_edits()) {
        let text = apply_edits(&fixture().policy_json, &edits);
        check_policy_outcome(Policy::from_json(&text))?;
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// One field of a valid policy replaced by any JSON value, removed, or an unknown one added.
    /// A policy that still validates must decide without panicking.
    #[test]
    fn mutated_policy_value_never_panics(
        picks in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any_json(), "[a-z_]{1,10}"), 1..4),
        path in "(/[a-z0-9{}._%-]{0,8}){1,4}",
    ) {
        let mut v: Value = serde_json::from_str(&fixture().policy_json).unwrap();
        for (index, op, replacement, name) in picks {
            let mut all = Vec::new();
            pointers(&v, String::new(), &mut all);
            let target = index.get(&all).clone();
            let Some(node) = v.pointer_mut(&target) else { continue };
            match op {
                0 => *node = replacement,
                1 => {
                    if let Some(obj) = node.as_object_mut() {
                        obj.insert(name, replacement);
                    } else {
                        *node = replacement;
                    }
                }
                _ => {
                    if let Some(obj) = node.as_object_mut() {
                        let first = obj.keys().nth(name.len() % obj.len().max(1)).cloned();
                        if let Some(k) = first {
                            obj.remove(&k);
                        }
                    } else if let Some(items) = node.as_array_mut() {
                        if !items.is_empty() {
                            items.remove(name.len() % items.len());
                        }
                    }
                }
            }
        }
        if let Some(policy) = check_policy_outcome(Policy::from_value(v))? {
            let guard = Guard::new(policy, Some(&[7u8; 32]));
            let f = fixture();
            for (method, auth) in [("GET", None), ("POST", Some(format!("Bearer {}", f.mtls_token)))] {
                let mut request = facts(method, &path, auth);
                request.authority = HOST.into();
                let mut cache = TokenCache::new(4);
                let mut replay = MemoryReplayStore::new(4);
                let mut ctx = Context {
                    keys: &guard.policy,
                    cache: &mut cache,
                    replay: &mut replay,
                    revocations: &NoRevocations,
                    revocation_feed_current: true,
                    now: NOW,
                };
                let _ = guard.decide(&request, &mut ctx);
            }
        }
    }
}

/// The YAML authoring form of the fixture policy (block style, as authors write it).
fn policy_yaml() -> String {
    let f = fixture();
    let key = |k: &SigningKey| {
        let jwk = k.public_jwk();
        let mut out = String::new();
        for (name, v) in jwk.as_object().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            let lead = if out.is_empty() {
                "        - "
            } else {
                "          "
            };
            out.push_str(&format!("{lead}{name}: \"{v}\"\n"));
        }
        out
    };
    format!(
        "version: 1\n\
         name: props\n\
         issuers:\n  \
           - issuer: \"{ISSUER}\"\n    \
             audiences: [\"{AUDIENCE}\"]\n    \
             max_lifetime: 3600\n    \
             jwks:\n      \
               keys:\n{}{}\
         defaults:\n  sender_constraint: either\n\
         rules:\n  \
           - name: health\n    match: {{methods: [GET], path: /health}}\n    anonymous: true\n  \
           - name: accounts\n    match:\n      hosts: [{HOST}]\n      methods: [GET]\n      template: \"/accounts/{{id}}\"\n    \
             require:\n      scopes: [accounts]\n  \
           - name: payments\n    match: {{methods: [POST], prefix: /payments}}\n    \
             require:\n      scopes: {{all_of: [payments]}}\n      sender_constraint: dpop\n  \
           - name: strong\n    match: {{prefix: /strong}}\n    \
             require: {{scopes: [accounts], acr: [\"urn:bank:strong\"], max_auth_age: 300}}\n",
        key(&f.es256),
        key(&f.eddsa),
    )
}

/// A YAML document that loads must give a value the policy reader judges, and every problem path
/// must be locatable (or not) without panicking.
fn check_yaml(text: &str) -> Result<Option<Policy>, TestCaseError> {
    match fapi_core::yaml::load(text) {
        Ok((value, map)) => match Policy::from_value(value) {
            Ok((policy, warnings)) => {
                for p in &warnings {
                    let _ = map.position(&p.path);
                }
                prop_assert!(warnings.iter().all(|p| p.severity == Severity::Warning));
                Ok(Some(policy))
            }
            Err(problems) => {
                prop_assert!(problems.iter().any(|p| p.severity == Severity::Error));
                for p in &problems {
                    let _ = map.position(&p.path);
                }
                Ok(None)
            }
        },
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Ok(None)
        }
    }
}

#[test]
fn yaml_fixture_is_the_json_fixture() {
    let from_yaml = check_yaml(&policy_yaml()).unwrap();
    let (from_json, _) = Policy::from_json(&fixture().policy_json).unwrap();
    assert_eq!(from_yaml.map(|p| p.doc), Some(from_json.doc));
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn random_yaml_text_never_panics(text in "\\PC{0,200}|[a-z_:\\[\\]{}\\-|>&*!%@#'\" \\n0-9]{0,200}") {
        prop_assert!(check_yaml(&text)?.is_none());
    }

    #[test]
    fn edited_policy_yaml_never_panics(edits in text_edits()) {
        let text = apply_edits(&policy_yaml(), &edits);
        check_yaml(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// URIs and paths

proptest! {
    #![proptest_config(config(3000))]

    /// RFC 3986 §6.2.2 normalization yields an absolute http(s) URI without query or fragment, made
    /// of URI characters only, and is idempotent (a normalized htu compares equal to itself).
    #[test]
    fn uri_normalization_is_sound(
        u in prop_oneof![
            "\\PC{0,80}",
            "(https?|HTTPS|Http|ftp)://([a-zA-Z0-9.@\\[\\]:% é-]{0,12})(:[0-9a-z]{0,6})?(/([a-zA-Z0-9~._-]|%[0-9a-fA-F+ -]{0,2}|\\.\\.?){0,4}){0,5}([?#][a-z=&/.]{0,8})?",
        ]
    ) {
        if let Some(n) = uri::normalize(&u) {
            prop_assert!(n.starts_with("https://") || n.starts_with("http://"), "{n}");
            prop_assert!(!n.contains(['?', '#']), "{n}");
            prop_assert!(n.bytes().all(|b| (0x21..0x7f).contains(&b)), "{n}");
            let bytes = n.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'%' {
                    let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                    prop_assert!(
                        hex.len() == 2 && hex.iter().all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                        "bad percent-encoding in {n} (from {u})"
                    );
                }
            }
            prop_assert_eq!(uri::normalize(&n), Some(n.clone()), "not idempotent, from {}", u);
        }
    }

    /// A request path matches the same rule as its normalized form, so `..`, `.`, `//` and percent
    /// encoding cannot move a request to another rule; an invalid path matches nothing.
    #[test]
    fn paths_cannot_dodge_rules(
        path in prop_oneof![
            "\\PC{0,60}",
            "(/(accounts|payments|strong|health|1|x|\\.|\\.\\.|%2e|%2E%2e|%61ccounts|%2F|%zz|)){0,6}(\\?[a-z=&./]{0,10})?",
        ],
        method in "(GET|POST|PUT|get)",
    ) {
        let policy = &fixture().guard.policy;
        let rule = policy.match_rule(&method, HOST, &path).map(|r| r.name.clone());
        match fapi_core::policy::matcher::normalize_path(&path) {
            None => prop_assert_eq!(rule, None),
            Some(n) => {
                prop_assert!(n.starts_with('/'));
                prop_assert!(!n.contains("//"), "{}", n);
                prop_assert!(!n.split('/').any(|s| s == "." || s == ".."), "{}", n);
                let again = policy.match_rule(&method, HOST, &n).map(|r| r.name.clone());
                prop_assert_eq!(rule, again, "path {} normalized to {}", path, n);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Determinism and the cache

#[derive(Debug, Clone)]
struct TokenSpec {
    eddsa: bool,
    scope: Vec<&'static str>,
    binding: u8,
    exp_offset: i64,
    iat_offset: i64,
    acr: Option<&'static str>,
    auth_age: Option<i64>,
    request: (&'static str, &'static str),
    with_cert: bool,
}

fn token_spec() -> impl Strategy<Value = TokenSpec> {
    (
        any::<bool>(),
        prop::sample::subsequence(vec!["accounts", "payments", "openid"], 0..=3),
        0u8..3,
        -200i64..3000,
        -100i64..30,
        prop::option::of(prop::sample::select(vec!["urn:bank:strong", "urn:bank:weak"])),
        prop::option::of(0i64..1000),
        prop::sample::select(vec![
            ("GET", "/accounts/1"),
            ("POST", "/payments/p-1"),
            ("GET", "/strong/x"),
            ("GET", "/health"),
            ("DELETE", "/accounts/1"),
        ]),
        any::<bool>(),
    )
        .prop_map(
            |(eddsa, scope, binding, exp_offset, iat_offset, acr, auth_age, request, with_cert)| TokenSpec {
                eddsa,
                scope,
                binding,
                exp_offset,
                iat_offset,
                acr,
                auth_age,
                request,
                with_cert,
            },
        )
}

/// The whole decision, except whether the cache answered (compared separately).
fn debug_summary(d: &Decision) -> String {
    match d {
        Decision::Allow(a) => {
            let mut a = a.clone();
            a.cache_hit = false;
            format!("{:?}", Decision::Allow(a))
        }
        Decision::Deny(_) => format!("{d:?}"),
    }
}

fn cache_hit(d: &Decision) -> bool {
    matches!(d, Decision::Allow(a) if a.cache_hit)
}

proptest! {
    #![proptest_config(config(1000))]

    /// For any correctly signed token, the decision depends only on the inputs: deciding twice gives
    /// the same answer, and a cache hit answers exactly as the verification it replaces.
    #[test]
    fn decisions_are_deterministic_and_cache_transparent(spec in token_spec(), jti in "[A-Za-z0-9]{1,16}") {
        let f = fixture();
        let key = if spec.eddsa { &f.eddsa } else { &f.es256 };
        let cnf = match spec.binding {
            0 => json!({"x5t#S256": CertThumbprint::from_der(CLIENT_CERT).to_b64url()}),
            1 => json!({"jkt": f.dpop.thumbprint()}),
            _ => json!({}),
        };
        let mut c = claims(&spec.scope.join(" "), cnf, &jti);
        c["exp"] = json!(NOW + spec.exp_offset);
        c["iat"] = json!(NOW + spec.iat_offset);
        if let Some(acr) = spec.acr {
            c["acr"] = json!(acr);
        }
        if let Some(age) = spec.auth_age {
            c["auth_time"] = json!(NOW - age);
        }
        let token = key.sign_jwt(Some("at+jwt"), &c).unwrap();
        let (method, path) = spec.request;
        let dpop = spec.binding == 1;
        let scheme = if dpop { "DPoP" } else { "Bearer" };
        let mut request = facts(method, path, Some(format!("{scheme} {token}")));
        if !spec.with_cert {
            request.client_cert = None;
        }
        if dpop {
            let htu = format!("https://{HOST}{path}");
            request.dpop = vec![f.dpop.dpop_proof(method, &htu, Some(&token), NOW, &jti, None).unwrap()];
        }
        let uncached = decide_fresh(&request, 0);
        prop_assert_eq!(debug_summary(&uncached), debug_summary(&decide_fresh(&request, 0)));

        let mut cache = TokenCache::new(8);
        let miss = decide_with(&request, &mut cache);
        let hit = decide_with(&request, &mut cache);
        prop_assert_eq!(debug_summary(&miss), debug_summary(&uncached));
        prop_assert_eq!(debug_summary(&hit), debug_summary(&uncached));
        // A token that passed verification is answered from the cache the second time, and an
        // admission says so.
        prop_assert!(!cache_hit(&uncached) && !cache_hit(&miss));
        if cache.len() == 1 {
            prop_assert_eq!(cache.hits, 1);
            prop_assert_eq!(cache_hit(&hit), hit.is_allow());
        } else {
            prop_assert!(!cache_hit(&hit));
        }
        // A correctly signed token with everything right is admitted.
        let all_right = spec.exp_offset > 0
            && spec.iat_offset <= 10
            && spec.exp_offset - spec.iat_offset <= 3600
            && spec.binding != 2
            && (spec.binding != 0 || spec.with_cert)
            && spec.request == ("GET", "/accounts/1")
            && spec.scope.contains(&"accounts");
        if all_right {
            prop_assert!(uncached.is_allow(), "{:?}", uncached);
        }
    }
}
