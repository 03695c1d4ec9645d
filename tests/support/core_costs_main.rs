//! What the VM core asks of the host per request, on each path (`make bench` prints it):
//! the glue's fixed calls, the effects it applies, shared-data reads and writes, and
//! signature calls. Figures that do not move with the machine's speed.
//!
//! `core-costs` prints the table; `core-costs --only PATH --n N` runs N decisions of one
//! path (`hop`, `cached`, `l2`, `distinct`) for `valgrind --tool=callgrind`, which counts
//! instructions; `--setup-only` does everything but the decisions (tokens minted
//! included), so `make bench` divides the difference of the two runs by N. Signatures
//! are stubbed (always valid, counted): the figures are the core's own work.

use bearer_guard::{BackendError, SignatureBackend};
use bearer_guard::{
    CallResponse, DispatchError, Effect, Host, Outgoing, Worker as Core, HOST_CALLS_PER_REQUEST,
};
use bearer_guard::{EcKey, RsaKey};
use bearer_guard::{Headers, Request};
use bearer_guard::{MemoryStore, Store, StoreError};
use serde_json::{json, Value};
use std::cell::Cell;
use std::rc::Rc;

const T0: u64 = 1_800_000_000_000;
const ISS: &str = "https://bench.idp";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A 2048-bit RSA modulus shape (odd, top bit set): parsed as a key, never used for
/// arithmetic (signatures are stubbed).
fn jwks() -> Vec<u8> {
    let mut n = vec![0xC3u8; 256];
    n[255] |= 1;
    json!({"keys": [{"kty": "RSA", "kid": "k1", "n": b64(&n), "e": "AQAB"}]})
        .to_string()
        .into_bytes()
}

/// An RS256 token for `sub` with a signature the stub accepts.
fn token(sub: &str) -> String {
    let now = (T0 / 1000) as i64;
    let header = json!({"alg": "RS256", "kid": "k1", "typ": "JWT"});
    let claims = json!({"iss": ISS, "aud": "bench", "sub": sub, "iat": now, "exp": now + 3600,
                        "permissions": ["read"], "org_id": "org_1"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    // Signatures differ per token, as real ones do (the stub accepts any): the verified-token
    // cache hashes a token's last bytes, which lie in its signature.
    let mut x = sub.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let signature: Vec<u8> = (0..256)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    format!("{input}.{}", b64(&signature))
}

fn plugin(cache: usize) -> Value {
    json!({
        "providers": [{"name": "bench", "issuer": ISS, "audiences": ["bench"], "algorithms": ["RS256"],
                       "jwks": {"cluster": "jwks", "authority": "bench.idp", "path": "/jwks"}}],
        "forward": {"headers": {"x-auth-subject": "sub", "x-auth-org": "org_id"}},
        "token_cache": {"max_entries": cache},
        "rules": [{"match": {"path": "/health"}, "public": true},
                  {"match": {"prefix": "/"}, "permissions": ["read"]}]
    })
}

/// A stub signature backend that counts its calls.
struct Stub(Rc<Cell<usize>>);

impl SignatureBackend for Stub {
    fn verify_rsa(
        &self,
        _: &RsaKey,
        _: bearer_guard::Hash,
        _: &[u8],
        _: &[u8],
    ) -> Result<bool, BackendError> {
        self.0.set(self.0.get() + 1);
        Ok(true)
    }
    fn verify_ecdsa(
        &self,
        _: &EcKey,
        _: bearer_guard::Hash,
        _: &[u8],
        _: &[u8],
    ) -> Result<bool, BackendError> {
        self.0.set(self.0.get() + 1);
        Ok(true)
    }
    fn name(&self) -> &'static str {
        "stub"
    }
}

/// A store that counts reads and writes (shared-data host calls).
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    gets: Cell<usize>,
    sets: Cell<usize>,
}

impl Store for Counting {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.gets.set(self.gets.get() + 1);
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        self.sets.set(self.sets.get() + 1);
        self.inner.set(key, value, cas)
    }
}

struct NoCalls;
impl Host for NoCalls {
    fn dispatch(&mut self, _: &Outgoing) -> Result<u32, DispatchError> {
        Ok(1)
    }
    fn clock_ms(&self) -> u64 {
        T0
    }
}

struct Worker {
    vm: Core,
    store: Rc<Counting>,
    signatures: Rc<Cell<usize>>,
}

impl Worker {
    fn new(store: Rc<Counting>, cache: usize) -> Worker {
        let cfg = bearer_guard::parse_config(plugin(cache).to_string().as_bytes(), &|_| None)
            .expect("config");
        let signatures = Rc::new(Cell::new(0));
        let mut vm = Core::new(
            cfg,
            Box::new(Stub(signatures.clone())),
            Box::new(store.clone()),
            (T0, 1),
            Some([cache as u8; 16]),
        );
        vm.on_configure(T0);
        Worker {
            vm,
            store,
            signatures,
        }
    }

