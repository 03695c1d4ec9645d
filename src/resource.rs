//! Protected resources (RFC 9728): which resource a request is for, the metadata document
//! that tells clients where to get a token for it, and the URL every challenge names.
//!
//! A resource's identifier is its configured `resource`, or — derived — the request's
//! `:scheme` and `:authority` followed by the entry's path prefix, and then only for an
//! authority the entry allows: an identifier is never made from an authority the
//! configuration does not name, so a client cannot have another host's document served
//! or named in a challenge.

use crate::reply::{Challenge, Reply};
use crate::request::Request;
use serde_json::{Map, Value};

/// Where the metadata documents are served (RFC 9728 §3): this path, followed by the
/// resource identifier's path.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// How long a client may cache a document.
const CACHE_CONTROL: &str = "public, max-age=3600";

/// One `protected_resources` entry, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    /// The configured identifier (`None`: derived from the request).
    pub resource: Option<String>,
    /// `match.path_prefix` (`/`: every request).
    pub prefix: String,
    /// Authorities (lower case) a derived identifier may be made for.
    pub allowed_authorities: Vec<String>,
    /// `authorization_servers`.
    pub authorization_servers: Vec<String>,
    /// `scopes_supported` (configured, or every literal permission of the rules under
    /// the entry).
    pub scopes_supported: Vec<String>,
    /// RFC 6750 token methods of the providers those rules name (`header`, `query`).
    pub bearer_methods: Vec<&'static str>,
    /// DPoP proof algorithms, where a provider takes DPoP.
    pub dpop_algorithms: Vec<String>,
    /// Whether every provider under the entry requires DPoP-bound tokens.
    pub dpop_required: bool,
    /// Whether a provider under the entry binds tokens to client certificates.
    pub certificate_bound: bool,
    /// `resource_name`.
    pub name: Option<String>,
    /// `resource_documentation`.
    pub documentation: Option<String>,
}

/// Whether `path` is `prefix` or below it, segment-wise (`/` covers every path).
pub fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The path of an absolute URL (`""` when it has none).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("")
}

/// The metadata document's URL for a resource identifier (RFC 9728 §3.1: the well-known
/// path goes between the authority and the identifier's path).
pub fn metadata_url(identifier: &str) -> String {
    let (scheme, rest) = identifier
        .split_once("://")
        .unwrap_or(("https", identifier));
    let at = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    format!("{scheme}://{authority}{WELL_KNOWN}{path}")
}

impl Resource {
    /// Whether this entry names `authority` (lower case): its explicit resource's, or one
    /// it allows.
    fn names(&self, authority: &str) -> bool {
        match &self.resource {
            Some(r) => authority_of(r) == authority,
            None => self.allowed_authorities.iter().any(|a| a == authority),
        }
    }

    /// The well-known suffix of this entry's documents: its identifier's path.
    fn suffix(&self) -> &str {
        match &self.resource {
            Some(r) => path_of(r),
            None if self.prefix == "/" => "",
            None => &self.prefix,
        }
    }

    /// The identifier for a request on `authority` over `scheme` (`None`: a derived
    /// identifier for an authority the entry does not allow).
    fn identifier(&self, scheme: &str, authority: &str) -> Option<String> {
        match &self.resource {
            Some(r) => Some(r.clone()),
            None => {
                let authority = authority.to_ascii_lowercase();
                self.allowed_authorities
                    .contains(&authority)
                    .then(|| format!("{scheme}://{authority}{}", self.suffix()))
            }
        }
    }

