//! The crypto vocabulary: signature algorithms, their families, curves and hashes. A
//! leaf module: configuration, keys, the verifier and the caches all speak it, and it
//! imports none of them.

/// Signature algorithms a provider may accept. `none` does not exist here by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, keys from a JWKS.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// HMAC-SHA384.
    HS384,
    /// HMAC-SHA512.
    HS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// ECDSA on P-521 with SHA-512.
    ES512,
    /// EdDSA on Ed25519 (RFC 8037).
    EdDSA,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256, 32-byte salt.
    PS256,
    /// RSASSA-PSS with SHA-384, 48-byte salt.
    PS384,
    /// RSASSA-PSS with SHA-512, 64-byte salt.
    PS512,
}

/// The elliptic curves of ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (`crv` "P-256").
    P256,
    /// NIST P-384 (`crv` "P-384").
    P384,
    /// NIST P-521 (`crv` "P-521").
    P521,
}

impl Curve {
    /// The size of a coordinate (and of each half of a JWS signature), bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// The hash an algorithm signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The name Envoy's `verify_signature` takes.
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }
}

/// Every algorithm with its JOSE name.
pub const ALGORITHMS: [(&str, Algorithm); 13] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("ES512", Algorithm::ES512),
    ("EdDSA", Algorithm::EdDSA),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
];

impl Algorithm {
    /// Maps a JOSE `alg` header value, exactly (case-sensitive, per RFC 7515 §4.1.1).
    pub fn from_header(alg: &str) -> Option<Algorithm> {
        ALGORITHMS
            .iter()
            .find(|(name, _)| *name == alg)
            .map(|(_, a)| *a)
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        ALGORITHMS
            .iter()
            .find(|(_, a)| *a == self)
            .map_or("", |(name, _)| name)
    }

    /// Whether it is an RSA algorithm, PKCS#1 v1.5 or PSS (RSA keys from a JWKS).
    pub fn is_rsa(self) -> bool {
        matches!(
            self,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    }

    /// Whether it is RSASSA-PSS.
    pub fn is_pss(self) -> bool {
        matches!(self, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512)
    }

    /// Whether it is an HMAC algorithm (a shared secret); else keys come from a JWKS.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// The curve of an ECDSA algorithm.
    pub fn curve(self) -> Option<Curve> {
        match self {
            Algorithm::ES256 => Some(Curve::P256),
            Algorithm::ES384 => Some(Curve::P384),
            Algorithm::ES512 => Some(Curve::P521),
            _ => None,
        }
    }

    /// The hash it signs with.
    pub fn hash(self) -> Hash {
        match self {
            Algorithm::RS256 | Algorithm::HS256 | Algorithm::ES256 | Algorithm::PS256 => {
                Hash::Sha256
            }
            Algorithm::RS384 | Algorithm::HS384 | Algorithm::ES384 | Algorithm::PS384 => {
                Hash::Sha384
            }
            // Ed25519 hashes with SHA-512 inside the signature scheme.
            Algorithm::RS512
            | Algorithm::HS512
            | Algorithm::ES512
            | Algorithm::EdDSA
            | Algorithm::PS512 => Hash::Sha512,
        }
    }
}
