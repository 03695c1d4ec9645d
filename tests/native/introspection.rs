//! Token introspection (RFC 7662) in the VM core: several workers on one store are one
//! process — one call per token while its answer is kept, answers known by the token's
//! digest, and every way an answer can fail to vouch for a token.

use crate::support::fixtures::{vm_provider, T0, T0_S, TIMEOUT_MS};
use crate::vm::{fate, store, token as jws_token, Worker};
use bearer_guard::{CallResponse, Effect, RustBackend, Store};
use serde_json::{json, Value};
use std::rc::Rc;

const SECRET: &str = "introspection-client-secret-0123456789";
const OPAQUE: &str = "q7Vd0-opaque_token_0001";

/// A configuration whose only provider introspects (client_secret_`auth`), forwarding
/// `sub`; `jwt` adds a signature-verifying provider before it on the same source.
fn plugin(auth: &str, jwt: bool) -> Value {
    let introspect = json!({"name": "as", "issuer": "https://as.test",
        "introspection": {"cluster": "as", "authority": "as.test", "path": "/introspect",
            "client_id": "bearer guard", "client_secret": {"env": "AS_SECRET"},
            "auth": auth, "timeout_ms": TIMEOUT_MS}});
    let providers = if jwt {
        json!([vm_provider("idp"), introspect])
    } else {
        json!([introspect])
    };
    json!({"providers": providers, "forward": {"headers": {"x-auth-subject": "sub"}}})
}

fn env(name: &str) -> Option<String> {
    (name == "AS_SECRET").then(|| SECRET.to_string())
}

/// Two workers of one process.
fn two(plugin: &Value) -> (Worker, Worker) {
    let s: Rc<dyn Store> = store();
    (
        Worker::with_env(s.clone(), plugin, T0, &env),
        Worker::with_env(s, plugin, T0, &env),
    )
}

/// An active answer for `sub`, expiring `exp_in_s` after [`T0`].
fn active(sub: &str, exp_in_s: i64) -> Vec<u8> {
    json!({"active": true, "sub": sub, "iss": "https://as.test", "exp": T0_S + exp_in_s})
        .to_string()
        .into_bytes()
}

/// The value of request header `name` the effects set on `context`.
fn header(effects: &[Effect], context: u32, name: &str) -> Option<String> {
    effects.iter().find_map(|e| match e {
        Effect::Header {
            context: c,
            name: n,
            value: Some(v),
        } if *c == context && n == name => Some(v.clone()),
        _ => None,
    })
}

