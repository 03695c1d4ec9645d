//! Request → rule: methods, exact path, prefix or template, host and Envoy route name.

use crate::error::ConfigError;
use crate::request::Request;

/// The `match` block of a rule, as written.
#[derive(Default)]
pub struct RawMatch {
    /// HTTP methods (upper case); empty means any.
    pub methods: Vec<String>,
    /// Exact path (without query string).
    pub path: Option<String>,
    /// Path prefix.
    pub prefix: Option<String>,
    /// Path template with `{name}` segments.
    pub template: Option<String>,
    /// Host (`:authority` without port); `*.example.com` matches subdomains.
    pub host: Option<String>,
    /// Envoy route name (`route_name` property).
    pub route: Option<String>,
}

/// How a rule matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// Exactly this path.
    Exact(String),
    /// Paths starting with this prefix.
    Prefix(String),
    /// A template; each segment a literal or a named capture.
    Template(Vec<Segment>),
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must equal this text.
    Literal(String),
    /// Captures one non-empty segment under this name.
    Param(String),
}

/// A compiled `match` block.
#[derive(Debug, Clone)]
pub struct Matcher {
    methods: Vec<String>,
    path: PathMatch,
    host: Option<String>,
    route: Option<String>,
}

/// Which part of a `match` block a request did not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Not one of its methods.
    Method,
    /// Another host.
    Host,
    /// Another Envoy route.
    Route,
    /// Another path.
    Path,
}

impl Mismatch {
    /// In a few words.
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Method => "method differs",
            Mismatch::Host => "host differs",
            Mismatch::Route => "route differs",
            Mismatch::Path => "path differs",
        }
    }
}

/// Named path segments captured by a template match.
pub type Captures = Vec<(String, String)>;

impl Matcher {
    /// Whether the paths this matcher accepts can fall under `covers(prefix)`: a matcher
    /// without a path constraint can; an exact path, or a template's literal start, must
    /// be under it; a prefix must be under it or above it.
    pub fn may_cover(&self, covers: impl Fn(&str) -> bool, prefix: &str) -> bool {
        match &self.path {
            PathMatch::Any => true,
            PathMatch::Exact(p) => covers(p),
            PathMatch::Prefix(p) => covers(p) || prefix.starts_with(p.as_str()),
            PathMatch::Template(segments) => {
                let literal: String = segments
                    .iter()
                    .map_while(|s| match s {
                        Segment::Literal(l) => Some(format!("/{l}")),
                        Segment::Param(_) => None,
                    })
                    .collect();
                let literal = if literal.is_empty() {
                    "/".to_string()
                } else {
                    literal
                };
                covers(&literal) || prefix.starts_with(literal.as_str())
            }
        }
    }

