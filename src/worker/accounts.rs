//! The account lookups of one worker, a component: its cache of answers per provider, the
//! process-wide answers it shares with the other workers, and its lookups in flight or
//! deferred to the next tick. One call per identity for the whole process (a claim in the
//! shared store), answers kept for the lifetime they deserve.

use super::calls::Call;
use super::effects::{CallResponse, Effect, Host, Level, Outgoing};
use super::waiting::Event;
use super::{Cx, ACCOUNT_CLAIM_GRACE_MS, UNCACHED_ANSWER_MS};
use crate::account::{interpret, AccountCache, AccountState, SharedAccount, SharedAccounts};
use crate::config::Config;
use std::collections::HashMap;

/// How long this worker's own account lookup counts as in flight when its answer never
/// came (the context that made the call went away): then it is given up.
pub const LOST_LOOKUP_MS: u64 = 61_000;

/// An account lookup to dispatch from the next tick (a request woken inside another
/// context's callback cannot make a call that outlives that callback).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deferred {
    provider: usize,
    key: String,
    path: String,
    request_id: String,
}

/// Account lookups and their answers.
pub struct Accounts {
    /// Per provider with an account service: this worker's cache of its answers.
    caches: Vec<Option<AccountCache>>,
    /// The process-wide answers (`None`: that level is off).
    shared: Option<SharedAccounts>,
    /// This worker's lookups in flight or deferred: key → since (ms).
    in_flight: HashMap<String, u64>,
    deferred: Vec<Deferred>,
}

impl Accounts {
    /// The account caches of a configuration's providers.
    pub fn new(config: &Config) -> Accounts {
        let caches = config
            .providers
            .iter()
            .map(|p| p.account.as_ref().map(|a| AccountCache::new(a.max_entries)))
            .collect();
        let slots = config.shared.accounts;
        Accounts {
            caches,
            shared: (slots > 0).then(|| SharedAccounts::new(slots)),
            in_flight: HashMap::new(),
            deferred: Vec::new(),
        }
    }

