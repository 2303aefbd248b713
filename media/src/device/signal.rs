//! Waking the engine thread from a real-time thread without blocking it.

use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// Upper bound on one park: covers the rare wake-up the notifier skips (see
/// [`FrameSignal::notify`]), so a missed wake-up costs at most this much latency.
const MAX_PARK: Duration = Duration::from_millis(4);

/// Lets a real-time producer (audio callback, pacing thread) wake the consumer that
/// waits for a frame.
///
/// The producer side only does `try_lock` (one atomic compare-and-swap) and
/// `Thread::unpark` (a futex wake only when the thread is parked): no allocation and no
/// waiting.
#[derive(Clone, Default)]
pub(crate) struct FrameSignal {
    waiter: Arc<Mutex<Option<Thread>>>,
}

impl FrameSignal {
    /// Wakes the registered waiter, if any. Never blocks: when the waiter is
    /// registering itself at this very moment the wake-up is skipped, and the waiter
    /// sees the data on its next check (at most [`MAX_PARK`] later).
    pub(crate) fn notify(&self) {
        if let Ok(guard) = self.waiter.try_lock()
            && let Some(thread) = guard.as_ref()
        {
            thread.unpark();
        }
    }

    /// Parks the calling thread until `ready()` returns true or `deadline` passes.
    /// Returns the last `ready()` result.
    pub(crate) fn wait_until(&self, deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
        self.register_current();
        loop {
            if ready() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            thread::park_timeout((deadline - now).min(MAX_PARK));
        }
    }

    fn register_current(&self) {
        let current = thread::current();
        let mut guard = match self.waiter.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.as_ref().map(Thread::id) != Some(current.id()) {
            *guard = Some(current);
        }
    }
}
