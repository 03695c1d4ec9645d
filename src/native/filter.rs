//! The native host's worker side: each Envoy worker thread keeps one [`Worker`] core per
//! configuration (thread-local: a core never crosses threads), and each stream turns its
//! hooks into the core's entry points and applies the effects that come back — to its
//! own request through the hook's return status, to another paused request of the same
//! worker through that request's filter. The core is never borrowed while an effect is
//! applied: resuming a request may run its hooks again at once.

use super::abi::{self, FilterHandle, LogLevel, MetricChange};
use super::plugin::{self, Plugin, Shared};
use crate::reply::Denial;
use crate::request::{Body, Headers, Request};
use crate::worker::{
    self, CallResponse, DispatchError, Effect, Host, Outgoing, ResponsePlan, Worker,
};
use std::cell::Cell;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Hook statuses: go on, or stop (headers: StopIteration; body: StopIterationAndBuffer;
/// trailers: StopIteration — all `1`).
const CONTINUE: u32 = 0;
const STOP: u32 = 1;

/// One stream of one configuration.
pub(super) struct Stream {
    shared: Arc<Shared>,
    handle: FilterHandle,
    context: u32,
    worker: usize,
}

/// A worker's core for one configuration, and the streams it knows.
struct Local {
    core: Worker,
    /// Its configuration, to tell when Envoy destroyed it.
    shared: Weak<Shared>,
    next_context: u32,
    /// The live streams of this configuration on this thread.
    streams: HashMap<u32, FilterHandle>,
    last_tick: u64,
    tick_ms: u32,
}

thread_local! {
    static LOCALS: RefCell<HashMap<u64, Local>> = RefCell::new(HashMap::new());
    /// The count of destroyed configurations this thread last swept for.
    static SWEPT: Cell<u64> = const { Cell::new(0) };
}

/// Drops this thread's cores of configurations Envoy destroyed and that have no stream
/// left (a reconfiguration must not leave a core per thread behind). Envoy destroys a
/// configuration only after its last stream, so the next stream on each worker sweeps.
fn sweep() {
    let destroyed = plugin::destroyed();
    if SWEPT.with(Cell::get) == destroyed {
        return;
    }
    LOCALS.with(|locals| {
        if let Ok(mut locals) = locals.try_borrow_mut() {
            SWEPT.with(|s| s.set(destroyed));
            locals.retain(|_, l| {
                let keep =
                    !l.streams.is_empty() || l.shared.upgrade().is_some_and(|s| !s.is_gone());
                if !keep {
                    dropped();
                }
                keep
            });
        }
    });
}

fn dropped() {
    abi::log(
        LogLevel::Debug,
        "bearer-guard: a worker dropped its core of a destroyed configuration",
    );
}

/// This thread's number in the module's registries (paused requests, answers): assigned
/// by the module, never Envoy's worker index, so two threads never share one.
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The core's host: calls go to the main thread (see [`Shared::dispatch`]).
struct Relay<'a> {
    shared: &'a Shared,
    worker: usize,
}

impl Host for Relay<'_> {
    fn dispatch(&mut self, call: &Outgoing) -> Result<u32, DispatchError> {
        self.shared
            .dispatch(self.worker, call)
            .map_err(DispatchError)
    }

    fn clock_ms(&self) -> u64 {
        now_ms()
    }
}

/// This worker's core for the stream's configuration (made on first use), and `f` run on
/// it. `None` when the configuration no longer compiles (it did on the main thread).
fn with_local<T>(s: &Stream, f: impl FnOnce(&mut Local) -> T) -> Option<T> {
    LOCALS.with(|locals| {
        let mut locals = locals.borrow_mut();
        let local = match locals.entry(s.shared.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(new_local(&s.shared, s.handle)?)
            }
        };
        Some(f(local))
    })
}

