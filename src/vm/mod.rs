//! One VM's orchestration, sans-IO: the state of one wasm VM (compiled configuration, key
//! sets, caches, paused requests) and its three entry points — a new request, a call's
//! response, a tick — each taking `now` and returning [`Effect`]s for the glue to apply.
//!
//! Every decision around the pipeline lives here: when keys are fetched and by which VM of
//! the process (the lease), how long a request may wait, when an account lookup is made
//! or shared, how long its answer is kept, what reaches the upstream and the access log.
//! The host is injected: the process-wide [`Store`], the signature backend and a [`Host`]
//! that dispatches calls. Two `Vm`s on one `MemoryStore` are two Envoy workers.

pub mod effects;
mod fetches;
mod lookups;
pub mod metrics;
mod outcome;
mod revocations;
pub mod waiters;

pub use self::effects::{
    CallResponse, Effect, Host, Level, MetricKind, Outgoing, HOST_CALLS_PER_REQUEST,
};

use self::metrics::Metrics;
use crate::account::{AccountCache, AccountState, SharedAccounts};
use crate::config::Config;
use crate::keys::{KeySet, ProviderKeys};
use crate::pipeline::{
    decide, AccountLookup, CacheNote, Decision, Inputs, KeyLookup, Outcome, RevocationLookup,
    VerdictLookup,
};
use crate::pipeline::{Wait, Waited};
use crate::reply::Denial;
use crate::request::{Body, Request};
use crate::revocation::RevocationList;
use crate::sender::replay::{Claimed, ReplayStore};
use crate::shared::KeyAvailability;
use crate::shared::{update, Reader, Store};
use crate::token::cache::{SharedTokens, SharedVerdict, TokenCache, TokenDigest};
use crate::verify::SignatureBackend;
use crate::vm::waiters::{Event, Waiter, Waiters};

/// Tick period when no request waits: key refreshes, metric flushes.
pub const IDLE_TICK_MS: u32 = 200;
/// Tick period while requests wait: how soon they see what another VM fetched.
pub const WAITING_TICK_MS: u32 = 20;
/// How long past its call's timeout a paused request still waits: a call deferred to the
/// next tick, or made by another VM, is seen up to a tick later.
pub const WAIT_GRACE_MS: u64 = 1000;
/// How long past its call's timeout an account lookup claimed by one VM keeps other VMs
/// from asking (then the claim lapses and another VM may ask).
pub const ACCOUNT_CLAIM_GRACE_MS: u64 = 1000;
/// How long an answer with `ttl_s: 0` stays readable for the other VMs' waiting
/// requests (it serves those only: nothing is cached).
pub const UNCACHED_ANSWER_MS: u64 = 1000;
/// A VM logs a proof refused for want of replay space at most once per this many ms (each
/// refusal is counted in `dpop_replay_store_full`).
pub const REPLAY_WARN_EVERY_MS: u64 = 10_000;

/// How long a request whose head is held for its body waits for a first body callback
/// before the VM concludes that the host does not hold heads (see
/// [`Vm::give_up_held_heads`]): only until one such callback has come to the VM.
pub const HELD_BODY_WAIT_MS: u64 = 5_000;

/// A request whose decision needs its body (a GraphQL POST), until the body is complete.
struct Reading {
    context: u32,
    request: Request,
    waited: Waited,
    /// Its head is held too (`graphql.hold_head`), not gone on upstream.
    head_held: bool,
    /// When it started to wait for its body (ms).
    since_ms: u64,
}

