//! End to end in the real Envoy: GraphQL rules per operation and root field — the
//! documentation's items query with its two headers, index mutations and event writes
//! with their scopes — against every bypass attempt (aliases, fragments, inline
//! fragments, batches, several operations, introspection), the three transports, a body
//! over several writes, and documents over the limits.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

const INDEX: &str = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const USER: &str = "01890a5d-ac96-774b-bcce-b302099a8057";

fn rules() -> Vec<Value> {
    vec![
        json!({"name": "items",
               "match": {"path": "/graphql", "graphql": {"operation": "query", "fields": ["items"]}},
               "headers": {"Solenya-Index-UUID": "uuid", "Solenya-User-UUID": "uuidv7"},
               "permissions": ["index:read:{header.solenya-index-uuid}"]}),
        json!({"name": "index-writes",
               "match": {"path": "/graphql", "graphql": {"operation": "mutation", "fields": ["createIndex", "updateIndex"]}},
               "permissions": ["index:write:*"]}),
        json!({"name": "events",
               "match": {"path": "/graphql", "graphql": {"operation": "mutation", "fields": ["trackEvents"]}},
               "permissions": ["events:write:*"]}),
        json!({"name": "introspection",
               "match": {"path": "/graphql", "graphql": {"fields": ["__schema", "__type"]}},
               "permissions": ["account:admin:*"]}),
        // Every other root field of the endpoint: a valid token.
        json!({"name": "graphql", "match": {"path": "/graphql"}}),
    ]
}

/// The endpoint's rules as shipped: the head is held with the body (`hold_head`).
fn held(rules: Vec<Value>) -> Value {
    let mut p = plugin(rules);
    p["graphql"] = json!({"hold_head": true});
    p
}

/// A valid token with this `scope`.
fn token(scope: &str) -> String {
    token_with(json!({"scope": scope}))
}

fn items_headers(auth: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {auth}")),
        ("solenya-index-uuid", INDEX.to_string()),
        ("solenya-user-uuid", USER.to_string()),
        ("content-type", "application/json".to_string()),
    ]
}

fn post(stack: &Stack, headers: &[(&str, String)], body: &str) -> Reply {
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    stack
        .envoy
        .request_with_body("POST", "/graphql", &hs, &[body.as_bytes()], Duration::ZERO)
}

fn query(doc: &str) -> String {
    json!({"query": doc, "variables": {}}).to_string()
}

const NOT_ENOUGH: &str = r#"{"detail":"Not enough permissions"}"#;

/// A GraphQL request and the reply it gets.
struct Row {
    case: &'static str,
    /// The token's `scope`.
    scope: &'static str,
    /// Whether the items query's two headers are sent.
    items_headers: bool,
    body: String,
    status: u16,
    /// The body of a local reply (`None`: the upstream answered).
    reply: Option<String>,
}

fn bad(detail: &str) -> Option<String> {
    Some(json!({ "detail": detail }).to_string())
}

