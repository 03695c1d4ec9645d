//! End to end in the real Envoy at `--concurrency 4` (four worker VMs, plus the main
//! thread's): key sets, verified tokens and account lookups belong to the process, not to
//! a worker. Requests go out on new connections, so Envoy spreads them over its workers.

use crate::common::*;
use crate::support::envoy::KeepAlive;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WORKERS: usize = 4;

/// Counters are flushed on the VMs' ticks: wait for the next ones.
fn flushed() {
    std::thread::sleep(Duration::from_millis(600));
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn one_jwks_fetch_per_process_at_start_and_per_refresh() {
    let mut config = plugin(vec![]);
    config["providers"][0]["jwks"]["refresh_s"] = json!(2);
    let stack = Stack::start_with(config, WORKERS);
    let token = good_token();
    for i in 0..40 {
        let r = stack.envoy.get_with_token("/v1/x", &token);
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
    }
    assert_eq!(
        stack.jwks.hits(),
        1,
        "one fetch at start for the whole process"
    );
    // Refreshes every 2 s: about three in 6 s for the process (one VM fetching for
    // itself would make it three per VM).
    let before = stack.jwks.hits();
    pause(6000);
    let refreshes = stack.jwks.hits() - before;
    assert!((2..=4).contains(&refreshes), "{refreshes} refreshes in 6 s");
    flushed();
    assert_eq!(
        stack.envoy.filter_stat("provider.idp.jwks_fetch_ok") as usize,
        stack.jwks.hits(),
        "the fetch counter counts the process's real fetches"
    );
    assert!(
        stack.envoy.filter_stat("provider.idp.key_sets_adopted") >= WORKERS as u64,
        "the other VMs adopted key sets without fetching"
    );
    // A refresh that fails keeps the keys on every worker.
    stack.jwks.set(JwksMode::Status(500));
    assert!(stack.envoy.wait_until(Duration::from_secs(5), || stack
        .envoy
        .log_contains("JWKS fetch failed: status 500")));
    for i in 0..40 {
        let r = stack.envoy.get_with_token("/v1/x", &token);
        assert_eq!(
            r.status, 200,
            "request {i} after a failed refresh: {}",
            r.body
        );
    }
}

/// An account service that counts its calls.
fn account_service(calls: Arc<AtomicUsize>) -> HttpServer {
    HttpServer::start(
        0,
        Arc::new(move |_: &crate::support::servers::Seen| {
            calls.fetch_add(1, Ordering::SeqCst);
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                br#"{"account_id":"acct-1"}"#.to_vec(),
            )
        }),
    )
    .expect("account service")
}

#[test]
fn one_token_on_many_connections_is_verified_and_resolved_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let accounts = account_service(calls.clone());
    let mut config = plugin(vec![]);
    config["providers"][0]["account"] = json!({
        "cluster": "accounts", "authority": "accounts.test", "path": "/a?u={sub}",
        "headers": {"x-account-id": "account_id"}});
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let stack = Stack::with_options(config, jwks_server, |o| {
        o.concurrency = WORKERS;
        o.accounts_port = accounts.port;
    });
    let token = good_token();
    for i in 0..400 {
        let r = stack.envoy.get_with_token("/v1/x", &token);
        assert_eq!(r.status, 200, "request {i}: {}", r.body);
        assert_eq!(r.upstream_header("x-account-id").as_deref(), Some("acct-1"));
    }
    flushed();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one account lookup in total"
    );
    assert_eq!(stack.jwks.hits(), 1, "one JWKS fetch in total");
    assert_eq!(
        stack.envoy.filter_stat("token_cache_misses"),
        1,
        "one signature verification in total"
    );
    let shared_hits = stack.envoy.filter_stat("token_cache_shared_hits");
    assert!(
        (1..WORKERS as u64).contains(&shared_hits),
        "the other workers took the verdict from the process: {shared_hits}"
    );
    assert!(stack.envoy.filter_stat("account_shared_hits") >= 1);
    // Every other decision hit a worker's own cache (a request that waited for its
    // account is decided twice: up to one more per worker).
    let decisions = stack.envoy.filter_stat("token_cache_hits") + shared_hits + 1;
    assert!(
        (400..=400 + WORKERS as u64).contains(&decisions),
        "{decisions} decisions"
    );
}

