//! The RSA public-key operation, for RS*/PS* verification without a host's help.
//!
//! Verification only ever handles public values (key, message, signature), so this is
//! the textbook algorithm with nothing to hide: Montgomery multiplication on 32-bit limbs
//! (the widest product wasm computes natively) and square-and-multiply over the bits of
//! the public exponent — 16 squarings and 1 multiplication for e = 65537.
//!
//! Why not a bignum crate: the `rsa` crate (over `crypto-bigint`) was measured at ~330 µs
//! per verify in Envoy's V8 (constant-time windowed exponentiation, built for private keys)
//! and, even driven square-and-multiply, its arithmetic and encoders were ~100 KB of the
//! module. This file is a few KB, as fast, and checked against Wycheproof's RSA vectors
//! and against the `rsa` crate itself in the tests.

/// Smallest modulus accepted, bits (NIST SP 800-131A).
pub const MIN_MODULUS_BITS: usize = 2048;
/// Largest modulus accepted, bits.
pub const MAX_MODULUS_BITS: usize = 4096;
use std::sync::OnceLock;

/// Largest public exponent accepted (2^33 - 1, as the `rsa` crate).
pub const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key prepared for verification.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// Modulus, 32-bit limbs, least significant first.
    n: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0_inv: u32,
    /// `R² mod n` with `R = 2^(32·limbs)`: converts into Montgomery form. Computed at
    /// the key's first verification, not when its key set loads: loading a key set then
    /// costs no big-number work (Envoy's backend never needs it).
    rr: OnceLock<Vec<u32>>,
    /// Public exponent.
    e: u64,
    /// Modulus length in bytes (the signature length).
    size: usize,
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits, e={})", self.size * 8, self.e)
    }
}

impl RsaPublicKey {
    /// Builds a key from the big-endian modulus and exponent (leading zeros allowed).
    /// `None` unless the modulus is odd and 2048-4096 bits (counted from its highest set
    /// bit) and the exponent odd, ≥ 3 and ≤ [`MAX_EXPONENT`]. Cheap: no big-number work.
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaPublicKey> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
        if !(MIN_MODULUS_BITS..=MAX_MODULUS_BITS).contains(&bits) || e.len() > 8 {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e < 3 || e % 2 == 0 || e > MAX_EXPONENT {
            return None;
        }
        let limbs = limbs_from_be(n, n.len().div_ceil(4));
        let n0 = *limbs.first()?;
        if n0 % 2 == 0 {
            return None;
        }
        // Newton's iteration doubles the correct low bits each step: 1 → 32 in 5 steps.
        let mut inv: u32 = 1;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        Some(RsaPublicKey {
            n: limbs,
            n0_inv: inv.wrapping_neg(),
            rr: OnceLock::new(),
            e,
            size: n.len(),
        })
    }

