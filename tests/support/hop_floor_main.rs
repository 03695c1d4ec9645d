//! The wasm floor for `make bench`: a proxy-wasm HTTP filter that only reads the
//! `Authorization` header and lets the request through. What it costs over no filter is
//! what any wasm filter pays per request in Envoy (VM entries, context bookkeeping, one
//! header hostcall), so bearer-guard's own work is measured against it.
//!
//! As a probe, its plugin configuration `{"call": KIND, "n": N}` makes it do N more host
//! calls of one kind per request, so `make bench` prices each kind of crossing on this
//! host as (probe − floor) / N: `time` (proxy_get_current_time), `header` (read one request
//! header), `set_header` (replace one request header), `property` (read a property),
//! `metric` (increment a counter), `shared` (read a shared-data key).
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::rc::Rc;

/// What the probe does on each request, besides the floor's one header read.
#[derive(Clone, Copy, PartialEq)]
enum Call {
    None,
    Time,
    Header,
    HeaderMap,
    SetHeader,
    Property,
    Metric(u32),
    Shared,
}

struct Probe {
    call: Call,
    n: usize,
}

struct Root(Rc<Probe>);
impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&config);
        // A tiny reader: `"call": "kind"` and `"n": digits`, nothing else is expected.
        let field = |key: &str| {
            let at = text.find(&format!("\"{key}\""))?;
            let rest = text.get(at + key.len() + 2..)?;
            let rest = rest.trim_start().strip_prefix(':')?.trim_start();
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest.get(..end)?.trim().trim_matches('"').to_string())
        };
        let call = match field("call").as_deref() {
            Some("time") => Call::Time,
            Some("header") => Call::Header,
            Some("header_map") => Call::HeaderMap,
            Some("set_header") => Call::SetHeader,
            Some("property") => Call::Property,
            Some("metric") => {
                match proxy_wasm::hostcalls::define_metric(MetricType::Counter, "probe.calls") {
                    Ok(id) => Call::Metric(id),
                    Err(_) => return false,
                }
            }
            Some("shared") => {
                let _ = self.set_shared_data("probe.key", Some(&[1u8; 64]), None);
                Call::Shared
            }
            _ => Call::None,
        };
        let n = field("n").and_then(|n| n.parse().ok()).unwrap_or(0);
        self.0 = Rc::new(Probe { call, n });
        true
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor(self.0.clone())))
    }
}

struct Floor(Rc<Probe>);
impl Context for Floor {}
impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        // Read, as a filter must, and keep: the optimizer cannot drop the hostcall.
        let seen = self.get_http_request_header("authorization").is_some();
        std::hint::black_box(seen);
        let probe = self.0.clone();
        for i in 0..probe.n {
            match probe.call {
                Call::None => {}
                Call::Time => {
                    std::hint::black_box(self.get_current_time());
                }
                Call::Header => {
                    std::hint::black_box(self.get_http_request_header("user-agent"));
                }
                Call::HeaderMap => {
                    std::hint::black_box(self.get_http_request_headers_bytes());
                }
                Call::SetHeader => {
                    let value = if i % 2 == 0 { "a" } else { "b" };
                    self.set_http_request_header("x-probe", Some(value));
                }
                Call::Property => {
                    std::hint::black_box(self.get_property(vec!["request", "protocol"]));
                }
                Call::Metric(id) => {
                    let _ = proxy_wasm::hostcalls::increment_metric(id, 1);
                }
                Call::Shared => {
                    std::hint::black_box(self.get_shared_data("probe.key"));
                }
            }
        }
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root(Rc::new(Probe { call: Call::None, n: 0 })))
    });
}}
