//! End to end in the real Envoy: an MCP server behind bearer-guard — a real FastMCP server
//! (the MCP Python SDK, Streamable HTTP, `tests/support/mcp_server.py`) and its real
//! `ClientSession` with a bearer token (`tests/support/mcp_client.py`), both from the
//! project's virtualenv (`make deps`). Rules per JSON-RPC method and tool, the audience
//! bound to the server's resource identifier, tool/prompt/resource lists filtered to what
//! the caller may use (over JSON and over server-sent events), and the bypass attempts.
//! List filtering on the wasm host runs `bearer_guard_lists.wasm`.

use crate::common::*;
use crate::support::envoy::{envoy_bin, wasm_path};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The MCP server's resource identifier.
const RESOURCE: &str = "https://mcp.example.com/mcp";
const META: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
const NOT_ENOUGH: &str = r#"{"detail":"Not enough permissions"}"#;
const INVALID: &str = r#"{"detail":"Invalid or expired token"}"#;

/// The FastMCP server, stopped on drop.
struct McpServer {
    child: Child,
    port: u16,
    calls: PathBuf,
}

impl McpServer {
    /// Starts it answering with JSON (`json`) or server-sent events, and waits until it
    /// listens.
    fn start(json: bool) -> McpServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("bearer-guard-mcp-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let calls = dir.join("calls");
        let _ = std::fs::remove_file(&calls);
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/mcp_server.py");
        let child = Command::new(envoy_bin().with_file_name("python"))
            .args([script, &port.to_string(), if json { "json" } else { "sse" }])
            .arg(&calls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the project's virtualenv python (make deps installs mcp)");
        let server = McpServer { child, port, calls };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the MCP server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The tools that ran, in order.
    fn ran(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rules: `delete_index` needs `index:delete`, `export_items` `items:export`, the `audit`
/// prompt `audit:read`, private resources `keys:read`; every other MCP message
/// `tools:call`, with lists filtered; the transport (GET, DELETE, the client's
/// responses) the path's rule. Every rule wants the token issued for this server.
fn config(limits: Value) -> Value {
    let res = json!(["{resource}"]);
    let mut c = plugin(vec![
        json!({"name": "mcp-delete", "match": {"prefix": "/mcp", "mcp": {"tools": ["delete_index"]}},
               "permissions": ["index:delete"], "audiences": res}),
        json!({"name": "mcp-export", "match": {"prefix": "/mcp", "mcp": {"tools": ["export_items"]}},
               "permissions": ["items:export"], "audiences": res}),
        json!({"name": "mcp-audit", "match": {"prefix": "/mcp", "mcp": {"prompts": ["audit"]}},
               "permissions": ["audit:read"], "audiences": res}),
        json!({"name": "mcp-private", "match": {"prefix": "/mcp", "mcp": {"resources": ["file:///private/"]}},
               "permissions": ["keys:read"], "audiences": res}),
        json!({"name": "mcp", "match": {"prefix": "/mcp", "mcp": {}},
               "permissions": ["tools:call"], "audiences": res, "filter_lists": true}),
        json!({"name": "mcp-transport", "match": {"prefix": "/mcp"},
               "permissions": ["tools:call"], "audiences": res}),
    ]);
    c["protected_resources"] = json!([{"match": {"path_prefix": "/mcp"}, "resource": RESOURCE,
        "authorization_servers": ["https://accounts.example.com"]}]);
    c["mcp"] = limits;
    c
}

/// A token for this server with these permissions.
fn token(permissions: &[&str]) -> String {
    token_with(json!({"aud": [AUD, RESOURCE], "permissions": permissions}))
}

/// Envoy with the filter in front of `server` (the wasm host runs the module that sees
/// responses).
fn stack(server: &McpServer, limits: Value, concurrency: usize) -> Stack {
    let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks server");
    let upstream = server.port;
    let lists = wasm_path().with_file_name("bearer_guard_lists.wasm");
    Stack::with_options(config(limits), jwks, |o| {
        o.upstream_port = upstream;
        o.concurrency = concurrency;
        o.stats_tags = true;
        if !o.native {
            o.wasm = Some(lists);
        }
    })
}

fn post(stack: &Stack, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut hs = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    hs.extend_from_slice(headers);
    stack
        .envoy
        .request_with_body("POST", "/mcp", &hs, &[body.as_bytes()], Duration::ZERO)
}

fn call(tool: &str, id: u32) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": tool, "arguments": {"index": "main"}}})
}

/// The MCP SDK's client through Envoy: one JSON value per step.
fn client(stack: &Stack, token: &str, steps: &[&str]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/mcp_client.py");
    let url = format!("http://127.0.0.1:{}/mcp", stack.envoy.port);
    let out = Command::new(envoy_bin().with_file_name("python"))
        .args([script, &url, token])
        .args(steps)
        .output()
        .expect("the project's virtualenv python (make deps)");
    assert!(
        out.status.success(),
        "the MCP client failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.envoy.log()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// What a real client sees and runs, over JSON answers and over event streams: lists show
/// exactly what the token may use, an allowed call runs, a refused one never reaches the
/// server.
#[test]
fn a_real_client_sees_and_runs_only_what_its_token_allows() {
    for json_answers in [true, false] {
        let server = McpServer::start(json_answers);
        let stack = stack(&server, json!({}), 2);
        let mode = if json_answers { "json" } else { "sse" };
        let caller = token(&["tools:call"]);
        let seen = client(
            &stack,
            &caller,
            &["list", "prompts", "resources", "call:search_items"],
        );
        assert_eq!(
            seen,
            vec![
                json!({"tools": ["search_items"]}),
                json!({"prompts": ["summary"]}),
                json!({"resources": ["file:///public/readme.md"]}),
                json!({"call": "search_items", "text": "found chairs"}),
            ],
            "{mode}"
        );
        let admin = token(&["tools:call", "index:delete", "keys:read"]);
        let seen = client(&stack, &admin, &["list", "resources", "call:delete_index"]);
        assert_eq!(
            seen,
            vec![
                json!({"tools": ["search_items", "delete_index"]}),
                json!({"resources": ["file:///public/readme.md", "file:///private/keys.md"]}),
                json!({"call": "delete_index", "text": "deleted main"}),
            ],
            "{mode}"
        );
        // The caller's refused call: 403 naming the scope, and the tool never ran.
        let r = post(
            &stack,
            &[("authorization", &format!("Bearer {caller}"))],
            &call("delete_index", 9).to_string(),
        );
        expect(
            &format!("{mode}: refused call"),
            &r,
            403,
            Some(NOT_ENOUGH),
            Some(&format!(
                "Bearer error=\"insufficient_scope\", scope=\"index:delete\", resource_metadata=\"{META}\""
            )),
        );
        assert_eq!(server.ran(), ["search_items", "delete_index"], "{mode}");
        // Counted by method, and the lists filtered.
        let counted = stack.envoy.wait_until(Duration::from_secs(5), || {
            let s = stack.envoy.filter_stats();
            let n = |k: &str| s.get(k).copied().unwrap_or(0);
            n("mcp_messages_denied.tools_call") == 1
                && n("mcp_messages_allowed.tools_call") == 2
                && n("mcp_lists_filtered") == 5
                && n("mcp_list_items_hidden") == 5
        });
        assert!(counted, "{mode}: {:?}", stack.envoy.filter_stats());
        // Prometheus sees the method as a label (the stats tags envoy/ ships).
        let prometheus = http(stack.envoy.admin, "GET", "/stats/prometheus", &[])
            .expect("/stats/prometheus")
            .body;
        let series = prometheus.lines().find(|l| {
            l.starts_with("bearer_guard_mcp_messages_denied{")
                && l.contains(r#"mcp_method="tools_call""#)
                && l.contains(r#"bearer_guard_config="bearer_guard""#)
        });
        assert!(
            series.is_some_and(|l| l.ends_with(" 1")),
            "{mode}: {series:?}"
        );
    }
}

/// The bypass attempts: each is refused before the server, which runs nothing.
#[test]
fn bypass_attempts_never_reach_the_server() {
    let server = McpServer::start(true);
    let stack = stack(&server, json!({"max_body_bytes": 4096}), 1);
    let caller = token(&["tools:call"]);
    let auth = format!("Bearer {caller}");
    let bad = |detail: &str| json!({ "detail": detail }).to_string();
    let forbidden_www = format!(
        "Bearer error=\"insufficient_scope\", scope=\"index:delete\", resource_metadata=\"{META}\""
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let rows: Vec<(&str, String, u16, String)> = vec![
        (
            "a forbidden tool in a batch",
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, call("delete_index", 2)])
                .to_string(),
            403,
            NOT_ENOUGH.into(),
        ),
        (
            "a call hidden in a notification",
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_index"}})
                .to_string(),
            403,
            NOT_ENOUGH.into(),
        ),
        (
            "a method in another case",
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"delete_index"}}"#
                .into(),
            400,
            bad(r#"method "Tools/Call" is spelled "tools/call""#),
        ),
        (
            "a method with a trailing space",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"delete_index"}}"#
                .into(),
            400,
            bad("method must be 1 to 256 bytes without spaces, control or invisible characters"),
        ),
        (
            "a tool name in another case",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Delete_Index"}}"#
                .into(),
            400,
            bad(r#"params.name "Delete_Index" is spelled "delete_index""#),
        ),
        (
            "params.name twice",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_items","name":"delete_index"}}"#
                .into(),
            400,
            bad("MCP request body is not a JSON-RPC message (or a batch of them), or has duplicate keys"),
        ),
        (
            "method twice",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_index"}}"#
                .into(),
            400,
            bad("MCP request body is not a JSON-RPC message (or a batch of them), or has duplicate keys"),
        ),
        (
            "a protected resource spelled another way (the server's URL parser reads it as file:///private/keys.md)",
            json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                   "params": {"uri": "FILE:///private/keys.md"}})
                .to_string(),
            400,
            bad("params.uri must be a URI in its normalized form, without spaces, dot segments or encoded dots and slashes"),
        ),
        (
            "a body over the limit",
            big,
            400,
            bad("MCP request body is over the 4096-byte limit"),
        ),
    ];
    for (case, body, status, reply) in &rows {
        let r = post(&stack, &[("authorization", &auth)], body);
        let www = (*status == 403).then_some(forbidden_www.as_str());
        expect(case, &r, *status, Some(reply), www);
    }
    let r = post(
        &stack,
        &[("authorization", &auth)],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read",
                "params": {"uri": "file:///private/keys.md"}})
        .to_string(),
    );
    expect(
        "the protected resource itself",
        &r,
        403,
        Some(NOT_ENOUGH),
        Some(&format!(
            "Bearer error=\"insufficient_scope\", scope=\"keys:read\", resource_metadata=\"{META}\""
        )),
    );
    let r = post(
        &stack,
        &[("authorization", &auth), ("content-encoding", "gzip")],
        &call("delete_index", 1).to_string(),
    );
    expect(
        "a compressed body",
        &r,
        400,
        Some(&bad("MCP request bodies must not be compressed")),
        None,
    );
    // A token for another MCP server: 401 naming this server's metadata.
    let elsewhere = token_with(json!({"aud": [AUD, "https://other.example.com/mcp"],
                                      "permissions": ["tools:call"]}));
    let r = post(
        &stack,
        &[("authorization", &format!("Bearer {elsewhere}"))],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
    );
    expect(
        "a token for another server",
        &r,
        401,
        Some(INVALID),
        Some(&format!(
            "Bearer error=\"invalid_token\", resource_metadata=\"{META}\""
        )),
    );
    // GET (the event stream) and DELETE are the path rule's.
    let reader = token(&["items:read"]);
    for method in ["GET", "DELETE"] {
        let r = stack.envoy.request(
            method,
            "/mcp",
            &[("authorization", &format!("Bearer {reader}"))],
        );
        assert_eq!(r.status, 403, "{method} without tools:call: {}", r.body);
    }
    assert!(server.ran().is_empty(), "ran {:?}", server.ran());
}

