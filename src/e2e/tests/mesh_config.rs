//! The plugin configured the way Istio and Envoy Gateway configure it: `WasmPlugin.pluginConfig` /
//! `EnvoyExtensionPolicy` wasm `config` is a `google.protobuf.Struct`, which the mesh's agent hands to
//! Envoy as a StringValue of JSON. Every number in a Struct is a double, so the JSON may say `5.0`
//! where `fapictl policy compile` says `5`; keys come in the agent's order; there are no comments.
//! This test feeds exactly that shape to the real plugin in the real Envoy and checks the decisions it
//! makes, and that a fraction where a whole number is meant (`5.5`) stops the plugin, naming the field.
//!
//! Needs the release plugin (`target/wasm32-wasip1/release/fapi_filter.wasm`) and Envoy (`.venv`), as
//! tests/envoy_plugin.rs does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::alg::Algorithm;
use fapi_core::policy::Policy;
use fapi_core::sign::{random_id, SigningKey};
use fapi_e2e::client::{HttpsClient, Req, TlsVersion};
use fapi_e2e::envoy::{plugin_wasm, tail, Envoy, EnvoyConfig, StartError};
use fapi_e2e::pki::TestPki;
use fapi_e2e::server::{echo, HttpServer};
use fapi_e2e::stub::{IssuerStub, JWKS_PATH};
use fapi_e2e::util::{free_port, unix_now, ScratchDir};
use serde_json::{json, Value};
use std::time::Duration;

const ISS: &str = "https://as.mesh.example";
const AUD: &str = "https://api.mesh.example";
const READY: Duration = Duration::from_secs(30);

/// A policy that uses every kind of whole number the plugin reads: counts, seconds, optional limits.
fn policy(jwks_port: u16) -> Value {
    json!({
        "version": 1,
        "name": "mesh-delivered",
        "settings": {
            "token_cache_size": 1000,
            "replay_store_size": 5000,
            "dpop_nonce_lifetime": 120
        },
        "issuers": [{
            "issuer": ISS,
            "audiences": [AUD],
            "max_lifetime": 3600,
            "leeway_past": 30,
            "jwks": {"uri": format!("http://127.0.0.1:{jwks_port}{JWKS_PATH}"), "cluster": "jwks",
                     "refresh": 300, "max_stale": 3600}
        }],
        "defaults": {"dpop": {"iat_window": 60, "iat_future": 10}},
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "anonymous": true},
            {"name": "accounts", "match": {"methods": ["GET"], "prefix": "/accounts"},
             "require": {"scopes": ["accounts"], "sender_constraint": "mtls"}},
            {"name": "transfers", "match": {"methods": ["POST"], "path": "/transfers"},
             "require": {"scopes": ["payments"], "sender_constraint": "mtls", "max_auth_age": 300}}
        ]
    })
}

