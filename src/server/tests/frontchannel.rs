//! The front channel of the real `fapi-as` binary over real TLS: PAR with private_key_jwt on the mTLS
//! listener, the authorization endpoint, sign-in, TOTP, consent, the redirect with code, state and iss
//! (RFC 9207), JARM, the connected-apps page, passkeys (WebAuthn, with a software authenticator), the
//! per-address sign-in limit, and the refusals FAPI 2.0 asks for. On SQLite, or on PostgreSQL with
//! `FAPI_TEST_DATABASE=postgres` (tests/common/mod.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, ScratchDir};
use serde_json::{json, Value};
use std::path::PathBuf;

mod common;

use common::{
    csrf, decode_query, enc, form, location, pkce, run, totp_now, Browser, TestDb, BIN, PASSWORD, REDIRECT,
};

struct Server {
    _proc: Process,
    /// After the process: a PostgreSQL server stops only once fapi-as has.
    _db: TestDb,
    _dir: ScratchDir,
    issuer: String,
    browser_port: u16,
    mtls_port: u16,
    ca: Vec<u8>,
    mtls: HttpsClient,
    key: SigningKey,
    rsa_key: SigningKey,
    signer_key: SigningKey,
}

fn start(env: &[(&str, &str)]) -> Server {
    start_at("127.0.0.1", env)
}

