//! `providers[i].jwks`: where a provider's public keys come from (a JWKS endpoint, or
//! OpenID Connect discovery), how often they are refreshed and how large they may be.

use super::reader::Fields;
use crate::error::{err, ConfigError};
use crate::shared::FetchPolicy;

/// `refresh_s` when not given: keys live 10 minutes, as in Envoy's `jwt_authn`.
pub const DEFAULT_REFRESH_S: u64 = 600;
/// `timeout_ms` when not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// `refetch_min_interval_s` when not given.
pub const DEFAULT_REFETCH_MIN_INTERVAL_S: u64 = 5;
/// `retry_max_s` when not given.
pub const DEFAULT_RETRY_MAX_S: u64 = 30;
/// First retry delay after a failed fetch (doubles per failure, up to `retry_max_s`).
pub const RETRY_MIN_MS: u64 = 1000;
/// Largest JWKS body accepted by default (bytes; `jwks.max_bytes` changes it). Real key
/// sets are a few KiB: 64 KiB holds about 90 JWKs of 4096-bit RSA keys.
pub const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;
/// Bounds of `timeout_ms` (also used by `account.timeout_ms`).
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=60_000;

/// The fields of a `jwks` object.
const KEYS: &[&str] = &[
    "cluster",
    "authority",
    "path",
    "refresh_s",
    "timeout_ms",
    "refetch_min_interval_s",
    "retry_max_s",
    "max_bytes",
    "discovery",
    "allowed_hosts",
    "inline",
];

/// `jwks` as written.
pub(super) struct RawJwks {
    discovery: bool,
    allowed_hosts: Option<Vec<String>>,
    cluster: String,
    authority: String,
    path: String,
    refresh_s: u64,
    timeout_ms: u64,
    refetch_min_interval_s: u64,
    retry_max_s: u64,
    pub(super) max_bytes: usize,
    /// `inline`: the JWKS itself (then nothing is fetched), with its path.
    pub(super) inline: Option<(serde_json::Value, String)>,
}

impl RawJwks {
    /// Reads `jwks` of a provider, when present.
    pub(super) fn read(provider: &Fields) -> Result<Option<RawJwks>, ConfigError> {
        let Some(g) = provider.object("jwks", KEYS)? else {
            return Ok(None);
        };
        if let Some(set) = g.get("inline") {
            // Keys given in the configuration: nothing to fetch, refresh or discover.
            if let Some(other) = KEYS
                .iter()
                .find(|k| !matches!(**k, "inline" | "max_bytes") && g.get(k).is_some())
            {
                return err(g.path(other), "not with inline keys: nothing is fetched");
            }
            return Ok(Some(RawJwks {
                discovery: false,
                allowed_hosts: None,
                cluster: String::new(),
                authority: String::new(),
                path: String::new(),
                refresh_s: DEFAULT_REFRESH_S,
                timeout_ms: DEFAULT_TIMEOUT_MS,
                refetch_min_interval_s: DEFAULT_REFETCH_MIN_INTERVAL_S,
                retry_max_s: DEFAULT_RETRY_MAX_S,
                max_bytes: g.usize_or("max_bytes", DEFAULT_MAX_JWKS_BYTES)?,
                inline: Some((set.clone(), g.path("inline"))),
            }));
        }
        let discovery = g.bool_or("discovery", false)?;
        Ok(Some(RawJwks {
            discovery,
            allowed_hosts: g.opt_strings("allowed_hosts")?,
            cluster: g.string("cluster")?,
            authority: g.string("authority")?,
            path: if discovery {
                g.string_or("path", "")?
            } else {
                g.string("path")?
            },
            refresh_s: g.u64_or("refresh_s", DEFAULT_REFRESH_S)?,
            timeout_ms: g.u64_or("timeout_ms", DEFAULT_TIMEOUT_MS)?,
            refetch_min_interval_s: g
                .u64_or("refetch_min_interval_s", DEFAULT_REFETCH_MIN_INTERVAL_S)?,
            retry_max_s: g.u64_or("retry_max_s", DEFAULT_RETRY_MAX_S)?,
            max_bytes: g.usize_or("max_bytes", DEFAULT_MAX_JWKS_BYTES)?,
            inline: None,
        }))
    }
}

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Compiles `jwks.inline`: every entry must be a usable public signing key (the rules of a
/// fetched set), and none may carry private members — unlike a fetched set, whose bad
/// entries are skipped, a problem here is the operator's and refuses the configuration.
pub(super) fn compile_inline(
    set: &serde_json::Value,
    at: &str,
    max_bytes: usize,
) -> Result<crate::keys::KeySet, ConfigError> {
    let Some(entries) = set.get("keys").and_then(serde_json::Value::as_array) else {
        return err(
            format!("{at}.keys"),
            "a JWKS: an object with a \"keys\" array",
        );
    };
    if entries.is_empty() {
        return err(format!("{at}.keys"), "must not be empty");
    }
    for (j, entry) in entries.iter().enumerate() {
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| entry.get(**m).is_some()) {
            return err(
                format!("{at}.keys[{j}].{m}"),
                "a private key member: give public keys only",
            );
        }
        let one = serde_json::json!({ "keys": [entry] }).to_string();
        if !matches!(
            crate::keys::KeySet::parse(one.as_bytes(), usize::MAX),
            Ok((_, 0))
        ) {
            return err(
                format!("{at}.keys[{j}]"),
                "not a usable public signing key (malformed, off its curve, or of a type bearer-guard does not verify)",
            );
        }
    }
    if !(1024..=1 << 20).contains(&max_bytes) {
        return err(
            at.replace(".inline", ".max_bytes"),
            "must be between 1024 and 1048576",
        );
    }
    let body = set.to_string();
    match crate::keys::KeySet::parse(body.as_bytes(), max_bytes) {
        Ok((keys, 0)) => Ok(keys),
        Ok((keys, skipped)) => err(
            format!("{at}.keys"),
            format!(
                "{} keys: at most {} are used, and inline every key must be",
                keys.len() + skipped,
                keys.len()
            ),
        ),
        Err(e) => err(at, format!("{e} (max_bytes {max_bytes})")),
    }
}

