//! In-process tests of the authorization_code and refresh_token grants, on an AppState with a
//! temporary SQLite store: codes are put in the store as the front channel would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::feed;
use super::revoke::{introspection, revoke_token, Introspector};
use super::support::hashed;
use super::token::{handle, Issued, TokenCall};
use crate::app::AppState;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::OAuthError;
use crate::keys::Keys;
use crate::model::{CodeRecord, CODE};
use crate::random::Random;
use crate::store::{ClientMetadata, Grant, Store};
use crate::tls::PeerCertificate;
use fapi_core::alg::Algorithm;
use fapi_core::binding::CertThumbprint;
use fapi_core::jws::CompactJws;
use fapi_core::sign::SigningKey;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

const ISSUER: &str = "https://as.example";
const TOKEN_URL: &str = "https://as.example/token";
const REDIRECT: &str = "https://app.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

// These tests pass the time to `handle` and the store explicitly; the fixture's clock (read by
// client authentication) is the system clock, so the two agree.
fn now() -> i64 {
    Clock::system().now()
}

fn now_ms() -> i64 {
    Clock::system().now_ms()
}

fn random_token(bytes: usize) -> String {
    Random::system().token(bytes).unwrap()
}

struct Fixture {
    state: Arc<AppState>,
    /// Key of the private_key_jwt / DPoP client.
    client_key: SigningKey,
    _dir: std::path::PathBuf,
}

fn cert(name: &str) -> PeerCertificate {
    PeerCertificate(Some(Arc::new(format!("fake certificate {name}").into_bytes())))
}

fn x5t(name: &str) -> String {
    CertThumbprint::from_der(format!("fake certificate {name}").as_bytes()).to_b64url()
}

