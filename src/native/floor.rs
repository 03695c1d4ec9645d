//! The native floor for `make bench` (feature `bench-floor`, never in a shipped module): a
//! second filter of the module, `filter_name: "floor"`, that reads the request's
//! `authorization` header through the binding bearer-guard itself reads headers with
//! ([`FilterHandle::request_headers`]: the whole map, copied) and lets the request go
//! on. What it costs over no filter is what a native filter of this module pays per
//! request in Envoy — the hooks' entries and the header read — so the bench measures
//! bearer-guard's own work natively against it, as the wasm floor
//! (`tests/support/hop_floor_main.rs`) does for the wasm module.
//!
//! It keeps no state: its configuration and its streams are sentinels that
//! [`super::abi`] recognises, so it allocates nothing per stream.

use super::abi::{self, FilterHandle, LogLevel};

/// The floor's `filter_name`.
pub(super) const FILTER_NAME: &str = "floor";

/// A floor configuration (its JSON is ignored).
pub(super) fn new() {
    abi::log(
        LogLevel::Info,
        "bearer-guard: the bench floor (reads the authorization header, nothing else)",
    );
}

/// A request's headers: the `authorization` header read, the request goes on.
pub(super) fn request_headers(handle: FilterHandle) -> u32 {
    let headers = handle.request_headers();
    let authorization = headers
        .iter()
        .find(|(k, _)| k == b"authorization")
        .map(|(_, v)| v.len());
    std::hint::black_box(authorization);
    0
}
