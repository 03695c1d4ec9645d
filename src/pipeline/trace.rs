//! The decision's own record of its steps, as data: each [`Check`] names its [`Step`] and
//! what it found ([`Finding`]); the renderings (`explain` for people and for scripts)
//! format them through `Display`, in this one place. [`crate::pipeline::decide_traced`]
//! fills a [`Trace`] as it goes; `decide` records nothing and formats nothing.

use crate::authz::{HeaderFormat, RequirementCheck};
use std::fmt;

/// A step of the decision, as `explain` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The request path's normal form.
    Path,
    /// A rule, by name.
    Rule(String),
    /// A GraphQL request as a whole (whether it could be read).
    Request,
    /// A part of a body: a GraphQL root field (the operation kind and the field's name),
    /// or an MCP message (`mcp` and the message, as `tools/call search_items`).
    Field(&'static str, String),
    /// A header precondition, by the header's name as configured.
    Precondition(String),
    /// The credential.
    Credential,
    /// This worker's verified-token cache.
    Cache,
    /// The compact JWS.
    Parse,
    /// The provider that judges the token.
    Provider,
    /// `exp` and `nbf`.
    Times,
    /// Keys and signature.
    Signature,
    /// `iss` and `aud`.
    IssuerAudience,
    /// The provider's `require_jti`.
    Jti,
    /// The provider's revocation list.
    Revocation,
    /// A certificate-bound token's client certificate.
    CertificateBinding,
    /// A DPoP proof.
    Dpop,
    /// The provider's required identity claims.
    RequiredClaims,
    /// The account service.
    Account,
    /// The rule's membership constraint.
    Membership,
    /// The rule's step-up requirement (`acr_values`, `max_age_s`).
    SignIn,
    /// The provider's `token_types` against the JOSE `typ`.
    TokenType,
    /// The provider's `max_lifetime_s` against `exp − iat`.
    Lifetime,
    /// One `claim_values` condition (the provider's or the rule's), by its claim.
    ClaimValue(String),
    /// `aud` against audiences that name the request's protected resource
    /// (`{resource}`), or a rule's `audiences`.
    ResourceAudience,
    /// The authorization server's introspection answer for an opaque token.
    Introspection,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Step::Path => "path",
            Step::Rule(name) | Step::Precondition(name) => name,
            Step::Request => "request",
            Step::Field(operation, name) => return write!(f, "{operation} {name}"),
            Step::Credential => "credential",
            Step::Cache => "cache",
            Step::Parse => "parse",
            Step::Provider => "provider",
            Step::Times => "times",
            Step::Signature => "signature",
            Step::IssuerAudience => "issuer and audience",
            Step::Jti => "jti",
            Step::Revocation => "revocation",
            Step::CertificateBinding => "certificate binding",
            Step::Dpop => "dpop",
            Step::RequiredClaims => "required claims",
            Step::Account => "account",
            Step::Membership => "membership",
            Step::SignIn => "step-up",
            Step::TokenType => "token type",
            Step::Lifetime => "lifetime",
            Step::ResourceAudience => "resource audience",
            Step::Introspection => "introspection",
            Step::ClaimValue(claim) => return write!(f, "claim {claim}"),
        };
        f.write_str(name)
    }
}

/// How a GraphQL root field's rule judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldVerdict {
    /// Allowed.
    Allowed,
    /// Refused with this status and `detail`.
    Denied(u32, String),
    /// Waits for keys, a list or an account (described).
    Waits(Option<String>),
}

