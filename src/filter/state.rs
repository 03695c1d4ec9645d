//! State of one VM, shared by its root and HTTP contexts (one thread, so `Rc<RefCell>`),
//! and the glue between host callbacks and the sans-IO core: key sets
//! ([`crate::jwks::ProviderKeys`]), the process-wide levels ([`crate::shared`]) and the
//! paused requests ([`crate::waiters`]).

use super::backend::Backend;
use super::host::{self, HostStore};
use super::metrics::Metrics;
use super::{log, now_ms, Level};
use crate::account::{interpret, AccountCache, AccountState, SharedAccount, SharedAccounts};
use crate::config::{Config, Mode};
use crate::credential::{cookie_without, path_without_param, TokenSource};
use crate::jwks::{
    interpret_discovery, interpret_fetch, FetchPolicy, KeyAvailability, KeySet, ProviderKeys,
};
use crate::pipeline::{
    decide, AccountLookup, CacheNote, Decision, Inputs, KeyLookup, Outcome, VerdictLookup,
};
use crate::reply::Denial;
use crate::request::Request;
use crate::shared::{update, Reader};
use crate::token_cache::{SharedTokens, SharedVerdict, TokenCache};
use crate::waiters::{Call, Deferred, Wait, Waited, Waiter, Waiters};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Tick period when no request waits: key refreshes, metric flushes.
pub(crate) const IDLE_TICK_MS: u32 = 200;
/// Tick period while requests wait: how soon they see what another VM fetched.
pub(crate) const WAITING_TICK_MS: u32 = 20;

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

/// Everything the contexts of one VM share.
pub(crate) struct Shared {
    pub config: Config,
    backend: Backend,
    /// Per provider (RS256 only): its key set as this VM sees it.
    keys: Vec<Option<ProviderKeys>>,
    accounts: Vec<Option<AccountCache>>,
    tokens: TokenCache,
    shared_tokens: Option<SharedTokens>,
    shared_accounts: Option<SharedAccounts>,
    store: HostStore,
    /// This VM's number in the process (lease holder id).
    vm: u64,
    pub waiters: Waiters<Request>,
    metrics: Metrics,
    /// Whether the host logs debug lines (refreshed each tick).
    debug: bool,
    tick_ms: u32,
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
        match self
            .shared
            .provider_keys(provider)
            .map_or(KeyAvailability::Unavailable, |k| {
                k.availability(self.now_ms)
            }) {
            KeyAvailability::Loading if self.waited.keys => KeyAvailability::Unavailable,
            other => other,
        }
    }
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.shared
            .provider_keys(provider)
            .and_then(ProviderKeys::keys)
    }
    fn may_refetch(&self, provider: usize) -> bool {
        !self.waited.keys
            && self
                .shared
                .provider_keys(provider)
                .is_some_and(|k| k.may_refetch(self.now_ms))
    }
}

impl VerdictLookup for View<'_> {
    fn verdict(&self, digest: &[u8; 32]) -> Option<SharedVerdict> {
        self.shared
            .shared_tokens
            .and_then(|t| t.lookup(&self.shared.store, digest))
    }
}

impl Shared {
    pub(crate) fn new(config: Config, backend: Backend, context_id: u32) -> Shared {
        let store = HostStore::probe();
        let keys = config
            .providers
            .iter()
            .map(|p| {
                p.jwks
                    .as_ref()
                    .map(|j| ProviderKeys::new(j.fingerprint, j.policy, j.max_bytes))
            })
            .collect();
        let accounts = config
            .providers
            .iter()
            .map(|p| p.account.as_ref().map(|a| AccountCache::new(a.max_entries)))
            .collect();
        // A number for this VM, unique in the process: the holder of a fetch lease.
        let vm = update(
            &store,
            "bearer_guard.vm_seq",
            |b| Reader(b).u64(),
            |n: &u64| n.to_le_bytes().to_vec(),
            |n| Some(n.wrapping_add(1).max(1)),
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| (now_ms() << 16) | u64::from(context_id));
        let slots = config.shared;
        let mut shared = Shared {
            tokens: TokenCache::new(config.token_cache_entries),
            shared_tokens: (slots.tokens > 0).then(|| SharedTokens::new(slots.tokens)),
            shared_accounts: (slots.accounts > 0).then(|| SharedAccounts::new(slots.accounts)),
            metrics: Metrics::define(&config),
            config,
            backend,
            keys,
            accounts,
            store,
            vm,
            waiters: Waiters::default(),
            debug: host::logs(Level::Debug),
            tick_ms: IDLE_TICK_MS,
        };
        // A new configuration starts with the keys the process already has: no refetch,
        // no request paused for them.
        let now = now_ms();
        for provider in 0..shared.keys.len() {
            shared.sync_keys(provider, now);
        }
        shared
    }

