//! The front channel: pushed authorization requests, the authorization endpoint, and the pages a
//! person uses (sign-in, TOTP, passkeys, consent, connected apps).

use crate::app::Shared;
use axum::Router;

pub fn routes() -> Router<Shared> {
    Router::new()
}
