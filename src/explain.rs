//! Why a request gets the answer it gets, offline: the `bearer-guard explain` command. It
//! runs the filter's own decision ([`decide_traced`]) on a request given on the command
//! line and formats the steps the decision recorded as it went — which rule matched and
//! why the others did not, the header preconditions, which provider judged the token and
//! how, the required claims and the account, the grants and the requirement each covers,
//! and the exact reply. Nothing here walks the steps again, so it cannot drift.
//!
//! Never prints a token, a signature or a secret: only the token's header fields (`alg`,
//! `kid`) and the claims the decision reads.

use crate::account::AccountState;
use crate::config::{Config, Mode};
use crate::introspection::Known;
use crate::keys::KeySet;
pub use crate::pipeline::trace::Check;
use crate::pipeline::trace::Trace;
use crate::pipeline::{
    decide_traced, AccountLookup, Decision, FixedRevocations, Inputs, KeyLookup, Outcome,
};
use crate::request::Request;
use crate::resource::Resources;
use crate::revocation::RevocationList;
use crate::shared::KeyAvailability;
use crate::verify::SignatureBackend;
use serde_json::{json, Map, Value};

/// Everything `explain` says about one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The decision's steps.
    pub trace: Trace,
    /// The rule that decides (`None`: no rule matched, the default policy applies).
    pub rule: Option<String>,
    /// Enforce or audit for this request.
    pub mode: Mode,
    /// The HTTP status Envoy answers with (200: the request goes upstream).
    pub status: u32,
    /// The exact body of a local reply (empty when the request goes upstream).
    pub body: String,
    /// Headers of the local reply, or the identity headers set for the upstream.
    pub headers: Vec<(String, String)>,
    /// The filter's own reason, as its debug log would say.
    pub note: String,
}

/// The account service's and the introspection endpoint's answers to assume (offline
/// there is no service to ask).
struct GivenAccount<'a> {
    account: Option<&'a Map<String, Value>>,
    /// What the introspection endpoint said (`Unknown`: no answer given, the call counts
    /// as failed).
    introspection: Known,
}

impl AccountLookup for GivenAccount<'_> {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        match self.account {
            Some(a) => AccountState::Found(a),
            None => AccountState::NotFound,
        }
    }
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
        false
    }
    fn introspected(&self, _provider: usize, _key: &str) -> Known {
        self.introspection.clone()
    }
}

/// What an introspection answer given to `explain` means at `now_s`: `Some(claims)` for
/// an active token, `None` for one it does not vouch for (as the filter reads a 200).
pub fn introspection_answer(body: &str, now_s: i64) -> Option<Map<String, Value>> {
    crate::introspection::interpret(Some("200"), body.as_bytes(), now_s)
        .ok()
        .flatten()
}

/// The key set given for every provider, if any (none: keys cannot be obtained).
/// The keys `explain` was given, for every provider (inline keys are the pipeline's).
struct Keys<'a>(Option<&'a KeySet>);

impl KeyLookup for Keys<'_> {
    fn availability(&self, _provider: usize) -> KeyAvailability {
        match self.0 {
            Some(_) => KeyAvailability::Ready,
            None => KeyAvailability::Unavailable,
        }
    }
    fn keys(&self, _provider: usize) -> Option<&KeySet> {
        self.0
    }
    fn may_refetch(&self, _provider: usize) -> bool {
        false
    }
}

/// Explains the decision on `req` with these keys (`None`: none given) and revocation
/// list (`None`: none obtainable; it stands for every provider's list) at `now_s`,
/// assuming the account service answers `account` (`None`: 404) when the provider
/// resolves accounts, and the introspection endpoint `introspection` (see
/// [`Explain::introspection`]).
pub fn explain(
    config: &Config,
    keys: Option<&KeySet>,
    revocation: Option<&RevocationList>,
    backend: &dyn SignatureBackend,
    account: Option<&Map<String, Value>>,
    req: &Request,
    now_s: i64,
) -> Explanation {
    explain_with(
        config,
        Explain {
            keys,
            revocation,
            backend,
            account,
            introspection: None,
        },
        req,
        now_s,
    )
}

/// What `explain` assumes of the world besides the request.
pub struct Explain<'a> {
    /// The key set given for every provider (`None`: none).
    pub keys: Option<&'a KeySet>,
    /// The revocation list for every provider that names one (`None`: none obtainable).
    pub revocation: Option<&'a RevocationList>,
    /// RSA signature backend.
    pub backend: &'a dyn SignatureBackend,
    /// The account service's answer (`None`: 404).
    pub account: Option<&'a Map<String, Value>>,
    /// The introspection endpoint's answer: `None` none given (the call fails: 500),
    /// `Some(None)` not active, `Some(Some(claims))` active (see [`introspection_answer`]).
    pub introspection: Option<Option<&'a Map<String, Value>>>,
}

