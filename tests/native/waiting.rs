//! Decisions made of parts cannot leak: a GraphQL request whose root fields are judged by
//! rules of two providers, one of them with a revocation list that has not loaded yet.
//! A field that waits makes the whole request wait — in the pipeline and in the VM, with
//! the head forwarded or held — and the request is decided when the list arrives or is
//! declared unavailable.

use crate::support::fixtures::{vm_jwks_body, vm_provider, vm_token, T0, T0_S, TIMEOUT_MS};
use crate::vm::{fate, store, Worker};
use bearer_guard::Denial;
use bearer_guard::Effect;
use bearer_guard::KeyAvailability;
use bearer_guard::KeySet;
use bearer_guard::RustBackend;
use bearer_guard::{decide, Decision, FixedKeys, Inputs, RevocationLookup, Wait};
use bearer_guard::{Body, Headers, Request};
use bearer_guard::{RevocationLimits, RevocationList};
use serde_json::{json, Value};

/// The configuration: providers `A` and `B` on one issuer, `B` with a revocation
/// list that denies when unavailable; field `a` judged by `A`, field `b` by `B` with
/// `b:write`.
fn plugin(hold_head: bool) -> Value {
    let mut b = vm_provider("B");
    b["revocation"] = json!({"cluster": "revocation", "authority": "idp.test", "path": "/revoked",
                             "timeout_ms": TIMEOUT_MS, "on_unavailable": "deny"});
    json!({
        "providers": [vm_provider("A"), b],
        "graphql": {"hold_head": hold_head},
        "rules": [
            {"name": "a", "match": {"path": "/graphql", "graphql": {"fields": ["a"]}},
             "providers": ["A"]},
            {"name": "b", "match": {"path": "/graphql", "graphql": {"fields": ["b"]}},
             "providers": ["B"], "permissions": ["b:write"]}]
    })
}

/// A token valid at [`T0`] with these permissions.
fn token(permissions: &[&str]) -> String {
    vm_token("user_ada", json!({"permissions": permissions}))
}

fn graphql_request(token: &str, query: &str) -> Request {
    Request {
        method: "POST".into(),
        path: "/graphql".into(),
        authority: "api.test".into(),
        request_id: "req-1".into(),
        headers: Headers::from_pairs([
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".into()),
        ]),
        body: Body::Read(json!({ "query": query }).to_string().into_bytes()),
        ..Default::default()
    }
}

/// A revocation list in one state for every provider that names one.
struct List(KeyAvailability, Option<RevocationList>);

impl RevocationLookup for List {
    fn revocation(&self, _provider: usize) -> (KeyAvailability, Option<&RevocationList>) {
        (self.0, self.1.as_ref())
    }
}

#[test]
fn a_field_that_waits_makes_the_whole_request_wait_in_the_pipeline() {
    let cfg = bearer_guard::parse_config(plugin(false).to_string().as_bytes(), &|_| None)
        .expect("config");
    let (keys, _) = KeySet::parse(&vm_jwks_body(), 1 << 16).expect("jwks");
    let keys = FixedKeys(keys);
    let empty = RevocationList::parse(
        b"{}",
        &RevocationLimits {
            max_entries: 10,
            clock_skew_s: 60,
        },
        T0_S,
    )
    .expect("an empty list");
    let now_s = T0_S;
    let reader = token(&[]);
    let writer = token(&["b:write"]);
    let wait_for_b = Decision::Await(Wait::Revocation { provider: 1 });
    /// A query with a token, B's list in one state, and the decision.
    struct Row<'a> {
        case: &'a str,
        query: &'a str,
        token: &'a str,
        /// The state of B's revocation list.
        availability: KeyAvailability,
        /// Whether the list (an empty one) has loaded.
        loaded: bool,
        want: Decision,
    }
    let rows = vec![
        Row {
            case: "{ b } while loading",
            query: "{ b }",
            token: &reader,
            availability: KeyAvailability::Loading,
            loaded: false,
            want: wait_for_b.clone(),
        },
        Row {
            case: "{ a b } while loading",
            query: "{ a b }",
            token: &reader,
            availability: KeyAvailability::Loading,
            loaded: false,
            want: wait_for_b.clone(),
        },
        Row {
            case: "{ b a } while loading",
            query: "{ b a }",
            token: &reader,
            availability: KeyAvailability::Loading,
            loaded: false,
            want: wait_for_b.clone(),
        },
        Row {
            case: "{ a b } by a writer while loading",
            query: "{ a b }",
            token: &writer,
            availability: KeyAvailability::Loading,
            loaded: false,
            want: wait_for_b.clone(),
        },
        Row {
            case: "{ a b } once unavailable",
            query: "{ a b }",
            token: &reader,
            availability: KeyAvailability::Unavailable,
            loaded: false,
            want: Decision::Deny(Denial::Unavailable),
        },
        Row {
            case: "{ a } while loading: B is not asked",
            query: "{ a }",
            token: &reader,
            availability: KeyAvailability::Loading,
            loaded: false,
            want: Decision::Allow { headers: vec![] },
        },
        Row {
            case: "{ a b } once loaded, without b:write",
            query: "{ a b }",
            token: &reader,
            availability: KeyAvailability::Ready,
            loaded: true,
            want: Decision::Deny(Denial::InsufficientPermissions),
        },
        Row {
            case: "{ a b } once loaded, with b:write",
            query: "{ a b }",
            token: &writer,
            availability: KeyAvailability::Ready,
            loaded: true,
            want: Decision::Allow { headers: vec![] },
        },
    ];
    for row in rows {
        let list = List(row.availability, row.loaded.then(|| empty.clone()));
        let inputs = Inputs::new(&cfg, &keys, &RustBackend, now_s).revocations(&list);
        let got = decide(&inputs, &graphql_request(row.token, row.query));
        assert_eq!(got.decision, row.want, "{}: {}", row.case, got.note);
    }
}

