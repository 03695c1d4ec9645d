//! Operations end to end: metrics read from Envoy's admin endpoint after known traffic,
//! every Envoy YAML in the repository validated by Envoy itself, the Istio manifests
//! parsed and their plugin configuration validated by the filter's own parser, and the
//! demo command.

use crate::common::*;
use crate::support::envoy::{envoy_bin, native_dir, wasm_path};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `bearer_guard.*` stats as name → value (either host).
fn stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    envoy.filter_stats()
}

#[test]
fn metrics_count_exactly_what_happened() {
    let stack = Stack::start(plugin(vec![
        json!({"match": {"prefix": "/v1/entities/"}, "permissions": ["entities:read"]}),
    ]));
    let e = &stack.envoy;
    let reader = token_with(json!({"permissions": ["entities:read"]}));
    let nobody = token_for("user-2", json!({}));
    for _ in 0..2 {
        assert_eq!(e.get("/health", &[]).status, 200);
    }
    assert_eq!(e.get("/v1/entities/x", &[]).status, 401);
    for _ in 0..2 {
        assert_eq!(
            e.get_with_token("/v1/entities/x", "not.a.token").status,
            401
        );
    }
    for _ in 0..3 {
        assert_eq!(e.get_with_token("/v1/entities/x", &reader).status, 200);
    }
    assert_eq!(e.get_with_token("/v1/entities/x", &nobody).status, 403);
    assert_eq!(e.get("/health/../x/../../v1", &[("x", "y")]).status, 401);
    let want: Vec<(&str, u64)> = vec![
        ("public_passes", 2),
        ("requests_allowed", 3),
        ("denied.missing_token", 2),
        ("denied.invalid_token", 2),
        ("denied.insufficient_permissions", 1),
        ("denied.unknown_account", 0),
        ("denied.permission_denied", 0),
        ("denied.bad_request", 0),
        ("denied.unavailable", 0),
        ("token_cache_misses", 2),
        ("token_cache_hits", 2),
        ("account_lookups_ok", 0),
        ("account_lookups_failed", 0),
        ("provider.idp.keys_loaded", 1),
    ];
    // Counters reach Envoy on the filter's next tick (every 200 ms).
    let settled = || {
        let got = stats(e);
        want.iter()
            .all(|(name, value)| got.get(*name) == Some(value))
    };
    e.wait_until(std::time::Duration::from_secs(3), settled);
    let got = stats(e);
    for (name, value) in want {
        assert_eq!(got.get(name), Some(&value), "metric {name} in {got:#?}");
    }
    // Each VM (Envoy's main thread and each worker) fetches the JWKS once at start.
    assert!(
        got.get("provider.idp.jwks_fetch_ok")
            .is_some_and(|v| *v >= 1),
        "{got:#?}"
    );
    assert_eq!(got.get("provider.idp.jwks_fetch_failed"), Some(&0));
    // Prometheus output carries them too.
    let prom = http(e.admin, "GET", "/stats/prometheus", &[])
        .expect("prometheus")
        .body;
    assert!(
        prom.contains("bearer_guard_requests_allowed"),
        "prometheus output lacks bearer_guard metrics"
    );
}

