//! The development identity provider (`cargo run --example dev-idp -- <command>`).
//!
//! - `serve`: a JWKS, the OAuth `client_credentials` token endpoint of the Solenya seed
//!   (`POST /v1/auth/token`), demo accounts, and an echo upstream, all on loopback.
//! - `mint`: prints an RS256 (or `--hs256`) token for the claims given on the command line;
//!   `--dpop` binds it to a fresh client key and prints a DPoP proof too, `--x5t-s256` binds
//!   it to a client certificate.
//! - `proof`: another DPoP proof with the client key of the last `mint --dpop`.
//! - `revoke`: adds a `jti`, subject or session to the revocation list `serve` publishes
//!   at `/revocations`.
//! - `demo`: `serve` plus the real Envoy with `envoy/envoy.yaml` (`--wasm`) or
//!   `envoy/envoy-native.yaml` (`--native`), then shows 200/401/403.

#[path = "envoy.rs"]
mod envoy;
#[path = "idp.rs"]
mod idp;
#[path = "servers.rs"]
mod servers;

use idp::{claims, mint_hs256, now, Signer};
use serde_json::{json, Value};
use servers::{HttpServer, Seen};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ISSUER: &str = "http://localhost:9090";
const AUDIENCE: &str = "demo-client";
/// The signing key's id unless `DEV_IDP_KID` names another (a rotated key).
const DEFAULT_KID: &str = "dev-key-1";
const DEFAULT_SECRET: &str = "dev-sdk-secret-change-me-0123456789abcdef";
const JWKS_PATH: &str = "/sso/jwks/demo-client";
/// Where `serve` publishes its revocation list (`GET`) and `revoke` adds to it (`POST`).
const REVOCATIONS_PATH: &str = "/revocations";
const DEMO_NETWORK: &str = "2f6f6a3e-9d6b-4a4e-8a6f-3a1d1f2b9c10";

/// OAuth clients the token endpoint knows: (client_id, client_secret, scopes, org).
const CLIENTS: &[(&str, &str, &str, &str)] = &[
    (
        "demo-client",
        "demo-secret",
        "index:read:* events:write:*",
        "org_demo",
    ),
    (
        "readonly-client",
        "readonly-secret",
        "index:read:*",
        "org_demo",
    ),
];

/// Demo accounts the account endpoint resolves: (sub, org_id, account_id, entity_id).
pub const ACCOUNTS: &[(&str, &str, &str, &str)] = &[
    ("user_ada", "org_demo", "acct_0001", "entity_lovelace_labs"),
    (
        "user_grace",
        "org_demo",
        "acct_0002",
        "entity_hopper_systems",
    ),
    (
        "demo-client",
        "org_demo",
        "acct_svc_01",
        "entity_demo_service",
    ),
];

fn usage() -> ! {
    eprintln!(
        "usage: dev-idp serve [--host 127.0.0.1] [--port 9090] [--upstream-port 9091]\n\
         \x20      dev-idp mint [--sub S] [--org O] [--permissions a,b] [--scope 'x y'] [--role R]\n\
         \x20                   [--networks n1,n2] [--ttl SECONDS] [--hs256]\n\
         \x20                   [--alg RS256|RS384|RS512|PS256|PS384|PS512|ES256|ES384|ES512|EdDSA]\n\
         \x20      dev-idp echo [--host 127.0.0.1] [--port 9091]   (the echo upstream alone)\n\
         \x20      dev-idp health [--port 9090]   (exit 0 when the JWKS is served: container healthchecks)\n\
         \x20      dev-idp demo --envoy PATH (--wasm PATH | --native DIR) [--once] [--port 10000] [--admin-port 9901]\n\
         \x20                   [--idp-port 9090] [--upstream-port 9091]\n\
         \x20 DEV_IDP_KEY_FILE and DEV_IDP_KID choose the signing key's file and kid."
    );
    std::process::exit(2)
}

struct Args(Vec<String>);

impl Args {
    fn value(&self, flag: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }
    fn flag(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }
    fn port(&self, flag: &str, default: u16) -> u16 {
        self.value(flag)
            .map(|v| v.parse().unwrap_or_else(|_| usage()))
            .unwrap_or(default)
    }
}

/// The signing key's file: `DEV_IDP_KEY_FILE`, else `target/dev-idp/signing-key.der` in
/// the repository (created on first use, so `serve` and `mint` share it).
fn key_file() -> PathBuf {
    std::env::var_os("DEV_IDP_KEY_FILE").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dev-idp/signing-key.der"),
        PathBuf::from,
    )
}

