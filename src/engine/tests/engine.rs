//! The engine's request path and background work against a fake proxy: what both shells do, tested
//! once. Times are set on the fake clock; keys and tokens are real.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fake;

use fake::FakeHost;
use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::dpop::{Recorded, ReplayStore};
use fapi_core::sign::SigningKey;
use fapi_engine::host::{CalloutResponse, Level};
use fapi_engine::shared::{replay_bucket_capacity, SharedReplayStore};
use fapi_engine::{load, Action, Background, Request, Worker};
use serde_json::{json, Value};
use std::sync::OnceLock;

const NOW: i64 = 1_750_000_000;
const ISS: &str = "https://as.engine.example";
const AUD: &str = "https://api.engine.example";
const CERT: &[u8] = b"client certificate DER stand-in";

fn issuer_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap())
}

fn cert_hex() -> String {
    fapi_core::sha256::digest(CERT)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policy(extra_settings: Value) -> Value {
    let mut settings = json!({
        "revocation_feed": {"cluster": "as", "path": "/revocations", "interval": 5},
        "introspection": {"cluster": "as", "path": "/introspect", "cache_seconds": 30}
    });
    if let (Some(s), Value::Object(e)) = (settings.as_object_mut(), extra_settings) {
        s.extend(e);
    }
    json!({
        "version": 1,
        "name": "engine",
        "settings": settings,
        "issuers": [{
            "issuer": ISS, "audiences": [AUD], "max_lifetime": 3600,
            "jwks": {"uri": "http://as.engine.example/jwks", "cluster": "jwks", "max_stale": 600}
        }],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "anonymous": true},
            {"name": "balances", "match": {"prefix": "/accounts"}, "require": {"scopes": ["accounts"]}},
            {"name": "statements", "match": {"prefix": "/statements"},
             "require": {"scopes": ["accounts"], "revocation": "feed"}},
            {"name": "cards", "match": {"prefix": "/cards"},
             "require": {"scopes": ["accounts"], "revocation": "introspection"}},
            {"name": "transfers", "match": {"path": "/transfers", "methods": ["POST"]},
             "require": {"scopes": ["payments"], "authorization_details": {
                 "type": "payment_initiation",
                 "bind": {"/amount": "/instructedAmount/amount",
                          "/to_account": "/creditorAccount/accountId",
                          "/from_account": "/debtorAccount/accountId"},
                 "once": true, "max_body": 256}}},
            {"name": "payments-other", "match": {"prefix": "/payments"}, "require": {"scopes": ["payments"]}}
        ]
    })
}

fn token(extra: Value) -> String {
    let mut claims = json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "client_id": "tpp-1",
        "iat": NOW - 5, "exp": NOW + 300, "jti": "t-1", "scope": "accounts",
        "cnf": {"x5t#S256": b64::sha256_b64(CERT)}
    });
    if let (Some(c), Value::Object(e)) = (claims.as_object_mut(), extra) {
        c.extend(e);
    }
    issuer_key().sign_jwt(Some("at+jwt"), &claims).unwrap()
}

fn jwks() -> Vec<u8> {
    json!({"keys": [issuer_key().public_jwk()]})
        .to_string()
        .into_bytes()
}

struct World {
    host: FakeHost,
    worker: Worker,
    background: Background,
}

impl World {
    fn new(extra_settings: Value) -> World {
        let mut host = FakeHost::at(NOW);
        let config = policy(extra_settings).to_string();
        let worker = load(&mut host, Some(config.as_bytes())).expect("the test policy loads");
        World {
            host,
            worker,
            background: Background::default(),
        }
    }

