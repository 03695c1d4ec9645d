//! A DPoP proof (RFC 9449) through every check: shape, typ, alg, the embedded key,
//! claims, htm/htu, iat window, ath and the signature. The proof binds to the thumbprint
//! of its own header key when it has one, so the fuzzer reaches the signature check.
//! Must never panic.
#![no_main]

use base64::Engine;
use bearer_guard::Config;
use bearer_guard::{ProofContext, check_proof, jwk_thumbprint};
use bearer_guard::RustBackend;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn cfg() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let text = r#"{"providers":[{"name":"idp","algorithms":["RS256"],
            "jwks":{"cluster":"c","authority":"a","path":"/"},
            "dpop":{"mode":"allowed","max_age_s":600}}]}"#;
        bearer_guard::parse_config(text.as_bytes(), &|_| None).expect("config")
    })
}

/// The thumbprint of the proof header's `jwk`, when there is one.
fn own_thumbprint(proof: &str) -> Option<String> {
    let header = proof.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    jwk_thumbprint(value.get("jwk")?.as_object()?)
}

fuzz_target!(|data: &[u8]| {
    let proof = String::from_utf8_lossy(data);
    let Some(settings) = cfg().providers.first().and_then(|p| p.dpop.as_ref()) else {
        return;
    };
    let jkt = own_thumbprint(&proof).unwrap_or_else(|| "x".repeat(43));
    let ctx = ProofContext {
        method: "GET",
        htu: "https://api.test/v1/items",
        token: "fuzz-token",
        jkt: &jkt,
        now_s: 1_800_000_000,
        skew_s: 60,
    };
    let _ = check_proof(&proof, settings, &ctx, &RustBackend);
});
