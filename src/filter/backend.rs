//! RS256/384/512 and ES256/384 through Envoy's `verify_signature` foreign function
//! (BoringSSL), detected once. ECDSA signatures are re-encoded from JWS's `r || s` to
//! the DER BoringSSL takes.

use super::host::{self, NOT_FOUND};
use crate::crypto::{Curve, Hash};
use crate::envoy_ffi::{decode_result, encode_args, VERIFY_SIGNATURE};
use crate::jwks::{EcKey, RsaKey};
use crate::verifier::{ecdsa_signature_der, BackendError, SignatureBackend};

/// Envoy's native verifier.
pub(crate) struct EnvoyBackend;

impl EnvoyBackend {
    /// Whether the host registers `verify_signature`. An empty argument message parses
    /// but carries no key, so a host that has the function answers `BadArgument`.
    pub(crate) fn available() -> bool {
        host::call_foreign_function(VERIFY_SIGNATURE, &[]) != Err(NOT_FOUND)
    }
}

impl SignatureBackend for EnvoyBackend {
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        if signature.len() != key.public.size() {
            return Ok(false);
        }
        let args = encode_args(hash.name(), &key.spki_der, signature, message);
        match host::call_foreign_function(VERIFY_SIGNATURE, &args) {
            Ok(Some(out)) => {
                decode_result(&out).ok_or_else(|| BackendError("undecodable result".into()))
            }
            Ok(None) => Err(BackendError("empty result".into())),
            Err(e) => Err(BackendError(format!("host status {}", e.0))),
        }
    }

    fn verify_ecdsa(
        &self,
        key: &EcKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        let len = match key.curve {
            Curve::P256 => 32,
            Curve::P384 => 48,
        };
        let Some(der) = ecdsa_signature_der(signature, len) else {
            return Ok(false);
        };
        let args = encode_args(hash.name(), &key.spki_der, &der, message);
        match host::call_foreign_function(VERIFY_SIGNATURE, &args) {
            Ok(Some(out)) => {
                decode_result(&out).ok_or_else(|| BackendError("undecodable result".into()))
            }
            Ok(None) => Err(BackendError("empty result".into())),
            Err(e) => Err(BackendError(format!("host status {}", e.0))),
        }
    }

    fn name(&self) -> &'static str {
        "envoy"
    }
}
