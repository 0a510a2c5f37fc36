//! Fixtures shared by the fuzz targets and by the seed generator ([`seeds`]): fixed keys
//! (`keys.json`, test keys made for this crate and used nowhere else), a fixed clock, the policy the
//! access-token and DPoP targets decide under, the WebAuthn relying party and passkey, and the JWE
//! recipient. Everything is deterministic, so a crash input replays the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::b64;
use fapi_core::cache::{RevocationList, TokenCache};
use fapi_core::decision::Decision;
use fapi_core::dpop::MemoryReplayStore;
use fapi_core::extract::RequestFacts;
use fapi_core::guard::{Context, Guard};
use fapi_core::policy::Policy;
use fapi_core::sign::SigningKey;
use serde_json::{json, Value};
use std::sync::OnceLock;

/// The clock of every target (2025-06-15T15:06:40Z).
pub mod seeds;

/// Every target's `init`: readies the fixtures; with `FAPI_FUZZ_WRITE_SEEDS=DIR` in the environment,
/// writes the seed corpus of all targets into DIR instead and exits (`scripts/fuzz --seeds`).
pub fn init() {
    if let Some(dir) = std::env::var_os("FAPI_FUZZ_WRITE_SEEDS") {
        seeds::write_all(std::path::Path::new(&dir));
        println!("seeds written to {}", std::path::Path::new(&dir).display());
        std::process::exit(0);
    }
    keys();
    guard();
}

pub const NOW: i64 = 1_750_000_000;
pub const ISS: &str = "https://as.bank.example";
pub const AUD: &str = "https://api.bank.example";
pub const HOST: &str = "api.bank.example";
/// Seconds an expired token is still accepted and `iat` may lie ahead (core's defaults).
pub const LEEWAY_PAST: i64 = 60;
pub const LEEWAY_FUTURE: i64 = 10;
pub const MAX_LIFETIME: i64 = 3600;
/// The bearer-allowed route the access-token target asks for, and the scope it requires.
pub const ACCOUNTS_PATH: &str = "/accounts/42";
pub const ACCOUNTS_SCOPE: &str = "accounts";
/// The request every DPoP proof is checked against.
pub const DPOP_METHOD: &str = "POST";
pub const DPOP_HTU: &str = "https://api.bank.example/payments";
pub const DPOP_ACCESS_TOKEN: &str = "dpop-bound.access.token";
pub const NONCE_SECRET: &[u8] = b"fapi-fuzz nonce secret, 32 bytes or more";
/// WebAuthn: the relying party is derived from this issuer, as fapi-as does.
pub const WEBAUTHN_ISSUER: &str = "https://login.bank.example";
/// A base64url challenge of 32 bytes (the server's draw, fixed here).
pub const WEBAUTHN_CHALLENGE: &str = "Y2hhbGxlbmdlIGZvciB0aGUgZnV6eiB0YXJnZXRzISE";
pub const PASSKEY_USER: &str = "user-1";
/// The stored passkey's credential ID (base64url) and counter.
pub const PASSKEY_ID: &str = "cGFzc2tleS0x";
pub const PASSKEY_SIGN_COUNT: i64 = 5;
/// The JWE recipient: RFC 7518 Appendix C's Bob, which is also Wycheproof's JWE ECDH-ES key
/// (json_web_encryption_test.json, tcId 76-81), so those vectors decrypt for real.
pub const JWE_RECIPIENT_D: &str = "VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw";
pub const JWE_RECIPIENT_X: &str = "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ";
pub const JWE_RECIPIENT_Y: &str = "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck";

pub struct Keys {
    pub issuer_es: SigningKey,
    pub issuer_ed: SigningKey,
    pub dpop_es: SigningKey,
    pub dpop_ed: SigningKey,
    pub passkey: SigningKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let all: Value = serde_json::from_str(include_str!("../keys.json")).expect("keys.json");
        let load = |name: &str, kid: Option<&str>| {
            let mut jwk = all[name].clone();
            if let Some(kid) = kid {
                jwk["kid"] = json!(kid);
            }
            SigningKey::from_jwk(&jwk).expect("a key of keys.json")
        };
        Keys {
            issuer_es: load("issuer_es256", Some("es-1")),
            issuer_ed: load("issuer_eddsa", Some("ed-1")),
            dpop_es: load("dpop_es256", None),
            dpop_ed: load("dpop_eddsa", None),
            passkey: load("passkey_es256", None),
        }
    })
}

