//! The plugin configuration: parsed strictly from JSON and compiled once in `on_configure`.
//!
//! One file per concept, each owning its raw form (as written), its defaults (named
//! constants beside their fields) and its compilation: [`provider`], [`jwks`],
//! [`secret`], [`account`], [`token`] sources, [`rules`], [`forward`]ing and the
//! top-level [`policy`]s; [`reader`] is the strict JSON reader they share.
//!
//! Unknown fields, bad values and dangling references are errors that name the field
//! (e.g. `providers[0].jwks.cluster`); they are logged by the filter and never reach a client.

pub mod account;
pub mod forward;
pub mod introspection;
pub mod jwks;
pub mod mcp;
pub mod policy;
pub mod provider;
mod reader;
mod resource;
pub mod revocation;
pub mod rules;
pub mod secret;
pub mod sender;
mod token;

pub use self::account::AccountSource;
pub use self::forward::Forward;
pub use self::introspection::IntrospectionSource;
pub use self::jwks::{JwksSource, DEFAULT_MAX_JWKS_BYTES};
pub use self::policy::{Authentication, DefaultPolicy, Mode, SharedSlots, VerifierChoice};
pub use self::provider::Provider;
pub use self::revocation::{OnUnavailable, RevocationSource};
pub use self::rules::Rule;
pub use crate::error::ConfigError;

use self::forward::RawForward;
use self::policy::MODES;
use self::provider::RawProvider;
use self::reader::{strings, Fields};
use self::resource::RawResource;
use self::rules::{check_permission, RawRule};
use crate::error::err;
use crate::graphql::{Limits, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DEPTH, DEFAULT_MAX_TOKENS};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// `clock_skew_s` when not given (as Envoy's `jwt_authn`).
pub const DEFAULT_CLOCK_SKEW_S: u64 = 60;
/// The largest `clock_skew_s`.
pub const MAX_CLOCK_SKEW_S: u64 = 3600;
/// `max_token_bytes` when not given.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Bounds of `max_token_bytes`.
pub const TOKEN_BYTES_RANGE: std::ops::RangeInclusive<usize> = 256..=65536;
/// `token_cache.max_entries` when not given.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 4096;
/// Metric names' configuration segment when neither `stat_prefix` nor a plugin name says.
pub const DEFAULT_STAT_PREFIX: &str = "default";
/// The longest `stat_prefix`.
pub const MAX_STAT_PREFIX: usize = 64;
/// The most slots `shared.token_slots` and `shared.account_slots` may ask for.
pub const MAX_SHARED_SLOTS: usize = 1 << 20;

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
    clear_route_cache: bool,
    graphql: Limits,
    mcp: crate::mcp::Limits,
    stat_prefix: Option<String>,
    protected_resources: Vec<RawResource>,
}

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
                "clear_route_cache",
                "graphql",
                "mcp",
                "stat_prefix",
                "protected_resources",
            ],
        )?;
        let providers = f
            .required_items("providers")?
            .into_iter()
            .map(|(at, v)| RawProvider::read(v, &at))
            .collect::<Result<_, _>>()?;
        let clock_skew_s = f.u64_or("clock_skew_s", DEFAULT_CLOCK_SKEW_S)?;
        let max_token_bytes = f.usize_or("max_token_bytes", DEFAULT_MAX_TOKEN_BYTES)?;
        let roles = f
            .members("roles")?
            .into_iter()
            .map(|(role, at, v)| Ok((role, strings(v, &at)?)))
            .collect::<Result<_, _>>()?;
        let forward = RawForward::read(&f)?;
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
            Some(g) => g.usize_or("max_entries", DEFAULT_TOKEN_CACHE_ENTRIES)?,
            None => DEFAULT_TOKEN_CACHE_ENTRIES,
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
            clear_route_cache: f.bool_or("clear_route_cache", false)?,
            graphql: read_graphql(&f)?,
            mcp: mcp::read_limits(&f)?,
            stat_prefix: f.opt_string("stat_prefix")?,
            protected_resources: f
                .items("protected_resources")?
                .into_iter()
                .map(|(at, v)| RawResource::read(v, &at))
                .collect::<Result<_, _>>()?,
        })
    }
}

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
    /// Have Envoy choose the route again after the identity headers are set
    /// (`clear_route_cache`), so routes can match them.
    pub clear_route_cache: bool,
    /// Bounds on GraphQL requests (`graphql`).
    pub graphql: Limits,
    /// Bounds on MCP requests and filtered lists (`mcp`).
    pub mcp: crate::mcp::Limits,
    /// The revocation lists providers name, each once.
    pub revocations: Vec<RevocationSource>,
    /// The configuration's name in metric names (`stat_prefix`; empty: not given, see
    /// [`Config::name_metrics_after`]).
    pub stat_prefix: String,
    /// Some rule has a `match.graphql` condition (computed).
    pub has_graphql: bool,
    /// Some rule has a `match.mcp` condition (computed).
    pub has_mcp: bool,
    /// Some rule filters MCP lists (computed: asked at every response).
    pub has_filter_lists: bool,
    /// The methods, tools and prompts rules name: MCP messages must not spell them in
    /// another case (computed).
    pub mcp_spellings: crate::mcp::Spellings,
    /// Some rule matches on the host (computed).
    pub needs_host: bool,
    /// Some rule matches on Envoy's route name (computed).
    pub needs_route_name: bool,
    /// Some provider accepts DPoP-bound tokens (`Authorization: DPoP`) (computed).
    pub dpop: bool,
    /// Some provider checks certificate-bound tokens against the TLS connection's client
    /// certificate, which the glue then reads (computed).
    pub needs_peer_certificate: bool,
    /// Headers removed before the upstream on every request, besides identity headers:
    /// `dpop` when a provider accepts DPoP, `x-forwarded-client-cert` when a provider
    /// binds certificates and none trusts that header (computed).
    pub sender_headers: Vec<&'static str>,
    /// `protected_resources`, completed from the rules and providers under each (RFC
    /// 9728; empty: none declared).
    pub resources: crate::resource::Resources,
}

