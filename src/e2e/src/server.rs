//! A tiny HTTP/1.1 server for tests: std `TcpListener`, one thread per connection, one request per
//! connection (`connection: close`), and a handler closure that turns a [`Request`] into a
//! [`Response`]. Plain HTTP on 127.0.0.1: Envoy reaches it through a static cluster.

use crate::{Context as _, Result};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request body read.
const MAX_BODY: usize = 1 << 20;

/// A request as received.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path with query, as on the request line.
    pub path: String,
    /// Header names lower-cased, in order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// A response to send.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, text: &str) -> Self {
        Response {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A running server. Dropping it (or [`HttpServer::stop`]) stops listening: new connections are
/// refused.
pub struct HttpServer {
    port: u16,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Listens on a free port of 127.0.0.1.
    pub fn start(handler: Handler) -> Result<Self> {
        Self::start_on(0, handler)
    }

    /// Listens on 127.0.0.1:`port` (0: any free port), e.g. to come back on the port it had.
    pub fn start_on(port: u16, handler: Handler) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).ctx(format!("binding 127.0.0.1:{port}"))?;
        let port = listener.local_addr().ctx("local_addr")?.port();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let accept = std::thread::Builder::new()
            .name(format!("http-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let handler = handler.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("http-{port}-conn"))
                        .spawn(move || {
                            let _ = serve(stream, &handler);
                        });
                }
            })
            .ctx("spawning the accept thread")?;
        Ok(HttpServer {
            port,
            stopping,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops listening (the port is closed when this returns).
    pub fn stop(&mut self) {
        let Some(accept) = self.accept.take() else { return };
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        let _ = accept.join();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
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
    let mut req = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let len = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if len > 0 {
        let mut body = vec![0u8; len.min(MAX_BODY)];
        reader.read_exact(&mut body)?;
        req.body = body;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        req.body = read_chunked(&mut reader)?;
    }
    let resp = handler(&req);
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (n, v) in &resp.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        resp.body.len()
    ));
    let mut stream = stream;
    stream.write_all(out.as_bytes())?;
    stream.write_all(&resp.body)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

/// Reads a chunked body (RFC 9112 §7.1), trailers ignored.
pub fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            let mut rest = String::new();
            while reader.read_line(&mut rest)? > 2 {
                rest.clear();
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "chunked body too large",
            ));
        }
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk)?;
        chunk.truncate(size);
        body.extend_from_slice(&chunk);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The upstream that echoes what reached it: `{"method", "path", "headers": [[name, value], ...]}`
/// (duplicates kept, in order), so a test sees exactly what Envoy forwarded.
pub fn echo() -> Handler {
    Arc::new(|req: &Request| {
        Response::json(
            200,
            &json!({
                "method": req.method,
                "path": req.path,
                "headers": req.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "body_len": req.body.len(),
            }),
        )
    })
}
