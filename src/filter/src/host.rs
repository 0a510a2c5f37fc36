//! fapi-engine's host interface on proxy-wasm host calls: the only place the plugin touches Envoy.
//! Per-request calls act on the context Envoy made current for the callback being run.

use fapi_engine::host::{Callout, Host, Level, RequestHost, SharedError};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

thread_local! {
    /// Envoy's ids of the counters defined so far (a VM is single-threaded).
    static METRIC_IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// The proxy-wasm host (a VM's context calls all go through the same ABI).
pub struct WasmHost;

impl Host for WasmHost {
    fn now(&self) -> i64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn random(&mut self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }

    fn counter(&mut self, name: &str, n: u64) {
        let id = METRIC_IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if let Some(id) = ids.get(name) {
                return Some(*id);
            }
            let id = hostcalls::define_metric(MetricType::Counter, &format!("fapi_guard.{name}")).ok()?;
            ids.insert(name.to_string(), id);
            Some(id)
        });
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, n as i64);
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        match level {
            Level::Info => log::info!("{line}"),
            Level::Warn => log::warn!("{line}"),
            Level::Error => log::error!("{line}"),
        }
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|e| match e {
            Status::CasMismatch => SharedError::CasMismatch,
            _ => SharedError::Failed,
        })
    }

    fn http_call(&mut self, call: &Callout) -> Option<u32> {
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        hostcalls::dispatch_http_call(
            &call.cluster,
            headers,
            call.body.as_deref(),
            vec![],
            Duration::from_millis(call.timeout_ms),
        )
        .ok()
    }
}

impl RequestHost for WasmHost {
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        // As bytes: the SDK's text variant panics on a value that is not UTF-8.
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    /// proxy-wasm hosts turn a paused header hook into StopAllIterationAndWatermark (proxy-wasm-cpp-host
    /// `convertVmCallResultToFilterHeadersStatus`): the body hook would then never run.
    fn holds_headers_for_body(&self) -> bool {
        false
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn peer_certificate_digest(&mut self) -> Option<String> {
        hostcalls::get_property(vec!["connection", "sha256_peer_certificate_digest"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
    }

    fn remove_request_header(&mut self, name: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None);
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
    }

    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body));
    }

    fn resume_request(&mut self) {
        let _ = hostcalls::resume_http_request();
    }
}

/// The answer to the callout Envoy is reporting (status empty when there was none).
pub fn callout_response(body_size: usize) -> fapi_engine::CalloutResponse {
    fapi_engine::CalloutResponse {
        status: hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .unwrap_or_default(),
        body: hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default(),
    }
}
