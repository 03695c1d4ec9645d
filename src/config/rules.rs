//! `rules[i]`: which requests a rule applies to, and what it requires of them.

use super::policy::{Authentication, Mode, MODES};
use super::provider::{read_claim_values, Provider};
use super::reader::{choose, claim_path, Fields};
use crate::authz::matcher::{Matcher, RawMatch};
use crate::authz::{HeaderFormat, Membership, RequestValue, Requirement, StepUp, Template};
use crate::error::{err, ConfigError};
use crate::graphql::{FieldMatch, OperationKind};
use crate::mcp::McpMatch;
use crate::token::{Audiences, ClaimCondition};
use serde_json::Value;

/// A rule as written.
pub(super) struct RawRule {
    graphql: Option<RawGraphql>,
    mcp: Option<McpMatch>,
    filter_lists: bool,
    audiences: Vec<String>,
    name: Option<String>,
    matcher: RawMatch,
    public: bool,
    providers: Option<Vec<String>>,
    permissions: Vec<String>,
    all_of: Vec<String>,
    any_of: Vec<String>,
    member_of: Option<RawMemberOf>,
    headers: Vec<(String, String, HeaderFormat)>,
    mode: Option<Mode>,
    authentication: Authentication,
    acr_values: Option<Vec<String>>,
    max_age_s: Option<u64>,
    claim_values: Vec<ClaimCondition>,
}

impl RawRule {
    /// Reads `rules[i]` (`at` is its path).
    pub(super) fn read(value: &Value, at: &str) -> Result<RawRule, ConfigError> {
        let f = Fields::of(
            value,
            at,
            &[
                "name",
                "match",
                "public",
                "providers",
                "permissions",
                "all_of",
                "any_of",
                "member_of",
                "headers",
                "mode",
                "authentication",
                "acr_values",
                "max_age_s",
                "claim_values",
                "filter_lists",
                "audiences",
            ],
        )?;
        let name = f.opt_string("name")?;
        let Some(m) = f.object("match", MATCH_KEYS)? else {
            return err(f.path("match"), "missing field");
        };
        let matcher = RawMatch {
            methods: m.strings("methods")?,
            path: m.opt_string("path")?,
            prefix: m.opt_string("prefix")?,
            template: m.opt_string("template")?,
            host: m.opt_string("host")?,
            route: m.opt_string("route")?,
        };
        let graphql = match m.object("graphql", &["operation", "fields"])? {
            Some(g) => Some(RawGraphql {
                operation: g.choice_or("operation", OPERATIONS, None)?,
                fields: g.strings("fields")?,
                at: g.path("fields"),
            }),
            None => None,
        };
        let mcp = super::mcp::read_match(&m)?;
        let public = f.bool_or("public", false)?;
        let providers = f.opt_strings("providers")?;
        let permissions = f.strings("permissions")?;
        let all_of = f.strings("all_of")?;
        let any_of = f.strings("any_of")?;
        let member_of = match f.object("member_of", &["query", "header", "path", "claim"])? {
            Some(g) => Some(RawMemberOf {
                query: g.opt_string("query")?,
                header: g.opt_string("header")?,
                path: g.opt_string("path")?,
                claim: g.string("claim")?,
            }),
            None => None,
        };
        let formats = [
            ("present", HeaderFormat::Present),
            ("uuid", HeaderFormat::Uuid),
            ("uuidv7", HeaderFormat::Uuidv7),
        ];
        let headers = f
            .members("headers")?
            .into_iter()
            .map(|(name, at, v)| Ok((name, at.clone(), choose(v, &formats, &at)?)))
            .collect::<Result<_, _>>()?;
        let mode = match f.get("mode") {
            Some(v) => Some(choose(v, MODES, &f.path("mode"))?),
            None => None,
        };
        let authentication = f.choice_or(
            "authentication",
            &[
                ("required", Authentication::Required),
                ("optional", Authentication::Optional),
            ],
            Authentication::Required,
        )?;
        let max_age_s = match f.get("max_age_s") {
            Some(_) => Some(f.u64_or("max_age_s", 0)?),
            None => None,
        };
        Ok(RawRule {
            mcp,
            filter_lists: f.bool_or("filter_lists", false)?,
            audiences: f.strings("audiences")?,
            claim_values: read_claim_values(&f)?,
            acr_values: f.opt_strings("acr_values")?,
            max_age_s,
            graphql,
            name,
            matcher,
            public,
            providers,
            permissions,
            all_of,
            any_of,
            member_of,
            headers,
            mode,
            authentication,
        })
    }
}

