//! Steps 3-8: which provider judges a token, its keys and signature, its times, issuer
//! and audience — from the verified-token caches when they can answer.

use super::*;
use crate::config::{BindingMode, OnUnavailable};
use crate::sender::replay::ReplayClaim;
use crate::sender::{
    check_proof, forwarded_cert_hash, request_htu, x5t_s256, ProofContext, ProofError,
};
use crate::token::Credential;
use crate::token::Scheme;

/// Whether `rule` lets provider `i` authenticate (all, unless it names `providers`).
pub(super) fn allowed(rule: Option<&Rule>, i: usize) -> bool {
    rule.and_then(|r| r.providers.as_ref())
        .is_none_or(|ids| ids.contains(&i))
}

/// Where the providers a rule allows take tokens from, each once, in configuration order.
pub fn rule_sources<'c>(cfg: &'c Config, rule: Option<&Rule>) -> Vec<&'c TokenSource> {
    let mut sources: Vec<&TokenSource> = Vec::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        if allowed(rule, i) && !sources.contains(&&p.token) {
            sources.push(&p.token);
        }
    }
    sources
}

/// The provider that judges a token on this rule: the first provider, in configuration
/// order, that the rule allows (all, unless it names `providers`), that takes tokens from
/// where this one came, whose `algorithms`
/// include the token's `alg` and whose `issuer`, if set, equals its `iss`. It alone
/// judges: a token it refuses is refused, whatever another provider would say. A function
/// of the rule and the token only, used on cache hits and misses alike, so a token's fate
/// never depends on the routes it was used on before.
pub fn select_provider(
    cfg: &Config,
    rule: Option<&Rule>,
    alg: Algorithm,
    iss: Option<&str>,
    source: &TokenSource,
) -> Option<usize> {
    select_in(cfg, Scope::Rule(rule), alg, iss, source)
}

/// Which providers may judge a token: those a rule allows, or — for a GraphQL endpoint
/// before its body says which rules apply — those any rule that may judge a field allows.
#[derive(Clone, Copy)]
pub(super) enum Scope<'r> {
    /// The providers of one rule (`None`: no rule, every provider).
    Rule(Option<&'r Rule>),
    /// The providers of any of these rules (and every provider when the default policy
    /// may judge a field).
    AnyOf(&'r [(&'r Rule, Captures)], bool),
}

impl Scope<'_> {
    pub(super) fn allows(&self, i: usize) -> bool {
        match self {
            Scope::Rule(rule) => allowed(*rule, i),
            Scope::AnyOf(rules, default) => {
                *default || rules.iter().any(|(r, _)| allowed(Some(r), i))
            }
        }
    }

    /// The rule outcomes name.
    pub(super) fn rule(&self) -> Option<&Rule> {
        match self {
            Scope::Rule(rule) => *rule,
            Scope::AnyOf(rules, _) => rules.first().map(|(r, _)| *r),
        }
    }
}

pub(super) fn select_in(
    cfg: &Config,
    scope: Scope,
    alg: Algorithm,
    iss: Option<&str>,
    source: &TokenSource,
) -> Option<usize> {
    cfg.providers.iter().enumerate().find_map(|(i, p)| {
        (scope.allows(i)
            && p.token == *source
            && p.algorithms.contains(&alg)
            && p.issuer.as_deref().is_none_or(|want| iss == Some(want)))
        .then_some(i)
    })
}

