//! Key sets: JWKS parsing, and the process-wide fetch state machine of each provider.
//!
//! The state machine is fed `(now, outcome)` and asked what is due; it owns no timers.
//! Its state lives in the shared store ([`crate::shared`]): one VM of the process fetches
//! a JWKS, publishes the document, and every VM adopts it.

use crate::crypto::{Algorithm, Curve};
use crate::rsa_public::{der, RsaPublicKey};
use crate::shared::{update, Reader, Store};
use crate::token::b64url;
use serde_json::Value;
use sha2::Digest;

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
    /// The JWK's `alg`, when it names one: the only algorithm the key verifies.
    pub alg: Option<Algorithm>,
}

impl RsaKey {
    /// Builds a key from big-endian modulus and exponent; `None` if unusable.
    /// Moduli outside 2048-4096 bits are refused (NIST SP 800-131A), see
    /// [`RsaPublicKey::new`].
    pub fn from_components(kid: Option<String>, n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let public = RsaPublicKey::new(n, e)?;
        let spki_der = public.spki_der();
        Some(RsaKey {
            kid,
            public,
            fingerprint: spki_fingerprint(&spki_der),
            spki_der,
            alg: None,
        })
    }
}

/// The first 8 bytes of SHA-256 over a key's SPKI DER: identifies the key material.
fn spki_fingerprint(spki_der: &[u8]) -> u64 {
    let digest: [u8; 32] = sha2::Sha256::digest(spki_der).into();
    u64::from_be_bytes(digest.first_chunk::<8>().copied().unwrap_or_default())
}

/// An ECDSA public key, checked to lie on its curve, ready for either backend.
#[derive(Debug, Clone)]
pub enum EcPublic {
    /// P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// P-384.
    P384(p384::ecdsa::VerifyingKey),
}

/// One ES256/ES384 verification key.
#[derive(Debug, Clone)]
pub struct EcKey {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    /// Its curve.
    pub curve: Curve,
    /// The key for the pure-Rust backend.
    pub public: EcPublic,
    /// SubjectPublicKeyInfo DER for Envoy's `verify_signature`.
    pub spki_der: Vec<u8>,
    /// First 8 bytes of SHA-256(SPKI DER).
    pub fingerprint: u64,
    /// The JWK's `alg`, when it names one.
    pub alg: Option<Algorithm>,
}

impl EcKey {
    /// A key from its affine coordinates (big-endian, exactly the curve's size each);
    /// `None` unless the point lies on the curve.
    pub fn from_coordinates(
        kid: Option<String>,
        curve: Curve,
        x: &[u8],
        y: &[u8],
    ) -> Option<EcKey> {
        let len = match curve {
            Curve::P256 => 32,
            Curve::P384 => 48,
        };
        if x.len() != len || y.len() != len {
            return None;
        }
        let point: Vec<u8> = [&[0x04][..], x, y].concat();
        let public = match curve {
            Curve::P256 => EcPublic::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?),
            Curve::P384 => EcPublic::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?),
        };
        // SEQUENCE { SEQUENCE { id-ecPublicKey, curve }, BIT STRING point } (RFC 5480).
        const EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let curve_oid: &[u8] = match curve {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        };
        let algorithm = der(0x30, &[&EC_PUBLIC_KEY[..], curve_oid].concat());
        let spki_der = der(
            0x30,
            &[algorithm, der(0x03, &[&[0u8][..], &point].concat())].concat(),
        );
        Some(EcKey {
            kid,
            curve,
            public,
            fingerprint: spki_fingerprint(&spki_der),
            spki_der,
            alg: None,
        })
    }
}

/// One EdDSA (Ed25519) verification key.
#[derive(Debug, Clone)]
pub struct OkpKey {
    /// `kid`, if the JWK had one.
    pub kid: Option<String>,
    /// The key (a valid curve point).
    pub public: ed25519_dalek::VerifyingKey,
    /// First 8 bytes of SHA-256 over its SPKI DER.
    pub fingerprint: u64,
    /// Its SubjectPublicKeyInfo DER (RFC 8410).
    pub spki_der: Vec<u8>,
}