    /// Starts a request; answers its key fetch (if any) with the issuer's keys.
    fn send(&mut self, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut all = vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "api.engine.example"),
            (":path", path),
        ];
        all.extend_from_slice(headers);
        let digest = cert_hex();
        self.host.request(&all, Some(&digest));
        let mut request = Request::new();
        let action = request.on_request_headers(&mut self.worker, &mut self.host, true);
        if action == Action::Continue {
            self.host.resumed = true;
        }
        request
    }

    /// Answers the request's pending callout.
    fn answer(&mut self, request: &mut Request, status: &str, body: &[u8]) {
        let (token, _) = self.host.take_calls().pop().expect("a callout");
        assert_eq!(request.pending_callout(), Some(token));
        let response = CalloutResponse {
            status: status.into(),
            body: body.to_vec(),
        };
        request.on_callout(&mut self.worker, &mut self.host, token, &response);
    }

    /// A request whose body follows its headers: the headers hook, then the body in `chunks` (each
    /// hook sees the size buffered so far). Returns the request and the action of the last hook.
    fn send_body(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
    ) -> (Request, Action) {
        let mut all = vec![
            (":method", method),
            (":scheme", "https"),
            (":authority", "api.engine.example"),
            (":path", path),
        ];
        all.extend_from_slice(headers);
        let digest = cert_hex();
        self.host.request(&all, Some(&digest));
        let mut request = Request::new();
        let mut action = request.on_request_headers(&mut self.worker, &mut self.host, chunks.is_empty());
        for (i, chunk) in chunks.iter().enumerate() {
            if self.host.reply.is_some() {
                break;
            }
            let held = if self.host.cannot_hold_headers {
                Action::Continue
            } else {
                Action::Pause
            };
            if i == 0 {
                assert_eq!(
                    action, held,
                    "the headers are held until the body is in (where the host can)"
                );
            } else {
                assert_eq!(action, Action::Pause, "the body is held until it is all in");
            }
            self.host.body.extend_from_slice(chunk);
            let size = self.host.body.len();
            action = request.on_request_body(&mut self.worker, &mut self.host, size, i + 1 == chunks.len());
        }
        (request, action)
    }

    fn reply_status(&self) -> Option<u16> {
        self.host.reply.as_ref().map(|r| r.0)
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// Cold start: no keys yet, so the request fetches them, then decides; the claims go upstream as
/// headers, spoofed claim headers are removed, an interaction id is generated and echoed.
#[test]
fn allowed_request_fetches_keys_forwards_claims_and_strips_spoofed_headers() {
    let mut w = World::new(json!({"strip_credentials": true}));
    let t = token(json!({}));
    let auth = bearer(&t);
    let mut r = w.send(
        "/accounts/1",
        &[("authorization", &auth), ("x-fapi-subject", "mallory")],
    );
    assert!(w.host.removed.contains(&"x-fapi-subject".to_string()));
    assert!(w.host.reply.is_none() && !w.host.resumed, "paused for the keys");
    w.answer(&mut r, "200", &jwks());
    assert!(w.host.resumed, "{:?}", w.host.reply);
    assert_eq!(w.host.set_header("x-fapi-subject"), Some("alice"));
    assert_eq!(w.host.set_header("x-fapi-client-id"), Some("tpp-1"));
    let id = w.host.set_header("x-fapi-interaction-id").unwrap().to_string();
    assert!(fapi_core::extract::is_uuid(&id));
    assert!(w.host.removed.contains(&"authorization".to_string()));
    r.on_response_headers(&mut w.host);
    assert_eq!(
        w.host.response_set,
        vec![("x-fapi-interaction-id".to_string(), id)]
    );
    assert_eq!(w.host.counter_value("jwks.fetched"), 1);
    assert_eq!(w.worker.metrics.pending("allowed"), 1);

    // The second request uses the fetched keys and the token cache: no callout, and the client's own
    // valid interaction id is kept, not set again.
    let mine = "8f3e5c2a-1b4d-4e6f-9a8b-7c6d5e4f3a2b";
    let _ = w.send(
        "/accounts/1",
        &[("authorization", &auth), ("x-fapi-interaction-id", mine)],
    );
    assert!(w.host.resumed && w.host.calls.is_empty());
    assert_eq!(w.host.set_header("x-fapi-interaction-id"), None);
    assert_eq!(w.worker.metrics.pending("token_cache.hit"), 1);
}

/// A refusal is rendered once (status, challenge, interaction id, no-store), counted by reason, and
/// logged as one line that names the reason and never holds the token.
#[test]
fn refusal_is_one_reply_one_counter_and_one_log_line_without_the_token() {
    let mut w = World::new(json!({}));
    let t = token(json!({"scope": "payments"}));
    let auth = bearer(&t);
    let mut r = w.send("/accounts/1", &[("authorization", &auth)]);
    w.answer(&mut r, "200", &jwks());
    let (status, headers, body) = w.host.reply.clone().expect("a local reply");
    assert_eq!(status, 403);
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert!(header("www-authenticate").unwrap().contains("insufficient_scope"));
    assert_eq!(header("cache-control"), Some("no-store"));
    assert!(fapi_core::extract::is_uuid(
        header("x-fapi-interaction-id").unwrap()
    ));
    assert!(String::from_utf8_lossy(&body).contains("insufficient_scope"));
    assert_eq!(w.host.counter_value("denied"), 1);
    assert_eq!(w.host.counter_value("denied.insufficient_scope"), 1);
    let lines: Vec<&String> = w
        .host
        .logs
        .iter()
        .filter(|(l, s)| *l == Level::Warn && s.contains("fapi-guard denied"))
        .map(|(_, s)| s)
        .collect();
    assert_eq!(lines.len(), 1);
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["reason"], "insufficient_scope");
    assert_eq!(line["rule"], "balances");
    assert_eq!(line["path"], "/accounts/1");
    assert!(
        !w.host.logs.iter().any(|(_, s)| s.contains(&t)),
        "the token is never logged"
    );
    // The interaction id is not set again on the local reply's response.
    r.on_response_headers(&mut w.host);
    assert!(w.host.response_set.is_empty());
}

