//! bearer-guard: a proxy-wasm HTTP filter that verifies `Authorization: Bearer <JWT>` and
//! authorizes each request against per-route rules.
//!
//! Everything except [`filter`] is a sans-IO core: it never touches proxy-wasm, takes time
//! as an argument and is tested natively with `cargo test`. The `filter` module (compiled
//! for `wasm32` only) gathers inputs from Envoy and applies the core's decisions.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]
#![warn(missing_docs)]

pub mod account;
pub mod algorithm;
pub mod authz;
pub mod bounded_cache;
pub mod config;
pub mod encoding;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod explain;
pub mod graphql;
pub mod keys;
pub mod pipeline;
pub mod reply;
pub mod request;
pub mod revocation;
pub mod sender;
pub mod shared;
pub mod strict_json;
pub mod token;
pub mod verify;
pub mod worker;

#[cfg(target_arch = "wasm32")]
mod filter;

/// proxy-wasm callbacks the filter does not implement. The SDK exports every callback of
/// the ABI, and a host enters the VM for each exported one on every request, response and
/// body chunk; `make build` removes these from the module's exports (`wasm-trim`), so the
/// host skips them. A callback the filter starts implementing must leave this list.
pub const UNIMPLEMENTED_CALLBACKS: &[&str] = &[
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
    "proxy_on_queue_ready",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_grpc_close",
    "proxy_on_foreign_function",
];