const MATCH_KEYS: &[&str] = &[
    "methods", "path", "prefix", "template", "host", "route", "graphql", "mcp",
];

/// The JSON names of GraphQL operation kinds.
const OPERATIONS: &[(&str, Option<OperationKind>)] = &[
    ("query", Some(OperationKind::Query)),
    ("mutation", Some(OperationKind::Mutation)),
    ("subscription", Some(OperationKind::Subscription)),
];

/// `match.graphql` as written.
struct RawGraphql {
    operation: Option<OperationKind>,
    fields: Vec<String>,
    at: String,
}

/// A GraphQL name: `[_A-Za-z][_0-9A-Za-z]*`.
fn is_graphql_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

struct RawMemberOf {
    query: Option<String>,
    header: Option<String>,
    path: Option<String>,
    claim: String,
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Position in `rules`.
    pub index: usize,
    /// Name for logs (defaults to `rules[i]`).
    pub name: String,
    /// What requests it applies to.
    pub matcher: Matcher,
    /// Public rules skip every check.
    pub public: bool,
    /// Providers allowed on this rule (indices); `None` means all.
    pub providers: Option<Vec<usize>>,
    /// Permission requirements.
    pub requirement: Requirement,
    /// Domain constraint.
    pub member_of: Option<Membership>,
    /// Header preconditions: (lower-case name, name as written, format).
    pub headers: Vec<(String, String, HeaderFormat)>,
    /// Enforce or audit (the rule's own `mode`, else the configuration's).
    pub mode: Mode,
    /// Whether a request needs a credential.
    pub authentication: Authentication,
    /// The GraphQL operations and root fields it applies to (`match.graphql`); `None`: a
    /// rule for whole requests.
    pub graphql: Option<FieldMatch>,
    /// The MCP messages it applies to (`match.mcp`); `None`: a rule for whole requests.
    pub mcp: Option<McpMatch>,
    /// Filter the answers to the list messages it judges to what the caller may use
    /// (`filter_lists`).
    pub filter_lists: bool,
    /// `audiences`: the token's `aud` must also name one of these (`{resource}`: the
    /// request's protected resource); empty: no check beyond the provider's.
    pub audiences: Audiences,
    /// Step-up authentication (`acr_values`, `max_age_s`); `None`: any sign-in will do.
    pub step_up: Option<StepUp>,
    /// `claim_values`: conditions on the token's claims (403 when one fails).
    pub claim_values: Vec<ClaimCondition>,
}

/// A permission is non-empty, without whitespace; `*` is allowed only as a whole segment.
pub(super) fn check_permission(perm: &str, at: &str) -> Result<(), ConfigError> {
    if perm.is_empty() || perm.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(at, format!("{perm:?} is not a valid permission"));
    }
    if perm
        .split(':')
        .any(|seg| seg.is_empty() || (seg.contains('*') && seg != "*"))
    {
        return err(
            at,
            format!("{perm:?}: empty segment or '*' inside a segment"),
        );
    }
    Ok(())
}

