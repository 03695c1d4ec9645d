//! `providers[i].introspection`: the authorization server's token introspection endpoint
//! (RFC 7662) behind an Envoy cluster, the client credentials the filter presents to it,
//! and how long its answers are kept.

use super::jwks::TIMEOUT_RANGE_MS;
use super::reader::Fields;
use super::secret::Secret;
use crate::error::{err, ConfigError};

/// `timeout_ms` when not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// `ttl_s` when not given: the longest an active answer is kept.
pub const DEFAULT_TTL_S: u64 = 60;
/// `negative_ttl_s` when not given: how long "not active" is kept.
pub const DEFAULT_NEGATIVE_TTL_S: u64 = 10;
/// `max_entries` when not given.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// `max_bytes` when not given: the largest answer read.
pub const DEFAULT_MAX_BYTES: usize = 65_536;
/// The range `max_bytes` may take.
pub const MAX_BYTES_RANGE: std::ops::RangeInclusive<usize> = 256..=4 * 1024 * 1024;

/// The fields of an `introspection` object.
const KEYS: &[&str] = &[
    "cluster",
    "authority",
    "path",
    "client_id",
    "client_secret",
    "auth",
    "timeout_ms",
    "ttl_s",
    "negative_ttl_s",
    "max_entries",
    "max_bytes",
];

/// How the filter authenticates to the introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

const AUTHS: &[(&str, ClientAuth)] = &[
    ("client_secret_basic", ClientAuth::ClientSecretBasic),
    ("client_secret_post", ClientAuth::ClientSecretPost),
];

/// `introspection` as written.
pub(super) struct RawIntrospection {
    cluster: String,
    authority: String,
    path: String,
    client_id: String,
    secret_env: String,
    auth: ClientAuth,
    timeout_ms: u64,
    ttl_s: u64,
    negative_ttl_s: u64,
    max_entries: usize,
    max_bytes: usize,
    at: String,
}

impl RawIntrospection {
    /// Reads `introspection` of a provider, when present.
    pub(super) fn read(provider: &Fields) -> Result<Option<RawIntrospection>, ConfigError> {
        let Some(g) = provider.object("introspection", KEYS)? else {
            return Ok(None);
        };
        let Some(secret) = g.object("client_secret", &["env"])? else {
            return err(g.path("client_secret"), "missing field");
        };
        Ok(Some(RawIntrospection {
            cluster: g.string("cluster")?,
            authority: g.string("authority")?,
            path: g.string("path")?,
            client_id: g.string("client_id")?,
            secret_env: secret.string("env")?,
            auth: g.choice_or("auth", AUTHS, ClientAuth::ClientSecretBasic)?,
            timeout_ms: g.u64_or("timeout_ms", DEFAULT_TIMEOUT_MS)?,
            ttl_s: g.u64_or("ttl_s", DEFAULT_TTL_S)?,
            negative_ttl_s: g.u64_or("negative_ttl_s", DEFAULT_NEGATIVE_TTL_S)?,
            max_entries: g.usize_or("max_entries", DEFAULT_MAX_ENTRIES)?,
            max_bytes: g.usize_or("max_bytes", DEFAULT_MAX_BYTES)?,
            at: provider.path("introspection"),
        }))
    }
}

/// An introspection endpoint behind an Envoy cluster.
#[derive(Debug, Clone)]
pub struct IntrospectionSource {
    /// Envoy cluster name.
    pub cluster: String,
    /// `:authority` of the call.
    pub authority: String,
    /// Path of the endpoint.
    pub path: String,
    /// The filter's client id at the authorization server.
    pub client_id: String,
    /// Its client secret (never logged).
    pub client_secret: Secret,
    /// How the client authenticates.
    pub auth: ClientAuth,
    /// Call timeout, ms.
    pub timeout_ms: u64,
    /// The longest an active answer is kept, ms (never past the answer's `exp`).
    pub ttl_ms: u64,
    /// How long "not active" is kept, ms.
    pub negative_ttl_ms: u64,
    /// Per-worker cache bound.
    pub max_entries: usize,
    /// The largest answer read; a larger announced size is refused unread.
    pub max_bytes: usize,
    /// Fingerprint of the endpoint, the client and the lifetimes: answers are shared
    /// between workers and configurations with the same one.
    pub fingerprint: u64,
}

/// Compiles `introspection`; the client secret is read from the environment.
pub(super) fn compile(
    i: RawIntrospection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IntrospectionSource, ConfigError> {
    let at = &i.at;
    for (field, value) in [
        ("cluster", &i.cluster),
        ("authority", &i.authority),
        ("client_id", &i.client_id),
    ] {
        if value.is_empty() {
            return err(format!("{at}.{field}"), "must not be empty");
        }
    }
    if !i.path.starts_with('/') || i.path.chars().any(|c| c.is_control() || c == ' ') {
        return err(format!("{at}.path"), "a path starting with '/'");
    }
    if !TIMEOUT_RANGE_MS.contains(&i.timeout_ms) {
        return err(format!("{at}.timeout_ms"), "must be between 100 and 60000");
    }
    if !MAX_BYTES_RANGE.contains(&i.max_bytes) {
        return err(
            format!("{at}.max_bytes"),
            format!(
                "must be between {} and {}",
                MAX_BYTES_RANGE.start(),
                MAX_BYTES_RANGE.end()
            ),
        );
    }
    let Some(secret) = env(&i.secret_env).filter(|s| !s.is_empty()) else {
        return err(
            format!("{at}.client_secret.env"),
            format!("environment variable {} is not set (wasm: in the VM's environment_variables; native: in Envoy's environment)", i.secret_env),
        );
    };
    let auth = match i.auth {
        ClientAuth::ClientSecretBasic => "basic",
        ClientAuth::ClientSecretPost => "post",
    };
    if i.max_entries == 0 {
        return err(format!("{at}.max_entries"), "at least 1");
    }
    // The lifetimes too: an answer kept under a longer ttl_s (another provider, or the
    // configuration before an operator shortened it) is never adopted under a shorter one.
    let fingerprint = crate::shared::fingerprint(&[
        i.cluster.as_bytes(),
        i.authority.as_bytes(),
        i.path.as_bytes(),
        i.client_id.as_bytes(),
        auth.as_bytes(),
        &i.ttl_s.to_le_bytes(),
        &i.negative_ttl_s.to_le_bytes(),
    ]);
    Ok(IntrospectionSource {
        cluster: i.cluster,
        authority: i.authority,
        path: i.path,
        client_id: i.client_id,
        client_secret: Secret(secret.into_bytes()),
        auth: i.auth,
        timeout_ms: i.timeout_ms,
        ttl_ms: i.ttl_s.saturating_mul(1000),
        negative_ttl_ms: i.negative_ttl_s.saturating_mul(1000),
        max_entries: i.max_entries,
        max_bytes: i.max_bytes,
        fingerprint,
    })
}
