//! HTTP context: gathers the request, hands it to the VM core and applies the effects.

use super::apply::{apply, send_reply, Caller, StateRef};
use super::host;
use crate::reply::Denial;
use crate::request::{Body, Headers, Request};
use crate::worker::{CallResponse, ResponsePlan};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

/// One request's context.
pub(crate) struct Http {
    context_id: u32,
    state: Option<StateRef>,
}

impl Http {
    pub(crate) fn new(context_id: u32, state: Option<StateRef>) -> Http {
        Http { context_id, state }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            if let Ok(mut s) = state.try_borrow_mut() {
                s.worker.on_context_gone(self.context_id);
            }
        }
    }
}

/// A dispatched call's response, in whichever context received it.
pub(crate) fn call_response(
    state: &StateRef,
    context: &impl Context,
    current: u32,
    token: u32,
    body_size: usize,
) {
    let status = host::header(host::map::CALL_RESPONSE_HEADERS, ":status")
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok());
    let body = || {
        host::buffer(host::buffer::CALL_RESPONSE_BODY, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let response = CallResponse {
        status,
        body_size,
        body: &body,
    };
    let effects = state.borrow_mut().worker.on_call_response(
        host::now_ms(),
        token,
        &response,
        &mut Caller(context),
    );
    apply(state, effects, current, None);
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if let Some(state) = &self.state {
            call_response(state, self, self.context_id, token, body_size);
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // Without its headers a request is judged as one that has none: fail closed.
        let headers = request_headers().unwrap_or_default();
        let get = |name: &str| headers.first(name).unwrap_or_default().to_string();
        let request_id = get("x-request-id");
        let Some(state) = self.state.clone() else {
            // No usable configuration: fail closed.
            send_reply(&Denial::Unavailable.reply(&request_id));
            return Action::Pause;
        };
        // `xds.route_name` in current Envoy; `route_name` in older releases. Read only
        // when a rule needs it: a property lookup is a host call.
        let (needs_route, needs_certificate) = {
            let s = state.borrow();
            let c = s.worker.config();
            (c.needs_route_name, c.needs_peer_certificate)
        };
        // The client certificate's SHA-256 (hex), only when a provider binds tokens to it.
        let peer_certificate_sha256 = needs_certificate
            .then(|| {
                host::property(&["connection", "sha256_peer_certificate_digest"])
                    .ok()
                    .flatten()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|s| !s.is_empty())
            })
            .flatten();
        let route_name = needs_route
            .then(|| {
                [&["xds", "route_name"][..], &["route_name"][..]]
                    .into_iter()
                    .find_map(|path| {
                        host::property(path)
                            .ok()
                            .flatten()
                            .and_then(|b| String::from_utf8(b).ok())
                            .filter(|s| !s.is_empty())
                    })
            })
            .flatten();
        let request = Request {
            method: get(":method"),
            path: get(":path"),
            authority: get(":authority"),
            route_name,
            request_id,
            headers,
            peer_certificate_sha256,
            // A request that ends with its headers has an empty body, read already.
            body: if end_of_stream {
                Body::Read(Vec::new())
            } else {
                Body::Unread
            },
        };
        let effects = {
            let vm = &mut state.borrow_mut().worker;
            let now = vm.clock();
            vm.on_request(now, self.context_id, request, &mut Caller(self))
        };
        apply(&state, effects, self.context_id, Some(self.context_id))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.trailers()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Pause;
        };
        let read = || {
            host::buffer(host::buffer::HTTP_REQUEST_BODY, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let effects = {
            let vm = &mut state.borrow_mut().worker;
            let now = vm.clock();
            vm.on_request_body(
                now,
                self.context_id,
                (body_size, end_of_stream),
                &read,
                &mut Caller(self),
            )
        };
        apply(&state, effects, self.context_id, Some(self.context_id))
    }

    // Responses reach the module only in bearer_guard_lists.wasm (the other module's
    // exports have no response callbacks): an MCP list answer to filter.
    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        if !state.borrow().worker.filters_responses() {
            return Action::Continue;
        }
        let text = |name: &str| {
            host::header(host::map::RESPONSE_HEADERS, name)
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok())
        };
        let status = text(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
        let (content_type, encoding) = (text("content-type"), text("content-encoding"));
        let length = text("content-length").and_then(|s| s.trim().parse().ok());
        let plan = state.borrow_mut().worker.on_response_headers(
            self.context_id,
            (status, content_type.as_deref(), encoding.as_deref(), length),
        );
        match plan {
            ResponsePlan::Pass | ResponsePlan::Replace(_) => Action::Continue,
            ResponsePlan::Hold => {
                // The filtered body has another length.
                let _ = host::remove_response_header("content-length");
                if end_of_stream {
                    return self.response_body(0, true);
                }
                Action::Pause
            }
            ResponsePlan::Reply(reply) => {
                send_reply(&reply);
                Action::Pause
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // The body is complete with the trailers.
        let size = host::buffer(host::buffer::HTTP_RESPONSE_BODY, usize::MAX)
            .ok()
            .flatten()
            .map_or(0, |b| b.len());
        self.response_body(size, true)
    }
}

impl Http {
    /// `body_size` bytes of the response body so far (`end`: all of it).
    fn response_body(&mut self, body_size: usize, end: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        if !state.borrow().worker.filters_responses() {
            return Action::Continue;
        }
        let read = || {
            host::buffer(host::buffer::HTTP_RESPONSE_BODY, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let plan = {
            let vm = &mut state.borrow_mut().worker;
            let now = vm.clock();
            vm.on_response_body(now, self.context_id, (body_size, end), &read)
        };
        match plan {
            ResponsePlan::Pass => Action::Continue,
            ResponsePlan::Hold => Action::Pause,
            ResponsePlan::Replace(body) => {
                if host::set_buffer(host::buffer::HTTP_RESPONSE_BODY, body_size, &body).is_err() {
                    // The unfiltered body must not go on.
                    send_reply(&crate::reply::Reply::list_unwritable());
                    return Action::Pause;
                }
                Action::Continue
            }
            ResponsePlan::Reply(reply) => {
                send_reply(&reply);
                Action::Pause
            }
        }
    }

    /// The request's trailers: its body is complete.
    fn trailers(&mut self) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Pause;
        };
        let read = |max: usize| {
            host::buffer(host::buffer::HTTP_REQUEST_BODY, max)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let effects = {
            let vm = &mut state.borrow_mut().worker;
            let now = vm.clock();
            vm.on_request_trailers(now, self.context_id, &read, &mut Caller(self))
        };
        apply(&state, effects, self.context_id, Some(self.context_id))
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
