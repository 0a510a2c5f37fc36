//! One table of hostile JWTs (RFC 8725 §2 threats) run through every use of fapi-core's validator
//! ([`fapi_core::verify`]): access tokens through the plugin's own [`fapi_core::Guard`], client
//! assertions (RFC 7523 §3), request objects (RFC 9101, FAPI 2.0 Message Signing), the authorization
//! server's own tokens, and DPoP proofs at a token endpoint (RFC 9449 §4.3, no `ath`). Each case starts
//! from a JWT the use accepts (asserted first, so a refusal is the case's doing) and breaks one rule;
//! each use must refuse it with that use's status and OAuth error, for the reason the case names.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use fapi_core::b64;
use fapi_core::decision::{Decision, Denial};
use fapi_core::dpop::{check_proof, DpopRules, ProofContext};
use fapi_core::jwks::Jwks;
use fapi_core::sign::{random_id, SigningKey};
use fapi_core::verify::Validation;
use ring::hmac;
use serde_json::{json, Value};

const CLIENT: &str = "tpp-1";
const TOKEN_ENDPOINT: &str = "https://as.bank.example/token";

/// The uses of the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    AccessToken,
    ClientAssertion,
    RequestObject,
    OwnToken,
    DpopProof,
}

const USES: [Use; 5] = [
    Use::AccessToken,
    Use::ClientAssertion,
    Use::RequestObject,
    Use::OwnToken,
    Use::DpopProof,
];

impl Use {
    /// The status and OAuth error each use answers with.
    fn expected_error(self) -> (u16, &'static str) {
        match self {
            Use::AccessToken | Use::OwnToken => (401, "invalid_token"),
            Use::ClientAssertion => (401, "invalid_client"),
            Use::RequestObject => (400, "invalid_request_object"),
            // fapi-core's status for a proof at a resource server; the token endpoint answers 400 with
            // the same error (RFC 9449 §5), as the server-level table checks.
            Use::DpopProof => (401, "invalid_dpop_proof"),
        }
    }

    /// The header and claims of a JWT this use accepts at NOW, signed by `key`.
    fn valid(self, key: &SigningKey) -> (Value, Value) {
        let kid = key.kid().to_string();
        match self {
            Use::AccessToken => (json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}), claims()),
            Use::OwnToken => (
                json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
                json!({"iss": ISS, "aud": AUD, "sub": "alice", "client_id": CLIENT, "iat": NOW - 10,
                       "nbf": NOW - 10, "exp": NOW + 290, "jti": random_id()}),
            ),
            Use::ClientAssertion => (
                json!({"alg": "ES256", "kid": kid}),
                json!({"iss": CLIENT, "sub": CLIENT, "aud": ISS, "iat": NOW - 5, "exp": NOW + 60,
                       "jti": random_id()}),
            ),
            Use::RequestObject => (
                json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": kid}),
                json!({"iss": CLIENT, "aud": ISS, "client_id": CLIENT, "response_type": "code",
                       "nbf": NOW - 5, "exp": NOW + 300, "jti": random_id()}),
            ),
            Use::DpopProof => (
                json!({"alg": "ES256", "typ": "dpop+jwt", "jwk": key.public_jwk_bare()}),
                json!({"jti": random_id(), "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": NOW}),
            ),
        }
    }

    /// Runs the JWT through this use; `Ok(())` when accepted, else the status, error and reason.
    fn run(self, jwt: &str, keys: &Jwks) -> Result<(), (u16, &'static str, &'static str)> {
        let validation = match self {
            Use::AccessToken => {
                let mut h = Harness::new();
                return match h.decide(&balances_mtls(jwt)) {
                    Decision::Allow(_) => Ok(()),
                    Decision::Deny(d) => Err((d.status, d.error.unwrap_or("-"), d.reason())),
                };
            }
            Use::DpopProof => {
                let ctx = ProofContext {
                    method: "POST",
                    htu: TOKEN_ENDPOINT,
                    access_token: None,
                };
                return match check_proof(&[jwt], &ctx, &DpopRules::default(), None, NOW) {
                    Ok(_) => Ok(()),
                    Err(d) => Err(refused(&d)),
                };
            }
            Use::ClientAssertion => Validation::client_assertion(vec![ISS.into()]).for_client(CLIENT),
            Use::RequestObject => Validation::request_object(ISS).for_client(CLIENT),
            Use::OwnToken => Validation::own_token(ISS, "at+jwt", vec![AUD.into()], 300),
        };
        match validation.verify(jwt, keys, NOW) {
            Ok(_) => Ok(()),
            Err(d) => Err((validation.status, validation.error, d.reason())),
        }
    }
}

fn refused(d: &Denial) -> (u16, &'static str, &'static str) {
    let (status, error) = d.status_and_error();
    (status, error.map_or("-", |e| e.as_str()), d.reason())
}

/// A hostile change to a valid JWT.
struct Case {
    name: &'static str,
    /// The reason a JWT use refuses with, and the one a DPoP proof refuses with.
    reason: &'static str,
    dpop_reason: &'static str,
    make: fn(Use, &SigningKey) -> String,
}

