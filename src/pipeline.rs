//! The decision pipeline: one linear function from a request to a [`Decision`].
//!
//! Steps follow SPEC §1: match the rule, check header preconditions, extract the token,
//! parse it, select the provider, check times (cheap, before any crypto), obtain keys,
//! verify the signature, check `iss`/`aud`, resolve identity, authorize, check membership
//! and derive the identity headers. Each later capability adds a step, not a branch.

use crate::account::AccountState;
use crate::authorizer::{check_header, Grants};
use crate::config::Provider;
use crate::config::{Algorithm, Config, DefaultPolicy, Rule};
use crate::jwks::{KeyAvailability, KeySet};
use crate::reply::Denial;
use crate::request::{is_normalized, Request};
use crate::token::{extract_bearer, parse};
use crate::token_cache::{CachedToken, TokenCache, MAX_CACHED_TOKEN_BYTES};
use crate::verifier::{check_claims, check_times, verify_hs256, SignatureBackend};
use crate::{identity, matcher::Captures};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::rc::Rc;

/// Tokens without `kid` are tried against at most this many keys (bounds the RSA work
/// one request can cause).
pub const MAX_KIDLESS_TRIES: usize = 4;

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Continue upstream with these identity headers set.
    Allow {
        /// Headers to add (client copies of every filter-owned header are already gone).
        headers: Vec<(String, String)>,
    },
    /// Answer locally.
    Deny(Denial),
    /// Pause until the provider's keys arrive, then decide again.
    AwaitKeys {
        /// Provider index.
        provider: usize,
        /// `true` when an unknown `kid` asks for a refetch, `false` for the first load.
        refetch: bool,
    },
    /// Pause until the account service answers for this identity, then decide again.
    AwaitAccount {
        /// Provider index.
        provider: usize,
        /// Cache key (provider and path).
        key: String,
        /// The path to call.
        path: String,
    },
}

/// A decision with what the logs and metrics need to explain it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// Index of the matched rule (`None`: no rule matched); see [`Config::rule_name`].
    pub rule: Option<usize>,
    /// Whether a public rule let the request through.
    pub public: bool,
    /// Why, in a few words (never token material).
    pub note: Cow<'static, str>,
    /// What to do with the verified-token cache.
    pub cache: CacheNote,
}

/// What the pipeline may ask about key sets.
pub trait KeyLookup {
    /// Availability of a provider's keys now.
    fn availability(&self, provider: usize) -> KeyAvailability;
    /// The provider's keys, if loaded.
    fn keys(&self, provider: usize) -> Option<&KeySet>;
    /// Whether an unknown `kid` may trigger a refetch for this request now.
    fn may_refetch(&self, provider: usize) -> bool;
}

/// What the pipeline may ask about account lookups.
pub trait AccountLookup {
    /// The cached result for `key` of `provider`.
    fn account(&self, provider: usize, key: &str) -> AccountState<'_>;
    /// Whether this request may pause for a lookup.
    fn may_wait(&self) -> bool;
}

/// Account lookups for configurations without account resolution.
pub struct NoAccounts;

impl AccountLookup for NoAccounts {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self) -> bool {
        false
    }
}

/// A fixed, always-ready key set with no refetching and no account service: for hosts
/// that load keys once, and for tests, conformance runs and fuzzing.
pub struct FixedKeys(pub KeySet);

impl KeyLookup for FixedKeys {
    fn availability(&self, _provider: usize) -> KeyAvailability {
        KeyAvailability::Ready
    }
    fn keys(&self, _provider: usize) -> Option<&KeySet> {
        Some(&self.0)
    }
    fn may_refetch(&self, _provider: usize) -> bool {
        false
    }
}

impl AccountLookup for FixedKeys {
    fn account(&self, _provider: usize, _key: &str) -> AccountState<'_> {
        AccountState::Unknown
    }
    fn may_wait(&self) -> bool {
        false
    }
}

