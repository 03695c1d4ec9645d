//! EdDSA signatures (Ed25519).

use crate::keys::OkpKey;

/// EdDSA on Ed25519 (RFC 8032, strict: small-order keys and non-canonical `R` refused).
pub fn verify_ed25519(key: &OkpKey, message: &[u8], signature: &[u8]) -> bool {
    ed25519_dalek::Signature::from_slice(signature)
        .is_ok_and(|sig| key.public.verify_strict(message, &sig).is_ok())
}
