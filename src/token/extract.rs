//! Where a request's token comes from: `Authorization: Bearer` (the default), another
//! header with an optional prefix, a cookie, or a query parameter — per provider. A
//! request carries exactly one credential: none, a malformed one, or two different ones
//! is 401 `Requires authentication`.

use crate::request::Request;

/// Extracts the token from the request's `Authorization` header values.
///
/// Exactly one header of the form `Bearer <token>` (scheme case-insensitive, one space,
/// non-empty token without whitespace or commas); anything else is `None`, which the
/// contract answers with 401 `Requires authentication`. Commas matter because HTTP/1
/// proxies (Envoy among them) fold repeated `Authorization` headers into one
/// comma-joined value: `Bearer a,Bearer b` is two credentials, not one.
#[cfg(test)]
pub fn extract_bearer<'a>(values: &[&'a str]) -> Option<&'a str> {
    extract_authorization(values, false).map(|(_, token)| token)
}

/// The scheme of an `Authorization` credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449): the token is bound to the key of the request's `DPoP` proof.
    Dpop,
}

/// As [`extract_bearer`], also taking `DPoP <token>` when `dpop` (some provider accepts
/// DPoP-bound tokens); the scheme says which it was.
pub fn extract_authorization<'a>(values: &[&'a str], dpop: bool) -> Option<(Scheme, &'a str)> {
    let [value] = values else {
        return None;
    };
    let (scheme, token) = if value.get(..7)?.eq_ignore_ascii_case("bearer ") {
        (Scheme::Bearer, value.get(7..)?)
    } else if dpop && value.get(..5)?.eq_ignore_ascii_case("dpop ") {
        (Scheme::Dpop, value.get(5..)?)
    } else {
        return None;
    };
    // This runs on every request over the whole token: one byte search for the three
    // bytes (memchr3), not a char-by-char Unicode scan. Other odd bytes fail base64url
    // decoding later (401 Invalid or expired token).
    if token.is_empty() || memchr::memchr3(b',', b' ', b'\t', token.as_bytes()).is_some() {
        return None;
    }
    Some((scheme, token))
}

/// Where a provider's tokens come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    #[default]
    Authorization,
    /// A header (lower-case name) whose value is `prefix` (case-insensitive) + the token.
    Header {
        /// Header name, lower case.
        name: String,
        /// What precedes the token (may be empty).
        prefix: String,
    },
    /// A cookie of the `Cookie` header.
    Cookie(String),
    /// A query parameter (discouraged: URLs end up in logs; RFC 6750 §2.3).
    Query(String),
}

impl TokenSource {
    /// For people: `Authorization: Bearer`, `header x-token`, `cookie session`, `query access_token`.
    pub fn describe(&self) -> String {
        match self {
            TokenSource::Authorization => "Authorization: Bearer".into(),
            TokenSource::Header { name, .. } => format!("header {name}"),
            TokenSource::Cookie(name) => format!("cookie {name}"),
            TokenSource::Query(name) => format!("query parameter {name}"),
        }
    }
}

/// What one source holds on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found<'a> {
    Nothing,
    One(&'a str),
    /// `Authorization` held one credential of this scheme.
    Scheme(Scheme, &'a str),
    Malformed,
}

/// A token's characters: base64url segments and dots (anything else fails parsing later;
/// whitespace, commas and quotes here mean the value is not one token).
fn plausible(token: &str) -> bool {
    !token.is_empty()
        && !token
            .bytes()
            .any(|b| b.is_ascii_whitespace() || matches!(b, b',' | b';' | b'"'))
}

/// The single value among `values` (two are ambiguous), before any check of its shape.
fn single<'a>(mut values: impl Iterator<Item = &'a str>) -> Found<'a> {
    match (values.next(), values.next()) {
        (None, _) => Found::Nothing,
        (Some(v), None) => Found::One(v),
        _ => Found::Malformed,
    }
}

