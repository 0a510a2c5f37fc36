//! Request facts a decision starts from (fapi-core `extract`): the credentials in the `Authorization`
//! headers and the query (`credentials`), Envoy's `x-forwarded-client-cert` (`xfcc_client_cert`) and
//! the certificate digest in it (`CertThumbprint::parse_digest`).
//!
//! Input: path `0xFF` xfcc `0xFF` Authorization values separated by `0xFF`.
//!
//! Beyond "no panic": credentials come only from exactly one header, as a scheme fapi-guard knows and a
//! token68 that is the header's tail; a query naming `access_token` is always refused (FAPI 2.0
//! §5.3.4); a digest's thumbprint, written back in base64url, parses to itself.
#![no_main]

use fapi_core::binding::CertThumbprint;
use fapi_core::decision::{Denial, Scheme};
use fapi_core::extract::{credentials, xfcc_client_cert, ClientCert, RequestFacts};
use fapi_fuzz::split_ff;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let (path, rest) = split_ff(data);
    let (xfcc, rest) = split_ff(rest);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let authorization: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|b| *b == 0xff).map(text).collect()
    };
    let facts = RequestFacts {
        method: "GET".into(),
        scheme: "https".into(),
        authority: "api.bank.example".into(),
        path: text(path),
        authorization,
        ..RequestFacts::default()
    };
    let token_in_query = facts
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some("access_token")));
    match credentials(&facts) {
        Ok(Some((scheme, token))) => {
            assert!(!token_in_query);
            assert_eq!(facts.authorization.len(), 1);
            let header = &facts.authorization[0];
            assert!(header.ends_with(token));
            let (name, _) = header.split_once(' ').expect("scheme and token");
            match scheme {
                Scheme::Bearer => assert!(name.eq_ignore_ascii_case("bearer")),
                Scheme::DPoP => assert!(name.eq_ignore_ascii_case("dpop")),
            }
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty());
            assert!(body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
        }
        Ok(None) => assert!(!token_in_query && facts.authorization.is_empty()),
        Err(Denial::TokenInQuery) => assert!(token_in_query),
        Err(_) => assert!(!token_in_query && !facts.authorization.is_empty()),
    }
    if let Some(cert) = xfcc_client_cert(&text(xfcc)) {
        let ClientCert::Digest(d) = &cert else {
            panic!("xfcc gives a digest, not a certificate");
        };
        if let Some(t) = cert.thumbprint() {
            assert_eq!(CertThumbprint::parse_digest(&t.to_b64url()), Some(t), "digest {d}");
        }
    }
});
