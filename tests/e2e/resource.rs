//! End to end in the real Envoy: protected-resource metadata (RFC 9728) — the document the
//! filter serves, the `resource_metadata` every 401 names, the `scope` a 403 names — and
//! step-up authentication (RFC 9470), at one and four workers; then a real OAuth client
//! (the MCP Python SDK's discovery) finds the authorization server from a 401.

use crate::common::*;
use crate::support::envoy::envoy_bin;
use crate::support::servers::HttpServer;
use serde_json::{json, Value};
use std::sync::Arc;

/// The explicit resource, for every path outside `/mcp`.
const API: &str = "https://api.example.com";
const API_META: &str = "https://api.example.com/.well-known/oauth-protected-resource";
/// The derived resource on the `localhost` authority (the harness's default `host`).
const MCP_META: &str = "http://localhost/.well-known/oauth-protected-resource/mcp";

/// Rules for `/mcp` (a scope) and `/admin` (a step-up and a scope), and the resources:
/// `/mcp` derived from the request for the authorities `extra` allows, every other path
/// the explicit `https://api.example.com`.
fn config(authorization_server: &str, allowed: &[String]) -> Value {
    let mut c = plugin(vec![
        json!({"name": "mcp", "match": {"prefix": "/mcp"}, "permissions": ["tools:call"]}),
        json!({"name": "admin", "match": {"prefix": "/admin"}, "permissions": ["admin:write"],
               "acr_values": ["phrh"], "max_age_s": 300}),
    ]);
    c["protected_resources"] = json!([
        {"match": {"path_prefix": "/mcp"}, "allowed_authorities": allowed,
         "authorization_servers": [authorization_server], "resource_name": "Tools"},
        {"resource": API, "authorization_servers": ["https://accounts.example.com"]}
    ]);
    c
}

fn www_meta(base: &str, meta: &str) -> String {
    if base.contains(' ') {
        format!("{base}, resource_metadata=\"{meta}\"")
    } else {
        format!("{base} resource_metadata=\"{meta}\"")
    }
}

/// A request and the reply it must get.
struct Row {
    case: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    status: u16,
    /// The exact body (`None`: the upstream answered).
    body: Option<String>,
    www: Option<String>,
}

fn row(case: &'static str, path: &'static str, token: Option<String>, status: u16) -> Row {
    Row {
        case,
        method: "GET",
        path,
        headers: token
            .map(|t| vec![("authorization", format!("Bearer {t}"))])
            .unwrap_or_default(),
        status,
        body: None,
        www: None,
    }
}

impl Row {
    fn body(mut self, b: &str) -> Row {
        self.body = Some(b.to_string());
        self
    }
    fn www(mut self, w: String) -> Row {
        self.www = Some(w);
        self
    }
    fn header(mut self, k: &'static str, v: &str) -> Row {
        self.headers.push((k, v.to_string()));
        self
    }
    fn method(mut self, m: &'static str) -> Row {
        self.method = m;
        self
    }
}

const STEP_UP: &str = r#"{"detail":"Stronger authentication required"}"#;
const UNKNOWN: &str = r#"{"detail":"Unknown resource"}"#;