fn new_local(shared: &Arc<Shared>, handle: FilterHandle) -> Option<Local> {
    let cfg = plugin::compile(&shared.name, &shared.json).ok()?;
    let (backend, _) = plugin::backend(&cfg);
    let now = now_ms();
    let mut entropy = [0u8; 16];
    let entropy = getrandom::fill(&mut entropy).ok().map(|()| entropy);
    let worker = u32::try_from(handle.worker_index()).unwrap_or(u32::MAX);
    let mut core = Worker::new(
        cfg,
        backend,
        Box::new(plugin::store()),
        (now, worker),
        entropy,
    );
    core.set_debug(abi::log_enabled(LogLevel::Debug));
    let effects = core.on_configure(now);
    let local = Local {
        core,
        shared: Arc::downgrade(shared),
        next_context: 1,
        streams: HashMap::new(),
        last_tick: now,
        tick_ms: worker::IDLE_TICK_MS,
    };
    // Configuration effects are log lines and gauges: applied through this stream.
    apply(shared, handle, effects, &[], None);
    Some(local)
}

/// A new stream: numbered on its worker.
pub(super) fn new_stream(p: &Plugin, handle: FilterHandle) -> Stream {
    sweep();
    let mut s = Stream {
        shared: Arc::clone(&p.shared),
        handle,
        context: 0,
        worker: thread_slot(),
    };
    s.context = with_local(&s, |local| {
        let context = local.next_context;
        local.next_context = local.next_context.wrapping_add(1).max(1);
        local.streams.insert(context, handle);
        context
    })
    .unwrap_or(0);
    s
}

/// Answers that came for this worker and a tick when one is due: what a worker does at
/// the start of every entry point (it has no timer of its own).
fn catch_up(s: &Stream, local: &mut Local, now: u64, force_tick: bool, out: &mut Vec<Effect>) {
    let mut host = Relay {
        shared: &s.shared,
        worker: s.worker,
    };
    for answer in s.shared.answers(s.worker) {
        let body = answer.body;
        let read = || body.clone();
        let response = CallResponse {
            status: answer.status,
            body_size: answer.body_size,
            body: &read,
        };
        out.extend(
            local
                .core
                .on_call_response(now, answer.token, &response, &mut host),
        );
    }
    let due = local.last_tick.saturating_add(u64::from(local.tick_ms));
    if force_tick || now >= due {
        local.last_tick = now;
        local.core.set_debug(abi::log_enabled(LogLevel::Debug));
        out.extend(local.core.on_tick(now, &mut host));
    }
}

/// Runs `entry` on this worker's core after catching up, and applies the effects; the
/// stream's own fate as a hook status.
fn run(s: &Stream, entry: impl FnOnce(&mut Local, &mut Relay, u64) -> Vec<Effect>) -> u32 {
    let now = now_ms();
    let done = with_local(s, |local| {
        let mut out = Vec::new();
        catch_up(s, local, now, false, &mut out);
        let mut host = Relay {
            shared: &s.shared,
            worker: s.worker,
        };
        out.extend(entry(local, &mut host, now));
        // Counts go to the process-wide counters the main thread passes to Envoy: they
        // need no tick of this worker.
        local.core.flush_metrics(&mut out);
        for e in &out {
            if let Effect::TickPeriod(ms) = e {
                local.tick_ms = *ms;
            }
        }
        let targets = targets(&out, &local.streams);
        (out, targets)
    });
    match done {
        Some((effects, targets)) => apply(&s.shared, s.handle, effects, &targets, Some(s)),
        None => fail_closed(s.handle),
    }
}

