//! A JWKS fetch's answer, read into typed keys.

use super::jwk::KeySet;
use crate::shared::FetchError;

/// Interprets a JWKS fetch: `status` is the response's `:status` (`None`: no response),
/// `body_size` its announced size, and `read_body` reads it — called only when the size
/// is within `max_bytes`, so an oversized body is never copied into the VM.
pub fn interpret_fetch(
    status: Option<&str>,
    body_size: usize,
    max_bytes: usize,
    read_body: impl FnOnce() -> Vec<u8>,
) -> Result<(KeySet, usize, Vec<u8>), FetchError> {
    let body =
        crate::shared::fetched_body(status, body_size, (max_bytes, "jwks.max_bytes"), read_body)?;
    let (keys, skipped) =
        KeySet::parse(&body, max_bytes).map_err(|e| FetchError::Invalid(e.to_string()))?;
    Ok((keys, skipped, body))
}
