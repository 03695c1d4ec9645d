//! Revocation lists in the real Envoy: a token revoked after every worker cached it is
//! refused on every worker within the refresh interval plus a tick (`--concurrency 4`),
//! by `jti`, `sub` and `sid`; another provider's token with the same `jti` passes; an
//! outage and an oversized list keep the last list in force; a list that never loads
//! answers 500 (`deny`) or lets tokens through, counted (`allow`).

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WORKERS: usize = 4;
/// The list server's refresh interval in these tests (s).
const REFRESH_S: u64 = 1;

/// The suites' configuration with a revocation list on provider `idp`.
fn plugin_with_list(on_unavailable: &str) -> Value {
    let mut config = plugin(vec![]);
    config["providers"][0]["revocation"] = json!({
        "cluster": "revocation", "authority": "idp.test", "path": "/revoked",
        "refresh_s": REFRESH_S, "timeout_ms": 1000, "max_bytes": 4096,
        "on_unavailable": on_unavailable});
    config
}

/// A JWKS stack whose `revocation` cluster is `list`.
fn stack(config: Value, list: &JwksServer, workers: usize) -> Stack {
    let keys_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let port = list.server.port;
    Stack::with_options(config, keys_server, |o| {
        o.concurrency = workers;
        o.revocation_port = port;
    })
}

fn serve(doc: Value) -> JwksMode {
    JwksMode::Serve(doc.to_string())
}

/// The connections each Envoy worker has accepted on the listener so far, by worker:
/// Envoy's per-worker listener counters (`listener.<address>.worker_<n>.downstream_cx_total`).
/// Envoy (the kernel), not the client, picks the worker of a connection, so these say
/// which workers a run of requests reached.
fn connections_per_worker(stack: &Stack) -> BTreeMap<String, u64> {
    let stats = http(
        stack.envoy.admin,
        "GET",
        "/stats?filter=downstream_cx_total",
        &[],
    )
    .map(|r| r.body)
    .unwrap_or_default();
    let counts: BTreeMap<String, u64> = stats
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(k, _)| k.starts_with("listener.") && k.ends_with(".downstream_cx_total"))
        .filter_map(|(k, v)| {
            let worker = k.split('.').find(|s| s.starts_with("worker_"))?;
            Some((worker.to_string(), v.trim().parse().ok()?))
        })
        .collect();
    assert_eq!(
        counts.len(),
        WORKERS,
        "a connection counter per worker in /stats:\n{stats}"
    );
    counts
}

/// Whether every one of the `WORKERS` workers has accepted a connection since `before`.
fn every_worker_since(stack: &Stack, before: &BTreeMap<String, u64>) -> bool {
    connections_per_worker(stack)
        .iter()
        .all(|(w, n)| *n > before.get(w).copied().unwrap_or(0))
}

/// At least `n` requests with `token`, each on a new connection, and more until every
/// worker has answered at least one of them (`n` alone may miss a worker): their replies.
fn on_every_worker(stack: &Stack, token: &str, n: usize) -> Vec<Reply> {
    let before = connections_per_worker(stack);
    let mut replies = Vec::new();
    while replies.len() < n || !every_worker_since(stack, &before) {
        assert!(
            replies.len() < 400,
            "{WORKERS} workers did not all take one of {} connections: {:?}",
            replies.len(),
            connections_per_worker(stack)
        );
        replies.push(stack.envoy.get_with_token("/v1/x", token));
    }
    replies
}

/// Whether at least `n` requests with `token`, which reached every worker, all get
/// `status`.
fn all_on_every_worker(stack: &Stack, token: &str, n: usize, status: u16) -> bool {
    on_every_worker(stack, token, n)
        .iter()
        .all(|r| r.status == status)
}

