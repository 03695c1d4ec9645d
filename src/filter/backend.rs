//! RS256 through Envoy's `verify_signature` foreign function (BoringSSL), detected once.

use crate::envoy_ffi::{decode_result, encode_args, VERIFY_SIGNATURE};
use crate::jwks::RsaKey;
use crate::verifier::{BackendError, RustBackend, SignatureBackend};
use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

/// Envoy's native verifier.
pub(crate) struct EnvoyBackend;

impl EnvoyBackend {
    /// Whether the host registers `verify_signature`. An empty argument message parses
    /// but carries no key, so a host that has the function answers `BadArgument`.
    pub(crate) fn available() -> bool {
        !matches!(
            hostcalls::call_foreign_function(VERIFY_SIGNATURE, Some(&[])),
            Err(Status::NotFound)
        )
    }
}

impl SignatureBackend for EnvoyBackend {
    fn verify_rs256(
        &self,
        key: &RsaKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        if signature.len() != key.public.size() {
            return Ok(false);
        }
        let args = encode_args("sha256", &key.spki_der, signature, message);
        match hostcalls::call_foreign_function(VERIFY_SIGNATURE, Some(&args)) {
            Ok(Some(out)) => {
                decode_result(&out).ok_or_else(|| BackendError("undecodable result".into()))
            }
            Ok(None) => Err(BackendError("empty result".into())),
            Err(status) => Err(BackendError(format!("host status {status:?}"))),
        }
    }

    fn name(&self) -> &'static str {
        "envoy"
    }
}

/// The backend chosen at configure time.
pub(crate) enum Backend {
    /// Envoy's BoringSSL.
    Envoy(EnvoyBackend),
    /// Pure Rust.
    Rust(RustBackend),
}

impl Backend {
    pub(crate) fn get(&self) -> &dyn SignatureBackend {
        match self {
            Backend::Envoy(b) => b,
            Backend::Rust(b) => b,
        }
    }
}
