//! The account step: with the provider's `account` configured, the account service must
//! know the identity. The request waits for a lookup (one call per identity for the
//! whole process); a found account adds its headers.

use super::Verified;
use crate::account::AccountState;
use crate::authz::identity;
use crate::config::Rule;
use crate::pipeline::trace::{check, AccountFinding, Finding, Step, Tracer};
use crate::pipeline::{deny, outcome, Decision, Inputs, Outcome, Wait};
use crate::reply::Denial;

/// The account's headers (none without an account service), or the decision: a denial
/// or a wait for the lookup.
pub(super) fn resolve(
    inp: &Inputs,
    rule: Option<&Rule>,
    v: &Verified,
    t: &mut Tracer,
) -> Result<Vec<(String, String)>, Box<Outcome>> {
    let Some(acc) = &v.config.account else {
        return Ok(Vec::new());
    };
    let Some(path) = acc.path.render(&v.claims) else {
        return Err(Box::new(deny(
            Denial::UnknownAccount,
            rule,
            "claim for the account path missing",
        )));
    };
    // The same key in every worker and configuration naming this account service.
    let key = format!("{:016x}:{path}", acc.fingerprint);
    let state = inp.accounts.account(v.provider, &key);
    let may_wait = inp.accounts.may_wait(v.provider, &key);
    t.record(|tr| {
        let (ok, found) = match &state {
            AccountState::Found(_) => (true, AccountFinding::Found),
            AccountState::NotFound => (false, AccountFinding::NotFound),
            AccountState::Unknown if may_wait => (false, AccountFinding::LookedUp),
            AccountState::Unknown => (false, AccountFinding::Failed),
        };
        tr.identity.push(check(
            Step::Account,
            ok,
            Finding::Account(found, path.clone()),
        ))
    });
    match state {
        AccountState::Found(fields) => {
            let mut headers = Vec::new();
            for (header, field) in &acc.headers {
                if let Some(value) = fields.get(field).and_then(identity::header_value) {
                    if !identity::header_safe(&value) {
                        return Err(Box::new(deny(
                            Denial::UnknownAccount,
                            rule,
                            format!("account field for {header} has control characters"),
                        )));
                    }
                    headers.push((header.clone(), value));
                }
            }
            Ok(headers)
        }
        AccountState::NotFound => Err(Box::new(deny(
            Denial::UnknownAccount,
            rule,
            "account not found",
        ))),
        AccountState::Unknown if may_wait => Err(Box::new(outcome(
            Decision::Await(Wait::Account {
                provider: v.provider,
                key,
                path,
            }),
            rule,
            "account lookup",
        ))),
        AccountState::Unknown => Err(Box::new(deny(
            Denial::Unavailable,
            rule,
            "account service failed",
        ))),
    }
}
