//! `protected_resources[i]`: the resources bearer-guard describes to clients (RFC 9728),
//! read and checked, then completed from the rules and providers under each.

use super::provider::Provider;
use super::reader::Fields;
use super::rules::Rule;
use crate::error::{err, ConfigError};
use crate::resource::{loopback, under, Resource, Resources};
use crate::sender::BindingMode;
use crate::token::TokenSource;
use serde_json::Value;

/// An entry as written.
pub(super) struct RawResource {
    at: String,
    resource: Option<String>,
    prefix: Option<String>,
    allowed_authorities: Vec<String>,
    authorization_servers: Vec<String>,
    scopes_supported: Option<Vec<String>>,
    name: Option<String>,
    documentation: Option<String>,
}

impl RawResource {
    /// Reads `protected_resources[i]` (`at` is its path).
    pub(super) fn read(value: &Value, at: &str) -> Result<RawResource, ConfigError> {
        let f = Fields::of(
            value,
            at,
            &[
                "resource",
                "match",
                "authorization_servers",
                "scopes_supported",
                "resource_name",
                "resource_documentation",
                "allowed_authorities",
            ],
        )?;
        let prefix = match f.object("match", &["path_prefix"])? {
            Some(m) => m.opt_string("path_prefix")?,
            None => None,
        };
        Ok(RawResource {
            at: at.to_string(),
            resource: f.opt_string("resource")?,
            prefix,
            allowed_authorities: f.strings("allowed_authorities")?,
            authorization_servers: f.strings("authorization_servers")?,
            scopes_supported: f.opt_strings("scopes_supported")?,
            name: f.opt_string("resource_name")?,
            documentation: f.opt_string("resource_documentation")?,
        })
    }
}

/// Whether `url` is an absolute `https` URL (or `http` to a loopback host) without
/// fragment, user information or whitespace; `Err` says why not.
fn check_url(url: &str) -> Result<(), &'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.contains('#') {
        return Err("must be an absolute URL without whitespace or fragment");
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must be an absolute URL (https://…)")?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err("must name a host (and no user information)");
    }
    if authority.starts_with('[') && !authority.contains(']') {
        return Err("an IPv6 host needs its closing ']'");
    }
    match scheme {
        "https" => Ok(()),
        "http" if loopback(authority) => Ok(()),
        "http" => Err("must use https (http only for localhost, 127.0.0.1 or [::1])"),
        _ => Err("must be an https URL"),
    }
}

/// Compiles the entries against the compiled providers and rules.
pub(super) fn compile(
    raw: Vec<RawResource>,
    providers: &[Provider],
    rules: &[Rule],
) -> Result<Resources, ConfigError> {
    let mut entries = Vec::new();
    for r in raw {
        let at = &r.at;
        if let Some(resource) = &r.resource {
            check_url(resource).or_else(|m| err(format!("{at}.resource"), m))?;
            if resource.contains('?')
                || resource.ends_with('/') && resource.matches('/').count() > 2
            {
                return err(
                    format!("{at}.resource"),
                    "a resource identifier has no query and no trailing '/'",
                );
            }
        }
        let prefix = r.prefix.unwrap_or_else(|| "/".to_string());
        if !prefix.starts_with('/')
            || prefix.contains(['?', '#'])
            || prefix.chars().any(|c| c.is_whitespace() || c.is_control())
            || (prefix.len() > 1 && prefix.ends_with('/'))
            || !crate::request::is_normalized(&prefix)
        {
            return err(
                format!("{at}.match.path_prefix"),
                "a normalized path starting with '/', without query, fragment, whitespace or trailing '/'",
            );
        }
        if r.authorization_servers.is_empty() {
            return err(
                format!("{at}.authorization_servers"),
                "at least one authorization server is required",
            );
        }
        for (i, server) in r.authorization_servers.iter().enumerate() {
            check_url(server).or_else(|m| err(format!("{at}.authorization_servers[{i}]"), m))?;
        }
        if let Some(doc) = &r.documentation {
            check_url(doc).or_else(|m| err(format!("{at}.resource_documentation"), m))?;
        }
        let mut allowed = Vec::new();
        for (i, a) in r.allowed_authorities.iter().enumerate() {
            if a.is_empty()
                || a.contains(['/', '@', '?', '#'])
                || a.chars().any(char::is_whitespace)
            {
                return err(
                    format!("{at}.allowed_authorities[{i}]"),
                    "a host, with its port if not the scheme's default",
                );
            }
            allowed.push(a.to_ascii_lowercase());
        }
        if r.resource.is_some() && !allowed.is_empty() {
            return err(
                format!("{at}.allowed_authorities"),
                "only for an identifier derived from the request (without `resource`)",
            );
        }
        if r.resource.is_none() && allowed.is_empty() {
            return err(
                format!("{at}.resource"),
                "set `resource`, or `allowed_authorities` for an identifier derived from the request",
            );
        }
        if let Some(scopes) = &r.scopes_supported {
            if let Some(i) = scopes.iter().position(|s| {
                s.is_empty()
                    || s.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
            }) {
                return err(format!("{at}.scopes_supported[{i}]"), "not a valid scope");
            }
        }
        entries.push(complete(
            r.resource,
            prefix,
            allowed,
            r.authorization_servers,
            r.scopes_supported,
            (r.name, r.documentation),
            providers,
            rules,
        ));
    }
    Ok(Resources { entries })
}

