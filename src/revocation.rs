//! Revocation lists: the tokens a provider's list cuts off before they expire — by token
//! id (`jti`), by subject (`sub`) or by session (`sid`) with a cutoff time.
//!
//! The document (fetched like a JWKS, once per process, see [`crate::fetched`]):
//!
//! ```json
//! { "jti": [ { "jti": "8f1c2a…", "exp": 1796157700 } ],
//!   "sub": [ { "sub": "user_ada", "not_before": 1796150000 } ],
//!   "sid": [ { "sid": "sess_01H…", "not_before": 1796150000 } ] }
//! ```
//!
//! A token is revoked when its `jti` is listed, or its `sub` (or `sid`) is listed with a
//! `not_before` later than its `iat` (a token without a numeric `iat` under such a cutoff
//! is revoked). The list is keyed on what the token names — never on a hash of the token
//! itself, which has other valid encodings (an ECDSA signature can be rewritten). Entries
//! are kept as 64-bit SipHash digests of (kind, value): a collision can only refuse a
//! token, never let one through.

use crate::shared::{Document, FetchError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// What bounds a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most entries kept (after expired `jti` entries are dropped); a longer list is
    /// refused whole (the previous one stays), never cut.
    pub max_entries: usize,
    /// Clock skew (s): a `jti` entry is dropped only once its `exp` is this far past.
    pub clock_skew_s: i64,
}

/// Keys are digests already: the map uses them as they are.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Digests = HashMap<u64, i64, BuildHasherDefault<Identity>>;

/// The kinds of entry, as they appear in the document and in the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A token id.
    Jti,
    /// A subject, with a cutoff.
    Sub,
    /// A session, with a cutoff.
    Sid,
}

impl Kind {
    /// The member name in the document and the claim name in a token.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Jti => "jti",
            Kind::Sub => "sub",
            Kind::Sid => "sid",
        }
    }
}

fn digest(kind: Kind, value: &str) -> u64 {
    // SipHash-1-3 with fixed keys: the same digest in every VM and build.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    kind.name().hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// A parsed revocation list.
#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    /// `jti` digests (the value: the entry's `exp`, or `i64::MAX`).
    jti: Digests,
    /// `sub` digests → `not_before`.
    sub: Digests,
    /// `sid` digests → `not_before`.
    sid: Digests,
}

/// Why a token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its `jti` is listed.
    Jti,
    /// Its subject or session is cut off at `not_before`, later than its `iat` (or it
    /// has no `iat`).
    Cutoff(Kind, i64),
}

impl Revoked {
    /// A few words for logs and `explain` (never the listed value).
    pub fn describe(&self) -> String {
        match self {
            Revoked::Jti => "its jti is listed".to_string(),
            Revoked::Cutoff(kind, nb) => format!(
                "its {} is listed with not_before {nb}, later than its iat",
                kind.name()
            ),
        }
    }
}

impl RevocationList {
    /// Parses a list at `now_s`: a JSON object with optional arrays `jti`, `sub`, `sid`
    /// (any other member, a malformed entry, a duplicate key or more than
    /// `limits.max_entries` entries refuse the whole document: a half-read list would let
    /// revoked tokens through). `jti` entries whose `exp` is past (beyond the clock skew)
    /// are dropped; members of entries besides those named are ignored.
    pub fn parse(body: &[u8], limits: &Limits, now_s: i64) -> Result<RevocationList, FetchError> {
        let Some(top) = crate::strict_json::parse_object(body) else {
            return Err(FetchError::Invalid(
                "not a JSON object (or a duplicate key)".into(),
            ));
        };
        let mut list = RevocationList::default();
        let mut entries = 0usize;
        for (member, value) in &top {
            let kind = match member.as_str() {
                "jti" => Kind::Jti,
                "sub" => Kind::Sub,
                "sid" => Kind::Sid,
                other => return Err(FetchError::Invalid(format!("unknown member {other:?}"))),
            };
            let Value::Array(items) = value else {
                return Err(FetchError::Invalid(format!("{member}: expected an array")));
            };
            for (i, item) in items.iter().enumerate() {
                let at = || format!("{member}[{i}]");
                let Value::Object(entry) = item else {
                    return Err(FetchError::Invalid(format!("{}: expected an object", at())));
                };
                let Some(id) = entry.get(kind.name()).and_then(Value::as_str) else {
                    return Err(FetchError::Invalid(format!(
                        "{}.{member}: expected a string",
                        at()
                    )));
                };
                let (map, time) = match kind {
                    Kind::Jti => {
                        let exp = match entry.get("exp") {
                            None => i64::MAX,
                            Some(v) => numeric(v).ok_or_else(|| {
                                FetchError::Invalid(format!("{}.exp: expected a number", at()))
                            })?,
                        };
                        if exp.saturating_add(limits.clock_skew_s) < now_s {
                            continue;
                        }
                        (&mut list.jti, exp)
                    }
                    Kind::Sub | Kind::Sid => {
                        let nb = entry.get("not_before").and_then(numeric).ok_or_else(|| {
                            FetchError::Invalid(format!("{}.not_before: expected a number", at()))
                        })?;
                        let map = if kind == Kind::Sub {
                            &mut list.sub
                        } else {
                            &mut list.sid
                        };
                        (map, nb)
                    }
                };
                entries += 1;
                if entries > limits.max_entries {
                    return Err(FetchError::Invalid(format!(
                        "more than {} entries (revocation.max_entries)",
                        limits.max_entries
                    )));
                }
                // Listed twice: the later cutoff (and the later exp) wins.
                let slot = map.entry(digest(kind, id)).or_insert(time);
                *slot = (*slot).max(time);
            }
        }
        Ok(list)
    }

