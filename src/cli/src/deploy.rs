//! `fapictl deploy istio|envoy-gateway|envoy POLICY.yaml --image REF [--sha256 HEX]`: ready-to-apply
//! configuration with the compiled policy embedded, for the three ways banks run Envoy.
//!
//! - **istio**: a `WasmPlugin` (extensions.istio.io/v1alpha1) on the ingress gateway, phase `AUTHN`
//!   (before Istio's own authentication filters), `failStrategy: FAIL_CLOSE`, the image pinned by
//!   `sha256`, the policy as `pluginConfig`; and the `Gateway` (networking.istio.io/v1) that terminates
//!   mutual TLS (`tls.mode: MUTUAL`), so the plugin sees the client certificate on the connection.
//! - **envoy-gateway**: an `EnvoyExtensionPolicy` (gateway.envoyproxy.io/v1alpha1) with the plugin from
//!   an OCI image (`type: Image`) or an HTTP(S) URL (`type: HTTP`), pinned by `sha256`, `failOpen:
//!   false`, the policy as `config`; and a `ClientTrafficPolicy` requiring a client certificate
//!   (`tls.clientValidation`) and dropping any `x-forwarded-client-cert` a client sends.
//! - **envoy**: the front proxy of envoy/front-proxy.yaml.in (mutual TLS, edge limits, the plugin),
//!   with the plugin from a local file or pinned remote code (`vm_config.code.remote` + `sha256`).
//!
//! In all three the plugin runs in the proxy that terminates the client's mutual TLS, so the policy's
//! `settings.client_certificate` is set to `connection`: the certificate is read from the TLS
//! connection itself, never from a header (RFC 8705 §3: the token is bound to the certificate the client
//! presented in the TLS handshake). The rendered file says so where it overrides the policy.
//!
//! SHA-256 pins: for an OCI image, Istio and Envoy Gateway compare `sha256` with the image's manifest
//! digest (scripts/release writes it to dist/fapi_guard.image.digest); for an HTTP(S) or file URL, with
//! the `.wasm` itself (dist/fapi_guard.wasm.sha256).

use crate::policy;
use anyhow::{bail, Context as _, Result};
use fapi_core::policy::Severity;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The front-proxy template (single source: envoy/front-proxy.yaml.in, also rendered by envoy/render).
const FRONT_PROXY_TEMPLATE: &str = include_str!("../../../envoy/front-proxy.yaml.in");

/// Which mesh to render for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Istio,
    EnvoyGateway,
    Envoy,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Istio => "istio",
            Target::EnvoyGateway => "envoy-gateway",
            Target::Envoy => "envoy",
        }
    }
}

/// Everything `fapictl deploy` takes (see main.rs for the help of each).
#[derive(Debug, Clone)]
pub struct DeployArgs {
    pub target: Target,
    pub policy: PathBuf,
    pub image: String,
    pub sha256: Option<String>,
    pub output: PathBuf,
    pub namespace: Option<String>,
    pub name: String,
    pub selector: Vec<String>,
    pub gateway: String,
    pub hosts: Vec<String>,
    pub tls_secret: String,
    pub client_ca: String,
    pub clusters: Vec<String>,
    pub pull_secret: Option<String>,
    pub cert_dir: String,
    pub listen_port: u16,
    pub admin_port: u16,
    pub upstream: String,
    pub auth_server: String,
    pub auth_server_sni: String,
}

/// Where the plugin's code comes from, as the reference parses.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Code {
    /// `oci://registry/repo:tag` (or `registry/repo:tag`): the reference without the scheme.
    Oci(String),
    /// `https://...` or `http://...`.
    Http(String),
    /// `file:///path`: the path.
    File(String),
}

fn parse_code(image: &str) -> Result<Code> {
    if let Some(rest) = image.strip_prefix("oci://") {
        if rest.is_empty() {
            bail!("--image {image}: no image reference after oci://");
        }
        return Ok(Code::Oci(rest.to_string()));
    }
    if image.starts_with("https://") || image.starts_with("http://") {
        return Ok(Code::Http(image.to_string()));
    }
    if let Some(path) = image.strip_prefix("file://") {
        if !path.starts_with('/') {
            bail!(
                "--image {image}: a file URL needs an absolute path (file:///etc/fapi-guard/fapi_guard.wasm)"
            );
        }
        return Ok(Code::File(path.to_string()));
    }
    if image.contains("://") {
        bail!("--image {image}: the scheme must be oci://, https://, http:// or file://");
    }
    if image.is_empty() || image.contains(char::is_whitespace) {
        bail!("--image {image:?}: not an image reference");
    }
    Ok(Code::Oci(image.to_string()))
}

