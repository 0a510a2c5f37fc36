//! WebAuthn registration (fapi-as `webauthn::verify_registration`, W3C WebAuthn L2 §7.1): the posted
//! credential JSON, clientDataJSON, the CBOR attestation object, the authenticator data (§6.1) and
//! the COSE key in it, for a fixed relying party and challenge.
//!
//! Input: a mode byte, then
//! - 0: the JSON the page posts (`RegistrationResponse::from_json`);
//! - 1: the attestation object (CBOR), with a valid clientDataJSON;
//! - 2: the authenticator data, wrapped by this target in `{fmt: "none", attStmt: {}, authData}`.
//!   In modes 1 and 2 the posted credential ID is read from the authenticator data's fixed layout.
//!
//! Beyond "no panic": an accepted credential is re-checked against the raw bytes, independently of
//! fapi-as: RP ID hash, UP and UV flags, counter, AAGUID, backup flags and credential ID are those of
//! the authenticator data; the stored JWK is a valid public key for the stated algorithm.
#![no_main]

use ciborium::Value as Cbor;
use fapi_as::webauthn::{verify_registration, AttestationResponse, RegistrationResponse, RelyingParty};
use fapi_core::b64;
use fapi_core::jwk::PublicJwk;
use fapi_fuzz::*;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The authData member of an attestation object, found with a plain CBOR decoding.
fn auth_data_of(attestation: &[u8]) -> Option<Vec<u8>> {
    let Cbor::Map(entries) = ciborium::de::from_reader::<Cbor, _>(attestation).ok()? else {
        return None;
    };
    entries.into_iter().find_map(|(k, v)| match (k, v) {
        (Cbor::Text(k), Cbor::Bytes(b)) if k == "authData" => Some(b),
        _ => None,
    })
}

fn response(attestation: &[u8], auth_data: Option<&[u8]>) -> RegistrationResponse {
    let id = auth_data
        .and_then(raw_auth_data)
        .and_then(|a| a.attested)
        .map(|(_, id)| b64::encode(id))
        .unwrap_or_default();
    RegistrationResponse {
        id: id.clone(),
        raw_id: Some(id),
        kind: "public-key".into(),
        response: AttestationResponse {
            client_data_json: b64::encode(client_data("webauthn.create")),
            attestation_object: b64::encode(attestation),
            transports: vec!["internal".into()],
        },
    }
}

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rp = RelyingParty::from_issuer(WEBAUTHN_ISSUER).expect("relying party");
    let posted = match mode % 3 {
        0 => match std::str::from_utf8(rest).ok().and_then(|t| RegistrationResponse::from_json(t).ok()) {
            Some(r) => r,
            None => return,
        },
        1 => response(rest, auth_data_of(rest).as_deref()),
        _ => response(&attestation_none(rest), Some(rest)),
    };
    let Ok(cred) = verify_registration(&rp, WEBAUTHN_CHALLENGE, &posted) else {
        return;
    };
    let client = b64::decode(posted.response.client_data_json.trim_end_matches('=')).expect("b64");
    let client: Value = serde_json::from_slice(&client).expect("clientDataJSON");
    assert_eq!(client["type"], "webauthn.create");
    assert_eq!(client["challenge"], WEBAUTHN_CHALLENGE);
    assert_eq!(client["origin"], rp.origin.as_str());
    assert_ne!(client.get("crossOrigin"), Some(&Value::Bool(true)));
    let attestation = b64::decode(posted.response.attestation_object.trim_end_matches('=')).expect("b64");
    let auth = auth_data_of(&attestation).expect("authData");
    let raw = raw_auth_data(&auth).expect("authenticator data");
    assert_eq!(raw.rp_id_hash, b64::sha256(rp.id.as_bytes()));
    assert_eq!(raw.flags & 0x05, 0x05, "UP and UV");
    assert_eq!(cred.sign_count, i64::from(raw.sign_count));
    assert_eq!(cred.backup_eligible, raw.flags & 0x08 != 0);
    assert_eq!(cred.backed_up, raw.flags & 0x10 != 0);
    let (aaguid, id) = raw.attested.expect("attested credential data");
    assert_eq!(&cred.aaguid[..], aaguid);
    assert_eq!(cred.credential_id, b64::encode(id));
    assert!(!id.is_empty() && id.len() <= 1023);
    let jwk: Value = serde_json::from_str(&cred.public_key_jwk).expect("JWK text");
    let key = PublicJwk::from_value(&jwk).expect("a public JWK");
    assert!(key.suits(cred.alg), "{jwk} does not suit {:?}", cred.alg);
    assert!(matches!(cred.attestation_format.as_str(), "none" | "packed"));
});
