//! The identity step: the provider's required claims are present; and the identity
//! headers the upstream receives, computed here because audit mode forwards them even
//! when a later step would deny.

use super::Verified;
use crate::authz::{identity, Refused};
use crate::pipeline::trace::{check, Finding, Step, Tracer};
use crate::pipeline::Inputs;
use crate::token::ClaimPath;

/// `Err` names the first required claim that is missing.
pub(super) fn required_claims(v: &Verified, t: &mut Tracer) -> Result<(), Refused> {
    let provider = v.config;
    let missing = identity::missing_claim(&v.claims, &provider.required_claims);
    if !provider.required_claims.is_empty() {
        t.record(|tr| {
            let finding = match missing {
                Some(c) => Finding::ClaimMissing(c.to_string()),
                None => Finding::ClaimsPresent(
                    provider
                        .required_claims
                        .iter()
                        .map(|c| ClaimPath::as_str(c).to_string())
                        .collect(),
                ),
            };
            tr.identity
                .push(check(Step::RequiredClaims, missing.is_none(), finding))
        });
    }
    match missing {
        Some(claim) => Err(Refused::MissingClaim(claim.to_string())),
        None => Ok(()),
    }
}

/// The identity headers from the token's claims (`Err` names a header whose claim has
/// control characters).
pub(super) fn headers(inp: &Inputs, v: &Verified) -> Result<Vec<(String, String)>, Refused> {
    identity::forward_headers(&inp.config.forward, &v.claims, &v.payload_b64)
}
