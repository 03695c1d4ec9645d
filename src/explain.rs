//! Why a request gets the answer it gets, offline: the `bearer-guard explain` command. It
//! runs the same decision as the filter ([`decide`]) on a key set and a request given on
//! the command line, then walks the same steps again to say, for a person (or a script),
//! which rule matched and why the others did not, which provider judged the token and
//! how, which grants it carries and which requirement each covers.
//!
//! Never prints a token, a signature or a secret: only the token's header fields (`alg`,
//! `kid`) and the claims the decision reads.

use crate::account::AccountState;
use crate::authorizer::{GrantSource, Grants, RequirementCheck};
use crate::config::{Authentication, Config, Mode};
use crate::credential::{credential, TokenSource};
use crate::crypto::Algorithm;
use crate::jwks::{KeyAvailability, KeySet};
use crate::pipeline::{
    decide, rule_sources, select_provider, verify_signature, AccountLookup, Decision, Inputs,
    KeyLookup, Outcome,
};
use crate::request::{is_normalized, Request};
use crate::token::parse;
use crate::verifier::{check_claims, check_times, SignatureBackend};
use serde_json::{json, Map, Value};

/// One step of the explanation: what was checked, whether it passed, in a few words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The step.
    pub step: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// Everything `explain` says about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Each rule, in order: name, what it matches, and whether this request matched it.
    pub rules: Vec<Check>,
    /// The rule that decides (`None`: no rule matched, the default policy applies).
    pub rule: Option<String>,
    /// Enforce or audit for this request.
    pub mode: Mode,
    /// Token checks in pipeline order (empty when no token was needed or sent).
    pub token: Vec<Check>,
    /// The grants the token carries and where each came from.
    pub grants: Vec<String>,
    /// Each requirement of the rule with the grant that covers it.
    pub requirements: Vec<RequirementCheck>,
    /// The membership check, when the rule has one.
    pub membership: Option<Check>,
    /// The HTTP status Envoy answers with (200: the request goes upstream).
    pub status: u32,
    /// The exact body of a local reply (empty when the request goes upstream).
    pub body: String,
    /// Headers of the local reply, or the identity headers set for the upstream.
    pub headers: Vec<(String, String)>,
    /// The filter's own reason, as its debug log would say.
    pub note: String,
}

/// The account service's answer to assume (offline there is no service to ask).
struct GivenAccount<'a>(Option<&'a Map<String, Value>>);

impl AccountLookup for GivenAccount<'_> {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        match self.0 {
            Some(a) => AccountState::Found(a),
            None => AccountState::NotFound,
        }
    }
    fn may_wait(&self) -> bool {
        false
    }
}

/// A fixed key set for every provider.
struct Keys<'a>(&'a KeySet);

impl KeyLookup for Keys<'_> {
    fn availability(&self, _provider: usize) -> KeyAvailability {
        KeyAvailability::Ready
    }
    fn keys(&self, _provider: usize) -> Option<&KeySet> {
        Some(self.0)
    }
    fn may_refetch(&self, _provider: usize) -> bool {
        false
    }
}

