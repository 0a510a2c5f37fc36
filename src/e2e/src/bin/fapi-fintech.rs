//! `fapi-fintech`: a small demo fintech client for the native stack of `test-harness/up`. It reads
//! the run folder's `endpoints.json` (`$FAPI_HARNESS_DIR`, else `test-harness/run`) and does what a
//! FAPI 2.0 client does:
//!
//! - `par`: a pushed authorization request (RFC 9126) with PKCE (RFC 7636) and private_key_jwt
//!   (RFC 7523; FAPI 2.0 SP §5.3.2.1), over mTLS (RFC 8705) or with a DPoP proof binding the code
//!   (RFC 9449 §10); prints the authorization URL to open in a browser. With `--transfer`, it asks
//!   for one transfer, 5,000 JPY to hanako-1 by default, as an RFC 9396 `payment_initiation`
//!   authorization detail: the consent page shows it and the user picks the account it is paid from.
//! - `callback`: the redirect URI (`http://127.0.0.1:PORT/cb`): checks `iss` (RFC 9207) and `state`,
//!   exchanges the code, and calls the bank API through Envoy with the bound token: for a transfer
//!   grant, it posts exactly the transfer the user consented to (`pay`), else it reads a balance.
//! - `pay`: posts the saved token's granted transfer (its `authorization_details`) to
//!   `POST /transfers` through Envoy; the plugin admits that body once.
//! - `exchange URL`: the same for a redirect URL pasted by hand.
//! - `browse URL`: a robot in place of the person (sign-in, TOTP, consent), for `scripts/demo --check`.
//! - `call METHOD PATH`: one bank API request through Envoy with the saved token (mTLS certificate,
//!   or a fresh DPoP proof per request).
//!
//! Tokens are saved in `<run>/fintech/` and never printed in full.

