//! Sign-in abuse limits (FISC item 41): failed password and TOTP attempts count per account and per
//! source address; past the limit the key is locked for a while and the page says so.
//!
//! - Per account (`acct:<username>`): `config.login.max_failures` failures within `config.login.lockout`
//!   seconds lock the account for `config.login.lockout` seconds. Unknown usernames count the same way
//!   (and get the same message), so the limit reveals nothing about which accounts exist.
//! - Per source address (`addr:<ip>`): `config.login.max_failures_per_address` failures within 10
//!   minutes lock the address for 10 minutes.
//!
//! The source address: handlers do not see the TCP peer today (`serve.rs` does not put it in the
//! request extensions), so the per-address limit keys on the first `X-Forwarded-For` value, when it
//! is a valid IP address, as set by the reverse proxy a bank puts in front; without that header the
//! per-address limit is skipped. Without a trusted proxy that header is client-chosen: the account
//! limit is then the one that holds. (Proposed follow-up: insert the peer `SocketAddr` in the request
//! extensions in `serve.rs`, and trust X-Forwarded-For only from configured proxies.)

use crate::app::Shared;
use crate::error::Result;
use axum::http::HeaderMap;

/// Window and lockout of the per-address limit, seconds.
pub const ADDRESS_WINDOW: i64 = 600;

/// Which limit is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Account { until: i64 },
    Address { until: i64 },
}

impl Locked {
    /// Whole minutes left, at least 1.
    pub fn minutes(self, now: i64) -> i64 {
        let until = match self {
            Locked::Account { until } | Locked::Address { until } => until,
        };
        ((until - now + 59) / 60).max(1)
    }
}

/// The first `X-Forwarded-For` address, if it parses as an IP address.
pub fn source_address(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-forwarded-for")?.to_str().ok()?;
    let first = v.split(',').next()?.trim();
    first.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string())
}

pub fn account_key(username: &str) -> String {
    format!("acct:{}", username.trim().to_lowercase())
}

fn address_key(addr: &str) -> String {
    format!("addr:{addr}")
}

/// Whether the account or the address is locked now.
pub async fn check(s: &Shared, username: &str, addr: Option<&str>, now: i64) -> Result<Option<Locked>> {
    if let Some(a) = addr {
        let until = s.store.locked_until(&address_key(a)).await?;
        if until > now {
            return Ok(Some(Locked::Address { until }));
        }
    }
    let until = s.store.locked_until(&account_key(username)).await?;
    if until > now {
        return Ok(Some(Locked::Account { until }));
    }
    Ok(None)
}

/// Records a failed password or TOTP attempt; returns the lock it triggered, if any.
pub async fn failed(s: &Shared, username: &str, addr: Option<&str>, now: i64) -> Result<Option<Locked>> {
    let login = &s.config.login;
    let lockout = login.lockout.max(1) as i64;
    let mut locked = None;
    if let Some(a) = addr {
        let key = address_key(a);
        let n = s.store.record_failure(&key, now, ADDRESS_WINDOW).await?;
        if n >= i64::from(login.max_failures_per_address.max(1)) {
            s.store.lock(&key, now + ADDRESS_WINDOW).await?;
            tracing::warn!(address = %a, failures = n, "sign-in locked for a source address");
            locked = Some(Locked::Address {
                until: now + ADDRESS_WINDOW,
            });
        }
    }
    let key = account_key(username);
    let n = s.store.record_failure(&key, now, lockout).await?;
    if n >= i64::from(login.max_failures.max(1)) {
        s.store.lock(&key, now + lockout).await?;
        tracing::warn!(failures = n, "sign-in locked for an account");
        locked = Some(Locked::Account { until: now + lockout });
    }
    Ok(locked)
}

/// After a successful sign-in step: the account's failures are forgotten (not the address's, or one
/// valid account would reset an attacker's count).
pub async fn succeeded(s: &Shared, username: &str) -> Result<()> {
    s.store.clear_failures(&account_key(username)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn address_from_forwarded_for() {
        let mut h = HeaderMap::new();
        assert_eq!(source_address(&h), None);
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.1"),
        );
        assert_eq!(source_address(&h).as_deref(), Some("203.0.113.7"));
        h.insert("x-forwarded-for", HeaderValue::from_static("not-an-ip"));
        assert_eq!(source_address(&h), None);
        h.insert("x-forwarded-for", HeaderValue::from_static("2001:db8::1"));
        assert_eq!(source_address(&h).as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn minutes_left() {
        assert_eq!(Locked::Account { until: 1000 }.minutes(1000 - 61), 2);
        assert_eq!(Locked::Address { until: 1000 }.minutes(999), 1);
        assert_eq!(account_key(" Taro "), "acct:taro");
    }
}
