//! The filter's metrics as data: their names (defined by the glue once, at configure
//! time; Envoy shares stats by name across VMs) and the counts not yet sent.
//!
//! Every name is `bearer_guard.<stat_prefix>.<metric>`, and a provider's metrics
//! `bearer_guard.<stat_prefix>.provider.<provider>.<metric>`: the shape the stats tags
//! shipped in `envoy/` turn into the labels `bearer_guard_config`, `provider` and
//! `reason` (`denied.<reason>`, `would_deny.<reason>`).
//!
//! Counters accumulate in the VM and go to the host on the tick (every 200 ms) as
//! [`Effect::Count`]: a host call per request per counter would cost more than the rest
//! of a cached-token decision. Gauges are set when their value changes; the waiting
//! requests gauge is the process's sum, each VM adding its change.

use super::effects::{Effect, MetricKind};
use crate::config::{segment, Config};
use crate::reply::Denial;

/// Indices of one provider's metrics.
#[derive(Debug, Clone, Copy)]
struct ProviderMetrics {
    fetch_ok: usize,
    fetch_failed: usize,
    takeovers: usize,
    adopted: usize,
    keys_loaded: usize,
    age: usize,
    version: usize,
    stale: usize,
}

/// Indices of one revocation list's metrics (named by the first provider naming it).
#[derive(Debug, Clone, Copy)]
struct ListMetrics {
    fetch_ok: usize,
    fetch_failed: usize,
    version: usize,
    entries: usize,
    stale: usize,
    age: usize,
}

/// Every metric of a configuration, with the counts not yet flushed.
#[derive(Debug)]
pub struct Metrics {
    definitions: Vec<(String, MetricKind)>,
    pending: Vec<i64>,
    allowed: usize,
    public: usize,
    anonymous: usize,
    /// `denied.<reason>` at `denied + i`, `would_deny.<reason>` at `would_deny + i`, in
    /// the order of [`Denial::all`].
    denied: usize,
    would_deny: usize,
    cache_hits: usize,
    cache_misses: usize,
    cache_shared_hits: usize,
    account_shared_hits: usize,
    account_ok: usize,
    account_failed: usize,
    providers: Vec<Option<ProviderMetrics>>,
    lists: Vec<ListMetrics>,
    /// Per provider with a list: `tokens_revoked`, `revocation_unchecked`.
    revoked: Vec<Option<(usize, usize)>>,
    /// Per provider accepting DPoP: `dpop_proofs_accepted`, `dpop_proofs_replayed`,
    /// `dpop_replay_store_full`.
    proofs: Vec<Option<[usize; 3]>>,
    waiting: usize,
    /// Per provider: `provider.<name>.denied.<reason>` from this index on, in the order
    /// of [`Denial::all`].
    provider_denied: Vec<usize>,
    /// This VM's waiting requests as last added to the process-wide gauge.
    waiting_reported: i64,
    /// The value of each gauge as this VM last set it (`None`: not yet, or a counter).
    sent: Vec<Option<u64>>,
    /// `bearer_guard.<stat_prefix>.`: what [`Metrics::pending`] strips.
    prefix: String,
}