#[test]
fn concurrent_requests_on_two_workers_make_one_call_and_share_its_claims() {
    let (mut a, mut b) = two(&plugin("client_secret_basic", false));
    assert_eq!(
        fate(&a.request(T0 + 10, 1, OPAQUE), 1).as_deref(),
        Some("pause")
    );
    assert_eq!(
        fate(&b.request(T0 + 10, 2, OPAQUE), 2).as_deref(),
        Some("pause")
    );
    let asked = a.calls_to("as");
    assert_eq!(asked.len(), 1, "A asks");
    assert!(b.calls_to("as").is_empty(), "B waits for A's answer");
    // The call: a form POST with the client's Basic credentials, the secret never in it.
    let (headers, body) = a.host.sent.last().cloned().expect("sent");
    let h = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(h(":method").as_deref(), Some("POST"));
    assert_eq!(h(":path").as_deref(), Some("/introspect"));
    assert_eq!(h(":authority").as_deref(), Some("as.test"));
    assert_eq!(
        h("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(h("content-length"), Some(body.len().to_string()));
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bearer+guard:{SECRET}"));
    assert_eq!(h("authorization"), Some(format!("Basic {basic}")));
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        format!("token={OPAQUE}&token_type_hint=access_token")
    );

    let answered = a.respond(T0 + 20, asked[0], "200", &active("alice", 3600));
    assert_eq!(fate(&answered, 1).as_deref(), Some("continue"));
    assert_eq!(
        header(&answered, 1, "x-auth-subject").as_deref(),
        Some("alice")
    );
    let woken = b.tick(T0 + 40);
    assert_eq!(fate(&woken, 2).as_deref(), Some("continue"));
    assert_eq!(
        header(&woken, 2, "x-auth-subject").as_deref(),
        Some("alice")
    );
    assert_eq!(b.vm.metrics().pending("introspection_shared_hits"), 1);
    assert_eq!(a.vm.metrics().pending("introspection_active"), 1);

    // Kept for ttl_s (60 s) on both workers: no call.
    for (w, ctx) in [(&mut a, 3), (&mut b, 4)] {
        let e = w.request(T0 + 59_000, ctx, OPAQUE);
        assert_eq!(fate(&e, ctx).as_deref(), Some("continue"));
    }
    assert_eq!(a.calls_to("as").len() + b.calls_to("as").len(), 1);
    // Past ttl_s: asked again.
    let e = a.request(T0 + 20 + 60_000, 5, OPAQUE);
    assert_eq!(fate(&e, 5).as_deref(), Some("pause"));
    assert_eq!(a.calls_to("as").len(), 2);
}

#[test]
fn an_answer_is_kept_no_longer_than_its_exp() {
    let (mut a, _b) = two(&plugin("client_secret_basic", false));
    a.request(T0 + 10, 1, OPAQUE);
    let asked = a.calls_to("as");
    let answered = a.respond(T0 + 20, asked[0], "200", &active("alice", 5));
    assert_eq!(fate(&answered, 1).as_deref(), Some("continue"));
    let e = a.request(T0 + 4_000, 2, OPAQUE);
    assert_eq!(fate(&e, 2).as_deref(), Some("continue"));
    let e = a.request(T0 + 5_001, 3, OPAQUE);
    assert_eq!(
        fate(&e, 3).as_deref(),
        Some("pause"),
        "exp passed: asked again"
    );
    assert_eq!(a.calls_to("as").len(), 2);
}

#[test]
fn answers_that_do_not_vouch_for_the_token_are_401_and_kept_negative_ttl() {
    let exp = T0_S + 3600;
    let refresh = |member: &str, value: &str| {
        let mut a = json!({"active": true, "iss": "https://as.test", "sub": "m", "exp": exp});
        a[member] = json!(value);
        a.to_string().into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("200", refresh("token_use", "refresh_token")),
        ("200", refresh("typ", "Refresh")),
        ("200", refresh("typ", "ID")),
        ("200", refresh("token_type", "refresh_token")),
        ("200", br#"{"active":false}"#.to_vec()),
        (
            "200",
            json!({"sub": "m", "exp": exp}).to_string().into_bytes(),
        ),
        (
            "200",
            json!({"active": "true", "sub": "m", "exp": exp})
                .to_string()
                .into_bytes(),
        ),
        (
            "200",
            json!({"active": 1, "sub": "m"}).to_string().into_bytes(),
        ),
        (
            "200",
            json!({"active": true, "sub": "m", "exp": T0_S - 3600})
                .to_string()
                .into_bytes(),
        ),
        ("200", br#"[{"active":true}]"#.to_vec()),
        ("200", b"active=true".to_vec()),
        ("200", br#"{"active":true,"sub":"m","sub":"root"}"#.to_vec()),
        ("400", br#"{"error":"invalid_request"}"#.to_vec()),
        ("401", br#"{"active":true,"sub":"m"}"#.to_vec()),
        ("404", b"".to_vec()),
    ];
    for (i, (status, body)) in cases.into_iter().enumerate() {
        let (mut a, mut b) = two(&plugin("client_secret_basic", false));
        let answered_at = T0 + 20;
        a.request(T0 + 10, 1, OPAQUE);
        let asked = a.calls_to("as");
        let answered = a.respond(answered_at, asked[0], status, &body);
        assert_eq!(fate(&answered, 1).as_deref(), Some("401"), "case {i}");
        // A 200 is kept negative_ttl_s (10 s), a 4xx one second (it says more about the
        // call than the token), on the other worker too.
        let kept = if status == "200" { 10_000 } else { 1_000 };
        let e = b.request(answered_at + kept - 1, 2, OPAQUE);
        assert_eq!(fate(&e, 2).as_deref(), Some("401"), "case {i}");
        assert!(b.calls_to("as").is_empty(), "case {i}");
        let e = b.request(answered_at + kept + 1, 3, OPAQUE);
        assert_eq!(fate(&e, 3).as_deref(), Some("pause"), "case {i}");
    }
}

#[test]
fn a_failed_call_is_500_for_every_waiter_and_not_kept() {
    for status in [Some("503"), Some("302"), Some("429"), None] {
        let (mut a, mut b) = two(&plugin("client_secret_basic", false));
        a.request(T0 + 10, 1, OPAQUE);
        b.request(T0 + 10, 2, OPAQUE);
        let asked = a.calls_to("as");
        let read = || br#"{"active":true,"sub":"alice"}"#.to_vec();
        let response = CallResponse {
            status: status.map(str::to_string),
            body_size: 29,
            body: &read,
        };
        let answered =
            a.vm.on_call_response(T0 + 20, asked[0], &response, &mut a.host);
        assert_eq!(fate(&answered, 1).as_deref(), Some("500"), "{status:?}");
        assert_eq!(
            fate(&b.tick(T0 + 40), 2).as_deref(),
            Some("500"),
            "{status:?}"
        );
        assert_eq!(a.vm.metrics().pending("introspection_failed"), 1);
        // Not kept: the next request asks.
        let e = b.request(T0 + 50, 3, OPAQUE);
        assert_eq!(fate(&e, 3).as_deref(), Some("pause"), "{status:?}");
        assert_eq!(b.calls_to("as").len(), 1, "{status:?}");
    }
}

#[test]
fn an_answer_announced_over_max_bytes_is_refused_unread() {
    let (mut a, _b) = two(&plugin("client_secret_basic", false));
    a.request(T0 + 10, 1, OPAQUE);
    let asked = a.calls_to("as");
    let read = || -> Vec<u8> { panic!("an answer over max_bytes was read") };
    let response = CallResponse {
        status: Some("200".into()),
        body_size: 20 * 1024 * 1024,
        body: &read,
    };
    let answered =
        a.vm.on_call_response(T0 + 20, asked[0], &response, &mut a.host);
    assert_eq!(fate(&answered, 1).as_deref(), Some("500"));
    // The bound is inclusive: an answer of exactly max_bytes is read.
    a.request(T0 + 30, 2, OPAQUE);
    let asked = a.calls_to("as");
    let mut body = active("alice", 3600);
    body.resize(65_536, b' ');
    let answered = a.respond(T0 + 40, asked[1], "200", &body);
    assert_eq!(fate(&answered, 2).as_deref(), Some("continue"));
}

/// A token one character away from another, asked at the same time on two workers: each
/// gets its own call and its own answer, however the answers are interleaved.
#[test]
fn each_token_is_known_by_its_own_digest() {
    let (mut a, mut b) = two(&plugin("client_secret_basic", false));
    let other = OPAQUE.replace('1', "2");
    a.request(T0 + 10, 1, OPAQUE);
    b.request(T0 + 10, 2, &other);
    let (ta, tb) = (a.calls_to("as"), b.calls_to("as"));
    assert_eq!((ta.len(), tb.len()), (1, 1), "one call per token");
    // B's answer first, then A's.
    let eb = b.respond(T0 + 20, tb[0], "200", &active("bob", 3600));
    let ea = a.respond(T0 + 21, ta[0], "200", &active("alice", 3600));
    assert_eq!(header(&eb, 2, "x-auth-subject").as_deref(), Some("bob"));
    assert_eq!(header(&ea, 1, "x-auth-subject").as_deref(), Some("alice"));
    // Each worker serves each token its own answer, from the process's.
    for (w, base) in [(&mut a, 10), (&mut b, 20)] {
        let e = w.request(T0 + 100, base, &other);
        assert_eq!(header(&e, base, "x-auth-subject").as_deref(), Some("bob"));
        let e = w.request(T0 + 100, base + 1, OPAQUE);
        assert_eq!(
            header(&e, base + 1, "x-auth-subject").as_deref(),
            Some("alice")
        );
    }
    assert_eq!(a.calls_to("as").len() + b.calls_to("as").len(), 2);
}

#[test]
fn client_secret_post_sends_the_credentials_in_the_form() {
    let (mut a, _b) = two(&plugin("client_secret_post", false));
    a.request(T0 + 10, 1, OPAQUE);
    let (headers, body) = a.host.sent.last().cloned().expect("sent");
    assert!(headers.iter().all(|(k, _)| k != "authorization"));
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        format!("token={OPAQUE}&token_type_hint=access_token&client_id=bearer+guard&client_secret={SECRET}")
    );
}

/// Beside a signature-verifying provider on the same source, the introspection provider
/// judges opaque tokens only; alone there, it judges every token.
#[test]
fn which_provider_judges_a_token() {
    let (mut a, _) = two(&plugin("client_secret_basic", true));
    a.request(T0 + 10, 1, &jws_token("user_1"));
    assert_eq!(
        a.calls_to("jwks").len(),
        1,
        "a JWS goes to the JWT provider"
    );
    assert!(a.calls_to("as").is_empty());
    a.request(T0 + 10, 2, OPAQUE);
    assert_eq!(a.calls_to("as").len(), 1, "an opaque token is introspected");
    let (mut alone, _) = two(&plugin("client_secret_basic", false));
    alone.request(T0 + 10, 1, &jws_token("user_1"));
    assert_eq!(alone.calls_to("as").len(), 1, "alone, it judges JWS too");
    assert!(alone.calls_to("jwks").is_empty());
}

#[test]
fn configuration_errors_name_the_field() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"algorithms": ["RS256"]}), "providers[0].algorithms"),
        (
            json!({"jwks": {"cluster": "j", "authority": "j", "path": "/j"}}),
            "providers[0].jwks",
        ),
        (
            json!({"token_types": ["at+jwt"]}),
            "providers[0].token_types",
        ),
        (
            json!({"introspection": {"max_bytes": 10}}),
            "providers[0].introspection.max_bytes",
        ),
        (
            json!({"introspection": {"auth": "private_key_jwt"}}),
            "providers[0].introspection.auth",
        ),
        (
            json!({"introspection": {"path": "introspect"}}),
            "providers[0].introspection.path",
        ),
        (
            json!({"introspection": {"client_secret": {"env": "NOPE"}}}),
            "providers[0].introspection.client_secret.env",
        ),
        (
            json!({"introspection": {"client_id": ""}}),
            "providers[0].introspection.client_id",
        ),
        (
            json!({"introspection": {"timeout_ms": 5}}),
            "providers[0].introspection.timeout_ms",
        ),
        (
            json!({"introspection": {"max_entries": 0}}),
            "providers[0].introspection.max_entries",
        ),
    ];
    for (patch, field) in cases {
        let mut p = plugin("client_secret_basic", false);
        let provider = &mut p["providers"][0];
        for (k, v) in patch.as_object().expect("object") {
            match (k.as_str(), v) {
                ("introspection", Value::Object(m)) => {
                    for (ik, iv) in m {
                        provider["introspection"][ik] = iv.clone();
                    }
                }
                _ => provider[k] = v.clone(),
            }
        }
        let e = bearer_guard::parse_config(p.to_string().as_bytes(), &env).expect_err(field);
        assert_eq!(e.field, field, "{}", e.message);
    }
}