/// The state of one VM and its entry points.
pub struct Vm {
    config: Config,
    backend: Box<dyn SignatureBackend>,
    store: Box<dyn Store>,
    /// This VM's number in the process (the holder id of fetch leases).
    id: u64,
    /// Per provider with a JWKS: its keys as this VM sees them.
    keys: Vec<Option<ProviderKeys>>,
    /// The configuration's revocation lists, one per source.
    lists: Vec<(revocations::List, revocations::ListFlags)>,
    /// Per provider with an account service: this VM's cache of its answers.
    accounts: Vec<Option<AccountCache>>,
    /// Per provider accepting DPoP: its process-wide proof replay store.
    replay: Vec<Option<ReplayStore>>,
    /// When (VM clock, ms) this VM last logged a proof refused for want of replay space:
    /// at most one such line per [`REPLAY_WARN_EVERY_MS`], so a flood cannot flood the log.
    replay_warned_ms: Option<u64>,
    tokens: TokenCache,
    shared_tokens: Option<SharedTokens>,
    shared_accounts: Option<SharedAccounts>,
    waiters: Waiters<Request>,
    /// Requests whose decision needs their body (GraphQL), until it has arrived.
    reading: Vec<Reading>,
    /// A body callback came for a request whose head was held: the host holds heads
    /// (see [`Vm::give_up_held_heads`]).
    host_holds_heads: bool,
    metrics: Metrics,
    /// Whether the host prints debug lines (debug lines are formatted only then).
    debug: bool,
    tick_ms: u32,
    /// The time of the VM's last tick, configuration or call response (ms): requests are
    /// judged at it (see [`Vm::clock`]).
    clock: u64,
}

impl Vm {
    /// A VM for `config`, on the process-wide `store`; `(now, root_context)` name the VM
    /// when the store cannot number it (no shared data); `entropy` is 16 bytes from the
    /// host's random source (`None` when it has none), for the process's token digest key
    /// ([`SharedTokens::establish`]). Then [`Vm::on_configure`].
    pub fn new(
        config: Config,
        backend: Box<dyn SignatureBackend>,
        store: Box<dyn Store>,
        (now, root_context): (u64, u32),
        entropy: Option<[u8; 16]>,
    ) -> Vm {
        let keys = config
            .providers
            .iter()
            .map(|p| {
                p.jwks
                    .as_ref()
                    .map(|j| ProviderKeys::for_source(j.fingerprint, j.policy, j.max_bytes))
            })
            .collect();
        let accounts = config
            .providers
            .iter()
            .map(|p| p.account.as_ref().map(|a| AccountCache::new(a.max_entries)))
            .collect();
        // A number for this VM, unique in the process: the holder of a fetch lease.
        let id = update(
            &*store,
            "bearer_guard.vm_seq",
            |b| Reader(b).u64(),
            |n: &u64| n.to_le_bytes().to_vec(),
            |n| Some(n.wrapping_add(1).max(1)),
        )
        .ok()
        .flatten()
        .unwrap_or((now << 16) | u64::from(root_context));
        let replay = config
            .providers
            .iter()
            .map(|p| {
                let d = p.dpop.as_ref()?;
                Some(ReplayStore::new(
                    &crate::config::segment(&p.name),
                    d.replay_entries,
                ))
            })
            .collect();
        let slots = config.shared;
        Vm {
            replay,
            replay_warned_ms: None,
            lists: revocations::lists(&config),
            tokens: TokenCache::new(config.token_cache_entries),
            shared_tokens: (slots.tokens > 0)
                .then(|| SharedTokens::establish(&*store, slots.tokens, entropy))
                .flatten(),
            shared_accounts: (slots.accounts > 0).then(|| SharedAccounts::new(slots.accounts)),
            metrics: Metrics::new(&config),
            config,
            backend,
            store,
            id,
            keys,
            accounts,
            waiters: Waiters::default(),
            reading: Vec::new(),
            host_holds_heads: false,
            debug: false,
            tick_ms: IDLE_TICK_MS,
            clock: now,
        }
    }

