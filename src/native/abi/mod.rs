//! Our own bindings to Envoy 1.40's dynamic-module ABI (`v0.2.0`): the hooks this module
//! exports and the callbacks it calls, declared from the ABI's documentation — and the
//! only `unsafe` of the native host.
//!
//! Callbacks are looked up once, at program init, with `dlsym` in the process (Envoy
//! exports them from its executable) instead of being linked: the same library links
//! into the test binaries, where no Envoy is, and a missing callback is a clear error at
//! load rather than an unresolved symbol. Every hook catches unwinding: a request hook
//! that panics answers the contract's 500, a configuration hook refuses the
//! configuration; nothing unwinds into Envoy and no request is left hanging.

use super::filter::{self, Stream};
#[cfg(feature = "bench-floor")]
use super::floor;
use super::plugin::{self, Plugin};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

mod hooks;

/// The ABI version this module is built for (Envoy 1.40 expects it).
pub(super) const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Bytes Envoy owns (valid during the hook or until the object changes).
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct EnvoyBuffer {
    ptr: *const u8,
    len: usize,
}

/// Bytes this module owns (Envoy copies them during the call).
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    len: usize,
}

/// A header Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct EnvoyHeader {
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
}

/// A header this module owns.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleHeader {
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
}

/// No bytes: a null pointer (for `http_set_header`, removes the header).
const NULL_BUFFER: ModuleBuffer = ModuleBuffer {
    ptr: std::ptr::null(),
    len: 0,
};

fn buf(bytes: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: bytes.as_ptr(),
        len: bytes.len(),
    }
}

fn header(k: &[u8], v: &[u8]) -> ModuleHeader {
    ModuleHeader {
        key: k.as_ptr(),
        key_len: k.len(),
        value: v.as_ptr(),
        value_len: v.len(),
    }
}

/// Copies Envoy's bytes (empty for a null pointer).
fn copy(b: EnvoyBuffer) -> Vec<u8> {
    if b.ptr.is_null() || b.len == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy hands a pointer to `len` readable bytes, valid during this call.
    unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec()
}

/// Borrows `len` bytes Envoy handed at `ptr` (empty for a null pointer): only within the
/// callback that handed them, never kept.
fn borrow<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: Envoy hands a pointer to `len` readable bytes, valid during this call; the
    // callers use the slice before they return.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Copies an Envoy header's key and value.
fn copy_header(h: &EnvoyHeader) -> (Vec<u8>, Vec<u8>) {
    (
        copy(EnvoyBuffer {
            ptr: h.key,
            len: h.key_len,
        }),
        copy(EnvoyBuffer {
            ptr: h.value,
            len: h.value_len,
        }),
    )
}

/// Copies an array of Envoy headers.
fn copy_headers(headers: *const EnvoyHeader, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    if headers.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy hands `n` headers, valid during this call.
    unsafe { std::slice::from_raw_parts(headers, n) }
        .iter()
        .map(copy_header)
        .collect()
}

/// The total size of an array of Envoy buffers, read without copying them.
fn total_size(chunks: *const EnvoyBuffer, n: usize) -> usize {
    if chunks.is_null() || n == 0 {
        return 0;
    }
    // SAFETY: Envoy hands `n` buffers, valid during this call.
    let chunks = unsafe { std::slice::from_raw_parts(chunks, n) };
    chunks
        .iter()
        .filter(|c| !c.ptr.is_null())
        .fold(0usize, |n, c| n.saturating_add(c.len))
}

/// Copies and joins an array of Envoy buffers.
fn copy_chunks(chunks: *const EnvoyBuffer, n: usize) -> Vec<u8> {
    if chunks.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy hands `n` buffers, valid during this call.
    let chunks = unsafe { std::slice::from_raw_parts(chunks, n) };
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&copy(*c));
    }
    out
}

