//! End to end in the real Envoy: the reply table, providers, key lifecycle, configuration.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

/// One row of the reply table: a request and the reply it gets.
struct Row {
    case: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    status: u16,
    /// The exact JSON body of a local reply (`None`: the upstream answered).
    body: Option<&'static str>,
    www_authenticate: Option<&'static str>,
}

#[test]
fn reply_table_rows_in_envoy() {
    let stack = Stack::start(plugin(vec![
        json!({"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
    ]));
    let (a, other) = (&keys().0, &keys().1);
    let good = token_with(json!({"permissions": ["entities:read"]}));
    // Signed by a key this environment's JWKS does not have, naming key A's kid.
    let foreign_same_kid =
        other.mint_with_header(&json!({"alg": "RS256", "kid": "key-a"}), &good_claims());
    let truncated = good[..good.len() - 10].to_string();
    let garbled = good.replacen('.', "#", 1);
    let no_sub = a.mint(&json!({"iss": ISS, "aud": AUD, "exp": now() + 600}));
    let hs_good = mint_hs256(
        SECRET.as_bytes(),
        &json!({"sub": "svc-1", "exp": now() + 600}),
    );
    let hs_wrong = mint_hs256(
        b"some-other-secret-some-other-secret!!",
        &json!({"sub": "svc-1", "exp": now() + 600}),
    );
    // Algorithm confusion: HS256 "signed" with the RSA provider's public key as the secret.
    let confused = mint_hs256(&a.public_der(), &good_claims());
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none"}"#),
        b64(good_claims().to_string())
    );
    let bearer = |t: &str| format!("Bearer {t}");

    let rows = vec![
        Row {
            case: "no Authorization header",
            path: "/v1/entities/x",
            headers: vec![],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
        Row {
            case: "wrong scheme",
            path: "/v1/entities/x",
            headers: vec![("authorization", "Token abc".into())],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
        Row {
            case: "bare token",
            path: "/v1/entities/x",
            headers: vec![("authorization", good.clone())],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
        Row {
            case: "Bearer with nothing after",
            path: "/v1/entities/x",
            headers: vec![("authorization", "Bearer".into())],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
        Row {
            case: "Bearer and a space",
            path: "/v1/entities/x",
            headers: vec![("authorization", "Bearer ".into())],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
        Row {
            case: "two Authorization headers",
            path: "/v1/entities/x",
            headers: vec![
                ("authorization", bearer(&good)),
                ("authorization", bearer(&good)),
            ],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
        Row {
            case: "expired",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&expired_token()))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "key not in JWKS (unknown kid)",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&unknown_kid_token()))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "key not in JWKS (same kid)",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&foreign_same_kid))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "garbled",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&garbled))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "truncated",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&truncated))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "wrong audience",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&wrong_audience_token()))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "wrong issuer",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&wrong_issuer_token()))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "alg none",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&alg_none))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "HS256 with the RSA public key",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&confused))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "HS256 wrong secret",
            path: "/v1/other",
            headers: vec![("authorization", bearer(&hs_wrong))],
            status: 401,
            body: Some(INVALID),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "valid token, identity claim missing",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&no_sub))],
            status: 401,
            body: Some(NO_ACCOUNT),
            www_authenticate: WWW_INVALID,
        },
        Row {
            case: "valid token, missing permission",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&good_token()))],
            status: 403,
            body: Some(NOT_ENOUGH),
            www_authenticate: WWW_SCOPE,
        },
        Row {
            case: "valid",
            path: "/v1/entities/x",
            headers: vec![("authorization", bearer(&good))],
            status: 200,
            body: None,
            www_authenticate: None,
        },
        Row {
            case: "scheme is case-insensitive",
            path: "/v1/entities/x",
            headers: vec![("authorization", format!("bearer {good}"))],
            status: 200,
            body: None,
            www_authenticate: None,
        },
        Row {
            case: "HS256 valid",
            path: "/v1/other",
            headers: vec![("authorization", bearer(&hs_good))],
            status: 200,
            body: None,
            www_authenticate: None,
        },
        Row {
            case: "GET /health is public",
            path: "/health",
            headers: vec![],
            status: 200,
            body: None,
            www_authenticate: None,
        },
        Row {
            case: "GET /version is public",
            path: "/version",
            headers: vec![],
            status: 200,
            body: None,
            www_authenticate: None,
        },
        Row {
            case: "unmatched route needs a token",
            path: "/v1/other",
            headers: vec![],
            status: 401,
            body: Some(REQUIRES_AUTH),
            www_authenticate: WWW_BEARER,
        },
    ];
    for row in rows {
        let case = row.case;
        let hs: Vec<(&str, &str)> = row.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = stack.envoy.get(row.path, &hs);
        expect(case, &r, row.status, row.body, row.www_authenticate);
        if row.status == 200 {
            assert_eq!(r.json()["path"], row.path, "{case}: reached the upstream");
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
    let good = good_token();
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
    let r = stack.envoy.get_with_token("/v1/x", &good_token());
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn key_rotation_and_refetch_rate_limit() {
    let stack = Stack::start(plugin(vec![]));
    let (a, b) = (&keys().0, &keys().1);
    let ta = a.mint(&good_claims());
    let tb = b.mint(&good_claims());
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
            &good_claims(),
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
    let t = good_token();
    assert_eq!(stack.envoy.get_with_token("/v1/x", &t).status, 200);
    for mode in [JwksMode::Status(503), JwksMode::Garbage] {
        stack.jwks.set(mode);
        std::thread::sleep(Duration::from_millis(2100));
        // An unknown kid forces a refetch, which fails; the known key still works.
        let unknown = unknown_kid_token();
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
    let good = good_token();
    assert_eq!(stack.envoy.get_with_token("/v1/x", &good).status, 200);
    let (head, _) = good.rsplit_once('.').expect("jws");
    let forged = keys().1.mint(&good_claims());
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
    let expired = expired_token();
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
