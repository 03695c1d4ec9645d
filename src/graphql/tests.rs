//! Unit tests of the GraphQL reader.

use super::*;

fn fields(doc: &str, name: Option<&str>) -> Result<Vec<(&'static str, String)>, String> {
    document_fields(doc, name, &Limits::default())
        .map(|v| {
            v.into_iter()
                .map(|f| (f.operation.name(), f.name))
                .collect()
        })
        .map_err(|e| e.0)
}

fn q(names: &[&str]) -> Vec<(&'static str, String)> {
    names.iter().map(|n| ("query", n.to_string())).collect()
}

#[test]
fn root_fields_by_name_through_fragments() {
    type Case<'a> = (&'a str, Option<&'a str>, Result<Vec<(&'a str, String)>, ()>);
    let cases: Vec<Case> = vec![
        ("{ items { id } }", None, Ok(q(&["items"]))),
        ("query { x: items { id } }", None, Ok(q(&["items"]))),
        (
            "query Q { items { id } search }",
            None,
            Ok(q(&["items", "search"])),
        ),
        (
            "{ ...F } fragment F on Query { items }",
            None,
            Ok(q(&["items"])),
        ),
        (
            "{ ...A } fragment A on Query { ...B } fragment B on Query { y: items }",
            None,
            Ok(q(&["items"])),
        ),
        (
            "{ ... on Query { items } ... { search } }",
            None,
            Ok(q(&["items", "search"])),
        ),
        ("{ __typename }", None, Ok(q(&["__typename"]))),
        (
            "{ __schema { types { name } } }",
            None,
            Ok(q(&["__schema"])),
        ),
        (
            "mutation M { createIndex(name: \"items\") { id } }",
            None,
            Ok(vec![("mutation", "createIndex".to_string())]),
        ),
        (
            "subscription { events }",
            None,
            Ok(vec![("subscription", "events".to_string())]),
        ),
        // Strings and comments that merely contain a field name are not fields.
        (
            "# items\n{ search(q: \"items\") }",
            None,
            Ok(q(&["search"])),
        ),
        (
            "{ search(q: \"\"\"mutation { createIndex }\"\"\") }",
            None,
            Ok(q(&["search"])),
        ),
        // Several operations: operationName selects one.
        (
            "query A { items } mutation B { createIndex }",
            Some("B"),
            Ok(vec![("mutation", "createIndex".to_string())]),
        ),
        (
            "query A { items } mutation B { createIndex }",
            Some("A"),
            Ok(q(&["items"])),
        ),
        (
            "query A { items } mutation B { createIndex }",
            None,
            Err(()),
        ),
        (
            "query A { items } mutation B { createIndex }",
            Some("C"),
            Err(()),
        ),
        ("query A { items } query A { search }", Some("A"), Err(())),
        ("{ items }", Some("Other"), Err(())),
        // Cycles, unknown and twice-defined fragments, broken documents.
        ("{ ...A } fragment A on Query { ...A }", None, Err(())),
        (
            "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
            None,
            Err(()),
        ),
        ("{ ...Missing }", None, Err(())),
        (
            "{ ...A } fragment A on Query { a } fragment A on Query { b }",
            None,
            Err(()),
        ),
        ("{ items ", None, Err(())),
        ("", None, Err(())),
        ("fragment F on Query { items }", None, Err(())),
        ("type Query { items: Int }", None, Err(())),
    ];
    for (doc, name, want) in cases {
        let got = fields(doc, name);
        match want {
            Ok(w) => assert_eq!(got, Ok(w), "{doc}"),
            Err(()) => assert!(got.is_err(), "{doc}: {got:?}"),
        }
    }
}

#[test]
fn depth_and_token_limits() {
    let limits = Limits::default();
    let deep = format!("{{ items {}x{} }}", "{ a ".repeat(40), " }".repeat(40));
    let err = document_fields(&deep, None, &limits).expect_err("too deep");
    assert!(err.contains("nested deeper"), "{err}");
    let many = format!("{{ items {{ {} }} }}", "a ".repeat(20_000));
    let err = document_fields(&many, None, &limits).expect_err("too many tokens");
    assert!(err.contains("tokens"), "{err}");
    let real = "query Items($q: String!) { items(query: $q, first: 20) { edges { node { id title price { amount currency } images { url } } } pageInfo { hasNextPage endCursor } } }";
    assert_eq!(fields(real, None), Ok(q(&["items"])));
}

fn post(content_type: &str, body: &str) -> (Request, Vec<u8>) {
    let req = Request::for_test("/graphql", &[("content-type", content_type)]);
    let mut req = req;
    req.method = "POST".into();
    (req, body.as_bytes().to_vec())
}

