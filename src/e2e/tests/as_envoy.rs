//! The authorization server and the plugin together: real tokens from the real `fapi-as`, checked by
//! the real fapi-guard plugin in the real Envoy, which fetches the server's /jwks and polls its
//! revocation feed through a TLS cluster that trusts only the test CA.
//!
//! Needs `target/debug/fapi-as` (`cargo build -p fapi-as`; scripts/test-all builds the workspace
//! first), the release plugin (`target/wasm32-wasip1/release/fapi_filter.wasm`) and Envoy
//! (`.venv/bin/envoy`).
//!
//! One server, one Envoy (two workers), five checks in order:
//! 1. client_credentials with private_key_jwt over mTLS: the bound token passes with its certificate,
//!    not with another one (RFC 8705 §3);
//! 2. client_credentials with DPoP (server nonce first, RFC 9449 §8): admitted with a fresh proof per
//!    request, a replayed proof refused;
//! 3. RFC 7009 revocation by the client: the plugin refuses the token once the feed lists it;
//! 4. a user's authorization-code grant (PAR, sign-in, TOTP, consent, token), then its revocation on
//!    the connected-apps page: the app's token is refused within seconds (FISC item 38);
//! 5. `fapi-as rotate-keys` and a restart: tokens of the new key pass after the plugin refetches the
//!    key set for the unknown kid; tokens of the retired key still pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::jws::CompactJws;
use fapi_core::policy::Policy;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::envoy::{plugin_wasm, tail, upstream_tls, Envoy, EnvoyConfig};
use fapi_e2e::fapi_as::{
    csrf, decode_query, form_post, hidden_field, pct_encode, see_other, totp, AsOptions, AuthServer,
    DEMO_PASSWORD, JWT_BEARER, TARO_TOTP,
};
use fapi_e2e::pki::TestPki;
use fapi_e2e::server::{echo, HttpServer};
use fapi_e2e::util::{free_port, unix_now, wait_until, ScratchDir};
use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

const API: &str = "https://api.e2e.example";
const FEED_TOKEN: &str = "feed-credential-e2e-0123456789abcdef";
const REDIRECT: &str = "https://fintech.example/cb";
const AS_CLUSTER: &str = "fapi_as";
const READY: Duration = Duration::from_secs(30);
/// Feed interval of the policy (seconds).
const FEED_INTERVAL: u64 = 1;

struct World {
    _dir: ScratchDir,
    pki: TestPki,
    auth: AuthServer,
    /// private_key_jwt key of every client here.
    client_key: SigningKey,
    _upstream: HttpServer,
    envoy: Envoy,
    /// Envoy clients with the certificates alpha, beta, fintech.
    alpha: HttpsClient,
    beta: HttpsClient,
    fintech: HttpsClient,
    /// Revocation latencies measured (what, seconds).
    latencies: Vec<(&'static str, Duration)>,
    /// Tokens revoked so far, with the Envoy client that held them.
    revoked: Vec<(HttpsClient, String)>,
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&b64::decode(payload).expect("base64url")).expect("JSON claims")
}

fn kid_of(jwt: &str) -> String {
    CompactJws::parse(jwt)
        .expect("JWS")
        .header_str("kid")
        .expect("kid is a string")
        .expect("kid")
        .to_string()
}

