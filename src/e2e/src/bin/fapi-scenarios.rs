//! `fapi-scenarios`: the scenario suite of issue 5, run against a running stack described by its
//! `endpoints.json` (native: `test-harness/up`; compose: the same file with the published ports).
//! `test-harness/scenarios` starts the stack when needed, runs this, and stops what it started.
//!
//! A fintech completes the FAPI 2.0 flows and calls the bank API through Envoy (fapi-guard plugin,
//! policies/open-banking-jp.yaml) with an mTLS-bound and a DPoP-bound token, and asks for one
//! transfer as an RFC 9396 `payment_initiation` authorization detail (issue 13: the policy admits a
//! `POST /transfers` only when its body is a transfer the user consented to, once); then the attacks, each
//! refused with the status and error of RFC 6750 §3.1 / RFC 9449 §7.1 / RFC 9470 §3 / RFC 9396 §9.1
//! (`insufficient_authorization_details`, docs/policy.md), the plugin's
//! reason checked on Envoy's admin `/stats` (`wasmcustom.fapi_guard.denied.<reason>`), an
//! `x-fapi-interaction-id` on the answer, and, where money could move, the four demo balances read
//! before and after. Each scenario names the FISC API checklist item (36–42, see
//! docs/fisc-checklist.md) and the FAPI clause it covers; the suite prints a table and exits 1 when
//! a scenario failed.
//!
//! The expired token: the authorization server issues 300 s tokens and the policy allows 60 s of
//! clock skew (`leeway_past`), so waiting for a real token would take six minutes. The suite gets
//! one from a second instance of the stack's own `fapi-as` (same configuration, keys and database;
//! its own ports; `FAPI_AS_TOKENS_ACCESS_TOKEN_LIFETIME=1`): a genuine token of the stack's issuer,
//! signed by its current key, that lives one second. It is admitted at once, still admitted just
//! after `exp` (within the leeway), and refused as `token_expired` once the leeway has passed
//! (about 62 s; the other scenarios run meanwhile). Where the suite cannot start `fapi-as` itself
//! (the compose stack), `endpoints.json` may name such an instance as `as.short_lived.mtls_base`.
//!
//! Tokens are never printed.

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{http_get, ClientError, HttpsClient, Req, Resp, TlsVersion};
use fapi_e2e::fapi_as::{as_binary, pct_encode};
use fapi_e2e::fintech::{
    claims_of, error_of, granted_payments, port_of, read_json, transfer_body_for, Client, Payment, Stack,
};
use fapi_e2e::pki::{Identity, TestPki};
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, unix_now, wait_until, workspace_root, ScratchDir};
use fapi_e2e::{bail, Context as _, Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const USAGE: &str = "\
fapi-scenarios: the FAPI scenario suite against a running stack (issue 5)

usage: fapi-scenarios [--endpoints FILE] [--format text|markdown] [--json FILE] [--list]
  --endpoints FILE   the stack's endpoints.json (default: $FAPI_HARNESS_DIR/endpoints.json,
                     else test-harness/run/endpoints.json of the workspace)
  --format F         the table as text (default) or as a Markdown table
  --json FILE        also write the results as JSON
  --list             list the scenarios without running them

Exit code: 0 when every scenario passed, 1 when one failed, 2 when the suite could not start.
test-harness/scenarios starts the native stack when it is not up and runs this.";

/// Demo users and their accounts (fapi-as seed).
const TARO: &str = "taro";
const HANAKO: &str = "hanako";
const ACR_TOTP: &str = "urn:bank:acr:totp";
const ACR_PASSWORD: &str = "urn:bank:acr:password";
/// The authorization server holds a revocation back this long before the feed lists it (fapi-as).
const FEED_SETTLE: u64 = 2;
/// Amount of the test transfers (yen).
const AMOUNT: i64 = 1000;
/// The transfer the user consents to in the RFC 9396 scenarios (yen), taro-1 to hanako-1.
const CONSENTED: i64 = 5_000;
/// What the rogue fintech tries with the same token instead (yen).
const ROGUE_AMOUNT: i64 = 500_000;