/// JSON the way a Struct-to-JSON agent may write it: every number a float (`5.0`), object keys in
/// reverse order, no whitespace.
fn as_mesh_writes_it(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 => out.push_str(&format!("{f:.1}")),
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                as_mesh_writes_it(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                as_mesh_writes_it(v, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn mesh_json(value: &Value) -> String {
    let mut out = String::new();
    as_mesh_writes_it(value, &mut out);
    out
}

fn config(pki: &TestPki, upstream: u16, jwks: u16, plugin_config: String) -> EnvoyConfig {
    let wasm = plugin_wasm();
    assert!(
        wasm.exists(),
        "{} missing: build the plugin (scripts/test-all)",
        wasm.display()
    );
    EnvoyConfig {
        listener_port: free_port().expect("port"),
        admin_port: free_port().expect("port"),
        upstream_port: upstream,
        clusters: vec![("jwks".into(), jwks)],
        wasm,
        plugin_config,
        server_cert: pki.server.cert_pem.clone(),
        server_key: pki.server.key_pem.clone(),
        client_ca: pki.ca_pem.clone(),
        concurrency: 1,
        forward_client_cert_details: "SANITIZE".into(),
        native_module: None,
    }
}

#[test]
fn policy_as_a_mesh_delivers_it_decides_as_the_compiled_one() {
    let dir = ScratchDir::new("meshcfg").expect("scratch dir");
    let pki = TestPki::generate(dir.path(), &["client-a"]).expect("test PKI");
    let issuer = SigningKey::generate(Algorithm::ES256, Some("k1".into())).expect("key");
    let jwks = IssuerStub::start(json!({"keys": [issuer.public_jwk().clone()]})).expect("JWKS");
    let upstream = HttpServer::start(echo()).expect("upstream");
    let plain = policy(jwks.port());
    let delivered = mesh_json(&plain);
    // The shape is the mesh's: floats, reordered keys.
    assert!(
        delivered.starts_with("{\"version\":1.0,\"settings\":"),
        "{delivered}"
    );
    for float in [
        "\"max_lifetime\":3600.0",
        "\"iat_window\":60.0",
        "\"token_cache_size\":1000.0",
    ] {
        assert!(delivered.contains(float), "{float} missing: {delivered}");
    }
    let envoy = Envoy::start(
        config(&pki, upstream.port(), jwks.port(), delivered),
        dir.path(),
        "envoy-mesh",
        READY,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        envoy.log().contains("policy mesh-delivered loaded"),
        "{}",
        tail(&envoy.log(), 30)
    );
    let client = HttpsClient::new(
        envoy.listener_port(),
        &pki.ca_der,
        Some(&pki.clients[0]),
        TlsVersion::Default,
    )
    .expect("client");
    let token = |scope: &str| {
        let now = unix_now();
        issuer
            .sign_jwt(
                Some("at+jwt"),
                &json!({"iss": ISS, "aud": AUD, "sub": "alice", "client_id": "tpp", "iat": now - 5,
                        "exp": now + 300, "jti": random_id(), "scope": scope,
                        "cnf": {"x5t#S256": pki.clients[0].x5t_s256()}}),
            )
            .expect("sign")
    };
    let send = |req: Req| client.send(&req).unwrap_or_else(|e| panic!("{e}"));
    // Anonymous rule.
    assert_eq!(send(Req::get("/health")).status, 200);
    // A bound token with the scope: admitted, the upstream sees the subject.
    let ok = send(Req::get("/accounts/1").header("authorization", &format!("Bearer {}", token("accounts"))));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json().expect("echo")["path"], "/accounts/1");
    // No token: 401; wrong scope: 403 insufficient_scope; unmatched route: refused.
    let none = send(Req::get("/accounts/1"));
    assert_eq!(none.status, 401, "{}", none.text());
    let scope =
        send(Req::get("/accounts/1").header("authorization", &format!("Bearer {}", token("payments"))));
    assert_eq!(scope.status, 403, "{}", scope.text());
    assert!(scope.text().contains("insufficient_scope"), "{}", scope.text());
    // max_auth_age (300.0) is in force: a transfer token without auth_time is refused.
    let transfer =
        send(Req::post("/transfers").header("authorization", &format!("Bearer {}", token("payments"))));
    assert_eq!(transfer.status, 401, "{}", transfer.text());
    let challenge = transfer.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("insufficient_user_authentication") && challenge.contains("max_age=300"),
        "{challenge}"
    );
}

#[test]
fn a_fraction_where_a_whole_number_is_meant_stops_the_plugin() {
    let dir = ScratchDir::new("meshbad").expect("scratch dir");
    let pki = TestPki::generate(dir.path(), &[]).expect("test PKI");
    let mut bad = policy(9);
    bad["issuers"][0]["max_lifetime"] = json!(3600.5);
    assert!(
        Policy::from_value(bad.clone()).is_err(),
        "the bad policy compiles"
    );
    let cfg = config(&pki, free_port().expect("port"), 9, mesh_json(&bad));
    let listener = cfg.listener_port;
    match Envoy::start(cfg, dir.path(), "envoy-meshbad", READY) {
        Err(StartError::Exited { log, .. }) => {
            assert!(
                log.contains("issuers[0].max_lifetime") && log.contains("3600.5"),
                "the log does not name the field:\n{}",
                tail(&log, 30)
            );
            assert!(log.contains("refusing to start"), "{}", tail(&log, 30));
        }
        Err(StartError::Other(e)) => panic!("expected Envoy to exit, got: {e}"),
        Ok(envoy) => panic!("Envoy started: {}", tail(&envoy.log(), 30)),
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", listener)).is_err());
}