#[test]
fn transports_and_batches() {
    let limits = Limits::default();
    let ok = |req: &Request, body: &[u8]| {
        root_fields(req, body, &limits).map(|v| v.into_iter().map(|f| f.name).collect::<Vec<_>>())
    };
    let (r, b) = post(
        "application/json",
        r#"{"query":"{ items { id } }","variables":{}}"#,
    );
    assert_eq!(ok(&r, &b), Ok(vec!["items".to_string()]));
    let (r, b) = post(
        "application/json; charset=utf-8",
        r#"{"query":"query A { items } mutation B { createIndex }","operationName":"B"}"#,
    );
    assert_eq!(ok(&r, &b), Ok(vec!["createIndex".to_string()]));
    let (r, b) = post("application/graphql", "{ search }");
    assert_eq!(ok(&r, &b), Ok(vec!["search".to_string()]));
    let (r, b) = post(
        "application/json",
        r#"[{"query":"{ items }"},{"query":"mutation { createIndex }"}]"#,
    );
    assert_eq!(
        ok(&r, &b),
        Ok(vec!["items".to_string(), "createIndex".to_string()])
    );
    let mut get = Request::for_test("/graphql?query=%7B%20items%20%7D", &[]);
    get.method = "GET".into();
    assert_eq!(ok(&get, b""), Ok(vec!["items".to_string()]));
    let refused: Vec<(&str, &str)> = vec![
        (
            "application/json",
            r#"{"query":"{ a }","query":"mutation { b }"}"#,
        ),
        (
            "application/json",
            r#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}"#,
        ),
        ("application/json", r#"{"query":1}"#),
        ("application/json", r#"{"query":"{ a }","operationName":7}"#),
        ("application/json", "[]"),
        ("application/json", "[1]"),
        ("application/json", "not json"),
        ("text/plain", "{ a }"),
    ];
    for (ct, body) in refused {
        let (r, b) = post(ct, body);
        assert!(root_fields(&r, &b, &limits).is_err(), "{ct} {body}");
    }
    // What a refusal says.
    for (body, detail) in [
        (
            r#"{"extensions":{"persistedQuery":{"version":1}}}"#,
            "persisted queries must carry their query",
        ),
        (r#"{"variables":{}}"#, "GraphQL query is required"),
    ] {
        let (r, b) = post("application/json", body);
        assert_eq!(
            root_fields(&r, &b, &limits),
            Err(Refusal::from(detail)),
            "{body}"
        );
    }
    let mut twice = Request::for_test("/graphql?query=%7Ba%7D&query=%7Bb%7D", &[]);
    twice.method = "GET".into();
    assert!(root_fields(&twice, b"", &limits).is_err());
    let gz = {
        let mut r = Request::for_test(
            "/graphql",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        );
        r.method = "POST".into();
        r
    };
    assert!(check_headers(&gz, &limits).is_err());
    // A second content-encoding header, or a list of encodings, hides nothing.
    for encodings in [&["identity", "gzip"][..], &["identity, br"][..]] {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(encodings.iter().map(|e| ("content-encoding", *e)));
        let mut r = Request::for_test("/graphql", &headers);
        r.method = "POST".into();
        assert!(check_headers(&r, &limits).is_err(), "{encodings:?}");
    }
    let (r, _) = post("application/json", "");
    let big = vec![b' '; limits.max_body_bytes + 1];
    assert!(root_fields(&r, &big, &limits).is_err());
}

#[test]
fn field_conditions() {
    let f = |op, name: &str| RootField {
        operation: op,
        name: name.into(),
    };
    let items = FieldMatch {
        operation: Some(OperationKind::Query),
        fields: vec!["items".into()],
    };
    assert!(items.matches(&f(OperationKind::Query, "items")));
    assert!(!items.matches(&f(OperationKind::Mutation, "items")));
    assert!(!items.matches(&f(OperationKind::Query, "search")));
    let any = FieldMatch::default();
    assert!(any.matches(&f(OperationKind::Subscription, "x")));
    assert!(
        !any.matches(&f(OperationKind::Query, "__typename")),
        "__typename is the endpoint's"
    );
}

#[test]
fn the_token_reader_agrees_with_apollo_parsers_syntax_tree() {
    let limits = Limits::default();
    let seeds = [
        "{ items { id } }",
        "query Q($a: Int = 3, $b: [String!]! @d) @x(y: {z: [1, 2.5, \"s\", $a, ENUM, null]}) { x: items(f: 1) @skip(if: true) { id ... on T { a } } search }",
        "mutation M { ...F ... on Mutation { createIndex(input: {name: \"\"\"block \\\"\"\" still\"\"\"}) { id } } } fragment F on Mutation { a: updateIndex { id } }",
        "query A { a } query B { b } fragment X on Query { ...Y } fragment Y on Query { c }",
        "subscription S { events(filter: {kinds: [A, B]}) { id } }",
        "# comment { mutation }\n{ search(q: \"mutation { x }\") }",
        "{ ...A } fragment A on Query { ...A }",
    ];
    let names = [None, Some("Q"), Some("M"), Some("A"), Some("B"), Some("S")];
    // A seeded xorshift: the same cases every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let inserts = [
        "{", "}", "(", ")", "[", "]", ":", "...", "@", "$", "!", "\"", "#", "\n", " ", "on",
        "fragment", "query", "mutation", "x",
    ];
    // (Commas are not inserted: they are ignored tokens, and apollo-parser refuses
    // `...,F` where the specification reads `... F`.)
    let (mut cases, mut agreed_ok) = (0, 0);
    for seed in seeds {
        for _ in 0..400 {
            let mut doc: Vec<char> = seed.chars().collect();
            for _ in 0..(next() % 3 + 1) {
                let at = (next() % (doc.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 if at < doc.len() => {
                        let c = doc[at];
                        doc.insert(at, c);
                    }
                    _ => {
                        let ins = inserts[(next() % inserts.len() as u64) as usize];
                        for (k, c) in ins.chars().enumerate() {
                            doc.insert(at + k, c);
                        }
                    }
                }
            }
            let doc: String = doc.into_iter().collect();
            for name in names {
                cases += 1;
                let ours = document_fields(&doc, name, &limits);
                let theirs = reference::root_fields(&doc, name, &limits);
                // Never more lenient, never other fields; stricter is allowed (apollo-
                // parser's syntax tree tolerates some errors, e.g. `@skip(if true)`).
                match (&ours, &theirs) {
                    (Ok(a), Ok(b)) => {
                        assert_eq!(a, b, "{doc:?} {name:?}");
                        agreed_ok += 1;
                    }
                    (Ok(_), Err(_)) => {
                        panic!("{doc:?} {name:?}: ours {ours:?}, apollo-parser {theirs:?}")
                    }
                    (Err(_), _) => {}
                }
            }
        }
        for name in names {
            let (ours, theirs) = (
                document_fields(seed, name, &limits),
                reference::root_fields(seed, name, &limits),
            );
            assert_eq!(ours.ok(), theirs.ok(), "{seed} {name:?}");
        }
    }
    assert!(
        agreed_ok > 100,
        "{agreed_ok} of {cases} cases parsed: the mutations are too destructive"
    );
}

#[test]
fn limits_are_exact_at_their_boundaries() {
    let limits = Limits::default();
    assert_eq!(limits.max_body_bytes, 65_536);
    let mut get = Request::for_test("/graphql", &[]);
    get.method = "GET".into();
    assert!(!needs_body(&get));
    let with_length = |n: usize| {
        let len = n.to_string();
        let mut r = Request::for_test(
            "/graphql",
            &[
                ("content-type", "application/json"),
                ("content-length", &len),
            ],
        );
        r.method = "POST".into();
        r
    };
    assert!(needs_body(&with_length(0)));
    let over = too_large(&limits);
    assert_eq!(&*over, "GraphQL request body is over the 65536-byte limit");
    assert_eq!(check_headers(&with_length(65_535), &limits), Ok(()));
    assert_eq!(check_headers(&with_length(65_536), &limits), Ok(()));
    assert_eq!(
        check_headers(&with_length(65_537), &limits),
        Err(over.clone())
    );
    // The body itself: at the limit it is read (and judged), past it never.
    let req = with_length(0);
    let padded = |n: usize| {
        let q = br#"{"query":"{ a }"}"#;
        let mut b = q.to_vec();
        b.resize(n, b' ');
        b
    };
    let names = |r: Result<Vec<RootField>, Refusal>| r.map(|v| v.len());
    assert_eq!(names(root_fields(&req, &padded(65_536), &limits)), Ok(1));
    assert_eq!(
        names(root_fields(&req, &padded(65_537), &limits)),
        Err(over)
    );
    // Batches: up to MAX_BATCH elements.
    let batch = |n: usize| {
        let one = r#"{"query":"{ a }"}"#;
        format!("[{}]", vec![one; n].join(",")).into_bytes()
    };
    assert_eq!(
        names(root_fields(&req, &batch(MAX_BATCH), &limits)),
        Ok(MAX_BATCH)
    );
    assert!(root_fields(&req, &batch(MAX_BATCH + 1), &limits).is_err());
}

/// A default value and the directives of a variable definition are constant: a variable
/// there is refused, as the reference parser refuses it (found by the `graphql` fuzz
/// target: the fast reader was more lenient).
#[test]
fn variables_are_refused_where_values_are_constant() {
    let limits = Limits::default();
    let cases = [
        ("query Q($a: Int = $b) { x }", false),
        ("query Q($a: Int = [1 {y: $b}]) { x }", false),
        ("query Q($a: Int @d(x: $b)) { x }", false),
        (
            "query Q($a: Int = [1 {y: 2}] @d(x: 3)) { x(a: $a) @e(f: $a) }",
            true,
        ),
    ];
    for (doc, valid) in cases {
        let ours = document_fields(doc, None, &limits);
        let theirs = reference::root_fields(doc, None, &limits);
        assert_eq!(ours.is_ok(), valid, "{doc}: {ours:?}");
        assert_eq!(theirs.is_ok(), valid, "{doc}: reference {theirs:?}");
    }
}
