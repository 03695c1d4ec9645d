//! What Prometheus sees, from the real Envoy with the stats tags `envoy/` ships: labels for
//! the configuration, the denial reason and the provider; two configurations in one
//! Envoy as separate series; the gauges an operator needs.

use crate::common::*;
use crate::support::envoy::{shipped_stats_config, wasm_path};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A series expected in `/stats/prometheus`: name, labels, value.
type Expected<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// One sample of `/stats/prometheus`: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn samples(envoy: &Envoy) -> Vec<Sample> {
    let r = http(envoy.admin, "GET", "/stats/prometheus", &[]).expect("/stats/prometheus");
    r.body
        .lines()
        .filter(|l| l.starts_with("bearer_guard"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            Some((name.to_string(), labels, value.parse().ok()?))
        })
        .collect()
}

/// The value of `name` with exactly these labels (None: no such series).
fn value(all: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| *v)
}

/// A second bearer-guard filter, named `edge`, that lets everything through.
fn edge_filter() -> Value {
    let config = json!({"providers": [{"name": "sdk", "algorithms": ["HS256"], "secret": {"env": "SDK_TOKEN_SECRET"}}],
                        "rules": [{"match": {}, "public": true}]});
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "edge", "root_id": "bearer_guard", "fail_open": false,
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config.to_string()},
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path().to_string_lossy()}},
                    "environment_variables": {"key_values": {"SDK_TOKEN_SECRET": SECRET}}
                }
            }
        }
    })
}

#[test]
fn prometheus_sees_labels_and_two_configurations_apart() {
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    let stack = Stack::with_options(plugin(vec![]), jwks_server, |o| {
        o.stats_tags = true;
        o.concurrency = 2;
        o.extra_filters = vec![edge_filter()];
    });
    let e = &stack.envoy;
    let good = good_token();
    for _ in 0..3 {
        assert_eq!(e.get_with_token("/v1/x", &good).status, 200);
    }
    assert_eq!(e.get("/v1/x", &[]).status, 401);
    for _ in 0..2 {
        assert_eq!(e.get_with_token("/v1/x", "not.a.token").status, 401);
    }
    // A token its provider refuses (expired) counts under that provider too.
    let expired = expired_token();
    assert_eq!(e.get_with_token("/v1/x", &expired).status, 401);
    let main = ("bearer_guard_config", "bearer_guard");
    let edge = ("bearer_guard_config", "edge");
    let idp = ("provider", "idp");
    let mut all = Vec::new();
    let flushed = e.wait_until(Duration::from_secs(3), || {
        all = samples(e);
        value(&all, "bearer_guard_requests_allowed", &[main]) == Some(3.0)
            && value(&all, "bearer_guard_public_passes", &[edge]) == Some(7.0)
    });
    assert!(flushed, "{all:#?}");
    let want: Vec<Expected> = vec![
        (
            "bearer_guard_denied",
            vec![main, ("reason", "missing_token")],
            1.0,
        ),
        (
            "bearer_guard_denied",
            vec![main, ("reason", "invalid_token")],
            3.0,
        ),
        // Denials by provider: only what a provider judged (the expired token).
        (
            "bearer_guard_provider_denied",
            vec![main, idp, ("reason", "invalid_token")],
            1.0,
        ),
        (
            "bearer_guard_provider_denied",
            vec![main, idp, ("reason", "missing_token")],
            0.0,
        ),
        (
            "bearer_guard_denied",
            vec![main, ("reason", "unavailable")],
            0.0,
        ),
        (
            "bearer_guard_would_deny",
            vec![main, ("reason", "invalid_token")],
            0.0,
        ),
        // The other configuration counts apart: nothing denied there.
        (
            "bearer_guard_denied",
            vec![edge, ("reason", "missing_token")],
            0.0,
        ),
        ("bearer_guard_requests_allowed", vec![edge], 0.0),
        ("bearer_guard_provider_jwks_fetch_ok", vec![main, idp], 1.0),
        ("bearer_guard_provider_keys_loaded", vec![main, idp], 1.0),
        (
            "bearer_guard_provider_key_set_version",
            vec![main, idp],
            1.0,
        ),
        ("bearer_guard_provider_keys_stale", vec![main, idp], 0.0),
        ("bearer_guard_waiting_requests", vec![main], 0.0),
    ];
    for (name, labels, v) in want {
        assert_eq!(value(&all, name, &labels), Some(v), "{name} {labels:?}");
    }
    // The key set's age grows with time, in seconds.
    assert!(e.wait_until(Duration::from_secs(4), || {
        value(
            &samples(e),
            "bearer_guard_provider_key_set_age_seconds",
            &[main, idp],
        )
        .is_some_and(|age| age >= 2.0)
    }));
    // No reason, provider or configuration is left inside a metric name.
    for (name, _, _) in &all {
        for leaked in [
            "invalid_token",
            "_idp_",
            "edge",
            "_bearer_guard_bearer_guard",
        ] {
            assert!(!name.contains(leaked), "{name} still carries {leaked}");
        }
    }
}

/// Every Envoy configuration in `envoy/` ships the same stats tags.
#[test]
fn every_shipped_envoy_configuration_has_the_same_stats_tags() {
    let shipped = shipped_stats_config();
    assert!(shipped["stats_tags"]
        .as_array()
        .is_some_and(|t| t.len() == 4));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy");
    for name in ["envoy-compose.yaml", "envoy-workos.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).expect("config");
        let doc: Value = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(doc["stats_config"], shipped, "{name}");
    }
    // Istio's proxies get the same block through a bootstrap override.
    let text = std::fs::read_to_string(dir.join("istio/stats-bootstrap.yaml")).expect("ConfigMap");
    let map: Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let bootstrap: Value = serde_json::from_str(
        map["data"]["custom_bootstrap.json"]
            .as_str()
            .expect("custom_bootstrap.json"),
    )
    .expect("JSON");
    assert_eq!(
        bootstrap["stats_config"], shipped,
        "istio/stats-bootstrap.yaml"
    );
}
