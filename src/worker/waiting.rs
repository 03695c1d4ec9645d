//! Requests that wait: paused for keys, a list or an account (each woken by an
//! [`Event`] or at its deadline), and requests whose decision needs their body. Driven by
//! `(now, event)`; no host calls here.

use crate::pipeline::Waited;
use crate::request::Request;

/// How long a request whose head is held for its body waits for a first body callback
/// before the worker concludes that the host does not hold heads (Envoy's wasm option
/// `allow_on_headers_stop_iteration` off): only until one such callback has come to it.
pub const HELD_BODY_WAIT_MS: u64 = 5_000;

/// The event that wakes a paused request: a [`crate::pipeline::Wait`] without what only
/// the call needs (several requests wait for one event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A provider's key set.
    Keys(usize),
    /// An account lookup: provider index and lookup key.
    Account(usize, String),
    /// A token introspection: provider index and lookup key.
    Introspection(usize, String),
    /// A revocation list's first load (its index in the configuration's lists).
    Revocation(usize),
}

/// A paused request.
#[derive(Debug, Clone)]
pub struct Waiter {
    /// The HTTP context that holds it.
    pub context_id: u32,
    /// What wakes it.
    pub wait: Event,
    /// What it has waited for, this wait included.
    pub waited: Waited,
    /// When it stops waiting whatever happens (ms).
    pub deadline_ms: u64,
    /// The request, to decide again.
    pub request: Request,
}

/// A request whose decision needs its body (a GraphQL POST), until the body is complete.
#[derive(Debug)]
pub struct Reading {
    /// The HTTP context.
    pub context: u32,
    /// The request, its body not read yet.
    pub request: Request,
    /// What it has waited for.
    pub waited: Waited,
    /// Its head is held too (`graphql.hold_head`), not gone on upstream.
    pub head_held: bool,
    /// When it started to wait for its body (ms).
    pub since_ms: u64,
}

/// The waiting requests of one worker.
#[derive(Debug, Default)]
pub struct Waiting {
    parked: Vec<Waiter>,
    reading: Vec<Reading>,
    /// A body callback came for a request whose head was held (or that was paused in its
    /// header phase): the host holds heads.
    host_holds_heads: bool,
}

impl Waiting {
    /// Pauses a request.
    pub fn park(&mut self, waiter: Waiter) {
        self.parked.push(waiter);
    }

    /// A request now waits for its body.
    pub fn read_body(&mut self, reading: Reading) {
        self.reading.push(reading);
    }

    /// Forgets the requests of a context that is gone.
    pub fn forget(&mut self, context_id: u32) {
        self.parked.retain(|w| w.context_id != context_id);
        self.reading.retain(|r| r.context != context_id);
    }

    /// More of the body of `context` came. `Some(true)`: the request waits for its body
    /// (take it with [`Waiting::body_complete`] once complete); `Some(false)`: it is paused
    /// for something else (see [`Waiting::paused_request`]); `None`: it waits for nothing.
    pub fn body_came(&mut self, context: u32) -> Option<bool> {
        if let Some(r) = self.reading.iter().find(|r| r.context == context) {
            if r.head_held {
                self.host_holds_heads = true;
            }
            return Some(true);
        }
        if self.parked.iter().any(|w| w.context_id == context) {
            // Paused in its header phase, and still the body comes: the host holds heads.
            self.host_holds_heads = true;
            return Some(false);
        }
        None
    }

    /// The request of `context` that waited for its body, now complete.
    pub fn body_complete(&mut self, context: u32) -> Option<Reading> {
        let at = self.reading.iter().position(|r| r.context == context)?;
        Some(self.reading.swap_remove(at))
    }

    /// The paused request of a context, to update (its body arrived meanwhile).
    pub fn paused_request(&mut self, context_id: u32) -> Option<&mut Request> {
        self.parked
            .iter_mut()
            .find(|w| w.context_id == context_id)
            .map(|w| &mut w.request)
    }

    /// The request id of the request of `context` when it is not decided yet (reading its
    /// body, or paused).
    pub fn undecided(&self, context: u32) -> Option<&str> {
        let reading = self.reading.iter().find(|r| r.context == context);
        let parked = self.parked.iter().find(|w| w.context_id == context);
        reading
            .map(|r| r.request.request_id.as_str())
            .or(parked.map(|w| w.request.request_id.as_str()))
    }

