//! The provider step: which provider judges a token. The first provider, in configuration
//! order, that the rule allows, that takes tokens from where this one came, whose
//! `algorithms` include the token's `alg` and whose `issuer`, if set, equals its `iss` (or,
//! for an issuer template, has its shape with a valid value). It
//! alone judges: a token it refuses is refused, whatever another provider would say.

use crate::algorithm::Algorithm;
use crate::authz::matcher::Captures;
use crate::config::{Config, Rule};
use crate::token::TokenSource;

/// Whether `rule` lets provider `i` authenticate (all, unless it names `providers`).
pub(in crate::pipeline) fn allowed(rule: Option<&Rule>, i: usize) -> bool {
    rule.and_then(|r| r.providers.as_ref())
        .is_none_or(|ids| ids.contains(&i))
}

/// The provider that judges a token on this rule. A function of the rule and the token
/// only, used on cache hits and misses alike, so a token's fate never depends on the
/// routes it was used on before.
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
pub(in crate::pipeline) enum Scope<'r> {
    /// The providers of one rule (`None`: no rule, every provider).
    Rule(Option<&'r Rule>),
    /// The providers of any of these rules (and every provider when the default policy
    /// may judge a field).
    AnyOf(&'r [(&'r Rule, Captures)], bool),
}

impl Scope<'_> {
    /// Whether provider `i` may judge.
    pub(in crate::pipeline) fn allows(&self, i: usize) -> bool {
        match self {
            Scope::Rule(rule) => allowed(*rule, i),
            Scope::AnyOf(rules, default) => {
                *default || rules.iter().any(|(r, _)| allowed(Some(r), i))
            }
        }
    }

    /// The one rule judging the request (`None` for no rule, or for several rules that
    /// may judge parts of a body: each is applied with its part).
    pub(in crate::pipeline) fn rule_only(&self) -> Option<&Rule> {
        match self {
            Scope::Rule(rule) => *rule,
            Scope::AnyOf(..) => None,
        }
    }

    /// The rule outcomes name.
    pub(in crate::pipeline) fn rule(&self) -> Option<&Rule> {
        match self {
            Scope::Rule(rule) => *rule,
            Scope::AnyOf(rules, _) => rules.first().map(|(r, _)| *r),
        }
    }
}

/// The provider that judges a token in `scope`.
pub(in crate::pipeline) fn select_in(
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
            && p.accepts_issuer(iss))
        .then_some(i)
    })
}

/// The introspection provider that judges `token` in `scope`, if one does: the first
/// provider with `introspection` that the scope allows and that takes tokens from
/// `source` judges every credential that is not a compact JWS in shape — and every
/// credential, JWS or not, when no provider of that source verifies signatures (an
/// authorization server may issue JWT-shaped reference tokens that only it can judge).
/// A JWS-shaped token goes to the signature-verifying providers when there are some:
/// their answer needs no call.
pub(in crate::pipeline) fn introspector(
    cfg: &Config,
    scope: Scope,
    token: &str,
    source: &TokenSource,
) -> Option<usize> {
    let mut eligible = cfg
        .providers
        .iter()
        .enumerate()
        .filter(|(i, p)| scope.allows(*i) && p.token == *source);
    let (first, _) = eligible.clone().find(|(_, p)| p.introspection.is_some())?;
    let only_introspection = eligible.all(|(_, p)| p.introspection.is_some());
    (only_introspection || !crate::introspection::looks_like_jws(token)).then_some(first)
}

/// Why no provider may judge a token, provider by provider (for the trace).
pub(in crate::pipeline) fn ineligible(
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
            } else if p.introspection.is_some() {
                "introspects opaque tokens only (this one is a JWS)".to_string()
            } else if !p.algorithms.contains(&alg) {
                "does not accept this alg".to_string()
            } else if p.issuer_template.is_some() {
                format!(
                    "iss {} does not fit the issuer template {} (or names a value issuer_values does not list)",
                    iss.unwrap_or("(none)"),
                    p.issuer.as_deref().unwrap_or("")
                )
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