fn one<'a>(values: impl Iterator<Item = &'a str>) -> Found<'a> {
    match single(values) {
        Found::One(v) if !plausible(v) => Found::Malformed,
        other => other,
    }
}

fn find<'a>(req: &'a Request, source: &TokenSource, dpop: bool) -> Found<'a> {
    match source {
        TokenSource::Authorization => {
            let values: Vec<&str> = req.header_values("authorization").collect();
            if values.is_empty() {
                Found::Nothing
            } else {
                extract_authorization(&values, dpop)
                    .map_or(Found::Malformed, |(scheme, t)| Found::Scheme(scheme, t))
            }
        }
        TokenSource::Header { name, prefix } => {
            let values = req
                .headers
                .iter()
                .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v);
            match single(values) {
                Found::One(v) => match v.get(..prefix.len()) {
                    Some(p) if p.eq_ignore_ascii_case(prefix) => v
                        .get(prefix.len()..)
                        .filter(|t| plausible(t))
                        .map_or(Found::Malformed, Found::One),
                    _ => Found::Malformed,
                },
                other => other,
            }
        }
        TokenSource::Cookie(name) => one(req
            .header_values("cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)),
        // The value as sent: tokens need no percent-encoding, so an escape is refused.
        TokenSource::Query(name) => match one(req
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v))
        {
            Found::One(v) if v.contains(['%', '+']) => Found::Malformed,
            other => other,
        },
    }
}

/// A malformed credential, or two different ones: 401 `Requires authentication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOneCredential;

/// The request's one credential: its token, where it was found and how it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    /// The index, among the sources asked, of the first source holding it.
    pub index: usize,
    /// The token.
    pub token: &'a str,
    /// `DPoP` when it came as `Authorization: DPoP` (in any of its sources), else `Bearer`.
    pub scheme: Scheme,
}

impl std::fmt::Display for NotOneCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not exactly one credential")
    }
}

impl std::error::Error for NotOneCredential {}

/// The request's one credential among `sources`: `Ok(None)` when no source holds
/// anything, `Ok(Some(_))` when exactly one token was sent (in one source, or the same
/// token in several), `Err` for a malformed credential or two different ones.
/// `Authorization: DPoP <token>` counts when `dpop` (some provider accepts it).
pub fn credential<'a>(
    req: &'a Request,
    sources: &[&TokenSource],
    dpop: bool,
) -> Result<Option<Credential<'a>>, NotOneCredential> {
    let mut found: Option<Credential<'a>> = None;
    for (index, source) in sources.iter().enumerate() {
        let (scheme, token) = match find(req, source, dpop) {
            Found::Nothing => continue,
            Found::Malformed => return Err(NotOneCredential),
            Found::One(token) => (Scheme::Bearer, token),
            Found::Scheme(scheme, token) => (scheme, token),
        };
        match &mut found {
            Some(seen) if seen.token != token => return Err(NotOneCredential),
            Some(seen) => {
                if scheme == Scheme::Dpop {
                    seen.scheme = Scheme::Dpop;
                }
            }
            None => {
                found = Some(Credential {
                    index,
                    token,
                    scheme,
                })
            }
        }
    }
    Ok(found)
}