/// Declares the callbacks: the table of function pointers and its lookup.
macro_rules! callbacks {
    ($($field:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        /// Envoy's callbacks this module calls.
        struct Api {
            $($field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
        }

        impl Api {
            /// Looks every callback up in the process; `Err` names the first missing one.
            fn resolve() -> Result<Api, &'static str> {
                Ok(Api {
                    $($field: {
                        let name = concat!("envoy_dynamic_module_callback_", stringify!($field), "\0");
                        // SAFETY: a NUL-terminated name; RTLD_DEFAULT (null) searches the
                        // process's global symbols, Envoy's executable among them.
                        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast()) };
                        if p.is_null() {
                            return Err(stringify!($field));
                        }
                        // SAFETY: the symbol is Envoy's callback of this signature (the
                        // ABI's documentation for 1.40).
                        unsafe {
                            std::mem::transmute::<*mut c_void, unsafe extern "C" fn($($arg),*) $(-> $ret)?>(p)
                        }
                    },)*
                })
            }
        }
    };
}

callbacks! {
    log_v2: fn(u32, ModuleBuffer, ModuleBuffer, u32);
    log_enabled: fn(u32) -> bool;
    http_get_headers_size: fn(*mut c_void, u32) -> usize;
    http_get_headers: fn(*mut c_void, u32, *mut EnvoyHeader) -> bool;
    http_set_header: fn(*mut c_void, u32, ModuleBuffer, ModuleBuffer) -> bool;
    http_send_response: fn(*mut c_void, u32, *mut ModuleHeader, usize, ModuleBuffer, ModuleBuffer);
    http_get_body_chunks_size: fn(*mut c_void, u32) -> usize;
    http_get_body_chunks: fn(*mut c_void, u32, *mut EnvoyBuffer) -> bool;
    http_received_buffered_request_body: fn(*mut c_void) -> bool;
    http_received_buffered_response_body: fn(*mut c_void) -> bool;
    http_drain_body: fn(*mut c_void, u32, usize) -> bool;
    http_append_body: fn(*mut c_void, u32, ModuleBuffer) -> bool;
    http_filter_continue_decoding: fn(*mut c_void);
    http_filter_scheduler_new: fn(*mut c_void) -> *mut c_void;
    http_filter_scheduler_commit: fn(*mut c_void, u64);
    http_filter_scheduler_delete: fn(*mut c_void);
    http_filter_config_scheduler_new: fn(*mut c_void) -> *mut c_void;
    http_filter_config_scheduler_commit: fn(*mut c_void, u64);
    http_filter_config_scheduler_delete: fn(*mut c_void);
    http_filter_config_http_callout: fn(*mut c_void, *mut u64, ModuleBuffer, *mut ModuleHeader, usize, ModuleBuffer, u64) -> u32;
    http_filter_config_define_counter: fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
    http_filter_config_define_gauge: fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
    http_filter_config_increment_counter: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_config_increment_gauge: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_config_decrement_gauge: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_config_set_gauge: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_increment_counter: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_increment_gauge: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_decrement_gauge: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_set_gauge: fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
    http_filter_get_attribute_string: fn(*mut c_void, u32, *mut EnvoyBuffer) -> bool;
    http_set_filter_state_bytes: fn(*mut c_void, ModuleBuffer, ModuleBuffer) -> bool;
    http_clear_route_cache: fn(*mut c_void);
    http_filter_get_worker_index: fn(*mut c_void) -> u32;
}

static API: OnceLock<Result<Api, &'static str>> = OnceLock::new();

fn api() -> Option<&'static Api> {
    API.get_or_init(Api::resolve).as_ref().ok()
}

/// Log levels (spdlog's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

/// Writes a line to Envoy's log (component `dynamic_modules`).
pub(super) fn log(level: LogLevel, line: &str) {
    if let Some(a) = api() {
        // SAFETY: valid buffers for the call; Envoy copies them.
        unsafe { (a.log_v2)(level as u32, buf(line.as_bytes()), buf(b""), 0) }
    }
}

/// Whether Envoy prints lines of `level`.
pub(super) fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: no pointers.
    api().is_some_and(|a| unsafe { (a.log_enabled)(level as u32) })
}

