//! The root context of each VM: hands the configuration to the engine (a bad one stops the plugin:
//! fail closed), runs the engine's background work on a one-second tick, and makes a request context
//! per request. Everything it does is in fapi-engine.

use crate::host::{callout_response, WasmHost};
use fapi_engine::{Background, Worker};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[derive(Default)]
pub struct Root {
    worker: Option<Rc<RefCell<Worker>>>,
    background: Background,
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration();
        let Some(worker) = fapi_engine::load(&mut WasmHost, config.as_deref()) else {
            return false;
        };
        self.worker = Some(Rc::new(RefCell::new(worker)));
        self.set_tick_period(Duration::from_secs(1));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            self.background.tick(&mut worker.borrow_mut(), &mut WasmHost);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.clone()?;
        Some(Box::new(crate::http::Request::new(worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let response = callout_response(body_size);
        if let Some(worker) = &self.worker {
            self.background
                .on_callout(&mut worker.borrow_mut(), &mut WasmHost, token, &response);
        }
    }
}
