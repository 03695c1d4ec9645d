//! Sender-constrained tokens in the real Envoy. DPoP (RFC 9449) at `--concurrency 4`: a
//! valid proof; the same proof replayed on the same and on other workers; proofs for
//! another method, path, host, query, token, time or key; private, unsigned and HMAC
//! proofs; two proofs; the downgrade to `Bearer`; a full replay store. Certificate-bound
//! tokens (RFC 8705) on a TLS listener with client certificates this test makes: the right
//! certificate, another one, none; and the forwarded-certificate mode behind a front proxy.

use crate::common::*;
use crate::support::idp::{dpop_proof, jkt, proof_jwk};
use serde_json::{json, Value};
use sha2::Digest;
use std::path::Path;
use std::process::Command;

const WORKERS: usize = 4;
const DPOP_ISS: &str = "https://dpop.test";
const TINY_ISS: &str = "https://tiny.test";
const DPOP_SECRET: &str = "dpop-provider-secret-for-the-e2e-tests-0123456789";
const PATH: &str = "/v1/things";
/// What Envoy sees for the harness's plain-HTTP requests (`host: localhost`).
const HTU: &str = "http://localhost/v1/things";
const CHALLENGE: Option<&str> =
    Some(r#"DPoP error="invalid_dpop_proof", algs="ES256 RS256 PS256 EdDSA""#);

/// A provider of `iss` (HS256, its own secret) with these extra members.
fn provider(name: &str, iss: &str, extra: Value) -> Value {
    let mut p = json!({"name": name, "issuer": iss, "algorithms": ["HS256"],
                       "secret": {"env": "DPOP_SECRET"}});
    if let (Some(o), Value::Object(add)) = (p.as_object_mut(), extra) {
        o.extend(add);
    }
    p
}

/// The suites' configuration with `extra` providers first (the suites' `sdk` provider has
/// no issuer: placed before them it would judge their HS256 tokens); the key thumbprint
/// is forwarded.
fn config(extra: Vec<Value>) -> Value {
    let mut c = plugin(vec![]);
    if let Some(ps) = c["providers"].as_array_mut() {
        ps.splice(0..0, extra);
    }
    c["forward"]["headers"]["x-auth-jkt"] = json!("/cnf/jkt");
    c
}

fn start(config: Value, adjust: impl FnOnce(&mut Options)) -> Stack {
    let jwks_server = JwksServer::start(0, JwksMode::Serve(jwks(&[&keys().0]))).expect("jwks");
    Stack::with_options(config, jwks_server, |o| {
        o.env.push(("DPOP_SECRET".into(), DPOP_SECRET.into()));
        adjust(o);
    })
}

/// A token of `iss` with `cnf` (none when `Null`), valid for ten minutes.
fn token_of(iss: &str, cnf: Value) -> String {
    let mut c = claims(iss, AUD, "user-1", 600, json!({}));
    if !cnf.is_null() {
        c["cnf"] = cnf;
    }
    mint_hs256(DPOP_SECRET.as_bytes(), &c)
}

/// Counters reach Envoy on the VMs' ticks: wait for the next ones.
fn flushed() {
    std::thread::sleep(std::time::Duration::from_millis(600));
}

fn dpop_headers<'a>(auth: &'a str, proof: &'a str) -> [(&'a str, &'a str); 2] {
    [("authorization", auth), ("dpop", proof)]
}

