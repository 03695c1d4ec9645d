//! What the pipeline sees of a worker for one decision: its key sets, lists, account
//! answers and the process-wide verdicts, through the pipeline's ports — with what the
//! request has already waited for, so that no request waits twice for the same thing.

use super::accounts::Lookup;
use super::Worker;
use crate::account::AccountState;
use crate::introspection::Known;
use crate::keys::{KeySet, ProviderKeys};
use crate::pipeline::{
    AccountLookup, KeyLookup, OpaqueToken, RevocationLookup, VerdictLookup, Wait, Waited,
};
use crate::revocation::RevocationList;
use crate::shared::KeyAvailability;
use crate::token::cache::{SharedVerdict, TokenDigest};

/// A worker as one decision sees it.
pub(super) struct View<'a> {
    pub(super) worker: &'a Worker,
    pub(super) now_ms: u64,
    pub(super) waited: &'a Waited,
}

impl AccountLookup for View<'_> {
    fn account(&self, provider: usize, key: &str) -> AccountState<'_> {
        self.worker
            .accounts
            .get(Lookup::Account, provider, key, self.now_ms)
    }
    fn introspected(&self, provider: usize, key: &str) -> Known {
        self.worker
            .accounts
            .introspected(provider, key, self.now_ms)
    }
    fn may_wait_introspection(&self, provider: usize, key: &str) -> bool {
        !self.waited.has(&Wait::Introspection {
            provider,
            key: key.to_string(),
            token: OpaqueToken(String::new()),
        })
    }
    fn token_digest(&self, token: &str) -> TokenDigest {
        self.worker.tokens.lookup_digest(token)
    }
    fn may_wait(&self, provider: usize, key: &str) -> bool {
        !self.waited.has(&Wait::Account {
            provider,
            key: key.to_string(),
            path: String::new(),
        })
    }
}

impl KeyLookup for View<'_> {
    fn availability(&self, provider: usize) -> KeyAvailability {
        let availability = self
            .worker
            .keys
            .get(provider)
            .map_or(KeyAvailability::Unavailable, |k| {
                k.availability(self.now_ms)
            });
        match availability {
            // Each request waits for a provider's keys at most once.
            KeyAvailability::Loading if self.waited.keys(provider) => KeyAvailability::Unavailable,
            other => other,
        }
    }
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.worker.keys.get(provider).and_then(ProviderKeys::keys)
    }
    fn may_refetch(&self, provider: usize) -> bool {
        !self.waited.keys(provider)
            && self
                .worker
                .keys
                .get(provider)
                .is_some_and(|k| k.may_refetch(self.now_ms))
    }
}

impl RevocationLookup for View<'_> {
    fn revocation(&self, provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        let Some((list, _)) = self.worker.config.revocation_of(provider) else {
            return (KeyAvailability::Unavailable, None);
        };
        match self.worker.lists.view(list, self.now_ms) {
            // Each request waits for a list at most once.
            (KeyAvailability::Loading, None) if self.waited.has(&Wait::Revocation { provider }) => {
                (KeyAvailability::Unavailable, None)
            }
            other => other,
        }
    }
}

impl VerdictLookup for View<'_> {
    fn digest(&self, token: &str) -> TokenDigest {
        // The view is the pipeline's verdict lookup only when the level is on (`decide`);
        // without it `verdict` finds nothing, whatever the digest.
        self.worker.tokens.digest(token)
    }

    fn verdict(&self, digest: &TokenDigest) -> Option<SharedVerdict> {
        self.worker.tokens.verdict(&*self.worker.store, digest)
    }
}
