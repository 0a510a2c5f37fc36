//! fapi-as under hostile load and failure (issue 10): connections are reaped, capped and timed;
//! oversized bodies answer 413; a failing random generator issues and stores nothing; expiries
//! follow the server's clock, which these tests move instead of sleeping. The server runs in this
//! process (the library's listeners and router, over real TLS on free ports) so a test can read
//! its connection figures, choose its limits, break its random source and move its clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_as::app::AppState;
use fapi_as::clock::Clock;
use fapi_as::config::Config;
use fapi_as::keys::Keys;
use fapi_as::random::{Random, RandomError, RandomSource};
use fapi_as::serve::{ConnLimits, ConnStats};
use fapi_as::store::{ClientMetadata, Store, User};
use fapi_core::alg::Algorithm;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::util::{free_port, wait_until, ScratchDir};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{csrf, decode_query, enc, form, location, pkce, Browser, PASSWORD, REDIRECT};

/// The system's generator, or a failure while `failing` is set.
#[derive(Default)]
struct Breakable {
    failing: AtomicBool,
}

impl RandomSource for Breakable {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(RandomError);
        }
        Random::system().fill(buf)
    }
}

const INITIAL_ACCESS_TOKEN: &str = "initial-access-token-for-tests";
const FEED_TOKEN: &str = "feed-token-for-tests";

/// A client's published keys at `https://127.0.0.1:PORT/tpp/jwks` (served by fapi-as's own TLS
/// listener code in the test's runtime); counts the fetches, answers 503 while `down`.
#[derive(Default)]
struct KeyStore {
    keys: std::sync::Mutex<serde_json::Value>,
    fetches: std::sync::atomic::AtomicU32,
    down: AtomicBool,
}

