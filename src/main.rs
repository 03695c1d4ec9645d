//! `bearer-guard`: check a plugin configuration, and explain a decision offline.
//!
//! ```text
//! bearer-guard validate CONFIG
//! bearer-guard explain --config CONFIG [--jwks FILE_OR_URL] [--revocation FILE_OR_URL] [--token TOKEN|-|@FILE] [--json]
//!                      [--account JSON|none] [--introspection JSON] [--request-id ID] [--route NAME]
//!                      METHOD URL [-H 'Name: value']...
//! ```
//!
//! Exit codes: 0 done (for `validate`: the configuration is valid; for `explain`: the
//! decision was explained, whatever it is), 1 the configuration is invalid (its field
//! named), 2 a wrong argument or an input that cannot be read. HMAC secrets are read from
//! the environment variables the configuration names, as the filter reads them from its
//! VM's environment. Nothing printed contains the token or a secret.

use bearer_guard::rule_sources;
use bearer_guard::KeySet;
use bearer_guard::RustBackend;
use bearer_guard::TokenSource;
use bearer_guard::{explain_with, introspection_answer, Explain};
use bearer_guard::{Body, Headers, Request};
use bearer_guard::{Config, DEFAULT_MAX_JWKS_BYTES};
use bearer_guard::{RevocationLimits, RevocationList};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::process::ExitCode;

/// Check a bearer-guard plugin configuration, or explain how the filter decides a request.
#[derive(Parser)]
#[command(name = "bearer-guard", version, about)]
#[command(
    after_help = "Exit codes: 0 done, 1 invalid configuration, 2 wrong arguments or unreadable input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a plugin configuration (JSON) as the filter's on_configure does; exit 1 with
    /// the field named when it is invalid.
    Validate {
        /// The plugin configuration file.
        config: String,
    },
    /// Run the filter's decision on one request and say why: the rule, the header
    /// preconditions, the provider and each token check, the required claims and the
    /// account, the grants, each requirement, and the exact reply.
    Explain(Box<ExplainArgs>),
}

#[derive(clap::Args)]
struct ExplainArgs {
    /// The plugin configuration file.
    #[arg(long)]
    config: String,
    /// The key set: a JWKS file or an http:// URL (not needed when no key is involved).
    #[arg(long)]
    jwks: Option<String>,
    /// The revocation list (the document a provider's `revocation` source serves): a file
    /// or an http:// URL. Without it, lists count as never obtained.
    #[arg(long)]
    revocation: Option<String>,
    /// A token to send where the deciding rule's provider takes tokens from (its `token`
    /// source): the token itself, `-` for stdin, or `@FILE`. Without it, the request
    /// carries only the credentials its own headers and URL carry.
    #[arg(long)]
    token: Option<String>,
    /// What the account service answers: a JSON object, or `none` for 404.
    #[arg(long, default_value = "{}")]
    account: String,
    /// What an introspection provider's endpoint answers for the token, e.g.
    /// '{"active":true,"sub":"u1","scope":"items:read"}' (read as the filter reads a 200:
    /// only `"active": true` with an `exp` ahead vouches). Without it, the call fails.
    #[arg(long)]
    introspection: Option<String>,
    /// The request's x-request-id.
    #[arg(long)]
    request_id: Option<String>,
    /// The Envoy route name rules may match.
    #[arg(long)]
    route: Option<String>,
    /// The request body (GraphQL rules judge it): the body itself, `-` for stdin, or
    /// `@FILE`, e.g. `--body @query.json`.
    #[arg(long)]
    body: Option<String>,
    /// Print the explanation as JSON, for scripts.
    #[arg(long)]
    json: bool,
    /// The request's scheme (`:scheme`), which a DPoP proof's `htu` names.
    #[arg(long, default_value = "http")]
    scheme: String,
    /// The client certificate of the TLS connection (a PEM file), for certificate-bound
    /// tokens (`mtls_binding`).
    #[arg(long, value_name = "PEM")]
    client_cert: Option<String>,
    /// The request method, e.g. GET.
    method: String,
    /// The request's path and query, e.g. '/v1/items?q=x'.
    url: String,
    /// A request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
}

