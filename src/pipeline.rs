//! The decision pipeline: one linear function from a request to a [`Decision`].
//!
//! Steps follow SPEC §1: match the rule, check header preconditions, extract the token,
//! parse it, select the provider, check times (cheap, before any crypto), obtain keys,
//! verify the signature, check `iss`/`aud`, resolve identity, authorize, check membership
//! and derive the identity headers. Each later capability adds a step, not a branch.

use crate::account::AccountState;
use crate::authorizer::{check_header, Grants};
use crate::config::{Algorithm, Config, DefaultPolicy, Rule};
use crate::jwks::{KeyAvailability, KeySet};
use crate::reply::Denial;
use crate::request::{is_normalized, Request};
use crate::token::{extract_bearer, parse};
use crate::verifier::{check_claims, check_times, verify_hs256, SignatureBackend};
use crate::{identity, matcher::Captures};

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
    /// Pause until the account service answers for this identity, then decide again.
    AwaitAccount {
        /// Provider index.
        provider: usize,
        /// Cache key (provider and path).
        key: String,
        /// The path to call.
        path: String,
    },
}

/// A decision with what the logs and metrics need to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// Name of the matched rule, or `(default)`.
    pub rule: String,
    /// Whether a public rule let the request through.
    pub public: bool,
    /// Why, in a few words (never token material).
    pub note: String,
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

/// Account lookups for configurations without account resolution.
pub struct NoAccounts;

impl AccountLookup for NoAccounts {
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
    /// RS256 backend.
    pub backend: &'a dyn SignatureBackend,
    /// Current time, seconds since the epoch.
    pub now_s: i64,
}

fn outcome(decision: Decision, rule: Option<&Rule>, note: impl Into<String>) -> Outcome {
    Outcome {
        decision,
        rule: rule.map_or_else(|| "(default)".to_string(), |r| r.name.clone()),
        public: false,
        note: note.into(),
    }
}