/// An unknown kid makes at most one key fetch per 10 seconds (an attacker can invent kids); with no
/// keys at all a request may try every second.
#[test]
fn unknown_kid_refetches_at_most_every_ten_seconds() {
    let mut w = World::new(json!({}));
    let t = token(json!({}));
    let auth = bearer(&t);
    let mut r = w.send("/accounts/1", &[("authorization", &auth)]);
    w.answer(&mut r, "200", &jwks());
    let stranger = SigningKey::generate(Algorithm::ES256, Some("k-unknown".into())).unwrap();
    let forged = stranger
        .sign_jwt(Some("at+jwt"), &json!({"iss": ISS, "aud": AUD, "exp": NOW + 300, "iat": NOW, "scope": "accounts", "client_id": "x", "jti": "u"}))
        .unwrap();
    let forged_auth = bearer(&forged);
    w.host.now = NOW + 20;
    let mut r = w.send("/accounts/1", &[("authorization", &forged_auth)]);
    assert_eq!(w.host.calls.len(), 1, "the first unknown kid refetches");
    w.answer(&mut r, "200", &jwks());
    assert_eq!(w.reply_status(), Some(401));
    for dt in [1, 5, 9] {
        w.host.now = NOW + 20 + dt;
        let _ = w.send("/accounts/1", &[("authorization", &forged_auth)]);
        assert!(w.host.calls.is_empty(), "no refetch {dt} s later");
        assert_eq!(w.reply_status(), Some(401));
    }
    w.host.now = NOW + 30;
    let _ = w.send("/accounts/1", &[("authorization", &forged_auth)]);
    assert_eq!(w.host.calls.len(), 1, "10 s later it may refetch again");
}

/// Fetched keys serve until `max_stale` after their fetch; then requests fail closed (503).
#[test]
fn fetched_keys_stop_serving_after_max_stale() {
    let mut w = World::new(json!({}));
    let t = token(json!({"exp": NOW + 3000}));
    let auth = bearer(&t);
    let mut r = w.send("/accounts/1", &[("authorization", &auth)]);
    w.answer(&mut r, "200", &jwks());
    assert!(w.host.resumed);
    w.host.now = NOW + 600;
    let _ = w.send("/accounts/1", &[("authorization", &auth)]);
    assert!(w.host.resumed, "still within max_stale");
    // A token not verified before (a cached one keeps its verification, as in jwt_authn).
    w.host.now = NOW + 601;
    let other = bearer(&token(json!({"exp": NOW + 3000, "jti": "t-3"})));
    let mut r = w.send("/accounts/1", &[("authorization", &other)]);
    w.answer(&mut r, "503", b"down");
    assert_eq!(w.reply_status(), Some(503));
    assert_eq!(w.host.counter_value("denied.jwks_unavailable"), 1);
}

