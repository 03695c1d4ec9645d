//! Wire format of Envoy's `verify_signature` foreign function (protobuf messages
//! `VerifySignatureArguments` and `VerifySignatureResult` of Envoy's
//! `source/extensions/common/wasm/ext/verify_signature.proto`), encoded by hand: four
//! length-delimited fields do not justify a protobuf runtime in the module.

use crate::algorithm::Hash;
use crate::keys::{EcKey, RsaKey};
use crate::verify::{ecdsa_signature_der, BackendError, SignatureBackend};

/// Name of the foreign function.
pub const VERIFY_SIGNATURE: &str = "verify_signature";

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Encodes `VerifySignatureArguments { hash_function, public_key (DER), signature, text }`.
pub fn encode_args(hash: &str, public_key_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(public_key_der.len() + signature.len() + text.len() + 24);
    bytes_field(&mut out, 1, hash.as_bytes());
    bytes_field(&mut out, 2, public_key_der);
    bytes_field(&mut out, 3, signature);
    bytes_field(&mut out, 4, text);
    out
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Decodes `VerifySignatureResult`; `Some(true)` only for an explicit `result = true`.
/// `None` means the bytes are not a valid message.
pub fn decode_result(buf: &[u8]) -> Option<bool> {
    let mut pos = 0;
    let mut result = false;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos)?;
        match (key >> 3, key & 7) {
            (1, 0) => result = read_varint(buf, &mut pos)? != 0,
            (_, 0) => {
                read_varint(buf, &mut pos)?;
            }
            (_, 2) => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                pos = pos.checked_add(len).filter(|&end| end <= buf.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

/// The host's `verify_signature` as a [`SignatureBackend`]: everything but the call
/// itself — which signatures are worth a call, the DER re-encoding of ECDSA signatures,
/// the wire format — happens here. `call` sends the encoded arguments and returns the
/// host's answer (`Ok(None)`: an empty one).
pub struct EnvoyVerifier<F>(pub F);

impl<F: Fn(&[u8]) -> Result<Option<Vec<u8>>, BackendError>> EnvoyVerifier<F> {
    fn verify(
        &self,
        hash: Hash,
        der: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Result<bool, BackendError> {
        let args = encode_args(hash.name(), der, signature, message);
        match (self.0)(&args) {
            Ok(Some(out)) => {
                decode_result(&out).ok_or_else(|| BackendError("undecodable result".into()))
            }
            Ok(None) => Err(BackendError("empty result".into())),
            Err(e) => Err(e),
        }
    }
}

impl<F: Fn(&[u8]) -> Result<Option<Vec<u8>>, BackendError>> SignatureBackend for EnvoyVerifier<F> {
    fn verify_rsa(
        &self,
        key: &RsaKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        // A signature of another length than the modulus can never verify.
        if signature.len() != key.public.size() {
            return Ok(false);
        }
        self.verify(hash, &key.spki_der, signature, message)
    }

    fn verify_ecdsa(
        &self,
        key: &EcKey,
        hash: Hash,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, BackendError> {
        let len = key.curve.coordinate_len();
        // JWS's `r || s` as the DER BoringSSL takes.
        let Some(der) = ecdsa_signature_der(signature, len) else {
            return Ok(false);
        };
        self.verify(hash, &key.spki_der, &der, message)
    }

    fn name(&self) -> &'static str {
        "envoy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_encoding_is_protobuf() {
        let out = encode_args("sha256", &[0x30, 0x01], &[0xaa; 200], b"t");
        assert_eq!(&out[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&out[8..12], &[0x12, 2, 0x30, 0x01]);
        // 200 needs a two-byte varint length.
        assert_eq!(&out[12..15], &[0x1a, 0xc8, 0x01]);
        assert_eq!(&out[out.len() - 3..], &[0x22, 1, b't']);
    }

    #[test]
    fn result_decoding() {
        let cases: Vec<(Vec<u8>, Option<bool>)> = vec![
            (vec![0x08, 0x01], Some(true)),
            (vec![0x08, 0x00], Some(false)),
            (vec![], Some(false)),
            (vec![0x08, 0x00, 0x12, 0x03, b'b', b'a', b'd'], Some(false)),
            (vec![0x12, 0x00, 0x08, 0x01], Some(true)),
            (vec![0x12, 0x05, b'x'], None),
            (vec![0x08], None),
            (vec![0x0d, 0, 0, 0, 0], None),
        ];
        for (buf, want) in cases {
            assert_eq!(decode_result(&buf), want, "{buf:?}");
        }
    }

    #[test]
    fn the_host_verifier_calls_only_for_signatures_that_may_verify() {
        use crate::keys::{Key, KeySet};
        use std::cell::RefCell;
        let doc = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"e",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        let (set, _) = KeySet::parse(doc, 1 << 16).expect("jwks");
        let Some(Key::Ec(key)) = set
            .candidates(Some("e"), crate::algorithm::Algorithm::ES256)
            .next()
        else {
            panic!("an EC key");
        };
        let sent = RefCell::new(Vec::new());
        let host = EnvoyVerifier(|args: &[u8]| {
            sent.borrow_mut().push(args.to_vec());
            Ok(Some(vec![0x08, 0x01]))
        });
        // A signature of the wrong size is refused without a call.
        assert_eq!(
            host.verify_ecdsa(key, Hash::Sha256, b"m", &[1; 63]),
            Ok(false)
        );
        assert!(sent.borrow().is_empty());
        // `r || s` goes out as DER: SEQUENCE of two INTEGERs.
        assert_eq!(
            host.verify_ecdsa(key, Hash::Sha256, b"m", &[1; 64]),
            Ok(true)
        );
        let args = sent.borrow()[0].clone();
        let der = ecdsa_signature_der(&[1; 64], 32).expect("der");
        assert!(args.windows(der.len()).any(|w| w == der.as_slice()));
        // Host failures are backend errors, never "invalid".
        let failing = EnvoyVerifier(|_: &[u8]| Err(BackendError("host status 10".to_string())));
        assert!(failing
            .verify_ecdsa(key, Hash::Sha256, b"m", &[1; 64])
            .is_err());
        let empty = EnvoyVerifier(|_: &[u8]| Ok(None));
        assert!(empty
            .verify_ecdsa(key, Hash::Sha256, b"m", &[1; 64])
            .is_err());
    }
}
