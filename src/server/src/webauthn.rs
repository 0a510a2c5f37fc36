//! WebAuthn Level 2 relying-party verification for passkeys (W3C Web Authentication Level 2,
//! <https://www.w3.org/TR/webauthn-2/>): registration (§7.1) and authentication (§7.2) as pure
//! functions over what the browser sends. The front channel wires them to its pages and keeps the
//! challenge (single use, in the login session) and the credentials (`passkeys` table, through
//! `Store::put_passkey`, `passkey`, `passkeys_of_user`, `update_sign_count`).
//!
//! # Policy
//! - RP ID = the issuer's host; origin = the issuer's scheme, host and (non-default) port. The issuer
//!   must be `https://` with a domain name (`localhost` included): browsers refuse IP addresses as RP
//!   IDs. `crossOrigin: true` (an iframe) is refused.
//! - User presence (UP) and user verification (UV) are both required, at registration and at every
//!   sign-in: a passkey with UV is what earns `ACR_PASSKEY`.
//! - Credential keys: COSE alg -7 (ES256, EC2 P-256), -8 (EdDSA, OKP Ed25519) and -257 (RS256, RSA of
//!   2048 bits or more); stored as a public JWK (JSON text with its `alg`) and verified with fapi-core.
//! - Attestation: none is verified. `fmt` "none" (with an empty `attStmt`) and "packed" are accepted;
//!   a "packed" statement (self attestation, or a certificate chain we hold no trust anchors for) is
//!   ignored, so every credential is treated as unattested (§6.5.3, "None"). Other formats are refused.
//!   The options ask for `attestation: "none"`, for which browsers normally send fmt "none".
//! - Signature counter (§6.1.1): it must increase, unless the stored and the new value are both 0
//!   (authenticators without a counter, e.g. synced passkeys). A regression is refused as a possible
//!   cloned authenticator; `Store::update_sign_count` applies the same rule atomically.
//!
//! Not checked here (the caller does it): that the challenge was issued by this server to this
//! session and is used once; at registration, that the credential ID is not registered yet (§7.1
//! step 22; `Store::put_passkey` refuses a duplicate); at sign-in, that the credential found by its
//! ID belongs to the user being signed in. Extensions are parsed for well-formedness and ignored.
//! Token binding (deprecated) is ignored.
//!
//! # What the pages do and send (also for the Chromium virtual-authenticator test)
//! Registration: the page gets [`creation_options`] (JSON with base64url strings) and calls
//! `navigator.credentials.create({publicKey})` after turning `challenge`, `user.id` and each
//! `excludeCredentials[].id` into `ArrayBuffer`s (or `PublicKeyCredential.parseCreationOptionsFromJSON`).
//! It POSTs the result as JSON — `JSON.stringify(credential)` (its `toJSON()`, Chromium 129+) gives
//! exactly this shape, extra members are ignored:
//! ```json
//! {"id": "<b64url credential id>", "rawId": "<b64url, same>", "type": "public-key",
//!  "response": {"clientDataJSON": "<b64url>", "attestationObject": "<b64url>", "transports": ["internal"]}}
//! ```
//! Sign-in: the page gets [`request_options`], calls `navigator.credentials.get({publicKey})` (with
//! `challenge` and `allowCredentials[].id` as `ArrayBuffer`s) and POSTs:
//! ```json
//! {"id": "<b64url>", "rawId": "<b64url>", "type": "public-key",
//!  "response": {"clientDataJSON": "<b64url>", "authenticatorData": "<b64url>",
//!               "signature": "<b64url>", "userHandle": "<b64url> or null"}}
//! ```
//! base64url is RFC 4648 §5 without padding (trailing `=` is tolerated). In JavaScript:
//! `b64u = b => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g,'-').replace(/\//g,'_').replace(/=+$/,'')`.
//! The user handle (`user.id`) is the UTF-8 bytes of the store's `user_id` (at most 64 bytes).
//!
//! Chromium's virtual authenticator (CDP `WebAuthn.enable`, then `WebAuthn.addVirtualAuthenticator`
//! with `{protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true,
//! isUserVerified: true, automaticPresenceSimulation: true}`) produces ES256 credentials that pass
//! these checks. Chromium refuses WebAuthn on an https origin with a certificate error, except on
//! `localhost`: run that test with the issuer `https://localhost:<port>`.

use ciborium::Value as Cbor;
use fapi_core::alg::{Algorithm, AlgorithmName};
use fapi_core::b64;
use fapi_core::jwk::{verify_with, PublicJwk};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// COSE algorithm identifiers (IANA COSE Algorithms registry) this relying party accepts.
pub const COSE_ES256: i64 = -7;
pub const COSE_EDDSA: i64 = -8;
pub const COSE_RS256: i64 = -257;
/// In order of preference, as `pubKeyCredParams` offers them.
pub const SUPPORTED_COSE_ALGS: [i64; 3] = [COSE_ES256, COSE_EDDSA, COSE_RS256];

/// Authenticator data flags (§6.1).
const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_BE: u8 = 0x08;
const FLAG_BS: u8 = 0x10;
const FLAG_AT: u8 = 0x40;
const FLAG_ED: u8 = 0x80;

/// §4 ("Credential ID"): at most 1023 bytes.
pub const MAX_CREDENTIAL_ID_LEN: usize = 1023;
/// A user handle is at most 64 bytes (§5.4.3).
pub const MAX_USER_HANDLE_LEN: usize = 64;
const MAX_CLIENT_DATA_LEN: usize = 8 * 1024;
const MAX_ATTESTATION_OBJECT_LEN: usize = 32 * 1024;
const MAX_AUTHENTICATOR_DATA_LEN: usize = 8 * 1024;
/// An RSA-8192 signature is 1024 bytes; DER ECDSA and Ed25519 are far smaller.
const MAX_SIGNATURE_LEN: usize = 1024;
/// The most a posted credential JSON may weigh.
pub const MAX_RESPONSE_JSON_LEN: usize = 64 * 1024;
/// Nesting depth allowed in CBOR (COSE keys and attestation statements are shallow).
const CBOR_DEPTH: usize = 16;

