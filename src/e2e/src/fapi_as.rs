//! The real authorization server, `fapi-as`, for end-to-end tests outside its own crate: a config
//! file in a scratch directory (TLS certificates from [`crate::pki`], SQLite, ES256 keys), the
//! `seed`, `client add` and `rotate-keys` commands, `serve` as a [`Process`] that can be stopped and
//! started again on the same ports, and the HTTP pieces a test needs to drive its flows (form
//! encoding, a browser with a cookie jar, CSRF fields, TOTP codes for the demo users).
//!
//! The binary: `$FAPI_E2E_AS`, else `target/debug/fapi-as` of this workspace (or of
//! `$CARGO_TARGET_DIR`). Cargo gives `CARGO_BIN_EXE_fapi-as` only to fapi-as's own tests, so tests
//! of other crates need it built first: `cargo build -p fapi-as` (scripts/test-all does).

use crate::client::{http_get, HttpsClient, Req, Resp, TlsVersion};
use crate::pki::{Identity, TestPki};
use crate::process::Process;
use crate::util::{free_port, wait_until, workspace_root};
use crate::{bail, Context as _, Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The demo users' password (`fapi-as seed`).
pub const DEMO_PASSWORD: &str = "demo-password-2026";
/// The TOTP secret (base32) of demo user `taro`.
pub const TARO_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// RFC 7523 client assertion type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The `fapi-as` binary: `$FAPI_E2E_AS`, else `<target>/debug/fapi-as`; an error that says how to
/// build it when it is missing.
pub fn as_binary() -> Result<PathBuf> {
    let path = match std::env::var_os("FAPI_E2E_AS") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug/fapi-as"),
    };
    if !path.is_file() {
        bail!(
            "no fapi-as binary at {}: build it first with `cargo build -p fapi-as` \
             (scripts/test-all does), or point FAPI_E2E_AS at one",
            path.display()
        );
    }
    Ok(path)
}

/// What the server's configuration says beyond ports, certificates and storage.
#[derive(Debug, Clone)]
pub struct AsOptions {
    /// `[feed] token`: the revocation feed's bearer credential (no feed without it).
    pub feed_token: Option<String>,
    /// `[tokens] audience`.
    pub audience: Vec<String>,
    /// `[keys] alg`.
    pub alg: String,
    /// `[tokens] access_token_lifetime`, when not the server's default.
    pub access_token_lifetime: Option<u64>,
}

impl Default for AsOptions {
    fn default() -> Self {
        AsOptions {
            feed_token: None,
            audience: vec!["https://api.bank.example".into()],
            alg: "ES256".into(),
            access_token_lifetime: None,
        }
    }
}

/// A configured `fapi-as`; [`AuthServer::start`] runs it. Dropping it stops the server.
pub struct AuthServer {
    dir: PathBuf,
    config: PathBuf,
    binary: PathBuf,
    /// `https://127.0.0.1:<https_port>`.
    pub issuer: String,
    /// The browser-facing TLS listener (no client certificate).
    pub https_port: u16,
    /// The mTLS endpoint aliases (client certificate required, any issuer).
    pub mtls_port: u16,
    /// Plain HTTP: /health only.
    pub http_port: u16,
    /// The CA of the server certificate (clients trust it).
    pub ca_der: Vec<u8>,
    process: Option<Process>,
    starts: u32,
}

fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl AuthServer {
    /// Writes `fapi-as.toml` into `dir` (database `as.db`, keys in `keys/`), with the server
    /// certificate of `pki` (valid for 127.0.0.1 and localhost) and three free ports. Nothing runs yet.
    pub fn configure(dir: &Path, pki: &TestPki, options: &AsOptions) -> Result<Self> {
        let binary = as_binary()?;
        let (https, mtls, http) = (free_port()?, free_port()?, free_port()?);
        let issuer = format!("https://127.0.0.1:{https}");
        let mut text = format!(
            "issuer = {}\nmtls_base = {}\n\
             [listen]\nhttps = \"127.0.0.1:{https}\"\nmtls = \"127.0.0.1:{mtls}\"\nhttp = \"127.0.0.1:{http}\"\n\
             [tls]\ncert = {}\nkey = {}\n\
             [database]\nurl = {}\n\
             [keys]\ndir = {}\nalg = {}\n\
             [tokens]\naudience = [{}]\n",
            toml_str(&issuer),
            toml_str(&format!("https://127.0.0.1:{mtls}")),
            toml_str(&pki.server.cert_pem.display().to_string()),
            toml_str(&pki.server.key_pem.display().to_string()),
            toml_str(&format!("sqlite://{}?mode=rwc", dir.join("as.db").display())),
            toml_str(&dir.join("keys").display().to_string()),
            toml_str(&options.alg),
            options
                .audience
                .iter()
                .map(|a| toml_str(a))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let Some(l) = options.access_token_lifetime {
            text.push_str(&format!("access_token_lifetime = {l}\n"));
        }
        if let Some(t) = &options.feed_token {
            text.push_str(&format!("[feed]\ntoken = {}\n", toml_str(t)));
        }
        let config = dir.join("fapi-as.toml");
        std::fs::write(&config, text).ctx(format!("writing {}", config.display()))?;
        Ok(AuthServer {
            dir: dir.to_path_buf(),
            config,
            binary,
            issuer,
            https_port: https,
            mtls_port: mtls,
            http_port: http,
            ca_der: pki.ca_der.clone(),
            process: None,
            starts: 0,
        })
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Runs `fapi-as -c <config> <args>` to completion; its stdout, or an error with its stderr.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = std::process::Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .ctx(format!("running {}", self.binary.display()))?;
        if !out.status.success() {
            bail!(
                "fapi-as {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `fapi-as seed`: the demo users (taro, hanako) and their accounts.
    pub fn seed(&self) -> Result<()> {
        self.cli(&["seed"]).map(|_| ())
    }

    /// `fapi-as client add --client-id <id> <args>` (see `fapi-as client add --help`).
    pub fn add_client(&self, client_id: &str, args: &[&str]) -> Result<()> {
        let mut all = vec!["client", "add", "--client-id", client_id];
        all.extend_from_slice(args);
        self.cli(&all).map(|_| ())
    }

    /// `fapi-as rotate-keys`: next becomes current, current retires (still published). A running
    /// server reads its keys at start: [`AuthServer::restart`] it.
    pub fn rotate_keys(&self) -> Result<()> {
        self.cli(&["rotate-keys"]).map(|_| ())
    }

    /// Sends SIGHUP to the running server: it loads its key folder again (after
    /// [`AuthServer::rotate_keys`]) without a restart.
    pub fn reload_keys(&self) -> Result<()> {
        let pid = self
            .process
            .as_ref()
            .and_then(Process::pid)
            .ok_or_else(|| Error("fapi-as is not running".into()))?;
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .ctx("kill -HUP")?;
        if !status.success() {
            bail!("kill -HUP {pid}: {status}");
        }
        Ok(())
    }

    /// Starts `fapi-as serve` (log `fapi-as-<n>.log` in the directory) and waits until /health
    /// answers, or fails with the log if the server exits first.
    pub fn start(&mut self, timeout: Duration) -> Result<()> {
        if self.process.is_some() {
            bail!("fapi-as is already running");
        }
        self.starts += 1;
        let log = self.dir.join(format!("fapi-as-{}.log", self.starts));
        let args = vec![
            "-c".to_string(),
            self.config.display().to_string(),
            "serve".to_string(),
        ];
        let mut process = Process::spawn("fapi-as", &self.binary, &args, &log)?;
        let http = self.http_port;
        let mut exited = None;
        let ready = wait_until(timeout, "fapi-as /health", || {
            if let Some(status) = process.exited() {
                exited = Some(status);
                return Ok(Some(()));
            }
            match http_get(http, "/health") {
                Ok((200, _)) => Ok(Some(())),
                Ok((s, body)) => Err(format!("/health: {s} {}", body.trim())),
                Err(e) => Err(e.to_string()),
            }
        });
        if let Some(status) = exited {
            bail!("fapi-as exited at start ({status}); log:\n{}", process.log());
        }
        if let Err(e) = ready {
            return Err(Error(format!("{e}; log:\n{}", process.log())));
        }
        self.process = Some(process);
        Ok(())
    }

    /// Stops the server if it runs: SIGTERM (its graceful shutdown), SIGKILL after 5 s. How it
    /// ended: an exit code 0 means it shut down by itself.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.process.take().and_then(|mut p| p.stop())
    }

    /// Stops and starts again, on the same ports with the same database and key folder.
    pub fn restart(&mut self, timeout: Duration) -> Result<()> {
        let _ = self.stop();
        self.start(timeout)
    }

    /// The log of the current (or last started) run.
    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// `issuer` + `path`: URLs on the browser-facing listener (htu of DPoP proofs there).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A client of the browser-facing listener (no client certificate).
    pub fn client(&self) -> Result<HttpsClient> {
        HttpsClient::new(self.https_port, &self.ca_der, None, TlsVersion::Default)
    }

    /// A client of the mTLS listener presenting `identity`.
    pub fn mtls_client(&self, identity: &Identity) -> Result<HttpsClient> {
        HttpsClient::new(self.mtls_port, &self.ca_der, Some(identity), TlsVersion::Default)
    }

    /// A browser (cookie jar) on the browser-facing listener.
    pub fn browser(&self) -> Result<Browser> {
        Ok(Browser {
            client: self.client()?,
            cookies: HashMap::new(),
        })
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
pub fn pct_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decoding (and `+` as space, as in forms); invalid escapes are kept as they are.
pub fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` body.
pub fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct_encode(k), pct_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// A form POST.
pub fn form_post(path: &str, pairs: &[(&str, &str)]) -> Req {
    Req::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(&form(pairs))
}

/// The parameters of a query string (last value wins).
pub fn decode_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (pct_decode(k), pct_decode(v)))
        .collect()
}

/// The value of the hidden `csrf` field of a server-rendered page.
pub fn csrf(page: &str) -> Option<String> {
    hidden_field(page, "csrf")
}

/// The value of the first `<input name="NAME" value="...">` of a page.
pub fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    page[start..].split('"').next().map(str::to_string)
}

/// The `Location` of a 303, or an error naming what came instead.
pub fn see_other(r: &Resp) -> Result<String> {
    match (r.status, r.header("location")) {
        (303, Some(l)) => Ok(l.to_string()),
        _ => Err(Error(format!(
            "expected a 303 with a location, got {} {}",
            r.status,
            r.text().chars().take(300).collect::<String>()
        ))),
    }
}

/// A browser on one server: sends the cookies it was given (`Set-Cookie` first attribute; a
/// `Max-Age=0` or empty value removes one).
pub struct Browser {
    pub client: HttpsClient,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn send(&mut self, mut req: Req) -> Result<Resp> {
        if !self.cookies.is_empty() {
            let c: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header("cookie", &c.join("; "));
        }
        let path = req.path.split('?').next().unwrap_or("").to_string();
        let resp = self
            .client
            .send(&req)
            .map_err(|e| Error(format!("{} {path}: {e}", req.method)))?;
        for sc in resp.headers_named("set-cookie") {
            let first = sc.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || sc.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        Ok(resp)
    }

    pub fn get(&mut self, path: &str) -> Result<Resp> {
        self.send(Req::get(path))
    }

    pub fn post(&mut self, path: &str, pairs: &[(&str, &str)]) -> Result<Resp> {
        self.send(form_post(path, pairs))
    }
}

/// RFC 4648 §6 base32 (padding and spaces ignored).
fn base32_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u64, 0u32);
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            b'=' | b' ' => continue,
            _ => return None,
        };
        buffer = (buffer << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1u64 << bits) - 1;
        }
    }
    Some(out)
}

/// The 6-digit RFC 6238 code (HMAC-SHA-1, 30 s steps) of a base32 secret at `unix_time`: what an
/// authenticator app shows.
pub fn totp(secret_base32: &str, unix_time: i64) -> Result<String> {
    let secret = base32_decode(secret_base32).ok_or_else(|| Error("the TOTP secret is not base32".into()))?;
    let counter = unix_time.div_euclid(30).max(0) as u64;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret);
    let tag = ring::hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[19] & 0x0f);
    let word = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    Ok(format!("{:06}", word % 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238_appendix_b() {
        // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890" (base32 below), 8 digits there:
        // the last 6 digits are ours.
        let seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(totp(seed, 59).ok().as_deref(), Some("287082"));
        assert_eq!(totp(seed, 1111111109).ok().as_deref(), Some("081804"));
        assert_eq!(totp(seed, 2000000000).ok().as_deref(), Some("279037"));
        assert!(totp("not base32!", 0).is_err());
    }

    #[test]
    fn percent_round_trip_and_query() {
        let s = "a b&c=d/é%";
        assert_eq!(pct_decode(&pct_encode(s)), s);
        let q = decode_query("code=abc%2Bd&state=s+1&iss=https%3A%2F%2Fx");
        assert_eq!(q.get("code").map(String::as_str), Some("abc+d"));
        assert_eq!(q.get("state").map(String::as_str), Some("s 1"));
        assert_eq!(q.get("iss").map(String::as_str), Some("https://x"));
        assert_eq!(
            csrf("<input type=\"hidden\" name=\"csrf\" value=\"xyz\">").as_deref(),
            Some("xyz")
        );
    }
}
