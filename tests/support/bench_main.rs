//! `make bench`: bearer-guard side by side with Envoy's native `jwt_authn`, in the real
//! Envoy (`--concurrency 1`, `direct_response`, so only filter work is measured), driven
//! by wrk over loopback. Configurations are interleaved round by round and the table
//! reports medians. `BENCH_ROUNDS`, `BENCH_SECONDS` and `BENCH_TOKENS` tune it;
//! `BENCH_SMOKE=1` is a seconds-long sanity run; `BENCH_WASM_B=<path>` adds a "B:" twin
//! next to every bearer-guard row, run with another build of the module (A/B in one run:
//! this machine's speed drifts too much between runs to compare two runs). Every
//! bearer-guard row also has a "native:" twin, the same configuration in the native
//! module (`libbearer_guard.so` from `BEARER_GUARD_NATIVE_DIR`), next to it in every
//! round, and the native floor (`BENCH_FLOOR_NATIVE_DIR`: the module built with the
//! `bench-floor` feature) has a row of its own; the run ends with the native targets.

#[path = "envoy.rs"]
mod envoy;
#[path = "idp.rs"]
mod idp;
#[path = "servers.rs"]
mod servers;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use envoy::{Envoy, Options};
use idp::{claims, Signer};
use serde_json::{json, Value};
use servers::{HttpServer, JwksMode, JwksServer, Seen};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ISS: &str = "https://bench.idp";
/// How many times in a row the token-reuse rows use each token.
const USES: usize = 4;
/// Worker counts (`--concurrency`) of the token-reuse curve.
const CURVE: [usize; 3] = [2, 4, 8];
const JA_ES: &str = "jwt_authn, every ES256 token distinct";
const BG_ES: &str = "bearer-guard, every ES256 token distinct";
const RUST_ES: &str = "bearer-guard pure-Rust, every ES256 token distinct";
const GQL: &str = "bearer-guard, GraphQL items query (~1 KB body), cached token";
const GQL_PATH: &str = "bearer-guard, the same GraphQL POST matched by path only, cached token";
const L2: &str = "bearer-guard, every token distinct, all second-level hits (first level off)";
/// The curve's rows at `w` workers: (no auth, jwt_authn, bearer-guard).
fn curve_rows(w: usize) -> (&'static str, &'static str, &'static str) {
    (
        leak(format!("{w} workers: no auth")),
        leak(format!(
            "{w} workers: jwt_authn, cache on, each token {USES}× on rotating connections"
        )),
        leak(format!(
            "{w} workers: bearer-guard, each token {USES}× on rotating connections"
        )),
    )
}
const AUD: &str = "bench";
/// The native floor's row (`src/native/floor.rs`).
const NATIVE_FLOOR: &str = "native floor (a module that only reads the header)";

/// The name of a bearer-guard row's native twin (the curve's rows keep their worker count
/// after the prefix, so they find their baseline).
fn native_row(name: &str) -> &'static str {
    leak(format!("native: {}", name.replacen("wasm hop", "hop", 1)))
}
/// The kinds of host call the probe module prices (tests/support/hop_floor_main.rs).
const PROBES: [&str; 7] = [
    "time",
    "header",
    "header_map",
    "set_header",
    "property",
    "metric",
    "shared",
];
/// Extra host calls per request in a probe row.
const PROBE_CALLS: usize = 10;

/// A probe row's name.
fn probe_row(kind: &str) -> &'static str {
    leak(format!(
        "probe: the floor + {PROBE_CALLS} host calls '{kind}'"
    ))
}
const REV_NONE: &str = "bearer-guard, cached token with jti and sid, no revocation list";
const REV: &str = "bearer-guard, cached token with jti and sid, 10,000-entry revocation list";
const DPOP: &str = "bearer-guard, cached DPoP-bound token, a fresh ES256 proof per request";
/// Proofs minted per second of a DPoP run (each is accepted once): more than the row serves.
const PROOFS_PER_S: u64 = 6_000;
const INTRO: &str = "bearer-guard, introspected opaque token, answer kept (same token)";
/// The introspection provider's issuer, client and secret (given to Envoy in this
/// variable of its environment).
const INTRO_ISS: &str = "https://bench.as";
const INTRO_CLIENT: &str = "bearer-guard-bench";
const INTRO_SECRET: &str = "bench-introspection-secret-0123456789";
const INTRO_SECRET_ENV: &str = "BENCH_INTROSPECTION_SECRET";

/// The introspection endpoint (RFC 7662) of the introspection rows: a `POST` with the
/// bench client's Basic credentials and the form `token=<token>&token_type_hint=...` is
/// answered active, with claims the provider accepts and an `exp` years ahead; anything
/// else 401. Counts the calls it receives.
fn introspection_endpoint(token: &str) -> (HttpServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{INTRO_CLIENT}:{INTRO_SECRET}"))
    );
    let form = format!("token={token}&token_type_hint=access_token");
    let now = idp::now();
    let answer = json!({"active": true, "sub": "bench", "iss": INTRO_ISS, "aud": AUD,
                        "scope": "read", "client_id": INTRO_CLIENT, "token_type": "Bearer",
                        "iat": now, "exp": now + 10 * 365 * 86_400})
    .to_string();
    let server = HttpServer::start(
        0,
        Arc::new(move |seen: &Seen| {
            counted.fetch_add(1, Ordering::SeqCst);
            let auth = seen
                .headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v.as_str());
            if seen.method != "POST" || auth != Some(basic.as_str()) || seen.body != form.as_bytes()
            {
                return (401, vec![], vec![]);
            }
            let json = vec![("content-type".to_string(), "application/json".to_string())];
            (200, json, answer.clone().into_bytes())
        }),
    )
    .expect("introspection endpoint");
    (server, calls)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// bearer-guard's configuration. The single-worker rows run with the process-wide token
/// level off (`token_slots` 0: with one VM it only adds a lookup per first-level miss),
/// so they measure one VM's paths; the second-level and two-worker rows turn it on.
fn plugin(verifier: &str, cache: usize, public: bool) -> Value {
    plugin_with_slots(verifier, cache, public, 0)
}

fn plugin_with_slots(verifier: &str, cache: usize, public: bool, token_slots: usize) -> Value {
    let rules = if public {
        json!([{"match": {}, "public": true}])
    } else {
        json!([])
    };
    json!({
        "providers": [{"name": "bench", "issuer": ISS, "audiences": [AUD], "algorithms": ["RS256", "ES256"],
                       "jwks": {"cluster": "jwks", "authority": "bench.idp", "path": "/jwks"}}],
        "verifier": verifier,
        "token_cache": {"max_entries": cache},
        "shared": {"token_slots": token_slots},
        "rules": rules
    })
}