impl KeyStore {
    fn publish(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() =
            json!({"keys": keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>()});
    }
    fn fetches(&self) -> u32 {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// fapi-as in this process: its own runtime, the browser-facing, mTLS and health listeners.
struct InProc {
    rt: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    state: Arc<AppState>,
    _dir: ScratchDir,
    issuer: String,
    browser_port: u16,
    health_port: u16,
    ca: Vec<u8>,
    mtls: HttpsClient,
    key: SigningKey,
    /// The server's clock (a manual one, started at the real time).
    clock: Clock,
    rng: Arc<Breakable>,
    db_url: String,
    key_store: Arc<KeyStore>,
}

/// The listeners' limits for a test.
fn limits(max_connections: usize, header_read_timeout: u64) -> fapi_as::config::Limits {
    fapi_as::config::Limits {
        max_connections,
        health_max_connections: 4,
        header_read_timeout,
        tls_handshake_timeout: header_read_timeout,
    }
}

impl InProc {
    fn start(limits: fapi_as::config::Limits) -> InProc {
        fapi_as::tls::install_provider();
        let dir = ScratchDir::new("as-hardening").unwrap();
        let pki = TestPki::generate(dir.path(), &["fintech"]).unwrap();
        let (https, mtls, http) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
        let issuer = format!("https://127.0.0.1:{https}");
        let db_url = format!("sqlite://{}?mode=rwc", dir.join("as.db").display());
        let ks_port = free_port().unwrap();
        let mut config: Config = toml::from_str(&format!(
            "issuer = \"{issuer}\"\nmtls_base = \"https://127.0.0.1:{mtls}\"\n[tls]\ncert = \"x\"\nkey = \"y\"\n\
             [database]\nurl = \"{db_url}\"\n[feed]\ntoken = \"{FEED_TOKEN}\"\n\
             [registration]\ninitial_access_token = \"{INITIAL_ACCESS_TOKEN}\"\n\
             jwks_uri_hosts = [\"127.0.0.1:{ks_port}\"]\njwks_uri_ca_file = \"{}\"\n",
            pki.ca_pem.display()
        ))
        .unwrap();
        let key_store = Arc::new(KeyStore::default());
        let clock = Clock::manual_from_now();
        let rng = Arc::new(Breakable::default());
        config.limits = limits;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let key = SigningKey::generate(Algorithm::ES256, Some("fintech-1".into())).unwrap();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let state = rt.block_on(async {
            let store = Store::connect(&config.database.url).await.unwrap();
            store
                .put_client(
                    &ClientMetadata {
                        client_id: "fintech".into(),
                        client_name: "Fintech".into(),
                        redirect_uris: vec![REDIRECT.into()],
                        token_endpoint_auth_method: "private_key_jwt".into(),
                        jwks: Some(json!({"keys": [key.public_jwk()]})),
                        jwks_uri: None,
                        tls_client_auth_subject_dn: None,
                        token_binding: "mtls".into(),
                        scope: "openid accounts".into(),
                        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
                        require_signed_request_object: false,
                        profile: "fapi2".into(),
                        authorization_signed_response_alg: None,
                        id_token_encrypted_response_alg: None,
                        id_token_encrypted_response_enc: None,
                        authorization_encrypted_response_alg: None,
                        authorization_encrypted_response_enc: None,
                        authorization_details_types: Vec::new(),
                    },
                    clock.now(),
                )
                .await
                .unwrap();
            store
                .put_client(
                    &ClientMetadata {
                        client_id: "by-reference".into(),
                        client_name: "By reference".into(),
                        redirect_uris: vec![REDIRECT.into()],
                        token_endpoint_auth_method: "private_key_jwt".into(),
                        jwks: None,
                        jwks_uri: Some(format!("https://127.0.0.1:{ks_port}/tpp/jwks")),
                        tls_client_auth_subject_dn: None,
                        token_binding: "mtls".into(),
                        scope: "accounts".into(),
                        grant_types: vec!["client_credentials".into()],
                        require_signed_request_object: false,
                        profile: "fapi2".into(),
                        authorization_signed_response_alg: None,
                        id_token_encrypted_response_alg: None,
                        id_token_encrypted_response_enc: None,
                        authorization_encrypted_response_alg: None,
                        authorization_encrypted_response_enc: None,
                        authorization_details_types: Vec::new(),
                    },
                    clock.now(),
                )
                .await
                .unwrap();
            store
                .put_user(&User {
                    user_id: "user-taro".into(),
                    username: "taro".into(),
                    display_name: "Taro".into(),
                    password_hash: fapi_as::password::hash(&Random::system(), PASSWORD).unwrap(),
                    totp_secret: None,
                })
                .await
                .unwrap();
            let keys = Keys {
                current: SigningKey::generate(Algorithm::ES256, None).unwrap(),
                next: None,
                retired: vec![],
            };
            let state = Arc::new(
                AppState::new(
                    config,
                    store,
                    keys,
                    &[7u8; 32],
                    clock.clone(),
                    Random::from_source(rng.clone()),
                )
                .unwrap(),
            );
            let (plain_tls, mtls_tls) =
                fapi_as::tls::configs(&pki.server.cert_pem, &pki.server.key_pem).unwrap();
            let tls_limits = ConnLimits::tls(&state.config.limits);
            let router = fapi_as::app::router(state.clone());
            let bind = |port: u16| tokio::net::TcpListener::bind(("127.0.0.1", port));
            let (l1, l2, l3) = (
                bind(https).await.unwrap(),
                bind(mtls).await.unwrap(),
                bind(http).await.unwrap(),
            );
            let m = &state.metrics;
            let ks = key_store.clone();
            let key_store_app = axum::Router::new().route(
                "/tpp/jwks",
                axum::routing::get(move || {
                    let ks = ks.clone();
                    async move {
                        ks.fetches.fetch_add(1, Ordering::SeqCst);
                        if ks.down.load(Ordering::SeqCst) {
                            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                        }
                        (axum::http::StatusCode::OK, ks.keys.lock().unwrap().to_string())
                    }
                }),
            );
            tokio::spawn(fapi_as::serve::serve_tls(
                bind(ks_port).await.unwrap(),
                plain_tls.clone(),
                key_store_app,
                tls_limits,
                Arc::new(ConnStats::default()),
                rx.clone(),
            ));
            tokio::spawn(fapi_as::serve::serve_tls(
                l1,
                plain_tls,
                router.clone(),
                tls_limits,
                m.https.clone(),
                rx.clone(),
            ));
            tokio::spawn(fapi_as::serve::serve_tls(
                l2,
                mtls_tls,
                router,
                tls_limits,
                m.mtls.clone(),
                rx.clone(),
            ));
            tokio::spawn(fapi_as::serve::serve_plain(
                l3,
                fapi_as::app::health_router(),
                ConnLimits::health(&state.config.limits),
                m.health.clone(),
                rx,
            ));
            state
        });
        let identity = pki.client("fintech").unwrap();
        let mtls_client = HttpsClient::new(mtls, &pki.ca_der, Some(identity), TlsVersion::Default).unwrap();
        InProc {
            rt: Some(rt),
            stop,
            state,
            _dir: dir,
            issuer,
            browser_port: https,
            health_port: http,
            ca: pki.ca_der.clone(),
            mtls: mtls_client,
            key,
            clock,
            rng,
            db_url,
            key_store,
        }
    }

    fn default() -> InProc {
        Self::start(fapi_as::config::Limits::default())
    }

    /// Makes every draw from the server's random source fail (true) or work again (false).
    fn break_random(&self, failing: bool) {
        self.rng.failing.store(failing, Ordering::SeqCst);
    }

    /// `SELECT COUNT(*) ...` on the server's database.
    fn count(&self, sql: &str) -> i64 {
        let url = self.db_url.clone();
        let sql = sql.to_string();
        self.rt.as_ref().unwrap().block_on(async move {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        })
    }

    /// What a failed request must not have added to.
    fn rows(&self) -> [i64; 6] {
        [
            self.count("SELECT COUNT(*) FROM items"),
            self.count("SELECT COUNT(*) FROM grants"),
            self.count("SELECT COUNT(*) FROM access_tokens"),
            self.count("SELECT COUNT(*) FROM refresh_tokens"),
            self.count("SELECT COUNT(*) FROM clients"),
            self.count("SELECT COUNT(*) FROM items WHERE kind = 'session'"),
        ]
    }

    fn cookie_browser(&self) -> Browser {
        Browser::new(self.browser_port, &self.ca)
    }

    /// PAR; returns (request_uri, code_verifier).
    fn par(&self) -> (String, String) {
        let (verifier, challenge) = pkce();
        let r = self.back_channel("/par", &par_params(&challenge));
        assert_eq!(r.status, 201, "{}", r.text());
        let uri = r.json().unwrap()["request_uri"].as_str().unwrap().to_string();
        (uri, verifier)
    }

    /// `GET /authorize` with `request_uri` in `b`; the response.
    fn authorize(&self, b: &mut Browser, request_uri: &str) -> Resp {
        b.get(&format!(
            "/authorize?client_id=fintech&request_uri={}",
            enc(request_uri)
        ))
    }

    /// Signs taro in on `b`'s sign-in page; the response.
    fn sign_in(&self, b: &mut Browser) -> Resp {
        let page = b.get("/login");
        assert!(page.text().contains("name=\"password\""), "{}", page.text());
        b.post(
            "/login",
            &[
                ("csrf", &csrf(&page)),
                ("username", "taro"),
                ("password", PASSWORD),
            ],
        )
    }

    /// Approves on the consent page; returns the code.
    fn consent(&self, b: &mut Browser) -> String {
        let page = b.get("/login");
        let loc = location(&b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]));
        decode_query(loc.split_once('?').unwrap().1)["code"].clone()
    }

