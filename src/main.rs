//! `bearer-guard`: check a plugin configuration, and explain a decision offline.
//!
//! ```text
//! bearer-guard validate CONFIG
//! bearer-guard explain --config CONFIG --jwks FILE_OR_URL --token TOKEN|-|@FILE [--json]
//!                      [--account JSON|none] [--request-id ID] [--route NAME]
//!                      METHOD PATH [-H 'Name: value']...
//! ```
//!
//! HS256 secrets are read from the environment variables the configuration names, as the
//! filter reads them from its VM's environment. Nothing printed contains the token or a
//! secret.

use bearer_guard::config;
use bearer_guard::config::DEFAULT_MAX_JWKS_BYTES;
use bearer_guard::explain::explain;
use bearer_guard::jwks::KeySet;
use bearer_guard::request::{Headers, Request};
use bearer_guard::verifier::RustBackend;
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::process::ExitCode;

const USAGE: &str = "usage:
  bearer-guard validate CONFIG
  bearer-guard explain --config CONFIG --jwks FILE_OR_URL --token TOKEN|-|@FILE [--json]
                       [--account JSON|none] [--request-id ID] [--route NAME]
                       METHOD PATH [-H 'Name: value']...

validate   checks a plugin configuration (JSON) as the filter's on_configure does; exit 1
           with the field named when it is invalid.
explain    runs the filter's decision on one request and says why: the rule, the provider,
           the token checks, the grants, each requirement, and the exact reply. The token
           comes from the argument, stdin (-) or a file (@FILE); --jwks is a file or an
           http:// URL; --account is what the account service answers (default {}; none
           means 404); --route is the Envoy route name rules may match. HS256 secrets come from the environment variables the
           configuration names.";

fn fail(message: &str) -> ExitCode {
    eprintln!("bearer-guard: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("validate") => match args.get(1) {
            Some(path) if args.len() == 2 => validate(path),
            _ => fail(USAGE),
        },
        Some("explain") => explain_command(args.get(1..).unwrap_or_default()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => fail(USAGE),
    }
}

fn read_config(path: &str) -> Result<config::Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    // The same words as the filter's log line.
    config::parse(&bytes, &|name| std::env::var(name).ok())
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

/// A JWKS from a file or a plain-HTTP URL (fetch https documents with curl first).
fn read_jwks(source: &str) -> Result<Vec<u8>, String> {
    let Some(rest) = source.strip_prefix("http://") else {
        if source.starts_with("https://") {
            return Err(
                "https URLs are not fetched: save the JWKS with curl and pass the file".into(),
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

fn read_token(arg: &str) -> Result<String, String> {
    let raw = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
        s
    } else if let Some(file) = arg.strip_prefix('@') {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?
    } else {
        arg.to_string()
    };
    Ok(raw.trim().to_string())
}

fn explain_command(args: &[String]) -> ExitCode {
    let mut opts: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let (mut positional, mut headers, mut json) = (Vec::new(), Vec::new(), false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "-H" => match it.next().and_then(|h| h.split_once(':')) {
                Some((k, v)) => headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string())),
                None => return fail("-H takes 'Name: value'"),
            },
            flag @ ("--config" | "--jwks" | "--token" | "--account" | "--request-id"
            | "--route") => match it.next() {
                Some(v) => {
                    opts.insert(flag, v);
                }
                None => return fail(&format!("{flag} takes a value")),
            },
            other if other.starts_with("--") => {
                return fail(&format!("unknown option {other}\n{USAGE}"))
            }
            other => positional.push(other.to_string()),
        }
    }
    let (Some(cfg_path), Some(jwks), Some(token_arg), [method, path]) = (
        opts.get("--config"),
        opts.get("--jwks"),
        opts.get("--token"),
        positional.as_slice(),
    ) else {
        return fail(USAGE);
    };
    let cfg = match read_config(cfg_path) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let keys = match read_jwks(jwks).and_then(|b| {
        KeySet::parse(&b, DEFAULT_MAX_JWKS_BYTES.max(b.len()))
            .map(|(k, _)| k)
            .map_err(|e| format!("{jwks}: {e:?}"))
    }) {
        Ok(k) => k,
        Err(e) => return fail(&e),
    };
    let token = match read_token(token_arg) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let account: Option<Map<String, Value>> = match opts.get("--account").copied().unwrap_or("{}") {
        "none" => None,
        text => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Some(m),
            _ => return fail("--account takes a JSON object, or none"),
        },
    };
    // An empty --token sends none (the request's own -H headers may carry a credential).
    if !token.is_empty() {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    let authority = headers
        .iter()
        .find(|(k, _)| k == "host" || k == ":authority")
        .map_or("localhost".to_string(), |(_, v)| v.clone());
    let request_id = opts
        .get("--request-id")
        .map_or(String::new(), |s| s.to_string());
    if !request_id.is_empty() {
        headers.push(("x-request-id".into(), request_id.clone()));
    }
    let req = Request {
        method: method.clone(),
        path: path.clone(),
        authority,
        route_name: opts.get("--route").map(|r| r.to_string()),
        request_id,
        headers: Headers::from_pairs(headers),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let e = explain(&cfg, &keys, &RustBackend, account.as_ref(), &req, now);
    if json {
        println!("{}", e.to_json());
    } else {
        print!("{}", e.to_text());
    }
    ExitCode::SUCCESS
}
