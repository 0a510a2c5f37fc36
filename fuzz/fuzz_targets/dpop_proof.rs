//! DPoP proofs (RFC 9449 §4.3) through fapi-core's entry, `dpop::check_proof`, for a fixed request
//! (POST to a fixed URI with a fixed access token), the default rules, a nonce issuer and a fixed `now`.
//!
//! Input: a mode byte, then
//! - 0: the proof as sent in the `DPoP` header;
//! - 1: header JSON `0xFF` payload JSON, signed over exactly those bytes by a fixed EdDSA key (the
//!   header must name that key in `jwk` to pass: the seeds do);
//! - 2, 3: payload JSON only, under a fixed valid header (`typ`, `alg`, `jwk`) of the EdDSA (2) or
//!   ES256 (3) key: reaches every claim check.
//!
//! Beyond "no panic": an accepted proof is re-checked here, independently of core: typ, alg, htm,
//! htu (normalized), iat within the window, ath equal to the token hash, a jti, and the returned
//! `jkt` is the RFC 7638 thumbprint of the header's key (that of the signing key in modes 2 and 3).
#![no_main]

use fapi_core::b64;
use fapi_core::dpop::{check_proof, DpopRules, NonceIssuer, ProofContext};
use fapi_core::jwk::PublicJwk;
use fapi_fuzz::*;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let k = keys();
    let (proof, signer) = match mode % 4 {
        0 => match std::str::from_utf8(rest) {
            Ok(p) => (p.to_string(), None),
            Err(_) => return,
        },
        1 => {
            let (header, payload) = split_ff(rest);
            (sign_raw(&k.dpop_ed, header, payload), None)
        }
        m => {
            let key = if m == 2 { &k.dpop_ed } else { &k.dpop_es };
            let header = json!({"typ": "dpop+jwt", "alg": key.alg().as_str(), "jwk": key.public_jwk_bare()});
            (sign_raw(key, header.to_string().as_bytes(), rest), Some(key))
        }
    };
    let ctx = ProofContext {
        method: DPOP_METHOD,
        htu: DPOP_HTU,
        access_token: Some(DPOP_ACCESS_TOKEN),
    };
    let rules = DpopRules::default();
    let nonces = NonceIssuer::new(NONCE_SECRET, 300);
    let Ok(valid) = check_proof(&[proof.as_str()], &ctx, &rules, Some(&nonces), NOW) else {
        return;
    };
    let header = jws_part(&proof, 0).expect("accepted proof has a JSON header");
    let claims = jws_part(&proof, 1).expect("accepted proof has a JSON payload");
    assert!(header["typ"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")));
    let alg = header["alg"].as_str().expect("alg");
    assert!(rules.algorithms.iter().any(|a| a.as_str() == alg), "accepted alg {alg}");
    let jwk = PublicJwk::from_value(&header["jwk"]).expect("accepted proof has a public jwk");
    assert_eq!(valid.jkt, jwk.thumbprint);
    if let Some(key) = signer {
        assert_eq!(valid.jkt, key.thumbprint());
    }
    assert_eq!(claims["htm"], DPOP_METHOD);
    let htu = claims["htu"].as_str().expect("htu");
    assert_eq!(fapi_core::uri::normalize(htu).as_deref(), Some(DPOP_HTU));
    let iat = numeric_date(&claims["iat"]).expect("iat");
    assert!(iat >= NOW - rules.iat_window as i64 && iat <= NOW + rules.iat_future as i64, "iat {iat}");
    assert_eq!(claims["ath"].as_str(), Some(b64::sha256_b64(DPOP_ACCESS_TOKEN).as_str()));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    if let Some(n) = claims.get("nonce") {
        assert!(n.as_str().is_some_and(|n| nonces.is_valid(n, NOW)), "accepted a bad nonce");
    }
    assert!(valid.remember_until > iat);
});
