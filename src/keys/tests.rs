//! Key sets, discovery and the fetch state machine.

use super::jwk::{JwksError, MAX_KEYS};
use super::*;
use crate::algorithm::Algorithm;
use crate::shared::{FetchError, FetchPolicy, FetchState, KeyAvailability, LEASE_GRACE_MS};
use serde_json::Value;
/// The configuration's default `jwks.max_bytes`.
const DEFAULT_MAX_JWKS_BYTES: usize = 64 * 1024;
use crate::shared::MemoryStore;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

const RFC_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

#[test]
fn bad_entries_are_skipped_not_fatal() {
    let short_n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
    let doc = json!({"keys": [
        {"kty": "RSA", "kid": "good", "n": RFC_N, "e": "AQAB", "alg": "RS256", "use": "sig"},
        {"kty": "RSA", "kid": "nokidtype-ok", "n": RFC_N, "e": "AQAB"},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"},
        {"kty": "RSA", "kid": "enc", "n": RFC_N, "e": "AQAB", "use": "enc"},
        {"kty": "RSA", "kid": "ps", "n": RFC_N, "e": "AQAB", "alg": "PS256"},
        {"kty": "RSA", "kid": "hs", "n": RFC_N, "e": "AQAB", "alg": "HS256"},
        {"kty": "RSA", "kid": "es", "n": RFC_N, "e": "AQAB", "alg": "ES256"},
        {"kty": "RSA", "kid": "unknown-alg", "n": RFC_N, "e": "AQAB", "alg": "RS1"},
        {"kty": "RSA", "kid": "small", "n": short_n, "e": "AQAB"},
        {"kty": "RSA", "kid": "bad-b64", "n": "!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "no-e", "n": RFC_N},
        {"kty": "RSA", "kid": 7, "n": RFC_N, "e": "AQAB"},
        {"kty": "RSA", "kid": "ops", "n": RFC_N, "e": "AQAB", "key_ops": ["encrypt"]},
        "not an object"
    ]});
    let (set, skipped) =
        KeySet::parse(doc.to_string().as_bytes(), DEFAULT_MAX_JWKS_BYTES).expect("parses");
    assert_eq!(set.kids(), vec!["good", "nokidtype-ok", "ps"]);
    assert_eq!(skipped, 11);
    assert_eq!(set.candidates(Some("ps"), Algorithm::PS256).count(), 1);
    assert_eq!(
        set.candidates(Some("ps"), Algorithm::RS256).count(),
        0,
        "pinned to PS256"
    );
    assert!(set.has_kid("good") && !set.has_kid("ec"));
    assert_eq!(set.candidates(Some("good"), Algorithm::RS256).count(), 1);
    assert_eq!(
        set.candidates(Some("good"), Algorithm::RS512).count(),
        0,
        "pinned to RS256"
    );
    assert_eq!(set.candidates(None, Algorithm::RS256).count(), 2);
    assert_eq!(
        set.candidates(None, Algorithm::ES256).count(),
        0,
        "no EC key"
    );
    assert_eq!(
        set.candidates(None, Algorithm::RS384).count(),
        1,
        "the key without alg"
    );
    assert_eq!(set.candidates(Some("nope"), Algorithm::RS256).count(), 0);
    let key = set
        .candidates(Some("good"), Algorithm::RS256)
        .next()
        .expect("key");
    let Key::Rsa(key) = key else {
        panic!("an RSA key")
    };
    assert_eq!(key.public.size(), 256);
    assert_eq!(key.spki_der.first(), Some(&0x30));
}

#[test]
fn whole_document_errors() {
    let cases: Vec<(Vec<u8>, JwksError)> = vec![
        (b"not json".to_vec(), JwksError::NotJwks),
        (b"{}".to_vec(), JwksError::NotJwks),
        (br#"{"keys": {}}"#.to_vec(), JwksError::NotJwks),
        (br#"{"keys": []}"#.to_vec(), JwksError::NoUsableKeys),
        (
            br#"{"keys": [{"kty":"EC"}]}"#.to_vec(),
            JwksError::NoUsableKeys,
        ),
        (vec![b' '; DEFAULT_MAX_JWKS_BYTES + 1], JwksError::TooLarge),
    ];
    for (body, want) in cases {
        assert_eq!(
            KeySet::parse(&body, DEFAULT_MAX_JWKS_BYTES).err(),
            Some(want.clone()),
            "{want:?}"
        );
    }
}

/// A JWK of a 4096-bit key with this `kid`.
fn big_jwk(kid: &str) -> Value {
    let mut n = vec![0xc5u8; 512];
    n[511] |= 1;
    json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(&n), "e": "AQAB"})
}

#[test]
fn the_key_cap_stops_parsing_and_the_size_limit_comes_first() {
    let doc = |count: usize| {
        let keys: Vec<Value> = (0..count).map(|i| big_jwk(&format!("k{i}"))).collect();
        json!({ "keys": keys }).to_string()
    };
    // 200 keys: the first 64 are kept, the rest skipped unread.
    let body = doc(200);
    let (set, skipped) = KeySet::parse(body.as_bytes(), 1 << 20).expect("parses");
    assert_eq!((set.len(), skipped), (MAX_KEYS, 200 - MAX_KEYS));
    assert!(set.has_kid("k63") && !set.has_kid("k64"));
    // The default limit refuses that document before reading it.
    assert!(body.len() > DEFAULT_MAX_JWKS_BYTES);
    let read = std::cell::Cell::new(false);
    let got = interpret_fetch(Some("200"), body.len(), DEFAULT_MAX_JWKS_BYTES, || {
        read.set(true);
        body.clone().into_bytes()
    });
    assert!(got.is_err_and(|e| e.to_string().contains("over the 65536-byte limit")));
    assert!(!read.get(), "an oversized body is never read");
    // Within the limit it is read and parsed; other statuses are failures.
    let small = doc(2);
    let got = interpret_fetch(Some("200"), small.len(), DEFAULT_MAX_JWKS_BYTES, || {
        small.clone().into_bytes()
    });
    assert_eq!(
        got.map(|(s, n, b)| (s.len(), n, b.len())),
        Ok((2, 0, small.len()))
    );
    for status in [Some("500"), Some("404"), None] {
        assert!(interpret_fetch(status, 0, DEFAULT_MAX_JWKS_BYTES, Vec::new).is_err());
    }
    // Loading does no big-number work: the Montgomery constants (~0.7 ms per 4096-bit
    // key) wait for a key's first pure-Rust verification.
    assert!(set
        .candidates(None, Algorithm::RS256)
        .all(|k| matches!(k, Key::Rsa(r) if !r.public.is_prepared())));
}

#[test]
fn discovery_documents() {
    let allowed = vec!["sso.example.com".to_string()];
    let iss = "https://sso.example.com/realms/x";
    let doc = |issuer: &str, uri: &str| json!({"issuer": issuer, "jwks_uri": uri}).to_string();
    let read = |body: String| interpret_discovery(Some("200"), body.as_bytes(), iss, &allowed);
    assert_eq!(
        read(doc(iss, "https://sso.example.com/realms/x/certs")),
        Ok(("sso.example.com".into(), "/realms/x/certs".into()))
    );
    assert_eq!(
        read(doc(iss, "https://SSO.example.com:8443/k?v=1#f")),
        Ok(("SSO.example.com:8443".into(), "/k?v=1".into()))
    );
    for (body, why) in [
        (
            doc(
                "https://sso.example.com/realms/y",
                "https://sso.example.com/c",
            ),
            "issuer",
        ),
        (
            doc(iss, "https://evil.example.com/c"),
            "not one of the allowed hosts",
        ),
        (
            doc(iss, "https://user@sso.example.com/c"),
            "not one of the allowed hosts",
        ),
        (doc(iss, "ftp://sso.example.com/c"), "not an http(s) URL"),
        (json!({"issuer": iss}).to_string(), "no jwks_uri"),
        ("<html>".to_string(), "not JSON"),
    ] {
        let got = read(body.clone());
        assert!(
            got.as_ref().is_err_and(|e| e.to_string().contains(why)),
            "{body}: {got:?}"
        );
    }
    assert!(interpret_discovery(Some("404"), b"", iss, &allowed).is_err());
    assert!(interpret_discovery(None, b"", iss, &allowed).is_err());
    // A multi-tenant issuer: Entra's document names the template its own way; a concrete
    // tenant or another shape is not the template.
    let entra = "https://login.microsoftonline.com/{tid}/v2.0";
    let hosts = vec!["login.microsoftonline.com".to_string()];
    let uri = "https://login.microsoftonline.com/common/discovery/v2.0/keys";
    let read = |issuer: &str| {
        let body = json!({"issuer": issuer, "jwks_uri": uri}).to_string();
        interpret_discovery(Some("200"), body.as_bytes(), entra, &hosts)
    };
    assert!(read("https://login.microsoftonline.com/{tenantid}/v2.0").is_ok());
    assert!(read("https://login.microsoftonline.com/9188040d/v2.0").is_err());
    assert!(read("https://login.microsoftonline.com/{tenantid}/v1.0").is_err());
}

#[test]
fn the_shared_rfc_jwks_parses() {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/rfc/jwks_public.json"
    ))
    .expect("test vectors");
    let (set, skipped) = KeySet::parse(&body, DEFAULT_MAX_JWKS_BYTES).expect("parses");
    // RSA 2011-04-29, bilbo.baggins, and the RFC 7515 A.2 key (no kid); the EC key is skipped.
    assert_eq!(set.len(), 3);
    assert_eq!(skipped, 1);
    assert!(set.has_kid("2011-04-29") && set.has_kid("bilbo.baggins@hobbiton.example"));
}

