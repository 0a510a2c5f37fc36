//! `fapi-bank`: the sample bank API of fapi-guard's test harness (see README.md for the endpoint
//! reference). It sits behind Envoy and the fapi-guard plugin and trusts only the claim headers the
//! plugin forwards (`x-fapi-subject`, `x-fapi-scope`, ...); it never sees an access token.
//!
//! - [`store`]: the ledger in SQLite (accounts, transactions, idempotent atomic transfers, demo seed).
//! - [`api`]: the axum router, the caller from the claim headers, JSON bodies and error codes.

pub mod api;
pub mod store;