impl Config {
    /// The name metrics carry: `stat_prefix`, else what [`Config::name_metrics_after`]
    /// chose, else `default`.
    pub fn stat_prefix(&self) -> &str {
        if self.stat_prefix.is_empty() {
            DEFAULT_STAT_PREFIX
        } else {
            &self.stat_prefix
        }
    }

    /// Without `stat_prefix`, metrics are named after the plugin (Envoy's `config.name`,
    /// Istio's `<namespace>.<WasmPlugin>`), as a metric segment: two configurations in one
    /// Envoy are separate series.
    pub fn name_metrics_after(&mut self, plugin_name: &str) {
        if self.stat_prefix.is_empty() && !plugin_name.is_empty() {
            self.stat_prefix = segment(plugin_name);
        }
    }

    /// A provider's name for logs (empty if the index is out of range).
    pub fn provider_name(&self, provider: usize) -> &str {
        self.providers.get(provider).map_or("", |p| p.name.as_str())
    }

    /// A provider's key source, if it has one.
    pub fn jwks_of(&self, provider: usize) -> Option<&JwksSource> {
        self.providers.get(provider).and_then(|p| p.jwks.as_ref())
    }

    /// A provider's account service, if it has one.
    pub fn account_of(&self, provider: usize) -> Option<&AccountSource> {
        self.providers
            .get(provider)
            .and_then(|p| p.account.as_ref())
    }

    /// A provider's introspection endpoint, if it has one.
    pub fn introspection_of(&self, provider: usize) -> Option<&IntrospectionSource> {
        self.providers
            .get(provider)
            .and_then(|p| p.introspection.as_ref())
    }