/// What a step found: the data of each outcome, formatted only by `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A failure or a plain fact that a fixed phrase says (parse, times, signature, DPoP
    /// reasons…).
    Says(&'static str),
    /// The request path is not in normal form.
    PathNotNormal,
    /// A rule (described) matches the request.
    RuleMatches(String),
    /// After a GraphQL rule, a later rule (described) that matches the request still
    /// judges the fields the earlier ones do not name.
    RuleMatchesRequest(String),
    /// A rule (described) does not match, and why.
    RuleMisses(String, &'static str),
    /// A rule (described) after the one that matched.
    RuleNotConsidered(String),
    /// Why a GraphQL request cannot be read (the reply's `detail`).
    Unreadable(String),
    /// A GraphQL root field judged by a rule (`None`: the default policy).
    FieldJudged(Option<String>, FieldVerdict),
    /// A header precondition held.
    HeaderAsRequired(HeaderFormat),
    /// A header precondition failed (the reply's `detail`).
    HeaderRefused(String),
    /// One credential, from this source (described).
    OneToken(String),
    /// One credential, from `Authorization: DPoP`.
    OneDpopToken,
    /// None sent, and the rule's authentication is optional.
    NoneOptional,
    /// None sent, looked for in these sources (empty: the providers of every rule).
    NoneSent(Vec<String>),
    /// Not exactly one credential, looked for in these sources (empty: as above).
    NotOne(Vec<String>),
    /// Verified earlier by this worker, by this provider.
    Cached(String),
    /// The token's header: its `alg` and `kid`.
    Parsed(String, Option<String>),
    /// No provider accepts this `alg`.
    NoProviderForAlg(String),
    /// No provider may judge the token, each for its reason.
    NoneEligible(Vec<String>),
    /// This provider judges the token.
    ProviderChosen(String),
    /// `exp` is this many seconds away, with this clock skew.
    ExpiresIn(i64, i64),
    /// The signature check waits (for keys: the reason).
    SignatureWaits(&'static str),
    /// Another worker of this Envoy verified this token.
    SharedVerdict,
    /// The issuer and audience compared: `iss` (and the wanted one), `aud` (and the wanted
    /// ones; none: not checked).
    IssuerAudience {
        /// The token's `iss`.
        iss: Option<String>,
        /// The provider's `issuer`.
        wanted_iss: Option<String>,
        /// The token's `aud`, as JSON.
        aud: Option<String>,
        /// The provider's `audiences`.
        wanted_aud: Vec<String>,
    },
    /// `jti` present, or missing where the provider requires one.
    Jti(bool),
    /// Revoked, for this reason (described).
    Revoked(String),
    /// Not revoked by a list of this many entries.
    NotRevoked(usize),
    /// The list is loading: the request waits.
    ListLoading,
    /// The list was never obtained: with `on_unavailable: allow` the token passed
    /// unchecked (`true`), else it is refused.
    ListNeverObtained(bool),
    /// The certificate binding's verdict.
    Binding(&'static str),
    /// A valid proof for this method and `htu`.
    ProofValid(String, String),
    /// The required claims are present.
    ClaimsPresent(Vec<String>),
    /// This required claim is missing.
    ClaimMissing(String),
    /// The account service's answer for this path: found, not found, looked up now, or
    /// failed.
    Account(AccountFinding, String),
    /// The request value (if readable) is or is not in the claim.
    Member(Option<String>, bool, String),
    /// The token's sign-in: its `acr` and how long ago `auth_time` was (seconds), as the
    /// rule's step-up requirement sees them.
    SignIn(Option<String>, Option<i64>),
    /// The JOSE header's `typ` (`None`: absent or not a string) and the accepted ones.
    Typ(Option<String>, Vec<String>),
    /// The token lives `exp − iat` seconds, at most this many allowed.
    Lifetime(i64, u64),
    /// Why the lifetime check failed.
    LifetimeRefused(&'static str),
    /// A claim's value (JSON, `None`: missing) compared with the values a condition allows.
    ClaimCompared(Option<String>, String),
}

/// What the account service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountFinding {
    /// It knows the identity.
    Found,
    /// It does not.
    NotFound,
    /// The lookup is under way: the request waits.
    LookedUp,
    /// It failed.
    Failed,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let looked_in = |f: &mut fmt::Formatter<'_>, what: &str, sources: &[String]| {
            if sources.is_empty() {
                f.write_str(what)
            } else {
                write!(f, "{what} (looked in: {})", sources.join(", "))
            }
        };
        match self {
            Finding::Says(s) => f.write_str(s),
            Finding::PathNotNormal => f.write_str("not in normal form: no rule is matched"),
            Finding::RuleMatches(what) => write!(f, "{what}: matches"),
            Finding::RuleMatchesRequest(what) => write!(f, "{what}: matches the request"),
            Finding::RuleMisses(what, why) => write!(f, "{what}: {why}"),
            Finding::RuleNotConsidered(what) => {
                write!(f, "{what}: not considered (an earlier rule matched)")
            }
            Finding::Unreadable(detail) | Finding::HeaderRefused(detail) => f.write_str(detail),
            Finding::FieldJudged(rule, verdict) => {
                let rule = rule.as_deref().unwrap_or("(default policy)");
                match verdict {
                    FieldVerdict::Allowed => write!(f, "rule {rule}: allowed"),
                    FieldVerdict::Denied(status, detail) => {
                        write!(f, "rule {rule}: {status} {detail}")
                    }
                    FieldVerdict::Waits(Some(what)) => write!(f, "rule {rule}: waits for {what}"),
                    FieldVerdict::Waits(None) => write!(f, "rule {rule}: waits"),
                }
            }
            Finding::HeaderAsRequired(format) => write!(f, "{format:?}: as required"),
            Finding::OneToken(source) if source.is_empty() => f.write_str("one token"),
            Finding::OneToken(source) => write!(f, "one token, from {source}"),
            Finding::OneDpopToken => f.write_str("one token, from Authorization: DPoP"),
            Finding::NoneOptional => {
                f.write_str("none sent; the rule's authentication is optional")
            }
            Finding::NoneSent(sources) => looked_in(f, "none sent", sources),
            Finding::NotOne(sources) => looked_in(f, "not exactly one credential", sources),
            Finding::Cached(provider) => {
                write!(f, "verified earlier by this worker (provider {provider})")
            }
            Finding::Parsed(alg, kid) => {
                write!(f, "alg {alg}, kid {}", kid.as_deref().unwrap_or("(none)"))
            }
            Finding::NoProviderForAlg(alg) => write!(f, "no provider accepts alg {alg}"),
            Finding::NoneEligible(why) => write!(f, "none eligible ({})", why.join("; ")),
            Finding::ProviderChosen(name) => {
                write!(f, "{name} (the first eligible provider judges the token)")
            }
            Finding::ExpiresIn(seconds, skew) => {
                write!(f, "exp in {seconds} s (clock skew {skew} s)")
            }
            Finding::SignatureWaits(why) => write!(f, "waits: {why}"),
            Finding::SharedVerdict => {
                f.write_str("skipped: another worker of this Envoy verified this token")
            }
            Finding::IssuerAudience {
                iss,
                wanted_iss,
                aud,
                wanted_aud,
            } => {
                match wanted_iss {
                    Some(want) => write!(
                        f,
                        "iss {} (wanted {want})",
                        iss.as_deref().unwrap_or("(none)")
                    )?,
                    None => f.write_str("issuer not checked")?,
                }
                if wanted_aud.is_empty() {
                    f.write_str("; audience not checked")
                } else {
                    write!(
                        f,
                        "; aud {} (wanted one of {})",
                        aud.as_deref().unwrap_or("(none)"),
                        wanted_aud.join(", ")
                    )
                }
            }
            Finding::Jti(true) => f.write_str("present (required by the provider)"),
            Finding::Jti(false) => f.write_str("missing: the provider requires one"),
            Finding::Revoked(why) => write!(f, "revoked: {why}"),
            Finding::NotRevoked(entries) => {
                write!(f, "not revoked ({entries} entries in the list)")
            }
            Finding::ListLoading => f.write_str("waits: the list is loading"),
            Finding::ListNeverObtained(true) => {
                f.write_str("the list was never obtained: passed unchecked (on_unavailable: allow)")
            }
            Finding::ListNeverObtained(false) => {
                f.write_str("the list was never obtained (on_unavailable: deny)")
            }
            Finding::Binding(why) => write!(f, "cnf.x5t#S256: {why}"),
            Finding::ProofValid(method, htu) => write!(
                f,
                "proof valid for {method} {htu}, key = cnf.jkt (replay checked once per process)"
            ),
            Finding::ClaimsPresent(names) => write!(f, "present: {}", names.join(", ")),
            Finding::ClaimMissing(name) => write!(f, "claim {name} missing"),
            Finding::Account(found, path) => match found {
                AccountFinding::Found => write!(f, "found ({path})"),
                AccountFinding::NotFound => write!(f, "not found ({path})"),
                AccountFinding::LookedUp => write!(f, "looked up ({path})"),
                AccountFinding::Failed => write!(f, "service failed ({path})"),
            },
            Finding::Member(Some(value), holds, claim) => write!(
                f,
                "request value {value:?} {} claim {claim}",
                if *holds { "is in" } else { "is not in" }
            ),
            Finding::Member(None, _, _) => f.write_str("the request value is missing or ambiguous"),
            Finding::Typ(typ, wanted) => match typ {
                Some(t) => write!(f, "typ {t:?}, accepted: {}", wanted.join(", ")),
                None => write!(f, "no typ, accepted: {}", wanted.join(", ")),
            },
            Finding::Lifetime(lives, max) => write!(f, "lives {lives} s, at most {max} s"),
            Finding::LifetimeRefused(why) => f.write_str(why),
            Finding::ClaimCompared(seen, wanted) => match seen {
                Some(v) => write!(f, "{v}, wanted one of {wanted}"),
                None => write!(f, "missing, wanted one of {wanted}"),
            },
            Finding::SignIn(acr, age) => {
                match acr {
                    Some(acr) => write!(f, "acr {acr:?}")?,
                    None => f.write_str("no acr")?,
                }
                match age {
                    Some(age) => write!(f, ", signed in {age} s ago"),
                    None => f.write_str(", no auth_time"),
                }
            }
        }
    }
}

/// One step: what was checked, whether it passed, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The step.
    pub step: Step,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub finding: Finding,
}

