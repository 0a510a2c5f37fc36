//! JWE compact serialization (RFC 7516 §7.1) for the tokens the server encrypts to a client: id_tokens
//! (OpenID Connect Core §10.2) and JARM responses (JARM §2.3) of clients that registered an encryption
//! key and `*_encrypted_response_alg` / `*_encrypted_response_enc`.
//!
//! Supported: `alg` ECDH-ES (RFC 7518 §4.6, direct key agreement on P-256 with the Concat KDF of
//! NIST SP 800-56A §5.8.1 over SHA-256, AlgorithmID = `enc`, empty PartyUInfo and PartyVInfo) and
//! `enc` A256GCM or A128GCM (RFC 7518 §5.3). Not supported: ECDH-ES+A*KW and RSA-OAEP (ring offers
//! neither AES key wrap nor RSA encryption) and A128CBC-HS256 (no AES-CBC in ring) — so a client that
//! registers `id_token_encrypted_response_alg` without `..._enc` (whose OpenID Connect Registration §2
//! default is A128CBC-HS256) must be refused at registration, not silently given A128GCM.
//!
//! Which key of the client's set: an EC P-256 key (validated by [`fapi_core::jwk::PublicJwk`], so never
//! one with private members) that is explicitly meant for encryption — `use` is "enc", or `key_ops`
//! names an encryption operation, or its `alg` is the requested `alg` — and is not excluded by any of
//! those members (RFC 7517 §4.2-4.4). A key without any of these markers is never used: the client's
//! signing keys (private_key_jwt) often carry none, and key separation matters more than convenience.
//! The chosen key's `kid`, if any, is copied into the header (RFC 7516 §4.1.6).
//!
//! [`decrypt_with`] is the recipient side, with the ECDH step supplied by the caller (ring only does
//! ephemeral agreement): the interop tests use it against keys held by an independent implementation.

use fapi_core::b64;
use fapi_core::jwk::{KeyMaterial, PublicJwk};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Map, Value};

/// The `alg` values this module implements (for discovery's `*_encryption_alg_values_supported`).
pub const ALG_VALUES: &[&str] = &["ECDH-ES"];
/// The `enc` values this module implements (for discovery's `*_encryption_enc_values_supported`).
pub const ENC_VALUES: &[&str] = &["A256GCM", "A128GCM"];

/// The largest compact JWE [`decrypt_with`] looks at.
pub const MAX_JWE_LEN: usize = 256 * 1024;

/// `key_ops` values (RFC 7517 §4.3) that say a public key may receive encrypted content.
const ENCRYPTION_OPS: [&str; 4] = ["encrypt", "wrapKey", "deriveKey", "deriveBits"];

/// Why a JWE could not be produced or opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JweError {
    /// The `alg` is not one of [`ALG_VALUES`].
    UnsupportedAlg(String),
    /// The `enc` is not one of [`ENC_VALUES`].
    UnsupportedEnc(String),
    /// The client's key set is not a JWK Set (RFC 7517 §5).
    NotAKeySet,
    /// No key of the client's set is a P-256 key marked for encryption.
    NoEncryptionKey,
    /// The recipient's public key was refused by the ECDH computation (not a point on P-256).
    KeyAgreementFailed,
    /// Randomness or the AEAD failed (not expected to happen).
    Crypto,
    /// A compact JWE that is not well formed; names the part.
    Malformed(&'static str),
    /// A header parameter this implementation does not understand and may not ignore (`zip`, `crit`).
    UnsupportedHeader(&'static str),
    /// The input exceeds [`MAX_JWE_LEN`].
    TooLarge,
    /// The authentication tag did not verify: wrong key, or the JWE was altered.
    DecryptionFailed,
}

impl std::fmt::Display for JweError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JweError::UnsupportedAlg(a) => write!(f, "JWE alg \"{a}\" is not supported (ECDH-ES only)"),
            JweError::UnsupportedEnc(e) => {
                write!(f, "JWE enc \"{e}\" is not supported (A256GCM or A128GCM)")
            }
            JweError::NotAKeySet => f.write_str("the client's jwks is not a JWK Set"),
            JweError::NoEncryptionKey => f.write_str(
                "the client's jwks has no P-256 key marked for encryption (use \"enc\", key_ops or alg)",
            ),
            JweError::KeyAgreementFailed => f.write_str("ECDH with the client's key failed"),
            JweError::Crypto => f.write_str("a cryptographic primitive failed"),
            JweError::Malformed(part) => write!(f, "malformed JWE: {part}"),
            JweError::UnsupportedHeader(h) => write!(f, "JWE header \"{h}\" is not supported"),
            JweError::TooLarge => f.write_str("the JWE is too large"),
            JweError::DecryptionFailed => f.write_str("the JWE did not decrypt"),
        }
    }
}

