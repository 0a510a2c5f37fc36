//! A FAPI 2.0 client of a running stack (`test-harness/up`, or the compose stack), described by the
//! stack's `endpoints.json`: what the demo client `fapi-fintech` and the scenario suite
//! `fapi-scenarios` share.
//!
//! - [`Stack`]: the endpoints, the test CA, the registered clients ([`Client`]: client id, binding,
//!   private_key_jwt key, client certificate).
//! - Authorization server: pushed authorization request (RFC 9126) with PKCE (RFC 7636) and
//!   private_key_jwt (RFC 7523; FAPI 2.0 SP §5.3.2.1), over mTLS (RFC 8705) or with DPoP proofs
//!   (RFC 9449, server nonces §8), optionally asking for one transfer as an RFC 9396
//!   `payment_initiation` authorization detail ([`Payment`]); a person's sign-in, TOTP and consent
//!   over HTTP, choosing the debtor account of the transfer at consent ([`Stack::sign_in`]); the
//!   code exchange with the RFC 9207 `iss` and `state` checks; refresh; revocation (RFC 7009).
//! - The transfer the user consented to, as the bank's `POST /transfers` body
//!   ([`transfer_body_for`]): what the plugin compares with the token's granted detail.
//! - The bank API through Envoy ([`Stack::api`]): the client certificate on every connection, the
//!   token in the Authorization header, a fresh DPoP proof per request for DPoP-bound tokens.
//!
//! Nothing here prints a token.

use crate::client::{ClientError, HttpsClient, Req, Resp, TlsVersion};
use crate::fapi_as::{csrf, decode_query, form, pct_encode, see_other, totp, Browser, JWT_BEARER};
use crate::pki::Identity;
use crate::util::unix_now;
use crate::{bail, Context as _, Error, Result};
use fapi_core::b64;
use fapi_core::sign::{random_id, SigningKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A running stack, as its `endpoints.json` describes it.
#[derive(Clone)]
pub struct Stack {
    /// The folder of `endpoints.json`.
    pub dir: PathBuf,
    pub ep: Value,
    /// The test CA (DER): trust anchor for the authorization server and Envoy.
    pub ca_der: Vec<u8>,
}

/// A client registered at the authorization server (`endpoints.json` `clients.<key>`).
pub struct Client {
    /// `mtls` or `dpop`: the key in `endpoints.json`.
    pub key: String,
    pub id: String,
    /// `mtls` or `dpop`.
    pub binding: String,
    /// The private_key_jwt key (RFC 7523).
    pub signing: SigningKey,
    /// The TLS client certificate (Envoy asks every client for one).
    pub cert: Identity,
}

/// A pushed authorization request waiting for the person: what the code exchange needs later.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The authorization URL to open in a browser.
    pub url: String,
    pub state: String,
    pub nonce: String,
    /// PKCE code verifier (RFC 7636 §4.1).
    pub verifier: String,
    pub redirect_uri: String,
}

/// A transfer the fintech asks the user to consent to (RFC 9396 §2, type `payment_initiation`,
/// docs/authorization-details.md), and the debtor account the user picks on the consent page.
#[derive(Debug, Clone)]
pub struct Payment {
    /// The detail as requested: no `debtorAccount` (the user chooses it).
    pub detail: Value,
    /// The account the person chooses at consent (one of their own).
    pub debtor: String,
}

impl Payment {
    /// `amount` yen to `creditor_account` (`creditor_name`), remittance information `remittance`,
    /// paid from `debtor` (chosen at consent).
    pub fn new(
        amount: i64,
        creditor_account: &str,
        creditor_name: &str,
        remittance: &str,
        debtor: &str,
    ) -> Self {
        Payment {
            detail: json!({
                "type": "payment_initiation",
                "instructedAmount": {"currency": "JPY", "amount": amount.to_string()},
                "creditorName": creditor_name,
                "creditorAccount": {"accountId": creditor_account},
                "remittanceInformationUnstructured": remittance,
            }),
            debtor: debtor.to_string(),
        }
    }

    /// The demo's transfer: 5,000 JPY to hanako-1 (Hanako Yamada) for dinner, from `debtor`.
    pub fn demo(debtor: &str) -> Self {
        Payment::new(5_000, "hanako-1", "Hanako Yamada", "dinner", debtor)
    }

    /// The `authorization_details` request parameter: a JSON array of this one detail.
    pub fn request_parameter(&self) -> String {
        Value::Array(vec![self.detail.clone()]).to_string()
    }
}

