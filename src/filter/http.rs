//! HTTP context: gathers the request, hands it to the VM core and applies the effects.

use super::apply::{apply, send_reply, Caller, StateRef};
use super::host;
use crate::reply::Denial;
use crate::request::{Body, Headers, Request};
use crate::worker::CallResponse;
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
}

impl Http {
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
