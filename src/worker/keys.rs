//! The key sets of one worker, a component: each provider's keys as this worker sees
//! them — adopting what another worker published, taking the process-wide lease when a
//! fetch is due, dispatching it (discovery first, where configured), and publishing what
//! came back.

use super::calls::Call;
use super::effects::{CallResponse, Host, Level};
use super::Cx;
use crate::config::Config;
use crate::keys::{interpret_discovery, interpret_fetch, KeySet, ProviderKeys};
use crate::shared::FetchError;

/// Per provider with a JWKS: its keys as this worker sees them.
pub struct KeySets {
    keys: Vec<Option<ProviderKeys>>,
}

impl KeySets {
    /// The key sets of a configuration's providers, none adopted yet.
    pub fn new(config: &Config) -> KeySets {
        let keys = config
            .providers
            .iter()
            .map(|p| {
                p.jwks
                    .as_ref()
                    .map(|j| ProviderKeys::for_source(j.fingerprint, j.policy, j.max_bytes))
            })
            .collect();
        KeySets { keys }
    }

    /// How many providers there are.
    pub fn providers(&self) -> usize {
        self.keys.len()
    }

    /// A provider's keys (`None`: it has no JWKS).
    pub fn get(&self, provider: usize) -> Option<&ProviderKeys> {
        self.keys.get(provider).and_then(Option::as_ref)
    }

