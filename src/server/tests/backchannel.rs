//! The back channel of the real `fapi-as` binary over real TLS: client_credentials with
//! private_key_jwt and tls_client_auth (mTLS-bound tokens), DPoP-bound tokens with server nonces,
//! refusals (no certificate, RS256 assertion, replayed assertion, scope, grant type), revocation then
//! introspection (JSON and RFC 9701 JWT) and the revocation feed, dynamic client registration.
//! On SQLite, or on PostgreSQL with `FAPI_TEST_DATABASE=postgres` (tests/common/mod.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::jwks::{Jwks, KeySelection};
use fapi_core::jws::CompactJws;
use fapi_core::sign::SigningKey;
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::{Identity, TestPki};
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, wait_until, ScratchDir};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

mod common;

use common::TestDb;

const FEED_TOKEN: &str = "feed-credential-0123456789";
const INITIAL_TOKEN: &str = "initial-access-token-0123456789";

struct Server {
    _process: Process,
    /// After the process: a PostgreSQL server stops only once fapi-as has.
    _db: TestDb,
    pki: TestPki,
    https: u16,
    mtls: u16,
    issuer: String,
    /// private_key_jwt key of the clients `pkj-mtls` and `pkj-dpop`.
    client_key: SigningKey,
    /// An RS256 key, registered too, to show that the algorithm alone is refused.
    rsa_key: SigningKey,
    /// A client's key store over HTTPS (the host `registration.jwks_uri_hosts` allows).
    key_store: KeyStore,
    _dir: ScratchDir,
}

