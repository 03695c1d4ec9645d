//! The decision pipeline: one linear function from a request to a [`Decision`], its
//! steps one file each under [`steps`], in this order (the names `explain` shows and the
//! documents use):
//!
//! rule → header preconditions → credential → (from a cache, or:) parse → provider →
//! times → signature → issuer and audience → revocation → sender constraint → identity →
//! account → permissions → membership → forward.
//!
//! A GraphQL endpoint judges each root field by its own rule from the header
//! preconditions on ([`graphql`]), an MCP endpoint each JSON-RPC message ([`mcp`]), both
//! through [`parts`]; a decision made of parts follows one rule ([`combine`]). What a decision is lives in [`decision`], what the pipeline may ask of
//! its worker in [`ports`], its record of the steps in [`trace`]. Each later capability
//! adds a step, not a branch.

mod combine;
pub mod decision;
mod graphql;
mod mcp;
mod parts;
pub mod ports;
mod steps;
pub mod trace;

pub(crate) use self::decision::{deny, outcome};
pub use self::decision::{
    Authenticated, CacheNote, Class, Decision, OpaqueToken, Outcome, RevocationNote, Stop, Wait,
    Waited,
};
pub use self::mcp::mcp_list_allowed;
pub use self::ports::{
    sha256_digest, AccountLookup, FixedKeys, FixedRevocations, Inputs, KeyLookup, RevocationLookup,
    VerdictLookup,
};
pub use self::steps::credential::rule_sources;
pub use self::steps::provider::select_provider;
pub use self::steps::signature::verify_signature;

use self::steps::provider::Scope;
use self::steps::{authenticate, authorize, credential, preconditions, rule};
use self::trace::{Trace, Tracer};
use crate::authz::matcher::Captures;
use crate::config::{Authentication, DefaultPolicy, Mode, Rule};
use crate::reply::Denial;
use crate::request::Request;
use serde_json::{Map, Value};

/// Decides what happens to `req`.
pub fn decide(inp: &Inputs, req: &Request) -> Outcome {
    decide_with(inp, req, &mut Tracer(None))
}

/// Decides what happens to `req`, recording every step into `trace` (for `explain`).
pub fn decide_traced(inp: &Inputs, req: &Request, trace: &mut Trace) -> Outcome {
    decide_with(inp, req, &mut Tracer(Some(trace)))
}

fn decide_with(inp: &Inputs, req: &Request, t: &mut Tracer) -> Outcome {
    let mut o = decide_rule(inp, req, t);
    if o.rule.is_none() {
        o.mode = inp.config.mode;
    }
    o
}

/// The `sub` claim as an access log may print it.
pub(crate) fn subject(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

/// The rule step, then the rest for that rule — or, on a GraphQL endpoint, per root
/// field.
fn decide_rule(inp: &Inputs, req: &Request, t: &mut Tracer) -> Outcome {
    let cfg = inp.config;
    let path = match rule::normal_path(req, t) {
        Ok(path) => path,
        Err(o) => return *o,
    };
    let host = if cfg.needs_host {
        req.host()
    } else {
        String::new()
    };
    let matched = rule::first_match(cfg, req, path, &host, t);
    // A GraphQL endpoint: the first rule matching the request judges root fields.
    if matched.as_ref().is_some_and(|(r, _)| r.graphql.is_some()) {
        return graphql::graphql_decision(inp, req, path, &host, t);
    }
    // An MCP endpoint: the first rule matching the request judges messages.
    if matched.as_ref().is_some_and(|(r, _)| r.mcp.is_some()) {
        return mcp::mcp_decision(inp, req, path, &host, t);
    }
    let (rule, captures): (Option<&Rule>, Captures) = match matched {
        Some((r, c)) => (Some(r), c),
        None => (None, Vec::new()),
    };
    decide_for(inp, req, rule, &captures, t)
}

/// Every step after the rule for a request judged by `rule` (`None`: no rule matched, and
/// the default policy applies).
pub(crate) fn decide_for(
    inp: &Inputs,
    req: &Request,
    rule: Option<&Rule>,
    captures: &Captures,
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    if rule.is_none() && cfg.default == DefaultPolicy::Deny {
        return deny(
            Denial::InsufficientPermissions,
            None,
            "no rule matches and the default is deny",
        );
    }
    if let Some(r) = rule.filter(|r| r.public) {
        let mut o = outcome(
            Decision::Allow {
                headers: Vec::new(),
            },
            Some(r),
            "public",
        );
        o.public = true;
        return o;
    }

    // In audit mode the request goes on whatever happens, so the token is still
    // authenticated after a failed precondition: a valid one's identity is forwarded with
    // the would-be denial.
    let audit = rule.map_or(cfg.mode, |r| r.mode) == Mode::Audit;
    let precondition = match preconditions::check_all(req, rule, audit, t) {
        Ok(p) => p,
        Err(o) => return *o,
    };
    // An audited precondition failure and the rest of the decision are two parts of one
    // decision: `combine`'s rule says which answers; a denial keeps the token's identity.
    let first_denial = |o: Outcome| match precondition.clone() {
        Some(mut p) if combine::answering(&[&p, &o]) == Some(0) => {
            p.identity = o.identity;
            p.provider = o.provider;
            p.subject = o.subject;
            p.cache = o.cache;
            p.revocation = o.revocation;
            p.proof = o.proof;
            p
        }
        _ => o,
    };

    // Credential: none at all passes a rule whose authentication is optional, without
    // identity.
    let sources = credential::rule_sources(cfg, rule);
    let optional = rule.is_some_and(|r| r.authentication == Authentication::Optional);
    let found = credential::find(cfg, req, &sources, optional, t);
    let Ok(Some(cred)) = found else {
        if found == Ok(None) && optional {
            let mut o = outcome(
                Decision::Allow {
                    headers: Vec::new(),
                },
                rule,
                "no credential on an optional rule",
            );
            o.anonymous = true;
            return o;
        }
        return first_denial(deny(Denial::MissingToken, rule, "no bearer token"));
    };

    let source = credential::source_of(&sources, &cred);
    let v = match authenticate(inp, req, Scope::Rule(rule), cred, source, t) {
        Ok(v) => v,
        Err(o) => return first_denial(*o),
    };
    let mut o = authorize(inp, req, (rule, captures), &v, t);
    stamp(&mut o, v, source);
    first_denial(o)
}

/// What an outcome records of the token it was decided on: the cache note, the provider,
/// the subject, the revocation note, the proof, and the credential to strip.
fn stamp(o: &mut Outcome, v: steps::Verified, source: &crate::token::TokenSource) {
    o.cache = v.cache;
    o.provider = Some(v.provider);
    o.subject = subject(&v.claims);
    o.revocation = v.revocation;
    o.proof = v.proof;
    if v.config.strip_token {
        o.strip = Some(source.clone());
    }
}
