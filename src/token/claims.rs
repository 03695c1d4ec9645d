//! The token's standard claims: `exp` and `nbf` (with the clock skew), `iss` and `aud`.

use serde_json::{Map, Value};

/// Why standard claims were refused (debug logs only; all are 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// `exp` missing or not a number.
    MissingExp,
    /// `exp` has passed (beyond the skew).
    Expired,
    /// `nbf` is not a number.
    BadNbf,
    /// `nbf` is in the future (beyond the skew).
    NotYetValid,
    /// `iss` differs from the provider's issuer.
    Issuer,
    /// `aud` lists none of the provider's audiences.
    Audience,
}

impl ClaimError {
    /// Short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimError::MissingExp => "exp missing or not a number",
            ClaimError::Expired => "expired",
            ClaimError::BadNbf => "nbf not a number",
            ClaimError::NotYetValid => "not yet valid",
            ClaimError::Issuer => "issuer mismatch",
            ClaimError::Audience => "audience mismatch",
        }
    }
}

impl std::fmt::Display for ClaimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for ClaimError {}

/// A JSON NumericDate: an integer or a finite float (truncated); strings are refused.
pub fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
            }),
        _ => None,
    }
}

/// Just the time checks (`exp` required, `nbf` optional), for cheap early rejection.
pub fn check_times(
    claims: &Map<String, Value>,
    now_s: i64,
    skew_s: i64,
) -> Result<i64, ClaimError> {
    let exp = claims
        .get("exp")
        .and_then(numeric_date)
        .ok_or(ClaimError::MissingExp)?;
    if now_s >= exp.saturating_add(skew_s) {
        return Err(ClaimError::Expired);
    }
    check_nbf(claims, now_s, skew_s)?;
    Ok(exp)
}

/// `nbf`, when present, not after `now_s` (with `skew_s` of leeway).
pub fn check_nbf(claims: &Map<String, Value>, now_s: i64, skew_s: i64) -> Result<(), ClaimError> {
    if let Some(nbf) = claims.get("nbf") {
        let nbf = numeric_date(nbf).ok_or(ClaimError::BadNbf)?;
        if nbf > now_s.saturating_add(skew_s) {
            return Err(ClaimError::NotYetValid);
        }
    }
    Ok(())
}

/// All standard claims: times, then `iss` and `aud` when the provider configures them.
/// Returns `exp`.
pub fn check_claims(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audiences: &[String],
    now_s: i64,
    skew_s: i64,
) -> Result<i64, ClaimError> {
    let exp = check_times(claims, now_s, skew_s)?;
    check_issuer_audience(claims, issuer, audiences)?;
    Ok(exp)
}

/// `iss` equal to `issuer` when given, and `aud` naming one of `audiences` when there are
/// some.
pub fn check_issuer_audience(
    claims: &Map<String, Value>,
    issuer: Option<&str>,
    audiences: &[String],
) -> Result<(), ClaimError> {
    if let Some(issuer) = issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(ClaimError::Issuer);
        }
    }
    if !audiences.is_empty() && !aud_names(claims, |a| audiences.iter().any(|want| want == a)) {
        return Err(ClaimError::Audience);
    }
    Ok(())
}

/// Whether the token's `aud` (a string, or an array of them) names a value `wanted`
/// accepts.
pub fn aud_names(claims: &Map<String, Value>, wanted: impl Fn(&str) -> bool) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => wanted(a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(wanted),
        _ => false,
    }
}

/// An `audiences` list that may name the request's protected resource (`{resource}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audiences {
    /// Values `aud` may name as they are.
    pub exact: Vec<String>,
    /// `aud` may name the identifier of the `protected_resources` entry the request falls
    /// under.
    pub resource: bool,
}

impl Audiences {
    /// Whether the list is empty (no check).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && !self.resource
    }

    /// Whether `aud` names one of the values — `resource` standing for `{resource}`
    /// (`None`: the request has no resource identifier, and only exact values count).
    pub fn named_by(&self, claims: &Map<String, Value>, resource: Option<&str>) -> bool {
        aud_names(claims, |a| {
            self.exact.iter().any(|want| want == a) || (self.resource && resource == Some(a))
        })
    }
}
