//! JWE compact serialization in fapi-as (src/server/src/jwe.rs): decryption of attacker-shaped input
//! (`decrypt_with`, RFC 7516 §5.2, with a fixed P-256 recipient key: Wycheproof's ECDH-ES key, so its
//! vectors decrypt) and the choice of a client's encryption key from its registered JWK Set
//! (`select_key`, RFC 7517 §4.2-4.4).
//!
//! Input: a mode byte, then the compact JWE (even) or the client's JWK Set as JSON (odd).
//!
//! Beyond "no panic": a decrypted JWE has `alg` ECDH-ES, a supported `enc`, no `zip` or `crit`, and
//! its plaintext encrypted again to the same key decrypts to the same bytes (round trip); a selected
//! key is a P-256 key of the set explicitly marked for encryption, and encryption to the set works.
#![no_main]

use fapi_as::jwe::{decrypt_with, encrypt_to_client, select_key, ENC_VALUES};
use fapi_core::jwk::{KeyMaterial, PublicJwk};
use fapi_fuzz::*;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(jwe) = std::str::from_utf8(rest) else {
            return;
        };
        let Ok(out) = decrypt_with(jwe, jwe_recipient_agree) else {
            return;
        };
        assert_eq!(out.header["alg"], "ECDH-ES");
        let enc = out.header["enc"].as_str().expect("enc");
        assert!(ENC_VALUES.contains(&enc), "decrypted with enc {enc}");
        assert!(!out.header.contains_key("zip") && !out.header.contains_key("crit"));
        let cty = out.header.get("cty").and_then(Value::as_str);
        let again = encrypt_to_client(&jwe_recipient_jwks(), "ECDH-ES", enc, &out.plaintext, cty)
            .expect("encrypt to the recipient");
        let back = decrypt_with(&again, jwe_recipient_agree).expect("round trip decrypts");
        assert_eq!(back.plaintext, out.plaintext);
    } else {
        let Ok(jwks) = serde_json::from_slice::<Value>(rest) else {
            return;
        };
        let Ok(key) = select_key(&jwks, "ECDH-ES") else {
            return;
        };
        assert!(matches!(key.material, KeyMaterial::P256 { .. }));
        // Several entries may hold the same key (say, one for "sig" and one for "enc"): one of them
        // must be marked for encryption and not for another use.
        let suitable = |entry: &Value| {
            let marked = entry.get("use") == Some(&Value::from("enc"))
                || entry.get("key_ops").is_some()
                || entry.get("alg") == Some(&Value::from("ECDH-ES"));
            marked && entry.get("use").is_none_or(|u| u == "enc")
        };
        let from_set = jwks["keys"].as_array().expect("a key set").iter().any(|k| {
            PublicJwk::from_value(k).is_ok_and(|p| p.thumbprint == key.thumbprint) && suitable(k)
        });
        assert!(from_set, "chosen key is not a marked encryption key of the set: {jwks}");
        encrypt_to_client(&jwks, "ECDH-ES", "A256GCM", b"x", None).expect("encrypt to the chosen key");
    }
});
