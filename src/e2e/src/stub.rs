//! A stand-in for the authorization server's machine endpoints, with answers a test changes while
//! the plugin runs: the JWKS (`GET /jwks`), the revocation feed (`GET /revocations`, the format of
//! `fapi_core::revocation`) and RFC 7662 introspection (`POST /introspect`). `down` makes every
//! endpoint answer 503; [`IssuerStub::stop`] closes the port altogether.

use crate::server::{HttpServer, Request, Response};
use crate::Result;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

pub const JWKS_PATH: &str = "/jwks";
pub const FEED_PATH: &str = "/revocations";
pub const INTROSPECTION_PATH: &str = "/introspect";

/// What the stub answers; change it through [`IssuerStub::state`].
#[derive(Debug, Clone)]
pub struct IssuerState {
    /// The JWKS document served at [`JWKS_PATH`].
    pub jwks: Value,
    /// Revoked tokens: (iss, jti, exp).
    pub revoked: Vec<(String, String, i64)>,
    /// Tokens introspection calls inactive (every other token is active).
    pub inactive: HashSet<String>,
    /// Answer 503 to everything.
    pub down: bool,
    /// Every request seen: (method, path with query).
    pub seen: Vec<(String, String)>,
}

pub struct IssuerStub {
    state: Arc<Mutex<IssuerState>>,
    server: HttpServer,
}

impl IssuerStub {
    pub fn start(jwks: Value) -> Result<Self> {
        Self::start_on(0, Arc::new(Mutex::new(IssuerState::new(jwks))))
    }

    /// On a given port (0: any), with a given shared state (to come back after [`IssuerStub::stop`]).
    pub fn start_on(port: u16, state: Arc<Mutex<IssuerState>>) -> Result<Self> {
        let s = state.clone();
        let server = HttpServer::start_on(port, Arc::new(move |req: &Request| answer(&s, req)))?;
        Ok(IssuerStub { state, server })
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The shared state (lock it briefly; the server threads read it on every request).
    pub fn state(&self) -> MutexGuard<'_, IssuerState> {
        lock(&self.state)
    }

    pub fn shared_state(&self) -> Arc<Mutex<IssuerState>> {
        self.state.clone()
    }

    /// Number of requests seen whose path starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.state()
            .seen
            .iter()
            .filter(|(_, p)| p.starts_with(prefix))
            .count()
    }

    /// Stops listening: connections to the port are refused.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

impl IssuerState {
    pub fn new(jwks: Value) -> Self {
        IssuerState {
            jwks,
            revoked: Vec::new(),
            inactive: HashSet::new(),
            down: false,
            seen: Vec::new(),
        }
    }
}

fn lock(m: &Mutex<IssuerState>) -> MutexGuard<'_, IssuerState> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn answer(state: &Mutex<IssuerState>, req: &Request) -> Response {
    let mut s = lock(state);
    s.seen.push((req.method.clone(), req.path.clone()));
    if s.down {
        return Response::json(503, &json!({"error": "temporarily_unavailable"}));
    }
    match (req.method.as_str(), req.path_only()) {
        ("GET", JWKS_PATH) => Response::json(200, &s.jwks),
        ("GET", FEED_PATH) => {
            // Every unexpired revocation, whatever `since` says: the plugin de-duplicates.
            let revoked: Vec<Value> = s
                .revoked
                .iter()
                .map(|(iss, jti, exp)| json!({"iss": iss, "jti": jti, "exp": exp}))
                .collect();
            Response::json(
                200,
                &json!({"cursor": s.revoked.len().to_string(), "revoked": revoked}),
            )
        }
        ("POST", INTROSPECTION_PATH) => {
            let body = String::from_utf8_lossy(&req.body);
            let token = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(|t| t.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))
                .unwrap_or_default();
            if token.is_empty() {
                return Response::json(400, &json!({"error": "invalid_request"}));
            }
            Response::json(200, &json!({"active": !s.inactive.contains(&token)}))
        }
        _ => Response::json(404, &json!({"error": "not_found"})),
    }
}
