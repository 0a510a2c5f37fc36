//! JWS algorithms (RFC 7518, RFC 8037) and the FAPI 2.0 Security Profile §5.4 allow-list.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An asymmetric JWS algorithm fapi-guard can verify.
///
/// FAPI 2.0 §5.4.1 allows PS256, ES256 and EdDSA (Ed25519). RS256 exists only for issuers whose policy
/// turns it on explicitly. `none`, HMAC and every other algorithm cannot even be named here: they parse
/// as [`AlgorithmName::Forbidden`] or [`AlgorithmName::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    PS256,
    ES256,
    EdDSA,
    RS256,
}

impl Algorithm {
    /// The FAPI 2.0 default allow-list.
    pub const FAPI: [Algorithm; 3] = [Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::PS256 => "PS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::RS256 => "RS256",
        }
    }

    /// `true` for the algorithms FAPI 2.0 §5.4.1 permits.
    pub fn is_fapi(self) -> bool {
        Self::FAPI.contains(&self)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an `alg` header value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlgorithmName {
    Supported(Algorithm),
    /// `none` and the symmetric HS* family: never accepted, whatever a policy says (RFC 8725 §3.1, §3.2).
    Forbidden(String),
    /// Anything else (RS384, ES512, ...): not implemented, so refused.
    Unknown(String),
}

impl AlgorithmName {
    pub fn parse(name: &str) -> Self {
        match name {
            "PS256" => Self::Supported(Algorithm::PS256),
            "ES256" => Self::Supported(Algorithm::ES256),
            "EdDSA" => Self::Supported(Algorithm::EdDSA),
            "RS256" => Self::Supported(Algorithm::RS256),
            _ if name.eq_ignore_ascii_case("none") || name.starts_with("HS") => {
                Self::Forbidden(name.to_string())
            }
            _ => Self::Unknown(name.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_and_hmac_are_forbidden() {
        assert_eq!(
            AlgorithmName::parse("none"),
            AlgorithmName::Forbidden("none".into())
        );
        assert_eq!(
            AlgorithmName::parse("NoNe"),
            AlgorithmName::Forbidden("NoNe".into())
        );
        assert_eq!(
            AlgorithmName::parse("HS256"),
            AlgorithmName::Forbidden("HS256".into())
        );
        assert_eq!(
            AlgorithmName::parse("ES384"),
            AlgorithmName::Unknown("ES384".into())
        );
        assert_eq!(
            AlgorithmName::parse("ES256"),
            AlgorithmName::Supported(Algorithm::ES256)
        );
        assert!(!Algorithm::RS256.is_fapi());
    }
}