    fn request(&mut self, path: &str, token: Option<&str>) -> Vec<Effect> {
        let mut headers = vec![("x-request-id".to_string(), "r".to_string())];
        if let Some(t) = token {
            headers.push(("authorization".to_string(), format!("Bearer {t}")));
        }
        let request = Request {
            method: "GET".into(),
            path: path.into(),
            authority: "api.test".into(),
            route_name: None,
            request_id: "r".into(),
            headers: Headers::from_pairs(headers),
            ..Default::default()
        };
        self.vm.on_request(T0 + 1, 7, request, &mut NoCalls)
    }
}

/// Two workers on one store whose keys loaded (A fetched them, B adopted them).
fn workers(b_cache: usize) -> (Worker, Worker) {
    let store = Rc::new(Counting::default());
    let mut a = Worker::new(store.clone(), 4096);
    let mut b = Worker::new(store, b_cache);
    a.vm.on_tick(T0, &mut NoCalls);
    let read = || jwks();
    let body = jwks();
    let response = CallResponse {
        status: Some("200".into()),
        body_size: body.len(),
        body: &read,
    };
    a.vm.on_call_response(T0, 1, &response, &mut NoCalls);
    b.vm.on_tick(T0, &mut NoCalls);
    (a, b)
}

/// The host calls of one request on `w`, by kind.
fn costs(w: &mut Worker, path: &str, token: Option<&str>) -> [usize; 5] {
    let (gets, sets, sigs) = (w.store.gets.get(), w.store.sets.get(), w.signatures.get());
    let effects = w.request(path, token);
    let applied: usize = effects.iter().map(|e| e.host_calls(Some(7))).sum();
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Continue { .. })),
        "{path}: the request must pass: {effects:?}"
    );
    [
        HOST_CALLS_PER_REQUEST,
        applied,
        w.store.gets.get() - gets,
        w.store.sets.get() - sets,
        w.signatures.get() - sigs,
    ]
}

fn table() {
    let (mut a, mut b) = workers(0);
    let t = token("user-cached");
    costs(&mut a, "/v1/x", Some(&t));
    let rows = [
        ("hop (public rule)", costs(&mut a, "/health", None)),
        ("cached token", costs(&mut a, "/v1/x", Some(&t))),
        // B has no first level: the verdict A published answers.
        ("second-level hit", costs(&mut b, "/v1/x", Some(&t))),
        (
            "distinct token",
            costs(&mut a, "/v1/x", Some(&token("user-new"))),
        ),
    ];
    println!("Host calls per request (VM core, signatures stubbed; 2 identity headers forwarded):");
    println!(
        "  {:<20} {:>6} {:>8} {:>12} {:>12} {:>10} {:>6}",
        "path", "glue", "effects", "shared gets", "shared sets", "signature", "total"
    );
    for (name, c) in rows {
        let total: usize = c.iter().sum();
        println!(
            "  {name:<20} {:>6} {:>8} {:>12} {:>12} {:>10} {total:>6}",
            c[0], c[1], c[2], c[3], c[4]
        );
    }
}

/// N decisions of one path (none with `setup_only`), for callgrind.
fn only(path: &str, n: usize, setup_only: bool) {
    let (mut a, mut b) = workers(0);
    let t = token("user-cached");
    a.request("/v1/x", Some(&t));
    let distinct: Vec<String> = if path == "distinct" {
        (0..n).map(|i| token(&format!("user-{i}"))).collect()
    } else {
        Vec::new()
    };
    // What the loop does not measure is done above: setup and, for `distinct`, minting.
    if setup_only {
        std::hint::black_box(distinct);
        return;
    }
    if !["hop", "cached", "l2", "distinct"].contains(&path) {
        eprintln!("core-costs: --only hop|cached|l2|distinct");
        std::process::exit(2)
    }
    for i in 0..n {
        let effects = match path {
            "hop" => a.request("/health", None),
            "cached" => a.request("/v1/x", Some(&t)),
            "l2" => b.request("/v1/x", Some(&t)),
            _ => a.request("/v1/x", distinct.get(i).map(String::as_str)),
        };
        std::hint::black_box(effects);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    match value("--only") {
        Some(path) => {
            let n = value("--n").and_then(|n| n.parse().ok()).unwrap_or(1000);
            only(&path, n, args.iter().any(|a| a == "--setup-only"));
        }
        None => table(),
    }
}