impl Check {
    /// What was found, in a few words.
    pub fn detail(&self) -> String {
        self.finding.to_string()
    }
}

/// A grant a token carries and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantFound {
    /// The grant.
    pub grant: String,
    /// Its source: the permissions claim, the scope claim, or a role (its name).
    pub from: GrantFrom,
}

/// Where a grant came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantFrom {
    /// The permissions claim.
    Permission,
    /// The scope claim.
    Scope,
    /// A role, through the role table.
    Role(String),
}

impl fmt::Display for GrantFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.grant;
        match &self.from {
            GrantFrom::Permission => write!(f, "{g} (permissions claim)"),
            GrantFrom::Scope => write!(f, "{g} (scope claim)"),
            GrantFrom::Role(r) => write!(f, "{g} (role {r})"),
        }
    }
}

/// Every step one decision took, in order within each part. Never token material: only
/// the token's header fields (`alg`, `kid`) and the claims the decision reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The rule step: each rule, in order, and whether the request matched it.
    pub rules: Vec<Check>,
    /// GraphQL: each root field; MCP: each JSON-RPC message — with the rule that judged
    /// it (or why the body could not be read).
    pub fields: Vec<Check>,
    /// The rule's header preconditions.
    pub preconditions: Vec<Check>,
    /// From the credential to the sender constraint.
    pub token: Vec<Check>,
    /// Required claims and the account.
    pub identity: Vec<Check>,
    /// The grants the token carries, and where each came from.
    pub grants: Vec<GrantFound>,
    /// Each requirement of the rule with the grant that covers it.
    pub requirements: Vec<RequirementCheck>,
    /// The membership check, when the rule has one.
    pub membership: Option<Check>,
}

/// The optional trace a decision writes to: with none, recording costs a branch and the
/// closures that would build a finding never run.
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
    pub(crate) fn token(&mut self, step: Step, ok: bool, finding: impl FnOnce() -> Finding) {
        self.record(|t| t.token.push(check(step, ok, finding())));
    }
}

/// A check.
pub(crate) fn check(step: Step, ok: bool, finding: Finding) -> Check {
    Check { step, ok, finding }
}