    /// Modulus length in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        let top = self.n.last().map_or(0, |l| 32 - l.leading_zeros() as usize);
        (self.n.len().saturating_sub(1)) * 32 + top
    }

    /// Whether the Montgomery constants have been computed (by a verification).
    pub fn is_prepared(&self) -> bool {
        self.rr.get().is_some()
    }

    /// `R² mod n`, by doubling 1 modulo n, 2·32·limbs times (once per key, at its first
    /// verification: ~0.2 ms for 2048 bits, ~0.7 ms for 4096 natively).
    fn rr(&self) -> &[u32] {
        self.rr.get_or_init(|| {
            let mut rr = vec![0u32; self.n.len()];
            if let Some(first) = rr.first_mut() {
                *first = 1;
            }
            for _ in 0..64 * self.n.len() {
                let carry = shl1(&mut rr);
                if carry || !less_than(&rr, &self.n) {
                    sub_assign(&mut rr, &self.n);
                }
            }
            rr
        })
    }

    /// The key as DER `SubjectPublicKeyInfo` (RFC 5280 §4.1, RFC 8017 §A.1.1: an
    /// `rsaEncryption` algorithm identifier and the PKCS#1 `RSAPublicKey`), what Envoy's
    /// `verify_signature` imports.
    pub fn spki_der(&self) -> Vec<u8> {
        let n = limbs_to_be(&self.n, self.size);
        let rsa_public_key = der(
            0x30,
            &[der_uint(&n), der_uint(&self.e.to_be_bytes())].concat(),
        );
        // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
        const RSA_ENCRYPTION: [u8; 15] = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        let bit_string = der(0x03, &[&[0u8][..], &rsa_public_key].concat());
        der(0x30, &[&RSA_ENCRYPTION[..], &bit_string].concat())
    }

    /// RSAVP1 (RFC 8017 §5.2.2): `s^e mod n` as `size()` big-endian bytes; `None` when the
    /// signature has the wrong length or is not below the modulus.
    pub fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.size {
            return None;
        }
        let s = limbs_from_be(signature, self.n.len());
        if !less_than(&s, &self.n) {
            return None;
        }
        let len = self.n.len();
        let mut scratch = vec![0u32; len + 2];
        let mut base = vec![0u32; len];
        self.mont_mul(&s, self.rr(), &mut scratch, &mut base);
        let mut acc = base.clone();
        let mut tmp = vec![0u32; len];
        let bits = 64 - self.e.leading_zeros();
        for bit in (0..bits.saturating_sub(1)).rev() {
            self.mont_mul(&acc, &acc, &mut scratch, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&acc, &base, &mut scratch, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        // Out of Montgomery form: multiply by 1.
        let mut one = vec![0u32; len];
        if let Some(first) = one.first_mut() {
            *first = 1;
        }
        self.mont_mul(&acc, &one, &mut scratch, &mut tmp);
        Some(limbs_to_be(&tmp, self.size))
    }

    /// `out = a·b·R⁻¹ mod n` (CIOS Montgomery multiplication), for `a, b < n`.
    /// `t` is scratch of `limbs + 2` words.
    fn mont_mul(&self, a: &[u32], b: &[u32], t: &mut [u32], out: &mut [u32]) {
        t.fill(0);
        let len = self.n.len();
        for &ai in a {
            let (low, high) = t.split_at_mut(len);
            let [top, over] = high else { return };
            // t += ai · b
            let mut carry = 0u64;
            for (tj, &bj) in low.iter_mut().zip(b) {
                let v = u64::from(*tj) + u64::from(ai) * u64::from(bj) + carry;
                *tj = v as u32;
                carry = v >> 32;
            }
            let v = u64::from(*top) + carry;
            *top = v as u32;
            *over = (v >> 32) as u32;
            // t += m · n makes the lowest limb zero; then t /= 2³².
            let m = low.first().map_or(0, |&t0| t0.wrapping_mul(self.n0_inv));
            let mut carry = 0u64;
            for (tj, &nj) in low.iter_mut().zip(&self.n) {
                let v = u64::from(*tj) + u64::from(m) * u64::from(nj) + carry;
                *tj = v as u32;
                carry = v >> 32;
            }
            let v = u64::from(*top) + carry;
            *top = v as u32;
            *over += (v >> 32) as u32;
            t.copy_within(1.., 0);
            if let Some(last) = t.last_mut() {
                *last = 0;
            }
        }
        // t < 2n: one conditional subtraction.
        let (low, high) = t.split_at_mut(len);
        if high.first().is_some_and(|&h| h != 0) || !less_than(low, &self.n) {
            sub_assign(low, &self.n);
        }
        out.copy_from_slice(low);
    }
}

/// A DER element: tag, definite length (short or long form), contents.
pub(crate) fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let len = contents.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = strip_zeros(&bytes);
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(contents);
    out
}

/// A DER INTEGER holding the non-negative big-endian `value`: minimal, with a zero byte
/// in front when the top bit is set.
pub(crate) fn der_uint(value: &[u8]) -> Vec<u8> {
    let digits = strip_zeros(value);
    let pad = digits.first().is_none_or(|&b| b & 0x80 != 0);
    let body = [if pad { &[0u8][..] } else { &[] }, digits].concat();
    der(0x02, &body)
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(start..).unwrap_or(&[])
}

/// Big-endian bytes to `count` little-endian 32-bit limbs (bytes beyond are dropped;
/// callers pass at most `4·count`).
fn limbs_from_be(bytes: &[u8], count: usize) -> Vec<u32> {
    let mut limbs = vec![0u32; count];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    }
    limbs
}

/// The last `len` bytes of little-endian limbs as big-endian bytes (the caller knows the
/// value fits: modulus-sized numbers below the modulus).
fn limbs_to_be(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    bytes.drain(..bytes.len().saturating_sub(len));
    bytes
}

/// `a < b` for equal-length little-endian numbers.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo 2^(32·len) (the caller knows `a ≥ b`, or that a carried out).
fn sub_assign(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let v = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = v as u32;
        borrow = (v >> 63) & 1;
    }
}

/// `a <<= 1`; returns the bit shifted out.
fn shl1(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let next = *x >> 31;
        *x = (*x << 1) | carry;
        carry = next;
    }
    carry == 1
}

/// Keys from the `rsa` crate to check this module against, generated once per test run.
#[cfg(test)]
pub(crate) mod test_keys {
    use super::RsaPublicKey;
    use rsa::traits::PublicKeyParts;
    use rsa::{BoxedUint, PrivateKey};
    use std::sync::OnceLock;

    /// One key: the `rsa` crate's private key, ours, modulus bits and exponent.
    pub(crate) struct TestKey {
        pub private: PrivateKey,
        pub ours: RsaPublicKey,
        pub bits: usize,
        pub e: u64,
    }

