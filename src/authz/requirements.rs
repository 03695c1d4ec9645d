//! A rule's requirements: permission templates filled from the request, and how they
//! are checked against a token's grants.

use super::grants::{GrantSource, Grants};
use super::Refused;
use crate::authz::matcher::Captures;
use crate::error::ConfigError;
use crate::request::Request;

/// Where a value in the request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestValue {
    /// A query parameter (single occurrence, percent-decoded).
    Query(String),
    /// A request header (single occurrence; name lower-case).
    Header(String),
    /// A named segment of the rule's path template.
    Path(String),
}

impl RequestValue {
    /// Reads the value from the request; `None` when missing or ambiguous.
    pub fn read(&self, req: &Request, captures: &Captures) -> Option<String> {
        match self {
            RequestValue::Query(name) => req.query_param(name),
            RequestValue::Header(name) => req.header(name).map(str::to_string),
            RequestValue::Path(name) => captures
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| crate::request::decode_path_segment(v)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(RequestValue),
}

/// A permission that may contain `{header.x}`, `{query.x}` or `{path.x}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Compiles `text`; `params` are the rule template's capture names.
    pub fn compile(text: &str, params: &[&str], at: &str) -> Result<Template, ConfigError> {
        let error = |m: String| {
            Err(ConfigError {
                field: at.to_string(),
                message: m,
            })
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (lit, after) = rest.split_at(open);
            if !lit.is_empty() {
                parts.push(Part::Literal(lit.to_string()));
            }
            let Some(close) = after.find('}') else {
                return error(format!("unclosed '{{' in {text:?}"));
            };
            let inner = after.get(1..close).unwrap_or("");
            let var = match inner.split_once('.') {
                Some(("header", h)) if !h.is_empty() => {
                    RequestValue::Header(h.to_ascii_lowercase())
                }
                Some(("query", q)) if !q.is_empty() => RequestValue::Query(q.to_string()),
                Some(("path", p)) if params.contains(&p) => RequestValue::Path(p.to_string()),
                Some(("path", p)) => {
                    return error(format!("the rule's template has no {{{p}}} segment"))
                }
                _ => {
                    return error(format!(
                        "{{{inner}}}: use {{header.NAME}}, {{query.NAME}} or {{path.NAME}}"
                    ))
                }
            };
            parts.push(Part::Var(var));
            rest = after.get(close + 1..).unwrap_or("");
        }
        if rest.contains('}') {
            return error(format!("stray '}}' in {text:?}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The permission when it has no placeholder.
    pub fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Literal(l)] => Some(l),
            _ => None,
        }
    }

    /// The permission with placeholders replaced by a sample value (for validation).
    pub fn shape(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Var(_) => "v",
            })
            .collect()
    }

    /// Renders the permission for a request. A missing value, or one that could change
    /// the permission's shape (`:`, `*`, whitespace, control characters), yields `None`.
    pub fn render(&self, req: &Request, captures: &Captures) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Var(v) => {
                    let value = v.read(req, captures)?;
                    if value.is_empty()
                        || value
                            .chars()
                            .any(|c| c == ':' || c == '*' || c.is_whitespace() || c.is_control())
                    {
                        return None;
                    }
                    out.push_str(&value);
                }
            }
        }
        Some(out)
    }
}

/// A rule's permission requirement: every `all_of`, and one of `any_of` when non-empty.
#[derive(Debug, Clone, Default)]
pub struct Requirement {
    /// All must be granted.
    pub all_of: Vec<Template>,
    /// At least one must be granted (ignored when empty).
    pub any_of: Vec<Template>,
}

impl Requirement {
    /// Whether the rule requires any permission at all.
    pub fn is_empty(&self) -> bool {
        self.all_of.is_empty() && self.any_of.is_empty()
    }

    /// `Ok` when `grants` satisfy the requirement; otherwise the first unmet permission
    /// (for the debug log; it holds no token material).
    pub fn check(
        &self,
        grants: &Grants,
        req: &Request,
        captures: &Captures,
    ) -> Result<(), Refused> {
        for t in &self.all_of {
            match t.render(req, captures) {
                Some(p) if grants.allows(&p) => {}
                Some(p) => return Err(Refused::Permission(p)),
                None => {
                    return Err(Refused::Permission(format!(
                        "{} (request value missing or invalid)",
                        t.shape()
                    )))
                }
            }
        }
        if self.any_of.is_empty() {
            return Ok(());
        }
        let rendered: Vec<Option<String>> = self
            .any_of
            .iter()
            .map(|t| t.render(req, captures))
            .collect();
        if rendered.iter().flatten().any(|p| grants.allows(p)) {
            return Ok(());
        }
        Err(Refused::Permission(format!(
            "any of {}",
            self.any_of
                .iter()
                .map(Template::shape)
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

/// One requirement of a rule, judged against a token's grants (for explanations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementCheck {
    /// Part of `any_of` (else of `all_of`/`permissions`).
    pub any_of: bool,
    /// The permission, rendered from the request (its template when it cannot be).
    pub required: String,
    /// The grant that covers it and where that came from; `None`: no grant does.
    pub covered_by: Option<String>,
    /// Why it could not be rendered (a request value missing or invalid).
    pub unrenderable: bool,
}

impl Requirement {
    /// Each requirement with the grant that covers it, or why none does.
    pub fn explain(
        &self,
        grants: &Grants,
        req: &Request,
        captures: &Captures,
    ) -> Vec<RequirementCheck> {
        let one = |t: &Template, any_of: bool| match t.render(req, captures) {
            Some(p) => RequirementCheck {
                any_of,
                covered_by: grants.covering(&p).map(|(g, source)| match source {
                    GrantSource::Permission => format!("{g} (permissions claim)"),
                    GrantSource::Scope => format!("{g} (scope claim)"),
                    GrantSource::Role(r) => format!("{g} (role {r})"),
                }),
                required: p,
                unrenderable: false,
            },
            None => RequirementCheck {
                any_of,
                required: t.shape(),
                covered_by: None,
                unrenderable: true,
            },
        };
        self.all_of
            .iter()
            .map(|t| one(t, false))
            .chain(self.any_of.iter().map(|t| one(t, true)))
            .collect()
    }
}