/// Revocation lists apply to introspected tokens as to signed ones: by `jti`, and by
/// `sub` for tokens issued before the cutoff — on every worker, from the kept answer too.
#[test]
fn revocation_lists_apply_to_introspected_tokens() {
    let mut p = plugin("client_secret_basic", false);
    p["providers"][0]["revocation"] = json!({"cluster": "revocation", "authority": "as.test",
        "path": "/revoked", "refresh_s": 15, "timeout_ms": TIMEOUT_MS});
    let (mut a, mut b) = two(&p);
    a.tick(T0);
    let lists = a.calls_to("revocation");
    assert_eq!(lists.len(), 1);
    let doc = json!({"jti": [{"jti": "tok-9"}],
        "sub": [{"sub": "mallory", "not_before": T0_S - 50}]});
    a.respond(T0, lists[0], "200", doc.to_string().as_bytes());
    b.tick(T0 + 10);
    let answer = |sub: &str, jti: &str, iat: i64| {
        json!({"active": true, "iss": "https://as.test", "sub": sub, "jti": jti, "iat": iat,
            "exp": T0_S + 3600})
        .to_string()
        .into_bytes()
    };
    let cases = [
        ("tok-9", answer("alice", "tok-9", T0_S - 10), "401"),
        ("tok-sub", answer("mallory", "tok-2", T0_S - 100), "401"),
        ("tok-new", answer("mallory", "tok-3", T0_S - 10), "continue"),
        ("tok-ok", answer("alice", "tok-4", T0_S - 10), "continue"),
    ];
    for (i, (token, body, want)) in cases.iter().enumerate() {
        let ctx = 10 + i as u32;
        a.request(T0 + 20, ctx, token);
        let call = *a.calls_to("as").last().expect("introspected");
        let e = a.respond(T0 + 30, call, "200", body);
        assert_eq!(fate(&e, ctx).as_deref(), Some(*want), "{token} on A");
        // B decides from the process's answer, against its own copy of the list.
        let e = b.request(T0 + 40, ctx, token);
        assert_eq!(fate(&e, ctx).as_deref(), Some(*want), "{token} on B");
    }
    assert!(b.calls_to("as").is_empty());
    assert_eq!(a.vm.metrics().pending("provider.as.tokens_revoked"), 2);
}

