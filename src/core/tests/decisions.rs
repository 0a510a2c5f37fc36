//! The decision paths of [`fapi_core::Guard::decide`], end to end, with real generated keys, real signed
//! tokens and real DPoP proofs, at a fixed clock. One test per rule broken; each asserts the HTTP status,
//! the OAuth error code, the stable reason code and the `WWW-Authenticate` challenge.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use fapi_core::b64;
use fapi_core::decision::BindingKind;
use fapi_core::extract::ClientCert;
use fapi_core::guard::KeySource;
use fapi_core::jwks::Jwks;
use fapi_core::policy::Policy;
use fapi_core::sign::{random_id, SigningKey};
use ring::hmac;
use serde_json::{json, Value};
use std::cell::Cell;

// ============================================================================================
// Admitted
// ============================================================================================

/// RFC 8705 §3: the certificate presented on the connection (DER, or Envoy's lowercase hex digest)
/// matches `cnf.x5t#S256`.
#[test]
fn admitted_mtls_bound_token_with_matching_certificate() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());

    let a = allowed(h.decide(&balances_mtls(&token)));
    assert_eq!(a.rule, "balances");
    assert_eq!(a.binding, BindingKind::Mtls);
    assert_eq!(a.claims.sub.as_deref(), Some("alice"));

    let token = sign(&keys().ps, &claims());
    let mut facts = bearer(get("/accounts/7/balances"), &token);
    let digest = envoy_digest(CERT_A);
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| !b.is_ascii_uppercase()));
    facts.client_cert = Some(ClientCert::Digest(digest));
    let a = allowed(h.decide(&facts));
    assert_eq!(a.binding, BindingKind::Mtls);

    let token = sign(&keys().ed, &claims());
    let a = allowed(h.decide(&balances_mtls(&token)));
    assert_eq!(a.binding, BindingKind::Mtls);
}

/// RFC 9449 §7.1: a DPoP-bound token under the DPoP scheme with a valid proof of the bound key.
#[test]
fn admitted_dpop_bound_token_with_valid_proof() {
    let mut h = Harness::new();
    for key in [&keys().dpop, &keys().dpop_ed] {
        let token = sign(&keys().es, &dpop_claims(key));
        let p = proof(key, "GET", "/accounts/1/balances", &token);
        let a = allowed(h.decide(&dpop(get("/accounts/1/balances"), &token, &[&p])));
        assert_eq!(a.rule, "balances");
        assert_eq!(a.binding, BindingKind::Dpop);
        assert_eq!(forwarded(&a, "x-fapi-binding"), Some("dpop"));
    }
    // The DPoP-only route admits it too.
    let token = sign(&keys().es, &dpop_claims(&keys().dpop));
    let p = proof(&keys().dpop, "POST", "/payment-consents", &token);
    let a = allowed(h.decide(&dpop(post("/payment-consents"), &token, &[&p])));
    assert_eq!(a.rule, "payment-consents");
}

/// An unbound token where the rule says `bearer-allowed`; the claims are forwarded with control
/// characters removed (claims are attacker-influenced text headed for an HTTP header).
#[test]
fn admitted_bearer_token_on_bearer_allowed_route_with_forwarded_headers() {
    let mut h = Harness::new();
    let c = with(
        bearer_claims(),
        json!({"sub": "alice\r\nx-injected: 1\u{0}\t", "client_id": "tpp\n-1", "acr": STRONG_ACR}),
    );
    let token = sign(&keys().es, &c);
    let a = allowed(h.decide(&bearer(get("/products/42"), &token)));
    assert_eq!(a.rule, "products");
    assert_eq!(a.binding, BindingKind::Bearer);
    assert_eq!(forwarded(&a, "x-fapi-subject"), Some("alicex-injected: 1"));
    assert_eq!(forwarded(&a, "x-fapi-client-id"), Some("tpp-1"));
    assert_eq!(forwarded(&a, "x-fapi-scope"), Some("accounts payments"));
    assert_eq!(forwarded(&a, "x-fapi-acr"), Some(STRONG_ACR));
    assert_eq!(forwarded(&a, "x-fapi-binding"), Some("bearer"));
    for (name, value) in &a.forward {
        assert!(!value.chars().any(char::is_control), "{name}: {value:?}");
    }
}

/// Anonymous rules need no token at all.
#[test]
fn admitted_anonymous_health_without_token() {
    let mut h = Harness::new();
    let a = allowed(h.decide(&get("/health")));
    assert_eq!(a.rule, "health");
    assert!(a.forward.is_empty());
}

// ============================================================================================
// JWS header (RFC 8725, RFC 7515, FAPI 2.0 §5.4)
// ============================================================================================

/// RFC 8725 §3.1: `alg: none` is never accepted, in any spelling.
#[test]
fn alg_none_is_refused() {
    let mut h = Harness::new();
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "es-1"});
        let token = format!("{}.", signing_input(&header, &claims()));
        let d = assert_invalid_token(h.decide(&balances_mtls(&token)), "algorithm_not_allowed");
        assert!(d.www_authenticate[0].contains(&format!("algorithm {alg} is not allowed")));
    }
}

/// RFC 8725 §3.2 key confusion: an HS256 token whose HMAC key is the issuer's public key (as JWK JSON,
/// or as the raw EC point) must not verify.
#[test]
fn hs256_with_public_key_as_hmac_secret_is_refused() {
    let mut h = Harness::new();
    let es = &keys().es;
    let jwk = es.public_jwk();
    let x = b64::decode(jwk["x"].as_str().unwrap()).unwrap();
    let y = b64::decode(jwk["y"].as_str().unwrap()).unwrap();
    let mut point = vec![4u8];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let secrets: [Vec<u8>; 3] = [
        jwk.to_string().into_bytes(),
        es.public_jwk_bare().to_string().into_bytes(),
        point,
    ];
    for secret in secrets {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "es-1"});
        let input = signing_input(&header, &claims());
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), input.as_bytes());
        let token = format!("{input}.{}", b64::encode(tag.as_ref()));
        assert_invalid_token(h.decide(&balances_mtls(&token)), "algorithm_not_allowed");
    }
}

