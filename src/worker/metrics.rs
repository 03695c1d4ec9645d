//! The filter's metrics as data: every metric declared once in [`TABLE`] (name, kind,
//! scope), from which their full names, indices and registration follow (the host defines
//! them once, at configure time; Envoy shares stats by name across workers), and the
//! counts not yet sent.
//!
//! Every name is `bearer_guard.<stat_prefix>.<metric>`, and a provider's metrics
//! `bearer_guard.<stat_prefix>.provider.<provider>.<metric>`: the shape the stats tags
//! shipped in `envoy/` turn into the labels `bearer_guard_config`, `provider` and
//! `reason` (`denied.<reason>`, `would_deny.<reason>`).
//!
//! Counters accumulate in the worker and go to the host on the tick (every 200 ms) as
//! [`Effect::Count`]: a host call per request per counter would cost more than the rest
//! of a cached-token decision. Gauges are set when their value changes; the waiting
//! requests gauge is the process's sum, each worker adding its change.

use super::accounts::Lookup;
use super::effects::{Effect, MetricKind};
use crate::config::{segment, Config};
use crate::reply::Denial;
use crate::shared::FetchError;

/// Which instances a metric has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One for the configuration: `<name>`.
    Global,
    /// One per denial reason: `<name>.<reason>`.
    PerDenial,
    /// One per provider with a JWKS: `provider.<provider>.<name>`.
    KeySet,
    /// One per provider, per denial reason: `provider.<provider>.<name>.<reason>`.
    ProviderDenial,
    /// One per provider with a revocation list: `provider.<provider>.<name>`.
    Revocation,
    /// One per revocation list, named by its first provider: `provider.<provider>.<name>`.
    List,
    /// One per provider accepting DPoP: `provider.<provider>.<name>`.
    Dpop,
    /// One per MCP method label, when a rule has `match.mcp`: `<name>.<method>`.
    PerMcpMethod,
    /// One for the configuration, when a rule filters MCP lists: `<name>`.
    McpLists,
}

