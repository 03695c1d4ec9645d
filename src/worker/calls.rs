//! The calls this worker dispatched, by the host's token, and what each one is for.

use super::effects::{DispatchError, Host, Outgoing};
use std::collections::HashMap;

/// A call this worker dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A JWKS fetch for a provider.
    Jwks(usize),
    /// The OpenID configuration document of a provider (then its JWKS).
    Discovery(usize),
    /// A revocation list (its index in the configuration's lists).
    Revocation(usize),
    /// An account lookup.
    Account {
        /// Provider index.
        provider: usize,
        /// Lookup key.
        key: String,
    },
    /// A token introspection.
    Introspection {
        /// Provider index.
        provider: usize,
        /// Lookup key.
        key: String,
    },
}

/// The calls in flight.
#[derive(Debug, Default)]
pub struct Calls {
    pending: HashMap<u32, Call>,
}

impl Calls {
    /// Records a dispatched call.
    pub fn started(&mut self, token: u32, call: Call) {
        self.pending.insert(token, call);
    }

    /// The call a response answers (`None`: not ours, or given up).
    pub fn answered(&mut self, token: u32) -> Option<Call> {
        self.pending.remove(&token)
    }

    /// Gives up the lookup of `key` (an account or an introspection): a late answer is
    /// ignored.
    pub fn give_up_lookup(&mut self, key: &str) {
        self.pending.retain(|_, c| {
            !matches!(c, Call::Account { key: k, .. } | Call::Introspection { key: k, .. } if k == key)
        });
    }

    /// Dispatches a GET of a fetched document (`(cluster, authority, path)`) and records
    /// it as `call`; `Err` when the host could not make it.
    pub fn get(
        &mut self,
        host: &mut dyn Host,
        (cluster, authority, path): (&str, &str, &str),
        timeout_ms: u64,
        call: Call,
    ) -> Result<(), DispatchError> {
        let outgoing = Outgoing {
            cluster,
            headers: vec![
                (":method", "GET"),
                (":path", path),
                (":authority", authority),
                ("accept", "application/json"),
            ],
            body: &[],
            max_response_bytes: usize::MAX,
            timeout_ms,
        };
        let token = host.dispatch(&outgoing)?;
        self.started(token, call);
        Ok(())
    }
}
