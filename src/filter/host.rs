//! The host calls the filter makes, declared on the raw ABI with `u32` results.
//!
//! The proxy-wasm SDK declares every import as returning its `Status` enum (a host may
//! return codes the enum lacks: undefined behaviour in principle) and panics on any status
//! it did not expect — and a panic kills the VM for every later request. Here every result
//! is an integer, every failure a value ([`HostError`]), and nothing panics.
//!
//! One call still goes through the SDK: `dispatch_http_call`, because the SDK keeps the
//! registry that routes a call's response to the context that made it. For valid memory
//! Envoy answers it only with Ok, BadArgument (unknown cluster, bad headers) or
//! InternalFailure, which the SDK maps to errors.

use std::ptr::{null, null_mut};

/// A host call's non-zero result code (proxy-wasm `WasmResult`: 1 NotFound, 2 BadArgument,
/// 8 CasMismatch, 10 InternalFailure, 12 Unimplemented, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostError(pub u32);

/// `WasmResult::NotFound`.
pub(crate) const NOT_FOUND: HostError = HostError(1);
/// `WasmResult::CasMismatch`.
pub(crate) const CAS_MISMATCH: HostError = HostError(8);

/// proxy-wasm `MapType` values the filter uses.
pub(crate) mod map {
    /// The request's headers.
    pub(crate) const REQUEST_HEADERS: u32 = 0;
    /// The response's headers.
    pub(crate) const RESPONSE_HEADERS: u32 = 2;
    /// A dispatched call's response headers.
    pub(crate) const CALL_RESPONSE_HEADERS: u32 = 6;
}

/// proxy-wasm `BufferType` values the filter uses.
pub(crate) mod buffer {
    /// The request's body (what Envoy has buffered of it).
    pub(crate) const HTTP_REQUEST_BODY: u32 = 0;
    /// The response's body (what Envoy has buffered of it).
    pub(crate) const HTTP_RESPONSE_BODY: u32 = 1;
    /// A dispatched call's response body.
    pub(crate) const CALL_RESPONSE_BODY: u32 = 4;
    /// The plugin configuration.
    pub(crate) const PLUGIN_CONFIGURATION: u32 = 7;
}

/// proxy-wasm log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(dead_code)]
pub(crate) enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

fn check(code: u32) -> Result<(), HostError> {
    if code == 0 {
        Ok(())
    } else {
        Err(HostError(code))
    }
}

/// Takes back a buffer the host wrote into this module's memory.
///
/// # Safety
/// `data` is null or a pointer the host obtained from this module's
/// `proxy_on_memory_allocate` (the SDK's: a `Vec<u8>` of capacity `size`, forgotten) for
/// exactly `size` bytes, not taken back before.
unsafe fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: as the caller guarantees; the SDK frees such buffers the same way.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

