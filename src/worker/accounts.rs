//! The account lookups and token introspections of one worker, a component: its cache of
//! answers per provider, the process-wide answers it shares with the other workers, and
//! its lookups in flight or deferred to the next tick. One call per identity (or per
//! opaque token) for the whole process — a claim in the shared store — and answers kept
//! for the lifetime they deserve.

use super::calls::Call;
use super::effects::{CallResponse, Effect, Host, Level, Outgoing};
use super::waiting::Event;
use super::{Cx, ACCOUNT_CLAIM_GRACE_MS, UNCACHED_ANSWER_MS};
use crate::account::{interpret, AccountCache, AccountState, SharedAccount, SharedAccounts};
use crate::config::Config;
use crate::introspection::{self, Known};
use crate::pipeline::OpaqueToken;
use crate::shared::FetchError;
use std::collections::HashMap;

/// Which service a lookup asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The provider's account service (`account`).
    Account,
    /// The provider's token introspection endpoint (`introspection`).
    Introspection,
}

/// What a lookup sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// An account lookup: the path to GET.
    Account(String),
    /// A token introspection: the token to POST.
    Introspection(OpaqueToken),
}

impl Lookup {
    /// The event the requests waiting for `key`'s answer are woken by.
    fn event(self, provider: usize, key: String) -> Event {
        match self {
            Lookup::Account => Event::Account(provider, key),
            Lookup::Introspection => Event::Introspection(provider, key),
        }
    }
}

impl Ask {
    fn kind(&self) -> Lookup {
        match self {
            Ask::Account(_) => Lookup::Account,
            Ask::Introspection(_) => Lookup::Introspection,
        }
    }
}

/// The most lookups (accounts and introspections) one worker has in flight at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// How long this worker's own account lookup counts as in flight when its answer never
/// came (the context that made the call went away): then it is given up.
pub const LOST_LOOKUP_MS: u64 = 61_000;

/// An account lookup to dispatch from the next tick (a request woken inside another
/// context's callback cannot make a call that outlives that callback).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deferred {
    provider: usize,
    key: String,
    ask: Ask,
    request_id: String,
}

