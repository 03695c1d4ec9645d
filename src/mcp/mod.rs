//! MCP (Model Context Protocol) requests as rules see them: the JSON-RPC messages a
//! Streamable HTTP request carries, and the list responses a rule may filter.
//!
//! A client sends everything to one endpoint: POST `application/json` with one JSON-RPC
//! 2.0 message or an array of them (a batch); GET opens a server-sent-event stream and
//! DELETE ends a session (both judged by the path's rule, no message). Each message is
//! read strictly — `jsonrpc` exactly `"2.0"`, no duplicate key at any depth, `method` a
//! string spelled as MCP spells it, `params` an object, `params.name` (tools, prompts) or
//! `params.uri` (resources) a string where the method takes one — and anything else is
//! refused (400), never forwarded unchecked: a permissive server must not run what the
//! filter read differently.

use crate::graphql::Refusal;
use crate::request::Request;
use serde_json::{Map, Value};

/// `mcp.max_body_bytes` when not given.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// `mcp.max_list_bytes` when not given.
pub const DEFAULT_MAX_LIST_BYTES: usize = 1 << 20;
/// The most messages a batch may hold.
pub const MAX_BATCH: usize = 32;
/// The longest method, tool or prompt name read.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest resource URI read.
pub const MAX_URI_BYTES: usize = 4096;

/// The methods of the MCP specification (2025-11-25), as it spells them: a message whose
/// method differs from one of these (or from one a rule names) only in case is refused.
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "roots/list",
    "sampling/createMessage",
    "elicitation/create",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/resources/list_changed",
    "notifications/resources/updated",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
];

/// Bounds on MCP requests and the list responses filtered (`mcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body read (bytes).
    pub max_body_bytes: usize,
    /// Largest list response filtered (bytes); a larger one is replaced by a 502.
    pub max_list_bytes: usize,
    /// Hold the request's head with its body until the body is judged (as
    /// `graphql.hold_head`).
    pub hold_head: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_list_bytes: DEFAULT_MAX_LIST_BYTES,
            hold_head: false,
        }
    }
}

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `method` and an `id`.
    Request,
    /// A `method` without an `id`.
    Notification,
    /// An `id` with a `result` or an `error`, no `method`: the client answering the server.
    Response,
}

/// One JSON-RPC message of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request, notification or response.
    pub kind: Kind,
    /// The method (`None` for a response).
    pub method: Option<String>,
    /// What the method acts on: `params.name` of `tools/call` and `prompts/get`,
    /// `params.uri` of `resources/read`, `resources/subscribe` and `resources/unsubscribe`.
    pub target: Option<String>,
    /// `tools/list`, `prompts/list` or `resources/list`: the list it asks for.
    pub list: Option<ListKind>,
}

impl Message {
    /// A request for `method` on `target` (what a listed item would be called with).
    pub fn call(method: &str, target: &str) -> Message {
        Message {
            kind: Kind::Request,
            method: Some(method.to_string()),
            target: Some(target.to_string()),
            list: None,
        }
    }

    /// For people: `tools/call search_items`, `tools/list`, `response`.
    pub fn describe(&self) -> String {
        match (&self.method, &self.target) {
            (Some(m), Some(t)) => format!("{m} {t}"),
            (Some(m), None) => m.clone(),
            (None, _) => "response".to_string(),
        }
    }
}

/// A list a rule may filter: its method, its member in `result`, and how each item is
/// called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `tools/list`: `result.tools[].name`, called by `tools/call`.
    Tools,
    /// `prompts/list`: `result.prompts[].name`, got by `prompts/get`.
    Prompts,
    /// `resources/list`: `result.resources[].uri`, read by `resources/read`.
    Resources,
}

impl ListKind {
    /// The list a method asks for.
    pub fn of(method: &str) -> Option<ListKind> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            _ => None,
        }
    }

    /// The list's member of `result`.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
        }
    }

    /// The item's identifying member.
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
        }
    }

    /// The method that uses an item of the list.
    pub fn call_method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/call",
            ListKind::Prompts => "prompts/get",
            ListKind::Resources => "resources/read",
        }
    }
}