/// How long until an unbroken run of at least 12 requests with `token` (each on a new
/// connection) that reached every worker all got `status` (None: not within `bound`).
/// Any other status starts the run over.
fn until_every_worker(
    stack: &Stack,
    token: &str,
    status: u16,
    bound: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut run = (connections_per_worker(stack), 0);
    while start.elapsed() < bound {
        if stack.envoy.get_with_token("/v1/x", token).status != status {
            // Counted already (a connection is counted when accepted): the run starts
            // after it.
            run = (connections_per_worker(stack), 0);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        run.1 += 1;
        if run.1 >= 12 && every_worker_since(stack, &run.0) {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn tokens_revoked_after_every_worker_cached_them_are_refused_on_every_worker() {
    let list = JwksServer::start(0, serve(json!({}))).expect("list server");
    let stack = stack(plugin_with_list("deny"), &list, WORKERS);
    let now = now();
    let by_jti = token_with(json!({"jti": "tok-a", "sid": "sess-1"}));
    let by_sub = token_for("user-b", json!({"jti": "tok-b"}));
    let by_sid = token_with(json!({"jti": "tok-c", "sid": "sess-c"}));
    let sdk_same_jti = mint_hs256(
        SECRET.as_bytes(),
        &json!({"sub": "svc", "jti": "tok-a", "exp": now + 600}),
    );
    let all = [&by_jti, &by_sub, &by_sid, &sdk_same_jti];
    for t in all {
        assert!(
            all_on_every_worker(&stack, t, 24, 200),
            "every worker caches it"
        );
    }
    assert!(stack.envoy.wait_until(Duration::from_secs(2), || {
        stack.envoy.filter_stat("token_cache_hits") >= 24
    }));
    // Each kind of entry in turn; the refusal reaches every worker within the refresh
    // interval plus a tick (and the time the next refresh takes to come due).
    let bound = Duration::from_millis(REFRESH_S * 1000 + 1500);
    let mut doc = json!({"jti": [], "sub": [], "sid": []});
    let steps: [(&str, Value, &String); 3] = [
        ("jti", json!({"jti": "tok-a", "exp": now + 600}), &by_jti),
        (
            "sub",
            json!({"sub": "user-b", "not_before": now + 1}),
            &by_sub,
        ),
        (
            "sid",
            json!({"sid": "sess-c", "not_before": now + 1}),
            &by_sid,
        ),
    ];
    for (kind, entry, revoked) in steps {
        if let Some(entries) = doc[kind].as_array_mut() {
            entries.push(entry);
        }
        list.set(serve(doc.clone()));
        let took = until_every_worker(&stack, revoked, 401, bound);
        assert!(
            took.is_some(),
            "{kind}: refused on every worker within {bound:?}"
        );
        // And refused for good, on every worker, with the contract's reply.
        for r in on_every_worker(&stack, revoked, 12) {
            expect(kind, &r, 401, Some(INVALID), WWW_INVALID);
        }
    }
    // What no entry names still passes: the other provider's token with the same jti,
    // and a token of the cut-off subject issued after the cutoff.
    assert!(all_on_every_worker(&stack, &sdk_same_jti, 12, 200));
    std::thread::sleep(Duration::from_millis(1100));
    let later = token_for("user-b", json!({"jti": "tok-b2"}));
    assert!(all_on_every_worker(&stack, &later, 12, 200));
    assert!(stack.envoy.wait_until(Duration::from_secs(2), || {
        stack.envoy.filter_stat("provider.idp.tokens_revoked") >= 12
    }));
    assert!(stack.envoy.filter_stat("provider.idp.revocation_entries") == 3);
    let fetches = list.hits() as u64;
    assert!(stack.envoy.filter_stat("provider.idp.revocation_fetch_ok") <= fetches);
    assert!(
        stack
            .envoy
            .log_contains("loaded revocation list (3 entries)"),
        "the fetching VM logs each new list"
    );

    // An outage keeps the last list in force on every worker, and reports it stale after
    // three refresh intervals.
    list.set(JwksMode::Status(503));
    assert!(stack.envoy.wait_until(Duration::from_secs(6), || {
        stack.envoy.log_contains("revocation list stale")
    }));
    for (t, want) in [
        (&by_jti, 401),
        (&by_sid, 401),
        (&sdk_same_jti, 200),
        (&later, 200),
    ] {
        assert!(
            all_on_every_worker(&stack, t, 12, want),
            "during the outage"
        );
    }
    assert!(stack.envoy.wait_until(Duration::from_secs(2), || {
        stack.envoy.filter_stat("provider.idp.revocation_stale") == 1
    }));
    // A list over max_bytes is a failed fetch too: never read, the last list stays.
    list.set(JwksMode::Serve(format!(
        "{{\"jti\":[],\"pad\":\"{}\"}}",
        "x".repeat(5000)
    )));
    assert!(stack.envoy.wait_until(Duration::from_secs(4), || {
        stack
            .envoy
            .log_contains("over the 4096-byte limit (revocation.max_bytes); keeping the previous list (3 entries)")
    }));
    assert!(all_on_every_worker(&stack, &by_jti, 12, 401));
    // The list comes back emptied: the tokens pass again, and the list is no longer stale.
    list.set(serve(json!({})));
    assert!(until_every_worker(&stack, &by_jti, 200, Duration::from_secs(4)).is_some());
    assert!(stack.envoy.wait_until(Duration::from_secs(2), || {
        stack.envoy.filter_stat("provider.idp.revocation_stale") == 0
    }));
}

#[test]
fn a_list_that_never_loads_answers_500_or_lets_tokens_through_counted() {
    let list = JwksServer::start(0, JwksMode::Status(503)).expect("list server");
    let t = token_with(json!({"jti": "tok-a"}));
    for on_unavailable in ["deny", "allow"] {
        let stack = stack(plugin_with_list(on_unavailable), &list, 2);
        let r = stack.envoy.get(
            "/v1/x",
            &[
                ("authorization", &format!("Bearer {t}")),
                ("x-request-id", "rid-rev"),
            ],
        );
        match on_unavailable {
            "deny" => expect(
                "never loaded, deny",
                &r,
                500,
                Some(
                    r#"{"detail":"Authentication service is unavailable","request_id":"rid-rev"}"#,
                ),
                None,
            ),
            _ => {
                assert_eq!(r.status, 200, "never loaded, allow: {}", r.body);
                assert_eq!(
                    r.upstream_header("x-auth-subject").as_deref(),
                    Some("user-1")
                );
                assert!(stack.envoy.wait_until(Duration::from_secs(2), || {
                    stack.envoy.filter_stat("provider.idp.revocation_unchecked") >= 1
                }));
                assert!(stack
                    .envoy
                    .log_contains("tokens pass unchecked (on_unavailable: allow)"));
            }
        }
        assert!(stack
            .envoy
            .log_contains("revocation list fetch failed: status 503; no list yet"));
        // Public routes never need the list; SDK tokens (no list) pass.
        assert_eq!(stack.envoy.get("/health", &[]).status, 200);
        let sdk = mint_hs256(
            SECRET.as_bytes(),
            &json!({"sub": "svc", "exp": now() + 600}),
        );
        assert_eq!(stack.envoy.get_with_token("/v1/x", &sdk).status, 200);
    }
}
