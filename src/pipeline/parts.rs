//! A request judged by parts of its body — the root fields of a GraphQL request, the
//! messages of an MCP request: the rules that may judge a part, each part's rule decided
//! once, and what the head decides before the body has come.

use super::combine::answering;
use super::steps::provider::Scope;
use super::steps::{authenticate, authorize, credential};
use super::trace::{check, FieldVerdict, Finding, Step, Trace, Tracer};
use super::{decide_for, deny, outcome, stamp, CacheNote, Class, Decision, Inputs, Outcome};
use crate::authz::matcher::Captures;
use crate::config::{Authentication, Config, Mode, Rule};
use crate::reply::Denial;
use crate::request::Request;
use crate::token::TokenSource;

/// The rules that may judge a part: those matching the request, up to the first one
/// that takes every part (`takes_all`: a rule without a condition on parts).
pub(super) fn candidates<'c>(
    cfg: &'c Config,
    req: &Request,
    (path, host): (&str, &str),
    takes_all: impl Fn(&Rule) -> bool,
) -> Vec<(&'c Rule, Captures)> {
    let mut out: Vec<(&Rule, Captures)> = Vec::new();
    for r in &cfg.rules {
        if let Some(c) = r.matcher.matches(req, path, host) {
            let all = takes_all(r);
            out.push((r, c));
            if all {
                break;
            }
        }
    }
    out
}

/// Each distinct rule of `judged` decided once (an index into `candidates`; `None`: the
/// default policy), in the order its first part comes: the rule, its outcome and its
/// trace (recorded when `traced`).
pub(super) type Decided = Vec<(Option<usize>, Outcome, Trace)>;

/// Decides each distinct rule `at` names once.
pub(super) fn decide_rules(
    inp: &Inputs,
    req: &Request,
    candidates: &[(&Rule, Captures)],
    at: impl Iterator<Item = Option<usize>>,
    traced: bool,
) -> Decided {
    let mut decided: Decided = Vec::new();
    for at in at {
        if decided.iter().any(|(d, _, _)| *d == at) {
            continue;
        }
        let (rule, captures) = match at.and_then(|i| candidates.get(i)) {
            Some((r, c)) => (Some(*r), c.clone()),
            None => (None, Vec::new()),
        };
        let mut sub = Trace::default();
        let mut st = Tracer(traced.then_some(&mut sub));
        let o = decide_for(inp, req, rule, &captures, &mut st);
        decided.push((at, o, sub));
    }
    decided
}

/// The outcome for a request whose parts (`judged`: each part's step and its rule) were
/// decided: every part's rule must allow; otherwise a wait, then the first enforced
/// denial, then the first audited one answers (`combine`, the one rule for decisions by
/// parts). `empty` is the refusal for a body with no part.
pub(super) fn judge(
    inp: &Inputs,
    req: &Request,
    candidates: &[(&Rule, Captures)],
    judged: Vec<(Step, Option<usize>)>,
    empty: &'static str,
    t: &mut Tracer,
) -> Outcome {
    let first = candidates.first().map(|(r, _)| *r);
    let mut decided = decide_rules(
        inp,
        req,
        candidates,
        judged.iter().map(|(_, at)| *at),
        t.on(),
    );
    let mut cache = CacheNote::None;
    for (_, o, _) in &mut decided {
        let note = std::mem::take(&mut o.cache);
        if matches!(cache, CacheNote::None) {
            cache = note;
        }
    }
    let outcome_of = |at: &Option<usize>| decided.iter().position(|(d, _, _)| d == at);
    t.record(|tr| {
        for (step, at) in &judged {
            let rule_name = at
                .and_then(|i| candidates.get(i))
                .map(|(r, _)| r.name.clone());
            let verdict = outcome_of(at)
                .and_then(|i| decided.get(i))
                .map(|(_, o, _)| o);
            let ok = verdict.is_some_and(|o| o.decision.class() == Class::Allow);
            let verdict = match verdict.map(|o| &o.decision) {
                Some(Decision::Deny(d)) => FieldVerdict::Denied(d.status(), d.detail().to_string()),
                Some(Decision::Allow { .. }) => FieldVerdict::Allowed,
                Some(Decision::Await(w)) => FieldVerdict::Waits(Some(w.describe())),
                Some(Decision::ReadBody { .. }) | None => FieldVerdict::Waits(None),
            };
            tr.fields.push(check(
                step.clone(),
                ok,
                Finding::FieldJudged(rule_name, verdict),
            ));
        }
    });
    let parts: Vec<&Outcome> = decided.iter().map(|(_, o, _)| o).collect();
    let chosen = answering(&parts);
    let all_public = decided.iter().all(|(_, o, _)| o.public);
    let all_anonymous = decided.iter().all(|(_, o, _)| o.public || o.anonymous);
    // One proof per request, whichever part's rule checked it.
    let proof = decided.iter().find_map(|(_, o, _)| o.proof);
    let Some((_, mut o, sub)) = chosen.map(|i| decided.swap_remove(i)) else {
        return deny(Denial::BadRequest(empty.into()), first, "no part");
    };
    t.record(|tr| {
        tr.preconditions = sub.preconditions;
        tr.token = sub.token;
        tr.identity = sub.identity;
        tr.grants = sub.grants;
        tr.requirements = sub.requirements;
        tr.membership = sub.membership;
    });
    if matches!(o.decision, Decision::Allow { .. }) {
        o.public = all_public;
        o.anonymous = !all_public && all_anonymous;
    }
    o.cache = cache;
    o.proof = o.proof.or(proof);
    o
}

