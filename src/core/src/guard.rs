//! The decision for one request: rule, credentials, token, revocation, sender constraint, requirements,
//! in that order, cheapest refusals first (no signature work for a request no rule admits, a
//! malformed header, an unknown issuer or kid, a forbidden algorithm, or an expired cached token).

use crate::authorization_details::{admit, OnceContext};
use crate::binding::{check_binding, check_dpop_key, CertThumbprint};
use crate::cache::{CachedToken, RevocationCheck, TokenCache};
use crate::decision::{render, AcceptedSchemes, Allow, BindingKind, Decision, Denial, DpopDefect, Scheme};
use crate::dpop::{check_proof_with, NonceIssuer, ProofContext, ProofKeyCache, Recorded, ReplayStore};
use crate::extract::{credentials, RequestFacts};
use crate::jwks::Jwks;
use crate::policy::{Policy, RevocationMode, Rule};
use crate::token::{parse_unverified, AccessClaims};
use std::sync::Arc;
use std::sync::Mutex;

/// Where the issuers' current key sets come from (inline in the policy, or fetched by the host).
pub trait KeySource {
    /// The usable key set of `issuer`, or `None` when there is none (never fetched, or too stale).
    fn keys(&self, issuer: &str) -> Option<&Jwks>;
}

/// Keys given inline in the policy only.
impl KeySource for Policy {
    fn keys(&self, issuer: &str) -> Option<&Jwks> {
        self.issuer(issuer).and_then(|i| i.inline_keys.as_ref())
    }
}

/// What the client proved besides holding the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub scheme: Scheme,
    pub client_cert: Option<CertThumbprint>,
    /// Thumbprint of the key of a DPoP proof that passed every check.
    pub dpop_jkt: Option<String>,
}

/// The mutable state a decision reads and updates.
pub struct Context<'a> {
    pub keys: &'a dyn KeySource,
    pub cache: &'a mut TokenCache,
    pub replay: &'a mut dyn ReplayStore,
    pub revocations: &'a dyn RevocationCheck,
    /// `false` when the revocation feed is stale: routes with `revocation: feed` then fail closed.
    pub revocation_feed_current: bool,
    pub now: i64,
}

/// A compiled policy plus the nonce key: everything that is fixed between configuration changes.
pub struct Guard {
    pub policy: Policy,
    nonces: Option<NonceIssuer>,
    /// Prepared DPoP keys of returning clients (uncontended: one Guard per plugin worker).
    proof_keys: Mutex<ProofKeyCache>,
}

impl Guard {
    /// `nonce_secret`: at least 32 random bytes shared by every instance, or `None` to issue no nonces
    /// (rules with `require_nonce` then refuse every proof).
    pub fn new(policy: Policy, nonce_secret: Option<&[u8]>) -> Self {
        let lifetime = policy.doc.settings.dpop_nonce_lifetime;
        Guard {
            policy,
            nonces: nonce_secret.map(|s| NonceIssuer::new(s, lifetime)),
            proof_keys: Mutex::new(ProofKeyCache::new(256)),
        }
    }

    /// A refusal on the named rule, rendered as [`Guard::decide`] would (for checks the host finishes
    /// asynchronously, such as introspection).
    pub fn refuse(
        &self,
        rule: &str,
        denial: Denial,
        scheme: Option<Scheme>,
        client_id: Option<String>,
    ) -> Decision {
        let rule = self.policy.rules.iter().find(|r| r.name == rule);
        deny(denial, rule, scheme, client_id)
    }

    /// Replaces the nonce key (the plugin shares one key between its workers through shared data).
    pub fn set_nonce_secret(&mut self, secret: &[u8]) {
        let lifetime = self.policy.doc.settings.dpop_nonce_lifetime;
        self.nonces = Some(NonceIssuer::new(secret, lifetime));
    }

    /// Decides on one request that brings no body (rules that read one refuse it: see
    /// [`Guard::decide_with_body`]).
    pub fn decide(&self, facts: &RequestFacts, ctx: &mut Context<'_>) -> Decision {
        self.decide_stage(facts, Some(None), ctx)
    }

    /// The body limit of the rule this request matches, when that rule reads the body
    /// ([`Rule::body_limit`]): the host must then hold the request, buffer at most this many bytes
    /// (more: refuse with [`Denial::BodyTooLarge`] at once) and decide with
    /// [`Guard::decide_with_body`]. `None`: decide on the headers alone, the body is never read.
    pub fn body_limit(&self, facts: &RequestFacts) -> Option<usize> {
        self.policy
            .match_rule(&facts.method, &facts.authority, &facts.path)
            .and_then(Rule::body_limit)
    }

