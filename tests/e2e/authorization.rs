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
    let t = |extra: Value| format!("Bearer {}", token_with(extra));
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

    /// A request and the reply it gets.
    struct Row {
        case: &'static str,
        method: &'static str,
        path: String,
        headers: Vec<(&'static str, String)>,
        status: u16,
        /// The exact body of a local reply (`None`: the upstream answered).
        body: Option<String>,
    }
    let rows = vec![
        Row {
            case: "permission granted",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![(
                "authorization",
                t(json!({"permissions": ["entities:read"]})),
            )],
            status: 200,
            body: None,
        },
        Row {
            case: "permission missing",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![(
                "authorization",
                t(json!({"permissions": ["entities:write"]})),
            )],
            status: 403,
            body: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "role grants",
            method: "POST",
            path: "/v1/furnish".into(),
            headers: vec![("authorization", t(json!({"role": "furnisher"})))],
            status: 200,
            body: None,
        },
        Row {
            case: "admin role grants everything",
            method: "GET",
            path: "/v1/entities/x".into(),
            headers: vec![("authorization", t(json!({"role": "admin"})))],
            status: 200,
            body: None,
        },
        Row {
            case: "unknown role grants nothing",
            method: "POST",
            path: "/v1/furnish".into(),
            headers: vec![("authorization", t(json!({"role": "viewer"})))],
            status: 403,
            body: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "any_of second option",
            method: "POST",
            path: "/v1/furnish".into(),
            headers: vec![(
                "authorization",
                t(json!({"permissions": ["furnish:admin"]})),
            )],
            status: 200,
            body: None,
        },
        Row {
            case: "member of the network",
            method: "POST",
            path: format!("/v1/consent/consumer?network_id={NET}"),
            headers: vec![("authorization", consent_ok.clone())],
            status: 200,
            body: None,
        },
        Row {
            case: "not a member",
            method: "POST",
            path: format!("/v1/consent/consumer?network_id={OTHER_NET}"),
            headers: vec![
                ("authorization", consent_ok.clone()),
                ("x-request-id", "rid-1".into()),
            ],
            status: 403,
            body: Some(denied("rid-1")),
        },
        Row {
            case: "membership value missing",
            method: "POST",
            path: "/v1/consent/consumer".into(),
            headers: vec![
                ("authorization", consent_ok.clone()),
                ("x-request-id", "rid-2".into()),
            ],
            status: 403,
            body: Some(denied("rid-2")),
        },
        Row {
            case: "network given twice",
            method: "POST",
            path: format!("/v1/consent/consumer?network_id={NET}&network_id={OTHER_NET}"),
            headers: vec![
                ("authorization", consent_ok.clone()),
                ("x-request-id", "rid-3".into()),
            ],
            status: 403,
            body: Some(denied("rid-3")),
        },
        Row {
            case: "permission checked before membership",
            method: "POST",
            path: format!("/v1/consent/consumer?network_id={OTHER_NET}"),
            headers: vec![("authorization", t(json!({"networks": [NET]})))],
            status: 403,
            body: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "GET on a POST-only rule falls to the default",
            method: "GET",
            path: "/v1/consent/consumer".into(),
            headers: vec![("authorization", t(json!({})))],
            status: 200,
            body: None,
        },
        Row {
            case: "template and path membership",
            method: "POST",
            path: format!("/v1/networks/{NET}/consumers"),
            headers: vec![("authorization", consumers.clone())],
            status: 200,
            body: None,
        },
        Row {
            case: "template, other network",
            method: "POST",
            path: format!("/v1/networks/{OTHER_NET}/consumers"),
            headers: vec![
                ("authorization", consumers.clone()),
                ("x-request-id", "rid-4".into()),
            ],
            status: 403,
            body: Some(denied("rid-4")),
        },
        Row {
            case: "items: index header missing",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![("solenya-user-uuid", USER_V7.into())],
            status: 400,
            body: Some(r#"{"detail":"Solenya-Index-UUID header is required"}"#.into()),
        },
        Row {
            case: "items: user header missing",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![("solenya-index-uuid", INDEX.into())],
            status: 400,
            body: Some(r#"{"detail":"Solenya-User-UUID header is required"}"#.into()),
        },
        Row {
            case: "items: user not UUIDv7",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V4.into()),
            ],
            status: 400,
            body: Some(r#"{"detail":"Solenya-User-UUID must be a valid UUIDv7"}"#.into()),
        },
        Row {
            case: "items: index not a UUID",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", "idx-1".into()),
                ("solenya-user-uuid", USER_V7.into()),
            ],
            status: 400,
            body: Some(r#"{"detail":"Solenya-Index-UUID must be a valid UUID"}"#.into()),
        },
        Row {
            case: "items: headers checked before the token",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![],
            status: 400,
            body: Some(r#"{"detail":"Solenya-Index-UUID header is required"}"#.into()),
        },
        Row {
            case: "items: headers fine, no token",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
            ],
            status: 401,
            body: Some(REQUIRES_AUTH.into()),
        },
        Row {
            case: "scope index:read:* grants this index",
            method: "GET",
            path: "/v1/items?q=shoes".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                (
                    "authorization",
                    t(json!({"scope": "index:read:* events:write:*"})),
                ),
            ],
            status: 200,
            body: None,
        },
        Row {
            case: "scope for exactly this index",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                (
                    "authorization",
                    t(json!({"scope": format!("index:read:{INDEX}")})),
                ),
            ],
            status: 200,
            body: None,
        },
        Row {
            case: "scope for another index",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                (
                    "authorization",
                    t(json!({"scope": format!("index:read:{OTHER_INDEX}")})),
                ),
            ],
            status: 403,
            body: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "write scope does not grant read",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                ("authorization", t(json!({"scope": "index:write:*"}))),
            ],
            status: 403,
            body: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "index:*:* grants read",
            method: "GET",
            path: "/v1/items".into(),
            headers: vec![
                ("solenya-index-uuid", INDEX.into()),
                ("solenya-user-uuid", USER_V7.into()),
                ("authorization", t(json!({"scope": ["index:*:*"]}))),
            ],
            status: 200,
            body: None,
        },
        Row {
            case: "host rule",
            method: "GET",
            path: "/anything".into(),
            headers: vec![
                ("host", "admin.example.com".into()),
                (
                    "authorization",
                    t(json!({"permissions": ["entities:read"]})),
                ),
            ],
            status: 403,
            body: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "host rule granted",
            method: "GET",
            path: "/anything".into(),
            headers: vec![
                ("host", "admin.example.com:8443".into()),
                ("authorization", t(json!({"permissions": ["admin"]}))),
            ],
            status: 200,
            body: None,
        },
        Row {
            case: "namespaced SDK permissions claim",
            method: "POST",
            path: "/api/templates/identity_prefill/query".into(),
            headers: vec![(
                "authorization",
                sdk(json!({"https://api.solo.one/permissions": ["templates:query"]})),
            )],
            status: 200,
            body: None,
        },
        Row {
            case: "rule limited to the SDK provider",
            method: "POST",
            path: "/api/templates/identity_prefill/query".into(),
            headers: vec![(
                "authorization",
                t(json!({"permissions": ["templates:query"]})),
            )],
            status: 401,
            body: Some(INVALID.into()),
        },
    ];
    for row in rows {
        let Row {
            case,
            method,
            path,
            headers,
            status,
            body,
        } = row;
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
    /// A request without a token.
    struct Row {
        case: &'static str,
        method: &'static str,
        path: &'static str,
        /// The path the upstream gets when the request is public (`None`: it must not be).
        public_as: Option<&'static str>,
    }
    // Public only as exact GET /health (query allowed); everything else needs a token.
    let rows = vec![
        Row {
            case: "query string keeps it public",
            method: "GET",
            path: "/health?x=1",
            public_as: Some("/health?x=1"),
        },
        Row {
            case: "merged slashes: still /health",
            method: "GET",
            path: "//health",
            public_as: Some("/health"),
        },
        Row {
            case: "dot segments resolved to /health",
            method: "GET",
            path: "/v1/entities/../../health",
            public_as: Some("/health"),
        },
        Row {
            case: "dot segments into a protected route",
            method: "GET",
            path: "/health/../v1/entities/x",
            public_as: None,
        },
        Row {
            case: "encoded slashes",
            method: "GET",
            path: "/health%2F..%2Fv1/entities/x",
            public_as: None,
        },
        Row {
            case: "encoded dots",
            method: "GET",
            path: "/health/%2e%2e/v1/entities/x",
            public_as: None,
        },
        Row {
            case: "prefix lookalike",
            method: "GET",
            path: "/healthz",
            public_as: None,
        },
        Row {
            case: "case",
            method: "GET",
            path: "/HEALTH",
            public_as: None,
        },
        Row {
            case: "trailing slash",
            method: "GET",
            path: "/health/",
            public_as: None,
        },
        Row {
            case: "method",
            method: "POST",
            path: "/health",
            public_as: None,
        },
        Row {
            case: "path parameter",
            method: "GET",
            path: "/health;x=1",
            public_as: None,
        },
    ];
    for row in rows {
        let Row {
            case,
            method,
            path,
            public_as,
        } = row;
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
