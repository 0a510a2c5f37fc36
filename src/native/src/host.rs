//! fapi-engine's host interface on Envoy's dynamic-module callbacks. What all workers share is
//! ordinary process memory behind locks: the storage the engine's leases, key sets, revocation list
//! and DPoP replay store live in.
//!
//! One host, [`EnvoyHost`], serves both sides; they differ only in the Envoy object counters and
//! callouts go through ([`Side`]): [`ConfigHost`] the main thread (configuration, the one-second
//! tick, its callouts), [`FilterHost`] one request on a worker thread.

use crate::abi::*;
use fapi_engine::host::{Callout, CalloutResponse, Host, Level, RequestHost, SharedError};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Locks, also after a panic elsewhere left the lock poisoned (the data are caches and stores whose
/// every update is a single assignment; a request that panicked was already refused).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn module_buffer(s: &[u8]) -> envoy_dynamic_module_type_module_buffer {
    envoy_dynamic_module_type_module_buffer {
        ptr: s.as_ptr().cast(),
        length: s.len(),
    }
}

const NULL_BUFFER: envoy_dynamic_module_type_module_buffer = envoy_dynamic_module_type_module_buffer {
    ptr: std::ptr::null(),
    length: 0,
};

/// Copies an Envoy buffer into module memory.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes for the duration of the call.
unsafe fn copy_envoy(ptr: *const std::ffi::c_char, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `ptr` points to `len` readable bytes; they are copied at once.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec()
}

/// Writes one log line under Envoy's `[dynamic_modules]` logger.
pub fn log_line(level: Level, line: &str) {
    let level = match level {
        Level::Info => envoy_dynamic_module_type_log_level_Info,
        Level::Warn => envoy_dynamic_module_type_log_level_Warn,
        Level::Error => envoy_dynamic_module_type_log_level_Error,
    };
    // SAFETY: the buffer points into `line`, alive for the call; Envoy copies it into its log.
    unsafe { envoy_dynamic_module_callback_log(level, module_buffer(line.as_bytes())) }
}

/// What every worker of one filter configuration shares.
#[derive(Default)]
pub struct Env {
    shared: Mutex<HashMap<String, (Vec<u8>, u32)>>,
    /// Envoy's ids of the counters, defined when the configuration was loaded.
    pub counter_ids: HashMap<String, usize>,
}

