//! The introspection step: a token an introspection provider judges (see
//! [`introspector`](super::provider::introspector)) is valid when its authorization
//! server says it is active. The answer comes from this worker's cache, or the process's
//! (another worker asked), or the request waits for the one call the process makes; its
//! members are the token's claims for every later step.

use super::provider::Scope;
use super::token::conditions_hold;
use super::Verified;
use crate::introspection::Known;
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::pipeline::{
    outcome, CacheNote, Decision, Inputs, OpaqueToken, Outcome, RevocationNote, Wait,
};
use crate::reply::Denial;
use crate::token::{check_issuer_audience, check_nbf, check_times};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

/// The lookup key of `token` at provider `pid`'s endpoint: the endpoint's fingerprint and
/// the token's keyed digest (never the token).
fn key(inp: &Inputs, fingerprint: u64, token: &str) -> String {
    use std::fmt::Write as _;
    let mut key = format!("i{fingerprint:016x}:");
    for b in inp.accounts.token_digest(token) {
        let _ = write!(key, "{b:02x}");
    }
    key
}

/// Judges `token` by provider `pid`'s introspection answer.
pub(super) fn introspect<'a>(
    inp: &Inputs<'a>,
    scope: Scope,
    pid: usize,
    token: &str,
    t: &mut Tracer,
) -> Result<Verified<'a>, Box<Outcome>> {
    let cfg = inp.config;
    let rule = scope.rule();
    let judged = |d: Decision, note: &'static str| {
        let mut o = outcome(d, rule, note);
        o.provider = Some(pid);
        Box::new(o)
    };
    let deny = |d: Denial, note: &'static str| judged(Decision::Deny(d), note);
    let Some((provider, src)) = cfg
        .providers
        .get(pid)
        .and_then(|p| p.introspection.as_ref().map(|i| (p, i)))
    else {
        return Err(deny(Denial::InvalidToken, "no provider judges this token"));
    };
    t.token(Step::Provider, true, || {
        Finding::ProviderChosen(provider.name.clone())
    });
    // A token larger than any the filter accepts is never sent.
    if token.len() > cfg.max_token_bytes {
        t.token(Step::Introspection, false, || {
            Finding::Says("token too large")
        });
        return Err(deny(Denial::InvalidToken, "token too large"));
    }
    let key = key(inp, src.fingerprint, token);
    let shared = match inp.accounts.introspected(pid, &key) {
        Known::Active(claims) => claims,
        Known::Inactive => {
            t.token(Step::Introspection, false, || Finding::Says("not active"));
            return Err(deny(Denial::InvalidToken, "token not active"));
        }
        Known::Unknown if inp.accounts.may_wait_introspection(pid, &key) => {
            t.token(Step::Introspection, false, || {
                Finding::Says("asks the authorization server")
            });
            let wait = Wait::Introspection {
                provider: pid,
                key,
                token: OpaqueToken(token.to_string()),
            };
            return Err(judged(Decision::Await(wait), "token introspection"));
        }
        Known::Unknown => {
            t.token(Step::Introspection, false, || {
                Finding::Says("the authorization server did not answer")
            });
            return Err(deny(Denial::Unavailable, "token introspection failed"));
        }
    };
    t.token(Step::Introspection, true, || Finding::Says("active"));
    let claims: &Map<String, Value> = &shared;
    // An answer kept since may have expired; `exp` is optional in an answer, `nbf` is
    // checked either way.
    let times = if claims.contains_key("exp") {
        check_times(claims, inp.now_s, cfg.clock_skew_s).map(|_| ())
    } else {
        check_nbf(claims, inp.now_s, cfg.clock_skew_s)
    };
    if let Err(e) = times {
        t.token(Step::Times, false, || Finding::Says(e.as_str()));
        return Err(deny(Denial::InvalidToken, e.as_str()));
    }
    let audiences: &[String] = if provider.audience_resource {
        &[]
    } else {
        &provider.audiences
    };
    let checked = check_issuer_audience(claims, provider.issuer.as_deref(), audiences);
    t.token(Step::IssuerAudience, checked.is_ok(), || {
        super::token::issuer_audience(provider, claims)
    });
    if let Err(e) = checked {
        return Err(deny(Denial::InvalidToken, e.as_str()));
    }
    if !conditions_hold(&provider.claim_values, claims, t, |t, step, ok, f| {
        t.token(step, ok, || f)
    }) {
        return Err(deny(
            Denial::InvalidToken,
            "a claim_values condition failed",
        ));
    }
    Ok(Verified {
        provider: pid,
        config: provider,
        claims: Rc::clone(&shared),
        payload_b64: Cow::Owned(payload(cfg.forward.payload_header.is_some(), claims)),
        cache: CacheNote::None,
        revocation: RevocationNote::None,
        proof: None,
    })
}

/// What `forward.payload_header` carries for an introspected token: its answer as
/// base64url JSON, the shape a JWT payload has (empty when nothing forwards it).
fn payload(forwarded: bool, claims: &Map<String, Value>) -> String {
    use base64::Engine;
    if !forwarded {
        return String::new();
    }
    let json = serde_json::to_vec(claims).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}
