//! A bounded in-memory copy of values of one embedded key-value file, so
//! that a `get` of a recently used key is answered on the caller's thread
//! instead of a round trip through the blocking pool (which costs ~30 µs on
//! a small VM, where the read itself costs ~3 µs: BENCHMARKS.md, "Key-value
//! stores").
//!
//! The cache is only ever as fresh as the file because one writer thread
//! makes every change to the file ([`crate::sqlite`], and the process-wide
//! lock it takes means no other process writes it), and that thread tells
//! the cache about each batch:
//! - before committing, [`begin_batch`](ReadCache::begin_batch) marks the
//!   batch's keys *pending* and drops their entries, so while the commit is
//!   in flight those keys are read from the file;
//! - after committing, [`end_batch`](ReadCache::end_batch) stores the
//!   committed values, clears the pending marks and moves the *generation*
//!   on.
//!
//! A reader that missed takes a [`Ticket`] before reading the file, and its
//! value is kept only if its key was not pending when it started and no
//! batch ended since. Whatever batch changed the key between the reader's
//! look at the file and its fill either was still pending at the fill or has
//! ended (a new generation), so a stale value is never stored. Entries thus
//! always equal the file's committed value, except for pending keys, which
//! have none.

use std::collections::HashSet;
use std::sync::Mutex;

use hashlink::LruCache;

/// Largest value kept: bigger ones are rare and would push out many small
/// ones.
pub(crate) const MAX_CACHED_VALUE: usize = 64 << 10;

/// Bytes of bookkeeping counted per entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// Where a value lives: app, label and key, length-prefixed so that no two
/// different triples give the same string.
pub(crate) fn cache_key(app: &str, store: &str, key: &str) -> String {
    let mut s = String::with_capacity(app.len() + store.len() + key.len() + 12);
    namespace_into(&mut s, app, store);
    s.push_str(key);
    s
}

/// The prefix [`cache_key`] puts before the key, for a store to keep.
pub(crate) fn namespace(app: &str, store: &str) -> String {
    let mut s = String::new();
    namespace_into(&mut s, app, store);
    s
}

fn namespace_into(s: &mut String, app: &str, store: &str) {
    use std::fmt::Write;
    let _ = write!(s, "{}:{app}{}:{store}", app.len(), store.len());
}

pub(crate) struct ReadCache {
    state: Mutex<State>,
    budget: usize,
}

struct State {
    /// Key to value; `None` records that the key is absent.
    entries: LruCache<String, Option<Vec<u8>>>,
    bytes: usize,
    pending: HashSet<String>,
    generation: u64,
}

/// What a reader that missed must hand back with the value it read.
pub(crate) struct Ticket(Option<u64>);

/// What a successful write left at a key, as the writer tells the cache.
pub(crate) enum Committed {
    /// This value (`None`: the key is now absent).
    Value(Option<Vec<u8>>),
    /// A value too large to keep: whatever an earlier write in the batch
    /// left must not stay cached either.
    Uncached,
}

/// The outcome of a look in the cache.
pub(crate) enum Lookup {
    Hit(Option<Vec<u8>>),
    Miss(Ticket),
}

