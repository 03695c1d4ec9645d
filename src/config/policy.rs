//! Top-level policies: enforce or audit, optional authentication, the default for
//! unmatched requests, the signature backend, and the sizes of the per-VM and
//! process-wide caches.

use crate::error::{err, ConfigError};

/// Whether denials are enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A denial answers the request (401, 403, 400, 500).
    #[default]
    Enforce,
    /// A denial is logged and counted (`would_deny.<reason>`) and the request continues:
    /// for rolling out rules on traffic that already flows.
    Audit,
}

/// Whether a rule needs a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authentication {
    /// Every request needs a valid token.
    #[default]
    Required,
    /// A request without `Authorization` passes without identity; one with a credential
    /// must be valid and meet the rule's requirements.
    Optional,
}

/// Which RSA signature backend the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifierChoice {
    /// Envoy's `verify_signature` foreign function when the host has it, else pure Rust.
    #[default]
    Auto,
    /// Always Envoy's foreign function; configuration fails where the host lacks it.
    Envoy,
    /// Always the built-in pure-Rust verifier (`rsa_public`).
    Rust,
}

impl VerifierChoice {
    /// Whether public-key signatures go to the host's `verify_signature`, given whether
    /// the host has it; an error (naming the field) when the configuration insists on a
    /// host function this host lacks.
    pub fn use_host(self, host_has_it: bool) -> Result<bool, ConfigError> {
        match self {
            VerifierChoice::Auto => Ok(host_has_it),
            VerifierChoice::Rust => Ok(false),
            VerifierChoice::Envoy if host_has_it => Ok(true),
            VerifierChoice::Envoy => err(
                "verifier",
                "this host has no verify_signature foreign function",
            ),
        }
    }
}

/// What happens to a request that matches no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultPolicy {
    /// A valid token is required, nothing more.
    #[default]
    Authenticated,
    /// The request is refused with 403 `Not enough permissions`.
    Deny,
}

/// The JSON names of the modes.
pub(super) const MODES: &[(&str, Mode)] = &[("enforce", Mode::Enforce), ("audit", Mode::Audit)];

/// Slots of the process-wide second levels behind each VM's caches (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSlots {
    /// Verified-token verdicts (about 150 bytes of Envoy memory each).
    pub tokens: usize,
    /// Account lookups (about 150 bytes each, plus the account's JSON).
    pub accounts: usize,
}

impl Default for SharedSlots {
    fn default() -> Self {
        SharedSlots {
            tokens: 8192,
            accounts: 4096,
        }
    }
}
