//! Probe: repeats chosen host calls N times per request (configuration "op:n,op:n").
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;

thread_local! { static TOUCH: RefCell<(Vec<u8>, usize)> = RefCell::new((Vec::new(), 0)); }

#[derive(Clone, Copy)]
enum Op { Touch, Headers, HeadersBytes, Time, Prop, SetReq, AddReq, RmReq, RmAbsent, SetResp, GetOne }

struct Root { ops: Rc<Vec<(Op, u32)>> }
struct Probe { ops: Rc<Vec<(Op, u32)>> }

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        let cfg = String::from_utf8_lossy(&cfg).into_owned();
        let mut ops = Vec::new();
        for part in cfg.split(',').filter(|p| !p.is_empty()) {
            let (name, n) = part.split_once(':').unwrap_or((part, "1"));
            let op = match name {
                "headers" => Op::Headers, "headers_bytes" => Op::HeadersBytes, "time" => Op::Time,
                "prop" => Op::Prop, "set_req" => Op::SetReq, "add_req" => Op::AddReq,
                "rm_req" => Op::RmReq, "rm_absent" => Op::RmAbsent, "set_resp" => Op::SetResp,
                "get_one" => Op::GetOne, "touch_kb" => Op::Touch, _ => return false,
            };
            ops.push((op, n.parse().unwrap_or(1)));
        }
        self.ops = Rc::new(ops);
        true
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe { ops: self.ops.clone() }))
    }
    fn get_type(&self) -> Option<ContextType> { Some(ContextType::HttpContext) }
}

const NAMES: [&str; 8] = ["x-p0", "x-p1", "x-p2", "x-p3", "x-p4", "x-p5", "x-p6", "x-p7"];

impl Context for Probe {}
impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let ops = self.ops.clone();
        let mut sink = 0usize;
        for &(op, n) in ops.iter() {
            for i in 0..n as usize {
                let name = NAMES[i % 8];
                match op {
                    Op::Headers => sink += self.get_http_request_headers().len(),
                    Op::HeadersBytes => sink += self.get_http_request_headers_bytes().len(),
                    Op::Time => sink += self.get_current_time().elapsed().map(|d| d.as_nanos() as usize).unwrap_or(0) & 1,
                    Op::Prop => sink += self.get_property(vec!["connection", "sha256_peer_certificate_digest"]).map_or(0, |v| v.len()),
                    Op::SetReq => self.set_http_request_header(name, Some("0123456789abcdef-value")),
                    Op::AddReq => self.add_http_request_header(name, "0123456789abcdef-value"),
                    Op::RmReq => { self.add_http_request_header("x-rm", "v"); self.set_http_request_header("x-rm", None) }
                    Op::RmAbsent => self.set_http_request_header("x-absent", None),
                    Op::SetResp => {}
                    Op::Touch => {
                        // Reads one byte per 64-byte line of a 1 KiB slice of a 4 MiB buffer (n slices
                        // per request, moving on each time): the data-cache footprint of a plugin.
                        TOUCH.with(|t| {
                            let mut t = t.borrow_mut();
                            let (buf, at) = &mut *t;
                            if buf.is_empty() { buf.resize(4 << 20, 1); }
                            for off in (0..1024).step_by(64) { sink += buf[(*at + off) % buf.len()] as usize; }
                            *at = (*at + 1024) % buf.len();
                        });
                    }
                    Op::GetOne => sink += self.get_http_request_header("authorization").map_or(0, |v| v.len()),
                }
            }
        }
        if sink == usize::MAX { proxy_wasm::hostcalls::log(LogLevel::Info, "x").ok(); }
        Action::Continue
    }
    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        for &(op, n) in self.ops.clone().iter() {
            if let Op::SetResp = op {
                for i in 0..n as usize { self.set_http_response_header(NAMES[i % 8], Some("0123456789abcdef-value")); }
            }
        }
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { ops: Rc::new(Vec::new()) }) });
}}
