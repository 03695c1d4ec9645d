//! bearer-guard: an HTTP filter for Envoy that verifies bearer tokens and authorizes each
//! request against per-route rules — a proxy-wasm module (`filter`) and, over the same
//! core, a native Envoy dynamic module.
//!
//! Everything but the hosts is a sans-IO core: it never touches a host ABI, takes time as
//! an argument and is tested natively. The layers, lowest first (`docs/development.md`
//! maps every folder; `tests/native/layers.rs` checks the imports): leaves → domain →
//! config → pipeline → worker → hosts. The modules are private; what the command line,
//! the tests, the benches and the fuzz targets use is re-exported below.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)
)]
#![warn(missing_docs)]
// `unsafe` lives in the two hosts' binding modules only (`filter::host`, `native::abi`).
#![deny(unsafe_code)]

mod account;
mod algorithm;
mod authz;
mod bounded_cache;
mod config;
mod encoding;
mod error;
#[cfg(not(target_arch = "wasm32"))]
mod explain;
mod graphql;
mod introspection;
mod keys;
mod mcp;
mod pipeline;
mod reply;
mod request;
mod resource;
mod revocation;
mod sender;
mod shared;
mod strict_json;
mod token;
mod verify;
mod worker;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
mod native;

// The configuration and its compiled form.
pub use config::revocation::MAX_ENTRIES as MAX_REVOCATION_ENTRIES;
pub use config::{parse as parse_config, Config, DefaultPolicy, DEFAULT_MAX_JWKS_BYTES};
pub use error::ConfigError;
// A request and its answers.
pub use reply::{Challenge, Denial, Reply, StepUp};
pub use request::{Body, Headers, Request};
// The decision and what it may ask.
pub use pipeline::{
    decide, decide_traced, rule_sources, select_provider, verify_signature, AccountLookup,
    Authenticated, CacheNote, Decision, FixedKeys, FixedRevocations, Inputs, KeyLookup, Outcome,
    RevocationLookup, VerdictLookup, Wait,
};
// The per-worker core and its host.
pub use worker::accounts::{LOST_LOOKUP_MS, MAX_IN_FLIGHT};
pub use worker::{
    CallResponse, DispatchError, Effect, Host, Level, MetricKind, Outgoing, ResponsePlan, Worker,
    ACCOUNT_CLAIM_GRACE_MS, HELD_BODY_WAIT_MS, HOST_CALLS_PER_REQUEST, IDLE_TICK_MS, WAIT_GRACE_MS,
};
// Keys, signatures and the process-wide store.
pub use account::AccountState;
pub use algorithm::{Algorithm, Curve, Hash};
pub use encoding::b64url;
pub use keys::{EcKey, Key, KeySet, RsaKey};
#[cfg(not(target_arch = "wasm32"))]
pub use shared::ProcessStore;
pub use shared::{KeyAvailability, MemoryStore, Store, StoreError, LEASE_GRACE_MS};
pub use token::cache::{SharedTokens, SharedVerdict, TokenCache, TokenDigest};
pub use token::{split as split_jws, TokenSource};
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub use verify::NativeBackend;
pub use verify::{
    rsassa_pss, verify_ed25519, verify_hmac, BackendError, RustBackend, SignatureBackend,
};
// Revocation lists, sender constraints and GraphQL documents.
#[cfg(feature = "fuzzing")]
pub use graphql::reference::root_fields as reference_root_fields;
pub use graphql::{document_fields, root_fields, Limits as GraphqlLimits};
pub use revocation::{Limits as RevocationLimits, RevocationList};
pub use sender::{
    check_proof, jwk_thumbprint, pem_certificate_der, ProofContext, ProofError, MAX_JTI_BYTES,
    MAX_PROOF_BYTES,
};
// The `bearer-guard` command's explanation of a decision.
#[cfg(not(target_arch = "wasm32"))]
pub use explain::{explain, explain_with, introspection_answer, Explain, Explanation};

/// The response callbacks of [`UNIMPLEMENTED_CALLBACKS`] that `bearer_guard_lists.wasm`
/// keeps (built with the `lists` feature): the module that filters MCP list answers
/// (`filter_lists`) sees responses; the other one never pays for them.
pub const RESPONSE_CALLBACKS: &[&str] = &[
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
];

/// proxy-wasm callbacks the filter does not implement. The SDK exports every callback of
/// the ABI, and a host enters the VM for each exported one on every request, response and
/// body chunk; `make build` removes these from the module's exports (`wasm-trim`), so the
/// host skips them. A callback the filter starts implementing must leave this list.
/// (The response callbacks are implemented for `bearer_guard_lists.wasm` only; the main
/// module has them removed.)
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