fn check_sha256(hex: &str) -> Result<()> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        bail!("--sha256 {hex}: expected 64 lower-case hex digits (a SHA-256)");
    }
    Ok(())
}

/// `NAME=VALUE` pairs (`--selector`, `--cluster`).
fn pairs(list: &[String], flag: &str) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{flag} {p}: expected NAME=VALUE"),
        })
        .collect()
}

/// `host:port`.
fn host_port(value: &str, flag: &str) -> Result<(String, u16)> {
    let (host, port) = value
        .rsplit_once(':')
        .with_context(|| format!("{flag} {value}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("{flag} {value}: {port} is not a port"))?;
    if host.is_empty() {
        bail!("{flag} {value}: no host");
    }
    Ok((host.to_string(), port))
}

/// Renders the configuration and writes it (`-` for standard output). `Ok(false)` when the policy has
/// errors (they are printed as `FILE:LINE:COLUMN: error: ...`).
pub fn run(args: &DeployArgs, command_line: &str) -> Result<bool> {
    let loaded = policy::load(&args.policy);
    for d in &loaded.diags {
        eprintln!("{d}");
    }
    let Some(policy) = loaded.policy else {
        eprintln!(
            "{}: {} error(s): nothing written",
            args.policy.display(),
            loaded.error_count()
        );
        return Ok(false);
    };
    if loaded.diags.iter().any(|d| d.severity == Severity::Error) {
        return Ok(false);
    }
    let compiled: Value =
        serde_json::from_str(&policy.compiled_json()).context("the compiled policy is not JSON")?;
    let rendered = render(args, compiled, command_line)?;
    if args.output == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(rendered.as_bytes())?;
        out.flush()?;
    } else {
        crate::util::write_file(&args.output, rendered.as_bytes(), false, true)?;
        eprintln!(
            "{}: {} configuration written to {}",
            args.policy.display(),
            args.target.name(),
            args.output.display()
        );
    }
    Ok(true)
}

/// The compiled policy as the plugin in this mesh must see it: certificate from the connection, and
/// the Envoy cluster names of `--cluster` in place of the policy's own.
fn plugin_config(
    mut compiled: Value,
    clusters: &[(String, String)],
    target: Target,
) -> Result<(Value, Vec<String>)> {
    let mut notes = Vec::new();
    let settings = compiled
        .as_object_mut()
        .context("the compiled policy is not an object")?
        .entry("settings")
        .or_insert_with(|| json!({}));
    let settings = settings.as_object_mut().context("settings is not an object")?;
    if settings.get("client_certificate").and_then(Value::as_str) != Some("connection") {
        notes.push(format!(
            "settings.client_certificate: {} -> connection (the plugin runs where mutual TLS ends)",
            settings
                .get("client_certificate")
                .and_then(Value::as_str)
                .unwrap_or("(default)")
        ));
    }
    settings.insert("client_certificate".into(), json!("connection"));
    let mut used = Vec::new();
    // The front proxy has the policy's own clusters (fapi_as); a mesh names its clusters itself.
    let keep_quiet = target == Target::Envoy;
    rename_clusters(&mut compiled, "", clusters, &mut used, &mut notes, keep_quiet);
    for (from, _) in clusters {
        if !used.contains(from) {
            bail!("--cluster {from}=...: the policy names no cluster {from}");
        }
    }
    Ok((compiled, notes))
}

fn rename_clusters(
    value: &mut Value,
    path: &str,
    clusters: &[(String, String)],
    used: &mut Vec<String>,
    notes: &mut Vec<String>,
    keep_quiet: bool,
) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k == "cluster" {
                    if let Some(name) = v.as_str() {
                        if let Some((from, to)) = clusters.iter().find(|(f, _)| f == name) {
                            notes.push(format!("{here}: {from} -> {to}"));
                            used.push(from.clone());
                            *v = json!(to);
                        } else if !keep_quiet {
                            notes.push(format!(
                                "{here}: {name} (kept: it must be an Envoy cluster of this proxy; rename with --cluster {name}=CLUSTER)"
                            ));
                        }
                    }
                    continue;
                }
                rename_clusters(v, &here, clusters, used, notes, keep_quiet);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                rename_clusters(v, &format!("{path}[{i}]"), clusters, used, notes, keep_quiet);
            }
        }
        _ => {}
    }
}

