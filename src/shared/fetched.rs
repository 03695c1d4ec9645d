//! A document fetched once for the whole Envoy process and adopted by every VM: a JWKS,
//! a revocation list. One VM holds the fetch lease ([`FetchState`], compare-and-swap in
//! the shared store), publishes the body it fetched as the next version, and every VM
//! parses and adopts each new version on its next tick. The same machine serves every
//! kind of document; what differs is only how a body is parsed ([`Document`]).

use crate::shared::{fingerprint, update, Reader, Store};
use crate::shared::{FetchPolicy, FetchState, KeyAvailability};

/// A document is stale once this many refresh intervals passed without a successful
/// fetch (reported in metrics and logs; what it says stays in force).
pub const STALE_AFTER_REFRESHES: u64 = 3;

/// Why a fetched document — a JWKS, a discovery document, a revocation list, an account
/// answer — could not be used. Logged and counted; never sent to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No response: a connection failure or a timeout.
    NoResponse,
    /// An answer with another status than 200 (the status).
    Status(String),
    /// A body over its limit, refused on its announced size: never read.
    TooLarge {
        /// The announced size.
        size: usize,
        /// The limit.
        limit: usize,
        /// The setting that sets it, e.g. `jwks.max_bytes`.
        setting: &'static str,
    },
    /// The call could not be made (the host's reason).
    NotDispatched(String),
    /// The document is not what it should be (what is wrong with it).
    Invalid(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NoResponse => f.write_str("no response (connection failure or timeout)"),
            FetchError::Status(status) => write!(f, "status {status}"),
            FetchError::TooLarge {
                size,
                limit,
                setting,
            } => write!(
                f,
                "body of {size} bytes over the {limit}-byte limit ({setting})"
            ),
            FetchError::NotDispatched(why) => write!(f, "not dispatched: {why}"),
            FetchError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FetchError {}

/// A document kind: how a published body becomes what a VM uses.
pub trait Document: Sized {
    /// What bounds parsing (sizes, counts).
    type Limits: Clone + std::fmt::Debug;
    /// Parses a published body at `now` (ms); `Err` says why it is unusable.
    fn parse(body: &[u8], limits: &Self::Limits, now: u64) -> Result<Self, FetchError>;
}

/// One document as one VM sees it: the process-wide fetch state and the published body
/// in the shared store, and the version this VM parsed and adopted.
#[derive(Debug, Clone)]
pub struct Fetched<D: Document> {
    prefix: String,
    policy: FetchPolicy,
    limits: D::Limits,
    doc: Option<D>,
    version: u64,
    /// Fingerprint of the adopted version's body: a refresh that brings the same bytes
    /// publishes no new version, so no VM parses it again.
    body: u64,
    state: FetchState,
}

/// What [`Fetched::sync`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sync {
    /// A newer version was adopted.
    pub adopted: Option<u64>,
    /// No fetch is in flight or due: requests waiting for the document may decide now.
    pub settled: bool,
}

impl<D: Document> Fetched<D> {
    /// The document under `prefix` in the store (one prefix per source: VMs and
    /// configurations naming the same source share one document).
    pub fn new(prefix: String, policy: FetchPolicy, limits: D::Limits) -> Fetched<D> {
        Fetched {
            prefix,
            policy,
            limits,
            doc: None,
            version: 0,
            body: 0,
            state: FetchState::default(),
        }
    }

    fn state_key(&self) -> String {
        format!("{}.state", self.prefix)
    }

    fn doc_key(&self) -> String {
        format!("{}.doc", self.prefix)
    }

    /// The adopted document, if any version was ever published.
    pub fn doc(&self) -> Option<&D> {
        self.doc.as_ref()
    }

    /// The adopted version (0: none).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The fetch policy.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// The parsing limits.
    pub fn limits(&self) -> &D::Limits {
        &self.limits
    }

    /// The fetch state as last read or written by this VM (for tests).
    #[cfg(test)]
    pub fn state(&self) -> &FetchState {
        &self.state
    }

    /// Reads the process-wide state and adopts a newer published version (parsing it
    /// here: each VM keeps its own parsed copy, no VM fetches what another already has).
    /// A state no VM has written yet is created here, at configuration, before this VM
    /// serves: on proxy-wasm, whose store cannot create a key atomically
    /// ([`Store::create`]), the first fetch's lease is then taken on a key that exists.
    pub fn sync(&mut self, store: &dyn Store, now: u64) -> Sync {
        match store.get(&self.state_key()) {
            Some((bytes, _)) => {
                if let Some(state) = FetchState::decode(&bytes) {
                    self.state = state;
                }
            }
            None => {
                let _ = store.create(&self.state_key(), &FetchState::default().encode());
            }
        }
        let mut result = Sync::default();
        if self.state.version > self.version {
            let doc = store
                .get(&self.doc_key())
                .map(|(b, _)| b)
                .unwrap_or_default();
            let mut r = Reader(&doc);
            if let Some(version) = r.u64().filter(|v| *v > self.version) {
                let body = r.rest();
                if let Ok(parsed) = D::parse(body, &self.limits, now) {
                    result.adopted = Some(version);
                    self.doc = Some(parsed);
                    self.version = version;
                    self.body = fingerprint(&[body]);
                }
            }
        }
        result.settled =
            !self.state.in_flight(now, &self.policy) && !self.state.due(now, &self.policy);
        result
    }