/// Decides what happens to `req`.
pub fn decide(inp: &Inputs, req: &Request) -> Outcome {
    let cfg = inp.config;
    let deny = |d: Denial, rule: Option<&Rule>, note: &str| outcome(Decision::Deny(d), rule, note);

    // 1. Rule. Only paths in normal form are matched, so `..` tricks cannot borrow a rule.
    let path = req.path_only();
    if !is_normalized(path) {
        return deny(
            Denial::BadRequest("Request path is not normalized".into()),
            None,
            "path not normalized",
        );
    }
    let host = req.host();
    let matched = cfg
        .rules
        .iter()
        .find_map(|r| r.matcher.matches(req, path, &host).map(|c| (r, c)));
    let (rule, captures): (Option<&Rule>, Captures) = match matched {
        Some((r, c)) => (Some(r), c),
        None if cfg.default == DefaultPolicy::Deny => {
            return deny(
                Denial::InsufficientPermissions,
                None,
                "no rule matches and the default is deny",
            );
        }
        None => (None, Vec::new()),
    };
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

    // 1b. Header preconditions, before the token so clients learn without spending one.
    for (lower, display, format) in rule.map_or(&[][..], |r| &r.headers[..]) {
        if let Err(detail) = check_header(req, lower, display, *format) {
            return deny(Denial::BadRequest(detail), rule, "header precondition");
        }
    }

    // 2. Exactly one `Authorization: Bearer <token>`.
    let values: Vec<&str> = req.header_values("authorization").collect();
    let Some(token) = extract_bearer(&values) else {
        return deny(Denial::MissingToken, rule, "no bearer token");
    };

    // 3. Compact JWS with JSON header and payload.
    let jws = match parse(token, cfg.max_token_bytes) {
        Ok(j) => j,
        Err(e) => return deny(Denial::InvalidToken, rule, e.as_str()),
    };

    // 4a. A provider that allows this algorithm (and issuer, when it names one).
    let Some(alg) = Algorithm::from_header(&jws.header.alg) else {
        return deny(Denial::InvalidToken, rule, "algorithm not accepted");
    };
    let iss = jws.claims.get("iss").and_then(|v| v.as_str());
    let allowed = |i: &usize| {
        rule.and_then(|r| r.providers.as_ref())
            .is_none_or(|ids| ids.contains(i))
    };
    let chosen = (0..cfg.providers.len()).filter(allowed).find(|&i| {
        cfg.providers.get(i).is_some_and(|p| {
            p.algorithms.contains(&alg) && p.issuer.as_deref().is_none_or(|want| iss == Some(want))
        })
    });
    let Some((pid, provider)) = chosen.and_then(|i| cfg.providers.get(i).map(|p| (i, p))) else {
        return deny(
            Denial::InvalidToken,
            rule,
            "no provider accepts this algorithm and issuer",
        );
    };

    // 6a. Times first: expired tokens cost no signature work.
    if let Err(e) = check_times(&jws.claims, inp.now_s, cfg.clock_skew_s) {
        return deny(Denial::InvalidToken, rule, e.as_str());
    }

    // 4b + 5. Keys and signature.
    let message = jws.signing_input.as_bytes();
    match alg {
        Algorithm::HS256 => {
            let ok = provider
                .secret
                .as_ref()
                .is_some_and(|s| verify_hs256(&s.0, message, &jws.signature));
            if !ok {
                return deny(Denial::InvalidToken, rule, "bad signature");
            }
        }
        Algorithm::RS256 => {
            let keys = match (inp.keys.availability(pid), inp.keys.keys(pid)) {
                (KeyAvailability::Ready, Some(k)) => k,
                (KeyAvailability::Loading, _) => {
                    return outcome(
                        Decision::AwaitKeys {
                            provider: pid,
                            refetch: false,
                        },
                        rule,
                        "keys loading",
                    );
                }
                _ => return deny(Denial::Unavailable, rule, "no keys obtainable"),
            };
            let kid = jws.header.kid.as_deref();
            if let Some(k) = kid {
                if !keys.has_kid(k) {
                    if inp.keys.may_refetch(pid) {
                        return outcome(
                            Decision::AwaitKeys {
                                provider: pid,
                                refetch: true,
                            },
                            rule,
                            "unknown kid",
                        );
                    }
                    return deny(Denial::InvalidToken, rule, "unknown kid");
                }
            }
            let mut verified = false;
            for key in keys.candidates(kid).take(MAX_KIDLESS_TRIES) {
                match inp.backend.verify_rs256(key, message, &jws.signature) {
                    Ok(true) => {
                        verified = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(_) => return deny(Denial::Unavailable, rule, "signature backend failed"),
                }
            }
            if !verified {
                return deny(Denial::InvalidToken, rule, "bad signature");
            }
        }
    }

    // 6b. Issuer and audience.
    if let Err(e) = check_claims(&jws.claims, provider, inp.now_s, cfg.clock_skew_s) {
        return deny(Denial::InvalidToken, rule, e.as_str());
    }

    // 7. Identity.
    if let Some(claim) = identity::missing_claim(&jws.claims, &provider.required_claims) {
        return deny(
            Denial::UnknownAccount,
            rule,
            &format!("required claim {claim} missing"),
        );
    }

    // 7b. Account resolution.
    let mut account_headers = Vec::new();
    if let Some(acc) = &provider.account {
        let Some(path) = acc.path.render(&jws.claims) else {
            return deny(
                Denial::UnknownAccount,
                rule,
                "claim for the account path missing",
            );
        };
        let key = format!("{pid}:{path}");
        match inp.accounts.account(pid, &key) {
            AccountState::Found(fields) => {
                for (header, field) in &acc.headers {
                    if let Some(value) = fields.get(field).and_then(identity::header_value) {
                        if !identity::header_safe(&value) {
                            return deny(
                                Denial::UnknownAccount,
                                rule,
                                &format!("account field for {header} has control characters"),
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

    // 8. Permissions.
    if let Some(r) = rule {
        if !r.requirement.is_empty() {
            let grants = Grants::from_claims(&jws.claims, &provider.claims, &cfg.roles);
            if let Err(missing) = r.requirement.check(&grants, req, &captures) {
                return deny(
                    Denial::InsufficientPermissions,
                    rule,
                    &format!("missing permission {missing}"),
                );
            }
        }
        // 9. Domain constraint.
        if let Some(m) = &r.member_of {
            if !m.holds(&jws.claims, req, &captures) {
                return deny(
                    Denial::PermissionDenied,
                    rule,
                    &format!("request value not in claim {}", m.claim),
                );
            }
        }
    }

    // Success: identity headers.
    match identity::forward_headers(&cfg.forward, &jws.claims, jws.payload_b64) {
        Ok(mut headers) => {
            headers.extend(account_headers);
            outcome(
                Decision::Allow { headers },
                rule,
                format!("verified by {}", provider.name),
            )
        }
        Err(header) => deny(
            Denial::UnknownAccount,
            rule,
            &format!("claim for {header} has control characters"),
        ),
    }
}
