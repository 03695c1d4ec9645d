//! State shared by the root and HTTP contexts of one VM (one thread, so `Rc<RefCell>`).

use super::backend::Backend;
use super::{log, now_ms};
use crate::config::{Config, JwksSource};
use crate::jwks::{FetchPolicy, KeyAvailability, KeyFetcher, KeySet};
use crate::pipeline::{decide, Decision, Inputs, KeyLookup, Outcome};
use crate::request::Request;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// Shared state handle.
pub(crate) type SharedRef = Rc<RefCell<Shared>>;

/// The calling context's `dispatch_http_call(cluster, headers, timeout)`: the SDK routes
/// a call's response to the context that dispatched it.
pub(crate) type Dispatch<'a> =
    &'a dyn Fn(&str, Vec<(&str, &str)>, Duration) -> Result<u32, proxy_wasm::types::Status>;

/// A request paused until a provider's keys arrive.
pub(crate) struct Waiter {
    pub context_id: u32,
    pub provider: usize,
    pub deadline_ms: u64,
    pub request: Request,
}

/// Everything the contexts share.
pub(crate) struct Shared {
    pub config: Config,
    pub backend: Backend,
    pub fetchers: Vec<Option<KeyFetcher>>,
    pub calls: HashMap<u32, usize>,
    pub waiters: Vec<Waiter>,
}

struct Keys<'a> {
    shared: &'a Shared,
    now_ms: u64,
    may_wait: bool,
}

impl KeyLookup for Keys<'_> {
    fn availability(&self, provider: usize) -> KeyAvailability {
        let a = self
            .fetcher(provider)
            .map_or(KeyAvailability::Unavailable, |f| {
                f.availability(self.now_ms)
            });
        match a {
            KeyAvailability::Loading if !self.may_wait => KeyAvailability::Unavailable,
            other => other,
        }
    }
    fn keys(&self, provider: usize) -> Option<&KeySet> {
        self.fetcher(provider).and_then(KeyFetcher::keys)
    }
    fn may_refetch(&self, provider: usize) -> bool {
        self.may_wait
            && self
                .fetcher(provider)
                .is_some_and(|f| f.may_refetch(self.now_ms))
    }
}

impl Keys<'_> {
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
        Shared {
            config,
            backend,
            fetchers,
            calls: HashMap::new(),
            waiters: Vec::new(),
        }
    }

    fn decide(&self, req: &Request, now_ms: u64, may_wait: bool) -> Outcome {
        let keys = Keys {
            shared: self,
            now_ms,
            may_wait,
        };
        let inputs = Inputs {
            config: &self.config,
            keys: &keys,
            backend: self.backend.get(),
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
    let name = s
        .config
        .providers
        .get(provider)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let Some(Some(fetcher)) = s.fetchers.get_mut(provider) else {
        return false;
    };
    match result {
        Ok(token) => {
            fetcher.begin(now);
            s.calls.insert(token, provider);
            true
        }
        Err(status) => {
            fetcher.fail(now);
            log(LogLevel::Warn, &format!("bearer-guard: provider {name}: JWKS fetch from cluster {} not dispatched: {status:?}", src.cluster));
            false
        }
    }
}

/// Handles the response to one of our dispatched calls (from whichever context got it).
pub(crate) fn on_call_response(shared: &SharedRef, token: u32, body_size: usize, current: u32) {
    let now = now_ms();
    let Some(provider) = shared.borrow_mut().calls.remove(&token) else {
        return;
    };
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten();
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    {
        let mut s = shared.borrow_mut();
        let name = s
            .config
            .providers
            .get(provider)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let Some(Some(fetcher)) = s.fetchers.get_mut(provider) else {
            return;
        };
        let parsed = match status.as_deref() {
            Some("200") => KeySet::parse(&body).map_err(|e| format!("{e:?}")),
            Some(other) => Err(format!("status {other}")),
            None => Err("no response (connection failure or timeout)".to_string()),
        };
        match parsed {
            Ok((keys, skipped)) => {
                let kids = keys.kids().join(",");
                fetcher.succeed(now, keys);
                log(LogLevel::Info, &format!("bearer-guard: provider {name}: loaded keys [{kids}] ({skipped} JWKS entries skipped)"));
            }
            Err(why) => {
                fetcher.fail(now);
                let kept = if fetcher.keys().is_some() {
                    "keeping previous keys"
                } else {
                    "no keys yet"
                };
                log(
                    LogLevel::Warn,
                    &format!("bearer-guard: provider {name}: JWKS fetch failed: {why}; {kept}"),
                );
            }
        }
    }
    wake(shared, |w| w.provider == provider, now, current);
}

/// Resumes (or answers) every waiter selected by `pick`, deciding again without waiting,
/// then makes `current` the effective context again.
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
        if hostcalls::set_effective_context(w.context_id).is_err() {
            continue; // the stream is gone
        }
        let outcome = shared.borrow().decide(&w.request, now, false);
        if apply(shared, &w.request, outcome) == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
    let _ = hostcalls::set_effective_context(current);
}

/// Runs the pipeline for a fresh request in the current context.
pub(crate) fn handle(
    shared: &SharedRef,
    context_id: u32,
    request: Request,
    dispatch: Dispatch,
) -> Action {
    let now = now_ms();
    let outcome = shared.borrow().decide(&request, now, true);
    let Decision::AwaitKeys { provider, refetch } = outcome.decision else {
        return apply(shared, &request, outcome);
    };
    let must_dispatch = {
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
    if must_dispatch && !start_fetch(shared, provider, now, dispatch) {
        let outcome = shared.borrow().decide(&request, now, false);
        return apply(shared, &request, outcome);
    }
    let deadline_ms = now
        + shared
            .borrow()
            .source(provider)
            .map_or(2000, |s| s.timeout_ms)
        + 1000;
    shared.borrow_mut().waiters.push(Waiter {
        context_id,
        provider,
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
            for (name, value) in &headers {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            }
            if strip_authorization {
                let _ =
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, "authorization", None);
            }
            Action::Continue
        }
        Decision::Deny(denial) => {
            log(
                LogLevel::Debug,
                &format!(
                    "bearer-guard: denied {} rule={} route={} request_id={} why={}",
                    denial.reason(),
                    outcome.rule,
                    request.route_name.as_deref().unwrap_or("-"),
                    request.request_id,
                    outcome.note
                ),
            );
            let reply = denial.reply(&request.request_id);
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            let _ =
                hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
            Action::Pause
        }
        // Not reachable from `handle`/`wake` (they decide without waiting); fail closed.
        Decision::AwaitKeys { .. } => {
            let reply = crate::reply::Denial::Unavailable.reply(&request.request_id);
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            let _ =
                hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
            Action::Pause
        }
    }
}

/// Periodic work: expire stuck fetches and waiters, start due fetches.
pub(crate) fn tick(shared: &SharedRef, current: u32, dispatch: Dispatch) {
    let now = now_ms();
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
                LogLevel::Warn,
                &format!("bearer-guard: JWKS fetch for provider #{provider} timed out"),
            );
            wake(shared, |w| w.provider == provider, now, current);
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
    wake(shared, |w| w.deadline_ms <= now, now, current);
}