/// Account lookups, token introspections and their answers.
pub struct Accounts {
    /// Per provider with an account service: this worker's cache of its answers.
    caches: Vec<Option<AccountCache>>,
    /// Per provider with an introspection endpoint: this worker's cache of its answers.
    introspections: Vec<Option<AccountCache>>,
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
        let introspections = config
            .providers
            .iter()
            .map(|p| {
                p.introspection
                    .as_ref()
                    .map(|i| AccountCache::new(i.max_entries))
            })
            .collect();
        let slots = config.shared.accounts;
        Accounts {
            caches,
            introspections,
            shared: (slots > 0).then(|| SharedAccounts::new(slots)),
            in_flight: HashMap::new(),
            deferred: Vec::new(),
        }
    }

    fn caches(&self, kind: Lookup) -> &Vec<Option<AccountCache>> {
        match kind {
            Lookup::Account => &self.caches,
            Lookup::Introspection => &self.introspections,
        }
    }

    /// This worker's cached answer for `key` of `provider` at `now`.
    pub fn get(&self, kind: Lookup, provider: usize, key: &str, now: u64) -> AccountState<'_> {
        self.caches(kind)
            .get(provider)
            .and_then(Option::as_ref)
            .map_or(AccountState::Unknown, |c| c.get(key, now))
    }

    /// This worker's kept introspection answer for `key` of `provider` at `now`.
    pub fn introspected(&self, provider: usize, key: &str, now: u64) -> Known {
        let kept = self
            .introspections
            .get(provider)
            .and_then(Option::as_ref)
            .and_then(|c| c.get_shared(key, now));
        match kept {
            Some(Some(claims)) => Known::Active(claims),
            Some(None) => Known::Inactive,
            None => Known::Unknown,
        }
    }

    /// Adopts a process-wide answer into this worker's cache: `true` when there is one to
    /// decide with.
    pub fn adopt(
        &mut self,
        (kind, provider): (Lookup, usize),
        key: &str,
        now: u64,
        cx: &mut Cx,
    ) -> bool {
        let answer = self.shared.and_then(|s| s.read(cx.store, key));
        let Some(SharedAccount::Resolved(account, until)) = answer else {
            return false;
        };
        if until <= now {
            return false;
        }
        let caches = match kind {
            Lookup::Account => &mut self.caches,
            Lookup::Introspection => &mut self.introspections,
        };
        let Some(Some(cache)) = caches.get_mut(provider) else {
            return false;
        };
        cache.insert(key.to_string(), account, now, until - now);
        cx.metrics.shared_answer(kind);
        true
    }

    /// A request needs the answer for `key`: `None` when another worker of the process
    /// has it already (adopted: decide again), else the event it waits for, how long, and
    /// whether the call could be made (see [`Accounts::await_lookup`]).
    pub fn wait_for(
        &mut self,
        (provider, key, ask): (usize, String, Ask),
        request_id: &str,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        cx: &mut Cx,
    ) -> Option<(Event, u64, bool)> {
        let kind = ask.kind();
        if self.adopt((kind, provider), &key, now, cx) {
            return None;
        }
        let (timeout, started) =
            self.await_lookup((provider, &key, ask), request_id, now, host, cx);
        Some((kind.event(provider, key), timeout, started))
    }

    /// A request needs the answer for `key` (an account, or a token's introspection):
    /// unless this worker or another already asks, claim the lookup and call (now with
    /// `host`, else from the next tick). Returns how long the request may wait, and
    /// `false` when the call could not be made.
    pub fn await_lookup(
        &mut self,
        (provider, key, ask): (usize, &str, Ask),
        request_id: &str,
        now: u64,
        host: Option<&mut (dyn Host + '_)>,
        cx: &mut Cx,
    ) -> (u64, bool) {
        let timeout = match ask.kind() {
            Lookup::Account => cx.config.account_of(provider).map_or(0, |a| a.timeout_ms),
            Lookup::Introspection => cx
                .config
                .introspection_of(provider)
                .map_or(0, |i| i.timeout_ms),
        };
        let lease = timeout.saturating_add(ACCOUNT_CLAIM_GRACE_MS);
        let asked = self.in_flight.contains_key(key)
            || self
                .shared
                .is_some_and(|a| !a.claim(cx.store, key, now, lease));
        let lookup = Deferred {
            provider,
            key: key.to_string(),
            ask,
            request_id: request_id.to_string(),
        };
        // A flood of distinct identities or tokens makes at most this many calls at once
        // per worker; beyond it a request is decided without the answer (500).
        if !asked && self.in_flight.len() >= MAX_IN_FLIGHT {
            return (timeout, false);
        }
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

    /// Dispatches a lookup: a GET of the account service's path, or an introspection
    /// POST with the token and the client's credentials.
    fn start(&mut self, lookup: &Deferred, now: u64, host: &mut dyn Host, cx: &mut Cx) -> bool {
        let (cluster, what, dispatched) = match &lookup.ask {
            Ask::Account(path) => {
                let Some(src) = cx.config.account_of(lookup.provider) else {
                    return false;
                };
                let outgoing = Outgoing {
                    cluster: &src.cluster,
                    headers: vec![
                        (":method", "GET"),
                        (":path", path.as_str()),
                        (":authority", src.authority.as_str()),
                        ("accept", "application/json"),
                        ("x-request-id", lookup.request_id.as_str()),
                    ],
                    body: &[],
                    max_response_bytes: usize::MAX,
                    timeout_ms: src.timeout_ms,
                };
                (&src.cluster, "account lookup", host.dispatch(&outgoing))
            }
            Ask::Introspection(token) => {
                let Some(src) = cx.config.introspection_of(lookup.provider) else {
                    return false;
                };
                let secret = &src.client_secret.0;
                let post = src.auth == crate::config::introspection::ClientAuth::ClientSecretPost;
                let body = introspection::form_body(
                    &token.0,
                    post.then_some((src.client_id.as_str(), secret.as_slice())),
                );
                let length = body.len().to_string();
                let basic =
                    (!post).then(|| introspection::basic_authorization(&src.client_id, secret));
                let mut headers = vec![
                    (":method", "POST"),
                    (":path", src.path.as_str()),
                    (":authority", src.authority.as_str()),
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("content-length", length.as_str()),
                    ("accept", "application/json"),
                    ("x-request-id", lookup.request_id.as_str()),
                ];
                if let Some(b) = &basic {
                    headers.push(("authorization", b.as_str()));
                }
                let outgoing = Outgoing {
                    cluster: &src.cluster,
                    headers,
                    body: &body,
                    max_response_bytes: src.max_bytes,
                    timeout_ms: src.timeout_ms,
                };
                (
                    &src.cluster,
                    "token introspection",
                    host.dispatch(&outgoing),
                )
            }
        };
        match dispatched {
            Ok(token) => {
                cx.debug(|| format!("bearer-guard: {what} dispatched on cluster {cluster}"));
                let call = match lookup.ask.kind() {
                    Lookup::Account => Call::Account {
                        provider: lookup.provider,
                        key: lookup.key.clone(),
                    },
                    Lookup::Introspection => Call::Introspection {
                        provider: lookup.provider,
                        key: lookup.key.clone(),
                    },
                };
                cx.calls.started(token, call);
                self.in_flight.insert(lookup.key.clone(), now);
                true
            }
            Err(why) => {
                cx.out.push(Effect::Log(
                    Level::Warn,
                    format!("bearer-guard: {what} on cluster {cluster} not dispatched: {why}"),
                ));
                self.in_flight.remove(&lookup.key);
                if let Some(accounts) = self.shared {
                    accounts.resolve(cx.store, &lookup.key, Err(()), 0, now);
                }
                false
            }
        }
    }

    /// The answer to a lookup, kept for this worker and the process with the lifetime it
    /// deserves — an account: found `ttl_s`, not found `negative_ttl_s`; an introspection:
    /// active `ttl_s` but never past its `exp`, not active `negative_ttl_s`; a failure is
    /// not kept. The requests waiting for it may decide afterwards.
    pub fn response(
        &mut self,
        (kind, provider, key): (Lookup, usize, &str),
        response: &CallResponse,
        now: u64,
        cx: &mut Cx,
    ) {
        self.in_flight.remove(key);
        let status = response.status.as_deref();
        let (cluster, what, result, until) = match kind {
            Lookup::Account => {
                let Some(src) = cx.config.account_of(provider) else {
                    return;
                };
                let result = interpret(status, &(response.body)());
                let ttl = match &result {
                    Ok(Some(_)) => src.ttl_ms,
                    _ => src.negative_ttl_ms,
                };
                (
                    &src.cluster,
                    "account lookup",
                    result,
                    now.saturating_add(ttl),
                )
            }
            Lookup::Introspection => {
                let Some(src) = cx.config.introspection_of(provider) else {
                    return;
                };
                // Refused on its announced size: a larger answer is never read.
                let result = if response.body_size > src.max_bytes {
                    Err(FetchError::TooLarge {
                        size: response.body_size,
                        limit: src.max_bytes,
                        setting: "introspection.max_bytes",
                    })
                } else {
                    let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
                    introspection::interpret(status, &(response.body)(), now_s)
                };
                if matches!(status, Some("401" | "403")) {
                    cx.out.push(Effect::Log(
                        Level::Warn,
                        format!("bearer-guard: token introspection on cluster {}: the authorization server refused the client (status {}): check client_id and client_secret", src.cluster, status.unwrap_or("")),
                    ));
                }
                let until = match &result {
                    Ok(claims) => introspection::kept_until(
                        (claims.as_ref(), status == Some("200")),
                        now,
                        src.ttl_ms,
                        src.negative_ttl_ms,
                    ),
                    Err(_) => now,
                };
                (&src.cluster, "token introspection", result, until)
            }
        };
        cx.metrics.lookup(kind, &result);
        match result {
            Ok(found) => {
                let ttl = until.saturating_sub(now);
                // A ttl of 0 caches nothing, but the requests that waited for this answer
                // get it: here in the same instant, in other workers within a second.
                if let Some(shared) = self.shared {
                    let kept = if ttl == 0 { UNCACHED_ANSWER_MS } else { ttl };
                    let until = now.saturating_add(kept);
                    shared.resolve(cx.store, key, Ok(found.clone()), until, now);
                }
                let caches = match kind {
                    Lookup::Account => &mut self.caches,
                    Lookup::Introspection => &mut self.introspections,
                };
                if let Some(Some(cache)) = caches.get_mut(provider) {
                    cache.insert(key.to_string(), found, now, ttl.max(1));
                }
            }
            // Not cached: the waiters get 500 and the next request asks again.
            Err(why) => {
                cx.out.push(Effect::Log(
                    Level::Warn,
                    format!("bearer-guard: {what} on cluster {cluster} failed: {why}"),
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
                ready.push(lookup.ask.kind().event(lookup.provider, lookup.key));
            }
        }
        for wait in waited_for {
            let (kind, provider, key) = match wait {
                Event::Account(p, k) => (Lookup::Account, p, k),
                Event::Introspection(p, k) => (Lookup::Introspection, p, k),
                _ => continue,
            };
            // Answered: this worker does not ask, and the process's slot holds an answer
            // for this key. A slot taken by another key (other requests' lookups evict
            // it) is no answer: the worker that asks writes its answer back, and the
            // request waits for it until its deadline.
            let answered = !self.in_flight.contains_key(key)
                && match self.shared {
                    Some(s) => s
                        .read(cx.store, key)
                        .is_some_and(|state| !matches!(state, SharedAccount::Pending(_))),
                    None => true,
                };
            if answered {
                self.adopt((kind, *provider), key, now, cx);
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
            cx.calls.give_up_lookup(key);
        }
        lost
    }
}
