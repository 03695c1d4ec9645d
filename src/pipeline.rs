//! The decision pipeline: one linear function from a request to a [`Decision`].
//!
//! The step numbers are those of the README's "How a request is decided": match the rule,
//! check header preconditions, extract the token, parse it, select the provider, check
//! times (cheap, before any crypto), keys and signature, `iss`/`aud`, identity and
//! account, permissions, membership, and the identity headers. Each later capability adds
//! a step, not a branch.

use crate::account::AccountState;
use crate::authorizer::{check_header, GrantSource, Grants};
use crate::config::Provider;
use crate::config::{Authentication, Config, DefaultPolicy, Mode, Rule};
use crate::credential::{credential, TokenSource};
use crate::crypto::Algorithm;
use crate::graphql::{self, RootField};
use crate::jwks::{Key, KeyAvailability, KeySet};
use crate::reply::Denial;
use crate::request::{is_normalized, Body, Request};
use crate::token::parse;
use crate::token_cache::{
    token_digest, CachedToken, SharedVerdict, TokenCache, MAX_CACHED_TOKEN_BYTES,
};
use crate::trace::{check, Trace, Tracer};
use crate::verifier::{
    check_claims, check_times, rsassa_pss, verify_ed25519, verify_hmac, SignatureBackend,
};
use crate::{identity, matcher::Captures};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

/// Tokens without `kid` are tried against at most this many keys (bounds the RSA work
/// one request can cause).
pub const MAX_KIDLESS_TRIES: usize = 4;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Continue upstream with these identity headers set.
    Allow {
        /// Headers to add (client copies of every filter-owned header are already gone).
        headers: Vec<(String, String)>,
    },
    /// Answer locally.
    Deny(Denial),
    /// Pause until the provider's keys arrive, then decide again.
    AwaitKeys {
        /// Provider index.
        provider: usize,
        /// `true` when an unknown `kid` asks for a refetch, `false` for the first load.
        refetch: bool,
    },
    /// A GraphQL request whose root fields are in its body: the headers go on with these
    /// identity headers, the body is held until it is complete, then decided with it.
    ReadBody {
        /// The token's identity headers (empty without a credential).
        headers: Vec<(String, String)>,
    },
    /// Pause until the account service answers for this identity, then decide again.
    AwaitAccount {
        /// Provider index.
        provider: usize,
        /// Lookup key (the account service's fingerprint and the path).
        key: String,
        /// The path to call.
        path: String,
    },
}

/// A decision with what the logs and metrics need to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// Index of the matched rule (`None`: no rule matched); see [`Config::rule_name`].
    pub rule: Option<usize>,
    /// Whether a public rule let the request through.
    pub public: bool,
    /// Whether an optional-authentication rule let a request without credential through.
    pub anonymous: bool,
    /// Enforce the decision, or only report it (the rule's mode, else the configuration's).
    pub mode: Mode,
    /// The identity headers of the authenticated token, also when authorization denied
    /// the request (audit mode forwards them).
    pub identity: Vec<(String, String)>,
    /// The provider that authenticated the token.
    pub provider: Option<usize>,
    /// The token's `sub`, for access logs (only printable ASCII, at most 256 bytes).
    pub subject: Option<String>,
    /// The credential to remove before the upstream (its provider's `token.strip`).
    pub strip: Option<TokenSource>,
    /// Why, in a few words (never token material).
    pub note: Cow<'static, str>,
    /// What to do with the verified-token cache.
    pub cache: CacheNote,
}

/// What the pipeline may ask about key sets.
pub trait KeyLookup {
    /// Availability of a provider's keys now.
    fn availability(&self, provider: usize) -> KeyAvailability;
    /// The provider's keys, if loaded.
    fn keys(&self, provider: usize) -> Option<&KeySet>;
    /// Whether an unknown `kid` may trigger a refetch for this request now.
    fn may_refetch(&self, provider: usize) -> bool;
}

