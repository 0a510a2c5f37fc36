//! Every policy shipped in `policies/*.yaml` must load without errors (docs/policy.md, "Lint checks"),
//! carry its own tests, and pass all of them. Runs the same code as `fapictl policy test`, without the
//! CLI: YAML loader, validation, then [`Policy::run_tests`] at the fixed clock `TEST_NOW`.

use fapi_core::policy::{Policy, Severity};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn policy_files() -> Result<Vec<PathBuf>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// What `fapictl policy` does before validation: `issuers[i].jwks.file` (a JWKS or a single JWK, relative
/// to the policy) becomes inline `keys`.
fn inline_key_files(value: &mut Value, base: &Path) -> Result<(), String> {
    let Some(issuers) = value.get_mut("issuers").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for issuer in issuers {
        let Some(jwks) = issuer.get_mut("jwks").and_then(Value::as_object_mut) else {
            continue;
        };
        if jwks.contains_key("keys") || jwks.contains_key("uri") {
            continue;
        }
        let Some(file) = jwks.get("file").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let path = base.join(&file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let set: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let keys = match set.get("keys") {
            Some(keys) => keys.clone(),
            None => Value::Array(vec![set]),
        };
        jwks.remove("file");
        jwks.insert("keys".into(), keys);
    }
    Ok(())
}

/// Loads, validates and tests one policy file; returns the number of tests run, or every complaint.
fn check_policy(path: &Path) -> Result<usize, Vec<String>> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: {e}")])?;
    let (mut value, source) = fapi_core::yaml::load(&text).map_err(|e| vec![format!("{name}: {e}")])?;
    let locate = |p: &str| match source.position(p) {
        Some(pos) => format!("{name} ({pos})"),
        None => format!("{name} ({p})"),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    inline_key_files(&mut value, base).map_err(|e| vec![format!("{name}: {e}")])?;
    let (policy, warnings) = Policy::from_value(value).map_err(|problems| {
        problems
            .iter()
            .map(|p| format!("{}: {p}", locate(&p.path)))
            .collect::<Vec<_>>()
    })?;
    for w in &warnings {
        // Warnings do not fail the build (a legacy issuer may need RS256), but they are shown.
        assert_eq!(w.severity, Severity::Warning);
        eprintln!("{}: {w}", locate(&w.path));
    }
    if policy.doc.tests.is_empty() {
        return Err(vec![format!("{name}: the policy has no tests")]);
    }
    let outcomes = policy.run_tests();
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| {
            format!(
                "{name}: test \"{}\": expected {}, got {}",
                o.name, o.expected, o.got
            )
        })
        .collect();
    if failures.is_empty() {
        Ok(outcomes.len())
    } else {
        Err(failures)
    }
}

#[test]
fn every_shipped_policy_loads_and_passes_its_tests() -> Result<(), String> {
    let files = policy_files()?;
    if files.is_empty() {
        return Err("no policies/*.yaml found".into());
    }
    let mut complaints = Vec::new();
    for file in &files {
        match check_policy(file) {
            Ok(n) => eprintln!("{}: {n} tests passed", file.display()),
            Err(mut c) => complaints.append(&mut c),
        }
    }
    for c in &complaints {
        eprintln!("{c}");
    }
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} problem(s) in policies/ (listed above)",
            complaints.len()
        ))
    }
}

/// The runner really decides: a policy whose transfer rule lost its requirements fails the tests that
/// guard them (so a passing suite above means something).
#[test]
fn weakening_a_rule_makes_its_tests_fail() -> Result<(), String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/open-banking-jp.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let (mut value, _) = fapi_core::yaml::load(&text).map_err(|e| e.to_string())?;
    let rules = value
        .get_mut("rules")
        .and_then(|r| r.as_array_mut())
        .ok_or("no rules")?;
    let transfer = rules
        .iter_mut()
        .find(|r| r.get("name").and_then(|n| n.as_str()) == Some("transfer-create"))
        .ok_or("no transfer-create rule")?;
    transfer["require"] = serde_json::json!({ "scopes": ["payments"] });
    let (policy, _) = Policy::from_value(value)
        .map_err(|p| p.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
    let failed: Vec<String> = policy
        .run_tests()
        .into_iter()
        .filter(|o| !o.passed)
        .map(|o| o.name)
        .collect();
    for must_fail in [
        "DPoP-bound token on the mTLS-only transfer route",
        "transfer after password-only login",
        "transfer with a token without auth_time",
        "path traversal from an account to transfers hits the transfer rule",
    ] {
        assert!(
            failed.iter().any(|f| f == must_fail),
            "\"{must_fail}\" passed against a weakened policy"
        );
    }
    Ok(())
}
