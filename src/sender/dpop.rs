//! DPoP proofs (RFC 9449), host-free: the proof JWT's header, key, signature and claims,
//! the `htu` normalization, and the RFC 7638 key thumbprint a token's `cnf.jkt` names.
//!
//! Cheap checks come first: a proof is parsed, its claims, `ath` and thumbprint compared
//! before its signature costs anything. Replay is not decided here: an accepted proof
//! yields a [`ReplayClaim`] the VM enters in the process-wide store ([`super::replay`]).

use super::settings::Dpop;
use crate::algorithm::Algorithm;
use crate::keys::Key;
use crate::sender::replay::ReplayClaim;
use crate::token::compact;
use crate::token::numeric_date;
use crate::verify::{verify_with_key, SignatureBackend};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The longest proof read (a proof carries one public key: an RSA-4096 JWK fits well).
pub const MAX_PROOF_BYTES: usize = 8192;
/// The longest proof `jti`.
pub const MAX_JTI_BYTES: usize = 256;

/// JWK members that only private (or symmetric) keys have: a proof carrying one is refused.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused (for traces and debug logs; every case is a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// No `DPoP` header.
    Missing,
    /// More than one `DPoP` header.
    Several,
    /// Not a compact JWS of JSON header and claims, or too long.
    Shape,
    /// `typ` is not `dpop+jwt`.
    Typ,
    /// `alg` is not one the provider accepts for proofs.
    Alg,
    /// No usable public `jwk` in the header.
    Jwk,
    /// The `jwk` holds private key members.
    PrivateKey,
    /// `jti` missing, empty or too long.
    Jti,
    /// `htm` is not the request's method.
    Htm,
    /// `htu` is not the request's URI.
    Htu,
    /// `iat` missing, too old or in the future.
    Iat,
    /// `ath` is not the hash of the access token.
    Ath,
    /// The proof's key is not the one the token's `cnf.jkt` names.
    Key,
    /// The signature does not verify with the proof's key.
    Signature,
    /// The signature backend failed (not a verdict on the proof).
    Backend,
}

impl ProofError {
    /// Short description for traces and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofError::Missing => "no DPoP proof",
            ProofError::Several => "more than one DPoP header",
            ProofError::Shape => "proof is not a compact JWS with JSON header and claims",
            ProofError::Typ => "proof typ is not dpop+jwt",
            ProofError::Alg => "proof alg not accepted",
            ProofError::Jwk => "proof has no usable public jwk",
            ProofError::PrivateKey => "proof jwk holds a private key",
            ProofError::Jti => "proof jti missing or too long",
            ProofError::Htm => "proof htm is not the request method",
            ProofError::Htu => "proof htu is not the request URI",
            ProofError::Iat => "proof iat outside the window",
            ProofError::Ath => "proof ath is not the token's hash",
            ProofError::Key => "proof key is not the token's cnf.jkt",
            ProofError::Signature => "proof signature invalid",
            ProofError::Backend => "signature backend failed",
        }
    }
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ProofError {}

/// What a proof is checked against.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    /// The request's method (`:method`).
    pub method: &'a str,
    /// The request's URI, normalized ([`normalize_uri`]), without query.
    pub htu: &'a str,
    /// The access token, as sent.
    pub token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
    /// Now, seconds since the epoch.
    pub now_s: i64,
    /// How far in the future `iat` may be.
    pub skew_s: i64,
}