#[test]
fn dpop_proofs_are_checked_and_accepted_once_per_process() {
    let stack = start(
        config(vec![
            provider("dpop", DPOP_ISS, json!({"dpop": {"mode": "required"}})),
            provider(
                "tiny",
                TINY_ISS,
                json!({"dpop": {"mode": "required", "replay_entries": 128}}),
            ),
        ]),
        |o| o.concurrency = WORKERS,
    );
    let e = &stack.envoy;
    let key = EcSigner::generate("client", "ES256");
    let thumbprint = jkt(&proof_jwk(&key));
    let tok = token_of(DPOP_ISS, json!({"jkt": thumbprint}));
    let auth = format!("DPoP {tok}");
    let t = now();

    // A valid proof: the upstream gets the thumbprint, never the proof.
    let p = dpop_proof(&key, "GET", HTU, &tok, t, "first");
    let r = e.get(PATH, &dpop_headers(&auth, &p));
    assert_eq!(r.status, 200, "valid proof: {}", r.body);
    assert_eq!(
        r.upstream_header("x-auth-jkt").as_deref(),
        Some(&*thumbprint)
    );
    assert_eq!(
        r.upstream_header("dpop"),
        None,
        "the DPoP header is removed"
    );

    // The same proof again, twelve times on new connections (spread over the workers).
    for i in 0..12 {
        let r = e.get(PATH, &dpop_headers(&auth, &p));
        expect(&format!("replay {i}"), &r, 401, Some(INVALID), CHALLENGE);
    }
    flushed();
    // The token was verified on one worker; at least one replay came to another worker
    // (it took the verdict from the process) and was refused there too.
    assert!(
        e.filter_stat("token_cache_shared_hits") >= 1,
        "a replay reached another worker"
    );
    assert_eq!(e.filter_stat("provider.dpop.dpop_proofs_accepted"), 1);
    assert_eq!(e.filter_stat("provider.dpop.dpop_proofs_replayed"), 12);

    // Every check, each with a fresh jti.
    let other = EcSigner::generate("thief", "ES256");
    let other_token = token_of(DPOP_ISS, json!({"jkt": thumbprint, "sub": "user-2"}));
    let query_proof = dpop_proof(&key, "GET", &format!("{HTU}?page=2"), &tok, t, "q");
    let mut private = proof_jwk(&key);
    private["d"] = json!(b64([1u8; 32]));
    let body = |jti: &str| {
        json!({"jti": jti, "htm": "GET", "htu": HTU, "iat": t,
               "ath": b64(sha2::Sha256::digest(&tok))})
    };
    let b64j = |v: &Value| b64(v.to_string());
    let hmac_proof = {
        let input = format!(
            "{}.{}",
            b64j(
                &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64(DPOP_SECRET)}})
            ),
            b64j(&body("hs"))
        );
        format!(
            "{input}.{}",
            b64(crate::support::idp::hmac(DPOP_SECRET.as_bytes(), &input))
        )
    };
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "POST proof for GET",
            PATH,
            dpop_proof(&key, "POST", HTU, &tok, t, "m"),
        ),
        (
            "another path",
            PATH,
            dpop_proof(&key, "GET", "http://localhost/v1/other", &tok, t, "p"),
        ),
        (
            "another host",
            PATH,
            dpop_proof(&key, "GET", "http://evil.test/v1/things", &tok, t, "h"),
        ),
        ("query added to the proof", "/v1/things?page=2", query_proof),
        (
            "ath of another token",
            PATH,
            dpop_proof(&key, "GET", HTU, &other_token, t, "a"),
        ),
        (
            "stale iat",
            PATH,
            dpop_proof(&key, "GET", HTU, &tok, t - 120, "s"),
        ),
        (
            "future iat",
            PATH,
            dpop_proof(&key, "GET", HTU, &tok, t + 120, "f"),
        ),
        (
            "another key",
            PATH,
            dpop_proof(&other, "GET", HTU, &tok, t, "k"),
        ),
        (
            "private key in jwk",
            PATH,
            key.sign_jws(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
                &body("d"),
            ),
        ),
        (
            "alg none",
            PATH,
            format!(
                "{}.{}.",
                b64j(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": proof_jwk(&key)})),
                b64j(&body("n"))
            ),
        ),
        ("HS256 proof", PATH, hmac_proof),
    ];
    for (case, path, proof) in &cases {
        let r = e.get(path, &dpop_headers(&auth, proof));
        expect(case, &r, 401, Some(INVALID), CHALLENGE);
    }
    // A query on the request is not part of htu: a proof without it passes.
    let p = dpop_proof(&key, "GET", HTU, &tok, t, "query-ok");
    let r = e.get("/v1/things?page=2", &dpop_headers(&auth, &p));
    assert_eq!(r.status, 200, "query on the request: {}", r.body);

    // Two DPoP headers, even two copies of one fresh proof.
    let p = dpop_proof(&key, "GET", HTU, &tok, t, "two");
    let r = e.get(
        PATH,
        &[("authorization", &auth), ("dpop", &p), ("dpop", &p)],
    );
    expect("two proofs", &r, 401, Some(INVALID), CHALLENGE);
    // The downgrade: the bound token as Bearer, with its proof.
    let bearer = format!("Bearer {tok}");
    let p = dpop_proof(&key, "GET", HTU, &tok, t, "down");
    let r = e.get(PATH, &[("authorization", &bearer), ("dpop", &p)]);
    expect("downgrade to Bearer", &r, 401, Some(INVALID), CHALLENGE);
    // A token without cnf.jkt where DPoP is required.
    let plain = token_of(DPOP_ISS, Value::Null);
    let p = dpop_proof(&key, "GET", HTU, &plain, t, "plain");
    let r = e.get(PATH, &dpop_headers(&format!("DPoP {plain}"), &p));
    expect("unbound token", &r, 401, Some(INVALID), CHALLENGE);

    // The smallest store (128 entries, one bucket): filled, it refuses new proofs and
    // still every replay.
    let tiny = token_of(TINY_ISS, json!({"jkt": thumbprint}));
    let tiny_auth = format!("DPoP {tiny}");
    let mut accepted = vec![];
    for i in 0..160 {
        let p = dpop_proof(&key, "GET", HTU, &tiny, t, &format!("fill-{i}"));
        let r = e.get(PATH, &dpop_headers(&tiny_auth, &p));
        match r.status {
            200 => accepted.push(p),
            _ => expect("store full", &r, 401, Some(INVALID), CHALLENGE),
        }
    }
    assert!(
        (1..=128).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );
    flushed();
    let full = e.filter_stat("provider.tiny.dpop_replay_store_full");
    assert_eq!(full, 160 - accepted.len() as u64, "every refusal counted");
    for p in &accepted {
        let r = e.get(PATH, &dpop_headers(&tiny_auth, p));
        expect(
            "replay into a full store",
            &r,
            401,
            Some(INVALID),
            CHALLENGE,
        );
    }
    assert!(e.log_contains("DPoP replay store of provider tiny cannot take a proof"));
    assert!(!e.log_contains(&tok), "the token is never logged");
}

