//! Envoy stats for the plugin (they appear as `wasmcustom.fapi_guard.*`): decisions by outcome and
//! reason, token cache hits and misses, key-set fetches and revocation-feed polls. The per-request
//! counters are batched per VM and flushed on the one-second tick (see [`Metrics::flush`]).

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// The per-request counters, counted here and added to Envoy's on the root context's tick (each
    /// `increment_metric` is a host call): `allowed`, `token_cache.hit`, `token_cache.miss`.
    pending: [u64; 3],
}

const BATCHED: [&str; 3] = ["allowed", "token_cache.hit", "token_cache.miss"];

impl Metrics {
    fn bump(&mut self, name: &str) {
        self.add(name, 1);
    }

    fn add(&mut self, name: &str, n: u64) {
        let id = match self.ids.get(name) {
            Some(id) => *id,
            None => match hostcalls::define_metric(MetricType::Counter, &format!("fapi_guard.{name}")) {
                Ok(id) => {
                    self.ids.insert(name.to_string(), id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, n as i64);
    }

    /// Defines the batched counters (so they show as 0 before the first request) and adds what was
    /// counted since the last flush. Called on every tick.
    pub fn flush(&mut self) {
        for (i, name) in BATCHED.iter().enumerate() {
            let n = std::mem::take(&mut self.pending[i]);
            if n > 0 || !self.ids.contains_key(*name) {
                self.add(name, n);
            }
        }
    }

    /// `allowed` (batched), or `denied.<reason>` plus `denied` (at once: refusals are rare and
    /// operators watch them).
    pub fn decision(&mut self, reason: &str) {
        if reason == "allowed" {
            self.pending[0] += 1;
        } else {
            self.bump("denied");
            self.bump(&format!("denied.{reason}"));
        }
    }

    /// Batched: a cache hit or miss per token request.
    pub fn cache(&mut self, hit: bool) {
        self.pending[if hit { 1 } else { 2 }] += 1;
    }

    pub fn event(&mut self, name: &str) {
        self.bump(name);
    }
}
