//! Token minting for tests and the development identity provider: RSA signing keys
//! published as a JWKS, RS256 and HS256 tokens with chosen claims.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::PrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA signing key with its `kid`.
#[derive(Clone)]
pub struct Signer {
    pub kid: String,
    pub key: PrivateKey,
}

impl Signer {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> Signer {
        Signer::generate_bits(kid, 2048)
    }

    /// A fresh key with a modulus of exactly `bits` bits.
    pub fn generate_bits(kid: &str, bits: usize) -> Signer {
        let key = PrivateKey::new(&mut getrandom::SysRng, bits).expect("RSA key generation");
        assert_eq!(key.n().bit_width() as usize, bits, "modulus size");
        Signer {
            kid: kid.to_string(),
            key,
        }
    }

    /// Loads a PKCS#8 DER key, or generates and saves one.
    pub fn load_or_create(path: &std::path::Path, kid: &str) -> Signer {
        if let Ok(der) = std::fs::read(path) {
            if let Ok(key) = PrivateKey::from_pkcs8_der(&der) {
                return Signer {
                    kid: kid.to_string(),
                    key,
                };
            }
        }
        let signer = Signer::generate(kid);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let der = signer.key.to_pkcs8_der().expect("encode key");
        std::fs::write(path, der.as_bytes()).expect("write key file");
        signer
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let public = self.key.to_public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": b64(public.n_bytes()), "e": b64(public.e_bytes()),
        })
    }

    /// Signs `header.payload` with RS256.
    pub fn sign(&self, signing_input: &str) -> Vec<u8> {
        self.sign_with("RS256", signing_input)
    }

    /// Signs `header.payload` with RS256/384/512 or PS256/384/512.
    pub fn sign_with(&self, alg: &str, signing_input: &str) -> Vec<u8> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        let m = signing_input.as_bytes();
        let mut rng = getrandom::SysRng;
        let pss = |sig: rsa::pss::Signature| sig.to_vec();
        match alg {
            "PS256" => {
                return pss(rsa::pss::SigningKey::<Sha256>::new(self.key.clone())
                    .try_sign_with_rng(&mut rng, m)
                    .expect("sign"))
            }
            "PS384" => {
                return pss(rsa::pss::SigningKey::<sha2::Sha384>::new(self.key.clone())
                    .try_sign_with_rng(&mut rng, m)
                    .expect("sign"))
            }
            "PS512" => {
                return pss(rsa::pss::SigningKey::<sha2::Sha512>::new(self.key.clone())
                    .try_sign_with_rng(&mut rng, m)
                    .expect("sign"))
            }
            _ => {}
        }
        match alg {
            "RS384" => self.key.pkcs1v15_sign::<sha2::Sha384>(m),
            "RS512" => self.key.pkcs1v15_sign::<sha2::Sha512>(m),
            _ => self.key.pkcs1v15_sign::<Sha256>(m),
        }
        .expect("sign")
    }

    /// A token signed with `alg` (RS256/384/512, PS256/384/512) and this key's `kid`.
    pub fn mint_alg(&self, alg: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": self.kid});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign_with(alg, &input);
        format!("{input}.{}", b64(sig))
    }

    /// An RS256 token with these claims and this key's `kid`.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_header(
            &json!({"alg": "RS256", "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// An RS256 token with an arbitrary header.
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = self.sign(&input);
        format!("{input}.{}", b64(sig))
    }

    /// The DER SubjectPublicKeyInfo (what an attacker would use as an HS256 secret).
    pub fn public_der(&self) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey;
        self.key
            .to_public_key()
            .to_public_key_der()
            .expect("der")
            .as_bytes()
            .to_vec()
    }
}

/// An ECDSA signing key (ES256 on P-256, ES384 on P-384, ES512 on P-521) with its `kid`.
pub enum EcSigner {
    /// ES256.
    P256(String, p256::ecdsa::SigningKey),
    /// ES384.
    P384(String, p384::ecdsa::SigningKey),
    /// ES512.
    P521(String, Box<p521::ecdsa::SigningKey>),
}

impl EcSigner {
    /// A key for `alg` from secret bytes (32 for ES256, 48 for ES384, 66 for ES512);
    /// `None` if they are not a valid scalar.
    pub fn from_secret(kid: &str, alg: &str, secret: &[u8]) -> Option<EcSigner> {
        match alg {
            "ES512" => p521::ecdsa::SigningKey::from_slice(secret.get(..66)?)
                .ok()
                .map(|k| EcSigner::P521(kid.to_string(), Box::new(k))),
            "ES384" => p384::ecdsa::SigningKey::from_slice(secret.get(..48)?)
                .ok()
                .map(|k| EcSigner::P384(kid.to_string(), k)),
            _ => p256::ecdsa::SigningKey::from_slice(secret.get(..32)?)
                .ok()
                .map(|k| EcSigner::P256(kid.to_string(), k)),
        }
    }