/// An introspection answer is reused for `cache_seconds`, never past the token's `exp`.
#[test]
fn introspection_answer_is_reused_for_cache_seconds_but_not_past_exp() {
    let mut w = World::new(json!({}));
    // exp in 100 s, cache_seconds 30: reused for 30 s.
    let t = token(json!({"exp": NOW + 100}));
    let auth = bearer(&t);
    let mut r = w.send("/cards/1", &[("authorization", &auth)]);
    w.answer(&mut r, "200", &jwks());
    let calls = w.host.take_calls();
    assert_eq!(calls.len(), 1);
    let (token_id, call) = &calls[0];
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/introspect"));
    let response = CalloutResponse {
        status: "200".into(),
        body: br#"{"active":true}"#.to_vec(),
    };
    r.on_callout(&mut w.worker, &mut w.host, *token_id, &response);
    assert!(w.host.resumed);
    w.host.now = NOW + 29;
    let _ = w.send("/cards/1", &[("authorization", &auth)]);
    assert!(
        w.host.resumed && w.host.calls.is_empty(),
        "reused within cache_seconds"
    );
    w.host.now = NOW + 30;
    let _ = w.send("/cards/1", &[("authorization", &auth)]);
    assert_eq!(w.host.take_calls().len(), 1, "asked again after cache_seconds");

    // A token expiring in 10 s: its answer is not reused past exp (then the token is refused anyway,
    // but never by a stale "active").
    let short = token(json!({"exp": NOW + 40, "jti": "t-2"}));
    let short_auth = bearer(&short);
    w.host.now = NOW + 31;
    let mut r = w.send("/cards/1", &[("authorization", &short_auth)]);
    let (id, _) = w.host.take_calls().pop().unwrap();
    r.on_callout(&mut w.worker, &mut w.host, id, &response);
    let hash = b64::sha256(&short);
    assert_eq!(w.worker.introspected.get(&hash), Some(&(true, NOW + 40)));
    // Failing introspection fails closed.
    w.host.now = NOW + 45;
    let mut r = w.send("/cards/1", &[("authorization", &auth)]);
    let (id, _) = w.host.take_calls().pop().unwrap();
    r.on_callout(&mut w.worker, &mut w.host, id, &CalloutResponse::default());
    assert_eq!(w.reply_status(), Some(503));
}

/// A stand-in for the authorization server's feed: `n` revocations, `page` per answer, the cursor is
/// the index of the next one.
fn feed_answer(path: &str, n: usize, page: usize) -> Vec<u8> {
    let since: usize = path
        .split_once("since=")
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(0);
    let end = (since + page).min(n);
    let revoked: Vec<Value> = (since..end)
        .map(|i| json!({"iss": ISS, "jti": format!("r{i}"), "exp": NOW + 3600}))
        .collect();
    json!({"cursor": end.to_string(), "revoked": revoked})
        .to_string()
        .into_bytes()
}

/// Runs the background tick once a second for `seconds`, answering every callout at once.
fn run_background(w: &mut World, seconds: i64, revocations: usize) {
    for _ in 0..seconds {
        w.background.tick(&mut w.worker, &mut w.host);
        loop {
            let calls = w.host.take_calls();
            if calls.is_empty() {
                break;
            }
            for (id, call) in calls {
                let body = match call.cluster.as_str() {
                    "as" => feed_answer(call.header(":path").unwrap_or(""), revocations, 1000),
                    _ => jwks(),
                };
                let response = CalloutResponse {
                    status: "200".into(),
                    body,
                };
                w.background.on_callout(&mut w.worker, &mut w.host, id, &response);
            }
        }
        w.host.now += 1;
    }
}

/// Load-probe finding (a): 10 000 revocations (ten full pages) reach the engine within two feed
/// intervals, because a page with entries is followed at once by the next.
#[test]
fn mass_revocation_reaches_the_engine_within_two_intervals() {
    let mut w = World::new(json!({}));
    run_background(&mut w, 2 * 5, 10_000);
    w.worker.sync_revocations(&w.host);
    assert_eq!(w.worker.revocations.len(), 10_000);
    assert_eq!(w.worker.feed_cursor.as_deref(), Some("10000"));
    assert!(w.worker.feed_current(w.host.now));
    assert_eq!(w.background.in_flight(), 0);
}

