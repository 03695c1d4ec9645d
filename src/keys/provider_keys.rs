//! One provider's keys as one VM sees them: a [`Fetched`] key set (the process-wide fetch
//! state and published JWKS in the shared store, and the version this VM parsed).

use super::jwk::KeySet;
use crate::shared::{Document, FetchError, Fetched};

/// One provider's keys as one VM sees them.
pub type ProviderKeys = Fetched<KeySet>;

impl Document for KeySet {
    /// The largest JWKS body accepted (`jwks.max_bytes`).
    type Limits = usize;
    fn parse(body: &[u8], max_bytes: &usize, _now: u64) -> Result<KeySet, FetchError> {
        KeySet::parse(body, *max_bytes)
            .map(|(keys, _)| keys)
            .map_err(|e| FetchError::Invalid(e.to_string()))
    }
}

impl ProviderKeys {
    /// A provider's keys from the JWKS source with this fingerprint (cluster, authority,
    /// path: VMs and configurations naming the same source share one key set).
    pub fn for_source(source: u64, policy: crate::shared::FetchPolicy, max_bytes: usize) -> Self {
        Fetched::new(
            format!("bearer_guard.jwks.{source:016x}"),
            policy,
            max_bytes,
        )
    }

    /// The adopted keys, if any key set was ever published.
    pub fn keys(&self) -> Option<&KeySet> {
        self.doc()
    }
}