/// Every Envoy configuration in `envoy/`, validated by Envoy itself (`--mode validate`).
/// Paths the container layouts use are pointed at this checkout's files.
#[test]
fn every_envoy_yaml_validates() {
    let dir = repo().join("envoy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("envoy/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if !name.ends_with(".yaml") || name == "docker-compose.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .expect("read")
            .replace(
                "filename: /etc/envoy/bearer_guard.wasm",
                &format!("filename: {}", wasm_path().display()),
            )
            .replace(
                "filename: target/wasm32-wasip1/release/bearer_guard.wasm",
                &format!("filename: {}", wasm_path().display()),
            );
        let copy = std::env::temp_dir().join(format!(
            "bearer-guard-validate-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&copy, text).expect("write");
        let out = Command::new(envoy_bin())
            .args([
                "--mode",
                "validate",
                "--use-dynamic-base-id",
                "-l",
                "warning",
                "-c",
            ])
            .arg(&copy)
            .env("SDK_TOKEN_SECRET", "validate-secret-validate-secret-0123")
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_dir())
            .output()
            .expect("run envoy");
        let _ = std::fs::remove_file(&copy);
        assert!(
            out.status.success(),
            "{name} does not validate:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(
        checked, 5,
        "envoy.yaml, envoy-native.yaml, envoy-workos.yaml, envoy-compose.yaml, envoy-compose-native.yaml"
    );
}

/// Each native configuration is its wasm twin with the filter loaded the other way: the
/// same filter JSON, the same listeners, routes, clusters and stats tags.
#[test]
fn native_configurations_are_their_wasm_twins() {
    let load = |name: &str| -> Value {
        let text = std::fs::read_to_string(repo().join("envoy").join(name)).expect(name);
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect(name);
        serde_json::to_value(yaml).expect(name)
    };
    for (wasm, native) in [
        ("envoy.yaml", "envoy-native.yaml"),
        ("envoy-compose.yaml", "envoy-compose-native.yaml"),
    ] {
        let (mut w, mut n) = (load(wasm), load(native));
        let filters = |doc: &mut Value| -> Value {
            let hcm = &mut doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
                [0]["typed_config"];
            hcm["http_filters"]
                .as_array_mut()
                .expect("http_filters")
                .remove(0)
        };
        let (wf, nf) = (filters(&mut w), filters(&mut n));
        let json = |v: &Value| -> Value {
            serde_json::from_str(v.as_str().expect("a JSON string")).expect("filter JSON")
        };
        assert_eq!(
            json(&wf["typed_config"]["config"]["configuration"]["value"]),
            json(&nf["typed_config"]["filter_config"]["value"]),
            "{native}: the filter configuration differs from {wasm}'s"
        );
        assert_eq!(nf["name"], "bearer-guard");
        assert_eq!(nf["typed_config"]["filter_name"], "bearer-guard");
        assert_eq!(
            nf["typed_config"]["dynamic_module_config"],
            json!({"name": "bearer_guard", "do_not_close": true})
        );
        assert_eq!(
            n.as_object_mut().and_then(|o| o.remove("layered_runtime")),
            Some(json!({"layers": [{"name": "static", "static_layer": {
                "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": true}}]})),
            "{native}: the runtime flag that gives the wasm metric names"
        );
        assert_eq!(w, n, "{native} differs from {wasm} beyond the filter");
    }
}

/// Envoy 1.40 loads the native module with the ABI version it expects: no version
/// warning, no dynamic-module warning or error, and the configuration is taken.
#[test]
fn the_native_module_loads_with_the_abi_version_envoy_expects() {
    let out = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "info",
            "-c",
        ])
        .arg(repo().join("envoy/envoy-native.yaml"))
        .env("SDK_TOKEN_SECRET", "validate-secret-validate-secret-0123")
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_dir())
        .output()
        .expect("run envoy");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched"),
        "{log}"
    );
    assert!(
        log.contains("bearer-guard: configured 2 provider(s)"),
        "{log}"
    );
    for line in log
        .lines()
        .filter(|l| l.contains("dynamic_modules") || l.contains("bearer-guard"))
    {
        let bad = ["[warning]", "[error]", "[critical]"]
            .iter()
            .any(|level| line.contains(level));
        assert!(
            !bad && !line.to_lowercase().contains("deprecated"),
            "{line}"
        );
    }
}

/// The compose file users run: the official image by default (the compose test runs the
/// same file with local images), the built module and the compose Envoy config mounted.
/// `make test-compose` runs it for real (tests/e2e_compose.rs).
#[test]
fn docker_compose_mounts_what_exists() {
    let text = std::fs::read_to_string(repo().join("envoy/docker-compose.yaml")).expect("compose");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("compose is YAML");
    let envoy = &doc["services"]["envoy"];
    assert_eq!(
        envoy["image"].as_str(),
        Some("${ENVOY_IMAGE:-envoyproxy/envoy:v1.40.0}")
    );
    let mounts: Vec<&str> = envoy["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(mounts.contains(
        &"../target/wasm32-wasip1/release/bearer_guard.wasm:/etc/envoy/bearer_guard.wasm:ro"
    ));
    // The native module, where the search path points.
    assert!(mounts.contains(
        &"../target/release/libbearer_guard.so:/etc/envoy/modules/libbearer_guard.so:ro"
    ));
    assert_eq!(
        envoy["environment"]["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"].as_str(),
        Some("/etc/envoy/modules")
    );
    // The configuration mounted unless ENVOY_CONFIG names another (the native one, or the
    // compose test's).
    assert!(mounts.contains(&"${ENVOY_CONFIG:-./envoy-compose.yaml}:/etc/envoy/envoy.yaml:ro"));
    assert!(repo().join("envoy/envoy-compose.yaml").exists());
    assert!(repo().join("envoy/envoy-compose-native.yaml").exists());
    assert!(doc["services"]["dev-idp"]["command"]
        .as_sequence()
        .is_some());
    // Prometheus: the official image by default, this repository's scrape config and rules.
    let prometheus = &doc["services"]["prometheus"];
    assert_eq!(
        prometheus["image"].as_str(),
        Some("${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.2}")
    );
    assert_eq!(
        prometheus["volumes"][0].as_str(),
        Some("./prometheus:/etc/prometheus:ro")
    );
    for file in ["prometheus.yml", "alerts.yml"] {
        assert!(
            repo().join("envoy/prometheus").join(file).exists(),
            "{file}"
        );
    }
}

