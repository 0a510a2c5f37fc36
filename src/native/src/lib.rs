//! fapi-guard as a native Envoy dynamic module (`envoy.filters.http.dynamic_modules`, ABI v0.2.0,
//! Envoy 1.40): the same engine and the same policy file as the proxy-wasm plugin, without the wasm VM.
//!
//! [`abi`] declares the FFI (named as in Envoy's header); [`hooks`] are the event hooks Envoy calls,
//! each passing its event to fapi-engine under `catch_unwind`; [`host`] implements the engine's host
//! interface on Envoy's callbacks; per filter configuration, engine workers for the request hooks
//! share one key set, one token cache and one DPoP replay store (process memory, locks held only for
//! a table operation); [`compat`] refuses to start on an Envoy that does not export what this build
//! calls. No security rule is here.

pub mod abi;
pub mod compat;
pub mod hooks;
pub mod host;
#[cfg(feature = "test-panic")]
pub mod test_panic;