/// RS256 is outside FAPI 2.0 §5.4.1: refused unless the issuer's policy lists it (even when the key set
/// holds an RS256 key), admitted once it does.
#[test]
fn rs256_refused_unless_issuer_enables_it() {
    let token = sign(&keys().rs, &claims());
    let mut h = Harness::new();
    let d = assert_invalid_token(h.decide(&balances_mtls(&token)), "algorithm_not_allowed");
    assert!(d.www_authenticate[0].contains("algorithm RS256 is not allowed"));

    let mut v = policy_value();
    v["issuers"][0]["algorithms"] = json!(["PS256", "ES256", "EdDSA", "RS256"]);
    let mut h = Harness::with_policy(v, None);
    let a = allowed(h.decide(&balances_mtls(&token)));
    assert_eq!(a.rule, "balances");
    // The PS256 key of the same material does not verify RS256 (its JWK pins alg PS256).
    let mut c = claims();
    c["jti"] = json!(random_id());
    let pinned = sign_header(
        &keys().rs,
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "ps-1"}),
        &c,
    );
    // The kid is known, so this is not a rotation: no refetch; that key may not verify RS256.
    let d = assert_invalid_token(h.decide(&balances_mtls(&pinned)), "key_unusable");
    assert_eq!(d.refetch_issuer, None);
}

/// RFC 8725 §3.10, FAPI 2.0 §5.4: a token never brings its own key or key URL.
#[test]
fn key_in_header_is_refused() {
    let mut h = Harness::new();
    let es = &keys().es;
    let extras = [
        ("jwk", es.public_jwk_bare()),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIUAAAA"])),
    ];
    for (name, value) in extras {
        let mut header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1"});
        header[name] = value;
        let token = sign_header(es, header, &claims());
        let d = assert_invalid_token(h.decide(&balances_mtls(&token)), "key_in_header");
        assert!(
            d.www_authenticate[0].contains(&format!("must not carry {name}")),
            "{:?}",
            d.www_authenticate
        );
    }
}

/// RFC 7515 §4.1.11: this verifier understands no extension, so any `crit` is refused.
#[test]
fn crit_header_is_refused() {
    let mut h = Harness::new();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "es-1", "crit": ["exp"], "exp": NOW + 10});
    let token = sign_header(&keys().es, header, &claims());
    assert_invalid_token(h.decide(&balances_mtls(&token)), "unknown_critical_header");
}

/// RFC 8725 §3.11, RFC 9068 §4: a DPoP proof (or any other typed JWT) cannot pass as an access token.
#[test]
fn typ_dpop_jwt_is_refused_as_access_token() {
    let mut h = Harness::new();
    for typ in ["dpop+jwt", "id_token+jwt", "secevent+jwt"] {
        let token = keys().es.sign_jwt(Some(typ), &claims()).unwrap();
        assert_invalid_token(h.decide(&balances_mtls(&token)), "typ_not_allowed");
    }
    // A real proof presented as an access token is refused too (it carries its key in the header).
    let p = proof(&keys().dpop, "GET", "/accounts/1/balances", "x");
    let d = denied(h.decide(&balances_mtls(&p)));
    assert_eq!(d.status, 401);
    assert_eq!(d.error, Some("invalid_token"));
}

/// RFC 9068 §4 with `require_typ`: `at+jwt` (or `application/at+jwt`) is needed; absent or `JWT` is not.
#[test]
fn typ_required_and_missing_is_refused() {
    let mut v = policy_value();
    v["issuers"][0]["require_typ"] = json!(true);
    let mut h = Harness::with_policy(v, None);
    let es = &keys().es;
    let missing = es.sign_jwt(None, &claims()).unwrap();
    assert_invalid_token(h.decide(&balances_mtls(&missing)), "typ_not_allowed");
    let jwt = es.sign_jwt(Some("JWT"), &claims()).unwrap();
    assert_invalid_token(h.decide(&balances_mtls(&jwt)), "typ_not_allowed");
    let at = es.sign_jwt(Some("at+jwt"), &claims()).unwrap();
    allowed(h.decide(&balances_mtls(&at)));
    let media = es.sign_jwt(Some("application/at+jwt"), &claims()).unwrap();
    allowed(h.decide(&balances_mtls(&media)));

    // Without require_typ, a missing typ is accepted.
    let mut h = Harness::new();
    let missing = es.sign_jwt(None, &claims()).unwrap();
    allowed(h.decide(&balances_mtls(&missing)));
}

// ============================================================================================
// Claims (RFC 7519 §4.1, RFC 9068 §2.2, FAPI 2.0 §5.3.2.1)
// ============================================================================================

/// RFC 7519 §4.1.4 with 60 s of leeway: refused on or after exp + 60, accepted before.
#[test]
fn expired_token_is_refused_and_leeway_is_honoured() {
    let mut h = Harness::new();
    let expired = sign(&keys().es, &with(claims(), json!({"exp": NOW - 60})));
    let d = assert_invalid_token(h.decide(&balances_mtls(&expired)), "token_expired");
    assert!(d.www_authenticate[0].contains("error_description=\"the token has expired\""));
    let long_expired = sign(
        &keys().es,
        &with(claims(), json!({"iat": NOW - 600, "exp": NOW - 300})),
    );
    assert_invalid_token(h.decide(&balances_mtls(&long_expired)), "token_expired");
    let within = sign(
        &keys().es,
        &with(claims(), json!({"iat": NOW - 100, "exp": NOW - 59})),
    );
    allowed(h.decide(&balances_mtls(&within)));
}

/// RFC 7519 §4.1.5: not before `nbf` (10 s of future tolerance).
#[test]
fn not_yet_valid_token_is_refused() {
    let mut h = Harness::new();
    let early = sign(&keys().es, &with(claims(), json!({"nbf": NOW + 11})));
    assert_invalid_token(h.decide(&balances_mtls(&early)), "token_not_yet_valid");
    let tolerated = sign(&keys().es, &with(claims(), json!({"nbf": NOW + 10})));
    allowed(h.decide(&balances_mtls(&tolerated)));
}

/// FAPI 2.0 §5.3.2.1: `iat` up to 10 s in the future is tolerated, beyond is refused.
#[test]
fn iat_in_the_future_beyond_10s_is_refused() {
    let mut h = Harness::new();
    let ahead = sign(&keys().es, &with(claims(), json!({"iat": NOW + 11})));
    assert_invalid_token(h.decide(&balances_mtls(&ahead)), "token_issued_in_future");
    let tolerated = sign(&keys().es, &with(claims(), json!({"iat": NOW + 10})));
    allowed(h.decide(&balances_mtls(&tolerated)));
}

/// The issuer's `max_lifetime` (3600 s here) bounds `exp - iat`.
#[test]
fn max_lifetime_exceeded_is_refused() {
    let mut h = Harness::new();
    let long = sign(
        &keys().es,
        &with(claims(), json!({"iat": NOW - 10, "exp": NOW + 3591})),
    );
    assert_invalid_token(h.decide(&balances_mtls(&long)), "token_lifetime_too_long");
    let max = sign(
        &keys().es,
        &with(claims(), json!({"iat": NOW - 10, "exp": NOW + 3590})),
    );
    allowed(h.decide(&balances_mtls(&max)));
}

