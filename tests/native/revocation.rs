//! Revocation lists in the VM core, several VMs on one store (several Envoy workers): one
//! fetch per process, every VM refusing a token revoked after it cached it, the list
//! that never loads (deny and allow), an outage keeping the last list, bounds, and lists
//! that apply only to the providers naming them.

use crate::support::fixtures::{
    claims_at_t0, vm_jwks_body, vm_key, vm_provider, ISS, T0, T0_S, TIMEOUT_MS,
};
use crate::vm::{fate, store, Worker};
use bearer_guard::Effect;
use serde_json::{json, Value};

const REFRESH_MS: u64 = 15_000;
/// The issuer of provider `other`, which has no list.
const OTHER_ISS: &str = "https://other.test";

/// Providers `idp` (with a revocation list; `on_unavailable` as given) and `other` (the
/// same keys, another issuer, no list).
fn plugin(on_unavailable: &str) -> Value {
    let mut idp = vm_provider("idp");
    idp["revocation"] = json!({"cluster": "revocation", "authority": "idp.test", "path": "/revoked",
                               "refresh_s": REFRESH_MS / 1000, "timeout_ms": TIMEOUT_MS,
                               "max_bytes": 2048, "max_entries": 5, "on_unavailable": on_unavailable});
    let mut other = vm_provider("other");
    other["issuer"] = json!(OTHER_ISS);
    json!({"providers": [idp, other]})
}

/// A token of `iss` valid at [`T0`], issued 100 s before it (before the lists' cutoffs),
/// with `extra` claims.
fn token_of(iss: &str, extra: Value) -> String {
    let mut c = claims_at_t0(iss, "user_ada", extra);
    c["iat"] = json!(T0_S - 100);
    vm_key().mint(&c)
}

fn list(doc: Value) -> Vec<u8> {
    doc.to_string().into_bytes()
}

fn status(effects: &[Effect], context: u32) -> String {
    fate(effects, context).unwrap_or_default()
}

/// The index of metric `name` (after `bearer_guard.default.`) in a VM's definitions.
pub(crate) fn gauge_index(w: &Worker, name: &str) -> usize {
    let full = format!("bearer_guard.default.{name}");
    w.vm.metric_definitions()
        .iter()
        .position(|(n, _)| *n == full)
        .unwrap_or(usize::MAX)
}

/// Two workers whose keys and list (`first`) loaded at [`T0`]: A fetched both, B adopted.
fn ready(plugin: &Value, first: &[u8]) -> (Worker, Worker) {
    let s = store();
    let mut a = Worker::new(s.clone(), plugin, T0);
    let mut b = Worker::new(s.clone(), plugin, T0);
    a.tick(T0);
    let (keys, lists) = (a.calls_to("jwks"), a.calls_to("revocation"));
    assert_eq!((keys.len(), lists.len()), (1, 1), "A fetches keys and list");
    a.respond(T0, keys[0], "200", &vm_jwks_body());
    a.respond(T0, lists[0], "200", first);
    // Provider `other` shares the key source: it adopts the keys on A's next tick.
    a.tick(T0 + 5);
    b.tick(T0 + 10);
    assert!(b.host.calls.is_empty(), "B adopts both without a call");
    (a, b)
}

/// The list's refresh on A (the lease holder) answering `status` and `body`.
fn refresh(a: &mut Worker, at: u64, status: &str, body: &[u8]) -> Vec<Effect> {
    let before = a.calls_to("revocation").len();
    a.tick(at);
    let calls = a.calls_to("revocation");
    assert_eq!(calls.len(), before + 1, "a refresh is due at {at}");
    let call = calls.last().copied().unwrap_or_default();
    a.respond(at, call, status, body)
}

