//! The proxy-wasm glue: the only code that talks to the host. It turns host callbacks
//! into calls of the VM core ([`crate::worker::Worker`]) and applies the effects it returns.

mod apply;
mod backend;
#[allow(unsafe_code)]
mod host;
mod http;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