impl std::error::Error for JweError {}

/// A content encryption algorithm (RFC 7518 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    A128Gcm,
    A256Gcm,
}

impl Enc {
    fn parse(enc: &str) -> Result<Self, JweError> {
        match enc {
            "A256GCM" => Ok(Enc::A256Gcm),
            "A128GCM" => Ok(Enc::A128Gcm),
            other => Err(JweError::UnsupportedEnc(other.to_string())),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Enc::A128Gcm => "A128GCM",
            Enc::A256Gcm => "A256GCM",
        }
    }
    fn key_len(self) -> usize {
        match self {
            Enc::A128Gcm => 16,
            Enc::A256Gcm => 32,
        }
    }
    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Enc::A128Gcm => &aead::AES_128_GCM,
            Enc::A256Gcm => &aead::AES_256_GCM,
        }
    }
}

fn check_alg(alg: &str) -> Result<(), JweError> {
    if alg == "ECDH-ES" {
        Ok(())
    } else {
        Err(JweError::UnsupportedAlg(alg.to_string()))
    }
}

/// `true` when [`encrypt_to_client`] implements this `alg` / `enc` pair (for client registration).
pub fn supported(alg: &str, enc: &str) -> bool {
    check_alg(alg).is_ok() && Enc::parse(enc).is_ok()
}

/// The key of `client_jwks` (a JWK Set) that JWEs with `alg` are encrypted to: the first P-256 key
/// marked for encryption (see the module documentation for the rule).
pub fn select_key(client_jwks: &Value, alg: &str) -> Result<PublicJwk, JweError> {
    check_alg(alg)?;
    let keys = client_jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JweError::NotAKeySet)?;
    keys.iter()
        .filter_map(|k| PublicJwk::from_value(k).ok())
        .find(|k| {
            // A point off the curve is refused here, at registration, not when the first id_token is
            // encrypted to it. fapi-core checks points at parse time only with its `p256-tables`
            // feature, which a `cargo build -p fapi-as` does not enable.
            let is_p256 = matches!(&k.material,
                KeyMaterial::P256 { point } if crate::webauthn::p256_point_is_valid(point));
            let use_ok = k.key_use.as_deref().is_none_or(|u| u == "enc");
            let ops_ok = k
                .key_ops
                .as_ref()
                .is_none_or(|ops| ops.iter().any(|o| ENCRYPTION_OPS.contains(&o.as_str())));
            let alg_ok = k.alg.as_deref().is_none_or(|a| a == alg);
            let marked =
                k.key_use.as_deref() == Some("enc") || k.key_ops.is_some() || k.alg.as_deref() == Some(alg);
            is_p256 && use_ok && ops_ok && alg_ok && marked
        })
        .ok_or(JweError::NoEncryptionKey)
}

/// Encrypts `plaintext` to the client's encryption key (RFC 7516 §5.1) and returns the compact JWE.
/// For a nested JWT (a signed id_token or JARM response) pass `cty: Some("JWT")` (RFC 7519 §5.2).
pub fn encrypt_to_client(
    client_jwks: &Value,
    alg: &str,
    enc: &str,
    plaintext: &[u8],
    cty: Option<&str>,
) -> Result<String, JweError> {
    let enc = Enc::parse(enc)?;
    let key = select_key(client_jwks, alg)?;
    encrypt_to_key(&key, enc, plaintext, cty)
}

