//! The revocation step, on every use of a token (verified now, from a cache or from
//! another worker's verdict): the provider's `require_jti`, then its revocation list. A
//! list that has never loaded makes the request wait for its first fetch; then
//! `on_unavailable` decides.

use super::Verified;
use crate::config::OnUnavailable;
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::pipeline::{Decision, Inputs, RevocationNote, Wait};
use crate::reply::Denial;
use crate::shared::KeyAvailability;
use serde_json::Value;

/// A refusal or a wait of the revocation step: the decision, a note, what to count.
pub(super) type Refused = (Decision, &'static str, RevocationNote);

/// Checks `require_jti` and the provider's list for a verified token.
pub(super) fn check(inp: &Inputs, v: &Verified, t: &mut Tracer) -> Result<RevocationNote, Refused> {
    let p = v.config;
    if p.require_jti {
        let has = v.claims.get("jti").is_some_and(Value::is_string);
        t.token(Step::Jti, has, || Finding::Jti(has));
        if !has {
            let d = Decision::Deny(Denial::InvalidToken);
            return Err((d, "no jti", RevocationNote::None));
        }
    }
    let Some((_, source)) = inp.config.revocation_of(v.provider) else {
        return Ok(RevocationNote::None);
    };
    match inp.revocations.revocation(v.provider) {
        (_, Some(list)) => match list.check(&v.claims) {
            Some(why) => {
                t.token(Step::Revocation, false, || Finding::Revoked(why.describe()));
                let d = Decision::Deny(Denial::InvalidToken);
                Err((d, "revoked", RevocationNote::Revoked))
            }
            None => {
                t.token(Step::Revocation, true, || Finding::NotRevoked(list.len()));
                Ok(RevocationNote::None)
            }
        },
        (KeyAvailability::Loading, None) => {
            t.token(Step::Revocation, false, || Finding::ListLoading);
            let d = Decision::Await(Wait::Revocation {
                provider: v.provider,
            });
            Err((d, "revocation list loading", RevocationNote::None))
        }
        _ => match source.on_unavailable {
            OnUnavailable::Deny => {
                t.token(Step::Revocation, false, || {
                    Finding::ListNeverObtained(false)
                });
                let d = Decision::Deny(Denial::Unavailable);
                Err((d, "revocation list unavailable", RevocationNote::None))
            }
            OnUnavailable::Allow => {
                t.token(Step::Revocation, true, || Finding::ListNeverObtained(true));
                Ok(RevocationNote::Unchecked)
            }
        },
    }
}