/// Checks a DPoP proof for a request; `Ok` is the entry the replay store must accept.
pub fn check_proof(
    proof: &str,
    settings: &Dpop,
    ctx: &ProofContext,
    backend: &dyn SignatureBackend,
) -> Result<ReplayClaim, ProofError> {
    // The same JWS layer as tokens: canonical base64url, strict JSON, no `crit`.
    let jws = compact(proof, MAX_PROOF_BYTES).map_err(|_| ProofError::Shape)?;
    let (header, signature) = (&jws.header, &jws.signature);
    let claims = crate::strict_json::parse_object(&jws.payload).ok_or(ProofError::Shape)?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(ProofError::Typ);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_header)
        .filter(|a| !a.is_hmac() && settings.algorithms.contains(a))
        .ok_or(ProofError::Alg)?;
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or(ProofError::Jwk)?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(ProofError::PrivateKey);
    }
    let key = Key::from_jwk(&Value::Object(jwk.clone()))
        .filter(|k| k.fits(alg))
        .ok_or(ProofError::Jwk)?;

    // The claims, then the binding: all cheap, before the signature.
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or(ProofError::Jti)?;
    if claims.get("htm").and_then(Value::as_str) != Some(ctx.method) {
        return Err(ProofError::Htm);
    }
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .and_then(normalize_uri)
        .ok_or(ProofError::Htu)?;
    if htu != ctx.htu {
        return Err(ProofError::Htu);
    }
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(ProofError::Iat)?;
    if iat < ctx.now_s.saturating_sub(settings.max_age_s)
        || iat > ctx.now_s.saturating_add(ctx.skew_s)
    {
        return Err(ProofError::Iat);
    }
    if claims.get("ath").and_then(Value::as_str) != Some(&access_token_hash(ctx.token)) {
        return Err(ProofError::Ath);
    }
    let thumbprint = jwk_thumbprint(jwk).ok_or(ProofError::Jwk)?;
    if thumbprint != ctx.jkt {
        return Err(ProofError::Key);
    }
    match verify_with_key(backend, &key, alg, jws.signing_input.as_bytes(), signature) {
        Ok(true) => {}
        Ok(false) => return Err(ProofError::Signature),
        Err(_) => return Err(ProofError::Backend),
    }
    Ok(ReplayClaim::new(
        &[thumbprint.as_bytes(), jti.as_bytes(), htu.as_bytes()],
        // Kept past the last second the proof could be accepted at (`iat + max_age_s`),
        // whatever the clock of the VM that sees it next.
        iat.saturating_add(settings.max_age_s).saturating_add(1),
    ))
}

/// `ath`: base64url(SHA-256(the access token's ASCII)).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// The RFC 7638 JWK SHA-256 thumbprint, base64url: SHA-256 over the key's required
/// members (RSA `e`, `kty`, `n`; EC `crv`, `kty`, `x`, `y`; OKP `crv`, `kty`, `x`) as
/// JSON in lexicographic order without whitespace. `None` for another key type or a
/// missing member.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty").and_then(Value::as_str)?;
    let members: &[&str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::from("{");
    for (i, m) in members.iter().enumerate() {
        let v = jwk.get(*m).and_then(Value::as_str)?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&Value::String((*m).into()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(v.into()).to_string());
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// An `http(s)` URI in the form proofs are compared in (RFC 9449 §4.3, RFC 3986 §6.2.2
/// and §6.2.3): scheme and host lower case, the scheme's default port dropped, an empty
/// path made `/`, percent-encodings upper case and unreserved characters decoded.
/// `None` for anything else: another scheme, user information, a query or fragment,
/// dot segments, bad escapes, spaces or control characters.
pub fn normalize_uri(uri: &str) -> Option<String> {
    if uri.contains(['?', '#']) || uri.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return None;
    }
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let at = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = (rest.get(..at)?, rest.get(at..)?);
    let authority = normalize_authority(authority, default_port)?;
    let path = normalize_path(path)?;
    Some(format!("{scheme}://{authority}{path}"))
}

/// `scheme://authority` of a base URL (a trailing `/` allowed, nothing after it).
pub fn normalize_origin(url: &str) -> Option<String> {
    let n = normalize_uri(url)?;
    let origin = n.strip_suffix('/')?;
    (!origin.ends_with('/') && origin.matches('/').count() == 2).then(|| origin.to_string())
}

/// The URI a proof for `req` must name: `base` (a normalized origin) or the request's
/// `:scheme` and `:authority`, then its path without query.
pub fn request_htu(req: &crate::request::Request, base: Option<&str>) -> Option<String> {
    let path = req.path_only();
    match base {
        Some(origin) => normalize_uri(&format!("{origin}{path}")),
        None => {
            let scheme = req.headers.first(":scheme").unwrap_or("http");
            normalize_uri(&format!("{scheme}://{}{path}", req.authority))
        }
    }
}

fn normalize_authority(authority: &str, default_port: u16) -> Option<String> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let a = authority.to_ascii_lowercase();
    let split = if a.starts_with('[') {
        a.find(']')? + 1
    } else {
        a.rfind(':').unwrap_or(a.len())
    };
    let (host, port) = (a.get(..split)?, a.get(split..)?);
    let host_ok = !host.is_empty()
        && if host.starts_with('[') {
            // An IP literal: something between the brackets.
            host.len() > 2
                && host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || matches!(b, b'[' | b']' | b':' | b'.'))
        } else {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        };
    if !host_ok {
        return None;
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        None => return None,
        Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?).filter(|p| *p != default_port)
        }
        Some(_) => return None,
    };
    Some(match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    })
}

fn normalize_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("/".into());
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    if out.split('/').any(|s| s == "." || s == "..") {
        return None;
    }
    Some(out)
}