/// Declares every metric once: the [`Metric`] enum and [`TABLE`], in the same order.
macro_rules! metrics {
    ($($(#[$doc:meta])* $metric:ident = $name:literal, $kind:ident, $scope:ident;)+) => {
        /// A metric, as the core counts it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Metric {
            $($(#[$doc])* $metric,)+
        }

        /// Every metric: its name, kind and scope, in [`Metric`]'s order.
        pub const TABLE: &[(Metric, &str, MetricKind, Scope)] = &[
            $((Metric::$metric, $name, MetricKind::$kind, Scope::$scope),)+
        ];
    };
}

metrics! {
    /// Requests let through after authentication.
    RequestsAllowed = "requests_allowed", Counter, Global;
    /// Requests a public rule let through.
    PublicPasses = "public_passes", Counter, Global;
    /// Requests without a credential on an optional rule.
    AnonymousPasses = "anonymous_passes", Counter, Global;
    /// Denials answered, by reason.
    Denied = "denied", Counter, PerDenial;
    /// Denials only reported (audit mode), by reason.
    WouldDeny = "would_deny", Counter, PerDenial;
    /// Tokens from this worker's cache.
    TokenCacheHits = "token_cache_hits", Counter, Global;
    /// Tokens verified now.
    TokenCacheMisses = "token_cache_misses", Counter, Global;
    /// Tokens another worker of the process verified.
    TokenCacheSharedHits = "token_cache_shared_hits", Counter, Global;
    /// Account answers adopted from another worker.
    AccountSharedHits = "account_shared_hits", Counter, Global;
    /// Account service answers (200, 404).
    AccountLookupsOk = "account_lookups_ok", Counter, Global;
    /// Account service failures.
    AccountLookupsFailed = "account_lookups_failed", Counter, Global;
    /// Introspection answers saying a token is active.
    IntrospectionActive = "introspection_active", Counter, Global;
    /// Introspection answers refusing a token (not active, 4xx, malformed).
    IntrospectionInactive = "introspection_inactive", Counter, Global;
    /// Introspection calls that failed (no answer, 5xx, too large).
    IntrospectionFailed = "introspection_failed", Counter, Global;
    /// Introspection answers adopted from another worker.
    IntrospectionSharedHits = "introspection_shared_hits", Counter, Global;
    /// Requests waiting now, process-wide.
    WaitingRequests = "waiting_requests", Gauge, Global;
    /// JWKS fetches that loaded keys.
    JwksFetchOk = "jwks_fetch_ok", Counter, KeySet;
    /// JWKS fetches that failed.
    JwksFetchFailed = "jwks_fetch_failed", Counter, KeySet;
    /// Fetches taken over from a worker that never finished them.
    JwksLeaseTakeovers = "jwks_lease_takeovers", Counter, KeySet;
    /// Key sets adopted from another worker.
    KeySetsAdopted = "key_sets_adopted", Counter, KeySet;
    /// Keys in the set in force.
    KeysLoaded = "keys_loaded", Gauge, KeySet;
    /// Seconds since the set in force was fetched.
    KeySetAgeSeconds = "key_set_age_seconds", Gauge, KeySet;
    /// The version of the set in force.
    KeySetVersion = "key_set_version", Gauge, KeySet;
    /// Whether the set in force is stale.
    KeysStale = "keys_stale", Gauge, KeySet;
    /// Denials of tokens this provider judged, by reason.
    ProviderDenied = "denied", Counter, ProviderDenial;
    /// Tokens refused as revoked.
    TokensRevoked = "tokens_revoked", Counter, Revocation;
    /// Tokens passed unchecked: the list never loaded (`on_unavailable: allow`).
    RevocationUnchecked = "revocation_unchecked", Counter, Revocation;
    /// DPoP proofs accepted.
    DpopProofsAccepted = "dpop_proofs_accepted", Counter, Dpop;
    /// DPoP proofs refused as replayed.
    DpopProofsReplayed = "dpop_proofs_replayed", Counter, Dpop;
    /// DPoP proofs refused for want of replay space.
    DpopReplayStoreFull = "dpop_replay_store_full", Counter, Dpop;
    /// List fetches that succeeded.
    RevocationFetchOk = "revocation_fetch_ok", Counter, List;
    /// List fetches that failed.
    RevocationFetchFailed = "revocation_fetch_failed", Counter, List;
    /// The version of the list in force.
    RevocationVersion = "revocation_version", Gauge, List;
    /// Entries in the list in force.
    RevocationEntries = "revocation_entries", Gauge, List;
    /// Whether the list in force is stale.
    RevocationStale = "revocation_stale", Gauge, List;
    /// Seconds since the list in force was fetched.
    RevocationAgeSeconds = "revocation_age_seconds", Gauge, List;
    /// MCP messages in requests that went on, by method.
    McpMessagesAllowed = "mcp_messages_allowed", Counter, PerMcpMethod;
    /// MCP messages in requests refused, by method.
    McpMessagesDenied = "mcp_messages_denied", Counter, PerMcpMethod;
    /// MCP list answers filtered.
    McpListsFiltered = "mcp_lists_filtered", Counter, McpLists;
    /// Items MCP list filtering hid.
    McpListItemsHidden = "mcp_list_items_hidden", Counter, McpLists;
    /// MCP list answers replaced by a 502 (too large, compressed or unreadable).
    McpListsRefused = "mcp_lists_refused", Counter, McpLists;
}

/// The method labels of MCP metrics: the methods MCP names (`/` as `_`), `other` and
/// `response` (the client's answers).
pub fn mcp_method_labels() -> impl Iterator<Item = &'static str> {
    crate::mcp::KNOWN_METHODS
        .iter()
        .copied()
        .chain(["other", "response"])
}

/// Index of the first instance of each metric in one scope instance (`None`: not there).
type Indices = Vec<Option<usize>>;

/// Every metric of a configuration, with the counts not yet flushed.
#[derive(Debug)]
pub struct Metrics {
    definitions: Vec<(String, MetricKind)>,
    pending: Vec<i64>,
    /// The configuration's own metrics, by [`Metric`].
    global: Indices,
    /// Per provider, its metrics by [`Metric`].
    providers: Vec<Indices>,
    /// Per revocation list, its metrics by [`Metric`].
    lists: Vec<Indices>,
    /// This worker's waiting requests as last added to the process-wide gauge.
    waiting_reported: i64,
    /// The value of each gauge as this worker last set it (`None`: not yet, or a counter).
    sent: Vec<Option<u64>>,
    /// `bearer_guard.<stat_prefix>.`: what [`Metrics::pending`] strips.
    prefix: String,
}

impl Metrics {
    /// The metrics of `config`: every entry of [`TABLE`] for each instance of its scope.
    pub fn new(config: &Config) -> Metrics {
        let prefix = format!("bearer_guard.{}.", segment(config.stat_prefix()));
        let mut definitions: Vec<(String, MetricKind)> = Vec::new();
        // Defines the instances of the metrics of `scopes` under `name_prefix`.
        let mut define = |scopes: &[Scope], name_prefix: &str| -> Indices {
            let mut at = vec![None; TABLE.len()];
            for (metric, name, kind, scope) in TABLE {
                if !scopes.contains(scope) {
                    continue;
                }
                at[*metric as usize] = Some(definitions.len());
                let full = format!("{prefix}{name_prefix}{name}");
                if matches!(scope, Scope::PerDenial | Scope::ProviderDenial) {
                    for d in Denial::all() {
                        definitions.push((format!("{full}.{}", d.reason()), *kind));
                    }
                } else if *scope == Scope::PerMcpMethod {
                    for m in mcp_method_labels() {
                        definitions.push((format!("{full}.{}", segment(m)), *kind));
                    }
                } else {
                    definitions.push((full, *kind));
                }
            }
            at
        };
        let mut scopes = vec![Scope::Global, Scope::PerDenial];
        if config.has_mcp {
            scopes.push(Scope::PerMcpMethod);
        }
        if config.filters_lists() {
            scopes.push(Scope::McpLists);
        }
        let global = define(&scopes, "");
        let providers = config
            .providers
            .iter()
            .map(|p| {
                let mut scopes = vec![Scope::ProviderDenial];
                if p.jwks.is_some() || p.inline_keys.is_some() {
                    scopes.push(Scope::KeySet);
                }
                if p.revocation.is_some() {
                    scopes.push(Scope::Revocation);
                }
                if p.dpop.is_some() {
                    scopes.push(Scope::Dpop);
                }
                define(&scopes, &format!("provider.{}.", segment(&p.name)))
            })
            .collect();
        let lists = (0..config.revocations.len())
            .map(|list| {
                let name = segment(config.revocation_name(list));
                define(&[Scope::List], &format!("provider.{name}."))
            })
            .collect();
        Metrics {
            pending: vec![0; definitions.len()],
            sent: vec![None; definitions.len()],
            definitions,
            global,
            providers,
            lists,
            waiting_reported: 0,
            prefix,
        }
    }

    /// The index of a configuration-wide metric.
    fn global(&self, metric: Metric) -> Option<usize> {
        self.global.get(metric as usize).copied().flatten()
    }

    /// The index of a provider's metric.
    fn provider(&self, provider: usize, metric: Metric) -> Option<usize> {
        self.providers
            .get(provider)
            .and_then(|m| m.get(metric as usize).copied().flatten())
    }

    /// The index of a list's metric.
    fn list(&self, list: usize, metric: Metric) -> Option<usize> {
        self.lists
            .get(list)
            .and_then(|m| m.get(metric as usize).copied().flatten())
    }

    /// Every metric's full name and kind, by index.
    pub fn definitions(&self) -> &[(String, MetricKind)] {
        &self.definitions
    }

    /// Sets a gauge, when its value differs from what this VM last set.
    fn set_gauge(&mut self, index: usize, value: u64, out: &mut Vec<Effect>) {
        if let Some(sent) = self.sent.get_mut(index) {
            if *sent != Some(value) {
                *sent = Some(value);
                out.push(Effect::Gauge(index, value));
            }
        }
    }

    /// This VM now has `n` requests waiting: its change goes to the process-wide gauge
    /// with the next flush.
    pub fn waiting(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let delta = n - self.waiting_reported;
        self.waiting_reported = n;
        if let Some(p) = self
            .global(Metric::WaitingRequests)
            .and_then(|i| self.pending.get_mut(i))
        {
            *p = p.saturating_add(delta);
        }
    }

    /// A provider's key set as this VM sees it: its version, how long ago it was fetched
    /// (`None`: never) and whether it is stale.
    pub fn key_set(
        &mut self,
        provider: usize,
        (version, age_ms, stale): (u64, Option<u64>, bool),
        out: &mut Vec<Effect>,
    ) {
        self.set(self.provider(provider, Metric::KeySetVersion), version, out);
        if let Some(ms) = age_ms {
            self.set(
                self.provider(provider, Metric::KeySetAgeSeconds),
                ms / 1000,
                out,
            );
        }
        self.set(
            self.provider(provider, Metric::KeysStale),
            u64::from(stale),
            out,
        );
    }

    fn bump(&mut self, index: Option<usize>) {
        if let Some(n) = index.and_then(|i| self.pending.get_mut(i)) {
            *n = n.saturating_add(1);
        }
    }

    /// Sets a gauge, if this configuration has it.
    fn set(&mut self, index: Option<usize>, value: u64, out: &mut Vec<Effect>) {
        if let Some(i) = index {
            self.set_gauge(i, value, out);
        }
    }

    /// A request let through: after authentication, by a public rule, or without a
    /// credential on an optional rule.
    pub fn allowed(&mut self, public: bool, anonymous: bool) {
        let metric = match (public, anonymous) {
            (true, _) => Metric::PublicPasses,
            (false, true) => Metric::AnonymousPasses,
            (false, false) => Metric::RequestsAllowed,
        };
        self.bump(self.global(metric));
    }

    /// A denial answered (enforce) or only reported (audit); an enforced one also under
    /// the provider that refused the token, if one judged it.
    pub fn denied(&mut self, denial: &Denial, audit: bool, provider: Option<usize>) {
        let metric = if audit {
            Metric::WouldDeny
        } else {
            Metric::Denied
        };
        let reason = denial.reason();
        if let Some(i) = Denial::all().iter().position(|d| d.reason() == reason) {
            self.bump(self.global(metric).map(|first| first + i));
            if let (false, Some(p)) = (audit, provider) {
                let first = self.provider(p, Metric::ProviderDenied);
                self.bump(first.map(|first| first + i));
            }
        }
    }

    /// An MCP request's messages (their method labels), in a request that went on
    /// (`passes`) or was refused.
    pub fn mcp(&mut self, methods: &[&str], passes: bool) {
        let metric = if passes {
            Metric::McpMessagesAllowed
        } else {
            Metric::McpMessagesDenied
        };
        let Some(first) = self.global(metric) else {
            return;
        };
        for m in methods {
            if let Some(i) = mcp_method_labels().position(|l| l == *m) {
                self.bump(Some(first + i));
            }
        }
    }

    /// An MCP list answer filtered, `hidden` items removed.
    pub fn mcp_list_filtered(&mut self, hidden: usize) {
        self.bump(self.global(Metric::McpListsFiltered));
        if let Some(n) = self
            .global(Metric::McpListItemsHidden)
            .and_then(|i| self.pending.get_mut(i))
        {
            *n = n.saturating_add(i64::try_from(hidden).unwrap_or(i64::MAX));
        }
    }

    /// An MCP list answer replaced by a 502.
    pub fn mcp_list_refused(&mut self) {
        self.bump(self.global(Metric::McpListsRefused));
    }

    /// A token from this VM's cache.
    pub fn cache_hit(&mut self) {
        self.bump(self.global(Metric::TokenCacheHits));
    }

    /// A token authenticated now: from another VM's verdict, or by its signature.
    pub fn authenticated(&mut self, shared_hit: bool) {
        let metric = if shared_hit {
            Metric::TokenCacheSharedHits
        } else {
            Metric::TokenCacheMisses
        };
        self.bump(self.global(metric));
    }

    /// An account or introspection answer adopted from another VM.
    pub fn shared_answer(&mut self, kind: Lookup) {
        let metric = match kind {
            Lookup::Account => Metric::AccountSharedHits,
            Lookup::Introspection => Metric::IntrospectionSharedHits,
        };
        self.bump(self.global(metric));
    }

    /// A lookup's answer: an account (found or not: ok) or an introspection (active or
    /// not), or a failure.
    pub fn lookup<T>(&mut self, kind: Lookup, result: &Result<Option<T>, FetchError>) {
        let metric = match (kind, result) {
            (Lookup::Account, Ok(_)) => Metric::AccountLookupsOk,
            (Lookup::Account, Err(_)) => Metric::AccountLookupsFailed,
            (Lookup::Introspection, Ok(Some(_))) => Metric::IntrospectionActive,
            (Lookup::Introspection, Ok(None)) => Metric::IntrospectionInactive,
            (Lookup::Introspection, Err(_)) => Metric::IntrospectionFailed,
        };
        self.bump(self.global(metric));
    }

    /// This VM took over a fetch whose holder never finished it.
    pub fn takeover(&mut self, provider: usize) {
        self.bump(self.provider(provider, Metric::JwksLeaseTakeovers));
    }

    /// This VM adopted a key set of `keys` keys another VM fetched.
    pub fn adopted(&mut self, provider: usize, keys: usize, out: &mut Vec<Effect>) {
        self.bump(self.provider(provider, Metric::KeySetsAdopted));
        self.set(
            self.provider(provider, Metric::KeysLoaded),
            keys as u64,
            out,
        );
    }

    /// A JWKS fetch of this VM finished: `Some(keys)` loaded, or `None` failed.
    pub fn fetched(&mut self, provider: usize, keys: Option<usize>, out: &mut Vec<Effect>) {
        match keys {
            Some(n) => {
                self.bump(self.provider(provider, Metric::JwksFetchOk));
                self.set(self.provider(provider, Metric::KeysLoaded), n as u64, out);
            }
            None => self.bump(self.provider(provider, Metric::JwksFetchFailed)),
        }
    }

    /// A token of `provider` refused as revoked (`true`), or passed unchecked because
    /// its list never loaded (`false`).
    pub fn revocation(&mut self, provider: usize, revoked: bool) {
        let metric = if revoked {
            Metric::TokensRevoked
        } else {
            Metric::RevocationUnchecked
        };
        self.bump(self.provider(provider, metric));
    }

    /// What the replay store said of a DPoP proof of `provider`.
    pub fn proof(&mut self, provider: usize, claimed: crate::sender::replay::Claimed) {
        use crate::sender::replay::Claimed;
        let metric = match claimed {
            Claimed::Fresh => Metric::DpopProofsAccepted,
            Claimed::Replayed => Metric::DpopProofsReplayed,
            Claimed::Full | Claimed::Failed => Metric::DpopReplayStoreFull,
        };
        self.bump(self.provider(provider, metric));
    }

    /// A fetch of revocation list `list` by this VM succeeded (`true`) or failed.
    pub fn list_fetched(&mut self, list: usize, ok: bool) {
        let metric = if ok {
            Metric::RevocationFetchOk
        } else {
            Metric::RevocationFetchFailed
        };
        self.bump(self.list(list, metric));
    }

    /// The list in force in this VM: its version and entries.
    pub fn list_in_force(
        &mut self,
        list: usize,
        (version, entries): (u64, usize),
        out: &mut Vec<Effect>,
    ) {
        self.set(self.list(list, Metric::RevocationVersion), version, out);
        self.set(
            self.list(list, Metric::RevocationEntries),
            entries as u64,
            out,
        );
    }

    /// A list's age (`None`: never fetched) and whether it is stale.
    pub fn list_health(
        &mut self,
        list: usize,
        (age_ms, stale): (Option<u64>, bool),
        out: &mut Vec<Effect>,
    ) {
        if let Some(ms) = age_ms {
            self.set(
                self.list(list, Metric::RevocationAgeSeconds),
                ms / 1000,
                out,
            );
        }
        self.set(
            self.list(list, Metric::RevocationStale),
            u64::from(stale),
            out,
        );
    }

    /// The counts accumulated since the last flush, as effects.
    pub fn flush(&mut self, out: &mut Vec<Effect>) {
        for (index, n) in self.pending.iter_mut().enumerate() {
            // Negative only for the waiting-requests gauge, whose changes are added up.
            if *n != 0 {
                out.push(Effect::Count(index, std::mem::take(n)));
            }
        }
    }

    /// The count not yet flushed of the metric named `name` (without the
    /// `bearer_guard.<stat_prefix>.` prefix): for tests.
    pub fn pending(&self, name: &str) -> i64 {
        self.definitions
            .iter()
            .position(|(n, _)| n.strip_prefix(self.prefix.as_str()) == Some(name))
            .and_then(|i| self.pending.get(i).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_the_enums_order_and_names_are_unique() {
        for (i, (metric, ..)) in TABLE.iter().enumerate() {
            assert_eq!(*metric as usize, i, "{metric:?}");
        }
        let cfg = crate::config::parse(
            br#"{"providers":[{"name":"idp","algorithms":["ES256"],"jwks":{"cluster":"c","authority":"a","path":"/"},
                "dpop":{"mode":"allowed"},
                "revocation":{"cluster":"c","authority":"a","path":"/r"}}]}"#,
            &|_| None,
        )
        .expect("config");
        let m = Metrics::new(&cfg);
        let mut names: Vec<&str> = m.definitions().iter().map(|(n, _)| n.as_str()).collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a name defined twice");
        for want in [
            "bearer_guard.default.requests_allowed",
            "bearer_guard.default.denied.invalid_token",
            "bearer_guard.default.provider.idp.denied.unavailable",
            "bearer_guard.default.provider.idp.keys_stale",
            "bearer_guard.default.provider.idp.revocation_age_seconds",
            "bearer_guard.default.provider.idp.dpop_replay_store_full",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
    }
}