impl OkpKey {
    /// A key from its 32 bytes; `None` unless they decode to a curve point.
    pub fn from_bytes(kid: Option<String>, x: &[u8]) -> Option<OkpKey> {
        let bytes: [u8; 32] = x.try_into().ok()?;
        let public = ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?;
        // SEQUENCE { SEQUENCE { id-Ed25519 }, BIT STRING key }.
        const ED25519: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
        let spki_der = der(
            0x30,
            &[&ED25519[..], &der(0x03, &[&[0u8][..], x].concat())].concat(),
        );
        Some(OkpKey {
            kid,
            public,
            fingerprint: spki_fingerprint(&spki_der),
            spki_der,
        })
    }
}

/// A verification key of a key set.
#[derive(Debug, Clone)]
pub enum Key {
    /// RSA (RS256/384/512).
    Rsa(RsaKey),
    /// ECDSA (ES256 on P-256, ES384 on P-384).
    Ec(EcKey),
    /// EdDSA on Ed25519.
    Okp(OkpKey),
}

impl Key {
    /// Its `kid`.
    pub fn kid(&self) -> Option<&str> {
        match self {
            Key::Rsa(k) => k.kid.as_deref(),
            Key::Ec(k) => k.kid.as_deref(),
            Key::Okp(k) => k.kid.as_deref(),
        }
    }

    /// Its fingerprint.
    pub fn fingerprint(&self) -> u64 {
        match self {
            Key::Rsa(k) => k.fingerprint,
            Key::Ec(k) => k.fingerprint,
            Key::Okp(k) => k.fingerprint,
        }
    }

    /// Whether it may verify `alg`: its type and curve fit, and its JWK's `alg` (if any)
    /// is that one. An RSA key never verifies ES256, a P-256 key never ES384, no key HS*.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let (fits, pinned) = match self {
            Key::Rsa(k) => (alg.is_rsa(), k.alg),
            Key::Ec(k) => (alg.curve() == Some(k.curve), k.alg),
            Key::Okp(_) => (alg == Algorithm::EdDSA, None),
        };
        fits && pinned.is_none_or(|a| a == alg)
    }
}

/// A provider's current keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
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
    pub fn from_keys(keys: Vec<Key>) -> KeySet {
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

    /// Keys a token with this `kid` and `alg` may have been signed with: the one with that
    /// `kid` (or every key when the token names none), unless its JWK pins another `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| (kid.is_none() || k.kid() == kid) && k.fits(alg))
    }

    /// Whether a key with this `kid` exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Whether the key with this fingerprint is (still) in the set.
    pub fn has_fingerprint(&self, fingerprint: u64) -> bool {
        self.keys.iter().any(|k| k.fingerprint() == fingerprint)
    }

    /// The key ids, for logs.
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid().unwrap_or("(none)"))
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
) -> Result<(KeySet, usize, Vec<u8>), String> {
    match status {
        Some("200") if body_size > max_bytes => Err(format!(
            "body of {body_size} bytes over the {max_bytes}-byte limit (jwks.max_bytes)"
        )),
        Some("200") => {
            let body = read_body();
            let (keys, skipped) = KeySet::parse(&body, max_bytes).map_err(|e| format!("{e:?}"))?;
            Ok((keys, skipped, body))
        }
        Some(other) => Err(format!("status {other}")),
        None => Err("no response (connection failure or timeout)".to_string()),
    }
}