fn jwt_authn(jwks_doc: &str, cache_size: usize) -> Value {
    let mut provider = json!({"issuer": ISS, "audiences": [AUD], "forward": true,
                              "local_jwks": {"inline_string": jwks_doc}});
    if cache_size > 0 {
        provider["jwt_cache_config"] = json!({"jwt_cache_size": cache_size});
    }
    json!({"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}]}})
}

/// A stat counting signature verifications.
#[derive(Debug, Clone, Copy)]
enum Stat {
    /// One of Envoy's own, by its full name.
    Envoy(&'static str),
    /// bearer-guard's, by its core name, whichever host runs it.
    Filter(&'static str),
}

impl Stat {
    fn read(self, envoy: &Envoy) -> u64 {
        match self {
            Stat::Envoy(name) => envoy.stat(name),
            Stat::Filter(name) => envoy.filter_stat(name),
        }
    }
}

#[derive(Clone)]
struct Row {
    name: &'static str,
    envoy: usize,
    tokens: PathBuf,
    expect_ok: bool,
    /// Another wrk script than the token rotation (GET /bench).
    script: Option<PathBuf>,
    /// A stat counting signature verifications, read before and after each run.
    verifications: Option<Stat>,
    /// DPoP: `tokens` is written before each run with fresh proofs for this Envoy.
    dpop: bool,
    /// Each run sends tokens this Envoy has never seen, each [`USES`] times in a row,
    /// from the curve's pool (written to `tokens` before the run).
    fresh: bool,
    results: Vec<Run>,
}

/// One wrk run against one Envoy.
#[derive(Clone)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    non2xx: u64,
    /// Envoy's CPU time (all threads) per request served, µs.
    cpu_us: f64,
    /// Requests served.
    requests: u64,
    /// Signature verifications during the run (rows that count them).
    verifications: f64,
    /// Distinct tokens sent during the run (rows with fresh tokens).
    tokens_sent: f64,
}

fn write_tokens(dir: &Path, name: &str, tokens: &[String]) -> PathBuf {
    let p = dir.join(format!("{name}.txt"));
    std::fs::write(&p, tokens.join("\n") + "\n").expect("write tokens");
    p
}

fn parse_duration_us(s: &str) -> f64 {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(s.len()),
    );
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v,
        "ms" => v * 1000.0,
        "s" => v * 1e6,
        _ => f64::NAN,
    }
}

/// One wrk run, with Envoy's CPU time per request: the throughput of a shared 2-core
/// machine is noisy, CPU time spent per request much less so.
fn wrk(envoy: &Envoy, tokens: &Path, script: &Path, seconds: u64) -> Run {
    let (port, ticks_before) = (envoy.port, envoy.cpu_ticks());
    let out = Command::new("wrk")
        .args(["-t1", "-c10", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/bench"))
        .arg("--")
        .arg(tokens)
        .output()
        .expect("wrk (make bench installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = f64::NAN;
    let ticks = envoy.cpu_ticks().saturating_sub(ticks_before);
    let (mut p50, mut p99, mut non2xx, mut requests) = (f64::NAN, f64::NAN, 0, 0u64);
    for line in text.lines() {
        let l = line.trim();
        if let Some((n, _)) = l.split_once(" requests in ") {
            requests = n.trim().parse().unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(f64::NAN);
        } else if let Some(v) = l.strip_prefix("50%") {
            p50 = parse_duration_us(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            p99 = parse_duration_us(v);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = v.trim().parse().unwrap_or(0);
        }
    }
    let cpu_us = ticks as f64 * 1e6 / CLOCK_TICKS_PER_S / requests as f64;
    Run {
        rps,
        p50,
        p99,
        non2xx,
        cpu_us,
        requests,
        verifications: f64::NAN,
        tokens_sent: f64::NAN,
    }
}

/// Tokens for the rows that must send tokens their Envoy has never seen: minted on demand
/// (on both cores, between runs), handed out from a cursor per Envoy. Each token is written
/// [`USES`] times in a row: wrk's connections take turns, so one token arrives on several
/// connections, and with several workers meets several of them.
struct Pool<'s> {
    signer: &'s Signer,
    tokens: Vec<String>,
    cursors: std::collections::HashMap<usize, usize>,
}

impl Pool<'_> {
    /// Writes to `path` the next `n` tokens Envoy `envoy` has not been sent.
    fn hand_out(&mut self, envoy: usize, n: usize, path: &Path) {
        let from = *self.cursors.get(&envoy).unwrap_or(&0);
        let want = from + n;
        if self.tokens.len() < want {
            let start = self.tokens.len();
            let signer = self.signer;
            let mint = |range: std::ops::Range<usize>| -> Vec<String> {
                range
                    .map(|i| {
                        signer.mint(&claims(
                            ISS,
                            AUD,
                            &format!("curve-{i}"),
                            3600,
                            json!({"permissions": ["read"]}),
                        ))
                    })
                    .collect()
            };
            let mid = start + (want - start) / 2;
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| mint(start..mid));
                let b = mint(mid..want);
                (a.join().expect("minting thread"), b)
            });
            self.tokens.extend(a);
            self.tokens.extend(b);
        }
        let lines: Vec<&str> = self.tokens[from..want]
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.as_str(), USES))
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").expect("fresh tokens");
    }

    /// After a run of `requests` on the `n` tokens handed out: the distinct tokens it sent
    /// (each partly sent one counts; the cursor moves past them). More requests than the
    /// `n` tokens allow would have repeated tokens: reported, and the row then undercounts.
    fn sent(&mut self, envoy: usize, requests: u64, n: usize) -> usize {
        let sent = (requests as usize).div_ceil(USES);
        if sent > n {
            eprintln!("warning: envoy {envoy}: {requests} requests wrapped its {n} fresh tokens");
        }
        *self.cursors.entry(envoy).or_insert(0) += sent.min(n);
        sent.min(n)
    }
}

/// `/proc/<pid>/stat` counts CPU time in ticks of `sysconf(_SC_CLK_TCK)`, 100 on Linux.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Row names are `&'static str`; the few B twins are made once per run.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The floor module `make bench` builds (`BENCH_FLOOR_WASM`), or its default path.
fn floor_wasm() -> PathBuf {
    std::env::var_os("BENCH_FLOOR_WASM").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/hop_floor.wasm"),
        PathBuf::from,
    )
}

/// The folder of the native floor module `make bench` builds (`BENCH_FLOOR_NATIVE_DIR`:
/// `libbearer_guard.so` with the `bench-floor` feature), or its default path.
fn floor_native_dir() -> PathBuf {
    std::env::var_os("BENCH_FLOOR_NATIVE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/native-floor"),
        PathBuf::from,
    )
}

/// One aws-lc verification alone, µs, for RS256 (2048-bit) and ES256 (P-256): what
/// `verify-timing --aws-lc` measures (the native module's backend with its parsed key
/// kept). NaN when it did not run (`make bench` builds it).
fn aws_lc_verify_us() -> (f64, f64) {
    let exe =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/examples/verify-timing");
    let text = Command::new(&exe)
        .arg("--aws-lc")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let us = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    (us("RS256 (2048-bit)"), us("ES256 (P-256)"))
}

/// A measure of one run of two rows, against their baseline's run of the same round.
type Measure<'a> = &'a dyn Fn(&Run, &Run, &Run) -> f64;
/// A paired measure of two rows against the no-auth row, median over rounds.
type Paired<'a> = dyn Fn(&str, &str, Measure) -> f64 + 'a;
/// A paired measure of two rows against a third (by name), median over rounds.
type PairedWith<'a> = dyn Fn(&str, &str, &str, Measure) -> f64 + 'a;

/// What the native part of the summary reads from the run.
struct NativeInputs<'a> {
    /// Two rows paired against the no-auth row.
    paired: &'a Paired<'a>,
    /// Two rows paired against a third (by name).
    paired_with: &'a PairedWith<'a>,
    /// Signature verifications per distinct token sent, by row.
    per_token: &'a dyn Fn(&str) -> f64,
    /// One aws-lc verification alone, µs: RS256, ES256.
    verify_us: (f64, f64),
    /// Native Envoy RSS growth per cached token, bytes.
    per_cached_token: f64,
    /// The native module's size, bytes.
    so_size: u64,
}

/// "met" when `value` is within `limit`.
fn verdict(value: f64, limit: f64) -> &'static str {
    if value.is_nan() {
        "not measured"
    } else if value <= limit {
        "met"
    } else {
        "not met"
    }
}

/// Row names the summaries look rows up by, as the rows are defined.
const ROW_HOP: &str = "wasm hop (bearer-guard, public rule)";
const ROW_CACHED: &str = "bearer-guard, cached token";
const ROW_FLOOR: &str = "wasm floor (a filter that only reads the header)";
const ROW_DISTINCT: &str = "bearer-guard, every token distinct";
const ROW_JA_DISTINCT: &str = "jwt_authn, every token distinct";

