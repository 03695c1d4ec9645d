//! The credential step: exactly one token, looked for where the providers a rule allows
//! take theirs (`Authorization: Bearer` unless a provider says otherwise).

use super::provider::allowed;
use crate::config::{Config, Rule};
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::request::Request;
use crate::token::{credential, Credential, NotOneCredential, Scheme, TokenSource};

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

/// What the credential step found: a credential, none, or not exactly one.
pub(in crate::pipeline) type Found<'r> = Result<Option<Credential<'r>>, NotOneCredential>;

/// Looks for the credential in `sources` and records what was found; `optional`: the
/// rule's authentication is optional (none sent passes).
pub(in crate::pipeline) fn find<'r>(
    cfg: &Config,
    req: &'r Request,
    sources: &[&TokenSource],
    optional: bool,
    t: &mut Tracer,
) -> Found<'r> {
    let found = credential(req, sources, cfg.dpop);
    let ok = found == Ok(None) && optional || matches!(found, Ok(Some(_)));
    t.token(Step::Credential, ok, || {
        let wanted = || sources.iter().map(|s| s.describe()).collect();
        match &found {
            Ok(Some(c)) => match sources.get(c.index) {
                Some(TokenSource::Authorization) if c.scheme == Scheme::Dpop => {
                    Finding::OneDpopToken
                }
                s => Finding::OneToken(s.map_or(String::new(), |s| s.describe())),
            },
            Ok(None) if optional => Finding::NoneOptional,
            Ok(None) => Finding::NoneSent(wanted()),
            Err(_) => Finding::NotOne(wanted()),
        }
    });
    found
}

/// The source a found credential came from.
pub(in crate::pipeline) fn source_of<'c>(
    sources: &[&'c TokenSource],
    cred: &Credential,
) -> &'c TokenSource {
    sources
        .get(cred.index)
        .copied()
        .unwrap_or(&TokenSource::Authorization)
}