// --- Certificate-bound tokens ------------------------------------------------------------

/// Runs openssl in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the CLI) is needed to make test certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for `localhost` and client certificates `a` and `b`, all
/// P-256 and valid for a day, in a fresh directory.
fn certificates() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("bearer-guard-mtls-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cert dir");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=bearer-guard test CA",
    ]);
    openssl(&dir, &ca);
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\n").expect("ext");
    for name in ["server", "a", "b"] {
        let mut req = vec!["req"];
        req.extend(ec);
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(&dir, &req);
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "1",
        ];
        if name == "server" {
            sign.extend(["-extfile", "server.ext"]);
        }
        openssl(&dir, &sign);
    }
    dir
}

/// The SHA-256 of a PEM certificate's DER.
fn der_sha256(pem: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(pem).expect("pem");
    let der = bearer_guard::pem_certificate_der(&text).expect("a PEM certificate");
    sha2::Sha256::digest(der).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET https://localhost:<port>/v1/things` with `token` and the client certificate
/// `client` (none if `None`) and `extra` headers (`name: value`), by curl: status, body
/// and `www-authenticate`.
fn curl(
    dir: &Path,
    port: u16,
    token: &str,
    client: Option<&str>,
    extra: &[String],
) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    for h in extra {
        cmd.args(["-H", h]);
    }
    cmd.current_dir(dir).args([
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        "ca.pem",
        "-D",
        "-",
        "-H",
        &format!("authorization: Bearer {token}"),
        &format!("https://localhost:{port}{PATH}"),
    ]);
    if let Some(c) = client {
        cmd.args(["--cert", &format!("{c}.pem"), "--key", &format!("{c}.key")]);
    }
    let out = cmd.output().expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let www = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("www-authenticate:")
                .then(|| l.split_once(':').map_or("", |(_, v)| v.trim()).to_string())
        })
        .unwrap_or_default();
    (status, body.to_string(), www)
}