/// Each kind of entry, added after the token was cached on both VMs: refused on both —
/// from A's own cache at once, from B's cache after its next tick — and nowhere else.
#[test]
fn a_token_revoked_after_it_was_cached_is_refused_on_every_vm() {
    let kinds = vec![
        (
            "jti",
            json!({"jti": [{"jti": "tok-1", "exp": T0 / 1000 + 3600}]}),
        ),
        (
            "sub",
            json!({"sub": [{"sub": "user_ada", "not_before": T0 / 1000 - 50}]}),
        ),
        (
            "sid",
            json!({"sid": [{"sid": "sess-1", "not_before": T0 / 1000 - 50}]}),
        ),
    ];
    for (kind, entry) in kinds {
        let (mut a, mut b) = ready(&plugin("deny"), &list(json!({})));
        let t = token_of(ISS, json!({"jti": "tok-1", "sid": "sess-1"}));
        let fresh = token_of(
            ISS,
            json!({"jti": "tok-2", "sid": "sess-2", "sub": "user_bob"}),
        );
        for (i, w) in [&mut a, &mut b].into_iter().enumerate() {
            for n in 0..2 {
                let ctx = (i * 10 + n) as u32 + 1;
                assert_eq!(
                    status(&w.request(T0 + 20, ctx, &t), ctx),
                    "continue",
                    "{kind}: before"
                );
            }
        }
        assert!(
            a.vm.metrics().pending("token_cache_hits") >= 1,
            "{kind}: A cached it"
        );
        let at = T0 + REFRESH_MS;
        refresh(&mut a, at, "200", &list(entry));
        assert_eq!(status(&a.request(at + 1, 30, &t), 30), "401", "{kind}: A");
        // B still has the previous list until its next tick, then refuses from its cache.
        b.tick(at + 200);
        assert!(
            b.calls_to("revocation").is_empty(),
            "{kind}: one fetch per process"
        );
        assert_eq!(status(&b.request(at + 201, 31, &t), 31), "401", "{kind}: B");
        assert_eq!(
            b.vm.metrics().pending("provider.idp.tokens_revoked"),
            1,
            "{kind}"
        );
        // Another token of the same subject issued after the cutoff, or another jti/sid.
        assert_eq!(
            status(&b.request(at + 202, 32, &fresh), 32),
            "continue",
            "{kind}: other"
        );
    }
}

#[test]
fn the_reply_to_a_revoked_token_is_the_invalid_token_contract() {
    let (mut a, _) = ready(&plugin("deny"), &list(json!({"jti": [{"jti": "tok-1"}]})));
    let effects = a.request(T0 + 20, 1, &token_of(ISS, json!({"jti": "tok-1"})));
    let reply = effects.iter().find_map(|e| match e {
        Effect::Reply { reply, .. } => Some(reply.clone()),
        _ => None,
    });
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, r#"{"detail":"Invalid or expired token"}"#);
    assert!(reply.headers.contains(&(
        "www-authenticate",
        "Bearer error=\"invalid_token\"".to_string()
    )));
}

/// A list applies only to its providers' tokens: the same `jti` from another provider
/// (another issuer) passes.
#[test]
fn the_same_jti_from_another_provider_is_unaffected() {
    let (mut a, _) = ready(&plugin("deny"), &list(json!({"jti": [{"jti": "tok-1"}]})));
    let mine = token_of(ISS, json!({"jti": "tok-1"}));
    let theirs = token_of(OTHER_ISS, json!({"jti": "tok-1"}));
    assert_eq!(status(&a.request(T0 + 20, 1, &mine), 1), "401");
    assert_eq!(status(&a.request(T0 + 20, 2, &theirs), 2), "continue");
}

/// A worker whose keys loaded and whose list was never fetched, and a token of `idp`.
fn keys_but_no_list(on_unavailable: &str) -> (Worker, String) {
    let mut a = Worker::new(store(), &plugin(on_unavailable), T0);
    a.tick(T0);
    let keys = a.calls_to("jwks");
    a.respond(T0, keys[0], "200", &vm_jwks_body());
    (a, token_of(ISS, json!({"jti": "tok-1"})))
}

