//! An issuer's JSON Web Key Set (RFC 7517 §5) and the rule that picks the verification key.
//!
//! Selection rule (FAPI 2.0 §5.4 asks for one to be defined):
//! 1. Candidates are the keys that suit the token's `alg` (key type and curve, the key's own `alg` if it
//!    names one, `use` absent or "sig", and `key_ops` absent or listing "verify").
//! 2. With a `kid` in the token header, candidates are narrowed to keys with exactly that `kid`.
//!    None left: the `kid` is unknown (the caller may refetch the set). More than one left: the set is
//!    ambiguous and the token is refused; fapi-guard never tries several keys.
//! 3. Without a `kid`, the token is accepted only when exactly one candidate exists.

use crate::alg::Algorithm;
use crate::jwk::{JwkError, PublicJwk};
use serde_json::Value;

/// The largest key set accepted (keys), so a hostile `jwks_uri` cannot exhaust memory.
pub const MAX_KEYS: usize = 64;

/// A key that could not be used, with the reason (a set with some bad keys still loads the good ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub error: JwkError,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
    /// Keys left out (private material, weak RSA, other curves, encryption keys...).
    pub skipped: Vec<SkippedKey>,
}

/// Why a key set document cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson,
    NoKeysArray,
    TooManyKeys(usize),
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksError::NotJson => f.write_str("the key set is not valid JSON"),
            JwksError::NoKeysArray => f.write_str("the key set has no \"keys\" array"),
            JwksError::TooManyKeys(n) => write!(f, "the key set has {n} keys (at most {MAX_KEYS})"),
        }
    }
}

/// The outcome of key selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelection<'a> {
    Found(&'a PublicJwk),
    /// The header's `kid` names no suitable key.
    UnknownKid,
    /// No `kid` and several suitable keys, or several suitable keys share the `kid`.
    Ambiguous,
    /// No key of the set can verify this algorithm at all.
    NoSuitableKey,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys":[...]}`).
    pub fn parse(json: &[u8]) -> Result<Self, JwksError> {
        let value: Value = serde_json::from_slice(json).map_err(|_| JwksError::NotJson)?;
        Self::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<Self, JwksError> {
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeysArray)?;
        if keys.len() > MAX_KEYS {
            return Err(JwksError::TooManyKeys(keys.len()));
        }
        let mut set = Jwks::default();
        for (index, key) in keys.iter().enumerate() {
            match PublicJwk::from_value(key) {
                Ok(k) => set.keys.push(k),
                Err(error) => set.skipped.push(SkippedKey {
                    index,
                    kid: key.get("kid").and_then(Value::as_str).map(str::to_string),
                    error,
                }),
            }
        }
        Ok(set)
    }

    /// Readies every key for many verifications ([`PublicJwk::prepare`]: ES256 tables with the feature
    /// `p256-tables`). The plugin calls this on the key sets it holds; elsewhere ring alone is faster.
    #[must_use]
    pub fn prepared(self) -> Self {
        Jwks {
            keys: self.keys.into_iter().map(PublicJwk::prepare).collect(),
            skipped: self.skipped,
        }
    }

    /// Applies the selection rule in the module documentation.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> KeySelection<'_> {
        let mut suitable = self.keys.iter().filter(|k| k.suits(alg)).peekable();
        if suitable.peek().is_none() {
            return match kid {
                // A kid the set knows, on a key that cannot verify this alg: not a rotation.
                Some(k) if !self.has_kid(k) => KeySelection::UnknownKid,
                _ => KeySelection::NoSuitableKey,
            };
        }
        let mut matching = suitable.filter(|k| kid.is_none() || k.kid.as_deref() == kid);
        match (matching.next(), matching.next()) {
            (Some(key), None) => KeySelection::Found(key),
            (Some(_), Some(_)) => KeySelection::Ambiguous,
            (None, _) if kid.is_some_and(|k| self.has_kid(k)) => KeySelection::NoSuitableKey,
            (None, _) => KeySelection::UnknownKid,
        }
    }

    /// `true` when some key carries this `kid` (whatever its type): used to tell "unknown kid" from
    /// "kid of a key that cannot verify this alg".
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ed(kid: Option<&str>, x: u8) -> Value {
        let mut k = json!({"kty":"OKP","crv":"Ed25519","x": crate::b64::encode([x; 32])});
        if let Some(kid) = kid {
            k["kid"] = json!(kid);
        }
        k
    }

    #[test]
    fn selection_rule() {
        let set = Jwks::from_value(&json!({"keys":[ed(Some("a"),1), ed(Some("b"),2), ed(Some("b"),3)]}));
        let set = set.unwrap_or_default();
        assert!(
            matches!(set.select(Some("a"), Algorithm::EdDSA), KeySelection::Found(k) if k.kid.as_deref()==Some("a"))
        );
        assert_eq!(set.select(Some("b"), Algorithm::EdDSA), KeySelection::Ambiguous);
        assert_eq!(set.select(Some("zz"), Algorithm::EdDSA), KeySelection::UnknownKid);
        assert_eq!(set.select(None, Algorithm::EdDSA), KeySelection::Ambiguous);
        assert_eq!(set.select(None, Algorithm::ES256), KeySelection::NoSuitableKey);
        // "a" exists but is an Ed25519 key: not an unknown kid (no refetch), just unusable for ES256.
        assert_eq!(
            set.select(Some("a"), Algorithm::ES256),
            KeySelection::NoSuitableKey
        );

        let single = Jwks::from_value(&json!({"keys":[ed(None,1)]})).unwrap_or_default();
        assert!(matches!(
            single.select(None, Algorithm::EdDSA),
            KeySelection::Found(_)
        ));
        // A kid in the token does not match a key without one.
        assert_eq!(
            single.select(Some("a"), Algorithm::EdDSA),
            KeySelection::UnknownKid
        );
    }

    #[test]
    fn bad_keys_are_skipped_not_fatal() {
        let set =
            Jwks::from_value(&json!({"keys":[ed(Some("ok"),1), {"kty":"oct","k":"AAAA","kid":"hmac"}]}))
                .unwrap_or_default();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 1);
        assert_eq!(set.skipped[0].kid.as_deref(), Some("hmac"));
        assert_eq!(Jwks::parse(b"[]"), Err(JwksError::NoKeysArray));
        assert_eq!(Jwks::parse(b"{"), Err(JwksError::NotJson));
    }

    #[test]
    fn encryption_keys_and_pinned_alg_are_respected() {
        let mut enc = ed(Some("e"), 1);
        enc["use"] = json!("enc");
        let mut pinned = ed(Some("p"), 2);
        pinned["alg"] = json!("EdDSA");
        let set = Jwks::from_value(&json!({"keys":[enc, pinned]})).unwrap_or_default();
        assert_eq!(
            set.select(Some("e"), Algorithm::EdDSA),
            KeySelection::NoSuitableKey
        );
        assert!(matches!(
            set.select(None, Algorithm::EdDSA),
            KeySelection::Found(_)
        ));
    }
}
