//! An MCP endpoint: each JSON-RPC message of a POST judged by its own rule
//! ([`super::parts`]), GET and DELETE by the path's rule, and which items of a list the
//! caller may use.

use super::parts::{self, before_body, candidates, decide_rules, judge};
use super::steps::rule;
use super::trace::{Step, Tracer};
use super::{decide_for, Class, Decision, Inputs, Outcome};
use crate::authz::matcher::Captures;
use crate::config::{Mode, Rule};
use crate::graphql::Refusal;
use crate::mcp::{self, ListKind, Message};
use crate::request::{Body, Request};

/// What an allowed MCP request carries on to its response and its metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpNote {
    /// Each message's method as a metric label (`other` for a method MCP does not name,
    /// `response` for the client's answers).
    pub methods: Vec<&'static str>,
    /// The lists whose answers are filtered: list messages whose rule has
    /// `filter_lists`.
    pub lists: Vec<ListKind>,
}

/// A method as a metric label: one MCP names, else `other` (labels stay bounded whatever
/// clients send).
fn label(m: &Message) -> &'static str {
    match m.method.as_deref() {
        None => "response",
        Some(method) => mcp::KNOWN_METHODS
            .iter()
            .find(|k| **k == method)
            .copied()
            .unwrap_or("other"),
    }
}

/// Methods judged by the path's rule without a message.
const WITHOUT_MESSAGE: &[&str] = &["GET", "DELETE", "HEAD", "OPTIONS"];

/// A request to an MCP endpoint: a POST's messages each judged by the first rule that
/// matches the request and the message (a rule without an `mcp` condition matches every
/// message, and the client's responses only such rules), or by the default policy; the
/// request passes when every message's rule lets it. GET (the event stream), DELETE (the
/// end of a session), HEAD and OPTIONS are judged by the path's rule: the first matching
/// rule without an `mcp` condition.
pub(super) fn mcp_decision(
    inp: &Inputs,
    req: &Request,
    path: &str,
    host: &str,
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let limits = &cfg.mcp;
    let candidates = candidates(cfg, req, (path, host), |r| r.mcp.is_none());
    let first = candidates.first().map(|(r, _)| *r);
    let path_rule = candidates.iter().position(|(r, _)| r.mcp.is_none());
    let refuse = |Refusal(detail): Refusal, t: &mut Tracer| {
        parts::unreadable(detail, first, "not a readable MCP request", t)
    };
    if req.method != "POST" {
        if !WITHOUT_MESSAGE.contains(&req.method.as_str()) {
            return refuse(
                Refusal(format!(
                    "MCP requests are POST, GET, DELETE, HEAD or OPTIONS, not {}",
                    req.method
                )),
                t,
            );
        }
        let (rule, captures): (Option<&Rule>, Captures) =
            match path_rule.and_then(|i| candidates.get(i)) {
                Some((r, c)) => (Some(*r), c.clone()),
                None => (None, Vec::new()),
            };
        return decide_for(inp, req, rule, &captures, t);
    }
    if let Err(detail) = mcp::check_headers(req, limits) {
        return refuse(detail, t);
    }
    let body: &[u8] = match &req.body {
        Body::Read(b) => b,
        Body::TooLarge(_) => return refuse(mcp::too_large(limits), t),
        Body::Unread => {
            return before_body(
                inp,
                req,
                &candidates,
                (path_rule.is_some(), limits.hold_head),
                t,
            )
        }
    };
    let messages = match mcp::messages(body, limits, &cfg.mcp_spellings) {
        Ok(m) => m,
        Err(detail) => return refuse(detail, t),
    };
    let rule_of = |m: &Message| {
        candidates
            .iter()
            .position(|(r, _)| r.mcp.as_ref().is_none_or(|x| x.matches(m)))
    };
    let judged = messages
        .iter()
        .map(|m| (Step::Field("mcp", m.describe()), rule_of(m)))
        .collect();
    let mut o = judge(
        inp,
        req,
        &candidates,
        judged,
        "MCP request holds no message",
        t,
    );
    let mut note = McpNote {
        methods: messages.iter().map(label).collect(),
        lists: Vec::new(),
    };
    // Lists are filtered whenever the request goes on: allowed, or denied in audit mode
    // (an audited message of a batch must not let its list go out unfiltered).
    let forwarded = match o.decision {
        Decision::Allow { .. } => true,
        Decision::Deny(_) => o.mode == crate::config::Mode::Audit,
        _ => false,
    };
    if forwarded {
        for m in &messages {
            let filters = rule_of(m)
                .and_then(|i| candidates.get(i))
                .is_some_and(|(r, _)| r.filter_lists);
            if let (Some(kind), true) = (m.list, filters) {
                if !note.lists.contains(&kind) {
                    note.lists.push(kind);
                }
            }
        }
    }
    o.mcp = Some(Box::new(note));
    o
}

/// Which of `items` (names or URIs of a `kind` list) the caller of `req` — the list
/// request's head — may use: each judged as the message that would use it
/// (`tools/call` with its name, …) under the rules, as [`mcp_decision`] would judge it. An
/// item is shown when its rule allows, or only audits a denial; never when the decision
/// would wait or could not be read.
pub fn mcp_list_allowed(inp: &Inputs, req: &Request, kind: ListKind, items: &[&str]) -> Vec<bool> {
    let cfg = inp.config;
    let Ok(path) = rule::normal_path(req, &mut Tracer(None)) else {
        return vec![false; items.len()];
    };
    let host = if cfg.needs_host {
        req.host()
    } else {
        String::new()
    };
    let candidates = candidates(cfg, req, (path, &host), |r| r.mcp.is_none());
    let at: Vec<Option<Option<usize>>> = items
        .iter()
        .map(|item| {
            let m = Message::call(kind.call_method(), item);
            mcp::callable(kind, item, &cfg.mcp_spellings).then(|| {
                candidates
                    .iter()
                    .position(|(r, _)| r.mcp.as_ref().is_none_or(|x| x.matches(&m)))
            })
        })
        .collect();
    let decided = decide_rules(inp, req, &candidates, at.iter().flatten().copied(), false);
    at.iter()
        .map(|at| {
            let Some(at) = at else { return false };
            decided
                .iter()
                .find(|(d, _, _)| d == at)
                .is_some_and(|(_, o, _)| match o.decision.class() {
                    Class::Allow => true,
                    Class::Deny => o.mode == Mode::Audit,
                    Class::Pending => false,
                })
        })
        .collect()
}
