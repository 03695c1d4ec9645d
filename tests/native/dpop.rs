//! Sender-constrained tokens in the VM core: DPoP proofs (RFC 9449) and certificate-bound
//! tokens (RFC 8705), several VMs on one store being several Envoy workers of one
//! process. Each attack test fails if the attack got through: a replay on the same or
//! another worker, a proof for another method, URI or token, a stale or future proof,
//! another key, a private key, `none` and HMAC proofs, two proofs, the downgrade to
//! `Bearer`, a full replay store; another certificate, none, a forged forwarded header.

use crate::support::fixtures::{claims_at_t0, ISS, SECRET, T0, T0_S};
use crate::support::idp::{b64, bare_jwk, dpop_proof, jkt, mint_hs256, proof_jwk, EcSigner};
use crate::vm::{fate, store, FakeHost};
use bearer_guard::RustBackend;
use bearer_guard::Store;
use bearer_guard::{Effect, Worker as Core};
use bearer_guard::{Headers, Request};
use serde_json::{json, Value};
use sha2::Digest;
use std::rc::Rc;
use std::sync::OnceLock;

const URL: &str = "https://api.test/v1/things";
const NOW: i64 = T0_S;
const INVALID: &str = r#"{"detail":"Invalid or expired token"}"#;
const CHALLENGE: &str = r#"DPoP error="invalid_dpop_proof", algs="ES256 RS256 PS256 EdDSA""#;

/// The client's proof key (P-256).
fn client() -> &'static EcSigner {
    static KEY: OnceLock<EcSigner> = OnceLock::new();
    KEY.get_or_init(|| EcSigner::from_secret("c", "ES256", &[3; 32]).expect("key"))
}

/// Another client's key.
fn thief() -> &'static EcSigner {
    static KEY: OnceLock<EcSigner> = OnceLock::new();
    KEY.get_or_init(|| EcSigner::from_secret("t", "ES256", &[5; 32]).expect("key"))
}

/// One HS256 provider with `dpop` and `mtls_binding` as given (absent when `Null`); the
/// key's thumbprint and the subject are forwarded.
fn plugin(dpop: Value, mtls: Value) -> Value {
    let mut p = json!({"name": "idp", "issuer": ISS, "algorithms": ["HS256"],
                       "secret": {"env": "S"}});
    if !dpop.is_null() {
        p["dpop"] = dpop;
    }
    if !mtls.is_null() {
        p["mtls_binding"] = mtls;
    }
    json!({"providers": [p], "forward": {"headers": {"x-auth-subject": "sub",
                                                    "x-auth-jkt": "/cnf/jkt"}}})
}

fn env(name: &str) -> Option<String> {
    (name == "S").then(|| SECRET.to_string())
}

/// A VM of `plugin` on store `s`, configured at [`T0`].
fn worker(s: &Rc<dyn Store>, plugin: &Value) -> Core {
    let cfg = bearer_guard::parse_config(plugin.to_string().as_bytes(), &env).expect("config");
    let mut vm = Core::new(
        cfg,
        Box::new(RustBackend),
        Box::new(s.clone()),
        (T0, 1),
        crate::vm::entropy(),
    );
    vm.on_configure(T0);
    vm
}

/// Two workers of one process.
fn pair(plugin: &Value) -> (Core, Core) {
    let s: Rc<dyn Store> = store();
    (worker(&s, plugin), worker(&s, plugin))
}

/// A token valid at [`T0`] with `cnf` as given (none when `Null`).
fn token(cnf: Value) -> String {
    let mut c = claims_at_t0(ISS, "user_ada", json!({}));
    c["iat"] = json!(NOW - 10);
    if !cnf.is_null() {
        c["cnf"] = cnf;
    }
    mint_hs256(SECRET.as_bytes(), &c)
}

/// A token bound to the client's key.
fn bound() -> String {
    token(json!({"jkt": jkt(&proof_jwk(client()))}))
}

/// A proof by the client for `GET URL` at `NOW` with `jti`.
fn proof(tok: &str, jti: &str) -> String {
    dpop_proof(client(), "GET", URL, tok, NOW, jti)
}

/// `GET https://api.test/v1/things` with these headers.
fn get(headers: &[(&str, &str)]) -> Request {
    let mut all = vec![(":scheme", "https")];
    all.extend_from_slice(headers);
    Request {
        method: "GET".into(),
        path: "/v1/things".into(),
        authority: "api.test".into(),
        request_id: "req".into(),
        headers: Headers::from_pairs(all),
        ..Default::default()
    }
}