/// An `iss` no policy issuer names is refused (and its keys are never looked at).
#[test]
fn unknown_issuer_is_refused() {
    let mut h = Harness::new();
    for iss in [
        "https://evil.example",
        "https://as.bank.example/",
        "HTTPS://AS.BANK.EXAMPLE",
    ] {
        let token = sign(&keys().es, &with(claims(), json!({"iss": iss})));
        assert_invalid_token(h.decide(&balances_mtls(&token)), "unknown_issuer");
    }
}

/// RFC 9068 §4: the token must name this resource server in `aud`; an array naming it is fine.
#[test]
fn wrong_audience_is_refused_and_audience_array_accepted() {
    let mut h = Harness::new();
    let other = sign(
        &keys().es,
        &with(claims(), json!({"aud": "https://other.bank.example"})),
    );
    assert_invalid_token(h.decide(&balances_mtls(&other)), "audience_mismatch");
    let others = sign(
        &keys().es,
        &with(
            claims(),
            json!({"aud": ["https://a.example", "https://b.example"]}),
        ),
    );
    assert_invalid_token(h.decide(&balances_mtls(&others)), "audience_mismatch");
    let array = sign(
        &keys().es,
        &with(claims(), json!({"aud": ["https://other.example", AUD]})),
    );
    allowed(h.decide(&balances_mtls(&array)));
}

/// RFC 9068 §2.2: sub, client_id, jti and iat are required (as are iss, aud and exp, always).
#[test]
fn missing_required_claims_are_refused() {
    let mut h = Harness::new();
    for claim in ["sub", "client_id", "jti", "iat", "exp", "aud"] {
        let token = sign(&keys().es, &without(claims(), &[claim]));
        let d = assert_invalid_token(h.decide(&balances_mtls(&token)), "claim_missing");
        assert!(
            d.www_authenticate[0].contains(&format!("the token has no {claim} claim")),
            "{claim}: {:?}",
            d.www_authenticate
        );
    }
}

/// RFC 7519 §2 NumericDate and RFC 9068 §2.2.3 scope: a claim of the wrong type is refused, not ignored.
#[test]
fn malformed_claims_are_refused() {
    let mut h = Harness::new();
    let cases = [
        ("exp", json!(format!("{}", NOW + 100))),
        ("scope", json!(42)),
        ("iat", json!("yesterday")),
        ("sub", json!(7)),
        ("cnf", json!("x5t")),
        ("aud", json!([AUD, 1])),
    ];
    for (claim, value) in cases {
        let mut c = claims();
        c[claim] = value;
        let token = sign(&keys().es, &c);
        let d = assert_invalid_token(h.decide(&balances_mtls(&token)), "claim_malformed");
        assert!(
            d.www_authenticate[0].contains(&format!("the token claim {claim} is malformed")),
            "{claim}: {:?}",
            d.www_authenticate
        );
    }
}

// ============================================================================================
// Keys and signatures (selection rule in fapi_core::jwks)
// ============================================================================================

/// An unknown `kid` asks the host to refetch the issuer's key set (rotation).
#[test]
fn unknown_kid_is_refused_with_refetch_hint() {
    let mut h = Harness::new();
    let key = SigningKey::generate(fapi_core::alg::Algorithm::ES256, Some("es-2".into())).unwrap();
    let token = sign(&key, &claims());
    let d = assert_invalid_token(h.decide(&balances_mtls(&token)), "unknown_kid");
    assert_eq!(d.refetch_issuer.as_deref(), Some(ISS));
    // Other denials do not ask for a refetch.
    let bad = sign(&keys().es_impostor, &claims());
    let d = assert_invalid_token(h.decide(&balances_mtls(&bad)), "signature_invalid");
    assert_eq!(d.refetch_issuer, None);
}

/// Two suitable keys sharing the token's `kid`: the set is ambiguous and nothing is tried.
#[test]
fn two_keys_with_same_kid_is_ambiguous() {
    let a = SigningKey::generate(fapi_core::alg::Algorithm::ES256, Some("dup".into())).unwrap();
    let b = SigningKey::generate(fapi_core::alg::Algorithm::ES256, Some("dup".into())).unwrap();
    let mut v = policy_value();
    v["issuers"][0]["jwks"]["keys"] = json!([a.public_jwk(), b.public_jwk()]);
    let mut h = Harness::with_policy(v, None);
    for key in [&a, &b] {
        let token = sign(key, &claims());
        assert_invalid_token(h.decide(&balances_mtls(&token)), "ambiguous_key");
        // Without a kid, two candidates are just as ambiguous.
        let token = sign_header(key, json!({"alg": "ES256", "typ": "at+jwt"}), &claims());
        assert_invalid_token(h.decide(&balances_mtls(&token)), "ambiguous_key");
    }
}

/// Without a `kid`, a token verifies when exactly one key suits its algorithm.
#[test]
fn no_kid_with_one_key_is_accepted() {
    let mut h = Harness::new();
    for key in [&keys().es, &keys().ps, &keys().ed] {
        let token = sign_header(
            key,
            json!({"alg": key.alg().as_str(), "typ": "at+jwt"}),
            &claims(),
        );
        let a = allowed(h.decide(&balances_mtls(&token)));
        assert_eq!(a.rule, "balances");
    }
}

/// A payload changed after signing fails verification.
#[test]
fn tampered_payload_is_signature_invalid() {
    let mut h = Harness::new();
    for key in [&keys().es, &keys().ps, &keys().ed] {
        let token = sign(key, &with(claims(), json!({"scope": "accounts"})));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64::encode(with(claims(), json!({"scope": "accounts payments admin"})).to_string());
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_invalid_token(h.decide(&balances_mtls(&tampered)), "signature_invalid");
        // A flipped signature byte too.
        let mut sig = b64::decode(parts[2]).unwrap();
        sig[5] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64::encode(sig));
        assert_invalid_token(h.decide(&balances_mtls(&flipped)), "signature_invalid");
    }
}

/// A key that claims the issuer key's `kid` does not make its signatures valid.
#[test]
fn signature_from_another_key_with_same_kid_is_invalid() {
    let mut h = Harness::new();
    assert_eq!(keys().es_impostor.kid(), keys().es.kid());
    let token = sign(&keys().es_impostor, &claims());
    assert_invalid_token(h.decide(&balances_mtls(&token)), "signature_invalid");
}

// ============================================================================================
// mTLS sender constraint (RFC 8705 §3)
// ============================================================================================

