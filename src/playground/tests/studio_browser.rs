//! The policy studio end to end in headless Chromium: `fapictl policy studio` serves target/studio (the
//! wasm build of this crate and the page) on 127.0.0.1, and tests/node/studio.mjs drives Debian's
//! Chromium through playwright-core: load the page, type an error into the policy and see it at its
//! line, fix it, evaluate a hand-built request (a transfer with its body and the consented
//! authorization_details, compared field by field) and one of the policy's tests, run all the tests,
//! download the compiled configuration, switch to English — and no request leaves the page after it
//! loaded.
//!
//! The studio is rebuilt (scripts/build-studio) when target/studio is older than its sources;
//! scripts/test-all builds it before `cargo test`. fapictl is target/debug/fapictl (built by
//! scripts/test-all; `cargo build -p fapictl`).
//!
//! Needs `/usr/bin/chromium`, `node` and the npm package playwright-core of src/server/tests/node
//! (scripts/setup installs all three). Without them the test fails with that instruction; it never
//! skips silently. Screenshots (studio.png, studio-error.png, studio-en.png, failure-studio.png) go to
//! `$FAPI_BROWSER_SCREENSHOTS`, else `target/browser-screenshots/studio/`;
//! `FAPI_BROWSER_SCREENSHOTS=docs/screenshots` refreshes the docs' studio.png.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const CHROMIUM: &str = "/usr/bin/chromium";
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn require_tools(root: &Path) {
    const SETUP: &str = "scripts/setup installs them: apt-get install chromium nodejs npm; npm ci --prefix src/server/tests/node";
    assert!(
        Path::new(CHROMIUM).is_file(),
        "the studio browser test needs Debian's Chromium at {CHROMIUM}: {SETUP}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the studio browser test needs node: {SETUP}"
    );
    assert!(
        root.join("src/server/tests/node/node_modules/playwright-core/package.json")
            .is_file(),
        "the studio browser test needs the npm package playwright-core: {SETUP}"
    );
}

fn newest(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).unwrap();
    if meta.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| newest(&e.unwrap().path()))
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    } else {
        meta.modified().unwrap()
    }
}

/// Runs scripts/build-studio unless target/studio is newer than everything it is built from.
fn ensure_studio(root: &Path) -> PathBuf {
    let studio = root.join("target/studio");
    let built = std::fs::metadata(studio.join("fapi_playground_bg.wasm"))
        .and_then(|m| m.modified())
        .ok();
    let sources = [
        "src/playground/src",
        "src/playground/www",
        "src/playground/Cargo.toml",
        "src/core/src",
        "src/core/Cargo.toml",
        "policies",
        "Cargo.lock",
    ]
    .iter()
    .map(|p| newest(&root.join(p)))
    .max()
    .unwrap();
    if built.is_none_or(|b| b < sources) {
        eprintln!("target/studio is missing or stale: scripts/build-studio");
        let status = Command::new(root.join("scripts/build-studio"))
            .current_dir(root)
            .status()
            .unwrap();
        assert!(status.success(), "scripts/build-studio failed");
    }
    studio
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `fapictl policy studio --port 0`; returns the server and the URL it printed.
fn serve(root: &Path, studio: &Path) -> (Server, String) {
    let fapictl = root.join("target/debug/fapictl");
    assert!(
        fapictl.is_file(),
        "no {}: cargo build -p fapictl (scripts/test-all does)",
        fapictl.display()
    );
    let mut child = Command::new(&fapictl)
        .args(["policy", "studio", "--port", "0", "--dir"])
        .arg(studio)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("fapictl policy studio printed no URL");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (server, url)
}

fn get(url: &str, path: &str) -> (String, Vec<u8>) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&out[..split]).to_string(),
        out[split + 4..].to_vec(),
    )
}

#[test]
fn the_studio_in_chromium() {
    let root = root();
    require_tools(&root);
    let studio = ensure_studio(&root);
    let (_server, url) = serve(&root, &studio);

    // The server hands out static files only, with a policy that lets the page reach nothing else.
    let (head, body) = get(&url, "/");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("app.js"));
    let (head, _) = get(&url, "/fapi_playground_bg.wasm");
    assert!(head.contains("Content-Type: application/wasm"), "{head}");
    let (head, _) = get(&url, "/../Cargo.toml");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    let screenshots = std::env::var_os("FAPI_BROWSER_SCREENSHOTS")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target/browser-screenshots/studio"));
    let input = serde_json::json!({
        "url": url,
        "chromium": CHROMIUM,
        "playwrightFrom": root.join("src/server/tests/node/package.json"),
        "screenshots": screenshots,
    });
    let mut node = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/studio.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    node.stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > NODE_TIMEOUT {
            let _ = node.kill();
            panic!("studio.mjs did not finish in {NODE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    node.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    node.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(
        status.success(),
        "studio.mjs failed ({}): {stderr}",
        screenshots.display()
    );
    let out: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    eprintln!("{}", serde_json::to_string_pretty(&out["notes"]).unwrap());

    // What the page showed is what the engine says.
    let policy = std::fs::read_to_string(root.join("policies/open-banking-jp.yaml")).unwrap();
    let expected_line = policy
        .lines()
        .position(|l| l.contains("scopes: [accounts]"))
        .unwrap()
        + 1;
    assert_eq!(out["errorLine"].as_u64(), Some(expected_line as u64));
    let outcomes: Value = serde_json::from_str(&fapi_playground::tests(&policy)).unwrap();
    let n = outcomes.as_array().unwrap().len();
    assert_eq!(
        out["tests"].as_str(),
        Some(format!("{n} passed, 0 failed").as_str())
    );
    assert_eq!(out["testRows"].as_u64(), Some(n as u64));
    assert_eq!(out["pickedDecision"].as_str(), Some("401 binding_not_allowed"));
    assert_eq!(
        out["rarDecision"].as_str(),
        Some("403 authorization_details_mismatch")
    );
    assert_eq!(
        out["downloadName"].as_str(),
        Some("open-banking-jp.compiled.json")
    );
    assert_eq!(out["compiled"]["format"].as_str(), Some("fapi-guard.policy/v1"));
    assert!(out["compiled"]["tests"].is_null());
    assert!(screenshots.join("studio.png").is_file());
}