/// An entry completed from the rules that may judge requests under it and the providers
/// those rules name: its default scopes, token methods and sender constraints.
#[allow(clippy::too_many_arguments)]
fn complete(
    resource: Option<String>,
    prefix: String,
    allowed_authorities: Vec<String>,
    authorization_servers: Vec<String>,
    scopes: Option<Vec<String>>,
    (name, documentation): (Option<String>, Option<String>),
    providers: &[Provider],
    rules: &[Rule],
) -> Resource {
    let covering: Vec<&Rule> = rules
        .iter()
        .filter(|r| !r.public && r.matcher.may_cover(|p| under(p, &prefix), &prefix))
        .collect();
    let scopes_supported = scopes.unwrap_or_else(|| {
        let mut all: Vec<String> = Vec::new();
        for r in &covering {
            let templates = r.requirement.all_of.iter().chain(&r.requirement.any_of);
            for s in templates.filter_map(|t| t.literal()) {
                if !all.iter().any(|a| a == s) {
                    all.push(s.to_string());
                }
            }
        }
        all
    });
    let mut named: Vec<usize> = Vec::new();
    for r in &covering {
        match &r.providers {
            Some(list) => named.extend(list),
            None => named.extend(0..providers.len()),
        }
    }
    if covering.is_empty() {
        named.extend(0..providers.len());
    }
    named.sort_unstable();
    named.dedup();
    let under_entry: Vec<&Provider> = named.iter().filter_map(|i| providers.get(*i)).collect();
    let mut bearer_methods = Vec::new();
    for p in &under_entry {
        let method = match &p.token {
            TokenSource::Authorization | TokenSource::Header { .. } => Some("header"),
            TokenSource::Query(_) => Some("query"),
            TokenSource::Cookie(_) => None,
        };
        if let Some(m) = method.filter(|m| !bearer_methods.contains(m)) {
            bearer_methods.push(m);
        }
    }
    let mut dpop_algorithms: Vec<String> = Vec::new();
    for d in under_entry.iter().filter_map(|p| p.dpop.as_ref()) {
        for a in &d.algorithms {
            if !dpop_algorithms.iter().any(|x| x == a.name()) {
                dpop_algorithms.push(a.name().to_string());
            }
        }
    }
    let dpop_required = !under_entry.is_empty()
        && under_entry.iter().all(|p| {
            p.dpop
                .as_ref()
                .is_some_and(|d| d.mode == BindingMode::Required)
        });
    Resource {
        resource,
        prefix,
        allowed_authorities,
        authorization_servers,
        scopes_supported,
        bearer_methods,
        dpop_algorithms,
        dpop_required,
        certificate_bound: under_entry.iter().any(|p| p.mtls_binding.is_some()),
        name,
        documentation,
    }
}