/// A DPoP request: `Authorization: DPoP <tok>` and one `DPoP` header.
fn dpop_request(tok: &str, proof: &str) -> Request {
    get(&[("authorization", &format!("DPoP {tok}")), ("dpop", proof)])
}

/// What the VM did with the request, at `now` ms.
fn send(vm: &mut Core, now: u64, context: u32, req: Request) -> Vec<Effect> {
    vm.on_request(now, context, req, &mut FakeHost::default())
}

/// The reply of `context`: status, body, `www-authenticate`.
fn reply(effects: &[Effect]) -> Option<(u32, String, Option<String>)> {
    effects.iter().find_map(|e| match e {
        Effect::Reply { reply, .. } => Some((
            reply.status,
            reply.body.clone(),
            reply
                .headers
                .iter()
                .find(|(k, _)| *k == "www-authenticate")
                .map(|(_, v)| v.clone()),
        )),
        _ => None,
    })
}

/// The value the request's header `name` was set to (`Some(None)` if removed).
fn header_effect(effects: &[Effect], name: &str) -> Option<Option<String>> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Header { name: n, value, .. } if n == name => Some(value.clone()),
        _ => None,
    })
}

/// Asserts the request went upstream.
fn passes(effects: &[Effect], context: u32) {
    assert_eq!(
        fate(effects, context).as_deref(),
        Some("continue"),
        "{:?}",
        reply(effects)
    );
}

/// Asserts the DPoP refusal: 401, the contract's body and the RFC 9449 challenge.
fn refused_proof(effects: &[Effect]) {
    assert_eq!(
        reply(effects),
        Some((401, INVALID.into(), Some(CHALLENGE.into())))
    );
}

fn required() -> Value {
    json!({"mode": "required"})
}

#[test]
fn a_valid_proof_passes_and_its_header_never_reaches_the_upstream() {
    let (mut a, _) = pair(&plugin(required(), Value::Null));
    let tok = bound();
    let out = send(&mut a, T0, 1, dpop_request(&tok, &proof(&tok, "j1")));
    passes(&out, 1);
    assert_eq!(header_effect(&out, "dpop"), Some(None), "DPoP removed");
    assert_eq!(
        header_effect(&out, "x-auth-jkt"),
        Some(Some(jkt(&proof_jwk(client())))),
        "the thumbprint is forwarded"
    );
    assert_eq!(
        header_effect(&out, "x-auth-subject"),
        Some(Some("user_ada".into()))
    );
}

#[test]
fn a_proof_is_accepted_once_per_process_on_any_worker() {
    let (mut a, mut b) = pair(&plugin(required(), Value::Null));
    let tok = bound();
    let p = proof(&tok, "once");
    passes(&send(&mut a, T0, 1, dpop_request(&tok, &p)), 1);
    refused_proof(&send(&mut a, T0 + 1, 2, dpop_request(&tok, &p)));
    refused_proof(&send(&mut b, T0 + 2, 3, dpop_request(&tok, &p)));
    // Still refused at the end of the proof's window (requests are judged at the VM's
    // clock: its last tick).
    b.on_tick(T0 + 60_000, &mut FakeHost::default());
    refused_proof(&send(&mut b, T0 + 60_000, 4, dpop_request(&tok, &p)));
    // A new proof (another jti) of the same key passes on either worker.
    passes(
        &send(&mut b, T0 + 3, 5, dpop_request(&tok, &proof(&tok, "twice"))),
        5,
    );
}

#[test]
fn the_replay_key_is_the_thumbprint_jti_and_htu_not_jti_alone() {
    let s: Rc<dyn Store> = store();
    let mut a = worker(&s, &plugin(required(), Value::Null));
    let tok = bound();
    passes(
        &send(&mut a, T0, 1, dpop_request(&tok, &proof(&tok, "j"))),
        1,
    );
    // The same jti from another key (its own token) is another proof: it passes.
    let other = token(json!({"jkt": jkt(&proof_jwk(thief()))}));
    let theirs = dpop_proof(thief(), "GET", URL, &other, NOW, "j");
    passes(&send(&mut a, T0, 2, dpop_request(&other, &theirs)), 2);
}

