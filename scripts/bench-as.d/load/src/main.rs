//! Load generator for scripts/bench-as: `POST /token` (client_credentials) over keep-alive HTTP/1.1
//! on N TLS connections that present a client certificate (RFC 8705), each request with a fresh
//! private_key_jwt assertion (RFC 7523; unique `jti`, signed before the timed run).
//!
//! bench-as-load keys DIR
//!     writes DIR/client.jwk.json (private, ES256) and DIR/client.jwks.json (public JWKS).
//! bench-as-load run --label L --url https://127.0.0.1:PORT/token --ca CA.pem --cert C.pem --key C.key.pem
//!     --jwk client.jwk.json --client-id ID --aud ISSUER --scope SCOPE [--resource URI]
//!     [--connections 16] [--warmup 3] [--duration 10] [--pool 100000] [--cpu-pid PID --clk-tck 100]
//!     checks one request first (200, a JWT access token whose cnf."x5t#S256" is the thumbprint of
//!     the client certificate), then loads; prints one TSV line on stdout:
//!     label, req/s, p50 ms, p99 ms, non-200, requests measured, assertions used, and the CPU time
//!     (user + system, all threads) of process PID over the measured window per request, in µs.
//!     Exits 1 on any non-200 answer, connection error or exhausted assertion pool.
//! bench-as-load signin --label L --browser https://127.0.0.1:PORT --url ...token --ca --cert --key
//!     --jwk --client-id --aud --scope [--resource] [--signins 20] [--idle 5] [--warmup 2]
//!     [--duration 10] [--pool 20000]
//!     latency of `GET /health` (browser listener) and `POST /token` (as `run`, one request at a
//!     time each) first with nothing else running (`idle`, for `--idle` s), then while `--signins`
//!     browsers each post sign-ins in a loop (`loaded`: after `--warmup` s, for `--duration` s): every
//!     sign-in names a new unknown username (no credentials needed, as an attacker would; the server
//!     then verifies against its dummy hash). Prints one TSV line per phase on stdout: label, phase,
//!     health p50 ms, health p95 ms, health requests, token p50 ms, token p95 ms, token requests,
//!     sign-ins per second, sign-in p50 ms, non-200 sign-in answers. A request counts in the phase it
//!     was sent in, however long it took. Exits 1 on a probe answer other than 200.

use bytes::Bytes;
use fapi_core::alg::Algorithm;
use fapi_core::binding::CertThumbprint;
use fapi_core::sign::SigningKey;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::exit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Fallible<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keys") if args.len() == 2 => keys(&args[1]),
        Some("run") => parse_opts(&args[1..]).and_then(run),
        Some("signin") => parse_opts(&args[1..]).and_then(signin),
        _ => Err("usage: bench-as-load keys DIR | bench-as-load run --url ... (see the source)".into()),
    };
    if let Err(e) = result {
        eprintln!("bench-as-load: {e}");
        exit(1);
    }
}

fn keys(dir: &str) -> Fallible<()> {
    let key = SigningKey::generate(Algorithm::ES256, Some("bench-client-es256".into())).map_err(|e| e.0)?;
    let write = |name: &str, v: &Value| {
        let path = format!("{dir}/{name}");
        std::fs::write(&path, v.to_string()).map_err(|e| format!("{path}: {e}"))
    };
    write("client.jwk.json", key.private_jwk())?;
    write("client.jwks.json", &json!({ "keys": [key.public_jwk()] }))
}

fn parse_opts(args: &[String]) -> Fallible<HashMap<String, String>> {
    let mut m = HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let name = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {k}"))?;
        let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        m.insert(name.to_string(), v.clone());
    }
    Ok(m)
}

struct Target {
    host: String,
    port: u16,
    path: String,
    authority: String,
}

fn parse_url(url: &str) -> Fallible<Target> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("--url must be https://HOST:PORT/PATH")?;
    let (authority, path) = rest.split_once('/').ok_or("--url needs a path")?;
    let (host, port) = authority.rsplit_once(':').ok_or("--url needs a port")?;
    Ok(Target {
        host: host.to_string(),
        port: port.parse().map_err(|_| "bad port in --url")?,
        path: format!("/{path}"),
        authority: authority.to_string(),
    })
}