/// The IdP's other keys (ES256, ES384, ES512, EdDSA), from random bytes kept beside the
/// RSA key's file, so `serve` and `mint` share them.
struct OtherKeys {
    es256: idp::EcSigner,
    es384: idp::EcSigner,
    es512: idp::EcSigner,
    eddsa: idp::EdSigner,
}

/// `len` random bytes kept in the file next to the RSA key with extension `ext`.
fn kept_random(ext: &str, len: usize, fix: impl Fn(&mut [u8])) -> Vec<u8> {
    let path = key_file().with_extension(ext);
    std::fs::read(&path)
        .ok()
        .filter(|s| s.len() == len)
        .unwrap_or_else(|| {
            let mut s = vec![0u8; len];
            getrandom::fill(&mut s).expect("random");
            fix(&mut s);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&path, &s).expect("write key file");
            s
        })
}

fn other_keys() -> OtherKeys {
    let secret = kept_random("others", 48, |_| {});
    // A P-521 scalar: 66 bytes whose top byte is 0 or 1.
    let p521 = kept_random("es512", 66, |s| s[0] &= 1);
    let mut first = [0u8; 32];
    first.copy_from_slice(&secret[..32]);
    OtherKeys {
        es256: idp::EcSigner::from_secret("dev-es256", "ES256", &secret[..32]).expect("P-256 key"),
        es384: idp::EcSigner::from_secret("dev-es384", "ES384", &secret).expect("P-384 key"),
        es512: idp::EcSigner::from_secret("dev-es512", "ES512", &p521).expect("P-521 key"),
        eddsa: idp::EdSigner::from_secret("dev-ed25519", &first),
    }
}

/// The published key set: the RSA key and the others.
fn published(signer: &Signer) -> String {
    let o = other_keys();
    json!({"keys": [signer.jwk(), o.es256.jwk(), o.es384.jwk(), o.es512.jwk(), o.eddsa.jwk()]})
        .to_string()
}

fn kid() -> String {
    std::env::var("DEV_IDP_KID").unwrap_or_else(|_| DEFAULT_KID.to_string())
}