#[test]
fn mtls_token_bound_to_another_certificate_is_binding_mismatch() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let facts = cert(bearer(get("/accounts/1/balances"), &token), CERT_B);
    let d = assert_invalid_token(h.decide(&facts), "binding_mismatch");
    assert!(d.www_authenticate[0].contains("bound to another client certificate"));
    // Through the hex digest form, the same.
    let mut facts = bearer(get("/accounts/1/balances"), &token);
    facts.client_cert = Some(ClientCert::Digest(envoy_digest(CERT_B)));
    assert_invalid_token(h.decide(&facts), "binding_mismatch");
    // A bound token on a bearer-allowed route is still checked.
    let facts = cert(bearer(get("/products/1"), &token), CERT_B);
    assert_invalid_token(h.decide(&facts), "binding_mismatch");
}

#[test]
fn mtls_bound_token_without_certificate_is_certificate_missing() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    assert_invalid_token(
        h.decide(&bearer(get("/accounts/1/balances"), &token)),
        "certificate_missing",
    );
    // An unreadable digest counts as no certificate.
    let mut facts = bearer(get("/accounts/1/balances"), &token);
    facts.client_cert = Some(ClientCert::Digest("not-a-digest".into()));
    assert_invalid_token(h.decide(&facts), "certificate_missing");
}

#[test]
fn mtls_bound_token_on_dpop_only_route_is_binding_not_allowed() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let facts = cert(bearer(post("/payment-consents"), &token), CERT_A);
    let d = assert_deny(
        h.decide(&facts),
        401,
        Some("invalid_token"),
        "binding_not_allowed",
    );
    assert_eq!(d.rule.as_deref(), Some("payment-consents"));
}

#[test]
fn unbound_token_where_bearer_not_allowed_is_bearer_not_allowed() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &bearer_claims());
    let d = assert_invalid_token(
        h.decide(&bearer(get("/accounts/1/balances"), &token)),
        "bearer_not_allowed",
    );
    assert!(d.www_authenticate[0].contains("requires a sender-constrained token"));
    let facts = cert(bearer(get("/accounts/1/balances"), &token), CERT_A);
    assert_invalid_token(h.decide(&facts), "bearer_not_allowed");
}

// ============================================================================================
// DPoP (RFC 9449)
// ============================================================================================

const BAL: &str = "/accounts/1/balances";

fn dpop_token() -> String {
    sign(&keys().es, &dpop_claims(&keys().dpop))
}

/// RFC 9449 §7.1: a DPoP-bound token is never accepted under the Bearer scheme.
#[test]
fn dpop_bound_token_sent_as_bearer_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let d = assert_deny(
        h.decide(&bearer(get(BAL), &token)),
        401,
        Some("invalid_token"),
        "dpop_token_as_bearer",
    );
    assert!(
        d.www_authenticate[0].starts_with("DPoP error=\"invalid_token\""),
        "{:?}",
        d.www_authenticate
    );
    assert!(d.www_authenticate[0].contains("algs=\"ES256 PS256 EdDSA\""));
}

/// A downgrade: Bearer scheme forced while a valid proof rides along, on a bearer-allowed route.
#[test]
fn dpop_bound_token_with_forced_bearer_scheme_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    for path in [BAL, "/products/1"] {
        let mut facts = bearer(get(path), &token);
        facts.dpop = vec![proof(&keys().dpop, "GET", path, &token)];
        assert_deny(
            h.decide(&facts),
            401,
            Some("invalid_token"),
            "dpop_token_as_bearer",
        );
    }
}

#[test]
fn dpop_proof_missing_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[])), "dpop_proof_missing");
}

/// RFC 9449 §4.3 step 1: exactly one DPoP header.
#[test]
fn dpop_two_headers_are_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let p1 = proof(&keys().dpop, "GET", BAL, &token);
    let p2 = proof(&keys().dpop, "GET", BAL, &token);
    assert_bad_proof(
        h.decide(&dpop(get(BAL), &token, &[&p1, &p2])),
        "dpop_multiple_headers",
    );
}

/// RFC 9449 §4.3 step 2.
#[test]
fn dpop_malformed_proof_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    for bad in ["not-a-jwt", "a.b", "e30.e30.e30.e30", "!!.??.##", ""] {
        assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[bad])), "dpop_malformed");
    }
}

/// RFC 9449 §4.3 step 4: `typ` must be `dpop+jwt`.
#[test]
fn dpop_missing_or_wrong_typ_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    let mut header = proof_header(k);
    header.as_object_mut().unwrap().remove("typ");
    let p = sign_header(k, header, &proof_claims("GET", BAL, &token));
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_claim_missing");
    for typ in ["jwt", "at+jwt", "JWT"] {
        let header = with(proof_header(k), json!({"typ": typ}));
        let p = sign_header(k, header, &proof_claims("GET", BAL, &token));
        assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_typ");
    }
    // Media types are case-insensitive (RFC 7515 §4.1.9): DPOP+JWT is the same type.
    let header = with(proof_header(k), json!({"typ": "DPOP+JWT"}));
    let p = sign_header(k, header, &proof_claims("GET", BAL, &token));
    allowed(h.decide(&dpop(get(BAL), &token, &[&p])));
}

/// RFC 9449 §4.3 step 5: an asymmetric algorithm from the allowed list (never none or HMAC; RS256
/// only if the rule lists it).
#[test]
fn dpop_forbidden_algorithms_are_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    let claims = proof_claims("GET", BAL, &token);

    let none = format!(
        "{}.",
        signing_input(&with(proof_header(k), json!({"alg": "none"})), &claims)
    );
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&none])), "dpop_alg");

    let input = signing_input(&with(proof_header(k), json!({"alg": "HS256"})), &claims);
    let secret = k.public_jwk_bare().to_string();
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
        input.as_bytes(),
    );
    let hs = format!("{input}.{}", b64::encode(tag.as_ref()));
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&hs])), "dpop_alg");

    // A genuine RS256 proof, bound to an RSA key the token names.
    let rs = &keys().rs;
    let rs_token = sign(&keys().es, &dpop_claims(rs));
    let p = proof(rs, "GET", BAL, &rs_token);
    assert_bad_proof(h.decide(&dpop(get(BAL), &rs_token, &[&p])), "dpop_alg");
    // ... which a rule listing RS256 admits.
    let mut v = policy_value();
    v["rules"][1]["require"]["dpop"] = json!({"algorithms": ["ES256", "RS256"]});
    let mut h2 = Harness::with_policy(v, None);
    let p = proof(rs, "GET", BAL, &rs_token);
    allowed(h2.decide(&dpop(get(BAL), &rs_token, &[&p])));
}