    /// A fresh key for `alg` (ES256, ES384 or ES512).
    pub fn generate(kid: &str, alg: &str) -> EcSigner {
        loop {
            let mut secret = [0u8; 66];
            getrandom::fill(&mut secret).expect("random");
            if alg == "ES512" {
                // P-521's order is just below 2^521: the top byte of its 66 is 0 or 1.
                secret[0] &= 1;
            }
            if let Some(k) = EcSigner::from_secret(kid, alg, &secret) {
                return k;
            }
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let (kid, crv, alg, point) = match self {
            EcSigner::P256(kid, k) => (
                kid,
                "P-256",
                "ES256",
                k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            ),
            EcSigner::P384(kid, k) => (
                kid,
                "P-384",
                "ES384",
                k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
            ),
            EcSigner::P521(kid, k) => (
                kid,
                "P-521",
                "ES512",
                p521::ecdsa::VerifyingKey::from(&**k)
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            ),
        };
        let n = (point.len() - 1) / 2;
        json!({"kty": "EC", "use": "sig", "alg": alg, "kid": kid, "crv": crv,
               "x": b64(&point[1..1 + n]), "y": b64(&point[1 + n..])})
    }

    /// A token with these claims, signed `r || s` as JWS wants.
    pub fn mint(&self, claims: &Value) -> String {
        let (kid, alg) = match self {
            EcSigner::P256(kid, _) => (kid, "ES256"),
            EcSigner::P384(kid, _) => (kid, "ES384"),
            EcSigner::P521(kid, _) => (kid, "ES512"),
        };
        self.sign_jws(&json!({"alg": alg, "typ": "JWT", "kid": kid}), claims)
    }

    /// A JWS of any header and claims, signed by this key.
    pub fn sign_jws(&self, header: &Value, claims: &Value) -> String {
        use p256::ecdsa::signature::Signer as _;
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let sig = match self {
            EcSigner::P256(_, k) => {
                let s: p256::ecdsa::Signature = k.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            EcSigner::P384(_, k) => {
                let s: p384::ecdsa::Signature = k.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            EcSigner::P521(_, k) => {
                let s: p521::ecdsa::Signature = k.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
        };
        format!("{input}.{}", b64(sig))
    }
}

/// An Ed25519 signing key with its `kid` (EdDSA, RFC 8037).
pub struct EdSigner(pub String, pub ed25519_dalek::SigningKey);

impl EdSigner {
    /// A key from its 32 secret bytes.
    pub fn from_secret(kid: &str, secret: &[u8; 32]) -> EdSigner {
        EdSigner(
            kid.to_string(),
            ed25519_dalek::SigningKey::from_bytes(secret),
        )
    }

    /// A fresh key.
    pub fn generate(kid: &str) -> EdSigner {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("random");
        EdSigner(
            kid.to_string(),
            ed25519_dalek::SigningKey::from_bytes(&secret),
        )
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.0,
               "x": b64(self.1.verifying_key().as_bytes())})
    }

    /// A token with these claims.
    pub fn mint(&self, claims: &Value) -> String {
        use ed25519_dalek::Signer as _;
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.0});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        format!("{input}.{}", b64(self.1.sign(input.as_bytes()).to_bytes()))
    }
}

/// The public JWK of an ECDSA key without `kid`, `use` or `alg`: what a DPoP proof's
/// header carries.
pub fn proof_jwk(key: &EcSigner) -> Value {
    bare_jwk(key.jwk())
}

/// A public JWK without `kid`, `use` or `alg` (any key type).
pub fn bare_jwk(mut jwk: Value) -> Value {
    if let Some(o) = jwk.as_object_mut() {
        for m in ["kid", "use", "alg"] {
            o.remove(m);
        }
    }
    jwk
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, computed independently of the
/// filter: serde_json's map is ordered by key, so the required members serialize in
/// the canonical order.
pub fn jkt(jwk: &Value) -> String {
    use sha2::Digest;
    let required: &[&str] = match jwk["kty"].as_str() {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"],
    };
    let mut canonical = serde_json::Map::new();
    for m in required {
        canonical.insert((*m).to_string(), jwk[*m].clone());
    }
    b64(sha2::Sha256::digest(Value::Object(canonical).to_string()))
}

/// A DPoP proof (RFC 9449) by `key` for `htm` `htu` and access token `token`.
pub fn dpop_proof(
    key: &EcSigner,
    htm: &str,
    htu: &str,
    token: &str,
    iat: i64,
    jti: &str,
) -> String {
    use sha2::Digest;
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": proof_jwk(key)});
    let claims = json!({"jti": jti, "htm": htm, "htu": htu, "iat": iat,
                        "ath": b64(sha2::Sha256::digest(token))});
    key.sign_jws(&header, &claims)
}

/// A JWKS document for these signers.
pub fn jwks(signers: &[&Signer]) -> String {
    json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
}

/// HMAC-SHA256 over `input`.
pub fn hmac(secret: &[u8], input: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("hmac key");
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// An HS256, HS384 or HS512 token.
pub fn mint_hs(alg: &str, secret: &[u8], claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(json!({"alg": alg, "typ": "JWT"}).to_string()),
        b64(claims.to_string())
    );
    let tag = match alg {
        "HS384" => {
            let mut mac = <Hmac<sha2::Sha384> as KeyInit>::new_from_slice(secret).expect("key");
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "HS512" => {
            let mut mac = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(secret).expect("key");
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => hmac(secret, &input),
    };
    format!("{input}.{}", b64(tag))
}

/// An HS256 token.
pub fn mint_hs256(secret: &[u8], claims: &Value) -> String {
    mint_hs256_with_header(secret, &json!({"alg": "HS256", "typ": "JWT"}), claims)
}

/// An HS256 token with an arbitrary header.
pub fn mint_hs256_with_header(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    format!("{input}.{}", b64(hmac(secret, &input)))
}

/// Standard claims for a subject: issuer, audience, a lifetime from now, plus `extra`.
pub fn claims(iss: &str, aud: &str, sub: &str, ttl_s: i64, extra: Value) -> Value {
    let now = now();
    let mut c = json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + ttl_s});
    if let (Some(obj), Value::Object(add)) = (c.as_object_mut(), extra) {
        obj.extend(add);
    }
    c
}
