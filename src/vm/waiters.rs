//! Requests paused for keys or an account, and the calls they wait on: the bookkeeping of
//! one VM, driven by `(now, event)` — a request parks, a call starts or is answered, a
//! tick passes — and answering with the requests to decide again. No host calls here; the
//! glue translates host callbacks into these events and applies what comes back.

use std::collections::HashMap;

pub use crate::pipeline::Waited;

/// The event that wakes a paused request: a [`crate::pipeline::Wait`] without what only
/// the call needs (several requests wait for one event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A provider's key set.
    Keys(usize),
    /// An account lookup: provider index and lookup key.
    Account(usize, String),
    /// A revocation list's first load (its index in the configuration's lists).
    Revocation(usize),
}

/// A paused request.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiter<R> {
    /// The HTTP context that holds it.
    pub context_id: u32,
    /// What wakes it.
    pub wait: Event,
    /// What it has waited for, this wait included.
    pub waited: Waited,
    /// When it stops waiting whatever happens (ms).
    pub deadline_ms: u64,
    /// The request, to decide again.
    pub request: R,
}

/// A call this VM dispatched.
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
}

/// An account lookup to dispatch from the root context's next tick (a request woken inside
/// another context's callback cannot make a call that outlives that callback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferred {
    /// Provider index.
    pub provider: usize,
    /// Lookup key.
    pub key: String,
    /// Path to call.
    pub path: String,
    /// The request id the call carries.
    pub request_id: String,
}

/// How long this VM's own account lookup counts as in flight when its answer never came
/// (the context that made the call went away): then it is given up.
pub const LOST_LOOKUP_MS: u64 = 61_000;

/// One VM's paused requests and calls.
#[derive(Debug)]
pub struct Waiters<R> {
    parked: Vec<Waiter<R>>,
    calls: HashMap<u32, Call>,
    /// This VM's account lookups in flight or deferred: key → since (ms).
    lookups: HashMap<String, u64>,
    deferred: Vec<Deferred>,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            parked: Vec::new(),
            calls: HashMap::new(),
            lookups: HashMap::new(),
            deferred: Vec::new(),
        }
    }
}

impl<R> Waiters<R> {
    /// Pauses a request.
    pub fn park(&mut self, waiter: Waiter<R>) {
        self.parked.push(waiter);
    }

    /// Forgets the request of a context that is gone.
    pub fn forget(&mut self, context_id: u32) {
        self.parked.retain(|w| w.context_id != context_id);
    }

    /// The paused request of a context, to update (its body arrived meanwhile).
    pub fn request_mut(&mut self, context_id: u32) -> Option<&mut R> {
        self.parked
            .iter_mut()
            .find(|w| w.context_id == context_id)
            .map(|w| &mut w.request)
    }

    /// How many requests are paused.
    pub fn count(&self) -> usize {
        self.parked.len()
    }

    /// Whether any request is paused (the glue then ticks faster).
    pub fn any(&self) -> bool {
        !self.parked.is_empty()
    }

    /// The providers and account keys paused requests wait for.
    pub fn waited_for(&self) -> Vec<Event> {
        let mut waits: Vec<Event> = Vec::new();
        for w in &self.parked {
            if !waits.contains(&w.wait) {
                waits.push(w.wait.clone());
            }
        }
        waits
    }

    /// Takes every paused request waiting for `wait`.
    pub fn wake(&mut self, wait: &Event) -> Vec<Waiter<R>> {
        self.take(|w| w.wait == *wait)
    }