/// RFC 9449 §4.3 step 7: the `jwk` header is required and must be public.
#[test]
fn dpop_missing_or_private_jwk_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    let mut header = proof_header(k);
    header.as_object_mut().unwrap().remove("jwk");
    let p = sign_header(k, header, &proof_claims("GET", BAL, &token));
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_claim_missing");

    let mut header = proof_header(k);
    header["jwk"]["d"] = k.private_jwk()["d"].clone();
    let p = sign_header(k, header, &proof_claims("GET", BAL, &token));
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_private_jwk");

    // A jwk that cannot verify the algorithm (Ed25519 key, ES256 alg).
    let header = with(proof_header(k), json!({"jwk": keys().dpop_ed.public_jwk_bare()}));
    let p = sign_header(k, header, &proof_claims("GET", BAL, &token));
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_jwk");
}

/// RFC 9449 §4.3 step 6: the proof is signed by the key in its own header.
#[test]
fn dpop_signature_by_another_key_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let p = sign_header(
        &keys().dpop_other,
        proof_header(&keys().dpop),
        &proof_claims("GET", BAL, &token),
    );
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_signature");
}

/// RFC 9449 §4.3 step 8.
#[test]
fn dpop_wrong_htm_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    for m in ["POST", "get"] {
        let p = proof(&keys().dpop, m, BAL, &token);
        assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_htm");
    }
}

/// RFC 9449 §4.3 step 9: `htu` is compared after RFC 3986 normalization, without query and fragment.
#[test]
fn dpop_wrong_htu_is_refused_and_normalized_htu_accepted() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    for wrong in [
        "https://api.bank.example/accounts/2/balances",
        "https://evil.example/accounts/1/balances",
        "http://api.bank.example/accounts/1/balances",
        "https://api.bank.example:8443/accounts/1/balances",
        "/accounts/1/balances",
    ] {
        let p = k
            .dpop_proof("GET", wrong, Some(&token), NOW, &random_id(), None)
            .unwrap();
        assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_htu");
    }
    for fine in [
        "https://api.bank.example/accounts/1/balances?from=2024-01-01",
        "https://api.bank.example/accounts/1/balances#frag",
        "https://API.Bank.EXAMPLE/accounts/1/balances",
        "https://api.bank.example:443/accounts/1/balances",
        "HTTPS://api.bank.example/accounts/1/./balances",
    ] {
        let p = k
            .dpop_proof("GET", fine, Some(&token), NOW, &random_id(), None)
            .unwrap();
        let a = allowed(h.decide(&dpop(get(BAL), &token, &[&p])));
        assert_eq!(a.binding, BindingKind::Dpop, "{fine}");
    }
    // The request's own query does not matter either.
    let p = proof(k, "GET", BAL, &token);
    allowed(h.decide(&dpop(get("/accounts/1/balances?limit=10"), &token, &[&p])));
}

/// RFC 9449 §4.3 step 11: `iat` within the window (60 s back, 10 s ahead).
#[test]
fn dpop_iat_outside_window_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    for iat in [NOW - 3600, NOW + 3600, NOW - 61, NOW + 11] {
        let p = k
            .dpop_proof("GET", &htu(BAL), Some(&token), iat, &random_id(), None)
            .unwrap();
        assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_iat");
    }
    for iat in [NOW - 60, NOW + 10] {
        let p = k
            .dpop_proof("GET", &htu(BAL), Some(&token), iat, &random_id(), None)
            .unwrap();
        allowed(h.decide(&dpop(get(BAL), &token, &[&p])));
    }
}

#[test]
fn dpop_missing_jti_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    let c = without(proof_claims("GET", BAL, &token), &["jti"]);
    let p = sign_header(k, proof_header(k), &c);
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_claim_missing");
    let c = with(proof_claims("GET", BAL, &token), json!({"jti": ""}));
    let p = sign_header(k, proof_header(k), &c);
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_claim_missing");
}

/// RFC 9449 §4.3 step 12, §7.1: the proof names the token by its hash.
#[test]
fn dpop_missing_or_wrong_ath_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let k = &keys().dpop;
    let p = k
        .dpop_proof("GET", &htu(BAL), None, NOW, &random_id(), None)
        .unwrap();
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_claim_missing");
    let other_token = dpop_token();
    let p = proof(k, "GET", BAL, &other_token);
    assert_bad_proof(h.decide(&dpop(get(BAL), &token, &[&p])), "dpop_ath");
}

/// RFC 9449 §7.1: `cnf.jkt` must be the thumbprint of the proof's key.
#[test]
fn dpop_proof_key_different_from_cnf_jkt_is_key_mismatch() {
    let mut h = Harness::new();
    let token = dpop_token();
    let p = proof(&keys().dpop_other, "GET", BAL, &token);
    assert_deny(
        h.decide(&dpop(get(BAL), &token, &[&p])),
        401,
        Some("invalid_token"),
        "dpop_key_mismatch",
    );
    // An unbound token presented under DPoP has no key to match.
    let unbound = sign(&keys().es, &bearer_claims());
    let p = proof(&keys().dpop, "GET", "/products/1", &unbound);
    assert_deny(
        h.decide(&dpop(get("/products/1"), &unbound, &[&p])),
        401,
        Some("invalid_token"),
        "dpop_key_mismatch",
    );
}

/// RFC 9449 §11.1: a proof is used once.
#[test]
fn dpop_replayed_proof_is_refused() {
    let mut h = Harness::new();
    let token = dpop_token();
    let p = proof(&keys().dpop, "GET", BAL, &token);
    let facts = dpop(get(BAL), &token, &[&p]);
    allowed(h.decide(&facts));
    assert_bad_proof(h.decide(&facts), "dpop_replay");
    // Still refused later within the window.
    h.now = NOW + 30;
    assert_bad_proof(h.decide(&facts), "dpop_replay");
    // A fresh proof is fine.
    h.now = NOW;
    let p2 = proof(&keys().dpop, "GET", BAL, &token);
    allowed(h.decide(&dpop(get(BAL), &token, &[&p2])));
}

/// RFC 9449 §9: a rule that requires nonces answers a proof without one with `use_dpop_nonce` and a
/// fresh `DPoP-Nonce`; a proof carrying it is admitted; a forged nonce is answered with a fresh one.
#[test]
fn dpop_nonce_required_use_dpop_nonce_then_admitted() {
    let mut h = Harness::with_policy(policy_value(), Some(&[9u8; 32]));
    let token = dpop_token();
    let k = &keys().dpop;
    let path = "/fx-quotes/eur-gbp";
    let p = proof(k, "GET", path, &token);
    let d = assert_deny(
        h.decide(&dpop(get(path), &token, &[&p])),
        401,
        Some("use_dpop_nonce"),
        "dpop_nonce_required",
    );
    assert!(
        d.www_authenticate[0].starts_with("DPoP error=\"use_dpop_nonce\""),
        "{:?}",
        d.www_authenticate
    );
    let nonce = d.dpop_nonce.clone().expect("a DPoP-Nonce to retry with");

    let p = k
        .dpop_proof("GET", &htu(path), Some(&token), NOW, &random_id(), Some(&nonce))
        .unwrap();
    let a = allowed(h.decide(&dpop(get(path), &token, &[&p])));
    assert_eq!(a.rule, "fx-quotes");

    // A nonce this server never issued.
    let forged = b64::encode([0u8; 24]);
    let p = k
        .dpop_proof("GET", &htu(path), Some(&token), NOW, &random_id(), Some(&forged))
        .unwrap();
    let d = assert_deny(
        h.decide(&dpop(get(path), &token, &[&p])),
        401,
        Some("use_dpop_nonce"),
        "dpop_nonce_required",
    );
    assert!(d.dpop_nonce.is_some());
}

