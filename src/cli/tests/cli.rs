//! fapictl end to end: the built binary on the fixtures in tests/fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_core::jwks::Jwks;
use fapi_core::policy::Policy;
use fapi_core::sign::SigningKey;
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_fapictl");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs fapictl in the fixtures directory.
fn fapictl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(fixtures())
        .output()
        .expect("run fapictl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn all_output(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// A fresh directory under the target's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fapictl-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lint(file: &str) -> (i32, String) {
    let o = fapictl(&["policy", "lint", file]);
    (o.status.code().unwrap_or(-1), stdout(&o))
}

fn assert_line(out: &str, prefix: &str) {
    assert!(
        out.lines().any(|l| l.starts_with(prefix)),
        "no line starting with {prefix:?} in:\n{out}"
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- policy lint ----------------------------------------------------------------------------------

#[test]
fn lint_clean_policy_is_ok() {
    let (code, out) = lint("good.yaml");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "good.yaml: ok");
}

#[test]
fn lint_unknown_field_points_at_the_key() {
    let (code, out) = lint("unknown-field.yaml");
    assert_eq!(code, 1);
    assert_line(&out, "unknown-field.yaml:10:7: error: unknown field `methdos`");
}

#[test]
fn lint_bad_path_template() {
    let (code, out) = lint("bad-template.yaml");
    assert_eq!(code, 1);
    assert_line(
        &out,
        "bad-template.yaml:13:7: error: bad path template \"/accounts/{id\"",
    );
}

#[test]
fn lint_shadowed_rule_points_at_its_match() {
    let (code, out) = lint("shadowed.yaml");
    assert_eq!(code, 1);
    assert_line(
        &out,
        "shadowed.yaml:12:5: error: rule \"one-account\" can never match: rule \"all-accounts\"",
    );
}

#[test]
fn lint_forbidden_and_legacy_algorithms() {
    let (code, out) = lint("algorithms.yaml");
    assert_eq!(code, 1);
    assert_line(&out, "algorithms.yaml:5:25: error: HS256 is forbidden");
    assert_line(&out, "algorithms.yaml:5:32: warning: RS256 is outside FAPI 2.0");

    // A warning alone does not fail the lint.
    let (code, out) = lint("rs256-only.yaml");
    assert_eq!(code, 0, "{out}");
    assert_line(&out, "rs256-only.yaml:7:9: warning: RS256 is outside FAPI 2.0");
    assert!(!out.contains("error"), "{out}");
}

#[test]
fn lint_requirement_that_can_never_hold() {
    let (code, out) = lint("acr-empty.yaml");
    assert_eq!(code, 1);
    assert_line(
        &out,
        "acr-empty.yaml:12:7: error: an empty acr list can never hold",
    );
}

#[test]
fn lint_missing_and_invalid_key_files_point_at_the_file_field() {
    let (code, out) = lint("missing-keyfile.yaml");
    assert_eq!(code, 1);
    assert_line(
        &out,
        "missing-keyfile.yaml:6:7: error: key file keys/does-not-exist.json",
    );
    // The core's own complaint about `file` is not repeated.
    assert_eq!(out.lines().count(), 1, "{out}");

    let (code, out) = lint("bad-keyfile.yaml");
    assert_eq!(code, 1);
    assert_line(
        &out,
        "bad-keyfile.yaml:6:7: error: key file keys/not-json.json: not valid JSON",
    );
    assert_line(
        &out,
        "bad-keyfile.yaml:10:7: error: key file keys/private.jwk.json key 0: the JWK contains private key material",
    );
}

#[test]
fn lint_resolves_key_files_next_to_the_policy_not_the_cwd() {
    let elsewhere = scratch("lint-cwd");
    let policy = fixtures().join("good.yaml");
    let o = Command::new(BIN)
        .args(["policy", "lint"])
        .arg(&policy)
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", all_output(&o));
    assert!(stdout(&o).ends_with("good.yaml: ok\n"));
}

#[test]
fn lint_yaml_syntax_error_and_unreadable_file() {
    let (code, out) = lint("yaml-syntax.yaml");
    assert_eq!(code, 1);
    let line = out.lines().next().unwrap_or_default();
    let parts: Vec<&str> = line.splitn(4, ':').collect();
    assert_eq!(parts[0], "yaml-syntax.yaml", "{out}");
    assert!(
        parts[1].parse::<u32>().is_ok() && parts[2].parse::<u32>().is_ok(),
        "{out}"
    );
    assert!(parts[3].starts_with(" error: "), "{out}");

    let (code, out) = lint("no-such-policy.yaml");
    assert_eq!(code, 1);
    assert_line(&out, "no-such-policy.yaml: error: cannot read the policy");
}

#[test]
fn lint_several_files_fails_if_any_fails() {
    let o = fapictl(&["policy", "lint", "good.yaml", "acr-empty.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert_line(&out, "good.yaml: ok");
    assert_line(&out, "acr-empty.yaml:12:7: error");
}

// ---- policy test ----------------------------------------------------------------------------------

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or_default()
}

#[test]
fn policy_test_passing() {
    let o = fapictl(&["policy", "test", "good.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_line(&out, "PASS account without scope");
    assert_eq!(last_line(&out), "3 passed, 0 failed");
}

#[test]
fn policy_test_failing() {
    let o = fapictl(&["policy", "test", "failing-tests.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_line(&out, "PASS allowed with scope");
    assert_line(
        &out,
        "FAIL wrongly expects an allow without scope: expected 200, got 403 insufficient_scope",
    );
    assert_eq!(last_line(&out), "1 passed, 1 failed");
}

#[test]
fn policy_test_without_tests_or_with_errors_fails() {
    let o = fapictl(&["policy", "test", "no-tests.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_line(&out, "no-tests.yaml: no tests");
    assert_eq!(last_line(&out), "0 passed, 0 failed");

    let o = fapictl(&["policy", "test", "good.yaml", "shadowed.yaml"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_line(&out, "shadowed.yaml:12:5: error");
    assert_line(&out, "FAIL shadowed.yaml: the policy has 1 error(s)");
    assert_eq!(last_line(&out), "3 passed, 1 failed");
}

// ---- policy compile -------------------------------------------------------------------------------

#[test]
fn compile_inlines_keys_and_drops_tests() {
    let dir = scratch("compile");
    let out = dir.join("policy.json");
    let o = fapictl(&["policy", "compile", "good.yaml", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", all_output(&o));
    let json = std::fs::read_to_string(&out).unwrap();
    let (policy, problems) = Policy::from_json(&json).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(policy.doc.tests.is_empty());
    assert_eq!(policy.doc.format.as_deref(), Some("fapi-guard.policy/v1"));
    let keys = policy.issuers[0].inline_keys.as_ref().unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].kid.as_deref(), Some("test-issuer"));
    assert!(!json.contains("\"file\""));
    assert!(!json.contains("\"tests\""));
    assert_eq!(policy.rules.len(), 2);

    // To standard output: the same document.
    let o = fapictl(&["policy", "compile", "good.yaml", "-o", "-"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), json.trim());
}

#[test]
fn compile_writes_nothing_on_errors() {
    let dir = scratch("compile-errors");
    let out = dir.join("policy.json");
    let o = fapictl(&["policy", "compile", "acr-empty.yaml", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!out.exists());
    assert_line(
        &stderr(&o),
        "acr-empty.yaml:12:7: error: an empty acr list can never hold",
    );
}

// ---- keys new and token inspect -------------------------------------------------------------------

fn claims(now: i64) -> Value {
    json!({
        "iss": "https://as.example",
        "aud": "https://api.example",
        "sub": "user-1",
        "client_id": "client-1",
        "jti": "jti-1",
        "iat": now - 60,
        "exp": now + 240,
        "scope": "accounts",
        "cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
    })
}

const NOW: i64 = 1_704_067_200;

#[test]
fn keys_new_for_each_alg_sign_and_verify() {
    for (alg, kid) in [("ES256", "k-es"), ("PS256", "k-ps"), ("EdDSA", "k-ed")] {
        let dir = scratch(&format!("keys-{kid}"));
        let o = fapictl(&[
            "keys",
            "new",
            "--alg",
            alg,
            "--kid",
            kid,
            "--out",
            dir.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", all_output(&o));
        let printed = stdout(&o);
        assert_line(&printed, &format!("kid: {kid}"));
        let private_path = dir.join(format!("{kid}.jwk.json"));
        let public_path = dir.join(format!("{kid}.jwks.json"));
        let private: Value = serde_json::from_slice(&std::fs::read(&private_path).unwrap()).unwrap();
        // The private key is never printed.
        let d = private["d"].as_str().unwrap();
        assert!(!printed.contains(d));
        #[cfg(unix)]
        assert_eq!(mode(&private_path), 0o600);

        let key = SigningKey::from_jwk(&private).unwrap();
        assert_eq!(key.kid(), kid);
        assert_eq!(key.alg().as_str(), alg);
        let set = Jwks::parse(&std::fs::read(&public_path).unwrap()).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.skipped.is_empty());

        let token = key.sign_jwt(Some("at+jwt"), &claims(NOW)).unwrap();
        let now = NOW.to_string();
        let o = fapictl(&[
            "token",
            "inspect",
            &token,
            "--jwks",
            public_path.to_str().unwrap(),
            "--now",
            &now,
        ]);
        let out = all_output(&o);
        assert_eq!(o.status.code(), Some(0), "{out}");
        assert_line(&out, &format!("signature: valid (kid {kid}, alg {alg})"));
        assert!(!out.contains(&token));

        // A token of another key with the same kid does not verify.
        let other = SigningKey::generate(key.alg(), Some(kid.to_string())).unwrap();
        let forged = other.sign_jwt(Some("at+jwt"), &claims(NOW)).unwrap();
        let o = fapictl(&[
            "token",
            "inspect",
            &forged,
            "--jwks",
            public_path.to_str().unwrap(),
            "--now",
            &now,
        ]);
        let out = all_output(&o);
        assert_eq!(o.status.code(), Some(1), "{out}");
        assert_line(&out, "NOT VALID: signature_invalid");
        assert!(!out.contains("signature: valid"));
    }
}

#[test]
fn keys_new_refuses_to_overwrite_and_prints_to_stdout_only_on_request() {
    let dir = scratch("keys-overwrite");
    let d = dir.to_str().unwrap();
    let first = fapictl(&["keys", "new", "--alg", "EdDSA", "--kid", "same", "--out", d]);
    assert_eq!(first.status.code(), Some(0));
    let again = fapictl(&["keys", "new", "--alg", "EdDSA", "--kid", "same", "--out", d]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

    let o = fapictl(&["keys", "new", "--alg", "ES256", "--out", "-"]);
    assert_eq!(o.status.code(), Some(0));
    let text = stdout(&o);
    let docs: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(docs.len(), 2);
    assert!(SigningKey::from_jwk(&docs[0]).is_ok());
    assert_eq!(Jwks::from_value(&docs[1]).unwrap().keys.len(), 1);
    let help = stdout(&fapictl(&["keys", "new", "--help"]));
    assert!(help.contains("PRINTS THE PRIVATE KEY"), "{help}");

    let bad = fapictl(&["keys", "new", "--alg", "ES256", "--kid", "../escape", "--out", d]);
    assert_eq!(bad.status.code(), Some(1));
}

fn fixture_key() -> SigningKey {
    let jwk: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("keys/private.jwk.json")).unwrap()).unwrap();
    SigningKey::from_jwk(&jwk).unwrap()
}

#[test]
fn inspect_without_keys_is_not_verified_and_hides_the_token() {
    let token = fixture_key().sign_jwt(Some("at+jwt"), &claims(NOW)).unwrap();
    let now = NOW.to_string();
    let o = fapictl(&["token", "inspect", &token, "--now", &now]);
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_line(
        &out,
        "NOT VERIFIED: no key set given (use --jwks FILE or --policy FILE)",
    );
    assert!(!out.contains(&token));
    assert!(!out.contains(&token[..40]));
    assert!(out.contains(&format!("{}...", &token[..12])));
    assert_line(
        &out,
        "binding: mtls (x5t#S256 bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2)",
    );
    assert_line(&out, "exp: 2024-01-01T00:04:00Z (expires in 4m)");
    assert_line(&out, "iat: 2023-12-31T23:59:00Z (1m ago)");
    assert!(out.contains("\"client_id\": \"client-1\""), "{out}");
    assert!(out.contains("\"alg\": \"ES256\""), "{out}");

    // From standard input, as an Authorization header value, later: expired.
    let later = (NOW + 7_200).to_string();
    let mut child = Command::new(BIN)
        .args(["token", "inspect", "-", "--now", &later])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("Bearer {token}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_line(&out, "exp: 2024-01-01T00:04:00Z (expired 1h ago)");
    assert!(!out.contains(&token));
}

#[test]
fn inspect_shows_dpop_and_bearer_bindings() {
    let key = fixture_key();
    let mut c = claims(NOW);
    c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let dpop = key.sign_jwt(None, &c).unwrap();
    let out = stdout(&fapictl(&["token", "inspect", &dpop]));
    assert_line(
        &out,
        "binding: dpop (jkt 0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I)",
    );
    c.as_object_mut().unwrap().remove("cnf");
    let bearer = key.sign_jwt(None, &c).unwrap();
    let out = stdout(&fapictl(&["token", "inspect", &bearer]));
    assert_line(&out, "binding: none (bearer");
}

#[test]
fn inspect_with_policy_checks_issuer_rules_and_claims() {
    let key = fixture_key();
    let now = NOW.to_string();
    let token = key.sign_jwt(Some("at+jwt"), &claims(NOW)).unwrap();
    let o = fapictl(&["token", "inspect", &token, "--policy", "good.yaml", "--now", &now]);
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_line(&out, "signature: valid (kid test-issuer, alg ES256)");
    assert_line(&out, "claims: valid for issuer https://as.example");

    // Expired at the given time.
    let later = (NOW + 3_600).to_string();
    let o = fapictl(&[
        "token",
        "inspect",
        &token,
        "--policy",
        "good.yaml",
        "--now",
        &later,
    ]);
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert_line(&out, "NOT VALID: token_expired: the token has expired");

    // Another audience.
    let mut c = claims(NOW);
    c["aud"] = json!("https://elsewhere.example");
    let t = key.sign_jwt(Some("at+jwt"), &c).unwrap();
    let o = fapictl(&["token", "inspect", &t, "--policy", "good.yaml", "--now", &now]);
    assert_eq!(o.status.code(), Some(1));
    assert_line(&all_output(&o), "NOT VALID: audience_mismatch");

    // An untrusted issuer.
    let mut c = claims(NOW);
    c["iss"] = json!("https://attacker.example");
    let t = key.sign_jwt(Some("at+jwt"), &c).unwrap();
    let o = fapictl(&["token", "inspect", &t, "--policy", "good.yaml", "--now", &now]);
    assert_eq!(o.status.code(), Some(1));
    assert_line(&all_output(&o), "NOT VALID: unknown_issuer");

    // A forbidden algorithm in the header.
    let header = json!({"alg": "HS256", "kid": "test-issuer", "typ": "at+jwt"});
    let t = key.sign_with_header(&header, &claims(NOW)).unwrap();
    let o = fapictl(&["token", "inspect", &t, "--policy", "good.yaml", "--now", &now]);
    assert_eq!(o.status.code(), Some(1));
    assert_line(&all_output(&o), "NOT VALID: algorithm_not_allowed");
}

#[test]
fn inspect_rejects_garbage_without_echoing_it() {
    let garbage = "not-a-token-but-a-fairly-long-secret-string";
    let o = fapictl(&["token", "inspect", garbage]);
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("not in JWS compact serialization"), "{out}");
    assert!(!out.contains(garbage));
}

// ---- certs new ------------------------------------------------------------------------------------

/// Standard base64 (PEM bodies), no validation beyond the alphabet.
fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).unwrap() + begin.len();
    let stop = pem.find(&end).unwrap();
    base64_decode(&pem[start..stop])
}

/// The value printed after `label` in the block that starts with `client NAME `.
fn printed_for(out: &str, name: &str, label: &str) -> String {
    let mut lines = out
        .lines()
        .skip_while(|l| !l.starts_with(&format!("client {name} ")));
    lines.next().unwrap();
    lines
        .take(2)
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn certs_new_prints_the_rfc8705_thumbprints() {
    let dir = scratch("certs");
    let o = fapictl(&[
        "certs",
        "new",
        "--out",
        dir.to_str().unwrap(),
        "--server-dns",
        "localhost",
        "--server-ip",
        "127.0.0.1",
        "--client",
        "alice",
        "--self-signed-client",
        "bob",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", all_output(&o));
    for name in ["ca", "server", "alice", "bob"] {
        let cert = std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{name}");
        let key_path = dir.join(format!("{name}.key.pem"));
        let key = std::fs::read_to_string(&key_path).unwrap();
        assert!(key.contains("-----BEGIN PRIVATE KEY-----"), "{name}");
        assert!(!out.contains(key.lines().nth(1).unwrap()), "private key printed");
        #[cfg(unix)]
        assert_eq!(mode(&key_path), 0o600, "{name}");
    }
    for name in ["alice", "bob"] {
        let der = pem_der(
            &std::fs::read_to_string(dir.join(format!("{name}.pem"))).unwrap(),
            "CERTIFICATE",
        );
        assert_eq!(der[0], 0x30, "DER SEQUENCE");
        let digest = fapi_core::b64::sha256(&der);
        assert_eq!(
            printed_for(&out, name, "x5t#S256:"),
            fapi_core::b64::encode(digest)
        );
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(printed_for(&out, name, "sha256 (Envoy digest):"), hex);
    }
    assert_line(&out, "client alice (signed by the CA)");
    assert_line(&out, "client bob (self-signed)");

    // Names that would escape the directory or collide are refused.
    let o = fapictl(&["certs", "new", "--out", dir.to_str().unwrap(), "--client", "../x"]);
    assert_eq!(o.status.code(), Some(1));
    let o = fapictl(&[
        "certs",
        "new",
        "--out",
        dir.to_str().unwrap(),
        "--client",
        "server",
        "--force",
    ]);
    assert_eq!(o.status.code(), Some(1));
    // Existing files are not overwritten without --force.
    let o = fapictl(&["certs", "new", "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"));
}
