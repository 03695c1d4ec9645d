//! The VM core natively: several VMs on one in-memory store are several Envoy workers of
//! one process. Each test drives entry points with explicit times and checks the effects
//! and the calls made — the behaviour `e2e/process.rs` proves in Envoy, in milliseconds.

use crate::support::fixtures::{vm_jwks_body, vm_provider, vm_token, T0, TIMEOUT_MS};
use bearer_guard::RustBackend;
use bearer_guard::LEASE_GRACE_MS;
use bearer_guard::{
    CallResponse, DispatchError, Effect, Host, Outgoing, Worker as Core, WAIT_GRACE_MS,
};
use bearer_guard::{Headers, Request};
use bearer_guard::{MemoryStore, Store, StoreError};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

const REFRESH_MS: u64 = 60_000;

/// A token of `sub` (in organisation `org_1`) valid at [`T0`] for an hour.
pub(crate) fn token(sub: &str) -> String {
    vm_token(sub, json!({"org_id": "org_1"}))
}

/// The VM suites' provider refreshing its keys every minute; `account` adds an account
/// service.
fn plugin(account: bool) -> Value {
    let mut provider = vm_provider("idp");
    provider["jwks"]["refresh_s"] = json!(REFRESH_MS / 1000);
    if account {
        provider["account"] = json!({"cluster": "accounts", "authority": "accounts.test",
            "path": "/accounts?user={sub}", "timeout_ms": TIMEOUT_MS,
            "headers": {"x-account-id": "id"}});
    }
    json!({"providers": [provider], "forward": {"headers": {"x-auth-subject": "sub"}}})
}

/// A call's headers and body as the host was asked to send them.
pub(crate) type Sent = (Vec<(String, String)>, Vec<u8>);

/// A host that numbers the calls it makes and keeps them (or refuses them all).
#[derive(Default)]
pub(crate) struct FakeHost {
    pub(crate) calls: Vec<(u32, String, String)>,
    /// Each call's headers and body, in the order made.
    pub(crate) sent: Vec<Sent>,
    pub(crate) refuse: bool,
}

impl Host for FakeHost {
    fn dispatch(&mut self, call: &Outgoing) -> Result<u32, DispatchError> {
        if self.refuse {
            return Err(DispatchError("refused".into()));
        }
        let path = call
            .headers
            .iter()
            .find(|(k, _)| *k == ":path")
            .map_or("", |(_, v)| v);
        let token = 100 + self.calls.len() as u32;
        self.calls
            .push((token, call.cluster.to_string(), path.to_string()));
        let headers = call
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.sent.push((headers, call.body.to_vec()));
        Ok(token)
    }
    fn clock_ms(&self) -> u64 {
        T0
    }
}

/// Random bytes as a host gives each VM: distinct per VM, so every test with several VMs
/// on one store also checks that they agree on the process's token digest key.
pub(crate) fn entropy() -> Option<[u8; 16]> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    Some(bytes)
}

/// One worker: its VM and its host.
pub(crate) struct Worker {
    pub(crate) vm: Core,
    pub(crate) host: FakeHost,
}

impl Worker {
    /// A worker on its own store for a compiled configuration (metric names).
    pub(crate) fn from_config(cfg: bearer_guard::Config) -> Worker {
        let store: Rc<dyn Store> = store();
        Worker {
            vm: Core::new(
                cfg,
                Box::new(RustBackend),
                Box::new(store),
                (T0, 1),
                entropy(),
            ),
            host: FakeHost::default(),
        }
    }

    pub(crate) fn new(store: Rc<dyn Store>, plugin: &Value, now: u64) -> Worker {
        Worker::with_env(store, plugin, now, &|_| None)
    }