    /// Compiles a `match` block; `at` names it in errors.
    pub fn compile(raw: &RawMatch, at: &str) -> Result<Matcher, ConfigError> {
        let error = |field: String, message: String| Err(ConfigError { field, message });
        for (i, m) in raw.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return error(
                    format!("{at}.methods[{i}]"),
                    format!("{m:?} is not an upper-case HTTP method"),
                );
            }
        }
        let path = match (&raw.path, &raw.prefix, &raw.template) {
            (None, None, None) => PathMatch::Any,
            (Some(p), None, None) => {
                if !p.starts_with('/') || p.contains('?') {
                    return error(
                        format!("{at}.path"),
                        "must start with '/' and have no query".into(),
                    );
                }
                PathMatch::Exact(p.clone())
            }
            (None, Some(p), None) => {
                if !p.starts_with('/') || p.contains('?') {
                    return error(
                        format!("{at}.prefix"),
                        "must start with '/' and have no query".into(),
                    );
                }
                PathMatch::Prefix(p.clone())
            }
            (None, None, Some(t)) => {
                PathMatch::Template(compile_template(t, &format!("{at}.template"))?)
            }
            _ => {
                return error(
                    at.to_string(),
                    "use only one of path, prefix and template".into(),
                )
            }
        };
        if let Some(h) = &raw.host {
            if h.is_empty() || h.contains(':') {
                return error(format!("{at}.host"), "a host name without port".into());
            }
        }
        if let Some(r) = &raw.route {
            if r.is_empty() {
                return error(format!("{at}.route"), "must not be empty".into());
            }
        }
        Ok(Matcher {
            methods: raw.methods.clone(),
            path,
            host: raw.host.as_ref().map(|h| h.to_ascii_lowercase()),
            route: raw.route.clone(),
        })
    }

    /// Whether this matcher looks at the host.
    pub fn uses_host(&self) -> bool {
        self.host.is_some()
    }

    /// Whether this matcher looks at Envoy's route name.
    pub fn uses_route(&self) -> bool {
        self.route.is_some()
    }

    /// Names of the template's captures (empty for other path kinds).
    pub fn params(&self) -> Vec<&str> {
        match &self.path {
            PathMatch::Template(segs) => segs
                .iter()
                .filter_map(|s| match s {
                    Segment::Param(n) => Some(n.as_str()),
                    Segment::Literal(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Matches a request whose path is already known to be normalized.
    pub fn matches(&self, req: &Request, path: &str, host: &str) -> Option<Captures> {
        self.check(req, path, host).ok()
    }

    /// Like [`Matcher::matches`], saying which part did not match.
    pub fn check(&self, req: &Request, path: &str, host: &str) -> Result<Captures, Mismatch> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == &req.method) {
            return Err(Mismatch::Method);
        }
        if let Some(want) = &self.host {
            let ok = match want.strip_prefix("*.") {
                Some(suffix) => {
                    host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
                }
                None => host == want,
            };
            if !ok {
                return Err(Mismatch::Host);
            }
        }
        if let Some(route) = &self.route {
            if req.route_name.as_deref() != Some(route.as_str()) {
                return Err(Mismatch::Route);
            }
        }
        match &self.path {
            PathMatch::Any => Some(Vec::new()),
            PathMatch::Exact(p) => (path == p).then(Vec::new),
            PathMatch::Prefix(p) => path.starts_with(p.as_str()).then(Vec::new),
            PathMatch::Template(segs) => match_template(segs, path),
        }
        .ok_or(Mismatch::Path)
    }

    /// What this matcher asks for, for people: `GET,POST prefix /v1/ host api.example.com`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.methods.is_empty() {
            parts.push(self.methods.join(","));
        }
        parts.push(match &self.path {
            PathMatch::Any => "any path".to_string(),
            PathMatch::Exact(p) => format!("path {p}"),
            PathMatch::Prefix(p) => format!("prefix {p}"),
            PathMatch::Template(segs) => {
                let t: Vec<String> = segs
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => l.clone(),
                        Segment::Param(n) => format!("{{{n}}}"),
                    })
                    .collect();
                format!("template /{}", t.join("/"))
            }
        });
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(r) = &self.route {
            parts.push(format!("route {r}"));
        }
        parts.join(" ")
    }
}

fn compile_template(t: &str, at: &str) -> Result<Vec<Segment>, ConfigError> {
    let error = |message: &str| {
        Err(ConfigError {
            field: at.to_string(),
            message: message.to_string(),
        })
    };
    let Some(rest) = t.strip_prefix('/') else {
        return error("must start with '/'");
    };
    let mut segs = Vec::new();
    for seg in rest.split('/') {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return error("a {name} must be letters, digits or '_'");
            }
            if segs.contains(&Segment::Param(name.to_string())) {
                return error("a {name} appears twice");
            }
            segs.push(Segment::Param(name.to_string()));
        } else if seg.contains(['{', '}', '?']) {
            return error("'{', '}' and '?' are only allowed as whole {name} segments");
        } else {
            segs.push(Segment::Literal(seg.to_string()));
        }
    }
    Ok(segs)
}

