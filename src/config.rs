//! The plugin configuration: parsed strictly from JSON and compiled once in `on_configure`.
//!
//! Unknown fields, bad values and dangling references are errors that name the field
//! (e.g. `providers[0].jwks.cluster`); they are logged by the filter and never reach a client.

use crate::account::PathTemplate;
use crate::authorizer::{
    ClaimNames, HeaderFormat, Membership, RequestValue, Requirement, Template,
};
use crate::credential::TokenSource;
use crate::crypto::{Algorithm, ALGORITHMS};
use crate::error::err;
pub use crate::error::ConfigError;
use crate::matcher::{Matcher, RawMatch};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Whether denials are enforced or only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A denial answers the request (401, 403, 400, 500).
    #[default]
    Enforce,
    /// A denial is logged and counted (`would_deny.<reason>`) and the request continues:
    /// for rolling out rules on traffic that already flows.
    Audit,
}

/// Whether a rule needs a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authentication {
    /// Every request needs a valid token.
    #[default]
    Required,
    /// A request without `Authorization` passes without identity; one with a credential
    /// must be valid and meet the rule's requirements.
    Optional,
}

/// Which RSA signature backend the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifierChoice {
    /// Envoy's `verify_signature` foreign function when the host has it, else pure Rust.
    #[default]
    Auto,
    /// Always Envoy's foreign function; configuration fails where the host lacks it.
    Envoy,
    /// Always the built-in pure-Rust verifier (`rsa_public`).
    Rust,
}

/// What happens to a request that matches no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultPolicy {
    /// A valid token is required, nothing more.
    #[default]
    Authenticated,
    /// The request is refused with 403 `Not enough permissions`.
    Deny,
}

// ---------------------------------------------------------------- raw shape, as written

/// Reads one JSON object of the configuration: its keys are checked against the known
/// ones first (an unknown key is an error, usually a typo worth naming before anything
/// else), then typed getters whose errors name the field. Hand-written rather than
/// `serde` derive: the derive code for these types was ~60 KB of the module, this is a few.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    fn of(value: &'a Value, at: &str, known: &[&str]) -> Result<Fields<'a>, ConfigError> {
        let Value::Object(map) = value else {
            return err(display_path(at), "expected an object");
        };
        let f = Fields {
            map,
            at: at.to_string(),
        };
        match map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => err(
                f.path(unknown),
                format!("unknown field; expected one of {}", known.join(", ")),
            ),
            None => Ok(f),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// The value of `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &'static str) -> Result<&'a Value, ConfigError> {
        match self.get(key) {
            Some(v) => Ok(v),
            None => err(self.path(key), "missing field"),
        }
    }

    fn string(&self, key: &'static str) -> Result<String, ConfigError> {
        let v = self.required(key)?;
        as_string(v, &self.path(key))
    }

    fn opt_string(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            Some(v) => as_string(v, &self.path(key)).map(Some),
            None => Ok(None),
        }
    }

    fn string_or(&self, key: &'static str, default: &str) -> Result<String, ConfigError> {
        Ok(self.opt_string(key)?.unwrap_or_else(|| default.to_string()))
    }

    fn u64_or(&self, key: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(key) {
            Some(v) => v.as_u64().map_or_else(
                || err(self.path(key), "expected a non-negative integer"),
                Ok,
            ),
            None => Ok(default),
        }
    }

    fn usize_or(&self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        let v = self.u64_or(key, default as u64)?;
        usize::try_from(v).map_or_else(|_| err(self.path(key), "too large"), Ok)
    }

    fn bool_or(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => err(self.path(key), "expected true or false"),
            None => Ok(default),
        }
    }

    /// An array's items with their paths (`key[i]`); absent is empty.
    fn items(&self, key: &'static str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
        match self.get(key) {
            Some(v) => items(v, &self.path(key)),
            None => Ok(Vec::new()),
        }
    }

    /// Like [`Fields::items`], but the array must be there.
    fn required_items(&self, key: &'static str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
        items(self.required(key)?, &self.path(key))
    }

    fn strings(&self, key: &'static str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            Some(v) => strings(v, &self.path(key)),
            None => Ok(Vec::new()),
        }
    }

    fn opt_strings(&self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        self.strings(key).map(Some)
    }

    /// An object's members with their paths (`key.member`); absent is empty.
    fn members(&self, key: &'static str) -> Result<Vec<(String, String, &'a Value)>, ConfigError> {
        let at = self.path(key);
        match self.get(key) {
            Some(Value::Object(map)) => Ok(map
                .iter()
                .map(|(k, v)| (k.clone(), format!("{at}.{k}"), v))
                .collect()),
            Some(_) => err(at, "expected an object"),
            None => Ok(Vec::new()),
        }
    }

    fn string_map(&self, key: &'static str) -> Result<BTreeMap<String, String>, ConfigError> {
        self.members(key)?
            .into_iter()
            .map(|(k, at, v)| Ok((k, as_string(v, &at)?)))
            .collect()
    }

    /// A nested object with these keys, when present.
    fn object(&self, key: &'static str, known: &[&str]) -> Result<Option<Fields<'a>>, ConfigError> {
        let at = self.path(key);
        self.get(key).map(|v| Fields::of(v, &at, known)).transpose()
    }

    fn choice_or<T: Copy>(
        &self,
        key: &'static str,
        options: &[(&str, T)],
        default: T,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            Some(v) => choose(v, options, &self.path(key)),
            None => Ok(default),
        }
    }
}

fn display_path(at: &str) -> String {
    if at.is_empty() {
        "(root)".to_string()
    } else {
        at.to_string()
    }
}