/// The answer's members are checked as a signed token's claims are: the provider's
/// issuer, audiences and claim_values.
#[test]
fn an_active_answer_must_still_fit_the_provider() {
    let mut p = plugin("client_secret_basic", false);
    p["providers"][0]["audiences"] = json!(["api"]);
    p["providers"][0]["claim_values"] = json!({"token_type": "Bearer"});
    let good = json!({"active": true, "iss": "https://as.test", "aud": ["api", "x"],
        "token_type": "Bearer", "sub": "alice", "exp": T0_S + 3600});
    let mut cases = vec![(good.clone(), "continue")];
    for (member, value) in [
        ("iss", json!("https://evil.test")),
        ("aud", json!("other-api")),
        ("token_type", json!("refresh_token")),
        ("nbf", json!(T0_S + 3600)),
    ] {
        let mut bad = good.clone();
        bad[member] = value;
        cases.push((bad, "401"));
    }
    let mut no_iss = good.clone();
    no_iss.as_object_mut().expect("object").remove("iss");
    cases.push((no_iss, "401"));
    // nbf is checked in an answer without exp too.
    let mut early = good.clone();
    early.as_object_mut().expect("object").remove("exp");
    early["nbf"] = json!(T0_S + 3600);
    cases.push((early, "401"));
    for (i, (answer, want)) in cases.into_iter().enumerate() {
        let (mut a, _) = two(&p);
        a.request(T0 + 10, 1, OPAQUE);
        let call = a.calls_to("as")[0];
        let e = a.respond(T0 + 20, call, "200", answer.to_string().as_bytes());
        assert_eq!(fate(&e, 1).as_deref(), Some(want), "case {i}: {answer}");
    }
}