    /// Whether any request is undecided (see [`Waiting::undecided`]).
    pub fn any_undecided(&self) -> bool {
        !self.reading.is_empty() || !self.parked.is_empty()
    }

    /// How many requests are paused.
    pub fn count(&self) -> usize {
        self.parked.len()
    }

    /// Whether any request is paused (the glue then ticks faster).
    pub fn any(&self) -> bool {
        !self.parked.is_empty()
    }

    /// The events paused requests wait for, each once.
    pub fn waited_for(&self) -> Vec<Event> {
        let mut waits: Vec<Event> = Vec::new();
        for w in &self.parked {
            if !waits.contains(&w.wait) {
                waits.push(w.wait.clone());
            }
        }
        waits
    }

    /// Takes every paused request waiting for `event`.
    pub fn wake(&mut self, event: &Event) -> Vec<Waiter> {
        self.take(|w| w.wait == *event)
    }

    fn take(&mut self, pick: impl Fn(&Waiter) -> bool) -> Vec<Waiter> {
        let (woken, kept) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|w| pick(w));
        self.parked = kept;
        woken
    }

    /// A tick at `now`: the paused requests past their deadline or waiting for an account
    /// lookup given up (`lost` keys).
    pub fn late(&mut self, now: u64, lost: &[String]) -> Vec<Waiter> {
        self.take(|w| {
            w.deadline_ms <= now || matches!(&w.wait, Event::Account(_, k) | Event::Introspection(_, k) if lost.contains(k))
        })
    }

    /// Requests whose head is held for their body while no body callback has ever come
    /// to this worker for such a head, past [`HELD_BODY_WAIT_MS`]: the host does not hold
    /// heads, and these requests will never get their body.
    pub fn bodies_never_coming(&mut self, now: u64) -> Vec<Reading> {
        if self.host_holds_heads {
            return Vec::new();
        }
        let (late, kept): (Vec<Reading>, Vec<Reading>) = std::mem::take(&mut self.reading)
            .into_iter()
            .partition(|r| r.head_held && now >= r.since_ms.saturating_add(HELD_BODY_WAIT_MS));
        self.reading = kept;
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(id: u32, wait: Event, deadline: u64) -> Waiter {
        Waiter {
            context_id: id,
            wait,
            waited: Waited::default(),
            deadline_ms: deadline,
            request: Request::default(),
        }
    }

    #[test]
    fn requests_wake_on_their_event_or_deadline() {
        let mut w = Waiting::default();
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
        assert!(w.late(499, &[]).is_empty());
        let late: Vec<u32> = w.late(500, &[]).iter().map(|w| w.context_id).collect();
        assert_eq!(late, vec![3]);
        w.forget(2);
        assert!(!w.any());
    }

    #[test]
    fn a_lost_lookup_wakes_its_waiters() {
        let mut w = Waiting::default();
        w.park(waiter(1, Event::Account(0, "k".into()), u64::MAX));
        w.park(waiter(2, Event::Account(0, "j".into()), u64::MAX));
        let late: Vec<u32> = w
            .late(10, &["k".to_string()])
            .iter()
            .map(|w| w.context_id)
            .collect();
        assert_eq!(late, vec![1]);
    }

    #[test]
    fn held_heads_are_given_up_until_the_host_proves_it_holds_them() {
        let mut w = Waiting::default();
        let reading = |context, head_held| Reading {
            context,
            request: Request::default(),
            waited: Waited::default(),
            head_held,
            since_ms: 0,
        };
        w.read_body(reading(1, true));
        w.read_body(reading(2, false));
        assert!(w.bodies_never_coming(HELD_BODY_WAIT_MS - 1).is_empty());
        let late: Vec<u32> = w
            .bodies_never_coming(HELD_BODY_WAIT_MS)
            .iter()
            .map(|r| r.context)
            .collect();
        assert_eq!(late, vec![1], "only a held head is given up");
        w.read_body(reading(3, true));
        assert_eq!(w.body_came(3), Some(true));
        w.read_body(reading(4, true));
        assert!(
            w.bodies_never_coming(u64::MAX).is_empty(),
            "the host holds heads"
        );
    }
}