fn items<'a>(v: &'a Value, at: &str) -> Result<Vec<(String, &'a Value)>, ConfigError> {
    match v {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{at}[{i}]"), v))
            .collect()),
        _ => err(at, "expected an array"),
    }
}

fn strings(v: &Value, at: &str) -> Result<Vec<String>, ConfigError> {
    items(v, at)?
        .into_iter()
        .map(|(at, v)| as_string(v, &at))
        .collect()
}

fn as_string(v: &Value, at: &str) -> Result<String, ConfigError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => err(at, "expected a string"),
    }
}

fn choose<T: Copy>(v: &Value, options: &[(&str, T)], at: &str) -> Result<T, ConfigError> {
    let name = v.as_str().unwrap_or_default();
    match options.iter().find(|(n, _)| *n == name) {
        Some((_, t)) => Ok(*t),
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
            err(at, format!("expected one of {}", names.join(", ")))
        }
    }
}

struct RawConfig {
    providers: Vec<RawProvider>,
    clock_skew_s: u64,
    max_token_bytes: usize,
    roles: BTreeMap<String, Vec<String>>,
    forward: RawForward,
    rules: Vec<RawRule>,
    default: DefaultPolicy,
    verifier: VerifierChoice,
    token_cache_entries: usize,
    shared: SharedSlots,
    mode: Mode,
    access_log_fields: bool,
}

const MODES: &[(&str, Mode)] = &[("enforce", Mode::Enforce), ("audit", Mode::Audit)];

impl RawConfig {
    fn read(value: &Value) -> Result<RawConfig, ConfigError> {
        let f = Fields::of(
            value,
            "",
            &[
                "providers",
                "clock_skew_s",
                "max_token_bytes",
                "roles",
                "forward",
                "rules",
                "default",
                "verifier",
                "token_cache",
                "shared",
                "mode",
                "access_log_fields",
            ],
        )?;
        let providers = f
            .required_items("providers")?
            .into_iter()
            .map(|(at, v)| RawProvider::read(v, &at))
            .collect::<Result<_, _>>()?;
        let clock_skew_s = f.u64_or("clock_skew_s", 60)?;
        let max_token_bytes = f.usize_or("max_token_bytes", 8192)?;
        let roles = f
            .members("roles")?
            .into_iter()
            .map(|(role, at, v)| Ok((role, strings(v, &at)?)))
            .collect::<Result<_, _>>()?;
        let forward = match f.object(
            "forward",
            &["headers", "payload_header", "strip_authorization"],
        )? {
            Some(g) => RawForward {
                headers: g.string_map("headers")?,
                payload_header: g.opt_string("payload_header")?,
                strip_authorization: g.bool_or("strip_authorization", false)?,
            },
            None => RawForward::default(),
        };
        let rules = f
            .items("rules")?
            .into_iter()
            .map(|(at, v)| RawRule::read(v, &at))
            .collect::<Result<_, _>>()?;
        let default = f.choice_or(
            "default",
            &[
                ("authenticated", DefaultPolicy::Authenticated),
                ("deny", DefaultPolicy::Deny),
            ],
            DefaultPolicy::Authenticated,
        )?;
        let verifier = f.choice_or(
            "verifier",
            &[
                ("auto", VerifierChoice::Auto),
                ("envoy", VerifierChoice::Envoy),
                ("rust", VerifierChoice::Rust),
            ],
            VerifierChoice::Auto,
        )?;
        let token_cache_entries = match f.object("token_cache", &["max_entries"])? {
            Some(g) => g.usize_or("max_entries", 4096)?,
            None => 4096,
        };
        let defaults = SharedSlots::default();
        let shared = match f.object("shared", &["token_slots", "account_slots"])? {
            Some(g) => SharedSlots {
                tokens: g.usize_or("token_slots", defaults.tokens)?,
                accounts: g.usize_or("account_slots", defaults.accounts)?,
            },
            None => defaults,
        };
        Ok(RawConfig {
            providers,
            clock_skew_s,
            max_token_bytes,
            roles,
            forward,
            rules,
            default,
            verifier,
            token_cache_entries,
            shared,
            mode: f.choice_or("mode", MODES, Mode::Enforce)?,
            access_log_fields: f.bool_or("access_log_fields", false)?,
        })
    }
}

struct RawProvider {
    name: String,
    issuer: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    jwks: Option<RawJwks>,
    secret: Option<RawSecret>,
    required_claims: Vec<String>,
    claims: ClaimNames,
    account: Option<RawAccount>,
    token: TokenSource,
    strip_token: bool,
}

