//! The resource audience step, on every use of a token (from a cache or verified now):
//! a provider whose `audiences` hold `{resource}` accepts an `aud` naming the protected
//! resource the request falls under, and a rule's own `audiences` must be named too. A
//! token issued for another resource — another MCP server — is refused (401).

use super::Verified;
use crate::config::Rule;
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::pipeline::{Inputs, Stop};
use crate::reply::Denial;
use crate::request::Request;
use crate::token::aud_names;

/// Checks the audiences that depend on the request; `rule` is the rule judging it
/// (`None`: no rule, or several that may judge parts of its body, each checked then).
pub(in crate::pipeline) fn check(
    inp: &Inputs,
    req: &Request,
    rule: Option<&Rule>,
    v: &Verified,
    t: &mut Tracer,
) -> Result<(), Stop> {
    let rule_audiences = rule.map(|r| &r.audiences).filter(|a| !a.is_empty());
    if !v.config.audience_resource && rule_audiences.is_none() {
        return Ok(());
    }
    let resource = inp.config.resources.audience_identifier_for(req);
    let resource = resource.as_deref();
    if v.config.audience_resource {
        let ok = aud_names(&v.claims, |a| {
            v.config.audiences.iter().any(|w| w == a) || resource == Some(a)
        });
        t.token(Step::ResourceAudience, ok, || {
            Finding::Says(if ok {
                "aud names this resource or a provider audience"
            } else {
                "aud names neither this resource nor a provider audience"
            })
        });
        if !ok {
            return Err(Stop::deny(
                Denial::InvalidToken,
                "aud does not name this resource",
            ));
        }
    }
    if let Some(wanted) = rule_audiences {
        let ok = wanted.named_by(&v.claims, resource);
        t.token(Step::ResourceAudience, ok, || {
            Finding::Says(if ok {
                "aud names one of the rule's audiences"
            } else {
                "aud names none of the rule's audiences"
            })
        });
        if !ok {
            return Err(Stop::deny(
                Denial::InvalidToken,
                "aud does not name the rule's audiences",
            ));
        }
    }
    Ok(())
}
