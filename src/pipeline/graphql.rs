//! A GraphQL endpoint: what the head decides before the body, and each root field of the
//! body judged by its own rule ([`super::parts`]).

use super::parts::{self, before_body, candidates, judge};
use super::trace::{Step, Tracer};
use super::{Inputs, Outcome};
use crate::graphql::{self as gql};
use crate::request::{Body, Request};

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
    let candidates = candidates(cfg, req, (path, host), |r| r.graphql.is_none());
    let first = candidates.first().map(|(r, _)| *r);
    let refuse = |gql::Refusal(detail): gql::Refusal, t: &mut Tracer| {
        parts::unreadable(detail, first, "not a readable GraphQL request", t)
    };
    if let Err(detail) = gql::check_headers(req, limits) {
        return refuse(detail, t);
    }
    let body: &[u8] = match &req.body {
        Body::Read(b) => b,
        Body::TooLarge(_) => return refuse(gql::too_large(limits), t),
        Body::Unread if gql::needs_body(req) => {
            let takes_all = candidates.last().is_some_and(|(r, _)| r.graphql.is_none());
            return before_body(inp, req, &candidates, (takes_all, limits.hold_head), t);
        }
        Body::Unread => &[],
    };
    let fields = match gql::root_fields(req, body, limits) {
        Ok(f) => f,
        Err(detail) => return refuse(detail, t),
    };
    // Each field's rule: an index into `candidates` (`None`: the default policy).
    let judged = fields
        .into_iter()
        .map(|f| {
            let at = candidates
                .iter()
                .position(|(r, _)| r.graphql.as_ref().is_none_or(|g| g.matches(&f)));
            (Step::Field(f.operation.name(), f.name), at)
        })
        .collect();
    judge(
        inp,
        req,
        &candidates,
        judged,
        "GraphQL request selects no field",
        t,
    )
}