/// The native module's lines: its rows against the wasm rows and the native floor, how
/// close a distinct token comes to the signature alone, and the targets of issue 34 as
/// same-run ratios of added CPU per request.
fn native_summary(i: &NativeInputs) -> String {
    let added_cpu = |x: &Run, y: &Run, z: &Run| (x.cpu_us - z.cpu_us) / (y.cpu_us - z.cpu_us);
    let diff = |x: &Run, y: &Run, _: &Run| x.cpu_us - y.cpu_us;
    let added = |x: &Run, _: &Run, z: &Run| x.cpu_us - z.cpu_us;
    let (hop, cached, floor) = (ROW_HOP, ROW_CACHED, ROW_FLOOR);
    let (bg, ja) = (ROW_DISTINCT, ROW_JA_DISTINCT);
    let (n_hop, n_cached, n_bg, n_es) = (
        native_row(hop),
        native_row(cached),
        native_row(bg),
        native_row(BG_ES),
    );
    let mut out = format!(
        "\nNative module (the \"native:\" rows: the same configurations in libbearer_guard.so, {} KiB; CPU = Envoy's CPU time per request):\n",
        i.so_size / 1024
    );
    out.push_str(&format!(
        "- native / wasm added cost, same configuration: hop {:.2}, cached token {:.2}, distinct RS256 {:.2}, distinct ES256 {:.2}, GraphQL items query {:.2}\n",
        (i.paired)(n_hop, hop, &added_cpu),
        (i.paired)(n_cached, cached, &added_cpu),
        (i.paired)(n_bg, bg, &added_cpu),
        (i.paired)(n_es, BG_ES, &added_cpu),
        (i.paired)(native_row(GQL), GQL, &added_cpu),
    ));
    out.push_str(&format!(
        "- the native floor costs {:.1} µs of CPU over no auth (the wasm floor {:.1}); native hop minus the native floor: CPU {:+.1} µs; native cached path minus the native floor: CPU {:+.1} µs\n",
        (i.paired)(NATIVE_FLOOR, NATIVE_FLOOR, &added),
        (i.paired)(floor, floor, &added),
        (i.paired)(n_hop, NATIVE_FLOOR, &diff),
        (i.paired)(n_cached, NATIVE_FLOOR, &diff),
    ));
    let (rs, es) = i.verify_us;
    let (n_rs, n_es_us) = (
        (i.paired)(n_bg, n_bg, &added),
        (i.paired)(n_es, n_es, &added),
    );
    out.push_str(&format!(
        "- a distinct token natively against the crypto limit: RS256 {n_rs:.1} µs added CPU − {rs:.1} µs for one aws-lc RS256 verification alone (verify-timing --aws-lc, run before the Envoys) = {:.1} µs besides the signature; ES256 {n_es_us:.1} − {es:.1} = {:.1} µs\n",
        n_rs - rs,
        n_es_us - es,
    ));
    out.push_str(&format!(
        "- a second-level hit natively costs {:.1} µs of CPU more than the native hop, against {:.1} µs for a verification; revocation: a 10,000-entry list costs {:+.1} µs; DPoP: a fresh ES256 proof costs {:+.1} µs over a cached bearer token\n",
        (i.paired)(native_row(L2), n_hop, &diff),
        (i.paired)(n_bg, n_hop, &diff),
        (i.paired)(native_row(REV), native_row(REV_NONE), &diff),
        (i.paired)(native_row(DPOP), n_cached, &diff),
    ));
    out.push_str(&format!(
        "- introspection natively: an opaque token decided from its kept answer costs {:+.1} µs of CPU over a cached JWT; its added cost is {:.2}× the JWT's; native / wasm added cost {:.2}\n",
        (i.paired)(native_row(INTRO), n_cached, &diff),
        (i.paired)(native_row(INTRO), n_cached, &added_cpu),
        (i.paired)(native_row(INTRO), INTRO, &added_cpu),
    ));
    out.push_str(&format!(
        "- GraphQL natively: an items query judged by root field costs {:+.1} µs of CPU over the same request judged by its path (ratio of added cost over the native hop {:.2})\n",
        (i.paired)(native_row(GQL), native_row(GQL_PATH), &diff),
        (i.paired_with)(native_row(GQL), native_row(GQL_PATH), n_hop, &added_cpu),
    ));
    for w in CURVE {
        let (base, ja_w, bg_w) = curve_rows(w);
        out.push_str(&format!(
            "- {w} workers, each token {USES}× on rotating connections: native / jwt_authn added cost: CPU {:.2}; signature verifications per distinct token sent: native {:.2}, wasm {:.2}, jwt_authn {:.2}\n",
            (i.paired_with)(native_row(bg_w), ja_w, base, &added_cpu),
            (i.per_token)(native_row(bg_w)),
            (i.per_token)(bg_w),
            (i.per_token)(ja_w),
        ));
    }
    // Each target as the ratio of the two rows' median added CPU (over the no-auth row of
    // their worker count): a per-round ratio means nothing where the denominator is a few
    // µs of noise (jwt_authn's cached path), so both medians are printed beside it.
    let median_added = |row: &str, base: Option<&str>| match base {
        None => (i.paired)(row, row, &added),
        Some(b) => (i.paired_with)(row, row, b, &added),
    };
    let ratio = |a: &str, b: &str, base: Option<&str>| {
        let (x, y) = (median_added(a, base), median_added(b, base));
        (x / y, format!(" ({x:.1} / {y:.1} µs)"))
    };
    let curve = |w: usize| {
        let (base, ja_w, bg_w) = curve_rows(w);
        ratio(native_row(bg_w), ja_w, Some(base))
    };
    let targets: [(&str, (f64, String), f64); 7] = [
        (
            "native cached token ≤ 1.0 × jwt_authn cached",
            ratio(n_cached, "jwt_authn, cache on, same token", None),
            1.0,
        ),
        (
            "native distinct RS256 tokens ≤ 0.9 × jwt_authn",
            ratio(n_bg, ja, None),
            0.9,
        ),
        (
            "native distinct ES256 tokens ≤ 1.0 × jwt_authn",
            ratio(n_es, JA_ES, None),
            1.0,
        ),
        ("native reuse at 2 workers ≤ 0.6 × jwt_authn", curve(2), 0.6),
        ("native reuse at 8 workers ≤ 0.5 × jwt_authn", curve(8), 0.5),
        (
            "native GraphQL items query by root field ≤ 1.5 × by path",
            ratio(native_row(GQL), native_row(GQL_PATH), None),
            1.5,
        ),
        (
            "native memory per cached token ≤ 1 KiB (bytes)",
            (i.per_cached_token, String::new()),
            1024.0,
        ),
    ];
    out.push_str(
        "\nNative targets (issue 34): ratios of the rows' median added CPU per request (over the no-auth row of the same worker count; the medians in parentheses):\n\n| target | measured | |\n|---|---:|---|\n",
    );
    for (name, (value, medians), limit) in targets {
        let shown = if limit > 100.0 {
            format!("{value:.0}")
        } else {
            format!("{value:.2}{medians}")
        };
        out.push_str(&format!(
            "| {name} | {shown} | {} |\n",
            verdict(value, limit)
        ));
    }
    out
}

