//! The fetch state machine of one fetched document (a JWKS, a revocation list) for the whole Envoy process: fed
//! `(now, outcome)`, asked what is due; it owns no timers. It lives in the shared store
//! ([`crate::shared`]): one VM holds the fetch lease, every VM sees the same schedule.

use crate::shared::Reader;

/// Timing policy of one provider's fetches (all ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Refresh interval after a success.
    pub refresh_ms: u64,
    /// How long one fetch may take before it counts as failed.
    pub timeout_ms: u64,
    /// First retry delay after a failure (doubles per failure).
    pub retry_min_ms: u64,
    /// Cap of the retry delay.
    pub retry_max_ms: u64,
    /// Minimum interval between refetches forced by unknown `kid`s (process-wide).
    pub refetch_min_interval_ms: u64,
}

/// How long past its timeout a fetch in flight keeps its lease: the host's own timeout
/// fires first; after this, the holder is taken to be gone and another VM may fetch.
pub const LEASE_GRACE_MS: u64 = 1000;

/// What a request can expect from a provider's keys right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAvailability {
    /// Keys are loaded.
    Ready,
    /// No keys yet, but a fetch is in flight or due now: waiting is worthwhile.
    Loading,
    /// No keys and none expected soon.
    Unavailable,
}

/// The fetch state of one JWKS source for the whole Envoy process. It lives in the shared
/// store and every change is a compare-and-swap, so one VM fetches at a time (it holds the
/// lease: `holder`, `in_flight_since`) and every VM sees the same schedule, backoff and
/// refetch rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchState {
    /// Version of the key set last published (0: none yet).
    pub version: u64,
    /// When it was fetched (ms).
    pub fetched_at: u64,
    /// When the next fetch is due (ms; 0: at once).
    pub next_due: u64,
    /// Consecutive failures (the retry backoff).
    pub failures: u64,
    /// When an unknown `kid` last forced a refetch (ms; 0: never).
    pub last_forced: u64,
    /// The VM whose fetch is in flight (0: none).
    pub holder: u64,
    /// When that fetch started (ms).
    pub in_flight_since: u64,
}

impl FetchState {
    /// Its encoding in the store: seven little-endian `u64`s.
    pub fn encode(&self) -> Vec<u8> {
        [
            self.version,
            self.fetched_at,
            self.next_due,
            self.failures,
            self.last_forced,
            self.holder,
            self.in_flight_since,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }

    /// Decodes [`FetchState::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<FetchState> {
        let mut r = Reader(bytes);
        let state = FetchState {
            version: r.u64()?,
            fetched_at: r.u64()?,
            next_due: r.u64()?,
            failures: r.u64()?,
            last_forced: r.u64()?,
            holder: r.u64()?,
            in_flight_since: r.u64()?,
        };
        r.rest().is_empty().then_some(state)
    }

    /// Whether a fetch is in flight with a live lease.
    pub fn in_flight(&self, now: u64, p: &FetchPolicy) -> bool {
        self.holder != 0
            && now
                < self
                    .in_flight_since
                    .saturating_add(p.timeout_ms)
                    .saturating_add(LEASE_GRACE_MS)
    }

    /// Whether a fetch should start now.
    pub fn due(&self, now: u64, p: &FetchPolicy) -> bool {
        !self.in_flight(now, p) && now >= self.next_due
    }

    /// The state in which VM `me` holds the lease for a fetch starting now, if one is due,
    /// and whether that takes over the lease of a holder that never finished.
    pub fn start(&self, me: u64, now: u64, p: &FetchPolicy) -> Option<(FetchState, bool)> {
        self.due(now, p).then(|| {
            let next = FetchState {
                holder: me,
                in_flight_since: now,
                ..*self
            };
            (next, self.holder != 0)
        })
    }

    /// The state after a successful fetch published as `version`.
    pub fn succeed(&self, version: u64, now: u64, p: &FetchPolicy) -> FetchState {
        FetchState {
            version,
            fetched_at: now,
            next_due: now.saturating_add(p.refresh_ms),
            failures: 0,
            holder: 0,
            in_flight_since: 0,
            ..*self
        }
    }

    /// The state after a failed fetch (or one that could not start): the keys stay, the
    /// next attempt backs off exponentially from `retry_min_ms` to `retry_max_ms`.
    pub fn fail(&self, now: u64, p: &FetchPolicy) -> FetchState {
        let failures = self.failures.saturating_add(1);
        let delay = p
            .retry_min_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(p.retry_max_ms);
        FetchState {
            failures,
            next_due: now.saturating_add(delay),
            holder: 0,
            in_flight_since: 0,
            ..*self
        }
    }

    /// Whether an unknown `kid` may have the keys refetched now: a fetch is in flight (wait
    /// for it), or none was forced within `refetch_min_interval_ms`.
    pub fn may_refetch(&self, now: u64, p: &FetchPolicy) -> bool {
        self.in_flight(now, p)
            || self.last_forced == 0
            || now >= self.last_forced.saturating_add(p.refetch_min_interval_ms)
    }

    /// The state after an unknown `kid` forced a refetch (due at once), if allowed.
    pub fn refetch(&self, now: u64, p: &FetchPolicy) -> Option<FetchState> {
        if self.in_flight(now, p) {
            return Some(*self);
        }
        self.may_refetch(now, p).then_some(FetchState {
            last_forced: now.max(1),
            next_due: now,
            ..*self
        })
    }

    /// What a request can expect, given whether this VM has keys.
    pub fn availability(&self, has_keys: bool, now: u64, p: &FetchPolicy) -> KeyAvailability {
        if has_keys {
            KeyAvailability::Ready
        } else if self.in_flight(now, p) || self.due(now, p) {
            KeyAvailability::Loading
        } else {
            KeyAvailability::Unavailable
        }
    }
}