/// Why a registration or an assertion was refused. Each variant names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebauthnError {
    /// The issuer is not an `https://` URL whose host can be an RP ID (a domain, not an IP address).
    BadIssuer(String),
    /// The expected challenge is shorter than 16 bytes (a server bug, not a client error).
    WeakChallenge,
    /// The posted JSON or one of its fields is missing or not well formed; names the field.
    Malformed(&'static str),
    /// A field exceeds its size bound; names the field.
    TooLarge(&'static str),
    /// §7.1 step 7, §7.2 step 11: `clientDataJSON.type` is not the ceremony's.
    WrongType { expected: &'static str, got: String },
    /// §7.1 step 8, §7.2 step 12: `clientDataJSON.challenge` is not the one issued.
    ChallengeMismatch,
    /// §7.1 step 9, §7.2 step 13: `clientDataJSON.origin` is not the issuer's origin.
    OriginMismatch { expected: String, got: String },
    /// `clientDataJSON.crossOrigin` is true: the ceremony ran in a cross-origin iframe.
    CrossOrigin,
    /// CBOR (attestation object, COSE key, extensions) that does not decode or has the wrong shape.
    MalformedCbor(&'static str),
    /// Authenticator data shorter than its fixed fields or with bytes after its last field.
    MalformedAuthenticatorData(&'static str),
    /// §7.1 step 13, §7.2 step 15: `rpIdHash` is not SHA-256 of the RP ID.
    RpIdHashMismatch,
    /// §7.1 step 14, §7.2 step 16: the UP flag is not set.
    UserNotPresent,
    /// §7.1 step 15, §7.2 step 17: the UV flag is not set (this relying party requires it).
    UserNotVerified,
    /// A registration whose authenticator data carries no attested credential data (AT flag).
    NoAttestedCredential,
    /// §7.1 step 17: the credential's algorithm is not one of [`SUPPORTED_COSE_ALGS`].
    UnsupportedAlgorithm(i64),
    /// The credential public key is not usable (bad curve, short RSA modulus, point off the curve...).
    BadPublicKey(String),
    /// §7.1 step 19: an attestation format other than "none" and "packed".
    UnsupportedAttestationFormat(String),
    /// The credential ID in the response is not the one in the authenticator data / the stored one.
    CredentialIdMismatch,
    /// §7.2 step 6: the user handle is not the stored credential's owner.
    UserHandleMismatch,
    /// The stored public key cannot be loaded (a storage problem, not a client error).
    BadStoredKey,
    /// §7.2 step 20: the signature does not verify with the credential's public key.
    BadSignature,
    /// §7.2 step 21: the signature counter did not increase: possibly a cloned authenticator.
    SignCountNotIncreased { stored: i64, received: i64 },
}

impl WebauthnError {
    /// A stable reason code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            WebauthnError::BadIssuer(_) => "bad_issuer",
            WebauthnError::WeakChallenge => "weak_challenge",
            WebauthnError::Malformed(_) => "malformed",
            WebauthnError::TooLarge(_) => "too_large",
            WebauthnError::WrongType { .. } => "wrong_type",
            WebauthnError::ChallengeMismatch => "challenge_mismatch",
            WebauthnError::OriginMismatch { .. } => "origin_mismatch",
            WebauthnError::CrossOrigin => "cross_origin",
            WebauthnError::MalformedCbor(_) => "malformed_cbor",
            WebauthnError::MalformedAuthenticatorData(_) => "malformed_authenticator_data",
            WebauthnError::RpIdHashMismatch => "rp_id_hash_mismatch",
            WebauthnError::UserNotPresent => "user_not_present",
            WebauthnError::UserNotVerified => "user_not_verified",
            WebauthnError::NoAttestedCredential => "no_attested_credential",
            WebauthnError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            WebauthnError::BadPublicKey(_) => "bad_public_key",
            WebauthnError::UnsupportedAttestationFormat(_) => "unsupported_attestation_format",
            WebauthnError::CredentialIdMismatch => "credential_id_mismatch",
            WebauthnError::UserHandleMismatch => "user_handle_mismatch",
            WebauthnError::BadStoredKey => "bad_stored_key",
            WebauthnError::BadSignature => "bad_signature",
            WebauthnError::SignCountNotIncreased { .. } => "sign_count_not_increased",
        }
    }
}

impl std::fmt::Display for WebauthnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebauthnError::BadIssuer(why) => write!(f, "the issuer cannot be a WebAuthn RP: {why}"),
            WebauthnError::WeakChallenge => f.write_str("the challenge is shorter than 16 bytes"),
            WebauthnError::Malformed(field) => write!(f, "\"{field}\" is missing or malformed"),
            WebauthnError::TooLarge(field) => write!(f, "\"{field}\" is too large"),
            WebauthnError::WrongType { expected, got } => {
                write!(f, "clientDataJSON.type is \"{got}\", expected \"{expected}\"")
            }
            WebauthnError::ChallengeMismatch => f.write_str("the challenge does not match"),
            WebauthnError::OriginMismatch { expected, got } => {
                write!(f, "origin \"{got}\" is not \"{expected}\"")
            }
            WebauthnError::CrossOrigin => f.write_str("cross-origin ceremonies are not allowed"),
            WebauthnError::MalformedCbor(what) => write!(f, "malformed CBOR in {what}"),
            WebauthnError::MalformedAuthenticatorData(what) => {
                write!(f, "malformed authenticator data: {what}")
            }
            WebauthnError::RpIdHashMismatch => f.write_str("rpIdHash is not this relying party's"),
            WebauthnError::UserNotPresent => f.write_str("user presence (UP) is not asserted"),
            WebauthnError::UserNotVerified => f.write_str("user verification (UV) is not asserted"),
            WebauthnError::NoAttestedCredential => {
                f.write_str("the authenticator data carries no attested credential")
            }
            WebauthnError::UnsupportedAlgorithm(a) => {
                write!(f, "COSE algorithm {a} is not supported (-7, -8, -257)")
            }
            WebauthnError::BadPublicKey(why) => write!(f, "unusable credential public key: {why}"),
            WebauthnError::UnsupportedAttestationFormat(fmt) => {
                write!(f, "attestation format \"{fmt}\" is not supported")
            }
            WebauthnError::CredentialIdMismatch => f.write_str("the credential ID does not match"),
            WebauthnError::UserHandleMismatch => f.write_str("the user handle does not match"),
            WebauthnError::BadStoredKey => f.write_str("the stored credential key cannot be loaded"),
            WebauthnError::BadSignature => f.write_str("the assertion signature does not verify"),
            WebauthnError::SignCountNotIncreased { stored, received } => write!(
                f,
                "signature counter {received} does not exceed the stored {stored}"
            ),
        }
    }
}

impl std::error::Error for WebauthnError {}

type Result<T> = std::result::Result<T, WebauthnError>;

/// The relying party: its RP ID and the one origin ceremonies must come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// The issuer's host, lower case (§5.1.2 "RP ID").
    pub id: String,
    /// `https://host[:port]`, the port only when not 443 (the browser's serialization of an origin).
    pub origin: String,
}

impl RelyingParty {
    /// Derives the RP ID and origin from the issuer identifier (`https://host[:port][/path]`).
    pub fn from_issuer(issuer: &str) -> Result<Self> {
        let bad = |why: &str| WebauthnError::BadIssuer(why.to_string());
        let rest = issuer
            .get(..8)
            .filter(|s| s.eq_ignore_ascii_case("https://"))
            .map(|_| &issuer[8..])
            .ok_or_else(|| bad("not an https URL"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(bad("userinfo in the issuer"));
        }
        if authority.starts_with('[') {
            return Err(bad("an IP address cannot be an RP ID"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
            Some(_) => return Err(bad("bad port")),
            None => (authority, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(bad("the host is not a domain name"));
        }
        if host.parse::<std::net::Ipv4Addr>().is_ok()
            || host
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("an IP address cannot be an RP ID"));
        }
        let origin = match port {
            Some(p) if p != "443" => format!("https://{host}:{p}"),
            _ => format!("https://{host}"),
        };
        Ok(RelyingParty { id: host, origin })
    }
}

/// A fresh challenge (32 random bytes, base64url) for one ceremony (§13.4.3: at least 16 bytes).
pub fn new_challenge(
    random: &crate::random::Random,
) -> std::result::Result<String, crate::random::RandomError> {
    random.token(32)
}

/// `PublicKeyCredentialCreationOptionsJSON` (WebAuthn Level 3 §5.4) for `navigator.credentials.create`:
/// a discoverable credential with user verification, our algorithms, no attestation.
/// `user_id` becomes the user handle (its UTF-8 bytes); `exclude` lists the user's credential IDs.
pub fn creation_options(
    rp: &RelyingParty,
    rp_name: &str,
    user_id: &str,
    user_name: &str,
    display_name: &str,
    challenge: &str,
    exclude: &[String],
) -> Value {
    json!({
        "rp": {"id": rp.id, "name": rp_name},
        "user": {"id": b64::encode(user_id), "name": user_name, "displayName": display_name},
        "challenge": challenge,
        "pubKeyCredParams": SUPPORTED_COSE_ALGS
            .iter()
            .map(|alg| json!({"type": "public-key", "alg": alg}))
            .collect::<Vec<_>>(),
        "timeout": 300_000,
        "excludeCredentials": exclude
            .iter()
            .map(|id| json!({"type": "public-key", "id": id}))
            .collect::<Vec<_>>(),
        "authenticatorSelection": {
            "residentKey": "required",
            "requireResidentKey": true,
            "userVerification": "required"
        },
        "attestation": "none"
    })
}

/// `PublicKeyCredentialRequestOptionsJSON` for `navigator.credentials.get`. An empty `allow` lets the
/// user pick any of their passkeys for this RP (discoverable credentials, no username first).
pub fn request_options(rp: &RelyingParty, challenge: &str, allow: &[String]) -> Value {
    json!({
        "challenge": challenge,
        "rpId": rp.id,
        "timeout": 300_000,
        "userVerification": "required",
        "allowCredentials": allow
            .iter()
            .map(|id| json!({"type": "public-key", "id": id}))
            .collect::<Vec<_>>()
    })
}

/// What `navigator.credentials.create` produced, as the page posts it (module documentation).
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrationResponse {
    pub id: String,
    #[serde(rename = "rawId", default)]
    pub raw_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub response: AttestationResponse,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "attestationObject")]
    pub attestation_object: String,
    #[serde(default)]
    pub transports: Vec<String>,
}

