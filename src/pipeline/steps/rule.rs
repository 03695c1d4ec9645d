//! The rule step: only a path in normal form is matched (so `..` tricks cannot borrow a
//! rule), then the first rule whose method, path, host and route match judges the
//! request.

use crate::authz::matcher::Captures;
use crate::config::{Config, Rule};
use crate::pipeline::trace::{check, Finding, Step, Tracer};
use crate::pipeline::{deny, Outcome};
use crate::reply::Denial;
use crate::request::{is_normalized, Request};

/// The request's path without its query, or the 400 for a path not in normal form.
pub(in crate::pipeline) fn normal_path<'r>(
    req: &'r Request,
    t: &mut Tracer,
) -> Result<&'r str, Box<Outcome>> {
    let path = req.path_only();
    if is_normalized(path) {
        return Ok(path);
    }
    t.record(|tr| {
        tr.rules
            .push(check(Step::Path, false, Finding::PathNotNormal))
    });
    Err(Box::new(deny(
        Denial::BadRequest("Request path is not normalized".into()),
        None,
        "path not normalized",
    )))
}

/// The first rule matching the request, with its path captures.
pub(in crate::pipeline) fn first_match<'c>(
    cfg: &'c Config,
    req: &Request,
    path: &str,
    host: &str,
    t: &mut Tracer,
) -> Option<(&'c Rule, Captures)> {
    if t.on() {
        return traced(cfg, req, path, host, t);
    }
    cfg.rules
        .iter()
        .find_map(|r| r.matcher.matches(req, path, host).map(|c| (r, c)))
}

/// The rule step with every rule recorded: which matched, and what differs for the
/// others.
fn traced<'c>(
    cfg: &'c Config,
    req: &Request,
    path: &str,
    host: &str,
    t: &mut Tracer,
) -> Option<(&'c Rule, Captures)> {
    let mut found: Option<(&Rule, Captures)> = None;
    for r in &cfg.rules {
        let what = match &r.graphql {
            Some(g) => format!("{} {}", r.matcher.describe(), g.describe()),
            None => r.matcher.describe(),
        };
        let step = Step::Rule(r.name.clone());
        // After a GraphQL rule, later rules still judge other root fields.
        let graphql = found.as_ref().is_some_and(|(f, _)| f.graphql.is_some());
        let c = if graphql {
            match r.matcher.check(req, path, host) {
                Ok(_) => check(step, true, Finding::RuleMatchesRequest(what)),
                Err(m) => check(step, false, Finding::RuleMisses(what, m.as_str())),
            }
        } else if found.is_some() {
            check(step, false, Finding::RuleNotConsidered(what))
        } else {
            match r.matcher.check(req, path, host) {
                Ok(captures) => {
                    found = Some((r, captures));
                    check(step, true, Finding::RuleMatches(what))
                }
                Err(m) => check(step, false, Finding::RuleMisses(what, m.as_str())),
            }
        };
        t.record(|tr| tr.rules.push(c));
    }
    found
}
