//! The real `fapi-as` driven by openid-client 6 on node (panva/openid-client on oauth4webapi, a
//! certified FAPI 2.0 client that nobody here wrote), over real TLS: tests/node/openid-client-flows.mjs
//! does discovery, private_key_jwt (RFC 7523), PAR (RFC 9126), PKCE S256, DPoP (RFC 9449) with the
//! server's nonces, the sign-in, TOTP and consent pages, the code grant (openid-client checks `iss`
//! per RFC 9207 and the id_token), userinfo, refresh, client_credentials, revocation (RFC 7009) and
//! introspection (RFC 7662, and RFC 9701 signed responses); the same with mTLS-bound tokens over the
//! mtls_endpoint_aliases (RFC 8705 §5) with JARM, and with self_signed_tls_client_auth (RFC 8705 §2.2);
//! and a client it registers itself (RFC 7591) that gets its id_tokens and JARM responses encrypted
//! (ECDH-ES, A256GCM); and one Rich Authorization Request (RFC 9396): a transfer pushed in a signed
//! request object through PAR, consented with a debtor account, carried by the token response and
//! introspection.
//! This test registers the clients, hands the script their keys, and checks what openid-client
//! accepted against what only this side knows (the certificate thumbprint, the feed).
//!
//! Needs `node` and the npm packages installed by `npm ci --prefix src/server/tests/node` (scripts/setup
//! does it). Without them the test fails with that instruction: it never skips silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use fapi_core::alg::Algorithm;
use fapi_core::sign::SigningKey;
use fapi_e2e::client::{HttpsClient, Req, TlsVersion};
use fapi_e2e::pki::TestPki;
use fapi_e2e::process::Process;
use fapi_e2e::util::{free_port, wait_until, ScratchDir};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_fapi-as");
const REDIRECT: &str = "https://app.example/cb";
const FEED_TOKEN: &str = "feed-token-for-the-openid-client-test-0123456789";
const INITIAL_TOKEN: &str = "initial-access-token-for-the-openid-client-test-0123";
const SCOPES: &str = "openid accounts payments";

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Fails (never skips) when node or the npm packages are missing.
fn require_node() {
    const SETUP: &str = "run `npm ci --prefix src/server/tests/node` (scripts/setup does it)";
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "the openid-client test needs node >= 20 (Debian: apt-get install nodejs npm), then {SETUP}"
        ),
    }
    for package in ["openid-client", "oauth4webapi", "undici", "jose"] {
        if !node_dir()
            .join(format!("node_modules/{package}/package.json"))
            .is_file()
        {
            panic!("the openid-client test needs the npm package {package}: {SETUP}");
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "fapi-as {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_jwks(path: &Path, keys: Value) -> String {
    std::fs::write(path, json!({ "keys": keys }).to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// The private JWK handed to node on stdin (never written to disk, never printed).
fn private_jwk(key: &SigningKey) -> Value {
    let mut jwk = key.private_jwk().clone();
    jwk["kid"] = json!(key.kid());
    jwk
}

struct Fixture {
    proc: Process,
    _dir: ScratchDir,
    issuer: String,
    feed: HttpsClient,
    input: Value,
    client_x5t: String,
}

fn start() -> Fixture {
    let dir = ScratchDir::new("as-openid-client").unwrap();
    let pki = TestPki::generate(dir.path(), &["openid-client"]).unwrap();
    let (https, mtls, http) = (free_port().unwrap(), free_port().unwrap(), free_port().unwrap());
    let issuer = format!("https://127.0.0.1:{https}");
    let config = dir.join("fapi-as.toml");
    std::fs::write(
        &config,
        format!(
            "issuer = \"{issuer}\"\nmtls_base = \"https://127.0.0.1:{mtls}\"\n[listen]\nhttps = \"127.0.0.1:{https}\"\nmtls = \"127.0.0.1:{mtls}\"\nhttp = \"127.0.0.1:{http}\"\n\
             [tls]\ncert = \"{}\"\nkey = \"{}\"\n[database]\nurl = \"sqlite://{}?mode=rwc\"\n[keys]\ndir = \"{}\"\nalg = \"ES256\"\n\
             [feed]\ntoken = \"{FEED_TOKEN}\"\n[registration]\ninitial_access_token = \"{INITIAL_TOKEN}\"\n",
            pki.server.cert_pem.display(),
            pki.server.key_pem.display(),
            dir.join("as.db").display(),
            dir.join("keys").display(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap().to_string();
    run(&["-c", &cfg, "seed"]);

    let dpop_key = SigningKey::generate(Algorithm::ES256, Some("oc-dpop-1".into())).unwrap();
    let mtls_key = SigningKey::generate(Algorithm::ES256, Some("oc-mtls-1".into())).unwrap();
    let identity = pki.client("openid-client").unwrap();
    let grants = [
        "--grant-type",
        "authorization_code",
        "--grant-type",
        "refresh_token",
        "--grant-type",
        "client_credentials",
    ];
    for (client_id, key, binding) in [("oc-dpop", &dpop_key, "dpop"), ("oc-mtls", &mtls_key, "mtls")] {
        let jwks = write_jwks(
            &dir.join(&format!("{client_id}.jwks.json")),
            json!([key.public_jwk()]),
        );
        let mut args = vec![
            "-c",
            &cfg,
            "client",
            "add",
            "--client-id",
            client_id,
            "--name",
            "openid-client",
            "--redirect-uri",
            REDIRECT,
            "--auth-method",
            "private_key_jwt",
            "--jwks",
            &jwks,
            "--binding",
            binding,
            "--scope",
            SCOPES,
            "--authorization-details-type",
            "payment_initiation",
        ];
        args.extend(grants);
        run(&args);
    }
    // RFC 8705 §2.2: the self-signed certificate registered in the client's JWKS (x5c).
    let x5c = base64::engine::general_purpose::STANDARD.encode(&identity.cert_der);
    let jwks = write_jwks(
        &dir.join("oc-self.jwks.json"),
        json!([{"kty": "EC", "crv": "P-256", "use": "sig", "x5c": [x5c]}]),
    );
    run(&[
        "-c",
        &cfg,
        "client",
        "add",
        "--client-id",
        "oc-self",
        "--auth-method",
        "self_signed_tls_client_auth",
        "--jwks",
        &jwks,
        "--binding",
        "mtls",
        "--scope",
        "accounts",
        "--grant-type",
        "client_credentials",
    ]);

    let proc = Process::spawn(
        "fapi-as",
        Path::new(BIN),
        &["-c".into(), cfg, "serve".into()],
        &dir.join("serve.log"),
    )
    .unwrap();
    let feed = HttpsClient::new(https, &pki.ca_der, None, TlsVersion::Default).unwrap();
    wait_until(Duration::from_secs(20), "fapi-as to listen", || {
        match feed.send(&Req::get("/health")) {
            Ok(r) if r.status == 200 => Ok(Some(())),
            Ok(r) => Err(format!("status {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", proc.log()));

    let input = json!({
        "issuer": issuer,
        "ca_pem": pki.ca_pem,
        "cert_pem": identity.cert_pem,
        "key_pem": identity.key_pem,
        "redirect_uri": REDIRECT,
        "initial_access_token": INITIAL_TOKEN,
        "user": {"username": "taro", "password": "demo-password-2026", "totp_secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"},
        "rar_user": {"username": "hanako", "password": "demo-password-2026", "totp_secret": "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU"},
        "rar_debtor": "hanako-2",
        "rar_details": rar_details(),
        "clients": {
            "dpop": {"client_id": "oc-dpop", "jwk": private_jwk(&dpop_key)},
            "mtls": {"client_id": "oc-mtls", "jwk": private_jwk(&mtls_key)},
            "self_signed": {"client_id": "oc-self"},
        },
    });
    Fixture {
        proc,
        _dir: dir,
        issuer,
        feed,
        client_x5t: identity.x5t_s256(),
        input,
    }
}

/// The transfer the RAR flow asks for (RFC 9396 §2): hanako pays taro 5,000 yen.
fn rar_details() -> Value {
    json!([{"type": "payment_initiation",
            "instructedAmount": {"currency": "JPY", "amount": "5000"},
            "creditorName": "Taro Yamada", "creditorAccount": {"accountId": "taro-1"},
            "remittanceInformationUnstructured": "lunch"}])
}

/// Runs the node script; its JSON report.
fn run_flows(input: &Value) -> Value {
    let mut child = Command::new("node")
        .arg("openid-client-flows.mjs")
        .current_dir(node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("node runs");
    assert!(
        out.status.success(),
        "openid-client-flows.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "openid-client-flows.mjs output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The revoked jti values the feed lists (with a pause for the feed's settling window).
fn feed_jtis(f: &Fixture) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(2500));
    let r = f
        .feed
        .send(&Req::get("/revocations").header("authorization", &format!("Bearer {FEED_TOKEN}")))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["jti"].as_str().map(str::to_string))
        .collect()
}

fn is_token_type(v: &Value, expected: &str) -> bool {
    v.as_str().is_some_and(|t| t.eq_ignore_ascii_case(expected))
}

/// What every flow's access token carries (RFC 9068 §2.2).
fn check_access_token(label: &str, t: &Value, issuer: &str, client_id: &str) {
    assert_eq!(t["access_header"]["typ"], json!("at+jwt"), "{label}: {t}");
    let c = &t["access_claims"];
    assert_eq!(c["iss"], json!(issuer), "{label}: {t}");
    assert_eq!(c["client_id"], json!(client_id), "{label}: {t}");
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16), "{label}: {t}");
    assert!(c["exp"].as_i64() > c["iat"].as_i64(), "{label}: {t}");
}

#[test]
fn openid_client_6_drives_the_fapi2_flows() {
    require_node();
    let f = start();
    let report = run_flows(&f.input);
    let pretty = serde_json::to_string_pretty(&report).unwrap();
    println!("openid-client report:\n{pretty}");
    for flow in ["rar", "dpop", "mtls", "self_signed", "registered"] {
        assert!(
            report[flow].get("error").is_none(),
            "openid-client refused something in the {flow} flow:\n{pretty}\n--- server log ---\n{}",
            f.proc.log()
        );
    }
    let issuer = f.issuer.as_str();

    // DPoP (RFC 9449) with private_key_jwt, PAR and the pages.
    let d = &report["dpop"];
    assert_eq!(d["discovery"]["issuer"], json!(issuer));
    assert_eq!(
        d["par"]["authorization_endpoint"],
        json!(format!("{issuer}/authorize"))
    );
    assert_eq!(
        d["par"]["query_keys"],
        json!(["client_id", "request_uri"]),
        "FAPI 2.0: only PAR"
    );
    let steps: Vec<&str> = d["browser"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in ["post /login", "post /login/totp", "post /consent"] {
        assert!(steps.contains(&s), "{s} in {steps:?}");
    }
    assert_eq!(d["browser"]["callback_iss"], json!(issuer), "RFC 9207");
    // openid-client answered the server's use_dpop_nonce challenge itself (RFC 9449 §8).
    assert!(
        d["stats"]["nonce_challenges"]
            .as_array()
            .is_some_and(|c| c.iter().any(|p| p == "/token")),
        "{}",
        d["stats"]
    );
    let jkt = d["dpop_jkt"].as_str().unwrap();
    let code = &d["code_grant"];
    assert!(is_token_type(&code["token_type"], "DPoP"), "{code}");
    check_access_token("dpop code", code, issuer, "oc-dpop");
    assert_eq!(
        code["access_claims"]["cnf"]["jkt"],
        json!(jkt),
        "dpop_jkt bound the code"
    );
    assert_eq!(code["access_claims"]["sub"], json!("user-taro"));
    assert_eq!(code["has_refresh_token"], json!(true));
    let id = &code["id_token"];
    assert_eq!(id["iss"], json!(issuer));
    assert_eq!(id["aud"], json!("oc-dpop"));
    assert_eq!(id["sub"], json!("user-taro"));
    assert_eq!(id["nonce_matches"], json!(true));
    assert_eq!(id["acr"], json!("urn:bank:acr:totp"), "acr_values forced TOTP");
    assert!(
        id["amr"].as_array().is_some_and(|a| a.contains(&json!("otp"))),
        "{id}"
    );
    assert_eq!(d["userinfo"]["sub"], json!("user-taro"));
    let refresh = &d["refresh"];
    assert!(is_token_type(&refresh["token_type"], "DPoP"), "{refresh}");
    assert_eq!(refresh["access_claims"]["cnf"]["jkt"], json!(jkt));
    assert_eq!(
        d["refresh_other_key"]["refused"],
        json!(true),
        "{}",
        d["refresh_other_key"]
    );
    let cc = &d["client_credentials"];
    check_access_token("dpop client_credentials", cc, issuer, "oc-dpop");
    assert_eq!(cc["access_claims"]["cnf"]["jkt"], json!(jkt));
    assert_eq!(cc["has_refresh_token"], json!(false));
    assert_eq!(d["introspection_before"]["active"], json!(true));
    assert_eq!(d["introspection_before"]["cnf"]["jkt"], json!(jkt));
    assert_eq!(
        d["introspection_after"]["active"],
        json!(false),
        "RFC 7009 then RFC 7662"
    );
    assert_eq!(d["refresh_after_revocation"]["refused"], json!(true));
    assert_eq!(d["refresh_after_revocation"]["error"], json!("invalid_grant"));

    // mTLS (RFC 8705): private_key_jwt over the aliases, JARM, certificate-bound tokens.
    let m = &report["mtls"];
    assert_eq!(m["browser"]["callback_keys"], json!(["response"]), "JARM");
    assert!(m["stats"]["nonce_challenges"]
        .as_array()
        .is_some_and(Vec::is_empty));
    let code = &m["code_grant"];
    assert!(is_token_type(&code["token_type"], "Bearer"), "{code}");
    check_access_token("mtls code", code, issuer, "oc-mtls");
    assert_eq!(code["access_claims"]["cnf"]["x5t#S256"], json!(f.client_x5t));
    assert_eq!(code["id_token"]["aud"], json!("oc-mtls"));
    assert_eq!(code["id_token"]["acr"], json!("urn:bank:acr:password"));
    assert_eq!(m["userinfo"]["sub"], json!("user-taro"));
    assert_eq!(
        m["refresh"]["access_claims"]["cnf"]["x5t#S256"],
        json!(f.client_x5t)
    );
    check_access_token(
        "mtls client_credentials",
        &m["client_credentials"],
        issuer,
        "oc-mtls",
    );
    assert_eq!(
        m["client_credentials"]["access_claims"]["cnf"]["x5t#S256"],
        json!(f.client_x5t)
    );
    assert_eq!(
        m["introspection_before"]["active"],
        json!(true),
        "RFC 9701 response verified"
    );
    assert_eq!(m["introspection_before"]["cnf"]["x5t#S256"], json!(f.client_x5t));
    assert_eq!(m["introspection_after"]["active"], json!(false));
    // introspection_signed_response_alg asked for RFC 9701 JWT responses, which openid-client verified.
    assert!(
        m["stats"]["introspection_content_types"]
            .as_array()
            .is_some_and(|t| t.len() == 2 && t.iter().all(|c| c == "application/token-introspection+jwt")),
        "{}",
        m["stats"]
    );

    // self_signed_tls_client_auth (RFC 8705 §2.2).
    let s = &report["self_signed"];
    check_access_token("self-signed", &s["client_credentials"], issuer, "oc-self");
    assert_eq!(
        s["client_credentials"]["access_claims"]["cnf"]["x5t#S256"],
        json!(f.client_x5t)
    );
    assert_eq!(s["introspection_before"]["active"], json!(true));
    assert_eq!(s["introspection_after"]["active"], json!(false));

    // Dynamic registration (RFC 7591) by openid-client, then encrypted id_tokens (ECDH-ES, A256GCM)
    // that it decrypts with its own key and verifies (nested JWT).
    let r = &report["registered"];
    assert_eq!(r["registration"]["client_id_issued"], json!(true));
    assert_eq!(r["registration"]["has_registration_access_token"], json!(true));
    assert_eq!(
        r["registration"]["has_client_secret"],
        json!(false),
        "no secrets for FAPI clients"
    );
    let client_id = r["code_grant"]["client_id"].as_str().unwrap();
    check_access_token("registered", &r["code_grant"], issuer, client_id);
    assert_eq!(
        r["code_grant"]["access_claims"]["cnf"]["x5t#S256"],
        json!(f.client_x5t)
    );
    assert_eq!(r["code_grant"]["id_token"]["aud"], json!(client_id));
    assert_eq!(r["code_grant"]["id_token"]["nonce_matches"], json!(true));
    let jwe = &r["id_token_encryption"];
    assert_eq!(jwe["compact_parts"], json!(5), "{jwe}");
    assert_eq!(jwe["header"]["alg"], json!("ECDH-ES"));
    assert_eq!(jwe["header"]["enc"], json!("A256GCM"));
    assert_eq!(jwe["header"]["kid"], json!("dcr-enc"));
    assert_eq!(jwe["inner_signed"]["alg"], json!("ES256"), "{jwe}");
    // Its JARM responses are encrypted too (JARM §2.3): openid-client decrypted and verified the
    // response before redeeming the code it carried.
    assert_eq!(
        r["registration"]["authorization_encrypted_response_alg"],
        json!("ECDH-ES")
    );
    assert_eq!(r["browser"]["callback_keys"], json!(["response"]), "JARM");
    assert_eq!(r["browser"]["jarm_parts"], json!(5), "a compact JWE");
    let jarm = &r["browser"]["jarm_header"];
    assert_eq!(jarm["alg"], json!("ECDH-ES"), "{jarm}");
    assert_eq!(jarm["enc"], json!("A256GCM"));
    assert_eq!(jarm["cty"], json!("JWT"));
    assert_eq!(jarm["kid"], json!("dcr-enc"));

    // RFC 9396: the transfer in a request object (a JSON array, §3) through PAR; consent with
    // hanako's second account; the token response (§7), the access token (§9.1) and introspection
    // (§9.2) carry it with that debtor account.
    let rar = &report["rar"];
    assert_eq!(
        rar["discovery"]["authorization_details_types_supported"],
        json!(["payment_initiation"])
    );
    assert_eq!(rar["request_object_details"], rar_details(), "{rar}");
    let steps: Vec<&str> = rar["browser"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for s in [
        "post /login/totp",
        "consent shows transfers [\"5,000 JPY\"]",
        "consent offers debtor accounts [\"hanako-1\",\"hanako-2\"]",
        "post /consent",
    ] {
        assert!(steps.contains(&s), "{s} in {steps:?}");
    }
    let mut granted = rar_details();
    granted[0]["debtorAccount"] = json!({"accountId": "hanako-2"});
    assert_eq!(rar["code_grant"]["authorization_details"], granted, "{rar}");
    assert_eq!(
        rar["code_grant"]["access_claims"]["authorization_details"],
        granted
    );
    assert_eq!(rar["code_grant"]["access_claims"]["sub"], json!("user-hanako"));
    assert_eq!(
        rar["code_grant"]["access_claims"]["acr"],
        json!("urn:bank:acr:totp")
    );
    check_access_token("rar", &rar["code_grant"], issuer, "oc-mtls");
    assert_eq!(rar["introspection"]["active"], json!(true));
    assert_eq!(rar["introspection"]["authorization_details"], granted);

    // The revocations openid-client made reach the plugin's feed.
    let listed = feed_jtis(&f);
    for (flow, t) in [
        ("dpop", "code_grant"),
        ("mtls", "code_grant"),
        ("self_signed", "client_credentials"),
    ] {
        let jti = report[flow][t]["access_claims"]["jti"].as_str().unwrap();
        assert!(
            listed.iter().any(|j| j == jti),
            "{flow}: {jti} not in the feed {listed:?}"
        );
    }
}