fn render(args: &DeployArgs, compiled: Value, command_line: &str) -> Result<String> {
    let code = parse_code(&args.image)?;
    if let Some(h) = &args.sha256 {
        check_sha256(h)?;
    }
    let clusters = pairs(&args.clusters, "--cluster")?;
    let (config, notes) = plugin_config(compiled, &clusters, args.target)?;
    let local_envoy = args.target == Target::Envoy && matches!(code, Code::File(_));
    if local_envoy && args.sha256.is_some() {
        bail!(
            "--sha256 with --image {}: Envoy does not verify a local file; check it when installing it (sha256sum -c dist/fapi_guard.wasm.sha256)",
            args.image
        );
    }
    let mut out = String::new();
    let _ = writeln!(out, "# Rendered by: {command_line}");
    let _ = writeln!(
        out,
        "# Do not edit: change the policy (or the command's options) and render again. fapi-guard {}.",
        env!("CARGO_PKG_VERSION")
    );
    for n in &notes {
        let _ = writeln!(out, "# policy for this deployment: {n}");
    }
    if args.sha256.is_none() && !local_envoy {
        eprintln!(
            "fapictl: warning: no --sha256: the {} configuration does not pin the plugin's code",
            args.target.name()
        );
        let _ = writeln!(
            out,
            "# WARNING: rendered without --sha256: the plugin's code is not pinned."
        );
    }
    match args.target {
        Target::Istio => istio(args, &code, config, &mut out)?,
        Target::EnvoyGateway => envoy_gateway(args, &code, config, &mut out)?,
        Target::Envoy => envoy(args, &code, &config, &mut out)?,
    }
    Ok(out)
}

const TLS_SUITES: [&str; 4] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
];

fn istio(args: &DeployArgs, code: &Code, config: Value, out: &mut String) -> Result<()> {
    let namespace = args.namespace.clone().unwrap_or_else(|| "istio-system".into());
    let selector = if args.selector.is_empty() {
        vec![("istio".to_string(), "ingressgateway".to_string())]
    } else {
        pairs(&args.selector, "--selector")?
    };
    let labels: Map<String, Value> = selector.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let url = match code {
        Code::Oci(r) => format!("oci://{r}"),
        Code::Http(u) => u.clone(),
        Code::File(p) => format!("file://{p}"),
    };
    let mut spec = vec![("selector", json!({"matchLabels": labels})), ("url", json!(url))];
    if let Some(h) = &args.sha256 {
        spec.push(("sha256", json!(h)));
    }
    if matches!(code, Code::Oci(_)) {
        if let Some(secret) = &args.pull_secret {
            spec.push(("imagePullSecret", json!(secret)));
        }
    }
    spec.extend([
        ("imagePullPolicy", json!("IfNotPresent")),
        ("phase", json!("AUTHN")),
        ("failStrategy", json!("FAIL_CLOSE")),
        ("type", json!("HTTP")),
        ("pluginConfig", config),
    ]);
    out.push_str(
        "#\n# Istio: the fapi-guard plugin on the ingress gateway, which terminates the clients' mutual TLS.\n\
         # phase AUTHN puts it before Istio's own authentication filters; FAIL_CLOSE: if the plugin cannot\n\
         # be fetched, verified or started, requests are refused, never passed unchecked.\n",
    );
    emit_resource(
        out,
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        &args.name,
        &namespace,
        &spec,
    );
    out.push_str(
        "---\n# The gateway's HTTPS server: mutual TLS (a client certificate is required and verified against\n\
         # ca.crt of the secret; FAPI clients' self-signed certificates (RFC 8705 §2.2) must be in that\n\
         # bundle), TLS 1.2+ with the FAPI 2.0 Security Profile §5.2.1 suites. The secret holds tls.crt,\n\
         # tls.key and ca.crt. Bind your VirtualService to this Gateway.\n",
    );
    let hosts = if args.hosts.is_empty() {
        vec!["*".to_string()]
    } else {
        args.hosts.clone()
    };
    let gw_labels: Map<String, Value> = selector.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    emit_resource(
        out,
        "networking.istio.io/v1",
        "Gateway",
        &args.name,
        &namespace,
        &[
            ("selector", Value::Object(gw_labels)),
            (
                "servers",
                json!([{
                    "port": {"number": 443, "name": "https-fapi", "protocol": "HTTPS"},
                    "hosts": hosts,
                    "tls": {
                        "mode": "MUTUAL",
                        "credentialName": args.tls_secret,
                        "minProtocolVersion": "TLSV1_2",
                        "cipherSuites": TLS_SUITES,
                    }
                }]),
            ),
        ],
    );
    Ok(())
}

