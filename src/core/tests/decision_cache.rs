//! The decision cache (issue 11 item 4): which requests may be served a remembered allow, and until
//! when. Real signed tokens and real decisions by `Guard::decide`, a fixed clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use fapi_core::decision::Allow;
use fapi_core::decision_cache::{allow_valid_until, DecisionCache};
use fapi_core::extract::{ClientCert, RequestFacts};
use serde_json::{json, Value};

/// The feed's freshness limit the tests pass (far beyond the tokens unless a test says otherwise).
const FEED_UNTIL: Option<i64> = Some(NOW + 10_000);

/// Decides `facts` and remembers the allow, as the engine does.
fn decide_and_remember(
    h: &mut Harness,
    c: &mut DecisionCache,
    facts: &RequestFacts,
    feed: Option<i64>,
) -> Allow {
    let allow = allowed(h.decide(facts));
    c.remember(&h.guard.policy, facts, &allow, feed, h.now);
    allow
}

fn bearer_token() -> String {
    sign(&keys().es, &bearer_claims())
}

#[test]
fn a_hit_needs_the_same_token_method_authority_and_path() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(100, 7);
    let token = bearer_token();
    let facts = bearer(get("/products/1"), &token);
    let first = decide_and_remember(&mut h, &mut c, &facts, FEED_UNTIL);
    let hit = c.lookup(&facts, NOW).expect("the same request is a hit");
    assert_eq!(hit.rule, first.rule);
    assert_eq!(hit.forward, first.forward);

    // Another token (same claims but a new jti and signature), or the token altered by one byte.
    assert!(c
        .lookup(&bearer(get("/products/1"), &bearer_token()), NOW)
        .is_none());
    let mut altered = token.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    assert!(c.lookup(&bearer(get("/products/1"), &altered), NOW).is_none());
    // Another path, query, method or authority.
    assert!(c.lookup(&bearer(get("/products/2"), &token), NOW).is_none());
    assert!(c.lookup(&bearer(get("/products/1?x=1"), &token), NOW).is_none());
    assert!(c
        .lookup(&bearer(request("HEAD", "/products/1"), &token), NOW)
        .is_none());
    let mut other_host = facts.clone();
    other_host.authority = "other.bank.example".into();
    assert!(c.lookup(&other_host, NOW).is_none());
    // Two Authorization headers: never from the cache (the decision refuses them).
    let mut twice = facts.clone();
    twice.authorization.push(twice.authorization[0].clone());
    assert!(c.lookup(&twice, NOW).is_none());
    // Misses count the requests that could have been served (not the doubled header).
    assert_eq!((c.hits, c.misses), (1, 6));
}

#[test]
fn a_hit_needs_the_same_client_certificate() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(100, 7);
    let token = sign(&keys().es, &claims());
    // The certificate as Envoy reports it (hex digest) and as DER: the same thumbprint, a hit.
    let mut facts = bearer(get("/accounts/1/balances"), &token);
    facts.client_cert = Some(ClientCert::Digest(envoy_digest(CERT_A)));
    decide_and_remember(&mut h, &mut c, &facts, FEED_UNTIL);
    assert!(c.lookup(&facts, NOW).is_some());
    assert!(c.lookup(&balances_mtls(&token), NOW).is_some());
    // Another certificate, or none, on the same token: a miss (and the decision then refuses it).
    let other = cert(bearer(get("/accounts/1/balances"), &token), CERT_B);
    assert!(c.lookup(&other, NOW).is_none());
    assert!(!h.decide(&other).is_allow());
    let none = bearer(get("/accounts/1/balances"), &token);
    assert!(c.lookup(&none, NOW).is_none());
    assert!(!h.decide(&none).is_allow());
    // A digest that cannot be read is never a hit.
    let mut garbled = facts.clone();
    garbled.client_cert = Some(ClientCert::Digest("zz".into()));
    assert!(c.lookup(&garbled, NOW).is_none());
}

