//! fapi-guard's Envoy plugin: thin proxy-wasm glue around fapi-core.
//!
//! [`root`] compiles the policy once per VM and keeps keys and revocations fresh; [`http`] gathers each
//! request's facts, asks core for the decision and applies it; [`shared`] holds what workers share
//! (leases, DPoP replay store, key sets, revocations); [`metrics`] publishes Envoy stats. No security
//! rule is decided here: every check is in fapi-core.

pub mod http;
pub mod metrics;
pub mod root;
pub mod shared;
pub mod worker;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
