//! Authorization: grants from a verified token, hierarchical scopes, templated
//! requirements, membership (domain) constraints and header preconditions.

use crate::claim_path::ClaimPath;
use crate::error::ConfigError;
use crate::matcher::Captures;
use crate::request::Request;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Required format of a request header checked by a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFormat {
    /// Present and non-empty.
    Present,
    /// An RFC 9562 UUID in 8-4-4-4-12 hex form.
    Uuid,
    /// A version-7 UUID.
    Uuidv7,
}

/// The claims that carry grants (top-level names or JSON Pointers).
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// Array of permission strings.
    pub permissions: ClaimPath,
    /// Role name (string or array), expanded through the role table.
    pub role: ClaimPath,
    /// OAuth scopes: space-delimited string or array.
    pub scope: ClaimPath,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            permissions: ClaimPath::top("permissions"),
            role: ClaimPath::top("role"),
            scope: ClaimPath::top("scope"),
        }
    }
}

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
    pub fn check(&self, grants: &Grants, req: &Request, captures: &Captures) -> Result<(), String> {
        for t in &self.all_of {
            match t.render(req, captures) {
                Some(p) if grants.allows(&p) => {}
                Some(p) => return Err(p),
                None => return Err(format!("{} (request value missing or invalid)", t.shape())),
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
        Err(format!(
            "any of {}",
            self.any_of
                .iter()
                .map(Template::shape)
                .collect::<Vec<_>>()
                .join(", ")
        ))
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

/// Whether one granted scope covers one required permission.
///
/// Plain permissions (no `:`) match exactly. Hierarchical scopes
/// `{resource}:{action}:{identifier}` match segment by segment, where a granted `*`
/// matches any value of that segment; segment counts must be equal. `*` alone grants
/// everything. Empty segments never match.
pub fn scope_grants(granted: &str, required: &str) -> bool {
    if granted == "*" {
        return !required.is_empty();
    }
    if required.split(':').any(str::is_empty) || granted.split(':').any(str::is_empty) {
        return false;
    }
    let mut g = granted.split(':');
    let mut r = required.split(':');
    loop {
        match (g.next(), r.next()) {
            (None, None) => return true,
            (Some(gs), Some(rs)) if gs == "*" || gs == rs => {}
            _ => return false,
        }
    }
}

/// Everything a token grants, borrowed from its claims and the role table.
#[derive(Debug, Default)]
pub struct Grants<'a> {
    items: Vec<(&'a str, GrantSource<'a>)>,
}

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSource<'a> {
    /// The permissions claim.
    Permission,
    /// The scope claim.
    Scope,
    /// A role (its name) in the role claim, through `roles`.
    Role(&'a str),
}

impl<'a> Grants<'a> {
    /// Collects grants from the `permissions`, `role` and `scope` claims.
    pub fn from_claims(
        claims: &'a Map<String, Value>,
        names: &ClaimNames,
        roles: &'a BTreeMap<String, Vec<String>>,
    ) -> Grants<'a> {
        let mut items = Vec::new();
        for_each_string(names.permissions.get(claims), |s| {
            items.extend(s.split_whitespace().map(|g| (g, GrantSource::Permission)))
        });
        for_each_string(names.scope.get(claims), |s| {
            items.extend(s.split_whitespace().map(|g| (g, GrantSource::Scope)))
        });
        for_each_string(names.role.get(claims), |role| {
            if let Some(perms) = roles.get(role) {
                items.extend(perms.iter().map(|p| (p.as_str(), GrantSource::Role(role))));
            }
        });
        Grants { items }
    }

    /// Whether any grant covers `required`.
    pub fn allows(&self, required: &str) -> bool {
        self.covering(required).is_some()
    }

    /// The first grant that covers `required`.
    pub fn covering(&self, required: &str) -> Option<(&'a str, GrantSource<'a>)> {
        self.items
            .iter()
            .find(|(g, _)| scope_grants(g, required))
            .copied()
    }

    /// Every grant with where it came from.
    pub fn items(&self) -> &[(&'a str, GrantSource<'a>)] {
        &self.items
    }
}

/// Calls `f` for a string claim, or for each string element of an array claim.
fn for_each_string<'a>(value: Option<&'a Value>, mut f: impl FnMut(&'a str)) {
    match value {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(f),
        _ => {}
    }
}

/// A domain constraint: a request value must be one of a claim's values.
#[derive(Debug, Clone)]
pub struct Membership {
    /// Where the request value comes from.
    pub source: RequestValue,
    /// The claim listing allowed values (string or array).
    pub claim: ClaimPath,
}

impl Membership {
    /// Whether the request value is present and listed in the claim.
    pub fn holds(&self, claims: &Map<String, Value>, req: &Request, captures: &Captures) -> bool {
        let Some(value) = self.source.read(req, captures) else {
            return false;
        };
        let mut found = false;
        for_each_string(self.claim.get(claims), |s| found |= s == value);
        found
    }
}

/// Checks a header precondition; the error is the reply's `detail`.
pub fn check_header(
    req: &Request,
    lower: &str,
    display: &str,
    format: HeaderFormat,
) -> Result<(), String> {
    let count = req.header_values(lower).count();
    let value = req.header(lower).map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Err(if count > 1 {
            format!("{display} header must be sent once")
        } else {
            format!("{display} header is required")
        });
    };
    match format {
        HeaderFormat::Present => Ok(()),
        HeaderFormat::Uuid if is_uuid(value) => Ok(()),
        HeaderFormat::Uuid => Err(format!("{display} must be a valid UUID")),
        HeaderFormat::Uuidv7
            if is_uuid(value) && uuid_version(value) == Some('7') && uuid_variant_ok(value) =>
        {
            Ok(())
        }
        HeaderFormat::Uuidv7 => Err(format!("{display} must be a valid UUIDv7")),
    }
}

