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

/// Parsed keys by (key fingerprint, algorithm), with the key's DER they were parsed from:
/// a hit counts only when the DER is the same, so two keys whose 64-bit fingerprints
/// collide never share a parsed key. `None`: AWS-LC refused the key.
type Parsed = HashMap<(u64, usize), (Box<[u8]>, Option<Rc<ParsedPublicKey>>)>;

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
            match parsed.get(&(fingerprint, alg)) {
                Some((from, key)) if **from == *der => key.clone(),
                _ => {
                    if parsed.len() >= MAX_PARSED {
                        parsed.clear();
                    }
                    let key = algorithm(alg)
                        .and_then(|a| ParsedPublicKey::new(a, der).ok())
                        .map(Rc::new);
                    parsed.insert((fingerprint, alg), (der.into(), key.clone()));
                    key
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(secret: u8) -> (SigningKey, OkpKey) {
        let signing = SigningKey::from_bytes(&[secret; 32]);
        let public = OkpKey::from_bytes(None, signing.verifying_key().as_bytes()).expect("key");
        (signing, public)
    }

    /// An attacker's key whose 64-bit fingerprint collides with the victim's must not be
    /// verified with the victim's parsed key, nor the victim's with the attacker's.
    #[test]
    fn keys_with_colliding_fingerprints_never_share_a_parsed_key() {
        let backend = NativeBackend::default();
        let (victim_signing, victim) = key(1);
        let (attacker_signing, mut attacker) = key(2);
        attacker.fingerprint = victim.fingerprint;
        let message = b"header.payload";
        let by_victim = victim_signing.sign(message).to_bytes();
        let by_attacker = attacker_signing.sign(message).to_bytes();
        assert_eq!(backend.verify_eddsa(&victim, message, &by_victim), Ok(true));
        assert_eq!(
            backend.verify_eddsa(&attacker, message, &by_victim),
            Ok(false),
            "the attacker's key verified with the victim's parsed key"
        );
        assert_eq!(
            backend.verify_eddsa(&attacker, message, &by_attacker),
            Ok(true)
        );
        assert_eq!(
            backend.verify_eddsa(&victim, message, &by_attacker),
            Ok(false)
        );
        assert_eq!(backend.verify_eddsa(&victim, message, &by_victim), Ok(true));
    }
}