    /// Takes the lease for a fetch if one is due (`Some(takeover)`: dispatch it now).
    pub fn try_start(&mut self, store: &dyn Store, me: u64, now: u64) -> Option<bool> {
        let mut takeover = false;
        let written = update(
            store,
            &self.state_key(),
            FetchState::decode,
            FetchState::encode,
            |s| {
                let (next, t) = s.start(me, now, &self.policy)?;
                takeover = t;
                Some(next)
            },
        );
        match written {
            Ok(Some(state)) => {
                self.state = state;
                Some(takeover)
            }
            _ => None,
        }
    }

    /// Records this VM's fetch: on success the body is published as the next version and
    /// adopted here (the same bytes as the adopted version only renew it: no new
    /// version); on failure the published document stays and the retry backs off.
    /// Returns the version in force after a success (`None` on failure).
    pub fn finish(
        &mut self,
        store: &dyn Store,
        now: u64,
        result: Result<(D, Vec<u8>), FetchError>,
    ) -> Option<u64> {
        let policy = self.policy;
        match result {
            Ok((doc, body)) => {
                let doc_key = self.doc_key();
                let digest = fingerprint(&[&body]);
                let mine = self.version;
                let written = update(
                    store,
                    &self.state_key(),
                    FetchState::decode,
                    FetchState::encode,
                    |s| {
                        if self.doc.is_some() && digest == self.body && s.version == mine {
                            return Some(s.succeed(mine, now, &policy));
                        }
                        let version = s.version.max(mine).saturating_add(1);
                        let published: Vec<u8> = version
                            .to_le_bytes()
                            .into_iter()
                            .chain(body.iter().copied())
                            .collect();
                        store.set(&doc_key, &published, 0).ok()?;
                        Some(s.succeed(version, now, &policy))
                    },
                );
                let state = written.ok().flatten()?;
                self.state = state;
                if state.version != self.version {
                    self.version = state.version;
                    self.doc = Some(doc);
                    self.body = digest;
                }
                Some(state.version)
            }
            Err(_) => {
                if let Ok(Some(state)) = update(
                    store,
                    &self.state_key(),
                    FetchState::decode,
                    FetchState::encode,
                    |s| Some(s.fail(now, &policy)),
                ) {
                    self.state = state;
                }
                None
            }
        }
    }

    /// A fetch of this VM brought exactly the bytes of the version in force, still the
    /// process's latest: renews it (a success, no new version) and returns `true`, so the
    /// body need not even be parsed. `false`: parse it and [`Fetched::finish`].
    pub fn renew_if_unchanged(&mut self, store: &dyn Store, now: u64, body: &[u8]) -> bool {
        if self.doc.is_none() || fingerprint(&[body]) != self.body {
            return false;
        }
        let (policy, mine) = (self.policy, self.version);
        let written = update(
            store,
            &self.state_key(),
            FetchState::decode,
            FetchState::encode,
            |s| (s.version == mine).then(|| s.succeed(mine, now, &policy)),
        );
        match written {
            Ok(Some(state)) => {
                self.state = state;
                true
            }
            _ => false,
        }
    }

    /// Asks for a fetch now (an unknown `kid`): `true` when one is in flight or now due
    /// for the process, `false` when rate-limited.
    pub fn request_refetch(&mut self, store: &dyn Store, now: u64) -> bool {
        let policy = self.policy;
        let mut seen = self.state;
        match update(
            store,
            &self.state_key(),
            FetchState::decode,
            FetchState::encode,
            |s| {
                seen = s;
                s.refetch(now, &policy).filter(|next| *next != s)
            },
        ) {
            Ok(Some(state)) => {
                self.state = state;
                true
            }
            // Nothing to change: a fetch is already in flight, or the interval is not over.
            Ok(None) => {
                self.state = seen;
                seen.in_flight(now, &policy)
            }
            Err(_) => false,
        }
    }

    /// What a request can expect now (from the state last read).
    pub fn availability(&self, now: u64) -> KeyAvailability {
        self.state
            .availability(self.doc.is_some(), now, &self.policy)
    }

    /// Whether an unknown `kid` may ask for a refetch now (from the state last read).
    pub fn may_refetch(&self, now: u64) -> bool {
        self.state.may_refetch(now, &self.policy)
    }

    /// Whether the document is stale: fetched once but not for [`STALE_AFTER_REFRESHES`]
    /// refresh intervals, or never fetched while fetches fail.
    pub fn stale(&self, now: u64) -> bool {
        let after = self.policy.refresh_ms.saturating_mul(STALE_AFTER_REFRESHES);
        match self.age_ms(now) {
            Some(age) => age > after,
            None => self.state.failures > 0,
        }
    }

    /// How long ago (ms) the document in force was last fetched successfully by any VM
    /// of the process (`None`: never).
    pub fn age_ms(&self, now: u64) -> Option<u64> {
        (self.state.version > 0).then(|| now.saturating_sub(self.state.fetched_at))
    }
}

/// Interprets a fetch's answer: `status` is the response's `:status` (`None`: no
/// response), `body_size` its announced size, and `read_body` reads it — called only when
/// the size is within `max_bytes` (the setting named `limit` in messages), so an
/// oversized body is never copied into the VM.
pub fn fetched_body(
    status: Option<&str>,
    body_size: usize,
    (max_bytes, setting): (usize, &'static str),
    read_body: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>, FetchError> {
    match status {
        Some("200") if body_size > max_bytes => Err(FetchError::TooLarge {
            size: body_size,
            limit: max_bytes,
            setting,
        }),
        Some("200") => Ok(read_body()),
        Some(other) => Err(FetchError::Status(other.to_string())),
        None => Err(FetchError::NoResponse),
    }
}