    /// The metadata document (RFC 9728 §2) for `identifier`.
    pub fn document(&self, identifier: &str) -> Value {
        let mut m = Map::new();
        let strings = |v: &[String]| Value::from(v.to_vec());
        m.insert("resource".into(), identifier.into());
        m.insert(
            "authorization_servers".into(),
            strings(&self.authorization_servers),
        );
        if !self.scopes_supported.is_empty() {
            m.insert("scopes_supported".into(), strings(&self.scopes_supported));
        }
        if !self.bearer_methods.is_empty() {
            m.insert(
                "bearer_methods_supported".into(),
                Value::from(self.bearer_methods.clone()),
            );
        }
        if !self.dpop_algorithms.is_empty() {
            m.insert(
                "dpop_signing_alg_values_supported".into(),
                strings(&self.dpop_algorithms),
            );
            m.insert(
                "dpop_bound_access_tokens_required".into(),
                self.dpop_required.into(),
            );
        }
        if self.certificate_bound {
            m.insert(
                "tls_client_certificate_bound_access_tokens".into(),
                true.into(),
            );
        }
        if let Some(name) = &self.name {
            m.insert("resource_name".into(), name.as_str().into());
        }
        if let Some(doc) = &self.documentation {
            m.insert("resource_documentation".into(), doc.as_str().into());
        }
        Value::Object(m)
    }
}

/// The configuration's `protected_resources`, in order (empty: none declared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// The entries; the first whose prefix covers a request's path is its resource.
    pub entries: Vec<Resource>,
}

/// Whether an authority (host, with any port) is a loopback host: the only one a resource
/// or an authorization server may name over plain `http`.
pub fn loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// The scheme of a derived identifier: `https`, unless the request came over plain `http`
/// to a loopback host (as the configuration allows `http` only there). A client cannot
/// choose it: behind a proxy that terminates TLS, `:scheme` says `http` for an API its
/// clients reach over `https`.
fn scheme(req: &Request) -> &'static str {
    let plain = req
        .headers
        .first(":scheme")
        .is_some_and(|s| s.eq_ignore_ascii_case("http"));
    if plain && loopback(&req.authority) {
        "http"
    } else {
        "https"
    }
}

