//! The cached path of `Guard::decide` as scripts/bench-envoy exercises it (GET
//! /accounts/0012345/balances, Bearer ES256 certificate-bound token, x-forwarded-client-cert hex digest,
//! the bench policy), and its parts, natively and in V8. Median of 21 batches, µs/op.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::cache::{NoRevocations, TokenCache};
use fapi_core::dpop::MemoryReplayStore;
use fapi_core::extract::{credentials, uuid_v4, xfcc_client_cert};
use fapi_core::policy::Policy;
use fapi_core::sign::SigningKey;
use fapi_core::{Context, Decision, Guard, RequestFacts};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

const NOW: i64 = 1_704_067_200;
const ISSUER: &str = "https://as.bank.example";
const AUDIENCE: &str = "https://api.bank.example";
const CERT_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn bench(name: &str, per_batch: usize, mut f: impl FnMut()) {
    for _ in 0..200 {
        f();
    }
    let mut per_op: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / per_batch as f64
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    println!("{name:<46} median {:>7.2} µs/op  (min {:>7.2})", per_op[10], per_op[0]);
}

fn main() {
    let target = if cfg!(target_arch = "wasm32") { "wasm32 (V8)" } else { "native" };
    println!("== Guard::decide, cached bench-envoy request, {target}");
    let key = SigningKey::generate(Algorithm::ES256, Some("bench-es256".into())).unwrap();
    let mut digest = [0u8; 32];
    for (i, b) in digest.iter_mut().enumerate() {
        *b = u8::from_str_radix(&CERT_HEX[2 * i..2 * i + 2], 16).unwrap();
    }
    let token = key
        .sign_jwt(
            Some("at+jwt"),
            &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user", "client_id": "bench-client",
                    "scope": "openid accounts", "iat": NOW, "exp": NOW + 3600, "jti": "j-1",
                    "cnf": {"x5t#S256": b64::encode(digest)}}),
        )
        .unwrap();
    let policy = json!({
      "version": 1, "name": "bench-envoy",
      "settings": {"external_origin": "https://api.bank.example",
                   "client_certificate": "x-forwarded-client-cert", "strip_credentials": true},
      "issuers": [{"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["PS256", "ES256", "EdDSA"],
                   "jwks": {"keys": [key.public_jwk()]}, "require_typ": true, "max_lifetime": 3600}],
      "defaults": {"sender_constraint": "either", "revocation": "none",
                   "dpop": {"algorithms": ["ES256", "PS256", "EdDSA"], "iat_window": 60, "iat_future": 10}},
      "rules": [
        {"name": "health", "match": {"methods": ["GET"], "path": "/health"}, "anonymous": true},
        {"name": "accounts-list", "match": {"methods": ["GET"], "path": "/accounts"}, "require": {"scopes": ["accounts"]}},
        {"name": "account-detail", "match": {"methods": ["GET"], "template": "/accounts/{account_id}"}, "require": {"scopes": ["accounts"]}},
        {"name": "account-balances", "match": {"methods": ["GET"], "template": "/accounts/{account_id}/balances"}, "require": {"scopes": ["accounts"]}},
        {"name": "account-transactions", "match": {"methods": ["GET"], "template": "/accounts/{account_id}/transactions"}, "require": {"scopes": ["accounts"]}},
        {"name": "transfer-status", "match": {"methods": ["GET"], "template": "/transfers/{transfer_id}"}, "require": {"scopes": {"any_of": ["payments", "accounts"]}}}
      ]
    });
    let (policy, _) = Policy::from_json(&policy.to_string()).unwrap();
    let guard = Guard::new(policy, None);
    let xfcc = format!("Hash={CERT_HEX}");
    let auth = format!("Bearer {token}");
    let facts = RequestFacts {
        method: "GET".into(),
        scheme: "http".into(),
        authority: "api.bank.example".into(),
        path: "/accounts/0012345/balances".into(),
        authorization: vec![auth.clone()],
        client_cert: xfcc_client_cert(&xfcc),
        ..Default::default()
    };
    let mut cache = TokenCache::new(1000);
    let mut replay = MemoryReplayStore::new(1000);
    let mut decide = |facts: &RequestFacts| {
        let mut ctx = Context {
            keys: &guard.policy,
            cache: &mut cache,
            replay: &mut replay,
            revocations: &NoRevocations,
            revocation_feed_current: false,
            now: NOW,
        };
        guard.decide(facts, &mut ctx)
    };
    match decide(&facts) {
        Decision::Allow(a) => println!("first decision: allow {} ({} headers)", a.rule, a.forward.len()),
        Decision::Deny(d) => panic!("bench request denied: {}", d.reason()),
    }
    bench("decide, cached (the bench request)", 20_000, || {
        black_box(decide(black_box(&facts)));
    });
    bench("  facts from owned header strings", 20_000, || {
        let f = RequestFacts {
            method: black_box("GET").to_string(),
            scheme: "http".to_string(),
            authority: "api.bank.example".to_string(),
            path: "/accounts/0012345/balances".to_string(),
            authorization: vec![auth.clone()],
            client_cert: xfcc_client_cert(black_box(&xfcc)),
            ..Default::default()
        };
        black_box(f);
    });
    bench("  policy.match_rule", 20_000, || {
        black_box(guard.policy.match_rule(
            black_box("GET"),
            black_box("api.bank.example"),
            black_box("/accounts/0012345/balances"),
        ));
    });
    bench("  credentials()", 20_000, || {
        black_box(credentials(black_box(&facts)).ok());
    });
    bench("  sha256(token)", 20_000, || {
        black_box(b64::sha256(black_box(&token)));
    });
    bench("  client cert thumbprint (hex digest)", 20_000, || {
        black_box(facts.client_cert.as_ref().and_then(|c| c.thumbprint()));
    });
    bench("  uuid_v4 (interaction id)", 20_000, || {
        black_box(uuid_v4(black_box([7u8; 16])));
    });
}
