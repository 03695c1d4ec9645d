//! Revocation lists of one VM: adopting what another VM published, taking the
//! process-wide lease when a refresh is due, dispatching it, publishing what came back,
//! and reporting a list that went stale. The same [`crate::fetched`] machine as key sets.

use super::{CallResponse, Effect, Host, Level, Vm};
use crate::pipeline::RevocationNote;
use crate::revocation::{Limits, RevocationList};
use crate::shared::{fetched_body, Fetched};
use crate::vm::waiters::{Call, Event};

/// One revocation list as one VM sees it.
pub type List = Fetched<RevocationList>;

/// This VM's view of one list, beyond the fetched document.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ListFlags {
    /// Reported stale (gauge set).
    stale: bool,
    /// A request passed unchecked since the list was last in force (warned once).
    warned_unchecked: bool,
}

/// The lists of a configuration, one per source, as VM state.
pub(super) fn lists(config: &crate::config::Config) -> Vec<(List, ListFlags)> {
    config
        .revocations
        .iter()
        .map(|r| {
            let limits = Limits {
                max_entries: r.max_entries,
                clock_skew_s: config.clock_skew_s,
            };
            let prefix = format!("bearer_guard.revocation.{:016x}", r.fingerprint);
            (Fetched::new(prefix, r.policy, limits), ListFlags::default())
        })
        .collect()
}

impl Vm {
    /// Reads a list's process-wide state, adopting a newer version, and reports
    /// staleness; whether requests waiting for it may decide now.
    pub(super) fn sync_revocation(&mut self, list: usize, now: u64, out: &mut Vec<Effect>) -> bool {
        let Some((l, flags)) = self.lists.get_mut(list) else {
            return false;
        };
        let sync = l.sync(&*self.store, now);
        let in_force = l.doc().map(|d| (l.version(), d.len()));
        let stale = l.stale(now);
        let age = l.age_ms(now);
        flags.stale = stale;
        if sync.adopted.is_some() {
            flags.warned_unchecked = false;
        }
        if let (Some(version), Some(force)) = (sync.adopted, in_force) {
            self.metrics.list_in_force(list, force, out);
            self.debug(out, || {
                let name = self.config.revocation_name(list);
                format!("bearer-guard: provider {name}: adopted revocation list version {version} ({} entries)", force.1)
            });
        }
        self.metrics.list_health(list, (age, stale), out);
        sync.adopted.is_some() || sync.settled
    }

    /// Starts a refresh of a list if one is due for the process and this VM gets the
    /// lease; `false` when it was due but could not be dispatched.
    pub(super) fn start_revocation_fetch(
        &mut self,
        list: usize,
        now: u64,
        host: &mut dyn Host,
        out: &mut Vec<Effect>,
    ) -> bool {
        let id = self.id;
        let Some((l, _)) = self.lists.get_mut(list) else {
            return true;
        };
        if l.try_start(&*self.store, id, now).is_none() {
            return true;
        }
        let Some(src) = self.config.revocations.get(list) else {
            return true;
        };
        let (cluster, authority, path) =
            (src.cluster.clone(), src.authority.clone(), src.path.clone());
        let timeout = src.policy.timeout_ms;
        let call = Call::Revocation(list);
        match self.dispatch_get((&cluster, &authority, &path), timeout, call, now, host) {
            Ok(()) => true,
            Err(why) => {
                let why = format!("not dispatched to cluster {cluster}: {why}");
                self.record_revocation(list, Err(why), now, out);
                false
            }
        }
    }

    /// A request needs a list that is loading: starts the fetch when `host` can dispatch
    /// (else a tick does). Returns how long the request may wait, and `false` when the
    /// fetch was due but could not be made.
    pub(super) fn await_revocation(
        &mut self,
        list: usize,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        out: &mut Vec<Effect>,
    ) -> (u64, bool) {
        let started = match host {
            Some(h) => self.start_revocation_fetch(list, now, h, out),
            None => true,
        };
        let timeout = self
            .lists
            .get(list)
            .map_or(0, |(l, _)| l.policy().timeout_ms);
        (timeout, started)
    }

