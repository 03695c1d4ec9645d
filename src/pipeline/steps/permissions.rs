//! The permissions step: the rule's requirements against what the token grants — its
//! permissions, its roles through the role table, its OAuth scopes.

use super::Verified;
use crate::authz::matcher::Captures;
use crate::authz::{GrantSource, Grants, Refused};
use crate::config::Rule;
use crate::pipeline::trace::{GrantFound, GrantFrom, Tracer};
use crate::pipeline::Inputs;
use crate::request::Request;

/// `Err` names the first requirement no grant covers.
pub(super) fn check(
    inp: &Inputs,
    req: &Request,
    (rule, captures): (&Rule, &Captures),
    v: &Verified,
    t: &mut Tracer,
) -> Result<(), Refused> {
    if rule.requirement.is_empty() && !t.on() {
        return Ok(());
    }
    let grants = Grants::from_claims(&v.claims, &v.config.claims, &inp.config.roles);
    t.record(|tr| {
        tr.grants = grants.items().iter().map(grant_found).collect();
        tr.requirements = rule.requirement.explain(&grants, req, captures);
    });
    rule.requirement.check(&grants, req, captures)
}

/// The scopes the rule requires, space-separated, for the `insufficient_scope`
/// challenge: every `all_of` and the first `any_of`, rendered from the request. `None`
/// when one cannot be rendered or is not an RFC 6750 scope token (`%x21 / %x23-5B /
/// %x5D-7E`): no scope is better than one that would still not do.
pub(super) fn scope(req: &Request, (rule, captures): (&Rule, &Captures)) -> Option<String> {
    let r = &rule.requirement;
    let mut scopes: Vec<String> = Vec::new();
    for t in r.all_of.iter().chain(r.any_of.first()) {
        let s = t.render(req, captures)?;
        let token = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !token {
            return None;
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// A grant and where it came from, for the trace.
fn grant_found((g, source): &(&str, GrantSource)) -> GrantFound {
    GrantFound {
        grant: g.to_string(),
        from: match source {
            GrantSource::Permission => GrantFrom::Permission,
            GrantSource::Scope => GrantFrom::Scope,
            GrantSource::Role(r) => GrantFrom::Role(r.to_string()),
        },
    }
}