/// One row of the table.
struct Scenario {
    id: &'static str,
    title: &'static str,
    fisc: &'static str,
    clause: &'static str,
    expect: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "flow-mtls",
        title: "mTLS client: FAPI flow (PAR, PKCE, private_key_jwt, password + TOTP, consent)",
        fisc: "36",
        clause: "FAPI2 SP 5.3.2.1, 5.3.2.2; RFC 8705 3",
        expect: "token bound to the client certificate (cnf.x5t#S256), acr totp",
    },
    Scenario {
        id: "read-mtls",
        title: "read balances, accounts scope, mTLS-bound token",
        fisc: "36",
        clause: "FAPI2 SP 5.3.4; RFC 8705 3",
        expect: "200, the balance; x-fapi-interaction-id",
    },
    Scenario {
        id: "rar-flow",
        title: "mTLS client asks for one transfer (PAR authorization_details: 5,000 JPY to hanako-1); the consent page shows it, taro picks taro-1 and approves after TOTP",
        fisc: "38",
        clause: "RFC 9396 2, 7, 9.1; FAPI2 SP 5.3.2.2",
        expect: "token response and access token (jti) carry the detail with debtorAccount taro-1",
    },
    Scenario {
        id: "rar-consented-transfer",
        title: "the consented transfer, body exactly as granted (mTLS-bound, TOTP, payments)",
        fisc: "38, 39",
        clause: "RFC 9396 9.1; FAPI2 SP 5.3.4; RFC 9470",
        expect: "201 once; taro-1 -5,000, hanako-1 +5,000, nothing else",
    },
    Scenario {
        id: "rar-other-amount",
        title: "the same token for 500,000 JPY (consented: 5,000)",
        fisc: "38",
        clause: "RFC 9396 9.1 (the resource server checks the details)",
        expect: "403 insufficient_authorization_details (authorization_details_mismatch); nothing moved",
    },
    Scenario {
        id: "rar-other-payee",
        title: "the same token for another payee (hanako-2 instead of hanako-1)",
        fisc: "38",
        clause: "RFC 9396 9.1",
        expect: "403 insufficient_authorization_details (authorization_details_mismatch); nothing moved",
    },
    Scenario {
        id: "rar-other-debtor",
        title: "the same token from another debtor account (taro-2; the user chose taro-1)",
        fisc: "38",
        clause: "RFC 9396 7, 9.1",
        expect: "403 insufficient_authorization_details (authorization_details_mismatch); nothing moved",
    },
    Scenario {
        id: "rar-not-json",
        title: "the same token with a tampered body that is not JSON (form-encoded; truncated JSON)",
        fisc: "38",
        clause: "RFC 9396 9.1 (fail closed)",
        expect: "403 insufficient_authorization_details (body_not_json), both; nothing moved",
    },
    Scenario {
        id: "rar-second-use",
        title: "the consented transfer a second time (a retry with the same Idempotency-Key; a new key)",
        fisc: "38, 40",
        clause: "RFC 9396 9.1 (policy once)",
        expect: "403 insufficient_authorization_details (authorization_details_used), both; money moved once",
    },
    Scenario {
        id: "rar-no-details",
        title: "transfer with a token without authorization_details (payments scope, TOTP, mTLS)",
        fisc: "38",
        clause: "RFC 9396 9.1; RFC 6750 3.1",
        expect: "403 insufficient_authorization_details (authorization_details_missing); nothing moved",
    },
    Scenario {
        id: "flow-dpop",
        title: "DPoP client: FAPI flow (PAR and token with DPoP proofs, server nonce, TOTP)",
        fisc: "36",
        clause: "FAPI2 SP 5.3.2.1; RFC 9449 5, 8, 10",
        expect: "token bound to the DPoP key (cnf.jkt), token_type DPoP",
    },
    Scenario {
        id: "read-dpop",
        title: "read balances, accounts scope, DPoP-bound token",
        fisc: "36",
        clause: "FAPI2 SP 5.3.4; RFC 9449 7.1",
        expect: "200, the balance",
    },
    Scenario {
        id: "transfer-dpop",
        title: "transfer with a DPoP-bound token (policy: transfers need mTLS)",
        fisc: "37",
        clause: "FAPI2 SP 5.3.4 (sender constraint)",
        expect: "REFUSED 401 invalid_token, binding_not_allowed; nothing moved",
    },
    Scenario {
        id: "stolen-token-other-cert",
        title: "stolen mTLS-bound token replayed from another client certificate",
        fisc: "37",
        clause: "RFC 8705 3; FAPI2 SP 5.3.4",
        expect: "401 invalid_token, binding_mismatch; nothing moved",
    },
    Scenario {
        id: "no-certificate",
        title: "bound token sent without a client certificate",
        fisc: "37",
        clause: "RFC 8705 3; FAPI2 SP 5.2.1",
        expect: "TLS handshake refused by Envoy; nothing moved",
    },
    Scenario {
        id: "dpop-proof-replay",
        title: "DPoP proof replayed",
        fisc: "37",
        clause: "RFC 9449 11.1; FAPI2 SP 5.3.4",
        expect: "first use 200, replay 401 invalid_dpop_proof, dpop_replay",
    },
    Scenario {
        id: "expired-token",
        title: "expired token (the stack's issuer, 1 s lifetime)",
        fisc: "40",
        clause: "FAPI2 SP 5.3.4; RFC 9068 4",
        expect: "200 within leeway, then 401 invalid_token, token_expired",
    },
    Scenario {
        id: "revoked-token",
        title: "token revoked at the AS (RFC 7009), then a transfer",
        fisc: "38",
        clause: "FAPI2 SP 5.3.4 (revocation); RFC 7009",
        expect: "401 invalid_token, token_revoked within settle + feed interval (measured); nothing moved",
    },
    Scenario {
        id: "insufficient-scope",
        title: "transfer with an accounts-only token; balances with a payments-only token",
        fisc: "36",
        clause: "RFC 6750 3.1; FAPI2 SP 5.3.4",
        expect: "403 insufficient_scope (both); nothing moved",
    },
    Scenario {
        id: "weak-acr",
        title: "transfer after password-only sign-in (acr_values password)",
        fisc: "39",
        clause: "RFC 9470 3",
        expect: "401 insufficient_user_authentication, acr_not_accepted, acr_values in the challenge; nothing moved",
    },
    Scenario {
        id: "tampered-token",
        title: "tampered token (payload acr password -> totp, signature kept)",
        fisc: "40",
        clause: "RFC 9068 4; RFC 7515 5.2",
        expect: "401 invalid_token, signature_invalid; nothing moved",
    },
    Scenario {
        id: "alg-none",
        title: "alg none (unsigned copy of a valid token)",
        fisc: "40",
        clause: "FAPI2 SP 5.4; RFC 8725 3.1",
        expect: "401 invalid_token, algorithm_not_allowed; nothing moved",
    },
    Scenario {
        id: "hs-key-confusion",
        title: "HS256 keyed with the AS public key (key confusion)",
        fisc: "40",
        clause: "FAPI2 SP 5.4; RFC 8725 2.1, 3.1",
        expect: "401 invalid_token, algorithm_not_allowed; nothing moved",
    },
    Scenario {
        id: "forged-xfcc",
        title: "forged x-forwarded-client-cert naming the victim's certificate",
        fisc: "37",
        clause: "RFC 8705 3 (cert from the TLS connection)",
        expect: "header dropped by Envoy: 401 invalid_token, binding_mismatch; nothing moved",
    },
    Scenario {
        id: "token-in-query",
        title: "token in the query string (?access_token=)",
        fisc: "37",
        clause: "FAPI2 SP 5.3.4; RFC 6750 2.3",
        expect: "400 invalid_request, token_in_query; nothing moved",
    },
    Scenario {
        id: "audit-trail",
        title: "every refusal above: interaction id and reason counter",
        fisc: "42",
        clause: "FAPI2 Impl. Advice (x-fapi-interaction-id)",
        expect: "x-fapi-interaction-id on each answer; denied.<reason> counted at Envoy",
    },
];

/// What a scenario gave.
struct Outcome {
    id: &'static str,
    passed: bool,
    detail: String,
    secs: f64,
}

/// The four demo balances, by account id.
type Ledger = BTreeMap<String, i64>;

/// One API call as a client makes it through Envoy: the token (with a fresh DPoP proof when
/// `dpop`), a JSON body and extra headers.
struct Call<'a> {
    method: &'static str,
    path: String,
    token: &'a str,
    dpop: bool,
    body: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl<'a> Call<'a> {
    fn get(path: impl Into<String>, token: &'a str) -> Self {
        Call {
            method: "GET",
            path: path.into(),
            token,
            dpop: false,
            body: None,
            headers: Vec::new(),
        }
    }

    /// `POST /transfers` of `amount` yen with a fresh Idempotency-Key.
    fn transfer(token: &'a str, from: &str, to: &str, amount: i64) -> Self {
        Call {
            method: "POST",
            path: "/transfers".into(),
            token,
            dpop: false,
            body: Some(transfer_body(from, to, amount)),
            headers: vec![("idempotency-key", format!("scn-{}", random_id()))],
        }
    }

    /// `POST /transfers` with `body` as it is (JSON or not) and a fresh Idempotency-Key.
    fn post_transfer(token: &'a str, body: String) -> Self {
        Call {
            method: "POST",
            path: "/transfers".into(),
            token,
            dpop: false,
            body: Some(body),
            headers: vec![("idempotency-key", format!("scn-{}", random_id()))],
        }
    }

    /// The transfer every attack tries: taro-1 to hanako-1, [`AMOUNT`] yen.
    fn taro_to_hanako(token: &'a str) -> Self {
        Call::transfer(token, "taro-1", "hanako-1", AMOUNT)
    }

    /// Sent with the DPoP scheme and a fresh proof of the suite's DPoP key.
    fn dpop(mut self) -> Self {
        self.dpop = true;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

fn transfer_body(from: &str, to: &str, amount: i64) -> String {
    json!({"from_account": from, "to_account": to, "amount": amount,
           "reference": "fapi-scenarios"})
    .to_string()
}

/// A refusal a scenario expects: the HTTP status, the OAuth `error`, and the plugin's reason
/// (its `denied.<reason>` counter at Envoy).
#[derive(Clone, Copy)]
struct Refusal {
    status: u16,
    error: &'static str,
    reason: &'static str,
}

impl Refusal {
    /// 401 `invalid_token` for `reason` (RFC 6750 §3.1).
    const fn invalid_token(reason: &'static str) -> Self {
        Refusal {
            status: 401,
            error: "invalid_token",
            reason,
        }
    }

    /// 403 `insufficient_authorization_details` for `reason` (RFC 9396 §9.1; docs/policy.md).
    const fn details(reason: &'static str) -> Self {
        Refusal {
            status: 403,
            error: "insufficient_authorization_details",
            reason,
        }
    }

    fn counter(&self) -> String {
        format!("denied.{}", self.reason)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("fapi-scenarios: {e}");
            std::process::exit(2);
        }
    }
}

fn run(args: &[String]) -> Result<i32> {
    let mut endpoints: Option<PathBuf> = None;
    let mut format = "text".to_string();
    let mut json_out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| Error(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--endpoints" => endpoints = Some(PathBuf::from(value("--endpoints")?)),
            "--format" => format = value("--format")?,
            "--json" => json_out = Some(PathBuf::from(value("--json")?)),
            "--list" => {
                for s in SCENARIOS {
                    println!("{:<24} FISC {:<6} {}", s.id, s.fisc, s.title);
                }
                return Ok(0);
            }
            "-h" | "--help" | "help" => {
                println!("{USAGE}");
                return Ok(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if format != "text" && format != "markdown" {
        bail!("--format is text or markdown");
    }
    let endpoints = endpoints.unwrap_or_else(|| {
        std::env::var_os("FAPI_HARNESS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("test-harness/run"))
            .join("endpoints.json")
    });
    let started = Instant::now();
    let mut w = World::new(&endpoints)?;
    eprintln!(
        "fapi-scenarios: stack of {} (Envoy {}, issuer {})",
        endpoints.display(),
        w.stack.envoy_url(""),
        w.stack.issuer()?
    );
    let outcomes = w.run_all();
    print_table(&outcomes, &format);
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let took = started.elapsed().as_secs_f64();
    println!(
        "\n{} of {} scenarios passed in {took:.1} s{}",
        outcomes.len() - failed,
        outcomes.len(),
        if failed > 0 { " — FAILED" } else { "" }
    );
    if let Some(path) = json_out {
        let rows: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                let s = scenario(o.id);
                json!({"id": o.id, "scenario": s.title, "fisc_item": s.fisc, "fapi_clause": s.clause,
                       "expectation": s.expect, "passed": o.passed, "observed": o.detail,
                       "seconds": (o.secs * 10.0).round() / 10.0})
            })
            .collect();
        let doc = json!({"endpoints": endpoints.display().to_string(), "seconds": took,
                         "passed": failed == 0, "scenarios": rows});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).ctx("JSON")?)
            .ctx(format!("writing {}", path.display()))?;
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn scenario(id: &str) -> &'static Scenario {
    SCENARIOS.iter().find(|s| s.id == id).unwrap_or(&SCENARIOS[0])
}

/// Word-wraps `text` to `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn print_table(outcomes: &[Outcome], format: &str) {
    if format == "markdown" {
        println!("| # | scenario | FISC item | FAPI clause | expectation | result |");
        println!("|---|---|---|---|---|---|");
        for (i, o) in outcomes.iter().enumerate() {
            let s = scenario(o.id);
            println!(
                "| {} | {} | {} | {} | {} | {}: {} |",
                i + 1,
                s.title,
                s.fisc,
                s.clause,
                s.expect,
                if o.passed { "PASS" } else { "FAIL" },
                o.detail.replace('|', "/")
            );
        }
        return;
    }
    let widths = [3usize, 34, 6, 24, 40, 34];
    let head = ["#", "scenario", "FISC", "FAPI clause", "expectation", "result"];
    let rule: String = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("+");
    let row = |cells: [Vec<String>; 6]| {
        let n = cells.iter().map(Vec::len).max().unwrap_or(1);
        for l in 0..n {
            let line: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!(" {:<w$} ", c.get(l).map(String::as_str).unwrap_or("")))
                .collect();
            println!("{}", line.join("|").trim_end());
        }
    };
    println!();
    row(head.map(|h| vec![h.to_string()]));
    println!("{rule}");
    for (i, o) in outcomes.iter().enumerate() {
        let s = scenario(o.id);
        let result = format!(
            "{} ({:.1} s): {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.secs,
            o.detail
        );
        row([
            vec![(i + 1).to_string()],
            wrap(s.title, widths[1]),
            vec![s.fisc.to_string()],
            wrap(s.clause, widths[3]),
            wrap(s.expect, widths[4]),
            wrap(&result, widths[5]),
        ]);
        println!("{rule}");
    }
}

