//! End to end in the real Envoy: required claims, account resolution over a dispatched
//! call (cache, de-duplication, failures), identity forwarding and header stripping.

use crate::common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An account service: `user=` decides the answer; every call is counted.
fn account_service(calls: Arc<AtomicUsize>) -> HttpServer {
    HttpServer::start(0, Arc::new(move |seen: &crate::support::servers::Seen| {
            calls.fetch_add(1, Ordering::SeqCst);
            let user = seen.url.split("user=").nth(1).and_then(|s| s.split('&').next()).unwrap_or("");
            let json = |status: u16, v: Value| (status, vec![("content-type".to_string(), "application/json".to_string())], v.to_string().into_bytes());
            match user {
                "user-1" | "user-2" => json(200, json!({"account_id": format!("acct-{user}"), "entity_id": "ent-1", "plan": {"tier": "gold"}})),
                "user-slow" => {
                    std::thread::sleep(Duration::from_millis(400));
                    json(200, json!({"account_id": "acct-slow", "entity_id": "ent-2"}))
                }
                "user-boom" => json(503, json!({"error": "down"})),
                "user-garbage" => (200, vec![], b"<html>".to_vec()),
                "user-evil" => json(200, json!({"account_id": "a\r\nx-admin: true", "entity_id": "e"})),
                _ => json(404, json!({"detail": "no such account"})),
            }
        }),
    )
    .expect("account service")
}

fn plugin_with_accounts() -> Value {
    let mut p = plugin(vec![
        json!({"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
    ]);
    p["providers"][0]["identity"] = json!({"required_claims": ["sub", "org_id"]});
    p["providers"][0]["account"] = json!({
        "cluster": "accounts", "authority": "accounts.test",
        "path": "/accounts/resolve?user={sub}&org={org_id}",
        "headers": {"x-account-id": "account_id", "x-entity-id": "entity_id", "x-account-plan": "plan"},
        "ttl_s": 300, "negative_ttl_s": 30, "timeout_ms": 1000
    });
    p["forward"] = json!({
        "headers": {"x-auth-subject": "sub", "x-auth-org": "org_id", "x-auth-name": "name", "x-auth-permissions": "permissions"},
        "payload_header": "x-auth-payload",
        "strip_authorization": true
    });
    p
}

struct IdentityStack {
    calls: Arc<AtomicUsize>,
    accounts: HttpServer,
    _jwks: JwksServer,
    _upstream: HttpServer,
    envoy: Envoy,
}

fn start() -> IdentityStack {
    let calls = Arc::new(AtomicUsize::new(0));
    let accounts = account_service(calls.clone());
    let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let upstream = echo(0).expect("echo");
    let mut o = Options::new(plugin_with_accounts(), upstream.port, jwks.server.port);
    o.accounts_port = accounts.port;
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let envoy = Envoy::start(&o);
    IdentityStack {
        calls,
        accounts,
        _jwks: jwks,
        _upstream: upstream,
        envoy,
    }
}

fn tok(sub: &str, extra: Value) -> String {
    let mut c = json!({"org_id": "org-1", "permissions": ["entities:read"]});
    if let (Some(o), Value::Object(add)) = (c.as_object_mut(), extra) {
        o.extend(add);
    }
    token_for(sub, c)
}

#[test]
fn account_resolution_and_forwarding() {
    let s = start();
    let t1 = tok("user-1", json!({"name": "Ada"}));
    let r = s.envoy.get_with_token("/v1/entities/x", &t1);
    assert_eq!(r.status, 200, "{}", r.body);
    let up = |h: &str| r.upstream_header(h);
    assert_eq!(up("x-account-id").as_deref(), Some("acct-user-1"));
    assert_eq!(up("x-entity-id").as_deref(), Some("ent-1"));
    assert_eq!(up("x-account-plan").as_deref(), Some(r#"{"tier":"gold"}"#));
    assert_eq!(up("x-auth-subject").as_deref(), Some("user-1"));
    assert_eq!(up("x-auth-org").as_deref(), Some("org-1"));
    assert_eq!(up("x-auth-name").as_deref(), Some("Ada"));
    assert_eq!(up("x-auth-permissions").as_deref(), Some("entities:read"));
    assert_eq!(
        up("x-auth-payload").as_deref(),
        t1.split('.').nth(1),
        "payload header is the verified payload"
    );
    assert_eq!(
        up("authorization"),
        None,
        "Authorization stripped before the upstream"
    );

    // Cached: repeated requests for the same identity cost one call; a cached token
    // forwards the same identity headers and payload as a fresh one.
    for _ in 0..5 {
        let again = s.envoy.get_with_token("/v1/entities/x", &t1);
        assert_eq!(again.status, 200);
        for h in ["x-auth-subject", "x-account-id", "x-auth-payload"] {
            assert_eq!(again.upstream_header(h), up(h), "{h} on a cached token");
        }
    }
    assert_eq!(
        s.calls.load(Ordering::SeqCst),
        1,
        "one account call for six requests"
    );

    // Unknown account: 401, and the negative answer is cached too.
    let unknown = tok("user-unknown", json!({}));
    for _ in 0..3 {
        expect(
            "unknown account",
            &s.envoy.get_with_token("/v1/entities/x", &unknown),
            401,
            Some(NO_ACCOUNT),
            WWW_INVALID,
        );
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), 2);

    // The account service failing is a 500 with the request id, never an accept; not cached.
    for user in ["user-boom", "user-garbage"] {
        let t = tok(user, json!({}));
        for _ in 0..2 {
            let r = s.envoy.get(
                "/v1/entities/x",
                &[
                    ("authorization", &format!("Bearer {t}")),
                    ("x-request-id", "rid-acct"),
                ],
            );
            expect(
                user,
                &r,
                500,
                Some(
                    r#"{"detail":"Authentication service is unavailable","request_id":"rid-acct"}"#,
                ),
                None,
            );
        }
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), 6, "failures are not cached");

    // Identity claim missing: 401 before any account call.
    let no_org = token_with(json!({"permissions": ["entities:read"]}));
    expect(
        "missing org_id",
        &s.envoy.get_with_token("/v1/entities/x", &no_org),
        401,
        Some(NO_ACCOUNT),
        WWW_INVALID,
    );
    // Control characters in a forwarded claim or account field: denied, never forwarded.
    let crlf = tok("user-2", json!({"name": "Ada\r\nx-admin: true"}));
    expect(
        "CR/LF in a claim",
        &s.envoy.get_with_token("/v1/entities/x", &crlf),
        401,
        Some(NO_ACCOUNT),
        WWW_INVALID,
    );
    let evil = tok("user-evil", json!({}));
    expect(
        "CR/LF in an account field",
        &s.envoy.get_with_token("/v1/entities/x", &evil),
        401,
        Some(NO_ACCOUNT),
        WWW_INVALID,
    );
    assert_eq!(s.calls.load(Ordering::SeqCst), 8);
    assert!(s
        .envoy
        .log_contains("account lookup on cluster accounts failed: status 503"));
}

#[test]
fn concurrent_requests_share_one_account_call() {
    let s = start();
    let t = tok("user-slow", json!({}));
    let port = s.envoy.port;
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                http(
                    port,
                    "GET",
                    "/v1/entities/x",
                    &[("authorization", &format!("Bearer {t}"))],
                )
                .map(|r| r.status)
            })
        })
        .collect();
    for th in threads {
        assert_eq!(th.join().expect("thread").expect("request"), 200);
    }
    assert_eq!(
        s.calls.load(Ordering::SeqCst),
        1,
        "six concurrent requests, one account call"
    );
}