fn match_template(segs: &[Segment], path: &str) -> Option<Captures> {
    let rest = path.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let mut captures = Vec::new();
    for seg in segs {
        let part = parts.next()?;
        match seg {
            Segment::Literal(l) if l == part => {}
            Segment::Param(name) if !part.is_empty() => {
                captures.push((name.clone(), part.to_string()))
            }
            _ => return None,
        }
    }
    parts.next().is_none().then_some(captures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(json: &str) -> Matcher {
        let value: serde_json::Value = serde_json::from_str(json).expect("json");
        let s = |k: &str| value.get(k).and_then(|v| v.as_str()).map(String::from);
        let methods = value.get("methods").and_then(|v| v.as_array());
        let raw = RawMatch {
            methods: methods
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            path: s("path"),
            prefix: s("prefix"),
            template: s("template"),
            host: s("host"),
            route: s("route"),
        };
        Matcher::compile(&raw, "m").expect("compiles")
    }

    fn request(method: &str, path: &str, route: Option<&str>) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            route_name: route.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            Option<Vec<(&'static str, &'static str)>>,
        );
        let cases: Vec<Case> = vec![
            (
                r#"{"path":"/health","methods":["GET"]}"#,
                "GET",
                "/health",
                "h",
                Some(vec![]),
            ),
            (
                r#"{"path":"/health","methods":["GET"]}"#,
                "POST",
                "/health",
                "h",
                None,
            ),
            (r#"{"path":"/health"}"#, "GET", "/healthz", "h", None),
            (r#"{"path":"/health"}"#, "GET", "/HEALTH", "h", None),
            (r#"{"path":"/health"}"#, "GET", "/health/", "h", None),
            (r#"{"prefix":"/v1/"}"#, "GET", "/v1/x", "h", Some(vec![])),
            (r#"{"prefix":"/v1/"}"#, "GET", "/v2/x", "h", None),
            (
                r#"{"template":"/v1/networks/{network_id}/consumers"}"#,
                "POST",
                "/v1/networks/n1/consumers",
                "h",
                Some(vec![("network_id", "n1")]),
            ),
            (
                r#"{"template":"/v1/networks/{network_id}/consumers"}"#,
                "POST",
                "/v1/networks//consumers",
                "h",
                None,
            ),
            (
                r#"{"template":"/v1/networks/{network_id}/consumers"}"#,
                "POST",
                "/v1/networks/n1/consumers/x",
                "h",
                None,
            ),
            (
                r#"{"template":"/v1/networks/{network_id}/consumers"}"#,
                "POST",
                "/v1/networks/n1",
                "h",
                None,
            ),
            (
                r#"{"template":"/v1/{a}/{b}"}"#,
                "GET",
                "/v1/x/y",
                "h",
                Some(vec![("a", "x"), ("b", "y")]),
            ),
            (
                r#"{"host":"api.example.com"}"#,
                "GET",
                "/",
                "api.example.com",
                Some(vec![]),
            ),
            (
                r#"{"host":"api.example.com"}"#,
                "GET",
                "/",
                "other.example.com",
                None,
            ),
            (
                r#"{"host":"*.example.com"}"#,
                "GET",
                "/",
                "a.example.com",
                Some(vec![]),
            ),
            (
                r#"{"host":"*.example.com"}"#,
                "GET",
                "/",
                "example.com",
                None,
            ),
            (
                r#"{"host":"*.example.com"}"#,
                "GET",
                "/",
                "evilexample.com",
                None,
            ),
            (r#"{}"#, "DELETE", "/anything", "h", Some(vec![])),
        ];
        for (json, method, path, host, want) in cases {
            let got = matcher(json).matches(&request(method, path, None), path, host);
            let want = want.map(|v| {
                v.into_iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want, "{json} {method} {path} {host}");
        }
    }

    #[test]
    fn route_name() {
        let m = matcher(r#"{"route":"items"}"#);
        assert!(m
            .matches(&request("GET", "/", Some("items")), "/", "h")
            .is_some());
        assert!(m
            .matches(&request("GET", "/", Some("other")), "/", "h")
            .is_none());
        assert!(m.matches(&request("GET", "/", None), "/", "h").is_none());
    }
}
