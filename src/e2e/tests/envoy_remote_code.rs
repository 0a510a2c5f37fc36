//! Pinned remote loading: Envoy fetches the plugin with `vm_config.code.remote` (`http_uri` +
//! `sha256`) from a local HTTP server, as Envoy Gateway's HTTP source, `fapictl deploy envoy --image
//! https://...` and Istio's agent (which serves its verified cache to Envoy) all do.
//! - the right SHA-256: the plugin runs and decides as when loaded from a local file;
//! - a wrong SHA-256: Envoy refuses the code: no plugin runs and no request reaches the upstream;
//! - the server down at start: nothing is served until the code could be fetched and verified; once
//!   the server is up (within the retry policy) the plugin runs.
//!
//! Needs the release plugin (`target/wasm32-wasip1/release/fapi_filter.wasm`) and Envoy (`.venv`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, TlsVersion};
use fapi_e2e::envoy::{plugin_wasm, tail, Envoy, EnvoyConfig};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::server::{echo, HttpServer, Response};
use fapi_e2e::stub::{IssuerStub, JWKS_PATH};
use fapi_e2e::util::{free_port, unix_now, wait_until, ScratchDir};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ISS: &str = "https://as.remote.example";
const AUD: &str = "https://api.remote.example";
const READY: Duration = Duration::from_secs(30);
const WASM_PATH: &str = "/release/fapi_guard.wasm";

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves the plugin at WASM_PATH and counts the fetches.
fn code_server(port: u16, wasm: Arc<Vec<u8>>, fetches: Arc<AtomicUsize>) -> HttpServer {
    HttpServer::start_on(
        port,
        Arc::new(move |req| {
            if req.path_only() != WASM_PATH {
                return Response::text(404, "not found");
            }
            fetches.fetch_add(1, Ordering::SeqCst);
            Response {
                status: 200,
                headers: vec![("content-type".into(), "application/wasm".into())],
                body: wasm.as_ref().clone(),
            }
        }),
    )
    .expect("code server")
}

struct Setup {
    dir: ScratchDir,
    pki: TestPki,
    issuer: SigningKey,
    _jwks: IssuerStub,
    upstream_hits: Arc<AtomicUsize>,
    _upstream: HttpServer,
    config: EnvoyConfig,
    wasm: Arc<Vec<u8>>,
}

fn setup(name: &str) -> Setup {
    let path = plugin_wasm();
    let wasm = Arc::new(
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (build the plugin: scripts/test-all)", path.display())),
    );
    let dir = ScratchDir::new(name).expect("scratch dir");
    let pki = TestPki::generate(dir.path(), &["client-a"]).expect("test PKI");
    let issuer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).expect("key");
    let jwks = IssuerStub::start(json!({"keys": [issuer.public_jwk().clone()]})).expect("JWKS");
    let upstream_hits = Arc::new(AtomicUsize::new(0));
    let hits = upstream_hits.clone();
    let inner = echo();
    let upstream = HttpServer::start(Arc::new(move |req| {
        hits.fetch_add(1, Ordering::SeqCst);
        inner(req)
    }))
    .expect("upstream");
    let policy = json!({
        "version": 1,
        "name": "remote-code",
        "issuers": [{"issuer": ISS, "audiences": [AUD],
                     "jwks": {"uri": format!("http://127.0.0.1:{}{JWKS_PATH}", jwks.port()), "cluster": "jwks"}}],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "anonymous": true},
            {"name": "accounts", "match": {"methods": ["GET"], "prefix": "/accounts"},
             "require": {"scopes": ["accounts"], "sender_constraint": "mtls"}}
        ]
    });
    let config = EnvoyConfig {
        listener_port: free_port().expect("port"),
        admin_port: free_port().expect("port"),
        upstream_port: upstream.port(),
        clusters: vec![("jwks".into(), jwks.port())],
        wasm: path,
        plugin_config: policy.to_string(),
        server_cert: pki.server.cert_pem.clone(),
        server_key: pki.server.key_pem.clone(),
        client_ca: pki.ca_pem.clone(),
        concurrency: 1,
        forward_client_cert_details: "SANITIZE".into(),
        native_module: None,
    };
    Setup {
        dir,
        pki,
        issuer,
        _jwks: jwks,
        upstream_hits,
        _upstream: upstream,
        config,
        wasm,
    }
}