#[test]
fn account_service_down_is_500() {
    let mut s = start();
    s.accounts.stop();
    let t = tok("user-1", json!({}));
    let r = s.envoy.get(
        "/v1/entities/x",
        &[
            ("authorization", &format!("Bearer {t}")),
            ("x-request-id", "rid-down"),
        ],
    );
    expect(
        "account service down",
        &r,
        500,
        Some(r#"{"detail":"Authentication service is unavailable","request_id":"rid-down"}"#),
        None,
    );
}

#[test]
fn spoofed_identity_headers_are_stripped_everywhere() {
    let s = start();
    let spoof: Vec<(&str, &str)> = vec![
        ("x-auth-subject", "admin"),
        ("x-auth-org", "org-evil"),
        ("x-account-id", "acct-evil"),
        ("x-entity-id", "ent-evil"),
        ("x-auth-payload", "e30"),
        ("x-auth-permissions", "*"),
    ];
    // Public route: every copy removed, nothing set.
    let r = s.envoy.get("/health", &spoof);
    assert_eq!(r.status, 200);
    for (h, _) in &spoof {
        assert_eq!(
            r.upstream_header(h),
            None,
            "public route: {h} reached the upstream"
        );
    }
    // Protected route: the verified values, not the client's.
    let t = tok("user-1", json!({}));
    let auth = format!("Bearer {t}");
    let mut headers = spoof.clone();
    headers.push(("authorization", &auth));
    let r = s.envoy.get("/v1/entities/x", &headers);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("user-1")
    );
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("org-1"));
    assert_eq!(
        r.upstream_header("x-account-id").as_deref(),
        Some("acct-user-1")
    );
    assert_eq!(
        r.upstream_header("x-auth-permissions").as_deref(),
        Some("entities:read")
    );
    // A claim that renders empty: the client's copy is removed and none is set (the same
    // on both hosts).
    let t = tok("user-1", json!({"name": ""}));
    let auth = format!("Bearer {t}");
    let mut headers = spoof.clone();
    headers.push(("x-auth-name", "Mallory"));
    headers.push(("authorization", &auth));
    let r = s.envoy.get("/v1/entities/x", &headers);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-auth-name"), None, "empty name");
    // Even a denied request never carries them (it never reaches the upstream at all).
    let r = s.envoy.get("/v1/entities/x", &spoof);
    assert_eq!(r.status, 401);
}