/// The granted `payment_initiation` details of a token response (RFC 9396 §7), else of the JWT
/// access token's `authorization_details` claim (§9.1).
pub fn granted_payments(token_response: &Value) -> Vec<Value> {
    let from_claims = || {
        token_response["access_token"]
            .as_str()
            .and_then(|t| claims_of(t).ok())
            .map(|c| c["authorization_details"].clone())
            .unwrap_or(Value::Null)
    };
    let list = match &token_response["authorization_details"] {
        Value::Array(a) => Value::Array(a.clone()),
        _ => from_claims(),
    };
    list.as_array()
        .map(|a| {
            a.iter()
                .filter(|d| d["type"] == "payment_initiation")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The bank's `POST /transfers` body (`src/bank/README.md`) for a granted `payment_initiation`
/// detail: exactly the transfer the user consented to (debtor account, creditor account, amount in
/// whole yen, currency, the remittance information as the reference).
pub fn transfer_body_for(detail: &Value) -> Result<Value> {
    let field = |pointer: &str| {
        detail
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| Error(format!("the granted detail has no {pointer}")))
    };
    let amount: i64 = field("/instructedAmount/amount")?
        .parse()
        .map_err(|_| Error("the granted amount is not a whole number of yen".into()))?;
    let mut body = json!({
        "from_account": field("/debtorAccount/accountId")?,
        "to_account": field("/creditorAccount/accountId")?,
        "amount": amount,
        "currency": field("/instructedAmount/currency")?,
    });
    if let Some(r) = detail["remittanceInformationUnstructured"].as_str() {
        body["reference"] = json!(r);
    }
    Ok(body)
}

/// The form controls of an HTML page that offer a choice: `(name, value)` of each `<option>` of a
/// `<select name=..>` and of each radio button. A test's reading of the consent page, not an HTML
/// parser: attribute values in double quotes, as fapi-as writes them.
pub fn choices(page: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let marker = format!(" {name}=\"");
        let start = tag.find(&marker)? + marker.len();
        tag[start..].split('"').next().map(|v| v.replace("&amp;", "&"))
    };
    let mut out = Vec::new();
    let mut select: Option<String> = None;
    for piece in page.split('<').skip(1) {
        let tag = piece.split('>').next().unwrap_or("");
        let lower = tag.to_ascii_lowercase();
        if lower.starts_with("select") {
            select = attr(tag, "name");
        } else if lower.starts_with("/select") {
            select = None;
        } else if lower.starts_with("option") {
            if let (Some(n), Some(v)) = (&select, attr(tag, "value")) {
                out.push((n.clone(), v));
            }
        } else if lower.starts_with("input") && attr(tag, "type").as_deref() == Some("radio") {
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                out.push((n, v));
            }
        }
    }
    out
}

pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).ctx(format!("reading {}", path.display()))?;
    serde_json::from_str(&text).ctx(format!("parsing {}", path.display()))
}

