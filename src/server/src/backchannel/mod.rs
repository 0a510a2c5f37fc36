//! The back channel: token endpoint, revocation, introspection, the revocation feed for the Envoy
//! plugin, userinfo and dynamic client registration.

use crate::app::Shared;
use axum::Router;

pub fn routes() -> Router<Shared> {
    Router::new()
}