/// [`explain`] with an introspection answer too.
pub fn explain_with(config: &Config, world: Explain, req: &Request, now_s: i64) -> Explanation {
    let Explain {
        keys,
        revocation,
        backend,
        account,
        introspection,
    } = world;
    if let Some(r) = config.resources.answer(req) {
        // The filter answers a metadata document itself, before any rule.
        return Explanation {
            trace: Trace::default(),
            rule: None,
            mode: Mode::Enforce,
            status: r.status,
            body: r.body,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            note: "the protected resource's metadata document (RFC 9728)".to_string(),
        };
    }
    let keys = Keys(keys);
    let accounts = GivenAccount {
        account,
        introspection: match introspection {
            Some(Some(claims)) => Known::Active(std::rc::Rc::new(claims.clone())),
            Some(None) => Known::Inactive,
            None => Known::Unknown,
        },
    };
    let mut inputs = Inputs::new(config, &keys, backend, now_s).accounts(&accounts);
    let given = revocation.map(FixedRevocations);
    if let Some(lists) = &given {
        inputs = inputs.revocations(lists);
    }
    let mut trace = Trace::default();
    let outcome = decide_traced(&inputs, req, &mut trace);
    let mut e = Explanation {
        trace,
        rule: outcome.rule.map(|i| config.rule_name(Some(i)).to_string()),
        mode: outcome.mode,
        status: 200,
        body: String::new(),
        headers: Vec::new(),
        note: outcome.note.to_string(),
    };
    reply(&mut e, &outcome, req, &config.resources);
    e
}

/// The reply Envoy sends (or the headers it forwards) for an outcome.
fn reply(e: &mut Explanation, outcome: &Outcome, req: &Request, resources: &Resources) {
    match &outcome.decision {
        Decision::Allow { headers } => e.headers = headers.clone(),
        Decision::Deny(_) if outcome.mode == Mode::Audit => e.headers = outcome.identity.clone(),
        Decision::Deny(d) => {
            let challenge = resources.challenge(req, outcome.scope.as_deref());
            let r = d.reply_with(&req.request_id, &challenge);
            e.status = r.status;
            e.body = r.body;
            e.headers = r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
        }
        // Offline keys never load and accounts never wait: not reached.
        Decision::Await(_) => e.status = 500,
        // A GraphQL or MCP request without its body (`--body`): no answer yet.
        Decision::ReadBody { .. } => e.status = 0,
    }
}

impl Explanation {
    /// For scripts.
    pub fn to_json(&self) -> Value {
        let checks = |c: &[Check]| -> Vec<Value> {
            c.iter()
                .map(|c| json!({"step": c.step.to_string(), "ok": c.ok, "detail": c.detail()}))
                .collect()
        };
        json!({
            "status": self.status,
            "body": self.body,
            "headers": self.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "mode": match self.mode { Mode::Enforce => "enforce", Mode::Audit => "audit" },
            "rule": self.rule,
            "rules": checks(&self.trace.rules),
            "graphql": checks(&self.trace.fields),
            "preconditions": checks(&self.trace.preconditions),
            "token": checks(&self.trace.token),
            "identity": checks(&self.trace.identity),
            "grants": self.trace.grants.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "requirements": self.trace.requirements.iter().map(|r| json!({
                "required": r.required, "any_of": r.any_of, "covered_by": r.covered_by,
                "unrenderable": r.unrenderable})).collect::<Vec<_>>(),
            "membership": self.trace.membership.as_ref().map(|m| json!({"ok": m.ok, "detail": m.detail()})),
            "note": self.note,
        })
    }

    /// For people.
    pub fn to_text(&self) -> String {
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let mut out = String::new();
        out.push_str("Rules (first match wins):\n");
        for r in &self.trace.rules {
            out.push_str(&format!("  {} {} — {}\n", mark(r.ok), r.step, r.finding));
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
        for (title, checks) in [
            (
                "GraphQL root fields or MCP messages (each judged by its rule)",
                &self.trace.fields,
            ),
            ("Header preconditions", &self.trace.preconditions),
            ("Token", &self.trace.token),
            ("Identity", &self.trace.identity),
        ] {
            if !checks.is_empty() {
                out.push_str(&format!("{title}:\n"));
                for c in checks {
                    out.push_str(&format!("  {} {}: {}\n", mark(c.ok), c.step, c.finding));
                }
            }
        }
        if !self.trace.grants.is_empty() {
            let grants: Vec<String> = self.trace.grants.iter().map(ToString::to_string).collect();
            out.push_str(&format!("Grants: {}\n", grants.join(", ")));
        }
        if !self.trace.requirements.is_empty() {
            out.push_str("Requirements:\n");
            for r in &self.trace.requirements {
                let kind = if r.any_of { "any of" } else { "all of" };
                let verdict = match (&r.covered_by, r.unrenderable) {
                    (Some(g), _) => format!("✓ covered by {g}"),
                    (None, true) => "✗ a request value it needs is missing or invalid".to_string(),
                    (None, false) => "✗ no grant covers it".to_string(),
                };
                out.push_str(&format!("  [{kind}] {} — {verdict}\n", r.required));
            }
        }
        if let Some(m) = &self.trace.membership {
            out.push_str(&format!("Membership: {} {}\n", mark(m.ok), m.finding));
        }
        if self.status == 0 {
            out.push_str("Result: the request goes on; its body is read to judge its GraphQL root fields or MCP messages (pass --body to see the answer)\n");
        } else if self.status == 200 {
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
