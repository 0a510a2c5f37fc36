//! JWE interop with an independent implementation: what `fapi_as::jwe` encrypts (ECDH-ES, A256GCM and
//! A128GCM, nested signed JWT) is decrypted by panva/jose on node (tests/node/decrypt.mjs), and what
//! jose encrypts is decrypted by `fapi_as::jwe::decrypt_with`.
//!
//! Needs `node` and the npm package installed by `npm ci --prefix src/server/tests/node` (scripts/setup
//! does it). Without them the tests fail with that instruction: they never skip silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_as::jwe::{self, JweError};
use fapi_core::alg::Algorithm;
use fapi_core::b64;
use fapi_core::sign::SigningKey;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::FromSec1Point;
use p256::elliptic_curve::PrimeField;
use p256::{AffinePoint, ProjectivePoint, Scalar};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Runs `node <script>` in tests/node with `input` as JSON on stdin; `Err(stderr)` when it fails.
fn run_node(script: &str, input: &Value) -> Result<String, String> {
    const SETUP: &str = "run `npm ci --prefix src/server/tests/node` (scripts/setup does it)";
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!("the JWE interop test needs node (Debian: apt-get install nodejs npm), then {SETUP}"),
    }
    if !node_dir().join("node_modules/jose/package.json").is_file() {
        panic!("the JWE interop test needs the npm package jose: {SETUP}");
    }
    let mut child = Command::new("node")
        .arg(script)
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
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("utf-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A client's encryption key: (public JWK with use "enc" and a kid, private JWK for the recipient).
fn client_key(kid: &str) -> (Value, Value) {
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let p = key.private_jwk();
    let public = json!({"kty": "EC", "crv": "P-256", "use": "enc", "kid": kid, "x": p["x"], "y": p["y"]});
    let private = json!({"kty": "EC", "crv": "P-256", "x": p["x"], "y": p["y"], "d": p["d"]});
    (public, private)
}

/// Static-key ECDH on P-256 (the recipient's side, which ring does not offer).
fn ecdh(private: &Value, point: &[u8]) -> Option<Vec<u8>> {
    let d: [u8; 32] = b64::decode(private["d"].as_str()?)?.try_into().ok()?;
    let scalar: Option<Scalar> = Scalar::from_repr(d.into()).into();
    let peer = AffinePoint::from_sec1_bytes(point).ok()?;
    Some((ProjectivePoint::from(peer) * scalar?).to_affine().x().to_vec())
}

/// An id_token signed by the AS (far-future exp: jose checks it against its own clock).
fn id_token(as_key: &SigningKey) -> String {
    let claims = json!({
        "iss": "https://as.bank.example", "sub": "u-taro", "aud": "client-1",
        "iat": 1_767_225_600, "exp": 4_102_444_800_i64, "nonce": "n-0S6_WzA2Mj", "acr": "urn:bank:acr:passkey"
    });
    as_key.sign_jwt(Some("JWT"), &claims).unwrap()
}

#[test]
fn node_jose_decrypts_our_encrypted_id_tokens() {
    let as_key = SigningKey::generate(Algorithm::ES256, Some("as-sig-1".into())).unwrap();
    let (public, private) = client_key("client-enc-1");
    // A signing key first, unmarked for encryption: it must not be chosen.
    let (mut sig_key, _) = client_key("client-sig-1");
    sig_key["use"] = json!("sig");
    let jwks = json!({"keys": [sig_key, public]});
    let token = id_token(&as_key);
    for enc in ["A256GCM", "A128GCM"] {
        let jwe = jwe::encrypt_to_client(&jwks, "ECDH-ES", enc, token.as_bytes(), Some("JWT")).unwrap();
        let out = run_node(
            "decrypt.mjs",
            &json!({"jwk": private, "jwe": jwe, "verifyJwk": as_key.public_jwk()}),
        )
        .unwrap_or_else(|e| panic!("jose refused our {enc} JWE: {e}"));
        let out: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["plaintext"], token.as_str());
        let header = &out["protectedHeader"];
        assert_eq!(header["alg"], "ECDH-ES");
        assert_eq!(header["enc"], enc);
        assert_eq!(header["kid"], "client-enc-1");
        assert_eq!(header["cty"], "JWT");
        assert_eq!(out["claims"]["nonce"], "n-0S6_WzA2Mj");
        assert_eq!(out["claims"]["sub"], "u-taro");
    }
}

#[test]
fn node_jose_decrypts_a_non_jwt_plaintext_without_cty() {
    let (public, private) = client_key("k");
    let text = "認可応答 — authorization response ✓";
    let jwe = jwe::encrypt_to_client(
        &json!({"keys": [public]}),
        "ECDH-ES",
        "A256GCM",
        text.as_bytes(),
        None,
    )
    .unwrap();
    let out: Value =
        serde_json::from_str(&run_node("decrypt.mjs", &json!({"jwk": private, "jwe": jwe})).unwrap())
            .unwrap();
    assert_eq!(out["plaintext"], text);
    assert!(out["protectedHeader"].get("cty").is_none());
}

#[test]
fn node_jose_refuses_a_tampered_jwe_and_the_wrong_key() {
    let (public, private) = client_key("k");
    let (_, other_private) = client_key("other");
    let jwe =
        jwe::encrypt_to_client(&json!({"keys": [public]}), "ECDH-ES", "A256GCM", b"payload", None).unwrap();
    // The untampered JWE decrypts: the failures below are the tampering's.
    assert!(run_node("decrypt.mjs", &json!({"jwk": private, "jwe": jwe})).is_ok());
    let mut parts: Vec<String> = jwe.split('.').map(str::to_string).collect();
    let mut tag = b64::decode(&parts[4]).unwrap();
    tag[0] ^= 0x01;
    parts[4] = b64::encode(tag);
    let err = run_node("decrypt.mjs", &json!({"jwk": private, "jwe": parts.join(".")})).unwrap_err();
    assert!(err.contains("ERR_JWE_DECRYPTION_FAILED"), "{err}");
    let err = run_node("decrypt.mjs", &json!({"jwk": other_private, "jwe": jwe})).unwrap_err();
    assert!(err.contains("ERR_JWE_DECRYPTION_FAILED"), "{err}");
}

#[test]
fn we_decrypt_what_node_jose_encrypts() {
    let (public, private) = client_key("client-enc-2");
    for enc in ["A256GCM", "A128GCM"] {
        let jwe = run_node(
            "encrypt.mjs",
            &json!({"jwk": public, "enc": enc, "plaintext": "eyJhbGciOi.x.y", "cty": "JWT"}),
        )
        .unwrap();
        let out = jwe::decrypt_with(jwe.trim(), |point| ecdh(&private, point)).unwrap();
        assert_eq!(out.plaintext, b"eyJhbGciOi.x.y");
        assert_eq!(out.header["enc"], enc);
        assert_eq!(out.header["kid"], "client-enc-2");
        // And with another private key, the tag does not verify.
        let (_, other) = client_key("other");
        assert_eq!(
            jwe::decrypt_with(jwe.trim(), |point| ecdh(&other, point)),
            Err(JweError::DecryptionFailed)
        );
    }
}