/// The spellings the configuration knows beyond [`KNOWN_METHODS`]: the methods, tools and
/// prompts its rules name. A message spelling one of them in another case is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spellings {
    /// Methods rules name.
    pub methods: Vec<String>,
    /// Tool and prompt names rules name.
    pub names: Vec<String>,
}

/// Checks what a POST's headers alone can tell: the content type and encoding, and a
/// declared length within the limit.
pub fn check_headers(req: &Request, limits: &Limits) -> Result<(), Refusal> {
    if req.body_encoded() {
        return Err(Refusal::from("MCP request bodies must not be compressed"));
    }
    // One content type (a repeated one is ambiguous: refused).
    let mut types = req.header_values("content-type");
    let (first, second) = (types.next(), types.next());
    let media = first
        .filter(|_| second.is_none())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" {
        return Err(Refusal::from(
            "MCP requests need content-type application/json",
        ));
    }
    if req
        .declared_length()
        .is_some_and(|n| n > limits.max_body_bytes)
    {
        return Err(too_large(limits));
    }
    Ok(())
}

/// The body's size is over the limit.
pub fn too_large(limits: &Limits) -> Refusal {
    Refusal(format!(
        "MCP request body is over the {}-byte limit",
        limits.max_body_bytes
    ))
}

/// The messages of a POST body, in order (a batch: every element).
pub fn messages(
    body: &[u8],
    limits: &Limits,
    spellings: &Spellings,
) -> Result<Vec<Message>, Refusal> {
    if body.len() > limits.max_body_bytes {
        return Err(too_large(limits));
    }
    match crate::strict_json::parse_value(body) {
        Some(Value::Object(map)) => Ok(vec![message(&map, spellings)?]),
        Some(Value::Array(items)) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(Refusal(format!(
                    "a JSON-RPC batch holds 1 to {MAX_BATCH} messages"
                )));
            }
            items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => message(map, spellings),
                    _ => Err(Refusal::from("every element of a JSON-RPC batch is an object")),
                })
                .collect()
        }
        _ => Err(Refusal::from(
            "MCP request body is not a JSON-RPC message (or a batch of them), or has duplicate keys",
        )),
    }
}

/// One message, checked.
fn message(map: &Map<String, Value>, spellings: &Spellings) -> Result<Message, Refusal> {
    if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Refusal::from("jsonrpc must be \"2.0\""));
    }
    let id = match map.get("id") {
        None => None,
        Some(Value::String(_)) => Some(()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(()),
        Some(_) => return Err(Refusal::from("id must be a string or an integer")),
    };
    let method = match map.get("method") {
        None => None,
        Some(Value::String(m)) => Some(m.as_str()),
        Some(_) => return Err(Refusal::from("method must be a string")),
    };
    let answers = map.contains_key("result") as u8 + map.contains_key("error") as u8;
    let Some(method) = method else {
        // The client answering the server: an id, and a result or an error.
        if id.is_none() || answers != 1 {
            return Err(Refusal::from(
                "a JSON-RPC message needs a method, or an id with a result or an error",
            ));
        }
        return Ok(Message {
            kind: Kind::Response,
            method: None,
            target: None,
            list: None,
        });
    };
    if answers != 0 {
        return Err(Refusal::from(
            "a JSON-RPC message with a method has no result or error",
        ));
    }
    check_spelling(
        method,
        "method",
        KNOWN_METHODS
            .iter()
            .copied()
            .chain(spellings.methods.iter().map(String::as_str)),
    )?;
    let params = match map.get("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(Refusal::from("params must be an object")),
    };
    let member = |key: &str| -> Result<String, Refusal> {
        match params.and_then(|p| p.get(key)) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(Refusal(format!("{method} needs params.{key} as a string"))),
        }
    };
    let target = match method {
        "tools/call" | "prompts/get" => {
            let name = member("name")?;
            check_spelling(
                &name,
                "params.name",
                spellings.names.iter().map(String::as_str),
            )?;
            Some(name)
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = member("uri")?;
            check_uri(&uri)?;
            Some(uri)
        }
        _ => None,
    };
    Ok(Message {
        kind: if id.is_some() {
            Kind::Request
        } else {
            Kind::Notification
        },
        method: Some(method.to_string()),
        target,
        list: ListKind::of(method),
    })
}