fn policy(auth: &AuthServer) -> String {
    let authority = format!("127.0.0.1:{}", auth.https_port);
    let doc = json!({
        "version": 1,
        "name": "as-envoy",
        "settings": {
            "revocation_feed": {"cluster": AS_CLUSTER, "path": "/revocations", "authority": authority,
                                "interval": FEED_INTERVAL, "token": FEED_TOKEN}
        },
        "issuers": [{
            "issuer": auth.issuer,
            "audiences": [API],
            "require_typ": true,
            "jwks": {"uri": auth.url("/jwks"), "cluster": AS_CLUSTER}
        }],
        "rules": [
            {"name": "accounts", "match": {"prefix": "/accounts"},
             "require": {"scopes": ["accounts"], "sender_constraint": "either", "revocation": "feed"}}
        ]
    });
    if let Err(problems) = Policy::from_value(doc.clone()) {
        panic!(
            "the policy does not compile: {:?}",
            problems.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
    doc.to_string()
}

fn start_world() -> World {
    let wasm = plugin_wasm();
    assert!(
        wasm.exists(),
        "{} is missing: `. scripts/env.sh; cargo build -p fapi-filter --target wasm32-wasip1 --release`",
        wasm.display()
    );
    let dir = ScratchDir::new("as-envoy").unwrap();
    let pki = TestPki::generate(dir.path(), &["alpha", "beta", "fintech"]).unwrap();
    let options = AsOptions {
        feed_token: Some(FEED_TOKEN.into()),
        audience: vec![API.into()],
        ..AsOptions::default()
    };
    let mut auth = AuthServer::configure(dir.path(), &pki, &options).unwrap_or_else(|e| panic!("{e}"));
    let client_key = SigningKey::generate(Algorithm::ES256, Some("client-es".into())).unwrap();
    let jwks = dir.join("clients.jwks.json");
    std::fs::write(&jwks, json!({"keys": [client_key.public_jwk()]}).to_string()).unwrap();
    let jwks = jwks.display().to_string();
    auth.seed().unwrap();
    for (id, binding) in [("pkj-mtls", "mtls"), ("pkj-dpop", "dpop")] {
        auth.add_client(
            id,
            &[
                "--jwks",
                &jwks,
                "--binding",
                binding,
                "--grant-type",
                "client_credentials",
                "--scope",
                "accounts payments",
            ],
        )
        .unwrap();
    }
    auth.add_client(
        "fintech",
        &[
            "--name",
            "Fintech App",
            "--redirect-uri",
            REDIRECT,
            "--jwks",
            &jwks,
            "--binding",
            "mtls",
            "--scope",
            "openid accounts",
        ],
    )
    .unwrap();
    auth.start(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));

    let upstream = HttpServer::start(echo()).unwrap();
    let config = EnvoyConfig {
        listener_port: free_port().unwrap(),
        admin_port: free_port().unwrap(),
        upstream_port: upstream.port(),
        clusters: vec![(AS_CLUSTER.into(), auth.https_port)],
        wasm,
        native_module: None,
        plugin_config: policy(&auth),
        server_cert: pki.server.cert_pem.clone(),
        server_key: pki.server.key_pem.clone(),
        client_ca: pki.ca_pem.clone(),
        concurrency: 2,
        forward_client_cert_details: "SANITIZE".into(),
    };
    let mut document = config.render();
    upstream_tls(&mut document, AS_CLUSTER, &pki.ca_pem, "127.0.0.1").unwrap();
    let envoy = Envoy::start_document(config, document, dir.path(), "envoy-as", READY)
        .unwrap_or_else(|e| panic!("{e}"));
    let port = envoy.listener_port();
    let client =
        |name: &str| HttpsClient::new(port, &pki.ca_der, pki.client(name), TlsVersion::Default).unwrap();
    let (alpha, beta, fintech) = (client("alpha"), client("beta"), client("fintech"));
    World {
        _dir: dir,
        pki,
        auth,
        client_key,
        _upstream: upstream,
        envoy,
        alpha,
        beta,
        fintech,
        latencies: Vec::new(),
        revoked: Vec::new(),
    }
}

impl World {
    fn stat(&self, name: &str) -> u64 {
        self.envoy.plugin_stat(name).expect("admin stats")
    }

    fn stat_reaches(&self, name: &str, at_least: u64, within: Duration) -> u64 {
        wait_until(within, &format!("fapi_guard.{name} >= {at_least}"), || {
            let v = self.stat(name);
            Ok((v >= at_least).then_some(v))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// An RFC 7523 client assertion for `client_id`, audience the issuer.
    fn assertion(&self, client_id: &str) -> String {
        let now = unix_now();
        self.client_key
            .sign_jwt(
                None,
                &json!({"iss": client_id, "sub": client_id, "aud": self.auth.issuer,
                        "iat": now, "exp": now + 60, "jti": random_id()}),
            )
            .unwrap()
    }

    /// `pairs` plus private_key_jwt client authentication.
    fn authenticated(&self, client_id: &str, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = vec![
            ("client_id".into(), client_id.into()),
            ("client_assertion_type".into(), JWT_BEARER.into()),
            ("client_assertion".into(), self.assertion(client_id)),
        ];
        p.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    /// A form POST to the server with private_key_jwt, over `client` (mTLS or not).
    fn as_post(&self, client: &HttpsClient, path: &str, client_id: &str, pairs: &[(&str, &str)]) -> Resp {
        let p = self.authenticated(client_id, pairs);
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        client
            .send(&form_post(path, &refs))
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    fn as_mtls(&self, cert: &str) -> HttpsClient {
        self.auth.mtls_client(self.pki.client(cert).unwrap()).unwrap()
    }

    /// client_credentials for `pkj-mtls` over the mTLS alias with certificate `cert`.
    fn mtls_token(&self, cert: &str) -> String {
        let r = self.as_post(
            &self.as_mtls(cert),
            "/token",
            "pkj-mtls",
            &[("grant_type", "client_credentials"), ("scope", "accounts")],
        );
        assert_eq!(r.status, 200, "token: {}", r.text());
        let body = r.json().unwrap();
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_string()
    }

    fn envoy_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.envoy.listener_port())
    }

    fn send(&self, client: &HttpsClient, req: &Req) -> Resp {
        client
            .send(req)
            .unwrap_or_else(|e| panic!("{} {}: {e}", req.method, req.path))
    }

    fn admitted(&self, client: &HttpsClient, req: &Req) -> Value {
        let r = self.send(client, req);
        assert_eq!(
            r.status,
            200,
            "{} {} refused: {:?} {}",
            req.method,
            req.path,
            r.header("www-authenticate"),
            r.text()
        );
        r.json().expect("upstream echo")
    }

    /// Asserts a refusal with `status`/`error`, and `denied.<reason>` going up.
    fn refused(&self, client: &HttpsClient, req: &Req, status: u16, error: &str, reason: &str) -> Resp {
        let before = self.stat(&format!("denied.{reason}"));
        let r = self.send(client, req);
        assert_eq!(
            (
                r.status,
                r.json()
                    .ok()
                    .and_then(|b| b["error"].as_str().map(str::to_string))
            ),
            (status, Some(error.to_string())),
            "{} {}: {:?} {}",
            req.method,
            req.path,
            r.header("www-authenticate"),
            r.text()
        );
        self.stat_reaches(&format!("denied.{reason}"), before + 1, Duration::from_secs(3));
        r
    }

    /// Polls `req` until Envoy refuses it (401), returning how long that took from `since`.
    fn refused_within(&self, client: &HttpsClient, req: &Req, since: Instant, limit: Duration) -> Duration {
        wait_until(limit, "Envoy to refuse the revoked token", || {
            let r = self.send(client, req);
            match r.status {
                401 => Ok(Some(())),
                200 => Err("still admitted".into()),
                s => panic!("unexpected {s}: {}", r.text()),
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
        since.elapsed()
    }

    /// The plugin's denial log line for an interaction id.
    fn denial_line(&self, interaction_id: &str) -> Value {
        let id = interaction_id.to_string();
        wait_until(Duration::from_secs(3), "the denial log line", || {
            Ok(self
                .envoy
                .log()
                .lines()
                .filter(|l| l.contains("fapi-guard denied") && l.contains(&id))
                .find_map(|l| {
                    l.find('{')
                        .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
                }))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn upstream_header<'a>(echoed: &'a Value, name: &str) -> Option<&'a str> {
    echoed["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

fn bearer(path: &str, token: &str) -> Req {
    Req::get(path).header("authorization", &format!("Bearer {token}"))
}

type Check = (&'static str, fn(&mut World));

#[test]
fn authorization_server_tokens_through_envoy() {
    let started = Instant::now();
    let mut w = start_world();
    eprintln!("        fapi-as and Envoy up in {:.1?}", started.elapsed());
    // Envoy fetched the server's keys and polled its feed over TLS before any request.
    w.stat_reaches("jwks.fetched", 1, Duration::from_secs(10));
    w.stat_reaches("revocation_feed.ok", 1, Duration::from_secs(10));
    let checks: &[Check] = &[
        (
            "1 mTLS-bound client_credentials token: its certificate admitted, another refused",
            mtls_bound,
        ),
        (
            "2 DPoP-bound client_credentials token (server nonce): a fresh proof per request",
            dpop_bound,
        ),
        (
            "3 RFC 7009 revocation at fapi-as: Envoy refuses the token through the feed",
            revoked_by_client,
        ),
        (
            "4 user grant revoked on the connected-apps page: the app's token refused (FISC 38)",
            connected_apps,
        ),
        (
            "5 rotate-keys and restart: new kid refetched, retired key still accepted",
            key_rotation,
        ),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| check(&mut w))) {
            Ok(()) => eprintln!("ok      {name} ({:.1?})", t.elapsed()),
            Err(_) => {
                eprintln!("FAILED  {name} ({:.1?})", t.elapsed());
                failed.push(*name);
            }
        }
    }
    for (what, took) in &w.latencies {
        eprintln!("        revocation latency, {what}: {took:.2?}");
    }
    eprintln!("        total {:.1?}", started.elapsed());
    if !failed.is_empty() {
        panic!(
            "failed checks: {failed:?}\nEnvoy log {} (tail):\n{}\nfapi-as log (tail):\n{}",
            w.envoy.log_path().display(),
            tail(&w.envoy.log(), 30),
            tail(&w.auth.log(), 30)
        );
    }
}

fn mtls_bound(w: &mut World) {
    let token = w.mtls_token("alpha");
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], json!(w.auth.issuer));
    assert_eq!(claims["aud"], API);
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        json!(w.pki.client("alpha").unwrap().x5t_s256())
    );
    let req = bearer("/accounts/acc-1/balances", &token);
    let allowed = w.stat("allowed");
    let echoed = w.admitted(&w.alpha, &req);
    assert_eq!(upstream_header(&echoed, "x-fapi-client-id"), Some("pkj-mtls"));
    assert_eq!(upstream_header(&echoed, "x-fapi-subject"), Some("pkj-mtls"));
    assert_eq!(upstream_header(&echoed, "x-fapi-binding"), Some("mtls"));
    assert_eq!(upstream_header(&echoed, "x-fapi-scope"), Some("accounts"));
    w.stat_reaches("allowed", allowed + 1, Duration::from_secs(3));
    // The same token over another client certificate: not the holder.
    let r = w.refused(&w.beta, &req, 401, "invalid_token", "binding_mismatch");
    let line = w.denial_line(r.header("x-fapi-interaction-id").unwrap());
    assert_eq!(line["reason"], "binding_mismatch", "{line}");
    assert_eq!(line["client_id"], "pkj-mtls", "{line}");
    assert!(!line.to_string().contains(&token), "the token is never logged");
}

fn dpop_bound(w: &mut World) {
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let plain = w.auth.client().unwrap();
    let token_htu = w.auth.url("/token");
    let token_req = |nonce: Option<&str>| {
        let proof = key
            .dpop_proof("POST", &token_htu, None, unix_now(), &random_id(), nonce)
            .unwrap();
        let p = w.authenticated(
            "pkj-dpop",
            &[("grant_type", "client_credentials"), ("scope", "accounts")],
        );
        let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        form_post("/token", &refs).header("dpop", &proof)
    };
    // RFC 9449 §8: the server asks for its nonce first.
    let r = w.send(&plain, &token_req(None));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").expect("DPoP-Nonce").to_string();
    let r = w.send(&plain, &token_req(Some(&nonce)));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&token)["cnf"]["jkt"], json!(key.thumbprint()));

    // At Envoy: a fresh proof (new jti, htu of Envoy's URL, ath of the token) per request; the
    // client certificate does not matter for a DPoP-bound token.
    let path = "/accounts/acc-2/transactions";
    let with_proof = |proof: &str| {
        Req::get(path)
            .header("authorization", &format!("DPoP {token}"))
            .header("dpop", proof)
    };
    let fresh = || {
        key.dpop_proof(
            "GET",
            &w.envoy_url(path),
            Some(&token),
            unix_now(),
            &random_id(),
            None,
        )
        .unwrap()
    };
    let first = fresh();
    for (i, client) in [&w.beta, &w.alpha, &w.beta].into_iter().enumerate() {
        let proof = if i == 0 { first.clone() } else { fresh() };
        let echoed = w.admitted(client, &with_proof(&proof));
        assert_eq!(upstream_header(&echoed, "x-fapi-binding"), Some("dpop"));
        assert_eq!(upstream_header(&echoed, "x-fapi-client-id"), Some("pkj-dpop"));
    }
    // The first proof again: a replay (RFC 9449 §11.1).
    w.refused(
        &w.alpha,
        &with_proof(&first),
        401,
        "invalid_dpop_proof",
        "dpop_replay",
    );
    // The token without its proof, as a bearer token: refused.
    let r = w.send(&w.alpha, &bearer(path, &token));
    assert_eq!(r.status, 401, "{}", r.text());
}

fn revoked_by_client(w: &mut World) {
    let token = w.mtls_token("alpha");
    let req = bearer("/accounts/acc-1/balances", &token);
    w.admitted(&w.alpha, &req);
    let revoked_before = w.stat("denied.token_revoked");
    let r = w.as_post(
        &w.as_mtls("alpha"),
        "/revoke",
        "pkj-mtls",
        &[("token", &token), ("token_type_hint", "access_token")],
    );
    assert_eq!(r.status, 200, "revoke: {}", r.text());
    let since = Instant::now();
    let took = w.refused_within(&w.alpha, &req, since, Duration::from_secs(10));
    eprintln!("        client-revoked token refused by Envoy {took:.2?} after /revoke answered");
    w.latencies.push(("RFC 7009 /revoke", took));
    w.revoked.push((w.alpha.clone(), token.clone()));
    let r = w.refused(&w.alpha, &req, 401, "invalid_token", "token_revoked");
    assert!(
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("error=\"invalid_token\"")),
        "{:?}",
        r.headers
    );
    let line = w.denial_line(r.header("x-fapi-interaction-id").unwrap());
    assert_eq!(line["reason"], "token_revoked", "{line}");
    assert_eq!(line["client_id"], "pkj-mtls", "{line}");
    assert!(w.stat("denied.token_revoked") >= revoked_before + 2);
    // Bounded: the server holds a revocation back for its settle delay (2 s), then the plugin polls
    // every FEED_INTERVAL s on a 1 s tick.
    assert!(
        took <= Duration::from_secs(2 + FEED_INTERVAL + 1 + 2),
        "revocation reached Envoy only after {took:?}"
    );
    // Another token of the same client is unaffected.
    let other = w.mtls_token("alpha");
    w.admitted(&w.alpha, &bearer("/accounts/acc-1/balances", &other));
}

fn connected_apps(w: &mut World) {
    let fintech_as = w.as_mtls("fintech");
    let verifier = format!("{}{}", random_id(), random_id());
    let challenge = b64::sha256_b64(&verifier);
    // PAR (RFC 9126) with private_key_jwt on the mTLS alias; TOTP asked for through acr_values.
    let r = w.as_post(
        &fintech_as,
        "/par",
        "fintech",
        &[
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid accounts"),
            ("state", "st-1"),
            ("nonce", "n-1"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("acr_values", "urn:bank:acr:totp"),
        ],
    );
    assert_eq!(r.status, 201, "PAR: {}", r.text());
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();

    // The person in the browser: authorize, password, TOTP, consent.
    let mut b = w.auth.browser().unwrap();
    let r = b
        .get(&format!(
            "/authorize?client_id=fintech&request_uri={}",
            pct_encode(&request_uri)
        ))
        .unwrap();
    assert_eq!(see_other(&r).unwrap(), "/login");
    let page = b.get("/login").unwrap().text();
    assert!(page.contains("Fintech App"), "sign-in page names the app");
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &csrf(&page).unwrap()),
                ("username", "taro"),
                ("password", DEMO_PASSWORD),
            ],
        )
        .unwrap();
    assert_eq!(see_other(&r).unwrap(), "/login");
    let page = b.get("/login").unwrap().text();
    assert!(page.contains("name=\"code\""), "TOTP step expected");
    let code = totp(TARO_TOTP, unix_now()).unwrap();
    let r = b
        .post("/login/totp", &[("csrf", &csrf(&page).unwrap()), ("code", &code)])
        .unwrap();
    assert_eq!(see_other(&r).unwrap(), "/login");
    let page = b.get("/login").unwrap().text();
    assert!(page.contains("id=\"approve\""), "consent page expected");
    let r = b
        .post(
            "/consent",
            &[("csrf", &csrf(&page).unwrap()), ("decision", "approve")],
        )
        .unwrap();
    let location = see_other(&r).unwrap();
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, REDIRECT);
    let q = decode_query(query);
    assert_eq!(q["iss"], w.auth.issuer);
    assert_eq!(q["state"], "st-1");

    // The app takes the code (PKCE) for an mTLS-bound user token.
    let r = w.as_post(
        &fintech_as,
        "/token",
        "fintech",
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    );
    assert_eq!(r.status, 200, "token: {}", r.text());
    let token = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let req = bearer("/accounts/taro-1/balances", &token);
    let echoed = w.admitted(&w.fintech, &req);
    assert_eq!(upstream_header(&echoed, "x-fapi-subject"), Some("user-taro"));
    assert_eq!(upstream_header(&echoed, "x-fapi-client-id"), Some("fintech"));
    assert_eq!(upstream_header(&echoed, "x-fapi-acr"), Some("urn:bank:acr:totp"));

    // Later, the account owner opens the connected-apps page and revokes the app.
    let mut b2 = w.auth.browser().unwrap();
    let page = b2.get("/apps").unwrap().text();
    let r = b2
        .post(
            "/login",
            &[
                ("csrf", &csrf(&page).unwrap()),
                ("username", "taro"),
                ("password", DEMO_PASSWORD),
            ],
        )
        .unwrap();
    assert_eq!(see_other(&r).unwrap(), "/login");
    assert_eq!(see_other(&b2.get("/login").unwrap()).unwrap(), "/apps");
    let page = b2.get("/apps").unwrap().text();
    assert_eq!(page.matches("class=\"app\"").count(), 1, "one connected app");
    assert!(page.contains("Fintech App"));
    let grant_id = hidden_field(&page, "grant_id").expect("grant_id field");
    let r = b2
        .post(
            "/apps/revoke",
            &[("csrf", &csrf(&page).unwrap()), ("grant_id", &grant_id)],
        )
        .unwrap();
    assert_eq!(see_other(&r).unwrap(), "/apps?done=revoked");
    let since = Instant::now();
    let took = w.refused_within(&w.fintech, &req, since, Duration::from_secs(10));
    eprintln!("        grant revoked on /apps: the app's token refused by Envoy {took:.2?} later");
    w.latencies.push(("connected apps (grant)", took));
    w.revoked.push((w.fintech.clone(), token.clone()));
    let r = w.refused(&w.fintech, &req, 401, "invalid_token", "token_revoked");
    let line = w.denial_line(r.header("x-fapi-interaction-id").unwrap());
    assert_eq!(line["client_id"], "fintech", "{line}");
    assert!(
        took <= Duration::from_secs(2 + FEED_INTERVAL + 1 + 2),
        "revocation reached Envoy only after {took:?}"
    );
}

fn key_rotation(w: &mut World) {
    // Before: tokens of the current key; one shown to Envoy (cached there), one not yet.
    let shown = w.mtls_token("alpha");
    let unseen = w.mtls_token("alpha");
    let old_kid = kid_of(&shown);
    w.admitted(&w.alpha, &bearer("/accounts/acc-1/balances", &shown));

    w.auth.rotate_keys().unwrap();
    // Graceful shutdown on SIGTERM, although Envoy holds keep-alive connections to the server.
    let stopping = Instant::now();
    let status = w.auth.stop().expect("fapi-as was running");
    let stopped = stopping.elapsed();
    eprintln!("        fapi-as stopped in {stopped:.2?} ({status})");
    assert_eq!(
        status.code(),
        Some(0),
        "fapi-as did not exit by itself on SIGTERM"
    );
    assert!(stopped < Duration::from_secs(3), "shutdown took {stopped:?}");
    let starting = Instant::now();
    w.auth
        .start(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("        fapi-as started again in {:.2?}", starting.elapsed());
    let jwks = w
        .send(&w.auth.client().unwrap(), &Req::get("/jwks"))
        .json()
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 3, "current, next and retired: {kids:?}");
    assert!(kids.contains(&old_kid.as_str()), "the retired key is published");

    // A token of the new key: unknown to the plugin, which refetches /jwks within the request.
    let fetched = w.stat("jwks.fetched");
    let fresh = w.mtls_token("alpha");
    let new_kid = kid_of(&fresh);
    assert_ne!(new_kid, old_kid);
    assert_eq!(kids[0], new_kid, "the new current key signs");
    let t = Instant::now();
    let echoed = w.admitted(&w.alpha, &bearer("/accounts/acc-1/balances", &fresh));
    eprintln!(
        "        first new-key token admitted in {:.0?} (refetch included)",
        t.elapsed()
    );
    assert_eq!(upstream_header(&echoed, "x-fapi-client-id"), Some("pkj-mtls"));
    w.stat_reaches("jwks.fetched", fetched + 1, Duration::from_secs(3));
    // More new-key tokens, on both workers.
    for _ in 0..4 {
        let t = w.mtls_token("alpha");
        w.admitted(&w.alpha, &bearer("/accounts/acc-1/balances", &t));
    }
    // The retired key: a token Envoy never verified before still passes (the refetched set has it),
    // and so does the cached one.
    w.admitted(&w.alpha, &bearer("/accounts/acc-1/balances", &unseen));
    w.admitted(&w.alpha, &bearer("/accounts/acc-1/balances", &shown));
    // The feed resumed after the restart (same cursor, new process): feed-checked routes stay open,
    // and what was revoked before stays refused.
    let polls = w.stat("revocation_feed.ok");
    w.stat_reaches("revocation_feed.ok", polls + 2, Duration::from_secs(5));
    for (client, token) in &w.revoked {
        w.refused(
            client,
            &bearer("/accounts/acc-1/balances", token),
            401,
            "invalid_token",
            "token_revoked",
        );
    }
}
