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
    /// The token's sign-in is not the one the rule asks for (RFC 9470, the *step-up*
    /// step): its `acr` is not one of the rule's `acr_values`, or its `auth_time` is older
    /// than the rule's `max_age_s`.
    StepUp(StepUp),
}

/// What a step-up challenge asks for (RFC 9470 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StepUp {
    /// The rule's `acr_values`, space-separated (`None`: the rule names none).
    pub acr_values: Option<String>,
    /// The rule's `max_age_s` (`None`: it has none).
    pub max_age: Option<u64>,
    /// Which check failed: `true` the sign-in's age, `false` its level.
    pub too_old: bool,
}

/// Parameters a challenge adds for the request's protected resource (RFC 9728 §5.1, RFC
/// 6750 §3): empty when the configuration declares none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Challenge {
    /// The URL of the resource's metadata document (`resource_metadata`).
    pub resource_metadata: Option<String>,
    /// The scopes the rule requires, space-separated (`scope`, on `insufficient_scope`).
    pub scope: Option<String>,
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
            | Denial::InvalidDpopProof(_)
            | Denial::StepUp(_) => 401,
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
            Denial::StepUp(_) => "Stronger authentication required",
        }
    }

    /// The `WWW-Authenticate` header value (RFC 6750 §3, RFC 9449 §7.1, RFC 9470 §3), if
    /// this reply carries one.
    pub fn www_authenticate(&self) -> Option<std::borrow::Cow<'static, str>> {
        self.www_authenticate_with(&Challenge::default())
    }

    /// The `WWW-Authenticate` value with the protected resource's parameters: every 401
    /// challenge names `resource_metadata`, and `insufficient_scope` the rule's `scope`.
    pub fn www_authenticate_with(
        &self,
        challenge: &Challenge,
    ) -> Option<std::borrow::Cow<'static, str>> {
        let (base, unauthorized): (std::borrow::Cow<'static, str>, bool) = match self {
            Denial::InvalidDpopProof(algs) => (
                format!("DPoP error=\"invalid_dpop_proof\", algs=\"{algs}\"").into(),
                true,
            ),
            // RFC 6750 §3.1: no error code when the request carried no credentials.
            Denial::MissingToken => ("Bearer".into(), true),
            Denial::InvalidToken | Denial::UnknownAccount => {
                ("Bearer error=\"invalid_token\"".into(), true)
            }
            Denial::InsufficientPermissions => {
                let mut v = String::from("Bearer error=\"insufficient_scope\"");
                if let Some(scope) = &challenge.scope {
                    v.push_str(&format!(", scope=\"{}\"", quoted(scope)));
                }
                (v.into(), false)
            }
            Denial::StepUp(s) => {
                let why = if s.too_old {
                    "More recent authentication is required"
                } else {
                    "A different authentication level is required"
                };
                let mut v = format!(
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"{why}\""
                );
                if let Some(acr) = &s.acr_values {
                    v.push_str(&format!(", acr_values=\"{}\"", quoted(acr)));
                }
                if let Some(age) = s.max_age {
                    v.push_str(&format!(", max_age={age}"));
                }
                (v.into(), true)
            }
            _ => return None,
        };
        match &challenge.resource_metadata {
            // A 403 names the document too: the client may need another token.
            Some(url) if unauthorized || matches!(self, Denial::InsufficientPermissions) => {
                let sep = if base.contains(' ') { ", " } else { " " };
                Some(format!("{base}{sep}resource_metadata=\"{}\"", quoted(url)).into())
            }
            _ => Some(base),
        }
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
            Denial::StepUp(_) => "insufficient_user_authentication",
        }
    }

    /// Every denial, for metric registration (the `BadRequest` detail is a placeholder).
    pub fn all() -> [Denial; 9] {
        [
            Denial::MissingToken,
            Denial::InvalidToken,
            Denial::UnknownAccount,
            Denial::InsufficientPermissions,
            Denial::PermissionDenied,
            Denial::BadRequest(String::new()),
            Denial::Unavailable,
            Denial::InvalidDpopProof(String::new()),
            Denial::StepUp(StepUp::default()),
        ]
    }

    /// Builds the reply; `request_id` is the request's `x-request-id` (empty if absent).
    pub fn reply(&self, request_id: &str) -> Reply {
        self.reply_with(request_id, &Challenge::default())
    }

    /// [`Denial::reply`] with the protected resource's challenge parameters.
    pub fn reply_with(&self, request_id: &str, challenge: &Challenge) -> Reply {
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
            Denial::StepUp(_) => r#"{"detail":"Stronger authentication required"}"#.to_string(),
        };
        let mut headers = vec![("content-type", "application/json".to_string())];
        if let Some(value) = self.www_authenticate_with(challenge) {
            headers.push(("www-authenticate", value.into_owned()));
        }
        Reply {
            status: self.status(),
            headers,
            body: body.to_string(),
        }
    }
}

