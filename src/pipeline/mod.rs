//! The decision pipeline: one linear function from a request to a [`Decision`].
//!
//! The step numbers are those of the README's "How a request is decided": match the rule,
//! check header preconditions, extract the token, parse it, select the provider, check
//! times (cheap, before any crypto), keys and signature, `iss`/`aud`, identity and
//! account, permissions, membership, and the identity headers. Each later capability adds
//! a step, not a branch.
//!
//! [`authenticate`] holds steps 3-8 (provider selection, keys and signature), [`authorize`]
//! steps 9-12, [`graphql`] the per-root-field decision of a GraphQL endpoint.

use crate::account::AccountState;
use crate::algorithm::Algorithm;
use crate::authz::identity;
use crate::authz::matcher::Captures;
use crate::authz::{check_header, GrantSource, Grants};
use crate::config::Provider;
use crate::config::{Authentication, Config, DefaultPolicy, Mode, Rule};
use crate::keys::KeySet;
use crate::pipeline::trace::{check, Trace, Tracer};
use crate::reply::Denial;
use crate::request::{is_normalized, Body, Request};
use crate::revocation::RevocationList;
use crate::shared::KeyAvailability;
use crate::token::cache::{
    CachedToken, SharedVerdict, TokenCache, TokenDigest, MAX_CACHED_TOKEN_BYTES,
};
use crate::token::parse;
use crate::token::Scheme;
use crate::token::{check_claims, check_times};
use crate::token::{credential, TokenSource};
use crate::verify::{verify_hmac, verify_with_key, SignatureBackend};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

mod authenticate;
mod authorize;
mod combine;
mod graphql;
pub mod trace;

use self::authenticate::{authenticate, Scope};
pub use self::authenticate::{rule_sources, select_provider, verify_signature};
use self::authorize::authorize;
use self::graphql::graphql_decision;

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
    /// Pause until what the decision needs has arrived (or is known not to come), then
    /// decide again.
    Await(Wait),
    /// A GraphQL request whose root fields are in its body: the body is held until it is
    /// complete, then the request is decided with it.
    ReadBody {
        /// The token's identity headers (empty without a credential).
        headers: Vec<(String, String)>,
    },
}

/// What a decision waits for: the one list of the kinds of waiting. Every site that acts
/// on a wait matches this type exhaustively, so a new kind is a compile error wherever it
/// is not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// A provider's key set: its first load, or (`refetch`) a refetch for an unknown `kid`.
    Keys {
        /// Provider index.
        provider: usize,
        /// `true` when an unknown `kid` asks for a refetch, `false` for the first load.
        refetch: bool,
    },
    /// The first load of a provider's revocation list.
    Revocation {
        /// Provider index.
        provider: usize,
    },
    /// The account service's answer for an identity.
    Account {
        /// Provider index.
        provider: usize,
        /// Lookup key (the account service's fingerprint and the path).
        key: String,
        /// The path to call.
        path: String,
    },
}

impl Wait {
    /// Whether `other` waits for the same thing: one provider's keys (a first load and a
    /// refetch alike), one provider's list, one identity's account.
    pub fn same_as(&self, other: &Wait) -> bool {
        match self {
            Wait::Keys { provider, .. } => {
                matches!(other, Wait::Keys { provider: p, .. } if p == provider)
            }
            Wait::Revocation { provider } => {
                matches!(other, Wait::Revocation { provider: p } if p == provider)
            }
            Wait::Account { provider, key, .. } => {
                matches!(other, Wait::Account { provider: p, key: k, .. } if p == provider && k == key)
            }
        }
    }

    /// In a few words, for logs.
    pub fn describe(&self) -> String {
        match self {
            Wait::Keys { provider, .. } => format!("keys of provider #{provider}"),
            Wait::Revocation { provider } => format!("the revocation list of provider #{provider}"),
            Wait::Account { .. } => "an account lookup".to_string(),
        }
    }
}

/// What a request has waited for: each [`Wait`] at most once, so no request waits
/// forever — and a request judged by parts (GraphQL fields of several providers) may wait
/// for each part's keys, list or account in turn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waited(Vec<Wait>);

impl Waited {
    /// Whether the request has waited for what `wait` waits for.
    pub fn has(&self, wait: &Wait) -> bool {
        self.0.iter().any(|w| w.same_as(wait))
    }

    /// The request waits for `wait` now.
    pub fn add(&mut self, wait: Wait) {
        if !self.has(&wait) {
            self.0.push(wait);
        }
    }

    /// Whether it waited for provider `provider`'s keys.
    pub fn keys(&self, provider: usize) -> bool {
        self.has(&Wait::Keys {
            provider,
            refetch: false,
        })
    }
}

/// The three classes of decision a combination of parts knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The part lets the request through.
    Allow,
    /// The part cannot be decided yet (it waits for data, or for the body).
    Pending,
    /// The part refuses the request.
    Deny,
}

impl Decision {
    /// Which class the decision is in.
    pub fn class(&self) -> Class {
        match self {
            Decision::Allow { .. } => Class::Allow,
            Decision::Await(_) | Decision::ReadBody { .. } => Class::Pending,
            Decision::Deny(_) => Class::Deny,
        }
    }
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
    /// What the revocation check of the token's provider found, for its metrics.
    pub revocation: RevocationNote,
    /// The DPoP proof's replay entry: the VM enters it in the process-wide store once the
    /// request is decided, and refuses the request if the proof was used before.
    pub proof: Option<crate::sender::replay::ReplayClaim>,
}

