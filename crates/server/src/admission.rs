//! Admission: how many requests each component runs at once, and the
//! first-come-first-served queue of those waiting for a turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_runtime::Guest;
use tokio::sync::Semaphore;

/// A guest and the admission that bounds how many requests it runs at
/// once: `permits` slots, and a first-come-first-served queue of at most
/// `max_queued_requests` requests waiting up to `queue_timeout` for one.
pub(crate) struct Slot {
    /// The component's id, for log lines that outlive the request.
    pub(crate) id: Arc<str>,
    pub(crate) guest: Guest,
    pub(crate) admission: Arc<Admission>,
    /// Refusals since the last warning about them (see `note_refusal`).
    pub(crate) refused: AtomicUsize,
    /// When the last warning was written, in ms since `epoch`.
    pub(crate) last_warning_ms: std::sync::atomic::AtomicU64,
    pub(crate) epoch: Instant,
}

/// A component's slots and the line waiting for them, shared by every
/// version of the app that has the component.
pub(crate) struct Admission {
    pub(crate) permits: Arc<Semaphore>,
    /// Permits the semaphore was made or resized to hold.
    pub(crate) capacity: std::sync::Mutex<usize>,
    /// Requests waiting for a permit now.
    pub(crate) queued: AtomicUsize,
}

impl Admission {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity: std::sync::Mutex::new(capacity),
            queued: AtomicUsize::new(0),
        })
    }

    /// This admission, holding `capacity` permits from now on: more are
    /// added at once; fewer are taken out as they come free (a task waits
    /// in line for them, so running requests are never cut short).
    pub(crate) fn resized(self: &Arc<Self>, capacity: usize) -> Arc<Self> {
        let mut current = self.capacity.lock().unwrap_or_else(|e| e.into_inner());
        if capacity > *current {
            self.permits.add_permits(capacity - *current);
        } else if capacity < *current {
            let surplus = u32::try_from(*current - capacity).unwrap_or(u32::MAX);
            let permits = self.permits.clone();
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(surplus).await {
                    taken.forget();
                }
            });
        }
        *current = capacity;
        self.clone()
    }
}

/// Why a request was not admitted.
#[derive(Debug)]
pub(crate) enum Refused {
    QueueFull(usize),
    Waited(Duration),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::QueueFull(max) => write!(
                f,
                "every slot busy and the queue full ({max} requests waiting)"
            ),
            Refused::Waited(timeout) => {
                write!(f, "waited {timeout:?} in the queue without a free slot")
            }
        }
    }
}

impl Slot {
    pub(crate) fn new(guest: Guest, admission: Option<Arc<Admission>>) -> Self {
        Self {
            id: Arc::from(guest.id()),
            admission: admission
                .unwrap_or_else(|| Admission::new(guest.limits().max_concurrent_requests)),
            guest,
            refused: AtomicUsize::new(0),
            last_warning_ms: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A permit to run the guest: at once when a slot is free, else after
    /// waiting in line. The semaphore hands freed permits to waiters in the
    /// order they came, and `try_acquire` never takes one a waiter is owed,
    /// so the queue is first come, first served. A waiting request holds
    /// no instance, only its own future.
    pub(crate) async fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refused> {
        let admission = &self.admission;
        if let Ok(permit) = admission.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let limits = self.guest.limits();
        if admission.queued.fetch_add(1, Ordering::Relaxed) >= limits.max_queued_requests {
            admission.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::QueueFull(limits.max_queued_requests));
        }
        let waited = tokio::time::timeout(
            limits.queue_timeout,
            admission.permits.clone().acquire_owned(),
        )
        .await;
        admission.queued.fetch_sub(1, Ordering::Relaxed);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as a full wait.
            Ok(Err(_)) | Err(_) => Err(Refused::Waited(limits.queue_timeout)),
        }
    }

    /// Warns about refusals at most once a second per component, with how
    /// many there were: under overload a line per refusal would add to the
    /// load (each refusal is in its access line anyway).
    pub(crate) fn note_refusal(&self, app: &str, refused: &Refused) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        // Milliseconds since `epoch`, plus one: 0 means never warned.
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= 1000;
        // Of the requests refused at once, the one that moves the clock on
        // writes the line.
        if !due
            || self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let count = self.refused.swap(0, Ordering::Relaxed);
        let limits = self.guest.limits();
        tracing::warn!(
            app,
            component = &*self.id,
            refused = count,
            "answering 503: {refused} ({} running at most, {} waiting at most)",
            limits.max_concurrent_requests,
            limits.max_queued_requests,
        );
    }
}
