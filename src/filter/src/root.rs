//! The root context of each VM: compiles the policy once (a bad one stops the plugin: fail closed),
//! shares the DPoP nonce key, and on a one-second tick keeps key sets and the revocation list fresh,
//! one fetch per period for all workers (leases in shared data).

use crate::metrics::Metrics;
use crate::shared;
use crate::worker::{FetchedKeys, Worker};
use fapi_core::cache::RevocationList;
use fapi_core::jwks::Jwks;
use fapi_core::policy::{Policy, Severity};
use fapi_core::revocation::FeedPage;
use fapi_core::Guard;
use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

pub const REVOKED_KEY: &str = "revoked";
/// A counter bumped with every publication of the revocation list (cheap to read per request).
pub const REVOKED_SEQ_KEY: &str = "revoked-seq";
/// How long one worker may take to fetch keys or poll the feed before another may try.
const FETCH_LEASE_SECONDS: u64 = 5;
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

pub fn jwks_key(issuer: &str) -> String {
    format!("jwks/{issuer}")
}

enum Pending {
    Jwks(String),
    Feed,
}

#[derive(Default)]
pub struct Root {
    worker: Option<Rc<RefCell<Worker>>>,
    pending: HashMap<u32, Pending>,
}

pub fn now_of(ctx: &dyn Context) -> i64 {
    ctx.get_current_time()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The revocation list as all workers share it.
pub struct RevokedState {
    pub cursor: String,
    pub entries: Vec<(String, String, i64)>,
}

impl RevokedState {
    pub fn parse(body: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let cursor = v
            .get("cursor")
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string();
        let entries = v
            .get("entries")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some((
                            e.get(0)?.as_str()?.to_string(),
                            e.get(1)?.as_str()?.to_string(),
                            e.get(2)?.as_i64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(RevokedState { cursor, entries })
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::json!({"cursor": self.cursor, "entries": self.entries})
            .to_string()
            .into_bytes()
    }

    pub fn list(&self) -> RevocationList {
        let mut list = RevocationList::new();
        for (iss, jti, exp) in &self.entries {
            list.revoke(iss, jti, *exp);
        }
        list
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            error!("fapi-guard: no plugin configuration: give the compiled policy (fapictl policy compile) as a StringValue");
            return false;
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            error!("fapi-guard: the plugin configuration is not UTF-8");
            return false;
        };
        let policy = match Policy::from_json(text) {
            Ok((policy, warnings)) => {
                for w in warnings {
                    warn!("fapi-guard: configuration {w}");
                }
                policy
            }
            Err(problems) => {
                for p in problems.iter().filter(|p| p.severity == Severity::Error) {
                    error!("fapi-guard: configuration {p}");
                }
                error!(
                    "fapi-guard: refusing to start: the policy is invalid (no traffic passes this filter)"
                );
                return false;
            }
        };
        info!(
            "fapi-guard: policy {} loaded: {} issuer(s), {} rule(s)",
            policy.doc.name.as_deref().unwrap_or("(unnamed)"),
            policy.issuers.len(),
            policy.rules.len()
        );
        let mut policy = policy;
        // Inline key sets get their ES256 tables once, here, like fetched ones.
        for issuer in &mut policy.issuers {
            issuer.inline_keys = issuer.inline_keys.take().map(Jwks::prepared);
        }
        // The ES256 generator table (about 13 ms in V8) is built once per VM, here, not by a request.
        let _ = fapi_core::p256_tables::generator_table();
        let mut guard = Guard::new(policy, None);
        if let Some(secret) = shared::nonce_secret(random32) {
            guard.set_nonce_secret(&secret);
        }
        self.worker = Some(Rc::new(RefCell::new(Worker::new(guard, Metrics::default()))));
        self.set_tick_period(Duration::from_secs(1));
        true
    }

    fn on_tick(&mut self) {
        let now = now_of(self);
        let Some(worker) = self.worker.clone() else { return };
        let mut w = worker.borrow_mut();
        // Key sets: take what others fetched; fetch when due and nobody else is.
        let remotes: Vec<(String, fapi_core::policy::RemoteJwks)> = w
            .guard
            .policy
            .issuers
            .iter()
            .filter_map(|i| i.remote.clone().map(|r| (i.rules.issuer.clone(), r)))
            .collect();
        for (issuer, remote) in remotes {
            w.sync_keys(&issuer);
            let due = w
                .fetched
                .get(&issuer)
                .is_none_or(|f| now.saturating_sub(f.fetched_at) >= remote.refresh as i64);
            if due && shared::take_lease(&format!("jwks/{issuer}"), now, FETCH_LEASE_SECONDS) {
                match self.dispatch_get(&remote.cluster, &remote.uri, None) {
                    Some(token) => {
                        self.pending.insert(token, Pending::Jwks(issuer));
                    }
                    None => w.metrics.event("jwks.fetch_failed"),
                }
            }
        }
        // Revocation feed.
        w.sync_revocations();
        if let Some(feed) = w.guard.policy.doc.settings.revocation_feed.clone() {
            if shared::take_lease("feed", now, feed.interval) {
                let mut path = feed.path.clone();
                if let Some(cursor) = &w.feed_cursor {
                    path.push(if path.contains('?') { '&' } else { '?' });
                    path.push_str("since=");
                    path.push_str(&url_encode(cursor));
                }
                let authority = feed.authority.clone().unwrap_or_else(|| feed.cluster.clone());
                let auth = feed.token.as_ref().map(|t| format!("Bearer {t}"));
                match self.dispatch(&feed.cluster, &authority, &path, auth.as_deref()) {
                    Some(token) => {
                        self.pending.insert(token, Pending::Feed);
                    }
                    None => w.metrics.event("revocation_feed.failed"),
                }
            }
        }
        // Nonce key: converge on the one in shared data.
        let version = shared::version("nonce-secret");
        if version != w.nonce_version {
            if let Some(secret) = shared::nonce_secret(random32) {
                w.guard.set_nonce_secret(&secret);
                w.nonce_version = version;
            }
        }
        w.metrics.flush();
        if now.saturating_sub(w.last_sweep) >= 60 {
            w.last_sweep = now;
            w.cache.sweep(now - 300);
            w.revocations.sweep(now);
            w.introspected.retain(|_, (_, until)| *until > now);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(crate::http::Request::new(context_id, worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(pending) = self.pending.remove(&token) else {
            return;
        };
        let Some(worker) = self.worker.clone() else { return };
        let now = now_of(self);
        let status = self.get_http_call_response_header(":status").unwrap_or_default();
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        let mut w = worker.borrow_mut();
        match pending {
            Pending::Jwks(issuer) => {
                store_jwks(&mut w, &issuer, &status, &body, now);
            }
            Pending::Feed => {
                let page = if status == "200" {
                    FeedPage::parse(&body)
                } else {
                    Err(format!("status {status}"))
                };
                match page {
                    Ok(page) => {
                        merge_feed(&page, now);
                        w.metrics.event("revocation_feed.ok");
                        w.sync_revocations();
                    }
                    Err(e) => {
                        warn!("fapi-guard: revocation feed poll failed: {e}");
                        w.metrics.event("revocation_feed.failed");
                    }
                }
            }
        }
    }
}

/// Stores a fetched key set (shared and local). Used by the tick and by requests that met an unknown kid.
pub fn store_jwks(w: &mut Worker, issuer: &str, status: &str, body: &[u8], now: i64) -> bool {
    let parsed = if status == "200" {
        // Prepared: ES256 keys get their verification tables now, off the request path.
        Jwks::parse(body).map(Jwks::prepared).map_err(|e| e.to_string())
    } else {
        Err(format!("status {status}"))
    };
    match parsed {
        Ok(jwks) if !jwks.keys.is_empty() => {
            for s in &jwks.skipped {
                warn!(
                    "fapi-guard: key {} of {issuer} skipped: {}",
                    s.kid.as_deref().unwrap_or("(no kid)"),
                    s.error
                );
            }
            let _ = shared::publish(&jwks_key(issuer), now, body, None);
            let version = shared::version(&jwks_key(issuer));
            w.fetched.insert(
                issuer.to_string(),
                FetchedKeys {
                    jwks,
                    fetched_at: now,
                    version,
                },
            );
            w.metrics.event("jwks.fetched");
            true
        }
        Ok(_) => {
            warn!("fapi-guard: key set of {issuer} has no usable key; keeping the last good one");
            w.metrics.event("jwks.fetch_failed");
            false
        }
        Err(e) => {
            warn!("fapi-guard: fetching the key set of {issuer} failed ({e}); keeping the last good one");
            w.metrics.event("jwks.fetch_failed");
            false
        }
    }
}

/// Merges a feed page into the shared revocation list (compare-and-swap, retried).
fn merge_feed(page: &FeedPage, now: i64) {
    for _ in 0..8 {
        let current = shared::read_published(REVOKED_KEY);
        let cas = current.as_ref().and_then(|p| p.cas);
        let mut state = current
            .and_then(|p| RevokedState::parse(&p.body))
            .unwrap_or(RevokedState {
                cursor: String::new(),
                entries: Vec::new(),
            });
        state.entries.retain(|(_, _, exp)| *exp >= now);
        for r in &page.revoked {
            if !state.entries.iter().any(|(i, j, _)| *i == r.iss && *j == r.jti) {
                state.entries.push((r.iss.clone(), r.jti.clone(), r.exp));
            }
        }
        state.cursor = page.cursor.clone();
        if shared::publish(REVOKED_KEY, now, &state.to_json(), cas).is_ok() {
            // Then the sequence: a worker that sees a new sequence reads the list published before it.
            for _ in 0..8 {
                let seq = shared::read_published(REVOKED_SEQ_KEY);
                let next = seq.as_ref().map_or(1, |p| p.at.wrapping_add(1));
                if shared::publish(REVOKED_SEQ_KEY, next, &[], seq.and_then(|p| p.cas)).is_ok() {
                    break;
                }
            }
            return;
        }
    }
}

impl Root {
    fn dispatch_get(&self, cluster: &str, uri: &str, auth: Option<&str>) -> Option<u32> {
        let (authority, path) = split_uri(uri)?;
        self.dispatch(cluster, &authority, &path, auth)
    }

    fn dispatch(&self, cluster: &str, authority: &str, path: &str, auth: Option<&str>) -> Option<u32> {
        let mut headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/json"),
        ];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        self.dispatch_http_call(cluster, headers, None, vec![], CALL_TIMEOUT)
            .ok()
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

/// 32 random bytes from the host, or `None` (then no nonces are issued: rules requiring them refuse).
pub fn random32() -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).ok().map(|_| b)
}

pub fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    let _ = getrandom::getrandom(&mut b);
    b
}
