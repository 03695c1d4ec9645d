//! One filter configuration of the native host, shared by every worker thread: the
//! configuration's JSON (each worker compiles its own core from it), the metrics defined
//! for it, and the relay between the workers and the main thread — the calls workers ask
//! for (made on the main thread, so that no call dies with the request that happened to
//! ask for it), their answers (handed back to the worker that asked), and the schedulers
//! of paused requests, through which the ticker and the answers wake a worker.
//!
//! The main thread also runs a core of its own for the configuration, the driver: it
//! receives no request, but it ticks every 200 ms (the ticker wakes it through the
//! configuration's scheduler), so that keys and lists are fetched at start and refreshed
//! for the whole process as the wasm module's workers do, whether or not requests
//! arrive; the workers adopt what it publishes in the process store.

use super::abi::{self, ConfigHandle, ConfigScheduler, LogLevel, MetricChange, Scheduler};
use crate::config::Config;
use crate::shared::ProcessStore;
use crate::verify::{NativeBackend, RustBackend, SignatureBackend};
use crate::worker::metrics::Metrics;
use crate::worker::{
    CallResponse, DispatchError, Effect, Host, Level, MetricKind, Outgoing, Worker,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

/// The process's store: one per Envoy process, as proxy-wasm shared data is.
pub(super) fn store() -> Arc<ProcessStore> {
    static STORE: OnceLock<Arc<ProcessStore>> = OnceLock::new();
    Arc::clone(STORE.get_or_init(|| Arc::new(ProcessStore::default())))
}

/// The module's one HTTP filter, as `filter_name` names it.
pub(super) const FILTER_NAME: &str = "bearer-guard";
/// The configuration label of the metrics unless `stat_prefix` gives another: the name
/// the wasm plugin has in `envoy/`, so that both hosts' metrics read alike.
const METRICS_NAME: &str = "bearer_guard";

/// Scheduler events on a worker's stream.
pub(super) const EVENT_TICK: u64 = 1;
/// Answers wait for the worker.
pub(super) const EVENT_ANSWERS: u64 = 2;

/// How often the ticker wakes workers with paused requests (the core's waiting tick).
const TICK: Duration = Duration::from_millis(crate::worker::WAITING_TICK_MS as u64);
/// Every how many ticks the driver ticks (the core's idle tick).
const DRIVER_EVERY: u32 = crate::worker::IDLE_TICK_MS / crate::worker::WAITING_TICK_MS;
/// Configuration scheduler events: calls to make, and the driver's tick.
const EVENT_CALLS: u64 = 0;
const EVENT_DRIVER_TICK: u64 = 1;

/// Who a call on the main thread is for.
#[derive(Debug, Clone, Copy)]
enum Caller {
    /// A worker's core.
    Worker(usize),
    /// The main thread's driver.
    Driver,
}

thread_local! {
    /// The drivers of the configurations, on the main thread.
    static DRIVERS: RefCell<HashMap<u64, Worker>> = RefCell::new(HashMap::new());
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How a core metric is recorded natively: its id, whether a gauge, its label values.
#[derive(Debug, Clone)]
pub(super) struct NativeMetric {
    pub(super) id: usize,
    pub(super) gauge: bool,
    pub(super) labels: Vec<String>,
}

/// A call a worker asked for, for the main thread to make.
struct Pending {
    worker: usize,
    token: u32,
    cluster: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_response_bytes: usize,
    timeout_ms: u64,
}

/// A call's answer for a worker (`status` `None`: no answer).
pub(super) struct Answer {
    pub(super) token: u32,
    pub(super) status: Option<String>,
    /// The body's size as Envoy received it.
    pub(super) body_size: usize,
    /// The body; empty when over the call's limit (never copied).
    pub(super) body: Vec<u8>,
}

/// What one worker shares with the others: answers waiting for it, and the schedulers
/// of its paused requests.
#[derive(Default)]
struct WorkerSlot {
    answers: Vec<Answer>,
    /// Paused requests and their schedulers.
    paused: BTreeMap<u32, Scheduler>,
}

/// What every thread shares of a configuration.
pub(super) struct Shared {
    /// Unique in the process: the key of each worker's core.
    pub(super) id: u64,
    /// The metrics' configuration label unless `stat_prefix` says.
    pub(super) name: String,
    /// The configuration JSON.
    pub(super) json: Vec<u8>,
    /// Per core metric index.
    pub(super) metrics: Vec<Option<NativeMetric>>,
    /// Counts the workers added since the main thread last passed them to Envoy, per core
    /// metric: a labeled metric update costs Envoy a name lookup (measured: more than the
    /// rest of a cached-token decision), so workers only add to these and the main thread
    /// updates Envoy's metrics at each of its events (every 200 ms at least).
    counts: Vec<AtomicI64>,
    /// The configuration's main-thread scheduler (taken out when it is destroyed).
    main: Mutex<Option<Arc<ConfigScheduler>>>,
    outbox: Mutex<Vec<Pending>>,
    /// Calls made: who asked, their token, the largest answer body they read.
    callouts: Mutex<HashMap<u64, (Caller, u32, usize)>>,
    workers: Mutex<HashMap<usize, WorkerSlot>>,
    next_token: AtomicU32,
    /// Envoy destroyed the configuration: workers drop their cores of it once its last
    /// stream ends.
    gone: AtomicBool,
    /// Some rule filters MCP lists: without one, response hooks return at once.
    pub(super) filters_lists: bool,
}

/// A configuration as Envoy holds it.
pub(super) struct Plugin {
    pub(super) shared: Arc<Shared>,
    envoy: ConfigHandle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The configurations the ticker serves.
fn live() -> &'static Mutex<Vec<Weak<Shared>>> {
    static LIVE: OnceLock<Mutex<Vec<Weak<Shared>>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Compiles the configuration the way every worker will (secrets from Envoy's
/// environment; the head of a GraphQL request always held: Envoy passes the body to a
/// native filter that holds it).
pub(super) fn compile(name: &str, json: &[u8]) -> Result<Config, crate::error::ConfigError> {
    let mut cfg = crate::config::parse(json, &|var| std::env::var(var).ok())?;
    cfg.graphql.hold_head = true;
    cfg.mcp.hold_head = true;
    cfg.name_metrics_after(name);
    Ok(cfg)
}

/// The public-key backend of a configuration, and its name for the log: aws-lc natively
/// (`auto`, and `envoy`: never the pure-Rust fallback), pure Rust when `verifier` says
/// `rust`.
pub(super) fn backend(cfg: &Config) -> (Box<dyn SignatureBackend>, &'static str) {
    match cfg.verifier {
        crate::config::VerifierChoice::Rust => (Box::new(RustBackend), "rust"),
        _ => (Box::new(NativeBackend::default()), "aws-lc"),
    }
}

/// A new configuration (main thread): compiled once here to refuse a bad one, its
/// metrics defined. `None` refuses it, with the reason logged.
pub(super) fn new(envoy: ConfigHandle, filter_name: &[u8], json: &[u8]) -> Option<Plugin> {
    if filter_name != FILTER_NAME.as_bytes() {
        abi::log(
            LogLevel::Error,
            &format!(
                "bearer-guard: filter_name: \"{}\" is not a filter of this module (it has \"{FILTER_NAME}\")",
                String::from_utf8_lossy(filter_name)
            ),
        );
        return None;
    }
    let name = METRICS_NAME.to_string();
    let cfg = match compile(&name, json) {
        Ok(cfg) => cfg,
        Err(e) => {
            abi::log(LogLevel::Error, &format!("bearer-guard: {e}"));
            return None;
        }
    };
    // Without the main thread's scheduler no call is made and nothing is refreshed;
    // without the ticker, waiting requests depend on new traffic: refused, not degraded.
    let Some(main) = envoy.scheduler() else {
        abi::log(
            LogLevel::Error,
            "bearer-guard: Envoy gave the configuration no scheduler: refused",
        );
        return None;
    };
    if let Err(e) = start_ticker() {
        abi::log(
            LogLevel::Error,
            &format!("bearer-guard: the module's ticker thread did not start ({e}): refused"),
        );
        return None;
    }
    let metrics = define_metrics(envoy, &cfg);
    static IDS: AtomicU64 = AtomicU64::new(1);
    let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
    abi::log(
        LogLevel::Info,
        &format!(
            "bearer-guard: configured {} provider(s) [{}], {} rule(s), RSA backend {}, native module, metrics bearer_guard{{bearer_guard_config=\"{}\"}}",
            providers.len(),
            providers.join(","),
            cfg.rules.len(),
            backend(&cfg).1,
            cfg.stat_prefix()
        ),
    );
    let shared = Arc::new(Shared {
        id: IDS.fetch_add(1, Ordering::Relaxed),
        name,
        json: json.to_vec(),
        counts: metrics.iter().map(|_| AtomicI64::new(0)).collect(),
        metrics,
        main: Mutex::new(Some(Arc::new(main))),
        outbox: Mutex::new(Vec::new()),
        callouts: Mutex::new(HashMap::new()),
        workers: Mutex::new(HashMap::new()),
        next_token: AtomicU32::new(1),
        gone: AtomicBool::new(false),
        filters_lists: cfg.filters_lists(),
    });
    lock(live()).push(Arc::downgrade(&shared));
    let plugin = Plugin { shared, envoy };
    reap_drivers();
    start_driver(&plugin, cfg);
    Some(plugin)
}

/// Makes the configuration's driver on the main thread and has it tick at once (its first
/// tick starts the first fetches).
fn start_driver(p: &Plugin, cfg: Config) {
    let now = now_ms();
    let mut entropy = [0u8; 16];
    let entropy = getrandom::fill(&mut entropy).ok().map(|()| entropy);
    let (verifier, _) = backend(&cfg);
    let mut driver = Worker::new(cfg, verifier, Box::new(store()), (now, u32::MAX), entropy);
    driver.set_debug(abi::log_enabled(LogLevel::Debug));
    let effects = driver.on_configure(now);
    apply_main(p, effects);
    DRIVERS.with(|d| d.borrow_mut().insert(p.shared.id, driver));
    if let Some(s) = p.shared.main_scheduler() {
        s.commit(EVENT_DRIVER_TICK);
    }
}

/// Runs `f` on the configuration's driver and applies its effects. Never re-entered: a
/// callback that Envoy made from inside the driver's own call is dropped (the core gives
/// up on an answer that never comes).
fn with_driver(p: &Plugin, f: impl FnOnce(&mut Worker) -> Vec<Effect>) {
    let effects = DRIVERS.with(|d| {
        let mut drivers = d.try_borrow_mut().ok()?;
        drivers.get_mut(&p.shared.id).map(|driver| {
            let mut out = f(driver);
            driver.flush_metrics(&mut out);
            out
        })
    });
    if let Some(effects) = effects {
        apply_main(p, effects);
    }
}

/// The driver's effects (main thread): log lines and metrics; it has no request.
fn apply_main(p: &Plugin, effects: Vec<Effect>) {
    for effect in effects {
        let (index, change) = match effect {
            Effect::Log(level, line) => {
                let level = match level {
                    Level::Debug => LogLevel::Debug,
                    Level::Info => LogLevel::Info,
                    Level::Warn => LogLevel::Warn,
                    Level::Error => LogLevel::Error,
                };
                abi::log(level, &line);
                continue;
            }
            Effect::Count(index, n) => (index, MetricChange::Add(n)),
            Effect::Gauge(index, v) => (index, MetricChange::Set(v)),
            _ => continue,
        };
        if let Some(Some(m)) = p.shared.metrics.get(index) {
            let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
            p.envoy.metric((m.id, m.gauge), &labels, change);
        }
    }
}

/// Passes the counts workers added to Envoy's metrics (main thread).
fn pass_counts(p: &Plugin) {
    for (index, count) in p.shared.counts.iter().enumerate() {
        let n = count.swap(0, Ordering::Relaxed);
        if n != 0 {
            if let Some(Some(m)) = p.shared.metrics.get(index) {
                let labels: Vec<&str> = m.labels.iter().map(String::as_str).collect();
                p.envoy
                    .metric((m.id, m.gauge), &labels, MetricChange::Add(n));
            }
        }
    }
}

/// The driver's host: its calls are made at once, on the main thread.
struct MainHost<'a>(&'a Plugin);

impl Host for MainHost<'_> {
    fn dispatch(&mut self, call: &Outgoing) -> Result<u32, DispatchError> {
        let p = self.0;
        let token = p.shared.next_token.fetch_add(1, Ordering::Relaxed).max(1);
        let headers = callout_headers(call);
        match p
            .envoy
            .callout(call.cluster, (&headers, call.body), call.timeout_ms)
        {
            Ok(id) => {
                let limit = call.max_response_bytes;
                lock(&p.shared.callouts).insert(id, (Caller::Driver, token, limit));
                Ok(token)
            }
            Err(code) => Err(DispatchError(format!("callout result {code}"))),
        }
    }

    fn clock_ms(&self) -> u64 {
        now_ms()
    }
}

/// A call's headers as Envoy's callouts take them (`host`, not `:authority`).
fn callout_headers(call: &Outgoing) -> Vec<(String, String)> {
    call.headers
        .iter()
        .map(|(k, v)| {
            let k = if *k == ":authority" { "host" } else { k };
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Main-thread work of a configuration: the calls workers asked for, and the driver's
/// tick.
pub(super) fn main_thread(p: &Plugin, event: u64) {
    reap_drivers();
    make_calls(p);
    pass_counts(p);
    if event == EVENT_DRIVER_TICK {
        let now = now_ms();
        with_driver(p, |driver| {
            driver.set_debug(abi::log_enabled(LogLevel::Debug));
            driver.on_tick(now, &mut MainHost(p))
        });
    }
}

/// How many configurations Envoy destroyed so far: a worker that sees it change drops its
/// cores of dead configurations.
static DESTROYED: AtomicU64 = AtomicU64::new(0);

/// See [`DESTROYED`].
pub(super) fn destroyed() -> u64 {
    DESTROYED.load(Ordering::Acquire)
}

/// Drivers of destroyed configurations, for the main thread to drop (Envoy normally
/// destroys a configuration on the main thread, but may do it on a thread that commits to
/// its scheduler).
fn dead_drivers() -> &'static Mutex<Vec<u64>> {
    static DEAD: OnceLock<Mutex<Vec<u64>>> = OnceLock::new();
    DEAD.get_or_init(|| Mutex::new(Vec::new()))
}

/// Drops the drivers of destroyed configurations (main thread only: the drivers live in
/// its thread-local map).
fn reap_drivers() {
    let dead = std::mem::take(&mut *lock(dead_drivers()));
    if !dead.is_empty() {
        DRIVERS.with(|d| {
            if let Ok(mut drivers) = d.try_borrow_mut() {
                for id in dead {
                    drivers.remove(&id);
                }
            }
        });
    }
}

/// A configuration is gone: its scheduler dropped (deleted by its last holder), no more
/// ticks, its driver dropped on the main thread, and every worker told to drop its core
/// of it. Takes no lock another thread may hold while calling into Envoy.
pub(super) fn destroy(p: Plugin) {
    p.shared.gone.store(true, Ordering::Release);
    DESTROYED.fetch_add(1, Ordering::AcqRel);
    abi::log(
        LogLevel::Debug,
        "bearer-guard: a configuration was destroyed; workers drop their cores of it",
    );
    let scheduler = lock(&p.shared.main).take();
    drop(scheduler);
    // On the main thread its driver is here; elsewhere the main thread drops it later.
    let dropped = DRIVERS.with(|d| {
        d.try_borrow_mut()
            .is_ok_and(|mut drivers| drivers.remove(&p.shared.id).is_some())
    });
    if !dropped {
        lock(dead_drivers()).push(p.shared.id);
    }
    lock(live()).retain(|w| w.upgrade().is_some_and(|s| !Arc::ptr_eq(&s, &p.shared)));
}

/// Splits a core metric name (`bearer_guard.<config>.[provider.<p>.]<metric>[.<reason>]`)
/// into the native metric's name and its labels: the same names and labels Prometheus
/// shows for the wasm module with the stats tags of `envoy/`.
fn native_name(full: &str) -> Option<(String, Vec<(&'static str, String)>)> {
    let rest = full.strip_prefix("bearer_guard.")?;
    let (config, rest) = rest.split_once('.')?;
    let mut labels = vec![("bearer_guard_config", config.to_string())];
    let (prefix, metric) = match rest.strip_prefix("provider.") {
        Some(p) => {
            let (provider, metric) = p.split_once('.')?;
            labels.push(("provider", provider.to_string()));
            ("bearer_guard.provider.", metric)
        }
        None => ("bearer_guard.", rest),
    };
    let metric = match metric.split_once('.') {
        Some((family @ ("denied" | "would_deny"), reason)) => {
            labels.push(("reason", reason.to_string()));
            family
        }
        Some((family @ ("mcp_messages_allowed" | "mcp_messages_denied"), method)) => {
            labels.push(("mcp_method", method.to_string()));
            family
        }
        _ => metric,
    };
    Some((format!("{prefix}{metric}"), labels))
}

/// Defines every metric of the core's table natively, with labels (in `config_new`).
fn define_metrics(envoy: ConfigHandle, cfg: &Config) -> Vec<Option<NativeMetric>> {
    let mut defined: HashMap<(String, Vec<&'static str>), Option<usize>> = HashMap::new();
    Metrics::new(cfg)
        .definitions()
        .iter()
        .map(|(full, kind)| {
            let (name, labels) = native_name(full)?;
            let gauge = *kind == MetricKind::Gauge;
            let label_names: Vec<&'static str> = labels.iter().map(|(n, _)| *n).collect();
            let id = *defined
                .entry((name.clone(), label_names.clone()))
                .or_insert_with(|| envoy.define(&name, &label_names, gauge));
            let metric = NativeMetric {
                id: id?,
                gauge,
                labels: labels.into_iter().map(|(_, v)| v).collect(),
            };
            let values: Vec<&str> = metric.labels.iter().map(String::as_str).collect();
            envoy.metric((metric.id, gauge), &values, MetricChange::Add(0));
            Some(metric)
        })
        .collect()
}

impl Shared {
    /// The main-thread scheduler, to commit to with no lock held (see
    /// [`ConfigScheduler::commit`]).
    fn main_scheduler(&self) -> Option<Arc<ConfigScheduler>> {
        lock(&self.main).clone()
    }

    /// A worker's count for a metric, passed to Envoy by the main thread.
    pub(super) fn count(&self, index: usize, n: i64) {
        if let Some(c) = self.counts.get(index) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Whether Envoy destroyed the configuration.
    pub(super) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// A worker asks for a call: queued for the main thread, which is woken. The token the
    /// worker's core will see its answer under.
    pub(super) fn dispatch(&self, worker: usize, call: &Outgoing) -> Result<u32, String> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed).max(1);
        lock(&self.outbox).push(Pending {
            worker,
            token,
            cluster: call.cluster.to_string(),
            headers: callout_headers(call),
            body: call.body.to_vec(),
            max_response_bytes: call.max_response_bytes,
            timeout_ms: call.timeout_ms,
        });
        match self.main_scheduler() {
            Some(s) => {
                s.commit(EVENT_CALLS);
                Ok(token)
            }
            None => Err("the configuration is gone".into()),
        }
    }

    /// The answers waiting for `worker`.
    pub(super) fn answers(&self, worker: usize) -> Vec<Answer> {
        lock(&self.workers)
            .get_mut(&worker)
            .map(|w| std::mem::take(&mut w.answers))
            .unwrap_or_default()
    }

    /// A paused request of `worker` (its scheduler wakes the worker).
    pub(super) fn pause(&self, worker: usize, context: u32, scheduler: Scheduler) {
        let mut workers = lock(&self.workers);
        let slot = workers.entry(worker).or_default();
        if let Some(old) = slot.paused.insert(context, scheduler) {
            old.delete();
        }
    }

    /// A request goes on or is gone: its scheduler, to delete on its thread.
    pub(super) fn unpause(&self, worker: usize, context: u32) -> Option<Scheduler> {
        lock(&self.workers)
            .get_mut(&worker)
            .and_then(|w| w.paused.remove(&context))
    }

    /// Whether `context` of `worker` is registered as paused.
    pub(super) fn is_paused(&self, worker: usize, context: u32) -> bool {
        lock(&self.workers)
            .get(&worker)
            .is_some_and(|w| w.paused.contains_key(&context))
    }

    /// Hands an answer to its worker and wakes it through a paused request, if any (else
    /// the worker takes it at its next request).
    fn deliver(&self, worker: usize, answer: Answer) {
        let mut workers = lock(&self.workers);
        let slot = workers.entry(worker).or_default();
        slot.answers.push(answer);
        if let Some(s) = slot.paused.values().next() {
            s.commit(EVENT_ANSWERS);
        }
    }

    /// Wakes every worker with paused requests (the ticker), and the driver when
    /// `driver`.
    fn tick(&self, driver: bool) {
        for slot in lock(&self.workers).values() {
            if let Some(s) = slot.paused.values().next() {
                s.commit(EVENT_TICK);
            }
        }
        if driver {
            if let Some(s) = self.main_scheduler() {
                s.commit(EVENT_DRIVER_TICK);
            }
        }
    }
}

/// Makes the calls workers asked for (main thread).
pub(super) fn make_calls(p: &Plugin) {
    let pending = std::mem::take(&mut *lock(&p.shared.outbox));
    for call in pending {
        match p
            .envoy
            .callout(&call.cluster, (&call.headers, &call.body), call.timeout_ms)
        {
            Ok(id) => {
                let caller = (
                    Caller::Worker(call.worker),
                    call.token,
                    call.max_response_bytes,
                );
                lock(&p.shared.callouts).insert(id, caller);
            }
            Err(code) => {
                abi::log(
                    LogLevel::Warn,
                    &format!(
                        "bearer-guard: call to cluster {} not made (callout result {code})",
                        call.cluster
                    ),
                );
                let answer = Answer {
                    token: call.token,
                    status: None,
                    body_size: 0,
                    body: Vec::new(),
                };
                p.shared.deliver(call.worker, answer);
            }
        }
    }
}

/// A call's answer as the main thread got it: its headers, its body's size, and how to
/// copy the body (valid during the callback only).
pub(super) type Answered<'a> = (Vec<(Vec<u8>, Vec<u8>)>, usize, &'a dyn Fn() -> Vec<u8>);

/// A call's answer (main thread): `None` when it failed or timed out. Its body is copied
/// only when within the call's limit (`Outgoing::max_response_bytes`).
pub(super) fn call_done(p: &Plugin, callout: u64, answered: Option<Answered>) {
    let Some((caller, token, limit)) = lock(&p.shared.callouts).remove(&callout) else {
        return;
    };
    let (status, body_size, body) = match answered {
        Some((headers, size, read)) => {
            let status = headers
                .iter()
                .find(|(k, _)| k == b":status")
                .map(|(_, v)| String::from_utf8_lossy(v).to_string());
            let body = if size <= limit { read() } else { Vec::new() };
            (status, size, body)
        }
        None => (None, 0, Vec::new()),
    };
    match caller {
        Caller::Worker(worker) => p.shared.deliver(
            worker,
            Answer {
                token,
                status,
                body_size,
                body,
            },
        ),
        Caller::Driver => {
            let response = CallResponse {
                status,
                body_size,
                body: &|| body.clone(),
            };
            let now = now_ms();
            with_driver(p, |driver| {
                driver.on_call_response(now, token, &response, &mut MainHost(p))
            });
        }
    }
}

/// Starts the ticker once per process: every [`TICK`] it wakes the workers that have
/// paused requests, so that they see what another worker fetched and give up on what
/// waited too long even when no new request arrives.
fn start_ticker() -> Result<(), String> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = lock(&STARTED);
    if *started {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("bearer-guard-ticker".into())
        .spawn(|| {
            let mut n: u32 = 0;
            loop {
                std::thread::sleep(TICK);
                n = n.wrapping_add(1);
                let plugins: Vec<Arc<Shared>> =
                    lock(live()).iter().filter_map(Weak::upgrade).collect();
                for p in plugins {
                    p.tick(n.is_multiple_of(DRIVER_EVERY.max(1)));
                }
            }
        })
        .map_err(|e| e.to_string())?;
    *started = true;
    Ok(())
}
