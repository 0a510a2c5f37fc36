//! `fapi-fintech`: a small demo fintech client for the native stack of `test-harness/up`. It reads
//! the run folder's `endpoints.json` (`$FAPI_HARNESS_DIR`, else `test-harness/run`) and does what a
//! FAPI 2.0 client does:
//!
//! - `par`: a pushed authorization request (RFC 9126) with PKCE (RFC 7636) and private_key_jwt
//!   (RFC 7523; FAPI 2.0 SP §5.3.2.1), over mTLS (RFC 8705) or with a DPoP proof binding the code
//!   (RFC 9449 §10); prints the authorization URL to open in a browser.
//! - `callback`: the redirect URI (`http://127.0.0.1:PORT/cb`): checks `iss` (RFC 9207) and `state`,
//!   exchanges the code, and calls the bank API through Envoy with the bound token.
//! - `exchange URL`: the same for a redirect URL pasted by hand.
//! - `browse URL`: a robot in place of the person (sign-in, TOTP, consent), for `scripts/demo --check`.
//! - `call METHOD PATH`: one bank API request through Envoy with the saved token (mTLS certificate,
//!   or a fresh DPoP proof per request).
//!
//! Tokens are saved in `<run>/fintech/` and never printed in full.

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{http_get, HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::fapi_as::{csrf, decode_query, form, pct_encode, see_other, totp, Browser, JWT_BEARER};
use fapi_e2e::pki::Identity;
use fapi_e2e::server::{HttpServer, Request, Response};
use fapi_e2e::util::{unix_now, workspace_root};
use fapi_e2e::{bail, Context as _, Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
fapi-fintech: the demo fintech client of the native stack (test-harness/up)

usage: fapi-fintech [--run DIR] COMMAND [options]
  par [--client mtls|dpop] [--scope S] [--acr ACR]   PAR; prints the URL to open in a browser
  callback [--count N]                               serve the redirect URI (N callbacks, default: until Ctrl-C)
  exchange REDIRECT_URL                              exchange the code of a redirect URL pasted by hand
  browse AUTHORIZE_URL [--user NAME]                 sign in, TOTP and approve like a person, then follow
                                                     the redirect to the callback (for scripts/demo --check)
  call METHOD PATH [--client mtls|dpop] [--data JSON] [--idempotency-key K] [--bearer]
                                                     a bank API request through Envoy with the saved token
  token-info [--client mtls|dpop]                    the saved token's claims (not the token)

The run folder: --run, else $FAPI_HARNESS_DIR, else test-harness/run of the workspace.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fapi-fintech: {e}");
            std::process::exit(2);
        }
    }
}

