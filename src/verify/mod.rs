//! Signatures: one entry point ([`verify_with_key`]) dispatching per algorithm family —
//! [`rsa`] (PKCS#1 v1.5 and PSS), [`ecdsa`], [`eddsa`], [`hmac`] — each with its own key
//! type. RSA PKCS#1 v1.5 and ECDSA go through one [`SignatureBackend`] so a host can use
//! its own (Envoy's BoringSSL through `verify_signature`: [`host`]) or pure Rust;
//! RSASSA-PSS, Ed25519 and HMAC are pure Rust on every host.

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub mod ecdsa;
pub mod eddsa;
pub mod hmac;
// The proxy-wasm host's backend (Envoy's `verify_signature`); other builds compile it
// for its tests.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub mod host;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub mod native;
pub mod rsa;

pub use self::ecdsa::ecdsa_signature_der;
pub use self::eddsa::verify_ed25519;
pub use self::hmac::verify_hmac;
#[cfg(all(feature = "native", not(target_arch = "wasm32")))]
pub use self::native::NativeBackend;
pub use self::rsa::{rsassa_pkcs1v15, rsassa_pss};
use crate::algorithm::{Algorithm, Hash};
use crate::keys::{EcKey, Key, KeySet, OkpKey, RsaKey};

/// The host could not perform a verification (never means "invalid signature").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError(pub String);

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackendError {}

/// Verifies public-key signatures: RSASSA-PKCS1-v1_5 (RS256/384/512) and ECDSA
/// (ES256, ES384, ES512).
pub trait SignatureBackend {
    /// `Ok(true)` valid, `Ok(false)` invalid, `Err` the backend itself failed.
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError>;
    /// ECDSA over `hash` with a JWS signature (`r || s`, RFC 7518 §3.4): `Ok(true)` valid.
    fn verify_ecdsa(
        &self,
        key: &EcKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError>;
    /// RSASSA-PSS over `hash` (pure Rust unless the backend has its own).
    fn verify_pss(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        Ok(rsassa_pss(&key.public, hash, message, signature))
    }
    /// EdDSA on Ed25519 (pure Rust unless the backend has its own).
    fn verify_eddsa(
        &self,
        key: &OkpKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        Ok(verify_ed25519(key, message, signature))
    }
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Pure Rust for every public-key family (`rsa_public` for RSA, RustCrypto for ECDSA).
#[derive(Debug, Default, Clone, Copy)]
pub struct RustBackend;

impl SignatureBackend for RustBackend {
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        Ok(rsassa_pkcs1v15(&key.public, hash, message, signature))
    }

    fn verify_ecdsa(
        &self,
        key: &EcKey,
        _hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        Ok(ecdsa::verify(key, message, signature))
    }

    fn name(&self) -> &'static str {
        "rust"
    }
}

/// Verifies a JWS signature by `alg` with one key (chosen for `alg`: see [`Key::fits`]),
/// through `backend` for every family (Envoy's BoringSSL, AWS-LC natively, or pure
/// Rust; a backend without PSS or Ed25519 of its own falls back to pure Rust). Tokens
/// and DPoP proofs both come here.
pub fn verify_with_key(
    backend: &dyn SignatureBackend,
    key: &Key,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, BackendError> {
    match key {
        Key::Rsa(k) if alg.is_pss() => backend.verify_pss(k, alg.hash(), message, signature),
        Key::Rsa(k) => backend.verify_rsa(k, alg.hash(), message, signature),
        Key::Ec(k) => backend.verify_ecdsa(k, alg.hash(), message, signature),
        Key::Okp(k) => backend.verify_eddsa(k, message, signature),
    }
}

/// Verifies a JWS signature with a key set: the key `kid` names or, for a token without
/// `kid`, at most `max_tries` keys (only keys whose type, curve and JWK `alg` fit `alg`).
/// `Ok(Some(fingerprint))` of the key that verified it; `Ok(None)`: none did.
pub fn with_key_set(
    backend: &dyn SignatureBackend,
    keys: &KeySet,
    (kid, alg): (Option<&str>, Algorithm),
    message: &[u8],
    signature: &[u8],
    max_tries: usize,
) -> Result<Option<u64>, BackendError> {
    for key in keys.candidates(kid, alg).take(max_tries) {
        if verify_with_key(backend, key, alg, message, signature)? {
            return Ok(Some(key.fingerprint()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