/// The request of a stream, from its headers.
fn request(s: &Stream, end_of_stream: bool) -> Request {
    let headers = s
        .handle
        .with_request_headers(|pairs| Headers::from_bytes(pairs));
    let get = |name: &str| headers.first(name).unwrap_or_default().to_string();
    let (needs_route, needs_certificate) = LOCALS.with(|l| {
        l.borrow().get(&s.shared.id).map_or((false, false), |l| {
            let c = l.core.config();
            (c.needs_route_name, c.needs_peer_certificate)
        })
    });
    let text = |b: Vec<u8>| String::from_utf8(b).ok().filter(|t| !t.is_empty());
    Request {
        method: get(":method"),
        path: get(":path"),
        authority: get(":authority"),
        route_name: needs_route
            .then(|| s.handle.attribute(abi::ATTRIBUTE_ROUTE_NAME).and_then(text))
            .flatten(),
        request_id: get("x-request-id"),
        peer_certificate_sha256: needs_certificate
            .then(|| {
                s.handle
                    .attribute(abi::ATTRIBUTE_PEER_CERTIFICATE_SHA256)
                    .and_then(text)
            })
            .flatten(),
        headers,
        body: if end_of_stream {
            Body::Read(Vec::new())
        } else {
            Body::Unread
        },
    }
}

/// A request's headers.
pub(super) fn request_headers(s: &Stream, end_of_stream: bool) -> u32 {
    // The core is made before the request is read: `request` asks its configuration.
    if with_local(s, |_| ()).is_none() {
        return fail_closed(s.handle);
    }
    let req = request(s, end_of_stream);
    run(s, |local, host, now| {
        local.core.on_request(now, s.context, req, host)
    })
}

/// More of a request's body (`end_of_stream`: all of it).
pub(super) fn request_body(s: &Stream, end_of_stream: bool) -> u32 {
    // Only a request the core still holds reads its body; others go on at once.
    if !s.shared.is_paused(s.worker, s.context) {
        return CONTINUE;
    }
    let body = s.handle.request_body(true);
    let size = body.len();
    run(s, |local, host, now| {
        let read = || body.clone();
        local
            .core
            .on_request_body(now, s.context, (size, end_of_stream), &read, host)
    })
}

/// A request's trailers: its body is complete.
pub(super) fn request_trailers(s: &Stream) -> u32 {
    if !s.shared.is_paused(s.worker, s.context) {
        return CONTINUE;
    }
    let body = s.handle.request_body(false);
    run(s, |local, host, now| {
        let read = |max: usize| body.iter().copied().take(max).collect::<Vec<u8>>();
        local.core.on_request_trailers(now, s.context, &read, host)
    })
}

/// Response headers: a filtered MCP list answer is held for its body (or refused); every
/// other response goes on untouched.
pub(super) fn response_headers(s: &Stream, end_of_stream: bool) -> u32 {
    let h = s.handle;
    let plan = respond(s, |core| {
        let text = |name: &[u8]| {
            h.response_header(name)
                .and_then(|v| String::from_utf8(v).ok())
        };
        let status = text(b":status").and_then(|v| v.parse().ok()).unwrap_or(0);
        let (content_type, encoding) = (text(b"content-type"), text(b"content-encoding"));
        let length = text(b"content-length").and_then(|v| v.trim().parse().ok());
        core.on_response_headers(
            s.context,
            (status, content_type.as_deref(), encoding.as_deref(), length),
        )
    });
    match plan {
        ResponsePlan::Pass | ResponsePlan::Replace(_) => CONTINUE,
        ResponsePlan::Hold => {
            // The filtered body has another length.
            h.remove_response_header("content-length");
            if end_of_stream {
                return response_body(s, true);
            }
            STOP
        }
        ResponsePlan::Reply(reply) => {
            send(h, &reply);
            STOP
        }
    }
}

/// More of a response body (`end_of_stream`: all of it).
pub(super) fn response_body(s: &Stream, end_of_stream: bool) -> u32 {
    response_data(s, end_of_stream, true)
}

/// A response's trailers: its body is complete.
pub(super) fn response_trailers(s: &Stream) -> u32 {
    response_data(s, true, false)
}