/// Command-line options after the command: `--name value` pairs and positional arguments.
struct Opts {
    named: HashMap<String, String>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts> {
        let mut o = Opts {
            named: HashMap::new(),
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if name == "bearer" || name == "help" {
                    o.flags.push(name.to_string());
                    continue;
                }
                let v = it
                    .next()
                    .ok_or_else(|| Error(format!("--{name} needs a value")))?;
                o.named.insert(name.to_string(), v.clone());
            } else {
                o.positional.push(a.clone());
            }
        }
        Ok(o)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.named.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn run(mut args: Vec<String>) -> Result<i32> {
    let mut run_dir = None;
    if args.first().map(String::as_str) == Some("--run") {
        if args.len() < 2 {
            bail!("--run needs a folder");
        }
        run_dir = Some(PathBuf::from(args.remove(1)));
        args.remove(0);
    }
    let Some(command) = args.first().cloned() else {
        println!("{USAGE}");
        return Ok(2);
    };
    if command == "help" || command == "--help" || command == "-h" {
        println!("{USAGE}");
        return Ok(0);
    }
    let opts = Opts::parse(&args[1..])?;
    let run_dir = run_dir
        .or_else(|| std::env::var_os("FAPI_HARNESS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| workspace_root().join("test-harness/run"));
    let app = App::load(&run_dir)?;
    match command.as_str() {
        "par" => {
            let url = app.par(
                opts.get("client").unwrap_or("mtls"),
                opts.get("scope"),
                opts.get("acr").unwrap_or("urn:bank:acr:totp"),
            )?;
            println!("{url}");
            Ok(0)
        }
        "callback" => {
            let count = match opts.get("count") {
                Some(n) => Some(n.parse::<usize>().ctx("--count")?),
                None => None,
            };
            app.serve_callback(count)
        }
        "exchange" => {
            let url = opts
                .positional
                .first()
                .ok_or_else(|| Error("exchange needs the redirect URL".into()))?;
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or(url);
            let report = app.complete(query)?;
            println!("{}", report.text);
            Ok(if report.ok { 0 } else { 1 })
        }
        "browse" => {
            let url = opts
                .positional
                .first()
                .ok_or_else(|| Error("browse needs the authorization URL".into()))?;
            app.browse(url, opts.get("user").unwrap_or("taro"))
        }
        "call" => {
            let (method, path) = match opts.positional.as_slice() {
                [m, p, ..] => (m.to_ascii_uppercase(), p.clone()),
                _ => bail!("call needs METHOD and PATH, e.g. call GET /accounts"),
            };
            let client = opts.get("client").unwrap_or("mtls");
            let mut extra = Vec::new();
            if let Some(k) = opts.get("idempotency-key") {
                extra.push(("idempotency-key".to_string(), k.to_string()));
            }
            let r = app.call(
                client,
                &method,
                &path,
                opts.get("data"),
                &extra,
                opts.flag("bearer"),
            )?;
            println!("{method} {} -> {}", app.envoy_url(&path), r.status);
            for h in ["www-authenticate", "x-fapi-interaction-id"] {
                if let Some(v) = r.header(h) {
                    println!("{h}: {v}");
                }
            }
            println!("{}", pretty(&r));
            Ok(if (200..300).contains(&r.status) { 0 } else { 1 })
        }
        "token-info" => {
            let client = opts.get("client").unwrap_or("mtls");
            let saved = app.saved_token(client)?;
            let token = saved["access_token"].as_str().unwrap_or("");
            println!(
                "{}",
                serde_json::to_string_pretty(&claims_of(token)?).ctx("JSON")?
            );
            Ok(0)
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// The run folder's endpoints and the files of a client.
struct App {
    dir: PathBuf,
    ep: Value,
    ca_der: Vec<u8>,
}

struct Client {
    key: String,
    id: String,
    binding: String,
    signing: SigningKey,
    cert: Identity,
}

/// What finishing a flow gave: a text for the terminal, an HTML page for the browser.
struct Report {
    ok: bool,
    text: String,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).ctx(format!("reading {}", path.display()))?;
    serde_json::from_str(&text).ctx(format!("parsing {}", path.display()))
}

fn write_private(path: &Path, value: &Value) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .ctx(format!("writing {}", path.display()))?;
    f.write_all(value.to_string().as_bytes())
        .ctx(format!("writing {}", path.display()))
}

fn claims_of(jwt: &str) -> Result<Value> {
    let payload = jwt.split('.').nth(1).ok_or_else(|| Error("not a JWT".into()))?;
    let bytes = b64::decode(payload).ok_or_else(|| Error("JWT payload is not base64url".into()))?;
    serde_json::from_slice(&bytes).ctx("JWT claims")
}

fn pretty(r: &Resp) -> String {
    match r.json() {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| r.text()),
        Err(_) => r.text(),
    }
}

fn port_of(url: &str) -> Result<u16> {
    let authority = url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or("");
    authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .ok_or_else(|| Error(format!("no port in {url}")))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl App {
    fn load(dir: &Path) -> Result<App> {
        let path = dir.join("endpoints.json");
        if !path.is_file() {
            bail!(
                "no {}: start the stack first with test-harness/up (or point FAPI_HARNESS_DIR at its run folder)",
                path.display()
            );
        }
        let ep = read_json(&path)?;
        let ca = ep["ca"].as_str().unwrap_or("");
        let ca_der = CertificateDer::from_pem_file(ca)
            .ctx(format!("reading the CA certificate {ca}"))?
            .to_vec();
        Ok(App {
            dir: dir.to_path_buf(),
            ep,
            ca_der,
        })
    }

    fn str(&self, pointer: &str) -> Result<String> {
        self.ep
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error(format!("endpoints.json has no {pointer}")))
    }

    fn issuer(&self) -> Result<String> {
        self.str("/as/issuer")
    }

    fn envoy_url(&self, path: &str) -> String {
        format!("{}{path}", self.str("/envoy/url").unwrap_or_default())
    }

    fn client(&self, key: &str) -> Result<Client> {
        let c = self
            .ep
            .pointer(&format!("/clients/{key}"))
            .ok_or_else(|| Error(format!("no client {key:?} in endpoints.json (mtls or dpop)")))?;
        let s = |f: &str| {
            c[f].as_str()
                .map(str::to_string)
                .ok_or_else(|| Error(format!("client {key}: no {f}")))
        };
        let jwk = read_json(Path::new(&s("signing_key")?))?;
        let signing = SigningKey::from_jwk(&jwk).map_err(|e| Error(format!("client key: {e:?}")))?;
        let cert = Identity::from_pem_files(key, Path::new(&s("cert")?), Path::new(&s("key")?))?;
        Ok(Client {
            key: key.to_string(),
            id: s("client_id")?,
            binding: s("binding")?,
            signing,
            cert,
        })
    }

    fn state_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join("fintech");
        std::fs::create_dir_all(d.join("pending")).ctx(format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// The client's DPoP key (RFC 9449): made once per run folder, kept private there.
    fn dpop_key(&self, client: &Client) -> Result<SigningKey> {
        let path = self.state_dir()?.join(format!("{}.dpop.jwk.json", client.key));
        if path.is_file() {
            let jwk = read_json(&path)?;
            return SigningKey::from_jwk(&jwk).map_err(|e| Error(format!("DPoP key: {e:?}")));
        }
        let key = SigningKey::generate(Algorithm::ES256, None).map_err(|e| Error(format!("{e:?}")))?;
        write_private(&path, key.private_jwk())?;
        Ok(key)
    }

    /// The client's connection to the authorization server: the mTLS alias with its certificate
    /// for an mTLS-bound client, the plain listener for a DPoP-bound one.
    fn as_client(&self, client: &Client) -> Result<(HttpsClient, String)> {
        if client.binding == "mtls" {
            let base = self.str("/as/mtls_base")?;
            let c = HttpsClient::new(
                port_of(&base)?,
                &self.ca_der,
                Some(&client.cert),
                TlsVersion::Default,
            )?;
            Ok((c, base))
        } else {
            let base = self.issuer()?;
            let c = HttpsClient::new(port_of(&base)?, &self.ca_der, None, TlsVersion::Default)?;
            Ok((c, base))
        }
    }

    /// `pairs` with RFC 7523 private_key_jwt client authentication (aud: the issuer).
    fn authenticated(&self, client: &Client, pairs: &[(&str, &str)]) -> Result<Vec<u8>> {
        let now = unix_now();
        let assertion = client
            .signing
            .sign_jwt(
                None,
                &json!({"iss": client.id, "sub": client.id, "aud": self.issuer()?,
                        "iat": now, "exp": now + 60, "jti": random_id()}),
            )
            .map_err(|e| Error(format!("signing the client assertion: {e:?}")))?;
        let mut all: Vec<(&str, &str)> = vec![
            ("client_id", &client.id),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ];
        all.extend_from_slice(pairs);
        Ok(form(&all))
    }

    /// A POST to the server's `path`; DPoP clients add a proof, and answer a `use_dpop_nonce`
    /// (RFC 9449 §8) once with the nonce given.
    fn as_post(&self, client: &Client, path: &str, pairs: &[(&str, &str)]) -> Result<Resp> {
        let (http, base) = self.as_client(client)?;
        let dpop = if client.binding == "dpop" {
            Some(self.dpop_key(client)?)
        } else {
            None
        };
        let mut nonce: Option<String> = None;
        for _ in 0..2 {
            let mut req = Req::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&self.authenticated(client, pairs)?);
            if let Some(k) = &dpop {
                let proof = k
                    .dpop_proof(
                        "POST",
                        &format!("{base}{path}"),
                        None,
                        unix_now(),
                        &random_id(),
                        nonce.as_deref(),
                    )
                    .map_err(|e| Error(format!("DPoP proof: {e:?}")))?;
                req = req.header("dpop", &proof);
            }
            let r = http
                .send(&req)
                .map_err(|e| Error(format!("POST {base}{path}: {e}")))?;
            let wants_nonce = r.status == 400
                && r.json()
                    .ok()
                    .and_then(|b| b["error"].as_str().map(str::to_string))
                    .as_deref()
                    == Some("use_dpop_nonce");
            match (wants_nonce, r.header("dpop-nonce"), &nonce) {
                (true, Some(n), None) => nonce = Some(n.to_string()),
                _ => return Ok(r),
            }
        }
        bail!("POST {path}: the server asked for a DPoP nonce twice")
    }

    fn par(&self, key: &str, scope: Option<&str>, acr: &str) -> Result<String> {
        let client = self.client(key)?;
        let redirect = self.str("/callback/redirect_uri")?;
        let default_scope = self.str("/scope")?;
        let scope = scope.unwrap_or(&default_scope);
        let verifier = format!("{}{}", random_id(), random_id());
        let challenge = b64::sha256_b64(&verifier);
        let state = random_id();
        let nonce = random_id();
        let r = self.as_post(
            &client,
            "/par",
            &[
                ("response_type", "code"),
                ("redirect_uri", &redirect),
                ("scope", scope),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("acr_values", acr),
            ],
        )?;
        if r.status != 201 {
            bail!("PAR refused: {} {}", r.status, r.text());
        }
        let body = r.json()?;
        let request_uri = body["request_uri"]
            .as_str()
            .ok_or_else(|| Error(format!("PAR answer without request_uri: {body}")))?;
        let pending = json!({"client": key, "verifier": verifier, "nonce": nonce, "redirect_uri": redirect,
                             "created": unix_now()});
        write_private(
            &self.state_dir()?.join("pending").join(format!("{state}.json")),
            &pending,
        )?;
        eprintln!(
            "PAR for {} ({}-bound): request_uri valid {} s",
            client.id, client.binding, body["expires_in"]
        );
        Ok(format!(
            "{}/authorize?client_id={}&request_uri={}",
            self.issuer()?,
            pct_encode(&client.id),
            pct_encode(request_uri)
        ))
    }

    /// The redirect's query: RFC 9207 `iss`, `state` of a pending request, then the code exchange
    /// (PKCE verifier, the client's binding) and a first call through Envoy.
    fn complete(&self, query: &str) -> Result<Report> {
        let q = decode_query(query);
        if let Some(err) = q.get("error") {
            return Ok(Report {
                ok: false,
                text: format!(
                    "the authorization server answered {err}: {}",
                    q.get("error_description").map(String::as_str).unwrap_or("")
                ),
            });
        }
        let issuer = self.issuer()?;
        if q.get("iss") != Some(&issuer) {
            bail!(
                "iss {:?} is not the issuer {issuer} (RFC 9207): refused",
                q.get("iss")
            );
        }
        let state = q.get("state").ok_or_else(|| Error("no state".into()))?;
        let code = q.get("code").ok_or_else(|| Error("no code".into()))?;
        if !state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("unexpected state value");
        }
        let pending_path = self.state_dir()?.join("pending").join(format!("{state}.json"));
        let pending = read_json(&pending_path)
            .map_err(|_| Error("unknown state: not a request of ours (or used already)".into()))?;
        let _ = std::fs::remove_file(&pending_path);
        let key = pending["client"].as_str().unwrap_or("mtls");
        let client = self.client(key)?;
        let r = self.as_post(
            &client,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", pending["redirect_uri"].as_str().unwrap_or("")),
                ("code_verifier", pending["verifier"].as_str().unwrap_or("")),
            ],
        )?;
        if r.status != 200 {
            bail!("token request refused: {} {}", r.status, r.text());
        }
        let mut body = r.json()?;
        let access = body["access_token"].as_str().unwrap_or("").to_string();
        let claims = claims_of(&access)?;
        body["saved_at"] = json!(unix_now());
        let saved = self.state_dir()?.join(format!("{key}.token.json"));
        write_private(&saved, &body)?;
        let mut text = format!(
            "token for {} ({} {}): sub {}, scope \"{}\", acr {}, expires in {} s, bound by {}\n  saved in {}\n",
            client.id,
            body["token_type"].as_str().unwrap_or("?"),
            if body["refresh_token"].is_string() { "+ refresh token" } else { "" },
            claims["sub"].as_str().unwrap_or("?"),
            claims["scope"].as_str().unwrap_or(""),
            claims["acr"].as_str().unwrap_or("-"),
            body["expires_in"],
            if claims["cnf"]["jkt"].is_string() { "DPoP key (cnf.jkt)" } else { "client certificate (cnf.x5t#S256)" },
            saved.display()
        );
        let account = claims["sub"]
            .as_str()
            .and_then(|s| s.strip_prefix("user-"))
            .map(|u| format!("{u}-1"))
            .unwrap_or_else(|| "taro-1".into());
        let path = format!("/accounts/{account}/balances");
        let r = self.call(key, "GET", &path, None, &[], false)?;
        text.push_str(&format!(
            "\nGET {} through Envoy -> {}\n{}\n",
            self.envoy_url(&path),
            r.status,
            pretty(&r)
        ));
        Ok(Report {
            ok: r.status == 200,
            text,
        })
    }

    fn saved_token(&self, key: &str) -> Result<Value> {
        let path = self.state_dir()?.join(format!("{key}.token.json"));
        if !path.is_file() {
            bail!(
                "no token for client {key} yet: run `fapi-fintech par --client {key}` and complete the sign-in first"
            );
        }
        read_json(&path)
    }

    /// One request to the bank API through Envoy, presenting the client's certificate (Envoy asks
    /// every client for one) and the token; DPoP-bound tokens get a fresh proof (RFC 9449 §7.1)
    /// for the URL Envoy's policy knows as its external origin.
    fn call(
        &self,
        key: &str,
        method: &str,
        path: &str,
        data: Option<&str>,
        extra: &[(String, String)],
        as_bearer: bool,
    ) -> Result<Resp> {
        let client = self.client(key)?;
        let saved = self.saved_token(key)?;
        let token = saved["access_token"].as_str().unwrap_or("").to_string();
        let envoy = self.str("/envoy/url")?;
        let http = HttpsClient::new(
            port_of(&envoy)?,
            &self.ca_der,
            Some(&client.cert),
            TlsVersion::Default,
        )?;
        let dpop = client.binding == "dpop" && !as_bearer;
        let htu = format!("{envoy}{}", path.split('?').next().unwrap_or(path));
        let mut nonce: Option<String> = None;
        for _ in 0..2 {
            let mut req = Req::new(method, path);
            if dpop {
                let k = self.dpop_key(&client)?;
                let proof = k
                    .dpop_proof(
                        method,
                        &htu,
                        Some(&token),
                        unix_now(),
                        &random_id(),
                        nonce.as_deref(),
                    )
                    .map_err(|e| Error(format!("DPoP proof: {e:?}")))?;
                req = req
                    .header("authorization", &format!("DPoP {token}"))
                    .header("dpop", &proof);
            } else {
                req = req.header("authorization", &format!("Bearer {token}"));
            }
            for (n, v) in extra {
                req = req.header(n, v);
            }
            if let Some(d) = data {
                req = req.header("content-type", "application/json").body(d.as_bytes());
            }
            let r = http
                .send(&req)
                .map_err(|e| Error(format!("{method} {htu}: {e}")))?;
            let wants_nonce = dpop
                && r.status == 401
                && r.header("www-authenticate")
                    .is_some_and(|c| c.contains("use_dpop_nonce"));
            match (wants_nonce, r.header("dpop-nonce"), &nonce) {
                (true, Some(n), None) => nonce = Some(n.to_string()),
                _ => return Ok(r),
            }
        }
        bail!("{method} {path}: Envoy asked for a DPoP nonce twice")
    }

    fn serve_callback(&self, count: Option<usize>) -> Result<i32> {
        let port = port_of(&self.str("/callback/redirect_uri")?)?;
        let app = Arc::new(App {
            dir: self.dir.clone(),
            ep: self.ep.clone(),
            ca_der: self.ca_der.clone(),
        });
        let (tx, rx) = mpsc::channel::<bool>();
        let tx = std::sync::Mutex::new(tx);
        let handler = Arc::new(move |req: &Request| -> Response {
            match req.path_only() {
                "/" => return start_page(),
                "/start" => {
                    // A fresh PAR each time, so the request_uri (valid 60 s) never goes stale.
                    let q = decode_query(req.path.split_once('?').map(|(_, q)| q).unwrap_or(""));
                    let key = q.get("client").map(String::as_str).unwrap_or("mtls");
                    return match app.par(key, None, "urn:bank:acr:totp") {
                        Ok(url) => Response {
                            status: 303,
                            headers: vec![("location".into(), url)],
                            body: Vec::new(),
                        },
                        Err(e) => Response::text(502, &format!("PAR failed: {e}\n")),
                    };
                }
                "/cb" => {}
                _ => return Response::text(404, "not found: the redirect URI is /cb\n"),
            }
            let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
            let (ok, text) = match app.complete(query) {
                Ok(r) => (r.ok, r.text),
                Err(e) => (false, format!("failed: {e}")),
            };
            println!("---- callback {}\n{text}", if ok { "OK" } else { "FAILED" });
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(ok);
            }
            let page = format!(
                "<!doctype html><meta charset=\"utf-8\"><title>Demo fintech</title>\
                 <body style=\"font-family:sans-serif;max-width:50em;margin:2em auto\">\
                 <h1>{}</h1><pre style=\"background:#f4f4f4;padding:1em;white-space:pre-wrap\">{}</pre>\
                 <p>Try more calls in the terminal: <code>test-harness/native/fintech call GET /accounts</code> \
                 · <a href=\"/\">start again</a></p>",
                if ok { "Connected to the bank: balance call succeeded through Envoy" } else { "Something went wrong" },
                html_escape(&text)
            );
            Response {
                status: if ok { 200 } else { 502 },
                headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
                body: page.into_bytes(),
            }
        });
        let _server = HttpServer::start_on(port, handler)?;
        eprintln!(
            "fapi-fintech: waiting for the browser's redirect on {}",
            self.str("/callback/redirect_uri")?
        );
        let mut all_ok = true;
        let mut seen = 0;
        while count.is_none_or(|n| seen < n) {
            match rx.recv() {
                Ok(ok) => {
                    all_ok &= ok;
                    seen += 1;
                }
                Err(_) => break,
            }
        }
        // Let the handler finish writing the last page.
        std::thread::sleep(Duration::from_millis(200));
        Ok(if all_ok { 0 } else { 1 })
    }

