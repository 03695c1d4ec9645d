//! What a decision is: allow, deny, wait ([`Wait`], the one list of the kinds of waiting)
//! or read the body; the [`Outcome`] around it with what logs, metrics and caches need;
//! and the three classes a combination of parts knows.

use crate::config::{Mode, Rule};
use crate::reply::Denial;
use crate::token::cache::{CachedToken, SharedVerdict};
use crate::token::TokenSource;
use std::borrow::Cow;

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
    /// A request judged by its body's parts (GraphQL root fields, MCP messages): the body
    /// is held until it is complete, then the request is decided with it.
    ReadBody {
        /// The token's identity headers (empty without a credential).
        headers: Vec<(String, String)>,
        /// The head waits with the body (`graphql.hold_head`, `mcp.hold_head`): a refused
        /// request never reaches the upstream, not even its head.
        hold_head: bool,
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
    /// The authorization server's introspection answer for an opaque token.
    Introspection {
        /// Provider index.
        provider: usize,
        /// Lookup key (the endpoint's fingerprint and the token's keyed digest).
        key: String,
        /// The token to send.
        token: OpaqueToken,
    },
}

/// A token carried to the call that introspects it: never printed (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct OpaqueToken(pub String);

impl std::fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
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
            Wait::Introspection { provider, key, .. } => {
                matches!(other, Wait::Introspection { provider: p, key: k, .. } if p == provider && k == key)
            }
        }
    }

    /// In a few words, for logs.
    pub fn describe(&self) -> String {
        match self {
            Wait::Keys { provider, .. } => format!("keys of provider #{provider}"),
            Wait::Revocation { provider } => format!("the revocation list of provider #{provider}"),
            Wait::Account { .. } => "an account lookup".to_string(),
            Wait::Introspection { provider, .. } => {
                format!("the introspection of a token of provider #{provider}")
            }
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
    /// The scopes the rule requires, space-separated, for an `insufficient_scope`
    /// challenge (rendered from the request where a permission has placeholders).
    pub scope: Option<String>,
    /// An MCP request's messages (for metrics) and the lists whose answers are filtered.
    pub mcp: Option<Box<super::mcp::McpNote>>,
}

impl Outcome {
    /// A refusal decided outside the pipeline (no rule, enforced).
    pub fn refused(denial: Denial, note: &'static str) -> Outcome {
        outcome(Decision::Deny(denial), None, note)
    }
}

/// A step that stopped the decision — a denial or a wait — with a note for logs and
/// what the revocation step noted for its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// A denial or a wait.
    pub decision: Decision,
    /// Why, in a few words (never token material).
    pub note: &'static str,
    /// What the revocation step found.
    pub revocation: RevocationNote,
}

impl Stop {
    /// A step refused the request.
    pub fn deny(denial: Denial, note: &'static str) -> Stop {
        Stop {
            decision: Decision::Deny(denial),
            note,
            revocation: RevocationNote::None,
        }
    }

    /// A step waits.
    pub fn wait(wait: Wait, note: &'static str) -> Stop {
        Stop {
            decision: Decision::Await(wait),
            note,
            revocation: RevocationNote::None,
        }
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

pub(crate) fn deny(d: Denial, rule: Option<&Rule>, note: impl Into<Cow<'static, str>>) -> Outcome {
    outcome(Decision::Deny(d), rule, note)
}

pub(crate) fn outcome(
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
        scope: None,
        mcp: None,
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