#[test]
fn dpop_requests_are_never_stored_nor_served() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(100, 7);
    let k = keys();
    let token = sign(&k.es, &dpop_claims(&k.dpop));
    let facts = dpop(
        get("/payment-consents/1"),
        &token,
        &[&proof(&k.dpop, "GET", "/payment-consents/1", &token)],
    );
    let allow = decide_and_remember(&mut h, &mut c, &facts, FEED_UNTIL);
    assert!(c.is_empty(), "a DPoP allow is not remembered");
    assert_eq!(
        allow_valid_until(&h.guard.policy, &facts, &allow, FEED_UNTIL),
        None
    );
    // Nor is any request carrying a DPoP header served, even one whose other facts match an entry.
    let bearer_token = bearer_token();
    let plain = bearer(get("/products/1"), &bearer_token);
    decide_and_remember(&mut h, &mut c, &plain, FEED_UNTIL);
    let mut with_proof = plain.clone();
    with_proof.dpop = vec![proof(&k.dpop, "GET", "/products/1", &bearer_token)];
    assert!(c.lookup(&plain, NOW).is_some());
    assert!(c.lookup(&with_proof, NOW).is_none());
}

/// A policy with an introspecting rule.
fn introspecting_policy() -> Value {
    let mut p = policy_value();
    p["settings"]["introspection"] = json!({"cluster": "as_cluster", "path": "/introspect"});
    let rules = p["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({"name": "loans", "match": {"prefix": "/loans"},
               "require": {"revocation": "introspection", "sender_constraint": "bearer-allowed"}}),
    );
    p
}

#[test]
fn rules_that_introspect_are_never_stored() {
    let mut h = Harness::with_policy(introspecting_policy(), None);
    let mut c = DecisionCache::new(100, 7);
    let rule = h.guard.policy.rules.iter().find(|r| r.name == "loans").unwrap();
    assert!(!rule.decision_cacheable());
    let products = h
        .guard
        .policy
        .rules
        .iter()
        .find(|r| r.name == "products")
        .unwrap();
    assert!(products.decision_cacheable());
    let health = h.guard.policy.rules.iter().find(|r| r.name == "health").unwrap();
    assert!(
        !health.decision_cacheable(),
        "anonymous rules have no token to key on"
    );

    let token = bearer_token();
    let facts = bearer(get("/loans/1"), &token);
    let allow = decide_and_remember(&mut h, &mut c, &facts, FEED_UNTIL);
    assert!(allow.introspect);
    assert!(c.is_empty());
    assert!(c.lookup(&facts, NOW).is_none());
}

#[test]
fn an_entry_ends_at_the_tokens_exp() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(100, 7);
    let token = sign(&keys().es, &with(bearer_claims(), json!({"exp": NOW + 30})));
    let facts = bearer(get("/products/1"), &token);
    let allow = decide_and_remember(&mut h, &mut c, &facts, FEED_UNTIL);
    assert_eq!(
        allow_valid_until(&h.guard.policy, &facts, &allow, FEED_UNTIL),
        Some(NOW + 30)
    );
    assert!(c.lookup(&facts, NOW + 29).is_some());
    assert!(
        c.lookup(&facts, NOW + 30).is_none(),
        "not on or after exp (RFC 7519 §4.1.4)"
    );
    // An allow already past its end is not stored.
    let mut late = DecisionCache::new(100, 7);
    late.remember(&h.guard.policy, &facts, &allow, FEED_UNTIL, NOW + 30);
    assert!(late.is_empty());
}

#[test]
fn an_entry_ends_when_the_authentication_gets_too_old() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(100, 7);
    // `transfers`: max_auth_age 300 (RFC 9470); the user authenticated 100 s ago.
    let claims = with(
        claims(),
        json!({"acr": STRONG_ACR, "auth_time": NOW - 100, "exp": NOW + 3000}),
    );
    let token = sign(&keys().es, &claims);
    let facts = cert(bearer(post("/transfers"), &token), CERT_A);
    decide_and_remember(&mut h, &mut c, &facts, FEED_UNTIL);
    assert!(c.lookup(&facts, NOW + 200).is_some());
    assert!(c.lookup(&facts, NOW + 201).is_none());
    // The decision agrees: at NOW + 201 the authentication is too old.
    h.now = NOW + 201;
    assert!(!h.decide(&facts).is_allow());
}

