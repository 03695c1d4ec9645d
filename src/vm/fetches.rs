//! Key fetches of one VM: adopting what another VM published, taking the process-wide
//! lease when a fetch is due, dispatching it (discovery first, where configured), and
//! publishing what came back.

use super::{CallResponse, Effect, Host, Level, Outgoing, Vm};
use crate::keys::{interpret_discovery, interpret_fetch, KeySet};
use crate::vm::waiters::{Call, Event};

impl Vm {
    /// Reads a provider's process-wide key state, adopting a newer key set; whether
    /// requests waiting for its keys may decide now.
    pub(super) fn sync_keys(&mut self, provider: usize, now: u64, out: &mut Vec<Effect>) -> bool {
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return false;
        };
        let sync = keys.sync(&*self.store, now);
        if let Some(version) = sync.adopted {
            let count = keys.keys().map_or(0, KeySet::len);
            let kids = keys.keys().map(|k| k.kids().join(",")).unwrap_or_default();
            self.metrics.adopted(provider, count, out);
            self.debug(out, || {
                let name = self.config.provider_name(provider);
                format!("bearer-guard: provider {name}: adopted key set version {version} [{kids}]")
            });
        }
        sync.adopted.is_some() || sync.settled
    }

    /// A request needs a provider's keys (`refetch`: its `kid` is unknown): asks for a
    /// refetch if so, starts a due fetch when `host` can dispatch (else a tick does, this
    /// VM's or another's). Returns how long the request may wait, and `false` when the
    /// fetch was due but could not be made.
    pub(super) fn await_keys(
        &mut self,
        provider: usize,
        refetch: bool,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        out: &mut Vec<Effect>,
    ) -> (u64, bool) {
        if refetch {
            if let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) {
                keys.request_refetch(&*self.store, now);
            }
        }
        let started = match host {
            Some(h) => self.start_fetch(provider, now, h, out),
            None => true,
        };
        let timeout = self
            .provider_keys(provider)
            .map_or(0, |k| k.policy().timeout_ms);
        (timeout, started)
    }

    /// Starts a fetch of a provider's keys if one is due for the process and this VM gets
    /// the lease. `false` when it was due but could not be dispatched (recorded as a
    /// failed fetch).
    pub(super) fn start_fetch(
        &mut self,
        provider: usize,
        now: u64,
        host: &mut dyn Host,
        out: &mut Vec<Effect>,
    ) -> bool {
        let id = self.id;
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return true;
        };
        let Some(takeover) = keys.try_start(&*self.store, id, now) else {
            return true;
        };
        let Some(src) = self.config.jwks_of(provider) else {
            return true;
        };
        if takeover {
            self.metrics.takeover(provider);
            out.push(Effect::Log(
                Level::Info,
                format!(
                    "bearer-guard: provider {}: taking over a JWKS fetch whose VM never finished it",
                    self.config.provider_name(provider)
                ),
            ));
        }
        // With discovery, the issuer's configuration document first; then (in its answer)
        // the keys where it says.
        let (call, authority, path) = match &src.discovery {
            Some(d) => (
                Call::Discovery(provider),
                src.authority.clone(),
                d.path.clone(),
            ),
            None => (
                Call::Jwks(provider),
                src.authority.clone(),
                src.path.clone(),
            ),
        };
        self.key_call(provider, call, &authority, &path, now, host, out)
    }

    /// Dispatches one call of a key fetch (the lease is this VM's); a call that cannot be
    /// made fails the fetch.
    #[allow(clippy::too_many_arguments)]
    fn key_call(
        &mut self,
        provider: usize,
        call: Call,
        authority: &str,
        path: &str,
        now: u64,
        host: &mut dyn Host,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(src) = self.config.jwks_of(provider) else {
            return false;
        };
        let (cluster, timeout_ms) = (src.cluster.clone(), src.policy.timeout_ms);
        match self.dispatch_get((&cluster, authority, path), timeout_ms, call, now, host) {
            Ok(()) => true,
            Err(why) => {
                let line = format!(
                    "bearer-guard: provider {}: JWKS fetch from cluster {cluster} not dispatched: {why}",
                    self.config.provider_name(provider),
                );
                out.push(Effect::Log(Level::Warn, line));
                self.metrics.fetched(provider, None, out);
                if let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) {
                    keys.finish(&*self.store, now, Err("not dispatched".into()));
                }
                false
            }
        }
    }

    /// Dispatches a GET of a fetched document (`(cluster, authority, path)`) and records
    /// the call as `call`; `Err` when the host could not make it.
    pub(super) fn dispatch_get(
        &mut self,
        (cluster, authority, path): (&str, &str, &str),
        timeout_ms: u64,
        call: Call,
        now: u64,
        host: &mut dyn Host,
    ) -> Result<(), String> {
        let outgoing = Outgoing {
            cluster,
            headers: vec![
                (":method", "GET"),
                (":path", path),
                (":authority", authority),
                ("accept", "application/json"),
            ],
            timeout_ms,
        };
        let token = host.dispatch(&outgoing)?;
        self.waiters.call_started(token, call, now);
        Ok(())
    }

    /// The issuer's configuration document: fetch the keys where it says, or fail.
    pub(super) fn discovery_response(
        &mut self,
        provider: usize,
        response: &CallResponse,
        now: u64,
        host: &mut dyn Host,
        out: &mut Vec<Effect>,
    ) {
        let discovery = self
            .config
            .jwks_of(provider)
            .and_then(|j| j.discovery.as_ref());
        let Some(d) = discovery else { return };
        let body = (response.body)();
        let found = interpret_discovery(
            response.status.as_deref(),
            &body,
            &d.issuer,
            &d.allowed_hosts,
        );
        match found {
            Ok((authority, path)) => {
                if self.key_call(
                    provider,
                    Call::Jwks(provider),
                    &authority,
                    &path,
                    now,
                    host,
                    out,
                ) {
                    return;
                }
            }
            Err(why) => self.record_fetch(provider, Err(why), now, (0, 0), out),
        }
        self.wake(&Event::Keys(provider), now, out);
    }

    /// A JWKS answer: publish it for the process (or record the failure), then let the
    /// requests that waited for it decide.
    pub(super) fn jwks_response(
        &mut self,
        provider: usize,
        response: &CallResponse,
        now: u64,
        host: &mut dyn Host,
        out: &mut Vec<Effect>,
    ) {
        let max_bytes = self.config.jwks_of(provider).map_or(0, |j| j.max_bytes);
        let result = interpret_fetch(
            response.status.as_deref(),
            response.body_size,
            max_bytes,
            response.body,
        );
        let parse_ms = host.clock_ms().saturating_sub(now);
        self.record_fetch(provider, result, now, (response.body_size, parse_ms), out);
        self.wake(&Event::Keys(provider), now, out);
    }

    fn record_fetch(
        &mut self,
        provider: usize,
        parsed: Result<(KeySet, usize, Vec<u8>), String>,
        now: u64,
        (body_size, parse_ms): (usize, u64),
        out: &mut Vec<Effect>,
    ) {
        let name = self.config.provider_name(provider).to_string();
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return;
        };
        match parsed {
            Ok((set, skipped, body)) => {
                let kids = set.kids().join(",");
                let count = set.len();
                let version = keys.finish(&*self.store, now, Ok((set, body)));
                self.metrics.fetched(provider, Some(count), out);
                let version =
                    version.map_or("(not published)".to_string(), |v| format!("version {v}"));
                out.push(Effect::Log(Level::Info, format!("bearer-guard: provider {name}: loaded keys [{kids}] ({skipped} JWKS entries skipped, {body_size} bytes read and parsed in {parse_ms} ms), {version} for every worker")));
            }
            Err(why) => {
                keys.finish(&*self.store, now, Err(why.clone()));
                let kept = if keys.keys().is_some() {
                    "keeping previous keys"
                } else {
                    "no keys yet"
                };
                self.metrics.fetched(provider, None, out);
                out.push(Effect::Log(
                    Level::Warn,
                    format!("bearer-guard: provider {name}: JWKS fetch failed: {why}; {kept}"),
                ));
            }
        }
    }
}
