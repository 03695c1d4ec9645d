//! Which tokens count, beyond signature, times, issuer and audience: the access-token type
//! (`typ`, RFC 9068 §2.1), a maximum lifetime (`exp − iat`), and conditions on claim
//! values (a provider's and a rule's `claim_values`).

use super::claim_path::ClaimPath;
use super::numeric_date;
use serde_json::{Map, Value};

/// A `typ` in the form it is compared in: lower case, without an `application/` prefix
/// (RFC 7515 §4.1.9: `application/at+jwt` and `at+JWT` both mean `at+jwt`).
pub fn normal_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// Whether a token's `typ` (`None`: absent or not a string) is one of `wanted` (already
/// in [`normal_typ`] form).
pub fn typ_allowed(typ: Option<&str>, wanted: &[String]) -> bool {
    typ.is_some_and(|t| {
        let t = normal_typ(t);
        wanted.contains(&t)
    })
}

/// Why a token's lifetime does not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeError {
    /// No numeric `iat`.
    NoIat,
    /// `iat` is later than now plus the clock skew.
    IssuedInTheFuture,
    /// `exp − iat` is longer than the provider allows.
    TooLong,
}

impl LifetimeError {
    /// In a few words (for logs and `explain`).
    pub fn as_str(self) -> &'static str {
        match self {
            LifetimeError::NoIat => "no numeric iat (max_lifetime_s needs one)",
            LifetimeError::IssuedInTheFuture => "iat is in the future",
            LifetimeError::TooLong => "exp - iat is longer than max_lifetime_s",
        }
    }
}

/// `Ok(exp − iat)` when the token, expiring at `exp`, lives at most `max_s` seconds and
/// was issued no later than `now_s + skew_s`.
pub fn check_lifetime(
    claims: &Map<String, Value>,
    exp: i64,
    max_s: u64,
    now_s: i64,
    skew_s: i64,
) -> Result<i64, LifetimeError> {
    let iat = claims
        .get("iat")
        .and_then(numeric_date)
        .ok_or(LifetimeError::NoIat)?;
    if iat > now_s.saturating_add(skew_s) {
        return Err(LifetimeError::IssuedInTheFuture);
    }
    let lifetime = exp.saturating_sub(iat);
    if lifetime > i64::try_from(max_s).unwrap_or(i64::MAX) {
        return Err(LifetimeError::TooLong);
    }
    Ok(lifetime)
}

/// One `claim_values` entry: the claim and the values it may hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimCondition {
    /// The claim (top-level name or JSON Pointer).
    pub claim: ClaimPath,
    /// The scalars it may equal (strings, numbers, booleans).
    pub values: Vec<Value>,
}

/// Whether two scalars are equal: strings exactly, booleans as booleans, numbers as
/// numbers (`1` equals `1.0`; an integer equals a float only when the float is that whole
/// number below 2^53, where no rounding can have made it); values of different types
/// never.
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            // A float that is a whole number below 2^53 in magnitude, as an integer (at
            // 2^53 and beyond a float may be a rounded neighbour: it equals no integer).
            let whole = |n: &serde_json::Number| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
                    .map(|f| f as i128)
            };
            match (int(x), int(y)) {
                (Some(i), Some(j)) => i == j,
                (Some(i), None) => whole(y) == Some(i),
                (None, Some(j)) => whole(x) == Some(j),
                (None, None) => x.as_f64() == y.as_f64(),
            }
        }
        _ => false,
    }
}

impl ClaimCondition {
    /// Whether the token's claim holds one of the values: a scalar equal to one, or an
    /// array with an element equal to one. A missing claim, an object or `null` never do.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        let matches = |v: &Value| self.values.iter().any(|w| same_scalar(v, w));
        match self.claim.get(claims) {
            Some(Value::Array(items)) => items.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        }
    }

    /// The claim's value as the trace shows it (JSON, at most 64 characters).
    pub fn seen(&self, claims: &Map<String, Value>) -> Option<String> {
        self.claim.get(claims).map(|v| {
            let text = v.to_string();
            match text.char_indices().nth(64) {
                Some((at, _)) => format!("{}…", text.get(..at).unwrap_or("")),
                None => text,
            }
        })
    }
}

/// An `issuer` with one `{name}` placeholder naming a top-level claim (a multi-tenant
/// issuer such as `https://login.microsoftonline.com/{tid}/v2.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerTemplate {
    /// Before the placeholder.
    pub prefix: String,
    /// The claim whose value the placeholder takes.
    pub claim: String,
    /// After the placeholder.
    pub suffix: String,
}