/// The last revoked token is refused after the mass revocation (the list the request path reads).
#[test]
fn revoked_token_is_refused_and_a_stale_feed_fails_closed() {
    let mut w = World::new(json!({}));
    run_background(&mut w, 1, 10_000);
    let t = token(json!({"jti": "r9999"}));
    let auth = bearer(&t);
    let _ = w.send("/statements/1", &[("authorization", &auth)]);
    assert_eq!(w.reply_status(), Some(401));
    assert_eq!(
        w.host.counter_value("denied.token_revoked"),
        1,
        "{:?}",
        w.host.counters
    );
    // Another token passes while the feed is current, and fails closed once it is 3 intervals old.
    let ok = bearer(&token(json!({"jti": "fresh"})));
    let _ = w.send("/statements/1", &[("authorization", &ok)]);
    assert!(w.host.resumed);
    w.host.now += 3 * 5 + 1;
    let _ = w.send("/statements/1", &[("authorization", &ok)]);
    assert_eq!(w.reply_status(), Some(503));
}

/// Issue 11 item 4: an allow is remembered and served again without deciding; a revocation arriving
/// through the feed drops the remembered allows, so the next request misses and is refused.
#[test]
fn a_revocation_from_the_feed_makes_the_next_request_miss_and_be_refused() {
    let mut w = World::new(json!({}));
    run_background(&mut w, 1, 3);
    let t = token(json!({"jti": "r3"}));
    let auth = bearer(&t);
    let _ = w.send("/accounts/1", &[("authorization", &auth)]);
    assert!(w.host.resumed);
    assert_eq!(w.worker.decisions.len(), 1);
    let _ = w.send("/accounts/1", &[("authorization", &auth)]);
    assert!(w.host.resumed);
    assert_eq!(
        w.worker.decisions.hits, 1,
        "the second request was served from the cache"
    );
    assert_eq!(
        w.host.set_header("x-fapi-subject"),
        Some("alice"),
        "{:?}",
        w.host.set
    );
    // Polls that bring no new revocation keep the remembered allow.
    run_background(&mut w, 6, 3);
    let _ = w.send("/accounts/1", &[("authorization", &auth)]);
    assert!(w.host.resumed);
    assert_eq!(w.worker.decisions.hits, 2, "still served from the cache");
    // The feed now lists r3 too: the next poll (within one interval) brings it.
    run_background(&mut w, 6, 4);
    let _ = w.send("/accounts/1", &[("authorization", &auth)]);
    assert_eq!(w.reply_status(), Some(401));
    assert_eq!(w.host.counter_value("denied.token_revoked"), 1);
    assert_eq!(w.worker.decisions.hits, 2, "no hit after the revocation");
}

/// A new key set drops the remembered allows too (a key removed from the set must stop admitting).
#[test]
fn a_new_key_set_drops_the_decision_cache() {
    let mut w = World::new(json!({}));
    run_background(&mut w, 1, 0);
    let auth = bearer(&token(json!({})));
    let _ = w.send("/accounts/1", &[("authorization", &auth)]);
    assert!(w.host.resumed);
    assert_eq!(w.worker.decisions.len(), 1);
    let now = w.host.now;
    assert!(w.worker.store_jwks(&mut w.host, ISS, "200", &jwks(), now));
    assert!(w.worker.decisions.is_empty());
    // A sibling (the native module's other workers) sees the new set and drops its own entries.
    let mut sibling = w.worker.sibling(&mut w.host);
    let facts_path = "/accounts/1";
    let _ = w.send(facts_path, &[("authorization", &auth)]);
    assert!(w.host.resumed);
    let mut request = Request::new();
    w.host.request(
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "api.engine.example"),
            (":path", facts_path),
            ("authorization", &auth),
        ],
        Some(&cert_hex()),
    );
    assert_eq!(
        request.on_request_headers(&mut sibling, &mut w.host, true),
        Action::Continue
    );
    assert_eq!(sibling.decisions.len(), 1);
    assert!(w.worker.store_jwks(&mut w.host, ISS, "200", &jwks(), now));
    assert!(sibling
        .cached_allow(&w.host, &fapi_core::RequestFacts::default(), now)
        .is_none());
    assert!(sibling.decisions.is_empty());
    // The sibling shares the verified-token cache: its decision was a token-cache hit.
    assert!(sibling.cache.hits >= 1);
}

fn recorded(host: &mut FakeHost, capacity: usize, jkt: &str, key: [u8; 32], secret: &[u8]) -> Recorded {
    let mut store = SharedReplayStore {
        host,
        bucket_capacity: capacity,
        secret: Some(secret),
    };
    store.record_for(jkt, &key, NOW + 60, NOW)
}

fn proof_key(i: u32, first: u8) -> [u8; 32] {
    let mut k = fapi_core::sha256::digest(&i.to_be_bytes());
    k[0] = first;
    k
}

