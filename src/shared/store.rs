//! Process-wide state: a key-value store every VM of the Envoy process sees (proxy-wasm
//! shared data), with compare-and-swap. The filter keeps there what belongs to the
//! process rather than to a worker: key sets and their fetch state, verified-token
//! verdicts, account lookups.
//!
//! The store has no delete, so keys are never made from request data: key sets use one
//! key per JWKS source, tokens and accounts a fixed number of slots (direct-mapped,
//! overwritten in place), which bounds the memory it can ever hold.

use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another VM wrote the key since it was read.
    CasMismatch,
    /// The host refused (its status code).
    Host(u32),
    /// The store holds as many keys as it may.
    Full,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::CasMismatch => f.write_str("written by another worker since it was read"),
            StoreError::Host(status) => write!(f, "refused by the host (status {status})"),
            StoreError::Full => f.write_str("the store holds as many keys as it may"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A process-wide key-value store with compare-and-swap.
pub trait Store {
    /// The value of `key` and its CAS token; `None` when it was never set (or the host
    /// failed: callers treat both as "nothing shared").
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets `key` if its CAS token is still `cas` (0: unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
    /// Creates `key` with `value` unless it exists (then [`StoreError::CasMismatch`]).
    /// The native process store and the in-memory store create atomically. Proxy-wasm
    /// shared data cannot (a write to a key never set ignores the CAS token), so there
    /// this is a read, then an unconditional write: two VMs creating the same key in the
    /// same instant can both succeed, the later write replacing the earlier.
    fn create(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        match self.get(key) {
            Some(_) => Err(StoreError::CasMismatch),
            None => self.set(key, value, 0),
        }
    }
}

/// A store shared by several owners (tests: several VMs on one in-memory store).
impl<S: Store + ?Sized> Store for std::rc::Rc<S> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        (**self).set(key, value, cas)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).create(key, value)
    }
}

/// An in-memory [`Store`] with the host's CAS semantics (tests, and one VM on its own).
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        let current = map.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(StoreError::CasMismatch);
        }
        map.insert(
            key.to_string(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        Ok(())
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut map = self.map.borrow_mut();
        if map.contains_key(key) {
            return Err(StoreError::CasMismatch);
        }
        map.insert(key.to_string(), (value.to_vec(), 1));
        Ok(())
    }
}

/// The process-wide [`Store`] of a native host: one per process, shared by every worker
/// thread, with the same compare-and-swap semantics as proxy-wasm shared data. Its keys
/// never come from request data (key sets and lists per source, tokens and accounts in a
/// fixed number of slots), so their number is bounded by the configuration; as a safety
/// net a store refuses a new key past [`ProcessStore::MAX_KEYS`].
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default)]
pub struct ProcessStore {
    map: std::sync::Mutex<HashMap<String, (Vec<u8>, u32)>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ProcessStore {
    /// The most keys one store holds.
    pub const MAX_KEYS: usize = 1 << 21;
}

#[cfg(not(target_arch = "wasm32"))]
impl Store for ProcessStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let current = map.get(key).map(|(_, c)| *c);
        if cas != 0 && cas != current.unwrap_or(0) {
            return Err(StoreError::CasMismatch);
        }
        if current.is_none() && map.len() >= ProcessStore::MAX_KEYS {
            return Err(StoreError::Full);
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        map.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }

    fn create(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(key) {
            return Err(StoreError::CasMismatch);
        }
        if map.len() >= ProcessStore::MAX_KEYS {
            return Err(StoreError::Full);
        }
        map.insert(key.to_string(), (value.to_vec(), 1));
        Ok(())
    }
}

impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        (**self).set(key, value, cas)
    }
    fn create(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).create(key, value)
    }
}

/// How many times a read-modify-write is retried when other VMs keep winning the race.
const CAS_ATTEMPTS: usize = 16;