impl Metrics {
    /// The metrics of `config`.
    pub fn new(config: &Config) -> Metrics {
        let prefix = format!("bearer_guard.{}.", segment(config.stat_prefix()));
        let mut defs: Vec<(String, MetricKind)> = Vec::new();
        let mut add = |name: String, kind| {
            defs.push((format!("{prefix}{name}"), kind));
            defs.len() - 1
        };
        let counter = MetricKind::Counter;
        let allowed = add("requests_allowed".into(), counter);
        let public = add("public_passes".into(), counter);
        let anonymous = add("anonymous_passes".into(), counter);
        let denied = defs_for(&mut add, "denied");
        let would_deny = defs_for(&mut add, "would_deny");
        let cache_hits = add("token_cache_hits".into(), counter);
        let cache_misses = add("token_cache_misses".into(), counter);
        let cache_shared_hits = add("token_cache_shared_hits".into(), counter);
        let account_shared_hits = add("account_shared_hits".into(), counter);
        let account_ok = add("account_lookups_ok".into(), counter);
        let account_failed = add("account_lookups_failed".into(), counter);
        let gauge = MetricKind::Gauge;
        let waiting = add("waiting_requests".into(), gauge);
        let providers = config
            .providers
            .iter()
            .map(|p| {
                p.jwks.as_ref()?;
                let name = segment(&p.name);
                let mut add = |what: &str, kind| add(format!("provider.{name}.{what}"), kind);
                Some(ProviderMetrics {
                    fetch_ok: add("jwks_fetch_ok", counter),
                    fetch_failed: add("jwks_fetch_failed", counter),
                    takeovers: add("jwks_lease_takeovers", counter),
                    adopted: add("key_sets_adopted", counter),
                    keys_loaded: add("keys_loaded", gauge),
                    age: add("key_set_age_seconds", gauge),
                    version: add("key_set_version", gauge),
                    stale: add("keys_stale", gauge),
                })
            })
            .collect();
        let lists = (0..config.revocations.len())
            .map(|list| {
                let name = segment(config.revocation_name(list));
                let mut add = |what: &str, kind| add(format!("provider.{name}.{what}"), kind);
                ListMetrics {
                    fetch_ok: add("revocation_fetch_ok", counter),
                    fetch_failed: add("revocation_fetch_failed", counter),
                    version: add("revocation_version", gauge),
                    entries: add("revocation_entries", gauge),
                    stale: add("revocation_stale", gauge),
                    age: add("revocation_age_seconds", gauge),
                }
            })
            .collect();
        let provider_denied = config
            .providers
            .iter()
            .map(|p| defs_for(&mut add, &format!("provider.{}.denied", segment(&p.name))))
            .collect();
        let revoked = config
            .providers
            .iter()
            .map(|p| {
                p.revocation?;
                let name = segment(&p.name);
                Some((
                    add(format!("provider.{name}.tokens_revoked"), counter),
                    add(format!("provider.{name}.revocation_unchecked"), counter),
                ))
            })
            .collect();
        let proofs = config
            .providers
            .iter()
            .map(|p| {
                p.dpop.as_ref()?;
                let name = segment(&p.name);
                Some(
                    [
                        "dpop_proofs_accepted",
                        "dpop_proofs_replayed",
                        "dpop_replay_store_full",
                    ]
                    .map(|what| add(format!("provider.{name}.{what}"), counter)),
                )
            })
            .collect();
        Metrics {
            lists,
            revoked,
            proofs,
            waiting,
            provider_denied,
            waiting_reported: 0,
            sent: vec![None; defs.len()],
            prefix,
            pending: vec![0; defs.len()],
            definitions: defs,
            allowed,
            public,
            anonymous,
            denied,
            would_deny,
            cache_hits,
            cache_misses,
            cache_shared_hits,
            account_shared_hits,
            account_ok,
            account_failed,
            providers,
        }
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
        if let Some(p) = self.pending.get_mut(self.waiting) {
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
        if let Some(Some(p)) = self.providers.get(provider).copied() {
            self.set_gauge(p.version, version, out);
            if let Some(ms) = age_ms {
                self.set_gauge(p.age, ms / 1000, out);
            }
            self.set_gauge(p.stale, u64::from(stale), out);
        }
    }

    fn bump(&mut self, index: usize) {
        if let Some(n) = self.pending.get_mut(index) {
            *n = n.saturating_add(1);
        }
    }

    /// A request let through: after authentication, by a public rule, or without a
    /// credential on an optional rule.
    pub fn allowed(&mut self, public: bool, anonymous: bool) {
        let index = match (public, anonymous) {
            (true, _) => self.public,
            (false, true) => self.anonymous,
            (false, false) => self.allowed,
        };
        self.bump(index);
    }

    /// A denial answered (enforce) or only reported (audit); an enforced one also under
    /// the provider that refused the token, if one judged it.
    pub fn denied(&mut self, denial: &Denial, audit: bool, provider: Option<usize>) {
        let base = if audit { self.would_deny } else { self.denied };
        let reason = denial.reason();
        if let Some(i) = Denial::all().iter().position(|d| d.reason() == reason) {
            self.bump(base + i);
            let by_provider = provider.and_then(|p| self.provider_denied.get(p)).copied();
            if let (false, Some(first)) = (audit, by_provider) {
                self.bump(first + i);
            }
        }
    }

    /// A token from this VM's cache.
    pub fn cache_hit(&mut self) {
        self.bump(self.cache_hits);
    }

    /// A token authenticated now: from another VM's verdict, or by its signature.
    pub fn authenticated(&mut self, shared_hit: bool) {
        let index = if shared_hit {
            self.cache_shared_hits
        } else {
            self.cache_misses
        };
        self.bump(index);
    }

    /// An account answer adopted from another VM.
    pub fn account_shared_hit(&mut self) {
        self.bump(self.account_shared_hits);
    }

    /// The account service answered (200 or 404: `true`) or failed.
    pub fn account(&mut self, ok: bool) {
        let index = if ok {
            self.account_ok
        } else {
            self.account_failed
        };
        self.bump(index);
    }

    /// This VM took over a fetch whose holder never finished it.
    pub fn takeover(&mut self, provider: usize) {
        if let Some(Some(p)) = self.providers.get(provider).copied() {
            self.bump(p.takeovers);
        }
    }

    /// This VM adopted a key set of `keys` keys another VM fetched.
    pub fn adopted(&mut self, provider: usize, keys: usize, out: &mut Vec<Effect>) {
        if let Some(Some(p)) = self.providers.get(provider).copied() {
            self.bump(p.adopted);
            self.set_gauge(p.keys_loaded, keys as u64, out);
        }
    }

    /// A JWKS fetch of this VM finished: `Some(keys)` loaded, or `None` failed.
    pub fn fetched(&mut self, provider: usize, keys: Option<usize>, out: &mut Vec<Effect>) {
        let Some(Some(p)) = self.providers.get(provider).copied() else {
            return;
        };
        match keys {
            Some(n) => {
                self.bump(p.fetch_ok);
                self.set_gauge(p.keys_loaded, n as u64, out);
            }
            None => self.bump(p.fetch_failed),
        }
    }

    /// A token of `provider` refused as revoked (`true`), or passed unchecked because
    /// its list never loaded (`false`).
    pub fn revocation(&mut self, provider: usize, revoked: bool) {
        if let Some(Some((r, u))) = self.revoked.get(provider).copied() {
            self.bump(if revoked { r } else { u });
        }
    }

    /// What the replay store said of a DPoP proof of `provider`.
    pub fn proof(&mut self, provider: usize, claimed: crate::sender::replay::Claimed) {
        use crate::sender::replay::Claimed;
        if let Some(Some(m)) = self.proofs.get(provider).copied() {
            let [accepted, replayed, full] = m;
            self.bump(match claimed {
                Claimed::Fresh => accepted,
                Claimed::Replayed => replayed,
                Claimed::Full | Claimed::Failed => full,
            });
        }
    }

    /// A fetch of revocation list `list` by this VM succeeded (`true`) or failed.
    pub fn list_fetched(&mut self, list: usize, ok: bool) {
        if let Some(m) = self.lists.get(list).copied() {
            self.bump(if ok { m.fetch_ok } else { m.fetch_failed });
        }
    }

    /// The list in force in this VM: its version and entries.
    pub fn list_in_force(
        &mut self,
        list: usize,
        (version, entries): (u64, usize),
        out: &mut Vec<Effect>,
    ) {
        if let Some(m) = self.lists.get(list).copied() {
            self.set_gauge(m.version, version, out);
            self.set_gauge(m.entries, entries as u64, out);
        }
    }

    /// A list's age (`None`: never fetched) and whether it is stale.
    pub fn list_health(
        &mut self,
        list: usize,
        (age_ms, stale): (Option<u64>, bool),
        out: &mut Vec<Effect>,
    ) {
        if let Some(m) = self.lists.get(list).copied() {
            if let Some(ms) = age_ms {
                self.set_gauge(m.age, ms / 1000, out);
            }
            self.set_gauge(m.stale, u64::from(stale), out);
        }
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

/// Defines `<prefix>.<reason>` for every denial; the index of the first.
fn defs_for(add: &mut impl FnMut(String, MetricKind) -> usize, prefix: &str) -> usize {
    let mut first = None;
    for d in Denial::all() {
        let i = add(format!("{prefix}.{}", d.reason()), MetricKind::Counter);
        first.get_or_insert(i);
    }
    first.unwrap_or(0)
}
