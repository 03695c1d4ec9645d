//! Metrics through proxy-wasm's metric API. Envoy shows them in `/stats` (and Prometheus
//! output) with its `wasmcustom.` prefix: `wasmcustom.bearer_guard.requests_allowed`.

use crate::config::Config;
use crate::reply::Denial;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Metric ids defined at configure time.
pub(crate) struct Metrics {
    allowed: Option<u32>,
    public: Option<u32>,
    denied: Vec<(&'static str, Option<u32>)>,
    cache_hits: Option<u32>,
    cache_misses: Option<u32>,
    account_ok: Option<u32>,
    account_failed: Option<u32>,
    /// Per provider: (jwks_fetch_ok, jwks_fetch_failed, keys_loaded).
    providers: Vec<(Option<u32>, Option<u32>, Option<u32>)>,
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, &format!("bearer_guard.{name}")).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    /// Defines every metric (idempotent across VMs: Envoy shares stats by name).
    pub(crate) fn define(config: &Config) -> Metrics {
        Metrics {
            allowed: define(MetricType::Counter, "requests_allowed"),
            public: define(MetricType::Counter, "public_passes"),
            denied: Denial::all()
                .iter()
                .map(|d| {
                    (
                        d.reason(),
                        define(MetricType::Counter, &format!("denied.{}", d.reason())),
                    )
                })
                .collect(),
            cache_hits: define(MetricType::Counter, "token_cache_hits"),
            cache_misses: define(MetricType::Counter, "token_cache_misses"),
            account_ok: define(MetricType::Counter, "account_lookups_ok"),
            account_failed: define(MetricType::Counter, "account_lookups_failed"),
            providers: config
                .providers
                .iter()
                .map(|p| {
                    if p.jwks.is_none() {
                        return (None, None, None);
                    }
                    let n = &p.name;
                    (
                        define(MetricType::Counter, &format!("provider.{n}.jwks_fetch_ok")),
                        define(
                            MetricType::Counter,
                            &format!("provider.{n}.jwks_fetch_failed"),
                        ),
                        define(MetricType::Gauge, &format!("provider.{n}.keys_loaded")),
                    )
                })
                .collect(),
        }
    }

    pub(crate) fn allowed(&self, public: bool) {
        bump(if public { self.public } else { self.allowed });
    }

    pub(crate) fn denied(&self, denial: &Denial) {
        let reason = denial.reason();
        bump(
            self.denied
                .iter()
                .find(|(r, _)| *r == reason)
                .and_then(|(_, id)| *id),
        );
    }

    pub(crate) fn cache(&self, hit: bool) {
        bump(if hit {
            self.cache_hits
        } else {
            self.cache_misses
        });
    }

    pub(crate) fn account(&self, ok: bool) {
        bump(if ok {
            self.account_ok
        } else {
            self.account_failed
        });
    }

    pub(crate) fn jwks(&self, provider: usize, ok: bool, keys: usize) {
        let Some((fetch_ok, fetch_failed, loaded)) = self.providers.get(provider) else {
            return;
        };
        bump(if ok { *fetch_ok } else { *fetch_failed });
        if let (true, Some(id)) = (ok, loaded) {
            let _ = hostcalls::record_metric(*id, keys as u64);
        }
    }
}
