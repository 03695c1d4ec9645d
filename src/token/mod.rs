//! Tokens: where a request's credential comes from ([`extract`]), the compact JWS
//! ([`jws`]), the standard claims ([`claims`]), claim references ([`claim_path`]) and the
//! verified-token caches ([`cache`]); which tokens count beyond those ([`policy`]: `typ`,
//! lifetime, claim values).

pub mod cache;
pub mod claim_path;
pub mod claims;
pub mod extract;
pub mod jws;
pub mod policy;

pub use self::claim_path::ClaimPath;
pub use self::claims::{
    aud_names, check_claims, check_issuer_audience, check_nbf, check_times, numeric_date, Audiences,
};
pub use self::extract::{
    cookie_without, credential, path_without_param, Credential, NotOneCredential, Scheme,
    TokenSource,
};
pub use self::jws::{compact, parse, split};
pub use self::policy::{ClaimCondition, IssuerTemplate};
