//! Sign-in abuse limits (FISC item 39 and 41; NIST SP 800-63B §5.2.2 "Rate Limiting (Throttling)"):
//! online guessing of passwords and TOTP codes is slowed, then stopped, without letting a stranger
//! who knows a username lock its owner out.
//!
//! Every attempt is **counted before it is checked** ([`admit`]): each key below is one row of the
//! store, changed by an atomic compare-and-swap ([`Store::throttle_admit`]), so concurrent attempts
//! (on one instance or several, SQLite or PostgreSQL) are each counted once and judged on the count
//! of those before them; an attempt refused is never verified. A success gives back what it was
//! counted ([`succeeded`]); a failure needs nothing more, it is already counted.
//!
//! - **Per account and address** (`pair:<username>@<ip>`): `login.max_failures` attempts that did
//!   not succeed within `login.lockout` seconds lock this account *for this address only* until the
//!   window ends. This is what stops guessing from one address (after 5 tries, 5 per 15 minutes).
//! - **Per account, growing delay** (`acct:<username>`, consecutive failures from anywhere): after
//!   `login.max_failures` of them, each further attempt must wait `login.delay` seconds after the
//!   previous one, doubling with each failure up to `login.max_delay`. An attempt made during the
//!   delay is refused unchecked and not counted, so it does not lengthen the delay: the account's
//!   owner, from another address, waits at most `max_delay` (60 s by default), never a lock. This is
//!   what slows guessing spread over many addresses.
//! - **Per account, cap** (the same key): after `login.max_account_failures` consecutive failures (at
//!   most 100, NIST SP 800-63B §5.2.2: "no more than 100 consecutive failed authentication attempts
//!   on a single subscriber account") password and code attempts on the account stop, from every
//!   address, until a success by another method (a passkey: [`succeeded`] clears the count), an
//!   operator deletes the row, or 30 days pass without an attempt ([`crate::store::THROTTLE_KEEP`]).
//!   With the delays, reaching it takes a sustained attack of more than an hour from many addresses;
//!   each refusal is logged.
//! - **Per source address** (`addr:<ip>`): `login.max_failures_per_address` attempts that did not
//!   succeed within 10 minutes, on any accounts (password spraying), stop further attempts from the
//!   address for the rest of the window, except on accounts that have signed in successfully from
//!   that address within 30 days (the pair row remembers it): the other people behind the same NAT
//!   or proxy who use it normally keep signing in.
//!
//! Unknown usernames count the same way (and get the same messages), so the limits reveal nothing
//! about which accounts exist. Time is a parameter (`now`, seconds) everywhere, so tests move it.
//!
//! The source address ([`SourceAddr`]): the TCP peer of the connection (`serve.rs` puts it in every
//! request's extensions as [`ClientAddr`]). `X-Forwarded-For` is believed only when that peer is one
//! of `config.login.trusted_proxies`: the header is then read from the right, skipping trusted
//! proxies, and the first address that is not one is the source (a client can prepend anything to
//! the header, but not past the proxy that appends its peer). From any other peer the header is
//! client-chosen and ignored, so forging it does not escape the per-address limit.

use crate::app::Shared;
use crate::config::{IpNet, Login};
use crate::serve::ClientAddr;
use crate::store::{Store, Throttle};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::net::IpAddr;

/// Window of the per-address limit, seconds.
pub const ADDRESS_WINDOW: i64 = 600;

/// How long a successful sign-in from an address exempts that account there from the address limit.
pub const KNOWN_FOR: i64 = 30 * 86_400;

/// NIST SP 800-63B §5.2.2: the cap on consecutive failed attempts on one account.
pub const NIST_CAP: u32 = 100;

/// Why an attempt was refused, unchecked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// The account is locked for this source address (only) until then.
    Account { until: i64 },
    /// Attempts on the account are slowed: the next one is accepted from then on.
    Delayed { until: i64 },
    /// The account reached its cap of consecutive failures.
    Capped,
    /// The source address made too many failed attempts (on accounts not known there).
    Address { until: i64 },
}

impl Locked {
    /// Whole minutes left, at least 1.
    pub fn minutes(self, now: i64) -> i64 {
        ((self.until() - now + 59) / 60).max(1)
    }

    /// Whole seconds left, at least 1.
    pub fn seconds(self, now: i64) -> i64 {
        (self.until() - now).max(1)
    }

    fn until(self) -> i64 {
        match self {
            Locked::Account { until } | Locked::Delayed { until } | Locked::Address { until } => until,
            Locked::Capped => i64::MAX / 2,
        }
    }
}

/// The limits, from `config.login` (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub pair_limit: i64,
    pub pair_window: i64,
    pub address_limit: i64,
    pub free: i64,
    pub delay: i64,
    pub max_delay: i64,
    pub cap: i64,
}

