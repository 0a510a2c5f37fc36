//! Time per `Guard::decide`, natively, for the cases that dominate a resource server's load:
//! a token already verified (cache hit) and a token verified from scratch (token cache of capacity 0),
//! for each FAPI 2.0 §5.4.1 algorithm, with mTLS (RFC 8705) or DPoP (RFC 9449) sender constraint.
//!
//! DPoP cases get a fresh proof (new `jti`) and an empty replay store per decision: both are prepared
//! outside the timed section (`iter_batched`), so the figure is the resource server's cost only.
//! Proofs are always ES256, the most common client key.
//!
//! Run with `scripts/bench-core` (table) or `cargo bench -p fapi-core --bench decide`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use fapi_core::alg::Algorithm;
use fapi_core::binding::CertThumbprint;
use fapi_core::cache::{NoRevocations, TokenCache};
use fapi_core::dpop::MemoryReplayStore;
use fapi_core::extract::ClientCert;
use fapi_core::policy::Policy;
use fapi_core::sign::SigningKey;
use fapi_core::{Context, Guard, RequestFacts};
use serde_json::{json, Value};
use std::hint::black_box;

/// 2024-01-01T00:00:00Z: the clock is a parameter, never the wall clock.
const NOW: i64 = 1_704_067_200;
const ISSUER: &str = "https://as.bank.example";
const AUDIENCE: &str = "https://api.bank.example";
const HOST: &str = "api.bank.example";
const PATH: &str = "/accounts/acc-1/balances?from=2024-01-01";
const HTU: &str = "https://api.bank.example/accounts/acc-1/balances";
const CLIENT_CERT: &[u8] = b"bench client certificate (DER stand-in)";

struct Setup {
    guard: Guard,
    dpop_key: SigningKey,
    /// Token per algorithm, mTLS-bound and DPoP-bound.
    tokens: Vec<(Algorithm, String, String)>,
}

/// Benchmark material; `Err` says what could not be made (the bench then reports it and stops).
fn setup() -> Result<Setup, String> {
    let e = |e: &dyn std::fmt::Debug| format!("{e:?}");
    let keys: Vec<SigningKey> = [Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA]
        .into_iter()
        .map(|a| SigningKey::generate(a, None).map_err(|x| e(&x)))
        .collect::<Result<_, _>>()?;
    let dpop_key = SigningKey::generate(Algorithm::ES256, None).map_err(|x| e(&x))?;
    // A policy of realistic size: the matching rule is not the first one.
    let policy = json!({
        "version": 1,
        "issuers": [{
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": {"keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>()}
        }],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "anonymous": true},
            {"name": "consents", "match": {"prefix": "/consents"}, "require": {"scopes": ["consents"]}},
            {"name": "payments", "match": {"methods": ["POST"], "prefix": "/payments"},
             "require": {"scopes": ["payments"], "sender_constraint": "dpop"}},
            {"name": "balances", "match": {"methods": ["GET"], "template": "/accounts/{id}/balances"},
             "require": {"scopes": {"all_of": ["accounts"], "any_of": ["balances", "accounts:read"]}}},
            {"name": "accounts", "match": {"methods": ["GET"], "prefix": "/accounts"},
             "require": {"scopes": ["accounts"]}}
        ]
    });
    let (policy, problems) = Policy::from_value(policy).map_err(|x| e(&x))?;
    assert!(problems.is_empty(), "{problems:?}");
    let cert = CertThumbprint::from_der(CLIENT_CERT).to_b64url();
    let claims = |cnf: Value, jti: &str| {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "client_id": "tpp-1",
            "iat": NOW - 10, "exp": NOW + 290, "jti": jti, "scope": "openid accounts balances",
            "acr": "urn:bank:sca", "auth_time": NOW - 20, "cnf": cnf
        })
    };
    let tokens = keys
        .iter()
        .map(|k| {
            let mtls = k
                .sign_jwt(Some("at+jwt"), &claims(json!({"x5t#S256": cert}), "jti-mtls"))
                .map_err(|x| e(&x))?;
            let dpop = k
                .sign_jwt(
                    Some("at+jwt"),
                    &claims(json!({"jkt": dpop_key.thumbprint()}), "jti-dpop"),
                )
                .map_err(|x| e(&x))?;
            Ok((k.alg(), mtls, dpop))
        })
        .collect::<Result<_, String>>()?;
    Ok(Setup {
        guard: Guard::new(policy, None),
        dpop_key,
        tokens,
    })
}

fn facts(scheme: &str, token: &str) -> RequestFacts {
    RequestFacts {
        method: "GET".into(),
        scheme: "https".into(),
        authority: HOST.into(),
        path: PATH.into(),
        authorization: vec![format!("{scheme} {token}")],
        dpop: Vec::new(),
        // As Envoy reports it: lowercase hex of the DER's SHA-256.
        client_cert: Some(ClientCert::Digest(
            CertThumbprint::from_der(CLIENT_CERT)
                .0
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )),
        interaction_id: None,
    }
}

fn bench(c: &mut Criterion) {
    let s = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("decide bench: cannot make its keys and tokens: {e}");
            return;
        }
    };
    let guard = &s.guard;
    let mut group = c.benchmark_group("decide");

    for (alg, mtls, dpop) in &s.tokens {
        let name = alg.as_str().to_ascii_lowercase();
        let mtls_facts = facts("Bearer", mtls);
        let dpop_facts = facts("DPoP", dpop);

        for cached in [true, false] {
            // Only ES256 for the cached cases: after a hit the algorithm no longer matters.
            if cached && *alg != Algorithm::ES256 {
                continue;
            }
            let label = if cached { "cached" } else { "uncached" };
            let mut cache = TokenCache::new(if cached { 1024 } else { 0 });

            // mTLS: no per-request state besides the cache.
            let mut replay = MemoryReplayStore::new(16);
            let mut ctx = Context {
                keys: &guard.policy,
                cache: &mut cache,
                replay: &mut replay,
                revocations: &NoRevocations,
                revocation_feed_current: true,
                now: NOW,
            };
            let first = guard.decide(&mtls_facts, &mut ctx);
            assert!(first.is_allow(), "{:?}", first.reason());
            group.bench_function(format!("{label}-{name}-mtls"), |b| {
                b.iter(|| guard.decide(black_box(&mtls_facts), &mut ctx))
            });

            // DPoP: a fresh proof and replay store per decision, prepared outside the timing.
            let mut cache = TokenCache::new(if cached { 1024 } else { 0 });
            let mut n = 0u64;
            let mut prepare = || {
                n += 1;
                // A failed signature leaves the proof empty: the decision is then a refusal, which
                // the first run's assertion below reports.
                let proof = s
                    .dpop_key
                    .dpop_proof("GET", HTU, Some(dpop), NOW, &format!("p-{n}"), None)
                    .unwrap_or_default();
                let mut f = dpop_facts.clone();
                f.dpop = vec![proof];
                (f, MemoryReplayStore::new(16))
            };
            let run = |cache: &mut TokenCache, (f, mut replay): (RequestFacts, MemoryReplayStore)| {
                let mut ctx = Context {
                    keys: &guard.policy,
                    cache,
                    replay: &mut replay,
                    revocations: &NoRevocations,
                    revocation_feed_current: true,
                    now: NOW,
                };
                guard.decide(&f, &mut ctx)
            };
            let first = run(&mut cache, prepare());
            assert!(first.is_allow(), "{:?}", first.reason());
            group.bench_function(format!("{label}-{name}-dpop"), |b| {
                b.iter_batched(
                    &mut prepare,
                    |input| run(&mut cache, input),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