/// The response body so far (`received`: this hook brought data; false for the trailers,
/// when the body is all buffered).
fn response_data(s: &Stream, end: bool, received: bool) -> u32 {
    let h = s.handle;
    let plan = respond(s, |core| {
        let size = h.response_body_size(received);
        let read = || h.response_body(received);
        core.on_response_body(now_ms(), s.context, (size, end), &read)
    });
    match plan {
        ResponsePlan::Pass => CONTINUE,
        ResponsePlan::Hold => STOP,
        ResponsePlan::Replace(body) => {
            if h.replace_response_body(received, &body) {
                return CONTINUE;
            }
            // The unfiltered body must not go on.
            refuse_response(h)
        }
        ResponsePlan::Reply(reply) => {
            send(h, &reply);
            STOP
        }
    }
}

/// Runs a response entry point on this worker's core when it filters responses (`Pass`
/// otherwise: without a `filter_lists` rule, at the cost of one flag), and applies the
/// counts it made.
fn respond(s: &Stream, entry: impl FnOnce(&mut Worker) -> ResponsePlan) -> ResponsePlan {
    if !s.shared.filters_lists {
        return ResponsePlan::Pass;
    }
    let planned = with_local(s, |local| {
        if !local.core.filters_responses() {
            return None;
        }
        let plan = entry(&mut local.core);
        Some((plan, flushed(local)))
    })
    .flatten();
    let Some((plan, effects)) = planned else {
        return ResponsePlan::Pass;
    };
    apply(&s.shared, s.handle, effects, &[], None);
    plan
}

/// The counts a response hook made, as effects to apply.
fn flushed(local: &mut Local) -> Vec<Effect> {
    let mut out = Vec::new();
    local.core.flush_metrics(&mut out);
    out
}

/// A scheduled event on this stream's worker: answers, and a tick.
pub(super) fn scheduled(s: &Stream) {
    let now = now_ms();
    let done = with_local(s, |local| {
        let mut out = Vec::new();
        catch_up(s, local, now, true, &mut out);
        local.core.flush_metrics(&mut out);
        for e in &out {
            if let Effect::TickPeriod(ms) = e {
                local.tick_ms = *ms;
            }
        }
        let targets = targets(&out, &local.streams);
        (out, targets)
    });
    if let Some((effects, targets)) = done {
        apply(&s.shared, s.handle, effects, &targets, None);
    }
}

/// The stream is gone: the core forgets it, its scheduler is deleted.
pub(super) fn destroy(s: Stream) {
    let _ = with_local(&s, |local| {
        local.core.on_context_gone(s.context);
        local.streams.remove(&s.context);
    });
    if let Some(scheduler) = s.shared.unpause(s.worker, s.context) {
        scheduler.delete();
    }
}

/// Answers the stream 500 (the filter cannot decide): fail closed, never hang.
pub(super) fn fail_closed(handle: FilterHandle) -> u32 {
    let request_id = handle
        .request_headers()
        .into_iter()
        .find(|(k, _)| k == b"x-request-id")
        .map(|(_, v)| String::from_utf8_lossy(&v).to_string())
        .unwrap_or_default();
    send(handle, &Denial::Unavailable.reply(&request_id));
    STOP
}

/// Answers a response the filter could not handle 502 (never passed on unfiltered).
pub(super) fn refuse_response(handle: FilterHandle) -> u32 {
    send(handle, &crate::reply::Reply::list_unwritable());
    STOP
}

fn send(handle: FilterHandle, reply: &crate::reply::Reply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    handle.send_response(reply.status, &headers, reply.body.as_bytes());
}

/// The streams `effects` act on, by context.
fn targets(effects: &[Effect], streams: &HashMap<u32, FilterHandle>) -> Vec<(u32, FilterHandle)> {
    let mut found: Vec<(u32, FilterHandle)> = Vec::new();
    for context in effects.iter().filter_map(Effect::context) {
        if !found.iter().any(|(c, _)| *c == context) {
            if let Some(h) = streams.get(&context) {
                found.push((context, *h));
            }
        }
    }
    found
}