    /// The refusal of a body over the matched rule's limit (413), before any token work.
    pub fn refuse_body_too_large(&self, facts: &RequestFacts) -> Decision {
        let rule = self
            .policy
            .match_rule(&facts.method, &facts.authority, &facts.path);
        let scheme = credentials(facts).ok().flatten().map(|(s, _)| s);
        deny(Denial::BodyTooLarge, rule, scheme, None)
    }

    /// Decides on one request with its body (`None`: no body was read). Which authorization details
    /// admitted their one request (`once`) is remembered in `ctx.replay`
    /// ([`ReplayStore::record_use`]), the store every worker shares.
    pub fn decide_with_body(
        &self,
        facts: &RequestFacts,
        body: Option<&[u8]>,
        ctx: &mut Context<'_>,
    ) -> Decision {
        self.decide_stage(facts, Some(body), ctx)
    }

    /// The decision on the headers, for a host that reads the body only when it must: every check
    /// except the body's. For a rule whose [`Rule::body_limit`] is set, an admission carries
    /// [`Allow::awaiting_body`]: the host then buffers the body (over the limit: 413) and must have
    /// [`Guard::check_body`] accept it before the request goes on. A token refused here is refused
    /// before a byte of its body is read.
    pub fn decide_before_body(&self, facts: &RequestFacts, ctx: &mut Context<'_>) -> Decision {
        self.decide_stage(facts, None, ctx)
    }

    /// RFC 9396 §9.1: the second half of [`Guard::decide_before_body`], on the body of a request
    /// it admitted with [`Allow::awaiting_body`]. `replay` remembers `once` uses (shared by every
    /// worker). A refusal is the denial to render with [`Guard::refuse`].
    pub fn check_body(
        &self,
        allow: &Allow,
        body: &[u8],
        replay: &mut dyn ReplayStore,
        now: i64,
    ) -> Result<(), Denial> {
        let rule = self
            .policy
            .rules
            .iter()
            .find(|r| r.name == allow.rule)
            .ok_or(Denial::NoMatchingRule)?;
        check_details(&self.policy, rule, &allow.claims, Some(body), Some(replay), now)
    }

    /// `body`: `Some(b)` decides with the body `b` (`Some(None)`: none was read); `None` defers the
    /// body's check ([`Guard::decide_before_body`]).
    fn decide_stage(
        &self,
        facts: &RequestFacts,
        body: Option<Option<&[u8]>>,
        ctx: &mut Context<'_>,
    ) -> Decision {
        let Some(rule) = self
            .policy
            .match_rule(&facts.method, &facts.authority, &facts.path)
        else {
            return deny(Denial::NoMatchingRule, None, None, None);
        };
        if rule.anonymous {
            return anonymous(rule);
        }
        let (scheme, token) = match credentials(facts) {
            Ok(Some(c)) => c,
            Ok(None) => return deny(Denial::MissingToken, Some(rule), None, None),
            Err(d) => return deny(d, Some(rule), None, None),
        };
        let hits_before = ctx.cache.hits;
        let claims = match self.verified_claims(token, ctx) {
            Ok(c) => c,
            Err(e @ (Denial::UnknownKid | Denial::KeysUnavailable)) => {
                // The host may fetch this issuer's keys (rotation, or none loaded yet) and decide again.
                let mut d = deny(e, Some(rule), Some(scheme), None);
                if let Decision::Deny(d) = &mut d {
                    d.refetch_issuer =
                        parse_unverified(token, |iss| self.policy.issuer(iss).map(|i| &i.rules))
                            .ok()
                            .map(|(u, _)| u.iss);
                }
                return d;
            }
            Err(e) => return deny(e, Some(rule), Some(scheme), None),
        };
        let client_id = claims.client_id.clone();
        let outcome = self
            .check_presented(facts, rule, scheme, token, &claims, ctx)
            .and_then(|presented| {
                after_verification(
                    &self.policy,
                    rule,
                    claims,
                    &presented,
                    ctx.revocations,
                    ctx.revocation_feed_current,
                    ctx.now,
                )
            })
            .and_then(|mut allow| {
                let now = ctx.now;
                match (body, rule.body_limit()) {
                    // Deferred: the host reads the body and asks `check_body`.
                    (None, Some(limit)) => allow.awaiting_body = Some(limit),
                    // A `once` rule without bindings reads no body: checked now, as is a given body.
                    (given, _) => check_details(
                        &self.policy,
                        rule,
                        &allow.claims,
                        given.flatten(),
                        Some(&mut *ctx.replay),
                        now,
                    )?,
                }
                Ok(allow)
            });
        match outcome {
            Ok(mut allow) => {
                // The claims came from the verified-token cache: no signature was checked this time.
                allow.cache_hit = ctx.cache.hits > hits_before;
                Decision::Allow(allow)
            }
            Err(denial) => {
                let mut d = deny(denial, Some(rule), Some(scheme), client_id);
                if let (Decision::Deny(d), Some(n)) = (&mut d, &self.nonces) {
                    if d.denial == Denial::UseDpopNonce {
                        d.dpop_nonce = Some(n.issue(ctx.now));
                    }
                }
                d
            }
        }
    }