    fn provider_keys(&self, provider: usize) -> Option<&ProviderKeys> {
        self.keys.get(provider).and_then(Option::as_ref)
    }

    /// Reads a provider's process-wide key state, adopting a newer key set; whether
    /// requests waiting for its keys may decide now.
    fn sync_keys(&mut self, provider: usize, now: u64) -> bool {
        let Some(keys) = self.keys.get_mut(provider).and_then(Option::as_mut) else {
            return false;
        };
        let sync = keys.sync(&self.store, now);
        if let Some((version, kids)) = &sync.adopted {
            let count = keys.keys().map_or(0, KeySet::len);
            self.metrics.adopted(provider, count);
            if self.debug {
                let name = self.config.provider_name(provider);
                log(
                    Level::Debug,
                    &format!(
                        "bearer-guard: provider {name}: adopted key set version {version} [{kids}]"
                    ),
                );
            }
        }
        sync.adopted.is_some() || sync.settled
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
            verdicts: self
                .shared_tokens
                .is_some()
                .then_some(&view as &dyn VerdictLookup),
            now_s: i64::try_from(now_ms / 1000).unwrap_or(i64::MAX),
        };
        decide(&inputs, req)
    }

    /// Keeps what a decision authenticated: in this VM's cache, and for the process.
    fn note_cache(&mut self, note: CacheNote, now: u64) {
        match note {
            CacheNote::Authenticated(a) => {
                self.metrics.authenticated(a.shared_hit);
                if let Some((token, verified)) = a.store {
                    let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
                    self.tokens.insert(&token, verified, now_s);
                }
                if let (Some(verdict), Some(shared)) = (a.publish, self.shared_tokens) {
                    shared.publish(&self.store, &verdict);
                }
            }
            CacheNote::Hit => self.metrics.cache_hit(),
            CacheNote::None => {}
        }
    }

    /// A paused request is about to wait: tick fast so it sees other VMs' work soon.
    fn set_tick(&mut self, ms: u32) {
        if self.tick_ms != ms && host::set_tick_period_ms(ms).is_ok() {
            self.tick_ms = ms;
        }
    }

    /// Adopts a process-wide account answer into this VM's cache: `true` when there is
    /// one to decide with.
    fn adopt_account(&mut self, provider: usize, key: &str, now: u64) -> bool {
        let answer = self.shared_accounts.and_then(|s| s.read(&self.store, key));
        let Some(SharedAccount::Resolved(account, until)) = answer else {
            return false;
        };
        if until <= now {
            return false;
        }
        if let Some(Some(cache)) = self.accounts.get_mut(provider) {
            cache.insert(key.to_string(), account, now, until - now);
            self.metrics.account_shared_hit();
            return true;
        }
        false
    }
}