/// `on_unavailable: deny`: a request waits for the first fetch, then gets 500 when it
/// fails; while the retry backs off, 500 at once; the next attempt is waited for again.
#[test]
fn a_list_that_never_loads_denies_with_500_after_waiting() {
    let (mut a, t) = keys_but_no_list("deny");
    assert_eq!(
        status(&a.request(T0 + 5, 1, &t), 1),
        "pause",
        "waits for the list"
    );
    let call = a.calls_to("revocation")[0];
    assert_eq!(status(&a.respond(T0 + 50, call, "503", b""), 1), "500");
    assert_eq!(status(&a.request(T0 + 60, 2, &t), 2), "500", "backing off");
    // The retry (1 s later) is due: a request waits for it again, and a good list lets it on.
    assert_eq!(status(&a.request(T0 + 1050, 3, &t), 3), "pause");
    let retry = a.calls_to("revocation")[1];
    let body = list(json!({}));
    assert_eq!(
        status(&a.respond(T0 + 1060, retry, "200", &body), 3),
        "continue"
    );
}

/// `on_unavailable: allow`: a request that finds no list passes, counted, with one warn
/// line for the VM; once a list loads, it applies.
#[test]
fn a_list_that_never_loads_passes_tokens_unchecked_when_allowed() {
    let (mut a, t) = keys_but_no_list("allow");
    assert_eq!(
        status(&a.request(T0 + 5, 1, &t), 1),
        "pause",
        "the first fetch is waited for"
    );
    let call = a.calls_to("revocation")[0];
    let failed = a.respond(T0 + 50, call, "503", b"");
    assert_eq!(status(&failed, 1), "continue");
    let mut effects = failed;
    effects.extend(a.request(T0 + 60, 2, &t));
    assert_eq!(status(&effects, 2), "continue");
    assert_eq!(
        a.vm.metrics().pending("provider.idp.revocation_unchecked"),
        2
    );
    let warns = effects
        .iter()
        .filter(|e| matches!(e, Effect::Log(_, l) if l.contains("pass unchecked")))
        .count();
    assert_eq!(warns, 1, "one warn line, not one per request");
    let retry = refresh_after_backoff(&mut a, T0 + 1050);
    a.respond(
        T0 + 1060,
        retry,
        "200",
        &list(json!({"jti": [{"jti": "tok-1"}]})),
    );
    assert_eq!(status(&a.request(T0 + 1070, 3, &t), 3), "401");
}

fn refresh_after_backoff(a: &mut Worker, at: u64) -> u32 {
    a.tick(at);
    a.calls_to("revocation").last().copied().unwrap_or_default()
}

/// Failed refreshes keep the last list in force on every VM; after three refresh
/// intervals without success it is reported stale (gauge and warn line), still in force.
#[test]
fn an_outage_keeps_the_last_list_and_reports_it_stale() {
    let (mut a, mut b) = ready(&plugin("deny"), &list(json!({"jti": [{"jti": "tok-1"}]})));
    let revoked = token_of(ISS, json!({"jti": "tok-1"}));
    let fine = token_of(ISS, json!({"jti": "tok-2"}));
    let mut at = T0 + REFRESH_MS;
    let mut logs = Vec::new();
    for _ in 0..4 {
        logs.extend(refresh(&mut a, at, "500", b""));
        at += REFRESH_MS;
    }
    let gauge = gauge_index(&b, "provider.idp.revocation_stale");
    let stale_gauge = |effects: &[Effect]| effects.contains(&Effect::Gauge(gauge, 1));
    let stale_line = logs
        .iter()
        .any(|e| matches!(e, Effect::Log(_, l) if l.contains("revocation list stale")));
    assert!(stale_line, "the stale list is logged: {logs:?}");
    assert!(stale_gauge(&b.tick(at)), "B reports the list stale too");
    for w in [&mut a, &mut b] {
        assert_eq!(status(&w.request(at + 1, 1, &revoked), 1), "401");
        assert_eq!(status(&w.request(at + 1, 2, &fine), 2), "continue");
    }
    let failures = logs
        .iter()
        .filter(|e| matches!(e, Effect::Log(_, l) if l.contains("revocation list fetch failed: status 500; keeping the previous list (1 entries)")))
        .count();
    assert_eq!(failures, 4);
}