    /// Entries in force (after expired `jti` entries were dropped).
    pub fn len(&self) -> usize {
        self.jti.len() + self.sub.len() + self.sid.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a verified token with these claims is revoked, and why.
    pub fn check(&self, claims: &Map<String, Value>) -> Option<Revoked> {
        let named = |kind: Kind| claims.get(kind.name()).and_then(Value::as_str);
        if !self.jti.is_empty() {
            if let Some(jti) = named(Kind::Jti) {
                if self.jti.contains_key(&digest(Kind::Jti, jti)) {
                    return Some(Revoked::Jti);
                }
            }
        }
        let iat = claims.get("iat").and_then(numeric);
        for (kind, map) in [(Kind::Sub, &self.sub), (Kind::Sid, &self.sid)] {
            if map.is_empty() {
                continue;
            }
            let Some(value) = named(kind) else { continue };
            if let Some(&not_before) = map.get(&digest(kind, value)) {
                if iat.is_none_or(|iat| not_before > iat) {
                    return Some(Revoked::Cutoff(kind, not_before));
                }
            }
        }
        None
    }
}

/// A NumericDate (RFC 7519 §2): an integer, or a number with a fraction (rounded down).
fn numeric(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f.floor() as i64)
    })
}

impl Document for RevocationList {
    type Limits = Limits;
    fn parse(body: &[u8], limits: &Limits, now: u64) -> Result<RevocationList, FetchError> {
        let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        RevocationList::parse(body, limits, now_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        max_entries: 10,
        clock_skew_s: 60,
    };
    const NOW: i64 = 1_800_000_000;

    fn list(doc: Value) -> RevocationList {
        RevocationList::parse(doc.to_string().as_bytes(), &LIMITS, NOW).expect("a list")
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn each_kind_of_entry_revokes_what_it_names_and_nothing_else() {
        let l = list(json!({
            "jti": [{"jti": "j-1", "exp": NOW + 600}, {"jti": "j-forever"}],
            "sub": [{"sub": "user_ada", "not_before": NOW - 100}],
            "sid": [{"sid": "sess-1", "not_before": NOW - 100, "reason": "logout"}]
        }));
        assert_eq!(l.len(), 4);
        assert!(!l.is_empty());
        let cases = vec![
            (
                "listed jti",
                json!({"jti": "j-1", "iat": NOW}),
                Some(Revoked::Jti),
            ),
            (
                "jti without exp",
                json!({"jti": "j-forever"}),
                Some(Revoked::Jti),
            ),
            ("other jti", json!({"jti": "j-2", "iat": NOW}), None),
            ("jti case differs", json!({"jti": "J-1", "iat": NOW}), None),
            (
                "subject issued before the cutoff",
                json!({"sub": "user_ada", "iat": NOW - 101}),
                Some(Revoked::Cutoff(Kind::Sub, NOW - 100)),
            ),
            (
                "subject issued at the cutoff",
                json!({"sub": "user_ada", "iat": NOW - 100}),
                None,
            ),
            (
                "subject issued after",
                json!({"sub": "user_ada", "iat": NOW}),
                None,
            ),
            (
                "subject without iat",
                json!({"sub": "user_ada"}),
                Some(Revoked::Cutoff(Kind::Sub, NOW - 100)),
            ),
            (
                "subject with a string iat",
                json!({"sub": "user_ada", "iat": "0"}),
                Some(Revoked::Cutoff(Kind::Sub, NOW - 100)),
            ),
            (
                "fractional iat before the cutoff",
                json!({"sub": "user_ada", "iat": (NOW - 101) as f64 + 0.9}),
                Some(Revoked::Cutoff(Kind::Sub, NOW - 100)),
            ),
            (
                "session before the cutoff",
                json!({"sub": "user_bob", "sid": "sess-1", "iat": NOW - 200}),
                Some(Revoked::Cutoff(Kind::Sid, NOW - 100)),
            ),
            (
                "other session",
                json!({"sid": "sess-2", "iat": NOW - 200}),
                None,
            ),
            // A value of one kind never matches an entry of another.
            (
                "a sub named like a jti",
                json!({"sub": "j-1", "iat": NOW}),
                None,
            ),
            (
                "a jti named like a sub",
                json!({"jti": "user_ada", "iat": NOW}),
                None,
            ),
            (
                "a sid named like a sub",
                json!({"sid": "user_ada", "iat": 0}),
                None,
            ),
            ("no claims", json!({}), None),
            ("a non-string jti", json!({"jti": 1}), None),
        ];
        for (case, c, want) in cases {
            assert_eq!(l.check(&claims(c)), want, "{case}");
        }
    }

    #[test]
    fn why_is_said_without_the_listed_value() {
        assert_eq!(Revoked::Jti.describe(), "its jti is listed");
        let cut = Revoked::Cutoff(Kind::Sid, 1_700_000_000);
        assert_eq!(
            cut.describe(),
            "its sid is listed with not_before 1700000000, later than its iat"
        );
    }

    #[test]
    fn expired_jti_entries_are_dropped_beyond_the_skew() {
        let l = list(json!({"jti": [
            {"jti": "old", "exp": NOW - 61},
            {"jti": "in-skew", "exp": NOW - 60},
        ]}));
        assert_eq!(l.len(), 1);
        assert_eq!(l.check(&claims(json!({"jti": "old"}))), None);
        assert_eq!(
            l.check(&claims(json!({"jti": "in-skew"}))),
            Some(Revoked::Jti)
        );
    }

    #[test]
    fn listed_twice_the_later_cutoff_wins() {
        let l = list(json!({"sub": [
            {"sub": "u", "not_before": NOW - 500},
            {"sub": "u", "not_before": NOW - 100},
            {"sub": "u", "not_before": NOW - 300},
        ]}));
        let at = |iat: i64| l.check(&claims(json!({"sub": "u", "iat": iat})));
        assert!(at(NOW - 101).is_some() && at(NOW - 100).is_none());
    }

    #[test]
    fn a_malformed_or_oversized_document_is_refused_whole() {
        let refused = vec![
            ("not JSON", "nope".to_string()),
            ("an array", "[]".to_string()),
            ("unknown member", json!({"jtis": []}).to_string()),
            ("member not an array", json!({"jti": {}}).to_string()),
            ("entry not an object", json!({"jti": ["a"]}).to_string()),
            ("jti not a string", json!({"jti": [{"jti": 1}]}).to_string()),
            ("exp not a number", json!({"jti": [{"jti": "a", "exp": "x"}]}).to_string()),
            ("sub without not_before", json!({"sub": [{"sub": "a"}]}).to_string()),
            ("sid missing", json!({"sid": [{"sub": "a", "not_before": 1}]}).to_string()),
            ("duplicate member", r#"{"jti":[{"jti":"a"}],"jti":[]}"#.to_string()),
            (
                "eleven entries",
                json!({"jti": (0..11).map(|i| json!({"jti": format!("j{i}")})).collect::<Vec<_>>()})
                    .to_string(),
            ),
        ];
        for (case, doc) in refused {
            assert!(
                RevocationList::parse(doc.as_bytes(), &LIMITS, NOW).is_err(),
                "{case}"
            );
        }
        // Exactly at the bound, counted after expired entries are dropped.
        let mut at_bound: Vec<Value> = (0..10).map(|i| json!({"jti": format!("j{i}")})).collect();
        at_bound.push(json!({"jti": "expired", "exp": 1}));
        let l = list(json!({ "jti": at_bound, "sub": [], "sid": [] }));
        assert_eq!(l.len(), 10);
        assert!(list(json!({})).is_empty());
    }
}
