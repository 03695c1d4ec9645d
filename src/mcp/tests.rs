use super::*;

fn spellings() -> Spellings {
    Spellings {
        methods: vec!["custom/run".into()],
        names: vec!["search_items".into(), "delete_index".into()],
    }
}

fn read(body: &str) -> Result<Vec<Message>, Refusal> {
    messages(body.as_bytes(), &Limits::default(), &spellings())
}

fn one(body: &str) -> Message {
    let mut all = read(body).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!(all.len(), 1, "{body}");
    all.remove(0)
}

fn refused(body: &str) -> String {
    match read(body) {
        Ok(m) => panic!("{body} was read: {m:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn messages_are_read_by_kind_method_and_target() {
    let call = one(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_items","arguments":{"q":"x"}}}"#,
    );
    assert_eq!(call, Message::call("tools/call", "search_items"));
    assert_eq!(call.describe(), "tools/call search_items");
    let list = one(r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#);
    assert_eq!(list.list, Some(ListKind::Tools));
    assert_eq!(list.kind, Kind::Request);
    let note = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(note.kind, Kind::Notification);
    assert_eq!(note.target, None);
    let answer = one(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
    assert_eq!(answer.kind, Kind::Response);
    assert_eq!(answer.describe(), "response");
    let read_uri = one(
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a.md"}}"#,
    );
    assert_eq!(read_uri.target.as_deref(), Some("file:///docs/a.md"));
    let prompt =
        one(r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"summary"}}"#);
    assert_eq!(prompt, Message::call("prompts/get", "summary"));
    let batch = read(
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_index"}}]"#,
    )
    .expect("batch");
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[1].target.as_deref(), Some("delete_index"));
}

#[test]
fn bypass_attempts_are_refused() {
    // Another case or a trailing space of a method or tool the filter knows: a server that
    // folds case or trims would run what no rule saw.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"search_items"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"search_items"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"Delete_Index"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_index "}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_index\u0000"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"CUSTOM/RUN"}"#,
    ] {
        refused(body);
    }
    // Duplicate keys: a permissive server runs the second.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_index"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_items","name":"delete_index"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_items"},"params":{"name":"delete_index"}}"#,
    ] {
        assert!(refused(body).contains("duplicate keys"), "{body}");
    }
    // A request hidden as something else: a method with a result, a response without an
    // id, a method that is not a string, params that are not an object.
    for body in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_index"},"result":{}}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":["tools/call"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["delete_index"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"tools/list"}"#,
        r#"{"id":1,"method":"tools/list"}"#,
        r#"[]"#,
        r#"[1]"#,
        r#""tools/call""#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"} trailing"#,
    ] {
        refused(body);
    }
    // A resource URI a prefix rule would misread.
    for uri in [
        "file:///public/../secret",
        "file:///public/%2e%2e/secret",
        "file:///public%2fsecret",
        "file:///public\\secret",
        "file:///public/ x",
    ] {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":uri}});
        refused(&body.to_string());
    }
    // Another spelling of a URI a server's URL parser reads as a protected one
    // (`FILE:`, no authority, `localhost`, an upper-case host, a default port).
    for uri in [
        "FILE:///private/keys.md",
        "file:/private/keys.md",
        "file:private/keys.md",
        "file://localhost/private/keys.md",
        "https://Docs.Example.com/private",
        "https://docs.example.com:443/private",
        "file:///private/keys.md\u{200B}",
        "not a uri",
    ] {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":uri}});
        assert!(
            refused(&body.to_string()).contains("normalized form"),
            "{uri}"
        );
    }
    for uri in [
        "file:///private/keys.md",
        "https://docs.example.com/private",
        "mcp:items/1",
    ] {
        let body = serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":uri}});
        assert_eq!(one(&body.to_string()).target.as_deref(), Some(uri));
    }
    // Invisible characters in a name, a method that is not ASCII.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete\u200b_index"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ufeffdelete_index"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/cal\u0142"}"#,
    ] {
        assert!(refused(body).contains("invisible"), "{body}");
    }
    // A batch past the bound.
    let many = format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#; MAX_BATCH + 1].join(",")
    );
    assert!(refused(&many).contains("batch"));
}