/// A request judged by parts whose body has not arrived: what the headers decide. The
/// token is authenticated now — by the providers of the rules that may judge a part
/// (`takes_all`: the last candidate takes every part the others do not) — and its
/// identity resolved (required claims, account, identity headers), so a request without
/// a valid one is refused before its body is read; the rules of the parts are applied
/// once the body is complete. `hold_head`: the head waits with the body.
pub(super) fn before_body(
    inp: &Inputs,
    req: &Request,
    candidates: &[(&Rule, Captures)],
    (takes_all, hold_head): (bool, bool),
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let first = candidates.first().map(|(r, _)| *r);
    // Parts no candidate takes go to the default policy (every provider).
    let scope = Scope::AnyOf(candidates, !takes_all);
    let mut sources: Vec<&TokenSource> = Vec::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        if scope.allows(i) && !sources.contains(&&p.token) {
            sources.push(&p.token);
        }
    }
    let read_body = |headers| {
        outcome(
            Decision::ReadBody { headers, hold_head },
            first,
            "body to judge",
        )
    };
    let found = crate::token::credential(req, &sources, cfg.dpop);
    let Ok(Some(cred)) = found else {
        // A part whose rule takes no credential may still pass: the body decides.
        let lenient = candidates.iter().any(|(r, _)| {
            r.public || r.authentication == Authentication::Optional || r.mode == Mode::Audit
        });
        t.token(Step::Credential, found == Ok(None) && lenient, || {
            if found.is_ok() {
                Finding::NoneSent(Vec::new())
            } else {
                Finding::NotOne(Vec::new())
            }
        });
        if found == Ok(None) && lenient {
            return read_body(Vec::new());
        }
        return deny(Denial::MissingToken, first, "no bearer token");
    };
    t.token(Step::Credential, true, || Finding::OneToken(String::new()));
    let source = credential::source_of(&sources, &cred);
    let v = match authenticate(inp, req, scope, cred, source, t) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    // The identity steps, as for a request no rule matched.
    let mut o = authorize(inp, req, (None, &Vec::new()), &v, t);
    if let Decision::Allow { headers } = &o.decision {
        o = read_body(headers.clone());
    }
    stamp(&mut o, v, source);
    o
}

/// Records that the body could not be read, and refuses it (400).
pub(super) fn unreadable(
    detail: String,
    first: Option<&Rule>,
    note: &'static str,
    t: &mut Tracer,
) -> Outcome {
    t.record(|tr| {
        tr.fields.push(check(
            Step::Request,
            false,
            Finding::Unreadable(detail.clone()),
        ))
    });
    deny(Denial::BadRequest(detail), first, note)
}