/// What the pipeline may ask about account lookups.
pub trait AccountLookup {
    /// The cached result for `key` of `provider`.
    fn account(&self, provider: usize, key: &str) -> AccountState<'_>;
    /// Whether this request may pause for a lookup.
    fn may_wait(&self) -> bool;
}

/// A fixed, always-ready key set with no refetching and no account service: for hosts
/// that load keys once, and for tests, conformance runs and fuzzing.
pub struct FixedKeys(pub KeySet);

impl KeyLookup for FixedKeys {
    fn availability(&self, _provider: usize) -> KeyAvailability {
        KeyAvailability::Ready
    }
    fn keys(&self, _provider: usize) -> Option<&KeySet> {
        Some(&self.0)
    }
    fn may_refetch(&self, _provider: usize) -> bool {
        false
    }
}

impl AccountLookup for FixedKeys {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self) -> bool {
        false
    }
}

/// Everything the pipeline needs besides the request.
pub struct Inputs<'a> {
    /// Compiled configuration.
    pub config: &'a Config,
    /// Key sets.
    pub keys: &'a dyn KeyLookup,
    /// Account lookups.
    pub accounts: &'a dyn AccountLookup,
    /// RSA signature backend.
    pub backend: &'a dyn SignatureBackend,
    /// Verified-token cache (`None` when disabled).
    pub cache: Option<&'a TokenCache>,
    /// The process-wide verified-token level (`None` when disabled).
    pub verdicts: Option<&'a dyn VerdictLookup>,
    /// Current time, seconds since the epoch.
    pub now_s: i64,
}

/// No account service: every lookup is unknown and no request waits.
struct NoAccounts;

impl AccountLookup for NoAccounts {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self) -> bool {
        false
    }
}

impl<'a> Inputs<'a> {
    /// Inputs with these keys, no account service, no caches.
    pub fn new(
        config: &'a Config,
        keys: &'a dyn KeyLookup,
        backend: &'a dyn SignatureBackend,
        now_s: i64,
    ) -> Inputs<'a> {
        Inputs {
            config,
            keys,
            accounts: &NoAccounts,
            backend,
            cache: None,
            verdicts: None,
            now_s,
        }
    }

    /// With this account service.
    pub fn accounts(self, accounts: &'a dyn AccountLookup) -> Inputs<'a> {
        Inputs { accounts, ..self }
    }

    /// With this VM's verified-token cache.
    pub fn cache(self, cache: &'a TokenCache) -> Inputs<'a> {
        Inputs {
            cache: Some(cache),
            ..self
        }
    }

    /// With the process-wide verified-token level.
    pub fn verdicts(self, verdicts: &'a dyn VerdictLookup) -> Inputs<'a> {
        Inputs {
            verdicts: Some(verdicts),
            ..self
        }
    }
}

fn deny(d: Denial, rule: Option<&Rule>, note: impl Into<Cow<'static, str>>) -> Outcome {
    outcome(Decision::Deny(d), rule, note)
}

fn outcome(decision: Decision, rule: Option<&Rule>, note: impl Into<Cow<'static, str>>) -> Outcome {
    Outcome {
        decision,
        rule: rule.map(|r| r.index),
        public: false,
        anonymous: false,
        mode: rule.map_or(Mode::Enforce, |r| r.mode),
        identity: Vec::new(),
        provider: None,
        subject: None,
        strip: None,
        note: note.into(),
        cache: CacheNote::None,
    }
}

/// What the glue should do with the verified-token caches after a decision.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CacheNote {
    /// Nothing (no token authenticated).
    #[default]
    None,
    /// The token came from this VM's cache.
    Hit,
    /// The token was authenticated now.
    Authenticated(Box<Authenticated>),
}

/// A token authenticated by this decision: what to keep of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    /// For this VM's cache: the token and what was verified (`None`: not cacheable).
    pub store: Option<(String, CachedToken)>,
    /// For the process-wide level: the verdict to publish (`None` when it came from
    /// there, or that level is off).
    pub publish: Option<SharedVerdict>,
    /// Whether the signature check was skipped for another VM's verdict.
    pub shared_hit: bool,
}

