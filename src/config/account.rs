//! `providers[i].account`: the account-resolution service a verified identity is looked
//! up in, and how long its answers are kept.

use super::forward::check_header_name;
use super::jwks::TIMEOUT_RANGE_MS;
use super::reader::Fields;
use crate::account::PathTemplate;
use crate::error::{err, ConfigError};
use std::collections::BTreeMap;

/// `timeout_ms` when not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// `ttl_s` when not given.
pub const DEFAULT_TTL_S: u64 = 300;
/// `negative_ttl_s` when not given.
pub const DEFAULT_NEGATIVE_TTL_S: u64 = 30;
/// `max_entries` when not given.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The fields of an `account` object.
const KEYS: &[&str] = &[
    "cluster",
    "authority",
    "path",
    "timeout_ms",
    "ttl_s",
    "negative_ttl_s",
    "max_entries",
    "headers",
];

/// `account` as written.
pub(super) struct RawAccount {
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: u64,
    ttl_s: u64,
    negative_ttl_s: u64,
    max_entries: usize,
    headers: BTreeMap<String, String>,
}

impl RawAccount {
    /// Reads `account` of a provider, when present.
    pub(super) fn read(provider: &Fields) -> Result<Option<RawAccount>, ConfigError> {
        let Some(g) = provider.object("account", KEYS)? else {
            return Ok(None);
        };
        Ok(Some(RawAccount {
            cluster: g.string("cluster")?,
            authority: g.string("authority")?,
            path: g.string("path")?,
            timeout_ms: g.u64_or("timeout_ms", DEFAULT_TIMEOUT_MS)?,
            ttl_s: g.u64_or("ttl_s", DEFAULT_TTL_S)?,
            negative_ttl_s: g.u64_or("negative_ttl_s", DEFAULT_NEGATIVE_TTL_S)?,
            max_entries: g.usize_or("max_entries", DEFAULT_MAX_ENTRIES)?,
            headers: g.string_map("headers")?,
        }))
    }
}

/// An account-resolution service behind an Envoy cluster.
#[derive(Debug, Clone)]
pub struct AccountSource {
    /// Envoy cluster name.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// Path template filled from verified claims (values percent-encoded).
    pub path: PathTemplate,
    /// Call timeout, ms.
    pub timeout_ms: u64,
    /// How long a found account is cached, ms.
    pub ttl_ms: u64,
    /// How long "no such account" is cached, ms.
    pub negative_ttl_ms: u64,
    /// Cache bound.
    pub max_entries: usize,
    /// Header → field of the account JSON, forwarded upstream.
    pub headers: Vec<(String, String)>,
    /// Fingerprint of the service and path template: lookups with the same one are shared.
    pub fingerprint: u64,
}

/// Compiles `account` (`at` is its path).
pub(super) fn compile(a: RawAccount, at: &str) -> Result<AccountSource, ConfigError> {
    if a.cluster.is_empty() {
        return err(format!("{at}.cluster"), "must not be empty");
    }
    if a.authority.is_empty() {
        return err(format!("{at}.authority"), "must not be empty");
    }
    let path = PathTemplate::compile(&a.path, &format!("{at}.path"))?;
    let fingerprint = crate::shared::fingerprint(&[
        a.cluster.as_bytes(),
        a.authority.as_bytes(),
        a.path.as_bytes(),
    ]);
    if !TIMEOUT_RANGE_MS.contains(&a.timeout_ms) {
        return err(format!("{at}.timeout_ms"), "must be between 100 and 60000");
    }
    let mut headers = Vec::new();
    for (header, field) in a.headers {
        let hat = format!("{at}.headers.{header}");
        check_header_name(&header, &hat)?;
        if field.is_empty() {
            return err(hat, "field name must not be empty");
        }
        headers.push((header, field));
    }
    Ok(AccountSource {
        cluster: a.cluster,
        authority: a.authority,
        path,
        timeout_ms: a.timeout_ms,
        ttl_ms: a.ttl_s.saturating_mul(1000),
        negative_ttl_ms: a.negative_ttl_s.saturating_mul(1000),
        max_entries: a.max_entries,
        headers,
        fingerprint,
    })
}
