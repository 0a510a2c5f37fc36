//! `fapictl policy studio`: serves the built policy studio (target/studio, made by scripts/build-studio)
//! on 127.0.0.1 as static files. Nothing is decided here: lint, compile and decisions run in the
//! browser (fapi-core compiled to wasm); this server only hands out the page, and its
//! Content-Security-Policy lets the page talk to nothing but this origin.

use anyhow::{bail, Context as _, Result};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// `connect-src 'self'` is for the page's own wasm file; downloads are `blob:` URLs made in the page.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The largest request head read (the studio's requests are small GETs).
const MAX_HEAD: u64 = 16 * 1024;

/// Where the built studio is: `--dir`, else `target/studio` next to this binary (target/debug/fapictl),
/// else under the current directory.
fn studio_dir(dir: Option<PathBuf>) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = match dir {
        Some(d) => vec![d],
        None => {
            let mut c = Vec::new();
            if let Some(target) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().and_then(Path::parent).map(Path::to_path_buf))
            {
                c.push(target.join("studio"));
            }
            c.push(PathBuf::from("target/studio"));
            c
        }
    };
    for c in &candidates {
        if c.join("index.html").is_file() {
            return c
                .canonicalize()
                .with_context(|| format!("{}: cannot resolve", c.display()));
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "no built studio (index.html) in {}: run scripts/build-studio first",
        tried.join(" or ")
    )
}

/// Serves until interrupted.
pub fn serve(port: u16, open: bool, dir: Option<PathBuf>) -> Result<bool> {
    let root = studio_dir(dir)?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/");
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "policy studio: {url} (serving {}; Ctrl-C to stop)",
            root.display()
        )?;
        out.flush()?;
    }
    if open {
        match std::process::Command::new("xdg-open").arg(&url).spawn() {
            Ok(_) => {}
            Err(e) => eprintln!("fapictl: could not open a browser ({e}); open {url} yourself"),
        }
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &root);
        });
    }
    Ok(true)
}

fn handle(stream: TcpStream, root: &Path) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_HEAD));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head: read and ignored (no body is accepted).
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut stream = stream;
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            405,
            "text/plain; charset=utf-8",
            b"only GET\n",
            method == "HEAD",
        );
    }
    match resolve(root, target) {
        Some(path) => match std::fs::read(&path) {
            Ok(body) => respond(&mut stream, 200, content_type(&path), &body, method == "HEAD"),
            Err(_) => respond(
                &mut stream,
                404,
                "text/plain; charset=utf-8",
                b"not found\n",
                method == "HEAD",
            ),
        },
        None => respond(
            &mut stream,
            404,
            "text/plain; charset=utf-8",
            b"not found\n",
            method == "HEAD",
        ),
    }
}

/// The file a request target names: under `root`, no `..`, no hidden files; `/` is index.html.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let rel = path.strip_prefix('/')?;
    let rel = if rel.is_empty() { "index.html" } else { rel };
    if rel.contains('%') || rel.contains('\\') {
        return None;
    }
    let rel = Path::new(rel);
    let plain = rel.components().all(|c| match c {
        Component::Normal(s) => !s.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if !plain {
        return None;
    }
    let full = root.join(rel);
    let real = full.canonicalize().ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("yaml") | Some("yml") => "text/plain; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn respond(stream: &mut TcpStream, status: u16, ctype: &str, body: &[u8], head: bool) -> Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
Cache-Control: no-store\r\nContent-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\n\
Referrer-Policy: no-referrer\r\nCross-Origin-Opener-Policy: same-origin\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    if !head {
        stream.write_all(body)?;
    }
    stream.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn resolves_only_plain_files_under_the_root() {
        let dir = std::env::temp_dir().join(format!("fapictl-studio-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<html>").unwrap();
        std::fs::write(dir.join("app.js"), "").unwrap();
        std::fs::write(dir.join(".secret"), "").unwrap();
        let root = dir.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/app.js?v=1"), Some(root.join("app.js")));
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/sub/../app.js"), None);
        assert_eq!(resolve(&root, "/%2e%2e/x"), None);
        assert_eq!(resolve(&root, "/.secret"), None);
        assert_eq!(resolve(&root, "//etc/passwd"), None);
        assert_eq!(resolve(&root, "/sub"), None);
        assert_eq!(resolve(&root, "app.js"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