fn secret() -> String {
    std::env::var("SDK_TOKEN_SECRET").unwrap_or_else(|_| DEFAULT_SECRET.to_string())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = argv.split_first() else {
        usage()
    };
    let args = Args(rest.to_vec());
    match cmd.as_str() {
        "serve" => {
            let host = args.value("--host").unwrap_or_else(|| "127.0.0.1".into());
            let ip: std::net::Ipv4Addr = host.parse().unwrap_or_else(|_| usage());
            let servers = serve(
                ip.octets(),
                args.port("--port", 9090),
                args.port("--upstream-port", 9091),
            );
            println!("dev IdP on http://{host}:{} (JWKS {JWKS_PATH}, POST /v1/auth/token, GET /accounts/resolve)", servers.0.port);
            println!("echo upstream on http://{host}:{}", servers.1.port);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "mint" => println!("{}", mint(&args)),
        "proof" => {
            let token = args.value("--token").unwrap_or_else(|| usage());
            let key = dpop_client_key(false);
            println!("{}", proof(&args, &key, &token));
        }
        "revoke" => match revoke(&args) {
            Ok(said) => println!("{said}"),
            Err(e) => {
                eprintln!("dev-idp: {e}");
                std::process::exit(1)
            }
        },
        "echo" => {
            let host = args.value("--host").unwrap_or_else(|| "127.0.0.1".into());
            let ip: std::net::Ipv4Addr = host.parse().unwrap_or_else(|_| usage());
            let port = args.port("--port", 9091);
            let _upstream = servers::echo_on(ip.octets(), port).unwrap_or_else(|e| {
                eprintln!("dev-idp: cannot listen on {host}:{port}: {e}");
                std::process::exit(1)
            });
            println!("echo upstream on http://{host}:{port}");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        "health" => {
            let served = envoy::http(args.port("--port", 9090), "GET", JWKS_PATH, &[])
                .is_ok_and(|r| r.status == 200 && r.body.contains("\"keys\""));
            std::process::exit(if served { 0 } else { 1 })
        }
        "demo" => demo(&args),
        _ => usage(),
    }
}

fn split_list(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

fn mint(args: &Args) -> String {
    let sub = args.value("--sub").unwrap_or_else(|| "user_ada".into());
    let ttl: i64 = args
        .value("--ttl")
        .map(|v| v.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(3600);
    let mut extra = json!({});
    // Every token carries a token id (`--jti` names it), so it can be revoked alone.
    extra["jti"] = json!(args.value("--jti").unwrap_or_else(random_id));
    if let Some(sid) = args.value("--sid") {
        extra["sid"] = json!(sid);
    }
    if let Some(org) = args.value("--org").or_else(|| Some("org_demo".into())) {
        extra["org_id"] = json!(org);
    }
    let perms = split_list(args.value("--permissions"));
    if !perms.is_empty() {
        extra["permissions"] = json!(perms);
    }
    if let Some(scope) = args.value("--scope") {
        extra["scope"] = json!(scope);
    }
    if let Some(role) = args.value("--role") {
        extra["role"] = json!(role);
    }
    let networks = split_list(args.value("--networks"));
    if !networks.is_empty() {
        extra["networks"] = json!(networks);
    }
    // Sender constraints (RFC 9449 and RFC 8705): the key's or the certificate's thumbprint.
    let dpop_key =
        (args.flag("--dpop") && args.value("--jkt").is_none()).then(|| dpop_client_key(true));
    if let Some(key) = &dpop_key {
        extra["cnf"]["jkt"] = json!(idp::jkt(&idp::proof_jwk(key)));
    } else if let Some(jkt) = args.value("--jkt") {
        extra["cnf"]["jkt"] = json!(jkt);
    }
    if let Some(cert) = args.value("--x5t-s256") {
        extra["cnf"]["x5t#S256"] = json!(certificate_thumbprint(&cert));
    }
    let token = signed(args, &sub, ttl, extra);
    match dpop_key {
        Some(key) => format!("{token}\n{}", proof(args, &key, &token)),
        None => token,
    }
}

/// The demo's URL a proof is for unless `--url` names another.
const DEFAULT_PROOF_URL: &str = "http://127.0.0.1:10000/v1/items";

/// A DPoP proof by `key` for `--method` (GET) and `--url`, bound to `token`, now.
fn proof(args: &Args, key: &idp::EcSigner, token: &str) -> String {
    let method = args.value("--method").unwrap_or_else(|| "GET".into());
    let url = args
        .value("--url")
        .unwrap_or_else(|| DEFAULT_PROOF_URL.into());
    idp::dpop_proof(key, &method, &url, token, now(), &random_id())
}

/// The DPoP client key (P-256) kept beside the signing key: a fresh one when `fresh`.
fn dpop_client_key(fresh: bool) -> idp::EcSigner {
    let path = key_file().with_extension("dpop-client");
    if fresh {
        let _ = std::fs::remove_file(&path);
    }
    let secret = kept_random("dpop-client", 32, |_| {});
    idp::EcSigner::from_secret("dpop-client", "ES256", &secret).unwrap_or_else(|| {
        let _ = std::fs::remove_file(&path);
        eprintln!("dev-idp: the kept DPoP key was not a P-256 scalar; run mint --dpop again");
        std::process::exit(1)
    })
}

/// `cnf.x5t#S256` for `--x5t-s256`: base64url(SHA-256(DER)) of a PEM certificate file, or
/// the value itself when it is not one.
fn certificate_thumbprint(arg: &str) -> String {
    use sha2::Digest;
    let Ok(text) = std::fs::read_to_string(arg) else {
        return arg.to_string();
    };
    let der = bearer_guard::pem_certificate_der(&text).unwrap_or_else(|| {
        eprintln!("dev-idp: {arg} holds no PEM certificate");
        std::process::exit(2)
    });
    idp::b64(sha2::Sha256::digest(der))
}

/// The token for these claims: HS256 with `--hs256`, else signed with `--alg` (RS256).
fn signed(args: &Args, sub: &str, ttl: i64, extra: Value) -> String {
    if args.flag("--hs256") {
        let mut c = extra;
        c["sub"] = json!(sub);
        c["iat"] = json!(now());
        c["exp"] = json!(now() + ttl);
        return mint_hs256(secret().as_bytes(), &c);
    }
    let body = claims(ISSUER, AUDIENCE, sub, ttl, extra);
    let signer = Signer::load_or_create(&key_file(), &kid());
    match args.value("--alg").as_deref().unwrap_or("RS256") {
        alg @ ("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => {
            signer.mint_alg(alg, &body)
        }
        "ES256" => other_keys().es256.mint(&body),
        "ES384" => other_keys().es384.mint(&body),
        "ES512" => other_keys().es512.mint(&body),
        "EdDSA" => other_keys().eddsa.mint(&body),
        _ => usage(),
    }
}

fn random_id() -> String {
    let mut raw = [0u8; 12];
    let _ = getrandom::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry `revoke` asks the running IdP to add, from its flags.
fn revocation_entry(args: &Args) -> Option<Value> {
    // Subjects and sessions: every token issued until now (`iat` before the next second).
    let cutoff = now() + 1;
    if let Some(jti) = args.value("--jti") {
        return Some(json!({"jti": jti, "exp": now() + 86_400}));
    }
    if let Some(sub) = args.value("--sub") {
        return Some(json!({"sub": sub, "not_before": cutoff}));
    }
    args.value("--sid")
        .map(|sid| json!({"sid": sid, "not_before": cutoff}))
}

fn revoke(args: &Args) -> Result<String, String> {
    let entry = revocation_entry(args).unwrap_or_else(|| usage());
    let port = args.port("--port", 9090);
    let body = entry.to_string();
    let headers = [("content-type", "application/json")];
    let r = envoy::http_body(
        port,
        "POST",
        REVOCATIONS_PATH,
        &headers,
        &[body.as_bytes()],
        Duration::ZERO,
    )
    .map_err(|e| format!("the dev IdP on port {port} did not answer: {e}"))?;
    match r.status {
        200 => Ok(format!(
            "revoked {entry}; the list now has {} entries",
            r.json()["entries"]
        )),
        s => Err(format!("the dev IdP answered {s}: {}", r.body)),
    }
}

/// The revocation list `serve` publishes: adds `entry` (one of `jti`, `sub`, `sid`).
fn add_revocation(list: &Mutex<Value>, entry: &Value) -> Result<usize, String> {
    let kind = ["jti", "sub", "sid"]
        .into_iter()
        .find(|k| entry[k].is_string())
        .ok_or("expected {\"jti\"|\"sub\"|\"sid\": \"…\"}")?;
    let mut doc = list.lock().map_err(|_| "poisoned")?;
    if let Some(items) = doc[kind].as_array_mut() {
        items.push(entry.clone());
    }
    Ok(["jti", "sub", "sid"]
        .iter()
        .map(|k| doc[k].as_array().map_or(0, Vec::len))
        .sum())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

fn json_reply(status: u16, v: Value) -> servers::Response {
    (
        status,
        vec![("content-type".into(), "application/json".into())],
        v.to_string().into_bytes(),
    )
}

/// The IdP handler: JWKS, token endpoint, accounts, revocation list.
fn idp_handler(signer: Signer) -> Arc<dyn Fn(&Seen) -> servers::Response + Send + Sync> {
    let refresh_tokens: Arc<Mutex<HashMap<String, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let revoked = Mutex::new(json!({"jti": [], "sub": [], "sid": []}));
    Arc::new(move |req: &Seen| {
        let (path, query) = req.url.split_once('?').unwrap_or((&req.url, ""));
        match (req.method.as_str(), path) {
            ("GET", REVOCATIONS_PATH) => match revoked.lock() {
                Ok(doc) => json_reply(200, doc.clone()),
                Err(_) => json_reply(500, json!({"detail": "poisoned"})),
            },
            // Development only (the IdP listens on loopback): no authentication.
            ("POST", REVOCATIONS_PATH) => {
                let entry: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
                match add_revocation(&revoked, &entry) {
                    Ok(entries) => json_reply(200, json!({"entries": entries})),
                    Err(e) => json_reply(400, json!({"detail": e})),
                }
            }
            ("GET", JWKS_PATH) | ("GET", "/.well-known/jwks.json") => (
                200,
                vec![("content-type".into(), "application/json".into())],
                published(&signer).into_bytes(),
            ),
            // OpenID Connect discovery (a provider with `jwks.discovery` reads this).
            ("GET", "/.well-known/openid-configuration") => json_reply(
                200,
                json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}{JWKS_PATH}"),
                       "token_endpoint": format!("{ISSUER}/v1/auth/token"),
                       "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384", "ES512", "EdDSA"]}),
            ),
            ("POST", "/v1/auth/token") => {
                token_endpoint(&signer, &refresh_tokens, &form(&req.body))
            }
            ("GET", "/accounts/resolve") => {
                let q = form(query.as_bytes());
                let found = ACCOUNTS.iter().find(|(sub, org, _, _)| {
                    q.get("user").map(String::as_str) == Some(sub)
                        && q.get("org").map(String::as_str) == Some(org)
                });
                match found {
                    Some((sub, org, account, entity)) => json_reply(
                        200,
                        json!({"account_id": account, "entity_id": entity, "user": sub, "org": org, "status": "active"}),
                    ),
                    None => json_reply(404, json!({"detail": "account not found"})),
                }
            }
            _ => json_reply(404, json!({"detail": "not found"})),
        }
    })
}

fn token_endpoint(
    signer: &Signer,
    refresh_tokens: &Mutex<HashMap<String, String>>,
    f: &HashMap<String, String>,
) -> servers::Response {
    let invalid = |code: &str| {
        json_reply(
            if code == "invalid_client" { 401 } else { 400 },
            json!({"error": code}),
        )
    };
    let client_id = match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let ok = CLIENTS.iter().any(|(id, secret, _, _)| {
                f.get("client_id").map(String::as_str) == Some(id)
                    && f.get("client_secret").map(String::as_str) == Some(secret)
            });
            if !ok {
                return invalid("invalid_client");
            }
            f.get("client_id").cloned().unwrap_or_default()
        }
        Some("refresh_token") => {
            let presented = f.get("refresh_token").cloned().unwrap_or_default();
            // Refresh tokens rotate: each is usable once.
            match refresh_tokens
                .lock()
                .ok()
                .and_then(|mut m| m.remove(&presented))
            {
                Some(client) if Some(&client) == f.get("client_id") => client,
                _ => return invalid("invalid_grant"),
            }
        }
        _ => return invalid("unsupported_grant_type"),
    };
    let Some((_, _, scopes, org)) = CLIENTS.iter().find(|(id, ..)| *id == client_id) else {
        return invalid("invalid_client");
    };
    let access = signer.mint(&claims(
        ISSUER,
        AUDIENCE,
        &client_id,
        7200,
        json!({"scope": scopes, "org_id": org}),
    ));
    let mut raw = [0u8; 24];
    if getrandom::fill(&mut raw).is_err() {
        return json_reply(500, json!({"error": "server_error"}));
    }
    let refresh = idp::b64(raw);
    if let Ok(mut m) = refresh_tokens.lock() {
        m.insert(refresh.clone(), client_id.clone());
    }
    json_reply(
        200,
        json!({"access_token": access, "token_type": "Bearer", "expires_in": 7200, "refresh_token": refresh}),
    )
}