/// A token response's access token and refresh token.
struct Tokens {
    access: String,
    refresh: String,
}

fn tokens_of(body: &Value) -> Result<Tokens> {
    Ok(Tokens {
        access: body["access_token"]
            .as_str()
            .ok_or_else(|| Error("no access_token in the token response".into()))?
            .to_string(),
        refresh: body["refresh_token"]
            .as_str()
            .ok_or_else(|| Error("no refresh_token in the token response".into()))?
            .to_string(),
    })
}

/// The access token of a token response (a refresh answer has no new refresh token: FAPI 2.0 SP
/// §5.3.2.1, no rotation).
fn access_of(body: &Value) -> Result<String> {
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error("no access_token in the token response".into()))
}

/// The token issued by the short-lived instance, checked at the start and again at the end.
struct Expiring {
    token: String,
    exp: i64,
    notes: Vec<String>,
    started: Instant,
}

struct World {
    stack: Stack,
    scratch: ScratchDir,
    mtls: Client,
    dpop_client: Client,
    /// The DPoP-bound client's proof key (fresh per run).
    dpop_key: SigningKey,
    /// Someone else's client certificate (the thief's).
    attacker: Identity,
    admin_port: u16,
    /// Envoy connections with the mTLS client's, the DPoP client's and the thief's certificate.
    envoy_mtls: HttpsClient,
    envoy_dpop: HttpsClient,
    envoy_attacker: HttpsClient,
    /// taro's mTLS-bound token (TOTP), hanako's DPoP-bound token (TOTP).
    taro: Option<Tokens>,
    hanako: Option<Tokens>,
    expiring: Option<Expiring>,
    expiring_error: Option<String>,
    /// taro's password-only token (weak-acr).
    weak: Option<String>,
    /// taro's token for one transfer (RFC 9396) and the body of that transfer (rar-flow).
    rar: Option<(String, Value)>,
    /// The short-lived instance of fapi-as, when this suite started one.
    short_lived: Option<Process>,
    /// Refusals checked: (scenario, reason, interaction id present).
    refusals: Vec<(&'static str, String)>,
    current: &'static str,
}

impl World {
    fn new(endpoints: &Path) -> Result<World> {
        let stack = Stack::load(endpoints)?;
        let scratch = ScratchDir::new("fapi-scenarios")?;
        let pki = TestPki::generate(scratch.path(), &["attacker"])?;
        let attacker = pki
            .client("attacker")
            .cloned()
            .ok_or_else(|| Error("no attacker certificate".into()))?;
        let mtls = stack.client("mtls")?;
        let dpop_client = stack.client("dpop")?;
        let dpop_key =
            SigningKey::generate(Algorithm::ES256, None).map_err(|e| Error(format!("DPoP key: {e:?}")))?;
        let admin_port = port_of(&stack.str("/envoy/admin")?)?;
        Ok(World {
            envoy_mtls: stack.envoy(Some(&mtls.cert))?,
            envoy_dpop: stack.envoy(Some(&dpop_client.cert))?,
            envoy_attacker: stack.envoy(Some(&attacker))?,
            stack,
            scratch,
            mtls,
            dpop_client,
            dpop_key,
            attacker,
            admin_port,
            taro: None,
            hanako: None,
            expiring: None,
            expiring_error: None,
            weak: None,
            rar: None,
            short_lived: None,
            refusals: Vec::new(),
            current: "",
        })
    }

