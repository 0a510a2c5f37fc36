//! fapi-guard's Envoy plugin: the proxy-wasm shell around fapi-engine (which calls fapi-core).
//!
//! [`host`] implements the engine's host interface on proxy-wasm host calls; [`root`] hands the
//! configuration to the engine and runs its background work on a tick; [`http`] passes each request's
//! callbacks to the engine. No security rule and no request logic is here: the same engine runs in
//! the native module (`src/native`).

pub mod host;
pub mod http;
pub mod root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