#[test]
fn proofs_for_another_request_token_time_or_key_are_refused() {
    let (mut a, _) = pair(&plugin(required(), Value::Null));
    let tok = bound();
    let k = client();
    let cases: Vec<(&str, String)> = vec![
        ("POST", dpop_proof(k, "POST", URL, &tok, NOW, "m")),
        (
            "path",
            dpop_proof(k, "GET", "https://api.test/v1/other", &tok, NOW, "p"),
        ),
        (
            "host",
            dpop_proof(k, "GET", "https://evil.test/v1/things", &tok, NOW, "h"),
        ),
        (
            "scheme",
            dpop_proof(k, "GET", "http://api.test/v1/things", &tok, NOW, "s"),
        ),
        (
            "port",
            dpop_proof(k, "GET", "https://api.test:8443/v1/things", &tok, NOW, "o"),
        ),
        (
            "ath",
            dpop_proof(k, "GET", URL, &bound_other_sub(), NOW, "a"),
        ),
        ("stale", dpop_proof(k, "GET", URL, &tok, NOW - 61, "st")),
        ("future", dpop_proof(k, "GET", URL, &tok, NOW + 61, "fu")),
        ("other key", dpop_proof(thief(), "GET", URL, &tok, NOW, "k")),
    ];
    for (i, (what, p)) in cases.into_iter().enumerate() {
        let ctx = 10 + i as u32;
        let out = send(&mut a, T0, ctx, dpop_request(&tok, &p));
        assert_eq!(
            reply(&out),
            Some((401, INVALID.into(), Some(CHALLENGE.into()))),
            "{what}"
        );
    }
    // The control: the same checks accept the right proof.
    passes(
        &send(&mut a, T0, 99, dpop_request(&tok, &proof(&tok, "ok"))),
        99,
    );
}

/// A token for another subject bound to the same key (a proof made for it has another `ath`).
fn bound_other_sub() -> String {
    let mut c = claims_at_t0(ISS, "user_bob", json!({}));
    c["iat"] = json!(NOW - 10);
    c["cnf"] = json!({"jkt": jkt(&proof_jwk(client()))});
    mint_hs256(SECRET.as_bytes(), &c)
}

#[test]
fn the_request_uri_is_compared_normalized_without_query_or_fragment() {
    let (mut a, _) = pair(&plugin(required(), Value::Null));
    let tok = bound();
    let k = client();
    // Upper-case scheme and host and the default port name the same URI.
    let p = dpop_proof(k, "GET", "HTTPS://API.test:443/v1/things", &tok, NOW, "n1");
    passes(&send(&mut a, T0, 1, dpop_request(&tok, &p)), 1);
    // A request with a query: the proof's htu has none.
    let mut req = dpop_request(&tok, &proof(&tok, "n2"));
    req.path = "/v1/things?page=2".into();
    passes(&send(&mut a, T0, 2, req), 2);
    // A proof whose htu carries the query is for another URI.
    let p = dpop_proof(k, "GET", &format!("{URL}?page=2"), &tok, NOW, "n3");
    let mut req = dpop_request(&tok, &p);
    req.path = "/v1/things?page=2".into();
    refused_proof(&send(&mut a, T0, 3, req));
}

#[test]
fn the_proof_window_is_max_age_in_the_past_and_the_clock_skew_in_the_future() {
    let (mut a, _) = pair(&plugin(required(), Value::Null));
    let tok = bound();
    let k = client();
    for (iat, ok) in [
        (NOW - 60, true),
        (NOW - 61, false),
        (NOW + 60, true),
        (NOW + 61, false),
    ] {
        let p = dpop_proof(k, "GET", URL, &tok, iat, &format!("w{iat}"));
        let out = send(&mut a, T0, 1, dpop_request(&tok, &p));
        let went = fate(&out, 1).as_deref() == Some("continue");
        assert_eq!(went, ok, "iat {}", iat - NOW);
    }
}

/// A proof with this header and claims, signed by the client.
fn forged(header: Value, claims: Value) -> String {
    client().sign_jws(&header, &claims)
}

fn proof_claims(tok: &str, jti: &str) -> Value {
    json!({"jti": jti, "htm": "GET", "htu": URL, "iat": NOW,
           "ath": b64(sha2::Sha256::digest(tok))})
}