    /// A provider's revocation list: its index in [`Config::revocations`] and the source.
    pub fn revocation_of(&self, provider: usize) -> Option<(usize, &RevocationSource)> {
        let list = self.providers.get(provider)?.revocation?;
        self.revocations.get(list).map(|r| (list, r))
    }

    /// The name metrics of list `list` go under: the first provider naming it.
    pub fn revocation_name(&self, list: usize) -> &str {
        self.providers
            .iter()
            .find(|p| p.revocation == Some(list))
            .map_or("", |p| p.name.as_str())
    }

    /// A rule's name for logs; `(default)` when no rule matched.
    pub fn rule_name(&self, rule: Option<usize>) -> &str {
        rule.and_then(|i| self.rules.get(i))
            .map_or("(default)", |r| r.name.as_str())
    }

    /// The largest request body the filter reads (GraphQL's or MCP's limit, whichever is
    /// larger: the pipeline checks each against its own).
    pub fn max_body_bytes(&self) -> usize {
        let mcp = if self.has_mcp {
            self.mcp.max_body_bytes
        } else {
            0
        };
        self.graphql.max_body_bytes.max(mcp)
    }

    /// Whether a rule filters MCP lists (`filter_lists`): the host must pass responses.
    pub fn filters_lists(&self) -> bool {
        self.has_filter_lists
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
            .chain(self.sender_headers.iter().copied())
    }
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
    let mut revocations: Vec<RevocationSource> = Vec::new();
    for (i, mut p) in raw.providers.into_iter().enumerate() {
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
        let list = p.revocation.take();
        let mut compiled = provider::compile(p, &at, env)?;
        let audiences = mcp::audiences(
            std::mem::take(&mut compiled.audiences),
            &format!("{at}.audiences"),
            !raw.protected_resources.is_empty(),
        )?;
        compiled.audiences = audiences.exact;
        compiled.audience_resource = audiences.resource;
        if let Some(source) = list {
            // Providers naming one list share it: it must be configured alike.
            let same = revocations
                .iter()
                .position(|r| r.fingerprint == source.fingerprint);
            compiled.revocation = Some(match same {
                Some(j) if revocations.get(j) == Some(&source) => j,
                Some(_) => {
                    return err(
                        format!("{at}.revocation"),
                        "names a list another provider names with other settings",
                    )
                }
                None => {
                    revocations.push(source);
                    revocations.len() - 1
                }
            });
        }
        providers.push(compiled);
    }
    let metric_safe = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if let Some(p) = &raw.stat_prefix {
        if p.is_empty() || p.len() > MAX_STAT_PREFIX || !p.chars().all(metric_safe) {
            return err(
                "stat_prefix",
                format!("1 to {MAX_STAT_PREFIX} characters of A-Z, a-z, 0-9, '_' and '-'"),
            );
        }
    }
    let stat_prefix = raw.stat_prefix.unwrap_or_default();
    if raw.clock_skew_s > MAX_CLOCK_SKEW_S {
        return err("clock_skew_s", "must be at most 3600");
    }
    if !TOKEN_BYTES_RANGE.contains(&raw.max_token_bytes) {
        return err("max_token_bytes", "must be between 256 and 65536");
    }
    for (name, slots) in [
        ("shared.token_slots", raw.shared.tokens),
        ("shared.account_slots", raw.shared.accounts),
    ] {
        if slots > MAX_SHARED_SLOTS {
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
    let forward = forward::compile(raw.forward)?;
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
    // A plain issuer that an earlier template would take (same token source, a shared
    // algorithm): its tokens would never reach it, nor its own checks.
    for (i, later) in providers.iter().enumerate() {
        let Some(iss) = later
            .issuer
            .as_deref()
            .filter(|_| later.issuer_template.is_none())
        else {
            continue;
        };
        let shadowed = providers.iter().take(i).find(|p| {
            p.issuer_template
                .as_ref()
                .is_some_and(|t| t.capture(iss).is_some())
                && p.token == later.token
                && p.algorithms.iter().any(|a| later.algorithms.contains(a))
        });
        if let Some(p) = shadowed {
            return err(
                format!("providers[{i}].issuer"),
                format!("provider {:?}'s issuer template takes these tokens first: list this provider before it", p.name),
            );
        }
    }
    let mut rules = Vec::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        rules.push(rules::compile(
            r,
            i,
            &providers,
            (raw.mode, !raw.protected_resources.is_empty()),
        )?);
    }
    let dpop = providers.iter().any(|p| p.dpop.is_some());
    let needs_peer_certificate = providers.iter().any(|p| {
        p.mtls_binding
            .as_ref()
            .is_some_and(|m| !m.trust_forwarded_client_cert)
    });
    let sender_headers = sender_headers(&providers);
    let resources = resource::compile(raw.protected_resources, &providers, &rules)?;
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
        clear_route_cache: raw.clear_route_cache,
        graphql: raw.graphql,
        mcp: raw.mcp,
        revocations,
        stat_prefix,
        has_graphql: rules.iter().any(|r| r.graphql.is_some()),
        has_mcp: rules.iter().any(|r| r.mcp.is_some()),
        has_filter_lists: rules.iter().any(|r| r.filter_lists),
        mcp_spellings: mcp_spellings(&rules),
        needs_host: rules.iter().any(|r| r.matcher.uses_host()),
        needs_route_name: rules.iter().any(|r| r.matcher.uses_route()),
        dpop,
        needs_peer_certificate,
        sender_headers,
        resources,
        rules,
    })
}

