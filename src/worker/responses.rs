//! MCP list answers filtered to what the caller may use (`filter_lists`): the requests
//! whose answers are filtered, and what the host does with each response.
//!
//! A request allowed with lists to filter is remembered by its context (its head only)
//! and asks its server for an uncompressed answer. Its response is held — headers and
//! body, up to `mcp.max_list_bytes` — and once complete each listed item is judged as
//! the message that would use it, under the current rules, with the same request head
//! (token, path, host); the body is replaced by the filtered one. A response that cannot
//! be filtered (too large, compressed, not JSON or an event stream, unreadable) is
//! replaced by a 502, never passed on unfiltered. Every other response passes untouched.

use crate::mcp::{self, ListKind, Media};
use crate::reply::Reply;
use crate::request::Request;
use std::collections::HashMap;

/// What the host does with a response (or a part of its body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePlan {
    /// Pass it on untouched (not a filtered answer).
    Pass,
    /// Hold it: headers until the body is complete, body chunks buffered (the host
    /// removes `content-length`, which the filtered body changes).
    Hold,
    /// The body is complete: replace it with this one.
    Replace(Vec<u8>),
    /// Replace the whole response with this local reply.
    Reply(Reply),
}

/// A request whose answer is filtered.
#[derive(Debug)]
pub(super) struct Pending {
    request: Request,
    lists: Vec<ListKind>,
    media: Option<Media>,
}

/// The requests of this worker whose answers are filtered, by context.
#[derive(Debug, Default)]
pub struct Responses {
    pending: HashMap<u32, Pending>,
}

/// A filtered answer that cannot go to the client: why, and its request's id.
pub(super) struct Refused {
    pub(super) why: &'static str,
    pub(super) request_id: String,
}

impl Refused {
    /// The 502 that replaces the answer.
    pub(super) fn reply(&self) -> ResponsePlan {
        ResponsePlan::Reply(Reply::bad_gateway(self.why, &self.request_id))
    }
}

/// Judges the items of a list for the request that asked for it: one verdict per item
/// (shown or hidden).
pub(super) type ItemJudge<'a> = dyn FnMut(&Request, ListKind, &[&str]) -> Vec<bool> + 'a;

/// Items judged and hidden, for the metrics and the log.
pub(super) struct Judged {
    pub(super) plan: ResponsePlan,
    pub(super) hidden: usize,
}

impl Responses {
    /// The answer to `request` (allowed, in `context`) is filtered for `lists`.
    pub(super) fn expect(&mut self, context: u32, request: Request, lists: Vec<ListKind>) {
        self.pending.insert(
            context,
            Pending {
                request,
                lists,
                media: None,
            },
        );
    }

    /// Whether any response is to be filtered (the hot path's only question).
    pub fn any(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The context is gone.
    pub(super) fn forget(&mut self, context: u32) {
        self.pending.remove(&context);
    }

    /// The response's head: hold a filtered answer, refuse one that cannot be filtered.
    pub(super) fn head(
        &mut self,
        context: u32,
        (status, content_type, content_encoding, content_length): (
            u32,
            Option<&str>,
            Option<&str>,
            Option<usize>,
        ),
        limits: &mcp::Limits,
    ) -> Result<ResponsePlan, Refused> {
        let Some(p) = self.pending.get_mut(&context) else {
            return Ok(ResponsePlan::Pass);
        };
        let refuse = |why, p: &Pending| Refused {
            why,
            request_id: p.request.request_id.clone(),
        };
        // No list in an error, a 204, or an accepted notification (202 without a body): a
        // 202 with a body is read like any other answer.
        let empty = status == 204 || (status == 202 && content_length == Some(0));
        if !(200..300).contains(&status) || empty {
            self.pending.remove(&context);
            return Ok(ResponsePlan::Pass);
        }
        let why = if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            "The MCP server's list answer is compressed"
        } else if let Some(media) = content_type.and_then(Media::of) {
            if content_length.is_some_and(|n| n > limits.max_list_bytes) {
                TOO_LARGE
            } else {
                p.media = Some(media);
                return Ok(ResponsePlan::Hold);
            }
        } else {
            "The MCP server's list answer is neither JSON nor an event stream"
        };
        let refused = refuse(why, p);
        self.pending.remove(&context);
        Err(refused)
    }

