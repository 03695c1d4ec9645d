//! A final decision as effects on its request: identity headers and the credential's
//! removal, the access-log fields, the metric and log line, and `Continue` or the local
//! reply. In audit mode a denial is logged and counted and the request continues with
//! the identity of a valid token.

use super::{Effect, Level, Worker};
use crate::config::Mode;
use crate::pipeline::{Decision, Outcome};
use crate::reply::Denial;
use crate::request::Request;
use crate::token::{cookie_without, path_without_param, TokenSource};

impl Worker {
    /// Applies `outcome` to the request of `context`.
    pub(super) fn finish(
        &mut self,
        context: u32,
        request: &Request,
        mut outcome: Outcome,
        out: &mut Vec<Effect>,
    ) {
        let clock = self.clock;
        self.replay.claim(&mut outcome, clock, &mut cx!(self, out));
        let audit = outcome.mode == Mode::Audit;
        let (verdict, reason) = match &outcome.decision {
            Decision::Allow { .. } if outcome.public => ("public", None),
            Decision::Allow { .. } if outcome.anonymous => ("anonymous", None),
            Decision::Allow { .. } => ("allowed", None),
            Decision::Deny(d) if audit => ("would_deny", Some(d.reason())),
            Decision::Deny(d) => ("denied", Some(d.reason())),
            Decision::Await(_) | Decision::ReadBody { .. } => {
                ("denied", Some(Denial::Unavailable.reason()))
            }
        };
        if let Some(provider) = outcome.provider {
            self.lists
                .noted(provider, outcome.revocation, &mut cx!(self, out));
        }
        if self.config.access_log_fields {
            self.record(context, &outcome, verdict, reason, out);
        }
        if let Some(note) = &outcome.mcp {
            let passes = matches!(outcome.decision, Decision::Allow { .. }) || audit;
            self.metrics.mcp(&note.methods, passes);
        }
        match &outcome.decision {
            Decision::Allow { headers } => {
                self.metrics.allowed(outcome.public, outcome.anonymous);
                self.forward(context, request, &outcome, headers, out);
                self.expect_lists(context, request, &outcome, out);
                out.push(Effect::Continue { context });
            }
            Decision::Deny(denial) => {
                self.metrics.denied(denial, audit, outcome.provider);
                let line = || {
                    format!(
                        "bearer-guard: {} {} rule={} route={} request_id={} why={}",
                        if audit { "audit: would deny" } else { "denied" },
                        denial.reason(),
                        self.config.rule_name(outcome.rule),
                        request.route_name.as_deref().unwrap_or("-"),
                        request.request_id,
                        outcome.note
                    )
                };
                if audit {
                    out.push(Effect::Log(Level::Info, line()));
                    self.forward(context, request, &outcome, &outcome.identity, out);
                    self.expect_lists(context, request, &outcome, out);
                    out.push(Effect::Continue { context });
                    return;
                }
                if self.debug {
                    out.push(Effect::Log(Level::Debug, line()));
                }
                let challenge = self
                    .config
                    .resources
                    .challenge(request, outcome.scope.as_deref());
                let reply = denial.reply_with(&request.request_id, &challenge);
                out.push(Effect::Reply { context, reply });
            }
            // Not reachable: a request decides without waiting once it has waited; fail
            // closed all the same.
            Decision::Await(_) | Decision::ReadBody { .. } => {
                let reply = Denial::Unavailable.reply(&request.request_id);
                out.push(Effect::Reply { context, reply });
            }
        }
    }

    /// The identity headers, and the credential's removal (`forward.strip_authorization`,
    /// the provider's `token.strip`) before the upstream.
    pub(super) fn forward(
        &self,
        context: u32,
        request: &Request,
        outcome: &Outcome,
        headers: &[(String, String)],
        out: &mut Vec<Effect>,
    ) {
        let mut set = |name: &str, value: Option<String>| {
            out.push(Effect::Header {
                context,
                name: name.to_string(),
                value,
            })
        };
        for (name, value) in headers {
            set(name, Some(value.clone()));
        }
        if self.config.forward.strip_authorization {
            set("authorization", None);
        }
        match &outcome.strip {
            None => {}
            Some(TokenSource::Authorization) => set("authorization", None),
            Some(TokenSource::Header { name, .. }) => set(name, None),
            Some(TokenSource::Cookie(name)) => {
                let values: Vec<&str> = request.header_values("cookie").collect();
                set("cookie", cookie_without(&values, name));
            }
            Some(TokenSource::Query(name)) => {
                set(":path", Some(path_without_param(&request.path, name)));
            }
        }
        if self.config.clear_route_cache {
            out.push(Effect::ClearRouteCache { context });
        }
    }

    /// A forwarded request with lists to filter: its answer is expected (and held when it
    /// comes), and asked for uncompressed.
    fn expect_lists(
        &mut self,
        context: u32,
        request: &Request,
        outcome: &Outcome,
        out: &mut Vec<Effect>,
    ) {
        let Some(note) = outcome.mcp.as_ref().filter(|n| !n.lists.is_empty()) else {
            return;
        };
        self.responses
            .expect(context, request.head(), note.lists.clone());
        remove_accept_encoding(context, request, out);
    }

    /// Records the decision where Envoy's access log can print it (filter state
    /// `wasm.bearer_guard.*`): outcome, reason, rule, provider and subject — never a token
    /// or a claim set.
    fn record(
        &self,
        context: u32,
        outcome: &Outcome,
        verdict: &str,
        reason: Option<&str>,
        out: &mut Vec<Effect>,
    ) {
        let mut put = |name: &'static str, value: &str| {
            out.push(Effect::Property {
                context,
                name,
                value: value.to_string(),
            })
        };
        put("bearer_guard.outcome", verdict);
        put("bearer_guard.rule", self.config.rule_name(outcome.rule));
        if let Some(reason) = reason {
            put("bearer_guard.reason", reason);
        }
        if let Some(p) = outcome.provider {
            put("bearer_guard.provider", self.config.provider_name(p));
        }
        if let Some(sub) = &outcome.subject {
            put("bearer_guard.subject", sub);
        }
    }
}

/// Asks the upstream for an uncompressed answer (a list is filtered only uncompressed).
pub(super) fn remove_accept_encoding(context: u32, request: &Request, out: &mut Vec<Effect>) {
    if request.headers.first("accept-encoding").is_some() {
        out.push(Effect::Header {
            context,
            name: "accept-encoding".to_string(),
            value: None,
        });
    }
}