/// What `navigator.credentials.get` produced, as the page posts it (module documentation).
#[derive(Debug, Clone, Deserialize)]
pub struct AuthenticationResponse {
    pub id: String,
    #[serde(rename = "rawId", default)]
    pub raw_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub response: AssertionResponse,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    #[serde(rename = "authenticatorData")]
    pub authenticator_data: String,
    pub signature: String,
    #[serde(rename = "userHandle", default)]
    pub user_handle: Option<String>,
}

impl RegistrationResponse {
    /// Parses the posted JSON (bounded to [`MAX_RESPONSE_JSON_LEN`]).
    pub fn from_json(body: &str) -> Result<Self> {
        parse_json(body)
    }
}

impl AuthenticationResponse {
    /// Parses the posted JSON (bounded to [`MAX_RESPONSE_JSON_LEN`]).
    pub fn from_json(body: &str) -> Result<Self> {
        parse_json(body)
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    if body.len() > MAX_RESPONSE_JSON_LEN {
        return Err(WebauthnError::TooLarge("credential"));
    }
    serde_json::from_str(body).map_err(|_| WebauthnError::Malformed("credential"))
}

/// A passkey as the `passkeys` table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    /// base64url of the credential ID.
    pub credential_id: String,
    /// The owner (`users.user_id`); its UTF-8 bytes are the credential's user handle.
    pub user_id: String,
    /// The public key as a JWK (JSON text, with `alg`).
    pub public_key_jwk: String,
    pub sign_count: i64,
}

/// A credential that passed registration, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    /// base64url of the credential ID.
    pub credential_id: String,
    /// The public key as a JWK (JSON text, with `alg`).
    pub public_key_jwk: String,
    pub alg: Algorithm,
    pub sign_count: i64,
    /// The authenticator model's AAGUID (all zero when the browser anonymized it).
    pub aaguid: [u8; 16],
    /// Backup eligibility and state (BE, BS flags): a synced passkey.
    pub backup_eligible: bool,
    pub backed_up: bool,
    /// The attestation format that was presented (and not verified).
    pub attestation_format: String,
    pub transports: Vec<String>,
}

impl NewCredential {
    pub fn into_stored(self, user_id: &str) -> StoredCredential {
        StoredCredential {
            credential_id: self.credential_id,
            user_id: user_id.to_string(),
            public_key_jwk: self.public_key_jwk,
            sign_count: self.sign_count,
        }
    }
}

/// A successful assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub credential_id: String,
    /// The counter to store (`Store::update_sign_count`).
    pub sign_count: i64,
    /// The BS flag: the credential is backed up (synced).
    pub backed_up: bool,
}

/// Registration ceremony, §7.1 steps 5-19 (see the module documentation for what is not checked).
/// `expected_challenge` is the base64url challenge given to [`creation_options`].
pub fn verify_registration(
    rp: &RelyingParty,
    expected_challenge: &str,
    response: &RegistrationResponse,
) -> Result<NewCredential> {
    if response.kind != "public-key" {
        return Err(WebauthnError::Malformed("type"));
    }
    // Steps 5-10: the client data.
    let client_data = decode_field(
        &response.response.client_data_json,
        "clientDataJSON",
        MAX_CLIENT_DATA_LEN,
    )?;
    check_client_data(rp, &client_data, "webauthn.create", expected_challenge)?;

    // Step 12: the attestation object, a CBOR map {fmt, attStmt, authData}.
    let attestation = decode_field(
        &response.response.attestation_object,
        "attestationObject",
        MAX_ATTESTATION_OBJECT_LEN,
    )?;
    let (att, used) = cbor_item(&attestation, "attestationObject")?;
    if used != attestation.len() {
        return Err(WebauthnError::MalformedCbor("attestationObject (trailing bytes)"));
    }
    let Cbor::Map(entries) = att else {
        return Err(WebauthnError::MalformedCbor("attestationObject"));
    };
    let mut fmt = None;
    let mut att_stmt = None;
    let mut auth_data = None;
    for (k, v) in entries {
        let slot = match k.as_text() {
            Some("fmt") => &mut fmt,
            Some("attStmt") => &mut att_stmt,
            Some("authData") => &mut auth_data,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(WebauthnError::MalformedCbor("attestationObject (duplicate key)"));
        }
    }
    let fmt = match fmt {
        Some(Cbor::Text(t)) => t,
        _ => return Err(WebauthnError::MalformedCbor("attestationObject.fmt")),
    };
    let att_stmt = match att_stmt {
        Some(Cbor::Map(m)) => m,
        _ => return Err(WebauthnError::MalformedCbor("attestationObject.attStmt")),
    };
    let auth_data = match auth_data {
        Some(Cbor::Bytes(b)) if b.len() <= MAX_AUTHENTICATOR_DATA_LEN => b,
        Some(Cbor::Bytes(_)) => return Err(WebauthnError::TooLarge("authData")),
        _ => return Err(WebauthnError::MalformedCbor("attestationObject.authData")),
    };

    // Steps 13-17: authenticator data.
    let parsed = parse_authenticator_data(&auth_data)?;
    check_rp_and_flags(rp, &parsed)?;
    let attested = parsed.attested.ok_or(WebauthnError::NoAttestedCredential)?;

    // Steps 18-19: attestation format. Nothing is verified (module documentation).
    match fmt.as_str() {
        "none" if att_stmt.is_empty() => {}
        "none" => return Err(WebauthnError::MalformedCbor("attStmt must be empty for \"none\"")),
        "packed" => {}
        other => return Err(WebauthnError::UnsupportedAttestationFormat(other.to_string())),
    }

    // The credential the page names is the one the authenticator attested.
    let credential_id = b64::encode(&attested.credential_id);
    if strip_padding(&response.id) != credential_id
        || response
            .raw_id
            .as_deref()
            .is_some_and(|raw| strip_padding(raw) != credential_id)
    {
        return Err(WebauthnError::CredentialIdMismatch);
    }
    Ok(NewCredential {
        credential_id,
        public_key_jwk: attested.public_key_jwk.to_string(),
        alg: attested.alg,
        sign_count: i64::from(parsed.sign_count),
        aaguid: attested.aaguid,
        backup_eligible: parsed.flags & FLAG_BE != 0,
        backed_up: parsed.flags & FLAG_BS != 0,
        attestation_format: fmt,
        transports: response.response.transports.clone(),
    })
}

