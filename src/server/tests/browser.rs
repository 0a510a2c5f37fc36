//! fapi-as's real pages in headless Chromium: the real binary over real TLS at
//! `https://localhost:PORT`, a client's PAR (private_key_jwt over mTLS) from Rust, then
//! tests/node/browser.mjs drives Debian's Chromium through playwright-core — a person's sign-in,
//! TOTP and consent (Japanese, then English through the switch link), the redirect to the client
//! with code, state and iss (RFC 9207) — and Rust exchanges the code at /token and checks the
//! id_token's `acr`. The passkey test registers a passkey with Chromium's virtual authenticator and
//! signs in with it alone (`urn:bank:acr:passkey`). The transfer test shows a consent page with an
//! RFC 9396 transfer, where the person must choose the account it is paid from.
//!
//! Chromium accepts the test server's certificate through `--ignore-certificate-errors-spki-list`
//! (the base64 SHA-256 of that one certificate's SubjectPublicKeyInfo), nothing broader.
//!
//! Needs `/usr/bin/chromium` (Debian: `apt-get install chromium`), `node`, and the npm packages of
//! tests/node (`npm ci --prefix src/server/tests/node`); scripts/setup does all three. Without them
//! the tests fail with that instruction: they never skip silently.
//!
//! Screenshots (sign-in.png, totp.png, consent.png, consent-en.png, passkey-registered.png,
//! passkey-sign-in.png, consent-transfer.png, consent-transfer-en.png, failure-*.png) go to `$FAPI_BROWSER_SCREENSHOTS`, else
//! `target/browser-screenshots/<test>/`; `FAPI_BROWSER_SCREENSHOTS=docs/screenshots` refreshes the
//! ones in the docs. (Not a `FAPI_AS_*` name: those are the server's config overrides.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::jws::CompactJws;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, wait_until, workspace_root, ScratchDir};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_fapi-as");
const CHROMIUM: &str = "/usr/bin/chromium";
const CLIENT_NAME: &str = "Kakeibo Fintech";
const TARO_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const PASSWORD: &str = "demo-password-2026";
/// How long one run of browser.mjs may take (it gives up itself after 50 s).
const NODE_TIMEOUT: Duration = Duration::from_secs(75);

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Fails (never skips) when Chromium, node or playwright-core is missing, with what to install.
fn require_tools() {
    const SETUP: &str = "scripts/setup installs them: apt-get install chromium nodejs npm; npm ci --prefix src/server/tests/node";
    if !Path::new(CHROMIUM).is_file() {
        panic!("the browser tests need Debian's Chromium at {CHROMIUM}: {SETUP}");
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!("the browser tests need node: {SETUP}"),
    }
    if !node_dir()
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        panic!("the browser tests need the npm package playwright-core: {SETUP}");
    }
}

fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn run(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fapi-as {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Server {
    proc: Process,
    dir: ScratchDir,
    issuer: String,
    redirect: String,
    server_cert_pem: PathBuf,
    mtls: HttpsClient,
    key: SigningKey,
    /// The `authorization_details` of the last token response [`Server::redeem`] read.
    last_details: std::sync::Mutex<Option<Value>>,
}

/// The real binary with the issuer `https://localhost:PORT` (WebAuthn's RP ID must be a domain
/// name), seeded users, and one private_key_jwt client whose redirect URI is served by nothing.
fn start() -> Server {
    let dir = ScratchDir::new("as-browser").unwrap();
    let pki = TestPki::generate(dir.path(), &["fintech"]).unwrap();
    let (https, mtls, http) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let redirect = format!("https://localhost:{}/cb", free_port().unwrap());
    let issuer = format!("https://localhost:{https}");
    let config = dir.join("fapi-as.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"{issuer}\"\nmtls_base = \"https://localhost:{mtls}\"\n[listen]\nhttps = \"127.0.0.1:{https}\"\nmtls = \"127.0.0.1:{mtls}\"\nhttp = \"127.0.0.1:{http}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n[keys]\ndir = \"keys\"\nalg = \"ES256\"\n\
             [tokens]\npar_lifetime = 300\n",
            pki.server.cert_pem.display(),
            pki.server.key_pem.display(),
            dir.join("as.db").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    let key = SigningKey::generate(Algorithm::ES256, Some("fintech-1".into())).unwrap();
    let jwks = dir.join("fintech.jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.public_jwk()]}).to_string()).unwrap();
    run(&["-c", &cfg, "seed"]);
    run(&[
        "-c",
        &cfg,
        "client",
        "add",
        "--client-id",
        "fintech",
        "--name",
        CLIENT_NAME,
        "--redirect-uri",
        &redirect,
        "--jwks",
        jwks.to_str().unwrap(),
        "--scope",
        "openid accounts payments offline_access",
        "--authorization-details-type",
        "payment_initiation",
    ]);
    let proc = Process::spawn(
        "fapi-as",
        Path::new(BIN),
        &["-c".to_string(), cfg, "serve".to_string()],
        &dir.join("serve.log"),
    )
    .unwrap();
    let health = HttpsClient::new(https, &pki.ca_der, None, TlsVersion::Default).unwrap();
    wait_until(Duration::from_secs(20), "fapi-as to listen", || {
        match health.send(&Req::get("/health")) {
            Ok(r) if r.status == 200 => Ok(Some(())),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", proc.log()));
    let identity = pki.client("fintech").unwrap();
    let mtls = HttpsClient::new(mtls, &pki.ca_der, Some(identity), TlsVersion::Default).unwrap();
    Server {
        proc,
        issuer,
        redirect,
        server_cert_pem: pki.server.cert_pem.clone(),
        mtls,
        key,
        dir,
        last_details: std::sync::Mutex::new(None),
    }
}

/// An authorization request pushed by the client.
struct Pushed {
    authorize_url: String,
    verifier: String,
    state: String,
    nonce: String,
}

impl Server {
    fn client_auth(&self) -> Vec<(&'static str, String)> {
        let now = unix_now();
        let assertion = self
            .key
            .sign_jwt(
                None,
                &json!({"iss": "fintech", "sub": "fintech", "aud": self.issuer, "jti": random_id(), "iat": now, "exp": now + 60}),
            )
            .unwrap();
        vec![
            ("client_id", "fintech".into()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion", assertion),
        ]
    }

    /// `POST path` on the mTLS listener with private_key_jwt (RFC 7523) and `params`.
    fn post(&self, path: &str, params: &[(&str, &str)]) -> Resp {
        let auth = self.client_auth();
        let mut pairs: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.extend_from_slice(params);
        let req = Req::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(&form(&pairs));
        self.mtls.send(&req).unwrap()
    }

    /// PAR (RFC 9126) with PKCE S256 (RFC 7636), state and nonce; `extra` adds (or replaces) parameters.
    fn push(&self, extra: &[(&str, &str)]) -> Pushed {
        let verifier = format!("{}{}", random_id(), random_id());
        let challenge = b64::sha256_b64(&verifier);
        let (state, nonce) = (random_id(), random_id());
        let mut params = vec![
            ("response_type", "code"),
            ("redirect_uri", self.redirect.as_str()),
            ("scope", "openid accounts"),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        params.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        params.extend_from_slice(extra);
        let r = self.post("/par", &params);
        assert_eq!(r.status, 201, "PAR: {}", r.text());
        let request_uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
        Pushed {
            authorize_url: format!(
                "{}/authorize?client_id=fintech&request_uri={}",
                self.issuer,
                enc(&request_uri)
            ),
            verifier,
            state,
            nonce,
        }
    }

    /// Runs one scenario of browser.mjs against this server; the parsed stdout.
    fn browser(&self, scenario: &str, pushed: &[&Pushed], screenshots: &Path) -> Value {
        let input = json!({
            "scenario": scenario,
            "authorizeUrl": pushed[0].authorize_url,
            "authorizeUrl2": pushed.get(1).map(|p| p.authorize_url.as_str()),
            "redirectPrefix": self.redirect,
            "serverCertPem": self.server_cert_pem,
            "clientName": CLIENT_NAME,
            "username": "taro",
            "password": PASSWORD,
            "totpSecret": TARO_TOTP,
            "screenshots": screenshots,
            "chromium": CHROMIUM,
            "debtor": "taro-1",
        });
        match run_node(&input) {
            Ok(out) => serde_json::from_str(&out).unwrap_or_else(|e| panic!("browser.mjs output {e}: {out}")),
            Err(err) => panic!(
                "browser.mjs {scenario} failed:\n{err}\n--- fapi-as log (tail) ---\n{}",
                tail(&self.proc.log(), 4000)
            ),
        }
    }

    /// The redirect's query checked (code, state, iss), then the code exchanged at /token; the id_token's claims.
    fn redeem(&self, out: &Value, pushed: &Pushed) -> Value {
        let q = &out["query"];
        assert!(q.get("error").is_none(), "error response: {out}");
        assert_eq!(q["state"], json!(pushed.state), "{out}");
        assert_eq!(q["iss"], json!(self.issuer), "RFC 9207 iss: {out}");
        let code = q["code"].as_str().unwrap_or_else(|| panic!("no code: {out}"));
        assert!(code.len() >= 43, "a code of at least 256 bits");
        let r = self.post(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect),
                ("code_verifier", &pushed.verifier),
            ],
        );
        assert_eq!(r.status, 200, "token: {}", r.text());
        let body = r.json().unwrap();
        assert_eq!(body["token_type"], json!("Bearer"), "mTLS-bound: {body}");
        *self.last_details.lock().unwrap() = body.get("authorization_details").cloned();
        let at = CompactJws::parse(body["access_token"].as_str().unwrap()).unwrap();
        assert!(
            at.payload["cnf"]["x5t#S256"].is_string(),
            "the access token is bound to the client certificate"
        );
        let id_token = CompactJws::parse(body["id_token"].as_str().unwrap()).unwrap();
        assert_eq!(id_token.payload["nonce"], json!(pushed.nonce));
        assert_eq!(id_token.payload["iss"], json!(self.issuer));
        assert_eq!(id_token.payload["aud"], json!("fintech"));
        Value::Object(id_token.payload)
    }
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `node browser.mjs` with `input` as JSON on stdin, killed after [`NODE_TIMEOUT`]; `Err(stderr)` on failure.
fn run_node(input: &Value) -> Result<String, String> {
    let mut child = Command::new("node")
        .arg("browser.mjs")
        .current_dir(node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > NODE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => Ok(out),
        Some(s) => Err(format!("{s}\n{err}")),
        None => Err(format!("killed after {NODE_TIMEOUT:?}\n{err}")),
    }
}

fn screenshots(test: &str) -> PathBuf {
    match std::env::var_os("FAPI_BROWSER_SCREENSHOTS") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target/browser-screenshots").join(test),
    }
}

/// A person signs in with password and TOTP (acr_values asks for it), reads the consent page in
/// Japanese and in English, approves; the client gets code, state and iss, and the id_token says
/// `urn:bank:acr:totp` with `amr` pwd+otp.
#[test]
fn sign_in_totp_and_consent_in_chromium() {
    require_tools();
    let srv = start();
    let pushed = srv.push(&[("acr_values", "urn:bank:acr:totp")]);
    let out = srv.browser("totp", &[&pushed], &screenshots("totp"));
    eprintln!("browser notes: {}", out["notes"]);
    let claims = srv.redeem(&out, &pushed);
    assert_eq!(claims["acr"], json!("urn:bank:acr:totp"), "{claims}");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]), "{claims}");
    assert_eq!(claims["sub"], json!("user-taro"), "{claims}");
    drop(srv.dir);
}

/// Passkeys with Chromium's virtual authenticator (CDP WebAuthn: ctap2, internal, resident keys,
/// user verification): taro signs in with his password and registers a passkey from the consent
/// page (that authorization says `urn:bank:acr:password`); then a fresh browser context, whose
/// authenticator holds only that passkey, signs in with the passkey alone for an authorization
/// whose acr_values ask for more than a password, and the id_token says `urn:bank:acr:passkey`.
#[test]
fn passkey_registration_and_sign_in_in_chromium() {
    require_tools();
    let srv = start();
    let first = srv.push(&[]);
    let second = srv.push(&[("acr_values", "urn:bank:acr:passkey")]);
    let out = srv.browser("passkey", &[&first, &second], &screenshots("passkey"));
    eprintln!("browser notes: {}", out["notes"]);
    assert_eq!(out["credentials"], json!(1), "{out}");

    let claims = srv.redeem(&out["first"], &first);
    assert_eq!(claims["acr"], json!("urn:bank:acr:password"), "{claims}");
    assert_eq!(claims["amr"], json!(["pwd"]), "{claims}");

    let claims = srv.redeem(&out["second"], &second);
    assert_eq!(claims["acr"], json!("urn:bank:acr:passkey"), "{claims}");
    let amr = claims["amr"].as_array().unwrap();
    assert!(amr.contains(&json!("hwk")), "RFC 8176 hwk: {claims}");
    assert!(!amr.contains(&json!("pwd")), "no password this time: {claims}");
    assert_eq!(claims["sub"], json!("user-taro"), "{claims}");
    drop(srv.dir);
}

/// A transfer (RFC 9396 `payment_initiation`, no acr_values): the TOTP step all the same, the consent
/// page shows it (5,000円, then 5,000 JPY) with the choice of the account it is paid from, which the
/// form will not send without; taro chooses taro-1, and the token response carries the transfer with
/// that debtor account.
#[test]
fn a_transfer_on_the_consent_page_in_chromium() {
    require_tools();
    let srv = start();
    let transfer = json!({"type": "payment_initiation",
        "instructedAmount": {"currency": "JPY", "amount": "5000"},
        "creditorName": "Hanako Yamada", "creditorAccount": {"accountId": "hanako-1"},
        "remittanceInformationUnstructured": "dinner"});
    let details = json!([transfer]).to_string();
    let pushed = srv.push(&[("scope", "openid payments"), ("authorization_details", &details)]);
    let out = srv.browser("transfer", &[&pushed], &screenshots("transfer"));
    eprintln!("browser notes: {}", out["notes"]);
    let claims = srv.redeem(&out, &pushed);
    assert_eq!(claims["acr"], json!("urn:bank:acr:totp"), "{claims}");
    let mut granted = transfer;
    granted["debtorAccount"] = json!({"accountId": "taro-1"});
    assert_eq!(*srv.last_details.lock().unwrap(), Some(json!([granted])));
    drop(srv.dir);
}
