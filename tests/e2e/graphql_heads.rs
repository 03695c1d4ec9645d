//! End to end in the real Envoy: a refused GraphQL request never reaches the upstream —
//! not even its head — whatever the body's framing, with an upstream that answers from
//! the head alone (and counts heads). Then the decision by parts across workers: a field
//! whose provider's revocation list is still loading makes the whole request wait, and a
//! list that never comes refuses it. Last, the two configurations without Envoy's
//! `allow_on_headers_stop_iteration`: `hold_head` says so (500 and a log line that says
//! what to set), and the buffer-filter recipe for hosts that cannot hold heads (Istio).

use crate::common::*;
use crate::support::envoy::{http_framed, Framing};
use crate::support::servers::HeadCounter;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const INDEX: &str = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const USER: &str = "01890a5d-ac96-774b-bcce-b302099a8057";
const FROM_HEAD: &str = r#"{"upstream":"head"}"#;
const USER_REQUIRED: &str = r#"{"detail":"Solenya-User-UUID header is required"}"#;

/// The items rule of `docs/configuration.md` (GraphQL rules), and every other field of the endpoint for a valid token.
fn items_plugin(hold_head: bool) -> Value {
    let mut p = plugin(vec![
        json!({"name": "items",
               "match": {"path": "/graphql", "graphql": {"operation": "query", "fields": ["items"]}},
               "headers": {"Solenya-Index-UUID": "uuid", "Solenya-User-UUID": "uuidv7"},
               "permissions": ["index:read:{header.solenya-index-uuid}"]}),
        json!({"name": "graphql", "match": {"path": "/graphql"}}),
    ]);
    p["graphql"] = json!({ "hold_head": hold_head });
    p
}

/// Envoy in front of a [`HeadCounter`], with request trailers passed on.
fn start(plugin: Value, adjust: impl FnOnce(&mut Options)) -> (JwksServer, HeadCounter, Envoy) {
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let upstream = HeadCounter::start().expect("upstream");
    let mut o = Options::new(plugin, upstream.port, jwks_server.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    o.hcm
        .push(("http_protocol_options", json!({"enable_trailers": true})));
    adjust(&mut o);
    let envoy = Envoy::start(&o);
    (jwks_server, upstream, envoy)
}

fn items_body() -> String {
    json!({"query": "{ items(first: 20) { edges { node { id } } } }"}).to_string()
}

/// The items query with or without the user header; its body split in 9-byte parts.
fn items_request(
    envoy: &Envoy,
    with_user: bool,
    gap: Duration,
    framing: Framing,
) -> std::io::Result<Reply> {
    let auth = format!("Bearer {}", token_with(json!({"scope": "index:read:*"})));
    let mut hs = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("solenya-index-uuid", INDEX),
    ];
    if with_user {
        hs.push(("solenya-user-uuid", USER));
    }
    let body = items_body();
    let parts: Vec<&[u8]> = body.as_bytes().chunks(9).collect();
    http_framed(envoy.port, ("POST", "/graphql"), &hs, &parts, gap, framing)
}

#[test]
fn a_refused_request_never_reaches_the_upstream_whatever_its_framing() {
    let (_jwks, upstream, envoy) = start(items_plugin(true), |_| {});
    let mut allowed = 0;
    for framing in [
        Framing::Length,
        Framing::Chunked,
        Framing::Trailers,
        Framing::Http2,
    ] {
        for gap in [Duration::ZERO, Duration::from_millis(15)] {
            let case = format!("{framing:?}, parts {gap:?} apart");
            let r = items_request(&envoy, false, gap, framing).expect("refused request");
            assert_eq!(
                (r.status, r.body.as_str()),
                (400, USER_REQUIRED),
                "{case}: refused by bearer-guard"
            );
            assert_eq!(
                upstream.heads().len(),
                allowed,
                "{case}: a head went upstream"
            );
            let r = items_request(&envoy, true, gap, framing).expect("allowed request");
            assert_eq!(
                (r.status, r.body.as_str()),
                (200, FROM_HEAD),
                "{case}: allowed"
            );
            allowed += 1;
            assert_eq!(
                upstream.heads().len(),
                allowed,
                "{case}: one head per allowed request"
            );
        }
    }
}

/// Providers A and B on one issuer; B's revocation list (`on_unavailable: deny`) comes
/// from the `revocation` cluster. Field `a` is A's, field `b` B's with `b:write`.
fn split_plugin() -> Value {
    let jwks = json!({"cluster": "jwks", "authority": "idp.test", "path": "/jwks",
                      "timeout_ms": 1500, "retry_max_s": 1});
    json!({
        "providers": [
            {"name": "A", "issuer": ISS, "algorithms": ["RS256"], "jwks": jwks},
            {"name": "B", "issuer": ISS, "algorithms": ["RS256"], "jwks": jwks,
             "revocation": {"cluster": "revocation", "authority": "idp.test", "path": "/revoked",
                            "timeout_ms": 6000, "on_unavailable": "deny"}}],
        "graphql": {"hold_head": true},
        "rules": [
            {"name": "a", "match": {"path": "/graphql", "graphql": {"fields": ["a"]}},
             "providers": ["A"]},
            {"name": "b", "match": {"path": "/graphql", "graphql": {"fields": ["b"]}},
             "providers": ["B"], "permissions": ["b:write"]}]
    })
}

