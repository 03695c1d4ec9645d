//! Root context: parses the configuration, picks the signature backend, builds the VM
//! core, defines its metrics, and forwards ticks and call responses to it.

use super::apply::{apply, Caller, State, StateRef};
use super::backend;
use super::host::{self, log, HostStore, Level, MetricKind};
use super::http::Http;
use crate::config;
use crate::verify::host::EnvoyVerifier;
use crate::verify::{RustBackend, SignatureBackend};
use crate::worker::{self, Worker, IDLE_TICK_MS};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// The plugin's root context.
pub(crate) struct Root {
    context_id: u32,
    state: Option<StateRef>,
}

impl Root {
    pub(crate) fn new(context_id: u32) -> Root {
        Root {
            context_id,
            state: None,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(state) = &self.state {
            super::http::call_response(state, self, self.context_id, token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = host::buffer(host::buffer::PLUGIN_CONFIGURATION, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut cfg = match config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(cfg) => cfg,
            Err(e) => {
                log(Level::Error, &format!("bearer-guard: {e}"));
                return false;
            }
        };
        // This module's responses never reach it unless it was built to filter them.
        if let Some(rule) = cfg.rules.iter().find(|r| r.filter_lists) {
            if !cfg!(feature = "lists") {
                log(
                    Level::Error,
                    &format!(
                        "bearer-guard: rules[{}].filter_lists: this module does not see responses; load bearer_guard_lists.wasm (make build), which does",
                        rule.index
                    ),
                );
                return false;
            }
        }
        let backend: Box<dyn SignatureBackend> = match cfg.verifier.use_host(backend::available()) {
            Ok(true) => Box::new(EnvoyVerifier(backend::call)),
            Ok(false) => Box::new(RustBackend),
            Err(e) => {
                log(Level::Error, &format!("bearer-guard: {e}"));
                return false;
            }
        };
        let plugin = host::property(&["plugin_name"]).ok().flatten();
        cfg.name_metrics_after(&String::from_utf8_lossy(&plugin.unwrap_or_default()));
        let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        log(
            Level::Info,
            &format!(
                "bearer-guard: configured {} provider(s) [{}], {} rule(s), RSA backend {}, metrics bearer_guard.{}.*",
                providers.len(),
                providers.join(","),
                cfg.rules.len(),
                backend.name(),
                cfg.stat_prefix()
            ),
        );
        let now = host::now_ms();
        let store = Box::new(HostStore::probe());
        let entropy = host::random16();
        if entropy.is_none() && cfg.shared.tokens > 0 {
            log(
                Level::Warn,
                "bearer-guard: the host has no random source; the process-wide token level is off unless another worker has set its key",
            );
        }
        let mut vm = Worker::new(cfg, backend, store, (now, self.context_id), entropy);
        vm.set_debug(host::logs(Level::Debug));
        let effects = vm.on_configure(now);
        let metric_ids = vm
            .metric_definitions()
            .iter()
            .map(|(name, kind)| {
                let kind = match kind {
                    worker::MetricKind::Counter => MetricKind::Counter,
                    worker::MetricKind::Gauge => MetricKind::Gauge,
                };
                host::define_metric(kind, name).ok()
            })
            .collect();
        let state = Rc::new(RefCell::new(State {
            worker: vm,
            metric_ids,
        }));
        apply(&state, effects, self.context_id, None);
        self.state = Some(state);
        if let Err(e) = host::set_tick_period_ms(IDLE_TICK_MS) {
            let line = format!(
                "bearer-guard: the host refused a tick period (status {})",
                e.0
            );
            log(Level::Error, &line);
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(state) = self.state.clone() else {
            return;
        };
        let effects = {
            let vm = &mut state.borrow_mut().worker;
            vm.set_debug(host::logs(Level::Debug));
            vm.on_tick(host::now_ms(), &mut Caller(self))
        };
        apply(&state, effects, self.context_id, None);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.state.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
