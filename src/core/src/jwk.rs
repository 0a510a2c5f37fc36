//! Public JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037), their RFC 7638 thumbprints, and signature
//! verification with them.
//!
//! Only keys FAPI 2.0 §5.4.1 can use are accepted: RSA of at least 2048 bits, EC on P-256, OKP Ed25519.
//! A JWK carrying private members is refused wherever a public key is expected (RFC 9449 §4.3 step 7).

use crate::alg::Algorithm;
use crate::b64;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// The minimum RSA modulus size, FAPI 2.0 §5.4.1 ("at least 2048 bits").
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus accepted (ring's limit); bigger keys are a denial-of-service lever.
pub const MAX_RSA_BITS: usize = 8192;

/// Why a JWK cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwkError {
    NotAnObject,
    MissingMember(&'static str),
    BadMember(&'static str),
    UnsupportedKeyType(String),
    UnsupportedCurve(String),
    RsaTooSmall(usize),
    RsaTooLarge(usize),
    /// The JWK holds private key material (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth` or `k`).
    PrivateMaterial,
    /// An RSA modulus with the ROCA fingerprint (CVE-2017-15361): its private key can be computed.
    RsaRoca,
}

impl std::fmt::Display for JwkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwkError::NotAnObject => f.write_str("a JWK must be a JSON object"),
            JwkError::MissingMember(m) => write!(f, "JWK member \"{m}\" is missing"),
            JwkError::BadMember(m) => write!(f, "JWK member \"{m}\" is not valid"),
            JwkError::UnsupportedKeyType(k) => write!(f, "key type \"{k}\" is not supported"),
            JwkError::UnsupportedCurve(c) => {
                write!(f, "curve \"{c}\" is not allowed (P-256 and Ed25519 only)")
            }
            JwkError::RsaTooSmall(bits) => {
                write!(
                    f,
                    "RSA key of {bits} bits is under the {MIN_RSA_BITS}-bit minimum"
                )
            }
            JwkError::RsaTooLarge(bits) => write!(f, "RSA key of {bits} bits is too large"),
            JwkError::PrivateMaterial => f.write_str("the JWK contains private key material"),
            JwkError::RsaRoca => f.write_str(
                "RSA modulus with the ROCA fingerprint (CVE-2017-15361): the key came from a weak generator and its private key can be computed; replace it",
            ),
        }
    }
}

/// The public part of a key, decoded and ready for verification.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// Big-endian modulus (leading zeros stripped) and exponent.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point: 0x04 || x || y.
    P256 {
        point: Vec<u8>,
    },
    Ed25519 {
        x: [u8; 32],
    },
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyMaterial::Rsa { n, .. } => write!(f, "Rsa({} bits)", rsa_bits(n)),
            KeyMaterial::P256 { .. } => f.write_str("P256"),
            KeyMaterial::Ed25519 { .. } => f.write_str("Ed25519"),
        }
    }
}

/// A validated public JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: Option<String>,
    /// The `alg` member, when the key names one.
    pub alg: Option<String>,
    /// The `use` member, when present ("sig" or "enc").
    pub key_use: Option<String>,
    /// The `key_ops` member (RFC 7517 §4.3), when present.
    pub key_ops: Option<Vec<String>>,
    pub material: KeyMaterial,
    /// RFC 7638 thumbprint, base64url (computed once, at parse time).
    pub thumbprint: String,
    /// ES256 tables for a P-256 key of an issuer's set, built by [`PublicJwk::prepare`].
    #[cfg(feature = "p256-tables")]
    prepared: crate::p256_tables::Prepared,
}

const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The ROCA fingerprint (CVE-2017-15361; Nemec, Sýs, Švenda, Klinec, Matyáš, CCS 2017). The primes
/// of Infineon's RSALib are k·M + (65537^a mod M) for a primorial M of at least the primes up to 167,
/// so every modulus it made satisfies N ≡ 65537^c (mod p) for each of those primes p: N mod p lies in
/// the subgroup that 65537 generates. A modulus from a sound generator passes that for all 38 primes
/// only with negligible probability, so such keys are refused at load (they are breakable).
fn roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101,
        103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |acc, &b| (acc * 256 + u32::from(b)) % p);
        let generator = 65_537 % p;
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

