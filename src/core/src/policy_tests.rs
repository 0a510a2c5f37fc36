//! A policy's own tests, run: a request and token claims in, a decision out. Apart from
//! [`crate::policy`] (which only checks that the tests are well-formed, in `policy::test_cases`), so
//! that policy validation never imports the guard.
//!
//! The runner builds real [`AccessClaims`] and real request facts and runs every decision stage except
//! the two signature checks (token and DPoP proof), which need keys the policy author does not hold:
//! claim validation, binding (certificate thumbprints and DPoP key thumbprints are fabricated to match
//! or not, as the test says), revocation, rule matching and requirements all run the production code.

use crate::binding::CertThumbprint;
use crate::cache::RevocationList;
use crate::decision::{Decision, Scheme};
use crate::dpop::MemoryReplayStore;
use crate::guard::{self, Presented};
use crate::policy::{Policy, TestCase, TestToken};
use crate::token::AccessClaims;
use serde_json::{json, Map, Value};

/// The clock for policy tests: 2024-01-01T00:00:00Z.
pub const TEST_NOW: i64 = 1_704_067_200;

const BOUND_CERT: &[u8] = b"policy-test bound certificate";
const OTHER_CERT: &[u8] = b"policy-test other certificate";
const BOUND_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
const OTHER_JKT: &str = "2Hy0kDBVbmlT4BoJLEVBAS2ar_CK8rEZn6L3HAIP0oM";

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TestOutcome {
    pub name: String,
    pub passed: bool,
    /// What happened: status, error, reason and rule.
    pub got: String,
    pub expected: String,
}

impl Policy {
    /// Runs every test of the document.
    pub fn run_tests(&self) -> Vec<TestOutcome> {
        self.doc.tests.iter().map(|t| self.run_test(t)).collect()
    }

    pub fn run_test(&self, test: &TestCase) -> TestOutcome {
        let decision = self.decide_test(test);
        let got = describe(&decision);
        let e = &test.expect;
        let passed = decision.status() == e.status
            && e.error.as_ref().is_none_or(|want| match &decision {
                Decision::Deny(d) => d.error == Some(want.as_str()),
                Decision::Allow(_) => false,
            })
            && e.reason.as_ref().is_none_or(|want| decision.reason() == want)
            && e.rule
                .as_ref()
                .is_none_or(|want| rule_of(&decision) == Some(want.as_str()));
        let mut expected = format!("{}", e.status);
        if let Some(err) = &e.error {
            expected.push_str(&format!(" {err}"));
        }
        if let Some(r) = &e.reason {
            expected.push_str(&format!(" ({r})"));
        }
        if let Some(r) = &e.rule {
            expected.push_str(&format!(" rule {r}"));
        }
        TestOutcome {
            name: test.name.clone(),
            passed,
            got,
            expected,
        }
    }

    /// The decision for a test case.
    pub fn decide_test(&self, test: &TestCase) -> Decision {
        let r = &test.request;
        let (scheme, authority, path) = split_url(&r.url);
        let binding = test
            .token
            .as_ref()
            .map(|t| t.binding.clone().unwrap_or_else(|| "mtls".into()));
        let default_scheme = if binding.as_deref() == Some("dpop") {
            "DPoP"
        } else {
            "Bearer"
        };
        let presented_scheme = match r
            .scheme
            .as_deref()
            .unwrap_or(default_scheme)
            .to_ascii_lowercase()
            .as_str()
        {
            "dpop" => Scheme::DPoP,
            _ => Scheme::Bearer,
        };
        let cert_default = if binding.as_deref() == Some("mtls") {
            "bound"
        } else {
            "none"
        };
        let client_cert = match r.client_cert.as_deref().unwrap_or(cert_default) {
            "bound" => Some(CertThumbprint::from_der(BOUND_CERT)),
            "other" => Some(CertThumbprint::from_der(OTHER_CERT)),
            _ => None,
        };
        let dpop_default = if presented_scheme == Scheme::DPoP {
            "bound"
        } else {
            "none"
        };
        let dpop_jkt = match r.dpop_key.as_deref().unwrap_or(dpop_default) {
            "bound" => Some(BOUND_JKT.to_string()),
            "other" => Some(OTHER_JKT.to_string()),
            _ => None,
        };
        let claims = test.token.as_ref().map(|t| self.test_claims(t));
        let mut revoked = RevocationList::new();
        if let (true, Some(Ok(c))) = (r.revoked, &claims) {
            if let Some(jti) = &c.jti {
                revoked.revoke(&c.iss, jti, c.exp);
            }
        }
        let presented = Presented {
            scheme: presented_scheme,
            client_cert,
            dpop_jkt,
        };
        let body = r.body_bytes();
        // `once` uses are remembered for the test only; `repeated` sends the request once before.
        let mut used = MemoryReplayStore::new(16);
        if r.repeated {
            let _ = guard::decide_with_claims(
                self,
                &r.method,
                scheme,
                authority,
                path,
                claims.clone(),
                presented.clone(),
                &revoked,
                body.as_deref(),
                Some(&mut used),
                TEST_NOW,
            );
        }
        guard::decide_with_claims(
            self,
            &r.method,
            scheme,
            authority,
            path,
            claims,
            presented,
            &revoked,
            body.as_deref(),
            Some(&mut used),
            TEST_NOW,
        )
    }