    /// Signature and claims, through the cache.
    fn verified_claims(&self, token: &str, ctx: &mut Context<'_>) -> Result<Arc<AccessClaims>, Denial> {
        if let Some(cached) = ctx.cache.get(token) {
            let claims = cached.claims;
            let issuer = self.policy.issuer(&claims.iss).ok_or(Denial::UnknownIssuer)?;
            if let Err(e) = claims.check_time(&issuer.rules, ctx.now) {
                ctx.cache.remove(token);
                return Err(e);
            }
            return Ok(claims);
        }
        let (mut unverified, rules) =
            parse_unverified(token, |iss| self.policy.issuer(iss).map(|i| &i.rules))?;
        // The claims are read once, from the payload the signature covers (`verify` checks the
        // signing input, not this copy); expired or not-yet-valid tokens are refused before any
        // signature work.
        let claims = AccessClaims::from_payload(std::mem::take(&mut unverified.jws.payload))?;
        claims.check_time(rules, ctx.now)?;
        let keys = ctx.keys.keys(&unverified.iss).ok_or(Denial::KeysUnavailable)?;
        unverified.verify(keys)?;
        claims.check_static(rules)?;
        let claims = Arc::new(claims);
        ctx.cache.insert(
            token,
            CachedToken {
                claims: claims.clone(),
            },
        );
        Ok(claims)
    }

    /// The client certificate and, when the token is DPoP-bound or sent under DPoP, the proof.
    fn check_presented(
        &self,
        facts: &RequestFacts,
        rule: &Rule,
        scheme: Scheme,
        token: &str,
        claims: &AccessClaims,
        ctx: &mut Context<'_>,
    ) -> Result<Presented, Denial> {
        let client_cert = facts.client_cert.as_ref().and_then(|c| c.thumbprint());
        let mut presented = Presented {
            scheme,
            client_cert,
            dpop_jkt: None,
        };
        if scheme == Scheme::Bearer {
            return Ok(presented);
        }
        // Cheap binding errors first: the proof's signature is the expensive part.
        check_binding(
            &claims.cnf,
            scheme,
            presented.client_cert.as_ref(),
            rule.require.sender_constraint,
        )?;
        if claims.cnf.jkt.is_none() {
            return Err(Denial::DpopKeyMismatch);
        }
        let htu = self
            .request_uri(facts)
            .ok_or(Denial::DpopProof(DpopDefect::Htu))?;
        let headers: Vec<&str> = facts.dpop.iter().map(String::as_str).collect();
        let proof_ctx = ProofContext {
            method: &facts.method,
            htu: &htu,
            access_token: Some(token),
        };
        let mut cache = self.proof_keys.lock().ok();
        let proof = check_proof_with(
            &headers,
            &proof_ctx,
            &rule.require.dpop,
            self.nonces.as_ref(),
            ctx.now,
            cache.as_deref_mut(),
        )?;
        drop(cache);
        check_dpop_key(&claims.cnf, &proof.jkt)?;
        match ctx
            .replay
            .record_for(&proof.jkt, &proof.replay_key, proof.remember_until, ctx.now)
        {
            Recorded::Fresh => {}
            Recorded::Replayed => return Err(Denial::DpopProofReplayed),
            Recorded::Full => return Err(Denial::ReplayStoreFull),
        }
        presented.dpop_jkt = Some(proof.jkt);
        Ok(presented)
    }