    /// PAR, sign-in, consent: a code and its verifier.
    fn code(&self, b: &mut Browser) -> (String, String) {
        let (uri, verifier) = self.par();
        assert_eq!(location(&self.authorize(b, &uri)), "/login");
        assert_eq!(location(&self.sign_in(b)), "/login");
        (self.consent(b), verifier)
    }

    fn redeem(&self, code: &str, verifier: &str) -> Resp {
        self.back_channel(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
    }

    fn browser(&self) -> HttpsClient {
        HttpsClient::new(self.browser_port, &self.ca, None, TlsVersion::Default).unwrap()
    }

    fn https_stats(&self) -> &ConnStats {
        &self.state.metrics.https
    }

    fn assertion(&self) -> String {
        self.assertion_of(&self.key, "fintech")
    }

    /// A client assertion (RFC 7523) of `client_id`, on the server's clock.
    fn assertion_of(&self, key: &SigningKey, client_id: &str) -> String {
        let now = self.clock.now();
        key.sign_jwt(None, &json!({"iss": client_id, "sub": client_id, "aud": self.issuer, "jti": random_id(), "iat": now, "exp": now + 60}))
            .unwrap()
    }

    /// A form POST on the mTLS listener, authenticated as the client.
    fn back_channel(&self, path: &str, params: &[(&str, &str)]) -> Resp {
        let assertion = self.assertion();
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
}

impl Drop for InProc {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A TLS connection to `port` (handshake done), for writing raw bytes.
fn tls_connect(
    port: u16,
    ca: &[u8],
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca.to_vec()))
        .map_err(std::io::Error::other)?;
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// Reads until the peer closes the connection, within the socket's read timeout: the bytes read,
/// or the error when it was not closed in time.
fn read_until_closed(r: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "still open after the read timeout ({} bytes read)",
                    got.len()
                ))
            }
            // Closed: reset, or ended without close_notify.
            Err(_) => return Ok(got),
        }
    }
}