/// What the pipeline may ask of the process-wide verified-token level.
pub trait VerdictLookup {
    /// The verdict published for the token with this SHA-256, if any.
    fn verdict(&self, digest: &[u8; 32]) -> Option<SharedVerdict>;
}

/// An authenticated token.
struct Verified<'a> {
    provider: usize,
    config: &'a Provider,
    claims: Rc<Map<String, Value>>,
    payload_b64: Cow<'a, str>,
    cache: CacheNote,
}

/// Whether `rule` lets provider `i` authenticate (all, unless it names `providers`).
fn allowed(rule: Option<&Rule>, i: usize) -> bool {
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
enum Scope<'r> {
    /// The providers of one rule (`None`: no rule, every provider).
    Rule(Option<&'r Rule>),
    /// The providers of any of these rules (and every provider when the default policy
    /// may judge a field).
    AnyOf(&'r [(&'r Rule, Captures)], bool),
}

impl Scope<'_> {
    fn allows(&self, i: usize) -> bool {
        match self {
            Scope::Rule(rule) => allowed(*rule, i),
            Scope::AnyOf(rules, default) => {
                *default || rules.iter().any(|(r, _)| allowed(Some(r), i))
            }
        }
    }

    /// The rule outcomes name.
    fn rule(&self) -> Option<&Rule> {
        match self {
            Scope::Rule(rule) => *rule,
            Scope::AnyOf(rules, _) => rules.first().map(|(r, _)| *r),
        }
    }
}

fn select_in(
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
                        Decision::AwaitKeys {
                            provider,
                            refetch: false,
                        },
                        "keys loading",
                    ))
                }
                _ => return deny(Denial::Unavailable, "no keys obtainable"),
            };
            if let Some(k) = kid {
                if !keys.has_kid(k) {
                    if inp.keys.may_refetch(provider) {
                        return Err((
                            Decision::AwaitKeys {
                                provider,
                                refetch: true,
                            },
                            "unknown kid",
                        ));
                    }
                    return deny(Denial::InvalidToken, "unknown kid");
                }
            }
            // Only keys whose JWK `alg` (if any) is this algorithm.
            for key in keys.candidates(kid, alg).take(MAX_KIDLESS_TRIES) {
                let verdict = match key {
                    // Envoy's verify_signature only does PKCS#1 v1.5: PSS is pure Rust.
                    Key::Rsa(k) if alg.is_pss() => {
                        Ok(rsassa_pss(&k.public, alg.hash(), message, signature))
                    }
                    Key::Rsa(k) => inp.backend.verify_rsa(k, alg.hash(), message, signature),
                    Key::Ec(k) => inp.backend.verify_ecdsa(k, alg.hash(), message, signature),
                    // Envoy's verify_signature cannot do Ed25519: pure Rust on every host.
                    Key::Okp(k) => Ok(verify_ed25519(k, message, signature)),
                };
                match verdict {
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
fn authenticate<'a>(
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
                    payload_b64: Cow::Borrowed(token.split('.').nth(1).unwrap_or("")),
                    cache: CacheNote::Hit,
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
    let digest = inp.verdicts.map(|_| token_digest(token));
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
                Err((Decision::AwaitKeys { .. }, note)) => {
                    t.token("signature", false, || format!("waits: {note}"))
                }
                Err((_, note)) => t.token("signature", false, || (*note).into()),
            }
            verified.map_err(|(decision, note)| Box::new(outcome(decision, rule, note)))?
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
    })
}

/// Decides what happens to `req`.
pub fn decide(inp: &Inputs, req: &Request) -> Outcome {
    decide_with(inp, req, &mut Tracer(None))
}

/// Decides what happens to `req`, recording every step into `trace` (for `explain`).
pub fn decide_traced(inp: &Inputs, req: &Request, trace: &mut Trace) -> Outcome {
    decide_with(inp, req, &mut Tracer(Some(trace)))
}

fn decide_with(inp: &Inputs, req: &Request, t: &mut Tracer) -> Outcome {
    let mut o = decide_rule(inp, req, t);
    if o.rule.is_none() {
        o.mode = inp.config.mode;
    }
    o
}