    /// The request URI as the client saw it: the configured external origin, or the request's own
    /// scheme and authority, with the path.
    pub fn request_uri(&self, facts: &RequestFacts) -> Option<String> {
        match &self.policy.doc.settings.external_origin {
            Some(origin) => {
                crate::uri::normalize(&format!("{}{}", origin.trim_end_matches('/'), facts.path_only()))
            }
            None => crate::uri::request_uri(&facts.scheme, &facts.authority, facts.path_only()),
        }
    }
}

/// Everything after the signature: revocation, binding, requirements. Shared by live decisions and
/// by the policy tests, so both run the same code.
pub fn after_verification(
    policy: &Policy,
    rule: &Rule,
    claims: Arc<AccessClaims>,
    presented: &Presented,
    revocations: &dyn RevocationCheck,
    feed_current: bool,
    now: i64,
) -> Result<Allow, Denial> {
    if let Some(jti) = &claims.jti {
        if revocations.is_revoked(&claims.iss, jti) {
            return Err(Denial::Revoked);
        }
    }
    if rule.require.revocation == RevocationMode::Feed && !feed_current {
        return Err(Denial::RevocationStatusUnknown);
    }
    let binding = check_binding(
        &claims.cnf,
        presented.scheme,
        presented.client_cert.as_ref(),
        rule.require.sender_constraint,
    )?;
    if presented.scheme == Scheme::DPoP || binding == BindingKind::Dpop {
        let jkt = presented
            .dpop_jkt
            .as_deref()
            .ok_or(Denial::DpopProof(DpopDefect::Missing))?;
        check_dpop_key(&claims.cnf, jkt)?;
    }
    rule.require.check(&claims, now)?;
    let forward = forwarded_headers(policy, &claims, binding);
    Ok(Allow {
        rule: rule.name.clone(),
        claims,
        binding,
        forward,
        cache_hit: false,
        introspect: rule.require.revocation == RevocationMode::Introspection,
        awaiting_body: None,
    })
}

/// RFC 9396 §9.1: the request must be what the token's `authorization_details` grant, when the rule
/// says so; last, after every check of the token, so a refused token never consumes a `once` detail.
/// `body` is the request body (`None`: none read, which no binding matches).
pub fn check_details(
    policy: &Policy,
    rule: &Rule,
    claims: &AccessClaims,
    body: Option<&[u8]>,
    once: Option<&mut dyn ReplayStore>,
    now: i64,
) -> Result<(), Denial> {
    let Some(required) = &rule.require.authorization_details else {
        return Ok(());
    };
    let details = claims.all.get("authorization_details");
    let body = body.unwrap_or_default();
    if !required.once {
        return admit(required, details, body, None)
            .map(|_| ())
            .map_err(Denial::from);
    }
    // The use is remembered for as long as the token can still be accepted.
    let leeway = policy
        .issuer(&claims.iss)
        .map_or(0, |i| i.rules.leeway_past as i64);
    let remember_until = claims.exp.saturating_add(leeway);
    let client = claims.client_id.as_deref().unwrap_or_default();
    let once = match (claims.jti.as_deref(), once) {
        // RFC 9396 §9.1 tokens carry a jti; without one, a use cannot be remembered: refused.
        (None, _) if details_of_type(required, details) => return Err(Denial::MissingClaim("jti")),
        (Some(jti), Some(store)) => Some(OnceContext {
            jti,
            client,
            remember_until,
            now,
            store,
        }),
        _ => None,
    };
    admit(required, details, body, once)
        .map(|_| ())
        .map_err(Denial::from)
}

fn details_of_type(
    required: &crate::authorization_details::DetailsRequirement,
    details: Option<&serde_json::Value>,
) -> bool {
    details.and_then(serde_json::Value::as_array).is_some_and(|all| {
        all.iter()
            .any(|d| d.get("type").and_then(serde_json::Value::as_str) == Some(&required.detail_type))
    })
}

