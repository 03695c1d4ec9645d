//! Token introspection (RFC 7662): the call's form body and client authentication, what
//! the authorization server's answer means, and how long an answer is kept. The calls
//! themselves, shared by every worker of the process, are the worker's (`worker::accounts`).

use crate::shared::FetchError;
use serde_json::{Map, Value};
use std::rc::Rc;

/// What a worker knows of a token's introspection.
#[derive(Debug, Clone, PartialEq)]
pub enum Known {
    /// The server said it is active: its answer (shared, never copied per request).
    Active(Rc<Map<String, Value>>),
    /// The server does not vouch for it.
    Inactive,
    /// Nothing kept.
    Unknown,
}
use url::form_urlencoded::byte_serialize;

/// The form body of an introspection call (RFC 7662 §2.1): the token and its type hint,
/// and — for `client_secret_post` (`post` given) — the client's id and secret.
pub fn form_body(token: &str, post: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = String::from("token=");
    out.extend(byte_serialize(token.as_bytes()));
    out.push_str("&token_type_hint=access_token");
    if let Some((id, secret)) = post {
        out.push_str("&client_id=");
        out.extend(byte_serialize(id.as_bytes()));
        out.push_str("&client_secret=");
        out.extend(byte_serialize(secret));
    }
    out.into_bytes()
}

