//! The steps of a decision, one file each, named as `explain` names them. The order is
//! the pipeline's ([`super`]): rule, header preconditions, credential, then — from a
//! cache when one can answer — parse, provider, times, signature, issuer and audience;
//! then on every use of the token revocation and sender constraint; then identity,
//! account, step-up, permissions, membership and forward.

pub(super) mod account;
pub(super) mod audience;
pub(super) mod credential;
pub(super) mod identity;
pub(super) mod introspection;
pub(super) mod membership;
pub(super) mod permissions;
pub(super) mod preconditions;
pub(super) mod provider;
pub(super) mod revocation;
pub(super) mod rule;
pub(super) mod sender;
pub(super) mod signature;
pub(super) mod step_up;
pub(super) mod token;

use self::provider::Scope;
use super::trace::Tracer;
use super::{deny, outcome, subject, CacheNote, Decision, Inputs, Outcome, RevocationNote};
use crate::authz::matcher::Captures;
use crate::config::{Provider, Rule};
use crate::reply::Denial;
use crate::request::Request;
use crate::sender::ReplayClaim;
use crate::token::{Credential, TokenSource};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

/// An authenticated token: its provider, claims, and what the caches and metrics need.
pub(super) struct Verified<'a> {
    pub(super) provider: usize,
    pub(super) config: &'a Provider,
    pub(super) claims: Rc<Map<String, Value>>,
    pub(super) payload_b64: Cow<'a, str>,
    pub(super) cache: CacheNote,
    pub(super) revocation: RevocationNote,
    pub(super) proof: Option<ReplayClaim>,
}

/// The token steps, then revocation and sender constraint — on every use of a token,
/// from a cache or verified now: a token revoked after it was cached is refused all the
/// same, and each request proves possession anew. A refused token stays in the caches
/// (its signature was valid); the list is asked again at its next use.
pub(super) fn authenticate<'a>(
    inp: &Inputs<'a>,
    req: &Request,
    scope: Scope,
    cred: Credential<'a>,
    source: &TokenSource,
    t: &mut Tracer,
) -> Result<Verified<'a>, Box<Outcome>> {
    let mut v = token::verify_token(inp, scope, cred.token, source, t)?;
    let checked = audience::check(inp, req, scope.rule_only(), &v, t)
        .and_then(|()| revocation::check(inp, &v, t))
        .and_then(|note| {
            v.revocation = note;
            sender::check(inp, req, &v, cred, t).map_err(|mut stop| {
                stop.revocation = note;
                stop
            })
        });
    match checked {
        Ok(proof) => {
            v.proof = proof;
            Ok(v)
        }
        Err(stop) => {
            let mut o = outcome(stop.decision, scope.rule(), stop.note);
            o.cache = std::mem::take(&mut v.cache);
            o.provider = Some(v.provider);
            o.subject = subject(&v.claims);
            o.revocation = stop.revocation;
            Err(Box::new(o))
        }
    }
}

/// Identity, account, permissions, membership and forward, for an authenticated token
/// (`rule` `None`: the identity steps only, as for a request no rule matched).
pub(super) fn authorize(
    inp: &Inputs,
    req: &Request,
    (rule, captures): (Option<&Rule>, &Captures),
    v: &Verified,
    t: &mut Tracer,
) -> Outcome {
    if let Err(refused) = identity::required_claims(v, t) {
        return deny(Denial::UnknownAccount, rule, refused.to_string());
    }
    let account_headers = match account::resolve(inp, rule, v, t) {
        Ok(headers) => headers,
        Err(o) => return *o,
    };
    // The identity headers: audit mode forwards them even when the steps below deny.
    let identity = match identity::headers(inp, v) {
        Ok(mut headers) => {
            headers.extend(account_headers);
            headers
        }
        Err(refused) => return deny(Denial::UnknownAccount, rule, refused.to_string()),
    };
    let denied = |d: Denial, note: String| {
        let mut o = deny(d, rule, note);
        o.identity = identity.clone();
        o
    };
    if let Some(r) = rule {
        if let Err((denial, note)) = step_up::check_step_up(inp, r, v, t) {
            return denied(denial, note);
        }
        let record = |t: &mut Tracer, step, ok, finding| {
            t.record(|tr| {
                tr.identity
                    .push(crate::pipeline::trace::check(step, ok, finding))
            })
        };
        if !token::conditions_hold(&r.claim_values, &v.claims, t, record) {
            return denied(
                Denial::InsufficientPermissions,
                "a rule's claim_values condition failed".to_string(),
            );
        }
        if let Err(refused) = permissions::check(inp, req, (r, captures), v, t) {
            let mut o = denied(Denial::InsufficientPermissions, refused.to_string());
            o.scope = permissions::scope(req, (r, captures));
            return o;
        }
        if let Err(refused) = membership::check_membership(req, (r, captures), v, t) {
            return denied(Denial::PermissionDenied, refused.to_string());
        }
    }
    // Forward.
    let mut o = outcome(
        Decision::Allow {
            headers: identity.clone(),
        },
        rule,
        "verified",
    );
    o.identity = identity;
    o
}
