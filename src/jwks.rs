//! Key sets: JWKS parsing and the per-provider fetch state machine.
//!
//! The state machine is fed `(now, outcome)` and asked what is due; it owns no timers.

use crate::rsa_public::RsaPublicKey;
use crate::token::b64url;
use serde_json::Value;
use sha2::Digest;

/// Largest JWKS body accepted by default (bytes; `jwks.max_bytes` changes it). Real key
/// sets are a few KiB: 64 KiB holds about 90 JWKs of 4096-bit RSA keys.
pub const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys kept from one JWKS; entries past it are skipped unread.
pub const MAX_KEYS: usize = 64;

/// One RS256 verification key, prepared once when its key set loads.
#[derive(Debug, Clone)]
pub struct RsaKey {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    /// The key for the pure-Rust backend.
    pub public: RsaPublicKey,
    /// SubjectPublicKeyInfo DER for Envoy's `verify_signature`.
    pub spki_der: Vec<u8>,
    /// First 8 bytes of SHA-256(SPKI DER): identifies the key material.
    pub fingerprint: u64,
}

impl RsaKey {
    /// Builds a key from big-endian modulus and exponent; `None` if unusable.
    /// Moduli outside 2048-4096 bits are refused (NIST SP 800-131A), see
    /// [`RsaPublicKey::new`].
    pub fn from_components(kid: Option<String>, n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let public = RsaPublicKey::new(n, e)?;
        let spki_der = public.spki_der();
        let digest: [u8; 32] = sha2::Sha256::digest(&spki_der).into();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8)?);
        Some(RsaKey {
            kid,
            public,
            spki_der,
            fingerprint: u64::from_be_bytes(first),
        })
    }
}

/// A provider's current keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<RsaKey>,
}

/// Why a JWKS document was refused as a whole (the previous keys stay in force).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// Larger than the provider's size limit (refused before it is read).
    TooLarge,
    /// Not JSON, or no `keys` array.
    NotJwks,
    /// No entry was a usable RS256 signing key.
    NoUsableKeys,
}

impl KeySet {
    /// Builds a key set directly (tests and fixtures).
    pub fn from_keys(keys: Vec<RsaKey>) -> KeySet {
        KeySet { keys }
    }

    /// Parses a JWKS of at most `max_bytes`. Entries that are not RSA signing keys for
    /// RS256, or are malformed, are skipped (their count is returned), and so is every
    /// entry after the [`MAX_KEYS`]th usable one, unread; only a set with no usable key is
    /// an error. Work is linear in the body: no big-number work happens here.
    pub fn parse(body: &[u8], max_bytes: usize) -> Result<(KeySet, usize), JwksError> {
        if body.len() > max_bytes {
            return Err(JwksError::TooLarge);
        }
        let doc: Value = serde_json::from_slice(body).map_err(|_| JwksError::NotJwks)?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotJwks)?;
        let mut keys = Vec::new();
        for entry in entries {
            if keys.len() == MAX_KEYS {
                break;
            }
            keys.extend(parse_jwk(entry));
        }
        let skipped = entries.len().saturating_sub(keys.len());
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok((KeySet { keys }, skipped))
    }

    /// Keys a token with this `kid` may have been signed with: the one with that `kid`,
    /// or every key when the token names none.
    pub fn candidates<'a>(&'a self, kid: Option<&'a str>) -> impl Iterator<Item = &'a RsaKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
    }

    /// Whether a key with this `kid` exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Whether the key with this fingerprint is (still) in the set.
    pub fn has_fingerprint(&self, fingerprint: u64) -> bool {
        self.keys.iter().any(|k| k.fingerprint == fingerprint)
    }

    /// The key ids, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("(none)"))
            .collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Interprets a JWKS fetch: `status` is the response's `:status` (`None`: no response),
/// `body_size` its announced size, and `read_body` reads it — called only when the size
/// is within `max_bytes`, so an oversized body is never copied into the VM.
pub fn interpret_fetch(
    status: Option<&str>,
    body_size: usize,
    max_bytes: usize,
    read_body: impl FnOnce() -> Vec<u8>,
) -> Result<(KeySet, usize), String> {
    match status {
        Some("200") if body_size > max_bytes => Err(format!(
            "body of {body_size} bytes over the {max_bytes}-byte limit (jwks.max_bytes)"
        )),
        Some("200") => KeySet::parse(&read_body(), max_bytes).map_err(|e| format!("{e:?}")),
        Some(other) => Err(format!("status {other}")),
        None => Err("no response (connection failure or timeout)".to_string()),
    }
}

