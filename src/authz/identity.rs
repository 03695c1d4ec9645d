//! Identity: required claims and the headers that carry a verified identity upstream.

use super::Refused;
use crate::token::claim_path::ClaimPath;
use serde_json::{Map, Value};

/// Identity forwarding settings.
#[derive(Debug, Default, Clone)]
pub struct Forward {
    /// Header name → claim (a name or a JSON Pointer).
    pub headers: Vec<(String, ClaimPath)>,
    /// Header that carries the verified payload, base64url.
    pub payload_header: Option<String>,
    /// Remove `Authorization` before the upstream.
    pub strip_authorization: bool,
}

/// The first required claim that is absent or null, if any.
pub fn missing_claim<'a>(
    claims: &Map<String, Value>,
    required: &'a [ClaimPath],
) -> Option<&'a str> {
    required
        .iter()
        .find(|c| matches!(c.get(claims), None | Some(Value::Null)))
        .map(ClaimPath::as_str)
}

/// Renders a claim as a header value: strings as is, numbers and booleans as text,
/// arrays comma-joined, objects as compact JSON; `null` yields nothing.
pub fn header_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) | Value::Object(_) => Some(v.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
    }
}

/// Whether a value is safe in an HTTP header: no control characters (CR, LF, NUL…).
pub fn header_safe(v: &str) -> bool {
    !v.chars().any(|c| c.is_control())
}

/// The identity headers for a verified token. Claims that are absent, `null` or render
/// empty produce no header (the native host cannot set an empty value: both hosts
/// forward the same headers).
/// `Err(header)` names a header whose claim value holds control characters: the
/// pipeline denies such a request rather than forward a header it had to alter.
pub fn forward_headers(
    forward: &Forward,
    claims: &Map<String, Value>,
    payload_b64: &str,
) -> Result<Vec<(String, String)>, Refused> {
    let mut out = Vec::with_capacity(forward.headers.len() + 1);
    for (header, claim) in &forward.headers {
        if let Some(value) = claim
            .get(claims)
            .and_then(header_value)
            .filter(|v| !v.is_empty())
        {
            if !header_safe(&value) {
                return Err(Refused::UnsafeHeader(header.clone()));
            }
            out.push((header.clone(), value));
        }
    }
    if let Some(h) = &forward.payload_header {
        out.push((h.clone(), payload_b64.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_values() {
        let cases: Vec<(Value, Option<&str>)> = vec![
            (json!("u1"), Some("u1")),
            (json!(42), Some("42")),
            (json!(1.5), Some("1.5")),
            (json!(true), Some("true")),
            (json!(["a", "b", 3]), Some("a,b,3")),
            (json!([]), Some("")),
            (json!({"k": "v"}), Some(r#"{"k":"v"}"#)),
            (json!(null), None),
        ];
        for (v, want) in cases {
            assert_eq!(header_value(&v).as_deref(), want, "{v}");
        }
    }

    fn path(p: &str) -> ClaimPath {
        ClaimPath::parse(p).unwrap_or_else(|_| ClaimPath::top("unparsed"))
    }

    #[test]
    fn forwarding_and_control_characters() {
        let forward = Forward {
            headers: vec![
                ("x-sub".into(), ClaimPath::top("sub")),
                ("x-org".into(), ClaimPath::top("org_id")),
                ("x-perms".into(), ClaimPath::top("permissions")),
                ("x-roles".into(), path("/realm_access/roles")),
            ],
            payload_header: Some("x-payload".into()),
            strip_authorization: false,
        };
        let claims = json!({"sub": "u1", "permissions": ["a", "b"],
            "realm_access": {"roles": ["admin", "user"]}})
        .as_object()
        .cloned()
        .unwrap_or_default();
        let got = forward_headers(&forward, &claims, "PAYLOAD").expect("safe");
        assert_eq!(
            got,
            vec![
                ("x-sub".to_string(), "u1".to_string()),
                ("x-perms".to_string(), "a,b".to_string()),
                ("x-roles".to_string(), "admin,user".to_string()),
                ("x-payload".to_string(), "PAYLOAD".to_string())
            ]
        );
        // Empty values give no header (as absent ones).
        let claims = json!({"sub": "", "org_id": [], "permissions": ["p"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            forward_headers(&forward, &claims, "P").expect("safe"),
            vec![
                ("x-perms".to_string(), "p".to_string()),
                ("x-payload".to_string(), "P".to_string())
            ]
        );
        for bad in ["u1\r\nx-admin: true", "a\nb", "nul\0", "tab\t"] {
            let claims = json!({"sub": bad}).as_object().cloned().unwrap_or_default();
            assert_eq!(
                forward_headers(&forward, &claims, "P"),
                Err(Refused::UnsafeHeader("x-sub".to_string())),
                "{bad:?}"
            );
        }
        let claims = json!({"permissions": ["ok", "bad\r\n"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            forward_headers(&forward, &claims, "P"),
            Err(Refused::UnsafeHeader("x-perms".to_string()))
        );
    }

    #[test]
    fn required_claims() {
        let claims = json!({"sub": "u1", "org_id": null, "org": {"id": "o1", "none": null}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let req = |names: &[&str]| names.iter().map(|s| path(s)).collect::<Vec<_>>();
        assert_eq!(missing_claim(&claims, &req(&["sub"])), None);
        assert_eq!(
            missing_claim(&claims, &req(&["sub", "org_id"])),
            Some("org_id")
        );
        assert_eq!(missing_claim(&claims, &req(&["email"])), Some("email"));
        assert_eq!(missing_claim(&claims, &[]), None);
        assert_eq!(missing_claim(&claims, &req(&["/org/id"])), None);
        assert_eq!(
            missing_claim(&claims, &req(&["/org/id", "/org/none"])),
            Some("/org/none")
        );
        assert_eq!(missing_claim(&claims, &req(&["/org/x"])), Some("/org/x"));
    }
}
