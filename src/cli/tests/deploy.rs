//! `fapictl deploy`: the checked-in examples under deploy/ are exactly what the command renders (each
//! file's first line is the command that made it; it is run again and compared byte for byte), and
//! every rendered resource has the shape its API reference defines: required fields, types and enum
//! values of Istio's `WasmPlugin` (extensions.istio.io/v1alpha1) and `Gateway` (networking.istio.io/v1)
//! and Envoy Gateway's `EnvoyExtensionPolicy` and `ClientTrafficPolicy` (gateway.envoyproxy.io/v1alpha1),
//! written below as a small schema. Unknown fields are errors, as in the CRDs' structural schemas.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::policy::Policy;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fapictl");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every rendered example: deploy/<mesh>/*.yaml.
fn examples() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for mesh in ["istio", "envoy-gateway", "envoy"] {
        let dir = root().join("deploy").join(mesh);
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("dir entry").path();
            if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 4, "expected the deploy/ examples, found {files:?}");
    files
}

/// The words of a shell command line as fapictl writes it (plain words, or '...' with '\'' inside).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            ' ' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn render_again(file: &Path) -> (Vec<String>, Vec<u8>) {
    let text = std::fs::read_to_string(file).expect("example");
    let first = text.lines().next().unwrap_or_default();
    let command = first
        .strip_prefix("# Rendered by: ")
        .unwrap_or_else(|| panic!("{}: first line is not `# Rendered by: ...`", file.display()));
    let words = shell_words(command);
    assert_eq!(words.first().map(String::as_str), Some("fapictl"), "{command}");
    assert_eq!(words.get(1).map(String::as_str), Some("deploy"), "{command}");
    let out = Command::new(BIN)
        .args(&words[1..])
        .current_dir(root())
        .output()
        .expect("run fapictl");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (words, out.stdout)
}