/// Keys loaded at [`T0`]; B's list fetch dispatched and not answered.
fn waiting_worker(hold_head: bool) -> (Worker, u32) {
    let mut w = Worker::new(store(), &plugin(hold_head), T0);
    w.tick(T0);
    let keys = w.calls_to("jwks");
    assert_eq!(keys.len(), 1, "one key source");
    w.respond(T0, keys[0], "200", &vm_jwks_body());
    // Provider B shares A's key source: it adopts the keys at the next tick.
    w.tick(T0 + 5);
    let lists = w.calls_to("revocation");
    assert_eq!(lists.len(), 1, "B's list is fetched at the first tick");
    (w, lists[0])
}

/// The head of `context` asking for `query`, then its whole body: the head's fate (the
/// head goes on, or is held) and the body's.
fn send(w: &mut Worker, now: u64, context: u32, token: &str, query: &str) -> (String, String) {
    let head = fate(&w.graphql(now, context, token), context).unwrap_or_default();
    let body = json!({ "query": query }).to_string();
    let body = fate(&w.body(now, context, &body, true), context).unwrap_or_default();
    (head, body)
}

fn replies(effects: &[Effect]) -> Vec<(u32, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { context, reply } => Some((*context, reply.status)),
            _ => None,
        })
        .collect()
}

#[test]
fn both_requests_wait_for_the_list_and_are_decided_when_it_arrives() {
    for hold_head in [false, true] {
        let (mut w, list) = waiting_worker(hold_head);
        let reader = token(&[]);
        let head = if hold_head { "pause" } else { "continue" };
        for (context, query) in [(1, "{ b }"), (2, "{ a b }")] {
            let (h, b) = send(&mut w, T0 + 10, context, &reader, query);
            assert_eq!(
                (h.as_str(), b.as_str()),
                (head, "pause"),
                "{query} (hold_head {hold_head}) waits for B's list"
            );
        }
        // `{ a }` needs no list: decided at once.
        assert_eq!(
            send(&mut w, T0 + 11, 3, &reader, "{ a }").1,
            "continue",
            "hold_head {hold_head}"
        );
        let done = w.respond(T0 + 20, list, "200", b"{}");
        assert_eq!(
            replies(&done),
            vec![(1, 403), (2, 403)],
            "hold_head {hold_head}: each answered by field b's rule"
        );
    }
}

#[test]
fn both_requests_are_refused_when_the_list_is_declared_unavailable() {
    for hold_head in [false, true] {
        let (mut w, list) = waiting_worker(hold_head);
        let writer = token(&["b:write"]);
        for (context, query) in [(1, "{ b }"), (2, "{ a b }")] {
            assert_eq!(send(&mut w, T0 + 10, context, &writer, query).1, "pause");
        }
        let done = w.respond(T0 + 20, list, "503", b"");
        assert_eq!(
            replies(&done),
            vec![(1, 500), (2, 500)],
            "hold_head {hold_head}: on_unavailable deny"
        );
        assert!(
            done.iter()
                .all(|e| !matches!(e, Effect::Continue { context: 1 | 2 })),
            "neither goes upstream: {done:?}"
        );
    }
}