/// The policy-test entry point: the same stages as [`Guard::decide`] after the signature checks.
/// `body` and `once` as for [`Guard::decide_with_body`].
#[allow(clippy::too_many_arguments)]
pub fn decide_with_claims(
    policy: &Policy,
    method: &str,
    _scheme: &str,
    authority: &str,
    path: &str,
    claims: Option<Result<AccessClaims, Denial>>,
    presented: Presented,
    revocations: &dyn RevocationCheck,
    body: Option<&[u8]>,
    once: Option<&mut dyn ReplayStore>,
    now: i64,
) -> Decision {
    let Some(rule) = policy.match_rule(method, authority, path) else {
        return deny(Denial::NoMatchingRule, None, None, None);
    };
    if rule.anonymous {
        return anonymous(rule);
    }
    let scheme = presented.scheme;
    let claims = match claims {
        None => return deny(Denial::MissingToken, Some(rule), None, None),
        Some(Err(e)) => return deny(e, Some(rule), Some(scheme), None),
        Some(Ok(c)) => c,
    };
    let client_id = claims.client_id.clone();
    let checked = policy
        .issuer(&claims.iss)
        .ok_or(Denial::UnknownIssuer)
        // Same order as a live decision: time first (checked before the signature there), then the rest.
        .and_then(|i| {
            claims
                .check_time(&i.rules, now)
                .and_then(|_| claims.check_static(&i.rules))
        });
    let outcome = checked
        .and_then(|_| presented_like_live(rule, &claims, &presented))
        .and_then(|_| after_verification(policy, rule, Arc::new(claims), &presented, revocations, true, now))
        .and_then(|allow| {
            check_details(policy, rule, &allow.claims, body, once, now)?;
            Ok(allow)
        });
    match outcome {
        Ok(a) => Decision::Allow(a),
        Err(d) => deny(d, Some(rule), Some(scheme), client_id),
    }
}

/// Under the DPoP scheme, [`Guard::decide`] checks the binding and the proof (RFC 9449 §7.1) before
/// revocation and requirements ([`Guard::check_presented`]); the policy-test path does the same, in the
/// same order, with `dpop_jkt` standing for a proof that passed (`None`: no proof).
fn presented_like_live(rule: &Rule, claims: &AccessClaims, presented: &Presented) -> Result<(), Denial> {
    if presented.scheme != Scheme::DPoP {
        return Ok(());
    }
    check_binding(
        &claims.cnf,
        presented.scheme,
        presented.client_cert.as_ref(),
        rule.require.sender_constraint,
    )?;
    if claims.cnf.jkt.is_none() {
        return Err(Denial::DpopKeyMismatch);
    }
    let jkt = presented
        .dpop_jkt
        .as_deref()
        .ok_or(Denial::DpopProof(DpopDefect::Missing))?;
    check_dpop_key(&claims.cnf, jkt)
}

/// An anonymous rule admits without a token: no claims, nothing forwarded.
fn anonymous(rule: &Rule) -> Decision {
    Decision::Allow(Allow {
        rule: rule.name.clone(),
        claims: Arc::new(AccessClaims::default()),
        binding: BindingKind::Bearer,
        forward: Vec::new(),
        cache_hit: false,
        introspect: false,
        awaiting_body: None,
    })
}

fn deny(denial: Denial, rule: Option<&Rule>, scheme: Option<Scheme>, client_id: Option<String>) -> Decision {
    let (accepted, algs) = match rule {
        Some(r) => (
            AcceptedSchemes {
                bearer: r.require.sender_constraint.accepts_bearer_scheme(),
                dpop: r.require.sender_constraint.accepts_dpop(),
            },
            r.require.dpop.algorithms.as_slice(),
        ),
        None => (
            AcceptedSchemes {
                bearer: true,
                dpop: false,
            },
            &[][..],
        ),
    };
    let mut d = render(denial, scheme, accepted, algs);
    d.rule = rule.map(|r| r.name.clone());
    d.client_id = client_id;
    Decision::Deny(Box::new(d))
}

