//! Key sets: JWKS parsing into typed keys ([`jwk`], RSA moduli in [`rsa_public`]), OpenID
//! Connect [`discovery`], a fetch's answer ([`fetch`]), and one provider's keys as a worker
//! sees them ([`provider_keys`]).
//!
//! The state machine is fed `(now, outcome)` and asked what is due; it owns no timers.
//! Its state lives in the shared store ([`crate::shared`]): one VM of the process fetches
//! a JWKS, publishes the document, and every VM adopts it.

pub mod discovery;
pub mod fetch;
pub mod jwk;
pub mod provider_keys;
pub mod rsa_public;

pub use self::discovery::interpret_discovery;
pub use self::fetch::interpret_fetch;
pub use self::jwk::{EcKey, EcPublic, Key, KeySet, OkpKey, RsaKey};
pub use self::provider_keys::ProviderKeys;

#[cfg(test)]
mod tests;
