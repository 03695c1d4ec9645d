//! HMAC signatures (HS256, HS384, HS512) with a provider's shared secret.

use crate::algorithm::Hash;
use ::hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha384, Sha512};

/// HMAC check in constant time; signatures of the wrong length are rejected.
pub fn verify_hmac(secret: &[u8], hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(
        secret: &[u8],
        message: &[u8],
        signature: &[u8],
        len: usize,
    ) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
            return false;
        };
        mac.update(message);
        signature.len() == len && mac.verify_slice(signature).is_ok()
    }
    match hash {
        Hash::Sha256 => check::<Hmac<Sha256>>(secret, message, signature, 32),
        Hash::Sha384 => check::<Hmac<Sha384>>(secret, message, signature, 48),
        Hash::Sha512 => check::<Hmac<Sha512>>(secret, message, signature, 64),
    }
}
