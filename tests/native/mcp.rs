//! MCP natively: two workers on one store judge JSON-RPC messages by their rules and
//! filter the lists their server answers — the same items on either worker for the same
//! token, another token's items for another token — and refuse what cannot be filtered.

use crate::support::fixtures::{vm_jwks_body, vm_provider, vm_token, AUD, T0};
use crate::vm::{fate, store, Worker};
use bearer_guard::{Effect, Headers, Request, ResponsePlan};
use serde_json::{json, Value};

const RESOURCE: &str = "https://mcp.test/mcp";

fn plugin() -> Value {
    let res = json!(["{resource}"]);
    json!({
        "providers": [vm_provider("idp")],
        "mcp": {"max_list_bytes": 1024},
        "protected_resources": [{"match": {"path_prefix": "/mcp"}, "resource": RESOURCE,
            "authorization_servers": ["https://idp.test"]}],
        "rules": [
            {"name": "delete", "match": {"path": "/mcp", "mcp": {"tools": ["delete_index"]}},
             "permissions": ["index:delete"], "audiences": res},
            {"name": "mcp", "match": {"path": "/mcp", "mcp": {}}, "permissions": ["tools:call"],
             "audiences": res, "filter_lists": true},
            {"name": "transport", "match": {"path": "/mcp"}, "permissions": ["tools:call"]}
        ]
    })
}

