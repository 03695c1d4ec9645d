//! A final decision as effects on its request: identity headers and the credential's
//! removal, the access-log fields, the metric and log line, and `Continue` or the local
//! reply. In audit mode a denial is logged and counted and the request continues with
//! the identity of a valid token.

use super::{Claimed, Effect, Level, Vm};
use crate::config::Mode;
use crate::pipeline::{Decision, Outcome};
use crate::reply::Denial;
use crate::request::Request;
use crate::token::{cookie_without, path_without_param, TokenSource};

impl Vm {
    /// Applies `outcome` to the request of `context`.
    pub(super) fn finish(
        &mut self,
        context: u32,
        request: &Request,
        mut outcome: Outcome,
        out: &mut Vec<Effect>,
    ) {
        self.claim_proof(&mut outcome, out);
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
            self.revocation_noted(provider, outcome.revocation, out);
        }
        if self.config.access_log_fields {
            self.record(context, &outcome, verdict, reason, out);
        }
        match &outcome.decision {
            Decision::Allow { headers } => {
                self.metrics.allowed(outcome.public, outcome.anonymous);
                self.forward(context, request, &outcome, headers, out);
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
                    out.push(Effect::Continue { context });
                    return;
                }
                self.debug(out, line);
                let reply = denial.reply(&request.request_id);
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

    /// Enters the request's DPoP proof in its provider's process-wide replay store: a
    /// proof seen before (on any worker), or one the store cannot take (full, refused),
    /// turns the decision into a refusal — never a replay let through.
    fn claim_proof(&mut self, outcome: &mut Outcome, out: &mut Vec<Effect>) {
        let (Some(claim), Some(provider)) = (outcome.proof.take(), outcome.provider) else {
            return;
        };
        let (Some(Some(store)), Some(d)) = (
            self.replay.get(provider),
            self.config
                .providers
                .get(provider)
                .and_then(|p| p.dpop.as_ref()),
        ) else {
            return;
        };
        let now_s = i64::try_from(self.clock / 1000).unwrap_or(i64::MAX);
        let claimed = store.claim(&*self.store, &claim, now_s);
        self.metrics.proof(provider, claimed);
        let why = match claimed {
            Claimed::Fresh => return,
            Claimed::Replayed => "DPoP proof replayed",
            Claimed::Full | Claimed::Failed => {
                let quiet = self
                    .replay_warned_ms
                    .is_some_and(|t| self.clock.saturating_sub(t) < super::REPLAY_WARN_EVERY_MS);
                if !quiet {
                    self.replay_warned_ms = Some(self.clock);
                    out.push(Effect::Log(
                        Level::Warn,
                        format!(
                            "bearer-guard: DPoP replay store of provider {} cannot take a proof ({}): refused (counted in dpop_replay_store_full; logged at most every {} s)",
                            self.config.provider_name(provider),
                            if claimed == Claimed::Full { "bucket full; raise dpop.replay_entries" } else { "shared data refused" },
                            super::REPLAY_WARN_EVERY_MS / 1000
                        ),
                    ));
                }
                "DPoP replay store full"
            }
        };
        outcome.decision = Decision::Deny(Denial::InvalidDpopProof(d.algs.clone()));
        outcome.identity.clear();
        outcome.note = why.into();
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
