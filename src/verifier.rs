//! Signature and claim verification. RSA PKCS#1 v1.5 (RS256/384/512) and ECDSA
//! (ES256/384) signatures go through one [`SignatureBackend`] so the filter can use
//! Envoy's BoringSSL (`verify_signature` foreign function) or pure Rust; RSASSA-PSS,
//! Ed25519 and HMAC (HS256/384/512) are checked here, in pure Rust on every host.

use crate::crypto::Algorithm;
use crate::crypto::Hash;
use crate::jwks::{EcKey, EcPublic, Key, OkpKey, RsaKey};
use crate::rsa_public::RsaPublicKey;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The host could not perform a verification (never means "invalid signature").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendError(pub String);

/// Verifies public-key signatures: RSASSA-PKCS1-v1_5 (RS256/384/512) and ECDSA
/// (ES256, ES384, ES512).
pub trait SignatureBackend {
    /// `Ok(true)` valid, `Ok(false)` invalid, `Err` the backend itself failed.
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError>;
    /// ECDSA over `hash` with a JWS signature (`r || s`, RFC 7518 §3.4): `Ok(true)` valid.
    fn verify_ecdsa(
        &self,
        key: &EcKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError>;
    /// Name for logs and metrics.
    fn name(&self) -> &'static str;
}

/// Pure Rust for every public-key family (`rsa_public` for RSA, RustCrypto for ECDSA).
#[derive(Debug, Default, Clone, Copy)]
pub struct RustBackend;

impl SignatureBackend for RustBackend {
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        Ok(rsassa_pkcs1v15(&key.public, hash, message, signature))
    }

    fn verify_ecdsa(
        &self,
        key: &EcKey,
        _hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        use p256::ecdsa::signature::Verifier;
        // The curve fixes the hash (P-256 with SHA-256, P-384 with SHA-384, P-521 with
        // SHA-512): the key was
        // chosen for the token's alg, so they agree.
        Ok(match &key.public {
            EcPublic::P256(vk) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(message, &sig).is_ok()),
            EcPublic::P384(vk) => p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(message, &sig).is_ok()),
            EcPublic::P521(vk) => p521::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| vk.verify(message, &sig).is_ok()),
        })
    }

    fn name(&self) -> &'static str {
        "rust"
    }
}

