//! Sign-in abuse limits (FISC item 41): failed password and TOTP attempts count per account and per
//! source address; past the limit the key is locked for a while and the page says so.
//!
//! - Per account (`acct:<username>`): `config.login.max_failures` failures within `config.login.lockout`
//!   seconds lock the account for `config.login.lockout` seconds. Unknown usernames count the same way
//!   (and get the same message), so the limit reveals nothing about which accounts exist.
//! - Per source address (`addr:<ip>`): `config.login.max_failures_per_address` failures within 10
//!   minutes lock the address for 10 minutes.
//!
//! The source address ([`SourceAddr`]): the TCP peer of the connection (`serve.rs` puts it in every
//! request's extensions as [`ClientAddr`]). `X-Forwarded-For` is believed only when that peer is one
//! of `config.login.trusted_proxies`: the header is then read from the right, skipping trusted
//! proxies, and the first address that is not one is the source (a client can prepend anything to
//! the header, but not past the proxy that appends its peer). From any other peer the header is
//! client-chosen and ignored, so forging it does not escape the per-address limit.

use crate::app::Shared;
use crate::config::IpNet;
use crate::error::Result;
use crate::serve::ClientAddr;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::net::IpAddr;

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

/// The source address of a sign-in attempt (module documentation); `None` only for a request that
/// did not come through a listener (tests calling the router directly): no per-address limit then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddr(pub Option<IpAddr>);

impl FromRequestParts<Shared> for SourceAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &Shared) -> std::result::Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ClientAddr>().map(|c| c.0.ip());
        Ok(SourceAddr(source_address(
            peer,
            &parts.headers,
            &s.config.login.trusted_proxies,
        )))
    }
}

/// The source address: the peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` address that is not a trusted proxy (all of them trusted: the left-most; an
/// entry that is not an IP address stops the walk at the last trusted hop).
pub fn source_address(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut source = peer;
    for hop in hops.iter().rev().take(32) {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            break;
        };
        source = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(source)
}

pub fn account_key(username: &str) -> String {
    format!("acct:{}", username.trim().to_lowercase())
}

fn address_key(addr: IpAddr) -> String {
    format!("addr:{addr}")
}

/// Whether the address or the account (when known: a passkey sign-in names no account before the
/// assertion) is locked now.
pub async fn check(s: &Shared, username: Option<&str>, addr: SourceAddr, now: i64) -> Result<Option<Locked>> {
    if let Some(a) = addr.0 {
        let until = s.store.locked_until(&address_key(a)).await?;
        if until > now {
            return Ok(Some(Locked::Address { until }));
        }
    }
    if let Some(username) = username {
        let until = s.store.locked_until(&account_key(username)).await?;
        if until > now {
            return Ok(Some(Locked::Account { until }));
        }
    }
    Ok(None)
}

/// Records a failed password, TOTP or passkey attempt; returns the lock it triggered, if any.
pub async fn failed(
    s: &Shared,
    username: Option<&str>,
    addr: SourceAddr,
    now: i64,
) -> Result<Option<Locked>> {
    let login = &s.config.login;
    let lockout = login.lockout.max(1) as i64;
    let mut locked = None;
    if let Some(a) = addr.0 {
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
    let Some(username) = username else {
        return Ok(locked);
    };
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().filter_map(|n| n.parse().ok()).collect()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let peer = Some(ip("198.51.100.1"));
        assert_eq!(source_address(peer, &h, &[]), peer, "no trusted proxies");
        assert_eq!(
            source_address(peer, &h, &nets(&["10.0.0.0/8"])),
            peer,
            "peer not trusted"
        );
        assert_eq!(source_address(None, &h, &[]), None);
        assert_eq!(
            source_address(Some(ip("::ffff:198.51.100.1")), &HeaderMap::new(), &[]),
            peer,
            "IPv4-mapped peer"
        );
    }

    #[test]
    fn forwarded_for_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1"]);
        let peer = Some(ip("10.0.0.2"));
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static(v));
            source_address(peer, &h, &trusted)
        };
        assert_eq!(with("203.0.113.7"), Some(ip("203.0.113.7")));
        // A forged left part is not believed: the right-most untrusted hop is the source.
        assert_eq!(with("1.2.3.4, 203.0.113.7"), Some(ip("203.0.113.7")));
        assert_eq!(
            with("1.2.3.4, 203.0.113.7, 192.0.2.1, 10.1.1.1"),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(with("2001:db8::1"), Some(ip("2001:db8::1")));
        // All hops trusted: the left-most; garbage stops the walk at the last trusted hop.
        assert_eq!(with("10.9.9.9, 192.0.2.1"), Some(ip("10.9.9.9")));
        assert_eq!(with("not-an-ip, 10.3.3.3"), Some(ip("10.3.3.3")));
        assert_eq!(with("203.0.113.7, not-an-ip"), peer);
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(source_address(peer, &HeaderMap::new(), &trusted), peer);
        // Several header lines are one list, in order.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.5"));
        assert_eq!(source_address(peer, &h, &trusted), Some(ip("198.51.100.5")));
    }

    #[test]
    fn minutes_left() {
        assert_eq!(Locked::Account { until: 1000 }.minutes(1000 - 61), 2);
        assert_eq!(Locked::Address { until: 1000 }.minutes(999), 1);
        assert_eq!(account_key(" Taro "), "acct:taro");
    }
}
