//! `providers[i].revocation`: where a provider's revocation list comes from (fetched like
//! a JWKS, once per process), how often, how large it may be, and what happens while it
//! has never loaded.

use super::jwks::{RETRY_MIN_MS, TIMEOUT_RANGE_MS};
use super::reader::Fields;
use crate::error::{err, ConfigError};
use crate::shared::FetchPolicy;

/// `refresh_s` when not given: a revoked token is refused within about this (plus a tick).
pub const DEFAULT_REFRESH_S: u64 = 15;
/// `timeout_ms` when not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// `max_bytes` when not given: about 14,000 `jti` entries of a UUID and an `exp`.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// The largest `max_bytes`.
pub const MAX_BYTES: usize = 16 << 20;
/// `max_entries` when not given.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// The largest `max_entries`.
pub const MAX_ENTRIES: usize = 1_000_000;
/// The longest retry delay after failed fetches (shorter when `refresh_s` is).
pub const RETRY_MAX_MS: u64 = 30_000;

/// The fields of a `revocation` object.
const KEYS: &[&str] = &[
    "cluster",
    "authority",
    "path",
    "refresh_s",
    "timeout_ms",
    "max_bytes",
    "max_entries",
    "on_unavailable",
];

/// What a request gets while a provider's list has never loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Wait for the first fetch (bounded by its timeout), then 500.
    Deny,
    /// Pass unchecked (counted, and logged at warn).
    Allow,
}

/// A revocation list behind an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSource {
    /// Envoy cluster name.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// Refresh, timeout and retry timing (ms).
    pub policy: FetchPolicy,
    /// Largest body accepted, bytes (a larger one is a failed fetch, never read).
    pub max_bytes: usize,
    /// Most entries kept; a longer list is a failed fetch.
    pub max_entries: usize,
    /// While the list has never loaded.
    pub on_unavailable: OnUnavailable,
    /// Fingerprint of the source (cluster, authority, path): providers and VMs naming
    /// the same source share one list.
    pub fingerprint: u64,
}

/// Reads and compiles `revocation` of a provider (`at` is the provider's path), when present.
pub(super) fn read(provider: &Fields, at: &str) -> Result<Option<RevocationSource>, ConfigError> {
    let Some(g) = provider.object("revocation", KEYS)? else {
        return Ok(None);
    };
    let at = format!("{at}.revocation");
    let cluster = g.string("cluster")?;
    let authority = g.string("authority")?;
    let path = g.string("path")?;
    let refresh_s = g.u64_or("refresh_s", DEFAULT_REFRESH_S)?;
    let timeout_ms = g.u64_or("timeout_ms", DEFAULT_TIMEOUT_MS)?;
    let max_bytes = g.usize_or("max_bytes", DEFAULT_MAX_BYTES)?;
    let max_entries = g.usize_or("max_entries", DEFAULT_MAX_ENTRIES)?;
    let on_unavailable = g.choice_or(
        "on_unavailable",
        &[
            ("deny", OnUnavailable::Deny),
            ("allow", OnUnavailable::Allow),
        ],
        OnUnavailable::Deny,
    )?;
    if cluster.is_empty() {
        return err(format!("{at}.cluster"), "must not be empty");
    }
    if authority.is_empty() {
        return err(format!("{at}.authority"), "must not be empty");
    }
    if !path.starts_with('/') {
        return err(format!("{at}.path"), "must start with '/'");
    }
    if refresh_s == 0 {
        return err(format!("{at}.refresh_s"), "must be positive");
    }
    if !TIMEOUT_RANGE_MS.contains(&timeout_ms) {
        return err(format!("{at}.timeout_ms"), "must be between 100 and 60000");
    }
    if !(1024..=MAX_BYTES).contains(&max_bytes) {
        return err(
            format!("{at}.max_bytes"),
            format!("must be between 1024 and {MAX_BYTES}"),
        );
    }
    if !(1..=MAX_ENTRIES).contains(&max_entries) {
        return err(
            format!("{at}.max_entries"),
            format!("must be between 1 and {MAX_ENTRIES}"),
        );
    }
    let refresh_ms = refresh_s.saturating_mul(1000);
    let fingerprint = crate::shared::fingerprint(&[
        b"revocation",
        cluster.as_bytes(),
        authority.as_bytes(),
        path.as_bytes(),
    ]);
    Ok(Some(RevocationSource {
        cluster,
        authority,
        path,
        policy: FetchPolicy {
            refresh_ms,
            timeout_ms,
            retry_min_ms: RETRY_MIN_MS,
            retry_max_ms: refresh_ms.clamp(RETRY_MIN_MS, RETRY_MAX_MS),
            // Nothing forces a refetch of a list: the refresh is its only schedule.
            refetch_min_interval_ms: refresh_ms,
        },
        max_bytes,
        max_entries,
        on_unavailable,
        fingerprint,
    }))
}
