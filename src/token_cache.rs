//! Verified-token cache: a bounded per-VM map from a token to its already parsed,
//! verified claims. A hit skips parsing and signature work; authorization still runs per
//! request. An entry never outlives the token's `exp`, and is ignored once the key that
//! verified it has left the provider's key set.
//!
//! The map is keyed by the token itself. Its hash covers only the token's last 64 bytes (with
//! std's randomly keyed SipHash, so no one can aim at a bucket), and a hit is confirmed by
//! comparing the whole token: equality, not a digest, decides.

use crate::bounded_cache::BoundedCache;
use crate::crypto::Algorithm;
use crate::shared::{slot_of, Reader, Store};
use hashbrown::Equivalent;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
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
    /// Fingerprint of the public key that verified it (`None` for HMAC).
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

/// What the whole process knows of a verified token (the second level behind each VM's
/// cache): no token and no claims, only the token's SHA-256, the fingerprint of the
/// provider configuration that admitted it, the key that verified it and its `exp`. A VM
/// that meets the token again parses it and skips only the signature, when the same
/// provider configuration selects it and the key is still in that provider's key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedVerdict {
    /// SHA-256 of the whole token.
    pub digest: [u8; 32],
    /// [`crate::config::Provider::fingerprint`] of the provider that verified it.
    pub provider: u64,
    /// Fingerprint of the RSA key that verified it (0 for HS256).
    pub key: u64,
    /// The token's `exp`.
    pub exp: i64,
}

impl SharedVerdict {
    /// Its encoding in the store (56 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.digest.to_vec();
        out.extend_from_slice(&self.provider.to_le_bytes());
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.exp.to_le_bytes());
        out
    }

    /// Decodes [`SharedVerdict::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<SharedVerdict> {
        let mut r = Reader(bytes);
        let v = SharedVerdict {
            digest: r.take(32)?.try_into().ok()?,
            provider: r.u64()?,
            key: r.u64()?,
            exp: r.u64()? as i64,
        };
        r.rest().is_empty().then_some(v)
    }
}

/// The SHA-256 of a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The verified-token slots of the shared store: a fixed number, direct-mapped by the
/// token's digest and overwritten in place, so the memory they take is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedTokens {
    slots: usize,
}

impl SharedTokens {
    /// `slots` slots (at least one).
    pub fn new(slots: usize) -> SharedTokens {
        SharedTokens {
            slots: slots.max(1),
        }
    }

    fn key(&self, digest: &[u8; 32]) -> String {
        let first = digest.first_chunk::<8>().copied().unwrap_or_default();
        let slot = slot_of(u64::from_le_bytes(first), self.slots);
        format!("bearer_guard.tok.{slot}")
    }

    /// The verdict for the token with this digest, if its slot holds it.
    pub fn lookup(&self, store: &dyn Store, digest: &[u8; 32]) -> Option<SharedVerdict> {
        let (bytes, _) = store.get(&self.key(digest))?;
        SharedVerdict::decode(&bytes).filter(|v| v.digest == *digest)
    }

    /// Publishes a verdict (overwriting whatever shared its slot).
    pub fn publish(&self, store: &dyn Store, verdict: &SharedVerdict) {
        let _ = store.set(&self.key(&verdict.digest), &verdict.encode(), 0);
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

    #[test]
    fn shared_verdicts_live_in_bounded_slots() {
        use crate::shared::MemoryStore;
        let store = MemoryStore::default();
        let shared = SharedTokens::new(4);
        let verdict = |token: &str| SharedVerdict {
            digest: token_digest(token),
            provider: 9,
            key: 7,
            exp: 100,
        };
        let v = verdict("h.p.s");
        assert_eq!(SharedVerdict::decode(&v.encode()), Some(v));
        assert_eq!(shared.lookup(&store, &v.digest), None);
        shared.publish(&store, &v);
        assert_eq!(shared.lookup(&store, &v.digest), Some(v));
        assert_eq!(
            shared.lookup(&store, &token_digest("h.p.t")),
            None,
            "digest decides"
        );
        // Many tokens: never more than 4 slots, and the newest of each slot wins.
        for i in 0..100 {
            shared.publish(&store, &verdict(&format!("t{i}")));
        }
        let found = (0..100)
            .filter(|i| {
                shared
                    .lookup(&store, &token_digest(&format!("t{i}")))
                    .is_some()
            })
            .count();
        assert!((1..=4).contains(&found), "{found}");
    }
}