/// Authentication ceremony, §7.2 steps 5-21, for the credential `stored` (found by the response's
/// credential ID). `expected_challenge` is the base64url challenge given to [`request_options`].
/// On success, store the returned `sign_count` with `Store::update_sign_count`.
pub fn verify_authentication(
    rp: &RelyingParty,
    expected_challenge: &str,
    stored: &StoredCredential,
    response: &AuthenticationResponse,
) -> Result<VerifiedAssertion> {
    if response.kind != "public-key" {
        return Err(WebauthnError::Malformed("type"));
    }
    // Step 5: the credential is the stored one.
    if strip_padding(&response.id) != stored.credential_id
        || response
            .raw_id
            .as_deref()
            .is_some_and(|raw| strip_padding(raw) != stored.credential_id)
    {
        return Err(WebauthnError::CredentialIdMismatch);
    }
    // Step 6: a user handle, when sent, names the credential's owner.
    if let Some(handle) = response.response.user_handle.as_deref().filter(|h| !h.is_empty()) {
        let handle = decode_field(handle, "userHandle", MAX_USER_HANDLE_LEN)?;
        if handle != stored.user_id.as_bytes() {
            return Err(WebauthnError::UserHandleMismatch);
        }
    }
    // Steps 7-14: the client data.
    let client_data = decode_field(
        &response.response.client_data_json,
        "clientDataJSON",
        MAX_CLIENT_DATA_LEN,
    )?;
    check_client_data(rp, &client_data, "webauthn.get", expected_challenge)?;
    // Steps 15-18: authenticator data.
    let auth_data = decode_field(
        &response.response.authenticator_data,
        "authenticatorData",
        MAX_AUTHENTICATOR_DATA_LEN,
    )?;
    let parsed = parse_authenticator_data(&auth_data)?;
    check_rp_and_flags(rp, &parsed)?;

    // Steps 19-20: the signature over authenticatorData || SHA-256(clientDataJSON).
    let signature = decode_field(&response.response.signature, "signature", MAX_SIGNATURE_LEN)?;
    let jwk: Value = serde_json::from_str(&stored.public_key_jwk).map_err(|_| WebauthnError::BadStoredKey)?;
    let key = PublicJwk::from_value(&jwk).map_err(|_| WebauthnError::BadStoredKey)?;
    let alg = match key.alg.as_deref().map(AlgorithmName::parse) {
        Some(AlgorithmName::Supported(alg)) if key.suits(alg) => alg,
        _ => return Err(WebauthnError::BadStoredKey),
    };
    let mut message = auth_data.clone();
    message.extend_from_slice(&b64::sha256(&client_data));
    let verified = match alg {
        // WebAuthn ECDSA signatures are DER (§6.5.5), JWS ones r || s: convert, strictly.
        Algorithm::ES256 => der_signature_to_fixed(&signature)
            .is_some_and(|fixed| verify_with(&key.material, alg, &message, &fixed)),
        _ => verify_with(&key.material, alg, &message, &signature),
    };
    if !verified {
        return Err(WebauthnError::BadSignature);
    }

    // Step 21: the signature counter.
    let received = i64::from(parsed.sign_count);
    if !sign_count_acceptable(stored.sign_count, received) {
        return Err(WebauthnError::SignCountNotIncreased {
            stored: stored.sign_count,
            received,
        });
    }
    Ok(VerifiedAssertion {
        credential_id: stored.credential_id.clone(),
        sign_count: received,
        backed_up: parsed.flags & FLAG_BS != 0,
    })
}

/// §6.1.1: the counter must grow, unless the authenticator has none (both values 0).
pub fn sign_count_acceptable(stored: i64, received: i64) -> bool {
    received > stored || (received == 0 && stored == 0)
}

fn strip_padding(s: &str) -> &str {
    s.trim_end_matches('=')
}

/// Decodes a base64url field after checking its encoded length against `max` decoded bytes.
fn decode_field(value: &str, name: &'static str, max: usize) -> Result<Vec<u8>> {
    let value = strip_padding(value);
    if value.len() > max.div_ceil(3) * 4 {
        return Err(WebauthnError::TooLarge(name));
    }
    let bytes = b64::decode(value).ok_or(WebauthnError::Malformed(name))?;
    if bytes.len() > max {
        return Err(WebauthnError::TooLarge(name));
    }
    Ok(bytes)
}

/// §7.1 steps 5-9 / §7.2 steps 9-13: the collected client data.
fn check_client_data(
    rp: &RelyingParty,
    raw: &[u8],
    expected_type: &'static str,
    expected_challenge: &str,
) -> Result<()> {
    if b64::decode(expected_challenge).is_none_or(|c| c.len() < 16) {
        return Err(WebauthnError::WeakChallenge);
    }
    let c: Value = serde_json::from_slice(raw).map_err(|_| WebauthnError::Malformed("clientDataJSON"))?;
    let member = |name: &'static str| -> Result<&str> {
        c.get(name)
            .and_then(Value::as_str)
            .ok_or(WebauthnError::Malformed(name))
    };
    let kind = member("type")?;
    if kind != expected_type {
        return Err(WebauthnError::WrongType {
            expected: expected_type,
            got: kind.chars().take(64).collect(),
        });
    }
    if member("challenge")? != expected_challenge {
        return Err(WebauthnError::ChallengeMismatch);
    }
    let origin = member("origin")?;
    if origin != rp.origin {
        return Err(WebauthnError::OriginMismatch {
            expected: rp.origin.clone(),
            got: origin.chars().take(256).collect(),
        });
    }
    match c.get("crossOrigin") {
        None | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => Err(WebauthnError::CrossOrigin),
        Some(_) => Err(WebauthnError::Malformed("crossOrigin")),
    }
}

fn check_rp_and_flags(rp: &RelyingParty, data: &AuthenticatorData) -> Result<()> {
    if data.rp_id_hash != b64::sha256(rp.id.as_bytes()) {
        return Err(WebauthnError::RpIdHashMismatch);
    }
    if data.flags & FLAG_UP == 0 {
        return Err(WebauthnError::UserNotPresent);
    }
    if data.flags & FLAG_UV == 0 {
        return Err(WebauthnError::UserNotVerified);
    }
    Ok(())
}