/// Request and response headers (`RequestHeader`, `ResponseHeader` map types).
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
/// Body types: what this hook received, and what Envoy buffered before.
const RECEIVED_REQUEST_BODY: u32 = 0;
const BUFFERED_REQUEST_BODY: u32 = 1;
const RECEIVED_RESPONSE_BODY: u32 = 2;
const BUFFERED_RESPONSE_BODY: u32 = 3;
/// `XdsRouteName` and `ConnectionSha256PeerCertificateDigest` attribute ids.
pub(super) const ATTRIBUTE_ROUTE_NAME: u32 = 61;
pub(super) const ATTRIBUTE_PEER_CERTIFICATE_SHA256: u32 = 38;

/// A body's direction.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Request,
    Response,
}

impl Direction {
    /// Its buffered and received body types.
    fn kinds(self) -> (u32, u32) {
        match self {
            Direction::Request => (BUFFERED_REQUEST_BODY, RECEIVED_REQUEST_BODY),
            Direction::Response => (BUFFERED_RESPONSE_BODY, RECEIVED_RESPONSE_BODY),
        }
    }
}

/// One stream's filter as Envoy knows it: valid from `filter_new` to `filter_destroy`, on
/// its worker thread only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FilterHandle(*mut c_void);

impl FilterHandle {
    /// `f` over the request's headers, in order, borrowed from Envoy for the call (no copy
    /// of each name and value: the hot path builds its own header map from them).
    pub(super) fn with_request_headers<T>(
        self,
        f: impl for<'a> FnOnce(&mut dyn Iterator<Item = (&'a [u8], &'a [u8])>) -> T,
    ) -> T {
        self.with_headers(REQUEST_HEADERS, f)
    }

    /// `f` over the headers of map `kind`, in order, borrowed from Envoy for the call.
    fn with_headers<T>(
        self,
        kind: u32,
        f: impl for<'a> FnOnce(&mut dyn Iterator<Item = (&'a [u8], &'a [u8])>) -> T,
    ) -> T {
        let Some(a) = api() else {
            return f(&mut std::iter::empty());
        };
        // SAFETY: a live filter on its own thread.
        let n = unsafe { (a.http_get_headers_size)(self.0, kind) };
        let mut raw = vec![
            EnvoyHeader {
                key: std::ptr::null(),
                key_len: 0,
                value: std::ptr::null(),
                value_len: 0,
            };
            n
        ];
        // SAFETY: `raw` holds exactly `n` entries for Envoy to fill.
        if n == 0 || !unsafe { (a.http_get_headers)(self.0, kind, raw.as_mut_ptr()) } {
            return f(&mut std::iter::empty());
        }
        let mut pairs = raw
            .iter()
            .map(|h| (borrow(h.key, h.key_len), borrow(h.value, h.value_len)));
        f(&mut pairs)
    }

