//! One suite of storage behaviour, run against both backends: a SQLite file (the default) and a
//! real PostgreSQL server (several instances behind a load balancer). The same assertions hold on
//! both: any difference between the backends is a bug.
//!
//! Every check gets a fresh database. "Two instances" means two `Store`s (two pools) on the same
//! database, as two fapi-as processes behind a load balancer would have.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::{ensure, Context as _, Result};
use fapi_as::store::{Account, ClientMetadata, Grant, RevokedToken, Store, Taken, Throttle, User};
use fapi_e2e::postgres::Postgres;
use fapi_e2e::util::ScratchDir;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// Fixed clock: seconds, and milliseconds for the revocation feed.
const NOW: i64 = 1_800_000_000;
const NOW_MS: i64 = NOW * 1000;
/// Concurrent tasks per race.
const RACERS: usize = 24;

enum Backend {
    Sqlite(ScratchDir),
    Postgres(Postgres),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// A URL of a new, empty database.
    fn fresh(&self, name: &str) -> Result<String> {
        Ok(match self {
            Backend::Sqlite(dir) => {
                format!("sqlite://{}?mode=rwc", dir.join(&format!("{name}.db")).display())
            }
            Backend::Postgres(pg) => pg.create_database(name).map_err(|e| anyhow::anyhow!("{e}"))?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    n: u32,
    text: String,
}

fn item(n: u32) -> Item {
    Item {
        n,
        text: format!("item {n} ✓"),
    }
}

async fn open(url: &str) -> Result<Store> {
    Store::connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Two instances on one database.
async fn open2(url: &str) -> Result<(Store, Store)> {
    Ok((open(url).await?, open(url).await?))
}

fn client(id: &str, name: &str) -> ClientMetadata {
    serde_json::from_value(serde_json::json!({
        "client_id": id,
        "client_name": name,
        "redirect_uris": ["https://rp.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": []},
        "scope": "openid accounts",
    }))
    .unwrap()
}

// ---- the checks

async fn schema(url: String) -> Result<()> {
    // Several instances starting at once on an empty database (a rolling deploy).
    let opened = futures_join_all((0..4).map(|_| {
        let url = url.clone();
        async move { Store::connect(&url).await.map(|_| ()) }
    }))
    .await;
    for r in opened {
        r.context("concurrent Store::connect on an empty database")?;
    }
    // And once more on the existing schema.
    open(&url).await?;
    Ok(())
}

async fn clients(url: String) -> Result<()> {
    let s = open(&url).await?;
    ensure!(s.client("c1").await?.is_none());
    s.put_client(&client("c2", "two"), NOW).await?;
    s.put_client(&client("c1", "one"), NOW).await?;
    ensure!(s.client("c1").await? == Some(client("c1", "one")));
    // Replacing.
    s.put_client(&client("c1", "one again"), NOW + 1).await?;
    ensure!(s.client("c1").await? == Some(client("c1", "one again")));
    let ids: Vec<String> = s.clients().await?.into_iter().map(|c| c.client_id).collect();
    ensure!(ids == ["c1", "c2"], "clients() order: {ids:?}");
    ensure!(s.delete_client("c1", NOW_MS).await?);
    ensure!(!s.delete_client("c1", NOW_MS).await?);
    ensure!(s.client("c1").await?.is_none());
    ensure!(s.clients().await?.len() == 1);

    // Re-registering on two instances at once (`fapi-as client add` while serving): no error, the
    // client never disappears for a reader, and one of the writes wins.
    let (a, b) = open2(&url).await?;
    a.put_client(&client("c3", "v0"), NOW).await?;
    let results = futures_join_all((0..RACERS).map(|i| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            s.put_client(&client("c3", &format!("v{i}")), NOW).await?;
            s.client("c3").await
        }
    }))
    .await;
    for r in results {
        ensure!(
            r.context("put_client under contention")?.is_some(),
            "a reader missed the client"
        );
    }
    let name = a.client("c3").await?.map(|c| c.client_name).unwrap_or_default();
    ensure!(name.starts_with('v') && name != "v0", "final client_name {name}");
    Ok(())
}

async fn users_and_accounts(url: String) -> Result<()> {
    let s = open(&url).await?;
    let taro = User {
        user_id: "u1".into(),
        username: "taro".into(),
        display_name: "山田 太郎".into(),
        password_hash: "hash1".into(),
        totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
    };
    let hanako = User {
        user_id: "u2".into(),
        username: "hanako".into(),
        display_name: "Hanako".into(),
        password_hash: "hash2".into(),
        totp_secret: None,
    };
    s.put_user(&taro).await?;
    s.put_user(&hanako).await?;
    ensure!(s.user_by_name("taro").await? == Some(taro.clone()));
    ensure!(
        s.user("u2").await? == Some(hanako.clone()),
        "a NULL totp_secret reads back as None"
    );
    ensure!(
        s.user_by_name("TARO").await?.is_none(),
        "user names match exactly"
    );
    ensure!(s.user("nobody").await?.is_none());
    let taro2 = User {
        password_hash: "hash1b".into(),
        totp_secret: None,
        ..taro.clone()
    };
    s.put_user(&taro2).await?;
    ensure!(s.user("u1").await? == Some(taro2));
    // A second user with a taken username is refused.
    let dup = User {
        user_id: "u3".into(),
        ..hanako.clone()
    };
    ensure!(s.put_user(&dup).await.is_err(), "username is unique");

    let big = Account {
        account_id: "a2".into(),
        user_id: "u1".into(),
        name: "Savings".into(),
        currency: "JPY".into(),
        balance: 9_007_199_254_740_993,
    };
    let neg = Account {
        account_id: "a1".into(),
        user_id: "u1".into(),
        name: "Card".into(),
        currency: "JPY".into(),
        balance: -12_345,
    };
    let other = Account {
        account_id: "a0".into(),
        user_id: "u2".into(),
        name: "Main".into(),
        currency: "USD".into(),
        balance: 0,
    };
    s.put_account(&big).await?;
    s.put_account(&neg).await?;
    s.put_account(&other).await?;
    ensure!(s.accounts_of("u1").await? == vec![neg.clone(), big.clone()]);
    let big2 = Account {
        balance: i64::MAX,
        ..big.clone()
    };
    s.put_account(&big2).await?;
    ensure!(s.accounts_of("u1").await? == vec![neg, big2]);
    ensure!(s.accounts_of("nobody").await?.is_empty());
    Ok(())
}

async fn items(url: String) -> Result<()> {
    let s = open(&url).await?;
    s.put_item("par", "k1", &item(1), NOW + 60).await?;
    ensure!(s.item::<Item>("par", "k1", NOW).await? == Some(item(1)));
    ensure!(
        s.item::<Item>("code", "k1", NOW).await?.is_none(),
        "kinds are separate"
    );
    ensure!(s.item::<Item>("par", "k1", NOW + 59).await? == Some(item(1)));
    ensure!(
        s.item::<Item>("par", "k1", NOW + 60).await?.is_none(),
        "expired at expires_at"
    );
    ensure!(
        s.put_item("par", "k1", &item(9), NOW + 60).await.is_err(),
        "a key is put once"
    );
    s.put_item("code", "k1", &item(2), NOW + 60).await?;
    s.update_item("par", "k1", &item(3)).await?;
    ensure!(s.item::<Item>("par", "k1", NOW).await? == Some(item(3)));
    ensure!(s.item::<Item>("code", "k1", NOW).await? == Some(item(2)));
    // Read as another type: None, not an error.
    ensure!(s.item::<u64>("par", "k1", NOW).await?.is_none());
    s.delete_item("par", "k1").await?;
    ensure!(s.item::<Item>("par", "k1", NOW).await?.is_none());
    ensure!(s.item::<Item>("code", "k1", NOW).await? == Some(item(2)));
    Ok(())
}

async fn take_single_use(url: String) -> Result<()> {
    let s = open(&url).await?;
    s.put_item("code", "c1", &item(1), NOW + 60).await?;
    ensure!(s.take_item::<Item>("code", "c1", NOW).await? == Taken::Fresh(item(1)));
    ensure!(s.take_item::<Item>("code", "c1", NOW).await? == Taken::Reused(item(1)));
    ensure!(s.take_item::<Item>("code", "c1", NOW + 1).await? == Taken::Reused(item(1)));
    ensure!(
        s.item::<Item>("code", "c1", NOW).await?.is_none(),
        "a used item is not readable"
    );
    // Used, then expired: still reported as reuse (so the grant can be revoked) until swept.
    ensure!(s.take_item::<Item>("code", "c1", NOW + 600).await? == Taken::Reused(item(1)));
    // Expired before first use.
    s.put_item("code", "c2", &item(2), NOW + 60).await?;
    ensure!(s.take_item::<Item>("code", "c2", NOW + 60).await? == Taken::Missing);
    ensure!(
        s.take_item::<Item>("code", "c2", NOW).await? == Taken::Fresh(item(2)),
        "an expired take does not use the item up"
    );
    ensure!(s.take_item::<Item>("code", "unknown", NOW).await? == Taken::Missing);
    ensure!(
        s.take_item::<Item>("par", "c2", NOW).await? == Taken::Missing,
        "kinds are separate"
    );
    s.put_item("code", "c3", &item(3), NOW + 60).await?;
    s.delete_item("code", "c3").await?;
    ensure!(s.take_item::<Item>("code", "c3", NOW).await? == Taken::Missing);
    Ok(())
}

async fn take_concurrently(url: String) -> Result<()> {
    let (a, b) = open2(&url).await?;
    for round in 0..8u32 {
        let key = format!("code-{round}");
        a.put_item("code", &key, &item(round), NOW + 60).await?;
        let results = futures_join_all((0..RACERS).map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            async move { s.take_item::<Item>("code", &key, NOW).await }
        }))
        .await;
        let mut fresh = 0;
        let mut reused = 0;
        for r in results {
            match r.context("take_item under contention")? {
                Taken::Fresh(v) if v == item(round) => fresh += 1,
                Taken::Reused(v) if v == item(round) => reused += 1,
                other => anyhow::bail!("round {round}: unexpected {other:?}"),
            }
        }
        ensure!(
            fresh == 1 && reused == RACERS - 1,
            "round {round}: {fresh} Fresh, {reused} Reused"
        );
    }
    Ok(())
}