    /// Like [`Worker::new`], with the VM environment `env` (secrets).
    pub(crate) fn with_env(
        store: Rc<dyn Store>,
        plugin: &Value,
        now: u64,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Worker {
        let cfg = bearer_guard::parse_config(plugin.to_string().as_bytes(), env).expect("config");
        let mut vm = Core::new(
            cfg,
            Box::new(RustBackend),
            Box::new(store),
            (now, 1),
            entropy(),
        );
        vm.on_configure(now);
        Worker {
            vm,
            host: FakeHost::default(),
        }
    }

    pub(crate) fn request(&mut self, now: u64, context: u32, token: &str) -> Vec<Effect> {
        let request = Request {
            method: "GET".into(),
            path: "/v1/things".into(),
            authority: "api.test".into(),
            route_name: None,
            request_id: format!("req-{context}"),
            headers: Headers::from_pairs([("authorization", format!("Bearer {token}"))]),
            ..Default::default()
        };
        self.vm.on_request(now, context, request, &mut self.host)
    }

    pub(crate) fn respond(
        &mut self,
        now: u64,
        call: u32,
        status: &str,
        body: &[u8],
    ) -> Vec<Effect> {
        let owned = body.to_vec();
        let read = move || owned.clone();
        let response = CallResponse {
            status: Some(status.to_string()),
            body_size: body.len(),
            body: &read,
        };
        self.vm
            .on_call_response(now, call, &response, &mut self.host)
    }

    pub(crate) fn tick(&mut self, now: u64) -> Vec<Effect> {
        self.vm.on_tick(now, &mut self.host)
    }

    /// The stream of `context` is gone.
    pub(crate) fn on_context_gone_for_test(&mut self, context: u32) {
        self.vm.on_context_gone(context);
    }

    /// The calls made to `cluster`.
    pub(crate) fn calls_to(&self, cluster: &str) -> Vec<u32> {
        self.host
            .calls
            .iter()
            .filter(|(_, c, _)| c == cluster)
            .map(|(t, _, _)| *t)
            .collect()
    }
}

/// What became of the request of `context`: `Continue`, `Pause`, a reply's status, or
/// nothing.
pub(crate) fn fate(effects: &[Effect], context: u32) -> Option<String> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Continue { context: c } if *c == context => Some("continue".into()),
        Effect::Pause { context: c } if *c == context => Some("pause".into()),
        Effect::Reply { context: c, reply } if *c == context => Some(reply.status.to_string()),
        _ => None,
    })
}

pub(crate) fn store() -> Rc<MemoryStore> {
    Rc::new(MemoryStore::default())
}

/// Two workers on one store, the first having loaded the keys at [`T0`].
fn loaded(plugin: &Value) -> (Rc<MemoryStore>, Worker, Worker) {
    let s = store();
    let mut a = Worker::new(s.clone(), plugin, T0);
    let b = Worker::new(s.clone(), plugin, T0);
    let first = a.request(T0, 1, &token("user_0"));
    let fetch = a.calls_to("jwks");
    assert_eq!(fate(&first, 1).as_deref(), Some("pause"));
    let done = a.respond(T0, fetch[0], "200", &vm_jwks_body());
    assert!(
        fate(&done, 1).is_some(),
        "the first request decides: {done:?}"
    );
    (s, a, b)
}

#[test]
fn one_jwks_fetch_per_process_and_waiting_requests_wake_on_another_vms_publish() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(false), T0);
    let mut b = Worker::new(s.clone(), &plugin(false), T0);
    assert_ne!(a.vm.id(), b.vm.id(), "each VM has its own number");
    let t = token("user_1");
    assert_eq!(fate(&a.request(T0, 1, &t), 1).as_deref(), Some("pause"));
    assert_eq!(fate(&b.request(T0, 2, &t), 2).as_deref(), Some("pause"));
    assert_eq!(a.calls_to("jwks").len(), 1, "A holds the lease and fetches");
    assert!(b.calls_to("jwks").is_empty(), "B waits for A's fetch");
    // B's ticks while A's fetch is in flight change nothing.
    assert_eq!(fate(&b.tick(T0 + 20), 2), None);
    let fetch = a.calls_to("jwks")[0];
    assert_eq!(
        fate(&a.respond(T0 + 30, fetch, "200", &vm_jwks_body()), 1).as_deref(),
        Some("continue")
    );
    // B adopts the published key set on its next tick, and its request goes on.
    assert_eq!(fate(&b.tick(T0 + 40), 2).as_deref(), Some("continue"));
    assert_eq!(b.vm.metrics().pending("provider.idp.key_sets_adopted"), 1);
    assert!(b.calls_to("jwks").is_empty(), "one fetch for the process");
    assert!(!a.vm.waiting() && !b.vm.waiting());
}

