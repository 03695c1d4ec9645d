//! End to end in the real Envoy: decisions that depend on the request alone — provider
//! selection whatever the history, exact percent-decoding, case-varying paths under
//! `"default": "deny"` — and key sets bounded in size and strength.

use crate::common::*;
use serde_json::{json, Value};

fn rs256_provider(name: &str, audience: &str) -> Value {
    json!({"name": name, "audiences": [audience], "algorithms": ["RS256"],
           "jwks": {"cluster": "jwks", "authority": "idp.test", "path": "/jwks"}})
}

/// A token's fate never depends on the routes it was used on before: two providers share
/// a JWKS and differ in `audiences`; an unrestricted rule is judged by the first (`a`), a
/// rule naming `b` by `b`, in both orders of requests (the verified-token cache holds the
/// token between them).
#[test]
fn provider_selection_does_not_depend_on_history() {
    let stack = Stack::start(json!({
        "providers": [rs256_provider("a", "aud-a"), rs256_provider("b", "aud-b")],
        "rules": [
            {"match": {"prefix": "/only-b/"}, "providers": ["b"]},
            {"match": {"prefix": "/any/"}}
        ]
    }));
    let orders: [&[&str]; 2] = [
        &["/any/x", "/only-b/x", "/any/x"],
        &["/only-b/x", "/any/x", "/only-b/x"],
    ];
    for (i, order) in orders.iter().enumerate() {
        // A fresh token per order, so the first order's cache entry cannot help the second.
        let token = keys().0.mint(&claims(
            "https://any",
            "aud-b",
            &format!("user-{i}"),
            600,
            json!({}),
        ));
        for path in *order {
            let r = stack.envoy.get_with_token(path, &token);
            if path.starts_with("/any/") {
                expect(path, &r, 401, Some(INVALID), WWW_INVALID);
            } else {
                assert_eq!(r.status, 200, "{path}: {}", r.body);
            }
        }
    }
}

/// Path segments are decoded exactly per RFC 3986: `+` is a plus sign (not a space), so
/// `a+b` is not the organization `a b`; `%20` is.
#[test]
fn path_segments_decode_exactly() {
    let stack = Stack::start(plugin(vec![json!({
        "name": "org-items",
        "match": {"template": "/v1/orgs/{org}/items"},
        "member_of": {"path": "org", "claim": "orgs"}
    })]));
    let token = token_with(json!({"orgs": ["a b"]}));
    let denied = |rid: &str| {
        format!(
            r#"{{"detail":"Permission denied","error_code":"PERMISSION_DENIED","request_id":"{rid}"}}"#
        )
    };
    let auth = format!("Bearer {token}");
    let r = stack.envoy.get(
        "/v1/orgs/a+b/items",
        &[("authorization", &auth), ("x-request-id", "plus-1")],
    );
    expect("a+b", &r, 403, Some(&denied("plus-1")), None);
    let r = stack
        .envoy
        .get("/v1/orgs/a%20b/items", &[("authorization", &auth)]);
    assert_eq!(r.status, 200, "a%20b: {}", r.body);
}

/// Envoy's `normalize_path` decodes `%45` to `E`, so a client can vary the case of a path
/// the rules spell in lower case. With `"default": "deny"` a path no rule names is refused,
/// whatever its case; the same request in the rules' spelling is judged by its rule.
#[test]
fn case_varying_paths_are_refused_under_default_deny() {
    let mut config = plugin(vec![
        json!({"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
    ]);
    config["default"] = json!("deny");
    let stack = Stack::start(config);
    let without = format!("Bearer {}", good_token());
    let with = format!(
        "Bearer {}",
        token_with(json!({"permissions": ["entities:read"]}))
    );
    for path in ["/v1/%45ntities/x", "/v1/Entities/x", "/V1/entities/x"] {
        let r = stack.envoy.get(path, &[("authorization", &without)]);
        expect(path, &r, 403, Some(NOT_ENOUGH), WWW_SCOPE);
        let r = stack.envoy.get(path, &[("authorization", &with)]);
        expect(path, &r, 403, Some(NOT_ENOUGH), WWW_SCOPE);
    }
    // `%65` is `e`: the normalized path is the rule's, and the rule decides.
    let r = stack
        .envoy
        .get("/v1/%65ntities/x", &[("authorization", &without)]);
    expect(
        "%65 without permission",
        &r,
        403,
        Some(NOT_ENOUGH),
        WWW_SCOPE,
    );
    let r = stack
        .envoy
        .get("/v1/%65ntities/x", &[("authorization", &with)]);
    assert_eq!(r.status, 200, "%65 with permission: {}", r.body);
    assert_eq!(
        r.json()["path"],
        "/v1/entities/x",
        "the upstream sees the normalized path"
    );
}

/// A JWKS key with a modulus under 2048 bits is skipped, even when its modulus takes 256
/// bytes (2041 bits); tokens it signed are refused, the others' still verify.
#[test]
fn keys_under_2048_bits_are_refused() {
    let weak = Signer::generate_bits("weak-2041", 2041);
    let jwks_server =
        JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0, &weak]))).expect("jwks server");
    let stack = Stack::with_jwks(plugin(vec![]), jwks_server);
    assert!(stack
        .envoy
        .wait_until(std::time::Duration::from_secs(10), || {
            stack
                .envoy
                .log_contains("loaded keys [key-a] (1 JWKS entries skipped")
        }));
    let weak_token = weak.mint(&good_claims());
    let r = stack.envoy.get_with_token("/v1/x", &weak_token);
    expect("2041-bit key", &r, 401, Some(INVALID), WWW_INVALID);
    let r = stack.envoy.get_with_token("/v1/x", &good_token());
    assert_eq!(r.status, 200, "2048-bit key: {}", r.body);
}