    /// What the person does in the browser, over HTTP: open the authorization URL, sign in with
    /// password and TOTP, approve, and follow the redirect to the callback.
    fn browse(&self, url: &str, user: &str) -> Result<i32> {
        let issuer = self.issuer()?;
        let path = url
            .strip_prefix(&issuer)
            .ok_or_else(|| Error(format!("{url} is not on the issuer {issuer}")))?;
        let users = self.ep["users"].as_array().cloned().unwrap_or_default();
        let u = users
            .iter()
            .find(|u| u["username"] == user)
            .ok_or_else(|| Error(format!("no demo user {user} in endpoints.json")))?;
        let password = u["password"].as_str().unwrap_or("");
        let secret = u["totp_secret"].as_str().unwrap_or("");
        let mut b = Browser {
            client: HttpsClient::new(port_of(&issuer)?, &self.ca_der, None, TlsVersion::Default)?,
            cookies: HashMap::new(),
        };
        let step = |what: &str| eprintln!("browser: {what}");
        let r = b.get(path)?;
        let mut next = see_other(&r)?;
        step(&format!("GET /authorize -> 303 {next}"));
        let page = b.get(&next)?.text();
        if !page.contains("name=\"password\"") {
            bail!("expected the sign-in page at {next}");
        }
        step("sign-in page rendered; signing in");
        let token = csrf(&page).ok_or_else(|| Error("no csrf field on the sign-in page".into()))?;
        next = see_other(&b.post(
            "/login",
            &[("csrf", &token), ("username", user), ("password", password)],
        )?)?;
        let mut page = b.get(&next)?.text();
        if page.contains("name=\"code\"") {
            step("TOTP step: entering the current code");
            let mut token = csrf(&page).ok_or_else(|| Error("no csrf field on the TOTP page".into()))?;
            let mut r = b.post(
                "/login/totp",
                &[("csrf", &token), ("code", &totp(secret, unix_now())?)],
            )?;
            if r.status == 200 && r.text().contains("name=\"code\"") {
                // A code is accepted once (RFC 6238 §5.2): this user's current one was used already
                // (an earlier sign-in within the same 30 s). Wait for the next one, as a person would.
                let wait = 30 - unix_now().rem_euclid(30) + 1;
                step(&format!(
                    "TOTP code used already: waiting {wait} s for the next one"
                ));
                std::thread::sleep(Duration::from_secs(wait as u64));
                token = csrf(&r.text()).ok_or_else(|| Error("no csrf field on the TOTP page".into()))?;
                r = b.post(
                    "/login/totp",
                    &[("csrf", &token), ("code", &totp(secret, unix_now())?)],
                )?;
            }
            next = see_other(&r)?;
            page = b.get(&next)?.text();
        }
        if !page.contains("id=\"approve\"") {
            bail!(
                "expected the consent page, got: {}",
                page.chars().take(400).collect::<String>()
            );
        }
        step("consent page: approving");
        let token = csrf(&page).ok_or_else(|| Error("no csrf field on the consent page".into()))?;
        let location = see_other(&b.post("/consent", &[("csrf", &token), ("decision", "approve")])?)?;
        let (base, query) = location
            .split_once('?')
            .ok_or_else(|| Error(format!("redirect without a query: {location}")))?;
        step(&format!("redirected to {base}?code=…&state=…&iss=…"));
        let (status, body) = http_get(port_of(base)?, &format!("/cb?{query}"))
            .map_err(|e| Error(format!("{e} (is `fapi-fintech callback` running?)")))?;
        step(&format!("callback page: {status}"));
        if let Some(pre) = body
            .split("<pre")
            .nth(1)
            .and_then(|p| p.split_once('>'))
            .map(|(_, r)| r)
        {
            let text = pre.split("</pre>").next().unwrap_or("");
            println!(
                "{}",
                text.replace("&quot;", "\"")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            );
        }
        Ok(if status == 200 { 0 } else { 1 })
    }
}

/// The fintech's home page: one link per client; each starts a fresh PAR and redirects to the bank.
fn start_page() -> Response {
    let page = "<!doctype html><meta charset=\"utf-8\"><title>Demo fintech</title>\
        <body style=\"font-family:sans-serif;max-width:40em;margin:2em auto\">\
        <h1>Demo fintech</h1><p>Connect your account at the demo bank (FAPI 2.0: PAR, PKCE, \
        private_key_jwt, sender-constrained tokens):</p><ul>\
        <li><a href=\"/start?client=mtls\">Connect with the mTLS-bound client</a> (demo-fintech-mtls)</li>\
        <li><a href=\"/start?client=dpop\">Connect with the DPoP-bound client</a> (demo-fintech-dpop)</li>\
        </ul><p>Sign in as <b>taro</b> / <b>demo-password-2026</b>; the TOTP code: \
        <code>test-harness/native/totp taro</code></p>";
    Response {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: page.as_bytes().to_vec(),
    }
}