fn is_uuid(v: &str) -> bool {
    v.len() == 36
        && v.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn uuid_version(v: &str) -> Option<char> {
    v.chars().nth(14)
}

fn uuid_variant_ok(v: &str) -> bool {
    matches!(
        v.chars().nth(19).map(|c| c.to_ascii_lowercase()),
        Some('8' | '9' | 'a' | 'b')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scope_algebra() {
        let cases: Vec<(&str, &str, bool)> = vec![
            // plain permissions: exact match only
            ("entities:read", "entities:read", true),
            ("entities:read", "entities:write", false),
            ("admin", "admin", true),
            ("admin", "admin:x", false),
            ("Admin", "admin", false),
            ("*", "anything:at:all", true),
            ("*", "admin", true),
            ("*", "", false),
            // hierarchical: wildcard per segment
            ("index:read:*", "index:read:9f1c2a", true),
            ("index:read:*", "index:write:9f1c2a", false),
            ("index:*:*", "index:read:x", true),
            ("index:*:*", "index:write:x", true),
            ("*:read:*", "index:read:x", true),
            ("*:read:*", "index:write:x", false),
            ("*:*:*", "events:write:y", true),
            ("index:*:abc", "index:read:abc", true),
            ("index:*:abc", "index:read:abd", false),
            ("index:read:abc", "index:read:abc", true),
            ("index:read:abc", "index:read:ABC", false),
            ("INDEX:read:*", "index:read:x", false),
            // segment counts must agree
            ("index:read:*", "index:read", false),
            ("index:read:*", "index:read:x:y", false),
            ("index:*", "index:read:x", false),
            ("index:read", "index:read:x", false),
            // empty segments never match
            ("index:read:", "index:read:", false),
            ("index::*", "index::x", false),
            ("index:read:*", "index:read:", false),
            (":read:*", ":read:x", false),
            // '*' is a whole-segment wildcard only; a required '*' needs a granted '*'
            ("index:re*:x", "index:read:x", false),
            ("index:read:abc", "index:read:*", false),
            ("index:read:*", "index:read:*", true),
            ("", "", false),
        ];
        for (granted, required, want) in cases {
            assert_eq!(
                scope_grants(granted, required),
                want,
                "grant {granted:?} vs required {required:?}"
            );
        }
    }

    fn names() -> ClaimNames {
        ClaimNames::default()
    }

    #[test]
    fn grants_from_each_claim() {
        let roles: BTreeMap<String, Vec<String>> = [
            ("admin".to_string(), vec!["*".to_string()]),
            ("furnisher".to_string(), vec!["furnish:write".to_string()]),
        ]
        .into();
        let cases: Vec<(Value, &str, bool)> = vec![
            (
                json!({"permissions": ["entities:read"]}),
                "entities:read",
                true,
            ),
            (
                json!({"permissions": ["entities:read"]}),
                "consent:write",
                false,
            ),
            (json!({"permissions": "a b"}), "b", true),
            (json!({"permissions": [1, "x"]}), "x", true),
            (json!({"role": "furnisher"}), "furnish:write", true),
            (
                json!({"role": ["viewer", "furnisher"]}),
                "furnish:write",
                true,
            ),
            (json!({"role": "admin"}), "anything", true),
            (json!({"role": "unknown"}), "anything", false),
            (
                json!({"scope": "index:read:* events:write:*"}),
                "events:write:u1",
                true,
            ),
            (json!({"scope": ["index:read:*"]}), "index:read:u1", true),
            (json!({"scope": "index:read:*"}), "index:write:u1", false),
            (json!({}), "x", false),
        ];
        for (claims, required, want) in cases {
            let map = claims.as_object().cloned().unwrap_or_default();
            let grants = Grants::from_claims(&map, &names(), &roles);
            assert_eq!(
                grants.allows(required),
                want,
                "{claims} requires {required}"
            );
        }
    }

    #[test]
    fn namespaced_claim_names() {
        let mut n = names();
        n.permissions = ClaimPath::top("https://api.solo.one/permissions");
        let claims = json!({"https://api.solo.one/permissions": ["workflow:run"]});
        let map = claims.as_object().cloned().unwrap_or_default();
        let roles = BTreeMap::new();
        assert!(Grants::from_claims(&map, &n, &roles).allows("workflow:run"));
    }

    #[test]
    fn nested_claims_through_pointers() {
        let path = |p: &str| ClaimPath::parse(p).unwrap_or_else(|_| ClaimPath::top("bad"));
        let n = ClaimNames {
            permissions: path("/resource_access/my-api/roles"),
            role: path("/realm_access/roles"),
            scope: ClaimPath::top("scope"),
        };
        let roles: BTreeMap<String, Vec<String>> =
            [("admin".to_string(), vec!["entities:*".to_string()])].into();
        let claims = json!({"realm_access": {"roles": ["offline_access", "admin"]},
            "resource_access": {"my-api": {"roles": ["reports:read"]}}});
        let map = claims.as_object().cloned().unwrap_or_default();
        let grants = Grants::from_claims(&map, &n, &roles);
        assert!(grants.allows("entities:write"), "realm role expanded");
        assert!(grants.allows("reports:read"), "client role as permission");
        assert!(!grants.allows("other:read"));
        let flat = json!({"realm_access.roles": ["admin"]});
        let map = flat.as_object().cloned().unwrap_or_default();
        assert!(!Grants::from_claims(&map, &n, &roles).allows("entities:write"));
    }

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        Request::for_test(path, headers)
    }

    #[test]
    fn templates_render_from_the_request() {
        let t = |s: &str| Template::compile(s, &["network_id"], "t").expect("compiles");
        let caps: Captures = vec![("network_id".into(), "n-1".into())];
        let r = req(
            "/x?network_id=q-1&evil=a:b",
            &[("solenya-index-uuid", "u-1"), ("star", "*")],
        );
        let cases: Vec<(&str, Option<&str>)> = vec![
            (
                "index:read:{header.solenya-index-uuid}",
                Some("index:read:u-1"),
            ),
            (
                "index:read:{header.Solenya-Index-UUID}",
                Some("index:read:u-1"),
            ),
            ("net:{query.network_id}", Some("net:q-1")),
            ("net:{path.network_id}:x", Some("net:n-1:x")),
            ("plain", Some("plain")),
            ("index:read:{header.missing}", None),
            ("index:read:{header.star}", None),
            ("index:read:{query.evil}", None),
        ];
        for (text, want) in cases {
            assert_eq!(t(text).render(&r, &caps).as_deref(), want, "{text}");
        }
        for bad in [
            "{cookie.x}",
            "{header.}",
            "a{header.x",
            "a}b",
            "{path.other}",
        ] {
            assert!(
                Template::compile(bad, &["network_id"], "t").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn requirements_all_of_and_any_of() {
        let t = |s: &str| Template::compile(s, &[], "t").expect("compiles");
        let roles = BTreeMap::new();
        let claims = json!({"permissions": ["a", "b"]});
        let map = claims.as_object().cloned().unwrap_or_default();
        let grants = Grants::from_claims(&map, &names(), &roles);
        let r = req("/", &[]);
        let check = |all: &[&str], any: &[&str]| {
            Requirement {
                all_of: all.iter().map(|s| t(s)).collect(),
                any_of: any.iter().map(|s| t(s)).collect(),
            }
            .check(&grants, &r, &Vec::new())
        };
        assert!(check(&["a", "b"], &[]).is_ok());
        assert_eq!(check(&["a", "c"], &[]), Err("c".to_string()));
        assert!(check(&[], &["c", "b"]).is_ok());
        assert!(check(&[], &["c", "d"]).is_err());
        assert!(check(&["a"], &["c", "b"]).is_ok());
        assert!(check(&[], &[]).is_ok());
    }

    #[test]
    fn membership() {
        let m = Membership {
            source: RequestValue::Query("network_id".into()),
            claim: ClaimPath::top("networks"),
        };
        let cases: Vec<(Value, &str, bool)> = vec![
            (json!({"networks": ["n1", "n2"]}), "/x?network_id=n2", true),
            (json!({"networks": ["n1", "n2"]}), "/x?network_id=n3", false),
            (json!({"networks": "n1"}), "/x?network_id=n1", true),
            (json!({"networks": ["n1"]}), "/x", false),
            (
                json!({"networks": ["n1"]}),
                "/x?network_id=n1&network_id=n3",
                false,
            ),
            (json!({}), "/x?network_id=n1", false),
        ];
        for (claims, path, want) in cases {
            let map = claims.as_object().cloned().unwrap_or_default();
            assert_eq!(
                m.holds(&map, &req(path, &[]), &Vec::new()),
                want,
                "{claims} {path}"
            );
        }
        // A path segment is decoded per RFC 3986: `+` is a plus sign, not a space, and a
        // malformed escape matches nothing.
        let by_path = Membership {
            source: RequestValue::Path("org".into()),
            claim: ClaimPath::top("orgs"),
        };
        let cases = vec![
            ("a+b", json!({"orgs": ["a b"]}), false),
            ("a+b", json!({"orgs": ["a+b"]}), true),
            ("a%20b", json!({"orgs": ["a b"]}), true),
            ("%+4", json!({"orgs": ["\u{4}", "%+4"]}), false),
        ];
        for (segment, claims, want) in cases {
            let map = claims.as_object().cloned().unwrap_or_default();
            let captures = vec![("org".to_string(), segment.to_string())];
            assert_eq!(
                by_path.holds(&map, &req("/", &[]), &captures),
                want,
                "{segment} {claims}"
            );
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn header_preconditions() {
        let v7 = "01890a5d-ac96-774b-bcce-b302099a8057";
        let v4 = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
        let cases: Vec<(Vec<(&str, &str)>, HeaderFormat, Result<(), &str>)> = vec![
            (vec![("x-u", v7)], HeaderFormat::Uuidv7, Ok(())),
            (
                vec![("x-u", "01890A5D-AC96-774B-BCCE-B302099A8057")],
                HeaderFormat::Uuidv7,
                Ok(()),
            ),
            (
                vec![("x-u", v4)],
                HeaderFormat::Uuidv7,
                Err("X-U must be a valid UUIDv7"),
            ),
            (vec![("x-u", v4)], HeaderFormat::Uuid, Ok(())),
            (
                vec![("x-u", "nope")],
                HeaderFormat::Uuid,
                Err("X-U must be a valid UUID"),
            ),
            (
                vec![("x-u", "01890a5d-ac96-774b-7cce-b302099a8057")],
                HeaderFormat::Uuidv7,
                Err("X-U must be a valid UUIDv7"),
            ),
            (vec![], HeaderFormat::Present, Err("X-U header is required")),
            (
                vec![("x-u", " ")],
                HeaderFormat::Present,
                Err("X-U header is required"),
            ),
            (
                vec![("x-u", "a"), ("x-u", "b")],
                HeaderFormat::Present,
                Err("X-U header must be sent once"),
            ),
            (vec![("x-u", "anything")], HeaderFormat::Present, Ok(())),
        ];
        for (headers, format, want) in cases {
            let got = check_header(&req("/", &headers), "x-u", "X-U", format);
            assert_eq!(got, want.map_err(String::from), "{headers:?} {format:?}");
        }
    }
}