impl Outcome {
    /// A refusal decided outside the pipeline (no rule, enforced).
    pub fn refused(denial: Denial, note: &'static str) -> Outcome {
        outcome(Decision::Deny(denial), None, note)
    }
}

/// What the revocation check found, beyond allowing or denying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationNote {
    /// Nothing to count: no list, or not listed.
    #[default]
    None,
    /// The token is revoked.
    Revoked,
    /// The list has never loaded and the provider's `on_unavailable` is `allow`: the
    /// token passed unchecked.
    Unchecked,
}

/// What the pipeline may ask about revocation lists.
pub trait RevocationLookup {
    /// The availability of provider `provider`'s list, and the list once loaded.
    fn revocation(&self, provider: usize) -> (KeyAvailability, Option<&RevocationList>);
}

/// No list obtainable (hosts and tools without a fetched list).
struct NoRevocations;

impl RevocationLookup for NoRevocations {
    fn revocation(&self, _provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        (KeyAvailability::Unavailable, None)
    }
}

/// One list, in force for every provider that names a list (`explain --revocation`).
pub struct FixedRevocations<'a>(pub &'a RevocationList);

impl RevocationLookup for FixedRevocations<'_> {
    fn revocation(&self, _provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        (KeyAvailability::Ready, Some(self.0))
    }
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
    /// Whether this request may pause for the lookup of `key` of `provider`.
    fn may_wait(&self, provider: usize, key: &str) -> bool;
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
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
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
    /// Revocation lists (none obtainable unless given).
    pub revocations: &'a dyn RevocationLookup,
    /// Current time, seconds since the epoch.
    pub now_s: i64,
}

/// No account service: every lookup is unknown and no request waits.
struct NoAccounts;

impl AccountLookup for NoAccounts {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
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
            revocations: &NoRevocations,
            now_s,
        }
    }

    /// With these revocation lists.
    pub fn revocations(self, revocations: &'a dyn RevocationLookup) -> Inputs<'a> {
        Inputs {
            revocations,
            ..self
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

pub(super) fn deny(d: Denial, rule: Option<&Rule>, note: impl Into<Cow<'static, str>>) -> Outcome {
    outcome(Decision::Deny(d), rule, note)
}

pub(super) fn outcome(
    decision: Decision,
    rule: Option<&Rule>,
    note: impl Into<Cow<'static, str>>,
) -> Outcome {
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
        revocation: RevocationNote::None,
        proof: None,
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
    /// The token's digest under the process's key.
    fn digest(&self, token: &str) -> TokenDigest;
    /// The verdict published for the token with this digest, if any.
    fn verdict(&self, digest: &TokenDigest) -> Option<SharedVerdict>;
}

/// An authenticated token.
pub(super) struct Verified<'a> {
    provider: usize,
    config: &'a Provider,
    claims: Rc<Map<String, Value>>,
    payload_b64: Cow<'a, str>,
    cache: CacheNote,
    revocation: RevocationNote,
    proof: Option<crate::sender::replay::ReplayClaim>,
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
pub(super) fn subject(claims: &Map<String, Value>) -> Option<String> {
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
pub(super) fn decide_for(
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
    // An audited precondition failure and the rest of the decision are two parts of one
    // decision: `combine`'s rule says which answers; a denial keeps the token's identity.
    let first_denial = |o: Outcome| match precondition.clone() {
        Some(mut p) if combine::answering(&[&p, &o]) == Some(0) => {
            p.identity = o.identity;
            p.provider = o.provider;
            p.subject = o.subject;
            p.cache = o.cache;
            p.revocation = o.revocation;
            p.proof = o.proof;
            p
        }
        _ => o,
    };

    // 3. Exactly one credential, from the sources of the providers the rule allows
    // (`Authorization: Bearer` unless a provider says otherwise); none at all passes a rule
    // whose authentication is optional, without identity.
    let sources = rule_sources(cfg, rule);
    let found = credential(req, &sources, cfg.dpop);
    let optional = rule.is_some_and(|r| r.authentication == Authentication::Optional);
    t.token(
        "credential",
        found == Ok(None) && optional || matches!(found, Ok(Some(_))),
        || {
            let wanted: Vec<String> = sources.iter().map(|s| s.describe()).collect();
            match &found {
                Ok(Some(c)) => match sources.get(c.index) {
                    Some(TokenSource::Authorization) if c.scheme == Scheme::Dpop => {
                        "one token, from Authorization: DPoP".into()
                    }
                    s => format!(
                        "one token, from {}",
                        s.map_or(String::new(), |s| s.describe())
                    ),
                },
                Ok(None) if optional => "none sent; the rule's authentication is optional".into(),
                Ok(None) => format!("none sent (looked in: {})", wanted.join(", ")),
                Err(_) => format!(
                    "not exactly one credential (looked in: {})",
                    wanted.join(", ")
                ),
            }
        },
    );
    let Ok(Some(cred)) = found else {
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
        .get(cred.index)
        .copied()
        .unwrap_or(&TokenSource::Authorization);
    let mut v = match authenticate(inp, req, Scope::Rule(rule), cred, source, t) {
        Ok(v) => v,
        Err(o) => return first_denial(*o),
    };
    let cache = std::mem::replace(&mut v.cache, CacheNote::None);
    let mut o = authorize(inp, req, rule, captures, &v, t);
    o.cache = cache;
    o.provider = Some(v.provider);
    o.subject = subject(&v.claims);
    o.revocation = v.revocation;
    o.proof = v.proof;
    if v.config.strip_token {
        o.strip = Some(source.clone());
    }
    first_denial(o)
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