/// Applies `effects` in order: `current` is the stream whose hook runs (metrics go
/// through it); `own` the stream whose own request they may answer (its status is
/// returned); every other request is a paused one of this worker, acted on through its
/// filter.
fn apply(
    shared: &Shared,
    current: FilterHandle,
    effects: Vec<Effect>,
    streams: &[(u32, FilterHandle)],
    own: Option<&Stream>,
) -> u32 {
    let mut status = CONTINUE;
    let own_context = own.map(|s| s.context);
    let worker = own.map_or_else(thread_slot, |s| s.worker);
    // The hook's own request through its own handle; others through the ones its core knows.
    let handle_of = |context: u32| {
        if Some(context) == own_context {
            return Some(current);
        }
        streams.iter().find(|(c, _)| *c == context).map(|(_, h)| *h)
    };
    // Whether the core decided the hook's own request (went on, waits, or answered).
    let mut decided = false;
    let settle = |context: u32| {
        if let Some(scheduler) = shared.unpause(worker, context) {
            scheduler.delete();
        }
    };
    for effect in effects {
        match effect {
            Effect::Header {
                context,
                name,
                value,
            } => {
                if let Some(h) = handle_of(context) {
                    h.set_request_header(&name, value.as_deref());
                }
            }
            Effect::Property {
                context,
                name,
                value,
            } => {
                // The wasm module's filter state names: one access-log format for both.
                if let Some(h) = handle_of(context) {
                    h.set_filter_state(&format!("wasm.{name}"), &value);
                }
            }
            Effect::ClearRouteCache { context } => {
                if let Some(h) = handle_of(context) {
                    h.clear_route_cache();
                }
            }
            Effect::Continue { context } if Some(context) == own_context => {
                status = CONTINUE;
                decided = true;
                settle(context);
            }
            Effect::Continue { context } => {
                settle(context);
                if let Some(h) = handle_of(context) {
                    h.continue_decoding();
                }
            }
            Effect::Pause { context } if Some(context) == own_context => {
                status = STOP;
                decided = true;
                if !shared.is_paused(worker, context) {
                    match handle_of(context).and_then(FilterHandle::scheduler) {
                        Some(scheduler) => shared.pause(worker, context, scheduler),
                        // Nothing could wake it: answered now rather than left hanging.
                        None => {
                            abi::log(
                                LogLevel::Error,
                                "bearer-guard: Envoy gave no scheduler for a waiting request: answered 500",
                            );
                            status = fail_closed(current);
                        }
                    }
                }
            }
            Effect::Pause { .. } => {}
            Effect::Reply { context, reply } => {
                settle(context);
                if let Some(h) = handle_of(context) {
                    send(h, &reply);
                }
                if Some(context) == own_context {
                    status = STOP;
                    decided = true;
                }
            }
            Effect::Log(level, line) => abi::log(level_of(level), &line),
            Effect::Count(index, n) => shared.count(index, n),
            Effect::Gauge(index, v) => metric(shared, current, index, MetricChange::Set(v)),
            Effect::TickPeriod(_) => {}
        }
    }
    // A request the core still holds never goes on without its word.
    if !decided && own.is_some_and(|s| shared.is_paused(worker, s.context)) {
        return STOP;
    }
    status
}

fn metric(shared: &Shared, current: FilterHandle, index: usize, change: MetricChange) {
    if let Some(Some(m)) = shared.metrics.get(index) {
        let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
        current.metric((m.id, m.gauge), &labels, change);
    }
}

fn level_of(level: worker::Level) -> LogLevel {
    match level {
        worker::Level::Debug => LogLevel::Debug,
        worker::Level::Info => LogLevel::Info,
        worker::Level::Warn => LogLevel::Warn,
        worker::Level::Error => LogLevel::Error,
    }
}
