//! RFC 9396 Rich Authorization Requests at the real `fapi-as` binary over real TLS (issue 13 item 1):
//! a transfer (`payment_initiation`) pushed with PAR (form and signed request object) by a client
//! registered for the type, refused with `invalid_authorization_details` (§5) otherwise; sign-in
//! with the strong level transfers need; the consent page showing the transfer and refusing an
//! approval without a debtor account or with one that is not the user's (nothing granted); the
//! granted, enriched details in the token response (§7), the JWT access token (§9.1, with `jti`),
//! introspection (§9.2), after refresh, and on the connected-apps page; hostile text in a transfer
//! escaped on the pages. On SQLite, or on PostgreSQL with `FAPI_TEST_DATABASE=postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, ScratchDir};
use serde_json::{json, Value};

mod common;

use common::{
    csrf, decode_query, enc, form, location, pkce, run, totp_now, Browser, TestDb, BIN, PASSWORD, REDIRECT,
};

/// A script element, both kinds of quote and an ampersand.
const HOSTILE: &str = "<script>alert(\"x&'y\")</script>";
/// [`HOSTILE`] HTML-escaped, as the pages' template engine writes it.
const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&amp;&#x27;y&quot;)&lt;&#x2f;script&gt;";

struct Server {
    proc: Process,
    /// After the process: a PostgreSQL server stops only once fapi-as has.
    _db: TestDb,
    _dir: ScratchDir,
    issuer: String,
    browser_port: u16,
    ca: Vec<u8>,
    mtls: HttpsClient,
    key: SigningKey,
}

