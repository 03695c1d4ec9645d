//! End to end in the real Envoy: permissions, roles, hierarchical scopes, membership,
//! header preconditions, matching and bypass attempts (the decision's header
//! preconditions, permissions and membership steps).

use crate::common::*;
use serde_json::{json, Value};

const NET: &str = "2f6f6a3e-9d6b-4a4e-8a6f-3a1d1f2b9c10";
const OTHER_NET: &str = "9b1d2c3e-0000-4000-8000-000000000000";
const INDEX: &str = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const OTHER_INDEX: &str = "11111111-2222-4333-8444-555555555555";
const USER_V7: &str = "01890a5d-ac96-774b-bcce-b302099a8057";
const USER_V4: &str = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";

fn rules() -> Vec<Value> {
    vec![
        json!({"name": "entities", "match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
        json!({"name": "consent", "match": {"methods": ["POST"], "prefix": "/v1/consent/"},
               "permissions": ["consent:write"], "member_of": {"query": "network_id", "claim": "networks"}}),
        json!({"name": "consumers", "match": {"methods": ["POST"], "template": "/v1/networks/{network_id}/consumers"},
               "all_of": ["consumers:write:{path.network_id}"], "member_of": {"path": "network_id", "claim": "networks"}}),
        json!({"name": "items", "match": {"route": "items"},
               "headers": {"Solenya-User-UUID": "uuidv7", "Solenya-Index-UUID": "uuid"},
               "permissions": ["index:read:{header.solenya-index-uuid}"]}),
        json!({"name": "furnish", "match": {"methods": ["POST"], "path": "/v1/furnish"}, "any_of": ["furnish:write", "furnish:admin"]}),
        json!({"name": "admin-host", "match": {"host": "admin.example.com"}, "permissions": ["admin"]}),
        json!({"name": "sdk-only", "match": {"prefix": "/api/templates/"}, "providers": ["sdk"],
               "permissions": ["templates:query"]}),
    ]
}

#[test]
fn authorization_rules_in_envoy() {
    let stack = Stack::start(plugin(rules()));
    let t = |extra: Value| format!("Bearer {}", token(extra));
    let sdk = |extra: Value| {
        let mut c = json!({"sub": "svc-1", "exp": now() + 600});
        if let (Some(o), Value::Object(add)) = (c.as_object_mut(), extra) {
            o.extend(add);
        }
        format!("Bearer {}", mint_hs256(SECRET.as_bytes(), &c))
    };
    let denied = |rid: &str| {
        format!(
            r#"{{"detail":"Permission denied","error_code":"PERMISSION_DENIED","request_id":"{rid}"}}"#
        )
    };
    let consent_ok = t(json!({"permissions": ["consent:write"], "networks": [NET]}));
    let consumers = t(
        json!({"permissions": [format!("consumers:write:{NET}"), format!("consumers:write:{OTHER_NET}")], "networks": [NET]}),
    );

    // (case, method, path, headers, status, exact body or None for "reached upstream")
    type Row = (
        &'static str,
        &'static str,
        String,
        Vec<(&'static str, String)>,
        u16,
        Option<String>,
    );
    let rows: Vec<Row> = vec![
        (
            "permission granted",
            "GET",
            "/v1/entities/x".into(),
            vec![(
                "authorization",
                t(json!({"permissions": ["entities:read"]})),
            )],
            200,
            None,
        ),
        (
            "permission missing",
            "GET",
            "/v1/entities/x".into(),
            vec![(
                "authorization",
                t(json!({"permissions": ["entities:write"]})),
            )],
            403,
            Some(NOT_ENOUGH.into()),
        ),
        (
            "role grants",
            "POST",
            "/v1/furnish".into(),
            vec![("authorization", t(json!({"role": "furnisher"})))],
            200,
            None,
        ),
        (
            "admin role grants everything",
            "GET",
            "/v1/entities/x".into(),
            vec![("authorization", t(json!({"role": "admin"})))],
            200,
            None,
        ),
        (
            "unknown role grants nothing",
            "POST",
            "/v1/furnish".into(),
            vec![("authorization", t(json!({"role": "viewer"})))],
            403,
            Some(NOT_ENOUGH.into()),
        ),
        (
            "any_of second option",
            "POST",
            "/v1/furnish".into(),
            vec![(
                "authorization",
                t(json!({"permissions": ["furnish:admin"]})),
            )],
            200,
            None,
        ),
        (
            "member of the network",
            "POST",
            format!("/v1/consent/consumer?network_id={NET}"),
            vec![("authorization", consent_ok.clone())],
            200,
            None,
        ),
        (
            "not a member",
            "POST",
            format!("/v1/consent/consumer?network_id={OTHER_NET}"),
            vec![
                ("authorization", consent_ok.clone()),
                ("x-request-id", "rid-1".into()),
            ],
            403,
            Some(denied("rid-1")),
        ),
        (
            "membership value missing",
            "POST",
            "/v1/consent/consumer".into(),
            vec![
                ("authorization", consent_ok.clone()),
                ("x-request-id", "rid-2".into()),
            ],
            403,
            Some(denied("rid-2")),
        ),
        (
            "network given twice",
            "POST",
            format!("/v1/consent/consumer?network_id={NET}&network_id={OTHER_NET}"),
            vec![
                ("authorization", consent_ok.clone()),
                ("x-request-id", "rid-3".into()),
            ],
            403,
            Some(denied("rid-3")),
        ),
        (
            "permission checked before membership",
            "POST",
            format!("/v1/consent/consumer?network_id={OTHER_NET}"),
            vec![("authorization", t(json!({"networks": [NET]})))],
            403,
            Some(NOT_ENOUGH.into()),
        ),
        (
            "GET on a POST-only rule falls to the default",
            "GET",
            "/v1/consent/consumer".into(),
            vec![("authorization", t(json!({})))],
            200,
            None,
        ),
        (
            "template and path membership",
            "POST",
            format!("/v1/networks/{NET}/consumers"),
            vec![("authorization", consumers.clone())],
            200,
            None,
        ),
        (
            "template, other network",
            "POST",
            format!("/v1/networks/{OTHER_NET}/consumers"),
            vec![
                ("authorization", consumers.clone()),
                ("x-request-id", "rid-4".into()),
            ],
            403,
            Some(denied("rid-4")),
        ),
        (
            "items: index header missing",
            "GET",
            "/v1/items".into(),
            vec![("solenya-user-uuid", USER_V7.into())],
            400,
            Some(r#"{"detail":"Solenya-Index-UUID header is required"}"#.into()),
        ),
        (
            "items: user header missing",
            "GET",
            "/v1/items".into(),
            vec![("solenya-index-uuid", INDEX.into())],
            400,
            Some(r#"{"detail":"Solenya-User-UUID header is required"}"#.into()),
        ),
        (
            "items: user not UUIDv7",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V4.into()),
            ],
            400,
            Some(r#"{"detail":"Solenya-User-UUID must be a valid UUIDv7"}"#.into()),
        ),
        (
            "items: index not a UUID",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", "idx-1".into()),
                ("solenya-user-uuid", USER_V7.into()),
            ],
            400,
            Some(r#"{"detail":"Solenya-Index-UUID must be a valid UUID"}"#.into()),
        ),
        (
            "items: headers checked before the token",
            "GET",
            "/v1/items".into(),
            vec![],
            400,
            Some(r#"{"detail":"Solenya-Index-UUID header is required"}"#.into()),
        ),
        (
            "items: headers fine, no token",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
            ],
            401,
            Some(REQUIRES_AUTH.into()),
        ),
        (
            "scope index:read:* grants this index",
            "GET",
            "/v1/items?q=shoes".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                (
                    "authorization",
                    t(json!({"scope": "index:read:* events:write:*"})),
                ),
            ],
            200,
            None,
        ),
        (
            "scope for exactly this index",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                (
                    "authorization",
                    t(json!({"scope": format!("index:read:{INDEX}")})),
                ),
            ],
            200,
            None,
        ),
        (
            "scope for another index",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                (
                    "authorization",
                    t(json!({"scope": format!("index:read:{OTHER_INDEX}")})),
                ),
            ],
            403,
            Some(NOT_ENOUGH.into()),
        ),
        (
            "write scope does not grant read",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                ("authorization", t(json!({"scope": "index:write:*"}))),
            ],
            403,
            Some(NOT_ENOUGH.into()),
        ),
        (
            "index:*:* grants read",
            "GET",
            "/v1/items".into(),
            vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                ("authorization", t(json!({"scope": ["index:*:*"]}))),
            ],
            200,
            None,
        ),
        (
            "host rule",
            "GET",
            "/anything".into(),
            vec![
                ("host", "admin.example.com".into()),
                (
                    "authorization",
                    t(json!({"permissions": ["entities:read"]})),
                ),
            ],
            403,
            Some(NOT_ENOUGH.into()),
        ),
        (
            "host rule granted",
            "GET",
            "/anything".into(),
            vec![
                ("host", "admin.example.com:8443".into()),
                ("authorization", t(json!({"permissions": ["admin"]}))),
            ],
            200,
            None,
        ),
        (
            "namespaced SDK permissions claim",
            "POST",
            "/api/templates/identity_prefill/query".into(),
            vec![(
                "authorization",
                sdk(json!({"https://api.solo.one/permissions": ["templates:query"]})),
            )],
            200,
            None,
        ),
        (
            "rule limited to the SDK provider",
            "POST",
            "/api/templates/identity_prefill/query".into(),
            vec![(
                "authorization",
                t(json!({"permissions": ["templates:query"]})),
            )],
            401,
            Some(INVALID.into()),
        ),
    ];
    for (case, method, path, headers, status, body) in rows {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = stack.envoy.request(method, &path, &hs);
        assert_eq!(r.status, status, "{case}: {}", r.body);
        match body {
            Some(b) => {
                assert_eq!(r.body, b, "{case}: body");
                assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
            }
            None => assert_eq!(
                r.json()["path"].as_str(),
                Some(path.as_str()),
                "{case}: reached the upstream"
            ),
        }
    }
    // The debug log names the unmet requirement, never the token.
    assert!(
        stack.envoy.log_contains("missing permission entities:read"),
        "{}",
        stack.envoy.log()
    );
    assert!(stack
        .envoy
        .log_contains(&format!("missing permission index:read:{INDEX}")));
}