/// A VM that took the fetch lease and never finished (its request's client went away, and
/// the call with it): another VM takes the fetch over once the lease has run out, within
/// the fetch timeout plus one second (plus a tick).
#[test]
fn a_fetch_whose_vm_never_finishes_is_taken_over() {
    let mut config = plugin(vec![]);
    config["providers"][0]["jwks"]["timeout_ms"] = json!(1000);
    let stack = Stack::start_with(config, WORKERS);
    let (a, b) = (&keys().0, &keys().1);
    assert_eq!(
        stack.envoy.get_with_token("/v1/x", &good_token()).status,
        200
    );
    // Every VM adopts the key set on its next tick: then a new kid asks for a refetch
    // (rather than waiting for the first key set).
    pause(600);
    // The IdP is slow; a token signed by a new key starts a refetch from its request's
    // context, and its client leaves before the answer: nobody will finish that fetch.
    stack
        .jwks
        .set(JwksMode::Slow(Duration::from_millis(5000), jwks(&[a, b])));
    let new_token = b.mint(&good_claims());
    {
        let mut conn =
            std::net::TcpStream::connect(("127.0.0.1", stack.envoy.port)).expect("connect");
        use std::io::Write;
        write!(
            conn,
            "GET /v1/x HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {new_token}\r\n\r\n"
        )
        .expect("send");
        pause(200);
    }
    let left = Instant::now();
    stack.jwks.set(JwksMode::Serve(jwks(&[a, b])));
    // Until the lease runs out, requests for the new key wait for the dead fetch, then
    // another VM fetches and they pass.
    let mut status = 0;
    while left.elapsed() < Duration::from_secs(6) && status != 200 {
        status = stack.envoy.get_with_token("/v1/x", &new_token).status;
        if status != 200 {
            pause(100);
        }
    }
    let took = left.elapsed();
    eprintln!("takeover: the new key passed {took:?} after the holder's client left");
    assert_eq!(status, 200, "the new key was never picked up");
    assert!(
        took < Duration::from_millis(1000 + 1000 + 1500),
        "took {took:?}"
    );
    flushed();
    let takeovers = stack.envoy.filter_stat("provider.idp.jwks_lease_takeovers");
    if native() {
        // Natively every call is made on the main thread with its timeout, and the failed
        // answer waits for its worker: when a request reaches that worker first, the lease
        // is released there (a retry, no takeover); else another worker takes it over.
        assert!(takeovers <= 1, "{takeovers} takeovers");
    } else {
        // In wasm the call died with its request's context: only a takeover ends it.
        assert_eq!(takeovers, 1);
    }
}