    /// Sizes and exponents beyond Wycheproof's (whose keys all use 65537).
    pub(crate) fn all() -> &'static [TestKey] {
        static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
        KEYS.get_or_init(|| {
            let mut rng = getrandom::SysRng;
            [
                (2048, 65537u64),
                (2048, 3),
                (3072, 65537),
                (4096, 0x1_0000_0001),
            ]
            .into_iter()
            .map(|(bits, e)| {
                let private = PrivateKey::new_with_exp(&mut rng, bits, BoxedUint::from(e))
                    .unwrap_or_else(|err| panic!("keygen {bits}/{e}: {err}"));
                let n = private.n().to_be_bytes_trimmed_vartime();
                let ours = RsaPublicKey::new(&n, &e.to_be_bytes()).expect("key");
                TestKey {
                    private,
                    ours,
                    bits,
                    e,
                }
            })
            .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;
    use rsa::BoxedUint;
    use sha2::Sha256;

    /// `s^e mod n` agrees with the `rsa` crate's raw public operation, for several sizes
    /// and exponents, on signatures and on arbitrary values below `n`.
    #[test]
    fn public_op_agrees_with_the_rsa_crate() {
        for k in test_keys::all() {
            let (key, ours, bits, e) = (&k.private, &k.ours, k.bits, k.e);
            let public = key.to_public_key();
            let n = public.n().to_be_bytes_trimmed_vartime();
            assert_eq!(ours.size(), bits / 8);
            let sig = key.pkcs1v15_sign::<Sha256>(b"msg").expect("sign");
            let mut values = vec![sig, vec![0; bits / 8], {
                let mut v = vec![0; bits / 8];
                v[bits / 8 - 1] = 1;
                v
            }];
            // n - 2, with the borrow carried (the last byte of an odd n may be 1).
            let mut below_n = n.to_vec();
            let mut borrow = 2u16;
            for byte in below_n.iter_mut().rev() {
                let v = u16::from(*byte).wrapping_sub(borrow);
                *byte = v as u8;
                borrow = u16::from(v > 0xff);
            }
            values.push(below_n);
            for v in values {
                let s = BoxedUint::from_be_slice(&v, public.n_bits_precision()).expect("s");
                let want = rsa::hazmat::rsa_encrypt(&public, &s).expect("rsa_encrypt");
                let want = want.to_be_bytes();
                let want = &want[want.len() - bits / 8..];
                assert_eq!(ours.public_op(&v).as_deref(), Some(want), "{bits}/{e}");
            }
            // n itself, and anything longer or shorter, is refused.
            assert_eq!(ours.public_op(&n), None);
            assert_eq!(ours.public_op(&[0xff; 1][..]), None);
            assert_eq!(ours.public_op(&vec![1; bits / 8 + 1]), None);
        }
    }

    /// The hand-built DER is byte for byte what the `rsa`/`spki` crates encode.
    #[test]
    fn spki_der_matches_the_rsa_crate() {
        use rsa::pkcs8::EncodePublicKey;
        for k in test_keys::all() {
            let theirs = k.private.to_public_key().to_public_key_der().expect("der");
            assert_eq!(k.ours.spki_der(), theirs.as_bytes(), "{}/{}", k.bits, k.e);
        }
    }

    #[test]
    fn unusable_keys_are_refused() {
        let odd = |len: usize| {
            let mut n = vec![0xc5; len];
            n[len - 1] |= 1;
            n
        };
        let e = [1, 0, 1];
        assert!(RsaPublicKey::new(&odd(256), &e).is_some());
        assert!(RsaPublicKey::new(&[vec![0, 0], odd(256)].concat(), &e).is_some());
        assert!(RsaPublicKey::new(&[vec![0x80], odd(255)].concat(), &e).is_some());
        assert!(RsaPublicKey::new(&[vec![0xff], odd(511)].concat(), &e).is_some());
        let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
            ("2040-bit modulus", odd(255), e.to_vec()),
            (
                "2041-bit modulus in 256 bytes",
                [vec![0x01], odd(255)].concat(),
                e.to_vec(),
            ),
            (
                "2047-bit modulus in 256 bytes",
                [vec![0x7f], odd(255)].concat(),
                e.to_vec(),
            ),
            ("4104-bit modulus", odd(513), e.to_vec()),
            ("even modulus", vec![0xc4; 256], e.to_vec()),
            ("e = 1", odd(256), vec![1]),
            ("even e", odd(256), vec![1, 0, 0]),
            ("e = 0", odd(256), vec![]),
            ("e too large", odd(256), vec![4, 0, 0, 0, 1]),
            ("e of 9 bytes", odd(256), vec![1; 9]),
        ];
        for (name, n, e) in cases {
            assert!(RsaPublicKey::new(&n, &e).is_none(), "{name}");
        }
    }
}