/// The `Cookie` header without cookie `name` (`None`: nothing left).
pub fn cookie_without(values: &[&str], name: &str) -> Option<String> {
    let kept: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && c.split_once('=').is_none_or(|(k, _)| k != name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// `path` without query parameter `name`.
pub fn path_without_param(path: &str, name: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| p.split_once('=').map_or(*p, |(k, _)| k) != name)
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> Request {
        Request::for_test(path, headers)
    }

    #[test]
    fn one_credential_per_request() {
        let auth = TokenSource::Authorization;
        let header = TokenSource::Header {
            name: "x-token".into(),
            prefix: "Token ".into(),
        };
        let cookie = TokenSource::Cookie("session".into());
        let query = TokenSource::Query("access_token".into());
        let all = [&auth, &header, &cookie, &query];
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, &'a str)>,
            Result<Option<(usize, &'a str)>, NotOneCredential>,
        );
        let cases: Vec<Case> = vec![
            ("/", vec![], Ok(None)),
            (
                "/",
                vec![("authorization", "Bearer a.b.c")],
                Ok(Some((0, "a.b.c"))),
            ),
            (
                "/",
                vec![("authorization", "Basic x")],
                Err(NotOneCredential),
            ),
            (
                "/",
                vec![("x-token", "Token a.b.c")],
                Ok(Some((1, "a.b.c"))),
            ),
            (
                "/",
                vec![("x-token", "token a.b.c")],
                Ok(Some((1, "a.b.c"))),
            ),
            ("/", vec![("x-token", "a.b.c")], Err(NotOneCredential)),
            ("/", vec![("x-token", "Token ")], Err(NotOneCredential)),
            (
                "/",
                vec![("cookie", "theme=dark; session=a.b.c")],
                Ok(Some((2, "a.b.c"))),
            ),
            (
                "/",
                vec![("cookie", "session=a.b.c"), ("cookie", "session=d.e.f")],
                Err(NotOneCredential),
            ),
            ("/", vec![("cookie", "theme=dark")], Ok(None)),
            ("/x?access_token=a.b.c&y=1", vec![], Ok(Some((3, "a.b.c")))),
            (
                "/x?access_token=a.b.c&access_token=d",
                vec![],
                Err(NotOneCredential),
            ),
            ("/x?access_token=a%2Eb", vec![], Err(NotOneCredential)),
            // The same token in two places is one credential; two different ones are not.
            (
                "/x?access_token=a.b.c",
                vec![("authorization", "Bearer a.b.c")],
                Ok(Some((0, "a.b.c"))),
            ),
            (
                "/x?access_token=d.e.f",
                vec![("authorization", "Bearer a.b.c")],
                Err(NotOneCredential),
            ),
            (
                "/",
                vec![
                    ("authorization", "Bearer a.b.c"),
                    ("cookie", "session=d.e.f"),
                ],
                Err(NotOneCredential),
            ),
        ];
        for (path, headers, want) in cases {
            assert_eq!(
                credential(&req(path, &headers), &all, false)
                    .map(|c| c.map(|c| (c.index, c.token, c.scheme))),
                want.map(|w| w.map(|(i, t)| (i, t, Scheme::Bearer))),
                "{path} {headers:?}"
            );
        }
        // Only the sources of eligible providers count.
        let r = req("/", &[("cookie", "session=a.b.c")]);
        assert_eq!(credential(&r, &[&auth], false), Ok(None));
        // `DPoP` is a credential only when a provider takes DPoP-bound tokens.
        let r = req("/", &[("authorization", "DPoP a.b.c")]);
        assert_eq!(credential(&r, &[&auth], false), Err(NotOneCredential));
        let dpop = Credential {
            index: 0,
            token: "a.b.c",
            scheme: Scheme::Dpop,
        };
        assert_eq!(credential(&r, &[&auth], true), Ok(Some(dpop)));
        // The same token also in a cookie: one credential, sent as DPoP.
        let cookie = TokenSource::Cookie("session".into());
        let r = req(
            "/",
            &[("cookie", "session=a.b.c"), ("authorization", "DPoP a.b.c")],
        );
        let both = Credential { index: 0, ..dpop };
        assert_eq!(credential(&r, &[&cookie, &auth], true), Ok(Some(both)));
    }

    #[test]
    fn stripping() {
        assert_eq!(
            cookie_without(&["theme=dark; session=a.b.c", "x=1"], "session").as_deref(),
            Some("theme=dark; x=1")
        );
        assert_eq!(cookie_without(&["session=a.b.c"], "session"), None);
        assert_eq!(
            path_without_param("/x?access_token=t&y=1", "access_token"),
            "/x?y=1"
        );
        assert_eq!(
            path_without_param("/x?access_token=t", "access_token"),
            "/x"
        );
        assert_eq!(path_without_param("/x", "access_token"), "/x");
    }
}