fn encrypt_to_key(
    key: &PublicJwk,
    enc: Enc,
    plaintext: &[u8],
    cty: Option<&str>,
) -> Result<String, JweError> {
    let KeyMaterial::P256 { point } = &key.material else {
        return Err(JweError::NoEncryptionKey);
    };
    let rng = SystemRandom::new();
    // RFC 7518 §4.6.1: a fresh ephemeral key pair for every JWE; its public key goes in "epk".
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| JweError::Crypto)?;
    let epk_point = ephemeral.compute_public_key().map_err(|_| JweError::Crypto)?;
    let epk_bytes = epk_point.as_ref();
    if epk_bytes.len() != 65 {
        return Err(JweError::Crypto);
    }
    // ring validates the recipient's point (on the curve, not the identity) before multiplying.
    let cek = agreement::agree_ephemeral(ephemeral, &UnparsedPublicKey::new(&ECDH_P256, point), |z| {
        // RFC 7518 §4.6.2: direct key agreement, so AlgorithmID is the "enc" value.
        concat_kdf(z, enc.name(), &[], &[], enc.key_len())
    })
    .map_err(|_| JweError::KeyAgreementFailed)?;

    let mut header = Map::new();
    header.insert("alg".into(), json!("ECDH-ES"));
    header.insert("enc".into(), json!(enc.name()));
    header.insert(
        "epk".into(),
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64::encode(&epk_bytes[1..33]),
            "y": b64::encode(&epk_bytes[33..65]),
        }),
    );
    if let Some(kid) = &key.kid {
        header.insert("kid".into(), json!(kid));
    }
    if let Some(cty) = cty {
        header.insert("cty".into(), json!(cty));
    }
    let header_b64 = b64::encode(Value::Object(header).to_string());

    let mut iv = [0u8; 12];
    rng.fill(&mut iv).map_err(|_| JweError::Crypto)?;
    let sealing = LessSafeKey::new(UnboundKey::new(enc.aead(), &cek).map_err(|_| JweError::Crypto)?);
    let mut ciphertext = plaintext.to_vec();
    // RFC 7516 §5.1 step 14: the AAD is ASCII(BASE64URL(UTF8(JWE Protected Header))).
    let tag = sealing
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header_b64.as_bytes()),
            &mut ciphertext,
        )
        .map_err(|_| JweError::Crypto)?;
    // ECDH-ES direct: the JWE Encrypted Key is the empty octet sequence (RFC 7518 §4.6).
    Ok(format!(
        "{header_b64}..{}.{}.{}",
        b64::encode(iv),
        b64::encode(ciphertext),
        b64::encode(tag.as_ref())
    ))
}

/// The Concat KDF of NIST SP 800-56A §5.8.1 with SHA-256, as RFC 7518 §4.6.2 instantiates it:
/// OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo, each of the first three a
/// 32-bit big-endian length followed by the bytes, SuppPubInfo the key length in bits; no SuppPrivInfo.
pub fn concat_kdf(z: &[u8], algorithm_id: &str, apu: &[u8], apv: &[u8], key_len: usize) -> Vec<u8> {
    let mut other_info = Vec::with_capacity(16 + algorithm_id.len() + apu.len() + apv.len());
    for part in [algorithm_id.as_bytes(), apu, apv] {
        other_info.extend_from_slice(&(part.len() as u32).to_be_bytes());
        other_info.extend_from_slice(part);
    }
    other_info.extend_from_slice(&((key_len * 8) as u32).to_be_bytes());
    let mut out = Vec::with_capacity(key_len + 32);
    let mut counter: u32 = 1;
    while out.len() < key_len {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&counter.to_be_bytes());
        ctx.update(z);
        ctx.update(&other_info);
        out.extend_from_slice(ctx.finish().as_ref());
        counter += 1;
    }
    out.truncate(key_len);
    out
}

/// A decrypted JWE: its protected header and plaintext.
#[derive(Debug, Clone, PartialEq)]
pub struct Decrypted {
    pub header: Map<String, Value>,
    pub plaintext: Vec<u8>,
}

