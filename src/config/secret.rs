//! `providers[i].secret`: the HMAC key, read from the VM's environment (never from a file
//! or the configuration itself) and never printed.

use super::reader::Fields;
use crate::algorithm::{Algorithm, Hash};
use crate::error::{err, ConfigError};
use std::fmt;

/// The shortest secret accepted for an HMAC hash (RFC 7518 §3.2: at least the hash's
/// output): 32 bytes for HS256, 48 for HS384, 64 for HS512.
pub fn min_secret_bytes(hash: Hash) -> usize {
    match hash {
        Hash::Sha256 => 32,
        Hash::Sha384 => 48,
        Hash::Sha512 => 64,
    }
}

/// `secret` as written.
pub(super) struct RawSecret {
    env: String,
    encoding: SecretEncoding,
}

/// How the shared secret in the environment variable is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretEncoding {
    /// The variable's bytes are the key.
    #[default]
    Utf8,
    /// Standard base64 (with or without padding).
    Base64,
    /// base64url without padding, as in a JWK `k` member.
    Base64url,
}

const ENCODINGS: &[(&str, SecretEncoding)] = &[
    ("utf8", SecretEncoding::Utf8),
    ("base64", SecretEncoding::Base64),
    ("base64url", SecretEncoding::Base64url),
];

impl RawSecret {
    /// Reads `secret` of a provider, when present.
    pub(super) fn read(provider: &Fields) -> Result<Option<RawSecret>, ConfigError> {
        let Some(g) = provider.object("secret", &["env", "encoding"])? else {
            return Ok(None);
        };
        Ok(Some(RawSecret {
            env: g.string("env")?,
            encoding: g.choice_or("encoding", ENCODINGS, SecretEncoding::Utf8)?,
        }))
    }
}

/// Shared secret bytes; `Debug` never prints them.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Reads the secret from the VM environment and decodes it (`at` is the field's path);
/// it must be long enough for the longest hash of `algorithms` (the provider's HMAC ones).
pub(super) fn load(
    s: &RawSecret,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    algorithms: &[Algorithm],
) -> Result<Secret, ConfigError> {
    use base64::Engine;
    let Some(value) = env(&s.env) else {
        return err(
            format!("{at}.env"),
            format!("environment variable {} is not set (wasm: in the VM's environment_variables; native: in Envoy's environment)", s.env),
        );
    };
    let bytes = match s.encoding {
        SecretEncoding::Utf8 => value.into_bytes(),
        SecretEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(value.trim_end_matches('=').as_bytes())
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(value.as_bytes()))
            .map_err(|_| ConfigError {
                field: format!("{at}.encoding"),
                message: format!("{} is not valid base64", s.env),
            })?,
        SecretEncoding::Base64url => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.as_bytes())
            .map_err(|_| ConfigError {
                field: format!("{at}.encoding"),
                message: format!("{} is not valid base64url", s.env),
            })?,
    };
    // RFC 7518 §3.2: an HMAC key must be at least as long as the hash output.
    let needed = algorithms
        .iter()
        .filter(|a| a.is_hmac())
        .map(|a| (min_secret_bytes(a.hash()), a.name()))
        .max();
    if let Some((min, alg)) = needed.filter(|(min, _)| bytes.len() < *min) {
        return err(
            format!("{at}.env"),
            format!("{} must hold at least {min} bytes for {alg}", s.env),
        );
    }
    Ok(Secret(bytes))
}
