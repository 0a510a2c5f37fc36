//! The real `fapi-bank` binary on a free port, driven over plain HTTP with the claim headers the
//! fapi-guard plugin would forward. Every call sends its own x-fapi-interaction-id and checks that the
//! answer echoes it.

use fapi_e2e::process::Process;
use fapi_e2e::server::read_chunked;
use fapi_e2e::util::{free_port, wait_until, ScratchDir};
use fapi_e2e::{bail, Context as _, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fapi-bank");
const TARO: &str = "user-taro";
const HANAKO: &str = "user-hanako";
const ALL_ACCOUNTS: [(&str, &str); 4] = [
    (TARO, "taro-1"),
    (TARO, "taro-2"),
    (HANAKO, "hanako-1"),
    (HANAKO, "hanako-2"),
];
const SEEDED_TOTAL: i64 = 2 * (1_250_000 + 3_000_000);

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).ctx(format!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` code of an error answer.
    fn error(&self) -> Result<String> {
        Ok(self.json()?["error"].as_str().unwrap_or("").to_string())
    }
}

/// Claim headers as the plugin forwards them.
#[derive(Clone)]
struct As {
    subject: Option<&'static str>,
    scope: &'static str,
    client_id: &'static str,
}

fn user(subject: &'static str, scope: &'static str) -> As {
    As {
        subject: Some(subject),
        scope,
        client_id: "fintech-app",
    }
}

const NOBODY: As = As {
    subject: None,
    scope: "accounts payments",
    client_id: "fintech-app",
};

struct Bank {
    port: u16,
    db: PathBuf,
    _process: Process,
    _dir: ScratchDir,
}

impl Bank {
    fn start() -> Result<Bank> {
        let dir = ScratchDir::new("bank")?;
        let port = free_port()?;
        let db = dir.join("bank.db");
        let args: Vec<String> = [
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            &db.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = Process::spawn("fapi-bank", Path::new(BIN), &args, &dir.join("bank.log"))?;
        let started = wait_until(Duration::from_secs(20), "fapi-bank /health", || {
            if let Some(status) = process.exited() {
                return Err(format!("exited with {status}: {}", process.log()));
            }
            match raw(port, "GET", "/health", &[], None) {
                Ok(r) if r.status == 200 => Ok(Some(())),
                Ok(r) => Err(format!("status {}", r.status)),
                Err(e) => Err(e.to_string()),
            }
        });
        if let Err(e) = started {
            bail!("{e}\nlog:\n{}", process.log());
        }
        Ok(Bank {
            port,
            db,
            _process: process,
            _dir: dir,
        })
    }

    /// Sends a request with the claim headers of `who` (and `extra` headers) and checks that the
    /// answer echoes a fresh interaction id.
    fn call(
        &self,
        who: &As,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Resp> {
        static N: AtomicU64 = AtomicU64::new(0);
        let interaction = format!(
            "test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut headers = vec![
            ("x-fapi-interaction-id", interaction.as_str()),
            ("x-fapi-scope", who.scope),
            ("x-fapi-client-id", who.client_id),
            ("x-fapi-binding", "mtls"),
            ("x-fapi-acr", "urn:bank:acr:passkey"),
        ];
        if let Some(s) = who.subject {
            headers.push(("x-fapi-subject", s));
        }
        headers.extend_from_slice(extra);
        let r = raw(self.port, method, path, &headers, body)?;
        if r.header("x-fapi-interaction-id") != Some(interaction.as_str()) {
            bail!(
                "{method} {path}: interaction id not echoed: {:?}",
                r.header("x-fapi-interaction-id")
            );
        }
        Ok(r)
    }

    fn get(&self, who: &As, path: &str) -> Result<Resp> {
        self.call(who, "GET", path, &[], None)
    }

    fn transfer(&self, who: &As, key: &str, body: &Value) -> Result<Resp> {
        self.call(
            who,
            "POST",
            "/transfers",
            &[("idempotency-key", key), ("content-type", "application/json")],
            Some(&body.to_string()),
        )
    }

    fn balance(&self, subject: &'static str, account: &str) -> Result<i64> {
        let r = self.get(
            &user(subject, "accounts"),
            &format!("/accounts/{account}/balances"),
        )?;
        if r.status != 200 {
            bail!("balance of {account}: {}", r.status);
        }
        r.json()?["balance"]
            .as_i64()
            .ok_or_else(|| fapi_e2e::Error(format!("no balance for {account}")))
    }

    fn balances(&self) -> Result<Vec<i64>> {
        ALL_ACCOUNTS.iter().map(|(s, a)| self.balance(s, a)).collect()
    }

    fn transactions(&self, subject: &'static str, account: &str) -> Result<Vec<Value>> {
        let r = self.get(
            &user(subject, "accounts"),
            &format!("/accounts/{account}/transactions?limit=500"),
        )?;
        if r.status != 200 {
            bail!("transactions of {account}: {}", r.status);
        }
        Ok(r.json()?["transactions"].as_array().cloned().unwrap_or_default())
    }
}

/// One plain HTTP/1.1 request on its own connection.
fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ctx("connect")?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ctx("timeout")?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ctx("write")?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ctx("status line")?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| fapi_e2e::Error(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ctx("header")? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        read_chunked(&mut r).ctx("chunked body")?
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b).ctx("body")?;
        b
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn transfer_body(from: &str, to: &str, amount: i64) -> Value {
    json!({"from_account": from, "to_account": to, "amount": amount, "reference": "家賃 rent"})
}

#[test]
fn health_is_anonymous_and_interaction_id_is_generated_when_missing() -> Result<()> {
    let bank = Bank::start()?;
    let r = bank.get(&NOBODY, "/health")?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()?["status"], "ok");
    // Without an interaction id, the answer carries a new UUID.
    let r = raw(bank.port, "GET", "/health", &[], None)?;
    let id = r.header("x-fapi-interaction-id").unwrap_or("");
    assert_eq!(id.len(), 36, "{id:?}");
    assert_eq!(&id[14..15], "4");
    Ok(())
}

#[test]
fn requests_without_subject_are_401_and_move_nothing() -> Result<()> {
    let bank = Bank::start()?;
    for path in [
        "/accounts",
        "/accounts/taro-1",
        "/accounts/taro-1/balances",
        "/accounts/taro-1/transactions",
        "/transfers/TR-0000000000000000",
    ] {
        let r = bank.get(&NOBODY, path)?;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.error()?, "missing_subject", "{path}");
    }
    let r = bank.transfer(&NOBODY, "k-401", &transfer_body("taro-1", "hanako-1", 1000))?;
    assert_eq!(r.status, 401);
    assert_eq!(r.error()?, "missing_subject");
    // An empty subject is no subject.
    let r = bank.call(&NOBODY, "GET", "/accounts", &[("x-fapi-subject", "")], None)?;
    assert_eq!(r.status, 401);
    // Two subjects: not what the plugin sends.
    let r = bank.call(
        &user(TARO, "accounts"),
        "GET",
        "/accounts",
        &[("x-fapi-subject", HANAKO)],
        None,
    )?;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()?, "invalid_claim_header");
    assert_eq!(bank.balances()?, [1_250_000, 3_000_000, 1_250_000, 3_000_000]);
    Ok(())
}

#[test]
fn accounts_and_balances_of_the_subject() -> Result<()> {
    let bank = Bank::start()?;
    let r = bank.get(&user(TARO, "openid accounts"), "/accounts")?;
    assert_eq!(r.status, 200);
    let list = r.json()?;
    let ids: Vec<&str> = list["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["account_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["taro-1", "taro-2"]);
    assert_eq!(list["accounts"][0]["account_type"], "ordinary");
    assert_eq!(list["accounts"][0]["account_name"], "普通預金 Ordinary");
    assert_eq!(list["accounts"][1]["account_type"], "savings");
    assert_eq!(list["accounts"][1]["currency"], "JPY");

    let r = bank.get(&user(HANAKO, "accounts"), "/accounts/hanako-2")?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()?["account_name"], "貯蓄預金 Savings");

    let r = bank.get(&user(TARO, "accounts"), "/accounts/taro-1/balances")?;
    assert_eq!(r.status, 200);
    let b = r.json()?;
    assert_eq!(b["account_id"], "taro-1");
    assert_eq!(b["currency"], "JPY");
    assert_eq!(b["balance"], 1_250_000);
    assert_eq!(b["available_balance"], 1_250_000);
    assert!(b["as_of"].as_str().is_some_and(|s| s.ends_with("+09:00")));
    assert_eq!(bank.balances()?, [1_250_000, 3_000_000, 1_250_000, 3_000_000]);
    Ok(())
}

#[test]
fn transactions_are_newest_first_and_limited() -> Result<()> {
    let bank = Bank::start()?;
    let all = bank.transactions(TARO, "taro-1")?;
    assert_eq!(all.len(), 5);
    assert_eq!(all[0]["balance_after"], 1_250_000);
    assert_eq!(all[0]["type"], "debit");
    assert_eq!(all[0]["amount"], 57_600);
    assert_eq!(all[4]["description"], "繰越 Balance brought forward");
    let times: Vec<&str> = all.iter().filter_map(|t| t["booked_at"].as_str()).collect();
    assert_eq!(times.len(), 5);
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // The running balance is consistent: each balance_after is the previous one plus the amount.
    for w in all.windows(2) {
        let signed = |t: &Value| {
            let a = t["amount"].as_i64().unwrap_or(0);
            if t["type"] == "debit" {
                -a
            } else {
                a
            }
        };
        assert_eq!(
            w[1]["balance_after"].as_i64().map(|b| b + signed(&w[0])),
            w[0]["balance_after"].as_i64()
        );
    }
    let savings = bank.transactions(TARO, "taro-2")?;
    assert_eq!(savings[0]["balance_after"], 3_000_000);

    let r = bank.get(&user(TARO, "accounts"), "/accounts/taro-1/transactions?limit=2")?;
    assert_eq!(r.status, 200);
    let two = r.json()?["transactions"].as_array().cloned().unwrap_or_default();
    assert_eq!(two, all[..2]);
    for bad in ["0", "501", "abc", "-1"] {
        let r = bank.get(
            &user(TARO, "accounts"),
            &format!("/accounts/taro-1/transactions?limit={bad}"),
        )?;
        assert_eq!(r.status, 400, "limit={bad}");
        assert_eq!(r.error()?, "invalid_request");
    }
    Ok(())
}

#[test]
fn another_users_account_is_answered_like_a_missing_one() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "accounts payments");
    for path in [
        "/accounts/hanako-1",
        "/accounts/hanako-1/balances",
        "/accounts/hanako-1/transactions",
    ] {
        let theirs = bank.get(&taro, path)?;
        let missing = bank.get(&taro, &path.replace("hanako-1", "nobody-9"))?;
        assert_eq!(theirs.status, 404, "{path}");
        assert_eq!(theirs.error()?, "account_not_found");
        assert_eq!(theirs.body, missing.body, "{path}");
    }
    // Spending from hanako's account as taro: refused, nothing moved.
    let r = bank.transfer(&taro, "k-steal", &transfer_body("hanako-1", "taro-1", 1000))?;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()?, "account_not_found");
    assert_eq!(bank.balances()?, [1_250_000, 3_000_000, 1_250_000, 3_000_000]);
    assert_eq!(bank.transactions(HANAKO, "hanako-1")?.len(), 5);
    Ok(())
}

#[test]
fn a_transfer_moves_money_between_users_and_keeps_the_total() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "accounts payments");
    let r = bank.transfer(&taro, "k-1", &transfer_body("taro-1", "hanako-1", 12_345))?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let t = r.json()?;
    let id = t["transfer_id"].as_str().unwrap_or("").to_string();
    assert!(id.starts_with("TR-"), "{id}");
    assert_eq!(r.header("location"), Some(format!("/transfers/{id}").as_str()));
    assert_eq!(r.header("idempotent-replayed"), None);
    assert_eq!(t["status"], "completed");
    assert_eq!(t["amount"], 12_345);
    assert_eq!(t["currency"], "JPY");
    assert_eq!(t["client_id"], "fintech-app");

    let balances = bank.balances()?;
    assert_eq!(balances, [1_237_655, 3_000_000, 1_262_345, 3_000_000]);
    assert_eq!(balances.iter().sum::<i64>(), SEEDED_TOTAL);

    // Both sides booked, newest first, pointing at the transfer.
    let debit = &bank.transactions(TARO, "taro-1")?[0];
    assert_eq!(debit["type"], "debit");
    assert_eq!(debit["amount"], 12_345);
    assert_eq!(debit["balance_after"], 1_237_655);
    assert_eq!(debit["transfer_id"], id.as_str());
    assert_eq!(debit["counterparty_account"], "hanako-1");
    let credit = &bank.transactions(HANAKO, "hanako-1")?[0];
    assert_eq!(credit["type"], "credit");
    assert_eq!(credit["balance_after"], 1_262_345);
    assert_eq!(credit["transfer_id"], id.as_str());

    // Its status: the initiator sees it with payments or accounts; another user does not.
    for scope in ["payments", "accounts"] {
        let r = bank.get(&user(TARO, scope), &format!("/transfers/{id}"))?;
        assert_eq!(r.status, 200, "{scope}");
        assert_eq!(r.json()?, t);
    }
    let r = bank.get(&user(TARO, "openid"), &format!("/transfers/{id}"))?;
    assert_eq!(r.status, 403);
    let r = bank.get(&user(HANAKO, "accounts"), &format!("/transfers/{id}"))?;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()?, "transfer_not_found");
    let r = bank.get(&taro, "/transfers/TR-0000000000000000")?;
    assert_eq!(r.status, 404);

    // Between the subject's own accounts as well.
    let r = bank.transfer(&taro, "k-2", &transfer_body("taro-2", "taro-1", 1))?;
    assert_eq!(r.status, 201);
    assert_eq!(bank.balances()?, [1_237_656, 2_999_999, 1_262_345, 3_000_000]);
    Ok(())
}

#[test]
fn currency_is_optional_and_only_jpy() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "payments");
    // The body a client with an RFC 9396 payment_initiation detail sends: currency included.
    let with_jpy = json!({"from_account": "taro-1", "to_account": "hanako-1", "amount": 5_000,
        "currency": "JPY", "reference": "dinner"});
    let r = bank.transfer(&taro, "k-jpy", &with_jpy)?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()?["currency"], "JPY");
    assert_eq!(r.json()?["amount"], 5_000);
    assert_eq!(bank.balances()?, [1_245_000, 3_000_000, 1_255_000, 3_000_000]);
    // Without currency the request is the same transfer (JPY is implied): the key replays it.
    let mut without = with_jpy.clone();
    without.as_object_mut().map(|o| o.remove("currency"));
    let r = bank.transfer(&taro, "k-jpy", &without)?;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    assert_eq!(bank.balances()?, [1_245_000, 3_000_000, 1_255_000, 3_000_000]);

    // Any other currency, a lower-case code or a non-string: 400, nothing moves, key not used up.
    for currency in [json!("USD"), json!("jpy"), json!(""), json!(1), json!(null)] {
        let mut body = with_jpy.clone();
        body["currency"] = currency.clone();
        let r = bank.transfer(&taro, "k-cur", &body)?;
        assert_eq!(r.status, 400, "{currency}");
        let expected = if currency.is_string() {
            "unsupported_currency"
        } else {
            "invalid_request"
        };
        assert_eq!(r.error()?, expected, "{currency}");
    }
    assert_eq!(bank.balances()?, [1_245_000, 3_000_000, 1_255_000, 3_000_000]);
    let r = bank.transfer(&taro, "k-cur", &transfer_body("taro-1", "hanako-1", 1))?;
    assert_eq!(r.status, 201);
    Ok(())
}

#[test]
fn an_overdraft_is_refused_and_nothing_moves() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "payments");
    let r = bank.transfer(&taro, "k-over", &transfer_body("taro-1", "hanako-1", 1_250_001))?;
    assert_eq!(r.status, 422);
    assert_eq!(r.error()?, "insufficient_funds");
    assert_eq!(bank.balances()?, [1_250_000, 3_000_000, 1_250_000, 3_000_000]);
    assert_eq!(bank.transactions(TARO, "taro-1")?.len(), 5);
    assert_eq!(bank.transactions(HANAKO, "hanako-1")?.len(), 5);
    // A refusal does not use up the key; the whole balance may go.
    let r = bank.transfer(&taro, "k-over", &transfer_body("taro-1", "hanako-1", 1_250_000))?;
    assert_eq!(r.status, 201);
    assert_eq!(bank.balances()?, [0, 3_000_000, 2_500_000, 3_000_000]);
    let r = bank.transfer(&taro, "k-over-2", &transfer_body("taro-1", "hanako-1", 1))?;
    assert_eq!(r.status, 422);
    assert_eq!(r.error()?, "insufficient_funds");
    Ok(())
}

#[test]
fn the_same_key_and_body_replays_the_first_result_and_moves_money_once() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "payments");
    let body = transfer_body("taro-1", "hanako-2", 50_000);
    let first = bank.transfer(&taro, "key-replay-1", &body)?;
    assert_eq!(first.status, 201);
    let second = bank.transfer(&taro, "key-replay-1", &body)?;
    assert_eq!(second.status, 201);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.json()?, first.json()?);
    // The same request written differently (field order, spacing) is the same request.
    let respelled = r#"{ "reference": "家賃 rent", "amount": 50000,
        "to_account": "hanako-2", "from_account": "taro-1" }"#;
    let third = bank.call(
        &taro,
        "POST",
        "/transfers",
        &[("idempotency-key", "key-replay-1")],
        Some(respelled),
    )?;
    assert_eq!(third.status, 201);
    assert_eq!(third.json()?["transfer_id"], first.json()?["transfer_id"]);
    assert_eq!(bank.balances()?, [1_200_000, 3_000_000, 1_250_000, 3_050_000]);
    assert_eq!(bank.transactions(TARO, "taro-1")?.len(), 6);
    Ok(())
}

#[test]
fn a_key_reused_with_another_body_is_refused() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "payments");
    let r = bank.transfer(&taro, "key-reuse", &transfer_body("taro-1", "hanako-1", 1000))?;
    assert_eq!(r.status, 201);
    for other in [
        transfer_body("taro-1", "hanako-1", 1001),
        transfer_body("taro-1", "hanako-2", 1000),
        transfer_body("taro-2", "hanako-1", 1000),
        json!({"from_account": "taro-1", "to_account": "hanako-1", "amount": 1000, "reference": "other"}),
    ] {
        let r = bank.transfer(&taro, "key-reuse", &other)?;
        assert_eq!(r.status, 422, "{other}");
        assert_eq!(r.error()?, "idempotency_key_reused");
    }
    assert_eq!(bank.balances()?, [1_249_000, 3_000_000, 1_251_000, 3_000_000]);
    // Keys belong to their subject and client: the same key elsewhere is a new transfer.
    let hanako = user(HANAKO, "payments");
    let r = bank.transfer(&hanako, "key-reuse", &transfer_body("hanako-1", "taro-1", 7))?;
    assert_eq!(r.status, 201);
    let other_client = As {
        client_id: "another-app",
        ..taro.clone()
    };
    let r = bank.transfer(
        &other_client,
        "key-reuse",
        &transfer_body("taro-1", "hanako-1", 1001),
    )?;
    assert_eq!(r.status, 201);
    assert_eq!(bank.balances()?, [1_248_006, 3_000_000, 1_251_994, 3_000_000]);
    Ok(())
}

#[test]
fn concurrent_transfers_never_overdraw() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "payments");
    // 1,250,000 covers 12 of 20 transfers of 100,000.
    let results: Vec<Result<Resp>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (bank, taro) = (&bank, &taro);
                let to = if i % 2 == 0 { "hanako-1" } else { "taro-2" };
                s.spawn(move || {
                    bank.transfer(taro, &format!("par-{i}"), &transfer_body("taro-1", to, 100_000))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(fapi_e2e::Error("thread panicked".into())))
            })
            .collect()
    });
    let mut created = 0;
    let mut refused = 0;
    for r in results {
        let r = r?;
        match r.status {
            201 => created += 1,
            422 if r.error()? == "insufficient_funds" => refused += 1,
            other => bail!("unexpected {other}: {}", String::from_utf8_lossy(&r.body)),
        }
    }
    assert_eq!((created, refused), (12, 8));
    let balances = bank.balances()?;
    assert_eq!(balances[0], 50_000);
    assert_eq!(balances.iter().sum::<i64>(), SEEDED_TOTAL);
    // Every booked balance stayed non-negative, and the newest is the balance.
    let history = bank.transactions(TARO, "taro-1")?;
    assert_eq!(history.len(), 5 + 12);
    assert_eq!(history[0]["balance_after"], 50_000);
    assert!(history
        .iter()
        .all(|t| t["balance_after"].as_i64().is_some_and(|b| b >= 0)));
    Ok(())
}

#[test]
fn transfers_need_the_payments_scope_a_key_and_a_valid_body() -> Result<()> {
    let bank = Bank::start()?;
    let taro = user(TARO, "accounts payments");
    // Defence in depth: the plugin checks scopes, and so does the bank.
    let r = bank.transfer(
        &user(TARO, "openid accounts"),
        "k-scope",
        &transfer_body("taro-1", "hanako-1", 1),
    )?;
    assert_eq!(r.status, 403);
    assert_eq!(r.error()?, "insufficient_scope");
    let r = bank.get(&user(TARO, "payments"), "/accounts")?;
    assert_eq!(r.status, 403);
    assert_eq!(r.error()?, "insufficient_scope");
    // `payments` must be a whole scope, not a substring.
    let r = bank.transfer(
        &user(TARO, "payments:read"),
        "k-scope",
        &transfer_body("taro-1", "hanako-1", 1),
    )?;
    assert_eq!(r.status, 403);

    let body = transfer_body("taro-1", "hanako-1", 1).to_string();
    let r = bank.call(&taro, "POST", "/transfers", &[], Some(&body))?;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()?, "idempotency_key_missing");
    let r = bank.transfer(&taro, "has space", &transfer_body("taro-1", "hanako-1", 1))?;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()?, "invalid_idempotency_key");

    for (amount, code) in [
        (json!(0), "invalid_amount"),
        (json!(-5), "invalid_amount"),
        (json!(1.5), "invalid_request"),
        (json!("100"), "invalid_request"),
        (json!(null), "invalid_request"),
    ] {
        let body = json!({"from_account": "taro-1", "to_account": "hanako-1", "amount": amount});
        let r = bank.transfer(&taro, "k-bad", &body)?;
        assert_eq!(r.status, 400, "{amount}");
        assert_eq!(r.error()?, code, "{amount}");
    }
    for body in [
        json!({"from_account": "taro-1", "amount": 1}),
        json!({"from_account": "taro-1", "to_account": "hanako-1", "amount": 1, "fee": 0}),
        json!({"from_account": "taro-1", "to_account": "hanako-1", "amount": 1, "reference": "x".repeat(141)}),
        json!([1, 2]),
    ] {
        let r = bank.transfer(&taro, "k-bad", &body)?;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.error()?, "invalid_request");
    }
    let r = bank.call(
        &taro,
        "POST",
        "/transfers",
        &[("idempotency-key", "k-bad")],
        Some("{"),
    )?;
    assert_eq!(r.status, 400);

    let r = bank.transfer(&taro, "k-bad", &transfer_body("taro-1", "taro-1", 1))?;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()?, "same_account");
    let r = bank.transfer(&taro, "k-bad", &transfer_body("taro-1", "nobody-1", 1))?;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()?, "account_not_found");
    assert!(r.json()?["error_description"]
        .as_str()
        .is_some_and(|d| d.starts_with("to_account")));
    let r = bank.transfer(&taro, "k-bad", &transfer_body("nobody-1", "taro-1", 1))?;
    assert_eq!(r.status, 404);

    // Unknown routes and methods: JSON errors, interaction id echoed all the same.
    let r = bank.get(&taro, "/accounts/")?;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()?, "not_found");
    let r = bank.call(&taro, "DELETE", "/accounts/taro-1", &[], None)?;
    assert_eq!(r.status, 405);
    assert_eq!(r.error()?, "method_not_allowed");
    assert_eq!(bank.balances()?, [1_250_000, 3_000_000, 1_250_000, 3_000_000]);
    Ok(())
}

fn run(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .ctx("running fapi-bank")?;
    if !out.status.success() {
        bail!(
            "fapi-bank {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn seed_is_idempotent_and_reset_restores_the_demo_balances() -> Result<()> {
    let help = run(&["--help"])?;
    assert!(help.contains("serve") && help.contains("seed"), "{help}");
    let help = run(&["serve", "--help"])?;
    assert!(help.contains("--listen") && help.contains("--db"), "{help}");
    let help = run(&["seed", "--help"])?;
    assert!(help.contains("--reset"), "{help}");

    let bank = Bank::start()?;
    let db = bank.db.display().to_string();
    // serve already seeded: seeding again creates nothing.
    let out = run(&["seed", "--db", &db])?;
    assert!(out.contains("0 accounts and 0 transactions created"), "{out}");
    let r = bank.transfer(
        &user(TARO, "payments"),
        "k-seed",
        &transfer_body("taro-1", "hanako-1", 1000),
    )?;
    assert_eq!(r.status, 201);
    let out = run(&["seed", "--db", &db, "--reset"])?;
    assert!(out.contains("4 accounts and 16 transactions created"), "{out}");
    assert_eq!(bank.balances()?, [1_250_000, 3_000_000, 1_250_000, 3_000_000]);
    assert_eq!(bank.transactions(TARO, "taro-1")?.len(), 5);

    // seed on a fresh file creates it.
    let dir = ScratchDir::new("bank-seed")?;
    let fresh = dir.join("fresh.db").display().to_string();
    let out = run(&["seed", "--db", &fresh])?;
    assert!(out.contains("4 accounts and 16 transactions created"), "{out}");
    Ok(())
}