impl ReadCache {
    /// A cache holding at most `budget` bytes (0 keeps nothing).
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            state: Mutex::new(State {
                entries: LruCache::new_unbounded(),
                bytes: 0,
                pending: HashSet::new(),
                generation: 0,
            }),
            budget,
        }
    }

    /// Bytes held now, as counted against the budget.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.state().bytes
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &str) -> Lookup {
        let mut state = self.state();
        if let Some(value) = state.entries.get(key) {
            return Lookup::Hit(value.clone());
        }
        let ticket = (!state.pending.contains(key)).then_some(state.generation);
        Lookup::Miss(Ticket(ticket))
    }

    /// Keeps `value`, read from the file for `key` after `ticket` was taken,
    /// if no write to the key can have been committed since.
    pub(crate) fn fill(&self, key: String, value: &Option<Vec<u8>>, ticket: Ticket) {
        let mut state = self.state();
        if ticket.0 != Some(state.generation) || state.pending.contains(&key) {
            return;
        }
        self.insert(&mut state, key, value);
    }

    /// Called by the writer before it commits a batch writing `keys`: until
    /// [`end_batch`](Self::end_batch), those keys are read from the file.
    ///
    /// Dropping their entries is what keeps a reader from going back in
    /// time: once the commit is on disk a miss may read the new value, and
    /// a later hit on the old entry would then undo what it saw.
    pub(crate) fn begin_batch(&self, keys: impl IntoIterator<Item = String>) {
        let mut state = self.state();
        for key in keys {
            remove(&mut state, &key);
            state.pending.insert(key);
        }
    }

    /// Called by the writer once the batch is committed (or has failed),
    /// with what each successful write left in the file, in the order the
    /// writes were applied (a later write to a key overrides an earlier
    /// one). Keys with no entry here stay uncached until a reader fills
    /// them.
    pub(crate) fn end_batch(&self, committed: impl IntoIterator<Item = (String, Committed)>) {
        let mut state = self.state();
        for (key, committed) in committed {
            match committed {
                Committed::Value(value) => self.insert(&mut state, key, &value),
                Committed::Uncached => remove(&mut state, &key),
            }
        }
        state.pending.clear();
        state.generation += 1;
    }

    fn insert(&self, state: &mut State, key: String, value: &Option<Vec<u8>>) {
        let size = entry_size(&key, value);
        if value.as_ref().is_some_and(|v| v.len() > MAX_CACHED_VALUE) || size > self.budget {
            remove(state, &key);
            return;
        }
        if let Some(old) = state.entries.insert(key.clone(), value.clone()) {
            state.bytes -= entry_size(&key, &old);
        }
        state.bytes += size;
        while state.bytes > self.budget {
            let Some((key, value)) = state.entries.remove_lru() else {
                break;
            };
            state.bytes -= entry_size(&key, &value);
        }
    }
}

fn remove(state: &mut State, key: &str) {
    if let Some(value) = state.entries.remove(key) {
        state.bytes -= entry_size(key, &value);
    }
}

fn entry_size(key: &str, value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(cache: &ReadCache, key: &str) -> Option<Option<Vec<u8>>> {
        match cache.get(key) {
            Lookup::Hit(value) => Some(value),
            Lookup::Miss(_) => None,
        }
    }

    #[test]
    fn namespaces_cannot_collide() {
        assert_ne!(
            cache_key("app:a", "default", "k"),
            cache_key("app", "a:default", "k")
        );
        assert_ne!(cache_key("a", "b", "ck"), cache_key("a", "bc", "k"));
        assert_eq!(cache_key("a", "b", "k"), namespace("a", "b") + "k");
    }

    #[test]
    fn a_fill_racing_a_commit_is_dropped() {
        let cache = ReadCache::new(1 << 20);
        // Read started before a batch that writes the key ended.
        let Lookup::Miss(ticket) = cache.get("k") else {
            panic!("an empty cache hit")
        };
        cache.begin_batch(["k".to_owned()]);
        cache.end_batch([("k".to_owned(), Committed::Value(Some(b"new".to_vec())))]);
        cache.fill("k".into(), &Some(b"old".to_vec()), ticket);
        assert_eq!(hit(&cache, "k"), Some(Some(b"new".to_vec())));

        // Read started while a batch writing the key was pending.
        cache.begin_batch(["k".to_owned()]);
        let Lookup::Miss(ticket) = cache.get("k") else {
            panic!("a key being written hit its old entry")
        };
        cache.end_batch([]);
        cache.fill("k".into(), &Some(b"new".to_vec()), ticket);
        assert_eq!(hit(&cache, "k"), None);

        // Read started and filled with no batch in between: kept.
        let Lookup::Miss(ticket) = cache.get("k") else {
            panic!("a key written by a failed batch kept an entry")
        };
        cache.fill("k".into(), &None, ticket);
        assert_eq!(hit(&cache, "k"), Some(None));
    }

    #[test]
    fn stays_within_its_budget_dropping_the_least_recently_used() {
        let cache = ReadCache::new(4 * (ENTRY_OVERHEAD + 2 + 100));
        for i in 0..4 {
            cache.end_batch([(format!("k{i}"), Committed::Value(Some(vec![0; 100])))]);
        }
        assert!(hit(&cache, "k0").is_some());
        cache.end_batch([("k4".to_owned(), Committed::Value(Some(vec![0; 100])))]);
        assert!(
            hit(&cache, "k1").is_none(),
            "k1 was the least recently used"
        );
        assert!(hit(&cache, "k0").is_some());
        assert!(hit(&cache, "k4").is_some());
        cache.end_batch([(
            "big".to_owned(),
            Committed::Value(Some(vec![0; MAX_CACHED_VALUE + 1])),
        )]);
        assert!(hit(&cache, "big").is_none());
        assert!(cache.state().bytes <= cache.budget);
    }
}