/// A method or name: non-empty, bounded, no whitespace or control character, and not
/// another case of a spelling the filter knows (a server that folds case would run what
/// a rule did not see).
fn check_spelling<'a>(
    s: &str,
    what: &str,
    known: impl Iterator<Item = &'a str>,
) -> Result<(), Refusal> {
    if s.is_empty()
        || s.len() > MAX_NAME_BYTES
        || s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || invisible(c))
        || (what == "method" && !s.is_ascii())
    {
        return Err(Refusal(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes without spaces, control or invisible characters"
        )));
    }
    for k in known {
        if k != s && k.eq_ignore_ascii_case(s) {
            return Err(Refusal(format!("{what} {s:?} is spelled {k:?}")));
        }
    }
    Ok(())
}

/// A resource URI: bounded, no whitespace or control character, no dot segment or encoded
/// dot or slash, and already in the form a URL parser gives it (the WHATWG parser the
/// Python SDK's `AnyUrl` uses). `FILE:///private/x`, `file:/private/x` and
/// `file://localhost/private/x` all read as `file:///private/x` to such a server: a URI
/// prefix rule must see that spelling, so the others are refused.
fn check_uri(uri: &str) -> Result<(), Refusal> {
    let lower = uri.to_ascii_lowercase();
    let dot_segment = uri.split(['/', '\\']).any(|seg| seg == "." || seg == "..");
    let canonical = url::Url::parse(uri).is_ok_and(|u| u.as_str() == uri);
    if uri.is_empty()
        || uri.len() > MAX_URI_BYTES
        || uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || invisible(c))
        || uri.contains('\\')
        || dot_segment
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || !canonical
    {
        return Err(Refusal::from(
            "params.uri must be a URI in its normalized form, without spaces, dot segments or encoded dots and slashes",
        ));
    }
    Ok(())
}

/// A URI prefix of a rule in the form [`check_uri`] requires of URIs (`None`: it is not,
/// and could never match one).
pub fn canonical_prefix(prefix: &str) -> bool {
    match url::Url::parse(prefix) {
        // The parser may only add to it (`file:` reads as `file:///`).
        Ok(u) => u.as_str().starts_with(prefix),
        // A scheme alone (`file:`) or a prefix that ends mid-URL: its scheme must be
        // lower-case, as the parser writes it.
        Err(_) => prefix
            .split_once(':')
            .is_none_or(|(scheme, _)| !scheme.chars().any(|c| c.is_ascii_uppercase())),
    }
}

/// Characters that show as nothing: zero-width and format characters a name could hide.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
}

/// Whether a listed item could be used at all: a message using it would be read (its
/// name's spelling, or its URI, as [`messages`] checks them).
pub fn callable(kind: ListKind, item: &str, spellings: &Spellings) -> bool {
    match kind {
        ListKind::Tools | ListKind::Prompts => check_spelling(
            item,
            "params.name",
            spellings.names.iter().map(String::as_str),
        )
        .is_ok(),
        ListKind::Resources => check_uri(item).is_ok(),
    }
}

/// What a rule's `mcp` condition matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpMatch {
    /// Methods (empty: those `tools`, `resources` and `prompts` imply, or any).
    pub methods: Vec<String>,
    /// Tool names, for `tools/call`.
    pub tools: Vec<String>,
    /// Resource URI prefixes, for `resources/read`, `resources/subscribe` and
    /// `resources/unsubscribe`.
    pub resources: Vec<String>,
    /// Prompt names, for `prompts/get`.
    pub prompts: Vec<String>,
}

