//! Issue 10 item 4: what the pages print from outside is HTML-escaped. A client registered with a
//! hostile `client_name`, a user whose display name and account name are hostile, and a hostile
//! username typed into the sign-in form go through the real handlers of the real `fapi-as` binary
//! (sign-in, sign-in error, consent, connected apps, error page); each page shows the escaped form
//! and never the raw markup. On SQLite, or on PostgreSQL with `FAPI_TEST_DATABASE=postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_as::store::Store;
use fapi_core::alg::Algorithm;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, ScratchDir};
use serde_json::json;

mod common;

use common::{csrf, enc, form, location, pkce, run, Browser, TestDb, BIN, PASSWORD, REDIRECT};

/// A script element, both kinds of quote and an ampersand (31 characters: fits the username field).
const HOSTILE: &str = "<script>alert(\"x&'y\")</script>";
/// [`HOSTILE`] HTML-escaped, as the pages' template engine writes it.
const ESCAPED: &str = "&lt;script&gt;alert(&quot;x&amp;&#x27;y&quot;)&lt;&#x2f;script&gt;";

/// The page carries `ESCAPED` at least `times` times and nothing of the raw markup; no script at all
/// (the issuer is an IP address: no passkey button, so not even `/assets/passkey.js`).
fn assert_escaped(what: &str, r: &Resp, times: usize) {
    let html = r.text();
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{what}"
    );
    assert!(!html.contains("<script"), "{what}: raw script: {html}");
    assert!(!html.contains("x&'y"), "{what}: raw quote and ampersand: {html}");
    assert!(
        html.matches(ESCAPED).count() >= times,
        "{what}: {times} escaped copies expected: {html}"
    );
}

#[test]
fn hostile_names_and_input_are_escaped_on_every_page() {
    let dir = ScratchDir::new("as-escaping").unwrap();
    let pki = TestPki::generate(dir.path(), &["evil"]).unwrap();
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
    let key = SigningKey::generate(Algorithm::ES256, Some("evil-1".into())).unwrap();
    let jwks = dir.join("evil.jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
    run(&["-c", &cfg, "seed"]);
    run(&[
        "-c",
        &cfg,
        "client",
        "add",
        "--client-id",
        "evil",
        "--name",
        HOSTILE,
        "--redirect-uri",
        REDIRECT,
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "openid accounts",
    ]);
    // The demo user taro gets a hostile display name and account name (no command sets them).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = Store::connect(&db_url).await.unwrap();
            let mut taro = store.user_by_name("taro").await.unwrap().unwrap();
            taro.display_name = HOSTILE.into();
            store.put_user(&taro).await.unwrap();
            let mut account = store.accounts_of(&taro.user_id).await.unwrap().remove(0);
            account.name = HOSTILE.into();
            store.put_account(&account).await.unwrap();
        });

    let args = vec!["-c".to_string(), cfg, "serve".to_string()];
    let proc = Process::spawn(
        "fapi-as",
        std::path::Path::new(BIN),
        &args,
        &dir.join("serve.log"),
    )
    .unwrap();
    let client = HttpsClient::new(https, &pki.ca_der, None, TlsVersion::Default).unwrap();
    common::wait_healthy(&client, &proc);
    let identity = pki.client("evil").unwrap();
    let mtls_client = HttpsClient::new(mtls, &pki.ca_der, Some(identity), TlsVersion::Default).unwrap();

    // PAR as the hostile-named client, then the sign-in page names it.
    let (_verifier, challenge) = pkce();
    let now = unix_now();
    let assertion = key
        .sign_jwt(
            None,
            &json!({"iss": "evil", "sub": "evil", "aud": issuer, "jti": random_id(), "iat": now, "exp": now + 60}),
        )
        .unwrap();
    let par = mtls_client
        .send(
            &Req::post("/par")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&form(&[
                    ("client_id", "evil"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &assertion),
                    ("response_type", "code"),
                    ("redirect_uri", REDIRECT),
                    ("scope", "openid accounts"),
                    ("state", "s"),
                    ("nonce", "n"),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                    ("ui_locales", "en"),
                ])),
        )
        .unwrap();
    assert_eq!(par.status, 201, "{}", par.text());
    let request_uri = par.json().unwrap()["request_uri"].as_str().unwrap().to_string();
    let mut b = Browser::new(https, &pki.ca_der);
    let r = b.get(&format!(
        "/authorize?client_id=evil&request_uri={}",
        enc(&request_uri)
    ));
    assert_eq!(location(&r), "/login");
    let page = b.get("/login");
    assert_eq!(page.status, 200);
    assert_escaped("sign-in", &page, 1);
    assert!(
        page.text()
            .contains(&format!("<strong>{ESCAPED}</strong> is asking")),
        "{}",
        page.text()
    );

    // A hostile username with a wrong password: the sign-in page again, with the error and the
    // username echoed in the form field, escaped.
    let r = b.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", HOSTILE),
            ("password", "wrong"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_escaped("sign-in error", &r, 2);
    assert!(
        r.text()
            .contains(&format!("name=\"username\" value=\"{ESCAPED}\"")),
        "{}",
        r.text()
    );
    assert!(r.text().contains("data-testid=\"error\""));

    // Consent: the client, the user's display name and the account name.
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
    assert_escaped("consent", &page, 3);
    assert!(page.text().contains("data-testid=\"approve\""), "{}", page.text());
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    assert!(location(&r).starts_with(REDIRECT));

    // Connected apps: the client and the user's display name.
    let page = b.get("/apps");
    assert_escaped("connected apps", &page, 2);
    assert_eq!(
        page.text().matches("data-testid=\"app\"").count(),
        1,
        "{}",
        page.text()
    );

    // An error page: the hostile values in the query are not echoed at all, raw or escaped.
    let r = b.get(&format!(
        "/authorize?client_id={}&request_uri={}",
        enc(HOSTILE),
        enc(HOSTILE)
    ));
    assert_eq!(r.status, 400);
    assert_escaped("error page", &r, 0);
    assert!(r.text().contains("data-testid=\"error\"") && !r.text().contains(ESCAPED));
    drop(proc);
    drop(db);
}
