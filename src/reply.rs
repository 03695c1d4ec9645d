//! Local replies: one [`Denial`] per contract failure, each knowing its status, exact
//! `detail`, `WWW-Authenticate` value and metric name.

use serde_json::json;

/// Why a request is answered by the filter instead of reaching the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No usable credential (the *credential* step).
    MissingToken,
    /// The token is malformed, unverifiable, expired, from an unknown key, revoked or not
    /// bound as it should be (the *parse* to *sender constraint* steps).
    InvalidToken,
    /// The token verified but its identity does not resolve (*identity*, *account*).
    UnknownAccount,
    /// The token lacks a permission the rule requires (*permissions*).
    InsufficientPermissions,
    /// The rule's domain constraint does not hold (*membership*).
    PermissionDenied,
    /// A header the rule requires is missing or malformed; the detail names it.
    BadRequest(String),
    /// Keys or the account service cannot be reached, or the filter is unusable.
    Unavailable,
    /// A DPoP-bound token without a valid, fresh proof, or sent as a bearer token (RFC
    /// 9449 §7.1); carries the proof algorithms the provider accepts, for the challenge.
    InvalidDpopProof(String),
}

/// A fully formed local reply, ready for `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u32,
    /// Response headers (always includes `content-type`).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

impl Denial {
    /// HTTP status of the reply.
    pub fn status(&self) -> u32 {
        match self {
            Denial::MissingToken
            | Denial::InvalidToken
            | Denial::UnknownAccount
            | Denial::InvalidDpopProof(_) => 401,
            Denial::InsufficientPermissions | Denial::PermissionDenied => 403,
            Denial::BadRequest(_) => 400,
            Denial::Unavailable => 500,
        }
    }

    /// The exact `detail` string clients match on.
    pub fn detail(&self) -> &str {
        match self {
            Denial::MissingToken => "Requires authentication",
            Denial::InvalidToken | Denial::InvalidDpopProof(_) => "Invalid or expired token",
            Denial::UnknownAccount => "Could not validate credentials or find account",
            Denial::InsufficientPermissions => "Not enough permissions",
            Denial::PermissionDenied => "Permission denied",
            Denial::BadRequest(detail) => detail,
            Denial::Unavailable => "Authentication service is unavailable",
        }
    }

    /// The `WWW-Authenticate` header value (RFC 6750 §3, RFC 9449 §7.1), if this reply
    /// carries one.
    pub fn www_authenticate(&self) -> Option<std::borrow::Cow<'static, str>> {
        if let Denial::InvalidDpopProof(algs) = self {
            return Some(format!("DPoP error=\"invalid_dpop_proof\", algs=\"{algs}\"").into());
        }
        let value = match self {
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            Denial::MissingToken => Some("Bearer"),
            Denial::InvalidToken | Denial::UnknownAccount => Some("Bearer error=\"invalid_token\""),
            Denial::InsufficientPermissions => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        value.map(std::borrow::Cow::Borrowed)
    }

    /// Stable snake_case name used in metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidToken => "invalid_token",
            Denial::UnknownAccount => "unknown_account",
            Denial::InsufficientPermissions => "insufficient_permissions",
            Denial::PermissionDenied => "permission_denied",
            Denial::BadRequest(_) => "bad_request",
            Denial::Unavailable => "unavailable",
            Denial::InvalidDpopProof(_) => "invalid_dpop_proof",
        }
    }

    /// Every denial, for metric registration (the `BadRequest` detail is a placeholder).
    pub fn all() -> [Denial; 8] {
        [
            Denial::MissingToken,
            Denial::InvalidToken,
            Denial::UnknownAccount,
            Denial::InsufficientPermissions,
            Denial::PermissionDenied,
            Denial::BadRequest(String::new()),
            Denial::Unavailable,
            Denial::InvalidDpopProof(String::new()),
        ]
    }

    /// Builds the reply; `request_id` is the request's `x-request-id` (empty if absent).
    pub fn reply(&self, request_id: &str) -> Reply {
        // The common bodies are constants (a flood of bad tokens should cost no JSON work);
        // those carrying a request id or a header name are serialized (escaping included).
        let body = match self {
            Denial::MissingToken => r#"{"detail":"Requires authentication"}"#.to_string(),
            Denial::InvalidToken | Denial::InvalidDpopProof(_) => {
                r#"{"detail":"Invalid or expired token"}"#.to_string()
            }
            Denial::UnknownAccount => {
                r#"{"detail":"Could not validate credentials or find account"}"#.to_string()
            }
            Denial::InsufficientPermissions => r#"{"detail":"Not enough permissions"}"#.to_string(),
            Denial::PermissionDenied => json!({
                "detail": self.detail(),
                "error_code": "PERMISSION_DENIED",
                "request_id": request_id,
            })
            .to_string(),
            Denial::Unavailable => {
                json!({ "detail": self.detail(), "request_id": request_id }).to_string()
            }
            Denial::BadRequest(_) => json!({ "detail": self.detail() }).to_string(),
        };
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(value) = self.www_authenticate() {
            headers.push(("www-authenticate", value.into_owned()));
        }
        Reply {
            status: self.status(),
            headers,
            body: body.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_match_the_contract() {
        let cases = vec![
            (
                Denial::MissingToken,
                401,
                r#"{"detail":"Requires authentication"}"#,
                Some("Bearer"),
            ),
            (
                Denial::InvalidToken,
                401,
                r#"{"detail":"Invalid or expired token"}"#,
                Some("Bearer error=\"invalid_token\""),
            ),
            (
                Denial::UnknownAccount,
                401,
                r#"{"detail":"Could not validate credentials or find account"}"#,
                Some("Bearer error=\"invalid_token\""),
            ),
            (
                Denial::InsufficientPermissions,
                403,
                r#"{"detail":"Not enough permissions"}"#,
                Some("Bearer error=\"insufficient_scope\""),
            ),
            (
                Denial::InvalidDpopProof("ES256 PS256".into()),
                401,
                r#"{"detail":"Invalid or expired token"}"#,
                Some("DPoP error=\"invalid_dpop_proof\", algs=\"ES256 PS256\""),
            ),
            (
                Denial::PermissionDenied,
                403,
                r#"{"detail":"Permission denied","error_code":"PERMISSION_DENIED","request_id":"r-1"}"#,
                None,
            ),
            (
                Denial::BadRequest("X header is required".into()),
                400,
                r#"{"detail":"X header is required"}"#,
                None,
            ),
            (
                Denial::Unavailable,
                500,
                r#"{"detail":"Authentication service is unavailable","request_id":"r-1"}"#,
                None,
            ),
        ];
        for (denial, status, body, www) in cases {
            let reply = denial.reply("r-1");
            assert_eq!(reply.status, status, "{denial:?}");
            assert_eq!(reply.body, body, "{denial:?}");
            let got = reply.headers.iter().find(|(k, _)| *k == "www-authenticate");
            assert_eq!(got.map(|(_, v)| v.as_str()), www, "{denial:?}");
            assert!(reply
                .headers
                .contains(&("content-type", "application/json".into())));
        }
    }

    #[test]
    fn request_id_is_json_escaped() {
        let reply = Denial::Unavailable.reply("a\"b");
        assert_eq!(
            reply.body,
            r#"{"detail":"Authentication service is unavailable","request_id":"a\"b"}"#
        );
    }
}
