//! What a provider accepts of sender-constrained tokens: its `dpop` and `mtls_binding`
//! settings, as the configuration compiles them.

use crate::algorithm::Algorithm;

/// Whether a sender constraint is required or only accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// Every token of the provider must be bound, and the binding proven.
    Required,
    /// Bound tokens must prove their binding; unbound tokens pass as bearer tokens.
    Allowed,
}

/// `providers[i].dpop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dpop {
    /// `required` or `allowed`.
    pub mode: BindingMode,
    /// The algorithms a proof may be signed with (public-key only).
    pub algorithms: Vec<Algorithm>,
    /// How old a proof's `iat` may be, seconds (newer by at most `clock_skew_s`).
    pub max_age_s: i64,
    /// `scheme://authority` the proofs' `htu` is compared against (normalized), instead
    /// of the request's `:scheme` and `:authority`.
    pub public_base_url: Option<String>,
    /// The replay store's size in entries (a multiple of its bucket size).
    pub replay_entries: usize,
    /// `WWW-Authenticate: DPoP` challenge parameter `algs`: the algorithm names.
    pub algs: String,
}

/// `providers[i].mtls_binding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsBinding {
    /// `required` or `allowed`.
    pub mode: BindingMode,
    /// Take the client certificate's hash from `x-forwarded-client-cert` (set by a
    /// trusted front proxy) instead of the TLS connection Envoy terminated.
    pub trust_forwarded_client_cert: bool,
}