/// Step 7 for a token whose provider is chosen: the algorithm must be one the provider
/// pins, the key the one its `kid` names (a token without `kid` is tried against at most
/// [`MAX_KIDLESS_TRIES`] keys), the signature valid. `Ok` carries the fingerprint of the
/// RSA key that verified it (`None` for HS256); `Err` the decision and a note: a denial,
/// or a wait for keys (first load, or a refetch for an unknown `kid`).
pub fn verify_signature(
    inp: &Inputs,
    provider: usize,
    alg: Algorithm,
    kid: Option<&str>,
    message: &[u8],
    signature: &[u8],
) -> Result<Option<u64>, (Decision, &'static str)> {
    let deny = |d: Denial, note| Err((Decision::Deny(d), note));
    let Some(p) = inp.config.providers.get(provider) else {
        return deny(Denial::InvalidToken, "no such provider");
    };
    if !p.algorithms.contains(&alg) {
        return deny(Denial::InvalidToken, "algorithm not accepted");
    }
    match !alg.is_hmac() {
        false => {
            let ok = p
                .secret
                .as_ref()
                .is_some_and(|s| verify_hmac(&s.0, alg.hash(), message, signature));
            if ok {
                Ok(None)
            } else {
                deny(Denial::InvalidToken, "bad signature")
            }
        }
        true => {
            let keys = match (inp.keys.availability(provider), inp.keys.keys(provider)) {
                (KeyAvailability::Ready, Some(k)) => k,
                (KeyAvailability::Loading, _) => {
                    return Err((
                        Decision::Await(Wait::Keys {
                            provider,
                            refetch: false,
                        }),
                        "keys loading",
                    ))
                }
                _ => return deny(Denial::Unavailable, "no keys obtainable"),
            };
            if let Some(k) = kid {
                if !keys.has_kid(k) {
                    if inp.keys.may_refetch(provider) {
                        return Err((
                            Decision::Await(Wait::Keys {
                                provider,
                                refetch: true,
                            }),
                            "unknown kid",
                        ));
                    }
                    return deny(Denial::InvalidToken, "unknown kid");
                }
            }
            // Only keys whose JWK `alg` (if any) is this algorithm.
            for key in keys.candidates(kid, alg).take(MAX_KIDLESS_TRIES) {
                match verify_with_key(inp.backend, key, alg, message, signature) {
                    Ok(true) => return Ok(Some(key.fingerprint())),
                    Ok(false) => {}
                    Err(_) => return deny(Denial::Unavailable, "signature backend failed"),
                }
            }
            deny(Denial::InvalidToken, "bad signature")
        }
    }
}