    /// The configuration is in force: it starts with the keys the process already has
    /// (no refetch, no request paused for them).
    pub fn on_configure(&mut self, now: u64) -> Vec<Effect> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        // Every replay bucket exists before this VM claims proofs in any.
        for store in self.replay.iter().flatten() {
            store.prepare(&*self.store);
        }
        for provider in 0..self.keys.len() {
            self.sync_keys(provider, now, &mut out);
        }
        for list in 0..self.lists.len() {
            self.sync_revocation(list, now, &mut out);
        }
        out
    }

    /// The time requests are judged at: the VM's last tick (every 200 ms, 20 ms while
    /// requests wait), configuration or call response — at most a tick old. Reading the
    /// host's clock is a crossing that costs as much as a header write (`make bench`'s
    /// probes); a tick-old clock is far inside `clock_skew_s` for `exp` and `nbf`.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// The compiled configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This VM's number in the process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Every metric's name and kind; effects name metrics by their index here.
    pub fn metric_definitions(&self) -> &[(String, MetricKind)] {
        self.metrics.definitions()
    }

    /// Counts not yet flushed (they go out on the next tick): for tests.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the host prints debug lines (debug lines are only formatted then); the
    /// tick refreshes it.
    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    /// Whether any request is paused.
    pub fn waiting(&self) -> bool {
        self.waiters.any()
    }

    /// The tick period the core last asked for.
    pub fn tick_period_ms(&self) -> u32 {
        self.tick_ms
    }

    /// A new request in HTTP context `context`: its effects for that context (header
    /// edits, then `Continue`, `Pause` or `Reply`), and any calls made through `host`.
    pub fn on_request(
        &mut self,
        now: u64,
        context: u32,
        request: Request,
        host: &mut dyn Host,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        // Client-sent copies of every header the filter may set go first, on every route.
        for name in self.config.owned_headers() {
            if request.headers.first(name).is_some() {
                out.push(Effect::Header {
                    context,
                    name: name.to_string(),
                    value: None,
                });
            }
        }
        self.process(
            context,
            request,
            Waited::default(),
            now,
            Some(host),
            &mut out,
        );
        out
    }

    /// The response to call `token` (made by this VM from any of its contexts): a key set
    /// or an account answer, and the paused requests it lets decide (each `Continue` or
    /// `Reply` resumes a paused request).
    pub fn on_call_response(
        &mut self,
        now: u64,
        token: u32,
        response: &CallResponse,
        host: &mut dyn Host,
    ) -> Vec<Effect> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        let Some(call) = self.waiters.call_answered(token) else {
            return out;
        };
        match call {
            crate::vm::waiters::Call::Discovery(provider) => {
                self.discovery_response(provider, response, now, host, &mut out)
            }
            crate::vm::waiters::Call::Jwks(provider) => {
                self.jwks_response(provider, response, now, host, &mut out)
            }
            crate::vm::waiters::Call::Revocation(list) => {
                self.revocation_response(list, response, now, &mut out)
            }
            crate::vm::waiters::Call::Account { provider, key } => {
                self.account_response(provider, &key, response, now, &mut out);
                self.wake(&Event::Account(provider, key), now, &mut out);
            }
        }
        self.set_tick(&mut out);
        out
    }

    /// `body_size` bytes of the request body of `context` have arrived (`end`: all of
    /// it); `read` reads them. While the request's decision waits — for its body, keys or
    /// an account — the body is held back (`Pause`: Envoy buffers it), and once complete
    /// it is kept for the decision; a request that needs its body is decided when it is
    /// complete. No effect: the request was decided already.
    pub fn on_request_body(
        &mut self,
        now: u64,
        context: u32,
        (body_size, end): (usize, bool),
        read: &dyn Fn() -> Vec<u8>,
        host: &mut dyn Host,
    ) -> Vec<Effect> {
        let limit = self.config.graphql.max_body_bytes;
        let body = || {
            if body_size > limit {
                Body::TooLarge(body_size)
            } else {
                Body::Read(read())
            }
        };
        self.body_arrived(
            now,
            context,
            (end || body_size > limit).then_some(body),
            host,
        )
    }

    /// The request's trailers have arrived: its body (what `read(max)` returns, at most
    /// `max` bytes) is complete. A request with trailers ends with them, not with a body
    /// callback marked as the end.
    pub fn on_request_trailers(
        &mut self,
        now: u64,
        context: u32,
        read: &dyn Fn(usize) -> Vec<u8>,
        host: &mut dyn Host,
    ) -> Vec<Effect> {
        let limit = self.config.graphql.max_body_bytes;
        let body = || {
            let bytes = read(limit.saturating_add(1));
            if bytes.len() > limit {
                Body::TooLarge(bytes.len())
            } else {
                Body::Read(bytes)
            }
        };
        self.body_arrived(now, context, Some(body), host)
    }

    /// More of a request's body arrived; `complete` gives the whole body (or that it is
    /// over the limit) once no more is to come.
    fn body_arrived(
        &mut self,
        now: u64,
        context: u32,
        complete: Option<impl FnOnce() -> Body>,
        host: &mut dyn Host,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(at) = self.reading.iter().position(|r| r.context == context) {
            if self.reading.get(at).is_some_and(|r| r.head_held) {
                // A body callback while the head is held: the host holds heads.
                self.host_holds_heads = true;
            }
            let Some(complete) = complete else {
                out.push(Effect::Pause { context });
                return out;
            };
            let mut reading = self.reading.swap_remove(at);
            reading.request.body = complete();
            self.process(
                context,
                reading.request,
                reading.waited,
                now,
                Some(host),
                &mut out,
            );
            self.set_tick(&mut out);
            return out;
        }
        let graphql = self.config.has_graphql;
        if let Some(request) = self.waiters.request_mut(context) {
            // Paused in its header phase, and still the body comes: the host holds heads.
            self.host_holds_heads = true;
            if let (Some(complete), true) = (complete, graphql) {
                request.body = complete();
            }
            out.push(Effect::Pause { context });
        }
        out
    }

    /// Periodic work: flush metrics, adopt key sets and revocation lists other VMs
    /// fetched, start due fetches,
    /// dispatch deferred lookups, see other VMs' account answers, and give up on what
    /// waited too long.
    pub fn on_tick(&mut self, now: u64, host: &mut dyn Host) -> Vec<Effect> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        self.metrics.flush(&mut out);
        for provider in 0..self.keys.len() {
            if self.sync_keys(provider, now, &mut out) {
                self.wake(&Event::Keys(provider), now, &mut out);
            }
            if let Some(k) = self.provider_keys(provider) {
                let health = (k.version(), k.age_ms(now), k.stale(now));
                self.metrics.key_set(provider, health, &mut out);
                self.start_fetch(provider, now, host, &mut out);
            }
        }
        for list in 0..self.lists.len() {
            if self.sync_revocation(list, now, &mut out) {
                self.wake(&Event::Revocation(list), now, &mut out);
            }
            self.start_revocation_fetch(list, now, host, &mut out);
        }
        self.tick_lookups(now, host, &mut out);
        self.give_up_held_heads(now, &mut out);
        let late = self.waiters.tick(now);
        self.resume(late, now, &mut out);
        self.set_tick(&mut out);
        out
    }

    /// HTTP context `context` is gone: forget its paused request.
    pub fn on_context_gone(&mut self, context: u32) {
        self.waiters.forget(context);
        self.reading.retain(|r| r.context != context);
    }

    fn provider_keys(&self, provider: usize) -> Option<&ProviderKeys> {
        self.keys.get(provider).and_then(Option::as_ref)
    }

    /// Emits a debug line, formatting it only when the host prints debug lines.
    fn debug(&self, out: &mut Vec<Effect>, line: impl FnOnce() -> String) {
        if self.debug {
            out.push(Effect::Log(Level::Debug, line()));
        }
    }

    /// Asks for the tick period the waiting requests need, when it changes (and counts
    /// them for the process-wide gauge).
    fn set_tick(&mut self, out: &mut Vec<Effect>) {
        self.metrics.waiting(self.waiters.count());
        let ms = if self.waiters.any() {
            WAITING_TICK_MS
        } else {
            IDLE_TICK_MS
        };
        if ms != self.tick_ms {
            self.tick_ms = ms;
            out.push(Effect::TickPeriod(ms));
        }
    }

    fn decide(&self, req: &Request, now: u64, waited: &Waited) -> Outcome {
        let view = View {
            vm: self,
            now_ms: now,
            waited,
        };
        let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        let mut inputs = Inputs::new(&self.config, &view, &*self.backend, now_s).accounts(&view);
        if self.config.token_cache_entries > 0 {
            inputs = inputs.cache(&self.tokens);
        }
        if self.shared_tokens.is_some() {
            inputs = inputs.verdicts(&view);
        }
        if !self.lists.is_empty() {
            inputs = inputs.revocations(&view);
        }
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
                    shared.publish(&*self.store, &verdict);
                }
            }
            CacheNote::Hit => self.metrics.cache_hit(),
            CacheNote::None => {}
        }
    }

    /// Decides a request and applies the decision, or parks it until keys or an account
    /// arrive. With `host` (the request's own callback) calls start at once; without it (a
    /// wake-up inside another context's callback, whose calls must not outlive it) the
    /// next tick starts them.
    fn process(
        &mut self,
        context: u32,
        request: Request,
        mut waited: Waited,
        now: u64,
        mut host: Option<&mut (dyn Host + '_)>,
        out: &mut Vec<Effect>,
    ) {
        loop {
            let mut outcome = self.decide(&request, now, &waited);
            self.note_cache(std::mem::take(&mut outcome.cache), now);
            let wait = match outcome.decision {
                Decision::Await(ref wait) => wait.clone(),
                Decision::ReadBody { ref headers } => {
                    let head_held = self.config.graphql.hold_head;
                    if head_held {
                        // The head waits with the body: a refused request never reaches
                        // the upstream, not even its head.
                        out.push(Effect::Pause { context });
                    } else {
                        // The head goes on with the token's identity; the body is held
                        // (the body callbacks answer Pause) until it is complete.
                        self.forward(context, &request, &outcome, headers, out);
                        out.push(Effect::Continue { context });
                    }
                    self.reading.push(Reading {
                        context,
                        request,
                        waited,
                        head_held,
                        since_ms: now,
                    });
                    return;
                }
                Decision::Allow { .. } | Decision::Deny(_) => {
                    return self.finish(context, &request, outcome, out)
                }
            };
            waited.add(wait.clone());
            let (event, timeout_ms, started) = match wait {
                Wait::Keys { provider, refetch } => {
                    let (timeout, started) =
                        self.await_keys(provider, refetch, now, host.as_deref_mut(), out);
                    (Event::Keys(provider), timeout, started)
                }
                Wait::Revocation { provider } => {
                    let list = self.config.revocation_of(provider).map_or(0, |(i, _)| i);
                    let (timeout, started) =
                        self.await_revocation(list, now, host.as_deref_mut(), out);
                    (Event::Revocation(list), timeout, started)
                }
                Wait::Account {
                    provider,
                    key,
                    path,
                } => {
                    // Another VM of the process may have the answer already.
                    if self.adopt_account(provider, &key, now) {
                        continue;
                    }
                    let (timeout, started) = self.await_account(
                        provider,
                        &key,
                        path,
                        &request.request_id,
                        now,
                        host.as_deref_mut(),
                        out,
                    );
                    (Event::Account(provider, key), timeout, started)
                }
            };
            if !started {
                // The call could not be made: decide again without waiting (500 or 401).
                let outcome = self.decide(&request, now, &waited);
                return self.finish(context, &request, outcome, out);
            }
            self.debug(out, || {
                let what = match &outcome.decision {
                    Decision::Await(w) => w.describe(),
                    _ => String::new(),
                };
                format!(
                    "bearer-guard: request_id={} waits for {what}",
                    request.request_id
                )
            });
            self.waiters.park(Waiter {
                context_id: context,
                wait: event,
                waited,
                deadline_ms: now.saturating_add(timeout_ms).saturating_add(WAIT_GRACE_MS),
                request,
            });
            out.push(Effect::Pause { context });
            self.set_tick(out);
            return;
        }
    }

    /// Requests whose head is held for their body (`graphql.hold_head`) while no body
    /// callback has ever come to this VM for such a head: after [`HELD_BODY_WAIT_MS`] the
    /// host is taken not to hold heads (Envoy's `allow_on_headers_stop_iteration` off) —
    /// the request is answered 500, fail closed, and the log says what to set.
    fn give_up_held_heads(&mut self, now: u64, out: &mut Vec<Effect>) {
        if self.host_holds_heads {
            return;
        }
        let (late, kept): (Vec<Reading>, Vec<Reading>) = std::mem::take(&mut self.reading)
            .into_iter()
            .partition(|r| r.head_held && now >= r.since_ms.saturating_add(HELD_BODY_WAIT_MS));
        self.reading = kept;
        for r in late {
            out.push(Effect::Log(
                Level::Error,
                format!(
                    "bearer-guard: request_id={} held its head for the body, and no body came in {} s: Envoy does not pass the body to a filter that holds the head. Set allow_on_headers_stop_iteration: true in the wasm filter's config, or graphql.hold_head: false with Envoy's buffer filter after bearer-guard (README, GraphQL rules)",
                    r.request.request_id,
                    HELD_BODY_WAIT_MS / 1000
                ),
            ));
            let mut outcome = Outcome::refused(Denial::Unavailable, "no body came to a held head");
            outcome.mode = self.config.mode;
            self.finish(r.context, &r.request, outcome, out);
        }
    }

    /// Decides again every request paused for `wait`.
    fn wake(&mut self, wait: &Event, now: u64, out: &mut Vec<Effect>) {
        let woken = self.waiters.wake(wait);
        self.resume(woken, now, out);
    }

    fn resume(&mut self, woken: Vec<Waiter<Request>>, now: u64, out: &mut Vec<Effect>) {
        for w in woken {
            self.process(w.context_id, w.request, w.waited, now, None, out);
        }
    }
}