    fn run_all(&mut self) -> Vec<Outcome> {
        type Step = fn(&mut World) -> Result<String>;
        let steps: &[(&'static str, Step)] = &[
            ("flow-mtls", World::flow_mtls),
            ("flow-dpop", World::flow_dpop),
            ("read-mtls", World::read_mtls),
            ("read-dpop", World::read_dpop),
            ("transfer-dpop", World::transfer_dpop),
            ("stolen-token-other-cert", World::stolen_token),
            ("no-certificate", World::no_certificate),
            ("dpop-proof-replay", World::dpop_replay),
            ("revoked-token", World::revoked),
            // taro's second TOTP sign-in: the scenarios above leave time for the next code.
            ("rar-flow", World::rar_flow),
            // The refusals first, with the token still unused: a refused request must not use up
            // the consent (the consented transfer passes afterwards).
            ("rar-other-amount", World::rar_other_amount),
            ("rar-other-payee", World::rar_other_payee),
            ("rar-other-debtor", World::rar_other_debtor),
            ("rar-not-json", World::rar_not_json),
            ("rar-consented-transfer", World::rar_consented_transfer),
            ("rar-second-use", World::rar_second_use),
            ("rar-no-details", World::rar_no_details),
            ("insufficient-scope", World::insufficient_scope),
            ("weak-acr", World::weak_acr),
            ("tampered-token", World::tampered),
            ("alg-none", World::alg_none),
            ("hs-key-confusion", World::hs_confusion),
            ("forged-xfcc", World::forged_xfcc),
            ("token-in-query", World::token_in_query),
            ("expired-token", World::expired_finish),
            ("audit-trail", World::audit_trail),
        ];
        let mut outcomes = Vec::new();
        for (id, step) in steps {
            self.current = id;
            let t = Instant::now();
            let result = step(self);
            let secs = t.elapsed().as_secs_f64();
            if *id == "flow-dpop" {
                // The expired-token scenario starts right after the flows: its token needs a minute
                // to expire, which the other scenarios use.
                self.current = "expired-token";
                self.expired_start();
            }
            let (passed, detail) = match result {
                Ok(d) => (true, d),
                Err(e) => (false, e.0),
            };
            eprintln!(
                "{} {id} ({secs:.1} s): {detail}",
                if passed { "ok     " } else { "FAILED " }
            );
            outcomes.push(Outcome {
                id,
                passed,
                detail,
                secs,
            });
        }
        // In table order.
        outcomes.sort_by_key(|o| SCENARIOS.iter().position(|s| s.id == o.id));
        outcomes
    }

    // ---- helpers ---------------------------------------------------------------------------------

    /// A plugin counter (`wasmcustom.fapi_guard.<name>` of the wasm plugin, or
    /// `dynamicmodulescustom.fapi_guard.<name>` of the native module) from Envoy's admin `/stats`; 0
    /// when it was never incremented.
    fn stat(&self, name: &str) -> Result<u64> {
        let (status, body) = http_get(
            self.admin_port,
            &format!(
                "/stats?filter=^(wasmcustom|dynamicmodulescustom)\\.fapi_guard\\.{}$",
                name.replace('.', "\\.")
            ),
        )?;
        if status != 200 {
            bail!("Envoy admin /stats answered {status}");
        }
        Ok(body
            .lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(k, _)| k.ends_with(&format!("fapi_guard.{name}")))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0))
    }

    fn token_a(&self) -> Result<&Tokens> {
        self.taro
            .as_ref()
            .ok_or_else(|| Error("no mTLS-bound token: the mTLS flow failed".into()))
    }

    fn token_b(&self) -> Result<&Tokens> {
        self.hanako
            .as_ref()
            .ok_or_else(|| Error("no DPoP-bound token: the DPoP flow failed".into()))
    }

    /// Sends `c` through `http` as a client does (a fresh DPoP proof when the call is DPoP-bound).
    fn call(&self, http: &HttpsClient, c: &Call) -> Result<Resp> {
        let key = if c.dpop { Some(&self.dpop_key) } else { None };
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.stack
            .api(http, c.method, &c.path, c.token, key, c.body.as_deref(), &headers)
            .map_err(|e| Error(format!("{} {}: {e}", c.method, c.path)))
    }

    /// Sends `c` and checks that it is refused as `expected` (see [`World::check_refusal`]).
    fn refused(&mut self, http: &HttpsClient, c: &Call, expected: Refusal) -> Result<Resp> {
        let before = self.stat(&expected.counter())?;
        let r = self.call(http, c)?;
        self.check_refusal(&r, expected, before)?;
        Ok(r)
    }

    /// Like [`World::refused`] for a request built by hand (a replayed proof, a token in the query).
    fn refused_req(&mut self, http: &HttpsClient, req: &Req, expected: Refusal) -> Result<Resp> {
        let before = self.stat(&expected.counter())?;
        // The path may carry a token (token-in-query): only the part before the query is named.
        let path = req.path.split('?').next().unwrap_or("");
        let r = http
            .send(req)
            .map_err(|e| Error(format!("{} {path}: {e}", req.method)))?;
        self.check_refusal(&r, expected, before)?;
        Ok(r)
    }

    /// The refusal's status, `error` in the body, an `x-fapi-interaction-id`, and the plugin's
    /// `denied.<reason>` counter above `before`.
    fn check_refusal(&mut self, r: &Resp, expected: Refusal, before: u64) -> Result<()> {
        let Refusal {
            status,
            error,
            reason,
        } = expected;
        let got = error_of(r);
        if r.status != status || got.as_deref() != Some(error) {
            bail!(
                "expected {status} {error}, got {} {:?} ({})",
                r.status,
                got,
                r.header("www-authenticate").unwrap_or("no WWW-Authenticate")
            );
        }
        if r.header("x-fapi-interaction-id").is_none() {
            bail!("the refusal has no x-fapi-interaction-id");
        }
        let counter = expected.counter();
        wait_until(Duration::from_secs(3), &counter, || match self.stat(&counter) {
            Ok(v) if v > before => Ok(Some(())),
            Ok(v) => Err(format!("{counter} = {v}, was {before}")),
            Err(e) => Err(e.0),
        })
        .map_err(|e| Error(format!("{status} {error}, but the reason was not {counter}: {e}")))?;
        self.refusals.push((self.current, reason.to_string()));
        Ok(())
    }

    /// A transfer attempt through `http` refused as `expected`; the balances are checked unchanged.
    fn refused_transfer(&mut self, http: &HttpsClient, c: &Call, expected: Refusal) -> Result<String> {
        let before = self.ledger()?;
        self.refused(http, c, expected)?;
        self.unmoved(&before)
    }

    fn balance_with(&self, http: &HttpsClient, token: &str, dpop: bool, account: &str) -> Result<i64> {
        let mut c = Call::get(format!("/accounts/{account}/balances"), token);
        c.dpop = dpop;
        let r = self.call(http, &c)?;
        if r.status != 200 {
            bail!("reading the balance of {account}: {} {}", r.status, r.text());
        }
        r.json()?["balance"]
            .as_i64()
            .ok_or_else(|| Error(format!("no balance for {account}")))
    }

    /// The four demo balances: taro's with taro's token, hanako's with hanako's.
    fn ledger(&self) -> Result<Ledger> {
        let a = self.token_a()?;
        let b = self.token_b()?;
        let mut l = Ledger::new();
        for acc in ["taro-1", "taro-2"] {
            l.insert(
                acc.into(),
                self.balance_with(&self.envoy_mtls, &a.access, false, acc)?,
            );
        }
        for acc in ["hanako-1", "hanako-2"] {
            l.insert(
                acc.into(),
                self.balance_with(&self.envoy_dpop, &b.access, true, acc)?,
            );
        }
        Ok(l)
    }

    fn unmoved(&self, before: &Ledger) -> Result<String> {
        let after = self.ledger()?;
        if &after != before {
            bail!("MONEY MOVED: before {before:?}, after {after:?}");
        }
        Ok("balances unchanged".into())
    }

    fn step(what: &str) {
        eprintln!("        {what}");
    }

    // ---- flows and calls -------------------------------------------------------------------------

    fn flow_mtls(&mut self) -> Result<String> {
        let body = self
            .stack
            .authorize(&self.mtls, None, TARO, None, ACR_TOTP, None, &World::step)?;
        let t = tokens_of(&body)?;
        let c = claims_of(&t.access)?;
        let x5t = self.mtls.cert.x5t_s256();
        if body["token_type"] != "Bearer" || c["cnf"]["x5t#S256"] != json!(x5t) {
            bail!(
                "token_type {} and cnf {} do not bind the token to the client certificate",
                body["token_type"],
                c["cnf"]
            );
        }
        if c["acr"] != ACR_TOTP {
            bail!("acr {} is not {ACR_TOTP}", c["acr"]);
        }
        self.taro = Some(t);
        Ok(format!(
            "sub {}, scope \"{}\", acr totp, cnf.x5t#S256 = the certificate's, expires in {} s",
            c["sub"].as_str().unwrap_or("?"),
            c["scope"].as_str().unwrap_or(""),
            body["expires_in"]
        ))
    }

