//! End to end in the real Envoy: opaque tokens judged by a real authorization server's
//! introspection endpoint (RFC 7662) — authlib's `IntrospectionEndpoint` on Flask
//! (`tests/support/introspection_server.py`, from the project's virtualenv) — at one and
//! at four workers: one call per token per process while its answer is kept, its claims
//! for the rules and the upstream, revocation at the server within `ttl_s`, and the
//! faults (answers that do not vouch, failures, a slow server under load, a 20 MiB answer).

use crate::common::*;
use crate::support::envoy::envoy_bin;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT_SECRET: &str = "introspection-client-secret-0123456789";
const UNAVAILABLE: &str = r#"{"detail":"Authentication service is unavailable","request_id":"rq"}"#;

/// The authorization server, stopped on drop.
struct AuthServer {
    child: Child,
    port: u16,
}

impl AuthServer {
    fn start() -> AuthServer {
        let port = free_port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/introspection_server.py"
        );
        let child = Command::new(envoy_bin().with_file_name("python"))
            .args([script, &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the project's virtualenv python (make deps installs authlib)");
        let server = AuthServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.call("GET", "/health", None).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "the authorization server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// One control call: status and JSON body (`Value::Null` when not JSON).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, Value::Null);
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: as.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut out = String::new();
        if s.write_all(req.as_bytes()).is_err() || s.read_to_string(&mut out).is_err() {
            return (0, Value::Null);
        }
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let json = out
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    /// A new opaque token for `sub` with `scope`.
    fn mint(&self, sub: &str, scope: &str) -> String {
        let (status, body) = self.call(
            "POST",
            "/control/tokens",
            Some(json!({"sub": sub, "scope": scope, "expires_in": 3600})),
        );
        assert_eq!(status, 200, "mint");
        body["access_token"].as_str().expect("token").to_string()
    }

    /// How many introspection calls presented `token`.
    fn calls(&self, token: &str) -> u64 {
        let (_, body) = self.call("GET", &format!("/control/calls?token={token}"), None);
        body["calls"].as_u64().expect("calls")
    }

    fn total(&self) -> u64 {
        self.call("GET", "/control/calls", None).1["total"]
            .as_u64()
            .expect("total")
    }

    fn delay(&self, ms: u64) {
        assert_eq!(
            self.call("POST", "/control/delay", Some(json!({"ms": ms})))
                .0,
            200
        );
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An introspection provider named `name` calling `path` on the authorization server
/// (the harness's `accounts` cluster).
fn provider(name: &str, path: &str, ttl_s: u64) -> Value {
    json!({"name": name, "issuer": "https://as.test", "audiences": ["bearer-guard-tests"],
        "introspection": {"cluster": "accounts", "authority": "as.test", "path": path,
            "client_id": "bearer-guard", "client_secret": {"env": "AS_CLIENT_SECRET"},
            "ttl_s": ttl_s, "timeout_ms": 1000}})
}

/// `/items` needs `items:read`; `/fault/<kind>` is judged by the provider calling the
/// server's faulty answer of that kind.
const FAULTS: &[&str] = &[
    "no-active",
    "string-active",
    "expired",
    "status400",
    "not-json",
    "array",
    "status500",
    "huge",
    "slow",
];

fn config(ttl_s: u64) -> Value {
    let mut providers = vec![provider("as", "/introspect", ttl_s)];
    let mut rules = vec![json!({"name": "items", "match": {"prefix": "/items"},
        "providers": ["as"], "permissions": ["items:read"]})];
    for kind in FAULTS {
        providers.push(provider(kind, &format!("/fault/{kind}"), ttl_s));
        rules.push(
            json!({"name": kind, "match": {"prefix": format!("/fault/{kind}")},
            "providers": [kind]}),
        );
    }
    json!({"providers": providers, "forward": {"headers": {"x-auth-subject": "sub"}},
        "rules": rules})
}

fn stack(server: &AuthServer, ttl_s: u64, concurrency: usize) -> Stack {
    let jwks = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks server");
    Stack::with_options(config(ttl_s), jwks, |o| {
        o.concurrency = concurrency;
        o.accounts_port = server.port;
        o.env
            .push(("AS_CLIENT_SECRET".into(), CLIENT_SECRET.into()));
    })
}

/// The filter's metric `name` once `holds` (metrics reach Envoy at the next tick), or
/// its last value.
fn stat(stack: &Stack, name: &str, holds: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = stack.envoy.filter_stat(name);
        if holds(v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(stack: &Stack, path: &str, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    stack
        .envoy
        .get(path, &[("authorization", &auth), ("x-request-id", "rq")])
}

/// `n` requests at once, each on its own connection.
fn burst(stack: &Stack, path: &str, tokens: &[String], n: usize) -> Vec<(u16, Duration)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let token = tokens[i % tokens.len()].clone();
                s.spawn(move || {
                    let start = Instant::now();
                    let r = get(stack, path, &token);
                    (r.status, start.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

fn introspected_once_per_process(concurrency: usize) {
    let server = AuthServer::start();
    let stack = stack(&server, 60, concurrency);
    let reader = server.mint("alice", "items:read");
    // Concurrent first uses on every worker share one call (the server answers slowly).
    server.delay(300);
    let first = burst(&stack, "/items", std::slice::from_ref(&reader), 12);
    assert!(first.iter().all(|(s, _)| *s == 200), "{first:?}");
    server.delay(0);
    for _ in 0..20 {
        let r = get(&stack, "/items", &reader);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.upstream_header("x-auth-subject").as_deref(),
            Some("alice")
        );
    }
    assert_eq!(server.calls(&reader), 1, "one call per token per process");
    // Another reader's token, interleaved with the first on every worker: each request
    // gets its own token's answer, never the other's.
    let dave = server.mint("dave", "items:read");
    for i in 0..16 {
        let (token, sub) = if i % 2 == 0 {
            (&dave, "dave")
        } else {
            (&reader, "alice")
        };
        let r = get(&stack, "/items", token);
        assert_eq!(r.upstream_header("x-auth-subject").as_deref(), Some(sub));
    }
    assert_eq!(server.calls(&dave), 1);
    assert_eq!(stat(&stack, "introspection_active", |v| v >= 2), 2);

    // Its scope is the rule's: a token without items:read is refused.
    let other = server.mint("bob", "profile");
    let r = get(&stack, "/items", &other);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body, NOT_ENOUGH);
    // A token the server does not know, and a client-sent identity header.
    let r = get(&stack, "/items", "never-issued-token-0001");
    expect("unknown token", &r, 401, Some(INVALID), WWW_INVALID);
    let auth = format!("Bearer {reader}");
    let r = stack.envoy.get(
        "/items",
        &[("authorization", &auth), ("x-auth-subject", "root")],
    );
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("alice")
    );
}

#[test]
fn opaque_tokens_are_introspected_once_per_process_on_one_worker() {
    introspected_once_per_process(1);
}

#[test]
fn opaque_tokens_are_introspected_once_per_process_on_four_workers() {
    introspected_once_per_process(4);
}

/// A token revoked at the server is refused on every worker once its kept answer is
/// older than `ttl_s` (2 s here), and never before its revocation.
#[test]
fn revocation_at_the_server_takes_effect_within_ttl_s() {
    let server = AuthServer::start();
    let stack = stack(&server, 2, 4);
    let token = server.mint("carol", "items:read");
    assert_eq!(get(&stack, "/items", &token).status, 200);
    let revoked_at = Instant::now();
    let (status, _) = server.call("POST", "/control/revoke", Some(json!({"token": token})));
    assert_eq!(status, 200);
    // Past ttl_s (and the second an answer may be read late), every request is refused.
    let bound = Duration::from_secs(2) + Duration::from_millis(1500);
    loop {
        let refused = burst(&stack, "/items", std::slice::from_ref(&token), 8)
            .iter()
            .all(|(s, _)| *s == 401);
        if refused {
            break;
        }
        assert!(revoked_at.elapsed() < bound, "still allowed after ttl_s");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..16 {
        let r = get(&stack, "/items", &token);
        expect("revoked at the server", &r, 401, Some(INVALID), WWW_INVALID);
    }
    // Kept negative_ttl_s: a handful of calls for all of that, on four workers.
    assert!(server.calls(&token) <= 4, "calls {}", server.calls(&token));
}

/// Every way an answer may fail to vouch for a token, from the real server: 401 or 500,
/// never through.
#[test]
fn faulty_answers_never_let_a_token_through() {
    let server = AuthServer::start();
    let stack = stack(&server, 60, 2);
    for kind in FAULTS {
        let started = Instant::now();
        let r = get(&stack, &format!("/fault/{kind}"), "opaque-fault-token-0001");
        match *kind {
            "status500" | "huge" | "slow" => {
                expect(kind, &r, 500, Some(UNAVAILABLE), None);
            }
            _ => expect(kind, &r, 401, Some(INVALID), WWW_INVALID),
        }
        // The slow answer is given up at timeout_ms (1 s), not awaited for 3 s.
        assert!(started.elapsed() < Duration::from_millis(2800), "{kind}");
    }
    assert_eq!(stat(&stack, "introspection_failed", |v| v >= 3), 3);
    assert_eq!(stat(&stack, "introspection_inactive", |v| v >= 6), 6);
    assert_eq!(stack.envoy.filter_stat("introspection_active"), 0);
}

/// A server slower than `timeout_ms` under load: every request is answered 500 within its
/// bound, and the server is asked about once per token per timeout — no retry storm.
#[test]
fn a_slow_server_under_load_gets_bounded_waits_and_no_retry_storm() {
    let server = AuthServer::start();
    let stack = stack(&server, 60, 4);
    let tokens: Vec<String> = (0..4)
        .map(|i| server.mint(&format!("u{i}"), "items:read"))
        .collect();
    server.delay(1500);
    let before = server.total();
    let results = burst(&stack, "/items", &tokens, 32);
    assert!(results.iter().all(|(s, _)| *s == 500), "{results:?}");
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap_or_default();
    assert!(slowest < Duration::from_millis(3500), "slowest {slowest:?}");
    let asked = server.total() - before;
    assert!(asked <= 8, "{asked} calls for 4 tokens");
    // Once the server is quick again, the next request asks and passes.
    server.delay(0);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(get(&stack, "/items", &tokens[0]).status, 200);
}