    fn take(&mut self, pick: impl Fn(&Waiter<R>) -> bool) -> Vec<Waiter<R>> {
        let (woken, kept) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|w| pick(w));
        self.parked = kept;
        woken
    }

    /// Records a dispatched call (an account lookup also counts as this VM's, in flight).
    pub fn call_started(&mut self, token: u32, call: Call, now: u64) {
        if let Call::Account { key, .. } = &call {
            self.lookups.insert(key.clone(), now);
        }
        self.calls.insert(token, call);
    }

    /// The call a response answers (`None`: not ours, or already given up).
    pub fn call_answered(&mut self, token: u32) -> Option<Call> {
        let call = self.calls.remove(&token)?;
        if let Call::Account { key, .. } = &call {
            self.lookups.remove(key);
        }
        Some(call)
    }

    /// Whether this VM already looks `key` up.
    pub fn looking_up(&self, key: &str) -> bool {
        self.lookups.contains_key(key)
    }

    /// Queues a lookup for the next tick (it counts as this VM's from now).
    pub fn defer(&mut self, lookup: Deferred, now: u64) {
        self.lookups.insert(lookup.key.clone(), now);
        self.deferred.push(lookup);
    }

    /// The queued lookups, to dispatch now.
    pub fn take_deferred(&mut self) -> Vec<Deferred> {
        std::mem::take(&mut self.deferred)
    }

    /// A lookup could not be dispatched: it is not in flight.
    pub fn lookup_failed(&mut self, key: &str) {
        self.lookups.remove(key);
    }

    /// A tick at `now`: gives up lookups whose answer never came, and returns the requests
    /// past their deadline or waiting for such a lookup.
    pub fn tick(&mut self, now: u64) -> Vec<Waiter<R>> {
        let lost: Vec<String> = self
            .lookups
            .iter()
            .filter(|(_, &since)| now >= since.saturating_add(LOST_LOOKUP_MS))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &lost {
            self.lookups.remove(key);
            self.calls
                .retain(|_, c| !matches!(c, Call::Account { key: k, .. } if k == key));
        }
        self.take(|w| {
            w.deadline_ms <= now || matches!(&w.wait, Event::Account(_, k) if lost.contains(k))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(id: u32, wait: Event, deadline: u64) -> Waiter<&'static str> {
        Waiter {
            context_id: id,
            wait,
            waited: Waited::default(),
            deadline_ms: deadline,
            request: "r",
        }
    }

    #[test]
    fn requests_wake_on_their_event_or_deadline() {
        let mut w = Waiters::default();
        assert!(!w.any());
        w.park(waiter(1, Event::Keys(0), 1000));
        w.park(waiter(2, Event::Keys(1), 1000));
        w.park(waiter(3, Event::Account(0, "k".into()), 500));
        w.park(waiter(4, Event::Keys(0), 2000));
        assert_eq!(
            w.waited_for(),
            vec![
                Event::Keys(0),
                Event::Keys(1),
                Event::Account(0, "k".into())
            ]
        );
        let woken: Vec<u32> = w
            .wake(&Event::Keys(0))
            .iter()
            .map(|w| w.context_id)
            .collect();
        assert_eq!(woken, vec![1, 4]);
        assert!(w.tick(499).is_empty());
        let late: Vec<u32> = w.tick(500).iter().map(|w| w.context_id).collect();
        assert_eq!(late, vec![3]);
        w.forget(2);
        assert!(!w.any());
    }

    #[test]
    fn calls_and_lookups() {
        let mut w: Waiters<&str> = Waiters::default();
        w.call_started(7, Call::Jwks(0), 0);
        w.call_started(
            8,
            Call::Account {
                provider: 0,
                key: "k".into(),
            },
            0,
        );
        assert!(w.looking_up("k"));
        assert_eq!(w.call_answered(7), Some(Call::Jwks(0)));
        assert_eq!(w.call_answered(7), None, "answered once");
        assert!(w.call_answered(8).is_some() && !w.looking_up("k"));
        // Deferred lookups count as in flight until dispatched or failed.
        w.defer(
            Deferred {
                provider: 0,
                key: "d".into(),
                path: "/p".into(),
                request_id: "r".into(),
            },
            0,
        );
        assert!(w.looking_up("d"));
        assert_eq!(w.take_deferred().len(), 1);
        assert!(w.take_deferred().is_empty());
        w.lookup_failed("d");
        assert!(!w.looking_up("d"));
    }

    #[test]
    fn lost_lookups_are_given_up_with_their_waiters() {
        let mut w = Waiters::default();
        w.call_started(
            9,
            Call::Account {
                provider: 0,
                key: "k".into(),
            },
            0,
        );
        w.park(waiter(1, Event::Account(0, "k".into()), u64::MAX));
        assert!(w.tick(LOST_LOOKUP_MS - 1).is_empty());
        let woken = w.tick(LOST_LOOKUP_MS);
        assert_eq!(woken.len(), 1);
        assert!(!w.looking_up("k"));
        assert_eq!(w.call_answered(9), None, "a late answer is ignored");
    }
}
