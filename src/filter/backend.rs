//! Envoy's `verify_signature` foreign function (BoringSSL), the call behind the core's
//! [`crate::verify::host::EnvoyVerifier`] (RS256/384/512, ES256/384/512), detected once.

use super::host::{self, NOT_FOUND};
use crate::verify::host::VERIFY_SIGNATURE;
use crate::verify::BackendError;

/// Whether the host registers `verify_signature`. An empty argument message parses but
/// carries no key, so a host that has the function answers `BadArgument`.
pub(crate) fn available() -> bool {
    host::call_foreign_function(VERIFY_SIGNATURE, &[]) != Err(NOT_FOUND)
}

/// Calls `verify_signature` with encoded arguments.
pub(crate) fn call(args: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
    host::call_foreign_function(VERIFY_SIGNATURE, args)
        .map_err(|e| BackendError(format!("host status {}", e.0)))
}