const RESOURCE_METHODS: &[&str] = &[
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

impl McpMatch {
    /// Whether this condition matches a message: its method is listed — or, without
    /// `methods`, is one that `tools`, `resources` or `prompts` imply (any method when
    /// none is given) — and a listed tool, prompt or URI prefix covers what it acts on. A
    /// response (no method) is matched by no condition: the path's rule judges it.
    pub fn matches(&self, m: &Message) -> bool {
        let Some(method) = m.method.as_deref() else {
            return false;
        };
        let implied =
            !self.tools.is_empty() || !self.resources.is_empty() || !self.prompts.is_empty();
        let listed = if !self.methods.is_empty() {
            self.methods.iter().any(|x| x == method)
        } else if implied {
            (method == "tools/call" && !self.tools.is_empty())
                || (method == "prompts/get" && !self.prompts.is_empty())
                || (RESOURCE_METHODS.contains(&method) && !self.resources.is_empty())
        } else {
            true
        };
        if !listed {
            return false;
        }
        let target = m.target.as_deref().unwrap_or("");
        match method {
            "tools/call" if !self.tools.is_empty() => self.tools.iter().any(|t| t == target),
            "prompts/get" if !self.prompts.is_empty() => self.prompts.iter().any(|p| p == target),
            _ if RESOURCE_METHODS.contains(&method) && !self.resources.is_empty() => self
                .resources
                .iter()
                .any(|p| target.starts_with(p.as_str())),
            _ => true,
        }
    }

    /// Whether a message asking for `kind`'s list can match this condition.
    pub fn may_list(&self, kind: ListKind) -> bool {
        let method = match kind {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
        };
        let probe = Message {
            kind: Kind::Request,
            method: Some(method.to_string()),
            target: None,
            list: Some(kind),
        };
        self.matches(&probe)
    }

    /// For people: `mcp tools/call delete_index`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.methods.is_empty() {
            parts.push(self.methods.join(", "));
        }
        for (what, list) in [
            ("tools", &self.tools),
            ("resources", &self.resources),
            ("prompts", &self.prompts),
        ] {
            if !list.is_empty() {
                parts.push(format!("{what} {}", list.join(", ")));
            }
        }
        if parts.is_empty() {
            "mcp, any message".to_string()
        } else {
            format!("mcp {}", parts.join("; "))
        }
    }
}

/// The media type of a response to filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`: one JSON-RPC response or a batch of them.
    Json,
    /// `text/event-stream`: server-sent events, each `data` a JSON-RPC message.
    EventStream,
}

impl Media {
    /// A response's media type from its `content-type` (`None`: neither).
    pub fn of(content_type: &str) -> Option<Media> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Some(Media::Json),
            "text/event-stream" => Some(Media::EventStream),
            _ => None,
        }
    }
}

/// What filtering a list response did: the body to send, and how many items it hid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The new body.
    pub body: Vec<u8>,
    /// Items removed.
    pub hidden: usize,
}

/// Filters the lists of `kinds` in a response body: in every JSON-RPC response it holds
/// (one, a batch, or one per server-sent event), `result.<list>` keeps only the items
/// `allowed(kind, name or uri)` says the caller may use. An item without its name is
/// dropped; a body that cannot be read this way is refused (the caller answers 502, never
/// the body unfiltered).
pub fn filter_lists(
    body: &[u8],
    media: Media,
    kinds: &[ListKind],
    allowed: &mut dyn FnMut(ListKind, &str) -> bool,
) -> Result<Filtered, Refusal> {
    let mut hidden = 0;
    let body = match media {
        Media::Json => {
            let mut value = crate::strict_json::parse_value(body)
                .ok_or("the list response is not JSON, or has duplicate keys")?;
            filter_value(&mut value, kinds, allowed, &mut hidden)?;
            serde_json::to_vec(&value).map_err(|_| "the list response cannot be written")?
        }
        Media::EventStream => filter_events(body, kinds, allowed, &mut hidden)?,
    };
    Ok(Filtered { body, hidden })
}