async fn replay(url: String) -> Result<()> {
    let (a, b) = open2(&url).await?;
    ensure!(a.remember_jti("dpop", "j1", NOW + 60).await?);
    ensure!(!a.remember_jti("dpop", "j1", NOW + 60).await?);
    ensure!(
        !b.remember_jti("dpop", "j1", NOW + 60).await?,
        "another instance sees the replay"
    );
    ensure!(
        a.remember_jti("client_assertion", "j1", NOW + 60).await?,
        "kinds are separate"
    );
    for round in 0..8u32 {
        let jti = format!("race-{round}");
        let results = futures_join_all((0..RACERS).map(|i| {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let jti = jti.clone();
            async move { s.remember_jti("dpop", &jti, NOW + 60).await }
        }))
        .await;
        let mut first = 0;
        for r in results {
            if r.context("remember_jti under contention")? {
                first += 1;
            }
        }
        ensure!(first == 1, "round {round}: {first} tasks saw a first use");
    }
    // Once swept after expiry, the jti is forgotten.
    a.sweep(NOW + 60).await?;
    ensure!(a.remember_jti("dpop", "j1", NOW + 120).await?);
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TokenData {
    scope: String,
}

/// RFC 9396 details stored with a grant: on a database made before the column existed (a grants table
/// without `authorization_details`) the column is added at start-up, twice harmlessly, old grants
/// have none, and a grant stored with details reads them back.
async fn grant_details(url: String) -> Result<()> {
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await?;
        sqlx::query("CREATE TABLE grants (grant_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, user_id TEXT NOT NULL, scope TEXT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0)")
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO grants VALUES ('old', 'c1', 'u1', 'openid', 1, 1, 0)")
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    let (s, again) = open2(&url).await?;
    ensure!(s.grant("old").await?.is_some_and(|g| g.scope == "openid"));
    ensure!(s.grant_details("old").await?.is_none());
    let g = |id: &str| Grant {
        grant_id: id.into(),
        client_id: "c1".into(),
        user_id: "u1".into(),
        scope: "payments".into(),
        created_at: NOW,
        last_used_at: NOW,
        revoked: false,
    };
    let details = vec![serde_json::json!({
        "type": "payment_initiation",
        "instructedAmount": {"currency": "JPY", "amount": "5000"},
        "creditorName": "Hanako <b>Yamada</b> ✓", "creditorAccount": {"accountId": "hanako-1"},
        "debtorAccount": {"accountId": "taro-1"},
    })];
    s.put_grant_with_details(&g("new"), &details).await?;
    ensure!(again.grant_details("new").await? == Some(details.clone()));
    ensure!(again.grant("new").await? == Some(g("new")));
    s.put_grant(&g("plain")).await?;
    ensure!(again.grant_details("plain").await?.is_none());
    ensure!(again.grant_details("missing").await?.is_none());
    // Revoking leaves the record of what was granted.
    s.revoke_grant("new", NOW_MS).await?;
    ensure!(again.grant_details("new").await? == Some(details));
    Ok(())
}

fn data(scope: &str) -> TokenData {
    TokenData { scope: scope.into() }
}

async fn grants_and_revocation(url: String) -> Result<()> {
    let (s, other) = open2(&url).await?;
    let g = |id: &str, user: &str, created: i64| Grant {
        grant_id: id.into(),
        client_id: "c1".into(),
        user_id: user.into(),
        scope: "openid accounts".into(),
        created_at: created,
        last_used_at: created,
        revoked: false,
    };
    s.put_grant(&g("g2", "u1", NOW + 5)).await?;
    s.put_grant(&g("g1", "u1", NOW)).await?;
    s.put_grant(&g("g3", "u2", NOW)).await?;
    ensure!(s.grant("g1").await? == Some(g("g1", "u1", NOW)));
    ensure!(s.grant("nope").await?.is_none());
    let ids: Vec<String> = s
        .grants_of_user("u1")
        .await?
        .into_iter()
        .map(|g| g.grant_id)
        .collect();
    ensure!(ids == ["g1", "g2"], "grants_of_user order: {ids:?}");
    s.touch_grant("g1", NOW + 100).await?;
    ensure!(s.grant("g1").await?.map(|g| g.last_used_at) == Some(NOW + 100));

    s.put_refresh("rt1", "g1", "c1", &data("r1"), NOW + 3600).await?;
    s.put_refresh("rt2", "g2", "c1", &data("r2"), NOW + 3600).await?;
    ensure!(s.refresh::<TokenData>("rt1", NOW).await? == Some(("g1".into(), "c1".into(), data("r1"))));
    ensure!(
        s.refresh::<TokenData>("rt1", NOW + 3600).await?.is_none(),
        "expired at expires_at"
    );
    s.record_access_token("at1", Some("g1"), "c1", &data("a1"), NOW + 300)
        .await?;
    s.record_access_token("at2", Some("g1"), "c1", &data("a2"), NOW + 300)
        .await?;
    s.record_access_token("at3", Some("g2"), "c1", &data("a3"), NOW + 300)
        .await?;
    s.record_access_token("at4", None, "c2", &data("a4"), NOW + 300)
        .await?;
    ensure!(s.access_token::<TokenData>("at1").await? == Some(("c1".into(), data("a1"), NOW + 300, false)));
    ensure!(s.access_token::<TokenData>("at4").await? == Some(("c2".into(), data("a4"), NOW + 300, false)));
    ensure!(s.access_token::<TokenData>("nope").await?.is_none());

    // Revoked on one instance, seen on the other.
    s.revoke_grant("g1", NOW_MS + 7).await?;
    ensure!(other.grant("g1").await?.map(|g| g.revoked) == Some(true));
    ensure!(
        other
            .grants_of_user("u1")
            .await?
            .into_iter()
            .map(|g| g.grant_id)
            .collect::<Vec<_>>()
            == ["g2"]
    );
    ensure!(
        other.refresh::<TokenData>("rt1", NOW).await?.is_none(),
        "refresh token of a revoked grant"
    );
    ensure!(
        other.refresh::<TokenData>("rt2", NOW).await?.is_some(),
        "other grants untouched"
    );
    ensure!(other.access_token::<TokenData>("at1").await?.map(|t| t.3) == Some(true));
    ensure!(other.access_token::<TokenData>("at2").await?.map(|t| t.3) == Some(true));
    ensure!(other.access_token::<TokenData>("at3").await?.map(|t| t.3) == Some(false));
    ensure!(other.access_token::<TokenData>("at4").await?.map(|t| t.3) == Some(false));
    // Revoking again keeps the first revocation time.
    s.revoke_grant("g1", NOW_MS + 99).await?;
    let feed = s.revocations_since(0, "", NOW, 100).await?;
    let expect = vec![
        RevokedToken {
            jti: "at1".into(),
            exp: NOW + 300,
            revoked_at_ms: NOW_MS + 7,
        },
        RevokedToken {
            jti: "at2".into(),
            exp: NOW + 300,
            revoked_at_ms: NOW_MS + 7,
        },
    ];
    ensure!(feed == expect, "feed after grant revocation: {feed:?}");

    // Deleting a client revokes what it holds (RFC 7592 §2.3), on every instance, and nothing else.
    s.put_client(&client("c1", "one"), NOW).await?;
    s.put_client(&client("c2", "two"), NOW).await?;
    s.put_grant(&Grant {
        client_id: "c2".into(),
        ..g("g4", "u1", NOW)
    })
    .await?;
    s.put_refresh("rt3", "g4", "c2", &data("r3"), NOW + 3600).await?;
    s.put_refresh("rt4", "g3", "c1", &data("r4"), NOW + 3600).await?;
    s.record_access_token("at5", Some("g3"), "c1", &data("a5"), NOW + 300)
        .await?;
    s.record_access_token("at6", None, "c1", &data("a6"), NOW + 300)
        .await?;
    ensure!(s.delete_client("c1", NOW_MS + 50).await?);
    ensure!(other.client("c1").await?.is_none());
    ensure!(other.grant("g2").await?.map(|g| g.revoked) == Some(true));
    ensure!(other.grant("g3").await?.map(|g| g.revoked) == Some(true));
    ensure!(
        other.grant("g4").await?.map(|g| g.revoked) == Some(false),
        "another client's grant"
    );
    ensure!(other.refresh::<TokenData>("rt2", NOW).await?.is_none());
    ensure!(other.refresh::<TokenData>("rt4", NOW).await?.is_none());
    ensure!(
        other.refresh::<TokenData>("rt3", NOW).await?.is_some(),
        "another client's refresh token"
    );
    for jti in ["at3", "at5", "at6"] {
        ensure!(
            other.access_token::<TokenData>(jti).await?.map(|t| t.3) == Some(true),
            "{jti} revoked"
        );
    }
    ensure!(
        other.access_token::<TokenData>("at4").await?.map(|t| t.3) == Some(false),
        "c2's token"
    );
    let feed = s.revocations_since(NOW_MS + 7, "at2", NOW, 100).await?;
    let jtis: Vec<&str> = feed.iter().map(|t| t.jti.as_str()).collect();
    ensure!(jtis == ["at3", "at5", "at6"], "feed after deleting c1: {jtis:?}");
    ensure!(feed.iter().all(|t| t.revoked_at_ms == NOW_MS + 50));
    // at1/at2 keep their first revocation time.
    ensure!(
        s.revocations_since(0, "", NOW, 2)
            .await?
            .iter()
            .all(|t| t.revoked_at_ms == NOW_MS + 7),
        "earlier revocations untouched"
    );

    // Single tokens.
    ensure!(s.revoke_access_token("at4", NOW_MS + 8).await?);
    ensure!(
        !s.revoke_access_token("at4", NOW_MS + 9).await?,
        "already revoked"
    );
    ensure!(!s.revoke_access_token("nope", NOW_MS + 9).await?);
    ensure!(s.access_token::<TokenData>("at4").await?.map(|t| t.3) == Some(true));
    ensure!(s.revoke_refresh("rt2").await?);
    ensure!(!s.revoke_refresh("nope").await?);
    ensure!(s.refresh::<TokenData>("rt2", NOW).await?.is_none());
    Ok(())
}

async fn revocation_feed(url: String) -> Result<()> {
    let s = open(&url).await?;
    let t = NOW_MS;
    // jtis whose byte order differs from a linguistic collation's ('B' < 'a' in bytes).
    let same_ms = ["b", "B-1", "a_2", "a-3", "Z", "aa", "a"];
    for jti in same_ms {
        s.record_access_token(jti, None, "c1", &data("x"), NOW + 300)
            .await?;
        ensure!(s.revoke_access_token(jti, t).await?);
    }
    s.record_access_token("early", None, "c1", &data("x"), NOW + 300)
        .await?;
    s.revoke_access_token("early", t - 1).await?;
    s.record_access_token("late", None, "c1", &data("x"), NOW + 300)
        .await?;
    s.revoke_access_token("late", t + 1).await?;
    s.record_access_token("expired", None, "c1", &data("x"), NOW)
        .await?;
    s.revoke_access_token("expired", t).await?;
    s.record_access_token("live", None, "c1", &data("x"), NOW + 300)
        .await?;

    let mut sorted: Vec<&str> = same_ms.to_vec();
    sorted.sort(); // byte order
    let mut expect: Vec<(String, i64)> = vec![("early".into(), t - 1)];
    expect.extend(sorted.iter().map(|j| (j.to_string(), t)));
    expect.push(("late".into(), t + 1));

    let all: Vec<(String, i64)> = s
        .revocations_since(0, "", NOW, 100)
        .await?
        .into_iter()
        .map(|r| (r.jti, r.revoked_at_ms))
        .collect();
    ensure!(
        all == expect,
        "feed order (by ms, then jti in byte order; expired left out):\n got  {all:?}\n want {expect:?}"
    );

    // Paging with the cursor of the last entry yields every entry once, whatever the page size.
    for limit in [1, 2, 3, 100] {
        let mut paged = Vec::new();
        let (mut ms, mut jti) = (0i64, String::new());
        loop {
            let page = s.revocations_since(ms, &jti, NOW, limit).await?;
            ensure!(page.len() as i64 <= limit);
            let Some(last) = page.last() else { break };
            (ms, jti) = (last.revoked_at_ms, last.jti.clone());
            paged.extend(page.into_iter().map(|r| (r.jti, r.revoked_at_ms)));
            ensure!(
                paged.len() <= expect.len(),
                "paging with limit {limit} does not end: {paged:?}"
            );
        }
        ensure!(paged == expect, "paging with limit {limit}: {paged:?}");
    }
    // The cursor is exclusive: after (t, "a_2") come the same-ms jtis above "a_2", then later ones.
    let after: Vec<String> = s
        .revocations_since(t, "a_2", NOW, 100)
        .await?
        .into_iter()
        .map(|r| r.jti)
        .collect();
    let mut want: Vec<String> = sorted
        .iter()
        .filter(|j| j.as_bytes() > b"a_2".as_slice())
        .map(|j| j.to_string())
        .collect();
    want.push("late".into());
    ensure!(after == want, "after (t, a_2): {after:?}, want {want:?}");
    let none = s.revocations_since(t + 1, "late", NOW, 100).await?;
    ensure!(none.is_empty(), "nothing after the last entry: {none:?}");
    // A later clock drops what has expired by then.
    ensure!(s.revocations_since(0, "", NOW + 300, 100).await?.is_empty());
    Ok(())
}

/// A windowed counter rule as limits.rs uses it: `limit` attempts, then refused until `NOW + 900`.
fn up_to(limit: i64) -> impl Fn(Option<&Throttle>) -> std::result::Result<Throttle, i64> {
    move |r| {
        let n = r.map_or(0, |r| r.failures);
        if n >= limit {
            return Err(NOW + 900);
        }
        Ok(Throttle {
            failures: n + 1,
            window_start: NOW,
            next_at: NOW,
            known_until: r.map_or(0, |r| r.known_until),
        })
    }
}

async fn signin_throttle(url: String) -> Result<()> {
    let (s, other) = open2(&url).await?;
    ensure!(s.throttle("acct:taro").await?.is_none(), "unknown key: no row");
    for want in 1..=3 {
        let st = if want % 2 == 0 { &other } else { &s };
        let got = st.throttle_admit("acct:taro", up_to(3)).await?;
        ensure!(got.map(|t| t.failures) == Ok(want), "attempt {want}: {got:?}");
    }
    ensure!(
        s.throttle_admit("acct:taro", up_to(3)).await? == Err(NOW + 900),
        "refused at the limit"
    );
    ensure!(
        other.throttle("acct:taro").await?.map(|t| t.failures) == Some(3),
        "a refusal writes nothing; another instance sees the count"
    );
    ensure!(s.throttle("addr:127.0.0.1").await?.is_none(), "keys are separate");
    s.throttle_refund("acct:taro").await?;
    ensure!(s.throttle("acct:taro").await?.map(|t| t.failures) == Some(2));
    // A success remembers the key as known (failures forgotten), or forgets the row.
    s.throttle_succeeded("pair:taro@192.0.2.1", NOW + 100).await?;
    s.throttle_succeeded("acct:taro", NOW + 100).await?;
    let known = s.throttle("acct:taro").await?;
    ensure!(
        known.map(|t| (t.failures, t.known_until)) == Some((0, NOW + 100)),
        "{known:?}"
    );
    ensure!(
        s.throttle_admit("acct:taro", up_to(3))
            .await?
            .map(|t| t.known_until)
            == Ok(NOW + 100),
        "the rule sees what is known"
    );
    s.throttle_succeeded("acct:taro", 0).await?;
    ensure!(s.throttle("acct:taro").await?.is_none());
    s.throttle_refund("acct:nobody").await?;
    ensure!(
        s.throttle("acct:nobody").await?.is_none(),
        "a refund creates nothing"
    );

    // Concurrent attempts on two instances are each counted once, before they are checked: with a
    // limit of 5, exactly 5 of them get through, as the 1st to the 5th, and the rest are refused.
    let results = futures_join_all((0..RACERS).map(|i| {
        let st = if i % 2 == 0 { s.clone() } else { other.clone() };
        async move { st.throttle_admit("acct:hanako", up_to(5)).await }
    }))
    .await;
    let mut admitted = Vec::new();
    let mut refused = 0;
    for r in results {
        match r.context("throttle_admit under contention")? {
            Ok(t) => admitted.push(t.failures),
            Err(_) => refused += 1,
        }
    }
    admitted.sort();
    ensure!(admitted == [1, 2, 3, 4, 5], "admitted as {admitted:?}");
    ensure!(refused == RACERS - 5, "{refused} refused");
    ensure!(s.throttle("acct:hanako").await?.map(|t| t.failures) == Some(5));

    // The sweep keeps rows with failures and rows that remember a known address; it drops spent ones.
    s.throttle_succeeded("pair:spent@192.0.2.1", NOW - 1).await?;
    s.sweep(NOW).await?;
    ensure!(
        s.throttle("pair:spent@192.0.2.1").await?.is_none(),
        "spent row swept"
    );
    ensure!(s.throttle("acct:hanako").await?.is_some(), "failures kept");
    ensure!(s.throttle("pair:taro@192.0.2.1").await?.is_some(), "known kept");
    s.sweep(NOW + fapi_as::store::THROTTLE_KEEP + 1000).await?;
    ensure!(
        s.throttle("acct:hanako").await?.is_none(),
        "failures untouched for THROTTLE_KEEP are swept"
    );
    Ok(())
}

async fn password_rehash(url: String) -> Result<()> {
    let s = open(&url).await?;
    let user = User {
        user_id: "u1".into(),
        username: "taro".into(),
        display_name: "Taro".into(),
        password_hash: "pbkdf2-sha256$old".into(),
        totp_secret: None,
    };
    s.put_user(&user).await?;
    ensure!(
        !s.replace_password_hash("u1", "something else", "$argon2id$new")
            .await?,
        "not the hash read"
    );
    ensure!(
        s.replace_password_hash("u1", "pbkdf2-sha256$old", "$argon2id$new")
            .await?
    );
    ensure!(s.user("u1").await?.map(|u| u.password_hash) == Some("$argon2id$new".into()));
    ensure!(
        !s.replace_password_hash("u1", "pbkdf2-sha256$old", "$argon2id$other")
            .await?,
        "only once"
    );
    Ok(())
}

async fn sweep(url: String) -> Result<()> {
    let s = open(&url).await?;
    s.put_item("code", "old", &item(1), NOW).await?;
    s.put_item("code", "used-old", &item(2), NOW).await?;
    ensure!(s.take_item::<Item>("code", "used-old", NOW - 1).await? == Taken::Fresh(item(2)));
    s.put_item("code", "new", &item(3), NOW + 1).await?;
    ensure!(s.remember_jti("dpop", "old", NOW).await?);
    ensure!(s.remember_jti("dpop", "new", NOW + 1).await?);
    s.record_access_token("at-old", None, "c1", &data("x"), NOW - 3600)
        .await?;
    s.record_access_token("at-recent", None, "c1", &data("x"), NOW - 3599)
        .await?;
    s.put_refresh("rt-old", "g", "c1", &data("x"), NOW).await?;
    s.put_refresh("rt-new", "g", "c1", &data("x"), NOW + 1).await?;

    s.sweep(NOW).await?;
    ensure!(
        s.take_item::<Item>("code", "old", NOW - 1).await? == Taken::Missing,
        "expired item swept"
    );
    ensure!(
        s.take_item::<Item>("code", "used-old", NOW - 1).await? == Taken::Missing,
        "used expired item swept"
    );
    ensure!(s.item::<Item>("code", "new", NOW).await? == Some(item(3)));
    ensure!(
        s.remember_jti("dpop", "old", NOW + 60).await?,
        "expired jti swept"
    );
    ensure!(!s.remember_jti("dpop", "new", NOW + 60).await?, "live jti kept");
    ensure!(
        s.access_token::<TokenData>("at-old").await?.is_none(),
        "access token an hour past exp swept"
    );
    ensure!(
        s.access_token::<TokenData>("at-recent").await?.is_some(),
        "kept for an hour past exp"
    );
    ensure!(s.refresh::<TokenData>("rt-new", NOW).await?.is_some());
    // rt-old is gone: putting it again works.
    s.put_refresh("rt-old", "g", "c1", &data("y"), NOW + 10).await?;
    ensure!(s.refresh::<TokenData>("rt-old", NOW).await? == Some(("g".into(), "c1".into(), data("y"))));
    Ok(())
}

// ---- the runner

type Check = fn(String) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;

macro_rules! checks {
    ($($f:ident),* $(,)?) => {
        &[$((stringify!($f), (|url| Box::pin($f(url))) as Check)),*]
    };
}

async fn passkeys(url: String) -> Result<()> {
    use fapi_as::webauthn::StoredCredential;
    let (s, other) = open2(&url).await?;
    let key = |id: &str, user: &str| StoredCredential {
        credential_id: id.into(),
        user_id: user.into(),
        public_key_jwk: format!("{{\"kty\":\"EC\",\"kid\":\"{id}\"}}"),
        sign_count: 0,
    };
    ensure!(s.put_passkey(&key("k2", "u1")).await?);
    ensure!(s.put_passkey(&key("k1", "u1")).await?);
    ensure!(s.put_passkey(&key("k3", "u2")).await?);
    ensure!(
        !s.put_passkey(&key("k1", "u2")).await?,
        "a credential ID is registered once"
    );
    let ids = |v: Vec<StoredCredential>| v.into_iter().map(|c| c.credential_id).collect::<Vec<_>>();
    ensure!(ids(other.passkeys_of_user("u1").await?) == ["k1", "k2"]);
    // Only its owner's: u2 cannot remove u1's k1; removing works once.
    ensure!(!s.delete_passkey("u2", "k1").await?);
    ensure!(other.passkey("k1").await?.is_some());
    ensure!(s.delete_passkey("u1", "k1").await?);
    ensure!(!s.delete_passkey("u1", "k1").await?);
    ensure!(other.passkey("k1").await?.is_none());
    ensure!(ids(other.passkeys_of_user("u1").await?) == ["k2"]);
    ensure!(ids(other.passkeys_of_user("u2").await?) == ["k3"]);
    Ok(())
}

const CHECKS: &[(&str, Check)] = checks![
    schema,
    clients,
    users_and_accounts,
    items,
    take_single_use,
    take_concurrently,
    replay,
    grants_and_revocation,
    grant_details,
    revocation_feed,
    signin_throttle,
    password_rehash,
    sweep,
    passkeys,
];

/// Joins futures spawned as tasks (real parallelism on the multi-thread runtime).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task panicked"));
    }
    out
}

async fn run_suite(backend: Backend) {
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        let result = match backend.fresh(name) {
            Ok(url) => check(url).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => println!("{:<8} {name:<24} ok", backend.name()),
            Err(e) => {
                println!("{:<8} {name:<24} FAILED: {e:#}", backend.name());
                failed.push(*name);
            }
        }
    }
    if let Backend::Postgres(pg) = &backend {
        let log = pg.log();
        let errors: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("FATAL"))
            .map(str::trim)
            .collect();
        if !errors.is_empty() {
            println!(
                "postgres log errors (expected ones come from refused duplicates):\n{}",
                errors.join("\n")
            );
        }
    }
    assert!(
        failed.is_empty(),
        "{} store checks failed: {failed:?}",
        backend.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let dir = ScratchDir::new("store-sqlite").unwrap();
    run_suite(Backend::Sqlite(dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres() {
    let pg = tokio::task::spawn_blocking(Postgres::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("starting PostgreSQL (scripts/setup installs it): {e}"));
    run_suite(Backend::Postgres(pg)).await;
}