fn signed(key: &SigningKey, header: &Value, claims: &Value) -> String {
    key.sign_with_header(header, claims).expect("signing")
}

fn set(mut v: Value, name: &str, value: Value) -> Value {
    v[name] = value;
    v
}

fn attacker() -> &'static SigningKey {
    &keys().es_impostor
}

const CASES: &[Case] = &[
    Case {
        name: "alg none, unsigned (RFC 8725 §3.1)",
        reason: "algorithm_not_allowed",
        dpop_reason: "dpop_alg",
        make: |u, key| {
            let (h, c) = u.valid(key);
            format!("{}.", signing_input(&set(h, "alg", json!("none")), &c))
        },
    },
    Case {
        name: "HS256 keyed with the public key's bytes (RFC 8725 §2.1 key confusion)",
        reason: "algorithm_not_allowed",
        dpop_reason: "dpop_alg",
        make: |u, key| {
            let (h, c) = u.valid(key);
            let input = signing_input(&set(h, "alg", json!("HS256")), &c);
            let secret = key.public_jwk().to_string();
            let tag = hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
                input.as_bytes(),
            );
            format!("{input}.{}", b64::encode(tag.as_ref()))
        },
    },
    Case {
        // For a DPoP proof the jwk header is the mechanism; the embedded-key attack there is a jwk
        // that is not a bare public key (RFC 9449 §4.3 step 7: a private key is refused).
        name: "embedded jwk: the attacker's key, signed by it (RFC 8725 §3.10)",
        reason: "key_in_header",
        dpop_reason: "dpop_private_jwk",
        make: |u, key| {
            let (h, c) = u.valid(key);
            let a = attacker();
            let jwk = if u == Use::DpopProof {
                a.private_jwk().clone()
            } else {
                a.public_jwk().clone()
            };
            signed(a, &set(h, "jwk", jwk), &c)
        },
    },
    Case {
        name: "jku pointing at the attacker (RFC 8725 §3.10, FAPI 2.0 §5.4)",
        reason: "key_in_header",
        dpop_reason: "dpop_jwk",
        make: |u, key| {
            let (h, c) = u.valid(key);
            signed(key, &set(h, "jku", json!("https://attacker.example/jwks")), &c)
        },
    },
    Case {
        name: "x5u pointing at the attacker (RFC 8725 §3.10, FAPI 2.0 §5.4)",
        reason: "key_in_header",
        dpop_reason: "dpop_jwk",
        make: |u, key| {
            let (h, c) = u.valid(key);
            signed(
                key,
                &set(h, "x5u", json!("https://attacker.example/cert.pem")),
                &c,
            )
        },
    },
    Case {
        name: "crit naming an extension nobody understands (RFC 7515 §4.1.11)",
        reason: "unknown_critical_header",
        dpop_reason: "dpop_malformed",
        make: |u, key| {
            let (h, c) = u.valid(key);
            let h = set(
                set(h, "crit", json!(["urn:example:ext"])),
                "urn:example:ext",
                json!(true),
            );
            signed(key, &h, &c)
        },
    },
    Case {
        name: "expired an hour ago (RFC 7519 §4.1.4)",
        reason: "token_expired",
        dpop_reason: "dpop_iat",
        make: |u, key| {
            let (h, c) = u.valid(key);
            let c = if u == Use::DpopProof {
                set(c, "iat", json!(NOW - 3600))
            } else {
                set(c, "exp", json!(NOW - 3600))
            };
            signed(key, &h, &c)
        },
    },
    Case {
        name: "iat an hour in the future (FAPI 2.0 §5.3.2.1)",
        reason: "token_issued_in_future",
        dpop_reason: "dpop_iat",
        make: |u, key| {
            let (h, c) = u.valid(key);
            signed(key, &h, &set(c, "iat", json!(NOW + 3600)))
        },
    },
    Case {
        name: "a lifetime of over a day",
        reason: "token_lifetime_too_long",
        dpop_reason: "dpop_iat",
        make: |u, key| {
            let (h, c) = u.valid(key);
            signed(key, &h, &set(c, "exp", json!(NOW + 90_000)))
        },
    },
    Case {
        // A DPoP proof's audience is its htm and htu (RFC 9449 §4.2).
        name: "aud of another server",
        reason: "audience_mismatch",
        dpop_reason: "dpop_htu",
        make: |u, key| {
            let (h, c) = u.valid(key);
            let c = if u == Use::DpopProof {
                set(c, "htu", json!("https://evil.example/token"))
            } else {
                set(c, "aud", json!("https://evil.example"))
            };
            signed(key, &h, &c)
        },
    },
];

