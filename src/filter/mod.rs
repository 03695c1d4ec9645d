//! The proxy-wasm glue: the only code that talks to the host. It gathers inputs,
//! runs [`crate::pipeline::decide`] and applies the decision.

mod backend;
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

/// Logs through the host; a failing log call is ignored (never a panic).
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = proxy_wasm::hostcalls::log(level, message);
}

/// Current host time in milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