impl Rules {
    pub fn of(login: &Login) -> Rules {
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX / 4);
        Rules {
            pair_limit: i64::from(login.max_failures.max(1)),
            pair_window: secs(login.lockout.max(1)),
            address_limit: i64::from(login.max_failures_per_address.max(1)),
            free: i64::from(login.max_failures.max(1)),
            delay: secs(login.delay),
            max_delay: secs(login.max_delay.max(login.delay)),
            cap: i64::from(login.max_account_failures.clamp(1, NIST_CAP)),
        }
    }

    /// The wait after the `n`-th consecutive failure on an account: none before `free`, then
    /// `delay`, doubling, at most `max_delay`.
    pub fn delay_after(&self, n: i64) -> i64 {
        if n < self.free || self.delay <= 0 {
            return 0;
        }
        let doublings = u32::try_from(n - self.free).unwrap_or(u32::MAX).min(40);
        self.delay.saturating_mul(1i64 << doublings).min(self.max_delay)
    }

    /// A counter with a window (per account and address, per address): this attempt counted, or
    /// the end of the window when `limit` attempts are already in it.
    fn windowed(
        row: Option<&Throttle>,
        now: i64,
        limit: i64,
        window: i64,
    ) -> std::result::Result<Throttle, i64> {
        let known_until = row.map_or(0, |r| r.known_until);
        let (failures, start) = match row {
            Some(r) if r.failures > 0 && now - r.window_start < window => (r.failures, r.window_start),
            _ => (0, now),
        };
        if failures >= limit {
            return Err(start.saturating_add(window));
        }
        Ok(Throttle {
            failures: failures + 1,
            window_start: start,
            next_at: now,
            known_until,
        })
    }

    /// The account's counter: refused when capped or within the delay; else counted, and the
    /// delay before the next attempt set.
    fn account(&self, row: Option<&Throttle>, now: i64) -> std::result::Result<Throttle, i64> {
        let r = row.copied().unwrap_or_default();
        if r.failures >= self.cap {
            return Err(i64::MAX);
        }
        if now < r.next_at {
            return Err(r.next_at);
        }
        let n = r.failures + 1;
        Ok(Throttle {
            failures: n,
            window_start: if r.failures == 0 { now } else { r.window_start },
            next_at: now.saturating_add(self.delay_after(n)),
            known_until: r.known_until,
        })
    }
}

/// An attempt let through: what it was counted under, for [`succeeded`] and [`after_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    account: Option<String>,
    pair: Option<(String, Throttle)>,
    /// `None` when there is no address, or the address limit did not apply (a known account).
    address: Option<(String, Throttle)>,
    account_row: Option<Throttle>,
    addr: Option<IpAddr>,
    rules: Rules,
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

fn pair_key(username: &str, addr: IpAddr) -> String {
    format!("pair:{}@{addr}", username.trim().to_lowercase())
}

fn address_key(addr: IpAddr) -> String {
    format!("addr:{addr}")
}

/// Counts an attempt on `username` (when known: a passkey sign-in names no account before the
/// assertion) from `addr` before it is checked: `Err` when a limit refuses it, and then it must not
/// be checked (module documentation). Order: the (account, address) lock, the address limit, the
/// account's delay and cap; a refusal by a later one gives back what the earlier ones counted.
pub async fn admit(
    store: &Store,
    rules: Rules,
    username: Option<&str>,
    addr: SourceAddr,
    now: i64,
) -> std::result::Result<std::result::Result<Admitted, Locked>, sqlx::Error> {
    let mut adm = Admitted {
        account: None,
        pair: None,
        address: None,
        account_row: None,
        addr: addr.0,
        rules,
    };
    if let (Some(u), Some(a)) = (username, addr.0) {
        let key = pair_key(u, a);
        match store
            .throttle_admit(&key, |r| {
                Rules::windowed(r, now, rules.pair_limit, rules.pair_window)
            })
            .await?
        {
            Ok(row) => adm.pair = Some((key, row)),
            Err(until) => return Ok(Err(Locked::Account { until })),
        }
    }
    let known = adm.pair.as_ref().is_some_and(|(_, r)| r.known_until > now);
    if let (Some(a), false) = (addr.0, known) {
        let key = address_key(a);
        match store
            .throttle_admit(&key, |r| {
                Rules::windowed(r, now, rules.address_limit, ADDRESS_WINDOW)
            })
            .await?
        {
            Ok(row) => adm.address = Some((key, row)),
            Err(until) => {
                give_back(store, &adm).await?;
                tracing::warn!(address = %a, "sign-in refused: too many failures from the address");
                return Ok(Err(Locked::Address { until }));
            }
        }
    }
    if let Some(u) = username {
        let key = account_key(u);
        match store.throttle_admit(&key, |r| rules.account(r, now)).await? {
            Ok(row) => {
                adm.account = Some(key);
                adm.account_row = Some(row);
            }
            Err(until) => {
                give_back(store, &adm).await?;
                if until == i64::MAX {
                    tracing::warn!("sign-in refused: the account reached its cap of consecutive failures");
                    return Ok(Err(Locked::Capped));
                }
                return Ok(Err(Locked::Delayed { until }));
            }
        }
    }
    Ok(Ok(adm))
}