fn rows() -> Vec<Row> {
    let now = now();
    let t = |extra: Value| Some(token_with(extra));
    let level = "Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\", acr_values=\"phrh\", max_age=300";
    let age = "Bearer error=\"insufficient_user_authentication\", error_description=\"More recent authentication is required\", acr_values=\"phrh\", max_age=300";
    let mcp_doc = json!({"resource": "http://localhost/mcp",
        "authorization_servers": ["https://as.example.com"], "scopes_supported": ["tools:call"],
        "bearer_methods_supported": ["header"], "resource_name": "Tools"});
    let api_doc = json!({"resource": API, "authorization_servers": ["https://accounts.example.com"],
        "scopes_supported": ["tools:call", "admin:write"], "bearer_methods_supported": ["header"]});
    vec![
        row("no token under /mcp names the document", "/mcp", None, 401)
            .body(REQUIRES_AUTH)
            .www(www_meta("Bearer", MCP_META)),
        row("an expired token too", "/mcp/x", Some(expired_token()), 401)
            .body(INVALID)
            .www(www_meta("Bearer error=\"invalid_token\"", MCP_META)),
        row("a missing scope is named", "/mcp", t(json!({})), 403)
            .body(NOT_ENOUGH)
            .www(www_meta(
                "Bearer error=\"insufficient_scope\", scope=\"tools:call\"",
                MCP_META,
            )),
        row(
            "the scope passes",
            "/mcp",
            t(json!({"permissions": ["tools:call"]})),
            200,
        ),
        // Poisoning: another authority is never echoed into a challenge or a document.
        row("another authority: no resource_metadata", "/mcp", None, 401)
            .header("host", "evil.test")
            .body(REQUIRES_AUTH)
            .www("Bearer".into()),
        row(
            "another authority: no document",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            404,
        )
        .header("host", "evil.test")
        .body(UNKNOWN),
        row(
            "the derived document",
            "/.well-known/oauth-protected-resource/mcp?x=1",
            None,
            200,
        )
        .body(&mcp_doc.to_string()),
        row(
            "the explicit document",
            "/.well-known/oauth-protected-resource",
            None,
            200,
        )
        .body(&api_doc.to_string()),
        row(
            "no such resource",
            "/.well-known/oauth-protected-resource/nope",
            None,
            404,
        )
        .body(UNKNOWN),
        row(
            "a trailing slash is another resource",
            "/.well-known/oauth-protected-resource/",
            None,
            404,
        )
        .body(UNKNOWN),
        row(
            "documents are read-only",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            405,
        )
        .method("POST")
        .body(r#"{"detail":"Method not allowed"}"#),
        row(
            "the explicit resource names its document",
            "/v1/other",
            None,
            401,
        )
        .body(REQUIRES_AUTH)
        .www(www_meta("Bearer", API_META)),
        // Step-up: every way to miss the level or the age, then the scope after it.
        row(
            "no acr",
            "/admin",
            t(json!({"permissions": ["admin:write"], "auth_time": now})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(level, API_META)),
        row(
            "another acr",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": "pwd", "auth_time": now})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(level, API_META)),
        row(
            "acr in a list",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": ["phrh"], "auth_time": now})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(level, API_META)),
        row(
            "acr in another case",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": "PHRH", "auth_time": now})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(level, API_META)),
        row(
            "no auth_time",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": "phrh"})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(age, API_META)),
        row(
            "a stale sign-in",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": "phrh", "auth_time": now - 600})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(age, API_META)),
        row(
            "auth_time as a string",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": "phrh", "auth_time": now.to_string()})),
            401,
        )
        .body(STEP_UP)
        .www(www_meta(age, API_META)),
        row(
            "a strong, fresh sign-in without the scope",
            "/admin",
            t(json!({"acr": "phrh", "auth_time": now})),
            403,
        )
        .body(NOT_ENOUGH)
        .www(www_meta(
            "Bearer error=\"insufficient_scope\", scope=\"admin:write\"",
            API_META,
        )),
        row(
            "a strong, fresh sign-in with the scope",
            "/admin",
            t(json!({"permissions": ["admin:write"], "acr": "phrh", "auth_time": now - 10})),
            200,
        ),
        row("public routes are untouched", "/health", None, 200),
    ]
}

fn check(stack: &Stack, workers: usize) {
    for r in rows() {
        let case = format!("{} ({workers} workers)", r.case);
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = stack.envoy.request(r.method, r.path, &headers);
        match &r.body {
            Some(body) if r.status == 200 => {
                // A document: exact JSON, its cache lifetime, no challenge.
                assert_eq!(reply.status, 200, "{case}: {}", reply.body);
                let want: Value = serde_json::from_str(body).expect("expected JSON");
                assert_eq!(reply.json(), want, "{case}");
                assert_eq!(
                    reply.header("content-type"),
                    Some("application/json"),
                    "{case}"
                );
                assert_eq!(
                    reply.header("cache-control"),
                    Some("public, max-age=3600"),
                    "{case}"
                );
            }
            Some(body) => expect(&case, &reply, r.status, Some(body), r.www.as_deref()),
            None => {
                assert_eq!(reply.status, r.status, "{case}: {}", reply.body);
                assert_eq!(reply.header("www-authenticate"), None, "{case}");
            }
        }
        if r.status == 405 {
            assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{case}");
        }
    }
    // HEAD (by curl, which knows a HEAD reply has no body): the document's headers only.
    let url = format!(
        "http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp",
        stack.envoy.port
    );
    let out = std::process::Command::new("curl")
        .args(["-s", "-I", "-H", "host: localhost", &url])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "HEAD: {head}");
    assert!(
        head.contains("content-type: application/json"),
        "HEAD: {head}"
    );
}

#[test]
fn documents_challenges_and_step_up_at_one_and_four_workers() {
    for workers in [1, 4] {
        let stack = Stack::start_with(
            config("https://as.example.com", &["localhost".to_string()]),
            workers,
        );
        check(&stack, workers);
    }
}

#[test]
fn without_protected_resources_replies_are_unchanged() {
    let mut c = config("https://as.example.com", &["localhost".to_string()]);
    c.as_object_mut().map(|o| o.remove("protected_resources"));
    let stack = Stack::start(c);
    let r = stack.envoy.request("GET", "/mcp", &[]);
    expect("no resource", &r, 401, Some(REQUIRES_AUTH), WWW_BEARER);
    let token = token_with(json!({}));
    let r = stack.envoy.get_with_token("/mcp", &token);
    expect("no resource", &r, 403, Some(NOT_ENOUGH), WWW_SCOPE);
    // The well-known path is an ordinary path again: judged by the rules.
    let r = stack
        .envoy
        .request("GET", "/.well-known/oauth-protected-resource/mcp", &[]);
    expect("no resource", &r, 401, Some(REQUIRES_AUTH), WWW_BEARER);
}

/// The MCP SDK's client discovery (`tests/support/prm_client.py`, run by the project's
/// virtualenv where `make deps` installs `mcp`) from a 401 of bearer-guard to the
/// authorization server's metadata.
#[test]
fn a_real_oauth_client_discovers_the_authorization_server() {
    // The authorization server's metadata (RFC 8414) on loopback.
    let issuer = Arc::new(std::sync::Mutex::new(String::new()));
    let seen = Arc::clone(&issuer);
    let server = HttpServer::start(
        0,
        Arc::new(move |req: &crate::support::servers::Seen| {
            let issuer = seen.lock().map(|s| s.clone()).unwrap_or_default();
            if req.url == "/.well-known/oauth-authorization-server" {
                let doc = json!({"issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "response_types_supported": ["code"],
                    "code_challenge_methods_supported": ["S256"]});
                (
                    200,
                    vec![("content-type".into(), "application/json".into())],
                    doc.to_string().into_bytes(),
                )
            } else {
                (404, vec![], Vec::new())
            }
        }),
    )
    .expect("authorization server");
    let as_url = format!("http://127.0.0.1:{}", server.port);
    if let Ok(mut s) = issuer.lock() {
        *s = as_url.clone();
    }
    let port = free_port();
    let jwks = crate::support::servers::JwksServer::start(
        0,
        crate::support::servers::JwksMode::Serve(jwks(&[&keys().0])),
    )
    .expect("jwks server");
    let stack = Stack::with_options(config(&as_url, &[format!("127.0.0.1:{port}")]), jwks, |o| {
        o.port = port
    });
    let python = envoy_bin().with_file_name("python");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/prm_client.py");
    let url = format!("http://127.0.0.1:{}/mcp", stack.envoy.port);
    let out = std::process::Command::new(&python)
        .args([script, &url])
        .output()
        .expect("the project's virtualenv python (make deps)");
    assert!(
        out.status.success(),
        "the MCP SDK client failed (make deps installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let learned: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let meta = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp");
    assert_eq!(
        learned,
        json!({"status": 401, "resource_metadata": meta,
               "resource": format!("http://127.0.0.1:{port}/mcp"),
               "authorization_server": format!("{as_url}/"),
               "issuer": format!("{as_url}/"),
               "token_endpoint": format!("{as_url}/token"),
               "scope": "tools:call"})
    );
}