    /// Reads a provider's process-wide key state, adopting a newer key set; whether
    /// requests waiting for its keys may decide now.
    pub fn sync(&mut self, provider: usize, now: u64, cx: &mut Cx) -> bool {
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return false;
        };
        let sync = keys.sync(cx.store, now);
        if let Some(version) = sync.adopted {
            let count = keys.keys().map_or(0, KeySet::len);
            let kids = keys.keys().map(|k| k.kids().join(",")).unwrap_or_default();
            cx.metrics.adopted(provider, count, cx.out);
            let name = cx.config.provider_name(provider);
            cx.debug(|| {
                format!("bearer-guard: provider {name}: adopted key set version {version} [{kids}]")
            });
        }
        sync.adopted.is_some() || sync.settled
    }

    /// The tick's part for a provider's keys: its health for the metrics, then a fetch
    /// if one is due.
    pub fn tick(&mut self, provider: usize, now: u64, host: &mut dyn Host, cx: &mut Cx) {
        if let Some(k) = self.get(provider) {
            let health = (k.version(), k.age_ms(now), k.stale(now));
            cx.metrics.key_set(provider, health, cx.out);
            self.start_fetch(provider, now, host, cx);
        }
    }

    /// A request needs a provider's keys (`refetch`: its `kid` is unknown): asks for a
    /// refetch if so, starts a due fetch when `host` can dispatch (else a tick does, this
    /// worker's or another's). Returns how long the request may wait, and `false` when the
    /// fetch was due but could not be made.
    pub fn await_keys(
        &mut self,
        (provider, refetch): (usize, bool),
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        cx: &mut Cx,
    ) -> (u64, bool) {
        if refetch {
            if let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) {
                keys.request_refetch(cx.store, now);
            }
        }
        let started = match host {
            Some(h) => self.start_fetch(provider, now, h, cx),
            None => true,
        };
        let timeout = self.get(provider).map_or(0, |k| k.policy().timeout_ms);
        (timeout, started)
    }

    /// Starts a fetch of a provider's keys if one is due for the process and this worker
    /// gets the lease. `false` when it was due but could not be dispatched (recorded as a
    /// failed fetch).
    pub fn start_fetch(
        &mut self,
        provider: usize,
        now: u64,
        host: &mut dyn Host,
        cx: &mut Cx,
    ) -> bool {
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return true;
        };
        let Some(takeover) = keys.try_start(cx.store, cx.id, now) else {
            return true;
        };
        let Some(src) = cx.config.jwks_of(provider) else {
            return true;
        };
        if takeover {
            cx.metrics.takeover(provider);
            cx.out.push(super::Effect::Log(
                Level::Info,
                format!(
                    "bearer-guard: provider {}: taking over a JWKS fetch whose worker never finished it",
                    cx.config.provider_name(provider)
                ),
            ));
        }
        // With discovery, the issuer's configuration document first; then (in its answer)
        // the keys where it says.
        let (call, path) = match &src.discovery {
            Some(d) => (Call::Discovery(provider), d.path.clone()),
            None => (Call::Jwks(provider), src.path.clone()),
        };
        let authority = src.authority.clone();
        self.call(provider, call, (&authority, &path), now, host, cx)
    }

    /// Dispatches one call of a key fetch (the lease is this worker's); a call that cannot
    /// be made fails the fetch.
    fn call(
        &mut self,
        provider: usize,
        call: Call,
        (authority, path): (&str, &str),
        now: u64,
        host: &mut dyn Host,
        cx: &mut Cx,
    ) -> bool {
        let Some(src) = cx.config.jwks_of(provider) else {
            return false;
        };
        let (cluster, timeout_ms) = (src.cluster.as_str(), src.policy.timeout_ms);
        match cx
            .calls
            .get(host, (cluster, authority, path), timeout_ms, call)
        {
            Ok(()) => true,
            Err(why) => {
                let why = why.to_string();
                let line = format!(
                    "bearer-guard: provider {}: JWKS fetch from cluster {cluster} not dispatched: {why}",
                    cx.config.provider_name(provider),
                );
                cx.out.push(super::Effect::Log(Level::Warn, line));
                cx.metrics.fetched(provider, None, cx.out);
                if let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) {
                    keys.finish(cx.store, now, Err(FetchError::NotDispatched(why)));
                }
                false
            }
        }
    }

    /// The issuer's configuration document: fetch the keys where it says, or fail.
    /// Whether the requests waiting for the keys may decide now (`false`: the JWKS call
    /// is under way).
    pub fn discovery_response(
        &mut self,
        provider: usize,
        response: &CallResponse,
        now: u64,
        host: &mut dyn Host,
        cx: &mut Cx,
    ) -> bool {
        let discovery = cx
            .config
            .jwks_of(provider)
            .and_then(|j| j.discovery.as_ref());
        let Some(d) = discovery else { return true };
        let body = (response.body)();
        let found = interpret_discovery(
            response.status.as_deref(),
            &body,
            &d.issuer,
            &d.allowed_hosts,
        );
        match found {
            Ok((authority, path)) => {
                let call = Call::Jwks(provider);
                !self.call(provider, call, (&authority, &path), now, host, cx)
            }
            Err(why) => {
                self.record(provider, Err(why), now, (0, 0), cx);
                true
            }
        }
    }

    /// A JWKS answer: publish it for the process (or record the failure). The requests
    /// waiting for the keys may decide afterwards.
    pub fn jwks_response(
        &mut self,
        provider: usize,
        response: &CallResponse,
        now: u64,
        host: &mut dyn Host,
        cx: &mut Cx,
    ) {
        let max_bytes = cx.config.jwks_of(provider).map_or(0, |j| j.max_bytes);
        let result = interpret_fetch(
            response.status.as_deref(),
            response.body_size,
            max_bytes,
            response.body,
        );
        let parse_ms = host.clock_ms().saturating_sub(now);
        self.record(provider, result, now, (response.body_size, parse_ms), cx);
    }

    fn record(
        &mut self,
        provider: usize,
        parsed: Result<(KeySet, usize, Vec<u8>), FetchError>,
        now: u64,
        (body_size, parse_ms): (usize, u64),
        cx: &mut Cx,
    ) {
        let name = cx.config.provider_name(provider).to_string();
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return;
        };
        match parsed {
            Ok((set, skipped, body)) => {
                let kids = set.kids().join(",");
                let count = set.len();
                let version = keys.finish(cx.store, now, Ok((set, body)));
                cx.metrics.fetched(provider, Some(count), cx.out);
                let version =
                    version.map_or("(not published)".to_string(), |v| format!("version {v}"));
                cx.out.push(super::Effect::Log(Level::Info, format!("bearer-guard: provider {name}: loaded keys [{kids}] ({skipped} JWKS entries skipped, {body_size} bytes read and parsed in {parse_ms} ms), {version} for every worker")));
            }
            Err(why) => {
                keys.finish(cx.store, now, Err(why.clone()));
                let kept = if keys.keys().is_some() {
                    "keeping previous keys"
                } else {
                    "no keys yet"
                };
                cx.metrics.fetched(provider, None, cx.out);
                cx.out.push(super::Effect::Log(
                    Level::Warn,
                    format!("bearer-guard: provider {name}: JWKS fetch failed: {why}; {kept}"),
                ));
            }
        }
    }
}