#[test]
fn checked_in_examples_are_what_fapictl_deploy_renders() {
    let mut stale = Vec::new();
    for file in examples() {
        let (_, rendered) = render_again(&file);
        let checked_in = std::fs::read(&file).expect("example");
        if rendered != checked_in {
            stale.push(file.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date (run deploy/regenerate and commit): {stale:?}"
    );
}

// ---- the schema check -----------------------------------------------------------------------------

/// A schema, as the API references define the fields used here.
#[derive(Clone)]
enum S {
    Str,
    /// A string matching a predicate (hex digests, URLs), with what it must be.
    StrWhere(fn(&str) -> bool, &'static str),
    Enum(&'static [&'static str]),
    /// Exactly this string (apiVersion, kind).
    Const(&'static str),
    Int,
    Bool,
    /// Any JSON object (protobuf Struct / apiextensions JSON).
    AnyObject,
    /// A string-to-string map (labels).
    Labels,
    List(Box<S>),
    /// Fields: (name, required, schema); any other field is an error.
    Obj(Vec<(&'static str, bool, S)>),
}

fn obj(fields: Vec<(&'static str, bool, S)>) -> S {
    S::Obj(fields)
}

fn list(s: S) -> S {
    S::List(Box::new(s))
}

fn hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn check(v: &Value, s: &S, path: &str, errors: &mut Vec<String>) {
    let mut bad = |what: &str| errors.push(format!("{path}: {what}, got {v}"));
    match s {
        S::Str => {
            if !v.is_string() {
                bad("expected a string");
            }
        }
        S::StrWhere(ok, what) => match v.as_str() {
            Some(x) if ok(x) => {}
            _ => bad(&format!("expected {what}")),
        },
        S::Enum(values) => match v.as_str() {
            Some(x) if values.contains(&x) => {}
            _ => bad(&format!("expected one of {values:?}")),
        },
        S::Const(want) => {
            if v != *want {
                bad(&format!("expected {want}"));
            }
        }
        S::Int => {
            if !v.is_i64() && !v.is_u64() {
                bad("expected an integer");
            }
        }
        S::Bool => {
            if !v.is_boolean() {
                bad("expected a boolean");
            }
        }
        S::AnyObject => {
            if !v.is_object() {
                bad("expected an object");
            }
        }
        S::Labels => match v.as_object() {
            Some(m) if m.values().all(Value::is_string) => {}
            _ => bad("expected a map of strings"),
        },
        S::List(item) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check(x, item, &format!("{path}[{i}]"), errors);
                }
            }
            None => bad("expected a list"),
        },
        S::Obj(fields) => {
            let Some(m) = v.as_object() else {
                bad("expected an object");
                return;
            };
            for (name, required, schema) in fields {
                match m.get(*name) {
                    Some(x) => check(x, schema, &format!("{path}.{name}"), errors),
                    None if *required => errors.push(format!("{path}.{name}: required")),
                    None => {}
                }
            }
            for k in m.keys() {
                if !fields.iter().any(|(n, _, _)| n == k) {
                    errors.push(format!("{path}.{k}: unknown field"));
                }
            }
        }
    }
}

fn metadata() -> S {
    obj(vec![("name", true, S::Str), ("namespace", true, S::Str)])
}

fn resource(api: &'static str, kind: &'static str, spec: S) -> S {
    obj(vec![
        ("apiVersion", true, S::Const(api)),
        ("kind", true, S::Const(kind)),
        ("metadata", true, metadata()),
        ("spec", true, spec),
    ])
}

/// istio.io/latest/docs/reference/config/proxy_extensions/wasm-plugin/
fn wasm_plugin() -> S {
    resource(
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        obj(vec![
            ("selector", false, obj(vec![("matchLabels", true, S::Labels)])),
            (
                "url",
                true,
                S::StrWhere(
                    |u| {
                        ["oci://", "file://", "http://", "https://"]
                            .iter()
                            .any(|p| u.starts_with(p))
                    },
                    "an oci://, file://, http:// or https:// URL",
                ),
            ),
            ("sha256", false, S::StrWhere(hex64, "64 hex digits")),
            (
                "imagePullPolicy",
                false,
                S::Enum(&["UNSPECIFIED_POLICY", "IfNotPresent", "Always"]),
            ),
            ("imagePullSecret", false, S::Str),
            ("pluginConfig", false, S::AnyObject),
            ("pluginName", false, S::Str),
            (
                "phase",
                false,
                S::Enum(&["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"]),
            ),
            ("priority", false, S::Int),
            (
                "failStrategy",
                false,
                S::Enum(&["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"]),
            ),
            (
                "type",
                false,
                S::Enum(&["UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"]),
            ),
        ]),
    )
}

/// istio.io/latest/docs/reference/config/networking/gateway/
fn istio_gateway() -> S {
    let tls = obj(vec![
        ("httpsRedirect", false, S::Bool),
        (
            "mode",
            false,
            S::Enum(&[
                "PASSTHROUGH",
                "SIMPLE",
                "MUTUAL",
                "AUTO_PASSTHROUGH",
                "ISTIO_MUTUAL",
                "OPTIONAL_MUTUAL",
            ]),
        ),
        ("serverCertificate", false, S::Str),
        ("privateKey", false, S::Str),
        ("caCertificates", false, S::Str),
        ("credentialName", false, S::Str),
        ("subjectAltNames", false, list(S::Str)),
        (
            "minProtocolVersion",
            false,
            S::Enum(&["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]),
        ),
        (
            "maxProtocolVersion",
            false,
            S::Enum(&["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]),
        ),
        ("cipherSuites", false, list(S::Str)),
    ]);
    let port = obj(vec![
        ("number", true, S::Int),
        (
            "protocol",
            true,
            S::Enum(&[
                "HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS",
            ]),
        ),
        ("name", true, S::Str),
        ("targetPort", false, S::Int),
    ]);
    resource(
        "networking.istio.io/v1",
        "Gateway",
        obj(vec![
            ("selector", false, S::Labels),
            (
                "servers",
                true,
                list(obj(vec![
                    ("port", true, port),
                    ("bind", false, S::Str),
                    ("hosts", true, list(S::Str)),
                    ("tls", false, tls),
                    ("defaultEndpoint", false, S::Str),
                    ("name", false, S::Str),
                ])),
            ),
        ]),
    )
}

/// Gateway API PolicyTargetReferences (gateway.envoyproxy.io/v1alpha1 `targetRefs`).
fn target_refs() -> S {
    list(obj(vec![
        ("group", true, S::Enum(&["gateway.networking.k8s.io"])),
        (
            "kind",
            true,
            S::Enum(&[
                "Gateway",
                "HTTPRoute",
                "GRPCRoute",
                "TCPRoute",
                "UDPRoute",
                "TLSRoute",
            ]),
        ),
        ("name", true, S::Str),
        ("sectionName", false, S::Str),
    ]))
}

fn secret_ref() -> S {
    obj(vec![
        ("group", false, S::Str),
        ("kind", false, S::Enum(&["Secret"])),
        ("name", true, S::Str),
        ("namespace", false, S::Str),
    ])
}

/// gateway.envoyproxy.io/docs/api/extension_types/#envoyextensionpolicy (Wasm, WasmCodeSource).
fn envoy_extension_policy() -> S {
    let code = obj(vec![
        ("type", true, S::Enum(&["HTTP", "Image"])),
        (
            "http",
            false,
            obj(vec![
                (
                    "url",
                    true,
                    S::StrWhere(
                        |u| u.starts_with("https://") || u.starts_with("http://"),
                        "an http(s) URL",
                    ),
                ),
                ("sha256", false, S::StrWhere(hex64, "64 hex digits")),
            ]),
        ),
        (
            "image",
            false,
            obj(vec![
                (
                    "url",
                    true,
                    S::StrWhere(|u| !u.contains("://"), "registry/image:tag without a scheme"),
                ),
                ("sha256", false, S::StrWhere(hex64, "64 hex digits")),
                ("pullSecretRef", false, secret_ref()),
            ]),
        ),
        ("pullPolicy", false, S::Enum(&["IfNotPresent", "Always"])),
    ]);
    resource(
        "gateway.envoyproxy.io/v1alpha1",
        "EnvoyExtensionPolicy",
        obj(vec![
            ("targetRefs", true, target_refs()),
            (
                "wasm",
                false,
                list(obj(vec![
                    ("name", false, S::Str),
                    ("rootID", false, S::Str),
                    ("code", true, code),
                    ("config", false, S::AnyObject),
                    ("failOpen", false, S::Bool),
                ])),
            ),
        ]),
    )
}

/// gateway.envoyproxy.io/docs/api/extension_types/#clienttrafficpolicy (ClientTLSSettings, HeaderSettings).
fn client_traffic_policy() -> S {
    let versions: &[&str] = &["Auto", "1.0", "1.1", "1.2", "1.3"];
    resource(
        "gateway.envoyproxy.io/v1alpha1",
        "ClientTrafficPolicy",
        obj(vec![
            ("targetRefs", true, target_refs()),
            (
                "tls",
                false,
                obj(vec![
                    ("minVersion", false, S::Enum(versions)),
                    ("maxVersion", false, S::Enum(versions)),
                    ("ciphers", false, list(S::Str)),
                    (
                        "clientValidation",
                        false,
                        obj(vec![
                            ("optional", false, S::Bool),
                            (
                                "caCertificateRefs",
                                false,
                                list(obj(vec![
                                    ("group", false, S::Str),
                                    (
                                        "kind",
                                        false,
                                        S::Enum(&["ConfigMap", "Secret", "ClusterTrustBundle"]),
                                    ),
                                    ("name", true, S::Str),
                                    ("namespace", false, S::Str),
                                ])),
                            ),
                        ]),
                    ),
                ]),
            ),
            (
                "headers",
                false,
                obj(vec![(
                    "xForwardedClientCert",
                    false,
                    obj(vec![
                        (
                            "mode",
                            false,
                            S::Enum(&[
                                "Sanitize",
                                "ForwardOnly",
                                "AppendForward",
                                "SanitizeSet",
                                "AlwaysForwardOnly",
                            ]),
                        ),
                        (
                            "certDetailsToAdd",
                            false,
                            list(S::Enum(&["Subject", "Cert", "Chain", "DNS", "URI"])),
                        ),
                    ]),
                )]),
            ),
        ]),
    )
}

/// The YAML documents of a file (`---` separated), as JSON values.
fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).expect("example");
    text.split("\n---\n")
        .map(|doc| {
            let (v, _) = fapi_core::yaml::load(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            v
        })
        .collect()
}

/// Checks one resource against its kind's schema and fapi-guard's own requirements on it; returns the
/// problems.
fn check_resource(doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let schema = match kind {
        "WasmPlugin" => wasm_plugin(),
        "Gateway" => istio_gateway(),
        "EnvoyExtensionPolicy" => envoy_extension_policy(),
        "ClientTrafficPolicy" => client_traffic_policy(),
        other => return vec![format!("unexpected kind {other:?}")],
    };
    check(doc, &schema, kind, &mut errors);
    let spec = &doc["spec"];
    let policy_ok = |config: &Value, errors: &mut Vec<String>| match Policy::from_value(config.clone()) {
        Ok((p, _)) => {
            if serde_json::to_value(&p.doc.settings.client_certificate).ok()
                != Some(Value::from("connection"))
            {
                errors.push(format!(
                    "{kind}: the plugin must read the certificate from the connection"
                ));
            }
        }
        Err(problems) => errors.push(format!("{kind}: embedded policy does not load: {problems:?}")),
    };
    match kind {
        "WasmPlugin" => {
            // Not only valid: safe. Before Istio's authentication, fail closed, pinned.
            for (field, want) in [
                ("phase", "AUTHN"),
                ("failStrategy", "FAIL_CLOSE"),
                ("type", "HTTP"),
            ] {
                if spec[field] != want {
                    errors.push(format!("WasmPlugin.spec.{field} must be {want}"));
                }
            }
            if !spec["sha256"].is_string() {
                errors.push("WasmPlugin.spec.sha256 missing: the image is not pinned".into());
            }
            policy_ok(&spec["pluginConfig"], &mut errors);
        }
        "Gateway" => {
            for (i, server) in spec["servers"].as_array().into_iter().flatten().enumerate() {
                if server["tls"]["mode"] != "MUTUAL" {
                    errors.push(format!("Gateway.spec.servers[{i}].tls.mode must be MUTUAL"));
                }
            }
        }
        "EnvoyExtensionPolicy" => {
            for (i, w) in spec["wasm"].as_array().into_iter().flatten().enumerate() {
                let code = &w["code"];
                // The union rule of WasmCodeSource: type names the one source that is set.
                let (own, other) = if code["type"] == "HTTP" {
                    ("http", "image")
                } else {
                    ("image", "http")
                };
                if !code[own].is_object() || !code[other].is_null() {
                    errors.push(format!(
                        "EnvoyExtensionPolicy.spec.wasm[{i}].code: type {} needs {own} and no {other}",
                        code["type"]
                    ));
                }
                if !code[own]["sha256"].is_string() {
                    errors.push(format!(
                        "EnvoyExtensionPolicy.spec.wasm[{i}].code.{own}.sha256 missing: not pinned"
                    ));
                }
                if w["failOpen"] != false {
                    errors.push(format!(
                        "EnvoyExtensionPolicy.spec.wasm[{i}].failOpen must be false"
                    ));
                }
                policy_ok(&w["config"], &mut errors);
            }
        }
        "ClientTrafficPolicy" => {
            if spec["tls"]["clientValidation"]["optional"] != false {
                errors.push("ClientTrafficPolicy: client certificates must be required".into());
            }
            let mode = &spec["headers"]["xForwardedClientCert"]["mode"];
            if mode != "Sanitize" && mode != "SanitizeSet" {
                errors.push(format!(
                    "ClientTrafficPolicy: XFCC mode {mode} passes a client's header on"
                ));
            }
        }
        _ => {}
    }
    errors
}

#[test]
fn rendered_resources_have_the_shape_the_api_references_define() {
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    for file in examples() {
        let name = file.display().to_string();
        for doc in documents(&file) {
            let kind = doc["kind"].as_str().unwrap_or("(envoy bootstrap)").to_string();
            if file.parent().is_some_and(|p| p.ends_with("envoy")) {
                // The plain Envoy file is Envoy's bootstrap: Envoy itself validates it (envoy/validate).
                assert!(doc["static_resources"]["listeners"].is_array(), "{name}");
                continue;
            }
            errors.extend(check_resource(&doc).into_iter().map(|e| format!("{name}: {e}")));
            seen.push(kind);
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    for kind in [
        "WasmPlugin",
        "Gateway",
        "EnvoyExtensionPolicy",
        "ClientTrafficPolicy",
    ] {
        assert!(seen.iter().any(|k| k == kind), "no {kind} rendered: {seen:?}");
    }
}

#[test]
fn the_schema_check_catches_what_it_claims_to() {
    let file = root().join("deploy/istio/fapi-guard.yaml");
    let good = documents(&file).remove(0);
    assert!(check_resource(&good).is_empty(), "{:?}", check_resource(&good));
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut d = good.clone();
        f(&mut d);
        check_resource(&d)
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "WasmPlugin.spec.failStrategy must be FAIL_CLOSE",
            mutate(&|d| d["spec"]["failStrategy"] = "FAIL_OPEN".into()),
        ),
        (
            "WasmPlugin.spec.failStrategy: expected one of",
            mutate(&|d| d["spec"]["failStrategy"] = "CLOSE".into()),
        ),
        (
            "WasmPlugin.spec.phase: expected one of",
            mutate(&|d| d["spec"]["phase"] = "AUTHENTICATION".into()),
        ),
        (
            "WasmPlugin.spec.sha256: expected 64 hex digits",
            mutate(&|d| d["spec"]["sha256"] = "abc".into()),
        ),
        (
            "WasmPlugin.spec.url: required",
            mutate(&|d| {
                d["spec"].as_object_mut().unwrap().remove("url");
            }),
        ),
        (
            "WasmPlugin.spec.failstrategy: unknown field",
            mutate(&|d| d["spec"]["failstrategy"] = "FAIL_CLOSE".into()),
        ),
        (
            "WasmPlugin.spec.priority: expected an integer",
            mutate(&|d| d["spec"]["priority"] = "1".into()),
        ),
        (
            "WasmPlugin.apiVersion: expected extensions.istio.io/v1alpha1",
            mutate(&|d| d["apiVersion"] = "extensions.istio.io/v1beta1".into()),
        ),
        (
            "must read the certificate from the connection",
            mutate(&|d| {
                d["spec"]["pluginConfig"]["settings"]["client_certificate"] = "x-forwarded-client-cert".into()
            }),
        ),
    ];
    for (want, errors) in cases {
        assert!(errors.iter().any(|e| e.contains(want)), "{want}: {errors:?}");
    }
}

#[test]
fn deploy_errors_name_the_file_and_line() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = Command::new(BIN)
        .args([
            "deploy",
            "istio",
            "bad-template.yaml",
            "--image",
            "oci://r.example/x:1",
        ])
        .current_dir(&fixtures)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "something was written");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().any(|l| l.starts_with("bad-template.yaml:")
            && l.contains(": error: ")
            && l.split(':').nth(1).is_some_and(|n| n.parse::<u32>().is_ok())),
        "{err}"
    );
    // Option errors say what is wrong with which option.
    let policy = root().join("policies/open-banking-jp.yaml");
    for (args, want) in [
        (
            vec!["envoy", "--image", "oci://r/x:1"],
            "plain Envoy cannot pull OCI images",
        ),
        (
            vec!["envoy", "--image", "https://h/x.wasm"],
            "remote code needs --sha256",
        ),
        (
            vec!["istio", "--image", "oci://r/x:1", "--sha256", "ABC"],
            "--sha256 ABC",
        ),
        (vec!["envoy-gateway", "--image", "file:///x.wasm"], "not a file"),
        (
            vec!["istio", "--image", "oci://r/x:1", "--cluster", "nope=x"],
            "names no cluster nope",
        ),
    ] {
        let mut all = vec!["deploy", args[0], policy.to_str().unwrap()];
        all.extend(&args[1..]);
        let out = Command::new(BIN).args(&all).output().expect("run");
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{all:?}: {err}");
    }
}