async fn give_back(store: &Store, adm: &Admitted) -> std::result::Result<(), sqlx::Error> {
    for (key, _) in adm.pair.iter().chain(adm.address.iter()) {
        store.throttle_refund(key).await?;
    }
    Ok(())
}

/// After the attempt failed (it is already counted): the limit the next attempt from here will meet,
/// if any, for the page to say so now.
pub fn after_failure(adm: &Admitted, now: i64) -> Option<Locked> {
    let r = adm.rules;
    if let Some((_, p)) = &adm.pair {
        if p.failures >= r.pair_limit {
            return Some(Locked::Account {
                until: p.window_start.saturating_add(r.pair_window),
            });
        }
    }
    if let Some((_, a)) = &adm.address {
        if a.failures >= r.address_limit {
            tracing::warn!(address = ?adm.addr, failures = a.failures, "sign-in stopped for a source address");
            return Some(Locked::Address {
                until: a.window_start.saturating_add(ADDRESS_WINDOW),
            });
        }
    }
    match adm.account_row {
        Some(a) if a.failures >= r.cap => Some(Locked::Capped),
        Some(a) if a.next_at > now => Some(Locked::Delayed { until: a.next_at }),
        _ => None,
    }
}

/// After a successful sign-in step: the account's consecutive failures and this address's failures
/// on it are forgotten, and the account is known at this address; the address limit gets back the
/// attempt it counted (not more: one valid account must not reset an attacker's count).
pub async fn succeeded(
    store: &Store,
    adm: &Admitted,
    username: &str,
    now: i64,
) -> std::result::Result<(), sqlx::Error> {
    store.throttle_succeeded(&account_key(username), 0).await?;
    if let Some(a) = adm.addr {
        store
            .throttle_succeeded(&pair_key(username, a), now.saturating_add(KNOWN_FOR))
            .await?;
    }
    if let Some((key, _)) = &adm.address {
        store.throttle_refund(key).await?;
    }
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
        assert_eq!(Locked::Delayed { until: 1000 }.seconds(990), 10);
        assert_eq!(account_key(" Taro "), "acct:taro");
        assert_eq!(pair_key(" Taro ", ip("192.0.2.1")), "pair:taro@192.0.2.1");
    }

    fn rules() -> Rules {
        Rules::of(&Login::default())
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let r = rules();
        let delays: Vec<i64> = (1..=13).map(|n| r.delay_after(n)).collect();
        assert_eq!(delays, [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(r.delay_after(i64::MAX), 60, "no overflow");
        let cfg = Login {
            max_account_failures: 1000,
            ..Login::default()
        };
        assert_eq!(
            Rules::of(&cfg).cap,
            100,
            "NIST SP 800-63B §5.2.2: no more than 100"
        );
    }

    #[test]
    fn account_rule_refuses_within_the_delay_and_at_the_cap() {
        let r = rules();
        let row = Throttle {
            failures: 5,
            window_start: 100,
            next_at: 200,
            known_until: 0,
        };
        assert_eq!(r.account(Some(&row), 199), Err(200), "within the delay");
        let next = r.account(Some(&row), 200);
        assert_eq!(
            next,
            Ok(Throttle {
                failures: 6,
                window_start: 100,
                next_at: 202,
                known_until: 0
            })
        );
        let capped = Throttle { failures: 100, ..row };
        assert_eq!(
            r.account(Some(&capped), 1_000_000),
            Err(i64::MAX),
            "the cap does not expire by itself"
        );
    }

    #[test]
    fn windowed_rule_starts_again_after_its_window() {
        let row = Throttle {
            failures: 5,
            window_start: 1000,
            next_at: 1000,
            known_until: 77,
        };
        assert_eq!(Rules::windowed(Some(&row), 1899, 5, 900), Err(1900));
        let again = Rules::windowed(Some(&row), 1900, 5, 900);
        assert_eq!(
            again,
            Ok(Throttle {
                failures: 1,
                window_start: 1900,
                next_at: 1900,
                known_until: 77
            }),
            "a new window keeps what is known"
        );
    }
}