/// The core's host calls per path, and its instructions per decision (valgrind's
/// callgrind, when installed): figures that do not move with the machine's speed.
fn core_costs() -> String {
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/examples/core-costs");
    let mut out = std::process::Command::new(&exe)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_else(|e| format!("core-costs not run ({e}): make bench builds it\n"));
    let collected = |args: &[&str]| -> Option<f64> {
        let o = std::process::Command::new("valgrind")
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(&exe)
            .args(args)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&o.stderr);
        let line = text.lines().find(|l| l.contains("Collected :"))?;
        line.rsplit(':')
            .next()?
            .trim()
            .replace(',', "")
            .parse()
            .ok()
    };
    let n = 1000;
    out.push_str("Instructions per decision (callgrind, native core, signatures stubbed):\n");
    for path in ["hop", "cached", "l2", "distinct"] {
        let ns = n.to_string();
        let with = collected(&["--only", path, "--n", &ns]);
        let without = collected(&["--only", path, "--n", &ns, "--setup-only"]);
        match (with, without) {
            (Some(a), Some(b)) => {
                out.push_str(&format!("  {path:<10} {:>8.0}\n", (a - b) / n as f64))
            }
            _ => out.push_str(&format!("  {path:<10} (valgrind not available)\n")),
        }
    }
    out
}