#[test]
fn a_failed_refresh_keeps_the_keys_on_every_vm() {
    let (_s, mut a, mut b) = loaded(&plugin(false));
    b.tick(T0 + 10);
    let due = T0 + REFRESH_MS;
    a.tick(due);
    b.tick(due);
    let refresh = a.calls_to("jwks");
    assert_eq!(refresh.len(), 2, "A refreshes when due: {refresh:?}");
    assert!(b.calls_to("jwks").is_empty(), "B does not");
    let failed = a.respond(due + 5, refresh[1], "503", b"");
    assert!(failed
        .iter()
        .any(|e| matches!(e, Effect::Log(_, l) if l.contains("keeping previous keys"))));
    let t = token("user_2");
    assert_eq!(
        fate(&a.request(due + 10, 1, &t), 1).as_deref(),
        Some("continue")
    );
    b.tick(due + 20);
    assert_eq!(
        fate(&b.request(due + 30, 2, &t), 2).as_deref(),
        Some("continue")
    );
    // The retry is A's or B's, once: after the backoff, one of them fetches again.
    a.tick(due + 1100);
    b.tick(due + 1100);
    assert_eq!(a.calls_to("jwks").len() + b.calls_to("jwks").len(), 3);
}

#[test]
fn a_fetch_whose_vm_goes_silent_is_taken_over() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(false), T0);
    let mut b = Worker::new(s.clone(), &plugin(false), T0);
    a.request(T0, 1, &token("user_3"));
    assert_eq!(a.calls_to("jwks").len(), 1);
    // A's context went away with its call: no answer ever comes.
    let lapse = T0 + TIMEOUT_MS + LEASE_GRACE_MS;
    b.tick(lapse - 1);
    assert!(b.calls_to("jwks").is_empty(), "the lease still holds");
    let taken = b.tick(lapse);
    assert_eq!(b.calls_to("jwks").len(), 1, "B takes the fetch over");
    assert!(taken
        .iter()
        .any(|e| matches!(e, Effect::Log(_, l) if l.contains("taking over"))));
    assert_eq!(
        b.vm.metrics().pending("provider.idp.jwks_lease_takeovers"),
        1
    );
    let call = b.calls_to("jwks")[0];
    b.respond(lapse + 5, call, "200", &vm_jwks_body());
    assert_eq!(
        fate(&b.request(lapse + 10, 2, &token("user_3")), 2).as_deref(),
        Some("continue")
    );
}

#[test]
fn a_request_waits_no_longer_than_its_deadline() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(false), T0);
    a.request(T0, 1, &token("user_4"));
    let deadline = T0 + TIMEOUT_MS + WAIT_GRACE_MS;
    assert_eq!(fate(&a.tick(deadline - 1), 1), None, "still waiting");
    assert_eq!(fate(&a.tick(deadline), 1).as_deref(), Some("500"));
    assert!(!a.vm.waiting());
}

#[test]
fn a_call_that_cannot_be_made_answers_at_once() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(false), T0);
    a.host.refuse = true;
    let effects = a.request(T0, 1, &token("user_5"));
    assert_eq!(fate(&effects, 1).as_deref(), Some("500"));
    assert!(!a.vm.waiting());
}