#[test]
fn feed_rules_end_at_the_feeds_freshness_limit() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(100, 7);
    let token = sign(&keys().es, &claims());
    let facts = cert(bearer(get("/statements/1"), &token), CERT_A);
    let allow = decide_and_remember(&mut h, &mut c, &facts, Some(NOW + 16));
    assert_eq!(
        allow_valid_until(&h.guard.policy, &facts, &allow, Some(NOW + 16)),
        Some(NOW + 16)
    );
    assert!(c.lookup(&facts, NOW + 15).is_some());
    assert!(c.lookup(&facts, NOW + 16).is_none());
    // No freshness limit known: a feed rule's allow is not stored.
    assert_eq!(allow_valid_until(&h.guard.policy, &facts, &allow, None), None);
    // Rules that do not rely on the feed are not limited by it.
    let other = cert(bearer(get("/products/1"), &token), CERT_A);
    let allow = allowed(h.decide(&other));
    assert_eq!(
        allow_valid_until(&h.guard.policy, &other, &allow, Some(NOW + 16)),
        Some(NOW + 290)
    );
}

#[test]
fn clear_forgets_everything_and_the_table_is_bounded() {
    let mut h = Harness::new();
    let mut c = DecisionCache::new(3, 7);
    let token = bearer_token();
    let paths = ["/products/1", "/products/2", "/products/3", "/products/4"];
    for p in paths {
        decide_and_remember(&mut h, &mut c, &bearer(get(p), &token), FEED_UNTIL);
    }
    assert_eq!(c.len(), 3);
    // The oldest left first.
    assert!(c.lookup(&bearer(get(paths[0]), &token), NOW).is_none());
    assert!(c.lookup(&bearer(get(paths[3]), &token), NOW).is_some());
    c.clear();
    assert!(c.is_empty());
    assert!(c.lookup(&bearer(get(paths[3]), &token), NOW).is_none());
    // Capacity 0 (token_cache_size: 0): nothing is kept.
    let mut off = DecisionCache::new(0, 7);
    decide_and_remember(&mut h, &mut off, &bearer(get(paths[0]), &token), FEED_UNTIL);
    assert!(off.is_empty());
    // Sweep drops what ended.
    let short = sign(&keys().es, &with(bearer_claims(), json!({"exp": NOW + 5})));
    decide_and_remember(&mut h, &mut c, &bearer(get(paths[0]), &short), FEED_UNTIL);
    decide_and_remember(&mut h, &mut c, &bearer(get(paths[1]), &token), FEED_UNTIL);
    c.sweep(NOW + 10);
    assert_eq!(c.len(), 1);
}

#[test]
fn rules_that_read_the_body_are_never_stored() {
    // RFC 9396: every body differs, and `once` lets a detail admit one request only.
    let mut p = policy_value();
    p["rules"].as_array_mut().unwrap().insert(
        0,
        json!({"name": "orders", "match": {"prefix": "/orders"},
               "require": {"sender_constraint": "bearer-allowed",
                           "authorization_details": {"type": "payment_initiation",
                                                     "bind": {"/amount": "/instructedAmount/amount"},
                                                     "once": true}}}),
    );
    let mut h = Harness::with_policy(p, None);
    let rule = h.guard.policy.rules.iter().find(|r| r.name == "orders").unwrap();
    assert!(!rule.decision_cacheable());

    let details = json!([{"type": "payment_initiation",
                          "instructedAmount": {"currency": "JPY", "amount": "5000"}}]);
    let token = sign(
        &keys().es,
        &with(
            bearer_claims(),
            json!({"authorization_details": details, "jti": "t-1"}),
        ),
    );
    let facts = bearer(post("/orders"), &token);
    let Harness {
        guard,
        cache,
        replay,
        revocations,
        now,
        ..
    } = &mut h;
    let mut ctx = fapi_core::Context {
        keys: &guard.policy,
        cache,
        replay,
        revocations,
        revocation_feed_current: true,
        now: *now,
    };
    let allow = allowed(guard.decide_before_body(&facts, &mut ctx));
    assert!(
        allow.awaiting_body.is_some(),
        "admitted on the headers, the body still to check"
    );
    assert_eq!(allow_valid_until(&guard.policy, &facts, &allow, FEED_UNTIL), None);
    let mut c = DecisionCache::new(100, 7);
    c.remember(&guard.policy, &facts, &allow, FEED_UNTIL, NOW);
    assert!(c.is_empty());
    assert!(c.lookup(&facts, NOW).is_none());
}