/// The SHA-256 (hex, as Envoy gives it) of the DER of the first certificate in a PEM file.
fn certificate_sha256(path: &str) -> Result<String, String> {
    use sha2::Digest;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let der = bearer_guard::pem_certificate_der(&text)
        .ok_or_else(|| format!("{path} holds no PEM certificate"))?;
    Ok(sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// An input that cannot be used: exit 2.
fn fail(message: &str) -> ExitCode {
    eprintln!("bearer-guard: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { config } => validate(&config),
        Command::Explain(args) => explain_command(*args),
    }
}

fn read_config(path: &str) -> Result<Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The same words as the filter's log line.
    bearer_guard::parse_config(&bytes, &|name| std::env::var(name).ok())
        .map_err(|e| format!("bearer-guard: {e}"))
}

fn validate(path: &str) -> ExitCode {
    match read_config(path) {
        Ok(cfg) => {
            println!(
                "{path}: valid ({} provider(s), {} rule(s))",
                cfg.providers.len(),
                cfg.rules.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// A JWKS or revocation list from a file or a plain-HTTP URL (fetch https documents
/// with curl first).
fn read_document(source: &str) -> Result<Vec<u8>, String> {
    let Some(rest) = source.strip_prefix("http://") else {
        if source.starts_with("https://") {
            return Err(
                "https URLs are not fetched: save the document with curl and pass the file".into(),
            );
        }
        return std::fs::read(source).map_err(|e| format!("cannot read {source}: {e}"));
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = std::net::TcpStream::connect(&addr)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {authority}\r\naccept: application/json\r\nconnection: close\r\n\r\n")
        .map_err(|e| format!("cannot fetch {source}: {e}"))?;
    // Read the head, then exactly the body its content-length announces (a server may
    // keep the connection open).
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let split = loop {
        if let Some(at) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("cannot fetch {source}: {e}"))?;
        if n == 0 {
            return Err(format!("{source}: not an HTTP response"));
        }
        response.extend_from_slice(chunk.get(..n).unwrap_or_default());
    };
    let head = String::from_utf8_lossy(response.get(..split).unwrap_or_default()).to_string();
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{source}: {}", head.lines().next().unwrap_or("")));
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        })
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or_else(|| format!("{source}: no content-length; save the JWKS with curl"))?;
    let mut body = response.get(split + 4..).unwrap_or_default().to_vec();
    while body.len() < length {
        let n = stream
            .read(&mut chunk)
            .map_err(|e| format!("cannot fetch {source}: {e}"))?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    body.truncate(length);
    Ok(body)
}

/// An argument's value: itself, stdin (`-`) or a file (`@FILE`).
fn read_input(arg: &str, what: &str) -> Result<String, String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read {what} from stdin: {e}"))?;
        Ok(s)
    } else if let Some(file) = arg.strip_prefix('@') {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))
    } else {
        Ok(arg.to_string())
    }
}

fn read_token(arg: &str) -> Result<String, String> {
    read_input(arg, "the token").map(|t| t.trim().to_string())
}

