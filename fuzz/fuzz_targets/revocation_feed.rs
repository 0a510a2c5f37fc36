//! The revocation feed page fapi-guard polls from fapi-as (`revocation::FeedPage::parse`,
//! docs/revocation-feed.md).
//!
//! Beyond "no panic": an accepted page, written back as JSON, parses to the same page (round trip),
//! and after `apply` every listed token is revoked.
#![no_main]

use fapi_core::cache::{RevocationCheck, RevocationList};
use fapi_core::revocation::FeedPage;
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Ok(page) = FeedPage::parse(data) else {
        return;
    };
    let written = json!({
        "cursor": page.cursor,
        "revoked": page.revoked.iter()
            .map(|r| json!({"iss": r.iss, "jti": r.jti, "exp": r.exp}))
            .collect::<Vec<_>>(),
    });
    let again = FeedPage::parse(written.to_string().as_bytes()).expect("a written page parses");
    assert_eq!(again, page);
    let mut list = RevocationList::new();
    page.apply(&mut list);
    for r in &page.revoked {
        assert!(list.is_revoked(&r.iss, &r.jti), "{} {} not revoked", r.iss, r.jti);
    }
});
