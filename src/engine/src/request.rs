//! One request: gather its facts from the proxy, let fapi-core decide, then forward it with the
//! verified claims as headers or answer with the RFC 6750 / RFC 9449 / RFC 9470 error. May pause once
//! to fetch an issuer's keys (unknown kid, or none loaded yet) and once to introspect (RFC 7662)
//! before deciding.

use crate::background::{get_callout, split_uri, CALL_TIMEOUT_MS};
use crate::host::{Callout, CalloutResponse, Level, RequestHost};
use crate::shared;
use crate::worker::Worker;
use fapi_core::decision::{Allow, BindingKind, Deny, Scheme};
use fapi_core::extract::{credentials, is_uuid, uuid_v4, xfcc_client_cert, ClientCert};
use fapi_core::policy::CertificateSource;
use fapi_core::revocation::{introspection_active, introspection_request_body};
use fapi_core::{b64, Decision, Denial, RequestFacts};

/// FAPI 2.0 / FAPI 1 Baseline §6.2.1: the interaction id the resource server returns.
pub const INTERACTION_ID: &str = "x-fapi-interaction-id";
const XFCC: &str = "x-forwarded-client-cert";

/// What the proxy does with the request after a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on to the upstream (or on to the next filter).
    Continue,
    /// Wait: a callout is under way, or a local reply was sent.
    Pause,
}

enum Pending {
    Jwks(String),
    Introspection { allow: Allow, token_hash: [u8; 32] },
}

#[derive(Default)]
pub struct Request {
    facts: RequestFacts,
    interaction_id: String,
    /// The issuer's keys were already refetched for this request (at most once per request).
    refetched: bool,
    pending: Option<(u32, Pending)>,
    /// Claim headers the client sent (removed before the upstream).
    spoofed: Vec<String>,
    /// A local reply was sent: nothing more happens to this request.
    answered: bool,
    /// The request's `content-length`, when it sent one (a body known to be too large is refused
    /// before a byte of it is read).
    content_length: Option<u64>,
    /// The matched rule reads the body (RFC 9396 `authorization_details`): the request is held and
    /// at most this many bytes are buffered before the decision.
    body_limit: Option<usize>,
    /// The whole body, read before the headers' decision was made (only for rules that read one).
    body: Option<Vec<u8>>,
    /// Admitted on its headers, waiting for its body's check.
    held: Option<Allow>,
    /// The body bytes the proxy reported buffered at the last body event.
    buffered: usize,
}

impl Request {
    pub fn new() -> Self {
        Request::default()
    }

    /// The id this request is known by in logs and to the client (empty before its headers).
    pub fn interaction_id(&self) -> &str {
        &self.interaction_id
    }

    /// Whether the body events of this request need the engine at all: only for a request whose
    /// rule binds the body, or one already answered. Shells skip the engine (and its lock) for every
    /// other request's body: [`Action::Continue`].
    pub fn wants_body_events(&self) -> bool {
        self.body_limit.is_some() || self.answered
    }

    /// The callout this request waits for, if any.
    pub fn pending_callout(&self) -> Option<u32> {
        self.pending.as_ref().map(|(t, _)| *t)
    }