/// Everything the pipeline needs besides the request.
pub struct Inputs<'a> {
    /// Compiled configuration.
    pub config: &'a Config,
    /// Key sets.
    pub keys: &'a dyn KeyLookup,
    /// Account lookups.
    pub accounts: &'a dyn AccountLookup,
    /// RS256 backend.
    pub backend: &'a dyn SignatureBackend,
    /// Verified-token cache (`None` when disabled).
    pub cache: Option<&'a TokenCache>,
    /// Current time, seconds since the epoch.
    pub now_s: i64,
}

fn deny(d: Denial, rule: Option<&Rule>, note: impl Into<Cow<'static, str>>) -> Outcome {
    outcome(Decision::Deny(d), rule, note)
}

fn outcome(decision: Decision, rule: Option<&Rule>, note: impl Into<Cow<'static, str>>) -> Outcome {
    Outcome {
        decision,
        rule: rule.map(|r| r.index),
        public: false,
        note: note.into(),
        cache: CacheNote::None,
    }
}

/// What the glue should do with the verified-token cache after a decision.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CacheNote {
    /// Nothing (no token verified, or caching off).
    #[default]
    None,
    /// The token came from the cache.
    Hit,
    /// The token was verified now: store it (the token, what was verified).
    Store(Box<(String, CachedToken)>),
}

/// An authenticated token.
struct Verified<'a> {
    provider: usize,
    config: &'a Provider,
    claims: Rc<Map<String, Value>>,
    payload_b64: Cow<'a, str>,
    cache: CacheNote,
}

