//! A GraphQL endpoint: what the head decides before the body, and each root field of the
//! body judged by its own rule.

use super::combine::answering;
use super::steps::provider::Scope;
use super::steps::{authenticate, authorize, credential};
use super::trace::{check, FieldVerdict, Finding, Step, Tracer};
use super::{decide_for, deny, outcome, subject, CacheNote, Class, Decision, Inputs, Outcome};
use crate::authz::matcher::Captures;
use crate::config::{Authentication, Mode, Rule};
use crate::graphql::{self as gql, RootField};
use crate::reply::Denial;
use crate::request::{Body, Request};
use crate::token::TokenSource;

/// A request to a GraphQL endpoint: each root field of the operations it runs is judged
/// by the first rule that matches the request and the field (a rule without a `graphql`
/// condition matches every field, `__typename` only such rules), or by the default policy;
/// the request passes when every field's rule lets it, else the first failing field in
/// document order answers (an enforced denial before an audited one).
pub(super) fn graphql_decision(
    inp: &Inputs,
    req: &Request,
    path: &str,
    host: &str,
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let limits = &cfg.graphql;
    // The rules that may judge a field: those matching the request, up to the first one
    // without a GraphQL condition (it takes every field the ones before it did not).
    let mut candidates: Vec<(&Rule, Captures)> = Vec::new();
    for r in &cfg.rules {
        if let Some(c) = r.matcher.matches(req, path, host) {
            let catch_all = r.graphql.is_none();
            candidates.push((r, c));
            if catch_all {
                break;
            }
        }
    }
    let first = candidates.first().map(|(r, _)| *r);
    let refuse = |gql::Refusal(detail): gql::Refusal, t: &mut Tracer| {
        t.record(|tr| {
            tr.fields.push(check(
                Step::Request,
                false,
                Finding::Unreadable(detail.clone()),
            ))
        });
        deny(
            Denial::BadRequest(detail),
            first,
            "not a readable GraphQL request",
        )
    };
    if let Err(detail) = gql::check_headers(req, limits) {
        return refuse(detail, t);
    }
    let body: &[u8] = match &req.body {
        Body::Read(b) => b,
        Body::TooLarge(_) => return refuse(gql::too_large(limits), t),
        Body::Unread if gql::needs_body(req) => return before_body(inp, req, &candidates, t),
        Body::Unread => &[],
    };
    let fields = match gql::root_fields(req, body, limits) {
        Ok(f) => f,
        Err(detail) => return refuse(detail, t),
    };
    // Each field's rule (an index into `candidates`; `None`: the default policy), and
    // each distinct rule decided once, in the order its first field comes.
    let judged: Vec<(RootField, Option<usize>)> = fields
        .into_iter()
        .map(|f| {
            let at = candidates
                .iter()
                .position(|(r, _)| r.graphql.as_ref().is_none_or(|g| g.matches(&f)));
            (f, at)
        })
        .collect();
    let mut decided: Vec<(Option<usize>, Outcome, crate::pipeline::trace::Trace)> = Vec::new();
    for (_, at) in &judged {
        if decided.iter().any(|(d, _, _)| d == at) {
            continue;
        }
        let (rule, captures) = match at.and_then(|i| candidates.get(i)) {
            Some((r, c)) => (Some(*r), c.clone()),
            None => (None, Vec::new()),
        };
        let mut sub = crate::pipeline::trace::Trace::default();
        let mut st = Tracer(t.on().then_some(&mut sub));
        let o = decide_for(inp, req, rule, &captures, &mut st);
        decided.push((*at, o, sub));
    }
    let mut cache = CacheNote::None;
    for (_, o, _) in &mut decided {
        let note = std::mem::take(&mut o.cache);
        if matches!(cache, CacheNote::None) {
            cache = note;
        }
    }
    let outcome_of = |at: &Option<usize>| decided.iter().position(|(d, _, _)| d == at);
    t.record(|tr| {
        for (f, at) in &judged {
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
                Step::Field(f.operation.name(), f.name.clone()),
                ok,
                Finding::FieldJudged(rule_name, verdict),
            ));
        }
    });
    // Every field's rule must allow; otherwise a wait, then the first enforced denial,
    // then the first audited one answers (`combine`, the one rule for decisions by parts).
    let parts: Vec<&Outcome> = decided.iter().map(|(_, o, _)| o).collect();
    let chosen = answering(&parts);
    let all_public = decided.iter().all(|(_, o, _)| o.public);
    let all_anonymous = decided.iter().all(|(_, o, _)| o.public || o.anonymous);
    // One proof per request, whichever field's rule checked it.
    let proof = decided.iter().find_map(|(_, o, _)| o.proof);
    let Some((_, mut o, sub)) = chosen.map(|i| decided.swap_remove(i)) else {
        return deny(
            Denial::BadRequest("GraphQL request selects no field".into()),
            first,
            "no root field",
        );
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

/// A GraphQL request whose body has not arrived: what the headers decide. The token is
/// authenticated now — by the providers of the rules that may judge a field — and its
/// identity resolved (required claims, account, identity headers), so a request without a
/// valid one is refused before its body is read; the rules of the fields are applied once
/// the body is complete.
pub(super) fn before_body(
    inp: &Inputs,
    req: &Request,
    candidates: &[(&Rule, Captures)],
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let first = candidates.first().map(|(r, _)| *r);
    // Fields no candidate takes go to the default policy (every provider).
    let takes_all = candidates.last().is_some_and(|(r, _)| r.graphql.is_none());
    let scope = Scope::AnyOf(candidates, !takes_all);
    let mut sources: Vec<&TokenSource> = Vec::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        if scope.allows(i) && !sources.contains(&&p.token) {
            sources.push(&p.token);
        }
    }
    let read_body = |headers| outcome(Decision::ReadBody { headers }, first, "GraphQL body");
    let found = crate::token::credential(req, &sources, cfg.dpop);
    let Ok(Some(cred)) = found else {
        // A field whose rule takes no credential may still pass: the body decides.
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
    let mut v = match authenticate(inp, req, scope, cred, source, t) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    let cache = std::mem::take(&mut v.cache);
    // The identity steps, as for a request no rule matched.
    let mut o = authorize(inp, req, (None, &Vec::new()), &v, t);
    if let Decision::Allow { headers } = &o.decision {
        o = read_body(headers.clone());
    }
    o.cache = cache;
    o.provider = Some(v.provider);
    o.subject = subject(&v.claims);
    o.revocation = v.revocation;
    o.proof = v.proof;
    if v.config.strip_token {
        o.strip = Some(source.clone());
    }
    o
}