fn policy() -> FetchPolicy {
    FetchPolicy {
        refresh_ms: 600_000,
        timeout_ms: 2000,
        retry_min_ms: 1000,
        retry_max_ms: 30_000,
        refetch_min_interval_ms: 5000,
    }
}

fn doc(kid: &str) -> Vec<u8> {
    json!({"keys": [{"kty": "RSA", "kid": kid, "n": RFC_N, "e": "AQAB"}]})
        .to_string()
        .into_bytes()
}

fn fetched(kid: &str) -> Result<(KeySet, Vec<u8>), FetchError> {
    let body = doc(kid);
    let (keys, _) = KeySet::parse(&body, DEFAULT_MAX_JWKS_BYTES)
        .map_err(|e| FetchError::Invalid(format!("{e:?}")))?;
    Ok((keys, body))
}

#[test]
fn fetch_state_machine() {
    let p = policy();
    let s = FetchState::default();
    // Start: nothing loaded, the first fetch due at once, requests wait.
    assert!(s.due(0, &p));
    assert_eq!(s.availability(false, 0, &p), KeyAvailability::Loading);
    let (s, takeover) = s.start(7, 0, &p).expect("due");
    assert!(!takeover && s.in_flight(10, &p) && !s.due(10, &p));
    assert!(s.start(8, 10, &p).is_none(), "one fetch at a time");
    // Failure with nothing published: unavailable until the retry (1 s, then 2 s, 4 s…).
    let s = s.fail(100, &p);
    assert_eq!(s.availability(false, 200, &p), KeyAvailability::Unavailable);
    assert!(!s.due(1099, &p) && s.due(1100, &p));
    let s = s.start(7, 1100, &p).expect("due").0.fail(1200, &p);
    assert!(!s.due(3199, &p) && s.due(3200, &p));
    // Success: ready, next refresh after refresh_ms, backoff reset.
    let s = s.start(7, 3200, &p).expect("due").0.succeed(1, 3300, &p);
    assert_eq!(s.availability(true, 3300, &p), KeyAvailability::Ready);
    assert_eq!((s.version, s.failures, s.holder), (1, 0, 0));
    assert!(!s.due(603_299, &p) && s.due(603_300, &p));
    // Backoff is capped.
    let mut s = s;
    for i in 0..10 {
        s = s
            .start(7, 700_000 + i, &p)
            .expect("due")
            .0
            .fail(700_000 + i, &p);
        s.next_due = 700_000 + i; // due again at once, for the loop
    }
    assert_eq!(s.fail(800_000, &p).next_due, 800_000 + 30_000);
    // The encoding round-trips and refuses anything else.
    assert_eq!(FetchState::decode(&s.encode()), Some(s));
    assert_eq!(FetchState::decode(&s.encode()[..55]), None);
    assert_eq!(FetchState::decode(&[s.encode(), vec![0]].concat()), None);
}

