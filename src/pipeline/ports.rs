//! What the pipeline may ask of the worker it runs in — key sets, account lookups,
//! revocation lists, the process-wide verified-token level — and the [`Inputs`] of one
//! decision. Hosts and tools implement these (the worker core, `explain`, tests, fuzzing);
//! the pipeline never reaches past them.

use crate::account::AccountState;
use crate::config::Config;
use crate::introspection::Known;
use crate::keys::KeySet;
use crate::revocation::RevocationList;
use crate::shared::KeyAvailability;
use crate::token::cache::{SharedVerdict, TokenCache, TokenDigest};
use crate::verify::SignatureBackend;

/// What the pipeline may ask about revocation lists.
pub trait RevocationLookup {
    /// The availability of provider `provider`'s list, and the list once loaded.
    fn revocation(&self, provider: usize) -> (KeyAvailability, Option<&RevocationList>);
}

/// No list obtainable (hosts and tools without a fetched list).
struct NoRevocations;

impl RevocationLookup for NoRevocations {
    fn revocation(&self, _provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        (KeyAvailability::Unavailable, None)
    }
}

/// One list, in force for every provider that names a list (`explain --revocation`).
pub struct FixedRevocations<'a>(pub &'a RevocationList);

impl RevocationLookup for FixedRevocations<'_> {
    fn revocation(&self, _provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        (KeyAvailability::Ready, Some(self.0))
    }
}

/// What the pipeline may ask about key sets.
pub trait KeyLookup {
    /// Availability of a provider's keys now.
    fn availability(&self, provider: usize) -> KeyAvailability;
    /// The provider's keys, if loaded.
    fn keys(&self, provider: usize) -> Option<&KeySet>;
    /// Whether an unknown `kid` may trigger a refetch for this request now.
    fn may_refetch(&self, provider: usize) -> bool;
}

/// What the pipeline may ask about account lookups and token introspections.
pub trait AccountLookup {
    /// The cached result for `key` of `provider`.
    fn account(&self, provider: usize, key: &str) -> AccountState<'_>;
    /// Whether this request may pause for the lookup of `key` of `provider`.
    fn may_wait(&self, provider: usize, key: &str) -> bool;
    /// The kept introspection answer for `key` of `provider`.
    fn introspected(&self, _provider: usize, _key: &str) -> Known {
        Known::Unknown
    }
    /// Whether this request may pause for the introspection of `key` of `provider`.
    fn may_wait_introspection(&self, _provider: usize, _key: &str) -> bool {
        false
    }
    /// A token's digest under the process's key: what introspection answers are known by
    /// (never the token itself). Without a key: SHA-256, truncated.
    fn token_digest(&self, token: &str) -> TokenDigest {
        sha256_digest(token)
    }
}

/// A token's SHA-256, truncated to a [`TokenDigest`]: what a token is known by where no
/// process key is established.
pub fn sha256_digest(token: &str) -> TokenDigest {
    use sha2::Digest;
    let full = sha2::Sha256::digest(token.as_bytes());
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(full.iter()) {
        *o = *b;
    }
    out
}

/// A fixed, always-ready key set with no refetching and no account service: for hosts
/// that load keys once, and for tests, conformance runs and fuzzing.
pub struct FixedKeys(pub KeySet);

impl KeyLookup for FixedKeys {
    fn availability(&self, _provider: usize) -> KeyAvailability {
        KeyAvailability::Ready
    }
    fn keys(&self, _provider: usize) -> Option<&KeySet> {
        Some(&self.0)
    }
    fn may_refetch(&self, _provider: usize) -> bool {
        false
    }
}

impl AccountLookup for FixedKeys {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
        false
    }
}

/// Everything the pipeline needs besides the request.
pub struct Inputs<'a> {
    /// Compiled configuration.
    pub config: &'a Config,
    /// Key sets.
    pub keys: &'a dyn KeyLookup,
    /// Account lookups.
    pub accounts: &'a dyn AccountLookup,
    /// RSA signature backend.
    pub backend: &'a dyn SignatureBackend,
    /// Verified-token cache (`None` when disabled).
    pub cache: Option<&'a TokenCache>,
    /// The process-wide verified-token level (`None` when disabled).
    pub verdicts: Option<&'a dyn VerdictLookup>,
    /// Revocation lists (none obtainable unless given).
    pub revocations: &'a dyn RevocationLookup,
    /// Current time, seconds since the epoch.
    pub now_s: i64,
}

/// No account service: every lookup is unknown and no request waits.
struct NoAccounts;

impl AccountLookup for NoAccounts {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
        false
    }
}

impl<'a> Inputs<'a> {
    /// A provider's keys: its inline ones (`jwks.inline`, always in force), else what the
    /// key lookup has.
    pub(crate) fn keys_of(&self, provider: usize) -> (KeyAvailability, Option<&'a KeySet>) {
        let inline = self
            .config
            .providers
            .get(provider)
            .and_then(|p| p.inline_keys.as_ref());
        match inline {
            Some(k) => (KeyAvailability::Ready, Some(k)),
            None => (self.keys.availability(provider), self.keys.keys(provider)),
        }
    }

    /// Whether an unknown `kid` may have the provider's keys refetched (never inline keys).
    pub(crate) fn may_refetch(&self, provider: usize) -> bool {
        let inline = self
            .config
            .providers
            .get(provider)
            .is_some_and(|p| p.inline_keys.is_some());
        !inline && self.keys.may_refetch(provider)
    }

    /// Inputs with these keys, no account service, no caches.
    pub fn new(
        config: &'a Config,
        keys: &'a dyn KeyLookup,
        backend: &'a dyn SignatureBackend,
        now_s: i64,
    ) -> Inputs<'a> {
        Inputs {
            config,
            keys,
            accounts: &NoAccounts,
            backend,
            cache: None,
            verdicts: None,
            revocations: &NoRevocations,
            now_s,
        }
    }

    /// With these revocation lists.
    pub fn revocations(self, revocations: &'a dyn RevocationLookup) -> Inputs<'a> {
        Inputs {
            revocations,
            ..self
        }
    }

    /// With this account service.
    pub fn accounts(self, accounts: &'a dyn AccountLookup) -> Inputs<'a> {
        Inputs { accounts, ..self }
    }

    /// With this VM's verified-token cache.
    pub fn cache(self, cache: &'a TokenCache) -> Inputs<'a> {
        Inputs {
            cache: Some(cache),
            ..self
        }
    }

    /// With the process-wide verified-token level.
    pub fn verdicts(self, verdicts: &'a dyn VerdictLookup) -> Inputs<'a> {
        Inputs {
            verdicts: Some(verdicts),
            ..self
        }
    }
}

/// What the pipeline may ask of the process-wide verified-token level.
pub trait VerdictLookup {
    /// The token's digest under the process's key.
    fn digest(&self, token: &str) -> TokenDigest;
    /// The verdict published for the token with this digest, if any.
    fn verdict(&self, digest: &TokenDigest) -> Option<SharedVerdict>;
}
