//! OpenID Connect discovery: where the issuer's configuration document says its keys are.

use crate::shared::FetchError;
use crate::token::IssuerTemplate;
use serde_json::Value;

/// Reads an OpenID Provider configuration document (OIDC Discovery 1.0 §4): its `issuer`
/// must be `issuer` exactly (or, for an issuer template, the same template), its `jwks_uri` an `https://` (or `http://`) URL on one of
/// `allowed_hosts`. Returns the keys' `:authority` and `:path`.
pub fn interpret_discovery(
    status: Option<&str>,
    body: &[u8],
    issuer: &str,
    allowed_hosts: &[String],
) -> Result<(String, String), FetchError> {
    match status {
        Some("200") => {}
        Some(other) => return Err(invalid(format!("discovery: status {other}"))),
        None => {
            return Err(invalid(
                "discovery: no response (connection failure or timeout)",
            ))
        }
    }
    let doc: Value = serde_json::from_slice(body).map_err(|_| invalid("discovery: not JSON"))?;
    let said = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
    // A multi-tenant issuer's document names its template with a placeholder of its own
    // (Entra: `{tenantid}`): the same shape counts as the same issuer.
    let same_template = matches!(IssuerTemplate::parse(issuer), Ok(Some(t)) if t.same_shape(said));
    if said != issuer && !same_template {
        return Err(invalid(format!(
            "discovery: the document's issuer {said:?} is not {issuer:?}"
        )));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("discovery: no jwks_uri"))?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| invalid("discovery: jwks_uri is not an http(s) URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') || !allowed_hosts.contains(&host) {
        return Err(invalid(format!(
            "discovery: jwks_uri host {host:?} is not one of the allowed hosts"
        )));
    }
    let path = path.split('#').next().unwrap_or("/");
    Ok((authority.to_string(), path.to_string()))
}

fn invalid(why: impl Into<String>) -> FetchError {
    FetchError::Invalid(why.into())
}
