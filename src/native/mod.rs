//! The native host: bearer-guard as an Envoy dynamic module (`libbearer_guard.so`), over
//! the same core as the proxy-wasm module.
//!
//! - [`abi`]: our bindings to Envoy 1.40's dynamic-module ABI — the exported hooks and the
//!   callbacks, and the only `unsafe` here.
//! - [`plugin`]: a configuration, shared by every worker thread: its metrics and the relay
//!   between workers and the main thread (calls are made on the main thread; answers go
//!   back to the worker that asked), and the ticker that wakes workers with paused
//!   requests.
//! - [`filter`]: a worker thread's core per configuration (thread-local) and each
//!   stream's hooks turned into the core's entry points, its effects applied.
//! - `floor` (feature `bench-floor` only): the bench's native floor, a second filter that
//!   only reads the request's headers.
//!
//! The process-wide state is the native [`crate::shared::ProcessStore`]: one per process,
//! the same leases and compare-and-swap as proxy-wasm shared data.

#[allow(unsafe_code)]
mod abi;
mod filter;
#[cfg(feature = "bench-floor")]
mod floor;
mod plugin;
