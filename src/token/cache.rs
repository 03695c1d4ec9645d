//! Verified-token cache: a bounded per-VM map from a token to its already parsed,
//! verified claims. A hit skips parsing and signature work; authorization still runs per
//! request. An entry never outlives the token's `exp`, and is ignored once the key that
//! verified it has left the provider's key set.
//!
//! The map is keyed by the token itself. Its hash covers only the token's last 64 bytes (with
//! std's randomly keyed SipHash, so no one can aim at a bucket), and a hit is confirmed by
//! comparing the whole token: equality, not a digest, decides.

use crate::algorithm::Algorithm;
use crate::bounded_cache::BoundedCache;
use crate::shared::{slot_of, Reader, Store};
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
/// cache): no token and no claims, only the token's keyed digest ([`SharedTokens::digest`]),
/// the fingerprint of the provider configuration that admitted it, the key that verified it
/// and its `exp`. A VM that meets the token again parses it and skips only the signature,
/// when the same provider configuration selects it and the key is still in that provider's
/// key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedVerdict {
    /// The token's digest under the process's key.
    pub digest: TokenDigest,
    /// [`crate::config::Provider::fingerprint`] of the provider that verified it.
    pub provider: u64,
    /// Fingerprint of the RSA key that verified it (0 for HS256).
    pub key: u64,
    /// The token's `exp`.
    pub exp: i64,
}

impl SharedVerdict {
    /// Its encoding in the store (40 bytes).
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
            digest: r.take(16)?.try_into().ok()?,
            provider: r.u64()?,
            key: r.u64()?,
            exp: r.u64()? as i64,
        };
        r.rest().is_empty().then_some(v)
    }
}

/// A token's 128-bit keyed digest: what the process-wide level knows a token by.
pub type TokenDigest = [u8; 16];

/// The shared-data key holding the process's digest key.
const DIGEST_KEY: &str = "bearer_guard.tok.key";

/// The verified-token slots of the shared store: a fixed number, direct-mapped by the
/// token's digest and overwritten in place, so the memory they take is bounded.
///
/// Tokens are known by SipHash-2-4 with a 128-bit output, keyed with 128 random bits that
/// the first worker of the process draws and every other worker adopts (`docs/security.md`
/// argues why a forger cannot aim a token at another token's slot). It costs a
/// fraction of SHA-256 over the same token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedTokens {
    slots: usize,
    key: [u8; 16],
}

impl SharedTokens {
    /// `slots` slots (at least one), digests under `key`.
    pub fn new(slots: usize, key: [u8; 16]) -> SharedTokens {
        SharedTokens {
            slots: slots.max(1),
            key,
        }
    }

    /// `slots` slots under the process's digest key: the one in `store`, or else
    /// `entropy` (this VM's random bytes), published for the others with
    /// compare-and-swap so that every VM ends up with the same key. `None` (the level off)
    /// when there is no key to agree on: a VM never digests with a key it did not draw
    /// from the host's random source or adopt from the process.
    pub fn establish(
        store: &dyn Store,
        slots: usize,
        entropy: Option<[u8; 16]>,
    ) -> Option<SharedTokens> {
        let decode = |b: &[u8]| Some(<[u8; 16]>::try_from(b).ok());
        let encode = |k: &Option<[u8; 16]>| k.map(|k| k.to_vec()).unwrap_or_default();
        let published =
            crate::shared::update(store, DIGEST_KEY, decode, encode, |current| match current {
                Some(_) => None,
                None => entropy.map(Some),
            });
        let adopted = store
            .get(DIGEST_KEY)
            .and_then(|(b, _)| <[u8; 16]>::try_from(b.as_slice()).ok());
        // A store that cannot hold the key shares nothing: this VM's own key will do.
        let key = adopted.or(published.is_err().then_some(entropy).flatten())?;
        Some(SharedTokens::new(slots, key))
    }

    /// The token's digest under the process's key.
    pub fn digest(&self, token: &str) -> TokenDigest {
        use siphasher::sip128::{Hasher128, SipHasher24};
        use std::hash::Hasher as _;
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(token.as_bytes());
        h.finish128().as_bytes()
    }

    fn slot_key(&self, digest: &TokenDigest) -> String {
        let first = digest.first_chunk::<8>().copied().unwrap_or_default();
        let slot = slot_of(u64::from_le_bytes(first), self.slots);
        format!("bearer_guard.tok.{slot}")
    }

    /// The verdict for the token with this digest, if its slot holds it.
    pub fn lookup(&self, store: &dyn Store, digest: &TokenDigest) -> Option<SharedVerdict> {
        let (bytes, _) = store.get(&self.slot_key(digest))?;
        SharedVerdict::decode(&bytes).filter(|v| v.digest == *digest)
    }

    /// Publishes a verdict (overwriting whatever shared its slot).
    pub fn publish(&self, store: &dyn Store, verdict: &SharedVerdict) {
        let _ = store.set(&self.slot_key(&verdict.digest), &verdict.encode(), 0);
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
        assert!(c.is_empty());
        for i in 0..10 {
            c.insert(&i.to_string(), entry(100), 5);
        }
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
        let long = "x".repeat(MAX_CACHED_TOKEN_BYTES + 1);
        c.insert(&long, entry(100), 5);
        assert!(c.get(&long, 5).is_none(), "oversized tokens are not cached");
        let longest = "y".repeat(MAX_CACHED_TOKEN_BYTES);
        c.insert(&longest, entry(100), 5);
        assert!(c.get(&longest, 5).is_some(), "the longest cacheable token");
    }

    #[test]
    fn shared_verdicts_live_in_bounded_slots() {
        use crate::shared::MemoryStore;
        let store = MemoryStore::default();
        let shared = SharedTokens::new(4, [3; 16]);
        let verdict = |token: &str| SharedVerdict {
            digest: shared.digest(token),
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
            shared.lookup(&store, &shared.digest("h.p.t")),
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
                    .lookup(&store, &shared.digest(&format!("t{i}")))
                    .is_some()
            })
            .count();
        assert_eq!(found, 4, "each of the 4 slots holds its newest token");
        for slot in 0..4 {
            assert!(store.get(&format!("bearer_guard.tok.{slot}")).is_some());
        }
    }

    #[test]
    fn digests_are_siphash_2_4_128_under_the_process_key() {
        // The reference implementation's first 128-bit vector: key 00..0f, empty message.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let want = [
            0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55,
            0x02, 0x93,
        ];
        assert_eq!(SharedTokens::new(1, key).digest(""), want);
        let (a, b) = (SharedTokens::new(1, [1; 16]), SharedTokens::new(1, [2; 16]));
        assert_eq!(a.digest("h.p.s"), a.digest("h.p.s"));
        assert_ne!(a.digest("h.p.s"), b.digest("h.p.s"), "keyed");
        assert_ne!(a.digest("h.p.s"), a.digest("h.p.t"));
    }

    #[test]
    fn every_vm_of_the_process_adopts_the_first_key() {
        use crate::shared::MemoryStore;
        let store = MemoryStore::default();
        // No random bytes and no key in the process: no level (never a guessable key).
        assert_eq!(SharedTokens::establish(&store, 8, None), None);
        let first = SharedTokens::establish(&store, 8, Some([1; 16])).expect("first VM");
        let second = SharedTokens::establish(&store, 8, Some([2; 16])).expect("second VM");
        let third = SharedTokens::establish(&store, 8, None).expect("third VM");
        assert_eq!(first.key, [1; 16]);
        assert_eq!((second.key, third.key), (first.key, first.key));
        assert_eq!(first.digest("h.p.s"), second.digest("h.p.s"));
    }
}