fn meta(client_id: &str, method: &str, binding: &str, jwks: Value) -> ClientMetadata {
    ClientMetadata {
        client_id: client_id.into(),
        client_name: client_id.into(),
        redirect_uris: vec![REDIRECT.into()],
        token_endpoint_auth_method: method.into(),
        jwks: Some(jwks),
        jwks_uri: None,
        tls_client_auth_subject_dn: None,
        token_binding: binding.into(),
        scope: "openid accounts".into(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        require_signed_request_object: false,
        profile: "fapi1-advanced".into(),
        authorization_signed_response_alg: None,
        id_token_encrypted_response_alg: None,
        id_token_encrypted_response_enc: None,
        authorization_encrypted_response_alg: None,
        authorization_encrypted_response_enc: None,
        authorization_details_types: Vec::new(),
    }
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("fapi-as-backchannel-{}", random_token(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let config: Config = toml::from_str(&format!(
        "issuer = \"{ISSUER}\"\nmtls_base = \"https://mtls.as.example\"\n[tls]\ncert = \"x\"\nkey = \"y\"\n[feed]\ntoken = \"feed-secret\"\n"
    ))
    .unwrap();
    let store = Store::connect(&format!("sqlite://{}/as.db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let keys = Keys {
        current: SigningKey::generate(Algorithm::ES256, None).unwrap(),
        next: None,
        retired: vec![],
    };
    let client_key = SigningKey::generate(Algorithm::ES256, Some("ck".into())).unwrap();
    // An mTLS client (self-signed certificates A and B registered) and a DPoP client.
    let mut k1 = client_key.public_jwk().clone();
    k1["x5t#S256"] = json!(x5t("A"));
    let mut k2 = SigningKey::generate(Algorithm::ES256, None)
        .unwrap()
        .public_jwk()
        .clone();
    k2["x5t#S256"] = json!(x5t("B"));
    store
        .put_client(
            &meta(
                "mtls-client",
                "self_signed_tls_client_auth",
                "mtls",
                json!({"keys": [k1, k2]}),
            ),
            0,
        )
        .await
        .unwrap();
    store
        .put_client(
            &meta(
                "dpop-client",
                "private_key_jwt",
                "dpop",
                json!({"keys": [client_key.public_jwk()]}),
            ),
            0,
        )
        .await
        .unwrap();
    store
        .put_user(&crate::store::User {
            user_id: "user-taro".into(),
            username: "taro".into(),
            display_name: "山田 太郎".into(),
            password_hash: String::new(),
            totp_secret: None,
        })
        .await
        .unwrap();
    let state =
        Arc::new(AppState::new(config, store, keys, &[7u8; 32], Clock::system(), Random::system()).unwrap());
    Fixture {
        state,
        client_key,
        _dir: dir,
    }
}

/// A grant and a code for it, as consent creates them; returns the code.
async fn code_for(
    f: &Fixture,
    client_id: &str,
    dpop_jkt: Option<String>,
    expires_at: i64,
) -> (String, String) {
    let grant_id = random_token(16);
    let t = now();
    f.state
        .store
        .put_grant(&Grant {
            grant_id: grant_id.clone(),
            client_id: client_id.into(),
            user_id: "user-taro".into(),
            scope: "openid accounts".into(),
            created_at: t,
            last_used_at: t,
            revoked: false,
        })
        .await
        .unwrap();
    let code = random_token(32);
    let rec = CodeRecord {
        client_id: client_id.into(),
        user_id: "user-taro".into(),
        redirect_uri: REDIRECT.into(),
        scope: "openid accounts".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: hashed(VERIFIER),
        dpop_jkt,
        acr: crate::app::ACR_TOTP.into(),
        amr: vec!["pwd".into(), "otp".into()],
        auth_time: t - 5,
        grant_id: grant_id.clone(),
        state: Some("af0ifjsldkj".into()),
    };
    f.state
        .store
        .put_item(CODE, &hashed(&code), &rec, expires_at)
        .await
        .unwrap();
    (code, grant_id)
}

fn code_params(client_id: &str, code: &str) -> HashMap<String, String> {
    [
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn assertion(key: &SigningKey, client_id: &str) -> String {
    let t = now();
    key.sign_jwt(None, &json!({"iss": client_id, "sub": client_id, "aud": ISSUER, "iat": t, "exp": t + 60, "jti": random_token(16)}))
        .unwrap()
}

fn with_assertion(
    mut p: HashMap<String, String>,
    key: &SigningKey,
    client_id: &str,
) -> HashMap<String, String> {
    p.insert(
        "client_assertion_type".into(),
        crate::client_auth::JWT_BEARER.into(),
    );
    p.insert("client_assertion".into(), assertion(key, client_id));
    p
}

async fn call(
    f: &Fixture,
    params: HashMap<String, String>,
    peer: PeerCertificate,
    dpop: Option<&str>,
    at: i64,
) -> Result<Issued, OAuthError> {
    let c = TokenCall {
        params,
        dpop: dpop.into_iter().collect(),
        peer,
        htu: TOKEN_URL.into(),
    };
    handle(&f.state, &c, at).await
}

fn claims(jwt: &str) -> Value {
    Value::Object(CompactJws::parse(jwt).unwrap().payload)
}

fn err(r: Result<Issued, OAuthError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.error,
    }
}

#[tokio::test]
async fn mtls_code_grant_binds_tokens_and_refresh_to_the_certificate() {
    let f = fixture().await;
    let (code, grant_id) = code_for(&f, "mtls-client", None, now() + 60).await;
    let issued = call(&f, code_params("mtls-client", &code), cert("A"), None, now())
        .await
        .unwrap();
    let b = &issued.body;
    assert_eq!(b["token_type"], "Bearer");
    let at = claims(b["access_token"].as_str().unwrap());
    assert_eq!(at["cnf"]["x5t#S256"], json!(x5t("A")));
    assert_eq!(at["sub"], "user-taro");
    assert_eq!(at["acr"], crate::app::ACR_TOTP);
    assert_eq!(at["client_id"], "mtls-client");
    let header = CompactJws::parse(b["access_token"].as_str().unwrap())
        .unwrap()
        .header;
    assert_eq!(header["typ"], "at+jwt");
    let id = claims(b["id_token"].as_str().unwrap());
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["aud"], "mtls-client");
    // FAPI 1 Advanced client: s_hash and c_hash.
    assert_eq!(
        id["s_hash"],
        json!(super::token::half_hash(Algorithm::ES256, "af0ifjsldkj"))
    );
    assert_eq!(
        id["c_hash"],
        json!(super::token::half_hash(Algorithm::ES256, &code))
    );
    let refresh = b["refresh_token"].as_str().unwrap().to_string();
    let grant = f.state.store.grant(&grant_id).await.unwrap().unwrap();
    assert!(!grant.revoked);

    let rp = |client: &str| -> HashMap<String, String> {
        [
            ("grant_type", "refresh_token"),
            ("client_id", client),
            ("refresh_token", refresh.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    // Same client, same certificate: a new access token, no rotation.
    let again = call(&f, rp("mtls-client"), cert("A"), None, now()).await.unwrap();
    assert!(again.body.get("refresh_token").is_none());
    assert_eq!(
        claims(again.body["access_token"].as_str().unwrap())["cnf"]["x5t#S256"],
        json!(x5t("A"))
    );
    // Same client, its other registered certificate: refused.
    assert_eq!(
        err(call(&f, rp("mtls-client"), cert("B"), None, now()).await),
        "invalid_grant"
    );
    // Narrowing the scope is fine, widening is not.
    let mut narrow = rp("mtls-client");
    narrow.insert("scope".into(), "accounts".into());
    assert_eq!(
        call(&f, narrow, cert("A"), None, now()).await.unwrap().body["scope"],
        "accounts"
    );
    let mut wide = rp("mtls-client");
    wide.insert("scope".into(), "accounts payments".into());
    assert_eq!(err(call(&f, wide, cert("A"), None, now()).await), "invalid_scope");
}

#[tokio::test]
async fn id_token_is_encrypted_for_clients_that_registered_it() {
    let f = fixture().await;
    let mut c = f.state.store.client("mtls-client").await.unwrap().unwrap();
    let mut enc_key = SigningKey::generate(Algorithm::ES256, None)
        .unwrap()
        .public_jwk()
        .clone();
    enc_key["use"] = json!("enc");
    enc_key["alg"] = json!("ECDH-ES");
    c.jwks.as_mut().unwrap()["keys"]
        .as_array_mut()
        .unwrap()
        .push(enc_key);
    c.id_token_encrypted_response_alg = Some("ECDH-ES".into());
    c.id_token_encrypted_response_enc = Some("A256GCM".into());
    f.state.store.put_client(&c, 0).await.unwrap();
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    let issued = call(&f, code_params("mtls-client", &code), cert("A"), None, now())
        .await
        .unwrap();
    let id = issued.body["id_token"].as_str().unwrap();
    assert_eq!(id.split('.').count(), 5, "a compact JWE");
    let header: Value =
        serde_json::from_slice(&fapi_core::b64::decode(id.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ECDH-ES");
    assert_eq!(header["cty"], "JWT");
}

#[tokio::test]
async fn reused_code_revokes_the_grant_and_its_tokens_reach_the_feed() {
    let f = fixture().await;
    let (code, grant_id) = code_for(&f, "mtls-client", None, now() + 60).await;
    let first = call(&f, code_params("mtls-client", &code), cert("A"), None, now())
        .await
        .unwrap();
    let at = first.body["access_token"].as_str().unwrap().to_string();
    let rt = first.body["refresh_token"].as_str().unwrap().to_string();
    let who = Introspector::Client("mtls-client".into());
    assert_eq!(
        introspection(&f.state, &at, &who, now()).await.unwrap()["active"],
        true
    );
    assert_eq!(
        introspection(&f.state, &rt, &who, now()).await.unwrap()["token_type"],
        "refresh_token"
    );

    assert_eq!(
        err(call(&f, code_params("mtls-client", &code), cert("A"), None, now()).await),
        "invalid_grant"
    );
    assert!(f.state.store.grant(&grant_id).await.unwrap().unwrap().revoked);
    assert_eq!(
        introspection(&f.state, &at, &who, now()).await.unwrap(),
        json!({"active": false})
    );
    assert_eq!(
        introspection(&f.state, &rt, &who, now()).await.unwrap(),
        json!({"active": false})
    );
    // The feed lists the first token's jti (once settled), and nothing after its cursor.
    let jti = claims(&at)["jti"].as_str().unwrap().to_string();
    let page = feed::page(&f.state, None, now(), now_ms() + feed::SETTLE_MS + 1)
        .await
        .unwrap();
    assert_eq!(page["revoked"][0]["jti"], json!(jti));
    assert_eq!(page["revoked"][0]["iss"], ISSUER);
    let cursor = page["cursor"].as_str().unwrap().to_string();
    let next = feed::page(&f.state, Some(&cursor), now(), now_ms() + feed::SETTLE_MS + 1)
        .await
        .unwrap();
    assert_eq!(next["revoked"], json!([]));
    assert_eq!(next["cursor"], json!(cursor));
    // Not yet settled: held back, the cursor does not move past it.
    let early = feed::page(&f.state, None, now(), now_ms() - feed::SETTLE_MS - 60_000)
        .await
        .unwrap();
    assert_eq!(early["revoked"], json!([]));
    assert_eq!(early["cursor"], json!(feed::Cursor::start().render()));
    assert!(feed::page(&f.state, Some("garbage"), now(), now_ms())
        .await
        .is_err());
}

#[tokio::test]
async fn code_defects_are_invalid_grant() {
    let f = fixture().await;
    // Older than its 60 s lifetime.
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    assert_eq!(
        err(call(&f, code_params("mtls-client", &code), cert("A"), None, now() + 61).await),
        "invalid_grant"
    );
    // Expired before the request.
    let (code, _) = code_for(&f, "mtls-client", None, now() - 1).await;
    assert_eq!(
        err(call(&f, code_params("mtls-client", &code), cert("A"), None, now()).await),
        "invalid_grant"
    );
    // Unknown code.
    assert_eq!(
        err(call(&f, code_params("mtls-client", "nope"), cert("A"), None, now()).await),
        "invalid_grant"
    );
    // Wrong verifier.
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    let mut p = code_params("mtls-client", &code);
    p.insert(
        "code_verifier".into(),
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj".into(),
    );
    assert_eq!(err(call(&f, p, cert("A"), None, now()).await), "invalid_grant");
    // No verifier at all.
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    let mut p = code_params("mtls-client", &code);
    p.remove("code_verifier");
    assert_eq!(err(call(&f, p, cert("A"), None, now()).await), "invalid_request");
    // redirect_uri mismatch.
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    let mut p = code_params("mtls-client", &code);
    p.insert("redirect_uri".into(), "https://app.example/cb/other".into());
    assert_eq!(err(call(&f, p, cert("A"), None, now()).await), "invalid_grant");
    // A code issued to another client.
    let (code, _) = code_for(&f, "dpop-client", None, now() + 60).await;
    assert_eq!(
        err(call(&f, code_params("mtls-client", &code), cert("A"), None, now()).await),
        "invalid_grant"
    );
    // No certificate for an mTLS-bound client.
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    assert_eq!(
        err(call(
            &f,
            code_params("mtls-client", &code),
            PeerCertificate(None),
            None,
            now()
        )
        .await),
        "invalid_client"
    );
}

#[tokio::test]
async fn dpop_code_binding_and_nonces() {
    let f = fixture().await;
    let t = now();
    let dpop_key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let other_key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let proof = |key: &SigningKey, nonce: Option<&str>| {
        key.dpop_proof("POST", TOKEN_URL, None, t, &random_token(16), nonce)
            .unwrap()
    };

    let (code, _) = code_for(&f, "dpop-client", Some(dpop_key.thumbprint().to_string()), t + 60).await;
    let p = || with_assertion(code_params("dpop-client", &code), &f.client_key, "dpop-client");
    // No nonce: use_dpop_nonce with one, and the code is still unused.
    let no_nonce = call(&f, p(), PeerCertificate(None), Some(&proof(&dpop_key, None)), t).await;
    let nonce = match no_nonce {
        Err(e) => {
            assert_eq!(e.error, "use_dpop_nonce");
            e.dpop_nonce.unwrap()
        }
        Ok(_) => panic!("a proof without nonce was accepted"),
    };
    // No proof at all for a DPoP client.
    assert_eq!(
        err(call(&f, p(), PeerCertificate(None), None, t).await),
        "invalid_dpop_proof"
    );
    // The code is bound to dpop_key: another key is refused (and the code is spent).
    let (code2, _) = code_for(&f, "dpop-client", Some(dpop_key.thumbprint().to_string()), t + 60).await;
    let p2 = with_assertion(code_params("dpop-client", &code2), &f.client_key, "dpop-client");
    assert_eq!(
        err(call(
            &f,
            p2,
            PeerCertificate(None),
            Some(&proof(&other_key, Some(&nonce))),
            t
        )
        .await),
        "invalid_grant"
    );
    // The right key, with the nonce: a DPoP-bound token and a fresh nonce.
    let good = proof(&dpop_key, Some(&nonce));
    let issued = call(&f, p(), PeerCertificate(None), Some(&good), t)
        .await
        .unwrap();
    assert_eq!(issued.body["token_type"], "DPoP");
    assert!(issued.dpop_nonce.is_some());
    assert_eq!(
        claims(issued.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        json!(dpop_key.thumbprint())
    );
    // The same proof again: replay.
    let (code3, _) = code_for(&f, "dpop-client", None, t + 60).await;
    let p3 = with_assertion(code_params("dpop-client", &code3), &f.client_key, "dpop-client");
    assert_eq!(
        err(call(&f, p3, PeerCertificate(None), Some(&good), t).await),
        "invalid_dpop_proof"
    );

    // Revoking the access token with the client's credentials: inactive afterwards.
    let at = issued.body["access_token"].as_str().unwrap().to_string();
    let mut rp = with_assertion(HashMap::new(), &f.client_key, "dpop-client");
    rp.insert("client_id".into(), "dpop-client".into());
    rp.insert("token".into(), at.clone());
    revoke_token(&f.state, &rp, &PeerCertificate(None), t)
        .await
        .unwrap();
    assert_eq!(
        introspection(&f.state, &at, &Introspector::ResourceServer, t)
            .await
            .unwrap()["active"],
        false
    );
}

// --- UserInfo (OIDC Core §5.3) through fapi-core's guard ---

const USERINFO_URL: &str = "https://as.example/userinfo";

/// What the UserInfo endpoint answered.
struct Answer {
    status: u16,
    challenges: Vec<String>,
    body: Value,
    no_store: bool,
    dpop_nonce: Option<String>,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

async fn get_userinfo(f: &Fixture, authorization: &[&str], dpop: &[&str], peer: PeerCertificate) -> Answer {
    get_userinfo_at(f, "/userinfo", authorization, dpop, peer).await
}

/// `GET path` on the listener the certificate implies (mTLS alias with one, issuer without).
async fn get_userinfo_at(
    f: &Fixture,
    path: &'static str,
    authorization: &[&str],
    dpop: &[&str],
    peer: PeerCertificate,
) -> Answer {
    use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
    let mut headers = HeaderMap::new();
    let host = if peer.0.is_some() {
        "mtls.as.example"
    } else {
        "as.example"
    };
    headers.insert(header::HOST, HeaderValue::from_static(host));
    for a in authorization {
        headers.append(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
    }
    for d in dpop {
        headers.append("dpop", HeaderValue::from_str(d).unwrap());
    }
    let r = super::userinfo::userinfo(
        axum::extract::State(f.state.clone()),
        Method::GET,
        Uri::from_static(path),
        peer,
        headers,
    )
    .await;
    let status = r.status().as_u16();
    let challenges = r
        .headers()
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let no_store = r.headers().get(header::CACHE_CONTROL).map(|v| v.as_bytes()) == Some(b"no-store");
    let dpop_nonce = r
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    Answer {
        status,
        challenges,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        no_store,
        dpop_nonce,
    }
}

/// An access token as the token endpoint records it, with the given scope and `cnf`; returns the
/// token and its jti.
async fn mint(f: &Fixture, client_id: &str, scope: &str, cnf: Value) -> (String, String) {
    let t = now();
    let jti = random_token(16);
    let claims = json!({
        "iss": ISSUER, "sub": "user-taro", "aud": "https://api.bank.example", "exp": t + 300,
        "iat": t, "nbf": t, "jti": jti, "client_id": client_id, "scope": scope, "cnf": cnf,
    });
    let token = f
        .state
        .keys
        .get()
        .current
        .sign_jwt(Some("at+jwt"), &claims)
        .unwrap();
    f.state
        .store
        .record_access_token(&jti, None, client_id, &claims, t + 300)
        .await
        .unwrap();
    (token, jti)
}

#[tokio::test]
async fn userinfo_checks_the_certificate_binding_and_revocation() {
    let f = fixture().await;
    let (code, _) = code_for(&f, "mtls-client", None, now() + 60).await;
    let issued = call(&f, code_params("mtls-client", &code), cert("A"), None, now())
        .await
        .unwrap();
    let token = issued.body["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {token}");

    // The holder's certificate: the user's claims.
    let a = get_userinfo(&f, &[&bearer], &[], cert("A")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["sub"], "user-taro");
    assert_eq!(a.body["preferred_username"], "taro");
    assert!(a.no_store);

    // RFC 8705 §3: another certificate of the same client is refused.
    let a = get_userinfo(&f, &[&bearer], &[], cert("B")).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    assert_eq!(a.challenges.len(), 1);
    assert!(
        a.challenges[0].starts_with("Bearer error=\"invalid_token\"")
            && a.challenges[0].contains("bound to another client certificate"),
        "{:?}",
        a.challenges
    );
    assert!(a.no_store);
    // No certificate at all (the browser-facing listener).
    let a = get_userinfo(&f, &[&bearer], &[], PeerCertificate(None)).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    assert!(
        a.challenges[0].contains("no client certificate"),
        "{:?}",
        a.challenges
    );

    // No token: both schemes offered, no error code (RFC 6750 §3.1).
    let a = get_userinfo(&f, &[], &[], cert("A")).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error(), "");
    assert_eq!(
        a.challenges,
        vec![
            "Bearer".to_string(),
            "DPoP algs=\"ES256 PS256 EdDSA\"".to_string()
        ]
    );
    // Two Authorization headers: invalid_request.
    let a = get_userinfo(&f, &[&bearer, &bearer], &[], cert("A")).await;
    assert_eq!((a.status, a.error()), (400, "invalid_request"));

    // Revoked (RFC 7009): refused from then on, though the signature is still good.
    let jti = claims(&token)["jti"].as_str().unwrap().to_string();
    assert!(f.state.store.revoke_access_token(&jti, now_ms()).await.unwrap());
    let a = get_userinfo(&f, &[&bearer], &[], cert("A")).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    assert!(
        a.challenges[0].starts_with("Bearer error=\"invalid_token\"") && a.challenges[0].contains("revoked"),
        "{:?}",
        a.challenges
    );
}

// The production runtime (the guard's replay store waits on the database from a blocking thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_checks_dpop_binding_proofs_and_replay() {
    let f = fixture().await;
    let key = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let (token, _) = mint(
        &f,
        "dpop-client",
        "openid accounts",
        json!({"jkt": key.thumbprint()}),
    )
    .await;
    let dpop_auth = format!("DPoP {token}");
    let proof = |k: &SigningKey, url: &str| {
        k.dpop_proof("GET", url, Some(&token), now(), &random_token(16), None)
            .unwrap()
    };

    // RFC 9449 §7.1: a DPoP-bound token sent as a bearer token is refused, with a DPoP challenge.
    let a = get_userinfo(&f, &[&format!("Bearer {token}")], &[], PeerCertificate(None)).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    assert!(
        a.challenges[0].starts_with("DPoP error=\"invalid_token\""),
        "{:?}",
        a.challenges
    );
    // The DPoP scheme without a proof.
    let a = get_userinfo(&f, &[&dpop_auth], &[], PeerCertificate(None)).await;
    assert_eq!((a.status, a.error()), (401, "invalid_dpop_proof"));

    // A good proof: the user's claims.
    let good = proof(&key, USERINFO_URL);
    let a = get_userinfo(&f, &[&dpop_auth], &[&good], PeerCertificate(None)).await;
    assert_eq!(a.status, 200, "{} {:?}", a.body, a.challenges);
    assert_eq!(a.body["sub"], "user-taro");
    // RFC 9449 §11.1: the same proof again is a replay, refused through the database.
    let a = get_userinfo(&f, &[&dpop_auth], &[&good], PeerCertificate(None)).await;
    assert_eq!((a.status, a.error()), (401, "invalid_dpop_proof"));
    assert!(a.challenges[0].contains("used before"), "{:?}", a.challenges);

    // A proof for another URL (htu, RFC 9449 §4.3), or by another key than cnf.jkt.
    let a = get_userinfo(
        &f,
        &[&dpop_auth],
        &[&proof(&key, "https://elsewhere.example/userinfo")],
        PeerCertificate(None),
    )
    .await;
    assert_eq!((a.status, a.error()), (401, "invalid_dpop_proof"));
    let other = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let a = get_userinfo(
        &f,
        &[&dpop_auth],
        &[&proof(&other, USERINFO_URL)],
        PeerCertificate(None),
    )
    .await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    assert!(
        a.challenges[0].contains("does not match the token binding"),
        "{:?}",
        a.challenges
    );
    // A nonce we never issued (RFC 9449 §9): use_dpop_nonce with a fresh one.
    let bad_nonce = key
        .dpop_proof(
            "GET",
            USERINFO_URL,
            Some(&token),
            now(),
            &random_token(16),
            Some("forged"),
        )
        .unwrap();
    let a = get_userinfo(&f, &[&dpop_auth], &[&bad_nonce], PeerCertificate(None)).await;
    assert_eq!((a.status, a.error()), (401, "use_dpop_nonce"));
    assert!(
        a.challenges[0].starts_with("DPoP error=\"use_dpop_nonce\""),
        "{:?}",
        a.challenges
    );
    assert!(f.state.nonces.is_valid(a.dpop_nonce.as_deref().unwrap(), now()));
    // A nonce the token endpoint issued (same key): accepted.
    let nonce = f.state.nonces.issue(now());
    let with_nonce = key
        .dpop_proof(
            "GET",
            USERINFO_URL,
            Some(&token),
            now(),
            &random_token(16),
            Some(&nonce),
        )
        .unwrap();
    let a = get_userinfo(&f, &[&dpop_auth], &[&with_nonce], PeerCertificate(None)).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn userinfo_needs_openid_and_a_known_token() {
    let f = fixture().await;
    let cnf = json!({"x5t#S256": x5t("A")});
    // RFC 6750 §3.1: insufficient_scope names the scope needed.
    let (token, _) = mint(&f, "mtls-client", "accounts", cnf.clone()).await;
    let a = get_userinfo(&f, &[&format!("Bearer {token}")], &[], cert("A")).await;
    assert_eq!((a.status, a.error()), (403, "insufficient_scope"));
    assert!(
        a.challenges[0].starts_with("Bearer error=\"insufficient_scope\"")
            && a.challenges[0].ends_with("scope=\"openid\""),
        "{:?}",
        a.challenges
    );
    // Signed by us but never recorded: not active.
    let t = now();
    let unknown = f
        .state
        .keys
        .get()
        .current
        .sign_jwt(
            Some("at+jwt"),
            &json!({"iss": ISSUER, "sub": "user-taro", "aud": "https://api.bank.example", "exp": t + 300,
                "iat": t, "jti": "never-issued", "client_id": "mtls-client", "scope": "openid", "cnf": cnf}),
        )
        .unwrap();
    let a = get_userinfo(&f, &[&format!("Bearer {unknown}")], &[], cert("A")).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    // Another signer, or an unbound token: refused.
    let stranger = SigningKey::generate(Algorithm::ES256, None).unwrap();
    let forged = stranger
        .sign_jwt(
            Some("at+jwt"),
            &json!({"iss": ISSUER, "sub": "user-taro", "aud": "https://api.bank.example", "exp": t + 300,
                "iat": t, "jti": "j", "client_id": "mtls-client", "scope": "openid", "cnf": cnf}),
        )
        .unwrap();
    let a = get_userinfo(&f, &[&format!("Bearer {forged}")], &[], cert("A")).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    let (unbound, _) = mint(&f, "mtls-client", "openid", json!({})).await;
    let a = get_userinfo(&f, &[&format!("Bearer {unbound}")], &[], cert("A")).await;
    assert_eq!((a.status, a.error()), (401, "invalid_token"));
    // A good token, but an access_token query parameter besides (FAPI 2.0 §5.3.4): refused.
    let (good, _) = mint(&f, "mtls-client", "openid", cnf).await;
    let a = get_userinfo_at(
        &f,
        "/userinfo?access_token=x",
        &[&format!("Bearer {good}")],
        &[],
        cert("A"),
    )
    .await;
    assert_eq!((a.status, a.error()), (400, "invalid_request"));
    let a = get_userinfo(&f, &[&format!("Bearer {good}")], &[], cert("A")).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

// --- One table of hostile JWTs through every endpoint that verifies one (fapi-core's validator) ---

/// The hostile changes of fapi-core's tests/validator.rs, applied to a JWT an endpoint accepts.
const HOSTILE: [&str; 10] = [
    "alg none",
    "HS256 with the public key",
    "embedded jwk",
    "jku",
    "x5u",
    "unknown crit",
    "expired",
    "future iat",
    "long lifetime",
    "wrong aud",
];

/// `header` and `claims`, broken as `case` says, signed by `key` (or by an attacker, or not at all).
/// For a DPoP proof (`dpop`) the jwk header is the mechanism, so "embedded jwk" is a private jwk;
/// "expired" is an old `iat`; "wrong aud" is another `htu`.
fn hostile(case: &str, key: &SigningKey, header: &Value, claims: &Value, dpop: bool) -> String {
    let (mut h, mut c) = (header.clone(), claims.clone());
    let t = c["iat"].as_i64().or_else(|| c["nbf"].as_i64()).unwrap();
    let unsigned = |h: &Value, c: &Value| {
        format!(
            "{}.{}",
            fapi_core::b64::encode(h.to_string()),
            fapi_core::b64::encode(c.to_string())
        )
    };
    match case {
        "alg none" => {
            h["alg"] = json!("none");
            return format!("{}.", unsigned(&h, &c));
        }
        "HS256 with the public key" => {
            h["alg"] = json!("HS256");
            let input = unsigned(&h, &c);
            let secret = key.public_jwk().to_string();
            let tag = ring::hmac::sign(
                &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
                input.as_bytes(),
            );
            return format!("{input}.{}", fapi_core::b64::encode(tag.as_ref()));
        }
        "embedded jwk" => {
            let attacker = SigningKey::generate(Algorithm::ES256, Some(key.kid().to_string())).unwrap();
            h["jwk"] = if dpop {
                attacker.private_jwk().clone()
            } else {
                attacker.public_jwk().clone()
            };
            return attacker.sign_with_header(&h, &c).unwrap();
        }
        "jku" => h["jku"] = json!("https://attacker.example/jwks"),
        "x5u" => h["x5u"] = json!("https://attacker.example/cert.pem"),
        "unknown crit" => {
            h["crit"] = json!(["urn:example:ext"]);
            h["urn:example:ext"] = json!(true);
        }
        "expired" if dpop => c["iat"] = json!(t - 3600),
        "expired" => c["exp"] = json!(t - 3600),
        "future iat" => c["iat"] = json!(t + 3600),
        "long lifetime" => c["exp"] = json!(t + 90_000),
        "wrong aud" if dpop => c["htu"] = json!("https://evil.example/token"),
        "wrong aud" => c["aud"] = json!("https://evil.example"),
        other => panic!("unknown case {other}"),
    }
    key.sign_with_header(&h, &c).unwrap()
}

/// Status and OAuth error (or `active` for introspection) of a response.
async fn answer(r: axum::response::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn form(pairs: &[(&str, &str)]) -> super::support::FormBody {
    Ok(axum::Form(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    ))
}

fn host(h: &'static str, extra: &[(&'static str, String)]) -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::HOST, axum::http::HeaderValue::from_static(h));
    for (k, v) in extra {
        headers.append(*k, axum::http::HeaderValue::from_str(v).unwrap());
    }
    headers
}

/// `POST /token` through the axum handler, as the DPoP client, with this assertion and proof.
async fn token_endpoint(f: &Fixture, assertion: &str, proof: &str) -> (u16, Value) {
    let r = super::token::token(
        axum::extract::State(f.state.clone()),
        PeerCertificate(None),
        host("as.example", &[("dpop", proof.to_string())]),
        form(&[
            ("grant_type", "authorization_code"),
            ("code", "no-such-code"),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_assertion_type", crate::client_auth::JWT_BEARER),
            ("client_assertion", assertion),
        ]),
    )
    .await;
    answer(r).await
}

/// A DPoP proof for the token endpoint with a fresh server nonce: its header and claims.
fn proof_parts(f: &Fixture, t: i64) -> (Value, Value) {
    (
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": f.client_key.public_jwk_bare()}),
        json!({"jti": random_token(16), "htm": "POST", "htu": TOKEN_URL, "iat": t,
               "nonce": f.state.nonces.issue(t)}),
    )
}

fn assertion_parts(f: &Fixture, t: i64) -> (Value, Value) {
    (
        json!({"alg": "ES256", "kid": f.client_key.kid()}),
        json!({"iss": "dpop-client", "sub": "dpop-client", "aud": ISSUER, "iat": t, "exp": t + 60,
               "jti": random_token(16)}),
    )
}

fn request_object_parts(f: &Fixture, t: i64) -> (Value, Value) {
    let challenge = hashed(VERIFIER);
    (
        json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": f.client_key.kid()}),
        json!({"iss": "dpop-client", "aud": ISSUER, "client_id": "dpop-client", "nbf": t - 5,
               "exp": t + 300, "jti": random_token(16), "response_type": "code",
               "redirect_uri": REDIRECT, "scope": "openid accounts", "code_challenge": challenge,
               "code_challenge_method": "S256", "state": "s", "nonce": "n"}),
    )
}

/// `POST /par` through the axum handler, as the DPoP client, with this request object.
async fn par_endpoint(f: &Fixture, request_object: &str) -> (u16, Value) {
    let t = now();
    let (h, c) = assertion_parts(f, t);
    let assertion = f.client_key.sign_with_header(&h, &c).unwrap();
    let r = crate::frontchannel::par::par(
        axum::extract::State(f.state.clone()),
        PeerCertificate(None),
        host("as.example", &[]),
        form(&[
            ("client_id", "dpop-client"),
            ("client_assertion_type", crate::client_auth::JWT_BEARER),
            ("client_assertion", &assertion),
            ("request", request_object),
        ]),
    )
    .await;
    match r {
        Ok(r) => answer(r).await,
        Err(e) => answer(axum::response::IntoResponse::into_response(e)).await,
    }
}

/// `POST /introspect` through the axum handler, as a resource server holding the feed credential.
async fn introspect_endpoint(f: &Fixture, token: &str) -> (u16, Value) {
    let r = super::revoke::introspect(
        axum::extract::State(f.state.clone()),
        PeerCertificate(None),
        host("as.example", &[("authorization", "Bearer feed-secret".into())]),
        form(&[("token", token)]),
    )
    .await;
    answer(r).await
}

/// `POST /revoke` through the axum handler, as the mTLS client.
async fn revoke_endpoint(f: &Fixture, token: &str) -> (u16, Value) {
    let r = super::revoke::revoke(
        axum::extract::State(f.state.clone()),
        cert("A"),
        form(&[("client_id", "mtls-client"), ("token", token)]),
    )
    .await;
    answer(r).await
}

#[tokio::test]
async fn hostile_jwts_are_refused_by_every_endpoint_with_its_error() {
    let f = fixture().await;
    let mut failures = Vec::new();
    let mut check = |what: String, got: (u16, Value), status: u16, error: &str| {
        let ok = got.0 == status
            && match error {
                "active:false" => got.1 == json!({"active": false}),
                "revoked:none" => true,
                e => got.1["error"] == e,
            };
        if !ok {
            failures.push(format!("{what}: expected {status} {error}, got {got:?}"));
        }
    };

    // Client assertion at the token endpoint: 401 invalid_client. A good assertion gets past client
    // authentication (to invalid_grant for the unknown code).
    let t = now();
    let proof = |f: &Fixture| {
        let (h, c) = proof_parts(f, t);
        f.client_key.sign_with_header(&h, &c).unwrap()
    };
    let (h, c) = assertion_parts(&f, t);
    let good = f.client_key.sign_with_header(&h, &c).unwrap();
    check(
        "client assertion, valid".into(),
        token_endpoint(&f, &good, &proof(&f)).await,
        400,
        "invalid_grant",
    );
    for case in HOSTILE {
        let (h, c) = assertion_parts(&f, t);
        let bad = hostile(case, &f.client_key, &h, &c, false);
        check(
            format!("client assertion, {case}"),
            token_endpoint(&f, &bad, &proof(&f)).await,
            401,
            "invalid_client",
        );
    }

    // DPoP proof at the token endpoint: 400 invalid_dpop_proof, before the assertion is spent.
    for case in HOSTILE {
        let (h, c) = proof_parts(&f, t);
        let bad = hostile(case, &f.client_key, &h, &c, true);
        let (ah, ac) = assertion_parts(&f, t);
        let assertion = f.client_key.sign_with_header(&ah, &ac).unwrap();
        check(
            format!("DPoP proof, {case}"),
            token_endpoint(&f, &assertion, &bad).await,
            400,
            "invalid_dpop_proof",
        );
    }

    // Request object at PAR: 400 invalid_request_object. A good one is stored (201).
    let (h, c) = request_object_parts(&f, t);
    let good = f.client_key.sign_with_header(&h, &c).unwrap();
    let (status, body) = par_endpoint(&f, &good).await;
    assert_eq!(status, 201, "the valid request object is refused: {body}");
    for case in HOSTILE {
        let (h, c) = request_object_parts(&f, t);
        let bad = hostile(case, &f.client_key, &h, &c, false);
        check(
            format!("request object, {case}"),
            par_endpoint(&f, &bad).await,
            400,
            "invalid_request_object",
        );
    }

    // Our own access tokens: introspection answers active:false, UserInfo 401 invalid_token, and
    // revocation (200 whatever the token, RFC 7009 §2.2) revokes nothing. The hostile tokens carry
    // the jti of a live token, so accepting one would show.
    let (token, jti) = mint(
        &f,
        "mtls-client",
        "openid accounts",
        json!({"x5t#S256": x5t("A")}),
    )
    .await;
    let server_key = &f.state.keys.get().current;
    let parts = || {
        (
            json!({"alg": "ES256", "typ": "at+jwt", "kid": server_key.kid()}),
            claims(&token),
        )
    };
    let (_, body) = introspect_endpoint(&f, &token).await;
    assert_eq!(body["active"], json!(true), "the valid token is active");
    let ok = get_userinfo(&f, &[&format!("Bearer {token}")], &[], cert("A")).await;
    assert_eq!(ok.status, 200, "the valid token reads UserInfo: {:?}", ok.body);
    for case in HOSTILE {
        let (h, c) = parts();
        let bad = hostile(case, server_key, &h, &c, false);
        check(
            format!("own token at introspection, {case}"),
            introspect_endpoint(&f, &bad).await,
            200,
            "active:false",
        );
        let a = get_userinfo(&f, &[&format!("Bearer {bad}")], &[], cert("A")).await;
        check(
            format!("own token at UserInfo, {case}"),
            (a.status, a.body.clone()),
            401,
            "invalid_token",
        );
        check(
            format!("own token at revocation, {case}"),
            revoke_endpoint(&f, &bad).await,
            200,
            "revoked:none",
        );
        let (_, still) = introspect_endpoint(&f, &token).await;
        assert_eq!(
            still["active"],
            json!(true),
            "revoking a hostile token ({case}) revoked {jti}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The prepared key set in the state is what verifies our tokens, and replacing it (as after a key
/// rotation) takes effect on the next request: a token of a key the set lacks is inactive until the
/// set holds that key.
#[tokio::test]
async fn own_tokens_verify_with_the_key_set_held_in_the_state_and_its_replacement() {
    let f = fixture().await;
    let rotated = SigningKey::generate(Algorithm::ES256, Some("rotated".into())).unwrap();
    let t = now();
    let jti = random_token(16);
    let claims = json!({
        "iss": ISSUER, "sub": "user-taro", "aud": "https://api.bank.example", "exp": t + 300,
        "iat": t, "nbf": t, "jti": jti, "client_id": "mtls-client", "scope": "openid",
        "cnf": {"x5t#S256": x5t("A")},
    });
    let token = rotated.sign_jwt(Some("at+jwt"), &claims).unwrap();
    f.state
        .store
        .record_access_token(&jti, None, "mtls-client", &claims, t + 300)
        .await
        .unwrap();
    let who = Introspector::ResourceServer;
    assert_eq!(
        introspection(&f.state, &token, &who, t).await.unwrap(),
        json!({"active": false})
    );
    let current = SigningKey::from_jwk(f.state.keys.get().current.private_jwk()).unwrap();
    let keys = Keys {
        current,
        next: Some(rotated),
        retired: vec![],
    };
    f.state.verifying_keys.replace(&keys).unwrap();
    assert_eq!(
        introspection(&f.state, &token, &who, t).await.unwrap()["active"],
        json!(true)
    );
    // The token expires on the state's clock with no leeway: inactive from its exp on.
    assert_eq!(
        introspection(&f.state, &token, &who, t + 300).await.unwrap(),
        json!({"active": false})
    );
}

/// `fapi-as rotate-keys` + SIGHUP: `AppState::reload_keys` swaps the signing and verifying keys
/// together; a token of the retired key still verifies, new tokens carry the new key, /jwks lists both.
#[tokio::test]
async fn reloading_the_key_folder_swaps_signing_and_verifying_keys() {
    let dir = std::env::temp_dir().join(format!("fapi-as-reload-{}", random_token(8)));
    let keys_dir = dir.join("keys");
    let alg = "ES256";
    let first = Keys::load_or_create(&keys_dir, alg).unwrap();
    let mut config: Config = toml::from_str(&format!(
        "issuer = \"{ISSUER}\"\nmtls_base = \"https://mtls.as.example\"\n[tls]\ncert = \"x\"\nkey = \"y\"\n[feed]\ntoken = \"feed-secret\"\n"
    ))
    .unwrap();
    config.keys.dir = keys_dir.clone();
    config.keys.alg = alg.into();
    let store = Store::connect(&format!("sqlite://{}/as.db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let state = AppState::new(
        config,
        store,
        first,
        &[7u8; 32],
        Clock::system(),
        Random::system(),
    )
    .unwrap();
    let old_kid = state.keys.get().current.kid().to_string();
    let t = now();
    let claims = |jti: &str| {
        json!({"iss": ISSUER, "sub": "user-taro", "aud": "https://api.bank.example", "exp": t + 300,
               "iat": t, "jti": jti, "client_id": "mtls-client", "scope": "accounts"})
    };
    let old_token = state
        .keys
        .get()
        .current
        .sign_jwt(Some("at+jwt"), &claims("old"))
        .unwrap();
    let who = Introspector::ResourceServer;
    for (jti, token) in [("old", &old_token)] {
        state
            .store
            .record_access_token(jti, None, "mtls-client", &claims(jti), t + 300)
            .await
            .unwrap();
        assert_eq!(
            introspection(&state, token, &who, t).await.unwrap()["active"],
            json!(true)
        );
    }

    Keys::rotate(&keys_dir, alg).unwrap();
    // Before the reload the server still signs with the old key.
    assert_eq!(state.keys.get().current.kid(), old_kid);
    state.reload_keys().unwrap();
    let new_kid = state.keys.get().current.kid().to_string();
    assert_ne!(new_kid, old_kid);
    let new_token = state
        .keys
        .get()
        .current
        .sign_jwt(Some("at+jwt"), &claims("new"))
        .unwrap();
    state
        .store
        .record_access_token("new", None, "mtls-client", &claims("new"), t + 300)
        .await
        .unwrap();
    assert_eq!(
        introspection(&state, &new_token, &who, t).await.unwrap()["active"],
        json!(true)
    );
    assert_eq!(
        introspection(&state, &old_token, &who, t).await.unwrap()["active"],
        json!(true)
    );
    let published = state.keys.get().jwks();
    let kids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );

    // A folder that does not load leaves the keys in use as they were.
    std::fs::write(keys_dir.join("current.jwk.json"), "not a key").unwrap();
    assert!(state.reload_keys().is_err());
    assert_eq!(state.keys.get().current.kid(), new_kid);
    assert_eq!(
        introspection(&state, &new_token, &who, t).await.unwrap()["active"],
        json!(true)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