impl Reply {
    /// A 502 in the contract's JSON shape: the upstream's answer cannot go to the client
    /// (an MCP list too large or unreadable to filter).
    pub fn bad_gateway(detail: &str, request_id: &str) -> Reply {
        Reply {
            status: 502,
            headers: vec![("content-type", "application/json".to_string())],
            body: json!({ "detail": detail, "request_id": request_id }).to_string(),
        }
    }

    /// The 502 a host answers when it cannot write a filtered list into the response
    /// (the unfiltered one never goes on).
    pub fn list_unwritable() -> Reply {
        Reply::bad_gateway("The MCP server's list answer could not be filtered", "")
    }
}

/// A value made safe inside a quoted-string (RFC 9110 §5.6.4): `"` and `\\` escaped,
/// control characters dropped (a scope may be rendered from request values).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
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
    fn challenges_name_the_resource_the_scope_and_the_step_up() {
        let c = Challenge {
            resource_metadata: Some(
                "https://api.example.com/.well-known/oauth-protected-resource/mcp".into(),
            ),
            scope: Some("tools:call index:write:*".into()),
        };
        let meta = r#"resource_metadata="https://api.example.com/.well-known/oauth-protected-resource/mcp""#;
        let www = |d: &Denial| d.www_authenticate_with(&c).map(|v| v.into_owned());
        assert_eq!(www(&Denial::MissingToken), Some(format!("Bearer {meta}")));
        assert_eq!(
            www(&Denial::InvalidToken),
            Some(format!("Bearer error=\"invalid_token\", {meta}"))
        );
        assert_eq!(
            www(&Denial::InsufficientPermissions),
            Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"tools:call index:write:*\", {meta}"
            ))
        );
        assert_eq!(
            www(&Denial::InvalidDpopProof("ES256".into())),
            Some(format!(
                "DPoP error=\"invalid_dpop_proof\", algs=\"ES256\", {meta}"
            ))
        );
        let step_up = Denial::StepUp(StepUp {
            acr_values: Some("phr phrh".into()),
            max_age: Some(300),
            too_old: true,
        });
        assert_eq!(
            www(&step_up),
            Some(format!("Bearer error=\"insufficient_user_authentication\", error_description=\"More recent authentication is required\", acr_values=\"phr phrh\", max_age=300, {meta}"))
        );
        let reply = step_up.reply_with("r", &c);
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (401, r#"{"detail":"Stronger authentication required"}"#)
        );
        // No resource: the replies of a configuration without protected_resources.
        let plain = Denial::StepUp(StepUp::default());
        assert_eq!(
            plain.www_authenticate().as_deref(),
            Some("Bearer error=\"insufficient_user_authentication\", error_description=\"A different authentication level is required\"")
        );
        assert_eq!(www(&Denial::PermissionDenied), None);
        assert_eq!(www(&Denial::Unavailable), None);
    }

    #[test]
    fn challenge_values_cannot_break_out_of_their_quotes() {
        let c = Challenge {
            resource_metadata: None,
            scope: Some("a\"b\\c\r\nx".into()),
        };
        assert_eq!(
            Denial::InsufficientPermissions
                .www_authenticate_with(&c)
                .as_deref(),
            Some(r#"Bearer error="insufficient_scope", scope="a\"b\\cx""#)
        );
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