impl PublicJwk {
    /// Parses and validates a public JWK given as a JSON value.
    pub fn from_value(value: &Value) -> Result<Self, JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err(JwkError::PrivateMaterial);
        }
        let kty = str_member(obj, "kty")?;
        let (material, thumbprint_input) = match kty {
            "RSA" => {
                let n_s = str_member(obj, "n")?;
                let e_s = str_member(obj, "e")?;
                let n = strip_leading_zeros(b64::decode(n_s).ok_or(JwkError::BadMember("n"))?);
                let e = strip_leading_zeros(b64::decode(e_s).ok_or(JwkError::BadMember("e"))?);
                let bits = rsa_bits(&n);
                if bits < MIN_RSA_BITS {
                    return Err(JwkError::RsaTooSmall(bits));
                }
                if bits > MAX_RSA_BITS {
                    return Err(JwkError::RsaTooLarge(bits));
                }
                // ring accepts public exponents from 3 to 2^33 - 1; anything else cannot verify.
                if e.is_empty() || e.len() > 5 || e.last().is_some_and(|b| b & 1 == 0) {
                    return Err(JwkError::BadMember("e"));
                }
                if roca_fingerprint(&n) {
                    return Err(JwkError::RsaRoca);
                }
                let input = format!(r#"{{"e":"{e_s}","kty":"RSA","n":"{n_s}"}}"#);
                (KeyMaterial::Rsa { n, e }, input)
            }
            "EC" => {
                let crv = str_member(obj, "crv")?;
                if crv != "P-256" {
                    return Err(JwkError::UnsupportedCurve(crv.to_string()));
                }
                let x_s = str_member(obj, "x")?;
                let y_s = str_member(obj, "y")?;
                let x = b64::decode(x_s).ok_or(JwkError::BadMember("x"))?;
                let y = b64::decode(y_s).ok_or(JwkError::BadMember("y"))?;
                if x.len() != 32 {
                    return Err(JwkError::BadMember("x"));
                }
                if y.len() != 32 {
                    return Err(JwkError::BadMember("y"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                // With the tables, the point is validated here (on the curve, SEC1 §3.2.2), not at each use.
                #[cfg(feature = "p256-tables")]
                if crate::p256_tables::parse_public_point(&point).is_none() {
                    return Err(JwkError::BadMember("y"));
                }
                let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x_s}","y":"{y_s}"}}"#);
                (KeyMaterial::P256 { point }, input)
            }
            "OKP" => {
                let crv = str_member(obj, "crv")?;
                if crv != "Ed25519" {
                    return Err(JwkError::UnsupportedCurve(crv.to_string()));
                }
                let x_s = str_member(obj, "x")?;
                let x: [u8; 32] = b64::decode(x_s)
                    .and_then(|v| v.try_into().ok())
                    .ok_or(JwkError::BadMember("x"))?;
                let input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x_s}"}}"#);
                (KeyMaterial::Ed25519 { x }, input)
            }
            other => return Err(JwkError::UnsupportedKeyType(other.to_string())),
        };
        Ok(PublicJwk {
            kid: opt_str_member(obj, "kid")?,
            alg: opt_str_member(obj, "alg")?,
            key_use: opt_str_member(obj, "use")?,
            key_ops: match obj.get("key_ops") {
                None => None,
                Some(Value::Array(ops)) => Some(
                    ops.iter()
                        .map(|o| o.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or(JwkError::BadMember("key_ops"))?,
                ),
                Some(_) => return Err(JwkError::BadMember("key_ops")),
            },
            material,
            thumbprint: b64::sha256_b64(thumbprint_input.as_bytes()),
            #[cfg(feature = "p256-tables")]
            prepared: Default::default(),
        })
    }

    /// Readies the key for verifying many signatures: with the feature `p256-tables`, builds a P-256
    /// key's table (milliseconds, so only for key sets, when fetched; never for a DPoP proof's key).
    /// Otherwise, and for other key types, returns the key unchanged.
    #[must_use]
    pub fn prepare(self) -> Self {
        #[cfg(feature = "p256-tables")]
        if let KeyMaterial::P256 { point } = &self.material {
            let prepared = crate::p256_tables::Prepared::build(point);
            return PublicJwk { prepared, ..self };
        }
        self
    }

    /// The ES256 tables [`PublicJwk::prepare`] built, if any (feature `p256-tables`).
    #[cfg(feature = "p256-tables")]
    pub fn es256_tables(&self) -> Option<&crate::p256_tables::P256Verifier> {
        self.prepared.get()
    }

    /// `true` when this key can verify signatures made with `alg`: key type, the key's own `alg` if set
    /// (RFC 7517 §4.4), `use` absent or "sig" (§4.2), `key_ops` absent or listing "verify" (§4.3).
    pub fn suits(&self, alg: Algorithm) -> bool {
        let type_fits = matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Algorithm::PS256 | Algorithm::RS256)
                | (KeyMaterial::P256 { .. }, Algorithm::ES256)
                | (KeyMaterial::Ed25519 { .. }, Algorithm::EdDSA)
        );
        let alg_fits = self.alg.as_deref().is_none_or(|a| a == alg.as_str());
        let use_fits = self.key_use.as_deref().is_none_or(|u| u == "sig");
        let ops_fit = self
            .key_ops
            .as_ref()
            .is_none_or(|ops| ops.iter().any(|o| o == "verify"));
        type_fits && alg_fits && use_fits && ops_fit
    }

    /// Verifies `signature` over `message` with `alg`. The caller has checked [`PublicJwk::suits`];
    /// a mismatch simply fails verification.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "p256-tables")]
        if let (Some(fast), Algorithm::ES256) = (self.prepared.get(), alg) {
            return fast.verify(message, signature);
        }
        verify_with(&self.material, alg, message, signature)
    }
}

