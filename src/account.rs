//! Account resolution: the request path built from verified claims, the reply's meaning,
//! and a bounded per-VM cache with separate positive and negative lifetimes.

use crate::bounded_cache::BoundedCache;
use crate::error::ConfigError;
use crate::shared::{fingerprint, slot_of, update, FetchError, Reader, Store, StoreError};
use crate::token::claim_path::ClaimPath;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{Map, Value};
use std::rc::Rc;

/// A path template such as `/accounts/resolve?user={sub}&org={org_id}`; a placeholder
/// names a claim or holds a JSON Pointer (`{/org/id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<(String, Option<ClaimPath>)>,
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
            let claim = match ClaimPath::parse(claim) {
                Ok(c) => c,
                Err(m) => return error(&m.0),
            };
            parts.push((lit.to_string(), Some(claim)));
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
                let value = match name.get(claims)? {
                    Value::String(s) if !s.is_empty() => s.clone(),
                    v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                    _ => return None,
                };
                out.extend(utf8_percent_encode(&value, NOT_UNRESERVED));
            }
        }
        Some(out)
    }
}

/// Everything but RFC 3986 unreserved characters is percent-encoded in claim values.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
pub fn interpret(
    status: Option<&str>,
    body: &[u8],
) -> Result<Option<Map<String, Value>>, FetchError> {
    match status {
        Some("200") => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(FetchError::Invalid("200 without a JSON object".into())),
        },
        Some("404") => Ok(None),
        Some(other) => Err(FetchError::Status(other.to_string())),
        None => Err(FetchError::NoResponse),
    }
}

/// Bounded cache of lookups (accounts, introspection answers) keyed by provider and
/// lookup key (see [`BoundedCache`]: when full, expired entries go first, then the
/// oldest). Answers are shared (`Rc`): a decision takes one without copying it.
pub struct AccountCache(BoundedCache<String, Option<Rc<Map<String, Value>>>>);

impl AccountCache {
    /// An empty cache holding at most `max` entries (0 disables caching).
    pub fn new(max: usize) -> AccountCache {
        AccountCache(BoundedCache::new(max))
    }

    /// The cached state of `key` at `now` (ms).
    pub fn get(&self, key: &str, now: u64) -> AccountState<'_> {
        match self.0.get(key, now) {
            Some((_, Some(a))) => AccountState::Found(a.as_ref()),
            Some((_, None)) => AccountState::NotFound,
            None => AccountState::Unknown,
        }
    }

    /// The cached answer of `key` at `now`, shared: `Some(Some(_))` found (active),
    /// `Some(None)` not found (not active), `None` nothing cached.
    pub fn get_shared(&self, key: &str, now: u64) -> Option<Option<Rc<Map<String, Value>>>> {
        self.0.get(key, now).map(|(_, a)| a.clone())
    }

    /// Stores a result (`None`: no such account) for `ttl` ms.
    pub fn insert(&mut self, key: String, account: Option<Map<String, Value>>, now: u64, ttl: u64) {
        self.0
            .insert(key, account.map(Rc::new), now.saturating_add(ttl), now);
    }

    /// Number of entries (expired ones included until evicted).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the cache is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An account lookup as the whole process knows it (the second level behind each VM's
/// cache), in a slot of the shared store.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedAccount {
    /// A VM is asking the account service (since, ms): others wait for its answer.
    Pending(u64),
    /// The service answered: the account (`None`: no such account), until when (ms).
    Resolved(Option<Map<String, Value>>, u64),
    /// The service failed (when, ms): not cached; waiters answer 500, the next request asks.
    Failed(u64),
}

impl SharedAccount {
    fn encode(&self, key: &str) -> Vec<u8> {
        let (tag, time, body) = match self {
            SharedAccount::Pending(since) => (0u8, *since, Vec::new()),
            SharedAccount::Resolved(None, until) => (1, *until, Vec::new()),
            SharedAccount::Resolved(Some(a), until) => {
                (2, *until, serde_json::to_vec(a).unwrap_or_default())
            }
            SharedAccount::Failed(at) => (3, *at, Vec::new()),
        };
        let mut out = vec![tag];
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<(SharedAccount, &[u8])> {
        let mut r = Reader(bytes);
        let (tag, time) = (r.u8()?, r.u64()?);
        let key_len = usize::try_from(r.u32()?).ok()?;
        let key = r.take(key_len)?;
        let rest = r.rest();
        let state = match tag {
            0 => SharedAccount::Pending(time),
            1 => SharedAccount::Resolved(None, time),
            2 => match serde_json::from_slice::<Value>(rest).ok()? {
                Value::Object(map) => SharedAccount::Resolved(Some(map), time),
                _ => return None,
            },
            3 => SharedAccount::Failed(time),
            _ => return None,
        };
        Some((state, key))
    }
}

/// What one account slot holds for a key ([`update`]'s value; `None` when empty).
#[derive(Default)]
struct Slot(Option<SharedAccount>);

/// The account slots of the shared store: a fixed number, direct-mapped by the lookup's
/// key (provider's account source and rendered path) and overwritten in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedAccounts {
    slots: usize,
}

impl SharedAccounts {
    /// `slots` slots (at least one).
    pub fn new(slots: usize) -> SharedAccounts {
        SharedAccounts {
            slots: slots.max(1),
        }
    }

    fn slot_key(&self, key: &str) -> String {
        let slot = slot_of(fingerprint(&[key.as_bytes()]), self.slots);
        format!("bearer_guard.acct.{slot}")
    }

