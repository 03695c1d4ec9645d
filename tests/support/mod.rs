//! Test support, shared by the native and end-to-end binaries: token minting, the named
//! fixtures (tokens, keys, configurations), loopback servers, the Envoy harness and the
//! vendored vectors' reader.
#![allow(dead_code)]

pub mod envoy;
pub mod fixtures;
pub mod idp;
pub mod servers;
pub mod vectors;
