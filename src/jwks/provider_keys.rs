//! One provider's keys as one VM sees them: the process-wide fetch state and the
//! published document in the shared store, and the version this VM parsed and adopted.

use super::fetch::{FetchPolicy, FetchState, KeyAvailability};
use super::keys::KeySet;
use crate::shared::{update, Reader, Store};

/// One provider's keys as one VM sees them: the process-wide fetch state and published
/// document in the shared store, and the version this VM has parsed and adopted.
#[derive(Debug, Clone)]
pub struct ProviderKeys {
    prefix: String,
    policy: FetchPolicy,
    max_bytes: usize,
    keys: Option<KeySet>,
    version: u64,
    state: FetchState,
}

/// What [`ProviderKeys::sync`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sync {
    /// A newer key set was adopted: its version and key ids.
    pub adopted: Option<(u64, String)>,
    /// No fetch is in flight or due: requests waiting for keys may decide now.
    pub settled: bool,
}

impl ProviderKeys {
    /// A provider's keys from the JWKS source with this fingerprint (cluster, authority,
    /// path: VMs and configurations naming the same source share one key set).
    pub fn new(source: u64, policy: FetchPolicy, max_bytes: usize) -> ProviderKeys {
        ProviderKeys {
            prefix: format!("bearer_guard.jwks.{source:016x}"),
            policy,
            max_bytes,
            keys: None,
            version: 0,
            state: FetchState::default(),
        }
    }

    fn state_key(&self) -> String {
        format!("{}.state", self.prefix)
    }

    fn doc_key(&self) -> String {
        format!("{}.doc", self.prefix)
    }

    /// The adopted keys, if any key set was ever published.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    /// The adopted key set's version (0: none).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The fetch policy.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// The fetch state as last read or written by this VM.
    pub fn state(&self) -> &FetchState {
        &self.state
    }

    /// Reads the process-wide state and adopts a newer published key set (parsing it here:
    /// each VM keeps its own parsed keys, no VM fetches what another already has).
    pub fn sync(&mut self, store: &dyn Store, now: u64) -> Sync {
        if let Some(state) = store
            .get(&self.state_key())
            .and_then(|(b, _)| FetchState::decode(&b))
        {
            self.state = state;
        }
        let mut result = Sync::default();
        if self.state.version > self.version {
            let doc = store
                .get(&self.doc_key())
                .map(|(b, _)| b)
                .unwrap_or_default();
            let mut r = Reader(&doc);
            if let Some(version) = r.u64().filter(|v| *v > self.version) {
                if let Ok((keys, _)) = KeySet::parse(r.rest(), self.max_bytes) {
                    result.adopted = Some((version, keys.kids().join(",")));
                    self.keys = Some(keys);
                    self.version = version;
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

    /// Records this VM's fetch: on success the document is published as the next version
    /// and adopted here; on failure the published keys stay and the retry backs off.
    /// Returns the version published (`None` on failure).
    pub fn finish(
        &mut self,
        store: &dyn Store,
        now: u64,
        result: Result<(KeySet, Vec<u8>), String>,
    ) -> Option<u64> {
        let policy = self.policy;
        match result {
            Ok((keys, body)) => {
                let doc_key = self.doc_key();
                let written = update(
                    store,
                    &self.state_key(),
                    FetchState::decode,
                    FetchState::encode,
                    |s| {
                        let version = s.version.max(self.version).saturating_add(1);
                        let doc: Vec<u8> = version
                            .to_le_bytes()
                            .into_iter()
                            .chain(body.iter().copied())
                            .collect();
                        store.set(&doc_key, &doc, 0).ok()?;
                        Some(s.succeed(version, now, &policy))
                    },
                );
                let state = written.ok().flatten()?;
                self.state = state;
                self.version = state.version;
                self.keys = Some(keys);
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

    /// An unknown `kid` asks for a refetch: `true` when one is in flight or now due for
    /// the process, `false` when rate-limited.
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
            .availability(self.keys.is_some(), now, &self.policy)
    }

    /// Whether an unknown `kid` may ask for a refetch now (from the state last read).
    pub fn may_refetch(&self, now: u64) -> bool {
        self.state.may_refetch(now, &self.policy)
    }
}