/// Steps 3-6: parse, select the provider, check times, keys and signature, `iss`/`aud`.
/// A cache hit (still unexpired, its provider allowed on this rule, its key still in the
/// provider's key set) skips all of that.
fn authenticate<'a>(
    inp: &Inputs<'a>,
    rule: Option<&Rule>,
    token: &'a str,
) -> Result<Verified<'a>, Box<Outcome>> {
    let cfg = inp.config;
    let deny = |d: Denial, note: &'static str| Box::new(outcome(Decision::Deny(d), rule, note));
    let allowed = |i: &usize| {
        rule.and_then(|r| r.providers.as_ref())
            .is_none_or(|ids| ids.contains(i))
    };
    let cacheable = inp.cache.is_some() && token.len() <= MAX_CACHED_TOKEN_BYTES;
    if let (true, Some(cache)) = (cacheable, inp.cache) {
        let hit = cache.get(token, inp.now_s).map(|(_, c)| c).filter(|c| {
            allowed(&c.provider)
                && c.key.is_none_or(|fp| {
                    inp.keys
                        .keys(c.provider)
                        .is_some_and(|k| k.has_fingerprint(fp))
                })
        });
        if let Some(c) = hit {
            if let Some(p) = cfg.providers.get(c.provider) {
                return Ok(Verified {
                    provider: c.provider,
                    config: p,
                    claims: Rc::clone(&c.claims),
                    // The cached token equals this one: its payload segment is ours.
                    payload_b64: Cow::Borrowed(token.split('.').nth(1).unwrap_or("")),
                    cache: CacheNote::Hit,
                });
            }
        }
    }

    // 3. Compact JWS with JSON header and payload.
    let jws = match parse(token, cfg.max_token_bytes) {
        Ok(j) => j,
        Err(e) => return Err(deny(Denial::InvalidToken, e.as_str())),
    };

    // 4a. A provider that allows this algorithm (and issuer, when it names one).
    let Some(alg) = Algorithm::from_header(&jws.header.alg) else {
        return Err(deny(Denial::InvalidToken, "algorithm not accepted"));
    };
    let iss = jws.claims.get("iss").and_then(|v| v.as_str());
    let chosen = (0..cfg.providers.len()).filter(allowed).find(|&i| {
        cfg.providers.get(i).is_some_and(|p| {
            p.algorithms.contains(&alg) && p.issuer.as_deref().is_none_or(|want| iss == Some(want))
        })
    });
    let Some((pid, provider)) = chosen.and_then(|i| cfg.providers.get(i).map(|p| (i, p))) else {
        return Err(deny(
            Denial::InvalidToken,
            "no provider accepts this algorithm and issuer",
        ));
    };

    // 6a. Times first: expired tokens cost no signature work.
    if let Err(e) = check_times(&jws.claims, inp.now_s, cfg.clock_skew_s) {
        return Err(deny(Denial::InvalidToken, e.as_str()));
    }

    // 4b + 5. Keys and signature.
    let message = jws.signing_input.as_bytes();
    let mut key_fingerprint = None;
    match alg {
        Algorithm::HS256 => {
            let ok = provider
                .secret
                .as_ref()
                .is_some_and(|s| verify_hs256(&s.0, message, &jws.signature));
            if !ok {
                return Err(deny(Denial::InvalidToken, "bad signature"));
            }
        }
        Algorithm::RS256 => {
            let keys = match (inp.keys.availability(pid), inp.keys.keys(pid)) {
                (KeyAvailability::Ready, Some(k)) => k,
                (KeyAvailability::Loading, _) => {
                    return Err(Box::new(outcome(
                        Decision::AwaitKeys {
                            provider: pid,
                            refetch: false,
                        },
                        rule,
                        "keys loading",
                    )));
                }
                _ => return Err(deny(Denial::Unavailable, "no keys obtainable")),
            };
            let kid = jws.header.kid.as_deref();
            if let Some(k) = kid {
                if !keys.has_kid(k) {
                    if inp.keys.may_refetch(pid) {
                        return Err(Box::new(outcome(
                            Decision::AwaitKeys {
                                provider: pid,
                                refetch: true,
                            },
                            rule,
                            "unknown kid",
                        )));
                    }
                    return Err(deny(Denial::InvalidToken, "unknown kid"));
                }
            }
            for key in keys.candidates(kid).take(MAX_KIDLESS_TRIES) {
                match inp.backend.verify_rs256(key, message, &jws.signature) {
                    Ok(true) => {
                        key_fingerprint = Some(key.fingerprint);
                        break;
                    }
                    Ok(false) => {}
                    Err(_) => return Err(deny(Denial::Unavailable, "signature backend failed")),
                }
            }
            if key_fingerprint.is_none() {
                return Err(deny(Denial::InvalidToken, "bad signature"));
            }
        }
    }

    // 6b. Issuer and audience.
    let exp = match check_claims(&jws.claims, provider, inp.now_s, cfg.clock_skew_s) {
        Ok(exp) => exp,
        Err(e) => return Err(deny(Denial::InvalidToken, e.as_str())),
    };
    let claims = Rc::new(jws.claims);
    let cache = if cacheable {
        CacheNote::Store(Box::new((
            token.to_string(),
            CachedToken {
                provider: pid,
                claims: Rc::clone(&claims),
                exp,
                key: key_fingerprint,
            },
        )))
    } else {
        CacheNote::None
    };
    Ok(Verified {
        provider: pid,
        config: provider,
        claims,
        payload_b64: Cow::Borrowed(jws.payload_b64),
        cache,
    })
}

