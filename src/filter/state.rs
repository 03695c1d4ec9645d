//! State shared by the root and HTTP contexts of one VM (one thread, so `Rc<RefCell>`).

use super::backend::Backend;
use super::host;
use super::metrics::Metrics;
use super::Level;
use super::{log, now_ms};
use crate::account::{interpret, AccountCache, AccountState};
use crate::config::{Config, JwksSource};
use crate::jwks::{interpret_fetch, FetchPolicy, KeyAvailability, KeyFetcher, KeySet};
use crate::pipeline::{decide, AccountLookup, CacheNote, Decision, Inputs, KeyLookup, Outcome};
use crate::reply::Denial;
use crate::request::Request;
use crate::token_cache::TokenCache;
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

fn debug_enabled() -> bool {
    host::logs(Level::Debug)
}

/// Logs a debug line, formatting it only when the host will print it.
fn debug(shared: &SharedRef, line: impl FnOnce() -> String) {
    if shared.borrow().debug {
        log(Level::Debug, &line());
    }
}

/// Shared state handle.
pub(crate) type SharedRef = Rc<RefCell<Shared>>;

/// The calling context's `dispatch_http_call(cluster, headers, timeout)`: the SDK routes
/// a call's response to the context that dispatched it.
pub(crate) type Dispatch<'a> =
    &'a dyn Fn(&str, Vec<(&str, &str)>, Duration) -> Result<u32, proxy_wasm::types::Status>;

/// What a paused request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// A provider's key set.
    Keys(usize),
    /// An account lookup (cache key).
    Account(String),
}

/// What a request has already waited for: each kind at most once, so no request can
/// wait forever.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Waited {
    keys: bool,
    account: bool,
}

/// A request paused until what it waits for arrives (or its deadline passes).
pub(crate) struct Waiter {
    pub context_id: u32,
    pub wait: Wait,
    pub waited: Waited,
    pub deadline_ms: u64,
    pub request: Request,
}

/// An account lookup to dispatch from the root context's next tick.
struct Deferred {
    provider: usize,
    key: String,
    path: String,
    request_id: String,
}

/// A dispatched call we are waiting on.
enum Call {
    Jwks(usize),
    Account { provider: usize, key: String },
}

/// Everything the contexts share.
pub(crate) struct Shared {
    pub config: Config,
    pub backend: Backend,
    pub fetchers: Vec<Option<KeyFetcher>>,
    accounts: Vec<Option<AccountCache>>,
    /// Account lookups in flight: key → dispatch time (ms).
    pending_accounts: HashMap<String, u64>,
    calls: HashMap<u32, Call>,
    /// Lookups a woken request needs: dispatched by the root context (a wake-up runs in
    /// another context's callback, and a call made there would die with that context).
    deferred: Vec<Deferred>,
    tokens: TokenCache,
    metrics: Metrics,
    /// Whether the host logs debug lines (refreshed each tick): debug lines are only
    /// formatted when someone will read them.
    debug: bool,
    pub waiters: Vec<Waiter>,
}

struct View<'a> {
    shared: &'a Shared,
    now_ms: u64,
    waited: Waited,
}

impl AccountLookup for View<'_> {
    fn account(&self, provider: usize, key: &str) -> AccountState<'_> {
        self.shared
            .accounts
            .get(provider)
            .and_then(Option::as_ref)
            .map_or(AccountState::Unknown, |c| c.get(key, self.now_ms))
    }
    fn may_wait(&self) -> bool {
        !self.waited.account
    }
}

impl KeyLookup for View<'_> {
    fn availability(&self, provider: usize) -> KeyAvailability {
        let a = self
            .fetcher(provider)
            .map_or(KeyAvailability::Unavailable, |f| {
                f.availability(self.now_ms)
            });
        match a {
            KeyAvailability::Loading if self.waited.keys => KeyAvailability::Unavailable,
            other => other,
        }
    }
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.fetcher(provider).and_then(KeyFetcher::keys)
    }
    fn may_refetch(&self, provider: usize) -> bool {
        !self.waited.keys
            && self
                .fetcher(provider)
                .is_some_and(|f| f.may_refetch(self.now_ms))
    }
}