/// The most characters a substituted value may have.
pub const MAX_ISSUER_VALUE: usize = 128;

/// Whether `v` may stand in an issuer template: 1-128 of `A-Z a-z 0-9 - _` (no dot, no
/// slash, no percent sign: it cannot reach another path or host).
pub fn valid_issuer_value(v: &str) -> bool {
    (1..=MAX_ISSUER_VALUE).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl IssuerTemplate {
    /// The template in `issuer` (`Ok(None)`: a plain issuer); `Err` says what is wrong.
    pub fn parse(issuer: &str) -> Result<Option<IssuerTemplate>, &'static str> {
        let Some(open) = issuer.find('{') else {
            return if issuer.contains('}') {
                Err("a '}' without '{'")
            } else {
                Ok(None)
            };
        };
        let (prefix, rest) = issuer.split_at(open);
        let close = rest.find('}').ok_or("a '{' without '}'")?;
        let claim = rest.get(1..close).unwrap_or("");
        let suffix = rest.get(close + 1..).unwrap_or("");
        if claim.is_empty()
            || !claim
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(
                "the placeholder must name a top-level claim: {name} of letters, digits or '_'",
            );
        }
        if suffix.contains(['{', '}']) || prefix.contains('}') {
            return Err("at most one {name} placeholder");
        }
        if prefix.is_empty() {
            return Err("the placeholder cannot start the issuer");
        }
        Ok(Some(IssuerTemplate {
            prefix: prefix.to_string(),
            claim: claim.to_string(),
            suffix: suffix.to_string(),
        }))
    }

    /// The value an `iss` substitutes for the placeholder, when it has the template's
    /// shape with a valid value.
    pub fn capture<'a>(&self, iss: &'a str) -> Option<&'a str> {
        let v = iss.strip_prefix(self.prefix.as_str())?;
        let v = v.strip_suffix(self.suffix.as_str())?;
        valid_issuer_value(v).then_some(v)
    }

    /// Whether `other` is this template with the placeholder under any name (a discovery
    /// document names it as it likes: Entra writes `{tenantid}`).
    pub fn same_shape(&self, other: &str) -> bool {
        matches!(IssuerTemplate::parse(other), Ok(Some(t)) if t.prefix == self.prefix && t.suffix == self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn issuer_templates() {
        let t = IssuerTemplate::parse("https://login.microsoftonline.com/{tid}/v2.0")
            .expect("valid")
            .expect("a template");
        assert_eq!(t.claim, "tid");
        let tenant = "9188040d-6c67-4c5b-b112-36a304b66dad";
        assert_eq!(
            t.capture(&format!("https://login.microsoftonline.com/{tenant}/v2.0")),
            Some(tenant)
        );
        // Values that could reach another path or host, or are empty or too long.
        for v in [
            "a/b",
            "..",
            "a%2Fb",
            "",
            "a.b",
            "a b",
            "a?x",
            &"x".repeat(129),
        ] {
            let iss = format!("https://login.microsoftonline.com/{v}/v2.0");
            assert_eq!(t.capture(&iss), None, "{v:?}");
        }
        assert_eq!(
            t.capture("https://login.microsoftonline.com/t/v2.0/x"),
            None
        );
        assert_eq!(t.capture("https://evil.example/t/v2.0"), None);
        assert!(t.same_shape("https://login.microsoftonline.com/{tenantid}/v2.0"));
        assert!(!t.same_shape("https://login.microsoftonline.com/{tenantid}/v1.0"));
        assert_eq!(IssuerTemplate::parse("https://a.example"), Ok(None));
        for bad in [
            "https://a/{}",
            "https://a/{x}/{y}",
            "https://a/{x",
            "https://a/x}",
            "{tid}.example",
            "https://a/{x.y}",
        ] {
            assert!(IssuerTemplate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn typ_forms() {
        let wanted = vec![normal_typ("at+jwt")];
        for ok in [
            "at+jwt",
            "at+JWT",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+jwt",
        ] {
            assert!(typ_allowed(Some(ok), &wanted), "{ok}");
        }
        // An ID token, no typ, near misses.
        for bad in [
            Some("JWT"),
            None,
            Some("at+jwt "),
            Some("application/"),
            Some("x/at+jwt"),
            Some("at"),
        ] {
            assert!(!typ_allowed(bad, &wanted), "{bad:?}");
        }
    }

    #[test]
    fn lifetime_errors_say_why() {
        assert_eq!(
            LifetimeError::NoIat.as_str(),
            "no numeric iat (max_lifetime_s needs one)"
        );
        assert_eq!(
            LifetimeError::IssuedInTheFuture.as_str(),
            "iat is in the future"
        );
        assert_eq!(
            LifetimeError::TooLong.as_str(),
            "exp - iat is longer than max_lifetime_s"
        );
    }

    #[test]
    fn lifetimes() {
        let now = 1_000_000;
        let c = |iat: Value| claims(json!({"iat": iat}));
        assert_eq!(
            check_lifetime(&c(json!(now)), now + 3600, 3600, now, 60),
            Ok(3600)
        );
        assert_eq!(
            check_lifetime(&c(json!(now)), now + 3601, 3600, now, 60),
            Err(LifetimeError::TooLong)
        );
        assert_eq!(
            check_lifetime(&claims(json!({})), now + 10, 3600, now, 60),
            Err(LifetimeError::NoIat)
        );
        assert_eq!(
            check_lifetime(&c(json!(now.to_string())), now + 10, 3600, now, 60),
            Err(LifetimeError::NoIat)
        );
        assert_eq!(
            check_lifetime(&c(json!(now + 61)), now + 100, 3600, now, 60),
            Err(LifetimeError::IssuedInTheFuture)
        );
        assert_eq!(
            check_lifetime(&c(json!(now + 60)), now + 100, 3600, now, 60),
            Ok(40)
        );
        // A token issued long ago that expires far ahead: too long, however it is split.
        assert_eq!(
            check_lifetime(&c(json!(i64::MIN)), i64::MAX, u64::MAX, now, 60),
            Ok(i64::MAX)
        );
        assert_eq!(
            check_lifetime(&c(json!(-1)), i64::MAX, 3600, now, 60),
            Err(LifetimeError::TooLong)
        );
    }

    #[test]
    fn claim_conditions() {
        let cond = |claim: &str, values: Value| ClaimCondition {
            claim: ClaimPath::parse(claim).expect("claim"),
            values: match values {
                Value::Array(v) => v,
                v => vec![v],
            },
        };
        let azp = cond("azp", json!(["client-a", "client-b"]));
        assert!(azp.holds(&claims(json!({"azp": "client-b"}))));
        assert!(!azp.holds(&claims(json!({"azp": "client-c"}))));
        assert!(!azp.holds(&claims(json!({}))));
        // An array containing the value as a substring, an object, a null: no.
        assert!(!azp.holds(&claims(json!({"azp": ["client-a-evil"]}))));
        assert!(!azp.holds(&claims(json!({"azp": {"client-a": true}}))));
        assert!(!azp.holds(&claims(json!({"azp": null}))));
        assert!(azp.holds(&claims(json!({"azp": ["x", "client-a"]}))));
        // Types are compared as types: a number given as a string is not the number.
        let verified = cond("email_verified", json!(true));
        assert!(verified.holds(&claims(json!({"email_verified": true}))));
        assert!(!verified.holds(&claims(json!({"email_verified": "true"}))));
        assert!(!verified.holds(&claims(json!({"email_verified": 1}))));
        let level = cond("/ext/level", json!(2));
        assert!(level.holds(&claims(json!({"ext": {"level": 2}}))));
        assert!(level.holds(&claims(json!({"ext": {"level": 2.0}}))));
        assert!(!level.holds(&claims(json!({"ext": {"level": "2"}}))));
        // No rounding: 2^53 + 1 is not the float 2^53.
        let big = cond("n", json!(9_007_199_254_740_993_i64));
        assert!(!big.holds(&claims(json!({"n": 9_007_199_254_740_992.0}))));
        assert!(big.holds(&claims(json!({"n": 9_007_199_254_740_993_i64}))));
        assert!(cond("f", json!(0.5)).holds(&claims(json!({"f": 0.5}))));
        assert!(!cond("n", json!(1)).holds(&claims(json!({"n": 1.5}))));
        assert!(cond("n", json!(1)).holds(&claims(json!({"n": 1.0}))));
        let two_53 = cond("n", json!(9_007_199_254_740_992_i64));
        assert!(!two_53.holds(&claims(json!({"n": 9_007_199_254_740_992.0}))));
        assert!(two_53.holds(&claims(json!({"n": 9_007_199_254_740_992_i64}))));
        assert!(!cond("f", json!(0.5)).holds(&claims(json!({"f": 1}))));
        assert_eq!(
            level.seen(&claims(json!({"ext": {"level": "2"}}))),
            Some("\"2\"".into())
        );
    }
}
