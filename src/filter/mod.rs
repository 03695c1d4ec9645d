//! The proxy-wasm glue: the only code that talks to the host. It gathers inputs,
//! runs [`crate::pipeline::decide`] and applies the decision.

mod backend;
mod host;
mod http;
mod metrics;
mod root;
mod state;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}

pub(crate) use host::{log, now_ms, Level};
