//! fapi-as: a FAPI 2.0 authorization server (FAPI 2.0 Security Profile; FAPI 1 Advanced and FAPI 2.0
//! Message Signing options per client) that issues the sender-constrained JWT access tokens the
//! fapi-guard Envoy plugin verifies. JOSE and JWK code comes from fapi-core.

pub mod app;
pub mod authorization_details;
pub mod backchannel;
pub mod client_auth;
pub mod client_jwks;
pub mod clock;
pub mod config;
pub mod error;
pub mod frontchannel;
pub mod jwe;
pub mod keys;
pub mod model;
pub mod password;
pub mod random;
pub mod resource;
pub mod serve;
pub mod store;
pub mod tls;
pub mod totp;
pub mod webauthn;