/// Load-probe finding (b), part one: a client cannot steer its proofs into one bucket (the bucket is
/// a keyed hash, not the proof hash's first byte), so its proofs do not fill the bucket of others.
#[test]
fn steered_proofs_do_not_fill_another_clients_bucket() {
    let mut host = FakeHost::at(NOW);
    let capacity = replay_bucket_capacity(100_000);
    let secret = [9u8; 32];
    // 2 000 proofs whose hashes all start with 0 (what used to choose the bucket).
    for i in 0..2_000 {
        let _ = recorded(&mut host, capacity, "attacker", proof_key(i, 0), &secret);
    }
    for i in 0..200 {
        assert_eq!(
            recorded(&mut host, capacity, "victim", proof_key(100_000 + i, 0), &secret),
            Recorded::Fresh,
            "victim proof {i}"
        );
    }
}

/// Load-probe finding (b), part two: one client holds at most half of a bucket; beyond that it (only
/// it) is refused, and replays are still caught.
#[test]
fn a_client_over_its_share_is_refused_while_others_still_record() {
    let mut host = FakeHost::at(NOW);
    let capacity = 4;
    let secret = [3u8; 32];
    let mut attacker_full = 0;
    for i in 0..5_000 {
        if recorded(&mut host, capacity, "attacker", proof_key(i, 7), &secret) == Recorded::Full {
            attacker_full += 1;
        }
    }
    assert!(attacker_full > 0, "the attacker met its share");
    for i in 0..20 {
        assert_eq!(
            recorded(&mut host, capacity, "victim", proof_key(900_000 + i, 7), &secret),
            Recorded::Fresh,
            "victim proof {i}"
        );
    }
    assert_eq!(
        recorded(&mut host, capacity, "victim", proof_key(900_000, 7), &secret),
        Recorded::Replayed
    );
}

/// A bad policy refuses to load, each error naming its field.
#[test]
fn bad_policy_refuses_to_load_naming_the_field() {
    let mut host = FakeHost::at(NOW);
    let mut bad = policy(json!({}));
    bad["settings"]["revocation_feed"]["interval"] = json!(0);
    assert!(load(&mut host, Some(bad.to_string().as_bytes())).is_none());
    assert!(
        host.logs
            .iter()
            .any(|(l, s)| *l == Level::Error && s.contains("settings.revocation_feed.interval")),
        "{:?}",
        host.logs
    );
    assert!(load(&mut host, None).is_none());
    assert!(load(&mut host, Some(b"\xff")).is_none());
}

/// The native module defines its counters up front from `metrics::DENIAL_REASONS`: every reason
/// `Denial::reason` can give (read from fapi-core's source, `fn reason` of `Denial` in denial.rs) must be listed,
/// or its refusals would be counted only under `denied` there.
#[test]
fn every_denial_reason_has_a_counter() {
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../core/src/denial.rs")).unwrap();
    let start = source.find("pub fn reason(&self)").expect("Denial::reason");
    let body = &source[start..];
    let end = body.find("\n    }\n").expect("end of Denial::reason");
    let reasons: Vec<&str> = body[..end]
        .split("=> \"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(reasons.len() > 30, "found only {reasons:?}");
    for r in reasons {
        assert!(
            fapi_engine::metrics::DENIAL_REASONS.contains(&r),
            "reason {r} has no counter in fapi_engine::metrics::DENIAL_REASONS"
        );
    }
}

fn transfer_token(jti: &str, details: Value) -> String {
    token(json!({"scope": "payments", "jti": jti, "authorization_details": details}))
}

fn granted() -> Value {
    json!([{
        "type": "payment_initiation",
        "instructedAmount": {"currency": "JPY", "amount": "5000"},
        "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"},
        "debtorAccount": {"accountId": "taro-1"}
    }])
}

fn transfer_body(amount: u64, to: &str) -> Vec<u8> {
    json!({"from_account": "taro-1", "to_account": to, "amount": amount, "currency": "JPY", "reference": "dinner"})
        .to_string()
        .into_bytes()
}

/// Keys loaded, so requests decide without a callout.
fn world_with_keys() -> World {
    let mut w = World::new(json!({}));
    let t = token(json!({}));
    let mut r = w.send("/accounts/1", &[("authorization", &bearer(&t))]);
    w.answer(&mut r, "200", &jwks());
    w
}

