//! Shared by the integration tests that run the real `fapi-as` binary: the database a test server
//! gets, form and query encoding, a browser with a cookie jar, the pages' CSRF field, TOTP codes of
//! the demo user, PKCE pairs.
//!
//! The database: SQLite in the test's scratch directory by default. With
//! `FAPI_TEST_DATABASE=postgres` every test server gets its own throwaway PostgreSQL server
//! instead (fapi-e2e's `Postgres::start`, so the same tests check the same behaviour on PostgreSQL:
//! `FAPI_TEST_DATABASE=postgres cargo test -p fapi-as --test frontchannel --test backchannel`).
//! tests/flows_postgres.rs always uses PostgreSQL, with two server instances on one database.
// Each test file compiles this module on its own and uses part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_as::totp;
use fapi_core::b64;
use fapi_core::sign::random_id;
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::postgres::Postgres;
use fapi_e2e::util::unix_now;
use std::collections::HashMap;
use std::path::Path;

pub const BIN: &str = env!("CARGO_BIN_EXE_fapi-as");
pub const REDIRECT: &str = "https://app.example/cb";
pub const TARO_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
pub const PASSWORD: &str = "demo-password-2026";
/// Chooses the test servers' database: `sqlite` (default) or `postgres`. Not `FAPI_AS_*`: the
/// servers the tests start inherit the environment, and they read `FAPI_AS_*` as configuration.
pub const DATABASE_ENV: &str = "FAPI_TEST_DATABASE";

/// A test server's database; a PostgreSQL server stops (and its directory goes) when this drops,
/// so keep it until the `fapi-as` process has stopped.
pub enum TestDb {
    Sqlite,
    Postgres(Postgres),
}

impl TestDb {
    /// The database [`DATABASE_ENV`] asks for, and its URL (a SQLite file `as.db` in `dir`).
    pub fn from_env(dir: &Path) -> (TestDb, String) {
        match std::env::var(DATABASE_ENV).as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => (
                TestDb::Sqlite,
                format!("sqlite://{}?mode=rwc", dir.join("as.db").display()),
            ),
            Ok("postgres") => TestDb::postgres(),
            Ok(other) => panic!("{DATABASE_ENV}={other}: use sqlite or postgres"),
        }
    }

    /// A throwaway PostgreSQL server and the URL of its empty database.
    pub fn postgres() -> (TestDb, String) {
        let pg = Postgres::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
        let url = pg.url();
        (TestDb::Postgres(pg), url)
    }

    pub fn name(&self) -> &'static str {
        match self {
            TestDb::Sqlite => "sqlite",
            TestDb::Postgres(_) => "postgres",
        }
    }
}

/// Runs `fapi-as ARGS` to completion; panics with its stderr when it fails.
pub fn run(args: &[&str]) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fapi-as {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fapi-as ARGS`: whether it succeeded, and its stderr.
pub fn try_run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The part of a test server's `fapi-as.toml` every suite writes alike: issuer, mTLS base, the three
/// listeners on loopback (`ports`: https, mtls, http), the server certificate and the database. A suite
/// appends its `[keys]` and its own sections.
pub fn config_head(
    issuer: &str,
    mtls_base: &str,
    (https, mtls, http): (u16, u16, u16),
    pki: &fapi_e2e::pki::TestPki,
    db_url: &str,
) -> String {
    format!(
        "issuer = \"{issuer}\"\nmtls_base = \"{mtls_base}\"\n\
         [listen]\nhttps = \"127.0.0.1:{https}\"\nmtls = \"127.0.0.1:{mtls}\"\nhttp = \"127.0.0.1:{http}\"\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n[database]\nurl = \"{db_url}\"\n",
        pki.server.cert_pem.display(),
        pki.server.key_pem.display(),
    )
}

/// Waits (20 s at most) until the server started as `proc` answers `/health` with 200 through
/// `client`; panics with its log otherwise.
pub fn wait_healthy(client: &HttpsClient, proc: &fapi_e2e::process::Process) {
    fapi_e2e::util::wait_until(
        std::time::Duration::from_secs(20),
        "fapi-as to listen",
        || match client.send(&Req::get("/health")) {
            Ok(r) if r.status == 200 => Ok(Some(())),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", proc.log()));
}

// Form and query helpers: the harness's (fapi_e2e::fapi_as), under the names these tests use.
// Each test binary uses some of them (like the rest of this module, see its dead_code allowance).
#[allow(unused_imports)]
pub use fapi_e2e::fapi_as::{decode_query, form, form_post, pct_decode, pct_encode as enc};

/// A browser: a cookie jar and an `Accept-Language`, on one listener (`client`, which a test may
/// point at another instance: the session lives in the shared database).
pub struct Browser {
    pub client: HttpsClient,
    pub cookies: HashMap<String, String>,
    pub lang: String,
}

impl Browser {
    pub fn new(port: u16, ca: &[u8]) -> Browser {
        Browser {
            client: HttpsClient::new(port, ca, None, TlsVersion::Default).unwrap(),
            cookies: HashMap::new(),
            lang: "en".into(),
        }
    }

    /// The same browser (cookies) on another listener.
    pub fn switch_to(&mut self, port: u16, ca: &[u8]) {
        self.client = HttpsClient::new(port, ca, None, TlsVersion::Default).unwrap();
    }

    pub fn send(&mut self, mut req: Req) -> Resp {
        if !self.cookies.is_empty() {
            let c: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", &c.join("; "));
        }
        req = req.header("accept-language", &self.lang.clone());
        let resp = self.client.send(&req).unwrap();
        for sc in resp.headers_named("set-cookie") {
            let first = sc.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || sc.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        resp
    }

    pub fn get(&mut self, path: &str) -> Resp {
        self.send(Req::get(path))
    }

    /// Posts the sign-in form of `page` for `username` with the demo password; after its redirect
    /// back to /login, the page that follows (the TOTP step, consent, or the form again).
    pub fn sign_in_password(&mut self, page: &Resp, username: &str) -> Resp {
        let r = self.post(
            "/login",
            &[
                ("csrf", &csrf(page)),
                ("username", username),
                ("password", PASSWORD),
            ],
        );
        assert_eq!(location(&r), "/login", "{}", r.text());
        self.get("/login")
    }

    pub fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        self.send(form_post(path, pairs))
    }

    pub fn post_with(&mut self, path: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let mut req = form_post(path, pairs);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        self.send(req)
    }
}

/// The hidden `csrf` field of a page.
pub fn csrf(page: &Resp) -> String {
    let text = page.text();
    fapi_e2e::fapi_as::csrf(&text).unwrap_or_else(|| panic!("no csrf in {text}"))
}

/// The `Location` of a 303.
pub fn location(r: &Resp) -> String {
    assert_eq!(r.status, 303, "expected a 303, got {} {}", r.status, r.text());
    r.header("location").unwrap().to_string()
}

/// Demo user taro's TOTP code, `offset_steps` 30 s steps from now.
pub fn totp_now(offset_steps: i64) -> String {
    let secret = totp::base32_decode(TARO_TOTP).unwrap();
    totp::hotp(&secret, (totp::step_of(unix_now()) + offset_steps) as u64, 6)
}

/// A PKCE pair (RFC 7636 §4.1-4.2, S256).
pub fn pkce() -> (String, String) {
    let verifier = format!("{}{}", random_id(), random_id());
    let challenge = b64::sha256_b64(&verifier);
    (verifier, challenge)
}