/// `explain` gives Envoy's answer where the account service and a cookie credential
/// decide: an account found, an account the service does not know, no credential, a
/// token in the cookie a provider reads, a public route — the same status and body.
#[test]
fn explain_gives_envoy_s_answer_for_accounts_and_cookies() {
    let mut config = plugin_with_accounts();
    let web = json!({"name": "web", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
        "jwks": {"cluster": "jwks", "authority": "idp.test", "path": "/jwks"},
        "token": {"cookie": "session"}});
    config["providers"]
        .as_array_mut()
        .expect("providers")
        .push(web);
    config["rules"]
        .as_array_mut()
        .expect("rules")
        .push(json!({"name": "web", "match": {"prefix": "/v1/web/"}, "providers": ["web"]}));
    let calls = Arc::new(AtomicUsize::new(0));
    let accounts = account_service(calls);
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let upstream = echo(0).expect("echo");
    let mut o = Options::new(config.clone(), upstream.port, jwks_server.server.port);
    o.accounts_port = accounts.port;
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let envoy = Envoy::start(&o);
    let dir = std::env::temp_dir().join(format!("bg-explain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config_file = dir.join("config.json");
    std::fs::write(&config_file, config.to_string()).expect("config");
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&keys().0])).expect("jwks");
    let known = tok("user-1", json!({}));
    let unknown = tok("user-nobody", json!({}));
    let cookie_token = token_for("user-web", json!({}));
    /// A request to Envoy, and what `explain` is told about it.
    struct Row<'a> {
        case: &'a str,
        path: &'a str,
        /// The token in Envoy's `Authorization: Bearer` header.
        bearer: Option<&'a str>,
        /// The token in Envoy's `session` cookie.
        cookie: Option<&'a str>,
        /// `explain --token`.
        token_arg: Option<&'a str>,
        /// `explain --account`: the account service's answer.
        account: &'a str,
    }
    let rows = vec![
        Row {
            case: "account found",
            path: "/v1/entities/x",
            bearer: Some(&known),
            cookie: None,
            token_arg: Some(&known),
            account: r#"{"account_id":"acct-user-1"}"#,
        },
        Row {
            case: "account not found",
            path: "/v1/entities/x",
            bearer: Some(&unknown),
            cookie: None,
            token_arg: Some(&unknown),
            account: "none",
        },
        Row {
            case: "no credential",
            path: "/v1/entities/x",
            bearer: None,
            cookie: None,
            token_arg: None,
            account: "{}",
        },
        Row {
            case: "cookie token",
            path: "/v1/web/x",
            bearer: None,
            cookie: Some(&cookie_token),
            token_arg: Some(&cookie_token),
            account: "{}",
        },
        Row {
            case: "no cookie",
            path: "/v1/web/x",
            bearer: Some(&cookie_token),
            cookie: None,
            token_arg: None,
            account: "{}",
        },
        Row {
            case: "public",
            path: "/health",
            bearer: None,
            cookie: None,
            token_arg: None,
            account: "{}",
        },
    ];
    for row in rows {
        let Row {
            case,
            path,
            bearer,
            cookie,
            token_arg,
            account,
        } = row;
        let mut headers: Vec<(&str, String)> = vec![("x-request-id", format!("rid-{case}"))];
        if let Some(t) = bearer {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        if let Some(c) = cookie {
            headers.push(("cookie", format!("session={c}")));
        }
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = envoy.request("GET", path, &hs);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_bearer-guard"));
        cmd.env("SDK_TOKEN_SECRET", SECRET)
            .args(["explain", "--json", "--config"])
            .arg(&config_file)
            .args(["--request-id", &format!("rid-{case}"), "--account", account]);
        // Keys only where a token is verified: explain needs none otherwise.
        if let Some(t) = token_arg {
            cmd.arg("--jwks").arg(&jwks_file).args(["--token", t]);
        } else if let Some(t) = bearer {
            cmd.args(["-H", &format!("authorization: Bearer {t}")]);
        }
        let out = cmd.args(["GET", path]).output().expect("explain");
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            e["status"].as_u64(),
            Some(u64::from(r.status)),
            "{case}: {e}"
        );
        if r.status != 200 {
            assert_eq!(e["body"].as_str(), Some(r.body.as_str()), "{case}");
        }
        if case == "account not found" {
            assert_eq!(e["identity"][1]["step"], "account", "{e}");
            assert_eq!(e["identity"][1]["ok"], false, "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