/// RFC 9396 §9.1: a rule with `authorization_details` holds the request until the whole body is in,
/// admits the consented transfer once (the body goes on with the headers: Continue from the body
/// hook), and refuses a second use with 403 insufficient_authorization_details.
#[test]
fn consented_transfer_passes_once_after_the_whole_body() {
    let mut w = world_with_keys();
    let t = transfer_token("pay-1", granted());
    let auth = bearer(&t);
    let body = transfer_body(5000, "hanako-1");
    let (first, rest) = body.split_at(10);
    let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[first, rest]);
    assert_eq!(action, Action::Continue, "{:?}", w.host.reply);
    assert_eq!(w.host.body_reads, 1, "the body is read once, when it is all in");
    assert_eq!(w.host.set_header("x-fapi-client-id"), Some("tpp-1"));

    let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[&body]);
    assert_eq!(action, Action::Pause);
    let (status, headers, reply) = w.host.reply.clone().expect("refused");
    assert_eq!(status, 403);
    let challenge = headers
        .iter()
        .find(|(n, _)| n == "www-authenticate")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"insufficient_authorization_details\""),
        "{challenge}"
    );
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["error"], "insufficient_authorization_details");
    assert_eq!(w.host.counter_value("denied.authorization_details_used"), 1);
    // Another token with its own consent is its own use.
    let other = transfer_token("pay-2", granted());
    let (_, action) = w.send_body(
        "POST",
        "/transfers",
        &[("authorization", &bearer(&other))],
        &[&body],
    );
    assert_eq!(action, Action::Continue, "{:?}", w.host.reply);
}

/// Mismatch, a body that is not JSON, no body at all and a token without details: 403, each with
/// its own reason; the mismatch's log line names the field, never a value.
#[test]
fn transfers_other_than_the_consented_one_are_refused_with_their_reasons() {
    let mut w = world_with_keys();
    let t = transfer_token("pay-3", granted());
    let auth = bearer(&t);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            transfer_body(500_000, "hanako-1"),
            "authorization_details_mismatch",
        ),
        (transfer_body(5000, "mallory-9"), "authorization_details_mismatch"),
        (b"amount=5000&to_account=hanako-1".to_vec(), "body_not_json"),
    ];
    for (body, reason) in cases {
        let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[&body]);
        assert_eq!(action, Action::Pause);
        assert_eq!(w.reply_status(), Some(403), "{reason}");
        assert_eq!(
            w.host.logs.last().map(|(_, l)| l.contains(reason)),
            Some(true),
            "{reason}"
        );
    }
    let mismatch = w
        .host
        .logs
        .iter()
        .find(|(_, l)| l.contains("authorization_details_mismatch"))
        .map(|(_, l)| serde_json::from_str::<Value>(l).unwrap())
        .unwrap();
    assert_eq!(mismatch["field"], "/amount");
    assert!(!w
        .host
        .logs
        .iter()
        .any(|(_, l)| l.contains("500000") || l.contains("mallory")));
    // No body at all (end of stream with the headers).
    let _ = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[]);
    assert_eq!(w.reply_status(), Some(403));
    assert_eq!(w.host.counter_value("denied.body_not_json"), 2);
    // A token without details.
    let plain = token(json!({"scope": "payments", "jti": "pay-4"}));
    let body = transfer_body(5000, "hanako-1");
    let _ = w.send_body(
        "POST",
        "/transfers",
        &[("authorization", &bearer(&plain))],
        &[&body],
    );
    assert_eq!(w.reply_status(), Some(403));
    assert_eq!(w.host.counter_value("denied.authorization_details_missing"), 1);
    // None of the refusals used the consent: the right transfer still passes.
    let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[&body]);
    assert_eq!(action, Action::Continue, "{:?}", w.host.reply);
}

