//! Shared end-to-end test support: token minting, loopback servers and the Envoy harness.
#![allow(dead_code)]

pub mod envoy;
pub mod idp;
pub mod servers;
