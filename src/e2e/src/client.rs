//! An HTTPS/1.1 client for tests, on rustls with the ring provider (no aws-lc). One request per
//! connection. It sends headers exactly as given (duplicates included, which DPoP and Authorization
//! tests need), and reports a failed TLS handshake apart from an HTTP answer.

use crate::pki::Identity;
use crate::server::read_chunked;
use crate::{Context as _, Error, Result};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// TLS versions to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.3 and 1.2 (the server picks 1.3).
    Default,
    /// TLS 1.2 only: the server checks the client certificate inside the handshake.
    Tls12Only,
}

/// How a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// TCP connect failed.
    Connect(String),
    /// The TLS handshake failed (alert from the server, or our own verification).
    Handshake(String),
    /// TLS failed after the handshake: under TLS 1.3 the server's verdict on the client certificate
    /// arrives as an alert after the client considers the handshake done.
    TlsAfterHandshake(String),
    /// The connection ended without a full HTTP response, or other I/O trouble.
    Io(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl ClientError {
    /// Any TLS failure (during or right after the handshake).
    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            ClientError::Handshake(_) | ClientError::TlsAfterHandshake(_)
        )
    }
}

/// A request to send.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Self {
        Req {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Adds a header (a second call with the same name adds a second header).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }
}

/// A response received.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// Names lower-cased, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).ctx(format!("response body is not JSON: {:?}", self.text()))
    }
}

/// A client for one server (address and trust anchor), with or without a client certificate.
#[derive(Clone)]
pub struct HttpsClient {
    config: Arc<ClientConfig>,
    host: String,
    port: u16,
    pub timeout: Duration,
}

impl HttpsClient {
    /// Trusts `ca_der` (the CA of the server certificate); presents `identity` when given.
    pub fn new(port: u16, ca_der: &[u8], identity: Option<&Identity>, tls: TlsVersion) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match tls {
            TlsVersion::Default => rustls::ALL_VERSIONS,
            TlsVersion::Tls12Only => &[&rustls::version::TLS12],
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_der.to_vec()))
            .ctx("adding the CA certificate")?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .ctx("TLS versions")?
            .with_root_certificates(roots);
        let config = match identity {
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert()], id.key())
                .ctx("client certificate")?,
            None => builder.with_no_client_auth(),
        };
        Ok(HttpsClient {
            config: Arc::new(config),
            host: "127.0.0.1".into(),
            port,
            timeout: Duration::from_secs(10),
        })
    }

    /// Sends one request on a new connection.
    pub fn send(&self, req: &Req) -> std::result::Result<Resp, ClientError> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let sock = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let _ = sock.set_read_timeout(Some(self.timeout));
        let _ = sock.set_write_timeout(Some(self.timeout));
        let name =
            ServerName::try_from(self.host.clone()).map_err(|e| ClientError::Connect(e.to_string()))?;
        let conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| ClientError::Handshake(e.to_string()))?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| ClientError::Handshake(describe(&e)))?;
        }
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {}:{}\r\n",
            req.method, req.path, self.host, self.port
        );
        for (n, v) in &req.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !req.body.is_empty() || req.method == "POST" || req.method == "PUT" {
            head.push_str(&format!("content-length: {}\r\n", req.body.len()));
        }
        head.push_str("connection: close\r\n\r\n");
        let tls_err = |e: std::io::Error| {
            if is_tls_error(&e) {
                ClientError::TlsAfterHandshake(describe(&e))
            } else {
                ClientError::Io(e.to_string())
            }
        };
        tls.write_all(head.as_bytes()).map_err(tls_err)?;
        tls.write_all(&req.body).map_err(tls_err)?;
        tls.flush().map_err(tls_err)?;
        read_response(BufReader::new(tls)).map_err(tls_err)
    }
}

fn read_response(mut r: impl BufRead) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no response",
        ));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v): &(String, String)| v.clone())
    };
    let body = if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut b = vec![0u8; len];
        r.read_exact(&mut b)?;
        b
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut r)?
    } else {
        let mut b = Vec::new();
        match r.read_to_end(&mut b) {
            Ok(_) => {}
            // Servers may close without close_notify; the body ends at the connection's end here.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
        b
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn is_tls_error(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

fn describe(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(t) => format!("TLS: {t:?}"),
        None => e.to_string(),
    }
}

/// Plain-HTTP GET (Envoy's admin interface): (status, body).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ctx(format!("connect 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ctx("timeout")?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
    )
    .ctx("write")?;
    let resp = read_response(BufReader::new(s)).map_err(|e| Error(format!("GET {path}: {e}")))?;
    Ok((resp.status, resp.text()))
}