/// A client's published keys at `https://127.0.0.1:PORT/tpp/jwks`, with the test PKI's server
/// certificate: what an ecosystem directory's key store is to fapi-as. Counts the requests it answers;
/// `down` makes it answer 503. Stopped on drop.
struct KeyStore {
    port: u16,
    state: std::sync::Arc<std::sync::Mutex<(Value, u32, bool)>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeyStore {
    fn start(pki: &TestPki) -> KeyStore {
        use std::io::{BufRead, BufReader, Write};
        let certs: Vec<_> =
            rustls_pemfile::certs(&mut std::fs::read(&pki.server.cert_pem).unwrap().as_slice())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pemfile::private_key(&mut std::fs::read(&pki.server.key_pem).unwrap().as_slice())
            .unwrap()
            .unwrap();
        let config = std::sync::Arc::new(
            rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(std::sync::Mutex::new((json!({"keys": []}), 0u32, false)));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, stopping) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = conn else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(tls) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut stream = BufReader::new(rustls::StreamOwned::new(tls, tcp));
                let mut line = String::new();
                let mut request_line = String::new();
                while stream.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if request_line.is_empty() {
                        request_line = line.clone();
                    }
                    line.clear();
                }
                let (status, body) = {
                    let mut st = st.lock().unwrap();
                    st.1 += 1;
                    match (st.2, request_line.starts_with("GET /tpp/jwks ")) {
                        (true, _) => ("503 Service Unavailable", String::new()),
                        (false, true) => ("200 OK", st.0.to_string()),
                        (false, false) => ("404 Not Found", String::new()),
                    }
                };
                let stream = stream.get_mut();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.flush();
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        KeyStore {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn uri(&self) -> String {
        format!("https://127.0.0.1:{}/tpp/jwks", self.port)
    }

    fn publish(&self, keys: &[&SigningKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.public_jwk().clone()).collect();
        self.state.lock().unwrap().0 = json!({ "keys": keys });
    }

    fn fetches(&self) -> u32 {
        self.state.lock().unwrap().1
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().2 = down;
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_jwks(path: &Path, keys: &[&SigningKey]) {
    let keys: Vec<Value> = keys.iter().map(|k| k.public_jwk().clone()).collect();
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
}

fn cli(config: &Path, args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fapi-as"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fapi-as {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Server {
    let dir = ScratchDir::new("as-backchannel").unwrap();
    let pki = TestPki::generate(dir.path(), &["alpha", "beta"]).unwrap();
    let (https, mtls, http) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let issuer = format!("https://127.0.0.1:{https}");
    let (db, db_url) = TestDb::from_env(dir.path());
    let key_store = KeyStore::start(&pki);
    let config = dir.join("fapi-as.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"{issuer}\"\nmtls_base = \"https://127.0.0.1:{mtls}\"\n\
             [listen]\nhttps = \"127.0.0.1:{https}\"\nmtls = \"127.0.0.1:{mtls}\"\nhttp = \"127.0.0.1:{http}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n\
             [database]\nurl = \"{db_url}\"\n\
             [keys]\ndir = \"{}/keys\"\nalg = \"ES256\"\n\
             [feed]\ntoken = \"{FEED_TOKEN}\"\n\
             [registration]\ninitial_access_token = \"{INITIAL_TOKEN}\"\n\
             jwks_uri_hosts = [\"127.0.0.1:{}\"]\njwks_uri_ca_file = \"{}\"\njwks_uri_min_refetch = 1\n",
            pki.server.cert_pem.display(),
            pki.server.key_pem.display(),
            dir.path().display(),
            key_store.port,
            pki.ca_pem.display(),
        ),
    )
    .unwrap();
    let client_key = SigningKey::generate(Algorithm::ES256, Some("es".into())).unwrap();
    let rsa_key = SigningKey::generate(Algorithm::RS256, Some("rsa".into())).unwrap();
    let jwks = dir.join("client.jwks.json");
    write_jwks(&jwks, &[&client_key, &rsa_key]);
    let jwks = jwks.display().to_string();
    let common = [
        "--grant-type",
        "client_credentials",
        "--scope",
        "accounts payments",
    ];
    let mut a = vec![
        "client",
        "add",
        "--client-id",
        "pkj-mtls",
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        &jwks,
        "--binding",
        "mtls",
    ];
    a.extend(common);
    cli(&config, &a);
    let mut a = vec![
        "client",
        "add",
        "--client-id",
        "pkj-dpop",
        "--auth-method",
        "private_key_jwt",
        "--jwks",
        &jwks,
        "--binding",
        "dpop",
    ];
    a.extend(common);
    cli(&config, &a);
    let dn = "CN=fapi-e2e client beta";
    let mut a = vec![
        "client",
        "add",
        "--client-id",
        "tls-auth",
        "--auth-method",
        "tls_client_auth",
        "--subject-dn",
        dn,
        "--binding",
        "mtls",
    ];
    a.extend(common);
    cli(&config, &a);
    let process = Process::spawn(
        "fapi-as",
        Path::new(env!("CARGO_BIN_EXE_fapi-as")),
        &["-c".into(), config.display().to_string(), "serve".into()],
        &dir.join("fapi-as.log"),
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "fapi-as health", || {
        Ok(fapi_e2e::client::http_get(http, "/health")
            .ok()
            .filter(|(s, _)| *s == 200))
    })
    .unwrap();
    Server {
        _process: process,
        _db: db,
        pki,
        https,
        mtls,
        issuer,
        client_key,
        rsa_key,
        key_store,
        _dir: dir,
    }
}

impl Server {
    /// A client of the mTLS listener with `cert`, or of the browser-facing listener without.
    fn client(&self, cert: Option<&str>) -> HttpsClient {
        match cert {
            Some(name) => HttpsClient::new(
                self.mtls,
                &self.pki.ca_der,
                self.pki.client(name),
                TlsVersion::Default,
            )
            .unwrap(),
            None => HttpsClient::new(self.https, &self.pki.ca_der, None, TlsVersion::Default).unwrap(),
        }
    }

    fn identity(&self, name: &str) -> &Identity {
        self.pki.client(name).unwrap()
    }

    fn assertion(&self, key: &SigningKey, client_id: &str) -> String {
        let t = unix_now();
        key.sign_jwt(
            None,
            &json!({"iss": client_id, "sub": client_id, "aud": self.issuer, "iat": t, "exp": t + 60, "jti": fapi_core::sign::random_id()}),
        )
        .unwrap()
    }

    fn jwks(&self) -> Jwks {
        let r = self.client(None).send(&Req::get("/jwks")).unwrap();
        Jwks::parse(&r.body).unwrap()
    }

    /// The claims of a JWT this server signed, after checking its signature against /jwks.
    fn verified(&self, jwt: &str, typ: &str) -> Value {
        let jws = CompactJws::parse(jwt).unwrap();
        assert_eq!(jws.header_str("typ").unwrap(), Some(typ));
        let alg = match jws.header_str("alg").unwrap() {
            Some("ES256") => Algorithm::ES256,
            other => panic!("unexpected alg {other:?}"),
        };
        let keys = self.jwks();
        let KeySelection::Found(key) = keys.select(jws.header_str("kid").unwrap(), alg) else {
            panic!("no key")
        };
        assert!(
            key.verify(alg, jws.signing_input.as_bytes(), &jws.signature),
            "signature"
        );
        Value::Object(jws.payload)
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn post(path: &str, pairs: &[(&str, &str)]) -> Req {
    Req::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(&form(pairs))
}

fn cc(assertion: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "client_credentials".into()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        ("client_assertion", assertion.into()),
    ]
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What a resource server holding the feed credential learns from `/introspect` (RFC 7662).
fn introspect_as_resource_server(plain: &HttpsClient, token: &str) -> Value {
    let r = plain
        .send(
            &post("/introspect", &[("token", token)])
                .header("authorization", &format!("Bearer {FEED_TOKEN}")),
        )
        .unwrap();
    r.json().unwrap()
}

/// One page of the revocation feed, from the start or after `since`.
fn feed_page(plain: &HttpsClient, since: Option<&str>) -> Value {
    let path = since.map_or("/revocations".to_string(), |c| format!("/revocations?since={c}"));
    let r = plain
        .send(&Req::get(&path).header("authorization", &format!("Bearer {FEED_TOKEN}")))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

fn error_of(r: &Resp) -> String {
    r.json()
        .ok()
        .and_then(|j| j["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn client_credentials_with_mtls_bound_tokens_and_refusals() {
    let s = start();
    let alpha = s.client(Some("alpha"));
    // private_key_jwt over the mTLS alias: cnf.x5t#S256 is alpha's certificate.
    let r = alpha
        .send(&post(
            "/token",
            &pairs(&cc(&s.assertion(&s.client_key, "pkj-mtls"))),
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json().unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "accounts payments");
    let at = s.verified(body["access_token"].as_str().unwrap(), "at+jwt");
    assert_eq!(at["cnf"]["x5t#S256"], json!(s.identity("alpha").x5t_s256()));
    assert_eq!(at["sub"], "pkj-mtls");
    assert_eq!(at["client_id"], "pkj-mtls");
    assert_eq!(at["iss"], json!(s.issuer));
    assert_eq!(at["aud"], "https://api.bank.example");
    assert!(at["exp"].as_i64().unwrap() > at["iat"].as_i64().unwrap());
    assert!(body.get("refresh_token").is_none());

    // tls_client_auth: the subject DN of beta's certificate.
    let beta = s.client(Some("beta"));
    let r = beta
        .send(&post(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "tls-auth"),
                ("scope", "accounts"),
            ],
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let at = s.verified(r.json().unwrap()["access_token"].as_str().unwrap(), "at+jwt");
    assert_eq!(at["cnf"]["x5t#S256"], json!(s.identity("beta").x5t_s256()));
    assert_eq!(at["scope"], "accounts");
    // ... and alpha's certificate does not carry that DN.
    let r = alpha
        .send(&post(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", "tls-auth")],
        ))
        .unwrap();
    assert_eq!((r.status, error_of(&r).as_str()), (401, "invalid_client"));

    // An mTLS-bound client's request without its certificate (browser-facing listener): refused.
    let plain = s.client(None);
    let r = plain
        .send(&post(
            "/token",
            &pairs(&cc(&s.assertion(&s.client_key, "pkj-mtls"))),
        ))
        .unwrap();
    assert_eq!(
        (r.status, error_of(&r).as_str()),
        (400, "invalid_request"),
        "{}",
        r.text()
    );
    assert!(r.text().contains("certificate"));
    let r = plain
        .send(&post(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", "tls-auth")],
        ))
        .unwrap();
    assert_eq!((r.status, error_of(&r).as_str()), (401, "invalid_client"));

    // RS256 client assertion, with a registered RSA key: refused (FAPI 2.0 §5.4.1).
    let r = alpha
        .send(&post("/token", &pairs(&cc(&s.assertion(&s.rsa_key, "pkj-mtls")))))
        .unwrap();
    assert_eq!(
        (r.status, error_of(&r).as_str()),
        (401, "invalid_client"),
        "{}",
        r.text()
    );

    // A replayed assertion (same jti): refused the second time.
    let once = s.assertion(&s.client_key, "pkj-mtls");
    assert_eq!(
        alpha.send(&post("/token", &pairs(&cc(&once)))).unwrap().status,
        200
    );
    let r = alpha.send(&post("/token", &pairs(&cc(&once)))).unwrap();
    assert_eq!((r.status, error_of(&r).as_str()), (401, "invalid_client"));

    // A scope the client may not have; a grant type nobody gets.
    let mut p = cc(&s.assertion(&s.client_key, "pkj-mtls"));
    p.push(("scope", "accounts openid".into()));
    let r = alpha.send(&post("/token", &pairs(&p))).unwrap();
    assert_eq!(error_of(&r), "invalid_scope");
    let mut p = cc(&s.assertion(&s.client_key, "pkj-mtls"));
    p[0].1 = "password".into();
    let r = alpha.send(&post("/token", &pairs(&p))).unwrap();
    assert_eq!(error_of(&r), "unsupported_grant_type");
    // A parameter twice (RFC 6749 §3.1).
    let r = alpha
        .send(&post(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
                ("client_id", "tls-auth"),
            ],
        ))
        .unwrap();
    assert_eq!(error_of(&r), "invalid_request");
}

#[test]
fn dpop_bound_client_credentials_with_server_nonce() {
    let s = start();
    let plain = s.client(None);
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let htu = format!("{}/token", s.issuer);
    let token_req = |nonce: Option<&str>| {
        let proof = key
            .dpop_proof(
                "POST",
                &htu,
                None,
                unix_now(),
                &fapi_core::sign::random_id(),
                nonce,
            )
            .unwrap();
        post("/token", &pairs(&cc(&s.assertion(&s.client_key, "pkj-dpop")))).header("DPoP", &proof)
    };
    // RFC 9449 §8: no nonce yet.
    let r = plain.send(&token_req(None)).unwrap();
    assert_eq!((r.status, error_of(&r).as_str()), (400, "use_dpop_nonce"));
    let nonce = r.header("dpop-nonce").unwrap().to_string();
    // With the nonce: a DPoP-bound token, and the next nonce.
    let r = plain.send(&token_req(Some(&nonce))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("dpop-nonce").is_some());
    let body = r.json().unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap().to_string();
    let at = s.verified(&token, "at+jwt");
    assert_eq!(at["cnf"]["jkt"], json!(key.thumbprint()));
    assert!(at["cnf"].get("x5t#S256").is_none());
    // No proof at all: refused.
    let r = plain
        .send(&post(
            "/token",
            &pairs(&cc(&s.assertion(&s.client_key, "pkj-dpop"))),
        ))
        .unwrap();
    assert_eq!(error_of(&r), "invalid_dpop_proof");
    // A proof for another URL: refused.
    let proof = key
        .dpop_proof(
            "POST",
            "https://elsewhere.example/token",
            None,
            unix_now(),
            "j1",
            Some(&nonce),
        )
        .unwrap();
    let r = plain
        .send(&post("/token", &pairs(&cc(&s.assertion(&s.client_key, "pkj-dpop")))).header("DPoP", &proof))
        .unwrap();
    assert_eq!(error_of(&r), "invalid_dpop_proof");

    // Userinfo checks the binding: a Bearer presentation of a DPoP token is refused; a proper DPoP
    // presentation gets past the binding and stops at the scope (no openid for client_credentials).
    let r = plain
        .send(&Req::get("/userinfo").header("authorization", &format!("Bearer {token}")))
        .unwrap();
    assert_eq!(r.status, 401);
    let proof = key
        .dpop_proof(
            "GET",
            &format!("{}/userinfo", s.issuer),
            Some(&token),
            unix_now(),
            "u1",
            None,
        )
        .unwrap();
    let r = plain
        .send(
            &Req::get("/userinfo")
                .header("authorization", &format!("DPoP {token}"))
                .header("DPoP", &proof),
        )
        .unwrap();
    assert_eq!(
        (r.status, error_of(&r).as_str()),
        (403, "insufficient_scope"),
        "{}",
        r.text()
    );
    let other = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let proof = other
        .dpop_proof(
            "GET",
            &format!("{}/userinfo", s.issuer),
            Some(&token),
            unix_now(),
            "u2",
            None,
        )
        .unwrap();
    let r = plain
        .send(
            &Req::get("/userinfo")
                .header("authorization", &format!("DPoP {token}"))
                .header("DPoP", &proof),
        )
        .unwrap();
    // A valid proof by another key: the token is not this key's (fapi-core: dpop_key_mismatch).
    assert_eq!((r.status, error_of(&r).as_str()), (401, "invalid_token"));
}

#[test]
fn revocation_then_introspection_and_the_feed() {
    let s = start();
    let alpha = s.client(Some("alpha"));
    let auth = |extra: &[(&'static str, String)]| {
        let mut p = vec![
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion", s.assertion(&s.client_key, "pkj-mtls")),
        ];
        p.extend(extra.iter().cloned());
        p
    };
    let r = alpha
        .send(&post(
            "/token",
            &pairs(&cc(&s.assertion(&s.client_key, "pkj-mtls"))),
        ))
        .unwrap();
    let token = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let jti = s.verified(&token, "at+jwt")["jti"].as_str().unwrap().to_string();

    // Introspection (RFC 7662): active, with the binding.
    let r = alpha
        .send(&post("/introspect", &pairs(&auth(&[("token", token.clone())]))))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let i = r.json().unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["client_id"], "pkj-mtls");
    assert_eq!(i["cnf"]["x5t#S256"], json!(s.identity("alpha").x5t_s256()));
    // RFC 9701: the signed answer.
    let r = alpha
        .send(
            &post("/introspect", &pairs(&auth(&[("token", token.clone())])))
                .header("accept", "application/token-introspection+jwt"),
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/token-introspection+jwt")
    );
    let signed = s.verified(&r.text(), "token-introspection+jwt");
    assert_eq!(signed["aud"], "pkj-mtls");
    assert_eq!(signed["iss"], json!(s.issuer));
    assert_eq!(signed["token_introspection"]["active"], true);
    assert_eq!(signed["token_introspection"]["jti"], json!(jti));

    // The feed: credential required.
    let plain = s.client(None);
    assert_eq!(plain.send(&Req::get("/revocations")).unwrap().status, 401);
    assert_eq!(
        plain
            .send(&Req::get("/revocations").header("authorization", "Bearer wrong"))
            .unwrap()
            .status,
        401
    );
    let feed = |since: Option<&str>| feed_page(&plain, since);
    assert_eq!(feed(None)["revoked"], json!([]));

    // Revocation (RFC 7009): 200; also for an unknown token.
    let r = alpha
        .send(&post(
            "/revoke",
            &pairs(&auth(&[
                ("token", token.clone()),
                ("token_type_hint", "access_token".into()),
            ])),
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = alpha
        .send(&post(
            "/revoke",
            &pairs(&auth(&[("token", "no-such-token".into())])),
        ))
        .unwrap();
    assert_eq!(r.status, 200);
    let r = alpha
        .send(&post("/introspect", &pairs(&auth(&[("token", token.clone())]))))
        .unwrap();
    assert_eq!(r.json().unwrap(), json!({"active": false}));
    // A resource server with the feed credential sees the same.
    assert_eq!(
        introspect_as_resource_server(&plain, &token),
        json!({"active": false})
    );

    // The feed lists the jti (after its settle delay), then nothing new after its cursor.
    let page = wait_until(Duration::from_secs(15), "the revocation on the feed", || {
        let p = feed(None);
        Ok((p["revoked"].as_array().map_or(0, Vec::len) > 0).then_some(p))
    })
    .unwrap();
    assert_eq!(
        page["revoked"],
        json!([{"iss": s.issuer, "jti": jti, "exp": page["revoked"][0]["exp"]}])
    );
    let page = fapi_core::revocation::FeedPage::parse(&serde_json::to_vec(&page).unwrap()).unwrap();
    let next = feed(Some(&page.cursor));
    assert_eq!(next["revoked"], json!([]));
    assert_eq!(next["cursor"], json!(page.cursor));
}

#[test]
fn dynamic_client_registration_round_trip() {
    let s = start();
    let plain = s.client(None);
    let key = SigningKey::generate(Algorithm::ES256, Some("dcr".into())).unwrap();
    let metadata = json!({
        "client_name": "Fintech DCR",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.public_jwk()]},
        "grant_types": ["client_credentials"],
        "scope": "accounts",
        "tls_client_certificate_bound_access_tokens": true,
        "authorization_details_types": ["payment_initiation"],
    });
    let register = |auth: Option<&str>, body: &Value| {
        let mut r = Req::post("/register")
            .header("content-type", "application/json")
            .body(body.to_string().as_bytes());
        if let Some(a) = auth {
            r = r.header("authorization", &format!("Bearer {a}"));
        }
        plain.send(&r).unwrap()
    };
    assert_eq!(register(None, &metadata).status, 401);
    assert_eq!(register(Some("wrong"), &metadata).status, 401);
    let mut bad = metadata.clone();
    bad["token_endpoint_auth_method"] = json!("client_secret_basic");
    assert_eq!(
        error_of(&register(Some(INITIAL_TOKEN), &bad)),
        "invalid_client_metadata"
    );
    // RFC 9396 §10: only the types this server supports.
    let mut bad = metadata.clone();
    bad["authorization_details_types"] = json!(["account_information"]);
    assert_eq!(
        error_of(&register(Some(INITIAL_TOKEN), &bad)),
        "invalid_client_metadata"
    );

    let r = register(Some(INITIAL_TOKEN), &metadata);
    assert_eq!(r.status, 201, "{}", r.text());
    let reg = r.json().unwrap();
    let client_id = reg["client_id"].as_str().unwrap().to_string();
    let rat = reg["registration_access_token"].as_str().unwrap().to_string();
    let uri = reg["registration_client_uri"].as_str().unwrap().to_string();
    assert_eq!(uri, format!("{}/register/{client_id}", s.issuer));
    assert_eq!(reg["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        reg["authorization_details_types"],
        json!(["payment_initiation"]),
        "RFC 9396 §10, returned as registered"
    );
    let path = format!("/register/{client_id}");

    // The new client gets an mTLS-bound token.
    let assertion = s.assertion(&key, &client_id);
    let alpha = s.client(Some("alpha"));
    let r = alpha.send(&post("/token", &pairs(&cc(&assertion)))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let issued = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let jti = s.verified(&issued, "at+jwt")["jti"].as_str().unwrap().to_string();

    // RFC 7592: read, update, delete with the registration access token.
    let with = |req: Req, token: &str| {
        plain
            .send(&req.header("authorization", &format!("Bearer {token}")))
            .unwrap()
    };
    let r = with(Req::get(&path), &rat);
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["client_name"], "Fintech DCR");
    assert_eq!(
        r.json().unwrap()["authorization_details_types"],
        json!(["payment_initiation"])
    );
    assert!(r.json().unwrap().get("registration_access_token").is_none());
    assert_eq!(with(Req::get(&path), "wrong").status, 401);
    assert_eq!(with(Req::get(&path), INITIAL_TOKEN).status, 401);
    let mut updated = metadata.clone();
    updated["client_id"] = json!(client_id);
    updated["scope"] = json!("accounts payments");
    let r = with(
        Req::new("PUT", &path)
            .header("content-type", "application/json")
            .body(updated.to_string().as_bytes()),
        &rat,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().unwrap()["scope"], "accounts payments");
    assert_eq!(with(Req::new("DELETE", &path), &rat).status, 204);
    assert_eq!(with(Req::get(&path), &rat).status, 401);
    let r = alpha
        .send(&post("/token", &pairs(&cc(&s.assertion(&key, &client_id)))))
        .unwrap();
    assert_eq!(error_of(&r), "invalid_client");

    // RFC 7592 §2.3: the deleted client's tokens are revoked and reach the feed for resource servers.
    assert_eq!(
        introspect_as_resource_server(&plain, &issued),
        json!({"active": false})
    );
    wait_until(
        Duration::from_secs(15),
        "the deleted client's token on the feed",
        || {
            let listed = feed_page(&plain, None)["revoked"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t["jti"] == jti.as_str()));
            Ok(listed.then_some(()))
        },
    )
    .unwrap();
}

#[test]
fn client_keys_by_reference_at_a_jwks_uri() {
    let s = start();
    let plain = s.client(None);
    let alpha = s.client(Some("alpha"));
    let k1 = SigningKey::generate(Algorithm::ES256, Some("k1".into())).unwrap();
    let k2 = SigningKey::generate(Algorithm::ES256, Some("k2".into())).unwrap();
    s.key_store.publish(&[&k1]);
    let register = |body: &Value| {
        plain
            .send(
                &Req::post("/register")
                    .header("content-type", "application/json")
                    .header("authorization", &format!("Bearer {INITIAL_TOKEN}"))
                    .body(body.to_string().as_bytes()),
            )
            .unwrap()
    };
    let metadata = json!({
        "client_name": "TPP by reference",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": s.key_store.uri(),
        "grant_types": ["client_credentials"],
        "scope": "accounts",
    });
    // Only https URIs on the configured host, and not together with inline keys.
    for (field, value) in [
        (
            "jwks_uri",
            json!(format!("https://127.0.0.1:{}/tpp/jwks", s.https)),
        ),
        ("jwks_uri", json!(s.key_store.uri().replace("https:", "http:"))),
        ("jwks", json!({"keys": [k1.public_jwk()]})),
    ] {
        let mut bad = metadata.clone();
        bad[field] = value;
        assert_eq!(error_of(&register(&bad)), "invalid_client_metadata", "{field}");
    }
    assert_eq!(s.key_store.fetches(), 0, "registration fetches nothing");
    let r = register(&metadata);
    assert_eq!(r.status, 201, "{}", r.text());
    let client_id = r.json().unwrap()["client_id"].as_str().unwrap().to_string();
    let token = |key: &SigningKey| {
        alpha
            .send(&post("/token", &pairs(&cc(&s.assertion(key, &client_id)))))
            .unwrap()
    };

    // The first token fetches the keys, the next ones use them from the cache.
    let r = token(&k1);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(token(&k1).status, 200);
    assert_eq!(s.key_store.fetches(), 1);

    // The client rotates: a key the cached set lacks makes fapi-as fetch again (at most every
    // jwks_uri_min_refetch, 1 s here), and the new key works.
    s.key_store.publish(&[&k2]);
    wait_until(Duration::from_secs(10), "the rotated key accepted", || {
        Ok((token(&k2).status == 200).then_some(()))
    })
    .unwrap();
    let fetched = s.key_store.fetches();
    assert!((2..=4).contains(&fetched), "{fetched} fetches");
    // The retired key is gone from the set: refused.
    assert_eq!(error_of(&token(&k1)), "invalid_client");

    // The key store goes down: the fetched set keeps working; a key it never published is refused.
    s.key_store.set_down(true);
    assert_eq!(token(&k2).status, 200);
    let stranger = SigningKey::generate(Algorithm::ES256, Some("k3".into())).unwrap();
    let before = s.key_store.fetches();
    wait_until(Duration::from_secs(10), "a refetch for the unknown key", || {
        assert_eq!(error_of(&token(&stranger)), "invalid_client");
        Ok((s.key_store.fetches() > before).then_some(()))
    })
    .unwrap();
    assert_eq!(token(&k2).status, 200, "a failed refetch keeps the last good set");
}