#[test]
fn bodies_are_bounded_and_headers_checked() {
    let limits = Limits {
        max_body_bytes: 64,
        ..Limits::default()
    };
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(64)
    );
    let err = messages(body.as_bytes(), &limits, &spellings()).expect_err("over the limit");
    assert_eq!(err.0, "MCP request body is over the 64-byte limit");
    let post = |headers: &[(&str, &str)]| {
        let mut r = Request::for_test("/mcp", headers);
        r.method = "POST".into();
        check_headers(&r, &limits).map_err(|e| e.0)
    };
    assert_eq!(post(&[("content-type", "application/json")]), Ok(()));
    assert_eq!(
        post(&[("content-type", "Application/JSON; charset=utf-8")]),
        Ok(())
    );
    assert!(post(&[("content-type", "text/plain")]).is_err());
    assert!(post(&[]).is_err());
    assert!(post(&[
        ("content-type", "application/json"),
        ("content-encoding", "gzip")
    ])
    .expect_err("compressed")
    .contains("compressed"));
    assert_eq!(
        post(&[
            ("content-type", "application/json"),
            ("content-encoding", "identity")
        ]),
        Ok(())
    );
    // A repeated content-encoding: every value counts.
    assert!(post(&[
        ("content-type", "application/json"),
        ("content-encoding", "identity"),
        ("content-encoding", "gzip")
    ])
    .is_err());
    assert!(post(&[
        ("content-type", "application/json"),
        ("content-encoding", "identity, gzip")
    ])
    .is_err());
    assert!(post(&[
        ("content-type", "application/json"),
        ("content-type", "text/plain")
    ])
    .is_err());
    assert!(post(&[
        ("content-type", "application/json"),
        ("content-length", "65")
    ])
    .is_err());
    assert_eq!(
        post(&[
            ("content-type", "application/json"),
            ("content-length", "64")
        ]),
        Ok(())
    );
}

fn cond(methods: &[&str], tools: &[&str], resources: &[&str], prompts: &[&str]) -> McpMatch {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    McpMatch {
        methods: v(methods),
        tools: v(tools),
        resources: v(resources),
        prompts: v(prompts),
    }
}

#[test]
fn conditions_match_methods_and_what_they_act_on() {
    let list = Message {
        kind: Kind::Request,
        method: Some("tools/list".into()),
        target: None,
        list: Some(ListKind::Tools),
    };
    let search = Message::call("tools/call", "search_items");
    let delete = Message::call("tools/call", "delete_index");
    let answer = Message {
        kind: Kind::Response,
        method: None,
        target: None,
        list: None,
    };
    let any = cond(&[], &[], &[], &[]);
    assert!(any.matches(&list) && any.matches(&delete));
    assert!(!any.matches(&answer), "responses are the path rule's");
    let deletes = cond(&[], &["delete_index"], &[], &[]);
    assert!(deletes.matches(&delete));
    assert!(!deletes.matches(&search));
    assert!(!deletes.matches(&list), "tools imply tools/call only");
    assert!(!deletes.may_list(ListKind::Tools));
    let lists = cond(&["tools/list", "tools/call"], &["search_items"], &[], &[]);
    assert!(lists.matches(&list) && lists.matches(&search));
    assert!(!lists.matches(&delete));
    assert!(lists.may_list(ListKind::Tools) && !lists.may_list(ListKind::Prompts));
    let docs = cond(&[], &[], &["file:///public/"], &[]);
    assert!(docs.matches(&Message::call("resources/read", "file:///public/a.md")));
    assert!(docs.matches(&Message::call("resources/subscribe", "file:///public/a.md")));
    assert!(!docs.matches(&Message::call("resources/read", "file:///private/a.md")));
    assert!(!docs.matches(&Message::call("tools/call", "file:///public/a.md")));
    let prompts = cond(&[], &[], &[], &["summary"]);
    assert!(prompts.matches(&Message::call("prompts/get", "summary")));
    assert!(!prompts.matches(&Message::call("prompts/get", "other")));
    assert!(!prompts.matches(&Message::call("tools/call", "summary")));
    // Methods alone: every tool, prompt or resource of them.
    let calls = cond(
        &["tools/call", "prompts/get", "resources/read"],
        &[],
        &[],
        &[],
    );
    assert!(calls.matches(&delete));
    assert!(calls.matches(&Message::call("prompts/get", "summary")));
    assert!(calls.matches(&Message::call("resources/read", "file:///a")));
    assert!(!calls.matches(&list));
    // A resource prefix binds the resource methods only.
    let mixed = cond(
        &["tools/call", "resources/read"],
        &[],
        &["file:///pub/"],
        &[],
    );
    assert!(mixed.matches(&delete));
    assert!(mixed.matches(&Message::call("resources/read", "file:///pub/a")));
    assert!(!mixed.matches(&Message::call("resources/read", "file:///a")));
    assert_eq!(
        lists.describe(),
        "mcp tools/list, tools/call; tools search_items"
    );
    assert_eq!(any.describe(), "mcp, any message");
}