/// A list server that never answers: the requests wait at most the fetch's timeout (and
/// its grace), then are refused — never let through.
#[test]
fn a_list_that_never_answers_refuses_the_waiting_request_after_its_deadline() {
    let (mut w, _list) = waiting_worker(true);
    assert_eq!(
        send(&mut w, T0 + 10, 1, &token(&["b:write"]), "{ a b }").1,
        "pause"
    );
    let mut answered = Vec::new();
    let mut now = T0 + 10;
    while answered.is_empty() && now < T0 + 10 + 3 * TIMEOUT_MS + 2_000 {
        now += 200;
        answered = replies(&w.tick(now));
    }
    assert_eq!(answered, vec![(1, 500)], "refused at {} ms", now - T0);
}

/// With `hold_head`, the head of a GraphQL request waits with its body; when no body
/// callback ever comes (Envoy's `allow_on_headers_stop_iteration` off) the request is
/// refused with 500 after `HELD_BODY_WAIT_MS` and the log says what to set. Once a body
/// callback has come to a held head, the VM knows the host holds heads.
#[test]
fn a_held_head_whose_body_never_comes_is_refused_and_explained() {
    use bearer_guard::HELD_BODY_WAIT_MS;
    let mut w = Worker::new(store(), &plugin(true), T0);
    w.tick(T0);
    let keys = w.calls_to("jwks");
    w.respond(T0, keys[0], "200", &vm_jwks_body());
    let lists = w.calls_to("revocation");
    w.respond(T0, lists[0], "200", b"{}");
    w.tick(T0 + 5);
    let writer = token(&["b:write"]);
    assert_eq!(
        fate(&w.graphql(T0 + 1, 1, &writer), 1).as_deref(),
        Some("pause")
    );
    assert!(
        replies(&w.tick(T0 + HELD_BODY_WAIT_MS)).is_empty(),
        "not yet"
    );
    let late = w.tick(T0 + 1 + HELD_BODY_WAIT_MS);
    assert_eq!(replies(&late), vec![(1, 500)]);
    assert!(late.iter().any(
        |e| matches!(e, Effect::Log(_, line) if line.contains("allow_on_headers_stop_iteration"))
    ));
    // A host that holds heads: the first body callback proves it, and a later slow body
    // is never cut short.
    assert_eq!(
        send(&mut w, T0 + 10_000, 2, &writer, "{ a b }"),
        ("pause".to_string(), "continue".to_string())
    );
    assert_eq!(
        fate(&w.graphql(T0 + 10_001, 3, &writer), 3).as_deref(),
        Some("pause")
    );
    assert!(replies(&w.tick(T0 + 10_001 + 2 * HELD_BODY_WAIT_MS)).is_empty());
    let body = json!({"query": "{ a b }"}).to_string();
    assert_eq!(
        fate(&w.body(T0 + 30_000, 3, &body, true), 3).as_deref(),
        Some("continue")
    );
}

/// A request with trailers ends with them: its body is judged then.
#[test]
fn trailers_end_the_body() {
    let mut w = Worker::new(store(), &plugin(true), T0);
    w.tick(T0);
    let keys = w.calls_to("jwks");
    w.respond(T0, keys[0], "200", &vm_jwks_body());
    let lists = w.calls_to("revocation");
    w.respond(T0, lists[0], "200", b"{}");
    w.tick(T0 + 5);
    let reader = token(&[]);
    for (context, query, want) in [(1, "{ a b }", "403"), (2, "{ a }", "continue")] {
        assert_eq!(
            fate(&w.graphql(T0 + 1, context, &reader), context).as_deref(),
            Some("pause")
        );
        let body = json!({ "query": query }).to_string();
        let part = fate(&w.body(T0 + 1, context, &body, false), context);
        assert_eq!(part.as_deref(), Some("pause"), "{query}: not the end yet");
        let bytes = body.into_bytes();
        let read = move |max: usize| bytes.iter().copied().take(max).collect::<Vec<u8>>();
        let done =
            w.vm.on_request_trailers(T0 + 2, context, &read, &mut w.host);
        assert_eq!(fate(&done, context).as_deref(), Some(want), "{query}");
    }
}