/// The policy of the access-token target: one issuer with inline keys, FAPI defaults (required sub,
/// client_id, iat, jti; 60 s past, 10 s future leeway), a maximum lifetime, and a bearer-allowed route
/// that requires one scope.
pub fn policy_value() -> Value {
    let k = keys();
    json!({
        "version": 1,
        "name": "fuzz",
        "issuers": [{
            "issuer": ISS,
            "audiences": [AUD],
            "max_lifetime": MAX_LIFETIME,
            "jwks": {"keys": [k.issuer_es.public_jwk(), k.issuer_ed.public_jwk()]}
        }],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "anonymous": true},
            {"name": "accounts", "match": {"methods": ["GET"], "prefix": "/accounts"},
             "require": {"scopes": [ACCOUNTS_SCOPE], "sender_constraint": "bearer-allowed"}}
        ]
    })
}

pub fn guard() -> &'static Guard {
    static GUARD: OnceLock<Guard> = OnceLock::new();
    GUARD.get_or_init(|| {
        let (policy, _) = Policy::from_value(policy_value()).expect("the fuzz policy compiles");
        Guard::new(policy, Some(NONCE_SECRET))
    })
}

/// Decides a bearer token on the accounts route with a fresh worker state, twice (the second time
/// from the verified-token cache, as a worker would for a token it saw before).
pub fn decide_bearer(token: &str) -> (Decision, Decision) {
    let guard = guard();
    let facts = RequestFacts {
        method: "GET".into(),
        scheme: "https".into(),
        authority: HOST.into(),
        path: ACCOUNTS_PATH.into(),
        authorization: vec![format!("Bearer {token}")],
        ..RequestFacts::default()
    };
    let mut cache = TokenCache::new(16);
    let mut replay = MemoryReplayStore::new(16);
    let revocations = RevocationList::new();
    let mut ctx = Context {
        keys: &guard.policy,
        cache: &mut cache,
        replay: &mut replay,
        revocations: &revocations,
        revocation_feed_current: true,
        now: NOW,
    };
    let first = guard.decide(&facts, &mut ctx);
    let second = guard.decide(&facts, &mut ctx);
    (first, second)
}

/// A compact JWS over exactly these header and payload bytes (not re-serialized: the targets want
/// the parser to see the fuzzer's JSON, duplicate members and odd escapes included).
pub fn sign_raw(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64::encode(header), b64::encode(payload));
    let sig = key.sign(input.as_bytes()).expect("signing");
    format!("{input}.{}", b64::encode(sig))
}

