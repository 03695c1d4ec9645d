//! The step-up step (RFC 9470): the rule's `acr_values` and `max_age_s` against the
//! token's `acr` and `auth_time`, after the identity steps and before permissions.

use super::Verified;
use crate::config::Rule;
use crate::pipeline::trace::{check, Finding, Step, Tracer};
use crate::pipeline::Inputs;
use crate::reply::Denial;
use crate::token::numeric_date;
use serde_json::Value;

/// `Err`: the denial and the note for the log.
pub(super) fn check_step_up(
    inp: &Inputs,
    rule: &Rule,
    v: &Verified,
    t: &mut Tracer,
) -> Result<(), (Denial, String)> {
    let Some(step_up) = &rule.step_up else {
        return Ok(());
    };
    let result = step_up.check(&v.claims, inp.now_s, inp.config.clock_skew_s);
    t.record(|tr| {
        let acr = v
            .claims
            .get("acr")
            .and_then(Value::as_str)
            .map(str::to_string);
        let age = v
            .claims
            .get("auth_time")
            .and_then(numeric_date)
            .map(|at| inp.now_s.saturating_sub(at));
        tr.identity.push(check(
            Step::SignIn,
            result.is_ok(),
            Finding::SignIn(acr, age),
        ));
    });
    result.map_err(|weak| (Denial::StepUp(step_up.challenge(weak)), weak.to_string()))
}