/// The authority of an absolute URL (lower case).
fn authority_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl Resources {
    /// The first of `candidates` that names the request's authority, else the first.
    fn preferred<'a>(
        candidates: impl Iterator<Item = &'a Resource> + Clone,
        authority: &str,
    ) -> Option<&'a Resource> {
        let authority = authority.to_ascii_lowercase();
        candidates
            .clone()
            .find(|e| e.names(&authority))
            .or_else(|| candidates.into_iter().next())
    }

    /// The entry a request falls under: of those whose prefix covers its path, the first
    /// that names its authority, else the first.
    pub fn entry(&self, req: &Request) -> Option<&Resource> {
        let path = req.path_only();
        Self::preferred(
            self.entries.iter().filter(|e| under(path, &e.prefix)),
            &req.authority,
        )
    }

    /// The identifier of the resource `req` falls under (`None`: no resource, or a
    /// derived one for an authority its entry does not allow): what `{resource}` in
    /// `audiences` stands for.
    pub fn identifier_for(&self, req: &Request) -> Option<String> {
        self.entry(req)?.identifier(scheme(req), &req.authority)
    }

    /// What `{resource}` in `audiences` stands for: the identifier of the resource `req`
    /// is for, chosen strictly — of the entries whose prefix covers its path, the one
    /// naming its authority (a default port, `:443` over https or `:80` over http, is no
    /// part of it), or the only one. Several entries and none naming the authority: no
    /// resource (a token for one server must never pass at another behind one prefix).
    pub fn audience_identifier_for(&self, req: &Request) -> Option<String> {
        let path = req.path_only();
        let scheme = scheme(req);
        let lower = req.authority.to_ascii_lowercase();
        let default_port = if scheme == "https" { ":443" } else { ":80" };
        let authority = lower.strip_suffix(default_port).unwrap_or(&lower);
        let covering: Vec<&Resource> = self
            .entries
            .iter()
            .filter(|e| under(path, &e.prefix))
            .collect();
        let entry = match covering.iter().find(|e| e.names(authority)) {
            Some(e) => e,
            None if covering.len() == 1 => covering.first()?,
            None => return None,
        };
        entry.identifier(scheme, authority)
    }

    /// The metadata URL a challenge for `req` names (`None`: no resource, or a derived one
    /// for an authority its entry does not allow).
    pub fn metadata_url_for(&self, req: &Request) -> Option<String> {
        self.identifier_for(req).map(|id| metadata_url(&id))
    }

    /// What a challenge for `req` adds: `resource_metadata` where its resource has an
    /// identifier, and `scope` (the rule's, given) for any request under a resource. Empty
    /// without `protected_resources`: replies stay as they were.
    pub fn challenge(&self, req: &Request, scope: Option<&str>) -> Challenge {
        if self.entry(req).is_none() {
            return Challenge::default();
        }
        Challenge {
            resource_metadata: self.metadata_url_for(req),
            scope: scope.map(str::to_string),
        }
    }

    /// The filter's own answer when `req` asks for a metadata document: `200` with the
    /// document (`GET`, `HEAD`), `404` for a resource it does not know on this authority,
    /// `405` for another method. `None`: not a request for a document.
    pub fn answer(&self, req: &Request) -> Option<Reply> {
        if self.entries.is_empty() {
            return None;
        }
        let suffix = req.path_only().strip_prefix(WELL_KNOWN)?;
        if !(suffix.is_empty() || suffix.starts_with('/')) {
            return None;
        }
        let json = |status: u32, body: String, extra: Option<(&'static str, &str)>| {
            let mut headers = vec![("content-type", "application/json".to_string())];
            if let Some((name, value)) = extra {
                headers.push((name, value.to_string()));
            }
            Reply {
                status,
                headers,
                body,
            }
        };
        if req.method != "GET" && req.method != "HEAD" {
            let body = r#"{"detail":"Method not allowed"}"#.to_string();
            return Some(json(405, body, Some(("allow", "GET, HEAD"))));
        }
        let found = Self::preferred(
            self.entries.iter().filter(|e| e.suffix() == suffix),
            &req.authority,
        )
        .and_then(|e| {
            let id = e.identifier(scheme(req), &req.authority)?;
            Some(e.document(&id))
        });
        Some(match found {
            Some(doc) => json(200, doc.to_string(), Some(("cache-control", CACHE_CONTROL))),
            None => json(404, r#"{"detail":"Unknown resource"}"#.to_string(), None),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Headers;
    use serde_json::json;

    fn req(method: &str, authority: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            authority: authority.into(),
            headers: Headers::from_pairs(vec![(":scheme", "https")]),
            ..Default::default()
        }
    }

    fn derived() -> Resource {
        Resource {
            prefix: "/mcp".into(),
            allowed_authorities: vec!["api.example.com".into()],
            authorization_servers: vec!["https://auth.example.com".into()],
            scopes_supported: vec!["tools:read".into()],
            bearer_methods: vec!["header"],
            ..Default::default()
        }
    }

    #[test]
    fn metadata_urls_put_the_well_known_path_before_the_resource_path() {
        assert_eq!(
            metadata_url("https://api.example.com/mcp"),
            "https://api.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url("https://api.example.com"),
            "https://api.example.com/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            metadata_url("http://127.0.0.1:8080/a/b"),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/b"
        );
    }

    #[test]
    fn the_audience_resource_is_chosen_strictly() {
        let explicit = |id: &str| Resource {
            resource: Some(id.into()),
            ..derived()
        };
        let two = Resources {
            entries: vec![
                explicit("https://a.example/mcp"),
                explicit("https://b.example/mcp"),
            ],
        };
        let id = |r: &Resources, authority: &str| {
            r.audience_identifier_for(&req("POST", authority, "/mcp"))
        };
        assert_eq!(
            id(&two, "b.example").as_deref(),
            Some("https://b.example/mcp")
        );
        // A default port is no part of the authority: still B's, never A's.
        assert_eq!(
            id(&two, "B.example:443").as_deref(),
            Some("https://b.example/mcp")
        );
        // Two servers behind one prefix, and neither named: no resource at all.
        assert_eq!(id(&two, "c.example"), None);
        assert_eq!(id(&two, "b.example:8443"), None);
        // One entry: its identifier whatever the authority (an internal host name).
        let one = Resources {
            entries: vec![explicit("https://a.example/mcp")],
        };
        assert_eq!(
            id(&one, "mcp.internal").as_deref(),
            Some("https://a.example/mcp")
        );
        // A derived entry: only for an authority it allows.
        let derived_only = Resources {
            entries: vec![derived()],
        };
        assert_eq!(
            id(&derived_only, "api.example.com:443").as_deref(),
            Some("https://api.example.com/mcp")
        );
        assert_eq!(id(&derived_only, "evil.example"), None);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/mcp", "/mcp"));
        assert!(under("/mcp/tools", "/mcp"));
        assert!(!under("/mcpx", "/mcp"));
        assert!(!under("/", "/mcp"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn a_derived_identifier_follows_only_an_allowed_authority() {
        let r = Resources {
            entries: vec![derived()],
        };
        assert_eq!(
            r.metadata_url_for(&req("GET", "API.example.com", "/mcp/x?y=1")),
            Some("https://api.example.com/.well-known/oauth-protected-resource/mcp".into())
        );
        // Plain http to a public host still names https; to a loopback host, http.
        let mut plain = req("GET", "api.example.com", "/mcp");
        plain.headers = Headers::from_pairs(vec![(":scheme", "http")]);
        assert_eq!(
            r.metadata_url_for(&plain),
            Some("https://api.example.com/.well-known/oauth-protected-resource/mcp".into())
        );
        let mut local = derived();
        local.allowed_authorities = vec!["127.0.0.1:8080".into()];
        let mut at_home = req("GET", "127.0.0.1:8080", "/mcp");
        at_home.headers = Headers::from_pairs(vec![(":scheme", "HTTP")]);
        assert_eq!(
            Resources {
                entries: vec![local]
            }
            .metadata_url_for(&at_home),
            Some("http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp".into())
        );
        assert_eq!(r.metadata_url_for(&req("GET", "evil.test", "/mcp")), None);
        assert_eq!(
            r.metadata_url_for(&req("GET", "api.example.com", "/v1")),
            None
        );
        let doc = r
            .answer(&req(
                "GET",
                "api.example.com",
                "/.well-known/oauth-protected-resource/mcp",
            ))
            .expect("answered");
        assert_eq!(doc.status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&doc.body).expect("json"),
            json!({"resource": "https://api.example.com/mcp",
                   "authorization_servers": ["https://auth.example.com"],
                   "scopes_supported": ["tools:read"],
                   "bearer_methods_supported": ["header"]})
        );
        assert!(doc
            .headers
            .contains(&("cache-control", "public, max-age=3600".into())));
        // Another authority: no document, whatever the path.
        let other = r
            .answer(&req(
                "GET",
                "evil.test",
                "/.well-known/oauth-protected-resource/mcp",
            ))
            .expect("answered");
        assert_eq!(
            (other.status, other.body.as_str()),
            (404, r#"{"detail":"Unknown resource"}"#)
        );
    }

    #[test]
    fn documents_answer_get_and_head_only_and_unknown_paths_404() {
        let mut explicit = derived();
        explicit.resource = Some("https://api.example.com/mcp".into());
        explicit.allowed_authorities.clear();
        let r = Resources {
            entries: vec![explicit],
        };
        let at = "/.well-known/oauth-protected-resource/mcp";
        assert_eq!(
            r.answer(&req("HEAD", "any.test", at)).map(|a| a.status),
            Some(200)
        );
        let post = r.answer(&req("POST", "any.test", at)).expect("answered");
        assert_eq!(post.status, 405);
        assert!(post.headers.contains(&("allow", "GET, HEAD".into())));
        for path in [
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/",
            "/.well-known/oauth-protected-resource/mcp/x",
        ] {
            assert_eq!(
                r.answer(&req("GET", "any.test", path)).map(|a| a.status),
                Some(404),
                "{path}"
            );
        }
        assert!(r
            .answer(&req(
                "GET",
                "any.test",
                "/.well-known/oauth-protected-resourcex"
            ))
            .is_none());
        assert!(r.answer(&req("GET", "any.test", "/mcp")).is_none());
        assert!(Resources::default()
            .answer(&req("GET", "any.test", at))
            .is_none());
    }

    #[test]
    fn two_hosts_with_one_path_each_get_their_own_resource() {
        // An explicit identifier per host, then a derived one per host.
        let explicit = |host: &str| Resource {
            resource: Some(format!("https://{host}/mcp")),
            ..Default::default()
        };
        let derived = |host: &str| Resource {
            allowed_authorities: vec![host.to_string()],
            ..Default::default()
        };
        for entry in [explicit, derived] {
            let on = |host: &str| Resource {
                prefix: "/mcp".into(),
                authorization_servers: vec![format!("https://as.{host}")],
                ..entry(host)
            };
            let r = Resources {
                entries: vec![on("a.example"), on("b.example")],
            };
            for host in ["a.example", "b.example"] {
                assert_eq!(
                    r.metadata_url_for(&req("GET", host, "/mcp")),
                    Some(format!(
                        "https://{host}/.well-known/oauth-protected-resource/mcp"
                    ))
                );
                let doc = r
                    .answer(&req(
                        "GET",
                        host,
                        "/.well-known/oauth-protected-resource/mcp",
                    ))
                    .expect("answered");
                let doc: Value = serde_json::from_str(&doc.body).expect("json");
                assert_eq!(doc["resource"], json!(format!("https://{host}/mcp")));
            }
        }
    }

    #[test]
    fn challenges_add_the_document_and_the_scope_only_under_a_resource() {
        let r = Resources {
            entries: vec![derived()],
        };
        let c = r.challenge(&req("GET", "api.example.com", "/mcp/x"), Some("tools:call"));
        assert_eq!(
            c,
            Challenge {
                resource_metadata: Some(
                    "https://api.example.com/.well-known/oauth-protected-resource/mcp".into()
                ),
                scope: Some("tools:call".into()),
            }
        );
        // Under the resource on another authority: the scope, no document.
        let c = r.challenge(&req("GET", "evil.test", "/mcp"), Some("tools:call"));
        assert_eq!(
            (c.resource_metadata, c.scope.as_deref()),
            (None, Some("tools:call"))
        );
        // Outside every resource: today's challenge.
        let c = r.challenge(&req("GET", "api.example.com", "/v1"), Some("tools:call"));
        assert_eq!(c, Challenge::default());
    }

    #[test]
    fn a_derived_resource_for_every_path_has_no_trailing_slash() {
        let mut e = derived();
        e.prefix = "/".into();
        let r = Resources { entries: vec![e] };
        assert_eq!(
            r.metadata_url_for(&req("GET", "api.example.com", "/anything")),
            Some("https://api.example.com/.well-known/oauth-protected-resource".into())
        );
        let doc = r
            .answer(&req(
                "GET",
                "api.example.com",
                "/.well-known/oauth-protected-resource",
            ))
            .expect("answered");
        assert_eq!(doc.status, 200);
        let doc: Value = serde_json::from_str(&doc.body).expect("json");
        assert_eq!(doc["resource"], json!("https://api.example.com"));
    }

    #[test]
    fn sender_constraints_appear_in_the_document() {
        let mut e = derived();
        e.dpop_algorithms = vec!["ES256".into()];
        e.dpop_required = true;
        e.certificate_bound = true;
        e.name = Some("Search".into());
        e.documentation = Some("https://docs.example.com".into());
        let doc = e.document("https://api.example.com/mcp");
        assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(doc["dpop_bound_access_tokens_required"], json!(true));
        assert_eq!(
            doc["tls_client_certificate_bound_access_tokens"],
            json!(true)
        );
        assert_eq!(doc["resource_name"], json!("Search"));
        assert_eq!(
            doc["resource_documentation"],
            json!("https://docs.example.com")
        );
    }
}
