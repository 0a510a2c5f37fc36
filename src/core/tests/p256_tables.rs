//! The ES256 fast path (feature `p256-tables`, src/p256_tables.rs) against Wycheproof and against ring.
//!
//! The fast path must accept exactly what ring's `ECDSA_P256_SHA256_FIXED` accepts (RFC 7518 §3.4,
//! FIPS 186-4 §6.4.2): every Wycheproof verdict, and thousands of random ring signatures with mutations
//! (flipped bits, r or s = 0, = n, >= n, s -> n - s, wrong lengths, other keys). ring is reached through
//! [`fapi_core::jwk::verify_with`], which always uses ring; the fast path through [`PublicJwk::verify`]
//! on a key prepared by [`Jwks`] parsing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::jwk::{verify_with, JwkError, PublicJwk};
use fapi_core::jwks::Jwks;
use fapi_core::sign::SigningKey;
use serde_json::{json, Value};

/// The group order n of P-256, big-endian.
const N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc,
    0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn load_wycheproof() -> Value {
    let name = "ecdsa_secp256r1_sha256_p1363_test.json";
    let here = format!("{}/tests/vectors/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&here)
        .or_else(|_| std::fs::read_to_string(format!("/work/shared/vectors/wycheproof/{name}")))
        .unwrap_or_else(|e| panic!("cannot read {here}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A key as the plugin holds it: parsed from a key set and prepared, so with its tables.
fn issuer_key(jwk: &Value) -> PublicJwk {
    let set = Jwks::from_value(&json!({ "keys": [jwk] })).unwrap().prepared();
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let key = set.keys.into_iter().next().unwrap();
    assert!(
        key.es256_tables().is_some(),
        "the key set did not build the tables"
    );
    key
}

/// Fast path and ring on the same input; they must agree. Returns the verdict.
fn both(key: &PublicJwk, msg: &[u8], sig: &[u8]) -> bool {
    let fast = key.verify(Algorithm::ES256, msg, sig);
    let direct = key.es256_tables().unwrap().verify(msg, sig);
    let ring = verify_with(&key.material, Algorithm::ES256, msg, sig);
    assert_eq!(fast, direct);
    assert_eq!(
        fast,
        ring,
        "fast path and ring disagree on msg {} sig {}",
        b64::encode(msg),
        b64::encode(sig)
    );
    fast
}

/// Wycheproof ECDSA P-256 SHA-256 in P1363 (r || s) form: every "valid" verifies, every "invalid" fails.
#[test]
fn wycheproof_p1363_through_the_fast_path() {
    let data = load_wycheproof();
    let (mut valid, mut invalid) = (0, 0);
    for group in data["testGroups"].as_array().unwrap() {
        assert_eq!(group["sha"], "SHA-256");
        let point = hex(group["publicKey"]["uncompressed"].as_str().unwrap());
        assert_eq!((point.len(), point[0]), (65, 4));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64::encode(&point[1..33]), "y": b64::encode(&point[33..])});
        let key = issuer_key(&jwk);
        for t in group["tests"].as_array().unwrap() {
            let (msg, sig) = (hex(t["msg"].as_str().unwrap()), hex(t["sig"].as_str().unwrap()));
            let accepted = both(&key, &msg, &sig);
            match t["result"].as_str().unwrap() {
                "valid" => {
                    assert!(accepted, "tcId {} must verify", t["tcId"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!accepted, "tcId {} must fail", t["tcId"]);
                    invalid += 1;
                }
                other => panic!("tcId {}: unexpected result {other}", t["tcId"]),
            }
        }
    }
    assert_eq!(valid + invalid, data["numberOfTests"].as_u64().unwrap());
    assert!(valid > 100 && invalid > 50, "{valid} valid, {invalid} invalid");
}

/// SplitMix64: reproducible test randomness (the keys and ring's nonces are random anyway).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// a - b for 256-bit big-endian numbers (wrapping).
fn sub(a: &[u8], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// a + b for 256-bit big-endian numbers, `None` on overflow.
fn add(a: &[u8], b: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in (0..32).rev() {
        let s = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = s as u8;
        carry = s >> 8;
    }
    (carry == 0).then_some(out)
}

fn with_r(sig: &[u8], r: &[u8]) -> Vec<u8> {
    [r, &sig[32..]].concat()
}

fn with_s(sig: &[u8], s: &[u8]) -> Vec<u8> {
    [&sig[..32], s].concat()
}

/// Random keys and messages signed by ring, then mutated: the fast path and ring agree on every case.
#[test]
fn differential_against_ring() {
    let mut rng = Rng(0x00f0_7a91_2b5e_0001);
    let keys: Vec<(SigningKey, PublicJwk)> = (0..16)
        .map(|_| {
            let sk = SigningKey::generate(Algorithm::ES256, None).unwrap();
            let pk = issuer_key(sk.public_jwk());
            (sk, pk)
        })
        .collect();
    let zero = [0u8; 32];
    let one = {
        let mut o = [0u8; 32];
        o[31] = 1;
        o
    };
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut tally = |ok: bool| if ok { accepted += 1 } else { rejected += 1 };
    for round in 0..2000 {
        let (sk, pk) = &keys[round % keys.len()];
        let len = match round % 4 {
            0 => 0,
            1 => rng.below(64),
            _ => 200 + rng.below(1000),
        };
        let msg = rng.bytes(len);
        let sig = sk.sign(&msg).unwrap();
        assert_eq!(sig.len(), 64);
        assert!(both(pk, &msg, &sig), "a fresh ring signature must verify");
        tally(true);

        // s and n - s both verify (ECDSA has no low-s rule; ring accepts both).
        let high = with_s(&sig, &sub(&N, &sig[32..]));
        assert!(both(pk, &msg, &high), "n - s must verify like ring");
        tally(true);

        // One flipped bit in r, s or the message.
        let mut bad_sig = sig.clone();
        let bit = rng.below(512);
        bad_sig[bit / 8] ^= 1 << (bit % 8);
        tally(both(pk, &msg, &bad_sig));
        let mut bad_msg = msg.clone();
        if bad_msg.is_empty() {
            bad_msg.push(0);
        } else {
            let bit = rng.below(bad_msg.len() * 8);
            bad_msg[bit / 8] ^= 1 << (bit % 8);
        }
        tally(both(pk, &bad_msg, &sig));

        // Another key of the set.
        let (_, other) = &keys[(round + 1) % keys.len()];
        tally(both(other, &msg, &sig));

        // Range checks on a sample (they fail before any point arithmetic).
        if round % 10 == 0 {
            let r_plus_n = add(&sig[..32], &N);
            let s_plus_n = add(&sig[32..], &N);
            let mut cases = vec![
                with_r(&sig, &zero),
                with_s(&sig, &zero),
                with_r(&sig, &N),
                with_s(&sig, &N),
                with_r(&sig, &[0xff; 32]),
                with_s(&sig, &[0xff; 32]),
                with_r(&sig, &add(&N, &one).unwrap()),
                with_s(&sig, &add(&N, &one).unwrap()),
                with_r(&sig, &one),
                with_s(&sig, &one),
                with_s(&sig, &sub(&N, &one)),
                [zero, zero].concat(),
                sig[..63].to_vec(),
                [&sig[..], &[0u8]].concat(),
                [&[0u8][..], &sig[..]].concat(),
                Vec::new(),
            ];
            cases.extend(r_plus_n.map(|r| with_r(&sig, &r)));
            cases.extend(s_plus_n.map(|s| with_s(&sig, &s)));
            for case in &cases {
                assert!(!both(pk, &msg, case), "{} must fail", b64::encode(case));
                tally(false);
            }
        }
    }
    // The mutations really were mostly rejections, and every case was compared.
    assert!(accepted >= 4000, "{accepted} accepted");
    assert!(rejected >= 5000, "{rejected} rejected");
}

/// Q must be a point of P-256: off-curve points are refused when the key is parsed, so a key set skips them.
#[test]
fn off_curve_and_identity_keys_are_refused_at_parse() {
    let sk = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let jwk = sk.public_jwk().clone();
    let mut y = b64::decode(jwk["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    let mut off = jwk.clone();
    off["y"] = json!(b64::encode(&y));
    assert_eq!(PublicJwk::from_value(&off), Err(JwkError::BadMember("y")));
    let set = Jwks::from_value(&json!({ "keys": [off, jwk] })).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.skipped.len(), 1);
    assert_eq!(set.skipped[0].error, JwkError::BadMember("y"));

    // (0, 0) is how some encoders write the point at infinity; it is not on the curve.
    let zero = b64::encode([0u8; 32]);
    let inf = json!({"kty":"EC","crv":"P-256","x": zero,"y": zero});
    assert_eq!(PublicJwk::from_value(&inf), Err(JwkError::BadMember("y")));
}

/// Keys get tables only when prepared (the plugin prepares the key sets it holds); a DPoP proof's
/// key, parsing alone, or a key set that is not prepared (the server, the CLI) gets none.
#[test]
fn tables_are_built_only_when_prepared() {
    let sk0 = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let unprepared = Jwks::from_value(&json!({ "keys": [sk0.public_jwk()] })).unwrap();
    assert!(unprepared.keys[0].es256_tables().is_none());
    let sk = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let single = PublicJwk::from_value(sk.public_jwk()).unwrap();
    assert!(single.es256_tables().is_none());
    let msg = b"header.payload";
    let sig = sk.sign(msg).unwrap();
    assert!(single.verify(Algorithm::ES256, msg, &sig));
    let prepared = single.clone().prepare();
    let tables = prepared.es256_tables().unwrap();
    assert!(tables.table_bytes() > 0);
    assert!(tables.verify(msg, &sig));
    // Equality ignores the tables (they are derived from the key); clones share them.
    assert_eq!(single, prepared);
    let clone = prepared.clone();
    assert!(std::ptr::eq(clone.es256_tables().unwrap(), tables));
    // Other algorithms never use the ES256 tables.
    assert!(!prepared.verify(Algorithm::EdDSA, msg, &sig));
    assert!(!prepared.verify(Algorithm::PS256, msg, &sig));
}