/// A JWKS endpoint behind an Envoy cluster.
#[derive(Debug, Clone)]
pub struct JwksSource {
    /// Envoy cluster name.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// Refresh, timeout, retry and refetch timing (ms), for the fetch state machine.
    pub policy: FetchPolicy,
    /// Largest JWKS body accepted, bytes (a larger one is a failed fetch, never read).
    pub max_bytes: usize,
    /// Fingerprint of the source (cluster, authority, path): VMs and configurations
    /// naming the same source share one key set.
    pub fingerprint: u64,
    /// OpenID Connect discovery: the keys' location comes from the issuer's configuration
    /// document (then `path` is empty).
    pub discovery: Option<Discovery>,
}

/// OpenID Connect discovery of a provider's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// The issuer the document must name.
    pub issuer: String,
    /// The document's path on the cluster: `{issuer path}/.well-known/openid-configuration`.
    pub path: String,
    /// Hosts `jwks_uri` may name (lower case).
    pub allowed_hosts: Vec<String>,
}

/// Compiles `jwks` (`at` is its path); `issuer` is the provider's, for discovery.
pub(super) fn compile(
    j: RawJwks,
    at: &str,
    issuer: Option<&str>,
) -> Result<JwksSource, ConfigError> {
    if j.cluster.is_empty() {
        return err(format!("{at}.cluster"), "must not be empty");
    }
    if j.authority.is_empty() {
        return err(format!("{at}.authority"), "must not be empty");
    }
    let discovery = if j.discovery {
        let Some(issuer) = issuer else {
            return err(format!("{at}.discovery"), "needs the provider's issuer");
        };
        // An issuer template has no one configuration document: its path is given (Entra:
        // `/common/v2.0/.well-known/openid-configuration`); otherwise it follows the issuer.
        let templated = issuer.contains('{');
        if templated && !j.path.starts_with('/') {
            return err(
                format!("{at}.path"),
                "discovery for an issuer template needs the document's path (e.g. /common/v2.0/.well-known/openid-configuration)",
            );
        }
        if !templated && !j.path.is_empty() {
            return err(
                format!("{at}.path"),
                "not with discovery: the keys' path comes from jwks_uri",
            );
        }
        let Some((_, after_scheme)) = issuer.split_once("://") else {
            return err(format!("{at}.discovery"), "the issuer is not a URL");
        };
        let issuer_path = after_scheme
            .find('/')
            .and_then(|i| after_scheme.get(i..))
            .unwrap_or("");
        let default_host = j
            .authority
            .rsplit_once(':')
            .map_or(j.authority.as_str(), |(h, _)| h);
        Some(Discovery {
            issuer: issuer.to_string(),
            path: if templated {
                j.path.clone()
            } else {
                format!(
                    "{}/.well-known/openid-configuration",
                    issuer_path.trim_end_matches('/')
                )
            },
            allowed_hosts: j
                .allowed_hosts
                .clone()
                .unwrap_or_else(|| vec![default_host.to_string()])
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        })
    } else {
        if j.allowed_hosts.is_some() {
            return err(format!("{at}.allowed_hosts"), "only with discovery");
        }
        if !j.path.starts_with('/') {
            return err(format!("{at}.path"), "must start with '/'");
        }
        None
    };
    if j.refresh_s == 0 {
        return err(format!("{at}.refresh_s"), "must be positive");
    }
    if !TIMEOUT_RANGE_MS.contains(&j.timeout_ms) {
        return err(format!("{at}.timeout_ms"), "must be between 100 and 60000");
    }
    if j.retry_max_s == 0 {
        return err(format!("{at}.retry_max_s"), "must be positive");
    }
    if !(1024..=1 << 20).contains(&j.max_bytes) {
        return err(
            format!("{at}.max_bytes"),
            "must be between 1024 and 1048576",
        );
    }
    let fingerprint = crate::shared::fingerprint(&[
        j.cluster.as_bytes(),
        j.authority.as_bytes(),
        j.path.as_bytes(),
        discovery.as_ref().map_or(&b""[..], |d| d.path.as_bytes()),
        discovery
            .as_ref()
            .map_or(String::new(), |d| d.allowed_hosts.join(","))
            .as_bytes(),
        // Two providers reading one document for different issuers must not share keys.
        discovery.as_ref().map_or(&b""[..], |d| d.issuer.as_bytes()),
    ]);
    Ok(JwksSource {
        discovery,
        fingerprint,
        cluster: j.cluster,
        authority: j.authority,
        path: j.path,
        policy: FetchPolicy {
            refresh_ms: j.refresh_s.saturating_mul(1000),
            timeout_ms: j.timeout_ms,
            retry_min_ms: RETRY_MIN_MS,
            retry_max_ms: j.retry_max_s.saturating_mul(1000),
            refetch_min_interval_ms: j.refetch_min_interval_s.saturating_mul(1000),
        },
        max_bytes: j.max_bytes,
    })
}