/// Reads an OpenID Provider configuration document (OIDC Discovery 1.0 §4): its `issuer`
/// must be `issuer` exactly, its `jwks_uri` an `https://` (or `http://`) URL on one of
/// `allowed_hosts`. Returns the keys' `:authority` and `:path`.
pub fn interpret_discovery(
    status: Option<&str>,
    body: &[u8],
    issuer: &str,
    allowed_hosts: &[String],
) -> Result<(String, String), String> {
    match status {
        Some("200") => {}
        Some(other) => return Err(format!("discovery: status {other}")),
        None => return Err("discovery: no response (connection failure or timeout)".into()),
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| "discovery: not JSON".to_string())?;
    let said = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    if said != issuer {
        return Err(format!(
            "discovery: the document's issuer {said:?} is not {issuer:?}"
        ));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("discovery: no jwks_uri")?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or("discovery: jwks_uri is not an http(s) URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') || !allowed_hosts.contains(&host) {
        return Err(format!(
            "discovery: jwks_uri host {host:?} is not one of the allowed hosts"
        ));
    }
    let path = path.split('#').next().unwrap_or("/");
    Ok((authority.to_string(), path.to_string()))
}

fn parse_jwk(entry: &Value) -> Option<Key> {
    let s = |name: &str| entry.get(name).and_then(Value::as_str);
    if entry.get("use").is_some() && s("use") != Some("sig") {
        return None;
    }
    // An `alg` pins the key to one algorithm; one that is not a public-key algorithm (or
    // not one bearer-guard knows) makes it unusable here.
    let alg = match entry.get("alg") {
        None => None,
        Some(_) => Some(
            s("alg")
                .and_then(Algorithm::from_header)
                .filter(|a| !a.is_hmac())?,
        ),
    };
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
    let key = match s("kty")? {
        "RSA" => {
            let n = b64url(s("n")?)?;
            let e = b64url(s("e")?)?;
            let mut key = RsaKey::from_components(kid, &n, &e)?;
            key.alg = alg;
            Key::Rsa(key)
        }
        "EC" => {
            let curve = match s("crv")? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                _ => return None,
            };
            let mut key =
                EcKey::from_coordinates(kid, curve, &b64url(s("x")?)?, &b64url(s("y")?)?)?;
            key.alg = alg;
            Key::Ec(key)
        }
        "OKP" if s("crv")? == "Ed25519" => Key::Okp(OkpKey::from_bytes(kid, &b64url(s("x")?)?)?),
        _ => return None,
    };
    // A key pinned to an algorithm it cannot verify (an RSA key with ES256) is unusable.
    alg.is_none_or(|a| key.fits(a)).then_some(key)
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
    /// Minimum interval between refetches forced by unknown `kid`s (process-wide).
    pub refetch_min_interval_ms: u64,
}

/// How long past its timeout a fetch in flight keeps its lease: the host's own timeout
/// fires first; after this, the holder is taken to be gone and another VM may fetch.
pub const LEASE_GRACE_MS: u64 = 1000;

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

/// The fetch state of one JWKS source for the whole Envoy process. It lives in the shared
/// store and every change is a compare-and-swap, so one VM fetches at a time (it holds the
/// lease: `holder`, `in_flight_since`) and every VM sees the same schedule, backoff and
/// refetch rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchState {
    /// Version of the key set last published (0: none yet).
    pub version: u64,
    /// When it was fetched (ms).
    pub fetched_at: u64,
    /// When the next fetch is due (ms; 0: at once).
    pub next_due: u64,
    /// Consecutive failures (the retry backoff).
    pub failures: u64,
    /// When an unknown `kid` last forced a refetch (ms; 0: never).
    pub last_forced: u64,
    /// The VM whose fetch is in flight (0: none).
    pub holder: u64,
    /// When that fetch started (ms).
    pub in_flight_since: u64,
}

impl FetchState {
    /// Its encoding in the store: seven little-endian `u64`s.
    pub fn encode(&self) -> Vec<u8> {
        [
            self.version,
            self.fetched_at,
            self.next_due,
            self.failures,
            self.last_forced,
            self.holder,
            self.in_flight_since,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }

    /// Decodes [`FetchState::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<FetchState> {
        let mut r = Reader(bytes);
        let state = FetchState {
            version: r.u64()?,
            fetched_at: r.u64()?,
            next_due: r.u64()?,
            failures: r.u64()?,
            last_forced: r.u64()?,
            holder: r.u64()?,
            in_flight_since: r.u64()?,
        };
        r.rest().is_empty().then_some(state)
    }

