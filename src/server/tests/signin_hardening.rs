//! Sign-in under attack (issue 10): passwords stored with Argon2id and old PBKDF2 hashes replaced at
//! the next sign-in; attempts counted before they are checked, so a concurrent burst gets no more
//! checks than the limit; and throttling that slows and stops guessing without letting a stranger
//! lock a customer out (frontchannel/limits.rs).
//!
//! The HTTP tests run the real fapi-as over TLS; the throttling scenarios call the limits on a real
//! store with a clock the test moves (`now` is a parameter there): SQLite, or PostgreSQL with
//! `FAPI_TEST_DATABASE=postgres` (tests/common/mod.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use fapi_as::config::Login;
use fapi_as::frontchannel::limits::{self, Locked, Rules, SourceAddr};
use fapi_as::store::{Store, User};
use fapi_e2e::fapi_as::{csrf, AsOptions, AuthServer, Browser, DEMO_PASSWORD};
use fapi_e2e::pki::TestPki;
use fapi_e2e::util::ScratchDir;
use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const T0: i64 = 1_800_000_000;

/// A seeded, running fapi-as with `login` appended to its configuration.
fn server(dir: &ScratchDir, login: &str) -> AuthServer {
    std::env::set_var("FAPI_E2E_AS", env!("CARGO_BIN_EXE_fapi-as"));
    let pki = TestPki::generate(dir.path(), &["fintech"]).unwrap();
    let mut srv = AuthServer::configure(dir.path(), &pki, &AsOptions::default()).unwrap();
    let mut text = std::fs::read_to_string(srv.config_path()).unwrap();
    text.push_str(&format!("[login]\n{login}\n"));
    std::fs::write(srv.config_path(), text).unwrap();
    srv.seed().unwrap();
    srv.start(Duration::from_secs(20)).unwrap();
    srv
}

fn db_url(dir: &ScratchDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("as.db").display())
}

/// A browser on the sign-in page of the connected-apps flow, and its CSRF token.
fn sign_in_page(srv: &AuthServer) -> (Browser, String) {
    let mut b = srv.browser().unwrap();
    let page = b.get("/apps").unwrap();
    let page = if page.status == 303 {
        b.get("/login").unwrap()
    } else {
        page
    };
    let token = csrf(&page.text()).unwrap_or_else(|| panic!("no CSRF field: {}", page.text()));
    (b, token)
}

fn metric(b: &mut Browser, endpoint: &str, outcome: &str) -> u64 {
    let text = b.get("/metrics").unwrap().text();
    let needle = format!("endpoint=\"{endpoint}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.split_once(&needle).map(|(_, n)| n.trim().parse().unwrap()))
        .unwrap_or(0)
}

/// A legacy hash as fapi-as stored it before Argon2id (PBKDF2-HMAC-SHA256, 100 000 iterations).
fn pbkdf2_hash(password: &str) -> String {
    let salt = [42u8; 16];
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(100_000).unwrap(),
        &salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "pbkdf2-sha256$100000${}${}",
        fapi_core::b64::encode(salt),
        fapi_core::b64::encode(out)
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_legacy_pbkdf2_hash_signs_in_and_is_rehashed_with_argon2id() {
    let dir = ScratchDir::new("signin-rehash").unwrap();
    let srv = server(&dir, "");
    let rt = rt();
    let store = rt.block_on(Store::connect(&db_url(&dir))).unwrap();
    let taro = rt.block_on(store.user_by_name("taro")).unwrap().unwrap();
    assert!(
        taro.password_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "seeded with Argon2id"
    );
    let legacy = pbkdf2_hash(DEMO_PASSWORD);
    rt.block_on(store.put_user(&User {
        password_hash: legacy.clone(),
        ..taro.clone()
    }))
    .unwrap();

    // A wrong password does not touch the stored hash.
    let (mut b, token) = sign_in_page(&srv);
    let r = b
        .post(
            "/login",
            &[("csrf", &token), ("username", "taro"), ("password", "wrong")],
        )
        .unwrap();
    assert!(r.text().contains("正しくありません"), "{}", r.text());
    assert_eq!(
        rt.block_on(store.user("user-taro"))
            .unwrap()
            .unwrap()
            .password_hash,
        legacy
    );

    let r = b
        .post(
            "/login",
            &[
                ("csrf", &token),
                ("username", "taro"),
                ("password", DEMO_PASSWORD),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 303, "the old hash still verifies: {}", r.text());
    let stored = rt
        .block_on(store.user("user-taro"))
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "re-hashed: {stored}"
    );
    assert!(fapi_as::password::verify(DEMO_PASSWORD, &stored));
    assert!(!fapi_as::password::needs_rehash(&stored));

    // And the new hash signs in (a fresh session), and is not replaced again.
    let (mut b, token) = sign_in_page(&srv);
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &token),
                ("username", "taro"),
                ("password", DEMO_PASSWORD),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        rt.block_on(store.user("user-taro"))
            .unwrap()
            .unwrap()
            .password_hash,
        stored
    );
}