#[test]
fn a_new_configuration_starts_from_the_published_keys() {
    let (s, _a, _b) = loaded(&plugin(false));
    let mut c = Worker::new(s.clone(), &plugin(false), T0 + 5000);
    let effects = c.request(T0 + 5000, 9, &token("user_6"));
    assert_eq!(fate(&effects, 9).as_deref(), Some("continue"));
    assert!(
        c.host.calls.is_empty(),
        "no refetch for a new configuration"
    );
}

/// Two VMs drawing different random bytes agree on the process's digest key: a token
/// one verified is a second-level hit on the other (no signature check), and a token
/// differing in one character of its signature is verified (and refused) there.
#[test]
fn a_token_verified_on_one_vm_is_a_second_level_hit_on_another() {
    let (_s, mut a, mut b) = loaded(&plugin(false));
    b.tick(T0 + 10);
    let t = token("user_l2");
    assert_eq!(
        fate(&a.request(T0 + 20, 1, &t), 1).as_deref(),
        Some("continue")
    );
    assert_eq!(
        fate(&b.request(T0 + 30, 2, &t), 2).as_deref(),
        Some("continue")
    );
    assert_eq!(b.vm.metrics().pending("token_cache_shared_hits"), 1);
    let mut forged = t.into_bytes();
    let i = forged.len() - 5;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(
        fate(&b.request(T0 + 40, 3, &forged), 3).as_deref(),
        Some("401")
    );
    assert_eq!(b.vm.metrics().pending("token_cache_shared_hits"), 1);
}

#[test]
fn concurrent_account_lookups_on_two_vms_make_one_call() {
    let (_s, mut a, mut b) = loaded(&plugin(true));
    b.tick(T0 + 10);
    let t = token("user_7");
    assert_eq!(
        fate(&a.request(T0 + 20, 1, &t), 1).as_deref(),
        Some("pause")
    );
    assert_eq!(
        fate(&b.request(T0 + 20, 2, &t), 2).as_deref(),
        Some("pause")
    );
    let asked = a.calls_to("accounts");
    assert_eq!(asked.len(), 1, "A asks");
    assert!(b.calls_to("accounts").is_empty(), "B waits for A's answer");
    let answered = a.respond(T0 + 30, asked[0], "200", br#"{"id":"acct_7"}"#);
    assert_eq!(fate(&answered, 1).as_deref(), Some("continue"));
    assert!(answered.iter().any(|e| matches!(e, Effect::Header { context: 1, name, value: Some(v) } if name == "x-account-id" && v == "acct_7")));
    let woken = b.tick(T0 + 40);
    assert_eq!(fate(&woken, 2).as_deref(), Some("continue"));
    assert!(woken.iter().any(|e| matches!(e, Effect::Header { context: 2, name, value: Some(v) } if name == "x-account-id" && v == "acct_7")));
    assert_eq!(b.vm.metrics().pending("account_shared_hits"), 1);
    assert!(b.calls_to("accounts").is_empty());
}

#[test]
fn an_account_claim_whose_vm_goes_silent_lapses() {
    let (_s, mut a, mut b) = loaded(&plugin(true));
    b.tick(T0 + 10);
    let t = token("user_8");
    a.request(T0 + 20, 1, &t);
    assert_eq!(a.calls_to("accounts").len(), 1);
    a.vm.on_context_gone(1);
    // Within the claim, B waits; after it, B asks itself.
    b.request(T0 + 30, 2, &t);
    assert!(b.calls_to("accounts").is_empty());
    let lapse = T0 + 20 + TIMEOUT_MS + bearer_guard::ACCOUNT_CLAIM_GRACE_MS;
    b.tick(lapse + 1);
    b.request(lapse + 2, 3, &t);
    assert_eq!(b.calls_to("accounts").len(), 1, "the claim lapsed: B asks");
}

/// A store that runs `hook` once, right after the first write of a key with `prefix`
/// matching `phase` (`false`: the create with CAS 0; `true`: a compare-and-swap).
struct Interleave {
    inner: Rc<MemoryStore>,
    prefix: &'static str,
    on_cas: bool,
    hook: RefCell<Option<Box<dyn FnOnce()>>>,
}

impl Store for Interleave {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if key.starts_with(self.prefix) && (cas != 0) == self.on_cas {
            if let Some(hook) = self.hook.borrow_mut().take() {
                // The other VM's whole claim runs between this VM's read and its write.
                hook();
            }
        }
        self.inner.set(key, value, cas)
    }
}

