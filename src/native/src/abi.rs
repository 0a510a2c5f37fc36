//! The Envoy dynamic modules ABI v0.2.0 (Envoy 1.40), as far as this module uses it: every type,
//! constant and callback here is named exactly as in Envoy's C header
//! `source/extensions/dynamic_modules/abi/abi.h`, and nothing else in the crate declares FFI.
//!
//! Nothing checks these declarations against Envoy's: a wrong one is silent memory corruption. So
//! each one is exercised against the real Envoy by the end-to-end tests
//! (`src/e2e/tests/envoy_plugin.rs`, native variant), and `tests/abi_symbols.rs` checks that every
//! callback imported here is exported by the Envoy binary under test. The event hooks the module
//! exports (`envoy_dynamic_module_on_*`) are defined in `hooks.rs` with the signatures of the same
//! header.

#![allow(non_camel_case_types, non_upper_case_globals)]

use std::ffi::{c_char, c_void};

/// The ABI version this module is built for (Envoy compares it with its own and, on a mismatch,
/// only warns: see `hooks::envoy_dynamic_module_on_program_init` for the module's own check).
pub const ENVOY_DYNAMIC_MODULES_ABI_VERSION: &[u8] = b"v0.2.0\0";

// ------------------------------------------------------------------------------------------------
// Types
// ------------------------------------------------------------------------------------------------

pub type envoy_dynamic_module_type_abi_version_module_ptr = *const c_char;
pub type envoy_dynamic_module_type_buffer_module_ptr = *const c_char;
pub type envoy_dynamic_module_type_buffer_envoy_ptr = *const c_char;
pub type envoy_dynamic_module_type_http_filter_config_envoy_ptr = *mut c_void;
pub type envoy_dynamic_module_type_http_filter_config_module_ptr = *const c_void;
pub type envoy_dynamic_module_type_http_filter_envoy_ptr = *mut c_void;
pub type envoy_dynamic_module_type_http_filter_module_ptr = *const c_void;
pub type envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr = *mut c_void;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_envoy_buffer {
    pub ptr: envoy_dynamic_module_type_buffer_envoy_ptr,
    pub length: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_module_buffer {
    pub ptr: envoy_dynamic_module_type_buffer_module_ptr,
    pub length: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_module_http_header {
    pub key_ptr: envoy_dynamic_module_type_buffer_module_ptr,
    pub key_length: usize,
    pub value_ptr: envoy_dynamic_module_type_buffer_module_ptr,
    pub value_length: usize,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct envoy_dynamic_module_type_envoy_http_header {
    pub key_ptr: envoy_dynamic_module_type_buffer_envoy_ptr,
    pub key_length: usize,
    pub value_ptr: envoy_dynamic_module_type_buffer_envoy_ptr,
    pub value_length: usize,
}

// C enums are passed as `int`-sized values; each is a `u32` with its constants.

pub type envoy_dynamic_module_type_http_header_type = u32;
pub const envoy_dynamic_module_type_http_header_type_RequestHeader: u32 = 0;
pub const envoy_dynamic_module_type_http_header_type_ResponseHeader: u32 = 2;

pub type envoy_dynamic_module_type_log_level = u32;
pub const envoy_dynamic_module_type_log_level_Info: u32 = 2;
pub const envoy_dynamic_module_type_log_level_Warn: u32 = 3;
pub const envoy_dynamic_module_type_log_level_Error: u32 = 4;

pub type envoy_dynamic_module_type_http_callout_init_result = u32;
pub const envoy_dynamic_module_type_http_callout_init_result_Success: u32 = 0;

pub type envoy_dynamic_module_type_http_callout_result = u32;
pub const envoy_dynamic_module_type_http_callout_result_Success: u32 = 0;

pub type envoy_dynamic_module_type_http_stream_reset_reason = u32;

pub type envoy_dynamic_module_type_metrics_result = u32;
pub const envoy_dynamic_module_type_metrics_result_Success: u32 = 0;

pub type envoy_dynamic_module_type_attribute_id = u32;
/// `connection.sha256_peer_certificate_digest` (the 39th attribute of the enum).
pub const envoy_dynamic_module_type_attribute_id_ConnectionSha256PeerCertificateDigest: u32 = 38;

pub type envoy_dynamic_module_type_on_http_filter_request_headers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_request_headers_status_StopIteration: u32 = 1;

pub type envoy_dynamic_module_type_on_http_filter_request_body_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_request_body_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_request_body_status_StopIterationAndBuffer: u32 = 1;
pub type envoy_dynamic_module_type_on_http_filter_request_trailers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_request_trailers_status_Continue: u32 = 0;
pub const envoy_dynamic_module_type_on_http_filter_request_trailers_status_StopIteration: u32 = 1;

pub type envoy_dynamic_module_type_http_body_type = u32;
/// The body piece of the running request-body event.
pub const envoy_dynamic_module_type_http_body_type_ReceivedRequestBody: u32 = 0;
/// The request body buffered so far (Envoy's decoding buffer).
pub const envoy_dynamic_module_type_http_body_type_BufferedRequestBody: u32 = 1;
pub type envoy_dynamic_module_type_on_http_filter_response_headers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_response_headers_status_Continue: u32 = 0;
pub type envoy_dynamic_module_type_on_http_filter_response_body_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_response_body_status_Continue: u32 = 0;
pub type envoy_dynamic_module_type_on_http_filter_response_trailers_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_response_trailers_status_Continue: u32 = 0;
pub type envoy_dynamic_module_type_on_http_filter_local_reply_status = u32;
pub const envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue: u32 = 0;

// ------------------------------------------------------------------------------------------------
// Callbacks Envoy exports (the module calls them)
// ------------------------------------------------------------------------------------------------

extern "C" {
    pub fn envoy_dynamic_module_callback_log(
        level: envoy_dynamic_module_type_log_level,
        message: envoy_dynamic_module_type_module_buffer,
    );

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        result_headers: *mut envoy_dynamic_module_type_envoy_http_header,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        header_type: envoy_dynamic_module_type_http_header_type,
        key: envoy_dynamic_module_type_module_buffer,
        value: envoy_dynamic_module_type_module_buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        status_code: u32,
        headers_vector: *mut envoy_dynamic_module_type_module_http_header,
        headers_vector_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        details: envoy_dynamic_module_type_module_buffer,
    );

    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
    ) -> usize;

    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        body_type: envoy_dynamic_module_type_http_body_type,
        result_buffer_vector: *mut envoy_dynamic_module_type_envoy_buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
    );

    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        attribute_id: envoy_dynamic_module_type_attribute_id,
        result: *mut envoy_dynamic_module_type_envoy_buffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        callout_id_out: *mut u64,
        cluster_name: envoy_dynamic_module_type_module_buffer,
        headers: *mut envoy_dynamic_module_type_module_http_header,
        headers_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        timeout_milliseconds: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        callout_id_out: *mut u64,
        cluster_name: envoy_dynamic_module_type_module_buffer,
        headers: *mut envoy_dynamic_module_type_module_http_header,
        headers_size: usize,
        body: envoy_dynamic_module_type_module_buffer,
        timeout_milliseconds: u64,
    ) -> envoy_dynamic_module_type_http_callout_init_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
    ) -> envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler_module_ptr: envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr,
        event_id: u64,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler_module_ptr: envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr,
    );

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        name: envoy_dynamic_module_type_module_buffer,
        label_names: *mut envoy_dynamic_module_type_module_buffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: envoy_dynamic_module_type_http_filter_config_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;

    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: envoy_dynamic_module_type_http_filter_envoy_ptr,
        id: usize,
        label_values: *mut envoy_dynamic_module_type_module_buffer,
        label_values_length: usize,
        value: u64,
    ) -> envoy_dynamic_module_type_metrics_result;
}