/// Over `max_body`: 413 at once, from the content-length before a byte is read, or from the
/// buffered size as soon as it passes the limit; the body is never read or passed on.
#[test]
fn a_body_over_the_limit_is_refused_at_once() {
    let mut w = world_with_keys();
    let t = transfer_token("pay-5", granted());
    let auth = bearer(&t);
    let big = vec![b' '; 300];
    let (_, action) = w.send_body(
        "POST",
        "/transfers",
        &[("authorization", &auth), ("content-length", "300")],
        &[&big],
    );
    assert_eq!(action, Action::Pause);
    assert_eq!(w.reply_status(), Some(413));
    assert_eq!(w.host.body_reads, 0);
    // Chunked (no content-length): refused when the buffered size passes the limit.
    let (_, action) = w.send_body(
        "POST",
        "/transfers",
        &[("authorization", &auth)],
        &[&big[..200], &big[200..], b"x"],
    );
    assert_eq!(action, Action::Pause);
    assert_eq!(w.reply_status(), Some(413));
    assert_eq!(w.host.body_reads, 0);
    assert_eq!(w.host.counter_value("denied.body_too_large"), 2);
}

/// A rule without the requirement decides on the headers and never reads the body.
#[test]
fn other_routes_never_read_the_body() {
    let mut w = world_with_keys();
    let t = token(json!({"scope": "payments"}));
    let body = vec![b'x'; 1000];
    let mut all = vec![
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "api.engine.example"),
        (":path", "/payments/1"),
    ];
    let auth = bearer(&t);
    all.push(("authorization", &auth));
    w.host.request(&all, Some(&cert_hex()));
    let mut r = Request::new();
    assert_eq!(
        r.on_request_headers(&mut w.worker, &mut w.host, false),
        Action::Continue
    );
    w.host.body = body;
    assert_eq!(
        r.on_request_body(&mut w.worker, &mut w.host, 1000, true),
        Action::Continue
    );
    assert_eq!(w.host.body_reads, 0);
    assert!(w.host.reply.is_none());
}

/// A bad token on a body-bound route is refused on its headers: the body is never read.
#[test]
fn a_refused_token_is_refused_before_its_body_is_read() {
    let mut w = world_with_keys();
    let t = token(json!({"scope": "accounts", "jti": "pay-6", "authorization_details": granted()}));
    let body = transfer_body(5000, "hanako-1");
    let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &bearer(&t))], &[&body]);
    assert_eq!(action, Action::Pause);
    assert_eq!(w.reply_status(), Some(403));
    assert_eq!(w.host.counter_value("denied.insufficient_scope"), 1);
    assert_eq!(w.host.body_reads, 0);
}

/// A host that cannot hold headers for a body (proxy-wasm): the claim headers are set and the
/// headers go on at once, the body is held and checked; a refusal comes from the body hook.
#[test]
fn without_held_headers_the_body_is_held_and_checked() {
    let mut w = world_with_keys();
    w.host.cannot_hold_headers = true;
    let t = transfer_token("pay-7", granted());
    let auth = bearer(&t);
    let body = transfer_body(5000, "hanako-1");
    let (_, action) = w.send_body(
        "POST",
        "/transfers",
        &[("authorization", &auth)],
        &[&body[..7], &body[7..]],
    );
    assert_eq!(action, Action::Continue, "{:?}", w.host.reply);
    assert_eq!(w.host.set_header("x-fapi-subject"), Some("alice"));
    assert_eq!(
        w.worker.metrics.pending("allowed"),
        2,
        "counted once the body passed"
    );
    let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[&body]);
    assert_eq!(action, Action::Pause);
    assert_eq!(w.reply_status(), Some(403));
    assert_eq!(w.host.counter_value("denied.authorization_details_used"), 1);
}

/// The body may be complete before the headers' decision (a key fetch under way): it is kept, and
/// checked when the callout answers; only then does the request go on.
#[test]
fn a_body_that_arrives_during_a_key_fetch_is_checked_when_it_answers() {
    let mut w = World::new(json!({}));
    let t = transfer_token("pay-8", granted());
    let auth = bearer(&t);
    let body = transfer_body(5000, "hanako-1");
    let (mut r, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[&body]);
    assert_eq!(action, Action::Pause, "held: keys are being fetched");
    assert!(w.host.reply.is_none() && !w.host.resumed);
    assert_eq!(w.host.body_reads, 1);
    w.answer(&mut r, "200", &jwks());
    assert!(w.host.resumed, "{:?}", w.host.reply);
    assert_eq!(w.host.set_header("x-fapi-subject"), Some("alice"));
    // The same again: used.
    let (_, action) = w.send_body("POST", "/transfers", &[("authorization", &auth)], &[&body]);
    assert_eq!(action, Action::Pause);
    assert_eq!(w.reply_status(), Some(403));
}
