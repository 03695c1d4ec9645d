//! Steps 9-12 for an authenticated token: required claims, the account, permissions,
//! membership and the identity headers.

use super::*;
use crate::token::claim_path::ClaimPath;

/// Steps 9-12 for an authenticated token: identity, account, permissions, membership,
/// identity headers.
pub(super) fn authorize(
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
                None => {
                    let names: Vec<&str> = provider
                        .required_claims
                        .iter()
                        .map(ClaimPath::as_str)
                        .collect();
                    format!("present: {}", names.join(", "))
                }
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
                AccountState::Unknown if inp.accounts.may_wait(pid, &key) => {
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
            AccountState::Unknown if inp.accounts.may_wait(pid, &key) => {
                return outcome(
                    Decision::Await(Wait::Account {
                        provider: pid,
                        key,
                        path,
                    }),
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

/// A grant and where it came from, for the trace.
pub(super) fn describe_grant((g, source): &(&str, GrantSource)) -> String {
    match source {
        GrantSource::Permission => format!("{g} (permissions claim)"),
        GrantSource::Scope => format!("{g} (scope claim)"),
        GrantSource::Role(r) => format!("{g} (role {r})"),
    }
}