fn token(sub: &str, permissions: &[&str], aud: &str) -> String {
    vm_token(sub, json!({"aud": [AUD, aud], "permissions": permissions}))
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
const TOOLS: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_items"},{"name":"delete_index"},{"name":"Delete_Index"}]}}"#;

impl Worker {
    /// A POST to `/mcp` with `body`, whole: the effects of its head and of its body.
    fn mcp(&mut self, now: u64, context: u32, token: &str, body: &str) -> Vec<Effect> {
        let request = Request {
            method: "POST".into(),
            path: "/mcp".into(),
            authority: "mcp.test".into(),
            request_id: format!("req-{context}"),
            headers: Headers::from_pairs([
                ("authorization", format!("Bearer {token}")),
                ("content-type", "application/json".into()),
                ("accept-encoding", "gzip".into()),
            ]),
            ..Default::default()
        };
        let mut out = self.vm.on_request(now, context, request, &mut self.host);
        if fate(&out, context).as_deref() == Some("continue") || out.is_empty() {
            let owned = body.as_bytes().to_vec();
            let read = move || owned.clone();
            out.extend(self.vm.on_request_body(
                now,
                context,
                (body.len(), true),
                &read,
                &mut self.host,
            ));
        }
        out
    }

    /// The server's answer to `context`: what the worker does with its head and body.
    fn answer(
        &mut self,
        context: u32,
        content_type: &str,
        encoding: Option<&str>,
        body: &str,
    ) -> (ResponsePlan, ResponsePlan) {
        let head = self.vm.on_response_headers(
            context,
            (200, Some(content_type), encoding, Some(body.len())),
        );
        let owned = body.as_bytes().to_vec();
        let read = move || owned.clone();
        let rest = self
            .vm
            .on_response_body(T0 + 50, context, (body.len(), true), &read);
        (head, rest)
    }
}

fn names(plan: &ResponsePlan) -> Vec<String> {
    let ResponsePlan::Replace(body) = plan else {
        panic!("not filtered: {plan:?}");
    };
    let v: Value = serde_json::from_slice(body).expect("JSON");
    v["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn workers_on_one_store_filter_a_list_alike_for_one_token() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(), T0);
    let mut b = Worker::new(s.clone(), &plugin(), T0);
    let caller = token("u1", &["tools:call"], RESOURCE);
    // The first request waits for the keys on worker A.
    let first = a.mcp(T0, 1, &caller, LIST);
    assert_eq!(fate(&first, 1).as_deref(), Some("pause"), "{first:?}");
    let fetch = a.calls_to("jwks")[0];
    let resumed = a.respond(T0 + 1, fetch, "200", &vm_jwks_body());
    assert_eq!(
        fate(&resumed, 1).as_deref(),
        Some("continue"),
        "{resumed:?}"
    );
    let judged = a.body(T0 + 2, 1, LIST, true);
    assert_eq!(fate(&judged, 1).as_deref(), Some("continue"), "{judged:?}");
    // The server must answer uncompressed: accept-encoding is removed.
    assert!(
        resumed.iter().chain(&judged).any(|e| matches!(e,
            Effect::Header { context: 1, name, value: None } if name == "accept-encoding")),
        "{resumed:?} {judged:?}"
    );
    let (head, body) = a.answer(1, "application/json", None, TOOLS);
    assert_eq!(head, ResponsePlan::Hold);
    assert_eq!(
        names(&body),
        ["search_items"],
        "another case of a name a rule knows is hidden too"
    );
    // Worker B: the keys from the store, the same list for the same token.
    // (it waits for the keys A published, adopted on its next tick).
    let on_b = b.mcp(T0 + 3, 7, &caller, LIST);
    assert_eq!(fate(&on_b, 7).as_deref(), Some("pause"), "{on_b:?}");
    assert_eq!(fate(&b.tick(T0 + 3), 7).as_deref(), Some("continue"));
    assert_eq!(
        fate(&b.body(T0 + 3, 7, LIST, true), 7).as_deref(),
        Some("continue")
    );
    assert!(b.calls_to("jwks").is_empty(), "one fetch per process");
    let (_, body_b) = b.answer(7, "application/json", None, TOOLS);
    assert_eq!(names(&body_b), names(&body), "the workers disagree");
    // Another token, another list: the same server answer shows delete_index.
    let admin = token("u2", &["tools:call", "index:delete"], RESOURCE);
    assert_eq!(
        fate(&b.mcp(T0 + 4, 8, &admin, LIST), 8).as_deref(),
        Some("continue")
    );
    let (_, admin_body) = b.answer(8, "application/json", None, TOOLS);
    assert_eq!(names(&admin_body), ["search_items", "delete_index"]);
    // Over server-sent events.
    assert_eq!(
        fate(&b.mcp(T0 + 5, 9, &caller, LIST), 9).as_deref(),
        Some("continue")
    );
    let sse = format!("event: message\ndata: {TOOLS}\n\n");
    let (head, body) = b.answer(9, "text/event-stream", None, &sse);
    assert_eq!(head, ResponsePlan::Hold);
    let ResponsePlan::Replace(filtered) = body else {
        panic!("{body:?}")
    };
    let text = String::from_utf8(filtered).expect("utf-8");
    assert!(text.starts_with("event: message\ndata: {"), "{text}");
    assert!(
        text.contains("search_items") && !text.contains("delete_index"),
        "{text}"
    );
    // A call's answer is not held, nor is any response of a stream without a list.
    assert_eq!(
        fate(
            &b.mcp(
                T0 + 6,
                10,
                &admin,
                r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_index"}}"#
            ),
            10
        )
        .as_deref(),
        Some("continue")
    );
    let (head, body) = b.answer(10, "application/json", None, TOOLS);
    assert_eq!((head, body), (ResponsePlan::Pass, ResponsePlan::Pass));
}

#[test]
fn what_cannot_be_filtered_is_refused_never_passed() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(), T0);
    let caller = token("u1", &["tools:call"], RESOURCE);
    a.mcp(T0, 1, &caller, LIST);
    let fetch = a.calls_to("jwks")[0];
    a.respond(T0 + 1, fetch, "200", &vm_jwks_body());
    a.body(T0 + 2, 1, LIST, true);
    let status = |p: &ResponsePlan| match p {
        ResponsePlan::Reply(r) => r.status,
        _ => 0,
    };
    // Compressed, in spite of the removed accept-encoding.
    let (head, _) = a.answer(1, "application/json", Some("gzip"), TOOLS);
    assert_eq!(status(&head), 502);
    // Neither JSON nor an event stream.
    assert_eq!(
        fate(&a.mcp(T0 + 3, 2, &caller, LIST), 2).as_deref(),
        Some("continue")
    );
    let (head, _) = a.answer(2, "text/html", None, TOOLS);
    assert_eq!(status(&head), 502);
    // Over mcp.max_list_bytes (1024): announced, or found while reading.
    assert_eq!(
        fate(&a.mcp(T0 + 4, 3, &caller, LIST), 3).as_deref(),
        Some("continue")
    );
    let big = TOOLS.replace("search_items", &"s".repeat(2000));
    let (head, _) = a.answer(3, "application/json", None, &big);
    assert_eq!(status(&head), 502);
    assert_eq!(
        fate(&a.mcp(T0 + 5, 4, &caller, LIST), 4).as_deref(),
        Some("continue")
    );
    assert_eq!(
        a.vm.on_response_headers(4, (200, Some("application/json"), None, None)),
        ResponsePlan::Hold
    );
    let owned = big.as_bytes().to_vec();
    let read = move || owned.clone();
    let plan = a.vm.on_response_body(T0 + 6, 4, (big.len(), false), &read);
    assert_eq!(status(&plan), 502, "refused before the end");
    // Not JSON.
    assert_eq!(
        fate(&a.mcp(T0 + 7, 5, &caller, LIST), 5).as_deref(),
        Some("continue")
    );
    let (_, body) = a.answer(5, "application/json", None, "{\"result\":");
    assert_eq!(status(&body), 502);
    // An error answer passes (no list in it).
    assert_eq!(
        fate(&a.mcp(T0 + 8, 6, &caller, LIST), 6).as_deref(),
        Some("continue")
    );
    assert_eq!(
        a.vm.on_response_headers(6, (500, Some("application/json"), None, None)),
        ResponsePlan::Pass
    );
}