/// Finding "connection leak": a finished connection's task used to stay in the listener's JoinSet
/// (memory grew ~6 KB per connection). After many short connections, full TLS requests and bare
/// TCP connects that close at once, the listener tracks no task.
#[test]
fn finished_connections_leave_no_task_behind() {
    let srv = InProc::start(limits(64, 5));
    let browser = srv.browser();
    for _ in 0..200 {
        assert_eq!(browser.send(&Req::get("/health")).unwrap().status, 200);
    }
    for _ in 0..2000 {
        drop(TcpStream::connect(("127.0.0.1", srv.browser_port)).unwrap());
    }
    let stats = srv.https_stats();
    wait_until(
        Duration::from_secs(60),
        "every connection accepted and its task reaped",
        || match (stats.accepted(), stats.tasks(), stats.open()) {
            (2200, 0, 0) => Ok(Some(())),
            (a, t, o) => Err(format!("{a} accepted, {t} tasks tracked, {o} connections open")),
        },
    )
    .unwrap();
    // And the listener still serves.
    assert_eq!(browser.send(&Req::get("/health")).unwrap().status, 200);
}

/// Finding "no header-read timeout": a client that sends half a request head, or nothing after
/// the handshake, or no handshake, is cut at the configured timeout (1 s here); the read deadline
/// (10 s) is what the test waits at most.
#[test]
fn half_sent_requests_and_silent_clients_are_cut_at_the_timeout() {
    let srv = InProc::start(limits(64, 1));
    let mut half = tls_connect(srv.browser_port, &srv.ca).unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
        .unwrap();
    half.flush().unwrap();
    let mut silent = tls_connect(srv.browser_port, &srv.ca).unwrap();
    let mut no_handshake = TcpStream::connect(("127.0.0.1", srv.browser_port)).unwrap();
    no_handshake
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let got = read_until_closed(&mut half).unwrap();
    assert!(
        !String::from_utf8_lossy(&got).contains(" 200 "),
        "the half request was not answered"
    );
    read_until_closed(&mut silent).unwrap();
    read_until_closed(&mut no_handshake).unwrap();
    wait_until(Duration::from_secs(10), "the connections counted closed", || {
        Ok((srv.https_stats().open() == 0).then_some(()))
    })
    .unwrap();
    // A client that sends its request in time is answered.
    assert_eq!(srv.browser().send(&Req::get("/health")).unwrap().status, 200);
}

