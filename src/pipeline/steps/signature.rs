//! The signature step for a token whose provider is chosen: the algorithm must be one the
//! provider pins; an HMAC provider checks its secret, any other its key set — the key
//! `kid` names (a token without `kid` against at most [`MAX_KIDLESS_TRIES`] keys), waiting
//! for the first load of the keys or for one refetch when the `kid` is unknown. The
//! algorithm families themselves are `verify`'s.

use crate::algorithm::Algorithm;
use crate::pipeline::{Inputs, Stop, Wait};
use crate::reply::Denial;
use crate::shared::KeyAvailability;
use crate::verify::{verify_hmac, with_key_set};

/// Tokens without `kid` are tried against at most this many keys (bounds the RSA work
/// one request can cause).
pub const MAX_KIDLESS_TRIES: usize = 4;

/// `Ok` carries the fingerprint of the key that verified the token (`None` for HMAC);
/// `Err` a denial, or a wait for keys.
pub fn verify_signature(
    inp: &Inputs,
    provider: usize,
    (alg, kid): (Algorithm, Option<&str>),
    message: &[u8],
    signature: &[u8],
) -> Result<Option<u64>, Stop> {
    let deny = |d: Denial, note| Err(Stop::deny(d, note));
    let Some(p) = inp.config.providers.get(provider) else {
        return deny(Denial::InvalidToken, "no such provider");
    };
    if !p.algorithms.contains(&alg) {
        return deny(Denial::InvalidToken, "algorithm not accepted");
    }
    if alg.is_hmac() {
        let ok = p
            .secret
            .as_ref()
            .is_some_and(|s| verify_hmac(&s.0, alg.hash(), message, signature));
        return if ok {
            Ok(None)
        } else {
            deny(Denial::InvalidToken, "bad signature")
        };
    }
    let wait = |refetch, note| Err(Stop::wait(Wait::Keys { provider, refetch }, note));
    let keys = match inp.keys_of(provider) {
        (KeyAvailability::Ready, Some(k)) => k,
        (KeyAvailability::Loading, _) => return wait(false, "keys loading"),
        _ => return deny(Denial::Unavailable, "no keys obtainable"),
    };
    if kid.is_some_and(|k| !keys.has_kid(k)) {
        if inp.may_refetch(provider) {
            return wait(true, "unknown kid");
        }
        return deny(Denial::InvalidToken, "unknown kid");
    }
    match with_key_set(
        inp.backend,
        keys,
        (kid, alg),
        message,
        signature,
        MAX_KIDLESS_TRIES,
    ) {
        Ok(Some(fingerprint)) => Ok(Some(fingerprint)),
        Ok(None) => deny(Denial::InvalidToken, "bad signature"),
        Err(_) => deny(Denial::Unavailable, "signature backend failed"),
    }
}