/// `Guard::new(.., None)` issues no nonces: rules with `require_nonce` must then refuse every proof
/// (fail closed) instead of admitting proofs that carry no nonce at all.
#[test]
fn dpop_nonce_required_without_nonce_secret_fails_closed() {
    let mut h = Harness::with_policy(policy_value(), None);
    let token = dpop_token();
    let k = &keys().dpop;
    let path = "/fx-quotes/eur-gbp";
    let p = proof(k, "GET", path, &token);
    let d = assert_bad_proof(h.decide(&dpop(get(path), &token, &[&p])), "dpop_nonce_invalid");
    assert_eq!(d.dpop_nonce, None, "no nonce key, no nonce to offer");
    let p = k
        .dpop_proof(
            "GET",
            &htu(path),
            Some(&token),
            NOW,
            &random_id(),
            Some("anything"),
        )
        .unwrap();
    let d = assert_bad_proof(h.decide(&dpop(get(path), &token, &[&p])), "dpop_nonce_invalid");
    assert_eq!(d.dpop_nonce, None);
    // Routes that do not require nonces are unaffected.
    let p = proof(k, "GET", BAL, &token);
    allowed(h.decide(&dpop(get(BAL), &token, &[&p])));
}

// ============================================================================================
// Request shape (RFC 6750 §2, §3.1; FAPI 2.0 §5.3.4)
// ============================================================================================

#[test]
fn token_in_query_is_invalid_request() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let d = assert_deny(
        h.decide(&get(&format!("/accounts/1/balances?access_token={token}"))),
        400,
        Some("invalid_request"),
        "token_in_query",
    );
    assert!(d.www_authenticate[0].starts_with("Bearer error=\"invalid_request\""));
    // Refused even with a valid header token.
    let facts = cert(
        bearer(
            get(&format!("/accounts/1/balances?x=1&access_token={token}")),
            &token,
        ),
        CERT_A,
    );
    assert_deny(h.decide(&facts), 400, Some("invalid_request"), "token_in_query");
}

#[test]
fn two_authorization_headers_are_invalid_request() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let mut facts = balances_mtls(&token);
    facts.authorization.push(format!("Bearer {token}"));
    assert_deny(
        h.decide(&facts),
        400,
        Some("invalid_request"),
        "multiple_authorization_headers",
    );
}

#[test]
fn malformed_authorization_header_is_invalid_request() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    for value in [
        format!("Basic {token}"),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {token} extra"),
        format!("Bearer{token}"),
        "Bearer tok\"en".to_string(),
    ] {
        let mut facts = balances_mtls(&token);
        facts.authorization = vec![value.clone()];
        assert_deny(
            h.decide(&facts),
            400,
            Some("invalid_request"),
            "malformed_authorization",
        );
    }
}

/// RFC 6750 §3.1: no error code when the request has no credentials; the challenges name the schemes
/// the route accepts (RFC 9449 §7.1: `DPoP algs=...`).
#[test]
fn no_token_challenges_per_route() {
    let mut h = Harness::new();
    let d = assert_deny(h.decide(&get(BAL)), 401, None, "missing_token");
    assert_eq!(
        d.www_authenticate,
        vec![
            "Bearer".to_string(),
            "DPoP algs=\"ES256 PS256 EdDSA\"".to_string()
        ]
    );
    let d = assert_deny(h.decide(&post("/transfers")), 401, None, "missing_token");
    assert_eq!(d.www_authenticate, vec!["Bearer".to_string()]);
    let d = assert_deny(h.decide(&post("/payment-consents")), 401, None, "missing_token");
    assert_eq!(
        d.www_authenticate,
        vec!["DPoP algs=\"ES256 PS256 EdDSA\"".to_string()]
    );
    let d = assert_deny(h.decide(&get("/products")), 401, None, "missing_token");
    assert_eq!(
        d.www_authenticate,
        vec![
            "Bearer".to_string(),
            "DPoP algs=\"ES256 PS256 EdDSA\"".to_string()
        ]
    );
}

// ============================================================================================
// Policy requirements
// ============================================================================================

fn transfer_claims() -> Value {
    with(claims(), json!({"acr": STRONG_ACR, "auth_time": NOW - 60}))
}

fn transfer(token: &str) -> fapi_core::RequestFacts {
    cert(bearer(post("/transfers"), token), CERT_A)
}

#[test]
fn admitted_transfer_with_strong_recent_authentication() {
    let mut h = Harness::new();
    let a = allowed(h.decide(&transfer(&sign(&keys().ps, &transfer_claims()))));
    assert_eq!(a.rule, "transfers");
    assert_eq!(a.binding, BindingKind::Mtls);
}

/// RFC 6750 §3.1: 403 `insufficient_scope` naming the scope needed.
#[test]
fn missing_scope_is_insufficient_scope() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &with(claims(), json!({"scope": "payments openid"})));
    let d = assert_deny(
        h.decide(&balances_mtls(&token)),
        403,
        Some("insufficient_scope"),
        "insufficient_scope",
    );
    assert!(d.www_authenticate[0].starts_with("Bearer error=\"insufficient_scope\""));
    assert!(
        d.www_authenticate[0].ends_with("scope=\"accounts\""),
        "{:?}",
        d.www_authenticate
    );
    // A prefix of the scope is not the scope.
    let token = sign(&keys().es, &with(claims(), json!({"scope": "accounts:read"})));
    assert_deny(
        h.decide(&balances_mtls(&token)),
        403,
        Some("insufficient_scope"),
        "insufficient_scope",
    );
    // No scope at all.
    let token = sign(&keys().es, &without(claims(), &["scope"]));
    assert_deny(
        h.decide(&balances_mtls(&token)),
        403,
        Some("insufficient_scope"),
        "insufficient_scope",
    );
    // Scope as an array is read too.
    let token = sign(
        &keys().es,
        &with(claims(), json!({"scope": ["openid", "accounts"]})),
    );
    allowed(h.decide(&balances_mtls(&token)));
}