fn parse_jwk(entry: &Value) -> Option<RsaKey> {
    let s = |name: &str| entry.get(name).and_then(Value::as_str);
    if s("kty") != Some("RSA") {
        return None;
    }
    if entry.get("use").is_some() && s("use") != Some("sig") {
        return None;
    }
    if entry.get("alg").is_some() && s("alg") != Some("RS256") {
        return None;
    }
    if let Some(ops) = entry.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return None;
        }
    }
    let kid = match entry.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return None,
    };
    let n = b64url(s("n")?)?;
    let e = b64url(s("e")?)?;
    RsaKey::from_components(kid, &n, &e)
}

/// Timing policy of one provider's fetches (all ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Refresh interval after a success.
    pub refresh_ms: u64,
    /// How long one fetch may take before it counts as failed.
    pub timeout_ms: u64,
    /// First retry delay after a failure (doubles per failure).
    pub retry_min_ms: u64,
    /// Cap of the retry delay.
    pub retry_max_ms: u64,
    /// Minimum interval between refetches forced by unknown `kid`s.
    pub refetch_min_interval_ms: u64,
}

/// The keys of one provider and when to fetch them next.
#[derive(Debug, Clone)]
pub struct KeyFetcher {
    policy: FetchPolicy,
    keys: Option<KeySet>,
    generation: u64,
    in_flight_since: Option<u64>,
    next_fetch_at: u64,
    failures: u32,
    last_forced_at: Option<u64>,
}

/// What a request can expect from a provider's keys right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAvailability {
    /// Keys are loaded.
    Ready,
    /// No keys yet, but a fetch is in flight or due now: waiting is worthwhile.
    Loading,
    /// No keys and none expected soon.
    Unavailable,
}

impl KeyFetcher {
    /// A fetcher with no keys whose first fetch is due at once.
    pub fn new(policy: FetchPolicy) -> KeyFetcher {
        KeyFetcher {
            policy,
            keys: None,
            generation: 0,
            in_flight_since: None,
            next_fetch_at: 0,
            failures: 0,
            last_forced_at: None,
        }
    }

