//! Envoy stats for the plugin (they appear as `wasmcustom.fapi_guard.*`): decisions by outcome and
//! reason, token cache hits and misses, key-set fetches and revocation-feed polls.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
}

impl Metrics {
    fn bump(&mut self, name: &str) {
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
        let _ = hostcalls::increment_metric(id, 1);
    }

    /// `allowed`, or `denied.<reason>` plus `denied`.
    pub fn decision(&mut self, reason: &str) {
        if reason == "allowed" {
            self.bump("allowed");
        } else {
            self.bump("denied");
            self.bump(&format!("denied.{reason}"));
        }
    }

    pub fn cache(&mut self, hit: bool) {
        self.bump(if hit {
            "token_cache.hit"
        } else {
            "token_cache.miss"
        });
    }

    pub fn event(&mut self, name: &str) {
        self.bump(name);
    }
}
