//! The token steps, from the verified-token caches when they can answer: parse, provider,
//! times (cheap, before any crypto), signature (skipped when another worker of the
//! process verified this very token), issuer and audience.

use super::provider::{ineligible, introspector, select_in, Scope};
use super::signature::verify_signature;
use super::Verified;
use crate::algorithm::Algorithm;
use crate::config::Provider;
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::pipeline::{
    outcome, Authenticated, CacheNote, Decision, Inputs, Outcome, RevocationNote,
};
use crate::reply::Denial;
use crate::shared::KeyAvailability;
use crate::token::cache::{CachedToken, SharedVerdict, MAX_CACHED_TOKEN_BYTES};
use crate::token::policy::{check_lifetime, typ_allowed};
use crate::token::{check_claims, check_times, parse, ClaimCondition, IssuerTemplate, TokenSource};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

/// Parses and verifies `token` for a provider in `scope`. A cache hit skips all of that
/// when the entry is unexpired, was verified by the provider [`select_in`] picks for this
/// scope, and its key is still in that provider's set.
pub(super) fn verify_token<'a>(
    inp: &Inputs<'a>,
    scope: Scope,
    token: &'a str,
    source: &TokenSource,
    t: &mut Tracer,
) -> Result<Verified<'a>, Box<Outcome>> {
    let cfg = inp.config;
    // An opaque token (or any, where only introspection judges): its server's answer.
    if let Some(pid) = introspector(cfg, scope, token, source) {
        return super::introspection::introspect(inp, scope, pid, token, t);
    }
    let rule = scope.rule();
    let deny = |d: Denial, note: &'static str| Box::new(outcome(Decision::Deny(d), rule, note));
    let cacheable = inp.cache.is_some() && token.len() <= MAX_CACHED_TOKEN_BYTES;
    if let (true, Some(cache)) = (cacheable, inp.cache) {
        let hit = cache.get(token, inp.now_s).map(|(_, c)| c).filter(|c| {
            let iss = c.claims.get("iss").and_then(Value::as_str);
            select_in(cfg, scope, c.alg, iss, source) == Some(c.provider)
                && c.key.is_none_or(|fp| {
                    inp.keys_of(c.provider)
                        .1
                        .is_some_and(|k| k.has_fingerprint(fp))
                })
        });
        if let Some(c) = hit {
            if let Some(p) = cfg.providers.get(c.provider) {
                t.token(Step::Cache, true, || Finding::Cached(p.name.clone()));
                return Ok(Verified {
                    provider: c.provider,
                    config: p,
                    claims: Rc::clone(&c.claims),
                    // The cached token equals this one: its payload segment is ours.
                    // Only `forward.payload_header` reads it: not searched for otherwise.
                    payload_b64: Cow::Borrowed(if cfg.forward.payload_header.is_some() {
                        token.split('.').nth(1).unwrap_or("")
                    } else {
                        ""
                    }),
                    cache: CacheNote::Hit,
                    revocation: RevocationNote::None,
                    proof: None,
                });
            }
        }
    }

    // Parse: a compact JWS with JSON header and payload.
    let jws = match parse(token, cfg.max_token_bytes) {
        Ok(j) => j,
        Err(e) => {
            t.token(Step::Parse, false, || Finding::Says(e.as_str()));
            return Err(deny(Denial::InvalidToken, e.as_str()));
        }
    };
    t.token(Step::Parse, true, || {
        Finding::Parsed(jws.header.alg.clone(), jws.header.kid.clone())
    });

    // Provider: the one that judges this token on this rule.
    let Some(alg) = Algorithm::from_header(&jws.header.alg) else {
        t.token(Step::Provider, false, || {
            Finding::NoProviderForAlg(jws.header.alg.clone())
        });
        return Err(deny(Denial::InvalidToken, "algorithm not accepted"));
    };
    let iss = jws.claims.get("iss").and_then(|v| v.as_str());
    let chosen = select_in(cfg, scope, alg, iss, source);
    let Some((pid, provider)) = chosen.and_then(|i| cfg.providers.get(i).map(|p| (i, p))) else {
        t.token(Step::Provider, false, || {
            Finding::NoneEligible(ineligible(cfg, scope, alg, iss, source))
        });
        return Err(deny(
            Denial::InvalidToken,
            "no provider accepts this algorithm and issuer",
        ));
    };
    t.token(Step::Provider, true, || {
        Finding::ProviderChosen(provider.name.clone())
    });
    // From here on, a refusal is this provider's (metrics and access logs name it).
    let judged = |mut o: Outcome| {
        o.provider = Some(pid);
        Box::new(o)
    };
    let deny = |d: Denial, note: &'static str| judged(outcome(Decision::Deny(d), rule, note));

    // The access-token type (RFC 9068), when the provider names the accepted ones.
    if !provider.token_types.is_empty() {
        let ok = typ_allowed(jws.header.typ.as_deref(), &provider.token_types);
        t.token(Step::TokenType, ok, || {
            Finding::Typ(jws.header.typ.clone(), provider.token_types.clone())
        });
        if !ok {
            return Err(deny(Denial::InvalidToken, "typ not accepted"));
        }
    }

    // Times first: expired tokens cost no signature work.
    let exp = match check_times(&jws.claims, inp.now_s, cfg.clock_skew_s) {
        Ok(exp) => exp,
        Err(e) => {
            t.token(Step::Times, false, || Finding::Says(e.as_str()));
            return Err(deny(Denial::InvalidToken, e.as_str()));
        }
    };
    t.token(Step::Times, true, || {
        Finding::ExpiresIn(exp - inp.now_s, cfg.clock_skew_s)
    });
    if let Some(max) = provider.max_lifetime_s {
        match check_lifetime(&jws.claims, exp, max, inp.now_s, cfg.clock_skew_s) {
            Ok(lives) => t.token(Step::Lifetime, true, || Finding::Lifetime(lives, max)),
            Err(e) => {
                t.token(Step::Lifetime, false, || {
                    Finding::LifetimeRefused(e.as_str())
                });
                return Err(deny(Denial::InvalidToken, e.as_str()));
            }
        }
    }

    // Signature — unless another worker of the process verified this very token (same
    // digest) under the same provider configuration with a key still in its set.
    let digest = inp.verdicts.map(|v| v.digest(token));
    let shared_hit = match (inp.verdicts, &digest) {
        (Some(verdicts), Some(d)) => verdicts.verdict(d).filter(|v| {
            v.provider == provider.fingerprint
                && v.exp == exp
                && if !alg.is_hmac() {
                    matches!(inp.keys_of(pid), (KeyAvailability::Ready, Some(k)) if k.has_fingerprint(v.key))
                } else {
                    v.key == 0
                }
        }),
        _ => None,
    };
    let key_fingerprint = match shared_hit {
        Some(v) => {
            t.token(Step::Signature, true, || Finding::SharedVerdict);
            (v.key != 0).then_some(v.key)
        }
        None => {
            let verified = verify_signature(
                inp,
                pid,
                (alg, jws.header.kid.as_deref()),
                jws.signing_input.as_bytes(),
                &jws.signature,
            );
            match &verified {
                Ok(_) => t.token(Step::Signature, true, || Finding::Says("valid")),
                Err(stop) if matches!(stop.decision, Decision::Await(_)) => {
                    t.token(Step::Signature, false, || {
                        Finding::SignatureWaits(stop.note)
                    })
                }
                Err(stop) => t.token(Step::Signature, false, || Finding::Says(stop.note)),
            }
            verified.map_err(|stop| judged(outcome(stop.decision, rule, stop.note)))?
        }
    };

    // Issuer and audience; an issuer template's value must be the token's own claim's,
    // and one the provider allows.
    let plain_issuer = provider
        .issuer
        .as_deref()
        .filter(|_| provider.issuer_template.is_none());
    // Audiences that name the request's resource are checked per request, after the
    // caches (`audience`).
    let audiences: &[String] = if provider.audience_resource {
        &[]
    } else {
        &provider.audiences
    };
    let claims_ok = check_claims(
        &jws.claims,
        plain_issuer,
        audiences,
        inp.now_s,
        cfg.clock_skew_s,
    )
    .map_err(|e| e.as_str())
    .and_then(|_| match &provider.issuer_template {
        Some(tpl) => issuer_template_holds(tpl, &jws.claims),
        None => Ok(()),
    });
    t.token(Step::IssuerAudience, claims_ok.is_ok(), || {
        issuer_audience(provider, &jws.claims)
    });
    if let Err(e) = claims_ok {
        return Err(deny(Denial::InvalidToken, e));
    }
    // The provider's claim_values: a token that fails one is not for this API.
    if !conditions_hold(&provider.claim_values, &jws.claims, t, |t, step, ok, f| {
        t.token(step, ok, || f)
    }) {
        return Err(deny(
            Denial::InvalidToken,
            "a claim_values condition failed",
        ));
    }
    let claims = Rc::new(jws.claims);
    let store = cacheable.then(|| {
        (
            token.to_string(),
            CachedToken {
                provider: pid,
                alg,
                claims: Rc::clone(&claims),
                exp,
                key: key_fingerprint,
            },
        )
    });
    let publish = match (shared_hit, digest) {
        (None, Some(digest)) => Some(SharedVerdict {
            digest,
            provider: provider.fingerprint,
            key: key_fingerprint.unwrap_or(0),
            exp,
        }),
        _ => None,
    };
    let cache = CacheNote::Authenticated(Box::new(Authenticated {
        store,
        publish,
        shared_hit: shared_hit.is_some(),
    }));
    Ok(Verified {
        provider: pid,
        config: provider,
        claims,
        payload_b64: Cow::Borrowed(jws.payload_b64),
        cache,
        revocation: RevocationNote::None,
        proof: None,
    })
}