#[test]
fn a_token_for_another_server_is_refused() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(), T0);
    let first = a.mcp(T0, 1, &token("u1", &["tools:call"], RESOURCE), LIST);
    let fetch = a.calls_to("jwks")[0];
    a.respond(T0 + 1, fetch, "200", &vm_jwks_body());
    assert_eq!(fate(&first, 1).as_deref(), Some("pause"));
    let other = token("u1", &["tools:call"], "https://other.test/mcp");
    let out = a.mcp(T0 + 2, 2, &other, LIST);
    let reply = out.iter().find_map(|e| match e {
        Effect::Reply { context: 2, reply } => Some(reply),
        _ => None,
    });
    let reply = reply.expect("answered");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, r#"{"detail":"Invalid or expired token"}"#);
    let www = reply
        .headers
        .iter()
        .find(|(k, _)| *k == "www-authenticate")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        www,
        Some("Bearer error=\"invalid_token\", resource_metadata=\"https://mcp.test/.well-known/oauth-protected-resource/mcp\"")
    );
}

/// A worker of its own store with the keys loaded (by a first request, answered).
fn loaded(plugin: &Value) -> Worker {
    let mut w = Worker::new(store(), plugin, T0);
    let first = w.mcp(T0, 100, &token("u0", &["tools:call"], RESOURCE), LIST);
    assert_eq!(fate(&first, 100).as_deref(), Some("pause"));
    let fetch = w.calls_to("jwks")[0];
    w.respond(T0 + 1, fetch, "200", &vm_jwks_body());
    w
}

#[test]
fn an_audited_message_in_a_batch_does_not_turn_filtering_off() {
    let mut p = plugin();
    p["rules"][0]["mode"] = json!("audit");
    let mut w = loaded(&p);
    let caller = token("u1", &["tools:call"], RESOURCE);
    let batch = format!(
        "[{LIST},{}]",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_index"}}"#
    );
    let out = w.mcp(T0 + 2, 1, &caller, &batch);
    assert_eq!(
        fate(&out, 1).as_deref(),
        Some("continue"),
        "audited: {out:?}"
    );
    let (head, body) = w.answer(1, "application/json", None, TOOLS);
    // Held and filtered (an audited tool stays listed: its call would go on too).
    assert_eq!(head, ResponsePlan::Hold);
    assert_eq!(names(&body), ["search_items", "delete_index"]);
}

