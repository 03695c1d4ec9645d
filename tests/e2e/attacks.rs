//! The attack suite end to end in the real Envoy: every row names the reply a hostile
//! token or request must get. Parser-level variants (duplicate keys, non-canonical
//! base64, NumericDate types, nesting) are also covered natively in `src/`.

use crate::common::*;
use base64::Engine;
use serde_json::json;
use std::time::Duration;

fn b64s(s: &str) -> String {
    b64(s)
}

#[test]
fn attacks_get_the_contract_reply() {
    let (a, other) = (&keys().0, &keys().1);
    // The attacker's server is reachable from Envoy: it is the (otherwise unused)
    // `accounts` cluster, so a filter that followed a URL could reach it.
    let attacker = JwksServer::start(0, JwksMode::Serve(jwks(&[other]))).expect("attacker server");
    let attacker_port = attacker.server.port;
    let legit = JwksServer::start(0, JwksMode::Serve(jwks(&[a]))).expect("jwks server");
    let stack = Stack::with_options(
        plugin(vec![
            json!({"match": {"prefix": "/v1/"}, "permissions": ["entities:read"]}),
        ]),
        legit,
        |o| o.accounts_port = attacker_port,
    );
    let body = || claims_with(json!({"permissions": ["entities:read"]}));
    let payload = b64s(&body().to_string());
    let good = a.mint(&body());
    let (good_head, good_sig) = good.rsplit_once('.').expect("jws");
    let other_sig = other
        .mint(&body())
        .rsplit_once('.')
        .map(|(_, s)| s.to_string())
        .unwrap_or_default();
    let unsigned = |header: &str| format!("{}.{payload}.", b64s(header));
    let with_header = |header: serde_json::Value| a.mint_with_header(&header, &body());
    // An attacker's own key, offered inline or by URL, must never be used: the URLs point
    // at a real server on loopback that serves the attacker's key set and certificate
    // material, and counts every request it gets.
    let evil_jwk = other.jwk();
    let jku = format!("http://127.0.0.1:{attacker_port}/attacker/jwks");
    let x5u = format!("http://127.0.0.1:{attacker_port}/attacker/cert");
    let x5c = base64::engine::general_purpose::STANDARD.encode(other.public_der());
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","exp":{},"x":{nested}}}"#,
        now() + 600
    );
    let huge_claim = token_with(json!({"permissions": ["entities:read"], "pad": "x".repeat(9000)}));

    let rows: Vec<(&str, String, u16, &str)> = vec![
        ("valid (control)", good.clone(), 200, ""),
        ("alg none", unsigned(r#"{"alg":"none"}"#), 401, INVALID),
        ("alg None", unsigned(r#"{"alg":"None"}"#), 401, INVALID),
        ("alg NONE", unsigned(r#"{"alg":"NONE"}"#), 401, INVALID),
        ("alg nOnE with a signature", format!("{}.{payload}.{good_sig}", b64s(r#"{"alg":"nOnE","kid":"key-a"}"#)), 401, INVALID),
        ("alg rs256 (wrong case)", format!("{}.{payload}.{good_sig}", b64s(r#"{"alg":"rs256","kid":"key-a"}"#)), 401, INVALID),
        ("HS256 signed with the RSA public key", mint_hs256(&a.public_der(), &body()), 401, INVALID),
        ("HS256 signed with the RSA public key, kid set", mint_hs256_with_header(&a.public_der(), &json!({"alg": "HS256", "kid": "key-a"}), &body()), 401, INVALID),
        ("empty signature", format!("{good_head}."), 401, INVALID),
        ("truncated signature", format!("{good_head}.{}", &good_sig[..good_sig.len() / 2]), 401, INVALID),
        ("signature from another key", format!("{good_head}.{other_sig}"), 401, INVALID),
        ("signature of another payload", format!("{}.{}.{good_sig}", good_head.split('.').next().unwrap_or(""), b64s(&claims_for("admin", json!({"permissions": ["entities:read"]})).to_string())), 401, INVALID),
        ("kid path traversal", with_header(json!({"alg": "RS256", "kid": "../../../../etc/passwd"})), 401, INVALID),
        ("kid with NUL", with_header(json!({"alg": "RS256", "kid": "key-a\u{0}"})), 401, INVALID),
        ("kid as a number", with_header(json!({"alg": "RS256", "kid": 1})), 401, INVALID),
        ("jwk header with the attacker's key", other.mint_with_header(&json!({"alg": "RS256", "jwk": evil_jwk}), &body()), 401, INVALID),
        ("jku header to the attacker's JWKS", other.mint_with_header(&json!({"alg": "RS256", "kid": "key-b", "jku": jku}), &body()), 401, INVALID),
        ("jku without kid", other.mint_with_header(&json!({"alg": "RS256", "jku": jku}), &body()), 401, INVALID),
        ("x5u header", other.mint_with_header(&json!({"alg": "RS256", "x5u": x5u}), &body()), 401, INVALID),
        ("x5c header with the attacker's key", other.mint_with_header(&json!({"alg": "RS256", "x5c": [x5c]}), &body()), 401, INVALID),
        ("ignored jku on a good token is harmless", with_header(json!({"alg": "RS256", "kid": "key-a", "jku": jku})), 200, ""),
        ("crit with an unknown extension", with_header(json!({"alg": "RS256", "kid": "key-a", "crit": ["exp"], "exp": 1})), 401, INVALID),
        ("duplicate alg in the header", format!("{}.{payload}.{good_sig}", b64s(r#"{"alg":"RS256","alg":"none","kid":"key-a"}"#)), 401, INVALID),
        ("duplicate sub in the payload", a.mint_with_header(&json!({"alg": "RS256", "kid": "key-a"}), &json!({})).replace(
            &b64s("{}"), &b64s(&format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u","sub":"admin","exp":{}}}"#, now() + 600))), 401, INVALID),
        ("padding in the payload", format!("{}.{payload}==.{good_sig}", good_head.split('.').next().unwrap_or("")), 401, INVALID),
        ("exp as a string", a.mint(&json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": (now() + 600).to_string()})), 401, INVALID),
        ("exp negative", a.mint(&json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": -1})), 401, INVALID),
        ("exp missing", a.mint(&json!({"iss": ISS, "aud": AUD, "sub": "u"})), 401, INVALID),
        ("nbf in the future", not_yet_valid_token(), 401, INVALID),
        ("nbf as a string", token_with(json!({"nbf": "0", "permissions": ["entities:read"]})), 401, INVALID),
        ("exp as a float is a NumericDate", a.mint(&json!({"iss": ISS, "aud": AUD, "sub": "u", "exp": (now() + 600) as f64 + 0.25, "permissions": ["entities:read"]})), 200, ""),
        ("aud as an array", a.mint(&json!({"iss": ISS, "aud": ["x", AUD], "sub": "u", "exp": now() + 600, "permissions": ["entities:read"]})), 200, ""),
        ("aud not ours", a.mint(&json!({"iss": ISS, "aud": ["x"], "sub": "u", "exp": now() + 600})), 401, INVALID),
        ("deeply nested claim", a.mint_with_header(&json!({"alg": "RS256", "kid": "key-a"}), &json!({})).replace(&b64s("{}"), &b64s(&deep)), 401, INVALID),
        ("oversized token (over 8 KiB)", huge_claim, 401, INVALID),
        ("four segments", format!("{good}.x"), 401, INVALID),
        ("not base64", "!!!.???.***".to_string(), 401, INVALID),
    ];
    for (case, token, status, body) in rows {
        let r = stack.envoy.get(
            "/v1/entities/x",
            &[("authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(r.status, status, "{case}: {}", r.body);
        if !body.is_empty() {
            assert_eq!(r.body, body, "{case}");
            assert_eq!(r.header("www-authenticate"), WWW_INVALID, "{case}");
        }
    }
    assert_eq!(attacker.hits(), 0, "the filter fetched a URL a token named");
    assert!(
        stack.jwks.paths().iter().all(|p| p == "/jwks"),
        "the JWKS cluster was asked for another path: {:?}",
        stack.jwks.paths()
    );
    // Nothing above reached the log as a token, and the VM is still healthy.
    assert_eq!(
        stack.envoy.get_with_token("/v1/entities/x", &good).status,
        200
    );
    let log = stack.envoy.log();
    assert!(!log.contains(good_sig), "a signature reached the log");
    assert!(!log.contains("panicked"), "the VM panicked:\n{log}");
}

#[test]
fn unknown_kids_in_bulk_cost_at_most_one_fetch_per_interval() {
    let stack = Stack::start(plugin(vec![]));
    let other = &keys().1;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = stack.jwks.hits();
    let start = std::time::Instant::now();
    for i in 0..200 {
        let t = other.mint_with_header(
            &json!({"alg": "RS256", "kid": format!("bulk-{i}")}),
            &good_claims(),
        );
        assert_eq!(stack.envoy.get_with_token("/v1/x", &t).status, 401);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fetches = stack.jwks.hits() - before;
    // refetch_min_interval_s is 2 in the test configuration.
    let allowed = (elapsed / 2.0).ceil() as usize + 1;
    assert!(
        fetches <= allowed,
        "{fetches} JWKS fetches for 200 unknown kids in {elapsed:.1}s (allowed {allowed})"
    );
}

#[test]
fn header_values_that_are_not_utf8_get_the_contract_reply() {
    // HTTP allows obs-text (bytes 0x80-0xFF) in header values and Envoy passes them on. The
    // module must answer such requests like any other, and keep answering.
    let stack = Stack::start(plugin(vec![
        json!({"match": {"prefix": "/v1/"}, "permissions": ["entities:read"]}),
        json!({"match": {"prefix": "/health"}, "public": true}),
    ]));
    let good = token_with(json!({"permissions": ["entities:read"]}));
    let raw = |path: &str, auth: &[u8]| {
        let mut req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nx-note: caf").into_bytes();
        req.extend_from_slice(b"\xe9 \xff\r\n");
        req.extend_from_slice(auth);
        req.extend_from_slice(b"connection: close\r\ncontent-length: 0\r\n\r\n");
        http_raw(stack.envoy.port, &req).expect("reply")
    };
    let bearer = format!("authorization: Bearer {good}\r\n");
    let rows: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("public route", "/health", vec![], 200, ""),
        (
            "valid token",
            "/v1/entities/x",
            bearer.into_bytes(),
            200,
            "",
        ),
        ("no token", "/v1/entities/x", vec![], 401, REQUIRES_AUTH),
        (
            "token with a non-UTF-8 byte",
            "/v1/entities/x",
            [
                b"authorization: Bearer \xff".as_slice(),
                good.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            401,
            INVALID,
        ),
    ];
    for (case, path, auth, status, body) in rows {
        let r = raw(path, &auth);
        assert_eq!(r.status, status, "{case}: {}", r.body);
        if !body.is_empty() {
            assert_eq!(r.body, body, "{case}");
        }
    }
    assert_eq!(
        stack.envoy.get_with_token("/v1/entities/x", &good).status,
        200
    );
    assert!(!stack.envoy.log().contains("panicked"), "the VM panicked");
}

/// A request body that arrives while the decision waits (here: an unknown `kid` makes the
/// request wait for a JWKS refetch) must not carry the request upstream: Envoy resumes a
/// stopped request when a filter lets its body through.
#[test]
fn a_body_sent_while_the_decision_waits_never_reaches_the_upstream() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let upstream = HttpServer::start(
        0,
        Arc::new(move |_: &crate::support::servers::Seen| {
            counted.fetch_add(1, Ordering::SeqCst);
            (200, vec![], b"upstream".to_vec())
        }),
    )
    .expect("upstream");
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let config = plugin(vec![
        json!({"match": {"prefix": "/v1/"}, "permissions": ["orders:write"]}),
    ]);
    let mut o = Options::new(config, upstream.port, jwks_server.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let envoy = Envoy::start(&o);
    // Signed by key B, which the JWKS does not hold: the request waits for a refetch.
    let forged = keys()
        .1
        .mint(&claims_with(json!({"permissions": ["orders:write"]})));
    let auth = format!("Bearer {forged}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    for gap in [Duration::ZERO, Duration::from_millis(30)] {
        let r = envoy.request_with_body(
            "POST",
            "/v1/orders",
            &headers,
            &[b"{\"amount\":", b"100}"],
            gap,
        );
        assert_eq!(r.status, 401, "gap {gap:?}: {}", r.body);
        assert_eq!(r.body, r#"{"detail":"Invalid or expired token"}"#);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the upstream saw a request");
    assert!(
        envoy.log_contains("waits for keys"),
        "the request never waited"
    );
    // A valid token's request, body and all, still reaches it.
    let good = token_with(json!({"permissions": ["orders:write"]}));
    let auth = format!("Bearer {good}");
    let r = envoy.request_with_body(
        "POST",
        "/v1/orders",
        &[("authorization", auth.as_str())],
        &[b"{}"],
        Duration::ZERO,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