/// The `Authorization` value of `client_secret_basic` (RFC 6749 §2.3.1: the id and the
/// secret form-encoded, then joined by `:` and base64-encoded).
pub fn basic_authorization(client_id: &str, secret: &[u8]) -> String {
    use base64::Engine;
    let mut pair: String = byte_serialize(client_id.as_bytes()).collect();
    pair.push(':');
    pair.extend(byte_serialize(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// How long a refusal that is not a 200 (a 4xx) is kept at most, ms: it says something
/// about the call rather than the token, so it serves the requests that waited for it and
/// little more.
pub const REFUSAL_KEPT_MS: u64 = 1000;

/// What the authorization server's answer means: `Ok(Some(claims))` for an active access
/// token, `Ok(None)` for one it does not vouch for — `active` other than the boolean
/// `true`, an `exp` already past, a token of another kind (a refresh or ID token: see
/// [`access_token`]), a 4xx, or a body that is not one JSON object without duplicate
/// keys — and `Err` when it could not judge (no answer, 5xx, 429 or another status): an
/// opaque token that cannot be checked is never let through, and that is never kept.
pub fn interpret(
    status: Option<&str>,
    body: &[u8],
    now_s: i64,
) -> Result<Option<Map<String, Value>>, FetchError> {
    match status {
        Some("200") => {}
        // Rate limited: the server did not judge the token.
        Some("429") => return Err(FetchError::Status("429".into())),
        Some(s) if s.len() == 3 && s.starts_with('4') => return Ok(None),
        Some(other) => return Err(FetchError::Status(other.to_string())),
        None => return Err(FetchError::NoResponse),
    }
    let Some(claims) = crate::strict_json::parse_object(body) else {
        return Ok(None);
    };
    if claims.get("active") != Some(&Value::Bool(true)) || !access_token(&claims) {
        return Ok(None);
    }
    // `exp` is optional (RFC 7662 §2.2); when given it must be a number still ahead.
    match claims.get("exp") {
        None => {}
        Some(exp) => match exp.as_f64() {
            Some(e) if e > now_s as f64 => {}
            _ => return Ok(None),
        },
    }
    Ok(Some(claims))
}

/// Whether an active answer is for an access token. The type hint the filter sends is
/// only a hint: a server may answer for a refresh token (`token_use`, `token_type`) or an
/// ID token (`typ`, as Keycloak says) sent as a bearer token. Each member, when present,
/// must name an access token.
pub fn access_token(claims: &Map<String, Value>) -> bool {
    let is = |member: &str, accepted: &[&str]| match claims.get(member) {
        None => true,
        Some(Value::String(s)) => accepted.iter().any(|a| s.eq_ignore_ascii_case(a)),
        Some(_) => false,
    };
    is("token_use", &["access_token"])
        && is("token_type", &["bearer", "dpop", "n_a"])
        && is("typ", &["bearer", "dpop", "at+jwt", "application/at+jwt"])
}

/// Until when (ms) an answer is kept: an active one for `ttl_ms` but never past its
/// `exp`; a 200 saying not active for `negative_ttl_ms`; a 4xx for
/// [`REFUSAL_KEPT_MS`] at most (`status_200`: whether the answer was a 200).
pub fn kept_until(
    (claims, status_200): (Option<&Map<String, Value>>, bool),
    now_ms: u64,
    ttl_ms: u64,
    negative_ttl_ms: u64,
) -> u64 {
    if !status_200 {
        return now_ms.saturating_add(negative_ttl_ms.min(REFUSAL_KEPT_MS));
    }
    match claims {
        Some(c) => {
            let until = now_ms.saturating_add(ttl_ms);
            match c.get("exp").and_then(Value::as_f64) {
                // Whole seconds; a fraction rounds down.
                Some(exp) if exp >= 0.0 => until.min((exp as u64).saturating_mul(1000)),
                _ => until,
            }
        }
        None => now_ms.saturating_add(negative_ttl_ms),
    }
}

/// Whether a credential is a compact JWS in shape (three segments): one that is not is
/// opaque, an introspection provider's to judge.
pub fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str, now: i64) -> Option<Map<String, Value>> {
        interpret(Some("200"), body.as_bytes(), now).expect("judged")
    }

    #[test]
    fn only_the_boolean_true_is_active() {
        assert!(ok(r#"{"active":true,"sub":"u"}"#, 0).is_some());
        for body in [
            r#"{"active":false,"sub":"u"}"#,
            r#"{"sub":"u","exp":99}"#,
            r#"{"active":"true","sub":"u"}"#,
            r#"{"active":1}"#,
            r#"{"active":null}"#,
            r#"{"active":true,"active":true}"#,
            r#"[{"active":true}]"#,
            "active=true",
            "",
        ] {
            assert_eq!(ok(body, 0), None, "{body}");
        }
    }

    #[test]
    fn only_access_tokens_are_active() {
        for body in [
            r#"{"active":true,"token_type":"Bearer","typ":"Bearer"}"#,
            r#"{"active":true,"token_type":"DPoP","token_use":"access_token"}"#,
            r#"{"active":true,"typ":"at+jwt"}"#,
            r#"{"active":true,"token_type":"N_A"}"#,
        ] {
            assert!(ok(body, 0).is_some(), "{body}");
        }
        for body in [
            r#"{"active":true,"token_use":"refresh_token"}"#,
            r#"{"active":true,"token_type":"refresh_token"}"#,
            r#"{"active":true,"typ":"Refresh"}"#,
            r#"{"active":true,"typ":"ID"}"#,
            r#"{"active":true,"token_type":["Bearer"]}"#,
            r#"{"active":true,"token_use":null}"#,
        ] {
            assert_eq!(ok(body, 0), None, "{body}");
        }
    }

    #[test]
    fn exp_in_the_past_is_not_active() {
        assert!(ok(r#"{"active":true,"exp":101}"#, 100).is_some());
        assert_eq!(ok(r#"{"active":true,"exp":100}"#, 100), None);
        assert_eq!(ok(r#"{"active":true,"exp":"2030"}"#, 100), None);
    }

    #[test]
    fn statuses() {
        for s in ["400", "401", "403", "404", "499"] {
            assert_eq!(
                interpret(Some(s), br#"{"active":true}"#, 0),
                Ok(None),
                "{s}"
            );
        }
        for s in ["500", "503", "302", "204", "4000", "429"] {
            assert!(interpret(Some(s), br#"{"active":true}"#, 0).is_err(), "{s}");
        }
        assert_eq!(interpret(None, b"", 0), Err(FetchError::NoResponse));
    }

    #[test]
    fn lifetimes() {
        let c = ok(r#"{"active":true,"exp":50}"#, 0).expect("active");
        assert_eq!(kept_until((Some(&c), true), 10_000, 60_000, 5_000), 50_000);
        assert_eq!(kept_until((Some(&c), true), 10_000, 1_000, 5_000), 11_000);
        let no_exp = ok(r#"{"active":true}"#, 0).expect("active");
        assert_eq!(
            kept_until((Some(&no_exp), true), 10_000, 60_000, 5_000),
            70_000
        );
        assert_eq!(kept_until((None, true), 10_000, 60_000, 5_000), 15_000);
        assert_eq!(kept_until((None, false), 10_000, 60_000, 5_000), 11_000);
        assert_eq!(kept_until((None, false), 10_000, 60_000, 500), 10_500);
    }

    #[test]
    fn form_and_basic() {
        assert_eq!(
            form_body("a+b/c=", None),
            b"token=a%2Bb%2Fc%3D&token_type_hint=access_token".to_vec()
        );
        assert_eq!(
            form_body("t", Some(("my client", b"s&e"))),
            b"token=t&token_type_hint=access_token&client_id=my+client&client_secret=s%26e"
                .to_vec()
        );
        // RFC 6749 §2.3.1's encoding, then base64 of "id:secret".
        assert_eq!(basic_authorization("bg", b"pw"), "Basic Ymc6cHc=");
        assert_eq!(basic_authorization("a:b", b"p w"), "Basic YSUzQWI6cCt3");
    }

    #[test]
    fn shapes() {
        assert!(looks_like_jws("a.b.c"));
        assert!(looks_like_jws(".."));
        for t in ["abc", "a.b", "a.b.c.d", "a.b.c.d.e"] {
            assert!(!looks_like_jws(t), "{t}");
        }
    }
}
