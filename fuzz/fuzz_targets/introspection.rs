//! RFC 7662 introspection: the response's `active` member (`revocation::introspection_active`, §2.2)
//! and the request body for a token (`introspection_request_body`, §2.1).
//!
//! Beyond "no panic": `active` is reported exactly when the body is a JSON object whose `active` is a
//! boolean (anything else fails closed); the request body, read back as a form, gives the token
//! unchanged and the hint.
#![no_main]

use fapi_core::revocation::{introspection_active, introspection_request_body};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let expected = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("active").and_then(Value::as_bool));
    assert_eq!(introspection_active(data).ok(), expected);
    if let Ok(token) = std::str::from_utf8(data) {
        let body = introspection_request_body(token);
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&body).expect("a form");
        assert_eq!(
            pairs,
            vec![
                ("token".to_string(), token.to_string()),
                ("token_type_hint".to_string(), "access_token".to_string())
            ]
        );
    }
});