#[test]
fn root_fields_are_judged_by_their_own_rules_whatever_the_disguise() {
    let stack = Stack::start(held(rules()));
    let reader = "index:read:*";
    let writer = "index:read:* index:write:*";
    let rows = vec![
        Row {
            case: "items query",
            scope: reader,
            items_headers: true,
            body: query("{ items(first: 20) { edges { node { id } } } }"),
            status: 200,
            reply: None,
        },
        Row {
            case: "items query without the index header",
            scope: reader,
            items_headers: false,
            body: query("{ items { id } }"),
            status: 400,
            reply: bad("Solenya-Index-UUID header is required"),
        },
        Row {
            case: "index mutation, read-only token",
            scope: reader,
            items_headers: false,
            body: query("mutation { createIndex(name: \"a\") { id } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "index mutation, writer",
            scope: writer,
            items_headers: false,
            body: query("mutation { createIndex(name: \"a\") { id } }"),
            status: 200,
            reply: None,
        },
        Row {
            case: "aliased mutation",
            scope: reader,
            items_headers: false,
            body: query("mutation { harmless: createIndex(name: \"a\") { id } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "mutation in a named fragment",
            scope: reader,
            items_headers: false,
            body: query("mutation { ...F } fragment F on Mutation { createIndex(name: \"a\") { id } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "mutation in nested spreads",
            scope: reader,
            items_headers: false,
            body: query("mutation { ...A } fragment A on Mutation { ...B } fragment B on Mutation { updateIndex(id: 1) { id } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "mutation in an inline fragment",
            scope: reader,
            items_headers: false,
            body: query("mutation { ... on Mutation { createIndex(name: \"a\") { id } } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "event write beside an allowed field",
            scope: writer,
            items_headers: false,
            body: query("mutation { createIndex(name: \"a\") { id } trackEvents(e: []) { ok } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "items and another field",
            scope: reader,
            items_headers: true,
            body: query("{ items { id } search(q: \"items\") { id } }"),
            status: 200,
            reply: None,
        },
        Row {
            case: "field names in strings and comments",
            scope: reader,
            items_headers: false,
            body: query("# createIndex\n{ search(q: \"mutation { createIndex }\") { id } }"),
            status: 200,
            reply: None,
        },
        Row {
            case: "batch hiding a mutation",
            scope: reader,
            items_headers: true,
            body: json!([{"query": "{ items { id } }"}, {"query": "mutation { createIndex(name: \"a\") { id } }"}]).to_string(),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "several operations, none selected",
            scope: writer,
            items_headers: false,
            body: query("query A { search { id } } mutation B { createIndex(name: \"a\") { id } }"),
            status: 400,
            reply: bad("operationName is required for a document with several operations"),
        },
        Row {
            case: "operationName selects the mutation",
            scope: reader,
            items_headers: false,
            body: json!({"query": "query A { search { id } } mutation B { createIndex(name: \"a\") { id } }", "operationName": "B"}).to_string(),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "operationName naming no operation",
            scope: reader,
            items_headers: false,
            body: json!({"query": "query A { search { id } }", "operationName": "Nope"}).to_string(),
            status: 400,
            reply: bad("operationName Nope names no operation of the document"),
        },
        Row {
            case: "introspection",
            scope: reader,
            items_headers: false,
            body: query("{ __schema { types { name } } }"),
            status: 403,
            reply: Some(NOT_ENOUGH.into()),
        },
        Row {
            case: "__typename alone",
            scope: reader,
            items_headers: false,
            body: query("{ __typename }"),
            status: 200,
            reply: None,
        },
        Row {
            case: "duplicate query keys",
            scope: writer,
            items_headers: false,
            body: r#"{"query":"{ search { id } }","query":"mutation { createIndex }"}"#.into(),
            status: 400,
            reply: bad("GraphQL request body is not a JSON object (or a batch of them), or has duplicate keys"),
        },
        Row {
            case: "persisted query without the query",
            scope: writer,
            items_headers: false,
            body: json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"}}}).to_string(),
            status: 400,
            reply: bad("persisted queries must carry their query"),
        },
        Row {
            case: "not GraphQL",
            scope: writer,
            items_headers: false,
            body: query("{ items "),
            status: 400,
            reply: None,
        },
    ];
    for row in rows {
        let Row {
            case,
            scope,
            items_headers: with_items_headers,
            body,
            status,
            reply,
        } = row;
        let mut hs = if with_items_headers {
            items_headers(&token(scope))
        } else {
            vec![
                ("authorization", format!("Bearer {}", token(scope))),
                ("content-type", "application/json".to_string()),
            ]
        };
        if case == "items query without the index header" {
            hs.retain(|(k, _)| *k != "solenya-index-uuid");
        }
        hs.push(("x-auth-subject", "forged".into()));
        let r = post(&stack, &hs, &body);
        assert_eq!(r.status, status, "{case}: {}", r.body);
        match reply {
            Some(want) => {
                assert_eq!(r.body, want, "{case}");
                assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
            }
            None if status == 200 => {
                // The upstream got the request as sent, with the verified identity.
                assert_eq!(r.json()["body"].as_str(), Some(body.as_str()), "{case}");
                assert_eq!(
                    r.upstream_header("x-auth-subject").as_deref(),
                    Some("user-1"),
                    "{case}"
                );
            }
            None => assert!(
                r.body.contains("GraphQL document is not valid"),
                "{case}: {}",
                r.body
            ),
        }
    }
}

#[test]
fn transports_bodies_and_limits() {
    let stack = Stack::start(held(rules()));
    let reader = token("index:read:*");
    let auth = format!("Bearer {reader}");
    // GET with the query in the URL.
    let r = stack.envoy.request(
        "GET",
        "/graphql?query=%7B%20items%20%7B%20id%20%7D%20%7D",
        &[
            ("authorization", &auth),
            ("solenya-index-uuid", INDEX),
            ("solenya-user-uuid", USER),
        ],
    );
    assert_eq!(r.status, 200, "GET: {}", r.body);
    let r = stack.envoy.request(
        "GET",
        "/graphql?query=mutation%7BcreateIndex%7Bid%7D%7D",
        &[("authorization", &auth)],
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, NOT_ENOUGH),
        "GET mutation"
    );
    // application/graphql.
    let hs = [
        ("authorization", auth.as_str()),
        ("content-type", "application/graphql"),
    ];
    let r = stack.envoy.request_with_body(
        "POST",
        "/graphql",
        &hs,
        &[b"mutation { createIndex { id } }"],
        Duration::ZERO,
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, NOT_ENOUGH),
        "application/graphql"
    );
    // A body over several writes.
    let body = query("mutation { trackEvents(e: []) { ok } }");
    let parts: Vec<&[u8]> = body.as_bytes().chunks(7).collect();
    let hs = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let r =
        stack
            .envoy
            .request_with_body("POST", "/graphql", &hs, &parts, Duration::from_millis(15));
    assert_eq!(
        (r.status, r.body.as_str()),
        (403, NOT_ENOUGH),
        "chunked body"
    );
    let writer = format!("Bearer {}", token("events:write:*"));
    let hs = [
        ("authorization", writer.as_str()),
        ("content-type", "application/json"),
    ];
    let r =
        stack
            .envoy
            .request_with_body("POST", "/graphql", &hs, &parts, Duration::from_millis(15));
    assert_eq!(r.status, 200, "chunked body, allowed: {}", r.body);
    assert_eq!(r.json()["body"].as_str(), Some(body.as_str()));
    // Over the limits, compressed, another content type.
    let huge = query(&format!(
        "{{ search(q: \"{}\") {{ id }} }}",
        "x".repeat(70_000)
    ));
    let deep = query(&format!(
        "{{ search {} id {} }}",
        "{ a ".repeat(40),
        " }".repeat(40)
    ));
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "huge",
            "application/json",
            huge,
            "GraphQL request body is over the 65536-byte limit",
        ),
        (
            "deep",
            "application/json",
            deep,
            "GraphQL document is nested deeper than 32",
        ),
        (
            "text",
            "text/plain",
            query("{ search { id } }"),
            "GraphQL requests need content-type application/json or application/graphql",
        ),
    ];
    for (case, ct, body, detail) in cases {
        let hs = [("authorization", auth.as_str()), ("content-type", ct)];
        let r = stack.envoy.request_with_body(
            "POST",
            "/graphql",
            &hs,
            &[body.as_bytes()],
            Duration::ZERO,
        );
        assert_eq!(r.status, 400, "{case}: {}", r.body);
        assert_eq!(r.body, json!({ "detail": detail }).to_string(), "{case}");
    }
    let hs = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("content-encoding", "gzip"),
    ];
    let r = stack
        .envoy
        .request_with_body("POST", "/graphql", &hs, &[b"\x1f\x8b"], Duration::ZERO);
    assert_eq!(
        r.body,
        r#"{"detail":"GraphQL request bodies must not be compressed"}"#
    );
    // No token: refused from the headers alone, before any of the body is sent.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", stack.envoy.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    conn.write_all(b"POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 50000\r\n\r\n")
        .expect("head");
    let mut got = [0u8; 512];
    let n = conn.read(&mut got).expect("a reply before the body");
    let head = String::from_utf8_lossy(&got[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    // A POST that ends with its head has an empty body: not GraphQL, decided at once.
    let r = stack.envoy.request(
        "POST",
        "/graphql",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
    );
    assert_eq!(r.status, 400, "empty body: {}", r.body);
    // Other methods are not GraphQL requests.
    let r = stack
        .envoy
        .request("PUT", "/graphql", &[("authorization", &auth)]);
    assert_eq!(
        r.body,
        r#"{"detail":"GraphQL requests are GET or POST, not PUT"}"#
    );
    // An invalid token likewise.
    let r = post(
        &stack,
        &[
            ("authorization", "Bearer a.b.c".into()),
            ("content-type", "application/json".into()),
        ],
        &query("{ search { id } }"),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (401, r#"{"detail":"Invalid or expired token"}"#)
    );
    // A request elsewhere is decided in the header phase as before, body and all.
    let r = stack.envoy.request_with_body(
        "POST",
        "/v1/other",
        &[("authorization", auth.as_str())],
        &[b"{\"x\":1}"],
        Duration::ZERO,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["body"].as_str(), Some("{\"x\":1}"));
}

/// Without `hold_head` (hosts that cannot hold a head for a filter reading the body), a
/// refused operation still never reaches the upstream: the request head goes on once the
/// token is valid, but the body — the operation — is held until its fields are judged,
/// and a refusal resets the upstream request before the server could read it.
#[test]
fn a_refused_operation_never_reaches_the_upstream() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let upstream = HttpServer::start(
        0,
        Arc::new(move |req: &crate::support::servers::Seen| {
            if !req.body.is_empty() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            (200, vec![], b"{}".to_vec())
        }),
    )
    .expect("upstream");
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let mut o = Options::new(plugin(rules()), upstream.port, jwks_server.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let envoy = Envoy::start(&o);
    let auth = format!("Bearer {}", token("index:read:*"));
    let hs = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let mutation = query("mutation { createIndex(name: \"a\") { id } }");
    for gap in [Duration::ZERO, Duration::from_millis(20)] {
        let parts: Vec<&[u8]> = mutation.as_bytes().chunks(16).collect();
        let r = envoy.request_with_body("POST", "/graphql", &hs, &parts, gap);
        assert_eq!((r.status, r.body.as_str()), (403, NOT_ENOUGH));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the upstream read a refused operation"
    );
    let search = query("{ search { id } }");
    let r = envoy.request_with_body(
        "POST",
        "/graphql",
        &hs,
        &[search.as_bytes()],
        Duration::ZERO,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