/// Writes `value` to `path`, readable by its owner only.
pub fn write_private(path: &Path, value: &Value) -> Result<()> {
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

/// The claims of a JWT, unverified (for display and for crafting test tokens).
pub fn claims_of(jwt: &str) -> Result<Value> {
    let payload = jwt.split('.').nth(1).ok_or_else(|| Error("not a JWT".into()))?;
    let bytes = b64::decode(payload).ok_or_else(|| Error("JWT payload is not base64url".into()))?;
    serde_json::from_slice(&bytes).ctx("JWT claims")
}

/// The port of a URL (`https://localhost:28443/x` -> 28443); every endpoint of the stack names one.
pub fn port_of(url: &str) -> Result<u16> {
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

/// The `error` member of a JSON error body.
pub fn error_of(r: &Resp) -> Option<String> {
    r.json()
        .ok()
        .and_then(|b| b["error"].as_str().map(str::to_string))
}

impl Stack {
    /// Reads `endpoints.json` (and the CA it names).
    pub fn load(endpoints: &Path) -> Result<Stack> {
        if !endpoints.is_file() {
            bail!(
                "no {}: start the stack first with test-harness/up (or point FAPI_HARNESS_DIR at its run folder)",
                endpoints.display()
            );
        }
        let ep = read_json(endpoints)?;
        let ca = ep["ca"].as_str().unwrap_or("");
        let ca_der = CertificateDer::from_pem_file(ca)
            .ctx(format!("reading the CA certificate {ca}"))?
            .to_vec();
        let dir = endpoints
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Stack { dir, ep, ca_der })
    }

    /// A string of `endpoints.json` by JSON pointer (`/as/issuer`).
    pub fn str(&self, pointer: &str) -> Result<String> {
        self.ep
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error(format!("endpoints.json has no {pointer}")))
    }

    pub fn issuer(&self) -> Result<String> {
        self.str("/as/issuer")
    }

    /// Envoy's URL + `path`: the DPoP `htu` base (the policy's `external_origin` in the stack).
    pub fn envoy_url(&self, path: &str) -> String {
        format!("{}{path}", self.str("/envoy/url").unwrap_or_default())
    }

    /// The registered client `key` (`mtls` or `dpop`).
    pub fn client(&self, key: &str) -> Result<Client> {
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

    /// The client's connection to the authorization server and its base URL: the mTLS alias with
    /// its certificate for an mTLS-bound client, the plain listener for a DPoP-bound one.
    /// `mtls_base` replaces the mTLS alias (another instance of the server).
    pub fn as_connection(&self, client: &Client, mtls_base: Option<&str>) -> Result<(HttpsClient, String)> {
        if client.binding == "mtls" {
            let base = match mtls_base {
                Some(b) => b.to_string(),
                None => self.str("/as/mtls_base")?,
            };
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

    /// `pairs` with RFC 7523 private_key_jwt client authentication (aud: the issuer), form-encoded.
    pub fn authenticated(&self, client: &Client, pairs: &[(&str, &str)]) -> Result<Vec<u8>> {
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

    /// A client-authenticated form POST to the server's `path`. With `dpop`, a proof of that key
    /// goes along, and a `use_dpop_nonce` answer (RFC 9449 §8) is retried once with the nonce.
    pub fn as_post(
        &self,
        client: &Client,
        dpop: Option<&SigningKey>,
        mtls_base: Option<&str>,
        path: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Resp> {
        let (http, base) = self.as_connection(client, mtls_base)?;
        let mut nonce: Option<String> = None;
        for _ in 0..2 {
            let mut req = Req::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(&self.authenticated(client, pairs)?);
            if let Some(k) = dpop {
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
            let wants_nonce = r.status == 400 && error_of(&r).as_deref() == Some("use_dpop_nonce");
            match (wants_nonce, r.header("dpop-nonce"), &nonce) {
                (true, Some(n), None) => nonce = Some(n.to_string()),
                _ => return Ok(r),
            }
        }
        bail!("POST {path}: the server asked for a DPoP nonce twice")
    }

    /// A pushed authorization request (RFC 9126) with PKCE S256, `state`, `nonce` and `acr_values`;
    /// `scope` defaults to the stack's (`endpoints.json` `scope`); with `payment`, its detail as
    /// `authorization_details` (RFC 9396 §2).
    pub fn par(
        &self,
        client: &Client,
        dpop: Option<&SigningKey>,
        scope: Option<&str>,
        acr: &str,
        payment: Option<&Payment>,
    ) -> Result<Pending> {
        let redirect_uri = self.str("/callback/redirect_uri")?;
        let default_scope = self.str("/scope")?;
        let scope = scope.unwrap_or(&default_scope);
        let verifier = format!("{}{}", random_id(), random_id());
        let challenge = b64::sha256_b64(&verifier);
        let state = random_id();
        let nonce = random_id();
        let details = payment.map(Payment::request_parameter);
        let mut pairs = vec![
            ("response_type", "code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", scope),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("acr_values", acr),
        ];
        if let Some(d) = &details {
            pairs.push(("authorization_details", d));
        }
        let r = self.as_post(client, dpop, None, "/par", &pairs)?;
        if r.status != 201 {
            bail!("PAR refused: {} {}", r.status, r.text());
        }
        let body = r.json()?;
        let request_uri = body["request_uri"]
            .as_str()
            .ok_or_else(|| Error(format!("PAR answer without request_uri: {body}")))?;
        Ok(Pending {
            url: format!(
                "{}/authorize?client_id={}&request_uri={}",
                self.issuer()?,
                pct_encode(&client.id),
                pct_encode(request_uri)
            ),
            state,
            nonce,
            verifier,
            redirect_uri,
        })
    }

    /// What the person does in the browser, over HTTP: opens the authorization URL, signs in as
    /// demo user `user` with the password, enters the TOTP code when the server asks for one (a code
    /// works once, RFC 6238 §5.2: if this user's current one was used already, waits for the next,
    /// as a person would), and approves. With `payment`, the consent page must show the transfer
    /// (its payee account) and offer the debtor account to choose: `payment.debtor` is chosen (it
    /// must be among the offered ones). Returns the redirect (`Location`) to the redirect URI.
    pub fn sign_in(
        &self,
        url: &str,
        user: &str,
        payment: Option<&Payment>,
        step: &dyn Fn(&str),
    ) -> Result<String> {
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
        let token = csrf(&page).ok_or_else(|| Error("no csrf field on the consent page".into()))?;
        let mut fields = vec![("csrf".to_string(), token), ("decision".into(), "approve".into())];
        if let Some(payment) = payment {
            let account = payment.debtor.as_str();
            let payee = payment.detail["creditorAccount"]["accountId"]
                .as_str()
                .unwrap_or("");
            if payee.is_empty() || !page.contains(payee) {
                bail!("the consent page does not show the transfer's payee account {payee:?}");
            }
            // RFC 9396 §7: the user enriches the detail with the account it is paid from; the
            // choice is a form control offering the user's own accounts.
            let offered: Vec<(String, String)> = choices(&page)
                .into_iter()
                .filter(|(n, _)| n.contains("debtor") || n.contains("account"))
                .collect();
            let Some((name, _)) = offered.iter().find(|(_, v)| v == account) else {
                bail!(
                    "the consent page does not offer debtor account {account} (offered: {:?})",
                    offered.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>()
                );
            };
            step(&format!(
                "consent page shows the transfer; choosing debtor account {account} of {} offered",
                offered.len()
            ));
            fields.push((name.clone(), account.to_string()));
        } else {
            step("consent page: approving");
        }
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        see_other(&b.post("/consent", &pairs)?)
    }

    /// The redirect's query for `pending`: RFC 9207 `iss` must be the issuer and `state` ours;
    /// then the code exchange (PKCE verifier; an mTLS-bound token over the client's certificate, or
    /// a DPoP-bound one for `dpop`). The token response, or an error with the server's answer.
    pub fn exchange(
        &self,
        client: &Client,
        dpop: Option<&SigningKey>,
        pending: &Pending,
        query: &str,
    ) -> Result<Value> {
        let q = decode_query(query);
        if let Some(err) = q.get("error") {
            bail!(
                "the authorization server answered {err}: {}",
                q.get("error_description").map(String::as_str).unwrap_or("")
            );
        }
        let issuer = self.issuer()?;
        if q.get("iss") != Some(&issuer) {
            bail!(
                "iss {:?} is not the issuer {issuer} (RFC 9207): refused",
                q.get("iss")
            );
        }
        if q.get("state") != Some(&pending.state) {
            bail!("state does not match the request's: refused");
        }
        let code = q.get("code").ok_or_else(|| Error("no code".into()))?;
        let r = self.as_post(
            client,
            dpop,
            None,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &pending.redirect_uri),
                ("code_verifier", &pending.verifier),
            ],
        )?;
        if r.status != 200 {
            bail!("token request refused: {} {}", r.status, r.text());
        }
        r.json()
    }

    /// PAR, sign-in as `user`, consent (choosing `payment`'s debtor account) and code exchange in
    /// one go: the token response.
    #[allow(clippy::too_many_arguments)]
    pub fn authorize(
        &self,
        client: &Client,
        dpop: Option<&SigningKey>,
        user: &str,
        scope: Option<&str>,
        acr: &str,
        payment: Option<&Payment>,
        step: &dyn Fn(&str),
    ) -> Result<Value> {
        let pending = self.par(client, dpop, scope, acr, payment)?;
        let location = self.sign_in(&pending.url, user, payment, step)?;
        let (_, query) = location
            .split_once('?')
            .ok_or_else(|| Error(format!("redirect without a query: {location}")))?;
        self.exchange(client, dpop, &pending, query)
    }

    /// The refresh_token grant (RFC 6749 §6; `scope` may narrow), at the server's mTLS alias or at
    /// `mtls_base`. The token response, or an error with the server's answer.
    pub fn refresh(
        &self,
        client: &Client,
        dpop: Option<&SigningKey>,
        mtls_base: Option<&str>,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<Value> {
        let mut pairs = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        if let Some(s) = scope {
            pairs.push(("scope", s));
        }
        let r = self.as_post(client, dpop, mtls_base, "/token", &pairs)?;
        if r.status != 200 {
            bail!("refresh refused: {} {}", r.status, r.text());
        }
        r.json()
    }

    /// RFC 7009 revocation of an access token by its client.
    pub fn revoke_access_token(&self, client: &Client, dpop: Option<&SigningKey>, token: &str) -> Result<()> {
        let r = self.as_post(
            client,
            dpop,
            None,
            "/revoke",
            &[("token", token), ("token_type_hint", "access_token")],
        )?;
        if r.status != 200 {
            bail!("revocation refused: {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// A connection to Envoy presenting `identity` (none: no client certificate at all).
    pub fn envoy(&self, identity: Option<&Identity>) -> Result<HttpsClient> {
        HttpsClient::new(
            port_of(&self.str("/envoy/url")?)?,
            &self.ca_der,
            identity,
            TlsVersion::Default,
        )
    }

    /// One bank API request through Envoy as a client would send it: the token in the
    /// Authorization header (`Bearer`, or `DPoP` with a fresh proof of `dpop` for Envoy's URL,
    /// RFC 9449 §7.1; a `use_dpop_nonce` answer is retried once), `extra` headers, a JSON body.
    #[allow(clippy::too_many_arguments)]
    pub fn api(
        &self,
        http: &HttpsClient,
        method: &str,
        path: &str,
        token: &str,
        dpop: Option<&SigningKey>,
        data: Option<&str>,
        extra: &[(&str, &str)],
    ) -> std::result::Result<Resp, ClientError> {
        let htu = self.envoy_url(path.split('?').next().unwrap_or(path));
        let mut nonce: Option<String> = None;
        let mut last = None;
        for _ in 0..2 {
            let mut req = Req::new(method, path);
            if let Some(k) = dpop {
                let proof = k
                    .dpop_proof(
                        method,
                        &htu,
                        Some(token),
                        unix_now(),
                        &random_id(),
                        nonce.as_deref(),
                    )
                    .map_err(|e| ClientError::Io(format!("DPoP proof: {e:?}")))?;
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
            let r = http.send(&req)?;
            let wants_nonce = dpop.is_some()
                && r.status == 401
                && r.header("www-authenticate")
                    .is_some_and(|c| c.contains("use_dpop_nonce"));
            match (wants_nonce, r.header("dpop-nonce").map(str::to_string), &nonce) {
                (true, Some(n), None) => {
                    nonce = Some(n);
                    last = Some(r);
                }
                _ => return Ok(r),
            }
        }
        last.ok_or_else(|| ClientError::Io("no response".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_payment_is_the_contracts_detail() {
        let p = Payment::demo("taro-1");
        let asked: Value = serde_json::from_str(&p.request_parameter()).unwrap_or_default();
        assert_eq!(
            asked,
            json!([{"type": "payment_initiation",
                    "instructedAmount": {"currency": "JPY", "amount": "5000"},
                    "creditorName": "Hanako Yamada",
                    "creditorAccount": {"accountId": "hanako-1"},
                    "remittanceInformationUnstructured": "dinner"}])
        );
        // The client never names the debtor account: the user chooses it at consent.
        assert!(asked[0].get("debtorAccount").is_none());
        assert_eq!(p.debtor, "taro-1");
    }

    #[test]
    fn the_transfer_body_is_the_granted_detail() {
        let mut granted = Payment::demo("taro-1").detail;
        granted["debtorAccount"] = json!({"accountId": "taro-2"});
        assert_eq!(
            transfer_body_for(&granted).ok(),
            Some(
                json!({"from_account": "taro-2", "to_account": "hanako-1", "amount": 5000,
                        "currency": "JPY", "reference": "dinner"})
            )
        );
        // Without the debtor account (not granted yet) or with a fractional amount: no body.
        assert!(transfer_body_for(&Payment::demo("taro-1").detail).is_err());
        granted["instructedAmount"]["amount"] = json!("5000.5");
        assert!(transfer_body_for(&granted).is_err());
    }

    #[test]
    fn granted_details_come_from_the_token_response_else_the_access_token() {
        let mut granted = Payment::demo("taro-1").detail;
        granted["debtorAccount"] = json!({"accountId": "taro-1"});
        let other = json!({"type": "account_information"});
        let response = json!({"authorization_details": [other.clone(), granted.clone()]});
        assert_eq!(granted_payments(&response), vec![granted.clone()]);
        let claims = b64::encode(json!({"authorization_details": [granted.clone()]}).to_string());
        let response = json!({"access_token": format!("e30.{claims}.sig")});
        assert_eq!(granted_payments(&response), vec![granted]);
        assert!(granted_payments(&json!({"access_token": "e30.e30.sig"})).is_empty());
    }

    #[test]
    fn choices_reads_selects_and_radio_buttons() {
        let page = r#"<form><input type="hidden" name="csrf" value="x">
            <select name="debtor_account"><option value="taro-1">普通 taro-1</option>
            <option value="taro-2" selected>taro-2</option></select>
            <input type="radio" name="debtor_account_1" value="taro-1">
            <input type="text" name="note" value="n"></form>
            <option value="stray">"#;
        assert_eq!(
            choices(page),
            vec![
                ("debtor_account".to_string(), "taro-1".to_string()),
                ("debtor_account".into(), "taro-2".into()),
                ("debtor_account_1".into(), "taro-1".into()),
            ]
        );
    }
}
