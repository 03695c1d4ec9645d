#[path = "../tests/support/idp.rs"]
mod idp;
use bearer_guard::jwks::{KeySet, RsaKey};
use bearer_guard::pipeline::{decide, CacheNote, FixedKeys, Inputs};
use bearer_guard::request::Request;
use bearer_guard::token_cache::TokenCache;
use bearer_guard::verifier::{BackendError, SignatureBackend};
use idp::{claims, jwks, Signer};
use serde_json::json;
use std::time::Instant;
struct Noop;
impl SignatureBackend for Noop {
    fn verify_rs256(&self, _k: &RsaKey, _m: &[u8], _s: &[u8]) -> Result<bool, BackendError> {
        Ok(true)
    }
    fn name(&self) -> &'static str {
        "noop"
    }
}
fn main() {
    let signer = Signer::generate("bench-key");
    let doc = jwks(&[&signer]);
    let (keys, _) = KeySet::parse(doc.as_bytes()).unwrap();
    let cfg = json!({
        "providers": [{"name": "bench", "issuer": "https://bench.idp", "audiences": ["bench"], "algorithms": ["RS256"],
                       "jwks": {"cluster": "jwks", "authority": "bench.idp", "path": "/jwks"}}],
        "token_cache": {"max_entries": 4096}, "rules": []});
    let config = bearer_guard::config::parse(cfg.to_string().as_bytes(), &|_| None).unwrap();
    let n = 12000;
    let tokens: Vec<String> = (0..n)
        .map(|i| {
            signer.mint(&claims(
                "https://bench.idp",
                "bench",
                &format!("user-{i}"),
                3600,
                json!({"permissions": ["read"]}),
            ))
        })
        .collect();
    println!("token len {}", tokens[0].len());
    let fixed = FixedKeys(keys);
    let mut cache = TokenCache::new(4096);
    let now_s = idp::now();
    let headers = |t: &str| {
        vec![
            (":authority".to_string(), "127.0.0.1:1".to_string()),
            (":path".into(), "/bench".into()),
            (":method".into(), "GET".into()),
            (":scheme".into(), "http".into()),
            ("authorization".into(), format!("Bearer {t}")),
            ("x-forwarded-proto".into(), "http".into()),
            (
                "x-request-id".into(),
                "0b0f7bd2-6f9f-4a5c-9d5e-3f1c5a1b2c3d".into(),
            ),
        ]
    };
    for round in 0..3 {
        let t0 = Instant::now();
        let mut parse_ns = 0u128;
        for t in &tokens {
            let req = Request {
                method: "GET".into(),
                path: "/bench".into(),
                authority: "127.0.0.1:1".into(),
                route_name: None,
                request_id: "x".into(),
                headers: headers(t),
            };
            let a = Instant::now();
            let out = {
                let inp = Inputs {
                    config: &config,
                    keys: &fixed,
                    accounts: &fixed,
                    backend: &Noop,
                    cache: Some(&cache),
                    now_s,
                };
                decide(&inp, &req)
            };
            parse_ns += a.elapsed().as_nanos();
            if let CacheNote::Store(e) = out.cache {
                let (tok, v) = *e;
                cache.insert(&tok, v, now_s);
            }
        }
        let total = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: decide {:.2} µs, total incl request build+insert {total:.2} µs",
            parse_ns as f64 / 1e3 / n as f64
        );
    }
}