impl RawProvider {
    fn read(value: &Value, at: &str) -> Result<RawProvider, ConfigError> {
        let f = Fields::of(
            value,
            at,
            &[
                "name",
                "issuer",
                "audiences",
                "algorithms",
                "jwks",
                "secret",
                "identity",
                "claims",
                "account",
                "token",
            ],
        )?;
        let name = f.string("name")?;
        let issuer = f.opt_string("issuer")?;
        let audiences = f.strings("audiences")?;
        let algorithms = f
            .required_items("algorithms")?
            .into_iter()
            .map(|(at, v)| choose(v, &ALGORITHMS, &at))
            .collect::<Result<_, _>>()?;
        let jwks = match f.object(
            "jwks",
            &[
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
            ],
        )? {
            Some(g) => Some(RawJwks {
                discovery: g.bool_or("discovery", false)?,
                allowed_hosts: g.opt_strings("allowed_hosts")?,
                cluster: g.string("cluster")?,
                authority: g.string("authority")?,
                path: if g.bool_or("discovery", false)? {
                    g.string_or("path", "")?
                } else {
                    g.string("path")?
                },
                refresh_s: g.u64_or("refresh_s", 600)?,
                timeout_ms: g.u64_or("timeout_ms", 2000)?,
                refetch_min_interval_s: g.u64_or("refetch_min_interval_s", 5)?,
                retry_max_s: g.u64_or("retry_max_s", 30)?,
                max_bytes: g.usize_or("max_bytes", crate::jwks::DEFAULT_MAX_JWKS_BYTES)?,
            }),
            None => None,
        };
        let secret = match f.object("secret", &["env", "encoding"])? {
            Some(g) => Some(RawSecret {
                env: g.string("env")?,
                encoding: g.choice_or(
                    "encoding",
                    &[
                        ("utf8", SecretEncoding::Utf8),
                        ("base64", SecretEncoding::Base64),
                        ("base64url", SecretEncoding::Base64url),
                    ],
                    SecretEncoding::Utf8,
                )?,
            }),
            None => None,
        };
        let required_claims = match f.object("identity", &["required_claims"])? {
            Some(g) => g.strings("required_claims")?,
            None => Vec::new(),
        };
        let claims = match f.object("claims", &["permissions", "role", "scope"])? {
            Some(g) => ClaimNames {
                permissions: g.string_or("permissions", "permissions")?,
                role: g.string_or("role", "role")?,
                scope: g.string_or("scope", "scope")?,
            },
            None => ClaimNames::default(),
        };
        let account = match f.object(
            "account",
            &[
                "cluster",
                "authority",
                "path",
                "timeout_ms",
                "ttl_s",
                "negative_ttl_s",
                "max_entries",
                "headers",
            ],
        )? {
            Some(g) => Some(RawAccount {
                cluster: g.string("cluster")?,
                authority: g.string("authority")?,
                path: g.string("path")?,
                timeout_ms: g.u64_or("timeout_ms", 1000)?,
                ttl_s: g.u64_or("ttl_s", 300)?,
                negative_ttl_s: g.u64_or("negative_ttl_s", 30)?,
                max_entries: g.usize_or("max_entries", 10_000)?,
                headers: g.string_map("headers")?,
            }),
            None => None,
        };
        let (token, strip_token) = match f
            .object("token", &["header", "prefix", "cookie", "query", "strip"])?
        {
            None => (TokenSource::Authorization, false),
            Some(g) => {
                let source = match (
                    g.opt_string("header")?,
                    g.opt_string("cookie")?,
                    g.opt_string("query")?,
                ) {
                    (None, None, None) => TokenSource::Authorization,
                    (Some(h), None, None) => TokenSource::Header {
                        name: h.to_ascii_lowercase(),
                        prefix: g.string_or("prefix", "")?,
                    },
                    (None, Some(c), None) => TokenSource::Cookie(c),
                    (None, None, Some(q)) => TokenSource::Query(q),
                    _ => return err(g.path("header"), "at most one of header, cookie and query"),
                };
                let named = |v: &str, key: &str| {
                    if v.is_empty() || v.contains(['=', ';', ',', '&', ' ']) {
                        err(g.path(key), "not a usable name")
                    } else {
                        Ok(())
                    }
                };
                match &source {
                    TokenSource::Header { name, .. } => named(name, "header")?,
                    TokenSource::Cookie(c) => named(c, "cookie")?,
                    TokenSource::Query(q) => named(q, "query")?,
                    TokenSource::Authorization => {}
                }
                if g.get("prefix").is_some() && !matches!(source, TokenSource::Header { .. }) {
                    return err(g.path("prefix"), "only with header");
                }
                (source, g.bool_or("strip", false)?)
            }
        };
        Ok(RawProvider {
            token,
            strip_token,
            name,
            issuer,
            audiences,
            algorithms,
            jwks,
            secret,
            required_claims,
            claims,
            account,
        })
    }
}

struct RawAccount {
    cluster: String,
    authority: String,
    path: String,
    timeout_ms: u64,
    ttl_s: u64,
    negative_ttl_s: u64,
    max_entries: usize,
    headers: BTreeMap<String, String>,
}

struct RawJwks {
    discovery: bool,
    allowed_hosts: Option<Vec<String>>,
    cluster: String,
    authority: String,
    path: String,
    refresh_s: u64,
    timeout_ms: u64,
    refetch_min_interval_s: u64,
    retry_max_s: u64,
    max_bytes: usize,
}

