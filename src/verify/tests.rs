//! Unit tests of signatures and standard claims.

use super::*;
use crate::token::check_claims;
use crate::token::claims::ClaimError;
use ::hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use serde_json::Value;
use sha2::Sha256;

#[test]
fn claim_rules() {
    const NOW: i64 = 1_000_000;
    let audiences = ["client_123".to_string(), "other".to_string()];
    let base = |extra: Value| {
        let mut m = json!({"iss": "https://issuer", "aud": "client_123", "exp": NOW + 100});
        if let (Some(obj), Value::Object(add)) = (m.as_object_mut(), extra) {
            obj.extend(add);
        }
        m.as_object().cloned().unwrap_or_default()
    };
    let cases: Vec<(&str, Value, Result<(), ClaimError>)> = vec![
        ("valid", json!({}), Ok(())),
        (
            "exp missing",
            json!({"exp": null}),
            Err(ClaimError::MissingExp),
        ),
        (
            "exp string",
            json!({"exp": "1000100"}),
            Err(ClaimError::MissingExp),
        ),
        (
            "exp float ok",
            json!({"exp": (NOW + 100) as f64 + 0.5}),
            Ok(()),
        ),
        ("exp negative", json!({"exp": -5}), Err(ClaimError::Expired)),
        ("exp huge u64", json!({"exp": u64::MAX}), Ok(())),
        ("exp huge float", json!({"exp": 1e300}), Ok(())),
        ("exp within skew", json!({"exp": NOW - 59}), Ok(())),
        (
            "exp at skew edge",
            json!({"exp": NOW - 60}),
            Err(ClaimError::Expired),
        ),
        (
            "exp long past",
            json!({"exp": NOW - 3600}),
            Err(ClaimError::Expired),
        ),
        ("nbf past", json!({"nbf": NOW - 10}), Ok(())),
        ("nbf within skew", json!({"nbf": NOW + 60}), Ok(())),
        (
            "nbf future",
            json!({"nbf": NOW + 61}),
            Err(ClaimError::NotYetValid),
        ),
        ("nbf string", json!({"nbf": "x"}), Err(ClaimError::BadNbf)),
        (
            "iss wrong",
            json!({"iss": "https://evil"}),
            Err(ClaimError::Issuer),
        ),
        ("iss missing", json!({"iss": null}), Err(ClaimError::Issuer)),
        ("aud array", json!({"aud": ["x", "other"]}), Ok(())),
        ("aud wrong", json!({"aud": "x"}), Err(ClaimError::Audience)),
        (
            "aud empty array",
            json!({"aud": []}),
            Err(ClaimError::Audience),
        ),
        ("aud number", json!({"aud": 5}), Err(ClaimError::Audience)),
    ];
    for (name, extra, want) in cases {
        let got =
            check_claims(&base(extra), Some("https://issuer"), &audiences, NOW, 60).map(|_| ());
        assert_eq!(got, want, "{name}");
    }
    // Without issuer/audiences configured, neither is checked.
    let claims = json!({"exp": NOW + 1})
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(check_claims(&claims, None, &[], NOW, 60).is_ok());
}

/// The verifier agrees with the `rsa` crate's own, for exponents other than 65537 too
/// (Wycheproof's keys all use 65537), on valid, altered and foreign signatures.
#[test]
fn rsa_verify_agrees_with_the_rsa_crate() {
    for k in crate::keys::rsa_public::test_keys::all() {
        let (bits, e) = (k.bits, k.e);
        let theirs = k.private.to_public_key();
        for msg in [&b"header.payload"[..], b"", b"another message"] {
            let sig = k.private.pkcs1v15_sign::<Sha256>(msg).expect("sign");
            let mut altered = sig.clone();
            if let Some(last) = altered.last_mut() {
                *last ^= 1;
            }
            for (sig, want) in [(&sig, true), (&altered, false)] {
                let verdict = theirs.pkcs1v15_verify::<Sha256>(msg, sig).is_ok();
                assert_eq!(verdict, want, "rsa crate, {bits}/{e}");
                assert_eq!(
                    rsassa_pkcs1v15(&k.ours, Hash::Sha256, msg, sig),
                    want,
                    "{bits}/{e}"
                );
            }
            assert!(!rsassa_pkcs1v15(&k.ours, Hash::Sha256, b"other", &sig));
        }
    }
}

#[test]
fn hs256_lengths_and_values() {
    let key = b"0123456789abcdef0123456789abcdef";
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("key");
    mac.update(b"msg");
    let tag = mac.finalize().into_bytes().to_vec();
    assert!(verify_hmac(key, Hash::Sha256, b"msg", &tag));
    assert!(!verify_hmac(key, Hash::Sha256, b"msh", &tag));
    assert!(!verify_hmac(key, Hash::Sha256, b"msg", &tag[..16]));
    assert!(!verify_hmac(key, Hash::Sha256, b"msg", &[]));
    assert!(!verify_hmac(
        b"another-key-another-key-another!",
        Hash::Sha256,
        b"msg",
        &tag
    ));
}
