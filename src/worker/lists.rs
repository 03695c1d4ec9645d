//! The revocation lists of one worker, a component: adopting what another worker
//! published, taking the process-wide lease when a refresh is due, dispatching it,
//! publishing what came back, reporting a list that went stale, and counting what the
//! revocation step noted. The same [`crate::shared::Fetched`] machine as key sets.

use super::calls::Call;
use super::effects::{CallResponse, Effect, Host, Level};
use super::Cx;
use crate::config::Config;
use crate::pipeline::RevocationNote;
use crate::revocation::{Limits, RevocationList};
use crate::shared::{fetched_body, FetchError, Fetched, KeyAvailability};

/// One revocation list as one worker sees it.
pub type List = Fetched<RevocationList>;

/// This worker's view of one list, beyond the fetched document.
#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    /// Reported stale (gauge set).
    stale: bool,
    /// A request passed unchecked since the list was last in force (warned once).
    warned_unchecked: bool,
}

/// The configuration's revocation lists, one per source.
pub struct Lists {
    lists: Vec<(List, Flags)>,
}

impl Lists {
    /// The lists of a configuration, none adopted yet.
    pub fn new(config: &Config) -> Lists {
        let lists = config
            .revocations
            .iter()
            .map(|r| {
                let limits = Limits {
                    max_entries: r.max_entries,
                    clock_skew_s: config.clock_skew_s,
                };
                let prefix = format!("bearer_guard.revocation.{:016x}", r.fingerprint);
                (Fetched::new(prefix, r.policy, limits), Flags::default())
            })
            .collect();
        Lists { lists }
    }

    /// How many lists there are.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether the configuration has none.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// A list's availability at `now` and the list once loaded.
    pub fn view(&self, list: usize, now: u64) -> (KeyAvailability, Option<&RevocationList>) {
        match self.lists.get(list) {
            Some((l, _)) => (l.availability(now), l.doc()),
            None => (KeyAvailability::Unavailable, None),
        }
    }

    /// Reads a list's process-wide state, adopting a newer version, and reports
    /// staleness; whether requests waiting for it may decide now.
    pub fn sync(&mut self, list: usize, now: u64, cx: &mut Cx) -> bool {
        let Some((l, flags)) = self.lists.get_mut(list) else {
            return false;
        };
        let sync = l.sync(cx.store, now);
        let in_force = l.doc().map(|d| (l.version(), d.len()));
        flags.stale = l.stale(now);
        if sync.adopted.is_some() {
            flags.warned_unchecked = false;
        }
        if let (Some(version), Some(force)) = (sync.adopted, in_force) {
            cx.metrics.list_in_force(list, force, cx.out);
            let name = cx.config.revocation_name(list);
            cx.debug(|| {
                format!("bearer-guard: provider {name}: adopted revocation list version {version} ({} entries)", force.1)
            });
        }
        cx.metrics
            .list_health(list, (l.age_ms(now), flags.stale), cx.out);
        sync.adopted.is_some() || sync.settled
    }

    /// Starts a refresh of a list if one is due for the process and this worker gets the
    /// lease; `false` when it was due but could not be dispatched.
    pub fn start_fetch(&mut self, list: usize, now: u64, host: &mut dyn Host, cx: &mut Cx) -> bool {
        let Some((l, _)) = self.lists.get_mut(list) else {
            return true;
        };
        if l.try_start(cx.store, cx.id, now).is_none() {
            return true;
        }
        let Some(src) = cx.config.revocations.get(list) else {
            return true;
        };
        let target = (
            src.cluster.as_str(),
            src.authority.as_str(),
            src.path.as_str(),
        );
        let timeout = src.policy.timeout_ms;
        match cx.calls.get(host, target, timeout, Call::Revocation(list)) {
            Ok(()) => true,
            Err(why) => {
                let why = format!("to cluster {}: {why}", src.cluster);
                self.record(list, Err(FetchError::NotDispatched(why)), now, cx);
                false
            }
        }
    }