/// The demo's upstream: a small MCP server at `/mcp` (Streamable HTTP, JSON answers:
/// `initialize`, `tools/list` with `search_items` and `delete_index`, `tools/call`), and
/// the echo of every other request.
/// A demo line for a refused request (or one that failed): status, body, challenge.
fn print_refusal(r: std::io::Result<envoy::Reply>) {
    match r {
        Ok(r) => println!(
            "  -> {} {} WWW-Authenticate: {}\n",
            r.status,
            r.body,
            r.header("www-authenticate").unwrap_or("-")
        ),
        Err(e) => println!("  -> request failed: {e}\n"),
    }
}

fn upstream_handler() -> servers::Handler {
    let echo = servers::echo_handler();
    Arc::new(move |seen: &servers::Seen| {
        if seen.url.split('?').next() == Some("/mcp") && seen.method == "POST" {
            return mcp_answer(&seen.body);
        }
        echo(seen)
    })
}

/// The demo MCP server's answer to one JSON-RPC message (a notification: 202).
fn mcp_answer(body: &[u8]) -> servers::Response {
    let json_reply = |v: Value| {
        (
            200,
            vec![("content-type".to_string(), "application/json".to_string())],
            v.to_string().into_bytes(),
        )
    };
    let Ok(msg) = serde_json::from_slice::<Value>(body) else {
        return json_reply(json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": -32700, "message": "parse error"}}));
    };
    let Some(id) = msg.get("id").cloned() else {
        return (202, vec![], Vec::new());
    };
    let tool = |name: &str, about: &str| {
        json!({"name": name, "description": about,
               "inputSchema": {"type": "object", "properties": {}}})
    };
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => json!({"protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}}, "serverInfo": {"name": "demo-items", "version": "1"}}),
        "tools/list" => json!({"tools": [tool("search_items", "Searches the catalogue"),
                                         tool("delete_index", "Deletes a search index")]}),
        "tools/call" => {
            let name = msg["params"]["name"].as_str().unwrap_or("");
            json!({"content": [{"type": "text", "text": format!("{name} ran")}]})
        }
        "ping" => json!({}),
        _ => {
            return json_reply(json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32601, "message": "method not found"}}))
        }
    };
    json_reply(json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

fn serve(ip: [u8; 4], port: u16, upstream_port: u16) -> (HttpServer, HttpServer) {
    let signer = Signer::load_or_create(&key_file(), &kid());
    let idp = HttpServer::start_on(ip, port, idp_handler(signer)).unwrap_or_else(|e| {
        eprintln!("dev-idp: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1)
    });
    let upstream =
        HttpServer::start_on(ip, upstream_port, upstream_handler()).unwrap_or_else(|e| {
            eprintln!("dev-idp: cannot listen on 127.0.0.1:{upstream_port}: {e}");
            std::process::exit(1)
        });
    (idp, upstream)
}

#[allow(clippy::type_complexity)]
fn demo(args: &Args) {
    let envoy_bin = args.value("--envoy").unwrap_or_else(|| usage());
    // The wasm module (envoy/envoy.yaml), or the native one found in a folder
    // (envoy/envoy-native.yaml).
    let (module, native_dir) = match (args.value("--wasm"), args.value("--native")) {
        (Some(wasm), None) => (PathBuf::from(wasm), None),
        (None, Some(dir)) => (Path::new(&dir).join("libbearer_guard.so"), Some(dir)),
        _ => usage(),
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !module.exists() {
        eprintln!("dev-idp: {} is missing; run `make build`", module.display());
        std::process::exit(1);
    }
    // envoy/envoy.yaml as written uses the default ports; other ports (the tests pick free
    // ones) go into a copy of it.
    let ports = [
        ("--port", 10000),
        ("--admin-port", 9901),
        ("--idp-port", 9090),
        ("--upstream-port", 9091),
    ]
    .map(|(flag, default)| (default, args.port(flag, default)));
    let [(_, port), (_, admin), (_, idp_port), (_, upstream_port)] = ports;
    let _servers = serve([127, 0, 0, 1], idp_port, upstream_port);
    let mut config = repo.join(if native_dir.is_some() {
        "envoy/envoy-native.yaml"
    } else {
        "envoy/envoy.yaml"
    });
    if ports.iter().any(|(default, chosen)| default != chosen) {
        let mut text = std::fs::read_to_string(&config).unwrap_or_else(|e| {
            eprintln!("dev-idp: cannot read {}: {e}", config.display());
            std::process::exit(1)
        });
        for (default, chosen) in ports {
            text = text.replace(
                &format!("port_value: {default} "),
                &format!("port_value: {chosen} "),
            );
            // Addresses the filter's configuration names (its protected resource).
            text = text.replace(
                &format!("127.0.0.1:{default}"),
                &format!("127.0.0.1:{chosen}"),
            );
        }
        config = repo.join(format!("target/dev-idp/envoy-{}.yaml", std::process::id()));
        if let Err(e) = std::fs::write(&config, text) {
            eprintln!("dev-idp: cannot write {}: {e}", config.display());
            std::process::exit(1)
        }
    }
    let log = repo.join("target/dev-idp/envoy.log");
    let mut child = std::process::Command::new(&envoy_bin)
        .current_dir(repo)
        .arg("-c")
        .arg(&config)
        .args(["--concurrency", "1", "--use-dynamic-base-id", "-l", "info"])
        .args(["--file-flush-interval-msec", "100", "--log-path"])
        .arg(&log)
        .env("SDK_TOKEN_SECRET", secret())
        .envs(
            native_dir
                .iter()
                .map(|dir| ("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir)),
        )
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            eprintln!("dev-idp: cannot start {envoy_bin}: {e}");
            std::process::exit(1)
        });
    let ready = (0..300).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        envoy::http(admin, "GET", "/ready", &[])
            .map(|r| r.status == 200)
            .unwrap_or(false)
            && envoy::http(port, "GET", "/health", &[])
                .map(|r| r.status == 200)
                .unwrap_or(false)
    });
    if !ready {
        let _ = child.kill();
        eprintln!("dev-idp: Envoy did not become ready; see {}", log.display());
        std::process::exit(1);
    }
    let signer = Signer::load_or_create(&key_file(), &kid());
    let extra =
        json!({"org_id": "org_demo", "permissions": ["entities:read"], "networks": [DEMO_NETWORK]});
    let reader = signer.mint(&claims(ISSUER, AUDIENCE, "user_ada", 3600, extra));
    println!("bearer-guard demo: Envoy on http://127.0.0.1:{port} (admin 127.0.0.1:{admin}), dev IdP on :{idp_port}, echo upstream on :{upstream_port}\n");
    println!("export TOKEN={reader}\n");
    let base = format!("http://127.0.0.1:{port}");
    let shows: Vec<(&str, &str, String, Vec<(&str, String)>)> = vec![
        (
            "a valid token",
            "GET",
            "/v1/entities/consumer/search?first_name=Ada".into(),
            vec![("authorization", format!("Bearer {reader}"))],
        ),
        (
            "no token",
            "GET",
            "/v1/entities/consumer/search?first_name=Ada".into(),
            vec![],
        ),
        (
            "a token without consent:write",
            "POST",
            format!("/v1/consent/consumer?network_id={DEMO_NETWORK}"),
            vec![("authorization", format!("Bearer {reader}"))],
        ),
        ("a public route", "GET", "/health".into(), vec![]),
        (
            "the metadata document the 401 names (RFC 9728: where to get a token)",
            "GET",
            "/.well-known/oauth-protected-resource".into(),
            vec![],
        ),
    ];
    for (what, method, path, headers) in shows {
        // The authority curl sends: the one the filter's protected resource allows.
        let authority = format!("127.0.0.1:{port}");
        let mut hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hs.push(("host", &authority));
        let curl_auth = if headers.is_empty() {
            String::new()
        } else {
            " -H \"Authorization: Bearer $TOKEN\"".into()
        };
        let curl_method = if method == "GET" {
            String::new()
        } else {
            format!(" -X {method}")
        };
        println!("# {what}\ncurl -i{curl_method} '{base}{path}'{curl_auth}");
        match envoy::http(port, method, &path, &hs) {
            Ok(r) => {
                let body = if path.starts_with("/.well-known/") {
                    r.body.clone()
                } else if r.status == 200 {
                    let seen =
                        |h: &str| r.json()["headers"][h].as_str().map(|v| format!("{h}: {v}"));
                    let shown: Vec<String> = ["x-auth-subject", "x-account-id"]
                        .iter()
                        .filter_map(|h| seen(h))
                        .collect();
                    if shown.is_empty() {
                        "(upstream reached)".to_string()
                    } else {
                        format!("(upstream saw {})", shown.join(", "))
                    }
                } else {
                    match r.header("www-authenticate") {
                        Some(www) => format!("{}\n     www-authenticate: {www}", r.body),
                        None => r.body.clone(),
                    }
                };
                println!("  -> {} {body}\n", r.status)
            }
            Err(e) => println!("  -> request failed: {e}\n"),
        }
    }
    // Revocation: a token passes, its jti is revoked at the IdP, and the token is refused
    // once the filter's list refreshes (every 2 s in envoy/envoy.yaml).
    let leaked = signer.mint(&claims(
        ISSUER,
        AUDIENCE,
        "user_ada",
        3600,
        json!({"org_id": "org_demo", "permissions": ["entities:read"], "jti": "demo-leaked-1"}),
    ));
    let path = "/v1/entities/consumer/search?first_name=Ada";
    let auth = format!("Bearer {leaked}");
    let get = || envoy::http(port, "GET", path, &[("authorization", auth.as_str())]);
    println!("export LEAKED={leaked}   # jti demo-leaked-1\n");
    println!("# a token about to be revoked\ncurl -i '{base}{path}' -H \"Authorization: Bearer $LEAKED\"");
    match get() {
        Ok(r) => println!("  -> {}\n", r.status),
        Err(e) => println!("  -> request failed: {e}\n"),
    }
    let flags = ["--jti", "demo-leaked-1", "--port", &idp_port.to_string()].map(String::from);
    println!("cargo run --example dev-idp -- revoke --jti demo-leaked-1 --port {idp_port}");
    match revoke(&Args(flags.to_vec())) {
        Ok(said) => println!("  {said}\n"),
        Err(e) => println!("  {e}\n"),
    }
    let revoked_at = std::time::Instant::now();
    let refused = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        get().ok().filter(|r| r.status == 401)
    });
    println!("# the same token after the revocation list refreshed\ncurl -i '{base}{path}' -H \"Authorization: Bearer $LEAKED\"");
    match refused {
        Some(r) => println!(
            "  -> 401 {} (refused {:.1} s after revoke)\n",
            r.body,
            revoked_at.elapsed().as_secs_f64()
        ),
        None => println!("  -> still accepted 10 s after revoke: see Envoy's log\n"),
    }
    // DPoP: a token bound to a fresh client key and a proof for one request; the same
    // proof again is a replay.
    let url = format!("{base}/v1/entities/consumer/search");
    let flags = ["--dpop", "--url", &url, "--permissions", "entities:read"].map(String::from);
    let minted = mint(&Args(flags.to_vec()));
    let (bound, proof) = minted.split_once('\n').unwrap_or((&minted, ""));
    println!("# a DPoP-bound token and its proof (the client key stays in target/dev-idp)\n{{ read -r DPOP_TOKEN; read -r PROOF; }} < <(cargo run -q --example dev-idp -- mint --dpop --url {url} --permissions entities:read)");
    let (dpop_auth, host) = (format!("DPoP {bound}"), format!("127.0.0.1:{port}"));
    let headers = [
        ("host", host.as_str()),
        ("authorization", dpop_auth.as_str()),
        ("dpop", proof),
    ];
    for what in ["the request with its proof", "the same DPoP proof again"] {
        println!("# {what}\ncurl -i '{base}{path}' -H \"Authorization: DPoP $DPOP_TOKEN\" -H \"DPoP: $PROOF\"");
        match envoy::http(port, "GET", path, &headers) {
            Ok(r) if r.status == 200 => println!("  -> 200 (upstream reached)\n"),
            other => print_refusal(other),
        }
    }
    // The GraphQL endpoint: an items query with its two headers, without one, and an
    // index mutation, for a read-only OAuth token.
    let scoped = signer.mint(&claims(
        ISSUER,
        AUDIENCE,
        "demo-client",
        3600,
        json!({"org_id": "org_demo", "scope": "index:read:*"}),
    ));
    println!("export GQL_TOKEN={scoped}   # scope index:read:*\n");
    let items = r#"{"query":"{ items(first: 5) { id title } }"}"#;
    let mutation = r#"{"query":"mutation { createIndex(name: \"shoes\") { id } }"}"#;
    let index = "9f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    let user = "01890a5d-ac96-774b-bcce-b302099a8057";
    let graphql: Vec<(&str, &str, bool)> = vec![
        ("an items query with both headers", items, true),
        ("an items query without Solenya-User-UUID", items, false),
        ("an index mutation with a read-only token", mutation, false),
    ];
    for (what, body, both) in graphql {
        let auth = format!("Bearer {scoped}");
        let mut hs = vec![
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let mut curl = format!("curl -i -X POST '{base}/graphql' -H \"Authorization: Bearer $GQL_TOKEN\" -H 'content-type: application/json'");
        if body == items {
            hs.push(("solenya-index-uuid", index));
            curl.push_str(&format!(" -H 'Solenya-Index-UUID: {index}'"));
            if both {
                hs.push(("solenya-user-uuid", user));
                curl.push_str(&format!(" -H 'Solenya-User-UUID: {user}'"));
            }
        }
        println!("# {what}\n{curl} -d '{body}'");
        match envoy::http_body(
            port,
            "POST",
            "/graphql",
            &hs,
            &[body.as_bytes()],
            Duration::ZERO,
        ) {
            Ok(r) if r.status == 200 => println!("  -> 200 (upstream reached)\n"),
            Ok(r) => println!("  -> {} {}\n", r.status, r.body),
            Err(e) => println!("  -> request failed: {e}\n"),
        }
    }
    // The MCP endpoint: the tools the same read-only token sees, and a call it may not make.
    let auth = format!("Bearer {scoped}");
    let hs = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_index","arguments":{}}}"#;
    for (what, body) in [
        (
            "the MCP server's tools a read-only token sees (tools/list)",
            list,
        ),
        ("an MCP call of delete_index with it", call),
    ] {
        println!("# {what}\ncurl -i -X POST '{base}/mcp' -H \"Authorization: Bearer $GQL_TOKEN\" -H 'content-type: application/json' -d '{body}'");
        match envoy::http_body(
            port,
            "POST",
            "/mcp",
            &hs,
            &[body.as_bytes()],
            Duration::ZERO,
        ) {
            Ok(r) if r.status == 200 => {
                let tools: Vec<String> = r.json()["result"]["tools"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|t| t["name"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "  -> 200 tools: {} (the server lists search_items and delete_index)\n",
                    tools.join(", ")
                );
            }
            other => print_refusal(other),
        }
    }
    println!("More tokens: cargo run --example dev-idp -- mint --sub user_ada --permissions entities:read,consent:write --networks {DEMO_NETWORK}");
    println!("OAuth client credentials: curl -s -X POST http://127.0.0.1:{idp_port}/v1/auth/token -d 'grant_type=client_credentials&client_id=demo-client&client_secret=demo-secret'");
    if args.flag("--once") {
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    println!(
        "\nRunning; press Ctrl-C to stop. Envoy's log: {}",
        log.display()
    );
    let _ = child.wait();
}
