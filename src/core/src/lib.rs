//! fapi-core: the FAPI 2.0 resource-server decision, as pure logic.
//!
//! Given the facts of a request, the time, the issuers' key sets and a compiled policy, [`guard::Guard`]
//! decides to admit the request (with the claims to forward) or refuse it with the right RFC 6750 /
//! RFC 9449 / RFC 9470 response. No I/O happens here: the Envoy plugin, the authorization server and the
//! policy studio bring the network, the clock and the randomness.
//!
//! Stages, one module each: [`extract`] (where the token is), [`policy`] (which rule, what it requires),
//! [`token`] (access tokens: JWS header, signature via [`jwks`], claims), [`binding`] (RFC 8705
//! certificate thumbprint), [`dpop`] (RFC 9449 proofs), [`cache`] (verified tokens, revocations),
//! [`decision`] (the answer), [`decision_cache`] (whole allows served again), with its refusals in [`denial`].
//!
//! One JWT validator, [`verify`], holds the header and time rules of every signed JWT: access tokens,
//! DPoP proofs, and for the authorization server client assertions, request objects and its own
//! tokens.

pub mod alg;
pub mod authorization_details;
pub mod b64;
pub mod binding;
pub mod cache;
pub mod decision;
pub mod decision_cache;
pub mod denial;
pub mod dpop;
pub mod extract;
pub mod guard;
pub mod jwk;
pub mod jwks;
pub mod jws;
#[cfg(feature = "p256-tables")]
pub mod p256_tables;
pub mod policy;
pub mod policy_tests;
pub mod revocation;
pub mod sha256;
#[cfg(feature = "sign")]
pub mod sign;
pub mod token;
pub mod uri;
pub mod verify;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use decision::{Decision, Denial};
pub use extract::RequestFacts;
pub use guard::{Context, Guard};
