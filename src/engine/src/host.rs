//! What the engine asks of the proxy it runs in: the small interface each shell (proxy-wasm, Envoy
//! dynamic module) implements. Nothing here decides anything; it only moves bytes across the boundary.

use std::fmt;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// Why a write to shared storage did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// Someone else wrote the key since it was read (compare-and-swap lost): read again.
    CasMismatch,
    /// The host refused the write.
    Failed,
}

/// An outgoing HTTP request to a cluster of the proxy (keys, revocation feed, introspection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub cluster: String,
    /// `(name, value)` pairs, pseudo-headers (`:method`, `:path`, `:authority`) first.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

impl Callout {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to a [`Callout`]: `status` is empty when the call failed (reset, timeout, no cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutResponse {
    pub status: String,
    pub body: Vec<u8>,
}

impl fmt::Display for Callout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (cluster {})",
            self.header(":method").unwrap_or("?"),
            self.header(":path").unwrap_or("?"),
            self.cluster
        )
    }
}

/// The proxy's services that are not tied to one request: clock, randomness, counters, log lines,
/// storage shared by every worker, and HTTP callouts.
pub trait Host {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
    /// Fills `buf` with random bytes from the operating system; `false` when none could be had.
    fn random(&mut self, buf: &mut [u8]) -> bool;
    /// Adds `n` to the counter `fapi_guard.<name>` (shells map it to their stats namespace).
    fn counter(&mut self, name: &str, n: u64);
    fn log(&mut self, level: Level, line: &str);
    /// A value every worker sees, with its version (for compare-and-swap); `(None, None)` when absent.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if the key's version is still `cas` (`None`: unconditionally).
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError>;
    /// Starts an HTTP callout; its answer comes back through the engine's `on_callout` of whichever
    /// object made the call. `None` when it could not be started.
    fn http_call(&mut self, call: &Callout) -> Option<u32>;
}

/// One request's view of the proxy, besides the [`Host`] services.
pub trait RequestHost: Host {
    /// Every request header, in order, names lower-case, values as sent (any octets).
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)>;
    /// The request body the proxy has buffered for the engine, `size` bytes (the size the shell
    /// reported to [`crate::Request::on_request_body`]). Called only for rules that read the body,
    /// once the whole body is in.
    fn request_body(&mut self, size: usize) -> Vec<u8>;
    /// Whether the proxy can hold a request's headers while its body is buffered for this filter
    /// (Envoy's `StopIteration` on headers, then `StopIterationAndBuffer` on data). The native module
    /// can; a proxy-wasm host cannot: it turns a paused header hook into "stop everything", so the
    /// body hook would never run. There the headers go on to the router while the body is held: the
    /// upstream may see the request's headers, never its body, before the decision, and a refused
    /// request is reset before it is complete.
    fn holds_headers_for_body(&self) -> bool {
        true
    }
    /// Calls `f` with every request header, in order, as [`RequestHost::request_headers`] gives
    /// them; `f` copies what it keeps. A shell whose proxy can lend its own buffers overrides this
    /// to save the copies (no header is written while `f` runs).
    fn for_each_request_header(&mut self, f: &mut dyn FnMut(&str, &[u8])) {
        for (name, value) in self.request_headers() {
            f(&name, &value);
        }
    }
    /// The SHA-256 of the TLS peer certificate (DER), lower-case hex, when the client sent one.
    fn peer_certificate_digest(&mut self) -> Option<String>;
    /// Sets (replacing every value of) a request header.
    fn set_request_header(&mut self, name: &str, value: &str);
    fn remove_request_header(&mut self, name: &str);
    fn set_response_header(&mut self, name: &str, value: &str);
    /// Answers the client now; the request goes no further.
    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// Lets a request paused by the engine continue to the upstream.
    fn resume_request(&mut self);
}
