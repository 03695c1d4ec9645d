//! Root context: parses the configuration, picks the signature backend, drives JWKS
//! fetches from its tick and creates the HTTP contexts.

use super::backend::{Backend, EnvoyBackend};
use super::host;
use super::http::Http;
use super::state::{on_call_response, tick, Shared, SharedRef, IDLE_TICK_MS};
use super::{log, Level};
use crate::config::{self, VerifierChoice};
use crate::verifier::RustBackend;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;

/// The plugin's root context.
pub(crate) struct Root {
    context_id: u32,
    shared: Option<SharedRef>,
}

impl Root {
    pub(crate) fn new(context_id: u32) -> Root {
        Root {
            context_id,
            shared: None,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(shared) = &self.shared {
            on_call_response(
                shared,
                token_id,
                body_size,
                self.context_id,
                &|cluster, headers, timeout| {
                    self.dispatch_http_call(cluster, headers, None, vec![], timeout)
                },
            );
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = host::buffer(host::buffer::PLUGIN_CONFIGURATION, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let cfg = match config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(cfg) => cfg,
            Err(e) => {
                log(Level::Error, &format!("bearer-guard: {e}"));
                return false;
            }
        };
        let backend = match cfg.verifier {
            VerifierChoice::Rust => Backend::Rust(RustBackend),
            VerifierChoice::Auto if EnvoyBackend::available() => Backend::Envoy(EnvoyBackend),
            VerifierChoice::Auto => Backend::Rust(RustBackend),
            VerifierChoice::Envoy if EnvoyBackend::available() => Backend::Envoy(EnvoyBackend),
            VerifierChoice::Envoy => {
                log(Level::Error, "bearer-guard: invalid configuration at `verifier`: this host has no verify_signature foreign function");
                return false;
            }
        };
        let providers: Vec<&str> = cfg.providers.iter().map(|p| p.name.as_str()).collect();
        log(
            Level::Info,
            &format!(
                "bearer-guard: configured {} provider(s) [{}], {} rule(s), RSA backend {}",
                providers.len(),
                providers.join(","),
                cfg.rules.len(),
                backend.get().name()
            ),
        );
        self.shared = Some(Rc::new(RefCell::new(Shared::new(
            cfg,
            backend,
            self.context_id,
        ))));
        if let Err(e) = host::set_tick_period_ms(IDLE_TICK_MS) {
            log(
                Level::Error,
                &format!(
                    "bearer-guard: the host refused a tick period (status {})",
                    e.0
                ),
            );
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        tick(&shared, self.context_id, &|cluster, headers, timeout| {
            self.dispatch_http_call(cluster, headers, None, vec![], timeout)
        });
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
