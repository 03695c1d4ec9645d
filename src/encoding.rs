//! Strict base64url (RFC 4648 §5, no padding, canonical): how JWS parts and JWK members
//! are encoded.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Decodes canonical unpadded base64url: no padding, whitespace or non-zero trailing bits.
pub fn b64url(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}