/// Verifies a JWS signature (RFC 7518 §3.3-3.5, RFC 8037 §3.1) with ring.
pub fn verify_with(key: &KeyMaterial, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
    match (key, alg) {
        (KeyMaterial::Rsa { n, e }, Algorithm::PS256) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PSS_2048_8192_SHA256, message, signature)
            .is_ok(),
        (KeyMaterial::Rsa { n, e }, Algorithm::RS256) => RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
            .is_ok(),
        (KeyMaterial::P256 { point }, Algorithm::ES256) => {
            // JWS carries ECDSA signatures as fixed-width r || s (RFC 7518 §3.4), never DER.
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok()
        }
        (KeyMaterial::Ed25519 { x }, Algorithm::EdDSA) => UnparsedPublicKey::new(&signature::ED25519, x)
            .verify(message, signature)
            .is_ok(),
        _ => false,
    }
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    match obj.get(name) {
        None => Err(JwkError::MissingMember(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(JwkError::BadMember(name)),
    }
}

fn opt_str_member(obj: &Map<String, Value>, name: &'static str) -> Result<Option<String>, JwkError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwkError::BadMember(name)),
    }
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

fn rsa_bits(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn roca_fingerprint_is_membership_in_the_subgroup_of_65537() {
        // 65537^2 is a power of 65537 modulo every prime: the fingerprint holds.
        let square = (65_537u64 * 65_537).to_be_bytes();
        assert!(roca_fingerprint(&square));
        assert!(roca_fingerprint(&[1]));
        // One more is not (it fails at p = 5: 65537 ≡ 2 generates all of Z_5*, but 4295098370 ≡ 0).
        let next = (65_537u64 * 65_537 + 1).to_be_bytes();
        assert!(!roca_fingerprint(&next));
        // RFC 7638 §3.1's example key, from a sound generator.
        let n = crate::b64::decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
            .unwrap_or_default();
        assert_eq!(n.len(), 256);
        assert!(!roca_fingerprint(&n));
    }
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1: the thumbprint of the RSA key in the example.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = PublicJwk::from_value(&jwk).map_err(|e| e.to_string());
        assert_eq!(
            key.map(|k| k.thumbprint),
            Ok("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".to_string())
        );
    }

    #[test]
    fn private_members_are_refused() {
        let jwk = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"});
        assert_eq!(PublicJwk::from_value(&jwk), Err(JwkError::PrivateMaterial));
    }

    #[test]
    fn weak_and_foreign_keys_are_refused() {
        let small = json!({"kty":"RSA","n": b64::encode([0xffu8; 128]),"e":"AQAB"});
        assert_eq!(PublicJwk::from_value(&small), Err(JwkError::RsaTooSmall(1024)));
        let p384 = json!({"kty":"EC","crv":"P-384","x":"AA","y":"AA"});
        assert_eq!(
            PublicJwk::from_value(&p384),
            Err(JwkError::UnsupportedCurve("P-384".into()))
        );
        let oct = json!({"kty":"oct","k":"c2VjcmV0"});
        assert_eq!(PublicJwk::from_value(&oct), Err(JwkError::PrivateMaterial));
        let x25519 = json!({"kty":"OKP","crv":"X25519","x":"AA"});
        assert_eq!(
            PublicJwk::from_value(&x25519),
            Err(JwkError::UnsupportedCurve("X25519".into()))
        );
        let short = json!({"kty":"EC","crv":"P-256","x":"AA","y":"AA"});
        assert_eq!(PublicJwk::from_value(&short), Err(JwkError::BadMember("x")));
    }
}
