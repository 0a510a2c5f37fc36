//! Certificate-bound access tokens (RFC 8705 §3): `cnf."x5t#S256"` against the presented client
//! certificate, and the choice between mTLS, DPoP and unbound tokens for a route.

use crate::b64;
use crate::decision::BindingKind;
use crate::denial::{Denial, Scheme};
use crate::token::Confirmation;
use serde::{Deserialize, Serialize};

/// SHA-256 of the client certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertThumbprint(pub [u8; 32]);

impl std::fmt::Debug for CertThumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertThumbprint({})", self.to_b64url())
    }
}

impl CertThumbprint {
    /// From the certificate itself (DER).
    pub fn from_der(der: &[u8]) -> Self {
        CertThumbprint(b64::sha256(der))
    }

    /// From a digest as proxies report it: lowercase or uppercase hex, optionally colon-separated
    /// (Envoy's `connection.sha256_peer_certificate_digest` is lowercase hex), or base64url as in
    /// `x5t#S256`. Anything else is `None`.
    pub fn parse_digest(digest: &str) -> Option<Self> {
        let digest = digest.trim();
        // Hex digits, colons ignored (no copy: this runs on every request).
        let nibble = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
        let mut out = [0u8; 32];
        let mut n = 0usize;
        let mut hex = true;
        for b in digest.bytes().filter(|b| *b != b':') {
            match (nibble(b), out.get_mut(n / 2)) {
                (Some(d), Some(o)) => *o = (*o << 4) | d,
                _ => {
                    hex = false;
                    break;
                }
            }
            n += 1;
        }
        if hex && n == 64 {
            return Some(CertThumbprint(out));
        }
        if digest.len() == 43 {
            let raw: [u8; 32] = b64::decode(digest)?.try_into().ok()?;
            return Some(CertThumbprint(raw));
        }
        None
    }

    /// The RFC 8705 `x5t#S256` form: base64url of the raw digest.
    pub fn to_b64url(&self) -> String {
        b64::encode(self.0)
    }
}

/// What a route accepts as sender constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SenderConstraint {
    Mtls,
    Dpop,
    /// mTLS or DPoP, whichever the token is bound to.
    Either,
    /// Bound tokens are checked as usual, and unbound bearer tokens are admitted too.
    BearerAllowed,
}

impl SenderConstraint {
    pub fn accepts_dpop(self) -> bool {
        !matches!(self, SenderConstraint::Mtls)
    }
    pub fn accepts_bearer_scheme(self) -> bool {
        !matches!(self, SenderConstraint::Dpop)
    }
}

/// The binding checks that need no DPoP proof, in the order that gives the most useful error.
///
/// Returns the binding kind the token claims; for DPoP the caller must still compare `jkt` with the
/// proof's key ([`check_dpop_key`]).
pub fn check_binding(
    cnf: &Confirmation,
    scheme: Scheme,
    client_cert: Option<&CertThumbprint>,
    required: SenderConstraint,
) -> Result<BindingKind, Denial> {
    // A DPoP-bound token is only ever presented under the DPoP scheme (RFC 9449 §7.1).
    if cnf.jkt.is_some() && scheme == Scheme::Bearer {
        return Err(Denial::DpopBoundTokenAsBearer);
    }
    let kind = if cnf.jkt.is_some() {
        BindingKind::Dpop
    } else if cnf.x5t_s256.is_some() {
        BindingKind::Mtls
    } else {
        BindingKind::Bearer
    };
    match (kind, required) {
        (BindingKind::Bearer, SenderConstraint::BearerAllowed) => {}
        (BindingKind::Bearer, _) => return Err(Denial::BearerTokenNotAllowed),
        (BindingKind::Mtls, SenderConstraint::Dpop) | (BindingKind::Dpop, SenderConstraint::Mtls) => {
            return Err(Denial::BindingNotAllowed)
        }
        _ => {}
    }
    // RFC 8705 §3: a certificate-bound token is checked against the TLS client certificate, whatever
    // else the token is bound to.
    if let Some(expected) = &cnf.x5t_s256 {
        let presented = client_cert.ok_or(Denial::CertificateMissing)?;
        if !constant_time_eq(presented.to_b64url().as_bytes(), expected.as_bytes()) {
            return Err(Denial::CertificateThumbprintMismatch);
        }
    }
    Ok(kind)
}

