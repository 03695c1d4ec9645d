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
pub mod authorizer;
pub mod config;
pub mod envoy_ffi;
pub mod identity;
pub mod jwks;
pub mod matcher;
pub mod pipeline;
pub mod reply;
pub mod request;
pub mod strict_json;
pub mod token;
pub mod token_cache;
pub mod verifier;

#[cfg(target_arch = "wasm32")]
mod filter;
