//! The flows on PostgreSQL, with what PostgreSQL is for: two `fapi-as` instances on one database,
//! as behind a load balancer (same issuer, same key folder, same database; each on its own ports).
//! One throwaway PostgreSQL server (fapi-e2e's `Postgres::start`) for the whole file.
//!
//! - The main flow, its steps spread over both instances: PAR (RFC 9126) on A, `/authorize` on B,
//!   password on A, TOTP on B, consent on A; the code redeemed on B with private_key_jwt and an
//!   mTLS-bound token (RFC 8705 `cnf.x5t#S256`); refresh on A (refused with another certificate);
//!   revocation (RFC 7009) on B of a token A issued, then introspection (RFC 7662) on A says
//!   inactive and A's revocation feed lists it.
//! - Single use across instances: a code redeemed on A is refused on B, and that second use revokes
//!   what the first issued (RFC 6749 §4.1.2); a request_uri used on A is refused on B (RFC 9126 §4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{csrf, decode_query, enc, form_post, location, pkce, run, totp_now, Browser, TestDb, REDIRECT};
use common::{BIN, PASSWORD};
use fapi_core::alg::Algorithm;
use fapi_core::jwks::{Jwks, KeySelection};
use fapi_core::jws::CompactJws;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, wait_until, ScratchDir};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const FEED_TOKEN: &str = "feed-credential-for-two-instances-0123456789";

/// One `fapi-as serve` process and clients of its listeners.
struct Instance {
    name: &'static str,
    process: Process,
    https: u16,
    /// The mTLS listener with the certificate of client `fintech`.
    mtls: HttpsClient,
    /// The mTLS listener with another certificate (`other`).
    mtls_other: HttpsClient,
}

/// Fields drop in order: the instances stop before the database does.
struct Cluster {
    a: Instance,
    b: Instance,
    issuer: String,
    pki: TestPki,
    key: SigningKey,
    _dir: ScratchDir,
    _db: TestDb,
}

fn config_text(
    issuer: &str,
    mtls_base: &str,
    ports: (u16, u16, u16),
    pki: &TestPki,
    db: &str,
    dir: &Path,
) -> String {
    let (https, mtls, http) = ports;
    format!(
        "issuer = \"{issuer}\"\nmtls_base = \"{mtls_base}\"\n\
         [listen]\nhttps = \"127.0.0.1:{https}\"\nmtls = \"127.0.0.1:{mtls}\"\nhttp = \"127.0.0.1:{http}\"\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n\
         [database]\nurl = \"{db}\"\n\
         [keys]\ndir = \"{}/keys\"\nalg = \"ES256\"\n\
         [feed]\ntoken = \"{FEED_TOKEN}\"\n",
        pki.server.cert_pem.display(),
        pki.server.key_pem.display(),
        dir.display(),
    )
}

fn spawn(name: &'static str, config: &Path, ports: (u16, u16, u16), pki: &TestPki, dir: &Path) -> Instance {
    let process = Process::spawn(
        name,
        Path::new(BIN),
        &["-c".into(), config.display().to_string(), "serve".into()],
        &dir.join(format!("{name}.log")),
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "fapi-as health", || {
        Ok(fapi_e2e::client::http_get(ports.2, "/health")
            .ok()
            .filter(|(s, _)| *s == 200))
    })
    .unwrap_or_else(|e| panic!("{name}: {e}\n{}", process.log()));
    let mtls = |client: &str| {
        HttpsClient::new(ports.1, &pki.ca_der, pki.client(client), TlsVersion::Default).unwrap()
    };
    Instance {
        name,
        https: ports.0,
        mtls: mtls("fintech"),
        mtls_other: mtls("other"),
        process,
    }
}

