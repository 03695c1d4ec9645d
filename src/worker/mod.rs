//! The per-worker core, sans-IO: one [`Worker`] per Envoy worker thread — a wasm VM in the
//! proxy-wasm host, a worker's state in the native host. It is made of components that
//! own their state — key sets ([`keys`]), revocation lists ([`lists`]), account lookups
//! ([`accounts`]), verified-token caches ([`tokens`]), the DPoP replay guard ([`replay`]),
//! the calls in flight ([`calls`]), the waiting requests ([`waiting`]) and the metrics
//! ([`metrics`]) — and only routes its entry points to them. Each entry point takes `now`
//! and returns [`Effect`]s for the host to apply, in order:
//!
//! | entry point | when |
//! |---|---|
//! | [`Worker::new`] | the configuration is compiled (then `on_configure`) |
//! | [`Worker::on_configure`] | the configuration is in force |
//! | [`Worker::on_request`] | a request's headers arrived |
//! | [`Worker::on_request_body`] | more of its body arrived |
//! | [`Worker::on_request_trailers`] | its trailers arrived (the body is complete) |
//! | [`Worker::on_call_response`] | a call this worker made was answered (or failed) |
//! | [`Worker::on_tick`] | the periodic tick |
//! | [`Worker::on_context_gone`] | a request's stream is gone |
//!
//! Every decision around the pipeline lives here: when keys are fetched and by which
//! worker of the process (the lease), how long a request may wait, when an account lookup
//! is made or shared, how long its answer is kept, what reaches the upstream and the
//! access log. The host is injected: the process-wide [`Store`], the signature backend and
//! a [`Host`] that dispatches calls. Two `Worker`s on one `MemoryStore` are two Envoy
//! workers.

/// A [`Cx`] over a worker's fields and an effect list.
macro_rules! cx {
    ($w:expr, $out:expr) => {
        $crate::worker::Cx {
            config: &$w.config,
            store: &*$w.store,
            id: $w.id,
            metrics: &mut $w.metrics,
            calls: &mut $w.calls,
            out: $out,
            debug: $w.debug,
        }
    };
}

pub mod accounts;
pub mod calls;
pub mod effects;
pub mod keys;
pub mod lists;
pub mod metrics;
mod outcome;
pub mod replay;
pub mod responses;
pub mod tokens;
mod view;
pub mod waiting;

pub use self::effects::{
    CallResponse, DispatchError, Effect, Host, Level, MetricKind, Outgoing, HOST_CALLS_PER_REQUEST,
};
pub use self::waiting::HELD_BODY_WAIT_MS;

use self::accounts::{Accounts, Ask, Lookup};
use self::calls::{Call, Calls};
use self::keys::KeySets;
use self::lists::Lists;
use self::metrics::Metrics;
use self::replay::ReplayGuard;
pub use self::responses::ResponsePlan;
use self::responses::Responses;
use self::tokens::Tokens;
use self::view::View;
use self::waiting::{Event, Reading, Waiter, Waiting};
use crate::config::Config;
use crate::pipeline::{decide, Decision, Inputs, Outcome, Wait, Waited};
use crate::reply::Denial;
use crate::request::{Body, Request};
use crate::shared::{update, Reader, Store};
use crate::verify::SignatureBackend;

/// Tick period when no request waits: key refreshes, metric flushes.
pub const IDLE_TICK_MS: u32 = 200;
/// Tick period while requests wait: how soon they see what another worker fetched.
pub const WAITING_TICK_MS: u32 = 20;
/// How long past its call's timeout a paused request still waits: a call deferred to the
/// next tick, or made by another worker, is seen up to a tick later.
pub const WAIT_GRACE_MS: u64 = 1000;
/// How long past its call's timeout an account lookup claimed by one worker keeps other
/// workers from asking (then the claim lapses and another worker may ask).
pub const ACCOUNT_CLAIM_GRACE_MS: u64 = 1000;
/// How long an answer with `ttl_s: 0` stays readable for the other workers' waiting
/// requests (it serves those only: nothing is cached).
pub const UNCACHED_ANSWER_MS: u64 = 1000;

