//! `providers[i].dpop` and `providers[i].mtls_binding`: sender-constrained tokens — a
//! token bound to a key whose possession each request proves (DPoP, RFC 9449) or to the
//! client certificate of the TLS connection (RFC 8705). Absent: not accepted (a token
//! with `cnf` is then a bearer token, as before).

use super::reader::{choose, Fields};
use crate::algorithm::{Algorithm, ALGORITHMS};
use crate::error::{err, ConfigError};
use crate::sender::normalize_origin;
use crate::token::TokenSource;

/// `dpop.algorithms` when not given.
pub const DEFAULT_PROOF_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];
/// `dpop.max_age_s` when not given: how old a proof's `iat` may be.
pub const DEFAULT_MAX_AGE_S: u64 = 60;
/// The largest `dpop.max_age_s`.
pub const MAX_MAX_AGE_S: u64 = 600;
/// `dpop.replay_entries` when not given (rounded up to whole buckets).
pub const DEFAULT_REPLAY_ENTRIES: usize = 65_536;
/// The largest `dpop.replay_entries`.
pub const MAX_REPLAY_ENTRIES: usize = 1 << 22;

pub use crate::sender::settings::{BindingMode, Dpop, MtlsBinding};

fn mode(g: &Fields) -> Result<BindingMode, ConfigError> {
    let v = g.required("mode")?;
    choose(
        v,
        &[
            ("required", BindingMode::Required),
            ("allowed", BindingMode::Allowed),
        ],
        &g.path("mode"),
    )
}

/// Reads `dpop` of a provider whose tokens come from `source`.
pub(super) fn read_dpop(
    provider: &Fields,
    source: &TokenSource,
) -> Result<Option<Dpop>, ConfigError> {
    let Some(g) = provider.object(
        "dpop",
        &[
            "mode",
            "algorithms",
            "max_age_s",
            "public_base_url",
            "replay_entries",
        ],
    )?
    else {
        return Ok(None);
    };
    if *source != TokenSource::Authorization {
        return err(
            g.path("mode"),
            "DPoP tokens come in the Authorization header: not with token.header, cookie or query",
        );
    }
    let mode = mode(&g)?;
    let algorithms: Vec<Algorithm> = match g.get("algorithms") {
        None => DEFAULT_PROOF_ALGORITHMS.to_vec(),
        Some(_) => g
            .required_items("algorithms")?
            .into_iter()
            .map(|(at, v)| choose(v, &ALGORITHMS, &at))
            .collect::<Result<_, _>>()?,
    };
    if algorithms.is_empty() {
        return err(g.path("algorithms"), "at least one algorithm is required");
    }
    if algorithms.iter().any(|a| a.is_hmac()) {
        return err(
            g.path("algorithms"),
            "proofs are signed with the client's public key: HS* is not possible",
        );
    }
    let max_age_s = g.u64_or("max_age_s", DEFAULT_MAX_AGE_S)?;
    if !(1..=MAX_MAX_AGE_S).contains(&max_age_s) {
        return err(
            g.path("max_age_s"),
            format!("must be between 1 and {MAX_MAX_AGE_S}"),
        );
    }
    let public_base_url = match g.opt_string("public_base_url")? {
        None => None,
        Some(url) => match normalize_origin(&url) {
            Some(origin) => Some(origin),
            None => {
                return err(
                    g.path("public_base_url"),
                    "must be an http(s) URL with a host and no path, query or fragment, like https://api.example.com",
                )
            }
        },
    };
    let replay_entries = g.usize_or("replay_entries", DEFAULT_REPLAY_ENTRIES)?;
    if !(crate::sender::replay::SLOTS..=MAX_REPLAY_ENTRIES).contains(&replay_entries) {
        return err(
            g.path("replay_entries"),
            format!(
                "must be between {} and {MAX_REPLAY_ENTRIES}",
                crate::sender::replay::SLOTS
            ),
        );
    }
    let replay_entries =
        replay_entries.div_ceil(crate::sender::replay::SLOTS) * crate::sender::replay::SLOTS;
    let algs = algorithms
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Some(Dpop {
        mode,
        algorithms,
        max_age_s: i64::try_from(max_age_s).unwrap_or(60),
        public_base_url,
        replay_entries,
        algs,
    }))
}

/// Reads `mtls_binding` of a provider.
pub(super) fn read_mtls(provider: &Fields) -> Result<Option<MtlsBinding>, ConfigError> {
    let Some(g) = provider.object("mtls_binding", &["mode", "trust_forwarded_client_cert"])? else {
        return Ok(None);
    };
    Ok(Some(MtlsBinding {
        mode: mode(&g)?,
        trust_forwarded_client_cert: g.bool_or("trust_forwarded_client_cert", false)?,
    }))
}
