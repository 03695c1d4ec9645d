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
    pub headers: Headers,
    /// The body, once read (only GraphQL rules need it).
    pub body: Body,
    /// SHA-256 of the client certificate of the TLS connection Envoy terminated, hex
    /// (read only when a provider binds tokens to it; `None`: no client certificate).
    pub peer_certificate_sha256: Option<String>,
}

impl Request {
    /// The request without its body (what a response needs of it).
    pub fn head(&self) -> Request {
        Request {
            method: self.method.clone(),
            path: self.path.clone(),
            authority: self.authority.clone(),
            route_name: self.route_name.clone(),
            request_id: self.request_id.clone(),
            headers: self.headers.clone(),
            body: Body::Unread,
            peer_certificate_sha256: self.peer_certificate_sha256.clone(),
        }
    }
}

/// A request's body as the core knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Body {
    /// Not read (no rule needs it, or it has not arrived).
    #[default]
    Unread,
    /// Complete.
    Read(Vec<u8>),
    /// Over the limit (its size): never read into the VM.
    TooLarge(usize),
}

/// A header list in one buffer: every name and value back to back in one string, with
/// their boundaries beside it (two allocations for the whole list instead of two per
/// header; this runs on every request).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per header: where its name starts, where its value starts (= name end), where it ends.
    spans: Vec<[u32; 3]>,
}

impl Headers {
    /// A list from `(name, value)` pairs, in order.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Headers {
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.push(k.as_ref(), v.as_ref());
        }
        h
    }

    /// A list from `(name, value)` byte pairs, in order (a host that hands headers over
    /// as bytes). Bytes that are not UTF-8 (obs-text) become U+FFFD, as in
    /// [`Headers::from_serialized`].
    pub fn from_bytes<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Headers {
        // Valid UTF-8 (nearly every header) is checked with `from_utf8`, whose ASCII fast
        // path is several times quicker than `from_utf8_lossy` (a token is ~1 KB).
        let text = |b: &'a [u8]| {
            std::str::from_utf8(b).map_or_else(|_| String::from_utf8_lossy(b), Into::into)
        };
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.push(&text(k), &text(v));
        }
        h
    }

    /// Decodes the proxy-wasm ABI's serialized header map: a little-endian `u32` count,
    /// then a `u32` name length and value length per header, then each name and value
    /// followed by a NUL. HTTP lets values carry bytes that are not UTF-8 (obs-text);
    /// such bytes become U+FFFD, so they can never match a token, rule or precondition.
    /// `None` when the bytes are not such a map.
    pub fn from_serialized(bytes: &[u8]) -> Option<Headers> {
        if bytes.is_empty() {
            return Some(Headers::default());
        }
        let u32_at = |at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        let count = u32_at(0)?;
        let mut data = count.checked_mul(8)?.checked_add(4)?;
        if data > bytes.len() {
            return None;
        }
        let mut h = Headers {
            text: String::with_capacity(bytes.len().saturating_sub(data)),
            spans: Vec::with_capacity(count),
        };
        let mut take = |len: usize| -> Option<&[u8]> {
            let end = data.checked_add(len)?;
            let field = bytes.get(data..end)?;
            // Each field is followed by a NUL.
            if bytes.get(end) != Some(&0) {
                return None;
            }
            data = end + 1;
            Some(field)
        };
        for i in 0..count {
            let (name_len, value_len) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
            let name = String::from_utf8_lossy(take(name_len)?);
            let value = String::from_utf8_lossy(take(value_len)?);
            h.push(&name, &value);
        }
        (data == bytes.len()).then_some(h)
    }

    /// Adds a header at the end.
    fn push(&mut self, name: &str, value: &str) {
        let at = |t: &String| u32::try_from(t.len()).unwrap_or(u32::MAX);
        let start = at(&self.text);
        self.text.push_str(name);
        let mid = at(&self.text);
        self.text.push_str(value);
        self.spans.push([start, mid, at(&self.text)]);
    }

    /// The headers as `(name, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|&[start, mid, end]| {
            let get = |a: u32, b: u32| self.text.get(a as usize..b as usize).unwrap_or_default();
            (get(start, mid), get(mid, end))
        })
    }

    /// The first value of header `name` (exact, lower-case name).
    pub fn first(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(any(test, target_arch = "wasm32"))]
/// Serializes `(name, value)` pairs the way the proxy-wasm ABI takes a header map (the
/// inverse of [`Headers::from_serialized`]).
pub fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes();
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + 8 * pairs.len() + data);
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len(k));
        out.extend_from_slice(&len(v));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