/// Compiles `rules[i]` against the compiled providers; `mode` is the top-level one.
pub(super) fn compile(
    r: RawRule,
    i: usize,
    providers: &[Provider],
    (mode, has_resources): (Mode, bool),
) -> Result<Rule, ConfigError> {
    let at = format!("rules[{i}]");
    if r.graphql.is_some() && r.mcp.is_some() {
        return err(
            format!("{at}.match"),
            "a rule judges GraphQL fields or MCP messages, not both",
        );
    }
    super::mcp::check_filter_lists(r.filter_lists, r.mcp.as_ref(), &at)?;
    let audiences = super::mcp::audiences(r.audiences, &format!("{at}.audiences"), has_resources)?;
    let matcher = Matcher::compile(&r.matcher, &format!("{at}.match"))?;
    let has_checks = !r.permissions.is_empty()
        || !r.all_of.is_empty()
        || !r.any_of.is_empty()
        || r.member_of.is_some()
        || r.providers.is_some()
        || r.acr_values.is_some()
        || r.max_age_s.is_some()
        || !r.claim_values.is_empty()
        || !audiences.is_empty();
    if r.public && has_checks {
        return err(
            format!("{at}.public"),
            "a public rule cannot also require permissions, membership, providers, claim values, audiences or a step-up",
        );
    }
    let step_up = step_up(r.acr_values, r.max_age_s, &at)?;
    if (step_up.is_some() || !r.claim_values.is_empty() || !audiences.is_empty())
        && r.authentication == Authentication::Optional
    {
        // A request without a credential would pass where a weaker token is refused.
        return err(
            format!("{at}.authentication"),
            "a step-up (acr_values, max_age_s), claim_values or audiences needs authentication \"required\"",
        );
    }
    if r.public && r.authentication == Authentication::Optional {
        return err(
            format!("{at}.authentication"),
            "a public rule takes no credential: \"optional\" is for rules that use one when it is sent",
        );
    }
    let provider_ids = match r.providers {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return err(format!("{at}.providers"), "must not be empty");
            }
            let mut ids = Vec::new();
            for (j, name) in list.iter().enumerate() {
                match providers.iter().position(|p| &p.name == name) {
                    Some(id) => ids.push(id),
                    None => {
                        return err(
                            format!("{at}.providers[{j}]"),
                            format!("unknown provider {name:?}"),
                        )
                    }
                }
            }
            Some(ids)
        }
    };
    let params = matcher.params();
    let compile_list = |list: &[String], key: &str| -> Result<Vec<Template>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(j, s)| {
                let field = format!("{at}.{key}[{j}]");
                let t = Template::compile(s, &params, &field)?;
                check_permission(&t.shape(), &field)?;
                Ok(t)
            })
            .collect()
    };
    let mut all_of = compile_list(&r.permissions, "permissions")?;
    all_of.extend(compile_list(&r.all_of, "all_of")?);
    let any_of = compile_list(&r.any_of, "any_of")?;
    let member_of = match r.member_of {
        None => None,
        Some(m) => {
            let field = format!("{at}.member_of");
            let source = match (m.query, m.header, m.path) {
                (Some(q), None, None) => RequestValue::Query(q),
                (None, Some(h), None) => RequestValue::Header(h.to_ascii_lowercase()),
                (None, None, Some(p)) => {
                    if !params.contains(&p.as_str()) {
                        return err(
                            format!("{field}.path"),
                            format!("the rule's template has no {{{p}}} segment"),
                        );
                    }
                    RequestValue::Path(p)
                }
                _ => return err(field, "exactly one of query, header or path is required"),
            };
            Some(Membership {
                source,
                claim: claim_path(&m.claim, &format!("{field}.claim"))?,
            })
        }
    };
    let graphql = match r.graphql {
        None => None,
        Some(g) => {
            for (j, f) in g.fields.iter().enumerate() {
                if !is_graphql_name(f) {
                    return err(
                        format!("{}[{j}]", g.at),
                        format!("{f:?} is not a GraphQL field name"),
                    );
                }
            }
            Some(FieldMatch {
                operation: g.operation,
                fields: g.fields,
            })
        }
    };
    let mut headers = Vec::new();
    for (name, field, format) in r.headers {
        let lower = name.to_ascii_lowercase();
        if lower.is_empty()
            || !lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return err(field, "not a valid header name");
        }
        headers.push((lower, name, format));
    }
    Ok(Rule {
        index: i,
        name: r.name.unwrap_or_else(|| at.clone()),
        matcher,
        public: r.public,
        providers: provider_ids,
        requirement: Requirement { all_of, any_of },
        member_of,
        headers,
        mode: r.mode.unwrap_or(mode),
        authentication: r.authentication,
        graphql,
        mcp: r.mcp,
        filter_lists: r.filter_lists,
        audiences,
        step_up,
        claim_values: r.claim_values,
    })
}

/// The longest `max_age_s`: a year.
const MAX_STEP_UP_AGE_S: u64 = 365 * 24 * 3600;

/// `acr_values` and `max_age_s`, checked.
fn step_up(
    acr_values: Option<Vec<String>>,
    max_age_s: Option<u64>,
    at: &str,
) -> Result<Option<StepUp>, ConfigError> {
    if let Some(values) = &acr_values {
        if values.is_empty() {
            return err(format!("{at}.acr_values"), "must not be empty");
        }
        for (j, v) in values.iter().enumerate() {
            if v.is_empty()
                || v.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
            {
                return err(
                    format!("{at}.acr_values[{j}]"),
                    format!("{v:?} is not an authentication context class reference"),
                );
            }
        }
    }
    if max_age_s.is_some_and(|s| s > MAX_STEP_UP_AGE_S) {
        return err(
            format!("{at}.max_age_s"),
            format!("at most {MAX_STEP_UP_AGE_S}"),
        );
    }
    if acr_values.is_none() && max_age_s.is_none() {
        return Ok(None);
    }
    Ok(Some(StepUp {
        acr_values: acr_values.unwrap_or_default(),
        max_age_s,
    }))
}