/// What the pipeline sees of a VM for one decision.
struct View<'a> {
    vm: &'a Vm,
    now_ms: u64,
    waited: &'a Waited,
}

impl AccountLookup for View<'_> {
    fn account(&self, provider: usize, key: &str) -> AccountState<'_> {
        self.vm
            .accounts
            .get(provider)
            .and_then(Option::as_ref)
            .map_or(AccountState::Unknown, |c| c.get(key, self.now_ms))
    }
    fn may_wait(&self, provider: usize, key: &str) -> bool {
        !self.waited.has(&Wait::Account {
            provider,
            key: key.to_string(),
            path: String::new(),
        })
    }
}

impl KeyLookup for View<'_> {
    fn availability(&self, provider: usize) -> KeyAvailability {
        let availability = self
            .vm
            .provider_keys(provider)
            .map_or(KeyAvailability::Unavailable, |k| {
                k.availability(self.now_ms)
            });
        match availability {
            // Each request waits for keys at most once.
            KeyAvailability::Loading if self.waited.keys(provider) => KeyAvailability::Unavailable,
            other => other,
        }
    }
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.vm.provider_keys(provider).and_then(ProviderKeys::keys)
    }
    fn may_refetch(&self, provider: usize) -> bool {
        !self.waited.keys(provider)
            && self
                .vm
                .provider_keys(provider)
                .is_some_and(|k| k.may_refetch(self.now_ms))
    }
}

impl RevocationLookup for View<'_> {
    fn revocation(&self, provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        let Some((list, _)) = self
            .vm
            .config
            .revocation_of(provider)
            .and_then(|(i, _)| self.vm.lists.get(i))
        else {
            return (KeyAvailability::Unavailable, None);
        };
        match (list.availability(self.now_ms), list.doc()) {
            // Each request waits for a list at most once.
            (KeyAvailability::Loading, None) if self.waited.has(&Wait::Revocation { provider }) => {
                (KeyAvailability::Unavailable, None)
            }
            other => other,
        }
    }
}

impl VerdictLookup for View<'_> {
    fn digest(&self, token: &str) -> TokenDigest {
        // The view is the pipeline's verdict lookup only when the level is on (`decide`);
        // without it `verdict` finds nothing, whatever the digest.
        self.vm.shared_tokens.map_or([0; 16], |t| t.digest(token))
    }

    fn verdict(&self, digest: &TokenDigest) -> Option<SharedVerdict> {
        self.vm
            .shared_tokens
            .and_then(|t| t.lookup(&*self.vm.store, digest))
    }
}