impl Env {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match lock(&self.shared).get(key) {
            Some((v, version)) => (Some(v.clone()), Some(*version)),
            None => (None, None),
        }
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        let mut map = lock(&self.shared);
        let current = map.get(key).map(|(_, v)| *v);
        if let (Some(expected), Some(current)) = (cas, current) {
            if expected != current {
                return Err(SharedError::CasMismatch);
            }
        }
        let next = current.map_or(1, |v| v.wrapping_add(1).max(1));
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    /// Defines every counter the engine may report, as `fapi_guard.<name>` (Envoy accepts new
    /// counters only while the configuration loads).
    pub(crate) fn define_counters(&mut self, config: envoy_dynamic_module_type_http_filter_config_envoy_ptr) {
        for name in fapi_engine::metrics::all_counters() {
            let full = format!("fapi_guard.{name}");
            let mut id = 0usize;
            // SAFETY: `config` is the configuration Envoy is creating; `full` lives for the call and
            // Envoy copies the name; `id` is a valid out-pointer.
            let result = unsafe {
                envoy_dynamic_module_callback_http_filter_config_define_counter(
                    config,
                    module_buffer(full.as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                )
            };
            if result == envoy_dynamic_module_type_metrics_result_Success {
                self.counter_ids.insert(name, id);
            }
        }
    }
}

/// Pseudo-headers and headers of a callout as Envoy's header structs (pointing into `call`).
fn callout_headers(call: &Callout) -> Vec<envoy_dynamic_module_type_module_http_header> {
    call.headers
        .iter()
        .map(|(n, v)| envoy_dynamic_module_type_module_http_header {
            key_ptr: n.as_ptr().cast(),
            key_length: n.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

/// Copies a callout's answer out of Envoy's buffers (valid only during the hook).
///
/// # Safety
/// `headers` / `body` must be null or point to `headers_size` / `body_size` valid entries whose
/// buffers are readable for the duration of the call.
pub unsafe fn callout_response(
    result: envoy_dynamic_module_type_http_callout_result,
    headers: *const envoy_dynamic_module_type_envoy_http_header,
    headers_size: usize,
    body: *const envoy_dynamic_module_type_envoy_buffer,
    body_size: usize,
) -> CalloutResponse {
    let mut response = CalloutResponse::default();
    if result != envoy_dynamic_module_type_http_callout_result_Success {
        return response;
    }
    if !headers.is_null() {
        // SAFETY: the caller guarantees `headers_size` valid entries.
        for h in unsafe { std::slice::from_raw_parts(headers, headers_size) } {
            // SAFETY: each entry's key points to `key_length` bytes Envoy keeps during the hook.
            if unsafe { copy_envoy(h.key_ptr, h.key_length) } == b":status" {
                // SAFETY: as above, for the value.
                response.status =
                    String::from_utf8_lossy(&unsafe { copy_envoy(h.value_ptr, h.value_length) }).into_owned();
            }
        }
    }
    if !body.is_null() {
        // SAFETY: the caller guarantees `body_size` valid chunks.
        for chunk in unsafe { std::slice::from_raw_parts(body, body_size) } {
            // SAFETY: each chunk points to `length` bytes Envoy keeps during the hook.
            let bytes = unsafe { copy_envoy(chunk.ptr, chunk.length) };
            response.body.extend(bytes);
            if response.body.len() > fapi_core::revocation::MAX_FEED_PAGE {
                // Larger than any answer the engine accepts: make it unreadable (fail closed).
                response.body.truncate(fapi_core::revocation::MAX_FEED_PAGE + 1);
                break;
            }
        }
    }
    response
}

fn callout_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

/// What differs between the main thread and a request: through which Envoy object a counter is
/// added and a callout is started.
pub trait Side {
    /// Adds `n` to the counter Envoy gave `id`.
    fn increment(&self, id: usize, n: u64);
    /// Starts a callout; the header structs and body point into module memory alive for the call.
    fn callout(
        &self,
        id: &mut u64,
        cluster: envoy_dynamic_module_type_module_buffer,
        headers: &mut [envoy_dynamic_module_type_module_http_header],
        body: envoy_dynamic_module_type_module_buffer,
        timeout_ms: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result;
}

/// The main thread: the configuration's counters and callouts (the tick, its answers).
pub struct ConfigSide(pub envoy_dynamic_module_type_http_filter_config_envoy_ptr);

impl Side for ConfigSide {
    fn increment(&self, id: usize, n: u64) {
        // SAFETY: `self.0` is the live configuration whose main-thread hook is running; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                n,
            )
        };
    }

    fn callout(
        &self,
        id: &mut u64,
        cluster: envoy_dynamic_module_type_module_buffer,
        headers: &mut [envoy_dynamic_module_type_module_http_header],
        body: envoy_dynamic_module_type_module_buffer,
        timeout_ms: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result {
        // SAFETY: `self.0` is the live configuration on its main thread; cluster, headers, body live
        // for the call (Envoy copies them); `id` is a valid out-pointer.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                id,
                cluster,
                headers.as_mut_ptr(),
                headers.len(),
                body,
                timeout_ms,
            )
        }
    }
}

/// One request on a worker thread, and what the shell remembers about the hook it is in.
pub struct FilterSide<'a> {
    pub envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    pub state: &'a mut HookState,
}

impl Side for FilterSide<'_> {
    fn increment(&self, id: usize, n: u64) {
        // SAFETY: `self.envoy` is the live filter of the hook being run; no labels are passed.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.envoy,
                id,
                std::ptr::null_mut(),
                0,
                n,
            )
        };
    }

    fn callout(
        &self,
        id: &mut u64,
        cluster: envoy_dynamic_module_type_module_buffer,
        headers: &mut [envoy_dynamic_module_type_module_http_header],
        body: envoy_dynamic_module_type_module_buffer,
        timeout_ms: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result {
        // SAFETY: `self.envoy` is the live filter of the running hook; cluster, headers, body live
        // for the call (Envoy copies them); `id` is a valid out-pointer.
        unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.envoy,
                id,
                cluster,
                headers.as_mut_ptr(),
                headers.len(),
                body,
                timeout_ms,
            )
        }
    }
}

/// fapi-engine's host on Envoy: one implementation for both sides ([`ConfigHost`] on the main
/// thread, [`FilterHost`] for a request).
pub struct EnvoyHost<'a, S: Side> {
    pub env: &'a Env,
    pub side: S,
}

pub type ConfigHost<'a> = EnvoyHost<'a, ConfigSide>;
pub type FilterHost<'a> = EnvoyHost<'a, FilterSide<'a>>;

impl<'a> ConfigHost<'a> {
    pub fn config(env: &'a Env, envoy: envoy_dynamic_module_type_http_filter_config_envoy_ptr) -> Self {
        EnvoyHost {
            env,
            side: ConfigSide(envoy),
        }
    }
}