/// Whether an event-stream line is the field `name` (`name` alone, or `name:` and a value).
fn is_field(line: &str, name: &str) -> bool {
    line.strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

/// One JSON-RPC response, or a batch of them.
fn filter_value(
    value: &mut Value,
    kinds: &[ListKind],
    allowed: &mut dyn FnMut(ListKind, &str) -> bool,
    hidden: &mut usize,
) -> Result<(), Refusal> {
    match value {
        Value::Array(items) => {
            for item in items {
                filter_value(item, kinds, allowed, hidden)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            let Some(result) = map.get_mut("result") else {
                return Ok(());
            };
            let Value::Object(result) = result else {
                return Ok(());
            };
            for &kind in kinds {
                let Some(list) = result.get_mut(kind.member()) else {
                    continue;
                };
                let Value::Array(items) = list else {
                    return Err(Refusal(format!("result.{} is not a list", kind.member())));
                };
                let before = items.len();
                items.retain(|item| {
                    item.get(kind.key())
                        .and_then(Value::as_str)
                        .is_some_and(|name| allowed(kind, name))
                });
                *hidden += before - items.len();
            }
            Ok(())
        }
        _ => Err(Refusal::from("the list response is not a JSON-RPC message")),
    }
}

/// A server-sent-event stream: each event's `data` lines are one JSON-RPC message,
/// filtered and written back as one `data` line after the event's other fields (whose
/// order an event does not depend on); blank lines stay where they were.
fn filter_events(
    body: &[u8],
    kinds: &[ListKind],
    allowed: &mut dyn FnMut(ListKind, &str) -> bool,
    hidden: &mut usize,
) -> Result<Vec<u8>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| "the event stream is not UTF-8")?;
    // A client's decoder drops a leading byte-order mark: so does the filter, else the
    // first line would be no field to it and a `data` line to the client.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    // Lines end with CRLF, LF or CR (the event-stream grammar); events end at a blank line.
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    for block in normalized.split("\n\n") {
        // The event's lines, its data lines joined in place of the first of them.
        let mut lines: Vec<String> = Vec::new();
        let mut data: Option<(usize, Vec<&str>)> = None;
        for line in block.split('\n') {
            match line.strip_prefix("data") {
                Some(rest) if rest.is_empty() || rest.starts_with(':') => {
                    let v = rest.strip_prefix(':').unwrap_or(rest);
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    match &mut data {
                        Some((_, parts)) => parts.push(v),
                        None => {
                            data = Some((lines.len(), vec![v]));
                            // Replaced by the filtered message (kept for an empty event).
                            lines.push(line.to_string());
                        }
                    }
                }
                // An event id of a filtered answer is dropped: with it, a client could
                // have the server replay the unfiltered answer (`Last-Event-ID` on GET).
                Some(_) => lines.push(line.to_string()),
                None if is_field(line, "id") => {}
                None => lines.push(line.to_string()),
            }
        }
        if let Some((at, parts)) =
            data.filter(|(_, parts)| parts.iter().any(|p| !p.trim().is_empty()))
        {
            let joined = parts.join("\n");
            let mut value = crate::strict_json::parse_value(joined.as_bytes())
                .ok_or("an event of the list response is not JSON, or has duplicate keys")?;
            filter_value(&mut value, kinds, allowed, hidden)?;
            if let Some(slot) = lines.get_mut(at) {
                *slot = format!("data: {value}");
            }
        }
        events.push(lines.join("\n"));
    }
    Ok(events.join("\n\n").into_bytes())
}

#[cfg(test)]
mod tests;
