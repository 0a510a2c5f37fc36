//! Access tokens (RFC 9068 JWS compact + claims) through fapi-core's real entry, `Guard::decide`, with
//! the fixture policy, its inline key set and a fixed `now`.
//!
//! Input: a mode byte, then
//! - even: the token text as sent in `Authorization: Bearer`;
//! - odd: header JSON `0xFF` payload JSON, signed by the issuer's EdDSA (mode 1) or ES256 (mode 3)
//!   key over exactly those bytes, so the claim checks behind the signature are reached.
//!
//! Beyond "no panic": every admitted token is re-checked here, independently of core, against the
//! rules it was admitted under (issuer, audience, expiry with leeway, iat not ahead, lifetime,
//! required claims, the route's scope, header without keys or `crit`).
#![no_main]

use fapi_core::decision::Decision;
use fapi_fuzz::*;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        }
    } else {
        let (header, payload) = split_ff(rest);
        let key = if mode % 4 == 1 { &keys().issuer_ed } else { &keys().issuer_es };
        sign_raw(key, header, payload)
    };
    // Decided twice: the second time from the verified-token cache, which must not change it.
    let (first, second) = decide_bearer(&token);
    assert_eq!(first.reason(), second.reason(), "cache changed the decision");
    let Decision::Allow(allow) = first else {
        return;
    };
    assert_eq!(allow.rule, "accounts");
    let header = jws_part(&token, 0).expect("admitted token has a JSON header");
    let claims = jws_part(&token, 1).expect("admitted token has a JSON payload");
    for forbidden in ["jwk", "jku", "x5u", "x5c", "crit"] {
        assert!(header.get(forbidden).is_none(), "admitted with header {forbidden}");
    }
    assert!(
        matches!(header["alg"].as_str(), Some("ES256" | "EdDSA")),
        "admitted with alg {}",
        header["alg"]
    );
    assert_eq!(claims["iss"], ISS);
    let aud_ok = match &claims["aud"] {
        Value::String(a) => a == AUD,
        Value::Array(a) => a.iter().any(|v| v == AUD),
        _ => false,
    };
    assert!(aud_ok, "admitted with aud {}", claims["aud"]);
    let exp = numeric_date(&claims["exp"]).expect("exp");
    assert!(NOW < exp.saturating_add(LEEWAY_PAST), "admitted expired: exp {exp}");
    let iat = numeric_date(&claims["iat"]).expect("iat is required");
    assert!(iat <= NOW + LEEWAY_FUTURE, "admitted with iat {iat} ahead");
    assert!(exp.saturating_sub(iat) <= MAX_LIFETIME, "admitted with lifetime {}", exp - iat);
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).expect("nbf");
        assert!(nbf <= NOW + LEEWAY_FUTURE, "admitted before nbf {nbf}");
    }
    for required in ["sub", "client_id", "jti"] {
        assert!(claims[required].is_string(), "admitted without {required}");
    }
    let scopes: Vec<&str> = match &claims["scope"] {
        Value::String(s) => s.split(' ').collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    assert!(scopes.contains(&ACCOUNTS_SCOPE), "admitted without the scope: {}", claims["scope"]);
    assert_eq!(allow.claims.iss, ISS);
    assert_eq!(allow.claims.exp, exp);
});