impl<'a> FilterHost<'a> {
    pub fn filter(
        env: &'a Env,
        envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
        state: &'a mut HookState,
    ) -> Self {
        EnvoyHost {
            env,
            side: FilterSide { envoy, state },
        }
    }
}

impl<S: Side> Host for EnvoyHost<'_, S> {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn random(&mut self, buf: &mut [u8]) -> bool {
        getrandom::getrandom(buf).is_ok()
    }

    fn counter(&mut self, name: &str, n: u64) {
        if let Some(id) = self.env.counter_ids.get(name) {
            self.side.increment(*id, n);
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        log_line(level, line);
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.env.shared_get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        self.env.shared_set(key, value, cas)
    }

    fn http_call(&mut self, call: &Callout) -> Option<u32> {
        let mut headers = callout_headers(call);
        let body = call.body.as_deref().map_or(NULL_BUFFER, module_buffer);
        let mut id = 0u64;
        let result = self.side.callout(
            &mut id,
            module_buffer(call.cluster.as_bytes()),
            &mut headers,
            body,
            call.timeout_ms,
        );
        (result == envoy_dynamic_module_type_http_callout_init_result_Success)
            .then_some(id)
            .and_then(callout_id)
    }
}

/// What the shell remembers about the hook it is in (Envoy may answer a callout inside the call
/// that started it; the answer is then handled after the engine returns).
#[derive(Default)]
pub struct HookState {
    pub in_hook: bool,
    pub resume_requested: bool,
}

impl FilterHost<'_> {
    /// The request body bytes Envoy holds so far (buffered and received), without reading them.
    pub fn request_body_size(&self) -> usize {
        request_body_parts(self.side.envoy)
            .into_iter()
            // SAFETY: `self.side.envoy` is the live filter of the running hook.
            .map(|kind| unsafe { envoy_dynamic_module_callback_http_get_body_size(self.side.envoy, kind) })
            .fold(0usize, usize::saturating_add)
    }

    fn set_header(
        &mut self,
        kind: envoy_dynamic_module_type_http_header_type,
        name: &str,
        value: Option<&str>,
    ) {
        let value = value.map_or(NULL_BUFFER, |v| module_buffer(v.as_bytes()));
        // Header values were copied out of Envoy's lent buffers before any write: none is passed back.
        // SAFETY: the live filter of the running hook; key and value are module memory alive for the
        // call; a null value removes the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.side.envoy,
                kind,
                module_buffer(name.as_bytes()),
                value,
            )
        };
    }
}

/// Lends `f` every request header as Envoy holds it, without copying.
///
/// # Safety
/// `envoy` must be the live filter of the running hook. `f` must not reach Envoy (no setter may run
/// while Envoy's buffers are lent: a setter invalidates them); it copies what it keeps.
unsafe fn lend_request_headers(
    envoy: envoy_dynamic_module_type_http_filter_envoy_ptr,
    f: &mut dyn FnMut(&str, &[u8]),
) {
    let kind = envoy_dynamic_module_type_http_header_type_RequestHeader;
    // SAFETY: `envoy` is the live filter of the running hook (the caller's contract).
    let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(envoy, kind) };
    let empty = envoy_dynamic_module_type_envoy_http_header {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
    let mut raw = vec![empty; n];
    // SAFETY: `raw` has room for the `n` headers Envoy just counted; Envoy fills it with pointers
    // into its header map, valid until the end of the hook or the next setter.
    let ok = unsafe { envoy_dynamic_module_callback_http_get_headers(envoy, kind, raw.as_mut_ptr()) };
    if !ok {
        return;
    }
    for h in &raw {
        // SAFETY: each pointer/length pair was just filled in by Envoy, and no setter runs while
        // they are lent (the caller's contract): the slices live only for this iteration.
        let (k, v) = unsafe {
            (
                envoy_bytes(h.key_ptr, h.key_length),
                envoy_bytes(h.value_ptr, h.value_length),
            )
        };
        // Names are ASCII in practice: the fast check first, the replacing copy only if needed.
        match std::str::from_utf8(k) {
            Ok(name) => f(name, v),
            Err(_) => f(&String::from_utf8_lossy(k), v),
        }
    }
}

/// A view of an Envoy buffer.
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes that outlive the returned slice's use.
unsafe fn envoy_bytes<'a>(ptr: *const std::ffi::c_char, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

