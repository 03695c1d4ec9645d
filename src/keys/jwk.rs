//! Verification keys and key sets: JWKS documents parsed into typed keys (RSA, EC,
//! OKP), each checked once when its set loads and pinned to the algorithms it may verify.

use crate::algorithm::{Algorithm, Curve};
use crate::encoding::b64url;
use crate::keys::rsa_public::{der, RsaPublicKey};
use serde_json::Value;
use sha2::Digest;

/// Most keys kept from one JWKS; entries past it are skipped unread.
pub const MAX_KEYS: usize = 64;

/// One RSA verification key (RS256/384/512, PS256/384/512), prepared once when its key set loads.
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
    /// P-521.
    P521(Box<p521::ecdsa::VerifyingKey>),
}

/// One ES256/ES384/ES512 verification key.
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
        let len = curve.coordinate_len();
        if x.len() != len || y.len() != len {
            return None;
        }
        let point: Vec<u8> = [&[0x04][..], x, y].concat();
        let public = match curve {
            Curve::P256 => EcPublic::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?),
            Curve::P384 => EcPublic::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?),
            Curve::P521 => EcPublic::P521(Box::new(
                p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?,
            )),
        };
        // SEQUENCE { SEQUENCE { id-ecPublicKey, curve }, BIT STRING point } (RFC 5480).
        const EC_PUBLIC_KEY: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let curve_oid: &[u8] = match curve {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            Curve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
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
    /// ECDSA (ES256 on P-256, ES384 on P-384, ES512 on P-521).
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

    /// A key from one JWK as a JWKS entry holds it (`use`, `key_ops` and `alg` honoured;
    /// curve points and RSA sizes checked); `None` when it is not a usable signing key.
    pub fn from_jwk(jwk: &Value) -> Option<Key> {
        parse_jwk(jwk)
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
    /// No entry was a usable signing key.
    NoUsableKeys,
}

impl std::fmt::Display for JwksError {
    /// The variant's name, as the logs have always said it (`JWKS fetch failed: NotJwks`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for JwksError {}

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
                "P-521" => Curve::P521,
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