#[test]
fn istio_manifests_parse_and_the_plugin_config_loads() {
    let dir = repo().join("envoy/istio");
    let load = |f: &str| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join(f)).expect(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
    };
    let plugin = load("wasmplugin.yaml");
    assert_eq!(plugin["kind"].as_str(), Some("WasmPlugin"));
    assert_eq!(plugin["spec"]["failStrategy"].as_str(), Some("FAIL_CLOSE"));
    let env = &plugin["spec"]["vmConfig"]["env"][0];
    assert_eq!(env["name"].as_str(), Some("SDK_TOKEN_SECRET"));
    // pluginConfig is the filter's JSON configuration written as YAML: the filter's own
    // parser must accept it.
    let config: Value = serde_json::to_value(&plugin["spec"]["pluginConfig"]).expect("to JSON");
    let parsed = bearer_guard::parse_config(config.to_string().as_bytes(), &|name| {
        (name == "SDK_TOKEN_SECRET").then(|| "istio-secret-istio-secret-0123456789".to_string())
    })
    .unwrap_or_else(|e| panic!("pluginConfig does not load: {e}"));
    let se = load("serviceentry.yaml");
    let dr = load("destinationrule.yaml");
    let host = se["spec"]["hosts"][0].as_str().expect("host");
    let port = se["spec"]["ports"][0]["number"].as_u64().expect("port");
    assert_eq!(dr["spec"]["host"].as_str(), Some(host));
    let cluster = parsed.providers[0].jwks.as_ref().map(|j| j.cluster.clone());
    assert_eq!(
        cluster,
        Some(format!("outbound|{port}||{host}")),
        "Istio's cluster name for the ServiceEntry"
    );
}