    /// Whether a fetch is in flight with a live lease.
    pub fn in_flight(&self, now: u64, p: &FetchPolicy) -> bool {
        self.holder != 0
            && now
                < self
                    .in_flight_since
                    .saturating_add(p.timeout_ms)
                    .saturating_add(LEASE_GRACE_MS)
    }

    /// Whether a fetch should start now.
    pub fn due(&self, now: u64, p: &FetchPolicy) -> bool {
        !self.in_flight(now, p) && now >= self.next_due
    }

    /// The state in which VM `me` holds the lease for a fetch starting now, if one is due,
    /// and whether that takes over the lease of a holder that never finished.
    pub fn start(&self, me: u64, now: u64, p: &FetchPolicy) -> Option<(FetchState, bool)> {
        self.due(now, p).then(|| {
            let next = FetchState {
                holder: me,
                in_flight_since: now,
                ..*self
            };
            (next, self.holder != 0)
        })
    }

    /// The state after a successful fetch published as `version`.
    pub fn succeed(&self, version: u64, now: u64, p: &FetchPolicy) -> FetchState {
        FetchState {
            version,
            fetched_at: now,
            next_due: now.saturating_add(p.refresh_ms),
            failures: 0,
            holder: 0,
            in_flight_since: 0,
            ..*self
        }
    }

    /// The state after a failed fetch (or one that could not start): the keys stay, the
    /// next attempt backs off exponentially from `retry_min_ms` to `retry_max_ms`.
    pub fn fail(&self, now: u64, p: &FetchPolicy) -> FetchState {
        let failures = self.failures.saturating_add(1);
        let delay = p
            .retry_min_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(p.retry_max_ms);
        FetchState {
            failures,
            next_due: now.saturating_add(delay),
            holder: 0,
            in_flight_since: 0,
            ..*self
        }
    }

    /// Whether an unknown `kid` may have the keys refetched now: a fetch is in flight (wait
    /// for it), or none was forced within `refetch_min_interval_ms`.
    pub fn may_refetch(&self, now: u64, p: &FetchPolicy) -> bool {
        self.in_flight(now, p)
            || self.last_forced == 0
            || now >= self.last_forced.saturating_add(p.refetch_min_interval_ms)
    }

    /// The state after an unknown `kid` forced a refetch (due at once), if allowed.
    pub fn refetch(&self, now: u64, p: &FetchPolicy) -> Option<FetchState> {
        if self.in_flight(now, p) {
            return Some(*self);
        }
        self.may_refetch(now, p).then_some(FetchState {
            last_forced: now.max(1),
            next_due: now,
            ..*self
        })
    }

    /// What a request can expect, given whether this VM has keys.
    pub fn availability(&self, has_keys: bool, now: u64, p: &FetchPolicy) -> KeyAvailability {
        if has_keys {
            KeyAvailability::Ready
        } else if self.in_flight(now, p) || self.due(now, p) {
            KeyAvailability::Loading
        } else {
            KeyAvailability::Unavailable
        }
    }
}

/// One provider's keys as one VM sees them: the process-wide fetch state and published
/// document in the shared store, and the version this VM has parsed and adopted.
#[derive(Debug, Clone)]
pub struct ProviderKeys {
    prefix: String,
    policy: FetchPolicy,
    max_bytes: usize,
    keys: Option<KeySet>,
    version: u64,
    state: FetchState,
}

/// What [`ProviderKeys::sync`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sync {
    /// A newer key set was adopted: its version and key ids.
    pub adopted: Option<(u64, String)>,
    /// No fetch is in flight or due: requests waiting for keys may decide now.
    pub settled: bool,
}

impl ProviderKeys {
    /// A provider's keys from the JWKS source with this fingerprint (cluster, authority,
    /// path: VMs and configurations naming the same source share one key set).
    pub fn new(source: u64, policy: FetchPolicy, max_bytes: usize) -> ProviderKeys {
        ProviderKeys {
            prefix: format!("bearer_guard.jwks.{source:016x}"),
            policy,
            max_bytes,
            keys: None,
            version: 0,
            state: FetchState::default(),
        }
    }

    fn state_key(&self) -> String {
        format!("{}.state", self.prefix)
    }