    /// Takes the answer of `context` out while its body is judged (put back with
    /// [`Responses::hold`] while it is incomplete): if judging panics, only this answer —
    /// whose stream the host then answers 502 — is forgotten, never another one.
    pub(super) fn take(&mut self, context: u32) -> Option<Pending> {
        self.pending.remove(&context)
    }

    /// Puts back an answer whose body is not complete yet.
    pub(super) fn hold(&mut self, context: u32, p: Pending) {
        self.pending.insert(context, p);
    }
}

/// More of the body of a filtered answer (`size` bytes so far; `end`: all of it, which
/// `read` reads): the plan, and the answer back when it is still held. `allowed` judges
/// the items of a list.
pub(super) fn body(
    p: Pending,
    (size, end): (usize, bool),
    read: &dyn Fn() -> Vec<u8>,
    limits: &mcp::Limits,
    allowed: &mut ItemJudge<'_>,
) -> (Result<Judged, Refused>, Option<Pending>) {
    let Some(media) = p.media else {
        // The head was not held: not a filtered answer.
        let pass = Judged {
            plan: ResponsePlan::Pass,
            hidden: 0,
        };
        return (Ok(pass), None);
    };
    let refuse = |why, p: &Pending| Refused {
        why,
        request_id: p.request.request_id.clone(),
    };
    if size > limits.max_list_bytes {
        return (Err(refuse(TOO_LARGE, &p)), None);
    }
    if !end {
        let hold = Judged {
            plan: ResponsePlan::Hold,
            hidden: 0,
        };
        return (Ok(hold), Some(p));
    }
    (filter(&p, media, read(), limits, allowed), None)
}

/// The complete body of a filtered answer, filtered.
fn filter(
    p: &Pending,
    media: Media,
    body: Vec<u8>,
    limits: &mcp::Limits,
    allowed: &mut ItemJudge<'_>,
) -> Result<Judged, Refused> {
    let refuse = |why| Refused {
        why,
        request_id: p.request.request_id.clone(),
    };
    if body.len() > limits.max_list_bytes {
        return Err(refuse(TOO_LARGE));
    }
    // Each list's items judged at once (one decision per rule), then kept or dropped.
    let mut verdicts: HashMap<(ListKind, String), bool> = HashMap::new();
    let mut names: Vec<(ListKind, String)> = Vec::new();
    let _ = mcp::filter_lists(&body, media, &p.lists, &mut |kind, name| {
        names.push((kind, name.to_string()));
        true
    })
    .map_err(|_| refuse(UNREADABLE))?;
    for kind in &p.lists {
        let items: Vec<&str> = names
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n.as_str())
            .collect();
        let ok = allowed(&p.request, *kind, &items);
        for (item, ok) in items.iter().zip(ok) {
            verdicts.insert((*kind, item.to_string()), ok);
        }
    }
    let filtered = mcp::filter_lists(&body, media, &p.lists, &mut |kind, name| {
        verdicts
            .get(&(kind, name.to_string()))
            .copied()
            .unwrap_or(false)
    })
    .map_err(|_| refuse(UNREADABLE))?;
    Ok(Judged {
        plan: ResponsePlan::Replace(filtered.body),
        hidden: filtered.hidden,
    })
}

const TOO_LARGE: &str = "The MCP server's list answer is over the size limit";
const UNREADABLE: &str = "The MCP server's list answer could not be read";
/// The upstream answered a request whose body was not judged yet.
pub(super) const ANSWERED_EARLY: &str = "The MCP server answered before its request was judged";