fn envoy_gateway(args: &DeployArgs, code: &Code, config: Value, out: &mut String) -> Result<()> {
    let namespace = args.namespace.clone().unwrap_or_else(|| "default".into());
    let target = json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": args.gateway}]);
    let code_source = match code {
        Code::Oci(r) => {
            let mut image = Map::new();
            image.insert("url".into(), json!(r));
            if let Some(h) = &args.sha256 {
                image.insert("sha256".into(), json!(h));
            }
            if let Some(secret) = &args.pull_secret {
                image.insert(
                    "pullSecretRef".into(),
                    json!({"group": "", "kind": "Secret", "name": secret}),
                );
            }
            json!({"type": "Image", "image": image})
        }
        Code::Http(u) => {
            let mut http = Map::new();
            http.insert("url".into(), json!(u));
            if let Some(h) = &args.sha256 {
                http.insert("sha256".into(), json!(h));
            }
            json!({"type": "HTTP", "http": http})
        }
        Code::File(_) => bail!(
            "--image {}: Envoy Gateway loads wasm from an OCI image (oci://...) or an HTTP(S) URL, not a file",
            args.image
        ),
    };
    out.push_str(
        "#\n# Envoy Gateway: the fapi-guard plugin on every route of the Gateway. failOpen: false: if the plugin\n\
         # cannot be fetched, verified or started, requests are refused, never passed unchecked.\n",
    );
    emit_resource(
        out,
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyExtensionPolicy",
        &args.name,
        &namespace,
        &[
            ("targetRefs", target.clone()),
            (
                "wasm",
                json!([{
                    "name": args.name,
                    "code": code_source,
                    "config": config,
                    "failOpen": false
                }]),
            ),
        ],
    );
    out.push_str(
        "---\n# The Gateway's client side: a client certificate is required and verified against the CA bundle\n\
         # (ca.crt of the ConfigMap; FAPI clients' self-signed certificates (RFC 8705 §2.2) must be in it),\n\
         # TLS 1.2+ with the FAPI 2.0 Security Profile §5.2.1 suites, and an x-forwarded-client-cert sent by a\n\
         # client is removed (Sanitize): the plugin reads the certificate from the TLS connection.\n",
    );
    emit_resource(
        out,
        "gateway.envoyproxy.io/v1alpha1",
        "ClientTrafficPolicy",
        &args.name,
        &namespace,
        &[
            ("targetRefs", target),
            (
                "tls",
                json!({
                    "minVersion": "1.2",
                    "ciphers": TLS_SUITES,
                    "clientValidation": {
                        "optional": false,
                        "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": args.client_ca}]
                    }
                }),
            ),
            ("headers", json!({"xForwardedClientCert": {"mode": "Sanitize"}})),
        ],
    );
    Ok(())
}

/// A resource: apiVersion, kind, metadata, spec in that order, the spec's keys in the order given.
fn emit_resource(out: &mut String, api: &str, kind: &str, name: &str, ns: &str, spec: &[(&str, Value)]) {
    let _ = writeln!(out, "apiVersion: {api}");
    let _ = writeln!(out, "kind: {kind}");
    out.push_str("metadata:\n");
    let _ = writeln!(out, "  name: {}", scalar(&json!(name)));
    let _ = writeln!(out, "  namespace: {}", scalar(&json!(ns)));
    out.push_str("spec:\n");
    for (k, v) in spec {
        emit_entry(out, 1, k, v);
    }
}