/// Sends `query` with a token holding `permissions` from `n` threads at once (so several
/// workers take them); each reply's status and body.
fn burst(envoy: &Envoy, query: &str, permissions: &[&str], n: usize) -> Vec<(u16, String)> {
    let auth = format!(
        "Bearer {}",
        token_with(json!({ "permissions": permissions }))
    );
    let body = json!({ "query": query }).to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let hs = [
                        ("authorization", auth.as_str()),
                        ("content-type", "application/json"),
                    ];
                    let parts: Vec<&[u8]> = body.as_bytes().chunks(5).collect();
                    let r = http_framed(
                        envoy.port,
                        ("POST", "/graphql"),
                        &hs,
                        &parts,
                        Duration::from_millis(2),
                        Framing::Chunked,
                    )
                    .expect("reply");
                    (r.status, r.body)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

#[test]
fn a_field_waiting_for_a_list_holds_the_whole_request_on_every_worker() {
    for workers in [1, 4] {
        // The list answers slowly: `{ a b }` waits for it, then `b`'s rule refuses.
        let list = JwksServer::start(0, JwksMode::Slow(Duration::from_secs(3), "{}".into()))
            .expect("list server");
        let (_jwks, upstream, envoy) = start(split_plugin(), |o| {
            o.concurrency = workers;
            o.revocation_port = list.server.port;
        });
        let started = Instant::now();
        let refused = burst(&envoy, "{ a b }", &[], 2 * workers);
        let waited = started.elapsed();
        for (status, body) in &refused {
            assert_eq!(
                (*status, body.as_str()),
                (403, NOT_ENOUGH),
                "{workers} workers: {{ a b }} without b:write"
            );
        }
        assert!(
            waited >= Duration::from_millis(500),
            "{workers} workers: decided in {waited:?}, before the list came"
        );
        assert!(
            upstream.heads().is_empty(),
            "{workers} workers: {:?}",
            upstream.heads()
        );
        let allowed = burst(&envoy, "{ a b }", &["b:write"], workers);
        assert!(allowed.iter().all(|(s, _)| *s == 200), "{allowed:?}");
        assert_eq!(upstream.heads().len(), workers, "{workers} workers");
        drop(envoy);

        // The list never comes: `{ a b }` is refused, `{ a }` (no list needed) passes.
        list.set(JwksMode::Down);
        let (_jwks, upstream, envoy) = start(split_plugin(), |o| {
            o.concurrency = workers;
            o.revocation_port = list.server.port;
        });
        for (status, body) in burst(&envoy, "{ a b }", &["b:write"], 2 * workers) {
            assert_eq!(
                status, 500,
                "{workers} workers: {{ a b }} with the list down"
            );
            assert!(
                body.starts_with(
                    r#"{"detail":"Authentication service is unavailable","request_id":"#
                ),
                "{body}"
            );
        }
        assert!(
            upstream.heads().is_empty(),
            "{workers} workers: {:?}",
            upstream.heads()
        );
        let only_a = burst(&envoy, "{ a }", &[], workers);
        assert!(only_a.iter().all(|(s, _)| *s == 200), "{only_a:?}");
        assert_eq!(upstream.heads().len(), workers);
    }
}

/// `hold_head` where Envoy does not pass the body to a filter holding the head: the
/// request is refused after `HELD_BODY_WAIT_MS` (never forwarded), and the log says what
/// to set. The option is the wasm filter's: Envoy passes the body to a native filter
/// holding the head without it, and the request is decided at once.
#[test]
fn hold_head_without_the_envoy_option_fails_closed_and_says_why() {
    let (_jwks, upstream, envoy) = start(items_plugin(true), |o| o.hold_heads = false);
    let started = Instant::now();
    let r = items_request(&envoy, true, Duration::ZERO, Framing::Length).expect("reply");
    if native() {
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(upstream.heads().len(), 1);
        return;
    }
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["detail"].as_str(),
        Some("Authentication service is unavailable")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(4_500),
        "{:?}",
        started.elapsed()
    );
    assert!(upstream.heads().is_empty());
    assert!(envoy.wait_until(Duration::from_secs(3), || envoy
        .log_contains("allow_on_headers_stop_iteration: true")));
}

/// Hosts that cannot hold a head for a filter reading the body (Istio's `WasmPlugin`
/// today): `hold_head: false` and Envoy's buffer filter after bearer-guard keep a refused
/// request's head from the upstream.
#[test]
fn the_buffer_filter_recipe_keeps_heads_back_where_envoy_cannot_hold_them() {
    let buffer = json!({"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 65536}});
    let (_jwks, upstream, envoy) = start(items_plugin(false), |o| {
        o.hold_heads = false;
        o.after_filters.push(buffer);
    });
    for framing in [Framing::Length, Framing::Chunked] {
        let r = items_request(&envoy, false, Duration::from_millis(10), framing).expect("reply");
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, USER_REQUIRED),
            "{framing:?}"
        );
        assert!(upstream.heads().is_empty(), "{framing:?}");
    }
    let r = items_request(&envoy, true, Duration::ZERO, Framing::Length).expect("reply");
    assert_eq!((r.status, r.body.as_str()), (200, FROM_HEAD));
}