    fn test_claims(&self, t: &TestToken) -> Result<AccessClaims, crate::denial::Denial> {
        let mut claims = Map::new();
        if let Some(issuer) = self.issuers.first() {
            claims.insert("iss".into(), json!(issuer.rules.issuer));
            claims.insert("aud".into(), json!(issuer.rules.audiences.first()));
        }
        claims.insert("sub".into(), json!("policy-test-user"));
        claims.insert("client_id".into(), json!("policy-test-client"));
        claims.insert("jti".into(), json!("policy-test-jti"));
        claims.insert("iat".into(), json!(TEST_NOW - 10));
        claims.insert("exp".into(), json!(TEST_NOW + t.expires_in.unwrap_or(300)));
        if let Some(scope) = &t.scope {
            claims.insert("scope".into(), json!(scope));
        }
        if let Some(acr) = &t.acr {
            claims.insert("acr".into(), json!(acr));
        }
        if let Some(age) = t.auth_age {
            claims.insert("auth_time".into(), json!(TEST_NOW - age));
        }
        if let Some(details) = &t.authorization_details {
            claims.insert("authorization_details".into(), details.clone());
        }
        match t.binding.as_deref().unwrap_or("mtls") {
            "mtls" => {
                claims.insert(
                    "cnf".into(),
                    json!({"x5t#S256": CertThumbprint::from_der(BOUND_CERT).to_b64url()}),
                );
            }
            "dpop" => {
                claims.insert("cnf".into(), json!({"jkt": BOUND_JKT}));
            }
            _ => {}
        }
        for (k, v) in &t.claims {
            if v.is_null() {
                claims.remove(k);
            } else {
                claims.insert(k.clone(), v.clone());
            }
        }
        AccessClaims::from_payload(claims)
    }
}

fn split_url(url: &str) -> (&str, &str, &str) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    match rest.find('/') {
        Some(i) => (scheme, &rest[..i], &rest[i..]),
        None => (scheme, rest, "/"),
    }
}

fn rule_of(d: &Decision) -> Option<&str> {
    match d {
        Decision::Allow(a) => Some(&a.rule),
        Decision::Deny(d) => d.rule.as_deref(),
    }
}

/// One line for a decision: `200 allowed rule x` or `403 insufficient_scope (insufficient_scope) rule x`.
pub fn describe(d: &Decision) -> String {
    match d {
        Decision::Allow(a) => format!("200 allowed rule {}", a.rule),
        Decision::Deny(deny) => {
            let mut s = format!(
                "{} {} ({})",
                deny.status,
                deny.error.unwrap_or("-"),
                deny.reason()
            );
            if let Some(r) = &deny.rule {
                s.push_str(&format!(" rule {r}"));
            }
            s
        }
    }
}

/// Used by the studio: the token claims a test would present, as JSON.
pub fn test_claims_json(policy: &Policy, t: &TestToken) -> Value {
    match policy.test_claims(t) {
        Ok(c) => Value::Object(c.all),
        Err(e) => json!({ "error": e.to_string() }),
    }
}
