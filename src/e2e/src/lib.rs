//! fapi-guard's end-to-end harness: the pieces tests use to run the real programs (Envoy with the
//! plugin, later the authorization server and the bank API) on this machine, over loopback only.
//!
//! - [`util`]: free ports, [`util::wait_until`] (poll a condition; never sleep to synchronize),
//!   scratch directories that survive a failing test for inspection, the workspace root.
//! - [`process`]: a child process whose output goes to a log file and which is killed (with its
//!   process group) and reaped when the guard drops, also when a test panics.
//! - [`envoy`]: writes an Envoy configuration (mTLS listener, the wasm plugin, static clusters), starts
//!   Envoy, waits until it is ready, reads its stats and its log.
//! - [`server`]: a tiny HTTP/1.1 server with a handler closure; [`server::echo`] answers with the
//!   request it received, [`stub::IssuerStub`] plays JWKS endpoint, revocation feed and RFC 7662
//!   introspection with answers a test changes at run time.
//! - [`pki`]: a test PKI (CA, server certificate, self-signed client certificates) with rcgen.
//! - [`fintech`]: a FAPI 2.0 client of a running stack described by its `endpoints.json` (the demo
//!   client `fapi-fintech` and the scenario suite `fapi-scenarios` use it).
//! - [`client`]: an HTTPS client with a client certificate (rustls on ring), raw enough to send
//!   duplicate headers and to tell a failed TLS handshake from an HTTP refusal.

pub mod client;
pub mod envoy;
pub mod fapi_as;
pub mod fintech;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod server;
pub mod stub;
pub mod util;

/// Errors of the harness: a message, since every caller is a test that prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `Err(Error(..))` with a formatted message.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error(format!($($arg)*)))
    };
}

/// Adds context to an error: `io_result.ctx("writing envoy.json")?`.
pub trait Context<T> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| Error(format!("{what}: {e}")))
    }
}