/// Puts `token` where the deciding rule's first provider takes tokens from.
fn place_token(cfg: &Config, req: &mut Request, token: &str) {
    let host = req.host();
    let path = req.path_only().to_string();
    let rule = cfg
        .rules
        .iter()
        .find(|r| r.matcher.matches(req, &path, &host).is_some());
    let source = rule_sources(cfg, rule)
        .first()
        .map_or(TokenSource::Authorization, |s| (*s).clone());
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match source {
        // With a DPoP proof among the headers, the token goes as `DPoP` (RFC 9449).
        TokenSource::Authorization => {
            let scheme = if req.header("dpop").is_some() {
                "DPoP"
            } else {
                "Bearer"
            };
            headers.push(("authorization".into(), format!("{scheme} {token}")))
        }
        TokenSource::Header { name, prefix } => headers.push((name, format!("{prefix}{token}"))),
        TokenSource::Cookie(name) => headers.push(("cookie".into(), format!("{name}={token}"))),
        TokenSource::Query(name) => {
            let sep = if req.path.contains('?') { '&' } else { '?' };
            req.path = format!("{}{sep}{name}={token}", req.path);
        }
    }
    req.headers = Headers::from_pairs(headers);
}

fn explain_command(args: ExplainArgs) -> ExitCode {
    let cfg = match read_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let keys = match &args.jwks {
        None => None,
        Some(jwks) => match read_document(jwks).and_then(|b| {
            KeySet::parse(&b, DEFAULT_MAX_JWKS_BYTES.max(b.len()))
                .map(|(k, _)| k)
                .map_err(|e| format!("{jwks}: {e:?}"))
        }) {
            Ok(k) => Some(k),
            Err(e) => return fail(&e),
        },
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let revocation = match &args.revocation {
        None => None,
        Some(source) => {
            let limits = RevocationLimits {
                max_entries: bearer_guard::MAX_REVOCATION_ENTRIES,
                clock_skew_s: cfg.clock_skew_s,
            };
            match read_document(source).and_then(|b| {
                RevocationList::parse(&b, &limits, now).map_err(|e| format!("{source}: {e}"))
            }) {
                Ok(l) => Some(l),
                Err(e) => return fail(&e),
            }
        }
    };
    let account: Option<Map<String, Value>> = match args.account.as_str() {
        "none" => None,
        text => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Some(m),
            _ => return fail("--account takes a JSON object, or none"),
        },
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        match h.split_once(':') {
            Some((k, v)) => headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string())),
            None => return fail(&format!("-H takes 'Name: value', not {h:?}")),
        }
    }
    let authority = headers
        .iter()
        .find(|(k, _)| k == "host" || k == ":authority")
        .map_or("localhost".to_string(), |(_, v)| v.clone());
    let request_id = args.request_id.clone().unwrap_or_default();
    if !request_id.is_empty() {
        headers.push(("x-request-id".into(), request_id.clone()));
    }
    headers.push((":scheme".into(), args.scheme.clone()));
    let peer_certificate_sha256 = match args.client_cert.as_deref().map(certificate_sha256) {
        None => None,
        Some(Ok(hex)) => Some(hex),
        Some(Err(e)) => return fail(&e),
    };
    let mut req = Request {
        method: args.method.clone(),
        path: args.url.clone(),
        authority,
        route_name: args.route.clone(),
        request_id,
        headers: Headers::from_pairs(headers),
        peer_certificate_sha256,
        ..Default::default()
    };
    if let Some(arg) = &args.token {
        match read_token(arg) {
            // An empty token sends none.
            Ok(t) if t.is_empty() => {}
            Ok(t) => place_token(&cfg, &mut req, &t),
            Err(e) => return fail(&e),
        }
    }
    if let Some(arg) = &args.body {
        match read_input(arg, "the body") {
            Ok(b) => req.body = Body::Read(b.into_bytes()),
            Err(e) => return fail(&e),
        }
    }
    let introspected = args
        .introspection
        .as_deref()
        .map(|body| introspection_answer(body, now));
    let world = Explain {
        keys: keys.as_ref(),
        revocation: revocation.as_ref(),
        backend: &RustBackend,
        account: account.as_ref(),
        introspection: introspected.as_ref().map(Option::as_ref),
    };
    let e = explain_with(&cfg, world, &req, now);
    if args.json {
        println!("{}", e.to_json());
    } else {
        print!("{}", e.to_text());
    }
    ExitCode::SUCCESS
}
