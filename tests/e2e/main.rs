//! End to end, one binary: the real Envoy with the built `.wasm`, real servers on
//! loopback and real HTTP requests, one module per area. `compose` runs the demo in
//! containers (`#[ignore]`d here; `make test-compose` runs it).

#[path = "../support/mod.rs"]
mod support;

mod attacks;
mod authorization;
mod claims;
mod common;
mod compose;
mod decisions;
mod dpop;
mod faults;
mod foundation;
mod graphql;
mod graphql_heads;
mod identity;
mod introspection;
mod mcp;
mod observability;
mod operations;
mod process;
mod resource;
mod revocation;
mod rollout;
mod sources;
mod token_policy;