/// Verifies a JWS signature by `alg` with one key (chosen for `alg`: see [`Key::fits`]):
/// PKCS#1 v1.5 and ECDSA through `backend` (Envoy's BoringSSL or pure Rust), RSASSA-PSS
/// and Ed25519 in pure Rust on every host. Tokens and DPoP proofs both come here.
pub fn verify_with_key(
    backend: &dyn SignatureBackend,
    key: &Key,
    alg: Algorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, BackendError> {
    match key {
        // Envoy's verify_signature only does PKCS#1 v1.5: PSS is pure Rust.
        Key::Rsa(k) if alg.is_pss() => Ok(rsassa_pss(&k.public, alg.hash(), message, signature)),
        Key::Rsa(k) => backend.verify_rsa(k, alg.hash(), message, signature),
        Key::Ec(k) => backend.verify_ecdsa(k, alg.hash(), message, signature),
        // Envoy's verify_signature cannot do Ed25519: pure Rust on every host.
        Key::Okp(k) => Ok(verify_ed25519(k, message, signature)),
    }
}

/// DER `DigestInfo` prefixes (RFC 8017 §9.2, note 1) of SHA-256, SHA-384 and SHA-512.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_DIGEST_INFO: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_DIGEST_INFO: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// The digest of `message` and its `DigestInfo` prefix.
fn digest(hash: Hash, message: &[u8]) -> (&'static [u8], Vec<u8>) {
    match hash {
        Hash::Sha256 => (SHA256_DIGEST_INFO, Sha256::digest(message).to_vec()),
        Hash::Sha384 => (SHA384_DIGEST_INFO, Sha384::digest(message).to_vec()),
        Hash::Sha512 => (SHA512_DIGEST_INFO, Sha512::digest(message).to_vec()),
    }
}

/// RSASSA-PKCS1-v1_5 verification (RFC 8017 §8.2.2): `m = s^e mod n` for `s < n` must
/// equal the one encoding of the message's digest (§9.2; the comparison form, so no
/// parser of the padding can be fooled).
pub fn rsassa_pkcs1v15(key: &RsaPublicKey, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    let Some(em) = key.public_op(signature) else {
        return false;
    };
    let (prefix, digest) = digest(hash, message);
    let k = signature.len();
    let t_len = prefix.len() + digest.len();
    let Some(ps_len) = k.checked_sub(3 + t_len).filter(|&l| l >= 8) else {
        return false;
    };
    let expected = [0x00, 0x01]
        .iter()
        .chain(std::iter::repeat_n(&0xff, ps_len))
        .chain(&[0x00])
        .chain(prefix)
        .chain(digest.iter());
    em.iter().eq(expected)
}

/// The hash of `data`.
fn hash_of(hash: Hash, data: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(data).to_vec(),
        Hash::Sha384 => Sha384::digest(data).to_vec(),
        Hash::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// MGF1 (RFC 8017 §B.2.1) of `seed`, `len` bytes.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend(hash_of(hash, &[seed, &counter.to_be_bytes()].concat()));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// RSASSA-PSS verification (RFC 8017 §8.1.2, EMSA-PSS-VERIFY §9.1.2) with MGF1 of the
/// same hash and a salt as long as the hash (RFC 7518 §3.5: PS256/384/512). Pure Rust
/// on every host: Envoy's `verify_signature` only does PKCS#1 v1.5.
pub fn rsassa_pss(key: &RsaPublicKey, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    let Some(m) = key.public_op(signature) else {
        return false;
    };
    let em_bits = key.bits().saturating_sub(1);
    let em_len = em_bits.div_ceil(8);
    let m_hash = hash_of(hash, message);
    let (h_len, s_len) = (m_hash.len(), m_hash.len());
    // The integer is `k` bytes; EM is its last `em_len` (any byte before must be zero).
    let Some((head, em)) = m.split_at_checked(m.len().saturating_sub(em_len)) else {
        return false;
    };
    if head.iter().any(|&b| b != 0) || em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let (masked_db, rest) = em.split_at(db_len);
    let h = rest.get(..h_len).unwrap_or_default();
    // The top `8·em_len − em_bits` bits of the masked DB must be zero.
    let top_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(top_bits as u32).unwrap_or(0);
    if masked_db.first().is_some_and(|&b| b & !top_mask != 0) {
        return false;
    }
    let mut db: Vec<u8> = masked_db
        .iter()
        .zip(mgf1(hash, h, db_len))
        .map(|(a, b)| a ^ b)
        .collect();
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // DB = PS (zeros) || 0x01 || salt.
    let ps_len = db_len - s_len - 1;
    let (ps, tail) = db.split_at(ps_len);
    if ps.iter().any(|&b| b != 0) || tail.first() != Some(&0x01) {
        return false;
    }
    let salt = tail.get(1..).unwrap_or_default();
    let m_prime = [&[0u8; 8][..], &m_hash, salt].concat();
    hash_of(hash, &m_prime) == h
}

/// EdDSA on Ed25519 (RFC 8032, strict: small-order keys and non-canonical `R` refused).
pub fn verify_ed25519(key: &OkpKey, message: &[u8], signature: &[u8]) -> bool {
    ed25519_dalek::Signature::from_slice(signature)
        .is_ok_and(|sig| key.public.verify_strict(message, &sig).is_ok())
}

/// A JWS ECDSA signature (`r || s`, each the curve's size) as the DER `ECDSA-Sig-Value`
/// BoringSSL verifies (`SEQUENCE { INTEGER r, INTEGER s }`); `None` for a wrong length.
pub fn ecdsa_signature_der(signature: &[u8], coordinate_len: usize) -> Option<Vec<u8>> {
    if signature.len() != 2 * coordinate_len {
        return None;
    }
    let (r, s) = signature.split_at(coordinate_len);
    Some(crate::rsa_public::der(
        0x30,
        &[
            crate::rsa_public::der_uint(r),
            crate::rsa_public::der_uint(s),
        ]
        .concat(),
    ))
}

/// HMAC check in constant time; signatures of the wrong length are rejected.
pub fn verify_hmac(secret: &[u8], hash: Hash, message: &[u8], signature: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(
        secret: &[u8],
        message: &[u8],
        signature: &[u8],
        len: usize,
    ) -> bool {
        let Ok(mut mac) = <M as KeyInit>::new_from_slice(secret) else {
            return false;
        };
        mac.update(message);
        signature.len() == len && mac.verify_slice(signature).is_ok()
    }
    match hash {
        Hash::Sha256 => check::<Hmac<Sha256>>(secret, message, signature, 32),
        Hash::Sha384 => check::<Hmac<Sha384>>(secret, message, signature, 48),
        Hash::Sha512 => check::<Hmac<Sha512>>(secret, message, signature, 64),
    }
}

/// Why standard claims were refused (debug logs only; all are 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// `exp` missing or not a number.
    MissingExp,
    /// `exp` has passed (beyond the skew).
    Expired,
    /// `nbf` is not a number.
    BadNbf,
    /// `nbf` is in the future (beyond the skew).
    NotYetValid,
    /// `iss` differs from the provider's issuer.
    Issuer,
    /// `aud` lists none of the provider's audiences.
    Audience,
}

impl ClaimError {
    /// Short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimError::MissingExp => "exp missing or not a number",
            ClaimError::Expired => "expired",
            ClaimError::BadNbf => "nbf not a number",
            ClaimError::NotYetValid => "not yet valid",
            ClaimError::Issuer => "issuer mismatch",
            ClaimError::Audience => "audience mismatch",
        }
    }
}

/// A JSON NumericDate: an integer or a finite float (truncated); strings are refused.
pub fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
            }),
        _ => None,
    }
}

/// Just the time checks (`exp` required, `nbf` optional), for cheap early rejection.
pub fn check_times(
    claims: &Map<String, Value>,
    now_s: i64,
    skew_s: i64,
) -> Result<i64, ClaimError> {
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(ClaimError::MissingExp)?;
    if now_s >= exp.saturating_add(skew_s) {
        return Err(ClaimError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(ClaimError::BadNbf)?;
        if nbf > now_s.saturating_add(skew_s) {
            return Err(ClaimError::NotYetValid);
        }
    }
    Ok(exp)
}

/// All standard claims: times, then `iss` and `aud` when the provider configures them.
/// Returns `exp`.
pub fn check_claims(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audiences: &[String],
    now_s: i64,
    skew_s: i64,
) -> Result<i64, ClaimError> {
    let exp = check_times(claims, now_s, skew_s)?;
    if let Some(issuer) = issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(ClaimError::Issuer);
        }
    }
    if !audiences.is_empty() {
        let listed = |a: &str| audiences.iter().any(|want| want == a);
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => listed(a),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(listed),
            _ => false,
        };
        if !ok {
            return Err(ClaimError::Audience);
        }
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        for k in crate::rsa_public::test_keys::all() {
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
}