/// Decides what happens to `req`.
pub fn decide(inp: &Inputs, req: &Request) -> Outcome {
    let cfg = inp.config;

    // 1. Rule. Only paths in normal form are matched, so `..` tricks cannot borrow a rule.
    let path = req.path_only();
    if !is_normalized(path) {
        return deny(
            Denial::BadRequest("Request path is not normalized".into()),
            None,
            "path not normalized",
        );
    }
    let host = if cfg.needs_host {
        req.host()
    } else {
        String::new()
    };
    let matched = cfg
        .rules
        .iter()
        .find_map(|r| r.matcher.matches(req, path, &host).map(|c| (r, c)));
    let (rule, captures): (Option<&Rule>, Captures) = match matched {
        Some((r, c)) => (Some(r), c),
        None if cfg.default == DefaultPolicy::Deny => {
            return deny(
                Denial::InsufficientPermissions,
                None,
                "no rule matches and the default is deny",
            );
        }
        None => (None, Vec::new()),
    };
    if let Some(r) = rule.filter(|r| r.public) {
        let mut o = outcome(
            Decision::Allow {
                headers: Vec::new(),
            },
            Some(r),
            "public",
        );
        o.public = true;
        return o;
    }

    // 1b. Header preconditions, before the token so clients learn without spending one.
    for (lower, display, format) in rule.map_or(&[][..], |r| &r.headers[..]) {
        if let Err(detail) = check_header(req, lower, display, *format) {
            return deny(Denial::BadRequest(detail), rule, "header precondition");
        }
    }

    // 2. Exactly one `Authorization: Bearer <token>`.
    let values: Vec<&str> = req.header_values("authorization").collect();
    let Some(token) = extract_bearer(&values) else {
        return deny(Denial::MissingToken, rule, "no bearer token");
    };

    // 3-6. Authenticate (from the verified-token cache when possible).
    let mut v = match authenticate(inp, rule, token) {
        Ok(v) => v,
        Err(o) => return *o,
    };
    let cache = std::mem::replace(&mut v.cache, CacheNote::None);
    let mut o = authorize(inp, req, rule, &captures, &v);
    o.cache = cache;
    o
}

/// Steps 7-12 for an authenticated token: identity, account, permissions, membership,
/// identity headers.
fn authorize(
    inp: &Inputs,
    req: &Request,
    rule: Option<&Rule>,
    captures: &Captures,
    v: &Verified,
) -> Outcome {
    let cfg = inp.config;
    let (pid, provider, claims) = (v.provider, v.config, &*v.claims);

    // 7. Identity.
    if let Some(claim) = identity::missing_claim(claims, &provider.required_claims) {
        return deny(
            Denial::UnknownAccount,
            rule,
            format!("required claim {claim} missing"),
        );
    }

    // 7b. Account resolution.
    let mut account_headers = Vec::new();
    if let Some(acc) = &provider.account {
        let Some(path) = acc.path.render(claims) else {
            return deny(
                Denial::UnknownAccount,
                rule,
                "claim for the account path missing",
            );
        };
        let key = format!("{pid}:{path}");
        match inp.accounts.account(pid, &key) {
            AccountState::Found(fields) => {
                for (header, field) in &acc.headers {
                    if let Some(value) = fields.get(field).and_then(identity::header_value) {
                        if !identity::header_safe(&value) {
                            return deny(
                                Denial::UnknownAccount,
                                rule,
                                format!("account field for {header} has control characters"),
                            );
                        }
                        account_headers.push((header.clone(), value));
                    }
                }
            }
            AccountState::NotFound => {
                return deny(Denial::UnknownAccount, rule, "account not found")
            }
            AccountState::Unknown if inp.accounts.may_wait() => {
                return outcome(
                    Decision::AwaitAccount {
                        provider: pid,
                        key,
                        path,
                    },
                    rule,
                    "account lookup",
                );
            }
            AccountState::Unknown => {
                return deny(Denial::Unavailable, rule, "account service failed")
            }
        }
    }

    // 8. Permissions.
    if let Some(r) = rule {
        if !r.requirement.is_empty() {
            let grants = Grants::from_claims(claims, &provider.claims, &cfg.roles);
            if let Err(missing) = r.requirement.check(&grants, req, captures) {
                return deny(
                    Denial::InsufficientPermissions,
                    rule,
                    format!("missing permission {missing}"),
                );
            }
        }
        // 9. Domain constraint.
        if let Some(m) = &r.member_of {
            if !m.holds(claims, req, captures) {
                return deny(
                    Denial::PermissionDenied,
                    rule,
                    format!("request value not in claim {}", m.claim),
                );
            }
        }
    }

    // Success: identity headers.
    match identity::forward_headers(&cfg.forward, claims, &v.payload_b64) {
        Ok(mut headers) => {
            headers.extend(account_headers);
            outcome(Decision::Allow { headers }, rule, "verified")
        }
        Err(header) => deny(
            Denial::UnknownAccount,
            rule,
            format!("claim for {header} has control characters"),
        ),
    }
}