    /// The request hook: gather, strip spoofed claim headers, decide, act. `end_of_stream`: the
    /// request has no body.
    ///
    /// A rule that binds the body (RFC 9396 `authorization_details` with `bind`) is decided here on
    /// everything but the body ([`fapi_core::Guard::decide_before_body`]: a bad token is refused
    /// before a byte of its body is read, a `content-length` over the rule's limit with 413); an
    /// admitted request is then held ([`Action::Pause`]: the upstream sees nothing, not even the
    /// headers) until [`Request::on_request_body`] has the whole body. A host that cannot hold
    /// headers for a body ([`RequestHost::holds_headers_for_body`], proxy-wasm) gets
    /// [`Action::Continue`] and the body is held instead: no byte of it passes before the decision.
    /// Every other rule is decided on the headers and never reads the body.
    pub fn on_request_headers<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        end_of_stream: bool,
    ) -> Action {
        self.gather_facts(w, host);
        for name in std::mem::take(&mut self.spoofed) {
            host.remove_request_header(&name);
        }
        if let Some(limit) = w.guard.body_limit(&self.facts) {
            if self.content_length.is_some_and(|n| n > limit as u64) {
                return self.refuse_body_too_large(w, host);
            }
            if end_of_stream {
                // No body at all: checked as an empty one (no binding matches it).
                self.body = Some(Vec::new());
            } else {
                self.body_limit = Some(limit);
            }
        }
        self.decide_and_act(w, host)
    }

    /// The request body hook: `size` is how many body bytes the proxy has buffered so far,
    /// `end_of_stream` whether that is all. For a request whose rule binds the body: over the limit,
    /// 413 at once (the bytes are never passed on); the whole body in, its check
    /// ([`Action::Continue`] lets the held request go on with its body). Any other request:
    /// [`Action::Continue`], nothing read.
    pub fn on_request_body<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.answered {
            return Action::Pause;
        }
        let Some(limit) = self.body_limit else {
            return Action::Continue;
        };
        self.buffered = size;
        if size > limit {
            self.body_limit = None;
            return self.refuse_body_too_large(w, host);
        }
        if !end_of_stream {
            // Keep buffering; nothing goes upstream yet.
            return Action::Pause;
        }
        self.body_limit = None;
        let body = host.request_body(size);
        match self.held.take() {
            Some(allow) => self.finish_body(w, host, allow, &body),
            None => {
                // The headers' decision waits for a callout: the body is checked when it answers.
                self.body = Some(body);
                Action::Pause
            }
        }
    }

    /// Trailers end a held request's body: decide on what the body events buffered.
    pub fn on_request_trailers<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H) -> Action {
        if self.body_limit.is_none() {
            return if self.answered {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        let size = self.buffered;
        self.on_request_body(w, host, size, true)
    }

    /// The body's check for a request the headers' decision admitted (RFC 9396 §9.1).
    fn finish_body<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        allow: Allow,
        body: &[u8],
    ) -> Action {
        let now = host.now();
        match w.check_body(host, &allow, body, now) {
            Ok(()) => {
                w.metrics.decision(host, "allowed");
                Action::Continue
            }
            Err(denial) => self.refuse(w, host, &allow, denial),
        }
    }

    fn refuse_body_too_large<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H) -> Action {
        if let Decision::Deny(d) = w.guard.refuse_body_too_large(&self.facts) {
            self.send_deny(w, host, &d);
        }
        Action::Pause
    }

    /// The response hook: the interaction id goes back to the client (FAPI: echoed or generated).
    pub fn on_response_headers<H: RequestHost + ?Sized>(&mut self, host: &mut H) {
        if !self.interaction_id.is_empty() && !self.answered {
            host.set_response_header(INTERACTION_ID, &self.interaction_id);
        }
    }

    fn gather_facts<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H) {
        let settings = &w.guard.policy.doc.settings;
        let trust_xfcc = matches!(
            settings.client_certificate,
            CertificateSource::XForwardedClientCert
        );
        let claim_headers = &settings.forward;
        let mut facts = RequestFacts::default();
        let mut xfcc = None;
        let mut spoofed = Vec::new();
        // As bytes: a header value may hold any octet (RFC 9110 §5.5 obs-text). Values the decision
        // reads are taken as text with anything not UTF-8 replaced, which no check accepts (fail closed).
        let text = |v: &[u8]| match std::str::from_utf8(v) {
            Ok(s) => s.to_owned(),
            Err(_) => String::from_utf8_lossy(v).into_owned(),
        };
        // Only the headers read here are copied (the host may lend its own buffers).
        host.for_each_request_header(&mut |name, value| {
            if claim_headers.values().any(|h| h == name) {
                spoofed.push(name.to_string());
                return;
            }
            match name {
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
                // Unreadable or repeated: unknown (the buffering limit still holds).
                "content-length" => {
                    self.content_length = match self.content_length {
                        None => text(value).trim().parse().ok(),
                        Some(_) => None,
                    }
                }
                XFCC => xfcc = Some(text(value)),
                _ => {}
            }
        });
        facts.client_cert = if trust_xfcc {
            xfcc.as_deref().and_then(xfcc_client_cert)
        } else {
            // Never believe a client certificate header from outside; the TLS connection is the truth.
            if xfcc.is_some() {
                host.remove_request_header(XFCC);
            }
            host.peer_certificate_digest()
                .filter(|d| !d.is_empty())
                .map(ClientCert::Digest)
        };
        self.interaction_id = match &facts.interaction_id {
            Some(id) if is_uuid(id) => id.clone(),
            _ => uuid_v4(w.ids.next_id()),
        };
        self.spoofed = spoofed;
        self.facts = facts;
    }

    fn decide_and_act<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H) -> Action {
        let now = host.now();
        if let Some(allow) = w.cached_allow(host, &self.facts, now) {
            // Never a body-bound rule's allow (core's `decision_cacheable`): nothing to wait for.
            self.forward(w, host, &allow);
            w.metrics.decision(host, "allowed");
            return Action::Continue;
        }
        // Before the body: a rule that binds it admits with `awaiting_body` (see `admit`).
        let decision = w.decide_with_body(host, &self.facts, None, now);
        match decision {
            Decision::Allow(allow) => {
                w.remember(&self.facts, &allow, now);
                self.after_allow(w, host, allow, now)
            }
            Decision::Deny(deny) => {
                if let Some(issuer) = deny.refetch_issuer.clone() {
                    if !self.refetched {
                        // Another worker may have fetched newer keys since this one last synced:
                        // take them and decide again (at most once: the flag is set here).
                        self.refetched = true;
                        let before = w.fetched(&issuer).map(|f| f.version);
                        w.sync_keys(host, &issuer);
                        if w.fetched(&issuer).map(|f| f.version) != before {
                            return self.decide_and_act(w, host);
                        }
                        if self.refetch_keys(w, host, &issuer, &deny, now) {
                            return Action::Pause;
                        }
                    }
                }
                self.send_deny(w, host, &deny);
                Action::Pause
            }
        }
    }

    /// Fetches the issuer's keys now, rate-limited across workers. `true` when a fetch is under way.
    fn refetch_keys<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        issuer: &str,
        deny: &Deny,
        now: i64,
    ) -> bool {
        let Some(remote) = w.guard.policy.issuer(issuer).and_then(|i| i.remote.clone()) else {
            return false;
        };
        // An unknown kid may be an attacker's invention: refetch at most every 10 s. No keys at all:
        // try every second.
        let period = if deny.denial == Denial::UnknownKid { 10 } else { 1 };
        if !shared::take_lease(host, &format!("refetch/{issuer}"), now, period) {
            return false;
        }
        let Some((authority, path)) = split_uri(&remote.uri) else {
            return false;
        };
        match host.http_call(&get_callout(&remote.cluster, &authority, &path, None)) {
            Some(token) => {
                self.pending = Some((token, Pending::Jwks(issuer.to_string())));
                true
            }
            None => {
                host.counter("jwks.fetch_failed", 1);
                false
            }
        }
    }

    fn after_allow<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        allow: Allow,
        now: i64,
    ) -> Action {
        if !allow.introspect {
            return self.admit(w, host, allow);
        }
        let Some(cfg) = w.guard.policy.doc.settings.introspection.clone() else {
            return self.refuse(w, host, &allow, Denial::RevocationStatusUnknown);
        };
        let token = match credentials(&self.facts) {
            Ok(Some((_, t))) => t.to_string(),
            _ => return self.refuse(w, host, &allow, Denial::RevocationStatusUnknown),
        };
        let token_hash = b64::sha256(&token);
        if let Some((active, until)) = w.introspected.get(&token_hash).copied() {
            if until > now {
                return if active {
                    self.admit(w, host, allow)
                } else {
                    self.refuse(w, host, &allow, Denial::Inactive)
                };
            }
        }
        let authority = cfg.authority.clone().unwrap_or_else(|| cfg.cluster.clone());
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), cfg.path.clone()),
            (":authority".to_string(), authority),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
        ];
        if let Some(a) = &cfg.authorization {
            headers.push(("authorization".to_string(), a.clone()));
        }
        let call = Callout {
            cluster: cfg.cluster.clone(),
            headers,
            body: Some(introspection_request_body(&token).into_bytes()),
            timeout_ms: CALL_TIMEOUT_MS,
        };
        match host.http_call(&call) {
            Some(t) => {
                self.pending = Some((t, Pending::Introspection { allow, token_hash }));
                Action::Pause
            }
            None => self.refuse(w, host, &allow, Denial::RevocationStatusUnknown),
        }
    }

    /// The answer to this request's callout; resumes the request when it may go on.
    pub fn on_callout<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        token: u32,
        response: &CalloutResponse,
    ) {
        let Some((expected, pending)) = self.pending.take() else {
            return;
        };
        if expected != token {
            self.pending = Some((expected, pending));
            return;
        }
        let now = host.now();
        let action = match pending {
            Pending::Jwks(issuer) => {
                w.store_jwks(host, &issuer, &response.status, &response.body, now);
                self.decide_and_act(w, host)
            }
            Pending::Introspection { allow, token_hash } => {
                let answer = if response.status == "200" {
                    introspection_active(&response.body)
                } else {
                    Err(format!("status {}", response.status))
                };
                match answer {
                    Ok(active) => {
                        // An answer is reused for `cache_seconds`, never past the token's own expiry.
                        let secs = w
                            .guard
                            .policy
                            .doc
                            .settings
                            .introspection
                            .as_ref()
                            .map_or(5, |i| i.cache_seconds);
                        let until = now.saturating_add(secs as i64).min(allow.claims.exp);
                        w.introspected.insert(token_hash, (active, until));
                        if active {
                            self.admit(w, host, allow)
                        } else {
                            self.refuse(w, host, &allow, Denial::Inactive)
                        }
                    }
                    Err(e) => {
                        host.log(Level::Warn, &format!("fapi-guard: introspection failed: {e}"));
                        self.refuse(w, host, &allow, Denial::RevocationStatusUnknown)
                    }
                }
            }
        };
        if action == Action::Continue {
            host.resume_request();
        }
    }

    /// A refusal on the rule that admitted the token (introspection said no, or could not answer).
    fn refuse<H: RequestHost + ?Sized>(
        &mut self,
        w: &mut Worker,
        host: &mut H,
        allow: &Allow,
        denial: Denial,
    ) -> Action {
        let scheme = if allow.binding == BindingKind::Dpop {
            Scheme::DPoP
        } else {
            Scheme::Bearer
        };
        let decision = w
            .guard
            .refuse(&allow.rule, denial, Some(scheme), allow.claims.client_id.clone());
        if let Decision::Deny(d) = decision {
            self.send_deny(w, host, &d);
        }
        Action::Pause
    }

    /// Fails closed when the shell could not run the engine (a caught panic, a lost state): 500.
    pub fn fail_closed<H: RequestHost + ?Sized>(host: &mut H, why: &str) {
        host.log(
            Level::Error,
            &format!("fapi-guard: internal error ({why}); request refused"),
        );
        host.counter("denied", 1);
        host.counter("denied.internal_error", 1);
        host.send_local_reply(
            500,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-store"),
            ],
            br#"{"error":"server_error"}"#,
        );
    }

    /// An admitted request: its claim headers are set; it goes on, unless its rule binds the body
    /// (`awaiting_body`): then the body is checked now if it is already in, else the request is
    /// held for it.
    fn admit<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H, allow: Allow) -> Action {
        self.forward(w, host, &allow);
        if allow.awaiting_body.is_none() {
            w.metrics.decision(host, "allowed");
            return Action::Continue;
        }
        if let Some(body) = self.body.take() {
            return self.finish_body(w, host, allow, &body);
        }
        self.held = Some(allow);
        if host.holds_headers_for_body() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn forward<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H, allow: &Allow) {
        for (name, value) in &allow.forward {
            host.set_request_header(name, value);
        }
        // A client's valid id is already on the request, once: only a generated or replaced one is set.
        if self.facts.interaction_id.as_deref() != Some(self.interaction_id.as_str()) {
            host.set_request_header(INTERACTION_ID, &self.interaction_id);
        }
        if w.guard.policy.doc.settings.strip_credentials {
            if !self.facts.authorization.is_empty() {
                host.remove_request_header("authorization");
            }
            if !self.facts.dpop.is_empty() {
                host.remove_request_header("dpop");
            }
        }
    }

    fn send_deny<H: RequestHost + ?Sized>(&mut self, w: &mut Worker, host: &mut H, deny: &Deny) {
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
        host.send_local_reply(deny.status, &headers, deny.body.as_bytes());
        self.answered = true;
        // One structured line per denial; never the token.
        host.log(Level::Warn, &denial_line(&self.interaction_id, deny, &self.facts));
        w.metrics.decision(host, deny.reason());
    }
}

/// The one log line per refusal (the same in both shells): never the token.
pub fn denial_line(interaction_id: &str, deny: &Deny, facts: &RequestFacts) -> String {
    let mut line = serde_json::json!({
        "msg": "fapi-guard denied",
        "interaction_id": interaction_id,
        "status": deny.status,
        "reason": deny.reason(),
        "rule": deny.rule,
        "client_id": deny.client_id,
        "method": facts.method,
        "path": facts.path_only(),
    });
    // A body that is not what the user consented to: the field (a JSON pointer of the policy), never
    // a value of the body or of the token.
    if let (Denial::AuthorizationDetailsMismatch(field), Some(o)) = (&deny.denial, line.as_object_mut()) {
        o.insert("field".into(), serde_json::Value::String(field.clone()));
    }
    line.to_string()
}
