//! End to end in the real Envoy: where tokens come from, per provider — `Authorization:
//! Bearer`, another header, a cookie, a query parameter — exactly one credential per
//! request, and credentials removed before the upstream when the provider says `strip`.

use crate::common::*;
use serde_json::{json, Value};

fn provider(name: &str, token: Value) -> Value {
    json!({"name": name, "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
           "jwks": {"cluster": "jwks", "authority": "idp.test", "path": "/jwks"},
           "token": token})
}

fn config() -> Value {
    let mut c = plugin(vec![
        json!({"name": "web-only", "match": {"prefix": "/web/"}, "providers": ["web"]}),
    ]);
    c["providers"] = json!([
        {"name": "idp", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
         "jwks": {"cluster": "jwks", "authority": "idp.test", "path": "/jwks"}},
        provider("web", json!({"cookie": "session", "strip": true})),
        provider("iap", json!({"header": "x-goog-iap-jwt-assertion"})),
        provider("links", json!({"query": "access_token", "strip": true})),
    ]);
    c
}

#[test]
fn tokens_from_every_source() {
    let stack = Stack::start(config());
    let token = good_token();
    let other = token_for("user-2", json!({}));
    let get = |path: &str, headers: &[(&str, String)]| {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        stack.envoy.get(path, &hs)
    };

    // A cookie; the upstream never sees it (strip), other cookies stay.
    let r = get(
        "/v1/x",
        &[("cookie", format!("theme=dark; session={token}"))],
    );
    assert_eq!(r.status, 200, "cookie: {}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("user-1")
    );
    assert_eq!(r.upstream_header("cookie").as_deref(), Some("theme=dark"));

    // Another header (kept: its provider does not strip).
    let r = get("/v1/x", &[("x-goog-iap-jwt-assertion", token.clone())]);
    assert_eq!(r.status, 200, "header: {}", r.body);
    assert_eq!(
        r.upstream_header("x-goog-iap-jwt-assertion").as_deref(),
        Some(token.as_str())
    );

    // A query parameter, removed from the path the upstream gets.
    let r = get(&format!("/v1/x?y=1&access_token={token}"), &[]);
    assert_eq!(r.status, 200, "query: {}", r.body);
    assert_eq!(r.json()["path"], "/v1/x?y=1");

    // The same token in two places is one credential; two different ones are refused.
    let r = get(
        "/v1/x",
        &[
            ("authorization", format!("Bearer {token}")),
            ("cookie", format!("session={token}")),
        ],
    );
    assert_eq!(r.status, 200, "same token twice: {}", r.body);
    let r = get(
        "/v1/x",
        &[
            ("authorization", format!("Bearer {token}")),
            ("cookie", format!("session={other}")),
        ],
    );
    expect("two credentials", &r, 401, Some(REQUIRES_AUTH), WWW_BEARER);
    let r = get(
        "/v1/x",
        &[("cookie", format!("session={token}; session={other}"))],
    );
    expect(
        "two session cookies",
        &r,
        401,
        Some(REQUIRES_AUTH),
        WWW_BEARER,
    );
    let r = get("/v1/x", &[]);
    expect("no credential", &r, 401, Some(REQUIRES_AUTH), WWW_BEARER);

    // A rule that allows only the cookie provider looks only at the cookie.
    let r = get("/web/x", &[("authorization", format!("Bearer {token}"))]);
    expect(
        "Authorization on a cookie-only rule",
        &r,
        401,
        Some(REQUIRES_AUTH),
        WWW_BEARER,
    );
    let r = get("/web/x", &[("cookie", format!("session={token}"))]);
    assert_eq!(r.status, 200, "cookie on a cookie-only rule: {}", r.body);
}

