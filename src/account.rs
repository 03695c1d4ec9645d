//! Account resolution: the request path built from verified claims, the reply's meaning,
//! and a bounded per-VM cache with separate positive and negative lifetimes.

use crate::config::ConfigError;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};

/// A path template such as `/accounts/resolve?user={sub}&org={org_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<(String, Option<String>)>,
}

impl PathTemplate {
    /// Compiles a template; placeholders name claims.
    pub fn compile(text: &str, at: &str) -> Result<PathTemplate, ConfigError> {
        let error = |m: &str| {
            Err(ConfigError {
                field: at.to_string(),
                message: m.to_string(),
            })
        };
        if !text.starts_with('/') {
            return error("must start with '/'");
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (lit, after) = rest.split_at(open);
            let Some(close) = after.find('}') else {
                return error("unclosed '{'");
            };
            let claim = after.get(1..close).unwrap_or("");
            if claim.is_empty() || claim.contains('{') {
                return error("empty or nested {claim}");
            }
            parts.push((lit.to_string(), Some(claim.to_string())));
            rest = after.get(close + 1..).unwrap_or("");
        }
        if rest.contains('}') {
            return error("stray '}'");
        }
        parts.push((rest.to_string(), None));
        Ok(PathTemplate { parts })
    }

    /// Renders the path with percent-encoded claim values (strings, numbers, booleans);
    /// `None` when a claim is missing or not a scalar.
    pub fn render(&self, claims: &Map<String, Value>) -> Option<String> {
        let mut out = String::new();
        for (lit, claim) in &self.parts {
            out.push_str(lit);
            if let Some(name) = claim {
                let value = match claims.get(name)? {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                    _ => return None,
                };
                percent_encode(&value, &mut out);
            }
        }
        Some(out)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// What the account service said, as the pipeline needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountState<'a> {
    /// The account exists; its JSON fields.
    Found(&'a Map<String, Value>),
    /// The service said it does not exist.
    NotFound,
    /// Nothing cached.
    Unknown,
}

/// Interprets the service's reply: 200 with a JSON object is an account, 404 is "no such
/// account"; anything else (5xx, timeout, garbage) is an error that must not be cached.
pub fn interpret(status: Option<&str>, body: &[u8]) -> Result<Option<Map<String, Value>>, String> {
    match status {
        Some("200") => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err("200 without a JSON object".into()),
        },
        Some("404") => Ok(None),
        Some(other) => Err(format!("status {other}")),
        None => Err("no response (connection failure or timeout)".into()),
    }
}

struct Entry {
    account: Option<Map<String, Value>>,
    expires_at: u64,
}

/// Bounded cache of account lookups keyed by provider and rendered path.
pub struct AccountCache {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
    max: usize,
}

impl AccountCache {
    /// An empty cache holding at most `max` entries (0 disables caching).
    pub fn new(max: usize) -> AccountCache {
        AccountCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            max,
        }
    }

    /// The cached state of `key` at `now` (ms).
    pub fn get(&self, key: &str, now: u64) -> AccountState<'_> {
        match self.entries.get(key) {
            Some(e) if e.expires_at > now => match &e.account {
                Some(a) => AccountState::Found(a),
                None => AccountState::NotFound,
            },
            _ => AccountState::Unknown,
        }
    }

    /// Stores a result for `ttl` ms; when full, the oldest entry goes (O(1) amortized).
    pub fn insert(&mut self, key: String, account: Option<Map<String, Value>>, now: u64, ttl: u64) {
        if self.max == 0 || ttl == 0 {
            return;
        }
        while !self.entries.contains_key(&key) && self.entries.len() >= self.max {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        if self
            .entries
            .insert(
                key.clone(),
                Entry {
                    account,
                    expires_at: now.saturating_add(ttl),
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
    }

    /// Number of entries (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn templates_render_percent_encoded() {
        let t =
            PathTemplate::compile("/accounts/resolve?user={sub}&org={org_id}", "p").expect("ok");
        let cases: Vec<(Value, Option<&str>)> = vec![
            (
                json!({"sub": "u1", "org_id": "o1"}),
                Some("/accounts/resolve?user=u1&org=o1"),
            ),
            (
                json!({"sub": "a b&c=d/é", "org_id": 7}),
                Some("/accounts/resolve?user=a%20b%26c%3Dd%2F%C3%A9&org=7"),
            ),
            (json!({"sub": "u1"}), None),
            (json!({"sub": "", "org_id": "o"}), None),
            (json!({"sub": ["x"], "org_id": "o"}), None),
            (
                json!({"sub": "\r\n", "org_id": "o"}),
                Some("/accounts/resolve?user=%0D%0A&org=o"),
            ),
        ];
        for (c, want) in cases {
            assert_eq!(t.render(&claims(c.clone())).as_deref(), want, "{c}");
        }
        let ns =
            PathTemplate::compile("/a/{https://api.solo.one/stakeholder_name}", "p").expect("ok");
        assert_eq!(
            ns.render(&claims(
                json!({"https://api.solo.one/stakeholder_name": "Acme"})
            ))
            .as_deref(),
            Some("/a/Acme")
        );
        for bad in ["accounts", "/a/{sub", "/a/{}", "/a/}"] {
            assert!(PathTemplate::compile(bad, "p").is_err(), "{bad}");
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            interpret(Some("200"), br#"{"account_id":"a1"}"#)
                .ok()
                .flatten()
                .map(|m| m.len()),
            Some(1)
        );
        assert_eq!(interpret(Some("404"), b""), Ok(None));
        for (status, body) in [
            (Some("200"), &b"[1]"[..]),
            (Some("200"), b"nope"),
            (Some("500"), b"{}"),
            (Some("401"), b""),
            (None, b""),
        ] {
            assert!(interpret(status, body).is_err(), "{status:?}");
        }
    }

    #[test]
    fn cache_lifetimes_and_bound() {
        let mut c = AccountCache::new(2);
        let acct = claims(json!({"account_id": "a1"}));
        c.insert("k1".into(), Some(acct.clone()), 0, 1000);
        c.insert("k2".into(), None, 0, 100);
        assert_eq!(c.get("k1", 999), AccountState::Found(&acct));
        assert_eq!(c.get("k1", 1000), AccountState::Unknown);
        assert_eq!(c.get("k2", 50), AccountState::NotFound);
        assert_eq!(c.get("k2", 100), AccountState::Unknown);
        assert_eq!(c.get("k3", 0), AccountState::Unknown);
        // Full: the oldest (k1) goes.
        c.insert("k3".into(), None, 200, 100);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("k1", 200), AccountState::Unknown);
        assert_eq!(c.get("k3", 200), AccountState::NotFound);
        // Re-inserting a present key evicts nothing.
        c.insert("k3".into(), Some(acct.clone()), 250, 100);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("k3", 250), AccountState::Found(&acct));
        let mut off = AccountCache::new(0);
        off.insert("k".into(), None, 0, 100);
        assert!(off.is_empty());
    }
}