#[test]
fn an_answer_before_the_request_is_judged_is_refused() {
    // The head goes on before the body (hold_head off): the server could answer first.
    let mut w = loaded(&plugin());
    let caller = token("u1", &["tools:call"], RESOURCE);
    let request = Request {
        method: "POST".into(),
        path: "/mcp".into(),
        authority: "mcp.test".into(),
        request_id: "early".into(),
        headers: Headers::from_pairs([
            ("authorization", format!("Bearer {caller}")),
            ("content-type", "application/json".into()),
            ("accept-encoding", "gzip".into()),
        ]),
        ..Default::default()
    };
    let head = w.vm.on_request(T0 + 2, 1, request, &mut w.host);
    assert_eq!(fate(&head, 1).as_deref(), Some("continue"), "{head:?}");
    assert!(
        head.iter().any(|e| matches!(e,
            Effect::Header { context: 1, name, value: None } if name == "accept-encoding")),
        "asked uncompressed before the body: {head:?}"
    );
    assert!(w.vm.filters_responses());
    let plan =
        w.vm.on_response_headers(1, (200, Some("application/json"), None, None));
    let ResponsePlan::Reply(reply) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.body,
        r#"{"detail":"The MCP server answered before its request was judged","request_id":"early"}"#
    );
    // A 202 with a body is a list answer like any other.
    assert_eq!(
        fate(&w.mcp(T0 + 3, 2, &caller, LIST), 2).as_deref(),
        Some("continue")
    );
    let head =
        w.vm.on_response_headers(2, (202, Some("application/json"), None, Some(TOOLS.len())));
    assert_eq!(head, ResponsePlan::Hold);
}

#[test]
fn other_methods_are_refused_and_transport_methods_take_the_path_rule() {
    let mut w = loaded(&plugin());
    let caller = token("u1", &["tools:call"], RESOURCE);
    let reader = token("u2", &["items:read"], RESOURCE);
    let send = |w: &mut Worker, context: u32, method: &str, token: &str| {
        let request = Request {
            method: method.into(),
            path: "/mcp".into(),
            authority: "mcp.test".into(),
            headers: Headers::from_pairs([("authorization", format!("Bearer {token}"))]),
            ..Default::default()
        };
        let out = w.vm.on_request(T0 + 2, context, request, &mut w.host);
        out.iter().find_map(|e| match e {
            Effect::Reply { context: c, reply } if *c == context => {
                Some(format!("{} {}", reply.status, reply.body))
            }
            Effect::Continue { context: c } if *c == context => Some("continue".into()),
            _ => None,
        })
    };
    assert_eq!(
        send(&mut w, 1, "PUT", &caller).as_deref(),
        Some(r#"400 {"detail":"MCP requests are POST, GET, DELETE, HEAD or OPTIONS, not PUT"}"#)
    );
    for (i, method) in ["GET", "DELETE", "HEAD", "OPTIONS"].into_iter().enumerate() {
        let c = 10 + 2 * i as u32;
        assert_eq!(
            send(&mut w, c, method, &caller).as_deref(),
            Some("continue"),
            "{method}"
        );
        let refused = send(&mut w, c + 1, method, &reader);
        assert!(
            refused.as_deref().is_some_and(|r| r.starts_with("403 ")),
            "{method}: {refused:?}"
        );
    }
}

#[test]
fn an_answer_in_several_parts_is_held_until_complete_then_filtered() {
    let mut w = loaded(&plugin());
    let caller = token("u1", &["tools:call"], RESOURCE);
    assert_eq!(
        fate(&w.mcp(T0 + 2, 1, &caller, LIST), 1).as_deref(),
        Some("continue")
    );
    assert_eq!(
        w.vm.on_response_headers(1, (200, Some("application/json"), None, None)),
        ResponsePlan::Hold
    );
    let half = TOOLS.len() / 2;
    let first = TOOLS.as_bytes()[..half].to_vec();
    let read = move || first.clone();
    assert_eq!(
        w.vm.on_response_body(T0 + 3, 1, (half, false), &read),
        ResponsePlan::Hold,
        "the first part is held"
    );
    let whole = TOOLS.as_bytes().to_vec();
    let read = move || whole.clone();
    let plan = w.vm.on_response_body(T0 + 4, 1, (TOOLS.len(), true), &read);
    assert_eq!(names(&plan), ["search_items"], "the whole answer filtered");
}