/// Every callback declared above, as the linker names it (checked against the Envoy binary by
/// `tests/abi_symbols.rs`, and resolved at start by `hooks::envoy_dynamic_module_on_program_init`).
pub const IMPORTED_CALLBACKS: &[&str] = &[
    "envoy_dynamic_module_callback_log",
    "envoy_dynamic_module_callback_http_get_headers_size",
    "envoy_dynamic_module_callback_http_get_headers",
    "envoy_dynamic_module_callback_http_set_header",
    "envoy_dynamic_module_callback_http_send_response",
    "envoy_dynamic_module_callback_http_get_body_size",
    "envoy_dynamic_module_callback_http_get_body_chunks_size",
    "envoy_dynamic_module_callback_http_get_body_chunks",
    "envoy_dynamic_module_callback_http_received_buffered_request_body",
    "envoy_dynamic_module_callback_http_filter_continue_decoding",
    "envoy_dynamic_module_callback_http_filter_get_attribute_string",
    "envoy_dynamic_module_callback_http_filter_http_callout",
    "envoy_dynamic_module_callback_http_filter_config_http_callout",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    "envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
    "envoy_dynamic_module_callback_http_filter_config_define_counter",
    "envoy_dynamic_module_callback_http_filter_config_increment_counter",
    "envoy_dynamic_module_callback_http_filter_increment_counter",
];

/// Callbacks that first appeared in ABI v0.2.0 (Envoy 1.40; absent from Envoy 1.39's v0.1.0). The
/// module never calls them: their presence tells the running Envoy speaks v0.2.0 or later, where the
/// declarations above hold (an older Envoy has callbacks of the same names with other signatures).
pub const ABI_V0_2_MARKERS: &[&str] = &[
    "envoy_dynamic_module_callback_log_v2",
    "envoy_dynamic_module_callback_http_get_timing_info",
    "envoy_dynamic_module_callback_get_runtime_bool",
];

// ------------------------------------------------------------------------------------------------
// The C library (not Envoy's ABI): symbol lookup for the start-up check.
// ------------------------------------------------------------------------------------------------

extern "C" {
    /// glibc `dlsym`; with a null handle (`RTLD_DEFAULT`) it searches the global scope, which holds
    /// Envoy's exported symbols.
    pub fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
