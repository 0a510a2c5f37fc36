//! Refusing to run on an Envoy whose dynamic-module ABI is not the one this module was built for.
//!
//! Envoy compares the version string `envoy_dynamic_module_on_program_init` returns with its own and,
//! on a mismatch, only logs a warning and loads the module anyway; nothing checks signatures. So the
//! module checks for itself, before Envoy uses it: every callback it imports must be exported by the
//! running Envoy (a missing one would otherwise be a crash at its first call), and so must the
//! callbacks that first appeared in ABI v0.2.0 (Envoy 1.39 exports every callback this module calls,
//! under the same names, but speaks v0.1.0: without this check the module would load there).
//!
//! What this cannot see: an Envoy newer than the ABI promises to stay compatible with (before v1.0,
//! only the next minor version). The operator builds the module per Envoy minor version
//! (envoy/README.md), and the end-to-end tests run against the Envoy it is built for.

use crate::abi::{dlsym, ABI_V0_2_MARKERS, IMPORTED_CALLBACKS};
use std::ffi::CString;

fn exported(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string alive for the call; a null handle is glibc's
    // RTLD_DEFAULT (search the global scope, which holds the Envoy executable's exports).
    !unsafe { dlsym(std::ptr::null_mut(), c.as_ptr()) }.is_null()
}

/// Whether the log callback can be called.
pub fn has_log() -> bool {
    exported("envoy_dynamic_module_callback_log")
}

/// `Ok` when the running Envoy exports everything this module calls.
pub fn check() -> Result<(), String> {
    let missing: Vec<&str> = IMPORTED_CALLBACKS
        .iter()
        .chain(ABI_V0_2_MARKERS)
        .copied()
        .filter(|n| !exported(n))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "built for Envoy's dynamic module ABI {}, but this Envoy lacks {} (build fapi-guard for this Envoy's minor version)",
            std::str::from_utf8(crate::abi::ENVOY_DYNAMIC_MODULES_ABI_VERSION)
                .unwrap_or("?")
                .trim_end_matches('\0'),
            missing.join(", ")
        ))
    }
}
