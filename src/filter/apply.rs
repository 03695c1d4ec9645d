//! Applies the core's effects in order, and gives the core what it asks of the host.

use super::host::{self, Level};
use crate::reply::Reply;
use crate::worker::{self, Effect, Outgoing, Worker};
use proxy_wasm::traits::Context;
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// One VM's core and the host's ids of its metrics, shared by its contexts (one thread).
pub(crate) struct State {
    pub worker: Worker,
    pub metric_ids: Vec<Option<u32>>,
}

/// The state handle every context of the VM holds.
pub(crate) type StateRef = Rc<RefCell<State>>;

/// The calling context as the core's [`worker::Host`]: the SDK routes a call's response to
/// the context that dispatched it.
pub(crate) struct Caller<'a, C: Context>(pub &'a C);

impl<C: Context> worker::Host for Caller<'_, C> {
    fn dispatch(&mut self, call: &Outgoing) -> Result<u32, worker::DispatchError> {
        let timeout = Duration::from_millis(call.timeout_ms);
        let body = (!call.body.is_empty()).then_some(call.body);
        self.0
            .dispatch_http_call(call.cluster, call.headers.clone(), body, vec![], timeout)
            .map_err(|status| worker::DispatchError(format!("{status:?}")))
    }

    fn clock_ms(&self) -> u64 {
        host::now_ms()
    }
}

/// Applies `effects` (one host call each, as [`Effect::host_calls`] counts them for
/// `make bench`). `own` is the context whose fresh request they answer: its
/// `Continue`/`Pause`/reply become the returned action; every other context's request is
/// a paused one, resumed (or answered) in place, with the effective context switched to it
/// and back to `current`.
pub(crate) fn apply(
    state: &StateRef,
    effects: Vec<Effect>,
    current: u32,
    own: Option<u32>,
) -> Action {
    let mut action = Action::Continue;
    let mut effective = current;
    for effect in effects {
        let target = effect.context();
        if let Some(to) = target.filter(|to| *to != effective) {
            if host::set_effective_context(to).is_err() {
                continue; // the stream is gone
            }
            effective = to;
        }
        let ours = target.is_some() && target == own;
        match effect {
            Effect::Header { name, value, .. } => {
                let _ = host::set_request_header(&name, value.as_deref());
            }
            Effect::Property { name, value, .. } => {
                let _ = host::set_property(name, &value);
            }
            Effect::ClearRouteCache { .. } => {
                if let Err(e) = host::call_foreign_function("clear_route_cache", &[]) {
                    host::log(
                        Level::Warn,
                        &format!("bearer-guard: clear_route_cache failed: {e:?}"),
                    );
                }
            }
            Effect::Continue { .. } if ours => action = Action::Continue,
            Effect::Continue { .. } => {
                let _ = host::resume_request();
            }
            Effect::Pause { .. } if ours => action = Action::Pause,
            Effect::Pause { .. } => {}
            Effect::Reply { reply, .. } => {
                send_reply(&reply);
                if ours {
                    action = Action::Pause;
                }
            }
            Effect::Log(level, line) => host::log(level_of(level), &line),
            Effect::Count(index, n) => {
                if let Some(Some(id)) = state.borrow().metric_ids.get(index) {
                    let _ = host::increment_metric(*id, n);
                }
            }
            Effect::Gauge(index, value) => {
                if let Some(Some(id)) = state.borrow().metric_ids.get(index) {
                    let _ = host::record_metric(*id, value);
                }
            }
            Effect::TickPeriod(ms) => {
                let _ = host::set_tick_period_ms(ms);
            }
        }
    }
    if effective != current {
        let _ = host::set_effective_context(current);
    }
    action
}

/// Answers the effective context's request locally.
pub(crate) fn send_reply(reply: &Reply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let _ = host::send_response(reply.status, &headers, reply.body.as_bytes());
}

fn level_of(level: worker::Level) -> Level {
    match level {
        worker::Level::Debug => Level::Debug,
        worker::Level::Info => Level::Info,
        worker::Level::Warn => Level::Warn,
        worker::Level::Error => Level::Error,
    }
}