#[test]
fn token_sources_are_checked_at_configuration() {
    for (token, field) in [
        (
            json!({"header": "x-a", "cookie": "b"}),
            "providers[1].token.header",
        ),
        (json!({"cookie": "a=b"}), "providers[1].token.cookie"),
        (
            json!({"cookie": "s", "prefix": "Bearer "}),
            "providers[1].token.prefix",
        ),
        (json!({"query": ""}), "providers[1].token.query"),
    ] {
        let mut c = config();
        c["providers"][1]["token"] = token.clone();
        let err = bearer_guard::parse_config(c.to_string().as_bytes(), &|_| Some(SECRET.into()))
            .err()
            .unwrap_or_else(|| panic!("{token} accepted"));
        assert_eq!(err.field, field, "{token}: {err}");
    }
}

/// RS384 and RS512 verify through Envoy's BoringSSL and through the pure-Rust backend,
/// PS256/384/512 in pure Rust on both,
/// HS384 and HS512 with the shared secret; a provider accepts only the algorithms it pins,
/// a JWK with an `alg` verifies only that algorithm, and RSA and HMAC never mix.
#[test]
fn rs384_rs512_hs384_hs512() {
    let (a, b) = (&keys().0, &keys().1);
    // Key A's JWK names no alg; key B's is pinned to RS256.
    let mut pinned = b.jwk();
    pinned["alg"] = json!("RS256");
    let mut unpinned = a.jwk();
    unpinned.as_object_mut().expect("jwk").remove("alg");
    let doc = json!({"keys": [unpinned, pinned]}).to_string();
    for verifier in ["envoy", "rust"] {
        let mut config = plugin(vec![]);
        config["verifier"] = json!(verifier);
        config["providers"][0]["algorithms"] =
            json!(["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]);
        config["providers"][1]["algorithms"] = json!(["HS384", "HS512"]);
        let server = JwksServer::start(0, JwksMode::Serve(doc.clone())).expect("jwks");
        let stack = Stack::with_jwks(config, server);
        for alg in ["RS256", "RS384", "RS512"] {
            let r = stack
                .envoy
                .get_with_token("/v1/x", &a.mint_alg(alg, &good_claims()));
            assert_eq!(r.status, 200, "{verifier} {alg}: {}", r.body);
            assert_eq!(
                r.upstream_header("x-auth-subject").as_deref(),
                Some("user-1")
            );
            // The signature of another hash does not verify under this alg.
            let forged = a.mint_alg(alg, &good_claims());
            let other = match alg {
                "RS512" => "RS384",
                "PS256" => "RS256",
                a if a.starts_with("PS") => "PS256",
                _ => "RS512",
            };
            let (head, _) = forged.rsplit_once('.').expect("jws");
            let (_, sig) = a
                .mint_alg(other, &good_claims())
                .rsplit_once('.')
                .map(|(h, s)| (h.to_string(), s.to_string()))
                .expect("jws");
            let r = stack
                .envoy
                .get_with_token("/v1/x", &format!("{head}.{sig}"));
            expect(
                "signature of another hash",
                &r,
                401,
                Some(INVALID),
                WWW_INVALID,
            );
        }
        // Key B's JWK pins RS256: an RS512 token naming it is refused, RS256 passes.
        let r = stack
            .envoy
            .get_with_token("/v1/x", &b.mint_alg("RS512", &good_claims()));
        expect(
            "alg the JWK does not allow",
            &r,
            401,
            Some(INVALID),
            WWW_INVALID,
        );
        assert_eq!(
            stack
                .envoy
                .get_with_token("/v1/x", &b.mint_alg("RS256", &good_claims()))
                .status,
            200
        );
        for alg in ["HS384", "HS512"] {
            let t = mint_hs(
                alg,
                SECRET.as_bytes(),
                &json!({"sub": "svc", "exp": now() + 600}),
            );
            let r = stack.envoy.get_with_token("/v1/x", &t);
            assert_eq!(r.status, 200, "{verifier} {alg}: {}", r.body);
        }
        // HS256 is not pinned on the HMAC provider; an HMAC token over the RSA public key
        // (algorithm confusion) is refused whatever the hash.
        let t = mint_hs(
            "HS256",
            SECRET.as_bytes(),
            &json!({"sub": "svc", "exp": now() + 600}),
        );
        expect(
            "HS256 not pinned",
            &stack.envoy.get_with_token("/v1/x", &t),
            401,
            Some(INVALID),
            WWW_INVALID,
        );
        for alg in ["HS384", "HS512"] {
            let t = mint_hs(alg, &a.public_der(), &good_claims());
            expect(
                "confusion",
                &stack.envoy.get_with_token("/v1/x", &t),
                401,
                Some(INVALID),
                WWW_INVALID,
            );
        }
    }
    // One provider never mixes RSA and HMAC.
    let mut c = plugin(vec![]);
    c["providers"][0]["algorithms"] = json!(["RS384", "HS512"]);
    let err = bearer_guard::parse_config(c.to_string().as_bytes(), &|_| Some(SECRET.into()))
        .expect_err("refused");
    assert_eq!(err.field, "providers[0].algorithms", "{err}");
}

/// ES256, ES384 and ES512 through Envoy's BoringSSL (the JWS `r || s` signature
/// re-encoded as DER) and through the pure-Rust backend, EdDSA (always pure Rust: Envoy's
/// API cannot); every cross-type confusion is refused.
#[test]
fn es256_es384_es512_and_key_type_confusion() {
    let rsa = &keys().0;
    let (p256, p384, p521) = (
        EcSigner::generate("ec-256", "ES256"),
        EcSigner::generate("ec-384", "ES384"),
        EcSigner::generate("ec-521", "ES512"),
    );
    let ed = EdSigner::generate("ed-1");
    let doc =
        json!({"keys": [rsa.jwk(), p256.jwk(), p384.jwk(), p521.jwk(), ed.jwk()]}).to_string();
    for verifier in ["envoy", "rust"] {
        let mut config = plugin(vec![]);
        config["verifier"] = json!(verifier);
        config["providers"][0]["algorithms"] = json!(["RS256", "ES256", "ES384", "ES512", "EdDSA"]);
        let server = JwksServer::start(0, JwksMode::Serve(doc.clone())).expect("jwks");
        let stack = Stack::with_jwks(config, server);
        for (name, token) in [
            ("ES256", p256.mint(&good_claims())),
            ("ES384", p384.mint(&good_claims())),
            ("ES512", p521.mint(&good_claims())),
            ("EdDSA", ed.mint(&good_claims())),
        ] {
            let r = stack.envoy.get_with_token("/v1/x", &token);
            assert_eq!(r.status, 200, "{verifier} {name}: {}", r.body);
            assert_eq!(
                r.upstream_header("x-auth-subject").as_deref(),
                Some("user-1")
            );
            // One byte of the signature changed.
            let mut forged = token.clone().into_bytes();
            let i = forged.len() - 5;
            forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(forged).expect("ascii");
            expect(
                "forged",
                &stack.envoy.get_with_token("/v1/x", &forged),
                401,
                Some(INVALID),
                WWW_INVALID,
            );
        }
        // Confusions: a header naming another key type or curve than the key's.
        let rewrite = |token: &str, header: Value| {
            let (_, rest) = token.split_once('.').expect("jws");
            format!("{}.{rest}", b64(header.to_string()))
        };
        let es256 = p256.mint(&good_claims());
        let cases = [
            (
                "ES256 naming the RSA key",
                rewrite(&es256, json!({"alg": "ES256", "kid": "key-a"})),
            ),
            (
                "ES384 header on a P-256 signature",
                rewrite(&es256, json!({"alg": "ES384", "kid": "ec-256"})),
            ),
            (
                "ES512 header on a P-384 signature",
                rewrite(
                    &p384.mint(&good_claims()),
                    json!({"alg": "ES512", "kid": "ec-384"}),
                ),
            ),
            (
                "ES512 header naming the P-256 key",
                rewrite(
                    &p521.mint(&good_claims()),
                    json!({"alg": "ES512", "kid": "ec-256"}),
                ),
            ),
            (
                "RS256 naming the EC key",
                rewrite(
                    &rsa.mint(&good_claims()),
                    json!({"alg": "RS256", "kid": "ec-256"}),
                ),
            ),
            (
                "HS256 over the EC key's JWK",
                mint_hs256(p256.jwk().to_string().as_bytes(), &good_claims()),
            ),
        ];
        for (case, token) in cases {
            expect(
                case,
                &stack.envoy.get_with_token("/v1/x", &token),
                401,
                Some(INVALID),
                WWW_INVALID,
            );
        }
    }
}

/// OpenID Connect discovery: the filter reads `{issuer}/.well-known/openid-configuration`
/// through the provider's cluster, checks the document's issuer, and fetches `jwks_uri`
/// only on an allowed host; refreshed like a JWKS.
#[test]
fn oidc_discovery() {
    use std::sync::{Arc, Mutex};
    let issuer = "https://idp.test/realms/platform";
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let document: Arc<Mutex<Value>> = Arc::new(Mutex::new(json!({
        "issuer": issuer, "jwks_uri": "https://idp.test/realms/platform/protocol/openid-connect/certs"})));
    let keys_doc = jwks(&[&keys().0]);
    let (s2, d2) = (seen.clone(), document.clone());
    let server = HttpServer::start(
        0,
        Arc::new(move |req: &crate::support::servers::Seen| {
            if let Ok(mut s) = s2.lock() {
                s.push(req.url.clone());
            }
            let json = vec![("content-type".to_string(), "application/json".to_string())];
            match req.url.as_str() {
                "/realms/platform/.well-known/openid-configuration" => {
                    let doc = d2.lock().map(|d| d.to_string()).unwrap_or_default();
                    (200, json, doc.into_bytes())
                }
                "/realms/platform/protocol/openid-connect/certs" => {
                    (200, json, keys_doc.clone().into_bytes())
                }
                _ => (404, vec![], vec![]),
            }
        }),
    )
    .expect("idp");
    let config = |refresh_s: u64| {
        let mut c = plugin(vec![]);
        c["providers"][0]["issuer"] = json!(issuer);
        c["providers"][0]["jwks"] = json!({"cluster": "jwks", "authority": "idp.test", "discovery": true,
                                           "refresh_s": refresh_s, "retry_max_s": 1, "timeout_ms": 1500});
        c
    };
    let upstream = echo(0).expect("echo");
    let start = |c: Value| {
        let mut o = Options::new(c, upstream.port, server.port);
        o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
        Envoy::start(&o)
    };
    let token = keys()
        .0
        .mint(&claims(issuer, AUD, "user-1", 600, json!({})));
    let envoy = start(config(1));
    let r = envoy.get_with_token("/v1/x", &token);
    assert_eq!(r.status, 200, "{}", r.body);
    // Refreshed like a JWKS: the document, then the keys, again.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let paths = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let discovery = paths
        .iter()
        .filter(|p| p.ends_with("openid-configuration"))
        .count();
    let certs = paths.iter().filter(|p| p.ends_with("/certs")).count();
    assert!(discovery >= 2 && certs >= 2, "{paths:?}");
    drop(envoy);

    // A document naming another issuer, or keys on a host the configuration does not
    // allow: no keys at all (500), and the keys' URL is never fetched.
    for (doc, why) in [
        (
            json!({"issuer": "https://evil.test/realms/platform",
                "jwks_uri": "https://idp.test/realms/platform/protocol/openid-connect/certs"}),
            "issuer",
        ),
        (
            json!({"issuer": issuer, "jwks_uri": "https://evil.test/realms/platform/protocol/openid-connect/certs"}),
            "not one of the allowed hosts",
        ),
    ] {
        *document.lock().expect("doc") = doc;
        seen.lock().expect("seen").clear();
        let envoy = start(config(600));
        let r = envoy.get(
            "/v1/x",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("x-request-id", "d"),
            ],
        );
        expect(
            why,
            &r,
            500,
            Some(r#"{"detail":"Authentication service is unavailable","request_id":"d"}"#),
            None,
        );
        assert!(
            envoy.wait_until(std::time::Duration::from_secs(5), || envoy
                .log_contains(why)),
            "{why}"
        );
        let paths = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(
            paths.iter().all(|p| !p.ends_with("/certs")),
            "{why}: keys fetched: {paths:?}"
        );
    }
}