    /// The current keys, if any fetch ever succeeded.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// Increments each time the key set is replaced.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a fetch is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight_since.is_some()
    }

    /// Whether a fetch should start now.
    pub fn due(&self, now: u64) -> bool {
        self.in_flight_since.is_none() && now >= self.next_fetch_at
    }

    /// When the next fetch is due (ms), for scheduling.
    pub fn next_fetch_at(&self) -> u64 {
        self.next_fetch_at
    }

    /// Availability for a request arriving at `now`.
    pub fn availability(&self, now: u64) -> KeyAvailability {
        if self.keys.is_some() {
            KeyAvailability::Ready
        } else if self.in_flight() || self.due(now) {
            KeyAvailability::Loading
        } else {
            KeyAvailability::Unavailable
        }
    }

    /// Records that a fetch was dispatched.
    pub fn begin(&mut self, now: u64) {
        self.in_flight_since = Some(now);
    }

    /// Records a successful fetch: the new keys replace the old ones.
    pub fn succeed(&mut self, now: u64, keys: KeySet) {
        self.keys = Some(keys);
        self.generation += 1;
        self.in_flight_since = None;
        self.failures = 0;
        self.next_fetch_at = now.saturating_add(self.policy.refresh_ms);
    }

    /// Records a failed fetch (or one that could not be dispatched): old keys are kept
    /// and the next attempt backs off exponentially from `retry_min_ms`.
    pub fn fail(&mut self, now: u64) {
        self.in_flight_since = None;
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(20);
        let delay = self
            .policy
            .retry_min_ms
            .saturating_mul(1u64 << exp)
            .min(self.policy.retry_max_ms);
        self.next_fetch_at = now.saturating_add(delay);
    }

    /// Fails a fetch that has been in flight past its timeout (plus a grace period for
    /// the host's own timeout to fire first). Returns whether it did.
    pub fn expire(&mut self, now: u64) -> bool {
        match self.in_flight_since {
            Some(since) if now >= since.saturating_add(self.policy.timeout_ms + 1000) => {
                self.fail(now);
                true
            }
            _ => false,
        }
    }

    /// A token named a `kid` the keys lack. Returns `true` if a refetch is in flight or
    /// may start now (and makes it due), `false` when rate-limited.
    pub fn request_refetch(&mut self, now: u64) -> bool {
        if self.in_flight() {
            return true;
        }
        if let Some(last) = self.last_forced_at {
            if now < last.saturating_add(self.policy.refetch_min_interval_ms) {
                return false;
            }
        }
        self.last_forced_at = Some(now);
        self.next_fetch_at = now;
        true
    }

    /// Whether an unknown-`kid` refetch would be allowed now (without recording one).
    pub fn may_refetch(&self, now: u64) -> bool {
        self.in_flight()
            || self
                .last_forced_at
                .is_none_or(|last| now >= last.saturating_add(self.policy.refetch_min_interval_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;

    const RFC_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn bad_entries_are_skipped_not_fatal() {
        let short_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "good", "n": RFC_N, "e": "AQAB", "alg": "RS256", "use": "sig"},
            {"kty": "RSA", "kid": "nokidtype-ok", "n": RFC_N, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"},
            {"kty": "RSA", "kid": "enc", "n": RFC_N, "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "ps", "n": RFC_N, "e": "AQAB", "alg": "PS256"},
            {"kty": "RSA", "kid": "small", "n": short_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "bad-b64", "n": "!!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "no-e", "n": RFC_N},
            {"kty": "RSA", "kid": 7, "n": RFC_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "n": RFC_N, "e": "AQAB", "key_ops": ["encrypt"]},
            "not an object"
        ]});
        let (set, skipped) =
            KeySet::parse(doc.to_string().as_bytes(), DEFAULT_MAX_JWKS_BYTES).expect("parses");
        assert_eq!(set.kids(), vec!["good", "nokidtype-ok"]);
        assert_eq!(skipped, 9);
        assert!(set.has_kid("good") && !set.has_kid("ec"));
        assert_eq!(set.candidates(Some("good")).count(), 1);
        assert_eq!(set.candidates(None).count(), 2);
        assert_eq!(set.candidates(Some("nope")).count(), 0);
        let key = set.candidates(Some("good")).next().expect("key");
        assert_eq!(key.public.size(), 256);
        assert_eq!(key.spki_der.first(), Some(&0x30));
    }

    #[test]
    fn whole_document_errors() {
        let cases: Vec<(Vec<u8>, JwksError)> = vec![
            (b"not json".to_vec(), JwksError::NotJwks),
            (b"{}".to_vec(), JwksError::NotJwks),
            (br#"{"keys": {}}"#.to_vec(), JwksError::NotJwks),
            (br#"{"keys": []}"#.to_vec(), JwksError::NoUsableKeys),
            (
                br#"{"keys": [{"kty":"EC"}]}"#.to_vec(),
                JwksError::NoUsableKeys,
            ),
            (vec![b' '; DEFAULT_MAX_JWKS_BYTES + 1], JwksError::TooLarge),
        ];
        for (body, want) in cases {
            assert_eq!(
                KeySet::parse(&body, DEFAULT_MAX_JWKS_BYTES).err(),
                Some(want.clone()),
                "{want:?}"
            );
        }
    }

    /// A JWK of a 4096-bit key with this `kid`.
    fn big_jwk(kid: &str) -> Value {
        let mut n = vec![0xc5u8; 512];
        n[511] |= 1;
        json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"})
    }

    #[test]
    fn the_key_cap_stops_parsing_and_the_size_limit_comes_first() {
        let doc = |count: usize| {
            let keys: Vec<Value> = (0..count).map(|i| big_jwk(&format!("k{i}"))).collect();
            json!({ "keys": keys }).to_string()
        };
        // 200 keys: the first 64 are kept, the rest skipped unread.
        let body = doc(200);
        let (set, skipped) = KeySet::parse(body.as_bytes(), 1 << 20).expect("parses");
        assert_eq!((set.len(), skipped), (MAX_KEYS, 200 - MAX_KEYS));
        assert!(set.has_kid("k63") && !set.has_kid("k64"));
        // The default limit refuses that document before reading it.
        assert!(body.len() > DEFAULT_MAX_JWKS_BYTES);
        let read = std::cell::Cell::new(false);
        let got = interpret_fetch(Some("200"), body.len(), DEFAULT_MAX_JWKS_BYTES, || {
            read.set(true);
            body.clone().into_bytes()
        });
        assert!(got.is_err_and(|e| e.contains("over the 65536-byte limit")));
        assert!(!read.get(), "an oversized body is never read");
        // Within the limit it is read and parsed; other statuses are failures.
        let small = doc(2);
        let got = interpret_fetch(Some("200"), small.len(), DEFAULT_MAX_JWKS_BYTES, || {
            small.clone().into_bytes()
        });
        assert_eq!(got.map(|(s, n)| (s.len(), n)), Ok((2, 0)));
        for status in [Some("500"), Some("404"), None] {
            assert!(interpret_fetch(status, 0, DEFAULT_MAX_JWKS_BYTES, Vec::new).is_err());
        }
        // Loading does no big-number work: the Montgomery constants (~0.7 ms per 4096-bit
        // key) wait for a key's first pure-Rust verification.
        assert!(set.candidates(None).all(|k| !k.public.is_prepared()));
    }

    #[test]
    fn the_shared_rfc_jwks_parses() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/rfc/jwks_public.json"
        ))
        .expect("test vectors");
        let (set, skipped) = KeySet::parse(&body, DEFAULT_MAX_JWKS_BYTES).expect("parses");
        // RSA 2011-04-29, bilbo.baggins, and the RFC 7515 A.2 key (no kid); the EC key is skipped.
        assert_eq!(set.len(), 3);
        assert_eq!(skipped, 1);
        assert!(set.has_kid("2011-04-29") && set.has_kid("bilbo.baggins@hobbiton.example"));
    }

    fn policy() -> FetchPolicy {
        FetchPolicy {
            refresh_ms: 600_000,
            timeout_ms: 2000,
            retry_min_ms: 1000,
            retry_max_ms: 30_000,
            refetch_min_interval_ms: 30_000,
        }
    }

    fn one_key() -> KeySet {
        let n = URL_SAFE_NO_PAD.decode(RFC_N).expect("n");
        KeySet::from_keys(vec![RsaKey::from_components(
            Some("k".into()),
            &n,
            &[1, 0, 1],
        )
        .expect("key")])
    }

    #[test]
    fn fetch_state_machine() {
        let mut f = KeyFetcher::new(policy());
        // Start: nothing loaded, first fetch due at once, requests wait.
        assert!(f.due(0));
        assert_eq!(f.availability(0), KeyAvailability::Loading);
        f.begin(0);
        assert!(!f.due(0) && f.in_flight());
        assert_eq!(f.availability(10), KeyAvailability::Loading);
        // Failure with nothing cached: unavailable until the retry (1 s, then 2 s, 4 s…).
        f.fail(100);
        assert_eq!(f.availability(200), KeyAvailability::Unavailable);
        assert!(!f.due(1099) && f.due(1100));
        f.begin(1100);
        f.fail(1200);
        assert!(!f.due(3199) && f.due(3200));
        // Success: keys ready, next refresh after refresh_ms.
        f.begin(3200);
        f.succeed(3300, one_key());
        assert_eq!(f.availability(3300), KeyAvailability::Ready);
        assert_eq!(f.generation(), 1);
        assert!(!f.due(603_299) && f.due(603_300));
        // A failed refresh keeps the keys and retries after 1 s.
        f.begin(603_300);
        f.fail(603_400);
        assert!(f.keys().is_some());
        assert_eq!(f.next_fetch_at(), 604_400);
        // Backoff is capped.
        for i in 0..10 {
            f.begin(700_000 + i);
            f.fail(700_000 + i);
        }
        assert_eq!(f.next_fetch_at(), 700_009 + 30_000);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let mut f = KeyFetcher::new(policy());
        f.begin(0);
        f.succeed(0, one_key());
        assert!(f.may_refetch(1000));
        assert!(f.request_refetch(1000));
        assert!(f.due(1000));
        f.begin(1000);
        // While in flight, more unknown kids just wait for the same fetch.
        assert!(f.request_refetch(1001));
        f.succeed(1100, one_key());
        // Within the interval: refused, nothing due.
        assert!(!f.may_refetch(20_000));
        assert!(!f.request_refetch(20_000));
        assert!(!f.due(20_000));
        // After it: allowed again.
        assert!(f.request_refetch(31_000));
        assert!(f.due(31_000));
    }

    #[test]
    fn stuck_fetches_expire() {
        let mut f = KeyFetcher::new(policy());
        f.begin(0);
        assert!(!f.expire(2999));
        assert!(f.expire(3000));
        assert!(!f.in_flight());
        assert_eq!(f.availability(3000), KeyAvailability::Unavailable);
    }
}