    /// This worker's cached answer for `key` of `provider` at `now`.
    pub fn get(&self, provider: usize, key: &str, now: u64) -> AccountState<'_> {
        self.caches
            .get(provider)
            .and_then(Option::as_ref)
            .map_or(AccountState::Unknown, |c| c.get(key, now))
    }

    /// Adopts a process-wide answer into this worker's cache: `true` when there is one to
    /// decide with.
    pub fn adopt(&mut self, provider: usize, key: &str, now: u64, cx: &mut Cx) -> bool {
        let answer = self.shared.and_then(|s| s.read(cx.store, key));
        let Some(SharedAccount::Resolved(account, until)) = answer else {
            return false;
        };
        if until <= now {
            return false;
        }
        let Some(Some(cache)) = self.caches.get_mut(provider) else {
            return false;
        };
        cache.insert(key.to_string(), account, now, until - now);
        cx.metrics.account_shared_hit();
        true
    }

    /// A request needs the account of `key`: unless this worker or another already asks,
    /// claim the lookup and call (now with `host`, else from the next tick). Returns how
    /// long the request may wait, and `false` when the call could not be made.
    pub fn await_account(
        &mut self,
        (provider, key, path): (usize, &str, String),
        request_id: &str,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        cx: &mut Cx,
    ) -> (u64, bool) {
        let timeout = cx.config.account_of(provider).map_or(0, |a| a.timeout_ms);
        let lease = timeout.saturating_add(ACCOUNT_CLAIM_GRACE_MS);
        let asked = self.in_flight.contains_key(key)
            || self
                .shared
                .is_some_and(|a| !a.claim(cx.store, key, now, lease));
        let lookup = Deferred {
            provider,
            key: key.to_string(),
            path,
            request_id: request_id.to_string(),
        };
        let started = match (asked, host) {
            // This worker or another one already asks: wait for that answer.
            (true, _) => true,
            (false, Some(h)) => self.start(&lookup, now, h, cx),
            (false, None) => {
                self.in_flight.insert(lookup.key.clone(), now);
                self.deferred.push(lookup);
                true
            }
        };
        (timeout, started)
    }

    /// Dispatches an account lookup.
    fn start(&mut self, lookup: &Deferred, now: u64, host: &mut dyn Host, cx: &mut Cx) -> bool {
        let Some(src) = cx.config.account_of(lookup.provider) else {
            return false;
        };
        let outgoing = Outgoing {
            cluster: &src.cluster,
            headers: vec![
                (":method", "GET"),
                (":path", lookup.path.as_str()),
                (":authority", src.authority.as_str()),
                ("accept", "application/json"),
                ("x-request-id", lookup.request_id.as_str()),
            ],
            timeout_ms: src.timeout_ms,
        };
        match host.dispatch(&outgoing) {
            Ok(token) => {
                cx.debug(|| {
                    format!(
                        "bearer-guard: account lookup dispatched on cluster {}",
                        src.cluster
                    )
                });
                let call = Call::Account {
                    provider: lookup.provider,
                    key: lookup.key.clone(),
                };
                cx.calls.started(token, call);
                self.in_flight.insert(lookup.key.clone(), now);
                true
            }
            Err(why) => {
                cx.out.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "bearer-guard: account lookup on cluster {} not dispatched: {why}",
                        src.cluster
                    ),
                ));
                self.in_flight.remove(&lookup.key);
                if let Some(accounts) = self.shared {
                    accounts.resolve(cx.store, &lookup.key, Err(()), 0, now);
                }
                false
            }
        }
    }

    /// The account service's answer: kept for this worker and the process with the
    /// lifetime it deserves (found: `ttl_s`, not found: `negative_ttl_s`, failed: not
    /// kept). The requests waiting for it may decide afterwards.
    pub fn response(
        &mut self,
        (provider, key): (usize, &str),
        response: &CallResponse,
        now: u64,
        cx: &mut Cx,
    ) {
        self.in_flight.remove(key);
        let Some(src) = cx.config.account_of(provider) else {
            return;
        };
        let result = interpret(response.status.as_deref(), &(response.body)());
        cx.metrics.account(result.is_ok());
        match result {
            Ok(found) => {
                let ttl = if found.is_some() {
                    src.ttl_ms
                } else {
                    src.negative_ttl_ms
                };
                // A ttl of 0 caches nothing, but the requests that waited for this answer
                // get it: here in the same instant, in other workers within a second.
                if let Some(shared) = self.shared {
                    let kept = if ttl == 0 { UNCACHED_ANSWER_MS } else { ttl };
                    let until = now.saturating_add(kept);
                    shared.resolve(cx.store, key, Ok(found.clone()), until, now);
                }
                if let Some(Some(cache)) = self.caches.get_mut(provider) {
                    cache.insert(key.to_string(), found, now, ttl.max(1));
                }
            }
            // Not cached: the waiters get 500 and the next request asks again.
            Err(why) => {
                cx.out.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "bearer-guard: account lookup on cluster {} failed: {why}",
                        src.cluster
                    ),
                ));
                if let Some(shared) = self.shared {
                    shared.resolve(cx.store, key, Err(()), 0, now);
                }
            }
        }
    }

    /// The tick's part for accounts: dispatch deferred lookups, and see which of the
    /// events waited for (`waited_for`) another worker has answered, failed or whose claim
    /// lapsed. Returns the events whose requests may decide now.
    pub fn tick(
        &mut self,
        waited_for: &[Event],
        now: u64,
        host: &mut dyn Host,
        cx: &mut Cx,
    ) -> Vec<Event> {
        let mut ready = Vec::new();
        for lookup in std::mem::take(&mut self.deferred) {
            if !self.start(&lookup, now, host, cx) {
                ready.push(Event::Account(lookup.provider, lookup.key));
            }
        }
        for wait in waited_for {
            let Event::Account(provider, key) = wait else {
                continue;
            };
            let answered = !self.in_flight.contains_key(key)
                && self
                    .shared
                    .and_then(|a| a.read(cx.store, key))
                    .is_none_or(|state| !matches!(state, SharedAccount::Pending(_)));
            if answered {
                self.adopt(*provider, key, now, cx);
                ready.push(wait.clone());
            }
        }
        ready
    }

    /// Gives up this worker's lookups whose answer never came: their keys (their waiting
    /// requests are decided without them, and a late answer is ignored).
    pub fn lost(&mut self, now: u64, cx: &mut Cx) -> Vec<String> {
        let lost: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, &since)| now >= since.saturating_add(LOST_LOOKUP_MS))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &lost {
            self.in_flight.remove(key);
            cx.calls.give_up_account(key);
        }
        lost
    }
}
