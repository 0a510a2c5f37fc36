//! One request: gather its facts from Envoy, let fapi-core decide, then forward it with the verified
//! claims as headers or answer with the RFC 6750 / RFC 9449 / RFC 9470 error. May pause once to fetch
//! an issuer's keys (unknown kid, or none loaded yet) and once to introspect (RFC 7662) before deciding.

use crate::root::{now_of, split_uri, store_jwks};
use crate::shared;
use crate::worker::Worker;
use fapi_core::decision::{Allow, Deny, Scheme};
use fapi_core::extract::{credentials, is_uuid, uuid_v4, xfcc_client_cert, ClientCert};
use fapi_core::policy::CertificateSource;
use fapi_core::revocation::{introspection_active, introspection_request_body};
use fapi_core::{b64, Decision, Denial, RequestFacts};
use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

const INTERACTION_ID: &str = "x-fapi-interaction-id";
const XFCC: &str = "x-forwarded-client-cert";

enum Pending {
    Jwks(String),
    Introspection { allow: Allow, token_hash: [u8; 32] },
}

pub struct Request {
    _id: u32,
    worker: Rc<RefCell<Worker>>,
    facts: RequestFacts,
    interaction_id: String,
    /// The issuer whose keys this request already refetched (at most once per request).
    refetched: bool,
    pending: Option<Pending>,
    /// Claim headers the client sent (removed before the upstream).
    spoofed: Vec<String>,
}

impl Request {
    pub fn new(id: u32, worker: Rc<RefCell<Worker>>) -> Self {
        Request {
            _id: id,
            worker,
            facts: RequestFacts::default(),
            interaction_id: String::new(),
            refetched: false,
            pending: None,
            spoofed: Vec::new(),
        }
    }

    fn gather_facts(&mut self) {
        let trust_xfcc = matches!(
            self.worker.borrow().guard.policy.doc.settings.client_certificate,
            CertificateSource::XForwardedClientCert
        );
        let mut facts = RequestFacts::default();
        let mut xfcc = None;
        let mut spoofed = Vec::new();
        let worker = self.worker.clone();
        let w = worker.borrow();
        let claim_headers = &w.guard.policy.doc.settings.forward;
        // As bytes: a header value may hold any octet (RFC 9110 §5.5 obs-text), and the SDK's text
        // variant panics on one that is not UTF-8. Values the decision reads are taken as text with
        // anything not UTF-8 replaced, which no check accepts (fail closed).
        let headers = self.get_http_request_headers_bytes();
        // Takes the SDK's buffer as the String when it is UTF-8 (no copy).
        let text = |v: Vec<u8>| {
            String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        for (name, value) in headers {
            if claim_headers.values().any(|h| *h == name) {
                spoofed.push(name);
                continue;
            }
            match name.as_str() {
                ":method" => facts.method = text(value),
                ":scheme" => facts.scheme = text(value),
                ":authority" => facts.authority = text(value),
                ":path" => facts.path = text(value),
                "authorization" => facts.authorization.push(text(value)),
                "dpop" => facts.dpop.push(text(value)),
                // Sent twice: neither is believed (a new id replaces both).
                INTERACTION_ID if facts.interaction_id.is_some() => {
                    facts.interaction_id = Some(String::new())
                }
                INTERACTION_ID => facts.interaction_id = Some(text(value)),
                XFCC => xfcc = Some(text(value)),
                _ => {}
            }
        }
        facts.client_cert = if trust_xfcc {
            xfcc.as_deref().and_then(xfcc_client_cert)
        } else {
            // Never believe a client certificate header from outside; the TLS connection is the truth.
            if xfcc.is_some() {
                self.set_http_request_header(XFCC, None);
            }
            self.get_property(vec!["connection", "sha256_peer_certificate_digest"])
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|d| !d.is_empty())
                .map(ClientCert::Digest)
        };
        drop(w);
        self.interaction_id = match &facts.interaction_id {
            Some(id) if is_uuid(id) => id.clone(),
            _ => uuid_v4(self.worker.borrow_mut().ids.next_id()),
        };
        self.spoofed = spoofed;
        self.facts = facts;
    }

