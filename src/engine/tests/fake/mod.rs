//! A fake proxy for the engine's tests: a settable clock, deterministic randomness, counters, log
//! lines, shared storage with versions, recorded callouts, and one request's headers and reply.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fapi_engine::host::{Callout, Host, Level, RequestHost, SharedError};
use std::collections::HashMap;

/// A local reply: status, headers, body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
pub struct FakeHost {
    pub now: i64,
    pub rng: u64,
    pub counters: HashMap<String, u64>,
    pub logs: Vec<(Level, String)>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    pub next_call: u32,
    /// Callouts started and not answered yet.
    pub calls: Vec<(u32, Callout)>,
    // The current request.
    pub headers: Vec<(String, Vec<u8>)>,
    pub peer_digest: Option<String>,
    pub set: Vec<(String, String)>,
    pub removed: Vec<String>,
    pub response_set: Vec<(String, String)>,
    pub reply: Option<Reply>,
    pub resumed: bool,
    /// The request body the proxy has buffered so far.
    pub body: Vec<u8>,
    /// How many times the engine read the body.
    pub body_reads: usize,
    /// Behave like a proxy-wasm host: headers cannot be held while the body is buffered.
    pub cannot_hold_headers: bool,
}

impl FakeHost {
    pub fn at(now: i64) -> Self {
        FakeHost {
            now,
            rng: 1,
            ..Default::default()
        }
    }

    pub fn counter_value(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// A new request with these headers (the rest of the request state is reset).
    pub fn request(&mut self, headers: &[(&str, &str)], peer_digest: Option<&str>) {
        self.headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        self.peer_digest = peer_digest.map(str::to_string);
        self.set.clear();
        self.removed.clear();
        self.response_set.clear();
        self.reply = None;
        self.resumed = false;
        self.body.clear();
        self.body_reads = 0;
    }

    pub fn take_calls(&mut self) -> Vec<(u32, Callout)> {
        std::mem::take(&mut self.calls)
    }

    pub fn set_header(&self, name: &str) -> Option<&str> {
        self.set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Host for FakeHost {
    fn now(&self) -> i64 {
        self.now
    }

    fn random(&mut self, buf: &mut [u8]) -> bool {
        for b in buf.iter_mut() {
            // xorshift64: deterministic, different per call.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            *b = self.rng as u8;
        }
        true
    }

    fn counter(&mut self, name: &str, n: u64) {
        *self.counters.entry(name.to_string()).or_default() += n;
    }

    fn log(&mut self, level: Level, line: &str) {
        self.logs.push((level, line.to_string()));
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedError> {
        let current = self.shared.get(key).map(|(_, c)| *c);
        if let (Some(expected), Some(current)) = (cas, current) {
            if expected != current {
                return Err(SharedError::CasMismatch);
            }
        }
        let next = current.map_or(1, |c| c + 1);
        self.shared.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn http_call(&mut self, call: &Callout) -> Option<u32> {
        self.next_call += 1;
        self.calls.push((self.next_call, call.clone()));
        Some(self.next_call)
    }
}

impl RequestHost for FakeHost {
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        self.headers.clone()
    }

    fn peer_certificate_digest(&mut self) -> Option<String> {
        self.peer_digest.clone()
    }

    fn holds_headers_for_body(&self) -> bool {
        !self.cannot_hold_headers
    }

    fn request_body(&mut self, size: usize) -> Vec<u8> {
        self.body_reads += 1;
        self.body[..size.min(self.body.len())].to_vec()
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        self.set.push((name.to_string(), value.to_string()));
    }

    fn remove_request_header(&mut self, name: &str) {
        self.removed.push(name.to_string());
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.response_set.push((name.to_string(), value.to_string()));
    }

    fn send_local_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        assert!(self.reply.is_none(), "two local replies for one request");
        self.reply = Some((
            status,
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body.to_vec(),
        ));
    }

    fn resume_request(&mut self) {
        self.resumed = true;
    }
}