impl RequestHost for FilterHost<'_> {
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        // SAFETY: the live filter of this hook; the closure only copies (it cannot reach Envoy).
        unsafe { lend_request_headers(self.side.envoy, &mut |k, v| out.push((k.to_string(), v.to_vec()))) };
        out
    }

    fn for_each_request_header(&mut self, f: &mut dyn FnMut(&str, &[u8])) {
        // SAFETY: the live filter of this hook; `f` cannot reach Envoy (`self` is borrowed by this
        // call), so no setter runs while the buffers are lent, and it copies what it keeps.
        unsafe { lend_request_headers(self.side.envoy, f) }
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        let mut body = Vec::with_capacity(size);
        for kind in request_body_parts(self.side.envoy) {
            body.extend_from_slice(&body_chunks(self.side.envoy, kind));
        }
        body.truncate(size);
        body
    }

    fn peer_certificate_digest(&mut self) -> Option<String> {
        let mut out = envoy_dynamic_module_type_envoy_buffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        // SAFETY: `self.side.envoy` is the live filter; `out` is a valid out-pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.side.envoy,
                envoy_dynamic_module_type_attribute_id_ConnectionSha256PeerCertificateDigest,
                &mut out,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: Envoy filled `out` with a buffer valid during the hook; copied at once.
        String::from_utf8(unsafe { copy_envoy(out.ptr, out.length) }).ok()
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        self.set_header(
            envoy_dynamic_module_type_http_header_type_RequestHeader,
            name,
            Some(value),
        );
    }

    fn remove_request_header(&mut self, name: &str) {
        self.set_header(
            envoy_dynamic_module_type_http_header_type_RequestHeader,
            name,
            None,
        );
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.set_header(
            envoy_dynamic_module_type_http_header_type_ResponseHeader,
            name,
            Some(value),
        );
    }

    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw: Vec<envoy_dynamic_module_type_module_http_header> = headers
            .iter()
            .map(|(n, v)| envoy_dynamic_module_type_module_http_header {
                key_ptr: n.as_ptr().cast(),
                key_length: n.len(),
                value_ptr: v.as_ptr().cast(),
                value_length: v.len(),
            })
            .collect();
        let details = b"fapi_guard_denied";
        // SAFETY: `self.side.envoy` is the live filter; headers, body and details point into module
        // memory alive for the call, and Envoy copies them into the reply.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.side.envoy,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                module_buffer(body),
                module_buffer(details),
            )
        };
    }

    fn resume_request(&mut self) {
        if self.side.state.in_hook {
            // Inside the request hook: the hook returns Continue instead.
            self.side.state.resume_requested = true;
            return;
        }
        // SAFETY: `self.side.envoy` is the live filter, paused by this module's request hook.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.side.envoy) };
    }
}

/// Where the request body is during a body event: what Envoy buffered for this filter, then the piece
/// just received, unless that piece is itself the buffered body (an earlier filter buffered it).
fn request_body_parts(envoy: envoy_dynamic_module_type_http_filter_envoy_ptr) -> Vec<u32> {
    // SAFETY: `envoy` is the live filter of the running hook.
    let received_is_buffered =
        unsafe { envoy_dynamic_module_callback_http_received_buffered_request_body(envoy) };
    if received_is_buffered {
        vec![envoy_dynamic_module_type_http_body_type_BufferedRequestBody]
    } else {
        vec![
            envoy_dynamic_module_type_http_body_type_BufferedRequestBody,
            envoy_dynamic_module_type_http_body_type_ReceivedRequestBody,
        ]
    }
}

/// One body of the running request, copied out of Envoy's chunks.
fn body_chunks(envoy: envoy_dynamic_module_type_http_filter_envoy_ptr, kind: u32) -> Vec<u8> {
    // SAFETY: `envoy` is the live filter of the running hook.
    let n = unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(envoy, kind) };
    if n == 0 {
        return Vec::new();
    }
    let mut chunks = vec![
        envoy_dynamic_module_type_envoy_buffer {
            ptr: std::ptr::null(),
            length: 0,
        };
        n
    ];
    // SAFETY: `chunks` has room for the `n` buffers Envoy just counted; Envoy fills it with pointers
    // into its body buffer, valid until the end of the hook or the next setter (none runs here).
    let ok = unsafe { envoy_dynamic_module_callback_http_get_body_chunks(envoy, kind, chunks.as_mut_ptr()) };
    if !ok {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in &chunks {
        // SAFETY: each pointer/length pair was just filled in by Envoy; copied at once.
        out.extend_from_slice(&unsafe { copy_envoy(c.ptr, c.length) });
    }
    out
}