struct RawSecret {
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

#[derive(Default)]
struct RawForward {
    headers: BTreeMap<String, String>,
    payload_header: Option<String>,
    strip_authorization: bool,
}

struct RawRule {
    name: Option<String>,
    matcher: RawMatch,
    public: bool,
    providers: Option<Vec<String>>,
    permissions: Vec<String>,
    all_of: Vec<String>,
    any_of: Vec<String>,
    member_of: Option<RawMemberOf>,
    headers: Vec<(String, String, HeaderFormat)>,
    mode: Option<Mode>,
    authentication: Authentication,
}

impl RawRule {
    fn read(value: &Value, at: &str) -> Result<RawRule, ConfigError> {
        let f = Fields::of(
            value,
            at,
            &[
                "name",
                "match",
                "public",
                "providers",
                "permissions",
                "all_of",
                "any_of",
                "member_of",
                "headers",
                "mode",
                "authentication",
            ],
        )?;
        let name = f.opt_string("name")?;
        let Some(m) = f.object("match", MATCH_KEYS)? else {
            return err(f.path("match"), "missing field");
        };
        let matcher = RawMatch {
            methods: m.strings("methods")?,
            path: m.opt_string("path")?,
            prefix: m.opt_string("prefix")?,
            template: m.opt_string("template")?,
            host: m.opt_string("host")?,
            route: m.opt_string("route")?,
        };
        let public = f.bool_or("public", false)?;
        let providers = f.opt_strings("providers")?;
        let permissions = f.strings("permissions")?;
        let all_of = f.strings("all_of")?;
        let any_of = f.strings("any_of")?;
        let member_of = match f.object("member_of", &["query", "header", "path", "claim"])? {
            Some(g) => Some(RawMemberOf {
                query: g.opt_string("query")?,
                header: g.opt_string("header")?,
                path: g.opt_string("path")?,
                claim: g.string("claim")?,
            }),
            None => None,
        };
        let formats = [
            ("present", HeaderFormat::Present),
            ("uuid", HeaderFormat::Uuid),
            ("uuidv7", HeaderFormat::Uuidv7),
        ];
        let headers = f
            .members("headers")?
            .into_iter()
            .map(|(name, at, v)| Ok((name, at.clone(), choose(v, &formats, &at)?)))
            .collect::<Result<_, _>>()?;
        let mode = match f.get("mode") {
            Some(v) => Some(choose(v, MODES, &f.path("mode"))?),
            None => None,
        };
        let authentication = f.choice_or(
            "authentication",
            &[
                ("required", Authentication::Required),
                ("optional", Authentication::Optional),
            ],
            Authentication::Required,
        )?;
        Ok(RawRule {
            name,
            matcher,
            public,
            providers,
            permissions,
            all_of,
            any_of,
            member_of,
            headers,
            mode,
            authentication,
        })
    }
}

const MATCH_KEYS: &[&str] = &["methods", "path", "prefix", "template", "host", "route"];

struct RawMemberOf {
    query: Option<String>,
    header: Option<String>,
    path: Option<String>,
    claim: String,
}

// ---------------------------------------------------------------- compiled shape

/// The compiled configuration the pipeline runs on.
#[derive(Debug)]
pub struct Config {
    /// Token providers, in configuration order.
    pub providers: Vec<Provider>,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub clock_skew_s: i64,
    /// Tokens longer than this are rejected before any parsing.
    pub max_token_bytes: usize,
    /// Role name → permissions it grants.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Identity headers sent upstream.
    pub forward: Forward,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
    /// Policy for requests matching no rule.
    pub default: DefaultPolicy,
    /// RSA signature backend choice.
    pub verifier: VerifierChoice,
    /// Verified-token cache size (0 disables it).
    pub token_cache_entries: usize,
    /// Slots of the process-wide second levels.
    pub shared: SharedSlots,
    /// Enforce or audit, for requests matching no rule and rules that do not say.
    pub mode: Mode,
    /// Record each decision as filter state for access logs.
    pub access_log_fields: bool,
    /// Some rule matches on the host (computed).
    pub needs_host: bool,
    /// Some rule matches on Envoy's route name (computed).
    pub needs_route_name: bool,
}

/// Slots of the process-wide second levels behind each VM's caches (0 turns one off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSlots {
    /// Verified-token verdicts (about 150 bytes of Envoy memory each).
    pub tokens: usize,
    /// Account lookups (about 150 bytes each, plus the account's JSON).
    pub accounts: usize,
}

impl Default for SharedSlots {
    fn default() -> Self {
        SharedSlots {
            tokens: 8192,
            accounts: 4096,
        }
    }
}

/// One token provider.
#[derive(Debug)]
pub struct Provider {
    /// Unique name (used in logs, metrics and rule references).
    pub name: String,
    /// Required `iss`, also used to select the provider for a token.
    pub issuer: Option<String>,
    /// Accepted `aud` values; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Algorithms this provider accepts.
    pub algorithms: Vec<Algorithm>,
    /// Where RS256 keys come from.
    pub jwks: Option<JwksSource>,
    /// HS256 shared secret (never logged).
    pub secret: Option<Secret>,
    /// Claims a verified token must carry.
    pub required_claims: Vec<String>,
    /// Which claims carry permissions, role and scopes.
    pub claims: ClaimNames,
    /// Account resolution, when configured.
    pub account: Option<AccountSource>,
    /// Where its tokens come from.
    pub token: TokenSource,
    /// Remove the credential before the upstream.
    pub strip_token: bool,
    /// Fingerprint of everything that decides whether this provider accepts a token
    /// (algorithms, issuer, audiences, key source or secret, clock skew, size limit): a
    /// verdict shared between VMs counts only for a provider with the same fingerprint.
    pub fingerprint: u64,
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

/// A JWKS endpoint behind an Envoy cluster.
#[derive(Debug, Clone)]
pub struct JwksSource {
    /// Envoy cluster name.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// `:path` of the fetch.
    pub path: String,
    /// Refresh interval, ms.
    pub refresh_ms: u64,
    /// Fetch timeout, ms.
    pub timeout_ms: u64,
    /// Minimum interval between unknown-`kid` refetches, ms.
    pub refetch_min_interval_ms: u64,
    /// Cap of the retry backoff after failures, ms.
    pub retry_max_ms: u64,
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

/// Shared secret bytes; `Debug` never prints them.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Identity forwarding settings.
#[derive(Debug, Default, Clone)]
pub struct Forward {
    /// Header name → claim name.
    pub headers: Vec<(String, String)>,
    /// Header that carries the verified payload, base64url.
    pub payload_header: Option<String>,
    /// Remove `Authorization` before the upstream.
    pub strip_authorization: bool,
}

impl Config {
    /// A provider's name for logs (empty if the index is out of range).
    pub fn provider_name(&self, provider: usize) -> &str {
        self.providers.get(provider).map_or("", |p| p.name.as_str())
    }

    /// A rule's name for logs; `(default)` when no rule matched.
    pub fn rule_name(&self, rule: Option<usize>) -> &str {
        rule.and_then(|i| self.rules.get(i))
            .map_or("(default)", |r| r.name.as_str())
    }