impl Request {
    /// A request with `path` and `headers` and nothing else (unit tests).
    #[cfg(test)]
    pub(crate) fn for_test(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            path: path.into(),
            headers: Headers::from_pairs(headers.iter().copied()),
            ..Default::default()
        }
    }

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
        for (k, v) in self.headers.iter() {
            if k.eq_ignore_ascii_case(name) {
                if found.is_some() {
                    return None;
                }
                found = Some(v);
            }
        }
        found
    }

    /// The body length `content-length` declares (`None`: absent, repeated or not a
    /// number).
    pub fn declared_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
    }

    /// Whether the body is encoded: any `content-encoding` value (of every such header,
    /// each comma-separated item) other than `identity`.
    pub fn body_encoded(&self) -> bool {
        self.header_values("content-encoding")
            .flat_map(|v| v.split(','))
            .any(|enc| !enc.trim().eq_ignore_ascii_case("identity"))
    }

    /// Every value of header `name`.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The single, percent-decoded value of query parameter `name`; `None` if absent,
    /// repeated (parameter pollution) or not valid UTF-8 after decoding.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let mut found = None;
        for pair in self.query()?.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if decode_query_component(k)? == name {
                if found.is_some() {
                    return None;
                }
                found = Some(decode_query_component(v)?);
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

/// Whether every `%` in `s` starts an escape of exactly two hex digits (RFC 3986 §2.1).
fn escapes_are_well_formed(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// Decodes a path segment exactly per RFC 3986: `%XX` escapes only (`+` is a plus sign
/// in a path). `None` on a malformed escape or when the bytes are not UTF-8.
pub fn decode_path_segment(s: &str) -> Option<String> {
    if !escapes_are_well_formed(s) {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(Into::into)
}

/// Decodes a query-string name or value (`application/x-www-form-urlencoded`: `+` is a
/// space, `%2B` a plus sign). `None` on a malformed escape or when the bytes are not UTF-8.
pub fn decode_query_component(s: &str) -> Option<String> {
    if s.contains('+') {
        decode_path_segment(&s.replace('+', " "))
    } else {
        decode_path_segment(s)
    }
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
        Request::for_test(path, headers)
    }

    #[test]
    fn headers_from_bytes_keep_order_and_make_non_utf8_unmatchable() {
        let h = Headers::from_bytes([
            (&b"authorization"[..], &b"Bearer abc"[..]),
            (&b"x-a"[..], &b"caf\xc3\xa9"[..]),
            (&b"x-a"[..], &b"bad\xff"[..]),
        ]);
        assert_eq!(h.first("authorization"), Some("Bearer abc"));
        let values: Vec<&str> = h
            .iter()
            .filter(|(k, _)| *k == "x-a")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values, ["caf\u{e9}", "bad\u{fffd}"]);
    }

    #[test]
    fn serialized_pairs_round_trip() {
        let pairs = [
            ("content-type", "application/json"),
            ("x-empty", ""),
            ("www-authenticate", "Bearer"),
        ];
        let h = Headers::from_serialized(&serialize_pairs(&pairs)).expect("round trip");
        assert_eq!(h.iter().collect::<Vec<_>>(), pairs.to_vec());
        assert_eq!(serialize_pairs(&[]), 0u32.to_le_bytes().to_vec());
    }

    /// The proxy-wasm serialization of `pairs` (raw bytes, as a host sends them).
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn serialized_header_maps() {
        let ok: &[(&[u8], &[u8])] = &[
            (b":path", b"/v1/x"),
            (b"authorization", b"Bearer a.b.c"),
            (b"x-empty", b""),
            (b"x-note", b"caf\xe9 \xff"),
        ];
        let h = Headers::from_serialized(&serialize(ok)).expect("valid map");
        let got: Vec<(&str, &str)> = h.iter().collect();
        assert_eq!(
            got,
            vec![
                (":path", "/v1/x"),
                ("authorization", "Bearer a.b.c"),
                ("x-empty", ""),
                ("x-note", "caf\u{fffd} \u{fffd}"),
            ]
        );
        assert_eq!(h.first("x-empty"), Some(""));
        assert!(h.first("authorization").is_some() && h.first("Authorization").is_none());
        assert_eq!(Headers::from_serialized(b""), Some(Headers::default()));
        assert_eq!(
            Headers::from_serialized(&serialize(&[])).map(|h| h.len()),
            Some(0)
        );
        let good = serialize(ok);
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut long_field = good.clone();
        long_field[4..8].copy_from_slice(&10_000u32.to_le_bytes());
        let malformed: Vec<(&str, Vec<u8>)> = vec![
            ("truncated count", vec![1, 0]),
            ("truncated sizes", good[..10].to_vec()),
            ("truncated data", good[..good.len() - 3].to_vec()),
            ("missing NUL", no_nul),
            ("trailing bytes", [good.as_slice(), b"x"].concat()),
            ("count larger than the buffer", huge_count),
            ("field longer than the buffer", long_field),
        ];
        for (case, bytes) in malformed {
            assert_eq!(Headers::from_serialized(&bytes), None, "{case}");
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
        assert_eq!(
            req("/a?q=a+b%2Bc", &[]).query_param("q").as_deref(),
            Some("a b+c"),
            "`+` is a space in a query, %2B a plus"
        );
    }

    #[test]
    fn percent_decoding_is_exact() {
        let cases: Vec<(&str, Option<&str>, Option<&str>)> = vec![
            // (input, as a path segment, as a query component)
            ("plain", Some("plain"), Some("plain")),
            ("a+b", Some("a+b"), Some("a b")),
            ("a%20b", Some("a b"), Some("a b")),
            ("%2b%2B", Some("++"), Some("++")),
            ("caf%C3%A9", Some("café"), Some("café")),
            ("%+4", None, None),
            ("%-4", None, None),
            ("% 4", None, None),
            ("%4", None, None),
            ("%", None, None),
            ("a%zz", None, None),
            ("%C3", None, None),
            ("%FF", None, None),
        ];
        for (input, path, query) in cases {
            assert_eq!(decode_path_segment(input).as_deref(), path, "path {input}");
            assert_eq!(
                decode_query_component(input).as_deref(),
                query,
                "query {input}"
            );
        }
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