/// A's account claim with B's whole claim run inside it; the account calls each made.
fn interleaved_claims(on_cas: bool) -> (usize, usize) {
    let s = store();
    let cfg = plugin(true);
    let mut seed = Worker::new(s.clone(), &cfg, T0);
    let fetch = {
        seed.request(T0, 1, &token("user_0"));
        seed.calls_to("jwks")[0]
    };
    seed.respond(T0, fetch, "200", &vm_jwks_body());
    let b = Rc::new(RefCell::new(Worker::new(s.clone(), &cfg, T0)));
    b.borrow_mut().tick(T0 + 1);
    let hook: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    let interleave = Rc::new(Interleave {
        inner: s.clone(),
        prefix: "bearer_guard.acct.",
        on_cas,
        hook,
    });
    let mut a = Worker::new(interleave.clone(), &cfg, T0);
    a.tick(T0 + 1);
    let t = token("user_9");
    let (b2, t2) = (b.clone(), t.clone());
    *interleave.hook.borrow_mut() = Some(Box::new(move || {
        b2.borrow_mut().request(T0 + 2, 2, &t2);
    }));
    a.request(T0 + 2, 1, &t);
    let b_calls = b.borrow().calls_to("accounts").len();
    (a.calls_to("accounts").len(), b_calls)
}

#[test]
fn a_claim_raced_between_read_and_compare_and_swap_is_lost_to_the_other_vm() {
    // B claims after A read the slot and before A's compare-and-swap: A's write fails,
    // A reads again, sees B's claim and waits. One call.
    let (a, b) = interleaved_claims(true);
    assert_eq!((a, b), (0, 1), "exactly one VM calls");
}

#[test]
fn a_claim_raced_inside_the_creation_of_its_slot_makes_at_most_two_calls() {
    // The window `shared::update` documents: the store cannot create a key atomically, so
    // when B creates, reads and claims a fresh slot between A's read of the empty slot
    // and A's create, A's create overwrites B's claim and both call — once each, and
    // both answers are right.
    let (a, b) = interleaved_claims(false);
    assert_eq!(a + b, 2, "a duplicate call, never more: ({a}, {b})");
}

/// A GraphQL endpoint: `items` needs `index:read:*`, any other field a valid token.
fn graphql_plugin() -> Value {
    let mut p = plugin(false);
    p["rules"] = json!([
        {"name": "items", "match": {"path": "/graphql", "graphql": {"operation": "query", "fields": ["items"]}},
         "permissions": ["index:read:*"]},
        {"name": "graphql", "match": {"path": "/graphql"}}
    ]);
    p
}

impl Worker {
    pub(crate) fn graphql(&mut self, now: u64, context: u32, token: &str) -> Vec<Effect> {
        let request = Request {
            method: "POST".into(),
            path: "/graphql".into(),
            authority: "api.test".into(),
            request_id: format!("req-{context}"),
            headers: Headers::from_pairs([
                ("authorization", format!("Bearer {token}")),
                ("content-type", "application/json".into()),
            ]),
            ..Default::default()
        };
        self.vm.on_request(now, context, request, &mut self.host)
    }

    pub(crate) fn body(&mut self, now: u64, context: u32, body: &str, end: bool) -> Vec<Effect> {
        let owned = body.as_bytes().to_vec();
        let read = move || owned.clone();
        self.vm
            .on_request_body(now, context, (body.len(), end), &read, &mut self.host)
    }
}

