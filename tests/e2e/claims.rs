//! End to end in the real Envoy: nested claims named by JSON Pointers (a Keycloak-shaped
//! token), and routes chosen by a claim through the identity headers.

use crate::common::*;
use serde_json::{json, Value};

/// Keycloak's shape: realm roles and client roles nested, the organization in an object.
fn keycloak_plugin(extra: Value) -> Value {
    let mut p = json!({
        "providers": [
            {"name": "keycloak", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
             "jwks": {"cluster": "jwks", "authority": "idp.test", "path": "/jwks"},
             "claims": {"role": "/realm_access/roles", "permissions": "/resource_access/api/roles"},
             "identity": {"required_claims": ["sub", "/org/id"]}}
        ],
        "roles": {"reports-reader": ["reports:read"]},
        "forward": {"headers": {"x-auth-subject": "sub", "x-auth-org": "/org/id",
                                "x-auth-realm-roles": "/realm_access/roles"}},
        "rules": [
            {"match": {"prefix": "/reports"}, "permissions": ["reports:read"]},
            {"match": {"prefix": "/entities"}, "permissions": ["entities:read"]},
            {"match": {"prefix": "/orgs/"}}
        ]
    });
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

fn keycloak_token(claims_extra: Value) -> String {
    token_for("f1b4a3c2", claims_extra)
}

#[test]
fn nested_claims_named_by_pointers() {
    let s = Stack::start(keycloak_plugin(json!({})));
    let full = keycloak_token(json!({
        "realm_access": {"roles": ["offline_access", "reports-reader"]},
        "resource_access": {"api": {"roles": ["entities:read"]}, "account": {"roles": ["manage-account"]}},
        "org": {"id": "org_123", "name": "Acme"}
    }));
    // A realm role expanded through `roles`.
    let r = s.envoy.get_with_token("/reports/q3", &full);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("org_123"));
    assert_eq!(
        r.upstream_header("x-auth-realm-roles").as_deref(),
        Some("offline_access,reports-reader")
    );
    // A client role taken as a permission.
    assert_eq!(s.envoy.get_with_token("/entities/x", &full).status, 200);

    // The same roles under another client, or flattened under a dotted name, grant nothing.
    let elsewhere = keycloak_token(json!({
        "realm_access.roles": ["reports-reader"],
        "resource_access": {"account": {"roles": ["entities:read"]}},
        "org": {"id": "org_123"}
    }));
    for path in ["/reports/q3", "/entities/x"] {
        let r = s.envoy.get_with_token(path, &elsewhere);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.json(), json!({"detail": "Not enough permissions"}));
    }
    // A required nested claim that is absent (or not where the pointer leads) is 401.
    for org in [json!({}), json!("org_123"), json!({"id": null})] {
        let t = keycloak_token(json!({"realm_access": {"roles": []}, "org": org}));
        let r = s.envoy.get_with_token("/orgs/x", &t);
        assert_eq!(r.status, 401, "{org}: {}", r.body);
        assert_eq!(
            r.json(),
            json!({"detail": "Could not validate credentials or find account"})
        );
    }
}

/// Envoy routes `x-auth-org: org_a` to its own route (a direct response naming it); every
/// other request goes to the echo upstream.
fn org_routes() -> Vec<Value> {
    vec![json!({
        "match": {"prefix": "/orgs/", "headers": [{"name": "x-auth-org", "string_match": {"exact": "org_a"}}]},
        "direct_response": {"status": 200, "body": {"inline_string": "org_a's cluster"}}
    })]
}

fn routed_stack(plugin: Value) -> Stack {
    let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks server");
    let upstream = echo(0).expect("echo");
    let mut o = Options::new(plugin, upstream.port, jwks.server.port);
    o.routes = org_routes();
    o.concurrency = 2;
    let envoy = Envoy::start(&o);
    Stack {
        jwks,
        _upstream: upstream,
        envoy,
    }
}

#[test]
fn routes_chosen_by_a_claim() {
    let s = routed_stack(keycloak_plugin(json!({"clear_route_cache": true})));
    let org = |id: &str| keycloak_token(json!({"org": {"id": id}}));
    for _ in 0..4 {
        let r = s.envoy.get_with_token("/orgs/x", &org("org_a"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "org_a's cluster", "org_a's token selects its route");
        let r = s.envoy.get_with_token("/orgs/x", &org("org_b"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("org_b"));
    }
    // A client-sent copy of the header never selects the route: it is stripped first.
    let b = org("org_b");
    let auth = format!("Bearer {b}");
    let r = s.envoy.get(
        "/orgs/x",
        &[("authorization", &auth), ("x-auth-org", "org_a")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("x-auth-org").as_deref(), Some("org_b"));
    assert!(
        !s.envoy.log_contains("clear_route_cache failed"),
        "Envoy took the route-cache clear"
    );
    // Without a token the request is refused before any route is taken.
    let r = s.envoy.get("/orgs/x", &[("x-auth-org", "org_a")]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json(), json!({"detail": "Requires authentication"}));
}
