//! End to end in the real Envoy: the reply table, providers, key lifecycle, configuration.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

#[test]
fn reply_table_rows_in_envoy() {
    let stack = Stack::start(plugin(vec![
        json!({"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
    ]));
    let (a, other) = (&keys().0, &keys().1);
    let good = token(json!({"permissions": ["entities:read"]}));
    let expired = a.mint(&claims(ISS, AUD, "user-1", -3600, json!({})));
    // Signed by a key this environment's JWKS does not have: unknown kid, and same kid.
    let foreign_kid = other.mint(&claims(ISS, AUD, "user-1", 600, json!({})));
    let foreign_same_kid = other.mint_with_header(
        &json!({"alg": "RS256", "kid": "key-a"}),
        &claims(ISS, AUD, "user-1", 600, json!({})),
    );
    let truncated = good[..good.len() - 10].to_string();
    let garbled = good.replacen('.', "#", 1);
    let no_sub = a.mint(&json!({"iss": ISS, "aud": AUD, "exp": now() + 600}));
    let wrong_aud = a.mint(&claims(ISS, "another-client", "user-1", 600, json!({})));
    let wrong_iss = a.mint(&claims("https://evil.test", AUD, "user-1", 600, json!({})));
    let hs_good = mint_hs256(
        SECRET.as_bytes(),
        &json!({"sub": "svc-1", "exp": now() + 600}),
    );
    let hs_wrong = mint_hs256(
        b"some-other-secret-some-other-secret!!",
        &json!({"sub": "svc-1", "exp": now() + 600}),
    );
    // Algorithm confusion: HS256 "signed" with the RSA provider's public key as the secret.
    let confused = mint_hs256(&a.public_der(), &claims(ISS, AUD, "user-1", 600, json!({})));
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(claims(ISS, AUD, "u", 600, json!({})).to_string())
    );
    let bearer = |t: &str| format!("Bearer {t}");

    type Row<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, String)>,
        u16,
        Option<&'a str>,
        Option<&'a str>,
    );
    let rows: Vec<Row> = vec![
        (
            "no Authorization header",
            "/v1/entities/x",
            vec![],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
        (
            "wrong scheme",
            "/v1/entities/x",
            vec![("authorization", "Token abc".into())],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
        (
            "bare token",
            "/v1/entities/x",
            vec![("authorization", good.clone())],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
        (
            "Bearer with nothing after",
            "/v1/entities/x",
            vec![("authorization", "Bearer".into())],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
        (
            "Bearer and a space",
            "/v1/entities/x",
            vec![("authorization", "Bearer ".into())],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
        (
            "two Authorization headers",
            "/v1/entities/x",
            vec![
                ("authorization", bearer(&good)),
                ("authorization", bearer(&good)),
            ],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
        (
            "expired",
            "/v1/entities/x",
            vec![("authorization", bearer(&expired))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "key not in JWKS (unknown kid)",
            "/v1/entities/x",
            vec![("authorization", bearer(&foreign_kid))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "key not in JWKS (same kid)",
            "/v1/entities/x",
            vec![("authorization", bearer(&foreign_same_kid))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "garbled",
            "/v1/entities/x",
            vec![("authorization", bearer(&garbled))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "truncated",
            "/v1/entities/x",
            vec![("authorization", bearer(&truncated))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "wrong audience",
            "/v1/entities/x",
            vec![("authorization", bearer(&wrong_aud))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "wrong issuer",
            "/v1/entities/x",
            vec![("authorization", bearer(&wrong_iss))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "alg none",
            "/v1/entities/x",
            vec![("authorization", bearer(&alg_none))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "HS256 with the RSA public key",
            "/v1/entities/x",
            vec![("authorization", bearer(&confused))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "HS256 wrong secret",
            "/v1/other",
            vec![("authorization", bearer(&hs_wrong))],
            401,
            Some(INVALID),
            WWW_INVALID,
        ),
        (
            "valid token, identity claim missing",
            "/v1/entities/x",
            vec![("authorization", bearer(&no_sub))],
            401,
            Some(NO_ACCOUNT),
            WWW_INVALID,
        ),
        (
            "valid token, missing permission",
            "/v1/entities/x",
            vec![("authorization", bearer(&token(json!({}))))],
            403,
            Some(NOT_ENOUGH),
            WWW_SCOPE,
        ),
        (
            "valid",
            "/v1/entities/x",
            vec![("authorization", bearer(&good))],
            200,
            None,
            None,
        ),
        (
            "scheme is case-insensitive",
            "/v1/entities/x",
            vec![("authorization", format!("bearer {good}"))],
            200,
            None,
            None,
        ),
        (
            "HS256 valid",
            "/v1/other",
            vec![("authorization", bearer(&hs_good))],
            200,
            None,
            None,
        ),
        ("GET /health is public", "/health", vec![], 200, None, None),
        (
            "GET /version is public",
            "/version",
            vec![],
            200,
            None,
            None,
        ),
        (
            "unmatched route needs a token",
            "/v1/other",
            vec![],
            401,
            Some(REQUIRES_AUTH),
            WWW_BEARER,
        ),
    ];
    for (case, path, headers, status, body, www) in rows {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = stack.envoy.get(path, &hs);
        expect(case, &r, status, body, www);
        if status == 200 {
            assert_eq!(r.json()["path"], path, "{case}: reached the upstream");
        }
    }
    // The upstream sees the verified identity.
    let r = stack.envoy.get_with_token("/v1/entities/x", &good);
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("user-1")
    );
    assert_eq!(
        r.upstream_header("x-auth-permissions").as_deref(),
        Some("entities:read")
    );
    let r = stack.envoy.get_with_token("/v1/other", &hs_good);
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("svc-1")
    );
    // Denials are logged at debug with their reason; nothing secret reaches the log.
    assert!(
        stack.envoy.log_contains("denied invalid_token"),
        "{}",
        stack.envoy.log()
    );
    let log = stack.envoy.log();
    for secret in [good.as_str(), hs_good.as_str(), SECRET] {
        assert!(!log.contains(secret), "the log contains a token or secret");
    }
}

#[test]
fn jwks_down_at_start_is_500_then_recovers() {
    let jwks = JwksServer::start(0, JwksMode::Down).expect("jwks");
    let upstream = echo(0).expect("echo");
    let mut o = Options::new(plugin(vec![]), upstream.port, jwks.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let envoy = Envoy::start(&o);
    let good = token(json!({}));
    let r = envoy.get(
        "/v1/x",
        &[
            ("authorization", &format!("Bearer {good}")),
            ("x-request-id", "req-500"),
        ],
    );
    expect(
        "no keys obtainable",
        &r,
        500,
        Some(r#"{"detail":"Authentication service is unavailable","request_id":"req-500"}"#),
        None,
    );
    // Public routes never need keys.
    assert_eq!(envoy.get("/health", &[]).status, 200);
    jwks.set(JwksMode::Serve(self::jwks(&[&keys().0])));
    let recovered = envoy.wait_until(Duration::from_secs(15), || {
        envoy.get_with_token("/v1/x", &good).status == 200
    });
    assert!(
        recovered,
        "did not recover after the JWKS server came up:\n{}",
        envoy.log()
    );
    assert!(jwks.hits() >= 1);
    assert!(envoy.log_contains("loaded keys [key-a]"));
}

#[test]
fn requests_wait_for_the_first_key_set() {
    let jwks = JwksServer::start(
        0,
        JwksMode::Slow(Duration::from_millis(1200), jwks(&[&keys().0])),
    )
    .expect("jwks");
    let stack = Stack::with_jwks(plugin(vec![]), jwks);
    // The first fetch is in flight (it takes 1.2 s); this request waits instead of failing.
    let r = stack.envoy.get_with_token("/v1/x", &token(json!({})));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn key_rotation_and_refetch_rate_limit() {
    let stack = Stack::start(plugin(vec![]));
    let (a, b) = (&keys().0, &keys().1);
    let ta = a.mint(&claims(ISS, AUD, "user-1", 600, json!({})));
    let tb = b.mint(&claims(ISS, AUD, "user-1", 600, json!({})));
    assert_eq!(stack.envoy.get_with_token("/v1/x", &ta).status, 200);
    // Rotate: the JWKS now has only key B. A token naming B triggers one refetch.
    stack.jwks.set(JwksMode::Serve(jwks(&[b])));
    std::thread::sleep(Duration::from_millis(2100)); // past refetch_min_interval_s
    let r = stack.envoy.get_with_token("/v1/x", &tb);
    assert_eq!(r.status, 200, "new kid accepted after refetch: {}", r.body);
    // Key A left the set: its tokens now fail (after at most one rate-limited refetch).
    let r = stack.envoy.get_with_token("/v1/x", &ta);
    expect("retired key", &r, 401, Some(INVALID), WWW_INVALID);
    // A burst of random kids cannot hammer the JWKS server.
    let before = stack.jwks.hits();
    for i in 0..30 {
        let t = b.mint_with_header(
            &json!({"alg": "RS256", "kid": format!("random-{i}")}),
            &claims(ISS, AUD, "u", 600, json!({})),
        );
        expect(
            "random kid",
            &stack.envoy.get_with_token("/v1/x", &t),
            401,
            Some(INVALID),
            WWW_INVALID,
        );
    }
    let extra = stack.jwks.hits() - before;
    assert!(extra <= 2, "30 unknown kids caused {extra} JWKS fetches");
}

#[test]
fn a_failed_refresh_keeps_the_last_good_keys() {
    let stack = Stack::start(plugin(vec![]));
    let t = token(json!({}));
    assert_eq!(stack.envoy.get_with_token("/v1/x", &t).status, 200);
    for mode in [JwksMode::Status(503), JwksMode::Garbage] {
        stack.jwks.set(mode);
        std::thread::sleep(Duration::from_millis(2100));
        // An unknown kid forces a refetch, which fails; the known key still works.
        let unknown = keys().1.mint(&claims(ISS, AUD, "u", 600, json!({})));
        expect(
            "unknown kid during outage",
            &stack.envoy.get_with_token("/v1/x", &unknown),
            401,
            Some(INVALID),
            WWW_INVALID,
        );
        assert_eq!(stack.envoy.get_with_token("/v1/x", &t).status, 200);
    }
    assert!(stack.envoy.log_contains("keeping previous keys"));
}

#[test]
fn bad_configuration_is_refused_naming_the_field() {
    let cases = vec![
        (json!({"providers": [], "rules": []}), "`providers`"),
        (
            json!({"providers": [{"name": "x", "algorithms": ["RS256"]}]}),
            "`providers[0].jwks`",
        ),
        (
            json!({"providers": [{"name": "x", "algorithms": ["HS256"], "secret": {"env": "NOT_SET"}}]}),
            "`providers[0].secret.env`",
        ),
        (
            json!({"providers": [{"name": "x", "algorithms": ["HS256"], "secret": {"env": "SDK_TOKEN_SECRET"}}], "bogus": 1}),
            "`bogus`",
        ),
    ];
    for (config, field) in cases {
        let mut o = Options::new(config, free_port(), free_port());
        o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
        match Envoy::try_start(&o) {
            Ok(envoy) => panic!(
                "Envoy accepted a bad configuration ({field}):\n{}",
                envoy.log()
            ),
            Err(log) => {
                assert!(log.contains(field), "log does not name {field}:\n{log}");
                assert!(!log.contains(SECRET));
            }
        }
    }
}

#[test]
fn the_pure_rust_backend_end_to_end() {
    let mut p = plugin(vec![]);
    p["verifier"] = json!("rust");
    let stack = Stack::start(p);
    assert!(
        stack.envoy.log_contains("RSA backend rust"),
        "{}",
        stack.envoy.log()
    );
    let good = token(json!({}));
    assert_eq!(stack.envoy.get_with_token("/v1/x", &good).status, 200);
    let (head, _) = good.rsplit_once('.').expect("jws");
    let forged = keys().1.mint(&claims(ISS, AUD, "user-1", 600, json!({})));
    let forged = format!(
        "{head}.{}",
        forged.rsplit_once('.').map(|(_, s)| s).unwrap_or("")
    );
    expect(
        "forged, pure Rust",
        &stack.envoy.get_with_token("/v1/x", &forged),
        401,
        Some(INVALID),
        WWW_INVALID,
    );
    let expired = keys().0.mint(&claims(ISS, AUD, "user-1", -600, json!({})));
    expect(
        "expired, pure Rust",
        &stack.envoy.get_with_token("/v1/x", &expired),
        401,
        Some(INVALID),
        WWW_INVALID,
    );
}

#[test]
fn the_envoy_backend_is_chosen_when_the_host_has_it() {
    let stack = Stack::start(plugin(vec![]));
    // Natively, "auto" is aws-lc: native crypto in the module itself.
    let expected = if native() {
        "RSA backend aws-lc"
    } else {
        "RSA backend envoy"
    };
    assert!(stack.envoy.log_contains(expected), "{}", stack.envoy.log());
}
