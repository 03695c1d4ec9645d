//! Metric names and the gauges an operator needs, in the VM core: the configuration's
//! segment (`stat_prefix`, else the plugin's name), provider names made metric-safe, the
//! process-wide waiting-requests gauge two VMs add to, and key-set age and staleness.

use crate::revocation::gauge_index;
use crate::support::fixtures::{vm_jwks_body, vm_provider, T0};
use crate::vm::{fate, store, token, Worker};
use bearer_guard::Effect;
use serde_json::{json, Value};

const REFRESH_MS: u64 = 10_000;

/// The VM suites' provider refreshing its keys every ten seconds, with `extra` top-level
/// members.
fn plugin(extra: Value) -> Value {
    let mut provider = vm_provider("idp");
    provider["jwks"]["refresh_s"] = json!(REFRESH_MS / 1000);
    let mut p = json!({ "providers": [provider] });
    if let (Some(p), Value::Object(extra)) = (p.as_object_mut(), extra) {
        p.extend(extra);
    }
    p
}

fn names(cfg: &Value, plugin_name: &str) -> Vec<String> {
    let mut c = bearer_guard::parse_config(cfg.to_string().as_bytes(), &|_| None).expect("config");
    c.name_metrics_after(plugin_name);
    let w = Worker::from_config(c);
    w.vm.metric_definitions()
        .iter()
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn every_name_carries_the_configuration_and_metric_safe_provider_names() {
    /// A configuration, the name the host gives the plugin, and the metric segment.
    struct Row {
        case: &'static str,
        /// Top-level members added to the configuration.
        extra: Value,
        plugin_name: &'static str,
        /// What follows `bearer_guard.` in every metric name.
        segment: &'static str,
    }
    let rows = vec![
        Row {
            case: "stat_prefix wins",
            extra: json!({"stat_prefix": "public-api"}),
            plugin_name: "edge",
            segment: "public-api",
        },
        Row {
            case: "the plugin's name",
            extra: json!({}),
            plugin_name: "bearer_guard",
            segment: "bearer_guard",
        },
        Row {
            case: "Istio's namespaced name",
            extra: json!({}),
            plugin_name: "istio-system.bearer-guard",
            segment: "istio-system_bearer-guard",
        },
        Row {
            case: "no name at all",
            extra: json!({}),
            plugin_name: "",
            segment: "default",
        },
    ];
    for row in rows {
        let Row {
            case,
            extra,
            plugin_name,
            segment,
        } = row;
        let all = names(&plugin(extra), plugin_name);
        let prefix = format!("bearer_guard.{segment}.");
        assert!(
            all.iter().all(|n| n.starts_with(&prefix)),
            "{case}: {all:?}"
        );
        for want in [
            "denied.invalid_token",
            "would_deny.unavailable",
            "waiting_requests",
            "provider.idp.jwks_fetch_ok",
            "provider.idp.key_set_age_seconds",
            "provider.idp.key_set_version",
            "provider.idp.keys_stale",
        ] {
            assert!(all.contains(&format!("{prefix}{want}")), "{case}: {want}");
        }
    }
    // A provider name with dots or spaces cannot split a metric name.
    let mut odd = plugin(json!({}));
    odd["providers"][0]["name"] = json!("eu idp.v2");
    let all = names(&odd, "bg");
    assert!(all.contains(&"bearer_guard.bg.provider.eu_idp_v2.keys_loaded".to_string()));
}

#[test]
fn a_stat_prefix_that_would_break_metric_names_is_refused() {
    for bad in [
        json!(""),
        json!("a.b"),
        json!("a b"),
        json!("x".repeat(65)),
        json!(7),
    ] {
        let e = bearer_guard::parse_config(
            plugin(json!({"stat_prefix": bad})).to_string().as_bytes(),
            &|_| None,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("`stat_prefix`"), "{bad}: {e}");
    }
    assert!(bearer_guard::parse_config(
        plugin(json!({"stat_prefix": "x".repeat(64)}))
            .to_string()
            .as_bytes(),
        &|_| None
    )
    .is_ok());
}

/// What a flush adds to metric `i`.
fn added(effects: &[Effect], i: usize) -> i64 {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Count(j, n) if *j == i => Some(*n),
            _ => None,
        })
        .sum()
}