struct AuthenticatorData {
    rp_id_hash: [u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<AttestedCredential>,
}

struct AttestedCredential {
    aaguid: [u8; 16],
    credential_id: Vec<u8>,
    public_key_jwk: Value,
    alg: Algorithm,
}

/// §6.1: rpIdHash (32) | flags (1) | signCount (4, big endian) | [attested credential data: AAGUID (16)
/// | L (2) | credentialId (L) | credentialPublicKey (COSE_Key, CBOR)] | [extensions (CBOR map)].
fn parse_authenticator_data(data: &[u8]) -> Result<AuthenticatorData> {
    let malformed = WebauthnError::MalformedAuthenticatorData;
    if data.len() < 37 {
        return Err(malformed("shorter than 37 bytes"));
    }
    let (fixed, mut rest) = data.split_at(37);
    let mut rp_id_hash = [0u8; 32];
    rp_id_hash.copy_from_slice(&fixed[..32]);
    let flags = fixed[32];
    let sign_count = u32::from_be_bytes([fixed[33], fixed[34], fixed[35], fixed[36]]);
    let attested = if flags & FLAG_AT != 0 {
        if rest.len() < 18 {
            return Err(malformed("attested credential data is truncated"));
        }
        let mut aaguid = [0u8; 16];
        aaguid.copy_from_slice(&rest[..16]);
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        rest = &rest[18..];
        if len == 0 || len > MAX_CREDENTIAL_ID_LEN {
            return Err(malformed("credential ID length"));
        }
        if rest.len() < len {
            return Err(malformed("credential ID is truncated"));
        }
        let (id, after) = rest.split_at(len);
        let (key, used) = cbor_item(after, "credentialPublicKey")?;
        rest = &after[used..];
        let (public_key_jwk, alg) = cose_key_to_jwk(&key)?;
        Some(AttestedCredential {
            aaguid,
            credential_id: id.to_vec(),
            public_key_jwk,
            alg,
        })
    } else {
        None
    };
    if flags & FLAG_ED != 0 {
        let (extensions, used) = cbor_item(rest, "extensions")?;
        if !matches!(extensions, Cbor::Map(_)) {
            return Err(WebauthnError::MalformedCbor("extensions"));
        }
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(AuthenticatorData {
        rp_id_hash,
        flags,
        sign_count,
        attested,
    })
}

/// Decodes one CBOR data item at the start of `input`; returns it and the bytes it took.
fn cbor_item(input: &[u8], what: &'static str) -> Result<(Cbor, usize)> {
    let mut rest = input;
    let item: Cbor = ciborium::de::from_reader_with_recursion_limit(&mut rest, CBOR_DEPTH)
        .map_err(|_| WebauthnError::MalformedCbor(what))?;
    Ok((item, input.len() - rest.len()))
}

/// RFC 9053 §7 / RFC 8230 §4: a COSE_Key with integer labels, as a public JWK with its `alg`.
fn cose_key_to_jwk(key: &Cbor) -> Result<(Value, Algorithm)> {
    let Cbor::Map(entries) = key else {
        return Err(WebauthnError::MalformedCbor("credentialPublicKey"));
    };
    let mut labels: BTreeMap<i128, &Cbor> = BTreeMap::new();
    for (k, v) in entries {
        // Text labels are legal COSE but unused by the key types we accept: skip them.
        if let Cbor::Integer(i) = k {
            if labels.insert(i128::from(*i), v).is_some() {
                return Err(WebauthnError::MalformedCbor(
                    "credentialPublicKey (duplicate label)",
                ));
            }
        }
    }
    let int = |label: i128| match labels.get(&label) {
        Some(Cbor::Integer(i)) => Some(i128::from(*i)),
        _ => None,
    };
    let bytes = |label: i128, name: &'static str| match labels.get(&label) {
        Some(Cbor::Bytes(b)) => Ok(b.as_slice()),
        _ => Err(WebauthnError::MalformedCbor(name)),
    };
    let bad = |why: &str| WebauthnError::BadPublicKey(why.to_string());
    let kty = int(1).ok_or(WebauthnError::MalformedCbor("COSE kty"))?;
    let alg = int(3).ok_or(WebauthnError::MalformedCbor("COSE alg"))?;
    let alg_i64 = i64::try_from(alg).unwrap_or(i64::MIN);
    let (jwk, alg) = match (kty, alg_i64) {
        // EC2 (2), crv P-256 (1), x (-2), y (-3).
        (2, COSE_ES256) => {
            if int(-1) != Some(1) {
                return Err(bad("ES256 needs the P-256 curve"));
            }
            let (x, y) = (bytes(-2, "COSE x")?, bytes(-3, "COSE y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(bad("P-256 coordinates are 32 bytes"));
            }
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            if !p256_point_is_valid(&point) {
                return Err(bad("the point is not on P-256"));
            }
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64::encode(x), "y": b64::encode(y), "alg": "ES256"});
            (jwk, Algorithm::ES256)
        }
        // OKP (1), crv Ed25519 (6), x (-2).
        (1, COSE_EDDSA) => {
            if int(-1) != Some(6) {
                return Err(bad("EdDSA keys must be Ed25519"));
            }
            let x = bytes(-2, "COSE x")?;
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64::encode(x), "alg": "EdDSA"});
            (jwk, Algorithm::EdDSA)
        }
        // RSA (3), n (-1), e (-2).
        (3, COSE_RS256) => {
            let (n, e) = (bytes(-1, "COSE n")?, bytes(-2, "COSE e")?);
            let jwk = json!({"kty": "RSA", "n": b64::encode(n), "e": b64::encode(e), "alg": "RS256"});
            (jwk, Algorithm::RS256)
        }
        (_, a) if !SUPPORTED_COSE_ALGS.contains(&a) => return Err(WebauthnError::UnsupportedAlgorithm(a)),
        _ => return Err(bad("the key type does not match the algorithm")),
    };
    // fapi-core's rules: sizes, RSA of at least 2048 bits, no private members.
    PublicJwk::from_value(&jwk).map_err(|e| WebauthnError::BadPublicKey(e.to_string()))?;
    Ok((jwk, alg))
}

/// SEC1 point validation (on the curve, not the identity), done by ring's ECDH public-key check.
pub(crate) fn p256_point_is_valid(point: &[u8]) -> bool {
    use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
    let Ok(ephemeral) = EphemeralPrivateKey::generate(&ECDH_P256, &ring::rand::SystemRandom::new()) else {
        return false;
    };
    agree_ephemeral(ephemeral, &UnparsedPublicKey::new(&ECDH_P256, point), |_| ()).is_ok()
}

/// Converts a DER `Ecdsa-Sig-Value` (RFC 3279 §2.2.3; SEQUENCE of two INTEGERs) to the fixed-width
/// `r || s` of RFC 7518 §3.4 for P-256. Strict DER (X.690 §10): short-form lengths, minimal positive
/// integers of at most 32 bytes (plus one leading zero), no trailing bytes; zero is refused.
pub fn der_signature_to_fixed(der: &[u8]) -> Option<[u8; 64]> {
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len >= 0x80 || usize::from(len) != body.len() {
        return None;
    }
    let (r, body) = der_positive_integer(body)?;
    let (s, body) = der_positive_integer(body)?;
    if !body.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s.len()..].copy_from_slice(s);
    Some(out)
}