    fn doc_key(&self) -> String {
        format!("{}.doc", self.prefix)
    }

    /// The adopted keys, if any key set was ever published.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// The adopted key set's version (0: none).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The fetch policy.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// The fetch state as last read or written by this VM.
    pub fn state(&self) -> &FetchState {
        &self.state
    }

    /// Reads the process-wide state and adopts a newer published key set (parsing it here:
    /// each VM keeps its own parsed keys, no VM fetches what another already has).
    pub fn sync(&mut self, store: &dyn Store, now: u64) -> Sync {
        if let Some(state) = store
            .get(&self.state_key())
            .and_then(|(b, _)| FetchState::decode(&b))
        {
            self.state = state;
        }
        let mut result = Sync::default();
        if self.state.version > self.version {
            let doc = store
                .get(&self.doc_key())
                .map(|(b, _)| b)
                .unwrap_or_default();
            let mut r = Reader(&doc);
            if let Some(version) = r.u64().filter(|v| *v > self.version) {
                if let Ok((keys, _)) = KeySet::parse(r.rest(), self.max_bytes) {
                    result.adopted = Some((version, keys.kids().join(",")));
                    self.keys = Some(keys);
                    self.version = version;
                }
            }
        }
        result.settled =
            !self.state.in_flight(now, &self.policy) && !self.state.due(now, &self.policy);
        result
    }

    /// Takes the lease for a fetch if one is due (`Some(takeover)`: dispatch it now).
    pub fn try_start(&mut self, store: &dyn Store, me: u64, now: u64) -> Option<bool> {
        let mut takeover = false;
        let written = update(
            store,
            &self.state_key(),
            FetchState::decode,
            FetchState::encode,
            |s| {
                let (next, t) = s.start(me, now, &self.policy)?;
                takeover = t;
                Some(next)
            },
        );
        match written {
            Ok(Some(state)) => {
                self.state = state;
                Some(takeover)
            }
            _ => None,
        }
    }

    /// Records this VM's fetch: on success the document is published as the next version
    /// and adopted here; on failure the published keys stay and the retry backs off.
    /// Returns the version published (`None` on failure).
    pub fn finish(
        &mut self,
        store: &dyn Store,
        now: u64,
        result: Result<(KeySet, Vec<u8>), String>,
    ) -> Option<u64> {
        let policy = self.policy;
        match result {
            Ok((keys, body)) => {
                let doc_key = self.doc_key();
                let written = update(
                    store,
                    &self.state_key(),
                    FetchState::decode,
                    FetchState::encode,
                    |s| {
                        let version = s.version.max(self.version).saturating_add(1);
                        let doc: Vec<u8> = version
                            .to_le_bytes()
                            .into_iter()
                            .chain(body.iter().copied())
                            .collect();
                        store.set(&doc_key, &doc, 0).ok()?;
                        Some(s.succeed(version, now, &policy))
                    },
                );
                let state = written.ok().flatten()?;
                self.state = state;
                self.version = state.version;
                self.keys = Some(keys);
                Some(state.version)
            }
            Err(_) => {
                if let Ok(Some(state)) = update(
                    store,
                    &self.state_key(),
                    FetchState::decode,
                    FetchState::encode,
                    |s| Some(s.fail(now, &policy)),
                ) {
                    self.state = state;
                }
                None
            }
        }
    }

    /// An unknown `kid` asks for a refetch: `true` when one is in flight or now due for
    /// the process, `false` when rate-limited.
    pub fn request_refetch(&mut self, store: &dyn Store, now: u64) -> bool {
        let policy = self.policy;
        let mut seen = self.state;
        match update(
            store,
            &self.state_key(),
            FetchState::decode,
            FetchState::encode,
            |s| {
                seen = s;
                s.refetch(now, &policy).filter(|next| *next != s)
            },
        ) {
            Ok(Some(state)) => {
                self.state = state;
                true
            }
            // Nothing to change: a fetch is already in flight, or the interval is not over.
            Ok(None) => {
                self.state = seen;
                seen.in_flight(now, &policy)
            }
            Err(_) => false,
        }
    }

