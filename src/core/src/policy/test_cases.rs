//! The shape of a policy's own tests (names unique, URLs absolute, values known), checked with the rest
//! of the policy. Running them is [`crate::policy_tests`]'s job, which needs the guard; this module
//! does not.

use super::{PolicyDoc, Problem};

/// Checks that the tests are well-formed (names unique, values known); run by validation.
pub(super) fn check_tests(doc: &PolicyDoc, problems: &mut Vec<Problem>) {
    for (i, t) in doc.tests.iter().enumerate() {
        let at = |f: &str| format!("tests[{i}].{f}");
        if doc.tests[..i].iter().any(|o| o.name == t.name) {
            problems.push(Problem::error(
                at("name"),
                format!("test name \"{}\" is used twice", t.name),
            ));
        }
        if crate::uri::normalize(&t.request.url).is_none() {
            problems.push(Problem::error(
                at("request.url"),
                "must be an absolute http(s) URL",
            ));
        }
        if let Some(s) = &t.request.scheme {
            if !s.eq_ignore_ascii_case("bearer") && !s.eq_ignore_ascii_case("dpop") {
                problems.push(Problem::error(at("request.scheme"), "Bearer or DPoP"));
            }
        }
        for (field, v) in [
            ("request.client_cert", &t.request.client_cert),
            ("request.dpop_key", &t.request.dpop_key),
        ] {
            if let Some(v) = v {
                if !matches!(v.as_str(), "bound" | "other" | "none") {
                    problems.push(Problem::error(at(field), "bound, other or none"));
                }
            }
        }
        if let Some(b) = t.token.as_ref().and_then(|t| t.binding.as_ref()) {
            if !matches!(b.as_str(), "mtls" | "dpop" | "none") {
                problems.push(Problem::error(at("token.binding"), "mtls, dpop or none"));
            }
        }
        if !(100..=599).contains(&t.expect.status) {
            problems.push(Problem::error(at("expect.status"), "an HTTP status"));
        }
        if t.expect.status == 200 && (t.expect.error.is_some() || t.expect.reason.is_some()) {
            problems.push(Problem::error(
                at("expect"),
                "an allowed request has no error or reason",
            ));
        }
    }
}
