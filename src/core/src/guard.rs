//! The decision for one request: rule, credentials, token, revocation, sender constraint, requirements,
//! in that order, cheapest refusals first (no signature work for a request no rule admits, a
//! malformed header, an unknown issuer or kid, a forbidden algorithm, or an expired cached token).

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

    /// Decides on one request.
    pub fn decide(&self, facts: &RequestFacts, ctx: &mut Context<'_>) -> Decision {
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
    })
}

/// The policy-test entry point: the same stages as [`Guard::decide`] after the signature checks.
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
        .and_then(|_| after_verification(policy, rule, Arc::new(claims), &presented, revocations, true, now));
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
