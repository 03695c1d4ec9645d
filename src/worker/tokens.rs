//! The verified-token caches of one worker, a component: its own cache of tokens it
//! verified, and the process-wide level of verdicts every worker publishes and reads.

use super::metrics::Metrics;
use crate::config::Config;
use crate::pipeline::CacheNote;
use crate::shared::Store;
use crate::token::cache::{SharedTokens, SharedVerdict, TokenCache, TokenDigest};

/// This worker's verified tokens and the process-wide verdicts.
pub struct Tokens {
    cache: TokenCache,
    shared: Option<SharedTokens>,
    /// The process's digest key, established whenever a provider introspects (its
    /// answers are known by the token's digest, in every worker alike) even with the
    /// process-wide level off.
    keyed: Option<SharedTokens>,
}

impl Tokens {
    /// The caches a configuration asks for; `entropy` keys the process-wide level's digest
    /// (no entropy and no key published yet: no process-wide level).
    pub fn new(config: &Config, store: &dyn Store, entropy: Option<[u8; 16]>) -> Tokens {
        let slots = config.shared.tokens;
        let introspects = config.providers.iter().any(|p| p.introspection.is_some());
        let keyed = (slots > 0 || introspects)
            .then(|| SharedTokens::establish(store, slots, entropy))
            .flatten();
        Tokens {
            cache: TokenCache::new(config.token_cache_entries),
            shared: keyed.filter(|_| slots > 0),
            keyed,
        }
    }

    /// A token's digest under the process's key, for lookups keyed by token
    /// (introspection); with no key to agree on, SHA-256 (then answers are per worker).
    pub fn lookup_digest(&self, token: &str) -> TokenDigest {
        match self.keyed {
            Some(k) => k.digest(token),
            None => crate::pipeline::sha256_digest(token),
        }
    }

    /// This worker's cache, when the configuration keeps one.
    pub fn cache(&self, config: &Config) -> Option<&TokenCache> {
        (config.token_cache_entries > 0).then_some(&self.cache)
    }

    /// Whether the process-wide level is on.
    pub fn shared(&self) -> bool {
        self.shared.is_some()
    }

    /// A token's digest under the process's key (only used when the level is on).
    pub fn digest(&self, token: &str) -> TokenDigest {
        self.shared.map_or([0; 16], |t| t.digest(token))
    }

    /// The verdict another worker published for this digest, if any.
    pub fn verdict(&self, store: &dyn Store, digest: &TokenDigest) -> Option<SharedVerdict> {
        self.shared.and_then(|t| t.lookup(store, digest))
    }

    /// Keeps what a decision authenticated: in this worker's cache, and for the process.
    pub fn note(&mut self, note: CacheNote, now: u64, store: &dyn Store, metrics: &mut Metrics) {
        match note {
            CacheNote::Authenticated(a) => {
                metrics.authenticated(a.shared_hit);
                if let Some((token, verified)) = a.store {
                    let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
                    self.cache.insert(&token, verified, now_s);
                }
                if let (Some(verdict), Some(shared)) = (a.publish, self.shared) {
                    shared.publish(store, &verdict);
                }
            }
            CacheNote::Hit => metrics.cache_hit(),
            CacheNote::None => {}
        }
    }
}