/// Each VM adds its change to the process-wide gauge: up while requests wait, back to
/// where it was once they are decided.
#[test]
fn waiting_requests_are_added_up_across_vms() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(json!({})), T0);
    let mut b = Worker::new(s.clone(), &plugin(json!({})), T0);
    let t = token("user_1");
    for ctx in 1..=2 {
        assert_eq!(fate(&a.request(T0, ctx, &t), ctx).as_deref(), Some("pause"));
    }
    assert_eq!(fate(&b.request(T0, 3, &t), 3).as_deref(), Some("pause"));
    let waiting = gauge_index(&a, "waiting_requests");
    let (up_a, up_b) = (
        added(&a.tick(T0 + 20), waiting),
        added(&b.tick(T0 + 20), waiting),
    );
    assert_eq!((up_a, up_b), (2, 1), "three requests wait in the process");
    let fetch = a.calls_to("jwks")[0];
    a.respond(T0 + 30, fetch, "200", &vm_jwks_body());
    b.tick(T0 + 40);
    let (down_a, down_b) = (
        added(&a.tick(T0 + 60), waiting),
        added(&b.tick(T0 + 60), waiting),
    );
    assert_eq!((down_a, down_b), (-2, -1), "none waits any more");
    assert_eq!(
        added(&a.tick(T0 + 80), waiting),
        0,
        "nothing to add when nothing changed"
    );
}

/// A key set's age and version are reported on the tick; three refresh intervals without
/// a successful fetch make it stale (1), a success makes it fresh again (0).
#[test]
fn key_set_age_and_staleness_are_reported() {
    let s = store();
    let mut a = Worker::new(s.clone(), &plugin(json!({})), T0);
    a.tick(T0);
    let fetch = a.calls_to("jwks")[0];
    a.respond(T0, fetch, "200", &vm_jwks_body());
    let (age, version, stale) = (
        gauge_index(&a, "provider.idp.key_set_age_seconds"),
        gauge_index(&a, "provider.idp.key_set_version"),
        gauge_index(&a, "provider.idp.keys_stale"),
    );
    let first = a.tick(T0 + 1500);
    for want in [Effect::Gauge(age, 1), Effect::Gauge(version, 1)] {
        assert!(first.contains(&want), "{want:?} in {first:?}");
    }
    // Every refresh fails from now on.
    let mut at = T0 + REFRESH_MS;
    let mut became_stale = None;
    let mut answered = 1;
    while at <= T0 + 5 * REFRESH_MS && became_stale.is_none() {
        let effects = a.tick(at);
        if effects.contains(&Effect::Gauge(stale, 1)) {
            became_stale = Some(at);
        }
        let calls = a.calls_to("jwks");
        for call in calls.iter().skip(answered) {
            a.respond(at, *call, "503", b"");
        }
        answered = calls.len();
        at += 500;
    }
    let when = became_stale.expect("stale within five intervals");
    assert!(
        when > T0 + 3 * REFRESH_MS && when <= T0 + 3 * REFRESH_MS + 500,
        "stale just after three refresh intervals: {}",
        when - T0
    );
    // The next fetch succeeds: fresh again.
    let mut fresh = false;
    for step in 1..=80 {
        let t = when + step * 500;
        fresh |= a.tick(t).contains(&Effect::Gauge(stale, 0));
        let calls = a.calls_to("jwks");
        for call in calls.iter().skip(answered) {
            a.respond(t, *call, "200", &vm_jwks_body());
        }
        answered = calls.len();
        if fresh {
            break;
        }
    }
    assert!(fresh, "a successful fetch clears staleness");
}