    fn flow_dpop(&mut self) -> Result<String> {
        let body = self.stack.authorize(
            &self.dpop_client,
            Some(&self.dpop_key),
            HANAKO,
            None,
            ACR_TOTP,
            None,
            &World::step,
        )?;
        let t = tokens_of(&body)?;
        let c = claims_of(&t.access)?;
        if body["token_type"] != "DPoP" || c["cnf"]["jkt"] != json!(self.dpop_key.thumbprint()) {
            bail!(
                "token_type {} and cnf {} do not bind the token to the DPoP key",
                body["token_type"],
                c["cnf"]
            );
        }
        self.hanako = Some(t);
        Ok(format!(
            "sub {}, acr {}, cnf.jkt = our key's RFC 7638 thumbprint",
            c["sub"].as_str().unwrap_or("?"),
            c["acr"].as_str().unwrap_or("?")
        ))
    }

    fn read_mtls(&mut self) -> Result<String> {
        let a = self.token_a()?;
        let r = self.call(
            &self.envoy_mtls,
            &Call::get("/accounts/taro-1/balances", &a.access),
        )?;
        if r.status != 200 || r.header("x-fapi-interaction-id").is_none() {
            bail!(
                "{} {} (interaction id: {:?})",
                r.status,
                r.text(),
                r.header("x-fapi-interaction-id")
            );
        }
        let b = r.json()?;
        Ok(format!(
            "200, taro-1 balance {} {}",
            b["balance"],
            b["currency"].as_str().unwrap_or("")
        ))
    }

    fn read_dpop(&mut self) -> Result<String> {
        let b = self.token_b()?;
        let balances = Call::get("/accounts/hanako-1/balances", &b.access);
        let r = self.call(&self.envoy_dpop, &balances.dpop())?;
        if r.status != 200 {
            bail!("{} {}", r.status, r.text());
        }
        let v = r.json()?;
        // The same token without its proof is refused: the binding is enforced, not decorative.
        let plain = self.call(
            &self.envoy_dpop,
            &Call::get("/accounts/hanako-1/balances", &b.access),
        )?;
        if plain.status != 401 {
            bail!(
                "the DPoP-bound token as a bearer token: {} (expected 401)",
                plain.status
            );
        }
        Ok(format!(
            "200, hanako-1 balance {} {} (as a bearer token without proof: 401)",
            v["balance"],
            v["currency"].as_str().unwrap_or("")
        ))
    }

    fn transfer_dpop(&mut self) -> Result<String> {
        let before = self.ledger()?;
        let b = self.token_b()?.access.clone();
        let envoy = self.envoy_dpop.clone();
        let transfer = Call::transfer(&b, "hanako-1", "taro-1", AMOUNT).dpop();
        self.refused(&envoy, &transfer, Refusal::invalid_token("binding_not_allowed"))?;
        Ok(format!(
            "401 invalid_token (binding_not_allowed): the policy allows transfers with mTLS-bound tokens only; {}",
            self.unmoved(&before)?
        ))
    }

    // ---- one consented transfer (RFC 9396, issue 13) ---------------------------------------------

    /// The RFC 9396 token and the body of the transfer it was granted for.
    fn rar(&self) -> Result<(String, Value)> {
        self.rar
            .clone()
            .ok_or_else(|| Error("no transfer token: rar-flow failed".into()))
    }

    /// The consented body with `pointer` set to `value`.
    fn rar_body_with(&self, pointer: &str, value: Value) -> Result<(String, String)> {
        let (token, mut body) = self.rar()?;
        let slot = body
            .pointer_mut(pointer)
            .ok_or_else(|| Error(format!("the transfer body has no {pointer}")))?;
        *slot = value;
        Ok((token, body.to_string()))
    }

    /// The Idempotency-Key of the consented transfer (a retry sends it again).
    fn rar_key(token: &str) -> Result<String> {
        Ok(format!(
            "scn-consented-{}",
            claims_of(token)?["jti"].as_str().unwrap_or("")
        ))
    }

    /// `body` posted with the transfer token: refused as `reason` with 403
    /// insufficient_authorization_details and its challenge; the balances are checked unchanged.
    fn rar_refused(&mut self, token: &str, body: String, reason: &'static str) -> Result<String> {
        let envoy = self.envoy_mtls.clone();
        let before = self.ledger()?;
        let r = self.refused(
            &envoy,
            &Call::post_transfer(token, body),
            Refusal::details(reason),
        )?;
        let challenge = r.header("www-authenticate").unwrap_or("");
        if !challenge.contains("error=\"insufficient_authorization_details\"") {
            bail!("the challenge is not insufficient_authorization_details: {challenge}");
        }
        Ok(format!(
            "403 insufficient_authorization_details ({reason}), challenge {}; {}",
            challenge.split_whitespace().next().unwrap_or("?"),
            self.unmoved(&before)?
        ))
    }

    fn rar_flow(&mut self) -> Result<String> {
        let payment = Payment::new(CONSENTED, "hanako-1", "Hanako Yamada", "fapi-scenarios", "taro-1");
        let body = self.stack.authorize(
            &self.mtls,
            None,
            TARO,
            None,
            ACR_TOTP,
            Some(&payment),
            &World::step,
        )?;
        let access = access_of(&body)?;
        let claims = claims_of(&access)?;
        let mut expected = payment.detail.clone();
        expected["debtorAccount"] = json!({"accountId": "taro-1"});
        // RFC 9396 §7: the token response carries what was granted; §9.1: so does the JWT access
        // token, whose jti keys the policy's `once`.
        if body["authorization_details"] != json!([expected]) {
            bail!(
                "token response authorization_details {} (expected [{expected}])",
                body["authorization_details"]
            );
        }
        if claims["authorization_details"] != json!([expected]) {
            bail!(
                "access token authorization_details {}",
                claims["authorization_details"]
            );
        }
        if !claims["jti"].is_string() || claims["acr"] != ACR_TOTP {
            bail!("access token jti {} acr {}", claims["jti"], claims["acr"]);
        }
        let granted = granted_payments(&body);
        let transfer = transfer_body_for(granted.first().unwrap_or(&Value::Null))?;
        self.rar = Some((access, transfer.clone()));
        Ok(format!(
            "consent page showed hanako-1 and offered taro's accounts; token response and access token: [{}]; the transfer body: {transfer}",
            "payment_initiation 5000 JPY hanako-1, debtorAccount taro-1"
        ))
    }

    fn rar_other_amount(&mut self) -> Result<String> {
        let (token, body) = self.rar_body_with("/amount", json!(ROGUE_AMOUNT))?;
        self.rar_refused(&token, body, "authorization_details_mismatch")
    }

    fn rar_other_payee(&mut self) -> Result<String> {
        let (token, body) = self.rar_body_with("/to_account", json!("hanako-2"))?;
        self.rar_refused(&token, body, "authorization_details_mismatch")
    }

    fn rar_other_debtor(&mut self) -> Result<String> {
        let (token, body) = self.rar_body_with("/from_account", json!("taro-2"))?;
        self.rar_refused(&token, body, "authorization_details_mismatch")
    }

    fn rar_not_json(&mut self) -> Result<String> {
        let (token, body) = self.rar()?;
        // The same fields form-encoded (a body a JSON parser never sees as this transfer), and the
        // consented JSON cut short (sent as application/json, as every call here).
        let form = format!(
            "from_account={}&to_account={}&amount={}&currency=JPY",
            body["from_account"].as_str().unwrap_or(""),
            body["to_account"].as_str().unwrap_or(""),
            body["amount"]
        );
        let text = body.to_string();
        let cut = text.strip_suffix('}').unwrap_or(&text).to_string();
        let a = self.rar_refused(&token, form, "body_not_json")?;
        let b = self.rar_refused(&token, cut, "body_not_json")?;
        Ok(format!("form-encoded: {a}; truncated JSON: {b}"))
    }