/// The configuration with the plugin's code fetched from 127.0.0.1:`port` and pinned by `sha256`.
fn remote_document(config: &EnvoyConfig, port: u16, sha256: &str) -> Value {
    let mut doc = config.render();
    let filter = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"];
    assert_eq!(filter["name"], "fapi_guard", "the document changed shape");
    filter["vm_config"]["code"] = json!({
        "remote": {
            "http_uri": {"uri": format!("http://127.0.0.1:{port}{WASM_PATH}"), "cluster": "fapi_guard_code", "timeout": "5s"},
            "sha256": sha256,
            "retry_policy": {"num_retries": 20, "retry_back_off": {"base_interval": "0.2s", "max_interval": "0.5s"}}
        }
    });
    doc["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters")
        .push(json!({
            "name": "fapi_guard_code",
            "connect_timeout": "1s",
            "type": "STATIC",
            "load_assignment": {"cluster_name": "fapi_guard_code", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
        }));
    doc
}

impl Setup {
    fn client(&self) -> HttpsClient {
        HttpsClient::new(
            self.config.listener_port,
            &self.pki.ca_der,
            Some(&self.pki.clients[0]),
            TlsVersion::Default,
        )
        .expect("client")
    }

    fn token(&self, scope: &str) -> String {
        let now = unix_now();
        self.issuer
            .sign_jwt(
                Some("at+jwt"),
                &json!({"iss": ISS, "aud": AUD, "sub": "alice", "client_id": "tpp", "iat": now - 5,
                        "exp": now + 300, "jti": random_id(), "scope": scope,
                        "cnf": {"x5t#S256": self.pki.clients[0].x5t_s256()}}),
            )
            .expect("sign")
    }

    /// The decision paths, as with a local file: anonymous, admitted, no token, wrong scope.
    fn decides(&self, envoy: &Envoy) {
        let client = self.client();
        let send = |req: Req| {
            client
                .send(&req)
                .unwrap_or_else(|e| panic!("{e}\n{}", tail(&envoy.log(), 30)))
        };
        assert_eq!(send(Req::get("/health")).status, 200);
        let before = self.upstream_hits.load(Ordering::SeqCst);
        let ok = send(
            Req::get("/accounts/7").header("authorization", &format!("Bearer {}", self.token("accounts"))),
        );
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert_eq!(
            ok.json().expect("echo")["headers"]
                .as_array()
                .map(|h| h.iter().any(|h| h[0] == "x-fapi-subject" && h[1] == "alice")),
            Some(true)
        );
        let none = send(Req::get("/accounts/7"));
        assert_eq!(none.status, 401, "{}", none.text());
        let scope = send(
            Req::get("/accounts/7").header("authorization", &format!("Bearer {}", self.token("payments"))),
        );
        assert_eq!(scope.status, 403, "{}", scope.text());
        assert_eq!(
            self.upstream_hits.load(Ordering::SeqCst),
            before + 1,
            "only the admitted request reaches the upstream"
        );
    }

    /// Sends requests that a running plugin would admit: every one must fail (no answer, or an error
    /// status from Envoy) and none may reach the upstream.
    fn fails_closed(&self, log: impl Fn() -> String) {
        let client = self.client();
        let before = self.upstream_hits.load(Ordering::SeqCst);
        for path in ["/health", "/accounts/7"] {
            let req = Req::get(path).header("authorization", &format!("Bearer {}", self.token("accounts")));
            match client.send(&req) {
                Err(_) => {}
                Ok(resp) => assert!(
                    resp.status >= 500,
                    "{path} was answered {} without a verified plugin: {}\n{}",
                    resp.status,
                    resp.text(),
                    tail(&log(), 30)
                ),
            }
        }
        assert_eq!(
            self.upstream_hits.load(Ordering::SeqCst),
            before,
            "a request reached the upstream"
        );
    }
}

#[test]
fn remote_code_with_the_right_sha256_runs_the_plugin() {
    let s = setup("remote-ok");
    let fetches = Arc::new(AtomicUsize::new(0));
    let port = free_port().expect("port");
    let _server = code_server(port, s.wasm.clone(), fetches.clone());
    let doc = remote_document(&s.config, port, &sha256_hex(&s.wasm));
    let envoy = Envoy::start_document(s.config.clone(), doc, s.dir.path(), "envoy-remote-ok", READY)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        fetches.load(Ordering::SeqCst) >= 1,
        "the code was not fetched from the server"
    );
    assert!(
        envoy.log().contains("policy remote-code loaded"),
        "{}",
        tail(&envoy.log(), 30)
    );
    s.decides(&envoy);
}

