//! Per-verify time of each pure-Rust signature path (`make bench` prints it before the
//! Envoy rows): one valid Wycheproof vector per algorithm, its key through the key-set
//! reader, verified `ROUNDS` times natively. The Envoy backend (BoringSSL through
//! `verify_signature`) is measured inside Envoy by the bench's RS256 and ES256 rows.
//!
//! Then the native module's backend (aws-lc, `NativeBackend`, its parsed key kept as the
//! module keeps it) for RS256 and ES256: one verification alone, which the bench
//! subtracts from the native distinct-token rows. `--aws-lc` prints only that part.

use bearer_guard::{
    rsassa_pss, verify_ed25519, verify_hmac, NativeBackend, RustBackend, SignatureBackend,
};
use bearer_guard::{Algorithm, Hash};
use bearer_guard::{Key, KeySet};
use serde_json::{json, Value};
use std::time::Instant;

#[path = "vectors.rs"]
mod vectors;
use vectors::{hex, vectors};

const ROUNDS: u32 = 2000;

/// The first group with a JWK and its first valid vector: (key, message, signature).
fn first_valid(file: &str, alg: Algorithm) -> (Key, Vec<u8>, Vec<u8>) {
    let doc = vectors(&format!("wycheproof/{file}"));
    for group in doc["testGroups"].as_array().expect("groups") {
        let Some(jwk) = group
            .get("publicKeyJwk")
            .or_else(|| group.get("keyJwk"))
            .and_then(Value::as_object)
        else {
            continue;
        };
        let public: serde_json::Map<String, Value> = jwk
            .iter()
            .filter(|(k, _)| !["kid", "alg", "d", "p", "q", "dp", "dq", "qi"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let doc = json!({ "keys": [public] }).to_string();
        let Ok((set, _)) = KeySet::parse(doc.as_bytes(), 1 << 16) else {
            continue;
        };
        let Some(key) = set.candidates(None, alg).next().cloned() else {
            continue;
        };
        let tests = group["tests"].as_array().expect("tests");
        if let Some(t) = tests.iter().find(|t| t["result"] == "valid") {
            let field = |n: &str| hex(t[n].as_str().expect("hex field"));
            return (key, field("msg"), field("sig"));
        }
    }
    panic!("{file}: no valid vector with a usable key")
}

fn time(name: &str, mut verify: impl FnMut() -> bool) {
    assert!(verify(), "{name}: the valid vector must verify");
    let start = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(verify());
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);
    println!("  {name:<28} {us:>8.1} µs/verify");
}

/// Batches of [`ROUNDS`] verifications timed for the aws-lc figures (their median).
const BATCHES: usize = 5;

/// µs per verification: the median of [`BATCHES`] batches of [`ROUNDS`].
fn median_us(verify: &mut impl FnMut() -> bool) -> f64 {
    let mut batches: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDS {
                std::hint::black_box(verify());
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[BATCHES / 2]
}

/// One RS256 and one ES256 verification with the native module's backend, its parsed key
/// kept (the first call parses it, as the module's first verification with a key does).
fn aws_lc_timing() {
    println!(
        "Per-verify time, aws-lc backend (NativeBackend, parsed key kept; median of {BATCHES}×{ROUNDS}):"
    );
    let backend = NativeBackend::default();
    let (key, msg, sig) = first_valid("rsa_signature_2048_sha256_test.json", Algorithm::RS256);
    let Key::Rsa(key) = key else {
        panic!("RS256: RSA key")
    };
    let mut verify = || {
        backend
            .verify_rsa(&key, Hash::Sha256, &msg, &sig)
            .unwrap_or(false)
    };
    assert!(verify(), "RS256: the valid vector must verify");
    println!(
        "  {:<28} {:>8.1} µs/verify",
        "RS256 (2048-bit)",
        median_us(&mut verify)
    );
    let (key, msg, sig) = first_valid("ecdsa_secp256r1_sha256_p1363_test.json", Algorithm::ES256);
    let Key::Ec(key) = key else {
        panic!("ES256: EC key")
    };
    let mut verify = || {
        backend
            .verify_ecdsa(&key, Hash::Sha256, &msg, &sig)
            .unwrap_or(false)
    };
    assert!(verify(), "ES256: the valid vector must verify");
    println!(
        "  {:<28} {:>8.1} µs/verify",
        "ES256 (P-256)",
        median_us(&mut verify)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--aws-lc") {
        aws_lc_timing();
        return;
    }
    println!("Per-verify time, pure-Rust backend (native, {ROUNDS} rounds each):");
    let rsa = [
        (
            "RS256 (2048-bit)",
            "rsa_signature_2048_sha256_test.json",
            Hash::Sha256,
        ),
        (
            "RS384 (2048-bit)",
            "rsa_signature_2048_sha384_test.json",
            Hash::Sha384,
        ),
        (
            "RS512 (2048-bit)",
            "rsa_signature_2048_sha512_test.json",
            Hash::Sha512,
        ),
        (
            "RS256 (4096-bit)",
            "rsa_signature_4096_sha256_test.json",
            Hash::Sha256,
        ),
    ];
    for (name, file, hash) in rsa {
        let (key, msg, sig) = first_valid(file, Algorithm::RS256);
        let Key::Rsa(key) = key else {
            panic!("{name}: RSA key")
        };
        time(name, || {
            RustBackend
                .verify_rsa(&key, hash, &msg, &sig)
                .unwrap_or(false)
        });
    }
    let (key, msg, sig) = first_valid("rsa_pss_2048_sha256_mgf1_32_test.json", Algorithm::PS256);
    let Key::Rsa(key) = key else {
        panic!("PS256: RSA key")
    };
    time("PS256 (2048-bit)", || {
        rsassa_pss(&key.public, Hash::Sha256, &msg, &sig)
    });
    for (name, file, alg) in [
        (
            "PS384 (2048-bit)",
            "rsa_pss_2048_sha384_mgf1_48_test.json",
            Algorithm::PS384,
        ),
        (
            "PS512 (4096-bit)",
            "rsa_pss_4096_sha512_mgf1_64_test.json",
            Algorithm::PS512,
        ),
    ] {
        let (key, msg, sig) = first_valid(file, alg);
        let Key::Rsa(key) = key else {
            panic!("{name}: RSA key")
        };
        time(name, || rsassa_pss(&key.public, alg.hash(), &msg, &sig));
    }
    for (name, file, alg) in [
        (
            "ES256 (P-256)",
            "ecdsa_secp256r1_sha256_p1363_test.json",
            Algorithm::ES256,
        ),
        (
            "ES384 (P-384)",
            "ecdsa_secp384r1_sha384_p1363_test.json",
            Algorithm::ES384,
        ),
        (
            "ES512 (P-521)",
            "ecdsa_secp521r1_sha512_p1363_test.json",
            Algorithm::ES512,
        ),
    ] {
        let (key, msg, sig) = first_valid(file, alg);
        let Key::Ec(key) = key else {
            panic!("{name}: EC key")
        };
        time(name, || {
            RustBackend
                .verify_ecdsa(&key, alg.hash(), &msg, &sig)
                .unwrap_or(false)
        });
    }
    let (key, msg, sig) = first_valid("ed25519_test.json", Algorithm::EdDSA);
    let Key::Okp(key) = key else {
        panic!("EdDSA: OKP key")
    };
    time("EdDSA (Ed25519)", || verify_ed25519(&key, &msg, &sig));
    let doc = vectors("wycheproof/hmac_sha256_test.json");
    let t = doc["testGroups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["keySize"] == 256 && g["tagSize"] == 256)
        .flat_map(|g| g["tests"].as_array().into_iter().flatten())
        .find(|t| t["result"] == "valid")
        .expect("an HMAC vector");
    let field = |n: &str| hex(t[n].as_str().expect("hex field"));
    let (secret, msg, tag) = (field("key"), field("msg"), field("tag"));
    time("HS256", || verify_hmac(&secret, Hash::Sha256, &msg, &tag));
    aws_lc_timing();
    revocation_timing();
}

/// A revocation list's check of one token, and parsing the list itself: what a cached
/// token pays per request (three lookups: jti, sub, sid), and what a VM pays per new
/// version of a 10,000-entry list.
fn revocation_timing() {
    use bearer_guard::{RevocationLimits, RevocationList};
    let far = 4_000_000_000i64;
    let doc = serde_json::json!({
        "jti": (0..8000).map(|i| serde_json::json!({"jti": format!("revoked-{i:08}"), "exp": far})).collect::<Vec<_>>(),
        "sub": (0..1000).map(|i| serde_json::json!({"sub": format!("user-gone-{i}"), "not_before": 1})).collect::<Vec<_>>(),
        "sid": (0..1000).map(|i| serde_json::json!({"sid": format!("sess-gone-{i}"), "not_before": 1})).collect::<Vec<_>>(),
    })
    .to_string();
    let limits = RevocationLimits {
        max_entries: 100_000,
        clock_skew_s: 60,
    };
    let start = std::time::Instant::now();
    let list = RevocationList::parse(doc.as_bytes(), &limits, 0).expect("list");
    let parse_ms = start.elapsed().as_secs_f64() * 1e3;
    let claims =
        serde_json::json!({"sub": "user-1", "jti": "live-token", "sid": "sess-live", "iat": 5});
    let claims = claims.as_object().cloned().unwrap_or_default();
    let n = 200_000;
    let start = std::time::Instant::now();
    let revoked = (0..n).filter(|_| list.check(&claims).is_some()).count();
    let ns = start.elapsed().as_secs_f64() * 1e9 / n as f64;
    assert_eq!(revoked, 0);
    println!(
        "Revocation list of {} entries ({} bytes): parsed in {parse_ms:.1} ms; a token's check (jti, sub, sid) {ns:.0} ns",
        list.len(),
        doc.len()
    );
}