/// application/x-www-form-urlencoded value encoding.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// utime + stime (all threads) of a process, in clock ticks (proc(5)).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn read_pem_certs(path: &str) -> Fallible<Vec<CertificateDer<'static>>> {
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    rustls_pemfile::certs(&mut std::io::BufReader::new(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))
}

fn read_pem_key(path: &str) -> Fallible<PrivateKeyDer<'static>> {
    let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    rustls_pemfile::private_key(&mut std::io::BufReader::new(f))
        .map_err(|e| format!("{path}: {e}"))?
        .ok_or_else(|| format!("{path}: no private key"))
}

struct Shared {
    bodies: Vec<Bytes>,
    next: AtomicUsize,
    stop: AtomicBool,
    exhausted: AtomicBool,
    errors: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(
    t: &Target,
    connector: &tokio_rustls::TlsConnector,
    name: &ServerName<'static>,
) -> Fallible<Sender> {
    let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("connect {}: {e}", t.authority))?;
    let _ = tcp.set_nodelay(true);
    let tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {}: {e}", t.authority))?;
    let (sender, conn) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn post(sender: &mut Sender, t: &Target, body: Bytes) -> Fallible<(u16, Bytes)> {
    let req = hyper::Request::post(t.path.as_str())
        .header(hyper::header::HOST, t.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

fn run(o: HashMap<String, String>) -> Fallible<()> {
    let get = |k: &str| o.get(k).cloned().ok_or_else(|| format!("--{k} is required"));
    let num = |k: &str, d: u64| -> Fallible<u64> {
        o.get(k)
            .map(|v| v.parse::<u64>().map_err(|_| format!("--{k}: not a number")))
            .unwrap_or(Ok(d))
    };
    let label = get("label")?;
    let target = parse_url(&get("url")?)?;
    let connections = num("connections", 16)? as usize;
    let warmup = Duration::from_secs(num("warmup", 3)?);
    let duration = Duration::from_secs(num("duration", 10)?);
    let pool = num("pool", 100_000)? as usize;
    let cpu_pid = o.get("cpu-pid").and_then(|p| p.parse::<u32>().ok());
    let clk_tck = num("clk-tck", 100)? as f64;

    // TLS: trust the test CA; present the client certificate (the mTLS binding source).
    let mut roots = rustls::RootCertStore::empty();
    for c in read_pem_certs(&get("ca")?)? {
        roots.add(c).map_err(|e| format!("CA: {e}"))?;
    }
    let client_chain = read_pem_certs(&get("cert")?)?;
    let leaf = client_chain.first().ok_or("--cert holds no certificate")?;
    let expected_x5t = CertThumbprint::from_der(leaf.as_ref()).to_b64url();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(client_chain, read_pem_key(&get("key")?)?)
        .map_err(|e| format!("client certificate: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name = ServerName::try_from(target.host.clone()).map_err(|e| format!("server name: {e}"))?;

    // The assertions, signed before the timed run: one per request, never reused (both servers
    // refuse a replayed jti). iat = now, exp = now + 300 s (fapi-as accepts at most 600 s).
    let jwk_path = get("jwk")?;
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(&jwk_path).map_err(|e| format!("{jwk_path}: {e}"))?)
            .map_err(|e| format!("{jwk_path}: {e}"))?;
    let key = SigningKey::from_jwk(&jwk).map_err(|e| e.0)?;
    let client_id = get("client-id")?;
    let aud = get("aud")?;
    let mut prefix = format!(
        "grant_type=client_credentials&scope={}&client_id={}",
        form_encode(&get("scope")?),
        form_encode(&client_id)
    );
    if let Some(r) = o.get("resource") {
        prefix.push_str(&format!("&resource={}", form_encode(r)));
    }
    prefix.push_str("&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=");
    let signing_started = Instant::now();
    let iat = unix_now();
    let mut bodies = Vec::with_capacity(pool + 1);
    for i in 0..=pool {
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": aud,
            "iat": iat, "exp": iat + 300,
            "jti": format!("{}-{i}", fapi_core::sign::random_id()),
        });
        let jwt = key.sign_jwt(None, &claims).map_err(|e| e.0)?;
        bodies.push(Bytes::from(format!("{prefix}{jwt}")));
    }
    eprintln!(
        "bench-as-load: {label}: signed {} ES256 assertions in {:.1} s",
        bodies.len(),
        signing_started.elapsed().as_secs_f64()
    );
    let check_body = bodies.pop().ok_or("empty pool")?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        // Check one request: 200 and an access token bound to this client certificate.
        let mut s = connect(&target, &connector, &name).await?;
        let (status, body) = post(&mut s, &target, check_body).await?;
        if status != 200 {
            return Err(format!(
                "{label}: check request answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(400)])
            ));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("{label}: token response: {e}"))?;
        let at = v["access_token"].as_str().ok_or(format!("{label}: no access_token"))?;
        let jws = fapi_core::jws::CompactJws::parse(at)
            .map_err(|e| format!("{label}: access token is not a JWS: {}", e.describe()))?;
        let x5t = jws.payload.get("cnf").and_then(|c| c.get("x5t#S256")).and_then(Value::as_str);
        if x5t != Some(expected_x5t.as_str()) {
            return Err(format!("{label}: the access token is not bound to the client certificate (cnf {:?})", jws.payload.get("cnf")));
        }
        eprintln!(
            "bench-as-load: {label}: check ok: token_type {}, typ {}, alg {}, cnf.x5t#S256 = client certificate, scope {:?}, aud {}, {} bytes",
            v["token_type"].as_str().unwrap_or("?"),
            jws.header_str("typ").ok().flatten().unwrap_or("-"),
            jws.header_str("alg").ok().flatten().unwrap_or("-"),
            jws.payload.get("scope").and_then(Value::as_str).unwrap_or(""),
            jws.payload.get("aud").map(|a| a.to_string()).unwrap_or_default(),
            at.len()
        );
        drop(s);

        let shared = Arc::new(Shared {
            bodies,
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            exhausted: AtomicBool::new(false),
            errors: AtomicUsize::new(0),
            first_error: Mutex::new(None),
        });
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections {
            senders.push(connect(&target, &connector, &name).await?);
        }
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration;
        let target = Arc::new(target);
        // Server CPU over the measured window.
        let cpu = tokio::spawn(async move {
            let pid = cpu_pid?;
            tokio::time::sleep_until(measure_from.into()).await;
            let a = cpu_ticks(pid)?;
            tokio::time::sleep_until(end.into()).await;
            Some(cpu_ticks(pid)?.saturating_sub(a))
        });
        let mut tasks = Vec::new();
        for mut sender in senders {
            let shared = shared.clone();
            let target = target.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
                let fail = |msg: String| {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    shared.stop.store(true, Ordering::Relaxed);
                    if let Ok(mut f) = shared.first_error.lock() {
                        f.get_or_insert(msg);
                    }
                };
                loop {
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    let i = shared.next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = shared.bodies.get(i) else {
                        shared.exhausted.store(true, Ordering::Relaxed);
                        shared.stop.store(true, Ordering::Relaxed);
                        break;
                    };
                    match post(&mut sender, &target, body.clone()).await {
                        Ok((200, _)) => {
                            let done = Instant::now();
                            if sent >= measure_from && done <= end {
                                lat.push((done - sent).as_micros().min(u32::MAX as u128) as u32);
                            }
                        }
                        Ok((status, body)) => {
                            fail(format!("{status} {}", String::from_utf8_lossy(&body[..body.len().min(400)])));
                            break;
                        }
                        Err(e) => {
                            fail(e);
                            break;
                        }
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.map_err(|e| e.to_string())?);
        }
        let used = shared.next.load(Ordering::Relaxed).min(shared.bodies.len());
        let errors = shared.errors.load(Ordering::Relaxed);
        if errors > 0 {
            let first = shared.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
            return Err(format!("{label}: {errors} request(s) failed (must be 0); first: {first}"));
        }
        if shared.exhausted.load(Ordering::Relaxed) {
            return Err(format!(
                "{label}: the assertion pool ({} signed) ran out before the end of the run: raise POOL",
                shared.bodies.len()
            ));
        }
        lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i] as f64 / 1000.0
        };
        let rps = lat.len() as f64 / duration.as_secs_f64();
        let cpu_us = match cpu.await.ok().flatten() {
            Some(ticks) if !lat.is_empty() => format!("{:.0}", ticks as f64 / clk_tck * 1e6 / lat.len() as f64),
            _ => "-".into(),
        };
        println!(
            "{label}\t{rps:.0}\t{:.2}\t{:.2}\t{errors}\t{}\t{used}\t{cpu_us}",
            pct(0.50),
            pct(0.99),
            lat.len()
        );
        Ok(())
    })
}

