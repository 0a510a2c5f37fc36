//! One request's context: passes Envoy's callbacks to the engine's request path.

use crate::host::{callout_response, WasmHost};
use fapi_engine::{Action, Worker};
use proxy_wasm::traits::{Context, HttpContext};
use std::cell::RefCell;
use std::rc::Rc;

pub struct Request {
    worker: Rc<RefCell<Worker>>,
    engine: fapi_engine::Request,
}

impl Request {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Self {
        Request {
            worker,
            engine: fapi_engine::Request::new(),
        }
    }
}

impl Context for Request {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let response = callout_response(body_size);
        self.engine
            .on_callout(&mut self.worker.borrow_mut(), &mut WasmHost, token, &response);
    }
}

fn wasm_action(a: Action) -> proxy_wasm::types::Action {
    match a {
        Action::Continue => proxy_wasm::types::Action::Continue,
        Action::Pause => proxy_wasm::types::Action::Pause,
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        wasm_action(self.engine.on_request_headers(
            &mut self.worker.borrow_mut(),
            &mut WasmHost,
            end_of_stream,
        ))
    }

    /// `body_size` is what Envoy has buffered so far (Pause here is StopIterationAndBuffer); the
    /// engine reads the bytes only for a request it holds, once they are all in.
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> proxy_wasm::types::Action {
        if !self.engine.wants_body_events() {
            return proxy_wasm::types::Action::Continue;
        }
        wasm_action(self.engine.on_request_body(
            &mut self.worker.borrow_mut(),
            &mut WasmHost,
            body_size,
            end_of_stream,
        ))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> proxy_wasm::types::Action {
        wasm_action(
            self.engine
                .on_request_trailers(&mut self.worker.borrow_mut(), &mut WasmHost),
        )
    }

    fn on_http_response_headers(
        &mut self,
        _headers: usize,
        _end_of_stream: bool,
    ) -> proxy_wasm::types::Action {
        self.engine.on_response_headers(&mut WasmHost);
        proxy_wasm::types::Action::Continue
    }
}
