//! The wasm floor for `make bench`: a proxy-wasm HTTP filter that only reads the
//! `Authorization` header and lets the request through. What it costs over no filter is
//! what any wasm filter pays per request in Envoy (VM entries, context bookkeeping, one
//! header hostcall), so bearer-guard's own work is measured against it.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor))
    }
}

struct Floor;
impl Context for Floor {}
impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Read, as a filter must, and keep: the optimizer cannot drop the hostcall.
        let seen = self.get_http_request_header("authorization").is_some();
        std::hint::black_box(seen);
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}}
