//! The membership step: the rule's domain constraint — a request value (query parameter,
//! header or path segment) must be one of a claim's values.

use super::Verified;
use crate::authz::matcher::Captures;
use crate::authz::Refused;
use crate::config::Rule;
use crate::pipeline::trace::{check, Finding, Step, Tracer};
use crate::request::Request;

/// `Err` names the claim the request value is not in.
pub(super) fn check_membership(
    req: &Request,
    (rule, captures): (&Rule, &Captures),
    v: &Verified,
    t: &mut Tracer,
) -> Result<(), Refused> {
    let Some(m) = &rule.member_of else {
        return Ok(());
    };
    let holds = m.holds(&v.claims, req, captures);
    t.record(|tr| {
        let finding = Finding::Member(m.source.read(req, captures), holds, m.claim.to_string());
        tr.membership = Some(check(Step::Membership, holds, finding));
    });
    if holds {
        Ok(())
    } else {
        Err(Refused::Membership(m.claim.to_string()))
    }
}
