//! Native tests: the VM core with several VMs on one store, the decision pipeline,
//! conformance vectors, fuzz smoke and provider recipes — no Envoy.

#[path = "../support/mod.rs"]
mod support;

mod vm;
