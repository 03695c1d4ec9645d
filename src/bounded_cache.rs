//! One bounded cache for every per-VM cache (verified tokens, accounts): entries carry an
//! expiry, are never returned past it, and when the cache is full the expired ones go
//! first, then the oldest.

use hashbrown::{Equivalent, HashMap};
use std::collections::VecDeque;
use std::hash::{Hash, RandomState};

/// A bounded map whose entries expire. Times are in whatever unit the caller uses
/// (seconds or milliseconds), as long as it is the same for `expires_at` and `now`.
pub struct BoundedCache<K, V> {
    map: HashMap<K, (V, u64), RandomState>,
    /// Keys in insertion order (replacing an entry's value keeps its place).
    order: VecDeque<K>,
    max: usize,
    /// Insertions since expired entries were last swept out.
    since_sweep: usize,
}

impl<K: Hash + Eq + Clone, V> BoundedCache<K, V> {
    /// An empty cache holding at most `max` entries (0 disables it).
    pub fn new(max: usize) -> Self {
        BoundedCache {
            map: HashMap::with_hasher(RandomState::new()),
            order: VecDeque::new(),
            max,
            since_sweep: 0,
        }
    }

    /// The stored key and value for `key`, unless the entry has expired at `now`.
    pub fn get<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q, now: u64) -> Option<(&K, &V)> {
        self.map
            .get_key_value(key)
            .filter(|(_, (_, expires_at))| now < *expires_at)
            .map(|(k, (v, _))| (k, v))
    }

    /// Stores `value` until `expires_at` (nothing when it has already expired at `now`).
    /// A present key keeps its place and gets the new value. When the cache is full,
    /// expired entries are swept out first — at most once per `max / 2` insertions, so
    /// an insertion costs O(1) amortized — and then the oldest entries go.
    pub fn insert(&mut self, key: K, value: V, expires_at: u64, now: u64) {
        if self.max == 0 || now >= expires_at {
            return;
        }
        if let Some(existing) = self.map.get_mut(&key) {
            *existing = (value, expires_at);
            return;
        }
        self.since_sweep = self.since_sweep.saturating_add(1);
        if self.map.len() >= self.max && self.since_sweep >= self.max / 2 {
            self.since_sweep = 0;
            self.map.retain(|_, (_, at)| now < *at);
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        while self.map.len() >= self.max {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.map.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, (value, expires_at));
    }

    /// Number of entries (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_are_bounded_oldest_first() {
        let mut c: BoundedCache<String, u32> = BoundedCache::new(2);
        c.insert("a".into(), 1, 100, 0);
        assert_eq!(c.get("a", 99).map(|(_, v)| *v), Some(1));
        assert!(c.get("a", 100).is_none(), "never returned past its expiry");
        c.insert("late".into(), 9, 100, 100);
        assert_eq!(c.len(), 1, "an already expired entry is not stored");
        c.insert("b".into(), 2, 1000, 0);
        c.insert("c".into(), 3, 1000, 5); // full, nothing expired: the oldest ("a") goes
        assert!(c.get("a", 5).is_none() && c.get("b", 5).is_some() && c.get("c", 5).is_some());
        c.insert("c".into(), 4, 1000, 5); // a present key: replaced, nothing evicted
        assert_eq!((c.len(), c.get("c", 5).map(|(_, v)| *v)), (2, Some(4)));
        c.insert("d".into(), 5, 1000, 5); // the oldest ("b") goes, "c" kept its place
        assert!(c.get("b", 5).is_none() && c.get("c", 5).is_some() && c.get("d", 5).is_some());
        for i in 0..1000 {
            c.insert(i.to_string(), i, 1000, 5);
        }
        assert_eq!(c.len(), 2);
        let mut off: BoundedCache<String, u32> = BoundedCache::new(0);
        off.insert("a".into(), 1, 100, 0);
        assert!(off.is_empty());
    }

    #[test]
    fn expired_entries_go_before_the_oldest_live_one() {
        let mut c: BoundedCache<&str, u32> = BoundedCache::new(4);
        c.insert("old-live", 1, 10_000, 0);
        c.insert("short-1", 2, 50, 0);
        c.insert("short-2", 3, 50, 0);
        c.insert("live", 4, 10_000, 0);
        // Full at t=100 with two expired entries: they go, the oldest live one stays.
        c.insert("new-1", 5, 10_000, 100);
        c.insert("new-2", 6, 10_000, 100);
        for k in ["old-live", "live", "new-1", "new-2"] {
            assert!(c.get(k, 100).is_some(), "{k}");
        }
        assert_eq!(c.len(), 4);
        // Full of live entries: the oldest goes.
        c.insert("new-3", 7, 10_000, 100);
        assert!(c.get("old-live", 100).is_none() && c.get("new-3", 100).is_some());
    }
}
