//! fapi-engine: fapi-guard's request path with no proxy in it, shared by the proxy-wasm plugin
//! (`src/filter`) and the native Envoy dynamic module (`src/native`).
//!
//! Every decision is fapi-core's; this crate does what surrounds it, the same way for both shells:
//! [`request`] gathers a request's facts, strips spoofed claim headers, forwards claims or renders the
//! refusal and logs its one line, and pauses for a key refetch or an RFC 7662 introspection;
//! [`background`] keeps key sets and the revocation feed fresh; [`worker`] holds the policy, the caches
//! and the freshness rules; [`shared`] is what all workers share (leases, published documents, the
//! DPoP replay store); [`metrics`] names the stats. The shells implement [`host::Host`] and
//! [`host::RequestHost`] and nothing else. No I/O here: tests run natively with a fake host.

pub mod background;
pub mod host;
pub mod ids;
pub mod metrics;
pub mod request;
pub mod shared;
pub mod worker;

pub use background::Background;
pub use host::{Callout, CalloutResponse, Host, Level, RequestHost, SharedError};
pub use request::{Action, Request};
pub use worker::{load, Worker};