#[test]
fn bypass_attempts_never_reach_a_protected_route_unauthenticated() {
    let stack = Stack::start(plugin(rules()));
    let reached = |r: &Reply| r.status == 200 && r.json()["path"].is_string();
    // Public only as exact GET /health (query allowed); everything else needs a token.
    let rows: Vec<(&str, &str, &str, Option<&str>)> = vec![
        (
            "query string keeps it public",
            "GET",
            "/health?x=1",
            Some("/health?x=1"),
        ),
        (
            "merged slashes: still /health",
            "GET",
            "//health",
            Some("/health"),
        ),
        (
            "dot segments resolved to /health",
            "GET",
            "/v1/entities/../../health",
            Some("/health"),
        ),
        (
            "dot segments into a protected route",
            "GET",
            "/health/../v1/entities/x",
            None,
        ),
        (
            "encoded slashes",
            "GET",
            "/health%2F..%2Fv1/entities/x",
            None,
        ),
        ("encoded dots", "GET", "/health/%2e%2e/v1/entities/x", None),
        ("prefix lookalike", "GET", "/healthz", None),
        ("case", "GET", "/HEALTH", None),
        ("trailing slash", "GET", "/health/", None),
        ("method", "POST", "/health", None),
        ("path parameter", "GET", "/health;x=1", None),
    ];
    for (case, method, path, public_as) in rows {
        let r = stack.envoy.request(method, path, &[]);
        match public_as {
            Some(upstream_path) => {
                assert!(
                    reached(&r),
                    "{case}: expected public, got {} {}",
                    r.status,
                    r.body
                );
                assert_eq!(r.json()["path"], upstream_path, "{case}");
            }
            None => {
                assert!(!reached(&r), "{case}: reached the upstream without a token");
                assert!(
                    matches!(r.status, 401 | 400 | 307 | 404),
                    "{case}: {} {}",
                    r.status,
                    r.body
                );
            }
        }
    }
}