fn check(step: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        step: step.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// Explains the decision on `req` with these keys at `now_s`, assuming the account
/// service answers `account` (`None`: 404) when the provider resolves accounts.
pub fn explain(
    config: &Config,
    keys: &KeySet,
    backend: &dyn SignatureBackend,
    account: Option<&Map<String, Value>>,
    req: &Request,
    now_s: i64,
) -> Explanation {
    let keys = Keys(keys);
    let accounts = GivenAccount(account);
    let inputs = Inputs {
        config,
        keys: &keys,
        accounts: &accounts,
        backend,
        cache: None,
        verdicts: None,
        now_s,
    };
    let outcome = decide(&inputs, req);
    let mut e = Explanation {
        rules: Vec::new(),
        rule: outcome.rule.map(|i| config.rule_name(Some(i)).to_string()),
        mode: outcome.mode,
        token: Vec::new(),
        grants: Vec::new(),
        requirements: Vec::new(),
        membership: None,
        status: 200,
        body: String::new(),
        headers: Vec::new(),
        note: outcome.note.to_string(),
    };
    reply(&mut e, &outcome, req);

    // 1. Rules, first match wins.
    let path = req.path_only();
    if !is_normalized(path) {
        e.rules.push(check(
            "path",
            false,
            "not in normal form: no rule is matched",
        ));
        return e;
    }
    let host = req.host();
    let mut captures = None;
    for r in &config.rules {
        let verdict = if captures.is_some() {
            check(
                &r.name,
                false,
                format!(
                    "{}: not considered (an earlier rule matched)",
                    r.matcher.describe()
                ),
            )
        } else {
            match r.matcher.check(req, path, &host) {
                Ok(c) => {
                    captures = Some(c);
                    check(&r.name, true, format!("{}: matches", r.matcher.describe()))
                }
                Err(m) => check(
                    &r.name,
                    false,
                    format!("{}: {}", r.matcher.describe(), m.as_str()),
                ),
            }
        };
        e.rules.push(verdict);
    }
    let rule = outcome.rule.and_then(|i| config.rules.get(i));
    if rule.is_some_and(|r| r.public) {
        return e;
    }

    // 3-8. The token.
    let sources = rule_sources(config, rule);
    let wanted: Vec<String> = sources.iter().map(|s| s.describe()).collect();
    let (source, token) = match credential(req, &sources) {
        Ok(Some((i, token))) => (
            sources
                .get(i)
                .copied()
                .unwrap_or(&TokenSource::Authorization),
            token,
        ),
        found => {
            let optional = rule.is_some_and(|r| r.authentication == Authentication::Optional);
            let detail = match (found.is_ok(), optional) {
                (true, true) => "none sent; the rule's authentication is optional".to_string(),
                (true, false) => format!("none sent (looked in: {})", wanted.join(", ")),
                (false, _) => format!(
                    "not exactly one credential (looked in: {})",
                    wanted.join(", ")
                ),
            };
            e.token
                .push(check("credential", found.is_ok() && optional, detail));
            return e;
        }
    };
    e.token.push(check(
        "credential",
        true,
        format!("one token, from {}", source.describe()),
    ));
    let jws = match parse(token, config.max_token_bytes) {
        Ok(j) => j,
        Err(err) => {
            e.token.push(check("parse", false, err.as_str()));
            return e;
        }
    };
    let kid = jws.header.kid.as_deref().unwrap_or("(none)");
    e.token.push(check(
        "parse",
        true,
        format!("alg {}, kid {kid}", jws.header.alg),
    ));
    let iss = jws.claims.get("iss").and_then(Value::as_str);
    let Some(alg) = Algorithm::from_header(&jws.header.alg) else {
        e.token.push(check(
            "provider",
            false,
            format!("no provider accepts alg {}", jws.header.alg),
        ));
        return e;
    };
    let Some(pid) = select_provider(config, rule, alg, iss, source) else {
        let why: Vec<String> = config
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let reason = if rule
                    .and_then(|r| r.providers.as_ref())
                    .is_some_and(|ids| !ids.contains(&i))
                {
                    "not allowed on this rule"
                } else if p.token != *source {
                    "takes tokens from elsewhere"
                } else if !p.algorithms.contains(&alg) {
                    "does not accept this alg"
                } else {
                    return format!(
                        "{}: issuer differs (token iss {}, wanted {})",
                        p.name,
                        iss.unwrap_or("(none)"),
                        p.issuer.as_deref().unwrap_or("(any)")
                    );
                };
                format!("{}: {reason}", p.name)
            })
            .collect();
        e.token.push(check(
            "provider",
            false,
            format!("none eligible ({})", why.join("; ")),
        ));
        return e;
    };
    let Some(provider) = config.providers.get(pid) else {
        return e;
    };
    e.token.push(check(
        "provider",
        true,
        format!(
            "{} (the first eligible provider judges the token)",
            provider.name
        ),
    ));
    match check_times(&jws.claims, now_s, config.clock_skew_s) {
        Ok(exp) => e.token.push(check(
            "times",
            true,
            format!(
                "exp in {} s (clock skew {} s)",
                exp - now_s,
                config.clock_skew_s
            ),
        )),
        Err(err) => {
            e.token.push(check("times", false, err.as_str()));
            return e;
        }
    }
    match verify_signature(
        &inputs,
        pid,
        alg,
        jws.header.kid.as_deref(),
        jws.signing_input.as_bytes(),
        &jws.signature,
    ) {
        Ok(_) => e.token.push(check("signature", true, "valid")),
        Err((_, note)) => {
            e.token.push(check("signature", false, note));
            return e;
        }
    }
    let iss_detail = match &provider.issuer {
        Some(want) => format!("iss {} (wanted {want})", iss.unwrap_or("(none)")),
        None => "issuer not checked".to_string(),
    };
    let aud_detail = if provider.audiences.is_empty() {
        "audience not checked".to_string()
    } else {
        format!(
            "aud {} (wanted one of {})",
            jws.claims
                .get("aud")
                .map_or("(none)".to_string(), Value::to_string),
            provider.audiences.join(", ")
        )
    };
    let claims_ok = check_claims(
        &jws.claims,
        provider.issuer.as_deref(),
        &provider.audiences,
        now_s,
        config.clock_skew_s,
    );
    e.token.push(check(
        "issuer and audience",
        claims_ok.is_ok(),
        format!("{iss_detail}; {aud_detail}"),
    ));
    if claims_ok.is_err() {
        return e;
    }

    // 9-11. Grants, requirements, membership.
    let grants = Grants::from_claims(&jws.claims, &provider.claims, &config.roles);
    e.grants = grants
        .items()
        .iter()
        .map(|(g, source)| match source {
            GrantSource::Permission => format!("{g} (permissions claim)"),
            GrantSource::Scope => format!("{g} (scope claim)"),
            GrantSource::Role(r) => format!("{g} (role {r})"),
        })
        .collect();
    if let (Some(r), Some(captures)) = (rule, captures.as_ref()) {
        e.requirements = r.requirement.explain(&grants, req, captures);
        if let Some(m) = &r.member_of {
            let value = m.source.read(req, captures);
            let holds = m.holds(&jws.claims, req, captures);
            e.membership = Some(check(
                "membership",
                holds,
                match value {
                    Some(v) => format!(
                        "request value {v:?} {} claim {}",
                        if holds { "is in" } else { "is not in" },
                        m.claim
                    ),
                    None => "the request value is missing or ambiguous".to_string(),
                },
            ));
        }
    }
    e
}