#[test]
fn lists_keep_only_allowed_items() {
    let mut allow = |kind: ListKind, name: &str| kind == ListKind::Tools && name == "search_items";
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_items","inputSchema":{}},{"name":"delete_index"},{"title":"no name"}],"nextCursor":"c"}}"#;
    let out = filter_lists(body.as_bytes(), Media::Json, &[ListKind::Tools], &mut allow)
        .expect("filtered");
    assert_eq!(out.hidden, 2);
    let v: Value = serde_json::from_slice(&out.body).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search_items","inputSchema":{}}],"nextCursor":"c"}})
    );
    // An error answer has no list; a list the rule does not filter stays.
    let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
    let out = filter_lists(err.as_bytes(), Media::Json, &[ListKind::Tools], &mut allow)
        .expect("error answer");
    assert_eq!(out.hidden, 0);
    let prompts = r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"x"}]}}"#;
    let out = filter_lists(
        prompts.as_bytes(),
        Media::Json,
        &[ListKind::Tools],
        &mut allow,
    )
    .expect("other list");
    assert_eq!(out.hidden, 0);
    // Server-sent events: CRLF lines, a comment, an id, a JSON message split over two
    // data lines, and an empty priming event.
    let sse = "id: 1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\r\ndata: \"result\":{\"tools\":[{\"name\":\"delete_index\"},{\"name\":\"search_items\"}]}}\r\n\r\n: keepalive\r\ndata: \r\n\r\n";
    let out = filter_lists(
        sse.as_bytes(),
        Media::EventStream,
        &[ListKind::Tools],
        &mut allow,
    )
    .expect("sse");
    assert_eq!(out.hidden, 1);
    assert_eq!(
        String::from_utf8(out.body).expect("utf-8"),
        "event: message\ndata: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[{\"name\":\"search_items\"}]}}\n\n: keepalive\ndata: \n\n"
    );
    // A leading byte-order mark is no hiding place (a client's decoder drops it), and a
    // filtered answer's event ids are dropped (with one, a client could have the server
    // replay the answer unfiltered).
    let bom = format!("\u{FEFF}id: stream-1_0\ndata: {body}\n\n");
    let out = filter_lists(
        bom.as_bytes(),
        Media::EventStream,
        &[ListKind::Tools],
        &mut allow,
    )
    .expect("bom");
    let text = String::from_utf8(out.body).expect("utf-8");
    assert_eq!(out.hidden, 2, "{text}");
    assert!(
        !text.contains("delete_index") && !text.contains("stream-1_0"),
        "{text}"
    );
    assert!(text.starts_with("data: {"), "{text}");
    // Unreadable answers are refused, never passed unfiltered.
    for (body, media) in [
        ("not json", Media::Json),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"delete_index"}]}}"#,
            Media::Json,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"delete_index"}}}"#,
            Media::Json,
        ),
        ("42", Media::Json),
        ("data: {\"result\":\n\n", Media::EventStream),
    ] {
        assert!(
            filter_lists(body.as_bytes(), media, &[ListKind::Tools], &mut allow).is_err(),
            "{body}"
        );
    }
    let mut all = |_: ListKind, _: &str| true;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}},{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///a"},{"name":"no uri"}]}}]"#;
    let out = filter_lists(
        batch.as_bytes(),
        Media::Json,
        &[ListKind::Tools, ListKind::Resources],
        &mut all,
    )
    .expect("batch");
    assert_eq!(out.hidden, 1, "an item without its uri is dropped");
}

