//! The header preconditions step: a rule's required headers (present, UUID, UUIDv7),
//! checked before the token so that clients learn without spending one.

use crate::authz::check_header;
use crate::config::Rule;
use crate::pipeline::trace::{check, Finding, Step, Tracer};
use crate::pipeline::{deny, Outcome};
use crate::reply::Denial;
use crate::request::Request;

/// Checks the rule's preconditions: `Ok(None)` all hold; `Ok(Some(denial))` one failed
/// under an audited rule (the decision goes on, and the denial is one of its parts);
/// `Err(denial)` one failed under an enforced rule: it answers.
pub(in crate::pipeline) fn check_all(
    req: &Request,
    rule: Option<&Rule>,
    audit: bool,
    t: &mut Tracer,
) -> Result<Option<Outcome>, Box<Outcome>> {
    for (lower, display, format) in rule.map_or(&[][..], |r| &r.headers[..]) {
        let checked = check_header(req, lower, display, *format);
        t.record(|tr| {
            let finding = match &checked {
                Ok(()) => Finding::HeaderAsRequired(*format),
                Err(refused) => Finding::HeaderRefused(refused.to_string()),
            };
            tr.preconditions.push(check(
                Step::Precondition(display.clone()),
                checked.is_ok(),
                finding,
            ))
        });
        if let Err(refused) = checked {
            let o = deny(
                Denial::BadRequest(refused.to_string()),
                rule,
                "header precondition",
            );
            return if audit { Ok(Some(o)) } else { Err(Box::new(o)) };
        }
    }
    Ok(None)
}
