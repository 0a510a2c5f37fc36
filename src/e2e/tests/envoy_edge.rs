//! The edge limits of the shipped Envoy configurations (envoy/front-proxy.yaml.in,
//! envoy/sidecar.yaml.in, rendered by envoy/render exactly as a bank renders them) in the real Envoy
//! with the real plugin: a half-sent request is cut at the request-headers timeout, a TLS handshake
//! that never starts at the handshake timeout, an oversized body gets 413 before anything reaches the
//! upstream, and connections beyond the global limit are refused. Timeouts are set short here (1 s);
//! the shipped defaults are in envoy/render (EDGE_DEFAULTS).
//!
//! Needs the release plugin (`target/wasm32-wasip1/release/fapi_filter.wasm`), Envoy (`.venv`) and
//! python3 (envoy/render).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::envoy::{plugin_wasm, tail, Envoy, EnvoyConfig};
use fapi_e2e::pki::TestPki;
use fapi_e2e::util::{free_port, unix_now, wait_until, workspace_root, ScratchDir};
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISS: &str = "https://as.edge.example";
const AUD: &str = "https://api.bank.example";
const READY: Duration = Duration::from_secs(30);

/// An upstream that counts every connection Envoy opens to it and answers 200 to whatever arrives:
/// "the upstream sees nothing" is `connections() == 0`, whatever Envoy might have half-sent.
struct CountingUpstream {
    port: u16,
    connections: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl CountingUpstream {
    fn start() -> CountingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (count, stop) = (connections.clone(), stopping.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
                    );
                });
            }
        });
        CountingUpstream {
            port,
            connections,
            stopping,
            accept: Some(accept),
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Renders `envoy/<template>.yaml.in` with envoy/render, as a bank does, and reads it as a document.
fn render(dir: &Path, template: &str, values: &[(&str, String)]) -> Value {
    let root = workspace_root();
    let out = dir.join(format!("{template}.yaml"));
    let mut cmd = std::process::Command::new(root.join("envoy/render"));
    cmd.arg(root.join(format!("envoy/{template}.yaml.in"))).arg(&out);
    for (k, v) in values {
        cmd.arg(format!("{k}={v}"));
    }
    let status = cmd.status().expect("running envoy/render");
    assert!(status.success(), "envoy/render {template}: {status}");
    let text = std::fs::read_to_string(&out).expect("rendered config");
    let (doc, _) = fapi_core::yaml::load(&text).unwrap_or_else(|e| panic!("{template}: {e}"));
    doc
}

struct Edge {
    dir: ScratchDir,
    pki: TestPki,
    issuer: SigningKey,
    upstream: CountingUpstream,
    envoy: Envoy,
}

/// The sidecar template (plain HTTP behind an ingress that forwards the client certificate in
/// x-forwarded-client-cert) or the front proxy (mutual TLS), with the given edge limits.
fn start(template: &str, limits: &[(&str, &str)]) -> Edge {
    let wasm = plugin_wasm();
    assert!(
        wasm.exists(),
        "{} missing: build the plugin (scripts/test-all)",
        wasm.display()
    );
    let dir = ScratchDir::new(&format!("edge-{template}")).expect("scratch dir");
    let pki = TestPki::generate(dir.path(), &["client-a"]).expect("test PKI");
    // envoy/render wants CERT_DIR/{server.pem,server.key.pem,ca.pem}.
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    std::fs::copy(&pki.server.cert_pem, certs.join("server.pem")).expect("copy");
    std::fs::copy(&pki.server.key_pem, certs.join("server.key.pem")).expect("copy");
    std::fs::copy(&pki.ca_pem, certs.join("ca.pem")).expect("copy");
    let issuer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).expect("key");
    let source = if template == "sidecar" {
        "x-forwarded-client-cert"
    } else {
        "connection"
    };
    let policy = json!({
        "version": 1,
        "name": "edge",
        "settings": {"client_certificate": source, "external_origin": AUD},
        "issuers": [{"issuer": ISS, "audiences": [AUD], "jwks": {"keys": [issuer.public_jwk().clone()]}}],
        "rules": [
            {"name": "accounts", "match": {"methods": ["GET"], "path": "/accounts"},
             "require": {"scopes": ["accounts"], "sender_constraint": "mtls"}},
            {"name": "transfers", "match": {"methods": ["POST"], "path": "/transfers"},
             "require": {"scopes": ["payments"], "sender_constraint": "mtls"}}
        ]
    });
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy.to_string()).expect("policy");
    let upstream = CountingUpstream::start();
    let listener_port = free_port().expect("port");
    let admin_port = free_port().expect("port");
    let mut values: Vec<(&str, String)> = vec![
        ("POLICY", policy_path.display().to_string()),
        ("ADMIN_PORT", admin_port.to_string()),
        ("LISTEN_ADDRESS", "127.0.0.1".into()),
        ("LISTEN_PORT", listener_port.to_string()),
        ("CERT_DIR", certs.display().to_string()),
        ("WASM_PATH", wasm.display().to_string()),
        ("UPSTREAM_HOST", "127.0.0.1".into()),
        ("UPSTREAM_PORT", upstream.port.to_string()),
        ("AS_HOST", "127.0.0.1".into()),
        ("AS_PORT", "9".into()),
        ("AS_SNI", "localhost".into()),
    ];
    values.extend(limits.iter().map(|(k, v)| (*k, v.to_string())));
    let document = render(dir.path(), template, &values);
    // EnvoyConfig only names the ports here: the document is the rendered template.
    let config = EnvoyConfig {
        listener_port,
        admin_port,
        upstream_port: upstream.port,
        clusters: vec![],
        wasm,
        plugin_config: String::new(),
        server_cert: pki.server.cert_pem.clone(),
        server_key: pki.server.key_pem.clone(),
        client_ca: pki.ca_pem.clone(),
        concurrency: 1,
        forward_client_cert_details: String::new(),
        native_module: None,
    };
    let envoy = Envoy::start_document(config, document, dir.path(), &format!("envoy-{template}"), READY)
        .unwrap_or_else(|e| panic!("{e}"));
    Edge {
        dir,
        pki,
        issuer,
        upstream,
        envoy,
    }
}