/// Splits at the first `0xFF` (a byte no UTF-8 text holds): `(before, after)`, `after` empty if none.
pub fn split_ff(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// The payload of a compact JWS as JSON, read independently of fapi-core's parser.
pub fn jws_part(token: &str, index: usize) -> Option<Value> {
    let part = token.split('.').nth(index)?;
    serde_json::from_slice(&b64::decode(part)?).ok()
}

/// A JSON NumericDate as fapi-core reads it: integer, or a finite fraction truncated.
pub fn numeric_date(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// The JWE recipient's public key as a client would register it.
pub fn jwe_recipient_jwks() -> Value {
    json!({"keys": [{"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc-1",
                     "x": JWE_RECIPIENT_X, "y": JWE_RECIPIENT_Y}]})
}

/// Static-key ECDH on P-256 with the recipient's key: Z, the x coordinate of d·point.
pub fn jwe_recipient_agree(point: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::point::AffineCoordinates;
    use p256::elliptic_curve::sec1::FromSec1Point;
    use p256::elliptic_curve::PrimeField;
    use p256::{AffinePoint, ProjectivePoint, Scalar};
    let d: [u8; 32] = b64::decode(JWE_RECIPIENT_D)?.try_into().ok()?;
    let scalar: Option<Scalar> = Scalar::from_repr(d.into()).into();
    let peer: Option<AffinePoint> = AffinePoint::from_sec1_bytes(point).ok();
    let shared = (ProjectivePoint::from(peer?) * scalar?).to_affine();
    Some(shared.x().to_vec())
}

/// The stored passkey of the assertion target, as `Store::passkey` would return it.
pub fn stored_passkey() -> fapi_as::webauthn::StoredCredential {
    let mut jwk = keys().passkey.public_jwk().clone();
    if let Some(o) = jwk.as_object_mut() {
        o.remove("use");
        o.remove("kid");
    }
    fapi_as::webauthn::StoredCredential {
        credential_id: PASSKEY_ID.to_string(),
        user_id: PASSKEY_USER.to_string(),
        public_key_jwk: jwk.to_string(),
        sign_count: PASSKEY_SIGN_COUNT,
    }
}

/// clientDataJSON as a browser sends it for this relying party.
pub fn client_data(kind: &str) -> Vec<u8> {
    let origin = fapi_as::webauthn::RelyingParty::from_issuer(WEBAUTHN_ISSUER)
        .expect("relying party")
        .origin;
    json!({"type": kind, "challenge": WEBAUTHN_CHALLENGE, "origin": origin, "crossOrigin": false})
        .to_string()
        .into_bytes()
}

/// An ASN.1 DER ECDSA signature (WebAuthn §6.5.5) over `message` with the passkey.
pub fn passkey_sign_der(message: &[u8]) -> Vec<u8> {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let jwk = keys().passkey.private_jwk();
    let part = |n: &str| b64::decode(jwk[n].as_str().unwrap_or_default()).unwrap_or_default();
    let mut public = vec![4u8];
    public.extend(part("x"));
    public.extend(part("y"));
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_ASN1_SIGNING,
        &part("d"),
        &public,
        &rng,
    )
    .expect("passkey");
    pair.sign(&rng, message).expect("ECDSA").as_ref().to_vec()
}

/// Authenticator data (§6.1) fields at their fixed offsets, read independently of fapi-as.
pub struct RawAuthData<'a> {
    pub rp_id_hash: &'a [u8],
    pub flags: u8,
    pub sign_count: u32,
    /// AAGUID and credential ID, when the AT flag is set and the lengths fit.
    pub attested: Option<(&'a [u8], &'a [u8])>,
}

pub fn raw_auth_data(data: &[u8]) -> Option<RawAuthData<'_>> {
    if data.len() < 37 {
        return None;
    }
    let flags = data[32];
    let attested = if flags & 0x40 != 0 && data.len() >= 55 {
        let len = usize::from(u16::from_be_bytes([data[53], data[54]]));
        data.get(55..55 + len).map(|id| (&data[37..53], id))
    } else {
        None
    };
    Some(RawAuthData {
        rp_id_hash: &data[..32],
        flags,
        sign_count: u32::from_be_bytes([data[33], data[34], data[35], data[36]]),
        attested,
    })
}

/// A COSE_Key (RFC 9053 §7.1.1) for a P-256 public key, alg ES256.
pub fn cose_es256(x: &[u8], y: &[u8]) -> ciborium::Value {
    use ciborium::Value as C;
    C::Map(vec![
        (C::Integer(1.into()), C::Integer(2.into())),
        (C::Integer(3.into()), C::Integer((-7).into())),
        (C::Integer((-1).into()), C::Integer(1.into())),
        (C::Integer((-2).into()), C::Bytes(x.to_vec())),
        (C::Integer((-3).into()), C::Bytes(y.to_vec())),
    ])
}

pub fn cbor_bytes(v: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("CBOR");
    out
}

/// An attestation object `{fmt: "none", attStmt: {}, authData}` around `auth_data`.
pub fn attestation_none(auth_data: &[u8]) -> Vec<u8> {
    use ciborium::Value as C;
    cbor_bytes(&C::Map(vec![
        (C::Text("fmt".into()), C::Text("none".into())),
        (C::Text("attStmt".into()), C::Map(vec![])),
        (C::Text("authData".into()), C::Bytes(auth_data.to_vec())),
    ]))
}

/// Authenticator data for the relying party: rpIdHash, flags, counter and optional attested data.
pub fn auth_data(flags: u8, sign_count: u32, attested: Option<(&[u8; 16], &[u8], &[u8])>) -> Vec<u8> {
    let rp = fapi_as::webauthn::RelyingParty::from_issuer(WEBAUTHN_ISSUER).expect("relying party");
    let mut out = b64::sha256(rp.id.as_bytes()).to_vec();
    out.push(flags);
    out.extend(sign_count.to_be_bytes());
    if let Some((aaguid, id, cose)) = attested {
        out.extend(aaguid);
        out.extend((id.len() as u16).to_be_bytes());
        out.extend(id);
        out.extend(cose);
    }
    out
}
