//! End to end in the real Envoy: safe rollout and debugging — audit mode (global and per
//! rule), optional authentication, the decision fields in Envoy's access log, and the
//! `bearer-guard` command (`validate`, `explain`) giving the answers Envoy gives.

use crate::common::*;
use crate::support::envoy::ACCESS_LOG_FORMAT;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const NET: &str = "2f6f6a3e-9d6b-4a4e-8a6f-3a1d1f2b9c10";
const OTHER_NET: &str = "9b1d2c3e-0000-4000-8000-000000000000";

fn rules() -> Vec<Value> {
    vec![
        json!({"name": "entities", "match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
        json!({"name": "consent", "match": {"methods": ["POST"], "prefix": "/v1/consent/"},
               "permissions": ["consent:write"], "member_of": {"query": "network_id", "claim": "networks"}}),
        json!({"name": "items", "match": {"prefix": "/v1/items"}, "headers": {"X-Index": "uuid"}}),
        json!({"name": "catalog", "match": {"prefix": "/v1/catalog/"}, "authentication": "optional",
               "permissions": ["catalog:read"]}),
    ]
}

/// One request of the shared table and the status enforce mode answers it with.
struct Row {
    case: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    enforced: u16,
}

fn table() -> Vec<Row> {
    let t = |extra: Value| format!("Bearer {}", token_with(extra));
    let writer = t(json!({"permissions": ["consent:write"], "networks": [NET]}));
    vec![
        Row {
            case: "no token",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![],
            enforced: 401,
        },
        Row {
            case: "garbled token",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![("authorization", "Bearer a.b.c".into())],
            enforced: 401,
        },
        Row {
            case: "missing permission",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![("authorization", t(json!({})))],
            enforced: 403,
        },
        Row {
            case: "granted",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![(
                "authorization",
                t(json!({"permissions": ["entities:read"]})),
            )],
            enforced: 200,
        },
        Row {
            case: "other network",
            method: "POST",
            path: format!("/v1/consent/c?network_id={OTHER_NET}"),
            headers: vec![("authorization", writer.clone())],
            enforced: 403,
        },
        Row {
            case: "own network",
            method: "POST",
            path: format!("/v1/consent/c?network_id={NET}"),
            headers: vec![("authorization", writer)],
            enforced: 200,
        },
        Row {
            case: "header precondition",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![("authorization", t(json!({})))],
            enforced: 400,
        },
        Row {
            case: "optional, no credential",
            method: "GET",
            path: "/v1/catalog/x".into(),
            headers: vec![],
            enforced: 200,
        },
        Row {
            case: "optional, invalid credential",
            method: "GET",
            path: "/v1/catalog/x".into(),
            headers: vec![("authorization", "Bearer a.b.c".into())],
            enforced: 401,
        },
        Row {
            case: "optional, not a bearer credential",
            method: "GET",
            path: "/v1/catalog/x".into(),
            headers: vec![("authorization", "Basic dTpw".into())],
            enforced: 401,
        },
        Row {
            case: "optional, missing permission",
            method: "GET",
            path: "/v1/catalog/x".into(),
            headers: vec![("authorization", t(json!({})))],
            enforced: 403,
        },
        Row {
            case: "optional, granted",
            method: "GET",
            path: "/v1/catalog/x".into(),
            headers: vec![("authorization", t(json!({"permissions": ["catalog:read"]})))],
            enforced: 200,
        },
        Row {
            case: "public",
            method: "GET",
            path: "/health".into(),
            headers: vec![],
            enforced: 200,
        },
    ]
}

fn send(
    envoy: &Envoy,
    method: &str,
    path: &str,
    headers: &[(&'static str, String)],
    rid: &str,
) -> Reply {
    let mut hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    hs.push(("x-request-id", rid));
    // A client trying to pass as someone: always stripped.
    hs.push(("x-auth-subject", "forged-admin"));
    envoy.request(method, path, &hs)
}

#[test]
fn audit_mode_reports_what_enforce_mode_denies_and_lets_it_through() {
    let enforce = Stack::start(plugin(rules()));
    let mut audit_config = plugin(rules());
    audit_config["mode"] = json!("audit");
    let audit = Stack::start(audit_config);
    let mut would: std::collections::BTreeMap<u16, u64> = Default::default();
    for (i, row) in table().into_iter().enumerate() {
        let Row {
            case,
            method,
            path,
            headers,
            enforced: want,
        } = row;
        let rid = format!("audit-{i}");
        let r = send(&enforce.envoy, method, &path, &headers, &rid);
        assert_eq!(r.status, want, "{case} (enforce): {}", r.body);
        let r = send(&audit.envoy, method, &path, &headers, &rid);
        // Audit: every request reaches the upstream; nothing tells the client otherwise.
        assert_eq!(r.status, 200, "{case} (audit): {}", r.body);
        assert_eq!(r.json()["path"], path, "{case}: the upstream answered");
        assert_eq!(r.header("www-authenticate"), None, "{case}");
        // Client copies of identity headers are stripped; a valid token's identity is
        // forwarded even when the rule would deny it.
        let subject = r.upstream_header("x-auth-subject");
        let valid = headers.iter().any(|(_, v)| v.starts_with("Bearer ey"));
        assert_eq!(subject.as_deref(), valid.then_some("user-1"), "{case}");
        if want != 200 {
            *would.entry(want).or_insert(0) += 1;
            assert!(
                audit.envoy.wait_until(Duration::from_secs(5), || audit
                    .envoy
                    .log_contains(&format!("request_id={rid} "))
                    && audit.envoy.log_contains("audit: would deny")),
                "{case}: no audit line"
            );
        }
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        audit.envoy.filter_stat("would_deny.missing_token")
            + audit.envoy.filter_stat("would_deny.invalid_token"),
        would[&401]
    );
    assert_eq!(
        audit
            .envoy
            .filter_stat("would_deny.insufficient_permissions")
            + audit.envoy.filter_stat("would_deny.permission_denied"),
        would[&403]
    );
    assert_eq!(
        audit.envoy.filter_stat("would_deny.bad_request"),
        would[&400]
    );
    assert_eq!(
        audit.envoy.filter_stat("denied.missing_token"),
        0,
        "audit answers nothing itself"
    );
    assert!(audit
        .envoy
        .log_contains("audit: would deny insufficient_permissions rule=entities"));
}

#[test]
fn audit_mode_per_rule() {
    let mut rs = rules();
    rs[0]["mode"] = json!("audit"); // entities: audited; everything else enforced
    let stack = Stack::start(plugin(rs));
    let r = send(
        &stack.envoy,
        "GET",
        "/v1/entities/x",
        &[("authorization", format!("Bearer {}", good_token()))],
        "r1",
    );
    assert_eq!(r.status, 200, "audited rule: {}", r.body);
    let r = send(
        &stack.envoy,
        "GET",
        "/v1/items",
        &[("authorization", format!("Bearer {}", good_token()))],
        "r2",
    );
    expect(
        "enforced rule",
        &r,
        400,
        Some(r#"{"detail":"X-Index header is required"}"#),
        None,
    );
}

#[test]
fn optional_authentication_serves_anonymous_requests_without_identity() {
    let stack = Stack::start(plugin(rules()));
    let r = send(&stack.envoy, "GET", "/v1/catalog/x", &[], "anon");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-auth-subject"),
        None,
        "no identity, and the forged copy stripped"
    );
    let granted = format!(
        "Bearer {}",
        token_with(json!({"permissions": ["catalog:read"]}))
    );
    let r = send(
        &stack.envoy,
        "GET",
        "/v1/catalog/x",
        &[("authorization", granted)],
        "signed-in",
    );
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("user-1")
    );
    let r = send(
        &stack.envoy,
        "GET",
        "/v1/catalog/x",
        &[("authorization", "Bearer a.b.c".into())],
        "bad",
    );
    expect("invalid credential", &r, 401, Some(INVALID), WWW_INVALID);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(stack.envoy.filter_stat("anonymous_passes"), 1);
    // A public rule takes no credential at all: `optional` there is refused.
    let mut bad = plugin(vec![
        json!({"match": {"prefix": "/x"}, "public": true, "authentication": "optional"}),
    ]);
    bad["mode"] = json!("enforce");
    let upstream = echo(0).expect("echo");
    let mut o = Options::new(bad, upstream.port, stack.jwks.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let err = Envoy::try_start(&o).err().expect("refused");
    assert!(
        err.contains("invalid configuration at `rules[2].authentication`"),
        "{err}"
    );
}

#[test]
fn decisions_reach_the_access_log() {
    let log_path =
        std::env::temp_dir().join(format!("bearer-guard-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let mut config = plugin(rules());
    config["access_log_fields"] = json!(true);
    let stack = Stack::with_options(config, jwks_server, |o| {
        o.access_log = Some(log_path.clone())
    });
    let t = |extra: Value| format!("Bearer {}", token_with(extra));
    // (path, headers, the exact access-log line)
    type LogRow = (&'static str, Vec<(&'static str, String)>, &'static str);
    let rows: Vec<LogRow> = vec![
        ("/v1/entities/allowed", vec![("authorization", t(json!({"permissions": ["entities:read"]})))],
         "200 GET /v1/entities/allowed bg_outcome=allowed bg_reason=- bg_rule=entities bg_provider=idp bg_sub=user-1"),
        ("/v1/entities/no-token", vec![],
         "401 GET /v1/entities/no-token bg_outcome=denied bg_reason=missing_token bg_rule=entities bg_provider=- bg_sub=-"),
        ("/v1/entities/no-permission", vec![("authorization", t(json!({})))],
         "403 GET /v1/entities/no-permission bg_outcome=denied bg_reason=insufficient_permissions bg_rule=entities bg_provider=idp bg_sub=user-1"),
        ("/health", vec![], "200 GET /health bg_outcome=public bg_reason=- bg_rule=rules[0] bg_provider=- bg_sub=-"),
        ("/v1/catalog/anonymous", vec![], "200 GET /v1/catalog/anonymous bg_outcome=anonymous bg_reason=- bg_rule=catalog bg_provider=- bg_sub=-"),
    ];
    for (path, headers, _) in &rows {
        send(&stack.envoy, "GET", path, headers, "log");
    }
    let mut lines = String::new();
    assert!(
        stack.envoy.wait_until(Duration::from_secs(5), || {
            lines = std::fs::read_to_string(&log_path).unwrap_or_default();
            lines.lines().count() >= rows.len()
        }),
        "access log: {lines}"
    );
    for (_, _, want) in &rows {
        assert!(
            lines.lines().any(|l| l == *want),
            "missing line {want:?} in\n{lines}"
        );
    }
    assert!(!lines.contains("eyJ"), "a token reached the access log");
    // Off by default: no fields without `access_log_fields`.
    let log_path_off = std::env::temp_dir().join(format!(
        "bearer-guard-access-off-{}.log",
        std::process::id()
    ));
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let off = Stack::with_options(plugin(rules()), jwks_server, |o| {
        o.access_log = Some(log_path_off.clone())
    });
    send(&off.envoy, "GET", "/health", &[], "off");
    assert!(off.envoy.wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path_off).is_ok_and(|l| {
            l.contains("200 GET /health bg_outcome=- bg_reason=- bg_rule=- bg_provider=- bg_sub=-")
        })
    }));
    let _ = std::fs::remove_file(&log_path_off);
    // The format the tests use is the one envoy/envoy.yaml shows.
    let shown = std::fs::read_to_string(format!("{}/envoy/envoy.yaml", env!("CARGO_MANIFEST_DIR")))
        .expect("envoy.yaml");
    assert!(
        shown.contains(ACCESS_LOG_FORMAT.trim_end_matches('\n')),
        "envoy/envoy.yaml shows another format"
    );
    let _ = std::fs::remove_file(&log_path);
}

/// The `bearer-guard` command built with the tests.
fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bearer-guard"))
}

static FILES: Mutex<u32> = Mutex::new(0);

fn scratch_file(name: &str, content: &str) -> std::path::PathBuf {
    let n = {
        let mut g = FILES.lock().expect("lock");
        *g += 1;
        *g
    };
    let p = std::env::temp_dir().join(format!(
        "bearer-guard-cli-{}-{n}-{name}",
        std::process::id()
    ));
    std::fs::write(&p, content).expect("write");
    p
}

#[test]
fn explain_gives_the_answer_envoy_gives() {
    let config = plugin(rules());
    let stack = Stack::start(config.clone());
    let config_file = scratch_file("config.json", &config.to_string());
    let jwks_file = scratch_file("jwks.json", &jwks(&[&keys().0]));
    for (i, row) in table().into_iter().enumerate() {
        let Row {
            case,
            method,
            path,
            headers,
            ..
        } = row;
        let rid = format!("explain-{i}");
        let r = send(&stack.envoy, method, &path, &headers, &rid);
        let mut cmd = cli();
        cmd.env("SDK_TOKEN_SECRET", SECRET)
            .args(["explain", "--json", "--config"])
            .arg(&config_file)
            .arg("--jwks")
            .arg(&jwks_file)
            .args(["--request-id", &rid]);
        let token = headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .map(|(_, v)| v.clone());
        match &token {
            Some(v) if v.starts_with("Bearer ") => {
                cmd.args(["--token", v.trim_start_matches("Bearer ")]);
            }
            // Anything else goes as the header itself; without --token explain sends none.
            Some(v) => {
                cmd.args(["-H", &format!("authorization: {v}")]);
            }
            None => {}
        }
        for (k, v) in headers.iter().filter(|(k, _)| *k != "authorization") {
            cmd.args(["-H", &format!("{k}: {v}")]);
        }
        cmd.args([method, &path]);
        let out = cmd.output().expect("run bearer-guard explain");
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(e["status"].as_u64(), Some(r.status as u64), "{case}: {e}");
        if r.status != 200 {
            assert_eq!(e["body"].as_str(), Some(r.body.as_str()), "{case}");
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if let Some(t) = &token {
            let raw = t.trim_start_matches("Bearer ");
            assert!(
                raw.len() < 10 || !text.contains(raw),
                "{case}: the token was printed"
            );
        }
    }
    // The human form names the rule, the provider, the grants and the reply.
    let granted = token_with(json!({"permissions": ["entities:read"], "role": "furnisher"}));
    let out = cli()
        .args(["explain", "--config"])
        .arg(&config_file)
        .arg("--jwks")
        .arg(&jwks_file)
        .args(["--token", &granted, "POST", "/v1/consent/c?network_id=x"])
        .env("SDK_TOKEN_SECRET", SECRET)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "✗ entities — prefix /v1/entities/: path differs",
        "✓ consent — POST prefix /v1/consent/: matches",
        "✓ provider: idp",
        "✓ signature: valid",
        "furnish:write (role furnisher)",
        "[all of] consent:write — ✗ no grant covers it",
        r#"Result: 403 {"detail":"Not enough permissions"}"#,
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains(&granted), "the token was printed");
}

#[test]
fn validate_gives_the_error_envoy_gives() {
    let good = scratch_file("good.json", &plugin(rules()).to_string());
    let out = cli()
        .env("SDK_TOKEN_SECRET", SECRET)
        .arg("validate")
        .arg(&good)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut bad = plugin(rules());
    bad["providers"][0]["jwks"]["clustr"] = json!("typo");
    let bad_file = scratch_file("bad.json", &bad.to_string());
    let out = cli()
        .env("SDK_TOKEN_SECRET", SECRET)
        .arg("validate")
        .arg(&bad_file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(message.contains("`providers[0].jwks.clustr`"), "{message}");
    // Envoy refuses the same configuration with the same words.
    let upstream = echo(0).expect("echo");
    let mut o = Options::new(bad, upstream.port, 1);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let log = Envoy::try_start(&o).err().expect("refused");
    assert!(
        log.contains(&message),
        "Envoy said:\n{log}\nthe command said: {message}"
    );
}