/// A list answer larger than `mcp.max_list_bytes` is replaced by a 502, never passed on
/// unfiltered, and counted; other answers pass.
#[test]
fn a_list_too_large_to_filter_is_refused() {
    for json_answers in [true, false] {
        let server = McpServer::start(json_answers);
        let stack = stack(&server, json!({"max_list_bytes": 256}), 1);
        let auth = format!("Bearer {}", token(&["tools:call", "index:delete"]));
        let r = post(
            &stack,
            &[("authorization", &auth), ("x-request-id", "list-1")],
            &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
        );
        expect(
            "too large",
            &r,
            502,
            Some(
                r#"{"detail":"The MCP server's list answer is over the size limit","request_id":"list-1"}"#,
            ),
            None,
        );
        assert!(!r.body.contains("delete_index"));
        assert!(
            stack.envoy.wait_until(Duration::from_secs(5), || stack
                .envoy
                .filter_stat("mcp_lists_refused")
                == 1),
            "{:?}",
            stack.envoy.filter_stats()
        );
        // A call's answer is not a list: it passes whatever its size.
        let r = post(
            &stack,
            &[("authorization", &auth)],
            &call("delete_index", 2).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("deleted main"), "{}", r.body);
    }
}

/// The main wasm module never sees responses: it refuses a configuration that filters
/// lists, naming the rule and the module that can (the native module filters them
/// itself).
#[test]
fn the_main_wasm_module_refuses_to_filter_lists() {
    if crate::support::envoy::native() {
        return;
    }
    let server = McpServer::start(true);
    let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks server");
    let mut o = Options::new(config(json!({})), server.port, jwks.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    let err = Envoy::try_start(&o).err().expect("refused");
    assert!(
        err.contains("rules[6].filter_lists: this module does not see responses; load bearer_guard_lists.wasm"),
        "{err}"
    );
}