#[test]
fn any_of_scopes() {
    let mut h = Harness::new();
    for scope in ["products", "accounts", "openid products"] {
        let token = sign(&keys().es, &with(bearer_claims(), json!({"scope": scope})));
        allowed(h.decide(&bearer(get("/products/1"), &token)));
    }
    let token = sign(&keys().es, &with(bearer_claims(), json!({"scope": "payments"})));
    let d = assert_deny(
        h.decide(&bearer(get("/products/1"), &token)),
        403,
        Some("insufficient_scope"),
        "insufficient_scope",
    );
    assert!(d.www_authenticate[0].contains("scope=\"products accounts\""));
}

/// RFC 9470 §3: a weaker `acr` is answered with `insufficient_user_authentication` and `acr_values`.
#[test]
fn acr_too_weak_is_insufficient_user_authentication() {
    let mut h = Harness::new();
    for c in [
        with(transfer_claims(), json!({"acr": "urn:bank:acr:basic"})),
        without(transfer_claims(), &["acr"]),
    ] {
        let d = assert_deny(
            h.decide(&transfer(&sign(&keys().es, &c))),
            401,
            Some("insufficient_user_authentication"),
            "acr_not_accepted",
        );
        assert!(d.www_authenticate[0].starts_with("Bearer error=\"insufficient_user_authentication\""));
        assert!(
            d.www_authenticate[0].contains(&format!("acr_values=\"{STRONG_ACR}\"")),
            "{:?}",
            d.www_authenticate
        );
    }
}

/// RFC 9470 §3: an authentication older than `max_age` (or of unknown age) asks for a new one.
#[test]
fn auth_time_too_old_or_missing_is_insufficient_user_authentication() {
    let mut h = Harness::new();
    for c in [
        with(transfer_claims(), json!({"auth_time": NOW - 301})),
        without(transfer_claims(), &["auth_time"]),
    ] {
        let d = assert_deny(
            h.decide(&transfer(&sign(&keys().es, &c))),
            401,
            Some("insufficient_user_authentication"),
            "auth_time_too_old",
        );
        assert!(
            d.www_authenticate[0].contains("max_age=300"),
            "{:?}",
            d.www_authenticate
        );
    }
    let c = with(transfer_claims(), json!({"auth_time": NOW - 300}));
    allowed(h.decide(&transfer(&sign(&keys().es, &c))));
}

#[test]
fn client_not_allowed_is_access_denied() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let d = assert_deny(
        h.decide(&cert(bearer(get("/partner/reports"), &token), CERT_A)),
        403,
        Some("access_denied"),
        "client_not_allowed",
    );
    assert_eq!(d.client_id.as_deref(), Some("tpp-1"));
    let token = sign(&keys().es, &with(claims(), json!({"client_id": "partner-app"})));
    allowed(h.decide(&cert(bearer(get("/partner/reports"), &token), CERT_A)));
}

#[test]
fn claim_condition_failed_is_access_denied() {
    let mut h = Harness::new();
    for c in [
        with(claims(), json!({"customer_type": "retail"})),
        claims(),
        with(claims(), json!({"customer_type": ["business"]})),
    ] {
        let token = sign(&keys().es, &c);
        let d = assert_deny(
            h.decide(&cert(bearer(get("/business/invoices"), &token), CERT_A)),
            403,
            Some("access_denied"),
            "claim_condition_failed",
        );
        assert!(d.www_authenticate[0].contains("customer_type"));
    }
    let token = sign(&keys().es, &with(claims(), json!({"customer_type": "business"})));
    allowed(h.decide(&cert(bearer(get("/business/invoices"), &token), CERT_A)));
}

#[test]
fn no_matching_rule_is_access_denied() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    for facts in [
        cert(bearer(get("/admin"), &token), CERT_A),
        cert(bearer(get("/transfers"), &token), CERT_A),
        get("/healthz"),
    ] {
        let d = assert_deny(h.decide(&facts), 403, Some("access_denied"), "no_matching_rule");
        assert_eq!(d.rule, None);
    }
}

/// Dot segments and doubled slashes cannot steer a request to a weaker rule: the path is normalized
/// before matching, so `/accounts/1/../../transfers` is the transfers rule, not `/accounts/**`.
#[test]
fn path_normalization_matches_the_strict_rule() {
    let mut h = Harness::new();
    let weak = sign(&keys().es, &bearer_claims());
    for path in [
        "/accounts/1/../../transfers",
        "/accounts/%2e%2e/transfers",
        "//transfers",
    ] {
        let d = assert_invalid_token(h.decide(&bearer(post(path), &weak)), "bearer_not_allowed");
        assert_eq!(d.rule.as_deref(), Some("transfers"), "{path}");
    }
    // The same token is admitted on the weak rule for what really is under /accounts.
    let a = allowed(h.decide(&bearer(post("/accounts/1"), &weak)));
    assert_eq!(a.rule, "accounts-fallback");
    let a = allowed(h.decide(&transfer(&sign(&keys().es, &transfer_claims()))));
    assert_eq!(a.rule, "transfers");
    let mut facts = transfer(&sign(&keys().es, &transfer_claims()));
    facts.path = "/accounts/1/../../transfers".into();
    assert_eq!(allowed(h.decide(&facts)).rule, "transfers");
}

// ============================================================================================
// Revocation (FAPI 2.0 §5.3.4)
// ============================================================================================

#[test]
fn revoked_token_is_refused() {
    let mut h = Harness::new();
    let c = claims();
    let token = sign(&keys().es, &c);
    allowed(h.decide(&balances_mtls(&token)));
    h.revocations.revoke(ISS, c["jti"].as_str().unwrap(), NOW + 290);
    // Refused even though the token is in the verified-token cache.
    assert_invalid_token(h.decide(&balances_mtls(&token)), "token_revoked");
    // Another token of the same issuer is unaffected.
    allowed(h.decide(&balances_mtls(&sign(&keys().es, &claims()))));
}

#[test]
fn revocation_feed_not_current_is_unavailable() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let facts = cert(bearer(get("/statements/2024"), &token), CERT_A);
    allowed(h.decide(&facts));
    h.feed_current = false;
    let d = assert_deny(
        h.decide(&facts),
        503,
        Some("temporarily_unavailable"),
        "revocation_status_unknown",
    );
    assert!(d.www_authenticate[0].contains("error=\"temporarily_unavailable\""));
    // Routes that do not use the feed carry on.
    allowed(h.decide(&balances_mtls(&token)));
}

