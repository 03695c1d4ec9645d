//! `forward`: the identity headers the upstream receives, set from verified claims.

use super::reader::{claim_path, Fields};
use crate::error::{err, ConfigError};
use std::collections::BTreeMap;

#[derive(Default)]
/// `forward` as written.
pub(super) struct RawForward {
    headers: BTreeMap<String, String>,
    payload_header: Option<String>,
    strip_authorization: bool,
}

impl RawForward {
    /// Reads `forward` of the top level (absent: nothing forwarded).
    pub(super) fn read(top: &Fields) -> Result<RawForward, ConfigError> {
        let keys = ["headers", "payload_header", "strip_authorization"];
        Ok(match top.object("forward", &keys)? {
            Some(g) => RawForward {
                headers: g.string_map("headers")?,
                payload_header: g.opt_string("payload_header")?,
                strip_authorization: g.bool_or("strip_authorization", false)?,
            },
            None => RawForward::default(),
        })
    }
}

pub use crate::authz::identity::Forward;

/// Compiles `forward`.
pub(super) fn compile(f: RawForward) -> Result<Forward, ConfigError> {
    let mut headers = Vec::new();
    for (header, claim) in f.headers {
        let at = format!("forward.headers.{header}");
        check_header_name(&header, &at)?;
        headers.push((header, claim_path(&claim, &at)?));
    }
    if let Some(h) = &f.payload_header {
        check_header_name(h, "forward.payload_header")?;
        if headers.iter().any(|(name, _)| name == h) {
            return err("forward.payload_header", "also used in forward.headers");
        }
    }
    Ok(Forward {
        headers,
        payload_header: f.payload_header,
        strip_authorization: f.strip_authorization,
    })
}

/// A header the filter may set: lower case, and not one Envoy or HTTP owns.
pub(super) fn check_header_name(name: &str, at: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return err(at, format!("{name:?} is not a lower-case header name"));
    }
    if matches!(
        name,
        "authorization" | "host" | "content-length" | "transfer-encoding"
    ) {
        return err(at, format!("{name:?} cannot be set by the filter"));
    }
    Ok(())
}
