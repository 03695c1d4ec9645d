//! What the Envoy process shares between its workers: a key-value store with
//! compare-and-swap ([`store`]), and the once-per-process fetch machine of a document
//! (a JWKS, a revocation list): one worker holds the fetch lease ([`lease`]), publishes
//! what it fetched, and every worker adopts it ([`fetched`]).

pub mod fetched;
pub mod lease;
pub mod store;

pub use self::fetched::{fetched_body, Document, FetchError, Fetched};
pub use self::lease::{FetchPolicy, FetchState, KeyAvailability, LEASE_GRACE_MS};
pub use self::store::*;