/// The `sub` claim as an access log may print it.
fn subject(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

fn decide_rule(inp: &Inputs, req: &Request, t: &mut Tracer) -> Outcome {
    let cfg = inp.config;

    // 1. Rule. Only paths in normal form are matched, so `..` tricks cannot borrow a rule.
    let path = req.path_only();
    if !is_normalized(path) {
        t.record(|tr| {
            tr.rules.push(check(
                "path",
                false,
                "not in normal form: no rule is matched",
            ))
        });
        return deny(
            Denial::BadRequest("Request path is not normalized".into()),
            None,
            "path not normalized",
        );
    }
    let host = if cfg.needs_host {
        req.host()
    } else {
        String::new()
    };
    let matched = if t.on() {
        match_traced(cfg, req, path, &host, t)
    } else {
        cfg.rules
            .iter()
            .find_map(|r| r.matcher.matches(req, path, &host).map(|c| (r, c)))
    };
    // A GraphQL endpoint: the first rule matching the request judges root fields.
    if matched.as_ref().is_some_and(|(r, _)| r.graphql.is_some()) {
        return graphql_decision(inp, req, path, &host, t);
    }
    let (rule, captures): (Option<&Rule>, Captures) = match matched {
        Some((r, c)) => (Some(r), c),
        None => (None, Vec::new()),
    };
    decide_for(inp, req, rule, &captures, t)
}

/// Steps 1 (the policy for no rule, public rules) to 12 for a request judged by `rule`
/// (`None`: no rule matched).
fn decide_for(
    inp: &Inputs,
    req: &Request,
    rule: Option<&Rule>,
    captures: &Captures,
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    if rule.is_none() && cfg.default == DefaultPolicy::Deny {
        return deny(
            Denial::InsufficientPermissions,
            None,
            "no rule matches and the default is deny",
        );
    }
    if let Some(r) = rule.filter(|r| r.public) {
        let mut o = outcome(
            Decision::Allow {
                headers: Vec::new(),
            },
            Some(r),
            "public",
        );
        o.public = true;
        return o;
    }

    // 2. Header preconditions, before the token so clients learn without spending one.
    // In audit mode the request goes on whatever happens, so the token is still
    // authenticated: a valid one's identity is forwarded with the would-be denial.
    let audit = rule.map_or(cfg.mode, |r| r.mode) == Mode::Audit;
    let mut precondition = None;
    for (lower, display, format) in rule.map_or(&[][..], |r| &r.headers[..]) {
        let checked = check_header(req, lower, display, *format);
        t.record(|tr| {
            let detail = match &checked {
                Ok(()) => format!("{format:?}: as required"),
                Err(detail) => detail.clone(),
            };
            tr.preconditions
                .push(check(display, checked.is_ok(), detail))
        });
        if let Err(detail) = checked {
            let o = deny(Denial::BadRequest(detail), rule, "header precondition");
            if !audit {
                return o;
            }
            precondition = Some(o);
            break;
        }
    }
    let first_denial = |o: Outcome| match precondition.clone() {
        Some(mut p)
            if !matches!(
                o.decision,
                Decision::AwaitKeys { .. } | Decision::AwaitAccount { .. }
            ) =>
        {
            p.identity = o.identity;
            p.provider = o.provider;
            p.subject = o.subject;
            p.cache = o.cache;
            p
        }
        _ => o,
    };

    // 3. Exactly one credential, from the sources of the providers the rule allows
    // (`Authorization: Bearer` unless a provider says otherwise); none at all passes a rule
    // whose authentication is optional, without identity.
    let sources = rule_sources(cfg, rule);
    let found = credential(req, &sources);
    let optional = rule.is_some_and(|r| r.authentication == Authentication::Optional);
    t.token(
        "credential",
        found == Ok(None) && optional || matches!(found, Ok(Some(_))),
        || {
            let wanted: Vec<String> = sources.iter().map(|s| s.describe()).collect();
            match &found {
                Ok(Some((i, _))) => format!(
                    "one token, from {}",
                    sources.get(*i).map_or(String::new(), |s| s.describe())
                ),
                Ok(None) if optional => "none sent; the rule's authentication is optional".into(),
                Ok(None) => format!("none sent (looked in: {})", wanted.join(", ")),
                Err(_) => format!(
                    "not exactly one credential (looked in: {})",
                    wanted.join(", ")
                ),
            }
        },
    );
    let Ok(Some((which, token))) = found else {
        if found == Ok(None) && optional {
            let mut o = outcome(
                Decision::Allow {
                    headers: Vec::new(),
                },
                rule,
                "no credential on an optional rule",
            );
            o.anonymous = true;
            return o;
        }
        return first_denial(deny(Denial::MissingToken, rule, "no bearer token"));
    };

    // 4-8. Authenticate (from the verified-token cache when possible).
    let source = sources
        .get(which)
        .copied()
        .unwrap_or(&TokenSource::Authorization);
    let mut v = match authenticate(inp, Scope::Rule(rule), token, source, t) {
        Ok(v) => v,
        Err(o) => return first_denial(*o),
    };
    let cache = std::mem::replace(&mut v.cache, CacheNote::None);
    let mut o = authorize(inp, req, rule, captures, &v, t);
    o.cache = cache;
    o.provider = Some(v.provider);
    o.subject = subject(&v.claims);
    if v.config.strip_token {
        o.strip = Some(source.clone());
    }
    first_denial(o)
}

/// Steps 9-12 for an authenticated token: identity, account, permissions, membership,
/// identity headers.
fn authorize(
    inp: &Inputs,
    req: &Request,
    rule: Option<&Rule>,
    captures: &Captures,
    v: &Verified,
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let (pid, provider, claims) = (v.provider, v.config, &*v.claims);

    // 9. Identity: required claims.
    let missing = identity::missing_claim(claims, &provider.required_claims);
    if !provider.required_claims.is_empty() {
        t.record(|tr| {
            let detail = match missing {
                Some(c) => format!("claim {c} missing"),
                None => format!("present: {}", provider.required_claims.join(", ")),
            };
            tr.identity
                .push(check("required claims", missing.is_none(), detail))
        });
    }
    if let Some(claim) = missing {
        return deny(
            Denial::UnknownAccount,
            rule,
            format!("required claim {claim} missing"),
        );
    }

    // 9b. Account resolution.
    let mut account_headers = Vec::new();
    if let Some(acc) = &provider.account {
        let Some(path) = acc.path.render(claims) else {
            return deny(
                Denial::UnknownAccount,
                rule,
                "claim for the account path missing",
            );
        };
        // The same key in every VM and configuration naming this account service.
        let key = format!("{:016x}:{path}", acc.fingerprint);
        let state = inp.accounts.account(pid, &key);
        t.record(|tr| {
            let (ok, detail) = match &state {
                AccountState::Found(_) => (true, format!("found ({path})")),
                AccountState::NotFound => (false, format!("not found ({path})")),
                AccountState::Unknown if inp.accounts.may_wait() => {
                    (false, format!("looked up ({path})"))
                }
                AccountState::Unknown => (false, format!("service failed ({path})")),
            };
            tr.identity.push(check("account", ok, detail))
        });
        match state {
            AccountState::Found(fields) => {
                for (header, field) in &acc.headers {
                    if let Some(value) = fields.get(field).and_then(identity::header_value) {
                        if !identity::header_safe(&value) {
                            return deny(
                                Denial::UnknownAccount,
                                rule,
                                format!("account field for {header} has control characters"),
                            );
                        }
                        account_headers.push((header.clone(), value));
                    }
                }
            }
            AccountState::NotFound => {
                return deny(Denial::UnknownAccount, rule, "account not found")
            }
            AccountState::Unknown if inp.accounts.may_wait() => {
                return outcome(
                    Decision::AwaitAccount {
                        provider: pid,
                        key,
                        path,
                    },
                    rule,
                    "account lookup",
                );
            }
            AccountState::Unknown => {
                return deny(Denial::Unavailable, rule, "account service failed")
            }
        }
    }

    // 12 (computed here). The identity headers: audit mode forwards them even when the
    // steps below would deny.
    let identity = match identity::forward_headers(&cfg.forward, claims, &v.payload_b64) {
        Ok(mut headers) => {
            headers.extend(account_headers);
            headers
        }
        Err(header) => {
            return deny(
                Denial::UnknownAccount,
                rule,
                format!("claim for {header} has control characters"),
            )
        }
    };
    let denied = |d: Denial, note: String| {
        let mut o = deny(d, rule, note);
        o.identity = identity.clone();
        o
    };

    // 10. Permissions.
    if let Some(r) = rule {
        if !r.requirement.is_empty() || t.on() {
            let grants = Grants::from_claims(claims, &provider.claims, &cfg.roles);
            t.record(|tr| {
                tr.grants = grants.items().iter().map(describe_grant).collect();
                tr.requirements = r.requirement.explain(&grants, req, captures);
            });
            if let Err(missing) = r.requirement.check(&grants, req, captures) {
                return denied(
                    Denial::InsufficientPermissions,
                    format!("missing permission {missing}"),
                );
            }
        }
        // 11. Membership.
        if let Some(m) = &r.member_of {
            let holds = m.holds(claims, req, captures);
            t.record(|tr| {
                let detail = match m.source.read(req, captures) {
                    Some(v) => format!(
                        "request value {v:?} {} claim {}",
                        if holds { "is in" } else { "is not in" },
                        m.claim
                    ),
                    None => "the request value is missing or ambiguous".to_string(),
                };
                tr.membership = Some(check("membership", holds, detail));
            });
            if !holds {
                return denied(
                    Denial::PermissionDenied,
                    format!("request value not in claim {}", m.claim),
                );
            }
        }
    }

    // 12. Forward.
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

/// Step 1 with every rule recorded: which matched, and what differs for the others.
fn match_traced<'c>(
    cfg: &'c Config,
    req: &Request,
    path: &str,
    host: &str,
    t: &mut Tracer,
) -> Option<(&'c Rule, Captures)> {
    let mut found: Option<(&Rule, Captures)> = None;
    for r in &cfg.rules {
        let what = match &r.graphql {
            Some(g) => format!("{} {}", r.matcher.describe(), g.describe()),
            None => r.matcher.describe(),
        };
        // After a GraphQL rule, later rules still judge other root fields.
        let graphql = found.as_ref().is_some_and(|(f, _)| f.graphql.is_some());
        let c = if graphql {
            match r.matcher.check(req, path, host) {
                Ok(_) => check(&r.name, true, format!("{what}: matches the request")),
                Err(m) => check(&r.name, false, format!("{what}: {}", m.as_str())),
            }
        } else if found.is_some() {
            check(
                &r.name,
                false,
                format!("{what}: not considered (an earlier rule matched)"),
            )
        } else {
            match r.matcher.check(req, path, host) {
                Ok(captures) => {
                    found = Some((r, captures));
                    check(&r.name, true, format!("{what}: matches"))
                }
                Err(m) => check(&r.name, false, format!("{what}: {}", m.as_str())),
            }
        };
        t.record(|tr| tr.rules.push(c));
    }
    found
}

/// Why no provider may judge a token, provider by provider (for the trace).
fn ineligible(
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
fn issuer_audience(provider: &Provider, claims: &Map<String, Value>) -> String {
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

/// A grant and where it came from, for the trace.
fn describe_grant((g, source): &(&str, GrantSource)) -> String {
    match source {
        GrantSource::Permission => format!("{g} (permissions claim)"),
        GrantSource::Scope => format!("{g} (scope claim)"),
        GrantSource::Role(r) => format!("{g} (role {r})"),
    }
}

/// A request to a GraphQL endpoint: each root field of the operations it runs is judged
/// by the first rule that matches the request and the field (a rule without a `graphql`
/// condition matches every field, `__typename` only such rules), or by the default policy;
/// the request passes when every field's rule lets it, else the first failing field in
/// document order answers (an enforced denial before an audited one).
fn graphql_decision(
    inp: &Inputs,
    req: &Request,
    path: &str,
    host: &str,
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let limits = &cfg.graphql;
    // The rules that may judge a field: those matching the request, up to the first one
    // without a GraphQL condition (it takes every field the ones before it did not).
    let mut candidates: Vec<(&Rule, Captures)> = Vec::new();
    for r in &cfg.rules {
        if let Some(c) = r.matcher.matches(req, path, host) {
            let catch_all = r.graphql.is_none();
            candidates.push((r, c));
            if catch_all {
                break;
            }
        }
    }
    let first = candidates.first().map(|(r, _)| *r);
    let refuse = |detail: String, t: &mut Tracer| {
        t.record(|tr| tr.fields.push(check("request", false, detail.clone())));
        deny(
            Denial::BadRequest(detail),
            first,
            "not a readable GraphQL request",
        )
    };
    if let Err(detail) = graphql::check_headers(req, limits) {
        return refuse(detail, t);
    }
    let body: &[u8] = match &req.body {
        Body::Read(b) => b,
        Body::TooLarge(_) => return refuse(graphql::too_large(limits), t),
        Body::Unread if graphql::needs_body(req) => return before_body(inp, req, &candidates, t),
        Body::Unread => &[],
    };
    let fields = match graphql::root_fields(req, body, limits) {
        Ok(f) => f,
        Err(detail) => return refuse(detail, t),
    };
    // Each field's rule (an index into `candidates`; `None`: the default policy), and
    // each distinct rule decided once, in the order its first field comes.
    let judged: Vec<(RootField, Option<usize>)> = fields
        .into_iter()
        .map(|f| {
            let at = candidates
                .iter()
                .position(|(r, _)| r.graphql.as_ref().is_none_or(|g| g.matches(&f)));
            (f, at)
        })
        .collect();
    let mut decided: Vec<(Option<usize>, Outcome, crate::trace::Trace)> = Vec::new();
    for (_, at) in &judged {
        if decided.iter().any(|(d, _, _)| d == at) {
            continue;
        }
        let (rule, captures) = match at.and_then(|i| candidates.get(i)) {
            Some((r, c)) => (Some(*r), c.clone()),
            None => (None, Vec::new()),
        };
        let mut sub = crate::trace::Trace::default();
        let mut st = Tracer(t.on().then_some(&mut sub));
        let o = decide_for(inp, req, rule, &captures, &mut st);
        decided.push((*at, o, sub));
    }
    let mut cache = CacheNote::None;
    for (_, o, _) in &mut decided {
        let note = std::mem::take(&mut o.cache);
        if matches!(cache, CacheNote::None) {
            cache = note;
        }
    }
    let outcome_of = |at: &Option<usize>| decided.iter().position(|(d, _, _)| d == at);
    t.record(|tr| {
        for (f, at) in &judged {
            let rule_name = at
                .and_then(|i| candidates.get(i))
                .map_or("(default policy)", |(r, _)| r.name.as_str());
            let verdict = outcome_of(at)
                .and_then(|i| decided.get(i))
                .map(|(_, o, _)| o);
            let ok = matches!(verdict.map(|o| &o.decision), Some(Decision::Allow { .. }));
            let detail = match verdict.map(|o| &o.decision) {
                Some(Decision::Deny(d)) => {
                    format!("rule {rule_name}: {} {}", d.status(), d.detail())
                }
                Some(Decision::Allow { .. }) => format!("rule {rule_name}: allowed"),
                _ => format!("rule {rule_name}: waits"),
            };
            tr.fields.push(check(
                &format!("{} {}", f.operation.name(), f.name),
                ok,
                detail,
            ));
        }
    });
    // A wait first (decide again when it is over), then the first enforced denial, then
    // the first audited one, else the request passes.
    let order: Vec<usize> = judged.iter().filter_map(|(_, at)| outcome_of(at)).collect();
    let pick = |want: &dyn Fn(&Outcome) -> bool| {
        order
            .iter()
            .copied()
            .find(|i| decided.get(*i).is_some_and(|(_, o, _)| want(o)))
    };
    let waits = |o: &Outcome| {
        matches!(
            o.decision,
            Decision::AwaitKeys { .. } | Decision::AwaitAccount { .. }
        )
    };
    let denied = |o: &Outcome| matches!(o.decision, Decision::Deny(_));
    let chosen = pick(&waits)
        .or_else(|| pick(&|o| denied(o) && o.mode == Mode::Enforce))
        .or_else(|| pick(&denied))
        .or_else(|| pick(&|o| !o.identity.is_empty()))
        .or_else(|| order.first().copied());
    let all_public = decided.iter().all(|(_, o, _)| o.public);
    let all_anonymous = decided.iter().all(|(_, o, _)| o.public || o.anonymous);
    let Some((_, mut o, sub)) = chosen.map(|i| decided.swap_remove(i)) else {
        return deny(
            Denial::BadRequest("GraphQL request selects no field".into()),
            first,
            "no root field",
        );
    };
    t.record(|tr| {
        tr.preconditions = sub.preconditions;
        tr.token = sub.token;
        tr.identity = sub.identity;
        tr.grants = sub.grants;
        tr.requirements = sub.requirements;
        tr.membership = sub.membership;
    });
    if matches!(o.decision, Decision::Allow { .. }) {
        o.public = all_public;
        o.anonymous = !all_public && all_anonymous;
    }
    o.cache = cache;
    o
}

/// A GraphQL request whose body has not arrived: what the headers decide. The token is
/// authenticated now — by the providers of the rules that may judge a field — and its
/// identity resolved (required claims, account, identity headers), so a request without a
/// valid one is refused before its body is read; the rules of the fields are applied once
/// the body is complete.
fn before_body(
    inp: &Inputs,
    req: &Request,
    candidates: &[(&Rule, Captures)],
    t: &mut Tracer,
) -> Outcome {
    let cfg = inp.config;
    let first = candidates.first().map(|(r, _)| *r);
    // Fields no candidate takes go to the default policy (every provider).
    let takes_all = candidates.last().is_some_and(|(r, _)| r.graphql.is_none());
    let scope = Scope::AnyOf(candidates, !takes_all);
    let mut sources: Vec<&TokenSource> = Vec::new();
    for (i, p) in cfg.providers.iter().enumerate() {
        if scope.allows(i) && !sources.contains(&&p.token) {
            sources.push(&p.token);
        }
    }
    let read_body = |headers| outcome(Decision::ReadBody { headers }, first, "GraphQL body");
    let found = credential(req, &sources);
    let Ok(Some((which, token))) = found else {
        // A field whose rule takes no credential may still pass: the body decides.
        let lenient = candidates.iter().any(|(r, _)| {
            r.public || r.authentication == Authentication::Optional || r.mode == Mode::Audit
        });
        t.token("credential", found == Ok(None) && lenient, || {
            if found.is_ok() {
                "none sent".into()
            } else {
                "not exactly one credential".into()
            }
        });
        if found == Ok(None) && lenient {
            return read_body(Vec::new());
        }
        return deny(Denial::MissingToken, first, "no bearer token");
    };
    t.token("credential", true, || "one token".into());
    let source = sources
        .get(which)
        .copied()
        .unwrap_or(&TokenSource::Authorization);
    let mut v = match authenticate(inp, scope, token, source, t) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    let cache = std::mem::take(&mut v.cache);
    // The identity part of steps 9-12, as for a request no rule matched.
    let mut o = authorize(inp, req, None, &Vec::new(), &v, t);
    if let Decision::Allow { headers } = &o.decision {
        o = read_body(headers.clone());
    }
    o.cache = cache;
    o.provider = Some(v.provider);
    o.subject = subject(&v.claims);
    if v.config.strip_token {
        o.strip = Some(source.clone());
    }
    o
}
