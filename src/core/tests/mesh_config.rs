//! The policy as Istio (`WasmPlugin.pluginConfig`) and Envoy Gateway (`EnvoyExtensionPolicy` wasm
//! `config`) deliver it: a `google.protobuf.Struct` turned into JSON by the mesh's agent, so every
//! number may be a double written as `5.0`, keys come in any order, and there are no comments. The
//! plugin must read that exactly as it reads `fapictl policy compile`'s output, and refuse a
//! fractional number where a whole one is meant, naming the field.

use fapi_core::policy::Policy;
use serde_json::Value;
use std::path::Path;

/// JSON the way a Struct-to-JSON agent may write it: every number as a float, object keys in reverse
/// order, no whitespace.
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

fn compiled_example() -> Result<(Policy, Value), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/open-banking-jp.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (value, _) = fapi_core::yaml::load(&text).map_err(|e| e.to_string())?;
    let (policy, _) = Policy::from_value(value).map_err(|p| format!("{p:?}"))?;
    let compiled: Value = serde_json::from_str(&policy.compiled_json()).map_err(|e| e.to_string())?;
    Ok((policy, compiled))
}

#[test]
fn integral_floats_in_any_key_order_read_as_the_compiled_policy() -> Result<(), String> {
    let (policy, compiled) = compiled_example()?;
    let mut mesh = String::new();
    as_mesh_writes_it(&compiled, &mut mesh);
    // The shape really is the mesh's: floats where the compiled file has integers.
    for float in [
        "\"version\":1.0",
        "\"interval\":5.0",
        "\"max_lifetime\":600.0",
        "\"iat_window\":60.0",
    ] {
        assert!(mesh.contains(float), "{float} missing from {mesh}");
    }
    let (from_mesh, warnings) = Policy::from_json(&mesh).map_err(|p| format!("{p:?}"))?;
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut expected = policy.doc.clone();
    expected.tests.clear();
    expected.format = from_mesh.doc.format.clone();
    assert_eq!(from_mesh.doc, expected);
    assert_eq!(from_mesh.compiled_json(), policy.compiled_json());
    Ok(())
}

#[test]
fn a_fraction_where_a_whole_number_is_meant_is_refused_with_its_path() -> Result<(), String> {
    let (_, compiled) = compiled_example()?;
    let cases: [(&str, &[&str], Value); 4] = [
        (
            "settings.revocation_feed.interval",
            &["settings", "revocation_feed", "interval"],
            5.5.into(),
        ),
        (
            "issuers[0].max_lifetime",
            &["issuers", "0", "max_lifetime"],
            600.25.into(),
        ),
        (
            "defaults.dpop.iat_window",
            &["defaults", "dpop", "iat_window"],
            (-60.0).into(),
        ),
        ("version", &["version"], 1.5.into()),
    ];
    for (shown, path, bad) in cases {
        let mut doc = compiled.clone();
        let mut at = &mut doc;
        for key in path {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        if at.is_null() {
            return Err(format!("{shown} is not in the example policy"));
        }
        *at = bad.clone();
        match Policy::from_json(&doc.to_string()) {
            Ok(_) => return Err(format!("{shown} = {bad} was accepted")),
            Err(problems) => {
                let hit = problems
                    .iter()
                    .any(|p| p.path == shown && p.message.contains(&format!("`{bad}`")));
                assert!(hit, "{shown} = {bad}: {problems:?}");
            }
        }
    }
    Ok(())
}
