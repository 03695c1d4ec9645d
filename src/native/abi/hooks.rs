//! The hooks Envoy calls: each one guarded (a panic answers the contract's 500 or refuses
//! the configuration) and translated into the native host's entry points.

use super::*;

/// Checks the callbacks this module needs and reports the ABI version it is built for.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded(std::ptr::null(), || match API.get_or_init(Api::resolve) {
        Ok(_) => {
            stay_loaded();
            ABI_VERSION.as_ptr().cast()
        }
        Err(missing) => {
            eprintln!("bearer-guard: this Envoy has no envoy_dynamic_module_callback_{missing}: build the module for its version");
            std::ptr::null()
        }
    })
}

/// Keeps the module loaded for the life of the process, whatever `do_not_close` says: its
/// ticker thread and thread-local cores outlive any one configuration, and unloading
/// code a thread still runs would crash Envoy.
fn stay_loaded() {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let here = envoy_dynamic_module_on_program_init as *const c_void;
    // SAFETY: `here` is an address in this library; `info` is a valid out-parameter.
    let found = unsafe { libc::dladdr(here, &mut info) } != 0 && !info.dli_fname.is_null();
    // SAFETY: `dli_fname` is the loaded library's NUL-terminated path; RTLD_NOLOAD only
    // takes another reference to it (never loads anything), RTLD_NODELETE pins it.
    let pinned = found
        && !unsafe {
            libc::dlopen(
                info.dli_fname,
                libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
            )
        }
        .is_null();
    if !pinned {
        log(
            LogLevel::Warn,
            "bearer-guard: could not pin the module in memory: keep `do_not_close: true`",
        );
    }
}

/// A configuration: `name` is `filter_name`, `config` the JSON. Null refuses it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded(std::ptr::null(), || {
        let name = copy(name);
        #[cfg(feature = "bench-floor")]
        if name == floor::FILTER_NAME.as_bytes() {
            floor::new();
            return floor_config();
        }
        match plugin::new(ConfigHandle(envoy), &name, &copy(config)) {
            Some(p) => Box::into_raw(Box::new(p)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

/// A configuration is gone.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(ptr: *const c_void) {
    guarded((), || {
        if !ptr.is_null() && !is_floor(ptr) {
            // SAFETY: the pointer `config_new` returned, destroyed once.
            let p = unsafe { Box::from_raw(ptr.cast::<Plugin>().cast_mut()) };
            plugin::destroy(*p);
        }
    })
}

/// Main-thread work of a configuration: the calls workers asked for.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: *mut c_void,
    ptr: *const c_void,
    _event: u64,
) {
    guarded((), || {
        // SAFETY: the pointer `config_new` returned.
        if let Some(p) = unsafe { plugin_of(ptr) } {
            plugin::main_thread(p, _event);
        }
    })
}

/// A call made on the main thread was answered (or failed).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: *mut c_void,
    ptr: *const c_void,
    callout: u64,
    result: u32,
    headers: *mut EnvoyHeader,
    headers_size: usize,
    chunks: *mut EnvoyBuffer,
    chunks_size: usize,
) {
    guarded((), || {
        // SAFETY: the pointer `config_new` returned.
        if let Some(p) = unsafe { plugin_of(ptr) } {
            // The body is copied only when within the call's limit: a larger one is
            // refused on its size, never read.
            let read = || copy_chunks(chunks, chunks_size);
            let answered = (result == 0).then(|| {
                (
                    copy_headers(headers, headers_size),
                    total_size(chunks, chunks_size),
                    &read as &dyn Fn() -> Vec<u8>,
                )
            });
            plugin::call_done(p, callout, answered);
        }
    })
}

/// A stream.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    envoy: *mut c_void,
) -> *const c_void {
    guarded(std::ptr::null(), || {
        #[cfg(feature = "bench-floor")]
        if config == floor_config() {
            return floor_stream();
        }
        // SAFETY: the pointer `config_new` returned, alive while its streams are.
        let Some(p) = (unsafe { plugin_of(config) }) else {
            return std::ptr::null();
        };
        let s = filter::new_stream(p, FilterHandle(envoy));
        Box::into_raw(Box::new(s)).cast_const().cast()
    })
}

/// A request's headers.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    #[cfg(feature = "bench-floor")]
    if ptr == floor_stream() {
        return guarded(0, || floor::request_headers(FilterHandle(envoy)));
    }
    request_hook(envoy, ptr, |s| filter::request_headers(s, end_of_stream))
}

/// More of a request's body.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: *mut c_void,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    request_hook(envoy, ptr, |s| filter::request_body(s, end_of_stream))
}

/// A request's trailers.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: *mut c_void,
    ptr: *const c_void,
) -> u32 {
    request_hook(envoy, ptr, filter::request_trailers)
}

/// A scheduled event on a stream's worker: a tick, or answers to take.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: *mut c_void,
    ptr: *const c_void,
    _event: u64,
) {
    let _ = request_hook(envoy, ptr, |s| {
        filter::scheduled(s);
        0
    });
}

/// The stream is complete.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: *mut c_void,
    _ptr: *const c_void,
) {
}

/// The stream is gone.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(ptr: *const c_void) {
    guarded((), || {
        if !ptr.is_null() && !is_floor(ptr) {
            // SAFETY: the pointer `filter_new` returned, destroyed once.
            let s = unsafe { Box::from_raw(ptr.cast::<Stream>().cast_mut()) };
            filter::destroy(*s);
        }
    })
}

/// Response headers: held only for an MCP list answer the filter rewrites.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: *mut c_void,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    response_hook(envoy, ptr, |s| filter::response_headers(s, end_of_stream))
}

/// More of a response body.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: *mut c_void,
    ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    response_hook(envoy, ptr, |s| filter::response_body(s, end_of_stream))
}

/// A response's trailers: its body is complete.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: *mut c_void,
    ptr: *const c_void,
) -> u32 {
    response_hook(envoy, ptr, filter::response_trailers)
}

/// Per-stream calls: this module makes its calls on the main thread.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: *mut c_void,
    _ptr: *const c_void,
    _callout: u64,
    _result: u32,
    _headers: *mut EnvoyHeader,
    _headers_size: usize,
    _chunks: *mut EnvoyBuffer,
    _chunks_size: usize,
) {
}

/// Streaming calls: not used.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: *mut c_void,
    _ptr: *const c_void,
    _stream: u64,
    _headers: *mut EnvoyHeader,
    _size: usize,
    _end: bool,
) {
}

/// Streaming calls: not used.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: *mut c_void,
    _ptr: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _count: usize,
    _end: bool,
) {
}

/// Streaming calls: not used.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: *mut c_void,
    _ptr: *const c_void,
    _stream: u64,
    _trailers: *mut EnvoyHeader,
    _size: usize,
) {
}

/// Streaming calls: not used.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: *mut c_void,
    _ptr: *const c_void,
    _stream: u64,
) {
}

/// Streaming calls: not used.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: *mut c_void,
    _ptr: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

/// Watermarks: not this filter's concern.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: *mut c_void,
    _ptr: *const c_void,
) {
}

/// Watermarks: not this filter's concern.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: *mut c_void,
    _ptr: *const c_void,
) {
}
