//! Metrics through proxy-wasm's metric API. Envoy shows them in `/stats` (and Prometheus
//! output) with its `wasmcustom.` prefix: `wasmcustom.bearer_guard.requests_allowed`.
//!
//! Counters accumulate in the VM and are flushed to the host on the root context's tick
//! (every 200 ms): a hostcall per request per counter would cost more than the rest of a
//! cached-token decision.

use super::host::{self, MetricKind};
use crate::config::Config;
use crate::reply::Denial;
use std::cell::Cell;

fn define(kind: MetricKind, name: &str) -> Option<u32> {
    host::define_metric(kind, &format!("bearer_guard.{name}")).ok()
}

/// A counter with increments not yet sent to the host.
#[derive(Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<i64>,
}

impl Counter {
    fn new(name: &str) -> Counter {
        Counter {
            id: define(MetricKind::Counter, name),
            pending: Cell::new(0),
        }
    }

    fn bump(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self) {
        let n = self.pending.replace(0);
        if let (true, Some(id)) = (n > 0, self.id) {
            let _ = host::increment_metric(id, n);
        }
    }
}

/// Per-provider JWKS metrics.
#[derive(Default)]
struct ProviderMetrics {
    fetch_ok: Counter,
    fetch_failed: Counter,
    takeovers: Counter,
    adopted: Counter,
    keys_loaded: Option<u32>,
}

/// Every metric, defined at configure time (Envoy shares stats by name across VMs).
pub(crate) struct Metrics {
    allowed: Counter,
    public: Counter,
    denied: Vec<(&'static str, Counter)>,
    would_deny: Vec<(&'static str, Counter)>,
    anonymous: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_shared_hits: Counter,
    account_shared_hits: Counter,
    account_ok: Counter,
    account_failed: Counter,
    providers: Vec<ProviderMetrics>,
}

impl Metrics {
    /// Defines every metric.
    pub(crate) fn define(config: &Config) -> Metrics {
        Metrics {
            allowed: Counter::new("requests_allowed"),
            public: Counter::new("public_passes"),
            denied: Denial::all()
                .iter()
                .map(|d| (d.reason(), Counter::new(&format!("denied.{}", d.reason()))))
                .collect(),
            would_deny: Denial::all()
                .iter()
                .map(|d| {
                    (
                        d.reason(),
                        Counter::new(&format!("would_deny.{}", d.reason())),
                    )
                })
                .collect(),
            anonymous: Counter::new("anonymous_passes"),
            cache_hits: Counter::new("token_cache_hits"),
            cache_misses: Counter::new("token_cache_misses"),
            cache_shared_hits: Counter::new("token_cache_shared_hits"),
            account_shared_hits: Counter::new("account_shared_hits"),
            account_ok: Counter::new("account_lookups_ok"),
            account_failed: Counter::new("account_lookups_failed"),
            providers: config
                .providers
                .iter()
                .map(|p| match p.jwks {
                    None => ProviderMetrics::default(),
                    Some(_) => ProviderMetrics {
                        fetch_ok: Counter::new(&format!("provider.{}.jwks_fetch_ok", p.name)),
                        fetch_failed: Counter::new(&format!(
                            "provider.{}.jwks_fetch_failed",
                            p.name
                        )),
                        takeovers: Counter::new(&format!(
                            "provider.{}.jwks_lease_takeovers",
                            p.name
                        )),
                        adopted: Counter::new(&format!("provider.{}.key_sets_adopted", p.name)),
                        keys_loaded: define(
                            MetricKind::Gauge,
                            &format!("provider.{}.keys_loaded", p.name),
                        ),
                    },
                })
                .collect(),
        }
    }

    /// A request let through: after authentication, by a public rule, or without a
    /// credential on an optional rule.
    pub(crate) fn allowed(&self, public: bool, anonymous: bool) {
        if public {
            &self.public
        } else if anonymous {
            &self.anonymous
        } else {
            &self.allowed
        }
        .bump();
    }

    /// A denial answered (enforce) or only reported (audit).
    pub(crate) fn denied(&self, denial: &Denial, audit: bool) {
        let reason = denial.reason();
        let counters = if audit {
            &self.would_deny
        } else {
            &self.denied
        };
        if let Some((_, c)) = counters.iter().find(|(r, _)| *r == reason) {
            c.bump();
        }
    }

    /// A token from this VM's cache.
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.bump();
    }

    /// A token authenticated now: from another VM's verdict, or by its signature.
    pub(crate) fn authenticated(&self, shared_hit: bool) {
        if shared_hit {
            &self.cache_shared_hits
        } else {
            &self.cache_misses
        }
        .bump();
    }

    /// An account answer adopted from another VM.
    pub(crate) fn account_shared_hit(&self) {
        self.account_shared_hits.bump();
    }

    /// This VM took over a fetch whose holder never finished it.
    pub(crate) fn takeover(&self, provider: usize) {
        if let Some(p) = self.providers.get(provider) {
            p.takeovers.bump();
        }
    }

    /// This VM adopted a key set another VM fetched.
    pub(crate) fn adopted(&self, provider: usize, keys: usize) {
        if let Some(p) = self.providers.get(provider) {
            p.adopted.bump();
            if let Some(id) = p.keys_loaded {
                let _ = host::record_metric(id, keys as u64);
            }
        }
    }

    pub(crate) fn account(&self, ok: bool) {
        if ok {
            &self.account_ok
        } else {
            &self.account_failed
        }
        .bump();
    }

    pub(crate) fn jwks(&self, provider: usize, ok: bool, keys: usize) {
        let Some(p) = self.providers.get(provider) else {
            return;
        };
        if ok { &p.fetch_ok } else { &p.fetch_failed }.bump();
        if let (true, Some(id)) = (ok, p.keys_loaded) {
            let _ = host::record_metric(id, keys as u64);
        }
    }

    /// Sends accumulated counts to the host.
    pub(crate) fn flush(&self) {
        let fixed = [
            &self.allowed,
            &self.public,
            &self.cache_hits,
            &self.cache_misses,
            &self.cache_shared_hits,
            &self.account_shared_hits,
            &self.account_ok,
            &self.account_failed,
        ];
        fixed
            .into_iter()
            .chain(self.denied.iter().map(|(_, c)| c))
            .chain(self.would_deny.iter().map(|(_, c)| c))
            .chain([&self.anonymous])
            .for_each(Counter::flush);
        for p in &self.providers {
            p.fetch_ok.flush();
            p.fetch_failed.flush();
            p.takeovers.flush();
            p.adopted.flush();
        }
    }
}