/// Sends `passwords` for `username` at once (one thread each, released together), each from its own
/// connection in the same session; the statuses.
fn burst(srv: &AuthServer, b: &Browser, token: &str, username: &str, passwords: &[&str]) -> Vec<u16> {
    let gate = Arc::new(Barrier::new(passwords.len()));
    let threads: Vec<_> = passwords
        .iter()
        .map(|pw| {
            let mut each = srv.browser().unwrap();
            each.cookies = b.cookies.clone();
            let (gate, token, username, pw) = (
                gate.clone(),
                token.to_string(),
                username.to_string(),
                pw.to_string(),
            );
            std::thread::spawn(move || {
                gate.wait();
                each.post(
                    "/login",
                    &[("csrf", &token), ("username", &username), ("password", &pw)],
                )
                .unwrap()
                .status
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn a_concurrent_burst_gets_no_more_checks_than_the_limit() {
    let dir = ScratchDir::new("signin-burst").unwrap();
    // The defaults: 5 attempts per account and address.
    let srv = server(&dir, "");
    let (mut b, token) = sign_in_page(&srv);

    // 20 wrong passwords at once: 5 are checked, 15 refused unchecked. (A checked one may answer
    // 429 too: the failure that reaches a limit says so.)
    let statuses = burst(&srv, &b, &token, "hanako", &["wrong"; 20]);
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 16,
        "{statuses:?}"
    );
    assert_eq!(metric(&mut b, "login", "failed"), 5, "checked");
    assert_eq!(metric(&mut b, "login", "locked"), 15, "refused before checking");
    // The right password after the burst does not sign in, and is not checked either.
    let r = b
        .post(
            "/login",
            &[
                ("csrf", &token),
                ("username", "hanako"),
                ("password", DEMO_PASSWORD),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("ロック"), "{}", r.text());
    assert_eq!(metric(&mut b, "login", "ok"), 0);
    assert_eq!(metric(&mut b, "login", "failed"), 5);

    // 39 wrong and the right one at once (the finding): 5 are checked; the right one signs in only if
    // it was among them, as it may (and then, the account's failures being forgotten on success, up
    // to 5 more of the burst are checked: consecutive failures are what is limited).
    let mut passwords = vec!["wrong"; 39];
    passwords.push(DEMO_PASSWORD);
    let statuses = burst(&srv, &b, &token, "taro", &passwords);
    let ok = metric(&mut b, "login", "ok");
    let failed = metric(&mut b, "login", "failed") - 5;
    let signed_in = statuses.iter().filter(|s| **s == 303).count() as u64;
    assert!(ok <= 1 && signed_in == ok, "{statuses:?}");
    if ok == 0 {
        assert_eq!(failed, 5, "checked: {statuses:?}");
    } else {
        assert!((4..=9).contains(&failed), "checked: {failed} + 1, {statuses:?}");
    }
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 30,
        "{statuses:?}"
    );
}

// ---- throttling scenarios on the store, with a clock the test moves

fn ip(s: &str) -> SourceAddr {
    SourceAddr(Some(s.parse::<IpAddr>().unwrap()))
}

/// The test's store (keep the `TestDb` until the end: a PostgreSQL server stops when it drops).
async fn store(dir: &ScratchDir) -> (common::TestDb, Store) {
    let path = dir.path().to_path_buf();
    let (db, url) = tokio::task::spawn_blocking(move || common::TestDb::from_env(&path))
        .await
        .unwrap();
    (db, Store::connect(&url).await.unwrap())
}

/// One password attempt on `user` from `addr` at `now` that fails (if admitted): the refusal, if any.
async fn fail(s: &Store, r: Rules, user: &str, addr: SourceAddr, now: i64) -> Option<Locked> {
    limits::admit(s, r, Some(user), addr, now).await.unwrap().err()
}

/// One attempt that succeeds if admitted.
async fn succeed(s: &Store, r: Rules, user: &str, addr: SourceAddr, now: i64) -> Result<(), Locked> {
    let adm = limits::admit(s, r, Some(user), addr, now).await.unwrap()?;
    limits::succeeded(s, &adm, user, now).await.unwrap();
    Ok(())
}

#[tokio::test]
async fn an_attacker_at_one_address_does_not_stop_the_owner_at_another() {
    let dir = ScratchDir::new("signin-owner").unwrap();
    let (_db, s) = store(&dir).await;
    let r = Rules::of(&Login::default());
    let (a, b) = (ip("203.0.113.9"), ip("198.51.100.7"));
    for i in 0..5 {
        assert_eq!(fail(&s, r, "taro", a, T0).await, None, "attempt {i} is checked");
    }
    // The attacker's address is locked on taro for the window.
    assert_eq!(
        fail(&s, r, "taro", a, T0 + 1).await,
        Some(Locked::Account { until: T0 + 900 })
    );
    // taro, elsewhere: at most the account's delay (1 s after 5 failures), never a lock.
    assert_eq!(
        succeed(&s, r, "taro", b, T0).await,
        Err(Locked::Delayed { until: T0 + 1 })
    );
    assert_eq!(succeed(&s, r, "taro", b, T0 + 1).await, Ok(()));
    // A success forgets the account's failures: no delay for taro's next sign-in.
    assert_eq!(succeed(&s, r, "taro", b, T0 + 1).await, Ok(()));
    // The attacker is still locked out of taro at A, and only of taro.
    assert!(matches!(
        fail(&s, r, "taro", a, T0 + 2).await,
        Some(Locked::Account { .. })
    ));
    assert_eq!(fail(&s, r, "hanako", a, T0 + 2).await, None);
    // And the owner signing in from A itself is what the attacker's guesses lock (same address):
    // after the window it is open again.
    assert_eq!(succeed(&s, r, "taro", a, T0 + 900).await, Ok(()));
}

#[tokio::test]
async fn guessing_from_one_address_is_slowed_then_stopped() {
    let dir = ScratchDir::new("signin-one-address").unwrap();
    let (_db, s) = store(&dir).await;
    let r = Rules::of(&Login::default());
    let a = ip("203.0.113.9");
    let mut now = T0;
    let mut checked = 0;
    let mut waits = Vec::new();
    // The attacker tries again as soon as it is allowed, for as long as it is allowed.
    loop {
        match fail(&s, r, "taro", a, now).await {
            None => checked += 1,
            Some(Locked::Capped) => break,
            Some(Locked::Account { until } | Locked::Delayed { until } | Locked::Address { until }) => {
                assert!(until > now, "a refusal names a later time");
                waits.push(until - now);
                now = until;
            }
        }
        assert!(
            checked <= 100,
            "more than NIST's 100 consecutive failures were checked"
        );
    }
    assert_eq!(checked, 100, "stopped at the cap");
    // 5 per 15-minute window from one address: 100 guesses take 19 windows and more.
    assert!(now - T0 >= 19 * 900, "100 guesses in {} s", now - T0);
    assert!(waits.iter().all(|w| *w <= 900), "{waits:?}");
    // Stopped for good: a day later, from anywhere, even with the right password.
    assert_eq!(
        succeed(&s, r, "taro", ip("198.51.100.7"), now + 86_400).await,
        Err(Locked::Capped)
    );
    // Another account is not affected.
    assert_eq!(succeed(&s, r, "hanako", ip("198.51.100.7"), now).await, Ok(()));
}

#[tokio::test]
async fn the_account_cap_holds_across_many_addresses() {
    let dir = ScratchDir::new("signin-many").unwrap();
    let (_db, s) = store(&dir).await;
    let r = Rules::of(&Login::default());
    let mut now = T0;
    let mut checked = 0;
    for i in 0..300u32 {
        // A botnet: every attempt from a new address, as soon as the account's delay allows.
        let addr = ip(&format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256));
        match fail(&s, r, "taro", addr, now).await {
            None => checked += 1,
            Some(Locked::Delayed { until }) => {
                assert!(until <= now + 60, "the delay is capped at 60 s");
                now = until;
                assert_eq!(fail(&s, r, "taro", addr, now).await, None);
                checked += 1;
            }
            Some(Locked::Capped) => {}
            Some(other) => panic!("attempt {i}: {other:?}"),
        }
    }
    assert_eq!(
        checked, 100,
        "no more than 100 consecutive failures checked, over all addresses"
    );
    // The delays made it take a while: 5 free, then 1 + 2 + ... + 32 + 60 s each.
    assert!(now - T0 >= 63 + 89 * 60, "{} s", now - T0);
    assert_eq!(
        succeed(&s, r, "taro", ip("198.51.100.7"), now).await,
        Err(Locked::Capped)
    );
    // A success by another method (a passkey: no account named before the assertion) lifts it.
    let b = ip("198.51.100.7");
    let adm = limits::admit(&s, r, None, b, now).await.unwrap().unwrap();
    limits::succeeded(&s, &adm, "taro", now).await.unwrap();
    assert_eq!(succeed(&s, r, "taro", b, now).await, Ok(()));
}

#[tokio::test]
async fn the_address_limit_does_not_stop_known_accounts_behind_the_same_address() {
    let dir = ScratchDir::new("signin-nat").unwrap();
    let (_db, s) = store(&dir).await;
    let r = Rules::of(&Login::default());
    let nat = ip("192.0.2.1");
    // taro uses the bank from the office (a NAT) as usual.
    assert_eq!(succeed(&s, r, "taro", nat, T0).await, Ok(()));
    // Someone in the office sprays 50 accounts with one guess each.
    for i in 0..50 {
        assert_eq!(fail(&s, r, &format!("ghost{i}"), nat, T0 + 10).await, None, "{i}");
    }
    assert_eq!(
        fail(&s, r, "ghost50", nat, T0 + 10).await,
        Some(Locked::Address { until: T0 + 10 + 600 }),
        "spraying from the address stops"
    );
    assert!(
        matches!(
            succeed(&s, r, "hanako", nat, T0 + 11).await,
            Err(Locked::Address { .. })
        ),
        "not known here"
    );
    // taro, known at this address, still signs in from it.
    assert_eq!(succeed(&s, r, "taro", nat, T0 + 11).await, Ok(()));
    // taro's success gave back only taro's attempt: the spraying count stays.
    assert!(matches!(
        fail(&s, r, "ghost51", nat, T0 + 12).await,
        Some(Locked::Address { .. })
    ));
    // After the window the address is open again.
    assert_eq!(succeed(&s, r, "hanako", nat, T0 + 10 + 600).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_are_counted_before_they_are_checked() {
    let dir = ScratchDir::new("signin-race").unwrap();
    let (_db, s) = store(&dir).await;
    let r = Rules::of(&Login::default());
    let a = ip("203.0.113.9");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.spawn(async move { limits::admit(&s, r, Some("taro"), a, T0).await.unwrap() });
    }
    let mut admitted = Vec::new();
    while let Some(t) = tasks.join_next().await {
        if let Ok(adm) = t.unwrap() {
            admitted.push(adm);
        }
    }
    assert_eq!(admitted.len(), 5, "only the limit may be checked");
    // The right password after the burst is refused unchecked.
    assert!(matches!(
        succeed(&s, r, "taro", a, T0).await,
        Err(Locked::Account { .. })
    ));
}