#[test]
fn malformed_private_unsigned_and_hmac_proofs_are_refused() {
    let (mut a, _) = pair(&plugin(required(), Value::Null));
    let tok = bound();
    let jwk = proof_jwk(client());
    let mut private = jwk.clone();
    private["d"] = json!(b64([3u8; 32]));
    let unsigned = |h: Value| {
        format!(
            "{}.{}.",
            b64(h.to_string()),
            b64(proof_claims(&tok, "u").to_string())
        )
    };
    let hmac_proof = {
        let h = json!({"typ": "dpop+jwt", "alg": "HS256",
                       "jwk": {"kty": "oct", "k": b64(SECRET)}});
        let input = format!(
            "{}.{}",
            b64(h.to_string()),
            b64(proof_claims(&tok, "hs").to_string())
        );
        format!(
            "{input}.{}",
            b64(crate::support::idp::hmac(SECRET.as_bytes(), &input))
        )
    };
    let cases = vec![
        (
            "private key",
            forged(
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
                proof_claims(&tok, "d"),
            ),
        ),
        (
            "typ JWT",
            forged(
                json!({"typ": "JWT", "alg": "ES256", "jwk": jwk}),
                proof_claims(&tok, "t"),
            ),
        ),
        (
            "no jwk",
            forged(
                json!({"typ": "dpop+jwt", "alg": "ES256"}),
                proof_claims(&tok, "n"),
            ),
        ),
        (
            "no jti",
            forged(
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
                json!({"htm": "GET", "htu": URL, "iat": NOW,
                       "ath": b64(sha2::Sha256::digest(&tok))}),
            ),
        ),
        (
            "no ath",
            forged(
                json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
                json!({"jti": "x", "htm": "GET", "htu": URL, "iat": NOW}),
            ),
        ),
        (
            "alg none",
            unsigned(json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk})),
        ),
        ("HS256", hmac_proof),
        ("not a JWT", "dpop".to_string()),
    ];
    for (i, (what, p)) in cases.into_iter().enumerate() {
        let out = send(&mut a, T0, 10 + i as u32, dpop_request(&tok, &p));
        assert_eq!(
            reply(&out),
            Some((401, INVALID.into(), Some(CHALLENGE.into()))),
            "{what}"
        );
    }
}