#[test]
fn every_hostile_jwt_is_refused_by_every_use_with_its_error() {
    let key = &keys().es;
    let jwks = Jwks::from_value(&json!({"keys": [key.public_jwk()]})).unwrap();
    let mut failures = Vec::new();
    for u in USES {
        // The starting point is accepted: each refusal below is the case's doing.
        let (h, c) = u.valid(key);
        let valid = signed(key, &h, &c);
        assert_eq!(u.run(&valid, &jwks), Ok(()), "{u:?}: the valid JWT is refused");
        let (status, error) = u.expected_error();
        for case in CASES {
            let jwt = (case.make)(u, key);
            let reason = if u == Use::DpopProof {
                case.dpop_reason
            } else {
                case.reason
            };
            let got = u.run(&jwt, &jwks);
            if got != Err((status, error, reason)) {
                failures.push(format!(
                    "{u:?} / {}: expected {status} {error} ({reason}), got {got:?}",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The validator's other rules, once per use where they apply.
#[test]
fn client_assertion_and_request_object_rules() {
    let key = &keys().es;
    let jwks = Jwks::from_value(&json!({"keys": [key.public_jwk()]})).unwrap();
    let reason = |v: &Validation, h: &Value, c: &Value| {
        v.verify(&signed(key, h, c), &jwks, NOW)
            .map(|_| ())
            .map_err(|d| d.reason())
    };
    // RFC 7523 §3: sub must be the client too; jti is required.
    let ca = Validation::client_assertion(vec![ISS.into()]).for_client(CLIENT);
    let (h, c) = Use::ClientAssertion.valid(key);
    assert_eq!(
        reason(&ca, &h, &set(c.clone(), "sub", json!("someone"))),
        Err("subject_mismatch")
    );
    assert_eq!(
        reason(&ca, &h, &set(c.clone(), "iss", json!("someone"))),
        Err("unknown_issuer")
    );
    let mut no_jti = c.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert_eq!(reason(&ca, &h, &no_jti), Err("claim_missing"));
    // 10 s of skew either way, and no more.
    assert_eq!(reason(&ca, &h, &set(c.clone(), "exp", json!(NOW - 9))), Ok(()));
    assert_eq!(
        reason(&ca, &h, &set(c.clone(), "exp", json!(NOW - 10))),
        Err("token_expired")
    );
    assert_eq!(reason(&ca, &h, &set(c.clone(), "iat", json!(NOW + 10))), Ok(()));
    // Another JWT type cannot pass as an assertion (RFC 8725 §3.11).
    assert_eq!(
        reason(&ca, &set(h, "typ", json!("dpop+jwt")), &c),
        Err("typ_not_allowed")
    );

    // FAPI 2.0 Message Signing §5.3.1: nbf required, no older than 60 minutes, exp - nbf <= 60 min.
    let ro = Validation::request_object(ISS).for_client(CLIENT);
    let (h, c) = Use::RequestObject.valid(key);
    let mut no_nbf = c.clone();
    no_nbf.as_object_mut().unwrap().remove("nbf");
    assert_eq!(reason(&ro, &h, &no_nbf), Err("claim_missing"));
    let old = set(
        set(c.clone(), "nbf", json!(NOW - 3601)),
        "exp",
        json!(NOW - 1 + 60),
    );
    assert_eq!(reason(&ro, &h, &old), Err("token_too_old"));
    let edge = set(set(c.clone(), "nbf", json!(NOW - 10)), "exp", json!(NOW + 3590));
    assert_eq!(reason(&ro, &h, &edge), Ok(()));
    let long = set(set(c.clone(), "nbf", json!(NOW - 10)), "exp", json!(NOW + 3591));
    assert_eq!(reason(&ro, &h, &long), Err("token_lifetime_too_long"));
    // A trailing slash on the issuer is the same audience.
    assert_eq!(reason(&ro, &h, &set(c, "aud", json!(format!("{ISS}/")))), Ok(()));
    // A JWE (five segments) is refused before any decoding.
    assert_eq!(
        ro.verify("a.b.c.d.e", &jwks, NOW)
            .map(|_| ())
            .map_err(|d| d.reason()),
        Err("malformed_token")
    );
}

/// RFC 7515 §4.1.11: a `crit` listing an extension this use understands, and that is present, passes;
/// one listing a registered header, or a missing one, does not.
#[test]
fn crit_is_accepted_only_for_understood_extensions() {
    let key = &keys().es;
    let jwks = Jwks::from_value(&json!({"keys": [key.public_jwk()]})).unwrap();
    let mut v = Validation::client_assertion(vec![ISS.into()]).for_client(CLIENT);
    v.understood_crit = vec!["urn:example:ext"];
    let (h, c) = Use::ClientAssertion.valid(key);
    let with_ext = set(
        set(h.clone(), "crit", json!(["urn:example:ext"])),
        "urn:example:ext",
        json!(1),
    );
    assert!(v.verify(&signed(key, &with_ext, &c), &jwks, NOW).is_ok());
    for crit in [
        json!(["urn:example:ext"]),
        json!(["alg"]),
        json!([]),
        json!("urn:example:ext"),
    ] {
        let hdr = set(h.clone(), "crit", crit.clone());
        assert_eq!(
            v.verify(&signed(key, &hdr, &c), &jwks, NOW).map(|_| ()),
            Err(Denial::UnknownCritical),
            "crit {crit}"
        );
    }
}