    /// The request's headers, as byte pairs, in order.
    pub(super) fn request_headers(self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.with_request_headers(|pairs| pairs.map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
    }

    /// Sets a request header (`None` or an empty value: removes it).
    pub(super) fn set_request_header(self, name: &str, value: Option<&str>) {
        if let Some(a) = api() {
            let v = value
                .filter(|v| !v.is_empty())
                .map_or(NULL_BUFFER, |v| buf(v.as_bytes()));
            // SAFETY: a live filter; valid buffers Envoy copies (a null value removes).
            unsafe { (a.http_set_header)(self.0, REQUEST_HEADERS, buf(name.as_bytes()), v) };
        }
    }

    /// The request body Envoy holds: what it buffered and what this hook received.
    pub(super) fn request_body(self, received: bool) -> Vec<u8> {
        self.body(Direction::Request, received, |body, chunk| {
            body.extend_from_slice(chunk)
        })
        .0
    }

    /// The response body Envoy holds: what it buffered and what this hook received.
    pub(super) fn response_body(self, received: bool) -> Vec<u8> {
        self.body(Direction::Response, received, |body, chunk| {
            body.extend_from_slice(chunk)
        })
        .0
    }

    /// The size of the response body Envoy holds (nothing copied).
    pub(super) fn response_body_size(self, received: bool) -> usize {
        self.body(Direction::Response, received, |_, _| ()).1
    }

    /// Folds the body chunks of one direction (buffered, then received unless the same):
    /// what `add` gathered and the byte count.
    fn body(
        self,
        direction: Direction,
        received: bool,
        mut add: impl FnMut(&mut Vec<u8>, &[u8]),
    ) -> (Vec<u8>, usize) {
        let mut out = (Vec::new(), 0usize);
        let Some(a) = api() else {
            return out;
        };
        let (buffered_kind, received_kind) = direction.kinds();
        let mut chunks = |kind: u32| {
            // SAFETY: a live filter on its own thread.
            let n = unsafe { (a.http_get_body_chunks_size)(self.0, kind) };
            let mut raw = vec![
                EnvoyBuffer {
                    ptr: std::ptr::null(),
                    len: 0
                };
                n
            ];
            // SAFETY: `raw` holds exactly `n` buffers for Envoy to fill.
            if n == 0 || !unsafe { (a.http_get_body_chunks)(self.0, kind, raw.as_mut_ptr()) } {
                return;
            }
            for c in &raw {
                add(&mut out.0, borrow(c.ptr, c.len));
                out.1 += c.len;
            }
        };
        chunks(buffered_kind);
        // SAFETY: a live filter.
        let same = unsafe {
            match direction {
                Direction::Request => (a.http_received_buffered_request_body)(self.0),
                Direction::Response => (a.http_received_buffered_response_body)(self.0),
            }
        };
        if received && !same {
            chunks(received_kind);
        }
        out
    }

    /// Replaces the response body Envoy holds with `body` (`received`: this body hook's
    /// data is part of it). False when Envoy had no body to change.
    pub(super) fn replace_response_body(self, received: bool, body: &[u8]) -> bool {
        let Some(a) = api() else { return false };
        // SAFETY: a live filter on its own thread; `body` is copied by Envoy.
        // (A body Envoy does not have is empty: nothing to drain. A drain that fails on
        // a body it has would leave the unfiltered bytes: checked by the size after.)
        unsafe {
            let _ = (a.http_drain_body)(self.0, BUFFERED_RESPONSE_BODY, usize::MAX);
            if received {
                let _ = (a.http_drain_body)(self.0, RECEIVED_RESPONSE_BODY, usize::MAX);
            }
        }
        if self.response_body_size(received) != 0 {
            return false;
        }
        // SAFETY: as above.
        unsafe {
            if received {
                (a.http_append_body)(self.0, RECEIVED_RESPONSE_BODY, buf(body))
            } else {
                (a.http_append_body)(self.0, BUFFERED_RESPONSE_BODY, buf(body))
            }
        }
    }

    /// The first value of a response header.
    pub(super) fn response_header(self, name: &[u8]) -> Option<Vec<u8>> {
        self.with_headers(RESPONSE_HEADERS, |pairs| {
            for (k, v) in pairs {
                if k.eq_ignore_ascii_case(name) {
                    return Some(v.to_vec());
                }
            }
            None
        })
    }

    /// Removes a response header.
    pub(super) fn remove_response_header(self, name: &str) {
        if let Some(a) = api() {
            // SAFETY: a live filter; valid buffers Envoy copies (a null value removes).
            unsafe {
                (a.http_set_header)(self.0, RESPONSE_HEADERS, buf(name.as_bytes()), NULL_BUFFER)
            };
        }
    }

    /// Answers the request locally.
    pub(super) fn send_response(self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        if let Some(a) = api() {
            let mut hs: Vec<ModuleHeader> = headers
                .iter()
                .map(|(k, v)| header(k.as_bytes(), v.as_bytes()))
                .collect();
            // SAFETY: a live filter; valid arrays and buffers Envoy copies.
            unsafe {
                (a.http_send_response)(
                    self.0,
                    status,
                    hs.as_mut_ptr(),
                    hs.len(),
                    buf(body),
                    buf(b"bearer_guard"),
                )
            }
        }
    }

    /// Resumes a request this module paused.
    pub(super) fn continue_decoding(self) {
        if let Some(a) = api() {
            // SAFETY: a live filter on its own thread.
            unsafe { (a.http_filter_continue_decoding)(self.0) }
        }
    }

    /// Has Envoy choose the route again.
    pub(super) fn clear_route_cache(self) {
        if let Some(a) = api() {
            // SAFETY: a live filter on its own thread.
            unsafe { (a.http_clear_route_cache)(self.0) }
        }
    }

    /// Sets filter state `key` (bytes, readable by access logs).
    pub(super) fn set_filter_state(self, key: &str, value: &str) {
        if let Some(a) = api() {
            // SAFETY: a live filter; valid buffers Envoy copies.
            unsafe {
                (a.http_set_filter_state_bytes)(self.0, buf(key.as_bytes()), buf(value.as_bytes()))
            };
        }
    }

    /// A string attribute of the stream (`None`: not available).
    pub(super) fn attribute(self, id: u32) -> Option<Vec<u8>> {
        let a = api()?;
        let mut out = EnvoyBuffer {
            ptr: std::ptr::null(),
            len: 0,
        };
        // SAFETY: a live filter; `out` is written by Envoy.
        unsafe { (a.http_filter_get_attribute_string)(self.0, id, &mut out) }.then(|| copy(out))
    }

    /// The index of the worker thread the stream runs on.
    pub(super) fn worker_index(self) -> usize {
        // SAFETY: a live filter on its own thread.
        api().map_or(0, |a| unsafe { (a.http_filter_get_worker_index)(self.0) }
            as usize)
    }

    /// A scheduler that runs `scheduled` events on this stream's worker.
    pub(super) fn scheduler(self) -> Option<Scheduler> {
        let a = api()?;
        // SAFETY: a live filter on its own thread.
        let s = unsafe { (a.http_filter_scheduler_new)(self.0) };
        (!s.is_null()).then_some(Scheduler(s))
    }

    /// Adds `value` to a counter, or to a gauge (`delta` negative: subtracts), or sets a
    /// gauge.
    pub(super) fn metric(self, (id, gauge): (usize, bool), labels: &[&str], change: MetricChange) {
        let Some(a) = api() else { return };
        let mut values: Vec<ModuleBuffer> = labels.iter().map(|l| buf(l.as_bytes())).collect();
        let (ptr, n) = (values.as_mut_ptr(), values.len());
        // SAFETY: a live filter; valid label buffers Envoy copies.
        unsafe {
            match (gauge, change) {
                (false, MetricChange::Add(d)) if d > 0 => {
                    (a.http_filter_increment_counter)(self.0, id, ptr, n, d.unsigned_abs())
                }
                (true, MetricChange::Add(d)) if d > 0 => {
                    (a.http_filter_increment_gauge)(self.0, id, ptr, n, d.unsigned_abs())
                }
                (true, MetricChange::Add(d)) if d < 0 => {
                    (a.http_filter_decrement_gauge)(self.0, id, ptr, n, d.unsigned_abs())
                }
                (true, MetricChange::Set(v)) => (a.http_filter_set_gauge)(self.0, id, ptr, n, v),
                _ => 0,
            }
        };
    }
}

/// What a metric effect does.
#[derive(Debug, Clone, Copy)]
pub(super) enum MetricChange {
    /// Add (a counter; a gauge may go down).
    Add(i64),
    /// Set a gauge.
    Set(u64),
}

/// A stream's scheduler: any thread may commit an event; deleted on the stream's thread.
#[derive(Debug)]
pub(super) struct Scheduler(*mut c_void);

// SAFETY: Envoy's `scheduler_commit` may be called from any thread; this module deletes a
// scheduler only on its stream's thread after taking it out of every shared registry.
unsafe impl Send for Scheduler {}

impl Scheduler {
    /// Runs `scheduled(event)` on the stream's worker (dropped if the stream is gone).
    pub(super) fn commit(&self, event: u64) {
        if let Some(a) = api() {
            // SAFETY: a scheduler not yet deleted (callers hold the registry lock).
            unsafe { (a.http_filter_scheduler_commit)(self.0, event) }
        }
    }