#[test]
fn certificate_bound_tokens_need_the_connection_s_client_certificate() {
    let dir = certificates();
    let mtls = provider(
        "mtls",
        DPOP_ISS,
        json!({"mtls_binding": {"mode": "required"}}),
    );
    let files = |f: &str| dir.join(f).to_string_lossy().to_string();
    // Client certificates are asked for and validated against the test CA; a connection
    // without one is let through the handshake, so the filter's own check is what refuses.
    let tls = json!({"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": false,
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": files("server.pem")},
                                  "private_key": {"filename": files("server.key")}}],
            "validation_context": {"trusted_ca": {"filename": files("ca.pem")}}}}});
    let stack = start(config(vec![mtls]), |o| {
        o.concurrency = 2;
        o.transport_socket = Some(tls);
        o.hcm = vec![("forward_client_cert_details", json!("FORWARD_ONLY"))];
    });
    let port = stack.envoy.port;
    let bound = token_of(
        DPOP_ISS,
        json!({"x5t#S256": b64(der_sha256(&dir.join("a.pem")))}),
    );
    let (status, body, _) = curl(&dir, port, &bound, Some("a"), &[]);
    assert_eq!(status, 200, "the right certificate: {body}");
    let www = r#"Bearer error="invalid_token""#;
    for (case, client) in [("another certificate", Some("b")), ("no certificate", None)] {
        let (status, body, got) = curl(&dir, port, &bound, client, &[]);
        assert_eq!((status, &*body, &*got), (401, INVALID, www), "{case}");
    }
    // Required: an unbound token is refused even over a certificate.
    let plain = token_of(DPOP_ISS, Value::Null);
    let (status, body, got) = curl(&dir, port, &plain, Some("a"), &[]);
    assert_eq!(
        (status, &*body, &*got),
        (401, INVALID, www),
        "unbound token"
    );
    // Envoy passes a client-sent x-forwarded-client-cert on here (FORWARD_ONLY); no
    // provider trusts it, so it proves nothing and never reaches the upstream.
    let forged = vec![format!(
        "x-forwarded-client-cert: Hash={}",
        hex(&der_sha256(&dir.join("a.pem")))
    )];
    let (status, body, got) = curl(&dir, port, &bound, None, &forged);
    assert_eq!(
        (status, &*body, &*got),
        (401, INVALID, www),
        "forged header"
    );
    let (status, body, _) = curl(&dir, port, &bound, Some("a"), &forged);
    assert_eq!(status, 200, "{body}");
    let echoed: Value = serde_json::from_str(&body).expect("echo JSON");
    assert_eq!(
        echoed["headers"]["x-forwarded-client-cert"],
        Value::Null,
        "stripped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_forwarded_certificate_counts_only_when_trusted() {
    let der_a = sha2::Sha256::digest(b"front proxy's client A").to_vec();
    let der_b = sha2::Sha256::digest(b"client B").to_vec();
    let trusted = provider(
        "front",
        DPOP_ISS,
        json!({"mtls_binding": {"mode": "required", "trust_forwarded_client_cert": true}}),
    );
    // Behind a front proxy Envoy must pass the header on (its default sanitizes it); the
    // harness's client is not on mTLS, so always (a front proxy on mTLS: FORWARD_ONLY).
    let stack = start(config(vec![trusted]), |o| {
        o.hcm = vec![("forward_client_cert_details", json!("ALWAYS_FORWARD_ONLY"))];
    });
    let e = &stack.envoy;
    let tok = token_of(DPOP_ISS, json!({"x5t#S256": b64(&der_a)}));
    let auth = format!("Bearer {tok}");
    let xfcc = |h: &[u8]| format!("By=spiffe://front;Hash={};Subject=\"CN=a\"", hex(h));
    let r = e.get(
        PATH,
        &[
            ("authorization", &auth),
            ("x-forwarded-client-cert", &xfcc(&der_a)),
        ],
    );
    assert_eq!(r.status, 200, "the forwarded certificate: {}", r.body);
    let r = e.get(
        PATH,
        &[
            ("authorization", &auth),
            ("x-forwarded-client-cert", &xfcc(&der_b)),
        ],
    );
    expect(
        "another forwarded certificate",
        &r,
        401,
        Some(INVALID),
        WWW_INVALID,
    );
    let r = e.get(PATH, &[("authorization", &auth)]);
    expect(
        "no forwarded certificate",
        &r,
        401,
        Some(INVALID),
        WWW_INVALID,
    );
}