#[test]
fn media_types_and_callable_items() {
    assert_eq!(Media::of("application/json"), Some(Media::Json));
    assert_eq!(
        Media::of("text/event-stream; charset=utf-8"),
        Some(Media::EventStream)
    );
    assert_eq!(Media::of("text/html"), None);
    let s = spellings();
    assert!(callable(ListKind::Tools, "search_items", &s));
    assert!(!callable(ListKind::Tools, "Search_Items", &s));
    assert!(!callable(ListKind::Tools, "with space", &s));
    assert!(callable(ListKind::Resources, "file:///a.md", &s));
    assert!(!callable(ListKind::Resources, "file:///../a.md", &s));
    assert_eq!(ListKind::of("prompts/list"), Some(ListKind::Prompts));
    assert_eq!(ListKind::Resources.call_method(), "resources/read");
    assert_eq!(ListKind::Prompts.member(), "prompts");
    assert_eq!(ListKind::of("tools/call"), None);
}

#[test]
fn bounds_are_inclusive_and_every_message_shape_is_read() {
    assert_eq!(DEFAULT_MAX_BODY_BYTES, 1 << 20);
    assert_eq!(DEFAULT_MAX_LIST_BYTES, 1_048_576);
    assert_eq!(ListKind::of("resources/list"), Some(ListKind::Resources));
    assert_eq!(ListKind::of("tools/list"), Some(ListKind::Tools));
    // A body of exactly the limit is read; one byte more is not.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let exact = Limits {
        max_body_bytes: body.len(),
        ..Limits::default()
    };
    assert!(messages(body.as_bytes(), &exact, &spellings()).is_ok());
    let under = Limits {
        max_body_bytes: body.len() - 1,
        ..Limits::default()
    };
    assert!(messages(body.as_bytes(), &under, &spellings()).is_err());
    // A batch of exactly MAX_BATCH messages is read.
    let batch = format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#; MAX_BATCH].join(",")
    );
    assert_eq!(read(&batch).map(|m| m.len()), Ok(MAX_BATCH));
    // Ids: any integer (beyond i64 too, or negative) or string.
    for id in ["18446744073709551615", "-3", "\"x\""] {
        let m = one(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#));
        assert_eq!(m.kind, Kind::Request, "{id}");
    }
    // The client's answers: a result or an error, one of them.
    let err = one(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#);
    assert_eq!(err.kind, Kind::Response);
    // Names: 1 to MAX_NAME_BYTES bytes.
    let name = |n: usize| {
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a".repeat(n)}})
            .to_string()
    };
    assert_eq!(
        one(&name(MAX_NAME_BYTES)).target.map(|t| t.len()),
        Some(MAX_NAME_BYTES)
    );
    refused(&name(MAX_NAME_BYTES + 1));
    refused(&name(0));
    // URIs: up to MAX_URI_BYTES bytes.
    let uri = |n: usize| {
        let u = format!("file:///{}", "a".repeat(n - 8));
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":u}})
            .to_string()
    };
    assert_eq!(
        one(&uri(MAX_URI_BYTES)).target.map(|t| t.len()),
        Some(MAX_URI_BYTES)
    );
    refused(&uri(MAX_URI_BYTES + 1));
}