/// A refresh that brings the same bytes renews the list without a new version: no VM
/// parses it again.
#[test]
fn an_unchanged_list_is_not_published_again() {
    let body = list(json!({"jti": [{"jti": "tok-1"}]}));
    let (mut a, mut b) = ready(&plugin("deny"), &body);
    let logs = refresh(&mut a, T0 + REFRESH_MS, "200", &body);
    assert!(
        !logs
            .iter()
            .any(|e| matches!(e, Effect::Log(_, l) if l.contains("loaded revocation list"))),
        "same bytes: no new version"
    );
    b.vm.set_debug(true);
    let effects = b.tick(T0 + REFRESH_MS + 200);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Log(_, l) if l.contains("adopted revocation list"))),
        "B adopts nothing: {effects:?}"
    );
    // The renewal counts as a fetch: the list's age starts again for every VM (B set it
    // to 0 when it adopted the list; unrenewed it would now be 15 s).
    let age = gauge_index(&b, "provider.idp.revocation_age_seconds");
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Gauge(i, _) if *i == age)),
        "{effects:?}"
    );
    let later = b.tick(T0 + REFRESH_MS + 5000);
    assert!(
        later.contains(&Effect::Gauge(age, 5)),
        "renewed at T0 + 15 s: {later:?}"
    );
    // The next refresh is a full interval later (the renewal counts as a success).
    a.tick(T0 + 2 * REFRESH_MS - 1);
    assert_eq!(a.calls_to("revocation").len(), 2);
}

/// A body over `max_bytes` is never read; a list over `max_entries` is refused whole;
/// both keep the previous list.
#[test]
fn lists_over_their_bounds_are_refused_and_the_previous_one_stays() {
    let (mut a, _) = ready(&plugin("deny"), &list(json!({"jti": [{"jti": "tok-1"}]})));
    let revoked = token_of(ISS, json!({"jti": "tok-1"}));
    let big = vec![b' '; 2049];
    let logs = refresh(&mut a, T0 + REFRESH_MS, "200", &big);
    assert!(logs
        .iter()
        .any(|e| matches!(e, Effect::Log(_, l) if l.contains("over the 2048-byte limit (revocation.max_bytes)"))));
    let six: Vec<Value> = (0..6).map(|i| json!({"jti": format!("x{i}")})).collect();
    let logs = refresh(
        &mut a,
        T0 + REFRESH_MS + 1000,
        "200",
        &list(json!({"jti": six})),
    );
    assert!(logs
        .iter()
        .any(|e| matches!(e, Effect::Log(_, l) if l.contains("more than 5 entries"))));
    assert_eq!(
        status(&a.request(T0 + REFRESH_MS + 2000, 1, &revoked), 1),
        "401"
    );
}

/// `require_jti`: a token without a string `jti` is refused, from the cache too.
#[test]
fn a_provider_requiring_jti_refuses_tokens_without_one() {
    let mut p = plugin("deny");
    p["providers"][1]["require_jti"] = json!(true);
    let (mut a, _) = ready(&p, &list(json!({})));
    let cases = vec![
        ("no jti", json!({}), "401"),
        ("numeric jti", json!({"jti": 7}), "401"),
        ("string jti", json!({"jti": "t"}), "continue"),
    ];
    for (i, (case, extra, want)) in cases.into_iter().enumerate() {
        let t = token_of(OTHER_ISS, extra);
        for n in 0..2 {
            let ctx = (i * 2 + n) as u32 + 1;
            assert_eq!(
                status(&a.request(T0 + 20, ctx, &t), ctx),
                want,
                "{case} (use {n})"
            );
        }
    }
}

/// Two providers naming one list share it: one fetch, both refuse what it lists; a list
/// named twice with other settings is a configuration error naming the field.
#[test]
fn providers_naming_the_same_list_share_one_fetch() {
    let mut p = plugin("deny");
    p["providers"][1]["revocation"] = p["providers"][0]["revocation"].clone();
    let (mut a, _) = ready(&p, &list(json!({"jti": [{"jti": "tok-1"}]})));
    for (ctx, iss) in [(1, ISS), (2, OTHER_ISS)] {
        let t = token_of(iss, json!({"jti": "tok-1"}));
        assert_eq!(status(&a.request(T0 + 20, ctx, &t), ctx), "401", "{iss}");
    }
    p["providers"][1]["revocation"]["refresh_s"] = json!(30);
    let e = bearer_guard::parse_config(p.to_string().as_bytes(), &|_| None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("providers[1].revocation"), "{e}");
}