fn main() {
    let costs = core_costs();
    println!("{costs}");
    // One signature verification alone, before any Envoy runs.
    let (verify_rs, verify_es) = aws_lc_verify_us();
    let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
    let rounds = env_or("BENCH_ROUNDS", if smoke { 1 } else { 3 });
    let seconds = env_or("BENCH_SECONDS", if smoke { 1 } else { 5 });
    let n_tokens = env_or("BENCH_TOKENS", if smoke { 300 } else { 12_000 }) as usize;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");

    eprintln!("minting {n_tokens} RS256 tokens…");
    let signer = Signer::generate("bench-key");
    // One key set for every row: the RSA key and a P-256 key (ES256 rows).
    let ec = idp::EcSigner::generate("bench-ec", "ES256");
    let doc = json!({"keys": [signer.jwk(), ec.jwk()]}).to_string();
    let valid: Vec<String> = (0..n_tokens)
        .map(|i| {
            signer.mint(&claims(
                ISS,
                AUD,
                &format!("user-{i}"),
                3600,
                json!({"permissions": ["read"]}),
            ))
        })
        .collect();
    // Forged: a valid kid and header, the signature's first character changed.
    let forged: Vec<String> = valid
        .iter()
        .map(|t| {
            let (head, sig) = t.rsplit_once('.').unwrap_or((t, ""));
            let mut sig: Vec<char> = sig.chars().collect();
            if let Some(c) = sig.first_mut() {
                *c = if *c == 'A' { 'B' } else { 'A' };
            }
            format!("{head}.{}", sig.into_iter().collect::<String>())
        })
        .collect();
    let one = write_tokens(&dir, "one", &valid[..1]);
    // A token naming a token id and a session, for the revocation rows (every lookup of
    // the list runs for it).
    let with_ids = signer.mint(&claims(
        ISS,
        AUD,
        "user-ids",
        3600,
        json!({"permissions": ["read"], "jti": "bench-jti-live", "sid": "bench-sid-live"}),
    ));
    let one_ids = write_tokens(&dir, "one-ids", &[with_ids]);
    // An opaque (reference) token for the introspection rows: 43 base64url characters and
    // no dots, so the introspection provider judges it.
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("random");
    let opaque = idp::b64(raw);
    let one_opaque = write_tokens(&dir, "one-opaque", std::slice::from_ref(&opaque));
    let distinct = write_tokens(&dir, "distinct", &valid);
    let forged_path = write_tokens(&dir, "forged", &forged);
    let es256: Vec<String> = (0..n_tokens)
        .map(|i| {
            ec.mint(&claims(
                ISS,
                AUD,
                &format!("user-{i}"),
                3600,
                json!({"permissions": ["read"]}),
            ))
        })
        .collect();
    let es256_path = write_tokens(&dir, "es256", &es256);
    // The curve's tokens: each run of a row sends tokens its Envoy has never seen.
    let mut pool = Pool {
        signer: &signer,
        tokens: Vec::new(),
        cursors: std::collections::HashMap::new(),
    };
    let script = dir.join("tokens.lua");
    std::fs::write(
        &script,
        "local tokens, i = {}, 0\n\
         function init(args) for line in io.lines(args[1]) do tokens[#tokens + 1] = line end end\n\
         function request()\n  i = i % #tokens + 1\n  return wrk.format(\"GET\", \"/bench\", {[\"Authorization\"] = \"Bearer \" .. tokens[i]})\nend\n",
    )
    .expect("lua");

    // DPoP: each line is `token proof`; a proof is used once.
    let dpop_script = dir.join("dpop.lua");
    std::fs::write(
        &dpop_script,
        "local lines, i = {}, 0\n\
         function init(args) for line in io.lines(args[1]) do lines[#lines + 1] = line end end\n\
         function request()\n  i = i % #lines + 1\n  local t, p = lines[i]:match(\"(%S+) (%S+)\")\n  return wrk.format(\"GET\", \"/bench\", {[\"Authorization\"] = \"DPoP \" .. t, [\"DPoP\"] = p})\nend\n",
    )
    .expect("dpop.lua");
    // A ~1 KB items query, as the GraphQL API's clients send it.
    let fields = "id title description brand { id name } price { amount currency } images(first: 4) { url width height alt } variants(first: 8) { id sku size color stock { available warehouse } } ratings { average count } categories { id name path } seller { id name rating location { city country } } shipping { method price { amount currency } estimatedDays } reviews(first: 3) { edges { node { id title body rating author { id displayName } createdAt } } } updatedAt createdAt";
    let gql_doc = format!("query Items($q: String!, $after: String) {{ items(query: $q, first: 20, after: $after) {{ edges {{ cursor node {{ {fields} }} }} pageInfo {{ hasNextPage endCursor }} totalCount }} }}");
    let gql_body = json!({"query": gql_doc, "operationName": "Items", "variables": {"q": "running shoes", "after": null}}).to_string();
    let graphql_script = dir.join("graphql.lua");
    std::fs::write(
        &graphql_script,
        format!(
            "local tokens = {{}}\n\
             function init(args) for line in io.lines(args[1]) do tokens[#tokens + 1] = line end end\n\
             function request()\n  return wrk.format(\"POST\", \"/graphql\", {{[\"Authorization\"] = \"Bearer \" .. tokens[1], [\"content-type\"] = \"application/json\", [\"Solenya-Index-UUID\"] = \"9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b\", [\"Solenya-User-UUID\"] = \"01890a5d-ac96-774b-bcce-b302099a8057\"}}, {body:?})\nend\n",
            body = gql_body
        ),
    )
    .expect("graphql.lua");
    let jwks_server = JwksServer::start(0, JwksMode::Serve(doc.clone())).expect("jwks server");
    // A 10,000-entry revocation list (8,000 token ids, 1,000 subjects, 1,000 sessions)
    // none of which names the bench token.
    let far = claims(ISS, AUD, "x", 7200, json!({}))["exp"].clone();
    let list_doc = json!({
        "jti": (0..8000).map(|i| json!({"jti": format!("revoked-{i:08}"), "exp": far})).collect::<Vec<_>>(),
        "sub": (0..1000).map(|i| json!({"sub": format!("user-gone-{i}"), "not_before": 1})).collect::<Vec<_>>(),
        "sid": (0..1000).map(|i| json!({"sid": format!("sess-gone-{i}"), "not_before": 1})).collect::<Vec<_>>(),
    })
    .to_string();
    let list_server = JwksServer::start(0, JwksMode::Serve(list_doc)).expect("list server");
    let (intro_server, intro_calls) = introspection_endpoint(&opaque);
    let opts = |plugin_cfg: Option<Value>, extra: Vec<Value>| {
        let mut o = Options::new(
            plugin_cfg.clone().unwrap_or(json!({})),
            0,
            jwks_server.server.port,
        );
        o.direct_response = true;
        o.production_logging = true;
        o.no_wasm = plugin_cfg.is_none();
        o.extra_filters = extra;
        // The wasm module unless a row says native (whatever BEARER_GUARD_HOST says).
        o.native = false;
        o
    };
    // The same configuration in the native module (its twin row runs next to the wasm one).
    let native = |mut o: Options| {
        o.native = true;
        Envoy::start(&o)
    };
    // An Envoy running another module (the floor, or a B build) with plugin config `cfg`.
    let with_wasm = |cfg: Value, wasm: &Path| {
        let mut o = opts(Some(cfg), vec![]);
        o.wasm = Some(wasm.to_path_buf());
        Envoy::start(&o)
    };
    eprintln!("starting Envoys…");
    let envoys = [
        Envoy::start(&opts(None, vec![])), // 0 no auth
        Envoy::start(&opts(Some(plugin("auto", 4096, true)), vec![])), // 1 wasm hop
        Envoy::start(&opts(None, vec![jwt_authn(&doc, 20_000)])), // 2 jwt_authn cache
        Envoy::start(&opts(None, vec![jwt_authn(&doc, 0)])), // 3 jwt_authn no cache
        Envoy::start(&opts(Some(plugin("auto", 4096, false)), vec![])), // 4 bearer-guard
        Envoy::start(&opts(Some(plugin("rust", 4096, false)), vec![])), // 5 pure Rust
        // 6 the wasm floor: a filter that only reads the header (`make bench` builds it)
        with_wasm(json!({}), &floor_wasm()),
    ];
    let wasm_b = std::env::var_os("BENCH_WASM_B").map(PathBuf::from);
    let envoys_b: Vec<Envoy> = wasm_b
        .iter()
        .flat_map(|b| {
            // Same order as 1, 4, 5 above (twins 7, 8, 9): hop, bearer-guard, pure Rust;
            // then the second level alone (twin 10).
            [
                with_wasm(plugin("auto", 4096, true), b),
                with_wasm(plugin("auto", 4096, false), b),
                with_wasm(plugin("rust", 4096, false), b),
                with_wasm(plugin_with_slots("auto", 0, false, 1 << 20), b),
            ]
        })
        .collect();
    // The second level alone (first level off, room for every token): its hit cost.
    let l2_opts = || opts(Some(plugin_with_slots("auto", 0, false, 1 << 20)), vec![]);
    let envoys: Vec<Envoy> = envoys.into_iter().chain(envoys_b).collect();
    let l2 = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain([Envoy::start(&l2_opts())])
        .collect();
    // The curve: 2, 4 and 8 workers (more workers than cores is fine for CPU per
    // request), each token used on several connections, so it meets several workers.
    // Caches of the same size on both sides (4096 per worker; bearer-guard's process-wide
    // level has its default 8192 slots). Envoys `curve + 3 i ..`: no auth, jwt_authn,
    // bearer-guard at CURVE[i] workers.
    let at = |w: usize, mut o: Options| {
        o.concurrency = w;
        o
    };
    let curve_opts = |w: usize| {
        at(
            w,
            opts(Some(plugin_with_slots("auto", 4096, false, 8192)), vec![]),
        )
    };
    let curve = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain(CURVE.iter().flat_map(|&w| {
            [
                Envoy::start(&at(w, opts(None, vec![]))),
                Envoy::start(&at(w, opts(None, vec![jwt_authn(&doc, 4096)]))),
                Envoy::start(&curve_opts(w)),
            ]
        }))
        .collect();
    // GraphQL: the items rule by root field, and the same request judged by its path.
    // bearer-guard holds the head with the body until it is judged (`hold_head`, as
    // shipped). Envoy's buffer filter after it, in both: the request judged by its path is
    // allowed at its head, and direct_response would answer it before its body is read —
    // Envoy then closes the connection, and every request would pay a new one.
    let gql_opts = |by_field: bool| {
        let mut cfg = plugin("auto", 4096, false);
        cfg["rules"] = if by_field {
            json!([
                {"name": "items", "match": {"path": "/graphql", "graphql": {"operation": "query", "fields": ["items"]}},
                 "headers": {"Solenya-Index-UUID": "uuid", "Solenya-User-UUID": "uuidv7"},
                 "permissions": ["read"]},
                {"name": "graphql", "match": {"path": "/graphql"}}
            ])
        } else {
            json!([
                {"name": "items", "match": {"path": "/graphql"},
                 "headers": {"Solenya-Index-UUID": "uuid", "Solenya-User-UUID": "uuidv7"},
                 "permissions": ["read"]}
            ])
        };
        cfg["graphql"] = json!({"hold_head": true});
        let mut o = opts(Some(cfg), vec![]);
        o.after_filters = vec![
            json!({"name": "envoy.filters.http.buffer", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": 65536}}),
        ];
        o
    };
    let gql = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain([
            Envoy::start(&gql_opts(true)),
            Envoy::start(&gql_opts(false)),
        ])
        .collect();
    // The cached path with `clear_route_cache`: Envoy chooses the route again.
    let reroute_opts = || {
        let mut cfg = plugin("auto", 4096, false);
        cfg["clear_route_cache"] = json!(true);
        opts(Some(cfg), vec![])
    };
    let reroute = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain([Envoy::start(&reroute_opts())])
        .collect();
    // The cached path with a 10,000-entry revocation list (the same token without a list
    // runs on envoy 4).
    let revoking_opts = || {
        let mut cfg = plugin("auto", 4096, false);
        cfg["providers"][0]["revocation"] =
            json!({"cluster": "revocation", "authority": "bench.idp", "path": "/revoked"});
        let mut o = opts(Some(cfg), vec![]);
        o.revocation_port = list_server.server.port;
        o
    };
    let revoking = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain([Envoy::start(&revoking_opts())])
        .collect();
    // DPoP: the bench provider requiring proofs (a replay store with room for every proof
    // of the run), and a client key the token is bound to.
    let dpop_opts = || {
        let mut cfg = plugin("auto", 4096, false);
        cfg["providers"][0]["dpop"] = json!({"mode": "required", "replay_entries": 1 << 20});
        opts(Some(cfg), vec![])
    };
    let dpop_envoy = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain([Envoy::start(&dpop_opts())])
        .collect();
    // Introspection: the bench provider and one whose authorization server judges opaque
    // tokens (on the `accounts` cluster). Its answer is kept an hour (`ttl_s`), longer than
    // the run: each Envoy's first request calls the endpoint, every later one is decided
    // from the kept answer.
    let intro_opts = || {
        let mut cfg = plugin("auto", 4096, false);
        if let Some(providers) = cfg["providers"].as_array_mut() {
            providers.push(json!({"name": "as", "issuer": INTRO_ISS, "audiences": [AUD],
                "introspection": {"cluster": "accounts", "authority": "bench.as", "path": "/introspect",
                    "client_id": INTRO_CLIENT, "client_secret": {"env": INTRO_SECRET_ENV},
                    "ttl_s": 3600, "timeout_ms": 1000}}));
        }
        let mut o = opts(Some(cfg), vec![]);
        o.accounts_port = intro_server.port;
        o.env
            .push((INTRO_SECRET_ENV.to_string(), INTRO_SECRET.to_string()));
        o
    };
    let intro = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain([Envoy::start(&intro_opts())])
        .collect();
    let client = idp::EcSigner::generate("bench-client", "ES256");
    let bound = signer.mint(&claims(
        ISS,
        AUD,
        "user-dpop",
        3600,
        json!({"permissions": ["read"], "cnf": {"jkt": idp::jkt(&idp::proof_jwk(&client))}}),
    ));
    // Probes: the floor with 10 more host calls of one kind per request.
    let probe = envoys.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain(
            PROBES
                .iter()
                .map(|kind| with_wasm(json!({"call": kind, "n": PROBE_CALLS}), &floor_wasm())),
        )
        .collect();
    // The native twins: (the wasm Envoy, the same configuration natively). The native
    // floor comes last.
    let natives: Vec<(usize, Options)> = [
        (1, opts(Some(plugin("auto", 4096, true)), vec![])),
        (4, opts(Some(plugin("auto", 4096, false)), vec![])),
        (5, opts(Some(plugin("rust", 4096, false)), vec![])),
        (l2, l2_opts()),
        (gql, gql_opts(true)),
        (gql + 1, gql_opts(false)),
        (reroute, reroute_opts()),
        (revoking, revoking_opts()),
        (dpop_envoy, dpop_opts()),
        (intro, intro_opts()),
    ]
    .into_iter()
    .chain(
        CURVE
            .iter()
            .enumerate()
            .map(|(i, &w)| (curve + 3 * i + 2, curve_opts(w))),
    )
    .collect();
    let first_native = envoys.len();
    let twin_of: std::collections::HashMap<usize, usize> = natives
        .iter()
        .enumerate()
        .map(|(i, (wasm, _))| (*wasm, first_native + i))
        .collect();
    let native_floor = first_native + natives.len();
    let envoys: Vec<Envoy> = envoys
        .into_iter()
        .chain(natives.into_iter().map(|(_, o)| native(o)))
        .chain([{
            let mut o = opts(Some(json!({})), vec![]);
            o.native = true;
            o.native_module_dir = Some(floor_native_dir());
            o.native_filter = "floor";
            Envoy::start(&o)
        }])
        .collect();
    // Fresh proofs (now, new jti) for a run of `seconds` at `rate` requests/s, for the
    // Envoy of a DPoP row (the proof names its URL), written to `path`.
    let mint_proofs = |envoy: usize, path: &Path, rate: f64, seconds: u64| {
        let url = format!("http://127.0.0.1:{}/bench", envoys[envoy].port);
        let n = ((rate * 1.3) as u64).max(PROOFS_PER_S) * seconds;
        let lines: Vec<String> = (0..n)
            .map(|i| {
                let jti = format!("{}-{i}", idp::now());
                let proof = idp::dpop_proof(&client, "GET", &url, &bound, idp::now(), &jti);
                format!("{bound} {proof}")
            })
            .collect();
        std::fs::write(path, lines.join("\n") + "\n").expect("dpop proofs");
    };
    let backend_line = envoys[4].log();
    if !backend_line.contains("RSA backend envoy") {
        eprintln!("warning: bearer-guard did not pick Envoy's verify_signature backend");
    }
    let native_line = twin_of
        .get(&4)
        .map(|&e| envoys[e].log())
        .unwrap_or_default();
    if !native_line.contains("RSA backend aws-lc") {
        eprintln!("warning: the native module did not pick the aws-lc backend");
    }
    // The introspection Envoys (wasm and native) answer the opaque token 200: their first
    // request makes their one call to the endpoint (a failed call is not kept: retried).
    let bearer_opaque = format!("Bearer {opaque}");
    for e in [Some(intro), twin_of.get(&intro).copied()]
        .into_iter()
        .flatten()
    {
        let mut status = 0;
        for _ in 0..10 {
            status = envoy::http(
                envoys[e].port,
                "GET",
                "/bench",
                &[("authorization", &bearer_opaque)],
            )
            .map_or(0, |r| r.status);
            if status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if status != 200 {
            let log = envoys[e].log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "the introspected opaque token got {status}, not 200 (envoy {e}); its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    // Rows that the ratios compare run next to each other in every round.
    let row = |name, envoy, tokens: &PathBuf, expect_ok| Row {
        name,
        envoy,
        tokens: tokens.clone(),
        expect_ok,
        script: None,
        verifications: None,
        dpop: false,
        fresh: false,
        results: vec![],
    };
    let graphql_row = |name, envoy| Row {
        script: Some(graphql_script.clone()),
        ..row(name, envoy, &one, true)
    };
    let counted = |name, envoy, verifications: Stat| Row {
        verifications: Some(verifications),
        fresh: true,
        ..row(name, envoy, &dir.join(format!("fresh-{envoy}.txt")), true)
    };
    let mut rows = vec![
        row("no auth (direct_response)", 0, &one, true),
        row(ROW_FLOOR, 6, &one, true),
        row(ROW_HOP, 1, &one, true),
        row(ROW_CACHED, 4, &one, true),
        row(INTRO, intro, &one_opaque, true),
        row(
            "bearer-guard, cached token, clear_route_cache",
            reroute,
            &one,
            true,
        ),
        row("jwt_authn, cache on, same token", 2, &one, true),
        row(ROW_JA_DISTINCT, 3, &distinct, true),
        row(ROW_DISTINCT, 4, &distinct, true),
        row(
            "bearer-guard, forged-signature flood",
            4,
            &forged_path,
            false,
        ),
        row("jwt_authn, forged-signature flood", 3, &forged_path, false),
        row(
            "bearer-guard pure-Rust, every token distinct",
            5,
            &distinct,
            true,
        ),
        row(JA_ES, 3, &es256_path, true),
        row(BG_ES, 4, &es256_path, true),
        row(RUST_ES, 5, &es256_path, true),
        row(L2, l2, &distinct, true),
        graphql_row(GQL, gql),
        graphql_row(GQL_PATH, gql + 1),
        row(REV_NONE, 4, &one_ids, true),
        row(REV, revoking, &one_ids, true),
        Row {
            script: Some(dpop_script.clone()),
            dpop: true,
            ..row(
                DPOP,
                dpop_envoy,
                &dir.join(format!("dpop-{dpop_envoy}.txt")),
                true,
            )
        },
    ];
    for (i, &w) in CURVE.iter().enumerate() {
        let (base, ja, bg) = curve_rows(w);
        rows.push(row(base, curve + 3 * i, &one, true));
        rows.push(counted(
            ja,
            curve + 3 * i + 1,
            Stat::Envoy("http.ingress.jwt_authn.jwt_cache_miss"),
        ));
        rows.push(counted(
            bg,
            curve + 3 * i + 2,
            Stat::Filter("token_cache_misses"),
        ));
    }
    for (i, kind) in PROBES.iter().enumerate() {
        rows.push(row(probe_row(kind), probe + i, &one, true));
    }
    // Each bearer-guard row gets its native twin right after it: the same tokens, script
    // and counts, against the native Envoy of the same configuration (its own fresh
    // tokens and proofs); the native floor right after the wasm floor.
    let mut with_native = Vec::new();
    for r in rows {
        let twin = twin_of.get(&r.envoy).map(|&envoy| Row {
            name: native_row(r.name),
            envoy,
            tokens: if r.fresh {
                dir.join(format!("fresh-{envoy}.txt"))
            } else if r.dpop {
                dir.join(format!("dpop-{envoy}.txt"))
            } else {
                r.tokens.clone()
            },
            ..r.clone()
        });
        let floor = (r.envoy == 6).then(|| row(NATIVE_FLOOR, native_floor, &one, true));
        with_native.push(r);
        with_native.extend(twin);
        with_native.extend(floor);
    }
    let mut rows = with_native;
    if wasm_b.is_some() {
        // Each bearer-guard row gets its B twin right after it (envoys 7-10 mirror 1, 4,
        // 5 and the second level's).
        let mut with_twins = Vec::new();
        for r in rows {
            let twin = match r.envoy {
                1 => Some(7),
                4 => Some(8),
                5 => Some(9),
                e if e == l2 => Some(10),
                _ => None,
            };
            let twin = twin.map(|envoy| Row {
                name: leak(format!("B: {}", r.name)),
                envoy,
                tokens: r.tokens.clone(),
                expect_ok: r.expect_ok,
                script: r.script.clone(),
                verifications: None,
                dpop: false,
                fresh: false,
                results: vec![],
            });
            with_twins.push(r);
            with_twins.extend(twin);
        }
        rows = with_twins;
    }
    // `BENCH_ROWS=distinct,forged` keeps the baseline plus rows whose name contains one of
    // the words (for quick comparisons while working on one path).
    if let Ok(words) = std::env::var("BENCH_ROWS") {
        let words: Vec<&str> = words.split(',').map(str::trim).collect();
        let mut i = 0;
        rows.retain(|row| {
            i += 1;
            i == 1 || words.iter().any(|w| !w.is_empty() && row.name.contains(w))
        });
    }
    // Fresh tokens for a run of `seconds` of a row: enough for its last rate (or 40,000
    // requests/s before its first run) with a third to spare. DPoP rows: proofs for their
    // last rate with a third to spare, at least `PROOFS_PER_S`.
    let mut rates: Vec<f64> = vec![40_000.0; rows.len()];
    let fresh_count = |rate: f64, seconds: u64| (rate * 1.3 * seconds as f64) as usize / USES + 200;
    // Warm up every configuration (JWKS fetched, V8 tiered up).
    for (i, row) in rows.iter().enumerate() {
        if row.dpop {
            mint_proofs(row.envoy, &row.tokens, 0.0, 1);
        }
        let n = fresh_count(rates[i], 1);
        if row.fresh {
            pool.hand_out(row.envoy, n, &row.tokens);
        }
        let r = wrk(
            &envoys[row.envoy],
            &row.tokens,
            row.script.as_ref().unwrap_or(&script),
            1,
        );
        if row.fresh {
            pool.sent(row.envoy, r.requests, n);
        }
        if row.fresh || row.dpop {
            rates[i] = r.requests as f64;
        }
    }
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        for (i, row) in rows.iter_mut().enumerate() {
            if row.dpop {
                mint_proofs(row.envoy, &row.tokens, rates[i], seconds);
            }
            let n = fresh_count(rates[i], seconds);
            if row.fresh {
                pool.hand_out(row.envoy, n, &row.tokens);
            }
            let envoy = &envoys[row.envoy];
            let before = row.verifications.map(|stat| stat.read(envoy));
            let mut r = wrk(
                envoy,
                &row.tokens,
                row.script.as_ref().unwrap_or(&script),
                seconds,
            );
            if let (Some(stat), Some(before)) = (row.verifications, before) {
                // Counters reach the stats on the VMs' next ticks.
                std::thread::sleep(Duration::from_millis(500));
                r.verifications = stat.read(envoy).saturating_sub(before) as f64;
            }
            if row.fresh {
                r.tokens_sent = pool.sent(row.envoy, r.requests, n) as f64;
            }
            if row.fresh || row.dpop {
                rates[i] = rates[i].max(r.requests as f64 / seconds as f64);
            }
            if row.expect_ok && r.non2xx > 0 {
                eprintln!("warning: {}: {} non-2xx responses", row.name, r.non2xx);
            }
            row.results.push(r);
        }
    }

    let med = |row: &Row, f: fn(&Run) -> f64| median(row.results.iter().map(f).collect());
    let (base_rps, base_cpu) = (med(&rows[0], |r| r.rps), med(&rows[0], |r| r.cpu_us));
    let mut table = String::from(
        "| configuration | req/s | p50 µs | p99 µs | added µs/request (throughput) | Envoy CPU µs/request | added CPU µs/request | non-2xx |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    // Rows of `w` workers are compared with the no-auth row of `w` workers.
    let baseline = |name: &str| {
        // The word before " workers: " (after a twin's prefix, if any).
        let workers = name
            .split_once(" workers: ")
            .and_then(|(w, _)| w.rsplit(' ').next());
        let base = workers.and_then(|w| {
            rows.iter()
                .find(|r| r.name == format!("{w} workers: no auth"))
        });
        base.map_or((base_rps, base_cpu), |r| {
            (med(r, |x| x.rps), med(r, |x| x.cpu_us))
        })
    };
    for row in &rows {
        let (rps, cpu) = (med(row, |r| r.rps), med(row, |r| r.cpu_us));
        let (p50, p99) = (med(row, |r| r.p50), med(row, |r| r.p99));
        let non2xx: u64 = row.results.iter().map(|r| r.non2xx).sum();
        let (b_rps, b_cpu) = baseline(row.name);
        let (add, add_cpu) = (1e6 / rps - 1e6 / b_rps, cpu - b_cpu);
        table.push_str(&format!(
            "| {} | {rps:.0} | {p50:.0} | {p99:.0} | {add:.1} | {cpu:.1} | {add_cpu:.1} | {non2xx} |\n",
            row.name
        ));
    }

    // Memory: RSS growth over 10,000 distinct valid tokens with room to cache them all,
    // on a wasm Envoy and on a native one. `BENCH_MEMORY=0` skips it (and only it).
    let mem_tokens = n_tokens.min(10_000);
    let memory = |native: bool| -> (u64, u64, f64) {
        let mut o = opts(Some(plugin("auto", 10_000, false)), vec![]);
        o.native = native;
        let mem = Envoy::start(&o);
        let warm = |e: &Envoy, t: &[String]| {
            for tok in t {
                let _ = envoy::http(
                    e.port,
                    "GET",
                    "/bench",
                    &[("authorization", &format!("Bearer {tok}"))],
                );
            }
        };
        warm(&mem, &valid[..50]);
        std::thread::sleep(Duration::from_millis(500));
        let before = mem.rss_kib();
        warm(&mem, &valid[..mem_tokens]);
        std::thread::sleep(Duration::from_millis(500));
        let after = mem.rss_kib();
        let per_token = (after.saturating_sub(before) as f64) * 1024.0 / mem_tokens as f64;
        (before, after, per_token)
    };
    let (memory_line, native_per_token) = if std::env::var("BENCH_MEMORY").is_ok_and(|v| v == "0") {
        (
            "Envoy RSS: not measured (BENCH_MEMORY=0).".to_string(),
            f64::NAN,
        )
    } else {
        let (before, after, per_token) = memory(false);
        let (n_before, n_after, n_per_token) = memory(true);
        (
            format!("Envoy RSS: {before} KiB before, {after} KiB after {mem_tokens} distinct valid tokens cached: {per_token:.0} bytes per cached token.\n\
                     Native Envoy RSS: {n_before} KiB before, {n_after} KiB after {mem_tokens} distinct valid tokens cached: {n_per_token:.0} bytes per cached token."),
            n_per_token,
        )
    };
    let wasm_size = std::fs::metadata(envoy::wasm_path())
        .map(|m| m.len())
        .unwrap_or(0);

    // Ratios pair the rows within each round (they ran seconds apart) and report the
    // median over rounds: the shared machine's speed drifts between rounds far more than
    // within one.
    let by_name = |k: &str| rows.iter().find(|r| r.name == k);
    let paired_with =
        |a: &str, b: &str, base: Option<&Row>, f: &dyn Fn(&Run, &Run, &Run) -> f64| -> f64 {
            match (by_name(a), by_name(b), base) {
                (Some(a), Some(b), Some(base)) => median(
                    a.results
                        .iter()
                        .zip(&b.results)
                        .zip(&base.results)
                        .map(|((x, y), z)| f(x, y, z))
                        .collect(),
                ),
                _ => f64::NAN,
            }
        };
    let paired = |a: &str, b: &str, f: &dyn Fn(&Run, &Run, &Run) -> f64| -> f64 {
        paired_with(a, b, rows.first(), f)
    };
    let added_ratio_cpu = |x: &Run, y: &Run, z: &Run| (x.cpu_us - z.cpu_us) / (y.cpu_us - z.cpu_us);
    let added_ratio_rps =
        |x: &Run, y: &Run, z: &Run| (1e6 / x.rps - 1e6 / z.rps) / (1e6 / y.rps - 1e6 / z.rps);
    let (hop, cached, floor) = (ROW_HOP, ROW_CACHED, ROW_FLOOR);
    let (bg, ja) = (ROW_DISTINCT, ROW_JA_DISTINCT);
    let (bg_forged, ja_forged) = (
        "bearer-guard, forged-signature flood",
        "jwt_authn, forged-signature flood",
    );
    let rust = "bearer-guard pure-Rust, every token distinct";
    let mut summary = String::new();
    summary.push_str(&format!(
        "\n{memory_line}\n.wasm size: {wasm_size} bytes ({:.0} KiB).\n\n",
        wasm_size as f64 / 1024.0
    ));
    summary.push_str(
        "Ratios (rows paired within each round, median over rounds; CPU = Envoy's CPU time per request, throughput = 1/req/s):\n",
    );
    summary.push_str(&format!(
        "- distinct tokens, bearer-guard / jwt_authn added cost: CPU {:.2}, throughput {:.2}\n",
        paired(bg, ja, &added_ratio_cpu),
        paired(bg, ja, &added_ratio_rps)
    ));
    summary.push_str(&format!(
        "- cached path minus the wasm hop: CPU {:+.1} µs, throughput {:+.1} µs\n",
        paired(cached, hop, &|x, y, _| x.cpu_us - y.cpu_us),
        paired(cached, hop, &|x, y, _| 1e6 / x.rps - 1e6 / y.rps)
    ));
    summary.push_str(&format!(
        "- wasm hop minus the floor (bearer-guard's own work on a public route): CPU {:+.1} µs; cached path minus the floor: CPU {:+.1} µs\n",
        paired(hop, floor, &|x, y, _| x.cpu_us - y.cpu_us),
        paired(cached, floor, &|x, y, _| x.cpu_us - y.cpu_us)
    ));
    summary.push_str(&format!(
        "- forged flood rejection rate, bearer-guard / jwt_authn: per CPU second {:.2}, req/s {:.2}\n",
        paired(bg_forged, ja_forged, &|x, y, _| y.cpu_us / x.cpu_us),
        paired(bg_forged, ja_forged, &|x, y, _| x.rps / y.rps)
    ));
    summary.push_str(&format!(
        "- pure-Rust / Envoy backend added cost (distinct tokens): CPU {:.2}, throughput {:.2}\n",
        paired(rust, bg, &added_ratio_cpu),
        paired(rust, bg, &added_ratio_rps)
    ));
    // Verifications per distinct token sent (every token of a run is new to its Envoy).
    let per_token = |name: &str| {
        by_name(name).map_or(f64::NAN, |r| {
            median(
                r.results
                    .iter()
                    .map(|x| x.verifications / x.tokens_sent)
                    .collect(),
            )
        })
    };
    for w in CURVE {
        let (base, ja, bg) = curve_rows(w);
        summary.push_str(&format!(
            "- {w} workers, each token {USES}× on rotating connections: bearer-guard / jwt_authn added cost: CPU {:.2}, throughput {:.2}; signature verifications per distinct token sent: bearer-guard {:.2}, jwt_authn {:.2}\n",
            paired_with(bg, ja, by_name(base), &added_ratio_cpu),
            paired_with(bg, ja, by_name(base), &added_ratio_rps),
            per_token(bg),
            per_token(ja),
        ));
    }
    summary.push_str(&format!(
        "- ES256, distinct tokens: bearer-guard / jwt_authn added cost: CPU {:.2}, throughput {:.2}; pure-Rust / Envoy backend: CPU {:.2}\n",
        paired(BG_ES, JA_ES, &added_ratio_cpu),
        paired(BG_ES, JA_ES, &added_ratio_rps),
        paired(RUST_ES, BG_ES, &added_ratio_cpu),
    ));
    summary.push_str(&format!(
        "- a second-level hit (another VM verified the token) costs {:.1} µs of CPU more than the hop, against {:.1} µs for a verification (every token distinct)\n",
        paired(L2, hop, &|x, y, _| x.cpu_us - y.cpu_us),
        paired(bg, hop, &|x, y, _| x.cpu_us - y.cpu_us),
    ));
    summary.push_str(&format!(
        "- GraphQL: an items query ({} bytes) judged by root field costs {:+.1} µs of CPU over the same request judged by its path (ratio of added cost over the hop {:.2})\n",
        gql_body.len(),
        paired(GQL, GQL_PATH, &|x, y, _| x.cpu_us - y.cpu_us),
        paired_with(GQL, GQL_PATH, by_name(hop), &added_ratio_cpu),
    ));
    summary.push_str(&format!(
        "- revocation: a cached token checked against a 10,000-entry list costs {:+.1} µs of CPU over the same token without a list (ratio of added cost {:.2})\n",
        paired(REV, REV_NONE, &|x, y, _| x.cpu_us - y.cpu_us),
        paired(REV, REV_NONE, &added_ratio_cpu),
    ));
    summary.push_str(&format!(
        "- DPoP: a request with a fresh ES256 proof and its cached bound token costs {:+.1} µs of CPU over a cached bearer token; its added cost (over no auth) is {:.2}× the bearer token's\n",
        paired(DPOP, cached, &|x, y, _| x.cpu_us - y.cpu_us),
        paired(DPOP, cached, &added_ratio_cpu),
    ));
    summary.push_str(&format!(
        "- introspection: an opaque token decided from its kept answer costs {:+.1} µs of CPU over a cached JWT; its added cost (over no auth) is {:.2}× the JWT's, throughput {:.2}× ({} calls to the endpoint in the whole run: one per Envoy, wasm and native)\n",
        paired(INTRO, cached, &|x, y, _| x.cpu_us - y.cpu_us),
        paired(INTRO, cached, &added_ratio_cpu),
        paired(INTRO, cached, &added_ratio_rps),
        intro_calls.load(Ordering::SeqCst),
    ));
    summary.push_str(
        "- one host call of each kind, from the probes ((probe − floor) / calls, CPU µs): ",
    );
    let prices: Vec<String> = PROBES
        .iter()
        .map(|kind| {
            let price = paired(probe_row(kind), floor, &|x, y, _| {
                (x.cpu_us - y.cpu_us) / PROBE_CALLS as f64
            });
            format!("{kind} {price:.2}")
        })
        .collect();
    summary.push_str(&prices.join(", "));
    summary.push('\n');
    summary.push_str(&native_summary(&NativeInputs {
        paired: &paired,
        paired_with: &|a, b, base, f| paired_with(a, b, by_name(base), f),
        per_token: &per_token,
        verify_us: (verify_rs, verify_es),
        per_cached_token: native_per_token,
        so_size: std::fs::metadata(envoy::native_dir().join("libbearer_guard.so"))
            .map_or(0, |m| m.len()),
    }));
    let header = format!(
        "bearer-guard bench: Envoy 1.40 --concurrency 1 (rows marked \"N workers\": --concurrency N), direct_response, wrk -t1 -c10 -d{seconds}s, {rounds} interleaved round(s), medians; {n_tokens} distinct RS256 (2048-bit) tokens\n\n"
    );
    if n_tokens <= 4096 {
        summary.push_str(
            "\nNote: with no more tokens than the cache holds (4096), the \"distinct\" rows repeat cached tokens: a sanity run, not a measurement.\n",
        );
    }
    let report = format!("{header}{table}{summary}\n{costs}");
    println!("{report}");
    let _ = std::fs::write(dir.join("results.md"), &report);
    drop(envoys);
}