/// Read-modify-write of one key with compare-and-swap: `change` gets the decoded current
/// value (the default when the key was never set or does not decode) and returns the new
/// one (`None`: leave it as is). Returns what was written (or `None` when `change`
/// declined); `Err` when the store refused or the race was lost [`CAS_ATTEMPTS`] times.
///
/// A missing key is first created with the default value ([`Store::create`]), then
/// changed with compare-and-swap like any other. Where the store creates atomically (the
/// native host) no write is ever lost; on proxy-wasm shared data two VMs creating the very
/// same key within the same instant can both win, once.
pub fn update<T: Default>(
    store: &dyn Store,
    key: &str,
    decode: impl Fn(&[u8]) -> Option<T>,
    encode: impl Fn(&T) -> Vec<u8>,
    mut change: impl FnMut(T) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    for _ in 0..CAS_ATTEMPTS {
        let Some((bytes, cas)) = store.get(key) else {
            match store.create(key, &encode(&T::default())) {
                Ok(()) | Err(StoreError::CasMismatch) => continue,
                Err(e) => return Err(e),
            }
        };
        let Some(next) = change(decode(&bytes).unwrap_or_default()) else {
            return Ok(None);
        };
        match store.set(key, &encode(&next), cas) {
            Ok(()) => return Ok(Some(next)),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// The first 8 bytes of SHA-256 over `parts`, each length-prefixed: a fingerprint of
/// configuration (no two different part lists share an encoding).
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first)
}

/// The slot of a 64-bit hash among `slots` (direct-mapped).
pub fn slot_of(hash: u64, slots: usize) -> usize {
    (hash % (slots.max(1) as u64)) as usize
}

/// Little-endian field reader over an encoded record.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    pub(crate) fn rest(self) -> &'a [u8] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_compare_and_swap() {
        let s = MemoryStore::default();
        assert_eq!(s.get("k"), None);
        s.set("k", b"a", 0).expect("first write");
        let (v, cas) = s.get("k").expect("set");
        assert_eq!(v, b"a");
        assert_eq!(
            s.set("k", b"b", cas.wrapping_add(7)),
            Err(StoreError::CasMismatch)
        );
        s.set("k", b"b", cas).expect("matching cas");
        assert_eq!(
            s.set("k", b"c", cas),
            Err(StoreError::CasMismatch),
            "stale cas"
        );
        assert_eq!(s.get("k").map(|(v, _)| v), Some(b"b".to_vec()));
    }

    /// A store whose first `n` conditional writes lose the race.
    struct Contended {
        inner: MemoryStore,
        lose: RefCell<usize>,
    }
    impl Store for Contended {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            let mut lose = self.lose.borrow_mut();
            if cas != 0 && *lose > 0 {
                *lose -= 1;
                // Another VM wrote in between: bump the stored value's token.
                let current = self.inner.get(key).map(|(v, _)| v).unwrap_or_default();
                self.inner.set(key, &current, 0)?;
                return Err(StoreError::CasMismatch);
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn update_retries_lost_races_and_gives_up() {
        let decode = |b: &[u8]| Reader(b).u64();
        let encode = |v: &u64| v.to_le_bytes().to_vec();
        let s = Contended {
            inner: MemoryStore::default(),
            lose: RefCell::new(0),
        };
        let add = |s: &dyn Store| update(s, "n", decode, encode, |v| Some(v + 1));
        assert_eq!(add(&s), Ok(Some(1)));
        *s.lose.borrow_mut() = 3;
        assert_eq!(add(&s), Ok(Some(2)), "three lost races, then a win");
        *s.lose.borrow_mut() = CAS_ATTEMPTS;
        assert_eq!(add(&s), Err(StoreError::CasMismatch));
        assert_eq!(update(&s, "n", decode, encode, |_| None), Ok(None));
    }

    #[test]
    fn fingerprints_and_slots() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
        assert!((0..1000).all(|h| slot_of(h, 7) < 7));
        assert_eq!(slot_of(5, 0), 0);
    }
}

#[cfg(test)]
mod process_store_tests {
    use super::*;
    use std::sync::Arc;

    /// Several threads incrementing one counter with compare-and-swap: no increment is
    /// lost, whatever the interleaving.
    #[test]
    fn compare_and_swap_holds_across_threads() {
        let store = Arc::new(ProcessStore::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let written = update(
                                &*store,
                                "n",
                                |b| Reader(b).u64(),
                                |n: &u64| n.to_le_bytes().to_vec(),
                                |n| Some(n + 1),
                            );
                            if written.is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (bytes, _) = store.get("n").expect("written");
        assert_eq!(Reader(&bytes).u64(), Some(8 * 500));
    }

    /// Threads that all find a key missing at once: its creation is atomic, so no
    /// thread's first write is replaced by another's creation (each round counts every
    /// increment; with creation as a read then a write, rounds lose some).
    #[test]
    fn a_key_created_by_threads_at_once_loses_no_write() {
        const THREADS: usize = 8;
        for round in 0..300 {
            let store = Arc::new(ProcessStore::default());
            let go = Arc::new(std::sync::Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (store, go) = (Arc::clone(&store), Arc::clone(&go));
                    std::thread::spawn(move || {
                        go.wait();
                        update(
                            &*store,
                            "n",
                            |b| Reader(b).u64(),
                            |n: &u64| n.to_le_bytes().to_vec(),
                            |n| Some(n + 1),
                        )
                    })
                })
                .collect();
            for t in threads {
                assert!(t.join().expect("thread").is_ok(), "round {round}");
            }
            let (bytes, _) = store.get("n").expect("written");
            assert_eq!(Reader(&bytes).u64(), Some(THREADS as u64), "round {round}");
        }
    }

    #[test]
    fn create_makes_a_key_once() {
        let store = ProcessStore::default();
        assert_eq!(store.create("k", b"a"), Ok(()));
        assert_eq!(store.create("k", b"b"), Err(StoreError::CasMismatch));
        assert_eq!(store.get("k").map(|(v, _)| v), Some(b"a".to_vec()));
        let memory = MemoryStore::default();
        assert_eq!(memory.create("k", b"a"), Ok(()));
        assert_eq!(memory.create("k", b"b"), Err(StoreError::CasMismatch));
        assert_eq!(memory.get("k").map(|(v, _)| v), Some(b"a".to_vec()));
    }

    #[test]
    fn a_stale_token_is_refused_and_a_new_key_past_the_bound_too() {
        let store = ProcessStore::default();
        store.set("k", b"a", 0).expect("first write");
        let (_, cas) = store.get("k").expect("set");
        store.set("k", b"b", cas).expect("current token");
        assert_eq!(store.set("k", b"c", cas), Err(StoreError::CasMismatch));
        assert_eq!(store.get("k").map(|(v, _)| v), Some(b"b".to_vec()));
    }
}
