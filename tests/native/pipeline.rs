//! The decision pipeline natively: every row of the reply table, the verified-token
//! cache, key states, backend failures, provider selection and the default policy.

use crate::support::fixtures::{
    expired_token, good_claims, good_token, keys, plugin, token_for, token_with, unknown_kid_token,
    wrong_audience_token, AUD, ISS, SECRET,
};
use crate::support::idp::{claims, jwks, mint_hs256, now};
use bearer_guard::AccountState;
use bearer_guard::Denial;
use bearer_guard::KeyAvailability;
use bearer_guard::TokenCache;
use bearer_guard::{decide, AccountLookup, CacheNote, Decision, Inputs, KeyLookup, Wait};
use bearer_guard::{BackendError, RustBackend, SignatureBackend};
use bearer_guard::{Config, DefaultPolicy};
use bearer_guard::{Headers, Request};
use bearer_guard::{KeySet, RsaKey};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The shared test configuration with the reply table's rules, an account service on
/// provider `idp`, and only the subject forwarded.
fn config() -> Config {
    let mut json = plugin(vec![
        json!({"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
        json!({"match": {"methods": ["POST"], "prefix": "/v1/consent/"}, "permissions": ["consent:write"],
               "member_of": {"query": "network_id", "claim": "networks"}}),
        json!({"match": {"prefix": "/v1/items"}, "headers": {"X-Index": "uuid"}}),
    ]);
    json["providers"][0]["account"] = json!({"cluster": "acct", "authority": "acct",
        "path": "/a?u={sub}", "headers": {"x-account": "id"}});
    json["forward"] = json!({"headers": {"x-sub": "sub"}});
    bearer_guard::parse_config(json.to_string().as_bytes(), &|_| Some(SECRET.to_string()))
        .expect("config")
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
    fn may_wait(&self, _provider: usize, _key: &str) -> bool {
        self.may_wait
    }
}

/// The lookup key of an account path of the test configuration's provider.
fn account_key(path: &str) -> String {
    let fp = config().providers[0]
        .account
        .as_ref()
        .expect("account")
        .fingerprint;
    format!("{fp:016x}:{path}")
}

fn ready() -> Fake {
    let (set, _) = KeySet::parse(jwks(&[&keys().0]).as_bytes(), 1 << 16).expect("jwks");
    let mut accounts = HashMap::new();
    accounts.insert(
        account_key("/a?u=user-1"),
        json!({"id": "acct-1"}).as_object().cloned(),
    );
    accounts.insert(account_key("/a?u=ghost"), None);
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
    fn verify_rsa(
        &self,
        _: &RsaKey,
        _: bearer_guard::Hash,
        _: &[u8],
        _: &[u8],
    ) -> Result<bool, BackendError> {
        Err(BackendError("host said no".into()))
    }
    fn verify_ecdsa(
        &self,
        _: &bearer_guard::EcKey,
        _: bearer_guard::Hash,
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
    let inputs = Inputs::new(&cfg, fake, backend, now()).accounts(fake);
    decide(&inputs, req).decision
}

#[test]
fn verified_token_cache() {
    let cfg = config();
    let mut fake = ready();
    let mut cache = TokenCache::new(100);
    let good = token_with(json!({"permissions": ["entities:read"]}));
    let req = request("GET", "/v1/entities/x", Some(format!("Bearer {good}")));
    let run = |fake: &Fake, cache: &TokenCache, req: &Request, now_s: i64| {
        decide(
            &Inputs::new(&cfg, fake, &RustBackend, now_s)
                .accounts(fake)
                .cache(cache),
            req,
        )
    };
    // Miss: verified, and the glue is told to store it.
    let first = run(&fake, &cache, &req, now());
    let CacheNote::Authenticated(authenticated) = first.cache.clone() else {
        panic!("expected a store, got {:?}", first.cache)
    };
    let (h, entry) = authenticated.store.expect("cacheable");
    assert_eq!(
        Some(entry.exp),
        entry.claims.get("exp").and_then(|e| e.as_i64())
    );
    cache.insert(&h, entry, now());
    // Hit: same decision with no crypto, even through a backend that would fail.
    let second = run(&fake, &cache, &req, now());
    assert_eq!(second.cache, CacheNote::Hit);
    assert_eq!(second.decision, first.decision);
    assert_eq!(
        decide(
            &Inputs::new(&cfg, &fake, &Failing, now())
                .accounts(&fake)
                .cache(&cache),
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
    let (set, _) = KeySet::parse(jwks(&[&keys().1]).as_bytes(), 1 << 16).expect("jwks");
    fake.keys = Some(set);
    fake.refetch = false;
    let o = run(&fake, &cache, &req, now());
    assert_eq!(o.decision, Decision::Deny(Denial::InvalidToken));
    assert_ne!(o.cache, CacheNote::Hit);
}

#[test]
fn reply_table_rows() {
    let key_a = &keys().0;
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let good = token_with(json!({"permissions": ["entities:read"]}));
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
            request("GET", "/v1/entities/x", bearer(&expired_token())),
            deny(Denial::InvalidToken),
        ),
        (
            "unknown kid asks for a refetch",
            request("GET", "/v1/x", bearer(&unknown_kid_token())),
            Decision::Await(Wait::Keys {
                provider: 0,
                refetch: true,
            }),
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
                bearer(&token_for(
                    "ghost",
                    json!({"permissions": ["entities:read"]}),
                )),
            ),
            deny(Denial::UnknownAccount),
        ),
        (
            "account not cached yet",
            request("GET", "/v1/x", bearer(&token_for("user-2", json!({})))),
            Decision::Await(Wait::Account {
                provider: 0,
                key: account_key("/a?u=user-2"),
                path: "/a?u=user-2".into(),
            }),
        ),
        (
            "identity claim missing",
            request(
                "GET",
                "/v1/x",
                bearer(&key_a.mint(&json!({"iss": ISS, "aud": AUD, "exp": now() + 60}))),
            ),
            deny(Denial::UnknownAccount),
        ),
        (
            "missing permission",
            request("GET", "/v1/entities/x", bearer(&good_token())),
            deny(Denial::InsufficientPermissions),
        ),
        (
            "role grants",
            request(
                "GET",
                "/v1/entities/x",
                bearer(&token_with(json!({"role": "admin"}))),
            ),
            allow("user-1"),
        ),
        (
            "outside the network",
            request(
                "POST",
                "/v1/consent/c?network_id=n2",
                bearer(&token_with(
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
                bearer(&token_with(
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
                bearer(&mint_hs256(&key_a.public_der(), &good_claims())),
            ),
            deny(Denial::InvalidToken),
        ),
        (
            "wrong audience",
            request("GET", "/v1/x", bearer(&wrong_audience_token())),
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
    let good = good_token();
    let req = request("GET", "/v1/x", Some(format!("Bearer {good}")));
    let mut fake = ready();
    fake.keys = None;
    fake.availability = KeyAvailability::Loading;
    assert_eq!(
        run(&fake, &RustBackend, &req),
        Decision::Await(Wait::Keys {
            provider: 0,
            refetch: false
        })
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
    let other = unknown_kid_token();
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
        Some(format!("Bearer {}", token_for("user-9", json!({})))),
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
    let inputs = Inputs::new(&cfg, &fake, &RustBackend, now()).accounts(&fake);
    let out = decide(&inputs, &request("GET", "/unmatched", None));
    assert_eq!(
        out.decision,
        Decision::Deny(Denial::InsufficientPermissions)
    );
    assert_eq!(cfg.rule_name(out.rule), "(default)");
}

/// Authentication is a function of (token, rule, keys, time): the provider that judges a
/// token is chosen the same way on a cache hit and a miss, so no history of earlier
/// requests changes a decision. Two providers share a JWKS and differ in `audiences`; a
/// token for `aud-b` is judged by `a` (the first eligible) on an unrestricted rule and by
/// `b` on a rule that names only `b`, in either order of requests.
#[test]
fn provider_selection_does_not_depend_on_history() {
    let cfg = bearer_guard::parse_config(
        json!({
            "providers": [
                {"name": "a", "audiences": ["aud-a"], "algorithms": ["RS256"],
                 "jwks": {"cluster": "c", "authority": "a", "path": "/jwks"}},
                {"name": "b", "audiences": ["aud-b"], "algorithms": ["RS256"],
                 "jwks": {"cluster": "c", "authority": "a", "path": "/jwks"}}
            ],
            "rules": [
                {"match": {"prefix": "/only-b/"}, "providers": ["b"]},
                {"match": {"prefix": "/any/"}}
            ]
        })
        .to_string()
        .as_bytes(),
        &|_| None,
    )
    .expect("config");
    let (set, _) = KeySet::parse(jwks(&[&keys().0]).as_bytes(), 1 << 16).expect("jwks");
    let token = keys()
        .0
        .mint(&claims("https://any", "aud-b", "user-1", 600, json!({})));
    let keys = bearer_guard::FixedKeys(set);
    let only_b = request("GET", "/only-b/x", Some(format!("Bearer {token}")));
    let any = request("GET", "/any/x", Some(format!("Bearer {token}")));
    // Decides with a cache the way the filter does: a verified token is stored.
    let run = |cache: &mut TokenCache, req: &Request| {
        let o = decide(
            &Inputs::new(&cfg, &keys, &RustBackend, now())
                .accounts(&keys)
                .cache(cache),
            req,
        );
        if let CacheNote::Authenticated(a) = o.cache {
            if let Some((token, verified)) = a.store {
                cache.insert(&token, verified, now());
            }
        }
        o.decision
    };
    let allowed = Decision::Allow { headers: vec![] };
    let refused = Decision::Deny(Denial::InvalidToken);
    for order in [[&any, &only_b, &any], [&only_b, &any, &only_b]] {
        let mut cache = TokenCache::new(100);
        let got: Vec<Decision> = order.iter().map(|req| run(&mut cache, req)).collect();
        let want: Vec<Decision> = order
            .iter()
            .map(|req| {
                if req.path.starts_with("/any/") {
                    refused.clone()
                } else {
                    allowed.clone()
                }
            })
            .collect();
        assert_eq!(got, want, "order {:?}", order.map(|r| r.path.as_str()));
    }
}

/// The process-wide verified-token level: what one VM verified, another accepts without a
/// signature check — only for the very same token, under the same provider configuration,
/// with the key still in the set, and never past `exp`.
#[test]
fn verdicts_shared_between_vms() {
    use bearer_guard::MemoryStore;
    use bearer_guard::{Authenticated, VerdictLookup};
    use bearer_guard::{SharedTokens, SharedVerdict, TokenDigest};
    struct Process<'a>(&'a MemoryStore, SharedTokens);
    impl VerdictLookup for Process<'_> {
        fn digest(&self, token: &str) -> TokenDigest {
            self.1.digest(token)
        }
        fn verdict(&self, digest: &TokenDigest) -> Option<SharedVerdict> {
            self.1.lookup(self.0, digest)
        }
    }
    let store = MemoryStore::default();
    let process = Process(&store, SharedTokens::new(64, [5; 16]));
    let cfg = config();
    let fake = ready();
    let good = token_with(json!({"permissions": ["entities:read"]}));
    let req = request("GET", "/v1/entities/x", Some(format!("Bearer {good}")));
    let run = |cfg: &Config, fake: &Fake, backend: &dyn SignatureBackend, req: &Request| {
        decide(
            &Inputs::new(cfg, fake, backend, now())
                .accounts(fake)
                .verdicts(&process),
            req,
        )
    };
    let authenticated = |o: &bearer_guard::Outcome| match &o.cache {
        CacheNote::Authenticated(a) => Some(a.as_ref().clone()),
        _ => None,
    };
    // VM 1 verifies and publishes.
    let first = run(&cfg, &fake, &RustBackend, &req);
    let Some(Authenticated {
        publish: Some(verdict),
        shared_hit: false,
        ..
    }) = authenticated(&first)
    else {
        panic!("expected a verdict to publish: {:?}", first.cache)
    };
    process.1.publish(&store, &verdict);
    // VM 2 accepts it without a signature check (its backend would fail).
    let second = run(&cfg, &fake, &Failing, &req);
    assert_eq!(second.decision, first.decision);
    let a = authenticated(&second).expect("authenticated");
    assert!(a.shared_hit && a.publish.is_none());
    // Another token (one character of the signature changed) is verified, and refused.
    let mut forged = good.clone().into_bytes();
    let i = forged.len() - 10;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    let forged_req = request("GET", "/v1/entities/x", Some(format!("Bearer {forged}")));
    assert_eq!(
        run(&cfg, &fake, &RustBackend, &forged_req).decision,
        Decision::Deny(Denial::InvalidToken)
    );
    // A changed provider configuration does not trust the old verdict: the (failing)
    // backend is asked, and answers 500.
    let mut changed = config();
    changed.providers[0].fingerprint ^= 1;
    assert_eq!(
        run(&changed, &fake, &Failing, &req).decision,
        Decision::Deny(Denial::Unavailable)
    );
    // Nor once the key that verified it has left the key set.
    let mut rotated = ready();
    let (set, _) = KeySet::parse(jwks(&[&keys().1]).as_bytes(), 1 << 16).expect("jwks");
    rotated.keys = Some(set);
    rotated.refetch = false;
    assert_eq!(
        run(&cfg, &rotated, &Failing, &req).decision,
        Decision::Deny(Denial::InvalidToken)
    );
}

/// Step-up and scope through the pipeline: the step-up step runs after identity and
/// before permissions, a failed one names what the rule asks, a missing scope is named
/// as the request renders it; `explain` shows the challenge the filter sends.
#[test]
fn step_up_and_scope_challenges() {
    let mut json = plugin(vec![
        json!({"name": "admin", "match": {"template": "/orgs/{org}/admin"},
        "all_of": ["admin:{path.org}"], "acr_values": ["phrh", "hwk"], "max_age_s": 300}),
    ]);
    json["protected_resources"] = json!([{"resource": "https://api.example.com",
        "authorization_servers": ["https://as.example.com"]}]);
    let cfg =
        bearer_guard::parse_config(json.to_string().as_bytes(), &|_| Some(SECRET.to_string()))
            .expect("config");
    let fake = ready();
    let decide_on = |claims: Value| {
        let req = request(
            "GET",
            "/orgs/acme/admin",
            Some(format!("Bearer {}", token_with(claims))),
        );
        let inputs = Inputs::new(&cfg, &fake, &RustBackend, now()).accounts(&fake);
        (decide(&inputs, &req), req)
    };
    let now = now();
    let (o, _) = decide_on(json!({"admin": 1, "acr": "pwd", "auth_time": now}));
    assert_eq!(
        o.decision,
        Decision::Deny(Denial::StepUp(bearer_guard::StepUp {
            acr_values: Some("phrh hwk".into()),
            max_age: Some(300),
            too_old: false
        }))
    );
    let (o, _) = decide_on(json!({"acr": "hwk", "auth_time": now - 301 - 60}));
    assert!(matches!(&o.decision, Decision::Deny(Denial::StepUp(s)) if s.too_old));
    // The step-up passes; the permission does not: its scope is named as rendered.
    let (o, req) = decide_on(json!({"acr": "hwk", "auth_time": now}));
    assert_eq!(o.decision, Decision::Deny(Denial::InsufficientPermissions));
    assert_eq!(o.scope.as_deref(), Some("admin:acme"));
    let e = bearer_guard::explain(
        &cfg,
        fake.keys.as_ref(),
        None,
        &RustBackend,
        None,
        &req,
        now,
    );
    let www = e
        .headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        www,
        Some("Bearer error=\"insufficient_scope\", scope=\"admin:acme\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"")
    );
    let steps: Vec<String> = e
        .trace
        .identity
        .iter()
        .map(|c| c.step.to_string())
        .collect();
    assert!(steps.contains(&"step-up".to_string()), "{steps:?}");
    let (o, _) = decide_on(json!({"acr": "hwk", "auth_time": now, "permissions": ["admin:acme"]}));
    assert!(
        matches!(o.decision, Decision::Allow { .. }),
        "{:?}",
        o.decision
    );
}

/// `explain` shows each claim comparison, the token type and the lifetime.
#[test]
fn explain_shows_the_token_policy() {
    let mut json = plugin(vec![
        json!({"match": {"prefix": "/v1/"}, "claim_values": {"hd": "example.com"}}),
    ]);
    json["providers"][0]["token_types"] = json!(["at+jwt"]);
    json["providers"][0]["max_lifetime_s"] = json!(3600);
    json["providers"][0]["claim_values"] = json!({"azp": ["client-a"]});
    let cfg =
        bearer_guard::parse_config(json.to_string().as_bytes(), &|_| Some(SECRET.to_string()))
            .expect("config");
    let fake = ready();
    let now = now();
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": keys().0.kid});
    let tok = keys().0.mint_with_header(
        &header,
        &claims(
            ISS,
            AUD,
            "user-1",
            600,
            json!({"iat": now, "azp": "client-a", "hd": "example.org"}),
        ),
    );
    let req = request("GET", "/v1/x", Some(format!("Bearer {tok}")));
    let e = bearer_guard::explain(
        &cfg,
        fake.keys.as_ref(),
        None,
        &RustBackend,
        None,
        &req,
        now,
    );
    let shown: Vec<String> = e
        .trace
        .token
        .iter()
        .chain(&e.trace.identity)
        .map(|c| format!("{}: {} {}", c.step, c.ok, c.detail()))
        .collect();
    for want in [
        "token type: true typ \"at+jwt\", accepted: at+jwt",
        "lifetime: true lives 600 s, at most 3600 s",
        "claim azp: true \"client-a\", wanted one of [\"client-a\"]",
        "claim hd: false \"example.org\", wanted one of [\"example.com\"]",
    ] {
        assert!(shown.iter().any(|s| s == want), "{want} not in {shown:#?}");
    }
    assert_eq!(e.status, 403);
}