    /// Deletes it (on the stream's thread).
    pub(super) fn delete(self) {
        if let Some(a) = api() {
            // SAFETY: a scheduler Envoy made, deleted once.
            unsafe { (a.http_filter_scheduler_delete)(self.0) }
        }
    }
}

/// A filter configuration as Envoy knows it: valid until `config_destroy`; its callouts
/// and metric definitions on the main thread only.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConfigHandle(*mut c_void);

// SAFETY: the handle is only used on the main thread (callouts, definitions); other
// threads only carry it.
unsafe impl Send for ConfigHandle {}
// SAFETY: as above.
unsafe impl Sync for ConfigHandle {}

/// Whether a metric definition was refused.
pub(super) type Defined = Option<usize>;

impl ConfigHandle {
    /// Defines a counter or gauge with these label names (in `config_new` only).
    pub(super) fn define(self, name: &str, labels: &[&str], gauge: bool) -> Defined {
        let a = api()?;
        let mut names: Vec<ModuleBuffer> = labels.iter().map(|l| buf(l.as_bytes())).collect();
        let mut id = 0usize;
        let define = if gauge {
            a.http_filter_config_define_gauge
        } else {
            a.http_filter_config_define_counter
        };
        // SAFETY: the configuration being made; valid buffers; `id` written by Envoy.
        let result = unsafe {
            define(
                self.0,
                buf(name.as_bytes()),
                names.as_mut_ptr(),
                names.len(),
                &mut id,
            )
        };
        (result == 0).then_some(id)
    }