/// Starts a fetch of a provider's keys if one is due for the process and this VM gets the
/// lease. `false` when it was due but could not be dispatched (recorded as a failure).
fn start_fetch(shared: &SharedRef, provider: usize, now: u64, dispatch: Dispatch) -> bool {
    let (lease, src) = {
        let mut guard = shared.borrow_mut();
        let s = &mut *guard;
        let src = s
            .config
            .providers
            .get(provider)
            .and_then(|p| p.jwks.clone());
        let vm = s.vm;
        let lease = match s.keys.get_mut(provider).and_then(Option::as_mut) {
            Some(keys) => keys.try_start(&s.store, vm, now),
            None => None,
        };
        (lease, src)
    };
    let (Some(takeover), Some(src)) = (lease, src) else {
        return true;
    };
    if takeover {
        shared.borrow().metrics.takeover(provider);
        log(
            Level::Info,
            &format!(
                "bearer-guard: provider {}: taking over a JWKS fetch whose VM never finished it",
                shared.borrow().config.provider_name(provider)
            ),
        );
    }
    // With discovery, the issuer's configuration document first; then (in its answer) the
    // keys where it says.
    match &src.discovery {
        Some(d) => key_call(
            shared,
            provider,
            Call::Discovery(provider),
            &src.authority,
            &d.path,
            now,
            dispatch,
        ),
        None => key_call(
            shared,
            provider,
            Call::Jwks(provider),
            &src.authority,
            &src.path,
            now,
            dispatch,
        ),
    }
}

/// Dispatches one call of a key fetch (the lease is this VM's); a call that cannot be
/// made fails the fetch.
fn key_call(
    shared: &SharedRef,
    provider: usize,
    call: Call,
    authority: &str,
    path: &str,
    now: u64,
    dispatch: Dispatch,
) -> bool {
    let Some(src) = shared
        .borrow()
        .config
        .providers
        .get(provider)
        .and_then(|p| p.jwks.clone())
    else {
        return false;
    };
    let headers = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        ("accept", "application/json"),
    ];
    match dispatch(
        &src.cluster,
        headers,
        Duration::from_millis(src.policy.timeout_ms),
    ) {
        Ok(token) => {
            shared.borrow_mut().waiters.call_started(token, call, now);
            true
        }
        Err(status) => {
            let mut guard = shared.borrow_mut();
            let s = &mut *guard;
            let name = s.config.provider_name(provider).to_string();
            s.metrics.jwks(provider, false, 0);
            if let Some(keys) = s.keys.get_mut(provider).and_then(Option::as_mut) {
                keys.finish(&s.store, now, Err("not dispatched".into()));
            }
            log(Level::Warn, &format!("bearer-guard: provider {name}: JWKS fetch from cluster {} not dispatched: {status:?}", src.cluster));
            false
        }
    }
}