/// What a component may use during an entry point besides its own state: the
/// configuration, the process store, this worker's id, the metrics, the calls in flight
/// and the effects so far.
pub struct Cx<'a> {
    config: &'a Config,
    store: &'a dyn Store,
    id: u64,
    metrics: &'a mut Metrics,
    calls: &'a mut Calls,
    out: &'a mut Vec<Effect>,
    debug: bool,
}

impl Cx<'_> {
    /// Emits a debug line, formatting it only when the host prints debug lines.
    fn debug(&mut self, line: impl FnOnce() -> String) {
        if self.debug {
            self.out.push(Effect::Log(Level::Debug, line()));
        }
    }
}

/// The state of one Envoy worker and its entry points.
pub struct Worker {
    config: Config,
    backend: Box<dyn SignatureBackend>,
    store: Box<dyn Store>,
    /// This worker's number in the process (the holder id of fetch leases).
    id: u64,
    keys: KeySets,
    lists: Lists,
    accounts: Accounts,
    tokens: Tokens,
    replay: ReplayGuard,
    responses: Responses,
    calls: Calls,
    waiting: Waiting,
    metrics: Metrics,
    /// Whether the host prints debug lines (debug lines are formatted only then).
    debug: bool,
    tick_ms: u32,
    /// The time of the worker's last tick, configuration or call response (ms): requests
    /// are judged at it (see [`Worker::clock`]).
    clock: u64,
}

impl Worker {
    /// A worker for `config`, on the process-wide `store`; `(now, root_context)` name the
    /// worker when the store cannot number it; `entropy` is 16 bytes from the host's
    /// random source (`None` when it has none), for the process's token digest key. Then
    /// [`Worker::on_configure`].
    pub fn new(
        config: Config,
        backend: Box<dyn SignatureBackend>,
        store: Box<dyn Store>,
        (now, root_context): (u64, u32),
        entropy: Option<[u8; 16]>,
    ) -> Worker {
        // A number for this worker, unique in the process: the holder of a fetch lease.
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
        Worker {
            keys: KeySets::new(&config),
            lists: Lists::new(&config),
            accounts: Accounts::new(&config),
            tokens: Tokens::new(&config, &*store, entropy),
            replay: ReplayGuard::new(&config),
            responses: Responses::default(),
            calls: Calls::default(),
            waiting: Waiting::default(),
            metrics: Metrics::new(&config),
            config,
            backend,
            store,
            id,
            debug: false,
            tick_ms: IDLE_TICK_MS,
            clock: now,
        }
    }

