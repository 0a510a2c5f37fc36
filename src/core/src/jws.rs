//! JWS Compact Serialization (RFC 7515 §3.1, §7.1) parsing, bounded before any decoding (RFC 8725 §3.x).
//!
//! This module splits and decodes; it checks nothing about algorithms or keys. [`crate::token`] and
//! [`crate::dpop`] apply their own rules to the header.
//! JSON serialization, JWE (five segments) and unencoded payloads (`b64: false`, RFC 7797) are refused.

use crate::b64;
use serde_json::{Map, Value};

/// Largest compact JWS accepted, in bytes. Access tokens of real issuers are 1-3 KiB.
pub const MAX_JWS_LEN: usize = 16 * 1024;
/// Largest decoded protected header accepted, in bytes (a DPoP header carries an RSA JWK: about 500 bytes).
pub const MAX_HEADER_LEN: usize = 4 * 1024;

/// Why a string is not an acceptable compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    TooLong,
    NotCompact,
    BadEncoding,
    HeaderNotJsonObject,
    PayloadNotJsonObject,
    HeaderTooLong,
}

impl JwsError {
    pub fn describe(self) -> &'static str {
        match self {
            JwsError::TooLong => "the JWT is too long",
            JwsError::NotCompact => "the JWT is not in JWS compact serialization",
            JwsError::BadEncoding => "the JWT is not valid base64url",
            JwsError::HeaderNotJsonObject => "the JWT header is not a JSON object",
            JwsError::PayloadNotJsonObject => "the JWT payload is not a JSON object",
            JwsError::HeaderTooLong => "the JWT header is too long",
        }
    }
}

/// A header member that should be a string is some other JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAString;

/// A compact JWS split into its parts; the signature is not verified.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub header: Map<String, Value>,
    pub payload: Map<String, Value>,
    pub signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    pub fn parse(jws: &'a str) -> Result<Self, JwsError> {
        if jws.len() > MAX_JWS_LEN {
            return Err(JwsError::TooLong);
        }
        let mut parts = jws.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::NotCompact);
        };
        if h.is_empty()
            || p.is_empty()
            || !b64::is_alphabet(h)
            || !b64::is_alphabet(p)
            || !b64::is_alphabet(s)
        {
            return Err(JwsError::BadEncoding);
        }
        if h.len() > MAX_HEADER_LEN * 4 / 3 + 4 {
            return Err(JwsError::HeaderTooLong);
        }
        let header_bytes = b64::decode(h).ok_or(JwsError::BadEncoding)?;
        let header = match serde_json::from_slice::<Value>(&header_bytes) {
            Ok(Value::Object(m)) => m,
            _ => return Err(JwsError::HeaderNotJsonObject),
        };
        let payload_bytes = b64::decode(p).ok_or(JwsError::BadEncoding)?;
        let payload = match serde_json::from_slice::<Value>(&payload_bytes) {
            Ok(Value::Object(m)) => m,
            _ => return Err(JwsError::PayloadNotJsonObject),
        };
        let signature = b64::decode(s).ok_or(JwsError::BadEncoding)?;
        Ok(CompactJws {
            signing_input: &jws[..h.len() + 1 + p.len()],
            header,
            payload,
            signature,
        })
    }

    /// A header member as a string; [`NotAString`] when present but of another JSON type.
    pub fn header_str(&self, name: &str) -> Result<Option<&str>, NotAString> {
        match self.header.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(NotAString),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_bounds() {
        let h = b64::encode(br#"{"alg":"ES256"}"#);
        let p = b64::encode(br#"{"a":1}"#);
        let jws = format!("{h}.{p}.AAAA");
        let parsed = CompactJws::parse(&jws).map_err(JwsError::describe);
        assert!(parsed.is_ok());
        if let Ok(parsed) = parsed {
            assert_eq!(parsed.signing_input, format!("{h}.{p}"));
            assert_eq!(parsed.header_str("alg"), Ok(Some("ES256")));
            assert_eq!(parsed.signature, vec![0, 0, 0]);
        }
        assert_eq!(
            CompactJws::parse(&format!("{h}.{p}")).err(),
            Some(JwsError::NotCompact)
        );
        assert_eq!(
            CompactJws::parse(&format!("{h}.{p}.AA.BB.CC")).err(),
            Some(JwsError::NotCompact)
        );
        assert_eq!(
            CompactJws::parse(&format!("{h}=.{p}.AA")).err(),
            Some(JwsError::BadEncoding)
        );
        assert_eq!(
            CompactJws::parse(&format!(".{p}.AA")).err(),
            Some(JwsError::BadEncoding)
        );
        let arr = b64::encode(b"[1]");
        assert_eq!(
            CompactJws::parse(&format!("{h}.{arr}.AA")).err(),
            Some(JwsError::PayloadNotJsonObject)
        );
        assert_eq!(
            CompactJws::parse(&"a".repeat(MAX_JWS_LEN + 1)).err(),
            Some(JwsError::TooLong)
        );
        // JSON serialization (RFC 7515 §7.2) is not compact.
        assert_eq!(
            CompactJws::parse(r#"{"payload":"x","signatures":[]}"#).err(),
            Some(JwsError::NotCompact)
        );
    }
}