impl Edge {
    fn token(&self, scope: &str) -> String {
        let now = unix_now();
        let claims = json!({"iss": ISS, "aud": AUD, "sub": "alice", "client_id": "tpp", "iat": now - 5,
                            "exp": now + 300, "jti": random_id(), "scope": scope,
                            "cnf": {"x5t#S256": self.pki.clients[0].x5t_s256()}});
        self.issuer.sign_jwt(Some("at+jwt"), &claims).expect("sign")
    }

    /// Request head for the sidecar: the ingress's x-forwarded-client-cert names client A.
    fn head(&self, method: &str, path: &str, scope: &str, extra: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: api.bank.example\r\nauthorization: Bearer {}\r\n\
             x-forwarded-client-cert: Hash={}\r\n{extra}\r\n",
            self.token(scope),
            self.pki.clients[0].sha256_hex()
        )
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.envoy.listener_port())).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        s
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nEnvoy log {} (tail):\n{}",
            self.envoy.log_path().display(),
            tail(&self.envoy.log(), 30)
        )
    }
}

/// Reads until the peer closes (or the read timeout): what arrived, and whether it was a close.
fn read_to_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[test]
fn edge_limits_of_the_sidecar_configuration() {
    let edge = start(
        "sidecar",
        &[
            ("REQUEST_HEADERS_TIMEOUT", "1s"),
            ("MAX_READ_BODY_BYTES", "4096"),
            ("MAX_REQUEST_BYTES", "65536"),
            ("MAX_CONNECTIONS", "4"),
        ],
    );
    let _dir = edge.dir.path();

    // Control: an admitted request reaches the (counting) upstream, so the counter can tell.
    let mut s = edge.connect();
    s.write_all(
        edge.head("GET", "/accounts", "accounts", "connection: close\r\n")
            .as_bytes(),
    )
    .expect("write");
    let (resp, _) = read_to_close(&mut s);
    if status_of(&resp) != Some(200) || edge.upstream.connections() != 1 {
        edge.fail(&format!(
            "control request: {:?}, upstream connections {}",
            String::from_utf8_lossy(&resp),
            edge.upstream.connections()
        ));
    }

    // A half-sent request (the header block never ends) is answered 408 and closed at the
    // request-headers timeout (1 s here), not held open; the upstream never hears of it.
    let mut s = edge.connect();
    let started = Instant::now();
    s.write_all(b"GET /accounts HTTP/1.1\r\nhost: api.bank.example\r\nx-slow: 1\r\n")
        .expect("write");
    let (resp, closed) = read_to_close(&mut s);
    let took = started.elapsed();
    if !closed || took < Duration::from_millis(900) || took > Duration::from_secs(6) {
        edge.fail(&format!("half-sent request: closed={closed} after {took:?}"));
    }
    assert_eq!(status_of(&resp), Some(408), "{}", String::from_utf8_lossy(&resp));
    assert_eq!(
        edge.upstream.connections(),
        1,
        "the upstream saw the half-sent request"
    );

    // A 10 MB body on GET /accounts, with a valid token: 413 from the read route's limit, and the
    // upstream sees nothing (before: the body was streamed on and the upstream's reset gave 503).
    let resp = send_body(&edge, "GET", "/accounts", "accounts", 10 * 1024 * 1024);
    if status_of(&resp) != Some(413) {
        edge.fail(&format!(
            "10 MB GET: {:?}",
            String::from_utf8_lossy(&resp[..resp.len().min(300)])
        ));
    }
    // The same on a write route, whose limit is the filter's (64 KiB here): 100 KiB is refused,
    // 10 KiB (more than a read may carry) passes.
    let resp = send_body(&edge, "POST", "/transfers", "payments", 100 * 1024);
    assert_eq!(status_of(&resp), Some(413), "{}", String::from_utf8_lossy(&resp));
    assert_eq!(
        edge.upstream.connections(),
        1,
        "the upstream saw an oversized request"
    );
    let resp = send_body(&edge, "POST", "/transfers", "payments", 10 * 1024);
    assert_eq!(status_of(&resp), Some(200), "{}", String::from_utf8_lossy(&resp));
    assert_eq!(edge.upstream.connections(), 2);

    // Connection limit (4 here): four idle connections are held, the fifth is closed at once.
    let held: Vec<TcpStream> = (0..4).map(|_| edge.connect()).collect();
    wait_until(Duration::from_secs(5), "4 active downstream connections", || {
        let stats = edge
            .envoy
            .stats("downstream_cx_active")
            .map_err(|e| e.to_string())?;
        let active: u64 = stats
            .iter()
            .filter(|(n, _)| n.starts_with("listener.127.0.0.1_"))
            .map(|(_, v)| *v)
            .sum();
        if active >= 4 {
            Ok(Some(()))
        } else {
            Err(format!("{stats:?}"))
        }
    })
    .unwrap_or_else(|e| edge.fail(&e.to_string()));
    let mut fifth = edge.connect();
    let _ = fifth.write_all(
        edge.head("GET", "/accounts", "accounts", "connection: close\r\n")
            .as_bytes(),
    );
    let (resp, closed) = read_to_close(&mut fifth);
    if !closed || !resp.is_empty() {
        edge.fail(&format!(
            "the fifth connection was served: closed={closed} {:?}",
            String::from_utf8_lossy(&resp)
        ));
    }
    let overflow = edge.envoy.stats("global_cx_overflow").expect("stats");
    assert!(
        overflow.values().any(|v| *v >= 1),
        "no overflow counted: {overflow:?}"
    );
    drop(held);
    assert_eq!(edge.upstream.connections(), 2);
}