/// RFC 9449 §7.1: `cnf.jkt` must equal the JWK SHA-256 thumbprint of the proof's key.
pub fn check_dpop_key(cnf: &Confirmation, proof_jkt: &str) -> Result<(), Denial> {
    match &cnf.jkt {
        Some(jkt) if constant_time_eq(jkt.as_bytes(), proof_jkt.as_bytes()) => Ok(()),
        _ => Err(Denial::DpopKeyMismatch),
    }
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5c9e7d1b1d7b1fb5a5cfa3a2a8bd16ad7a8f7c0b2b3ee0e9af6a7fc7bf16e3a1";

    #[test]
    fn envoy_hex_digest_equals_base64url_form() {
        let from_hex = CertThumbprint::parse_digest(HEX);
        let b64 = from_hex.map(|t| t.to_b64url()).unwrap_or_default();
        assert_eq!(b64.len(), 43);
        assert_eq!(CertThumbprint::parse_digest(&b64), from_hex);
        assert_eq!(CertThumbprint::parse_digest(&HEX.to_uppercase()), from_hex);
        let colons: Vec<String> = HEX
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert_eq!(CertThumbprint::parse_digest(&colons.join(":")), from_hex);
        assert_eq!(CertThumbprint::parse_digest("zz"), None);
        assert_eq!(CertThumbprint::parse_digest(&HEX[1..]), None);
    }

    #[test]
    fn der_thumbprint() {
        // SHA-256("abc") = ba7816bf...
        let t = CertThumbprint::from_der(b"abc");
        assert_eq!(
            Some(t),
            CertThumbprint::parse_digest("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn binding_rules() {
        let cert = CertThumbprint::from_der(b"client");
        let other = CertThumbprint::from_der(b"other");
        let mtls = Confirmation {
            x5t_s256: Some(cert.to_b64url()),
            jkt: None,
        };
        let dpop = Confirmation {
            x5t_s256: None,
            jkt: Some("abc".into()),
        };
        let none = Confirmation::default();
        use SenderConstraint::*;
        assert_eq!(
            check_binding(&mtls, Scheme::Bearer, Some(&cert), Mtls),
            Ok(BindingKind::Mtls)
        );
        assert_eq!(
            check_binding(&mtls, Scheme::Bearer, Some(&other), Mtls),
            Err(Denial::CertificateThumbprintMismatch)
        );
        assert_eq!(
            check_binding(&mtls, Scheme::Bearer, None, Either),
            Err(Denial::CertificateMissing)
        );
        assert_eq!(
            check_binding(&mtls, Scheme::Bearer, Some(&cert), Dpop),
            Err(Denial::BindingNotAllowed)
        );
        assert_eq!(
            check_binding(&dpop, Scheme::Bearer, None, Either),
            Err(Denial::DpopBoundTokenAsBearer)
        );
        assert_eq!(
            check_binding(&dpop, Scheme::DPoP, None, Either),
            Ok(BindingKind::Dpop)
        );
        assert_eq!(
            check_binding(&none, Scheme::Bearer, None, Either),
            Err(Denial::BearerTokenNotAllowed)
        );
        assert_eq!(
            check_binding(&none, Scheme::Bearer, None, BearerAllowed),
            Ok(BindingKind::Bearer)
        );
        // A bound token on a bearer-allowed route is still checked.
        assert_eq!(
            check_binding(&mtls, Scheme::Bearer, Some(&other), BearerAllowed),
            Err(Denial::CertificateThumbprintMismatch)
        );
        assert_eq!(check_dpop_key(&dpop, "abc"), Ok(()));
        assert_eq!(check_dpop_key(&dpop, "abd"), Err(Denial::DpopKeyMismatch));
        assert_eq!(check_dpop_key(&none, "abc"), Err(Denial::DpopKeyMismatch));
    }
}