    /// What the process knows of `key` (its slot may hold another key: then nothing).
    pub fn read(&self, store: &dyn Store, key: &str) -> Option<SharedAccount> {
        let (bytes, _) = store.get(&self.slot_key(key))?;
        let (state, stored) = SharedAccount::decode(&bytes)?;
        (stored == key.as_bytes()).then_some(state)
    }

    /// Claims the lookup of `key` for this VM unless another VM's claim is younger than
    /// `lease_ms` or a result is still fresh: `true` means "call the service now". A
    /// read-modify-write through [`update`], so a slot never used before is created the
    /// way every shared key is (two VMs claiming a fresh slot at the same instant both
    /// see it empty only if one creates, reads and claims it between the other's read
    /// and create: then both call, once).
    pub fn claim(&self, store: &dyn Store, key: &str, now: u64, lease_ms: u64) -> bool {
        let written = update(
            store,
            &self.slot_key(key),
            // This key's state; an empty slot, another key's or garbage is nothing.
            |bytes| {
                Some(Slot(
                    SharedAccount::decode(bytes)
                        .filter(|(_, k)| *k == key.as_bytes())
                        .map(|(s, _)| s),
                ))
            },
            // An empty slot is one byte no state decodes from.
            |slot| {
                slot.0
                    .as_ref()
                    .map_or_else(|| vec![u8::MAX], |s| s.encode(key))
            },
            |slot| {
                let busy = match slot.0 {
                    Some(SharedAccount::Pending(since)) => now < since.saturating_add(lease_ms),
                    Some(SharedAccount::Resolved(_, until)) => now < until,
                    _ => false,
                };
                (!busy).then_some(Slot(Some(SharedAccount::Pending(now))))
            },
        );
        match written {
            Ok(claimed) => claimed.is_some(),
            // Lost the race too often: another VM is asking.
            Err(StoreError::CasMismatch) => false,
            // No shared store: every VM asks for itself.
            Err(StoreError::Host(_) | StoreError::Full) => true,
        }
    }

    /// Records the service's answer (`Err`: it failed) for every VM.
    pub fn resolve(
        &self,
        store: &dyn Store,
        key: &str,
        answer: Result<Option<Map<String, Value>>, ()>,
        until: u64,
        now: u64,
    ) {
        let state = match answer {
            Ok(account) => SharedAccount::Resolved(account, until),
            Err(()) => SharedAccount::Failed(now),
        };
        let _ = store.set(&self.slot_key(key), &state.encode(key), 0);
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
        let nested = PathTemplate::compile("/orgs/{/org/id}/users/{sub}", "p").expect("ok");
        assert_eq!(
            nested
                .render(&claims(json!({"sub": "u1", "org": {"id": "o 1"}})))
                .as_deref(),
            Some("/orgs/o%201/users/u1")
        );
        assert_eq!(
            nested.render(&claims(json!({"sub": "u1", "org": {}}))),
            None
        );
        for bad in ["accounts", "/a/{sub", "/a/{}", "/a/}", "/a/{/org/~2}"] {
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
        // Full at t=200: the expired k2 goes first, although k1 is older.
        c.insert("k3".into(), None, 200, 100);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("k1", 200), AccountState::Found(&acct));
        assert_eq!(c.get("k3", 200), AccountState::NotFound);
        // Full of live entries: the oldest (k1) goes.
        c.insert("k4".into(), None, 200, 100);
        assert_eq!(c.get("k1", 200), AccountState::Unknown);
        assert_eq!(c.get("k4", 200), AccountState::NotFound);
        // Re-inserting a present key evicts nothing.
        c.insert("k3".into(), Some(acct.clone()), 250, 100);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("k3", 250), AccountState::Found(&acct));
        assert_eq!(c.get("k4", 250), AccountState::NotFound);
        let mut off = AccountCache::new(0);
        off.insert("k".into(), None, 0, 100);
        assert!(off.is_empty());
    }

    #[test]
    fn shared_account_slots() {
        use crate::shared::MemoryStore;
        let store = MemoryStore::default();
        let shared = SharedAccounts::new(8);
        let acct = claims(json!({"account_id": "a1"}));
        assert_eq!(shared.read(&store, "k"), None);
        // One VM claims the lookup; another sees it pending and waits.
        assert!(shared.claim(&store, "k", 0, 2000));
        assert!(!shared.claim(&store, "k", 10, 2000));
        assert_eq!(shared.read(&store, "k"), Some(SharedAccount::Pending(0)));
        // A claim whose holder never answered expires.
        assert!(shared.claim(&store, "k", 2000, 2000));
        shared.resolve(&store, "k", Ok(Some(acct.clone())), 5000, 2100);
        assert_eq!(
            shared.read(&store, "k"),
            Some(SharedAccount::Resolved(Some(acct.clone()), 5000))
        );
        assert!(
            !shared.claim(&store, "k", 4999, 2000),
            "fresh: no new lookup"
        );
        assert!(shared.claim(&store, "k", 5000, 2000), "expired: ask again");
        shared.resolve(&store, "k", Err(()), 0, 5100);
        assert_eq!(shared.read(&store, "k"), Some(SharedAccount::Failed(5100)));
        assert!(
            shared.claim(&store, "k", 5200, 2000),
            "a failure is not cached"
        );
        shared.resolve(&store, "k", Ok(None), 9000, 5300);
        assert_eq!(
            shared.read(&store, "k"),
            Some(SharedAccount::Resolved(None, 9000))
        );
        // Other keys in the same slot are not this key.
        let one = SharedAccounts::new(1);
        one.resolve(&store, "a", Ok(None), 9000, 0);
        assert_eq!(one.read(&store, "b"), None);
        assert!(one.claim(&store, "b", 0, 2000), "a collision evicts");
        assert_eq!(one.read(&store, "a"), None);
    }
}
