//! Work off the request path, on a one-second tick: key sets refreshed every `refresh` seconds and the
//! revocation feed polled every `interval` (FAPI 2.0 §5.3.4), one fetch per period for all workers
//! (leases in shared storage), and the DPoP nonce key converged on the shared one.
//!
//! The feed is read to its end on every poll: a full page is followed at once by the next one (up to
//! [`MAX_FEED_PAGES`] per poll), so a mass revocation reaches every worker within one or two
//! intervals instead of one page per interval.

use crate::host::{Callout, CalloutResponse, Host, Level};
use crate::shared;
use crate::worker::{RevokedState, Worker, REVOKED_KEY, REVOKED_SEQ_KEY};
use fapi_core::revocation::FeedPage;
use std::collections::HashMap;

/// How long one worker may take to fetch keys before another may try.
const FETCH_LEASE_SECONDS: u64 = 5;
pub const CALL_TIMEOUT_MS: u64 = 3000;
/// Pages read back to back in one poll (each at most the authorization server's page size).
pub const MAX_FEED_PAGES: u32 = 100;

enum Pending {
    Jwks(String),
    /// The `n`th page of this poll, asked for after `cursor`.
    Feed {
        page: u32,
        cursor: Option<String>,
    },
}

#[derive(Default)]
pub struct Background {
    pending: HashMap<u32, Pending>,
}

/// A GET of `path` on `cluster`.
pub fn get_callout(cluster: &str, authority: &str, path: &str, authorization: Option<&str>) -> Callout {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), authority.to_string()),
        ("accept".to_string(), "application/json".to_string()),
    ];
    if let Some(a) = authorization {
        headers.push(("authorization".to_string(), a.to_string()));
    }
    Callout {
        cluster: cluster.to_string(),
        headers,
        body: None,
        timeout_ms: CALL_TIMEOUT_MS,
    }
}

/// (authority, path) of an http(s) URL.
pub fn split_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.split_once("://")?.1;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((authority.to_string(), path.to_string()))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Background {
    /// Callouts started and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The one-second tick.
    pub fn tick<H: Host + ?Sized>(&mut self, w: &mut Worker, host: &mut H) {
        let now = host.now();
        // Key sets: take what others fetched; fetch when due and nobody else is.
        let remotes: Vec<(String, fapi_core::policy::RemoteJwks)> = w
            .guard
            .policy
            .issuers
            .iter()
            .filter_map(|i| i.remote.clone().map(|r| (i.rules.issuer.clone(), r)))
            .collect();
        for (issuer, remote) in remotes {
            w.sync_keys(host, &issuer);
            let due = w
                .fetched(&issuer)
                .is_none_or(|f| now.saturating_sub(f.fetched_at) >= remote.refresh as i64);
            if due && shared::take_lease(host, &format!("jwks/{issuer}"), now, FETCH_LEASE_SECONDS) {
                let started = split_uri(&remote.uri).and_then(|(authority, path)| {
                    host.http_call(&get_callout(&remote.cluster, &authority, &path, None))
                });
                match started {
                    Some(token) => {
                        self.pending.insert(token, Pending::Jwks(issuer));
                    }
                    None => host.counter("jwks.fetch_failed", 1),
                }
            }
        }
        // Revocation feed.
        w.sync_revocations(host);
        if let Some(feed) = w.guard.policy.doc.settings.revocation_feed.clone() {
            if shared::take_lease(host, "feed", now, feed.interval) {
                let cursor = w.feed_cursor.clone();
                self.poll_feed(w, host, 1, cursor);
            }
        }
        w.sync_nonce_secret(host);
        w.metrics.flush(host);
        w.sweep(now);
    }

    fn poll_feed<H: Host + ?Sized>(&mut self, w: &Worker, host: &mut H, page: u32, cursor: Option<String>) {
        let Some(feed) = &w.guard.policy.doc.settings.revocation_feed else {
            return;
        };
        let mut path = feed.path.clone();
        if let Some(c) = cursor.as_deref().filter(|c| !c.is_empty()) {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str("since=");
            path.push_str(&url_encode(c));
        }
        let authority = feed.authority.clone().unwrap_or_else(|| feed.cluster.clone());
        let auth = feed.token.as_ref().map(|t| format!("Bearer {t}"));
        match host.http_call(&get_callout(&feed.cluster, &authority, &path, auth.as_deref())) {
            Some(token) => {
                self.pending.insert(token, Pending::Feed { page, cursor });
            }
            None => host.counter("revocation_feed.failed", 1),
        }
    }

    /// The answer to a callout this object started (others are ignored).
    pub fn on_callout<H: Host + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        token: u32,
        response: &CalloutResponse,
    ) {
        let Some(pending) = self.pending.remove(&token) else {
            return;
        };
        let now = host.now();
        match pending {
            Pending::Jwks(issuer) => {
                w.store_jwks(host, &issuer, &response.status, &response.body, now);
            }
            Pending::Feed { page, cursor } => {
                let parsed = if response.status == "200" {
                    FeedPage::parse(&response.body)
                } else {
                    Err(format!("status {}", response.status))
                };
                match parsed {
                    Ok(p) => {
                        merge_feed(host, &p, now);
                        host.counter("revocation_feed.ok", 1);
                        w.sync_revocations(host);
                        // A page with entries may not be the last: read on at once, until a page
                        // brings nothing new (or the cursor stops moving).
                        let moved = cursor.as_deref() != Some(p.cursor.as_str());
                        if !p.revoked.is_empty() && moved && page < MAX_FEED_PAGES {
                            self.poll_feed(w, host, page + 1, Some(p.cursor));
                        }
                    }
                    Err(e) => {
                        host.log(
                            Level::Warn,
                            &format!("fapi-guard: revocation feed poll failed: {e}"),
                        );
                        host.counter("revocation_feed.failed", 1);
                    }
                }
            }
        }
    }
}

/// Merges a feed page into the shared revocation list (compare-and-swap, retried), then bumps the
/// sequence number workers watch.
fn merge_feed<H: Host + ?Sized>(host: &mut H, page: &FeedPage, now: i64) {
    for _ in 0..8 {
        let current = shared::read_published(host, REVOKED_KEY);
        let cas = current.as_ref().and_then(|p| p.cas);
        let mut state = current
            .and_then(|p| RevokedState::parse(&p.body))
            .unwrap_or(RevokedState {
                cursor: String::new(),
                entries: Vec::new(),
            });
        state.merge(page, now);
        if shared::publish(host, REVOKED_KEY, now, &state.to_json(), cas).is_ok() {
            // Then the sequence: a worker that sees a new sequence reads the list published before it.
            for _ in 0..8 {
                let seq = shared::read_published(host, REVOKED_SEQ_KEY);
                let next = seq.as_ref().map_or(1, |p| p.at.wrapping_add(1));
                if shared::publish(host, REVOKED_SEQ_KEY, next, &[], seq.and_then(|p| p.cas)).is_ok() {
                    break;
                }
            }
            return;
        }
    }
}