    /// A request needs a list that is loading: starts the fetch when `host` can dispatch
    /// (else a tick does). Returns how long the request may wait, and `false` when the
    /// fetch was due but could not be made.
    pub fn await_list(
        &mut self,
        list: usize,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        cx: &mut Cx,
    ) -> (u64, bool) {
        let started = match host {
            Some(h) => self.start_fetch(list, now, h, cx),
            None => true,
        };
        let timeout = self
            .lists
            .get(list)
            .map_or(0, |(l, _)| l.policy().timeout_ms);
        (timeout, started)
    }

    /// A list's answer: publish it for the process (or record the failure). The requests
    /// waiting for it may decide afterwards.
    pub fn response(&mut self, list: usize, response: &CallResponse, now: u64, cx: &mut Cx) {
        let Some((l, _)) = self.lists.get_mut(list) else {
            return;
        };
        let limits = *l.limits();
        let max_bytes = cx.config.revocations.get(list).map_or(0, |r| r.max_bytes);
        let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        let body = fetched_body(
            response.status.as_deref(),
            response.body_size,
            (max_bytes, "revocation.max_bytes"),
            response.body,
        );
        // The same bytes as the list in force (the usual refresh): no parse at all.
        if let Ok(b) = &body {
            if l.renew_if_unchanged(cx.store, now, b) {
                cx.metrics.list_fetched(list, true);
                return;
            }
        }
        let parsed = body.and_then(|b| Ok((RevocationList::parse(&b, &limits, now_s)?, b)));
        self.record(list, parsed, now, cx);
    }

    fn record(
        &mut self,
        list: usize,
        parsed: Result<(RevocationList, Vec<u8>), FetchError>,
        now: u64,
        cx: &mut Cx,
    ) {
        let name = cx.config.revocation_name(list).to_string();
        let Some((l, _)) = self.lists.get_mut(list) else {
            return;
        };
        match parsed {
            Ok((doc, body)) => {
                let entries = doc.len();
                let before = l.version();
                let version = l.finish(cx.store, now, Ok((doc, body)));
                cx.metrics.list_fetched(list, true);
                if let Some(v) = version.filter(|v| *v != before) {
                    cx.metrics.list_in_force(list, (v, entries), cx.out);
                    cx.out.push(Effect::Log(Level::Info, format!("bearer-guard: provider {name}: loaded revocation list ({entries} entries), version {v} for every worker")));
                }
            }
            Err(why) => {
                l.finish(cx.store, now, Err(why.clone()));
                let kept = match l.doc() {
                    Some(d) => format!("keeping the previous list ({} entries)", d.len()),
                    None => "no list yet".to_string(),
                };
                cx.metrics.list_fetched(list, false);
                cx.out.push(Effect::Log(
                    Level::Warn,
                    format!("bearer-guard: provider {name}: revocation list fetch failed: {why}; {kept}"),
                ));
                self.sync(list, now, cx);
                if self.lists.get(list).is_some_and(|(_, f)| f.stale) {
                    let age = self
                        .lists
                        .get(list)
                        .and_then(|(l, _)| l.age_ms(now))
                        .map_or("never".to_string(), |ms| format!("{} s ago", ms / 1000));
                    cx.out.push(Effect::Log(
                        Level::Warn,
                        format!("bearer-guard: provider {name}: revocation list stale (last fetched {age}); its entries stay in force"),
                    ));
                }
            }
        }
    }

    /// Counts what the revocation check of `provider` noted; the first request passed
    /// unchecked since the list was last in force is logged at warn.
    pub fn noted(&mut self, provider: usize, note: RevocationNote, cx: &mut Cx) {
        match note {
            RevocationNote::None => {}
            RevocationNote::Revoked => cx.metrics.revocation(provider, true),
            RevocationNote::Unchecked => {
                cx.metrics.revocation(provider, false);
                let list = cx.config.revocation_of(provider).map(|(i, _)| i);
                if let Some((_, flags)) = list.and_then(|i| self.lists.get_mut(i)) {
                    if !flags.warned_unchecked {
                        flags.warned_unchecked = true;
                        let name = cx.config.provider_name(provider);
                        cx.out.push(Effect::Log(Level::Warn, format!("bearer-guard: provider {name}: revocation list never obtained: tokens pass unchecked (on_unavailable: allow)")));
                    }
                }
            }
        }
    }
}