/// Sends `method path` with a body of `len` bytes (written by a second thread, since Envoy answers
/// before it has read it all), returns the response.
fn send_body(edge: &Edge, method: &str, path: &str, scope: &str, len: usize) -> Vec<u8> {
    let mut s = edge.connect();
    let head = edge.head(
        method,
        path,
        scope,
        &format!("content-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n"),
    );
    s.write_all(head.as_bytes()).expect("write head");
    let mut writer = s.try_clone().expect("clone");
    let body_writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    let (resp, _) = read_to_close(&mut s);
    let _ = s.shutdown(Shutdown::Both);
    let _ = body_writer.join();
    resp
}

#[test]
fn front_proxy_cuts_a_handshake_that_never_comes() {
    let edge = start(
        "front-proxy",
        &[("HANDSHAKE_TIMEOUT", "1s"), ("REQUEST_HEADERS_TIMEOUT", "1s")],
    );
    // A TCP connection that never sends a ClientHello is closed at the handshake timeout.
    let mut s = edge.connect();
    let started = Instant::now();
    let (got, closed) = read_to_close(&mut s);
    let took = started.elapsed();
    if !closed || !got.is_empty() || took < Duration::from_millis(900) || took > Duration::from_secs(6) {
        edge.fail(&format!(
            "idle TLS connection: closed={closed} after {took:?}, {} bytes",
            got.len()
        ));
    }
    assert_eq!(edge.upstream.connections(), 0);
}
