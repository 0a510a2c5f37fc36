//! WebAuthn authentication (fapi-as `webauthn::verify_authentication`, W3C WebAuthn L2 §7.2) for a
//! stored ES256 passkey: the posted JSON, clientDataJSON, authenticator data and the DER signature
//! (`der_signature_to_fixed`).
//!
//! Input: a mode byte, then
//! - 0: the JSON the page posts (`AuthenticationResponse::from_json`);
//! - 1: authenticator data, with a valid clientDataJSON, signed here with the passkey;
//! - 2: clientDataJSON `0xFF` authenticator data, signed here with the passkey;
//! - 3: a DER ECDSA signature: strict DER, so an accepted one re-encodes to the same bytes.
//!
//! Beyond "no panic": an accepted assertion is re-checked, independently of fapi-as: clientDataJSON
//! type, challenge and origin; RP ID hash, UP and UV flags; a counter above the stored one.
#![no_main]

use fapi_as::webauthn::{
    der_signature_to_fixed, verify_authentication, AssertionResponse, AuthenticationResponse, RelyingParty,
};
use fapi_core::b64;
use fapi_fuzz::*;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Strict DER of a positive INTEGER (X.690 §8.3, §10): minimal, a leading zero only for the sign.
fn der_integer(v: &[u8]) -> Vec<u8> {
    let start = v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1);
    let mut body = v[start..].to_vec();
    if body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    let mut out = vec![0x02, body.len() as u8];
    out.extend(body);
    out
}

fn signed(client_data_json: &[u8], auth_data: &[u8]) -> AuthenticationResponse {
    let mut message = auth_data.to_vec();
    message.extend_from_slice(&b64::sha256(client_data_json));
    AuthenticationResponse {
        id: PASSKEY_ID.into(),
        raw_id: Some(PASSKEY_ID.into()),
        kind: "public-key".into(),
        response: AssertionResponse {
            client_data_json: b64::encode(client_data_json),
            authenticator_data: b64::encode(auth_data),
            signature: b64::encode(passkey_sign_der(&message)),
            user_handle: Some(b64::encode(PASSKEY_USER)),
        },
    }
}

fuzz_target!(init: fapi_fuzz::init(), |data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let posted = match mode % 4 {
        0 => match std::str::from_utf8(rest).ok().and_then(|t| AuthenticationResponse::from_json(t).ok()) {
            Some(r) => r,
            None => return,
        },
        1 => signed(&client_data("webauthn.get"), rest),
        2 => {
            let (client, auth) = split_ff(rest);
            signed(client, auth)
        }
        _ => {
            if let Some(fixed) = der_signature_to_fixed(rest) {
                let mut der = der_integer(&fixed[..32]);
                der.extend(der_integer(&fixed[32..]));
                der.splice(0..0, [0x30, der.len() as u8]);
                assert_eq!(der, rest, "DER signature is not strict");
            }
            return;
        }
    };
    let rp = RelyingParty::from_issuer(WEBAUTHN_ISSUER).expect("relying party");
    let stored = stored_passkey();
    let Ok(verified) = verify_authentication(&rp, WEBAUTHN_CHALLENGE, &stored, &posted) else {
        return;
    };
    let client = b64::decode(posted.response.client_data_json.trim_end_matches('=')).expect("b64");
    let client: Value = serde_json::from_slice(&client).expect("clientDataJSON");
    assert_eq!(client["type"], "webauthn.get");
    assert_eq!(client["challenge"], WEBAUTHN_CHALLENGE);
    assert_eq!(client["origin"], rp.origin.as_str());
    assert_ne!(client.get("crossOrigin"), Some(&Value::Bool(true)));
    let auth = b64::decode(posted.response.authenticator_data.trim_end_matches('=')).expect("b64");
    let raw = raw_auth_data(&auth).expect("authenticator data");
    assert_eq!(raw.rp_id_hash, b64::sha256(rp.id.as_bytes()));
    assert_eq!(raw.flags & 0x05, 0x05, "UP and UV");
    assert_eq!(verified.sign_count, i64::from(raw.sign_count));
    assert!(verified.sign_count > PASSKEY_SIGN_COUNT, "counter did not increase");
    assert_eq!(verified.credential_id, PASSKEY_ID);
});
