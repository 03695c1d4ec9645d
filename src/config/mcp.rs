//! `mcp` (bounds on MCP requests and filtered lists), a rule's `match.mcp` and
//! `filter_lists`, and the `audiences` lists whose `{resource}` stands for the request's
//! protected resource.

use super::reader::Fields;
use crate::error::{err, ConfigError};
use crate::mcp::{Limits, ListKind, McpMatch, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_LIST_BYTES};
use crate::token::Audiences;

/// The placeholder for the matching `protected_resources` entry's identifier.
pub const RESOURCE_PLACEHOLDER: &str = "{resource}";

/// `mcp`: bounds on MCP requests and list responses, each checked against its range.
pub(super) fn read_limits(top: &Fields) -> Result<Limits, ConfigError> {
    let keys = ["max_body_bytes", "max_list_bytes", "hold_head"];
    let Some(m) = top.object("mcp", &keys)? else {
        return Ok(Limits::default());
    };
    let limits = Limits {
        max_body_bytes: m.usize_or("max_body_bytes", DEFAULT_MAX_BODY_BYTES)?,
        max_list_bytes: m.usize_or("max_list_bytes", DEFAULT_MAX_LIST_BYTES)?,
        hold_head: m.bool_or("hold_head", false)?,
    };
    for (key, value) in [
        ("max_body_bytes", limits.max_body_bytes),
        ("max_list_bytes", limits.max_list_bytes),
    ] {
        if !(256..=16 << 20).contains(&value) {
            return err(m.path(key), "must be between 256 and 16777216");
        }
    }
    Ok(limits)
}

/// `match.mcp` of a rule, checked: names without spaces, URI prefixes non-empty.
pub(super) fn read_match(m: &Fields) -> Result<Option<McpMatch>, ConfigError> {
    let Some(g) = m.object("mcp", &["methods", "tools", "resources", "prompts"])? else {
        return Ok(None);
    };
    let read = |key: &'static str| -> Result<Vec<String>, ConfigError> {
        let list = g.strings(key)?;
        for (j, s) in list.iter().enumerate() {
            if s.is_empty()
                || s.len() > crate::mcp::MAX_NAME_BYTES.max(crate::mcp::MAX_URI_BYTES)
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return err(
                    format!("{}[{j}]", g.path(key)),
                    format!("{s:?} is not a JSON-RPC method, tool, prompt or URI prefix"),
                );
            }
        }
        Ok(list)
    };
    let resources = read("resources")?;
    for (j, prefix) in resources.iter().enumerate() {
        if !crate::mcp::canonical_prefix(prefix) {
            return err(
                format!("{}[{j}]", g.path("resources")),
                format!("{prefix:?} is not written as a URL parser writes it (lower-case scheme and host, file:/// for files): no normalized URI starts with it"),
            );
        }
    }
    Ok(Some(McpMatch {
        methods: read("methods")?,
        tools: read("tools")?,
        resources,
        prompts: read("prompts")?,
    }))
}

/// `filter_lists` on a rule: it needs a `match.mcp` condition that lists can match.
pub(super) fn check_filter_lists(
    filter_lists: bool,
    mcp: Option<&McpMatch>,
    at: &str,
) -> Result<(), ConfigError> {
    if !filter_lists {
        return Ok(());
    }
    let Some(m) = mcp else {
        return err(
            format!("{at}.filter_lists"),
            "needs match.mcp: the rule that judges tools/list, prompts/list or resources/list filters their answers",
        );
    };
    if ![ListKind::Tools, ListKind::Prompts, ListKind::Resources]
        .into_iter()
        .any(|k| m.may_list(k))
    {
        return err(
            format!("{at}.filter_lists"),
            "match.mcp matches no tools/list, prompts/list or resources/list message",
        );
    }
    Ok(())
}

/// An `audiences` list: exact values, and `{resource}` for the request's resource
/// identifier (which needs `protected_resources`); other braces are a typo.
pub(super) fn audiences(
    list: Vec<String>,
    at: &str,
    has_resources: bool,
) -> Result<Audiences, ConfigError> {
    let mut out = Audiences::default();
    for (j, a) in list.into_iter().enumerate() {
        let field = format!("{at}[{j}]");
        if a == RESOURCE_PLACEHOLDER {
            if !has_resources {
                return err(
                    field,
                    "{resource} stands for the matching protected_resources entry: declare protected_resources",
                );
            }
            out.resource = true;
        } else if a.contains(['{', '}']) || a.is_empty() {
            return err(
                field,
                format!("{a:?}: the only placeholder is {RESOURCE_PLACEHOLDER}"),
            );
        } else {
            out.exact.push(a);
        }
    }
    Ok(out)
}