#[cfg(test)]
#[path = "../tests/support/idp.rs"]
mod idp;

#[cfg(test)]
mod tests {
    use super::idp::{claims, jwks, mint_hs256, now, Signer};
    use super::*;
    use crate::account::AccountState;
    use crate::config;
    use crate::jwks::{KeyAvailability, KeySet};
    use crate::request::Headers;
    use crate::verifier::{BackendError, RustBackend};
    use serde_json::{json, Map, Value};
    use std::collections::HashMap;
    use std::sync::OnceLock;

    const ISS: &str = "https://idp.test";
    const AUD: &str = "aud-1";
    const SECRET: &str = "0123456789abcdef0123456789abcdef-sdk";

    fn signers() -> &'static (Signer, Signer) {
        static S: OnceLock<(Signer, Signer)> = OnceLock::new();
        S.get_or_init(|| (Signer::generate("k1"), Signer::generate("k2")))
    }

    fn config() -> Config {
        let json = json!({
            "providers": [
                {"name": "idp", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
                 "jwks": {"cluster": "c", "authority": "a", "path": "/jwks"},
                 "identity": {"required_claims": ["sub"]},
                 "account": {"cluster": "acct", "authority": "acct", "path": "/a?u={sub}", "headers": {"x-account": "id"}}},
                {"name": "sdk", "algorithms": ["HS256"], "secret": {"env": "S"}}
            ],
            "roles": {"admin": ["*"]},
            "forward": {"headers": {"x-sub": "sub"}},
            "rules": [
                {"match": {"methods": ["GET"], "path": "/health"}, "public": true},
                {"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]},
                {"match": {"methods": ["POST"], "prefix": "/v1/consent/"}, "permissions": ["consent:write"],
                 "member_of": {"query": "network_id", "claim": "networks"}},
                {"match": {"prefix": "/v1/items"}, "headers": {"X-Index": "uuid"}}
            ]
        });
        config::parse(json.to_string().as_bytes(), &|_| Some(SECRET.to_string())).expect("config")
    }

    struct Fake {
        availability: KeyAvailability,
        keys: Option<KeySet>,
        refetch: bool,
        accounts: HashMap<String, Option<Map<String, Value>>>,
        may_wait: bool,
    }

    impl KeyLookup for Fake {
        fn availability(&self, _p: usize) -> KeyAvailability {
            self.availability
        }
        fn keys(&self, _p: usize) -> Option<&KeySet> {
            self.keys.as_ref()
        }
        fn may_refetch(&self, _p: usize) -> bool {
            self.refetch
        }
    }

    impl AccountLookup for Fake {
        fn account(&self, _p: usize, key: &str) -> AccountState<'_> {
            match self.accounts.get(key) {
                Some(Some(a)) => AccountState::Found(a),
                Some(None) => AccountState::NotFound,
                None => AccountState::Unknown,
            }
        }
        fn may_wait(&self) -> bool {
            self.may_wait
        }
    }

    fn ready() -> Fake {
        let (set, _) = KeySet::parse(jwks(&[&signers().0]).as_bytes()).expect("jwks");
        let mut accounts = HashMap::new();
        accounts.insert(
            "0:/a?u=user-1".to_string(),
            json!({"id": "acct-1"}).as_object().cloned(),
        );
        accounts.insert("0:/a?u=ghost".to_string(), None);
        Fake {
            availability: KeyAvailability::Ready,
            keys: Some(set),
            refetch: true,
            accounts,
            may_wait: true,
        }
    }

    struct Failing;
    impl SignatureBackend for Failing {
        fn verify_rs256(
            &self,
            _: &crate::jwks::RsaKey,
            _: &[u8],
            _: &[u8],
        ) -> Result<bool, BackendError> {
            Err(BackendError("host said no".into()))
        }
        fn name(&self) -> &'static str {
            "failing"
        }
    }

    fn request(method: &str, path: &str, auth: Option<String>) -> Request {
        let mut headers = vec![];
        if let Some(a) = auth {
            headers.push(("authorization".to_string(), a));
        }
        Request {
            method: method.into(),
            path: path.into(),
            authority: "api".into(),
            headers: Headers::from_pairs(headers),
            ..Default::default()
        }
    }

    fn run(fake: &Fake, backend: &dyn SignatureBackend, req: &Request) -> Decision {
        let cfg = config();
        let inputs = Inputs {
            config: &cfg,
            keys: fake,
            accounts: fake,
            backend,
            cache: None,
            now_s: now(),
        };
        decide(&inputs, req).decision
    }

    #[test]
    fn verified_token_cache() {
        use crate::token_cache::TokenCache;
        let cfg = config();
        let mut fake = ready();
        let mut cache = TokenCache::new(100);
        let good = rs("user-1", json!({"permissions": ["entities:read"]}));
        let req = request("GET", "/v1/entities/x", Some(format!("Bearer {good}")));
        let run = |fake: &Fake, cache: &TokenCache, req: &Request, now_s: i64| {
            decide(
                &Inputs {
                    config: &cfg,
                    keys: fake,
                    accounts: fake,
                    backend: &RustBackend,
                    cache: Some(cache),
                    now_s,
                },
                req,
            )
        };
        // Miss: verified, and the glue is told to store it.
        let first = run(&fake, &cache, &req, now());
        let CacheNote::Store(stored) = first.cache.clone() else {
            panic!("expected a store, got {:?}", first.cache)
        };
        let (h, entry) = *stored;
        assert_eq!(entry.exp, now() + 600);
        cache.insert(&h, entry, now());
        // Hit: same decision with no crypto, even through a backend that would fail.
        let second = run(&fake, &cache, &req, now());
        assert_eq!(second.cache, CacheNote::Hit);
        assert_eq!(second.decision, first.decision);
        assert_eq!(
            decide(
                &Inputs {
                    config: &cfg,
                    keys: &fake,
                    accounts: &fake,
                    backend: &Failing,
                    cache: Some(&cache),
                    now_s: now()
                },
                &req
            )
            .decision,
            first.decision
        );
        // Authorization still runs per request: the same token on another route is refused.
        let other = request(
            "POST",
            "/v1/consent/c?network_id=n1",
            Some(format!("Bearer {good}")),
        );
        let o = run(&fake, &cache, &other, now());
        assert_eq!(
            (o.decision, o.cache),
            (
                Decision::Deny(Denial::InsufficientPermissions),
                CacheNote::Hit
            )
        );
        // Past exp the entry is not used (and the token is refused as expired).
        assert_eq!(
            run(&fake, &cache, &req, now() + 700).decision,
            Decision::Deny(Denial::InvalidToken)
        );
        // When the verifying key leaves the key set, the entry is ignored.
        let (set, _) = KeySet::parse(jwks(&[&signers().1]).as_bytes()).expect("jwks");
        fake.keys = Some(set);
        fake.refetch = false;
        let o = run(&fake, &cache, &req, now());
        assert_eq!(o.decision, Decision::Deny(Denial::InvalidToken));
        assert_ne!(o.cache, CacheNote::Hit);
    }

    fn rs(sub: &str, extra: Value) -> String {
        signers().0.mint(&claims(ISS, AUD, sub, 600, extra))
    }

    #[test]
    fn spec_rows() {
        let (k1, k2) = signers();
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        let good = rs("user-1", json!({"permissions": ["entities:read"]}));
        let allow = |sub: &str| Decision::Allow {
            headers: vec![
                ("x-sub".into(), sub.into()),
                ("x-account".into(), "acct-1".into()),
            ],
        };
        let deny = Decision::Deny;
        let rows: Vec<(&str, Request, Decision)> = vec![
            (
                "no header",
                request("GET", "/v1/entities/x", None),
                deny(Denial::MissingToken),
            ),
            (
                "wrong scheme",
                request("GET", "/v1/entities/x", Some("Token abc".into())),
                deny(Denial::MissingToken),
            ),
            (
                "bare token",
                request("GET", "/v1/entities/x", Some(good.clone())),
                deny(Denial::MissingToken),
            ),
            (
                "Bearer alone",
                request("GET", "/v1/entities/x", Some("Bearer".into())),
                deny(Denial::MissingToken),
            ),
            (
                "expired",
                request(
                    "GET",
                    "/v1/entities/x",
                    bearer(&k1.mint(&claims(ISS, AUD, "user-1", -120, json!({})))),
                ),
                deny(Denial::InvalidToken),
            ),
            (
                "unknown kid asks for a refetch",
                request(
                    "GET",
                    "/v1/x",
                    bearer(&k2.mint(&claims(ISS, AUD, "user-1", 600, json!({})))),
                ),
                Decision::AwaitKeys {
                    provider: 0,
                    refetch: true,
                },
            ),
            (
                "garbled",
                request("GET", "/v1/x", bearer(&good.replace('.', "!"))),
                deny(Denial::InvalidToken),
            ),
            (
                "truncated",
                request("GET", "/v1/x", bearer(&good[..good.len() - 5])),
                deny(Denial::InvalidToken),
            ),
            (
                "unknown account",
                request(
                    "GET",
                    "/v1/entities/x",
                    bearer(&rs("ghost", json!({"permissions": ["entities:read"]}))),
                ),
                deny(Denial::UnknownAccount),
            ),
            (
                "account not cached yet",
                request("GET", "/v1/x", bearer(&rs("user-2", json!({})))),
                Decision::AwaitAccount {
                    provider: 0,
                    key: "0:/a?u=user-2".into(),
                    path: "/a?u=user-2".into(),
                },
            ),
            (
                "identity claim missing",
                request(
                    "GET",
                    "/v1/x",
                    bearer(&k1.mint(&json!({"iss": ISS, "aud": AUD, "exp": now() + 60}))),
                ),
                deny(Denial::UnknownAccount),
            ),
            (
                "missing permission",
                request("GET", "/v1/entities/x", bearer(&rs("user-1", json!({})))),
                deny(Denial::InsufficientPermissions),
            ),
            (
                "role grants",
                request(
                    "GET",
                    "/v1/entities/x",
                    bearer(&rs("user-1", json!({"role": "admin"}))),
                ),
                allow("user-1"),
            ),
            (
                "outside the network",
                request(
                    "POST",
                    "/v1/consent/c?network_id=n2",
                    bearer(&rs(
                        "user-1",
                        json!({"permissions": ["consent:write"], "networks": ["n1"]}),
                    )),
                ),
                deny(Denial::PermissionDenied),
            ),
            (
                "inside the network",
                request(
                    "POST",
                    "/v1/consent/c?network_id=n1",
                    bearer(&rs(
                        "user-1",
                        json!({"permissions": ["consent:write"], "networks": ["n1"]}),
                    )),
                ),
                allow("user-1"),
            ),
            (
                "header precondition",
                request("GET", "/v1/items", None),
                deny(Denial::BadRequest("X-Index header is required".into())),
            ),
            (
                "valid",
                request("GET", "/v1/entities/x", bearer(&good)),
                allow("user-1"),
            ),
            (
                "public",
                request("GET", "/health", None),
                Decision::Allow { headers: vec![] },
            ),
            (
                "public with query",
                request("GET", "/health?x=1", None),
                Decision::Allow { headers: vec![] },
            ),
            (
                "POST /health is not public",
                request("POST", "/health", None),
                deny(Denial::MissingToken),
            ),
            (
                "not normalized",
                request("GET", "/health/../v1/entities/x", None),
                deny(Denial::BadRequest("Request path is not normalized".into())),
            ),
            (
                "HS256",
                request(
                    "GET",
                    "/v1/x",
                    bearer(&mint_hs256(
                        SECRET.as_bytes(),
                        &json!({"sub": "svc", "exp": now() + 60}),
                    )),
                ),
                Decision::Allow {
                    headers: vec![("x-sub".into(), "svc".into())],
                },
            ),
            (
                "HS256 wrong secret",
                request(
                    "GET",
                    "/v1/x",
                    bearer(&mint_hs256(
                        b"another-secret-another-secret-xx",
                        &json!({"sub": "svc", "exp": now() + 60}),
                    )),
                ),
                deny(Denial::InvalidToken),
            ),
            (
                "HS256 with the RSA public key",
                request(
                    "GET",
                    "/v1/x",
                    bearer(&mint_hs256(
                        &k1.public_der(),
                        &claims(ISS, AUD, "user-1", 600, json!({})),
                    )),
                ),
                deny(Denial::InvalidToken),
            ),
            (
                "wrong audience",
                request(
                    "GET",
                    "/v1/x",
                    bearer(&k1.mint(&claims(ISS, "other", "user-1", 600, json!({})))),
                ),
                deny(Denial::InvalidToken),
            ),
        ];
        let fake = ready();
        for (case, req, want) in rows {
            assert_eq!(run(&fake, &RustBackend, &req), want, "{case}");
        }
    }

    #[test]
    fn key_states_and_backend_failures() {
        let good = rs("user-1", json!({}));
        let req = request("GET", "/v1/x", Some(format!("Bearer {good}")));
        let mut fake = ready();
        fake.keys = None;
        fake.availability = KeyAvailability::Loading;
        assert_eq!(
            run(&fake, &RustBackend, &req),
            Decision::AwaitKeys {
                provider: 0,
                refetch: false
            }
        );
        fake.availability = KeyAvailability::Unavailable;
        assert_eq!(
            run(&fake, &RustBackend, &req),
            Decision::Deny(Denial::Unavailable)
        );
        // A host failure in the signature backend is a 500, never an accept.
        assert_eq!(
            run(&ready(), &Failing, &req),
            Decision::Deny(Denial::Unavailable)
        );
        // Unknown kid when a refetch is not allowed (rate-limited, or already waited).
        let mut limited = ready();
        limited.refetch = false;
        let other = signers()
            .1
            .mint(&claims(ISS, AUD, "user-1", 600, json!({})));
        let req = request("GET", "/v1/x", Some(format!("Bearer {other}")));
        assert_eq!(
            run(&limited, &RustBackend, &req),
            Decision::Deny(Denial::InvalidToken)
        );
        // Account not cached and no more waiting: the service failed.
        let mut no_wait = ready();
        no_wait.may_wait = false;
        let req = request(
            "GET",
            "/v1/x",
            Some(format!("Bearer {}", rs("user-9", json!({})))),
        );
        assert_eq!(
            run(&no_wait, &RustBackend, &req),
            Decision::Deny(Denial::Unavailable)
        );
    }

    #[test]
    fn default_deny() {
        let mut cfg = config();
        cfg.default = DefaultPolicy::Deny;
        let fake = ready();
        let inputs = Inputs {
            config: &cfg,
            keys: &fake,
            accounts: &fake,
            backend: &RustBackend,
            cache: None,
            now_s: now(),
        };
        let out = decide(&inputs, &request("GET", "/unmatched", None));
        assert_eq!(
            out.decision,
            Decision::Deny(Denial::InsufficientPermissions)
        );
        assert_eq!(cfg.rule_name(out.rule), "(default)");
    }
}