/// Steps 4-8: parse, select the provider, check times, keys and signature, `iss`/`aud`.
/// A cache hit skips all of that when the entry is unexpired, was verified by the provider
/// [`select_provider`] picks for this rule, and its key is still in that provider's set.
fn verify_token<'a>(
    inp: &Inputs<'a>,
    scope: Scope,
    token: &'a str,
    source: &TokenSource,
    t: &mut Tracer,
) -> Result<Verified<'a>, Box<Outcome>> {
    let cfg = inp.config;
    let rule = scope.rule();
    let deny = |d: Denial, note: &'static str| Box::new(outcome(Decision::Deny(d), rule, note));
    let cacheable = inp.cache.is_some() && token.len() <= MAX_CACHED_TOKEN_BYTES;
    if let (true, Some(cache)) = (cacheable, inp.cache) {
        let hit = cache.get(token, inp.now_s).map(|(_, c)| c).filter(|c| {
            let iss = c.claims.get("iss").and_then(Value::as_str);
            select_in(cfg, scope, c.alg, iss, source) == Some(c.provider)
                && c.key.is_none_or(|fp| {
                    inp.keys
                        .keys(c.provider)
                        .is_some_and(|k| k.has_fingerprint(fp))
                })
        });
        if let Some(c) = hit {
            if let Some(p) = cfg.providers.get(c.provider) {
                t.token("cache", true, || {
                    format!("verified earlier by this worker (provider {})", p.name)
                });
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

    // 4. Compact JWS with JSON header and payload.
    let jws = match parse(token, cfg.max_token_bytes) {
        Ok(j) => j,
        Err(e) => {
            t.token("parse", false, || e.as_str().into());
            return Err(deny(Denial::InvalidToken, e.as_str()));
        }
    };
    t.token("parse", true, || {
        let kid = jws.header.kid.as_deref().unwrap_or("(none)");
        format!("alg {}, kid {kid}", jws.header.alg)
    });

    // 5. The provider that judges this token on this rule.
    let Some(alg) = Algorithm::from_header(&jws.header.alg) else {
        t.token("provider", false, || {
            format!("no provider accepts alg {}", jws.header.alg)
        });
        return Err(deny(Denial::InvalidToken, "algorithm not accepted"));
    };
    let iss = jws.claims.get("iss").and_then(|v| v.as_str());
    let chosen = select_in(cfg, scope, alg, iss, source);
    let Some((pid, provider)) = chosen.and_then(|i| cfg.providers.get(i).map(|p| (i, p))) else {
        t.token("provider", false, || {
            let why = ineligible(cfg, scope, alg, iss, source);
            format!("none eligible ({})", why.join("; "))
        });
        return Err(deny(
            Denial::InvalidToken,
            "no provider accepts this algorithm and issuer",
        ));
    };

    t.token("provider", true, || {
        format!(
            "{} (the first eligible provider judges the token)",
            provider.name
        )
    });
    // From here on, a refusal is this provider's (metrics and access logs name it).
    let judged = |mut o: Outcome| {
        o.provider = Some(pid);
        Box::new(o)
    };
    let deny = |d: Denial, note: &'static str| judged(outcome(Decision::Deny(d), rule, note));

    // 6. Times first: expired tokens cost no signature work.
    let exp = match check_times(&jws.claims, inp.now_s, cfg.clock_skew_s) {
        Ok(exp) => exp,
        Err(e) => {
            t.token("times", false, || e.as_str().into());
            return Err(deny(Denial::InvalidToken, e.as_str()));
        }
    };
    t.token("times", true, || {
        let skew = cfg.clock_skew_s;
        format!("exp in {} s (clock skew {skew} s)", exp - inp.now_s)
    });

    // 7. Keys and signature — unless another VM of the process verified this very token
    // (same digest) under the same provider configuration with a key still in its set.
    let digest = inp.verdicts.map(|v| v.digest(token));
    let shared_hit = match (inp.verdicts, &digest) {
        (Some(verdicts), Some(d)) => verdicts.verdict(d).filter(|v| {
            v.provider == provider.fingerprint
                && v.exp == exp
                && if !alg.is_hmac() {
                    inp.keys.availability(pid) == KeyAvailability::Ready
                        && inp.keys.keys(pid).is_some_and(|k| k.has_fingerprint(v.key))
                } else {
                    v.key == 0
                }
        }),
        _ => None,
    };
    let key_fingerprint = match shared_hit {
        Some(v) => {
            t.token("signature", true, || {
                "skipped: another worker of this Envoy verified this token".into()
            });
            (v.key != 0).then_some(v.key)
        }
        None => {
            let verified = verify_signature(
                inp,
                pid,
                alg,
                jws.header.kid.as_deref(),
                jws.signing_input.as_bytes(),
                &jws.signature,
            );
            match &verified {
                Ok(_) => t.token("signature", true, || "valid".into()),
                Err((Decision::Await(_), note)) => {
                    t.token("signature", false, || format!("waits: {note}"))
                }
                Err((_, note)) => t.token("signature", false, || (*note).into()),
            }
            verified.map_err(|(decision, note)| judged(outcome(decision, rule, note)))?
        }
    };

    // 8. Issuer and audience.
    let claims_ok = check_claims(
        &jws.claims,
        provider.issuer.as_deref(),
        &provider.audiences,
        inp.now_s,
        cfg.clock_skew_s,
    );
    t.token("issuer and audience", claims_ok.is_ok(), || {
        issuer_audience(provider, &jws.claims)
    });
    if let Err(e) = claims_ok {
        return Err(deny(Denial::InvalidToken, e.as_str()));
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

/// Steps 4-8, then the provider's `jti` requirement and revocation list, then the
/// token's sender constraint (DPoP proof, client certificate) — on every use of a token,
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
    let mut v = verify_token(inp, scope, cred.token, source, t)?;
    let checked = match revocation(inp, &v, t) {
        Ok(note) => {
            v.revocation = note;
            sender_constraint(inp, req, &v, cred, t)
                .map_err(|(d, why)| (Decision::Deny(d), why, note))
        }
        Err(e) => Err(e),
    };
    match checked {
        Ok(proof) => {
            v.proof = proof;
            Ok(v)
        }
        Err((decision, note, revocation)) => {
            let mut o = outcome(decision, scope.rule(), note);
            o.cache = std::mem::take(&mut v.cache);
            o.provider = Some(v.provider);
            o.subject = subject(&v.claims);
            o.revocation = revocation;
            Err(Box::new(o))
        }
    }
}

/// The token's sender constraint, on every use: a certificate-bound token
/// (`cnf.x5t#S256`) must come over a connection with that client certificate, a
/// DPoP-bound one (`cnf.jkt`) as `Authorization: DPoP` with a valid proof by that key —
/// when its provider accepts such tokens (`mtls_binding`, `dpop`); with `mode: required`
/// every token must be bound so. `Ok` carries the proof's replay entry, for the VM.
fn sender_constraint(
    inp: &Inputs,
    req: &Request,
    v: &Verified,
    cred: Credential,
    t: &mut Tracer,
) -> Result<Option<ReplayClaim>, (Denial, &'static str)> {
    let p = v.config;
    let cnf = v.claims.get("cnf").and_then(Value::as_object);
    let cnf_member = |name: &str| cnf.and_then(|c| c.get(name)).and_then(Value::as_str);
    if let Some(m) = &p.mtls_binding {
        let presented = if m.trust_forwarded_client_cert {
            let values: Vec<&str> = req.header_values("x-forwarded-client-cert").collect();
            match values.as_slice() {
                [one] => forwarded_cert_hash(one).and_then(x5t_s256),
                _ => None,
            }
        } else {
            req.peer_certificate_sha256.as_deref().and_then(x5t_s256)
        };
        let verdict = match (cnf_member("x5t#S256"), presented) {
            (Some(want), Some(have)) if want == have => Ok("the client certificate's hash"),
            (Some(_), Some(_)) => Err("another client certificate than the token's"),
            (Some(_), None) => Err("no client certificate"),
            (None, _) if m.mode == BindingMode::Required => {
                Err("token not certificate-bound (mtls_binding required)")
            }
            (None, _) => Ok("not bound (bearer token accepted)"),
        };
        t.token("certificate binding", verdict.is_ok(), || match verdict {
            Ok(why) | Err(why) => format!("cnf.x5t#S256: {why}"),
        });
        if let Err(why) = verdict {
            return Err((Denial::InvalidToken, why));
        }
    }
    // The scheme the credential came with (only `Authorization` has one).
    let scheme = if p.token == TokenSource::Authorization {
        cred.scheme
    } else {
        Scheme::Bearer
    };
    let jkt = cnf_member("jkt");
    let Some(d) = &p.dpop else {
        if scheme == Scheme::Dpop {
            t.token("dpop", false, || "the provider does not accept DPoP".into());
            return Err((Denial::InvalidToken, "DPoP not accepted by the provider"));
        }
        return Ok(None);
    };
    let refuse = |why: &'static str, t: &mut Tracer| {
        t.token("dpop", false, || why.into());
        Err((Denial::InvalidDpopProof(d.algs.clone()), why))
    };
    let jkt = match (scheme, jkt) {
        (Scheme::Bearer, Some(_)) => return refuse("DPoP-bound token sent as Bearer", t),
        (Scheme::Bearer, None) if d.mode == BindingMode::Required => {
            return refuse("DPoP required: a bearer token", t)
        }
        (Scheme::Bearer, None) => {
            t.token("dpop", true, || {
                "bearer token (dpop allowed, not required)".into()
            });
            return Ok(None);
        }
        (Scheme::Dpop, None) => return refuse("token not DPoP-bound (no cnf.jkt)", t),
        (Scheme::Dpop, Some(jkt)) => jkt,
    };
    let proofs: Vec<&str> = req.header_values("dpop").collect();
    let proof = match proofs.as_slice() {
        [one] => *one,
        [] => return refuse(ProofError::Missing.as_str(), t),
        _ => return refuse(ProofError::Several.as_str(), t),
    };
    let Some(htu) = request_htu(req, d.public_base_url.as_deref()) else {
        return refuse(ProofError::Htu.as_str(), t);
    };
    let ctx = ProofContext {
        method: &req.method,
        htu: &htu,
        token: cred.token,
        jkt,
        now_s: inp.now_s,
        skew_s: inp.config.clock_skew_s,
    };
    match check_proof(proof, d, &ctx, inp.backend) {
        Ok(claim) => {
            t.token("dpop", true, || {
                format!(
                    "proof valid for {} {htu}, key = cnf.jkt (replay checked once per process)",
                    req.method
                )
            });
            Ok(Some(claim))
        }
        Err(ProofError::Backend) => {
            t.token("dpop", false, || ProofError::Backend.as_str().into());
            Err((Denial::Unavailable, ProofError::Backend.as_str()))
        }
        Err(e) => refuse(e.as_str(), t),
    }
}

/// The provider's `require_jti` and its revocation list, for a verified token.
fn revocation(
    inp: &Inputs,
    v: &Verified,
    t: &mut Tracer,
) -> Result<RevocationNote, (Decision, &'static str, RevocationNote)> {
    let p = v.config;
    if p.require_jti {
        let has = v.claims.get("jti").is_some_and(Value::is_string);
        t.token("jti", has, || {
            if has {
                "present (required by the provider)".into()
            } else {
                "missing: the provider requires one".into()
            }
        });
        if !has {
            let d = Decision::Deny(Denial::InvalidToken);
            return Err((d, "no jti", RevocationNote::None));
        }
    }
    let Some((_, source)) = inp.config.revocation_of(v.provider) else {
        return Ok(RevocationNote::None);
    };
    match inp.revocations.revocation(v.provider) {
        (_, Some(list)) => match list.check(&v.claims) {
            Some(why) => {
                t.token("revocation", false, || {
                    format!("revoked: {}", why.describe())
                });
                let d = Decision::Deny(Denial::InvalidToken);
                Err((d, "revoked", RevocationNote::Revoked))
            }
            None => {
                t.token("revocation", true, || {
                    format!("not revoked ({} entries in the list)", list.len())
                });
                Ok(RevocationNote::None)
            }
        },
        (KeyAvailability::Loading, None) => {
            t.token("revocation", false, || "waits: the list is loading".into());
            let d = Decision::Await(Wait::Revocation {
                provider: v.provider,
            });
            Err((d, "revocation list loading", RevocationNote::None))
        }
        _ => match source.on_unavailable {
            OnUnavailable::Deny => {
                t.token("revocation", false, || {
                    "the list was never obtained (on_unavailable: deny)".into()
                });
                let d = Decision::Deny(Denial::Unavailable);
                Err((d, "revocation list unavailable", RevocationNote::None))
            }
            OnUnavailable::Allow => {
                t.token("revocation", true, || {
                    "the list was never obtained: passed unchecked (on_unavailable: allow)".into()
                });
                Ok(RevocationNote::Unchecked)
            }
        },
    }
}

/// Why no provider may judge a token, provider by provider (for the trace).
pub(super) fn ineligible(
    cfg: &Config,
    scope: Scope,
    alg: Algorithm,
    iss: Option<&str>,
    source: &TokenSource,
) -> Vec<String> {
    cfg.providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let reason = if !scope.allows(i) {
                "not allowed on this rule".to_string()
            } else if p.token != *source {
                "takes tokens from elsewhere".to_string()
            } else if !p.algorithms.contains(&alg) {
                "does not accept this alg".to_string()
            } else {
                format!(
                    "issuer differs (token iss {}, wanted {})",
                    iss.unwrap_or("(none)"),
                    p.issuer.as_deref().unwrap_or("(any)")
                )
            };
            format!("{}: {reason}", p.name)
        })
        .collect()
}

/// The issuer and audience step, for the trace.
pub(super) fn issuer_audience(provider: &Provider, claims: &Map<String, Value>) -> String {
    let iss = claims.get("iss").and_then(Value::as_str);
    let iss_detail = match &provider.issuer {
        Some(want) => format!("iss {} (wanted {want})", iss.unwrap_or("(none)")),
        None => "issuer not checked".to_string(),
    };
    let aud_detail = if provider.audiences.is_empty() {
        "audience not checked".to_string()
    } else {
        format!(
            "aud {} (wanted one of {})",
            claims
                .get("aud")
                .map_or("(none)".to_string(), Value::to_string),
            provider.audiences.join(", ")
        )
    };
    format!("{iss_detail}; {aud_detail}")
}