    fn rar_consented_transfer(&mut self) -> Result<String> {
        let (token, body) = self.rar()?;
        let before = self.ledger()?;
        let mut consented = Call::post_transfer(&token, body.to_string());
        consented.headers = vec![("idempotency-key", World::rar_key(&token)?)];
        let r = self.call(&self.envoy_mtls, &consented)?;
        if r.status != 201 {
            bail!(
                "{} {} ({})",
                r.status,
                r.text(),
                r.header("www-authenticate").unwrap_or("")
            );
        }
        let t = r.json()?;
        let after = self.ledger()?;
        let moved = |acc: &str| after.get(acc).copied().unwrap_or(0) - before.get(acc).copied().unwrap_or(0);
        let expected = [
            ("taro-1", -CONSENTED),
            ("taro-2", 0),
            ("hanako-1", CONSENTED),
            ("hanako-2", 0),
        ];
        if expected.iter().any(|(acc, m)| moved(acc) != *m) {
            bail!(
                "money moved {before:?} -> {after:?} (expected taro-1 -{CONSENTED}, hanako-1 +{CONSENTED})"
            );
        }
        if t["amount"] != CONSENTED || t["from_account"] != "taro-1" || t["to_account"] != "hanako-1" {
            bail!("the bank booked {t}");
        }
        Ok(format!(
            "201 {}: taro-1 -{CONSENTED}, hanako-1 +{CONSENTED}, taro-2 and hanako-2 unchanged",
            t["transfer_id"].as_str().unwrap_or("?")
        ))
    }

    fn rar_second_use(&mut self) -> Result<String> {
        let (token, body) = self.rar()?;
        // A client's retry (same Idempotency-Key, same body): the plugin has admitted this detail
        // once already, so even the bank's idempotent replay is not reached.
        let envoy = self.envoy_mtls.clone();
        let mut retry = Call::post_transfer(&token, body.to_string());
        retry.headers = vec![("idempotency-key", World::rar_key(&token)?)];
        let before = self.ledger()?;
        let used = Refusal::details("authorization_details_used");
        self.refused(&envoy, &retry, used)?;
        self.refused(&envoy, &Call::post_transfer(&token, body.to_string()), used)?;
        Ok(format!(
            "retry with the same Idempotency-Key and a new key: 403 insufficient_authorization_details (authorization_details_used); {}",
            self.unmoved(&before)?
        ))
    }

    fn rar_no_details(&mut self) -> Result<String> {
        let a = self.token_a()?.access.clone();
        let (_, body) = self.rar()?;
        if !claims_of(&a)?["authorization_details"].is_null() {
            bail!("taro's first token carries authorization_details");
        }
        let d = self.rar_refused(&a, body.to_string(), "authorization_details_missing")?;
        Ok(format!("the consented body with taro's token of the mTLS flow (scope payments, acr totp, no details): {d}"))
    }

    // ---- attacks ---------------------------------------------------------------------------------

    fn stolen_token(&mut self) -> Result<String> {
        let a = self.token_a()?.access.clone();
        let thief = self.envoy_attacker.clone();
        let unmoved = self.refused_transfer(
            &thief,
            &Call::taro_to_hanako(&a),
            Refusal::invalid_token("binding_mismatch"),
        )?;
        Ok(format!(
            "401 invalid_token (binding_mismatch) for the thief's certificate {}…; {unmoved}",
            &self.attacker.x5t_s256()[..8],
        ))
    }

    fn no_certificate(&mut self) -> Result<String> {
        let before = self.ledger()?;
        let a = self.token_a()?.access.clone();
        let port = port_of(&self.stack.envoy_url(""))?;
        let attempt = |tls: TlsVersion| -> Result<std::result::Result<Resp, ClientError>> {
            let bare = HttpsClient::new(port, &self.stack.ca_der, None, tls)?;
            let c = Call::taro_to_hanako(&a);
            let key = [("idempotency-key", c.headers[0].1.as_str())];
            Ok(self
                .stack
                .api(&bare, c.method, &c.path, &a, None, c.body.as_deref(), &key))
        };
        // TLS 1.2: Envoy checks the certificate inside the handshake and fails it.
        let tls12 = match attempt(TlsVersion::Tls12Only)? {
            Err(ClientError::Handshake(e)) => e.chars().take(70).collect::<String>(),
            Err(e) => bail!("TLS 1.2 without a certificate: expected a failed handshake, got {e}"),
            Ok(r) => bail!(
                "TLS 1.2: Envoy answered HTTP {} without a client certificate",
                r.status
            ),
        };
        // TLS 1.3: the client finishes its side first; Envoy's verdict (an alert, or closing the
        // connection) comes before any HTTP answer.
        let tls13 = match attempt(TlsVersion::Default)? {
            Err(e @ (ClientError::Handshake(_) | ClientError::TlsAfterHandshake(_) | ClientError::Io(_))) => {
                e.to_string().chars().take(60).collect::<String>()
            }
            Err(e) => bail!("TLS 1.3 without a certificate: {e}"),
            Ok(r) => bail!(
                "TLS 1.3: Envoy answered HTTP {} without a client certificate",
                r.status
            ),
        };
        Ok(format!(
            "TLS 1.2 handshake failed ({tls12}); TLS 1.3: connection closed before any HTTP answer ({tls13}); {}",
            self.unmoved(&before)?
        ))
    }

    fn dpop_replay(&mut self) -> Result<String> {
        let b = self.token_b()?.access.clone();
        let path = "/accounts/hanako-1/balances";
        let proof = self
            .dpop_key
            .dpop_proof(
                "GET",
                &self.stack.envoy_url(path),
                Some(&b),
                unix_now(),
                &random_id(),
                None,
            )
            .map_err(|e| Error(format!("DPoP proof: {e:?}")))?;
        let req = Req::get(path)
            .header("authorization", &format!("DPoP {b}"))
            .header("dpop", &proof);
        let first = self
            .envoy_dpop
            .send(&req)
            .map_err(|e| Error(format!("GET {path}: {e}")))?;
        if first.status != 200 {
            bail!(
                "the proof's first use: {} {:?}",
                first.status,
                first.header("www-authenticate")
            );
        }
        let envoy = self.envoy_dpop.clone();
        let replay = Refusal {
            status: 401,
            error: "invalid_dpop_proof",
            reason: "dpop_replay",
        };
        self.refused_req(&envoy, &req, replay)?;
        Ok("first use 200; the same proof again: 401 invalid_dpop_proof (dpop_replay)".into())
    }

    /// The policy's revocation feed interval (settings.revocation_feed.interval), 5 s if the
    /// policy file cannot be read here.
    fn feed_interval(&self) -> u64 {
        self.policy()
            .and_then(|p| {
                p.pointer("/settings/revocation_feed/interval")
                    .and_then(Value::as_u64)
            })
            .unwrap_or(5)
    }

    fn policy(&self) -> Option<Value> {
        self.stack
            .str("/envoy/policy")
            .ok()
            .and_then(|p| read_json(Path::new(&p)).ok())
    }

