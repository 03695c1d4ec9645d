//! A bounded mutation fuzz that runs with every `make test`: seeded, a few seconds, over
//! the same entry points as the `cargo fuzz` targets in `tests/fuzz/`. Any panic fails,
//! and no mutated token is ever allowed.

use crate::support::idp::{claims, jwks, now, Signer};
use bearer_guard::KeySet;
use bearer_guard::RustBackend;
use bearer_guard::TokenCache;
use bearer_guard::DEFAULT_MAX_JWKS_BYTES;
use bearer_guard::{decide, CacheNote, Decision, FixedKeys, Inputs};
use bearer_guard::{Headers, Request};
use serde_json::json;
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, seedable, good enough to pick mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}[]\":,\\\x00\xff%";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let pos = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let p = pos.min(v.len() - 1);
                v[p] = ALPHABET[rng.below(ALPHABET.len())];
            }
            1 => v.insert(pos, ALPHABET[rng.below(ALPHABET.len())]),
            2 if pos < v.len() => {
                v.remove(pos);
            }
            3 => v.truncate(pos),
            4 if !v.is_empty() => {
                let from = rng.below(v.len());
                let to = (from + rng.below(32)).min(v.len());
                let chunk = v[from..to].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, chunk);
            }
            _ => v.reverse(),
        }
    }
    v
}

const CONFIG: &str = r#"{
  "providers": [
    {"name": "idp", "issuer": "https://idp", "audiences": ["a"], "algorithms": ["RS256"],
     "jwks": {"cluster": "c", "authority": "x", "path": "/j"}, "identity": {"required_claims": ["sub"]}},
    {"name": "sdk", "algorithms": ["HS256"], "secret": {"env": "S"}}
  ],
  "roles": {"admin": ["*"]},
  "forward": {"headers": {"x-sub": "sub"}},
  "rules": [
    {"match": {"methods": ["GET"], "path": "/health"}, "public": true},
    {"match": {"template": "/v1/n/{id}/c"}, "all_of": ["c:w:{path.id}"], "member_of": {"path": "id", "claim": "nets"}},
    {"match": {"prefix": "/v1/items"}, "headers": {"X-U": "uuidv7"}, "any_of": ["i:r:{header.x-i}", "i:r:{query.i}"]}
  ]
}"#;

fn budget() -> Duration {
    Duration::from_millis(
        std::env::var("FUZZ_SMOKE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    )
}

#[test]
fn tokens_and_requests_never_panic() {
    let cfg = bearer_guard::parse_config(CONFIG.as_bytes(), &|_| {
        Some("0123456789abcdef0123456789abcdef".into())
    })
    .expect("config");
    let signer = Signer::generate("k");
    let (set, _) =
        KeySet::parse(jwks(&[&signer]).as_bytes(), DEFAULT_MAX_JWKS_BYTES).expect("jwks");
    let keys = FixedKeys(set);
    let good = signer.mint(&claims(
        "https://idp",
        "a",
        "u",
        600,
        json!({"nets": ["n1"], "permissions": ["c:w:n1"]}),
    ));
    let paths = [
        "/v1/n/n1/c",
        "/health",
        "/v1/items?i=1",
        "/x/../y",
        "/%2e/v1",
        "//health",
        "/v1/n//c",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cache = TokenCache::new(1000);
    let (start, mut runs, mut allowed_good) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < budget() {
        // Mostly mutated tokens; sometimes the real one, so the allow path is reachable
        // and the property below is tested against a filter that does allow.
        let token = if rng.below(16) == 0 {
            good.clone()
        } else {
            String::from_utf8_lossy(&mutate(&mut rng, good.as_bytes())).to_string()
        };
        let path = if rng.below(4) == 0 {
            paths[0].to_string()
        } else {
            let base = paths[rng.below(paths.len())];
            String::from_utf8_lossy(&mutate(&mut rng, base.as_bytes())).to_string()
        };
        let auth = if rng.below(8) == 0 {
            token.clone()
        } else {
            format!("Bearer {token}")
        };
        let req = Request {
            method: ["GET", "POST", "get"][rng.below(3)].into(),
            path,
            authority: "h".into(),
            headers: Headers::from_pairs([
                ("authorization", auth.as_str()),
                ("x-u", "01890a5d-ac96-774b-bcce-b302099a8057"),
                ("x-i", "1"),
            ]),
            ..Default::default()
        };
        let out = decide(
            &Inputs::new(&cfg, &keys, &RustBackend, now())
                .accounts(&keys)
                .cache(&cache),
            &req,
        );
        // The property: only the unmutated token is ever allowed (public routes need none).
        if let (Decision::Allow { .. }, false) = (&out.decision, out.public) {
            assert_eq!(
                auth,
                format!("Bearer {good}"),
                "a mutated credential was allowed on {}",
                req.path
            );
            allowed_good += 1;
        }
        // The cache is exercised as the filter uses it: a mutation must not hit it either.
        if let CacheNote::Authenticated(a) = out.cache {
            if let Some((token, verified)) = a.store {
                cache.insert(&token, verified, now());
            }
        }
        runs += 1;
    }
    assert!(runs > 100, "only {runs} runs");
    assert!(allowed_good > 0, "the real token was never allowed");
}

#[test]
fn jwks_config_and_header_maps_never_panic() {
    let signer = Signer::generate("k");
    let doc = jwks(&[&signer]);
    // A header map as the host serializes it: count, sizes, then NUL-terminated fields.
    let mut map = 2u32.to_le_bytes().to_vec();
    for n in [5u32, 5, 13, 8] {
        map.extend(n.to_le_bytes());
    }
    map.extend(b":path\0/v1/x\0authorization\0Bearer x\0");
    assert!(Headers::from_serialized(&map).is_some_and(|h| h.len() == 2));
    let mut rng = Rng(42);
    let (start, mut runs) = (Instant::now(), 0u64);
    while start.elapsed() < budget() {
        let _ = KeySet::parse(&mutate(&mut rng, doc.as_bytes()), DEFAULT_MAX_JWKS_BYTES);
        let _ = Headers::from_serialized(&mutate(&mut rng, &map));
        let _ = bearer_guard::parse_config(&mutate(&mut rng, CONFIG.as_bytes()), &|_| {
            Some("0123456789abcdef0123456789abcdef".into())
        });
        runs += 1;
    }
    assert!(runs > 100, "only {runs} runs");
}