fn forwarded_headers(policy: &Policy, claims: &AccessClaims, binding: BindingKind) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (claim, header) in &policy.doc.settings.forward {
        let value = match claim.as_str() {
            "binding" => Some(binding.as_str().to_string()),
            "scope" => Some(claims.scope.join(" ")),
            "sub" => claims.sub.clone(),
            "client_id" => claims.client_id.clone(),
            "acr" => claims.acr.clone(),
            other => claims.all.get(other).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }),
        };
        if let Some(v) = value {
            // Claim values are attacker-influenced text: no control characters in a header.
            let clean = if v.len() <= 1024 && !v.chars().any(char::is_control) {
                v
            } else {
                v.chars().filter(|c| !c.is_control()).take(1024).collect()
            };
            out.push((header.clone(), clean));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::MemoryReplayStore;
    use serde_json::json;

    fn policy() -> Policy {
        let doc = json!({
            "version": 1,
            "issuers": [{"issuer": "https://as.example", "audiences": ["https://api.example"],
                         "jwks": {"uri": "https://as.example/jwks", "cluster": "as"}}],
            "rules": [{"name": "pay", "match": {"path": "/pay"},
                       "require": {"authorization_details": {
                           "type": "payment_initiation", "bind": {"/amount": "/amount"}, "once": true}}},
                      {"name": "other", "match": {"path": "/other"}}]
        });
        let loaded = Policy::from_value(doc);
        assert!(loaded.is_ok(), "{loaded:?}");
        match loaded {
            Ok((p, _)) => p,
            Err(_) => unreachable!(),
        }
    }

    fn claims(extra: serde_json::Value) -> AccessClaims {
        let mut c = json!({"iss": "https://as.example", "aud": "https://api.example", "exp": 2000,
                           "iat": 1000, "client_id": "c", "jti": "j-1"});
        if let (Some(c), serde_json::Value::Object(e)) = (c.as_object_mut(), extra) {
            c.extend(e);
        }
        match c {
            serde_json::Value::Object(m) => AccessClaims::from_payload(m).unwrap_or_default(),
            _ => AccessClaims::default(),
        }
    }

    /// `once` warns about issuers whose tokens may outlive what the plugin's store remembers.
    #[test]
    fn once_warns_about_long_lived_tokens() {
        let doc = |max_lifetime: serde_json::Value| {
            json!({
                "version": 1,
                "issuers": [{"issuer": "https://as.example", "audiences": ["https://api.example"],
                             "max_lifetime": max_lifetime,
                             "jwks": {"uri": "https://as.example/jwks", "cluster": "as"}}],
                "rules": [{"name": "pay", "match": {"path": "/pay"},
                           "require": {"authorization_details": {"type": "t", "once": true}}}]
            })
        };
        let warnings = |v| match Policy::from_value(v) {
            Ok((_, w)) => w.into_iter().map(|p| p.path).collect::<Vec<_>>(),
            Err(e) => e.into_iter().map(|p| format!("error {p}")).collect(),
        };
        assert_eq!(
            warnings(doc(json!(3600))),
            vec!["rules[0].require.authorization_details.once".to_string()]
        );
        assert!(warnings(doc(json!(600))).is_empty());
    }

    #[test]
    fn body_limit_only_for_rules_that_read_the_body() {
        let p = policy();
        let rule = |path: &str| p.match_rule("POST", "api.example", path);
        assert_eq!(rule("/pay").and_then(Rule::body_limit), Some(16 * 1024));
        assert_eq!(rule("/other").and_then(Rule::body_limit), None);
    }

    #[test]
    fn once_needs_a_jti_and_a_store() {
        let p = policy();
        let rule = p.match_rule("POST", "api.example", "/pay");
        assert!(rule.is_some());
        let Some(rule) = rule else { return };
        let details = json!({"authorization_details": [{"type": "payment_initiation", "amount": "10"}]});
        let body = br#"{"amount": 10}"#;
        let mut store = MemoryReplayStore::new(8);
        let c = claims(details.clone());
        assert_eq!(
            check_details(&p, rule, &c, Some(body), Some(&mut store), 1500),
            Ok(())
        );
        assert_eq!(
            check_details(&p, rule, &c, Some(body), Some(&mut store), 1501),
            Err(Denial::AuthorizationDetailsUsed)
        );
        // No jti: the use cannot be remembered.
        let mut no_jti = claims(details);
        no_jti.jti = None;
        assert_eq!(
            check_details(&p, rule, &no_jti, Some(body), Some(&mut store), 1500),
            Err(Denial::MissingClaim("jti"))
        );
        // No store: refused, never admitted twice.
        let c2 = claims(
            json!({"jti": "j-2", "authorization_details": [{"type": "payment_initiation", "amount": 10}]}),
        );
        assert_eq!(
            check_details(&p, rule, &c2, Some(body), None, 1500),
            Err(Denial::AuthorizationDetailsStoreFull)
        );
        // No body read: not JSON.
        assert_eq!(
            check_details(&p, rule, &c2, None, Some(&mut store), 1500),
            Err(Denial::BodyNotJson)
        );
    }
}