fn der_positive_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if tag != 0x02 || len == 0 || len > 33 || rest.len() < len {
        return None;
    }
    let (mut value, rest) = rest.split_at(len);
    if value[0] & 0x80 != 0 {
        return None; // negative
    }
    if value[0] == 0 {
        // A leading zero only to keep the sign bit clear; a lone zero is the value 0.
        if value.len() == 1 || value[1] & 0x80 == 0 {
            return None;
        }
        value = &value[1..];
    }
    (value.len() <= 32).then_some((value, rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ciborium::Value as C;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    const ISSUER: &str = "https://localhost:8443";

    fn rp() -> RelyingParty {
        RelyingParty::from_issuer(ISSUER).unwrap()
    }

    fn challenge() -> String {
        b64::encode([7u8; 32])
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        json!({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false})
            .to_string()
            .into_bytes()
    }

    fn cbor(v: &C) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    enum TestKey {
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
        Rsa(fapi_core::sign::SigningKey),
    }

    impl TestKey {
        fn ec() -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
            TestKey::Ec(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap(),
            )
        }
        fn ed() -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            TestKey::Ed(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
        }
        fn rsa() -> Self {
            TestKey::Rsa(fapi_core::sign::SigningKey::generate(Algorithm::RS256, None).unwrap())
        }
        fn cose(&self) -> C {
            let i = |n: i64| C::Integer(n.into());
            match self {
                TestKey::Rsa(k) => {
                    let n = b64::decode(k.public_jwk()["n"].as_str().unwrap()).unwrap();
                    let e = b64::decode(k.public_jwk()["e"].as_str().unwrap()).unwrap();
                    C::Map(vec![
                        (i(1), i(3)),
                        (i(3), i(-257)),
                        (i(-1), C::Bytes(n)),
                        (i(-2), C::Bytes(e)),
                    ])
                }
                TestKey::Ec(k) => {
                    let p = k.public_key().as_ref();
                    C::Map(vec![
                        (i(1), i(2)),
                        (i(3), i(-7)),
                        (i(-1), i(1)),
                        (i(-2), C::Bytes(p[1..33].to_vec())),
                        (i(-3), C::Bytes(p[33..65].to_vec())),
                    ])
                }
                TestKey::Ed(k) => C::Map(vec![
                    (i(1), i(1)),
                    (i(3), i(-8)),
                    (i(-1), i(6)),
                    (i(-2), C::Bytes(k.public_key().as_ref().to_vec())),
                ]),
            }
        }
        /// DER for ECDSA (what authenticators send), raw for Ed25519.
        fn sign(&self, message: &[u8]) -> Vec<u8> {
            match self {
                TestKey::Ec(k) => k.sign(&SystemRandom::new(), message).unwrap().as_ref().to_vec(),
                TestKey::Ed(k) => k.sign(message).as_ref().to_vec(),
                TestKey::Rsa(k) => k.sign(message).unwrap(),
            }
        }
    }

    const CRED_ID: [u8; 20] = [0xAB; 20];

    fn auth_data(rp_id: &str, flags: u8, count: u32, attested: Option<&C>) -> Vec<u8> {
        let mut out = b64::sha256(rp_id.as_bytes()).to_vec();
        out.push(flags | if attested.is_some() { FLAG_AT } else { 0 });
        out.extend_from_slice(&count.to_be_bytes());
        if let Some(key) = attested {
            out.extend_from_slice(&[0u8; 16]);
            out.extend_from_slice(&(CRED_ID.len() as u16).to_be_bytes());
            out.extend_from_slice(&CRED_ID);
            out.extend(cbor(key));
        }
        out
    }

    fn registration(cd: &[u8], fmt: &str, att_stmt: C, auth: Vec<u8>) -> RegistrationResponse {
        let att = C::Map(vec![
            (C::Text("fmt".into()), C::Text(fmt.into())),
            (C::Text("attStmt".into()), att_stmt),
            (C::Text("authData".into()), C::Bytes(auth)),
        ]);
        registration_raw(cd, &cbor(&att))
    }

    fn registration_raw(cd: &[u8], att: &[u8]) -> RegistrationResponse {
        let body = json!({
            "id": b64::encode(CRED_ID), "rawId": b64::encode(CRED_ID), "type": "public-key",
            "response": {"clientDataJSON": b64::encode(cd), "attestationObject": b64::encode(att),
                         "transports": ["internal"]},
            "authenticatorAttachment": "platform", "clientExtensionResults": {}
        });
        RegistrationResponse::from_json(&body.to_string()).unwrap()
    }

    fn good_registration(key: &TestKey) -> RegistrationResponse {
        let cd = client_data("webauthn.create", &challenge(), ISSUER);
        let auth = auth_data("localhost", FLAG_UP | FLAG_UV, 0, Some(&key.cose()));
        registration(&cd, "none", C::Map(vec![]), auth)
    }

    fn registered(key: &TestKey) -> StoredCredential {
        verify_registration(&rp(), &challenge(), &good_registration(key))
            .unwrap()
            .into_stored("u-taro")
    }

    fn assertion_with(key: &TestKey, cd: &[u8], auth: &[u8], sig: Option<Vec<u8>>) -> AuthenticationResponse {
        let mut message = auth.to_vec();
        message.extend_from_slice(&b64::sha256(cd));
        let sig = sig.unwrap_or_else(|| key.sign(&message));
        let body = json!({
            "id": b64::encode(CRED_ID), "rawId": b64::encode(CRED_ID), "type": "public-key",
            "response": {"clientDataJSON": b64::encode(cd), "authenticatorData": b64::encode(auth),
                         "signature": b64::encode(sig), "userHandle": b64::encode("u-taro")}
        });
        AuthenticationResponse::from_json(&body.to_string()).unwrap()
    }

    fn assertion(key: &TestKey, count: u32) -> AuthenticationResponse {
        let cd = client_data("webauthn.get", &challenge(), ISSUER);
        assertion_with(
            key,
            &cd,
            &auth_data("localhost", FLAG_UP | FLAG_UV, count, None),
            None,
        )
    }

    #[test]
    fn relying_party_from_issuer() {
        let bank = RelyingParty::from_issuer("https://Bank.Example/as").unwrap();
        assert_eq!(
            (bank.id.as_str(), bank.origin.as_str()),
            ("bank.example", "https://bank.example")
        );
        let bank = RelyingParty::from_issuer("https://bank.example:443").unwrap();
        assert_eq!(bank.origin, "https://bank.example");
        assert_eq!(rp().origin, "https://localhost:8443");
        for bad in [
            "http://bank.example",
            "https://127.0.0.1:8443",
            "https://[::1]:8443",
            "https://a@b.example",
            "https://b.example:x",
        ] {
            assert!(
                matches!(RelyingParty::from_issuer(bad), Err(WebauthnError::BadIssuer(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn es256_registration_then_assertions() {
        let key = TestKey::ec();
        let new = verify_registration(&rp(), &challenge(), &good_registration(&key)).unwrap();
        assert_eq!(new.alg, Algorithm::ES256);
        assert_eq!(new.credential_id, b64::encode(CRED_ID));
        assert_eq!(new.attestation_format, "none");
        assert_eq!(new.transports, vec!["internal".to_string()]);
        let jwk: Value = serde_json::from_str(&new.public_key_jwk).unwrap();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["alg"].as_str()),
            (Some("EC"), Some("ES256"))
        );
        let mut stored = new.into_stored("u-taro");
        let ok = verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, 1)).unwrap();
        assert_eq!(ok.sign_count, 1);
        stored.sign_count = ok.sign_count;
        let ok = verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, 5)).unwrap();
        assert_eq!(ok.sign_count, 5);
    }

    #[test]
    fn eddsa_registration_then_assertion() {
        let key = TestKey::ed();
        let stored = registered(&key);
        assert!(stored.public_key_jwk.contains("\"EdDSA\""));
        assert!(verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, 0)).is_ok());
    }

    #[test]
    fn rs256_registration_then_assertion() {
        let key = TestKey::rsa();
        let stored = registered(&key);
        assert!(stored.public_key_jwk.contains("\"RS256\""));
        assert!(verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, 1)).is_ok());
        let other = TestKey::rsa();
        assert_eq!(
            verify_authentication(&rp(), &challenge(), &stored, &assertion(&other, 1)),
            Err(WebauthnError::BadSignature)
        );
    }

    #[test]
    fn packed_attestation_is_accepted_and_ignored_other_formats_refused() {
        let key = TestKey::ec();
        let cd = client_data("webauthn.create", &challenge(), ISSUER);
        let auth = auth_data("localhost", FLAG_UP | FLAG_UV, 0, Some(&key.cose()));
        let stmt = C::Map(vec![
            (C::Text("alg".into()), C::Integer((-7).into())),
            (C::Text("sig".into()), C::Bytes(vec![0x30, 0x00])),
        ]);
        let new = verify_registration(
            &rp(),
            &challenge(),
            &registration(&cd, "packed", stmt.clone(), auth.clone()),
        );
        assert_eq!(new.map(|n| n.attestation_format), Ok("packed".into()));
        assert_eq!(
            verify_registration(
                &rp(),
                &challenge(),
                &registration(&cd, "tpm", stmt.clone(), auth.clone())
            ),
            Err(WebauthnError::UnsupportedAttestationFormat("tpm".into()))
        );
        assert!(matches!(
            verify_registration(&rp(), &challenge(), &registration(&cd, "none", stmt, auth)),
            Err(WebauthnError::MalformedCbor(_))
        ));
    }

    #[test]
    fn registration_rejections() {
        let key = TestKey::ec();
        let cose = key.cose();
        let good_auth = auth_data("localhost", FLAG_UP | FLAG_UV, 0, Some(&cose));
        let reg = |cd: Vec<u8>, auth: Vec<u8>| {
            verify_registration(
                &rp(),
                &challenge(),
                &registration(&cd, "none", C::Map(vec![]), auth),
            )
        };
        let cd = |kind: &str, ch: &str, origin: &str| client_data(kind, ch, origin);
        assert!(matches!(
            reg(
                cd("webauthn.create", &challenge(), "https://evil.example"),
                good_auth.clone()
            ),
            Err(WebauthnError::OriginMismatch { .. })
        ));
        assert!(matches!(
            reg(
                cd("webauthn.create", &challenge(), "https://localhost"),
                good_auth.clone()
            ),
            Err(WebauthnError::OriginMismatch { .. })
        ));
        assert_eq!(
            reg(
                cd("webauthn.create", &b64::encode([8u8; 32]), ISSUER),
                good_auth.clone()
            ),
            Err(WebauthnError::ChallengeMismatch)
        );
        assert!(matches!(
            reg(cd("webauthn.get", &challenge(), ISSUER), good_auth.clone()),
            Err(WebauthnError::WrongType {
                expected: "webauthn.create",
                ..
            })
        ));
        let good_cd = cd("webauthn.create", &challenge(), ISSUER);
        assert_eq!(
            reg(
                good_cd.clone(),
                auth_data("evil.example", FLAG_UP | FLAG_UV, 0, Some(&cose))
            ),
            Err(WebauthnError::RpIdHashMismatch)
        );
        assert_eq!(
            reg(good_cd.clone(), auth_data("localhost", FLAG_UP, 0, Some(&cose))),
            Err(WebauthnError::UserNotVerified)
        );
        assert_eq!(
            reg(good_cd.clone(), auth_data("localhost", FLAG_UV, 0, Some(&cose))),
            Err(WebauthnError::UserNotPresent)
        );
        assert_eq!(
            reg(
                good_cd.clone(),
                auth_data("localhost", FLAG_UP | FLAG_UV, 0, None)
            ),
            Err(WebauthnError::NoAttestedCredential)
        );
        let mut trailing = good_auth.clone();
        trailing.push(0);
        assert!(matches!(
            reg(good_cd.clone(), trailing),
            Err(WebauthnError::MalformedAuthenticatorData(_))
        ));
        // A cross-origin iframe.
        let iframe =
            json!({"type":"webauthn.create","challenge":challenge(),"origin":ISSUER,"crossOrigin":true});
        assert_eq!(
            reg(iframe.to_string().into_bytes(), good_auth.clone()),
            Err(WebauthnError::CrossOrigin)
        );
        // The credential ID the page names must be the attested one.
        let mut other_id = registration(&good_cd, "none", C::Map(vec![]), good_auth.clone());
        other_id.id = b64::encode([1u8; 20]);
        assert_eq!(
            verify_registration(&rp(), &challenge(), &other_id),
            Err(WebauthnError::CredentialIdMismatch)
        );
        // A server that forgot its challenge.
        assert_eq!(
            verify_registration(
                &rp(),
                "",
                &registration(&good_cd, "none", C::Map(vec![]), good_auth)
            ),
            Err(WebauthnError::WeakChallenge)
        );
    }

    #[test]
    fn unsupported_and_bad_keys_are_refused() {
        let cd = client_data("webauthn.create", &challenge(), ISSUER);
        let i = |n: i64| C::Integer(n.into());
        let reg = |key: C| {
            let auth = auth_data("localhost", FLAG_UP | FLAG_UV, 0, Some(&key));
            verify_registration(
                &rp(),
                &challenge(),
                &registration(&cd, "none", C::Map(vec![]), auth),
            )
        };
        // ES384 (-35) on P-384 (2).
        let es384 = C::Map(vec![
            (i(1), i(2)),
            (i(3), i(-35)),
            (i(-1), i(2)),
            (i(-2), C::Bytes(vec![1; 48])),
            (i(-3), C::Bytes(vec![1; 48])),
        ]);
        assert_eq!(reg(es384), Err(WebauthnError::UnsupportedAlgorithm(-35)));
        // A P-256 "point" off the curve.
        let off = C::Map(vec![
            (i(1), i(2)),
            (i(3), i(-7)),
            (i(-1), i(1)),
            (i(-2), C::Bytes(vec![1; 32])),
            (i(-3), C::Bytes(vec![2; 32])),
        ]);
        assert!(matches!(reg(off), Err(WebauthnError::BadPublicKey(_))));
        // RS256 with a 1024-bit modulus.
        let mut n = vec![0xC5u8; 128];
        n[127] |= 1;
        let small_rsa = C::Map(vec![
            (i(1), i(3)),
            (i(3), i(-257)),
            (i(-1), C::Bytes(n)),
            (i(-2), C::Bytes(vec![1, 0, 1])),
        ]);
        assert!(matches!(reg(small_rsa), Err(WebauthnError::BadPublicKey(_))));
        // kty EC2 claiming EdDSA.
        let mixed = C::Map(vec![
            (i(1), i(2)),
            (i(3), i(-8)),
            (i(-1), i(1)),
            (i(-2), C::Bytes(vec![1; 32])),
            (i(-3), C::Bytes(vec![2; 32])),
        ]);
        assert!(matches!(reg(mixed), Err(WebauthnError::BadPublicKey(_))));
    }

    #[test]
    fn malformed_cbor_is_refused() {
        let cd = client_data("webauthn.create", &challenge(), ISSUER);
        for att in [
            vec![],
            vec![0xA3],
            vec![0xFF, 0x00],
            vec![0x9F; 64],
            b"not cbor at all".to_vec(),
        ] {
            let r = verify_registration(&rp(), &challenge(), &registration_raw(&cd, &att));
            assert!(
                matches!(r, Err(WebauthnError::MalformedCbor(_))),
                "{att:?}: {r:?}"
            );
        }
        // A valid attestation object followed by junk.
        let key = TestKey::ec();
        let good = good_registration(&key);
        let mut att = b64::decode(&good.response.attestation_object).unwrap();
        att.push(0x00);
        assert!(matches!(
            verify_registration(&rp(), &challenge(), &registration_raw(&cd, &att)),
            Err(WebauthnError::MalformedCbor(_))
        ));
        // A truncated COSE key inside the authenticator data.
        let mut auth = auth_data("localhost", FLAG_UP | FLAG_UV, 0, Some(&key.cose()));
        auth.truncate(auth.len() - 5);
        assert!(matches!(
            verify_registration(
                &rp(),
                &challenge(),
                &registration(&cd, "none", C::Map(vec![]), auth)
            ),
            Err(WebauthnError::MalformedCbor(_))
        ));
        // The fields of the attestation object with the wrong types.
        let att = C::Map(vec![(C::Text("fmt".into()), C::Integer(1.into()))]);
        assert!(matches!(
            verify_registration(&rp(), &challenge(), &registration_raw(&cd, &cbor(&att))),
            Err(WebauthnError::MalformedCbor(_))
        ));
    }

    #[test]
    fn extensions_after_the_key_are_parsed() {
        let key = TestKey::ec();
        let cd = client_data("webauthn.create", &challenge(), ISSUER);
        let mut auth = auth_data("localhost", FLAG_UP | FLAG_UV | FLAG_ED, 0, Some(&key.cose()));
        auth.extend(cbor(&C::Map(vec![(
            C::Text("credProtect".into()),
            C::Integer(2.into()),
        )])));
        assert!(verify_registration(
            &rp(),
            &challenge(),
            &registration(&cd, "none", C::Map(vec![]), auth.clone())
        )
        .is_ok());
        // ED set but no extensions.
        let no_ext = auth_data("localhost", FLAG_UP | FLAG_UV | FLAG_ED, 0, Some(&key.cose()));
        assert!(matches!(
            verify_registration(
                &rp(),
                &challenge(),
                &registration(&cd, "none", C::Map(vec![]), no_ext)
            ),
            Err(WebauthnError::MalformedCbor("extensions"))
        ));
    }

    #[test]
    fn assertion_rejections() {
        let key = TestKey::ec();
        let stored = registered(&key);
        let check = |resp: &AuthenticationResponse| verify_authentication(&rp(), &challenge(), &stored, resp);
        let good_auth = auth_data("localhost", FLAG_UP | FLAG_UV, 3, None);
        let cd = |kind: &str, ch: &str, origin: &str| client_data(kind, ch, origin);
        let good_cd = cd("webauthn.get", &challenge(), ISSUER);

        assert!(matches!(
            check(&assertion_with(
                &key,
                &cd("webauthn.get", &challenge(), "https://evil.example"),
                &good_auth,
                None
            )),
            Err(WebauthnError::OriginMismatch { .. })
        ));
        assert_eq!(
            check(&assertion_with(
                &key,
                &cd("webauthn.get", &b64::encode([9u8; 16]), ISSUER),
                &good_auth,
                None
            )),
            Err(WebauthnError::ChallengeMismatch)
        );
        assert!(matches!(
            check(&assertion_with(
                &key,
                &cd("webauthn.create", &challenge(), ISSUER),
                &good_auth,
                None
            )),
            Err(WebauthnError::WrongType {
                expected: "webauthn.get",
                ..
            })
        ));
        assert_eq!(
            check(&assertion_with(
                &key,
                &good_cd,
                &auth_data("evil.example", FLAG_UP | FLAG_UV, 3, None),
                None
            )),
            Err(WebauthnError::RpIdHashMismatch)
        );
        assert_eq!(
            check(&assertion_with(
                &key,
                &good_cd,
                &auth_data("localhost", FLAG_UP, 3, None),
                None
            )),
            Err(WebauthnError::UserNotVerified)
        );
        // A signature by another key, and a signature over other client data.
        let other = TestKey::ec();
        assert_eq!(
            check(&assertion_with(&other, &good_cd, &good_auth, None)),
            Err(WebauthnError::BadSignature)
        );
        let mut resp = assertion_with(&key, &good_cd, &good_auth, None);
        resp.response.client_data_json =
            b64::encode(json!({"type":"webauthn.get","challenge":challenge(),"origin":ISSUER}).to_string());
        assert_eq!(check(&resp), Err(WebauthnError::BadSignature));
        // A P1363 (r || s) signature where DER is due.
        let mut message = good_auth.clone();
        message.extend_from_slice(&b64::sha256(&good_cd));
        let der = key.sign(&message);
        let fixed = der_signature_to_fixed(&der).unwrap().to_vec();
        assert_eq!(
            check(&assertion_with(&key, &good_cd, &good_auth, Some(fixed))),
            Err(WebauthnError::BadSignature)
        );
        assert!(check(&assertion_with(&key, &good_cd, &good_auth, Some(der))).is_ok());
        // Another credential, another user.
        let mut resp = assertion_with(&key, &good_cd, &good_auth, None);
        resp.id = b64::encode([1u8; 20]);
        assert_eq!(check(&resp), Err(WebauthnError::CredentialIdMismatch));
        let mut resp = assertion_with(&key, &good_cd, &good_auth, None);
        resp.response.user_handle = Some(b64::encode("u-hanako"));
        assert_eq!(check(&resp), Err(WebauthnError::UserHandleMismatch));
        let mut resp = assertion_with(&key, &good_cd, &good_auth, None);
        resp.response.user_handle = None;
        assert!(check(&resp).is_ok());
    }

    #[test]
    fn sign_count_must_increase_unless_both_zero() {
        let key = TestKey::ec();
        let mut stored = registered(&key);
        stored.sign_count = 7;
        for count in [7, 6, 0] {
            assert_eq!(
                verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, count)),
                Err(WebauthnError::SignCountNotIncreased {
                    stored: 7,
                    received: i64::from(count)
                })
            );
        }
        assert!(verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, 8)).is_ok());
        stored.sign_count = 0;
        assert!(verify_authentication(&rp(), &challenge(), &stored, &assertion(&key, 0)).is_ok());
        assert!(sign_count_acceptable(0, 1) && !sign_count_acceptable(1, 0) && sign_count_acceptable(0, 0));
    }

    #[test]
    fn der_parsing_is_strict() {
        let int = |v: &[u8]| {
            let mut out = vec![0x02, v.len() as u8];
            out.extend_from_slice(v);
            out
        };
        let seq = |parts: &[Vec<u8>]| {
            let body: Vec<u8> = parts.concat();
            let mut out = vec![0x30, body.len() as u8];
            out.extend(body);
            out
        };
        let mut high = vec![0x00, 0x80];
        high.extend([1u8; 31]);
        let ok = der_signature_to_fixed(&seq(&[int(&high), int(&[5])])).unwrap();
        assert_eq!(ok[0], 0x80);
        assert_eq!(ok[63], 5);
        assert_eq!(&ok[32..63], &[0u8; 31]);
        // Non-minimal (leading zero before a byte < 0x80), negative, zero, too long, trailing data,
        // long-form length, wrong tags.
        assert!(der_signature_to_fixed(&seq(&[int(&[0, 1]), int(&[5])])).is_none());
        assert!(der_signature_to_fixed(&seq(&[int(&[0x80]), int(&[5])])).is_none());
        assert!(der_signature_to_fixed(&seq(&[int(&[0]), int(&[5])])).is_none());
        assert!(der_signature_to_fixed(&seq(&[int(&[1u8; 33]), int(&[5])])).is_none());
        let mut trailing = seq(&[int(&[1]), int(&[5])]);
        trailing.push(0);
        assert!(der_signature_to_fixed(&trailing).is_none());
        assert!(der_signature_to_fixed(&seq(&[int(&[1]), int(&[5]), int(&[5])])).is_none());
        let mut long_form = seq(&[int(&[1]), int(&[5])]);
        long_form.splice(1..2, [0x81, 6]);
        assert!(der_signature_to_fixed(&long_form).is_none());
        assert!(der_signature_to_fixed(&[0x31, 6, 2, 1, 1, 2, 1, 5]).is_none());
        assert!(der_signature_to_fixed(&[0x30, 6, 3, 1, 1, 2, 1, 5]).is_none());
        assert!(der_signature_to_fixed(&[]).is_none());
    }

    #[test]
    fn options_for_the_pages() {
        let o = creation_options(
            &rp(),
            "Bank",
            "u-taro",
            "taro",
            "Taro",
            &challenge(),
            &["abc".into()],
        );
        assert_eq!(o["rp"]["id"], "localhost");
        assert_eq!(b64::decode(o["user"]["id"].as_str().unwrap()).unwrap(), b"u-taro");
        assert_eq!(o["pubKeyCredParams"][0]["alg"], -7);
        assert_eq!(o["authenticatorSelection"]["userVerification"], "required");
        assert_eq!(o["excludeCredentials"][0]["id"], "abc");
        let r = request_options(&rp(), &challenge(), &[]);
        assert_eq!(
            (r["rpId"].as_str(), r["userVerification"].as_str()),
            (Some("localhost"), Some("required"))
        );
        let fresh = new_challenge(&crate::random::Random::system()).unwrap_or_default();
        assert!(fresh.len() >= 43);
    }

    #[test]
    fn oversized_fields_are_refused_before_decoding() {
        let key = TestKey::ec();
        let stored = registered(&key);
        let mut resp = assertion(&key, 1);
        resp.response.signature = "A".repeat(4000);
        assert_eq!(
            verify_authentication(&rp(), &challenge(), &stored, &resp),
            Err(WebauthnError::TooLarge("signature"))
        );
        assert_eq!(
            RegistrationResponse::from_json(&" ".repeat(MAX_RESPONSE_JSON_LEN + 1)).map(|_| ()),
            Err(WebauthnError::TooLarge("credential"))
        );
    }
}
