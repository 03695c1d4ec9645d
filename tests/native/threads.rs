//! The native host's process store with real threads: one core per OS thread, as Envoy
//! runs one native filter per worker thread, all on one [`ProcessStore`]. What the other
//! suites prove with several cores taking turns on one thread, here with the cores
//! racing: leases (one fetch for every worker starting at once) and compare-and-swap
//! (a DPoP proof sent to every worker at the same instant passes once).

use crate::support::fixtures::{
    claims_at_t0, vm_jwks_body, vm_provider, vm_token, ISS, SECRET, T0, T0_S,
};
use crate::support::idp::{dpop_proof, jkt, mint_hs256, proof_jwk, EcSigner};
use crate::vm::{entropy, fate, FakeHost};
use bearer_guard::{
    CallResponse, Effect, Headers, ProcessStore, Request, RustBackend, Worker as Core,
};
use serde_json::{json, Value};
use std::sync::{Arc, Barrier};

/// Worker threads: more than this machine's cores, so that they interleave.
const WORKERS: usize = 8;

/// A core of `plugin` for worker `index` on `store`, configured at [`T0`].
fn core(store: &Arc<ProcessStore>, plugin: &Value, index: usize) -> Core {
    let env = |name: &str| (name == "S").then(|| SECRET.to_string());
    let cfg = bearer_guard::parse_config(plugin.to_string().as_bytes(), &env).expect("config");
    let mut core = Core::new(
        cfg,
        Box::new(RustBackend),
        Box::new(Arc::clone(store)),
        (T0, u32::try_from(index).expect("index")),
        entropy(),
    );
    core.on_configure(T0);
    core
}

/// `GET https://api.test/v1/things` with these headers.
fn get(headers: &[(&str, &str)]) -> Request {
    let mut all = vec![(":scheme", "https")];
    all.extend_from_slice(headers);
    Request {
        method: "GET".into(),
        path: "/v1/things".into(),
        authority: "api.test".into(),
        request_id: "req".into(),
        headers: Headers::from_pairs(all),
        ..Default::default()
    }
}

/// A JWKS answer.
fn answer(core: &mut Core, now: u64, token: u32, host: &mut FakeHost) -> Vec<Effect> {
    let body = vm_jwks_body();
    let read = || body.clone();
    let response = CallResponse {
        status: Some("200".into()),
        body_size: body.len(),
        body: &read,
    };
    core.on_call_response(now, token, &response, host)
}

/// What one worker saw: the key fetches it made, its request's first and last fate.
#[derive(Debug)]
struct Seen {
    fetches: usize,
    first: Option<String>,
    last: Option<String>,
}

#[test]
fn workers_starting_at_once_fetch_the_keys_once_and_all_adopt_them() {
    for round in 0..50 {
        let store = Arc::new(ProcessStore::default());
        let plugin = json!({"providers": [vm_provider("idp")]});
        let (start, requested, answered) = (
            Barrier::new(WORKERS),
            Barrier::new(WORKERS),
            Barrier::new(WORKERS),
        );
        let seen: Vec<Seen> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..WORKERS)
                .map(|i| {
                    let (store, plugin) = (&store, &plugin);
                    let (start, requested, answered) = (&start, &requested, &answered);
                    s.spawn(move || {
                        let mut core = core(store, plugin, i);
                        let mut host = FakeHost::default();
                        let token = vm_token(&format!("user_{i}"), json!({}));
                        let auth = format!("Bearer {token}");
                        start.wait();
                        let out =
                            core.on_request(T0, 1, get(&[("authorization", &auth)]), &mut host);
                        let first = fate(&out, 1);
                        requested.wait();
                        let mut last = first.clone();
                        let fetches: Vec<u32> = host
                            .calls
                            .iter()
                            .filter(|(_, cluster, _)| cluster == "jwks")
                            .map(|(t, ..)| *t)
                            .collect();
                        for t in &fetches {
                            last = fate(&answer(&mut core, T0 + 5, *t, &mut host), 1).or(last);
                        }
                        answered.wait();
                        if last.as_deref() == Some("pause") {
                            last = fate(&core.on_tick(T0 + 10, &mut host), 1).or(last);
                        }
                        Seen {
                            fetches: fetches.len(),
                            first,
                            last,
                        }
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("worker thread"))
                .collect()
        });
        let fetches: usize = seen.iter().map(|s| s.fetches).sum();
        assert_eq!(
            fetches, 1,
            "round {round}: one fetch for the process: {seen:?}"
        );
        assert!(
            seen.iter().all(|s| s.first.as_deref() == Some("pause")),
            "round {round}: every request waits for the keys: {seen:?}"
        );
        assert!(
            seen.iter().all(|s| s.last.as_deref() == Some("continue")),
            "round {round}: every worker adopted the keys: {seen:?}"
        );
    }
}

#[test]
fn a_dpop_proof_sent_to_every_worker_at_once_passes_once() {
    let client = EcSigner::from_secret("c", "ES256", &[3; 32]).expect("key");
    let mut claims = claims_at_t0(ISS, "user_ada", json!({}));
    claims["cnf"] = json!({"jkt": jkt(&proof_jwk(&client))});
    let tok = mint_hs256(SECRET.as_bytes(), &claims);
    let auth = format!("DPoP {tok}");
    let plugin = json!({"providers": [{"name": "idp", "issuer": ISS, "algorithms": ["HS256"],
        "secret": {"env": "S"}, "dpop": {"mode": "required"}}]});
    let store = Arc::new(ProcessStore::default());
    const ROUNDS: usize = 40;
    let proofs: Vec<String> = (0..ROUNDS)
        .map(|r| {
            let url = "https://api.test/v1/things";
            dpop_proof(&client, "GET", url, &tok, T0_S, &format!("jti-{r}"))
        })
        .collect();
    let go = Barrier::new(WORKERS);
    let passed: Vec<Vec<bool>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..WORKERS)
            .map(|i| {
                let (store, plugin, proofs, auth, go) = (&store, &plugin, &proofs, &auth, &go);
                s.spawn(move || {
                    let mut core = core(store, plugin, i);
                    let mut host = FakeHost::default();
                    let mut passed = Vec::new();
                    for (round, proof) in proofs.iter().enumerate() {
                        let context = u32::try_from(round + 1).expect("round");
                        let request = get(&[("authorization", auth), ("dpop", proof)]);
                        go.wait();
                        let out = core.on_request(T0, context, request, &mut host);
                        passed.push(fate(&out, context).as_deref() == Some("continue"));
                    }
                    passed
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("worker thread"))
            .collect()
    });
    for round in 0..ROUNDS {
        let n = passed
            .iter()
            .filter(|p| p.get(round) == Some(&true))
            .count();
        assert_eq!(n, 1, "round {round}: the proof passed on {n} workers");
    }
}