    /// What a request can expect now (from the state last read).
    pub fn availability(&self, now: u64) -> KeyAvailability {
        self.state
            .availability(self.keys.is_some(), now, &self.policy)
    }

    /// Whether an unknown `kid` may ask for a refetch now (from the state last read).
    pub fn may_refetch(&self, now: u64) -> bool {
        self.state.may_refetch(now, &self.policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The configuration's default `jwks.max_bytes`.
    const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;
    use crate::shared::MemoryStore;
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
            {"kty": "RSA", "kid": "hs", "n": RFC_N, "e": "AQAB", "alg": "HS256"},
            {"kty": "RSA", "kid": "es", "n": RFC_N, "e": "AQAB", "alg": "ES256"},
            {"kty": "RSA", "kid": "unknown-alg", "n": RFC_N, "e": "AQAB", "alg": "RS1"},
            {"kty": "RSA", "kid": "small", "n": short_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "bad-b64", "n": "!!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "no-e", "n": RFC_N},
            {"kty": "RSA", "kid": 7, "n": RFC_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "n": RFC_N, "e": "AQAB", "key_ops": ["encrypt"]},
            "not an object"
        ]});
        let (set, skipped) =
            KeySet::parse(doc.to_string().as_bytes(), DEFAULT_MAX_JWKS_BYTES).expect("parses");
        assert_eq!(set.kids(), vec!["good", "nokidtype-ok", "ps"]);
        assert_eq!(skipped, 11);
        assert_eq!(set.candidates(Some("ps"), Algorithm::PS256).count(), 1);
        assert_eq!(
            set.candidates(Some("ps"), Algorithm::RS256).count(),
            0,
            "pinned to PS256"
        );
        assert!(set.has_kid("good") && !set.has_kid("ec"));
        assert_eq!(set.candidates(Some("good"), Algorithm::RS256).count(), 1);
        assert_eq!(
            set.candidates(Some("good"), Algorithm::RS512).count(),
            0,
            "pinned to RS256"
        );
        assert_eq!(set.candidates(None, Algorithm::RS256).count(), 2);
        assert_eq!(
            set.candidates(None, Algorithm::ES256).count(),
            0,
            "no EC key"
        );
        assert_eq!(
            set.candidates(None, Algorithm::RS384).count(),
            1,
            "the key without alg"
        );
        assert_eq!(set.candidates(Some("nope"), Algorithm::RS256).count(), 0);
        let key = set
            .candidates(Some("good"), Algorithm::RS256)
            .next()
            .expect("key");
        let Key::Rsa(key) = key else {
            panic!("an RSA key")
        };
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
        assert_eq!(
            got.map(|(s, n, b)| (s.len(), n, b.len())),
            Ok((2, 0, small.len()))
        );
        for status in [Some("500"), Some("404"), None] {
            assert!(interpret_fetch(status, 0, DEFAULT_MAX_JWKS_BYTES, Vec::new).is_err());
        }
        // Loading does no big-number work: the Montgomery constants (~0.7 ms per 4096-bit
        // key) wait for a key's first pure-Rust verification.
        assert!(set
            .candidates(None, Algorithm::RS256)
            .all(|k| matches!(k, Key::Rsa(r) if !r.public.is_prepared())));
    }

    #[test]
    fn discovery_documents() {
        let allowed = vec!["sso.example.com".to_string()];
        let iss = "https://sso.example.com/realms/x";
        let doc = |issuer: &str, uri: &str| json!({"issuer": issuer, "jwks_uri": uri}).to_string();
        let read = |body: String| interpret_discovery(Some("200"), body.as_bytes(), iss, &allowed);
        assert_eq!(
            read(doc(iss, "https://sso.example.com/realms/x/certs")),
            Ok(("sso.example.com".into(), "/realms/x/certs".into()))
        );
        assert_eq!(
            read(doc(iss, "https://SSO.example.com:8443/k?v=1#f")),
            Ok(("SSO.example.com:8443".into(), "/k?v=1".into()))
        );
        for (body, why) in [
            (
                doc(
                    "https://sso.example.com/realms/y",
                    "https://sso.example.com/c",
                ),
                "issuer",
            ),
            (
                doc(iss, "https://evil.example.com/c"),
                "not one of the allowed hosts",
            ),
            (
                doc(iss, "https://user@sso.example.com/c"),
                "not one of the allowed hosts",
            ),
            (doc(iss, "ftp://sso.example.com/c"), "not an http(s) URL"),
            (json!({"issuer": iss}).to_string(), "no jwks_uri"),
            ("<html>".to_string(), "not JSON"),
        ] {
            let got = read(body.clone());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(why)),
                "{body}: {got:?}"
            );
        }
        assert!(interpret_discovery(Some("404"), b"", iss, &allowed).is_err());
        assert!(interpret_discovery(None, b"", iss, &allowed).is_err());
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
            refetch_min_interval_ms: 5000,
        }
    }

    fn doc(kid: &str) -> Vec<u8> {
        json!({"keys": [{"kty": "RSA", "kid": kid, "n": RFC_N, "e": "AQAB"}]})
            .to_string()
            .into_bytes()
    }

    fn fetched(kid: &str) -> Result<(KeySet, Vec<u8>), String> {
        let body = doc(kid);
        let (keys, _) =
            KeySet::parse(&body, DEFAULT_MAX_JWKS_BYTES).map_err(|e| format!("{e:?}"))?;
        Ok((keys, body))
    }

    #[test]
    fn fetch_state_machine() {
        let p = policy();
        let s = FetchState::default();
        // Start: nothing loaded, the first fetch due at once, requests wait.
        assert!(s.due(0, &p));
        assert_eq!(s.availability(false, 0, &p), KeyAvailability::Loading);
        let (s, takeover) = s.start(7, 0, &p).expect("due");
        assert!(!takeover && s.in_flight(10, &p) && !s.due(10, &p));
        assert!(s.start(8, 10, &p).is_none(), "one fetch at a time");
        // Failure with nothing published: unavailable until the retry (1 s, then 2 s, 4 s…).
        let s = s.fail(100, &p);
        assert_eq!(s.availability(false, 200, &p), KeyAvailability::Unavailable);
        assert!(!s.due(1099, &p) && s.due(1100, &p));
        let s = s.start(7, 1100, &p).expect("due").0.fail(1200, &p);
        assert!(!s.due(3199, &p) && s.due(3200, &p));
        // Success: ready, next refresh after refresh_ms, backoff reset.
        let s = s.start(7, 3200, &p).expect("due").0.succeed(1, 3300, &p);
        assert_eq!(s.availability(true, 3300, &p), KeyAvailability::Ready);
        assert_eq!((s.version, s.failures, s.holder), (1, 0, 0));
        assert!(!s.due(603_299, &p) && s.due(603_300, &p));
        // Backoff is capped.
        let mut s = s;
        for i in 0..10 {
            s = s
                .start(7, 700_000 + i, &p)
                .expect("due")
                .0
                .fail(700_000 + i, &p);
            s.next_due = 700_000 + i; // due again at once, for the loop
        }
        assert_eq!(s.fail(800_000, &p).next_due, 800_000 + 30_000);
        // The encoding round-trips and refuses anything else.
        assert_eq!(FetchState::decode(&s.encode()), Some(s));
        assert_eq!(FetchState::decode(&s.encode()[..55]), None);
        assert_eq!(FetchState::decode(&[s.encode(), vec![0]].concat()), None);
    }

    #[test]
    fn a_lease_whose_holder_never_finishes_expires() {
        let p = policy();
        let (s, _) = FetchState::default().start(7, 0, &p).expect("due");
        // In flight until timeout + grace; then another VM takes over.
        let bound = p.timeout_ms + LEASE_GRACE_MS;
        assert!(s.start(8, bound - 1, &p).is_none());
        let (taken, takeover) = s.start(8, bound, &p).expect("stale lease");
        assert!(takeover && taken.holder == 8);
    }

    /// Two VMs (two `ProviderKeys` over one store): one fetch for the process, both adopt
    /// its key set; a refresh failure keeps the keys everywhere; the refetch rate limit is
    /// the process's.
    #[test]
    fn one_fetch_per_process_and_every_vm_adopts_it() {
        let store = MemoryStore::default();
        let mut a = ProviderKeys::new(42, policy(), DEFAULT_MAX_JWKS_BYTES);
        let mut b = ProviderKeys::new(42, policy(), DEFAULT_MAX_JWKS_BYTES);
        assert!(!a.sync(&store, 0).settled, "the first fetch is due");
        b.sync(&store, 0);
        assert_eq!(a.try_start(&store, 1, 0), Some(false));
        assert_eq!(b.try_start(&store, 2, 0), None, "a holds the lease");
        b.sync(&store, 5);
        assert_eq!(b.availability(5), KeyAvailability::Loading);
        assert_eq!(a.finish(&store, 100, fetched("k1")), Some(1));
        assert_eq!(a.availability(100), KeyAvailability::Ready);
        // b adopts without fetching.
        let sync = b.sync(&store, 150);
        assert_eq!(sync.adopted, Some((1, "k1".to_string())));
        assert!(sync.settled && b.keys().is_some_and(|k| k.has_kid("k1")));
        assert_eq!(
            b.try_start(&store, 2, 150),
            None,
            "nothing due until the refresh"
        );
        // A refresh that fails keeps the keys on both.
        let due = 100 + policy().refresh_ms;
        assert_eq!(b.try_start(&store, 2, due), Some(false));
        assert_eq!(b.finish(&store, due + 10, Err("status 500".into())), None);
        a.sync(&store, due + 20);
        assert!(a.keys().is_some() && b.keys().is_some());
        assert_eq!(
            (a.state().failures, a.state().next_due),
            (1, due + 10 + 1000)
        );
        // A newer configuration (a third VM) adopts the published keys at once.
        let mut c = ProviderKeys::new(42, policy(), DEFAULT_MAX_JWKS_BYTES);
        assert!(c.sync(&store, due + 30).adopted.is_some());
        assert_eq!(c.availability(due + 30), KeyAvailability::Ready);
        // Another source is another key set.
        let mut other = ProviderKeys::new(43, policy(), DEFAULT_MAX_JWKS_BYTES);
        other.sync(&store, due + 30);
        assert!(other.keys().is_none());
        // Unknown kids: one refetch per interval for the process, whichever VM asks.
        let t = due + 5000;
        a.sync(&store, t);
        assert!(a.request_refetch(&store, t));
        assert_eq!(
            b.try_start(&store, 2, t),
            Some(false),
            "due at once, any VM may fetch"
        );
        assert!(a.request_refetch(&store, t + 1), "in flight: wait for it");
        b.finish(&store, t + 50, fetched("k2"));
        a.sync(&store, t + 60);
        assert!(a.keys().is_some_and(|k| k.has_kid("k2")));
        assert!(!a.request_refetch(&store, t + 4999) && !b.request_refetch(&store, t + 4999));
        assert!(b.request_refetch(&store, t + 5000));
    }

    #[test]
    fn a_late_finish_after_a_takeover_still_publishes_a_newer_version() {
        let store = MemoryStore::default();
        let mut a = ProviderKeys::new(1, policy(), DEFAULT_MAX_JWKS_BYTES);
        let mut b = ProviderKeys::new(1, policy(), DEFAULT_MAX_JWKS_BYTES);
        assert_eq!(a.try_start(&store, 1, 0), Some(false));
        let stale = policy().timeout_ms + LEASE_GRACE_MS;
        assert_eq!(b.try_start(&store, 2, stale), Some(true), "takeover");
        assert_eq!(b.finish(&store, stale + 10, fetched("b")), Some(1));
        assert_eq!(a.finish(&store, stale + 20, fetched("a")), Some(2));
        b.sync(&store, stale + 30);
        assert_eq!(b.version(), 2);
        assert!(b.keys().is_some_and(|k| k.has_kid("a")));
    }
}