    /// Every header the filter may set: client-sent copies are always removed.
    pub fn owned_headers(&self) -> impl Iterator<Item = &str> {
        let accounts = self
            .providers
            .iter()
            .filter_map(|p| p.account.as_ref())
            .flat_map(|a| a.headers.iter().map(|(h, _)| h.as_str()));
        self.forward
            .headers
            .iter()
            .map(|(h, _)| h.as_str())
            .chain(self.forward.payload_header.as_deref())
            .chain(accounts)
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Position in `rules`.
    pub index: usize,
    /// Name for logs (defaults to `rules[i]`).
    pub name: String,
    /// What requests it applies to.
    pub matcher: Matcher,
    /// Public rules skip every check.
    pub public: bool,
    /// Providers allowed on this rule (indices); `None` means all.
    pub providers: Option<Vec<usize>>,
    /// Permission requirements.
    pub requirement: Requirement,
    /// Domain constraint.
    pub member_of: Option<Membership>,
    /// Header preconditions: (lower-case name, name as written, format).
    pub headers: Vec<(String, String, HeaderFormat)>,
    /// Enforce or audit (the rule's own `mode`, else the configuration's).
    pub mode: Mode,
    /// Whether a request needs a credential.
    pub authentication: Authentication,
}

/// Parses and compiles the plugin configuration. `env` reads the VM's environment.
pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // Duplicate keys are refused at any depth, as in tokens: two readers of one document
    // must not disagree on what it says.
    let Some(map) = crate::strict_json::parse_object(bytes) else {
        let message = match serde_json::from_slice::<Value>(bytes) {
            Err(e) => e.to_string(),
            Ok(Value::Object(_)) => "duplicate key".to_string(),
            Ok(_) => "expected an object".to_string(),
        };
        return err("(root)", message);
    };
    compile(RawConfig::read(&Value::Object(map))?, env)
}

fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if raw.providers.is_empty() {
        return err("providers", "at least one provider is required");
    }
    let mut providers = Vec::new();
    let mut names = BTreeSet::new();
    for (i, p) in raw.providers.into_iter().enumerate() {
        let at = format!("providers[{i}]");
        if p.name.is_empty() {
            return err(format!("{at}.name"), "must not be empty");
        }
        if !names.insert(p.name.clone()) {
            return err(
                format!("{at}.name"),
                format!("duplicate provider name {:?}", p.name),
            );
        }
        providers.push(compile_provider(p, &at, env)?);
    }
    if raw.clock_skew_s > 3600 {
        return err("clock_skew_s", "must be at most 3600");
    }
    if !(256..=65536).contains(&raw.max_token_bytes) {
        return err("max_token_bytes", "must be between 256 and 65536");
    }
    for (name, slots) in [
        ("shared.token_slots", raw.shared.tokens),
        ("shared.account_slots", raw.shared.accounts),
    ] {
        if slots > 1 << 20 {
            return err(name, "must be at most 1048576");
        }
    }
    // What every provider's verdicts also depend on.
    for p in &mut providers {
        p.fingerprint = crate::shared::fingerprint(&[
            &p.fingerprint.to_le_bytes(),
            &raw.clock_skew_s.to_le_bytes(),
            &(raw.max_token_bytes as u64).to_le_bytes(),
        ]);
    }
    for (role, perms) in &raw.roles {
        for (j, perm) in perms.iter().enumerate() {
            check_permission(perm, &format!("roles.{role}[{j}]"))?;
        }
    }
    let forward = compile_forward(raw.forward)?;
    for (i, p) in providers.iter().enumerate() {
        for (h, _) in p.account.iter().flat_map(|a| a.headers.iter()) {
            if forward.headers.iter().any(|(f, _)| f == h)
                || forward.payload_header.as_deref() == Some(h)
            {
                return err(
                    format!("providers[{i}].account.headers.{h}"),
                    "also set by forward",
                );
            }
        }
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        rules.push(compile_rule(r, i, &providers, raw.mode)?);
    }
    Ok(Config {
        providers,
        clock_skew_s: i64::try_from(raw.clock_skew_s).unwrap_or(3600),
        max_token_bytes: raw.max_token_bytes,
        roles: raw.roles,
        forward,
        default: raw.default,
        verifier: raw.verifier,
        token_cache_entries: raw.token_cache_entries,
        shared: raw.shared,
        mode: raw.mode,
        access_log_fields: raw.access_log_fields,
        needs_host: rules.iter().any(|r| r.matcher.uses_host()),
        needs_route_name: rules.iter().any(|r| r.matcher.uses_route()),
        rules,
    })
}

fn compile_provider(
    p: RawProvider,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    if p.algorithms.is_empty() {
        return err(
            format!("{at}.algorithms"),
            "at least one algorithm is required",
        );
    }
    let wants_rs = p.algorithms.iter().any(|a| !a.is_hmac());
    let wants_hs = p.algorithms.iter().any(|a| a.is_hmac());
    if wants_rs && wants_hs {
        // Mixing key types in one provider is how algorithm-confusion attacks start.
        return err(
            format!("{at}.algorithms"),
            "public-key (RS*, ES*) and HMAC (HS*) algorithms need separate providers",
        );
    }
    let jwks = match (wants_rs, p.jwks) {
        (true, Some(j)) => Some(compile_jwks(j, &format!("{at}.jwks"), p.issuer.as_deref())?),
        (true, None) => return err(format!("{at}.jwks"), "required for RS* and ES* algorithms"),
        (false, Some(_)) => {
            return err(
                format!("{at}.jwks"),
                "only valid with RS* and ES* algorithms",
            )
        }
        (false, None) => None,
    };
    let secret = match (wants_hs, p.secret) {
        (true, Some(s)) => Some(load_secret(&s, &format!("{at}.secret"), env)?),
        (true, None) => return err(format!("{at}.secret"), "required for HMAC algorithms"),
        (false, Some(_)) => return err(format!("{at}.secret"), "only valid with HMAC algorithms"),
        (false, None) => None,
    };
    if let Some(iss) = &p.issuer {
        if iss.is_empty() {
            return err(format!("{at}.issuer"), "must not be empty");
        }
    }
    for (j, c) in p.required_claims.iter().enumerate() {
        if c.is_empty() {
            return err(
                format!("{at}.identity.required_claims[{j}]"),
                "must not be empty",
            );
        }
    }
    let account = match p.account {
        Some(a) => Some(compile_account(a, &format!("{at}.account"))?),
        None => None,
    };
    let algorithms: Vec<&str> = p.algorithms.iter().map(|a| a.name()).collect();
    let fingerprint = crate::shared::fingerprint(&[
        algorithms.join(",").as_bytes(),
        p.issuer.as_deref().unwrap_or("").as_bytes(),
        p.audiences.join("\n").as_bytes(),
        &jwks.as_ref().map_or(0, |j| j.fingerprint).to_le_bytes(),
        secret.as_ref().map_or(&[][..], |s| &s.0[..]),
    ]);
    Ok(Provider {
        token: p.token,
        strip_token: p.strip_token,
        fingerprint,
        account,
        name: p.name,
        issuer: p.issuer,
        audiences: p.audiences,
        algorithms: p.algorithms,
        jwks,
        secret,
        required_claims: p.required_claims,
        claims: p.claims,
    })
}

fn compile_jwks(j: RawJwks, at: &str, issuer: Option<&str>) -> Result<JwksSource, ConfigError> {
    if j.cluster.is_empty() {
        return err(format!("{at}.cluster"), "must not be empty");
    }
    if j.authority.is_empty() {
        return err(format!("{at}.authority"), "must not be empty");
    }
    let discovery = if j.discovery {
        if !j.path.is_empty() {
            return err(
                format!("{at}.path"),
                "not with discovery: the keys' path comes from jwks_uri",
            );
        }
        let Some(issuer) = issuer else {
            return err(format!("{at}.discovery"), "needs the provider's issuer");
        };
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
            path: format!(
                "{}/.well-known/openid-configuration",
                issuer_path.trim_end_matches('/')
            ),
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
    if !(100..=60_000).contains(&j.timeout_ms) {
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
    ]);
    Ok(JwksSource {
        discovery,
        fingerprint,
        cluster: j.cluster,
        authority: j.authority,
        path: j.path,
        refresh_ms: j.refresh_s.saturating_mul(1000),
        timeout_ms: j.timeout_ms,
        refetch_min_interval_ms: j.refetch_min_interval_s.saturating_mul(1000),
        retry_max_ms: j.retry_max_s.saturating_mul(1000),
        max_bytes: j.max_bytes,
    })
}

fn compile_account(a: RawAccount, at: &str) -> Result<AccountSource, ConfigError> {
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
    if !(100..=60_000).contains(&a.timeout_ms) {
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

fn load_secret(
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
    if bytes.len() < 32 {
        return err(
            format!("{at}.env"),
            format!("{} must hold at least 32 bytes", s.env),
        );
    }
    Ok(Secret(bytes))
}

fn check_header_name(name: &str, at: &str) -> Result<(), ConfigError> {
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

fn compile_forward(f: RawForward) -> Result<Forward, ConfigError> {
    let mut headers = Vec::new();
    for (header, claim) in f.headers {
        let at = format!("forward.headers.{header}");
        check_header_name(&header, &at)?;
        if claim.is_empty() {
            return err(at, "claim name must not be empty");
        }
        headers.push((header, claim));
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

/// A permission is non-empty, without whitespace; `*` is allowed only as a whole segment.
fn check_permission(perm: &str, at: &str) -> Result<(), ConfigError> {
    if perm.is_empty() || perm.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(at, format!("{perm:?} is not a valid permission"));
    }
    if perm
        .split(':')
        .any(|seg| seg.is_empty() || (seg.contains('*') && seg != "*"))
    {
        return err(
            at,
            format!("{perm:?}: empty segment or '*' inside a segment"),
        );
    }
    Ok(())
}

fn compile_rule(
    r: RawRule,
    i: usize,
    providers: &[Provider],
    mode: Mode,
) -> Result<Rule, ConfigError> {
    let at = format!("rules[{i}]");
    let matcher = Matcher::compile(&r.matcher, &format!("{at}.match"))?;
    let has_checks = !r.permissions.is_empty()
        || !r.all_of.is_empty()
        || !r.any_of.is_empty()
        || r.member_of.is_some()
        || r.providers.is_some();
    if r.public && has_checks {
        return err(
            format!("{at}.public"),
            "a public rule cannot also require permissions, membership or providers",
        );
    }
    if r.public && r.authentication == Authentication::Optional {
        return err(
            format!("{at}.authentication"),
            "a public rule takes no credential: \"optional\" is for rules that use one when it is sent",
        );
    }
    let provider_ids = match r.providers {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return err(format!("{at}.providers"), "must not be empty");
            }
            let mut ids = Vec::new();
            for (j, name) in list.iter().enumerate() {
                match providers.iter().position(|p| &p.name == name) {
                    Some(id) => ids.push(id),
                    None => {
                        return err(
                            format!("{at}.providers[{j}]"),
                            format!("unknown provider {name:?}"),
                        )
                    }
                }
            }
            Some(ids)
        }
    };
    let params = matcher.params();
    let compile_list = |list: &[String], key: &str| -> Result<Vec<Template>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(j, s)| {
                let field = format!("{at}.{key}[{j}]");
                let t = Template::compile(s, &params, &field)?;
                check_permission(&t.shape(), &field)?;
                Ok(t)
            })
            .collect()
    };
    let mut all_of = compile_list(&r.permissions, "permissions")?;
    all_of.extend(compile_list(&r.all_of, "all_of")?);
    let any_of = compile_list(&r.any_of, "any_of")?;
    let member_of = match r.member_of {
        None => None,
        Some(m) => {
            let field = format!("{at}.member_of");
            let source = match (m.query, m.header, m.path) {
                (Some(q), None, None) => RequestValue::Query(q),
                (None, Some(h), None) => RequestValue::Header(h.to_ascii_lowercase()),
                (None, None, Some(p)) => {
                    if !params.contains(&p.as_str()) {
                        return err(
                            format!("{field}.path"),
                            format!("the rule's template has no {{{p}}} segment"),
                        );
                    }
                    RequestValue::Path(p)
                }
                _ => return err(field, "exactly one of query, header or path is required"),
            };
            if m.claim.is_empty() {
                return err(format!("{field}.claim"), "must not be empty");
            }
            Some(Membership {
                source,
                claim: m.claim,
            })
        }
    };
    let mut headers = Vec::new();
    for (name, field, format) in r.headers {
        let lower = name.to_ascii_lowercase();
        if lower.is_empty()
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return err(field, "not a valid header name");
        }
        headers.push((lower, name, format));
    }
    Ok(Rule {
        index: i,
        name: r.name.unwrap_or_else(|| at.clone()),
        matcher,
        public: r.public,
        providers: provider_ids,
        requirement: Requirement { all_of, any_of },
        member_of,
        headers,
        mode: r.mode.unwrap_or(mode),
        authentication: r.authentication,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SDK_SECRET" => Some("0123456789abcdef0123456789abcdef".into()),
            "SHORT" => Some("short".into()),
            _ => None,
        }
    }

