//! `fapictl policy lint|test|compile`: loads a YAML policy with positions, inlines its key files, runs
//! the core validation and reports every problem as `FILE:LINE:COLUMN: error|warning: MESSAGE`.

use crate::util;
use anyhow::{bail, Context as _, Result};
use fapi_core::policy::{Policy, Severity};
use fapi_core::yaml;
use serde_json::Value;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One finding, located in a file.
#[derive(Debug, Clone)]
pub struct Diag {
    pub file: String,
    /// (line, column), 1-based.
    pub position: Option<(u64, u64)>,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {sev}: {}", self.file, self.message),
            None => write!(f, "{}: {sev}: {}", self.file, self.message),
        }
    }
}

/// A policy file after loading: the policy when it has no error, and every finding.
pub struct Loaded {
    pub policy: Option<Policy>,
    pub diags: Vec<Diag>,
}

impl Loaded {
    pub fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

/// A key file that was inlined into `issuers[index].jwks.keys`, or the reason it could not be.
struct KeyFile {
    index: usize,
    path: PathBuf,
    error: Option<String>,
}

/// Reads, parses and validates a policy file, with `issuers[i].jwks.file` read relative to the policy's
/// directory and inlined as `keys`.
pub fn load(path: &Path) -> Loaded {
    let file = path.display().to_string();
    let error = |position: Option<(u64, u64)>, message: String| Diag {
        file: file.clone(),
        position,
        severity: Severity::Error,
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Loaded {
                policy: None,
                diags: vec![error(None, format!("cannot read the policy: {e}"))],
            }
        }
    };
    let (mut value, map) = match yaml::load(&text) {
        Ok(v) => v,
        Err(e) => {
            let position = e.position.map(|p| (u64::from(p.line), u64::from(p.column)));
            return Loaded {
                policy: None,
                diags: vec![error(position, e.message.to_string())],
            };
        }
    };
    let locate = |p: &str| {
        map.position(p)
            .map(|pos| (u64::from(pos.line), u64::from(pos.column)))
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut diags = Vec::new();
    let key_files = inline_key_files(&mut value, base);
    for kf in &key_files {
        if let Some(why) = &kf.error {
            diags.push(error(locate(&file_field(kf.index)), why.clone()));
        }
    }
    let (policy, problems) = match Policy::from_value(value) {
        Ok((policy, problems)) => (Some(policy), problems),
        Err(problems) => (None, problems),
    };
    for p in problems {
        let (path, message) = match relocate(&p.path, &p.message, &key_files) {
            Relocated::Drop => continue,
            Relocated::To(path, message) => (path, message),
        };
        diags.push(Diag {
            file: file.clone(),
            position: locate(&path),
            severity: p.severity,
            message: if path.is_empty() || locate(&path).is_some() {
                message
            } else {
                format!("{message} (at {path})")
            },
        });
    }
    diags.sort_by_key(|d| d.position);
    let has_error = diags.iter().any(|d| d.severity == Severity::Error);
    Loaded {
        policy: if has_error { None } else { policy },
        diags,
    }
}

fn file_field(index: usize) -> String {
    format!("issuers[{index}].jwks.file")
}

enum Relocated {
    Drop,
    To(String, String),
}

/// Problems the core reports on inlined keys are moved to the `file` field they came from; those on an
/// issuer whose key file could not be read are dropped (the read error already says it).
fn relocate(path: &str, message: &str, key_files: &[KeyFile]) -> Relocated {
    for kf in key_files {
        let jwks = format!("issuers[{}].jwks", kf.index);
        let keys = format!("{jwks}.keys");
        let under = |prefix: &str| {
            path == prefix
                || path.starts_with(&format!("{prefix}."))
                || path.starts_with(&format!("{prefix}["))
        };
        if !under(&jwks) {
            continue;
        }
        if kf.error.is_some() {
            return Relocated::Drop;
        }
        if under(&keys) {
            let which = match path.strip_prefix(&keys) {
                Some(rest) if !rest.is_empty() => {
                    format!(" key {}", rest.trim_start_matches('[').replace(']', ""))
                }
                _ => String::new(),
            };
            return Relocated::To(
                file_field(kf.index),
                format!("key file {}{which}: {message}", kf.path.display()),
            );
        }
    }
    Relocated::To(path.to_string(), message.to_string())
}

/// Replaces every `issuers[i].jwks.file` (when it is the only key source) with the `keys` the file
/// holds. A file that cannot be used becomes `keys: []` and an error message.
fn inline_key_files(value: &mut Value, base: &Path) -> Vec<KeyFile> {
    let mut out = Vec::new();
    let Some(issuers) = value.get_mut("issuers").and_then(Value::as_array_mut) else {
        return out;
    };
    for (index, issuer) in issuers.iter_mut().enumerate() {
        let Some(jwks) = issuer.get_mut("jwks").and_then(Value::as_object_mut) else {
            continue;
        };
        if jwks.contains_key("keys") || jwks.contains_key("uri") {
            continue; // the core reports the conflicting sources
        }
        let Some(name) = jwks.get("file").and_then(Value::as_str).map(str::to_string) else {
            continue;
        };
        let path = base.join(&name);
        let (keys, error) = match read_key_file(&path) {
            Ok(keys) => (keys, None),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        jwks.remove("file");
        jwks.insert("keys".into(), Value::Array(keys));
        out.push(KeyFile { index, path, error });
    }
    out
}

/// Reads a JWKS (`{"keys": [...]}`) or a single JWK; returns the keys.
pub fn read_key_file(path: &Path) -> Result<Vec<Value>> {
    let bytes = std::fs::read(path).with_context(|| format!("key file {}", path.display()))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "key file {}: not valid JSON (line {}, column {}): {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    match value {
        Value::Object(mut o) if o.contains_key("keys") => match o.remove("keys") {
            Some(Value::Array(keys)) => Ok(keys),
            _ => bail!("key file {}: \"keys\" is not an array", path.display()),
        },
        Value::Object(o) if o.contains_key("kty") => Ok(vec![Value::Object(o)]),
        _ => bail!(
            "key file {}: neither a JWK set ({{\"keys\": [...]}}) nor a JWK (no \"kty\")",
            path.display()
        ),
    }
}

/// `policy lint`: every problem of every file; 1 when any file has an error.
pub fn lint(files: &[PathBuf]) -> Result<bool> {
    let mut ok = true;
    let mut out = std::io::stdout().lock();
    for path in files {
        let loaded = load(path);
        for d in &loaded.diags {
            writeln!(out, "{d}")?;
        }
        if loaded.error_count() > 0 {
            ok = false;
        } else if loaded.diags.is_empty() {
            writeln!(out, "{}: ok", path.display())?;
        }
    }
    Ok(ok)
}

/// `policy test`: lint, then the policy's own tests. The last line is `N passed, M failed`; a file that
/// does not lint counts as one failure, a file without tests fails the run without counting.
pub fn test(files: &[PathBuf]) -> Result<bool> {
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut ok = true;
    let mut out = std::io::stdout().lock();
    for path in files {
        let loaded = load(path);
        for d in &loaded.diags {
            writeln!(out, "{d}")?;
        }
        let Some(policy) = loaded.policy else {
            writeln!(
                out,
                "FAIL {}: the policy has {} error(s); no test ran",
                path.display(),
                loaded.error_count()
            )?;
            failed += 1;
            ok = false;
            continue;
        };
        let outcomes = policy.run_tests();
        if outcomes.is_empty() {
            writeln!(
                out,
                "{}: no tests: add a tests: section to the policy",
                path.display()
            )?;
            ok = false;
            continue;
        }
        if files.len() > 1 {
            writeln!(out, "{}:", path.display())?;
        }
        for o in outcomes {
            if o.passed {
                passed += 1;
                writeln!(out, "PASS {}", o.name)?;
            } else {
                failed += 1;
                ok = false;
                writeln!(out, "FAIL {}: expected {}, got {}", o.name, o.expected, o.got)?;
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(ok)
}

/// `policy compile`: the plugin configuration, key files inlined and tests removed. Nothing is written
/// when the policy has errors or when the output would not load back.
pub fn compile(file: &Path, output: &Path) -> Result<bool> {
    let loaded = load(file);
    for d in &loaded.diags {
        eprintln!("{d}");
    }
    let Some(policy) = loaded.policy else {
        eprintln!(
            "{}: {} error(s): nothing written",
            file.display(),
            loaded.error_count()
        );
        return Ok(false);
    };
    let json = policy.compiled_json();
    match Policy::from_json(&json) {
        Ok((back, _)) if back.doc.tests.is_empty() => {}
        Ok(_) => bail!(
            "{}: the compiled policy still has tests; nothing written",
            file.display()
        ),
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            bail!(
                "{}: the compiled policy does not load back ({}); nothing written",
                file.display(),
                list.join("; ")
            );
        }
    }
    if output == Path::new("-") {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{json}")?;
        out.flush()?;
    } else {
        write_atomically(output, format!("{json}\n").as_bytes())?;
        eprintln!(
            "{}: compiled to {} ({} issuer(s), {} rule(s))",
            file.display(),
            output.display(),
            policy.issuers.len(),
            policy.rules.len()
        );
    }
    Ok(true)
}

/// Writes next to the target, then renames: a reader never sees half a configuration.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{name}.fapictl-tmp"));
    util::write_file(&tmp, bytes, false, true)?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot write", path.display())
    })
}