/// The reply Envoy sends (or the headers it forwards) for an outcome.
fn reply(e: &mut Explanation, outcome: &Outcome, req: &Request) {
    match &outcome.decision {
        Decision::Allow { headers } => e.headers = headers.clone(),
        Decision::Deny(_) if outcome.mode == Mode::Audit => e.headers = outcome.identity.clone(),
        Decision::Deny(d) => {
            let r = d.reply(&req.request_id);
            e.status = r.status;
            e.body = r.body;
            e.headers = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
        }
        // Offline keys never load and accounts never wait: not reached.
        Decision::AwaitKeys { .. } | Decision::AwaitAccount { .. } => e.status = 500,
    }
}

impl Explanation {
    /// For scripts.
    pub fn to_json(&self) -> Value {
        let checks = |c: &[Check]| -> Vec<Value> {
            c.iter()
                .map(|c| json!({"step": c.step, "ok": c.ok, "detail": c.detail}))
                .collect()
        };
        json!({
            "status": self.status,
            "body": self.body,
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "mode": match self.mode { Mode::Enforce => "enforce", Mode::Audit => "audit" },
            "rule": self.rule,
            "rules": checks(&self.rules),
            "token": checks(&self.token),
            "grants": self.grants,
            "requirements": self.requirements.iter().map(|r| json!({
                "required": r.required, "any_of": r.any_of, "covered_by": r.covered_by,
                "unrenderable": r.unrenderable})).collect::<Vec<_>>(),
            "membership": self.membership.as_ref().map(|m| json!({"ok": m.ok, "detail": m.detail})),
            "note": self.note,
        })
    }

    /// For people.
    pub fn to_text(&self) -> String {
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let mut out = String::new();
        out.push_str("Rules (first match wins):\n");
        for r in &self.rules {
            out.push_str(&format!("  {} {} — {}\n", mark(r.ok), r.step, r.detail));
        }
        out.push_str(&format!(
            "Deciding rule: {}{}\n",
            self.rule.as_deref().unwrap_or("(none: the default policy)"),
            if self.mode == Mode::Audit {
                " (audit mode)"
            } else {
                ""
            }
        ));
        if !self.token.is_empty() {
            out.push_str("Token:\n");
            for c in &self.token {
                out.push_str(&format!("  {} {}: {}\n", mark(c.ok), c.step, c.detail));
            }
        }
        if !self.grants.is_empty() {
            out.push_str(&format!("Grants: {}\n", self.grants.join(", ")));
        }
        if !self.requirements.is_empty() {
            out.push_str("Requirements:\n");
            for r in &self.requirements {
                let kind = if r.any_of { "any of" } else { "all of" };
                let verdict = match (&r.covered_by, r.unrenderable) {
                    (Some(g), _) => format!("✓ covered by {g}"),
                    (None, true) => "✗ a request value it needs is missing or invalid".to_string(),
                    (None, false) => "✗ no grant covers it".to_string(),
                };
                out.push_str(&format!("  [{kind}] {} — {verdict}\n", r.required));
            }
        }
        if let Some(m) = &self.membership {
            out.push_str(&format!("Membership: {} {}\n", mark(m.ok), m.detail));
        }
        if self.status == 200 {
            let headers: Vec<String> = self
                .headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            out.push_str(&format!(
                "Result: forwarded upstream{}{}\n",
                if self.mode == Mode::Audit && !self.note.is_empty() && self.note != "verified" {
                    " (audit mode)"
                } else {
                    ""
                },
                if headers.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", headers.join(", "))
                }
            ));
        } else {
            out.push_str(&format!("Result: {} {}\n", self.status, self.body));
            for (k, v) in &self.headers {
                out.push_str(&format!("  {k}: {v}\n"));
            }
        }
        out.push_str(&format!("Why: {}\n", self.note));
        out
    }
}
