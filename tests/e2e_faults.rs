//! Faults under bounded load in the real Envoy: the JWKS server fails in every way while
//! requests keep coming. The last good keys stay in force, so valid tokens keep getting
//! 200 and unknown kids 401; nothing panics and memory stays bounded.

mod common;
use common::support::envoy::KeepAlive;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn jwks_faults_under_load() {
    let mut stack = Stack::start(plugin(vec![]));
    let port = stack.envoy.port;
    let (a, b) = (&keys().0, &keys().1);
    let valid: Vec<String> = (0..50)
        .map(|i| a.mint(&claims(ISS, AUD, &format!("u{i}"), 600, json!({}))))
        .collect();
    let unknown: Vec<String> = (0..50)
        .map(|i| {
            a.mint_with_header(
                &json!({"alg": "RS256", "kid": format!("gone-{i}")}),
                &claims(ISS, AUD, "u", 600, json!({})),
            )
        })
        .collect();
    let rss_before = stack.envoy.rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let wrong: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let tokens = Arc::new((valid, unknown));
    let load: Vec<_> = (0..3)
        .map(|w| {
            let (stop, total, wrong, tokens) =
                (stop.clone(), total.clone(), wrong.clone(), tokens.clone());
            std::thread::spawn(move || {
                let mut conn = KeepAlive::new(port);
                let mut i = w;
                // Bounded: stops when told, and never after 20,000 requests.
                while !stop.load(Ordering::Relaxed) && i < 20_000 {
                    i += 3;
                    let (token, want) = if i % 10 == 0 {
                        (&tokens.1[i % 50], 401)
                    } else {
                        (&tokens.0[i % 50], 200)
                    };
                    let status = conn
                        .request(
                            "GET",
                            "/v1/x",
                            &[("authorization", &format!("Bearer {token}"))],
                        )
                        .map(|r| r.status)
                        .unwrap_or(0);
                    total.fetch_add(1, Ordering::Relaxed);
                    if status != want {
                        if let Ok(mut w) = wrong.lock() {
                            w.push(format!("wanted {want}, got {status}"));
                        }
                    }
                }
            })
        })
        .collect();
    let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
    pause(500);
    let faults: Vec<(&str, JwksMode, u64)> = vec![
        ("500", JwksMode::Status(500), 2200),
        ("garbage", JwksMode::Garbage, 2200),
        (
            "slower than the timeout",
            JwksMode::Slow(Duration::from_millis(3000), jwks(&[a])),
            3500,
        ),
        (
            "2 MiB body",
            JwksMode::Serve(format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(2 << 20))),
            2200,
        ),
    ];
    for (name, mode, ms) in faults {
        eprintln!("fault: {name}");
        stack.jwks.set(mode);
        pause(ms);
    }
    // The JWKS server goes away entirely, then comes back with rotated keys (A and B).
    eprintln!("fault: server down");
    let jwks_port = stack.jwks.server.port;
    stack.jwks.server.stop();
    pause(2200);
    stack.jwks = JwksServer::start(jwks_port, JwksMode::Serve(jwks(&[a, b])))
        .expect("restart on the same port");
    pause(2500);
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let n = total.load(Ordering::Relaxed);
    let wrong = wrong.lock().map(|w| w.clone()).unwrap_or_default();
    assert!(n > 500, "only {n} requests under load");
    assert!(
        wrong.is_empty(),
        "{} of {n} replies were wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // After rotation, B's tokens verify (new kid fetched), and the VM never panicked.
    assert_eq!(
        stack
            .envoy
            .get_with_token("/v1/x", &b.mint(&claims(ISS, AUD, "u", 600, json!({}))))
            .status,
        200
    );
    let log = stack.envoy.log();
    assert!(!log.contains("panicked"), "VM panic:\n{log}");
    assert!(stack.envoy.log_contains("JWKS fetch failed: status 500"));
    assert!(
        stack.envoy.log_contains("JWKS fetch failed: NotJwks")
            || stack.envoy.log_contains("JWKS fetch failed: TooLarge")
    );
    let growth = stack.envoy.rss_kib().saturating_sub(rss_before);
    assert!(growth < 64 * 1024, "Envoy RSS grew by {growth} KiB");
}