/// The methods, tools and prompts the rules' `match.mcp` conditions name.
fn mcp_spellings(rules: &[Rule]) -> crate::mcp::Spellings {
    let mut out = crate::mcp::Spellings::default();
    for m in rules.iter().filter_map(|r| r.mcp.as_ref()) {
        out.methods.extend(m.methods.iter().cloned());
        out.names.extend(m.tools.iter().chain(&m.prompts).cloned());
    }
    out.methods.sort();
    out.methods.dedup();
    out.names.sort();
    out.names.dedup();
    out
}

/// The headers removed before the upstream for the providers' sender constraints.
fn sender_headers(providers: &[Provider]) -> Vec<&'static str> {
    let mut headers = Vec::new();
    if providers.iter().any(|p| p.dpop.is_some()) {
        headers.push("dpop");
    }
    let bindings = || providers.iter().filter_map(|p| p.mtls_binding.as_ref());
    if bindings().next().is_some() && !bindings().any(|m| m.trust_forwarded_client_cert) {
        headers.push("x-forwarded-client-cert");
    }
    headers
}

/// `graphql`: bounds on GraphQL requests, each checked against its range.
fn read_graphql(top: &Fields) -> Result<Limits, ConfigError> {
    let keys = ["max_body_bytes", "max_depth", "max_tokens", "hold_head"];
    let Some(g) = top.object("graphql", &keys)? else {
        return Ok(Limits::default());
    };
    let limits = Limits {
        max_body_bytes: g.usize_or("max_body_bytes", DEFAULT_MAX_BODY_BYTES)?,
        max_depth: g.usize_or("max_depth", DEFAULT_MAX_DEPTH)?,
        max_tokens: g.usize_or("max_tokens", DEFAULT_MAX_TOKENS)?,
        hold_head: g.bool_or("hold_head", false)?,
    };
    let ranges = [
        ("max_body_bytes", limits.max_body_bytes, 256, 1 << 20),
        ("max_depth", limits.max_depth, 2, 256),
        ("max_tokens", limits.max_tokens, 16, 1_000_000),
    ];
    for (key, value, low, high) in ranges {
        if !(low..=high).contains(&value) {
            return err(g.path(key), format!("must be between {low} and {high}"));
        }
    }
    Ok(limits)
}

/// A name as a metric segment: what is not `[A-Za-z0-9_-]` becomes `_` (a dot would
/// split the name where stats tags do not expect it).
pub fn segment(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
