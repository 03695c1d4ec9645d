//! The sender constraint step, on every use of a token: a certificate-bound token
//! (`cnf.x5t#S256`) must come over a connection with that client certificate, a
//! DPoP-bound one (`cnf.jkt`) as `Authorization: DPoP` with a valid proof by that key —
//! when its provider accepts such tokens (`mtls_binding`, `dpop`); with `mode: required`
//! every token must be bound so.

use super::Verified;
use crate::pipeline::trace::{Finding, Step, Tracer};
use crate::pipeline::{Inputs, Stop};
use crate::reply::Denial;
use crate::request::Request;
use crate::sender::{
    check_proof, forwarded_cert_hash, request_htu, x5t_s256, BindingMode, ProofContext, ProofError,
    ReplayClaim,
};
use crate::token::{Credential, Scheme, TokenSource};
use serde_json::Value;

/// `Ok` carries the proof's replay entry, for the worker to claim once per process.
pub(super) fn check(
    inp: &Inputs,
    req: &Request,
    v: &Verified,
    cred: Credential,
    t: &mut Tracer,
) -> Result<Option<ReplayClaim>, Stop> {
    let p = v.config;
    let cnf = v.claims.get("cnf").and_then(Value::as_object);
    let cnf_member = |name: &str| cnf.and_then(|c| c.get(name)).and_then(Value::as_str);
    if let Some(m) = &p.mtls_binding {
        let presented = if m.trust_forwarded_client_cert {
            let values: Vec<&str> = req.header_values("x-forwarded-client-cert").collect();
            match values.as_slice() {
                [one] => forwarded_cert_hash(one).and_then(x5t_s256),
                _ => None,
            }
        } else {
            req.peer_certificate_sha256.as_deref().and_then(x5t_s256)
        };
        let verdict = match (cnf_member("x5t#S256"), presented) {
            (Some(want), Some(have)) if want == have => Ok("the client certificate's hash"),
            (Some(_), Some(_)) => Err("another client certificate than the token's"),
            (Some(_), None) => Err("no client certificate"),
            (None, _) if m.mode == BindingMode::Required => {
                Err("token not certificate-bound (mtls_binding required)")
            }
            (None, _) => Ok("not bound (bearer token accepted)"),
        };
        t.token(
            Step::CertificateBinding,
            verdict.is_ok(),
            || match verdict {
                Ok(why) | Err(why) => Finding::Binding(why),
            },
        );
        if let Err(why) = verdict {
            return Err(Stop::deny(Denial::InvalidToken, why));
        }
    }
    // The scheme the credential came with (only `Authorization` has one).
    let scheme = if p.token == TokenSource::Authorization {
        cred.scheme
    } else {
        Scheme::Bearer
    };
    let jkt = cnf_member("jkt");
    let Some(d) = &p.dpop else {
        if scheme == Scheme::Dpop {
            t.token(Step::Dpop, false, || {
                Finding::Says("the provider does not accept DPoP")
            });
            return Err(Stop::deny(
                Denial::InvalidToken,
                "DPoP not accepted by the provider",
            ));
        }
        return Ok(None);
    };
    let refuse = |why: &'static str, t: &mut Tracer| {
        t.token(Step::Dpop, false, || Finding::Says(why));
        Err(Stop::deny(Denial::InvalidDpopProof(d.algs.clone()), why))
    };
    let jkt = match (scheme, jkt) {
        (Scheme::Bearer, Some(_)) => return refuse("DPoP-bound token sent as Bearer", t),
        (Scheme::Bearer, None) if d.mode == BindingMode::Required => {
            return refuse("DPoP required: a bearer token", t)
        }
        (Scheme::Bearer, None) => {
            t.token(Step::Dpop, true, || {
                Finding::Says("bearer token (dpop allowed, not required)")
            });
            return Ok(None);
        }
        (Scheme::Dpop, None) => return refuse("token not DPoP-bound (no cnf.jkt)", t),
        (Scheme::Dpop, Some(jkt)) => jkt,
    };
    let proofs: Vec<&str> = req.header_values("dpop").collect();
    let proof = match proofs.as_slice() {
        [one] => *one,
        [] => return refuse(ProofError::Missing.as_str(), t),
        _ => return refuse(ProofError::Several.as_str(), t),
    };
    let Some(htu) = request_htu(req, d.public_base_url.as_deref()) else {
        return refuse(ProofError::Htu.as_str(), t);
    };
    let ctx = ProofContext {
        method: &req.method,
        htu: &htu,
        token: cred.token,
        jkt,
        now_s: inp.now_s,
        skew_s: inp.config.clock_skew_s,
    };
    match check_proof(proof, d, &ctx, inp.backend) {
        Ok(claim) => {
            t.token(Step::Dpop, true, || {
                Finding::ProofValid(req.method.clone(), htu.clone())
            });
            Ok(Some(claim))
        }
        Err(ProofError::Backend) => {
            t.token(Step::Dpop, false, || {
                Finding::Says(ProofError::Backend.as_str())
            });
            Err(Stop::deny(
                Denial::Unavailable,
                ProofError::Backend.as_str(),
            ))
        }
        Err(e) => refuse(e.as_str(), t),
    }
}
