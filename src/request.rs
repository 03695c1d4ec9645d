//! The request as the core sees it: gathered once by the filter, owned, host-free.

/// What the pipeline needs to know about one HTTP request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `:method`.
    pub method: String,
    /// `:path`, including any query string.
    pub path: String,
    /// `:authority`.
    pub authority: String,
    /// Envoy route name, when the route has one.
    pub route_name: Option<String>,
    /// `x-request-id` (empty when absent).
    pub request_id: String,
    /// All request headers, names lower-case, in arrival order (pseudo-headers included).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The path without query string or fragment.
    pub fn path_only(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        self.path.get(..end).unwrap_or("")
    }

    /// The raw query string (without `?`), if any.
    pub fn query(&self) -> Option<&str> {
        let start = self.path.find('?')?;
        let rest = self.path.get(start + 1..)?;
        Some(rest.split('#').next().unwrap_or(rest))
    }

    /// The single value of header `name` (lower-case); `None` if absent or repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = None;
        for (k, v) in &self.headers {
            if k.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return None;
                }
                found = Some(v.as_str());
            }
        }
        found
    }

    /// Every value of header `name`.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The single, percent-decoded value of query parameter `name`; `None` if absent,
    /// repeated (parameter pollution) or not valid UTF-8 after decoding.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let mut found = None;
        for pair in self.query()?.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k)? == name {
                if found.is_some() {
                    return None;
                }
                found = Some(percent_decode(v)?);
            }
        }
        found
    }

    /// The host part of `:authority`, lower-case, without port.
    pub fn host(&self) -> String {
        let a = self.authority.as_str();
        let host = if a.starts_with('[') {
            a.find(']').and_then(|i| a.get(..=i)).unwrap_or(a)
        } else {
            a.rsplit_once(':').map_or(a, |(h, _)| h)
        };
        host.to_ascii_lowercase()
    }
}

/// Decodes `%XX` escapes and `+` (form encoding); `None` on bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `path` (without query) is in normal form: no `.`/`..` segments, no empty
/// segments, no backslashes and no percent-encoded `.`, `/` or `\`. Rules are only
/// matched against normal paths, so `/public/../admin` can never borrow a public rule.
pub fn is_normalized(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("//") || path.contains('\\') {
        return false;
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return false;
    }
    // Encoded '.', '/' or '\\' in any case, without allocating.
    !path.contains('%')
        || !path.as_bytes().windows(3).any(|w| {
            w.first() == Some(&b'%')
                && matches!(
                    (
                        w.get(1).map(u8::to_ascii_lowercase),
                        w.get(2).map(u8::to_ascii_lowercase)
                    ),
                    (Some(b'2'), Some(b'e' | b'f')) | (Some(b'5'), Some(b'c'))
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn path_query_and_params() {
        let r = req("/v1/x?network_id=a%2Db&y=1&dup=1&dup=2#frag", &[]);
        assert_eq!(r.path_only(), "/v1/x");
        assert_eq!(r.query(), Some("network_id=a%2Db&y=1&dup=1&dup=2"));
        assert_eq!(r.query_param("network_id").as_deref(), Some("a-b"));
        assert_eq!(r.query_param("y").as_deref(), Some("1"));
        assert_eq!(
            r.query_param("dup"),
            None,
            "repeated parameters are ambiguous"
        );
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(req("/health", &[]).query(), None);
        assert_eq!(req("/a?bad=%zz", &[]).query_param("bad"), None);
    }

    #[test]
    fn headers_are_case_insensitive_and_single() {
        let r = req("/", &[("x-a", "1"), ("x-b", "2"), ("x-b", "3")]);
        assert_eq!(r.header("X-A"), Some("1"));
        assert_eq!(r.header("x-b"), None);
        assert_eq!(r.header_values("x-b").count(), 2);
    }

    #[test]
    fn hosts() {
        let cases = vec![
            ("API.example.com:8443", "api.example.com"),
            ("[::1]:80", "[::1]"),
            ("a.b", "a.b"),
        ];
        for (authority, host) in cases {
            let r = Request {
                authority: authority.into(),
                ..Default::default()
            };
            assert_eq!(r.host(), host, "{authority}");
        }
    }

    #[test]
    fn normal_form() {
        let cases = vec![
            ("/health", true),
            ("/v1/entities/x", true),
            ("/", true),
            ("/health/../v1/x", false),
            ("/health/./x", false),
            ("/health/..", false),
            ("//health", false),
            ("/health%2F..%2Fv1", false),
            ("/health%2e%2e/x", false),
            ("/a\\b", false),
            ("health", false),
            ("", false),
        ];
        for (path, ok) in cases {
            assert_eq!(is_normalized(path), ok, "{path}");
        }
    }
}