    fn revoked(&mut self) -> Result<String> {
        let before = self.ledger()?;
        let refresh = self.token_a()?.refresh.clone();
        let r = access_of(&self.stack.refresh(&self.mtls, None, None, &refresh, None)?)?;
        // A read as the probe (the revoked list is consulted for every token): nothing can move
        // while we poll.
        let envoy = self.envoy_mtls.clone();
        let probe = |w: &World| -> Result<u16> {
            let resp = w.call(&envoy, &Call::get("/accounts/taro-1/balances", &r))?;
            match (resp.status, error_of(&resp).as_deref()) {
                (200, _) => Ok(200),
                (401, Some("invalid_token")) => Ok(401),
                (s, e) => bail!("unexpected answer to the probe: {s} {e:?}"),
            }
        };
        if probe(self)? != 200 {
            bail!("the fresh token was refused before its revocation");
        }
        self.stack.revoke_access_token(&self.mtls, None, &r)?;
        let revoked_at = Instant::now();
        let interval = self.feed_interval();
        let bound = Duration::from_secs(FEED_SETTLE + interval + 3);
        let took = loop {
            if probe(self)? == 401 {
                break revoked_at.elapsed();
            }
            if revoked_at.elapsed() > bound + Duration::from_secs(10) {
                bail!("still admitted {:.1?} after the revocation", revoked_at.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if took > bound {
            bail!("refused only {took:.1?} after the revocation (bound {bound:?})");
        }
        let revoked = Refusal::invalid_token("token_revoked");
        self.refused(&envoy, &Call::taro_to_hanako(&r), revoked)?;
        // Reads are `revocation: none` (they do not depend on a current feed), but the list of
        // revoked jti values is consulted for every token (docs/policy.md, revocation).
        self.refused(&envoy, &Call::get("/accounts/taro-1/balances", &r), revoked)?;
        Ok(format!(
            "refused {:.1} s after /revoke (bound {} s = settle {FEED_SETTLE} + feed interval {interval} + 3); transfer and balances: 401 invalid_token (token_revoked); {}",
            took.as_secs_f64(),
            bound.as_secs(),
            self.unmoved(&before)?
        ))
    }

    fn insufficient_scope(&mut self) -> Result<String> {
        let before = self.ledger()?;
        let refresh = self.token_a()?.refresh.clone();
        let accounts_only =
            access_of(
                &self
                    .stack
                    .refresh(&self.mtls, None, None, &refresh, Some("accounts"))?,
            )?;
        let payments_only =
            access_of(
                &self
                    .stack
                    .refresh(&self.mtls, None, None, &refresh, Some("payments"))?,
            )?;
        let envoy = self.envoy_mtls.clone();
        let insufficient = Refusal {
            status: 403,
            error: "insufficient_scope",
            reason: "insufficient_scope",
        };
        let r = self.refused(&envoy, &Call::taro_to_hanako(&accounts_only), insufficient)?;
        let challenge = r.header("www-authenticate").unwrap_or("").to_string();
        if !challenge.contains("scope=\"payments\"") {
            bail!("the challenge does not name the scope needed: {challenge}");
        }
        let balances = Call::get("/accounts/taro-1/balances", &payments_only);
        self.refused(&envoy, &balances, insufficient)?;
        Ok(format!(
            "transfer with scope accounts: 403 insufficient_scope, scope=\"payments\" in the challenge; balances with scope payments: 403; {}",
            self.unmoved(&before)?
        ))
    }

    /// taro's password-only token (acr_values password: no TOTP step).
    fn weak_token(&self) -> Result<String> {
        let body = self
            .stack
            .authorize(&self.mtls, None, TARO, None, ACR_PASSWORD, None, &World::step)?;
        let t = tokens_of(&body)?;
        let acr = claims_of(&t.access)?["acr"].clone();
        if acr != ACR_PASSWORD {
            bail!("acr {acr} after a password-only sign-in");
        }
        Ok(t.access)
    }

    fn weak_acr(&mut self) -> Result<String> {
        let before = self.ledger()?;
        let weak = self.weak_token()?;
        let envoy = self.envoy_mtls.clone();
        let weak_acr = Refusal {
            status: 401,
            error: "insufficient_user_authentication",
            reason: "acr_not_accepted",
        };
        let r = self.refused(&envoy, &Call::taro_to_hanako(&weak), weak_acr)?;
        let challenge = r.header("www-authenticate").unwrap_or("");
        if !challenge.contains("acr_values=") {
            bail!("no acr_values in the challenge (RFC 9470 §3): {challenge}");
        }
        // The same token reads balances: only the transfer needs the stronger sign-in.
        let read = self.call(&envoy, &Call::get("/accounts/taro-1/balances", &weak))?;
        if read.status != 200 {
            bail!("the password-only token cannot read balances: {}", read.status);
        }
        self.weak = Some(weak);
        Ok(format!(
            "acr password: transfer 401 insufficient_user_authentication (acr_not_accepted), challenge asks acr_values totp/passkey; balances 200; {}",
            self.unmoved(&before)?
        ))
    }
}

/// The header and payload of a JWT, decoded.
fn parts_of(jwt: &str) -> Result<(Value, Value)> {
    let mut it = jwt.split('.');
    let mut part = |what: &str| -> Result<Value> {
        let p = it.next().ok_or_else(|| Error(format!("no JWT {what}")))?;
        let bytes = b64::decode(p).ok_or_else(|| Error(format!("JWT {what} is not base64url")))?;
        serde_json::from_slice(&bytes).ctx(format!("JWT {what}"))
    };
    Ok((part("header")?, part("payload")?))
}

impl World {
    /// A transfer attempt with a crafted token over the mTLS client's own connection (the holder of
    /// the certificate the token names), refused with `status`/`error`/`reason`; nothing moves.
    fn crafted_transfer(&mut self, token: &str, expected: Refusal) -> Result<String> {
        let envoy = self.envoy_mtls.clone();
        let unmoved = self.refused_transfer(&envoy, &Call::taro_to_hanako(token), expected)?;
        let Refusal {
            status,
            error,
            reason,
        } = expected;
        Ok(format!("{status} {error} ({reason}); {unmoved}"))
    }

    fn tampered(&mut self) -> Result<String> {
        let weak = match &self.weak {
            Some(t) => t.clone(),
            None => self.weak_token()?,
        };
        let mut segments: Vec<String> = weak.split('.').map(str::to_string).collect();
        let (_, mut claims) = parts_of(&weak)?;
        claims["acr"] = json!(ACR_TOTP);
        claims["amr"] = json!(["pwd", "otp"]);
        segments[1] = b64::encode(claims.to_string());
        let forged = segments.join(".");
        let d = self.crafted_transfer(&forged, Refusal::invalid_token("signature_invalid"))?;
        Ok(format!("password-only token with acr rewritten to totp: {d}"))
    }

    fn alg_none(&mut self) -> Result<String> {
        let a = self.token_a()?.access.clone();
        let (header, claims) = parts_of(&a)?;
        let h = json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]});
        let token = format!(
            "{}.{}.",
            b64::encode(h.to_string()),
            b64::encode(claims.to_string())
        );
        self.crafted_transfer(&token, Refusal::invalid_token("algorithm_not_allowed"))
    }

