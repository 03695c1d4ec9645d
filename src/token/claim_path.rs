//! Claim references: a top-level claim name (`org_id`, `https://example.com/roles`), or a
//! JSON Pointer (RFC 6901) into nested claims when the reference starts with `/`
//! (`/realm_access/roles`, `/resource_access/my-api/roles`, `~1` for a `/` inside a name,
//! `~0` for a `~`). A name that does not start with `/` keeps its meaning exactly, dots and
//! slashes included.

use serde_json::{Map, Value};
use std::fmt;

/// A compiled claim reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    /// As written in the configuration (shown in traces and errors).
    text: String,
    /// The top-level claim (a pointer's first token, unescaped).
    first: String,
    /// The rest of a pointer (`/roles`, still escaped), looked up with serde_json.
    rest: Option<String>,
}

/// Why a claim reference is not one (the configuration names the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPathError(pub String);

impl fmt::Display for ClaimPathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClaimPathError {}

impl ClaimPath {
    /// Compiles a reference; the error says what is wrong (the caller names the field).
    pub fn parse(text: &str) -> Result<ClaimPath, ClaimPathError> {
        if text.is_empty() {
            return Err(ClaimPathError("claim name must not be empty".into()));
        }
        let Some(pointer) = text.strip_prefix('/') else {
            return Ok(ClaimPath::top(text));
        };
        let first = pointer.split('/').next().unwrap_or("");
        for token in pointer.split('/') {
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                    return Err(ClaimPathError(format!(
                        "{text:?}: in a JSON Pointer '~' must be followed by 0 or 1"
                    )));
                }
            }
        }
        let rest = pointer.get(first.len()..).filter(|r| !r.is_empty());
        Ok(ClaimPath {
            text: text.to_string(),
            first: unescape(first),
            rest: rest.map(str::to_string),
        })
    }

    /// A top-level claim.
    pub fn top(name: &str) -> ClaimPath {
        ClaimPath {
            text: name.to_string(),
            first: name.to_string(),
            rest: None,
        }
    }

    /// The value the reference names in `claims`, if present (arrays on the way are
    /// indexed by a decimal token, as RFC 6901 says).
    pub fn get<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let top = claims.get(&self.first)?;
        match &self.rest {
            None => Some(top),
            Some(rest) => top.pointer(rest),
        }
    }

    /// The reference as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// RFC 6901 §4: `~1` is `/`, then `~0` is `~`.
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        let v = json!({
            "sub": "u1",
            "realm_access": {"roles": ["admin", "user"]},
            "resource_access": {"my-api": {"roles": ["writer"]}, "a/b": {"x": 1}},
            "https://example.com/roles": ["ns"],
            "a.b": "dotted",
            "t~x": {"y": "tilde"},
            "list": [{"id": "first"}, {"id": "second"}],
            "": {"empty": true}
        });
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn get(path: &str) -> Option<Value> {
        ClaimPath::parse(path).ok()?.get(&claims()).cloned()
    }

    #[test]
    fn top_level_names_keep_their_meaning() {
        assert_eq!(get("sub"), Some(json!("u1")));
        assert_eq!(get("a.b"), Some(json!("dotted")), "dots are not paths");
        assert_eq!(
            get("https://example.com/roles"),
            Some(json!(["ns"])),
            "a namespaced claim with slashes is one name"
        );
        assert_eq!(get("realm_access.roles"), None);
        assert_eq!(get("missing"), None);
    }

    #[test]
    fn pointers_walk_objects_and_arrays() {
        assert_eq!(get("/realm_access/roles"), Some(json!(["admin", "user"])));
        assert_eq!(
            get("/resource_access/my-api/roles"),
            Some(json!(["writer"]))
        );
        assert_eq!(
            get("/resource_access/a~1b/x"),
            Some(json!(1)),
            "~1 is a slash"
        );
        assert_eq!(get("/t~0x/y"), Some(json!("tilde")), "~0 is a tilde");
        assert_eq!(get("/https:~1~1example.com~1roles"), Some(json!(["ns"])));
        assert_eq!(get("/list/1/id"), Some(json!("second")));
        assert_eq!(get("/list/01/id"), None, "no leading zeros");
        assert_eq!(get("/list/2/id"), None);
        assert_eq!(get("/realm_access/roles/0"), Some(json!("admin")));
        assert_eq!(get("/realm_access/missing"), None);
        assert_eq!(get("/sub/x"), None, "a string has no members");
        assert_eq!(get("/sub"), Some(json!("u1")));
        assert_eq!(
            get("//empty"),
            Some(json!(true)),
            "an empty token names \"\""
        );
    }

    #[test]
    fn bad_references_are_refused() {
        assert!(ClaimPath::parse("").is_err());
        for bad in ["/a~", "/a~2", "/realm_access/~x", "/~"] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad}");
        }
        assert!(
            ClaimPath::parse("a~2").is_ok(),
            "a top-level name is taken as is"
        );
        assert_eq!(
            ClaimPath::parse("/a/b").map(|p| p.to_string()),
            Ok("/a/b".into())
        );
    }
}
