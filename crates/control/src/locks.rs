//! One lock per name, made on first use: what serialises the changes to
//! one app (the live host's deploys, the state directory's swaps) while
//! other apps go on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as NameLock, OwnedMutexGuard};

#[derive(Debug, Default)]
pub(crate) struct Locks(Mutex<BTreeMap<String, Arc<NameLock<()>>>>);

impl Locks {
    /// Waits for, and holds, the lock of `name`. Blocks the thread: called
    /// off the runtime's threads.
    pub(crate) fn hold(&self, name: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_default()
            .clone();
        lock.blocking_lock_owned()
    }
}