/// Checks `conditions` on `claims` in order, recording each comparison with `record`
/// (a token step, or an identity step for a rule's); `false` at the first that fails.
pub(super) fn conditions_hold(
    conditions: &[ClaimCondition],
    claims: &Map<String, Value>,
    t: &mut Tracer,
    record: impl Fn(&mut Tracer, Step, bool, Finding),
) -> bool {
    for c in conditions {
        let ok = c.holds(claims);
        if t.on() {
            let wanted = Value::from(c.values.clone()).to_string();
            let finding = Finding::ClaimCompared(c.seen(claims), wanted);
            record(
                t,
                Step::ClaimValue(c.claim.as_str().to_string()),
                ok,
                finding,
            );
        }
        if !ok {
            return false;
        }
    }
    true
}

/// An issuer template's check: the value `iss` substitutes must be the token's own
/// placeholder claim (a token of one tenant cannot carry another's `iss`). Its shape and,
/// with `issuer_values`, its being listed were checked when the provider was selected
/// ([`Provider::accepts_issuer`]).
fn issuer_template_holds(
    tpl: &IssuerTemplate,
    claims: &Map<String, Value>,
) -> Result<(), &'static str> {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let value = tpl
        .capture(iss)
        .ok_or("iss does not fit the issuer template")?;
    if claims.get(&tpl.claim).and_then(Value::as_str) != Some(value) {
        return Err("the issuer template's claim differs from the value in iss");
    }
    Ok(())
}

/// What the issuer and audience step compared.
pub(super) fn issuer_audience(provider: &Provider, claims: &Map<String, Value>) -> Finding {
    Finding::IssuerAudience {
        iss: claims
            .get("iss")
            .and_then(Value::as_str)
            .map(str::to_string),
        wanted_iss: provider.issuer.clone(),
        aud: claims.get("aud").map(Value::to_string),
        wanted_aud: provider.audiences.clone(),
    }
}