#[test]
fn one_proof_exactly_and_no_downgrade_to_bearer() {
    let plugin = plugin(required(), Value::Null);
    let (mut a, _) = pair(&plugin);
    let tok = bound();
    let p = proof(&tok, "two");
    let auth = format!("DPoP {tok}");
    // Two DPoP headers (even two copies of a valid proof).
    let out = send(
        &mut a,
        T0,
        1,
        get(&[("authorization", &auth), ("dpop", &p), ("dpop", &p)]),
    );
    refused_proof(&out);
    // No proof.
    refused_proof(&send(&mut a, T0, 2, get(&[("authorization", &auth)])));
    // The bound token as Bearer, with and without its proof.
    let bearer = format!("Bearer {tok}");
    refused_proof(&send(&mut a, T0, 3, get(&[("authorization", &bearer)])));
    refused_proof(&send(
        &mut a,
        T0,
        4,
        get(&[("authorization", &bearer), ("dpop", &proof(&tok, "b"))]),
    ));
    // An unbound token as DPoP, and as Bearer where DPoP is required.
    let plain = token(Value::Null);
    let p = proof(&plain, "u");
    refused_proof(&send(&mut a, T0, 5, dpop_request(&plain, &p)));
    let bearer = format!("Bearer {plain}");
    refused_proof(&send(&mut a, T0, 6, get(&[("authorization", &bearer)])));
    // No credential at all: the contract's missing-token reply.
    let out = send(&mut a, T0, 7, get(&[]));
    assert_eq!(
        reply(&out).map(|(s, b, _)| (s, b)),
        Some((401, r#"{"detail":"Requires authentication"}"#.into()))
    );
}

#[test]
fn allowed_mode_takes_bearer_tokens_but_never_a_bound_one_as_bearer() {
    let (mut a, _) = pair(&plugin(json!({"mode": "allowed"}), Value::Null));
    let plain = token(Value::Null);
    let bearer = format!("Bearer {plain}");
    passes(&send(&mut a, T0, 1, get(&[("authorization", &bearer)])), 1);
    let tok = bound();
    let bearer = format!("Bearer {tok}");
    refused_proof(&send(&mut a, T0, 2, get(&[("authorization", &bearer)])));
    passes(
        &send(&mut a, T0, 3, dpop_request(&tok, &proof(&tok, "a"))),
        3,
    );
}

#[test]
fn a_provider_without_dpop_refuses_the_dpop_scheme() {
    let (mut a, _) = pair(&plugin(Value::Null, Value::Null));
    let tok = bound();
    // With no provider accepting DPoP the scheme is not a credential, as any unknown one.
    let out = send(&mut a, T0, 1, dpop_request(&tok, &proof(&tok, "x")));
    assert_eq!(
        reply(&out).map(|(s, b, _)| (s, b)),
        Some((401, r#"{"detail":"Requires authentication"}"#.into()))
    );
    // As today, a token with cnf is a bearer token for a provider without dpop.
    let bearer = format!("Bearer {tok}");
    passes(&send(&mut a, T0, 2, get(&[("authorization", &bearer)])), 2);
}

#[test]
fn a_full_replay_store_refuses_new_proofs_and_never_lets_a_replay_through() {
    let (mut a, mut b) = pair(&plugin(
        json!({"mode": "required", "replay_entries": 128}),
        Value::Null,
    ));
    let tok = bound();
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut warnings = 0;
    for i in 0..300u32 {
        let p = proof(&tok, &format!("fill-{i}"));
        let vm = if i % 2 == 0 { &mut a } else { &mut b };
        let out = send(vm, T0, i, dpop_request(&tok, &p));
        warnings += out
            .iter()
            .filter(|e| matches!(e, Effect::Log(_, line) if line.contains("replay store")))
            .count();
        if fate(&out, i).as_deref() == Some("continue") {
            accepted.push(p);
        } else {
            refused_proof(&out);
            refused += 1;
        }
    }
    assert!(
        accepted.len() <= 128,
        "at most the store's size: {}",
        accepted.len()
    );
    assert_eq!(accepted.len() + refused, 300);
    assert!(refused >= 172, "the rest refused: {refused}");
    assert_eq!(warnings, 2, "one warning per VM, not one per refusal");
    // Every accepted proof stays refused as a replay while the store is full.
    for (i, p) in accepted.iter().enumerate() {
        let out = send(&mut b, T0 + 1, 100 + i as u32, dpop_request(&tok, p));
        refused_proof(&out);
    }
    // After the window (max_age 60 s + 1) the slots free up and new proofs pass.
    let later = T0 + 62_000;
    a.on_tick(later, &mut FakeHost::default());
    let fresh = dpop_proof(client(), "GET", URL, &tok, NOW + 62, "after");
    passes(&send(&mut a, later, 200, dpop_request(&tok, &fresh)), 200);
}

#[test]
fn proof_keys_of_every_default_algorithm_verify() {
    use crate::support::idp::{EdSigner, Signer};
    let (mut a, _) = pair(&plugin(required(), Value::Null));
    let rsa = Signer::generate_bits("r", 2048);
    let ed = EdSigner::from_secret("e", &[9; 32]);
    let keys: Vec<(&str, Value)> = vec![
        ("RS256", bare_jwk(rsa.jwk())),
        ("PS256", bare_jwk(rsa.jwk())),
        ("EdDSA", bare_jwk(ed.jwk())),
    ];
    for (i, (alg, jwk)) in keys.into_iter().enumerate() {
        let tok = token(json!({"jkt": jkt(&jwk)}));
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
        let claims = proof_claims(&tok, &format!("alg-{i}"));
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = if alg == "EdDSA" {
            use ed25519_dalek::Signer as _;
            ed.1.sign(input.as_bytes()).to_bytes().to_vec()
        } else {
            rsa.sign_with(alg, &input)
        };
        let p = format!("{input}.{}", b64(sig));
        let ctx = i as u32 + 1;
        passes(&send(&mut a, T0, ctx, dpop_request(&tok, &p)), ctx);
    }
}

#[test]
fn algorithms_outside_the_configured_list_are_refused() {
    let dpop = json!({"mode": "required", "algorithms": ["EdDSA"]});
    let (mut a, _) = pair(&plugin(dpop, Value::Null));
    let tok = bound();
    let out = send(&mut a, T0, 1, dpop_request(&tok, &proof(&tok, "es")));
    assert_eq!(
        reply(&out),
        Some((
            401,
            INVALID.into(),
            Some(r#"DPoP error="invalid_dpop_proof", algs="EdDSA""#.into())
        ))
    );
}

#[test]
fn a_public_base_url_replaces_the_request_scheme_and_authority() {
    let dpop = json!({"mode": "required", "public_base_url": "https://Public.Example:443"});
    let (mut a, _) = pair(&plugin(dpop, Value::Null));
    let tok = bound();
    let p = dpop_proof(
        client(),
        "GET",
        "https://public.example/v1/things",
        &tok,
        NOW,
        "pub",
    );
    // Envoy saw plain HTTP for an internal authority.
    let mut req = dpop_request(&tok, &p);
    req.authority = "internal:8080".into();
    passes(&send(&mut a, T0, 1, req), 1);
    // A proof for the internal URI is for another URI.
    let p = dpop_proof(client(), "GET", URL, &tok, NOW, "int");
    refused_proof(&send(&mut a, T0, 2, dpop_request(&tok, &p)));
}

// --- Certificate-bound tokens ------------------------------------------------------------

const CERT_DER_A: &[u8] = b"certificate A (DER bytes as Envoy hashes them)";
const CERT_DER_B: &[u8] = b"certificate B";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token bound to the certificate of `der`.
fn cert_bound(der: &[u8]) -> String {
    token(json!({"x5t#S256": b64(sha2::Sha256::digest(der))}))
}

/// A bearer request over a connection whose client certificate is `der` (none if `None`).
fn over_tls(tok: &str, der: Option<&[u8]>, extra: &[(&str, &str)]) -> Request {
    let auth = format!("Bearer {tok}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    let mut req = get(&headers);
    req.peer_certificate_sha256 = der.map(|d| hex(&sha2::Sha256::digest(d)));
    req
}

fn invalid_token(effects: &[Effect]) {
    assert_eq!(
        reply(effects),
        Some((
            401,
            INVALID.into(),
            Some(r#"Bearer error="invalid_token""#.into())
        ))
    );
}

#[test]
fn a_certificate_bound_token_needs_its_own_certificate() {
    let (mut a, _) = pair(&plugin(Value::Null, required()));
    let tok = cert_bound(CERT_DER_A);
    passes(
        &send(&mut a, T0, 1, over_tls(&tok, Some(CERT_DER_A), &[])),
        1,
    );
    invalid_token(&send(&mut a, T0, 2, over_tls(&tok, Some(CERT_DER_B), &[])));
    invalid_token(&send(&mut a, T0, 3, over_tls(&tok, None, &[])));
    // Required: an unbound token is refused even with a certificate.
    let plain = token(Value::Null);
    invalid_token(&send(
        &mut a,
        T0,
        4,
        over_tls(&plain, Some(CERT_DER_A), &[]),
    ));
    // A client-sent forwarded certificate counts for nothing and is stripped.
    let xfcc = format!("Hash={}", hex(&sha2::Sha256::digest(CERT_DER_A)));
    let out = send(
        &mut a,
        T0,
        5,
        over_tls(&tok, None, &[("x-forwarded-client-cert", &xfcc)]),
    );
    invalid_token(&out);
    let out = send(
        &mut a,
        T0,
        6,
        over_tls(
            &tok,
            Some(CERT_DER_A),
            &[("x-forwarded-client-cert", &xfcc)],
        ),
    );
    passes(&out, 6);
    assert_eq!(header_effect(&out, "x-forwarded-client-cert"), Some(None));
}

#[test]
fn allowed_mode_takes_unbound_tokens() {
    let (mut a, _) = pair(&plugin(Value::Null, json!({"mode": "allowed"})));
    let plain = token(Value::Null);
    passes(&send(&mut a, T0, 1, over_tls(&plain, None, &[])), 1);
    let tok = cert_bound(CERT_DER_A);
    invalid_token(&send(&mut a, T0, 2, over_tls(&tok, None, &[])));
}

#[test]
fn a_trusted_forwarded_certificate_is_the_last_hop_s_hash() {
    let mtls = json!({"mode": "required", "trust_forwarded_client_cert": true});
    let (mut a, _) = pair(&plugin(Value::Null, mtls));
    let tok = cert_bound(CERT_DER_A);
    let (ha, hb) = (
        hex(&sha2::Sha256::digest(CERT_DER_A)),
        hex(&sha2::Sha256::digest(CERT_DER_B)),
    );
    let xfcc = format!(r#"By=spiffe://front;Hash={ha};Subject="CN=a,O=x""#);
    let out = send(
        &mut a,
        T0,
        1,
        over_tls(&tok, None, &[("x-forwarded-client-cert", &xfcc)]),
    );
    passes(&out, 1);
    // The last element is the hop the front proxy added; an earlier one (client-forged) is not.
    let chain = format!("Hash={ha},Hash={hb}");
    let out = send(
        &mut a,
        T0,
        2,
        over_tls(&tok, None, &[("x-forwarded-client-cert", &chain)]),
    );
    invalid_token(&out);
    // The connection's own certificate is not what this mode reads.
    invalid_token(&send(&mut a, T0, 3, over_tls(&tok, Some(CERT_DER_A), &[])));
    // Two headers: refused.
    let out = send(
        &mut a,
        T0,
        4,
        over_tls(
            &tok,
            None,
            &[
                ("x-forwarded-client-cert", &xfcc),
                ("x-forwarded-client-cert", &xfcc),
            ],
        ),
    );
    invalid_token(&out);
}

#[test]
fn both_bindings_on_one_provider_need_both_proofs() {
    let (mut a, _) = pair(&plugin(required(), required()));
    let jwk = proof_jwk(client());
    let tok = token(json!({"jkt": jkt(&jwk), "x5t#S256": b64(sha2::Sha256::digest(CERT_DER_A))}));
    let mut req = dpop_request(&tok, &proof(&tok, "both"));
    req.peer_certificate_sha256 = Some(hex(&sha2::Sha256::digest(CERT_DER_A)));
    passes(&send(&mut a, T0, 1, req), 1);
    let req = dpop_request(&tok, &proof(&tok, "nocert"));
    invalid_token(&send(&mut a, T0, 2, req));
}

#[test]
fn configuration_errors_name_the_field() {
    let cases = [
        (json!({"mode": "sometimes"}), "dpop.mode"),
        (json!({}), "dpop.mode"),
        (
            json!({"mode": "required", "algorithms": ["HS256"]}),
            "dpop.algorithms",
        ),
        (
            json!({"mode": "required", "max_age_s": 0}),
            "dpop.max_age_s",
        ),
        (
            json!({"mode": "required", "max_age_s": 601}),
            "dpop.max_age_s",
        ),
        (
            json!({"mode": "required", "replay_entries": 8}),
            "dpop.replay_entries",
        ),
        (
            json!({"mode": "required", "public_base_url": "ftp://x"}),
            "dpop.public_base_url",
        ),
        (
            json!({"mode": "required", "public_base_url": "https://x/path"}),
            "dpop.public_base_url",
        ),
        (json!({"mode": "required", "nonce": true}), "dpop"),
    ];
    for (dpop, field) in cases {
        let p = plugin(dpop.clone(), Value::Null);
        let err = bearer_guard::parse_config(p.to_string().as_bytes(), &env)
            .err()
            .unwrap_or_else(|| panic!("accepted {dpop}"));
        assert!(err.to_string().contains(field), "{dpop}: {err}");
    }
    let err = bearer_guard::parse_config(
        plugin(Value::Null, json!({"mode": "always"}))
            .to_string()
            .as_bytes(),
        &env,
    )
    .err()
    .unwrap_or_else(|| panic!("accepted mtls_binding.mode always"));
    assert!(err.to_string().contains("mtls_binding.mode"), "{err}");
}

#[test]
fn a_dpop_token_of_a_provider_without_dpop_is_refused_beside_one_with_it() {
    // Provider `idp` accepts DPoP; `plain` (another issuer, the same secret) does not.
    let mut p = plugin(required(), Value::Null);
    let mut other = p["providers"][0].clone();
    other["name"] = json!("plain");
    other["issuer"] = json!("https://plain.test");
    if let Some(o) = other.as_object_mut() {
        o.remove("dpop");
    }
    p["providers"]
        .as_array_mut()
        .expect("providers")
        .push(other);
    let (mut a, _) = pair(&p);
    let mut c = claims_at_t0("https://plain.test", "user_ada", json!({}));
    c["exp"] = json!(NOW + 60);
    c["cnf"] = json!({"jkt": jkt(&proof_jwk(client()))});
    let tok = mint_hs256(SECRET.as_bytes(), &c);
    let out = send(&mut a, T0, 1, dpop_request(&tok, &proof(&tok, "x")));
    assert_eq!(
        reply(&out),
        Some((
            401,
            INVALID.into(),
            Some(r#"Bearer error="invalid_token""#.into())
        ))
    );
}

/// `check_proof` directly: each refusal names its own reason, in the documented order.
#[test]
fn each_proof_check_refuses_with_its_own_reason() {
    use bearer_guard::{check_proof, ProofContext, ProofError, MAX_JTI_BYTES, MAX_PROOF_BYTES};
    let cfg =
        bearer_guard::parse_config(plugin(required(), Value::Null).to_string().as_bytes(), &env)
            .unwrap_or_else(|e| panic!("{e}"));
    let settings = cfg.providers[0].dpop.clone().expect("dpop");
    let tok = bound();
    let jkt_client = jkt(&proof_jwk(client()));
    let ctx = ProofContext {
        method: "GET",
        htu: URL,
        token: &tok,
        jkt: &jkt_client,
        now_s: NOW,
        skew_s: 60,
    };
    let check = |p: &str| check_proof(p, &settings, &ctx, &RustBackend).err();
    let header = || json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": proof_jwk(client())});
    let with = |h: Value, c: Value| forged(h, c);
    assert_eq!(check(&proof(&tok, "fine")), None);
    // Over 8 KiB, even if it verifies.
    let mut big = header();
    big["pad"] = json!("x".repeat(MAX_PROOF_BYTES));
    assert_eq!(
        check(&with(big, proof_claims(&tok, "big"))),
        Some(ProofError::Shape)
    );
    let mut near = header();
    near["pad"] = json!("x".repeat(MAX_PROOF_BYTES / 2));
    assert_eq!(check(&with(near, proof_claims(&tok, "near"))), None);
    let mut crit = header();
    crit["crit"] = json!(["exp"]);
    let cases: Vec<(Value, Value, ProofError)> = vec![
        (crit, proof_claims(&tok, "c"), ProofError::Shape),
        (
            json!({"typ": "DPoP+JWT", "alg": "ES256", "jwk": proof_jwk(client())}),
            proof_claims(&tok, "t"),
            ProofError::Typ,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES384", "jwk": proof_jwk(client())}),
            proof_claims(&tok, "a"),
            ProofError::Alg,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": proof_jwk(client())}),
            proof_claims(&tok, "r"),
            ProofError::Jwk,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": proof_jwk(client())}),
            proof_claims(&tok, "h"),
            ProofError::Alg,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": "not an object"}),
            proof_claims(&tok, "j"),
            ProofError::Jwk,
        ),
        (
            header(),
            json!({"jti": "x".repeat(MAX_JTI_BYTES + 1), "htm": "GET", "htu": URL, "iat": NOW,
                   "ath": b64(sha2::Sha256::digest(&tok))}),
            ProofError::Jti,
        ),
        (
            header(),
            json!({"jti": "", "htm": "GET", "htu": URL, "iat": NOW,
                   "ath": b64(sha2::Sha256::digest(&tok))}),
            ProofError::Jti,
        ),
        (
            header(),
            json!({"jti": "m", "htm": "get", "htu": URL, "iat": NOW,
                   "ath": b64(sha2::Sha256::digest(&tok))}),
            ProofError::Htm,
        ),
        (
            header(),
            json!({"jti": "u", "htm": "GET", "htu": format!("{URL}#frag"), "iat": NOW,
                   "ath": b64(sha2::Sha256::digest(&tok))}),
            ProofError::Htu,
        ),
        (
            header(),
            json!({"jti": "i", "htm": "GET", "htu": URL, "iat": "now",
                   "ath": b64(sha2::Sha256::digest(&tok))}),
            ProofError::Iat,
        ),
        (
            header(),
            json!({"jti": "s", "htm": "GET", "htu": URL, "iat": NOW, "ath": "AAAA"}),
            ProofError::Ath,
        ),
    ];
    for (h, c, want) in cases {
        assert_eq!(check(&with(h.clone(), c)), Some(want), "{h}");
    }
    let mut private = proof_jwk(client());
    private["d"] = json!(b64([3u8; 32]));
    let h = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private});
    assert_eq!(
        check(&with(h, proof_claims(&tok, "p"))),
        Some(ProofError::PrivateKey)
    );
    // Another key than cnf.jkt, and a signature by another key than the header's.
    let other = dpop_proof(thief(), "GET", URL, &tok, NOW, "k");
    assert_eq!(check(&other), Some(ProofError::Key));
    let swapped = thief().sign_jws(&header(), &proof_claims(&tok, "sig"));
    assert_eq!(check(&swapped), Some(ProofError::Signature));
    // Each reason reads differently.
    let all = [
        ProofError::Missing,
        ProofError::Several,
        ProofError::Shape,
        ProofError::Typ,
        ProofError::Alg,
        ProofError::Jwk,
        ProofError::PrivateKey,
        ProofError::Jti,
        ProofError::Htm,
        ProofError::Htu,
        ProofError::Iat,
        ProofError::Ath,
        ProofError::Key,
        ProofError::Signature,
        ProofError::Backend,
    ];
    let texts: std::collections::BTreeSet<&str> = all.iter().map(|e| e.as_str()).collect();
    assert_eq!(texts.len(), all.len());
    assert!(
        texts.iter().all(|t| t.starts_with("proof")
            || t.contains("DPoP")
            || t.contains("backend")
            || t.starts_with("no ")),
        "{texts:?}"
    );
}