#[test]
fn remote_code_with_a_wrong_sha256_is_refused_and_traffic_fails_closed() {
    let s = setup("remote-badsha");
    let fetches = Arc::new(AtomicUsize::new(0));
    let port = free_port().expect("port");
    let _server = code_server(port, s.wasm.clone(), fetches.clone());
    // The hash of other bytes: what a tampered or swapped download looks like.
    let mut other = s.wasm.as_ref().clone();
    other.push(0);
    let doc = remote_document(&s.config, port, &sha256_hex(&other));
    let started = Envoy::start_document(s.config.clone(), doc, s.dir.path(), "envoy-remote-badsha", READY);
    let log_path = s.dir.join("envoy-remote-badsha.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(Duration::from_secs(20), "the code to be fetched", || {
        if fetches.load(Ordering::SeqCst) >= 1 {
            Ok(Some(()))
        } else {
            Err("no fetch yet".into())
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", tail(&log(), 30)));
    // Envoy verifies each download against sha256, retries, and gives up: the plugin never starts.
    wait_until(Duration::from_secs(30), "Envoy to refuse the code", || {
        let l = log();
        if l.contains("Plugin fapi_guard failed to load") {
            Ok(Some(()))
        } else {
            Err(tail(&l, 3))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !log().contains("policy remote-code loaded"),
        "the plugin ran: {}",
        tail(&log(), 30)
    );
    s.fails_closed(log);
    drop(started);
}

#[test]
fn remote_code_server_down_at_start_serves_nothing_until_the_code_is_verified() {
    let s = setup("remote-down");
    let port = free_port().expect("port");
    let doc = remote_document(&s.config, port, &sha256_hex(&s.wasm));
    // Start Envoy without waiting for it: with the code server down it must not serve.
    let config_path = s.dir.join("envoy-remote-down.json");
    std::fs::write(&config_path, serde_json::to_string_pretty(&doc).expect("json")).expect("write");
    let args: Vec<String> = vec![
        "-c".into(),
        config_path.display().to_string(),
        "--use-dynamic-base-id".into(),
        "--concurrency".into(),
        "1".into(),
        "-l".into(),
        "debug".into(),
    ];
    let log_path = s.dir.join("envoy-remote-down.log");
    let mut process = Process::spawn(
        "envoy-remote-down",
        &fapi_e2e::envoy::envoy_binary(),
        &args,
        &log_path,
    )
    .expect("spawn envoy");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Envoy is up (admin answers) and has tried to fetch the code at least once.
    wait_until(Duration::from_secs(20), "Envoy to try the code server", || {
        if process.exited().is_some() {
            return Ok(Some(()));
        }
        let l = log();
        if l.contains("fapi_guard_code") && fapi_e2e::client::http_get(s.config.admin_port, "/ready").is_ok()
        {
            Ok(Some(()))
        } else {
            Err(tail(&l, 3))
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(process.exited().is_none(), "Envoy exited: {}", tail(&log(), 30));
    s.fails_closed(log);
    // The server comes up: the retry fetches and verifies the code, and the plugin runs.
    let fetches = Arc::new(AtomicUsize::new(0));
    let _server = code_server(port, s.wasm.clone(), fetches.clone());
    wait_until(
        Duration::from_secs(30),
        "the plugin to load from the late server",
        || {
            let l = log();
            if l.contains("policy remote-code loaded") {
                Ok(Some(()))
            } else {
                Err(tail(&l, 3))
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_until(READY, "Envoy to be ready", || {
        match fapi_e2e::client::http_get(s.config.admin_port, "/ready") {
            Ok((200, b)) if b.trim() == "LIVE" => Ok(Some(())),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(fetches.load(Ordering::SeqCst) >= 1);
    // A running Envoy for `decides`: the process above, addressed by its ports.
    let client = s.client();
    let ok = client
        .send(&Req::get("/accounts/7").header("authorization", &format!("Bearer {}", s.token("accounts"))))
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&log(), 30)));
    assert_eq!(ok.status, 200, "{}", ok.text());
    let none = client.send(&Req::get("/accounts/7")).expect("send");
    assert_eq!(none.status, 401);
    process.stop();
}
