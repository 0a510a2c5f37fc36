//! Where the access token is and how it was presented (RFC 6750 §2.1, RFC 9449 §7.1), plus the
//! request facts every decision starts from. FAPI 2.0 §5.3.4 accepts tokens in the header only.

use crate::binding::CertThumbprint;
use crate::denial::{Denial, Scheme};

/// The client certificate as the host knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// The certificate (DER).
    Der(Vec<u8>),
    /// A SHA-256 digest of the DER, hex (Envoy) or base64url.
    Digest(String),
}

impl ClientCert {
    /// The RFC 8705 thumbprint; `None` for an unreadable digest (treated as no certificate).
    pub fn thumbprint(&self) -> Option<CertThumbprint> {
        match self {
            ClientCert::Der(der) => Some(CertThumbprint::from_der(der)),
            ClientCert::Digest(d) => CertThumbprint::parse_digest(d),
        }
    }
}

/// Everything a decision needs to know about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub method: String,
    /// `https` or `http`, as the client used it.
    pub scheme: String,
    /// Host (and port) as the client sent it.
    pub authority: String,
    /// Path with query, as the client sent it.
    pub path: String,
    /// Every `Authorization` header value.
    pub authorization: Vec<String>,
    /// Every `DPoP` header value.
    pub dpop: Vec<String>,
    pub client_cert: Option<ClientCert>,
    pub interaction_id: Option<String>,
}

impl RequestFacts {
    /// The path without query and fragment.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or("")
    }

    pub fn query(&self) -> Option<&str> {
        self.path
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or(""))
    }
}

/// The characters of an RFC 7235 token68 before its trailing `=`: ALPHA / DIGIT / "-" / "." / "_" /
/// "~" / "+" / "/" (a table: this runs over every byte of every token).
const TOKEN68: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        c += 1;
    }
    t
};

/// The token and its scheme, or `None` when the request carries no credentials.
pub fn credentials(facts: &RequestFacts) -> Result<Option<(Scheme, &str)>, Denial> {
    // RFC 6750 §2.3 allows `access_token` in the query; FAPI 2.0 §5.3.4 forbids accepting it.
    if let Some(query) = facts.query() {
        if query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
        {
            return Err(Denial::TokenInQuery);
        }
    }
    let value = match facts.authorization.as_slice() {
        [] => return Ok(None),
        [one] => one.as_str(),
        _ => return Err(Denial::MultipleAuthorizationHeaders),
    };
    let (scheme, token) = value.split_once(' ').ok_or(Denial::MalformedAuthorization)?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::DPoP
    } else {
        return Err(Denial::MalformedAuthorization);
    };
    let token = token.trim_start_matches(' ');
    // RFC 7235 token68.
    let body = token.trim_end_matches('=');
    if body.is_empty() || !body.bytes().all(|b| TOKEN68[usize::from(b)]) {
        return Err(Denial::MalformedAuthorization);
    }
    Ok(Some((scheme, token)))
}

/// The client certificate digest in an `x-forwarded-client-cert` header (Envoy's format:
/// `By=...;Hash=<hex sha256 of the DER>;Cert="..."`, elements separated by commas; the last element is
/// the one the nearest proxy added). Only call this when the policy names the front proxy as trusted.
pub fn xfcc_client_cert(header: &str) -> Option<ClientCert> {
    let last = header.rsplit(',').next()?;
    last.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("hash"))
            .then(|| ClientCert::Digest(v.trim().trim_matches('"').to_string()))
    })
}

/// `true` for a UUID in its canonical 8-4-4-4-12 hex form (FAPI x-fapi-interaction-id).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A version 4 UUID from 16 random bytes supplied by the host.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(auth: &[&str], path: &str) -> RequestFacts {
        RequestFacts {
            method: "GET".into(),
            scheme: "https".into(),
            authority: "api.example".into(),
            path: path.into(),
            authorization: auth.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn header_only() {
        assert_eq!(
            credentials(&facts(&["Bearer abc.def.ghi"], "/x")),
            Ok(Some((Scheme::Bearer, "abc.def.ghi")))
        );
        assert_eq!(
            credentials(&facts(&["dpop abc"], "/x")),
            Ok(Some((Scheme::DPoP, "abc")))
        );
        assert_eq!(credentials(&facts(&[], "/x")), Ok(None));
        assert_eq!(
            credentials(&facts(&[], "/x?a=1&access_token=abc")),
            Err(Denial::TokenInQuery)
        );
        assert_eq!(
            credentials(&facts(&["Bearer a"], "/x?access_token=abc")),
            Err(Denial::TokenInQuery)
        );
        assert_eq!(
            credentials(&facts(&["Bearer a", "Bearer b"], "/x")),
            Err(Denial::MultipleAuthorizationHeaders)
        );
        assert_eq!(
            credentials(&facts(&["Bearer"], "/x")),
            Err(Denial::MalformedAuthorization)
        );
        assert_eq!(
            credentials(&facts(&["Bearer a b"], "/x")),
            Err(Denial::MalformedAuthorization)
        );
        assert_eq!(
            credentials(&facts(&["Basic dXNlcg=="], "/x")),
            Err(Denial::MalformedAuthorization)
        );
        assert_eq!(
            credentials(&facts(&["Bearer "], "/x")),
            Err(Denial::MalformedAuthorization)
        );
    }

    #[test]
    fn xfcc_hash() {
        let h = "By=spiffe://a;Hash=aa;Subject=\"CN=x\",By=spiffe://b;Hash=bb;Cert=\"x\"";
        assert_eq!(xfcc_client_cert(h), Some(ClientCert::Digest("bb".into())));
        assert_eq!(xfcc_client_cert("Subject=x"), None);
    }

    #[test]
    fn interaction_ids() {
        let id = uuid_v4([0xab; 16]);
        assert!(is_uuid(&id));
        assert_eq!(&id[14..15], "4");
        assert!(!is_uuid("not-a-uuid"));
        assert!(!is_uuid("c0ffee00-0000-0000-0000-00000000000g"));
        let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(uuid_v4(bytes), "00112233-4455-4677-8899-aabbccddeeff");
    }
}