/// One PostgreSQL database, seeded, with client `fintech` (private_key_jwt, mTLS-bound tokens);
/// instance A, then instance B (A creates the shared signing keys first).
fn start() -> Cluster {
    let (db, url) = TestDb::postgres();
    let dir = ScratchDir::new("as-two").unwrap();
    let pki = TestPki::generate(dir.path(), &["fintech", "other"]).unwrap();
    let port = || free_port().unwrap();
    let (pa, pb) = ((port(), port(), port()), (port(), port(), port()));
    // Behind a load balancer both answer for one issuer and one mTLS alias base.
    let issuer = format!("https://127.0.0.1:{}", pa.0);
    let mtls_base = format!("https://127.0.0.1:{}", pa.1);
    let (config_a, config_b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(
        &config_a,
        config_text(&issuer, &mtls_base, pa, &pki, &url, dir.path()),
    )
    .unwrap();
    std::fs::write(
        &config_b,
        config_text(&issuer, &mtls_base, pb, &pki, &url, dir.path()),
    )
    .unwrap();
    let key = SigningKey::generate(Algorithm::ES256, Some("fintech-1".into())).unwrap();
    let jwks = dir.join("fintech.jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
    let cfg = config_a.to_str().unwrap();
    run(&["-c", cfg, "seed"]);
    run(&[
        "-c",
        cfg,
        "client",
        "add",
        "--client-id",
        "fintech",
        "--name",
        "Fintech",
        "--redirect-uri",
        REDIRECT,
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "openid accounts payments",
    ]);
    let a = spawn("fapi-as-a", &config_a, pa, &pki, dir.path());
    let b = spawn("fapi-as-b", &config_b, pb, &pki, dir.path());
    Cluster {
        a,
        b,
        issuer,
        pki,
        key,
        _dir: dir,
        _db: db,
    }
}

impl Cluster {
    fn browser(&self, on: &Instance) -> Browser {
        Browser::new(on.https, &self.pki.ca_der)
    }

    fn to(&self, b: &mut Browser, on: &Instance) {
        b.switch_to(on.https, &self.pki.ca_der);
    }

    /// A form POST on `on`'s mTLS listener, authenticated with private_key_jwt (RFC 7523; the
    /// issuer as aud, a fresh jti).
    fn post(&self, on: &Instance, other_cert: bool, path: &str, params: &[(&str, &str)]) -> Resp {
        let t = unix_now();
        let assertion = self
            .key
            .sign_jwt(
                None,
                &json!({"iss": "fintech", "sub": "fintech", "aud": self.issuer, "jti": random_id(), "iat": t, "exp": t + 60}),
            )
            .unwrap();
        let mut pairs = vec![
            ("client_id", "fintech"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        pairs.extend_from_slice(params);
        let client = if other_cert { &on.mtls_other } else { &on.mtls };
        client
            .send(&form_post(path, &pairs))
            .unwrap_or_else(|e| panic!("{} {path}: {e}", on.name))
    }

    /// PAR on `on`: the request_uri.
    fn par(&self, on: &Instance, challenge: &str, extra: &[(&str, &str)]) -> String {
        let mut params = vec![
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid accounts"),
            ("state", "state-1"),
            ("nonce", "nonce-1"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        params.extend_from_slice(extra);
        let r = self.post(on, false, "/par", &params);
        assert_eq!(r.status, 201, "{}: {}", on.name, r.text());
        r.json().unwrap()["request_uri"].as_str().unwrap().to_string()
    }

    fn introspect(&self, on: &Instance, token: &str) -> Value {
        let r = self.post(on, false, "/introspect", &[("token", token)]);
        assert_eq!(r.status, 200, "{}: {}", on.name, r.text());
        r.json().unwrap()
    }

    /// The claims of an access token, after checking its signature against `on`'s /jwks.
    fn verified(&self, on: &Instance, jwt: &str) -> Value {
        let jwks = self.browser(on).get("/jwks");
        let jwks = Jwks::parse(&jwks.body).unwrap();
        let jws = CompactJws::parse(jwt).unwrap();
        assert_eq!(jws.header_str("typ").unwrap(), Some("at+jwt"));
        let KeySelection::Found(k) = jwks.select(jws.header_str("kid").unwrap(), Algorithm::ES256) else {
            panic!("no key on {}", on.name)
        };
        assert!(k.verify(Algorithm::ES256, jws.signing_input.as_bytes(), &jws.signature));
        Value::Object(jws.payload)
    }

    fn log(&self) -> String {
        format!(
            "--- A:\n{}\n--- B:\n{}",
            self.a.process.log(),
            self.b.process.log()
        )
    }
}

fn error_of(r: &Resp) -> String {
    r.json()
        .ok()
        .and_then(|j| j["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Password then consent, all on `on`, for a browser already sent to /login; returns the code.
fn sign_in_and_approve(c: &Cluster, b: &mut Browser, on: &Instance) -> String {
    c.to(b, on);
    let page = b.get("/login");
    let r = b.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    let page = b.get("/login");
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    let loc = location(&r);
    decode_query(loc.split_once('?').unwrap().1)["code"].clone()
}

#[test]
fn two_instances_on_one_postgresql() {
    let c = start();
    let (a, b) = (&c.a, &c.b);
    let x5t = c.pki.client("fintech").unwrap().x5t_s256();

    // ---- The main flow, over both instances.
    let (verifier, challenge) = pkce();
    let request_uri = c.par(a, &challenge, &[("acr_values", "urn:bank:acr:totp")]);
    let mut browser = c.browser(b);
    let r = browser.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login", "B finds the request A stored");
    c.to(&mut browser, a);
    let page = browser.get("/login");
    assert!(page.text().contains("name=\"password\""), "{}", page.text());
    let r = browser.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    c.to(&mut browser, b);
    let page = browser.get("/login");
    assert!(
        page.text().contains("name=\"code\""),
        "B asks for the TOTP step of A's sign-in: {}",
        page.text()
    );
    let r = browser.post("/login/totp", &[("csrf", &csrf(&page)), ("code", &totp_now(0))]);
    assert_eq!(location(&r), "/login");
    c.to(&mut browser, a);
    let page = browser.get("/login");
    assert!(page.text().contains("id=\"approve\""), "{}", page.text());
    let r = browser.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    let loc = location(&r);
    let (base, query) = loc.split_once('?').unwrap();
    assert_eq!(base, REDIRECT);
    let q = decode_query(query);
    assert_eq!(q["state"], "state-1");
    assert_eq!(q["iss"], c.issuer);

    // A's code, redeemed on B: an mTLS-bound token (RFC 8705 §3), signed by the shared key.
    let r = c.post(
        b,
        false,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), c.log());
    let tokens = r.json().unwrap();
    let first = tokens["access_token"].as_str().unwrap().to_string();
    let claims = c.verified(a, &first);
    assert_eq!(claims["cnf"]["x5t#S256"], json!(x5t));
    assert_eq!(claims["iss"], json!(c.issuer));
    let id_token = CompactJws::parse(tokens["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id_token.payload["acr"], json!("urn:bank:acr:totp"));
    assert_eq!(id_token.payload["amr"], json!(["pwd", "otp"]));
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();

    // Refresh on A: bound to the certificate (another one is refused), then a new bound token.
    let r = c.post(
        a,
        true,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(error_of(&r), "invalid_grant");
    let r = c.post(
        a,
        false,
        "/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let refreshed = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let refreshed_claims = c.verified(b, &refreshed);
    assert_eq!(refreshed_claims["cnf"]["x5t#S256"], json!(x5t));
    let jti = refreshed_claims["jti"].as_str().unwrap().to_string();
    assert_eq!(c.introspect(b, &refreshed)["active"], json!(true));

    // A's token revoked on B: inactive on A, and on A's feed.
    let r = c.post(
        b,
        false,
        "/revoke",
        &[("token", &refreshed), ("token_type_hint", "access_token")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.introspect(a, &refreshed), json!({"active": false}));
    let feed = HttpsClient::new(a.https, &c.pki.ca_der, None, TlsVersion::Default).unwrap();
    wait_until(Duration::from_secs(15), "the revocation on A's feed", || {
        let r = feed
            .send(&Req::get("/revocations").header("authorization", &format!("Bearer {FEED_TOKEN}")))
            .map_err(|e| e.to_string())?;
        let listed = r.json().map_err(|e| e.to_string())?["revoked"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["jti"] == json!(jti)));
        Ok(listed.then_some(()))
    })
    .unwrap();

    // ---- A code used on A, then again on B: refused, and what the first use issued is revoked.
    let (verifier, challenge) = pkce();
    let request_uri = c.par(a, &challenge, &[]);
    let mut browser = c.browser(a);
    let r = browser.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
    let code = sign_in_and_approve(&c, &mut browser, a);
    let redeem = |on: &Instance| {
        c.post(
            on,
            false,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
    };
    let r = redeem(a);
    assert_eq!(r.status, 200, "{}", r.text());
    let issued = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(c.introspect(b, &issued)["active"], json!(true));
    let r = redeem(b);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(error_of(&r), "invalid_grant");
    assert_eq!(
        c.introspect(a, &issued),
        json!({"active": false}),
        "the reuse on B revoked what A issued"
    );
    assert_eq!(error_of(&redeem(a)), "invalid_grant");

    // ---- A request_uri used on A is used up for B too (RFC 9126 §4), and the other way round.
    let (_, challenge) = pkce();
    for (first, second) in [(a, b), (b, a)] {
        let request_uri = c.par(first, &challenge, &[]);
        let path = format!("/authorize?client_id=fintech&request_uri={}", enc(&request_uri));
        assert_eq!(location(&c.browser(first).get(&path)), "/login");
        let r = c.browser(second).get(&path);
        assert_eq!(r.status, 400, "{} after {}", second.name, first.name);
        assert!(r.header("location").is_none());
    }
}