/// Finding "no connection cap": over `max_connections` a TLS listener closes new connections at
/// once, while the health listener (counted apart) still answers; a freed slot serves again.
#[test]
fn connections_over_the_cap_are_closed_while_health_answers() {
    let srv = InProc::start(limits(3, 30));
    let held: Vec<_> = (0..3)
        .map(|_| tls_connect(srv.browser_port, &srv.ca).unwrap())
        .collect();
    wait_until(Duration::from_secs(10), "3 connections open", || {
        Ok((srv.https_stats().open() == 3).then_some(()))
    })
    .unwrap();
    // The fourth: accepted by the kernel, closed by fapi-as before any handshake.
    let mut over = TcpStream::connect(("127.0.0.1", srv.browser_port)).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(
        read_until_closed(&mut over).unwrap(),
        b"",
        "closed without a byte"
    );
    assert!(
        srv.browser().send(&Req::get("/health")).is_err(),
        "no TLS over the cap"
    );
    assert!(srv.https_stats().refused() >= 2);
    assert_eq!(srv.https_stats().open(), 3);
    // Operators see it in the metrics (read on the mTLS listener, which has its own cap).
    let metrics = srv.mtls.send(&Req::get("/metrics")).unwrap().text();
    assert!(
        metrics.contains("fapi_as_connections_open{listener=\"https\"} 3"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("fapi_as_connections_refused_total{listener=\"https\"} 0"),
        "{metrics}"
    );
    // Health checks still get through on the plain listener.
    let (status, body) = fapi_e2e::client::http_get(srv.health_port, "/health").unwrap();
    assert_eq!((status, body.contains("ok")), (200, true));
    // The mTLS listener has its own cap.
    assert_eq!(srv.back_channel("/par", &[]).status, 400);
    // A freed slot serves again.
    drop(held);
    wait_until(
        Duration::from_secs(10),
        "the browser listener to serve again",
        || match srv.browser().send(&Req::get("/health")) {
            Ok(r) if r.status == 200 => Ok(Some(())),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        },
    )
    .unwrap();
}

/// A body just over the 2 MB body limit (so the client's write completes before the answer).
fn oversized_form() -> Vec<u8> {
    let mut body = b"scope=".to_vec();
    body.resize(2 * 1024 * 1024 + 8 * 1024, b'a');
    body
}

/// Finding "oversized bodies": `/token`, `/par` (back channel: OAuth JSON error) and `/login`
/// (front channel: the error page) answer 413, not 400 "must be form-urlencoded".
#[test]
fn oversized_bodies_answer_413() {
    let srv = InProc::start(limits(64, 10));
    for path in ["/token", "/par"] {
        let r = srv
            .mtls
            .send(
                &Req::post(path)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(&oversized_form()),
            )
            .unwrap();
        assert_eq!(r.status, 413, "{path}: {}", r.text());
        let body = r.json().unwrap();
        assert_eq!(body["error"], json!("invalid_request"), "{path}");
        assert!(body["error_description"].as_str().unwrap().contains("too large"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let r = srv
        .browser()
        .send(
            &Req::post("/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&oversized_form()),
        )
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.header("content-type").unwrap_or("").starts_with("text/html"));
    // A small body that is not a form is still a 400.
    let r = srv
        .mtls
        .send(
            &Req::post("/token")
                .header("content-type", "application/json")
                .body(b"{}"),
        )
        .unwrap();
    assert_eq!(r.status, 400);
}

fn par_params(challenge: &str) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid accounts"),
        ("state", "state-123"),
        ("nonce", "nonce-1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// A back-channel 500 `server_error`, with nothing about the cause.
fn assert_server_error(r: &Resp, what: &str) {
    assert_eq!(r.status, 500, "{what}: {}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["error"], json!("server_error"), "{what}");
    assert_eq!(body["error_description"], json!("internal error"), "{what}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
}

/// A front-channel 500: the HTML error page.
fn assert_error_page(r: &Resp, what: &str) {
    assert_eq!(r.status, 500, "{what}: {}", r.text());
    assert!(
        r.header("content-type").unwrap_or("").starts_with("text/html"),
        "{what}"
    );
    assert!(r.header("location").is_none(), "{what}");
    assert!(
        r.headers_named("set-cookie").is_empty(),
        "{what}: no session is handed out"
    );
}

/// Item 2, "randomness fails closed": with the generator failing, PAR, dynamic registration, the
/// token endpoint, the authorization endpoint and sign-in answer 500 `server_error` (the HTML page
/// on the front channel) and store nothing: no request_uri of zeros, no client, no token, no grant,
/// no session. With the generator back, the same requests succeed (the request_uri was not spent).
#[test]
fn a_failing_random_source_issues_and_stores_nothing() {
    let srv = InProc::default();
    let mut b = srv.cookie_browser();

    // PAR.
    let before = srv.rows();
    srv.break_random(true);
    let (_v, challenge) = pkce();
    assert_server_error(&srv.back_channel("/par", &par_params(&challenge)), "PAR");
    assert_eq!(srv.rows(), before, "PAR stored nothing");

    // Dynamic client registration (RFC 7591): no client_id, no registration_access_token.
    let jwks =
        json!({"keys": [SigningKey::generate(Algorithm::ES256, Some("k".into())).unwrap().public_jwk()]});
    let register = || {
        srv.mtls
            .send(
                &Req::post("/register")
                    .header("content-type", "application/json")
                    .header("authorization", &format!("Bearer {INITIAL_ACCESS_TOKEN}"))
                    .body(
                        json!({"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks})
                            .to_string()
                            .as_bytes(),
                    ),
            )
            .unwrap()
    };
    assert_server_error(&register(), "registration");
    assert_eq!(srv.rows(), before, "registration stored nothing");

    // The authorization endpoint: the request_uri is not spent.
    srv.break_random(false);
    let (uri, _verifier) = srv.par();
    srv.break_random(true);
    let before = srv.rows();
    assert_error_page(&srv.authorize(&mut b, &uri), "authorize");
    assert_eq!(srv.rows(), before, "authorize stored nothing");

    // Sign-in: the session is not signed in, and no new one is made.
    srv.break_random(false);
    assert_eq!(
        location(&srv.authorize(&mut b, &uri)),
        "/login",
        "the request_uri still works"
    );
    let page = b.get("/login");
    srv.break_random(true);
    let before = srv.rows();
    let r = b.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_error_page(&r, "sign-in");
    assert_eq!(srv.rows(), before, "sign-in stored nothing");
    srv.break_random(false);
    assert!(
        b.get("/login").text().contains("name=\"password\""),
        "still not signed in"
    );

    // Consent, then the token endpoint: no access or refresh token.
    assert_eq!(location(&srv.sign_in(&mut b)), "/login");
    let page = b.get("/login");
    srv.break_random(true);
    let before = srv.rows();
    let r = b.post("/consent", &[("csrf", &csrf(&page)), ("decision", "approve")]);
    assert_error_page(&r, "consent");
    assert_eq!(srv.rows(), before, "consent stored no grant and no code");
    srv.break_random(false);
    let (code, verifier) = srv.code(&mut srv.cookie_browser());
    srv.break_random(true);
    let before = srv.rows();
    assert_server_error(&srv.redeem(&code, &verifier), "token");
    assert_eq!(srv.rows(), before, "no access token, refresh token or grant");

    // Everything works again with the generator back, and the code was not spent.
    srv.break_random(false);
    assert_eq!(register().status, 201);
    let r = srv.redeem(&code, &verifier);
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Item 5, "one clock": a request_uri expires on the server's clock (RFC 9126 §2.2), while the
/// browser's flow, which started in time, lives on after it (was: two 3 s sleeps against a
/// 2 s lifetime in tests/frontchannel.rs).
#[test]
fn request_uri_is_single_use_and_expires_but_the_flow_lives_on() {
    let srv = InProc::default();
    assert_eq!(srv.state.config.tokens.par_lifetime, 60);
    let (uri, verifier) = srv.par();
    let mut b = srv.cookie_browser();
    assert_eq!(location(&srv.authorize(&mut b, &uri)), "/login");
    // Reuse (RFC 9126 §4), even by the same browser: an error page, no redirect.
    let r = srv.authorize(&mut b, &uri);
    assert_eq!(r.status, 400);
    assert!(r.header("location").is_none());
    // The browser's session still holds the flow, which outlives the request_uri's 60 s.
    srv.clock.advance(Duration::from_secs(61));
    assert_eq!(location(&srv.sign_in(&mut b)), "/login");
    let code = srv.consent(&mut b);
    let r = srv.redeem(&code, &verifier);
    assert_eq!(r.status, 200, "{}", r.text());

    // A request_uri not used in time is refused; one second earlier it would have worked.
    let (uri, _) = srv.par();
    let (fresh, _) = srv.par();
    srv.clock.advance(Duration::from_secs(59));
    assert_eq!(
        location(&srv.authorize(&mut srv.cookie_browser(), &fresh)),
        "/login"
    );
    srv.clock.advance(Duration::from_secs(1));
    let r = srv.authorize(&mut srv.cookie_browser(), &uri);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("expired"), "{}", r.text());
    // Told apart in the metrics: one expired request_uri, one reuse.
    let metrics = srv.cookie_browser().get("/metrics").text();
    assert!(
        metrics.contains("endpoint=\"authorize\",outcome=\"invalid_request_uri\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("endpoint=\"authorize\",outcome=\"reused_request_uri\"} 1"),
        "{metrics}"
    );
}

/// Item 5: an authorization code expires on the server's clock (FAPI 2.0 §5.3.2.1: at most 60 s),
/// and the access token it would have bought carries the clock's times.
#[test]
fn an_authorization_code_expires_when_the_clock_moves() {
    let srv = InProc::default();
    let (late, late_verifier) = srv.code(&mut srv.cookie_browser());
    let (code, verifier) = srv.code(&mut srv.cookie_browser());
    srv.clock.advance(Duration::from_secs(59));
    let r = srv.redeem(&code, &verifier);
    assert_eq!(r.status, 200, "in time: {}", r.text());
    let at = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let claims = fapi_core::jws::CompactJws::parse(&at).unwrap().payload;
    assert_eq!(claims["iat"], json!(srv.clock.now()), "iat is the server clock's");
    assert_eq!(claims["exp"], json!(srv.clock.now() + 300));
    srv.clock.advance(Duration::from_secs(2));
    let r = srv.redeem(&late, &late_verifier);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], json!("invalid_grant"));
}

/// Item 5: a browser session ends after its lifetime on the server's clock (30 min), and the
/// flow after its own (10 min from `GET /authorize`).
#[test]
fn a_session_expires_when_the_clock_moves() {
    let srv = InProc::default();
    let mut b = srv.cookie_browser();
    let _ = srv.code(&mut b);
    assert!(
        b.get("/apps").text().contains("Fintech"),
        "signed in: the apps page lists the grant"
    );
    srv.clock.advance(Duration::from_secs(29 * 60));
    assert!(
        b.get("/apps").text().contains("Fintech"),
        "still signed in after 29 min"
    );
    srv.clock.advance(Duration::from_secs(60 + 1));
    let page = b.get("/apps").text();
    assert!(
        page.contains("name=\"password\""),
        "signed out after 30 min: {page}"
    );

    // The flow: sign-in 10 min after /authorize finds the request expired.
    let mut b = srv.cookie_browser();
    let (uri, _) = srv.par();
    assert_eq!(location(&srv.authorize(&mut b, &uri)), "/login");
    let page = b.get("/login");
    srv.clock.advance(Duration::from_secs(600));
    let r = b.post(
        "/login",
        &[
            ("csrf", &csrf(&page)),
            ("username", "taro"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(r.status, 400, "{}", r.text());
}

/// Item 5: the cache of a client's `jwks_uri` key set follows the server's clock: fresh for
/// 5 minutes, then fetched again; while the key store is down the last set serves for a day,
/// then no longer.
#[test]
fn the_jwks_uri_cache_ages_on_the_server_clock() {
    let srv = InProc::default();
    let key = SigningKey::generate(Algorithm::ES256, Some("ref-1".into())).unwrap();
    srv.key_store.publish(&[&key]);
    let token = || {
        let assertion = srv.assertion_of(&key, "by-reference");
        let pairs = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        srv.mtls
            .send(
                &Req::post("/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(&form(&pairs)),
            )
            .unwrap()
    };
    let r = token();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.key_store.fetches(), 1);
    srv.clock.advance(Duration::from_secs(299));
    assert_eq!(token().status, 200);
    assert_eq!(srv.key_store.fetches(), 1, "fresh for 5 minutes");
    srv.clock.advance(Duration::from_secs(2));
    assert_eq!(token().status, 200);
    assert_eq!(srv.key_store.fetches(), 2, "fetched again after 5 minutes");
    // The key store goes down: the last set serves (a failed fetch at most every 30 s) ...
    srv.key_store.down.store(true, Ordering::SeqCst);
    srv.clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(token().status, 200, "a day-old set still serves");
    assert_eq!(srv.key_store.fetches(), 3);
    // ... for a day, then no longer.
    srv.clock.advance(Duration::from_secs(3600));
    let r = token();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json().unwrap()["error"], json!("invalid_client"));
}

/// Item 5: the revocation feed holds a revocation back for its settling window (2 s) on the
/// server's clock, then lists it (was: a 2.5 s sleep where the real binary runs).
#[test]
fn the_revocation_feed_settles_on_the_server_clock() {
    let srv = InProc::default();
    let (code, verifier) = srv.code(&mut srv.cookie_browser());
    let r = srv.redeem(&code, &verifier);
    assert_eq!(r.status, 200, "{}", r.text());
    let at = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let jti = fapi_core::jws::CompactJws::parse(&at).unwrap().payload["jti"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(srv.back_channel("/revoke", &[("token", &at)]).status, 200);
    let feed = || {
        let r = srv
            .browser()
            .send(&Req::get("/revocations").header("authorization", &format!("Bearer {FEED_TOKEN}")))
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json().unwrap()["revoked"].to_string()
    };
    assert!(!feed().contains(&jti), "held back while it settles");
    srv.clock.advance(Duration::from_millis(1999));
    assert!(!feed().contains(&jti), "still settling");
    srv.clock.advance(Duration::from_millis(2));
    assert!(feed().contains(&jti), "listed once settled");
}