    /// Removes incoming headers that carry claims, so only this filter can set them (only those the
    /// request has: each removal is a host call).
    fn remove_claim_headers(&mut self) {
        for name in std::mem::take(&mut self.spoofed) {
            self.set_http_request_header(&name, None);
        }
    }

    fn decide_and_act(&mut self) -> Action {
        let now = now_of(self);
        let decision = self.worker.borrow_mut().decide(&self.facts, now);
        match decision {
            Decision::Allow(allow) => self.after_allow(allow, now),
            Decision::Deny(deny) => {
                if let Some(issuer) = deny.refetch_issuer.clone() {
                    if !self.refetched {
                        // Another worker may have fetched newer keys since this one last synced:
                        // take them and decide again (at most once: refetched_by_other sets the flag).
                        if self.refetched_by_other(&issuer) {
                            return self.decide_and_act();
                        }
                        if self.refetch_keys(&issuer, &deny, now) {
                            return Action::Pause;
                        }
                    }
                }
                self.send_deny(&deny);
                Action::Pause
            }
        }
    }

    /// Another worker may already hold the new keys: syncs them from shared data; `true` when that
    /// changed this worker's set. Marks the request as refetched either way.
    fn refetched_by_other(&mut self, issuer: &str) -> bool {
        if self.refetched {
            return false;
        }
        self.refetched = true;
        let mut w = self.worker.borrow_mut();
        let before = w.fetched.get(issuer).map(|f| f.version);
        w.sync_keys(issuer);
        w.fetched.get(issuer).map(|f| f.version) != before
    }

