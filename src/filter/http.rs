//! HTTP context: gathers the request, strips client copies of identity headers, runs the
//! pipeline and applies the decision.

use super::host;
use super::state::{handle, on_call_response, send_reply, SharedRef};
use crate::reply::Denial;
use crate::request::{Headers, Request};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

/// One request's context.
pub(crate) struct Http {
    context_id: u32,
    shared: Option<SharedRef>,
}

impl Http {
    pub(crate) fn new(context_id: u32, shared: Option<SharedRef>) -> Http {
        Http { context_id, shared }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            if let Ok(mut s) = shared.try_borrow_mut() {
                s.waiters.forget(self.context_id);
            }
        }
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(shared) = &self.shared {
            on_call_response(
                shared,
                token_id,
                body_size,
                self.context_id,
                &|cluster, headers, timeout| {
                    self.dispatch_http_call(cluster, headers, None, vec![], timeout)
                },
            );
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Without its headers a request is judged as one that has none: fail closed.
        let headers = request_headers().unwrap_or_default();
        let get = |name: &str| headers.first(name).unwrap_or_default().to_string();
        let request_id = get("x-request-id");
        let Some(shared) = self.shared.clone() else {
            // No usable configuration: fail closed.
            return send_reply(&Denial::Unavailable, &request_id);
        };
        // Client-sent copies of every header the filter may set go first, on every route.
        {
            let s = shared.borrow();
            for name in s.config.owned_headers() {
                if headers.first(name).is_some() {
                    let _ = host::set_request_header(name, None);
                }
            }
        }
        // `xds.route_name` in current Envoy; `route_name` in older releases. Read only when a
        // rule needs it: a property lookup is a hostcall.
        let needs_route = shared.borrow().config.needs_route_name;
        let route_name = if !needs_route {
            None
        } else {
            [vec!["xds", "route_name"], vec!["route_name"]]
                .into_iter()
                .find_map(|path| {
                    host::property(&path)
                        .ok()
                        .flatten()
                        .and_then(|b| String::from_utf8(b).ok())
                        .filter(|s| !s.is_empty())
                })
        };
        let request = Request {
            method: get(":method"),
            path: get(":path"),
            authority: get(":authority"),
            route_name,
            request_id,
            headers,
        };
        handle(
            &shared,
            self.context_id,
            request,
            &|cluster, hs, timeout| self.dispatch_http_call(cluster, hs, None, vec![], timeout),
        )
    }
}

/// The request's headers, fetched with one host call and decoded into one buffer. The
/// SDK's own getter is not used: it allocates two strings per header and panics on a
/// header value that is not UTF-8 (which HTTP allows and Envoy passes on), and a panic
/// kills the VM for every later request.
fn request_headers() -> Option<Headers> {
    let bytes = host::header_map(host::map::REQUEST_HEADERS).ok()?;
    Headers::from_serialized(&bytes)
}