/// Decrypts a compact ECDH-ES JWE (RFC 7516 §5.2). `agree` is the recipient's ECDH: given the sender's
/// ephemeral public key as an uncompressed SEC1 point (65 bytes), it returns the shared secret Z (the
/// x coordinate, 32 bytes), or `None` when the point is refused. Only what [`encrypt_to_client`]
/// produces is accepted: `alg` ECDH-ES, `enc` A256GCM or A128GCM, no `zip`, no `crit`.
pub fn decrypt_with(jwe: &str, agree: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> Result<Decrypted, JweError> {
    if jwe.len() > MAX_JWE_LEN {
        return Err(JweError::TooLarge);
    }
    let parts: Vec<&str> = jwe.split('.').collect();
    let [header_b64, encrypted_key, iv_b64, ciphertext_b64, tag_b64] = parts[..] else {
        return Err(JweError::Malformed("a compact JWE has five parts"));
    };
    let header_json = b64::decode(header_b64).ok_or(JweError::Malformed("header"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&header_json).map_err(|_| JweError::Malformed("header"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JweError::Malformed("alg"))?;
    check_alg(alg)?;
    let enc = Enc::parse(
        header
            .get("enc")
            .and_then(Value::as_str)
            .ok_or(JweError::Malformed("enc"))?,
    )?;
    // RFC 7516 §4.1.3 (zip) and §4.1.13 (crit): not implemented, so refused rather than ignored.
    if header.contains_key("zip") {
        return Err(JweError::UnsupportedHeader("zip"));
    }
    if header.contains_key("crit") {
        return Err(JweError::UnsupportedHeader("crit"));
    }
    // RFC 7518 §4.6: with direct key agreement the Encrypted Key is empty.
    if !encrypted_key.is_empty() {
        return Err(JweError::Malformed("encrypted key must be empty for ECDH-ES"));
    }
    let epk = header.get("epk").ok_or(JweError::Malformed("epk"))?;
    let epk = PublicJwk::from_value(epk).map_err(|_| JweError::Malformed("epk"))?;
    let KeyMaterial::P256 { point } = &epk.material else {
        return Err(JweError::Malformed("epk"));
    };
    let party_info = |name: &'static str| -> Result<Vec<u8>, JweError> {
        match header.get(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => b64::decode(s).ok_or(JweError::Malformed(name)),
            Some(_) => Err(JweError::Malformed(name)),
        }
    };
    let (apu, apv) = (party_info("apu")?, party_info("apv")?);
    let iv: [u8; 12] = b64::decode(iv_b64)
        .and_then(|v| v.try_into().ok())
        .ok_or(JweError::Malformed("iv"))?;
    let tag = b64::decode(tag_b64)
        .filter(|t| t.len() == 16)
        .ok_or(JweError::Malformed("tag"))?;
    let mut buf = b64::decode(ciphertext_b64).ok_or(JweError::Malformed("ciphertext"))?;
    buf.extend_from_slice(&tag);

    let z = agree(point).ok_or(JweError::KeyAgreementFailed)?;
    let cek = concat_kdf(&z, enc.name(), &apu, &apv, enc.key_len());
    let opening = LessSafeKey::new(UnboundKey::new(enc.aead(), &cek).map_err(|_| JweError::Crypto)?);
    let plaintext = opening
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header_b64.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JweError::DecryptionFailed)?;
    Ok(Decrypted {
        plaintext: plaintext.to_vec(),
        header,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::elliptic_curve::point::AffineCoordinates;
    use p256::elliptic_curve::sec1::FromSec1Point;
    use p256::elliptic_curve::PrimeField;
    use p256::{AffinePoint, ProjectivePoint, Scalar};

    /// Static-key ECDH on P-256 for the recipient side of the tests (ring has only ephemeral keys).
    fn ecdh(d: &[u8], point: &[u8]) -> Option<Vec<u8>> {
        let repr: [u8; 32] = d.try_into().ok()?;
        let scalar: Option<Scalar> = Scalar::from_repr(repr.into()).into();
        let peer: Option<AffinePoint> = AffinePoint::from_sec1_bytes(point).ok();
        let shared = (ProjectivePoint::from(peer?) * scalar?).to_affine();
        Some(shared.x().to_vec())
    }

    fn recipient() -> (Value, Vec<u8>) {
        let key = fapi_core::sign::SigningKey::generate(fapi_core::alg::Algorithm::ES256, None).unwrap();
        let private = key.private_jwk().clone();
        let d = b64::decode(private["d"].as_str().unwrap()).unwrap();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc-1",
            "x": private["x"], "y": private["y"],
        });
        (jwk, d)
    }

    /// RFC 7518 Appendix C: Bob's static key, Alice's ephemeral key, apu "Alice", apv "Bob", A128GCM.
    #[test]
    fn rfc7518_appendix_c_derived_key() {
        let bob_d = b64::decode("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw").unwrap();
        let mut alice = vec![4u8];
        alice.extend(b64::decode("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0").unwrap());
        alice.extend(b64::decode("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps").unwrap());
        let z = ecdh(&bob_d, &alice).unwrap();
        let key = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 16);
        assert_eq!(b64::encode(key), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn round_trip_both_encs_with_header() {
        let (jwk, d) = recipient();
        let jwks = json!({"keys": [jwk]});
        for enc in ENC_VALUES {
            let jwe = encrypt_to_client(&jwks, "ECDH-ES", enc, b"a.b.c", Some("JWT")).unwrap();
            assert!(jwe.split('.').nth(1) == Some(""), "empty encrypted key");
            let out = decrypt_with(&jwe, |p| ecdh(&d, p)).unwrap();
            assert_eq!(out.plaintext, b"a.b.c");
            assert_eq!(out.header["alg"], "ECDH-ES");
            assert_eq!(out.header["enc"], *enc);
            assert_eq!(out.header["kid"], "enc-1");
            assert_eq!(out.header["cty"], "JWT");
            assert_eq!(out.header["epk"]["crv"], "P-256");
            assert!(out.header["epk"].get("d").is_none());
        }
        let jwe = encrypt_to_client(&jwks, "ECDH-ES", "A256GCM", b"{}", None).unwrap();
        let out = decrypt_with(&jwe, |p| ecdh(&d, p)).unwrap();
        assert!(!out.header.contains_key("cty"));
    }

    #[test]
    fn each_jwe_uses_a_fresh_ephemeral_key() {
        let (jwk, _) = recipient();
        let jwks = json!({"keys": [jwk]});
        let a = encrypt_to_client(&jwks, "ECDH-ES", "A256GCM", b"x", None).unwrap();
        let b = encrypt_to_client(&jwks, "ECDH-ES", "A256GCM", b"x", None).unwrap();
        assert_ne!(a.split('.').next(), b.split('.').next());
    }

    #[test]
    fn tampering_and_wrong_key_fail() {
        let (jwk, d) = recipient();
        let (_, other_d) = recipient();
        let jwks = json!({"keys": [jwk]});
        let jwe = encrypt_to_client(&jwks, "ECDH-ES", "A256GCM", b"secret", None).unwrap();
        assert_eq!(
            decrypt_with(&jwe, |p| ecdh(&other_d, p)),
            Err(JweError::DecryptionFailed)
        );
        let mut parts: Vec<String> = jwe.split('.').map(str::to_string).collect();
        let mut ct = b64::decode(&parts[3]).unwrap();
        ct[0] ^= 1;
        parts[3] = b64::encode(ct);
        assert_eq!(
            decrypt_with(&parts.join("."), |p| ecdh(&d, p)),
            Err(JweError::DecryptionFailed)
        );
        // The header is authenticated: an added member breaks the tag.
        let mut header: Value = serde_json::from_slice(&b64::decode(&parts[0]).unwrap()).unwrap();
        header["kid"] = json!("other");
        let forged = format!(
            "{}.{}",
            b64::encode(header.to_string()),
            jwe.split_once('.').unwrap().1
        );
        assert_eq!(
            decrypt_with(&forged, |p| ecdh(&d, p)),
            Err(JweError::DecryptionFailed)
        );
        assert!(matches!(
            decrypt_with("a.b.c", |p| ecdh(&d, p)),
            Err(JweError::Malformed(_))
        ));
    }

    #[test]
    fn key_selection_needs_an_encryption_marker() {
        let (enc_key, _) = recipient();
        let mut sig_key = enc_key.clone();
        sig_key["use"] = json!("sig");
        sig_key["kid"] = json!("sig-1");
        let mut unmarked = enc_key.clone();
        unmarked.as_object_mut().unwrap().remove("use");
        let mut es256 = unmarked.clone();
        es256["alg"] = json!("ES256");
        let mut by_alg = unmarked.clone();
        by_alg["alg"] = json!("ECDH-ES");
        by_alg["kid"] = json!("by-alg");
        let mut by_ops = unmarked.clone();
        by_ops["key_ops"] = json!(["deriveKey"]);
        by_ops["kid"] = json!("by-ops");
        let mut verify_ops = unmarked.clone();
        verify_ops["key_ops"] = json!(["verify"]);

        let pick = |keys: Vec<&Value>| {
            select_key(&json!({ "keys": keys }), "ECDH-ES").map(|k| k.kid.unwrap_or_default())
        };
        assert_eq!(pick(vec![&sig_key, &enc_key]), Ok("enc-1".into()));
        assert_eq!(pick(vec![&es256, &by_alg]), Ok("by-alg".into()));
        assert_eq!(pick(vec![&verify_ops, &by_ops]), Ok("by-ops".into()));
        assert_eq!(
            pick(vec![&sig_key, &unmarked, &es256, &verify_ops]),
            Err(JweError::NoEncryptionKey)
        );
        // Keys with private members are never used, even marked.
        let mut private = enc_key.clone();
        private["d"] = json!("AAAA");
        assert_eq!(pick(vec![&private]), Err(JweError::NoEncryptionKey));
        assert_eq!(
            select_key(&json!([enc_key]), "ECDH-ES").map(|_| ()),
            Err(JweError::NotAKeySet)
        );
    }

    #[test]
    fn unsupported_algorithms_are_refused() {
        let (jwk, _) = recipient();
        let jwks = json!({"keys": [jwk]});
        assert_eq!(
            encrypt_to_client(&jwks, "RSA-OAEP", "A256GCM", b"x", None),
            Err(JweError::UnsupportedAlg("RSA-OAEP".into()))
        );
        assert_eq!(
            encrypt_to_client(&jwks, "ECDH-ES", "A128CBC-HS256", b"x", None),
            Err(JweError::UnsupportedEnc("A128CBC-HS256".into()))
        );
        assert!(supported("ECDH-ES", "A128GCM"));
        assert!(!supported("ECDH-ES+A256KW", "A256GCM"));
    }

    #[test]
    fn an_invalid_recipient_point_is_refused() {
        // x and y of the right size but not on P-256: refused, either when the key is read (fapi-core
        // with `p256-tables` checks points at parse time, as in a workspace build) or by ring's ECDH.
        let jwks = json!({"keys": [{"kty":"EC","crv":"P-256","use":"enc",
            "x": b64::encode([1u8; 32]), "y": b64::encode([2u8; 32])}]});
        let refused = encrypt_to_client(&jwks, "ECDH-ES", "A256GCM", b"x", None);
        assert!(
            matches!(
                refused,
                Err(JweError::KeyAgreementFailed | JweError::NoEncryptionKey)
            ),
            "{refused:?}"
        );
    }

    /// Found by the `jwe` fuzz target: an off-curve key marked for encryption was selected (and so
    /// accepted at registration), and every later encryption to the client failed.
    #[test]
    fn an_off_curve_key_is_never_selected() {
        let (valid, _) = recipient();
        let mut off_curve = valid.clone();
        let mut x = b64::decode(valid["x"].as_str().unwrap()).unwrap();
        x[31] ^= 1;
        off_curve["x"] = json!(b64::encode(&x));
        off_curve["kid"] = json!("off-curve");
        assert_eq!(
            select_key(&json!({"keys": [off_curve]}), "ECDH-ES").map(|_| ()),
            Err(JweError::NoEncryptionKey)
        );
        let both = json!({"keys": [off_curve, valid]});
        assert_eq!(
            select_key(&both, "ECDH-ES").map(|k| k.kid),
            Ok(Some("enc-1".to_string()))
        );
        assert!(encrypt_to_client(&both, "ECDH-ES", "A256GCM", b"x", None).is_ok());
        assert!(crate::backchannel::register::check_encryption(
            "id_token",
            Some("ECDH-ES"),
            Some("A256GCM"),
            Some(&json!({"keys": [off_curve]}))
        )
        .is_err());
    }

    #[test]
    fn unsupported_header_members_are_refused_on_decrypt() {
        let (jwk, d) = recipient();
        let jwe = encrypt_to_client(&json!({"keys": [jwk]}), "ECDH-ES", "A256GCM", b"x", None).unwrap();
        let (h, rest) = jwe.split_once('.').unwrap();
        let mut header: Value = serde_json::from_slice(&b64::decode(h).unwrap()).unwrap();
        header["zip"] = json!("DEF");
        let zipped = format!("{}.{rest}", b64::encode(header.to_string()));
        assert_eq!(
            decrypt_with(&zipped, |p| ecdh(&d, p)),
            Err(JweError::UnsupportedHeader("zip"))
        );
        let with_key = jwe.replacen("..", ".AAAA.", 1);
        assert!(matches!(
            decrypt_with(&with_key, |p| ecdh(&d, p)),
            Err(JweError::Malformed(_))
        ));
    }
}