    /// A list's answer: publish it for the process (or record the failure), then let the
    /// requests that waited for it decide.
    pub(super) fn revocation_response(
        &mut self,
        list: usize,
        response: &CallResponse,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some((l, _)) = self.lists.get(list) else {
            return;
        };
        let limits = *l.limits();
        let max_bytes = self.config.revocations.get(list).map_or(0, |r| r.max_bytes);
        let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        let body = fetched_body(
            response.status.as_deref(),
            response.body_size,
            (max_bytes, "revocation.max_bytes"),
            response.body,
        );
        // The same bytes as the list in force (the usual refresh): no parse at all.
        let renewed = match (&body, self.lists.get_mut(list)) {
            (Ok(b), Some((l, _))) => l.renew_if_unchanged(&*self.store, now, b),
            _ => false,
        };
        if renewed {
            self.metrics.list_fetched(list, true);
        } else {
            let parsed = body.and_then(|b| Ok((RevocationList::parse(&b, &limits, now_s)?, b)));
            self.record_revocation(list, parsed, now, out);
        }
        self.wake(&Event::Revocation(list), now, out);
    }

    fn record_revocation(
        &mut self,
        list: usize,
        parsed: Result<(RevocationList, Vec<u8>), String>,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let name = self.config.revocation_name(list).to_string();
        let Some((l, _)) = self.lists.get_mut(list) else {
            return;
        };
        match parsed {
            Ok((doc, body)) => {
                let entries = doc.len();
                let before = l.version();
                let version = l.finish(&*self.store, now, Ok((doc, body)));
                self.metrics.list_fetched(list, true);
                if let Some(v) = version.filter(|v| *v != before) {
                    self.metrics.list_in_force(list, (v, entries), out);
                    out.push(Effect::Log(Level::Info, format!("bearer-guard: provider {name}: loaded revocation list ({entries} entries), version {v} for every worker")));
                }
            }
            Err(why) => {
                l.finish(&*self.store, now, Err(why.clone()));
                let kept = match l.doc() {
                    Some(d) => format!("keeping the previous list ({} entries)", d.len()),
                    None => "no list yet".to_string(),
                };
                self.metrics.list_fetched(list, false);
                out.push(Effect::Log(
                    Level::Warn,
                    format!("bearer-guard: provider {name}: revocation list fetch failed: {why}; {kept}"),
                ));
                self.sync_revocation(list, now, out);
                if self.list_stale(list) {
                    let age = self
                        .lists
                        .get(list)
                        .and_then(|(l, _)| l.age_ms(now))
                        .map_or("never".to_string(), |ms| format!("{} s ago", ms / 1000));
                    out.push(Effect::Log(
                        Level::Warn,
                        format!("bearer-guard: provider {name}: revocation list stale (last fetched {age}); its entries stay in force"),
                    ));
                }
            }
        }
    }

    fn list_stale(&self, list: usize) -> bool {
        self.lists.get(list).is_some_and(|(_, f)| f.stale)
    }

    /// Counts what the revocation check of `provider` noted; the first request passed
    /// unchecked since the list was last in force is logged at warn.
    pub(super) fn revocation_noted(
        &mut self,
        provider: usize,
        note: RevocationNote,
        out: &mut Vec<Effect>,
    ) {
        match note {
            RevocationNote::None => {}
            RevocationNote::Revoked => self.metrics.revocation(provider, true),
            RevocationNote::Unchecked => {
                self.metrics.revocation(provider, false);
                let list = self.config.revocation_of(provider).map(|(i, _)| i);
                if let Some((_, flags)) = list.and_then(|i| self.lists.get_mut(i)) {
                    if !flags.warned_unchecked {
                        flags.warned_unchecked = true;
                        let name = self.config.provider_name(provider);
                        out.push(Effect::Log(Level::Warn, format!("bearer-guard: provider {name}: revocation list never obtained: tokens pass unchecked (on_unavailable: allow)")));
                    }
                }
            }
        }
    }
}