/// A JWK of a 4096-bit key (an odd modulus with its top bit set: parses as a usable key).
fn big_jwk(kid: &str) -> Value {
    let mut n = vec![0xc5u8; 512];
    n[511] |= 1;
    json!({"kty": "RSA", "kid": kid, "n": b64(&n), "e": "AQAB"})
}

/// A JWKS body over `jwks.max_bytes` (64 KiB by default) is a failed fetch and is never
/// read; raising the limit admits it. The worst case within the default — 64 KiB of
/// 4096-bit keys — loads quickly (the log line reports the time).
#[test]
fn jwks_bodies_are_bounded() {
    // Key A plus 4096-bit keys: ~70 KiB.
    let mut entries = vec![keys().0.jwk()];
    entries.extend((0..100).map(|i| big_jwk(&format!("big-{i}"))));
    let big = json!({ "keys": entries }).to_string();
    assert!(big.len() > 65536, "{}", big.len());
    let server = JwksServer::start(0, JwksMode::Serve(big.clone())).expect("jwks server");
    let stack = Stack::with_jwks(plugin(vec![]), server);
    assert!(stack
        .envoy
        .wait_until(std::time::Duration::from_secs(10), || {
            stack
                .envoy
                .log_contains("over the 65536-byte limit (jwks.max_bytes)")
        }));
    let auth = format!("Bearer {}", good_token());
    let r = stack.envoy.get(
        "/v1/x",
        &[("authorization", &auth), ("x-request-id", "big")],
    );
    expect(
        "no keys",
        &r,
        500,
        Some(r#"{"detail":"Authentication service is unavailable","request_id":"big"}"#),
        None,
    );
    drop(stack);

    // Raised limit: the same document loads (64 keys kept, the rest skipped unread).
    let mut config = plugin(vec![]);
    config["providers"][0]["jwks"]["max_bytes"] = json!(131072);
    let server = JwksServer::start(0, JwksMode::Serve(big)).expect("jwks server");
    let stack = Stack::with_jwks(config, server);
    assert!(stack
        .envoy
        .wait_until(std::time::Duration::from_secs(10), || {
            stack.envoy.log_contains("(37 JWKS entries skipped")
        }));
    let r = stack.envoy.get_with_token("/v1/x", &good_token());
    assert_eq!(r.status, 200, "{}", r.body);
    drop(stack);

    // The worst case under the default limit: as many 4096-bit keys as fit in 64 KiB.
    let mut worst = Vec::new();
    while json!({ "keys": worst }).to_string().len() + 800 < 65536 {
        worst.push(big_jwk(&format!("w-{}", worst.len())));
    }
    worst[0] = keys().0.jwk();
    let body = json!({ "keys": worst }).to_string();
    let server = JwksServer::start(0, JwksMode::Serve(body.clone())).expect("jwks server");
    let stack = Stack::with_jwks(plugin(vec![]), server);
    let mut line = String::new();
    assert!(stack
        .envoy
        .wait_until(std::time::Duration::from_secs(10), || {
            line = stack
                .envoy
                .log()
                .lines()
                .find(|l| l.contains("bytes read and parsed in"))
                .unwrap_or_default()
                .to_string();
            !line.is_empty()
        }));
    let ms: u64 = line
        .rsplit("parsed in ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|t| t.parse().ok())
        .expect("parse time in the log line");
    eprintln!(
        "worst case: {} bytes, {} keys of 4096 bits: loaded in {ms} ms in Envoy",
        body.len(),
        worst.len()
    );
    assert!(ms < 500, "{line}");
    let r = stack.envoy.get_with_token("/v1/x", &good_token());
    assert_eq!(r.status, 200, "{}", r.body);
}