fn envoy(args: &DeployArgs, code: &Code, config: &Value, out: &mut String) -> Result<()> {
    let (up_host, up_port) = host_port(&args.upstream, "--upstream")?;
    let (as_host, as_port) = host_port(&args.auth_server, "--auth-server")?;
    let policy_json = serde_json::to_string(&config.to_string()).context("policy JSON")?;
    let mut values: Vec<(&str, String)> = vec![
        ("ADMIN_PORT", args.admin_port.to_string()),
        ("LISTEN_ADDRESS", "0.0.0.0".into()),
        ("LISTEN_PORT", args.listen_port.to_string()),
        ("CERT_DIR", args.cert_dir.clone()),
        ("UPSTREAM_HOST", up_host),
        ("UPSTREAM_PORT", up_port.to_string()),
        ("AS_HOST", as_host),
        ("AS_PORT", as_port.to_string()),
        ("AS_SNI", args.auth_server_sni.clone()),
        ("POLICY_JSON", policy_json),
        // The edge limits: the defaults of envoy/render (EDGE_DEFAULTS).
        ("MAX_CONNECTIONS", "10000".into()),
        ("HANDSHAKE_TIMEOUT", "10s".into()),
        ("REQUEST_HEADERS_TIMEOUT", "10s".into()),
        ("REQUEST_TIMEOUT", "30s".into()),
        ("STREAM_IDLE_TIMEOUT", "30s".into()),
        ("IDLE_TIMEOUT", "60s".into()),
        ("MAX_REQUEST_BYTES", "1048576".into()),
        ("MAX_READ_BODY_BYTES", "4096".into()),
    ];
    let local_line = "                    local: {filename: ${WASM_PATH}}\n";
    let mut template = FRONT_PROXY_TEMPLATE.to_string();
    if !template.contains(local_line) {
        bail!("envoy/front-proxy.yaml.in changed: no `local: {{filename: ${{WASM_PATH}}}}` line");
    }
    match code {
        Code::File(path) => values.push(("WASM_PATH", path.clone())),
        Code::Http(url) => {
            let Some(sha) = &args.sha256 else {
                bail!("--image {url}: remote code needs --sha256 (Envoy refuses remote code it cannot verify)");
            };
            let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
            let authority = rest.split('/').next().unwrap_or_default();
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().ok().with_context(|| format!("--image {url}: bad port"))?),
                None => (authority.to_string(), if scheme == "https" { 443 } else { 80 }),
            };
            if host.is_empty() {
                bail!("--image {url}: no host");
            }
            let remote = [
                "# Fetched at start and verified against sha256: on a mismatch the plugin does not start",
                "# and requests are refused; while the server is down the fetch is retried.",
                "remote:",
                &format!("  http_uri: {{uri: {}, cluster: fapi_guard_code, timeout: 10s}}", scalar(&json!(url))),
                &format!("  sha256: {sha}"),
                "  retry_policy: {num_retries: 10}",
            ];
            let block: String = remote.iter().map(|l| format!("{:20}{l}\n", "")).collect();
            template = template.replace(local_line, &block);
            let tls = if scheme == "https" {
                format!(
                    "    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \
                     \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        \
                     sni: {host}\n        common_tls_context:\n          validation_context:\n            \
                     trusted_ca: {{filename: /etc/ssl/certs/ca-certificates.crt}}\n"
                )
            } else {
                String::new()
            };
            template.push_str(&format!(
                "  # Where the plugin's code is fetched from (vm_config.code.remote).\n  - name: fapi_guard_code\n    \
                 connect_timeout: 5s\n    type: STRICT_DNS\n    load_assignment:\n      cluster_name: fapi_guard_code\n      \
                 endpoints:\n      - lb_endpoints:\n        - endpoint: {{address: {{socket_address: {{address: {host}, port_value: {port}}}}}}}\n{tls}"
            ));
        }
        Code::Oci(_) => bail!(
            "--image {}: plain Envoy cannot pull OCI images; give file:///path/fapi_guard.wasm or an https:// URL with --sha256",
            args.image
        ),
    }
    // Substitute ${NAME}; every placeholder must be known (as envoy/render does).
    let mut rendered = String::with_capacity(template.len() + 4096);
    let mut rest = template.as_str();
    while let Some(start) = rest.find("${") {
        rendered.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .context("envoy/front-proxy.yaml.in: an unterminated ${")?;
        let name = &after[..end];
        let Some((_, v)) = values.iter().find(|(n, _)| *n == name) else {
            bail!("envoy/front-proxy.yaml.in: no value for ${{{name}}}");
        };
        rendered.push_str(v);
        rest = &after[end + 1..];
    }
    rendered.push_str(rest);
    out.push_str("#\n# Plain Envoy: the front proxy of envoy/front-proxy.yaml.in (see envoy/README.md, docs/deploy.md).\n");
    out.push_str(&rendered);
    Ok(())
}