    fn hs_confusion(&mut self) -> Result<String> {
        let a = self.token_a()?.access.clone();
        let (header, claims) = parts_of(&a)?;
        // The AS's public key as it publishes it: the bytes a confused verifier would use as an HMAC key.
        let issuer = self.stack.issuer()?;
        let http = HttpsClient::new(port_of(&issuer)?, &self.stack.ca_der, None, TlsVersion::Default)?;
        let jwks = http
            .send(&Req::get("/jwks"))
            .map_err(|e| Error(format!("GET /jwks: {e}")))?
            .json()?;
        let key = jwks["keys"]
            .as_array()
            .and_then(|ks| ks.iter().find(|k| k["kid"] == header["kid"]))
            .ok_or_else(|| Error("the token's kid is not in the AS's /jwks".into()))?;
        let secret = key.to_string();
        let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]});
        let input = format!(
            "{}.{}",
            b64::encode(h.to_string()),
            b64::encode(claims.to_string())
        );
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", b64::encode(mac.as_ref()));
        let d = self.crafted_transfer(&token, Refusal::invalid_token("algorithm_not_allowed"))?;
        Ok(format!(
            "HMAC keyed with the published {} key of kid {}: {d}",
            key["kty"].as_str().unwrap_or("?"),
            header["kid"].as_str().unwrap_or("?")
        ))
    }

    fn forged_xfcc(&mut self) -> Result<String> {
        let a = self.token_a()?.access.clone();
        let victim = &self.mtls.cert;
        let pem = std::fs::read_to_string(&victim.cert_pem).ctx("reading the client certificate")?;
        // Envoy's own XFCC format (Hash: hex SHA-256 of the DER; Cert: URL-encoded PEM).
        let xfcc = format!("Hash={};Cert=\"{}\"", victim.sha256_hex(), pct_encode(&pem));
        let thief = self.envoy_attacker.clone();
        let transfer = Call::taro_to_hanako(&a).header("x-forwarded-client-cert", xfcc);
        let unmoved = self.refused_transfer(&thief, &transfer, Refusal::invalid_token("binding_mismatch"))?;
        Ok(format!(
            "thief's connection + XFCC naming the victim's certificate: 401 invalid_token (binding_mismatch); {unmoved}"
        ))
    }

    fn token_in_query(&mut self) -> Result<String> {
        let before = self.ledger()?;
        let a = self.token_a()?.access.clone();
        let req = Req::post(&format!("/transfers?access_token={a}"))
            .header("content-type", "application/json")
            .header("idempotency-key", &format!("scn-{}", random_id()))
            .body(transfer_body("taro-1", "hanako-1", AMOUNT).as_bytes());
        let envoy = self.envoy_mtls.clone();
        let in_query = Refusal {
            status: 400,
            error: "invalid_request",
            reason: "token_in_query",
        };
        self.refused_req(&envoy, &req, in_query)?;
        Ok(format!(
            "400 invalid_request (token_in_query), from the token's own holder; {}",
            self.unmoved(&before)?
        ))
    }

    // ---- the expired token -------------------------------------------------------------------------

    /// The mTLS alias of an authorization server instance that issues 1 s tokens: named by
    /// `endpoints.json` (`as.short_lived.mtls_base`), else started here from the stack's own
    /// configuration (`as.config`) with its own ports.
    fn short_lived_base(&mut self) -> Result<String> {
        if let Ok(base) = self.stack.str("/as/short_lived/mtls_base") {
            return Ok(base);
        }
        let config = self.stack.str("/as/config").map_err(|_| {
            Error("endpoints.json names neither as.short_lived.mtls_base nor as.config".into())
        })?;
        if !Path::new(&config).is_file() {
            bail!("{config} is not readable here and endpoints.json names no as.short_lived.mtls_base");
        }
        let binary = as_binary()?;
        let (https, mtls, http) = (free_port()?, free_port()?, free_port()?);
        let args: Vec<String> = vec![
            "FAPI_AS_TOKENS_ACCESS_TOKEN_LIFETIME=1".into(),
            format!("FAPI_AS_LISTEN_HTTPS=127.0.0.1:{https}"),
            format!("FAPI_AS_LISTEN_MTLS=127.0.0.1:{mtls}"),
            format!("FAPI_AS_LISTEN_HTTP=127.0.0.1:{http}"),
            binary.display().to_string(),
            "-c".into(),
            config,
            "serve".into(),
        ];
        let log = self.scratch.join("fapi-as-short-lived.log");
        let mut p = Process::spawn("fapi-as (1 s tokens)", Path::new("/usr/bin/env"), &args, &log)?;
        let ready = wait_until(Duration::from_secs(30), "the short-lived fapi-as /health", || {
            if let Some(status) = p.exited() {
                return Err(format!("exited ({status})"));
            }
            match http_get(http, "/health") {
                Ok((200, _)) => Ok(Some(())),
                Ok((s, _)) => Err(format!("/health {s}")),
                Err(e) => Err(e.0),
            }
        });
        if let Err(e) = ready {
            bail!("{e}; log:\n{}", p.log());
        }
        self.short_lived = Some(p);
        Ok(format!("https://localhost:{mtls}"))
    }

    /// Right after the flows: a 1 s token of the stack's issuer (refresh at the short-lived
    /// instance), admitted now. [`World::expired_finish`] checks it once the leeway has passed.
    fn expired_start(&mut self) {
        let started = Instant::now();
        let result = (|| -> Result<Expiring> {
            let refresh = self.token_a()?.refresh.clone();
            let base = self.short_lived_base()?;
            let body = self
                .stack
                .refresh(&self.mtls, None, Some(&base), &refresh, Some("accounts"))?;
            let token = access_of(&body)?;
            let c = claims_of(&token)?;
            let (iat, exp) = (c["iat"].as_i64().unwrap_or(0), c["exp"].as_i64().unwrap_or(0));
            if exp - iat != 1 || c["iss"] != json!(self.stack.issuer()?) {
                bail!(
                    "the short-lived instance issued exp - iat = {} for iss {}",
                    exp - iat,
                    c["iss"]
                );
            }
            let r = self.call(&self.envoy_mtls, &Call::get("/accounts/taro-1/balances", &token))?;
            if r.status != 200 {
                bail!(
                    "the fresh 1 s token was refused at once: {} {:?}",
                    r.status,
                    r.header("www-authenticate")
                );
            }
            Ok(Expiring {
                token,
                exp,
                notes: vec![format!(
                    "issued by {} with exp = iat + 1 s: 200 at once",
                    c["iss"].as_str().unwrap_or("?")
                )],
                started,
            })
        })();
        match result {
            Ok(e) => self.expiring = Some(e),
            Err(e) => self.expiring_error = Some(e.0),
        }
        // The instance is no longer needed: its token is out.
        if let Some(mut p) = self.short_lived.take() {
            let _ = p.stop();
        }
    }

    fn expired_finish(&mut self) -> Result<String> {
        if let Some(e) = self.expiring_error.take() {
            bail!("{e}");
        }
        let Some(mut e) = self.expiring.take() else {
            bail!("no short-lived token");
        };
        let leeway = self
            .policy()
            .and_then(|p| p.pointer("/issuers/0/leeway_past").and_then(Value::as_i64))
            .unwrap_or(60);
        let envoy = self.envoy_mtls.clone();
        let path = "/accounts/taro-1/balances";
        // Past exp, within the leeway (clock skew, RFC 9068 §4 / the policy's leeway_past): admitted.
        let now = unix_now();
        if now <= e.exp + leeway - 5 {
            if now <= e.exp {
                std::thread::sleep(Duration::from_secs((e.exp - now + 1) as u64));
            }
            let r = self.call(&envoy, &Call::get(path, &e.token))?;
            if r.status != 200 {
                bail!(
                    "refused {} s after exp, within the leeway of {leeway} s: {}",
                    unix_now() - e.exp,
                    r.status
                );
            }
            e.notes.push(format!(
                "200 at exp + {} s (leeway_past {leeway} s)",
                unix_now() - e.exp
            ));
        }
        let wait = e.exp + leeway + 2 - unix_now();
        if wait > 0 {
            eprintln!("        waiting {wait} s for the 1 s token to pass exp + leeway ({leeway} s)");
            std::thread::sleep(Duration::from_secs(wait as u64));
        }
        self.refused(
            &envoy,
            &Call::get(path, &e.token),
            Refusal::invalid_token("token_expired"),
        )?;
        e.notes.push(format!(
            "401 invalid_token (token_expired) at exp + {} s; {:.0} s in all",
            unix_now() - e.exp,
            e.started.elapsed().as_secs_f64()
        ));
        Ok(e.notes.join("; "))
    }

    fn audit_trail(&mut self) -> Result<String> {
        if self.refusals.is_empty() {
            bail!("no refusal was checked");
        }
        let mut reasons: Vec<&str> = self.refusals.iter().map(|(_, r)| r.as_str()).collect();
        reasons.sort();
        reasons.dedup();
        Ok(format!(
            "{} refusals, each with x-fapi-interaction-id and its denied.<reason> counter at Envoy admin: {}",
            self.refusals.len(),
            reasons.join(", ")
        ))
    }
}
