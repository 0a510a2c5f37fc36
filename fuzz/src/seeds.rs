//! The seed corpus of every fuzz target, written into `fuzz/seeds/<target>/`: real tokens, proofs,
//! JWEs and WebAuthn ceremonies made with the fixture keys (so they pass the targets' checks and the
//! fuzzer starts from inputs that reach deep), the repository's policies, Wycheproof's JWE vectors, and
//! a few refusals. `scripts/fuzz --seeds` writes them (through [`crate::init`], so no second,
//! uninstrumented build is needed) after a fixture changed; the output is checked in.

use crate::*;
use fapi_as::jwe::encrypt_to_client;
use fapi_core::b64;
use fapi_core::policy::Policy;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, mode: Option<u8>, body: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bytes = mode.map(|m| vec![m]).unwrap_or_default();
        bytes.extend_from_slice(body);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn joined(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = a.to_vec();
    out.push(0xff);
    out.extend_from_slice(b);
    out
}

/// Replaces `root` with the seeds of every target, one directory per target.
pub fn write_all(root: &Path) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let _ = std::fs::remove_dir_all(root);
    let s = Seeds {
        root: root.to_path_buf(),
    };
    let k = keys();

    // Access tokens: valid ones from both issuer keys, and classic refusals.
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "customer-1", "client_id": "app-1",
        "iat": NOW - 30, "exp": NOW + 600, "jti": "jti-1", "scope": "openid accounts"});
    for (name, key) in [("es256", &k.issuer_es), ("eddsa", &k.issuer_ed)] {
        let token = key.sign_jwt(Some("at+jwt"), &claims).unwrap();
        assert_eq!(
            decide_bearer(&token).0.reason(),
            "allowed",
            "the valid {name} seed token"
        );
        s.put(
            "access_token",
            &format!("valid-{name}"),
            Some(0),
            token.as_bytes(),
        );
        let header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"}).to_string();
        let mode = if name == "eddsa" { 1 } else { 3 };
        s.put(
            "access_token",
            &format!("signed-{name}"),
            Some(mode),
            &joined(header.as_bytes(), claims.to_string().as_bytes()),
        );
    }
    // Certificate-bound (RFC 8705): refused on this request, which has no client certificate.
    let mut bound = claims.clone();
    bound["cnf"] = json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"});
    s.put(
        "access_token",
        "bound",
        Some(0),
        k.issuer_es.sign_jwt(None, &bound).unwrap().as_bytes(),
    );
    let mut expired = claims.clone();
    expired["exp"] = json!(NOW - 61);
    s.put(
        "access_token",
        "expired",
        Some(0),
        k.issuer_ed.sign_jwt(None, &expired).unwrap().as_bytes(),
    );
    let header_jwk = json!({"alg": "EdDSA", "kid": "ed-1", "jwk": k.issuer_ed.public_jwk_bare()});
    s.put(
        "access_token",
        "header-jwk",
        Some(1),
        &joined(header_jwk.to_string().as_bytes(), claims.to_string().as_bytes()),
    );
    let none = format!(
        "{}.{}.",
        b64::encode(r#"{"alg":"none"}"#),
        b64::encode(claims.to_string())
    );
    s.put("access_token", "alg-none", Some(0), none.as_bytes());

    // DPoP proofs for the fixed request.
    for (name, key) in [("es256", &k.dpop_es), ("eddsa", &k.dpop_ed)] {
        let proof = key
            .dpop_proof(
                DPOP_METHOD,
                DPOP_HTU,
                Some(DPOP_ACCESS_TOKEN),
                NOW,
                "proof-1",
                None,
            )
            .unwrap();
        let ctx = fapi_core::dpop::ProofContext {
            method: DPOP_METHOD,
            htu: DPOP_HTU,
            access_token: Some(DPOP_ACCESS_TOKEN),
        };
        let rules = fapi_core::dpop::DpopRules::default();
        fapi_core::dpop::check_proof(&[proof.as_str()], &ctx, &rules, None, NOW)
            .expect("the valid seed proof");
        s.put("dpop_proof", &format!("valid-{name}"), Some(0), proof.as_bytes());
    }
    let proof_claims = json!({"jti": "proof-2", "htm": DPOP_METHOD, "htu": "HTTPS://API.bank.example:443/a/../payments?q#f",
        "iat": NOW - 5, "ath": b64::sha256_b64(DPOP_ACCESS_TOKEN)});
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": k.dpop_ed.public_jwk_bare()});
    s.put(
        "dpop_proof",
        "signed-header-payload",
        Some(1),
        &joined(header.to_string().as_bytes(), proof_claims.to_string().as_bytes()),
    );
    s.put(
        "dpop_proof",
        "payload-eddsa",
        Some(2),
        proof_claims.to_string().as_bytes(),
    );
    let nonce = fapi_core::dpop::NonceIssuer::new(NONCE_SECRET, 300).issue(NOW);
    let mut with_nonce = proof_claims.clone();
    with_nonce["nonce"] = json!(nonce);
    s.put(
        "dpop_proof",
        "payload-es256-nonce",
        Some(3),
        with_nonce.to_string().as_bytes(),
    );

    // Policies: the repository's (YAML and compiled) and the targets' own fixture.
    let mut yaml_files: Vec<PathBuf> = std::fs::read_dir(here.join("../policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    yaml_files.sort();
    for path in yaml_files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        s.put("policy_yaml", &name, None, text.as_bytes());
        let (value, _) = fapi_core::yaml::load(&text).unwrap();
        let (policy, _) = Policy::from_value(value).unwrap();
        s.put("policy_json", &name, None, policy.compiled_json().as_bytes());
    }
    let fixture = policy_value();
    s.put(
        "policy_json",
        "fuzz-fixture",
        None,
        fixture.to_string().as_bytes(),
    );
    s.put(
        "policy_yaml",
        "anchors",
        None,
        b"version: 1\nname: anchors\nissuers:\n  - &iss\n    issuer: https://as.example\n    audiences: [https://api.example]\n    jwks: {uri: https://as.example/jwks}\nrules:\n  - name: r\n    match: {prefix: /a, methods: [GET]}\n    require: &req {scopes: {any_of: [a, b]}, sender_constraint: dpop}\n  - name: s\n    match: {template: \"/b/{id}\"}\n    require: *req\n",
    );

    // Revocation feed and introspection.
    s.put(
        "revocation_feed",
        "page",
        None,
        br#"{"cursor":"42","revoked":[{"iss":"https://as.bank.example","jti":"a","exp":1750000600},{"iss":"https://as.bank.example","jti":"b\u00e9","exp":-1}]}"#,
    );
    s.put("revocation_feed", "empty", None, br#"{"cursor":"","revoked":[]}"#);
    s.put(
        "introspection",
        "active",
        None,
        br#"{"active":true,"scope":"accounts","client_id":"app-1"}"#,
    );
    s.put("introspection", "inactive", None, br#"{"active":false}"#);
    s.put("introspection", "not-bool", None, br#"{"active":"true"}"#);
    s.put(
        "introspection",
        "token",
        None,
        b"eyJhbGciOiJFUzI1NiJ9.e30.c2ln+/=",
    );

    // Request facts and URIs.
    s.put("request_facts", "bearer", None, &joined(&joined(b"/accounts/1?x=1", b"By=spiffe://a;Hash=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef;Cert=\"x\""), b"Bearer abc.def-_~+/=="));
    s.put(
        "request_facts",
        "dpop-two-headers",
        None,
        &joined(&joined(b"/a", b""), &joined(b"DPoP x", b"dpop y")),
    );
    s.put(
        "request_facts",
        "query-token",
        None,
        &joined(
            &joined(
                b"/a?b=1&access_token=x#f",
                b"Hash=bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2",
            ),
            b"Bearer x",
        ),
    );
    for (name, uri) in [
        ("htu", "HTTPS://Api.Bank.Example:0443/a/./b/../%7euser/%41?q=1#f"),
        ("ipv6", "http://[::1]:80//x/%2f/.."),
        ("path", "/a//b/%2E%2E/c%2fd?x"),
    ] {
        s.put("uri_normalize", name, None, uri.as_bytes());
    }

    // Forms.
    s.put("form", "token-request", None, b"grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    s.put(
        "form",
        "plus-and-utf8",
        None,
        b"username=a+b%20c&password=%E3%83%91%E3%82%B9&csrf=",
    );
    s.put("form", "duplicate", None, b"a=1&a=2");

    // JWE: the targets' recipient (Wycheproof's ECDH-ES key), every Wycheproof JWE, and key sets.
    for enc in ["A128GCM", "A256GCM"] {
        let jwe = encrypt_to_client(&jwe_recipient_jwks(), "ECDH-ES", enc, b"a.b.c", Some("JWT")).unwrap();
        fapi_as::jwe::decrypt_with(&jwe, jwe_recipient_agree).expect("our seed JWE decrypts");
        s.put("jwe", &format!("ours-{enc}"), Some(0), jwe.as_bytes());
    }
    let wycheproof: Value = serde_json::from_str(
        &std::fs::read_to_string(
            here.join("../src/core/tests/vectors/wycheproof/json_web_encryption_test.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for group in wycheproof["testGroups"].as_array().unwrap() {
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| test["tcId"].to_string());
            let jwe = test["jwe"].as_str().unwrap();
            // The supported ones (ECDH-ES with A128GCM, A256GCM) decrypt with the targets' recipient.
            if ["76", "78"].contains(&id.as_str()) {
                fapi_as::jwe::decrypt_with(jwe, jwe_recipient_agree).expect("Wycheproof ECDH-ES vector");
            }
            if jwe.len() < 4096 {
                s.put("jwe", &format!("wycheproof-{id}"), Some(0), jwe.as_bytes());
            }
        }
    }
    let jwks_sets = [
        ("recipient", jwe_recipient_jwks()),
        (
            "mixed",
            json!({"keys": [k.issuer_ed.public_jwk(), {"kty": "EC", "crv": "P-256", "key_ops": ["deriveKey"], "alg": "ECDH-ES",
                "x": JWE_RECIPIENT_X, "y": JWE_RECIPIENT_Y}, k.issuer_es.public_jwk()]}),
        ),
    ];
    for (name, set) in jwks_sets {
        s.put(
            "jwe",
            &format!("jwks-{name}"),
            Some(1),
            set.to_string().as_bytes(),
        );
    }

    // WebAuthn: a registration of the passkey and assertions with it.
    let pk = k.passkey.public_jwk();
    let x = b64::decode(pk["x"].as_str().unwrap()).unwrap();
    let y = b64::decode(pk["y"].as_str().unwrap()).unwrap();
    let cose = cbor_bytes(&cose_es256(&x, &y));
    let id = b64::decode(PASSKEY_ID).unwrap();
    let aaguid = [7u8; 16];
    let reg_auth = auth_data(0x45 | 0x18, 0, Some((&aaguid, &id, &cose)));
    let attestation = attestation_none(&reg_auth);
    let posted = json!({"id": PASSKEY_ID, "rawId": PASSKEY_ID, "type": "public-key",
        "response": {"clientDataJSON": b64::encode(client_data("webauthn.create")),
                     "attestationObject": b64::encode(&attestation), "transports": ["internal", "hybrid"]}});
    let rp = fapi_as::webauthn::RelyingParty::from_issuer(WEBAUTHN_ISSUER).unwrap();
    let response = fapi_as::webauthn::RegistrationResponse::from_json(&posted.to_string()).unwrap();
    fapi_as::webauthn::verify_registration(&rp, WEBAUTHN_CHALLENGE, &response)
        .expect("the seed registration");
    s.put(
        "webauthn_registration",
        "posted",
        Some(0),
        posted.to_string().as_bytes(),
    );
    s.put(
        "webauthn_registration",
        "attestation-object",
        Some(1),
        &attestation,
    );
    s.put("webauthn_registration", "auth-data", Some(2), &reg_auth);
    let with_ext = {
        let mut a = auth_data(0x45 | 0x80, 1, Some((&aaguid, &id, &cose)));
        a.extend(cbor_bytes(&ciborium::Value::Map(vec![(
            ciborium::Value::Text("credProtect".into()),
            ciborium::Value::Integer(2.into()),
        )])));
        a
    };
    s.put(
        "webauthn_registration",
        "auth-data-extensions",
        Some(2),
        &with_ext,
    );

    let get_auth = auth_data(0x05, 6, None);
    let client = client_data("webauthn.get");
    let mut message = get_auth.clone();
    message.extend_from_slice(&b64::sha256(&client));
    let signature = passkey_sign_der(&message);
    let posted = json!({"id": PASSKEY_ID, "rawId": PASSKEY_ID, "type": "public-key",
        "response": {"clientDataJSON": b64::encode(&client), "authenticatorData": b64::encode(&get_auth),
                     "signature": b64::encode(&signature), "userHandle": b64::encode(PASSKEY_USER)}});
    let response = fapi_as::webauthn::AuthenticationResponse::from_json(&posted.to_string()).unwrap();
    fapi_as::webauthn::verify_authentication(&rp, WEBAUTHN_CHALLENGE, &stored_passkey(), &response)
        .expect("the seed assertion");
    s.put(
        "webauthn_assertion",
        "posted",
        Some(0),
        posted.to_string().as_bytes(),
    );
    s.put("webauthn_assertion", "auth-data", Some(1), &get_auth);
    s.put(
        "webauthn_assertion",
        "client-data-auth-data",
        Some(2),
        &joined(&client, &get_auth),
    );
    s.put("webauthn_assertion", "der-signature", Some(3), &signature);
}
