//! Policies in the compiled JSON form the plugin loads (`Policy::from_json`).
//!
//! Beyond "no panic": a refused policy names at least one error; an accepted one, compiled back to
//! JSON (`compiled_json`), reads again, and compiling that gives the same text (the round trip is
//! stable). Its rule matcher answers for a few requests without panicking.
#![no_main]

use fapi_core::policy::{Policy, Severity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
});

fn check(text: &str) {
    match Policy::from_json(text) {
        Err(problems) => assert!(problems.iter().any(|p| p.severity == Severity::Error)),
        Ok((policy, warnings)) => {
            assert!(warnings.iter().all(|p| p.severity == Severity::Warning));
            let compiled = policy.compiled_json();
            let again = match Policy::from_json(&compiled) {
                Ok((p, _)) => p,
                Err(problems) => panic!("compiled policy does not read again: {problems:?}\n{compiled}"),
            };
            assert_eq!(
                again.compiled_json(),
                compiled,
                "compile round trip is not stable"
            );
            assert_eq!(again.rules.len(), policy.rules.len());
            for (method, authority, path) in [
                ("GET", "api.bank.example", "/accounts/1"),
                ("POST", "API.BANK.EXAMPLE:443", "/a/../b/%2e%2e/c?x=1"),
                ("DELETE", "", ""),
            ] {
                let a = policy.match_rule(method, authority, path).map(|r| &r.name);
                let b = again.match_rule(method, authority, path).map(|r| &r.name);
                assert_eq!(a, b);
            }
        }
    }
}