/// The manifests against Istio's published schema (models generated from Istio's CRDs,
/// installed by `make deps`), typos included: a misspelled field or a bad enum value fails.
#[test]
fn istio_manifests_match_istios_schema() {
    let python = envoy_bin().with_file_name("python3");
    let script = repo().join("tests/support/istio_schema.py");
    let dir = repo().join("envoy/istio");
    let check = |files: &[std::path::PathBuf]| {
        Command::new(&python)
            .arg(&script)
            .args(files)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (make deps installs it)", python.display()))
    };
    let manifests: Vec<_> = [
        "wasmplugin.yaml",
        "serviceentry.yaml",
        "destinationrule.yaml",
        "graphql-buffer.yaml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let out = check(&manifests);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Mistakes a person makes: each must be caught.
    let scratch = std::env::temp_dir().join(format!("bearer-guard-istio-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch");
    let mistakes = [
        (
            "wasmplugin.yaml",
            "failStrategy: FAIL_CLOSE",
            "failStrategy: FAIL_CLOSED",
            "failStrategy",
        ),
        (
            "wasmplugin.yaml",
            "imagePullPolicy:",
            "imagePulPolicy:",
            "imagePulPolicy",
        ),
        (
            "serviceentry.yaml",
            "resolution:",
            "resolutin:",
            "resolutin",
        ),
        (
            "destinationrule.yaml",
            "trafficPolicy:",
            "trafficPolcy:",
            "trafficPolcy",
        ),
        (
            "graphql-buffer.yaml",
            "workloadSelector:",
            "workloadSelectr:",
            "workloadSelectr",
        ),
    ];
    for (file, from, to, named) in mistakes {
        let text = std::fs::read_to_string(dir.join(file)).expect(file);
        assert!(text.contains(from), "{file} has no {from:?}");
        let bad = scratch.join(file);
        std::fs::write(&bad, text.replacen(from, to, 1)).expect("write");
        let out = check(&[bad]);
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !out.status.success() && said.contains(named),
            "{to:?} was not caught: {said}"
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// The README's first command, minus the build: the demo starts, serves 200 for a minted
/// token and 401 without one, and stops.
#[test]
fn the_demo_runs() {
    let exe = std::env::current_exe().expect("test binary");
    let dev_idp = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("examples/dev-idp"))
        .expect("examples dir");
    assert!(
        dev_idp.exists(),
        "{} missing: `make test` builds every target",
        dev_idp.display()
    );
    // Free ports, so the test runs beside anything else (a running `make demo` included).
    let ports = [free_port(), free_port(), free_port(), free_port()].map(|p| p.to_string());
    // `make demo`, or `make demo-native` when the suite runs on the native host.
    let module = if native() {
        ["--native".into(), native_dir()]
    } else {
        // envoy/envoy.yaml loads the module that filters MCP lists.
        [
            "--wasm".into(),
            wasm_path().with_file_name("bearer_guard_lists.wasm"),
        ]
    };
    let out = Command::new(&dev_idp)
        .args(["demo", "--once", "--envoy"])
        .arg(envoy_bin())
        .args(module)
        .args(["--port", &ports[0], "--admin-port", &ports[1]])
        .args(["--idp-port", &ports[2], "--upstream-port", &ports[3]])
        .current_dir(repo())
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-> 200 (upstream saw x-auth-subject: user_ada, x-account-id: acct_0001)"),
        "{text}"
    );
    assert!(
        text.contains(r#"-> 401 {"detail":"Requires authentication"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"-> 403 {"detail":"Not enough permissions"}"#),
        "{text}"
    );
    assert!(text.contains("export TOKEN=ey"), "{text}");
    // The MCP endpoint: the read-only token sees only the tool it may call, and the other
    // one's call is refused naming the scope.
    assert!(
        text.contains(
            "-> 200 tools: search_items (the server lists search_items and delete_index)"
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"-> 403 {"detail":"Not enough permissions"} WWW-Authenticate: Bearer error="insufficient_scope", scope="index:write:*""#),
        "{text}"
    );
    // The 401 names the resource's metadata document, and the demo fetches it.
    let resource = format!("http://127.0.0.1:{}", ports[0]);
    assert!(
        text.contains(&format!(
            "www-authenticate: Bearer resource_metadata=\"{resource}/.well-known/oauth-protected-resource\""
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(r#""resource":"{resource}""#)),
        "{text}"
    );
    // Revocation: the token passes, is revoked at the IdP, and is refused afterwards.
    let revocation = text
        .split("# a token about to be revoked")
        .nth(1)
        .unwrap_or("");
    assert!(revocation.contains("\n  -> 200\n"), "{text}");
    assert!(
        revocation.contains(r#"-> 401 {"detail":"Invalid or expired token"} (refused"#),
        "{text}"
    );
    // DPoP: the bound token's request passes with its proof; the proof again is a replay.
    let dpop = text
        .split("# the request with its proof")
        .nth(1)
        .and_then(|t| t.split("# the same DPoP proof again").next())
        .unwrap_or("");
    assert!(dpop.contains("-> 200 (upstream reached)"), "{text}");
    let replayed = text
        .split("# the same DPoP proof again")
        .nth(1)
        .unwrap_or("");
    assert!(
        replayed.contains(r#"-> 401 {"detail":"Invalid or expired token"} WWW-Authenticate: DPoP error="invalid_dpop_proof", algs="ES256 RS256 PS256 EdDSA""#),
        "{text}"
    );
    // The GraphQL endpoint, as the README's walkthrough shows it.
    for line in [
        "# an items query with both headers\n",
        r#"-> 400 {"detail":"Solenya-User-UUID header is required"}"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in {text}");
    }
    let graphql = text
        .split("# an items query with both headers")
        .nth(1)
        .unwrap_or("");
    assert!(graphql.contains("-> 200 (upstream reached)"), "{text}");
    assert!(
        graphql.contains(r#"# an index mutation with a read-only token"#)
            && graphql.contains(r#"-> 403 {"detail":"Not enough permissions"}"#),
        "{text}"
    );
}

/// The names a wasm module exports.
fn exports_of(bytes: &[u8]) -> Vec<&str> {
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let Ok(wasmparser::Payload::ExportSection(reader)) = payload {
            exports.extend(reader.into_iter().filter_map(Result::ok).map(|e| e.name));
        }
    }
    exports
}

/// The module Envoy loads exports the callbacks the filter implements and none of the
/// ones `make build` trims (a host enters the VM for every exported callback).
#[test]
fn the_built_module_exports_only_implemented_callbacks() {
    let bytes = std::fs::read(wasm_path()).expect("the built module");
    let exports = exports_of(&bytes);
    for needed in [
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_tick",
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_request_body",
        "proxy_on_request_trailers",
        "proxy_on_http_call_response",
        "proxy_on_delete",
        "proxy_on_memory_allocate",
    ] {
        assert!(exports.contains(&needed), "{needed} is not exported");
    }
    for trimmed in bearer_guard::UNIMPLEMENTED_CALLBACKS {
        assert!(
            !exports.contains(trimmed),
            "{trimmed} is exported: build with `make build`"
        );
    }
    // The module that filters MCP lists keeps the response callbacks, and only those.
    let lists = std::fs::read(wasm_path().with_file_name("bearer_guard_lists.wasm"))
        .expect("bearer_guard_lists.wasm (make build)");
    let exports = exports_of(&lists);
    for callback in bearer_guard::UNIMPLEMENTED_CALLBACKS {
        let kept = bearer_guard::RESPONSE_CALLBACKS.contains(callback);
        assert_eq!(
            exports.contains(callback),
            kept,
            "{callback} in the lists module"
        );
    }
}
