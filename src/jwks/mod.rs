//! Key sets: JWKS parsing into typed keys ([`keys`]), OpenID Connect [`discovery`], the
//! process-wide [`fetch`] state machine of each JWKS source, and one provider's keys as a
//! VM sees them ([`provider_keys`]).
//!
//! The state machine is fed `(now, outcome)` and asked what is due; it owns no timers.
//! Its state lives in the shared store ([`crate::shared`]): one VM of the process fetches
//! a JWKS, publishes the document, and every VM adopts it.

pub mod discovery;
pub mod fetch;
pub mod keys;
pub mod provider_keys;

pub use self::discovery::interpret_discovery;
pub use self::fetch::{interpret_fetch, FetchPolicy, FetchState, KeyAvailability, LEASE_GRACE_MS};
pub use self::keys::{EcKey, EcPublic, JwksError, Key, KeySet, OkpKey, RsaKey, MAX_KEYS};
pub use self::provider_keys::{ProviderKeys, Sync};

#[cfg(test)]
mod tests;
