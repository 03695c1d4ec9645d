//! Native tests, one binary: the VM core with several VMs on one store (`vm`), the
//! decision pipeline (`pipeline`), conformance vectors (`conformance`), a bounded
//! mutation fuzz (`fuzz_smoke`) and the provider recipes (`recipes`), revocation lists across VMs (`revocation`) — no Envoy.

#[path = "../support/mod.rs"]
mod support;

mod conformance;
mod fuzz_smoke;
mod metrics;
mod pipeline;
mod recipes;
mod revocation;
mod vm;