#[test]
fn a_graphql_request_is_authenticated_from_its_head_and_judged_from_its_body() {
    let s = store();
    let mut a = Worker::new(s.clone(), &graphql_plugin(), T0);
    let t = token("user_g");
    // The head waits for the keys; then it goes on with the identity, and the body is held.
    assert_eq!(fate(&a.graphql(T0, 1, &t), 1).as_deref(), Some("pause"));
    let fetch = a.calls_to("jwks")[0];
    let resumed = a.respond(T0 + 5, fetch, "200", &vm_jwks_body());
    assert_eq!(
        fate(&resumed, 1).as_deref(),
        Some("continue"),
        "{resumed:?}"
    );
    assert!(resumed.iter().any(|e| matches!(e, Effect::Header { context: 1, name, value: Some(v) } if name == "x-auth-subject" && v == "user_g")));
    assert_eq!(
        fate(&a.body(T0 + 6, 1, "{\"query\":", false), 1).as_deref(),
        Some("pause")
    );
    let items = r#"{"query":"{ items { id } }"}"#;
    assert_eq!(
        fate(&a.body(T0 + 7, 1, items, true), 1).as_deref(),
        Some("403")
    );
    // Another field, another rule: the token alone is enough.
    assert_eq!(
        fate(&a.graphql(T0 + 10, 2, &t), 2).as_deref(),
        Some("continue")
    );
    let search = r#"{"query":"{ search }"}"#;
    assert_eq!(
        fate(&a.body(T0 + 11, 2, search, true), 2).as_deref(),
        Some("continue")
    );
    // A forged token is refused from the head: the body is never read.
    let at = t.len() - 10;
    let flipped = if &t[at..at + 1] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &t[..at], &t[at + 1..]);
    assert_eq!(
        fate(&a.graphql(T0 + 12, 3, &forged), 3).as_deref(),
        Some("401")
    );
    assert!(
        a.body(T0 + 12, 3, search, true).is_empty(),
        "decided already"
    );
    // A body over the limit is refused without being read.
    a.graphql(T0 + 13, 4, &t);
    let big = " ".repeat(70_000);
    assert_eq!(
        fate(&a.body(T0 + 13, 4, &big, true), 4).as_deref(),
        Some("400")
    );
}