impl View<'_> {
    fn fetcher(&self, provider: usize) -> Option<&KeyFetcher> {
        self.shared.fetchers.get(provider).and_then(Option::as_ref)
    }
}

impl Shared {
    pub(crate) fn new(config: Config, backend: Backend) -> Shared {
        let fetchers = config
            .providers
            .iter()
            .map(|p| {
                p.jwks.as_ref().map(|j| {
                    KeyFetcher::new(FetchPolicy {
                        refresh_ms: j.refresh_ms,
                        timeout_ms: j.timeout_ms,
                        retry_min_ms: 1000,
                        retry_max_ms: j.retry_max_ms,
                        refetch_min_interval_ms: j.refetch_min_interval_ms,
                    })
                })
            })
            .collect();
        let accounts = config
            .providers
            .iter()
            .map(|p| p.account.as_ref().map(|a| AccountCache::new(a.max_entries)))
            .collect();
        let tokens = TokenCache::new(config.token_cache_entries);
        let metrics = Metrics::define(&config);
        Shared {
            config,
            backend,
            fetchers,
            accounts,
            pending_accounts: HashMap::new(),
            calls: HashMap::new(),
            deferred: Vec::new(),
            tokens,
            metrics,
            debug: debug_enabled(),
            waiters: Vec::new(),
        }
    }

    fn decide(&self, req: &Request, now_ms: u64, waited: Waited) -> Outcome {
        let view = View {
            shared: self,
            now_ms,
            waited,
        };
        let inputs = Inputs {
            config: &self.config,
            keys: &view,
            accounts: &view,
            backend: self.backend.get(),
            cache: (self.config.token_cache_entries > 0).then_some(&self.tokens),
            now_s: i64::try_from(now_ms / 1000).unwrap_or(i64::MAX),
        };
        decide(&inputs, req)
    }

    fn source(&self, provider: usize) -> Option<JwksSource> {
        self.config
            .providers
            .get(provider)
            .and_then(|p| p.jwks.clone())
    }
}

/// Dispatches a JWKS fetch; `dispatch` is the calling context's own `dispatch_http_call`
/// so the SDK routes the response back to it.
pub(crate) fn start_fetch(
    shared: &SharedRef,
    provider: usize,
    now: u64,
    dispatch: Dispatch,
) -> bool {
    let Some(src) = shared.borrow().source(provider) else {
        return false;
    };
    let headers = vec![
        (":method", "GET"),
        (":path", src.path.as_str()),
        (":authority", src.authority.as_str()),
        ("accept", "application/json"),
    ];
    let result = dispatch(&src.cluster, headers, Duration::from_millis(src.timeout_ms));
    let mut s = shared.borrow_mut();
    let name = s.config.provider_name(provider).to_string();
    let Some(Some(fetcher)) = s.fetchers.get_mut(provider) else {
        return false;
    };
    match result {
        Ok(token) => {
            fetcher.begin(now);
            s.calls.insert(token, Call::Jwks(provider));
            true
        }
        Err(status) => {
            fetcher.fail(now);
            log(Level::Warn, &format!("bearer-guard: provider {name}: JWKS fetch from cluster {} not dispatched: {status:?}", src.cluster));
            false
        }
    }
}

/// Dispatches an account lookup unless one for the same identity is in flight.
fn start_account(
    shared: &SharedRef,
    provider: usize,
    key: &str,
    path: &str,
    request_id: &str,
    now: u64,
    dispatch: Dispatch,
) -> bool {
    let Some(src) = shared
        .borrow()
        .config
        .providers
        .get(provider)
        .and_then(|p| p.account.clone())
    else {
        return false;
    };
    let headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", src.authority.as_str()),
        ("accept", "application/json"),
        ("x-request-id", request_id),
    ];
    match dispatch(&src.cluster, headers, Duration::from_millis(src.timeout_ms)) {
        Ok(token) => {
            debug(shared, || {
                format!(
                    "bearer-guard: account lookup dispatched on cluster {}",
                    src.cluster
                )
            });
            let mut s = shared.borrow_mut();
            s.pending_accounts.insert(key.to_string(), now);
            s.calls.insert(
                token,
                Call::Account {
                    provider,
                    key: key.to_string(),
                },
            );
            true
        }
        Err(status) => {
            shared.borrow_mut().pending_accounts.remove(key);
            log(
                Level::Warn,
                &format!(
                    "bearer-guard: account lookup on cluster {} not dispatched: {status:?}",
                    src.cluster
                ),
            );
            false
        }
    }
}