    /// Makes an HTTP call on the main thread: its id, or why it could not be made.
    pub(super) fn callout(
        self,
        cluster: &str,
        (headers, body): (&[(String, String)], &[u8]),
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let Some(a) = api() else { return Err(u32::MAX) };
        let mut hs: Vec<ModuleHeader> = headers
            .iter()
            .map(|(k, v)| header(k.as_bytes(), v.as_bytes()))
            .collect();
        let mut id = 0u64;
        // SAFETY: main thread; valid arrays and buffers Envoy copies; `id` written by it.
        let result = unsafe {
            (a.http_filter_config_http_callout)(
                self.0,
                &mut id,
                buf(cluster.as_bytes()),
                hs.as_mut_ptr(),
                hs.len(),
                buf(body),
                timeout_ms,
            )
        };
        if result == 0 {
            Ok(id)
        } else {
            Err(result)
        }
    }

    /// Changes a metric from the main thread (see [`FilterHandle::metric`]).
    pub(super) fn metric(self, (id, gauge): (usize, bool), labels: &[&str], change: MetricChange) {
        let Some(a) = api() else { return };
        let mut values: Vec<ModuleBuffer> = labels.iter().map(|l| buf(l.as_bytes())).collect();
        let (ptr, n) = (values.as_mut_ptr(), values.len());
        // SAFETY: the live configuration, on the main thread; valid label buffers.
        unsafe {
            match (gauge, change) {
                // Adding 0 makes the labeled series appear at 0, as the wasm module's do.
                (false, MetricChange::Add(d)) if d >= 0 => {
                    (a.http_filter_config_increment_counter)(self.0, id, ptr, n, d.unsigned_abs())
                }
                (true, MetricChange::Add(d)) if d >= 0 => {
                    (a.http_filter_config_increment_gauge)(self.0, id, ptr, n, d.unsigned_abs())
                }
                (true, MetricChange::Add(d)) if d < 0 => {
                    (a.http_filter_config_decrement_gauge)(self.0, id, ptr, n, d.unsigned_abs())
                }
                (true, MetricChange::Set(v)) => {
                    (a.http_filter_config_set_gauge)(self.0, id, ptr, n, v)
                }
                _ => 0,
            }
        };
    }