// ---- `signin`: probe latency under a load of concurrent sign-ins

async fn request(
    sender: &mut Sender,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Fallible<(u16, Vec<String>, Bytes)> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| format!("connection: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let cookies = resp
        .headers()
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("response body: {e}"))?
        .to_bytes();
    Ok((status, cookies, body))
}

/// Latencies (µs) of requests sent in [from, to).
#[derive(Default)]
struct Samples {
    idle: Vec<u32>,
    loaded: Vec<u32>,
}

struct Phases {
    idle_from: Instant,
    idle_to: Instant,
    loaded_from: Instant,
    end: Instant,
}

impl Phases {
    fn record(&self, s: &mut Samples, sent: Instant, took: Duration) {
        let us = took.as_micros().min(u32::MAX as u128) as u32;
        if sent >= self.idle_from && sent < self.idle_to {
            s.idle.push(us);
        } else if sent >= self.loaded_from && sent < self.end {
            s.loaded.push(us);
        }
    }
}

fn pct(lat: &mut [u32], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat.sort_unstable();
    let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
    lat[i] as f64 / 1000.0
}

fn signin(o: HashMap<String, String>) -> Fallible<()> {
    let get = |k: &str| o.get(k).cloned().ok_or_else(|| format!("--{k} is required"));
    let num = |k: &str, d: u64| -> Fallible<u64> {
        o.get(k)
            .map(|v| v.parse::<u64>().map_err(|_| format!("--{k}: not a number")))
            .unwrap_or(Ok(d))
    };
    let label = get("label")?;
    let token_target = Arc::new(parse_url(&get("url")?)?);
    let browser = get("browser")?;
    let browser_target = Arc::new(parse_url(&format!("{}/", browser.trim_end_matches('/')))?);
    let signins = num("signins", 20)? as usize;
    let idle = Duration::from_secs(num("idle", 5)?);
    let warmup = Duration::from_secs(num("warmup", 2)?);
    let duration = Duration::from_secs(num("duration", 10)?);
    let pool = num("pool", 20_000)? as usize;

    let mut roots = rustls::RootCertStore::empty();
    for c in read_pem_certs(&get("ca")?)? {
        roots.add(c).map_err(|e| format!("CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mtls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots.clone())
        .with_client_auth_cert(read_pem_certs(&get("cert")?)?, read_pem_key(&get("key")?)?)
        .map_err(|e| format!("client certificate: {e}"))?;
    let plain = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mtls = tokio_rustls::TlsConnector::from(Arc::new(mtls));
    let plain = tokio_rustls::TlsConnector::from(Arc::new(plain));
    let name = ServerName::try_from(token_target.host.clone()).map_err(|e| format!("server name: {e}"))?;

    let jwk_path = get("jwk")?;
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(&jwk_path).map_err(|e| format!("{jwk_path}: {e}"))?)
            .map_err(|e| format!("{jwk_path}: {e}"))?;
    let key = SigningKey::from_jwk(&jwk).map_err(|e| e.0)?;
    let client_id = get("client-id")?;
    let aud = get("aud")?;
    let mut prefix = format!(
        "grant_type=client_credentials&scope={}&client_id={}",
        form_encode(&get("scope")?),
        form_encode(&client_id)
    );
    if let Some(r) = o.get("resource") {
        prefix.push_str(&format!("&resource={}", form_encode(r)));
    }
    prefix.push_str("&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=");
    let iat = unix_now();
    let mut bodies = Vec::with_capacity(pool);
    for i in 0..pool {
        let claims = json!({
            "iss": client_id, "sub": client_id, "aud": aud, "iat": iat, "exp": iat + 300,
            "jti": format!("{}-{i}", fapi_core::sign::random_id()),
        });
        bodies.push(Bytes::from(format!("{prefix}{}", key.sign_jwt(None, &claims).map_err(|e| e.0)?)));
    }
    let bodies = Arc::new(bodies);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let start = Instant::now() + Duration::from_secs(1);
        let phases = Arc::new(Phases {
            idle_from: start,
            idle_to: start + idle,
            loaded_from: start + idle + warmup,
            end: start + idle + warmup + duration,
        });
        let stop_at = phases.end;

        // Probe: /health, one at a time.
        let mut health = connect(&browser_target, &plain, &name).await?;
        let (bt, ph) = (browser_target.clone(), phases.clone());
        let health_task = tokio::spawn(async move {
            let mut s = Samples::default();
            while Instant::now() < stop_at {
                let sent = Instant::now();
                let (status, _, body) = request(&mut health, "GET", &bt.authority, "/health", &[], Bytes::new()).await?;
                if status != 200 {
                    return Err(format!("/health answered {status}: {}", String::from_utf8_lossy(&body)));
                }
                ph.record(&mut s, sent, sent.elapsed());
            }
            Ok::<Samples, String>(s)
        });
        // Probe: /token, one at a time.
        let mut token = connect(&token_target, &mtls, &name).await?;
        let (tt, ph, pool) = (token_target.clone(), phases.clone(), bodies.clone());
        let token_task = tokio::spawn(async move {
            let mut s = Samples::default();
            let mut next = 0;
            while Instant::now() < stop_at {
                let body = pool.get(next).cloned().ok_or("the assertion pool ran out: raise --pool")?;
                next += 1;
                let sent = Instant::now();
                let (status, body) = post(&mut token, &tt, body).await?;
                if status != 200 {
                    return Err(format!("/token answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)])));
                }
                ph.record(&mut s, sent, sent.elapsed());
            }
            Ok::<Samples, String>(s)
        });
        // The sign-in load, from the end of the idle phase.
        let mut signin_tasks = Vec::new();
        for n in 0..signins {
            let (bt, ph) = (browser_target.clone(), phases.clone());
            let mut conn = connect(&bt, &plain, &name).await?;
            signin_tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(ph.idle_to.into()).await;
                let (status, cookies, page) = request(&mut conn, "GET", &bt.authority, "/apps", &[], Bytes::new()).await?;
                let page = String::from_utf8_lossy(&page).into_owned();
                let csrf = page
                    .split_once("name=\"csrf\" value=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(v, _)| v.to_string())
                    .ok_or(format!("/apps ({status}) has no CSRF field"))?;
                let cookie = cookies.join("; ");
                let mut s = Samples::default();
                let mut other = 0usize;
                let mut i = 0u64;
                while Instant::now() < stop_at {
                    i += 1;
                    let body = format!("csrf={}&username=nobody-{n}-{i}&password=not-the-password", form_encode(&csrf));
                    let sent = Instant::now();
                    let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
                    let (status, _, _) = request(&mut conn, "POST", &bt.authority, "/login", &headers, Bytes::from(body)).await?;
                    if status != 200 {
                        other += 1;
                    }
                    ph.record(&mut s, sent, sent.elapsed());
                }
                Ok::<(Samples, usize), String>((s, other))
            }));
        }
        let mut health = health_task.await.map_err(|e| e.to_string())??;
        let mut token = token_task.await.map_err(|e| e.to_string())??;
        let mut signin_lat = Vec::new();
        let mut other = 0;
        for t in signin_tasks {
            let (s, o) = t.await.map_err(|e| e.to_string())??;
            signin_lat.extend(s.loaded);
            other += o;
        }
        let secs = duration.as_secs_f64();
        let (hn, tn) = (health.idle.len(), token.idle.len());
        println!(
            "{label}\tidle\t{:.2}\t{:.2}\t{hn}\t{:.2}\t{:.2}\t{tn}\t0\t-\t0",
            pct(&mut health.idle, 0.5),
            pct(&mut health.idle, 0.95),
            pct(&mut token.idle, 0.5),
            pct(&mut token.idle, 0.95),
        );
        let (hn, tn, sn) = (health.loaded.len(), token.loaded.len(), signin_lat.len());
        println!(
            "{label}\tloaded\t{:.2}\t{:.2}\t{hn}\t{:.2}\t{:.2}\t{tn}\t{:.1}\t{:.1}\t{other}",
            pct(&mut health.loaded, 0.5),
            pct(&mut health.loaded, 0.95),
            pct(&mut token.loaded, 0.5),
            pct(&mut token.loaded, 0.95),
            sn as f64 / secs,
            pct(&mut signin_lat, 0.5),
        );
        Ok(())
    })
}