/// `bearer-guard explain` on a configuration file: its JSON explanation.
fn explain(config: &Path, token: &str, extra: &[&str], method: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_bearer-guard"))
        .env("DPOP_SECRET", DPOP_SECRET)
        .args(["explain", "--json", "--config"])
        .arg(config)
        .args(["--token", token])
        .args(extra)
        .args([method, PATH])
        .output()
        .expect("explain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("explain --json")
}

/// The explanation's token step `name`: (ok, detail).
fn step(e: &Value, name: &str) -> (bool, String) {
    let steps = e["token"].as_array().cloned().unwrap_or_default();
    steps
        .iter()
        .find(|s| s["step"] == name)
        .map(|s| {
            (
                s["ok"].as_bool().unwrap_or(false),
                s["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_else(|| panic!("no step {name} in {e}"))
}

#[test]
fn explain_shows_the_proof_and_the_binding_checks() {
    let dir = certificates();
    let bound = |cnf: Value| token_of(DPOP_ISS, cnf);
    let config = dir.join("config.json");
    let write = |doc: Value| std::fs::write(&config, doc.to_string()).expect("config");

    // DPoP: the proof's checks, and the reply Envoy would give.
    write(
        json!({"providers": [provider("dpop", DPOP_ISS, json!({"dpop": {"mode": "required"}}))]}),
    );
    let key = EcSigner::generate("client", "ES256");
    let tok = bound(json!({"jkt": jkt(&proof_jwk(&key))}));
    let p = dpop_proof(&key, "GET", HTU, &tok, now(), "explain");
    let proof_header = format!("DPoP: {p}");
    let args = ["-H", "host: localhost", "-H", &proof_header];
    let e = explain(&config, &tok, &args, "GET");
    assert_eq!(e["status"], 200, "{e}");
    assert!(step(&e, "dpop").0, "{e}");
    assert_eq!(
        step(&e, "credential"),
        (true, "one token, from Authorization: DPoP".into())
    );
    let e = explain(&config, &tok, &args, "POST");
    assert_eq!(e["status"], 401, "{e}");
    assert_eq!(
        step(&e, "dpop"),
        (false, "proof htm is not the request method".into())
    );

    // Certificate binding: the client certificate given as a PEM file.
    write(json!({"providers": [provider("mtls", DPOP_ISS,
                                        json!({"mtls_binding": {"mode": "required"}}))]}));
    let tok = bound(json!({"x5t#S256": b64(der_sha256(&dir.join("a.pem")))}));
    let cert = |name: &str| dir.join(name).to_string_lossy().to_string();
    let e = explain(&config, &tok, &["--client-cert", &cert("a.pem")], "GET");
    assert_eq!(e["status"], 200, "{e}");
    assert_eq!(
        step(&e, "certificate binding"),
        (true, "cnf.x5t#S256: the client certificate's hash".into())
    );
    let e = explain(&config, &tok, &["--client-cert", &cert("b.pem")], "GET");
    assert_eq!(e["status"], 401, "{e}");
    assert!(!step(&e, "certificate binding").0, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