    const GOOD: &str = r#"{
      "providers": [
        { "name": "workos", "issuer": "https://api.workos.com", "audiences": ["client_123"],
          "algorithms": ["RS256"],
          "jwks": { "cluster": "workos_jwks", "authority": "api.workos.com", "path": "/sso/jwks/client_123" },
          "identity": { "required_claims": ["sub", "org_id"] } },
        { "name": "sdk", "algorithms": ["HS256"], "secret": { "env": "SDK_SECRET" } }
      ],
      "roles": { "admin": ["*"], "furnisher": ["furnish:write"] },
      "forward": { "headers": { "x-auth-subject": "sub" } },
      "rules": [
        { "match": { "methods": ["GET"], "path": "/health" }, "public": true },
        { "match": { "prefix": "/v1/entities/" }, "permissions": ["entities:read"] },
        { "match": { "methods": ["POST"], "template": "/v1/networks/{network_id}/consumers" },
          "all_of": ["consent:write:{path.network_id}"],
          "member_of": { "path": "network_id", "claim": "networks" } },
        { "match": { "prefix": "/v1/items" },
          "headers": { "Solenya-Index-UUID": "uuid" },
          "any_of": ["index:read:{header.solenya-index-uuid}"] }
      ]
    }"#;

    #[test]
    fn the_spec_example_compiles_with_defaults() {
        let cfg = parse(GOOD.as_bytes(), &env).expect("valid");
        assert_eq!(cfg.providers.len(), 2);
        assert_eq!(cfg.clock_skew_s, 60);
        assert_eq!(cfg.max_token_bytes, 8192);
        let jwks = cfg.providers[0].jwks.as_ref().expect("jwks");
        assert_eq!((jwks.refresh_ms, jwks.timeout_ms), (600_000, 2000));
        assert_eq!(
            cfg.providers[1].secret.as_ref().map(|s| s.0.len()),
            Some(32)
        );
        assert_eq!(cfg.rules.len(), 4);
        assert_eq!(cfg.default, DefaultPolicy::Authenticated);
        assert_eq!(cfg.verifier, VerifierChoice::Auto);
        assert!(!format!("{:?}", cfg.providers[1].secret).contains("0123"));
    }

    /// What decides whether a provider accepts a token changes its fingerprint (so a
    /// verdict another VM published under the old configuration is not trusted); what
    /// does not, does not.
    #[test]
    fn provider_fingerprints() {
        let fp = |text: &str| parse(text.as_bytes(), &env).expect("valid").providers[0].fingerprint;
        let base = fp(GOOD);
        assert_eq!(fp(GOOD), base, "stable");
        let swap = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        for changed in [
            swap("client_123\"]", "client_456\"]"),
            swap("https://api.workos.com\"", "https://other\""),
            swap("/sso/jwks/client_123", "/sso/jwks/other"),
            swap(r#""roles""#, r#""clock_skew_s": 5, "roles""#),
            swap(r#""roles""#, r#""max_token_bytes": 4096, "roles""#),
        ] {
            assert_ne!(fp(&changed), base, "{changed}");
        }
        for same in [
            swap(r#""roles""#, r#""default": "deny", "roles""#),
            swap(r#"{ "headers": { "x-auth-subject": "sub" } }"#, "{}"),
        ] {
            assert_eq!(fp(&same), base);
        }
        let cfg = parse(GOOD.as_bytes(), &env).expect("valid");
        assert_eq!(cfg.shared, SharedSlots::default());
        let jwks = cfg.providers[0].jwks.as_ref().expect("jwks");
        assert_eq!(
            (jwks.refetch_min_interval_ms, jwks.max_bytes),
            (5000, 65536)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let swap = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        let cases: Vec<(String, &str)> = vec![
            (swap(r#""roles""#, r#""rolez""#), "rolez"),
            (
                swap(r#""cluster""#, r#""clustr""#),
                "providers[0].jwks.clustr",
            ),
            (
                swap(r#""algorithms": ["RS256"]"#, r#""algorithms": ["none"]"#),
                "providers[0].algorithms[0]",
            ),
            (
                swap(r#""algorithms": ["RS256"]"#, r#""algorithms": []"#),
                "providers[0].algorithms",
            ),
            (
                swap(
                    r#""algorithms": ["RS256"]"#,
                    r#""algorithms": ["RS256","HS256"]"#,
                ),
                "providers[0].algorithms",
            ),
            (
                swap(r#""SDK_SECRET""#, r#""MISSING""#),
                "providers[1].secret.env",
            ),
            (
                swap(r#""SDK_SECRET""#, r#""SHORT""#),
                "providers[1].secret.env",
            ),
            (
                swap(r#""name": "sdk""#, r#""name": "workos""#),
                "providers[1].name",
            ),
            (
                swap(r#""path": "/sso"#, r#""path": "sso"#),
                "providers[0].jwks.path",
            ),
            (
                swap(r#""x-auth-subject""#, r#""X-Auth""#),
                "forward.headers.X-Auth",
            ),
            (
                swap(r#""x-auth-subject""#, r#""authorization""#),
                "forward.headers.authorization",
            ),
            (
                swap(
                    r#""public": true"#,
                    r#""public": true, "permissions": ["a"]"#,
                ),
                "rules[0].public",
            ),
            (
                swap(
                    r#""prefix": "/v1/entities/""#,
                    r#""prefix": "/v1/entities/", "path": "/x""#,
                ),
                "rules[1].match",
            ),
            (
                swap(r#""entities:read""#, r#""entities:re*d""#),
                "rules[1].permissions[0]",
            ),
            (
                swap("{path.network_id}", "{path.nope}"),
                "rules[2].all_of[0]",
            ),
            (
                swap("{header.solenya-index-uuid}", "{cookie.x}"),
                "rules[3].any_of[0]",
            ),
            (
                swap(r#""claim": "networks""#, r#""claim": """#),
                "rules[2].member_of.claim",
            ),
            (
                swap(r#""methods": ["POST"]"#, r#""methods": ["post"]"#),
                "rules[2].match.methods[0]",
            ),
            (
                swap(r#""uuid" }"#, r#""uuid4" }"#),
                "rules[3].headers.Solenya-Index-UUID",
            ),
            (
                swap(r#""workos_jwks""#, r#""""#),
                "providers[0].jwks.cluster",
            ),
            (
                swap(
                    r#""template": "/v1/networks/{network_id}/consumers""#,
                    r#""template": "/v1/{a}/{a}""#,
                ),
                "rules[2].match.template",
            ),
            // Types, missing fields, nested unknown keys, escapes, duplicate keys, non-objects.
            (swap(r#""public": true"#, r#""public": "yes""#), "rules[0].public"),
            (swap(r#""name": "sdk", "#, ""), "providers[1].name"),
            (
                swap(r#""uuid" }"#, r#""uuid", "X-Other": 5 }"#),
                "rules[3].headers.X-Other",
            ),
            (
                swap(r#""methods": ["POST"]"#, r#""methods": ["POST", 7]"#),
                "rules[2].match.methods[1]",
            ),
            (
                swap(r#""roles": {"#, r#""clock_skew_s": -1, "roles": {"#),
                "clock_skew_s",
            ),
            (
                r#"{"providers":[{"name":"a","algorithms":["HS256"],"secret":{"env":"K","encodin":"x"}}]}"#.to_string(),
                "providers[0].secret.encodin",
            ),
            (
                r#"{"providers":[{"name":"a\"b","algorithms":["HS256"],"sekret":1}]}"#.to_string(),
                "providers[0].sekret",
            ),
            ("{}".to_string(), "providers"),
            (
                swap(r#""roles""#, r#""shared": {"token_slots": 2000000}, "roles""#),
                "shared.token_slots",
            ),
            (
                swap(r#""roles""#, r#""shared": {"slots": 1}, "roles""#),
                "shared.slots",
            ),
            (
                swap(r#""path": "/sso"#, r#""max_bytes": 100, "path": "/sso"#),
                "providers[0].jwks.max_bytes",
            ),
            (
                swap(r#""path": "/sso/jwks/client_123""#, r#""discovery": true, "path": "/x""#),
                "providers[0].jwks.path",
            ),
            (
                swap(r#""path": "/sso/jwks/client_123""#, r#""path": "/x", "allowed_hosts": ["a"]"#),
                "providers[0].jwks.allowed_hosts",
            ),
            ("[]".to_string(), "(root)"),
            (r#"{"providers": [], "providers": []}"#.to_string(), "(root)"),
            (r#"{"providers": []}"#.to_string(), "providers"),
            ("not json".to_string(), "(root)"),
        ];
        let mut wrong = Vec::new();
        for (input, field) in cases {
            match parse(input.as_bytes(), &env) {
                Ok(_) => wrong.push(format!("accepted; expected an error at {field}")),
                Err(e) if e.field != field => wrong.push(format!("expected {field}, got {e}")),
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn secret_encodings() {
        let cfg = |enc: &str, val: &'static str| {
            let json = format!(
                r#"{{"providers":[{{"name":"s","algorithms":["HS256"],"secret":{{"env":"K","encoding":"{enc}"}}}}]}}"#
            );
            parse(json.as_bytes(), &move |_| Some(val.to_string()))
                .map(|c| c.providers[0].secret.clone().map(|s| s.0))
        };
        let b64url = "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg";
        assert_eq!(
            cfg("base64url", b64url).expect("ok").map(|k| k.len()),
            Some(32)
        );
        assert_eq!(
            cfg("base64", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
                .expect("ok")
                .map(|k| k.len()),
            Some(32)
        );
        assert!(cfg("base64url", "%%%").is_err());
    }
}