// ---- a small YAML writer: block style, strings plain when unambiguous, JSON-quoted otherwise ------

/// A YAML scalar for a JSON scalar. Strings stay plain only when no YAML reading could take them for
/// anything else; otherwise they are written as JSON strings (valid YAML double-quoted scalars).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) if plain_ok(s) => s.clone(),
        other => other.to_string(),
    }
}

fn plain_ok(s: &str) -> bool {
    const WORDS: [&str; 11] = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", "",
    ];
    let first = s.chars().next().unwrap_or(' ');
    !WORDS.contains(&s.to_ascii_lowercase().as_str())
        && first.is_ascii_alphabetic()
        && !s.ends_with(':')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./@:+-".contains(c))
}

fn emit_entry(out: &mut String, depth: usize, key: &str, v: &Value) {
    let pad = "  ".repeat(depth);
    let key = scalar(&json!(key));
    match v {
        Value::Object(m) if !m.is_empty() => {
            let _ = writeln!(out, "{pad}{key}:");
            for (k, v) in m {
                emit_entry(out, depth + 1, k, v);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let _ = writeln!(out, "{pad}{key}:");
            for item in a {
                emit_item(out, depth, item);
            }
        }
        Value::Object(_) => {
            let _ = writeln!(out, "{pad}{key}: {{}}");
        }
        Value::Array(_) => {
            let _ = writeln!(out, "{pad}{key}: []");
        }
        scalar_value => {
            let _ = writeln!(out, "{pad}{key}: {}", scalar(scalar_value));
        }
    }
}

/// A sequence item at `depth` (the dash aligned with the parent key, as kubectl writes it).
fn emit_item(out: &mut String, depth: usize, v: &Value) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut first = true;
            for (k, v) in m {
                if first {
                    // "- key: ..." then the rest of the map one level in.
                    let mut entry = String::new();
                    emit_entry(&mut entry, depth + 1, k, v);
                    let inner = "  ".repeat(depth + 1);
                    let _ = write!(out, "{pad}- {}", &entry[inner.len()..]);
                    first = false;
                } else {
                    emit_entry(out, depth + 1, k, v);
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let _ = writeln!(out, "{pad}-");
            for item in a {
                emit_item(out, depth + 1, item);
            }
        }
        Value::Object(_) => {
            let _ = writeln!(out, "{pad}- {{}}");
        }
        Value::Array(_) => {
            let _ = writeln!(out, "{pad}- []");
        }
        s => {
            let _ = writeln!(out, "{pad}- {}", scalar(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_yaml_could_misread_are_quoted() {
        for s in [
            "true",
            "No",
            "1.0",
            "0600",
            "2024-01-01",
            "",
            "a b",
            "-x",
            "x:",
            "#c",
            "*a",
            "{x}",
        ] {
            assert_eq!(scalar(&json!(s)), json!(s).to_string(), "{s}");
        }
        for s in [
            "FAIL_CLOSE",
            "oci://r.example/x:1",
            "x-forwarded-client-cert",
            "at+jwt",
        ] {
            assert_eq!(scalar(&json!(s)), s);
        }
    }

    #[test]
    fn references_parse() -> Result<()> {
        assert_eq!(parse_code("oci://r/x:1")?, Code::Oci("r/x:1".into()));
        assert_eq!(parse_code("r/x:1")?, Code::Oci("r/x:1".into()));
        assert_eq!(
            parse_code("https://h/x.wasm")?,
            Code::Http("https://h/x.wasm".into())
        );
        assert_eq!(parse_code("file:///a/b.wasm")?, Code::File("/a/b.wasm".into()));
        assert!(parse_code("file://rel.wasm").is_err());
        assert!(parse_code("ftp://h/x").is_err());
        assert!(check_sha256(&"a".repeat(64)).is_ok());
        assert!(check_sha256(&"A".repeat(64)).is_err());
        assert!(check_sha256("abc").is_err());
        Ok(())
    }
}
