//! The decision's own record of its steps, for the renderings that need them (`explain`,
//! for people and scripts). [`crate::pipeline::decide_traced`] fills a [`Trace`] as it
//! goes; the filter calls `decide`, which records nothing and formats nothing.

use crate::authz::RequirementCheck;

/// One step: what was checked, whether it passed, in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The step.
    pub step: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// A check.
pub fn check(step: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        step: step.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// Every step one decision took, in order within each part. Never token material: only
/// the token's header fields (`alg`, `kid`) and the claims the decision reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Step 1: each rule, in order, and whether the request matched it.
    pub rules: Vec<Check>,
    /// GraphQL: each root field with the rule that judged it (or why the request could
    /// not be read).
    pub fields: Vec<Check>,
    /// Step 2: the rule's header preconditions.
    pub preconditions: Vec<Check>,
    /// Steps 3-8: credential, parse, provider, times, signature, issuer and audience.
    pub token: Vec<Check>,
    /// Step 9: required claims and the account.
    pub identity: Vec<Check>,
    /// Step 10: the grants the token carries, and where each came from.
    pub grants: Vec<String>,
    /// Step 10: each requirement of the rule with the grant that covers it.
    pub requirements: Vec<RequirementCheck>,
    /// Step 11: the membership check, when the rule has one.
    pub membership: Option<Check>,
}

/// The optional trace a decision writes to: with none, recording costs a branch and the
/// closures that would format a step never run.
pub(crate) struct Tracer<'t>(pub(crate) Option<&'t mut Trace>);

impl Tracer<'_> {
    /// Whether steps are recorded.
    pub(crate) fn on(&self) -> bool {
        self.0.is_some()
    }

    /// Records into the trace, if there is one.
    pub(crate) fn record(&mut self, f: impl FnOnce(&mut Trace)) {
        if let Some(t) = self.0.as_deref_mut() {
            f(t);
        }
    }

    /// Records a token step.
    pub(crate) fn token(&mut self, step: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.record(|t| t.token.push(check(step, ok, detail())));
    }
}
