//! RSA signatures: RSASSA-PKCS1-v1_5 (RS256/384/512) and RSASSA-PSS (PS256/384/512),
//! over the public-key operation of [`crate::keys::rsa_public`].

use crate::algorithm::Hash;
use crate::keys::rsa_public::RsaPublicKey;
use sha2::{Digest, Sha256, Sha384, Sha512};

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