/// `explain --introspection`: the answer given is read as the filter reads a 200.
#[test]
fn explain_reads_a_given_answer_as_the_filter_does() {
    let p = plugin("client_secret_basic", false);
    let cfg = bearer_guard::parse_config(p.to_string().as_bytes(), &env).expect("config");
    let req = bearer_guard::Request {
        method: "GET".into(),
        path: "/v1/things".into(),
        authority: "api.test".into(),
        headers: bearer_guard::Headers::from_pairs([("authorization", format!("Bearer {OPAQUE}"))]),
        ..Default::default()
    };
    let answer = |body: Option<&str>| {
        let given = body.map(|b| bearer_guard::introspection_answer(b, T0_S));
        let world = bearer_guard::Explain {
            keys: None,
            revocation: None,
            backend: &RustBackend,
            account: None,
            introspection: given.as_ref().map(Option::as_ref),
        };
        let e = bearer_guard::explain_with(&cfg, world, &req, T0_S);
        let subject = e
            .headers
            .iter()
            .find(|(k, _)| k == "x-auth-subject")
            .map(|(_, v)| v.clone());
        (e.status, subject)
    };
    let active = String::from_utf8(active("alice", 60)).expect("utf-8");
    assert_eq!(answer(Some(&active)), (200, Some("alice".into())));
    assert_eq!(answer(Some(r#"{"active":"true","sub":"alice"}"#)).0, 401);
    assert_eq!(answer(None).0, 500);
}

/// A token's waiting requests on other workers keep waiting when other lookups take the
/// process's slot meanwhile (one slot here): the answer, written back, reaches them.
#[test]
fn a_slot_taken_by_another_token_does_not_fail_the_waiting_requests() {
    let mut p = plugin("client_secret_basic", false);
    p["shared"] = json!({"account_slots": 1});
    let (mut a, mut b) = two(&p);
    a.request(T0 + 10, 1, OPAQUE);
    assert_eq!(
        fate(&b.request(T0 + 10, 2, OPAQUE), 2).as_deref(),
        Some("pause")
    );
    // Another token takes the one slot.
    a.request(T0 + 20, 3, "another-opaque-token");
    assert_eq!(a.calls_to("as").len(), 2);
    assert_eq!(fate(&b.tick(T0 + 40), 2), None, "B's request still waits");
    let first = a.calls_to("as")[0];
    a.respond(T0 + 50, first, "200", &active("alice", 3600));
    let woken = b.tick(T0 + 70);
    assert_eq!(fate(&woken, 2).as_deref(), Some("continue"));
    assert_eq!(
        header(&woken, 2, "x-auth-subject").as_deref(),
        Some("alice")
    );
}

/// Answers kept under a longer `ttl_s` are not adopted by a configuration with a shorter
/// one (an operator shortening it after an incident).
#[test]
fn an_answer_is_never_adopted_under_a_shorter_ttl() {
    let s: Rc<dyn Store> = store();
    let mut long = plugin("client_secret_basic", false);
    long["providers"][0]["introspection"]["ttl_s"] = json!(3600);
    let mut a = Worker::with_env(s.clone(), &long, T0, &env);
    a.request(T0 + 10, 1, OPAQUE);
    let call = a.calls_to("as")[0];
    a.respond(T0 + 20, call, "200", &active("alice", 7200));
    let mut short = long.clone();
    short["providers"][0]["introspection"]["ttl_s"] = json!(5);
    let mut c = Worker::with_env(s, &short, T0 + 600_000, &env);
    let e = c.request(T0 + 600_000, 2, OPAQUE);
    assert_eq!(fate(&e, 2).as_deref(), Some("pause"), "asked again");
    assert_eq!(c.calls_to("as").len(), 1);
}

/// A flood of distinct tokens makes a bounded number of calls per worker: past it, a
/// request is answered at once (500) without a call.
#[test]
fn calls_in_flight_are_bounded_per_worker() {
    let (mut a, _) = two(&plugin("client_secret_basic", false));
    let max = bearer_guard::MAX_IN_FLIGHT as u32;
    for i in 0..max {
        let e = a.request(T0 + 10, i + 1, &format!("flood-{i}"));
        assert_eq!(fate(&e, i + 1).as_deref(), Some("pause"));
    }
    let e = a.request(T0 + 10, max + 1, OPAQUE);
    assert_eq!(fate(&e, max + 1).as_deref(), Some("500"));
    assert_eq!(a.calls_to("as").len(), max as usize);
}

/// A call's `Debug` shows neither the token in its body nor the client's credentials.
#[test]
fn a_call_never_prints_its_token_or_secret() {
    let (mut a, _) = two(&plugin("client_secret_basic", false));
    a.request(T0 + 10, 1, OPAQUE);
    let (headers, body) = a.host.sent.last().cloned().expect("sent");
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let call = bearer_guard::Outgoing {
        cluster: "as",
        headers,
        body: &body,
        max_response_bytes: 65_536,
        timeout_ms: 1000,
    };
    let printed = format!("{call:?}");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bearer+guard:{SECRET}"));
    assert!(
        !printed.contains(OPAQUE) && !printed.contains(&basic),
        "{printed}"
    );
    assert!(printed.contains("/introspect"), "{printed}");
}

/// The introspection recipes of `docs/configuration.md`, each with an answer shaped like
/// its server's: the rule's grant is found where the recipe says; an answer for another
/// audience, or for a refresh token, is refused.
#[test]
fn the_introspection_recipes_decide_their_servers_answers() {
    let exp = T0_S + 600;
    let zitadel = json!({"name": "zitadel", "issuer": "https://my-instance.zitadel.cloud",
        "audiences": ["249876543210987654"],
        "identity": {"required_claims": ["/urn:zitadel:iam:org:project:roles/reader"]},
        "introspection": {"cluster": "zitadel", "authority": "my-instance.zitadel.cloud",
            "path": "/oauth/v2/introspect", "client_id": "249876543210987655",
            "client_secret": {"env": "AS_SECRET"}}});
    let zitadel_answer = json!({"active": true, "scope": "openid items:read",
        "client_id": "249876543210987656", "token_type": "Bearer", "exp": exp, "iat": T0_S,
        "nbf": T0_S, "sub": "249876543210987657", "aud": ["249876543210987654", "249876543210987656"],
        "iss": "https://my-instance.zitadel.cloud", "jti": "249876543210987658",
        "urn:zitadel:iam:org:project:roles": {"reader": {"249876543210987659": "acme.zitadel.cloud"}}});
    let keycloak = json!({"name": "keycloak", "issuer": "https://sso.example.com/realms/platform",
        "audiences": ["api"], "claims": {"role": "/realm_access/roles"},
        "introspection": {"cluster": "keycloak", "authority": "sso.example.com",
            "path": "/realms/platform/protocol/openid-connect/token/introspect",
            "client_id": "bearer-guard", "client_secret": {"env": "AS_SECRET"}}});
    let keycloak_answer = json!({"active": true, "exp": exp, "iat": T0_S, "jti": "8a1f",
        "iss": "https://sso.example.com/realms/platform", "aud": "api", "sub": "f81d4fae",
        "typ": "Bearer", "azp": "web", "session_state": "s1", "scope": "profile email",
        "realm_access": {"roles": ["items-reader"]}, "client_id": "web", "username": "ada",
        "token_type": "Bearer"});
    let cases = [
        (zitadel, zitadel_answer, "items:read", "roles"),
        (keycloak, keycloak_answer, "items-reader", "typ"),
    ];
    for (provider, answer, grant, spoil) in cases {
        let cfg = json!({"providers": [provider], "roles": {"items-reader": ["items:read"]},
            "rules": [{"match": {"prefix": "/items"}, "permissions": ["items:read"]}]});
        let cfg = bearer_guard::parse_config(cfg.to_string().as_bytes(), &env).expect("recipe");
        let status = |answer: &Value| {
            let req = bearer_guard::Request {
                method: "GET".into(),
                path: "/items".into(),
                authority: "api.test".into(),
                headers: bearer_guard::Headers::from_pairs([(
                    "authorization",
                    format!("Bearer {OPAQUE}"),
                )]),
                ..Default::default()
            };
            let given = bearer_guard::introspection_answer(&answer.to_string(), T0_S);
            let world = bearer_guard::Explain {
                keys: None,
                revocation: None,
                backend: &RustBackend,
                account: None,
                introspection: Some(given.as_ref()),
            };
            bearer_guard::explain_with(&cfg, world, &req, T0_S).status
        };
        assert_eq!(status(&answer), 200, "{grant}");
        let mut other = answer.clone();
        other["aud"] = json!("another-api");
        assert_eq!(status(&other), 401, "{grant}: another audience");
        let mut spoiled = answer.clone();
        match spoil {
            // Without the role the recipe requires.
            "roles" => spoiled["urn:zitadel:iam:org:project:roles"] = json!({"writer": {}}),
            // A refresh token introspected.
            _ => spoiled["typ"] = json!("Refresh"),
        }
        assert_ne!(status(&spoiled), 200, "{grant}: {spoil}");
    }
}