/// An unknown-`kid` flood (tokens naming kids no key set has) while the IdP rotates in a
/// new key: the refetch is rate-limited for the whole process (one per
/// `refetch_min_interval_s`, 5 s by default), and a token signed with the new key passes
/// within that interval.
#[test]
fn a_rotated_key_is_picked_up_within_the_interval_under_an_unknown_kid_flood() {
    let mut config = plugin(vec![]);
    config["providers"][0]["jwks"]
        .as_object_mut()
        .expect("jwks")
        .remove("refetch_min_interval_s");
    let stack = Stack::start_with(config, WORKERS);
    let (a, b) = (&keys().0, &keys().1);
    assert_eq!(
        stack.envoy.get_with_token("/v1/x", &good_token()).status,
        200
    );
    let before = stack.jwks.hits();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let port = stack.envoy.port;
    let flood: Vec<_> = (0..3)
        .map(|w| {
            let (stop, sent) = (stop.clone(), sent.clone());
            let signer = a.clone();
            std::thread::spawn(move || {
                let mut conn = KeepAlive::new(port);
                let mut i = 0u32;
                // Bounded by time (told to stop) and by count.
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    i += 1;
                    let t = signer.mint_with_header(
                        &json!({"alg": "RS256", "kid": format!("attacker-{w}-{i}")}),
                        &good_claims(),
                    );
                    let _ =
                        conn.request("GET", "/v1/x", &[("authorization", &format!("Bearer {t}"))]);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    pause(1000);
    stack.jwks.set(JwksMode::Serve(jwks(&[a, b])));
    let published = Instant::now();
    let new_token = b.mint(&good_claims());
    let mut picked_up = None;
    while published.elapsed() < Duration::from_secs(9) {
        if stack.envoy.get_with_token("/v1/x", &new_token).status == 200 {
            picked_up = Some(published.elapsed());
            break;
        }
        pause(100);
    }
    let flood_for = published.elapsed() + Duration::from_millis(1000);
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().expect("flood thread");
    }
    let delay = picked_up.expect("the new key was never picked up");
    eprintln!(
        "rotation under an unknown-kid flood: picked up after {delay:?}, {} JWKS fetches, {} flood requests",
        stack.jwks.hits() - before,
        sent.load(Ordering::Relaxed)
    );
    assert!(
        delay < Duration::from_millis(6000),
        "picked up after {delay:?}"
    );
    let fetches = stack.jwks.hits() - before;
    let allowed = (flood_for.as_millis() / 5000) as usize + 1;
    assert!(
        fetches <= allowed,
        "{fetches} fetches in {flood_for:?} of flood ({} requests): at most {allowed}",
        sent.load(Ordering::Relaxed)
    );
    assert!(sent.load(Ordering::Relaxed) > 100, "the flood did not flow");
}

/// A new plugin configuration (pushed as a new listener through file-based LDS, as a
/// control plane would) with the same JWKS source starts with the keys the process has:
/// no refetch, no request paused for keys, no non-2xx for valid tokens under load.
#[test]
fn a_live_reconfiguration_keeps_the_keys() {
    let upstream = echo(0).expect("echo");
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let mut o = Options::new(plugin(vec![]), upstream.port, jwks_server.server.port);
    o.env.push(("SDK_TOKEN_SECRET".into(), SECRET.into()));
    o.concurrency = WORKERS;
    o.lds = true;
    let envoy = Envoy::start(&o);
    let token = good_token();
    assert_eq!(envoy.get_with_token("/v1/x", &token).status, 200);
    let fetches = jwks_server.hits();
    let stop = Arc::new(AtomicBool::new(false));
    let port = envoy.port;
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, token) = (stop.clone(), token.clone());
            std::thread::spawn(move || {
                let (mut statuses, mut conn, mut n) = (Vec::new(), KeepAlive::new(port), 0);
                // Bounded: until told to stop, at most 20,000 requests.
                while !stop.load(Ordering::Relaxed) && n < 20_000 {
                    n += 1;
                    let auth = format!("Bearer {token}");
                    let status = conn
                        .request("GET", "/v1/x", &[("authorization", &auth)])
                        .map_or(0, |r| r.status);
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    pause(1000);
    // The new configuration: one more public route, same provider.
    o.plugin = plugin(vec![
        json!({"match": {"prefix": "/v2/open"}, "public": true}),
    ]);
    envoy.reconfigure(&o);
    assert!(
        envoy.wait_until(Duration::from_secs(10), || envoy
            .get("/v2/open", &[])
            .status
            == 200),
        "the new configuration never took effect"
    );
    pause(1000);
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = load
        .into_iter()
        .flat_map(|t| t.join().expect("load thread"))
        .collect();
    let bad: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(statuses.len() > 100, "only {} requests", statuses.len());
    assert!(
        bad.is_empty(),
        "{} of {} not 200: {:?}",
        bad.len(),
        statuses.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(
        jwks_server.hits(),
        fetches,
        "the new configuration fetched keys again"
    );
    // Every VM of the new configuration adopted the keys when it was configured: no
    // request waited for them (the log is read from the new configuration's first line).
    pause(200);
    let log = envoy.log();
    let since = log
        .find("3 rule(s)")
        .expect("the new configuration's log line");
    assert!(log[since..].contains("adopted key set version 1"));
    // The old configuration goes once its listener drained: natively, every worker that
    // served it drops its core of it (nothing kept per reconfiguration).
    if native() {
        assert!(
            envoy.wait_until(Duration::from_secs(10), || {
                // New streams on every worker sweep their dead cores.
                for _ in 0..WORKERS * 2 {
                    let _ = envoy.get("/v2/open", &[]);
                }
                envoy
                    .log()
                    .matches("dropped its core of a destroyed configuration")
                    .count()
                    >= 1
            }),
            "no worker dropped its core of the old configuration:\n{}",
            envoy.log()
        );
        assert!(envoy.log_contains("a configuration was destroyed"));
    }
    assert!(
        !log[since..].contains("waits for keys"),
        "a request waited for keys after the reconfiguration"
    );
    // And the new configuration serves valid tokens on every worker.
    for _ in 0..20 {
        assert_eq!(envoy.get_with_token("/v1/x", &token).status, 200);
    }
}

/// Concurrent requests for one identity on different workers: one account call for the
/// process (the others wait for its answer).
#[test]
fn concurrent_requests_on_every_worker_share_one_account_call() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let accounts = HttpServer::start(
        0,
        Arc::new(move |_: &crate::support::servers::Seen| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(400));
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                br#"{"account_id":"acct-slow"}"#.to_vec(),
            )
        }),
    )
    .expect("account service");
    let mut config = plugin(vec![]);
    config["providers"][0]["account"] = json!({
        "cluster": "accounts", "authority": "accounts.test", "path": "/a?u={sub}",
        "timeout_ms": 2000, "headers": {"x-account-id": "account_id"}});
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let stack = Stack::with_options(config, jwks_server, |o| {
        o.concurrency = WORKERS;
        o.accounts_port = accounts.port;
    });
    // Keys loaded on every worker first, so only the account is awaited.
    let warm = token_for("warm-up", json!({}));
    for _ in 0..20 {
        let _ = stack.envoy.get_with_token("/v1/x", &warm);
    }
    let before = calls.load(Ordering::SeqCst);
    let token = good_token();
    let port = stack.envoy.port;
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let token = token.clone();
            std::thread::spawn(move || {
                http(
                    port,
                    "GET",
                    "/v1/x",
                    &[("authorization", &format!("Bearer {token}"))],
                )
                .map(|r| (r.status, r.upstream_header("x-account-id")))
            })
        })
        .collect();
    for c in clients {
        let (status, account) = c.join().expect("client").expect("reply");
        assert_eq!((status, account.as_deref()), (200, Some("acct-slow")));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst) - before,
        1,
        "one account call for twelve concurrent requests over four workers"
    );
}