use fapi_core::alg::Algorithm;
use fapi_core::sign::SigningKey;
use fapi_e2e::client::{http_get, Resp};
use fapi_e2e::fapi_as::decode_query;
use fapi_e2e::fintech::{
    claims_of, granted_payments, port_of, read_json, transfer_body_for, write_private, Client, Payment,
    Pending, Stack,
};
use fapi_e2e::server::{HttpServer, Request, Response};
use fapi_e2e::util::{unix_now, workspace_root};
use fapi_e2e::{bail, Context as _, Error, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const USAGE: &str = "\
fapi-fintech: the demo fintech client of the native stack (test-harness/up)

usage: fapi-fintech [--run DIR] COMMAND [options]
  par [--client mtls|dpop] [--scope S] [--acr ACR] [--transfer [--amount YEN] [--to ACCOUNT]
      [--payee NAME] [--reference TEXT]]              PAR; prints the URL to open in a browser; --transfer
                                                     asks for one transfer (RFC 9396 authorization_details,
                                                     default 5000 JPY to hanako-1, Hanako Yamada, dinner)
  callback [--count N]                               serve the redirect URI (N callbacks, default: until Ctrl-C)
  exchange REDIRECT_URL                              exchange the code of a redirect URL pasted by hand
  browse AUTHORIZE_URL [--user NAME] [--account A]   sign in, TOTP and approve like a person (for a transfer,
                                                     choosing debtor account A, default NAME-1), then follow
                                                     the redirect to the callback (for scripts/demo --check)
  pay [--client mtls|dpop] [--idempotency-key K]     post the transfer the saved token was granted for
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
                if name == "bearer" || name == "help" || name == "transfer" {
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
            let transfer = if opts.flag("transfer") {
                let amount = match opts.get("amount") {
                    Some(a) => a.parse::<i64>().ctx("--amount (whole yen)")?,
                    None => 5_000,
                };
                Some(Payment::new(
                    amount,
                    opts.get("to").unwrap_or("hanako-1"),
                    opts.get("payee").unwrap_or("Hanako Yamada"),
                    opts.get("reference").unwrap_or("dinner"),
                    "",
                ))
            } else {
                None
            };
            let url = app.par(
                opts.get("client").unwrap_or("mtls"),
                opts.get("scope"),
                opts.get("acr").unwrap_or("urn:bank:acr:totp"),
                transfer.as_ref(),
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
            let user = opts.get("user").unwrap_or("taro");
            let account = opts
                .get("account")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{user}-1"));
            app.browse(url, user, &account)
        }
        "pay" => {
            let client = opts.get("client").unwrap_or("mtls");
            let key = opts.get("idempotency-key").map(str::to_string);
            let (text, ok) = app.pay(client, key)?;
            println!("{text}");
            Ok(if ok { 0 } else { 1 })
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

/// The run folder: the stack's endpoints ([`Stack`], shared with `fapi-scenarios`) and this client's
/// saved state in `<run>/fintech/` (DPoP keys, pending requests, tokens).
struct App {
    dir: PathBuf,
    stack: Stack,
}

/// What finishing a flow gave: a text for the terminal, an HTML page for the browser.
struct Report {
    ok: bool,
    text: String,
}

fn pretty(r: &Resp) -> String {
    match r.json() {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| r.text()),
        Err(_) => r.text(),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl App {
    fn load(dir: &Path) -> Result<App> {
        Ok(App {
            dir: dir.to_path_buf(),
            stack: Stack::load(&dir.join("endpoints.json"))?,
        })
    }

    fn str(&self, pointer: &str) -> Result<String> {
        self.stack.str(pointer)
    }

    fn envoy_url(&self, path: &str) -> String {
        self.stack.envoy_url(path)
    }

    fn client(&self, key: &str) -> Result<Client> {
        self.stack.client(key)
    }

    fn state_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join("fintech");
        std::fs::create_dir_all(d.join("pending")).ctx(format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// The client's DPoP key (RFC 9449): made once per run folder, kept private there; none for
    /// an mTLS-bound client.
    fn dpop_key(&self, client: &Client) -> Result<Option<SigningKey>> {
        if client.binding != "dpop" {
            return Ok(None);
        }
        let path = self.state_dir()?.join(format!("{}.dpop.jwk.json", client.key));
        if path.is_file() {
            let jwk = read_json(&path)?;
            return SigningKey::from_jwk(&jwk)
                .map(Some)
                .map_err(|e| Error(format!("DPoP key: {e:?}")));
        }
        let key = SigningKey::generate(Algorithm::ES256, None).map_err(|e| Error(format!("{e:?}")))?;
        write_private(&path, key.private_jwk())?;
        Ok(Some(key))
    }

    /// A PAR (with `transfer`'s detail as `authorization_details`); the pending request is saved
    /// under its `state`, with the URL (so that `browse` knows a transfer is to be consented to).
    fn par(&self, key: &str, scope: Option<&str>, acr: &str, transfer: Option<&Payment>) -> Result<String> {
        let client = self.client(key)?;
        let dpop = self.dpop_key(&client)?;
        let p = self.stack.par(&client, dpop.as_ref(), scope, acr, transfer)?;
        let pending = json!({"client": key, "verifier": p.verifier, "nonce": p.nonce,
                             "redirect_uri": p.redirect_uri, "created": unix_now(), "url": p.url,
                             "authorization_details": transfer.map(|t| vec![t.detail.clone()])});
        write_private(
            &self
                .state_dir()?
                .join("pending")
                .join(format!("{}.json", p.state)),
            &pending,
        )?;
        eprintln!(
            "PAR for {} ({}-bound): request_uri valid for a short while (RFC 9126)",
            client.id, client.binding
        );
        if let Some(t) = transfer {
            eprintln!(
                "asking for one transfer (RFC 9396 authorization_details): {} {} to {} ({}), \"{}\"; the user picks the account at consent",
                t.detail["instructedAmount"]["amount"].as_str().unwrap_or("?"),
                t.detail["instructedAmount"]["currency"].as_str().unwrap_or("?"),
                t.detail["creditorAccount"]["accountId"].as_str().unwrap_or("?"),
                t.detail["creditorName"].as_str().unwrap_or("?"),
                t.detail["remittanceInformationUnstructured"].as_str().unwrap_or(""),
            );
        }
        Ok(p.url)
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
        let state = q.get("state").ok_or_else(|| Error("no state".into()))?;
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
        let dpop = self.dpop_key(&client)?;
        let p = Pending {
            url: String::new(),
            state: state.clone(),
            nonce: pending["nonce"].as_str().unwrap_or("").to_string(),
            verifier: pending["verifier"].as_str().unwrap_or("").to_string(),
            redirect_uri: pending["redirect_uri"].as_str().unwrap_or("").to_string(),
        };
        let mut body = self.stack.exchange(&client, dpop.as_ref(), &p, query)?;
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
        if !granted_payments(&body).is_empty() {
            // A transfer grant: the fintech makes exactly the transfer the user consented to.
            let (paid, ok) = self.pay(key, Some(format!("demo-{state}")))?;
            text.push_str(&paid);
            return Ok(Report { ok, text });
        }
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

    /// Posts the transfer the saved token was granted (RFC 9396 §7: the detail the user approved,
    /// with the debtor account they chose) to `POST /transfers` through Envoy, with `idempotency_key`
    /// (else a fresh one); then reads the debtor account's balance. A text for the terminal, and
    /// whether the transfer was made (201).
    fn pay(&self, key: &str, idempotency_key: Option<String>) -> Result<(String, bool)> {
        let saved = self.saved_token(key)?;
        let granted = granted_payments(&saved);
        let [detail] = granted.as_slice() else {
            bail!(
                "the saved token of client {key} carries {} payment_initiation details (one expected): run `fapi-fintech par --transfer` first",
                granted.len()
            );
        };
        let body = transfer_body_for(detail)?;
        let idempotency_key =
            idempotency_key.unwrap_or_else(|| format!("demo-{}", fapi_core::sign::random_id()));
        let mut text = format!(
            "\nthe user consented to: {} {} to {} ({}), from {}, \"{}\"\n",
            detail["instructedAmount"]["amount"].as_str().unwrap_or("?"),
            detail["instructedAmount"]["currency"].as_str().unwrap_or("?"),
            detail["creditorAccount"]["accountId"].as_str().unwrap_or("?"),
            detail["creditorName"].as_str().unwrap_or("?"),
            detail["debtorAccount"]["accountId"].as_str().unwrap_or("?"),
            detail["remittanceInformationUnstructured"].as_str().unwrap_or(""),
        );
        let data = body.to_string();
        let extra = [("idempotency-key".to_string(), idempotency_key)];
        let r = self.call(key, "POST", "/transfers", Some(&data), &extra, false)?;
        text.push_str(&format!(
            "\nPOST {} through Envoy {data} -> {}\n{}\n",
            self.envoy_url("/transfers"),
            r.status,
            pretty(&r)
        ));
        let from = body["from_account"].as_str().unwrap_or("");
        let path = format!("/accounts/{from}/balances");
        if let Ok(b) = self.call(key, "GET", &path, None, &[], false) {
            text.push_str(&format!("\nGET {path} -> {}\n{}\n", b.status, pretty(&b)));
        }
        Ok((text, r.status == 201))
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
    /// for the URL Envoy's policy knows as its external origin, unless `as_bearer`.
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
        let http = self.stack.envoy(Some(&client.cert))?;
        let dpop = if as_bearer { None } else { self.dpop_key(&client)? };
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        self.stack
            .api(&http, method, path, &token, dpop.as_ref(), data, &extra)
            .map_err(|e| Error(format!("{method} {}: {e}", self.envoy_url(path))))
    }

    fn serve_callback(&self, count: Option<usize>) -> Result<i32> {
        let port = port_of(&self.str("/callback/redirect_uri")?)?;
        let app = Arc::new(App {
            dir: self.dir.clone(),
            stack: self.stack.clone(),
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
                    let transfer =
                        (q.get("transfer").map(String::as_str) == Some("demo")).then(|| Payment::demo(""));
                    return match app.par(key, None, "urn:bank:acr:totp", transfer.as_ref()) {
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
                if !ok { "Something went wrong" } else if text.contains("POST ") { "Paid: the transfer you consented to went through Envoy" } else { "Connected to the bank: balance call succeeded through Envoy" },
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

    /// The transfer detail the pending request of authorization URL `url` asked for, if any.
    fn asked_detail(&self, url: &str) -> Option<Value> {
        let dir = std::fs::read_dir(self.dir.join("fintech").join("pending")).ok()?;
        dir.filter_map(|e| e.ok())
            .filter_map(|e| read_json(&e.path()).ok())
            .find(|p| p["url"] == url)
            .and_then(|p| p["authorization_details"].get(0).cloned())
    }

    /// What the person does in the browser, over HTTP: open the authorization URL, sign in with
    /// password and TOTP, approve (for a transfer, paid from `account`), and follow the redirect to
    /// the callback.
    fn browse(&self, url: &str, user: &str, account: &str) -> Result<i32> {
        let step = |what: &str| eprintln!("browser: {what}");
        let payment = self.asked_detail(url).map(|detail| Payment {
            detail,
            debtor: account.to_string(),
        });
        let location = self.stack.sign_in(url, user, payment.as_ref(), &step)?;
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
        <li><a href=\"/start?client=mtls&amp;transfer=demo\">Pay 5,000 JPY to hanako-1 (Hanako Yamada) for dinner</a> \
        (one transfer, RFC 9396 authorization_details; you choose the account on the bank's consent page)</li>\
        </ul><p>Sign in as <b>taro</b> / <b>demo-password-2026</b>; the TOTP code: \
        <code>test-harness/native/totp taro</code></p>";
    Response {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: page.as_bytes().to_vec(),
    }
}
