//! What a verified token grants: its permissions, its roles (through the role table) and
//! its OAuth scopes, with hierarchical scope matching.

use crate::token::ClaimPath;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The claims that carry grants (top-level names or JSON Pointers).
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// Array of permission strings.
    pub permissions: ClaimPath,
    /// Role name (string or array), expanded through the role table.
    pub role: ClaimPath,
    /// OAuth scopes: space-delimited string or array.
    pub scope: ClaimPath,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            permissions: ClaimPath::top("permissions"),
            role: ClaimPath::top("role"),
            scope: ClaimPath::top("scope"),
        }
    }
}

/// Whether one granted scope covers one required permission.
///
/// Plain permissions (no `:`) match exactly. Hierarchical scopes
/// `{resource}:{action}:{identifier}` match segment by segment, where a granted `*`
/// matches any value of that segment; segment counts must be equal. `*` alone grants
/// everything. Empty segments never match.
pub fn scope_grants(granted: &str, required: &str) -> bool {
    if granted == "*" {
        return !required.is_empty();
    }
    if required.split(':').any(str::is_empty) || granted.split(':').any(str::is_empty) {
        return false;
    }
    let mut g = granted.split(':');
    let mut r = required.split(':');
    loop {
        match (g.next(), r.next()) {
            (None, None) => return true,
            (Some(gs), Some(rs)) if gs == "*" || gs == rs => {}
            _ => return false,
        }
    }
}

/// Everything a token grants, borrowed from its claims and the role table.
#[derive(Debug, Default)]
pub struct Grants<'a> {
    items: Vec<(&'a str, GrantSource<'a>)>,
}

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantSource<'a> {
    /// The permissions claim.
    Permission,
    /// The scope claim.
    Scope,
    /// A role (its name) in the role claim, through `roles`.
    Role(&'a str),
}

impl<'a> Grants<'a> {
    /// Collects grants from the `permissions`, `role` and `scope` claims.
    pub fn from_claims(
        claims: &'a Map<String, Value>,
        names: &ClaimNames,
        roles: &'a BTreeMap<String, Vec<String>>,
    ) -> Grants<'a> {
        let mut items = Vec::new();
        for_each_string(names.permissions.get(claims), |s| {
            items.extend(s.split_whitespace().map(|g| (g, GrantSource::Permission)))
        });
        for_each_string(names.scope.get(claims), |s| {
            items.extend(s.split_whitespace().map(|g| (g, GrantSource::Scope)))
        });
        for_each_string(names.role.get(claims), |role| {
            if let Some(perms) = roles.get(role) {
                items.extend(perms.iter().map(|p| (p.as_str(), GrantSource::Role(role))));
            }
        });
        Grants { items }
    }

    /// Whether any grant covers `required`.
    pub fn allows(&self, required: &str) -> bool {
        self.covering(required).is_some()
    }

    /// The first grant that covers `required`.
    pub fn covering(&self, required: &str) -> Option<(&'a str, GrantSource<'a>)> {
        self.items
            .iter()
            .find(|(g, _)| scope_grants(g, required))
            .copied()
    }

    /// Every grant with where it came from.
    pub fn items(&self) -> &[(&'a str, GrantSource<'a>)] {
        &self.items
    }
}

/// Calls `f` for a string claim, or for each string element of an array claim.
pub(super) fn for_each_string<'a>(value: Option<&'a Value>, mut f: impl FnMut(&'a str)) {
    match value {
        Some(Value::String(s)) => f(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(f),
        _ => {}
    }
}