/// Runs a host call that may return a buffer: `Ok(None)` for NotFound.
fn with_buffer(
    call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let code = call(&mut data, &mut size);
    // SAFETY: the host wrote (or left null) a buffer it allocated through this module.
    let bytes = unsafe { take(data, size) };
    match check(code) {
        Ok(()) => Ok(Some(bytes)),
        Err(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Logs a line; failures are ignored.
pub(crate) fn log(level: Level, message: &str) {
    // SAFETY: a valid slice for the call's duration.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// Whether the host prints lines of `level`.
pub(crate) fn logs(level: Level) -> bool {
    let mut current = 0u32;
    // SAFETY: a valid out-pointer.
    let code = unsafe { proxy_get_log_level(&mut current) };
    code == 0 && current <= level as u32
}

/// The host's clock, milliseconds since the epoch (0 if it cannot be read).
pub(crate) fn now_ms() -> u64 {
    let mut ns = 0u64;
    // SAFETY: a valid out-pointer.
    let code = unsafe { proxy_get_current_time_nanoseconds(&mut ns) };
    if code == 0 {
        ns / 1_000_000
    } else {
        0
    }
}

/// 16 bytes from the host's random source (WASI `random_get`, which Envoy serves from
/// BoringSSL), or `None` when it has none.
pub(crate) fn random16() -> Option<[u8; 16]> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok().map(|()| bytes)
}

/// Sets the root context's tick period.
pub(crate) fn set_tick_period_ms(ms: u32) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Up to `max` bytes of a host buffer (`None`: no such buffer).
pub(crate) fn buffer(kind: u32, max: usize) -> Result<Option<Vec<u8>>, HostError> {
    // SAFETY: out-pointers valid for the call.
    with_buffer(|d, s| unsafe { proxy_get_buffer_bytes(kind, 0, max, d, s) })
}

/// Replaces the first `size` bytes of a host buffer (all of it, for Envoy) with `data`.
pub(crate) fn set_buffer(kind: u32, size: usize, data: &[u8]) -> Result<(), HostError> {
    // SAFETY: a valid slice for the call's duration.
    check(unsafe { proxy_set_buffer_bytes(kind, 0, size, data.as_ptr(), data.len()) })
}

/// Removes a response header.
pub(crate) fn remove_response_header(name: &str) -> Result<(), HostError> {
    // SAFETY: a valid slice for the call's duration.
    check(unsafe {
        proxy_remove_header_map_value(map::RESPONSE_HEADERS, name.as_ptr(), name.len())
    })
}

/// A header map, serialized (decode with `request::Headers::from_serialized`).
pub(crate) fn header_map(kind: u32) -> Result<Vec<u8>, HostError> {
    // SAFETY: out-pointers valid for the call.
    with_buffer(|d, s| unsafe { proxy_get_header_map_pairs(kind, d, s) })
        .map(Option::unwrap_or_default)
}

/// One header's value, as bytes (`None`: absent).
pub(crate) fn header(kind: u32, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    // SAFETY: a valid key slice and out-pointers for the call.
    with_buffer(|d, s| unsafe { proxy_get_header_map_value(kind, name.as_ptr(), name.len(), d, s) })
}

/// Sets a request header, or removes it with `None`.
pub(crate) fn set_request_header(name: &str, value: Option<&str>) -> Result<(), HostError> {
    let (k, n) = (name.as_ptr(), name.len());
    // SAFETY: valid slices for the call's duration.
    check(unsafe {
        match value {
            Some(v) => {
                proxy_replace_header_map_value(map::REQUEST_HEADERS, k, n, v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map::REQUEST_HEADERS, k, n),
        }
    })
}

/// A property by path, e.g. `["xds", "route_name"]` (`None`: not set).
pub(crate) fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    // The ABI takes the path's parts each followed by a NUL.
    let mut encoded = Vec::new();
    for part in path {
        encoded.extend_from_slice(part.as_bytes());
        encoded.push(0);
    }
    // SAFETY: a valid path slice and out-pointers for the call.
    with_buffer(|d, s| unsafe { proxy_get_property(encoded.as_ptr(), encoded.len(), d, s) })
}

/// Sets a property of the current stream: Envoy keeps it as filter state `wasm.<name>`,
/// which access logs print with `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub(crate) fn set_property(name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: valid slices for the call's duration.
    check(unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Makes `context_id` the context later calls act on.
pub(crate) fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Resumes the effective context's paused request.
pub(crate) fn resume_request() -> Result<(), HostError> {
    // SAFETY: no pointers. Stream type 0 is the HTTP request.
    check(unsafe { proxy_continue_stream(0) })
}

/// Answers the effective context's request locally.
pub(crate) fn send_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), HostError> {
    let headers = crate::request::serialize_pairs(headers);
    // SAFETY: valid slices for the call's duration; -1: not a gRPC reply.
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Calls a foreign function registered by the host (`Ok(None)`: it answered nothing;
/// `Err(NOT_FOUND)`: the host has no such function).
pub(crate) fn call_foreign_function(name: &str, args: &[u8]) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: valid slices and out-pointers for the call.
    let code = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            args.as_ptr(),
            args.len(),
            &mut data,
            &mut size,
        )
    };
    // SAFETY: the host wrote (or left null) a buffer it allocated through this module.
    let bytes = unsafe { take(data, size) };
    check(code).map(|()| (!bytes.is_empty()).then_some(bytes))
}

/// proxy-wasm metric kinds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MetricKind {
    Counter = 0,
    Gauge = 1,
}

/// Defines a metric; its id.
pub(crate) fn define_metric(kind: MetricKind, name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    // SAFETY: a valid name slice and out-pointer.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

/// Adds to a counter.
pub(crate) fn increment_metric(id: u32, by: i64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_increment_metric(id, by) })
}

/// Sets a gauge.
pub(crate) fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_record_metric(id, value) })
}

/// A process-wide shared-data value and its compare-and-swap token (`None`: never set).
pub(crate) fn shared_get(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas = 0u32;
    // SAFETY: a valid key slice and out-pointers for the call.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    // SAFETY: the host wrote (or left null) a buffer it allocated through this module.
    let bytes = unsafe { take(data, size) };
    match check(code) {
        Ok(()) => Ok(Some((bytes, cas))),
        Err(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets a shared-data value if its CAS token is still `cas` (0: unconditionally);
/// `Err(CAS_MISMATCH)` when another VM wrote it first.
pub(crate) fn shared_set(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
    // SAFETY: valid slices for the call's duration.
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

/// The process-wide store on the host's shared data; a VM whose host refuses shared data
/// keeps its state to itself (an in-memory store), as before there was a shared level.
pub(crate) enum HostStore {
    /// The host's shared data.
    Shared,
    /// This VM's memory only.
    Local(crate::shared::MemoryStore),
}

impl HostStore {
    /// Probes the host once: the shared store if it takes a write.
    pub(crate) fn probe() -> HostStore {
        match shared_set("bearer_guard.probe", b"1", 0) {
            Ok(()) => HostStore::Shared,
            Err(e) => {
                log(
                    Level::Warn,
                    &format!("bearer-guard: the host has no shared data (status {}): keys, tokens and accounts are kept per worker", e.0),
                );
                HostStore::Local(crate::shared::MemoryStore::default())
            }
        }
    }
}

impl crate::shared::Store for HostStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match self {
            HostStore::Shared => shared_get(key).ok().flatten(),
            HostStore::Local(m) => m.get(key),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), crate::shared::StoreError> {
        match self {
            HostStore::Shared => shared_set(key, value, cas).map_err(|e| {
                if e == CAS_MISMATCH {
                    crate::shared::StoreError::CasMismatch
                } else {
                    crate::shared::StoreError::Host(e.0)
                }
            }),
            HostStore::Local(m) => m.set(key, value, cas),
        }
    }
}
