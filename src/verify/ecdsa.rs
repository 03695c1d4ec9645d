//! ECDSA signatures (ES256, ES384, ES512) with RustCrypto, and the DER form of a JWS
//! signature that hosts verifying with BoringSSL take.

use crate::keys::{EcKey, EcPublic};

/// Verifies a JWS ECDSA signature (`r || s`). The curve fixes the hash (P-256 with
/// SHA-256, P-384 with SHA-384, P-521 with SHA-512): the key was chosen for the token's
/// `alg`, so they agree.
pub fn verify(key: &EcKey, message: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    match &key.public {
        EcPublic::P256(vk) => p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| vk.verify(message, &sig).is_ok()),
        EcPublic::P384(vk) => p384::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| vk.verify(message, &sig).is_ok()),
        EcPublic::P521(vk) => p521::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| vk.verify(message, &sig).is_ok()),
    }
}

/// A JWS ECDSA signature (`r || s`, each the curve's size) as the DER `ECDSA-Sig-Value`
/// BoringSSL verifies (`SEQUENCE { INTEGER r, INTEGER s }`); `None` for a wrong length.
pub fn ecdsa_signature_der(signature: &[u8], coordinate_len: usize) -> Option<Vec<u8>> {
    if signature.len() != 2 * coordinate_len {
        return None;
    }
    let (r, s) = signature.split_at(coordinate_len);
    Some(crate::keys::rsa_public::der(
        0x30,
        &[
            crate::keys::rsa_public::der_uint(r),
            crate::keys::rsa_public::der_uint(s),
        ]
        .concat(),
    ))
}
