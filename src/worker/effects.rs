//! What the VM core asks of its host: effects to apply (plain values, in order) and the
//! one host call it needs an answer to at once, dispatching an HTTP call.

use crate::reply::Reply;

/// Log levels of the lines the core emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Per-request detail (denials, waits), formatted only when the host prints it.
    Debug,
    /// Configuration and key-set events.
    Info,
    /// Failed fetches and lookups.
    Warn,
    /// Unusable configuration.
    Error,
}

/// One thing the host must do. Request effects name their HTTP context: the glue makes
/// that context the effective one before applying them.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Set (`Some`) or remove (`None`) a request header of the context.
    Header {
        /// The HTTP context.
        context: u32,
        /// Lower-case header name (`:path` for a path rewrite).
        name: String,
        /// The new value; `None` removes the header.
        value: Option<String>,
    },
    /// Write filter state `wasm.<name>` of the context (access-log fields).
    Property {
        /// The HTTP context.
        context: u32,
        /// Property name, e.g. `bearer_guard.outcome`.
        name: &'static str,
        /// Its value.
        value: String,
    },
    /// The request goes upstream: continue it (a fresh request) or resume it (one that was
    /// paused).
    Continue {
        /// The HTTP context.
        context: u32,
    },
    /// The request waits (for keys or an account); the core resumes it later.
    Pause {
        /// The HTTP context.
        context: u32,
    },
    /// Have Envoy choose the request's route again (its header edits may match another
    /// route): the host's `clear_route_cache` foreign function.
    ClearRouteCache {
        /// The HTTP context.
        context: u32,
    },
    /// Answer the request locally.
    Reply {
        /// The HTTP context.
        context: u32,
        /// Status, headers and body.
        reply: Reply,
    },
    /// A log line.
    Log(Level, String),
    /// Add to a counter (index into [`super::Worker::metric_definitions`]).
    Count(usize, i64),
    /// Set a gauge (index into [`super::Worker::metric_definitions`]).
    Gauge(usize, u64),
    /// Change the root context's tick period (ms).
    TickPeriod(u32),
}

/// Host calls the glue makes for every request before the core decides: the request's
/// header map (requests are judged at the VM's clock, never read per request; the
/// route-name property is a second call, only when a rule matches on routes; the client
/// certificate's digest another, only when a provider binds tokens to it).
pub const HOST_CALLS_PER_REQUEST: usize = 1;

impl Effect {
    /// The host calls `filter::apply` makes for this effect when `own` is the context
    /// whose callback applies it (its `Continue`/`Pause` are the callback's return value);
    /// switching the effective context to another one costs one more, not counted here.
    pub fn host_calls(&self, own: Option<u32>) -> usize {
        match self {
            Effect::Continue { context } | Effect::Pause { context } if Some(*context) == own => 0,
            // Resuming another context is one call; a paused one stays paused.
            Effect::Continue { .. } => 1,
            Effect::Pause { .. } => 0,
            _ => 1,
        }
    }

    /// The HTTP context a request effect acts on (`None` for the VM's own effects).
    pub fn context(&self) -> Option<u32> {
        match self {
            Effect::Header { context, .. }
            | Effect::Property { context, .. }
            | Effect::Continue { context }
            | Effect::Pause { context }
            | Effect::ClearRouteCache { context }
            | Effect::Reply { context, .. } => Some(*context),
            Effect::Log(..) | Effect::Count(..) | Effect::Gauge(..) | Effect::TickPeriod(_) => None,
        }
    }
}

/// An HTTP call the core wants made. `Debug` shows neither its body nor its
/// `authorization` (they may carry a token and a client secret).
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// Envoy cluster.
    pub cluster: &'a str,
    /// Request headers, pseudo-headers first.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Request body (empty: none).
    pub body: &'a [u8],
    /// The largest answer body the core reads (a host may leave a larger one uncopied:
    /// the core refuses it on its announced size).
    pub max_response_bytes: usize,
    /// Timeout, ms.
    pub timeout_ms: u64,
}

impl std::fmt::Debug for Outgoing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if *k == "authorization" {
                        "<redacted>"
                    } else {
                        *v
                    },
                )
            })
            .collect();
        f.debug_struct("Outgoing")
            .field("cluster", &self.cluster)
            .field("headers", &headers)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("max_response_bytes", &self.max_response_bytes)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// Why the host could not dispatch a call (its own words, for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchError(pub String);

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DispatchError {}

/// The host as the core needs it during an entry point.
pub trait Host {
    /// Dispatches `call`; the token its response will come back with, or why it could not
    /// be made.
    fn dispatch(&mut self, call: &Outgoing) -> Result<u32, DispatchError>;
    /// The clock now (ms): only to report how long a key set took to parse.
    fn clock_ms(&self) -> u64;
}

/// A dispatched call's response, read lazily.
pub struct CallResponse<'a> {
    /// Its `:status` (`None`: no response — connection failure or timeout).
    pub status: Option<String>,
    /// The body's size as announced by the host.
    pub body_size: usize,
    /// Reads the body; called only when the size is within the source's limit.
    pub body: &'a dyn Fn() -> Vec<u8>,
}

/// Metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Gauge.
    Gauge,
}