#[test]
fn introspection_routes_say_so_in_the_allow() {
    // The host (the plugin) asks the authorization server before forwarding only when told to.
    let mut value = policy_value();
    value["settings"]["introspection"] = json!({"cluster": "as_cluster", "path": "/introspect"});
    value["rules"].as_array_mut().expect("rules").insert(
        0,
        json!({"name": "high-value", "match": {"prefix": "/high-value"},
                          "require": {"scopes": ["payments"], "revocation": "introspection"}}),
    );
    let mut h = Harness::with_policy(value, None);
    let token = sign(&keys().es, &claims());
    let a = allowed(h.decide(&cert(bearer(get("/high-value/1"), &token), CERT_A)));
    assert_eq!(a.rule, "high-value");
    assert!(a.introspect);
    let a = allowed(h.decide(&balances_mtls(&token)));
    assert!(!a.introspect);
    assert!(!allowed(h.decide(&get("/health"))).introspect);
}

// ============================================================================================
// Cache and fail-closed key sources
// ============================================================================================

#[test]
fn second_decision_is_a_cache_hit_with_same_result() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let first = allowed(h.decide(&balances_mtls(&token)));
    assert_eq!((h.cache.hits, h.cache.misses, h.cache.len()), (0, 1, 1));
    assert!(!first.cache_hit);
    let second = allowed(h.decide(&balances_mtls(&token)));
    assert_eq!((h.cache.hits, h.cache.misses), (1, 1));
    assert!(
        second.cache_hit,
        "the second decision skipped the signature check"
    );
    assert_eq!(first.rule, second.rule);
    assert_eq!(first.binding, second.binding);
    assert_eq!(first.forward, second.forward);
    assert_eq!(first.claims, second.claims);
    // The cache never skips the sender constraint.
    let facts = cert(bearer(get(BAL), &token), CERT_B);
    assert_invalid_token(h.decide(&facts), "binding_mismatch");
    assert_eq!(h.cache.hits, 2);
}

#[test]
fn expired_cached_token_is_refused_after_exp_plus_leeway() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims()); // exp = NOW + 290, leeway 60
    allowed(h.decide(&balances_mtls(&token)));
    h.now = NOW + 290 + 59;
    allowed(h.decide(&balances_mtls(&token)));
    assert_eq!(h.cache.hits, 1);
    h.now = NOW + 290 + 60;
    assert_invalid_token(h.decide(&balances_mtls(&token)), "token_expired");
    assert_eq!(h.cache.hits, 2);
    assert!(h.cache.is_empty(), "an expired token leaves the cache");
}

struct NoKeys;

impl KeySource for NoKeys {
    fn keys(&self, _: &str) -> Option<&Jwks> {
        None
    }
}

/// Fail closed: no usable key set for the issuer is a 503, not an admission and not a 401.
#[test]
fn key_source_without_keys_is_jwks_unavailable() {
    let mut h = Harness::new();
    let token = sign(&keys().es, &claims());
    let d = assert_deny(
        h.decide_with_keys(&balances_mtls(&token), &NoKeys),
        503,
        Some("temporarily_unavailable"),
        "jwks_unavailable",
    );
    // The host may fetch the issuer's keys and decide again.
    assert_eq!(d.refetch_issuer.as_deref(), Some(ISS));
}

/// Counts the key-set look-ups a decision makes.
struct CountingKeys {
    policy: Policy,
    calls: Cell<usize>,
}

impl KeySource for CountingKeys {
    fn keys(&self, issuer: &str) -> Option<&Jwks> {
        self.calls.set(self.calls.get() + 1);
        self.policy.keys(issuer)
    }
}

/// Cheap refusals first: a forbidden algorithm, an unknown issuer, an expired token or a request no
/// rule admits never reach the key set; an unknown kid reaches key selection but no signature check
/// (its garbage signature is reported as unknown_kid, not signature_invalid).
#[test]
fn cheap_rejections_never_reach_signature_verification() {
    let mut h = Harness::new();
    let counting = CountingKeys {
        policy: h.guard.policy.clone(),
        calls: Cell::new(0),
    };
    let garbage = b64::encode([7u8; 64]);
    let forged = |header: Value, c: &Value| format!("{}.{garbage}", signing_input(&header, c));

    let cheap = [
        (
            "algorithm_not_allowed",
            forged(json!({"alg": "HS256", "kid": "es-1"}), &claims()),
        ),
        ("algorithm_not_allowed", forged(json!({"alg": "none"}), &claims())),
        (
            "algorithm_not_allowed",
            forged(json!({"alg": "RS256", "kid": "rs-1"}), &claims()),
        ),
        (
            "algorithm_not_allowed",
            forged(json!({"alg": "ES512", "kid": "es-1"}), &claims()),
        ),
        (
            "key_in_header",
            forged(json!({"alg": "ES256", "jku": "https://x.example"}), &claims()),
        ),
        (
            "unknown_issuer",
            forged(
                json!({"alg": "ES256", "kid": "es-1"}),
                &with(claims(), json!({"iss": "https://x.example"})),
            ),
        ),
        (
            "token_expired",
            forged(
                json!({"alg": "ES256", "kid": "es-1"}),
                &with(claims(), json!({"exp": NOW - 3600})),
            ),
        ),
        ("malformed_token", "a.b.c".to_string()),
    ];
    for (reason, token) in &cheap {
        assert_invalid_token(h.decide_with_keys(&balances_mtls(token), &counting), reason);
        assert_eq!(counting.calls.get(), 0, "{reason} looked at the key set");
    }
    let token = sign(&keys().es, &claims());
    assert_deny(
        h.decide_with_keys(&cert(bearer(get("/nowhere"), &token), CERT_A), &counting),
        403,
        Some("access_denied"),
        "no_matching_rule",
    );
    assert_eq!(counting.calls.get(), 0);

    // Unknown kid: the key set is consulted, the signature (garbage) is not.
    let unknown = forged(json!({"alg": "ES256", "kid": "es-9"}), &claims());
    assert_invalid_token(
        h.decide_with_keys(&balances_mtls(&unknown), &counting),
        "unknown_kid",
    );
    assert_eq!(counting.calls.get(), 1);
    // The counter does count: a known kid with a garbage signature is verified and fails.
    let known = forged(json!({"alg": "ES256", "kid": "es-1"}), &claims());
    assert_invalid_token(
        h.decide_with_keys(&balances_mtls(&known), &counting),
        "signature_invalid",
    );
    assert_eq!(counting.calls.get(), 2);
    // A good token is looked up once, then served from the cache without the key set.
    allowed(h.decide_with_keys(&balances_mtls(&token), &counting));
    allowed(h.decide_with_keys(&balances_mtls(&token), &counting));
    assert_eq!(counting.calls.get(), 3);
}