/// fapi-as with the demo users and two clients sharing one key and certificate: `fintech`, registered
/// for `payment_initiation` details, and `plain`, registered without.
fn start() -> Server {
    let dir = ScratchDir::new("as-rar").unwrap();
    let pki = TestPki::generate(dir.path(), &["fintech"]).unwrap();
    let (https, mtls, http) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let issuer = format!("https://127.0.0.1:{https}");
    let (db, db_url) = TestDb::from_env(dir.path());
    let config = dir.join("fapi-as.toml");
    std::fs::write(
        &config,
        format!(
            "{}[keys]\ndir = \"keys\"\nalg = \"ES256\"\n",
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
    let jwks = dir.join("fintech.jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
    run(&["-c", &cfg, "seed"]);
    for (id, types) in [
        (
            "fintech",
            &["--authorization-details-type", "payment_initiation"][..],
        ),
        ("plain", &[][..]),
    ] {
        let mut args = vec![
            "-c",
            &cfg,
            "client",
            "add",
            "--client-id",
            id,
            "--name",
            "Fintech",
            "--redirect-uri",
            REDIRECT,
            "--jwks",
            jwks.to_str().unwrap(),
            "--scope",
            "openid accounts payments",
        ];
        args.extend_from_slice(types);
        run(&args);
    }
    let (ok, stderr) = common::try_run(&[
        "-c",
        &cfg,
        "client",
        "add",
        "--client-id",
        "odd",
        "--redirect-uri",
        REDIRECT,
        "--jwks",
        jwks.to_str().unwrap(),
        "--authorization-details-type",
        "account_information",
    ]);
    assert!(!ok && stderr.contains("not supported"), "{stderr}");
    let proc = Process::spawn(
        "fapi-as",
        std::path::Path::new(BIN),
        &["-c".to_string(), cfg, "serve".to_string()],
        &dir.join("serve.log"),
    )
    .unwrap();
    let browser = HttpsClient::new(https, &pki.ca_der, None, TlsVersion::Default).unwrap();
    common::wait_healthy(&browser, &proc);
    let identity = pki.client("fintech").unwrap();
    let mtls_client = HttpsClient::new(mtls, &pki.ca_der, Some(identity), TlsVersion::Default).unwrap();
    Server {
        proc,
        _db: db,
        _dir: dir,
        issuer,
        browser_port: https,
        ca: pki.ca_der.clone(),
        mtls: mtls_client,
        key,
    }
}

impl Server {
    /// A private_key_jwt-authenticated POST to the mTLS listener as `client_id`.
    fn post(&self, path: &str, client_id: &str, params: &[(&str, &str)]) -> Resp {
        let now = unix_now();
        let assertion = self
            .key
            .sign_jwt(
                None,
                &json!({"iss": client_id, "sub": client_id, "aud": self.issuer, "jti": random_id(), "iat": now, "exp": now + 60}),
            )
            .unwrap();
        let mut pairs = vec![
            ("client_id", client_id),
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

    fn browser(&self) -> Browser {
        Browser::new(self.browser_port, &self.ca)
    }
}

fn transfer(creditor: &str, remittance: &str) -> Value {
    json!({"type": "payment_initiation",
           "instructedAmount": {"currency": "JPY", "amount": "5000"},
           "creditorName": creditor, "creditorAccount": {"accountId": "hanako-1"},
           "remittanceInformationUnstructured": remittance})
}

/// The PAR parameters of a request for `details` (JSON text), without acr_values.
fn par_params<'a>(challenge: &'a str, details: &'a str, state: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid payments"),
        ("state", state),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("ui_locales", "en"),
        ("authorization_details", details),
    ]
}

/// PAR then `GET /authorize` in the browser.
fn start_flow(srv: &Server, b: &mut Browser, challenge: &str, details: &str, state: &str) {
    let r = srv.post("/par", "fintech", &par_params(challenge, details, state));
    assert_eq!(r.status, 201, "{}", r.text());
    let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    let r = b.get(&format!(
        "/authorize?client_id=fintech&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
}

/// Password, then the TOTP step a transfer needs (no acr_values asked for it); returns the consent
/// page.
fn sign_in_strongly(b: &mut Browser) -> Resp {
    let page = b.get("/login");
    let page = b.sign_in_password(&page, "taro");
    assert!(
        page.text().contains("name=\"code\""),
        "a transfer needs the TOTP step: {}",
        page.text()
    );
    let r = b.post("/login/totp", &[("csrf", &csrf(&page)), ("code", &totp_now(0))]);
    assert_eq!(location(&r), "/login");
    b.get("/login")
}

fn error_of(r: &Resp) -> (u16, String, String) {
    let body = r.json().unwrap_or(Value::Null);
    (
        r.status,
        body["error"].as_str().unwrap_or("").to_string(),
        body["error_description"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_transfer_is_consented_with_a_debtor_account_and_carried_by_the_tokens() {
    let srv = start();
    let details = json!([transfer("Hanako Yamada", "dinner")]).to_string();

    // Discovery (RFC 9396 §10).
    let meta = srv
        .browser()
        .get("/.well-known/openid-configuration")
        .json()
        .unwrap();
    assert_eq!(
        meta["authorization_details_types_supported"],
        json!(["payment_initiation"])
    );

    // PAR refusals (§5): a client not registered for the type, and bad details.
    let (_, challenge) = pkce();
    let r = srv.post("/par", "plain", &par_params(&challenge, &details, "s"));
    let (status, error, description) = error_of(&r);
    assert_eq!(
        (status, error.as_str()),
        (400, "invalid_authorization_details"),
        "{description}"
    );
    assert!(
        description.contains("not allowed for this client"),
        "{description}"
    );
    for (bad, says) in [
        (
            json!([{"type": "payment_initiation", "instructedAmount": {"currency": "JPY", "amount": "-5"}, "creditorName": "H", "creditorAccount": {"accountId": "hanako-1"}}]),
            "positive whole number",
        ),
        (json!([{"type": "account_information"}]), "unknown type"),
        (
            json!([{"type": "payment_initiation", "instructedAmount": {"currency": "JPY", "amount": "5000"}, "creditorName": "H", "creditorAccount": {"accountId": "hanako-1"}, "debtorAccount": {"accountId": "taro-1"}}]),
            "debtorAccount",
        ),
        (json!({"type": "payment_initiation"}), "JSON array"),
    ] {
        let text = bad.to_string();
        let (status, error, description) =
            error_of(&srv.post("/par", "fintech", &par_params(&challenge, &text, "s")));
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_authorization_details"),
            "{bad}: {description}"
        );
        assert!(description.contains(says), "{bad}: {description}");
    }

    // A signed request object (RFC 9101) carries the claim as a JSON array (RFC 9396 §3); as text
    // it is refused.
    let now = unix_now();
    let mut claims = json!({
        "iss": "fintech", "aud": srv.issuer, "exp": now + 300, "nbf": now - 5, "jti": random_id(),
        "client_id": "fintech", "response_type": "code", "redirect_uri": REDIRECT,
        "code_challenge": challenge, "code_challenge_method": "S256", "scope": "openid payments",
        "authorization_details": [transfer("Hanako Yamada", "dinner")],
    });
    let jwt = srv.key.sign_jwt(None, &claims).unwrap();
    let r = srv.post("/par", "fintech", &[("request", &jwt)]);
    assert_eq!(r.status, 201, "{}", r.text());
    claims["authorization_details"] = json!(details);
    claims["jti"] = json!(random_id());
    let jwt = srv.key.sign_jwt(None, &claims).unwrap();
    let (status, error, _) = error_of(&srv.post("/par", "fintech", &[("request", &jwt)]));
    assert_eq!((status, error.as_str()), (400, "invalid_authorization_details"));

    // The flow: PAR with the transfer and no acr_values; sign-in needs TOTP all the same.
    let mut b = srv.browser();
    let (verifier, challenge) = pkce();
    start_flow(&srv, &mut b, &challenge, &details, "state-1");
    let page = sign_in_strongly(&mut b);
    let html = page.text();
    for want in [
        "data-testid=\"transfer-amount\">5,000 JPY</dd>",
        "data-testid=\"transfer-payee\">Hanako Yamada</dd>",
        "data-testid=\"transfer-payee-account\">hanako-1</dd>",
        "data-testid=\"transfer-reference\">dinner</dd>",
        "name=\"debtor_account\" value=\"taro-1\" required",
        "name=\"debtor_account\" value=\"taro-2\" required",
    ] {
        assert!(html.contains(want), "{want}: {html}");
    }
    assert!(!html.contains("hanako-2"), "only the user's own accounts: {html}");
    let ja = b.get("/login?lang=ja").text();
    assert!(
        ja.contains(">5,000円</dd>") && ja.contains("出金口座を選んでください"),
        "{ja}"
    );
    b.get("/login?lang=en");

    // Approving without a debtor account, or with one that is not taro's: the page again with the
    // error (400), the flow still open, nothing granted.
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("data-testid=\"error\"")
            && r.text().contains("Choose the account to pay from to approve"),
        "{}",
        r.text()
    );
    for not_taros in ["hanako-1", "nobody-1", "taro-1' OR '1'='1"] {
        let r = b.post(
            "/consent",
            &[
                ("csrf", &csrf(&page)),
                ("decision", "approve"),
                ("debtor_account", not_taros),
            ],
        );
        assert_eq!(r.status, 400, "{not_taros}: {}", r.text());
        assert!(r.text().contains("is not one of your accounts"), "{}", r.text());
    }
    let mut apps = srv.browser();
    let apps_page = apps.get("/apps");
    let r = apps.post(
        "/login",
        &[
            ("csrf", &csrf(&apps_page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    let listed = apps.get("/apps").text();
    assert!(listed.contains("id=\"no-apps\""), "nothing granted yet: {listed}");

    // Approve with taro-2.
    let r = b.post(
        "/consent",
        &[
            ("csrf", &csrf(&page)),
            ("decision", "approve"),
            ("debtor_account", "taro-2"),
        ],
    );
    let loc = location(&r);
    let q = decode_query(loc.split_once('?').unwrap().1);
    assert_eq!(q["state"], "state-1");

    // Token response (§7) and access token (§9.1): the transfer with the debtor account.
    let mut granted = transfer("Hanako Yamada", "dinner");
    granted["debtorAccount"] = json!({"accountId": "taro-2"});
    let granted = json!([granted]);
    let r = srv.post(
        "/token",
        "fintech",
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json().unwrap();
    assert_eq!(token["authorization_details"], granted, "{token}");
    let access_token = token["access_token"].as_str().unwrap().to_string();
    let refresh_token = token["refresh_token"].as_str().unwrap().to_string();
    let at = fapi_core::jws::CompactJws::parse(&access_token).unwrap();
    assert_eq!(at.payload["authorization_details"], granted);
    assert!(at.payload["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert_eq!(at.payload["acr"], json!("urn:bank:acr:totp"));

    // Introspection (§9.2), of the access token and of the refresh token.
    let r = srv.post("/introspect", "fintech", &[("token", &access_token)]);
    let intro = r.json().unwrap();
    assert_eq!(intro["active"], json!(true), "{intro}");
    assert_eq!(intro["authorization_details"], granted);
    let r = srv.post("/introspect", "fintech", &[("token", &refresh_token)]);
    assert_eq!(r.json().unwrap()["authorization_details"], granted);

    // Refresh: the same details.
    let r = srv.post(
        "/token",
        "fintech",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let refreshed = r.json().unwrap();
    assert_eq!(refreshed["authorization_details"], granted);
    let at2 = fapi_core::jws::CompactJws::parse(refreshed["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(at2.payload["authorization_details"], granted);
    assert_ne!(at2.payload["jti"], at.payload["jti"], "each token its own jti");

    // Connected apps: the transfer, with the account it is paid from.
    let listed = apps.get("/apps").text();
    assert_eq!(listed.matches("data-testid=\"app\"").count(), 1, "{listed}");
    for want in [
        "data-testid=\"transfer-amount\">5,000 JPY</dd>",
        "data-testid=\"transfer-payee\">Hanako Yamada</dd>",
        "data-testid=\"transfer-debtor\">taro-2</dd>",
    ] {
        assert!(listed.contains(want), "{want}: {listed}");
    }

    // A second request in the signed-in session: deny needs no debtor account.
    let (_, challenge) = pkce();
    start_flow(&srv, &mut b, &challenge, &details, "state-2");
    let page = b.get("/login");
    assert!(
        page.text().contains("data-testid=\"transfer\""),
        "{}",
        page.text()
    );
    let loc = location(&b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "deny")]));
    let q = decode_query(loc.split_once('?').unwrap().1);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "state-2");
    assert!(!srv.proc.log().contains("Hanako"), "no transfer in the log");
}

#[test]
fn hostile_text_in_a_transfer_is_escaped_on_consent_and_apps() {
    let srv = start();
    let details = json!([transfer(HOSTILE, HOSTILE)]).to_string();
    let mut b = srv.browser();
    let (_, challenge) = pkce();
    start_flow(&srv, &mut b, &challenge, &details, "s");
    let page = sign_in_strongly(&mut b);
    let check = |what: &str, html: &str, times: usize| {
        assert!(!html.contains("<script"), "{what}: raw script: {html}");
        assert!(!html.contains("x&'y"), "{what}: raw quote and ampersand: {html}");
        assert!(html.matches(ESCAPED).count() >= times, "{what}: {html}");
    };
    check("consent", &page.text(), 2);
    assert!(
        page.text()
            .contains(&format!("data-testid=\"transfer-payee\">{ESCAPED}</dd>")),
        "{}",
        page.text()
    );
    // The refusal page (no debtor account) shows them escaped too.
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    assert_eq!(r.status, 400);
    check("consent refused", &r.text(), 2);
    let r = b.post(
        "/consent",
        &[
            ("csrf", &csrf(&page)),
            ("decision", "approve"),
            ("debtor_account", "taro-1"),
        ],
    );
    assert!(location(&r).starts_with(REDIRECT));
    let mut apps = srv.browser();
    let apps_page = apps.get("/apps");
    let r = apps.post(
        "/login",
        &[
            ("csrf", &csrf(&apps_page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(location(&r), "/login");
    let listed = apps.get("/apps").text();
    check("connected apps", &listed, 2);
    assert!(
        listed.contains("data-testid=\"transfer-debtor\">taro-1</dd>"),
        "{listed}"
    );
}
