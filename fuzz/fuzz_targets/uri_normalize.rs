//! URI and path normalization (RFC 3986 §6.2.2-6.2.3): `uri::normalize` for DPoP `htu` comparison
//! (RFC 9449 §4.3 step 9) and the policy matcher's `normalize_path` / `normalized_path` / `host_of`.
//!
//! Beyond "no panic": normalization is idempotent (a normal form normalizes to itself), the fast path
//! (`normalized_path`) equals the full one, and a normalized URI carries no query, fragment, userinfo
//! or default port.
#![no_main]

use fapi_core::policy::matcher::{host_of, normalize_path, normalized_path};
use fapi_core::uri::normalize;
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(n) = normalize(text) {
        assert_eq!(normalize(&n).as_deref(), Some(n.as_str()), "normalize is not idempotent on {text:?}");
        assert!(!n.contains(['?', '#']), "{n}");
        let (scheme, rest) = n.split_once("://").expect("absolute");
        assert!(scheme == "https" || scheme == "http");
        let authority = rest.split('/').next().unwrap_or("");
        assert!(!authority.contains('@'));
        assert!(!authority.ends_with(if scheme == "https" { ":443" } else { ":80" }), "{n}");
        assert!(rest.contains('/'), "no path in {n}");
    }
    let full = normalize_path(text);
    assert_eq!(normalized_path(text).map(|c| c.into_owned()), full);
    if let Some(p) = &full {
        assert_eq!(normalize_path(p).as_ref(), Some(p), "normalize_path is not idempotent on {text:?}");
        assert!(p.starts_with('/'));
        assert!(!p.split('/').any(|s| s == "." || s == ".."), "{p}");
    }
    let host = host_of(text);
    assert!(text.to_ascii_lowercase().starts_with(&host), "host {host:?} of {text:?}");
});
