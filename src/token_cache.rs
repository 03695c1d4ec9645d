//! Verified-token cache: a bounded per-VM map from SHA-256(token) to its already parsed,
//! verified claims. A hit skips parsing and signature work; authorization still runs per
//! request. An entry never outlives the token's `exp`, and is ignored once the key that
//! verified it has left the provider's key set.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Keys are SHA-256 digests, already uniform: their first 8 bytes are the hash.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

type DigestMap<V> = HashMap<TokenHash, V, BuildHasherDefault<DigestHasher>>;

/// Tokens longer than this are never cached (bounds memory per entry).
pub const MAX_CACHED_TOKEN_BYTES: usize = 4096;

/// The cache key: SHA-256 of the whole token.
pub type TokenHash = [u8; 32];

/// Hashes a token for the cache.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// What is kept for a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedToken {
    /// Provider that verified it.
    pub provider: usize,
    /// Parsed claims.
    pub claims: Map<String, Value>,
    /// `exp` (seconds).
    pub exp: i64,
    /// The payload segment (for `forward.payload_header`).
    pub payload_b64: String,
    /// Fingerprint of the RS256 key that verified it (`None` for HS256).
    pub key: Option<u64>,
}

/// Bounded FIFO cache of verified tokens.
pub struct TokenCache {
    map: DigestMap<CachedToken>,
    order: VecDeque<TokenHash>,
    max: usize,
}

impl TokenCache {
    /// An empty cache holding at most `max` entries (0 disables it).
    pub fn new(max: usize) -> TokenCache {
        TokenCache {
            map: DigestMap::default(),
            order: VecDeque::new(),
            max,
        }
    }

    /// The entry for `hash`, unless its token has expired at `now_s`.
    pub fn get(&self, hash: &TokenHash, now_s: i64) -> Option<&CachedToken> {
        self.map.get(hash).filter(|e| now_s < e.exp)
    }

    /// Stores an entry; when full, the oldest goes (FIFO, O(1) amortized: entries enter
    /// in verification order, and tokens of one provider have similar lifetimes, so the
    /// oldest is also the first to expire).
    pub fn insert(&mut self, hash: TokenHash, entry: CachedToken, now_s: i64) {
        if self.max == 0 || now_s >= entry.exp {
            return;
        }
        while !self.map.contains_key(&hash) && self.map.len() >= self.max {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.map.insert(hash, entry).is_none() {
            self.order.push_back(hash);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: i64) -> CachedToken {
        CachedToken {
            provider: 0,
            claims: Map::new(),
            exp,
            payload_b64: String::new(),
            key: Some(7),
        }
    }

    #[test]
    fn entries_expire_with_the_token() {
        let mut c = TokenCache::new(10);
        let h = hash("t1");
        c.insert(h, entry(100), 50);
        assert!(c.get(&h, 99).is_some());
        assert!(c.get(&h, 100).is_none(), "never outlives exp");
        c.insert(hash("t2"), entry(100), 100);
        assert_eq!(c.len(), 1, "an already expired token is not stored");
        assert_ne!(hash("t1"), hash("t2"));
    }

    #[test]
    fn bounded_oldest_first() {
        let mut c = TokenCache::new(2);
        c.insert(hash("a"), entry(10), 0);
        c.insert(hash("b"), entry(100), 0);
        c.insert(hash("c"), entry(100), 20); // full: the oldest ("a") goes
        assert!(c.get(&hash("b"), 20).is_some() && c.get(&hash("c"), 20).is_some());
        c.insert(hash("c"), entry(100), 20); // re-insert: nothing evicted
        assert!(c.get(&hash("b"), 20).is_some());
        c.insert(hash("d"), entry(100), 20); // the oldest ("b") goes
        assert_eq!(c.len(), 2);
        assert!(c.get(&hash("b"), 20).is_none());
        assert!(c.get(&hash("d"), 20).is_some());
        for i in 0..1000 {
            c.insert(hash(&i.to_string()), entry(100), 20);
        }
        assert_eq!(c.len(), 2);
        let mut off = TokenCache::new(0);
        off.insert(hash("a"), entry(100), 0);
        assert!(off.is_empty());
    }
}