    /// The configuration is in force: it starts with the keys and lists the process
    /// already has (no refetch, no request paused for them).
    pub fn on_configure(&mut self, now: u64) -> Vec<Effect> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        for p in &self.config.providers {
            // Once per process and provider configuration: the first worker to create
            // the key says it.
            let first = || {
                let key = format!("bearer_guard.warned.issuer.{:016x}", p.fingerprint);
                self.store.create(&key, b"1").is_ok()
            };
            if p.issuer_template.is_some() && p.issuer_values.is_empty() && first() {
                out.push(Effect::Log(
                    Level::Warn,
                    format!(
                        "bearer-guard: provider {}: issuer template {} accepts any value: list the allowed ones in issuer_values",
                        p.name,
                        p.issuer.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        for (i, p) in self.config.providers.iter().enumerate() {
            if let Some(keys) = &p.inline_keys {
                // Keys from the configuration: in force at once, never fetched.
                self.metrics.adopted(i, keys.len(), &mut out);
                out.push(Effect::Log(
                    Level::Info,
                    format!(
                        "bearer-guard: provider {}: {} inline keys [{}] (jwks.inline: never fetched or refreshed)",
                        p.name,
                        keys.len(),
                        keys.kids().join(",")
                    ),
                ));
            }
        }
        self.replay.prepare(&*self.store);
        for provider in 0..self.keys.providers() {
            self.keys.sync(provider, now, &mut cx!(self, &mut out));
        }
        for list in 0..self.lists.len() {
            self.lists.sync(list, now, &mut cx!(self, &mut out));
        }
        out
    }

    /// The time requests are judged at: the worker's last tick (every 200 ms, 20 ms while
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

    /// This worker's number in the process.
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
        self.waiting.any()
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
        // A protected resource's metadata document is the filter's own answer (RFC 9728).
        if let Some(reply) = self.config.resources.answer(&request) {
            out.push(Effect::Reply { context, reply });
            return out;
        }
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

    /// The response to call `token` (made by this worker from any of its contexts): a key
    /// set, a list or an account answer, and the paused requests it lets decide (each
    /// `Continue` or `Reply` resumes a paused request).
    pub fn on_call_response(
        &mut self,
        now: u64,
        token: u32,
        response: &CallResponse,
        host: &mut dyn Host,
    ) -> Vec<Effect> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        let Some(call) = self.calls.answered(token) else {
            return out;
        };
        let ready = {
            let cx = &mut cx!(self, &mut out);
            match call {
                Call::Discovery(provider) => self
                    .keys
                    .discovery_response(provider, response, now, host, cx)
                    .then_some(Event::Keys(provider)),
                Call::Jwks(provider) => {
                    self.keys.jwks_response(provider, response, now, host, cx);
                    Some(Event::Keys(provider))
                }
                Call::Revocation(list) => {
                    self.lists.response(list, response, now, cx);
                    Some(Event::Revocation(list))
                }
                Call::Account { provider, key } => {
                    let lookup = (Lookup::Account, provider, key.as_str());
                    self.accounts.response(lookup, response, now, cx);
                    Some(Event::Account(provider, key))
                }
                Call::Introspection { provider, key } => {
                    let lookup = (Lookup::Introspection, provider, key.as_str());
                    self.accounts.response(lookup, response, now, cx);
                    Some(Event::Introspection(provider, key))
                }
            }
        };
        if let Some(event) = ready {
            self.wake(&event, now, &mut out);
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
        let limit = self.config.max_body_bytes();
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
        let limit = self.config.max_body_bytes();
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
        match self.waiting.body_came(context) {
            Some(true) => {
                let Some(complete) = complete else {
                    out.push(Effect::Pause { context });
                    return out;
                };
                let Some(mut reading) = self.waiting.body_complete(context) else {
                    return out;
                };
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
            }
            Some(false) => {
                if let (Some(complete), true) =
                    (complete, self.config.has_graphql || self.config.has_mcp)
                {
                    if let Some(request) = self.waiting.paused_request(context) {
                        request.body = complete();
                    }
                }
                out.push(Effect::Pause { context });
            }
            None => {}
        }
        out
    }

    /// Periodic work: flush metrics, adopt key sets and revocation lists other workers
    /// fetched, start due fetches, dispatch deferred lookups, see other workers' account
    /// answers, and give up on what waited too long.
    pub fn on_tick(&mut self, now: u64, host: &mut dyn Host) -> Vec<Effect> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        self.metrics.flush(&mut out);
        for provider in 0..self.keys.providers() {
            if self.keys.sync(provider, now, &mut cx!(self, &mut out)) {
                self.wake(&Event::Keys(provider), now, &mut out);
            }
            self.keys
                .tick(provider, now, host, &mut cx!(self, &mut out));
        }
        for list in 0..self.lists.len() {
            if self.lists.sync(list, now, &mut cx!(self, &mut out)) {
                self.wake(&Event::Revocation(list), now, &mut out);
            }
            self.lists
                .start_fetch(list, now, host, &mut cx!(self, &mut out));
        }
        let waited_for = self.waiting.waited_for();
        let ready = self
            .accounts
            .tick(&waited_for, now, host, &mut cx!(self, &mut out));
        for event in ready {
            self.wake(&event, now, &mut out);
        }
        for r in self.waiting.bodies_never_coming(now) {
            self.body_never_came(r, &mut out);
        }
        let lost = self.accounts.lost(now, &mut cx!(self, &mut out));
        let late = self.waiting.late(now, &lost);
        self.resume(late, now, &mut out);
        self.set_tick(&mut out);
        out
    }

    /// The counts accumulated since the last flush, as effects: for a host that gathers
    /// them at every request (the native one: into atomic counters its main thread passes
    /// to Envoy); the wasm host leaves them to [`Worker::on_tick`].
    pub fn flush_metrics(&mut self, out: &mut Vec<Effect>) {
        self.metrics.flush(out);
    }

    /// HTTP context `context` is gone: forget its waiting request.
    pub fn on_context_gone(&mut self, context: u32) {
        self.waiting.forget(context);
        self.responses.forget(context);
    }

    /// Whether a response of this worker's requests is to be filtered (an MCP list
    /// answer): without one, the host passes responses untouched and asks nothing more.
    pub fn filters_responses(&self) -> bool {
        self.responses.any() || (self.config.filters_lists() && self.waiting.any_undecided())
    }

    /// The response of `context` has its head: `(status, content-type,
    /// content-encoding, content-length)`. `Pass` for every response but a filtered
    /// MCP list answer, which is held (`Hold`) or refused (`Reply`, a 502).
    pub fn on_response_headers(
        &mut self,
        context: u32,
        head: (u32, Option<&str>, Option<&str>, Option<usize>),
    ) -> ResponsePlan {
        if !self.filters_responses() {
            return ResponsePlan::Pass;
        }
        // An answer to a request not judged yet (its head went on before its body): it may
        // be a list no one filtered.
        if let Some(request_id) = self.waiting.undecided(context) {
            if self.config.filters_lists() {
                self.metrics.mcp_list_refused();
                return responses::Refused {
                    why: responses::ANSWERED_EARLY,
                    request_id: request_id.to_string(),
                }
                .reply();
            }
        }
        match self.responses.head(context, head, &self.config.mcp) {
            Ok(plan) => plan,
            Err(refused) => {
                self.metrics.mcp_list_refused();
                refused.reply()
            }
        }
    }

    /// `size` bytes of the response body of `context` so far (`end`: all of it, which
    /// `read` reads): `Hold` until it is complete, then `Replace` with the filtered
    /// list (each item judged as the message that would use it, under the current rules,
    /// at `now`), or `Reply` with a 502 when it cannot be filtered; `Pass` for a response
    /// that is not filtered.
    pub fn on_response_body(
        &mut self,
        now: u64,
        context: u32,
        (size, end): (usize, bool),
        read: &dyn Fn() -> Vec<u8>,
    ) -> ResponsePlan {
        if !self.responses.any() {
            return ResponsePlan::Pass;
        }
        let Some(pending) = self.responses.take(context) else {
            return ResponsePlan::Pass;
        };
        let limits = self.config.mcp;
        let (judged, held) = responses::body(
            pending,
            (size, end),
            read,
            &limits,
            &mut |req, kind, items| self.list_allowed(req, now, kind, items),
        );
        if let Some(p) = held {
            self.responses.hold(context, p);
        }
        match judged {
            Ok(j) => {
                if matches!(j.plan, ResponsePlan::Replace(_)) {
                    self.metrics.mcp_list_filtered(j.hidden);
                }
                j.plan
            }
            Err(refused) => {
                self.metrics.mcp_list_refused();
                refused.reply()
            }
        }
    }

    /// Which of a list's items the caller of `req` may use, at `now`.
    fn list_allowed(
        &self,
        req: &Request,
        now: u64,
        kind: crate::mcp::ListKind,
        items: &[&str],
    ) -> Vec<bool> {
        self.with_inputs(now, &Waited::default(), |inputs| {
            crate::pipeline::mcp_list_allowed(inputs, req, kind, items)
        })
    }

    /// A request whose head was held for a body that never came (the host does not hold
    /// heads): 500, fail closed, and the log says what to set.
    fn body_never_came(&mut self, r: Reading, out: &mut Vec<Effect>) {
        out.push(Effect::Log(
            Level::Error,
            format!(
                "bearer-guard: request_id={} held its head for the body, and no body came in {} s: Envoy does not pass the body to a filter that holds the head. Set allow_on_headers_stop_iteration: true in the wasm filter's config, or graphql.hold_head: false with Envoy's buffer filter after bearer-guard (docs/configuration.md, GraphQL rules)",
                r.request.request_id,
                HELD_BODY_WAIT_MS / 1000
            ),
        ));
        let mut outcome = Outcome::refused(Denial::Unavailable, "no body came to a held head");
        outcome.mode = self.config.mode;
        self.finish(r.context, &r.request, outcome, out);
    }

    /// Asks for the tick period the waiting requests need, when it changes (and counts
    /// them for the process-wide gauge).
    fn set_tick(&mut self, out: &mut Vec<Effect>) {
        self.metrics.waiting(self.waiting.count());
        let ms = if self.waiting.any() {
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
        self.with_inputs(now, waited, |inputs| decide(inputs, req))
    }

    /// `f` with the pipeline's inputs at `now`: this worker's keys, lists, accounts and
    /// caches.
    fn with_inputs<T>(&self, now: u64, waited: &Waited, f: impl FnOnce(&Inputs) -> T) -> T {
        let view = View {
            worker: self,
            now_ms: now,
            waited,
        };
        let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        let mut inputs = Inputs::new(&self.config, &view, &*self.backend, now_s).accounts(&view);
        if let Some(cache) = self.tokens.cache(&self.config) {
            inputs = inputs.cache(cache);
        }
        if self.tokens.shared() {
            inputs = inputs.verdicts(&view);
        }
        if !self.lists.is_empty() {
            inputs = inputs.revocations(&view);
        }
        f(&inputs)
    }

    /// Decides a request and applies the decision, or parks it until what it waits for
    /// arrives. With `host` (the request's own callback) calls start at once; without it
    /// (a wake-up inside another context's callback, whose calls must not outlive it) the
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
            let note = std::mem::take(&mut outcome.cache);
            self.tokens.note(note, now, &*self.store, &mut self.metrics);
            let wait = match outcome.decision {
                Decision::Await(ref wait) => wait.clone(),
                Decision::ReadBody {
                    ref headers,
                    hold_head,
                } => {
                    let head_held = hold_head;
                    if head_held {
                        // The head waits with the body: a refused request never reaches
                        // the upstream, not even its head.
                        out.push(Effect::Pause { context });
                    } else {
                        // The head goes on with the token's identity; the body is held
                        // (the body callbacks answer Pause) until it is complete.
                        self.forward(context, &request, &outcome, headers, out);
                        // The head goes before its body is judged: a list it may ask for
                        // must come uncompressed.
                        if self.config.filters_lists() {
                            outcome::remove_accept_encoding(context, &request, out);
                        }
                        out.push(Effect::Continue { context });
                    }
                    self.waiting.read_body(Reading {
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
            let cx = &mut cx!(self, out);
            let host = host.as_deref_mut();
            let (event, timeout_ms, started) = match wait {
                Wait::Keys { provider, refetch } => {
                    let (timeout, started) =
                        self.keys.await_keys((provider, refetch), now, host, cx);
                    (Event::Keys(provider), timeout, started)
                }
                Wait::Revocation { provider } => {
                    let list = cx.config.revocation_of(provider).map_or(0, |(i, _)| i);
                    let (timeout, started) = self.lists.await_list(list, now, host, cx);
                    (Event::Revocation(list), timeout, started)
                }
                Wait::Account {
                    provider,
                    key,
                    path,
                } => {
                    let lookup = (provider, key, Ask::Account(path));
                    match self
                        .accounts
                        .wait_for(lookup, &request.request_id, now, host, cx)
                    {
                        Some(waiting) => waiting,
                        // Another worker of the process had the answer already.
                        None => continue,
                    }
                }
                Wait::Introspection {
                    provider,
                    key,
                    token,
                } => {
                    let lookup = (provider, key, Ask::Introspection(token));
                    match self
                        .accounts
                        .wait_for(lookup, &request.request_id, now, host, cx)
                    {
                        Some(waiting) => waiting,
                        None => continue,
                    }
                }
            };
            if !started {
                // The call could not be made: decide again without waiting (500 or 401).
                let outcome = self.decide(&request, now, &waited);
                return self.finish(context, &request, outcome, out);
            }
            if self.debug {
                let what = match &outcome.decision {
                    Decision::Await(w) => w.describe(),
                    _ => String::new(),
                };
                out.push(Effect::Log(
                    Level::Debug,
                    format!(
                        "bearer-guard: request_id={} waits for {what}",
                        request.request_id
                    ),
                ));
            }
            self.waiting.park(Waiter {
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

    /// Decides again every request paused for `event`.
    fn wake(&mut self, event: &Event, now: u64, out: &mut Vec<Effect>) {
        let woken = self.waiting.wake(event);
        self.resume(woken, now, out);
    }

    fn resume(&mut self, woken: Vec<Waiter>, now: u64, out: &mut Vec<Effect>) {
        for w in woken {
            self.process(w.context_id, w.request, w.waited, now, None, out);
        }
    }
}
