//! The back channel: token endpoint, revocation, introspection, the revocation feed for the Envoy
//! plugin, userinfo and dynamic client registration. Mounted on both TLS listeners; the mTLS one
//! adds the client certificate (RFC 8705) to each request.

pub mod feed;
pub mod register;
pub mod revoke;
pub mod support;
#[cfg(test)]
mod tests;
pub mod token;
pub mod userinfo;

use crate::app::Shared;
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/token", post(token::token))
        .route("/revoke", post(revoke::revoke))
        .route("/introspect", post(revoke::introspect))
        .route("/revocations", get(feed::feed))
        .route("/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/register", post(register::create))
        .route(
            "/register/{client_id}",
            get(register::read).put(register::update).delete(register::delete),
        )
}