/// The effects' kinds for `context`, in order (`header:NAME`, `clear`, `continue`…).
fn kinds(effects: &[Effect], context: u32) -> Vec<String> {
    effects
        .iter()
        .filter(|e| e.context() == Some(context))
        .filter_map(|e| match e {
            Effect::Header { name, .. } => Some(format!("header:{name}")),
            Effect::ClearRouteCache { .. } => Some("clear".into()),
            Effect::Continue { .. } => Some("continue".into()),
            Effect::Reply { reply, .. } => Some(reply.status.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn with_clear_route_cache_the_route_is_chosen_again_after_the_identity_headers() {
    let mut with = plugin(false);
    with["clear_route_cache"] = json!(true);
    let (_s, mut a, _) = loaded(&with);
    let t = token("user_r");
    // A cached token: the identity header is set, then the route cache cleared, then on.
    assert_eq!(
        kinds(&a.request(T0 + 1, 2, &t), 2),
        ["header:x-auth-subject", "clear", "continue"]
    );
    // A refused request is answered: no route is chosen.
    assert_eq!(kinds(&a.request(T0 + 2, 3, "not-a-token"), 3), ["401"]);
    // Without the option, nothing asks Envoy to choose again.
    let (_s, mut b, _) = loaded(&plugin(false));
    assert_eq!(
        kinds(&b.request(T0 + 1, 2, &t), 2),
        ["header:x-auth-subject", "continue"]
    );
}

/// Requests are judged at the VM's clock: the last tick, configuration or call
/// response, never earlier than a time it has seen (no host clock per request).
#[test]
fn the_clock_requests_are_judged_at_is_the_last_tick() {
    let s = store();
    let mut a = Worker::new(s, &plugin(false), T0);
    assert_eq!(a.vm.clock(), T0, "configured at T0");
    a.tick(T0 + 200);
    assert_eq!(a.vm.clock(), T0 + 200);
    // A late call response or a tick from the past never moves it back.
    a.tick(T0 + 100);
    assert_eq!(a.vm.clock(), T0 + 200);
    let fetch = a.calls_to("jwks")[0];
    a.respond(T0 + 250, fetch, "200", &vm_jwks_body());
    assert_eq!(a.vm.clock(), T0 + 250);
}

/// An account lookup whose answer never comes (the context that made the call went
/// away): while it counts as in flight, later requests for the same identity wait for it
/// rather than call again; after `LOST_LOOKUP_MS` it is given up, the next request calls
/// anew, and a late answer to the lost call changes nothing.
#[test]
fn a_lookup_whose_answer_never_comes_is_given_up() {
    use bearer_guard::LOST_LOOKUP_MS;
    let (_s, mut a, _) = loaded(&plugin(true));
    let t = token("user_lost");
    let lookups = |a: &Worker| -> Vec<u32> {
        a.host
            .calls
            .iter()
            .filter(|(_, c, p)| c == "accounts" && p.contains("user_lost"))
            .map(|(t, _, _)| *t)
            .collect()
    };
    assert_eq!(
        fate(&a.request(T0 + 1, 10, &t), 10).as_deref(),
        Some("pause")
    );
    let lost_call = lookups(&a)[0];
    // The request gives up at its deadline: 500.
    let deadline = T0 + 1 + TIMEOUT_MS + WAIT_GRACE_MS;
    assert_eq!(fate(&a.tick(deadline), 10).as_deref(), Some("500"));
    // Still in flight: the same identity waits for it, no second call.
    assert_eq!(
        fate(&a.request(deadline + 1, 11, &t), 11).as_deref(),
        Some("pause")
    );
    assert_eq!(lookups(&a).len(), 1, "no second call");
    a.on_context_gone_for_test(11);
    // Given up: the next request calls again.
    a.tick(T0 + 1 + LOST_LOOKUP_MS);
    assert_eq!(
        fate(&a.request(T0 + 2 + LOST_LOOKUP_MS, 12, &t), 12).as_deref(),
        Some("pause")
    );
    assert_eq!(lookups(&a).len(), 2, "a new call");
    // A late answer to the lost call is ignored.
    let late = a.respond(
        T0 + 3 + LOST_LOOKUP_MS,
        lost_call,
        "200",
        br#"{"id":"acct"}"#,
    );
    assert!(late.is_empty(), "{late:?}");
}

/// An issuer template without `issuer_values` is said once per process: of two workers
/// configured on one store, only the first logs the warning (and a worker configured
/// again, as on a reconfiguration with the same provider, does not repeat it).
#[test]
fn an_open_issuer_template_is_warned_about_once_per_process() {
    let mut provider = vm_provider("entra");
    provider["issuer"] = json!("https://login.example.com/{tid}/v2.0");
    let plugin = json!({"providers": [provider]});
    let s = store();
    let warnings = || {
        let cfg =
            bearer_guard::parse_config(plugin.to_string().as_bytes(), &|_| None).expect("config");
        let store: Rc<dyn Store> = s.clone();
        let mut vm = Core::new(
            cfg,
            Box::new(RustBackend),
            Box::new(store),
            (T0, 1),
            entropy(),
        );
        vm.on_configure(T0)
            .iter()
            .filter(|e| matches!(e, Effect::Log(_, l) if l.contains("accepts any value")))
            .count()
    };
    assert_eq!(warnings(), 1, "the first worker warns");
    assert_eq!(warnings(), 0, "the second does not");
    assert_eq!(warnings(), 0, "nor a third");
}
