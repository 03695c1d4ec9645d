//! `providers[i].secret`: the HMAC key, read from the VM's environment (never from a file
//! or the configuration itself) and never printed.

use super::reader::Fields;
use crate::error::{err, ConfigError};
use std::fmt;

/// The shortest secret accepted (RFC 7518 §3.2: at least the hash output of HS256).
pub const MIN_SECRET_BYTES: usize = 32;

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

/// Reads the secret from the VM environment and decodes it (`at` is the field's path).
pub(super) fn load(
    s: &RawSecret,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Secret, ConfigError> {
    use base64::Engine;
    let Some(value) = env(&s.env) else {
        return err(
            format!("{at}.env"),
            format!("environment variable {} is not set in the VM", s.env),
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
    // RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
    if bytes.len() < MIN_SECRET_BYTES {
        return err(
            format!("{at}.env"),
            format!("{} must hold at least {MIN_SECRET_BYTES} bytes", s.env),
        );
    }
    Ok(Secret(bytes))
}