    /// A scheduler that runs `config_scheduled` events on the main thread.
    pub(super) fn scheduler(self) -> Option<ConfigScheduler> {
        let a = api()?;
        // SAFETY: the live configuration, on the main thread.
        let s = unsafe { (a.http_filter_config_scheduler_new)(self.0) };
        (!s.is_null()).then_some(ConfigScheduler(s))
    }
}

/// The main thread's scheduler of a configuration, deleted when dropped (by whichever
/// thread holds it last).
#[derive(Debug)]
pub(super) struct ConfigScheduler(*mut c_void);

// SAFETY: Envoy lets any thread commit to and delete a configuration's scheduler (it
// posts to the main thread's dispatcher); this owner deletes it once, on drop, and
// shared owners (`Arc`) never commit after that.
unsafe impl Send for ConfigScheduler {}
// SAFETY: `commit` takes `&self` and Envoy's commit may run on several threads at once.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    /// Runs `config_scheduled(event)` on the main thread. Never called with a lock of the
    /// module held: Envoy may run the configuration's destructor in this call (when the
    /// main thread dropped its last reference meanwhile).
    pub(super) fn commit(&self, event: u64) {
        if let Some(a) = api() {
            // SAFETY: a live scheduler (deleted only on drop).
            unsafe { (a.http_filter_config_scheduler_commit)(self.0, event) }
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        if let Some(a) = api() {
            // SAFETY: a scheduler Envoy made, deleted once.
            unsafe { (a.http_filter_config_scheduler_delete)(self.0) }
        }
    }
}

/// The bench floor's configuration and streams (feature `bench-floor`): addresses in this
/// static, never allocated, freed or read — the hooks below tell them from this module's
/// own pointers before casting any.
#[cfg(feature = "bench-floor")]
static FLOOR: [u8; 2] = [0; 2];

/// The pointer `config_new` returns for a floor configuration.
#[cfg(feature = "bench-floor")]
fn floor_config() -> *const c_void {
    std::ptr::addr_of!(FLOOR[0]).cast()
}

/// The pointer `filter_new` returns for a stream of a floor configuration.
#[cfg(feature = "bench-floor")]
fn floor_stream() -> *const c_void {
    std::ptr::addr_of!(FLOOR[1]).cast()
}

/// Whether `ptr` is the floor's configuration or one of its streams.
#[cfg(feature = "bench-floor")]
fn is_floor(ptr: *const c_void) -> bool {
    ptr == floor_config() || ptr == floor_stream()
}

/// Never: the module has no floor without the feature.
#[cfg(not(feature = "bench-floor"))]
#[inline(always)]
fn is_floor(_ptr: *const c_void) -> bool {
    false
}

/// Runs a hook body, turning a panic into `fallback`.
fn guarded<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// The stream object of a filter pointer this module returned from `filter_new`.
///
/// # Safety
/// `ptr` is null, a floor stream, or a `Box<Stream>` made by `filter_new`, not yet
/// destroyed.
unsafe fn stream<'a>(ptr: *const c_void) -> Option<&'a Stream> {
    if is_floor(ptr) {
        return None;
    }
    // SAFETY: as the caller guarantees; not the floor's.
    unsafe { ptr.cast::<Stream>().as_ref() }
}

/// The plugin of a configuration pointer this module returned from `config_new`.
///
/// # Safety
/// `ptr` is null, the floor's configuration, or a `Box<Plugin>` made by `config_new`, not
/// yet destroyed.
unsafe fn plugin_of<'a>(ptr: *const c_void) -> Option<&'a Plugin> {
    if is_floor(ptr) {
        return None;
    }
    // SAFETY: as the caller guarantees; not the floor's.
    unsafe { ptr.cast::<Plugin>().as_ref() }
}

/// A request hook: on a panic the request is answered 500 and stopped. A floor stream goes
/// on.
fn request_hook(envoy: *mut c_void, ptr: *const c_void, body: impl FnOnce(&Stream) -> u32) -> u32 {
    if is_floor(ptr) {
        return 0;
    }
    let handle = FilterHandle(envoy);
    let answered = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes back the pointer `filter_new` returned.
        match unsafe { stream(ptr) } {
            Some(s) => body(s),
            None => filter::fail_closed(handle),
        }
    }));
    answered.unwrap_or_else(|_| guarded(1, || filter::fail_closed(handle)))
}

/// A response hook: a panic answers 502 (a list that cannot be filtered is never passed
/// on unfiltered). A floor stream, or a stream this module does not know, goes on.
fn response_hook(envoy: *mut c_void, ptr: *const c_void, body: impl FnOnce(&Stream) -> u32) -> u32 {
    if is_floor(ptr) {
        return 0;
    }
    let handle = FilterHandle(envoy);
    let answered = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes back the pointer `filter_new` returned.
        unsafe { stream(ptr) }.map_or(0, body)
    }));
    answered.unwrap_or_else(|_| guarded(1, || filter::refuse_response(handle)))
}
