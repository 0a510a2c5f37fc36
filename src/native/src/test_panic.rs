//! A panic on demand, for the test that proves a panic in a hook fails closed (issue 11 item 3:
//! a 500 local reply, never a pass). Compiled only with the `test-panic` feature, which no release
//! build or image enables.

use fapi_engine::host::RequestHost;

/// The request header that makes the request hook panic.
pub const TRIGGER: &str = "x-fapi-guard-test-panic";

/// Panics when the request carries [`TRIGGER`].
#[allow(clippy::panic)]
pub fn on_request<H: RequestHost + ?Sized>(host: &mut H) {
    if host.request_headers().iter().any(|(name, _)| name == TRIGGER) {
        panic!("fapi-guard: forced panic ({TRIGGER})");
    }
}
