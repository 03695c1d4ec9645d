//! Native tests, one binary: the VM core with several VMs on one store (`vm`), the
//! decision pipeline (`pipeline`), conformance vectors (`conformance`), a bounded
//! mutation fuzz (`fuzz_smoke`), the provider recipes (`recipes`), revocation lists
//! across VMs (`revocation`), sender-constrained tokens (`dpop`), the native process
//! store with real threads (`threads`) and the documents' names of files and
//! configuration fields (`docs`) — no Envoy.

#[path = "../support/mod.rs"]
mod support;

mod conformance;
mod docs;
mod dpop;
mod fuzz_smoke;
mod introspection;
mod layers;
mod mcp;
mod metrics;
mod pipeline;
mod recipes;
mod revocation;
mod threads;
mod vm;
mod waiting;
