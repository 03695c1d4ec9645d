//! `make soak`: a bounded load test against the real Envoy. Worker threads send a mix of
//! distinct valid, expired, forged and missing tokens for `SOAK_SECONDS` (default 60);
//! every reply must be the one its token class calls for, and Envoy's RSS is sampled to
//! show it stays flat. Exits non-zero on any unexpected status or sustained growth.

#[path = "envoy.rs"]
mod envoy;
#[path = "idp.rs"]
mod idp;
#[path = "servers.rs"]
mod servers;

use envoy::{Envoy, KeepAlive, Options};
use idp::{claims, jwks, Signer};
use serde_json::json;
use servers::{JwksMode, JwksServer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISS: &str = "https://soak.idp";
const AUD: &str = "soak";

fn main() -> std::process::ExitCode {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let pool: usize = std::env::var("SOAK_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let workers = 4;
    eprintln!(
        "minting {pool} valid, {} expired and {} forged tokens…",
        pool / 4,
        pool / 4
    );
    let signer = Signer::generate("soak-key");
    let valid: Vec<String> = (0..pool)
        .map(|i| {
            signer.mint(&claims(
                ISS,
                AUD,
                &format!("u{i}"),
                3600,
                json!({"permissions": ["read"]}),
            ))
        })
        .collect();
    let expired: Vec<String> = (0..pool / 4)
        .map(|i| signer.mint(&claims(ISS, AUD, &format!("e{i}"), -600, json!({}))))
        .collect();
    // Forged: one signature character changed well inside the signature (the last
    // character carries only 2 data bits, so changing it may change nothing).
    let forged: Vec<String> = valid
        .iter()
        .take(pool / 4)
        .map(|t| {
            let mut b = t.clone().into_bytes();
            let i = b.len() - 20;
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap_or_default()
        })
        .collect();
    assert!(
        forged.iter().zip(&valid).all(|(f, v)| f != v),
        "a forged token equals its source"
    );
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&signer]))).expect("jwks");
    let plugin = json!({
        "providers": [{"name": "soak", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256"],
                       "jwks": {"cluster": "jwks", "authority": "soak.idp", "path": "/jwks"}}],
        "forward": {"headers": {"x-sub": "sub"}},
        "rules": [{"match": {"prefix": "/"}, "permissions": ["read"]}]
    });
    let mut o = Options::new(plugin, 0, jwks_server.server.port);
    o.direct_response = true;
    let envoy = Envoy::start(&o);
    let port = envoy.port;
    let stop = Arc::new(AtomicBool::new(false));
    let (total, unexpected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tokens = Arc::new((valid, expired, forged));
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, total, unexpected, tokens) = (
                stop.clone(),
                total.clone(),
                unexpected.clone(),
                tokens.clone(),
            );
            std::thread::spawn(move || {
                let mut conn = KeepAlive::new(port);
                let mut i: usize = w * 7919;
                while !stop.load(Ordering::Relaxed) {
                    i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345) % 1_000_003;
                    let (auth, want, class) = match i % 10 {
                        0..=5 => (Some(&tokens.0[i % tokens.0.len()]), 200, "valid"),
                        6 | 7 => (Some(&tokens.1[i % tokens.1.len()]), 401, "expired"),
                        8 => (Some(&tokens.2[i % tokens.2.len()]), 401, "forged"),
                        _ => (None, 401, "none"),
                    };
                    let header = auth.map(|t| format!("Bearer {t}"));
                    let headers: Vec<(&str, &str)> = header
                        .iter()
                        .map(|h| ("authorization", h.as_str()))
                        .collect();
                    let got = conn
                        .request("GET", "/soak", &headers)
                        .map(|r| r.status)
                        .unwrap_or(0);
                    total.fetch_add(1, Ordering::Relaxed);
                    if got != want && unexpected.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("unexpected: {class} token got {got}, wanted {want}");
                    }
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut samples = Vec::new();
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5).min(Duration::from_secs(seconds)));
        let rss = envoy.rss_kib();
        eprintln!(
            "{:>4}s  {:>8} requests  RSS {rss} KiB",
            start.elapsed().as_secs(),
            total.load(Ordering::Relaxed)
        );
        samples.push(rss);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let (n, bad) = (
        total.load(Ordering::Relaxed),
        unexpected.load(Ordering::Relaxed),
    );
    let elapsed = start.elapsed().as_secs_f64();
    // Growth after the warm-up third: the cache fills during warm-up, then RSS must stay flat.
    let warm = samples.get(samples.len() / 3).copied().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let growth = last.saturating_sub(warm);
    let crashed = envoy.log().contains("panicked");
    println!(
        "soak: {seconds}s, {workers} connections, {n} requests ({:.0}/s), {bad} unexpected statuses; \
         Envoy RSS {warm} KiB after warm-up, {last} KiB at the end (+{growth} KiB); VM panics: {}",
        n as f64 / elapsed,
        if crashed { "yes" } else { "none" }
    );
    // Return (not `process::exit`) so Envoy and the servers are dropped, i.e. stopped.
    drop(envoy);
    if bad > 0 || crashed || growth > 16 * 1024 {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