    /// Fetches the issuer's keys now, rate-limited across workers. `true` when a fetch is under way.
    /// Call after [`Request::refetched_by_other`] found nothing newer.
    fn refetch_keys(&mut self, issuer: &str, deny: &Deny, now: i64) -> bool {
        let remote = {
            let w = self.worker.borrow();
            w.guard.policy.issuer(issuer).and_then(|i| i.remote.clone())
        };
        let Some(remote) = remote else { return false };
        // An unknown kid may be an attacker's invention: refetch at most every 10 s. No keys at all:
        // try every second.
        let period = if deny.denial == Denial::UnknownKid { 10 } else { 1 };
        if !shared::take_lease(&format!("refetch/{issuer}"), now, period) {
            return false;
        }
        let Some((authority, path)) = split_uri(&remote.uri) else {
            return false;
        };
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", authority.as_str()),
            ("accept", "application/json"),
        ];
        match self.dispatch_http_call(&remote.cluster, headers, None, vec![], Duration::from_secs(3)) {
            Ok(_) => {
                self.refetched = true;
                self.pending = Some(Pending::Jwks(issuer.to_string()));
                true
            }
            Err(_) => {
                self.worker.borrow_mut().metrics.event("jwks.fetch_failed");
                false
            }
        }
    }

    fn after_allow(&mut self, allow: Allow, now: i64) -> Action {
        if !allow.introspect {
            self.forward(&allow);
            return Action::Continue;
        }
        let introspection = self
            .worker
            .borrow()
            .guard
            .policy
            .doc
            .settings
            .introspection
            .clone();
        let Some(cfg) = introspection else {
            return self.refuse(&allow, Denial::RevocationStatusUnknown);
        };
        let token = match credentials(&self.facts) {
            Ok(Some((_, t))) => t.to_string(),
            _ => return self.refuse(&allow, Denial::RevocationStatusUnknown),
        };
        let token_hash = b64::sha256(&token);
        let cached = self.worker.borrow().introspected.get(&token_hash).copied();
        if let Some((active, until)) = cached {
            if until > now {
                return if active {
                    self.forward(&allow);
                    Action::Continue
                } else {
                    self.refuse(&allow, Denial::Inactive)
                };
            }
        }
        let body = introspection_request_body(&token);
        let authority = cfg.authority.clone().unwrap_or_else(|| cfg.cluster.clone());
        let mut headers = vec![
            (":method", "POST"),
            (":path", cfg.path.as_str()),
            (":authority", authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        if let Some(a) = &cfg.authorization {
            headers.push(("authorization", a.as_str()));
        }
        match self.dispatch_http_call(
            &cfg.cluster,
            headers,
            Some(body.as_bytes()),
            vec![],
            Duration::from_secs(3),
        ) {
            Ok(_) => {
                self.pending = Some(Pending::Introspection { allow, token_hash });
                Action::Pause
            }
            Err(_) => self.refuse(&allow, Denial::RevocationStatusUnknown),
        }
    }

    fn refuse(&mut self, allow: &Allow, denial: Denial) -> Action {
        let scheme = if allow.binding == fapi_core::decision::BindingKind::Dpop {
            Scheme::DPoP
        } else {
            Scheme::Bearer
        };
        let decision = self.worker.borrow().guard.refuse(
            &allow.rule,
            denial,
            Some(scheme),
            allow.claims.client_id.clone(),
        );
        if let Decision::Deny(d) = decision {
            self.send_deny(&d);
        }
        Action::Pause
    }

    fn forward(&mut self, allow: &Allow) {
        let strip = self.worker.borrow().guard.policy.doc.settings.strip_credentials;
        for (name, value) in &allow.forward {
            self.set_http_request_header(name, Some(value));
        }
        // A client's valid id is already on the request, once: only a generated or replaced one is set.
        if self.facts.interaction_id.as_deref() != Some(self.interaction_id.as_str()) {
            self.set_http_request_header(INTERACTION_ID, Some(&self.interaction_id));
        }
        if strip {
            if !self.facts.authorization.is_empty() {
                self.set_http_request_header("authorization", None);
            }
            if !self.facts.dpop.is_empty() {
                self.set_http_request_header("dpop", None);
            }
        }
        self.worker.borrow_mut().metrics.decision("allowed");
    }

    fn send_deny(&mut self, deny: &Deny) {
        let mut headers: Vec<(&str, &str)> = deny
            .www_authenticate
            .iter()
            .map(|c| ("www-authenticate", c.as_str()))
            .collect();
        headers.push(("content-type", "application/json"));
        headers.push(("cache-control", "no-store"));
        headers.push((INTERACTION_ID, self.interaction_id.as_str()));
        if let Some(n) = &deny.dpop_nonce {
            headers.push(("dpop-nonce", n.as_str()));
        }
        self.send_http_response(u32::from(deny.status), headers, Some(deny.body.as_bytes()));
        // One structured line per denial; never the token.
        warn!(
            "{}",
            serde_json::json!({
                "msg": "fapi-guard denied",
                "interaction_id": self.interaction_id,
                "status": deny.status,
                "reason": deny.reason(),
                "rule": deny.rule,
                "client_id": deny.client_id,
                "method": self.facts.method,
                "path": self.facts.path_only(),
            })
        );
        self.worker.borrow_mut().metrics.decision(deny.reason());
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let now = now_of(self);
        let status = self.get_http_call_response_header(":status").unwrap_or_default();
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        let action = match pending {
            Pending::Jwks(issuer) => {
                store_jwks(&mut self.worker.borrow_mut(), &issuer, &status, &body, now);
                self.decide_and_act()
            }
            Pending::Introspection { allow, token_hash } => {
                let answer = if status == "200" {
                    introspection_active(&body)
                } else {
                    Err(format!("status {status}"))
                };
                match answer {
                    Ok(active) => {
                        let mut w = self.worker.borrow_mut();
                        let secs = w
                            .guard
                            .policy
                            .doc
                            .settings
                            .introspection
                            .as_ref()
                            .map_or(5, |i| i.cache_seconds);
                        let until = (now + secs as i64).min(allow.claims.exp);
                        w.introspected.insert(token_hash, (active, until));
                        drop(w);
                        if active {
                            self.forward(&allow);
                            Action::Continue
                        } else {
                            self.refuse(&allow, Denial::Inactive)
                        }
                    }
                    Err(e) => {
                        warn!("fapi-guard: introspection failed: {e}");
                        self.refuse(&allow, Denial::RevocationStatusUnknown)
                    }
                }
            }
        };
        if action == Action::Continue {
            self.resume_http_request();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        self.gather_facts();
        self.remove_claim_headers();
        self.decide_and_act()
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if !self.interaction_id.is_empty() {
            self.set_http_response_header(INTERACTION_ID, Some(&self.interaction_id));
        }
        Action::Continue
    }
}
