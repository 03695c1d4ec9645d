//! Signatures natively, with AWS-LC (`aws-lc-rs`): every family — RSASSA-PKCS1-v1_5,
//! RSASSA-PSS, ECDSA on P-256, P-384 and P-521, Ed25519 — against keys parsed once and
//! kept per key and algorithm, so a verification never parses a key again (measured in
//! `make bench`'s verify-timing: parsing an RSA-2048 key costs more than the
//! verification it serves). The native Envoy module's backend; the wasm module keeps
//! Envoy's `verify_signature`.

use super::{BackendError, SignatureBackend};
use crate::algorithm::Hash;
use crate::keys::{EcKey, OkpKey, RsaKey};
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The most parsed keys a backend keeps (a key set holds at most `MAX_KEYS`; several
/// providers, rotations): past it the cache starts afresh.
const MAX_PARSED: usize = 256;

/// Parsed keys by (key fingerprint, algorithm); `None`: AWS-LC refused the key.
type Parsed = HashMap<(u64, usize), Option<Rc<ParsedPublicKey>>>;

/// AWS-LC with a cache of parsed keys. One per worker (not shared across threads).
#[derive(Default)]
pub struct NativeBackend {
    parsed: RefCell<Parsed>,
}

impl std::fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeBackend").finish_non_exhaustive()
    }
}

/// The algorithms, by a small number for the cache key.
fn algorithm(n: usize) -> Option<&'static dyn VerificationAlgorithm> {
    let all: [&'static dyn VerificationAlgorithm; 10] = [
        &signature::RSA_PKCS1_2048_8192_SHA256,
        &signature::RSA_PKCS1_2048_8192_SHA384,
        &signature::RSA_PKCS1_2048_8192_SHA512,
        &signature::RSA_PSS_2048_8192_SHA256,
        &signature::RSA_PSS_2048_8192_SHA384,
        &signature::RSA_PSS_2048_8192_SHA512,
        &signature::ECDSA_P256_SHA256_FIXED,
        &signature::ECDSA_P384_SHA384_FIXED,
        &signature::ECDSA_P521_SHA512_FIXED,
        &signature::ED25519,
    ];
    all.get(n).copied()
}

fn hash_index(hash: Hash) -> usize {
    match hash {
        Hash::Sha256 => 0,
        Hash::Sha384 => 1,
        Hash::Sha512 => 2,
    }
}

impl NativeBackend {
    /// Verifies with the key of `fingerprint` parsed for algorithm `alg` from `der`
    /// (SubjectPublicKeyInfo); a key AWS-LC refuses verifies nothing.
    fn verify(
        &self,
        (fingerprint, alg): (u64, usize),
        der: &[u8],
        message: &[u8],
        sig: &[u8],
    ) -> bool {
        let key = {
            let mut parsed = self.parsed.borrow_mut();
            if parsed.len() >= MAX_PARSED && !parsed.contains_key(&(fingerprint, alg)) {
                parsed.clear();
            }
            parsed
                .entry((fingerprint, alg))
                .or_insert_with(|| {
                    algorithm(alg)
                        .and_then(|a| ParsedPublicKey::new(a, der).ok())
                        .map(Rc::new)
                })
                .clone()
        };
        key.is_some_and(|k| k.verify_sig(message, sig).is_ok())
    }
}

impl SignatureBackend for NativeBackend {
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        let alg = hash_index(hash);
        Ok(self.verify((key.fingerprint, alg), &key.spki_der, message, signature))
    }

    fn verify_pss(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        let alg = 3 + hash_index(hash);
        Ok(self.verify((key.fingerprint, alg), &key.spki_der, message, signature))
    }

    fn verify_ecdsa(
        &self,
        key: &EcKey,
        _hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        // The curve fixes the hash: the key was chosen for the token's `alg`.
        let alg = match key.curve {
            crate::algorithm::Curve::P256 => 6,
            crate::algorithm::Curve::P384 => 7,
            crate::algorithm::Curve::P521 => 8,
        };
        Ok(self.verify((key.fingerprint, alg), &key.spki_der, message, signature))
    }

    fn verify_eddsa(
        &self,
        key: &OkpKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        Ok(self.verify((key.fingerprint, 9), &key.spki_der, message, signature))
    }

    fn name(&self) -> &'static str {
        "aws-lc"
    }
}
