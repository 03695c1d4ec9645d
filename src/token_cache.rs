//! Verified-token cache: a bounded per-VM map from a token to its already parsed,
//! verified claims. A hit skips parsing and signature work; authorization still runs per
//! request. An entry never outlives the token's `exp`, and is ignored once the key that
//! verified it has left the provider's key set.
//!
//! The map is keyed by the token itself. Its hash covers only the token's last 64 bytes (with
//! std's randomly keyed SipHash, so no one can aim at a bucket), and a hit is confirmed by
//! comparing the whole token: equality, not a digest, decides.

use crate::bounded_cache::BoundedCache;
use crate::config::Algorithm;
use hashbrown::Equivalent;
use serde_json::{Map, Value};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// Tokens longer than this are never cached (bounds memory per entry).
pub const MAX_CACHED_TOKEN_BYTES: usize = 4096;

/// A cached token: hashed by its last bytes (inside the signature), compared whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey(pub Rc<str>);

/// A token being looked up, without copying it into a [`TokenKey`].
struct Lookup<'a>(&'a str);

/// The bytes that feed the hash: the token's last 64, which lie in its signature (random
/// for any real signer). Equality of the whole token confirms a hit.
fn tail(s: &str) -> &[u8] {
    let b = s.as_bytes();
    b.get(b.len().saturating_sub(64)..).unwrap_or(b)
}

impl Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        tail(&self.0).hash(state);
    }
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        tail(self.0).hash(state);
    }
}

impl Equivalent<TokenKey> for Lookup<'_> {
    fn equivalent(&self, key: &TokenKey) -> bool {
        *key.0 == *self.0
    }
}

/// What is kept for a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedToken {
    /// Provider that verified it.
    pub provider: usize,
    /// Its `alg` (with its `iss`, what selects the provider on a hit).
    pub alg: Algorithm,
    /// Parsed claims, shared with the request that verified them.
    pub claims: Rc<Map<String, Value>>,
    /// `exp` (seconds).
    pub exp: i64,
    /// Fingerprint of the RS256 key that verified it (`None` for HS256).
    pub key: Option<u64>,
}

/// Bounded cache of verified tokens (see [`BoundedCache`]: expired entries go first when
/// it is full, then the oldest; entries enter in verification order and tokens of one
/// provider have similar lifetimes, so the oldest is also about the first to expire).
pub struct TokenCache(BoundedCache<TokenKey, CachedToken>);

/// Seconds as the cache's unsigned time (a time before the epoch is 0).
fn secs(t: i64) -> u64 {
    u64::try_from(t).unwrap_or(0)
}

impl TokenCache {
    /// An empty cache holding at most `max` entries (0 disables it).
    pub fn new(max: usize) -> TokenCache {
        TokenCache(BoundedCache::new(max))
    }

    /// The entry for `token` (and the stored token, for borrowing its segments), unless
    /// it has expired at `now_s`.
    pub fn get(&self, token: &str, now_s: i64) -> Option<(&str, &CachedToken)> {
        self.0
            .get(&Lookup(token), secs(now_s))
            .map(|(k, e)| (&*k.0, e))
    }

    /// Stores a verified token until its `exp`; tokens over [`MAX_CACHED_TOKEN_BYTES`] are
    /// not stored.
    pub fn insert(&mut self, token: &str, entry: CachedToken, now_s: i64) {
        if token.len() > MAX_CACHED_TOKEN_BYTES {
            return;
        }
        let exp = secs(entry.exp);
        self.0
            .insert(TokenKey(Rc::from(token)), entry, exp, secs(now_s));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: i64) -> CachedToken {
        CachedToken {
            provider: 0,
            alg: Algorithm::RS256,
            claims: Rc::new(Map::new()),
            exp,
            key: Some(7),
        }
    }

    #[test]
    fn entries_expire_with_the_token() {
        let mut c = TokenCache::new(10);
        c.insert("h.p.s1", entry(100), 50);
        assert_eq!(c.get("h.p.s1", 99).map(|(t, _)| t), Some("h.p.s1"));
        assert!(c.get("h.p.s1", 100).is_none(), "never outlives exp");
        c.insert("h.p.s2", entry(100), 100);
        assert_eq!(c.len(), 1, "an already expired token is not stored");
    }

    #[test]
    fn same_signature_other_token_is_a_miss() {
        let mut c = TokenCache::new(10);
        c.insert("h.p.sig", entry(100), 0);
        assert!(c.get("h.p.sig", 0).is_some());
        assert!(
            c.get("h.X.sig", 0).is_none(),
            "equality, not the hash, decides"
        );
        assert!(c.get("sig", 0).is_none());
    }

    #[test]
    fn bounded_and_oversized_tokens_are_not_cached() {
        let mut c = TokenCache::new(2);
        for i in 0..10 {
            c.insert(&i.to_string(), entry(100), 5);
        }
        assert_eq!(c.len(), 2);
        let long = "x".repeat(MAX_CACHED_TOKEN_BYTES + 1);
        c.insert(&long, entry(100), 5);
        assert!(c.get(&long, 5).is_none(), "oversized tokens are not cached");
    }
}