/// Dispatches an account lookup.
fn start_account(shared: &SharedRef, lookup: &Deferred, now: u64, dispatch: Dispatch) -> bool {
    let Some(src) = shared
        .borrow()
        .config
        .providers
        .get(lookup.provider)
        .and_then(|p| p.account.clone())
    else {
        return false;
    };
    let headers = vec![
        (":method", "GET"),
        (":path", lookup.path.as_str()),
        (":authority", src.authority.as_str()),
        ("accept", "application/json"),
        ("x-request-id", lookup.request_id.as_str()),
    ];
    match dispatch(&src.cluster, headers, Duration::from_millis(src.timeout_ms)) {
        Ok(token) => {
            debug(shared, || {
                format!(
                    "bearer-guard: account lookup dispatched on cluster {}",
                    src.cluster
                )
            });
            let call = Call::Account {
                provider: lookup.provider,
                key: lookup.key.clone(),
            };
            shared.borrow_mut().waiters.call_started(token, call, now);
            true
        }
        Err(status) => {
            let mut s = shared.borrow_mut();
            s.waiters.lookup_failed(&lookup.key);
            if let Some(accounts) = s.shared_accounts {
                accounts.resolve(&s.store, &lookup.key, Err(()), 0, now);
            }
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
pub(crate) fn on_call_response(
    shared: &SharedRef,
    token: u32,
    body_size: usize,
    current: u32,
    dispatch: Dispatch,
) {
    let now = now_ms();
    let Some(call) = shared.borrow_mut().waiters.call_answered(token) else {
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
        Call::Discovery(provider) => {
            let discovery = shared
                .borrow()
                .config
                .providers
                .get(provider)
                .and_then(|p| p.jwks.as_ref())
                .and_then(|j| j.discovery.clone());
            let Some(d) = discovery else { return };
            match interpret_discovery(status.as_deref(), &body(), &d.issuer, &d.allowed_hosts) {
                Ok((authority, path)) => {
                    if key_call(
                        shared,
                        provider,
                        Call::Jwks(provider),
                        &authority,
                        &path,
                        now,
                        dispatch,
                    ) {
                        return;
                    }
                }
                Err(why) => jwks_response(shared, provider, Err(why), now, (0, 0)),
            }
            wake(shared, &Wait::Keys(provider), now, current);
        }
        Call::Jwks(provider) => {
            let max_bytes = shared
                .borrow()
                .config
                .providers
                .get(provider)
                .and_then(|p| p.jwks.as_ref())
                .map_or(0, |j| j.max_bytes);
            let result = interpret_fetch(status.as_deref(), body_size, max_bytes, body);
            let parse_ms = now_ms().saturating_sub(now);
            jwks_response(shared, provider, result, now, (body_size, parse_ms));
            wake(shared, &Wait::Keys(provider), now, current);
        }
        Call::Account { provider, key } => {
            account_response(shared, provider, &key, status.as_deref(), &body(), now);
            wake(shared, &Wait::Account(provider, key), now, current);
        }
    }
}

fn jwks_response(
    shared: &SharedRef,
    provider: usize,
    parsed: Result<(KeySet, usize, Vec<u8>), String>,
    now: u64,
    (body_size, parse_ms): (usize, u64),
) {
    let mut guard = shared.borrow_mut();
    let s = &mut *guard;
    let name = s.config.provider_name(provider).to_string();
    let Some(keys) = s.keys.get_mut(provider).and_then(Option::as_mut) else {
        return;
    };
    match parsed {
        Ok((set, skipped, body)) => {
            let kids = set.kids().join(",");
            let count = set.len();
            let version = keys.finish(&s.store, now, Ok((set, body)));
            s.metrics.jwks(provider, true, count);
            let version = version.map_or("(not published)".to_string(), |v| format!("version {v}"));
            log(Level::Info, &format!("bearer-guard: provider {name}: loaded keys [{kids}] ({skipped} JWKS entries skipped, {body_size} bytes read and parsed in {parse_ms} ms), {version} for every worker"));
        }
        Err(why) => {
            keys.finish(&s.store, now, Err(why.clone()));
            let kept = if keys.keys().is_some() {
                "keeping previous keys"
            } else {
                "no keys yet"
            };
            s.metrics.jwks(provider, false, 0);
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
    let mut guard = shared.borrow_mut();
    let s = &mut *guard;
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
            // A ttl of 0 caches nothing, but the requests that waited for this answer get
            // it: here in the same instant, in other VMs within a second.
            if let Some(shared_accounts) = s.shared_accounts {
                let until = now.saturating_add(if ttl == 0 { 1000 } else { ttl });
                shared_accounts.resolve(&s.store, key, Ok(found.clone()), until, now);
            }
            if let Some(Some(cache)) = s.accounts.get_mut(provider) {
                cache.insert(key.to_string(), found, now, ttl.max(1));
            }
        }
        // Not cached: the waiters get 500 and the next request asks again.
        Err(why) => {
            if let Some(shared_accounts) = s.shared_accounts {
                shared_accounts.resolve(&s.store, key, Err(()), 0, now);
            }
            log(
                Level::Warn,
                &format!(
                    "bearer-guard: account lookup on cluster {} failed: {why}",
                    src.cluster
                ),
            );
        }
    }
}

/// Decides again every request paused for `wait`, then makes `current` the effective
/// context again.
pub(crate) fn wake(shared: &SharedRef, wait: &Wait, now: u64, current: u32) {
    let woken = shared.borrow_mut().waiters.wake(wait);
    resume(shared, woken, now, current);
}

fn resume(shared: &SharedRef, woken: Vec<Waiter<Request>>, now: u64, current: u32) {
    if woken.is_empty() {
        return;
    }
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
    shared
        .borrow_mut()
        .note_cache(std::mem::take(&mut outcome.cache), now);
    let (wait, timeout_ms, started) = match outcome.decision {
        Decision::AwaitKeys { provider, refetch } => {
            if refetch {
                let mut guard = shared.borrow_mut();
                let s = &mut *guard;
                if let Some(keys) = s.keys.get_mut(provider).and_then(Option::as_mut) {
                    keys.request_refetch(&s.store, now);
                }
            }
            // Without a dispatcher, a due fetch is started by a tick (this VM's or another's).
            let started = match dispatch {
                Some(d) => start_fetch(shared, provider, now, d),
                None => true,
            };
            waited.keys = true;
            let timeout = shared
                .borrow()
                .provider_keys(provider)
                .map_or(2000, |k| k.policy().timeout_ms);
            (Wait::Keys(provider), timeout, started)
        }
        Decision::AwaitAccount {
            provider,
            key,
            path,
        } => {
            // Another VM of the process may have the answer already.
            if shared.borrow_mut().adopt_account(provider, &key, now) {
                return process(shared, context_id, request, waited, now, dispatch);
            }
            let timeout = shared
                .borrow()
                .config
                .providers
                .get(provider)
                .and_then(|p| p.account.as_ref())
                .map_or(1000, |a| a.timeout_ms);
            let ours = {
                let s = shared.borrow();
                s.waiters.looking_up(&key)
                    || s.shared_accounts.is_some_and(|a| {
                        // Lease: the call's timeout plus a second.
                        !a.claim(&s.store, &key, now, timeout.saturating_add(1000))
                    })
            };
            let lookup = Deferred {
                provider,
                key: key.clone(),
                path,
                request_id: request.request_id.clone(),
            };
            let started = match (ours, dispatch) {
                // This VM or another one already asks: wait for that answer.
                (true, _) => true,
                (false, Some(d)) => start_account(shared, &lookup, now, d),
                (false, None) => {
                    shared.borrow_mut().waiters.defer(lookup, now);
                    true
                }
            };
            waited.account = true;
            (Wait::Account(provider, key), timeout, started)
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
            Wait::Account(..) => "an account lookup".to_string(),
        };
        format!(
            "bearer-guard: request_id={} waits for {what}",
            request.request_id
        )
    });
    // A deferred call, or another VM's, is seen up to a tick later.
    let deadline_ms = now + timeout_ms + 1000;
    let mut s = shared.borrow_mut();
    s.waiters.park(Waiter {
        context_id,
        wait,
        waited,
        deadline_ms,
        request,
    });
    s.set_tick(WAITING_TICK_MS);
    Action::Pause
}

/// Applies a final decision to the current context's request: in audit mode a denial is
/// logged and counted, and the request continues with the identity of a valid token.
pub(crate) fn apply(shared: &SharedRef, request: &Request, outcome: Outcome) -> Action {
    let (strip_authorization, fields) = {
        let s = shared.borrow();
        (
            s.config.forward.strip_authorization,
            s.config.access_log_fields,
        )
    };
    let audit = outcome.mode == Mode::Audit;
    let forward = |headers: &[(String, String)]| {
        for (name, value) in headers {
            let _ = host::set_request_header(name, Some(value));
        }
        if strip_authorization {
            let _ = host::set_request_header("authorization", None);
        }
        // The provider's `token.strip`: the credential does not reach the upstream.
        match &outcome.strip {
            None => {}
            Some(TokenSource::Authorization) => {
                let _ = host::set_request_header("authorization", None);
            }
            Some(TokenSource::Header { name, .. }) => {
                let _ = host::set_request_header(name, None);
            }
            Some(TokenSource::Cookie(name)) => {
                let values: Vec<&str> = request.header_values("cookie").collect();
                let kept = cookie_without(&values, name);
                let _ = host::set_request_header("cookie", kept.as_deref());
            }
            Some(TokenSource::Query(name)) => {
                let _ = host::set_request_header(
                    ":path",
                    Some(&path_without_param(&request.path, name)),
                );
            }
        }
    };
    let (verdict, reason) = match &outcome.decision {
        Decision::Allow { .. } if outcome.public => ("public", None),
        Decision::Allow { .. } if outcome.anonymous => ("anonymous", None),
        Decision::Allow { .. } => ("allowed", None),
        Decision::Deny(d) if audit => ("would_deny", Some(d.reason())),
        Decision::Deny(d) => ("denied", Some(d.reason())),
        Decision::AwaitKeys { .. } | Decision::AwaitAccount { .. } => {
            ("denied", Some(Denial::Unavailable.reason()))
        }
    };
    if fields {
        record(shared, &outcome, verdict, reason);
    }
    match outcome.decision {
        Decision::Allow { headers } => {
            shared
                .borrow()
                .metrics
                .allowed(outcome.public, outcome.anonymous);
            forward(&headers);
            Action::Continue
        }
        Decision::Deny(denial) => {
            let s = shared.borrow();
            s.metrics.denied(&denial, audit);
            let line = || {
                format!(
                    "bearer-guard: {} {} rule={} route={} request_id={} why={}",
                    if audit { "audit: would deny" } else { "denied" },
                    denial.reason(),
                    s.config.rule_name(outcome.rule),
                    request.route_name.as_deref().unwrap_or("-"),
                    request.request_id,
                    outcome.note
                )
            };
            if audit {
                log(Level::Info, &line());
                drop(s);
                forward(&outcome.identity);
                return Action::Continue;
            }
            if s.debug {
                log(Level::Debug, &line());
            }
            drop(s);
            send_reply(&denial, &request.request_id)
        }
        // Not reachable from `handle`/`wake` (they decide without waiting); fail closed.
        Decision::AwaitKeys { .. } | Decision::AwaitAccount { .. } => {
            send_reply(&Denial::Unavailable, &request.request_id)
        }
    }
}

/// Records the decision where Envoy's access log can print it (filter state
/// `wasm.bearer_guard.*`): outcome, reason, rule, provider and subject — never a token or
/// a claim set.
fn record(shared: &SharedRef, outcome: &Outcome, verdict: &str, reason: Option<&str>) {
    let s = shared.borrow();
    let _ = host::set_property("bearer_guard.outcome", verdict);
    let _ = host::set_property("bearer_guard.rule", s.config.rule_name(outcome.rule));
    if let Some(reason) = reason {
        let _ = host::set_property("bearer_guard.reason", reason);
    }
    if let Some(p) = outcome.provider {
        let _ = host::set_property("bearer_guard.provider", s.config.provider_name(p));
    }
    if let Some(sub) = &outcome.subject {
        let _ = host::set_property("bearer_guard.subject", sub);
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

/// Periodic work: adopt key sets other VMs fetched, start due fetches, dispatch deferred
/// lookups, see other VMs' account answers, and give up on what waited too long.
pub(crate) fn tick(shared: &SharedRef, current: u32, dispatch: Dispatch) {
    let now = now_ms();
    {
        let mut s = shared.borrow_mut();
        s.debug = host::logs(Level::Debug);
        s.metrics.flush();
    }
    let count = shared.borrow().keys.len();
    for provider in 0..count {
        let settled = shared.borrow_mut().sync_keys(provider, now);
        if settled {
            wake(shared, &Wait::Keys(provider), now, current);
        }
        if shared.borrow().provider_keys(provider).is_some() {
            start_fetch(shared, provider, now, dispatch);
        }
    }
    let deferred = shared.borrow_mut().waiters.take_deferred();
    for lookup in deferred {
        if !start_account(shared, &lookup, now, dispatch) {
            wake(
                shared,
                &Wait::Account(lookup.provider, lookup.key.clone()),
                now,
                current,
            );
        }
    }
    // Requests waiting for another VM's account lookup: its answer (or failure, or a
    // lease that ran out) lets them decide.
    let waits = shared.borrow().waiters.waited_for();
    for wait in waits {
        let Wait::Account(provider, key) = &wait else {
            continue;
        };
        let answered = {
            let s = shared.borrow();
            !s.waiters.looking_up(key)
                && s.shared_accounts
                    .and_then(|a| a.read(&s.store, key))
                    .is_none_or(|state| !matches!(state, SharedAccount::Pending(_)))
        };
        if answered {
            shared.borrow_mut().adopt_account(*provider, key, now);
            wake(shared, &wait, now, current);
        }
    }
    let late = shared.borrow_mut().waiters.tick(now);
    resume(shared, late, now, current);
    let mut s = shared.borrow_mut();
    let period = if s.waiters.any() {
        WAITING_TICK_MS
    } else {
        IDLE_TICK_MS
    };
    s.set_tick(period);
}
