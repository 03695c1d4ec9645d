//! Account lookups of one VM: one call per identity for the whole process (a claim in
//! the shared store), answers shared with the other VMs, and their lifetimes.

use super::{
    CallResponse, Effect, Host, Level, Outgoing, Vm, ACCOUNT_CLAIM_GRACE_MS, UNCACHED_ANSWER_MS,
};
use crate::account::{interpret, SharedAccount};
use crate::vm::waiters::{Call, Deferred, Event};

impl Vm {
    /// Adopts a process-wide account answer into this VM's cache: `true` when there is
    /// one to decide with.
    pub(super) fn adopt_account(&mut self, provider: usize, key: &str, now: u64) -> bool {
        let answer = self.shared_accounts.and_then(|s| s.read(&*self.store, key));
        let Some(SharedAccount::Resolved(account, until)) = answer else {
            return false;
        };
        if until <= now {
            return false;
        }
        let Some(Some(cache)) = self.accounts.get_mut(provider) else {
            return false;
        };
        cache.insert(key.to_string(), account, now, until - now);
        self.metrics.account_shared_hit();
        true
    }

    /// A request needs the account of `key`: unless this VM or another already asks,
    /// claim the lookup and call (now with `host`, else from the next tick). Returns how
    /// long the request may wait, and `false` when the call could not be made.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn await_account(
        &mut self,
        provider: usize,
        key: &str,
        path: String,
        request_id: &str,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        out: &mut Vec<Effect>,
    ) -> (u64, bool) {
        let timeout = self.config.account_of(provider).map_or(0, |a| a.timeout_ms);
        let lease = timeout.saturating_add(ACCOUNT_CLAIM_GRACE_MS);
        let asked = self.waiters.looking_up(key)
            || self
                .shared_accounts
                .is_some_and(|a| !a.claim(&*self.store, key, now, lease));
        let lookup = Deferred {
            provider,
            key: key.to_string(),
            path,
            request_id: request_id.to_string(),
        };
        let started = match (asked, host) {
            // This VM or another one already asks: wait for that answer.
            (true, _) => true,
            (false, Some(h)) => self.start_account(&lookup, now, h, out),
            (false, None) => {
                self.waiters.defer(lookup, now);
                true
            }
        };
        (timeout, started)
    }

    /// Dispatches an account lookup.
    fn start_account(
        &mut self,
        lookup: &Deferred,
        now: u64,
        host: &mut dyn Host,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(src) = self.config.account_of(lookup.provider) else {
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
                self.debug(out, || {
                    format!(
                        "bearer-guard: account lookup dispatched on cluster {}",
                        src.cluster
                    )
                });
                let call = Call::Account {
                    provider: lookup.provider,
                    key: lookup.key.clone(),
                };
                self.waiters.call_started(token, call, now);
                true
            }
            Err(why) => {
                out.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "bearer-guard: account lookup on cluster {} not dispatched: {why}",
                        src.cluster
                    ),
                ));
                self.waiters.lookup_failed(&lookup.key);
                if let Some(accounts) = self.shared_accounts {
                    accounts.resolve(&*self.store, &lookup.key, Err(()), 0, now);
                }
                false
            }
        }
    }

    /// The account service's answer: kept for this VM and the process with the lifetime
    /// it deserves (found: `ttl_s`, not found: `negative_ttl_s`, failed: not kept).
    pub(super) fn account_response(
        &mut self,
        provider: usize,
        key: &str,
        response: &CallResponse,
        now: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(src) = self.config.account_of(provider) else {
            return;
        };
        let result = interpret(response.status.as_deref(), &(response.body)());
        self.metrics.account(result.is_ok());
        match result {
            Ok(found) => {
                let ttl = if found.is_some() {
                    src.ttl_ms
                } else {
                    src.negative_ttl_ms
                };
                // A ttl of 0 caches nothing, but the requests that waited for this answer
                // get it: here in the same instant, in other VMs within a second.
                if let Some(shared) = self.shared_accounts {
                    let kept = if ttl == 0 { UNCACHED_ANSWER_MS } else { ttl };
                    let until = now.saturating_add(kept);
                    shared.resolve(&*self.store, key, Ok(found.clone()), until, now);
                }
                if let Some(Some(cache)) = self.accounts.get_mut(provider) {
                    cache.insert(key.to_string(), found, now, ttl.max(1));
                }
            }
            // Not cached: the waiters get 500 and the next request asks again.
            Err(why) => {
                out.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "bearer-guard: account lookup on cluster {} failed: {why}",
                        src.cluster
                    ),
                ));
                if let Some(shared) = self.shared_accounts {
                    shared.resolve(&*self.store, key, Err(()), 0, now);
                }
            }
        }
    }

    /// The tick's part for accounts: dispatch deferred lookups, and let requests waiting
    /// for another VM's lookup decide once it answered, failed or its claim lapsed.
    pub(super) fn tick_lookups(&mut self, now: u64, host: &mut dyn Host, out: &mut Vec<Effect>) {
        for lookup in self.waiters.take_deferred() {
            if !self.start_account(&lookup, now, host, out) {
                self.wake(&Event::Account(lookup.provider, lookup.key), now, out);
            }
        }
        for wait in self.waiters.waited_for() {
            let Event::Account(provider, key) = &wait else {
                continue;
            };
            let answered = !self.waiters.looking_up(key)
                && self
                    .shared_accounts
                    .and_then(|a| a.read(&*self.store, key))
                    .is_none_or(|state| !matches!(state, SharedAccount::Pending(_)));
            if answered {
                self.adopt_account(*provider, key, now);
                self.wake(&wait, now, out);
            }
        }
    }
}
