//! The revocation step, on every use of a token (verified now, from a cache or from
//! another worker's verdict): the provider's `require_jti`, then its revocation list. A
//! list that has never loaded makes the request wait for its first fetch; then
//! `on_unavailable` decides.

use super::Verified;
use crate::config::OnUnavailable;
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::pipeline::{Inputs, RevocationNote, Stop, Wait};
use crate::reply::Denial;
use crate::shared::KeyAvailability;
use serde_json::Value;

/// Checks `require_jti` and the provider's list for a verified token.
pub(super) fn check(inp: &Inputs, v: &Verified, t: &mut Tracer) -> Result<RevocationNote, Stop> {
    let p = v.config;
    if p.require_jti {
        let has = v.claims.get("jti").is_some_and(Value::is_string);
        t.token(Step::Jti, has, || Finding::Jti(has));
        if !has {
            return Err(Stop::deny(Denial::InvalidToken, "no jti"));
        }
    }
    let Some((_, source)) = inp.config.revocation_of(v.provider) else {
        return Ok(RevocationNote::None);
    };
    match inp.revocations.revocation(v.provider) {
        (_, Some(list)) => match list.check(&v.claims) {
            Some(why) => {
                t.token(Step::Revocation, false, || Finding::Revoked(why.describe()));
                let mut stop = Stop::deny(Denial::InvalidToken, "revoked");
                stop.revocation = RevocationNote::Revoked;
                Err(stop)
            }
            None => {
                t.token(Step::Revocation, true, || Finding::NotRevoked(list.len()));
                Ok(RevocationNote::None)
            }
        },
        (KeyAvailability::Loading, None) => {
            t.token(Step::Revocation, false, || Finding::ListLoading);
            let wait = Wait::Revocation {
                provider: v.provider,
            };
            Err(Stop::wait(wait, "revocation list loading"))
        }
        _ => match source.on_unavailable {
            OnUnavailable::Deny => {
                t.token(Step::Revocation, false, || {
                    Finding::ListNeverObtained(false)
                });
                Err(Stop::deny(
                    Denial::Unavailable,
                    "revocation list unavailable",
                ))
            }
            OnUnavailable::Allow => {
                t.token(Step::Revocation, true, || Finding::ListNeverObtained(true));
                Ok(RevocationNote::Unchecked)
            }
        },
    }
}