#[test]
fn a_lease_whose_holder_never_finishes_expires() {
    let p = policy();
    let (s, _) = FetchState::default().start(7, 0, &p).expect("due");
    // In flight until timeout + grace; then another VM takes over.
    let bound = p.timeout_ms + LEASE_GRACE_MS;
    assert!(s.start(8, bound - 1, &p).is_none());
    let (taken, takeover) = s.start(8, bound, &p).expect("stale lease");
    assert!(takeover && taken.holder == 8);
}

/// Two VMs (two `ProviderKeys` over one store): one fetch for the process, both adopt
/// its key set; a refresh failure keeps the keys everywhere; the refetch rate limit is
/// the process's.
#[test]
fn one_fetch_per_process_and_every_vm_adopts_it() {
    let store = MemoryStore::default();
    let mut a = ProviderKeys::for_source(42, policy(), DEFAULT_MAX_JWKS_BYTES);
    let mut b = ProviderKeys::for_source(42, policy(), DEFAULT_MAX_JWKS_BYTES);
    assert!(!a.sync(&store, 0).settled, "the first fetch is due");
    b.sync(&store, 0);
    assert_eq!(a.try_start(&store, 1, 0), Some(false));
    assert_eq!(b.try_start(&store, 2, 0), None, "a holds the lease");
    b.sync(&store, 5);
    assert_eq!(b.availability(5), KeyAvailability::Loading);
    assert_eq!(a.finish(&store, 100, fetched("k1")), Some(1));
    assert_eq!(a.availability(100), KeyAvailability::Ready);
    // b adopts without fetching.
    let sync = b.sync(&store, 150);
    assert_eq!(sync.adopted, Some(1));
    assert!(sync.settled && b.keys().is_some_and(|k| k.has_kid("k1")));
    assert_eq!(
        b.try_start(&store, 2, 150),
        None,
        "nothing due until the refresh"
    );
    // A refresh that fails keeps the keys on both.
    let due = 100 + policy().refresh_ms;
    assert_eq!(b.try_start(&store, 2, due), Some(false));
    assert_eq!(
        b.finish(&store, due + 10, Err(FetchError::Status("500".into()))),
        None
    );
    a.sync(&store, due + 20);
    assert!(a.keys().is_some() && b.keys().is_some());
    assert_eq!(
        (a.state().failures, a.state().next_due),
        (1, due + 10 + 1000)
    );
    // A newer configuration (a third VM) adopts the published keys at once.
    let mut c = ProviderKeys::for_source(42, policy(), DEFAULT_MAX_JWKS_BYTES);
    assert!(c.sync(&store, due + 30).adopted.is_some());
    assert_eq!(c.availability(due + 30), KeyAvailability::Ready);
    // Another source is another key set.
    let mut other = ProviderKeys::for_source(43, policy(), DEFAULT_MAX_JWKS_BYTES);
    other.sync(&store, due + 30);
    assert!(other.keys().is_none());
    // Unknown kids: one refetch per interval for the process, whichever VM asks.
    let t = due + 5000;
    a.sync(&store, t);
    assert!(a.request_refetch(&store, t));
    assert_eq!(
        b.try_start(&store, 2, t),
        Some(false),
        "due at once, any VM may fetch"
    );
    assert!(a.request_refetch(&store, t + 1), "in flight: wait for it");
    b.finish(&store, t + 50, fetched("k2"));
    a.sync(&store, t + 60);
    assert!(a.keys().is_some_and(|k| k.has_kid("k2")));
    assert!(!a.request_refetch(&store, t + 4999) && !b.request_refetch(&store, t + 4999));
    assert!(b.request_refetch(&store, t + 5000));
}

#[test]
fn a_late_finish_after_a_takeover_still_publishes_a_newer_version() {
    let store = MemoryStore::default();
    let mut a = ProviderKeys::for_source(1, policy(), DEFAULT_MAX_JWKS_BYTES);
    let mut b = ProviderKeys::for_source(1, policy(), DEFAULT_MAX_JWKS_BYTES);
    assert_eq!(a.try_start(&store, 1, 0), Some(false));
    let stale = policy().timeout_ms + LEASE_GRACE_MS;
    assert_eq!(b.try_start(&store, 2, stale), Some(true), "takeover");
    assert_eq!(b.finish(&store, stale + 10, fetched("b")), Some(1));
    assert_eq!(a.finish(&store, stale + 20, fetched("a")), Some(2));
    b.sync(&store, stale + 30);
    assert_eq!(b.version(), 2);
    assert!(b.keys().is_some_and(|k| k.has_kid("a")));
}