/// `host` names the issuer (`localhost` for passkeys: an IP address cannot be a WebAuthn RP ID).
fn start_at(host: &str, env: &[(&str, &str)]) -> Server {
    let dir = ScratchDir::new("as-front").unwrap();
    let pki = TestPki::generate(dir.path(), &["fintech"]).unwrap();
    let (https, mtls, http) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let issuer = format!("https://{host}:{https}");
    let (db, db_url) = TestDb::from_env(dir.path());
    let config = dir.join("fapi-as.toml");
    std::fs::write(
        &config,
        format!(
            "{}[keys]\ndir = \"keys\"\nalg = \"ES256\"\n\
             [login]\nmax_failures = 3\nlockout = 120\nmax_failures_per_address = 50\n",
            common::config_head(
                &issuer,
                &format!("https://127.0.0.1:{mtls}"),
                (https, mtls, http),
                &pki,
                &db_url,
            ),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let key = SigningKey::generate(Algorithm::ES256, Some("fintech-1".into())).unwrap();
    let rsa_key = SigningKey::generate(Algorithm::RS256, Some("fintech-rsa".into())).unwrap();
    let jwks: PathBuf = dir.join("fintech.jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [key.public_jwk(), rsa_key.public_jwk()]}).to_string(),
    )
    .unwrap();
    let signer_key = SigningKey::generate(Algorithm::ES256, Some("signer-1".into())).unwrap();
    let signer_jwks: PathBuf = dir.join("signer.jwks.json");
    std::fs::write(
        &signer_jwks,
        json!({"keys": [signer_key.public_jwk()]}).to_string(),
    )
    .unwrap();
    run(&["-c", &cfg, "seed"]);
    run(&[
        "-c",
        &cfg,
        "client",
        "add",
        "--client-id",
        "fintech",
        "--name",
        "Fintech <App>",
        "--redirect-uri",
        REDIRECT,
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "openid accounts payments offline_access",
    ]);
    run(&[
        "-c",
        &cfg,
        "client",
        "add",
        "--client-id",
        "signer",
        "--name",
        "Signer",
        "--redirect-uri",
        REDIRECT,
        "--jwks",
        signer_jwks.to_str().unwrap(),
        "--require-signed-request-object",
    ]);
    let mut args: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    args.extend([BIN.to_string(), "-c".into(), cfg, "serve".into()]);
    let proc = Process::spawn(
        "fapi-as",
        std::path::Path::new("/usr/bin/env"),
        &args,
        &dir.join("serve.log"),
    )
    .unwrap();
    let browser = HttpsClient::new(https, &pki.ca_der, None, TlsVersion::Default).unwrap();
    common::wait_healthy(&browser, &proc);
    let identity = pki.client("fintech").unwrap();
    let mtls_client = HttpsClient::new(mtls, &pki.ca_der, Some(identity), TlsVersion::Default).unwrap();
    Server {
        _proc: proc,
        _db: db,
        _dir: dir,
        issuer,
        browser_port: https,
        mtls_port: mtls,
        ca: pki.ca_der.clone(),
        mtls: mtls_client,
        key,
        rsa_key,
        signer_key,
    }
}

impl Server {
    fn assertion_with(&self, key: &SigningKey, client_id: &str, jti: &str) -> String {
        let now = unix_now();
        key.sign_jwt(None, &json!({"iss": client_id, "sub": client_id, "aud": self.issuer, "jti": jti, "iat": now, "exp": now + 60}))
            .unwrap()
    }

    fn par_with(
        &self,
        assertion: &str,
        client_id: &str,
        params: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut pairs = vec![
            ("client_id", client_id),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ];
        pairs.extend_from_slice(params);
        let mut req = Req::post("/par")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(&form(&pairs));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.mtls.send(&req).unwrap()
    }

    fn par(&self, params: &[(&str, &str)]) -> Resp {
        self.par_with(
            &self.assertion_with(&self.key, "fintech", &random_id()),
            "fintech",
            params,
            &[],
        )
    }

    fn token_endpoint(&self, path: &str, params: &[(&str, &str)]) -> Resp {
        let assertion = self.assertion_with(&self.key, "fintech", &random_id());
        let mut pairs = vec![
            ("client_id", "fintech"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        pairs.extend_from_slice(params);
        let req = Req::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(&form(&pairs));
        self.mtls.send(&req).unwrap()
    }

    fn token(&self, params: &[(&str, &str)]) -> Resp {
        self.token_endpoint("/token", params)
    }

    fn browser(&self) -> Browser {
        Browser::new(self.browser_port, &self.ca)
    }
}

fn base_params<'a>(challenge: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid accounts"),
        ("state", "state-123"),
        ("nonce", "nonce-1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        p.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            p.push((k, v));
        }
    }
    p
}

/// PAR then `GET /authorize` in the browser; returns the request_uri.
fn start_flow(srv: &Server, b: &mut Browser, extra: &[(&str, &str)]) -> String {
    let (_verifier, challenge) = pkce();
    let r = srv.par(&base_params(&challenge, extra));
    assert_eq!(r.status, 201, "{}", r.text());
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    let r = b.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
    request_uri
}

#[test]
fn authorization_code_flow_with_totp_consent_jarm_and_apps() {
    let srv = start(&[]);
    let mut b = srv.browser();
    let (verifier, challenge) = pkce();

    // PAR (RFC 9126 §2.2): 201 with request_uri and expires_in under 600.
    let r = srv.par(&base_params(
        &challenge,
        &[("acr_values", "urn:bank:acr:totp"), ("ui_locales", "en")],
    ));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json().unwrap();
    let request_uri = body["request_uri"].as_str().unwrap().to_string();
    assert!(request_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert!(
        request_uri.len() >= "urn:ietf:params:oauth:request_uri:".len() + 43,
        "at least 256 bits: {request_uri}"
    );
    assert_eq!(body["expires_in"], json!(60));

    // Authorize: a session cookie with the right attributes, then the sign-in page.
    let r = b.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
    let sc = r.header("set-cookie").unwrap();
    for attr in [
        "__Host-fapi-session=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(sc.contains(attr), "{sc}");
    }
    let page = b.get("/login");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("Sign in") && html.contains("Fintech &lt;App&gt;"),
        "{html}"
    );
    // An IP-address issuer cannot be a WebAuthn RP: no passkey button, no script at all.
    assert!(
        !html.contains("<script") && !html.contains("data-passkey"),
        "{html}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        page.header("content-security-policy"),
        Some(fapi_as::frontchannel::CSP)
    );
    assert!(html.contains("data-testid=\"username\"") && html.contains("data-testid=\"sign-in\""));
    // RFC 9126 §4: the request_uri was used up by the first /authorize.
    let mut other = srv.browser();
    let r = other.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(r.status, 400, "reused request_uri");
    assert!(r.header("location").is_none());

    // Password, then the TOTP step that acr_values asks for.
    let page = b.sign_in_password(&page, "taro");
    assert!(
        page.text().contains("name=\"code\""),
        "TOTP step expected: {}",
        page.text()
    );
    let r = b.post("/login/totp", &[("csrf", &csrf(&page)), ("code", "000000")]);
    assert!(r.text().contains("not correct"), "{}", r.text());
    let r = b.post("/login/totp", &[("csrf", &csrf(&page)), ("code", &totp_now(0))]);
    assert_eq!(location(&r), "/login");

    // Consent in English, then in Japanese through the switch link.
    let page = b.get("/login");
    let html = page.text();
    assert!(
        html.contains("view your accounts, balances and transactions"),
        "{html}"
    );
    assert!(html.contains("confirm who you are"));
    assert!(
        html.contains("taro-1") && html.contains("山田 太郎"),
        "accounts and user listed: {html}"
    );
    assert!(html.contains("lang=ja"));
    let page = b.get("/login?lang=ja");
    assert!(
        page.text().contains("口座情報・残高・入出金明細の参照"),
        "{}",
        page.text()
    );
    assert!(page.text().contains("許可する"));

    // Approve: 303 to the registered redirect URI with code, state and iss.
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    let loc = location(&r);
    let (base, query) = loc.split_once('?').unwrap();
    assert_eq!(base, REDIRECT);
    let q = decode_query(query);
    assert!(q["code"].len() >= 43);
    assert_eq!(q["state"], "state-123");
    assert_eq!(q["iss"], srv.issuer);

    // The back channel takes the code (the CodeRecord contract): the id_token says what happened.
    let token = srv.token(&[
        ("grant_type", "authorization_code"),
        ("code", &q["code"]),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(token.status, 200, "{}", token.text());
    let token = token.json().unwrap();
    let access_token = token["access_token"].as_str().unwrap().to_string();
    let id_token = fapi_core::jws::CompactJws::parse(token["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id_token.payload["acr"], json!("urn:bank:acr:totp"));
    assert_eq!(id_token.payload["amr"], json!(["pwd", "otp"]));
    assert_eq!(id_token.payload["nonce"], json!("nonce-1"));
    let r = srv.token_endpoint("/introspect", &[("token", &access_token)]);
    assert_eq!(r.json().unwrap()["active"], json!(true), "{}", r.text());

    // Still used up after the flow: a second authorize shows an error page, no redirect.
    let r = b.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());

    // A second request reuses the signed-in session (no acr_values: password level suffices), with
    // JARM: the response is a JWT signed by a key of /jwks.
    start_flow(&srv, &mut b, &[("response_mode", "jwt"), ("state", "s2")]);
    let page = b.get("/login");
    assert!(
        page.text().contains("id=\"approve\""),
        "consent directly: {}",
        page.text()
    );
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    let loc = location(&r);
    let jwt = loc
        .strip_prefix(&format!("{REDIRECT}?response="))
        .unwrap_or_else(|| panic!("{loc}"));
    let jws = fapi_core::jws::CompactJws::parse(jwt).unwrap();
    let jwks = b.get("/jwks").json().unwrap();
    let jwks = fapi_core::jwks::Jwks::from_value(&jwks).unwrap();
    let kid = jws.header_str("kid").unwrap();
    let fapi_core::jwks::KeySelection::Found(k) = jwks.select(kid, Algorithm::ES256) else {
        panic!("no key")
    };
    assert!(k.verify(Algorithm::ES256, jws.signing_input.as_bytes(), &jws.signature));
    assert_eq!(jws.payload["iss"], json!(srv.issuer));
    assert_eq!(jws.payload["aud"], json!("fintech"));
    assert_eq!(jws.payload["state"], json!("s2"));
    assert!(jws.payload["code"].as_str().unwrap().len() >= 43);
    assert!(jws.payload["exp"].as_i64().unwrap() <= unix_now() + 61);

    // Deny: access_denied with state and iss.
    start_flow(&srv, &mut b, &[("state", "s3")]);
    let page = b.get("/login");
    let loc = location(&b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "deny")]));
    let q = decode_query(loc.split_once('?').unwrap().1);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "s3");
    assert_eq!(q["iss"], srv.issuer);

    // Step-up: a session signed in with TOTP earlier still passes; prompt=login forces a new sign-in.
    start_flow(&srv, &mut b, &[("prompt", "login")]);
    assert!(b.get("/login").text().contains("name=\"password\""));

    // Connected apps: both approved grants listed; revoke one.
    let mut b2 = srv.browser();
    let page = b2.get("/apps");
    assert!(page.text().contains("name=\"password\""), "sign-in first");
    let r = b2.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    assert_eq!(location(&b2.get("/login")), "/apps");
    let page = b2.get("/apps");
    let html = page.text();
    assert_eq!(html.matches("class=\"app\"").count(), 2, "{html}");
    assert!(html.contains("Fintech &lt;App&gt;") && html.contains("Last used") && html.contains("JST"));
    let start = html.find("name=\"grant_id\" value=\"").unwrap() + 23;
    let grant_id = html[start..].split('"').next().unwrap().to_string();
    let r = b2.post("/apps/revoke", &[("grant_id", &grant_id)]);
    assert_eq!(r.status, 403, "CSRF token required");
    let r = b2.post("/apps/revoke", &[("csrf", &csrf(&page)), ("grant_id", &grant_id)]);
    assert_eq!(location(&r), "/apps?done=revoked");
    let html = b2.get("/apps").text();
    assert_eq!(html.matches("class=\"app\"").count(), 1, "{html}");
    assert!(html.contains("revoked"));
    // The first grant's access token is revoked with it.
    let r = srv.token_endpoint("/introspect", &[("token", &access_token)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json().unwrap()["active"],
        json!(false),
        "revoked with its grant"
    );
    let html = b2.get("/apps?lang=ja").text();
    assert!(html.contains("連携中のアプリ") && html.contains("取り消す"));
}

#[test]
fn par_authorize_and_sign_in_refusals() {
    let srv = start(&[]);
    let (_v, challenge) = pkce();
    let err = |r: &Resp| -> (u16, String) {
        (
            r.status,
            r.json()
                .map(|j| j["error"].as_str().unwrap_or("").to_string())
                .unwrap_or_default(),
        )
    };

    // PKCE missing / plain; redirect_uri mismatch; scope not allowed.
    assert_eq!(
        err(&srv.par(&base_params(
            &challenge,
            &[("code_challenge", ""), ("code_challenge_method", "")]
        ))),
        (400, "invalid_request".into())
    );
    assert_eq!(
        err(&srv.par(&base_params(&challenge, &[("code_challenge_method", "")]))),
        (400, "invalid_request".into())
    );
    let r = srv.par(&base_params(&challenge, &[("code_challenge_method", "plain")]));
    assert_eq!(err(&r), (400, "invalid_request".into()));
    assert!(r.text().contains("plain"));
    assert_eq!(
        err(&srv.par(&base_params(
            &challenge,
            &[("redirect_uri", "https://app.example/other")]
        ))),
        (400, "invalid_request".into())
    );
    assert_eq!(
        err(&srv.par(&base_params(&challenge, &[("redirect_uri", "")]))),
        (400, "invalid_request".into())
    );
    assert_eq!(
        err(&srv.par(&base_params(&challenge, &[("scope", "openid admin")]))),
        (400, "invalid_scope".into())
    );
    assert_eq!(
        err(&srv.par(&base_params(&challenge, &[("response_type", "token")]))),
        (400, "unsupported_response_type".into())
    );

    // Unknown client; RS256 assertion (with a registered RSA key); replayed jti.
    let a = srv.assertion_with(&srv.key, "nobody", &random_id());
    assert_eq!(
        err(&srv.par_with(&a, "nobody", &base_params(&challenge, &[]), &[])),
        (401, "invalid_client".into())
    );
    let a = srv.assertion_with(&srv.rsa_key, "fintech", &random_id());
    let r = srv.par_with(&a, "fintech", &base_params(&challenge, &[]), &[]);
    assert_eq!(err(&r), (401, "invalid_client".into()));
    assert!(r.text().contains("algorithm"), "{}", r.text());
    let a = srv.assertion_with(&srv.key, "fintech", "same-jti");
    assert_eq!(
        srv.par_with(&a, "fintech", &base_params(&challenge, &[]), &[])
            .status,
        201
    );
    assert_eq!(
        err(&srv.par_with(&a, "fintech", &base_params(&challenge, &[]), &[])),
        (401, "invalid_client".into())
    );
    // No client authentication at all.
    let r = srv
        .mtls
        .send(
            &Req::post("/par")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&form(&base_params(&challenge, &[]))),
        )
        .unwrap();
    assert_eq!(err(&r), (401, "invalid_client".into()));

    // DPoP at PAR (RFC 9449 §10.1): a proof binds dpop_jkt; a different dpop_jkt is refused.
    let dpop = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let htu = format!("https://127.0.0.1:{}/par", srv.mtls_port);
    let proof = dpop
        .dpop_proof("POST", &htu, None, unix_now(), &random_id(), None)
        .unwrap();
    let a = srv.assertion_with(&srv.key, "fintech", &random_id());
    assert_eq!(
        srv.par_with(&a, "fintech", &base_params(&challenge, &[]), &[("DPoP", &proof)])
            .status,
        201
    );
    let a = srv.assertion_with(&srv.key, "fintech", &random_id());
    let r = srv.par_with(&a, "fintech", &base_params(&challenge, &[]), &[("DPoP", &proof)]);
    assert_eq!(err(&r), (400, "invalid_dpop_proof".into()), "replayed proof");
    let proof = dpop
        .dpop_proof("POST", &htu, None, unix_now(), &random_id(), None)
        .unwrap();
    let other_jkt = b64::sha256_b64("x");
    let a = srv.assertion_with(&srv.key, "fintech", &random_id());
    let r = srv.par_with(
        &a,
        "fintech",
        &base_params(&challenge, &[("dpop_jkt", &other_jkt)]),
        &[("DPoP", &proof)],
    );
    assert_eq!(err(&r), (400, "invalid_request".into()));

    // Signed request objects: required for "signer"; only the object's parameters count.
    let now = unix_now();
    let a = srv.assertion_with(&srv.signer_key, "signer", &random_id());
    let r = srv.par_with(&a, "signer", &base_params(&challenge, &[]), &[]);
    assert_eq!(err(&r), (400, "invalid_request".into()));
    let ro = |claims: Value| {
        srv.signer_key
            .sign_jwt(Some("oauth-authz-req+jwt"), &claims)
            .unwrap()
    };
    let good = json!({"iss": "signer", "aud": srv.issuer, "exp": now + 60, "nbf": now, "client_id": "signer",
        "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid", "code_challenge": challenge, "code_challenge_method": "S256"});
    let a = srv.assertion_with(&srv.signer_key, "signer", &random_id());
    let r = srv.par_with(&a, "signer", &[("request", &ro(good.clone()))], &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    let mut no_pkce = good.clone();
    no_pkce.as_object_mut().unwrap().remove("code_challenge");
    let a = srv.assertion_with(&srv.signer_key, "signer", &random_id());
    let mut outer = base_params(&challenge, &[]);
    let ro_jwt = ro(no_pkce);
    outer.push(("request", &ro_jwt));
    assert_eq!(
        err(&srv.par_with(&a, "signer", &outer, &[])),
        (400, "invalid_request".into()),
        "outer PKCE is not used"
    );
    let mut long = good.clone();
    long["exp"] = json!(now + 3700);
    let a = srv.assertion_with(&srv.signer_key, "signer", &random_id());
    assert_eq!(
        err(&srv.par_with(&a, "signer", &[("request", &ro(long))], &[])),
        (400, "invalid_request_object".into())
    );

    // Authorize without PAR: an error page, never a redirect to an unverified URI.
    let mut b = srv.browser();
    let r = b.get(&format!("/authorize?response_type=code&client_id=fintech&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256", enc("https://evil.example/cb")));
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    assert!(r.text().contains("PAR"));
    let r =
        b.get("/authorize?client_id=fintech&request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3Anope");
    assert_eq!(r.status, 400);
    // client_id must match the pushed request.
    let r = srv.par(&base_params(&challenge, &[]));
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    let r = b.get(&format!(
        "/authorize?client_id=signer&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(r.status, 400);

    // CSRF: a POST without the token is refused and signs nobody in.
    let r = b.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
    let r = b.post("/login", &[("username", "taro"), ("password", PASSWORD)]);
    assert_eq!(r.status, 403);
    let r = b.post(
        "/login",
        &[("csrf", "forged"), ("username", "taro"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 403);
    let page = b.get("/login");
    assert!(page.text().contains("name=\"password\""));
    let r = b.post("/consent", &[("decision", "approve")]);
    assert_eq!(r.status, 403);

    // Lockout after 3 failures (of this account from this address), with the message in both languages; the right
    // password is refused while locked. Unknown usernames count the same way.
    let token = csrf(&page);
    for i in 0..2 {
        let r = b.post(
            "/login",
            &[("csrf", &token), ("username", "hanako"), ("password", "wrong")],
        );
        assert_eq!(r.status, 200, "attempt {i}");
        assert!(r.text().contains("not correct"));
    }
    let r = b.post(
        "/login",
        &[("csrf", &token), ("username", "hanako"), ("password", "wrong")],
    );
    assert_eq!(r.status, 429);
    assert!(r.text().contains("temporarily locked"), "{}", r.text());
    let r = b.post(
        "/login",
        &[("csrf", &token), ("username", "hanako"), ("password", PASSWORD)],
    );
    assert_eq!(r.status, 429);
    b.lang = "ja".into();
    b.cookies.remove("__Host-fapi-lang");
    let r = b.post(
        "/login",
        &[("csrf", &token), ("username", "hanako"), ("password", PASSWORD)],
    );
    assert!(r.text().contains("ロック"), "{}", r.text());
    b.lang = "en".into();
    // taro (another account) still signs in: the account limit is per account.
    let r = b.post(
        "/login",
        &[("csrf", &token), ("username", "taro"), ("password", PASSWORD)],
    );
    assert_eq!(location(&r), "/login");
    // TOTP failures count as well: 3 wrong codes lock taro.
    let (_v, challenge) = pkce();
    let r = srv.par(&base_params(&challenge, &[("acr_values", "urn:bank:acr:totp")]));
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    b.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    let page = b.get("/login");
    assert!(
        page.text().contains("name=\"code\""),
        "step-up to TOTP for a session signed in with a password: {}",
        page.text()
    );
    let token = csrf(&page);
    let code = totp_now(0);
    let r = b.post("/login/totp", &[("csrf", &token), ("code", &code)]);
    assert_eq!(location(&r), "/login");
    // Same step again (another session): refused as used.
    let mut b3 = srv.browser();
    let (_v, challenge) = pkce();
    let r = srv.par(&base_params(&challenge, &[("acr_values", "urn:bank:acr:totp")]));
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    b3.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    let page = b3.get("/login");
    let r = b3.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    let page = b3.get("/login");
    let token = csrf(&page);
    let r = b3.post("/login/totp", &[("csrf", &token), ("code", &code)]);
    assert!(r.text().contains("already been used"), "{}", r.text());
    b3.post("/login/totp", &[("csrf", &token), ("code", "000001")]);
    let r = b3.post("/login/totp", &[("csrf", &token), ("code", "000002")]);
    assert_eq!(r.status, 429);
    assert!(r.text().contains("temporarily locked"));
}

/// Static-key ECDH on P-256: the client's side of a JWE (ring only has ephemeral agreement).
fn ecdh(d: &[u8], point: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::point::AffineCoordinates;
    use p256::elliptic_curve::sec1::FromSec1Point;
    use p256::elliptic_curve::PrimeField;
    let repr: [u8; 32] = d.try_into().ok()?;
    let scalar: Option<p256::Scalar> = p256::Scalar::from_repr(repr.into()).into();
    let peer = p256::AffinePoint::from_sec1_bytes(point).ok()?;
    Some(
        (p256::ProjectivePoint::from(peer) * scalar?)
            .to_affine()
            .x()
            .to_vec(),
    )
}

#[test]
fn jarm_responses_are_encrypted_for_a_client_added_with_an_encryption_key() {
    let srv = start(&[]);
    let cfg = srv._dir.join("fapi-as.toml");
    let cfg = cfg.to_str().unwrap();
    let enc_key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let private = enc_key.private_jwk();
    let d = b64::decode(private["d"].as_str().unwrap()).unwrap();
    let jwks = srv._dir.join("jarm.jwks.json");
    std::fs::write(
        &jwks,
        json!({"keys": [srv.key.public_jwk(), {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "jarm-enc-1", "x": private["x"], "y": private["y"]}]})
            .to_string(),
    )
    .unwrap();
    let jwks = jwks.to_str().unwrap();
    let add = |extra: &[&str]| {
        let mut args = vec![
            "-c",
            cfg,
            "client",
            "add",
            "--client-id",
            "jarm-enc",
            "--redirect-uri",
            REDIRECT,
            "--jwks",
            jwks,
        ];
        args.extend_from_slice(extra);
        common::try_run(&args)
    };
    // Refused by `client add`: enc missing (its registration default is not implemented), an alg
    // the server's key does not have, no key marked for encryption.
    let (ok, err) = add(&["--authorization-encrypted-response-alg", "ECDH-ES"]);
    assert!(!ok && err.contains("authorization"), "{err}");
    let (ok, err) = add(&["--authorization-signed-response-alg", "PS256"]);
    assert!(!ok && err.contains("ES256"), "{err}");
    let signing_only = srv._dir.join("fintech.jwks.json");
    let (ok, err) = common::try_run(&[
        "-c",
        cfg,
        "client",
        "add",
        "--client-id",
        "jarm-enc",
        "--redirect-uri",
        REDIRECT,
        "--jwks",
        signing_only.to_str().unwrap(),
        "--authorization-encrypted-response-alg",
        "ECDH-ES",
        "--authorization-encrypted-response-enc",
        "A256GCM",
    ]);
    assert!(!ok && err.contains("marked for encryption"), "{err}");
    let (ok, err) = add(&[
        "--authorization-signed-response-alg",
        "ES256",
        "--authorization-encrypted-response-alg",
        "ECDH-ES",
        "--authorization-encrypted-response-enc",
        "A256GCM",
    ]);
    assert!(ok, "{err}");

    // Discovery says what a client may register.
    let mut b = srv.browser();
    let meta = b.get("/.well-known/openid-configuration").json().unwrap();
    assert_eq!(
        meta["authorization_encryption_alg_values_supported"],
        json!(["ECDH-ES"])
    );
    assert_eq!(
        meta["authorization_encryption_enc_values_supported"],
        json!(["A256GCM", "A128GCM"])
    );
    assert_eq!(
        meta["authorization_signing_alg_values_supported"],
        json!(["ES256"])
    );

    // PAR with response_mode=jwt, sign-in, consent: the response is a JWE (JARM §2.3) that the
    // client's key opens, holding the JARM JWT signed by the server's key.
    let (_v, challenge) = pkce();
    let a = srv.assertion_with(&srv.key, "jarm-enc", &random_id());
    let r = srv.par_with(
        &a,
        "jarm-enc",
        &base_params(&challenge, &[("response_mode", "jwt"), ("scope", "openid")]),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    let r = b.get(&format!(
        "/authorize?client_id=jarm-enc&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
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
    let loc = location(&b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]));
    let q = decode_query(loc.split_once('?').unwrap().1);
    assert_eq!(q.keys().collect::<Vec<_>>(), vec!["response"], "{loc}");
    let jwe = &q["response"];
    assert_eq!(jwe.split('.').count(), 5, "a compact JWE: {jwe}");
    assert!(
        fapi_as::jwe::decrypt_with(jwe, |p| ecdh(&[0u8; 32], p)).is_err(),
        "only the client's key opens it"
    );
    let opened = fapi_as::jwe::decrypt_with(jwe, |p| ecdh(&d, p)).unwrap();
    assert_eq!(opened.header["alg"], json!("ECDH-ES"));
    assert_eq!(opened.header["enc"], json!("A256GCM"));
    assert_eq!(opened.header["cty"], json!("JWT"));
    assert_eq!(opened.header["kid"], json!("jarm-enc-1"));
    let jws = fapi_core::jws::CompactJws::parse(std::str::from_utf8(&opened.plaintext).unwrap()).unwrap();
    let keys = fapi_core::jwks::Jwks::from_value(&b.get("/jwks").json().unwrap()).unwrap();
    let fapi_core::jwks::KeySelection::Found(k) =
        keys.select(jws.header_str("kid").unwrap(), Algorithm::ES256)
    else {
        panic!("no key")
    };
    assert!(k.verify(Algorithm::ES256, jws.signing_input.as_bytes(), &jws.signature));
    assert_eq!(jws.payload["iss"], json!(srv.issuer));
    assert_eq!(jws.payload["aud"], json!("jarm-enc"));
    assert_eq!(jws.payload["state"], json!("state-123"));
    assert!(jws.payload["code"].as_str().unwrap().len() >= 43);
}

/// Signs `name` in from `b`'s sign-in page with headers; returns the response.
fn sign_in_with(b: &mut Browser, token: &str, name: &str, password: &str, headers: &[(&str, &str)]) -> Resp {
    b.post_with(
        "/login",
        &[("csrf", token), ("username", name), ("password", password)],
        headers,
    )
}

#[test]
fn per_address_limit_keys_on_the_peer_not_on_a_forged_forwarded_for() {
    // No trusted proxies (the default): X-Forwarded-For is the client's own word and is ignored;
    // this test connects from 127.0.0.1, which is the address that gets counted and locked.
    let srv = start(&[("FAPI_AS_LOGIN_MAX_FAILURES_PER_ADDRESS", "4")]);
    let mut b = srv.browser();
    let token = csrf(&b.get("/apps"));
    for (i, forged) in ["203.0.113.1", "203.0.113.2", "198.51.100.3"].iter().enumerate() {
        let r = sign_in_with(
            &mut b,
            &token,
            &format!("ghost{i}"),
            "x",
            &[("x-forwarded-for", forged)],
        );
        assert_eq!(r.status, 200, "attempt {i}");
    }
    let r = sign_in_with(
        &mut b,
        &token,
        "ghost9",
        "x",
        &[("x-forwarded-for", "192.0.2.44")],
    );
    assert_eq!(r.status, 429, "the 4th failure locks the peer address");
    assert!(r.text().contains("your network"), "{}", r.text());
    // A new forged address does not get the attacker out, even with a right password.
    for forged in ["192.0.2.99", "2001:db8::7", "10.0.0.1, 192.0.2.98"] {
        let r = sign_in_with(&mut b, &token, "taro", PASSWORD, &[("x-forwarded-for", forged)]);
        assert_eq!(r.status, 429, "forged {forged}");
        assert!(r.text().contains("your network"));
    }
    let r = sign_in_with(&mut b, &token, "taro", PASSWORD, &[]);
    assert_eq!(r.status, 429);

    // Behind a trusted proxy (here 127.0.0.1 plays the bank's reverse proxy) the header is believed:
    // the client address it names is what gets locked, and other clients still sign in.
    let srv = start(&[
        ("FAPI_AS_LOGIN_MAX_FAILURES_PER_ADDRESS", "4"),
        ("FAPI_AS_LOGIN_TRUSTED_PROXIES", "[\"127.0.0.1\", \"10.0.0.0/8\"]"),
    ]);
    let mut b = srv.browser();
    let token = csrf(&b.get("/apps"));
    let attacker = [("x-forwarded-for", "203.0.113.9")];
    for i in 0..3 {
        let r = sign_in_with(&mut b, &token, &format!("ghost{i}"), "x", &attacker);
        assert_eq!(r.status, 200, "attempt {i}");
    }
    // What the attacker prepends is not believed: the right-most untrusted hop is the client.
    let prepended = [("x-forwarded-for", "192.0.2.1, 203.0.113.9, 10.1.2.3")];
    let r = sign_in_with(&mut b, &token, "ghost3", "x", &prepended);
    assert_eq!(r.status, 429, "{}", r.text());
    let r = sign_in_with(&mut b, &token, "taro", PASSWORD, &attacker);
    assert_eq!(r.status, 429);
    assert!(r.text().contains("your network"));
    let r = sign_in_with(
        &mut b,
        &token,
        "taro",
        PASSWORD,
        &[("x-forwarded-for", "198.51.100.20")],
    );
    assert_eq!(location(&r), "/login", "another client behind the proxy");
}

/// A software passkey (ES256, user presence and verification), as Chromium's virtual authenticator
/// would answer (WebAuthn Level 2 §6.1, §6.5, fmt "none").
struct SoftPasskey {
    key: ring::signature::EcdsaKeyPair,
    id: Vec<u8>,
    origin: String,
}

impl SoftPasskey {
    fn new(origin: &str) -> Self {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        SoftPasskey {
            key,
            id: random_id().into_bytes(),
            origin: origin.to_string(),
        }
    }

    fn cbor(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    fn auth_data(&self, rp_id: &str, count: u32, attested: bool) -> Vec<u8> {
        use ring::signature::KeyPair;
        let mut out = b64::sha256(rp_id.as_bytes()).to_vec();
        out.push(0x05 | if attested { 0x40 } else { 0 });
        out.extend_from_slice(&count.to_be_bytes());
        if attested {
            use ciborium::Value as C;
            let p = self.key.public_key().as_ref();
            let i = |n: i64| C::Integer(n.into());
            let cose = C::Map(vec![
                (i(1), i(2)),
                (i(3), i(-7)),
                (i(-1), i(1)),
                (i(-2), C::Bytes(p[1..33].to_vec())),
                (i(-3), C::Bytes(p[33..65].to_vec())),
            ]);
            out.extend_from_slice(&[0u8; 16]);
            out.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
            out.extend_from_slice(&self.id);
            out.extend(Self::cbor(&cose));
        }
        out
    }

    /// What the page posts after `navigator.credentials.create`.
    fn register(&self, options: &Value) -> String {
        use ciborium::Value as C;
        let cd = self.client_data("webauthn.create", options["challenge"].as_str().unwrap());
        let att = C::Map(vec![
            (C::Text("fmt".into()), C::Text("none".into())),
            (C::Text("attStmt".into()), C::Map(vec![])),
            (
                C::Text("authData".into()),
                C::Bytes(self.auth_data(options["rp"]["id"].as_str().unwrap(), 0, true)),
            ),
        ]);
        json!({"id": b64::encode(&self.id), "rawId": b64::encode(&self.id), "type": "public-key",
               "response": {"clientDataJSON": b64::encode(&cd), "attestationObject": b64::encode(Self::cbor(&att)),
                            "transports": ["internal"]}})
        .to_string()
    }

    /// What the page posts after `navigator.credentials.get`; `tamper` breaks the signature.
    fn assert(&self, options: &Value, count: u32, user_handle: &str, tamper: bool) -> String {
        let cd = self.client_data("webauthn.get", options["challenge"].as_str().unwrap());
        let auth = self.auth_data(options["rpId"].as_str().unwrap(), count, false);
        let mut message = auth.clone();
        message.extend_from_slice(&b64::sha256(&cd));
        if tamper {
            message.push(0);
        }
        let sig = self.key.sign(&ring::rand::SystemRandom::new(), &message).unwrap();
        json!({"id": b64::encode(&self.id), "rawId": b64::encode(&self.id), "type": "public-key",
               "response": {"clientDataJSON": b64::encode(&cd), "authenticatorData": b64::encode(&auth),
                            "signature": b64::encode(sig.as_ref()), "userHandle": b64::encode(user_handle)}})
        .to_string()
    }
}

#[test]
fn passkeys_register_sign_in_and_refusals_count_as_failures() {
    let srv = start_at("localhost", &[("FAPI_AS_LOGIN_MAX_FAILURES_PER_ADDRESS", "4")]);
    assert!(srv.issuer.starts_with("https://localhost:"));
    let passkey = SoftPasskey::new(&srv.issuer);

    // The sign-in page offers passkeys, with its one same-origin script and a CSP that allows it.
    let mut b = srv.browser();
    let page = b.get("/apps");
    let html = page.text();
    assert!(html.contains("data-testid=\"passkey-sign-in\"") && html.contains("Sign in with a passkey"));
    assert!(html.contains("<script src=\"/assets/passkey.js\" defer></script>"));
    assert_eq!(html.matches("<script").count(), 1);
    assert_eq!(
        page.header("content-security-policy"),
        Some(fapi_as::frontchannel::CSP_PASSKEY)
    );
    let js = b.get("/assets/passkey.js");
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    assert!(js.text().contains("navigator.credentials.get"));

    // Registration needs a signed-in session.
    let r = b.post("/passkey/register/options", &[("csrf", &csrf(&page))]);
    assert_eq!(r.status, 403);
    let r = b.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    let page = b.get("/apps");
    assert!(
        page.text().contains("data-testid=\"passkey-register\""),
        "{}",
        page.text()
    );
    let token = csrf(&page);
    let r = b.post("/passkey/register/options", &[("token", &token)]);
    assert_eq!(r.status, 403, "CSRF token required");
    let options = b
        .post("/passkey/register/options", &[("csrf", &token)])
        .json()
        .unwrap();
    assert_eq!(options["rp"]["id"], json!("localhost"));
    assert_eq!(options["user"]["id"], json!(b64::encode("user-taro")));
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        json!("required")
    );
    let r = b.post(
        "/passkey/register",
        &[("csrf", &token), ("credential", &passkey.register(&options))],
    );
    assert_eq!(location(&r), "/apps?done=passkey_registered");
    let html = b.get("/apps?done=passkey_registered").text();
    assert!(html.contains("data-testid=\"notice\"") && html.contains("passkey is registered"));
    // The challenge was single use: the same registration again is refused.
    let r = b.post(
        "/passkey/register",
        &[("csrf", &token), ("credential", &passkey.register(&options))],
    );
    assert_eq!(location(&r), "/apps?done=passkey_failed");
    // And the same credential cannot be registered twice (now excluded by the options, too).
    let options = b
        .post("/passkey/register/options", &[("csrf", &token)])
        .json()
        .unwrap();
    assert_eq!(
        options["excludeCredentials"][0]["id"],
        json!(b64::encode(&passkey.id))
    );
    let r = b.post(
        "/passkey/register",
        &[("csrf", &token), ("credential", &passkey.register(&options))],
    );
    assert_eq!(location(&r), "/apps?done=passkey_failed");

    // Sign-in with the passkey in an authorization flow that asks for TOTP: the passkey is stronger.
    let mut b2 = srv.browser();
    let (verifier, challenge) = pkce();
    let r = srv.par(&base_params(&challenge, &[("acr_values", "urn:bank:acr:totp")]));
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    b2.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    let page = b2.get("/login");
    let token = csrf(&page);
    let options = b2
        .post("/login/passkey/options", &[("csrf", &token)])
        .json()
        .unwrap();
    assert_eq!(options["rpId"], json!("localhost"));
    assert_eq!(options["userVerification"], json!("required"));
    let good = passkey.assert(&options, 1, "user-taro", false);
    let r = b2.post("/login/passkey", &[("csrf", &token), ("credential", &good)]);
    assert_eq!(location(&r), "/login");
    let page = b2.get("/login");
    assert!(
        page.text().contains("data-testid=\"approve\""),
        "consent: {}",
        page.text()
    );
    let loc = location(&b2.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]));
    let q = decode_query(loc.split_once('?').unwrap().1);
    let token_resp = srv.token(&[
        ("grant_type", "authorization_code"),
        ("code", &q["code"]),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ]);
    assert_eq!(token_resp.status, 200, "{}", token_resp.text());
    let body = token_resp.json().unwrap();
    let id_token = fapi_core::jws::CompactJws::parse(body["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id_token.payload["acr"], json!("urn:bank:acr:passkey"));
    assert_eq!(id_token.payload["amr"], json!(["hwk", "user"]));

    // Refusals, each counted against the source address (limit 4 here), the known-credential ones
    // against taro's account too (limit 3: two of them below).
    let mut b3 = srv.browser();
    let token = csrf(&b3.get("/apps"));
    let refused = |r: &Resp| {
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("passkey could not be verified"), "{}", r.text());
    };
    // 1. A replayed assertion: its challenge is gone (single use), none issued to this session.
    refused(&b3.post("/login/passkey", &[("csrf", &token), ("credential", &good)]));
    // 2. A bad signature.
    let options = b3
        .post("/login/passkey/options", &[("csrf", &token)])
        .json()
        .unwrap();
    let bad = passkey.assert(&options, 2, "user-taro", true);
    refused(&b3.post("/login/passkey", &[("csrf", &token), ("credential", &bad)]));
    // 3. A signature counter that did not increase (a possible clone).
    let options = b3
        .post("/login/passkey/options", &[("csrf", &token)])
        .json()
        .unwrap();
    let cloned = passkey.assert(&options, 1, "user-taro", false);
    refused(&b3.post("/login/passkey", &[("csrf", &token), ("credential", &cloned)]));
    // 4. Garbage: the fourth failure from this address locks it; a good assertion is then refused.
    let r = b3.post("/login/passkey", &[("csrf", &token), ("credential", "{not json")]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("your network"));
    let options = b3
        .post("/login/passkey/options", &[("csrf", &token)])
        .json()
        .unwrap();
    let r = b3.post(
        "/login/passkey",
        &[
            ("csrf", &token),
            ("credential", &passkey.assert(&options, 9, "user-taro", false)),
        ],
    );
    assert_eq!(r.status, 429);
    let metrics = b3.get("/metrics").text();
    assert!(
        metrics.contains("endpoint=\"passkey\",outcome=\"failed\"} 4"),
        "{metrics}"
    );
}

#[test]
fn passkeys_are_listed_and_removed_by_their_owner_only() {
    let srv = start_at("localhost", &[]);
    let passkey = SoftPasskey::new(&srv.issuer);
    let sign_in = |b: &mut Browser, user: &str| {
        let page = b.get("/apps");
        let r = b.post(
            "/login",
            &[("csrf", &csrf(&page)), ("username", user), ("password", PASSWORD)],
        );
        assert_eq!(location(&r), "/login");
        csrf(&b.get("/apps"))
    };
    // taro registers a passkey; the connected-apps page lists it with a Remove button.
    let mut taro = srv.browser();
    let token = sign_in(&mut taro, "taro");
    assert!(!taro.get("/apps").text().contains("data-testid=\"passkey\""));
    let options = taro
        .post("/passkey/register/options", &[("csrf", &token)])
        .json()
        .unwrap();
    let r = taro.post(
        "/passkey/register",
        &[("csrf", &token), ("credential", &passkey.register(&options))],
    );
    assert_eq!(location(&r), "/apps?done=passkey_registered");
    let id = b64::encode(&passkey.id);
    let html = taro.get("/apps").text();
    assert_eq!(html.matches("data-testid=\"passkey\"").count(), 1, "{html}");
    assert!(html.contains(&format!("name=\"credential_id\" value=\"{id}\"")));

    // Another user cannot remove it (refused like an unknown ID), nor can a request without CSRF.
    let mut hanako = srv.browser();
    let other = sign_in(&mut hanako, "hanako");
    let r = hanako.post(
        "/apps/passkeys/remove",
        &[("csrf", &other), ("credential_id", &id)],
    );
    assert_eq!(r.status, 400);
    let r = taro.post("/apps/passkeys/remove", &[("credential_id", &id)]);
    assert_eq!(r.status, 403);
    assert!(taro.get("/apps").text().contains("data-testid=\"passkey\""));

    // Its owner removes it: gone from the page, and it no longer signs in.
    let r = taro.post(
        "/apps/passkeys/remove",
        &[("csrf", &token), ("credential_id", &id)],
    );
    assert_eq!(location(&r), "/apps?done=passkey_removed");
    let html = taro.get("/apps?done=passkey_removed").text();
    assert!(
        html.contains("passkey is removed") && !html.contains("data-testid=\"passkey\""),
        "{html}"
    );
    let r = taro.post(
        "/apps/passkeys/remove",
        &[("csrf", &token), ("credential_id", &id)],
    );
    assert_eq!(r.status, 400, "already removed");
    let mut b = srv.browser();
    let token = csrf(&b.get("/apps"));
    let options = b
        .post("/login/passkey/options", &[("csrf", &token)])
        .json()
        .unwrap();
    let r = b.post(
        "/login/passkey",
        &[
            ("csrf", &token),
            ("credential", &passkey.assert(&options, 1, "user-taro", false)),
        ],
    );
    assert_eq!(r.status, 200);
    assert!(r.text().contains("passkey could not be verified"), "{}", r.text());
}
