//! Sender-constrained tokens: DPoP proofs ([`dpop`]), certificate-bound tokens
//! ([`mtls`]) and the process-wide replay store of DPoP proofs ([`replay`]).

pub mod dpop;
pub mod mtls;
pub mod replay;
pub mod settings;

pub use self::dpop::{
    check_proof, jwk_thumbprint, normalize_origin, request_htu, ProofContext, ProofError,
    MAX_JTI_BYTES, MAX_PROOF_BYTES,
};
pub use self::mtls::{forwarded_cert_hash, pem_certificate_der, x5t_s256};
pub use self::replay::{Claimed, ReplayClaim, ReplayStore};
pub use self::settings::BindingMode;

#[cfg(test)]
mod tests;