/// Handles the response to one of our dispatched calls (from whichever context got it).
pub(crate) fn on_call_response(shared: &SharedRef, token: u32, body_size: usize, current: u32) {
    let now = now_ms();
    let Some(call) = shared.borrow_mut().calls.remove(&token) else {
        return;
    };
    let status = host::header(host::map::CALL_RESPONSE_HEADERS, ":status")
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    let body = || {
        host::buffer(host::buffer::CALL_RESPONSE_BODY, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    match call {
        Call::Jwks(provider) => {
            let max_bytes = shared.borrow().source(provider).map_or(0, |s| s.max_bytes);
            let result = interpret_fetch(status.as_deref(), body_size, max_bytes, body);
            let parse_ms = now_ms().saturating_sub(now);
            jwks_response(shared, provider, result, now, (body_size, parse_ms));
            wake(shared, |w| w.wait == Wait::Keys(provider), now, current);
        }
        Call::Account { provider, key } => {
            account_response(shared, provider, &key, status.as_deref(), &body(), now);
            wake(
                shared,
                |w| w.wait == Wait::Account(key.clone()),
                now,
                current,
            );
        }
    }
}

fn jwks_response(
    shared: &SharedRef,
    provider: usize,
    parsed: Result<(KeySet, usize), String>,
    now: u64,
    (body_size, parse_ms): (usize, u64),
) {
    let mut guard = shared.borrow_mut();
    let s = &mut *guard;
    let name = s.config.provider_name(provider).to_string();
    let Some(Some(fetcher)) = s.fetchers.get_mut(provider) else {
        return;
    };
    match parsed {
        Ok((keys, skipped)) => {
            let kids = keys.kids().join(",");
            s.metrics.jwks(provider, true, keys.len());
            fetcher.succeed(now, keys);
            log(Level::Info, &format!("bearer-guard: provider {name}: loaded keys [{kids}] ({skipped} JWKS entries skipped, {body_size} bytes read and parsed in {parse_ms} ms)"));
        }
        Err(why) => {
            s.metrics.jwks(provider, false, 0);
            fetcher.fail(now);
            let kept = if fetcher.keys().is_some() {
                "keeping previous keys"
            } else {
                "no keys yet"
            };
            log(
                Level::Warn,
                &format!("bearer-guard: provider {name}: JWKS fetch failed: {why}; {kept}"),
            );
        }
    }
}

fn account_response(
    shared: &SharedRef,
    provider: usize,
    key: &str,
    status: Option<&str>,
    body: &[u8],
    now: u64,
) {
    let mut s = shared.borrow_mut();
    s.pending_accounts.remove(key);
    let Some(src) = s
        .config
        .providers
        .get(provider)
        .and_then(|p| p.account.clone())
    else {
        return;
    };
    let result = interpret(status, body);
    s.metrics.account(result.is_ok());
    match result {
        Ok(found) => {
            let ttl = if found.is_some() {
                src.ttl_ms
            } else {
                src.negative_ttl_ms
            };
            if let Some(Some(cache)) = s.accounts.get_mut(provider) {
                cache.insert(key.to_string(), found, now, ttl);
            }
        }
        // Not cached: the waiters get 500 and the next request asks again.
        Err(why) => log(
            Level::Warn,
            &format!(
                "bearer-guard: account lookup on cluster {} failed: {why}",
                src.cluster
            ),
        ),
    }
}

/// Resumes, answers or re-parks every waiter selected by `pick`, then makes `current`
/// the effective context again.
pub(crate) fn wake(shared: &SharedRef, pick: impl Fn(&Waiter) -> bool, now: u64, current: u32) {
    let woken: Vec<Waiter> = {
        let mut s = shared.borrow_mut();
        let (woken, kept) = std::mem::take(&mut s.waiters)
            .into_iter()
            .partition(|w| pick(w));
        s.waiters = kept;
        woken
    };
    for w in woken {
        if host::set_effective_context(w.context_id).is_err() {
            continue; // the stream is gone
        }
        let id = w.request.request_id.clone();
        if process(shared, w.context_id, w.request, w.waited, now, None) == Action::Continue {
            let resumed = host::resume_request();
            debug(shared, || {
                format!("bearer-guard: request_id={id} resumed: {resumed:?}")
            });
        }
    }
    let _ = host::set_effective_context(current);
}

/// Runs the pipeline for a fresh request in the current context.
pub(crate) fn handle(
    shared: &SharedRef,
    context_id: u32,
    request: Request,
    dispatch: Dispatch,
) -> Action {
    process(
        shared,
        context_id,
        request,
        Waited::default(),
        now_ms(),
        Some(dispatch),
    )
}

/// Decides and applies, or parks the request until keys or an account arrive. With
/// `dispatch` (the request's own callback) calls start at once; without it (a wake-up
/// inside another context's callback) the root context starts them on its next tick.
fn process(
    shared: &SharedRef,
    context_id: u32,
    request: Request,
    mut waited: Waited,
    now: u64,
    dispatch: Option<Dispatch>,
) -> Action {
    let mut outcome = shared.borrow().decide(&request, now, waited);
    match std::mem::take(&mut outcome.cache) {
        CacheNote::Store(entry) => {
            let (token, verified) = *entry;
            let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
            let mut s = shared.borrow_mut();
            s.metrics.cache(false);
            s.tokens.insert(&token, verified, now_s);
        }
        CacheNote::Hit => shared.borrow().metrics.cache(true),
        CacheNote::None => {}
    }
    let (wait, timeout_ms, started) = match outcome.decision {
        Decision::AwaitKeys { provider, refetch } => {
            let due = {
                let mut s = shared.borrow_mut();
                match s.fetchers.get_mut(provider).and_then(Option::as_mut) {
                    Some(f) => {
                        if refetch {
                            f.request_refetch(now);
                        }
                        f.due(now)
                    }
                    None => false,
                }
            };
            // Without a dispatcher, a due fetch is started by the next tick.
            let started = match (due, dispatch) {
                (true, Some(d)) => start_fetch(shared, provider, now, d),
                _ => true,
            };
            waited.keys = true;
            let timeout = shared
                .borrow()
                .source(provider)
                .map_or(2000, |s| s.timeout_ms);
            (Wait::Keys(provider), timeout, started)
        }
        Decision::AwaitAccount {
            provider,
            key,
            path,
        } => {
            let pending = shared.borrow().pending_accounts.contains_key(&key);
            let started = match (pending, dispatch) {
                (true, _) => true,
                (false, Some(d)) => {
                    start_account(shared, provider, &key, &path, &request.request_id, now, d)
                }
                (false, None) => {
                    let mut s = shared.borrow_mut();
                    s.pending_accounts.insert(key.clone(), now);
                    s.deferred.push(Deferred {
                        provider,
                        key: key.clone(),
                        path,
                        request_id: request.request_id.clone(),
                    });
                    true
                }
            };
            waited.account = true;
            let timeout = shared
                .borrow()
                .config
                .providers
                .get(provider)
                .and_then(|p| p.account.as_ref())
                .map_or(1000, |a| a.timeout_ms);
            (Wait::Account(key), timeout, started)
        }
        _ => return apply(shared, &request, outcome),
    };
    if !started {
        // The call could not be made: decide again without waiting (500 or 401).
        let outcome = shared.borrow().decide(&request, now, waited);
        return apply(shared, &request, outcome);
    }
    debug(shared, || {
        let what = match &wait {
            Wait::Keys(p) => format!("keys of provider #{p}"),
            Wait::Account(_) => "an account lookup".to_string(),
        };
        format!(
            "bearer-guard: request_id={} waits for {what}",
            request.request_id
        )
    });
    // A deferred call waits up to a tick longer.
    let deadline_ms = now + timeout_ms + 1000;
    shared.borrow_mut().waiters.push(Waiter {
        context_id,
        wait,
        waited,
        deadline_ms,
        request,
    });
    Action::Pause
}

/// Applies a final decision to the current context's request.
pub(crate) fn apply(shared: &SharedRef, request: &Request, outcome: Outcome) -> Action {
    let strip_authorization = shared.borrow().config.forward.strip_authorization;
    match outcome.decision {
        Decision::Allow { headers } => {
            shared.borrow().metrics.allowed(outcome.public);
            for (name, value) in &headers {
                let _ = host::set_request_header(name, Some(value));
            }
            if strip_authorization {
                let _ = host::set_request_header("authorization", None);
            }
            Action::Continue
        }
        Decision::Deny(denial) => {
            shared.borrow().metrics.denied(&denial);
            debug(shared, || {
                format!(
                    "bearer-guard: denied {} rule={} route={} request_id={} why={}",
                    denial.reason(),
                    shared.borrow().config.rule_name(outcome.rule),
                    request.route_name.as_deref().unwrap_or("-"),
                    request.request_id,
                    outcome.note
                )
            });
            send_reply(&denial, &request.request_id)
        }
        // Not reachable from `handle`/`wake` (they decide without waiting); fail closed.
        Decision::AwaitKeys { .. } | Decision::AwaitAccount { .. } => {
            send_reply(&Denial::Unavailable, &request.request_id)
        }
    }
}

/// Answers the current context's request with a denial's local reply.
pub(crate) fn send_reply(denial: &Denial, request_id: &str) -> Action {
    let reply = denial.reply(request_id);
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let _ = host::send_response(reply.status, &headers, reply.body.as_bytes());
    Action::Pause
}

/// Periodic work: expire stuck fetches and waiters, start due fetches.
pub(crate) fn tick(shared: &SharedRef, current: u32, dispatch: Dispatch) {
    let now = now_ms();
    {
        let mut s = shared.borrow_mut();
        s.debug = debug_enabled();
        s.metrics.flush();
    }
    let deferred = std::mem::take(&mut shared.borrow_mut().deferred);
    for d in deferred {
        if !start_account(
            shared,
            d.provider,
            &d.key,
            &d.path,
            &d.request_id,
            now,
            dispatch,
        ) {
            wake(
                shared,
                |w| w.wait == Wait::Account(d.key.clone()),
                now,
                current,
            );
        }
    }
    let count = shared.borrow().fetchers.len();
    for provider in 0..count {
        let expired = shared
            .borrow_mut()
            .fetchers
            .get_mut(provider)
            .and_then(Option::as_mut)
            .is_some_and(|f| f.expire(now));
        if expired {
            log(
                Level::Warn,
                &format!("bearer-guard: JWKS fetch for provider #{provider} timed out"),
            );
            wake(shared, |w| w.wait == Wait::Keys(provider), now, current);
        }
        let due = shared
            .borrow()
            .fetchers
            .get(provider)
            .and_then(Option::as_ref)
            .is_some_and(|f| f.due(now));
        if due {
            start_fetch(shared, provider, now, dispatch);
        }
    }
    // Account calls whose context went away before the answer: give up on them.
    let lost: Vec<String> = {
        let mut s = shared.borrow_mut();
        let limit = 61_000;
        let lost: Vec<String> = s
            .pending_accounts
            .iter()
            .filter(|(_, &t)| now >= t + limit)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &lost {
            s.pending_accounts.remove(k);
        }
        lost
    };
    wake(
        shared,
        |w| w.deadline_ms <= now || matches!(&w.wait, Wait::Account(k) if lost.contains(k)),
        now,
        current,
    );
}
